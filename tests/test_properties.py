"""Property tests (hypothesis): for random shapes (including 0 and 1 rows,
1 feature, 1-unit layers), input dtypes and memory layouts, predict,
loss_and_grad and fit agree with a float64 NumPy reference, and a
non-contiguous or converted input gives bitwise what its C-contiguous float64
copy gives."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import forward
from reference import loss_and_grad as reference_loss_and_grad

import cbackprop as cb
from cbackprop.activations import HIDDEN_ACTIVATIONS

OUTPUTS = [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"),
           ("identity", "mse"), ("tanh", "huber")]
INPUT_DTYPES = ["float64", "float32", "float16", ">f8", "<f4", "int8", "int64", ">i4", "uint8"]
LAYOUTS = ["C", "F", "row-strided", "column-strided", "negative", "readonly", "unaligned"]
# float32 networks round every layer; float64 ones agree to near machine precision.
TOL = {"float32": dict(rtol=2e-3, atol=2e-4), "float64": dict(rtol=1e-9, atol=1e-11)}

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def lay_out(A, layout):
    if layout == "F":
        return np.asfortranarray(A)
    if layout == "row-strided":
        return np.repeat(A, 2, axis=0)[::2]
    if layout == "column-strided":
        return np.repeat(A, 2, axis=1)[:, ::2]
    if layout == "negative":
        return A[::-1, ::-1].copy()[::-1, ::-1]
    if layout == "readonly":
        A = A.copy()
        A.setflags(write=False)
        return A
    if layout == "unaligned":
        return np.frombuffer(b"\0" + A.tobytes(), A.dtype, offset=1).reshape(A.shape)
    return np.ascontiguousarray(A)


@st.composite
def cases(draw):
    n = draw(st.integers(0, 9))
    d = draw(st.integers(1, 6))
    hidden = draw(st.lists(st.tuples(st.integers(1, 6), st.sampled_from(HIDDEN_ACTIVATIONS)),
                           max_size=2))
    out, loss = draw(st.sampled_from(OUTPUTS))
    k = draw(st.integers(2 if out == "softmax" else 1, 4))
    return dict(n=n, d=d, hidden=hidden, out=out, loss=loss, k=k,
                dtype=draw(st.sampled_from(["float32", "float64"])),
                x_dtype=draw(st.sampled_from(INPUT_DTYPES)),
                layout=draw(st.sampled_from(LAYOUTS)),
                seed=draw(st.integers(0, 2**32 - 1)))


def build(case):
    rng = np.random.default_rng(case["seed"])
    layers = [cb.Dense(units, act) for units, act in case["hidden"]]
    layers.append(cb.Dense(case["k"], case["out"]))
    net = cb.Network(case["d"], layers, loss=case["loss"], dtype=case["dtype"],
                     seed=case["seed"])
    net.theta[...] += rng.normal(0, 0.2, net.theta.size)    # non-zero biases too
    n, d, k = case["n"], case["d"], case["k"]
    if np.dtype(case["x_dtype"]).kind == "f":
        X = rng.uniform(-3, 3, (n, d)).astype(case["x_dtype"])
    else:
        X = rng.integers(0, 6, (n, d)).astype(case["x_dtype"])
    if case["loss"] == "cross_entropy":
        y = rng.integers(0, k, n)
    elif case["loss"] == "binary_cross_entropy":
        y = rng.uniform(0, 1, (n, k))
    else:
        y = rng.normal(0, 2, (n, k))
    return net, X, lay_out(X, case["layout"]) if n else X, y


def reference_inputs(net, X, y):
    """X rounded to the network's dtype as the boundary does, then float64;
    targets as the (n, k) matrix the boundary builds."""
    X64 = np.asarray(X, dtype=net.dtype).astype(np.float64)
    Y = cb._validation.check_targets(y, len(y), net.loss.name, net.n_outputs, np.float64)
    params = [(W.astype(np.float64), b.astype(np.float64)) for W, b in net.params]
    return X64, Y, params


@SETTINGS
@given(cases())
def test_predict_and_gradients_match_the_float64_reference(case):
    net, X, Xv, y = build(case)
    if case["n"] == 0:
        with pytest.raises(ValueError, match="0 rows"):
            net.predict(Xv)
        return
    acts = [layer.activation for layer in net.layers]
    X64, Y, params = reference_inputs(net, X, y)
    tol = TOL[case["dtype"]]
    out = net.predict(Xv)
    assert out.shape == (case["n"], case["k"]) and out.dtype == net.dtype
    np.testing.assert_allclose(out, forward(params, acts, X64)[1][-1], **tol)
    # Layout and dtype conversion happen once, exactly: bitwise the C copy's result.
    np.testing.assert_array_equal(out, net.predict(np.ascontiguousarray(X, np.float64)))

    loss, grad = net.loss_and_grad(Xv, y)
    ref_loss, ref_grads = reference_loss_and_grad(params, acts, net.loss.name, X64, Y)
    ref_grad = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in ref_grads])
    np.testing.assert_allclose(loss, ref_loss, **tol)
    scale = max(1.0, np.abs(ref_grad).max())
    np.testing.assert_allclose(grad, ref_grad, rtol=tol["rtol"], atol=tol["atol"] * scale)


@SETTINGS
@given(cases(), st.integers(1, 5))
def test_fit_on_any_layout_equals_fit_on_the_c_contiguous_copy(case, batch_size):
    net, X, Xv, y = build(case)
    if case["n"] == 0:
        before = net.theta.copy()
        with pytest.raises(ValueError, match="0 rows"):
            net.fit(Xv, y)
        np.testing.assert_array_equal(net.theta, before)
        return
    twin = cb.Network.from_config(net.get_config())
    twin.theta = net.theta
    before = net.theta.copy()
    outcome = fit_outcome(net, Xv, y, batch_size)
    assert outcome == fit_outcome(twin, np.ascontiguousarray(X, np.float64), y, batch_size)
    np.testing.assert_array_equal(net.theta, twin.theta)
    assert np.isfinite(net.theta).all()
    if outcome == "diverged":
        np.testing.assert_array_equal(net.theta, before)


def fit_outcome(net, X, y, batch_size):
    """The per-epoch losses, or "diverged" (a legitimate outcome for some
    random regressions; it must then be the same for both inputs)."""
    try:
        hist = net.fit(X, y, optimizer=cb.SGD(lr=0.05), epochs=2, batch_size=batch_size)
    except cb.DivergenceError:
        return "diverged"
    return hist.history["loss"]
