"""Auto-scaling mechanism: instances that are provisioned, started and drained at run time.

The cluster is built with its largest pool of instances up front; the pool
says which of them exist at a given moment. An instance is

* ACTIVE: provisioned and routable (every instance starts so);
* STARTING: provisioned (paid for) but not yet routable - a new instance
  loads its weights and warms up for a start-up delay before serving;
* DRAINING: provisioned, no longer routable, finishing or migrating away the
  requests it holds (Llumnix drains by migration; without migration the
  requests simply run to completion);
* INACTIVE: not provisioned: no routing, no idle energy, no instance-hours.

A drain ends (the instance becomes INACTIVE) once the instance holds no
request and no KV block - a migration still copying out of it, or a
reservation for one coming in, keeps it provisioned. Policies decide when to
start and drain (``ClusterActions.start_instance`` / ``drain_instance``);
this module only keeps the states, the timing and the provisioned seconds.
"""

from __future__ import annotations

import enum
from typing import Sequence

import simpy

from simulator.errors import SimulationError

# How often a draining instance is checked for emptiness (simulated seconds).
DRAIN_POLL_S = 0.05


class InstanceState(enum.Enum):
    """Where an instance is in its provisioned life."""

    ACTIVE = "active"
    STARTING = "starting"
    DRAINING = "draining"
    INACTIVE = "inactive"


class InstancePool:
    """The state of every instance, when it changed, and its provisioned seconds.

    Args:
        env: the SimPy environment.
        instances: the cluster's instances (all of them, provisioned or not).
    """

    def __init__(self, env: simpy.Environment, instances: Sequence) -> None:
        self.env, self.instances = env, instances
        self.states: list[InstanceState] = []
        self._provisioned_since: list[float | None] = []
        self._provisioned_s: list[float] = []
        self.scale_ups = 0
        self.scale_downs = 0
        self.changed = False  # whether any instance ever left ACTIVE

    def _sync(self) -> None:
        """Instances added after the pool was made start ACTIVE (the runner builds them first)."""
        while len(self.states) < len(self.instances):
            self.states.append(InstanceState.ACTIVE)
            self._provisioned_since.append(self.env.now)
            self._provisioned_s.append(0.0)

    # ----------------------------------------------------------------- queries
    def state(self, instance_id: int) -> InstanceState:
        self._sync()
        return self.states[instance_id]

    def accepts(self, instance_id: int) -> bool:
        """Whether new requests (routed or migrated) may go to the instance."""
        return self.state(instance_id) is InstanceState.ACTIVE

    @property
    def all_active(self) -> bool:
        self._sync()
        return not self.changed or all(s is InstanceState.ACTIVE for s in self.states)

    def provisioned_s(self, instance_id: int, now: float) -> float:
        """Seconds the instance has been provisioned (STARTING, ACTIVE or DRAINING) up to ``now``."""
        self._sync()
        since = self._provisioned_since[instance_id]
        return self._provisioned_s[instance_id] + (0.0 if since is None else now - since)

    def instance_hours(self, now: float) -> float:
        return sum(self.provisioned_s(i, now) for i in range(len(self.instances))) / 3600.0

    # ---------------------------------------------------------------- actions
    def start(self, instance_id: int, startup_s: float) -> simpy.Event:
        """Provision an INACTIVE instance; it becomes ACTIVE (routable) after ``startup_s``."""
        self._require(instance_id, InstanceState.INACTIVE, "start")
        if startup_s < 0:
            raise SimulationError(f"a start-up delay must be non-negative, got {startup_s}")
        self._set(instance_id, InstanceState.STARTING)
        self.scale_ups += 1
        done = self.env.event()
        self.env.process(self._warm_up(instance_id, startup_s, done))
        return done

    def drain(self, instance_id: int) -> simpy.Event:
        """Stop routing to an ACTIVE instance; it becomes INACTIVE once it holds nothing."""
        self._require(instance_id, InstanceState.ACTIVE, "drain")
        self._set(instance_id, InstanceState.DRAINING)
        if self.env.now > 0:  # a drain at time 0 sets the starting pool; it scales nothing down
            self.scale_downs += 1
        done = self.env.event()
        if self._empty(instance_id):
            self._retire(instance_id, done)
        else:
            self.env.process(self._wait_empty(instance_id, done))
        return done

    # ------------------------------------------------------------- mechanism
    def _warm_up(self, instance_id: int, startup_s: float, done: simpy.Event):
        yield self.env.timeout(startup_s)
        self._set(instance_id, InstanceState.ACTIVE)
        done.succeed(instance_id)

    def _wait_empty(self, instance_id: int, done: simpy.Event):
        while not self._empty(instance_id):
            yield self.env.timeout(DRAIN_POLL_S)
        self._retire(instance_id, done)

    def _retire(self, instance_id: int, done: simpy.Event) -> None:
        # A retired instance is switched off: a restart finds no prefix cache.
        self.instances[instance_id].kv.drop_cached()
        self._set(instance_id, InstanceState.INACTIVE)
        done.succeed(instance_id)

    def _empty(self, instance_id: int) -> bool:
        instance = self.instances[instance_id]
        # Retained KV (a workflow's pinned blocks) is KV the instance still holds, too.
        return not instance.queues.has_work() and not instance.kv.holdings and not instance.kv.pins

    def _require(self, instance_id: int, state: InstanceState, what: str) -> None:
        self._sync()
        if not 0 <= instance_id < len(self.instances):
            raise SimulationError(f"cannot {what} instance {instance_id}: no such instance")
        if self.states[instance_id] is not state:
            raise SimulationError(f"cannot {what} instance {instance_id}: it is "
                                  f"{self.states[instance_id].value}, not {state.value}")

    def _set(self, instance_id: int, state: InstanceState) -> None:
        now = self.env.now
        provisioned = state is not InstanceState.INACTIVE
        since = self._provisioned_since[instance_id]
        if not provisioned and since is not None:
            self._provisioned_s[instance_id] += now - since
            self._provisioned_since[instance_id] = None
        elif provisioned and since is None:
            self._provisioned_since[instance_id] = now
        self.states[instance_id] = state
        self.changed = True
