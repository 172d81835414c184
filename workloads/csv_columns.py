"""Reading numeric columns from user-supplied CSV files, with one-line errors.

Traces and empirical length files are user input, so every way they can be
wrong becomes a ``TraceError`` that names the file and the line or column:
a missing or unreadable file, a corrupt or truncated archive (the compression
is inferred from the suffix, so ``trace.csv.gz`` just works), a missing
column, an empty cell, text where a number belongs, or a negative or
fractional token count.

Line numbers count the header as line 1 and assume one record per line (no
blank lines or quoted newlines), which holds for every trace we know of.
"""

from __future__ import annotations

import lzma
import re
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import TraceError, located

# pandas' parser errors carry the line number in free text.
_PARSER_LINE = re.compile(r"line (\d+), saw (\d+)")


def read_columns(path: Path, names: Sequence[str]) -> pd.DataFrame:
    """The CSV at ``path`` with the named columns present, a header and at least one row.

    All columns are read, not just ``names``: with a column selection pandas
    silently drops fields beyond the header, hiding rows that are shifted.
    """
    try:
        frame = _read_csv(path)
    except pd.errors.ParserWarning:
        raise TraceError(located(path, "line 2", "more fields than the header names")) from None
    except FileNotFoundError:
        raise TraceError(located(path, "", "file not found")) from None
    except IsADirectoryError:
        raise TraceError(located(path, "", "is a folder, not a file")) from None
    except pd.errors.EmptyDataError:
        raise TraceError(located(path, "", "file is empty (expected a CSV header)")) from None
    except pd.errors.ParserError as exc:
        raise TraceError(_parser_message(path, exc)) from None
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:
        # Truncated or corrupt archives surface as EOFError, BadGzipFile (an OSError),
        # zlib.error and friends; undecodable text as UnicodeDecodeError (a ValueError).
        raise TraceError(located(path, "", f"cannot read file ({_one_line(exc)})")) from None
    _check_has_columns(path, frame, names)
    if frame.empty:
        raise TraceError(located(path, "", "no data rows after the header"))
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    # When the first row has more fields than the header, pandas would quietly
    # make the first column an index (shifting every column) or, with
    # index_col=False, drop the extra field with only a warning. Make it an error;
    # later rows with extra fields already raise ParserError.
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(path, compression="infer", index_col=False)


def number_column(path: Path, frame: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as finite float64 values; the first empty or non-numeric cell is an error."""
    series = frame[name]
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raw = series.iloc[row]
        problem = "empty cell" if pd.isna(raw) else f"{raw!r} is not a finite number"
        raise TraceError(located(path, _line(row), f"column {name!r}: {problem}"))
    return values


def token_column(path: Path, frame: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as int64 token counts; negative or fractional counts are errors.

    Zeros are allowed here (some traces log failed requests with no output);
    callers decide what a zero means.
    """
    values = number_column(path, frame, name)
    _refuse_first(path, name, values, values < 0, "negative token count")
    _refuse_first(path, name, values, values != np.floor(values), "not a whole number of tokens")
    return values.astype(np.int64)


def _refuse_first(path: Path, name: str, values: np.ndarray, bad: np.ndarray, problem: str) -> None:
    if bad.any():
        row = int(np.argmax(bad))
        raise TraceError(located(path, _line(row), f"column {name!r}: {problem} ({values[row]:g})"))


def _check_has_columns(path: Path, frame: pd.DataFrame, names: Sequence[str]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        header = ", ".join(map(str, frame.columns))
        raise TraceError(located(path, f"column {missing[0]!r}", f"not found; the header has: {header}"))


def _line(row: int) -> str:
    # Row 0 is on line 2, under the header.
    return f"line {row + 2}"


def _parser_message(path: Path, exc: pd.errors.ParserError) -> str:
    match = _PARSER_LINE.search(str(exc))
    if match is None:
        return located(path, "", f"cannot parse CSV ({_one_line(exc)})")
    expected = re.search(r"Expected (\d+) fields", str(exc))
    wanted = f"expected {expected.group(1)} fields, " if expected else ""
    return located(path, f"line {match.group(1)}", f"{wanted}found {match.group(2)}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
