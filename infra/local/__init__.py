"""The local stack: the emulators and redis-server on free ports (``stack``), the processes that
run them, finding their tools, a local Redis Cluster, and the fault tools used against them."""
