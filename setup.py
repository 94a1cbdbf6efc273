"""Packages: sim and hil, plus scenarios/ installed as the data package sim.builtin; and two compiled
modules, built where a C compiler is: the engine's event heap (sim/model/_heap.pyx) and the request
sink's row buffer (sim/metrics/_rows.pyx).

Without a compiler (or with DGSIM_PURE_PYTHON=1 set at install) the build leaves them out and says
so; dgsim then uses their Python twins (``heapq`` in sim/model/heap.py, ``_Rows`` in
sim/metrics/sink.py): the same results, byte for byte, more slowly at scale (docs/model.md, "The
compiled modules")."""

import os

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing: the compiled modules are optimisations, not needs. An
    extension that does not build is dropped from the outputs (an editable install would otherwise
    look for its file)."""

    def build_extensions(self):
        self.check_extensions_list(self.extensions)
        built = []
        for ext in self.extensions:
            try:
                self.build_extension(ext)
                built.append(ext)
            except Exception as error:  # a missing compiler or headers: fall back to the Python twin
                print(f"dgsim: not compiling {ext.name} ({error}); dgsim will use its Python twin "
                      "(same results, slower)")
        self.extensions = built


def _extensions():
    if os.environ.get("DGSIM_PURE_PYTHON"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # (build isolation installs Cython; a --no-build-isolation install may lack it)
        print("dgsim: Cython is not installed; dgsim will use the Python twins of its compiled modules "
              "(same results, slower)")
        return []
    return cythonize([Extension("sim.model._heap", ["sim/model/_heap.pyx"]),
                      Extension("sim.metrics._rows", ["sim/metrics/_rows.pyx"])], quiet=True)


setup(
    packages=find_packages(include=["sim", "sim.*", "hil", "hil.*"]) + ["sim.builtin"],
    package_dir={"sim.builtin": "scenarios"},
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
