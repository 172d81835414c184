"""Generic CSV and JSON-lines traces whose columns are named in the experiment.

``trace: {format: csv, columns: {arrival_s: ..., prompt_tokens: ...,
output_tokens: ..., time_unit: ms, session_id: ..., tenant: ...}}``. Without
``columns`` the names default to Vidur's. These two formats are never chosen
by ``format: auto`` from a header alone; giving ``columns`` with ``format:
auto`` picks one of them by the file's content (a first line starting with
``{`` is JSON lines).
"""

from __future__ import annotations

from workloads.config_trace import TraceColumns
from workloads.readers.base import ColumnMap, CsvTraceReader, Head, JsonlTraceReader
from workloads.registry import TRACE_READERS


class _Mapped:
    """Column names come from ``trace.columns``."""

    @classmethod
    def sniff(cls, head: Head) -> bool:
        return False

    def column_map(self) -> ColumnMap:
        columns = self.config.columns if self.config is not None else None
        return ColumnMap.from_config(columns or TraceColumns())


@TRACE_READERS.register("csv")
class GenericCsvTraceReader(_Mapped, CsvTraceReader):
    """Any CSV, with the column mapping given in ``trace.columns``."""

    name = "csv"
    description = "any CSV; columns named in trace.columns (arrival_s, prompt_tokens, output_tokens, ...)"


@TRACE_READERS.register("jsonl")
class GenericJsonlTraceReader(_Mapped, JsonlTraceReader):
    """Any JSON-lines file, with the key mapping given in ``trace.columns``."""

    name = "jsonl"
    description = "any JSON lines; keys named in trace.columns (arrival_s, prompt_tokens, ..., prefix_hashes)"
