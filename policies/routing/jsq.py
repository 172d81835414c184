"""Join-the-shortest-queue routing and its sampled variant, power of two choices."""

from __future__ import annotations

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
        # One (load, id) tuple per instance, compared in C: this runs for every arrival over
        # every instance, where a key function's call per instance was most of routing's cost.
        metric = self.load
        if metric == "tokens":
            return min([(inst.pending_tokens, inst.id) for inst in instances])[1]
        if metric == "requests":
            return min([(inst.num_requests, inst.id) for inst in instances])[1]
        return min([(instance_load(inst, metric), inst.id) for inst in instances])[1]


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
