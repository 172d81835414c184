"""Splitwise (Patel et al., ISCA 2024): prompt and token phases on separate machine pools.

``scheduler.py`` is the cluster-level scheduler (a router that also drives the
KV hand-off), ``pools.py`` the pool membership it keeps (prompt, token, and the
mixed pool machines are borrowed into), ``batching.py`` the machine-level
scheduler every pool runs. The hand-off itself (reservation, transfer,
freeing) is mechanism: ``simulator.engine.handoff`` through ``ClusterActions``.
"""
