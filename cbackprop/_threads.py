"""BLAS threads for cbackprop's kernels: chosen per shape, checked by timing,
never oversubscribed.

The kernels call the BLAS behind scipy.linalg.cython_blas (SciPy's bundled
OpenBLAS in a wheel install). Its thread count is one number for the whole
process, so this module alone sets it, and only while cbackprop calls run:

* Per shape: a call whose GEMMs are small (below `MIN_FLOPS_FOR_THREADS` per
  batch) runs on 1 thread; threads only add synchronisation there.
* Never oversubscribed: while k cbackprop calls run at once (networks trained
  or predicting on several Python threads), the BLAS gets cores // k threads
  (1 on two cores), so each GEMM runs on its caller's thread and the calls
  proceed side by side instead of queueing for the same BLAS workers.
* Timed, in fit: when more than one thread is allowed, fit now and then runs
  a short chunk with the other choice and keeps whichever trains more rows per
  second (re-checked with exponential back-off). So two threads are not kept
  where they are slower than one: small shapes, or another process busy on the
  other core, where a threaded GEMM waits for its descheduled worker.

When the last running call ends, the BLAS gets back the thread count it had.
Only the BLAS libraries that cbackprop calls are touched (not NumPy's own
copy, when it has one): SciPy's, and every GEMM provider that
cbackprop/_providers.py loaded (the OpenBLAS wheel, MKL). They all get the
same count, so n_threads means the same whichever provider runs a GEMM, and
since one call runs its GEMMs one after another, no two providers' threads
run at once on its behalf. The provider rule's column (1 thread, or more)
follows the count set here.
"""

from __future__ import annotations

import os
import threading
import time

from . import _providers
from ._core import _blas
from ._providers import blas_info  # noqa: F401  (its public home was here)

#: Below this many flops per batch (forward GEMMs that BLAS runs), one thread
#: is as fast or faster: OpenBLAS splits no GEMM that small, and probing would
#: only cost. Measured on 2 idle cores: tiny (64-32-10, batch 32; 0.15 MFLOP)
#: gains nothing from 2 threads, small in float64 (784-128-10, batch 64;
#: 13 MFLOP) 1.1–1.2×, medium and large (≥ 170 MFLOP) 1.6–1.7×. (Small in
#: float32 runs on the hand kernel at AVX-512, whose larger GEMMs split their
#: rows over the same thread count: 1.4× on 2 threads.)
MIN_FLOPS_FOR_THREADS = 4e6

#: From this many flops per batch, more threads are surely faster on free
#: cores (large: 1.5–2×), so fit does not spend whole batches probing one
#: thread; it only steps down while other processes hold the cores.
SURE_FLOPS_FOR_THREADS = 1e9

#: A switch of thread count must be this much faster to be adopted.
_MARGIN = 0.95

_lock = threading.Lock()
_wanted: dict[int, list[int]] = {}  # Python thread id -> threads its calls want, innermost last
_saved: int | None = None          # the BLAS's own count before the first call began
_current: int | None = None        # what this module last set
_controllers = None                # [(threadpoolctl controller, setter)] of cbackprop's BLAS


def available_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:       # not on Linux
        return os.cpu_count() or 1


def _blas_controllers():
    """(threadpoolctl controller, thread setter) of each BLAS that
    scipy.linalg.cython_blas may use.

    That is the BLAS library inside SciPy's installation when there is one;
    otherwise (SciPy linked to a system BLAS) every BLAS loaded in the process,
    since it is then usually one library shared with NumPy.
    """
    global _controllers
    if _controllers is None:
        from threadpoolctl import ThreadpoolController

        import cbackprop._core._blas  # noqa: F401  (loads scipy's BLAS)

        blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"
                and not _providers.is_provider_file(c.filepath)]
        own = [c for c in blas if _providers.is_scipys_file(c.filepath)]
        _controllers = [(c, _setter(c)) for c in own or blas]
    return _controllers


def _setter(controller):
    """A function that sets the library's thread count from any Python thread.

    threadpoolctl lets only one Python thread set OpenBLAS's count (it ignores
    the others), which would leave concurrent fits on other threads unable to
    step down to one thread; so OpenBLAS's own setter is called directly.
    """
    if controller.internal_api == "openblas":
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            func = getattr(controller.dynlib, name, None)
            if func is not None:
                func.restype = None
                return lambda n: func(int(n))
    return controller.set_num_threads


def _set_locked(n: int) -> None:
    global _current
    fresh = n != _current          # (None between calls: the first call sets all)
    if fresh:
        for _, set_threads in _blas_controllers():
            set_threads(n)
        _current = n
    # Always: a call's first setting may find _current already equal to n (read
    # back from the BLAS) while the kernels still hold the count restored after
    # the last call.
    _blas.set_threads(n)
    # Every provider, also one loaded since the count was last set. Between
    # calls anyone (threadpoolctl's limits) may have changed a provider's count,
    # so each call's first setting sets them all again.
    for provider in _providers.loaded():
        if fresh or provider.threads != n:
            provider.set_threads(n)
            provider.threads = n


def _apply_locked() -> None:
    """Set the BLAS thread count for the calls now running (lock held).

    Calls nested in one Python thread (fit's validation pass) count once,
    with the innermost call's wish.
    """
    global _saved, _current
    if not _wanted:
        if _saved is not None:
            _set_locked(_saved)
        _saved = _current = None
        return
    if _saved is None:
        _saved = _current = _blas_threads_now()
    share = max(1, available_cores() // len(_wanted))
    _set_locked(max(1, min(share, min(stack[-1] for stack in _wanted.values()))))


def _blas_threads_now() -> int:
    ctrls = _blas_controllers()
    return (ctrls[0][0].get_num_threads() or 1) if ctrls else 1


def default_threads() -> int:
    """The most threads a call uses when its network sets no n_threads: the
    BLAS's own setting (OPENBLAS_NUM_THREADS, threadpoolctl…) before cbackprop
    changed it, at most the cores available."""
    with _lock:
        n = _saved if _saved is not None else _blas_threads_now()
    return max(1, min(n, available_cores()))


def forward_flops(sizes, rows: int) -> float:
    """Flops of the forward GEMMs for `rows` rows through layers `sizes`."""
    return 2.0 * rows * sum(int(a) * int(b) for a, b in zip(sizes[:-1], sizes[1:]))


def threads_for_shape(sizes, rows: int, max_threads: int, dtype) -> int:
    """Threads worth using for batches of `rows` rows through layers `sizes`
    of `dtype`: the flops counted are those of the GEMMs that threads share
    (BLAS's, and the hand kernels' that split their rows over threads; the
    others run on the calling thread alone)."""
    flops = sum(2.0 * rows * int(a) * int(b) for a, b in zip(sizes[:-1], sizes[1:])
                if _blas.kernel_for(dtype, False, rows, int(b), int(a)) == "BLAS"
                or _blas.hand_kernel_splits(rows, int(b), int(a)))
    return 1 if flops < MIN_FLOPS_FOR_THREADS else max(1, max_threads)


def most_threads(n_threads: int | None) -> int:
    """The most threads a call may use: a network's n_threads (default: the
    BLAS's own setting), at most the cores available."""
    return min(n_threads or default_threads(), available_cores())


class BlasThreads:
    """While entered, the BLAS runs with `threads` threads (or fewer, when
    other cbackprop calls run at the same time)."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))

    def __enter__(self):
        _providers.ensure_loaded()
        self._claims = _providers.claim_thread()
        with _lock:
            _wanted.setdefault(threading.get_ident(), []).append(self.threads)
            _apply_locked()
        return self

    def __exit__(self, *exc):
        tid = threading.get_ident()
        with _lock:
            _wanted[tid].pop()
            if not _wanted[tid]:
                del _wanted[tid]
            _apply_locked()
        _providers.release_thread(self._claims)
        return False

    def _want(self, threads: int) -> None:
        with _lock:
            _wanted[threading.get_ident()][-1] = threads
            _apply_locked()

    def set(self, threads: int) -> None:
        """Change the wanted count while entered."""
        self.threads = max(1, int(threads))
        self._want(self.threads)


def cpu_seconds() -> tuple[float, float, float] | None:
    """(wall clock, CPU seconds busy on the whole machine, CPU seconds of this
    process), or None where /proc/stat cannot be read."""
    try:
        with open("/proc/stat", "rb") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None
    return time.perf_counter(), busy, time.process_time()


try:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _CLOCK_TICKS = 100


class FitThreads(BlasThreads):
    """BlasThreads for fit: it times chunks and keeps the faster thread count.

    The fit loop asks `chunk_rows` how many rows to train next and reports
    the time with `observe`. Every so often the next chunk is a short probe
    (1/8 of a chunk) with the other thread count; if that trains rows faster
    by more than 5 %, it becomes the choice. Each probe that loses doubles the
    wait before the next one (from 4 chunks up to 256), so a slower choice
    costs little. A network keeps its FitThreads, so its later fits start
    from what was measured.

    Where the machine tells (Linux /proc/stat), fit also watches how many
    cores other processes keep busy. While that leaves no core free for a
    second thread, it trains on one thread and does not probe more: a BLAS
    worker that has to share its core makes every GEMM wait for it.
    """

    def __init__(self, threads: int, max_threads: int, sure: bool = False):
        super().__init__(threads)
        # Shapes the rule keeps on one thread are not probed: there threads
        # cannot pay for themselves, and a probe on a busy core costs dearly.
        # Nor are shapes where more threads are sure to pay (sure=True).
        self.options = (1, max_threads) if threads > 1 else (1,)
        self.sure = sure and threads > 1
        self.most = max_threads
        self.seconds_per_row: dict[int, float] = {}
        self.chunks = 0
        self.interval = 4
        self.next_probe = 1
        self.probing = False
        self._warming = False
        # Cores other processes keep busy (running mean), first guessed from the
        # load average less this process's own thread.
        try:
            self.others = max(0.0, os.getloadavg()[0] - 1)
        except (AttributeError, OSError):
            self.others = 0.0
        self._snapshot = None
        if self.threads > 1 and self._cores_free() < 1.5:
            self.threads = 1

    def __enter__(self):
        # A fit's first chunk pays for first touches of its fresh buffers: its
        # time says nothing about the thread count.
        self._warming = True
        return super().__enter__()

    def _other(self) -> int:
        return self.options[1] if self.threads == self.options[0] else self.options[0]

    def _cores_free(self) -> float:
        return available_cores() - self.others

    def chunk_rows(self, rows: int, batch: int) -> int:
        """Rows for the next chunk, given the usual chunk size; switches the
        BLAS to the other thread count when this chunk is a probe."""
        self.probing = (len(self.options) > 1 and self.chunks >= self.next_probe
                        and not self._warming and self.threads in self.seconds_per_row
                        and not self.sure)
        if self.probing and self._other() > self.threads and self._cores_free() < 1.5:
            self.probing = False                  # no free core: more threads would wait
            self.next_probe = self.chunks + self.interval
        # The machine's load matters only where a second thread is an option.
        watch = len(self.options) > 1 or self.sure
        self._snapshot = cpu_seconds() if watch and not self.probing else None
        if self.probing:
            self._probe_threads = self._other()
            self._want(self._probe_threads)
            return max(batch, rows // 8 // batch * batch)
        return rows

    def observe(self, seconds: float, rows: int) -> None:
        """Record how long the last chunk took for how many rows."""
        self.chunks += 1
        if self._snapshot is not None:
            now = cpu_seconds()
            wall = now[0] - self._snapshot[0] if now else 0.0
            if wall > 0.02:                       # /proc/stat counts in 10 ms ticks
                busy = (now[1] - self._snapshot[1]) - (now[2] - self._snapshot[2])
                self.others = 0.5 * (self.others + max(0.0, busy / wall))
            if self.threads > 1 and self._cores_free() < 1.5:
                self.set(1)                       # another process took the spare core
            elif self.sure and self.threads == 1 and self._cores_free() >= 1.5:
                self.set(self.most)               # and gave it back
        if rows <= 0 or self._warming:
            self._warming = False
            return
        rate = seconds / rows
        if not self.probing:
            old = self.seconds_per_row.get(self.threads)
            self.seconds_per_row[self.threads] = rate if old is None else 0.5 * (old + rate)
            return
        # A probe's own time, not a mean with older ones: the machine may have changed.
        used = self._probe_threads
        self.seconds_per_row[used] = rate
        if rate < _MARGIN * self.seconds_per_row[self.threads]:
            self.threads, self.interval = used, 4
        else:
            self.interval = min(2 * self.interval, 256)
        self.next_probe = self.chunks + self.interval
        self.probing = False
        self.set(self.threads)
