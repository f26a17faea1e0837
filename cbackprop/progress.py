"""Per-epoch progress display for `Network.fit(verbose=True)` and the command line.

A tqdm bar (one step per epoch, the figures beside it) when tqdm is installed
and the output is a terminal; otherwise one plain line per epoch, which reads
well in logs, files and notebooks' captured output.
"""

from __future__ import annotations

import numbers
import os
import sys

import numpy as np


def _format_logs(logs: dict, n_samples: int) -> str:
    """'loss 0.1234  accuracy 0.9500  …  12,345 samples/s' from one epoch's logs."""
    shown = [f"{k} {v:.4f}" for k, v in logs.items() if k != "time"]
    seconds = logs.get("time")
    if seconds:
        shown.append(f"{n_samples / seconds:,.0f} samples/s")
    return "  ".join(shown)


def check_verbose(verbose) -> bool | str:
    """verbose as True, False, "bar" or "lines"; integers count as booleans
    (0 is off, as scikit-learn's verbose). Anything else raises ValueError."""
    if isinstance(verbose, str) and verbose in ("bar", "lines"):
        return verbose
    if isinstance(verbose, (bool, np.bool_)) or (isinstance(verbose, numbers.Integral)
                                                 and verbose >= 0):
        return bool(verbose)
    raise ValueError(f"verbose must be True, False, 'bar' or 'lines', got {verbose!r}")


def _is_wide_terminal(stream) -> bool:
    """A terminal with room for a bar (a pseudo-terminal may report 0 columns)."""
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()):
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns >= 40
    except (AttributeError, OSError, ValueError):
        return True     # a terminal of unknown width (e.g. a wrapped stream)


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
    verbose : bool or {"bar", "lines"}, default True
        False shows nothing; True a tqdm bar when tqdm is installed and
        `stream` is a terminal at least 40 columns wide, else one line per
        epoch; "bar" or "lines" choose (a "bar" without tqdm falls back to
        lines).
    stream : file-like, optional
        Where to write; default: sys.stdout at the time of the call.
    """

    def __init__(self, epochs: int, n_samples: int, verbose: bool | str = True, stream=None):
        verbose = check_verbose(verbose)
        self.epochs = epochs
        self.n_samples = n_samples
        self.enabled = verbose is not False
        self.stream = sys.stdout if stream is None else stream
        self._bar = None
        self._elapsed = 0.0
        if verbose == "bar" or (verbose is True and _is_wide_terminal(self.stream)):
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
