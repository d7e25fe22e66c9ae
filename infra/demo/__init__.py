"""The demo: the whole pattern on the local stack, with a workload and a coherence check."""
