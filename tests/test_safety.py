"""A config file cannot make servesim run code.

- YAML (experiments, profiles, ``--set`` and ``--grid`` values) is read with
  the safe loader: Python tags are refused with a one-line error.
- Policies and trace readers come from the registries, which are filled by
  built-in modules and by entry points declared in pyproject.toml; a name that
  is an import path (``pkg.module:Class``) is refused unless the user passes
  ``--allow-import`` on the command line.
- No module of simulator/, policies/ or workloads/ calls eval, exec, compile or
  __import__, uses pickle-like serialisation, or loads YAML unsafely (an AST walk).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import experiment_dict, write_experiment
from simulator import registry
from simulator.cli import main
from simulator.config import load_experiment
from simulator.errors import ConfigError
from simulator.registry import ALL_REGISTRIES, allow_imports, imports_allowed
from workloads import TRACE_READERS

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("simulator", "policies", "workloads")
DOTTED_ROUTER = "policies.routing.simple:RoundRobinRouter"

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "breakpoint"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib",
                     "subprocess", "pty"}
FORBIDDEN_ATTRIBUTES = {
    ("yaml", "load"), ("yaml", "load_all"), ("yaml", "unsafe_load"), ("yaml", "unsafe_load_all"),
    ("yaml", "full_load"), ("yaml", "full_load_all"), ("yaml", "Loader"), ("yaml", "UnsafeLoader"),
    ("yaml", "FullLoader"), ("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execvp"),
}
FORBIDDEN_METHODS = {"read_pickle", "to_pickle"}
# importlib.import_module is allowed only where the module names are fixed or the user opted in.
IMPORT_MODULE_ALLOWED = {"simulator/registry.py", "simulator/cli.py"}


@pytest.fixture(autouse=True)
def _imports_off():
    allow_imports(False)
    yield
    allow_imports(False)


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def _violations(path: Path, text: str | None = None) -> list[str]:
    relative = path.relative_to(REPO).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text, filename=relative)
    found = []
    for node in ast.walk(tree):
        where = f"{relative}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"{where}: call of {node.func.id}()")
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        if isinstance(node, ast.ImportFrom) and node.module == "yaml":
            found += [f"{where}: from yaml import {a.name}" for a in node.names
                      if ("yaml", a.name) in FORBIDDEN_ATTRIBUTES]
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES:
                found.append(f"{where}: {node.value.id}.{node.attr}")
            if node.attr in FORBIDDEN_METHODS:
                found.append(f"{where}: .{node.attr}")
            if node.attr == "import_module" and relative not in IMPORT_MODULE_ALLOWED:
                found.append(f"{where}: importlib.import_module outside the registry and the CLI")
        if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            found.append(f"{where}: allow_pickle=")
    return found


def test_no_eval_exec_pickle_or_unsafe_yaml_in_the_code() -> None:
    sources = _sources()
    assert len(sources) > 50, "the walk found the packages"
    violations = [v for path in sources for v in _violations(path)]
    assert not violations, "\n".join(violations)


def test_the_walk_would_find_what_it_forbids() -> None:
    probe = ("import pickle\nimport yaml\nfrom subprocess import run\nx = eval('1')\n"
             "yaml.load('a', Loader=yaml.Loader)\nimportlib.import_module(x)\nnp.load(x, allow_pickle=True)\n")
    found = _violations(REPO / "simulator" / "probe.py", probe)
    assert len(found) == 7, found


# ------------------------------------------------------------------ the safe loader
PYTHON_TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
]


@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_python_tags_in_an_experiment_are_refused(tmp_path: Path, tag: str, capsys) -> None:
    marker = tmp_path / "pwned"
    text = (REPO / "experiments" / "quickstart_fast.yaml").read_text()
    path = tmp_path / "evil.yaml"
    path.write_text(text.replace("name: quickstart_fast", f"name: {tag.format(marker=marker)}"))
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "invalid YAML" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_python_tags_in_set_values_and_profiles_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write_experiment(tmp_path, experiment_dict())
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(path, [f"seed=!!python/object/apply:os.system ['touch {marker}']"])
    profile = tmp_path / "evil-model.yaml"
    profile.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_experiment(write_experiment(tmp_path, experiment_dict(model="./evil-model.yaml"), "m.yaml"))
    assert not marker.exists()


def test_python_tags_in_sweep_axes_are_refused(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    path = write_experiment(tmp_path, experiment_dict())
    code = main(["sweep", str(path), "-o", str(tmp_path / "out"), "--quiet", "--workers", "1",
                 "--grid", f"seed=!!python/object/apply:os.system ['touch {marker}']"])
    assert code == 2 and "not a valid YAML list" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ registries and entry points
def test_every_built_in_policy_and_reader_is_a_declared_entry_point() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    groups = {reg.group: reg for reg in (*ALL_REGISTRIES.values(), TRACE_READERS)}
    for group, reg in groups.items():
        points = declared.get(group, {})
        for name in reg.names():
            cls = reg.get(name)
            if not cls.__module__.startswith(PACKAGES):
                continue  # registered by a test module
            assert name in points, f"{group}: '{name}' is registered but not declared in pyproject.toml"
            assert points[name] == f"{cls.__module__}:{cls.__qualname__}", (group, name)


def test_asking_for_one_name_loads_only_its_entry_points() -> None:
    """A run imports the policies it names, not every module of the group (nor a broken plugin)."""
    code = ("import sys; from simulator.registry import ROUTERS; ROUTERS.get('jsq'); "
            "print(sorted(m for m in sys.modules if m.startswith('policies.'))); "
            "ROUTERS.names(); print('policies.routing.simple' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded, after_names = out.stdout.splitlines()
    assert loaded == str(["policies.routing", "policies.routing.jsq", "policies.routing.load"])
    assert after_names == "True"


def test_import_paths_are_refused_without_the_opt_in(tmp_path: Path) -> None:
    assert not imports_allowed()
    path = write_experiment(tmp_path, experiment_dict(router={"name": DOTTED_ROUTER}))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert "policies.router" in message and "--allow-import" in message and "\n" not in message
    for name in ("os:system", "builtins.eval", "subprocess:Popen"):
        with pytest.raises(ConfigError, match="--allow-import"):
            load_experiment(write_experiment(tmp_path, experiment_dict(batching={"name": name}), "b.yaml"))


def test_import_paths_of_trace_readers_are_refused_without_the_opt_in(tmp_path: Path) -> None:
    workload = {"trace": {"path": "t.csv", "format": "workloads.readers.vidur:VidurTraceReader"}}
    (tmp_path / "t.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,2\n1,10,2\n")
    path = write_experiment(tmp_path, experiment_dict(workload=workload))
    with pytest.raises(ConfigError, match=r"workload\.trace\.format.*--allow-import"):
        load_experiment(path)
    allow_imports(True)
    assert load_experiment(path).config.workload.trace.format.endswith("VidurTraceReader")


@pytest.mark.parametrize("command", ["validate", "run", "sweep"])
def test_the_cli_refuses_import_paths_unless_allow_import_is_given(tmp_path: Path, capsys, command: str) -> None:
    path = write_experiment(tmp_path, experiment_dict(router={"name": DOTTED_ROUTER}))
    out = tmp_path / "out"
    extra = {"validate": [], "run": ["-o", str(out), "--no-report"],
             "sweep": ["-o", str(out), "--quiet", "--no-report", "--workers", "1"]}[command]
    code = main([command, str(path), *extra])
    err = capsys.readouterr().err
    assert code == 2 and "--allow-import" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    code = main([command, str(path), *extra, "--allow-import"])
    assert code == 0, capsys.readouterr().err
    if command == "run":
        plain = write_experiment(tmp_path, experiment_dict(router={"name": "round_robin"}), "plain.yaml")
        assert main(["run", str(plain), "-o", str(tmp_path / "plain"), "--no-report"]) == 0
        a = json.loads((out / "summary.json").read_text())
        b = json.loads((tmp_path / "plain" / "summary.json").read_text())
        assert a["requests"] == b["requests"] and a["ttft_s"] == b["ttft_s"]
    # The switch belongs to one command: the next one without the flag refuses again.
    assert main(["validate", str(path)]) == 2
    assert not imports_allowed()


def test_allow_import_reaches_sweep_worker_processes(tmp_path: Path, capsys) -> None:
    path = write_experiment(tmp_path, experiment_dict(router={"name": DOTTED_ROUTER}))
    code = main(["sweep", str(path), "-o", str(tmp_path / "out"), "--quiet", "--no-report", "--workers", "2",
                 "--grid", "seed=0,1", "--allow-import"])
    assert code == 0, capsys.readouterr().err


def test_a_bad_import_path_with_the_opt_in_is_a_one_line_error(tmp_path: Path) -> None:
    allow_imports(True)
    cases = {"no.such.module:Router": "ModuleNotFoundError", "policies.routing.simple:Nope": "AttributeError",
             "os:sep": "is not a class"}
    for name, expected in cases.items():
        path = write_experiment(tmp_path, experiment_dict(router={"name": name}), "r.yaml")
        with pytest.raises(ConfigError, match=expected):
            load_experiment(path)
    assert registry.ROUTERS.get(DOTTED_ROUTER).__name__ == "RoundRobinRouter"
