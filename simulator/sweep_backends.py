"""Where sweep runs execute: in this process, a local process pool, or a Ray cluster.

Every backend takes the same ``RunTask`` list and calls ``on_done`` with one
``RunOutcome`` per task as it finishes, in completion order. The numbers do
not depend on the backend or the number of workers: a run's randomness comes
from its configuration's seed alone. Local workers write their run folders
themselves; Ray workers return their results and the driver writes them, so a
Ray cluster needs no shared file system (only servesim installed on its nodes).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

from simulator.errors import ServesimError
from simulator.sweep_run import RunOutcome, RunTask, execute_task, write_run

OnDone = Callable[[RunOutcome], None]
BACKENDS = ("local", "ray")


def make_backend(name: str, workers: int | None = None, address: str | None = None):
    """The backend called ``name`` (``local`` or ``ray``) with ``workers`` parallel runs."""
    if workers is not None and workers < 1:
        raise ServesimError(f"--workers {workers}: expected a positive number of workers")
    if name == "local":
        workers = workers or default_workers()
        return InlineBackend() if workers == 1 else LocalBackend(workers)
    if name == "ray":
        return RayBackend(workers, address)
    raise ServesimError(f"--backend {name}: expected one of {', '.join(BACKENDS)}")


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class InlineBackend:
    """Runs tasks one after another in this process (``--workers 1``; no start-up cost)."""

    name = "local"
    workers = 1

    def run(self, tasks: Sequence[RunTask], on_done: OnDone) -> None:
        for task in tasks:
            on_done(execute_task(task))


class LocalBackend:
    """A pool of ``workers`` processes (forkserver where available, else spawn)."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, tasks: Sequence[RunTask], on_done: OnDone) -> None:
        if not tasks:
            return
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)), mp_context=context)
        try:
            pending: dict[Future, RunTask] = {pool.submit(execute_task, task): task for task in tasks}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    on_done(_outcome(future, pending.pop(future)))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _outcome(future: Future, task: RunTask) -> RunOutcome:
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - a dead worker fails its task, not the sweep
        return RunOutcome(task.key, f"worker failed: {type(err).__name__}: {err}".replace("\n", " "), 0.0)


class RayBackend:
    """Ray tasks, one CPU each, on a local Ray (started here) or the cluster at ``address``."""

    name = "ray"

    def __init__(self, workers: int | None, address: str | None) -> None:
        self.workers, self.address = workers, address

    def run(self, tasks: Sequence[RunTask], on_done: OnDone) -> None:
        if not tasks:
            return
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            options = {"num_cpus": self.workers} if self.address is None and self.workers else {}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, **options)
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(execute_task)
            pending = {remote.remote(replace(task, out_dir=None)): task for task in tasks}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    on_done(self._finish(ray, ref, pending.pop(ref)))
        finally:
            if started_here:
                ray.shutdown()

    @staticmethod
    def _finish(ray, ref, task: RunTask) -> RunOutcome:
        try:
            outcome = ray.get(ref)
        except Exception as err:  # noqa: BLE001 - a lost task fails alone
            return RunOutcome(task.key, f"ray task failed: {type(err).__name__}: {err}".replace("\n", " "), 0.0)
        if outcome.ok and task.out_dir is not None:
            write_run(outcome.result, Path(task.out_dir), task.with_report)
        return replace(outcome, result=None)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ServesimError("--backend ray needs Ray: pip install 'servesim[ray]'") from None
    return ray
