"""Network: layer specs, the flat parameter vector θ, and fit / predict.

Backpropagation in one picture (code in `_core/_engine.pyx`):

    forward   zˡ = aˡ⁻¹·Wˡ + bˡ,  aˡ = σ(zˡ)          (∂zˡ/∂Wˡ = aˡ⁻¹)
    output    δᴸ = ∂C/∂zᴸ         (softmax + cross-entropy: softmax(z) − y)
    backward  δˡ⁻¹ = σ'(zˡ⁻¹) ⊙ (δˡ·Wˡᵀ)
    gradient  ∂C/∂Wˡ = aˡ⁻¹ᵀ·δˡ,   ∂C/∂bˡ = Σ_rows δˡ
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import numpy as np

from cbackprop import _threads
from cbackprop import _validation as V
from cbackprop._concurrency import DeferredInterrupt, ReadWriteLock
from cbackprop._core import _engine
from cbackprop.activations import HIDDEN_ACTIVATIONS, RELU_FAMILY
from cbackprop.activations import code as activation_code
from cbackprop.history import History
from cbackprop.layers import Dense
from cbackprop.losses import REQUIRED_OUTPUT, Loss, get_loss
from cbackprop.optimizers import Adam, Optimizer
from cbackprop.progress import Progress, check_verbose

#: Rows per predict/evaluate chunk are chosen so the workspace stays near this size.
_CHUNK_ELEMENTS = 1 << 21
#: Seconds of work between two returns to Python during fit (signals, stop()).
_CHUNK_SECONDS = 0.1

#: Optimizers inside a running fit, by id: two fits must not share one's state.
_busy_optimizers: set[int] = set()
_busy_optimizers_lock = threading.Lock()


class DivergenceError(FloatingPointError):
    """fit stopped because the loss or the parameters became NaN or infinite.

    The network keeps the parameters (and optimizer state) it had before the fit.
    """


class LayerTrace(NamedTuple):
    """One layer of a single example's forward and backward pass."""

    z: np.ndarray       #: weighted input zˡ = aˡ⁻¹·Wˡ + bˡ, shape (units,)
    a: np.ndarray       #: activation aˡ = σ(zˡ), shape (units,)
    dC_dz: np.ndarray   #: δˡ = ∂C/∂zˡ, shape (units,)
    dC_dW: np.ndarray   #: ∂C/∂Wˡ = aˡ⁻¹ᵀ·δˡ, shape (inputs, units)
    dC_db: np.ndarray   #: ∂C/∂bˡ = δˡ, shape (units,)


class Network:
    """A dense feed-forward network trained by backpropagation.

    Parameters
    ----------
    n_inputs : int
        Features per input row.
    layers : list of Dense
        Hidden and output layers, in order.
    loss : str or Loss, optional
        "cross_entropy" (softmax output), "binary_cross_entropy" (sigmoid
        output), "mse" or "huber" (or `cb.Huber(delta)`). Default: from the
        output activation (softmax → cross_entropy, sigmoid →
        binary_cross_entropy, otherwise mse).
    dtype : {"float32", "float64"}, default "float32"
    seed : int, optional
        Fixes the initial weights and the shuffling of every fit.
    alpha : float, default 0
        L2 penalty: the loss gains alpha/2 · Σ‖W‖² (weights, not biases).
    n_threads : int, optional
        The most BLAS threads fit/predict/evaluate use (default: the BLAS's own
        setting, e.g. OPENBLAS_NUM_THREADS). Fewer are used where more would
        be slower: 1 for small layers, and fit times its choice and steps down
        while other processes hold the cores. Networks may train at once on
        separate Python threads (each owns its workspace and random stream);
        they then share the cores without oversubscribing. With 1 thread a
        seeded fit is bitwise reproducible; with more, the BLAS may round the
        last bits differently from run to run.

    Attributes
    ----------
    theta : ndarray
        All parameters, flat: [W¹, b¹, W², b², …], each W row-major (inputs × units).
    grad : ndarray
        ∇L(θ) from the last `loss_and_grad`, in θ's layout.
    params : list of (W, b)
        Views into theta, one pair per layer.
    """

    def __init__(self, n_inputs: int, layers: list[Dense], loss=None, dtype="float32",
                 seed: int | None = None, alpha: float = 0.0, n_threads: int | None = None):
        n_inputs = V.check_int(n_inputs, "n_inputs", 1)
        if not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError("layers must be a non-empty list of cb.Dense")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a cb.Dense, got {type(layer).__name__}")
        for i, layer in enumerate(layers[:-1]):
            if layer.activation not in HIDDEN_ACTIVATIONS:
                raise ValueError(f"layers[{i}]: {layer.activation} is only for the output layer")
        out = layers[-1].activation
        if loss is None:
            loss = {v: k for k, v in REQUIRED_OUTPUT.items()}.get(out, "mse")
        loss = get_loss(loss)
        needed = REQUIRED_OUTPUT.get(loss.name)
        if needed is not None and out != needed:
            raise ValueError(f"loss {loss.name} needs a {needed} output layer, got {out}")
        if needed is None and out == "softmax":
            raise ValueError(
                f"a softmax output layer needs the cross_entropy loss, not {loss.name}")
        if out == "softmax" and layers[-1].units < 2:
            raise ValueError("a softmax output layer needs at least 2 units")
        if layers[-1].dropout > 0:
            raise ValueError("dropout is for hidden layers; the output layer must have dropout=0")
        self.n_inputs = n_inputs
        self.layers = list(layers)
        self.loss: Loss = loss
        self.dtype = V.check_dtype(dtype)
        if seed is not None:
            seed = V.check_int(seed, "seed", 0)
        self.seed = seed
        self.alpha = V.check_real(alpha, "alpha", 0)
        self.n_threads = None if n_threads is None else V.check_int(n_threads, "n_threads", 1)

        V.check_widths([n_inputs] + [lay.units for lay in layers])
        self._sizes = np.array([n_inputs] + [lay.units for lay in layers], dtype=np.intp)
        self._acts = np.array([activation_code(lay.activation) for lay in layers],
                              dtype=np.intc)
        self._dropout = np.array([lay.dropout for lay in layers], dtype=np.float64)
        n_params = int(sum(a * b + b for a, b in zip(self._sizes[:-1], self._sizes[1:])))
        self._theta = np.zeros(n_params, dtype=self.dtype)
        self.grad = np.zeros(n_params, dtype=self.dtype)
        # fit writes θ one engine chunk at a time under write(); readers see whole chunks.
        self._params_lock = ReadWriteLock()
        rng = np.random.default_rng(seed)
        for (W, _), layer in zip(self.params, self.layers):
            fan_in, fan_out = W.shape
            if layer.activation in RELU_FAMILY:        # He uniform
                limit = np.sqrt(6.0 / fan_in)
            else:                                      # Glorot uniform
                limit = np.sqrt(6.0 / (fan_in + fan_out))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        # The shuffling and dropout stream (splitmix64 state), advanced by every fit.
        self._rng_state = rng.integers(0, 2**63, size=1, dtype=np.uint64)
        self._fit_lock = threading.Lock()
        self._fit_threads: dict[tuple[int, int], _threads.FitThreads] = {}
        self._stop_requested = False

    # ---- structure ------------------------------------------------------

    @property
    def n_outputs(self) -> int:
        return int(self._sizes[-1])

    def _views(self, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out, p = [], 0
        for n_in, n_out in zip(self._sizes[:-1], self._sizes[1:]):
            W = flat[p:p + n_in * n_out].reshape(n_in, n_out)
            b = flat[p + n_in * n_out:p + n_in * n_out + n_out]
            out.append((W, b))
            p += n_in * n_out + n_out
        return out

    @property
    def theta(self) -> np.ndarray:
        """All parameters, flat and writable; assigning copies into it (views stay valid)."""
        return self._theta

    @theta.setter
    def theta(self, value) -> None:
        new = V.check_theta(value, self._theta.size, self.dtype)
        with self._params_lock.write():
            self._theta[...] = new

    @property
    def params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W, b), …]: writable views into theta, one pair per layer."""
        return self._views(self.theta)

    def get_config(self) -> dict:
        """Everything needed to rebuild this network (not its parameters)."""
        return {
            "n_inputs": self.n_inputs,
            "layers": [layer.to_dict() for layer in self.layers],
            "loss": self.loss.to_dict(),
            "dtype": self.dtype.name,
            "seed": self.seed,
            "alpha": self.alpha,
            "n_threads": self.n_threads,
        }

    @classmethod
    def from_config(cls, config: dict) -> Network:
        """Build an (initialised, untrained) network from get_config()'s dict."""
        return cls(
            n_inputs=config["n_inputs"],
            layers=[Dense(**layer) for layer in config["layers"]],
            loss=Loss(**config["loss"]),
            dtype=config["dtype"],
            seed=config["seed"],
            alpha=config["alpha"],
            n_threads=config.get("n_threads"),
        )

    def __repr__(self) -> str:
        layers = ", ".join(
            f"Dense({lay.units}, {lay.activation!r}"
            + (f", dropout={lay.dropout})" if lay.dropout else ")") for lay in self.layers)
        return (f"Network(n_inputs={self.n_inputs}, layers=[{layers}], "
                f"loss={self.loss.name!r}, dtype={self.dtype.name!r})")

    def _snapshot(self) -> tuple[dict, np.ndarray, int]:
        """(config, copy of θ, shuffling-stream state), consistent even during a fit."""
        with self._params_lock.read():
            return self.get_config(), self._theta.copy(), int(self._rng_state[0])

    def __getstate__(self) -> dict:
        config, theta, rng_state = self._snapshot()
        return {"config": config, "theta": theta,
                "rng_state": np.array([rng_state], dtype=np.uint64)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(Network.from_config(state["config"]).__dict__)
        self.theta[...] = state["theta"]
        self._rng_state[...] = state["rng_state"]

    # ---- inputs -----------------------------------------------------------

    def _check_X(self, X, name="X") -> np.ndarray:
        return V.check_X(X, self.n_inputs, self.dtype, name)

    def _check_y(self, y, n_rows, name="y") -> np.ndarray:
        return V.check_targets(y, n_rows, self.loss.name, self.n_outputs, self.dtype, name)

    def _chunk_rows(self, n_rows: int) -> int:
        per_row = _engine.workspace_size(self._sizes, 1)
        return max(1, min(n_rows, _CHUNK_ELEMENTS // per_row))

    def _workspace(self, rows: int) -> np.ndarray:
        return np.empty(_engine.workspace_size(self._sizes, rows), dtype=self.dtype)

    def _blas_threads(self, rows: int, fit: bool = False) -> _threads.BlasThreads:
        """The BLAS threads for batches of `rows` rows: at most n_threads (default:
        the BLAS's own setting), 1 for small shapes; fit also times its choice
        (see cbackprop/_threads.py)."""
        most = min(self.n_threads or _threads.default_threads(), _threads.available_cores())
        start = _threads.threads_for_shape(self._sizes, rows, most)
        if not fit:
            return _threads.BlasThreads(start)
        # Later fits start from what earlier ones measured.
        if (rows, most) not in self._fit_threads:
            sure = _threads.forward_flops(self._sizes, rows) >= _threads.SURE_FLOPS_FOR_THREADS
            self._fit_threads[(rows, most)] = _threads.FitThreads(start, most, sure)
        return self._fit_threads[(rows, most)]

    # ---- inference ------------------------------------------------------

    def predict(self, X) -> np.ndarray:
        """The network's outputs for each row of X, shape (n_samples, n_outputs).

        Probabilities for softmax/sigmoid outputs. Runs in row chunks without
        the GIL, so memory stays bounded and threads can predict at once;
        during a fit it sees θ as it was between two engine chunks.
        """
        X = self._check_X(X)
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        rows = self._chunk_rows(X.shape[0])
        ws = self._workspace(rows)
        with self._blas_threads(rows), self._params_lock.read():
            _engine.predict(self._sizes, self._acts, self._theta, X, out, rows, ws)
        return out

    def _loss_pass(self, X, Y, w, with_grad: bool) -> tuple[float, int]:
        """(L(θ), rows classified right); with_grad, ∇L(θ) is left in self.grad."""
        loss, correct, grad = self._loss_grad_pass(X, Y, w, with_grad)
        if with_grad:
            self.grad = grad
        return loss, correct

    def _loss_grad_pass(self, X, Y, w, with_grad: bool) -> tuple[float, int, np.ndarray]:
        """(L(θ), rows classified right, ∇L(θ) in a new array when with_grad)."""
        rows = self._chunk_rows(X.shape[0])
        ws = self._workspace(rows)
        # Private (concurrent calls must not share one); unused without with_grad.
        grad = np.empty_like(self._theta) if with_grad else np.empty(0, self.dtype)
        with self._blas_threads(rows), self._params_lock.read():
            loss, correct = _engine.loss_and_grad(
                self._sizes, self._acts, self.loss.code, self.loss.delta, self.alpha,
                self._theta, grad, X, Y, w, rows, ws, with_grad)
        return loss, correct, grad

    def evaluate(self, X, y, sample_weight=None) -> dict[str, float]:
        """{"loss": L(θ) on (X, y)} plus "accuracy" for classification losses.

        The loss is the (weighted) mean cost plus the L2 term, as in training.
        """
        X = self._check_X(X)
        Y = self._check_y(y, X.shape[0])
        w = V.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        return self._evaluate_checked(X, Y, w)

    def _evaluate_checked(self, X, Y, w) -> dict[str, float]:
        loss, correct = self._loss_pass(X, Y, w, with_grad=False)
        result = {"loss": float(loss)}
        if self.loss.name in REQUIRED_OUTPUT:
            result["accuracy"] = correct / X.shape[0]
        return result

    def loss_and_grad(self, X, y, sample_weight=None) -> tuple[float, np.ndarray]:
        """L(θ) and ∇L(θ) over all of (X, y) in one pass.

        Returns the loss and a copy of the gradient (also left in `self.grad`),
        in θ's flat layout.
        """
        X = self._check_X(X)
        Y = self._check_y(y, X.shape[0])
        w = V.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        loss, _, grad = self._loss_grad_pass(X, Y, w, with_grad=True)
        self.grad = grad
        return float(loss), grad.copy()

    def trace(self, x, y) -> list[LayerTrace]:
        """One example's forward and backward pass, layer by layer.

        Parameters
        ----------
        x : array-like, shape (n_inputs,) or (1, n_inputs)
        y : its target (a class index, a one-hot row, or target values)

        Returns
        -------
        list of LayerTrace(z, a, dC_dz, dC_dW, dC_db), from the first layer to
        the output; C is this example's cost (plus the L2 term if alpha > 0).
        """
        x = V._as_numeric_array(x, "x")
        X = self._check_X(x.reshape(1, -1) if x.ndim == 1 else x, "x")
        if X.shape[0] != 1:
            raise ValueError(f"trace takes one example, got {X.shape[0]} rows")
        y = V._as_numeric_array(y, "y", allow_bool=True)
        if self.loss.name == "cross_entropy" and y.ndim == 0:
            Y = self._check_y(y.reshape(1), 1)       # a class index
        else:
            Y = self._check_y(y.reshape(1, -1), 1)   # a target row
        grad = np.zeros_like(self.theta)
        ws = self._workspace(1)
        with self._params_lock.read():
            _engine.loss_and_grad(self._sizes, self._acts, self.loss.code, self.loss.delta,
                                  self.alpha, self._theta, grad, X, Y,
                                  np.empty(0, self.dtype), 1, ws, True)
        records = []
        for (Z, A, dZ), (dW, db) in zip(_engine.workspace_views(ws, self._sizes, 1, 1),
                                        self._views(grad)):
            records.append(LayerTrace(Z[0].copy(), A[0].copy(), dZ[0].copy(), dW, db))
        return records

    # ---- training -------------------------------------------------------

    def stop(self) -> None:
        """Ask a running fit (in another thread) to stop after its current chunk."""
        self._stop_requested = True

    def fit(self, X, y, optimizer: Optimizer | None = None, epochs: int = 1,
            batch_size: int = 32, validation_data=None, shuffle: bool = True,
            verbose: bool | str = False, sample_weight=None, callbacks=None) -> History:
        """Train by minibatch backpropagation; θ is updated in place.

        Parameters
        ----------
        X : array-like (n_samples, n_inputs)
        y : targets (see DESIGN: class indices or one-hot for cross_entropy)
        optimizer : Optimizer, default Adam()
            Its state (momentum, moments) carries over between fit calls.
        epochs : int, default 1
        batch_size : int, default 32 (the last batch of an epoch may be smaller)
        validation_data : (X_val, y_val), optional
            Evaluated after each epoch ("val_loss", "val_accuracy").
        shuffle : bool, default True
            Reshuffle the rows every epoch (seeded by the network's seed).
        verbose : bool or {"bar", "lines"}, default False
            Show each epoch's figures: True gives a tqdm bar on a terminal when
            tqdm is installed, otherwise one line per epoch; "bar" or "lines"
            choose (`cbackprop.progress`). Integers count as booleans.
        sample_weight : array-like (n_samples,), optional
            Per-row weights; each batch's loss is the weighted mean.
        callbacks : list of callables, optional
            Each is called as callback(epoch, logs) after every epoch; one
            that returns True stops training.

        Returns
        -------
        History

        Raises
        ------
        DivergenceError
            If the loss or θ becomes non-finite; θ and the optimizer are
            restored to their state before this call.
        RuntimeError
            If another fit of this network, or with this optimizer, is running.
        KeyboardInterrupt
            On Ctrl-C (fit in the main thread): raised at the next chunk
            boundary (about 0.1 s), with θ and the optimizer as that chunk
            left them, whole and finite.
        """
        # Every check happens before anything changes.
        X = self._check_X(X)
        Y = self._check_y(y, X.shape[0])
        w = V.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        if w.size and not w.all():
            # Rows of weight 0 are dropped, as if absent: a batch of only such
            # rows would have no weighted mean loss.
            keep = w != 0
            X, Y, w = X[keep], Y[keep], w[keep]
        epochs = V.check_int(epochs, "epochs", 0)
        batch_size = V.check_int(batch_size, "batch_size", 1)
        check_verbose(verbose)
        if optimizer is None:
            optimizer = Adam()
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a cb.Optimizer (e.g. cb.SGD), got {optimizer!r}")
        hp = optimizer.hyperparameters()
        state = optimizer.prepare(self.theta)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            Xv = self._check_X(validation_data[0], "validation X")
            Yv = self._check_y(validation_data[1], Xv.shape[0], "validation y")
        shuffle = V.check_bool(shuffle, "shuffle")
        if callable(callbacks):
            raise TypeError("callbacks must be a list of callables, got a single callable")
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must be callables, got {cb!r}")
        if not self._fit_lock.acquire(blocking=False):
            raise RuntimeError("this network is already being fitted in another thread")
        try:
            with _busy_optimizers_lock:
                if id(optimizer) in _busy_optimizers:
                    raise RuntimeError("this optimizer is in use by another fit; "
                                       "give each network its own optimizer")
                _busy_optimizers.add(id(optimizer))
            try:
                self._stop_requested = False
                optimizer.state = state
                no_weights = np.empty(0, self.dtype)
                # Ctrl-C stops fit at the next chunk boundary, then raises KeyboardInterrupt.
                with DeferredInterrupt(self.stop) as interrupt:
                    return self._fit_epochs(
                        X, Y, w, optimizer, hp, epochs, min(batch_size, X.shape[0]),
                        (Xv, Yv, no_weights) if validation_data is not None else None,
                        shuffle, verbose, callbacks, interrupt)
            finally:
                with _busy_optimizers_lock:
                    _busy_optimizers.discard(id(optimizer))
        finally:
            self._fit_lock.release()

    def _fit_epochs(self, X, Y, w, optimizer, hp, epochs, B, validation, shuffle, verbose,
                    callbacks, interrupt) -> History:
        n = X.shape[0]
        history = History()
        with self._params_lock.read():
            saved = (self.theta.copy(), optimizer.state.copy(), optimizer.t,
                     self._rng_state.copy())
        order = np.arange(n, dtype=np.intp)
        ws = self._workspace(B)
        grad = np.zeros_like(self._theta)
        classifier = self.loss.name in REQUIRED_OUTPUT
        rows_per_chunk = B

        def diverged(what: str):
            self.theta[...] = saved[0]
            optimizer.state[...] = saved[1]
            optimizer._t[0] = saved[2]
            self._rng_state[...] = saved[3]
            return DivergenceError(
                f"fit stopped: {what} became NaN or infinite (try a smaller learning rate); "
                "the parameters before this fit were restored"
            )

        with (self._blas_threads(B, fit=True) as threads,
              Progress(epochs, n, verbose) as progress):
            for epoch in range(epochs):
                start_time = time.perf_counter()
                if shuffle:
                    with self._params_lock.write():
                        _engine.shuffle(order, self._rng_state)
                total = correct = 0.0
                pos = 0
                while pos < n:
                    if self._stop_requested:
                        break
                    stop = min(n, pos + threads.chunk_rows(rows_per_chunk, B))
                    t0 = time.perf_counter()
                    # Readers see θ only between chunks, and only finite.
                    with self._params_lock.write():
                        loss_sum, done, ok_rows, status = _engine.train_batches(
                            self._sizes, self._acts, self.loss.code,
                            self.loss.delta, self.alpha, self._theta, grad, optimizer.state,
                            optimizer.code, hp, optimizer._t, X, Y, w, order, pos, stop, B, ws,
                            self._dropout, self._rng_state)
                        error = (diverged("the loss") if status != _engine.STATUS_OK
                                 else None if V.all_finite(self._theta)
                                 else diverged("the parameters"))
                    if error is not None:
                        raise error
                    elapsed = time.perf_counter() - t0
                    threads.observe(elapsed, done)
                    # Aim each chunk at about _CHUNK_SECONDS of work, in whole batches.
                    scale = _CHUNK_SECONDS / max(elapsed, 1e-6)
                    rows_per_chunk = int(min(max(done * scale, B), 1 << 40)) // B * B
                    total += loss_sum
                    correct += ok_rows
                    pos += done
                if pos == 0 or interrupt.pending:
                    break
                logs = {"loss": total / pos}
                if classifier:
                    logs["accuracy"] = correct / pos
                if validation is not None:
                    for key, value in self._evaluate_checked(*validation).items():
                        logs["val_" + key] = value
                logs["time"] = time.perf_counter() - start_time
                history.record(epoch, logs)
                progress.update(epoch, logs)
                stop_now = self._stop_requested or pos < n
                for cb in callbacks:
                    stop_now |= bool(cb(epoch, logs))
                if stop_now:
                    break
        return history

    # ---- files ----------------------------------------------------------

    def save(self, path) -> None:
        """Write the network (config and parameters) to path, atomically.

        The file is safetensors-compatible: one tensor per W and b, the config
        and a SHA-256 checksum in the metadata. `cbackprop.load` reads it back.
        """
        from cbackprop.serialization import save
        save(self, path)

    # ---- interop (cbackprop/interop.py; torch and onnx are optional) --------

    def to_torch(self, output_activation: bool = True):
        """This network as a `torch.nn.Sequential` (see `cbackprop.interop.to_torch`)."""
        from cbackprop import interop
        return interop.to_torch(self, output_activation)

    @classmethod
    def from_torch(cls, module, loss=None, dtype=None) -> Network:
        """A Network copied from a `torch.nn.Sequential` (see `cbackprop.interop.from_torch`)."""
        from cbackprop import interop
        return interop.from_torch(module, loss, dtype, network_class=cls)

    def to_onnx(self, path=None, opset: int = 17):
        """Export the forward pass as an ONNX model (see `cbackprop.interop.to_onnx`)."""
        from cbackprop import interop
        return interop.to_onnx(self, path, opset)
