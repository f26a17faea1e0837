"""What a training step cannot go below on this machine, next to what it takes.

    python bench/floors.py [--dtypes float32,float64] [--workloads tiny,online,small,large]

For each workload of bench/run.py (1 thread, SGD with momentum 0.9) it
measures two floors and the step itself, in one run:

* GEMM: the GEMMs of one step (forward, ∂W, δ·Wᵀ), each timed alone on the
  kernel `gemm` picks for its shape (β = 0: C written, not read), summed:
  the step if nothing else cost anything. At batch 1 the ∂W outer products
  are left out: the engine forms them inside the update, whose traffic the
  memory floor counts;
* memory: the momentum step must read and write θ and its velocity once
  each. Two copies of a θ-sized array (np.copyto, best of many, the arrays
  resident as in training, less the time of a 16-element copy: the call
  itself) move the same bytes at the best speed this machine's caches or
  memory give for that size;
* the step: median of cbackprop's fit over an epoch, as bench/run.py times it.

A lower bound is the larger floor (perfect overlap); the sum is what a step
that overlaps nothing would take. Also printed: the GEMM limit (one n×n×n
GEMM), and the rate the step's own GEMMs reach as a share of it, so the
issue's "% of the GEMM limit" goals can be read against what they allow.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _peers  # noqa: E402
from kernels import engine_shapes, seconds_per_call  # noqa: E402
from run import OPTIMIZERS, WORKLOADS, gemm_limit  # noqa: E402


def copy_seconds(n: int, dtype, budget: float = 0.05) -> float:
    """Best time of one np.copyto of n elements, both arrays warm."""
    src = np.ones(n, dtype)
    dst = np.empty_like(src)
    reps = max(1, int(budget / (2 * src.nbytes / 20e9 + 1e-6)))
    best = np.inf
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(reps):
            np.copyto(dst, src)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def step_seconds(w, dtype, repeats: int = 5) -> float:
    X, y = _peers.make_data(w, dtype)
    impl = _peers.build("cbackprop", w, dtype, OPTIMIZERS["sgd"], 1, X, y)
    impl.run(1)
    epochs = max(1, round(0.15 / impl.timed_run(1)[0]))
    return statistics.median(impl.timed_run(epochs)[0] / (epochs * w.steps)
                             for _ in range(repeats))


def fmt(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} µs"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--workloads", default="tiny,online,small,large")
    args = ap.parse_args(argv)
    print("| workload | dtype | GEMMs alone | % of limit | memory floor | step | step ÷ "
          "larger floor | step ÷ sum |")
    print("|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1, user_api="blas"):
        for dt in (np.dtype(d).type for d in args.dtypes.split(",")):
            limit = gemm_limit(dt, 1, 2048, 3) * 1e9
            for name in args.workloads.split(","):
                w = WORKLOADS[name]
                budget = 0.3 if name == "large" else 0.01
                shapes = [s for s in engine_shapes(w.sizes, w.batch)
                          if w.batch > 1 or not s[0].startswith("dW")]
                gemm_s = sum(seconds_per_call(m, n, k, ta, tb, dt, "auto", budget=budget,
                                              beta=0.0)
                             for _, m, n, k, ta, tb in shapes)
                flops = sum(2.0 * m * n * k for _, m, n, k, _, _ in shapes)
                n_params = sum(a * b + b for a, b in zip(w.sizes[:-1], w.sizes[1:]))
                mem_s = 2 * max(0.0, copy_seconds(n_params, dt) - copy_seconds(16, dt))
                step = step_seconds(w, dt, 3 if name == "large" else 5)
                print(f"| {name} | {np.dtype(dt).name} | {fmt(gemm_s)} | "
                      f"{flops / gemm_s / limit:.0%} | {fmt(mem_s)} | {fmt(step)} | "
                      f"{step / max(gemm_s, mem_s):.2f} | {step / (gemm_s + mem_s):.2f} |",
                      flush=True)
            print(f"GEMM limit {np.dtype(dt).name}, 1 thread: {limit / 1e9:.1f} GFLOP/s",
                  flush=True)


if __name__ == "__main__":
    main()
