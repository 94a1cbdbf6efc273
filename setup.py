"""Packages: sim and hil, plus scenarios/ installed as the data package sim.builtin; and the one
compiled module, the engine's event heap (sim/model/_heap.pyx), built where a C compiler is.

Without a compiler (or with DGSIM_PURE_PYTHON=1 set at install) the build leaves the heap out and
says so; the engine then runs on ``heapq`` (sim/model/heap.py): the same results, byte for byte,
more slowly at scale (docs/model.md, "The compiled event heap")."""

import os

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing: the compiled heap is an optimisation, not a need. An
    extension that does not build is dropped from the outputs (an editable install would otherwise
    look for its file)."""

    def build_extensions(self):
        self.check_extensions_list(self.extensions)
        built = []
        for ext in self.extensions:
            try:
                self.build_extension(ext)
                built.append(ext)
            except Exception as error:  # a missing compiler or headers: fall back to the pure-Python heap
                print(f"dgsim: not compiling {ext.name} ({error}); the engine will use the pure-Python heap "
                      "(same results, slower)")
        self.extensions = built


def _extensions():
    if os.environ.get("DGSIM_PURE_PYTHON"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # (build isolation installs Cython; a --no-build-isolation install may lack it)
        print("dgsim: Cython is not installed; the engine will use the pure-Python heap (same results, slower)")
        return []
    return cythonize([Extension("sim.model._heap", ["sim/model/_heap.pyx"])], quiet=True)


setup(
    packages=find_packages(include=["sim", "sim.*", "hil", "hil.*"]) + ["sim.builtin"],
    package_dir={"sim.builtin": "scenarios"},
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
