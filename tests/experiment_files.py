"""Small experiment files for the sweep, capacity, regress and API tests (fast: ~0.1 s a run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SMALL: dict[str, Any] = {
    "name": "small",
    "seed": 0,
    "model": "llama-3.1-8b",
    "cluster": {"node": "dgx-h100", "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}]},
    "workload": {
        "generator": {
            "arrivals": {"process": "poisson", "rate_per_s": 10.0},
            "lengths": {"prompt": {"dist": "uniform", "min_tokens": 32, "max_tokens": 512},
                        "output": {"dist": "uniform", "min_tokens": 1, "max_tokens": 64}},
        },
        "num_requests": 100,
    },
    "policies": {"router": {"name": "round_robin"},
                 "batching": {"name": "vllm", "max_num_seqs": 64, "max_batched_tokens": 4096},
                 "admission": {"name": "aggressive"}},
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
}


def write_small(directory: Path, name: str = "small.yaml", **top_level: Any) -> Path:
    """Write the small experiment (top-level keys replaced by ``top_level``) and return its path."""
    data = copy.deepcopy(SMALL)
    data.update(copy.deepcopy(top_level))
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
