"""The hand-written small-GEMM kernels against BLAS, shape by shape.

    python bench/kernels.py [--dtypes float32,float64] [--workloads tiny,online]
    python bench/kernels.py --band [--dtypes float32]
    python bench/kernels.py --providers [--repeats 5] [--threads 1,2] [--no-cnr]

For every GEMM the benchmark workloads run (forward Z = A·W, ∂W = Aᵀ·δ,
δ_prev = δ·Wᵀ) and a few more small shapes, it times cbackprop's hand kernels
(at each instruction-set level this CPU has) and BLAS on 1 and 2 threads
through the same entry point (`py_gemm(kernel=...)`, many calls inside one
nogil loop, best of several runs of wall time) and prints what `gemm` chooses.
--band sweeps a grid of mid-sized GEMMs (forward and ∂W layouts, 2^18–2^24
multiply-adds) at the best level, hand kernel against BLAS on 1 and 2 threads.
--providers times, for every GEMM of the five benchmark workloads that goes
to BLAS, each GEMM provider that loads here (SciPy's OpenBLAS, the OpenBLAS
wheel, MKL) on 1 and 2 threads, interleaved (every repeat runs every
provider in turn), medians; it sums them per shape class and prints the
provider table and the rule it gives (cbackprop/_providers.py's RULE).
On 1 thread it times the calling thread's CPU time (the GEMM runs there),
which other processes on the machine disturb far less than wall time; on 2
threads, wall time (only a quiet machine gives telling figures).
--no-cnr loads MKL without its strict reproducibility mode (its cost).
The dispatch rule in _core/_blas.pyx follows from these tables. It prints the
BLAS kernel that ran (threadpoolctl): unset OPENBLAS_CORETYPE in the command
to let OpenBLAS pick its own.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cbackprop._core._blas import kernel_for, kernel_level, py_gemm, set_kernel_level  # noqa: E402

WORKLOADS = {"tiny": ((64, 32, 10), 32), "small": ((784, 128, 10), 64),
             "online": ((784, 128, 10), 1), "medium": ((784, 512, 512, 10), 128)}
LARGE = ((1024, 4096, 4096, 1024), 256)
EXTRA = [("extra", 16, 16, 16, False, False), ("extra", 8, 8, 8, False, False),
         ("extra", 1, 512, 512, False, False), ("extra", 512, 512, 1, True, False),
         ("extra", 2, 128, 784, False, False), ("extra", 4, 10, 32, False, False),
         ("extra", 784, 8, 1, True, False), ("extra", 256, 4, 1, False, False),
         ("extra", 1, 32, 10, False, True), ("extra", 1, 10, 512, False, True),
         ("extra", 1, 1024, 1024, False, False), ("extra", 1, 4096, 1024, False, False)]


def engine_shapes(sizes, B):
    """(name, m, n, k, trans_a, trans_b) of every GEMM in one training step."""
    out = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((f"fwd{i + 1}", B, n_out, n_in, False, False))
        out.append((f"dW{i + 1}", n_in, n_out, B, True, False))
        if i > 0:
            out.append((f"dX{i + 1}", B, n_in, n_out, False, True))
    return out


def seconds_per_call(m, n, k, ta, tb, dtype, kernel, budget=0.01, beta=0.5):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    C = np.zeros((m, n), dtype)
    reps = int(max(1, min(100_000, budget / (2 * m * n * k / 20e9 + 2e-7))))
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        py_gemm(A, B, C, ta, tb, beta=beta, repeat=reps, kernel=kernel)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def band_shapes():
    """(m, n, k, trans_a) of the --band grid: forward (NN, m = batch) and ∂W
    (TN, m = the layer's inputs) GEMMs of 2^18 to 2^24 multiply-adds."""
    grid = [(m, n, k, False) for m in (8, 16, 32, 64, 128, 256)
            for n in (32, 64, 128, 256, 512) for k in (128, 256, 512, 784, 1024, 2048)]
    grid += [(m, n, k, True) for m in (256, 512, 784, 1024)
             for n in (32, 64, 128, 256, 512) for k in (16, 32, 64, 128, 256)]
    return [s for s in grid if 2 ** 18 <= s[0] * s[1] * s[2] <= 2 ** 24]


def print_band(dtypes):
    print("| m×n×k | op | dtype | Mi multiply-adds | hand/BLAS 1t | hand/BLAS 2t | gemm uses |")
    print("|---|---|---|---|---|---|---|")
    for dt in dtypes:
        for m, n, k, ta in band_shapes():
            with threadpool_limits(1, user_api="blas"):
                hand = seconds_per_call(m, n, k, ta, False, dt, "hand", budget=0.004)
                blas1 = seconds_per_call(m, n, k, ta, False, dt, "blas", budget=0.004)
            with threadpool_limits(2, user_api="blas"):
                blas2 = seconds_per_call(m, n, k, ta, False, dt, "blas", budget=0.004)
            print(f"| {m}×{n}×{k} | {'TN' if ta else 'NN'} | {dt} | {m * n * k / 2 ** 20:.2f} | "
                  f"{hand / blas1:.2f} | {hand / blas2:.2f} | "
                  f"{kernel_for(dt, False, m, n, k)} |", flush=True)


def _operands(m, n, k, ta, tb, dtype):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return A, B, np.zeros((m, n), dtype)


def print_providers(dtypes, threads, repeats, no_cnr, out_json=None):
    """The provider table: every BLAS GEMM of the benchmark workloads, every
    provider, interleaved; per shape class the sum of the medians."""
    import json
    import statistics

    from cbackprop import _providers
    from cbackprop._core._blas import class_of

    if no_cnr:
        _providers.MKL_CNR = False
    for name in _providers.PROVIDERS[1:]:
        _providers._load(name)
    names = ["scipy"] + [p.name for p in _providers.loaded()]
    index = {n: _providers.PROVIDERS.index(n) for n in names}
    info = {r["name"]: r for r in _providers.report()}
    print("Providers: " + "; ".join(f"{n} {info[n].get('version')} ({info[n].get('kernel')})"
                                    for n in names)
          + f". Not loaded: {_providers._failed or 'none'}")
    work = dict(WORKLOADS, large=LARGE)
    shapes = [(w, s) for w in work for s in engine_shapes(*work[w])]
    rows = []
    for dt in dtypes:
        for t in threads:
            for w, (name, m, n, k, ta, tb) in shapes:
                if kernel_for(dt, tb, m, n, k) != "BLAS":
                    continue
                A, B, C = _operands(m, n, k, ta, tb, dt)
                flops = 2.0 * m * n * k
                reps = int(max(1, min(20000, 0.01 / (flops / 30e9 + 3e-7))))
                times = {p: [] for p in names}
                with threadpool_limits(t, user_api="blas"):
                    for p in names:
                        for prov in _providers.loaded():
                            prov.set_threads(t)
                        py_gemm(A, B, C, ta, tb, beta=0.5, repeat=1, kernel=index[p])  # warm
                    clock = time.thread_time if t == 1 else time.perf_counter
                    for _ in range(repeats):
                        for p in names:
                            t0 = clock()
                            py_gemm(A, B, C, ta, tb, beta=0.5, repeat=reps, kernel=index[p])
                            times[p].append((clock() - t0) / reps)
                med = {p: statistics.median(v) for p, v in times.items()}
                rows.append(dict(workload=w, shape=name, m=m, n=n, k=k,
                                 op=("T" if ta else "N") + ("T" if tb else "N"), dtype=dt,
                                 threads=t, cls=class_of(m, n, k), us=med))
                print(f"| {w}:{name} | {m}×{n}×{k} | {rows[-1]['op']} | {dt} | {t} | "
                      f"{rows[-1]['cls']} | "
                      + " | ".join(f"{med[p] * 1e6:.1f}" for p in names)
                      + f" | {min(med, key=med.get)} |", flush=True)
    print()
    print("| dtype | threads | class | " + " | ".join(f"{p} µs" for p in names)
          + " | " + " | ".join(f"{p}/scipy" for p in names[1:]) + " | fastest |")
    print("|---|---|---|" + "---|" * (2 * len(names)))
    rule = {}
    for dt in dtypes:
        for t in threads:
            for c in _providers.CLASSES:
                sel = [r for r in rows if r["dtype"] == dt and r["threads"] == t and r["cls"] == c]
                if not sel:
                    continue
                tot = {p: sum(r["us"][p] for r in sel) for p in names}
                best = min(tot, key=tot.get)
                rule.setdefault(f"{dt}/{t}", {})[c] = best
                print(f"| {dt} | {t} | {c} | " + " | ".join(f"{tot[p] * 1e6:.1f}" for p in names)
                      + " | " + " | ".join(f"{tot[p] / tot['scipy']:.2f}" for p in names[1:])
                      + f" | {best} |", flush=True)
    print("\nRule (fastest provider per class):", json.dumps(rule))
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"rows": rows, "rule": rule, "providers": {n: info[n] for n in names}},
                      f, indent=1, default=str)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--no-extra", action="store_true")
    ap.add_argument("--band", action="store_true", help="the mid-sized GEMM sweep instead")
    ap.add_argument("--providers", action="store_true", help="the GEMM providers instead")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-cnr", action="store_true", help="MKL without strict CNR")
    ap.add_argument("--json", help="write the provider rows here")
    args = ap.parse_args(argv)
    if args.providers:
        print_providers(args.dtypes.split(","), [int(t) for t in args.threads.split(",")],
                        args.repeats, args.no_cnr, args.json)
        return
    if args.band:
        print_band(args.dtypes.split(","))
        return
    shapes = [(f"{w}:{s[0]}",) + s[1:] for w in args.workloads.split(",")
              for s in engine_shapes(*WORKLOADS[w])] + ([] if args.no_extra else EXTRA)
    best = kernel_level()
    levels = [lv for lv in ("avx512", "avx2", "portable") if set_kernel_level(lv) == lv]
    set_kernel_level(best)
    kernels = sorted({f"{i['internal_api']} {i.get('version')} {i.get('architecture')}"
                      for i in threadpool_info()})
    print(f"BLAS: {'; '.join(kernels)}. Hand kernel levels: {', '.join(levels)}; "
          "µs per call, best of 5")
    print("| shape | m×n×k | op | dtype | " + " | ".join(f"hand {lv}" for lv in levels)
          + " | BLAS 1t | BLAS 2t | hand/BLAS 1t | gemm uses |")
    print("|---|---|---|---|" + "---|" * len(levels) + "---|---|---|---|")
    for dt in args.dtypes.split(","):
        for name, m, n, k, ta, tb in shapes:
            hand = {}
            with threadpool_limits(1, user_api="blas"):
                for lv in levels:
                    set_kernel_level(lv)
                    hand[lv] = seconds_per_call(m, n, k, ta, tb, dt, "hand")
                set_kernel_level(best)
                blas1 = seconds_per_call(m, n, k, ta, tb, dt, "blas")
                uses = kernel_for(dt, tb, m, n, k)
            with threadpool_limits(2, user_api="blas"):
                blas2 = seconds_per_call(m, n, k, ta, tb, dt, "blas")
            op = ("T" if ta else "N") + ("T" if tb else "N")
            print(f"| {name} | {m}×{n}×{k} | {op} | {dt} | "
                  + " | ".join(f"{hand[lv] * 1e6:.2f}" for lv in levels)
                  + f" | {blas1 * 1e6:.2f} | {blas2 * 1e6:.2f} | {hand[best] / blas1:.2f} | "
                  f"{uses} |", flush=True)


if __name__ == "__main__":
    main()
