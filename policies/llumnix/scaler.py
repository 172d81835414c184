"""Llumnix's auto-scaling: add an instance when the cluster is short of free memory, drain one when idle.

Every ``interval_s`` the scaler reads the cluster's freeness - free blocks per
running request over the active instances, after virtual usage - and

* below ``scale_up_below`` starts the lowest-numbered inactive instance,
  which serves after ``startup_s`` (weights loading, warm-up);
* above ``scale_down_above`` drains the active instance running the fewest
  requests: the mechanism stops routing to it, and the migration pairing
  sees it as carrying a fake request of infinite usage (freeness -inf), so its
  requests migrate away; without migration they run to completion there.

One scaling action is under way at a time: nothing is decided while an
instance is starting or draining. The paper averages per-instance freeness;
the cluster-wide ratio is used here because one idle instance (freeness = its
whole memory) would otherwise dominate the average.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.llumnix.freeness import queued_demand_blocks
from simulator.policy_api import ClusterActions


class ScalingSettings(BaseModel):
    """Auto-scaling thresholds (freeness: free blocks per running request) and timing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_instances: int = Field(default=1, ge=1)
    max_instances: int | None = Field(default=None, ge=1)
    initial_instances: int | None = Field(default=None, ge=1)
    scale_up_below: float = 10.0
    scale_down_above: float = 60.0
    startup_s: float = Field(default=10.0, ge=0)
    interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> ScalingSettings:
        if self.scale_up_below >= self.scale_down_above:
            raise ValueError("scale_up_below must be below scale_down_above")
        if self.max_instances is not None and self.max_instances < self.min_instances:
            raise ValueError("max_instances must be at least min_instances")
        return self


    def cluster_problem(self, num_instances: int) -> str | None:
        """A count beyond the cluster's instances (the pool cannot grow past them), or None."""
        for name in ("min_instances", "max_instances", "initial_instances"):
            value = getattr(self, name)
            if value is not None and value > num_instances:
                return f"scaling.{name}: {value} exceeds the cluster's {num_instances} instances"
        return None


class AutoScaler:
    """Applies ``ScalingSettings`` to a cluster through its actions."""

    def __init__(self, settings: ScalingSettings, actions: ClusterActions) -> None:
        self.settings, self.actions = settings, actions
        count = len(actions.instances)
        self.max_instances = min(settings.max_instances or count, count)
        self.min_instances = min(settings.min_instances, self.max_instances)

    def start(self) -> None:
        """Release the instances beyond the initial count (they are empty at time 0) and start ticking."""
        initial = self.settings.initial_instances or self.max_instances
        initial = max(self.min_instances, min(initial, self.max_instances))
        for instance in self.actions.instances[initial:]:
            self.actions.drain_instance(instance.id)
        self.actions.every(self.settings.interval_s, self.tick)

    def cluster_freeness(self) -> float:
        """Free blocks per running request over the active instances, queued demand counted as used."""
        active = [i for i in self.actions.instances if self.actions.instance_state(i.id) == "active"]
        free = sum(i.kv_total_blocks - i.kv_used_blocks - queued_demand_blocks(i, whole_queue=True) for i in active)
        return free / max(sum(i.num_running for i in active), 1)

    def tick(self, now_s: float) -> None:
        actions = self.actions
        states = [actions.instance_state(i.id) for i in actions.instances]
        if "starting" in states or "draining" in states:
            return
        active = [i for i, state in zip(actions.instances, states) if state == "active"]
        value = self.cluster_freeness()
        if value < self.settings.scale_up_below and len(active) < self.max_instances:
            idle = next(i for i, state in zip(actions.instances, states) if state == "inactive")
            actions.start_instance(idle.id, self.settings.startup_s)
        elif value > self.settings.scale_down_above and len(active) > self.min_instances:
            victim = min(active, key=lambda i: (i.num_requests, -i.id))
            actions.drain_instance(victim.id)
