"""Build the Cython core. All compiler directives live here, nowhere else.

Environment switches:
  CBACKPROP_CYTHON_DEBUG=1     bounds, wraparound and initialisation checks on
  CBACKPROP_CYTHON_ANNOTATE=1  write the `cython -a` HTML beside each .pyx
"""

import glob
import json
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

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

# cythonize regenerates only the C of changed .pyx files (unless the directives
# changed); build_ext compiles only the extensions older than their sources, and
# both work on several modules at once.
setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=ANNOTATE,
                            force=directives_changed(), nthreads=JOBS),
      options={"build_ext": {"parallel": JOBS}})
