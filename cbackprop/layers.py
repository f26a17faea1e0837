"""Layer specifications."""

from __future__ import annotations

from dataclasses import dataclass

from cbackprop._validation import check_int, check_name
from cbackprop.activations import ACTIVATIONS


@dataclass(frozen=True)
class Dense:
    """A fully connected layer: z = a_prev · W + b, a = σ(z).

    Parameters
    ----------
    units : int
        Number of units (columns of W), at least 1.
    activation : str, default "identity"
        One of identity, sigmoid, tanh, relu, leaky_relu, elu, softplus, gelu,
        silu, softmax (softmax only as the output layer, with cross_entropy).
    """

    units: int
    activation: str = "identity"

    def __post_init__(self):
        object.__setattr__(self, "units", check_int(self.units, "Dense units", 1))
        check_name(self.activation, "activation", ACTIVATIONS)

    def to_dict(self) -> dict:
        return {"units": self.units, "activation": self.activation}
