"""Per-epoch progress display for `Network.fit(verbose=True)` and the command line.

A tqdm bar when tqdm is installed and the output is a terminal: it counts
training rows over the whole fit and moves after every engine chunk (about
0.1 s), with the smoothed samples/s, the time left for the whole fit and the
running loss beside it. Otherwise one plain line per epoch, which reads well in
logs, files and notebooks' captured output, and, inside an epoch longer than a
few seconds, a line every `Progress.interval` seconds with the rows done so far.
The time left is measured by the wall clock since the fit began (validation,
callbacks and checkpoints included), not from the training time alone.
"""

from __future__ import annotations

import numbers
import os
import sys
import time

import numpy as np


def _format_logs(logs: dict, n_samples: int, rate: bool = True) -> str:
    """'loss 0.1234  accuracy 0.9500  …  12,345 samples/s' from one epoch's logs
    (without the samples/s when `rate` is False)."""
    shown = [f"{k} {v:.4f}" for k, v in logs.items() if k != "time"]
    seconds = logs.get("time")
    if seconds and rate:
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

    Use as a context manager around the epoch loop; call `chunk` as the
    epoch's rows are done (it moves the bar; plain lines ignore it) and
    `update` once per epoch.

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

    #: Seconds between the lines shown inside a long epoch (plain lines only).
    interval = 3.0

    def __init__(self, epochs: int, n_samples: int, verbose: bool | str = True, stream=None):
        verbose = check_verbose(verbose)
        self.epochs = epochs
        self.n_samples = n_samples
        self.enabled = verbose is not False
        self.stream = sys.stdout if stream is None else stream
        self._bar = None
        self._start = self._last_line = self._epoch_start = time.monotonic()
        self._shown = 0         # epochs shown by this Progress (a resumed fit starts later)
        if verbose == "bar" or (verbose is True and _is_wide_terminal(self.stream)):
            try:
                from tqdm import tqdm
            except ImportError:
                return
            total = epochs * n_samples
            self._bar = tqdm(total=total, unit="sample", unit_scale=total >= 10_000,
                             file=self.stream, dynamic_ncols=True, leave=True)

    def chunk(self, epoch: int, rows_done: int, mean_loss: float) -> None:
        """Move the bar to `rows_done` rows into epoch `epoch` (counted from 0), with the
        epoch's running mean loss beside it."""
        if self._bar is None:
            now = time.monotonic()
            if self.enabled and now - self._last_line >= self.interval and rows_done:
                self._last_line = now
                in_epoch = now - self._epoch_start
                per_epoch = ((self._epoch_start - self._start) / self._shown if self._shown
                             else in_epoch * self.n_samples / rows_done)
                left = max(per_epoch * (self.epochs - epoch) - in_epoch, 0.0)
                print(f"{self._epoch_label(epoch)}  {rows_done:,}/{self.n_samples:,} rows  "
                      f"loss {mean_loss:.4f}  ({in_epoch:.1f} s into the epoch, "
                      f"{left:.1f} s left)", file=self.stream, flush=True)
            return
        self._bar.set_postfix_str(f"{self._epoch_label(epoch)}  loss {mean_loss:.4f}",
                                  refresh=False)
        self._bar.update(epoch * self.n_samples + rows_done - self._bar.n)

    def _epoch_label(self, epoch: int) -> str:
        return f"epoch {epoch + 1:>{len(str(self.epochs))}}/{self.epochs}"

    def update(self, epoch: int, logs: dict) -> None:
        """Show epoch `epoch` (counted from 0) with its logs (seconds under "time")."""
        if not self.enabled:
            return
        if self._bar is not None:     # the bar shows the samples/s itself
            figures = _format_logs(logs, self.n_samples, rate=False)
            self._bar.set_postfix_str(f"{self._epoch_label(epoch)}  {figures}", refresh=False)
            self._bar.update((epoch + 1) * self.n_samples - self._bar.n)
            return
        figures = _format_logs(logs, self.n_samples)
        now = time.monotonic()
        self._shown += 1
        self._last_line = self._epoch_start = now
        # Wall-clock seconds per epoch so far, everything included.
        left = (now - self._start) / self._shown * (self.epochs - epoch - 1)
        timing = f"{logs.get('time', 0.0):.2f} s"
        if epoch + 1 < self.epochs:
            timing += f", {left:.1f} s left"
        print(f"{self._epoch_label(epoch)}  {figures}  ({timing})",
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
