"""Stub for the engine: whole passes over a network in one nogil call."""

from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cbackprop._core._sparse import CSR

_F = TypeVar("_F", np.float32, np.float64)

STATUS_OK: int
STATUS_NONFINITE_LOSS: int
STATUS_NONFINITE_PARAMS: int
#: Training health is measured on every HEALTH_EVERY-th step; HEALTH_SCALARS
#: numbers per layer come before its per-unit sums.
HEALTH_EVERY: int
HEALTH_SCALARS: int

class Layout:
    """A network's shape for the kernels: widths, activation codes, dropout, loss, alpha."""

    sizes: tuple[int, ...]
    #: > 0: each training batch of total weight S uses the L2 strength alpha_per_weight / S.
    alpha_per_weight: float

    def __init__(self, sizes: ArrayLike, acts: ArrayLike, dropout: ArrayLike, loss: int,
                 delta: float, alpha: float) -> None: ...
    def watch_health(self, sums: NDArray[np.float64]) -> None:
        """train_batches adds its training-health figures to sums from now on."""

def health_size(layout: Layout) -> int:
    """Elements of the training-health sums of a layout."""

def workspace_size(layout: Layout, B: int, sparse: bool = False) -> int:
    """Elements in the workspace for batches of up to B rows (of sparse input)."""

def workspace_views(ws: NDArray[_F], layout: Layout, B: int,
                    n: int) -> list[tuple[NDArray[_F], NDArray[_F], NDArray[_F]]]:
    """[(Z, A, dZ), …] per layer: views of the first n rows."""

def train_batches(layout: Layout, theta: NDArray[_F], grad: NDArray[_F], state: NDArray[_F],
                  opt_kind: int, hp: NDArray[np.float64], step_count: NDArray[np.int64],
                  X: NDArray[_F] | CSR, Y: NDArray[_F], w: NDArray[_F], order: NDArray[np.intp],
                  start: int, stop: int, B: int, ws: NDArray[_F],
                  rng: NDArray[np.uint64], keep_theta: NDArray[_F],
                  keep_state: NDArray[_F]) -> tuple[float, int, int, int]:
    """Train on rows order[start:stop] in batches of B: (loss sum, rows, correct, status);
    unless keep_theta and keep_state are empty, the first update saves θ and the state
    into them."""

def batch_loss(layout: Layout, theta: NDArray[_F], X: NDArray[_F] | CSR, Y: NDArray[_F],
               w: NDArray[_F], order: NDArray[np.intp], start: int, B: int, ws: NDArray[_F],
               rng: NDArray[np.uint64]) -> tuple[float, int, int, float, float, int]: ...
def backward_layer(layout: Layout, theta: NDArray[_F], grad: NDArray[_F],
                   X: NDArray[_F] | CSR, order: NDArray[np.intp], start: int, nb: int, B: int,
                   ws: NDArray[_F], alpha: float, l: int) -> None: ...
def batch_gradient(layout: Layout, theta: NDArray[_F], grad: NDArray[_F], X: NDArray[_F] | CSR,
                   Y: NDArray[_F], w: NDArray[_F], order: NDArray[np.intp], start: int, B: int,
                   ws: NDArray[_F],
                   rng: NDArray[np.uint64]) -> tuple[float, int, int, float, int]:
    """One batch's ∇L(θ) into grad: (loss, rows, correct, weight sum, status)."""

def loss_and_grad(layout: Layout, theta: NDArray[_F], grad: NDArray[_F], X: NDArray[_F] | CSR,
                  Y: NDArray[_F], w: NDArray[_F], B: int, ws: NDArray[_F],
                  with_grad: bool) -> tuple[float, int]:
    """(L(θ), rows classified right); ∇L(θ) into grad when with_grad."""

def predict(layout: Layout, theta: NDArray[_F], X: NDArray[_F] | CSR, out: NDArray[_F], B: int,
            ws: NDArray[_F]) -> None:
    """out = the network's output for every row of X, in chunks of B rows."""

def shuffle(order: NDArray[np.intp], rng: NDArray[np.uint64]) -> None:
    """Fisher–Yates shuffle of order in place (splitmix64 state in rng[0])."""

def all_finite(x: NDArray[_F]) -> bool:
    """True when no element of x is NaN or ±inf."""

class Bank:
    """K networks of one shape trained on the same batches (`cbackprop.many`)."""

    size: int

    def __init__(self, layouts: list[Layout], thetas: list[NDArray[_F]],
                 states: list[NDArray[_F]], hps: list[NDArray[np.float64]],
                 step_counters: list[NDArray[np.int64]], rngs: list[NDArray[np.uint64]],
                 kind: int) -> None: ...
    def failed(self, k: int) -> bool:
        """True once network k met a non-finite batch loss."""
    def retire(self, k: int) -> None:
        """Train network k no further."""
    def workspace_size(self, B: int) -> int:
        """Elements of bank_train's workspace for batches of up to B rows."""

def bank_train(bank: Bank, wide: NDArray[_F], wide_grad: NDArray[_F], wide_state: NDArray[_F],
               scratch: NDArray[_F], X: NDArray[_F], Y: NDArray[_F], w: NDArray[_F],
               order: NDArray[np.intp], start: int, stop: int, B: int, ws: NDArray[_F],
               results: NDArray[np.float64]) -> None:
    """Train every network of the bank on rows order[start:stop] in batches of B."""
