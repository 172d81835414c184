"""The registry of trace formats: readers found by name, built-in or from other packages.

Built-in readers are declared as entry points in pyproject.toml (group
``servesim.trace_readers``) and also register themselves when imported, as
policies do; a third-party package adds a format by declaring its own entry
point to a ``workloads.readers.base.TraceReader`` subclass.
"""

from __future__ import annotations

from typing import Any

from simulator.registry import Registry

TRACE_READERS: Registry[Any] = Registry("trace format", "servesim.trace_readers")
