"""Per-epoch progress display for `Network.fit(verbose=True)` and the command line.

A tqdm bar (one step per epoch, the figures beside it) when tqdm is installed
and the output is a terminal; otherwise one plain line per epoch, which reads
well in logs, files and notebooks' captured output.
"""

from __future__ import annotations

import sys


def _format_logs(logs: dict, n_samples: int) -> str:
    """'loss 0.1234  accuracy 0.9500  …  12,345 samples/s' from one epoch's logs."""
    shown = [f"{k} {v:.4f}" for k, v in logs.items() if k != "time"]
    seconds = logs.get("time")
    if seconds:
        shown.append(f"{n_samples / seconds:,.0f} samples/s")
    return "  ".join(shown)


class Progress:
    """Shows each epoch's figures as fit records them.

    Use as a context manager around the epoch loop and call `update` once
    per epoch.

    Parameters
    ----------
    epochs : int
        Epochs planned (for the bar and the time left).
    n_samples : int
        Training rows per epoch (for samples/s).
    enabled : bool, default True
        False shows nothing (fit's verbose=False).
    stream : file-like, optional
        Where to write; default: sys.stdout at the time of the call.
    bar : bool, optional
        Force the tqdm bar on or off; default: on when tqdm is installed and
        `stream` is a terminal.
    """

    def __init__(self, epochs: int, n_samples: int, enabled: bool = True, stream=None,
                 bar: bool | None = None):
        self.epochs = epochs
        self.n_samples = n_samples
        self.enabled = bool(enabled)
        self.stream = sys.stdout if stream is None else stream
        self._bar = None
        self._elapsed = 0.0
        if not self.enabled:
            return
        if bar is None:
            isatty = getattr(self.stream, "isatty", None)
            bar = bool(isatty and isatty())
        if bar:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=epochs, unit="epoch", file=self.stream, dynamic_ncols=True,
                             leave=True)

    def update(self, epoch: int, logs: dict) -> None:
        """Show epoch `epoch` (counted from 0) with its logs (seconds under "time")."""
        if not self.enabled:
            return
        figures = _format_logs(logs, self.n_samples)
        if self._bar is not None:
            self._bar.set_postfix_str(figures, refresh=False)
            self._bar.update(1)
            return
        self._elapsed += logs.get("time", 0.0)
        left = self._elapsed / (epoch + 1) * (self.epochs - epoch - 1)
        timing = f"{logs.get('time', 0.0):.2f} s"
        if epoch + 1 < self.epochs:
            timing += f", {left:.1f} s left"
        width = len(str(self.epochs))
        print(f"epoch {epoch + 1:>{width}}/{self.epochs}  {figures}  ({timing})",
              file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar (a no-op for plain lines)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
