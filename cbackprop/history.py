"""History: what `Network.fit` measured, epoch by epoch, and a picture of it."""

from __future__ import annotations

import math
import os

#: Keys that are not learning curves (not drawn by `History.plot`).
_NOT_CURVES = frozenset({"time"})


def _minor_label(value: float, _pos) -> str:
    """Label the minor ticks 2·10ᵏ, 3·10ᵏ and 5·10ᵏ of a log axis, not the others."""
    mantissa = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if mantissa in (2, 3, 5) else ""


class History:
    """What fit measured: `history[name]` is a per-epoch list.

    Keys: "loss" (mean training loss over the epoch's batches), "accuracy"
    (classification losses: running accuracy over the epoch), "val_loss" and
    "val_accuracy" (with validation data, after each epoch) and "time"
    (seconds per epoch).

    Attributes
    ----------
    history : dict of str to list of float
        One list per measured quantity, one entry per epoch.
    epoch : list of int
        The epoch numbers (counted from 0 within the fit).
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def record(self, epoch: int, logs: dict) -> None:
        """Append one epoch's figures (called by fit)."""
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __getitem__(self, name: str) -> list[float]:
        return self.history[name]

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"

    def plot(self, path=None, title: str | None = None):
        """Draw the learning curves with matplotlib; save them to `path` if given.

        One panel per quantity: loss, and accuracy when it was measured, each
        with its validation curve beside the training curve.

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
                if max(values) / min(values) < 100:    # few decades: label 2, 3, 5 too
                    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
                label += " (log scale)"
            ax.set_ylabel(label)
            # Whole epochs only on the x axis.
            ax.xaxis.get_major_locator().set_params(integer=True)
        if title:
            fig.suptitle(title)
        if path is not None:
            fig.savefig(os.fspath(path), dpi=120)
        return fig
