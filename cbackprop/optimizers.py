"""Optimizers: hyper-parameters checked in __init__, state created lazily on
the first step, and one fused update kernel per step (`_core/_optim.pyx`).
The formulas are torch.optim's; each class states its rule.
"""

from __future__ import annotations

import numpy as np

from cbackprop._core import _optim
from cbackprop._validation import check_real


class Optimizer:
    """Base class. State buffers have θ's flat layout, stacked in `state`."""

    name: str = ""

    def __init__(self, lr: float):
        self.lr = lr
        self.state: np.ndarray | None = None
        self._t = np.zeros(1, dtype=np.int64)   # steps taken; the engine advances it
        self._validate()

    @property
    def t(self) -> int:
        """Number of update steps taken so far."""
        return int(self._t[0])

    def _validate(self) -> None:
        self.lr = check_real(self.lr, "lr", 0, low_open=True)

    def _slots(self) -> dict:
        return {}

    def hyperparameters(self) -> np.ndarray:
        """The kernel's hyper-parameter vector (checked again: attributes may have changed)."""
        self._validate()
        hp = np.zeros(len(_optim.HP_SLOTS), dtype=np.float64)
        for key, value in {"lr": self.lr, **self._slots()}.items():
            hp[_optim.HP_SLOTS.index(key)] = value
        return hp

    @property
    def code(self) -> int:
        return _optim.NAMES.index(self.name)

    def prepare(self, theta: np.ndarray) -> np.ndarray:
        """Create the state for θ on first use; check it matches θ afterwards."""
        n_state = _optim.N_STATE[self.code]
        shape = (n_state * theta.size,)
        if self.state is None:
            return np.zeros(shape, dtype=theta.dtype)
        if self.state.shape != shape or self.state.dtype != theta.dtype:
            raise ValueError(
                f"this {type(self).__name__} holds state for {self.state.size // n_state} "
                f"{self.state.dtype} parameters, not {theta.size} {theta.dtype}: "
                "use a new optimizer (or call reset()) for another network"
            )
        return self.state

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        """Update θ in place from its gradient (one step)."""
        if not (isinstance(theta, np.ndarray) and isinstance(grad, np.ndarray)):
            raise TypeError("theta and grad must be NumPy arrays")
        if theta.ndim != 1 or theta.shape != grad.shape or theta.dtype != grad.dtype:
            raise ValueError("theta and grad must be 1-D arrays of the same shape and dtype")
        if theta.dtype not in (np.float32, np.float64) or not theta.flags.c_contiguous \
                or not theta.flags.writeable:
            raise ValueError("theta must be a writable contiguous float32/float64 array")
        hp = self.hyperparameters()
        self.state = self.prepare(theta)
        self._t[0] += 1
        _optim.step(self.code, hp, self.t, theta, np.ascontiguousarray(grad), self.state)

    def reset(self) -> None:
        """Forget the state (momentum, moments) and the step count."""
        self.state = None
        self._t[0] = 0

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def get_config(self) -> dict:
        return {"lr": self.lr}


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Rule (torch.optim.SGD, dampening 0)::

        g ← ∇L(θ) + weight_decay·θ
        v ← momentum·v + g
        θ ← θ − lr·(g + momentum·v if nesterov else v)
    """

    name = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        super().__init__(lr)

    def _validate(self) -> None:
        super()._validate()
        self.momentum = check_real(self.momentum, "momentum", 0, 1, high_open=True)
        self.weight_decay = check_real(self.weight_decay, "weight_decay", 0)
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def _slots(self) -> dict:
        return {"momentum": self.momentum, "nesterov": float(self.nesterov),
                "weight_decay": self.weight_decay}

    def get_config(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": bool(self.nesterov),
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (torch.optim.Adam).

    Rule, at step t::

        g ← ∇L(θ) + weight_decay·θ
        m ← β₁m + (1−β₁)g ;  v ← β₂v + (1−β₂)g²
        θ ← θ − lr·m̂ / (√v̂ + eps),  m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ)
    """

    name = "adam"

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        super().__init__(lr)

    def _validate(self) -> None:
        super()._validate()
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        self.betas = (check_real(self.betas[0], "beta1", 0, 1, high_open=True),
                      check_real(self.betas[1], "beta2", 0, 1, high_open=True))
        self.eps = check_real(self.eps, "eps", 0, low_open=True)   # 0 would give 0/0
        self.weight_decay = check_real(self.weight_decay, "weight_decay", 0)

    def _slots(self) -> dict:
        return {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                "weight_decay": self.weight_decay}

    def get_config(self) -> dict:
        return {"lr": self.lr, "betas": tuple(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW).

    Rule: θ ← θ·(1 − lr·weight_decay), then Adam's step with g = ∇L(θ).
    """

    name = "adamw"

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop, centered=False).

    Rule::

        g ← ∇L(θ) + weight_decay·θ
        v ← alpha·v + (1−alpha)·g²
        b ← momentum·b + g/(√v + eps);  θ ← θ − lr·b      (momentum > 0)
        θ ← θ − lr·g/(√v + eps)                           (momentum = 0)
    """

    name = "rmsprop"

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        self.alpha = alpha
        self.eps = eps
        self.momentum = momentum
        self.weight_decay = weight_decay
        super().__init__(lr)

    def _validate(self) -> None:
        super()._validate()
        self.alpha = check_real(self.alpha, "alpha", 0, 1, high_open=True)
        self.eps = check_real(self.eps, "eps", 0, low_open=True)   # 0 would give 0/0
        self.momentum = check_real(self.momentum, "momentum", 0, 1, high_open=True)
        self.weight_decay = check_real(self.weight_decay, "weight_decay", 0)

    def _slots(self) -> dict:
        return {"beta2": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay}

    def get_config(self) -> dict:
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "momentum": self.momentum, "weight_decay": self.weight_decay}
