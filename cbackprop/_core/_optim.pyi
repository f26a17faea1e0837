"""Stub for the fused optimizer updates on flat vectors."""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

#: Optimizer names, indexed by the kernels' codes.
NAMES: tuple[str, ...]
#: State buffers (each of θ's size) per optimizer, in NAMES order.
N_STATE: tuple[int, ...]
#: Names of the slots of the hyper-parameter vector hp.
HP_SLOTS: tuple[str, ...]

def step(kind: int, hp: NDArray[np.float64], t: int, theta: NDArray[_F], grad: NDArray[_F],
         state: NDArray[_F]) -> None:
    """Apply update step t (counted from 1) to theta in place."""
