"""Stub for the activation kernels (σ fused with the bias add; no Python functions)."""

#: Activation names, indexed by the kernels' codes.
NAMES: tuple[str, ...]
