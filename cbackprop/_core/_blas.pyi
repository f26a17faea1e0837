"""Stub for the row-major GEMM shim: hand kernels, and the GEMM providers' table
(SciPy's BLAS at entry 0; cbackprop/_providers.py fills the rest) (float32/float64)."""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

LEVELS: dict[str, int]
SHAPE_CLASSES: tuple[str, ...]

def kernel_level() -> str:
    """The hand kernels' instruction set: "portable", "avx2" or "avx512"."""

def set_kernel_level(name: str) -> str:
    """Run the hand kernels at name (capped to the CPU); returns the level set."""

def kernel_for(dtype: str, trans_b: bool, m: int, n: int, k: int) -> str:
    """"hand" or "BLAS": what gemm runs for this shape."""

def hand_kernel_splits(m: int, n: int, k: int) -> bool:
    """Whether a hand kernel's GEMM of this shape splits its rows over threads."""

def set_provider(index: int, sgemm_address: int, dgemm_address: int) -> None:
    """Put a provider's sgemm_/dgemm_ addresses (Fortran BLAS ABI) in entry index (1…)."""

def clear_provider(index: int) -> None:
    """Empty entry index: the rule and py_gemm refuse it from then on."""

def set_rule(table: list[list[list[int]]]) -> None:
    """table[double][threaded][class] = entry index; every entry named must be set."""

def get_rule() -> list[list[list[int]]]:
    """The provider rule as set_rule takes it."""

def set_threads(n: int) -> None:
    """The BLAS thread count: the rule's column, and the threads a hand GEMM splits over."""

def provider_for(dtype: str, trans_b: bool, m: int, n: int, k: int,
                 threads: int | None = None) -> int:
    """The table entry that runs this GEMM, or -1 where a hand kernel runs it."""

def class_of(m: int, n: int, k: int) -> str:
    """The name of a GEMM's shape class in the provider rule."""

def py_gemm(A: NDArray[_F], B: NDArray[_F], C: NDArray[_F], trans_a: bool = False,
            trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0, repeat: int = 1,
            kernel: str | int = "auto") -> None:
    """C = alpha·op(A)·op(B) + beta·C, in place (all C-contiguous, one dtype).

    kernel: "auto" (gemm's choice), "blas" (the rule's provider), "hand", or an
    int (that entry of the provider table); repeat: calls in a row.
    """
