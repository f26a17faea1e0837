"""SHA-256 digests of θ after seeded fits (n_threads=1): refactors must keep them.

The bits depend on the GEMM kernels that ran: OpenBLAS picks its kernel per
CPU (or from OPENBLAS_CORETYPE), and with it the order of the sums, and the
hand kernels run at the CPU's level. `tests/theta_digests.json` therefore
keeps one set of digests per `configuration()`, and `tests/test_digests.py`
compares every case with the set of the configuration it runs under.

The GEMM provider that runs the cases' GEMMs is part of the configuration
(cbackprop/_providers.py): record the others with, e.g.,
`CBACKPROP_BLAS=mkl python tests/theta_digests.py --write`.

Run `python tests/theta_digests.py --write` to record (or replace) the set of
this configuration: after a change of results that is intended (say so in
the commit, and record every configuration you can reach, e.g. with
OPENBLAS_CORETYPE=Haswell), or for a configuration that has none yet, from a
tree whose results are known good.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings

import numpy as np

import cbackprop as cb

HERE = os.path.dirname(os.path.abspath(__file__))
STORE = os.path.join(HERE, "theta_digests.json")

OPTIMIZERS = {
    "sgd": lambda: cb.SGD(lr=0.1),
    "sgd_wd": lambda: cb.SGD(lr=0.1, weight_decay=0.01),
    "momentum": lambda: cb.SGD(lr=0.05, momentum=0.9),
    "momentum_wd": lambda: cb.SGD(lr=0.05, momentum=0.9, weight_decay=0.02),
    "nesterov": lambda: cb.SGD(lr=0.05, momentum=0.8, nesterov=True),
    "adam": lambda: cb.Adam(lr=0.01),
    "adam_wd": lambda: cb.Adam(lr=0.01, weight_decay=0.05),
    "adamw": lambda: cb.AdamW(lr=0.01, weight_decay=0.1),
    "rmsprop": lambda: cb.RMSprop(lr=0.01),
    "rmsprop_momentum": lambda: cb.RMSprop(lr=0.01, momentum=0.5),
}


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _data(dtype, loss, n=53, d=6, k=3):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, k, n) if loss == "cross_entropy" else rng.standard_normal((n, k))
    w = rng.uniform(0, 2, n)
    w[::5] = 0
    return X, y, w


def _net(dtype, loss, alpha=0.0, dropout=0.0):
    out = "softmax" if loss == "cross_entropy" else "identity"
    return cb.Network(6, [cb.Dense(9, "relu", dropout), cb.Dense(7, "tanh"), cb.Dense(3, out)],
                      loss=loss, dtype=dtype, seed=3, alpha=alpha, n_threads=1)


def network_cases():
    """{name: (θ digest after the fit, optimizer state digest)}."""
    out = {}
    for dtype in ("float32", "float64"):
        for opt_name, make in OPTIMIZERS.items():
            for loss in ("cross_entropy", "mse"):
                for variant in ("plain", "batch1", "alpha_dropout_weights", "noshuffle_twice"):
                    X, y, w = _data(dtype, loss)
                    if variant == "plain":
                        net, opt = _net(dtype, loss), make()
                        net.fit(X, y, optimizer=opt, epochs=3, batch_size=8,
                                validation_data=(X[:9], y[:9]))
                    elif variant == "batch1":
                        net, opt = _net(dtype, loss), make()
                        net.fit(X[:20], y[:20], optimizer=opt, epochs=2, batch_size=1)
                    elif variant == "alpha_dropout_weights":
                        net, opt = _net(dtype, loss, alpha=0.01, dropout=0.3), make()
                        net.fit(X, y, optimizer=opt, epochs=2, batch_size=10, sample_weight=w)
                    else:
                        net, opt = _net(dtype, loss), make()
                        for _ in range(2):
                            net.fit(X, y, optimizer=opt, epochs=2, batch_size=11,
                                    shuffle=False)
                    out[f"net/{dtype}/{opt_name}/{loss}/{variant}"] = digest(
                        net.theta, opt.state, net.predict(X))
        X, y, w = _data(dtype, "cross_entropy")
        net = _net(dtype, "cross_entropy", alpha=0.02)
        loss, g = net.loss_and_grad(X, y, sample_weight=w)
        out[f"loss_and_grad/{dtype}"] = digest(g, np.array([loss]))
    return out


def estimator_cases():
    from cbackprop import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(11)
    X = rng.standard_normal((97, 5))
    yc = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 0)
    yr = X @ rng.standard_normal((5, 2)) + 0.1 * rng.standard_normal((97, 2))
    sw = rng.uniform(0.5, 2, 97)
    common = dict(hidden_layer_sizes=(8, 6), random_state=0, max_iter=15, tol=0)
    cases = {
        "clf/sgd": (MLPClassifier, dict(solver="sgd", learning_rate_init=0.1)),
        "clf/sgd_invscaling": (MLPClassifier, dict(solver="sgd", learning_rate="invscaling",
                                                   learning_rate_init=0.5)),
        "clf/sgd_adaptive": (MLPClassifier, dict(solver="sgd", learning_rate="adaptive",
                                                 n_iter_no_change=2, tol=1e-2)),
        "clf/sgd_noshuffle": (MLPClassifier, dict(solver="sgd", shuffle=False,
                                                  nesterovs_momentum=False)),
        "clf/adam": (MLPClassifier, dict(solver="adam", learning_rate_init=0.01)),
        "clf/adamw_dropout": (MLPClassifier, dict(solver="adamw", dropout=0.2)),
        "clf/rmsprop": (MLPClassifier, dict(solver="rmsprop", learning_rate_init=0.01)),
        "clf/lbfgs": (MLPClassifier, dict(solver="lbfgs")),
        "clf/early_stopping": (MLPClassifier, dict(solver="adam", early_stopping=True,
                                                   n_iter_no_change=3, tol=1e-3,
                                                   max_iter=40)),
        "clf/class_weight": (MLPClassifier, dict(solver="sgd", class_weight="balanced")),
        "clf/float32": (MLPClassifier, dict(solver="adam", dtype="float32")),
        "reg/sgd": (MLPRegressor, dict(solver="sgd", learning_rate_init=0.01)),
        "reg/adam": (MLPRegressor, dict(solver="adam", learning_rate_init=0.01)),
        "reg/lbfgs": (MLPRegressor, dict(solver="lbfgs")),
    }
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (cls, params) in cases.items():
            y = yc if name.startswith("clf") else yr
            for weighted in (False, True):
                est = cls(**{**common, **params})
                est.fit(X, y, sample_weight=sw if weighted else None)
                arrays = [W for W in est.coefs_] + [b for b in est.intercepts_]
                out[f"{name}/{'weighted' if weighted else 'unweighted'}"] = digest(
                    *arrays, np.array(est.loss_curve_))
        for cls, y, extra in ((MLPClassifier, yc, {"classes": [0, 1, 2]}), (MLPRegressor, yr, {})):
            est = cls(**{**common, "solver": "sgd", "learning_rate_init": 0.05})
            for part in range(3):
                rows = slice(part * 30, part * 30 + 30)
                est.partial_fit(X[rows], y[rows], **extra)
            arrays = [W for W in est.coefs_] + [b for b in est.intercepts_]
            out[f"{cls.__name__}/partial_fit"] = digest(*arrays, np.array(est.loss_curve_))
    return out


def all_cases() -> dict:
    return {**network_cases(), **estimator_cases()}


def configuration() -> str:
    """The kernels the digests depend on: the kernel of SciPy's BLAS (it runs
    the cases' GEMMs by default, and scipy.optimize's L-BFGS-B always), any
    other GEMM provider that runs them (all of the "row" and "small" shape
    classes), by name and kernel, and the hand kernels' level: e.g.
    "SkylakeX/avx512", "Haswell+openblas:Haswell/avx512",
    "Haswell+mkl:own dispatch, CNR strict/avx512" (cbackprop/_providers.py;
    the others with CBACKPROP_BLAS=openblas or mkl)."""
    from cbackprop import _providers
    from cbackprop._core._blas import kernel_level
    from cbackprop._threads import blas_info

    _providers.ensure_loaded()
    rule = _providers.effective_rule()
    names = sorted({rule[(dt, 1)][c] for dt in ("float32", "float64") for c in ("row", "small")})
    used = [r for r in blas_info() if r["used"]]
    parts = sorted({str(r.get("architecture", r.get("internal_api"))) for r in used})
    for name in names:
        if name != "scipy":
            kernel = next(r["kernel"] for r in _providers.report() if r["name"] == name)
            parts.append(f"{name}:{kernel}")
    return "+".join(parts) + "/" + kernel_level()


def stored() -> dict:
    """{configuration: {case: digest}} as recorded."""
    with open(STORE) as f:
        return json.load(f)


if __name__ == "__main__":
    cases, config, store = all_cases(), configuration(), stored()
    if "--write" in sys.argv:
        store[config] = cases
        with open(STORE, "w") as f:
            json.dump(store, f, indent=1, sort_keys=True)
        print(f"wrote {len(cases)} digests for {config} to {STORE}")
    elif config not in store:
        print(f"no digests recorded for {config} (recorded: {sorted(store)})")
    else:
        mine = store[config]
        bad = [k for k in mine if mine[k] != cases.get(k)]
        print(f"{config}: {len(mine) - len(bad)} of {len(mine)} digests equal; differ: {bad}")
