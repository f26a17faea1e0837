"""Loss specifications. Each is the mean over the batch of a per-example cost
(plus α/2·Σ‖W‖² when the network has alpha > 0); formulas in `_core/_losses.pyx`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cbackprop._core._losses import LossCode
from cbackprop._validation import check_name, check_real

#: Names in the order of the kernels' codes (the enum in `_core/_losses.pxd`).
LOSSES: tuple[str, ...] = tuple(name.lower() for name in LossCode.__members__)

#: The output activation each loss needs (None: any but softmax).
REQUIRED_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
#: Regression losses with a link: the output layer must be identity and gives the
#: linear predictor z (poisson: z = log μ, the prediction is μ = eᶻ).
LINKED_OUTPUT = {"poisson": "identity"}


@dataclass(frozen=True)
class Loss:
    """A loss by name; see the subclasses for each convention."""

    name: str
    delta: float = 1.0

    def __post_init__(self):
        check_name(self.name, "loss", LOSSES)
        object.__setattr__(self, "delta", check_real(self.delta, "huber delta", 0, low_open=True))

    @property
    def code(self) -> int:
        return int(LossCode[self.name.upper()])

    def to_dict(self) -> dict:
        return {"name": self.name, "delta": self.delta}


def CrossEntropy() -> Loss:
    """Mean over rows of −Σₖ yₖ log softmax(z)ₖ (needs a softmax output layer)."""
    return Loss("cross_entropy")


def BinaryCrossEntropy() -> Loss:
    """Mean over all n·k elements of −[y log σ(z) + (1−y) log(1−σ(z))] (sigmoid output)."""
    return Loss("binary_cross_entropy")


def MSE() -> Loss:
    """Mean over all n·k elements of (a − y)², no ½ factor."""
    return Loss("mse")


def Huber(delta: float = 1.0) -> Loss:
    """Mean over all elements of ½r² where |r| ≤ delta, else delta·(|r| − ½delta)."""
    return Loss("huber", delta)


def Poisson() -> Loss:
    """Mean over all n·k elements of the half Poisson deviance of μ = eᶻ (log link):
    eᶻ − y·z + y·log y − y, for targets y ≥ 0. The output layer must be identity:
    it gives z = log μ (so the network's predict gives log μ; the prediction is eᶻ);
    δ = eᶻ − y is fused in the loss."""
    return Loss("poisson")


def get_loss(loss) -> Loss:
    """A Loss from a Loss or a name."""
    if isinstance(loss, Loss):
        return loss
    return Loss(check_name(loss, "loss", LOSSES))
