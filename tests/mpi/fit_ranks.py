"""Run under mpirun by tests/test_distributed.py: one data-parallel fit.

    mpirun -n R python tests/mpi/fit_ranks.py CASE OUT.json

Rank r trains on its share of the rows of global batch k (the rows of batch k
of one process training with batch R·b, in the same order). Rank 0 writes
the result (θ, every rank's θ digest, the History) to OUT.json.
"""

import hashlib
import json
import os
import signal
import sys
import threading

import numpy as np
from mpi4py import MPI

import cbackprop as cb

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
case, out = sys.argv[1], sys.argv[2]
spec = json.loads(os.environ["CB_MPI_SPEC"])

rng = np.random.default_rng(0)
n, b = spec["n"], spec["b"]
X = rng.standard_normal((n, 6))
y = rng.integers(0, 3, n)
w = rng.uniform(0.2, 2.0, n)
Xv, yv = rng.standard_normal((30, 6)), rng.integers(0, 3, 30)
# Global batch k covers rows [k·R·b, (k+1)·R·b); rank r takes its r-th part.
mine = np.concatenate([np.array_split(np.arange(start, min(start + size * b, n)), size)[rank]
                       for start in range(0, n, size * b)])
net = cb.Network(6, [cb.Dense(10, "tanh"), cb.Dense(3, "softmax")], dtype="float64",
                 seed=spec["seed"] + rank, alpha=0.01, n_threads=1)   # rank 0's θ wins
opt = {"sgd": cb.SGD(lr=0.1, momentum=0.9), "adam": cb.Adam(lr=0.01)}[spec["optimizer"]]
callbacks = []
Xr, yr, wr = X[mine], y[mine], w[mine]
if case == "uneven":        # shards of 14, 15, … rows: at batch 7, 2 and 3 batches an epoch
    Xr, yr, wr = X[:14 + rank], y[:14 + rank], w[:14 + rank]
if case == "diverge" and rank == size - 1:     # finite weights whose sum is not: loss NaN
    wr = np.full_like(wr, 1e308)
if case == "bad-input" and rank == size - 1:
    Xr = Xr.copy()
    Xr[0, 0] = np.nan
if case in ("stop", "checkpoint-stop") and rank == size - 1:
    callbacks.append(lambda epoch, logs: net.stop() if epoch == 1 else None)
if case == "raise" and rank == size - 1:
    def boom(epoch, logs):
        if epoch == 1:
            raise RuntimeError("a callback failed on the last rank")
    callbacks.append(boom)
if case == "kill" and rank == size - 1:
    callbacks.append(lambda epoch, logs: os.kill(os.getpid(), signal.SIGKILL)
                     if epoch == 1 else None)
if case == "interrupt" and rank == size - 1:
    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
validation = (Xv[rank::size], yv[rank::size])
try:
    if case == "checkpoint-resume":     # every rank continues its part of the file's run
        run = cb.resume(spec["checkpoint"])
        net, opt = run.network, run.optimizer
        history = run.fit(Xr, yr, sample_weight=wr, validation_data=validation, comm=comm)
    else:
        history = net.fit(Xr, yr, optimizer=opt, epochs=spec["epochs"], batch_size=b,
                          sample_weight=wr, shuffle=spec.get("shuffle", False),
                          validation_data=validation, callbacks=callbacks, comm=comm,
                          health=case == "health", checkpoint=spec.get("checkpoint"))
except ValueError as exc:
    print(f"rank {rank}: ValueError: {exc}", flush=True)
    sys.exit(3)
except KeyboardInterrupt:
    history = None
except cb.DivergenceError:
    history = "diverged"
digests = comm.gather(hashlib.sha256(net.theta.tobytes()).hexdigest(), root=0)
epochs = comm.gather(-2 if history == "diverged" else
                     len(history.epoch) if history is not None else -1, root=0)
if history == "diverged":
    history = None
if rank == 0:
    with open(out, "w") as f:
        json.dump({"theta": net.theta.tolist(), "digests": digests, "epochs": epochs,
                   "history": history.history if history is not None else None,
                   "t": opt.t}, f)
