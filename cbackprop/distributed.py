"""Data-parallel training over MPI: one network, several processes.

    # mpirun -n 4 python train.py       (each rank passes its own rows)
    from mpi4py import MPI
    net.fit(X_rank, y_rank, optimizer=cb.SGD(0.1, momentum=0.9), epochs=10,
            batch_size=64, comm=MPI.COMM_WORLD)

The scheme is Horovod's and PyTorch DDP's, on the MPI that mpi4py brings
(`pip install "cbackprop[mpi]"` gives mpi4py and MPICH's `mpirun`; a system
Open MPI or Intel MPI works through mpi4py as well). Every rank holds the
whole network and its own rows; `batch_size` is per rank, so a step's global
batch is the union of the ranks' batches:

* before the first step, θ and the optimizer's state_dict are broadcast from rank 0;
* each step, every rank computes the gradient of its own batch, ONE in-place
  Allreduce sums [w_r·g_r, w_r, w_r·loss_r, rows_r, stop, failed] over the
  ranks (w_r: the batch's total row weight), and every rank applies the same update with
  Σ w_r·g_r / Σ w_r, the gradient of the global batch: uneven shards and short
  last batches weigh exactly as one process would. θ stays equal on all ranks;
* the Allreduce overlaps the backward pass, as DDP's and Horovod's do: the
  backward pass runs a layer at a time (`_engine.backward_layer`, output
  layer first), each finished layer's gradient is scaled by w_r into the
  buffer and, once BUCKET_BYTES of them are pending, a non-blocking
  Iallreduce of that bucket starts; the MPI requests are progressed after
  every layer and waited on only before the update. [w_r, w_r·loss_r,
  rows_r, stop, failed] go in their own Iallreduce, started before the
  backward pass. Each element is the same sum of the same terms as without
  overlap (bitwise for 2 ranks; with more, MPI may associate the R terms
  differently for another message size: a few roundings, tested to 1e-12).
  `overlap=False` (or CBACKPROP_OVERLAP=0) keeps the one Allreduce after the
  backward pass;
* a stop (stop(), Ctrl-C) or a non-finite loss on any rank travels in the
  step's reduction, so every rank stops, or raises DivergenceError, at the same step;
* the epoch's loss, accuracy and validation figures are totals over the ranks,
  so callbacks and early stopping decide alike everywhere; only rank 0 prints.

Every rank must train the same number of batches per epoch (checked before
the first step). Bad input on any rank raises ValueError on every rank, naming
the rank; any other exception on one rank aborts the whole job (MPI_Abort)
with its message on stderr, so a job never hangs waiting for a lost rank.
mpi4py is imported only here, only when a communicator is passed.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from cbackprop._session import DivergenceError, Reducer, TrainingSession, check_fit_options

#: Bytes of gradient per non-blocking Allreduce when the reduction overlaps the
#: backward pass (CBACKPROP_BUCKET_BYTES overrides it): a bucket per layer,
#: small layers merged. Chosen by the α-β model of bench/data_parallel.py; on
#: one 2-core machine 1 B, 256 KiB and 64 MiB measured alike (bench/README.md).
BUCKET_BYTES = 256 * 1024
#: Whether the reduction overlaps the backward pass (CBACKPROP_OVERLAP=0: not).
OVERLAP = True


def _setting(name: str, default, convert):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return convert(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a valid setting") from None


class DataParallel(Reducer):
    """The Reducer of data-parallel training over an mpi4py communicator.

    overlap: reduce the gradient in buckets of `bucket_bytes` with
    non-blocking Allreduces while the backward pass goes on (default OVERLAP,
    CBACKPROP_OVERLAP); False: one Allreduce after the backward pass.
    Every rank must choose the same (the buckets are the ranks' collectives).
    """

    def __init__(self, comm, overlap: bool | None = None, bucket_bytes: int | None = None):
        from mpi4py import MPI

        self.comm = comm
        self._sum = MPI.SUM
        self._in_place = MPI.IN_PLACE
        self._testall, self._waitall = MPI.Request.Testall, MPI.Request.Waitall
        self.overlap = (_setting("CBACKPROP_OVERLAP", OVERLAP, lambda v: bool(int(v)))
                        if overlap is None else bool(overlap))
        self.bucket_bytes = (_setting("CBACKPROP_BUCKET_BYTES", BUCKET_BYTES, int)
                             if bucket_bytes is None else int(bucket_bytes))
        if self.bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be at least 1, got {self.bucket_bytes}")
        self.buffer: np.ndarray | None = None
        self._requests: list = []
        self._pending = 0          # buffer[_ready:_pending] is scaled, not yet sent
        self._ready = 0
        self._elements = 0
        self._weight = 0.0

    def start(self, session: TrainingSession) -> None:
        """Give every rank rank 0's θ and optimizer state; allocate the step's buffer."""
        theta, optimizer = session.network.theta, session.optimizer
        self.comm.Bcast(theta, root=0)
        state = self.comm.bcast(optimizer.state_dict() if self.comm.Get_rank() == 0 else None,
                                root=0)
        optimizer.load_state_dict(state)
        self.buffer = np.empty(theta.size + 5, dtype=theta.dtype)

    def reduce_gradient(self, grad, weight, loss, rows, stop, failed):
        n, buf = grad.size, self.buffer
        np.multiply(grad, weight, out=buf[:n])
        self._scalars(n, weight, loss, rows, stop, failed)
        self.comm.Allreduce(self._in_place, buf, op=self._sum)
        return self._agreed(grad)

    def _scalars(self, n, weight, loss, rows, stop, failed):
        self.buffer[n:] = (weight, weight * loss if not failed else 0, rows, stop, failed)

    def _agreed(self, grad):
        n, buf = grad.size, self.buffer
        total_weight = buf[n]
        np.divide(buf[:n], total_weight, out=grad)
        return (float(buf[n + 1] / total_weight), int(buf[n + 2]), bool(buf[n + 3] > 0),
                bool(buf[n + 4] > 0))

    # ---- the overlapped step: buckets reduced while the backward pass goes on ----

    def bucket_size(self, session):
        if not self.overlap:
            return None
        self._elements = max(1, self.bucket_bytes // session.network.theta.itemsize)
        return self._elements

    def begin_step(self, weight, loss, rows, stop, failed):
        n = self.buffer.size - 5
        self._scalars(n, weight, loss, rows, stop, failed)
        self._weight = weight
        self._requests = [self.comm.Iallreduce(self._in_place, self.buffer[n:], op=self._sum)]
        self._pending = self._ready = n

    def gradient_ready(self, grad, lo, hi):
        buf = self.buffer
        np.multiply(grad[lo:hi], self._weight, out=buf[lo:hi])
        self._ready = lo
        if self._pending - lo >= self._elements:
            self._requests.append(self.comm.Iallreduce(self._in_place, buf[lo:self._pending],
                                                       op=self._sum))
            self._pending = lo
        self._testall(self._requests)          # MPI progresses only inside its calls

    def finish_step(self, grad):
        if self._pending > self._ready:
            self._requests.append(self.comm.Iallreduce(
                self._in_place, self.buffer[self._ready:self._pending], op=self._sum))
        self._waitall(self._requests)
        self._requests = []
        return self._agreed(grad)

    def reduce_sums(self, values: np.ndarray) -> None:
        self.comm.Allreduce(self._in_place, values, op=self._sum)

    def gather(self, value):
        return self.comm.gather(value, root=0)

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        return self.comm.Get_size()


def fit(network, X, y, comm, *, optimizer, epochs, batch_size, validation_data, shuffle,
        verbose, sample_weight, callbacks, health=False, checkpoint=None, checkpoint_every=1,
        checkpoint_metadata=None, history=None, prepare=None):
    """`Network.fit(..., comm=comm)`: train network data-parallel over comm's ranks
    (and `Checkpoint.fit(..., comm=comm)`: `prepare(session)` restores the run).
    With a checkpoint, rank 0 writes each rank's part of the run into one file."""
    rank, size = comm.Get_rank(), comm.Get_size()
    session = error = None
    try:
        epochs, callbacks = check_fit_options(epochs, verbose, callbacks)
        session = TrainingSession(network, X, y, sample_weight, optimizer=optimizer,
                                  batch_size=batch_size, shuffle=shuffle,
                                  validation_data=validation_data, health=health,
                                  reducer=DataParallel(comm))
        if prepare is not None:
            prepare(session)
        steps = -(-session.n_rows // session.batch_size)
    except (TypeError, ValueError, OSError) as exc:
        error, steps = exc, None
    # Every rank learns whether every rank could start, before any collective step.
    reports = comm.allgather((None if error is None else f"{type(error).__name__}: {error}",
                              steps, bool(health) if error is None else None))
    if error is not None:
        raise error
    bad = [(r, message) for r, (message, _, _) in enumerate(reports) if message]
    if bad:
        r, message = bad[0]
        raise ValueError(f"rank {r} could not start the fit: {message}")
    counts = [s for _, s, _ in reports]
    if len(set(counts)) > 1:
        raise ValueError(
            f"every rank must train the same number of batches per epoch, but the ranks' "
            f"rows and batch_size give {counts}: give the ranks shares of (nearly) equal size")
    healths = [h for _, _, h in reports]
    if len(set(healths)) > 1:
        raise ValueError(f"health must be the same on every rank, got {healths} by rank")
    try:
        return session.fit(epochs, verbose if rank == 0 else False, callbacks,
                           checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                           checkpoint_metadata=checkpoint_metadata, history=history)
    except (DivergenceError, KeyboardInterrupt):
        raise          # agreed by every rank at the same step
    except BaseException as exc:
        if size > 1:   # the other ranks would wait for this one for ever
            print(f"cbackprop: rank {rank} of {size}: {type(exc).__name__}: {exc}; "
                  "aborting the MPI job", file=sys.stderr, flush=True)
            comm.Abort(1)
        raise
