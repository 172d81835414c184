"""The running batch loses exactly its finished requests, or the engine says which invariant broke."""

from __future__ import annotations

import pytest

from simulator.engine.queues import InstanceQueues
from simulator.engine.request import Request, RequestSpec, RequestStatus
from simulator.errors import SimulationError


def _queues(size: int) -> InstanceQueues:
    queues = InstanceQueues()
    for i in range(size):
        request = Request(i, RequestSpec(arrival_s=0.0, prompt_tokens=8, output_tokens=4))
        request.status = RequestStatus.RUNNING
        queues.running.append(request)
    return queues


def _finish(queues: InstanceQueues, ids: list[int]) -> list[Request]:
    finished = [r for r in queues.running if r.id in ids]
    for request in finished:
        request.status = RequestStatus.FINISHED
    return finished


@pytest.mark.parametrize("finishing", [[3], list(range(10))], ids=["few, removed in place", "many, rebuilt"])
def test_finished_requests_leave_and_the_rest_keep_their_order(finishing):
    queues = _queues(20)
    queues.remove_finished(_finish(queues, finishing))
    assert [r.id for r in queues.running] == [i for i in range(20) if i not in finishing]


def test_a_finished_request_missing_from_the_batch_is_an_error():
    queues = _queues(20)
    stranger = Request(99, RequestSpec(arrival_s=0.0, prompt_tokens=8, output_tokens=4))
    with pytest.raises(SimulationError, match="request 99 finished but was not in the running batch"):
        queues.remove_finished([stranger])


def test_a_request_that_left_running_without_finishing_is_an_error():
    queues = _queues(20)
    finished = _finish(queues, list(range(10)))
    queues.running[15].status = RequestStatus.SWAPPED  # left RUNNING but is still in the list
    with pytest.raises(SimulationError, match="10 requests finished but 11 of the running batch"):
        queues.remove_finished(finished)
