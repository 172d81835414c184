"""The trace-reader interface and the column mapping every built-in reader shares.

A reader turns a file into ``RequestBatch`` chunks of bounded size: arrival
times in seconds (in the file's own time origin; the replay shifts and
scales them later), token counts, file lines, and whatever optional columns
the format has (labels, prefix hashes) or the configuration asks for
(columns named by filters and label rules). Readers check every value and
report the first bad one with its file and line; they never reorder rows.

To add a format, subclass ``CsvTraceReader`` or ``JsonlTraceReader`` with a
``layout`` (or override ``read`` for anything else), set ``name`` and
``description``, register it with ``@TRACE_READERS.register(name)``, and
declare it as an entry point in the ``servesim.trace_readers`` group.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from simulator.errors import TraceError, located
from workloads.batch import RequestBatch
from workloads.config_trace import TraceColumns, TraceConfig
from workloads.readers.frames import csv_frames, jsonl_frames
from workloads.readers.values import Column

NANOS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class ColumnMap:
    """Where a format keeps each field, and the unit of its arrival times.

    ``roles`` maps optional fields (``session_id``, ``tenant``, ``priority``,
    ``slo_class``, ``prefix_hashes``) to column names.
    """

    arrival: str
    prompt: str
    output: str
    time_unit: str = "s"
    roles: dict[str, str] = field(default_factory=dict)
    prefix_block_tokens: int = 16

    @classmethod
    def from_config(cls, columns: TraceColumns) -> ColumnMap:
        return cls(columns.arrival_s, columns.prompt_tokens, columns.output_tokens, columns.time_unit,
                   columns.optional(), columns.prefix_block_tokens or 16)

    @property
    def required(self) -> list[str]:
        return [self.arrival, self.prompt, self.output, *self.roles.values()]


@dataclass(frozen=True)
class Head:
    """The start of a file, for format detection: ``kind`` is "csv" or "jsonl"; ``names`` its columns or keys."""

    kind: str
    names: tuple[str, ...]


class TraceReader:
    """Reads one trace format into ``RequestBatch`` chunks.

    Class attributes: ``name`` (the registry name), ``description`` (one line
    for ``servesim list traces``) and, for fixed formats, ``layout``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    layout: ClassVar[ColumnMap | None] = None
    kind: ClassVar[str] = "csv"
    what: ClassVar[str] = "column"

    def __init__(self, config: TraceConfig | None = None) -> None:
        self.config = config
        self._midnight_ns: int | None = None

    @classmethod
    def sniff(cls, head: Head) -> bool:
        """True when ``head`` looks like this format (used by ``format: auto``)."""
        return cls.layout is not None and head.kind == cls.kind and set(cls.layout.required) <= set(head.names)

    def column_map(self) -> ColumnMap:
        assert self.layout is not None, "a fixed format sets layout; generic ones override column_map"
        return self.layout

    def frames(self, path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
        raise NotImplementedError

    def read(self, path: Path, extra: Sequence[str] = (), chunk_rows: int = 1 << 17) -> Iterator[RequestBatch]:
        """Batches of up to ``chunk_rows`` rows in file order; ``extra`` names columns kept for filters/labels."""
        columns = None
        for frame in self.frames(path, chunk_rows):
            if columns is None:
                columns = self.columns_for(tuple(frame.columns))
                self._require(path, frame, [*columns.required, *extra])
            yield self.adjust(self.to_batch(path, frame, columns, extra))

    def columns_for(self, names: tuple[str, ...]) -> ColumnMap:
        """The column map for a file whose first chunk has columns ``names``."""
        return self.column_map()

    def adjust(self, batch: RequestBatch) -> RequestBatch:
        """A format's own clean-up of a batch (BurstGPT drops failed requests here)."""
        return batch

    def to_batch(self, path: Path, frame: pd.DataFrame, columns: ColumnMap, extra: Sequence[str]) -> RequestBatch:
        def column(name: str) -> Column:
            return Column(path, frame, name, self.what)

        batch = RequestBatch(self._arrivals(column(columns.arrival), columns.time_unit),
                             column(columns.prompt).tokens(), column(columns.output).tokens(),
                             frame.index.to_numpy(dtype=np.int64),
                             {name: column(name).series.to_numpy() for name in extra},
                             prefix_block_tokens=columns.prefix_block_tokens)
        for role, name in columns.roles.items():
            if role == "prefix_hashes":
                batch.prefix_hashes = column(name).hash_lists()
            elif role == "priority":
                batch.labels[role] = column(name).integers()
            else:
                batch.labels[role] = column(name).text()
        return batch

    def _arrivals(self, column: Column, unit: str) -> np.ndarray:
        if unit != "datetime":
            return column.seconds(unit)
        # Date-times become seconds since midnight of the first row's day, as in BurstGPT,
        # so that a window can be given as a time of day and float64 keeps sub-microsecond steps.
        nanos = column.datetimes_ns()
        if self._midnight_ns is None:
            self._midnight_ns = int(nanos[0]) // NANOS_PER_DAY * NANOS_PER_DAY
        return (nanos - self._midnight_ns) / 1e9

    def _require(self, path: Path, frame: pd.DataFrame, names: Sequence[str]) -> None:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            have = ", ".join(map(str, frame.columns))
            where = "the header has" if self.kind == "csv" else "the first records have"
            raise TraceError(located(path, f"{self.what} {missing[0]!r}", f"not found; {where}: {have}"))


class CsvTraceReader(TraceReader):
    """A CSV format with a header row."""

    kind = "csv"
    what = "column"

    def frames(self, path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
        return csv_frames(path, chunk_rows)


class JsonlTraceReader(TraceReader):
    """A JSON-lines format: one object per line."""

    kind = "jsonl"
    what = "key"

    def frames(self, path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
        return jsonl_frames(path, chunk_rows)
