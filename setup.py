"""Build the Cython core. All compiler directives live here, nowhere else.

Environment switches:
  CBACKPROP_CYTHON_DEBUG=1     bounds, wraparound and initialisation checks on
  CBACKPROP_CYTHON_ANNOTATE=1  write the `cython -a` HTML beside each .pyx
"""

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

# cythonize regenerates a .c only when its .pyx is newer, so a change of
# directives (the debug switch) would be ignored: remember the last ones used.
_STAMP = os.path.join("build", "cython-directives.json")
_wanted = json.dumps(directives, sort_keys=True)
try:
    with open(_STAMP) as f:
        FORCE = f.read() != _wanted
except OSError:
    FORCE = True

MODULES = ["_blas", "_activations", "_losses", "_optim", "_engine"]

extensions = [
    Extension(
        f"cbackprop._core.{name}",
        [f"cbackprop/_core/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # -O3 but never -ffast-math: it would delete the isfinite checks.
        extra_compile_args=["-O3"] + (["-O0", "-g"] if DEBUG else []),
    )
    for name in MODULES
]

ext_modules = cythonize(extensions, compiler_directives=directives, annotate=ANNOTATE,
                        force=FORCE or None)
os.makedirs(os.path.dirname(_STAMP), exist_ok=True)
with open(_STAMP, "w") as f:
    f.write(_wanted)

setup(ext_modules=ext_modules)
