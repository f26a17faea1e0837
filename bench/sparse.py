"""Fit time on sparse input: cbackprop.MLPClassifier against scikit-learn's.

    python bench/sparse.py                    # 100k × 50k one-hot, 3 epochs, 3 repeats
    python bench/sparse.py --quick            # 20k rows, 1 repeat
    python bench/sparse.py --solvers adam,sgd --dtypes float64,float32

The data is what one-hot encoding gives: 50 categorical features of 1 000
levels each, so 50 000 columns and exactly 50 ones a row (0.1 % density), as
a CSR matrix (generated from a seed; never densified, by either library). The
label is the sign of a random linear score of the levels, plus noise. Both
estimators get the same data, hyper-parameters (hidden (100,), batch 200,
scikit-learn's defaults) and epochs (tol=0, n_iter_no_change=max_iter, so
neither stops early), on 1 thread (threadpoolctl). Each repeat fits both,
interleaved; the table shows median fit seconds, the speed-up and the
held-out accuracy of each. float32 data keeps both libraries in float32. The
details (BLAS, every repeat) go to bench/results/sparse.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg  # noqa: F401  (loads scipy's BLAS, the one cbackprop calls, for the report)
import scipy.sparse as sp
import sklearn
from sklearn import neural_network as sk_nn
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_info, threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cbackprop as cb  # noqa: E402

FEATURES, LEVELS = 50, 1000          # 50 one-hot blocks of 1 000 columns


def make_data(n_rows: int, dtype, seed: int = 0):
    """(X CSR n_rows × 50 000 with 50 ones a row, y in {0, 1})."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, LEVELS, size=(n_rows, FEATURES))
    columns = (levels + LEVELS * np.arange(FEATURES)).ravel().astype(np.int32)
    X = sp.csr_matrix((np.ones(columns.size, dtype=dtype), columns,
                       np.arange(0, columns.size + 1, FEATURES)),
                      shape=(n_rows, FEATURES * LEVELS))
    score = X @ rng.normal(size=FEATURES * LEVELS) + rng.normal(scale=2.0, size=n_rows)
    return X, (score > np.median(score)).astype(int)


def fit_seconds(estimator, X, y) -> float:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--solvers", default="adam,sgd")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--quick", action="store_true", help="20 000 rows, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 20_000, 1
    blas = [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                   "filepath")}
            for p in threadpool_info() if p.get("user_api") == "blas"]
    vendors = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']})"
                        for b in blas)
    print(f"BLAS: {vendors}; 1 thread; cbackprop {cb.__version__}, "
          f"scikit-learn {sklearn.__version__}")
    print(f"data: {args.rows} × {FEATURES * LEVELS} one-hot CSR, {FEATURES} non-zeros a row "
          f"({100 * FEATURES / (FEATURES * LEVELS):.1f} % density); hidden (100,), batch 200, "
          f"{args.epochs} epochs; median of {args.repeats}")
    print(f"{'solver':8} {'dtype':8} {'cbackprop s':>12} {'sklearn s':>10} {'speed-up':>9} "
          f"{'acc cb':>7} {'acc sk':>7}")
    results = []
    for dtype in args.dtypes.split(","):
        X, y = make_data(args.rows + args.rows // 5, np.dtype(dtype))
        X_train, y_train, X_test, y_test = X[:args.rows], y[:args.rows], X[args.rows:], \
            y[args.rows:]
        for solver in args.solvers.split(","):
            params = dict(hidden_layer_sizes=(100,), solver=solver, batch_size=200,
                          max_iter=args.epochs, tol=0.0, n_iter_no_change=args.epochs,
                          random_state=0, learning_rate_init=1e-3 if solver == "adam" else 0.05)
            times = {"cbackprop": [], "sklearn": []}
            scores = {}
            with threadpool_limits(1):
                for _ in range(args.repeats):
                    for name, cls in (("cbackprop", cb.MLPClassifier),
                                      ("sklearn", sk_nn.MLPClassifier)):
                        est = cls(**params)
                        times[name].append(fit_seconds(est, X_train, y_train))
                        scores[name] = float(est.score(X_test, y_test))
            med = {k: statistics.median(v) for k, v in times.items()}
            speedup = med["sklearn"] / med["cbackprop"]
            print(f"{solver:8} {dtype:8} {med['cbackprop']:12.2f} {med['sklearn']:10.2f} "
                  f"{speedup:8.1f}× {scores['cbackprop']:7.3f} {scores['sklearn']:7.3f}",
                  flush=True)
            results.append({"solver": solver, "dtype": dtype, "seconds": times,
                            "median": med, "speedup": speedup, "accuracy": scores})
    out = ROOT / "bench" / "results" / "sparse.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                               "blas": blas, "rows": args.rows, "epochs": args.epochs,
                               "repeats": args.repeats, "results": results}, indent=2))
    print(f"details: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
