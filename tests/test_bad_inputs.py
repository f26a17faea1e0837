"""Bad input gets a clear error, and nothing changes.

Every case makes one public call that must fail. It asserts the exception
type, a fragment of the message, and that afterwards θ, the optimizer state
and step count, the shuffling stream and every array handed to the call are
bitwise unchanged (values, dtype, strides and flags).

Cases whose call reaches arrays a kernel would trust (fit, predict, evaluate,
loss_and_grad, trace, θ assignment, load) run in one child process, so a
segfault there is a test failure rather than the end of the test session.
The child prints one JSON line per case; the case it was running when it died
is named in the failure.
"""

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import FunctionType

import numpy as np
import pytest
import scipy.sparse

import cbackprop as cb

try:
    from sklearn.exceptions import ConvergenceWarning, NotFittedError

    from cbackprop import MLPClassifier, MLPRegressor
except ImportError:          # scikit-learn is optional: the estimator cases skip
    MLPClassifier = MLPRegressor = NotFittedError = ConvergenceWarning = None

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable   # ctx -> (callable, args, kwargs)
    exc: type
    match: str
    risky: bool = True


class Context:
    """Three trained networks (classifier, regressor, multi-label), their
    optimizers (with non-zero state), two fitted scikit-learn estimators and
    valid inputs."""

    def __init__(self, tmp):
        rng = np.random.default_rng(0)
        self.tmp = tmp
        self.X = rng.normal(size=(20, 4))
        self.y = rng.integers(0, 3, 20)
        self.net = cb.Network(4, [cb.Dense(5, "tanh"), cb.Dense(3, "softmax")], seed=0)
        self.opt = cb.SGD(lr=0.1, momentum=0.9)
        self.net.fit(self.X, self.y, optimizer=self.opt, epochs=1, batch_size=8)
        self.yr = rng.normal(size=(20, 2))
        self.reg = cb.Network(4, [cb.Dense(2)], loss="mse", dtype="float64", seed=1)
        self.reg_opt = cb.Adam(lr=0.01)
        self.reg.fit(self.X, self.yr, optimizer=self.reg_opt, epochs=1, batch_size=8)
        self.yb = (rng.uniform(size=(20, 2)) > 0.5).astype(float)
        self.bce = cb.Network(4, [cb.Dense(2, "sigmoid")], seed=2)
        self.clf = self.est_reg = None
        if MLPClassifier is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                params = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
                self.clf = MLPClassifier(**params).fit(self.X, self.y)
                self.est_reg = MLPRegressor(**params).fit(self.X, self.yr[:, 0])

    def models(self):
        """(network, optimizer) pairs, looked up now: replacing one is a change too."""
        out = [(self.net, self.opt), (self.reg, self.reg_opt), (self.bce, None)]
        for est in (self.clf, self.est_reg):
            if est is not None:
                out.append((est._net, est._optimizer))
        return out

    def snapshot(self):
        out = []
        for net, opt in self.models():
            out.append((net.theta.copy(), net.theta.ctypes.data, net.rng_state.copy(),
                        None if opt is None else (opt.state.copy(), opt.t)))
        for est in (self.clf, self.est_reg):
            if est is not None:
                out.append((np.array(est.loss_curve_), est.n_iter_, np.zeros(0), None))
        return out

    def with_value(self, arr, index, value):
        arr = np.array(arr, dtype=float)
        arr[index] = value
        return arr


def _arrays(obj, found):
    """Every ndarray inside args/kwargs (tuples, lists, dicts)."""
    if isinstance(obj, np.ndarray):
        found.append(obj)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _arrays(item, found)
    elif isinstance(obj, dict):
        for item in obj.values():
            _arrays(item, found)
    return found


def _describe(arr):
    return (arr.dtype.str, arr.shape, arr.strides, arr.flags.writeable,
            arr.flags.c_contiguous, arr.flags.f_contiguous)


def run_case(case: Case, ctx: Context) -> str | None:
    """None when the case behaves, else what went wrong."""
    func, args, kwargs = case.make(ctx)
    arrays = _arrays((args, kwargs), [])
    before_arrays = [(a.copy(), _describe(a)) for a in arrays]
    before = ctx.snapshot()
    try:
        func(*args, **kwargs)
    except case.exc as exc:
        if case.match not in str(exc):
            return f"message {str(exc)!r} lacks {case.match!r}"
    except BaseException as exc:  # noqa: BLE001 - any other exception is the failure
        return f"raised {type(exc).__name__}: {exc}, expected {case.exc.__name__}"
    else:
        return f"did not raise {case.exc.__name__}"
    after = ctx.snapshot()
    for (theta, address, rng, opt), (theta2, address2, rng2, opt2) in zip(before, after,
                                                                          strict=True):
        if address != address2 or theta.tobytes() != theta2.tobytes():
            return "theta changed"
        if rng.tobytes() != rng2.tobytes():
            return "the shuffling stream changed"
        if opt is not None and (opt[0].tobytes() != opt2[0].tobytes() or opt[1] != opt2[1]):
            return "the optimizer state changed"
    for arr, (copy, described) in zip(arrays, before_arrays, strict=True):
        if _describe(arr) != described or arr.tobytes() != copy.tobytes():
            return "an input array changed"
    return None


# ---- the cases ------------------------------------------------------------

def net_call(method, *args, net="net", **kwargs):
    """A case maker calling ctx.<net>.<method>(*args, **kwargs), where each
    argument that is a function is first called with ctx (classes are passed as they are)."""
    def make(c):
        real = [a(c) if isinstance(a, FunctionType) else a for a in args]
        kw = {k: (v(c) if isinstance(v, FunctionType) else v) for k, v in kwargs.items()}
        return getattr(getattr(c, net), method), real, kw
    return make


def damaged_csr(X, which):
    """A CSR matrix of X whose index arrays were changed afterwards (out of range)."""
    m = scipy.sparse.csr_matrix(X)
    getattr(m, which)[1] = 10**6
    return m


def fit(X=lambda c: c.X, y=lambda c: c.y, **kwargs):
    kwargs.setdefault("optimizer", lambda c: c.opt)
    return net_call("fit", X, y, **kwargs)


def ctor(func, *args, **kwargs):
    return lambda c: (func, args, kwargs)


def crafted_file(c, blob: bytes):
    path = os.path.join(c.tmp, "crafted.safetensors")
    with open(path, "wb") as f:
        f.write(blob)
    return cb.load, [path], {}


def _fit_with_bad_lr(c):
    """lr made invalid after the optimizer was built (restored afterwards)."""
    def call():
        c.opt.lr = -1.0
        try:
            c.net.fit(c.X, c.y, optimizer=c.opt)
        finally:
            c.opt.lr = 0.1
    return call, [], {}


def _other_state(c):
    opt = cb.SGD(lr=0.1, momentum=0.9)
    opt.state = np.zeros(7, dtype=np.float32)
    return opt


NAN, INF = float("nan"), float("inf")

CASES = [
    # ---- construction: specs and hyper-parameters (in process) ----
    Case("net-n_inputs-0", ctor(cb.Network, 0, [cb.Dense(2)]), ValueError,
         "n_inputs must be >= 1", False),
    Case("net-n_inputs-float", ctor(cb.Network, 2.5, [cb.Dense(2)]), TypeError,
         "n_inputs must be an integer", False),
    Case("net-n_inputs-bool", ctor(cb.Network, True, [cb.Dense(2)]), TypeError,
         "n_inputs must be an integer", False),
    Case("net-layers-empty", ctor(cb.Network, 3, []), TypeError, "non-empty list", False),
    Case("net-layers-not-dense", ctor(cb.Network, 3, [object()]), TypeError,
         "layers[0] must be a cb.Dense", False),
    Case("net-layers-single", ctor(cb.Network, 3, cb.Dense(2)), TypeError,
         "non-empty list", False),
    Case("dense-units-0", ctor(cb.Dense, 0), ValueError, "Dense units must be >= 1", False),
    Case("dense-units-none", ctor(cb.Dense, None), TypeError, "Dense units must be an integer",
         False),
    Case("dense-activation-unknown", ctor(cb.Dense, 4, "swish"), ValueError,
         "unknown activation 'swish'", False),
    Case("dense-activation-type", ctor(cb.Dense, 4, 3), TypeError, "activation must be a string",
         False),
    Case("dense-dropout-1", ctor(cb.Dense, 4, "relu", dropout=1.0), ValueError,
         "dropout must be", False),
    Case("dense-dropout-nan", ctor(cb.Dense, 4, "relu", dropout=NAN), ValueError,
         "dropout must be", False),
    Case("net-hidden-softmax", ctor(cb.Network, 3, [cb.Dense(4, "softmax"), cb.Dense(2)]),
         ValueError, "only for the output layer", False),
    Case("net-loss-unknown", ctor(cb.Network, 3, [cb.Dense(2)], loss="hinge"), ValueError,
         "unknown loss 'hinge'", False),
    Case("net-loss-type", ctor(cb.Network, 3, [cb.Dense(2)], loss=3), TypeError,
         "loss must be a string", False),
    Case("net-ce-needs-softmax", ctor(cb.Network, 3, [cb.Dense(2, "sigmoid")],
                                      loss="cross_entropy"), ValueError,
         "needs a softmax output layer", False),
    Case("net-softmax-needs-ce", ctor(cb.Network, 3, [cb.Dense(2, "softmax")], loss="mse"),
         ValueError, "needs the cross_entropy loss", False),
    Case("net-softmax-one-unit", ctor(cb.Network, 3, [cb.Dense(1, "softmax")]), ValueError,
         "at least 2 units", False),
    Case("net-output-dropout", ctor(cb.Network, 3, [cb.Dense(2, dropout=0.5)]), ValueError,
         "output layer must have dropout=0", False),
    Case("net-dtype-float16", ctor(cb.Network, 3, [cb.Dense(2)], dtype="float16"), ValueError,
         "dtype must be 'float32' or 'float64'", False),
    Case("net-dtype-none", ctor(cb.Network, 3, [cb.Dense(2)], dtype=None), TypeError,
         "dtype must be 'float32' or 'float64', got None", False),
    Case("net-dtype-garbage", ctor(cb.Network, 3, [cb.Dense(2)], dtype="floot"), TypeError,
         "dtype must be", False),
    Case("net-seed-negative", ctor(cb.Network, 3, [cb.Dense(2)], seed=-1), ValueError,
         "seed must be >= 0", False),
    Case("net-seed-float", ctor(cb.Network, 3, [cb.Dense(2)], seed=1.5), TypeError,
         "seed must be an integer", False),
    Case("net-alpha-negative", ctor(cb.Network, 3, [cb.Dense(2)], alpha=-1.0), ValueError,
         "alpha must be >= 0", False),
    Case("net-alpha-nan", ctor(cb.Network, 3, [cb.Dense(2)], alpha=NAN), ValueError,
         "alpha must be", False),
    Case("net-n_threads-0", ctor(cb.Network, 3, [cb.Dense(2)], n_threads=0), ValueError,
         "n_threads must be >= 1", False),
    Case("huber-delta-0", ctor(cb.Huber, 0.0), ValueError, "huber delta must be > 0", False),
    Case("sgd-lr-0", ctor(cb.SGD, lr=0.0), ValueError, "lr must be > 0", False),
    Case("sgd-lr-negative", ctor(cb.SGD, lr=-0.1), ValueError, "lr must be > 0", False),
    Case("sgd-lr-nan", ctor(cb.SGD, lr=NAN), ValueError, "lr must be > 0", False),
    Case("sgd-lr-str", ctor(cb.SGD, lr="0.1"), TypeError, "lr must be a real number", False),
    Case("sgd-momentum-1", ctor(cb.SGD, momentum=1.0), ValueError, "momentum must be", False),
    Case("sgd-nesterov-no-momentum", ctor(cb.SGD, nesterov=True), ValueError,
         "nesterov=True needs momentum > 0", False),
    Case("adam-betas-short", ctor(cb.Adam, betas=(0.9,)), TypeError,
         "betas must be a pair", False),
    Case("adam-beta1-1", ctor(cb.Adam, betas=(1.0, 0.999)), ValueError, "beta1 must be",
         False),
    Case("adam-eps-negative", ctor(cb.Adam, eps=-1e-8), ValueError, "eps must be > 0", False),
    Case("rmsprop-alpha-big", ctor(cb.RMSprop, alpha=1.5), ValueError, "alpha must be", False),
    Case("gradcheck-step-0", lambda c: (cb.gradcheck, [c.net, c.X, c.y], {"step": 0.0}),
         ValueError, "step must be > 0", False),

    # ---- fit: arrays (child process) ----
    Case("fit-X-none", fit(X=None), TypeError, "X must be an array-like of real numbers"),
    Case("fit-X-1d", fit(X=lambda c: c.X[0]), ValueError, "X must be 2-D"),
    Case("fit-X-3d", fit(X=lambda c: c.X[None]), ValueError, "X must be 2-D"),
    Case("fit-X-0-rows", fit(X=lambda c: c.X[:0], y=lambda c: c.y[:0]), ValueError, "0 rows"),
    Case("fit-X-features", fit(X=lambda c: c.X[:, :3]), ValueError,
         "X has 3 features per row, but the network expects 4"),
    Case("fit-X-nan", fit(X=lambda c: c.with_value(c.X, (3, 1), NAN)), ValueError,
         "X contains NaN or infinity"),
    Case("fit-X-inf", fit(X=lambda c: c.with_value(c.X, (19, 3), -INF)), ValueError,
         "X contains NaN or infinity"),
    Case("fit-X-overflows-float32", fit(X=lambda c: c.with_value(c.X, (0, 0), 1e39)),
         ValueError, "too large for float32"),
    Case("fit-X-bool", fit(X=lambda c: c.X > 0), TypeError, "X has dtype bool"),
    Case("fit-X-complex", fit(X=lambda c: c.X + 1j), TypeError, "X has dtype complex128"),
    Case("fit-X-str", fit(X=lambda c: c.X.astype(str)), TypeError, "(str)"),
    Case("fit-X-object", fit(X=lambda c: c.X.astype(object)), TypeError, "X has dtype object"),
    Case("fit-X-datetime", fit(X=lambda c: np.zeros((20, 4), "datetime64[s]")), TypeError,
         "datetime64"),
    Case("fit-X-ragged", fit(X=[[1.0, 2.0, 3.0, 4.0], [1.0]], y=[0, 1]), ValueError,
         "X could not be read as a rectangular array"),
    Case("fit-X-sparse-nan", fit(X=lambda c: scipy.sparse.csr_matrix(
        c.with_value(c.X, (3, 1), NAN))), ValueError, "X contains NaN or infinity"),
    Case("fit-X-sparse-overflows-float32", fit(X=lambda c: scipy.sparse.csc_array(
        c.with_value(c.X, (0, 0), 1e39))), ValueError, "too large for float32"),
    Case("fit-X-sparse-features", fit(X=lambda c: scipy.sparse.csr_array(c.X[:, :3])),
         ValueError, "X has 3 features per row, but the network expects 4"),
    Case("fit-X-sparse-0-rows", fit(X=lambda c: scipy.sparse.csr_matrix(c.X[:0]),
                                    y=lambda c: c.y[:0]), ValueError, "0 rows"),
    Case("fit-X-sparse-bool", fit(X=lambda c: scipy.sparse.csr_matrix(c.X > 0)), TypeError,
         "X has dtype bool"),
    Case("fit-X-sparse-damaged", fit(X=lambda c: damaged_csr(c.X, "indices")), ValueError,
         "X is a damaged sparse matrix"),
    Case("fit-X-sparse-damaged-indptr", fit(X=lambda c: damaged_csr(c.X, "indptr")),
         ValueError, "X is a damaged sparse matrix"),
    Case("predict-X-sparse-nan", net_call("predict", lambda c: scipy.sparse.coo_array(
        c.with_value(c.X, (3, 1), INF))), ValueError, "X contains NaN or infinity"),
    Case("fit-y-sparse", fit(y=lambda c: scipy.sparse.csr_matrix(c.y.reshape(-1, 1))),
         TypeError, "y is a sparse matrix"),
    Case("fit-X-masked", fit(X=lambda c: np.ma.masked_greater(c.X, 1.0)), ValueError,
         "masked entries"),
    Case("fit-y-none", fit(y=None), TypeError, "y must be an array-like"),
    Case("fit-y-length", fit(y=lambda c: c.y[:-1]), ValueError, "y has 19 rows but X has 20"),
    Case("fit-y-label-too-big", fit(y=lambda c: np.where(c.y == 0, 3, c.y)), ValueError,
         "class labels must be in 0..2"),
    Case("fit-y-label-negative", fit(y=lambda c: np.where(c.y == 0, -1, c.y)), ValueError,
         "class labels must be in 0..2"),
    Case("fit-y-label-huge", fit(y=lambda c: np.full(20, 2**62, np.uint64)), ValueError,
         "class labels must be in 0..2"),
    Case("fit-y-label-fraction", fit(y=lambda c: c.y + 0.5), ValueError,
         "class labels must be integers"),
    Case("fit-y-label-nan", fit(y=lambda c: c.with_value(c.y, 4, NAN)), ValueError,
         "y contains NaN or infinity"),
    Case("fit-y-3d", fit(y=lambda c: c.y[:, None, None]), ValueError, "y must be 1-D or 2-D"),
    Case("fit-y-scalar", fit(y=1), ValueError, "y must be 1-D or 2-D"),
    Case("fit-y-onehot-columns", fit(y=lambda c: np.eye(4)[c.y]), ValueError,
         "y has 4 columns, but the network has 3 outputs"),
    Case("fit-y-onehot-sum", fit(y=lambda c: 0.5 * np.eye(3)[c.y]), ValueError,
         "must be one-hot"),
    Case("fit-y-onehot-negative", fit(y=lambda c: np.eye(3)[c.y] * 2 - 1), ValueError,
         "must lie in [0, 1]"),
    Case("fit-y-bool-labels", fit(y=lambda c: c.y > 0), TypeError, "y has dtype bool"),
    Case("fit-y-str-labels", fit(y=lambda c: c.y.astype(str)), TypeError, "y has dtype <U"),
    Case("fit-mse-y-1d-for-2-outputs", fit(y=lambda c: c.yr[:, 0], net="reg",
                                           optimizer=lambda c: c.reg_opt), ValueError,
         "expected shape (20, 2)"),
    Case("fit-mse-y-inf", fit(y=lambda c: c.with_value(c.yr, (2, 1), INF), net="reg",
                              optimizer=lambda c: c.reg_opt), ValueError,
         "y contains NaN or infinity"),
    Case("fit-bce-y-above-1", fit(y=lambda c: c.yb * 2, net="bce", optimizer=None),
         ValueError, "must lie in [0, 1]"),
    Case("fit-weight-shape", fit(sample_weight=lambda c: np.ones(19)), ValueError,
         "sample_weight must have shape (20,)"),
    Case("fit-weight-negative", fit(sample_weight=lambda c: c.with_value(np.ones(20), 2, -1)),
         ValueError, "sample_weight must be non-negative"),
    Case("fit-weight-nan", fit(sample_weight=lambda c: c.with_value(np.ones(20), 2, NAN)),
         ValueError, "sample_weight contains NaN"),
    Case("fit-weight-all-zero", fit(sample_weight=lambda c: np.zeros(20)), ValueError,
         "sample_weight must have a positive sum"),
    Case("fit-weight-bool", fit(sample_weight=lambda c: np.ones(20, bool)), TypeError,
         "sample_weight has dtype bool"),
    # ---- fit: hyper-parameters and arguments ----
    Case("fit-epochs-negative", fit(epochs=-1), ValueError, "epochs must be >= 0"),
    Case("fit-epochs-float", fit(epochs=1.5), TypeError, "epochs must be an integer"),
    Case("fit-batch-0", fit(batch_size=0), ValueError, "batch_size must be >= 1"),
    Case("fit-batch-none", fit(batch_size=None), TypeError, "batch_size must be an integer"),
    Case("fit-optimizer-class", fit(optimizer=cb.SGD), TypeError,
         "optimizer must be a cb.Optimizer"),
    Case("fit-optimizer-name", fit(optimizer="sgd"), TypeError,
         "optimizer must be a cb.Optimizer"),
    Case("fit-optimizer-lr-changed", _fit_with_bad_lr, ValueError, "lr must be > 0"),
    Case("fit-optimizer-other-network", fit(optimizer=lambda c: c.reg_opt), ValueError,
         "holds state for"),
    Case("fit-optimizer-foreign-state", fit(optimizer=_other_state), ValueError,
         "holds state for"),
    Case("fit-validation-single", fit(validation_data=lambda c: (c.X,)), TypeError,
         "validation_data must be a pair"),
    Case("fit-validation-X", fit(validation_data=lambda c: (c.X[:, :2], c.y)), ValueError,
         "validation X has 2 features per row"),
    Case("fit-validation-y", fit(validation_data=lambda c: (c.X, c.y + 5)), ValueError,
         "validation y: class labels must be in 0..2"),
    Case("fit-callbacks-not-callable", fit(callbacks=[1]), TypeError,
         "callbacks must be callables"),
    Case("fit-callbacks-single", fit(callbacks=print), TypeError,
         "callbacks must be a list of callables"),
    Case("fit-shuffle-str", fit(shuffle="no"), TypeError, "shuffle must be True or False"),
    # ---- predict / evaluate / loss_and_grad / trace ----
    Case("predict-none", net_call("predict", None), TypeError, "X must be an array-like"),
    Case("predict-1d", net_call("predict", lambda c: c.X[0]), ValueError,
         "use X.reshape(1, -1) for a single sample"),
    Case("predict-features", net_call("predict", lambda c: np.ones((2, 5))), ValueError,
         "X has 5 features per row, but the network expects 4"),
    Case("predict-empty", net_call("predict", lambda c: np.ones((0, 4))), ValueError, "0 rows"),
    Case("predict-nan", net_call("predict", lambda c: c.with_value(c.X, (0, 0), NAN)),
         ValueError, "X contains NaN"),
    Case("predict-float64-overflow", net_call("predict", lambda c: np.full((2, 4), 1e300)),
         ValueError, "too large for float32"),
    Case("evaluate-labels", net_call("evaluate", lambda c: c.X, lambda c: c.y * 10),
         ValueError, "class labels must be in 0..2"),
    Case("evaluate-weight", net_call("evaluate", lambda c: c.X, lambda c: c.y,
                                     sample_weight=lambda c: -np.ones(20)), ValueError,
         "sample_weight must be non-negative"),
    Case("loss_and_grad-X-3d", net_call("loss_and_grad", lambda c: c.X[None], lambda c: c.y),
         ValueError, "X must be 2-D"),
    Case("loss_and_grad-y-length", net_call("loss_and_grad", lambda c: c.X,
                                            lambda c: c.y[:3]), ValueError,
         "y has 3 rows but X has 20"),
    Case("trace-two-rows", net_call("trace", lambda c: c.X[:2], 0), ValueError,
         "trace takes one example, got 2 rows"),
    Case("trace-label", net_call("trace", lambda c: c.X[0], 7), ValueError,
         "class labels must be in 0..2"),
    Case("trace-x-features", net_call("trace", lambda c: c.X[0, :3], 0), ValueError,
         "x has 3 features per row"),
    # ---- θ assignment ----
    Case("theta-shape", lambda c: (setattr, [c.net, "theta", np.zeros(3)], {}), ValueError,
         "theta must have shape (43,)"),
    Case("theta-2d", lambda c: (setattr, [c.net, "theta", np.zeros((43, 1))], {}), ValueError,
         "theta must have shape (43,)"),
    Case("theta-nan", lambda c: (setattr, [c.net, "theta", np.full(43, NAN)], {}), ValueError,
         "theta contains NaN"),
    Case("theta-str", lambda c: (setattr, [c.net, "theta", np.array(["a"] * 43)], {}),
         TypeError, "theta has dtype"),
    Case("net-width-over-int32", ctor(cb.Network, 3, [cb.Dense(2**31)]), ValueError,
         "exceeds 2147483647"),
    # ---- files ----
    Case("load-empty", lambda c: crafted_file(c, b""), ValueError, "only 0 bytes"),
    Case("load-random", lambda c: crafted_file(c, np.random.default_rng(0).bytes(4096)),
         ValueError, "not a valid cbackprop model file"),
    Case("load-pickle", lambda c: crafted_file(c, b"\x80\x04\x95" + b"\x00" * 64),
         ValueError, "not a valid cbackprop model file"),
    Case("save-path-none", net_call("save", None), TypeError, "PathLike"),
    Case("save-missing-directory", net_call("save", lambda c: os.path.join(c.tmp, "no", "m")),
         FileNotFoundError, "No such file or directory"),
]

# ---- scikit-learn estimators: scikit-learn's input rules ----
X_NAN = lambda c: c.with_value(c.X, (0, 0), NAN)     # noqa: E731
ESTIMATOR_CASES = [
    Case("clf-fit-nan", net_call("fit", X_NAN, lambda c: c.y, net="clf"), ValueError,
         "Input X contains NaN"),
    Case("clf-fit-1d", net_call("fit", lambda c: c.X[0], lambda c: c.y, net="clf"),
         ValueError, "Expected 2D array, got 1D array"),
    Case("clf-fit-3d", net_call("fit", lambda c: c.X[None], lambda c: c.y, net="clf"),
         ValueError, "Found array with dim 3"),
    Case("clf-fit-empty", net_call("fit", lambda c: c.X[:0], lambda c: c.y[:0], net="clf"),
         ValueError, "Found array with 0 sample(s)"),
    Case("clf-fit-none", net_call("fit", None, lambda c: c.y, net="clf"), ValueError,
         "Expected 2D array"),
    Case("clf-fit-complex", net_call("fit", lambda c: c.X + 1j, lambda c: c.y, net="clf"),
         ValueError, "Complex data not supported"),
    Case("clf-fit-sparse-nan", net_call("fit", lambda c: scipy.sparse.csr_matrix(
        c.with_value(c.X, (3, 1), NAN)), lambda c: c.y, net="clf"), ValueError,
        "Input X contains NaN"),
    Case("clf-fit-sparse-features", net_call("partial_fit", lambda c: scipy.sparse.csr_array(
        c.X[:, :3]), lambda c: c.y, net="clf"), ValueError, "X has 3 features"),
    Case("clf-fit-y-length", net_call("fit", lambda c: c.X, lambda c: c.y[:-1], net="clf"),
         ValueError, "inconsistent numbers of samples"),
    Case("clf-fit-y-continuous", net_call("fit", lambda c: c.X, lambda c: c.yr[:, 0],
                                          net="clf"), ValueError, "Unknown label type"),
    Case("clf-fit-weight-negative", net_call("fit", lambda c: c.X, lambda c: c.y, net="clf",
                                             sample_weight=lambda c: -np.ones(20)),
         ValueError, "Negative values in data passed to `sample_weight`"),
    Case("clf-fit-weight-length", net_call("fit", lambda c: c.X, lambda c: c.y, net="clf",
                                           sample_weight=lambda c: np.ones(3)),
         ValueError, "sample_weight.shape == (3,), expected (20,)"),
    Case("clf-partial-fit-unseen-class", net_call("partial_fit", lambda c: c.X,
                                                  lambda c: c.y + 5, net="clf"),
         ValueError, "has classes not in classes_"),
    Case("clf-predict-features", net_call("predict", lambda c: c.X[:, :3], net="clf"),
         ValueError, "X has 3 features, but MLPClassifier is expecting 4 features"),
    Case("clf-predict-nan", net_call("predict", X_NAN, net="clf"), ValueError,
         "Input X contains NaN"),
    Case("clf-predict-proba-3d", net_call("predict_proba", lambda c: c.X[None], net="clf"),
         ValueError, "Found array with dim 3"),
    Case("reg-fit-y-inf", net_call("fit", lambda c: c.X,
                                   lambda c: c.with_value(c.yr[:, 0], 3, INF), net="est_reg"),
         ValueError, "Input y contains infinity"),
    Case("reg-predict-features", net_call("predict", lambda c: c.X[:, :2], net="est_reg"),
         ValueError, "X has 2 features, but MLPRegressor is expecting 4 features"),
    Case("reg-score-y-length", net_call("score", lambda c: c.X, lambda c: c.yr[:5, 0],
                                        net="est_reg"), ValueError,
         "inconsistent numbers of samples"),
]


def _fresh_fit(estimator_cls, **params):
    """Fitting a new estimator with invalid hyper-parameters (scikit-learn checks
    them in fit)."""
    return lambda c: (estimator_cls(**params).fit, [c.X, c.y], {})


if MLPClassifier is not None:
    ESTIMATOR_CASES += [
        Case("est-hidden-0", _fresh_fit(MLPClassifier, hidden_layer_sizes=(0,)), ValueError,
             "hidden_layer_sizes[i] must be >= 1", False),
        Case("est-lr-0", _fresh_fit(MLPClassifier, learning_rate_init=0.0), ValueError,
             "'learning_rate_init' parameter of MLPClassifier must be a float in the range "
             "(0.0, inf)", False),
        Case("est-solver", _fresh_fit(MLPClassifier, solver="foo"), ValueError,
             "'solver' parameter of MLPClassifier must be a str among", False),
        Case("est-batch-0", _fresh_fit(MLPClassifier, batch_size=0), ValueError,
             "'batch_size' parameter of MLPClassifier must be a str among {'auto'} or an int",
             False),
        Case("est-max-iter-0", _fresh_fit(MLPClassifier, max_iter=0), ValueError,
             "'max_iter' parameter of MLPClassifier must be an int in the range [1, inf)", False),
        Case("est-activation", _fresh_fit(MLPClassifier, activation="swish"), ValueError,
             "'activation' parameter of MLPClassifier must be a str among", False),
        Case("est-alpha-negative", _fresh_fit(MLPClassifier, alpha=-1.0), ValueError,
             "'alpha' parameter of MLPClassifier must be a float in the range [0.0, inf)", False),
        Case("est-momentum", _fresh_fit(MLPClassifier, solver="sgd", momentum=1.5),
             ValueError, "'momentum' parameter of MLPClassifier must be a float in the range "
             "[0.0, 1.0)", False),
        Case("est-validation-fraction", _fresh_fit(MLPClassifier, early_stopping=True,
                                                   validation_fraction=1.0), ValueError,
             "'validation_fraction' parameter of MLPClassifier must be a float", False),
        Case("est-predict-unfitted", lambda c: (MLPClassifier().predict, [c.X], {}),
             NotFittedError, "is not fitted yet", False),
    ]
    CASES += ESTIMATOR_CASES


IN_PROCESS = [c for c in CASES if not c.risky]
IN_CHILD = [c for c in CASES if c.risky]


def test_enough_cases_with_unique_ids():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", IN_PROCESS, ids=lambda c: c.id)
def test_bad_input_in_process(case, tmp_path):
    assert run_case(case, Context(str(tmp_path))) is None


def _child_main(tmp):
    """Run every risky case, printing one JSON line each ("start" first)."""
    ctx = Context(tmp)
    for case in IN_CHILD:
        print(json.dumps({"start": case.id}), flush=True)
        try:
            problem = run_case(case, ctx)
        except Exception as exc:  # noqa: BLE001 - a broken case must not hide the others
            problem = f"the case itself failed: {type(exc).__name__}: {exc}"
        print(json.dumps({"id": case.id, "problem": problem}), flush=True)


@pytest.fixture(scope="module")
def child_results(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("bad_inputs"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(cb.__file__)), HERE, os.environ.get("PYTHONPATH", "")]))
    code = f"import test_bad_inputs as t; t._child_main({tmp!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    results, running = {}, None
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        if "start" in record:
            running = record["start"]
        else:
            results[record["id"]] = record["problem"]
            running = None
    return results, running, proc.returncode, proc.stderr[-2000:]


@pytest.mark.parametrize("case", IN_CHILD, ids=lambda c: c.id)
def test_bad_input_in_child_process(case, child_results):
    results, running, returncode, stderr = child_results
    if case.id not in results:
        pytest.fail(f"the child process died (exit code {returncode}) while running "
                    f"{running!r}; stderr:\n{stderr}")
    assert results[case.id] is None, results[case.id]


def test_the_checker_can_fail(tmp_path):
    """run_case notices a call that does not raise, a wrong message, and a changed θ."""
    ctx = Context(str(tmp_path))
    ok = Case("ok", net_call("predict", lambda c: c.X), ValueError, "")
    assert run_case(ok, ctx) == "did not raise ValueError"
    wrong = Case("wrong", net_call("predict", None), TypeError, "no such words")
    assert "lacks" in run_case(wrong, ctx)

    def change_then_raise(c):
        def call():
            c.net.theta[0] += 1
            raise ValueError("boom")
        return call, [], {}
    assert run_case(Case("changes", change_then_raise, ValueError, "boom"), ctx) == \
        "theta changed"


# ---- unusual but valid inputs work ------------------------------------------

def test_rows_of_weight_zero_are_as_if_absent():
    """A batch made only of weight-0 rows has no weighted mean loss; such
    rows are dropped, so the fit equals a fit without them (it used to diverge)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    w = np.r_[np.zeros(30), rng.uniform(0.5, 2, 30)]
    a = cb.Network(3, [cb.Dense(4, "tanh"), cb.Dense(1)], seed=0)
    b = cb.Network(3, [cb.Dense(4, "tanh"), cb.Dense(1)], seed=0)
    ha = a.fit(X, y, sample_weight=w, shuffle=False, batch_size=10, epochs=3)
    hb = b.fit(X[30:], y[30:], sample_weight=w[30:], shuffle=False, batch_size=10, epochs=3)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert ha.history["loss"] == hb.history["loss"]


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_data_and_batches_larger_than_the_data(n):
    X, y = np.ones((n, 1)), np.arange(n) % 2
    net = cb.Network(1, [cb.Dense(1, "relu"), cb.Dense(2, "softmax")], seed=0)
    hist = net.fit(X, y, epochs=2, batch_size=10**9, validation_data=(X, y))
    assert len(hist.epoch) == 2 and np.isfinite(net.theta).all()
    assert net.predict(X[0:1]).shape == (1, 2)
    assert net.fit(X, y, epochs=0).epoch == []


def test_assigning_theta_copies_into_place():
    net = cb.Network(2, [cb.Dense(3, "tanh"), cb.Dense(1)], seed=0)
    theta, (W, _) = net.theta, net.params[0]
    new = np.arange(net.theta.size, dtype=np.int64)[::-1]     # converted, reversed view
    net.theta = new
    assert net.theta is theta                                  # same buffer: views stay valid
    np.testing.assert_array_equal(theta, new)
    np.testing.assert_array_equal(W, new[:6].reshape(2, 3))
