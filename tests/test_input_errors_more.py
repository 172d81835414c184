"""More bad input that must be one line and exit code 2 (or a ``ServesimError`` from Python).

Policy parameters without bounds that the runs cannot use (``power_of_two``'s
``choices`` below 1, NaN and infinities anywhere in a policy's parameters, AFS
weights that are not positive) are refused by ``validate`` already; workloads
that leave nothing to replay fail like a trace that keeps no rows, instead of
writing a summary of nulls. A length file that does not exist is found by
``validate``, naming the field that gives its path.
"""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml
from pydantic import BaseModel

from experiment_files import write_small
from simulator.cli import main
from simulator.policy_api import Policy


def cli(capsys, *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


# ---------------------------------------------------------------- policy parameters
@pytest.mark.parametrize("setting, message", [
    ("policies.router={name: power_of_two, choices: 0}", "policies.router: choices: Input should be greater than or equal to 1"),
    ("policies.router={name: power_of_two, choices: -1}", "policies.router: choices: Input should be greater than or equal to 1"),
    ("policies.controller={name: llumnix, threshold: .nan}", "policies.controller: threshold: Input should be a finite number"),
    ("policies.controller={name: llumnix, scaling: {scale_up_below: -.inf}}",
     "policies.controller: scaling.scale_up_below: Input should be a finite number"),
    ("policies.batching={name: afs, weights: {a: .inf}}", "policies.batching: weights.a: Input should be a finite number"),
    ("policies.batching={name: afs, weights: {a: 0}}", "policies.batching: weights.a: Input should be greater than 0"),
    ("policies.batching={name: afs, weights: {a: -1}}", "policies.batching: weights.a: Input should be greater than 0"),
], ids=["p2-choices-0", "p2-choices-neg", "llumnix-threshold-nan", "scaling-inf", "afs-weight-inf", "afs-weight-0",
        "afs-weight-neg"])
def test_unusable_policy_parameters_fail_validation_naming_the_field(tmp_path: Path, capsys, setting, message) -> None:
    exp = write_small(tmp_path)
    code, err = cli(capsys, "validate", exp, "--set", setting)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{exp}: {message}" in err


class _Inner(BaseModel):
    level: float = 1.0


class _Params(Policy):
    values: dict[str, list[float]] = {}
    inner: _Inner = _Inner()


@pytest.mark.parametrize("params, loc", [
    ({"values": {"a": [1.0, float("inf")]}}, ("values", "a", 1)),
    ({"inner": {"level": float("nan")}}, ("inner", "level")),
    ({"inner": {"level": "-inf"}}, ("inner", "level")),
])
def test_every_policy_refuses_non_finite_floats_anywhere_in_its_fields(params, loc) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        _Params(**params)
    error = caught.value.errors()[0]
    assert error["type"] == "finite_number" and error["loc"] == loc
    assert _Params(values={"a": [1.0, 2.5]}, inner={"level": -3}).inner.level == -3  # finite values pass


# ------------------------------------------------------------------ empty workloads
@pytest.mark.parametrize("workload, message", [
    ({"closed_loop": {"clients": 4, "requests_per_client": 20, "think_time": {"dist": "exponential", "mean_s": 1},
                      "lengths": {"profile": "azure-conv-2023"}}, "num_requests": 10},
     "workload: no requests left to replay within num_requests: 10"),
    ({"sessions": {"kind": "agent", "profile": "swe-agent", "calls_per_task": {"dist": "fixed", "value": 3},
                   "arrivals": {"process": "poisson", "rate_per_s": 0.5}, "num_sessions": 3}, "num_requests": 2},
     "workload: no requests left to replay within num_requests: 2"),
    ({"generator": {"arrivals": {"process": "poisson", "rate_per_s": 10.0}, "lengths": {"profile": "azure-conv-2023"}},
      "duration_s": 1e-6}, "workload: no requests left to replay within duration_s: 1e-06"),
    ({"sources": [{"generator": {"arrivals": {"process": "poisson", "rate_per_s": 10.0},
                                 "lengths": {"profile": "azure-conv-2023"}}, "duration_s": 1e-6},
                  {"generator": {"arrivals": {"process": "poisson", "rate_per_s": 10.0},
                                 "lengths": {"profile": "azure-conv-2023"}}}], "num_requests": 20},
     "workload.sources.0: no requests left to replay within duration_s: 1e-06"),
], ids=["closed-loop-overshoot", "agent-sessions-overshoot", "generator-tiny-duration", "one-empty-source"])
def test_a_workload_with_nothing_to_replay_fails_before_writing(tmp_path: Path, capsys, workload, message) -> None:
    exp = write_small(tmp_path, workload=workload)
    out = tmp_path / "out"
    code, err = cli(capsys, "run", exp, "-o", out)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert message in err and exp.name in err  # the field, and the file that holds it
    assert not out.exists()


@pytest.mark.parametrize("field", ["min_instances", "max_instances", "initial_instances"])
def test_an_auto_scaling_count_beyond_the_cluster_is_refused_naming_the_field(tmp_path: Path, capsys,
                                                                             field: str) -> None:
    exp = write_small(tmp_path)
    data = yaml.safe_load(exp.read_text())
    count = sum(group["count"] for group in data["cluster"]["instances"])
    data.setdefault("policies", {})["controller"] = {"name": "llumnix", "scaling": {field: count + 1}}
    exp.write_text(yaml.safe_dump(data))
    code, err = cli(capsys, "validate", exp)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"policies.controller: scaling.{field}: {count + 1} exceeds the cluster's {count} instances" in err


# ------------------------------------------------------------- empirical length files
_FIXED = {"dist": "fixed", "tokens": 8}
_MISSING = {"dist": "empirical", "path": "nope.csv", "column": "tokens"}
_ARRIVALS = {"process": "poisson", "rate_per_s": 5.0}


@pytest.mark.parametrize("workload, field", [
    ({"generator": {"arrivals": _ARRIVALS, "lengths": {"prompt": _MISSING, "output": _FIXED}}, "num_requests": 10},
     "workload.generator.lengths.prompt.path"),
    ({"sessions": {"kind": "agent", "profile": "swe-agent", "arrivals": _ARRIVALS, "num_sessions": 3,
                   "output_tokens": _MISSING}},
     "workload.sessions.output_tokens.path"),
    ({"sources": [{"generator": {"arrivals": _ARRIVALS, "lengths": {"profile": "azure-conv-2023"}}},
                  {"closed_loop": {"clients": 2, "lengths": {"prompt": _FIXED, "output": _MISSING}}}],
      "num_requests": 10},
     "workload.sources.1.closed_loop.lengths.output.path"),
], ids=["generator", "agent", "closed-loop-source"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_missing_empirical_length_file_names_the_field(tmp_path: Path, capsys, workload, field, command) -> None:
    exp = write_small(tmp_path, workload=workload)
    out = tmp_path / "out"
    code, err = cli(capsys, command, exp, *(["-o", out] if command == "run" else []))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err == f"servesim: error: {exp}: {field}: length file not found: nope.csv"
    assert not out.exists()


def test_an_empirical_length_without_a_path_names_the_field(tmp_path: Path, capsys) -> None:
    prompt = {"dist": "empirical", "column": "tokens"}
    exp = write_small(tmp_path, workload={"generator": {"arrivals": _ARRIVALS, "lengths": {
        "prompt": prompt, "output": _FIXED}}, "num_requests": 10})
    code, err = cli(capsys, "validate", exp)
    field = "workload.generator.lengths.prompt.path"
    assert code == 2 and err == f"servesim: error: {exp}: {field}: required key is missing"


def test_an_arrival_beyond_the_simulated_span_found_during_the_run_names_the_file(tmp_path: Path, capsys) -> None:
    """The workload is read lazily: a late arrival after the first is found while the run goes,
    and must still name the experiment file (seed 1: the first arrival is in time, a later one not)."""
    exp = write_small(tmp_path, seed=1, workload={
        "generator": {"arrivals": {"process": "poisson", "rate_per_s": 3e-9}, "lengths": {"profile": "azure-conv-2023"}},
        "num_requests": 5})
    out = tmp_path / "out"
    code, err = cli(capsys, "run", exp, "-o", out)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{exp.name}: workload: a request arrives at" in err
    assert not out.exists()
