"""Stub for the row-major GEMM shim over scipy.linalg.cython_blas (float32/float64)."""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

def py_gemm(A: NDArray[_F], B: NDArray[_F], C: NDArray[_F], trans_a: bool = False,
            trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0) -> None:
    """C = alpha·op(A)·op(B) + beta·C, in place (all C-contiguous, one dtype)."""
