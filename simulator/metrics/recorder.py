"""Append-only per-request records, kept as columns so millions of rows stay small.

A request is recorded once, when it reaches a terminal state (finished or
rejected) or, at the end of the run, as unfinished. The Request object can
then be dropped. ``to_frame()`` gives the ``requests.csv`` table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from simulator.engine.request import Request
from simulator.metrics.summary import REQUEST_COLUMNS, REQUEST_DTYPES

COLUMN_ORDER = REQUEST_COLUMNS


def _time(value: float | None) -> float:
    return math.nan if value is None else value


def _column(values: list, dtype: str) -> np.ndarray | pd.Series:
    """A recorded column as its declared dtype. Told the dtype, numpy converts a list several
    times faster than pandas infers it (``to_frame`` of a 50k-request table: 55 -> 23 ms); text
    is kept as Python objects, which pandas 3 would otherwise turn into its string dtype."""
    return pd.Series(values, dtype=object) if dtype == "object" else np.array(values, dtype=dtype)


class RequestRecorder:
    """Collects one row per request in columnar lists."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in COLUMN_ORDER}

    def __len__(self) -> int:
        return len(self.columns["request_id"])

    def record(self, request: Request, status: str) -> None:
        c = self.columns
        c["request_id"].append(request.id)
        c["arrival_s"].append(request.arrival_s)
        c["instance_id"].append(-1 if request.instance_id is None else request.instance_id)
        c["status"].append(status)
        c["reject_reason"].append(request.reject_reason or "")
        c["prompt_tokens"].append(request.prompt_tokens)
        c["output_tokens"].append(request.output_tokens)
        c["generated_tokens"].append(request.generated_tokens)
        c["first_scheduled_s"].append(_time(request.first_scheduled_s))
        c["first_token_s"].append(_time(request.first_token_s))
        c["last_token_s"].append(_time(request.last_token_s))
        c["finish_s"].append(_time(request.finish_s))
        c["max_token_gap_s"].append(request.max_token_gap_s)
        c["num_preemptions"].append(request.num_preemptions)
        c["prefix_hit_tokens"].append(request.prefix_hit_tokens)
        c["recomputed_tokens"].append(request.recomputed_tokens)
        c["tenant"].append(request.tenant)
        c["priority"].append(request.priority)
        c["slo_class"].append(request.spec.slo_class)
        c["session_id"].append(request.session_id or "")

    def to_frame(self) -> pd.DataFrame:
        """The table sorted by request id (arrival order), with stable dtypes."""
        frame = pd.DataFrame({name: _column(self.columns[name], REQUEST_DTYPES[name]) for name in COLUMN_ORDER})
        return frame.sort_values("request_id", kind="stable").reset_index(drop=True)
