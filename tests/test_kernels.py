"""The hand-written GEMM kernels (_core/_kernels.c) at every instruction-set
level this CPU has, the portable fallback included (forced through
set_kernel_level, as on a CPU without AVX2), against NumPy's matmul."""

import numpy as np
import pytest

import cbackprop as cb
from cbackprop._core import _blas

LEVELS = ["portable", "avx2", "avx512"]
SHAPES = [(1, 1, 1), (32, 32, 64), (32, 10, 32), (64, 32, 32), (1, 128, 784),
          (784, 128, 1), (7, 13, 5), (5, 17, 3), (3, 65, 9), (9, 100, 2), (4, 16, 8),
          (1, 10, 128), (128, 10, 1), (1, 32, 10), (33, 31, 17), (1, 129, 33),
          (1, 1030, 1030)]
TOL = {np.float32: 2e-5, np.float64: 1e-13}


@pytest.fixture(params=LEVELS)
def level(request):
    got = _blas.set_kernel_level(request.param)
    if got != request.param:
        pytest.skip(f"this CPU has no {request.param}")
    yield got
    _blas.set_kernel_level("avx512")       # back to the best the CPU has


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hand_kernel_matches_matmul(level, m, n, k, trans_a, trans_b, dtype):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    ref = 0.5 * (A.T if trans_a else A).astype(np.float64) @ (
        B.T if trans_b else B).astype(np.float64) - 2.0 * C0
    scale = np.sqrt(k) + 2
    for beta in (0.0, -2.0):
        # beta = 0 must not read C: start from NaN there.
        C = C0.copy() if beta else np.full((m, n), np.nan, dtype)
        _blas.py_gemm(A, B, C, trans_a, trans_b, alpha=0.5, beta=beta, kernel="hand")
        want = ref if beta else ref + 2.0 * C0
        np.testing.assert_allclose(C, want, rtol=0, atol=TOL[dtype] * scale * 4)


def test_nothing_after_c_is_written(level):
    """The masked column tail stores only C's own elements."""
    A = np.ones((3, 4), np.float32)
    B = np.ones((4, 5), np.float32)
    C = np.zeros(3 * 5 + 16, np.float32)
    C[15:] = 7
    _blas.py_gemm(A, B, C[:15].reshape(3, 5), kernel="hand")
    np.testing.assert_array_equal(C[:15], 4)
    np.testing.assert_array_equal(C[15:], 7)


def test_results_are_deterministic(level):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((32, 64)).astype(np.float32)
    B = rng.standard_normal((64, 32)).astype(np.float32)
    C1, C2 = np.empty((32, 32), np.float32), np.empty((32, 32), np.float32)
    _blas.py_gemm(A, B, C1, kernel="hand")
    _blas.py_gemm(A, B, C2, kernel="hand")
    np.testing.assert_array_equal(C1, C2)


def test_levels_are_capped_to_the_cpu_and_named():
    assert _blas.kernel_level() in LEVELS
    assert _blas.set_kernel_level("portable") == "portable"
    assert _blas.kernel_for("float32", False, 32, 32, 64) == "BLAS"
    if _blas.set_kernel_level("avx512") == "avx512":
        assert _blas.kernel_for("float32", False, 32, 32, 64) == "hand"


def test_training_at_every_level_is_correct(level):
    """The engine through the level's kernels (tiny float64 layers: the hand
    kernel runs δ·Wᵀ): backprop matches finite differences, and a fit lands
    where the best level's does, to rounding."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 64))
    y = rng.integers(0, 10, 32)

    def net():
        return cb.Network(64, [cb.Dense(32, "tanh"), cb.Dense(10, "softmax")], seed=0,
                          dtype="float64", n_threads=1)

    assert cb.gradcheck(net(), X, y) < 1e-4       # central differences' own error here
    _, grad = net().loss_and_grad(X, y)
    trained = net()
    trained.fit(X, y, optimizer=cb.SGD(lr=0.1, momentum=0.9), epochs=5, batch_size=32)
    _blas.set_kernel_level("avx512")
    best = net()
    best.fit(X, y, optimizer=cb.SGD(lr=0.1, momentum=0.9), epochs=5, batch_size=32)
    np.testing.assert_allclose(grad, net().loss_and_grad(X, y)[1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(trained.theta, best.theta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sizes,batch", [((64, 32, 10), 32), ((300, 64, 10), 64)])
def test_float32_training_at_every_level_tracks_float64(level, sizes, batch):
    """float32 through the level's GEMM kernels stays within float32 rounding
    of the same gradient and fit in float64: the tiny layers (hand kernels at
    AVX2 and AVX-512) and a 300-64 layer at batch 64, whose forward and ∂W
    GEMMs (1.2 Mi multiply-adds) the hand kernel runs at AVX-512."""
    if sizes[0] == 300:
        assert _blas.kernel_for("float32", False, batch, 64, 300) == (
            "hand" if level == "avx512" else "BLAS")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, sizes[0]))
    y = rng.integers(0, 10, 256)

    def net(dtype):
        return cb.Network(sizes[0], [cb.Dense(sizes[1], "tanh"), cb.Dense(10, "softmax")],
                          seed=0, dtype=dtype, n_threads=1)

    g32 = net("float32").loss_and_grad(X, y)[1]
    g64 = net("float64").loss_and_grad(X, y)[1]
    np.testing.assert_allclose(g32, g64, rtol=0, atol=1e-5 * np.abs(g64).max())
    theta = {}
    for dtype in ("float32", "float64"):
        trained = net(dtype)
        trained.fit(X, y, optimizer=cb.SGD(lr=0.05, momentum=0.9), epochs=3, batch_size=batch)
        theta[dtype] = trained.theta
    np.testing.assert_allclose(theta["float32"], theta["float64"], rtol=0, atol=1e-4)


STEP_OPTIMIZERS = {
    "sgd": lambda: cb.SGD(lr=0.1, weight_decay=0.01),
    "momentum": lambda: cb.SGD(lr=0.05, momentum=0.9, weight_decay=0.02),
    "nesterov": lambda: cb.SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    "adam": lambda: cb.Adam(lr=0.01, weight_decay=0.05),
    "adamw": lambda: cb.AdamW(lr=0.01, weight_decay=0.1),
    "rmsprop": lambda: cb.RMSprop(lr=0.01, weight_decay=0.01),
    "rmsprop_momentum": lambda: cb.RMSprop(lr=0.01, momentum=0.5),
    # no decay of any kind (λ = 0): the loops' branch without the λ·W term
    "momentum_no_decay": lambda: cb.SGD(lr=0.05, momentum=0.9),
}


def _steps_at(level_name, make, dtype, alpha):
    """θ and the optimizer state after a few flat steps and a few fits (batch 1:
    the rank-1 loop; batch 5: the GEMM then the per-element loop) at one level."""
    _blas.set_kernel_level(level_name)
    try:
        rng = np.random.default_rng(1)
        X = rng.standard_normal((23, 37)).astype(dtype)
        y = rng.integers(0, 3, 23)
        net = cb.Network(37, [cb.Dense(19, "relu"), cb.Dense(3, "softmax")], seed=0,
                         dtype=dtype, n_threads=1, alpha=alpha)
        opt = make()
        for _ in range(3):
            _, grad = net.loss_and_grad(X, y)
            opt.step(net.theta, grad)
        net.fit(X, y, optimizer=opt, epochs=2, batch_size=1)
        net.fit(X, y, optimizer=opt, epochs=2, batch_size=5)
        return net.theta.copy(), opt.state.copy()
    finally:
        _blas.set_kernel_level("avx512")


@pytest.mark.parametrize("name", sorted(STEP_OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optimizer_loops_are_bitwise_equal_at_every_level(level, name, dtype):
    """_steps.c compiles each rule per instruction set without FMA contraction:
    every level must give the portable loop's bits (the results do not depend
    on the CPU), and the step must have moved θ."""
    alpha = 0.0 if name.endswith("no_decay") else 0.01
    theta, state = _steps_at(level, STEP_OPTIMIZERS[name], dtype, alpha)
    theta0, state0 = _steps_at("portable", STEP_OPTIMIZERS[name], dtype, alpha)
    np.testing.assert_array_equal(theta, theta0)
    np.testing.assert_array_equal(state, state0)
    start = cb.Network(37, [cb.Dense(19, "relu"), cb.Dense(3, "softmax")], seed=0,
                       dtype=dtype)
    assert not np.allclose(theta, start.theta)


# name: (optimizer, alpha, whether the one-example loop rounds as the flat rule)
ONE_EXAMPLE_OPTIMIZERS = {
    "sgd": (lambda: cb.SGD(lr=0.05, weight_decay=0.01), 0.01, False),
    "momentum": (lambda: cb.SGD(lr=0.05, momentum=0.9, weight_decay=0.02), 0.0, True),
    "velocity": (lambda: cb.optimizers.SGDVelocity(lr=0.05, momentum=0.9), 0.01, False),
    "adam": (lambda: cb.Adam(lr=0.01), 0.0, True),
    "adam_wd_alpha": (lambda: cb.Adam(lr=0.01, weight_decay=0.05), 0.01, True),
    "adamw": (lambda: cb.AdamW(lr=0.01, weight_decay=0.1), 0.0, True),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", [(37, 19, 3), (400, 200, 3)])   # hand kernel / BLAS ∂W
@pytest.mark.parametrize("name", sorted(ONE_EXAMPLE_OPTIMIZERS))
def test_one_example_steps_fold_the_outer_product_into_their_loop(level, dtype, sizes, name):
    """At batch 1, SGD and Adam form ∂W = a ⊗ δ (+ αW) inside their loop
    instead of through the ∂W GEMM. A fit over all rows must equal, bitwise,
    one fit call per row (each its own call into the engine); and where the
    loop rounds as the flat rule, the gradient (loss_and_grad, a GEMM)
    followed by that rule, row after row."""
    make, alpha, flat_rounding = ONE_EXAMPLE_OPTIMIZERS[name]
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], 6)

    def net():
        return cb.Network(sizes[0], [cb.Dense(sizes[1], "relu"), cb.Dense(sizes[2], "softmax")],
                          seed=0, dtype=dtype, n_threads=1, alpha=alpha)

    fitted, opt_fit = net(), make()
    fitted.fit(X, y, optimizer=opt_fit, epochs=2, batch_size=1, shuffle=False)
    per_row, opt_row = net(), make()
    stepped, opt_step = net(), make()
    for _ in range(2):
        for i in range(len(X)):
            per_row.fit(X[i:i + 1], y[i:i + 1], optimizer=opt_row, batch_size=1)
            _, grad = stepped.loss_and_grad(X[i:i + 1], y[i:i + 1])
            opt_step.step(stepped.theta, grad)
    np.testing.assert_array_equal(fitted.theta, per_row.theta)
    np.testing.assert_array_equal(opt_fit.state, opt_row.state)
    if flat_rounding:
        np.testing.assert_array_equal(fitted.theta, stepped.theta)
        np.testing.assert_array_equal(opt_fit.state, opt_step.state)
    assert not np.array_equal(fitted.theta, net().theta)


def _softmax_pair(dtype, x):
    """P(class 1) of a 1-input softmax layer with z = [0, x]: e^x / (1 + e^x)."""
    net = cb.Network(1, [cb.Dense(2, "softmax")], dtype=dtype, n_threads=1)
    net.theta[:] = 0
    net.theta[1] = 1            # W = [0, 1], b = 0
    return net.predict(x[:, None])[:, 1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_exp_is_accurate_and_equal_at_every_level(level, dtype):
    """_vexp.c's e^x (softmax) within 2 ulp of the float64/longdouble reference
    wherever e^x is a normal number, ≈ 0 below, bitwise the portable loop's at
    every level, and exact at 0."""
    x = np.concatenate([np.linspace(-800, 0, 100001), -np.logspace(-30, 3, 5001), [0.0]])
    x = x.astype(dtype)
    p = _softmax_pair(dtype, x)
    e = np.exp(x.astype(np.longdouble))
    ref = e / (1 + e)
    normal = ref > 4 * np.finfo(dtype).tiny
    rel = np.abs(p[normal] - ref[normal]) / ref[normal] / np.finfo(dtype).eps
    assert rel.max() <= 2.0
    assert np.all(np.abs(p[~normal]) <= 4 * np.finfo(dtype).tiny)
    assert p[-1] == 0.5
    _blas.set_kernel_level("portable")
    np.testing.assert_array_equal(p, _softmax_pair(dtype, x))
