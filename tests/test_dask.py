"""scikit-learn's model search over cbackprop's estimators on a Dask cluster."""

import pickle
import time

import numpy as np
import pytest

pytest.importorskip("sklearn")
distributed = pytest.importorskip("distributed",
                                  reason="the [dask] extra (dask[distributed]) is not installed")
import joblib  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402

from cbackprop import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5))
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int)
    return X, y


def test_grid_search_on_dask_gives_the_sequential_scores(client):
    X, y = data()
    grid = {"alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]}
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0, tol=0)
    sequential = GridSearchCV(est, grid, cv=3).fit(X, y)
    with joblib.parallel_backend("dask"):
        on_dask = GridSearchCV(est, grid, cv=3, n_jobs=-1).fit(X, y)
    for key in ("mean_test_score", "split0_test_score", "split2_test_score"):
        np.testing.assert_allclose(on_dask.cv_results_[key], sequential.cv_results_[key],
                                   rtol=1e-12)
    assert on_dask.best_params_ == sequential.best_params_
    np.testing.assert_allclose(on_dask.predict_proba(X), sequential.predict_proba(X),
                               rtol=1e-12)


def test_cross_val_score_on_dask_for_a_regressor(client):
    X, y = data()
    target = X @ np.arange(1.0, 6.0)
    est = MLPRegressor(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=50, random_state=0)
    sequential = cross_val_score(est, X, target, cv=3)
    with joblib.parallel_backend("dask"):
        on_dask = cross_val_score(est, X, target, cv=3, n_jobs=-1)
    np.testing.assert_allclose(on_dask, sequential, rtol=1e-12)


def test_each_worker_fits_on_one_blas_thread(client):
    """Dask starts its workers with one BLAS thread; cbackprop keeps to it
    (no oversubscription of the workers' cores)."""

    def threads_in_worker():
        from threadpoolctl import threadpool_info

        from cbackprop import _threads

        X, y = data()
        MLPClassifier(hidden_layer_sizes=(256,), max_iter=2).fit(X, y)
        blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        return _threads.default_threads(), blas

    for default, blas in client.run(threads_in_worker).values():
        assert default == 1 and set(blas) == {1}


def test_fitted_estimators_pickle_small_and_fast():
    X, y = data()
    est = MLPClassifier(hidden_layer_sizes=(64,), max_iter=5, random_state=0).fit(X, y)
    start = time.perf_counter()
    blob = pickle.dumps(est)
    back = pickle.loads(blob)
    seconds = time.perf_counter() - start
    theta_bytes = sum(W.nbytes + b.nbytes for W, b in zip(est.coefs_, est.intercepts_))
    assert len(blob) < 2 * theta_bytes + 20_000 and seconds < 0.05
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
