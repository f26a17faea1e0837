"""Stub for the row-major GEMM shim over scipy.linalg.cython_blas (float32/float64)."""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

LEVELS: dict[str, int]

def kernel_level() -> str:
    """The hand kernels' instruction set: "portable", "avx2" or "avx512"."""

def set_kernel_level(name: str) -> str:
    """Run the hand kernels at name (capped to the CPU); returns the level set."""

def kernel_for(dtype: str, trans_b: bool, m: int, n: int, k: int) -> str:
    """"hand" or "BLAS": what gemm runs for this shape."""

def py_gemm(A: NDArray[_F], B: NDArray[_F], C: NDArray[_F], trans_a: bool = False,
            trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0, repeat: int = 1,
            kernel: str = "auto") -> None:
    """C = alpha·op(A)·op(B) + beta·C, in place (all C-contiguous, one dtype).

    kernel: "auto" (gemm's choice), "blas" or "hand"; repeat: calls in a row.
    """
