"""Thread and signal safety for Network: a readers-writer lock over θ and a
Ctrl-C that waits for a safe point.

Design: fit changes θ only inside `ReadWriteLock.write()`, one engine chunk
(about 0.1 s) at a time; predict, evaluate, loss_and_grad, trace and save read
θ inside `read()`. So a reader sees θ as it was between two chunks, never half
of one. Readers run together; a waiting writer holds back new readers, and the
readers that were waiting when a writer finished go before the next writer, so
neither side starves. Uncontended, each side costs one mutex round trip.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class ReadWriteLock:
    """Many readers at once, or one writer. Not reentrant."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        # Threads inside a read section, by id: a set, not a count, so that a
        # registration left behind by an exception raised at the wrong moment
        # (an asynchronous KeyboardInterrupt) is undone by that thread's next call.
        self._readers: set[int] = set()
        self._writer = False
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._admitted = 0      # waiting readers let in ahead of the next writer

    @contextmanager
    def read(self):
        me = threading.get_ident()
        with self._cond:
            self._readers_waiting += 1
            try:
                while self._writer or (self._writers_waiting and not self._admitted):
                    self._cond.wait()
                self._admitted = max(self._admitted - 1, 0)
            finally:
                self._readers_waiting -= 1
                self._admitted = min(self._admitted, self._readers_waiting)
                if self._writers_waiting and not self._admitted:
                    self._cond.notify_all()
            self._readers.add(me)
        try:
            yield
        finally:
            with self._cond:
                self._readers.discard(me)
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self):
        me = threading.get_ident()
        with self._cond:
            # A thread cannot be reading while it asks to write (no nesting):
            # a registration of its own is a stale one.
            self._readers.discard(me)
            self._writers_waiting += 1
            try:
                while self._writer or self._readers or self._admitted:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
                self._cond.notify_all()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._admitted = self._readers_waiting
                self._cond.notify_all()


class DeferredInterrupt:
    """While active in the main thread, Ctrl-C (SIGINT) only sets `pending`
    (and calls `on_signal`).

    fit polls it between engine chunks, stops there and leaves the
    block; the block then raises KeyboardInterrupt, so θ and the optimizer
    are never left half-updated. Elsewhere (a worker thread, or a SIGINT
    handler other than Python's default) it changes nothing.
    """

    def __init__(self, on_signal=None):
        self.pending = False
        self._on_signal = on_signal
        self._previous = None

    def _handler(self, signum, frame):
        self.pending = True
        if self._on_signal is not None:
            self._on_signal()

    def __enter__(self) -> DeferredInterrupt:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if self.pending and exc_type is None:
            raise KeyboardInterrupt
