"""Mooncake / Kimi traces (FAST'25): JSON lines with prefix-block hashes.

Each record is ``{timestamp, input_length, output_length, hash_ids}``:
``timestamp`` in milliseconds, and ``hash_ids`` the hashes of the prompt's
512-token blocks, remapped so that equal leading ids mean a shared prefix.
They become ``RequestSpec.prefix_hashes`` with ``prefix_block_tokens=512``;
the engine's KV cache chains them into its own block identities.
"""

from __future__ import annotations

from workloads.readers.base import ColumnMap, JsonlTraceReader
from workloads.registry import TRACE_READERS

MOONCAKE_BLOCK_TOKENS = 512


@TRACE_READERS.register("mooncake")
class MooncakeTraceReader(JsonlTraceReader):
    """Mooncake JSONL: timestamp (ms), input_length, output_length, hash_ids (512-token blocks)."""

    name = "mooncake"
    description = "Mooncake JSONL: timestamp (ms), input_length, output_length, hash_ids of 512-token blocks"
    layout = ColumnMap("timestamp", "input_length", "output_length", time_unit="ms",
                       roles={"prefix_hashes": "hash_ids"}, prefix_block_tokens=MOONCAKE_BLOCK_TOKENS)
