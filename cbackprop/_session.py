"""One fit of one network: the training session.

A session owns everything one fit needs, set up once and never per epoch: the
checked arrays, the row order and the network's random stream, the workspace,
the gradient buffer, the BLAS thread choice, the snapshot that a diverged fit
returns to, and the step loop. `Network.fit`, `Network.evaluate`,
`Network.loss_and_grad`, `gradcheck` and the estimators (every solver and
`partial_fit`) all go through it; it reads the network only through public
names, and never imports `network`.

The step boundary, named once:

    compute ∇L(θ) of a batch  ->  reducer.reduce_gradient(grad, …)  ->  apply the update

Without a reducer the engine fuses the three, chunk by chunk without the GIL:
each layer's update runs inside the backward pass (SGD even inside the ∂W
GEMM). With one (data-parallel training, `cbackprop.distributed`), each batch
comes back to Python between the gradient and the update, or, for a reducer
that overlaps its communication with the backward pass (`Reducer.bucket_size`),
after each layer of the backward pass; `Reducer` states the hook's contract.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref

import numpy as np

from cbackprop import _threads, checkpoint_format, serialization, trainer
from cbackprop import _validation as V
from cbackprop._concurrency import DeferredInterrupt
from cbackprop._core import _engine
from cbackprop._core._sparse import CSR
from cbackprop.activations import RELU_FAMILY
from cbackprop.history import History
from cbackprop.losses import REQUIRED_OUTPUT
from cbackprop.optimizers import Optimizer
from cbackprop.progress import Progress, check_verbose
from cbackprop.streaming import Stream

#: Rows per full-pass chunk are chosen so the workspace stays near this size.
CHUNK_ELEMENTS = 1 << 21

# Networks (with their running session) and optimizers inside a running fit: one
# fit per network, and two fits must not share an optimizer's state. Held weakly,
# by the objects themselves (an id could be reused once its object is freed).
_busy_optimizers: weakref.WeakSet = weakref.WeakSet()
_running: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_busy_lock = threading.Lock()
# Each network's measured thread choices, so later fits start from them.
_thread_choices: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Each network's fit buffers (gradient, rollback copies, the workspaces of
# training and validation), kept between its fits: a fresh 100 MB buffer costs
# more in page faults than a step of a large network. One fit per network at a
# time, so they are never shared; predict and evaluate allocate their own.
_fit_buffers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# What train_batches is given to keep when it keeps no rollback point.
_NOTHING = {np.dtype(np.float32): np.empty(0, np.float32),
            np.dtype(np.float64): np.empty(0, np.float64)}


def _buffer(network, name: str, size: int, dtype) -> np.ndarray:
    """The network's kept 1-D buffer `name` of `size` elements of dtype (contents undefined)."""
    kept = _fit_buffers.setdefault(network, {})
    buf = kept.get(name)
    if buf is None or buf.shape != (size,) or buf.dtype != dtype:
        kept.pop(name, None)          # free the old one before allocating its successor
        buf = kept[name] = np.empty(size, dtype=dtype)
    return buf


class DivergenceError(FloatingPointError):
    """fit stopped because the loss or the parameters became NaN or infinite.

    The network keeps the parameters (and optimizer state) it had before the fit.
    """


class Reducer:
    """The step boundary's hook: what a session with a reducer calls, for
    training one network over several processes (`cbackprop.distributed`).
    This base class is the one-process reducer: it changes nothing.

    A session with a reducer trains each batch as: its gradient (engine) ->
    `reduce_gradient` -> the optimizer's update, and asks `reduce_sums` to
    total its epoch figures. Every process must make the same calls in the
    same order, so stops and failures are agreed through `reduce_gradient`.
    """

    def start(self, session: TrainingSession) -> None:
        """Called once the session is entered, before its first step (e.g. to
        give every process rank 0's θ and optimizer state)."""

    def reduce_gradient(self, grad: np.ndarray, weight: float, loss: float, rows: int,
                        stop: bool, failed: bool) -> tuple[float, int, bool, bool]:
        """Turn this process's batch gradient into the one every process applies.

        grad is the flat ∇L(θ) of this process's batch (the weighted mean over
        its rows plus the L2 term, θ's layout and dtype; zeros when failed);
        weight is the batch's total row weight (its row count when unweighted),
        loss its loss and rows its rows; stop says this process was asked to
        stop (stop(), Ctrl-C); failed that its batch loss was not finite.
        Change grad in place and return what every process agrees: the step's
        (loss, rows) over all processes, stop (the fit ends after this step)
        and failed (DivergenceError everywhere). Keep no reference to grad.
        """
        return loss, rows, stop, failed

    # The overlapped form of the same step (`bucket_size` not None): the session
    # calls begin_step once the batch's loss is known, gradient_ready for each
    # layer of the backward pass as the engine finishes it, and finish_step
    # before the update. Its default is reduce_gradient at finish_step.

    def bucket_size(self, session: TrainingSession) -> int | None:
        """None (the default): the gradient comes whole to `reduce_gradient`.
        An int (elements the reducer sends at once): it comes a layer at a
        time as the backward pass produces it (`gradient_ready`), so that
        its reduction can start before the backward pass ends."""
        return None

    def begin_step(self, weight: float, loss: float, rows: int, stop: bool,
                   failed: bool) -> None:
        """After the batch's forward pass, before its backward pass: the
        arguments of `reduce_gradient` but grad."""
        self._step = (weight, loss, rows, stop, failed)

    def gradient_ready(self, grad: np.ndarray, lo: int, hi: int) -> None:
        """grad[lo:hi] holds its final values for this batch (zeros when failed).
        Segments (a layer's W and b) come from the end of θ's layout to its
        start, the output layer first, each ending where the one before
        began; change nothing in grad before `finish_step`."""

    def finish_step(self, grad: np.ndarray) -> tuple[float, int, bool, bool]:
        """The whole gradient is ready: what `reduce_gradient` does and returns."""
        return self.reduce_gradient(grad, *self._step)

    def reduce_sums(self, values: np.ndarray) -> None:
        """Replace values (float64) by their sums over the processes, in place."""

    def gather(self, value) -> list | None:
        """[value of every process, in rank order] on the first process, None
        on the others (a checkpoint is written by the first for all)."""
        return [value]

    @property
    def rank(self) -> int:
        """This process's number, 0 for the first."""
        return 0

    @property
    def size(self) -> int:
        """The number of processes."""
        return 1


def backward_plan(sizes) -> list[tuple[int, int, int]]:
    """The layers of a backward pass taken a layer at a time
    (`_engine.backward_layer`): (layer, grad's first element, grad's end),
    from the output layer back; together they cover θ's layout, end to start.

    A layer is not split further: its ∂W in row blocks would let more of the
    first layer's reduction overlap, but OpenBLAS rounds a block's float32
    GEMM differently from the whole (measured), and the gradient must stay
    the one `_engine.batch_gradient` gives, bit for bit."""
    offsets = np.cumsum([0] + [a * b + b for a, b in zip(sizes, sizes[1:])])
    return [(layer, int(offsets[layer]), int(offsets[layer + 1]))
            for layer in range(len(sizes) - 2, -1, -1)]


def chunk_rows(layout: _engine.Layout, n_rows: int, sparse: bool = False) -> int:
    """Rows per chunk of a full pass (predict, evaluate) over n_rows rows (of
    sparse input: no batch buffer, so more rows fit)."""
    per_row = _engine.workspace_size(layout, 1, sparse)
    return max(1, min(n_rows, CHUNK_ELEMENTS // per_row))


def blas_threads(network, rows: int) -> _threads.BlasThreads:
    """The BLAS threads for passes of `rows` rows through network (1 for small shapes)."""
    most = _threads.most_threads(network.n_threads)
    return _threads.BlasThreads(_threads.threads_for_shape(network.sizes, rows, most,
                                                            network.dtype))


def check_fit_options(epochs, verbose, callbacks) -> tuple[int, list]:
    """(epochs, list of callbacks) for `TrainingSession.fit`, checked."""
    epochs = V.check_int(epochs, "epochs", 0)
    check_verbose(verbose)
    if callable(callbacks):
        raise TypeError("callbacks must be a list of callables, got a single callable")
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {cb!r}")
    return epochs, callbacks


def request_stop(network) -> None:
    """Ask the session running on network, if any, to stop after its current chunk."""
    session = _running.get(network)
    if session is not None:
        session.stop()


class Evaluator:
    """Passes over all rows of `network` on (X, y) (no dropout, θ unchanged):
    the loss, its gradient and the accuracy. The data is checked here, once.
    `Network.evaluate`, `Network.loss_and_grad`, `gradcheck`, 'lbfgs' and a
    fit's validation figures use one; a `TrainingSession` is one that trains.

    Parameters
    ----------
    network : Network
    X, y, sample_weight : the data, as for `Network.evaluate`
    names : (str, str)
        How errors name X and y.
    in_fit : bool, default False
        The validation data of the fit that holds the network: may use the
        network's kept buffers.
    """

    def __init__(self, network, X, y, sample_weight=None, *, names=("X", "y"),
                 in_fit: bool = False):
        self.network = network
        self.layout = network.engine_layout()
        X = V.check_X(X, network.n_inputs, network.dtype, names[0])
        Y = V.check_targets(y, X.shape[0], network.loss.name, network.n_outputs,
                            network.dtype, names[1])
        w = V.check_sample_weight(sample_weight, X.shape[0], network.dtype)
        self.classifier = network.loss.name in REQUIRED_OUTPUT
        self.X, self.Y, self.w = X, Y, w
        self.sparse = isinstance(X, CSR)
        self.n_rows = X.shape[0]
        self.in_fit = in_fit

    # ---- passes over all rows (no dropout, θ unchanged) ---------------------------

    def loss_and_grad(self, with_grad: bool = True) -> tuple[float, int, np.ndarray | None]:
        """(L(θ), rows classified right, ∇L(θ) in a new array or None) over all rows."""
        net = self.network
        rows = chunk_rows(self.layout, self.n_rows, self.sparse)
        size = _engine.workspace_size(self.layout, rows, self.sparse)
        # Private unless run by the fit that holds the network (concurrent calls
        # must not share one); grad is unused without with_grad.
        ws = (_buffer(net, "validation workspace", size, net.dtype) if self.in_fit
              else np.empty(size, dtype=net.dtype))
        grad = np.empty_like(net.theta) if with_grad else np.empty(0, net.dtype)
        with blas_threads(net, rows), net.params_lock.read():
            loss, correct = _engine.loss_and_grad(self.layout, net.theta, grad, self.X, self.Y,
                                                  self.w, rows, ws, with_grad)
        return float(loss), correct, grad if with_grad else None

    def evaluate(self) -> dict[str, float]:
        """{"loss": L(θ)} plus "accuracy" for classification losses."""
        loss, correct, _ = self.loss_and_grad(with_grad=False)
        result = {"loss": loss}
        if self.classifier:
            result["accuracy"] = correct / self.n_rows
        return result


class TrainingSession(Evaluator):
    """One fit of `network` on (X, y): everything checked here, before anything
    changes. It is the one-network backend of `cbackprop.trainer.train` (`fit`),
    and an `Evaluator` of its training data.

    Parameters
    ----------
    network : Network
    X, y, sample_weight : the data, as for `Network.fit` (rows of weight 0 dropped);
        X may be a `cbackprop.streaming.Stream` (y and sample_weight None): it is then
        read one buffer at a time (`_stream_rows`), in the order that module states
    optimizer : Optimizer
    batch_size : int, default 32
    shuffle : bool, default True
        Reshuffle the rows every epoch, from the network's random stream.
    fresh_order : bool, default False
        Shuffle each epoch from the rows' own order (as scikit-learn's
        estimators do) instead of from the previous epoch's order.
    validation_data : (X_val, y_val), optional
        Evaluated after each epoch ("val_loss", "val_accuracy").
    health : bool, default False
        Measure each layer's training health inside the engine (see
        `health_records`); with a reducer, from each watched step's reduced
        gradient (`_watch_health`), the epoch's sums totalled over processes.
    reducer : Reducer, optional
        The step boundary's hook (see `Reducer`): each batch then runs as
        gradient -> reducer.reduce_gradient -> update, and the epoch's figures
        (training and validation) are totals over the reducer's processes.
        Without one, gradient and update are fused in the engine.
    names : (str, str)
        How errors name X and y.
    """

    def __init__(self, network, X, y, sample_weight=None, *, optimizer: Optimizer,
                 batch_size: int = 32, shuffle: bool = True, fresh_order: bool = False,
                 validation_data=None, reducer: Reducer | None = None, health: bool = False,
                 names=("X", "y")):
        self.stream = None
        if isinstance(X, Stream):
            self._open_stream(network, X, y, sample_weight)
        else:
            super().__init__(network, X, y, sample_weight, names=names)
        X, Y, w = self.X, self.Y, self.w
        if w.size and not w.all():
            # Rows of weight 0 are dropped, as if absent: a batch of only such
            # rows would have no weighted mean loss.
            keep = np.flatnonzero(w)
            self.X, self.Y, self.w = V.take_rows(X, keep), Y[keep], w[keep]
            self.n_rows = keep.size
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a cb.Optimizer (e.g. cb.SGD), got {optimizer!r}")
        self.optimizer = optimizer
        self.batch_size = min(V.check_int(batch_size, "batch_size", 1), self.n_rows)
        self.hp = optimizer.hyperparameters()
        optimizer.prepare(network.theta)          # checked now, taken when entered
        self.validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            self.validation = Evaluator(network, *validation_data,
                                        names=("validation X", "validation y"), in_fit=True)
        self.shuffle = V.check_bool(shuffle, "shuffle")
        self.fresh_order = V.check_bool(fresh_order, "fresh_order")
        if reducer is not None and not isinstance(reducer, Reducer):
            raise TypeError(f"reducer must be a Reducer, got {reducer!r}")
        self.reducer = reducer
        if reducer is not None and self.stream is not None:
            raise ValueError("a stream trains in one process: under comm= give each rank "
                             "its rows as arrays")
        self.health = None
        if V.check_bool(health, "health"):
            self.health = np.zeros(_engine.health_size(self.layout))
            self.layout.watch_health(self.health)
        self._entered = False
        self._stop_requested = False
        self._retired = False
        self._halted = False        # with a reducer: the stop every process agreed
        # An epoch left half done: (rows, loss sum, rows right, rows of every process).
        self.position = None
        self._restored_order = None
        self._digest = None
        # Set when entered (the fit's buffers, threads and Ctrl-C handler) and
        # by the epochs (the running sums and the rollback point).
        self.order = self.ws = self.grad = self.threads = self.interrupt = None
        self._health_before = self._saved = self._plan = None
        # Whether the engine's next update saves the rollback point (`commit`).
        self._engine_keeps = self._keep_pending = False
        self._total = self._correct = self._rows_done = 0.0

    # ---- training ----------------------------------------------------------------

    def claim(self) -> None:
        """Make this the network's one running fit: the network and the
        optimizer are registered as busy (a second fit of either raises
        RuntimeError), the optimizer's state is taken and the rollback point
        set (`commit`). Entering the session claims it; a bank of networks
        (`cbackprop.many`) claims its members' sessions without entering them,
        and calls `release` when done."""
        net, optimizer = self.network, self.optimizer
        with _busy_lock:
            if net in _running:
                raise RuntimeError("this network is already being fitted in another thread")
            if optimizer in _busy_optimizers:
                raise RuntimeError("this optimizer is in use by another fit; "
                                   "give each network its own optimizer")
            _busy_optimizers.add(optimizer)
            _running[net] = self
        try:
            # Taken only once claimed: a fit waiting for the optimizer must not
            # replace the running fit's state.
            optimizer.take_state(net.theta)
            self.commit()
        except BaseException:
            self.release()
            raise

    def __enter__(self) -> TrainingSession:
        # Without a reducer every update is the engine's (train_batches), so
        # the engine saves the rollback point as it updates (`commit`).
        self._engine_keeps = self.reducer is None
        self.claim()
        net = self.network
        try:
            B = self.batch_size
            self.order = np.arange(self.n_rows if self.stream is None else
                                   self._allocate_stream_buffer(), dtype=np.intp)
            if self._restored_order is not None:
                self.order[...] = self._restored_order
            self.ws = _buffer(net, "workspace",
                              _engine.workspace_size(self.layout, B, self.sparse), net.dtype)
            self.grad = _buffer(net, "grad", net.theta.size, net.dtype)
            self.threads = self._fit_threads(B)
            # Ctrl-C stops the session at the next chunk boundary; leaving it then
            # raises KeyboardInterrupt.
            self.interrupt = DeferredInterrupt(self.stop).__enter__()
            self.threads.__enter__()
            if self.reducer is not None:
                if self.health is not None:
                    self._health_before = _buffer(net, "health theta", net.theta.size,
                                                  net.dtype)
                self.reducer.start(self)
                self._plan = (None if self.reducer.bucket_size(self) is None
                              else backward_plan(self.layout.sizes))
                self.commit()
        except BaseException:
            self.release()
            raise
        self._entered = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._entered = False
        try:
            self.threads.__exit__(exc_type, exc, tb)
            self.interrupt.__exit__(exc_type, exc, tb)
        finally:
            self.release()

    def release(self) -> None:
        """End what `claim` started (entering and leaving the session do both)."""
        with _busy_lock:
            if _running.get(self.network) is self:
                del _running[self.network]
                _busy_optimizers.discard(self.optimizer)

    def _fit_threads(self, rows: int) -> _threads.FitThreads:
        """The thread choice for batches of `rows` rows; later fits of the network
        start from what earlier ones measured (see cbackprop/_threads.py)."""
        net = self.network
        most = _threads.most_threads(net.n_threads)
        choices = _thread_choices.setdefault(net, {})
        if (rows, most) not in choices:
            start = _threads.threads_for_shape(net.sizes, rows, most, net.dtype)
            sure = _threads.forward_flops(net.sizes, rows) >= _threads.SURE_FLOPS_FOR_THREADS
            choices[(rows, most)] = _threads.FitThreads(start, most, sure)
        return choices[(rows, most)]

    def stop(self) -> None:
        """Stop after the current chunk (from any thread)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        """True once stop() was called (`Network.stop` calls it)."""
        return self._stop_requested

    @property
    def stopped(self) -> bool:
        """True once stop() or Ctrl-C asked this session to end (with a reducer:
        once all processes agreed to, at the same step)."""
        if self.reducer is not None:
            return self._halted
        return self._stop_requested or self.interrupt.pending

    def commit(self) -> None:
        """Keep what was trained so far: a later divergence restores θ, the
        optimizer and the random stream to this point (set on entering).

        θ and the optimizer's state are copied here, or, when the engine makes
        every update of this session (no reducer, entered), by the engine's
        next update, each layer just before it changes (`_engine.train_batches`):
        part of a layer is still in cache there, and the copies bypass the
        cache, which makes them cheaper than two whole copies before the call."""
        net, opt = self.network, self.optimizer
        theta = _buffer(net, "saved theta", net.theta.size, net.dtype)
        state = _buffer(net, "saved state", opt.state.size, opt.state.dtype)
        with net.params_lock.read():
            if not self._engine_keeps:
                np.copyto(theta, net.theta)
                np.copyto(state, opt.state)
            self._keep_pending = self._engine_keeps
            self._saved = (theta, {"name": opt.name, "t": opt.t, "state": state},
                           net.rng_state.copy())

    def rollback(self, what: str) -> DivergenceError:
        """Return θ, the optimizer and the random stream to the last `commit`;
        the DivergenceError to raise says that `what` became non-finite."""
        net = self.network
        theta, optimizer_state, rng_state = self._saved
        if self._keep_pending:
            # No update since the commit: θ and the state are as they were.
            self.optimizer.step_counter[0] = optimizer_state["t"]
        else:
            net.theta[...] = theta
            # The state and step count go back; the hyper-parameters stay as they are now.
            self.optimizer.load_state_dict({**optimizer_state,
                                            "hyperparameters": self.optimizer.get_config()})
        net.rng_state[...] = rng_state
        return DivergenceError(
            f"fit stopped: {what} became NaN or infinite (try a smaller learning rate); "
            "the parameters before this fit were restored")

    # ---- the trainer's backend (cbackprop.trainer): one member, this network ----

    def begin_epoch(self) -> int:
        """Start an epoch, or go on with the one a checkpoint left half done:
        the optimizer's hyper-parameters as they are now (callbacks may have
        changed lr), the row order, the health sums. Returns its first row."""
        if not self._entered:
            raise RuntimeError("training needs an entered session: `with session: ...`")
        net, n = self.network, self.n_rows
        self.hp[...] = self.optimizer.hyperparameters()
        if self.health is not None and self.position is None:
            self.health[...] = 0
        if self.position is not None:
            pos, self._total, self._correct, self._rows_done = self.position
        else:
            if self.stream is not None:
                self._start_stream_epoch()
            elif self.shuffle:
                with net.params_lock.write():
                    if self.fresh_order:
                        self.order[...] = np.arange(n)
                    _engine.shuffle(self.order, net.rng_state)
            self._total = self._correct = 0.0
            pos = self._rows_done = 0
        self.position = None
        return pos

    def chunk_rows(self, rows: int) -> int:
        return self.threads.chunk_rows(rows, self.batch_size)

    def observe(self, seconds: float, rows: int) -> None:
        self.threads.observe(seconds, rows)

    def train_chunk(self, pos: int, stop: int) -> int:
        """Train rows order[pos:stop]; returns the rows done. Raises
        DivergenceError (after restoring the last `commit`) when the loss or θ
        becomes non-finite."""
        net = self.network
        base = 0
        if self.stream is not None:       # rows of the buffer, filled when pos reaches its end
            base, stop = self._stream_rows(pos, stop)
        # Readers see θ only between chunks, and only finite.
        with net.params_lock.write():
            loss_sum, done, ok_rows, status = self._train_chunk(pos - base, stop - base)
            error = (None if status == _engine.STATUS_OK
                     else self.rollback("the loss")
                     if status == _engine.STATUS_NONFINITE_LOSS
                     else self.rollback("the parameters"))
        if error is not None:
            raise error
        self._total += loss_sum
        self._correct += ok_rows
        return done

    def chunk_done(self, progress, epoch: int, pos: int) -> None:
        rows = pos if self.reducer is None else self._rows_done
        progress.chunk(epoch, pos, self._total / rows)

    def end_epoch(self, pos: int, start: float) -> list[tuple[int, dict]] | None:
        """[(0, the epoch's logs)] ("loss", "accuracy" for classifiers, "val_*"
        with validation data, "time"), or None when it was stopped before its
        first chunk or interrupted. A stopped epoch may cover only part of the
        rows (`partial`)."""
        if pos < self.n_rows:
            # Where a checkpoint resumes: rows done, their loss sum and rows right,
            # and (with a reducer) the rows all processes did.
            self.position = (pos, self._total, self._correct, self._rows_done)
            self._stop_requested = self._halted = True
        if pos == 0 or (self.reducer is None and self.interrupt.pending):
            return None
        logs = self.epoch_logs(self._total, self._correct,
                               pos if self.reducer is None else self._rows_done)
        if self.reducer is not None and self.health is not None:
            self.reducer.reduce_sums(self.health)
        logs["time"] = time.perf_counter() - start
        return [(0, logs)]

    @property
    def partial(self) -> bool:
        return self.position is not None

    @property
    def active(self) -> list[int]:
        return [] if self._retired else [0]

    def member_stopped(self, member: int = 0) -> bool:
        """True once stop() or Ctrl-C asked this fit to end."""
        return self.stopped

    def retire(self, member: int = 0) -> None:
        self._retired = True

    def _watch_health(self, rows: int) -> None:
        """The engine's health sums (`watch_layer`) of one step taken with a
        reducer: its gradient, θ before (`_health_before`) and after, and the
        batch's z in the workspace."""
        net, h0, p = self.network, 0, 0
        views = _engine.workspace_views(self.ws, self.layout, self.batch_size, rows)
        for layer, n_in, m, (Z, _, _) in zip(net.layers, net.sizes, net.sizes[1:], views):
            size = n_in * m + m
            g = self.grad[p:p + size].astype(np.float64)
            new = net.theta[p:p + size].astype(np.float64)
            step = new - self._health_before[p:p + size]
            block = self.health[h0:h0 + _engine.HEALTH_SCALARS + 2 * m]
            wsq = new @ new
            block[0] += np.sqrt(g @ g)
            block[1] += np.sqrt((step @ step) / wsq) if wsq > 0 else 0
            block[2] += 1
            block[3] += rows
            units = block[_engine.HEALTH_SCALARS:]
            units[:m][(Z > 0).any(axis=0)] = 1
            if layer.activation in ("sigmoid", "tanh"):
                z = Z.astype(np.float64)
                if layer.activation == "sigmoid":     # σ'(z) over its maximum ¼
                    a = 1 / (1 + np.exp(-z))
                    units[m:] += (a * (1 - a)).sum(axis=0) / 0.25
                else:
                    units[m:] += (1 - np.tanh(z) ** 2).sum(axis=0)
            p += size
            h0 += _engine.HEALTH_SCALARS + 2 * m

    def health_records(self, epoch: int) -> list[dict]:
        """The epoch's training health, one record per layer (from the engine's
        sums over every HEALTH_EVERY-th step):

        - "grad_norm": mean ‖∂C/∂θˡ‖ over the measured steps (the layer's W
          and b, with the L2 term); small in early layers = vanishing gradients;
        - "weight_norm": ‖Wˡ‖ at the end of the epoch;
        - "update_ratio": mean ‖Δθˡ‖/‖θˡ‖ of one step (about 1e-3 is healthy);
        - "dead_fraction" (relu family): units whose z was never > 0;
        - "saturated_fraction" (sigmoid, tanh): units whose mean σ'(z) was
          below 1 % of its maximum;
        plus "epoch", "layer", "units" and "activation"; a figure that does not
        apply is None.
        """
        net, h0, records = self.network, 0, []
        for index, (layer, m) in enumerate(zip(net.layers, net.sizes[1:])):
            block = self.health[h0:h0 + _engine.HEALTH_SCALARS + 2 * m]
            h0 += _engine.HEALTH_SCALARS + 2 * m
            steps, rows = max(block[2], 1), max(block[3], 1)
            units = block[_engine.HEALTH_SCALARS:]
            act = layer.activation
            records.append({
                "epoch": epoch, "layer": index, "units": m, "activation": act,
                "grad_norm": float(block[0] / steps),
                "weight_norm": float(np.linalg.norm(net.params[index][0])),
                "update_ratio": float(block[1] / steps),
                "dead_fraction": (float(1 - np.minimum(units[:m], 1).mean())
                                  if act in RELU_FAMILY
                                  else None),
                "saturated_fraction": (float(np.mean(units[m:] / rows < 0.01))
                                       if act in ("sigmoid", "tanh") else None),
            })
        return records

    def epoch_logs(self, total: float, correct: float, rows: int) -> dict[str, float]:
        """The epoch's figures from its loss sum, rows right and rows (totals over
        the reducer's processes), with the validation figures."""
        if self.reducer is None:
            logs = {"loss": total / rows}
            if self.classifier:
                logs["accuracy"] = correct / rows
            if self.validation is not None:
                for key, value in self.validation.evaluate().items():
                    logs["val_" + key] = value
            return logs
        # The loss sum and rows are the steps' totals already (reduce_gradient).
        sums = [correct]
        if self.validation is not None:
            loss, right, _ = self.validation.loss_and_grad(with_grad=False)
            sums += [loss * self.validation.n_rows, right, self.validation.n_rows]
        sums = np.array(sums, dtype=np.float64)
        self.reducer.reduce_sums(sums)
        logs = {"loss": total / rows}
        if self.classifier:
            logs["accuracy"] = sums[0] / rows
        if self.validation is not None:
            logs["val_loss"] = sums[1] / sums[3]
            if self.classifier:
                logs["val_accuracy"] = sums[2] / sums[3]
        return {key: float(value) for key, value in logs.items()}

    # ---- a streamed X (cbackprop.streaming): one buffer of rows at a time ------------

    def _open_stream(self, network, stream: Stream, y, sample_weight) -> None:
        """What `Evaluator.__init__` sets, for a stream: checked now, its rows read
        once entered (`_allocate_stream_buffer`) and each epoch (`_start_stream_epoch`)."""
        if y is not None:
            raise ValueError(f"y must be None when X is a stream: the labels of {stream!r} "
                             "are its label column")
        if sample_weight is not None:
            raise ValueError("sample_weight is for data in memory; a stream has no weights")
        if stream.n_features != network.n_inputs:
            raise ValueError(f"X has {stream.n_features} features per row, but the network "
                             f"expects {network.n_inputs} ({stream!r})")
        self.network, self.stream = network, stream
        self.layout = network.engine_layout()
        self.classifier = network.loss.name in REQUIRED_OUTPUT
        self.X = self.Y = None
        self.w = np.empty(0, dtype=network.dtype)
        self.sparse, self.in_fit = False, False
        self.n_rows = stream.n_rows

    def _allocate_stream_buffer(self) -> int:
        """Allocate the buffer (X, Y; its row order is `order`); returns its rows: the
        stream's buffer_rows in whole batches, at least one batch."""
        B, net = self.batch_size, self.network
        rows = min(max(self.stream.buffer_rows // B, 1) * B, self.n_rows)
        self.X = np.empty((rows, net.n_inputs), dtype=net.dtype)
        self.Y = np.empty((rows, net.n_outputs), dtype=net.dtype)
        return rows

    def _start_stream_epoch(self) -> None:
        """The epoch's groups (shuffled from the network's random stream) and an
        empty buffer."""
        groups = np.arange(self.stream.n_groups, dtype=np.intp)
        if self.shuffle:
            with self.network.params_lock.write():
                _engine.shuffle(groups, self.network.rng_state)
        self._parts = iter(self.stream.parts(groups, self.network.dtype))
        self._left = None               # the rest of a part that did not fit the buffer
        self._buffer_at = self._buffer_end = 0

    def _stream_rows(self, pos: int, stop: int) -> tuple[int, int]:
        """(epoch row of the buffer's first row, stop within the buffer) for rows pos..;
        refills the buffer (and shuffles its order) when pos reaches its end."""
        if pos >= self._buffer_end:
            net, rows, filled = self.network, self.order.shape[0], 0
            while filled < rows:
                if self._left is None:
                    part = next(self._parts, None)
                    if part is None:
                        break
                    X, y, where = part
                    X = V.check_X(X, net.n_inputs, net.dtype, where)
                    self._left = (X, V.check_targets(y, X.shape[0], net.loss.name,
                                                     net.n_outputs, net.dtype, where))
                X, Y = self._left
                take = min(rows - filled, X.shape[0])
                self.X[filled:filled + take] = X[:take]
                self.Y[filled:filled + take] = Y[:take]
                self._left = None if take == X.shape[0] else (X[take:], Y[take:])
                filled += take
            if pos + filled > self.n_rows or (filled < rows and pos + filled < self.n_rows):
                raise ValueError(f"{self.stream!r} changed while training: its parts hold "
                                 f"other than its {self.n_rows} rows")
            self.order[:filled] = np.arange(filled)
            if self.shuffle:
                with net.params_lock.write():
                    _engine.shuffle(self.order[:filled], net.rng_state)
            self._buffer_at, self._buffer_end = pos, pos + filled
        return self._buffer_at, min(stop, self._buffer_end)

    def _train_chunk(self, pos: int, stop: int) -> tuple[float, int, int, int]:
        """Train rows order[pos:stop]: (loss sum, rows, rows right, status)."""
        net, opt = self.network, self.optimizer
        if self.reducer is None:
            keep_theta, keep_state = ((self._saved[0], self._saved[1]["state"])
                                      if self._keep_pending else (_NOTHING[net.dtype],) * 2)
            out = _engine.train_batches(
                self.layout, net.theta, self.grad, opt.state, opt.code, self.hp,
                opt.step_counter, self.X, self.Y, self.w, self.order, pos, stop,
                self.batch_size, self.ws, net.rng_state, keep_theta, keep_state)
            if out[1]:          # a row trained: the first update saved θ and the state
                self._keep_pending = False
            return out
        # With a reducer the loss sum and rows returned are totals over the processes.
        total = correct = rows_done = 0.0
        start = pos
        status = _engine.STATUS_OK
        while pos < stop and not self._halted:
            rows, ok_rows, all_loss, all_rows, failed = self._reduced_gradient(pos)
            if failed:
                return total, pos - start, correct, _engine.STATUS_NONFINITE_LOSS
            watch = self.health is not None and opt.t % _engine.HEALTH_EVERY == 0
            if watch:
                np.copyto(self._health_before, net.theta)
            nonfinite = opt.checked_step(net.theta, self.grad, self.hp)
            if watch:
                self._watch_health(rows)
            total += all_loss * all_rows
            rows_done += all_rows
            correct += ok_rows
            pos += rows
            if nonfinite:      # every rank applied the same update: all stop here
                status = _engine.STATUS_NONFINITE_PARAMS
                break
        self._rows_done += rows_done
        return total, pos - start, correct, status

    def _reduced_gradient(self, pos: int) -> tuple[int, int, float, int, bool]:
        """The gradient of the batch at order[pos:] into grad, through the
        reducer: whole (`Reducer.reduce_gradient`), or a layer at a time as
        the backward pass makes it (`Reducer.bucket_size`), so the reducer
        may overlap its communication with the rest of the pass. Returns
        (rows, rows right, and what every process agreed: the step's loss,
        its rows, failed); sets `_halted` to the agreed stop."""
        net, reducer = self.network, self.reducer
        stop = self._stop_requested or self.interrupt.pending
        if self._plan is None:
            loss, rows, ok_rows, weight, status = _engine.batch_gradient(
                self.layout, net.theta, self.grad, self.X, self.Y, self.w, self.order, pos,
                self.batch_size, self.ws, net.rng_state)
            failed = status != _engine.STATUS_OK
            if failed:
                self.grad[...] = 0
            all_loss, all_rows, self._halted, failed = reducer.reduce_gradient(
                self.grad, weight, loss, rows, stop, failed)
            return rows, ok_rows, all_loss, all_rows, failed
        loss, rows, ok_rows, weight, alpha, status = _engine.batch_loss(
            self.layout, net.theta, self.X, self.Y, self.w, self.order, pos, self.batch_size,
            self.ws, net.rng_state)
        failed = status != _engine.STATUS_OK
        reducer.begin_step(weight, loss, rows, stop, failed)
        for layer, lo, hi in self._plan:
            if failed:
                self.grad[lo:hi] = 0
            else:
                _engine.backward_layer(self.layout, net.theta, self.grad, self.X, self.order,
                                       pos, rows, self.batch_size, self.ws, alpha, layer)
            reducer.gradient_ready(self.grad, lo, hi)
        all_loss, all_rows, self._halted, failed = reducer.finish_step(self.grad)
        return rows, ok_rows, all_loss, all_rows, failed

    def fit(self, epochs: int, verbose=False, callbacks=None, checkpoint=None,
            checkpoint_every: int = 1, history: History | None = None,
            checkpoint_metadata: dict | None = None, policies=()) -> History:
        """Train until `epochs` epochs are done, as `Network.fit` documents
        (`cbackprop.trainer.train` with this session as its backend); returns
        the History (`history`, continued, when resuming).

        With `checkpoint` (a path), every `checkpoint_every` epochs and when the
        fit ends (finished, stopped or interrupted, at the last finished chunk)
        the run is written there atomically (`write_checkpoint`), with
        `checkpoint_metadata` (a JSON object of the caller's, or a function
        returning it as it stands at each write) beside it.
        `policies` (`cbackprop.trainer.Policy`) run before the others.
        """
        epochs, callbacks = check_fit_options(epochs, verbose, callbacks)
        checkpoint_every = V.check_int(checkpoint_every, "checkpoint_every", 1)
        history = History() if history is None else history
        if checkpoint is not None:
            self.data_digest()          # refuses a stream, whose rows it cannot keep
            serialization.check_writable(checkpoint)
        metadata = (checkpoint_metadata if callable(checkpoint_metadata) else
                    V.check_json_object(checkpoint_metadata, "checkpoint_metadata"))
        with self, Progress(epochs, self.n_rows, verbose) as progress:
            chosen = [*policies, trainer.ProgressPolicy(progress, self, bank=False)]
            if self.health is not None:
                chosen.append(trainer.HealthPolicy([self], [history]))
            if callbacks:
                chosen.append(trainer.CallbackPolicy(callbacks, numbered=False))
            if checkpoint is not None:
                chosen.append(trainer.CheckpointPolicy(self, history, checkpoint,
                                                       checkpoint_every, epochs, metadata))
            trainer.train(self, [history], epochs, chosen, progress,
                          record_partial=checkpoint is None)
        return history

    def data_digest(self) -> str:
        """SHA-256 of the training arrays: a resumed run must see the same data."""
        if self.stream is not None:
            raise ValueError(
                "checkpoint= is for data in memory (a checkpoint keeps the epoch's row order "
                "and the data's digest); a stream is read one buffer at a time: fit without "
                "checkpoint= (save the network after it), or load the file whole "
                "(cb.datasets.load_parquet)")
        if self._digest is None:
            h = hashlib.sha256()
            X = (self.X.data, self.X.indices, self.X.indptr) if self.sparse else (self.X,)
            for arr in (*X, self.Y, self.w):
                h.update(str(arr.shape).encode())
                h.update(arr.tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def write_checkpoint(self, path, history: History, epochs: int, every: int,
                         metadata: dict | None = None) -> None:
        """Write the run as it stands (between chunks) to path, atomically: the
        network, the optimizer (state_dict), the random stream, the row order,
        the epoch and position in it, the History, the fit's options and the
        caller's metadata (a JSON object, or None)."""
        pos, total, correct, rows_done = self.position or (None, 0.0, 0.0, 0)
        # What is this process's own: its rows, row order, place and random stream.
        mine = ({"n_rows": self.n_rows, "data": self.data_digest(), "position": pos,
                 "correct": float(correct), "rng": int(self.network.rng_state[0])},
                self.order.astype(np.int64))
        parts = [mine] if self.reducer is None else self.reducer.gather(mine)
        if parts is None:
            return              # the first process writes the file for every process
        checkpoint_format.write(path, self.network, self.optimizer, history, parts,
                                epochs=epochs, every=every, batch_size=self.batch_size,
                                shuffle=self.shuffle, loss_sum=total, rows_done=rows_done,
                                metadata=metadata)

    def restore(self, entry: dict, orders: list[np.ndarray]) -> None:
        """Continue the run a checkpoint holds (after `__init__`, before entering):
        the same data (checked by digest), the row order and the epoch's
        position. With a reducer, this process's part of them (its rank's
        entry in `entry["ranks"]`, its order in `orders`, its random stream)."""
        rank, size = (0, 1) if self.reducer is None else (self.reducer.rank,
                                                          self.reducer.size)
        ranks = 1 + len(entry.get("ranks", []))
        if size != ranks or len(orders) != ranks:
            raise ValueError(f"the checkpointed run trained on {ranks} process(es): resume "
                             f"it on as many (mpirun -n {ranks}), not on {size}")
        part = entry if rank == 0 else entry["ranks"][rank - 1]
        order = orders[rank]
        if part["data"] != self.data_digest() or part["n_rows"] != self.n_rows:
            raise ValueError("this is not the data the checkpointed run trained on: resume "
                             "with the same X, y and sample_weight")
        if order.shape != (self.n_rows,) or not np.array_equal(np.sort(order),
                                                                np.arange(self.n_rows)):
            raise ValueError("the checkpoint's row order is not a permutation of the rows")
        self._restored_order = order
        if rank:
            self.network.rng_state[0] = part["rng"]
        if part["position"] is not None:
            rows_done = entry.get("rows_done")
            self.position = (part["position"], entry["loss_sum"], part["correct"],
                             part["position"] if rows_done is None else rows_done)
