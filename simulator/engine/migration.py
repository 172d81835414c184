"""Live migration of a running request between instances (Llumnix, OSDI 2024).

A migration moves a running request's KV cache to another instance while the
request keeps decoding on the source, so that its downtime does not grow with
its sequence length:

* pre-copy stages: each stage first asks the destination to pre-allocate the
  blocks the request holds now (the handshake; the destination may refuse for
  lack of memory), then copies the blocks added since the previous stage over
  the modelled link (the first stage copies everything). Decoding goes on
  meanwhile, so every stage is shorter than the one before;
* the final stage starts when the last stage added at most
  ``final_stage_blocks`` blocks: the source lets the request go at its next
  step boundary (the drain), the remaining blocks are copied, and the
  destination adopts the request into its running batch. Only this stage is
  downtime - the request computes nothing between leaving the source and
  joining the destination.

Stop-and-copy (``pre_copy=False``) is the same final stage alone: it stops
the request and copies its whole cache, so its downtime grows linearly.

A migration aborts, freeing whatever it reserved on the destination and
leaving the request where it was, when the destination lacks memory for a
stage, the request finished or was preempted on the source meanwhile, more
than ``max_stages`` pre-copy stages did not converge, or the destination
stopped accepting requests (drained by auto-scaling). A request aborted after
it had left the source goes back into the source's batch, its KV still there.

Reservations and releases change KV use from outside the engine loop, so they
run at the instance's next step boundary (``Instance.defer_kv_action``): KV
accounting and fast-forward runs then see them exactly as stepping does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import simpy

from simulator.engine.links import Flow
from simulator.engine.request import RUNNING, Request
from simulator.errors import SimulationError

COMPLETED = "completed"
ABORT_OUT_OF_MEMORY = "destination out of memory"
ABORT_FINISHED = "request finished"
ABORT_PREEMPTED = "request preempted"
ABORT_TOO_MANY_STAGES = "too many stages"
ABORT_DESTINATION_REMOVED = "destination removed"


@dataclass(frozen=True)
class MigrationSettings:
    """How a migration proceeds.

    Attributes:
        pre_copy: copy while the request decodes (live migration); False: stop-and-copy.
        max_stages: pre-copy stages allowed before the migration gives up.
        final_stage_blocks: stop pre-copying once a stage would copy at most this many new blocks.
    """

    pre_copy: bool = True
    max_stages: int = 8
    final_stage_blocks: int = 1

    def __post_init__(self) -> None:
        if self.max_stages < 1 or self.final_stage_blocks < 0:
            raise SimulationError(f"migration needs max_stages >= 1 and final_stage_blocks >= 0, got "
                                  f"{self.max_stages} and {self.final_stage_blocks}")


@dataclass
class MigrationRecord:
    """One migration: where from and to, how it went, and its downtime.

    ``outcome`` is ``"in progress"``, ``COMPLETED`` or one of the abort reasons.
    """

    request_id: int
    source: int
    destination: int
    started_s: float
    ended_s: float | None = None
    stages: int = 0
    blocks_copied: int = 0
    downtime_s: float | None = None
    outcome: str = "in progress"

    @property
    def completed(self) -> bool:
        return self.outcome == COMPLETED


class _Aborted(Exception):
    """Raised inside a migration's process to end it with a reason."""


class Migrator:
    """Runs migrations and keeps their records.

    Args:
        env: the SimPy environment.
        instances: the cluster's instances.
        send_kv: starts a KV transfer ``(source, destination, tokens) -> Flow``.
        accepts: whether an instance may receive requests now (auto-scaling's state).
    """

    def __init__(self, env: simpy.Environment, instances: Sequence, send_kv: Callable[[int, int, int], Flow],
                 accepts: Callable[[int], bool]) -> None:
        self.env, self.instances, self.send_kv, self.accepts = env, instances, send_kv, accepts
        self.records: list[MigrationRecord] = []
        self.in_flight: dict[int, MigrationRecord] = {}  # by request id

    @property
    def completed(self) -> int:
        return sum(1 for r in self.records if r.completed)

    def migrate(self, request: Request, destination: int, settings: MigrationSettings | None = None) -> simpy.Event:
        """Start moving a running request to ``destination``; the event's value is its ``MigrationRecord``."""
        source = request.instance_id
        if request.status is not RUNNING or source is None:
            raise SimulationError(f"only a running request can migrate; {request!r} is {request.status.value}")
        if not 0 <= destination < len(self.instances) or destination == source:
            raise SimulationError(f"request {request.id} cannot migrate from instance {source} to {destination}")
        if request.id in self.in_flight:
            raise SimulationError(f"request {request.id} is already migrating")
        record = MigrationRecord(request.id, source, destination, self.env.now)
        self.records.append(record)
        self.in_flight[request.id] = record
        done = self.env.event()
        self.env.process(self._run(record, request, settings or MigrationSettings(), done))
        return done

    # ------------------------------------------------------------- mechanism
    def _run(self, record: MigrationRecord, request: Request, settings: MigrationSettings, done: simpy.Event):
        attempt = _Attempt(self, record, request)
        try:
            if settings.pre_copy:
                yield from attempt.pre_copy(settings)
            yield from attempt.final_stage()
            record.outcome = COMPLETED
        except _Aborted as reason:
            attempt.undo()
            record.outcome = str(reason)
        record.ended_s = self.env.now
        del self.in_flight[request.id]
        done.succeed(record)


class _Attempt:
    """The state of one migration while it runs: blocks reserved and copied, whether the request left."""

    def __init__(self, migrator: Migrator, record: MigrationRecord, request: Request) -> None:
        self.migrator, self.record, self.request = migrator, record, request
        self.env = migrator.env
        self.source = migrator.instances[record.source]
        self.destination = migrator.instances[record.destination]
        self.preemptions = request.num_preemptions
        self.copied_tokens = 0  # tokens whose KV the destination holds
        self.reserved = 0  # blocks reserved there
        self.left = False  # the request has left the source's batch

    def pre_copy(self, settings: MigrationSettings):
        kv = self.source.kv
        while True:
            self._check_running()
            tokens = self.source.tokens_computed(self.request)
            added = kv.blocks_for_tokens(tokens) - kv.blocks_for_tokens(self.copied_tokens)
            if self.record.stages and added <= settings.final_stage_blocks:
                return
            if self.record.stages >= settings.max_stages:
                raise _Aborted(ABORT_TOO_MANY_STAGES)
            yield from self._reserve(kv.blocks_for_tokens(tokens))
            self._check_running()
            yield from self._copy(tokens)

    def final_stage(self):
        self._check_running()
        # The step in flight may compute one more token before the request stops.
        expected = self.source.kv.blocks_for_tokens(self.source.tokens_computed(self.request) + 1)
        yield from self._reserve(expected)
        self._check_running()
        left = yield self.source.depart(self.request)
        if not left:
            raise _Aborted(ABORT_FINISHED)
        self.left = True
        stopped = self.env.now
        if self.request.num_preemptions != self.preemptions or self.request.computed_tokens == 0:
            raise _Aborted(ABORT_PREEMPTED)  # defensive: preemption happens only while planning
        blocks = self.source.kv.blocks_for_tokens(self.request.computed_tokens)
        if blocks > self.reserved:  # a prefill chunk was in flight
            yield from self._reserve(blocks)
        yield from self._copy(self.request.computed_tokens)
        self._check_destination()
        source, request = self.source, self.request
        source.defer_kv_action(lambda: source.kv.free(request))
        self.destination.adopt(request)
        self.record.downtime_s = self.env.now - stopped

    def undo(self) -> None:
        """After an abort: free the destination's reservation; put a departed request back."""
        if self.reserved:
            destination, request = self.destination, self.request
            destination.defer_kv_action(lambda: destination.kv.free(request))
            self.reserved = 0
        if self.left:
            self.source.adopt(self.request)  # its KV never left the source

    # --------------------------------------------------------------- helpers
    def _check_running(self) -> None:
        request = self.request
        if request.is_done:
            raise _Aborted(ABORT_FINISHED)
        if (request.num_preemptions != self.preemptions or request.status is not RUNNING
                or request.instance_id != self.source.id):
            raise _Aborted(ABORT_PREEMPTED)
        self._check_destination()

    def _check_destination(self) -> None:
        if not self.migrator.accepts(self.destination.id):
            raise _Aborted(ABORT_DESTINATION_REMOVED)

    def _reserve(self, blocks: int):
        """The handshake: the destination pre-allocates ``blocks`` for the request at its step boundary."""
        destination, request = self.destination, self.request
        answer = self.env.event()
        tokens = blocks * destination.kv.block_size

        def allocate() -> None:
            kv = destination.kv
            need = blocks - kv.blocks_held(request)
            ok = need + kv.watermark_blocks <= kv.free_blocks and kv.grow(request, tokens)
            if not ok and not kv.blocks_held(request):
                kv.free(request)  # grow leaves an empty holding behind on failure
            answer.succeed(ok)

        destination.defer_kv_action(allocate)
        ok = yield answer
        self.reserved = destination.kv.blocks_held(request)  # what undo() must free
        if not ok:
            raise _Aborted(ABORT_OUT_OF_MEMORY)

    def _stale_blocks(self, tokens: int) -> int:
        """Blocks holding the first ``tokens`` that the destination lacks or holds an old copy of.

        A partly filled last block goes on filling on the source while the request
        decodes, so a block copied before it filled is sent again.
        """
        if tokens <= self.copied_tokens:
            return 0
        kv = self.source.kv
        return kv.blocks_for_tokens(tokens) - self.copied_tokens // kv.block_size

    def _copy(self, tokens: int):
        """Send the stale blocks of the first ``tokens`` tokens over the link."""
        new = self._stale_blocks(tokens)
        flow = self.migrator.send_kv(self.source.id, self.destination.id, new * self.source.kv.block_size)
        self.record.stages += 1
        yield flow.done
        self.copied_tokens = max(self.copied_tokens, tokens)
        self.record.blocks_copied += new
