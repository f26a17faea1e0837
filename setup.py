"""Build the Cython core. All compiler directives live here, nowhere else.

Environment switches:
  CBACKPROP_CYTHON_DEBUG=1     bounds, wraparound and initialisation checks on
  CBACKPROP_CYTHON_ANNOTATE=1  write the `cython -a` HTML beside each .pyx
  CBACKPROP_REBUILD=1          compile every extension, even one already built in
                               place from the same sources (see ReusingBuildExt)
"""

import glob
import json
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("CBACKPROP_CYTHON_DEBUG", "0") == "1"
ANNOTATE = os.environ.get("CBACKPROP_CYTHON_ANNOTATE", "0") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

MODULES = ["_blas", "_sparse", "_activations", "_losses", "_optim", "_engine"]
# Hand-written C compiled into a module. _kernels.c picks its instruction set at
# run time (function target attributes), so no -march flag is needed.
C_SOURCES = {"_blas": ["cbackprop/_core/_kernels.c"], "_optim": ["cbackprop/_core/_steps.c"],
             "_activations": ["cbackprop/_core/_vexp.c"]}

extensions = [
    Extension(
        f"cbackprop._core.{name}",
        [f"cbackprop/_core/{name}.pyx"] + C_SOURCES.get(name, []),
        # A change to any declaration file rebuilds the modules that may cimport it.
        depends=sorted(glob.glob("cbackprop/_core/*.pxd") + glob.glob("cbackprop/_core/*.h")),
        include_dirs=[np.get_include(), "cbackprop/_core"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # -O3 but never -ffast-math: it would delete the isfinite checks.
        # -fno-math-errno only stops sqrt setting errno (nothing reads it), which
        # lets the compiler vectorise the optimizer loops.
        # -ffp-contract=off: a·b + c is never fused into one FMA, so the loops
        # compiled per instruction set (_steps.c, _vexp.c) all round alike.
        # -fno-trapping-math: nothing traps on FP exceptions, so loops with a
        # select (a ? b : c) vectorise; the values are the same.
        extra_compile_args=["-O3", "-fno-math-errno", "-ffp-contract=off", "-fno-trapping-math"]
        + (["-O0", "-g"] if DEBUG else []),
        # _kernels.c keeps a pool of threads for the hand kernels' larger GEMMs.
        extra_link_args=["-pthread"] if name == "_blas" else [],
    )
    for name in MODULES
]


def directives_changed() -> bool:
    """True when the directives differ from the last build's: the generated C
    must then be regenerated even though the .pyx files did not change."""
    stamp = os.path.join("build", "cython-directives.json")
    wanted = json.dumps({"directives": directives, "annotate": ANNOTATE}, sort_keys=True)
    previous = open(stamp).read() if os.path.exists(stamp) else None
    os.makedirs("build", exist_ok=True)
    with open(stamp, "w") as f:
        f.write(wanted)
    return previous != wanted


JOBS = os.cpu_count() or 1
HERE = os.path.dirname(os.path.abspath(__file__))


class ReusingBuildExt(build_ext):
    """build_ext that copies an extension already built in place (the .so beside its
    .pyx, which an editable install imports) instead of compiling it again, when it
    is newer than every file it is built from: its C, the declarations it depends
    on and setup.py. So `pip install -e ".[EXTRA]"` on an installed tree costs the
    extra's packages, not a rebuild of the core (a .pyx change regenerates its C and
    rebuilds it; changed directives regenerate every C). Compiler settings from the
    environment (CC, CFLAGS, ...), a debug build or CBACKPROP_REBUILD=1 compile
    everything, as setuptools does."""

    def _built_in_place(self, ext) -> str | None:
        if DEBUG or os.environ.get("CBACKPROP_REBUILD", "0") == "1" or any(
                os.environ.get(k) for k in ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS", "LDSHARED")):
            return None
        built = os.path.join(HERE, self.get_ext_filename(ext.name))
        # The project's own files: the NumPy and Cython declarations cythonize lists
        # too lie in pip's fresh build environment, new each time (and the built module
        # runs against the NumPy installed beside it, whichever built it).
        sources = [os.path.join(HERE, f) for f in [*ext.sources, *ext.depends]]
        sources = [f for f in sources if os.path.abspath(f).startswith(HERE + os.sep)]
        sources.append(os.path.abspath(__file__))
        if not os.path.exists(built) or not all(os.path.exists(f) for f in sources):
            return None
        newest = max(os.path.getmtime(f) for f in sources)
        return built if os.path.getmtime(built) > newest else None

    def build_extension(self, ext):
        target = self.get_ext_fullpath(ext.name)
        built = self._built_in_place(ext)
        if built is None or os.path.abspath(target) == built:
            return super().build_extension(ext)
        self.mkpath(os.path.dirname(target))
        self.copy_file(built, target, preserve_mode=True)
        print(f"reusing {os.path.relpath(built, HERE)}: built from these sources already "
              "(CBACKPROP_REBUILD=1 compiles it again)")


def c_is_current(ext) -> bool:
    """True when the C generated from ext's .pyx is newer than the project's files it
    is generated from (the .pyx and the declarations in `depends`). cythonize alone
    would also compare it with NumPy's and Cython's own .pxd, which lie in pip's
    fresh build environment, new each time: every pip install would regenerate
    every C file, and so compile every extension again."""
    pyx = ext.sources[0]
    c_file = pyx[:-len(".pyx")] + ".c"
    if not os.path.exists(c_file):
        return False
    return os.path.getmtime(c_file) > max(os.path.getmtime(f) for f in [pyx, *ext.depends])


FORCE = directives_changed()
current = [] if FORCE or ANNOTATE else [ext for ext in extensions if c_is_current(ext)]
for ext in current:
    ext.sources[0] = ext.sources[0][:-len(".pyx")] + ".c"
stale = [ext for ext in extensions if ext not in current]

# cythonize regenerates the C of changed .pyx files (all of them when the directives
# changed); build_ext compiles only the extensions older than their sources, or
# reuses those built in place (ReusingBuildExt), and both work on several modules
# at once.
setup(ext_modules=current + (cythonize(stale, compiler_directives=directives,
                                       annotate=ANNOTATE, force=FORCE, nthreads=JOBS)
                             if stale else []),
      cmdclass={"build_ext": ReusingBuildExt}, options={"build_ext": {"parallel": JOBS}})
