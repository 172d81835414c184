"""The ``servesim`` command line: validate, run, list, and how bad input is reported.

Bad input must exit with code 2 and print exactly one line on stderr that
names the file and the field (or line) at fault, with no traceback, and
``run`` must not create its output folder. Most cases call
``simulator.cli.main`` in-process (fast); one goes through
``python -m simulator.cli`` to check the real entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from simulator.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.yaml"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def experiment_file(tmp_path: Path) -> Path:
    """A copy of the quickstart in a scratch folder (so relative paths resolve there)."""
    path = tmp_path / "exp.yaml"
    path.write_text(QUICKSTART.read_text())
    return path


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `run` without -o writes to runs/<name> under the working directory: keep that in tmp_path.
    monkeypatch.chdir(tmp_path)


# ------------------------------------------------------------------ validate
def test_validate_quickstart_exits_zero(capsys) -> None:
    code, out, err = run_cli(capsys, "validate", QUICKSTART)
    assert code == 0, err
    assert "valid" in out
    assert err == ""


def test_validate_through_python_dash_m() -> None:
    done = subprocess.run([sys.executable, "-m", "simulator.cli", "validate", str(QUICKSTART)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout


# ----------------------------------------------------------------------- run
def test_run_writes_every_output(capsys, experiment_file: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "results"
    code, out, err = run_cli(capsys, "run", experiment_file, "-o", out_dir, "--set", "workload.num_requests=50")
    assert code == 0, err
    for name in ("summary.json", "requests.csv", "config.resolved.yaml", "report.md"):
        assert (out_dir / name).is_file(), f"{name} missing from {sorted(p.name for p in out_dir.iterdir())}"
    summary = json.loads((out_dir / "summary.json").read_text())
    counts = summary["requests"]
    assert counts["arrived"] == 50
    assert counts["completed"] + counts["rejected"] + counts["unfinished"] == 50
    requests = pd.read_csv(out_dir / "requests.csv")
    assert len(requests) == 50
    resolved = yaml.safe_load((out_dir / "config.resolved.yaml").read_text())
    assert resolved["workload"]["num_requests"] == 50, "the override is part of the resolved config"
    assert (out_dir / "report.md").read_text().strip()
    # No staging folders are left beside the output.
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".results")]


def test_run_default_output_folder_is_runs_name(capsys, experiment_file: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "run", experiment_file, "--no-report", "--set", "workload.num_requests=10")
    assert code == 0, err
    assert (tmp_path / "runs" / "quickstart" / "summary.json").is_file()


# ----------------------------------------------------------------- bad input
def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


BAD_OVERRIDES = {
    # case id: (--set overrides, words the one-line message must contain)
    "unknown-top-level-key": (["bogus=1"], ["bogus"]),
    "unknown-nested-key": (["cluster.instances.0.gpux=h100-sxm"], ["cluster.instances.0.gpux"]),
    "unknown-gpu": (["cluster.instances.0.gpu=h100-sxmx"], ["cluster.instances.0.gpu", "h100-sxmx"]),
    "unknown-model": (["model=llama-9"], ["model", "llama-9"]),
    "negative-rate": (["workload.generator.arrivals.rate_per_s=-1"],
                      ["workload.generator.arrivals.rate_per_s"]),
    "missing-trace": (["workload={trace: {path: no-such-trace.csv}, num_requests: 10}"],
                      ["workload.trace.path", "no-such-trace.csv"]),
}
# Policy problems: found when the policies are built (run), and by validate once it checks policies.
BAD_POLICY_OVERRIDES = {
    "bad-policy-parameter": (["policies.router={name: jsq, load: bogus}"], ["policies.router", "load"]),
    "bad-batching-parameter": (["policies.batching={name: vllm, max_num_seqs: 0}"],
                               ["policies.batching", "max_num_seqs"]),
    "unknown-batching-parameter": (["policies.batching={name: vllm, bogus: 1}"], ["policies.batching", "bogus"]),
    "policy-without-name": (["policies.router={load: tokens}"], ["policies.router", "name"]),
}
ALL_BAD_OVERRIDES = {**BAD_OVERRIDES, **BAD_POLICY_OVERRIDES}


def assert_one_line_error(code: int, out: str, err: str, must_name: list[str]) -> None:
    assert code == 2, f"exit code {code}; stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert "Traceback" not in err
    for word in must_name:
        assert word in lines[0], f"{word!r} not named in {lines[0]!r}"


@pytest.mark.parametrize("case", sorted(ALL_BAD_OVERRIDES))
def test_run_bad_input_exits_2_with_one_line(capsys, experiment_file: Path, tmp_path: Path, case: str) -> None:
    overrides, words = ALL_BAD_OVERRIDES[case]
    out_dir = tmp_path / "out"
    argv = ["run", experiment_file, "-o", out_dir]
    for override in overrides:
        argv += ["--set", override]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, out, err, [experiment_file.name, *words])
    assert not out_dir.exists(), "a failed run must not create its output folder"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", sorted(BAD_OVERRIDES))
def test_validate_bad_input_exits_2_with_one_line(capsys, experiment_file: Path, case: str) -> None:
    overrides, words = BAD_OVERRIDES[case]
    argv = ["validate", experiment_file]
    for override in overrides:
        argv += ["--set", override]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, out, err, [experiment_file.name, *words])


def test_run_invalid_yaml_syntax(capsys, tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nmodel: [llama-3.1-8b\ncluster: {}\n")
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "run", path, "-o", out_dir)
    assert_one_line_error(code, out, err, [path.name, "line"])
    assert not out_dir.exists()


def test_validate_missing_file(capsys, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "validate", tmp_path / "nope.yaml")
    assert_one_line_error(code, out, err, ["nope.yaml"])


def test_run_unknown_policy_name_exits_2(capsys, experiment_file: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "run", experiment_file, "-o", out_dir, "--set", "policies.router.name=bogus")
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "bogus" in err
    assert not out_dir.exists()


def test_run_unknown_policy_name_names_file_and_field(capsys, experiment_file: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "run", experiment_file, "-o", tmp_path / "out",
                             "--set", "policies.router.name=bogus")
    assert_one_line_error(code, out, err, [experiment_file.name, "policies.router", "bogus"])


@pytest.mark.parametrize("case", ["unknown-router", "unknown-admission", *sorted(BAD_POLICY_OVERRIDES)])
def test_validate_checks_policies(capsys, experiment_file: Path, case: str) -> None:
    overrides, words = {"unknown-router": (["policies.router.name=bogus"], ["policies.router", "bogus"]),
                        "unknown-admission": (["policies.admission={name: nope}"], ["policies.admission", "nope"]),
                        **BAD_POLICY_OVERRIDES}[case]
    argv = ["validate", experiment_file]
    for override in overrides:
        argv += ["--set", override]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, out, err, [experiment_file.name, *words])


def test_run_model_that_leaves_no_kv_memory_exits_2(capsys, experiment_file: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "run", experiment_file, "-o", out_dir, "--set", "model=llama-3.1-405b")
    assert_one_line_error(code, out, err, [experiment_file.name, "cluster.instances", "llama-3.1-405b"])
    assert not out_dir.exists()


@pytest.mark.parametrize("override", ["model=llama-3.1-405b", "cluster.gpu_memory_utilization=0.01"])
def test_validate_rejects_a_model_that_leaves_no_kv_memory(capsys, experiment_file: Path, override: str) -> None:
    code, out, err = run_cli(capsys, "validate", experiment_file, "--set", override)
    assert_one_line_error(code, out, err, [experiment_file.name, "cluster.instances"])


@pytest.mark.parametrize("override", ["noequals", "=3", "workload.num_requests=[unclosed",
                                      "cluster.instances.7.gpu=h100-sxm"])
def test_malformed_set_exits_2(capsys, experiment_file: Path, tmp_path: Path, override: str) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "run", experiment_file, "-o", out_dir, "--set", override)
    assert_one_line_error(code, out, err, ["--set", override.split("=")[0] or "="])
    assert not out_dir.exists()


def test_bad_input_through_python_dash_m_has_no_traceback(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(QUICKSTART), "-o", str(out_dir),
                           "--set", "cluster.instances.0.gpux=h100-sxm"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "quickstart.yaml" in done.stderr and "cluster.instances.0.gpux" in done.stderr
    assert not out_dir.exists()


# ---------------------------------------------------------------------- list
@pytest.mark.parametrize("what, expected", [("gpus", "h100-sxm"), ("models", "llama-3.1-8b"),
                                            ("links", "nvlink4"), ("policies", "jsq")])
def test_list(capsys, what: str, expected: str) -> None:
    code, out, err = run_cli(capsys, "list", what)
    assert code == 0, err
    assert out.strip()
    assert expected in out


def test_list_policies_names_every_kind(capsys) -> None:
    code, out, _ = run_cli(capsys, "list", "policies")
    assert code == 0
    for name in ("round_robin", "random", "jsq", "power_of_two", "vllm", "sarathi", "aggressive"):
        assert name in out


@pytest.mark.parametrize("argv", [["run", "x.yaml", "--bogus"], ["sweep", "x.yaml", "--workers", "abc"],
                                  ["list", "foo"], ["fidelity"], [], ["nosuch"]])
def test_a_usage_error_is_one_line_with_exit_code_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "error:" in err[0] and "--help" in err[0]
