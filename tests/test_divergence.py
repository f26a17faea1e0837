"""Divergence never leaves a broken model, and extreme values stay finite.

A fit whose loss or parameters become NaN/inf raises DivergenceError and
puts back θ, the optimizer state and step count and the shuffling stream as
they were before that fit; the network stays usable. Logits of ±1e4 and
sigmoid(±1000) give finite losses and gradients (and the exact values)."""

import numpy as np
import pytest

import cbackprop as cb
from cbackprop.activations import HIDDEN_ACTIVATIONS

OPTIMIZERS = {
    "sgd": lambda lr: cb.SGD(lr=lr, momentum=0.9),
    "adam": lambda lr: cb.Adam(lr=lr),
    "adamw": lambda lr: cb.AdamW(lr=lr),
    "rmsprop": lambda lr: cb.RMSprop(lr=lr, momentum=0.5),
}


def state_of(net, opt):
    return (net.theta.copy(), opt.state.copy(), opt.t, net.rng_state.copy())


def assert_same_state(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_diverging_fit_puts_everything_back(dtype, name):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    net = cb.Network(3, [cb.Dense(8, "relu"), cb.Dense(1)], dtype=dtype, seed=0)
    opt = OPTIMIZERS[name](1e-3)
    net.fit(X, y, optimizer=opt, epochs=2, batch_size=10)     # non-trivial state first
    before = state_of(net, opt)
    opt.lr = float(np.finfo(dtype).max) ** 0.75     # steps whose square overflows
    with pytest.raises(cb.DivergenceError, match="parameters before this fit were restored"):
        net.fit(X * 1e6, y * 1e6, optimizer=opt, epochs=50, batch_size=10)
    assert_same_state(state_of(net, opt), before)
    assert np.isfinite(net.theta).all()
    # Still usable: the same optimizer, at a sane rate, trains on.
    opt.lr = 1e-3
    net.fit(X, y, optimizer=opt, epochs=1, batch_size=10)
    assert np.isfinite(net.theta).all() and opt.t == before[2] + 6


def test_parameters_that_overflow_after_the_last_batch_are_caught(dtype):
    """The loss of the only batch is finite, its update is not: the check
    of θ after the chunk catches what the loss check cannot."""
    X, y = np.ones((4, 2)), np.ones(4)
    net = cb.Network(2, [cb.Dense(1)], loss="mse", dtype=dtype, seed=0)
    before = net.theta.copy()
    huge = float(np.finfo(dtype).max)
    with pytest.raises(cb.DivergenceError, match="the parameters became NaN or infinite"):
        net.fit(X, y * 1e3, optimizer=cb.SGD(lr=huge), epochs=1, batch_size=4)
    np.testing.assert_array_equal(net.theta, before)


STEP_RULES = {
    "sgd": lambda lr: cb.SGD(lr=lr),
    "momentum": lambda lr: cb.SGD(lr=lr, momentum=0.9),
    "nesterov": lambda lr: cb.SGD(lr=lr, momentum=0.9, nesterov=True),
    "adam": lambda lr: cb.Adam(lr=lr),
    "adamw": lambda lr: cb.AdamW(lr=lr, weight_decay=0.1),
    "rmsprop": lambda lr: cb.RMSprop(lr=lr),
    "rmsprop_momentum": lambda lr: cb.RMSprop(lr=lr, momentum=0.5),
}


@pytest.mark.parametrize("name", list(STEP_RULES))
@pytest.mark.parametrize("batch", [1, 4])
def test_every_update_path_reports_parameters_it_made_non_finite(dtype, name, batch):
    """The last (only) batch has a finite loss and an update that overflows:
    each update loop (GEMM-fused SGD, the batch-1 rank-1 step, momentum after
    the GEMM, the per-element rules) must report it, and θ is restored."""
    X = np.ones((batch, 2))
    y = np.ones(batch)
    net = cb.Network(2, [cb.Dense(3, "relu"), cb.Dense(1)], loss="mse", dtype=dtype, seed=0)
    net.theta[:] = np.abs(net.theta) + 0.5        # every unit active: all get a gradient
    before = net.theta.copy()
    huge = float(np.finfo(dtype).max)
    with pytest.raises(cb.DivergenceError, match="the parameters became NaN or infinite"):
        net.fit(X, -y * 1e3, optimizer=STEP_RULES[name](huge), epochs=1, batch_size=batch)
    np.testing.assert_array_equal(net.theta, before)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_a_batch1_loop_that_overflows_mid_chunk_is_caught_and_undone(dtype, name):
    """A one-example loop (batch 1) that overflows in the first of several
    steps of one engine call: the fit stops and θ is restored."""
    X = np.ones((8, 2))
    y = np.ones(8)
    net = cb.Network(2, [cb.Dense(3, "relu"), cb.Dense(1)], loss="mse", dtype=dtype, seed=0)
    net.theta[:] = np.abs(net.theta) + 0.5
    before = net.theta.copy()
    huge = float(np.finfo(dtype).max)
    with pytest.raises(cb.DivergenceError, match="became NaN or infinite"):
        net.fit(X, -y * 1e3, optimizer=STEP_RULES[name](huge), epochs=1, batch_size=1,
                shuffle=False)
    np.testing.assert_array_equal(net.theta, before)


@pytest.mark.parametrize("name", list(STEP_RULES))
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("bad_batch", [0, 1, 2])
def test_the_rollback_point_kept_by_the_first_update_is_whole(dtype, name, batch, bad_batch):
    """The engine's first update of a fit saves θ and the state as it reads
    them (a tile at a time); a loss that becomes infinite at batch bad_batch
    (0: before any update, nothing saved; later: after updates) must bring
    back θ, the state, the step count and the stream bitwise. Layers of
    several tiles with a ragged last one; every update path and batch size."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(4 * batch, 64)), rng.normal(size=4 * batch)
    net = cb.Network(64, [cb.Dense(97, "identity"), cb.Dense(1)], dtype=dtype, seed=0)
    opt = STEP_RULES[name](1e-3)
    net.fit(X, y, optimizer=opt, epochs=2, batch_size=batch)      # non-trivial state first
    before = state_of(net, opt)
    X_bad = X.copy()
    X_bad[bad_batch * batch:(bad_batch + 1) * batch] = float(np.finfo(dtype).max) ** 0.75
    with pytest.raises(cb.DivergenceError, match="parameters before this fit were restored"):
        net.fit(X_bad, y, optimizer=opt, epochs=1, batch_size=batch, shuffle=False)
    assert_same_state(state_of(net, opt), before)
    # A later fit keeps its own rollback point: the one it starts from.
    net.fit(X, y, optimizer=opt, epochs=1, batch_size=batch)
    after = state_of(net, opt)
    with pytest.raises(cb.DivergenceError):
        net.fit(X_bad, y, optimizer=opt, epochs=1, batch_size=batch, shuffle=False)
    assert_same_state(state_of(net, opt), after)


def test_divergence_in_a_later_epoch_restores_the_state_before_the_fit():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 2)), rng.normal(size=40)
    net = cb.Network(2, [cb.Dense(4, "tanh"), cb.Dense(1)], dtype="float64", seed=0)
    opt = cb.SGD(lr=1e-2)
    theta0, rng0 = net.theta.copy(), net.rng_state.copy()
    epochs_seen = []

    def damage(epoch, logs):
        epochs_seen.append(epoch)
        if epoch == 2:
            net.theta[0] = np.inf   # θ damaged from outside is caught at the next chunk

    with pytest.raises(cb.DivergenceError):
        net.fit(X, y, optimizer=opt, epochs=10, batch_size=8, callbacks=[damage])
    assert epochs_seen == [0, 1, 2]
    np.testing.assert_array_equal(net.theta, theta0)
    np.testing.assert_array_equal(net.rng_state, rng0)
    assert opt.t == 0 and not opt.state.any()


# ---- extreme values ---------------------------------------------------------

def one_layer(dtype, out, loss, bias):
    net = cb.Network(2, [cb.Dense(len(bias), out)], loss=loss, dtype=dtype, seed=0)
    net.theta[...] = 0
    net.params[0][1][...] = bias
    return net


@pytest.mark.parametrize("label", [0, 1, 2])
def test_softmax_cross_entropy_with_logits_of_1e4(dtype, label):
    net = one_layer(dtype, "softmax", "cross_entropy", [1e4, -1e4, 0.0])
    X = np.zeros((1, 2))
    loss, grad = net.loss_and_grad(X, [label])
    assert loss == pytest.approx([0.0, 2e4, 1e4][label], abs=1e-3)
    p = np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(grad[-3:], p - np.eye(3)[label], atol=1e-6)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(net.predict(X), [p], atol=1e-6)


@pytest.mark.parametrize("z", [1000.0, -1000.0])
@pytest.mark.parametrize("target", [0.0, 1.0])
def test_sigmoid_binary_cross_entropy_at_1000(dtype, z, target):
    net = one_layer(dtype, "sigmoid", "binary_cross_entropy", [z])
    loss, grad = net.loss_and_grad(np.zeros((1, 2)), [[target]])
    wrong = (z > 0) != (target == 1)
    assert loss == pytest.approx(1000.0 if wrong else 0.0, abs=1e-3)
    assert grad[-1] == pytest.approx((1.0 if z > 0 else 0.0) - target, abs=1e-6)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("out,loss", [("sigmoid", "mse"), ("tanh", "huber"),
                                      ("softplus", "mse"), ("identity", "huber")])
def test_saturated_regression_outputs_are_finite(dtype, out, loss):
    for z in (1000.0, -1000.0, 1e4, -1e4):
        net = one_layer(dtype, out, loss, [z])
        value, grad = net.loss_and_grad(np.zeros((1, 2)), [[0.5]])
        assert np.isfinite(value) and np.isfinite(grad).all(), (out, loss, z)


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_hidden_activations_at_plus_minus_1000_are_finite(dtype, activation):
    net = cb.Network(2, [cb.Dense(2, activation), cb.Dense(3, "softmax")], dtype=dtype,
                     seed=0)
    W, b = net.params[0]
    W[...] = 0
    b[...] = [1000.0, -1000.0]
    X = np.zeros((2, 2))
    loss, grad = net.loss_and_grad(X, [0, 2])
    assert np.isfinite(loss) and np.isfinite(grad).all()
    for record in net.trace(X[0], 1):
        assert all(np.isfinite(arr).all() for arr in record)
    assert np.isfinite(net.predict(X)).all()


def test_the_python_api_warns_when_the_loss_blows_up():
    """As the command line does: the last epoch's loss 100x the first's is a LossWarning
    that names the learning rate (here raised to 1e4 after the first epoch)."""
    import warnings

    from cbackprop.network import LossWarning

    X, y = cb.datasets.load_digits()
    net = cb.Network(64, [cb.Dense(32, "relu"), cb.Dense(10, "softmax")], seed=0)
    opt = cb.SGD(lr=0.1)

    def raise_lr(epoch, logs):
        opt.lr = 1e4

    with pytest.warns(LossWarning, match="smaller than lr=10000"):
        net.fit(X / 16, y, optimizer=opt, epochs=3, callbacks=[raise_lr])
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossWarning)
        net = cb.Network(64, [cb.Dense(32, "relu"), cb.Dense(10, "softmax")], seed=0)
        net.fit(X / 16, y, optimizer=cb.SGD(lr=0.1), epochs=3)
