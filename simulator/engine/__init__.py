"""The serving engine: requests, KV memory, step plans, instances and the cluster."""
