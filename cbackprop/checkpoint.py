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
"""

from __future__ import annotations

from cbackprop import serialization
from cbackprop._session import TrainingSession
from cbackprop.history import History
from cbackprop.network import Network
from cbackprop.optimizers import OPTIMIZERS


class Checkpoint:
    """A run read back from a checkpoint (`cb.resume`), ready to continue.

    Attributes
    ----------
    path : str
    network : Network
        As the run left it.
    optimizer : Optimizer
        Its state and step count restored.
    history : History
        The epochs finished so far.
    epoch, epochs : int
        Epochs finished; epochs the run was asked for.
    metadata : dict or None
        The `checkpoint_metadata` the run was started with.
    """

    def __init__(self, path, network, optimizer, history, entry, order):
        self.path = path
        self.network = network
        self.optimizer = optimizer
        self.history = history
        self.epoch, self.epochs = entry["epoch"], entry["epochs"]
        self.metadata = entry.get("metadata")
        self._entry, self._order = entry, order

    def __repr__(self) -> str:
        where = "" if self._entry["position"] is None else (
            f", {self._entry['position']} rows into epoch {self.epoch + 1}")
        return (f"Checkpoint({self.path!r}: {self.epoch} of {self.epochs} epochs"
                f"{where}, {self.optimizer.t} steps, {self.network!r})")

    def fit(self, X, y, sample_weight=None, validation_data=None, verbose=False,
            callbacks=None, epochs: int | None = None,
            checkpoint_metadata: dict | None = None) -> History:
        """Continue the run on the data it was started with (checked) until
        `epochs` (default: the epochs it was asked for), writing checkpoints to
        the same file as before, with `checkpoint_metadata` (default: the run's
        `metadata`). Returns the whole History."""
        entry = self._entry
        session = TrainingSession(self.network, X, y, sample_weight, optimizer=self.optimizer,
                                  batch_size=entry["batch_size"], shuffle=entry["shuffle"],
                                  validation_data=validation_data)
        session.restore(entry, self._order)
        return session.fit(self.epochs if epochs is None else epochs, verbose, callbacks,
                           checkpoint=self.path, checkpoint_every=entry["every"],
                           history=self.history,
                           checkpoint_metadata=(self.metadata if checkpoint_metadata is None
                                                else checkpoint_metadata))


def resume(path) -> Checkpoint:
    """Read a checkpoint written by `fit(..., checkpoint=path)`.

    Raises
    ------
    ValueError
        For a damaged file, or a model file that holds no run to continue.
    """
    net, entry, tensors = serialization.read(path, Network.from_config, checkpoint=True)
    try:
        optimizer = OPTIMIZERS[entry["optimizer"]["name"]](
            **entry["optimizer"]["hyperparameters"])
        optimizer.load_state_dict({**entry["optimizer"], "state": tensors["optimizer_state"]})
        history = History()
        history.history = {k: list(v) for k, v in entry["history"]["history"]}
        history.epoch = list(entry["history"]["epoch"])
        order = tensors["order"]
        for key in ("epoch", "epochs", "every", "batch_size", "n_rows"):
            if not isinstance(entry[key], int):
                raise TypeError(f"{key} {entry[key]!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path} is not a valid cbackprop checkpoint: {exc}") from None
    return Checkpoint(str(path), net, optimizer, history, entry, order)
