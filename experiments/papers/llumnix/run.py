"""Run the Llumnix reproduction: burstiness sweeps, length distributions, priorities, auto-scaling.

    python experiments/papers/llumnix/run.py [--workers 2] [--seeds 0 1] [--only cv lengths priority autoscale]
                                             [--out results.csv]

Every point is one run of an experiment file here with overrides:

* ``cv``: sharegpt.yaml, Gamma arrivals with cv 1 (Poisson), 2, 4, 6, 8, under round-robin
  over vLLM instances, INFaaS++ (load-aware dispatch, no migration) and Llumnix;
* ``lengths``: burstgpt.yaml and longtail.yaml at cv 2 and 8, the same three schedulers;
* ``priority``: priority.yaml (10% high priority, cv 4) under INFaaS++ and Llumnix;
* ``info``: sharegpt.yaml at cv 2, 4 and 8 under INFaaS++ and Llumnix whose dispatch sees exact loads
  at every arrival (``live``) or the 50 ms reports plus its own dispatches since (``booked``), against
  the default (``reported``: the 50 ms reports alone, as Llumnix's global scheduler dispatches);
* ``autoscale``: autoscale.yaml with the scale-up threshold at 10, 30 and 50 (scale-down 50 above
  it) for Llumnix and for INFaaS++ with the same auto-scaler but no migration, and 16 static
  INFaaS++ instances for reference.

Every point runs once per seed (the workload's arrivals and lengths change with it); the tables
show the mean over the seeds, and ``--out`` keeps every run's row.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from simulator import api

HERE = Path(__file__).resolve().parent
# Both load-aware dispatchers rank the loads the instances reported at Llumnix's polling interval.
REPORT_S = 0.05
SCHEDULERS = {
    "round_robin": {"policies.router": {"name": "round_robin"}, "policies.controller": None},
    "infaas++": {"policies.router": {"name": "infaas", "load_report_interval_s": REPORT_S},
                 "policies.controller": None},
    "llumnix": {"policies.router": {"name": "llumnix", "load_report_interval_s": REPORT_S},
                "policies.controller": {"name": "llumnix"}},
}
# What the dispatcher sees (the ``info`` study): exact loads, or the reports plus its own bookkeeping.
DISPATCH_INFO = {
    "live": {"load_report_interval_s": 0.0},
    "booked": {"load_report_interval_s": REPORT_S, "count_own_dispatches": True},
}
SCALE_UP = (10, 30, 50)


def points(only: list[str], seeds: list[int]) -> list[tuple[str, str, str, dict]]:
    """(study, file, label, overrides) for every run and seed."""
    return [(study, file, label, {**sets, "seed": seed})
            for study, file, label, sets in _points(only) for seed in seeds]


def _points(only: list[str]) -> list[tuple[str, str, str, dict]]:
    found = []
    if "cv" in only:
        for cv in (1, 2, 4, 6, 8):
            for name, sets in SCHEDULERS.items():
                found.append(("cv", "sharegpt", name, {**sets, "workload.generator.arrivals.cv": cv}))
    if "lengths" in only:
        for file in ("burstgpt", "longtail"):
            for cv in (2, 8):
                for name, sets in SCHEDULERS.items():
                    found.append(("lengths", file, name, {**sets, "workload.generator.arrivals.cv": cv}))
    if "priority" in only:
        found.append(("priority", "priority", "infaas++", SCHEDULERS["infaas++"]))
        found.append(("priority", "priority", "llumnix", {}))
    if "info" in only:
        for cv in (2, 4, 8):
            for info, router in DISPATCH_INFO.items():
                for name in ("infaas++", "llumnix"):
                    sets = {**SCHEDULERS[name], "workload.generator.arrivals.cv": cv}
                    sets["policies.router"] = {**sets["policies.router"], **router}
                    found.append(("info", "sharegpt", f"{name} {info}", sets))
    if "autoscale" in only:
        for up in SCALE_UP:
            scaling = {"policies.controller.scaling.scale_up_below": up,
                       "policies.controller.scaling.scale_down_above": up + 50}
            found.append(("autoscale", "autoscale", "llumnix", scaling))
            found.append(("autoscale", "autoscale", "infaas++", {
                **scaling, "policies.router": SCHEDULERS["infaas++"]["policies.router"],
                "policies.controller.migration": False}))
        found.append(("autoscale", "autoscale", "infaas++ static 16", SCHEDULERS["infaas++"]))
    return found


def run_point(point: tuple[str, str, str, dict]) -> dict:
    """One run, condensed to the tables' columns."""
    study, file, label, sets = point
    started = time.perf_counter()
    experiment = api.load(HERE / f"{file}.yaml", sets)
    run = experiment.run()
    s, requests = run.summary, run.requests
    scaling, migration = s.get("scaling") or {}, s.get("migration") or {}
    instances = sum(group["count"] for group in experiment.config["cluster"]["instances"])
    # Without auto-scaling every instance is provisioned for the whole run.
    hours = scaling.get("instance_hours") or instances * s["sim"]["simulated_s"] / 3600
    row = {"study": study, "file": file, "scheduler": label, "seed": sets["seed"],
           "cv": sets.get("workload.generator.arrivals.cv", _cv(file)),
           "scale_up_below": sets.get("policies.controller.scaling.scale_up_below"),
           "completed": s["requests"]["completed"],
           "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p99_s": s["ttft_s"]["p99"], "ttft_mean_s": s["ttft_s"]["mean"],
           "e2e_mean_s": s["e2e_s"]["mean"], "e2e_p99_s": s["e2e_s"]["p99"],
           "tpot_mean_s": s["tpot_s"]["mean"], "tpot_p99_s": s["tpot_s"]["p99"],
           "preemptions": s["events"]["preemptions"], "migrations": s["events"]["migrations"],
           "migrations_aborted": migration.get("aborted", 0), "downtime_mean_s": migration.get("downtime_s_mean"),
           "instance_hours": hours, "mean_instances": scaling.get("mean_instances") or instances,
           "wall_s": time.perf_counter() - started}
    row.update(_by_priority(requests))
    return row


def _cv(file: str) -> float:
    return {"priority": 4.0}.get(file, 1.0)


def _by_priority(requests: pd.DataFrame) -> dict:
    """Mean latencies of high-priority (1) and normal (0) requests, when both are present."""
    done = requests[requests["status"] == "finished"]
    if done["priority"].nunique() < 2:
        return {}
    out = {}
    for priority, name in ((1, "high"), (0, "normal")):
        rows = done[done["priority"] == priority]
        steps = (rows["generated_tokens"] - 1).clip(lower=1)
        out[f"{name}_ttft_mean_s"] = float((rows["first_token_s"] - rows["arrival_s"]).mean())
        out[f"{name}_e2e_mean_s"] = float((rows["finish_s"] - rows["arrival_s"]).mean())
        out[f"{name}_e2e_p99_s"] = float(np.percentile(rows["finish_s"] - rows["arrival_s"], 99))
        out[f"{name}_tpot_mean_s"] = float(((rows["last_token_s"] - rows["first_token_s"]) / steps).mean())
    return out


def mean_over_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per point (study, file, scheduler, cv, threshold), numbers averaged over the seeds."""
    keys = ["study", "file", "scheduler", "cv", "scale_up_below"]
    numeric = [c for c in rows.columns if c not in keys and c != "seed" and pd.api.types.is_numeric_dtype(rows[c])]
    return rows.groupby(keys, sort=False, dropna=False)[numeric].mean().reset_index()


def tables(rows: pd.DataFrame) -> str:
    rows = mean_over_seeds(rows)
    out = []
    ms = lambda v: f"{v * 1000:,.0f}"  # noqa: E731 - a formatter
    for study, title in (("cv", "ShareGPT-like, 16 x A10, 11 req/s"), ("lengths", "other length distributions")):
        part = rows[rows["study"] == study]
        if part.empty:
            continue
        out.append(f"\n### {title}\n\n| lengths | cv | scheduler | TTFT p50 ms | TTFT p99 ms | E2E mean s | E2E p99 s | "
                   "TPOT p99 ms | preemptions | migrations (aborted) |\n|---|---|---|---|---|---|---|---|---|---|")
        for r in part.itertuples():
            out.append(f"| {r.file} | {r.cv:g} | {r.scheduler} | {ms(r.ttft_p50_s)} | {ms(r.ttft_p99_s)} | "
                       f"{r.e2e_mean_s:.1f} | {r.e2e_p99_s:.1f} | {ms(r.tpot_p99_s)} | {r.preemptions:.0f} | "
                       f"{r.migrations:.0f} ({r.migrations_aborted:.0f}) |")
    out.append(headline(rows))
    out.append(dispatch_info(rows))
    part = rows[rows["study"] == "priority"]
    if not part.empty:
        out.append("\n### priorities (10% high, cv 4)\n\n| scheduler | high: TTFT mean ms | high: E2E mean s | "
                   "high: TPOT mean ms | normal: TTFT mean ms | normal: E2E mean s | normal: TPOT mean ms |\n"
                   "|---|---|---|---|---|---|---|")
        for r in part.itertuples():
            out.append(f"| {r.scheduler} | {ms(r.high_ttft_mean_s)} | {r.high_e2e_mean_s:.1f} | "
                       f"{ms(r.high_tpot_mean_s)} | {ms(r.normal_ttft_mean_s)} | {r.normal_e2e_mean_s:.1f} | "
                       f"{ms(r.normal_tpot_mean_s)} |")
    part = rows[rows["study"] == "autoscale"]
    if not part.empty:
        out.append("\n### auto-scaling (Poisson 6 req/s, 1 to 16 instances, 16 at the start)\n\n| scheduler | scale up below | "
                   "instance-hours | mean instances | TTFT p99 ms | E2E p99 s | TPOT p99 ms | migrations |\n"
                   "|---|---|---|---|---|---|---|---|")
        for r in part.itertuples():
            up = "-" if pd.isna(r.scale_up_below) else f"{r.scale_up_below:g}"
            out.append(f"| {r.scheduler} | {up} | {r.instance_hours:.2f} | {r.mean_instances:.1f} | "
                       f"{ms(r.ttft_p99_s)} | {r.e2e_p99_s:.1f} | {ms(r.tpot_p99_s)} | {r.migrations:.0f} |")
    return "\n".join(out)


def headline(rows: pd.DataFrame) -> str:
    """P99 TTFT of INFaaS++ over Llumnix's, and preemptions, per length distribution and cv."""
    part = rows[rows["study"].isin(["cv", "lengths"])]
    if part.empty:
        return ""
    out = ["\n### headline: P99 TTFT, INFaaS++ / Llumnix\n\n| lengths | cv | round-robin P99 TTFT s | INFaaS++ | "
           "Llumnix | INFaaS++ / Llumnix | preemptions INFaaS++ / Llumnix |\n|---|---|---|---|---|---|---|"]
    for (file, cv), group in part.groupby(["file", "cv"], sort=False):
        by = group.set_index("scheduler")
        rr, inf, llx = (by.loc[name] for name in ("round_robin", "infaas++", "llumnix"))
        out.append(f"| {file} | {cv:g} | {rr.ttft_p99_s:.2f} | {inf.ttft_p99_s:.2f} | {llx.ttft_p99_s:.2f} | "
                   f"{inf.ttft_p99_s / llx.ttft_p99_s:.2f}x | {inf.preemptions:.0f} / {llx.preemptions:.0f} |")
    return "\n".join(out)


def dispatch_info(rows: pd.DataFrame) -> str:
    """P99 TTFT and preemptions by what the dispatcher sees (the ``info`` study, with ``cv``'s reported rows)."""
    part = rows[rows["study"] == "info"]
    if part.empty:
        return ""
    reported = rows[(rows["study"] == "cv") & rows["scheduler"].isin(["infaas++", "llumnix"])].copy()
    reported["scheduler"] = reported["scheduler"] + " reported"
    both = pd.concat([part, reported])
    out = ["\n### what dispatch sees (ShareGPT-like): P99 TTFT s, INFaaS++ / Llumnix (preemptions)\n\n| cv | loads | "
           "INFaaS++ | Llumnix | INFaaS++ / Llumnix | preemptions INFaaS++ / Llumnix |\n|---|---|---|---|---|---|"]
    for cv in sorted(part["cv"].unique()):
        by = both[both["cv"] == cv].set_index("scheduler")
        for info in ("live", "booked", "reported"):
            if f"infaas++ {info}" not in by.index or f"llumnix {info}" not in by.index:
                continue
            inf, llx = by.loc[f"infaas++ {info}"], by.loc[f"llumnix {info}"]
            out.append(f"| {cv:g} | {info} | {inf.ttft_p99_s:.2f} | {llx.ttft_p99_s:.2f} | "
                       f"{inf.ttft_p99_s / llx.ttft_p99_s:.2f}x | {inf.preemptions:.0f} / {llx.preemptions:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--only", nargs="*", default=["cv", "lengths", "info", "priority", "autoscale"])
    parser.add_argument("--out", type=Path, default=HERE / "results.csv")
    args = parser.parse_args(argv)
    todo = points(args.only, args.seeds)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = pd.DataFrame(list(pool.map(run_point, todo)))
    rows.to_csv(args.out, index=False)
    print(tables(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
