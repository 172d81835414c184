"""Requests as columns: what readers, transforms and generators pass along before specs are made.

A ``RequestBatch`` holds up to a few hundred thousand requests as numpy
columns, so filtering, windowing, clipping and labelling are vectorised and a
``RequestSpec`` is only built when the engine asks for the next request.
Optional columns stay ``None`` (or absent) when a source does not have them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

# Optional per-row labels copied onto RequestSpec, by field name.
LABEL_FIELDS = ("session_id", "tenant", "priority", "slo_class")


@dataclass
class RequestBatch:
    """Requests in arrival order (once ordered), one row each.

    Attributes:
        arrival_s: float64 arrival times in seconds.
        prompt_tokens, output_tokens: int64 token counts.
        line: the file line of each row (traces), for error messages.
        columns: further trace columns by name, for filters and label rules.
        labels: per-row values of the ``LABEL_FIELDS`` a source provides.
        prefix_hashes: object array of tuples of block hashes (or None).
        prefix_block_tokens: tokens per entry of ``prefix_hashes``.
        prompt_clipped, output_clipped: masks of lengths a sampler moved to a bound (or None).
        dropped: rows the reader discarded while making this batch (e.g. failed requests).
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    line: np.ndarray | None = None
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    prefix_hashes: np.ndarray | None = None
    prefix_block_tokens: int = 16
    prompt_clipped: np.ndarray | None = None
    output_clipped: np.ndarray | None = None
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.arrival_s)

    def take(self, index: slice | np.ndarray) -> RequestBatch:
        """The rows selected by a slice, boolean mask or index array (``dropped`` is not carried)."""
        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[index]

        return replace(self, arrival_s=self.arrival_s[index], prompt_tokens=self.prompt_tokens[index],
                       output_tokens=self.output_tokens[index], line=pick(self.line),
                       columns={k: v[index] for k, v in self.columns.items()},
                       labels={k: v[index] for k, v in self.labels.items()},
                       prefix_hashes=pick(self.prefix_hashes), prompt_clipped=pick(self.prompt_clipped),
                       output_clipped=pick(self.output_clipped), dropped=0)

    @staticmethod
    def concat(batches: Sequence[RequestBatch]) -> RequestBatch:
        """One batch of all rows of ``batches`` (which share their optional columns)."""
        first = batches[0]

        def join(get) -> np.ndarray | None:
            parts = [get(b) for b in batches]
            return None if parts[0] is None else np.concatenate(parts)

        return RequestBatch(
            join(lambda b: b.arrival_s), join(lambda b: b.prompt_tokens), join(lambda b: b.output_tokens),
            join(lambda b: b.line), {k: join(lambda b, k=k: b.columns[k]) for k in first.columns},
            {k: join(lambda b, k=k: b.labels[k]) for k in first.labels}, join(lambda b: b.prefix_hashes),
            first.prefix_block_tokens, join(lambda b: b.prompt_clipped), join(lambda b: b.output_clipped),
            sum(b.dropped for b in batches))


def object_array(values: Sequence[object]) -> np.ndarray:
    """A 1-d object array of ``values`` (numpy would make a 2-d array of equal-length tuples)."""
    out = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        out[index] = value
    return out
