"""Run the Splitwise reproduction: the provisioning search, then the tables of the README.

    python experiments/papers/splitwise/run.py [--reference 4] [--requests 1200] [--workers 2]
                                               [--traces conversation code] [--out results.csv] [--reuse]

For each trace (Azure 2023 conversation and code lengths, Poisson arrivals)
and each budget (iso-cost and iso-power: the cost or power of ``--reference``
DGX-H100 machines; the paper's is 40, the default here 4 so that the whole
study runs on two cores in minutes; low-cost: 80% of the iso-cost budget), every design's clusters that spend the
budget (each prompt/token split) are searched for the highest rate meeting
Splitwise's nine slowdown SLOs (splitwise_search.py, splitwise_slo.py). The report gives, per
design, its best cluster: max throughput under the SLOs, cost, power and
machines, and its ratio to the Baselines; then whether a power-capped
Splitwise-HHcap cluster reaches Baseline-H100's throughput at lower power;
then what the KV transfer adds to mean E2E (layer-wise, serialized and ideal
transfer on the best Splitwise-HH cluster at 80% of its max rate). Rows go
to ``--out`` (the search) and ``transfer.csv``.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from splitwise_designs import BUDGETS, DESIGNS, Cluster, clusters  # noqa: E402
from splitwise_search import TRACES, max_rate, run_once  # noqa: E402


def _search(task: tuple[str, Cluster, int]) -> dict:
    trace, cluster, requests = task
    return max_rate(trace, cluster, requests)


def search_all(traces: list[str], reference: int, requests: int, workers: int) -> pd.DataFrame:
    """Every distinct cluster of every budget, searched once per trace."""
    distinct = {c: None for kind in BUDGETS for design in DESIGNS for c in clusters(design, kind, reference)}
    tasks = [(trace, cluster, requests) for trace in traces for cluster in distinct]
    with ProcessPoolExecutor(workers) as pool:
        rows = list(pool.map(_search, tasks))
    return pd.DataFrame(rows)


def best_per_design(results: pd.DataFrame, trace: str, kind: str, reference: int) -> pd.DataFrame:
    """Each design's best cluster within the budget, with its ratios to the two Baselines.

    The Baselines compared against are those of the same budget, except under ``low-cost``,
    where they are the full (iso-cost) budget's: less money against the same-cost baseline.
    """
    rows = []
    for design in DESIGNS:
        allowed = {(c.prompt, c.token) for c in clusters(design, kind, reference)}
        mine = results[(results["trace"] == trace) & (results["design"] == design)]
        mine = mine[[(p, t) in allowed for p, t in zip(mine["prompt"], mine["token"])]]
        rows.append(mine.sort_values(["max_rate", "power_kw"], ascending=[False, True]).iloc[0])
    table = pd.DataFrame(rows).reset_index(drop=True)
    reference_table = table if kind != "low-cost" else best_per_design(results, trace, "iso-cost", reference)
    for base in ("Baseline-A100", "Baseline-H100"):
        rate = float(reference_table.loc[reference_table["design"] == base, "max_rate"].iloc[0])
        table[f"x_{base}"] = table["max_rate"] / rate if rate else float("nan")
    return table


def format_best(table: pd.DataFrame) -> str:
    lines = ["| design | cluster | machines | $/h | kW | max req/s | x Baseline-A100 | x Baseline-H100 |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cluster = Cluster(r["design"], int(r["prompt"]), int(r["token"])).label
        lines.append(f"| {r['design']} | {cluster} | {r['machines']} | {r['usd_per_hour']:.1f} | "
                     f"{r['power_kw']:.1f} | {r['max_rate']:.2f} | {r['x_Baseline-A100']:.2f} | "
                     f"{r['x_Baseline-H100']:.2f} |")
    return "\n".join(lines)


def hhcap_at_lower_power(results: pd.DataFrame, trace: str, reference: int) -> str:
    """HHcap clusters that reach Baseline-H100's max throughput, with their power."""
    mine = results[results["trace"] == trace]
    base = mine[mine["design"] == "Baseline-H100"].iloc[0]
    caps = mine[(mine["design"] == "Splitwise-HHcap") & (mine["max_rate"] >= base["max_rate"])]
    lines = [f"Baseline-H100 ({base['machines']} machines, {base['power_kw']:.1f} kW): {base['max_rate']:.2f} req/s."]
    for _, r in caps.sort_values("power_kw").iterrows():
        cluster = Cluster("Splitwise-HHcap", int(r["prompt"]), int(r["token"])).label
        lines.append(f"Splitwise-HHcap {cluster}: {r['max_rate']:.2f} req/s at {r['power_kw']:.1f} kW "
                     f"({r['power_kw'] / base['power_kw'] - 1:+.0%} power), ${r['usd_per_hour']:.0f}/h")
    if caps.empty:
        lines.append("no Splitwise-HHcap cluster reaches it")
    return "\n".join(lines)


def transfer_overhead(results: pd.DataFrame, requests: int, reference: int) -> pd.DataFrame:
    """Mean E2E with ideal, layer-wise and serialized KV transfer on the best Splitwise-HH cluster."""
    best = best_per_design(results, "conversation", "iso-cost", reference)
    row = best[best["design"] == "Splitwise-HH"].iloc[0]
    cluster = Cluster("Splitwise-HH", int(row["prompt"]), int(row["token"]))
    rate = 0.8 * float(row["max_rate"])
    rows = [{"cluster": cluster.label, "transfer": mode, **run_once("conversation", cluster, rate, requests, mode)}
            for mode in ("ideal", "layerwise", "serialized")]
    table = pd.DataFrame(rows)
    ideal = float(table.loc[table["transfer"] == "ideal", "e2e_mean_s"].iloc[0])
    table["e2e_vs_ideal"] = table["e2e_mean_s"] / ideal - 1
    return table


def format_transfer(table: pd.DataFrame) -> str:
    lines = ["| cluster | transfer | req/s | mean E2E s | vs ideal | mean TTFT s | TBT p50 ms | KV sent GB |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['cluster']} | {r['transfer']} | {r['rate']:.2f} | {r['e2e_mean_s']:.3f} | "
                     f"{r['e2e_vs_ideal']:+.3%} | {r['ttft_mean_s']:.3f} | {1000 * r['tbt_p50_s']:.1f} | "
                     f"{r['kv_transfer_gb']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=int, default=4, help="budget in DGX-H100 machines (paper: 40)")
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--traces", nargs="+", default=list(TRACES), choices=list(TRACES))
    parser.add_argument("--out", type=Path, default=HERE / "results.csv")
    parser.add_argument("--reuse", action="store_true", help="read the search from --out instead of running it")
    args = parser.parse_args(argv)
    if args.reuse:
        results = pd.read_csv(args.out)
    else:
        results = search_all(args.traces, args.reference, args.requests, args.workers)
        results.to_csv(args.out, index=False)
    for trace in args.traces:
        for kind in BUDGETS:
            print(f"\n### {trace}, {kind} (budget of {args.reference} DGX-H100)\n")
            print(format_best(best_per_design(results, trace, kind, args.reference)))
        print(f"\n{hhcap_at_lower_power(results, trace, args.reference)}")
    if "conversation" in args.traces:
        transfer = transfer_overhead(results, args.requests, args.reference)
        transfer.to_csv(args.out.with_name("transfer.csv"), index=False)
        print("\n" + format_transfer(transfer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
