"""Join-the-shortest-queue routing and its sampled variant, power of two choices."""

from __future__ import annotations

from typing import Sequence

from pydantic import Field, PrivateAttr

from policies.routing.load import LoadMetric, instance_load
from simulator.policy_api import ROUTERS, InstanceView, Policy, PolicyContext, RequestView, least_loaded


@ROUTERS.register("jsq")
class JoinShortestQueue(Policy):
    """Sends each arrival to the least-loaded instance (lowest id on ties).

    Attributes:
        load: ``requests`` (held requests), ``tokens`` (tokens still to compute,
            Splitwise's pending tokens) or ``kv`` (KV blocks used and queued).
    """

    load: LoadMetric = "requests"

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int | None:
        if self.load == "kv":
            return min(instances, key=lambda inst: (instance_load(inst, "kv"), inst.id)).id
        # Every instance is compared on every arrival: one compiled pass in the simulator.
        return least_loaded(instances, self.load)


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
