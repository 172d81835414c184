"""Catalog of hardware and model profiles shipped with servesim.

YAML files live under ``gpus/``, ``cpus/``, ``links/``, ``nodes/`` and ``models/``
(one profile per file, file stem equal to its ``name``); ``calibration/`` holds
measured efficiency tables. Every figure names its source in a ``sources:``
mapping; ``simulator.hardware.Catalog`` loads and validates them.
"""
