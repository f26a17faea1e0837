"""Stub for the loss kernels (loss value and output δ)."""

import enum

class LossCode(enum.IntEnum):
    """The kernels' loss codes (declared once, in _losses.pxd)."""

    CROSS_ENTROPY = 0
    BINARY_CROSS_ENTROPY = 1
    MSE = 2
    HUBER = 3
    POISSON = 4
