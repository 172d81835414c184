"""The report of one run (``report.md`` and ``report.html``), built from its output folder alone.

``write_report`` reads ``summary.json``, ``requests.csv`` and, when present,
``timeseries.csv`` (through ``simulator.report.files``, which refuses damaged
files with one line) - never the simulator - so any finished run folder can be
re-reported later, by ``servesim report DIR`` or from a notebook. The report is
one ``Document`` rendered as Markdown (figures linked) and as a standalone HTML
page (figures embedded). Every file is written under a temporary name and moved
into place, so a crash never leaves half a report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from simulator import atomic
from simulator.metrics.summary import add_latency_columns
from simulator.report import figures
from simulator.report.definitions import DEFINITIONS_MD
from simulator.report.document import Document
from simulator.report.files import REQUEST_COLUMNS as _CSV_COLUMNS
from simulator.report.files import read_requests, read_summary, read_timeseries

__all__ = ["build_document", "energy_cost_rows", "read_completed_requests", "read_summary", "read_timeseries",
           "render_markdown", "write_report"]

FIGURES = {"ttft_cdf.png": ("ttft_s", "TTFT"), "tpot_cdf.png": ("tpot_s", "TPOT"),
           "e2e_cdf.png": ("e2e_s", "E2E latency")}
TIMESERIES_FIGURE = "timeseries.png"
LATENCY_ROWS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("tbt_s", "TBT"),
                ("e2e_s", "E2E latency"), ("queue_s", "Queueing delay"))


def write_report(out_dir: Path) -> Path:
    """Write ``report.md``, ``report.html`` and the figures (latency CDFs, time series) into ``out_dir``.

    Returns the path of ``report.md``.
    """
    out_dir = Path(out_dir)
    summary = read_summary(out_dir / "summary.json")
    arrived = (summary.get("requests") or {}).get("arrived")
    completed = read_completed_requests(out_dir / "requests.csv", arrived if isinstance(arrived, int) else None)
    for filename, (column, name) in FIGURES.items():
        slo_s = (summary.get("slo") or {}).get(column)
        figures.save_png(figures.latency_cdf(completed[column].to_numpy(), name=name, slo_s=slo_s),
                         out_dir / filename)
    samples = read_timeseries(out_dir / "timeseries.csv")
    if samples is not None:
        figures.save_png(figures.timeseries(samples, title="Per-instance state over time"),
                         out_dir / TIMESERIES_FIGURE)
    document = build_document(summary, with_timeseries=samples is not None)
    atomic.write_text(out_dir / "report.html", document.to_html(out_dir))
    return atomic.write_text(out_dir / "report.md", document.to_markdown())


def read_completed_requests(path: Path, expected_rows: int | None = None) -> pd.DataFrame:
    """Completed rows of ``requests.csv`` with the latency columns added (a damaged table is refused)."""
    frame = read_requests(path, _CSV_COLUMNS, expected_rows)
    frame = frame[frame["status"] == "finished"]
    return add_latency_columns(frame)


def render_markdown(summary: dict[str, Any], with_timeseries: bool = False) -> str:
    """The report text for ``summary``: title, tables, figures and definitions."""
    return build_document(summary, with_timeseries).to_markdown()


def build_document(summary: dict[str, Any], with_timeseries: bool = False) -> Document:
    """The report of one run as blocks (rendered to Markdown and HTML)."""
    sim = summary.get("sim") or {}
    doc = Document(f"servesim report: {summary.get('experiment')}")
    doc.paragraph(f"seed {summary.get('seed')} · servesim {summary.get('version')} · "
                  f"{_number(sim.get('simulated_s'))} simulated s · window {_number(sim.get('window_s'))} s")
    doc.heading("Latency (ms)").table(*_latency_table(summary))
    doc.heading("Run summary").table(("metric", "value"), _summary_rows(summary))
    doc.heading("Energy and cost").table(("metric", "value"), energy_cost_rows(summary))
    doc.heading("Figures")
    for filename, (_, name) in FIGURES.items():
        doc.figure(filename, f"{name} CDF")
    if with_timeseries:
        doc.figure(TIMESERIES_FIGURE, "KV cache use, waiting requests and running batch per instance over time")
    return doc.heading("Definitions").raw(DEFINITIONS_MD)


def _latency_table(summary: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    rows = []
    for key, label in LATENCY_ROWS:
        stats = summary.get(key) or {}
        rows.append((label, *(_ms(stats.get(k)) for k in ("mean", "p50", "p90", "p99"))))
    return ("metric", "mean", "p50", "p90", "p99"), rows


def energy_cost_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """Energy and cost of a run, as (label, formatted value) rows."""
    energy, cost = s.get("energy") or {}, s.get("cost") or {}
    return [("energy (J)", _number(energy.get("joules"))),
            ("energy per output token (J)", _number(energy.get("joules_per_output_token"))),
            ("cost (USD)", _number(cost.get("usd"))),
            ("cost per million output tokens (USD)", _number(cost.get("usd_per_million_output_tokens")))]


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
    if get("workflows", "completed") is not None:
        tct = get("workflows", "tct_s") or {}
        rows += [("workflows completed", _number(get("workflows", "completed"))),
                 ("workflow completion time p50 (ms)", _ms(tct.get("p50")))]
    rows += [("wall-clock time (s)", _number(get("sim", "wall_s"))),
             ("engine steps", _number(get("sim", "steps")))]
    return rows


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
