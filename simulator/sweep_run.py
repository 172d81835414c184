"""One run of a sweep: its task, its cache key, and the worker function that executes it.

A ``RunTask`` carries the fully resolved configuration as plain JSON-ready
data, so it pickles cheaply to a worker process or a Ray task and means the
same thing everywhere. Its ``key`` is the SHA-256 of the canonical JSON of that
configuration plus the servesim version: the name of its cached run folder.
``execute_task`` is a top-level function, safe under spawn and forkserver; it
never raises for a failing run but returns the failure as a one-line message.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator import __version__
from simulator.errors import ServesimError


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to run one configuration.

    Attributes:
        key: the cache key (``config_hash`` of ``config``).
        experiment_path: the experiment file; relative trace and profile paths resolve against it.
        config: the resolved configuration (``ExperimentConfig`` as JSON-ready data).
        out_dir: the run folder a local worker writes; None returns the result instead (Ray).
        with_report: also write the run's own report and figures.
        allow_import: the CLI's ``--allow-import`` (classes named by import path), for workers.
    """

    key: str
    experiment_path: str
    config: dict[str, Any]
    out_dir: str | None
    with_report: bool = False
    allow_import: bool = False


@dataclass(frozen=True)
class RunOutcome:
    """What became of a task: ``error`` is None on success; ``result`` only when asked for."""

    key: str
    error: str | None
    wall_s: float
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None


def config_hash(config: dict[str, Any], version: str = __version__) -> str:
    """SHA-256 hex digest of the canonical JSON of ``config`` and the servesim version."""
    canonical = json.dumps({"config": config, "servesim": version}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def execute_task(task: RunTask) -> RunOutcome:
    """Run ``task``; write its folder (or return its ``RunResult``); report failure as text."""
    from simulator.registry import allow_imports

    started = time.perf_counter()
    allow_imports(task.allow_import)
    try:
        result = simulate(task)
        if task.out_dir is not None:
            write_run(result, Path(task.out_dir), task.with_report)
            result = None
    except ServesimError as err:
        return RunOutcome(task.key, str(err), time.perf_counter() - started)
    except Exception as err:  # noqa: BLE001 - one failed point must not stop the sweep
        frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
        where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
        return RunOutcome(task.key, f"{type(err).__name__}: {err}{where}".replace("\n", " "),
                          time.perf_counter() - started)
    return RunOutcome(task.key, None, time.perf_counter() - started, result)


def simulate(task: RunTask):
    """Validate, resolve and run the task's configuration; returns a ``RunResult``."""
    from simulator.config import resolve, validate
    from simulator.hardware import DEFAULT_CATALOG
    from simulator.runner import run_experiment

    path = Path(task.experiment_path)
    return run_experiment(resolve(validate(task.config, path), path, DEFAULT_CATALOG))


def write_run(result, out_dir: Path, with_report: bool) -> Path:
    """Write a run folder atomically (the cache entry of its task)."""
    from simulator.runner import write_outputs

    return write_outputs(result, out_dir, with_report=with_report)
