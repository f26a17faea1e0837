"""Typed Cython kernels: nogil loops over C-contiguous float32/float64 buffers.

Nothing here validates its inputs; `cbackprop._validation` does that first.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _preload_cython_blas() -> None:
    """Load scipy.linalg.cython_blas (the BLAS our kernels call) by itself.

    `cimport scipy.linalg.cython_blas` imports the module by name, and importing
    it the usual way first runs scipy.linalg/__init__ (about 0.2 s of imports
    cbackprop never uses). The extension module needs nothing from its package,
    so it is loaded from its file and registered under its own name; a later
    `import scipy.linalg` works as usual. If the file is not where SciPy keeps
    it, nothing is done and the ordinary import happens instead.
    """
    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return
    import scipy

    folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "cython_blas" + suffix)
        if os.path.exists(path):
            loader = importlib.machinery.ExtensionFileLoader(name, path)
            spec = importlib.machinery.ModuleSpec(name, loader, origin=path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                loader.exec_module(module)
            except Exception:
                del sys.modules[name]
            return


_preload_cython_blas()
