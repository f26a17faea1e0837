"""The command line: `python -m cbackprop` (or `cbackprop`).

With no arguments it runs the main job: train a network on the embedded
digits and report the test accuracy. Subcommands:

    train DATA       train a network (DATA: digits, spirals, xor, regression,
                     a .csv or .npz file, or an MNIST directory of IDX files)
    evaluate MODEL DATA, predict MODEL DATA
    trace            one example through a tiny network: the forward pass, the
                     backward pass and every ∂C/∂w beside finite differences
    info             version, dtypes, BLAS library, kernel and threads
    playground [MODEL]  a local page: the walk of `trace` and live training

Errors are printed as one line on stderr, with exit status 1 (2 for a bad
command line, found before any data is read, or an option that contradicts the
checkpoint --resume names; 130 when interrupted). Under `mpirun -n N cbackprop
train ...` every rank trains on its share of the rows, and only rank 0 speaks. Output into
a closed pipe (`cbackprop predict ... | head`) stops quietly with status 141,
as a Unix tool killed by SIGPIPE reports it.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings
from contextlib import nullcontext

import numpy as np

from cbackprop import datasets, serialization
from cbackprop._session import DivergenceError
from cbackprop._threads import blas_info
from cbackprop._version import __version__
from cbackprop.activations import ACTIVATIONS, HIDDEN_ACTIVATIONS
from cbackprop.checkpoint import resume
from cbackprop.gradcheck import finite_differences
from cbackprop.history import health_table
from cbackprop.layers import Dense
from cbackprop.losses import LOSSES
from cbackprop.network import LossWarning, Network, load
from cbackprop.optimizers import SGD, Adam, AdamW, RMSprop

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
#: Integer targets reaching this are taken for regression values, not classes, unless told.
_MAX_GUESSED_CLASSES = 1000


class UsageError(Exception):
    """A command line that cannot work, found once a file it names was read (status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---- train --------------------------------------------------------------------

def _int_list(text: str) -> list[int]:
    parts = text.split(",") if text.strip() else []      # '' means no hidden layers
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1, got {text!r}")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _number(text: str, kind=float, low=None, low_open=False, high_open=None):
    """text as `kind`, checked to lie in [low, high_open) (or (low, …) when low_open)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, "
                                         f"got {text}")
    if high_open is not None and value >= high_open:
        raise argparse.ArgumentTypeError(f"must be < {high_open}, got {text}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, int, low=1)


def _non_negative_int(text: str) -> int:
    return _number(text, int, low=0)


def _positive(text: str) -> float:
    return _number(text, low=0, low_open=True)


def _non_negative(text: str) -> float:
    return _number(text, low=0)


def _fraction(text: str) -> float:
    return _number(text, low=0, high_open=1)


def _is_classification(y: np.ndarray) -> bool:
    return y.ndim == 1 and y.dtype.kind in "iuU"


def _encode_labels(y: np.ndarray) -> tuple[list, np.ndarray]:
    """(classes, indices): the distinct labels in order, and each label's index among
    them, as scikit-learn's classifiers encode their targets."""
    if y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise ValueError("cross_entropy needs integer class labels; these targets are "
                             "fractional (use --loss mse for regression)")
        y = y.astype(np.int64)
    classes, indices = np.unique(y, return_inverse=True)
    classes = classes.tolist()      # Python's str and int: shown as the file has them
    if len(classes) < 2:
        raise ValueError(f"every label is {classes[0]}: a classifier needs at least two "
                         "classes (is --label-column the right column?)")
    return classes, indices.astype(np.int64)


def _class_indices(net, y: np.ndarray, data: str = "the data") -> np.ndarray:
    """Labels as the indices of `net.classes` (labels as they are for a network without
    class names, or for one-hot and regression targets)."""
    if net.classes is None or y.ndim != 1:
        return y
    index = {str(c): i for i, c in enumerate(net.classes)}
    keys = [str(v) for v in (y.astype(np.int64) if y.dtype.kind == "f" else y).tolist()]
    unknown = sorted(set(keys) - set(index))
    if unknown:
        raise ValueError(f"{data} has labels the model was not trained on: "
                         f"{', '.join(unknown[:5])}; its classes are "
                         f"{', '.join(map(str, net.classes))}")
    return np.array([index[k] for k in keys], dtype=np.int64)


def _output_layer(loss: str, y: np.ndarray):
    """(units, activation) of the output layer the loss and the targets call for."""
    if loss == "cross_entropy":
        return (y.shape[1] if y.ndim == 2 else int(y.max()) + 1), "softmax"
    if y.dtype.kind == "U":
        raise ValueError(f"text labels are classes: they need --loss cross_entropy, not {loss}")
    units = 1 if y.ndim == 1 else y.shape[1]
    return units, "sigmoid" if loss == "binary_cross_entropy" else "identity"


def _make_optimizer(args):

    kwargs = {} if args.lr is None else {"lr": args.lr}
    if args.momentum is not None:
        if args.optimizer not in ("sgd", "rmsprop"):
            raise ValueError(f"--momentum applies to sgd and rmsprop, not {args.optimizer}")
        kwargs["momentum"] = args.momentum
    cls = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}
    return cls[args.optimizer](**kwargs)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("--plot needs matplotlib, which is not installed: "
                          "pip install 'cbackprop[plot]'") from None


def _check_output_path(path: str, option: str) -> None:
    """Refuse, before any work, an output path that cannot be written (the message names
    the option and the path, never a temporary file)."""
    try:
        serialization.check_writable(path)
    except OSError as exc:
        raise type(exc)(f"{option}: {exc}") from None


def _check_plot_path(path: str) -> None:
    """--plot needs matplotlib and an image format matplotlib knows."""
    _require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    _check_output_path(path, "--plot")
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in formats:
        raise ValueError(f"--plot {path}: the name must end in an image format's suffix "
                         f"({', '.join('.' + f for f in sorted(formats))})")


def _delimiter(text: str) -> str:
    text = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"expected one character (or '\\t'), got {text!r}")
    return text


def _label_column(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _load_share(args, comm):
    """Under mpirun, for a .npz or Parquet DATA: (this rank's rows of X, every row's
    labels, the rank's rows as a slice). Only the rank's rows of X are read (see
    `datasets.read_rows`); the labels are read whole, so that every rank builds the
    same network (the classes, the output width) from all of them."""
    label = -1
    if datasets.is_columnar(args.data):
        table = _Table(args.data, args.delimiter)
        label = table.column("--label-column", args.label_column or "-1",
                             getattr(args, "label_from", ""))
    rows = datasets.share_rows(datasets.count_rows(args.data), comm.Get_rank(),
                               comm.Get_size())
    X, _ = datasets.read_rows(args.data, rows, label)
    y = datasets.read_labels(args.data, label)
    if y is None:
        raise ValueError(f"{args.data} has no labels (an .npz needs an array named 'y')")
    if y.shape[0] != datasets.count_rows(args.data):
        raise ValueError(f"{args.data}: y has {y.shape[0]} rows but X has "
                         f"{datasets.count_rows(args.data)}")
    return X, y, rows


def load_data(args, split: str, need_labels: bool = True):
    """(X, y) for the command's DATA argument (see `datasets.load_dataset`)."""
    if _is_table(args.data):
        table = _Table(args.data, args.delimiter)
        label = table.column("--label-column", args.label_column or "-1",
                             getattr(args, "label_from", ""))
        return table.read(label if need_labels else None)[:2]
    return datasets.load_dataset(args.data, split, None, need_labels, args.delimiter)


class _Table:
    """A CSV/TSV file's layout (header, columns), read before the file is, so that its
    columns are found in the words of the command line."""

    def __init__(self, path: str, delimiter: str | None):
        if not os.path.exists(path):
            raise FileNotFoundError(f"no data set or file named {path!r} (named data sets: "
                                    f"{', '.join(datasets.NAMED_DATASETS)}; or a .csv, .npz "
                                    "or MNIST directory)")
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path} is a directory, not a table")
        self.path = path
        self.delimiter = delimiter or ("\t" if path.lower().endswith((".tsv", ".tsv.gz"))
                                       else ",")
        if datasets.is_columnar(path):
            self.names = datasets.table_column_names(path)
            self.n_columns = len(self.names)
        else:
            self.names, self.n_columns = datasets.csv_columns(path, self.delimiter)

    def read(self, label: int | None, ids: int | None = None):
        """(X, y, ids): y None without a label column, ids None without an id column."""
        if datasets.is_columnar(self.path):
            if ids is not None:
                raise ValueError(f"--id-column is for .csv/.tsv tables, not {self.path}")
            read = (datasets.load_parquet if self.path.lower().endswith(".parquet")
                    else datasets.load_arrow)
            return (*read(self.path, label), None)
        out = datasets.load_csv(self.path, label, delimiter=self.delimiter, id_column=ids)
        return out if ids is not None else (*out, None)

    def column(self, option: str, text: str, source: str = "") -> int:
        """The index of the column `option text` names (a header name or a number, -1 the
        last), or an error that names the option (and where its value came from)."""
        value = _label_column(text)
        shown = f"{option} {text}{source}"
        if isinstance(value, int):
            if not -self.n_columns <= value < self.n_columns:
                raise ValueError(f"{shown} is out of range: {self.path} has "
                                 f"{self.n_columns} columns (0..{self.n_columns - 1}, or -1 "
                                 "for the last)")
            return value % self.n_columns
        if self.names is None:
            raise ValueError(f"{shown} names a column, but {self.path} has no "
                             "header row (give the column's number, from 0)")
        if value not in self.names:
            raise ValueError(f"{shown}: {self.path} has no column {text!r}; its "
                             f"columns are {', '.join(self.names)}")
        return self.names.index(value)

    def name(self, index: int) -> str:
        return self.names[index] if self.names else str(index)

    def record(self, label: int | None, args) -> dict:
        """How train read it, for the saved model (Network.data_options)."""
        features = None if self.names is None else [
            n for j, n in enumerate(self.names) if j != label]
        return {"label_column": args.label_column, "delimiter": args.delimiter,
                "header": self.names is not None, "columns": features,
                "label": None if label is None or self.names is None else self.names[label]}


def _model_table(args, net, need_labels: bool):
    """(X, y or None, ids or None, id column name, label column name) of a table for a
    saved model, read with the label column and delimiter it was trained with unless
    given; a table without the label column is features alone (an error when
    need_labels)."""
    kept = net.data_options or {}
    table = _Table(args.data, args.delimiter or kept.get("delimiter"))
    id_option = getattr(args, "id_column", None)
    ids_index = None
    if id_option is not None and not (id_option == "row" and "row" not in (table.names or [])):
        ids_index = table.column("--id-column", id_option)
    n_features = table.n_columns - (ids_index is not None)
    label = None
    if args.label_column is not None:
        label = table.column("--label-column", args.label_column)
    elif kept.get("label") is not None and table.names is not None:
        # Trained on a table with a header: its label column is found by name.
        if kept["label"] in table.names:
            label = table.names.index(kept["label"])
    elif n_features == net.n_inputs + 1:
        label = table.column("--label-column", kept.get("label_column") or "-1")
    trained = ("--label-column " + kept["label_column"]) if kept.get("label_column") else (
        "the label in the last column")
    if label is None and n_features != net.n_inputs:
        raise ValueError(f"{table.path} has {n_features} feature columns, but the model takes "
                         f"{net.n_inputs} (trained with {trained})")
    if label is None and need_labels:
        raise ValueError(f"{table.path} has no label column: its {n_features} columns are the "
                         f"model's {net.n_inputs} features; evaluate needs the true labels "
                         f"(the model was trained with {trained}; name the column with "
                         "--label-column)")
    kept_columns = kept.get("columns")
    if kept_columns and table.names is not None:
        here = [n for j, n in enumerate(table.names) if j not in (label, ids_index)]
        if here != kept_columns:
            raise ValueError(f"{table.path}'s feature columns ({', '.join(here)}) are not the "
                             f"model's ({', '.join(kept_columns)}): give the file the "
                             "model's columns, in its order")
    X, y, ids = table.read(label, ids_index)
    ids = ids if ids_index is not None else (
        [str(i) for i in range(1, X.shape[0] + 1)] if id_option is not None else None)
    label_name = None if label is None else table.name(label)
    return X, y, ids, (None if id_option is None else
                       table.name(ids_index) if ids_index is not None else "row"), label_name


def _is_table(path: str) -> bool:
    """A file whose columns the data options name: CSV/TSV, Parquet, Arrow."""
    return datasets.is_table(path) or datasets.is_columnar(path)


def _mpi_world():
    """MPI.COMM_WORLD when this process is one of several started by mpirun, else None."""
    if not any(int(os.environ.get(k, "1")) > 1 for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("started by mpirun, but mpi4py is not installed: "
                          "pip install 'cbackprop[mpi]'") from None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def cmd_train(args) -> int:

    comm = _mpi_world()
    rank = 0 if comm is None else comm.Get_rank()
    quiet = args.quiet or rank != 0          # under mpirun only rank 0 speaks
    say = (lambda *a: None) if quiet else print
    run = _read_checkpoint(args) if args.resume else None
    # Every output is checked before the data is read, not after training.
    for path, option in ((args.save, "--save"), (args.checkpoint, "--checkpoint")):
        if path:
            _check_output_path(path, option)
    if args.plot:
        _check_plot_path(args.plot)
    if args.checkpoint and not args.resume and not args.overwrite:
        held = serialization.checkpoint_at(args.checkpoint)
        if held is not None:
            raise ValueError(f"{args.checkpoint} holds the checkpoint of another run ({held}): "
                             f"continue it with cbackprop train {args.data} --resume "
                             f"{args.checkpoint}, or add --overwrite to start this run's "
                             "checkpoint over it")
    start = _load_model(args.init, "--init") if args.init else None
    if start is not None and start.data_options and _is_table(args.data):
        # Read the data as the model's was, unless told otherwise.
        if args.label_column is None and start.data_options.get("label_column"):
            args.label_column = start.data_options["label_column"]
            args.label_from = f" (the model's, from --init {args.init})"
        if args.delimiter is None:
            args.delimiter = start.data_options.get("delimiter")
    stream = None
    # Under mpirun a .npz or Parquet file is read in shares: each rank its own rows.
    shares = comm is not None and args.data.lower().endswith((".npz", ".parquet"))
    if args.stream:
        if comm is not None:
            raise ValueError("--stream trains in one process: run it without mpirun")
        args.validation_split = 0       # not given (_stream_conflict): nothing held out
        stream, X, y = _open_stream(args, start)
    elif shares:
        X, y, rows = _load_share(args, comm)
    else:
        X, y = load_data(args, "train")
    n_features = X.shape[1] if stream is None else stream.n_features
    if run is not None or start is not None:
        net = run.network if run is not None else start
        optimizer = run.optimizer if run is not None else _make_optimizer(args)
        if n_features != net.n_inputs:
            where = f"--resume {args.resume}" if run is not None else f"--init {args.init}"
            raise ValueError(f"{args.data} has {n_features} features, but the model in "
                             f"{where} takes {net.n_inputs}")
        if net.classes is not None:
            y = _class_indices(net, y, args.data)
        say(f"resuming {run!r}" if run is not None else f"continuing the model in {args.init}")
    else:
        net, optimizer, y, _ = _new_network(args, X, y, say)
    if stream is not None:
        # Labels are read as the network's classes; the first block gives the initial loss.
        stream.classes = net.classes
        X, y, _ = next(iter(stream.parts([0], net.dtype)))
    if shares:
        y = y[rows]
    if _is_table(args.data):
        table = _Table(args.data, args.delimiter)
        net.data_options = table.record(table.column("--label-column",
                                                     args.label_column or "-1"), args)
    stopper = _EarlyStopping(net, args.early_stopping, say) if args.early_stopping else None
    validation = None
    if args.validation_split > 0:
        X, X_val, y, y_val = datasets.train_test_split(X, y, args.validation_split,
                                                       seed=args.seed)
        validation = (X_val, y_val)
        if X.shape[0] == 0:
            raise ValueError(f"--validation-split {args.validation_split:g} leaves none of the "
                             f"{X_val.shape[0]} rows for training; give a smaller fraction")
    n_train = X.shape[0] if stream is None else stream.n_rows
    n_val = 0 if validation is None else validation[0].shape[0]
    if shares:              # each rank read its share, and split it
        n_train, n_val = comm.allreduce(n_train), comm.allreduce(n_val)
        say(f"data-parallel over {comm.Get_size()} MPI ranks, each reading only its share "
            f"of the rows; batch size {args.batch_size} per rank")
    elif comm is not None:  # data-parallel: each rank trains on its share of the rows
        X, y = X[rank::comm.Get_size()], y[rank::comm.Get_size()]
        if validation is not None:
            validation = tuple(a[rank::comm.Get_size()] for a in validation)
        say(f"data-parallel over {comm.Get_size()} MPI ranks, each with its share of the "
            f"rows; batch size {args.batch_size} per rank")
    say(f"data: {args.data}, {n_train} training rows"
        + (f", {n_val} validation rows" if validation else "")
        + f", {n_features} features"
        + ("" if stream is None else f"; streamed from its {stream.n_groups} row groups, "
           f"{min(stream.buffer_rows, n_train)} rows in memory at a time"))
    say(f"model: {net}")
    say(f"optimizer: {optimizer!r}, {args.epochs} epochs, batch size {args.batch_size}")
    try:
        initial_loss = net.evaluate(X, y)["loss"]
    except (ValueError, TypeError):
        if stream is None:
            raise
        initial_loss = None     # a bad first block: the fit names its row group
    callbacks = [_health_printer(say)] if args.health else []
    if stopper is not None:
        callbacks.append(stopper)
    try:
        if run is not None:
            history = run.fit(X, y, validation_data=validation, verbose=not quiet,
                              callbacks=callbacks, epochs=args.epochs, comm=comm,
                              checkpoint_metadata=_checkpoint_metadata(args, run))
        else:
            # The command line says it in its own words (_warn_if_blown_up).
            warnings.filterwarnings("ignore", category=LossWarning)
            history = net.fit(X if stream is None else stream, y if stream is None else None,
                              optimizer=optimizer, epochs=args.epochs,
                              batch_size=args.batch_size, validation_data=validation,
                              verbose=not quiet, health=args.health, callbacks=callbacks,
                              comm=comm, checkpoint=args.checkpoint,
                              checkpoint_every=args.checkpoint_every,
                              checkpoint_metadata=_checkpoint_metadata(args, None),
                              checkpoint_overwrite=args.overwrite)
    except KeyboardInterrupt:
        _save_interrupted(net, optimizer, args, n_train, rank)
        raise
    except DivergenceError:
        lr = "the optimizer's default" if args.lr is None else f"{args.lr:g}"
        raise DivergenceError(
            "training diverged: the loss or the weights became NaN or infinite. Try a "
            f"learning rate 10 to 1000 times smaller than {lr} (--lr), or scale the features "
            "to about [-1, 1]" + (f"; nothing was saved to {args.save}" if args.save
                                  else "")) from None
    if stopper is not None:
        stopper.restore()
    final = {k: v[-1] for k, v in history.history.items() if k not in ("time", "health")}
    if stopper is not None and stopper.best_epoch is not None:
        final = {k: v[stopper.best_epoch] for k, v in history.history.items()
                 if k not in ("time", "health")}
    if rank == 0:
        print("final: " + "  ".join(f"{k} {v:.4g}" if abs(v) >= 1e4 else f"{k} {v:.4f}"
                                    for k, v in final.items()))
        if initial_loss is not None:
            _warn_if_blown_up(initial_loss, final["loss"], args)
    if args.save and rank == 0:
        _save(net, args.save)
        say(f"saved the model to {args.save}")
    if args.plot and rank == 0:
        sizes = "-".join(str(n) for n in net.sizes)
        history.plot(args.plot, title=f"{os.path.basename(args.data.rstrip('/'))}: {sizes} "
                                      f"{args.activation} network, {net.loss.name}, "
                                      f"{args.optimizer}")
        say(f"saved the learning curves to {args.plot}")
    return 0


# ---- --resume: a run's own options, kept in its checkpoint --------------------------

#: train's options that define a run: kept in its checkpoint; --resume restores them, and
#: refuses one given again with another value.
_RUN_OPTIONS = ("hidden", "activation", "loss", "optimizer", "lr", "momentum", "alpha",
                "dropout", "batch_size", "seed", "dtype", "validation_split",
                "checkpoint_every", "label_column", "delimiter")
#: Kept and restored too, but a resumed run may be given new ones: more --epochs, other
#: outputs.
_FREE_OPTIONS = ("epochs", "save", "plot", "early_stopping")


#: The default of every run option in a parse that looks for the options typed.
_NOT_GIVEN = object()


def _checkpoint_metadata(args, run) -> dict | None:
    """What train keeps with its checkpoints: the run's options (as JSON), beside what a
    checkpoint written by the Python API already holds."""
    if args.checkpoint is None:
        return None
    kept = {} if run is None or not isinstance(run.metadata, dict) else dict(run.metadata)
    kept["command_line"] = {"data": args.data,
                            **{k: getattr(args, k) for k in _RUN_OPTIONS + _FREE_OPTIONS}}
    return kept


def _option_text(dest: str, value) -> str:
    """An option with its value as one would type it: `--hidden 64,32`, `--lr 0.01`."""
    option = "--" + dest.replace("_", "-")
    if value is None:
        return f"no {option}"
    if isinstance(value, list):
        value = ",".join(map(str, value))
    elif isinstance(value, float):
        value = f"{value:g}"
    elif dest == "delimiter":
        value = repr(value) if value != "\t" else "'\\t'"
    return f"{option} {value}"


def _read_checkpoint(args):
    """The run --resume names, its options restored into args (see _RUN_OPTIONS)."""
    path = args.resume
    try:
        run = resume(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"--resume {path}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"--resume {path} is a directory, not a checkpoint") from None
    except ValueError:
        try:
            load(path)
        except (ValueError, OSError):
            raise
        raise ValueError(f"--resume {path} is a model file (written by --save), not a "
                         f"checkpoint: to train it further, use --init {path}") from None
    kept = (run.metadata or {}).get("command_line")
    if not isinstance(kept, dict):
        # A checkpoint written by the Python API: the options stay as given, and the
        # epochs are the run's own unless given.
        if "epochs" not in args.given:
            args.epochs = run.epochs
        return run
    for dest in _RUN_OPTIONS + _FREE_OPTIONS:
        if dest not in kept:
            continue
        if dest in args.given and dest in _RUN_OPTIONS and getattr(args, dest) != kept[dest]:
            raise UsageError(f"{_option_text(dest, getattr(args, dest))} contradicts the run "
                             f"checkpointed in {path}, which has "
                             f"{_option_text(dest, kept[dest])}; leave it out to continue "
                             "that run")
        if dest not in args.given:
            setattr(args, dest, kept[dest])
    args.checkpoint = path
    return run


def _save(net, path) -> None:
    try:
        net.save(path)
    except OSError as exc:
        # Name the file asked for, not the temporary file it is written through.
        raise type(exc)(f"--save {path}: could not write it: {exc.strerror or exc}") from None


def _new_network(args, X, y, say):
    """(network, optimizer, encoded y, class names) for train's options and data."""
    loss = args.loss or ("cross_entropy" if _is_classification(y) else "mse")
    if args.loss is None and y.dtype.kind in "iu" and y.max() >= _MAX_GUESSED_CLASSES:
        raise ValueError(f"the labels are integers up to {y.max()}: prices or counts rather "
                         "than classes? Pass --loss mse for regression (or "
                         "--loss cross_entropy if they really are classes)")
    if loss == "binary_cross_entropy" and y.dtype.kind in "iuf" and (
            y.min() < 0 or y.max() > 1):
        raise ValueError(f"--loss binary_cross_entropy needs targets in [0, 1]; those of "
                         f"{args.data} go from {y.min():g} to {y.max():g} (classes: "
                         "--loss cross_entropy; other numbers: --loss mse)")
    classes = None
    if loss == "cross_entropy" and y.ndim == 1:
        classes, y = _encode_labels(y)
        if classes != list(range(len(classes))):
            shown = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
            say(f"labels: {len(classes)} classes ({shown}), encoded as outputs "
                f"0..{len(classes) - 1}")
    units, out_activation = _output_layer(loss, y)
    layers = [Dense(n, args.activation, args.dropout) for n in args.hidden]
    layers.append(Dense(units, out_activation))
    net = Network(n_inputs=X.shape[1], layers=layers, loss=loss, dtype=args.dtype,
                  seed=args.seed, alpha=args.alpha, n_threads=args.threads)
    net.classes = classes
    return net, _make_optimizer(args), y, classes


def _open_stream(args, start):
    """(stream, labels, label summary) for train --stream: the ParquetStream of DATA and,
    for building the network, its distinct labels (for a column of real numbers: its
    smallest and largest), read from the label column alone; with --init, the labels
    checked against the model's classes."""
    table = _Table(args.data, None)
    label = table.column("--label-column", args.label_column or "-1",
                         getattr(args, "label_from", ""))
    stream = datasets.ParquetStream(args.data, label_column=label,
                                    buffer_rows=args.buffer_rows or 65536)
    classes = start is not None and start.classes is not None
    if stream.label_kind == "float" and args.loss != "cross_entropy" and not classes:
        y = np.array(stream.label_range())
    else:
        y = stream.label_values()
    return stream, np.empty((0, stream.n_features)), y


class _EarlyStopping:
    """train --early-stopping N: stop when the validation loss has not improved for N
    epochs, and keep the weights of the best epoch (a fit callback)."""

    def __init__(self, net, patience: int, say):
        self.net, self.patience, self.say = net, patience, say
        self.best_loss, self.best_theta, self.best_epoch = float("inf"), None, None

    def __call__(self, epoch, logs) -> bool:
        loss = logs["val_loss"]
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch
            self.best_theta = self.net.theta.copy()
            return False
        if epoch - self.best_epoch >= self.patience:
            self.say(f"early stopping: val_loss has not improved for {self.patience} epochs")
            return True
        return False

    def restore(self) -> None:
        """Put back the best epoch's weights (when another epoch ended the fit)."""
        if self.best_theta is None or np.array_equal(self.best_theta, self.net.theta):
            return
        self.net.theta = self.best_theta
        self.say(f"restored the weights of epoch {self.best_epoch + 1}, the best val_loss "
                 f"({self.best_loss:.4f})")


def _health_printer(say):
    """A fit callback that prints each epoch's training-health table (train --health)."""

    def show(epoch, logs):
        say(f"health after epoch {epoch + 1}:\n{health_table(logs['health'])}")

    return show


def _save_interrupted(net, optimizer, args, n_rows: int, rank: int) -> None:
    """Ctrl-C in train: keep what was trained (fit left θ at its last finished chunk)."""
    if rank != 0:
        return
    steps = optimizer.t
    per_epoch = -(-n_rows // args.batch_size)
    held = f"{steps // per_epoch} epochs and {steps % per_epoch} steps ({steps} steps in all)"
    if args.save:
        _save(net, args.save)
        print(f"cbackprop: interrupted; saved the model as it stands to {args.save}: {held}",
              file=sys.stderr)
    if args.checkpoint or args.resume:
        path = args.checkpoint or args.resume
        print(f"cbackprop: the run is checkpointed in {path}; continue it with: "
              f"cbackprop train {args.data} --resume {path}", file=sys.stderr)
    elif args.save:
        print("cbackprop: (train with --checkpoint PATH to be able to resume a run exactly)",
              file=sys.stderr)


#: A final training loss this many times the untrained network's means the fit blew up.
_BLOWN_UP = 100.0


def _warn_if_blown_up(initial: float, final: float, args) -> None:
    """Say so on stderr when training made the loss orders of magnitude worse."""
    if final > _BLOWN_UP * initial:
        lr = "the optimizer's default" if args.lr is None else f"{args.lr:g}"
        print(f"cbackprop: warning: the training loss rose from {initial:.4g} before "
              f"training to {final:.4g}: the steps are far too large for this data. Try a "
              f"learning rate 10 to 1000 times smaller than {lr} (--lr), or scale the "
              "features to about [-1, 1]", file=sys.stderr)


# ---- evaluate / predict ----------------------------------------------------------

def _load_model(path: str, option: str = "MODEL"):
    """The model a command names, in the command line's words when it cannot be read."""
    try:
        return load(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{option} {path} is a directory, not a model file") from None
    except PermissionError:
        raise PermissionError(f"{option} {path}: permission denied") from None
    except ValueError as exc:       # damaged, foreign or not a model: say which option
        raise ValueError(f"{option} {exc}") from None


def _check_features(net, X, args) -> None:
    if X.shape[1] != net.n_inputs:
        raise ValueError(f"{args.data} has {X.shape[1]} features, but the model in "
                         f"{args.model} takes {net.n_inputs}")


def cmd_evaluate(args) -> int:

    net = _load_model(args.model)
    if _is_table(args.data):
        X, y, _, _, _ = _model_table(args, net, need_labels=True)
    else:
        X, y = load_data(args, args.split or "test")
    _check_features(net, X, args)
    result = net.evaluate(X, _class_indices(net, y, args.data))
    shown = [f"loss {result['loss']:.4f}"]
    if "accuracy" in result:
        shown.append(f"accuracy {result['accuracy']:.2%}")
    print("  ".join(shown) + f"  ({X.shape[0]} rows)")
    return 0


def cmd_predict(args) -> int:

    if args.out:
        _check_output_path(args.out, "--out")
    net = _load_model(args.model)
    ids = y = id_name = label_name = None
    if _is_table(args.data):
        # A table may hold its label column (as for train; labels may be text) or only
        # the features.
        X, y, ids, id_name, label_name = _model_table(args, net, need_labels=False)
    else:
        if args.id_column is not None:
            raise ValueError(f"--id-column is for .csv/.tsv tables, not {args.data}")
        X, _ = load_data(args, args.split or "test", need_labels=False)
    _check_features(net, X, args)
    out = net.predict(X)
    if args.out and args.out.endswith(".npy"):
        np.save(args.out, out)
    else:
        with open(args.out, "w", newline="") if args.out else nullcontext(sys.stdout) as f:
            _write_predictions(f, net, out, (id_name, ids), (label_name, y))
    if args.out:
        print(f"wrote {out.shape[0]} predictions to {args.out}")
    return 0


def _write_predictions(f, net, out: np.ndarray, ids=(None, None), truth=(None, None)) -> None:
    """CSV of the outputs; for classifiers the class (its name, if known) comes first.
    ids (name, values): a first column naming the rows; truth (name, values): a last
    column with the true labels, when the input held them."""
    writer = csv.writer(f, lineterminator="\n")
    first = [] if ids[1] is None else [ids[0]]
    last = [] if truth[1] is None else [truth[0] if ids[0] != truth[0] else "true_label"]
    ids_of = (lambda i: []) if ids[1] is None else (lambda i: [ids[1][i]])
    truth_of = (lambda i: []) if truth[1] is None else (lambda i: [truth[1][i]])
    if net.loss.name != "cross_entropy":
        writer.writerow(first + [f"y{k}" for k in range(out.shape[1])] + last)
        writer.writerows(ids_of(i) + [f"{v:.6g}" for v in row] + truth_of(i)
                         for i, row in enumerate(out.tolist()))
        return
    classes = net.classes or list(range(out.shape[1]))
    writer.writerow(first + ["class"] + [f"p{c}" if isinstance(c, int) else f"p_{c}"
                                         for c in classes] + last)
    for i, (k, row) in enumerate(zip(out.argmax(axis=1).tolist(), out.tolist(), strict=True)):
        writer.writerow(ids_of(i) + [classes[k]] + [f"{v:.6g}" for v in row] + truth_of(i))


# ---- trace ----------------------------------------------------------------------

def _trace_model(args) -> int:
    """trace MODEL DATA --row N: one row of real data through a saved network."""
    net = _load_model(args.model)
    if _is_table(args.data):
        X, y, _, _, _ = _model_table(args, net, need_labels=False)
    else:
        X, y = load_data(args, args.split or "test", need_labels=False)
    _check_features(net, X, args)
    if args.row > X.shape[0]:
        raise ValueError(f"--row {args.row}: {args.data} has {X.shape[0]} rows")
    if y is None:
        raise ValueError(f"{args.data} has no labels: trace needs the row's true label to "
                         "take the backward pass")
    y = _class_indices(net, y, args.data)
    x, target = X[args.row - 1], y[args.row - 1]
    out = net.predict(x.reshape(1, -1))[0]
    print(f"{args.model}: {net}")
    shown = (net.classes[int(target)] if net.classes is not None and np.ndim(target) == 0
             else target)
    print(f"{args.data}, row {args.row}: label {shown}", end="")
    if net.loss.name == "cross_entropy":
        k = int(out.argmax())
        print(f", predicted {net.classes[k] if net.classes else k} (p = {out[k]:.4f})")
    else:
        print(f", output {', '.join(f'{v:.6g}' for v in out)}")
    print(net.trace(x, target))
    return 0


def cmd_trace(args) -> int:

    if args.model is not None:
        if args.data is None:
            raise UsageError("trace MODEL needs DATA too: trace MODEL DATA --row N")
        return _trace_model(args)
    x = np.array(args.x, dtype=np.float64)
    y = np.array(args.y, dtype=np.float64)
    layers = [Dense(n, args.activation) for n in args.hidden]
    layers.append(Dense(len(y), args.output_activation))
    net = Network(n_inputs=len(x), layers=layers, loss=args.loss, dtype="float64",
                     seed=args.seed)
    records = net.trace(x, y)
    fd = finite_differences(net, x.reshape(1, -1), y.reshape(1, -1), args.eps)

    def row(values):
        return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"

    sizes = "-".join(str(n) for n in net.sizes)
    print(f"A {sizes} network ({args.activation} hidden, {args.output_activation} output, "
          f"loss {net.loss.name}) on one example, in float64:")
    print(f"  input  a⁰ = x = {row(x)}    target y = {row(y)}")

    print("\nForward pass: zˡ = aˡ⁻¹·Wˡ + bˡ,  aˡ = σ(zˡ)   (∂zˡ/∂wˡ = aˡ⁻¹)")
    print(f"  {'layer':>5}  {'unit':>4}  {'z':>12}  {'a':>12}")
    for layer, rec in enumerate(records, start=1):
        for j in range(rec.z.shape[0]):
            print(f"  {layer:>5}  {j + 1:>4}  {rec.z[j]:>12.6f}  {rec.a[j]:>12.6f}")
    cost = net.evaluate(x.reshape(1, -1), y.reshape(1, -1))["loss"]
    print(f"  cost C = {cost:.6f}   ({_COST_FORMULA[net.loss.name]})")

    print("\nBackward pass: δˡ = ∂C/∂zˡ, from the output layer back")
    print("  output: δᴸ = ∂C/∂aᴸ ⊙ σ'(zᴸ);  hidden: δˡ = σ'(zˡ) ⊙ (δˡ⁺¹·(Wˡ⁺¹)ᵀ)")
    print(f"  {'layer':>5}  {'unit':>4}  {'∂C/∂z':>12}")
    for layer in range(len(records), 0, -1):
        for j, d in enumerate(records[layer - 1].dC_dz):
            print(f"  {layer:>5}  {j + 1:>4}  {d:>12.6f}")

    print("\nGradients: ∂C/∂w = a·∂C/∂z  (a of the unit the weight leaves, ∂C/∂z of the "
          "unit it enters);  ∂C/∂b = ∂C/∂z")
    print(f"  {'parameter':<12}  {'a':>10}  {'∂C/∂z':>10}  {'∂C/∂w':>12}  "
          f"{'finite diff.':>12}  {'rel. error':>10}")
    worst = 0.0
    offset = 0
    for layer, rec in enumerate(records, start=1):
        a_prev = x if layer == 1 else records[layer - 2].a
        n_in, n_out = rec.dC_dW.shape
        entries = [(f"w{layer}[{i + 1}→{j + 1}]", a_prev[i], rec.dC_dz[j], offset + i * n_out + j)
                   for i in range(n_in) for j in range(n_out)]
        entries += [(f"b{layer}[{j + 1}]", 1.0, rec.dC_dz[j], offset + n_in * n_out + j)
                    for j in range(n_out)]
        for name, a, delta, index in entries:
            grad = a * delta
            err = abs(grad - fd[index]) / max(abs(grad), abs(fd[index]), 1e-12)
            worst = max(worst, err)
            shown_a = f"{a:>10.6f}" if name.startswith("w") else f"{'':>10}"
            print(f"  {name:<12}  {shown_a}  {delta:>10.6f}  {grad:>12.8f}  {fd[index]:>12.8f}"
                  f"  {err:>10.1e}")
        offset += n_in * n_out + n_out
    print(f"\nlargest relative error, backprop vs central differences (step {args.eps:g}): "
          f"{worst:.1e}")
    return 0


_COST_FORMULA = {
    "mse": "mean over the outputs of (a − y)²",
    "huber": "mean over the outputs of huber(a − y)",
    "cross_entropy": "−Σₖ yₖ log aₖ",
    "binary_cross_entropy": "mean over the outputs of −[y log a + (1 − y) log(1 − a)]",
}


# ---- playground ------------------------------------------------------------------

def cmd_playground(args) -> int:
    from cbackprop.playground import playground

    net = load(args.model) if args.model else None
    playground(net, args.data, host=args.host, port=args.port,
               open_browser=not args.no_browser)
    return 0


# ---- info ----------------------------------------------------------------------

def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cmd_info(args) -> int:
    import platform


    print(f"cbackprop {__version__}  (python {platform.python_version()}, numpy "
          f"{np.__version__}, scipy {_version('scipy')}, threadpoolctl "
          f"{_version('threadpoolctl')})")
    print("dtypes: float32, float64")
    from cbackprop._providers import report

    providers = report()        # loads the providers the rule names, so blas_info lists them
    for r in blas_info():
        if r.get("provider"):
            continue
        role = "BLAS (used by cbackprop)" if r["used"] else "BLAS (numpy's)"
        print(f"{role}: {r.get('internal_api')} {r.get('version')}, kernel "
              f"{r.get('architecture') or 'unknown'}, {r.get('num_threads')} threads, "
              f"{r.get('threading_layer', 'unknown')} threading  [{r.get('filepath')}]")
    for p in providers:
        state = (f"{p['version']}, kernel {p['kernel']}  [{p['path']}]" if p["loaded"]
                 else f"not used ({p['why']})")
        print(f"GEMM provider {p['name']}: {state}")
        for line in p["runs"]:
            print(f"    runs {line}")
    print(f"CPU cores: {os.cpu_count()}")
    # (package, the extra that installs it): each missing one is named with its extra.
    extras = [("scikit-learn", "sklearn"), ("pyarrow", "arrow"), ("matplotlib", "plot"),
              ("tqdm", "progress"), ("torch", "torch"), ("onnx", "onnx"),
              ("onnxruntime", "onnx"), ("mpi4py", "mpi"), ("safetensors", "all")]
    shown = []
    for package, extra in extras:
        version = _version(package)
        shown.append(f"{package} {version}" if version else
                     f"{package} missing (the [{extra}] extra)")
    print("optional: " + ", ".join(shown))
    return 0


# ---- the main job ----------------------------------------------------------------

def main_job(epochs: int = 30) -> int:
    """Train a 64-64-10 network on the embedded digits; print the test accuracy."""

    X, y = datasets.load_digits()
    X_train, X_test, y_train, y_test = datasets.train_test_split(X / 16.0, y, 0.25, seed=0)
    net = Network(n_inputs=64, layers=[Dense(64, "relu"), Dense(10, "softmax")],
                     loss="cross_entropy", dtype="float32", seed=0)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images; {net}")
    # One line per epoch even on a terminal: the falling loss is the point of the demo.
    net.fit(X_train, y_train, optimizer=SGD(lr=0.1, momentum=0.9), epochs=epochs,
            batch_size=32, validation_data=(X_test, y_test), verbose="lines")
    accuracy = net.evaluate(X_test, y_test)["accuracy"]
    print(f"test accuracy: {accuracy:.2%}")
    return 0


# ---- parser ----------------------------------------------------------------------

def _add_data_options(p, with_split: bool) -> None:
    p.add_argument("--label-column", default=None, metavar="COL",
                   help="CSV: the label column, a number (-1: the last) or a header name "
                        "(default: -1)")
    p.add_argument("--delimiter", default=None, metavar="CHAR", type=_delimiter,
                   help="CSV: the field separator (default: tab for .tsv, else ',')")
    if with_split:
        p.add_argument("--split", choices=("train", "test"), default=None,
                       help="built-in data sets and MNIST: which part to use (default: "
                            "test); a file is used whole")


def _add_model_and_data(p) -> None:
    """evaluate's and predict's arguments: a saved model and the data to run it on."""
    p.add_argument("model", metavar="MODEL", help="a file written by train --save")
    p.add_argument("data", metavar="DATA", help="as for train")
    _add_data_options(p, with_split=True)


def build_parser(given_only: bool = False) -> argparse.ArgumentParser:
    """The command line's parser; with given_only, train's options have no defaults, so
    that a parse holds only the options typed."""
    parser = _Parser(
        prog="cbackprop",
        description="Dense neural networks trained by backpropagation, in typed Cython. "
                    "With no command: train on the embedded digits and report test accuracy.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="train a network on a data set",
                       description="Train a network. The output layer follows from the loss "
                                   "and the targets (softmax for class labels, identity for "
                                   "real-valued targets).")
    p.add_argument("data", metavar="DATA",
                   help=f"{', '.join(datasets.NAMED_DATASETS)}; a .csv file (label in the last "
                        "column, "
                        "or --label-column); an .npz with arrays X and y; or an MNIST "
                        "directory of IDX files")
    p.add_argument("--hidden", type=_int_list, default=[64], metavar="N,N,...",
                   help="hidden layer sizes, e.g. 128,64 ('' for none; default: 64)")
    p.add_argument("--activation", default="relu", choices=HIDDEN_ACTIVATIONS, metavar="NAME",
                   help=f"hidden activation: {', '.join(HIDDEN_ACTIVATIONS)} (default: relu)")
    p.add_argument("--loss", default=None,
                   choices=("cross_entropy", "binary_cross_entropy", "mse", "huber"),
                   help="default: cross_entropy for integer labels, else mse")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default: adam")
    p.add_argument("--lr", type=_positive, default=None,
                   help="learning rate (default: the optimizer's: 1e-3 for adam, 0.01 for sgd)")
    p.add_argument("--momentum", type=_fraction, default=None,
                   help="sgd / rmsprop momentum, in [0, 1)")
    p.add_argument("--alpha", type=_non_negative, default=0.0, help="L2 penalty (default: 0)")
    p.add_argument("--dropout", type=_fraction, default=0.0,
                   help="dropout rate of the hidden layers while training (default: 0)")
    p.add_argument("--epochs", type=_positive_int, default=20, help="default: 20")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="default: 32")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="initial weights and shuffling (default: 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="default: float32")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="BLAS threads (default: BLAS's)")
    p.add_argument("--validation-split", type=_fraction, default=0.2, metavar="FRACTION",
                   help="hold out this fraction of the rows for validation (default: 0.2)")
    p.add_argument("--save", metavar="MODEL", help="save the trained network to this file "
                                                   "(on Ctrl-C too: as it stands)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="write the run here every --checkpoint-every epochs and when it "
                        "ends or is interrupted; --resume PATH continues it")
    p.add_argument("--checkpoint-every", type=_positive_int, default=1, metavar="N",
                   help="epochs between checkpoints (default: 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --checkpoint PATH: start this run's checkpoint over the "
                        "checkpoint of another run at PATH (that run is lost)")
    p.add_argument("--resume", metavar="PATH",
                   help="continue the run checkpointed in PATH on the same DATA: its "
                        "options (network, optimizer, data options, --validation-split, "
                        "--seed, --epochs, --save, ...) come from the checkpoint; give "
                        "--epochs, --save or --plot to change them")
    p.add_argument("--init", metavar="MODEL",
                   help="continue training the model in MODEL (a file written by --save) "
                        "with a new optimizer, on DATA read as its data was")
    p.add_argument("--early-stopping", type=_positive_int, default=None, metavar="N",
                   help="stop when the validation loss has not improved for N epochs, and "
                        "keep the weights of the best epoch (needs --validation-split > 0)")
    p.add_argument("--health", action="store_true",
                   help="print each layer's training health every epoch (gradient norms, "
                        "update ratios, dead and saturated units) with advice")
    p.add_argument("--plot", metavar="PNG", help="draw the learning curves to this image")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the final figures")
    p.add_argument("--stream", action="store_true",
                   help="read a .parquet DATA one buffer of rows at a time, never whole (data "
                        "larger than memory): row groups in a random order each epoch, rows "
                        "shuffled within a buffer; no validation split")
    p.add_argument("--buffer-rows", type=_positive_int, default=None, metavar="N",
                   help="rows --stream holds in memory and shuffles together "
                        "(default: 65536)")
    _add_data_options(p, with_split=False)
    p.set_defaults(func=cmd_train)
    if given_only:
        p.set_defaults(**dict.fromkeys(_RUN_OPTIONS + _FREE_OPTIONS, _NOT_GIVEN))

    p = sub.add_parser("evaluate", help="loss and accuracy of a saved network on data",
                       description="Print the loss (and accuracy) of a saved network on DATA.")
    _add_model_and_data(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="outputs of a saved network for data",
                       description="Write a saved network's outputs for DATA as CSV (for "
                                   "classifiers: the class, then each probability) or, for "
                                   "an --out ending in .npy, as a NumPy array. A CSV may "
                                   "include or omit its label column.")
    _add_model_and_data(p)
    p.add_argument("--out", metavar="FILE", help="write here instead of to stdout")
    p.add_argument("--id-column", metavar="COL",
                   help="CSV: a column naming the rows (a header name or a number), written "
                        "first beside each prediction and not used as a feature; 'row': "
                        "the row number (1 for the first data row)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("trace", help="backpropagation by hand on a tiny network",
                       description="Push one example through a tiny float64 network and "
                                   "print the forward pass (z, a per unit), the backward "
                                   "pass (∂C/∂z per unit, output layer first) and ∂C/∂w = "
                                   "a·∂C/∂z for every weight beside a central finite "
                                   "difference.")
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="a saved network (train --save) to trace on a row of DATA instead")
    p.add_argument("data", metavar="DATA", nargs="?", help="as for train")
    p.add_argument("--row", type=_positive_int, default=1, metavar="N",
                   help="with MODEL DATA: the row to trace (1: the first; default 1)")
    _add_data_options(p, with_split=True)
    p.add_argument("--x", type=_float_list, default=[0.05, 0.10], metavar="X1,X2,...",
                   help="the input (default: 0.05,0.10)")
    p.add_argument("--y", type=_float_list, default=[0.01, 0.99], metavar="Y1,Y2,...",
                   help="the target (default: 0.01,0.99)")
    p.add_argument("--hidden", type=_int_list, default=[2], metavar="N,N,...",
                   help="hidden layer sizes (default: 2)")
    p.add_argument("--activation", default="sigmoid", choices=HIDDEN_ACTIVATIONS,
                   metavar="NAME", help="hidden activation, as for train (default: sigmoid)")
    p.add_argument("--output-activation", default="sigmoid", choices=ACTIVATIONS,
                   metavar="NAME", help=f"{', '.join(ACTIVATIONS)} (default: sigmoid)")
    p.add_argument("--loss", default="mse", choices=LOSSES, help="default: mse")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="initial weights (default: 0)")
    p.add_argument("--eps", type=_positive, default=1e-4, help="finite-difference step "
                                                           "(default: 1e-4)")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("playground", help="a local page: backpropagation step by step, "
                                          "live training",
                       description="Serve a page on this machine that draws the network, "
                                   "walks one example through the forward and backward pass "
                                   "(z, a, ∂C/∂z, ∂C/∂w beside finite differences, the "
                                   "update) and trains live, with the loss curves, the "
                                   "decision surface and each layer's health. Needs the "
                                   "[playground] extra. Ctrl-C stops it.")
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="a saved network to open (default: the lecture's 2-2-2 sigmoid one)")
    p.add_argument("--data", metavar="NAME|FILE", default=None,
                   help="xor, spirals, regression (2-D), digits, or a .csv / .npz file "
                        "(default: xor, or a built-in set that fits MODEL)")
    p.add_argument("--port", type=_non_negative_int, default=0,
                   help="default: a free port")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: 127.0.0.1; others get a warning)")
    p.add_argument("--no-browser", action="store_true",
                   help="only print the address; do not open a browser")
    p.set_defaults(func=cmd_playground)

    p = sub.add_parser("info", help="version, dtypes, BLAS library, kernel and threads",
                       description="Print the version, the supported dtypes, the BLAS "
                                   "library (vendor, kernel, threads) and optional packages.")
    p.set_defaults(func=cmd_info)
    return parser


def _option_conflict(args) -> str | None:
    """A usage error that lies between options (each alone parsed fine), or None; found
    before any data is read."""
    if args.command == "train" and args.momentum is not None \
            and args.optimizer not in ("sgd", "rmsprop"):
        return f"--momentum applies to sgd and rmsprop, not {args.optimizer}"
    if args.command == "train" and args.resume:
        if args.checkpoint and args.checkpoint != args.resume:
            return (f"--checkpoint {args.checkpoint}: a resumed run checkpoints to the file it "
                    f"resumes (--resume {args.resume}); leave --checkpoint out")
        if args.health:
            return ("--resume continues a run as it was set up; --health is for a new run "
                    "(a resumed run measures no health figures)")
    if args.command == "train" and args.init:
        if args.resume:
            return ("--init starts a new run from a saved model; --resume continues a "
                    "checkpointed run: give one of them")
        for dest in ("hidden", "activation", "loss", "dtype", "dropout", "alpha"):
            if dest in args.given:
                option = "--" + dest.replace("_", "-")
                return (f"{option} is for a new network; --init {args.init} continues the "
                        "model as it was saved")
    if args.command == "train":
        problem = _stream_conflict(args)
        if problem:
            return problem
    if args.command == "train" and args.early_stopping and not args.validation_split:
        return ("--early-stopping watches the validation loss: it needs --validation-split "
                "above 0")
    if args.command not in ("train", "evaluate", "predict"):
        return None
    if not datasets.is_table(args.data):
        for option, value in ((("--delimiter", args.delimiter),)
                              if datasets.is_columnar(args.data) else
                              (("--label-column", args.label_column),
                               ("--delimiter", args.delimiter))):
            if value is not None:
                if datasets.is_columnar(args.data):
                    return (f"{option} is for .csv/.tsv tables; {args.data} has typed "
                            "columns, read without one")
                if os.path.isdir(args.data):
                    what = "an MNIST directory has its labels built in"
                elif args.data.lower().endswith(".npz"):
                    what = f"{args.data} has its labels in its array y"
                else:
                    what = f"{args.data} has its labels built in"
                return f"{option} is for .csv/.tsv tables; {what}"
    if getattr(args, "split", None) is not None and args.data not in datasets.NAMED_DATASETS \
            and os.path.isfile(args.data):
        return (f"--split is for the built-in data sets and MNIST directories; the file "
                f"{args.data} is used whole")
    return None


def _stream_conflict(args) -> str | None:
    """train --stream's usage errors (and --buffer-rows without it)."""
    if not args.stream:
        return "--buffer-rows is for --stream" if args.buffer_rows is not None else None
    if not args.data.lower().endswith(".parquet"):
        return (f"--stream reads a .parquet file one buffer of rows at a time; {args.data} is "
                "not one (train on it without --stream, or convert it to Parquet)")
    for dest, why in (("validation_split", "a validation split would be held in memory"),
                      ("early_stopping", "it watches a validation split, which would be held "
                                         "in memory"),
                      ("checkpoint", "a checkpoint keeps the row order of data in memory"),
                      ("resume", "a checkpoint keeps the row order of data in memory")):
        value = getattr(args, dest)
        if dest == "validation_split":
            value = value if dest in args.given and value else None
        if value is not None:
            option = "--" + dest.replace("_", "-")
            return (f"{option} is not for --stream: {why}, and --stream reads {args.data} "
                    f"one buffer at a time (leave {option} out, or train without --stream)")
    return None


def _usage_error(parser, args, problem: str):
    """Exit with status 2 and one line naming the command (printed by rank 0 alone)."""
    parser.exit(2, "" if _rank() else f"{parser.prog} {args.command}: error: {problem} "
                                      f"(see {parser.prog} {args.command} --help)\n")


def _rank() -> int:
    """This process's rank among those mpirun started (0 when alone), from the
    environment mpirun sets, so that a message all ranks would print is printed once."""
    for key in ("PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if key in os.environ:
            try:
                return int(os.environ[key])
            except ValueError:
                return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        # Which options were typed (not defaults): --resume restores the others.
        typed = vars(build_parser(given_only=True).parse_args(argv))
        args.given = {k for k, v in typed.items() if v is not _NOT_GIVEN}
    problem = _option_conflict(args)
    if problem:
        return _usage_error(parser, args, problem)
    try:
        status = main_job() if args.command is None else args.func(args)
        # Flushed here, not at exit, so that a closed pipe is caught below whether or not
        # stdout is buffered (it is, into a pipe, unless PYTHONUNBUFFERED is set).
        sys.stdout.flush()
        return status
    except UsageError as exc:
        return _usage_error(parser, args, str(exc))
    except KeyboardInterrupt:
        print("cbackprop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13     # killed by SIGPIPE, as the shell reports it
    except (ValueError, TypeError, OSError, ImportError, DivergenceError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not _rank():     # under mpirun every rank meets the same error: say it once
            print(f"cbackprop: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
