"""Resuming a run from its checkpoint.

    net.fit(X, y, optimizer=cb.Adam(), epochs=100, checkpoint="run.ckpt",
            checkpoint_every=5)                   # interrupted at some point …
    run = cb.resume("run.ckpt")                   # … read back
    history = run.fit(X, y)                       # and continued to epoch 100

A checkpoint is one safetensors file, written atomically with the checksum of
`Network.save`: the network, the optimizer's state_dict, the random stream,
the row order, the epoch (and the position inside a half-done one), the
History so far and the fit's options. With n_threads=1 a resumed run ends
bitwise where the uninterrupted one does. `cbackprop.load` reads a checkpoint
as the plain model it holds.

A checkpoint file is input like any other (the checksum catches accidents,
not intent): `resume` checks every entry before anything is trained (types,
ranges, the optimizer's state against the network, the row order, the
History against the epoch; strict JSON, no missing or unknown entries), and
refuses a crafted one with a ValueError that names the entry.

What a resumed run may change, and what it may not (`Checkpoint.fit`):

- `epochs`: the total to reach, more or fewer than the run first asked for,
  but not fewer than it has done; the file records the new target.
- the optimizer's hyper-parameters, set on `run.optimizer` (e.g.
  `run.optimizer.lr = 1e-4`), as a callback may set them during any fit: the
  run continues with them and the file records them (it then no longer ends
  where the uninterrupted run would).
- not the data, the batch size, the shuffling, the kind of optimizer or its
  state (a replaced `run.optimizer`), nor θ: those are a new run, refused
  with a message that says how to start one from where this one is.
"""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np

from cbackprop import distributed, serialization
from cbackprop._session import DivergenceError, TrainingSession
from cbackprop.activations import RELU_FAMILY
from cbackprop.history import History
from cbackprop.losses import REQUIRED_OUTPUT
from cbackprop.network import Network
from cbackprop.optimizers import OPTIMIZERS, Optimizer

#: Optimizer steps a checkpoint may claim: far beyond any run, and exact as the
#: float64 the update rules use (so the step counter can never overflow).
MAX_STEPS = 2**53
#: The entries of a checkpoint, and the one it may lack.
ENTRIES = frozenset({"epoch", "epochs", "every", "position", "loss_sum", "correct",
                     "optimizer", "history", "batch_size", "shuffle", "n_rows", "data",
                     "metadata", "ranks", "rows_done"})
OPTIONAL_ENTRIES = frozenset({"metadata", "ranks", "rows_done"})
#: A data-parallel run's entry per rank after the first (whose are the entry's own).
RANK_ENTRIES = frozenset({"n_rows", "data", "position", "correct", "rng"})
#: The tensors of a checkpoint (besides θ's).
TENSORS = frozenset({"optimizer_state", "order"})
#: The History's keys a fit records, and the fields of a health record.
HISTORY_KEYS = frozenset({"loss", "accuracy", "val_loss", "val_accuracy", "time", "health"})
#: Per optimizer kind, which of its state buffers (θ's size each) is a running mean
#: of g², so never negative (torch.optim's exp_avg_sq, square_avg): a negative
#: one would take a square root of it.
SQUARES_BUFFER = {"adam": 1, "adamw": 1, "rmsprop": 0}
HEALTH_FIELDS = frozenset({"epoch", "layer", "units", "activation", "grad_norm", "weight_norm",
                           "update_ratio", "dead_fraction", "saturated_fraction"})


class _Refused(Exception):
    """An entry of the file that fails its check: (entry name, why)."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value, key: str, low: int, high: int | None = None) -> int:
    if not _is_int(value):
        raise _Refused(key, f"{value!r} is not an integer")
    if value < low or (high is not None and value > high):
        raise _Refused(key, f"{value} is outside [{low}, {'∞' if high is None else high}]")
    return value


def _real(value, key: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refused(key, f"{value!r} is not a number")
    try:
        finite = math.isfinite(value)
    except OverflowError:                     # an int past float's range
        finite = False
    if not finite:
        raise _Refused(key, f"{value!r} is not finite")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _Refused(key, f"{value!r} is outside [{low}, {high}]")
    return float(value)


def _check_entry(entry, tensors: dict, net: Network):
    """(optimizer, History, row orders (one per rank)) that the checkpoint entry and
    tensors describe,
    each checked against the others and against the network; _Refused if not."""
    if not isinstance(entry, dict):
        raise _Refused("checkpoint", "not a JSON object")
    missing = sorted(ENTRIES - OPTIONAL_ENTRIES - set(entry))
    if missing:
        raise _Refused(missing[0], "missing")
    unknown = sorted(set(entry) - ENTRIES)
    if unknown:
        raise _Refused(unknown[0], "unknown to this version")
    epochs = _int(entry["epochs"], "epochs", 0)
    epoch = _int(entry["epoch"], "epoch", 0, epochs)
    _int(entry["every"], "every", 1)
    n_rows = _int(entry["n_rows"], "n_rows", 1)
    batch_size = _int(entry["batch_size"], "batch_size", 1, n_rows)
    if not isinstance(entry["shuffle"], bool):
        raise _Refused("shuffle", f"{entry['shuffle']!r} is not true or false")
    if not (isinstance(entry["data"], str) and re.fullmatch("[0-9a-f]{64}", entry["data"])):
        raise _Refused("data", f"{entry['data']!r} is not a SHA-256 digest")
    metadata = entry.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _Refused("metadata", f"a {type(metadata).__name__}, not a JSON object")

    # Where in an epoch: None at its start; else rows done (whole batches), their
    # loss sum and rows classified right.
    loss_sum = _real(entry["loss_sum"], "loss_sum", 0)        # every loss is ≥ 0
    if entry["position"] is None and loss_sum != 0:
        raise _Refused("loss_sum", "sums of an epoch that has not started")
    if entry["position"] is not None and epoch >= epochs:
        raise _Refused("position", f"inside epoch {epoch + 1} of a run of {epochs} epochs")
    # A data-parallel run: each rank's own rows, order, place and random stream.
    ranks = entry.get("ranks", [])
    if "ranks" in entry and (not isinstance(ranks, list) or not ranks):
        raise _Refused("ranks", "expected a list of the other ranks' entries")
    parts = [entry]
    for r, part in enumerate(ranks, start=1):
        if not isinstance(part, dict) or set(part) != RANK_ENTRIES:
            raise _Refused("ranks", f"rank {r}: expected {sorted(RANK_ENTRIES)}")
        _int(part["n_rows"], f"rank {r} n_rows", 1)
        if not (isinstance(part["data"], str) and re.fullmatch("[0-9a-f]{64}", part["data"])):
            raise _Refused("ranks", f"rank {r}: data is not a SHA-256 digest")
        _int(part["rng"], f"rank {r} rng", 0, 2**64 - 1)
        parts.append(part)
    started = [part["position"] is not None for part in parts]
    if len(set(started)) > 1:
        raise _Refused("position", "some ranks inside an epoch, others at its start")
    for r, part in enumerate(parts):
        name = "" if r == 0 else f"rank {r} "
        rows = part["n_rows"] if r else n_rows
        correct = _real(part["correct"], f"{name}correct", 0)
        position = part["position"]
        if position is None:
            if correct != 0:
                raise _Refused(f"{name}correct", "sums of an epoch that has not started")
            continue
        # A half-done epoch: the fit stopped between chunks, which end on whole batches.
        position = _int(position, f"{name}position", 0, rows - 1)
        if position % min(batch_size, rows):
            raise _Refused(f"{name}position", f"{position} rows is not a whole number of "
                                              f"batches of {batch_size}")
        if correct != int(correct) or correct > position:
            raise _Refused(f"{name}correct", f"{correct!r} rows right of {position}")
    if ("rows_done" in entry) != bool(ranks):
        raise _Refused("rows_done", "expected with ranks, and only then")
    if ranks:
        done = sum(part["position"] or 0 for part in parts)
        if entry["rows_done"] != (done if started[0] else None):
            raise _Refused("rows_done", f"{entry['rows_done']!r}, not the ranks' {done} rows")

    names = ["order"] + [f"order.{r}" for r in range(1, len(parts))]
    if set(tensors) != TENSORS | set(names):
        raise _Refused("tensors", f"{sorted(tensors)}, expected "
                                  f"{sorted(TENSORS | set(names))}")
    orders = []
    for name, part in zip(names, parts):
        order, rows = tensors[name], part["n_rows"]
        if order.dtype != np.int64 or order.shape != (rows,):
            raise _Refused(name, f"{order.dtype} {order.shape}, expected int64 ({rows},)")
        if not np.array_equal(np.sort(order), np.arange(rows)):
            raise _Refused(name, f"not a permutation of the {rows} rows")
        if not entry["shuffle"] and not np.array_equal(order, np.arange(rows)):
            raise _Refused(name, "shuffled in a run with shuffle=False")
        orders.append(order.astype(np.intp))

    optimizer = _check_optimizer(entry["optimizer"], tensors["optimizer_state"], net)
    history = _check_history(entry["history"], epoch, net)
    return optimizer, history, orders


def _check_optimizer(spec, state: np.ndarray, net: Network) -> Optimizer:
    if not isinstance(spec, dict) or set(spec) != {"name", "hyperparameters", "t"}:
        raise _Refused("optimizer", "expected an object of name, hyperparameters and t")
    kind = OPTIMIZERS.get(spec["name"]) if isinstance(spec["name"], str) else None
    if kind is None:
        raise _Refused("optimizer", f"name {spec['name']!r} is no optimizer of this version")
    t = _int(spec["t"], "optimizer t", 0, MAX_STEPS)
    hyperparameters = spec["hyperparameters"]
    expected = set(kind().get_config())
    if not isinstance(hyperparameters, dict) or set(hyperparameters) != expected:
        raise _Refused("optimizer", f"hyperparameters: expected {sorted(expected)}")
    try:
        optimizer = kind(**hyperparameters)
    except (TypeError, ValueError) as exc:
        raise _Refused("optimizer", f"hyperparameters: {exc}") from None
    fresh = optimizer.prepare(net.theta)              # the state's shape and dtype for θ
    if state.dtype != fresh.dtype or state.shape != fresh.shape:
        raise _Refused("optimizer_state", f"{state.dtype} {state.shape}, expected "
                                          f"{fresh.dtype} {fresh.shape} for this network")
    if not np.isfinite(state).all():
        raise _Refused("optimizer_state", "holds NaN or infinite values")
    if kind.name in SQUARES_BUFFER:
        n = net.theta.size
        squares = state[SQUARES_BUFFER[kind.name] * n:(SQUARES_BUFFER[kind.name] + 1) * n]
        if (squares < 0).any():
            raise _Refused("optimizer_state", f"{kind.name}'s mean of squared gradients "
                                              "is negative")
    optimizer.load_state_dict({"name": kind.name, "hyperparameters": optimizer.get_config(),
                               "t": t, "state": state})
    return optimizer


def _check_history(spec, epoch: int, net: Network) -> History:
    if not isinstance(spec, dict) or set(spec) != {"history", "epoch"}:
        raise _Refused("history", "expected an object of history and epoch")
    if spec["epoch"] != list(range(epoch)) or not all(map(_is_int, spec["epoch"])):
        raise _Refused("history", f"epoch numbers are not 0..{epoch - 1}")
    pairs = spec["history"]
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
            and isinstance(p[1], list) for p in pairs):
        raise _Refused("history", "expected a list of [name, values] pairs")
    names = [name for name, _ in pairs]
    if epoch == 0:
        expected = set()
    else:                 # what fit records: the loss, time, accuracy for classifiers, …
        classifier = net.loss.name in REQUIRED_OUTPUT
        expected = {"loss", "time"} | ({"accuracy"} if classifier else set())
        if "val_loss" in names:
            expected |= {"val_loss"} | ({"val_accuracy"} if classifier else set())
        if "health" in names:
            expected.add("health")
    if len(set(names)) != len(names) or set(names) != expected:
        raise _Refused("history", f"names {names}, expected {sorted(expected)} after "
                                  f"{epoch} epochs of a {net.loss.name} network")
    history = History()
    for name, values in pairs:
        if name == "health":
            _check_health(values, epoch, net)
        else:
            if len(values) != epoch:
                raise _Refused("history", f"{len(values)} values of {name} for {epoch} epochs")
            low, high = (0, 1) if name.endswith("accuracy") else (0, None)
            values = [_real(v, f"history {name}", low, high) for v in values]
        history.history[name] = list(values)
    history.epoch = list(range(epoch))
    return history


def _check_health(records, epoch: int, net: Network) -> None:
    layers = len(net.layers)
    if len(records) != epoch * layers:
        raise _Refused("history", f"{len(records)} health records for {epoch} epochs "
                                  f"of {layers} layers")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or set(record) != HEALTH_FIELDS:
            raise _Refused("history", f"health record {i}: expected {sorted(HEALTH_FIELDS)}")
        layer = i % layers
        activation = net.layers[layer].activation
        if [record["epoch"], record["layer"], record["units"], record["activation"]] != [
                i // layers, layer, net.sizes[layer + 1], activation] or not all(
                _is_int(record[k]) for k in ("epoch", "layer", "units")):
            raise _Refused("history", f"health record {i} is not epoch {i // layers}'s "
                                      f"layer {layer}")
        for key in ("grad_norm", "weight_norm", "update_ratio"):
            _real(record[key], f"history health {key}", 0)
        for key, applies in (("dead_fraction", activation in RELU_FAMILY),
                             ("saturated_fraction", activation in ("sigmoid", "tanh"))):
            if applies:
                _real(record[key], f"history health {key}", 0, 1)
            elif record[key] is not None:
                raise _Refused("history", f"health {key} for a {activation} layer")


def _read(path):
    """(network, entry, optimizer, History, row orders) of the checkpoint at path, checked."""
    net, entry, tensors = serialization.read(path, Network.from_config, checkpoint=True)
    try:
        optimizer, history, orders = _check_entry(entry, tensors, net)
    except _Refused as refused:
        name, why = refused.args
        raise ValueError(f"{path} is not a valid cbackprop checkpoint: entry {name!r}: "
                         f"{why}") from None
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError,
            RecursionError) as exc:       # what no check above foresaw: refused all the same
        raise ValueError(f"{path} is not a valid cbackprop checkpoint: {exc}") from None
    return net, entry, optimizer, history, orders


def _network_print(network) -> tuple:
    """What a Checkpoint's network must still hold when it is fitted: θ and its random stream."""
    return (network.theta.dtype.str, network.theta.size,
            hashlib.sha256(network.theta.tobytes()).hexdigest(), network.rng_state.tobytes())


def _optimizer_print(optimizer) -> tuple:
    """What a Checkpoint's optimizer must still hold: its kind, step count and state
    (its hyper-parameters may change)."""
    state = optimizer.state
    return (optimizer.name, optimizer.t,
            None if state is None else hashlib.sha256(state.tobytes()).hexdigest())


class Checkpoint:
    """A run read back from a checkpoint (`cb.resume`), ready to continue.

    `fit` may be called again (e.g. to 4 epochs, then to 6): each fit
    continues from where the last one left the run (and its file), as a
    fresh `cb.resume(path)` would.

    Attributes
    ----------
    path : str
    network : Network
        As the run left it.
    optimizer : Optimizer
        Its state and step count restored. Its hyper-parameters may be changed
        before `fit` (e.g. `run.optimizer.lr = 1e-4`); the object itself may
        not be replaced.
    history : History
        The epochs finished so far.
    epoch, epochs : int
        Epochs finished; epochs the run was asked for.
    metadata : dict or None
        The `checkpoint_metadata` the run was started with.
    """

    def __init__(self, path, network, optimizer, history, entry, orders):
        self.path = path
        self.network = network
        self.optimizer = optimizer
        self.history = history
        self._adopt(entry, orders)

    def _adopt(self, entry: dict, orders: list) -> None:
        """Take entry and order as where the run stands (network and optimizer hold it)."""
        self.epoch, self.epochs = entry["epoch"], entry["epochs"]
        self.metadata = entry.get("metadata")
        self._entry, self._orders = entry, orders
        self._prints = (_network_print(self.network), _optimizer_print(self.optimizer))

    def __repr__(self) -> str:
        where = "" if self._entry["position"] is None else (
            f", {self._entry['position']} rows into epoch {self.epoch + 1}")
        return (f"Checkpoint({self.path!r}: {self.epoch} of {self.epochs} epochs"
                f"{where}, {self.optimizer.t} steps, {self.network!r})")

    def continue_in(self, session: TrainingSession) -> None:
        """Set a new session (of this run's network, or one holding the same θ,
        optimizer state and random stream) where the run stands: the data
        checked against the run's, its row order, the position inside a
        half-done epoch. The estimators' checkpoints resume through it."""
        session.restore(self._entry, self._orders)

    def _check_settings(self, epochs, batch_size, shuffle, optimizer) -> int:
        """The epochs to reach; ValueError for what a resumed run cannot change."""
        entry = self._entry
        new_run = ("start a new run from where this one is: run.network.fit(X, y, "
                   "optimizer=…, batch_size=…, checkpoint=ANOTHER_PATH)")
        if optimizer is not None and optimizer is not self.optimizer:
            raise ValueError("a resumed run trains with run.optimizer: change its hyper-"
                             "parameters in place (run.optimizer.lr = …), or, for another "
                             f"optimizer, {new_run}")
        if not isinstance(self.optimizer, Optimizer) or \
                _optimizer_print(self.optimizer) != self._prints[1]:
            raise ValueError(
                f"run.optimizer is not the {self._prints[1][0]} optimizer holding the run's "
                f"state ({self._prints[1][1]} steps): change the hyper-parameters of the one "
                f"resume gave (run.optimizer.lr = …) instead of replacing it, or {new_run}")
        if _network_print(self.network) != self._prints[0]:
            raise ValueError("run.network is no longer where the checkpoint left it (θ or its "
                             "random stream changed): read the run again with "
                             f"cb.resume({self.path!r}), or {new_run}")
        if batch_size is not None and not (
                _is_int(batch_size) and min(batch_size, entry["n_rows"]) == entry["batch_size"]):
            raise ValueError(f"the run trains with batch_size {entry['batch_size']}, and a "
                             f"resumed run keeps it: for batch_size={batch_size!r}, {new_run}")
        if shuffle is not None and shuffle is not entry["shuffle"]:
            raise ValueError(f"the run trains with shuffle={entry['shuffle']}, and a resumed "
                             f"run keeps it: for shuffle={shuffle!r}, {new_run}")
        if epochs is None:
            return self.epochs
        least = self.epoch + (entry["position"] is not None)
        if not _is_int(epochs) or epochs < least:
            part = " and part of the next" if least > self.epoch else ""
            raise ValueError(f"epochs is the total the run is to reach, and it has done "
                             f"{self.epoch} epochs{part}: give epochs >= {least} (e.g. "
                             f"epochs={self.epoch + 1} for one more), got {epochs!r}")
        return epochs

    def fit(self, X, y, sample_weight=None, validation_data=None, verbose=False,
            callbacks=None, epochs: int | None = None, *, batch_size: int | None = None,
            shuffle: bool | None = None, optimizer: Optimizer | None = None,
            comm=None) -> History:
        """Continue the run on the data it was started with (checked) until
        `epochs`, writing checkpoints to the same file as before. Returns the
        whole History.

        Parameters
        ----------
        X, y, sample_weight : the data the run was started with
            Other rows, targets or weights raise ValueError.
        validation_data : (X_val, y_val), optional
            As the run had it: given if and only if its History has val_loss.
        verbose, callbacks : as for `Network.fit`
        epochs : int, optional
            The total number of epochs to reach (default: the run's target),
            not a count of more epochs: `epochs=run.epoch + 1` trains one
            more. More than the run first asked for is fine; fewer than it has
            done raises ValueError. The file records the new target.
        comm : mpi4py communicator, optional
            For a run checkpointed under ``fit(..., comm=)``: every rank
            resumes from the file (on as many ranks, each with its own rows)
            and goes on with its own row order and random stream.
        batch_size, shuffle, optimizer : optional
            Accepted only as the run has them (its batch size, its shuffling,
            `run.optimizer` itself); other values raise ValueError saying how
            to start a new run from here instead. Hyper-parameters (lr, …)
            are changed on `run.optimizer`, and the file records them.

        A run measured with health=True goes on measuring (an epoch resumed
        half-way reports the health of its second part only). A fit that
        finishes, stops or is interrupted leaves this Checkpoint where its
        file is, so `fit` can be called again (to 4 epochs, then to 6: as one
        fit to 6). One that raises DivergenceError leaves it (θ, optimizer,
        History) as it was before the call; the file may then hold later
        epochs, which `cb.resume(path)` reads.

        Raises
        ------
        ValueError
            For other data or settings (see above), or when `run.network` or
            `run.optimizer` no longer holds the run (θ changed, an optimizer
            replaced).
        """
        entry = self._entry
        epochs = self._check_settings(epochs, batch_size, shuffle, optimizer)
        health = "health" in self.history.history
        session = None
        if comm is None:
            session = TrainingSession(
                self.network, X, y, sample_weight, optimizer=self.optimizer,
                batch_size=entry["batch_size"], shuffle=entry["shuffle"],
                validation_data=validation_data, health=health)
            self.continue_in(session)                 # the same data
        if self.epoch and ("val_loss" in self.history.history) != (validation_data is not None):
            raise ValueError(
                "the run was validated after each epoch: pass the validation_data it had"
                if validation_data is None else
                "the run had no validation_data, so its History would have val_loss for "
                "some epochs only: to validate, start a new run from where this one is "
                "(run.network.fit(X, y, optimizer=run.optimizer, validation_data=…, "
                "checkpoint=ANOTHER_PATH))")
        history = History()       # this fit's; the Checkpoint's once the file holds it
        history.history = {k: list(v) for k, v in self.history.history.items()}
        history.epoch = list(self.history.epoch)
        options = dict(checkpoint=self.path, checkpoint_every=entry["every"], history=history,
                       checkpoint_metadata=self.metadata)
        try:
            if comm is not None:      # every rank continues its own part of the run
                distributed.fit(self.network, X, y, comm, optimizer=self.optimizer,
                                epochs=epochs, batch_size=entry["batch_size"],
                                validation_data=validation_data, shuffle=entry["shuffle"],
                                verbose=verbose, sample_weight=sample_weight,
                                callbacks=callbacks, health=health, prepare=self.continue_in,
                                **options)
            else:
                session.fit(epochs, verbose, callbacks, **options)
        except DivergenceError:
            raise              # θ, the optimizer and the random stream are back as they were
        except BaseException:
            self._follow_file(history)      # interrupted: the file holds the last chunk
            raise
        self._follow_file(history)
        return history

    def _follow_file(self, history: History) -> None:
        """After a fit: stand where the file says the run is, if it holds this network
        and optimizer as they are now (if not, the next fit refuses: the run moved on)."""
        try:
            net, entry, optimizer, _, orders = _read(self.path)
        except (OSError, ValueError):
            return
        if (_network_print(net), _optimizer_print(optimizer)) == (
                _network_print(self.network), _optimizer_print(self.optimizer)) \
                and entry["epoch"] == len(history.epoch):
            self.history = history
            self._adopt(entry, orders)


def resume(path) -> Checkpoint:
    """Read a checkpoint written by `fit(..., checkpoint=path)`.

    Every entry is checked before anything is trained, as `load` checks a
    model file: types and ranges (0 ≤ epoch ≤ epochs, 0 ≤ position < rows in
    whole batches, finite sums, 0 ≤ steps ≤ 2⁵³), the optimizer's kind,
    hyper-parameters and state against the network, the row order (a
    permutation, unshuffled without shuffle), the History against the epoch
    and the network, strict JSON (no NaN or Infinity) with no missing,
    repeated or unknown entries.

    Raises
    ------
    ValueError
        For a damaged or crafted file (naming the entry), or a model file
        that holds no run to continue.
    """
    net, entry, optimizer, history, orders = _read(path)
    return Checkpoint(str(path), net, optimizer, history, entry, orders)
