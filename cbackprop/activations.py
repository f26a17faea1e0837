"""Activation names. The formulas live in `_core/_activations.pxd`:

identity z · sigmoid 1/(1+e^-z) · tanh · relu max(z, 0) ·
leaky_relu (slope 0.01) · elu (α = 1) · softplus log(1+e^z), stable ·
gelu z·Φ(z), exact (erf) · silu z·σ(z) · softmax (output layers only).
"""

from cbackprop._core._activations import Activation

#: Names in the order of the kernels' codes (the enum in `_core/_activations.pxd`).
ACTIVATIONS: tuple[str, ...] = tuple(name.lower() for name in Activation.__members__)
HIDDEN_ACTIVATIONS: tuple[str, ...] = tuple(a for a in ACTIVATIONS if a != "softmax")

#: Layers with these activations get He-uniform initial weights; the others Glorot-uniform.
RELU_FAMILY = frozenset({"relu", "leaky_relu", "elu", "gelu", "silu", "softplus"})


def code(name: str) -> int:
    """The kernel's code for an activation name."""
    return int(Activation[name.upper()])
