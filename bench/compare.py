"""Two source trees of cbackprop side by side: is a change faster or slower?

    python bench/compare.py OTHER_TREE [--workloads tiny,online,small] [--repeats 7]
                            [--dtype float32] [--threads 1]
    python bench/compare.py . --other-env CBACKPROP_BLAS=scipy   # the rule against SciPy's BLAS
    (workloads: bench/run.py's, and online_wide: 1024-1024-1024-10 at batch 1)

Each repeat times every workload in this tree and in OTHER_TREE (an older
checkout with its extensions built in place, e.g. by `git worktree add` and
`python setup.py build_ext --inplace`), alternating, each in a fresh process
with PYTHONPATH set to its tree; so a change in the machine's speed hits both
alike. Prints the median time per training step (SGD with momentum, 1 BLAS
thread, one fit of several epochs) and the ratio, in wall time and in the
process's CPU time (which other processes on the machine disturb less; on 1
thread it is the step's own time). --this-env/--other-env set environment
variables for one side (e.g. the same tree with another GEMM provider);
--threads sets n_threads (the CPU time then includes the BLAS workers').
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import WORKLOADS, Workload, cpu_snapshot  # noqa: E402

# Beyond bench/run.py's: batch-1 training of a wider network, whose one-row
# GEMMs (1×1024×1024) take the hand kernel's row path.
EXTRA_WORKLOADS = {
    "online_wide": Workload("online_wide", (1024, 1024, 1024, 10), 1, "cross_entropy", 64),
}

# Runs inside each tree: prints {workload: seconds per step}.
_TIMER = r"""
import json, sys, time
import numpy as np
import cbackprop as cb
from threadpoolctl import threadpool_limits

out = {}
dtype = sys.argv[2]
threads = int(sys.argv[3])
for name, sizes, batch, loss, seconds in json.loads(sys.argv[1]):
    rng = np.random.default_rng(0)
    n = max(batch * 64, 2048)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    y = (rng.integers(0, sizes[-1], n) if loss == "cross_entropy"
         else rng.standard_normal((n, sizes[-1])).astype(dtype))
    acts = ["relu"] * (len(sizes) - 2) + ["softmax" if loss == "cross_entropy" else "identity"]
    net = cb.Network(sizes[0], [cb.Dense(m, a) for m, a in zip(sizes[1:], acts)], loss=loss,
                     seed=0, n_threads=threads, dtype=dtype)
    opt = cb.SGD(lr=1e-3, momentum=0.9)
    steps_per_epoch = -(-n // batch)
    with threadpool_limits(threads, user_api="blas"):
        net.fit(X, y, optimizer=opt, epochs=1, batch_size=batch)          # warm-up
        epochs, elapsed = 1, 0.0
        while elapsed < seconds:
            t0, c0 = time.perf_counter(), time.process_time()
            net.fit(X, y, optimizer=opt, epochs=epochs, batch_size=batch)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            if elapsed < seconds:
                epochs *= 2
    out[name] = [elapsed / (epochs * steps_per_epoch), cpu / (epochs * steps_per_epoch)]
print(json.dumps(out))
"""


def time_tree(tree: Path, workloads, seconds: float, dtype: str, threads: int = 1,
              extra_env: dict | None = None) -> dict[str, list[float]]:
    spec = json.dumps([(w.name, list(w.sizes), w.batch, w.loss, seconds) for w in workloads])
    env = dict(os.environ, PYTHONPATH=str(tree), **(extra_env or {}))
    done = subprocess.run([sys.executable, "-c", _TIMER, spec, dtype, str(threads)], cwd=tree,
                          env=env,
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other source tree")
    parser.add_argument("--workloads", default="tiny,online,small")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="least seconds per timed fit")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--this-env", default="", help="KEY=VALUE,... for this tree's runs")
    parser.add_argument("--other-env", default="", help="KEY=VALUE,... for the other's")
    args = parser.parse_args()
    envs = {label: dict(kv.split("=", 1) for kv in text.split(",") if kv)
            for label, text in (("this", args.this_env), ("other", args.other_env))}
    workloads = [{**WORKLOADS, **EXTRA_WORKLOADS}[name] for name in args.workloads.split(",")]
    trees = {"this": ROOT, "other": args.other.resolve()}
    times = {label: {w.name: [] for w in workloads} for label in trees}
    before = cpu_snapshot()
    for repeat in range(args.repeats):
        for label, tree in (trees.items() if repeat % 2 == 0 else reversed(trees.items())):
            for name, t in time_tree(tree, workloads, args.seconds, args.dtype, args.threads,
                                     envs[label]).items():
                times[label][name].append(t)
    after = cpu_snapshot()
    # The timed trees run in child processes: their CPU time is ours, not another's.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = max(0.0, ((after[1] - before[1]) - (after[2] - before[2])
                     - (children.ru_utime + children.ru_stime)) / (after[0] - before[0]))
    print(f"this tree: {trees['this']} {envs['this'] or ''}\n"
          f"other tree: {trees['other']} {envs['other'] or ''}")
    print(f"{args.dtype}, SGD momentum 0.9, {args.threads} BLAS thread(s); medians of "
          f"{args.repeats} repeats, other processes kept {load:.2f} cores busy")
    print(f"{'workload':<12} {'this':>12} {'other':>12} {'this/other':>11} "
          f"{'CPU this':>12} {'CPU other':>12} {'CPU ratio':>10}")
    for w in workloads:
        (a, ac), (b, bc) = ([statistics.median(t[i] for t in times[label][w.name])
                             for i in (0, 1)] for label in ("this", "other"))
        print(f"{w.name:<12} {a * 1e6:>10.2f}µs {b * 1e6:>10.2f}µs {a / b:>11.3f} "
              f"{ac * 1e6:>10.2f}µs {bc * 1e6:>10.2f}µs {ac / bc:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
