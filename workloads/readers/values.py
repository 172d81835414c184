"""Checked conversion of trace columns to numbers, token counts, times, labels and hash lists.

Every check is vectorised and reports the first bad row as
``PATH: line N: column 'X': problem``: an empty cell, text where a number
belongs, NaN or infinity, a negative or fractional token count, a date-time
that does not parse, or a hash list that is not a list of integers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.errors import TraceError, located
from workloads.batch import object_array
from workloads.config_base import TOKEN_CEILING

_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class Column:
    """One column of one frame, with where it came from for error messages."""

    def __init__(self, path, frame: pd.DataFrame, name: str, what: str = "column") -> None:
        self.path = path
        self.name = name
        self.series = frame[name]
        self.what = what

    def fail(self, row: int, problem: str) -> TraceError:
        line = self.series.index[row]
        return TraceError(located(self.path, f"line {line}", f"{self.what} {self.name!r}: {problem}"))

    def _describe(self, row: int) -> str:
        raw = self.series.iloc[row]
        if raw is None or (isinstance(raw, float) and np.isnan(raw)) or raw is pd.NA:
            return "empty" if self.what == "column" else "missing or null"
        shown = raw.item() if isinstance(raw, np.generic) else raw
        return f"{shown!r} is not a finite number"

    def numbers(self) -> np.ndarray:
        """Finite float64 values (a boolean is not a number, though pandas reads ``true`` as 1)."""
        self._refuse_booleans()
        values = pd.to_numeric(self.series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise self.fail(row, self._describe(row))
        return values

    def tokens(self) -> np.ndarray:
        """Whole, non-negative int64 token counts (at most ``TOKEN_CEILING``)."""
        values = self.numbers()
        self._refuse(values, values < 0, "negative token count")
        self._refuse(values, values != np.floor(values), "not a whole number of tokens")
        self._refuse(values, values > TOKEN_CEILING, f"more than {TOKEN_CEILING} tokens")
        return values.astype(np.int64)

    def integers(self) -> np.ndarray:
        """Whole int64 values (priorities), exactly representable (magnitude at most 2**53)."""
        values = self.numbers()
        self._refuse(values, values != np.floor(values), "not a whole number")
        self._refuse(values, np.abs(values) > 2**53, "too large")
        return values.astype(np.int64)

    def seconds(self, unit: str) -> np.ndarray:
        """Times in ``unit`` (s, ms, us, ns) as float64 seconds."""
        return self.numbers() * _UNIT_SECONDS[unit]

    def datetimes_ns(self) -> np.ndarray:
        """ISO date-times as int64 nanoseconds (UTC when a zone is given)."""
        # As text: pandas would read numbers as epochs (and warns that it will), not as date-times.
        text = self.series.astype("string")
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        bad = parsed.isna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raw = self.series.iloc[row]
            shown = raw.item() if isinstance(raw, np.generic) else raw  # 0, not np.int64(0)
            problem = "empty" if pd.isna(raw) else f"{shown!r} is not a date-time"
            raise self.fail(row, problem)
        return parsed.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)

    def text(self) -> np.ndarray:
        """Values as strings, empty cells as None (object array)."""
        values = self.series.astype(object).where(self.series.notna(), None)
        return object_array([None if v is None else str(v) for v in values.tolist()])

    def hash_lists(self) -> np.ndarray:
        """Lists of integer hashes as an object array of tuples."""
        out = []
        for row, value in enumerate(self.series.tolist()):
            if not isinstance(value, list) or not all(type(h) is int for h in value):
                raise self.fail(row, "expected a list of integer hashes")
            out.append(tuple(value))
        return object_array(out)

    def _refuse_booleans(self) -> None:
        # JSON true/false arrive as Python booleans (a column of only booleans as dtype bool);
        # only those dtypes can hold them, so numeric columns cost nothing here.
        kind = self.series.dtype.kind
        if kind not in "bO":
            return
        values = self.series.to_numpy()
        flags = np.fromiter((isinstance(v, (bool, np.bool_)) for v in values), dtype=bool, count=len(values))
        if flags.any():
            row = int(np.argmax(flags))
            raise self.fail(row, f"expected a number, got the boolean {str(bool(values[row])).lower()}")

    def _refuse(self, values: np.ndarray, bad: np.ndarray, problem: str) -> None:
        if bad.any():
            row = int(np.argmax(bad))
            raise self.fail(row, f"{problem} ({values[row]:g})")
