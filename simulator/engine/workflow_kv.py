"""A workflow as the retention mechanism tracks it, and the router wrapper that places its calls.

``Workflow`` is the state of one agent task between and during its calls:
where its KV lives (``tier``: nowhere, pinned on a GPU, or copied to host
DRAM), how much context it carries, and what it has done so far. Workflow
and eviction policies read it (``simulator.policy_api.WorkflowView``); only
the mechanism (``simulator.engine.retention``) writes it. The ``next_wait_s``
and ``calls_left`` properties read the workload's future and are for oracle
policies only, as ``output_tokens`` is for requests.

``WorkflowRouter`` wraps the configured router: a workflow policy that
defines ``place`` chooses the instance of a workflow's call (affinity, work
stealing); everything else goes to the router as before. Either way the
mechanism learns where the call went, so KV left behind on another instance
is released (re-homing by recompute).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from simulator.engine.request import RUNNING, Request
from simulator.engine.session import SessionSpec

if TYPE_CHECKING:
    from simulator.engine.retention import RetentionManager


@dataclass(slots=True, eq=False)
class Workflow:
    """One agent task as retention sees it (see the module docstring).

    Attributes:
        spec: the session (its calls' true tool waits are the future; oracles only).
        calls_done: calls that have finished; ``calls_released``: calls sent so far.
        context_tokens: tokens of context the next call carries (prompt and output so far).
        last_kind: the kind of the last released call ("task", "tool_result", ...).
        instance_id: where its last call ran or its KV lives (None before the first call).
        tier: "none", "gpu" (pinned), "host" (offloaded copy) or "loading".
        hashes: the indexed blocks it retains (pinned or offloaded).
        retained_since_s, expires_s: when the retention began and when its time-to-live ends.
        last_end_s: when its last call finished; ``released_s``: when its last call was released.
        active: the call in flight, if any.
    """

    spec: SessionSpec
    calls_done: int = 0
    calls_released: int = 0
    context_tokens: int = 0
    last_kind: str = ""
    instance_id: int | None = None
    tier: str = "none"
    hashes: tuple[int, ...] = ()
    retained_since_s: float = 0.0
    expires_s: float | None = None
    last_end_s: float = 0.0
    released_s: float = 0.0
    active: Request | None = None
    releasing: bool = False  # a call was released and is not placed yet (e.g. its KV is reloading)
    generation: int = 0  # bumped on every change of retention; stale timers compare it
    host_ready_s: float = 0.0
    host_bytes: float = 0.0
    carried_tokens: int = 0  # context the call in flight carried when it was placed
    context_hashes: tuple[int, ...] = ()  # index identities of the last call's blocks
    samples: list = field(default_factory=list)  # (instance, blocks, sample index) retained at each KV sample
    score: float = field(default=0.0)  # the eviction policy may keep its last score here

    @property
    def session_id(self) -> str:
        return self.spec.session_id

    @property
    def agent_type(self) -> str:
        return self.spec.agent_type

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    @property
    def retained_blocks(self) -> int:
        return len(self.hashes)

    @property
    def idle(self) -> bool:
        """Between calls: no call in flight or on its way (a retained KV then serves nobody yet)."""
        return self.active is None and not self.releasing

    # ------------------------------------------------------ the future (oracles)
    @property
    def calls_left(self) -> int:
        """True number of calls still to come after those released (oracle policies only)."""
        return len(self.spec.calls) - self.calls_released

    @property
    def next_wait_s(self) -> float | None:
        """True tool latency before the next call, None if there is none (oracle policies only)."""
        if self.calls_released >= len(self.spec.calls):
            return None
        return self.spec.calls[self.calls_released].wait_before_s

    @property
    def next_new_tokens(self) -> int | None:
        """True tokens the next call appends, None if there is none (oracle policies only)."""
        if self.calls_released >= len(self.spec.calls):
            return None
        return self.spec.calls[self.calls_released].new_prompt_tokens


class WorkflowRouter:
    """The configured router, with workflow calls placed by the workflow policy when it can.

    Args:
        router: the configured router (asked for everything the policy does not place).
        manager: the retention mechanism (knows workflows and where their KV is).
    """

    def __init__(self, router, manager: RetentionManager) -> None:
        self.router, self.manager = router, manager

    def setup(self, context) -> None:
        self.router.setup(context)

    def __getattr__(self, name: str):
        # bind_cluster and other optional hooks of the wrapped router stay visible.
        return getattr(self.router, name)

    def route(self, request: Request, instances: Sequence, now_s: float) -> int | None:
        workflow = self.manager.workflow_of(request)
        target = None
        place = getattr(self.manager.policy, "place", None)
        if workflow is not None and place is not None:
            target = place(request, workflow, instances, now_s)
            if target is not None and not any(i.id == target for i in instances):
                target = None  # the policy chose an instance that cannot hold this call
        if target is None:
            target = self.router.route(request, instances, now_s)
        if workflow is not None and target is not None:
            self.manager.placed(workflow, request, target)
        return target


def active_blocks(instance) -> int:
    """KV blocks held by requests in flight on ``instance`` (the KV a step can use now).

    Mid fast-forward run the blocks the run's steps have added so far are implied, not allocated.
    """
    kv = instance.kv
    implied = instance.kv_used_blocks - kv.used_blocks
    return implied + sum(kv.blocks_held(r) for r in instance.queues.running if r.status is RUNNING)
