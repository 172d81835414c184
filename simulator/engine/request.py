"""Requests as token counters.

A request is not a state machine of phases. It is a few counters that move:
``computed_tokens`` catches up with the known tokens (prompt plus what has been
generated), and each time it does a new token is sampled. Prefill, chunked
prefill, prefix-cache hits, recompute after preemption and migration all follow
from these counters; nothing else encodes "which phase" a request is in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RequestStatus(enum.Enum):
    """Where a request is in its life; terminal states are FINISHED and REJECTED."""

    WAITING = "waiting"
    RUNNING = "running"
    SWAPPED = "swapped"
    TRANSFERRING = "transferring"  # between instances (hand-off, migration), in no queue
    FINISHED = "finished"
    REJECTED = "rejected"


# The members as module constants, which the engine compares against. On Python 3.11 the enum
# metaclass defines __getattr__, so every ``RequestStatus.X`` read goes through a slow attribute
# hook (~75 ns, against ~10 ns for a global; Python 3.12 dropped it), and the engine reads a
# status about twenty times per request.
WAITING = RequestStatus.WAITING
RUNNING = RequestStatus.RUNNING
SWAPPED = RequestStatus.SWAPPED
TRANSFERRING = RequestStatus.TRANSFERRING
FINISHED = RequestStatus.FINISHED
REJECTED = RequestStatus.REJECTED
_ENDED = (FINISHED, REJECTED)


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What a workload says about a request before it reaches the cluster.

    Attributes:
        arrival_s: arrival time in simulated seconds.
        prompt_tokens: input length.
        output_tokens: true output length (hidden from non-oracle policies).
        max_output_tokens: the user's cap; defaults to the true length.
        prefix_hashes: hashes of the prompt's leading blocks of ``prefix_block_tokens``
            tokens each; equal leading hashes mean a shared KV prefix.
        prefix_block_tokens: tokens per entry of ``prefix_hashes``.
        session_id, tenant, priority, slo_class: labels for policies and reports.
    """

    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    max_output_tokens: int | None = None
    prefix_hashes: tuple[int, ...] = ()
    prefix_block_tokens: int = 16
    session_id: str | None = None
    tenant: str = "default"
    priority: int = 0
    slo_class: str = "default"


class Request:
    """A request inside the simulation: counters, timestamps and its KV footprint.

    Policies see requests through ``simulator.policy_api.RequestView`` and must
    not write to them; the engine moves the counters when it commits a step.
    """

    __slots__ = (
        "id", "spec", "arrival_s", "prompt_tokens", "output_tokens", "max_output_tokens",
        "computed_tokens", "generated_tokens", "status", "instance_id", "admitted_seq",
        "first_scheduled_s", "first_token_s", "last_token_s", "finish_s", "max_token_gap_s",
        "num_preemptions", "prefix_hit_tokens", "recomputed_tokens", "reject_reason",
        "predicted_output_tokens",
    )

    def __init__(self, request_id: int, spec: RequestSpec) -> None:
        self.id = request_id
        self.spec = spec
        self.arrival_s = spec.arrival_s
        self.prompt_tokens = spec.prompt_tokens
        cap = spec.max_output_tokens if spec.max_output_tokens is not None else spec.output_tokens
        self.max_output_tokens = cap
        self.output_tokens = min(spec.output_tokens, cap)
        self.computed_tokens = 0
        self.generated_tokens = 0
        self.status = WAITING
        self.instance_id: int | None = None
        # Order of admission into the running batch; vLLM preempts the latest first.
        self.admitted_seq = -1
        self.first_scheduled_s: float | None = None
        self.first_token_s: float | None = None
        self.last_token_s: float | None = None
        self.finish_s: float | None = None
        self.max_token_gap_s = 0.0
        self.num_preemptions = 0
        self.prefix_hit_tokens = 0
        self.recomputed_tokens = 0
        self.reject_reason: str | None = None
        self.predicted_output_tokens: int | None = None

    # Derived quantities are properties so they can never drift from the counters.
    @property
    def known_tokens(self) -> int:
        """Tokens whose identity is known: the prompt plus every generated token."""
        return self.prompt_tokens + self.generated_tokens

    @property
    def pending_compute_tokens(self) -> int:
        """Tokens still to push through the model before the next token is sampled."""
        return self.known_tokens - self.computed_tokens

    @property
    def is_prefilling(self) -> bool:
        """True while more than one token must be computed (a prompt or a recompute)."""
        return self.pending_compute_tokens > 1 or self.generated_tokens == 0

    @property
    def remaining_output_tokens(self) -> int:
        return self.output_tokens - self.generated_tokens

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    @property
    def priority(self) -> int:
        return self.spec.priority

    @property
    def session_id(self) -> str | None:
        return self.spec.session_id

    @property
    def is_done(self) -> bool:
        return self.status in _ENDED

    def __repr__(self) -> str:
        return (f"Request(id={self.id}, status={self.status.value}, prompt={self.prompt_tokens}, "
                f"computed={self.computed_tokens}, generated={self.generated_tokens}/{self.output_tokens})")
