"""Stub for the activation kernels (σ fused with the bias add)."""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

#: Activation names, indexed by the kernels' codes.
NAMES: tuple[str, ...]

def forward(name: str, Z: NDArray[_F], b: NDArray[_F]) -> tuple[NDArray[_F], NDArray[_F]]:
    """(Z + b, σ(Z + b)) as new arrays; Z is left unchanged."""
