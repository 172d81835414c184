"""Vidur's processed traces: ``arrived_at`` (seconds from the first request), prefill and decode tokens."""

from __future__ import annotations

from workloads.readers.base import ColumnMap, CsvTraceReader
from workloads.registry import TRACE_READERS


@TRACE_READERS.register("vidur")
class VidurTraceReader(CsvTraceReader):
    """Vidur processed CSV: arrived_at (s), num_prefill_tokens, num_decode_tokens."""

    name = "vidur"
    description = "Vidur processed CSV: arrived_at (s), num_prefill_tokens, num_decode_tokens"
    layout = ColumnMap("arrived_at", "num_prefill_tokens", "num_decode_tokens")
