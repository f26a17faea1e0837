"""Stub for the fused optimizer updates on flat vectors."""

import enum
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

class OptimizerKind(enum.IntEnum):
    """The kernels' optimizer codes (declared once, in _optim.pxd, with its
    members and values)."""

#: Slots of the hyper-parameter vector hp (the HP_* enum of _optim.pxd).
HP_LR: int
HP_MOMENTUM: int
HP_NESTEROV: int
HP_WEIGHT_DECAY: int
HP_BETA1: int
HP_BETA2: int
HP_EPS: int
#: State buffers (each of θ's size) per optimizer code.
N_STATE: dict[int, int]

def step(kind: int, hp: NDArray[np.float64], t: int, theta: NDArray[_F], grad: NDArray[_F],
         state: NDArray[_F]) -> bool:
    """Apply update step t (counted from 1) to theta in place; True if a
    parameter became NaN or ±inf."""
