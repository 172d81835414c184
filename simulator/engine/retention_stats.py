"""What workflow KV retention did, and how usefully the cluster's KV memory was spent.

Counters (pins, expiries, offloads, reloads, evictions under pressure,
re-homed calls) and two measures the SAGA reproduction reports:

* recomputed tokens: for every call after a workflow's first, the full blocks
  of context it carried that it did not find in the KV cache (carried minus
  prefix hit), plus tokens recomputed after preemption;
* useful KV: sampled every ``interval_s``, the fraction of all KV blocks that
  hold KV a request in flight uses, plus the blocks an idle workflow still
  has in GPU memory (pinned or in the LRU cache) *if its next call then
  reuses them*. Retained KV that is never read again is occupied but not
  useful. The same measure applies to plain prefix caching (retained = what
  the LRU cache still holds), so policies compare on equal terms.

With ``timeline`` set to a list, every sample also appends ``[time_s, total,
active, retained, useful retained]`` blocks to it (the last filled in when
the workflows' next calls run), to see when memory was used and when not.

The fractions are read at sample times. Mid fast-forward run the LRU
evictions the run's allocations imply are applied only when it commits, so
``kv_retained_fraction`` (and with it ``kv_useful_fraction``) can differ from
a stepped run by a few parts in a million; every other number is equal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from simulator.engine.workflow_kv import Workflow, active_blocks


@dataclass(slots=True)
class RetentionStats:
    """Counters and KV-use integrals of one run (``summary.json`` key ``workflow_kv``)."""

    pins: int = 0
    expiries: int = 0
    drops: int = 0
    offloads: int = 0
    offloaded_bytes: float = 0.0
    reloads: int = 0
    reloaded_bytes: float = 0.0
    reload_failures: int = 0
    reload_retries: int = 0
    gpu_hits_after_offload: int = 0
    pressure_evictions: int = 0
    reload_evictions: int = 0  # of those, evicted to load an offloaded context for a call being sent
    reloads_skipped: int = 0  # offloaded contexts not reloaded: the call was going to be re-homed
    rehomed: int = 0
    calls: int = 0
    carried_tokens: int = 0
    reused_context_tokens: int = 0
    recomputed_context_tokens: int = 0
    preemption_recomputed_tokens: int = 0
    samples: int = 0
    total_block_samples: float = 0.0
    active_block_samples: float = 0.0
    retained_block_samples: float = 0.0
    useful_retained_block_samples: float = 0.0
    timeline: list | None = None  # per sample [time_s, total, active, retained, useful retained] if a list

    def call_finished(self, carried_tokens: int, block_size: int, prefix_hit_tokens: int,
                      recomputed_tokens: int) -> None:
        """Account one finished workflow call: what it carried, found, and recomputed."""
        reusable = carried_tokens // block_size * block_size
        self.calls += 1
        self.reused_context_tokens += min(reusable, prefix_hit_tokens)
        self.recomputed_context_tokens += max(0, reusable - prefix_hit_tokens)
        self.preemption_recomputed_tokens += recomputed_tokens

    def resolve(self, samples: list[tuple[int, int, int]], instance_id: int, hit_blocks: int) -> None:
        """A workflow's next call ran: its retained samples on ``instance_id`` were useful up to the hit."""
        for where, blocks, index in samples:
            if where == instance_id:
                useful = min(blocks, hit_blocks)
                self.useful_retained_block_samples += useful
                if self.timeline is not None:
                    self.timeline[index][4] += useful

    def sample(self, instances, workflows: Iterable[Workflow], now_s: float = 0.0) -> None:
        """Count active KV, and what idle workflows still hold in GPU memory (useful if reused later)."""
        index = self.samples
        self.samples += 1
        total = active = retained = 0
        for instance in instances:
            total += instance.kv.total_blocks
            active += active_blocks(instance)
        for workflow in workflows:
            if not workflow.idle or workflow.instance_id is None or workflow.calls_done == 0:
                continue
            if workflow.tier == "gpu":
                blocks = workflow.retained_blocks
            else:
                blocks = cached_prefix(instances[workflow.instance_id].kv, workflow.context_hashes)
            if blocks:
                retained += blocks
                workflow.samples.append((workflow.instance_id, blocks, index))
        self.total_block_samples += total
        self.active_block_samples += active
        self.retained_block_samples += retained
        if self.timeline is not None:
            self.timeline.append([now_s, total, active, retained, 0])

    def to_summary(self) -> dict:
        out = asdict(self)
        total = self.total_block_samples
        for key in ("total_block_samples", "active_block_samples", "retained_block_samples",
                    "useful_retained_block_samples", "timeline"):
            del out[key]
        out["recomputed_tokens"] = self.recomputed_context_tokens + self.preemption_recomputed_tokens
        out["kv_active_fraction"] = self.active_block_samples / total if total else None
        out["kv_retained_fraction"] = self.retained_block_samples / total if total else None
        out["kv_useful_fraction"] = ((self.active_block_samples + self.useful_retained_block_samples) / total
                                     if total else None)
        return out


def cached_prefix(kv, hashes: tuple[int, ...]) -> int:
    """Leading blocks of ``hashes`` still in the index (binary search: LRU drops tails first)."""
    low, high = 0, len(hashes)
    while low < high:
        middle = (low + high + 1) // 2
        if hashes[middle - 1] in kv.refcount:
            low = middle
        else:
            high = middle - 1
    return low
