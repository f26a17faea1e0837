"""scikit-learn estimators on the cbackprop engine: MLPClassifier and MLPRegressor.

Design
------
Each estimator is a scikit-learn front end over one `cbackprop.Network`: input
rules, labels, schedules and stopping follow `sklearn.neural_network`, while
every epoch runs as one `Network.fit(epochs=1)` call (minibatches inside one
nogil engine call) and 'lbfgs' drives `scipy.optimize` with
`Network.loss_and_grad`. `coefs_` and `intercepts_` are views into the
network's flat `theta`, so they are never stale and never copied.

Objective. The network's losses follow PyTorch (mse without ½, element means)
and its L2 term is alpha_net/2·‖W‖², while scikit-learn minimises, per batch of
total sample weight S,

    classifier  mean over rows of Σₖ log-loss            + alpha/(2S)·‖W‖²
    regressor   ½ · mean over rows of Σₖ (ŷ − y)²        + alpha/(2S)·‖W‖²
    poisson     Σₖ mean over rows of y log(y/ŷ) − y + ŷ  + alpha/(2S)·‖W‖²

The network's objective is exactly `c` times this one, with c = 1 (softmax),
1/k (k sigmoid or poisson outputs) or 2/k (k squared-error outputs), once alpha_net =
c·alpha/S. So the estimators set alpha_net = c·alpha/S (S each training batch's
own total sample weight, as scikit-learn; the full data for 'lbfgs'), divide losses by c, and make
every solver step identical to a step on scikit-learn's objective: SGD's
learning rate is divided by c and the Adam/RMSprop epsilon multiplied by c.
`random_state` is drawn in scikit-learn's order, so the initial weights (Glorot
uniform, biases too) and the early-stopping split are scikit-learn's own.

What still differs (small, and tested to stay small):
- The shuffling stream is the engine's, so shuffled minibatches differ (with
  shuffle=False, SGD follows scikit-learn's steps to rounding).
- Adam's epsilon is added after bias correction (PyTorch); scikit-learn's is
  in effect epsilon/√(1−β₂ᵗ).

SGD uses scikit-learn's velocity form (`optimizers.SGDVelocity`: v ← μv − lr·g,
θ += v), so a schedule that lowers the learning rate acts as scikit-learn's;
`cb.SGD` on a Network keeps torch.optim's v ← μv + g, θ −= lr·v.
- Multi-output regression: loss_ is ½·mean over rows of Σ over outputs (the
  objective both libraries' gradients minimise); scikit-learn reports it
  divided by the number of outputs.
"""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings

import numpy as np

try:
    import scipy.optimize
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        check_classification_targets,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "cbackprop.MLPClassifier and cbackprop.MLPRegressor need scikit-learn >= 1.7: "
        "pip install 'cbackprop[sklearn]' (or pip install scikit-learn)"
    ) from exc

from cbackprop import _validation as V
from cbackprop import serialization
from cbackprop._session import DivergenceError, Evaluator, TrainingSession
from cbackprop.activations import HIDDEN_ACTIVATIONS
from cbackprop.checkpoint import resume
from cbackprop.history import History
from cbackprop.layers import Dense
from cbackprop.network import Network
from cbackprop.optimizers import Adam, AdamW, RMSprop, SGDVelocity
from cbackprop.trainer import Policy

__all__ = ["MLPClassifier", "MLPRegressor", "EstimatorRun"]

#: scikit-learn's activation names that cbackprop spells differently.
_SKLEARN_ALIASES = {"logistic": "sigmoid"}
_ACTIVATIONS = tuple(sorted(set(HIDDEN_ACTIVATIONS) | set(_SKLEARN_ALIASES)))
#: cbackprop output activation → scikit-learn's name for out_activation_.
_OUT_NAMES = {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity"}
_SOLVERS = ("lbfgs", "sgd", "adam", "adamw", "rmsprop")
_SCHEDULES = ("constant", "invscaling", "adaptive")
#: 'adaptive' stops once the learning rate falls to this (scikit-learn's rule).
_MIN_ADAPTIVE_LR = 1e-6
#: Sparse X formats taken as they are (as scikit-learn's MLP); others become CSR.
_SPARSE = ("csr", "csc")

def _json_float(value):
    """A float as JSON keeps it: non-finite ones (and None) as text."""
    return None if value is None else float(value) if math.isfinite(value) else repr(value)


def _checked_state(state: dict, saved, n_params: int):
    """The estimator's attributes a checkpoint's state holds, checked (as
    `cbackprop.checkpoint` checks the rest), or None for a finished run."""
    def number(value, name, whole=False, low=None):
        if isinstance(value, str) and value in ("inf", "-inf", "nan") and not whole:
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            raise TypeError(f"{name} is {value!r}")
        if low is not None and value < low:
            raise ValueError(f"{name} is {value!r}, below {low}")
        return value

    def curve(name):
        values = state[name]
        if values is None and name != "loss_curve_":
            return None
        if not isinstance(values, list) or len(values) != n_iter:
            raise ValueError(f"{name} does not hold {n_iter} epochs")
        return [float(number(v, name)) for v in values]

    if not isinstance(state["finished"], bool) or not isinstance(state["early_stopped_"], bool):
        raise TypeError("finished and early_stopped_ are true or false")
    if state["finished"]:
        return None
    n_iter = number(state["n_iter_"], "n_iter_", whole=True, low=0)
    if n_iter != saved.epoch:
        raise ValueError(f"n_iter_ {n_iter} is not the checkpoint's epoch {saved.epoch}")
    best_theta = state["best_theta"]
    if best_theta is not None:
        if not isinstance(best_theta, list) or len(best_theta) != n_params:
            raise ValueError(f"best_theta does not hold the {n_params} parameters")
        best_theta = np.array([number(v, "best_theta") for v in best_theta],
                              dtype=saved.network.theta.dtype)
        if not np.isfinite(best_theta).all():
            raise ValueError("best_theta is not finite")
    best_score = state["best_score"]
    return (n_iter, number(state["t_"], "t_", whole=True, low=0), curve("loss_curve_"),
            curve("validation_scores_"), curve("validation_loss_curve_"),
            float(number(state["learning_rate"], "learning_rate", low=0)),
            state["early_stopped_"], number(state["stopping_count"], "stopping_count",
                                            whole=True, low=0),
            None if state["best_loss"] is None else float(number(state["best_loss"],
                                                                 "best_loss")),
            None if best_score is None else float(number(best_score, "best_score")),
            best_theta)


def _constraints(regressor: bool) -> dict:
    """scikit-learn's `_parameter_constraints` for its MLP, widened to cbackprop's
    activations and solvers and extended by its own parameters, so that
    `_validate_params` raises scikit-learn's InvalidParameterError (a ValueError
    and a TypeError) with its message. Where cbackprop is narrower (momentum < 1)
    or checks more (per-layer lists, dtype), `_check_params` checks after it."""
    constraints = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions(set(_SOLVERS))],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(_SCHEDULES))],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        # cbackprop's own
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left"), list, tuple],
        "callbacks": [list, tuple, None],
        "dtype": "no_validation",       # V.check_dtype
        "health": ["boolean"],
        "checkpoint": [str, os.PathLike, None],
        "checkpoint_every": [Interval(numbers.Integral, 1, None, closed="left")],
    }
    if regressor:
        constraints["loss"] = [StrOptions({"squared_error", "poisson"})]
    else:
        constraints["class_weight"] = [dict, StrOptions({"balanced"}), None]
    return constraints


def _real_intervals(constraints: dict) -> dict:
    """The real-valued hyper-parameters of the constraints: name -> the interval
    `check_real` enforces (which also refuses NaN and infinity)."""
    out = {}
    for name, allowed in constraints.items():
        first = allowed[0] if isinstance(allowed, list) else None
        if isinstance(first, Interval) and first.type is numbers.Real:
            out[name] = dict(low=first.left, high=first.right,
                             low_open=first.closed in ("right", "neither"),
                             high_open=first.closed in ("left", "neither"))
    return out


#: Integer hyper-parameters and their least value; named ones and their choices; booleans.
_INT_PARAMETERS = {"max_iter": 1, "max_fun": 1, "checkpoint_every": 1}
#: Parameters that do not change what a fit computes: a checkpointed run may
#: be continued with other values of them.
_RUN_NEUTRAL = ("callbacks", "verbose", "checkpoint", "checkpoint_every", "warm_start")
_NAMED_PARAMETERS = {"solver": _SOLVERS, "learning_rate": _SCHEDULES}
_BOOL_PARAMETERS = ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "health")


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class LearningRateSchedule:
    """The learning rate of solver='sgd' between epochs, as scikit-learn's
    SGDOptimizer keeps it (other solvers keep 'constant').

    'constant' keeps learning_rate_init; 'invscaling' sets it to
    learning_rate_init / (t + 1)**power_t after each epoch (t: samples seen);
    'adaptive' divides it by 5 each time training stalls, until it falls to 1e-6.
    """

    def __init__(self, kind: str, learning_rate_init: float, power_t: float):
        self.kind = kind
        self.learning_rate_init = float(learning_rate_init)
        self.power_t = power_t
        self.learning_rate = self.learning_rate_init

    def iteration_ends(self, samples_seen: int) -> None:
        """Called after each epoch."""
        if self.kind == "invscaling":
            self.learning_rate = self.learning_rate_init / (samples_seen + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose: bool) -> bool:
        """Training stalled: True to stop, False when 'adaptive' lowered the rate instead."""
        if self.kind == "adaptive" and self.learning_rate > _MIN_ADAPTIVE_LR:
            self.learning_rate /= 5.0
            if verbose:
                print(f"{msg} Setting learning rate to {self.learning_rate:f}")
            return False
        if verbose:
            print(f"{msg} Stopping.")
        return True


class Stopping:
    """scikit-learn's convergence rule: the epochs in a row without an improvement
    of more than tol, on the training loss, or (early stopping) on the
    validation score, whose best weights it keeps.

    The figures carry over between partial_fit calls and warm starts.
    """

    def __init__(self, on_validation: bool):
        self.on_validation = on_validation
        self.count = 0
        self.best_loss = None if on_validation else np.inf
        self.best_score = None
        self.best_theta = None

    def update(self, loss: float, score: float | None, theta: np.ndarray, tol: float) -> None:
        """Record one epoch: its training loss, validation score (or None) and θ."""
        if self.best_loss is None and not self.on_validation:
            self.best_loss = np.inf
        if score is not None:
            if self.best_score is None:
                self.best_score = -np.inf
            improved = score > self.best_score
            if self.on_validation:
                self.count = self.count + 1 if score < self.best_score + tol else 0
                if improved:
                    self.best_theta = theta.copy()
            if improved:
                self.best_score = score
        if not self.on_validation:
            self.count = self.count + 1 if loss > self.best_loss - tol else 0
            self.best_loss = min(self.best_loss, loss)

    def stalled(self, patience) -> bool:
        return self.count > patience


class EstimatorRun(Policy):
    """One stochastic fit of an estimator, as the trainer runs it
    (`cbackprop.trainer`): the session it trains, its History, and
    scikit-learn's epoch as policy hooks: `epoch_start` (the schedule's
    learning rate, the rollback point), `epoch_end` (curves, validation,
    stopping, schedule, callbacks, max_iter: True ends the run), `diverged`
    (what a non-finite epoch leaves, or the ValueError fit raises) and
    `finish` (health_, the best weights of early stopping). `fit` runs one
    alone, `cbackprop.model_selection.fit_bank` several as a bank."""

    def __init__(self, session):
        self.session = session
        self.history = History()
        self.done = False           # finished: converged, stopped or at max_iter

    def diverged(self, error) -> None:
        raise error

    def finish(self) -> None:
        pass


class _BaseMLP(BaseEstimator):
    """Shared fit / predict machinery; subclasses define targets and scores."""

    # ---- parameters -------------------------------------------------------

    def _check_params(self):
        """Check every hyper-parameter; return the hidden layers and the dtype."""
        self._validate_params()     # scikit-learn's constraints (InvalidParameterError)
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = [hidden]
        try:
            hidden = list(hidden)
        except TypeError:
            raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, "
                            f"got {self.hidden_layer_sizes!r}") from None
        hidden = tuple(V.check_int(h, "hidden_layer_sizes[i]", 1) for h in hidden)

        act = self.activation
        acts = [act] * len(hidden) if isinstance(act, str) else act
        if not isinstance(acts, (list, tuple)):
            raise TypeError(f"activation must be a name or a list of names, got {act!r}")
        if len(acts) != len(hidden):
            raise ValueError(f"activation has {len(acts)} names but there are {len(hidden)} "
                             "hidden layers: give one name per hidden layer")
        acts = tuple(_SKLEARN_ALIASES.get(a, a)
                     for a in (V.check_name(a, "activation", _ACTIVATIONS) for a in acts))
        rates = self.dropout
        if isinstance(rates, numbers.Real) and not isinstance(rates, bool):
            rates = [rates] * len(hidden)
        if not isinstance(rates, (list, tuple)):
            raise TypeError(f"dropout must be a rate or a list of rates, got {self.dropout!r}")
        if len(rates) != len(hidden):
            raise ValueError(f"dropout has {len(rates)} rates but there are {len(hidden)} "
                             "hidden layers: give one rate per hidden layer")
        rates = tuple(V.check_real(r, "dropout", 0, 1, high_open=True) for r in rates)

        for name, choices in _NAMED_PARAMETERS.items():
            V.check_name(getattr(self, name), name, choices)
        for name, interval in _real_intervals(self._parameter_constraints).items():
            if name != "dropout":         # a rate or a list of rates, checked above
                V.check_real(getattr(self, name), name, **interval)
        for name, least in _INT_PARAMETERS.items():
            V.check_int(getattr(self, name), name, least)
        for name in _BOOL_PARAMETERS:
            _check_bool(getattr(self, name), name)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if isinstance(self.batch_size, str):
                raise ValueError(f"batch_size must be 'auto' or an int >= 1, "
                                 f"got {self.batch_size!r}")
            V.check_int(self.batch_size, "batch_size", 1)
        if self.n_iter_no_change != np.inf:
            V.check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"verbose must be a bool or an int, got {self.verbose!r}")
        if self.callbacks is not None:
            if not isinstance(self.callbacks, (list, tuple)):
                raise TypeError(f"callbacks must be a list of callables, got {self.callbacks!r}")
            for cb in self.callbacks:
                if not callable(cb):
                    raise TypeError(f"callbacks must be callables, got {cb!r}")
        if self.health and self.solver == "lbfgs":
            raise ValueError("health=True measures minibatch steps, and solver='lbfgs' takes "
                             "none: use a stochastic solver ('sgd', 'adam', …) to see them")
        if self.checkpoint is not None:
            if self.solver == "lbfgs":
                raise ValueError("checkpoint saves the epochs of a stochastic solver, and "
                                 "solver='lbfgs' runs inside scipy.optimize: use 'sgd' or "
                                 "'adam' to checkpoint, or pickle the fitted estimator")
            if not (isinstance(self.random_state, numbers.Integral)
                    and not isinstance(self.random_state, bool)):
                raise ValueError("checkpoint needs an int random_state, so that fitting "
                                 "again splits and starts the data as the checkpointed run "
                                 f"did; got random_state={self.random_state!r}")
        dtype = None if self.dtype is None else V.check_dtype(self.dtype)
        return tuple(zip(hidden, acts, rates, strict=True)), dtype

    # ---- fitted state -------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True     # CSR/CSC X, never densified
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_net")

    @property
    def network_(self) -> Network:
        """Network: the fitted network itself (not a copy): save it, trace it, export
        it to ONNX or torch. Its outputs are this estimator's predict_proba (classifier)
        or predictions (regressor)."""
        if not hasattr(self, "_net"):
            raise AttributeError("network_ exists once the estimator is fitted")
        return self._net

    @property
    def coefs_(self) -> list[np.ndarray]:
        """list of ndarray: weight matrix of each layer, shape (n_in, n_out).

        Views into the network's flat parameter vector: writing to them
        changes the model. Assigning a list of arrays of the fitted shapes
        copies them into θ (as scikit-learn's attribute can be replaced).
        """
        if not hasattr(self, "_net"):
            if "_coefs_before_fit" in self.__dict__:
                return self._coefs_before_fit
            raise AttributeError("coefs_ exists once the estimator is fitted")
        return [W for W, _ in self._net.params]

    @coefs_.setter
    def coefs_(self, arrays) -> None:
        self._assign_params(arrays, 0, "coefs_")

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """list of ndarray: bias vector of each layer (views into the network's theta).

        Assigning a list of arrays of the fitted shapes copies them into θ.
        """
        if not hasattr(self, "_net"):
            if "_intercepts_before_fit" in self.__dict__:
                return self._intercepts_before_fit
            raise AttributeError("intercepts_ exists once the estimator is fitted")
        return [b for _, b in self._net.params]

    @intercepts_.setter
    def intercepts_(self, arrays) -> None:
        self._assign_params(arrays, 1, "intercepts_")

    def _assign_params(self, arrays, which: int, name: str) -> None:
        """Copy a list of arrays into the W (which=0) or b (which=1) views of θ, all
        checked first, so a bad assignment leaves the model unchanged."""
        if not hasattr(self, "_net"):
            # Before fit (as scikit-learn's tests set them): kept as given, and copied
            # into the network that partial_fit or a warm start builds (checked there).
            self.__dict__[f"_{name[:-1]}_before_fit"] = (
                arrays if isinstance(arrays, list) else list(arrays))
            return
        targets = [pair[which] for pair in self._net.params]
        expected = [t.shape for t in targets]
        if isinstance(arrays, np.ndarray) and arrays.dtype != object:
            arrays = list(arrays)
        try:
            arrays = [np.asarray(a) for a in arrays]
        except TypeError:
            raise TypeError(f"{name} must be a list of arrays of shapes {expected}, "
                            f"got {type(arrays).__name__}") from None
        given = [a.shape for a in arrays]
        if given != expected:
            raise ValueError(f"{name} must be a list of arrays of shapes {expected}, "
                             f"got shapes {given}")
        for i, a in enumerate(arrays):
            if not (np.issubdtype(a.dtype, np.number) and not np.iscomplexobj(a)):
                raise TypeError(f"{name}[{i}] must be real numbers, got dtype {a.dtype}")
            if not np.isfinite(a).all():
                raise ValueError(f"{name}[{i}] holds NaN or infinite values")
        with self._net.params_lock.write():
            for target, a in zip(targets, arrays, strict=True):
                target[...] = a

    def _initial_params(self, n_features, n_outputs, hidden, rs):
        """scikit-learn's initial (W, b) per layer, drawn from rs in its order: Glorot
        uniform, bound √(6/(fan_in + fan_out)) (√(2/…) for a logistic layer), biases
        too. The output layer takes the bound of the last hidden activation."""
        sizes = [n_features] + [units for units, _, _ in hidden] + [n_outputs]
        acts = [act for _, act, _ in hidden]
        if acts:
            acts.append(acts[-1])
        else:   # no hidden layer: scikit-learn still uses `activation`
            act = self.activation if isinstance(self.activation, str) else "relu"
            acts.append(_SKLEARN_ALIASES.get(act, act))
        params = []
        for fan_in, fan_out, act in zip(sizes[:-1], sizes[1:], acts, strict=True):
            bound = np.sqrt((2.0 if act == "sigmoid" else 6.0) / (fan_in + fan_out))
            params.append((rs.uniform(-bound, bound, (fan_in, fan_out)),
                           rs.uniform(-bound, bound, fan_out)))
        return params

    def _initialize(self, n_features, n_outputs, hidden, dtype, seed):
        """Build a fresh network and reset every fitted attribute."""
        out_act, loss = self._output_layer()
        layers = [Dense(units, act, dropout=rate) for units, act, rate in hidden]
        layers.append(Dense(n_outputs, out_act))
        self._net = Network(n_features, layers, loss=loss, dtype=dtype, seed=seed)
        # Network objective = _scale × scikit-learn's objective (module docstring).
        self._scale = {"cross_entropy": 1.0, "binary_cross_entropy": 1.0 / n_outputs,
                       "mse": 2.0 / n_outputs, "poisson": 1.0 / n_outputs}[loss]
        self._hidden = hidden
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(hidden) + 2
        self.out_activation_ = "exp" if loss == "poisson" else _OUT_NAMES[out_act]
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._stopping = Stopping(on_validation=self.early_stopping)
        self.best_loss_ = self._stopping.best_loss
        self.validation_scores_ = None
        self.best_validation_score_ = None
        self.validation_loss_curve_ = None
        self.early_stopped_ = False
        self.health_ = []
        self._optimizer = None

    # ---- fit ------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, X_val, y_val, sample_weight_val, incremental):
        if incremental and self.checkpoint is not None:
            raise ValueError("checkpoint is for fit: partial_fit calls are a loop of your "
                             "own, so save the estimator between them (pickle, or "
                             "est.network_.save) and set checkpoint=None")
        resumable = not hasattr(self, "_net") or not (self.warm_start or incremental)
        X, Y, sw, val = self._prepare_fit(X, y, sample_weight, X_val, y_val,
                                          sample_weight_val, incremental)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sw)
        else:
            self._fit_stochastic(X, Y, sw, val, incremental, resumable)
        return self

    def _prepare_fit(self, X, y, sample_weight, X_val, y_val, sample_weight_val, incremental):
        """Everything a fit does before training: checks, targets, the initial
        network; returns the training (X, Y, sample weights) and the validation
        data (or None)."""
        hidden, dtype = self._check_params()
        first_pass = not hasattr(self, "_net") or (not self.warm_start and not incremental)
        if not first_pass:
            dtype = self._net.dtype
        X, y = self._validate_xy(X, y, reset=first_pass, dtype=dtype)
        y, Y = self._encode_targets(y, incremental)
        sw = self._sample_weight(sample_weight, X, y, incremental)
        rs = check_random_state(self.random_state)

        if not first_pass:
            if Y.shape[1] != self.n_outputs_:
                raise ValueError(f"y has {Y.shape[1]} outputs, but the fitted network has "
                                 f"{self.n_outputs_}")
            if hidden != self._hidden:
                raise ValueError("warm_start and partial_fit need the fitted "
                                 "hidden_layer_sizes, activation and dropout; set "
                                 "warm_start=False to refit from scratch")
        # X already has the network's dtype (validate_data converted it).
        Y = Y.astype(X.dtype, copy=False)
        if sw is not None:
            sw = sw.astype(X.dtype, copy=False)
        # rs is drawn in scikit-learn's order (initial weights, then the validation split),
        # so a random_state gives scikit-learn's initial weights and split.
        if first_pass:
            initial = self._initial_params(X.shape[1], Y.shape[1], hidden, rs)
        val = train = None
        if self.solver != "lbfgs":
            val, train = self._validation_set(X, y, Y, sw, X_val, y_val, sample_weight_val,
                                              incremental, rs)
        if first_pass:
            seed = int(rs.randint(np.iinfo(np.int32).max))   # shuffling and dropout stream
            self._initialize(X.shape[1], Y.shape[1], hidden, X.dtype, seed)
            for (W, b), (W0, b0) in zip(self._net.params, initial, strict=True):
                W[...] = W0
                b[...] = b0
            # coefs_ / intercepts_ assigned before the first partial_fit (or a warm start)
            # are its starting point, as in scikit-learn.
            for name in ("coefs_", "intercepts_"):
                given = self.__dict__.pop(f"_{name[:-1]}_before_fit", None)
                if given is not None and (incremental or self.warm_start):
                    setattr(self, name, given)
        if train is not None:
            X, Y, sw = train
        return X, Y, sw, val

    def _validate_xy(self, X, y, reset, dtype):
        V.check_table_columns(X)
        X, y = validate_data(self, X, y, multi_output=True, reset=reset,
                             accept_sparse=_SPARSE,
                             dtype=(np.float64, np.float32) if dtype is None else dtype,
                             **self._y_validation)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _stochastic_solver(self) -> bool:
        """partial_fit exists only for the stochastic solvers (not 'lbfgs')."""
        if self.solver == "lbfgs":
            raise AttributeError("partial_fit is only available for the stochastic solvers, "
                                 "not 'lbfgs'")
        return True

    def _sample_weight(self, sample_weight, X, y, incremental):
        if sample_weight is None:
            return None
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        if not sw.sum() > 0:
            raise ValueError("sample_weight must have a positive sum")
        return sw

    def _validation_set(self, X, y, Y, sw, X_val, y_val, sample_weight_val, incremental, rs):
        """((X_val, y_val, Y_val, w_val) or None, (X, Y, w) left for training when the
        validation set is split off for early stopping, else None)."""
        if (X_val is None) != (y_val is None):
            raise ValueError("pass both X_val and y_val, or neither")
        dtype = X.dtype
        if X_val is not None:
            Xv, yv = validate_data(self, X_val, y_val, reset=False, multi_output=True,
                                   accept_sparse=_SPARSE, dtype=dtype, **self._y_validation)
            if yv.ndim == 2 and yv.shape[1] == 1:
                yv = column_or_1d(yv, warn=True)
            yv, Yv = self._encode_targets(yv, incremental=True)
            wv = None
            if sample_weight_val is not None:
                wv = _check_sample_weight(sample_weight_val, Xv, dtype=dtype,
                                          ensure_non_negative=True)
            return (Xv, yv, Yv.astype(dtype, copy=False), wv), None
        if not self.early_stopping:
            return None, None
        if incremental:
            raise ValueError("partial_fit does not support early_stopping=True without "
                             "explicit validation data: pass X_val and y_val")
        if self.validation_fraction == 0:
            raise ValueError("early_stopping needs validation_fraction > 0 (or X_val, y_val)")
        # Split row indices as scikit-learn splits the rows: same rs, and stratified only
        # for a classifier with one output column (binary y).
        # On the label-binarized column, as scikit-learn does (the same split; its message
        # names the classes as scikit-learn's does: ['True']).
        stratify = Y.astype(bool) if self._stratify and Y.shape[1] == 1 else None
        train, test = train_test_split(np.arange(X.shape[0]), random_state=rs,
                                       test_size=self.validation_fraction, stratify=stratify)
        if test.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        w_train, w_test = (None, None) if sw is None else (sw[train], sw[test])
        return (X[test], y[test], Y[test], w_test), (X[train], Y[train], w_train)

    def _make_optimizer(self):
        """The solver as a cbackprop optimizer, stepping on scikit-learn's objective."""
        c, lr = self._scale, self.learning_rate_init
        betas = (self.beta_1, self.beta_2)
        if self.solver == "sgd":
            nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
            return SGDVelocity(lr=lr / c, momentum=self.momentum, nesterov=nesterov)
        if self.solver == "adam":
            return Adam(lr=lr, betas=betas, eps=self.epsilon * c)
        if self.solver == "adamw":
            return AdamW(lr=lr, betas=betas, eps=self.epsilon * c, weight_decay=self.weight_decay)
        return RMSprop(lr=lr, alpha=self.beta_2, eps=self.epsilon * c)

    def _start_stochastic(self, X, sw, val, incremental):
        """Set up a stochastic fit: the optimizer, the schedule, the L2 strength
        and the validation figures; returns (batch size, validation session or
        None, whether early stopping is on, the callbacks)."""
        net, c = self._net, self._scale
        n = X.shape[0]
        sgd = self.solver == "sgd"
        if self._optimizer is None or not incremental:
            self._optimizer = self._make_optimizer()
            self._schedule = LearningRateSchedule(self.learning_rate if sgd else "constant",
                                                  self.learning_rate_init, self.power_t)
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", stacklevel=4)
            batch_size = min(self.batch_size, n)
        # alpha/(2S)·‖W‖² per batch of weight S, times c (module docstring): the
        # training session scales it by each batch's own S (alpha_per_weight); the
        # validation figures use a full batch's S.
        mean_w = 1.0 if sw is None else float(sw.mean())
        net.alpha = c * self.alpha / (batch_size * mean_w)
        stopping = self._stopping
        stopping.on_validation = early_stopping = self.early_stopping and val is not None
        validation = None
        if val is not None:
            Xv, yv, Yv, wv = val
            validation = Evaluator(net, Xv, Yv, wv, names=("X_val", "y_val"))
            if self.validation_scores_ is None:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
        self.early_stopped_ = False
        return batch_size, validation, early_stopping, list(self.callbacks or [])

    def _stochastic_run(self, X, Y, sw, val, incremental) -> EstimatorRun:
        """A stochastic fit of this estimator, for the trainer: its session and
        scikit-learn's epoch as policy hooks (`EstimatorRun`)."""
        net, c = self._net, self._scale
        batch_size, validation, early_stopping, callbacks = self._start_stochastic(
            X, sw, val, incremental)
        stopping, schedule, n = self._stopping, self._schedule, X.shape[0]
        # scikit-learn shuffles each epoch from the data's own order (fresh_order).
        session = TrainingSession(net, X, Y, sw, optimizer=self._optimizer,
                                  batch_size=batch_size, shuffle=self.shuffle, fresh_order=True,
                                  health=self.health)
        session.layout.alpha_per_weight = c * self.alpha
        run = EstimatorRun(session)
        first_epoch = len(self.loss_curve_)

        def epoch_start(_epoch, _members):
            if self.solver == "sgd":
                self._optimizer.lr = schedule.learning_rate / c
            session.commit()      # a diverging epoch falls back to here

        def epoch_end(_member, _epoch, logs):
            if self._end_epoch(logs, n, validation, val, stopping, schedule, incremental,
                               callbacks):
                run.done = True
            elif self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                              "reached and the optimization hasn't converged yet.",
                              ConvergenceWarning, stacklevel=6)   # at the user's fit
                run.done = True
            return run.done

        def diverged(error):
            if not (early_stopping and not incremental and stopping.best_theta is not None):
                raise ValueError(_NONFINITE + " (The model keeps the weights it "
                                 "had before this epoch.)") from error
            # scikit-learn trains on with non-finite weights (NaN scores from
            # here) and then restores the best epoch's.
            self._diverged_epochs(n, val is not None, stopping, schedule, callbacks)

        def finish():
            # Health epochs counted as loss_curve_ counts them (from 0 at the first fit).
            self.health_ += [{**r, "epoch": first_epoch + r["epoch"]}
                             for r in run.history.history.get("health", [])]
            if early_stopping and not incremental and stopping.best_theta is not None:
                net.theta[...] = stopping.best_theta

        run.epoch_start, run.epoch_end = epoch_start, epoch_end
        run.diverged, run.finish = diverged, finish
        self.n_iter_ = 0
        return run

    def _fit_stochastic(self, X, Y, sw, val, incremental, resumable=False):
        run = self._stochastic_run(X, Y, sw, val, incremental)
        options = {}
        if self.checkpoint is not None:
            if resumable:
                self._resume_checkpoint(run)
            options = dict(checkpoint=self.checkpoint, checkpoint_every=self.checkpoint_every,
                           checkpoint_metadata=lambda: self._checkpoint_state(run))
        try:
            try:
                run.session.fit(self.max_iter, policies=[run], history=run.history, **options)
            except DivergenceError as exc:
                run.diverged(exc)
            except KeyboardInterrupt:
                warnings.warn("Training interrupted by user.", stacklevel=3)
        finally:
            run.finish()

    # ---- checkpoints ------------------------------------------------------------

    def _run_params(self) -> dict:
        """The parameters that fix what a fit computes, as text (to compare runs)."""
        return {name: repr(value) for name, value in sorted(self.get_params().items())
                if name not in _RUN_NEUTRAL}

    def _checkpoint_state(self, run: EstimatorRun) -> dict:
        """This estimator's side of a checkpointed fit, as a JSON object."""
        stopping, f = self._stopping, _json_float
        curves = {name: None if getattr(self, name) is None
                  else [f(v) for v in getattr(self, name)]
                  for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_")}
        return {"estimator": type(self).__name__, "params": self._run_params(),
                "finished": run.done, "n_iter_": self.n_iter_, "t_": self.t_, **curves,
                "learning_rate": self._schedule.learning_rate,
                "early_stopped_": self.early_stopped_, "stopping_count": stopping.count,
                "best_loss": f(stopping.best_loss), "best_score": f(stopping.best_score),
                "best_theta": (None if stopping.best_theta is None
                               else [float(v) for v in stopping.best_theta])}

    def _resume_checkpoint(self, run: EstimatorRun) -> None:
        """Continue the unfinished run of this estimator (same parameters and
        data) that lies at `checkpoint`. Nothing to continue: no file, not a
        checkpoint, or an estimator's finished run (each replaced by this fit).
        FileExistsError for another unfinished run's checkpoint; ValueError for
        a damaged one. Everything is checked before anything changes."""
        path = self.checkpoint
        held = serialization.checkpoint_at(path)
        if held is None:
            return
        saved = resume(path)
        state = saved.metadata
        if (isinstance(state, dict) and state.get("estimator") in ("MLPClassifier",
                                                                    "MLPRegressor")
                and state.get("finished") is True):
            return                    # an estimator's finished run: this fit replaces it
        other = FileExistsError(f"{os.fspath(path)} holds the checkpoint of another, "
                                f"unfinished run ({held}): fit with the parameters and data "
                                "it started with to continue it, or delete it, or give this "
                                "estimator another checkpoint path")
        if not (isinstance(state, dict) and state.get("estimator") == type(self).__name__
                and state.get("params") == self._run_params()
                and saved.network.get_config() == self._net.get_config()):
            raise other
        try:
            adopted = _checked_state(state, saved, self._net.theta.size)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{os.fspath(path)} is not a valid checkpoint of this "
                             f"estimator: {exc}") from None
        if adopted is None:           # finished: this fit starts afresh over it
            return
        try:
            saved.continue_in(run.session)
        except ValueError:
            raise ValueError(f"{os.fspath(path)} holds an unfinished run of these "
                             "parameters on other data: fit on the data it started with "
                             "to continue it, or delete it to start afresh") from None
        net = self._net
        net.theta[...] = saved.network.theta
        net.rng_state[...] = saved.network.rng_state
        self._optimizer.load_state_dict(saved.optimizer.state_dict())
        run.history = saved.history
        stopping = self._stopping
        (self.n_iter_, self.t_, self.loss_curve_, self.validation_scores_,
         self.validation_loss_curve_, self._schedule.learning_rate, self.early_stopped_,
         stopping.count, stopping.best_loss, stopping.best_score,
         stopping.best_theta) = adopted
        self.best_loss_, self.best_validation_score_ = stopping.best_loss, stopping.best_score
        if self.loss_curve_:
            self.loss_ = self.loss_curve_[-1]

    def bank_key(self):
        """What fixes this estimator's pass over the data, or None.

        Unfitted estimators with equal keys, fitted on the same data, can be
        trained together as one bank of networks
        (`cbackprop.model_selection.fit_bank`): the same layer
        shapes, activations, dropout, solver kind, batch size and dtype, and,
        where they fix the row order or the early-stopping split, the same
        random_state. Everything else (alpha, learning rates, momentum, betas,
        epsilon, tol, n_iter_no_change, the schedule, max_iter, callbacks) may
        differ. None when this estimator must be fitted on its own: 'lbfgs',
        health=True (a bank measures no health), a checkpoint, no hidden layer, invalid
        parameters (its fit raises the error), a warm start of a fitted model,
        or a random_state that is not an int where it fixes the order or the
        split.
        """
        try:
            hidden, dtype = self._check_params()
        except (TypeError, ValueError):
            return None
        if (self.solver == "lbfgs" or not hidden or self.health
                or self.checkpoint is not None
                or (self.warm_start and hasattr(self, "_net"))):
            return None
        seeded = self.shuffle or self.early_stopping
        if seeded and not (isinstance(self.random_state, numbers.Integral)
                           and not isinstance(self.random_state, bool)):
            return None
        return (type(self).__name__, getattr(self, "loss", None), hidden, self.solver,
                self.batch_size, self.shuffle, self.early_stopping,
                self.validation_fraction if self.early_stopping else None,
                int(self.random_state) if seeded else None,
                repr(getattr(self, "class_weight", None)), None if dtype is None else dtype.name)

    def bank_run(self, X, y, sample_weight=None) -> EstimatorRun:
        """Prepare a fit as `fit` does (checks, initial weights, the split) and
        return it as an `EstimatorRun`, for `cbackprop.model_selection.fit_bank`
        to train with others of this `bank_key` as one bank. When the bank is
        done (`finish` called), the estimator is fitted as `fit` would leave
        it. Raises what fit would raise."""
        if self.bank_key() is None:
            raise ValueError(f"this {type(self).__name__} cannot be trained in a bank "
                             "(bank_key() is None): call fit")
        X, Y, sw, val = self._prepare_fit(X, y, sample_weight, None, None, None,
                                          incremental=False)
        return self._stochastic_run(X, Y, sw, val, incremental=False)

    def _diverged_epochs(self, n, validated, stopping, schedule, callbacks) -> None:
        """Early stopping after the loss stopped being finite: the epochs left to
        max_iter get what scikit-learn records for them (NaN loss and validation
        scores, which reset its no-improvement count), without training."""
        warnings.warn(f"Solver produced non-finite parameter weights in epoch "
                      f"{self.n_iter_ + 1}: the validation scores are NaN from there and the "
                      "weights of the best epoch are restored. The input data may contain "
                      "large values and need to be preprocessed, or the learning rate is "
                      "too high.", RuntimeWarning, stacklevel=4)
        while self.n_iter_ < self.max_iter:
            self.loss_ = np.nan
            self.n_iter_ += 1
            self.t_ += n
            self.loss_curve_.append(np.nan)
            if validated:
                self.validation_scores_.append(np.nan)
                self.validation_loss_curve_.append(np.nan)
            stopping.update(np.nan, np.nan if validated else None, self._net.theta, self.tol)
            schedule.iteration_ends(self.t_)
            logs = {"epoch": self.n_iter_, "loss": np.nan,
                    "learning_rate": schedule.learning_rate, "time": 0.0}
            if validated:
                logs.update(val_score=np.nan, val_loss=np.nan)
            if any([bool(cb(self, logs)) for cb in callbacks]):
                return
        warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                      "and the optimization hasn't converged yet.", ConvergenceWarning,
                      stacklevel=4)

    def _end_epoch(self, logs, n, validation, val, stopping, schedule, incremental,
                   callbacks) -> bool:
        """Book-keeping after one epoch, in scikit-learn's order; True to stop."""
        net, c = self._net, self._scale
        self.loss_ = logs["loss"] / c
        self.n_iter_ += 1
        self.t_ += n
        self.loss_curve_.append(self.loss_)
        shown = {"epoch": self.n_iter_, "loss": self.loss_,
                 "learning_rate": schedule.learning_rate}
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        score = None
        if validation is not None:
            Xv, yv, _, wv = val
            score = self._score_outputs(self._outputs(net.predict(Xv)), yv, wv)
            val_loss = validation.evaluate()["loss"] / c
            self.validation_scores_.append(score)
            self.validation_loss_curve_.append(val_loss)
            shown.update(val_score=score, val_loss=val_loss)
            if self.verbose:
                print(f"Validation score: {score:f}, validation loss: {val_loss:.8f}")
        stopping.update(self.loss_, score, net.theta, self.tol)
        self.best_loss_ = stopping.best_loss
        self.best_validation_score_ = stopping.best_score
        schedule.iteration_ends(self.t_)
        shown["time"] = logs["time"]
        stop = False
        for cb in callbacks:
            stop |= bool(cb(self, shown))
        if stopping.stalled(self.n_iter_no_change):
            what = "Validation score" if stopping.on_validation else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if not schedule.trigger_stopping(msg, self.verbose):
                stopping.count = 0
            else:
                self.early_stopped_ = stopping.on_validation
                if incremental:
                    # partial_fit: go back to the best weights and keep counting.
                    stopping.count = 0
                    if stopping.on_validation and stopping.best_theta is not None:
                        net.theta[...] = stopping.best_theta
                stop = True
        # scikit-learn's optimizers show the rate now in use (read by its tests).
        self._optimizer.learning_rate = schedule.learning_rate
        return stop or incremental

    @property
    def _no_improvement_count(self) -> int:
        """scikit-learn's count of epochs in a row without improvement (its tests read
        it): the stopping rule's own count."""
        stopping = self.__dict__.get("_stopping")
        return 0 if stopping is None else stopping.count

    @_no_improvement_count.setter
    def _no_improvement_count(self, value: int) -> None:
        if "_stopping" in self.__dict__:
            self._stopping.count = int(value)

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight=None, activations=None,
                         deltas=None, coef_grads=None, intercept_grads=None):
        """scikit-learn's objective and gradient at parameters packed its way (every W,
        then every b), packed the same way; coef_grads and intercept_grads, if given,
        receive the per-layer gradients as scikit-learn fills them. The network takes
        the parameters, as scikit-learn's model does."""
        net, c = self._net, self._scale
        X = np.asarray(X, dtype=net.dtype)
        Y = np.asarray(y, dtype=net.dtype)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        packed = np.asarray(packed_coef_inter, dtype=np.float64)
        shapes = [W.shape for W, _ in net.params] + [b.shape for _, b in net.params]
        pieces, at = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            pieces.append(packed[at:at + size].reshape(shape))
            at += size
        k = len(net.params)
        self.coefs_, self.intercepts_ = pieces[:k], pieces[k:]
        weight = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        kept, net.alpha = net.alpha, c * self.alpha / weight
        try:
            loss, grad = net.loss_and_grad(X, Y, sample_weight)
        finally:
            net.alpha = kept
        grads, at = [], 0          # θ's layout: W then b, layer by layer
        for W, b in net.params:
            grads.append(grad[at:at + W.size].reshape(W.shape) / c)
            grads.append(grad[at + W.size:at + W.size + b.size] / c)
            at += W.size + b.size
        for i in range(k):
            if coef_grads is not None:
                coef_grads[i] = grads[2 * i]
            if intercept_grads is not None:
                intercept_grads[i] = grads[2 * i + 1]
        flat = np.hstack([g.ravel() for g in grads[0::2] + grads[1::2]])
        return loss / c, flat.astype(np.float64)

    def _fit_lbfgs(self, X, Y, sw):
        net, c = self._net, self._scale
        net.alpha = c * self.alpha / (X.shape[0] if sw is None else float(sw.sum()))
        callbacks = list(self.callbacks or [])
        stopped_by_callback = False
        last = time.perf_counter()
        # The data is checked once; then one engine pass per evaluation.
        session = Evaluator(net, X, Y, sw)

        def loss_and_grad(x):
            net.theta[...] = x
            loss, _, grad = session.loss_and_grad()
            return loss / c, np.divide(grad, c, dtype=np.float64)

        start = net.theta.copy()
        reached = start       # θ after the last finished iteration

        def each_iteration(intermediate_result):
            nonlocal last, stopped_by_callback, reached
            reached = intermediate_result.x.copy()
            now = time.perf_counter()
            self.loss_curve_.append(float(intermediate_result.fun))
            logs = {"epoch": len(self.loss_curve_), "loss": self.loss_curve_[-1],
                    "time": now - last}
            last = now
            if self.verbose:
                print(f"Iteration {logs['epoch']}, loss = {logs['loss']:.8f}")
            if any([bool(cb(self, logs)) for cb in callbacks]):
                stopped_by_callback = True
                raise StopIteration

        self.loss_curve_ = []
        try:
            result = scipy.optimize.minimize(
                loss_and_grad, net.theta.astype(np.float64), method="L-BFGS-B", jac=True,
                callback=each_iteration,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        except KeyboardInterrupt:
            # As the stochastic solvers: keep what the finished iterations reached.
            net.theta[...] = reached
            self.n_iter_ = len(self.loss_curve_)
            if self.loss_curve_:
                self.loss_ = self.best_loss_ = self.loss_curve_[-1]
            warnings.warn("Training interrupted by user.", stacklevel=3)
            return
        found = result.x.astype(net.dtype)
        if not V.all_finite(found):
            net.theta[...] = start
            raise ValueError(_NONFINITE + " (The model keeps the weights it had before this "
                             "fit.)")
        net.theta[...] = found
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = self.best_loss_ = float(result.fun)
        if result.status != 0 and not stopped_by_callback:
            warnings.warn(
                f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                f"(status={result.status}): {result.message}. Increase the number of "
                "iterations (max_iter) or function evaluations (max_fun), or scale the data.",
                ConvergenceWarning, stacklevel=3)

    # ---- predict ----------------------------------------------------------------

    def _forward(self, X) -> np.ndarray:
        """Validated X → network outputs (n, n_outputs)."""
        V.check_table_columns(X)
        X = validate_data(self, X, reset=False, accept_sparse=_SPARSE,
                          dtype=(np.float64, np.float32))
        net = self._net
        if X.dtype == np.float64 and net.dtype == np.float32:
            # scikit-learn multiplies float64 X by the float32 weights in float64: so
            # do we (a float64 copy of the network), rather than round X to float32,
            # which costs up to ~1e-3 relative on small outputs.
            config = {**net.get_config(), "dtype": "float64"}
            with net.params_lock.read():
                theta = net.theta.astype(np.float64)
            net = Network.from_config(config)
            net.theta[...] = theta
        return self._outputs(net.predict(X))

    def _outputs(self, out: np.ndarray) -> np.ndarray:
        """The network's outputs as predictions (poisson: eᶻ of the log-link output)."""
        return out



#: scikit-learn's message for a fit whose weights stopped being finite.
_NONFINITE = ("Solver produced non-finite parameter weights. The input data may contain "
              "large values and need to be preprocessed.")

_FIT_DOC = """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Sparse X (CSR or CSC) is never densified.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
        X_val, y_val : array-like, default=None
            Explicit validation data: scored after every epoch
            (``validation_scores_``, ``validation_loss_curve_``) and used by
            ``early_stopping`` instead of splitting off ``validation_fraction``.
        sample_weight_val : array-like of shape (n_val,), default=None

        Returns
        -------
        self
        """


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by the cbackprop engine.

    A drop-in replacement for ``sklearn.neural_network.MLPClassifier``: the
    same parameters, fitted attributes and methods, with the minibatch loop
    in compiled code. Multiclass (softmax outputs), binary and multi-label
    (sigmoid outputs) targets; string and other labels.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units of each hidden layer.
    activation : str or list of str, default='relu'
        Hidden activation, or one per hidden layer: 'identity', 'logistic'
        (= 'sigmoid'), 'tanh', 'relu', 'leaky_relu', 'elu', 'softplus',
        'gelu', 'silu'.
    solver : {'adam', 'sgd', 'lbfgs', 'adamw', 'rmsprop'}, default='adam'
        'lbfgs' minimises the full-batch objective with scipy's L-BFGS-B.
        'adamw' is Adam with decoupled ``weight_decay``; 'rmsprop' uses
        ``beta_2`` as its squared-gradient decay and ``epsilon``.
    alpha : float, default=1e-4
        L2 penalty: each batch of total sample weight S adds
        alpha/(2S)·Σ‖W‖² (weights only), as in scikit-learn.
    batch_size : int or 'auto', default='auto'
        'auto' is min(200, n_samples).
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule for solver='sgd', updated after every epoch.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
        Exponent of 'invscaling': lr = learning_rate_init / (t_ + 1)**power_t.
    max_iter : int, default=200
        Epochs (stochastic solvers) or iterations ('lbfgs').
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
        Fixes the initial weights, the shuffling and the validation split.
    tol : float, default=1e-4
    verbose : bool or int, default=False
    warm_start : bool, default=False
    momentum : float in [0, 1), default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Stop when the validation score has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, then restore the weights of the best epoch.
    validation_fraction : float, default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
    epsilon : float, default=1e-8
    n_iter_no_change : int or np.inf, default=10
    max_fun : int, default=15000
        Most loss evaluations for 'lbfgs'.
    weight_decay : float, default=0.01
        Decoupled weight decay of solver='adamw' (ignored otherwise).
    dropout : float or list of float, default=0.0
        Inverted dropout rate of every hidden layer, or one rate per hidden
        layer: while training, each unit's output is zeroed with this
        probability (seeded by ``random_state``); off in predict and in the
        validation figures.
    class_weight : dict, 'balanced' or None, default=None
        Weights per class, multiplying ``sample_weight`` (single-output y).
    callbacks : list of callables, default=None
        Each is called as ``callback(estimator, logs)`` after every epoch
        ('lbfgs': every iteration) with ``logs`` holding "epoch", "loss",
        "learning_rate", "time" and, with validation data, "val_score" and
        "val_loss"; one that returns True stops training.
    dtype : {None, 'float32', 'float64'}, default=None
        Training precision. None keeps float32 input in float32 and turns
        anything else into float64 (scikit-learn's rule).
    health : bool, default=False
        Measure each layer's training health (gradient norm, update ratio,
        dead and saturated units) as `cbackprop.Network.fit(health=True)`
        does, into ``health_``. Not with solver='lbfgs'.
    checkpoint : str or path, default=None
        Write the fit's run there every ``checkpoint_every`` epochs and when
        it ends (finished, or Ctrl-C: as of the last chunk), atomically. A
        later ``fit`` of an estimator with the same parameters on the same
        data continues an unfinished run found there, and ends bitwise where
        the uninterrupted fit would (n_threads=1); a finished run is
        replaced, another unfinished run's checkpoint is refused
        (FileExistsError). Needs an int random_state; not with 'lbfgs' or
        partial_fit. `cbackprop.GridSearchCV` refuses it (one file for many
        fits): checkpoint the refit instead.
    checkpoint_every : int, default=1

    Attributes
    ----------
    classes_ : ndarray or list of ndarray
    coefs_, intercepts_ : list of ndarray
        Views into the network's flat parameter vector.
    network_ : Network
        The fitted network (save, trace, to_onnx, to_torch).
    loss_ : float
        Last epoch's mean training loss, on scikit-learn's scale.
    loss_curve_ : list of float
    best_loss_ : float or None
    validation_scores_ : list of float or None
        Accuracy on the validation data after each epoch.
    validation_loss_curve_ : list of float or None
        Loss on the validation data after each epoch (same penalty term as
        ``loss_curve_``).
    best_validation_score_ : float or None
    early_stopped_ : bool
        True when the last fit stopped because the validation score stalled.
    t_ : int
        Training samples seen.
    health_ : list of dict
        With health=True: one record per layer per epoch (fields as in
        `cbackprop.History`'s "health"; "epoch" counts as ``loss_curve_``).
    n_iter_, n_layers_, n_outputs_, out_activation_, n_features_in_, feature_names_in_

    See Also
    --------
    MLPRegressor, cbackprop.Network
    """

    _parameter_constraints: dict = _constraints(regressor=False)
    _y_validation: dict = {}
    _stratify = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=1e-3, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 weight_decay=0.01, dropout=0.0, class_weight=None, callbacks=None,
                 dtype=None, health=False, checkpoint=None, checkpoint_every=1):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.class_weight = class_weight
        self.callbacks = callbacks
        self.dtype = dtype
        self.health = health
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        return self._fit(X, y, sample_weight, X_val, y_val, sample_weight_val,
                         incremental=False)

    fit.__doc__ = _FIT_DOC

    @available_if(_BaseMLP._stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None, classes=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """One epoch over (X, y), continuing from the current weights.

        Parameters
        ----------
        X, y, sample_weight : as in `fit`
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole data: required on the first call.
        X_val, y_val, sample_weight_val : array-like, default=None
            Validation data, scored after the epoch. With
            ``early_stopping=True`` (which partial_fit supports only with
            validation data), the weights of the best call so far are kept;
            once the score has not improved for ``n_iter_no_change`` calls,
            they are restored and ``early_stopped_`` is set.

        Returns
        -------
        self
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(np.asarray(classes))
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to "
                             f"partial_fit: {self.classes_}")
        return self._fit(X, y, sample_weight, X_val, y_val, sample_weight_val, incremental=True)

    def _output_layer(self):
        if self._label_binarizer.y_type_ == "multiclass":
            return "softmax", "cross_entropy"
        return "sigmoid", "binary_cross_entropy"

    def _encode_targets(self, y, incremental):
        """(labels, indicator matrix Y); a new fit refits the label binarizer."""
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            seen = unique_labels(y)
            if self.warm_start and not incremental:
                if set(seen.tolist()) != set(self.classes_.tolist()):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously "
                                     f"got {self.classes_}, `y` has {seen}")
            elif len(np.setdiff1d(seen, self.classes_)):
                raise ValueError(f"`y` has classes not in classes_ {self.classes_}: "
                                 f"{np.setdiff1d(seen, self.classes_)}")
        return y, self._label_binarizer.transform(y)

    def _sample_weight(self, sample_weight, X, y, incremental):
        sw = super()._sample_weight(sample_weight, X, y, incremental)
        if self.class_weight is None:
            return sw
        if y.ndim != 1:
            raise ValueError("class_weight needs single-output y (not multi-label); "
                             "use sample_weight instead")
        if isinstance(self.class_weight, str):
            V.check_name(self.class_weight, "class_weight", ("balanced",))
            if incremental:
                raise ValueError("class_weight='balanced' is not supported for partial_fit "
                                 "(it needs every label at once): pass a dict computed with "
                                 "sklearn.utils.class_weight.compute_class_weight")
            per_class = compute_class_weight("balanced", classes=self.classes_, y=y)
        elif isinstance(self.class_weight, dict):
            unknown = [c for c in self.class_weight if c not in set(self.classes_.tolist())]
            if unknown:
                raise ValueError(f"class_weight has labels {unknown} not in "
                                 f"classes_ {self.classes_}")
            per_class = np.array([V.check_real(self.class_weight.get(c, 1.0),
                                               f"class_weight[{c!r}]", 0)
                                  for c in self.classes_.tolist()])
        else:
            raise TypeError(f"class_weight must be None, 'balanced' or a dict, "
                            f"got {self.class_weight!r}")
        w = per_class[np.searchsorted(self.classes_, y)]
        w = w if sw is None else w * sw
        if not w.sum() > 0:
            raise ValueError("sample_weight × class_weight must have a positive sum")
        return w

    def _labels(self, out: np.ndarray):
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    def _score_outputs(self, out, y, sample_weight) -> float:
        if not V.all_finite(out):
            return np.nan
        return float(accuracy_score(y, self._labels(out), sample_weight=sample_weight))

    def predict(self, X):
        """Predicted labels, shape (n_samples,) (multi-label: (n_samples, n_classes))."""
        check_is_fitted(self)
        return self._labels(self._forward(X))

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), in the order of classes_."""
        check_is_fitted(self)
        out = self._forward(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.column_stack([1 - p, p])
        return out

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by the cbackprop engine.

    A drop-in replacement for ``sklearn.neural_network.MLPRegressor``, for
    one or several targets.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        'squared_error': identity outputs, ½·mean over rows of Σ over outputs
        of (ŷ − y)². 'poisson': exponential outputs ŷ = eᶻ (log link), the half
        Poisson deviance Σ over outputs of the mean over rows of
        y·log(y/ŷ) − y + ŷ (targets y ≥ 0). Both plus the L2 term.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, \
warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction, \
beta_1, beta_2, epsilon, n_iter_no_change, max_fun, weight_decay, dropout, callbacks, dtype, \
health, checkpoint, checkpoint_every
        As in `MLPClassifier`; the validation score is R².

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        Views into the network's flat parameter vector.
    network_ : Network
        The fitted network (save, trace, to_onnx, to_torch).
    loss_, loss_curve_, best_loss_, validation_scores_, validation_loss_curve_, \
best_validation_score_, early_stopped_, t_, n_iter_, n_layers_, n_outputs_, \
out_activation_, n_features_in_, feature_names_in_, health_
        As in `MLPClassifier`.

    See Also
    --------
    MLPClassifier, cbackprop.Network
    """

    _parameter_constraints: dict = _constraints(regressor=True)
    _y_validation: dict = {"y_numeric": True}
    _stratify = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=1e-3, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 weight_decay=0.01, dropout=0.0, callbacks=None, dtype=None, health=False,
                 checkpoint=None, checkpoint_every=1):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.callbacks = callbacks
        self.dtype = dtype
        self.health = health
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every

    def _check_params(self):
        result = super()._check_params()
        V.check_name(self.loss, "loss", ("squared_error", "poisson"))
        return result

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        return self._fit(X, y, sample_weight, X_val, y_val, sample_weight_val,
                         incremental=False)

    fit.__doc__ = _FIT_DOC

    @available_if(_BaseMLP._stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """One epoch over (X, y), continuing from the current weights.

        Parameters are those of `fit`; see `MLPClassifier.partial_fit` for
        early stopping with explicit validation data.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, X_val, y_val, sample_weight_val, incremental=True)

    def _output_layer(self):
        # poisson: the identity output is log μ, the loss's log link gives μ = eᶻ
        return "identity", "poisson" if self.loss == "poisson" else "mse"

    def _encode_targets(self, y, incremental):
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        return y, y.reshape(y.shape[0], -1)

    def _outputs(self, out: np.ndarray) -> np.ndarray:
        if self.loss == "poisson":
            return np.exp(out, out=out)
        return out

    def _score_outputs(self, out, y, sample_weight) -> float:
        if not V.all_finite(out):
            return np.nan
        return float(r2_score(y, out.ravel() if out.shape[1] == 1 else out,
                              sample_weight=sample_weight))

    def predict(self, X):
        """Predicted values, shape (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
