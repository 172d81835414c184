"""What policies see and may do: the only simulator module ``policies/`` imports.

Policies are small pydantic models whose fields are their YAML parameters
(unknown or ill-typed parameters are refused with the field named). They read
requests and instances through the read-only ``RequestView`` and
``InstanceView`` protocols and act only through the ``StepBuilder`` (batching)
or by returning a decision (routing, admission). Mechanisms - KV accounting,
commits, swaps, transfers - stay in the simulator.

Kinds and when they are called:

* ``Router.route`` - on every arrival, picks an instance id (or None to reject).
  ``least_loaded`` finds the instance holding the fewest requests or tokens in one pass.
* ``BatchPolicy.schedule`` - every engine step, fills the step builder.
* ``AdmissionPolicy.admit`` - asked by batch policies before admitting a waiting request.
* ``Controller`` - a cluster-level policy (``policies.controller``) that acts over time
  through ``ClusterActions``: periodic callbacks, moving requests and KV between
  instances. Routers may ask for the same actions by defining ``bind_cluster``.
* ``WorkflowPolicy`` (``policies.workflow``) - when an agent workflow's call ends, how long
  to retain its KV for the next call; what to do when that time runs out; optionally where
  its calls go (``place``). ``EvictionPolicy`` (``policies.eviction``) - which retained
  workflows give their memory back when a step needs it. Both read ``WorkflowView``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from simulator.engine.actions import ClusterActions
from simulator.engine.handoff import Handoff
from simulator.engine.links import Flow
from simulator.engine.load_scan import least_loaded
from simulator.engine.request import RequestStatus
from simulator.engine.step import Refusal, StepBuilder, StepLimits, StepPlan
from simulator.engine.workflow_kv import Workflow as WorkflowView
from simulator.strict_numbers import refuse_booleans_as_numbers
from simulator.registry import (ADMISSION_POLICIES, BATCH_POLICIES, CLUSTER_CONTROLLERS,
                                EVICTION_POLICIES, ROUTERS, WORKFLOW_POLICIES)

__all__ = [
    "ADMISSION_POLICIES", "BATCH_POLICIES", "CLUSTER_CONTROLLERS", "EVICTION_POLICIES", "ROUTERS",
    "WORKFLOW_POLICIES", "AdmissionPolicy", "BatchPolicy", "ClusterActions", "Controller", "Flow", "Handoff", "InstanceView", "Policy", "PolicyContext",
    "Refusal", "RequestStatus", "RequestView", "Router", "SchedulerView", "StepBuilder", "StepLimits", "StepPlan",
    "EvictionPolicy", "WorkflowPolicy", "WorkflowView", "least_loaded",
]


class RequestView(Protocol):
    """Read-only view of a request. ``output_tokens`` (the true length) is for oracle policies only."""

    id: int
    arrival_s: float
    prompt_tokens: int
    max_output_tokens: int
    output_tokens: int
    computed_tokens: int
    generated_tokens: int
    status: RequestStatus
    admitted_seq: int
    num_preemptions: int
    first_token_s: float | None
    last_token_s: float | None

    @property
    def known_tokens(self) -> int: ...

    @property
    def pending_compute_tokens(self) -> int: ...

    @property
    def priority(self) -> int: ...

    @property
    def tenant(self) -> str: ...

    @property
    def session_id(self) -> str | None: ...


class InstanceView(Protocol):
    """Read-only view of an instance, as routers and controllers see it."""

    id: int
    gpu_name: str
    tp: int
    block_size: int
    tag: str

    @property
    def num_running(self) -> int: ...

    @property
    def num_waiting(self) -> int: ...

    @property
    def num_requests(self) -> int: ...

    @property
    def pending_tokens(self) -> int: ...

    @property
    def kv_total_blocks(self) -> int: ...

    @property
    def kv_free_blocks(self) -> int: ...

    @property
    def kv_used_blocks(self) -> int: ...

    @property
    def running(self) -> Sequence[RequestView]:
        """Requests in the running batch (for controllers that pick requests to move)."""

    @property
    def waiting(self) -> Sequence[RequestView]:
        """Requests queued without KV, head first."""

    def tokens_computed(self, request: RequestView) -> int:
        """Tokens of a request whose KV the instance holds now (exact inside fast-forward runs)."""


class SchedulerView(Protocol):
    """What a batch policy reads on its own instance each step."""

    @property
    def waiting(self) -> Sequence[RequestView]: ...

    @property
    def running(self) -> Sequence[RequestView]: ...

    @property
    def swapped(self) -> Sequence[RequestView]: ...

    @property
    def kv_free_blocks(self) -> int: ...

    @property
    def kv_total_blocks(self) -> int: ...

    @property
    def block_size(self) -> int: ...

    @property
    def now_s(self) -> float:
        """The current simulated time (for policies that act on how long a request has waited)."""

    def blocks_to_admit(self, request: RequestView, tokens: int) -> int:
        """Free KV blocks ``request`` needs to start with ``tokens`` tokens, watermark included."""

    def cached_prefix_tokens(self, request: RequestView) -> int:
        """Tokens of a waiting request that its prefix-cache hit would skip if admitted now."""


@dataclass(frozen=True)
class PolicyContext:
    """What the composition root hands a policy once, before the run.

    Attributes:
        rng: this policy's own random stream (spawned from the experiment seed).
        num_instances: instances in the cluster.
        block_size: KV block size in tokens.
        kv_bytes_per_token: KV bytes of one token of the model.
        max_context_tokens: the model's context limit.
        instance_id: the instance a per-instance policy serves (None for cluster policies).
        instance_tag: that instance's pool tag (``cluster.instances[].tag``: "prompt", "token",
            "mixed" ...; None for cluster policies).
    """

    rng: np.random.Generator
    num_instances: int
    block_size: int
    kv_bytes_per_token: float
    max_context_tokens: int
    instance_id: int | None = None
    instance_tag: str | None = None


class Policy(BaseModel):
    """Base of every policy: fields are parameters; internal state uses private attributes.

    Every parameter must be finite: a NaN or infinite float anywhere in a field (inside
    mappings, lists and nested models too) is refused with the field's dotted location.
    """

    model_config = ConfigDict(extra="forbid", frozen=False, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        return refuse_booleans_as_numbers(cls, data)

    @model_validator(mode="after")
    def _parameters_are_finite(self) -> Policy:
        for loc, value in _floats(self, ()):
            if not math.isfinite(value):
                raise ValidationError.from_exception_data(
                    type(self).__name__, [{"type": "finite_number", "loc": loc, "input": value}])
        return self

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # A private attribute lives in __pydantic_private__, where normal lookup misses it and
        # reaches pydantic's __getattr__ through an AttributeError raised inside, and that probes
        # the attribute's default with hasattr, which raises again (~1.3 us a read; pydantic issue
        # #12081). A property per private attribute is found by the first lookup (~0.08 us):
        # policies read their state on every arrival and step.
        super().__pydantic_init_subclass__(**kwargs)
        for name, attribute in cls.__private_attributes__.items():
            if name not in cls.__dict__:
                bound = hasattr(attribute.default, "__get__")  # pydantic returns such a default bound
                type.__setattr__(cls, name, _private_reader(name, bound))

    def setup(self, context: PolicyContext) -> None:
        """Called once before the simulation starts; default does nothing."""

    def cluster_problem(self, num_instances: int) -> str | None:
        """Why these parameters cannot work on a cluster of ``num_instances`` instances, or None.

        Asked when an experiment is validated, so the error names the field before anything runs.
        """
        return None


def _private_reader(name: str, bound: bool) -> property:
    """A read-only property for the private attribute ``name`` (writes still go through pydantic,
    which stores them in ``__pydantic_private__``). ``bound``: its default is a descriptor, which
    pydantic returns bound; the property then asks pydantic (it must still shadow a reader a
    parent class installed for the same name)."""
    if bound:
        def read(self: BaseModel) -> Any:
            return BaseModel.__getattr__(self, name)
    else:
        def read(self: BaseModel) -> Any:
            try:
                return self.__pydantic_private__[name]
            except (KeyError, TypeError):
                # Not set (or no private state yet, mid-construction): pydantic's error.
                return BaseModel.__getattr__(self, name)
    return property(read, doc=f"private attribute {name}")


def _floats(value: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], float]]:
    """Every float in a policy's parameters (fields of nested models, mapping keys and values,
    sequence items) with its location."""
    if isinstance(value, (float, np.floating)):
        yield loc, float(value)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _floats(getattr(value, name), (*loc, name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _floats(key, (*loc, key))
            yield from _floats(item, (*loc, key))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            yield from _floats(item, (*loc, index))


@runtime_checkable
class Router(Protocol):
    """Chooses the instance for a newly arrived request (None rejects it)."""

    def setup(self, context: PolicyContext) -> None: ...

    def route(self, request: RequestView, instances: Sequence[InstanceView], now_s: float) -> int | None: ...


@runtime_checkable
class AdmissionPolicy(Protocol):
    """Decides whether a waiting request may join the running batch now.

    ``decode_invariant`` (a class attribute, default False) declares that a
    refusal cannot turn into an admission while the running batch only
    decodes and no memory is freed; it lets the engine fast-forward decode
    stretches while requests wait. ``reads_running`` (a class attribute; the
    policies here default to True) says whether ``admit`` reads the running
    batch's requests; False lets a batch policy plan around a held decode run
    (see ``BatchPolicy``).
    """

    def setup(self, context: PolicyContext) -> None: ...

    def admit(self, request: RequestView, state: SchedulerView, builder: StepBuilder) -> bool: ...

    def on_finish(self, request: RequestView, now_s: float) -> None: ...


@runtime_checkable
class BatchPolicy(Protocol):
    """Decides, once per engine step, which requests compute how many tokens.

    Optional: ``steady_decode(state) -> bool``, called after a decode-only
    step that holds every running request, says whether the policy would
    make the same decisions every following step until a request finishes,
    a request arrives or memory runs out. When true the engine fast-forwards
    those steps; a policy without the method is stepped one step at a time.
    ``steady_through_finishes`` (a class attribute, default False) declares
    more: while nothing waits, the plan after a finish is the previous decode
    batch without the finished requests, in the same order (and the policy's
    ``on_step_end`` is its only reaction to a finish); the engine's runs then go
    on through finishes instead of re-planning.

    Optional too: ``plans_around_held`` (a property, default False) and
    ``schedule_around_held(state, builder, now_s) -> bool``. When an arrival cuts
    a decode run short and ``plans_around_held`` is true, the engine holds the
    run (its requests' counters stand behind) and asks ``schedule_around_held``
    instead of ``schedule``: the policy must give the held batch its decodes with
    ``builder.add_held_decodes()`` before anything else and must not read the
    held batch's requests (newcomers that started beside it, ``builder.beside_held``,
    are its own to add); it returns False, leaving the builder unchanged, when it
    cannot (the engine then brings the batch up to date and calls ``schedule``).
    """

    def setup(self, context: PolicyContext) -> None: ...

    def bind_admission(self, admission: AdmissionPolicy) -> None: ...

    def schedule(self, state: SchedulerView, builder: StepBuilder, now_s: float) -> None: ...


@runtime_checkable
class Controller(Protocol):
    """A cluster-level policy that acts over time (migration planner, auto-scaler).

    ``bind_cluster`` is called once before the run with the ``ClusterActions``;
    the controller typically registers periodic callbacks there.
    """

    def setup(self, context: PolicyContext) -> None: ...

    def bind_cluster(self, actions: ClusterActions) -> None: ...


@runtime_checkable
class WorkflowPolicy(Protocol):
    """Retention of an agent workflow's KV between its calls (``simulator.engine.retention``).

    ``on_call_end`` returns the seconds to keep the finished call's blocks pinned
    on its GPU for the next call (None or 0: free them into the LRU prefix cache);
    ``on_expire`` returns ``"release"``, ``"drop"`` or ``"offload"`` when that time
    runs out with no call. Optional: ``on_call_released(workflow, new_tokens, wait_s,
    now_s)`` and ``on_session_end(workflow, now_s)`` to learn; ``place(request,
    workflow, instances, now_s) -> int | None`` to choose the instance of a call
    (None: the router decides); ``reload_patience_s`` (attribute, default 0): how
    long a call whose context is in host DRAM waits for GPU memory to reload it.
    """

    def setup(self, context: PolicyContext) -> None: ...

    def on_call_end(self, workflow: WorkflowView, now_s: float) -> float | None: ...

    def on_expire(self, workflow: WorkflowView, now_s: float) -> str: ...


@runtime_checkable
class EvictionPolicy(Protocol):
    """Which idle retained workflows give back their GPU memory when a step needs it.

    ``order`` returns the victims among the candidates, first victim first. ``head``
    is the waiting call the memory is wanted for - the batch policy's optional
    ``next_admission(state)``, else the head of the queue; None when running calls
    need the memory to grow - with its workflow (``head_workflow``, None for a call of no workflow);
    a policy may leave candidates out to protect them from that call, which then
    waits (an instance with nothing running evicts them anyway). ``action`` says
    whether a victim is ``"offload"``-ed to host DRAM or ``"drop"``-ped.
    Optional: ``bind_workflow(policy)`` to read the workflow policy's predictions.
    """

    def setup(self, context: PolicyContext) -> None: ...

    def order(self, candidates: Sequence[WorkflowView], now_s: float, head: RequestView | None,
              head_workflow: WorkflowView | None) -> list[WorkflowView]: ...

    def action(self, workflow: WorkflowView, now_s: float) -> str: ...
