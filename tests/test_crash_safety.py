"""Nothing is ever half-written, and a killed sweep resumes without losing or repeating a run.

- Run folders are assembled in a hidden staging folder and renamed into place;
  tables, reports and baselines go through ``simulator.atomic`` (temporary file,
  then ``os.replace``). A failure part-way leaves the old output or none.
- A sweep killed with SIGKILL at random moments (several times in a row, with
  one and with two workers) resumes: every run folder that is visible is
  complete, finished runs are not recomputed, and the final tables hold every
  planned run exactly once. Staging folders and temporary files of the killed
  attempts are removed when the sweep resumes.
- An output folder that holds something other than a run is never replaced
  (``-o .`` must not delete the current folder).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import build_experiment
from experiment_files import write_small
from simulator import atomic
from simulator.cli import main
from simulator.errors import ConfigError
from simulator.runner import run_experiment, write_outputs

REPO = Path(__file__).resolve().parents[1]
RATE = "workload.generator.arrivals.rate_per_s"
RUN_FILES = ("summary.json", "requests.csv", "config.resolved.yaml", "timeseries.csv")
KILL_SEED = int(os.environ.get("SERVESIM_KILL_SEED", "20240611"))  # vary by hand to explore other schedules


def visible_runs(out: Path) -> dict[str, int]:
    """Run folders a reader can see, each checked to be complete; key -> summary mtime."""
    found = {}
    points = out / "points"
    for folder in sorted(points.iterdir()) if points.is_dir() else []:
        if folder.name.startswith("."):
            continue  # a staging folder: invisible to readers, removed on resume
        missing = [name for name in RUN_FILES if not (folder / name).is_file()]
        assert not missing, f"{folder.name} is visible but lacks {missing}"
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["requests"]["arrived"] == 100
        assert len(pd.read_csv(folder / "requests.csv")) == 100
        found[folder.name] = (folder / "summary.json").stat().st_mtime_ns
    return found


def tables_are_whole(out: Path, total: int) -> None:
    for name in ("results.csv", "points.csv"):
        if (out / name).exists():
            pd.read_csv(out / name)  # parses: never torn
    if (out / "sweep.json").exists():
        json.loads((out / "sweep.json").read_text())


def test_a_sweep_killed_at_random_moments_resumes_with_no_lost_or_repeated_runs(tmp_path: Path) -> None:
    rng = random.Random(KILL_SEED)
    seeds = list(range(12))  # 24 runs of ~0.1 s: a kill lands among them, not after the last
    total = 2 * len(seeds)
    exp = write_small(tmp_path, sweep={RATE: [5, 20], "seed": seeds})
    out = tmp_path / "out"
    base = [sys.executable, "-m", "simulator.cli", "sweep", str(exp), "-o", str(out), "--quiet", "--no-report"]
    finished: dict[str, int] = {}
    for attempt in range(3):
        workers = "2" if attempt == 1 else "1"
        proc = subprocess.Popen([*base, "--workers", workers], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        target = min(total - 6, len(finished) + rng.randint(1, 3))
        deadline = time.monotonic() + 90
        while len(list(out.glob("points/[!.]*/summary.json"))) < target and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))  # somewhere inside the next run (or its folder's rename)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        now = visible_runs(out)
        for key, mtime in finished.items():  # a finished run is never redone or touched
            assert now.get(key) == mtime, key
        finished = now
        tables_are_whole(out, total)
    assert 1 <= len(finished) < total, "the kills interrupted the sweep"
    done = subprocess.run([*base, "--workers", "1"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"({total - len(finished)} run, {len(finished)} cached, 0 failed)" in done.stdout
    final = visible_runs(out)
    assert all(final[key] == mtime for key, mtime in finished.items())
    results = pd.read_csv(out / "results.csv")
    assert len(results) == total and (results["status"] == "ok").all()
    assert results["run"].is_unique and set(results["run"]) == set(final)
    assert sorted(zip(results[RATE], results["seed"])) == sorted((r, s) for r in (5, 20) for s in seeds)
    leftovers = [p.name for p in [*out.iterdir(), *(out / "points").iterdir()] if p.name.startswith(".")]
    assert not leftovers, leftovers


def test_a_killed_run_leaves_its_folder_absent_or_complete(tmp_path: Path) -> None:
    rng = random.Random(KILL_SEED + 1)
    exp = write_small(tmp_path)
    out = tmp_path / "run"
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "run", str(exp), "-o", str(out)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".run.*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)  # the staging folder appeared: writing has begun
        time.sleep(rng.uniform(0.0, 0.5))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if out.exists():
            for name in (*RUN_FILES, "report.md", "report.html"):
                assert (out / name).is_file(), name
            json.loads((out / "summary.json").read_text())


# ------------------------------------------------------------------ atomic writes, in process
def test_a_run_that_fails_while_writing_leaves_no_folder_and_keeps_the_old_one(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    result = run_experiment(build_experiment(tmp_path, num_requests=10))
    out = tmp_path / "out"
    write_outputs(result, out, with_report=False)
    before = (out / "summary.json").read_text()

    def broken_report(folder: Path) -> Path:
        (Path(folder) / "report.md").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr("simulator.report.markdown.write_report", broken_report)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(result, out, with_report=True)
    assert (out / "summary.json").read_text() == before and not (out / "report.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []
    with pytest.raises(OSError):
        write_outputs(result, tmp_path / "fresh", with_report=True)
    assert not (tmp_path / "fresh").exists()


def test_an_interrupted_atomic_write_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "results.csv"
    atomic.write_text(path, "old\n")

    def interrupted(tmp: Path) -> None:
        tmp.write_text("new but only ha")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(path, interrupted)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    stray = tmp_path / f".results.csv.{'0' * 32}.tmp"  # what a SIGKILL would leave
    stray.write_text("x")
    (tmp_path / ".keep.me").write_text("user file")
    atomic.remove_temporaries(tmp_path)
    assert not stray.exists() and (tmp_path / ".keep.me").exists()


def test_a_sweep_removes_what_killed_attempts_left(tmp_path: Path) -> None:
    exp = write_small(tmp_path)
    out = tmp_path / "out"
    (out / "points" / ".0123abc.x1y2").mkdir(parents=True)
    (out / "points" / ".0123abc.x1y2" / "summary.json").write_text("{")
    (out / f".results.csv.{'a' * 32}.tmp").write_text("torn")
    (out / ".gitignore").write_text("*\n")  # not ours: kept
    assert main(["sweep", str(exp), "-o", str(out), "--quiet", "--no-report", "--workers", "1"]) == 0
    assert not list((out / "points").glob(".*")) and not list(out.glob(".*.tmp"))
    assert (out / ".gitignore").exists()


@pytest.mark.parametrize("target", [".", "", "notes"])
def test_an_output_folder_holding_other_things_is_never_replaced(tmp_path: Path, monkeypatch, capsys,
                                                                  target: str) -> None:
    exp = write_small(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(exp), "-o", target, "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "is not a run folder" in err and len(err.strip().splitlines()) == 1
    assert exp.read_text() and (tmp_path / "notes" / "thesis.tex").read_text() == "years of work"
    with pytest.raises(ConfigError):
        write_outputs(run_experiment(build_experiment(tmp_path / "notes", num_requests=5)), tmp_path / "notes")
    assert (tmp_path / "notes" / "thesis.tex").exists()


def test_a_previous_run_folder_is_replaced_whole(tmp_path: Path) -> None:
    exp = write_small(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(exp), "-o", str(out), "--no-report"]) == 0
    (out / "stale.txt").write_text("from before")
    data = yaml.safe_load(exp.read_text())
    data["workload"]["num_requests"] = 20
    exp.write_text(yaml.safe_dump(data))
    assert main(["run", str(exp), "-o", str(out), "--no-report"]) == 0
    assert json.loads((out / "summary.json").read_text())["requests"]["arrived"] == 20
    assert not (out / "stale.txt").exists()


def test_sweep_and_comparison_outputs_never_write_into_a_foreign_folder(tmp_path: Path, capsys) -> None:
    exp = write_small(tmp_path)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "results.csv").write_text("my data")
    run_dir = tmp_path / "run"
    assert main(["run", str(exp), "-o", str(run_dir), "--no-report"]) == 0
    capsys.readouterr()
    for target in (kept, run_dir):  # the user's folder, and a run folder
        assert main(["sweep", str(exp), "-o", str(target), "--quiet", "--no-report", "--workers", "1"]) == 2
        assert main(["report", str(run_dir), str(run_dir), "-o", str(target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and all("is not a sweep folder" in line for line in err)
    assert (kept / "results.csv").read_text() == "my data" and not (run_dir / "sweep.json").exists()


def test_a_run_leaves_no_staging_folder_of_a_killed_write_behind(tmp_path: Path) -> None:
    exp = write_small(tmp_path)
    out = tmp_path / "out"
    killed = tmp_path / f".out.{'b' * 32}.tmp"  # what a write killed half-way leaves
    killed.mkdir()
    (killed / "summary.json").write_text("{")
    other = tmp_path / f".other.{'c' * 32}.tmp"  # another destination's: not ours to delete
    other.mkdir()
    assert main(["run", str(exp), "-o", str(out), "--no-report"]) == 0
    assert not killed.exists() and other.exists()
    assert (out.stat().st_mode & 0o777) == 0o777 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute", "..", "a/b"])
def test_an_experiment_name_cannot_point_its_default_output_folder_elsewhere(tmp_path: Path, monkeypatch, capsys,
                                                                             name: str) -> None:
    exp = write_small(tmp_path)
    data = yaml.safe_load(exp.read_text())
    data["name"] = name
    exp.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(exp), "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name: must be usable as one folder name" in err[0]
    assert not (tmp_path / "runs").exists()


def test_an_output_path_under_a_file_or_through_a_link_is_refused_before_running(tmp_path: Path, capsys) -> None:
    exp = write_small(tmp_path)
    (tmp_path / "afile").write_text("x")
    run_dir = tmp_path / "run"
    assert main(["run", str(exp), "-o", str(run_dir), "--no-report"]) == 0
    (tmp_path / "link").symlink_to(run_dir)
    capsys.readouterr()
    for command, target, why in (("run", "afile/sub", "is a file, not a folder"),
                                 ("sweep", "afile/sub", "is a file, not a folder"),
                                 ("sweep", "afile", "is not a folder"),
                                 ("run", "link", "is a symbolic link")):
        extra = ["--quiet", "--workers", "1"] if command == "sweep" else []
        assert main([command, str(exp), "-o", str(tmp_path / target), "--no-report", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
    assert (run_dir / "summary.json").is_file() and (tmp_path / "link").is_symlink()
