"""Stub for the loss kernels (loss value and output δ)."""

import enum

class LossCode(enum.IntEnum):
    """The kernels' loss codes (declared once, in _losses.pxd, with its
    members and values)."""
