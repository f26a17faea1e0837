"""Many networks at once: cb.fit_many and the banked grid search against their peers.

    python bench/many.py many [--repeats 5] [--threads 1]
    python bench/many.py grid [--quick]

many: float32, plain SGD (lr 0.01), shuffled every epoch; cb.fit_many against
K sequential net.fit calls and torch.func.vmap over stacked parameters. One
run measures every contender in turn, each repeat in the same order, and
reports medians of network-steps per second (K networks × batches per epoch ×
epochs / seconds), with the machine's sgemm limit on the same threads.

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
import copy
import importlib.util
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cbackprop as cb  # noqa: E402

WORKLOADS = {      # name: (sizes, K, batch, rows, epochs)
    "tiny 64-32-10, K=16, batch 32": ([64, 32, 10], 16, 32, 3200, 4),
    "digits-sized 64-100-10, K=12, batch 200": ([64, 100, 10], 12, 200, 1800, 8),
}


def data(sizes, rows):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, sizes[0])).astype(np.float32)
    return X, rng.integers(0, sizes[-1], rows)


def networks(sizes, k):
    return [cb.Network(sizes[0], [cb.Dense(sizes[1], "relu"), cb.Dense(sizes[2], "softmax")],
                       seed=s) for s in range(k)]


def run_bank(sizes, k, batch, X, y, epochs, threads):
    nets = networks(sizes, k)
    t0 = time.perf_counter()
    cb.fit_many(nets, X, y, cb.SGD(lr=0.01), epochs=epochs, batch_size=batch, seed=0,
                n_threads=threads)
    return time.perf_counter() - t0


def run_sequential(sizes, k, batch, X, y, epochs, threads):
    nets = networks(sizes, k)
    for net in nets:
        net.n_threads = threads
    t0 = time.perf_counter()
    for net in nets:
        net.fit(X, y, optimizer=cb.SGD(lr=0.01), epochs=epochs, batch_size=batch)
    return time.perf_counter() - t0


def run_vmap(sizes, k, batch, X, y, epochs, threads):
    """torch.func: K stacked parameter sets, vmap(grad(loss)) over them, one SGD step."""
    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap
    torch.set_num_threads(threads)
    models = [torch.nn.Sequential(torch.nn.Linear(sizes[0], sizes[1]), torch.nn.ReLU(),
                                  torch.nn.Linear(sizes[1], sizes[2])) for _ in range(k)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def loss(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    step = vmap(grad(loss), in_dims=(0, 0, None, None))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(epochs):
            order = torch.randperm(len(Xt), generator=gen)
            for start in range(0, len(Xt), batch):
                rows = order[start:start + batch]
                grads = step(params, buffers, Xt[rows], yt[rows])
                for name, g in grads.items():
                    params[name].sub_(0.01 * g)
    return time.perf_counter() - t0


def sgemm_limit(threads: int, n: int = 1024, repeats: int = 5) -> float:
    a = np.ones((n, n), np.float32)
    with threadpool_limits(threads, user_api="blas"):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def fit_many_section(repeats: int, threads: int) -> str:
    """The "many" table: fit_many against K sequential fits and torch vmap, one run."""
    contenders = {"cbackprop fit_many": run_bank, "cbackprop, K sequential fits": run_sequential}
    if importlib.util.find_spec("torch") is not None:
        contenders["torch.func.vmap"] = run_vmap
    lines = [f"| workload | {' | '.join(contenders)} | fit_many ÷ sequential | "
             "fit_many ÷ vmap |", "|---" * (len(contenders) + 3) + "|"]
    for name, (sizes, k, batch, rows, epochs) in WORKLOADS.items():
        X, y = data(sizes, rows)
        steps = k * epochs * -(-rows // batch)
        times = {c: [] for c in contenders}
        with threadpool_limits(threads, user_api="blas"):
            for run in contenders.values():      # warm-up
                run(sizes, k, batch, X, y, 1, threads)
            for _ in range(repeats):
                for c, run in contenders.items():
                    times[c].append(run(sizes, k, batch, X, y, epochs, threads))
        rate = {c: steps / statistics.median(t) for c, t in times.items()}
        cells = [f"{rate[c] / 1e3:.1f} k/s" for c in contenders]
        ratio_seq = rate["cbackprop fit_many"] / rate["cbackprop, K sequential fits"]
        ratio_vmap = (f"{rate['cbackprop fit_many'] / rate['torch.func.vmap']:.1f}×"
                      if "torch.func.vmap" in rate else "n/a")
        lines.append(f"| {name} | {' | '.join(cells)} | {ratio_seq:.2f}× | {ratio_vmap} |")
    return "\n".join(lines)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["many", "grid"])
    parser.add_argument("--repeats", type=int, default=5, help="many: repeats")
    parser.add_argument("--threads", type=int, default=1, help="many: threads")
    parser.add_argument("--quick", action="store_true", help="grid: 1 repeat, max_iter 10")
    args = parser.parse_args(argv)
    if args.section == "grid":
        grid_section(*((1, 10) if args.quick else (3, 30)))
        return 0
    blas = [(i["internal_api"], i["version"], i.get("architecture"))
            for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"BLAS: {blas}; {args.threads} thread(s); sgemm limit "
          f"{sgemm_limit(args.threads):.0f} GFLOP/s; network-steps per second, "
          f"medians of {args.repeats}\n")
    print(fit_many_section(args.repeats, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
