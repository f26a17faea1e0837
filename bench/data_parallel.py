"""Data-parallel training over MPI: R ranks × 1 thread against 1 process × 1 thread
on the combined batch, with the Allreduce overlapped with the backward pass and not.

    python bench/data_parallel.py [--workloads medium,large] [--ranks 2] [--steps 40]
                                  [--repeats 5] [--buckets 1,262144,67108864]
                                  [--json out.json]

Starts `mpirun -n 1` and `mpirun -n R` of this script in turn, --rounds times
(OPENBLAS_NUM_THREADS=1), and reports medians over them.
Each rank trains a per-rank batch of b = (the workload's batch) / R rows, so a
step's global batch is the workload's batch, which the one process trains
whole ("plain", the fused engine). The R-rank fits run overlap off and on
(each bucket size of --buckets) interleaved, --repeats times; medians of the
epochs' times per step (a fit's set-up, such as broadcasting θ, left out).

One process also times the unfused step a layer at a time (a `Reducer` that
notes the time at each hook: the forward pass and update, then each layer's
backward, output layer first), which feeds the α-β model with overlap:

    ring(R, bytes)  = 2(R−1)/R · bytes / bandwidth + 2⌈log₂R⌉ · latency
                      (reduce-scatter + allgather by recursive halving and
                      doubling, MPICH's choice for large messages)
    no overlap:  t = t_fwd + Σ t_layer + ring(R, all bytes)
    overlap:     buckets of layers (as DataParallel groups them), bucket k
                 ready when its last layer's backward ends, sent one after
                 another: end_k = max(ready_k, end_k−1) + ring(R, bytes_k);
                 t = t_fwd + max(Σ t_layer, end_last)

fitted (bandwidth, latency) to Allreduces of two sizes timed here, checked
against the measured R-rank step times (with each layer's compute timed on
every rank at once, each step ending in a Barrier but no gradient sent, so
the cores are shared as in the fits, another process's load or more ranks
than cores, and each step waits for the slowest rank), then, from one
process's layer times, with a LAN's bandwidth (10 and 100 Gbit/s,
20 µs latency assumed), it predicts the scaling efficiency (compute / step)
at 8 and 64 nodes of one rank each. The model assumes a message progresses
while the rank computes (a NIC's offload or MPI's progress thread); on one
machine's shared memory MPICH moves data only inside MPI calls, with the
ranks' own cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def _problem(w, rows, seed):
    import cbackprop as cb

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, w.sizes[0])).astype(np.float32)
    y = (rng.integers(0, w.sizes[-1], rows) if w.loss == "cross_entropy"
         else rng.standard_normal((rows, w.sizes[-1])).astype(np.float32))
    acts = ["relu"] * (len(w.sizes) - 2) + ["softmax" if w.loss == "cross_entropy"
                                            else "identity"]
    net = cb.Network(w.sizes[0], [cb.Dense(m, a) for m, a in zip(w.sizes[1:], acts)],
                     loss=w.loss, seed=0, n_threads=1)
    return net, X, y


def layer_times(w, b: int, steps: int, sync=None) -> dict:
    """One process, the unfused step a layer at a time: mean seconds of the
    forward pass (+ update and the hook's overhead) and of each layer's backward
    (output layer first), with each layer's gradient bytes."""
    import cbackprop as cb
    from cbackprop._session import Reducer, TrainingSession

    class Clock(Reducer):
        def __init__(self):
            self.marks = []

        def bucket_size(self, session):
            return 1

        def begin_step(self, *args):
            super().begin_step(*args)
            self.marks.append([time.perf_counter()])

        def gradient_ready(self, grad, lo, hi):
            self.marks[-1].append(time.perf_counter())

        def finish_step(self, grad):
            if sync is not None:      # wait for every rank, as a step with an Allreduce does
                sync()
            return super().finish_step(grad)

    net, X, y = _problem(w, b * (steps + 1), 0)
    clock = Clock()
    TrainingSession(net, X, y, optimizer=cb.SGD(lr=1e-4, momentum=0.9), batch_size=b,
                    shuffle=False, reducer=clock).fit(1)
    marks = clock.marks[1:]              # means over the steps, as a fit's time is
    layers = [statistics.fmean(m[i + 1] - m[i] for m in marks)
              for i in range(len(marks[0]) - 1)]
    whole = (marks[-1][0] - marks[0][0]) / (len(marks) - 1)
    sizes = w.sizes
    nbytes = [4 * (sizes[i] * sizes[i + 1] + sizes[i + 1]) for i in range(len(sizes) - 2, -1, -1)]
    return {"forward_update": whole - sum(layers), "layers": layers, "bytes": nbytes}


def worker(names: list[str], steps: int, repeats: int, R: int, buckets: list[int]) -> None:
    """Under mpirun: time fits and Allreduces; rank 0 prints one JSON line."""
    from mpi4py import MPI

    import cbackprop as cb
    from cbackprop import distributed

    comm = MPI.COMM_WORLD
    out = {}
    for name in names:
        w = WORKLOADS[name]
        b = w.batch // R
        s = steps if name != "large" else max(2, steps // 8)
        opt = cb.SGD(lr=1e-4, momentum=0.9)
        row: dict = {"per_rank_batch": b, "steps": s}
        if comm.size == 1:
            net, X, y = _problem(w, w.batch * s, 0)
            net.fit(X[:2 * w.batch], y[:2 * w.batch], optimizer=opt, batch_size=w.batch)
            times = []
            for _ in range(repeats):
                history = net.fit(X, y, optimizer=opt, batch_size=w.batch, shuffle=False)
                times.append(history.history["time"][0] / s)
            row["plain"] = statistics.median(times)
            row["plain_all"] = times
            row["model"] = layer_times(w, b, max(8, s))
            out[name] = row
            continue
        net, X, y = _problem(w, b * s, comm.rank)
        modes = [("off", False, distributed.BUCKET_BYTES)] + [
            (f"on-{k}", True, k) for k in buckets]
        for _label, overlap, k in modes:       # warm-up
            distributed.OVERLAP, distributed.BUCKET_BYTES = overlap, k
            net.fit(X[:2 * b], y[:2 * b], optimizer=opt, batch_size=b, comm=comm)
        timings = {label: [] for label, _, _ in modes}
        for _ in range(repeats):              # interleaved
            for label, overlap, k in modes:
                distributed.OVERLAP, distributed.BUCKET_BYTES = overlap, k
                comm.Barrier()
                history = net.fit(X, y, optimizer=opt, batch_size=b, comm=comm, shuffle=False)
                timings[label].append(history.history["time"][0] / s)
        row.update({label: statistics.median(t) for label, t in timings.items()})
        # The layers' compute with every rank computing at once, each step ending in a
        # Barrier and no gradient sent: the model's compute under the same sharing of
        # the cores as the fits above, waiting for the slowest rank as they do.
        comm.Barrier()
        local = comm.gather(layer_times(w, b, max(8, s), sync=comm.Barrier), root=0)
        if comm.rank == 0:
            row["model_local"] = {key: (np.median([m[key] for m in local], axis=0).tolist()
                                        if key != "bytes" else local[0][key])
                                  for key in local[0]}
        row["all"] = timings
        buf = np.zeros(net.theta.size + 5, dtype=np.float32)
        times = []
        for _ in range(max(5, s // 2)):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        row["allreduce_s"] = statistics.median(times)
        row["bytes"] = buf.nbytes
        out[name] = row
    probe = {}
    for label, size in (("small", 2), ("large", 1 << 22)):
        buf = np.zeros(size, np.float32)
        times = []
        for _ in range(20):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        probe[label] = (buf.nbytes, statistics.median(times))
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "workloads": out, "probe": probe,
                          "blas": blas_info()}))


def blas_info() -> list:
    from threadpoolctl import threadpool_info

    return [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for i in threadpool_info()]


def launch(ranks: int, names: list[str], steps: int, repeats: int, R: int,
           buckets: list[int]) -> dict:
    mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep
                          + os.environ.get("PATH", ""))
    if mpirun is None:
        sys.exit("no mpirun: pip install -e '.[mpi]'")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("CBACKPROP_OVERLAP", None)
    env.pop("CBACKPROP_BUCKET_BYTES", None)
    done = subprocess.run([mpirun, "-n", str(ranks), sys.executable, __file__, "--worker",
                           "--workloads", ",".join(names), "--steps", str(steps),
                           "--repeats", str(repeats), "--ranks", str(R),
                           "--buckets", ",".join(map(str, buckets))],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stdout + done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def combine(runs: list[dict]) -> dict:
    """The medians over launches of every timing (per-step seconds, model times)."""
    def merge(values):
        first = values[0]
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values]) for k in first}
        if isinstance(first, (int, float)) and not isinstance(first, bool):
            return statistics.median(values)
        if isinstance(first, list) and first and isinstance(first[0], (int, float)):
            return np.median(np.array(values, dtype=float), axis=0).tolist()
        return first
    out = merge(runs)
    out["launches"] = runs
    return out


def ring_time(ranks: int, nbytes: float, bandwidth: float, latency: float) -> float:
    """Seconds of an Allreduce of nbytes over `ranks` ranks (see the docstring)."""
    return (2 * (ranks - 1) / ranks * nbytes / bandwidth
            + 2 * int(np.ceil(np.log2(ranks))) * latency)


def buckets_of(nbytes: list[int], bucket: int) -> list[tuple[int, int]]:
    """(index of the bucket's last layer in backward order, bytes) as DataParallel groups them."""
    out, pending = [], 0
    for i, n in enumerate(nbytes):
        pending += n
        if pending >= bucket:
            out.append((i, pending))
            pending = 0
    if pending:
        out.append((len(nbytes) - 1, pending))
    return out


def model_step(m: dict, R: int, bandwidth: float, latency: float, bucket: int | None,
               scale: float = 1.0) -> float:
    """The α-β model's step time (see the module's docstring); bucket None: no overlap."""
    fwd, layers = m["forward_update"] * scale, [t * scale for t in m["layers"]]
    if bucket is None:
        return fwd + sum(layers) + ring_time(R, sum(m["bytes"]), bandwidth, latency)
    ready = np.cumsum(layers)
    end = 0.0
    for last, nbytes in buckets_of(m["bytes"], bucket):
        end = max(ready[last], end) + ring_time(R, nbytes, bandwidth, latency)
    return fwd + max(sum(layers), end)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="medium,large")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--buckets", default="1,262144,67108864",
                        help="bucket sizes in bytes to run with overlap on")
    parser.add_argument("--rounds", type=int, default=3,
                        help="launches of 1 process and of R ranks, in turn")
    parser.add_argument("--json", help="write the measurements and the model here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.workloads.split(",")
    buckets = [int(k) for k in args.buckets.split(",")]
    R = args.ranks
    if args.worker:
        worker(names, args.steps, args.repeats, R, buckets)
        return 0
    load_before = os.getloadavg()
    ones, manys = [], []
    for _ in range(args.rounds):       # one process and R ranks in turn, then medians
        ones.append(launch(1, names, args.steps, args.repeats, R, buckets))
        manys.append(launch(R, names, args.steps, args.repeats, R, buckets))
    one, many = combine(ones), combine(manys)
    cores = os.cpu_count() or 1
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"{cpu}, {cores} cores, load {load_before[0]:.2f} before / "
          f"{os.getloadavg()[0]:.2f} after; BLAS {many['blas']}")
    print(f"{R} ranks × 1 thread (per-rank batch = batch / {R}) against 1 process × 1 "
          f"thread on the combined batch (float32, SGD momentum, medians of {args.repeats})")
    labels = ["off"] + [f"on-{k}" for k in buckets]
    print(f"{'workload':<8} {'plain/s':>9} " + " ".join(f"{lab:>16}" for lab in labels)
          + f" {'Allreduce':>10} {'MB/step':>8}")
    for name in names:
        w, a, b = WORKLOADS[name], one["workloads"][name], many["workloads"][name]
        plain = w.batch / a["plain"]
        cells = [f"{w.batch / b[lab]:>8.0f} {w.batch / b[lab] / plain:>5.2f}×" for lab in labels]
        print(f"{name:<8} {plain:>9.0f} " + " ".join(f"{c:>16}" for c in cells)
              + f" {b['allreduce_s'] * 1e3:>8.2f}ms {b['bytes'] / 1e6:>8.1f}")
    (n1, t1), (n2, t2) = many["probe"]["small"], many["probe"]["large"]
    c = 2 * (R - 1) / R
    bandwidth = c * (n2 - n1) / max(t2 - t1, 1e-12)
    latency = max(t1 - c * n1 / bandwidth, 0) / (2 * int(np.ceil(np.log2(R))))
    print(f"\nα-β fitted here ({R} ranks, shared memory): bandwidth {bandwidth / 1e9:.2f} GB/s, "
          f"latency {latency * 1e6:.1f} µs; the check's compute: each layer timed on every "
          f"rank at once, a Barrier a step, no gradient sent (the cores shared as in the fits)")
    model = {"bandwidth": bandwidth, "latency": latency, "workloads": {}}
    for name in names:
        m, b = many["workloads"][name]["model_local"], many["workloads"][name]
        print(f"  {name}: layers (backward order) "
              + ", ".join(f"{t * 1e3:.2f} ms/{n / 1e6:.2f} MB"
                          for t, n in zip(m["layers"], m["bytes"]))
              + f", forward+update {m['forward_update'] * 1e3:.2f} ms")
        checks = {}
        for lab, bucket in [("off", None)] + [(f"on-{k}", k) for k in buckets]:
            predicted = model_step(m, R, bandwidth, latency, bucket)
            checks[lab] = (predicted, b[lab])
            print(f"    {lab:<12} predicted {predicted * 1e3:8.2f} ms/step, measured "
                  f"{b[lab] * 1e3:8.2f} ({(predicted / b[lab] - 1) * 100:+.0f} %)")
        model["workloads"][name] = {"layers_local": m, "check": checks,
                                    "layers": one["workloads"][name]["model"]}
    from cbackprop.distributed import BUCKET_BYTES

    print(f"predicted scaling efficiency, one rank a node (LAN latency "
          f"{LAN_LATENCY * 1e6:.0f} µs), overlap off → on (buckets {BUCKET_BYTES} B):")
    for name in names:
        m = one["workloads"][name]["model"]
        compute = m["forward_update"] + sum(m["layers"])
        cells = []
        for nodes in (8, 64):
            for gbit in (10, 100):
                off, on = (compute / model_step(m, nodes, gbit * 1e9 / 8, LAN_LATENCY, k)
                           for k in (None, BUCKET_BYTES))
                cells.append(f"{nodes} nodes @ {gbit} Gbit/s {off:.0%} → {on:.0%}")
                model["workloads"][name][f"{nodes}x{gbit}"] = (off, on)
        print(f"  {name:<8} " + ", ".join(cells))
    if args.json:
        Path(args.json).write_text(json.dumps({"one": one, "many": many, "model": model,
                                               "cpu": cpu, "load": load_before}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
