"""History: what `Network.fit` measured, epoch by epoch, and a picture of it."""

from __future__ import annotations

import math
import os

#: Keys that are not learning curves (not drawn by `History.plot`).
_NOT_CURVES = frozenset({"time", "health"})


def health_table(rows: list[dict]) -> str:
    """One epoch's health records (one per layer) as a table, with advice lines.

    Layers are named as the records and the network count them, from 0:
    `layers[0]` is `net.layers[0]`, the record with "layer": 0."""

    def show(value, width):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.0%}"

    lines = [f"  {'layer':<10} {'units':>6} {'activation':<11} {'|dC/dW|':>9} "
             f"{'|W|':>8} {'|dW|/|W|':>9} {'dead':>6} {'saturated':>9}"]
    for r in rows:
        lines.append(f"  {'layers[' + str(r['layer']) + ']':<10} {r['units']:>6} "
                     f"{r['activation']:<11} "
                     f"{r['grad_norm']:>9.2e} {r['weight_norm']:>8.3g} "
                     f"{r['update_ratio']:>9.1e} {show(r['dead_fraction'], 6)} "
                     f"{show(r['saturated_fraction'], 9)}")
    return "\n".join(lines + health_warnings(rows))


def health_warnings(rows: list[dict]) -> list[str]:
    """Advice for one epoch's health records (one per layer), in the lecture's words."""
    out = []
    for r in rows:
        name = f"layers[{r['layer']}] ({r['activation']})"
        if r["dead_fraction"] is not None and r["dead_fraction"] > 0.5:
            out.append(f"warning: {r['dead_fraction']:.0%} of {name}'s units are dead (z never "
                       "> 0, so no gradient reaches their weights): lower the learning rate "
                       "or use leaky_relu")
        if r["saturated_fraction"] is not None and r["saturated_fraction"] > 0.5:
            out.append(f"warning: {r['saturated_fraction']:.0%} of {name}'s units are "
                       "saturated (σ'(z) ≈ 0, so ∂C/∂w vanishes): scale the inputs, or use relu")
    grads = [r["grad_norm"] for r in rows]
    if len(grads) > 1 and grads[0] < 1e-3 * grads[-1]:
        out.append(f"warning: the first layer's gradient is {grads[-1] / max(grads[0], 1e-300):.0e}"
                   "× smaller than the last's (vanishing gradients): try relu or fewer layers")
    return out


def _minor_label(value: float, _pos) -> str:
    """Label the minor ticks 2·10ᵏ, 3·10ᵏ and 5·10ᵏ of a log axis, not the others."""
    mantissa = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if mantissa in (2, 3, 5) else ""


class History:
    """What fit measured: `history[name]` is a per-epoch list.

    Keys: "loss" (mean training loss over the epoch's batches), "accuracy"
    (classification losses: running accuracy over the epoch), "val_loss" and
    "val_accuracy" (with validation data, after each epoch) and "time"
    (seconds per epoch); with fit(health=True), "health": one record per
    layer per epoch (grad_norm, weight_norm, update_ratio, dead_fraction,
    saturated_fraction; see `History.health_table`).

    One convention for indexes: a health record's "layer" and "epoch" count
    from 0, as `net.layers` and `History.epoch` do, and the health table names
    the layer the same way (`layers[0]` is the record with "layer": 0). Progress
    lines and plots count epochs finished ("epoch 1/20" is after the first).

    Attributes
    ----------
    history : dict of str to list of float
        One list per measured quantity, one entry per epoch.
    epoch : list of int
        The epoch numbers (counted from 0 within the fit).
    stop_reason : str or None
        Set by `cb.fit_many` when a network stopped before its last epoch:
        "callback", "stop" (net.stop()) or "diverged"; None otherwise.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.stop_reason: str | None = None

    def record(self, epoch: int, logs: dict) -> None:
        """Append one epoch's figures (called by fit)."""
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def _plot_health(self, Figure, path, title):
        records = self.history.get("health")
        if not records:
            raise ValueError("nothing to plot: fit with health=True to record health figures")
        fig = Figure(figsize=(10.4, 4.0), layout="constrained")
        grad_ax, unit_ax = fig.subplots(1, 2)
        layers = sorted({r["layer"] for r in records})
        for layer in layers:
            mine = [r for r in records if r["layer"] == layer]
            epochs = [r["epoch"] + 1 for r in mine]
            label = f"layers[{layer}] ({mine[0]['activation']})"
            grad_ax.plot(epochs, [r["grad_norm"] for r in mine], marker="o", markersize=3,
                         label=label)
            for key, style in (("dead_fraction", "-"), ("saturated_fraction", "--")):
                if mine[0][key] is not None:
                    unit_ax.plot(epochs, [r[key] for r in mine], style, marker="o",
                                 markersize=3, label=f"{label} {key.split('_')[0]}")
        grad_ax.set_yscale("log")
        grad_ax.set_title("‖∂C/∂θ‖ per layer (log scale)")
        unit_ax.set_title("dead (relu) and saturated (sigmoid, tanh) units")
        unit_ax.set_ylim(-0.02, 1.02)
        for ax in (grad_ax, unit_ax):
            ax.set_xlabel("epoch")
            ax.grid(True, which="both", alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
        if title:
            fig.suptitle(title)
        if path is not None:
            fig.savefig(os.fspath(path), dpi=110)
        return fig

    def record_health(self, records: list[dict]) -> None:
        """Append one epoch's training-health records, one per layer
        (`fit(..., health=True)`; fields in `TrainingSession.health_records`)."""
        self.history.setdefault("health", []).extend(records)

    def __getitem__(self, name: str) -> list[float]:
        return self.history[name]

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v and k != "health"}
        return f"History(epochs={len(self.epoch)}, last={last})"

    def health_table(self, epoch: int = -1) -> str:
        """One epoch's training health (default: the last), a line per layer,
        and a line of advice for each figure past its threshold."""
        records = self.history.get("health")
        if not records:
            raise ValueError("no health figures: fit with health=True")
        epoch = self.epoch[epoch]
        return health_table([r for r in records if r["epoch"] == epoch])

    def plot(self, path=None, title: str | None = None, kind: str = "curves"):
        """Draw the learning curves with matplotlib; save them to `path` if given.

        kind="curves": one panel per quantity: loss, and accuracy when it was
        measured, each with its validation curve beside the training curve.
        kind="health" (fit with health=True): the gradient norm of each layer
        per epoch on a log axis, and the dead and saturated fractions.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Image file to write; the format follows the extension (.png, .svg,
            .pdf, …).
        title : str, optional
            Title above the panels.

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        ImportError
            If matplotlib is not installed (``pip install 'cbackprop[plot]'``).
        ValueError
            If nothing was recorded (a fit of 0 epochs).
        """
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import FuncFormatter
        except ImportError:
            raise ImportError(
                "History.plot needs matplotlib, which is not installed: "
                "pip install 'cbackprop[plot]' (or pip install matplotlib)"
            ) from None
        if kind == "health":
            return self._plot_health(Figure, path, title)
        if kind != "curves":
            raise ValueError(f"kind must be 'curves' or 'health', got {kind!r}")
        names = [k for k in self.history if not k.startswith("val_") and k not in _NOT_CURVES]
        names += [k[4:] for k in self.history
                  if k.startswith("val_") and k[4:] not in self.history]
        if not self.epoch or not names:
            raise ValueError("nothing to plot: the history has no recorded epochs")
        # Figure without pyplot: no global state, no GUI backend, safe in threads.
        fig = Figure(figsize=(5.2 * len(names), 4.0), layout="constrained")
        epochs = [e + 1 for e in self.epoch]
        for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names, strict=True):
            for key, label, style in ((name, "training", "-"), ("val_" + name, "validation", "--")):
                if key in self.history:
                    ax.plot(epochs, self.history[key], style, marker="o", markersize=3,
                            label=label)
            label = name.replace("_", " ")
            ax.set_xlabel("epoch")
            ax.set_title(label)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            # Losses fall over decades: a log axis shows the late epochs too.
            values = [x for k in (name, "val_" + name) for x in self.history.get(k, [])]
            if name == "loss" and min(values) > 0:
                ax.set_yscale("log")
                plain = FuncFormatter(lambda v, _: f"{v:g}")
                ax.yaxis.set_major_formatter(plain)
                if max(values) / min(values) < 1000:    # up to 3 decades: label 2, 3, 5 too
                    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
                # Down to the decade below the lowest loss, so a labelled tick lies
                # beneath the final values.
                ax.set_ylim(bottom=10 ** math.floor(math.log10(min(values))))
                label += " (log scale)"
            ax.set_ylabel(label)
            # Whole epochs only on the x axis.
            ax.xaxis.get_major_locator().set_params(integer=True)
        if title:
            fig.suptitle(title)
        if path is not None:
            fig.savefig(os.fspath(path), dpi=120)
        return fig
