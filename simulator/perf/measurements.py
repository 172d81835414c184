"""Measured timings found in a folder, read into three tidy tables.

``read_measurements(root)`` walks ``root`` and reads every file it
recognises by name and columns (the formats of ``../shared/data``):

=========================  ================================  ==============
file                       format                            table
=========================  ================================  ==============
``mlp.csv``                Vidur per-operator profile (ms)   ``operators``
``attention.csv``          Vidur attention profile (ms)      ``operators``
``layers.csv``             LLMServingSim layer profile (ns)  ``operators``
``all_reduce.csv``,        Vidur network profile (ms,        ``network``
``send_recv.csv``          bytes)
``perf_model.csv``         Splitwise prompt/token times (ms) ``iterations``
``profiler-*.json``        DistServe fitted latency (ms)     ``iterations``
=========================  ================================  ==============

Every table holds one row per measured row and operator, with ``measured_ms``
in milliseconds whatever the file's unit. A file that looks like one of these
formats but is empty, lacks a column or has implausible units raises a
``ProfileError`` whose one line names the file.

The GPU is read from the path (a folder named ``a100``, ``h100``, ``a40``,
``*_H100``, or a catalog GPU name); see ``gpu_from_path``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from simulator.errors import ProfileError, located

# Columns of the operator table: where it ran, what it was, how long it took.
OPERATOR_COLUMNS = ["source", "file", "gpu", "model", "tp", "op", "target", "num_tokens", "batch_size",
                    "context_tokens", "measured_ms"]
# Model geometry carried by every operator row (from the file's columns or the catalog).
GEOMETRY_COLUMNS = ["hidden_size", "num_attention_heads", "num_kv_heads", "head_dim", "ffn_hidden_size",
                    "vocab_size", "gated_mlp", "num_experts", "experts_per_token"]
NETWORK_COLUMNS = ["source", "file", "gpu", "net", "op", "num_workers", "devices_per_node", "size_bytes",
                   "measured_ms"]
ITERATION_COLUMNS = ["source", "file", "gpu", "model", "tp", "op", "batch_size", "prompt_tokens",
                     "output_tokens", "power_cap_fraction", "engine", "measured_ms"]

# Folder-name tokens that name a GPU in the public profiles.
GPU_ALIASES = {"a100": "a100-80gb", "h100": "h100-sxm", "a40": "a40", "a100-80g": "a100-80gb",
               "a100-80gb": "a100-80gb", "h100-80gb": "h100-sxm"}


@dataclass
class MeasurementSet:
    """The tables read from one folder, and the files each came from."""

    root: Path
    operators: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=OPERATOR_COLUMNS + GEOMETRY_COLUMNS))
    network: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=NETWORK_COLUMNS))
    iterations: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ITERATION_COLUMNS))
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.operators) + len(self.network) + len(self.iterations)


Reader = Callable[[Path, str], tuple[str, pd.DataFrame]]


def read_measurements(root: Path) -> MeasurementSet:
    """Read every recognised measurement file under ``root`` (sorted, so results are reproducible)."""
    from simulator.perf import readers_iteration, readers_llmservingsim, readers_vidur

    root = Path(root)
    if not root.is_dir():
        raise ProfileError(located(root, "", "measurement folder not found"))
    readers: list[tuple[Callable[[Path], bool], Reader]] = [
        (lambda p: p.name == "mlp.csv", readers_vidur.read_mlp),
        (lambda p: p.name == "attention.csv", readers_vidur.read_attention),
        (lambda p: p.name in ("all_reduce.csv", "send_recv.csv"), readers_vidur.read_network),
        (lambda p: p.name == "layers.csv", readers_llmservingsim.read_layers),
        (lambda p: p.name == "perf_model.csv", readers_iteration.read_splitwise),
        (lambda p: p.name.startswith("profiler-") and p.suffix == ".json", readers_iteration.read_distserve),
    ]
    tables: dict[str, list[pd.DataFrame]] = {"operators": [], "network": [], "iterations": []}
    found = MeasurementSet(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        for matches, reader in readers:
            if matches(path):
                try:
                    table, frame = reader(path, rel)
                except SkipFile as skip:
                    found.skipped.append(f"{rel}: {skip}")
                    break
                tables[table].append(frame)
                found.files.append(rel)
                break
    for name, frames in tables.items():
        if frames:
            setattr(found, name, pd.concat(frames, ignore_index=True))
    return found


class SkipFile(Exception):
    """A recognised file that cannot be used here (e.g. a model not in the catalog); not an error."""


# ------------------------------------------------------------------ helpers
def read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    """Read a CSV that must have ``required`` columns and at least one row."""
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ProfileError(located(path, "", "empty file: no header and no rows")) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ProfileError(located(path, "", f"cannot parse as CSV ({exc.__class__.__name__})")) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ProfileError(located(path, "", f"missing column(s) {', '.join(missing)}"))
    if frame.empty:
        raise ProfileError(located(path, "", "no data rows"))
    return frame


def numeric(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Column ``column`` as floats; refuses text and negative numbers."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & frame[column].notna().to_numpy()
    if bad.any() or (values[~np.isnan(values)] < 0).any():
        raise ProfileError(located(path, column, "expected non-negative numbers"))
    return values


def check_time_unit(values_ms: np.ndarray, path: Path, column: str, low_ms: float, high_ms: float,
                    unit: str = "ms") -> None:
    """Refuse times whose median is outside what the file's documented unit makes plausible.

    A per-operator time in ms has a median between about 1 us and 1 s; a median
    of 1e4 means the file holds us or ns, one of 1e-6 that it holds seconds.
    """
    finite = values_ms[np.isfinite(values_ms) & (values_ms > 0)]
    if finite.size == 0:
        raise ProfileError(located(path, column, "no positive times"))
    median = float(np.median(finite))
    if not low_ms <= median <= high_ms:
        raise ProfileError(located(path, column, f"median time {median:g} {unit} is implausible; "
                                                 f"expected {unit} (median between {low_ms:g} and {high_ms:g} ms)"))


def gpu_from_path(path: Path, root_rel: str) -> str:
    """The catalog GPU a file was measured on, from its folder names."""
    from simulator.hardware import DEFAULT_CATALOG

    known = set(DEFAULT_CATALOG.names("gpu"))
    for part in reversed(Path(root_rel).parts[:-1]):
        lowered = part.lower()
        if lowered in known:
            return lowered
        for token in re.split(r"[_.]", lowered):
            if token in GPU_ALIASES:
                return GPU_ALIASES[token]
    raise ProfileError(located(path, "", "cannot tell the GPU from the path; put the file under a folder "
                                         "named after a catalog GPU (e.g. h100-sxm/)"))


def model_from_path(root_rel: str, depth: int) -> str | None:
    """The ``<org>/<model>`` folder name ``depth`` levels above the file, if the path is that deep."""
    parts = Path(root_rel).parts
    return parts[-1 - depth] if len(parts) > depth else None


def frame(columns: list[str], **data) -> pd.DataFrame:
    """A table with ``columns`` in order; scalars broadcast over the array-valued entries."""
    out = pd.DataFrame({k: v for k, v in data.items() if not np.isscalar(v) and v is not None})
    for key, value in data.items():
        if np.isscalar(value) or value is None:
            out[key] = value
    return out[[c for c in columns if c in out.columns]]


def catalog_model(name: str):
    """The catalog ``ModelSpec`` a measurement file's model name refers to, or None.

    Tries the name as written, lower-cased, without an organisation prefix and
    common suffixes (``-hf``, ``-v0.1``), and with a hyphen between a family and
    its version (``llama2-70b`` -> ``llama-2-70b``).
    """
    from simulator.errors import ProfileError as _ProfileError
    from simulator.hardware import DEFAULT_CATALOG

    known = set(DEFAULT_CATALOG.names("model"))
    base = name.split("/")[-1].lower()
    candidates = [base, re.sub(r"-(hf|v\d+(\.\d+)*)$", "", base), re.sub(r"^meta-", "", base)]
    candidates += [re.sub(r"^([a-z]+)(\d)", r"\1-\2", c) for c in candidates]
    for candidate in candidates:
        if candidate in known:
            try:
                return DEFAULT_CATALOG.get("model", candidate)
            except _ProfileError:
                return None
    return None
