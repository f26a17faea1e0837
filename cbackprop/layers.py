"""Layer specifications."""

from __future__ import annotations

from dataclasses import dataclass

from cbackprop._validation import check_int, check_name, check_real
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
    dropout : float, default 0
        Inverted dropout on this layer's outputs while training: each unit is
        zeroed with probability `dropout` and the rest scaled by 1/(1−dropout),
        from the network's seeded stream. Off in predict/evaluate. Hidden
        layers only.
    """

    units: int
    activation: str = "identity"
    dropout: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "units", check_int(self.units, "Dense units", 1))
        check_name(self.activation, "activation", ACTIVATIONS)
        object.__setattr__(self, "dropout",
                           check_real(self.dropout, "dropout", 0, 1, high_open=True))

    def to_dict(self) -> dict:
        return {"units": self.units, "activation": self.activation, "dropout": self.dropout}
