"""Run the Past-Future reproduction: every experiment's policy x client-count grid, then the tables.

    python experiments/papers/past_future/run.py [--workers 2] [--seeds 0 ...] [--only dist1_7b ...] [--out results.csv]

Each experiment file here holds the base configuration and, in its ``sweep:``
block, the client counts and the four admission policies; this script runs
every combination for every seed (a process pool of ``--workers``) and prints,
averaged over the seeds, the
paper's goodput (prompt + output tokens/s of requests meeting TTFT and
max-TPOT) over the whole run (``goodput_sla`` of the summary) and in steady
state (after the first third of the run, when Past-Future's history window has
filled - the paper drops its first 200 successful requests for the same
reason), servesim's standard goodput, mean KV use, evictions and SLA aborts,
as the Markdown tables the README shows. It also writes the rows to ``--out``.

The paper's clients re-send an aborted request until it succeeds; so do
servesim's closed-loop clients (a request rejected on arrival, which can never
fit, is not re-sent).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from simulator import api

HERE = Path(__file__).resolve().parent
EXPERIMENTS = ("dist1_7b", "dist2_7b", "dist3_7b", "o1_7b", "dist1_70b")
CLIENTS_KEY = "workload.closed_loop.clients"


def grid(name: str, seeds: list[int]) -> list[tuple[str, int, dict, int]]:
    """(experiment, clients, admission policy, seed) for every point of the file's sweep block."""
    sweep = yaml.safe_load((HERE / f"{name}.yaml").read_text())["sweep"]
    return [(name, clients, policy, seed) for clients, policy, seed
            in itertools.product(sweep[CLIENTS_KEY], sweep["policies.admission"], seeds)]


def run_point(point: tuple[str, int, dict, int]) -> dict:
    """One run, condensed to the table's columns."""
    name, clients, policy, seed = point
    experiment = api.load(HERE / f"{name}.yaml", {CLIENTS_KEY: clients, "policies.admission": policy,
                                                  "seed": seed})
    run = experiment.run()
    s, requests = run.summary, run.requests
    done = requests[requests["status"] == "finished"]
    slo = experiment.config["slo"]
    return {
        "experiment": name, "clients": clients, "policy": policy["name"], "seed": seed,
        "goodput_sla_tok_s": s["goodput_sla"]["tokens_per_s"],
        "steady_goodput_sla_tok_s": steady_goodput(done, slo, s["sim"]["simulated_s"]),
        "goodput_tok_s": s["goodput"]["tokens_per_s"],
        "sla_attainment": s["goodput_sla"]["attainment"],
        "completed": s["requests"]["completed"],
        "aborted": s["requests"]["rejected"],
        "kv_mean": s["utilization"]["kv_mean"],
        "evictions": s["events"]["preemptions"],
        # The paper's analysis metric: evictions per completed request.
        "evictions_per_completed": s["events"]["preemptions"] / max(len(done), 1),
        # The eviction rate: completed requests preempted at least once.
        "evicted_fraction": float((done["num_preemptions"] > 0).mean()) if len(done) else 0.0,
        "recomputed_tokens": int(requests["recomputed_tokens"].sum()),
        "ttft_p99_s": s["ttft_s"]["p99"],
        "max_gap_p99_s": float(done["max_token_gap_s"].quantile(0.99)) if len(done) else None,
        "wall_s": s["sim"]["wall_s"],
    }


def steady_goodput(done: pd.DataFrame, slo: dict, horizon_s: float) -> float:
    """Tokens/s of SLA-meeting requests finishing in the last two thirds of the run."""
    start = horizon_s / 3
    ttft = done["first_token_s"] - done["arrival_s"]
    good = done[(ttft <= slo["ttft_s"]) & (done["max_token_gap_s"] <= slo["max_tpot_s"])
                & (done["finish_s"] >= start)]
    return float(good["prompt_tokens"].sum() + good["generated_tokens"].sum()) / (horizon_s - start)


def averaged(rows: pd.DataFrame) -> pd.DataFrame:
    """The mean over seeds of every column, per experiment, client count and policy (in run order)."""
    keys = ["experiment", "clients", "policy"]
    return rows.drop(columns="seed").groupby(keys, sort=False).mean().reset_index()


def table(rows: pd.DataFrame) -> str:
    """The Markdown table of the README: one row per experiment, client count and policy."""
    lines = ["| experiment | clients | policy | goodput, steady (tok/s) | goodput, whole run | standard goodput | "
             "KV mean | evictions / completed | completed evicted | completed | SLA aborts |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows.itertuples():
        lines.append(f"| {r.experiment} | {r.clients} | {r.policy} | {r.steady_goodput_sla_tok_s:.0f} | "
                     f"{r.goodput_sla_tok_s:.0f} | {r.goodput_tok_s:.0f} | {r.kv_mean:.1%} | "
                     f"{r.evictions_per_completed:.2f} | {r.evicted_fraction:.1%} | {r.completed:.0f} | "
                     f"{r.aborted:.0f} |")
    return "\n".join(lines)


def ratios(rows: pd.DataFrame) -> str:
    """At each experiment's heaviest load: Past-Future over the better baseline, and over the oracle."""
    lines = ["| experiment | clients | past_future / max(aggressive, conservative) (steady goodput) | "
             "past_future / oracle |",
             "|---|---|---|---|"]
    for name, group in rows.groupby("experiment", sort=False):
        heaviest = group[group["clients"] == group["clients"].max()].set_index("policy")["steady_goodput_sla_tok_s"]
        best = max(heaviest.get("aggressive", 0.0), heaviest.get("conservative", 0.0))
        pf = heaviest.get("past_future", float("nan"))
        lines.append(f"| {name} | {group['clients'].max()} | {pf / best:.2f}x | {pf / heaviest.get('oracle'):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--out", type=Path, default=HERE / "results.csv")
    args = parser.parse_args(argv)
    points = [p for name in args.only for p in grid(name, args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = pd.DataFrame(list(pool.map(run_point, points)))
    rows.to_csv(args.out, index=False)
    mean = averaged(rows)
    print(table(mean), "\n")
    print(ratios(mean))
    print(f"\n{len(rows)} runs, {rows['wall_s'].sum():.0f} s of simulation wall time", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
