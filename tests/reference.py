"""A plain NumPy implementation of the network maths: the oracle for tests.

Written from the formulas in DESIGN.md, independently of the Cython kernels.
Everything is float64.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf, expit, log_expit, logsumexp


def activation(name, z):
    if name == "identity":
        return z
    if name == "sigmoid":
        return expit(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "softplus":
        return np.logaddexp(0, z)
    if name == "gelu":
        return 0.5 * z * (1 + erf(z / np.sqrt(2)))
    if name == "silu":
        return z * expit(z)
    if name == "softmax":
        return np.exp(z - logsumexp(z, axis=1, keepdims=True))
    raise ValueError(name)


def derivative(name, z):
    """σ'(z), elementwise (not for softmax)."""
    if name == "identity":
        return np.ones_like(z)
    if name == "sigmoid":
        s = expit(z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "relu":
        return (z > 0).astype(float)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, 0.01)
    if name == "elu":
        return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))
    if name == "softplus":
        return expit(z)
    if name == "gelu":
        return 0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    if name == "silu":
        s = expit(z)
        return s + z * s * (1 - s)
    raise ValueError(name)


def loss_and_output_delta(loss, out_act, z, Y, w, delta=1.0):
    """Per-row costs (n,) and ∂(Σ w·C / norm)/∂z with the loss's normalisation."""
    n, k = z.shape
    a = activation(out_act, z)
    if loss == "cross_entropy":
        logp = z - logsumexp(z, axis=1, keepdims=True)
        rows = -(Y * logp).sum(axis=1)
        dz = (a * Y.sum(axis=1, keepdims=True) - Y) * w[:, None] / w.sum()
        return rows, dz, w.sum()
    norm = w.sum() * k
    if loss == "binary_cross_entropy":
        rows = -(Y * log_expit(z) + (1 - Y) * log_expit(-z)).sum(axis=1)
        return rows, (a - Y) * w[:, None] / norm, norm
    r = a - Y
    if loss == "mse":
        rows, da = (r**2).sum(axis=1), 2 * r
    elif loss == "huber":
        small = np.abs(r) <= delta
        rows = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)).sum(axis=1)
        da = np.where(small, r, delta * np.sign(r))
    else:
        raise ValueError(loss)
    return rows, da * derivative(out_act, z) * w[:, None] / norm, norm


def forward(params, acts, X):
    """Lists of z and a per layer."""
    zs, as_ = [], []
    a = X
    for (W, b), act in zip(params, acts):
        z = a @ W + b
        a = activation(act, z)
        zs.append(z)
        as_.append(a)
    return zs, as_


def loss_and_grad(params, acts, loss, X, Y, w=None, alpha=0.0, delta=1.0):
    """L(θ) and [(dW, db), …] by textbook backpropagation, in float64."""
    params = [(np.asarray(W, float), np.asarray(b, float)) for W, b in params]
    X, Y = np.asarray(X, float), np.asarray(Y, float)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, float)
    zs, as_ = forward(params, acts, X)
    rows, dz, norm = loss_and_output_delta(loss, acts[-1], zs[-1], Y, w, delta)
    L = (w * rows).sum() / norm + 0.5 * alpha * sum((W**2).sum() for W, _ in params)
    grads = [None] * len(params)
    for layer in range(len(params) - 1, -1, -1):
        a_prev = X if layer == 0 else as_[layer - 1]
        W = params[layer][0]
        grads[layer] = (a_prev.T @ dz + alpha * W, dz.sum(axis=0))
        if layer > 0:
            dz = (dz @ W.T) * derivative(acts[layer - 1], zs[layer - 1])
    return L, grads
