"""Stub for the loss kernels (loss value and output δ)."""

#: Loss names, indexed by the kernels' codes.
NAMES: tuple[str, ...]
