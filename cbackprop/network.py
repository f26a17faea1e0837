"""Network: layer specs, the flat parameter vector θ, and fit / predict.

Backpropagation in one picture (code in `_core/_engine.pyx`):

    forward   zˡ = aˡ⁻¹·Wˡ + bˡ,  aˡ = σ(zˡ)          (∂zˡ/∂Wˡ = aˡ⁻¹)
    output    δᴸ = ∂C/∂zᴸ         (softmax + cross-entropy: softmax(z) − y)
    backward  δˡ⁻¹ = σ'(zˡ⁻¹) ⊙ (δˡ·Wˡᵀ)
    gradient  ∂C/∂Wˡ = aˡ⁻¹ᵀ·δˡ,   ∂C/∂bˡ = Σ_rows δˡ
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import numpy as np

from cbackprop import _session, distributed, interop, serialization
from cbackprop import _validation as V
from cbackprop._concurrency import ReadWriteLock
from cbackprop._core import _engine
from cbackprop._session import DivergenceError, Evaluator, TrainingSession
from cbackprop.activations import HIDDEN_ACTIVATIONS, RELU_FAMILY
from cbackprop.activations import code as activation_code
from cbackprop.history import History
from cbackprop.layers import Dense
from cbackprop.losses import LINKED_OUTPUT, REQUIRED_OUTPUT, Loss, get_loss
from cbackprop.optimizers import Adam, Optimizer

__all__ = ["Network", "LayerTrace", "Trace", "LossWarning", "DivergenceError", "load"]


class LayerTrace(NamedTuple):
    """One layer of a single example's forward and backward pass."""

    z: np.ndarray       #: weighted input zˡ = aˡ⁻¹·Wˡ + bˡ, shape (units,)
    a: np.ndarray       #: activation aˡ = σ(zˡ), shape (units,)
    dC_dz: np.ndarray   #: δˡ = ∂C/∂zˡ, shape (units,)
    dC_dW: np.ndarray   #: ∂C/∂Wˡ = aˡ⁻¹ᵀ·δˡ, shape (inputs, units)
    dC_db: np.ndarray   #: ∂C/∂bˡ = δˡ, shape (units,)


#: A last epoch's training loss this many times the first epoch's means the fit blew up.
BLOWN_UP = 100.0


class LossWarning(RuntimeWarning):
    """The training loss rose by orders of magnitude during a fit (steps too large)."""


def _warns_when_the_loss_blows_up(fit):
    """Network.fit, warning (LossWarning) when its History's loss rose by BLOWN_UP× or
    more from the first epoch to the last; under MPI, on rank 0 alone."""

    @functools.wraps(fit)
    def checked(self, *args, **kwargs):
        history = fit(self, *args, **kwargs)
        loss = history.history.get("loss", [])
        comm = kwargs.get("comm")
        if len(loss) >= 2 and loss[-1] > BLOWN_UP * loss[0] and (
                comm is None or comm.Get_rank() == 0):
            optimizer = kwargs.get("optimizer", args[2] if len(args) > 2 else None)
            lr = getattr(optimizer, "lr", None)
            warnings.warn(
                f"the training loss rose from {loss[0]:.4g} (first epoch) to {loss[-1]:.4g} "
                "(last): the steps are far too large for this data. Try a learning rate 10 "
                f"to 1000 times smaller{'' if lr is None else f' than lr={lr:g}'}, or scale "
                "the features to about [-1, 1]", LossWarning, stacklevel=2)
        return history

    return checked


class Trace(list):
    """`Network.trace`'s result: a list of LayerTrace, one per layer (first to output),
    that prints as a table (and shows as one in Jupyter): per layer and unit, z, a and
    ∂C/∂z, and the size of ∂C/∂W. Wide layers show their first and last units."""

    #: Units shown per layer before the middle ones are elided.
    shown_units = 8

    def __init__(self, records, cost: float | None = None):
        super().__init__(records)
        #: The example's cost C (with the L2 term), if known.
        self.cost = cost

    def _rows(self) -> list[tuple[str, ...]]:
        rows = []
        for layer, rec in enumerate(self, start=1):
            units = list(range(rec.z.shape[0]))
            if len(units) > self.shown_units:
                half = self.shown_units // 2
                units = units[:half] + [None] + units[-half:]
            for j in units:
                if j is None:
                    rows.append(("", "…", "…", "…", "…", ""))
                    continue
                grad = f"|∂C/∂W| {np.linalg.norm(rec.dC_dW):.3g}" if j == units[0] else ""
                rows.append((str(layer), str(j + 1), f"{rec.z[j]:.6g}", f"{rec.a[j]:.6g}",
                             f"{rec.dC_dz[j]:.6g}", grad))
        return rows

    _HEADER = ("layer", "unit", "z", "a", "∂C/∂z", "")

    def __repr__(self) -> str:
        rows = [self._HEADER] + self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEADER))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        head = f"Trace of one example through {len(self)} layers"
        if self.cost is not None:
            head += f" (cost C = {self.cost:.6g})"
        return "\n".join([head + ":"] + lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        import html

        cells = "".join(f"<th>{html.escape(h)}</th>" for h in self._HEADER)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in self._rows())
        caption = "" if self.cost is None else f"<caption>cost C = {self.cost:.6g}</caption>"
        return f"<table>{caption}<tr>{cells}</tr>{body}</table>"


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
        output), "mse", "huber" (or `cb.Huber(delta)`) or "poisson" (identity
        output giving log μ: `cb.Poisson()`). Default: from the
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
    sizes : tuple of int
        Widths, inputs first: (n_inputs, units of each layer…).
    rng_state : ndarray
        One uint64: the state of the shuffling and dropout stream (splitmix64),
        advanced in place by every fit, saved with the network.
    params_lock : ReadWriteLock
        fit changes θ under its write side, one engine chunk at a time;
        predict, evaluate and save read under its read side, so they see whole
        chunks.
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
        needed = REQUIRED_OUTPUT.get(loss.name, LINKED_OUTPUT.get(loss.name))
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

        self.sizes = (n_inputs,) + tuple(lay.units for lay in layers)
        V.check_widths(self.sizes)
        n_params = int(sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:])))
        self._theta = np.zeros(n_params, dtype=self.dtype)
        self.grad = np.zeros(n_params, dtype=self.dtype)
        self.params_lock = ReadWriteLock()
        rng = np.random.default_rng(seed)
        for (W, _), layer in zip(self.params, self.layers):
            fan_in, fan_out = W.shape
            if layer.activation in RELU_FAMILY:        # He uniform
                limit = np.sqrt(6.0 / fan_in)
            else:                                      # Glorot uniform
                limit = np.sqrt(6.0 / (fan_in + fan_out))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        self.rng_state = rng.integers(0, 2**63, size=1, dtype=np.uint64)
        #: Names of the output classes (str or int), if known; save and load keep them.
        self.classes: list | None = None
        #: How the training data was read (a JSON object: the command line keeps its
        #: label column, delimiter, header and column names), if known; save and load
        #: keep it.
        self.data_options: dict | None = None

    # ---- structure ------------------------------------------------------

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def engine_layout(self) -> _engine.Layout:
        """This network as the kernels see it (widths, activation and loss codes,
        dropout, alpha as it is now): built by each session, predict and trace."""
        return _engine.Layout(self.sizes, [activation_code(lay.activation) for lay in self.layers],
                              [lay.dropout for lay in self.layers], self.loss.code,
                              self.loss.delta, self.alpha)

    def _views(self, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out, p = [], 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
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
        with self.params_lock.write():
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
        with self.params_lock.read():
            return self.get_config(), self._theta.copy(), int(self.rng_state[0])

    def __getstate__(self) -> dict:
        config, theta, rng_state = self._snapshot()
        return {"config": config, "theta": theta,
                "rng_state": np.array([rng_state], dtype=np.uint64)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(Network.from_config(state["config"]).__dict__)
        self.theta[...] = state["theta"]
        self.rng_state[...] = state["rng_state"]

    # ---- inference ------------------------------------------------------

    def predict(self, X) -> np.ndarray:
        """The network's outputs for each row of X, shape (n_samples, n_outputs).

        Probabilities for softmax/sigmoid outputs. X may be a scipy.sparse
        matrix or array (as for `fit`). Runs in row chunks without
        the GIL, so memory stays bounded and threads can predict at once;
        during a fit it sees θ as it was between two engine chunks.
        """
        X = V.check_X(X, self.n_inputs, self.dtype)
        sparse = not isinstance(X, np.ndarray)
        layout = self.engine_layout()
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        rows = _session.chunk_rows(layout, X.shape[0], sparse)
        ws = np.empty(_engine.workspace_size(layout, rows, sparse), dtype=self.dtype)
        with _session.blas_threads(self, rows), self.params_lock.read():
            _engine.predict(layout, self._theta, X, out, rows, ws)
        return out

    def evaluate(self, X, y, sample_weight=None) -> dict[str, float]:
        """{"loss": L(θ) on (X, y)} plus "accuracy" for classification losses.

        The loss is the (weighted) mean cost plus the L2 term, as in training.
        """
        return Evaluator(self, X, y, sample_weight).evaluate()

    def loss_and_grad(self, X, y, sample_weight=None) -> tuple[float, np.ndarray]:
        """L(θ) and ∇L(θ) over all of (X, y) in one pass.

        Returns the loss and a copy of the gradient (also left in `self.grad`),
        in θ's flat layout.
        """
        loss, _, grad = Evaluator(self, X, y, sample_weight).loss_and_grad()
        self.grad = grad
        return loss, grad.copy()

    def trace(self, x, y) -> Trace:
        """One example's forward and backward pass, layer by layer.

        Parameters
        ----------
        x : array-like, shape (n_inputs,) or (1, n_inputs)
        y : its target (a class index, a one-hot row, or target values)

        Returns
        -------
        Trace
            A list of LayerTrace(z, a, dC_dz, dC_dW, dC_db), from the first
            layer to the output, that prints as a table (`Trace`); C is this
            example's cost (plus the L2 term if alpha > 0), kept as `.cost`.
        """
        x = V.as_numeric_array(x, "x")
        X = V.check_X(x.reshape(1, -1) if x.ndim == 1 else x, self.n_inputs, self.dtype, "x")
        if X.shape[0] != 1:
            raise ValueError(f"trace takes one example, got {X.shape[0]} rows")
        y = V.as_numeric_array(y, "y", allow_bool=True)
        # A class index, or a target row.
        y = y.reshape(1) if self.loss.name == "cross_entropy" and y.ndim == 0 else y.reshape(1, -1)
        Y = V.check_targets(y, 1, self.loss.name, self.n_outputs, self.dtype)
        layout = self.engine_layout()
        grad = np.zeros_like(self.theta)
        ws = np.empty(_engine.workspace_size(layout, 1), dtype=self.dtype)
        with self.params_lock.read():
            cost, _ = _engine.loss_and_grad(layout, self._theta, grad, X, Y,
                                            np.empty(0, self.dtype), 1, ws, True)
        records = []
        for (Z, A, dZ), (dW, db) in zip(_engine.workspace_views(ws, layout, 1, 1),
                                        self._views(grad)):
            records.append(LayerTrace(Z[0].copy(), A[0].copy(), dZ[0].copy(), dW, db))
        return Trace(records, float(cost))

    # ---- training -------------------------------------------------------

    def stop(self) -> None:
        """Ask a running fit (in another thread) to stop after its current chunk."""
        _session.request_stop(self)

    @_warns_when_the_loss_blows_up
    def fit(self, X, y=None, optimizer: Optimizer | None = None, epochs: int = 1,
            batch_size: int = 32, validation_data=None, shuffle: bool = True,
            verbose: bool | str = False, sample_weight=None, callbacks=None,
            comm=None, checkpoint=None, checkpoint_every: int = 1,
            health: bool = False, checkpoint_metadata: dict | None = None,
            checkpoint_overwrite: bool = False) -> History:
        """Train by minibatch backpropagation; θ is updated in place.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array (n_samples, n_inputs)
            Sparse X (CSR, CSC; other formats are converted to CSR) is never
            densified: the first layer works on its non-zeros. Or a stream
            (`cb.datasets.ParquetStream`: a Parquet file larger than memory), read
            one buffer of rows at a time in the order `cbackprop.streaming` states,
            with y=None; validation_data, health and callbacks work as for arrays,
            sample_weight and checkpoint are refused.
        y : targets (None when X is a stream: its label column)
            cross_entropy: class indices 0..k−1 (integers or integral floats)
            or one-hot rows (n, k); binary_cross_entropy: values in [0, 1];
            mse, huber: real values, shape (n,) or (n, k).
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
            that returns True stops training. With health=True, logs["health"]
            holds the epoch's health records.
        comm : mpi4py communicator, optional
            Train data-parallel over its ranks (`mpirun -n R python …`): each
            rank passes only its own rows, batch_size is per rank, and θ stays
            equal on every rank (see `cbackprop.distributed`). Needs the
            `[mpi]` extra.
        checkpoint : path, optional
            Write the run there every `checkpoint_every` epochs and when fit
            ends (finished, stopped or interrupted: as of its last finished
            chunk), atomically: network, optimizer state, random stream, row
            order, epoch and History. `cbackprop.resume(path)` continues it
            (bitwise as uninterrupted with n_threads=1). A checkpoint of
            another run already at path is not replaced unless
            checkpoint_overwrite=True (FileExistsError, before any training);
            any other file there is.
        checkpoint_every : int, default 1
        checkpoint_metadata : dict, optional
            Written with every checkpoint and given back as
            `cbackprop.resume(path).metadata` (str keys; str, int, float,
            bool, None, lists and dicts of them): e.g. how the data was read.
        checkpoint_overwrite : bool, default False
            Start this run's checkpoint over one that lies at `checkpoint`
            (whose run is then lost): without it, that is FileExistsError.
        health : bool, default False
            Measure each layer's training health inside the engine, on every
            8th step: history["health"] gets one record per layer per epoch
            (gradient norm, weight norm, update-to-weight ratio, dead and
            saturated fractions; `History.health_table`, `History.plot(kind=
            "health")`). Off by default: it costs a few per cent.

        Returns
        -------
        History

        Warns
        -----
        LossWarning
            When the last epoch's training loss is 100× the first's or more
            (the steps are far too large); under MPI, on rank 0 alone.

        Raises
        ------
        DivergenceError
            If the loss or θ becomes non-finite; θ and the optimizer are
            restored to their state before this call.
        RuntimeError
            If another fit of this network, or with this optimizer, is running.
        FileExistsError
            If `checkpoint` holds another run's checkpoint and
            checkpoint_overwrite is False (continue that run with
            `cbackprop.resume(checkpoint).fit(...)`).
        KeyboardInterrupt
            On Ctrl-C (fit in the main thread): raised at the next chunk
            boundary (about 0.1 s), with θ and the optimizer as that chunk
            left them, whole and finite.
        """
        optimizer = Adam() if optimizer is None else optimizer

        def keep_other_runs(session):
            """FileExistsError for another run's checkpoint at `checkpoint`."""
            if checkpoint is None or V.check_bool(checkpoint_overwrite, "checkpoint_overwrite"):
                return
            V.check_json_object(checkpoint_metadata, "checkpoint_metadata")   # its errors first
            held = serialization.checkpoint_at(checkpoint)
            if held is not None:
                raise FileExistsError(
                    f"{checkpoint} holds the checkpoint of another run ({held}): continue "
                    f"that run with cbackprop.resume(path).fit(X, y) (train --resume), or "
                    f"pass checkpoint_overwrite=True to replace it, or choose another path")

        options = dict(checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                       checkpoint_metadata=checkpoint_metadata)
        if comm is not None:
            return distributed.fit(self, X, y, comm, optimizer=optimizer, epochs=epochs,
                                   batch_size=batch_size, validation_data=validation_data,
                                   shuffle=shuffle, verbose=verbose,
                                   sample_weight=sample_weight, callbacks=callbacks,
                                   health=health, prepare=keep_other_runs, **options)
        session = TrainingSession(self, X, y, sample_weight, optimizer=optimizer,
                                  batch_size=batch_size, shuffle=shuffle,
                                  validation_data=validation_data, health=health)
        keep_other_runs(session)
        return session.fit(epochs, verbose, callbacks, **options)

    # ---- files ----------------------------------------------------------

    def save(self, path) -> None:
        """Write the network (config and parameters) to path, atomically.

        The file is safetensors-compatible: one tensor per W and b, the config
        and a SHA-256 checksum in the metadata. `cbackprop.load` reads it back.
        """
        config, theta, rng_state = self._snapshot()
        serialization.write(path, config, theta, rng_state, labels=self.classes,
                            data=self.data_options)

    # ---- interop (cbackprop/interop.py; torch and onnx are optional) --------

    def to_torch(self, output_activation: bool = True):
        """This network as a `torch.nn.Sequential` (see `cbackprop.interop.to_torch`)."""
        return interop.to_torch(self, output_activation)

    @classmethod
    def from_torch(cls, module, loss=None, dtype=None) -> Network:
        """A Network copied from a `torch.nn.Sequential` (see `cbackprop.interop.from_torch`)."""
        return interop.from_torch(cls, module, loss, dtype)

    def to_onnx(self, path=None, opset: int = 17):
        """Export the forward pass as an ONNX model (see `cbackprop.interop.to_onnx`)."""
        return interop.to_onnx(self, path, opset)


def load(path) -> Network:
    """Read a network written by `Network.save` (see `cbackprop.serialization`).

    Raises
    ------
    ValueError
        For a truncated, damaged, foreign or crafted file. Nothing is
        unpickled, and nothing larger than the file is read or allocated.
    """
    return serialization.read(path, Network.from_config)
