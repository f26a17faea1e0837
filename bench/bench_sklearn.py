"""Fit time of cbackprop.MLPClassifier / MLPRegressor against scikit-learn's MLP.

    python bench/bench_sklearn.py                 # every workload, 1 thread, float64
    python bench/bench_sklearn.py --quick         # fewer epochs and repeats
    python bench/bench_sklearn.py --threads 1,2 --dtypes float64,float32

Both estimators get the same data, the same hyper-parameters and the same
number of epochs (tol=0 and n_iter_no_change=max_iter, so neither stops
early; 'lbfgs' runs its max_iter iterations); only the import differs. Each
repeat fits both, interleaved, and the table shows median fit seconds, the
speed-up (scikit-learn's time over cbackprop's) and the held-out score of
each (accuracy, or R² for regression) so that equal accuracy can be checked.
The table goes to stdout; the details (machine, library versions, BLAS vendor,
kernel and threads from threadpoolctl, every repeat) to
bench/results/bench_sklearn.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg  # noqa: F401  (loads scipy's BLAS, the one cbackprop calls, for the report)
import sklearn
from sklearn import neural_network as sk_nn
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_info, threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cbackprop as cb  # noqa: E402


@dataclass(frozen=True)
class Workload:
    name: str
    data: str                       # "digits", "wide" or "regression"
    params: dict = field(default_factory=dict)
    epochs: int = 50                # max_iter (epochs, or lbfgs iterations)

    @property
    def regression(self) -> bool:
        return self.data == "regression"


WORKLOADS = [
    # scikit-learn's defaults (hidden (100,), adam, batch 'auto' = 200) on digits
    Workload("digits-adam", "digits", {}),
    # small minibatches: per-batch overhead dominates
    Workload("digits-sgd-b32", "digits", dict(hidden_layer_sizes=(64,), solver="sgd",
                                              learning_rate_init=0.05, batch_size=32), 30),
    Workload("digits-adam-b8", "digits", dict(hidden_layer_sizes=(32,), batch_size=8,
                                              learning_rate_init=1e-3), 10),
    # wide layers, default batches: GEMM-bound
    Workload("wide-adam", "wide", dict(hidden_layer_sizes=(256, 128)), 10),
    Workload("regression-adam-b64", "regression",
             dict(hidden_layer_sizes=(64, 64), batch_size=64, learning_rate_init=3e-3), 30),
    Workload("digits-lbfgs", "digits", dict(solver="lbfgs", hidden_layer_sizes=(50,)), 200),
]


def load(workload: Workload, dtype):
    """(X_train, X_test, y_train, y_test) for a workload, in dtype."""
    if workload.data == "digits":
        X, y = cb.datasets.load_digits()
        X = X / 16.0
    elif workload.data == "wide":
        X, y = make_classification(n_samples=12000, n_features=200, n_informative=60,
                                   n_classes=10, random_state=0)
    else:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((12000, 20))
        y = np.column_stack([np.sin(X[:, 0]) + X[:, 1] * X[:, 2], np.tanh(X[:, 3:8].sum(1))])
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    return X_train.astype(dtype), X_test.astype(dtype), y_train, y_test


def estimators(workload: Workload) -> dict:
    """The two estimators, with identical hyper-parameters."""
    params = dict(random_state=0, max_iter=workload.epochs, tol=0.0,
                  n_iter_no_change=workload.epochs, **workload.params)
    if workload.regression:
        return {"sklearn": sk_nn.MLPRegressor(**params), "cbackprop": cb.MLPRegressor(**params)}
    return {"sklearn": sk_nn.MLPClassifier(**params), "cbackprop": cb.MLPClassifier(**params)}


def measure(workload: Workload, dtype, threads: int, repeats: int) -> dict:
    data = load(workload, dtype)
    X_train, X_test, y_train, y_test = data
    times = {"sklearn": [], "cbackprop": []}
    scores, n_iter = {}, {}
    with threadpool_limits(threads, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(repeats):
            for name, est in estimators(workload).items():   # interleaved within a repeat
                t0 = time.perf_counter()
                est.fit(X_train, y_train)
                times[name].append(time.perf_counter() - t0)
                scores[name] = float(est.score(X_test, y_test))
                n_iter[name] = int(est.n_iter_)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "workload": workload.name, "dtype": np.dtype(dtype).name, "threads": threads,
        "params": {k: list(v) if isinstance(v, tuple) else v
                   for k, v in workload.params.items()},
        "n_train": int(X_train.shape[0]), "n_features": int(X_train.shape[1]),
        "metric": "r2" if workload.regression else "accuracy",
        "n_iter": n_iter, "seconds": med, "repeats": times, "score": scores,
        "speedup": med["sklearn"] / med["cbackprop"],
    }


def blas_report() -> list[dict]:
    """The BLAS libraries loaded in this process (vendor, version, kernel, threads)."""
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer",
            "filepath")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info()
            if lib.get("user_api") == "blas"]


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "sklearn": sklearn.__version__, "cbackprop": cb.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the epochs, 2 repeats")
    parser.add_argument("--threads", default="1", help="BLAS thread counts, e.g. 1,2")
    parser.add_argument("--dtypes", default="float64", help="e.g. float64,float32")
    parser.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_sklearn.json"))
    args = parser.parse_args(argv)

    chosen = args.workloads.split(",")
    unknown = set(chosen) - {w.name for w in WORKLOADS}
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}")
    workloads = [w for w in WORKLOADS if w.name in chosen]
    if args.quick:
        workloads = [Workload(w.name, w.data, w.params, max(2, w.epochs // 5))
                     for w in workloads]
    repeats = args.repeats or (2 if args.quick else 3)
    threads = [int(t) for t in args.threads.split(",")]
    dtypes = args.dtypes.split(",")

    header = (f"{'workload':<20} {'dtype':<8} {'thr':>3} {'epochs':>6} {'sklearn s':>10} "
              f"{'cbackprop s':>11} {'speed-up':>8} {'sklearn score':>13} "
              f"{'cbackprop score':>15}")
    print(header)
    print("-" * len(header))
    rows = []
    for w in workloads:
        for dtype in dtypes:
            for t in threads:
                r = measure(w, dtype, t, repeats)
                rows.append(r)
                epochs = "/".join(str(r["n_iter"][n]) for n in ("sklearn", "cbackprop"))
                print(f"{w.name:<20} {r['dtype']:<8} {t:>3} {epochs:>6} "
                      f"{r['seconds']['sklearn']:>10.3f} {r['seconds']['cbackprop']:>11.3f} "
                      f"{r['speedup']:>7.1f}x {r['score']['sklearn']:>13.4f} "
                      f"{r['score']['cbackprop']:>15.4f}", flush=True)

    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "blas": blas_report(), "repeats": repeats, "results": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']})"
                     for b in info["blas"])
    print(f"\n{info['machine']['cpu']}, {info['machine']['cores']} cores; BLAS: {blas}")
    print(f"details: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
