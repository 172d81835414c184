"""Reading a finished run or sweep folder's files, refusing damaged ones with one line.

Reports and ``simulator.api`` read ``summary.json``, ``requests.csv``,
``timeseries.csv``, ``sweep.json``, ``results.csv``, ``points.csv`` and
``capacity.csv`` back. servesim writes each of them whole (a temporary file
renamed into place), so a file that is not what servesim writes - not UTF-8,
the wrong JSON shape, missing columns, text in a numeric column, a last row
cut off - is damaged or foreign: a ``ServesimError`` naming the file (and the
line or field) and what was expected, never a traceback or a silent gap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.errors import ServesimError, located
from simulator.metrics.summary import STATUSES, SUMMARY_SCHEMA

NOT_A_RUN = "not found; is this a `servesim run` output folder?"
NOT_A_SWEEP = "not found; is this a `servesim sweep` folder?"
# What the report reads of requests.csv (a multi-million-row table then reads quickly).
REQUEST_COLUMNS = ("status", "arrival_s", "first_scheduled_s", "first_token_s", "last_token_s",
                   "finish_s", "generated_tokens")
# Set on every finished request (a rejected or unfinished one may lack them).
_FINISHED_NEEDS = ("first_scheduled_s", "first_token_s", "last_token_s", "finish_s")
TIMESERIES_COLUMNS = ("time_s", "instance_id", "kv_utilization", "num_waiting", "num_running")
RUN_TEXT_COLUMNS = ("run", "status", "error")
_SUMMARY_REQUIRED = ("experiment", "seed", "version", "requests")


# ---------------------------------------------------------------- JSON files
def read_json(path: Path, missing: str) -> Any:
    """The parsed JSON of ``path``; ``missing`` says what a missing file means."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServesimError(located(path, "", missing)) from None
    except UnicodeDecodeError:
        raise ServesimError(located(path, "", "not UTF-8 text; expected a JSON file written by servesim")) from None
    except json.JSONDecodeError as err:
        raise ServesimError(located(path, f"line {err.lineno}", f"invalid JSON: {err.msg}")) from None


def read_summary(path: Path) -> dict[str, Any]:
    """A run's ``summary.json``: an object of sections of numbers (or nulls)."""
    path = Path(path)
    summary = read_json(path, NOT_A_RUN)
    if not isinstance(summary, dict):
        raise ServesimError(located(path, "", f"expected a JSON object of summary sections, got {_kind(summary)}"))
    for key in _SUMMARY_REQUIRED:
        if key not in summary:
            raise ServesimError(located(path, key, "missing; expected a summary.json written by servesim run"))
    for key, kind in (("experiment", str), ("version", str), ("seed", int)):
        if not isinstance(summary[key], kind) or isinstance(summary[key], bool):
            raise ServesimError(located(path, key, f"expected {'an integer' if kind is int else 'a string'}, "
                                                   f"got {_kind(summary[key])}"))
    for key, fields in SUMMARY_SCHEMA.items():
        if fields is not None and summary.get(key) is not None:
            if not isinstance(summary[key], dict):
                raise ServesimError(located(path, key, f"expected an object of numbers, got {_kind(summary[key])}"))
            _check_numbers(path, key, summary[key])
    return summary


def read_sweep_manifest(path: Path) -> dict[str, Any]:
    """A sweep's ``sweep.json``: what was varied (``keys``) and, after ``--capacity``, the search."""
    path = Path(path)
    manifest = read_json(path, NOT_A_SWEEP)
    if not isinstance(manifest, dict):
        raise ServesimError(located(path, "", f"expected a JSON object describing a sweep, got {_kind(manifest)}"))
    keys = manifest.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        what = "missing" if keys is None else f"got {_kind(keys)}"
        raise ServesimError(located(path, "keys", f"expected the list of varied keys (strings), {what}"))
    capacity = manifest.get("capacity")
    if capacity is not None:
        if not isinstance(capacity, dict):
            raise ServesimError(located(path, "capacity", f"expected an object, got {_kind(capacity)}"))
        if not isinstance(capacity.get("rate_key"), (str, type(None))):
            raise ServesimError(located(path, "capacity.rate_key", "expected a key (a string)"))
        target = capacity.get("target")
        if target is not None and (not isinstance(target, (int, float)) or isinstance(target, bool)):
            raise ServesimError(located(path, "capacity.target", "expected a number"))
    return manifest


# ----------------------------------------------------------------- CSV files
def read_table(path: Path, what: str, missing: str, *, required: Sequence[str] = (),
               text: Iterable[str] | None = (), usecols: Sequence[str] | None = None) -> pd.DataFrame:
    """A CSV table servesim wrote: complete, with the ``required`` columns, numbers outside ``text``.

    ``text`` None lets every column hold text. ``usecols`` reads only those columns (they are
    required too). Empty cells are NaN; "NA" or "null" stay text (servesim writes no such
    placeholders, so in a numeric column they are an error).
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if size:
                handle.seek(-1, 2)
                last = handle.read(1)
    except FileNotFoundError:
        raise ServesimError(located(path, "", missing)) from None
    if not size:
        raise ServesimError(located(path, "", f"empty file; expected {what} with a header row"))
    if last != b"\n":
        raise ServesimError(located(path, "", f"the last row is cut off (no line end); expected complete rows "
                                              f"of {what}"))
    needed = list(dict.fromkeys([*(usecols or ()), *required]))
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        absent = [c for c in needed if c not in header]
        if absent:
            raise ServesimError(located(path, "line 1", f"missing column{'s' if len(absent) > 1 else ''} "
                                                        f"{', '.join(absent)}; expected {what}"))
        frame = pd.read_csv(path, usecols=list(usecols) if usecols else None, keep_default_na=False,
                            na_values=[""])
    except (ValueError, pd.errors.ParserError) as err:  # UnicodeDecodeError and EmptyDataError are ValueErrors
        detail = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else " ".join(str(err).split())
        raise ServesimError(located(path, "", f"unreadable {what}: {detail}")) from None
    text = set(frame.columns if text is None else text)
    for column in frame.columns:
        if column not in text and not pd.api.types.is_numeric_dtype(frame[column]):
            values = frame[column]
            bad = (values.notna() & pd.to_numeric(values, errors="coerce").isna()).to_numpy()
            if not bad.any():  # no rows, or only empty cells
                continue
            row = int(bad.argmax())
            raise ServesimError(located(path, f"line {row + 2}", f"column {column}: expected a number, got "
                                                                 f"{str(values.iloc[row])[:40]!r}"))
    return frame


def read_requests(path: Path, usecols: Sequence[str] | None = None,
                  expected_rows: int | None = None) -> pd.DataFrame:
    """A run's ``requests.csv`` (only ``usecols`` if given), checked row by row where the report needs it.

    ``expected_rows`` (the summary's arrived requests) also catches a table cut at a line end.
    """
    path = Path(path)
    columns = list(usecols) if usecols is not None else None
    text = ("status", "reject_reason", "tenant", "slo_class", "session_id")
    frame = read_table(path, "a servesim requests.csv", NOT_A_RUN, required=REQUEST_COLUMNS, text=text,
                       usecols=columns)
    status = frame["status"]
    odd = ~status.isin(STATUSES)
    if odd.any():
        row = int(odd.to_numpy().argmax())
        raise ServesimError(located(path, f"line {row + 2}", f"status {str(status.iloc[row])[:40]!r}: expected "
                                                             f"one of {', '.join(STATUSES)}"))
    finished = (status == "finished").to_numpy()
    for column in ("arrival_s", "generated_tokens", *_FINISHED_NEEDS):
        if column not in frame.columns:
            continue
        empty = frame[column].isna().to_numpy()
        if column in _FINISHED_NEEDS:
            empty = empty & finished
        if empty.any():
            row = int(empty.argmax())
            whose = "a finished request" if column in _FINISHED_NEEDS else "every request"
            raise ServesimError(located(path, f"line {row + 2}", f"column {column} is empty; {whose} has one "
                                                                 "(is the file damaged?)"))
    if expected_rows is not None and len(frame) != expected_rows:
        raise ServesimError(located(path, "", f"{len(frame)} requests, but summary.json counts {expected_rows} "
                                              "arrived; the run folder is damaged or incomplete"))
    return frame


def read_timeseries(path: Path) -> pd.DataFrame | None:
    """A run's ``timeseries.csv``, or None when the run did not sample (no file)."""
    if not Path(path).is_file():
        return None
    frame = read_table(path, "a servesim timeseries.csv", NOT_A_RUN, required=TIMESERIES_COLUMNS)
    for column in TIMESERIES_COLUMNS:
        empty = frame[column].isna().to_numpy()
        if empty.any():
            raise ServesimError(located(path, f"line {int(empty.argmax()) + 2}",
                                        f"column {column} is empty; every sample has one"))
    return frame


def read_sweep_tables(sweep_dir: Path, keys: Sequence[str],
                      x_key: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results.csv`` and ``points.csv`` of a sweep varying ``keys`` (``x_key``, if any, numeric)."""
    sweep_dir = Path(sweep_dir)
    text = [k for k in keys if k != x_key]
    results = read_table(sweep_dir / "results.csv", "a sweep's results.csv (one row per run)", NOT_A_SWEEP,
                         required=["point", *keys, "seed", *RUN_TEXT_COLUMNS], text=[*text, *RUN_TEXT_COLUMNS])
    points = read_table(sweep_dir / "points.csv", "a sweep's points.csv (one row per point)", NOT_A_SWEEP,
                        required=["point", *keys, "n"], text=text)
    for name, frame in (("results.csv", results), ("points.csv", points)):
        empty = frame["point"].isna().to_numpy()
        if empty.any():
            raise ServesimError(located(sweep_dir / name, f"line {int(empty.argmax()) + 2}",
                                        "column point is empty; every row names its point"))
    return results, points


# ------------------------------------------------------------------- helpers
def _check_numbers(path: Path, where: str, section: dict[str, Any]) -> None:
    for key, value in section.items():
        if isinstance(value, dict):
            _check_numbers(path, f"{where}.{key}", value)
        elif value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise ServesimError(located(path, f"{where}.{key}", f"expected a number or null, got {_kind(value)}"))


def _kind(value: Any) -> str:
    """A JSON value's kind, as the user sees it in the file."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)
