"""Azure LLM inference traces, 2023 (Splitwise) and 2024 (DynamoLLM, week-long).

Columns ``TIMESTAMP, ContextTokens, GeneratedTokens``: an ISO date-time per
request (2023 without a zone, 2024 with one), prompt and output tokens.
Times become seconds since midnight of the first request's day. The 2024
files hold tens of millions of rows; like every CSV reader this one streams
them in chunks, so memory does not grow with the file.
"""

from __future__ import annotations

from workloads.readers.base import ColumnMap, CsvTraceReader
from workloads.registry import TRACE_READERS


@TRACE_READERS.register("azure")
class AzureTraceReader(CsvTraceReader):
    """Azure LLM inference trace 2023/2024 (TIMESTAMP, ContextTokens, GeneratedTokens)."""

    name = "azure"
    description = "Azure LLM inference traces 2023 and 2024: TIMESTAMP, ContextTokens, GeneratedTokens"
    layout = ColumnMap("TIMESTAMP", "ContextTokens", "GeneratedTokens", time_unit="datetime")
