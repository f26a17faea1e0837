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

from cbackprop import checkpoint_format, distributed
from cbackprop._session import DivergenceError, TrainingSession
from cbackprop.history import History
from cbackprop.network import Network
from cbackprop.optimizers import Optimizer


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
                isinstance(batch_size, int) and not isinstance(batch_size, bool)
                and min(batch_size, entry["n_rows"]) == entry["batch_size"]):
            raise ValueError(f"the run trains with batch_size {entry['batch_size']}, and a "
                             f"resumed run keeps it: for batch_size={batch_size!r}, {new_run}")
        if shuffle is not None and shuffle is not entry["shuffle"]:
            raise ValueError(f"the run trains with shuffle={entry['shuffle']}, and a resumed "
                             f"run keeps it: for shuffle={shuffle!r}, {new_run}")
        if epochs is None:
            return self.epochs
        least = self.epoch + (entry["position"] is not None)
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < least:
            part = " and part of the next" if least > self.epoch else ""
            raise ValueError(f"epochs is the total the run is to reach, and it has done "
                             f"{self.epoch} epochs{part}: give epochs >= {least} (e.g. "
                             f"epochs={self.epoch + 1} for one more), got {epochs!r}")
        return epochs

    def fit(self, X, y, sample_weight=None, validation_data=None, verbose=False,
            callbacks=None, epochs: int | None = None, *, batch_size: int | None = None,
            shuffle: bool | None = None, optimizer: Optimizer | None = None,
            comm=None, checkpoint_metadata: dict | None = None) -> History:
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
        checkpoint_metadata : dict, optional
            Written with the checkpoints from here on (default: the run's
            `metadata`).
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
                       checkpoint_metadata=(self.metadata if checkpoint_metadata is None
                                            else checkpoint_metadata))
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
            net, entry, optimizer, _, orders = checkpoint_format.read(self.path,
                                                                      Network.from_config)
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
    net, entry, optimizer, history, orders = checkpoint_format.read(path, Network.from_config)
    return Checkpoint(str(path), net, optimizer, history, entry, orders)
