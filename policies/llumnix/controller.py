"""Llumnix's global scheduler: periodic migration pairing, priorities and auto-scaling.

Every ``interval_s`` the controller computes each instance's migration
freeness (``policies.llumnix.freeness``: head-of-line queued demand, priority
headroom, -inf while draining). Instances below ``threshold`` are sources,
active instances above it are destinations; the least free source is paired
with the freest destination, the next with the next, and each pair migrates
one request (the mechanism - ``ClusterActions.migrate`` - does the stages, the
handshake and the aborts). The candidate is a decoding request of the lowest
priority, and among those the shortest (least to copy, Llumnix's default),
the longest, or the latest admitted. An instance takes part in at most
``max_migrations_per_instance`` migrations at a time.

With ``migration: false`` nothing migrates: together with the ``infaas``
router and ``scaling`` this is the paper's INFaaS++ with auto-scaling.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import Field, PrivateAttr

from policies.llumnix.dispatch import HeadroomFractions, headroom_in_blocks
from policies.llumnix.freeness import freeness
from policies.llumnix.scaler import AutoScaler, ScalingSettings
from simulator.policy_api import CLUSTER_CONTROLLERS, ClusterActions, InstanceView, Policy, RequestView


@CLUSTER_CONTROLLERS.register("llumnix")
class LlumnixController(Policy):
    """Migration pairing by freeness, and optional auto-scaling (``scaling``)."""

    migration: bool = True
    interval_s: float = Field(default=0.1, gt=0)
    threshold: float = 8.0
    candidate: Literal["shortest", "longest", "latest"] = "shortest"
    max_migrations_per_instance: int = Field(default=1, ge=1)
    headroom: HeadroomFractions = Field(default_factory=lambda: {1: 0.3})
    pre_copy: bool = True
    max_stages: int = Field(default=8, ge=1)
    final_stage_blocks: int = Field(default=1, ge=0)
    scaling: ScalingSettings | None = None

    _actions: ClusterActions | None = PrivateAttr(None)

    def cluster_problem(self, num_instances: int) -> str | None:
        return None if self.scaling is None else self.scaling.cluster_problem(num_instances)

    def bind_cluster(self, actions: ClusterActions) -> None:
        self._actions = actions
        if self.migration:
            actions.every(self.interval_s, self.pair_and_migrate)
        if self.scaling is not None:
            AutoScaler(self.scaling, actions).start()

    # -------------------------------------------------------------- pairing
    def pair_and_migrate(self, now_s: float) -> None:
        actions = self._actions
        load = self._migration_freeness()
        sources = sorted((i for i in load if load[i] < self.threshold), key=lambda i: (load[i], i))
        targets = sorted((i for i in load if load[i] > self.threshold and actions.accepting(i)),
                         key=lambda i: (-load[i], i))
        busy = Counter()
        for record in actions.migrations_in_flight:
            busy[record.source] += 1
            busy[record.destination] += 1
        for source, destination in zip(sources, targets):
            if max(busy[source], busy[destination]) >= self.max_migrations_per_instance:
                continue
            request = self._candidate(actions.instances[source], actions.instances[destination], load[destination])
            if request is not None:
                actions.migrate(request, destination, pre_copy=self.pre_copy, max_stages=self.max_stages,
                                final_stage_blocks=self.final_stage_blocks)
                busy[source] += 1
                busy[destination] += 1

    def _migration_freeness(self) -> dict[int, float]:
        actions = self._actions
        load = {}
        for instance in actions.instances:
            state = actions.instance_state(instance.id)
            if state in ("active", "draining"):
                load[instance.id] = freeness(instance, whole_queue=False, draining=state == "draining",
                                             headroom=headroom_in_blocks(instance, self.headroom))
        return load

    def _candidate(self, source: InstanceView, destination: InstanceView, free: float) -> RequestView | None:
        """The request to move: decoding, not already moving, lowest priority first.

        It must fit the destination and leave it above the threshold (``free``:
        the destination's freeness now), or the move would only make the
        destination the next source.
        """
        actions = self._actions
        room = destination.kv_free_blocks - destination.kv_total_blocks // 100  # leave the watermark
        # Free virtual blocks at the destination, and the batch it would then have.
        virtual_free = free * max(destination.num_running, 1)
        batch_after = destination.num_running + 1
        best, best_key = None, None
        for request in source.running:
            if request.generated_tokens < 1 or request.pending_compute_tokens != 1 or actions.migrating(request.id):
                continue
            tokens = source.tokens_computed(request)
            blocks = -(-(tokens + 1) // source.block_size)
            if blocks >= room or (virtual_free - blocks) / batch_after <= self.threshold:
                continue
            key = (request.priority, self._order(request, tokens))
            if best_key is None or key < best_key:
                best, best_key = request, key
        return best

    def _order(self, request: RequestView, tokens: int) -> float:
        if self.candidate == "shortest":
            return tokens
        if self.candidate == "longest":
            return -tokens
        return -request.admitted_seq
