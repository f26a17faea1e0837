"""Stub for the activation kernels (σ fused with the bias add; no Python functions)."""

import enum

class Activation(enum.IntEnum):
    """The kernels' activation codes (declared once, in _activations.pxd)."""

    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    ELU = 5
    SOFTPLUS = 6
    GELU = 7
    SILU = 8
    SOFTMAX = 9
