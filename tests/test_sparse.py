"""Sparse input (scipy.sparse CSR/CSC, matrix and array types): the same results
as the dense path to rounding, never densified, bad input refused; the
estimators beside scikit-learn's on the same sparse data."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import cbackprop as cb
from cbackprop._session import Reducer, TrainingSession

#: Dense and sparse runs differ only in the order of the first layer's sums.
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}

OPTIMIZERS = [
    lambda: cb.SGD(lr=0.05),
    lambda: cb.SGD(lr=0.05, weight_decay=0.01),
    lambda: cb.SGD(lr=0.02, momentum=0.5),
    lambda: cb.SGD(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.01),
    lambda: cb.optimizers.SGDVelocity(lr=0.02, momentum=0.5),
    lambda: cb.Adam(lr=1e-2),
    lambda: cb.AdamW(lr=1e-2, weight_decay=0.1),
    lambda: cb.RMSprop(lr=1e-3, momentum=0.5),
]


def problem(n=53, d=30, density=0.15, seed=0):
    """A sparse X (some rows empty, integer-valued entries and reals) and 3-class labels."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=seed,
                  data_rvs=lambda k: rng.normal(size=k))
    keep = np.ones(n)
    keep[3] = 0                                  # an empty row
    X = sp.csr_matrix(sp.diags(keep) @ X)
    X.eliminate_zeros()
    return X, rng.integers(0, 3, n)


def network(dtype, d=30, alpha=0.0, dropout=0.0, seed=0):
    return cb.Network(d, [cb.Dense(9, "tanh", dropout=dropout), cb.Dense(5, "relu"),
                          cb.Dense(3, "softmax")], dtype=dtype, seed=seed, alpha=alpha)


def assert_close(a, b, dtype):
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL[np.dtype(dtype)] * max(1, np.abs(b).max()))


# ---- Network: sparse equals dense ---------------------------------------------------


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=lambda f: repr(f()))
@pytest.mark.parametrize("batch_size", [1, 8])          # 53 rows: a short last batch of 5
@pytest.mark.parametrize("weighted", [False, True])
def test_fit_equals_dense_fit(dtype, make_opt, batch_size, weighted):
    X, y = problem()
    # A zero weight drops its row (the sparse rows are selected like dense ones).
    w = np.linspace(0.0, 2.0, X.shape[0]) if weighted else None
    dense, sparse = network(dtype, alpha=1e-3), network(dtype, alpha=1e-3)
    h_dense = dense.fit(X.toarray(), y, optimizer=make_opt(), epochs=3,
                        batch_size=batch_size, sample_weight=w)
    h_sparse = sparse.fit(X, y, optimizer=make_opt(), epochs=3, batch_size=batch_size,
                          sample_weight=w)
    assert_close(sparse.theta, dense.theta, dtype)
    np.testing.assert_allclose(h_sparse.history["loss"], h_dense.history["loss"],
                               rtol=100 * TOL[dtype])
    assert not np.array_equal(sparse.theta, network(dtype).theta)     # it trained


def test_fit_with_dropout_and_health_equals_dense(dtype):
    X, y = problem()
    dense, sparse = network(dtype, dropout=0.3), network(dtype, dropout=0.3)
    h_dense = dense.fit(X.toarray(), y, optimizer=cb.Adam(lr=1e-2), epochs=2, batch_size=4,
                        health=True)
    h_sparse = sparse.fit(X, y, optimizer=cb.Adam(lr=1e-2), epochs=2, batch_size=4,
                          health=True)
    assert_close(sparse.theta, dense.theta, dtype)
    for a, b in zip(h_sparse.history["health"], h_dense.history["health"], strict=True):
        np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)


@pytest.mark.parametrize("convert", [sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.csc_array,
                                     sp.coo_array, sp.lil_matrix],
                         ids=lambda f: f.__name__)
def test_predict_evaluate_loss_and_grad_equal_dense(dtype, convert):
    X, y = problem()
    net = network(dtype, alpha=0.01)
    net.fit(X.toarray(), y, optimizer=cb.Adam(lr=1e-2), epochs=2)
    Xs = convert(X)
    assert_close(net.predict(Xs), net.predict(X.toarray()), dtype)
    dense, sparse = net.evaluate(X.toarray(), y), net.evaluate(Xs, y)
    assert sparse["accuracy"] == dense["accuracy"]
    np.testing.assert_allclose(sparse["loss"], dense["loss"], rtol=10 * TOL[dtype])
    loss_d, grad_d = net.loss_and_grad(X.toarray(), y)
    loss_s, grad_s = net.loss_and_grad(Xs, y, sample_weight=None)
    np.testing.assert_allclose(loss_s, loss_d, rtol=10 * TOL[dtype])
    assert_close(grad_s, grad_d, dtype)


def test_predict_in_several_chunks(monkeypatch):
    from cbackprop import _session
    monkeypatch.setattr(_session, "CHUNK_ELEMENTS", 200)     # a few rows per chunk
    X, y = problem(n=101)
    net = network("float64")
    assert _session.chunk_rows(net.engine_layout(), 101, sparse=True) < 101
    assert_close(net.predict(X), net.predict(X.toarray()), "float64")
    assert_close(net.loss_and_grad(X, y)[1], net.loss_and_grad(X.toarray(), y)[1], "float64")


def test_non_canonical_input_is_summed_and_left_unchanged():
    # Duplicate entries add up (scipy's meaning), unsorted indices are fine, and
    # the caller's matrix is not touched (no sum_duplicates in place).
    data, indices, indptr = np.array([1.0, 2.0, 3.0, 4.0]), np.array([5, 1, 5, 0]), \
        np.array([0, 3, 3, 4])
    X = sp.csr_matrix((data, indices, indptr), shape=(3, 30))
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    net = network("float64")
    dense = np.zeros((3, 30))
    dense[0, 5], dense[0, 1], dense[2, 0] = 4.0, 2.0, 4.0
    assert_close(net.predict(X), net.predict(dense), "float64")
    for a, b in zip((X.data, X.indices, X.indptr), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_integer_int64_indexed_and_empty_input():
    X, y = problem()
    net = network("float32")
    Xi = sp.csr_array((np.round(X.data * 3).astype(np.int64), X.indices.astype(np.int64),
                       X.indptr.astype(np.int64)), shape=X.shape)
    Xi.indices = Xi.indices.astype(np.int64)
    Xi.indptr = Xi.indptr.astype(np.int64)
    assert_close(net.predict(Xi), net.predict(Xi.toarray()), "float32")
    empty = sp.csr_matrix(X.shape)                        # no non-zeros at all
    out = net.predict(empty)
    assert_close(out, net.predict(np.zeros(X.shape)), "float32")
    net.fit(empty, y, optimizer=cb.SGD(lr=0.1), epochs=1)  # trains the biases only
    assert np.isfinite(net.theta).all()


def test_reducer_path_equals_dense():
    # With a reducer each batch's gradient comes back to Python (batch_gradient).
    X, y = problem()
    thetas = []
    for Xin in (X.toarray(), X):
        net = network("float64")
        session = TrainingSession(net, Xin, y, optimizer=cb.Adam(lr=1e-2), batch_size=7,
                                  reducer=Reducer())
        session.fit(2)
        thetas.append(net.theta.copy())
    assert_close(thetas[1], thetas[0], "float64")


def test_validation_data_and_checkpoint_resume(tmp_path):
    X, y = problem()
    ref = network("float64")
    ref.fit(X, y, optimizer=cb.Adam(lr=1e-2), epochs=4, batch_size=8,
            validation_data=(X[:20], y[:20]))
    net, path = network("float64"), tmp_path / "run.ckpt"
    history = net.fit(X, y, optimizer=cb.Adam(lr=1e-2), epochs=4, batch_size=8,
                      validation_data=(X[:20], y[:20]), checkpoint=path,
                      callbacks=[lambda epoch, logs: epoch == 1])
    assert "val_loss" in history.history
    run = cb.resume(path)
    run.fit(X, y, validation_data=(X[:20], y[:20]))
    np.testing.assert_array_equal(run.network.theta, ref.theta)
    with pytest.raises(ValueError, match="not the data"):
        cb.resume(path).fit(X * 2, y)


def test_gradcheck_on_sparse_input():
    X, y = problem(n=6, d=8, density=0.4)
    net = cb.Network(8, [cb.Dense(4, "tanh"), cb.Dense(3, "softmax")], dtype="float64",
                     seed=0)
    assert cb.gradcheck(net, X, y) < 1e-7


def test_trace_wants_a_dense_row():
    X, y = problem()
    with pytest.raises(TypeError, match=r"x is a sparse matrix; pass a dense array"):
        network("float64").trace(X[0], y[0])


def test_memory_stays_proportional_to_the_non_zeros():
    # 100 000 × 50 000 with ~2 non-zeros a row: dense it would be 20 GB (float32).
    n, d = 100_000, 50_000
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((np.ones(2 * n, np.float32), rng.integers(0, d, 2 * n),
                       np.arange(0, 2 * n + 1, 2)), shape=(n, d))
    y = rng.integers(0, 2, n)
    net = cb.Network(d, [cb.Dense(4, "relu"), cb.Dense(2, "softmax")], seed=0)
    tracemalloc.start()
    try:
        net.fit(X, y, optimizer=cb.SGD(lr=0.1), epochs=1, batch_size=256)
        net.predict(X)
        net.evaluate(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # X's indices (int32, as given: int64 → a 0.8 MB copy), Y, the order, the
    # outputs, θ-sized buffers (0.8 MB each): a few MB, nothing like n·d.
    assert peak < 40e6, peak


@pytest.mark.parametrize("bad, exc, match", [
    (lambda X: sp.csr_matrix(X.shape[::-1]), ValueError, "features per row"),
    (lambda X: sp.csr_matrix((X.data * np.nan, X.indices, X.indptr), X.shape), ValueError,
     "NaN or infinity"),
    (lambda X: X.astype(np.complex128), TypeError, "complex"),
    (lambda X: X.astype(bool), TypeError, "bool"),
    (lambda X: sp.csr_matrix((X.data, X.indices + 30, X.indptr), X.shape), ValueError,
     "damaged sparse matrix"),
])
def test_bad_sparse_input_is_refused_and_changes_nothing(bad, exc, match):
    X, y = problem()
    net, opt = network("float64"), cb.Adam()
    net.fit(X, y, optimizer=opt, epochs=1)
    theta, state, rng = net.theta.copy(), opt.state.copy(), net.rng_state.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Xbad = bad(X)
    for call in (lambda: net.fit(Xbad, y, optimizer=opt), lambda: net.predict(Xbad),
                 lambda: net.evaluate(Xbad, y)):
        with pytest.raises(exc, match=match):
            call()
    np.testing.assert_array_equal(net.theta, theta)
    np.testing.assert_array_equal(opt.state, state)
    np.testing.assert_array_equal(net.rng_state, rng)


# ---- estimators on sparse input, beside scikit-learn ----------------------------


def _sklearn():
    return pytest.importorskip("sklearn.neural_network")


def _fit_quiet(est, *args, **kwargs):
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


@pytest.mark.parametrize("regressor", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_on_sparse_matches_sklearn(regressor, nesterov):
    sk_nn = _sklearn()
    from cbackprop import MLPClassifier, MLPRegressor
    X, y = problem(n=60)
    if regressor:
        y = X @ np.arange(X.shape[1]) / 10.0
    params = dict(hidden_layer_sizes=(7,), activation="tanh", random_state=0, tol=0.0,
                  n_iter_no_change=1000, shuffle=False, solver="sgd", momentum=0.9,
                  nesterovs_momentum=nesterov, learning_rate_init=0.05, alpha=0.01,
                  batch_size=25, max_iter=5)
    ours_cls, theirs_cls = ((MLPRegressor, sk_nn.MLPRegressor) if regressor
                            else (MLPClassifier, sk_nn.MLPClassifier))
    ours, theirs = _fit_quiet(ours_cls(**params), X, y), _fit_quiet(theirs_cls(**params), X, y)
    for mine, their in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_,
                           strict=True):
        np.testing.assert_allclose(mine, their, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    Xt = sp.csc_array(X[:20])
    np.testing.assert_allclose(ours.predict(Xt) if regressor else ours.predict_proba(Xt),
                               theirs.predict(Xt) if regressor else theirs.predict_proba(Xt),
                               rtol=1e-9, atol=1e-12)
    assert ours.score(Xt, y[:20]) == pytest.approx(theirs.score(Xt, y[:20]), rel=1e-9)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs", "rmsprop"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_estimator_sparse_equals_dense(solver, dtype):
    _sklearn()
    from cbackprop import MLPClassifier
    X, y = problem(n=80)
    params = dict(hidden_layer_sizes=(6,), solver=solver, random_state=0, max_iter=4,
                  batch_size=16, dtype=dtype, early_stopping=solver != "lbfgs",
                  validation_fraction=0.2, n_iter_no_change=1000, tol=0.0)
    dense = _fit_quiet(MLPClassifier(**params), X.toarray(), y)
    sparse = _fit_quiet(MLPClassifier(**params), sp.csr_array(X), y)
    tol = 1e-10 if dtype == "float64" else 1e-4
    for a, b in zip(sparse.coefs_ + sparse.intercepts_, dense.coefs_ + dense.intercepts_,
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X.toarray()),
                               atol=tol)
    np.testing.assert_array_equal(sparse.predict(sp.csc_matrix(X)), sparse.predict(X))


def test_partial_fit_on_sparse_matches_sklearn():
    sk_nn = _sklearn()
    from cbackprop import MLPClassifier
    X, y = problem(n=60)
    params = dict(hidden_layer_sizes=(5,), solver="sgd", momentum=0.0, random_state=0,
                  shuffle=False, learning_rate_init=0.1, batch_size=20)
    ours, theirs = MLPClassifier(**params), sk_nn.MLPClassifier(**params)
    for est in (ours, theirs):
        for start in (0, 30):
            est.partial_fit(X[start:start + 30], y[start:start + 30], classes=[0, 1, 2])
    for mine, their in zip(ours.coefs_, theirs.coefs_, strict=True):
        np.testing.assert_allclose(mine, their, rtol=1e-9, atol=1e-12)


def test_sklearn_refuses_what_we_refuse_on_sparse():
    # Both estimators reject NaN in a sparse X with scikit-learn's own message.
    sk_nn = _sklearn()
    from cbackprop import MLPClassifier
    X, y = problem()
    bad = sp.csr_matrix((X.data * np.nan, X.indices, X.indptr), X.shape)
    for est in (MLPClassifier(max_iter=1), sk_nn.MLPClassifier(max_iter=1)):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            est.fit(bad, y)
