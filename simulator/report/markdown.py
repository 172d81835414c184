"""The Markdown report of one run, built from its output folder alone.

``write_report`` reads ``summary.json`` and ``requests.csv`` - never the
simulator - so any finished run folder can be re-reported later, by
``servesim report DIR`` or from a notebook. Every file is written under a
temporary name and moved into place, so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.errors import ServesimError, located
from simulator.metrics.summary import add_latency_columns
from simulator.report import figures
from simulator.report.definitions import DEFINITIONS_MD

FIGURES = {"ttft_cdf.png": ("ttft_s", "TTFT"), "tpot_cdf.png": ("tpot_s", "TPOT")}
LATENCY_ROWS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("tbt_s", "TBT"),
                ("e2e_s", "E2E latency"), ("queue_s", "Queueing delay"))
# Only what the figures need: a multi-million-row requests.csv then reads quickly.
_NOT_A_RUN = "not found; is this a `servesim run` output folder?"
_CSV_COLUMNS = ("status", "arrival_s", "first_scheduled_s", "first_token_s", "last_token_s",
                "finish_s", "generated_tokens")


def write_report(out_dir: Path) -> Path:
    """Write ``report.md``, ``ttft_cdf.png`` and ``tpot_cdf.png`` into ``out_dir``.

    Returns the path of ``report.md``.
    """
    out_dir = Path(out_dir)
    summary = read_summary(out_dir / "summary.json")
    completed = read_completed_requests(out_dir / "requests.csv")
    for filename, (column, name) in FIGURES.items():
        slo_s = (summary.get("slo") or {}).get(column)
        fig = figures.latency_cdf(completed[column].to_numpy(), name=name, slo_s=slo_s)
        try:
            _atomic_write(out_dir / filename, lambda path, fig=fig: fig.savefig(path, format="png"))
        finally:
            figures.close(fig)
    report = out_dir / "report.md"
    text = render_markdown(summary)
    _atomic_write(report, lambda path: path.write_text(text, encoding="utf-8"))
    return report


def read_summary(path: Path) -> dict[str, Any]:
    """The parsed ``summary.json``; a missing or malformed file is a ``ServesimError``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServesimError(located(path, "", _NOT_A_RUN)) from None
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}"
        raise ServesimError(located(path, where, f"invalid JSON: {err.msg}")) from None


def read_completed_requests(path: Path) -> pd.DataFrame:
    """Completed rows of ``requests.csv`` with the latency columns added."""
    try:
        frame = pd.read_csv(path, usecols=list(_CSV_COLUMNS))
    except FileNotFoundError:
        raise ServesimError(located(path, "", _NOT_A_RUN)) from None
    except ValueError as err:  # pandas reports missing columns this way
        raise ServesimError(located(path, "", f"unreadable request table: {err}")) from None
    frame = frame[frame["status"] == "finished"]
    return add_latency_columns(frame)


def render_markdown(summary: dict[str, Any]) -> str:
    """The report text for ``summary``: title, tables, figures and definitions."""
    sim = summary.get("sim") or {}
    parts = [
        f"# servesim report: {summary.get('experiment')}",
        f"seed {summary.get('seed')} · servesim {summary.get('version')} · "
        f"{_number(sim.get('simulated_s'))} simulated s · window {_number(sim.get('window_s'))} s",
        "## Latency (ms)",
        _latency_table(summary),
        "## Run summary",
        _table(("metric", "value"), _summary_rows(summary)),
        "## Figures",
        *(f"![{name} CDF]({filename})" for filename, (_, name) in FIGURES.items()),
        "## Definitions",
        DEFINITIONS_MD,
    ]
    return "\n\n".join(part.rstrip("\n") for part in parts) + "\n"


def _latency_table(summary: dict[str, Any]) -> str:
    rows = []
    for key, label in LATENCY_ROWS:
        stats = summary.get(key) or {}
        rows.append((label, *(_ms(stats.get(k)) for k in ("mean", "p50", "p90", "p99"))))
    return _table(("metric", "mean", "p50", "p90", "p99"), rows)


def _summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    def get(section: str, key: str) -> Any:
        return (s.get(section) or {}).get(key)

    rows = [(f"requests {key}", _number(get("requests", key)))
            for key in ("arrived", "completed", "rejected", "unfinished")]
    rows += [
        ("throughput (requests/s)", _number(get("throughput", "requests_per_s"))),
        ("input tokens/s", _number(get("throughput", "input_tokens_per_s"))),
        ("output tokens/s", _number(get("throughput", "output_tokens_per_s"))),
        ("SLO: TTFT target (ms)", _ms(get("slo", "ttft_s"))),
        ("SLO: TPOT target (ms)", _ms(get("slo", "tpot_s"))),
        ("SLO attainment", _percent(get("slo", "attainment"))),
        ("goodput (requests/s)", _number(get("goodput", "requests_per_s"))),
        ("goodput (tokens/s)", _number(get("goodput", "tokens_per_s"))),
    ]
    rows += [(label, _percent(get("utilization", key))) for key, label in (
        ("gpu_busy", "GPU busy"), ("kv_mean", "KV cache use, mean"),
        ("kv_peak", "KV cache use, peak"),
        ("mfu", "MFU"), ("mbu", "MBU"))]
    rows += [
        ("energy (J)", _number(get("energy", "joules"))),
        ("energy per output token (J)", _number(get("energy", "joules_per_output_token"))),
        ("cost (USD)", _number(get("cost", "usd"))),
        ("cost per million output tokens (USD)",
         _number(get("cost", "usd_per_million_output_tokens"))),
    ]
    if get("workflows", "completed") is not None:
        tct = get("workflows", "tct_s") or {}
        rows += [("workflows completed", _number(get("workflows", "completed"))),
                 ("workflow completion time p50 (ms)", _ms(tct.get("p50")))]
    rows += [("wall-clock time (s)", _number(get("sim", "wall_s"))),
             ("engine steps", _number(get("sim", "steps")))]
    return rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f}"


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction * 100:.1f}%"


def _number(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a temporary file beside ``path``, then move it onto ``path``."""
    # A fresh unique name (not mkstemp, whose 0600 mode would stick to the result).
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
