"""Reading CSV and JSONL files a chunk of rows at a time, as pandas frames indexed by file line.

Memory stays bounded by the chunk size whatever the file's length. Each
frame's index is the file line of its rows (the CSV header is line 1), so
later checks can name the line at fault. CSV line numbers assume one record
per line (no quoted line breaks), which holds for every trace we know of;
JSONL line numbers are exact, blank lines included.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from simulator.errors import TraceError, located
from workloads.readers.files import one_line, open_text, reading

# pandas' parser errors carry the line number in free text.
_PARSER_LINE = re.compile(r"line (\d+), saw (\d+)")


def csv_frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The CSV at ``path`` in frames of up to ``chunk_rows`` rows; at least one row, or an error.

    All columns are read, not a selection: with a selection pandas silently
    drops fields beyond the header, hiding rows that are shifted.
    """
    with reading(path):
        try:
            chunks = pd.read_csv(path, compression="infer", index_col=False, chunksize=chunk_rows)
        except pd.errors.EmptyDataError:
            raise TraceError(located(path, "", "file is empty (expected a CSV header)")) from None
    rows = 0
    with chunks:
        while (frame := _next_frame(path, chunks)) is not None:
            if frame.empty:
                break
            frame.index = frame.index + 2
            rows += len(frame)
            yield frame
    if rows == 0:
        raise TraceError(located(path, "", "no data rows after the header"))


def _next_frame(path: Path, chunks) -> pd.DataFrame | None:
    # When the first row has more fields than the header, pandas drops the extra
    # field with only a warning; make it an error (later rows raise ParserError).
    with reading(path), warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return next(chunks)
        except StopIteration:
            return None
        except pd.errors.ParserWarning:
            raise TraceError(located(path, "line 2", "more fields than the header names")) from None
        except pd.errors.ParserError as exc:
            raise TraceError(_parser_message(path, exc)) from None


def _parser_message(path: Path, exc: pd.errors.ParserError) -> str:
    match = _PARSER_LINE.search(str(exc))
    if match is None:
        return located(path, "", f"cannot parse CSV ({one_line(exc)})")
    expected = re.search(r"Expected (\d+) fields", str(exc))
    wanted = f"expected {expected.group(1)} fields, " if expected else ""
    return located(path, f"line {match.group(1)}", f"{wanted}found {match.group(2)}")


def jsonl_frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The JSON-lines file at ``path`` (one object per line) in frames of up to ``chunk_rows`` records."""
    records: list[dict] = []
    lines: list[int] = []
    seen = False
    with reading(path), open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            records.append(_record(path, number, text))
            lines.append(number)
            if len(records) == chunk_rows:
                seen = True
                yield _frame(records, lines)
                records, lines = [], []
    if records:
        yield _frame(records, lines)
    elif not seen:
        raise TraceError(located(path, "", "file is empty (expected one JSON object per line)"))


def _record(path: Path, number: int, text: str) -> dict:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(located(path, f"line {number}", f"not valid JSON ({exc.msg})")) from None
    if not isinstance(record, dict):
        raise TraceError(located(path, f"line {number}", "expected a JSON object"))
    return record


def _frame(records: list[dict], lines: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    frame.index = pd.Index(lines)
    return frame
