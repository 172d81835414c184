"""SplitwiseSim request traces.

Columns ``request_id, request_type, application_id, arrival_timestamp,
batch_size, prompt_size, token_size``; arrival times are in seconds. The
other columns (``application_id``, ``request_type``) can be filtered on.
"""

from __future__ import annotations

from workloads.readers.base import ColumnMap, CsvTraceReader
from workloads.registry import TRACE_READERS


@TRACE_READERS.register("splitwise")
class SplitwiseTraceReader(CsvTraceReader):
    """SplitwiseSim CSV: arrival_timestamp (s), prompt_size, token_size."""

    name = "splitwise"
    description = "SplitwiseSim CSV: arrival_timestamp (s), prompt_size, token_size (+ request and application ids)"
    layout = ColumnMap("arrival_timestamp", "prompt_size", "token_size")
