"""BurstGPT (Wang et al., KDD'25): ChatGPT and GPT-4 request logs from a campus service.

Columns ``Timestamp`` (seconds from midnight of the first day), ``Model``,
``Request tokens``, ``Response tokens``, ``Total tokens``, ``Log Type`` and,
in later files, ``Session ID`` and ``Elapsed time``. A failed request is
logged with zero response tokens: such rows are dropped (there is nothing
to serve) and counted in ``WorkloadStats.dropped_rows``. ``Model`` and
``Log Type`` can be filtered on; ``Session ID`` becomes the request's session.
"""

from __future__ import annotations

from workloads.batch import RequestBatch
from workloads.readers.base import ColumnMap, CsvTraceReader, Head
from workloads.registry import TRACE_READERS

_LAYOUT = ColumnMap("Timestamp", "Request tokens", "Response tokens")
_SESSION = "Session ID"


@TRACE_READERS.register("burstgpt")
class BurstGptTraceReader(CsvTraceReader):
    """BurstGPT request logs; failed (zero-response) rows are dropped and counted."""

    name = "burstgpt"
    description = ("BurstGPT: Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type "
                   "[, Session ID, Elapsed time]; failed rows dropped")
    layout = _LAYOUT

    @classmethod
    def sniff(cls, head: Head) -> bool:
        return head.kind == "csv" and {*_LAYOUT.required, "Model", "Log Type"} <= set(head.names)

    def columns_for(self, names: tuple[str, ...]) -> ColumnMap:
        # Session IDs appear only in the later BurstGPT files.
        if _SESSION not in names:
            return _LAYOUT
        return ColumnMap(_LAYOUT.arrival, _LAYOUT.prompt, _LAYOUT.output, roles={"session_id": _SESSION})

    def adjust(self, batch: RequestBatch) -> RequestBatch:
        failed = batch.output_tokens == 0
        if not failed.any():
            return batch
        kept = batch.take(~failed)
        kept.dropped = int(failed.sum())
        return kept
