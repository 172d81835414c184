"""Splitwise's SLOs: nine percentiles of slowdown against a request running alone.

For each request, TTFT, TBT (its mean time between tokens) and E2E are
divided by what the same request takes alone on a DGX-A100 (Splitwise
normalises to the A100 for every design): the cost model's prefill time of
its prompt, its decode step at batch 1 over the mean context, and their sum
over its tokens. A design meets the SLOs when the P50, P90 and P99 of each
slowdown are within the paper's Table V bounds. A request that did not
finish counts as infinitely slow.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from simulator.config import load_experiment
from simulator.runner import Simulation

# metric -> (P50, P90, P99) bound on the slowdown (Splitwise, Table V)
SLOS = {"ttft": (2.0, 3.0, 6.0), "tbt": (1.25, 1.5, 5.0), "e2e": (1.25, 1.5, 5.0)}
PERCENTILES = (50, 90, 99)


class AloneLatency:
    """What a request of a given shape takes alone on one DGX-A100 (Llama-2-70B, TP8)."""

    def __init__(self, base_yaml) -> None:
        experiment = load_experiment(base_yaml, ["cluster.instances=[{count: 1, node: dgx-a100, tp: 8}]",
                                                 "policies.router={name: round_robin}"])
        self.cost = Simulation(experiment).cluster.instances[0].cost_model
        self.prefill_s = lru_cache(maxsize=None)(lambda p: float(self.cost.prefill_time_s(p)))
        self.decode_s = lru_cache(maxsize=None)(lambda ctx: float(self.cost.decode_time_s(1, ctx)))

    def table(self, prompts: np.ndarray, outputs: np.ndarray) -> pd.DataFrame:
        ttft = np.array([self.prefill_s(int(p)) for p in prompts])
        tbt = np.array([self.decode_s(int(p + o // 2)) for p, o in zip(prompts, outputs)])
        return pd.DataFrame({"ttft": ttft, "tbt": tbt, "e2e": ttft + (outputs - 1) * tbt})


def slowdowns(requests: pd.DataFrame, alone: AloneLatency) -> pd.DataFrame:
    """Per-request slowdowns of TTFT, TBT and E2E (inf for a request that did not finish)."""
    done = requests["status"] == "finished"
    prompts, outputs = requests["prompt_tokens"].to_numpy(), requests["output_tokens"].to_numpy()
    base = alone.table(prompts, outputs)
    first, last = requests["first_token_s"].to_numpy(float), requests["last_token_s"].to_numpy(float)
    ttft = first - requests["arrival_s"].to_numpy(float)
    e2e = requests["finish_s"].to_numpy(float) - requests["arrival_s"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tbt = np.where(outputs > 1, (last - first) / np.maximum(outputs - 1, 1), np.nan)
    out = pd.DataFrame({"ttft": ttft / base["ttft"], "tbt": tbt / base["tbt"], "e2e": e2e / base["e2e"]})
    out.loc[~done.to_numpy()] = np.inf
    return out


def slo_report(requests: pd.DataFrame, alone: AloneLatency) -> dict[str, float]:
    """The nine slowdown percentiles, and ``meets_slo`` (1.0 or 0.0) and the worst ratio to its bound."""
    slow = slowdowns(requests, alone)
    report, worst = {}, 0.0
    for metric, bounds in SLOS.items():
        values = slow[metric].dropna().to_numpy()
        for q, bound in zip(PERCENTILES, bounds):
            value = float(np.percentile(values, q)) if len(values) else np.inf
            report[f"{metric}_p{q}"] = value
            worst = max(worst, value / bound)
    report["slo_worst"] = worst
    report["meets_slo"] = float(worst <= 1.0)
    return report
