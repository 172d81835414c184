"""Shared fixtures: small experiments built from keyword overrides, and a runner.

``make_experiment(**overrides)`` writes an experiment YAML to the test's
``tmp_path`` and loads it with ``simulator.config.load_experiment``, so every
test goes through the same strict loading a user's file does. Overrides are
merged into the defaults recursively (a nested mapping replaces only the keys
it names); ``instances=[...]`` and the shorthands ``router=``, ``batching=``,
``admission=``, ``prompt=``, ``output=``, ``rate=``, ``num_requests=`` and
``horizon_s=`` cover what most tests vary. A ``workload=`` that names a
``trace`` or ``generator`` replaces the default workload instead of merging
(see ``trace_workload``).

Two suite-wide settings live here too:

- Hypothesis profiles: ``ci`` (the default; few examples, no deadline,
  derandomized so that CI is deterministic) and ``long`` (many examples, random;
  run by hand: ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz_*.py``).
- The engine's invariant checker (``sim.check_invariants``) is switched on for
  every ``Simulation`` a test builds in this process (autouse fixture
  ``_invariant_checks``); ``SERVESIM_CHECK_INVARIANTS=0`` or the marker
  ``no_invariant_checks`` turns it off, e.g. to time a test.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, settings

import simulator.runner
from simulator.config import Experiment, load_experiment
from simulator.engine.instance import Instance, InstanceSetup
from simulator.engine.run_driver import RunDriver
from simulator.runner import RunResult, run_experiment

# ------------------------------------------------------------ hypothesis profiles
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=500, deadline=None, derandomize=False, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ------------------------------------------------------- invariant checks in every run
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_invariant_checks: build simulations without sim.check_invariants")


def _checked_setup(*args: Any, **kwargs: Any) -> InstanceSetup:
    """``InstanceSetup`` with ``check_invariants`` forced on (what the runner builds in tests)."""
    return dataclasses.replace(InstanceSetup(*args, **kwargs), check_invariants=True)


@pytest.fixture(autouse=True)
def _invariant_checks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every simulation built in this process checks KV capacity, counters and time after each commit."""
    if os.environ.get("SERVESIM_CHECK_INVARIANTS", "1") == "0" or request.node.get_closest_marker(
            "no_invariant_checks"):
        return
    monkeypatch.setattr(simulator.runner, "InstanceSetup", _checked_setup)

DEFAULT_EXPERIMENT: dict[str, Any] = {
    "name": "test",
    "seed": 0,
    "model": "llama-3.1-8b",
    "cluster": {
        "node": "dgx-h100",
        "instances": [{"count": 1, "gpu": "h100-sxm", "tp": 1}],
    },
    "workload": {
        "generator": {
            "arrivals": {"process": "poisson", "rate_per_s": 10.0},
            "lengths": {
                "prompt": {"dist": "uniform", "min_tokens": 32, "max_tokens": 512},
                "output": {"dist": "uniform", "min_tokens": 1, "max_tokens": 64},
            },
        },
        "num_requests": 20,
    },
    "policies": {
        "router": {"name": "round_robin"},
        "batching": {"name": "vllm", "max_num_seqs": 64, "max_batched_tokens": 4096},
        "admission": {"name": "aggressive"},
    },
}

_SHORTHANDS = {
    "router": ("policies", "router"),
    "batching": ("policies", "batching"),
    "admission": ("policies", "admission"),
    "instances": ("cluster", "instances"),
    "prompt": ("workload", "generator", "lengths", "prompt"),
    "output": ("workload", "generator", "lengths", "output"),
    "rate": ("workload", "generator", "arrivals", "rate_per_s"),
    "num_requests": ("workload", "num_requests"),
    "horizon_s": ("sim", "horizon_s"),
}


def fixed(tokens: int) -> dict[str, Any]:
    """A length distribution that always gives ``tokens``."""
    return {"dist": "fixed", "tokens": int(tokens)}


def uniform(low: int, high: int) -> dict[str, Any]:
    """A length distribution uniform over ``low..high`` (both included)."""
    return {"dist": "uniform", "min_tokens": int(low), "max_tokens": int(high)}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("router", "batching",
                                                                                      "admission", "prompt",
                                                                                      "output"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def experiment_dict(**overrides: Any) -> dict[str, Any]:
    """The default experiment mapping with ``overrides`` applied (see the module docstring)."""
    data = copy.deepcopy(DEFAULT_EXPERIMENT)
    for key, value in overrides.items():
        if key in _SHORTHANDS:
            *parents, leaf = _SHORTHANDS[key]
            node = data
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = copy.deepcopy(value)
        elif key == "workload" and isinstance(value, dict) and ("trace" in value or "generator" in value):
            data[key] = copy.deepcopy(value)  # a new source replaces the default workload whole
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = _merge(data[key], value)
        else:
            data[key] = copy.deepcopy(value)
    return data


def trace_workload(directory: Path, rows: list[tuple[float, int, int]], name: str = "trace.csv") -> dict[str, Any]:
    """Write ``(arrival_s, prompt_tokens, output_tokens)`` rows as a trace CSV; returns the ``workload:``.

    The trace is replayed as written (``start_at_zero: false``), so arrival times are exact.
    """
    path = Path(directory) / name
    lines = ["arrived_at,num_prefill_tokens,num_decode_tokens"]
    lines += [f"{arrival!r},{int(prompt)},{int(output)}" for arrival, prompt, output in rows]
    path.write_text("\n".join(lines) + "\n")
    return {"trace": {"path": name, "start_at_zero": False}}


def memory_utilization(model_name: str, gpu_name: str, blocks: int, block_size: int = 16,
                       gpus: int = 1) -> float:
    """The ``cluster.gpu_memory_utilization`` that leaves about ``blocks`` KV blocks on an instance."""
    from simulator.hardware import DEFAULT_CATALOG

    model, gpu = DEFAULT_CATALOG.get("model", model_name), DEFAULT_CATALOG.get("gpu", gpu_name)
    needed = model.total_params * model.dtype_bytes + (blocks + 0.5) * block_size * model.kv_bytes_per_token
    return min(1.0, math.ceil(needed / (gpu.memory_bytes * gpus) * 1e6) / 1e6)


def write_experiment(directory: Path, data: dict[str, Any], name: str = "experiment.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def build_experiment(directory: Path, name: str = "experiment.yaml", **overrides: Any) -> Experiment:
    """Write the experiment with ``overrides`` into ``directory`` and load it (no fixture needed)."""
    return load_experiment(write_experiment(directory, experiment_dict(**overrides), name))


def run(experiment: Experiment) -> RunResult:
    """Build and run one experiment."""
    return run_experiment(experiment)


@dataclass(frozen=True)
class CommittedSteps:
    """One commit of an instance: a single step, or the first ``len(ends)`` steps of a decode run.

    Every step of a commit has the shape of ``plan`` (a decode run repeats its first
    plan with contexts one token longer per step).
    """

    instance_id: int
    plan: Any
    start: float
    ends: tuple[float, ...]
    now: float  # simulated time when the commit happened

    @property
    def steps(self) -> int:
        return len(self.ends)

    @property
    def starts(self) -> tuple[float, ...]:
        return (self.start,) + self.ends[:-1]


CommitHook = Callable[[Instance, CommittedSteps], None]


@contextmanager
def engine_overrides(instance: dict[str, Callable] | None = None,
                     driver: dict[str, Callable] | None = None) -> Iterator[None]:
    """Simulations built inside use subclasses of ``Instance`` and of its ``RunDriver`` whose
    methods named in ``instance`` and ``driver`` are replaced. (The compiled build makes them
    extension types, which take no monkeypatching; a subclass's methods override in both builds.)
    A block that builds no simulation fails: its overrides would have checked nothing."""
    driver_class = type("OverriddenRunDriver", (RunDriver,), dict(driver or {}))
    built = []

    def __init__(self: Instance, *args: Any, **kwargs: Any) -> None:
        Instance.__init__(self, *args, **kwargs)
        self.runs = driver_class(self, self.setup.fast_forward)  # before its process first runs
        built.append(self.id)

    instance_class = type("OverriddenInstance", (Instance,), {"__init__": __init__, **(instance or {})})
    with mock.patch.object(simulator.runner, "Instance", instance_class):
        yield
    assert built, "no simulation was built inside engine_overrides(): build it inside the with block"


@contextmanager
def commit_hooks(before: CommitHook | None = None, after: CommitHook | None = None) -> Iterator[None]:
    """Make ``Instance.commit`` and ``RunDriver.commit`` (decode runs) call ``before``/``after(instance, steps)``."""

    def commit(self: Instance, plan, start: float, end: float) -> None:
        record = CommittedSteps(self.id, plan, start, (end,), self.env.now)
        if before is not None:
            before(self, record)
        Instance.commit(self, plan, start, end)
        if after is not None:
            after(self, record)

    def commit_run(self: RunDriver, run, steps: int) -> None:
        instance = self.instance
        record = CommittedSteps(instance.id, run.plan, float(run.start_s),
                                tuple(float(e) for e in run.ends_s[:steps]), instance.env.now)
        if before is not None:
            before(instance, record)
        RunDriver.commit(self, run, steps)
        if after is not None:
            after(instance, record)

    with engine_overrides(instance={"commit": commit}, driver={"commit": commit_run}):
        yield


@contextmanager
def recorded_steps() -> Iterator[list[CommittedSteps]]:
    """Collect every commit (single steps and decode runs) in the order they happen."""
    log: list[CommittedSteps] = []
    with commit_hooks(before=lambda instance, record: log.append(record)):
        yield log


@pytest.fixture
def make_experiment(tmp_path: Path):
    """Factory: ``make_experiment(**overrides) -> Experiment`` (files go to ``tmp_path``)."""
    counter = iter(range(1_000_000))

    def factory(**overrides: Any) -> Experiment:
        return build_experiment(tmp_path, f"experiment-{next(counter)}.yaml", **overrides)

    return factory


@pytest.fixture
def run_sim():
    """The ``run`` helper as a fixture, for tests that prefer injection."""
    return run
