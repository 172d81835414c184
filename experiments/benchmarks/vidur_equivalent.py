"""Vidur's reference setup: CodeLlama-34B at TP2 on A100-80GB, Azure-conversation lengths.

Cases `1k`, `10k`, `50k` (one replica, Poisson 1.5 req/s) and `50k_r16` (16
replicas at 24 req/s, round robin), each with the vLLM scheduler (at most 128
sequences and 4096 batched tokens) and a `_sarathi` variant (512-token chunks).
References: Vidur 0.0.26 on this 2-core machine took 6.7 s, 35.4 s, 166.5 s and
198.8 s for the vLLM cases.

Run: python experiments/benchmarks/vidur_equivalent.py [--cases 50k] [--json out.json]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness import SHARED_DATA, main, poisson_trace

REFERENCES = {"1k": 6.7, "10k": 35.4, "50k": 166.5, "50k_r16": 198.8}


def lengths() -> pd.DataFrame:
    trace = pd.read_csv(SHARED_DATA / "vidur_traces" / "splitwise_conv.csv")
    return pd.DataFrame({"prompt": trace["num_prefill_tokens"], "output": trace["num_decode_tokens"]})


def experiment(tmp: Path, requests: int, replicas: int, sarathi: bool) -> dict:
    rate = 1.5 * replicas
    trace = poisson_trace(lengths(), requests, rate, seed=0, path=tmp / f"vidur_{requests}_{replicas}.csv")
    batching = {"name": "sarathi", "max_num_seqs": 128, "max_batched_tokens": 512} if sarathi else \
               {"name": "vllm", "max_num_seqs": 128, "max_batched_tokens": 4096}
    return {"name": "vidur_equivalent", "seed": 0, "model": "codellama-34b",
            "cluster": {"node": "dgx-a100", "instances": [{"count": replicas, "gpu": "a100-80gb", "tp": 2}]},
            "workload": {"trace": {"path": str(trace)}},
            "policies": {"router": {"name": "round_robin"}, "batching": batching}}


def cases() -> dict:
    out = {}
    for name, requests, replicas in (("1k", 1000, 1), ("10k", 10_000, 1), ("50k", 50_000, 1),
                                     ("50k_r16", 50_000, 16)):
        out[name] = lambda tmp, n=requests, r=replicas: experiment(tmp, n, r, sarathi=False)
        out[f"{name}_sarathi"] = lambda tmp, n=requests, r=replicas: experiment(tmp, n, r, sarathi=True)
    return out


if __name__ == "__main__":
    main("vidur_equivalent", cases(), REFERENCES)
