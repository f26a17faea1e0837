"""The training engine: fused updates, BLAS kernels, threads, memory."""

import numpy as np
import pytest

import cbackprop as cb

#: Tolerances for a few training steps compared with a step-by-step reference.
STEP_RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}

OPTIMIZERS = [
    lambda: cb.SGD(lr=0.1),
    lambda: cb.SGD(lr=0.1, weight_decay=0.01),
    lambda: cb.SGD(lr=0.05, momentum=0.9),
    lambda: cb.SGD(lr=0.05, momentum=0.9, weight_decay=0.02),
    lambda: cb.SGD(lr=0.05, momentum=0.8, nesterov=True),
    lambda: cb.Adam(lr=0.01),
    lambda: cb.Adam(lr=0.01, weight_decay=0.05),
    lambda: cb.AdamW(lr=0.01, weight_decay=0.1),
    lambda: cb.RMSprop(lr=0.01, momentum=0.5),
]


def small_problem(dtype, loss, n=23, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    else:
        y = rng.standard_normal((n, k)).astype(dtype)
    return X, y


def make_net(dtype, loss, alpha=0.0, d=5, k=3, seed=1):
    out = "softmax" if loss == "cross_entropy" else "identity"
    return cb.Network(d, [cb.Dense(8, "relu"), cb.Dense(6, "tanh"), cb.Dense(k, out)],
                      loss=loss, dtype=dtype, seed=seed, alpha=alpha)


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=lambda f: repr(f()))
@pytest.mark.parametrize("loss,alpha", [("cross_entropy", 0.0), ("mse", 0.03)])
def test_fused_updates_equal_gradient_then_step(make_opt, loss, alpha, dtype):
    """fit updates each layer inside the backward pass (SGD even inside the
    ∂W GEMM); the result must equal a full gradient then one optimizer step."""
    X, y = small_problem(dtype, loss)
    net, ref = make_net(dtype, loss, alpha), make_net(dtype, loss, alpha)
    opt, ref_opt = make_opt(), make_opt()
    B = 7                                   # 23 rows: batches of 7, 7, 7 and 2
    net.fit(X, y, optimizer=opt, epochs=2, batch_size=B, shuffle=False)
    for _ in range(2):
        for pos in range(0, X.shape[0], B):
            _, g = ref.loss_and_grad(X[pos:pos + B], y[pos:pos + B])
            ref_opt.step(ref.theta, g)
    assert opt.t == ref_opt.t == 8
    np.testing.assert_allclose(net.theta, ref.theta, rtol=STEP_RTOL[dtype],
                               atol=STEP_RTOL[dtype])
    np.testing.assert_allclose(opt.state, ref_opt.state, rtol=STEP_RTOL[dtype],
                               atol=STEP_RTOL[dtype])
