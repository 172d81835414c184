"""Load-blind routers: round robin and uniform random."""

from __future__ import annotations

from typing import Sequence

from pydantic import PrivateAttr

from simulator.policy_api import ROUTERS, InstanceView, Policy, PolicyContext, RequestView


@ROUTERS.register("round_robin")
class RoundRobinRouter(Policy):
    """Sends the i-th arrival to instance ``i mod n``."""

    _next: int = PrivateAttr(0)

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int:
        target = self._next % len(instances)
        self._next += 1
        return instances[target].id


@ROUTERS.register("random")
class RandomRouter(Policy):
    """Sends each arrival to an instance drawn uniformly from the policy's own stream."""

    _rng = PrivateAttr(None)

    def setup(self, context: PolicyContext) -> None:
        self._rng = context.rng

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int:
        return instances[int(self._rng.integers(len(instances)))].id
