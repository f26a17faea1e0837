"""The playground's state: one network, one data set, one training thread.

Design: everything the page shows is computed here, in Python, from the
library's own API (`Network.trace`, `finite_differences` / `gradcheck`,
`Network.fit` with a callback and health=True, `Network.predict`); the page's
JavaScript only draws. This module knows nothing of HTTP (`app.py` serves it),
so the tests can drive it directly.

Concurrency: a `Lab` has one lock. Every change (network, data, settings, a
loaded model) and the start of a training run take it; a run is one `fit`
call on a daemon thread, refused while another runs, so two browser tabs
cannot interleave two runs on one network. The thread's callback only
appends the epoch's figures and bumps `version`; readers (`snapshot`) copy θ
under the network's own read lock, so they see whole chunks. `close` stops the
run (`Network.stop`) and joins the thread.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

from cbackprop import datasets
from cbackprop.activations import HIDDEN_ACTIVATIONS
from cbackprop.gradcheck import finite_differences, gradcheck
from cbackprop.history import health_warnings
from cbackprop.layers import Dense
from cbackprop.network import DivergenceError, Network, load
from cbackprop.optimizers import SGD, Adam, AdamW, RMSprop

#: Bounds on what the page may ask for.
MAX_HIDDEN_LAYERS = 6
MAX_UNITS = 256
MAX_INPUTS = 1024
MAX_ROWS = 20_000
MAX_EPOCHS = 10_000
MAX_LR = 10.0
MAX_MODEL_BYTES = 32 << 20
#: The walk's finite differences are skipped above this many parameters (4 passes each).
MAX_FD_PARAMS = 5_000
#: Networks up to this width (inputs included) are drawn unit by unit; wider ones per layer.
MAX_DRAWN_UNITS = 16
SURFACE_CELLS = 48
SURFACE_POINTS = 400
CURVE_POINTS = 400

DATASETS = ("xor", "spirals", "regression", "digits")
OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}
OUTPUTS = ("sigmoid", "softmax", "identity")
#: The lecture's example (as `cbackprop trace`): input and target of a 2-2-2 network.
LECTURE_X, LECTURE_Y = (0.05, 0.10), (0.01, 0.99)
FD_STEP = 1e-4


class Conflict(RuntimeError):
    """A request that cannot be served in the lab's current state (a run is going)."""


# ---- checking the page's values (they arrive as text or JSON numbers) ----------

def _number(value, name: str, kind=float, low=None, high=None, low_open=False):
    what = "a whole number" if kind is int else "a number"
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {what}, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if kind is int:
        if x != int(x):
            raise ValueError(f"{name}: expected {what}, got {value!r}")
        x = int(x)
    if low is not None and (x <= low if low_open else x < low):
        raise ValueError(f"{name} must be {'>' if low_open else '≥'} {low}, got {value!r}")
    if high is not None and x > high:
        raise ValueError(f"{name} must be ≤ {high}, got {value!r}")
    return x


def _int_list(value, name: str) -> list[int]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p != ""]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ValueError(f"{name}: expected sizes such as 4,4, got {value!r}")
    if len(parts) > MAX_HIDDEN_LAYERS:
        raise ValueError(f"{name}: at most {MAX_HIDDEN_LAYERS} hidden layers, got {len(parts)}")
    return [_number(p, f"{name} (each layer's units)", int, 1, MAX_UNITS) for p in parts]


def _choice(value, name: str, options) -> str:
    text = str(value).strip().lower()
    if text not in options:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(options)}")
    return text


def _activations(value, n: int) -> list[str]:
    if isinstance(value, str):
        names = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        names = list(value)
    else:
        raise ValueError(f"activations: expected names, got {value!r}")
    if len(names) == 1 and n > 1:
        names = names * n
    if n and len(names) != n:
        raise ValueError(f"activations: {n} hidden layer(s) need {n} names "
                         f"(or one for all), got {len(names)}")
    return [_choice(a, "activation", HIDDEN_ACTIVATIONS) for a in names[:n]]


# ---- σ'(z), to show the backward sum with its numbers ---------------------------

def activation_derivative(name: str, z: np.ndarray) -> np.ndarray | None:
    """σ'(z) of a hidden or output activation (None for softmax, whose δ is p − y)."""
    z = np.asarray(z, dtype=np.float64)
    s = 1.0 / (1.0 + np.exp(-z))
    if name == "identity":
        return np.ones_like(z)
    if name == "sigmoid":
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, 0.01)
    if name == "elu":
        return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))
    if name == "softplus":
        return s
    if name == "gelu":
        return 0.5 * (1.0 + erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(
            2.0 * math.pi)
    if name == "silu":
        return s * (1.0 + z * (1.0 - s))
    return None


# ---- data ------------------------------------------------------------------------

@dataclass
class Data:
    """A data set as the playground uses it: training and validation parts."""

    name: str
    X: np.ndarray
    y: np.ndarray            # class indices 0..k−1, or real targets (n,) / (n, k)
    Xv: np.ndarray
    yv: np.ndarray
    classes: list | None     # class names for classification, None for regression

    @property
    def n_inputs(self) -> int:
        return self.X.shape[1]

    @property
    def n_outputs(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return 1 if self.y.ndim == 1 else self.y.shape[1]


def _encode(y: np.ndarray, yv: np.ndarray):
    """Class labels (ints or text) as indices 0..k−1, or None for real targets."""
    if y.dtype.kind in "iub" or y.dtype.kind in "UO" or (
            y.dtype.kind == "f" and y.ndim == 1 and np.all(y == np.round(y))
            and np.unique(y).size <= 20):
        classes = np.unique(np.concatenate([y, yv]))
        if classes.size < 2:
            raise ValueError("the data set has a single class; the playground needs two or more")
        if classes.size > 100:
            raise ValueError(f"{classes.size} classes: the playground takes at most 100")
        return [c.item() if hasattr(c, "item") else c for c in classes], \
            np.searchsorted(classes, y), np.searchsorted(classes, yv)
    return None, y.astype(np.float64), yv.astype(np.float64)


def load_data(source: str) -> Data:
    """A named set (xor, spirals, regression: 2-D, digits) or a CSV/NPZ file (split 80/20)."""
    if source == "regression":      # the command line's regression is 1-D; the page's is 2-D
        X, y = datasets.make_regression(n_samples=1000, n_features=2, seed=0)
        Xv, yv = datasets.make_regression(n_samples=300, n_features=2, seed=1)
    elif source in DATASETS:
        X, y = datasets.load_dataset(source, "train")
        Xv, yv = datasets.load_dataset(source, "test")
        if source != "digits":
            Xv, yv = Xv[:300], yv[:300]
    else:
        X, y = datasets.load_dataset(source)
        if X.shape[0] < 2:
            raise ValueError(f"{source}: the playground needs at least 2 rows")
        X, Xv, y, yv = datasets.train_test_split(X, y, test_size=0.2, seed=0)
    if X.shape[0] + Xv.shape[0] > MAX_ROWS:
        raise ValueError(f"{source}: {X.shape[0] + Xv.shape[0]} rows; the playground takes at "
                         f"most {MAX_ROWS} (train on it with `cbackprop train`)")
    if X.shape[1] > MAX_INPUTS:
        raise ValueError(f"{source}: {X.shape[1]} features; the playground takes at most "
                         f"{MAX_INPUTS}")
    classes, y, yv = _encode(np.asarray(y), np.asarray(yv))
    name = source if source in DATASETS else os.path.basename(source)
    return Data(name, np.asarray(X, np.float64), y, np.asarray(Xv, np.float64), yv, classes)


# ---- the lab ---------------------------------------------------------------------

@dataclass
class Spec:
    """The network's shape as the page sets it."""

    hidden: list[int] = field(default_factory=lambda: [2])
    activations: list[str] = field(default_factory=lambda: ["sigmoid"])
    output: str = "sigmoid"          # the lecture's: sigmoid outputs, mse on one-hot targets
    seed: int = 0


@dataclass
class Settings:
    """How the page trains."""

    optimizer: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.0
    batch_size: int = 32
    epochs: int = 300


class Lab:
    """One network on one data set, trained on a background thread.

    Parameters
    ----------
    net : Network, optional
        Default: the lecture's 2-2-2 sigmoid network (mse), seed 0.
    data : str, optional
        A name in DATASETS or a .csv / .npz path (also listed on the page).
        Default: one that fits `net` (xor for the lecture's network).
    """

    def __init__(self, net: Network | None = None, data: str | None = None):
        self.lock = threading.RLock()
        self.version = 0
        self.files: list[str] = []      # the data files named at start, offered on the page
        if data is not None and data not in DATASETS:
            self.files.append(data)
        self.spec = Spec()
        self.settings = Settings()
        self.thread: threading.Thread | None = None
        self.pause_requested = threading.Event()
        self.closed = False
        self.notice = ""
        if net is not None:
            self.data = load_data(data) if data is not None else self._fitting_data(net)
            self._adopt(net)
        else:
            self.data = load_data(data or "xor")
            if self.data.classes is None:
                self.spec.output = "identity"
            elif data not in (None, "xor"):
                self.spec.output = "softmax"
            self._build()

    # -- building ---------------------------------------------------------------

    def _fitting_data(self, net: Network) -> Data:
        for name in DATASETS:
            data = load_data(name)
            out = net.layers[-1].activation
            if data.n_inputs == net.n_inputs and data.n_outputs == net.n_outputs and (
                    (data.classes is None) == (out == "identity")):
                return data
        raise ValueError(f"no built-in data set fits a network with {net.n_inputs} inputs and "
                         f"{net.n_outputs} outputs: name one with --data")

    def _loss(self) -> str:
        return "cross_entropy" if self.spec.output == "softmax" else "mse"

    def _build(self) -> None:
        d, s = self.data, self.spec
        if d.classes is None and s.output != "identity":
            s.output = "identity"
        if d.classes is not None and s.output == "identity":
            s.output = "softmax"
        layers = [Dense(n, a) for n, a in zip(s.hidden, s.activations)]
        layers.append(Dense(d.n_outputs, s.output))
        net = Network(d.n_inputs, layers, loss=self._loss(), dtype="float64", seed=s.seed,
                      n_threads=1)
        net.classes = d.classes
        self._adopt(net, keep_spec=True)

    def _adopt(self, net: Network, keep_spec: bool = False) -> None:
        d = self.data
        if net.n_inputs != d.n_inputs or net.n_outputs != d.n_outputs:
            raise ValueError(f"the model has {net.n_inputs} inputs and {net.n_outputs} outputs; "
                             f"the data set {d.name} has {d.n_inputs} and {d.n_outputs}")
        out = net.layers[-1].activation
        if (d.classes is None) != (out == "identity") or out not in OUTPUTS:
            raise ValueError(f"a {out} output does not fit the data set {d.name} "
                             f"({'real targets' if d.classes is None else 'classes'})")
        if not keep_spec:
            self.spec = Spec([lay.units for lay in net.layers[:-1]],
                             [lay.activation for lay in net.layers[:-1]], out,
                             0 if net.seed is None else net.seed)
        self.net = net
        self.optimizer = None
        self.curve = {"epoch": [], "loss": [], "val_loss": []}
        self.health: list[dict] = []
        self.grad_norms: list[list[float]] = []
        self.epochs_done = 0.0
        self.steps_done = 0
        self.notice = ""
        # The untrained network's figures start the curves, at epoch 0.
        d = self.data
        self._record(net.evaluate(d.X, self.targets(d.y))["loss"],
                     net.evaluate(d.Xv, self.targets(d.yv))["loss"], None)

    def targets(self, y: np.ndarray) -> np.ndarray:
        """The network's targets for labels y: one-hot rows for sigmoid outputs (mse)."""
        if self.data.classes is not None and self.net.loss.name == "mse":
            return np.eye(self.data.n_outputs)[y]
        return y

    # -- requests from the page --------------------------------------------------

    def _idle(self) -> None:
        if self.running:
            raise Conflict("a training run is going: pause it first")

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def set_network(self, hidden=None, activations=None, output=None, seed=None) -> None:
        """Rebuild the network with a new shape (new initial weights from seed)."""
        with self.lock:
            self._idle()
            hidden = self.spec.hidden if hidden is None else _int_list(hidden, "hidden")
            acts = _activations(self.spec.activations if activations is None else activations,
                                len(hidden)) if hidden else []
            out = self.spec.output if output is None else _choice(output, "output", OUTPUTS)
            seed = self.spec.seed if seed is None else _number(seed, "seed", int, 0, 2**31)
            if self.data.classes is None and out != "identity":
                raise ValueError(f"the data set {self.data.name} has real targets: "
                                 "use the identity output")
            if self.data.classes is not None and out == "identity":
                raise ValueError(f"the data set {self.data.name} has classes: use a "
                                 "sigmoid or softmax output")
            if out == "softmax" and self.data.n_outputs < 2:
                raise ValueError("a softmax output needs two or more classes")
            self.spec = Spec(hidden, acts, out, seed)
            self._build()

    def set_data(self, name) -> None:
        """Switch data set; the network keeps its hidden layers and gets new ends."""
        with self.lock:
            self._idle()
            name = str(name)
            if name not in DATASETS and name not in self.files:
                raise ValueError(f"data: {name!r} is not one of "
                                 f"{', '.join(DATASETS + tuple(self.files))}")
            data = load_data(name)
            if data.classes is None:
                output = "identity"
            elif self.spec.output == "identity":
                output = "softmax"
            else:
                output = self.spec.output
            self.data = data
            self.spec.output = output
            self._build()

    def set_settings(self, optimizer=None, lr=None, momentum=None, batch_size=None,
                     epochs=None) -> None:
        """Change how the page trains (a new optimizer state when the rule changes)."""
        with self.lock:
            self._idle()
            s = self.settings
            new = Settings(
                _choice(optimizer, "optimizer", tuple(OPTIMIZERS)) if optimizer is not None
                else s.optimizer,
                _number(lr, "learning rate", float, 0, MAX_LR, low_open=True) if lr is not None
                else s.lr,
                _number(momentum, "momentum", float, 0, 0.999) if momentum is not None
                else s.momentum,
                _number(batch_size, "batch size", int, 1, self.data.X.shape[0])
                if batch_size is not None else s.batch_size,
                _number(epochs, "epochs", int, 1, MAX_EPOCHS) if epochs is not None
                else s.epochs)
            if new.momentum and new.optimizer not in ("sgd", "rmsprop"):
                raise ValueError(f"momentum applies to sgd and rmsprop, not {new.optimizer}")
            if (new.optimizer, new.lr, new.momentum) != (s.optimizer, s.lr, s.momentum):
                self.optimizer = None
            self.settings = new
            self.version += 1

    def make_optimizer(self):
        """The optimizer of the current settings (its state carries over between runs)."""
        s = self.settings
        if s.optimizer in ("sgd", "rmsprop") and s.momentum:
            return OPTIMIZERS[s.optimizer](lr=s.lr, momentum=s.momentum)
        return OPTIMIZERS[s.optimizer](lr=s.lr)

    # -- training ----------------------------------------------------------------

    def train(self, action: str) -> None:
        """start (settings.epochs epochs, one fit call), epoch (one), step (one
        minibatch, the next rows in order) or pause."""
        action = _choice(action, "action", ("start", "epoch", "step", "pause"))
        if action == "pause":
            self.pause()
            return
        with self.lock:
            self._idle()
            if self.closed:
                raise Conflict("the playground is closing")
            if self.optimizer is None:
                self.optimizer = self.make_optimizer()
            self.pause_requested.clear()
            self.notice = ""
            if action == "step":
                n, bs = self.data.X.shape[0], self.settings.batch_size
                start = (self.steps_done * bs) % n
                rows = np.arange(start, start + bs) % n
                work = (self.data.X[rows], self.targets(self.data.y[rows]), 1, len(rows), False,
                        bs / n)
            else:
                epochs = self.settings.epochs if action == "start" else 1
                work = (self.data.X, self.targets(self.data.y), epochs,
                        self.settings.batch_size, True, 1.0)
            self.thread = threading.Thread(target=self._run, args=work, daemon=True,
                                           name="cbackprop-playground-fit")
            self.thread.start()
            self.version += 1

    def _run(self, X, Y, epochs, batch_size, shuffle, per_epoch) -> None:
        net, Yv = self.net, self.targets(self.data.yv)

        def on_epoch(epoch, logs):
            with self.lock:
                self.epochs_done += per_epoch
                if per_epoch < 1:
                    self.steps_done += 1
                self._record(logs.get("loss"), logs.get("val_loss"), logs.get("health"))
            return self.pause_requested.is_set() or self.closed

        try:
            net.fit(X, Y, optimizer=self.optimizer, epochs=epochs, batch_size=batch_size,
                    shuffle=shuffle, validation_data=(self.data.Xv, Yv),
                    callbacks=[on_epoch], health=True)
        except DivergenceError as exc:
            self.notice = f"training diverged: {exc} (θ restored; try a smaller learning rate)"
        except Exception as exc:  # noqa: BLE001 - reported on the page, never a traceback
            self.notice = f"training stopped: {type(exc).__name__}: {exc}"
        finally:
            with self.lock:
                self.version += 1

    def _record(self, loss, val_loss, health) -> None:
        self.curve["epoch"].append(self.epochs_done)
        self.curve["loss"].append(None if loss is None else float(loss))
        self.curve["val_loss"].append(None if val_loss is None else float(val_loss))
        if health:
            self.health = health
            self.grad_norms.append([r["grad_norm"] for r in health])
        self.version += 1

    def pause(self) -> None:
        """Stop the run after its current epoch (or chunk)."""
        self.pause_requested.set()
        if self.running:
            self.net.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; True if none is going."""
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def close(self) -> None:
        """Stop the training thread and wait for it (the server is stopping)."""
        self.closed = True
        self.pause()
        self.wait(10.0)

    # -- files -------------------------------------------------------------------

    def model_bytes(self) -> bytes:
        """The network as a model file (`Network.save`)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "playground.cbp")
            self.net.save(path)
            with open(path, "rb") as f:
                return f.read()

    def load_model(self, blob: bytes) -> None:
        """Open a model file (`cb.load`); the data set switches to one that fits, if needed."""
        if len(blob) > MAX_MODEL_BYTES:
            raise ValueError(f"the model file is over {MAX_MODEL_BYTES >> 20} MiB")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "upload.cbp")
            with open(path, "wb") as f:
                f.write(blob)
            try:
                net = load(path)
            except ValueError as exc:
                message = str(exc).replace(path, "the file").replace(tmp, "")
                raise ValueError(f"not a model file: {message}") from None
        with self.lock:
            self._idle()
            if max(net.sizes) > MAX_INPUTS or len(net.layers) > MAX_HIDDEN_LAYERS + 1:
                raise ValueError("the model is larger than the playground draws and trains")
            d = self.data
            if net.n_inputs != d.n_inputs or net.n_outputs != d.n_outputs:
                self.data = self._fitting_data(net)
            self._adopt(net)

    # -- what the page shows -----------------------------------------------------

    def _theta_views(self, theta: np.ndarray):
        views, offset = [], 0
        for n_in, n_out in zip(self.net.sizes[:-1], self.net.sizes[1:]):
            W = theta[offset:offset + n_in * n_out].reshape(n_in, n_out)
            offset += n_in * n_out
            views.append((W, theta[offset:offset + n_out]))
            offset += n_out
        return views

    def snapshot(self) -> dict:
        """Everything the page draws, as JSON-ready values."""
        with self.lock:
            net, d = self.net, self.data
            version, running = self.version, self.running
            curve = {k: list(v) for k, v in self.curve.items()}
            health = list(self.health)
            grad_norms = list(self.grad_norms)
            spec, settings = self.spec, self.settings
            epochs_done, notice = self.epochs_done, self.notice
        with net.params_lock.read():
            theta = net.theta.astype(np.float64)
        unit_by_unit = max(net.sizes) <= MAX_DRAWN_UNITS
        layers = []
        for (W, b), layer in zip(self._theta_views(theta), net.layers):
            entry = {"units": layer.units, "activation": layer.activation,
                     "w_norm": float(np.linalg.norm(W)), "w_mean": float(W.mean())}
            if unit_by_unit:
                entry["W"], entry["b"] = W.tolist(), b.tolist()
            layers.append(entry)
        step = max(1, math.ceil(len(curve["epoch"]) / CURVE_POINTS))
        keep = list(range(0, len(curve["epoch"]), step))
        if curve["epoch"] and keep[-1] != len(curve["epoch"]) - 1:
            keep.append(len(curve["epoch"]) - 1)
        out = {
            "version": version, "running": running, "notice": notice,
            "epochs_done": round(epochs_done, 6),
            "spec": {"hidden": spec.hidden, "activations": spec.activations,
                     "output": spec.output, "seed": spec.seed},
            "settings": vars(settings).copy(),
            "data": {"name": d.name, "rows": int(d.X.shape[0]), "val_rows": int(d.Xv.shape[0]),
                     "n_inputs": d.n_inputs, "n_outputs": d.n_outputs,
                     "kind": "regression" if d.classes is None else "classification",
                     "classes": None if d.classes is None else [str(c) for c in d.classes],
                     "choices": list(DATASETS) + self.files},
            "network": {"sizes": list(net.sizes), "loss": net.loss.name, "dtype": net.dtype.name,
                        "unit_by_unit": unit_by_unit, "layers": layers,
                        "n_params": int(theta.size)},
            "curve": {k: [v[i] for i in keep] for k, v in curve.items()},
            "health": health,
            "health_warnings": health_warnings(health) if health else [],
            "grad_norms": grad_norms[-CURVE_POINTS:],
            "limits": {"hidden_layers": MAX_HIDDEN_LAYERS, "units": MAX_UNITS,
                       "epochs": MAX_EPOCHS, "lr": MAX_LR},
            "choices": {"activations": list(HIDDEN_ACTIVATIONS), "outputs": list(OUTPUTS),
                        "optimizers": list(OPTIMIZERS)},
        }
        if d.n_inputs == 2:
            out["surface"] = self.surface()
        return out

    def surface(self) -> dict:
        """The network's output over a grid covering the 2-D data, with the data's points."""
        d = self.data
        lo, hi = d.X.min(axis=0), d.X.max(axis=0)
        pad = 0.1 * (hi - lo) + 1e-9
        lo, hi = lo - pad, hi + pad
        n = SURFACE_CELLS
        gx = np.linspace(lo[0], hi[0], n)
        gy = np.linspace(lo[1], hi[1], n)
        grid = np.column_stack([np.tile(gx, n), np.repeat(gy, n)])
        P = self.net.predict(grid).astype(np.float64)
        if d.classes is not None:
            P = P if P.shape[1] > 1 else np.column_stack([1 - P[:, 0], P[:, 0]])
            value = P.argmax(axis=1)
            confidence = P.max(axis=1) / np.maximum(P.sum(axis=1), 1e-12)
            cells = {"class": value.tolist(), "confidence": np.round(confidence, 4).tolist()}
            labels = d.y
        else:
            cells = {"value": np.round(P[:, 0], 5).tolist()}
            labels = d.y if d.y.ndim == 1 else d.y[:, 0]
        every = max(1, d.X.shape[0] // SURFACE_POINTS)
        points = [[round(float(a), 4), round(float(b), 4), float(c)]
                  for (a, b), c in zip(d.X[::every], labels[::every])]
        return {"n": n, "extent": [float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])],
                "kind": "regression" if d.classes is None else "classification",
                "range": [float(np.min(labels)), float(np.max(labels))],
                **cells, "points": points}

    def walk(self, example="lecture") -> dict:
        """One example through the chain rule: `Network.trace`, finite differences,
        `gradcheck`, and the plain update θ − η·∂C/∂θ with the page's learning rate."""
        with self.lock:
            live, d = self.net, self.data
            lr = self.settings.lr
        # A copy, taken whole under the network's read lock: a run going on meanwhile
        # cannot change θ between trace, the finite differences and the update.
        net = Network.from_config(live.get_config())
        with live.params_lock.read():
            net.theta[...] = live.theta
        use_lecture = str(example).strip().lower() == "lecture"
        if use_lecture and not (net.n_inputs == 2 and net.n_outputs == 2
                                and net.loss.name == "mse"):
            use_lecture, example = False, 0
        if use_lecture:
            x, target, label = np.array(LECTURE_X), np.array(LECTURE_Y), "the lecture's example"
        else:
            row = _number(example, "example", int, 0, d.X.shape[0] - 1)
            x = d.X[row]
            target = np.asarray(self.targets(d.y[row:row + 1])[0], dtype=np.float64)
            label = f"training row {row}"
        records = net.trace(x, target)
        X1 = x.reshape(1, -1)
        Y1 = target.reshape(1) if target.ndim == 0 else target.reshape(1, -1)
        cost = net.evaluate(X1, Y1)["loss"]
        fd = finite_differences(net, X1, Y1, FD_STEP) if net.theta.size <= MAX_FD_PARAMS \
            else None
        check = gradcheck(net, X1, Y1) if fd is not None else None
        theta_new = net.theta.astype(np.float64).copy()
        layers, offset = [], 0
        for index, (rec, layer) in enumerate(zip(records, net.layers)):
            n_in, n_out = rec.dC_dW.shape
            a_prev = x if index == 0 else records[index - 1].a
            entry = {
                "activation": layer.activation,
                "z": rec.z.tolist(), "a": rec.a.tolist(), "a_prev": np.asarray(a_prev).tolist(),
                "dC_dz": rec.dC_dz.tolist(), "dC_dW": rec.dC_dW.tolist(),
                "dC_db": rec.dC_db.tolist(),
                "W": net.params[index][0].tolist(), "b": net.params[index][1].tolist(),
            }
            dsig = activation_derivative(layer.activation, rec.z)
            entry["dsigma"] = None if dsig is None else dsig.tolist()
            if index + 1 < len(records):
                W_next = net.params[index + 1][0].astype(np.float64)
                entry["back_sum"] = (W_next @ records[index + 1].dC_dz).tolist()
            elif net.loss.name == "mse":
                entry["dC_da"] = (2.0 * (rec.a - target.reshape(-1)) / n_out).tolist()
            elif net.loss.name == "cross_entropy":
                onehot = np.eye(n_out)[int(target)] if target.ndim == 0 else target.reshape(-1)
                entry["target"] = onehot.tolist()
            size = n_in * n_out
            if fd is not None:
                entry["fd_W"] = fd[offset:offset + size].reshape(n_in, n_out).tolist()
                entry["fd_b"] = fd[offset + size:offset + size + n_out].tolist()
            theta_new[offset:offset + size] -= lr * rec.dC_dW.reshape(-1)
            theta_new[offset + size:offset + size + n_out] -= lr * rec.dC_db
            entry["W_new"] = theta_new[offset:offset + size].reshape(n_in, n_out).tolist()
            entry["b_new"] = theta_new[offset + size:offset + size + n_out].tolist()
            offset += size + n_out
            layers.append(entry)
        after = Network.from_config(net.get_config())
        after.theta[...] = theta_new
        cost_after = after.evaluate(X1, Y1)["loss"]
        return {"example": label, "x": x.tolist(), "y": target.reshape(-1).tolist(),
                "loss": net.loss.name, "cost": cost, "cost_after": cost_after, "lr": lr,
                "fd_step": FD_STEP, "gradcheck": check, "layers": layers,
                "sizes": list(net.sizes)}
