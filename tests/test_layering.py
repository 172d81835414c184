"""The dependency rule of DESIGN.md section 1, checked by walking imports with ``ast``.

* Nothing under ``simulator/`` imports ``policies`` (policies are found through registries).
* Modules under ``policies/`` import from ``simulator`` only ``simulator.policy_api``.

Relative imports are resolved against the file's package, and imports inside
functions or ``if TYPE_CHECKING:`` blocks count too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
POLICY_API = "simulator.policy_api"


@dataclass(frozen=True)
class Imported:
    line: int
    module: str  # absolute name of the module the statement imports from
    names: tuple[str, ...] = ()  # for `from module import a, b`


def package_of(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1]  # a module's package; for __init__.py, the package itself


def imports(path: Path, root: Path = REPO) -> list[Imported]:
    """Every import statement in ``path`` with its module made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = package_of(path, root)
    found: list[Imported] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Imported(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(Imported(node.lineno, module, tuple(alias.name for alias in node.names)))
    return found


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def simulator_violations(path: Path, root: Path = REPO) -> list[str]:
    return [f"line {i.line}: {i.module}" for i in imports(path, root) if _in(i.module, "policies")]


def policies_violations(path: Path, root: Path = REPO) -> list[str]:
    bad = []
    for item in imports(path, root):
        if not _in(item.module, "simulator"):
            continue
        if _in(item.module, POLICY_API):
            continue
        if item.module == "simulator" and item.names and all(name == "policy_api" for name in item.names):
            continue  # `from simulator import policy_api`
        bad.append(f"line {item.line}: {item.module}" + (f" ({', '.join(item.names)})" if item.names else ""))
    return bad


def python_files(folder: str) -> list[Path]:
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


@pytest.mark.parametrize("path", python_files("simulator"), ids=lambda p: str(p.relative_to(REPO)))
def test_simulator_never_imports_policies(path: Path) -> None:
    bad = simulator_violations(path)
    assert not bad, f"{path.relative_to(REPO)} imports policies: {bad}"


@pytest.mark.parametrize("path", python_files("policies"), ids=lambda p: str(p.relative_to(REPO)))
def test_policies_import_only_policy_api_from_simulator(path: Path) -> None:
    bad = policies_violations(path)
    assert not bad, f"{path.relative_to(REPO)} imports from simulator beyond {POLICY_API}: {bad}"


# ------------------------------------------------------------ the checker itself
def _file(root: Path, relative: str, source: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


@pytest.mark.parametrize("source", [
    "import policies\n",
    "import policies.routing.jsq as jsq\n",
    "from policies.routing import jsq\n",
    "def f():\n    from policies import routing\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import policies\n",
    "from ...policies import routing\n",
])
def test_checker_catches_simulator_importing_policies(tmp_path: Path, source: str) -> None:
    assert simulator_violations(_file(tmp_path, "simulator/engine/x.py", source), tmp_path)


@pytest.mark.parametrize("source", [
    "from simulator.engine.step import StepPlan\n",
    "import simulator.engine.request\n",
    "from simulator import registry\n",
    "from simulator import policy_api, config\n",
    "import simulator\n",
    "from ...simulator.engine import step\n",
    "def f():\n    from simulator.perf.shape import StepShape\n",
])
def test_checker_catches_policies_reaching_past_policy_api(tmp_path: Path, source: str) -> None:
    assert policies_violations(_file(tmp_path, "policies/routing/x.py", source), tmp_path)


@pytest.mark.parametrize("source", [
    "from simulator.policy_api import ROUTERS, Policy\n",
    "import simulator.policy_api\n",
    "from simulator import policy_api\n",
    "from policies.routing.load import instance_load\n",
    "from .load import instance_load\n",
    "import numpy as np\n",
])
def test_checker_allows_policy_api(tmp_path: Path, source: str) -> None:
    assert not policies_violations(_file(tmp_path, "policies/routing/x.py", source), tmp_path)
