"""The command line: `python -m cbackprop` (or `cbackprop`).

With no arguments it runs the main job: train a network on the embedded
digits and report the test accuracy. Subcommands:

    train DATA       train a network (DATA: digits, spirals, xor, regression,
                     a .csv or .npz file, or an MNIST directory of IDX files)
    evaluate MODEL DATA, predict MODEL DATA
    trace            one example through a tiny network: the forward pass, the
                     backward pass and every ∂C/∂w beside finite differences
    info             version, dtypes, BLAS library, kernel and threads

Errors are printed as one line on stderr, with exit status 1 (2 for a bad
command line, found before any data is read; 130 when interrupted). Output into
a closed pipe (`cbackprop predict ... | head`) stops quietly with status 141,
as a Unix tool killed by SIGPIPE reports it.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
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
from cbackprop.network import Network, load
from cbackprop.optimizers import SGD, Adam, AdamW, RMSprop

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
#: Integer targets reaching this are taken for regression values, not classes, unless told.
_MAX_GUESSED_CLASSES = 1000


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
    if len(classes) < 2:
        raise ValueError(f"every label is {classes[0]!r}: a classifier needs at least two "
                         "classes")
    return classes.tolist(), indices.astype(np.int64)


def _class_indices(net, y: np.ndarray) -> np.ndarray:
    """Labels as the indices of `net.classes` (labels as they are for a network without
    class names, or for one-hot and regression targets)."""
    if net.classes is None or y.ndim != 1:
        return y
    index = {str(c): i for i, c in enumerate(net.classes)}
    keys = [str(v) for v in (y.astype(np.int64) if y.dtype.kind == "f" else y).tolist()]
    unknown = sorted(set(keys) - set(index))
    if unknown:
        raise ValueError(f"labels the model was not trained on: {', '.join(unknown[:5])}; "
                         f"its classes are {', '.join(map(str, net.classes))}")
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


def load_data(args, split: str, need_labels: bool = True):
    """(X, y) for the command's DATA argument (see `datasets.load_dataset`)."""
    label_column = None if args.label_column is None else _label_column(args.label_column)
    return datasets.load_dataset(args.data, split, label_column, need_labels, args.delimiter)


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
    # Every output is checked before the data is read, not after training.
    for path, option in ((args.save, "--save"), (args.checkpoint, "--checkpoint")):
        if path:
            _check_output_path(path, option)
    if args.plot:
        _check_plot_path(args.plot)
    run = resume(args.resume) if args.resume else None
    X, y = load_data(args, "train")
    if run is not None:
        net, optimizer, classes = run.network, run.optimizer, run.network.classes
        if classes is not None:
            y = _class_indices(net, y)
        say(f"resuming {run!r}")
    else:
        net, optimizer, y, classes = _new_network(args, X, y, say)
    validation = None
    if args.validation_split > 0:
        X, X_val, y, y_val = datasets.train_test_split(X, y, args.validation_split,
                                                       seed=args.seed)
        validation = (X_val, y_val)
        if X.shape[0] == 0:
            raise ValueError(f"--validation-split {args.validation_split:g} leaves none of the "
                             f"{X_val.shape[0]} rows for training; give a smaller fraction")
    n_train, n_val = X.shape[0], 0 if validation is None else validation[0].shape[0]
    if comm is not None:    # data-parallel: each rank trains on its share of the rows
        X, y = X[rank::comm.Get_size()], y[rank::comm.Get_size()]
        if validation is not None:
            validation = tuple(a[rank::comm.Get_size()] for a in validation)
        say(f"data-parallel over {comm.Get_size()} MPI ranks, each with its share of the "
            f"rows; batch size {args.batch_size} per rank")
    say(f"data: {args.data}, {n_train} training rows"
        + (f", {n_val} validation rows" if validation else "")
        + f", {X.shape[1]} features")
    say(f"model: {net}")
    say(f"optimizer: {optimizer!r}, {args.epochs} epochs, batch size {args.batch_size}")
    initial_loss = net.evaluate(X, y)["loss"]
    callbacks = [_health_printer(say)] if args.health else []
    try:
        if run is not None:
            history = run.fit(X, y, validation_data=validation, verbose=not quiet,
                              callbacks=callbacks, epochs=args.epochs)
        else:
            history = net.fit(X, y, optimizer=optimizer, epochs=args.epochs,
                              batch_size=args.batch_size, validation_data=validation,
                              verbose=not quiet, health=args.health, callbacks=callbacks,
                              comm=comm, checkpoint=args.checkpoint,
                              checkpoint_every=args.checkpoint_every)
    except KeyboardInterrupt:
        _save_interrupted(net, optimizer, args, X.shape[0], rank)
        raise
    final = {k: v[-1] for k, v in history.history.items() if k not in ("time", "health")}
    if rank == 0:
        print("final: " + "  ".join(f"{k} {v:.4g}" if abs(v) >= 1e4 else f"{k} {v:.4f}"
                                    for k, v in final.items()))
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

def cmd_evaluate(args) -> int:

    net = load(args.model)
    X, y = load_data(args, args.split or "test")
    result = net.evaluate(X, _class_indices(net, y))
    shown = [f"loss {result['loss']:.4f}"]
    if "accuracy" in result:
        shown.append(f"accuracy {result['accuracy']:.2%}")
    print("  ".join(shown) + f"  ({X.shape[0]} rows)")
    return 0


def cmd_predict(args) -> int:

    if args.out:
        _check_output_path(args.out, "--out")
    net = load(args.model)
    if datasets.is_table(args.data):
        # A table may hold its label column (as for train; labels may be text) or only
        # the features.
        X, _ = load_data(args, args.split or "test")
        if X.shape[1] == net.n_inputs - 1 and args.label_column is None:
            X, _ = load_data(args, args.split or "test", need_labels=False)
    else:
        X, _ = load_data(args, args.split or "test", need_labels=False)
    out = net.predict(X)
    if args.out and args.out.endswith(".npy"):
        np.save(args.out, out)
    else:
        with open(args.out, "w", newline="") if args.out else nullcontext(sys.stdout) as f:
            _write_predictions(f, net, out)
    if args.out:
        print(f"wrote {out.shape[0]} predictions to {args.out}")
    return 0


def _write_predictions(f, net, out: np.ndarray) -> None:
    """CSV of the outputs; for classifiers the class (its name, if known) comes first."""
    writer = csv.writer(f, lineterminator="\n")
    if net.loss.name != "cross_entropy":
        writer.writerow([f"y{k}" for k in range(out.shape[1])])
        writer.writerows([f"{v:.6g}" for v in row] for row in out.tolist())
        return
    classes = net.classes or list(range(out.shape[1]))
    writer.writerow(["class"] + [f"p{c}" if isinstance(c, int) else f"p_{c}"
                                 for c in classes])
    for k, row in zip(out.argmax(axis=1).tolist(), out.tolist(), strict=True):
        writer.writerow([classes[k]] + [f"{v:.6g}" for v in row])


# ---- trace ----------------------------------------------------------------------

def cmd_trace(args) -> int:

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
    extras = [("matplotlib", "plot"), ("tqdm", "progress"), ("torch", "torch"),
              ("onnx", "onnx"), ("onnxruntime", "onnx"), ("safetensors", None)]
    shown = []
    for package, extra in extras:
        version = _version(package)
        note = f" [{extra}]" if extra else ""
        shown.append(f"{package} {version}{note}" if version else f"{package} missing{note}")
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


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--resume", metavar="PATH",
                   help="continue the run checkpointed in PATH (same DATA and "
                        "--validation-split, --seed) up to --epochs, checkpointing there")
    p.add_argument("--health", action="store_true",
                   help="print each layer's training health every epoch (gradient norms, "
                        "update ratios, dead and saturated units) with advice")
    p.add_argument("--plot", metavar="PNG", help="draw the learning curves to this image")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the final figures")
    _add_data_options(p, with_split=False)
    p.set_defaults(func=cmd_train)

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
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("trace", help="backpropagation by hand on a tiny network",
                       description="Push one example through a tiny float64 network and "
                                   "print the forward pass (z, a per unit), the backward "
                                   "pass (∂C/∂z per unit, output layer first) and ∂C/∂w = "
                                   "a·∂C/∂z for every weight beside a central finite "
                                   "difference.")
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
        for option, value in (("--checkpoint", args.checkpoint), ("--health", args.health)):
            if value:
                return (f"--resume continues a run as it was set up; {option} is for a new "
                        "run (a resumed run checkpoints to the file it resumes)")
    if args.command not in ("train", "evaluate", "predict"):
        return None
    if not datasets.is_table(args.data):
        for option, value in (("--label-column", args.label_column),
                              ("--delimiter", args.delimiter)):
            if value is not None:
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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _option_conflict(args)
    if problem:
        parser.exit(2, f"{parser.prog} {args.command}: error: {problem} "
                       f"(see {parser.prog} {args.command} --help)\n")
    try:
        status = main_job() if args.command is None else args.func(args)
        # Flushed here, not at exit, so that a closed pipe is caught below whether or not
        # stdout is buffered (it is, into a pipe, unless PYTHONUNBUFFERED is set).
        sys.stdout.flush()
        return status
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
        print(f"cbackprop: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
