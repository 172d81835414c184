"""The cluster: instances, the router asked on every arrival, and the arrival process.

The cluster owns request bookkeeping at the top level: it creates ``Request``
objects as the workload's specs arrive, rejects those no instance could ever
hold (with the reason), asks the router for the rest, and records every
request exactly once when it ends. ``done`` fires when the workload is
exhausted and every arrived request has ended.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import simpy

from simulator.engine.instance import Instance
from simulator.engine.request import FINISHED, REJECTED, Request, RequestSpec
from simulator.engine.session import SessionSpec
from simulator.engine.workflow import SessionRunner
from simulator.errors import SimulationError
from simulator.metrics.recorder import RequestRecorder


class Cluster:
    """Instances plus a router; routes arrivals and tracks request conservation.

    Args:
        env: the SimPy environment.
        router: the routing policy.
        recorder: where ended requests are written.
        max_context_tokens: the model's context limit.
    """

    def __init__(self, env: simpy.Environment, router, recorder: RequestRecorder,
                 max_context_tokens: int, block_size: int) -> None:
        self.env, self.router, self.recorder = env, router, recorder
        self.max_context_tokens = max_context_tokens
        self.instances: list[Instance] = []
        self.pool = None  # auto-scaling states (simulator.engine.scaling); None: every instance routable
        self.active: dict[int, Request] = {}
        self.arrived = 0
        self.arrivals_done = False
        self.done = env.event()
        self._waiters: dict[int, simpy.Event] = {}
        self._capacity_bounds: tuple[int, int, int] | None = None  # (instances, smallest, largest)
        self.sessions = SessionRunner(env, self.submit_spec, self.completion, block_size, self._check_done)

    def add_instance(self, instance: Instance) -> None:
        self.instances.append(instance)

    # -------------------------------------------------------------- arrivals
    def start_arrivals(self, specs: Iterable[RequestSpec]) -> simpy.Process:
        return self.env.process(self._arrivals(specs))

    def _arrivals(self, specs: Iterable[RequestSpec | SessionSpec]):
        for spec in specs:
            delay = spec.arrival_s - self.env.now
            if delay > 0:
                yield self.env.timeout(delay)
            if isinstance(spec, SessionSpec):
                self.sessions.start(spec)
            else:
                self.submit(Request(self.arrived, spec))
        self.arrivals_done = True
        self._check_done()

    def submit_spec(self, spec: RequestSpec) -> Request:
        """Create, route and return the request for ``spec`` (used by sessions)."""
        request = Request(self.arrived, spec)
        self.submit(request)
        return request

    def completion(self, request: Request) -> simpy.Event:
        """An event that fires when ``request`` ends (finished or rejected)."""
        event = self._waiters.get(request.id)
        if event is None:
            event = self._waiters[request.id] = self.env.event()
        return event

    def submit(self, request: Request) -> None:
        """Route one arrived request, or reject it with the reason."""
        self.arrived += 1
        self.active[request.id] = request
        reason = self._never_fits(request)
        offered = self._able_to_hold(request) if reason is None else ()
        if reason is None and not offered:
            reason = "no active instance can hold it (auto-scaling has none running)"
        if reason is None:
            target = self.router.route(request, offered, self.env.now)
            if target is None:
                reason = "the router found no instance for it"
            # (Offered every instance, as usual, the router's choice can hold it: all were checked.)
            elif not 0 <= target < len(self.instances) or (offered is not self.instances
                                                           and not self._can_hold(target, request)):
                raise SimulationError(f"router {type(self.router).__name__} returned instance "
                                      f"{target} for request {request.id}; it must be the id of "
                                      f"one of the instances it was offered")
            else:
                self.instances[target].enqueue(request)
                return
        self.reject(request, reason)

    def _able_to_hold(self, request: Request) -> Sequence[Instance]:
        """Routable instances whose KV can hold the request at its largest (all of them, usually)."""
        need = -(-(request.prompt_tokens + request.max_output_tokens) // self.instances[0].block_size)
        if need <= self._capacities()[0]:
            return self._routable(self.instances)
        return self._routable([i for i in self.instances if need <= i.kv.total_blocks - i.kv.watermark_blocks])

    def _routable(self, instances: Sequence[Instance]) -> Sequence[Instance]:
        """Leave out instances auto-scaling has not started, is starting or is draining."""
        pool = self.pool
        if pool is None or pool.all_active:
            return instances
        return [i for i in instances if pool.accepts(i.id)]

    def _can_hold(self, target: int, request: Request) -> bool:
        if self.pool is not None and not self.pool.accepts(target):
            return False
        instance = self.instances[target]
        need = -(-(request.prompt_tokens + request.max_output_tokens) // instance.block_size)
        return need <= instance.kv.total_blocks - instance.kv.watermark_blocks

    def _capacities(self) -> tuple[int, int]:
        """The smallest and largest KV blocks one request can have on an instance.

        Fixed once the instances exist, so computed once rather than by scanning
        every instance on every arrival (6% of a 64-instance run's time).
        """
        bounds = self._capacity_bounds
        if bounds is None or bounds[0] != len(self.instances):
            capacities = [i.kv.total_blocks - i.kv.watermark_blocks for i in self.instances]
            bounds = self._capacity_bounds = (len(self.instances), min(capacities), max(capacities))
        return bounds[1], bounds[2]

    def _never_fits(self, request: Request) -> str | None:
        total = request.prompt_tokens + request.max_output_tokens
        if total > self.max_context_tokens:
            return (f"prompt {request.prompt_tokens} + max output {request.max_output_tokens} tokens "
                    f"exceed the model's context of {self.max_context_tokens}")
        largest = self._capacities()[1]
        need = -(-total // self.instances[0].block_size)
        if need > largest:
            return (f"needs {need} KV blocks for {total} tokens; the largest instance holds {largest}")
        return None

    # ------------------------------------------------------------ completion
    def reject(self, request: Request, reason: str) -> None:
        request.status = REJECTED
        request.reject_reason = reason
        self.request_done(request)

    def request_done(self, request: Request) -> None:
        """Record a finished or rejected request (called by instances and by ``reject``)."""
        if self.active.pop(request.id, None) is None:
            raise SimulationError(f"request {request.id} ended twice")
        self.recorder.record(request, "finished" if request.status is FINISHED
                             else "rejected")
        waiter = self._waiters.pop(request.id, None)
        if waiter is not None:
            waiter.succeed()
        self._check_done()

    def _check_done(self) -> None:
        if (self.arrivals_done and not self.active and not self.sessions.open
                and not self.done.triggered):
            self.done.succeed()

    def record_unfinished(self) -> None:
        """At the horizon, write the requests still in flight as unfinished."""
        for request in sorted(self.active.values(), key=lambda r: r.id):
            self.recorder.record(request, "unfinished")
        self.active.clear()
