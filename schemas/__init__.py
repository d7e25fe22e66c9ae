"""The contract shared by producers and consumers: envelope, event types, cache keys, settings."""
