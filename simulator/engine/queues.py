"""The request queues of one instance and the counters routers read.

``waiting`` holds requests without KV (new arrivals and recompute victims, the
latter at the front); ``running`` holds admitted requests in admission order
(vLLM preempts from its tail); ``swapped`` holds requests whose KV sits in
host DRAM. ``pending_tokens`` - tokens still to push through the model before
each request's next token - is kept incrementally so routing is O(1).
"""

from __future__ import annotations

from collections import deque

from simulator.engine.request import RUNNING, Request, SWAPPED, WAITING
from simulator.errors import SimulationError


class InstanceQueues:
    """Waiting, running and swapped requests of one instance."""

    def __init__(self) -> None:
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.swapped: deque[Request] = deque()
        self.pending_tokens = 0
        self._admissions = 0

    @property
    def num_requests(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.swapped)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.swapped)

    def enqueue(self, request: Request) -> None:
        request.status = WAITING
        self.waiting.append(request)
        self.pending_tokens += request.pending_compute_tokens

    def admit(self, request: Request) -> None:
        """Move a waiting or swapped request into the running batch."""
        if self.waiting and self.waiting[0] is request:
            self.waiting.popleft()
        elif request.status is SWAPPED:
            self.swapped.remove(request)
        else:
            self.waiting.remove(request)
        request.status = RUNNING
        request.admitted_seq = self.next_admission()
        self.running.append(request)

    def next_admission(self) -> int:
        """The admission sequence number of the next request to join the running batch."""
        self._admissions += 1
        return self._admissions - 1

    def requeue_front(self, request: Request, lost_tokens: int) -> None:
        """A recompute victim goes back to the head of the waiting queue."""
        self.running.remove(request)
        request.status = WAITING
        self.waiting.appendleft(request)
        self.pending_tokens += lost_tokens

    def park_swapped(self, request: Request) -> None:
        self.running.remove(request)
        request.status = SWAPPED
        self.swapped.append(request)

    def remove_finished(self, finished: list[Request]) -> None:
        """Take ``finished`` out of the running batch: the requests of it that just finished, which
        are all of its requests no longer RUNNING (every other way out of RUNNING leaves the list)."""
        running = self.running
        if 8 * len(finished) <= len(running):
            try:
                for request in finished:
                    running.remove(request)  # identity, in C: cheaper than a pass in Python for a few
            except ValueError:
                raise SimulationError(f"request {request.id} finished but was not in the running batch") from None
            return
        kept = [r for r in running if r.status is RUNNING]
        if len(kept) != len(running) - len(finished):
            raise SimulationError(f"{len(finished)} requests finished but {len(running) - len(kept)} of the "
                                  f"running batch are no longer running")
        self.running = kept

    def drop_waiting(self, request: Request) -> None:
        """Take a waiting request out for good (rejected)."""
        self.waiting.remove(request)
        self.pending_tokens -= request.pending_compute_tokens
