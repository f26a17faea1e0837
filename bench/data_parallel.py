"""Data-parallel training over MPI: R ranks × 1 thread against 1 process × 1 thread.

    python bench/data_parallel.py [--workloads medium,large] [--ranks 2] [--steps 20]

Starts `mpirun -n 1` and `mpirun -n R` of this script (OPENBLAS_NUM_THREADS=1;
the same per-rank batch, so R ranks train R times the rows per step) and
prints, per workload: samples/s of a plain one-process fit, of one rank through
the MPI path, of R ranks, the speed-up, and the Allreduce's time and bytes per
step. Then it fits the ring-Allreduce model

    t(R, bytes) ≈ 2(R−1)/R · bytes / bandwidth + 2(R−1) · latency

to Allreduce timings measured here (two sizes) and, with a network's bandwidth
(10 and 100 Gbit/s, latency 20 µs assumed for a LAN), predicts the scaling
efficiency t_step / (t_step + t_allreduce) at 8 and 64 nodes, so a user can
decide before renting machines. Communication is not overlapped with the
backward pass: the step is gradient, then one Allreduce, then the update.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import WORKLOADS  # noqa: E402

LAN_LATENCY = 20e-6


def worker(names: list[str], steps: int) -> None:
    """Under mpirun: time fits and Allreduces; rank 0 prints one JSON line."""
    from mpi4py import MPI

    import cbackprop as cb

    comm = MPI.COMM_WORLD
    out = {}
    for name in names:
        w = WORKLOADS[name]
        rng = np.random.default_rng(comm.rank)
        n = w.batch * steps
        X = rng.standard_normal((n, w.sizes[0])).astype(np.float32)
        y = (rng.integers(0, w.sizes[-1], n) if w.loss == "cross_entropy"
             else rng.standard_normal((n, w.sizes[-1])).astype(np.float32))
        acts = ["relu"] * (len(w.sizes) - 2) + ["softmax" if w.loss == "cross_entropy"
                                                else "identity"]
        net = cb.Network(w.sizes[0], [cb.Dense(m, a) for m, a in zip(w.sizes[1:], acts)],
                         loss=w.loss, seed=0, n_threads=1)
        opt = cb.SGD(lr=1e-4, momentum=0.9)
        row = {}
        for mode in (("plain", "mpi") if comm.size == 1 else ("mpi",)):
            use = comm if mode == "mpi" else None
            net.fit(X[:w.batch * 2], y[:w.batch * 2], optimizer=opt, batch_size=w.batch,
                    comm=use)                                          # warm-up
            comm.Barrier()
            t0 = time.perf_counter()
            net.fit(X, y, optimizer=opt, batch_size=w.batch, comm=use, shuffle=False)
            comm.Barrier()
            row[mode] = (time.perf_counter() - t0) / steps
        buf = np.zeros(net.theta.size + 5, dtype=np.float32)
        times = []
        for _ in range(max(5, steps // 2)):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        row["allreduce_s"] = statistics.median(times)
        row["bytes"] = buf.nbytes
        out[name] = row
    small, large = np.zeros(2, np.float32), np.zeros(1 << 22, np.float32)
    probe = {}
    for label, buf in (("small", small), ("large", large)):
        times = []
        for _ in range(20):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        probe[label] = (buf.nbytes, statistics.median(times))
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "workloads": out, "probe": probe}))


def launch(ranks: int, names: list[str], steps: int) -> dict:
    mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep
                          + os.environ.get("PATH", ""))
    if mpirun is None:
        sys.exit("no mpirun: pip install -e '.[mpi]'")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([mpirun, "-n", str(ranks), sys.executable, __file__, "--worker",
                           "--workloads", ",".join(names), "--steps", str(steps)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ring_time(ranks: int, nbytes: float, bandwidth: float, latency: float) -> float:
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * latency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="medium,large")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.workloads.split(",")
    if args.worker:
        worker(names, args.steps)
        return 0
    one, many = launch(1, names, args.steps), launch(args.ranks, names, args.steps)
    R = args.ranks
    print(f"{R} ranks × 1 thread against 1 process × 1 thread (float32, SGD momentum, "
          f"{args.steps} steps, same per-rank batch)")
    print(f"{'workload':<8} {'plain/s':>10} {'1 rank/s':>10} {f'{R} ranks/s':>11} "
          f"{'speed-up':>9} {'Allreduce':>10} {'MB/step':>8}")
    for name in names:
        w, a, b = WORKLOADS[name], one["workloads"][name], many["workloads"][name]
        plain, single, multi = (w.batch / a["plain"], w.batch / a["mpi"], R * w.batch / b["mpi"])
        print(f"{name:<8} {plain:>10.0f} {single:>10.0f} {multi:>11.0f} {multi / plain:>8.2f}× "
              f"{b['allreduce_s'] * 1e3:>8.2f}ms {b['bytes'] / 1e6:>8.1f}")
    # The α-β model through the two probe sizes measured with R ranks.
    (n1, t1), (n2, t2) = many["probe"]["small"], many["probe"]["large"]
    c = 2 * (R - 1) / R
    bandwidth = c * (n2 - n1) / max(t2 - t1, 1e-12)
    latency = max(t1 - c * n1 / bandwidth, 0) / (2 * (R - 1))
    print(f"\nring model fitted here ({R} ranks, shared memory): bandwidth "
          f"{bandwidth / 1e9:.2f} GB/s, latency {latency * 1e6:.1f} µs; "
          + ", ".join(f"{name}: predicted {ring_time(R, many['workloads'][name]['bytes'], bandwidth, latency) * 1e3:.2f} ms, "  # noqa: E501
                      f"measured {many['workloads'][name]['allreduce_s'] * 1e3:.2f} ms"
                      for name in names))
    print(f"predicted scaling efficiency (LAN latency {LAN_LATENCY * 1e6:.0f} µs assumed):")
    for name in names:
        step = one["workloads"][name]["mpi"]
        nbytes = one["workloads"][name]["bytes"]
        cells = []
        for nodes in (8, 64):
            for gbit in (10, 100):
                t = ring_time(nodes, nbytes, gbit * 1e9 / 8, LAN_LATENCY)
                cells.append(f"{nodes} nodes @ {gbit} Gbit/s {step / (step + t):.0%}")
        print(f"  {name:<8} " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
