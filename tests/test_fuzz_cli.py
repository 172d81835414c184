"""Fuzzing the command line: random commands, options and values, in a scratch folder.

Every call of ``servesim`` either exits through argparse (0 for --help and
--version, 2 for a usage error), or returns 0/1, or returns 2 with exactly one
``servesim: error: ...`` line on stderr; no other exception escapes and no
traceback is printed. A ``run`` that fails leaves no output folder and no
staging folder behind.

The scratch folder holds a small valid experiment, broken files of every kind
the commands read, a finished run folder and baselines. ``calibrate`` is only
given measurement folders that do not exist and a scratch ``--out``, so the
committed calibration is never touched.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from experiment_files import SMALL
from fuzz_inputs import fuzz_settings
from simulator.cli import main

# Paths stay inside the scratch folder (the current folder while a command runs): a command that
# wrongly replaced its output folder could at worst delete the scratch folder, never a real one.
FILES = ["exp.yaml", "bad.yaml", "missing.yaml", "empty", "garbage.bin", "trace.csv", "run", "bad_run",
         "baseline.json", "bad_baseline.json", "out", "", ".", "-", "exp.yaml/x", "ü.yaml", "\x00", "a" * 300]
OPTIONS = {
    "run": ["-o", "--output", "--set", "--no-report", "--allow-import", "--debug"],
    "validate": ["--set", "--allow-import"],
    "list": [],
    "sweep": ["-o", "--set", "--grid", "--zip", "--workers", "--quiet", "--no-report", "--run-reports",
              "--capacity", "--target", "--rate-key", "--tolerance", "--backend", "--allow-import"],
    "report": ["-o", "--label"],
    "regress": ["--baseline", "--update", "--set"],
    "trace": ["--format", "--column", "--sort", "--block-size", "--json"],
    "fidelity": ["--measurements", "--json", "--plot", "--no-plot", "--calibration"],
    "calibrate": [],
}
VALUES = ["1", "0", "-1", "2", "1e400", "nan", "abc", "seed=0,1", "seed=", "=", "x=1", "a.b=[1,",
          "workload.num_requests=5", "workload.num_requests=-5", "workload.num_requests=1e400",
          "workload.generator.arrivals.rate_per_s=5,10", "policies.router={name: jsq}", "model=llama-9",
          "cluster.instances.0.count=0", "gpus", "models", "policies", "traces", "nodes", "stats", "local",
          "vidur", "auto", "arrival_s=t", "time_unit=xx", "none", "--", "--help"]
ERROR_PREFIX = "servesim: error: "
SAFE_TEXT = st.text(max_size=12).filter(lambda t: not t.lstrip().startswith(("/", "~")) and ".." not in t)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-fuzz")
    small = {**SMALL, "workload": {**SMALL["workload"], "num_requests": 10}}
    (folder / "exp.yaml").write_text(yaml.safe_dump(small, sort_keys=False))
    (folder / "bad.yaml").write_text("name: [unclosed\nseed: -1\n")
    (folder / "empty").mkdir()
    (folder / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "trace.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,2\n0.5,20,3\n1,x,1\n")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", str(folder / "exp.yaml"), "-o", str(folder / "run"), "--no-report"]) == 0
    (folder / "bad_run").mkdir()
    (folder / "bad_run" / "summary.json").write_text('{"requests": {"arrived": "x"}, "ttft_s": [1, 2')
    (folder / "bad_run" / "requests.csv").write_text("request_id,status\n0,finished\nnot,a,row\n")
    (folder / "baseline.json").write_text(json.dumps({
        "format": "servesim-baseline/1", "experiment": "exp.yaml", "overrides": [], "servesim": "0.1.0",
        "tolerances": {"default": {"rel": 1e-6, "abs": 1e-9}}, "metrics": {"requests.completed": 10}}))
    (folder / "bad_baseline.json").write_text('{"format": "servesim-baseline/1", "metrics": {"a": [}')
    return folder


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from([*OPTIONS, "bogus", "--version", "--debug"]))
    if command == "calibrate":  # never the real measurements, never the committed calibration folder
        return ["calibrate", "--data", draw(st.sampled_from(["missing", "garbage.bin", "empty"])), "--out", "cal"]
    args = [command]
    if command == "trace":
        args.append(draw(st.sampled_from(["stats", "stats", "bogus"])))
    args += draw(st.lists(st.sampled_from(FILES), min_size=0, max_size=2))
    for _ in range(draw(st.integers(0, 4))):
        option = draw(st.sampled_from(OPTIONS.get(command) or ["--help", "--bogus"]))
        args.append(option)
        if draw(st.integers(0, 3)):
            args.append(draw(st.one_of(st.sampled_from(VALUES), st.sampled_from(FILES), SAFE_TEXT)))
    if command == "sweep":
        args += ["--workers", "1", "--backend", "local", "--quiet"]  # no process pools or Ray in this test
        if "--capacity" in args:
            args.append("--no-report")
    if "-o" in args or "--output" in args or command in ("run", "sweep", "report", "fidelity"):
        args += draw(st.sampled_from([[], ["--no-report"] if command in ("run", "sweep") else []]))
    return [arg for arg in args if "\x00" not in arg]  # a real command line cannot hold NUL


def call(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exit_:  # argparse: --help, --version, usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
            assert code in (0, 2), f"argparse exited with {exit_.code!r} for {args!r}"
            return -code - 100, out.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


@fuzz_settings(60)
@given(args=argv())
def test_any_command_line_ends_cleanly(workspace: Path, args: list[str]) -> None:
    previous = Path.cwd()
    os.chdir(workspace)
    try:
        if "--debug" in args:  # --debug is asked to show tracebacks: judge the same command without it
            args = [arg for arg in args if arg != "--debug"]
        code, out, err = call(args)
    finally:
        os.chdir(previous)
    assert "Traceback" not in err and "Traceback" not in out, (args, err)
    if code < -99:
        return  # argparse's own exit (usage errors are argparse's multi-line format)
    assert code in (0, 1, 2), (args, code)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), (args, err)
    leftovers = [p.name for p in workspace.rglob(".*") if p.is_dir() and not p.name.startswith(".hypothesis")]
    assert not leftovers, f"staging folders left behind by {args!r}: {leftovers}"


def test_a_failing_run_writes_nothing(workspace: Path, capsys) -> None:
    out = workspace / "never"
    for bad in (["bad.yaml"], ["exp.yaml", "--set", "model=llama-9"], ["exp.yaml", "--set", "bogus=1"],
                ["exp.yaml", "--set", "workload={trace: {path: garbage.bin}, num_requests: 3}"]):
        code = main(["run", str(workspace / bad[0]), *bad[1:], "-o", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, (bad, err)
        assert not out.exists() and not list(workspace.glob(".never*")), bad
