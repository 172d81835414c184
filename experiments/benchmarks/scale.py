"""Scale: Llama-3.1-8B on 64 H100s, JSQ on tokens, Azure-conversation lengths, ~80% load.

Cases `10k`, `100k` and `1m` requests; prints how wall time grows with the
number of requests (the exponent of a power-law fit over the cases run).

Run: python experiments/benchmarks/scale.py [--cases 10k,100k] [--json out.json]
"""

from __future__ import annotations

import math
from pathlib import Path

from harness import main

# One H100 serves about 9 requests/s of Azure-conversation traffic with Llama-3.1-8B
# before TTFT climbs (from the quickstart at rising rates); 80% of 64 of them:
RATE_PER_S = 0.8 * 9.0 * 64


def experiment(tmp: Path, requests: int) -> dict:
    return {"name": "scale", "seed": 0, "model": "llama-3.1-8b",
            "cluster": {"node": "dgx-h100", "instances": [{"count": 64, "gpu": "h100-sxm", "tp": 1}]},
            "workload": {"generator": {"arrivals": {"process": "poisson", "rate_per_s": RATE_PER_S},
                                       "lengths": {"profile": "azure-conv-2023"}},
                         "num_requests": requests},
            "policies": {"router": {"name": "jsq", "load": "tokens"},
                         "batching": {"name": "vllm", "max_num_seqs": 256, "max_batched_tokens": 8192,
                                      "chunked_prefill": True}}}


if __name__ == "__main__":
    rows = main("scale", {name: (lambda tmp, n=n: experiment(tmp, n))
                          for name, n in (("10k", 10_000), ("100k", 100_000), ("1m", 1_000_000))})
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        exponent = math.log(last["wall_s"] / first["wall_s"]) / math.log(last["requests"] / first["requests"])
        print(f"wall time grows as requests^{exponent:.3f} from {first['case']} to {last['case']}")
