"""Build of servesim's compiled hot modules (everything else is in pyproject.toml).

The modules named in ``simulator.accel.COMPILED_MODULES`` are compiled with
Cython from their unchanged Python sources (see that module for why and how a
stale binary is never run). Each extension is optional: without a C compiler
the build goes on and those modules run as Python. ``SERVESIM_PURE_PYTHON=1``
at install time skips compiling altogether.
"""

import json
import os
import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
# Read with runpy: the module imports only the standard library, and the package is not installed yet.
accel = runpy.run_path(str(HERE / "simulator" / "accel.py"))


class BuildAndRecord(build_ext):
    """Builds the extensions on every core, then records each built module's source digest."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self):
        super().run()
        built = {ext.name: accel["source_digest"](accel["source_path"](ext.name, HERE))
                 for ext in self.extensions if os.path.exists(self.get_ext_fullpath(ext.name))}
        if self.extensions:
            # The manifest goes beside simulator/accel.py, wherever the build put the extensions.
            manifest = Path(self.get_ext_fullpath("simulator.accel")).parent / accel["MANIFEST_NAME"]
            manifest.write_text(json.dumps({"modules": built}, indent=1, sort_keys=True) + "\n")


def extensions():
    if accel["pure_python_requested"]():
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        return []
    modules = [Extension(name, [str(accel["source_path"](name, HERE).relative_to(HERE))], optional=True)
               for name in accel["COMPILED_MODULES"]]
    # Python's semantics throughout: annotations stay annotations (no C types), functions stay
    # introspectable (binding), so compiled and pure runs give the same results.
    return cythonize(modules, quiet=True, build_dir="build/cython", compiler_directives={
        "language_level": 3, "annotation_typing": False, "binding": True})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildAndRecord})
