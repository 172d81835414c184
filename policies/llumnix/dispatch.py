"""Llumnix's dispatch and the INFaaS++ baseline: send each arrival to the freest instance.

Both rank instances by freeness (``policies.llumnix.freeness``) with every
queued request's demand counted, so a long queue repels new arrivals.
Llumnix adds a per-priority headroom: an instance serving high-priority
requests looks fuller, so it receives fewer arrivals and keeps its batch
small. INFaaS++ is the paper's enhanced INFaaS baseline: the same load-aware
dispatch, no headroom (and, in its controller, no migration).

``load_report_interval_s`` (both routers): in Llumnix's implementation the
global scheduler dispatches on the instance loads its llumlets last reported,
polled every 50 ms, and does not update them for its own dispatches in
between (the paper's INFaaS++ shares that dispatch; we assume the reports too); so the arrivals of one
polling interval all go to the instance that was freest at the last report.
With an interval the routers rank instances by a snapshot of their freeness
ingredients taken at most that long ago (an instance first seen since is
read now); ``0`` (the default) reads every instance's exact state at each
arrival. ``count_own_dispatches`` adds each request dispatched since the
report to its instance's reported queue (a dispatcher that keeps its own
books between reports; Llumnix's does not).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Sequence

from pydantic import Field, PrivateAttr

from policies.llumnix.freeness import LoadSnapshot, freeness
from simulator.policy_api import ROUTERS, InstanceView, Policy, RequestView


# A priority's headroom: the fraction of an instance's KV held back while it serves that priority.
HeadroomFractions = dict[int, Annotated[float, Field(ge=0, lt=1)]]


def headroom_in_blocks(instance: InstanceView, fractions: dict[int, float]) -> dict[int, int]:
    """Each priority's headroom as blocks of this instance's KV."""
    return {priority: int(fraction * instance.kv_total_blocks) for priority, fraction in fractions.items()}


def freest(instances: Sequence[InstanceView], headroom: dict[int, float], priority: int | None = None,
           snapshot: dict[int, LoadSnapshot] | None = None) -> int:
    """The id of the instance with the highest dispatch freeness (the lowest id among equals).

    ``priority``: the arriving request's, whose headroom each candidate would have to hold.
    ``snapshot``: reported loads by instance id, used instead of the live state where present.
    """
    best_id, best = instances[0].id, None
    for instance in instances:
        seen = snapshot.get(instance.id, instance) if snapshot is not None else instance
        value = freeness(seen, whole_queue=True, headroom=headroom_in_blocks(instance, headroom),
                         arriving=priority)
        if best is None or value > best:
            best_id, best = instance.id, value
    return best_id


class _ReportedLoads(Policy):
    """The loads a dispatcher sees: live, or reported every ``load_report_interval_s``."""

    load_report_interval_s: float = Field(default=0.0, ge=0)
    count_own_dispatches: bool = False

    _snapshot: dict[int, LoadSnapshot] = PrivateAttr(default_factory=dict)
    _taken_s: float | None = PrivateAttr(None)

    def _reported(self, instances: Sequence[InstanceView], now_s: float) -> dict[int, LoadSnapshot] | None:
        if self.load_report_interval_s <= 0:
            return None
        interval = self.load_report_interval_s
        if self._taken_s is None or now_s >= self._taken_s + interval:
            # Reports arrive on a fixed period: the latest one was taken at the last multiple of it.
            self._taken_s = (now_s // interval) * interval
            self._snapshot = {}
        for instance in instances:
            if instance.id not in self._snapshot:
                self._snapshot[instance.id] = LoadSnapshot.of(instance)
        return self._snapshot

    def _dispatched(self, request: RequestView, instance_id: int) -> int:
        if self.load_report_interval_s > 0 and self.count_own_dispatches:
            seen = self._snapshot[instance_id]
            self._snapshot[instance_id] = replace(seen, pending_tokens=seen.pending_tokens + request.known_tokens)
        return instance_id


@ROUTERS.register("llumnix")
class LlumnixDispatch(_ReportedLoads):
    """Dispatch to the freest instance; ``headroom`` maps a priority to the KV fraction held back for it.

    Higher ``priority`` values are more important; priority 0 (the default) has no headroom.
    """

    headroom: HeadroomFractions = Field(default_factory=lambda: {1: 0.3})

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int:
        chosen = freest(instances, self.headroom, request.priority, self._reported(instances, now_s))
        return self._dispatched(request, chosen)


@ROUTERS.register("infaas")
class InfaasDispatch(_ReportedLoads):
    """INFaaS++: load-aware dispatch to the freest instance, with queued demand and no priorities."""

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int:
        return self._dispatched(request, freest(instances, {}, None, self._reported(instances, now_s)))
