"""The Past-Future scheduler's admission (LightLLM; POLICY_SPECS.md section 4).

At every batch-formation point the policy estimates the *future peak* KV
memory of the running batch plus the candidate (``policies.admission.peak``)
and admits the candidate only if that peak fits. Remaining output lengths
come from ``lengths``:

* ``history`` (Past-Future): each running request's final length is drawn
  from the sliding window of completed output lengths *conditioned on what it
  has already generated*; a waiting candidate's from the window unconditionally
  (``policies.admission.length_history``). ``K = min(max_scenarios,
  min_samples // n_running + 1)`` independent scenarios are drawn once per step
  and the candidate must fit in every one of them: need = max over scenarios.
* ``oracle``: the true remaining lengths (the paper's "theoretical optimum").

Admit iff ``need < (1 - reserve) x C`` (C = the instance's KV tokens, blocks x
block size) and fewer than ``max_running`` requests would run; the step
builder still enforces the token budget and the immediate fit. An admitted
candidate stays in the scenarios for the next candidates of the same step.
Swapped requests count as running (they come back before anything new).
Paged memory rounds each request up to whole blocks, so each request's held
tokens are counted with ``block_size - 1`` tokens of slack: with true lengths
and whole-prompt prefill the estimate is then an upper bound, and the oracle
never evicts.

``decode_invariant`` is False: the estimate changes as the batch decodes (a
refused candidate may fit a few steps later), so the engine steps one step at
a time while requests wait.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, PrivateAttr

from policies.admission.length_history import LengthHistory
from policies.admission.peak import future_peaks
from policies.admission.sla_abort import SlaAdmission
from simulator.policy_api import ADMISSION_POLICIES, PolicyContext, RequestView, SchedulerView, StepBuilder


@ADMISSION_POLICIES.register("past_future")
class PastFutureAdmission(SlaAdmission):
    """Peak-based admission with remaining lengths from the history window (or the truth).

    Defaults are LightLLM's server (POLICY_SPECS.md 4.5): a window of 200
    lengths seeded with 100 copies of 6000 (a deliberately pessimistic cold
    start: the policy behaves conservatively until the window fills with real
    lengths), 5% reserve, at most 5 scenarios, 200 samples.

    Attributes:
        lengths: ``history`` (Past-Future) or ``oracle`` (true lengths).
        window: completed output lengths kept.
        initial_output_tokens, initial_copies: the seed of the window.
        reserve: fraction of KV capacity the future peak must leave free.
        max_scenarios, min_samples: K = min(max_scenarios, min_samples // n_running + 1).
        max_running: most requests running at once (None: no limit beyond the batch policy's).
    """

    lengths: Literal["history", "oracle"] = "history"
    window: int = Field(default=200, gt=0)
    initial_output_tokens: int = Field(default=6000, gt=0)
    initial_copies: int = Field(default=100, ge=0)
    reserve: float = Field(default=0.05, ge=0, lt=1)
    max_scenarios: int = Field(default=5, gt=0)
    min_samples: int = Field(default=200, gt=0)
    max_running: int | None = Field(default=None, gt=0)
    decode_invariant: ClassVar[bool] = False
    _rng: np.random.Generator | None = PrivateAttr(None)
    _history: LengthHistory | None = PrivateAttr(None)
    _builder: StepBuilder | None = PrivateAttr(None)
    _held: np.ndarray = PrivateAttr(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _remaining: np.ndarray = PrivateAttr(default_factory=lambda: np.zeros((1, 0), dtype=np.int64))

    def setup(self, context: PolicyContext) -> None:
        self._start(context.rng)

    def on_finish(self, request: RequestView, now_s: float) -> None:
        self._ensure_setup()
        self._history.add(request.generated_tokens)

    def fits(self, request: RequestView, state: SchedulerView, builder: StepBuilder) -> bool:
        if builder is not self._builder:
            self._start_step(state, builder)
        if self.max_running is not None and self._held.size >= self.max_running:
            return False
        slack = state.block_size - 1
        held = np.append(self._held, request.known_tokens + slack)
        remaining = np.hstack((self._remaining, self._draw([request], self._remaining.shape[0], new=True)))
        need = int(future_peaks(held, remaining).max())
        if need >= (1 - self.reserve) * state.kv_total_blocks * state.block_size:
            return False
        self._held, self._remaining = held, remaining
        return True

    # ------------------------------------------------------------------ parts
    def _start_step(self, state: SchedulerView, builder: StepBuilder) -> None:
        """Draw this step's scenarios for the batch as it stands (running and swapped requests)."""
        self._ensure_setup()
        self._builder = builder
        batch = (*state.running, *state.swapped)
        self._held = np.array([r.known_tokens + state.block_size - 1 for r in batch], dtype=np.int64)
        self._remaining = self._draw(batch, self._scenarios(len(batch)), new=False)

    def _scenarios(self, running: int) -> int:
        if self.lengths == "oracle" or running == 0:
            return 1
        return min(self.max_scenarios, self.min_samples // running + 1)

    def _draw(self, requests, scenarios: int, new: bool) -> np.ndarray:
        """Remaining output tokens of ``requests`` in each scenario: ``(scenarios, len(requests))``.

        ``new`` marks waiting candidates: one that has generated nothing draws
        its length unconditionally; every other request is conditioned on what
        it has generated (running ones, and candidates evicted mid-decode).
        """
        decoded = np.array([r.generated_tokens for r in requests], dtype=np.int64)
        if self.lengths == "oracle":
            truth = np.array([r.output_tokens for r in requests], dtype=np.int64)
            return np.broadcast_to(truth - decoded, (scenarios, decoded.size)).copy()
        caps = np.array([self.cap(r) for r in requests], dtype=np.int64)
        if new and not decoded.any():
            return self._history.draw_new(self._rng, caps, scenarios)
        return self._history.draw_final(self._rng, decoded, caps, scenarios) - decoded

    def _ensure_setup(self) -> None:
        if self._history is None:  # used without setup() (tests, notebooks): a fixed seed
            self._start(np.random.default_rng(0))

    def _start(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._history = LengthHistory(self.window, self.initial_output_tokens, self.initial_copies)
