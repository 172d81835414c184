"""Compiled hot modules (``simulator.accel``): same results as the sources, never a stale binary.

The build compiles the engine's hot modules with Cython where a C compiler is
present (CI has one). The equivalence test skips where nothing was compiled;
the others build small fake packages of their own.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from simulator import accel

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["experiments/quickstart_fast.yaml", "experiments/papers/splitwise/fast.yaml",
               "experiments/papers/llumnix/fast.yaml", "experiments/papers/saga/fast.yaml",
               "experiments/papers/past_future/fast.yaml"]
# Runs each experiment and prints a digest of every request's row and of the summary (less wall time).
DIGEST_SCRIPT = """
import hashlib, json, sys
from simulator.accel import build_description
from simulator.config import load_experiment
from simulator.runner import run_experiment
print(build_description())
for path in sys.argv[1:]:
    result = run_experiment(load_experiment(path))
    summary = dict(result.summary, sim={k: v for k, v in result.summary["sim"].items() if "wall" not in k})
    rows = result.requests.to_csv(index=False).encode()
    print(path, hashlib.sha256(rows).hexdigest(), hashlib.sha256(json.dumps(summary, sort_keys=True,
          default=str).encode()).hexdigest())
"""


def digests(pure: bool) -> list[str]:
    env = {**os.environ, accel.PURE_PYTHON_ENV: "1" if pure else ""}
    done = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT, *EXPERIMENTS], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(not accel.BUILD["compiled"], reason="no module was compiled in this install")
def test_compiled_and_pure_python_give_identical_results():
    compiled, pure = digests(pure=False), digests(pure=True)
    assert compiled[0].startswith("compiled (") and pure[0] == "pure Python (SERVESIM_PURE_PYTHON=1)"
    assert compiled[1:] == pure[1:]
    assert len(compiled) == 1 + len(EXPERIMENTS)


@pytest.mark.skipif(not accel.BUILD["compiled"], reason="no module was compiled in this install")
def test_compiled_modules_are_the_ones_imported():
    for module in accel.BUILD["compiled"]:
        assert importlib.import_module(module).__file__ == str(accel.extension_path(module))


@pytest.mark.skipif(not accel.BUILD["compiled"], reason="no module was compiled in this install")
def test_every_compiled_module_imports_first():
    """A compiled module whose .pxd names another's types imports that module during its own
    import; typed links that go both ways (an instance and its run driver, say) must still import
    in any order. Each module is imported first, in a fresh interpreter."""
    failed = [module for module in accel.BUILD["compiled"]
              if subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True,
                                timeout=120).returncode]
    assert failed == []


def fake_package(root: Path, manifest: dict[str, str]) -> tuple[str, ...]:
    """A package with a fresh binary, a stale one, one without a manifest entry and one never compiled
    (the binaries are empty files: importing one would fail)."""
    package = root / "fakepkg_accel"
    package.mkdir()
    (package / "__init__.py").write_text("")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in ("fresh", "stale", "unrecorded", "plain"):
        source = package / f"{name}.py"
        source.write_text(f"NAME = {name!r}\n")
        if name != "plain":
            (package / f"{name}{suffix}").write_bytes(b"")
        if name in ("fresh", "stale"):
            manifest[f"fakepkg_accel.{name}"] = accel.source_digest(source)
    (package / "stale.py").write_text("NAME = 'stale, edited'\n")
    return tuple(f"fakepkg_accel.{name}" for name in ("fresh", "stale", "unrecorded", "plain"))


def test_binaries_whose_sources_changed_or_are_unrecorded_go_to_source(tmp_path):
    manifest: dict[str, str] = {}
    modules = fake_package(tmp_path, manifest)
    compiled, to_source = accel.sort_modules(manifest, tmp_path, modules=modules)
    assert compiled == ["fakepkg_accel.fresh"]
    assert to_source == ["fakepkg_accel.stale", "fakepkg_accel.unrecorded"]
    assert accel.sort_modules(manifest, tmp_path, pure=True, modules=modules) == (
        [], ["fakepkg_accel.fresh", "fakepkg_accel.stale", "fakepkg_accel.unrecorded"])


def test_binaries_using_the_types_of_a_module_run_from_source_with_it(tmp_path):
    """A binary built against another module's extension types fails to import beside that module's
    source, so it follows it to source, and so do the modules built against it."""
    manifest: dict[str, str] = {}
    modules = fake_package(tmp_path, manifest)
    package, suffix = tmp_path / "fakepkg_accel", importlib.machinery.EXTENSION_SUFFIXES[0]
    for name, cimports in (("uses_stale", "stale"), ("uses_user", "uses_stale"), ("uses_fresh", "fresh")):
        (package / f"{name}.py").write_text("")
        (package / f"{name}.pxd").write_text(f"from fakepkg_accel.{cimports} cimport A\n")
        (package / f"{name}{suffix}").write_bytes(b"")
        manifest[f"fakepkg_accel.{name}"] = accel.source_digest(package / f"{name}.py")
    modules += ("fakepkg_accel.uses_stale", "fakepkg_accel.uses_user", "fakepkg_accel.uses_fresh")
    assert accel.cimported_modules("fakepkg_accel.uses_user", tmp_path) == {"fakepkg_accel.uses_stale"}
    compiled, to_source = accel.sort_modules(manifest, tmp_path, modules=modules)
    assert compiled == ["fakepkg_accel.fresh", "fakepkg_accel.uses_fresh"]
    assert to_source == ["fakepkg_accel.stale", "fakepkg_accel.unrecorded", "fakepkg_accel.uses_stale",
                         "fakepkg_accel.uses_user"]


def test_the_declared_cimports_name_compiled_modules():
    """Every module a declaration takes types from is itself compiled (else its dependents never could be)."""
    for module in accel.COMPILED_MODULES:
        assert accel.cimported_modules(module) <= set(accel.COMPILED_MODULES), module


def test_stale_binaries_run_from_source_with_one_warning(tmp_path, monkeypatch):
    manifest: dict[str, str] = {}
    modules = fake_package(tmp_path, manifest)
    (tmp_path / "simulator").mkdir()
    (tmp_path / "simulator" / accel.MANIFEST_NAME).write_text(json.dumps({"modules": manifest}))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(accel, "BUILD", dict(accel.BUILD))
    monkeypatch.delenv(accel.PURE_PYTHON_ENV, raising=False)
    try:
        with pytest.warns(UserWarning, match=r"^fakepkg_accel/stale.py, fakepkg_accel/unrecorded.py changed since"):
            accel.use_fresh_modules(tmp_path, modules)
        assert accel.BUILD["compiled"] == ["fakepkg_accel.fresh"]
        stale = importlib.import_module("fakepkg_accel.stale")
        assert stale.NAME == "stale, edited" and stale.__file__.endswith("stale.py")
        assert importlib.import_module("fakepkg_accel.plain").__file__.endswith("plain.py")
        with pytest.raises(ImportError):  # a fresh binary is imported as such (here an empty file)
            importlib.import_module("fakepkg_accel.fresh")
    finally:
        for name in [*modules, "fakepkg_accel"]:
            sys.modules.pop(name, None)


def test_the_build_records_the_digest_of_every_compiled_module():
    manifest = accel.read_manifest()
    if not manifest:
        pytest.skip("nothing compiled in this install")
    assert set(manifest) <= set(accel.COMPILED_MODULES)
    for module in accel.BUILD["compiled"]:
        assert manifest[module] == accel.source_digest(accel.source_path(module))


def test_a_changed_declaration_makes_the_binary_stale(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("class A:\n    def __init__(self):\n        self.x = 1\n")
    plain = accel.source_digest(source)
    declarations = accel.declarations_path(source)
    declarations.write_text("cdef class A:\n    cdef public object x\n")
    declared = accel.source_digest(source)
    declarations.write_text("cdef class A:\n    cdef public object x, y\n")
    assert len({plain, declared, accel.source_digest(source)}) == 3


def declared_classes(declarations: Path) -> dict[str, set[str]]:
    """Class -> attribute names, from the ``cdef class`` blocks of a ``.pxd``."""
    classes: dict[str, set[str]] = {}
    for line in declarations.read_text().splitlines():
        if match := re.fullmatch(r"cdef class (\w+):", line.strip()):
            attributes = classes.setdefault(match[1], set())
        elif match := re.fullmatch(r"cdef public [\w.]+ (.+)", line.strip()):  # object, list, KVCache, ...
            attributes.update(name.strip() for name in match[1].split(","))
    return classes


def attributes_set_by(cls: ast.ClassDef) -> set[str]:
    """Every ``self.name`` a class's methods assign, and its ``__slots__``."""
    names = {node.attr for node in ast.walk(cls) if isinstance(node, ast.Attribute)
             and isinstance(node.value, ast.Name) and node.value.id == "self" and isinstance(node.ctx, ast.Store)}
    for statement in cls.body:
        if isinstance(statement, ast.Assign) and any(getattr(t, "id", None) == "__slots__" for t in statement.targets):
            names.update(ast.literal_eval(statement.value))
    return names


DECLARING = [module for module in accel.COMPILED_MODULES
             if accel.declarations_path(accel.source_path(module)).exists()]


def plain_classes(source: Path) -> list[str]:
    """Classes of a module with no base class and no decorator (not dataclasses, enums or tuples)."""
    return [node.name for node in ast.parse(source.read_text()).body
            if isinstance(node, ast.ClassDef) and not node.bases and not node.decorator_list]


@pytest.mark.parametrize("module", accel.COMPILED_MODULES)
def test_every_plain_class_of_a_compiled_module_is_declared(module):
    """So that none of them is left a slower Python class in the compiled build by oversight."""
    source = accel.source_path(module)
    declarations = accel.declarations_path(source)
    declared = declared_classes(declarations) if declarations.exists() else {}
    undeclared = [name for name in plain_classes(source) if name not in declared]
    assert not undeclared, f"declare {undeclared} in {declarations.name}"


@pytest.mark.parametrize("module", DECLARING)
def test_declarations_match_the_attributes_their_classes_set(module):
    """An extension type takes no attribute it does not declare: a ``self.x = ...`` added to a class
    must be declared in its ``.pxd`` too, or only the compiled build would fail."""
    source = accel.source_path(module)
    declarations = accel.declarations_path(source)
    classes = {node.name: node for node in ast.parse(source.read_text()).body if isinstance(node, ast.ClassDef)}
    for name, declared in declared_classes(declarations).items():
        assert name in classes, f"{declarations.name} declares {name}, which {source.name} does not define"
        assert not classes[name].bases, f"{name}: an extension type cannot derive from a Python class"
        assigned = attributes_set_by(classes[name])
        assert declared == assigned, (f"{declarations.name}: {name} sets {sorted(assigned - declared)} without "
                                      f"declaring them; declares {sorted(declared - assigned)} it never sets")
