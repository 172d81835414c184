"""Trace readers: one module per format, all turning a file into ``RequestBatch`` chunks.

Importing this package registers the built-in formats in
``workloads.registry.TRACE_READERS`` (they are also declared as entry points).
"""

from workloads.readers import azure, burstgpt, generic, mooncake, splitwise, vidur  # noqa: F401  (registers)
from workloads.readers.base import ColumnMap, Head, TraceReader
from workloads.readers.detect import choose_reader

__all__ = ["ColumnMap", "Head", "TraceReader", "choose_reader"]
