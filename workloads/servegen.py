"""ServeGen-style workloads: per-client arrival rates, burstiness and length distributions.

Alibaba's ServeGen publishes, per client of a model, a 24-hour table of
10-minute windows (``chunk-<id>-trace.csv``: window start, rate, CV of gaps,
the fitted gap distribution - Gamma or Weibull - and its two parameters) and
length PDFs per 6-hour window (``chunk-<id>-dataset.json``, stringified
Python dicts of tokens to probability). Each client replays its windows as a
renewal process with the fitted shape, scaled so the mean gap is 1 / rate
(the fitted scale is not exact for sparse windows), restarting at each
window; lengths come from the client's PDFs of the latest 6-hour window.
Clients are merged window by window, so memory holds one window at a time.
Each request is labelled with its client as ``tenant`` (``servegen-<id>``).
The datasets' ``reason_ratio`` (the reasoning share of the output) is not
used: output lengths already include the reasoning tokens.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import TraceError, located
from workloads.batch import RequestBatch, object_array
from workloads.config_sessions import ServeGenConfig
from workloads.readers.files import reading

_WINDOW_COLUMNS = ["start_s", "rate", "cv", "pattern", "param1", "param2"]
# A window's arrivals are drawn at once (clients are merged window by window): beyond this many
# (about 0.5 GB of arrays) a rate_scale is a typo, not a workload.
MAX_WINDOW_REQUESTS = 20_000_000
_PDF_ENTRY = re.compile(r"([-+0-9.eE]+)\s*:\s*([-+0-9.eE]+)")


@dataclass(frozen=True)
class Pdf:
    """A discrete distribution of token counts."""

    tokens: np.ndarray
    cdf: np.ndarray

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        index = np.searchsorted(self.cdf, rng.random(n) * self.cdf[-1], side="right")
        return self.tokens[np.minimum(index, len(self.tokens) - 1)]


@dataclass(frozen=True)
class Client:
    """One client's windows and its length PDFs (by window start, ascending; None where it had no traffic)."""

    client_id: int
    trace_path: Path
    windows: pd.DataFrame
    pdf_starts: np.ndarray
    inputs: list[Pdf | None]
    outputs: list[Pdf | None]

    def lengths(self, at_s: float) -> tuple[Pdf, Pdf]:
        """The PDFs of the latest window at or before ``at_s`` that has them (else the next one that does)."""
        latest = max(int(np.searchsorted(self.pdf_starts, at_s, side="right")) - 1, 0)
        order = [*range(latest, -1, -1), *range(latest + 1, len(self.inputs))]
        index = next(i for i in order if self.inputs[i] is not None and self.outputs[i] is not None)
        return self.inputs[index], self.outputs[index]


def servegen_batches(config: ServeGenConfig, folder: Path, rng: np.random.Generator) -> Iterator[RequestBatch]:
    """The clients' requests in ``config.window_s``, shifted to start at 0, a window at a time."""
    ids = config.clients if config.clients is not None else client_ids(folder)
    clients = [load_client(folder, client_id) for client_id in ids]
    streams = [tuple(stream.spawn(2)) for stream in rng.spawn(len(clients))]
    return _generate(config, clients, streams)


def _generate(config: ServeGenConfig, clients: list[Client], streams: list) -> Iterator[RequestBatch]:
    start_s, end_s = config.window_s
    for window_start, begin, end in _windows(clients[0].windows, start_s, end_s):
        parts = []
        for client, (arrivals_rng, lengths_rng) in zip(clients, streams):
            row = client.windows.loc[client.windows.start_s == window_start]
            if row.empty or row.rate.iloc[0] <= 0:
                continue
            _check_window_size(client, row.iloc[0], config.rate_scale, begin, end)
            times = _window_arrivals(row.iloc[0], config.rate_scale, begin, end, arrivals_rng)
            inputs, outputs = client.lengths(window_start)
            parts.append((times, inputs.sample(lengths_rng, len(times)), outputs.sample(lengths_rng, len(times)),
                          client.client_id))
        if parts:
            yield _merged(parts, start_s)


def client_ids(folder: Path) -> list[int]:
    """Client ids with both files in ``folder``."""
    if not folder.is_dir():
        raise TraceError(located(folder, "", "ServeGen folder not found"))
    ids = sorted(int(m.group(1)) for p in folder.glob("chunk-*-trace.csv")
                 if (m := re.fullmatch(r"chunk-(\d+)-trace\.csv", p.name)))
    if not ids:
        raise TraceError(located(folder, "", "no chunk-<id>-trace.csv files (expected a ServeGen model folder)"))
    return ids


def load_client(folder: Path, client_id: int) -> Client:
    """Read and check one client's window table and length PDFs."""
    path = folder / f"chunk-{client_id}-trace.csv"
    with reading(path):
        windows = pd.read_csv(path, header=None, names=_WINDOW_COLUMNS, keep_default_na=False)
    for column in ("start_s", "rate", "cv"):
        values = pd.to_numeric(windows[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64)) | (values.to_numpy() < 0)
        if bad.any():
            row = int(np.argmax(bad))
            raise TraceError(located(path, f"line {row + 1}", f"{column}: expected a number >= 0, "
                                     f"got {windows[column].iloc[row]!r}"))
        windows[column] = values
    path = folder / f"chunk-{client_id}-dataset.json"
    with reading(path):
        data = json.loads(path.read_text(encoding="utf-8"))
    starts = sorted(data, key=float)
    pdfs = [(_pdf(path, key, data[key], "input_tokens"), _pdf(path, key, data[key], "output_tokens"))
            for key in starts]
    if windows.rate.gt(0).any() and not any(a is not None and b is not None for a, b in pdfs):
        raise TraceError(located(path, "", "the client has traffic but no length distributions"))
    return Client(client_id, folder / f"chunk-{client_id}-trace.csv", windows,
                  np.array([float(s) for s in starts]), [p[0] for p in pdfs], [p[1] for p in pdfs])


def _pdf(path: Path, window: str, entry: dict, field: str) -> Pdf | None:
    text = str(entry.get(field, "")).strip() if isinstance(entry, dict) else ""
    if text == "{}":
        return None  # no traffic in this window
    pairs = _PDF_ENTRY.findall(text)
    if not text.startswith("{") or not pairs:
        raise TraceError(located(path, f"window {window}", f"{field}: expected a dict of tokens to probability"))
    tokens, probabilities = np.array(pairs, dtype=np.float64).T
    return Pdf(np.maximum(np.rint(tokens), 1).astype(np.int64), np.cumsum(probabilities))


def _windows(table: pd.DataFrame, start_s: float, end_s: float) -> Iterator[tuple[float, float, float]]:
    """``(window start, begin, end)`` of each window overlapping ``[start_s, end_s)``, cut to it."""
    starts = table.start_s.to_numpy()
    width = float(np.median(np.diff(starts))) if len(starts) > 1 else 600.0
    for begin in starts:
        if begin + width > start_s and begin < end_s:
            yield float(begin), max(float(begin), start_s), min(float(begin) + width, end_s)


def _check_window_size(client: Client, row, rate_scale: float, begin: float, end: float) -> None:
    """Refuse a window whose expected arrivals would not fit in memory (a huge ``rate_scale``)."""
    expected = row["rate"] * rate_scale * (end - begin)
    if expected > MAX_WINDOW_REQUESTS:
        raise TraceError(located(client.trace_path, f"window at {row['start_s']:g} s", (
            f"rate {row['rate']:g}/s x rate_scale {rate_scale:g} over {end - begin:g} s is about "
            f"{expected:.3g} requests; a window is generated whole, so at most {MAX_WINDOW_REQUESTS:,} "
            "(lower servegen.rate_scale)")))


def _window_arrivals(row, rate_scale: float, begin: float, end: float, rng: np.random.Generator) -> np.ndarray:
    rate = row["rate"] * rate_scale
    draw = _gap_sampler(row, rate)
    times, now = [], begin
    while now < end:
        gaps = draw(rng, max(16, math.ceil(rate * (end - now) * 1.2)))
        block = now + np.cumsum(gaps)
        times.append(block[block < end])
        now = float(block[-1])
    return np.concatenate(times)


def _gap_sampler(row, rate: float):
    # param1 is the fitted shape (Gamma k, Weibull k); the fitted scale (param2) is replaced by the rate's.
    pattern, shape = row["pattern"], float(row["param1"]) if row["param1"] != "" else math.nan
    if pattern == "Weibull" and shape > 0:
        from scipy.special import gammaln  # here, not at the top: scipy's import is a fifth of start-up
        scale = 1.0 / (rate * math.exp(gammaln(1 + 1 / shape)))
        return lambda rng, n: scale * rng.weibull(shape, n)
    if pattern != "Gamma" or not shape > 0:
        shape = 1.0 / row["cv"] ** 2 if row["cv"] > 0 else 1.0  # no fitted pattern: a gamma with the window's CV
    return lambda rng, n: rng.gamma(shape, 1.0 / (rate * shape), n)


def _merged(parts: list, origin: float) -> RequestBatch:
    times = np.concatenate([p[0] for p in parts])
    order = np.argsort(times, kind="stable")
    tenants = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])[order]
    names = {client: f"servegen-{client}" for client in set(tenants.tolist())}
    return RequestBatch(times[order] - origin, np.concatenate([p[1] for p in parts])[order],
                        np.concatenate([p[2] for p in parts])[order],
                        labels={"tenant": object_array([names[c] for c in tenants.tolist()])})
