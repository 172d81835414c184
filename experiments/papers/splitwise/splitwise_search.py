"""The provisioning search: the highest arrival rate each cluster sustains within the SLOs.

One run replays ``requests`` Poisson arrivals at a rate on a cluster and
checks the nine slowdown percentiles (splitwise_slo.py). The search doubles or halves
the rate from a guess until it brackets the highest rate that meets the SLOs,
then bisects the bracket to ``tolerance`` (relative). Runs are deterministic
(seed 0), so the search is too.
"""

from __future__ import annotations

import time
from pathlib import Path

from splitwise_designs import Cluster
from simulator import api
from splitwise_slo import AloneLatency, slo_report

HERE = Path(__file__).resolve().parent
TRACES = {"conversation": "azure-conv-2023", "code": "azure-code-2023"}
# Rough per-machine rates (requests/s) to start the search from; only the run count depends on them.
GUESS = {"conversation": 1.0, "code": 0.6}

_alone: AloneLatency | None = None


def alone() -> AloneLatency:
    global _alone
    if _alone is None:
        _alone = AloneLatency(HERE / "base.yaml")
    return _alone


def run_once(trace: str, cluster: Cluster, rate: float, requests: int, transfer: str = "layerwise") -> dict:
    """One run, condensed: the SLO report, throughput, E2E and hand-off counters."""
    experiment = api.load(HERE / "base.yaml", {
        "cluster.instances": cluster.instances(),
        "workload.generator.lengths.profile": TRACES[trace],
        "workload.generator.arrivals.rate_per_s": rate,
        "workload.num_requests": requests,
        "policies.router.kv_transfer": transfer,
    })
    run = experiment.run()
    s = run.summary
    return {"rate": rate, **slo_report(run.requests, alone()),
            "throughput_rps": s["throughput"]["requests_per_s"], "e2e_mean_s": s["e2e_s"]["mean"],
            "ttft_mean_s": s["ttft_s"]["mean"], "tbt_p50_s": s["tbt_s"]["p50"],
            "kv_transfer_gb": s["events"]["kv_transfer_bytes"] / 1e9}


def max_rate(trace: str, cluster: Cluster, requests: int, tolerance: float = 0.05) -> dict:
    """The highest rate meeting the SLOs (0 if none above 1/64 of the guess), with its run's report."""
    started = time.perf_counter()
    rate = GUESS[trace] * cluster.machines
    good, bad, best, runs = 0.0, None, None, 0
    while bad is None or (bad - good) > tolerance * bad:
        report = run_once(trace, cluster, rate, requests)
        runs += 1
        if report["meets_slo"]:
            good, best = rate, report
        else:
            bad = rate
        if bad is None:
            rate *= 2
        elif good == 0.0:
            if rate < GUESS[trace] * cluster.machines / 64:
                break
            rate /= 2
        else:
            rate = (good + bad) / 2
    row = {"trace": trace, "design": cluster.design, "prompt": cluster.prompt, "token": cluster.token,
           "machines": cluster.machines, "usd_per_hour": cluster.usd_per_hour, "power_kw": cluster.power_kw,
           "max_rate": good, "runs": runs, "wall_s": time.perf_counter() - started}
    if best is not None:
        row.update({k: v for k, v in best.items() if k != "rate"})
    return row
