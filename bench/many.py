"""Many networks at once: benchmarks of cbackprop's banks.

    python bench/many.py grid                 # the digits grid, 3 repeats
    python bench/many.py grid --quick         # 1 repeat, max_iter 10

grid: a digits grid search (3 alpha × 2 learning_rate_init × 2 random_state,
cv=5, adam, hidden (100,), max_iter 30, tol 0 so nothing stops early,
float64) three ways, n_jobs=1 and one BLAS thread (threadpoolctl):
cbackprop.GridSearchCV (the 6 candidates of one seed train as one bank per
split), scikit-learn's GridSearchCV over cbackprop.MLPClassifier, and
scikit-learn's GridSearchCV over its own MLPClassifier. Median seconds of the
repeats (interleaved), the speed-ups, and whether cbackprop's two searches
agree (their mean test scores, to 1e-9).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np


def grid_setup(max_iter: int):
    """(X, y, param_grid, {name: (search class, estimator)}) of the digits grid."""
    from sklearn import model_selection as ms
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    import cbackprop as cb

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    grid = {"alpha": [1e-4, 1e-3, 1e-2], "learning_rate_init": [1e-3, 1e-2],
            "random_state": [0, 1]}
    options = dict(hidden_layer_sizes=(100,), solver="adam", max_iter=max_iter, tol=0.0,
                   n_iter_no_change=max_iter)
    searches = {
        "cbackprop.GridSearchCV": (cb.GridSearchCV, cb.MLPClassifier(**options)),
        "sklearn GridSearchCV, cbackprop MLP": (ms.GridSearchCV, cb.MLPClassifier(**options)),
        "sklearn GridSearchCV, sklearn MLP": (ms.GridSearchCV, SklearnMLP(**options)),
    }
    return X, y, grid, searches


def grid_section(repeats: int = 3, max_iter: int = 30) -> dict:
    """Time the digits grid three ways; print and return the medians and ratios."""
    from threadpoolctl import threadpool_limits

    X, y, grid, searches = grid_setup(max_iter)
    times = {name: [] for name in searches}
    scores = {}
    with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")     # ConvergenceWarning: max_iter is the budget
        for _ in range(repeats):
            for name, (search, estimator) in searches.items():
                t0 = time.perf_counter()
                fitted = search(estimator, grid, cv=5, n_jobs=1).fit(X, y)
                times[name].append(time.perf_counter() - t0)
                scores[name] = fitted.cv_results_["mean_test_score"]
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    ours, cb_mlp, sk_mlp = (medians[name] for name in searches)
    names = list(searches)
    agree = bool(np.allclose(scores[names[0]], scores[names[1]], rtol=0, atol=1e-9))
    print(f"digits grid: 12 candidates × 5 folds, adam, hidden (100,), {max_iter} epochs, "
          f"n_jobs=1, 1 BLAS thread; median of {repeats}")
    for name, seconds in medians.items():
        print(f"  {name:40s} {seconds:7.2f} s")
    print(f"  speed-up over sklearn search of cbackprop MLP: {cb_mlp / ours:5.2f}× (goal ≥ 1.5)")
    print(f"  speed-up over sklearn search of sklearn MLP:   {sk_mlp / ours:5.2f}× (goal ≥ 4)")
    print(f"  mean test scores equal to 1e-9: {agree}")
    return {"medians": medians, "vs_cbackprop_search": cb_mlp / ours,
            "vs_sklearn": sk_mlp / ours, "agree": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["grid"])
    parser.add_argument("--quick", action="store_true", help="1 repeat, max_iter 10")
    args = parser.parse_args()
    if args.section == "grid":
        grid_section(*((1, 10) if args.quick else (3, 30)))


if __name__ == "__main__":
    main()
