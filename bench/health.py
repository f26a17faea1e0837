"""What fit(health=True) costs: epochs of one network with and without it.

    python bench/health.py [--workload medium] [--repeats 7]

float32, SGD with momentum and Adam, 1 BLAS thread; the two settings are
interleaved within each repeat and the medians compared.
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

from run import WORKLOADS  # noqa: E402

import cbackprop as cb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="medium")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=64, help="steps per epoch")
    args = parser.parse_args()
    w = WORKLOADS[args.workload]
    rng = np.random.default_rng(0)
    n = w.batch * args.steps
    X = rng.standard_normal((n, w.sizes[0])).astype(np.float32)
    y = rng.integers(0, w.sizes[-1], n)
    acts = ["relu"] * (len(w.sizes) - 2) + ["softmax"]
    print(f"{w.name} {'-'.join(map(str, w.sizes))}, batch {w.batch}, {args.steps} steps per "
          f"epoch, float32, 1 thread; medians of {args.repeats}")
    with threadpool_limits(1, user_api="blas"):
        for make in (lambda: cb.SGD(lr=1e-3, momentum=0.9), lambda: cb.Adam(lr=1e-4)):
            times = {False: [], True: []}
            net = cb.Network(w.sizes[0], [cb.Dense(m, a) for m, a in zip(w.sizes[1:], acts)],
                             seed=0, n_threads=1)
            opt = make()
            net.fit(X, y, optimizer=opt, batch_size=w.batch)            # warm-up
            for _ in range(args.repeats):
                for health in (False, True):
                    t0 = time.perf_counter()
                    net.fit(X, y, optimizer=opt, batch_size=w.batch, health=health)
                    times[health].append(time.perf_counter() - t0)
            off, on = (statistics.median(times[h]) for h in (False, True))
            print(f"  {opt.name:<5} off {off * 1e3:8.1f} ms/epoch   on {on * 1e3:8.1f} ms/epoch"
                  f"   cost {on / off - 1:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
