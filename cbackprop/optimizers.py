"""Optimizers: hyper-parameters checked in __init__, state created lazily on
the first step, and one fused update kernel per step (`_core/_optim.pyx`).
The formulas are torch.optim's; each class states its rule.
"""

from __future__ import annotations

import inspect

import numpy as np

from cbackprop._core import _optim
from cbackprop._validation import check_real

#: The kernel's hyper-parameter slots by name: the HP_* enum of `_core/_optim.pxd`.
HP_SLOTS = {name[3:].lower(): value for name, value in vars(_optim).items()
            if name.startswith("HP_")}


class Optimizer:
    """Base class. State buffers have θ's flat layout, stacked in `state`.

    Attributes
    ----------
    state : ndarray or None
        The state buffers (momentum, moments), created on the first step.
    step_counter : ndarray
        One int64: the steps taken (`t`), advanced in place by the engine.
    """

    name: str = ""
    #: The real hyper-parameters and their intervals (check_real's arguments).
    _intervals: dict = {"lr": dict(low=0, low_open=True)}

    def __init__(self, **hyperparameters):
        for key, value in hyperparameters.items():
            setattr(self, key, value)
        self.state: np.ndarray | None = None
        self.step_counter = np.zeros(1, dtype=np.int64)
        self._validate()

    @property
    def t(self) -> int:
        """Number of update steps taken so far."""
        return int(self.step_counter[0])

    def _validate(self) -> None:
        for key, interval in self._intervals.items():
            setattr(self, key, check_real(getattr(self, key), key, **interval))

    def _slots(self) -> dict:
        return {}

    def hyperparameters(self) -> np.ndarray:
        """The kernel's hyper-parameter vector (checked again: attributes may have changed)."""
        self._validate()
        hp = np.zeros(len(HP_SLOTS), dtype=np.float64)
        for key, value in {"lr": self.lr, **self._slots()}.items():
            hp[HP_SLOTS[key]] = value
        return hp

    @property
    def code(self) -> int:
        """The kernel's code for this rule (the OptimizerKind enum of `_core/_optim.pxd`)."""
        return int(_optim.OptimizerKind[self.name.upper()])

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

    def take_state(self, theta: np.ndarray) -> None:
        """Hold state for θ from now on: created on first use, else checked
        (a fit takes it once it owns the optimizer)."""
        self.state = self.prepare(theta)

    def state_slots(self) -> list[np.ndarray]:
        """Views of the state's slots (momentum; Adam's two moments), each in
        θ's layout: lent to a bank of networks (`cbackprop.many`), which
        trains them in its wide buffers and writes them back."""
        n_state = _optim.N_STATE[self.code]
        size = self.state.size // n_state if n_state else 0
        return [self.state[i * size:(i + 1) * size] for i in range(n_state)]

    def checked_step(self, theta: np.ndarray, grad: np.ndarray, hp: np.ndarray) -> bool:
        """`step` for arrays a fit has checked (θ's layout, dtype and this
        state), with its hyper-parameter vector `hp`: no checks, no
        allocation. Returns True if a parameter became NaN or ±inf."""
        self.step_counter[0] += 1
        return _optim.step(self.code, hp, self.t, theta, grad, self.state)

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
        self.step_counter[0] += 1
        _optim.step(self.code, hp, self.t, theta, np.ascontiguousarray(grad), self.state)

    def reset(self) -> None:
        """Forget the state (momentum, moments) and the step count."""
        self.state = None
        self.step_counter[0] = 0

    def state_dict(self) -> dict:
        """A copy of everything this optimizer holds, as torch.optim's state_dict:
        {"name", "hyperparameters" (get_config()), "t", "state" (a copy, or None
        before the first step)}. `load_state_dict` takes it back; `cbackprop`
        uses it to undo a diverged fit and to save and resume a run."""
        return {"name": self.name, "hyperparameters": self.get_config(), "t": self.t,
                "state": None if self.state is None else self.state.copy()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what `state_dict` returned (of an optimizer of the same kind).

        The state is copied into the existing buffer when it has the same
        shape and dtype, so running kernels keep a valid buffer.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {
                "name", "hyperparameters", "t", "state"}:
            raise TypeError("state_dict must be a dict from Optimizer.state_dict()")
        if state_dict["name"] != self.name:
            raise ValueError(f"state_dict is of a {state_dict['name']!r} optimizer, "
                             f"not {self.name!r}")
        t = state_dict["t"]
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"state_dict['t'] must be an int >= 0, got {t!r}")
        state = state_dict["state"]
        if state is not None:
            n_state = _optim.N_STATE[self.code]
            if (not isinstance(state, np.ndarray) or state.ndim != 1
                    or state.dtype not in (np.float32, np.float64)
                    or state.size % n_state):
                raise ValueError(f"state_dict['state'] must be a 1-D float32/float64 array "
                                 f"of {n_state} × the number of parameters")
            if not np.isfinite(state).all():
                raise ValueError("state_dict['state'] holds NaN or infinite values")
        hyperparameters = dict(state_dict["hyperparameters"])
        restored = type(self)(**hyperparameters)     # checks every value
        for key in hyperparameters:
            setattr(self, key, getattr(restored, key))
        if state is None:
            self.state = None
        elif (self.state is not None and self.state.shape == state.shape
                and self.state.dtype == state.dtype):
            self.state[...] = state
        else:
            self.state = state.copy()
        self.step_counter[0] = t

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def get_config(self) -> dict:
        """The constructor's arguments, as they are now."""
        names = list(inspect.signature(type(self)).parameters)
        return {key: getattr(self, key) for key in names}


_FRACTION = dict(low=0, high=1, high_open=True)     # [0, 1)
_POSITIVE = dict(low=0, low_open=True)              # eps: 0 would give 0/0
_NON_NEGATIVE = dict(low=0)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Rule (torch.optim.SGD, dampening 0)::

        g ← ∇L(θ) + weight_decay·θ
        v ← momentum·v + g
        θ ← θ − lr·(g + momentum·v if nesterov else v)
    """

    name = "sgd"
    _intervals = {**Optimizer._intervals, "momentum": _FRACTION, "weight_decay": _NON_NEGATIVE}

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    def _validate(self) -> None:
        super()._validate()
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {self.nesterov!r}")
        self.nesterov = bool(self.nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def _slots(self) -> dict:
        return {"momentum": self.momentum, "nesterov": float(self.nesterov),
                "weight_decay": self.weight_decay}


class SGDVelocity(SGD):
    """SGD with momentum as scikit-learn's MLP writes it: the velocity holds
    learning-rate-scaled steps, so a learning rate that changes between steps
    (scikit-learn's 'invscaling' and 'adaptive') scales new gradients only.

    Rule (sklearn.neural_network's SGDOptimizer)::

        g ← ∇L(θ) + weight_decay·θ
        v ← momentum·v − lr·g
        θ ← θ + (momentum·v − lr·g if nesterov else v)

    While lr is constant this is `SGD` (torch.optim's form, v_torch = −v/lr)
    up to rounding. The scikit-learn estimators use it; `SGD` is the one for
    `Network.fit`.
    """

    name = "sgd_velocity"


class Adam(Optimizer):
    """Adam (torch.optim.Adam).

    Rule, at step t::

        g ← ∇L(θ) + weight_decay·θ
        m ← β₁m + (1−β₁)g ;  v ← β₂v + (1−β₂)g²
        θ ← θ − lr·m̂ / (√v̂ + eps),  m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ)
    """

    name = "adam"
    _intervals = {**Optimizer._intervals, "eps": _POSITIVE, "weight_decay": _NON_NEGATIVE}

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _validate(self) -> None:
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        self.betas = (check_real(self.betas[0], "beta1", **_FRACTION),
                      check_real(self.betas[1], "beta2", **_FRACTION))
        super()._validate()

    def _slots(self) -> dict:
        return {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
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
    _intervals = {**Optimizer._intervals, "alpha": _FRACTION, "eps": _POSITIVE,
                  "momentum": _FRACTION, "weight_decay": _NON_NEGATIVE}

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                         weight_decay=weight_decay)

    def _slots(self) -> dict:
        return {"beta2": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay}


#: The optimizers by name (as in state_dict()["name"]).
OPTIMIZERS = {cls.name: cls for cls in (SGD, SGDVelocity, Adam, AdamW, RMSprop)}
