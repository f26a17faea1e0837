"""Check backpropagation against finite differences."""

from __future__ import annotations

import numpy as np

from cbackprop import _validation as V
from cbackprop._session import Evaluator


def finite_differences(network, X, y, step: float = 1e-3, sample_weight=None) -> np.ndarray:
    """∂L/∂θᵢ for every parameter by the fourth-order central stencil
    (−L(θ+2h) + 8L(θ+h) − 8L(θ−h) + L(θ−2h)) / 12h, h = `step`, computed on
    a float64 copy of the network (so a float32 network is checked against
    float64 truth). `network.theta` is left unchanged."""
    step = V.check_real(step, "step", 0, low_open=True)
    config = network.get_config()
    config["dtype"] = "float64"
    ref = type(network).from_config(config)
    ref.theta[...] = network.theta
    session = Evaluator(ref, X, y, sample_weight)    # checks the data once

    def loss_at(i: int, delta: float) -> float:
        ref.theta[i] = float(network.theta[i]) + delta
        return session.loss_and_grad(with_grad=False)[0]

    f = np.empty(ref.theta.size)
    for i in range(ref.theta.size):
        f[i] = (-loss_at(i, 2 * step) + 8 * loss_at(i, step) - 8 * loss_at(i, -step)
                + loss_at(i, -2 * step)) / (12 * step)
        ref.theta[i] = network.theta[i]
    return f


def gradcheck(network, X, y, step: float = 1e-3, sample_weight=None) -> float:
    """Max relative error between backprop's ∇L(θ) and finite differences.

    The finite differences are `finite_differences`'s fourth-order central
    stencil with h = `step`, in float64. The error for parameter i is
    |gᵢ − fᵢ| / max(|gᵢ|, |fᵢ|, 10⁻³·‖f‖∞): gradients far below the largest
    one are compared on the largest one's scale. Relu-family kinks within 2h
    of a unit's z give spurious errors: use smooth inputs.

    Parameters
    ----------
    network : Network
    X, y : data, as for `Network.loss_and_grad`
    step : float, default 1e-3
    sample_weight : optional per-row weights

    Returns
    -------
    float
        0 means exact agreement; float64 backprop typically gives < 1e-8.
        `network.theta` is left unchanged.
    """
    step = V.check_real(step, "step", 0, low_open=True)
    _, g = network.loss_and_grad(X, y, sample_weight)
    f = finite_differences(network, X, y, step, sample_weight)
    g = g.astype(np.float64)
    floor = 1e-3 * np.max(np.abs(f))
    if floor == 0 and not np.any(g):
        return 0.0
    denom = np.maximum(np.maximum(np.abs(g), np.abs(f)), max(floor, np.finfo(float).tiny))
    return float(np.max(np.abs(g - f) / denom))
