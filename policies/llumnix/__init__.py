"""Llumnix (Sun et al., OSDI 2024): freeness dispatch, live-migration pairing, priorities, auto-scaling.

``dispatch`` holds the routers (``llumnix``: freest instance with priority
headroom; ``infaas``: INFaaS++, the same load-aware dispatch without
headroom), ``controller`` the cluster controller (``llumnix``: periodic
migration pairing and, optionally, auto-scaling; with ``migration: false`` it
is INFaaS++'s auto-scaler), ``freeness`` the load metric they share.
"""
