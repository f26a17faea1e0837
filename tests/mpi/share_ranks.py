"""Run under mpirun by tests/test_shares.py: each rank reads its share of a file
and trains on it data-parallel, noting its anonymous memory (RssAnon) before
reading, after reading and after the fit.

    mpirun -n R python tests/mpi/share_ranks.py DATA OUT.json
"""

import json
import sys

import numpy as np
from mpi4py import MPI

import cbackprop as cb


def rss_anon() -> int:
    """Bytes of this process's anonymous resident memory (/proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


comm = MPI.COMM_WORLD
path, out = sys.argv[1], sys.argv[2]
before = rss_anon()
X, y = cb.datasets.load_share(path, comm.rank, comm.size)
read = rss_anon()
X = np.ascontiguousarray(X, dtype=np.float32)     # as the fit holds it (float32)
net = cb.Network(X.shape[1], [cb.Dense(16, "relu"), cb.Dense(int(y.max()) + 1, "softmax")],
                 seed=0, n_threads=1)
history = net.fit(X, y, optimizer=cb.SGD(lr=0.01), epochs=1, batch_size=256, comm=comm)
trained = rss_anon()
report = comm.gather({"rows": int(X.shape[0]), "share_bytes": int(X.nbytes),
                      "before": before, "read": read, "trained": trained,
                      "model_bytes": int(net.theta.nbytes)}, root=0)
if comm.rank == 0:
    with open(out, "w") as f:
        json.dump({"ranks": report, "loss": history["loss"]}, f)
