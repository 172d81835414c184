"""Join-the-shortest-queue routing and its sampled variant, power of two choices."""

from __future__ import annotations

from operator import attrgetter
from typing import Sequence

from pydantic import Field, PrivateAttr

from policies.routing.load import LoadMetric, instance_load
from simulator.policy_api import ROUTERS, InstanceView, Policy, PolicyContext, RequestView


@ROUTERS.register("jsq")
class JoinShortestQueue(Policy):
    """Sends each arrival to the least-loaded instance (lowest id on ties).

    Attributes:
        load: ``requests`` (held requests), ``tokens`` (tokens still to compute,
            Splitwise's pending tokens) or ``kv`` (KV blocks used and queued).
    """

    load: LoadMetric = "requests"

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int:
        # This runs for every arrival over every instance: the loads are read by attrgetter (in C,
        # no Python frame per instance) and compared as they are; ids matter only on a tie.
        metric = self.load
        if metric in _LOAD_ATTRIBUTE:
            loads = list(map(_LOAD_ATTRIBUTE[metric], instances))
        else:
            loads = [instance_load(inst, metric) for inst in instances]
        least = min(loads)
        position = loads.index(least)
        chosen = instances[position].id
        # A tie (idle instances, mostly): visit only the tied positions, found by index() in C.
        for _ in range(loads.count(least) - 1):
            position = loads.index(least, position + 1)
            if instances[position].id < chosen:
                chosen = instances[position].id
        return chosen


_LOAD_ATTRIBUTE = {"tokens": attrgetter("pending_tokens"), "requests": attrgetter("num_requests")}


@ROUTERS.register("power_of_two")
class PowerOfTwoChoices(Policy):
    """Samples ``choices`` distinct instances at random and joins the least loaded of them."""

    load: LoadMetric = "requests"
    choices: int = Field(2, ge=1)
    _rng = PrivateAttr(None)

    def setup(self, context: PolicyContext) -> None:
        self._rng = context.rng

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int:
        k = min(self.choices, len(instances))
        picks = self._rng.choice(len(instances), size=k, replace=False)
        best = min((instances[int(i)] for i in picks), key=lambda inst: (instance_load(inst, self.load), inst.id))
        return best.id
