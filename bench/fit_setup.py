"""What one `fit` call costs beyond its steps (set-up and tear-down), large network.

    python bench/fit_setup.py [--dtype float32] [--threads 1] [--repeats 9]

Each repeat makes a one-step fit call (the time a user sees) and a 4-step fit
call, on the same network and optimizer (SGD with momentum 0.9 or Adam). The
engine's own calls (`train_batches`) are timed inside both, so the report
splits a call into its steps and everything else: set-up = one-step call −
the median of the later steps of the 4-step calls (each chunk is one step
here); "outside the engine" is the part spent in
Python (checks, finiteness check), measured directly. The rollback copies of θ
and the optimizer state are made inside the engine, by the call's first update
(`_engine.backward_update`), so they count in the one-step call's engine time. Each
figure is given in wall time and in the process's CPU time (on 1 thread the
call's own time, which other processes on the machine disturb less).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cbackprop as cb  # noqa: E402
from cbackprop import _session  # noqa: E402

SIZES, BATCH = (1024, 4096, 4096, 1024), 256


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4 * BATCH, SIZES[0])).astype(args.dtype)
    Y = np.tanh(rng.standard_normal((4 * BATCH, SIZES[-1]))).astype(args.dtype)
    layers = [cb.Dense(m, "relu") for m in SIZES[1:-1]] + [cb.Dense(SIZES[-1], "identity")]
    net = cb.Network(SIZES[0], layers, loss="mse", dtype=args.dtype, seed=0,
                     n_threads=args.threads)
    opt = cb.SGD(lr=1e-4, momentum=0.9) if args.optimizer == "sgd" else cb.Adam(lr=1e-4)
    engine_s = []
    inner = _session._engine.train_batches

    def timed(*a):
        t0, c0 = time.perf_counter(), time.process_time()
        out = inner(*a)
        engine_s.append(np.array([time.perf_counter() - t0, time.process_time() - c0]))
        return out

    _session._engine.train_batches = timed

    def fit(rows):
        engine_s.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        net.fit(X[:rows], Y[:rows], optimizer=opt, epochs=1, batch_size=BATCH, shuffle=False)
        return np.array([time.perf_counter() - t0, time.process_time() - c0]), list(engine_s)

    fit(BATCH)       # first use: the optimizer state and kept buffers are created
    one, one_engine, steps = [], [], []
    for _ in range(args.repeats):
        wall, engine = fit(BATCH)
        one.append(wall)
        one_engine.append(engine)
        steps += fit(4 * BATCH)[1][1:]      # the steps after a fit's first one
    kernels = sorted({f"{i['internal_api']} {i.get('version')} {i.get('architecture')}"
                      for i in threadpool_info() if i.get("user_api") == "blas"})
    from cbackprop import _providers

    rule = _providers.effective_rule()[(args.dtype, min(args.threads, 2))]
    print(f"{args.dtype} {args.threads} thread(s) {args.optimizer}; large classes run by "
          f"{rule['large']}; BLAS loaded: {', '.join(kernels)}; medians of {args.repeats}")
    for i, clock in enumerate(("wall", "CPU")):
        med = statistics.median
        step = med(s[i] for s in steps)
        one_i = [o[i] for o in one]
        eng_i = [sum(e[i] for e in es) for es in one_engine]
        print(f"  {clock:>4}: one-step fit call {med(one_i) * 1e3:7.1f} ms (its engine call "
              f"{med(eng_i) * 1e3:.1f} ms); step in a 4-step fit {step * 1e3:6.1f} ms; "
              f"set-up per call {(med(one_i) - step) * 1e3:5.1f} ms = "
              f"{(med(one_i) - step) / step:.1%} of a step; outside the engine "
              f"{med(np.subtract(one_i, eng_i)) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
