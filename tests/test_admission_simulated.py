"""The admission policies inside whole simulations: evictions, their accounting, SLA aborts.

One small instance (Llama-3.1-8B on an H100 with a 16k-token KV pool) under a
queue that never empties: prompts of 64-512 tokens, outputs of 128-512 with the
users' cap at 512, whole-prompt prefill (vLLM's default), so memory, not the
token budget, limits the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import memory_utilization, run, uniform, write_experiment
from simulator.config import load_experiment

KV_BLOCKS = 1000


def experiment(directory: Path, admission: dict[str, Any], num_requests: int = 300,
               lengths: dict[str, Any] | None = None, **extra: Any):
    data = {
        "name": "admission", "seed": 3, "model": "llama-3.1-8b",
        "cluster": {"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}],
                    "gpu_memory_utilization": memory_utilization("llama-3.1-8b", "h100-sxm", KV_BLOCKS)},
        "workload": {"generator": {"arrivals": {"process": "poisson", "rate_per_s": 40.0},
                                   "lengths": lengths or {"prompt": uniform(64, 512),
                                                          "output": uniform(128, 512)}},
                     "num_requests": num_requests, "max_output_tokens": 512},
        "policies": {"router": {"name": "round_robin"},
                     "batching": {"name": "vllm", "max_num_seqs": 256, "max_batched_tokens": 4096},
                     "admission": admission},
        "sim": {"sample_interval_s": None}, **extra,
    }
    return load_experiment(write_experiment(directory, data, f"{admission['name']}.yaml"))


def requests_of(tmp_path: Path, admission: dict[str, Any], **kwargs: Any) -> tuple[pd.DataFrame, dict]:
    result = run(experiment(tmp_path, admission, **kwargs))
    return result.requests, result.summary


def test_aggressive_evicts_and_every_eviction_is_accounted(tmp_path: Path) -> None:
    requests, summary = requests_of(tmp_path, {"name": "aggressive"})
    evicted = requests[requests["num_preemptions"] > 0]
    assert len(evicted) > 10, "the scenario must exhaust KV memory under aggressive admission"
    assert summary["events"]["preemptions"] == requests["num_preemptions"].sum()
    # Recompute cost in the request's timeline: the tokens it lost, and the gap it waited through.
    assert (evicted["recomputed_tokens"] > 0).all()
    done = requests[requests["status"] == "finished"]
    spared = done[done["num_preemptions"] == 0]
    assert evicted["max_token_gap_s"].median() > 2 * spared["max_token_gap_s"].median()


@pytest.mark.parametrize("admission", [
    {"name": "conservative"},
    {"name": "conservative", "max_output_tokens": 512},
    {"name": "oracle", "reserve": 0.0},
])
def test_conservative_and_oracle_never_evict(tmp_path: Path, admission: dict[str, Any]) -> None:
    requests, summary = requests_of(tmp_path, admission)
    assert summary["events"]["preemptions"] == 0
    assert (requests["status"] == "finished").all()


def test_oracle_holds_more_memory_than_conservative(tmp_path: Path) -> None:
    _, oracle = requests_of(tmp_path, {"name": "oracle", "reserve": 0.0})
    _, conservative = requests_of(tmp_path, {"name": "conservative"})
    assert oracle["utilization"]["kv_mean"] > conservative["utilization"]["kv_mean"] + 0.1
    assert oracle["throughput"]["output_tokens_per_s"] > conservative["throughput"]["output_tokens_per_s"]


def test_past_future_evictions_fall_as_its_history_fills(tmp_path: Path) -> None:
    # Outputs of 384-512 tokens against a history seeded with 32s: the policy over-admits (new
    # requests are expected to stop after 32 tokens) until real lengths fill the window.
    policy = {"name": "past_future", "initial_output_tokens": 32, "initial_copies": 100, "window": 100,
              "reserve": 0.03}
    lengths = {"prompt": uniform(64, 256), "output": uniform(384, 512)}
    requests, _ = requests_of(tmp_path, policy, num_requests=600, lengths=lengths)
    admitted = requests.dropna(subset=["first_scheduled_s"]).sort_values("first_scheduled_s")
    evicted = (admitted["num_preemptions"] > 0).to_numpy()
    early, late = evicted[:100].mean(), evicted[-300:].mean()
    assert early > 0.2 and late < early / 5, (early, late)


def test_sla_aborts_bound_the_wait_and_are_recorded(tmp_path: Path) -> None:
    policy = {"name": "past_future", "abort_ttft_s": 2.0, "max_output_tokens": 512}
    requests, summary = requests_of(tmp_path, policy)
    aborted = requests[requests["status"] == "rejected"]
    assert len(aborted) > 0 and aborted["reject_reason"].str.startswith("SLA abort").all()
    started = requests.dropna(subset=["first_scheduled_s"])
    # Nothing starts later than the abort deadline plus one engine step.
    assert (started["first_scheduled_s"] - started["arrival_s"]).max() < 2.0 + 0.5
    assert summary["requests"]["rejected"] == len(aborted)


def test_goodput_sla_counts_ttft_and_max_gap(tmp_path: Path) -> None:
    requests, summary = requests_of(tmp_path, {"name": "aggressive"}, slo={"ttft_s": 5.0, "max_tpot_s": 0.2})
    done = requests[requests["status"] == "finished"]
    ttft = done["first_token_s"] - done["arrival_s"]
    good = done[(ttft <= 5.0) & (done["max_token_gap_s"] <= 0.2)]
    window = summary["sim"]["window_s"]
    tokens = (good["prompt_tokens"].sum() + good["generated_tokens"].sum()) / window
    assert summary["goodput_sla"]["tokens_per_s"] == pytest.approx(tokens)
    assert summary["goodput_sla"]["requests_per_s"] == pytest.approx(len(good) / window)
    assert summary["goodput_sla"]["attainment"] == pytest.approx(len(good) / len(requests))
    assert 0 < len(good) < len(done)  # evictions break the max-TPOT SLA of some requests
    _, without = requests_of(tmp_path, {"name": "aggressive"}, slo={"ttft_s": 5.0})
    assert without["goodput_sla"] == {"tokens_per_s": None, "requests_per_s": None, "attainment": None}
