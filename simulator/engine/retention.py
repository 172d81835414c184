"""Workflow KV retention: keep an agent's KV between its calls, offload it, drop it, bring it back.

Between two calls of an agent task (while its tool runs) vLLM frees the
call's blocks into the LRU prefix cache, where other requests' allocations
evict them. The retention mechanism lets a workflow policy instead *pin* the
blocks on the GPU for a time-to-live (they are then neither free nor
evictable), and decide what happens when it expires: ``release`` (back to
the LRU cache), ``drop`` (freed at once) or ``offload`` (copied to the
instance's host DRAM tier over PCIe, then released on the GPU). A call whose
context sits in host DRAM is held back until the copy is loaded again
(allocated on the GPU, idle pins giving way to it in the eviction policy's
order, then the PCIe transfer); if it does not fit within the workflow
policy's ``reload_patience_s``, the call recomputes. The policy's ``place``
is asked first, and while the call waits: a call it sends elsewhere is not
reloaded. When the next step needs memory that pins hold, the eviction
policy orders the idle pinned workflows and each victim is offloaded or
dropped. A call placed on another instance releases the KV left behind (the
workflow is re-homed and recomputes its context there).

Every change of KV goes through ``Instance.defer_kv_action``, so blocks only
move at step boundaries (or on an idle instance) and fast-forward runs stay
equal to stepping. Simplifications: an offload's GPU blocks are released when
it is issued (the copy runs on a separate stream and overlaps compute; the
host copy is readable when the transfer ends), and transfers on one
instance's PCIe link run one after another.
"""

from __future__ import annotations

from typing import Sequence

import simpy

from simulator.engine.host import HostKVTier
from simulator.engine.request import FINISHED, Request
from simulator.engine.retention_pressure import evictable, needs, next_admission, reload_blocks
from simulator.engine.retention_stats import RetentionStats
from simulator.engine.session import SessionSpec
from simulator.engine.workflow_kv import Workflow

ACTIONS = ("release", "drop", "offload")
RELOAD_RETRY_S = 0.05  # how often a reload waiting for GPU memory tries again


class RetentionManager:
    """Pins, time-to-live timers, offloads and reloads of workflows' KV across a cluster.

    Args:
        env: the SimPy environment.
        instances: the cluster's instances (their ``kv_hooks`` are set to this manager).
        policy: the workflow policy (``on_call_end`` -> seconds to retain or None, ``on_expire``
            -> action, optional ``on_call_released``, ``on_session_end``, ``place``).
        eviction: the eviction policy (``order`` idle pinned workflows, ``action`` per victim).
        hosts: the host DRAM tier of each instance, by id.
        kv_bytes_per_token: KV bytes per token; block_size: tokens per block.
        sample_interval_s: how often KV use is sampled for the useful-KV measure.
    """

    def __init__(self, env: simpy.Environment, instances: Sequence, policy, eviction,
                 hosts: dict[int, HostKVTier], kv_bytes_per_token: float, block_size: int,
                 sample_interval_s: float = 1.0) -> None:
        self.env, self.instances, self.policy, self.eviction = env, instances, policy, eviction
        self.hosts, self.block_bytes = hosts, kv_bytes_per_token * block_size
        self.workflows: dict[str, Workflow] = {}
        self.pinned: dict[int, dict[str, Workflow]] = {i.id: {} for i in instances}
        self.link_free_s: dict[int, float] = {i.id: 0.0 for i in instances}
        self.stats = RetentionStats()
        self.block_size = block_size
        for instance in instances:
            instance.kv_hooks = self
        env.process(self._sample_every(sample_interval_s))

    # ------------------------------------------------------------ sessions
    def session_started(self, spec: SessionSpec) -> None:
        if spec.kind == "workflow" and spec.carries_context:
            self.workflows[spec.session_id] = Workflow(spec, released_s=self.env.now)

    def workflow_of(self, request: Request) -> Workflow | None:
        session = request.session_id
        return None if session is None else self.workflows.get(session)

    def before_call(self, session_id: str, index: int):
        """SimPy generator run before a call is sent: bring an offloaded context back first."""
        workflow = self.workflows.get(session_id)
        if workflow is None:
            return
        call = workflow.spec.calls[index]
        workflow.calls_released, workflow.last_kind = index + 1, call.kind
        wait_s = self.env.now - workflow.last_end_s if index else 0.0
        hook = getattr(self.policy, "on_call_released", None)
        if hook is not None:
            hook(workflow, call.new_prompt_tokens, wait_s, self.env.now)
        workflow.released_s = self.env.now
        workflow.releasing = True  # from now on its KV serves this call: no expiry, no eviction
        if workflow.tier != "host":
            return
        if self._moves_away(workflow):
            # Work stealing sends the call elsewhere: a copy loaded here would never be read.
            self._rehome_before_reload(workflow)
            return
        yield from self._reload(workflow)

    def call_ended(self, session_id: str, request: Request) -> None:
        """The session saw its call end (finished or rejected); the next call has not been sent."""
        workflow = self.workflows.get(session_id)
        if workflow is not None and workflow.active is request:
            workflow.active = None

    def session_ended(self, session_id: str) -> None:
        workflow = self.workflows.pop(session_id, None)
        if workflow is None:
            return
        hook = getattr(self.policy, "on_session_end", None)
        if hook is not None:
            hook(workflow, self.env.now)
        self._let_go(workflow)

    # ---------------------------------------------------------- placement
    def _moves_away(self, workflow: Workflow) -> bool:
        """Whether the workflow policy would place the call away from its home now (before any reload).

        Asked just before the call is sent, with no call yet (``request`` None); when no reload
        runs, routing happens at this same instant and agrees. All instances are offered (an
        auto-scaled pool may route to fewer: a call kept home then recomputes its context).
        """
        place = getattr(self.policy, "place", None)
        if place is None:
            return False
        target = place(None, workflow, self.instances, self.env.now)
        return target is not None and target != workflow.instance_id

    def _rehome_before_reload(self, workflow: Workflow) -> None:
        """The call of an offloaded workflow will go elsewhere: free the host copy instead of loading it."""
        self.stats.rehomed += 1
        self.stats.reloads_skipped += 1
        self._let_go(workflow)

    def placed(self, workflow: Workflow, request: Request, target: int) -> None:
        """A call of ``workflow`` goes to ``target``: KV retained elsewhere is released there."""
        workflow.active, workflow.releasing = request, False
        if workflow.instance_id is not None and workflow.instance_id != target and workflow.tier != "none":
            self.stats.rehomed += 1
            self._let_go(workflow)
        workflow.instance_id = target
        workflow.carried_tokens = workflow.context_tokens
        self.stats.carried_tokens += workflow.context_tokens

    # ----------------------------------------------------- instance hooks
    def before_free(self, instance, request: Request) -> None:
        """A call finished on ``instance``: ask the policy whether to pin its blocks, and for how long."""
        workflow = self.workflow_of(request)
        if workflow is None or request.status is not FINISHED:
            return
        workflow.calls_done += 1
        workflow.active = None  # the call is over (its session hears of it a moment later)
        self.stats.call_finished(workflow.carried_tokens, self.block_size, request.prefix_hit_tokens,
                                 request.recomputed_tokens)
        if workflow.samples:
            self.stats.resolve(workflow.samples, instance.id, request.prefix_hit_tokens // self.block_size)
            workflow.samples = []
        workflow.context_tokens = request.prompt_tokens + request.generated_tokens
        workflow.context_hashes = instance.kv.hashes(request)
        workflow.last_end_s = self.env.now
        if workflow.instance_id is not None and workflow.instance_id != instance.id:
            # The call ended away from what the workflow retains (it was migrated or handed off):
            # release that where it lives before the workflow's home moves here.
            self._let_go(workflow)
        workflow.instance_id = instance.id
        ttl_s = self.policy.on_call_end(workflow, self.env.now)
        self._forget(workflow)  # the old pin (if any) is replaced by the new one, or released
        if ttl_s is None or ttl_s <= 0:
            instance.kv.unpin(workflow.session_id)
            return
        pinned = instance.kv.pin(workflow.session_id, instance.kv.shared_hashes(request))
        if pinned == 0:
            return
        workflow.hashes = tuple(instance.kv.pins[workflow.session_id])
        workflow.tier, workflow.retained_since_s = "gpu", self.env.now
        workflow.expires_s = self.env.now + ttl_s
        self.pinned[instance.id][workflow.session_id] = workflow
        self.stats.pins += 1
        self.env.process(self._expire(workflow, workflow.generation, ttl_s))

    def before_plan(self, instance) -> None:
        """Before a step is planned: if the step needs memory that pins hold, evict some.

        Candidates are idle workflows and those whose call waits here without KV
        (their pin would only shorten its prefill); the call at the head of the
        queue keeps its pin, since that is the call the memory is wanted for.
        When only that call needs the memory, the eviction policy sees it and
        may protect retained workflows from it (it then waits for running calls
        to free memory); an instance with nothing running evicts whatever it
        takes, so that nothing waits forever.
        """
        pinned = self.pinned[instance.id]
        if not pinned:
            return
        kv, queues = instance.kv, instance.queues
        head = next_admission(instance)
        growth, start = needs(instance, head)
        deficit = max(growth, start) - kv.free_blocks
        if deficit <= 0:
            return
        # Running calls that must grow may take any pin, even that of the call waiting first.
        for_head = head if growth <= kv.free_blocks else None
        candidates = [w for w in pinned.values() if evictable(w, for_head)]
        victims = list(self.eviction.order(candidates, self.env.now, for_head,
                                           None if for_head is None else self.workflow_of(for_head)))
        if not queues.running:
            # Nothing running will free memory: any pin but the first call's own must go.
            chosen, own = set(map(id, victims)), None if head is None else self.workflow_of(head)
            victims += sorted((w for w in pinned.values() if id(w) not in chosen and w is not own),
                              key=lambda w: w.retained_since_s)
        for workflow in victims:
            if deficit <= 0:
                break
            action = self.eviction.action(workflow, self.env.now)
            deficit -= workflow.retained_blocks
            self.stats.pressure_evictions += 1
            self._apply(instance, workflow, action if action in ("offload", "drop") else "drop")

    # ------------------------------------------------------------ sampling
    def _sample_every(self, interval_s: float):
        while True:
            yield self.env.timeout(interval_s)
            self.stats.sample(self.instances, self.workflows.values(), self.env.now)

    # ------------------------------------------------------------ timers
    def _expire(self, workflow: Workflow, generation: int, ttl_s: float):
        yield self.env.timeout(ttl_s)
        if workflow.generation != generation or workflow.tier != "gpu" or not workflow.idle:
            return
        action = self.policy.on_expire(workflow, self.env.now)
        if action not in ACTIONS:
            raise ValueError(f"workflow policy returned {action!r} on expiry; expected one of {ACTIONS}")
        instance = self.instances[workflow.instance_id]
        self.stats.expiries += 1

        def act() -> None:
            if workflow.generation == generation and workflow.tier == "gpu" and workflow.idle:
                self._apply(instance, workflow, action)
        instance.defer_kv_action(act)

    # ------------------------------------------------------- KV movements
    def _apply(self, instance, workflow: Workflow, action: str) -> None:
        """At a step boundary: release, drop or offload a pinned workflow's blocks."""
        host = self.hosts.get(instance.id)
        nbytes = workflow.retained_blocks * self.block_bytes
        hashes = workflow.hashes
        self._forget(workflow)
        if action == "offload" and host is not None and host.can_hold(nbytes):
            host.store(nbytes)
            start = max(self.env.now, self.link_free_s[instance.id])
            self.link_free_s[instance.id] = start + host.transfer_time_s(nbytes)
            workflow.tier, workflow.hashes, workflow.host_bytes = "host", hashes, nbytes
            workflow.host_ready_s = self.link_free_s[instance.id]
            self.stats.offloads += 1
            self.stats.offloaded_bytes += nbytes
            instance.kv.unpin(workflow.session_id)  # the GPU copy stays in the LRU cache meanwhile
            return
        self.stats.drops += action != "release"
        instance.kv.unpin(workflow.session_id, drop=action != "release")

    def _reload(self, workflow: Workflow):
        """Bring an offloaded context back to its instance before the call is sent."""
        instance = self.instances[workflow.instance_id]
        host = self.hosts[instance.id]
        if workflow.host_ready_s > self.env.now:
            yield self.env.timeout(workflow.host_ready_s - self.env.now)
        if workflow.tier != "host":
            return
        # Memory for the copy may be short now; the policy may wait for running calls to free it.
        deadline = self.env.now + getattr(self.policy, "reload_patience_s", 0.0)
        while True:
            ok, present = yield from self._try_load(instance, workflow)
            if ok or self.env.now >= deadline:
                break
            if self._moves_away(workflow):
                # Work came to wait at home meanwhile: the call goes elsewhere and recomputes there.
                self._rehome_before_reload(workflow)
                return
            self.stats.reload_retries += 1
            yield self.env.timeout(RELOAD_RETRY_S)
        if not ok:
            self._forget(workflow)  # frees the host copy: the call recomputes its context
            self.stats.reload_failures += 1
            return
        if present:
            self.stats.gpu_hits_after_offload += 1
            return
        # The blocks are allocated; the call waits for the PCIe copy into them.
        nbytes = workflow.retained_blocks * self.block_bytes
        start = max(self.env.now, self.link_free_s[instance.id])
        self.link_free_s[instance.id] = start + host.transfer_time_s(nbytes)
        self.stats.reloads += 1
        self.stats.reloaded_bytes += nbytes
        yield self.env.timeout(self.link_free_s[instance.id] - self.env.now)

    def _try_load(self, instance, workflow: Workflow):
        """At the instance's next step boundary: pin the context, allocating what the GPU lost."""
        loaded = self.env.event()
        key, hashes = workflow.session_id, workflow.hashes

        def load() -> None:
            present = instance.kv.indexed_prefix(hashes) == len(hashes)
            ok = instance.kv.load_pinned(key, hashes)
            if not ok and self._make_room(instance, workflow):
                ok = instance.kv.load_pinned(key, hashes)
            if ok:  # the pin is tracked at once: this very boundary may need to evict it
                self.hosts[instance.id].release(workflow.host_bytes)
                workflow.tier, workflow.host_bytes, workflow.retained_since_s = "gpu", 0.0, self.env.now
                workflow.generation += 1
                self.pinned[instance.id][workflow.session_id] = workflow
            loaded.succeed((ok, present))
        instance.defer_kv_action(load)
        return (yield loaded)

    def _make_room(self, instance, workflow: Workflow) -> bool:
        """Evict idle pins, in the eviction policy's order, so that ``workflow``'s context can load.

        Its call is being sent: its KV is used now, before any idle workflow's, and once queued
        as a continuing call it could evict them anyway - waiting for memory instead, then giving
        up and recomputing the whole context, holds the call back for nothing. Room is also left
        for the running calls to grow, or the next step would evict the copy just loaded. Nothing
        is evicted unless the idle pins can cover the deficit. Returns whether they could.
        """
        kv = instance.kv
        missing, reusable = reload_blocks(kv, workflow.hashes)
        deficit = missing + reusable + needs(instance, None)[0] - kv.free_blocks
        candidates = [w for w in self.pinned[instance.id].values() if w.idle and w is not workflow]
        victims = list(self.eviction.order(candidates, self.env.now, None, None)) if deficit > 0 else []
        if sum(w.retained_blocks for w in victims) < deficit:
            return False
        for victim in victims:
            if deficit <= 0:
                break
            action = self.eviction.action(victim, self.env.now)
            deficit -= victim.retained_blocks
            self.stats.pressure_evictions += 1
            self.stats.reload_evictions += 1
            self._apply(instance, victim, action if action in ("offload", "drop") else "drop")
        return deficit <= 0

    def _let_go(self, workflow: Workflow) -> None:
        """Release whatever the workflow retains (its call went elsewhere, or it ended)."""
        if workflow.instance_id is None or workflow.tier == "none":
            return
        instance = self.instances[workflow.instance_id]
        tier, key = workflow.tier, workflow.session_id
        self._forget(workflow)
        if tier == "gpu":
            instance.defer_kv_action(lambda: instance.kv.unpin(key))

    def _forget(self, workflow: Workflow) -> None:
        """Mark the workflow as retaining nothing: its host copy is freed; the caller moves GPU blocks."""
        if workflow.instance_id is not None:
            self.pinned[workflow.instance_id].pop(workflow.session_id, None)
            if workflow.tier == "host":
                self.hosts[workflow.instance_id].release(workflow.host_bytes)
        workflow.tier, workflow.hashes, workflow.expires_s = "none", (), None
        workflow.host_bytes = 0.0
        workflow.generation += 1
