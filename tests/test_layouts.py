"""Any memory layout works: read-only, memory-mapped, Fortran-ordered,
strided, negative-stride, broadcast, unaligned and non-native byte order
inputs give bitwise the same results as a C-contiguous copy, and are left as
they were. Index arithmetic is 64-bit: inputs of more than 2**31 elements
work (a sparse memory-mapped file, which needs no disk blocks)."""

import os
import sys

import numpy as np
import pytest

import cbackprop as cb
from cbackprop._core import _engine

rng = np.random.default_rng(0)
N, D, K = 23, 5, 3


def variants(A, tmp_path, name):
    """(label, array equal in value to A but laid out differently)."""
    out = {
        "fortran": np.asfortranarray(A),
        "row-strided": np.repeat(A, 2, axis=0)[::2],
        "negative-rows": A[::-1].copy()[::-1],
        "readonly": A.copy(),
        "big-endian": A.astype(A.dtype.newbyteorder(">")),
        "little-endian": A.astype(A.dtype.newbyteorder("<")),
        "unaligned": np.frombuffer(b"\0" + A.tobytes(), dtype=A.dtype, offset=1).reshape(A.shape),
    }
    out["readonly"].setflags(write=False)
    if A.ndim == 2:
        out["column-strided"] = np.repeat(A, 2, axis=1)[:, ::2]
        out["negative-columns"] = A[:, ::-1].copy()[:, ::-1]
        out["transposed-view"] = A.T.copy().T
    path = tmp_path / f"{name}.npy"
    np.save(path, A)
    out["memmap"] = np.load(path, mmap_mode="r")
    return out


def described(arr):
    return (arr.dtype.str, arr.shape, arr.strides, arr.flags.writeable, arr.tobytes())


def make_net(dtype, loss):
    out = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mse": "tanh"}[loss]
    return cb.Network(D, [cb.Dense(4, "gelu", dropout=0.1), cb.Dense(K, out)], loss=loss,
                      dtype=dtype, seed=1, alpha=1e-3)


def all_results(dtype, loss, X, y, w):
    """Everything a network computes from these inputs, as arrays."""
    net = make_net(dtype, loss)
    results = [net.predict(X)]
    ev = net.evaluate(X, y, sample_weight=w)
    results.append(np.array(sorted(ev.values())))
    lg = net.loss_and_grad(X, y, sample_weight=w)
    results += [np.array(lg[0]), lg[1]]
    records = net.trace(X[0], y[0])
    results += [arr for record in records for arr in record]
    hist = net.fit(X, y, optimizer=cb.Adam(lr=0.01), epochs=2, batch_size=4, sample_weight=w)
    results += [net.theta.copy(), np.array(hist.history["loss"])]
    return results


TARGETS = {
    "cross_entropy": lambda: rng.integers(0, K, N),
    "binary_cross_entropy": lambda: (rng.uniform(size=(N, K)) > 0.5).astype(np.float64),
    "mse": lambda: rng.normal(size=(N, K)),
}


@pytest.mark.parametrize("loss", list(TARGETS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("which", ["X", "y", "sample_weight"])
def test_every_layout_gives_the_same_results_and_is_left_alone(tmp_path, dtype, loss, which):
    X = rng.normal(size=(N, D))
    y = TARGETS[loss]()
    w = rng.uniform(0.5, 2, N)
    inputs = {"X": X, "y": y, "sample_weight": w}
    expected = all_results(dtype, loss, X, y, w)
    for label, arr in variants(inputs[which], tmp_path, which).items():
        before = described(arr)
        args = dict(inputs, **{which: arr})
        got = all_results(dtype, loss, args["X"], args["y"], args["sample_weight"])
        for e, g in zip(expected, got, strict=True):
            assert e.dtype == g.dtype and e.shape == g.shape, label
            np.testing.assert_array_equal(g, e, err_msg=f"{which} {label}")
        assert described(arr) == before, f"{which} {label} was modified"


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint64",
                                   "float16", "float32", "float64", ">i4", ">f2"])
def test_numeric_dtypes_are_converted_once(dtype):
    Xi = rng.integers(0, 5, size=(N, D)).astype(dtype)
    y = rng.integers(0, K, N)
    net = make_net("float64", "cross_entropy")
    np.testing.assert_array_equal(net.predict(Xi), net.predict(Xi.astype(np.float64)))
    for labels in (y.astype(np.int8), y.astype(">u2"), y.astype(np.float32)):
        np.testing.assert_array_equal(net.loss_and_grad(Xi, labels)[1],
                                      net.loss_and_grad(Xi, y)[1])


def test_broadcast_input_with_zero_strides():
    row = rng.normal(size=(1, D))
    X = np.broadcast_to(row, (N, D))
    assert X.strides[0] == 0 and not X.flags.writeable
    y = rng.integers(0, K, N)
    for dtype in ("float32", "float64"):
        expected = all_results(dtype, "cross_entropy", np.repeat(row, N, axis=0), y, None)
        got = all_results(dtype, "cross_entropy", X, y, None)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_array_equal(g, e)


def test_array_likes_lists_and_memoryviews():
    X = rng.normal(size=(4, D))
    net = make_net("float64", "mse")
    expected = net.predict(X)
    np.testing.assert_array_equal(net.predict(X.tolist()), expected)
    np.testing.assert_array_equal(net.predict(memoryview(X)), expected)
    np.testing.assert_array_equal(net.predict(np.ma.masked_array(X, mask=False)), expected)


# ---- more than 2**31 elements --------------------------------------------

def sparse_memmap(path, shape, dtype=np.float32):
    with open(path, "wb") as f:
        f.truncate(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return np.memmap(path, dtype=dtype, mode="r+", shape=shape)


needs_64bit = pytest.mark.skipif(sys.maxsize < 2**40 or sys.platform == "win32",
                                 reason="needs a 64-bit POSIX system with sparse files")


@needs_64bit
def test_training_gathers_rows_beyond_2_31_elements(tmp_path):
    """The engine's row gather (r·d) on an 8 GiB sparse file: only the rows
    trained on are touched, so this is cheap. θ after one step must match
    the same step on a small copy of those rows."""
    d, k = 8, 2
    n = 2**31 // d + 3                                  # n·d > 2**31
    X = sparse_memmap(tmp_path / "X.f32", (n, d))
    Y = sparse_memmap(tmp_path / "Y.f32", (n, k))
    try:
        rows = np.array([n - 1, n - 2, n // 2 + 1], dtype=np.intp)
        assert rows[0] * d > 2**31
        X[rows] = rng.normal(size=(3, d))
        Y[rows] = rng.uniform(size=(3, k))
        net = cb.Network(d, [cb.Dense(3, "tanh"), cb.Dense(k)], seed=0)
        results = []
        for Xs, Ys, order in ((X, Y, rows), (np.array(X[rows]), np.array(Y[rows]),
                                             np.arange(3, dtype=np.intp))):
            theta = net.theta.copy()
            opt = cb.SGD(lr=0.1)
            state = opt.prepare(theta)
            t = np.zeros(1, np.int64)
            layout = net.engine_layout()
            ws = np.empty(_engine.workspace_size(layout, 3), np.float32)
            out = _engine.train_batches(
                layout, theta, np.zeros_like(theta), state, opt.code, opt.hyperparameters(),
                t, Xs, Ys, np.empty(0, np.float32), order, 0, 3, 3, ws,
                np.zeros(1, np.uint64), np.empty(0, np.float32), np.empty(0, np.float32))
            results.append((theta, out))
        np.testing.assert_array_equal(results[0][0], results[1][0])
        assert results[0][1] == results[1][1]
        assert not np.array_equal(results[0][0], net.theta)
    finally:
        del X, Y
        os.unlink(tmp_path / "X.f32")
        os.unlink(tmp_path / "Y.f32")


@needs_64bit
@pytest.mark.skipif(os.environ.get("CBACKPROP_HUGE_TESTS") != "1",
                    reason="reads an 8 GiB sparse file end to end (about 30 s and 8 GiB of "
                           "page cache); set CBACKPROP_HUGE_TESTS=1 to run it")
def test_predict_on_more_than_2_31_elements(tmp_path):
    """The public path: validation scans all 2**31 + 128 elements, predict
    runs every row; rows written past element 2**31 come out right."""
    d = 64
    n = 2**31 // d + 2
    X = sparse_memmap(tmp_path / "X.f32", (n, d))
    try:
        rows = [0, n // 2, n - 1]
        values = rng.normal(size=(3, d)).astype(np.float32)
        X[rows] = values
        X.flush()
        net = cb.Network(d, [cb.Dense(1, "tanh")], seed=0)
        out = net.predict(np.memmap(tmp_path / "X.f32", np.float32, "r", shape=(n, d)))
        assert out.shape == (n, 1)
        # Other row counts may take another BLAS kernel: equal to rounding.
        np.testing.assert_allclose(out[rows], net.predict(values), rtol=1e-6)
        np.testing.assert_array_equal(out[[1, n - 2]], net.predict(np.zeros((2, d))))
    finally:
        del X
        os.unlink(tmp_path / "X.f32")


def test_estimators_accept_every_layout(tmp_path):
    pytest.importorskip("sklearn")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X = rng.normal(size=(N, D))
    y = rng.integers(0, K, N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = cb.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
        expected = fitted.fit(X, y).predict_proba(X)
        for label, arr in variants(X, tmp_path, "X").items():
            before = described(arr)
            np.testing.assert_array_equal(fitted.predict_proba(arr), expected, err_msg=label)
            again = cb.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
            np.testing.assert_array_equal(again.fit(arr, y).predict_proba(X), expected,
                                          err_msg=label)
            assert described(arr) == before, label
