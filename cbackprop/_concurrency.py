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


class ReadWriteLock:
    """Many readers at once, or one writer. Not reentrant.

    `with lock.read():` / `with lock.write():`.
    """

    def __init__(self):
        self._mutex = threading.Lock()
        self._changed = threading.Condition(self._mutex)
        # Threads inside a read section, by id: a set, not a count, so that a
        # registration left behind by an exception raised at the wrong moment
        # (an asynchronous KeyboardInterrupt) is undone by that thread's next call.
        self._readers: set[int] = set()
        self._writer = False
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._admitted = 0      # waiting readers let in ahead of the next writer
        self._read_side = _Side(self._acquire_read, self._release_read)
        self._write_side = _Side(self._acquire_write, self._release_write)

    def read(self) -> _Side:
        return self._read_side

    def write(self) -> _Side:
        return self._write_side

    def _acquire_read(self) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._writer or self._writers_waiting:
                self._wait_to_read()
            self._readers.add(me)

    def _wait_to_read(self) -> None:
        self._readers_waiting += 1
        try:
            while self._writer or (self._writers_waiting and not self._admitted):
                self._changed.wait()
            self._admitted = max(self._admitted - 1, 0)
        finally:
            self._readers_waiting -= 1
            self._admitted = min(self._admitted, self._readers_waiting)
            if self._writers_waiting and not self._admitted:
                self._changed.notify_all()

    def _release_read(self) -> None:
        with self._mutex:
            self._readers.discard(threading.get_ident())
            if not self._readers and self._writers_waiting:
                self._changed.notify_all()

    def _acquire_write(self) -> None:
        me = threading.get_ident()
        with self._mutex:
            # A thread cannot be reading while it asks to write (no nesting):
            # a registration of its own is a stale one.
            self._readers.discard(me)
            self._writers_waiting += 1
            try:
                while self._writer or self._readers or self._admitted:
                    self._changed.wait()
            finally:
                self._writers_waiting -= 1
                self._changed.notify_all()
            self._writer = True

    def _release_write(self) -> None:
        with self._mutex:
            self._writer = False
            self._admitted = self._readers_waiting
            if self._readers_waiting or self._writers_waiting:
                self._changed.notify_all()


class _Side:
    """One side of a ReadWriteLock as a context manager (made once, reused)."""

    __slots__ = ("_acquire", "_release")

    def __init__(self, acquire, release):
        self._acquire = acquire
        self._release = release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._release()


# `signal`'s wrappers turn numbers into enums and back, which costs more than
# a small fit's step (≈ 20 µs a fit call); its C module takes plain numbers.
try:
    import _signal as _signals
except ImportError:          # another Python: the public module
    _signals = signal
_SIGINT = int(signal.SIGINT)


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
                and _signals.getsignal(_SIGINT) is signal.default_int_handler):
            self._previous = _signals.signal(_SIGINT, self._handler)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._previous is not None:
            _signals.signal(_SIGINT, self._previous)
            self._previous = None
        if self.pending and exc_type is None:
            raise KeyboardInterrupt
