"""Stub for the activation kernels (σ fused with the bias add; no Python functions)."""

import enum

class Activation(enum.IntEnum):
    """The kernels' activation codes (declared once, in _activations.pxd,
    with its members and values)."""
