"""The per-request recorder: each column holds the field it is named after, in recording order."""

from __future__ import annotations

import math

from simulator.engine.request import Request, RequestSpec, RequestStatus
from simulator.metrics.recorder import RequestRecorder
from simulator.metrics.summary import REQUEST_COLUMNS, REQUEST_DTYPES


def _request(request_id: int) -> Request:
    """A request whose recorded fields all differ, so a column holding another field shows."""
    spec = RequestSpec(arrival_s=1.25 + request_id, prompt_tokens=300 + request_id, output_tokens=40,
                       session_id=f"s{request_id}", tenant="acme", priority=7, slo_class="gold")
    request = Request(request_id, spec)
    request.instance_id, request.status = 3, RequestStatus.FINISHED
    request.generated_tokens, request.computed_tokens = 39, 338
    request.first_scheduled_s, request.first_token_s = 2.5, 2.75
    request.last_token_s, request.finish_s, request.max_token_gap_s = 9.5, 9.5, 0.125
    request.num_preemptions, request.prefix_hit_tokens, request.recomputed_tokens = 2, 64, 11
    return request


def _expected(request: Request, status: str) -> dict:
    return {"request_id": request.id, "arrival_s": request.arrival_s, "instance_id": request.instance_id,
            "status": status, "reject_reason": "", "prompt_tokens": request.prompt_tokens,
            "output_tokens": request.output_tokens, "generated_tokens": request.generated_tokens,
            "first_scheduled_s": request.first_scheduled_s, "first_token_s": request.first_token_s,
            "last_token_s": request.last_token_s, "finish_s": request.finish_s,
            "max_token_gap_s": request.max_token_gap_s, "num_preemptions": request.num_preemptions,
            "prefix_hit_tokens": request.prefix_hit_tokens, "recomputed_tokens": request.recomputed_tokens,
            "tenant": "acme", "priority": 7, "slo_class": "gold", "session_id": request.session_id}


def test_each_column_holds_its_own_field():
    recorder = RequestRecorder()
    request = _request(5)
    recorder.record(request, "finished")
    assert len(recorder) == 1
    assert set(recorder.columns) == set(REQUEST_COLUMNS)
    assert {name: values[0] for name, values in recorder.columns.items()} == _expected(request, "finished")


def test_absent_times_and_labels_are_nan_and_empty():
    recorder = RequestRecorder()
    request = Request(0, RequestSpec(arrival_s=0.5, prompt_tokens=10, output_tokens=5))
    request.status, request.reject_reason = RequestStatus.REJECTED, "too long"
    recorder.record(request, "rejected")
    row = recorder.to_frame().iloc[0]
    assert row["instance_id"] == -1 and row["reject_reason"] == "too long" and row["session_id"] == ""
    assert all(math.isnan(row[name]) for name in ("first_scheduled_s", "first_token_s", "last_token_s", "finish_s"))


def test_the_table_has_the_declared_dtypes_with_rows_and_without():
    """Numeric columns are converted with their declared dtype (not inferred), so an empty table
    has them too, and rows come out sorted by request id with their values."""
    recorder = RequestRecorder()
    assert dict(recorder.to_frame().dtypes.astype(str)) == REQUEST_DTYPES
    for request_id in (9, 4):
        recorder.record(_request(request_id), "finished")
    frame = recorder.to_frame()
    assert dict(frame.dtypes.astype(str)) == REQUEST_DTYPES
    assert list(frame["request_id"]) == [4, 9]
    assert frame.iloc[0].to_dict() == _expected(_request(4), "finished")
