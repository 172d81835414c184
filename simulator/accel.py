"""Compiled hot modules: which engine modules run as C extensions, and never a stale one.

The engine's hot path (the modules named in ``COMPILED_MODULES``) is plain
Python that the build also compiles with Cython, unchanged, into extension
modules beside the sources, with the same results: the semantics are Python's
and no type annotation is turned into a C type. The one addition is a ``.pxd``
beside a module (Cython's "augmenting" declarations) that makes its plain
classes extension types: their attributes are kept in the instance's C struct,
so the compiled methods read and write ``self.x`` without a dictionary lookup.
Most are declared Python objects; the links between engine objects (an
instance's queues, KV cache, run driver; a run's finish order) and attributes
that always hold a list, dict or set are declared with that type, so compiled
code also reads ``self.queues.running`` or ``len(self._values)`` without a
lookup (3.1-3.6% fewer instructions on the scale benchmark). Values and
behaviour stay the same, except that an instance takes no attribute its class
does not declare, a typed attribute takes nothing but its type or None
(TypeError otherwise), and the class takes no monkeypatching (tests subclass
instead). ``setup.py`` compiles them; a machine without a C compiler, or an
install with ``SERVESIM_PURE_PYTHON=1``, simply gets the sources (the ``.pxd``
files are then unused).

An editable install leaves the binaries next to the sources, where Python
would import them before the ``.py`` files even after an edit. So the build
writes a manifest of each source's digest as compiled (``MANIFEST_NAME``), and
when ``simulator`` is imported, ``use_fresh_modules`` sends every module whose
source no longer matches (or that has a binary but no manifest entry) to its
source, with one warning naming them. A binary built against another module's
extension types (``from ... cimport`` in its ``.pxd``) cannot even be imported
beside that module's source, so it follows that module to source.
``SERVESIM_PURE_PYTHON=1`` at run time sends them all to their sources (for
profiling: pyinstrument sees no frames inside an extension module).

This module imports nothing but the standard library: ``setup.py`` reads the
module list and the digest from it before anything is installed.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import warnings
from pathlib import Path

# Modules the build compiles. All are mechanism in ``simulator``, which is imported before any of
# them (policies are pydantic models, which need their classes' annotations at run time).
COMPILED_MODULES: tuple[str, ...] = (
    "simulator.engine.cluster",
    "simulator.engine.departures",
    "simulator.engine.fast_forward",
    "simulator.engine.guards",
    "simulator.engine.handoff",
    "simulator.engine.instance",
    "simulator.engine.kv_cache",
    "simulator.engine.links",
    "simulator.engine.load_scan",
    "simulator.engine.queues",
    "simulator.engine.request",
    "simulator.engine.run_driver",
    "simulator.engine.run_progress",
    "simulator.engine.scaling",
    "simulator.engine.step",
    "simulator.engine.usage",
    "simulator.metrics.gap_buffer",
    "simulator.metrics.recorder",
    "simulator.metrics.sampler",
    "simulator.perf.cost_model",
    "simulator.perf.efficiency",
    "simulator.perf.roofline",
    "simulator.perf.shape",
)
MANIFEST_NAME = "_compiled.json"  # beside this file: {"modules": {module: source sha256}}
PURE_PYTHON_ENV = "SERVESIM_PURE_PYTHON"

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds ``simulator/``


def source_path(module: str, root: Path = PACKAGE_ROOT) -> Path:
    """The ``.py`` file of a dotted module name under ``root``."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def declarations_path(source: Path) -> Path:
    """The ``.pxd`` beside a module's source that declares its classes for the compiler."""
    return source.with_suffix(".pxd")


def source_digest(path: Path) -> str:
    """What the manifest records of a module's source: the sha256 of its ``.py`` bytes, followed
    by its ``.pxd``'s when it has one (a changed declaration makes the binary stale too)."""
    digest = hashlib.sha256(path.read_bytes())
    declarations = declarations_path(path)
    if declarations.exists():
        digest.update(declarations.read_bytes())
    return digest.hexdigest()


def extension_path(module: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The compiled extension of a module under ``root``, if one was built there."""
    base = root.joinpath(*module.split("."))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.exists():
            return candidate
    return None


def pure_python_requested() -> bool:
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


def read_manifest(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """Module -> source digest at compile time; empty when nothing was compiled here."""
    path = root / "simulator" / MANIFEST_NAME
    try:
        return dict(json.loads(path.read_text())["modules"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def cimported_modules(module: str, root: Path = PACKAGE_ROOT) -> set[str]:
    """The modules whose extension types a module's ``.pxd`` names (its ``from X cimport`` lines)."""
    declarations = declarations_path(source_path(module, root))
    if not declarations.exists():
        return set()
    return set(re.findall(r"^from\s+([\w.]+)\s+cimport\b", declarations.read_text(), re.MULTILINE))


def sort_modules(manifest: dict[str, str], root: Path = PACKAGE_ROOT, pure: bool = False,
                 modules: tuple[str, ...] = COMPILED_MODULES) -> tuple[list[str], list[str]]:
    """Split the compiled modules into those that may run compiled and those that must run from
    source: a binary whose source changed since it was built (or that the manifest does not
    know), one built against the extension types of a module that does not run compiled, or
    every binary when ``pure``. Modules without a binary are in neither list."""
    built = [module for module in modules if extension_path(module, root) is not None]
    fresh = set()
    for module in built:
        source = source_path(module, root)
        if not pure and source.exists() and manifest.get(module) == source_digest(source):
            fresh.add(module)
    # A binary that reads another module's objects as extension types cannot import beside that
    # module's source (there the type is a plain class): it runs from source too, and so on.
    needs = {module: cimported_modules(module, root) for module in fresh}
    while unmet := {module for module in fresh if not needs[module] <= fresh}:
        fresh -= unmet
    return [m for m in built if m in fresh], [m for m in built if m not in fresh]


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the named modules as their ``.py`` sources, ahead of the binaries beside them."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self.sources = sources

    def find_spec(self, fullname, path=None, target=None):
        source = self.sources.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


BUILD: dict[str, object] = {"compiled": [], "from_source": [], "pure_python_requested": False}


def use_fresh_modules(root: Path = PACKAGE_ROOT, modules: tuple[str, ...] = COMPILED_MODULES) -> None:
    """Route stale binaries (and all of them under ``SERVESIM_PURE_PYTHON=1``) to their sources;
    record what runs compiled in ``BUILD``. Called once, when ``simulator`` is imported."""
    pure = pure_python_requested()
    compiled, to_source = sort_modules(read_manifest(root), root, pure, modules)
    BUILD.update(compiled=compiled, from_source=to_source, pure_python_requested=pure)
    if not to_source:
        return
    sys.meta_path.insert(0, _SourceFinder({module: source_path(module, root) for module in to_source}))
    if not pure:
        names = ", ".join(source_path(module, root).relative_to(root).as_posix() for module in to_source)
        warnings.warn(f"{names} changed since compiled (or the build recorded no digest, or uses the "
                      "types of one that did): running from source, slower; rebuild with "
                      "`pip install -e .`", stacklevel=3)


def build_description() -> str:
    """One line for benchmark output: how many hot modules run compiled."""
    compiled = len(BUILD["compiled"])
    if not compiled:
        return "pure Python" + (f" ({PURE_PYTHON_ENV}=1)" if BUILD["pure_python_requested"] else "")
    return f"compiled ({compiled} of {len(COMPILED_MODULES)} hot modules)"
