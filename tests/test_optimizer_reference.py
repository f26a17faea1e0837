"""Every optimizer rule against a plain NumPy reference written from its formula
(torch.optim's, as each class's docstring states), independent of the Cython
kernels: through `Optimizer.step` (the flat kernel) and through `Network.fit`
(the per-layer step fused into the backward pass), in float32 and float64.

The fused path is checked on whole fits (shuffle=False, so the batches are
known): each batch's gradient comes from `tests/reference.py`, then the
reference rule steps θ. Batch sizes 1, a size whose last batch is short, and
the whole data set; alpha > 0 so the L2 term reaches the update too.
Both paths compare θ, the step count and every state buffer (momentum,
moments) with the reference's.
"""

import numpy as np
import pytest
from reference import loss_and_grad

import cbackprop as cb

#: Relative tolerances against the float64 reference, per dtype.
TOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}


def reference_step(name: str, cfg: dict, theta, g, state: dict, t: int):
    """One step t (from 1) of the named rule in float64: the new θ; `state`
    (empty before the first step) holds the buffers and is updated."""
    lr, wd = cfg["lr"], cfg["weight_decay"]
    if name == "sgd":
        g = g + wd * theta
        mu = cfg["momentum"]
        if mu == 0:
            return theta - lr * g
        v = state["v"] = mu * state.get("v", 0.0) + g
        return theta - lr * (g + mu * v if cfg["nesterov"] else v)
    if name in ("adam", "adamw"):
        if name == "adamw":
            theta = theta * (1 - lr * wd)
        else:
            g = g + wd * theta
        b1, b2 = cfg["betas"]
        m = state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + cfg["eps"])
    assert name == "rmsprop"
    g = g + wd * theta
    v = state["v"] = cfg["alpha"] * state.get("v", 0.0) + (1 - cfg["alpha"]) * g * g
    step = g / (np.sqrt(v) + cfg["eps"])
    if cfg["momentum"]:
        step = state["b"] = cfg["momentum"] * state.get("b", 0.0) + step
    return theta - lr * step


#: Each rule's buffers in the order the optimizer stacks them in `state`
#: (same layout as θ each: state[0:n] is the first, state[n:2n] the second).
BUFFERS = {"sgd": ("v",), "adam": ("m", "v"), "adamw": ("m", "v"), "rmsprop": ("v", "b")}


def stacked_state(name: str, state: dict, n: int) -> np.ndarray:
    """The reference's buffers as the optimizer's flat `state` (unused ones zero)."""
    return np.concatenate([np.broadcast_to(state.get(key, 0.0), (n,)) for key in BUFFERS[name]])


def assert_same_optimizer(opt, theta, expected_theta, state, t, dtype):
    """θ, the step count and every state buffer against the reference."""
    np.testing.assert_allclose(theta, expected_theta, rtol=TOL[dtype], atol=TOL[dtype],
                               err_msg="θ")
    assert opt.t == t
    assert opt.state.dtype == dtype
    np.testing.assert_allclose(opt.state, stacked_state(opt.name, state, theta.size),
                               rtol=TOL[dtype], atol=TOL[dtype], err_msg="optimizer state")


CASES = [
    (cb.SGD, {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
    (cb.SGD, {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.05}),
    (cb.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}),
    (cb.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.05}),
    (cb.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    (cb.Adam, {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}),
    (cb.Adam, {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    (cb.AdamW, {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}),
    (cb.RMSprop, {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0}),
    (cb.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "momentum": 0.5, "weight_decay": 0.1}),
]


def ids(case):
    return case[0].__name__ + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_step_follows_the_reference(case, dtype):
    cls, cfg = case
    rng = np.random.default_rng(0)
    theta = rng.normal(size=40).astype(dtype)
    expected, state = theta.astype(np.float64), {}
    opt = cls(**cfg)
    for t in range(1, 6):
        g = rng.normal(size=40).astype(dtype)
        opt.step(theta, g)
        expected = reference_step(cls.name, cfg, expected, g.astype(np.float64), state, t)
    assert_same_optimizer(opt, theta, expected, state, 5, dtype)


ACTS = ["tanh", "sigmoid", "identity"]


def flat_gradient(sizes, alpha, theta, X, Y):
    """∇L(θ) of one batch from the NumPy backpropagation, in θ's flat layout."""
    params, p = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        params.append((theta[p:p + n_in * n_out].reshape(n_in, n_out),
                       theta[p + n_in * n_out:p + n_in * n_out + n_out]))
        p += n_in * n_out + n_out
    _, grads = loss_and_grad(params, ACTS, "mse", X, Y, alpha=alpha)
    return np.concatenate([part.ravel() for dW, db in grads for part in (dW, db)])


@pytest.mark.parametrize("batch_size", [1, 6, 20], ids=["one-row", "short-last", "whole"])
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_fused_fit_follows_the_reference(case, batch_size, dtype):
    cls, cfg = case
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 2))
    net = cb.Network(4, [cb.Dense(5, ACTS[0]), cb.Dense(3, ACTS[1]), cb.Dense(2, ACTS[2])],
                     loss="mse", dtype=dtype, seed=2, alpha=0.01)
    theta, state = net.theta.astype(np.float64), {}
    Xd, Yd = X.astype(dtype).astype(np.float64), Y.astype(dtype).astype(np.float64)
    for t, start in enumerate(range(0, 20, batch_size), start=1):
        rows = slice(start, start + batch_size)
        g = flat_gradient(net.sizes, net.alpha, theta, Xd[rows], Yd[rows])
        theta = reference_step(cls.name, cfg, theta, g, state, t)
    opt = cls(**cfg)
    net.fit(X, Y, optimizer=opt, epochs=1, batch_size=batch_size, shuffle=False)
    assert_same_optimizer(opt, net.theta, theta, state, t, dtype)
