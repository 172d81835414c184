"""SplitwiseSim's reference setup: Llama-2-70B at TP8 on one DGX-A100, Azure-conversation lengths.

Poisson arrivals at 2 requests/s; cases `10k` and `50k`. References: SplitwiseSim
took 23.1 s and 109.4 s on this 2-core machine.

Run: python experiments/benchmarks/splitwise_equivalent.py [--cases 50k] [--json out.json]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness import SHARED_DATA, main, poisson_trace

REFERENCES = {"10k": 23.1, "50k": 109.4}


def lengths() -> pd.DataFrame:
    trace = pd.read_csv(SHARED_DATA / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")
    return pd.DataFrame({"prompt": trace["ContextTokens"], "output": trace["GeneratedTokens"]})


def experiment(tmp: Path, requests: int) -> dict:
    trace = poisson_trace(lengths(), requests, 2.0, seed=0, path=tmp / f"splitwise_{requests}.csv")
    return {"name": "splitwise_equivalent", "seed": 0, "model": "llama-2-70b",
            "cluster": {"node": "dgx-a100", "instances": [{"count": 1, "gpu": "a100-80gb", "tp": 8}]},
            "workload": {"trace": {"path": str(trace)}},
            "policies": {"router": {"name": "round_robin"},
                         "batching": {"name": "vllm", "max_num_seqs": 512, "max_batched_tokens": 8192,
                                      "chunked_prefill": True}}}


if __name__ == "__main__":
    main("splitwise_equivalent", {"10k": lambda tmp: experiment(tmp, 10_000),
                                  "50k": lambda tmp: experiment(tmp, 50_000)}, REFERENCES)
