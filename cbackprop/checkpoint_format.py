"""The checkpoint file: what a run's checkpoint holds, written and read here.

`write` takes the run as a fit leaves it between chunks (the network, the
optimizer's state_dict, the History, the fit's options, and each process's
own part: its rows' digest, row order, place in the epoch and random
stream); `read` gives it back with every entry checked, as `load` checks a
model file (types and ranges, the optimizer's state against the network,
the row orders, the History against the epoch and the network; strict JSON,
no missing or unknown entries): a crafted file is a ValueError naming the
entry, before anything is allocated or trained. The file itself is
`serialization`'s, with its checksum. `cbackprop.checkpoint` is the face
(`resume`, `Checkpoint`); the trainer writes through the session
(`TrainingSession.write_checkpoint`).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from cbackprop import _validation as V
from cbackprop import serialization
from cbackprop.activations import RELU_FAMILY
from cbackprop.history import History
from cbackprop.losses import REQUIRED_OUTPUT
from cbackprop.optimizers import OPTIMIZERS, Optimizer

if TYPE_CHECKING:
    from cbackprop.network import Network

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


def read(path, from_config):
    """(network, entry, optimizer, History, row orders: one per rank) of the
    checkpoint at path, every entry checked; the network built by
    `from_config` (`Network.from_config`). ValueError naming the entry."""
    net, entry, tensors = serialization.read(path, from_config, checkpoint=True)
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


def write(path, network, optimizer, history: History, parts: list, *, epochs: int,
          every: int, batch_size: int, shuffle: bool, loss_sum: float, rows_done: int,
          metadata) -> None:
    """Write a run to path, atomically.

    parts holds each process's own part, first process first: ({"n_rows",
    "data" (its rows' digest), "position" (rows done in a half-done epoch,
    or None), "correct", "rng"}, its row order as int64). loss_sum is the
    half-done epoch's loss sum (over every process), rows_done its rows
    (over every process); metadata the caller's JSON object, or None.
    """
    V.check_json_object(metadata, "checkpoint_metadata")
    with network.params_lock.read():
        config, theta, rng = network.get_config(), network.theta.copy(), int(
            network.rng_state[0])
    first, order = parts[0]
    state = optimizer.state_dict()
    entry = {
        "epoch": len(history.epoch), "epochs": epochs, "every": every,
        "position": first["position"], "loss_sum": float(loss_sum),
        "correct": first["correct"],
        "optimizer": {k: state[k] for k in ("name", "hyperparameters", "t")},
        # Pairs, not an object: the file's JSON is written with sorted keys.
        "history": {"history": list(history.history.items()), "epoch": history.epoch},
        "batch_size": batch_size, "shuffle": shuffle, "n_rows": first["n_rows"],
        "data": first["data"], "metadata": metadata,
    }
    tensors = {"optimizer_state": state["state"], "order": order}
    if len(parts) > 1:      # data-parallel: each other rank's own part, and its order
        entry["ranks"] = [part for part, _ in parts[1:]]
        entry["rows_done"] = None if first["position"] is None else int(rows_done)
        tensors.update({f"order.{r}": order for r, (_, order) in enumerate(parts) if r})
    serialization.write(path, config, theta, rng, checkpoint=entry, labels=network.classes,
                        tensors=tensors)
