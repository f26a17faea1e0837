"""Backprop gradients against finite differences and a NumPy reference, for
every hidden activation × output/loss pairing × dtype."""

import numpy as np
import pytest
from reference import forward
from reference import loss_and_grad as reference_loss_and_grad

import cbackprop as cb
from cbackprop.activations import HIDDEN_ACTIVATIONS

# (output activation, loss) pairings a network can end with.
OUTPUTS = [
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
    ("identity", "mse"),
    ("tanh", "mse"),
    ("sigmoid", "mse"),
    ("identity", "huber"),
    ("softplus", "huber"),
]
GRADCHECK_TOL = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-7}


def targets(loss, rng, n, k):
    if loss == "cross_entropy":
        return rng.integers(0, k, n)
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, (n, k))
    return rng.normal(0, 2, (n, k))   # wide, so huber sees both branches


def make_case(hidden, out, loss, dtype, alpha=0.0, weighted=False):
    """A small network and data whose z stay clear of the kinks of relu-like
    activations (and residuals clear of huber's |r| = δ), so finite
    differences are valid."""
    for seed in range(100):
        rng = np.random.default_rng(seed)
        net = cb.Network(5, [cb.Dense(4, hidden), cb.Dense(6, hidden), cb.Dense(3, out)],
                         loss=loss, dtype=dtype, seed=seed, alpha=alpha)
        net.theta[...] += rng.normal(0, 0.3, net.theta.size)   # non-zero biases too
        X = rng.normal(size=(8, 5))
        y = targets(loss, rng, 8, 3)
        w = rng.uniform(0.5, 2, 8) if weighted else None
        zs, as_ = forward(net.params, [lay.activation for lay in net.layers], X)
        margin = min(np.abs(z).min() for z in zs[:-1])
        if loss == "huber":
            margin = min(margin, np.abs(np.abs(as_[-1] - y) - 1.0).min())
        if margin > 0.02:
            return net, X, y, w
    raise AssertionError("no kink-free case found")


def as_matrix(net, y):
    return cb._validation.check_targets(y, len(y), net.loss.name, net.n_outputs, np.float64)


@pytest.mark.parametrize("out,loss", OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
def test_backprop_matches_reference_and_finite_differences(hidden, out, loss, dtype, rtol):
    net, X, y, _ = make_case(hidden, out, loss, dtype)
    before = net.theta.copy()
    L, g = net.loss_and_grad(X, y)

    acts = [lay.activation for lay in net.layers]
    L_ref, grads_ref = reference_loss_and_grad(net.params, acts, loss, X, as_matrix(net, y))
    g_ref = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads_ref])
    assert L == pytest.approx(L_ref, rel=rtol)
    scale = np.abs(g_ref).max()
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=rtol * 10 * scale)

    assert cb.gradcheck(net, X, y) <= GRADCHECK_TOL[dtype]
    np.testing.assert_array_equal(net.theta, before)   # gradcheck leaves θ alone


@pytest.mark.parametrize("out,loss", OUTPUTS)
def test_l2_and_sample_weights(out, loss, dtype, rtol):
    net, X, y, w = make_case("tanh", out, loss, dtype, alpha=0.05, weighted=True)
    L, g = net.loss_and_grad(X, y, sample_weight=w)
    acts = [lay.activation for lay in net.layers]
    L_ref, grads_ref = reference_loss_and_grad(net.params, acts, loss, X, as_matrix(net, y),
                                               w=w, alpha=0.05)
    g_ref = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads_ref])
    assert L == pytest.approx(L_ref, rel=rtol)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=rtol * 10 * np.abs(g_ref).max())
    assert cb.gradcheck(net, X, y, sample_weight=w) <= GRADCHECK_TOL[dtype]


def test_huber_delta_is_used(rtol):
    net, X, y, _ = make_case("tanh", "identity", "huber", np.float64)
    net.loss = cb.Huber(delta=0.3)
    L, g = net.loss_and_grad(X, y)
    acts = [lay.activation for lay in net.layers]
    L_ref, _ = reference_loss_and_grad(net.params, acts, "huber", X, as_matrix(net, y), delta=0.3)
    L1, _ = reference_loss_and_grad(net.params, acts, "huber", X, as_matrix(net, y), delta=1.0)
    assert L == pytest.approx(L_ref, rel=1e-12)
    assert L_ref != pytest.approx(L1)


def test_loss_and_grad_chunks_agree_with_one_pass(monkeypatch):
    """The full pass runs in row chunks; the result must not depend on them."""
    net, X, y, _ = make_case("gelu", "softmax", "cross_entropy", np.float64)
    X = np.tile(X, (50, 1))
    y = np.tile(y, 50)
    L1, g1 = net.loss_and_grad(X, y)
    monkeypatch.setattr(cb._session, "CHUNK_ELEMENTS", 60)   # a few rows per chunk
    L2, g2 = net.loss_and_grad(X, y)
    assert L1 == pytest.approx(L2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-14)


def test_trace_is_one_examples_backprop():
    net, X, y, _ = make_case("sigmoid", "softmax", "cross_entropy", np.float64)
    records = net.trace(X[0], y[0])
    _, g = net.loss_and_grad(X[:1], y[:1])
    zs, as_ = forward(net.params, [lay.activation for lay in net.layers], X[:1])
    assert len(records) == len(net.layers)
    for rec, z, a, (dW, db) in zip(records, zs, as_, net._views(g)):
        np.testing.assert_allclose(rec.z, z[0], rtol=1e-12)
        np.testing.assert_allclose(rec.a, a[0], rtol=1e-12)
        np.testing.assert_allclose(rec.dC_dW, dW, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(rec.dC_db, db, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(rec.dC_db, rec.dC_dz)     # ∂C/∂b = δ
    # ∂C/∂w = a_prev · ∂C/∂z, the lecture's formula, for every layer.
    a_prev = X[0]
    for rec in records:
        np.testing.assert_allclose(rec.dC_dW, np.outer(a_prev, rec.dC_dz), rtol=1e-12)
        a_prev = rec.a


def test_extreme_logits_stay_finite(dtype):
    for out, loss in [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy")]:
        net = cb.Network(2, [cb.Dense(3, out)], loss=loss, dtype=dtype, seed=0)
        W, b = net.params[0]
        W[...] = 0
        b[...] = [1e4, -1e4, 0] if out == "softmax" else [1000, -1000, 0]
        y = [1] if loss == "cross_entropy" else [[0, 1, 1]]
        L, g = net.loss_and_grad(np.zeros((1, 2)), y)
        expected = 2e4 if loss == "cross_entropy" else (2000 + np.log(2)) / 3
        assert L == pytest.approx(expected, rel=1e-6)
        assert np.all(np.isfinite(g))
        assert np.abs(g).max() == pytest.approx(1.0 if out == "softmax" else 1 / 3, rel=1e-6)


@pytest.mark.parametrize("hidden", ["tanh", "softplus"])
@pytest.mark.parametrize("weighted", [False, True])
def test_poisson_loss_and_gradient(hidden, weighted, dtype, rtol):
    # Half Poisson deviance of μ = eᶻ from an identity (log-link) output; δ = eᶻ − y.
    rng = np.random.default_rng(3)
    net = cb.Network(5, [cb.Dense(4, hidden), cb.Dense(3, "identity")], loss="poisson",
                     dtype=dtype, seed=3, alpha=0.05)
    net.theta[...] += rng.normal(0, 0.3, net.theta.size)
    X = rng.normal(size=(8, 5))
    y = rng.poisson(2.0, (8, 3)).astype(float)           # zeros too (y log y = 0)
    w = rng.uniform(0.5, 2, 8) if weighted else np.ones(8)
    L, g = net.loss_and_grad(X, y, sample_weight=w if weighted else None)
    zs, _ = forward(net.params, ["tanh" if hidden == "tanh" else hidden, "identity"], X)
    z = zs[-1]
    mu = np.exp(z)
    yl = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0.0)
    per = (mu - y * z + yl - y).mean(axis=1)
    L_ref = (w * per).sum() / w.sum() + 0.025 * sum((W.astype(float) ** 2).sum()
                                                     for W, _ in net.params)
    assert L == pytest.approx(L_ref, rel=rtol)
    assert cb.gradcheck(net, X, y, sample_weight=w if weighted else None) \
        <= GRADCHECK_TOL[dtype]


def test_poisson_needs_an_identity_output():
    with pytest.raises(ValueError, match="identity"):
        cb.Network(3, [cb.Dense(2, "softplus")], loss="poisson")
    assert cb.Network(3, [cb.Dense(2, "identity")]).loss.name == "mse"   # default unchanged
