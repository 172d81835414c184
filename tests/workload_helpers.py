"""Helpers shared by the workload tests: building workloads from mappings and reading their columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest

from simulator.engine.request import RequestSpec
from simulator.engine.session import SessionSpec
from simulator.yaml_loading import condense_validation_error
from workloads import WorkloadConfig, build_workload

SHARED_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def shared(relative: str) -> Path:
    """A file of ../shared/data; the test skips when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA / relative


def config(**workload) -> WorkloadConfig:
    return WorkloadConfig.model_validate(workload)


def build(cfg: WorkloadConfig | dict, seed: int = 0, base_dir: Path = Path("."), context: int | None = None):
    """The built workload (not yet iterated)."""
    if isinstance(cfg, dict):
        cfg = config(**cfg)
    return build_workload(cfg, np.random.default_rng(seed), base_dir, context)


def run(cfg: WorkloadConfig | dict, seed: int = 0, base_dir: Path = Path("."), context: int | None = None) -> list:
    return list(build(cfg, seed, base_dir, context))


def columns(specs: list[RequestSpec]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([s.arrival_s for s in specs]), np.array([s.prompt_tokens for s in specs]),
            np.array([s.output_tokens for s in specs]))


def sessions_of(items: list) -> list[SessionSpec]:
    return [item for item in items if isinstance(item, SessionSpec)]


def config_error(**workload) -> str:
    """The one-line message a bad ``workload:`` mapping gives."""
    with pytest.raises(pydantic.ValidationError) as info:
        config(**workload)
    return condense_validation_error(info.value, "exp.yaml", "workload")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def trace(path: str, **options) -> dict:
    """A ``workload:`` mapping replaying ``path``."""
    return {"trace": {"path": str(path), **options}}


def relative_error_bound(n: int, sigmas: float = 5.0) -> float:
    """A tolerance of ``sigmas`` standard errors for a mean of ``n`` draws with CV about 1."""
    return sigmas / np.sqrt(n)
