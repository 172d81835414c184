"""The few numbers of a batch that decide how long a step takes.

A ``StepShape`` condenses a step plan into sums the roofline needs; the step
builder maintains them incrementally as requests are added, so timing a step
never walks the batch again. Fields may be numpy arrays (one entry per step of
a decode run) as well as floats: the cost model only uses arithmetic and
``maximum`` on them, so one formula times a step or a whole run.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class StepShape(NamedTuple):
    """Aggregates of one engine step.

    A named tuple (immutable, compared by value) rather than a frozen dataclass:
    every step and every decode run builds some, and a tuple is several times
    cheaper to construct.

    Attributes:
        num_tokens: new tokens pushed through the model (prefill chunks plus decodes).
        num_seqs: sequences in the batch.
        num_sampled: sequences that sample a token this step (LM-head rows).
        attention_pairs: causal query-key pairs: for a sequence adding ``n`` tokens
            after ``c`` cached ones, ``n * c + n * (n + 1) / 2``.
        kv_read_tokens: KV entries attention reads: for each sequence, ``c + n``.
    """

    num_tokens: Any
    num_seqs: Any
    num_sampled: Any
    attention_pairs: Any
    kv_read_tokens: Any

    @staticmethod
    def for_sequence(new_tokens: int, cached_tokens: int, samples: bool) -> "StepShape":
        """The shape of a batch holding one sequence (handy in tests)."""
        pairs = new_tokens * cached_tokens + new_tokens * (new_tokens + 1) / 2
        return StepShape(new_tokens, 1, int(samples), pairs, cached_tokens + new_tokens)


EMPTY_SHAPE = StepShape(0, 0, 0, 0.0, 0)
