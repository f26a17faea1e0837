"""cb.fit_many: K networks on one pass over the data, each trained as its own fit would."""

import warnings

import numpy as np
import pytest
import scipy.sparse

import cbackprop as cb
from cbackprop._core import _engine

RNG = np.random.default_rng(0)
X = RNG.standard_normal((203, 12))
Y_CLASS = RNG.integers(0, 3, 203)
Y_REG = RNG.standard_normal((203, 2))

OPTIMIZERS = {
    "sgd": lambda lr=0.05: cb.SGD(lr=lr),
    "momentum": lambda lr=0.05: cb.SGD(lr=lr, momentum=0.9),
    "nesterov": lambda lr=0.05: cb.SGD(lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda lr=0.01: cb.Adam(lr=lr),
    "adamw": lambda lr=0.01: cb.AdamW(lr=lr, weight_decay=0.05),
    "rmsprop": lambda lr=0.01: cb.RMSprop(lr=lr, momentum=0.5),
}


def make(seed, dtype="float64", dropout=0.0, alpha=0.0, loss="cross_entropy"):
    out = cb.Dense(3, "softmax") if loss == "cross_entropy" else cb.Dense(2, "identity")
    return cb.Network(12, [cb.Dense(16, "tanh", dropout=dropout), cb.Dense(8, "relu"), out],
                      loss=loss, dtype=dtype, seed=seed, alpha=alpha)


def alone(net, opt, epochs, y=Y_CLASS, **kw):
    net.fit(X, y, optimizer=opt, epochs=epochs, shuffle=False, batch_size=16, **kw)
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_one_network_is_bitwise_its_own_fit(name, dtype):
    banked, single = make(1, dtype, dropout=0.2, alpha=1e-3), make(1, dtype, dropout=0.2,
                                                                    alpha=1e-3)
    hist = cb.fit_many([banked], X, Y_CLASS, OPTIMIZERS[name](), epochs=3, batch_size=16,
                       shuffle=False, n_threads=1)
    ref = single.fit(X, Y_CLASS, optimizer=OPTIMIZERS[name](), epochs=3, batch_size=16,
                     shuffle=False)
    assert np.array_equal(banked.theta, single.theta)
    assert np.array_equal(banked.rng_state, single.rng_state)      # dropout drew the same
    # Loss sums are grouped by chunks, whose size follows the clock: equal to rounding.
    assert hist[0]["loss"] == pytest.approx(ref["loss"], rel=1e-12)
    assert hist[0]["accuracy"] == ref["accuracy"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_many_networks_equal_their_own_fits(name, dtype):
    # Per-network learning rates and alphas: the first layer's per-network step.
    lrs = [0.01, 0.02, 0.005, 0.01]
    banked = [make(s, dtype, alpha=a) for s, a in zip(range(4), [0, 1e-3, 0, 1e-2])]
    single = [make(s, dtype, alpha=a) for s, a in zip(range(4), [0, 1e-3, 0, 1e-2])]
    opts = [OPTIMIZERS[name](lr) for lr in lrs]
    hists = cb.fit_many(banked, X, Y_CLASS, opts, epochs=3, batch_size=16, shuffle=False,
                        n_threads=1)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for b, s, lr, h in zip(banked, single, lrs, hists, strict=True):
        ref = s.fit(X, Y_CLASS, optimizer=OPTIMIZERS[name](lr), epochs=3, shuffle=False,
                    batch_size=16)
        np.testing.assert_allclose(b.theta, s.theta, rtol=tol, atol=tol)
        np.testing.assert_allclose(h["loss"], ref["loss"], rtol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shared_hyperparameters_take_the_wide_step(dtype):
    # One optimizer for all (copied): one wide fused step for the first layer.
    banked, single = [make(s, dtype) for s in range(5)], [make(s, dtype) for s in range(5)]
    cb.fit_many(banked, X, Y_CLASS, cb.SGD(lr=0.05, momentum=0.9),
                epochs=2, batch_size=16, shuffle=False, n_threads=1)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for b, s in zip(banked, single, strict=True):
        alone(s, cb.SGD(lr=0.05, momentum=0.9), 2)
        np.testing.assert_allclose(b.theta, s.theta, rtol=tol, atol=tol)


def test_regression_and_shared_sample_weight():
    w = RNG.uniform(0, 2, X.shape[0])
    w[::7] = 0                                # dropped, as the network's own fit drops them
    banked = [make(s, loss="mse") for s in range(3)]
    single = [make(s, loss="mse") for s in range(3)]
    cb.fit_many(banked, X, Y_REG, cb.Adam(lr=0.01), epochs=2, batch_size=16,
                sample_weight=w, shuffle=False, n_threads=1)
    for b, s in zip(banked, single, strict=True):
        alone(s, cb.Adam(lr=0.01), 2, y=Y_REG, sample_weight=w)
        np.testing.assert_allclose(b.theta, s.theta, rtol=1e-10, atol=1e-12)


def test_shuffled_order_comes_from_seed():
    banked, single = make(3), make(3)
    epochs, seed = 3, 42
    cb.fit_many([banked], X, Y_CLASS, cb.SGD(lr=0.05), epochs=epochs, batch_size=16,
                seed=seed, n_threads=1)
    # The same order, epoch by epoch, given to the network's own fit.
    order = np.arange(X.shape[0], dtype=np.intp)
    rng = np.random.SeedSequence(seed).generate_state(1, np.uint64)
    opt = cb.SGD(lr=0.05)
    for _ in range(epochs):
        _engine.shuffle(order, rng)
        single.fit(X[order], Y_CLASS[order], optimizer=opt, batch_size=16, shuffle=False)
    assert np.array_equal(banked.theta, single.theta)
    again = make(3)
    cb.fit_many([again], X, Y_CLASS, cb.SGD(lr=0.05), epochs=epochs, batch_size=16,
                seed=seed, n_threads=1)
    assert np.array_equal(again.theta, banked.theta)


def test_per_network_weights_leave_rows_out():
    # Network 1 never sees rows of weight 0: their targets cannot change it.
    w = np.ones((2, X.shape[0]))
    w[1, :100] = 0
    y_other = Y_CLASS.copy()
    y_other[:100] = (y_other[:100] + 1) % 3
    a, b = [make(0), make(1)], [make(0), make(1)]
    cb.fit_many(a, X, Y_CLASS, cb.Adam(lr=0.01), epochs=2, sample_weight=w, n_threads=1, seed=0)
    cb.fit_many(b, X, y_other, cb.Adam(lr=0.01), epochs=2, sample_weight=w, n_threads=1, seed=0)
    assert not np.allclose(a[0].theta, b[0].theta)
    np.testing.assert_array_equal(a[1].theta, b[1].theta)
    # With positive weights, a network's row of weights acts as its own fit's sample_weight.
    w = RNG.uniform(0.5, 2, (1, X.shape[0]))
    banked, single = make(4), make(4)
    cb.fit_many([banked], X, Y_CLASS, cb.Adam(lr=0.01), epochs=2, batch_size=16,
                sample_weight=w, shuffle=False, n_threads=1)
    alone(single, cb.Adam(lr=0.01), 2, sample_weight=w[0])
    assert np.array_equal(banked.theta, single.theta)


def test_each_network_stops_on_its_own():
    banked = [make(s) for s in range(3)]

    def stop_network_1(epoch, logs):
        return logs["network"] == 1 and epoch == 1

    hists = cb.fit_many(banked, X, Y_CLASS, cb.SGD(lr=0.05), epochs=4, batch_size=16,
                        shuffle=False, n_threads=1, callbacks=[stop_network_1])
    assert [len(h.epoch) for h in hists] == [4, 2, 4]
    assert [h.stop_reason for h in hists] == [None, "callback", None]
    for s, epochs in zip(range(3), [4, 2, 4], strict=True):
        np.testing.assert_allclose(banked[s].theta, alone(make(s), cb.SGD(lr=0.05),
                                                          epochs).theta, rtol=1e-10, atol=1e-12)


def test_a_diverging_network_is_restored_and_the_others_go_on():
    banked = [make(s) for s in range(3)]
    before = banked[1].theta.copy()
    opts = [cb.SGD(lr=0.05), cb.SGD(lr=1e300), cb.SGD(lr=0.05)]
    with pytest.warns(RuntimeWarning, match="network 1: .*NaN or infinite"):
        hists = cb.fit_many(banked, X, Y_CLASS, opts, epochs=3, batch_size=16, shuffle=False,
                            n_threads=1)
    assert np.array_equal(banked[1].theta, before)
    assert opts[1].t == 0
    assert hists[1].stop_reason == "diverged"
    assert [len(h.epoch) for h in hists] == [3, 0, 3]
    for s in (0, 2):
        np.testing.assert_allclose(banked[s].theta, alone(make(s), cb.SGD(lr=0.05), 3).theta,
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_split_the_networks_with_the_same_results(dtype):
    one, two = [make(s, dtype) for s in range(6)], [make(s, dtype) for s in range(6)]
    cb.fit_many(one, X, Y_CLASS, cb.Adam(lr=0.01), epochs=2, n_threads=1, seed=1)
    cb.fit_many(two, X, Y_CLASS, cb.Adam(lr=0.01), epochs=2, n_threads=2, seed=1)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a.theta, b.theta, rtol=tol, atol=tol)


def test_validation_figures_per_network():
    banked = [make(s) for s in range(2)]
    hists = cb.fit_many(banked, X, Y_CLASS, cb.Adam(lr=0.01), epochs=2,
                        validation_data=(X[:50], Y_CLASS[:50]), n_threads=1)
    for net, h in zip(banked, hists, strict=True):
        final = net.evaluate(X[:50], Y_CLASS[:50])
        assert h["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-12)
        assert h["val_accuracy"][-1] == pytest.approx(final["accuracy"])
        assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "time"}


def test_optimizer_state_carries_over_between_calls():
    once, twice = make(0), make(0)
    opt = cb.Adam(lr=0.01)
    cb.fit_many([once], X, Y_CLASS, [cb.Adam(lr=0.01)], epochs=4, shuffle=False, n_threads=1)
    cb.fit_many([twice], X, Y_CLASS, [opt], epochs=2, shuffle=False, n_threads=1)
    cb.fit_many([twice], X, Y_CLASS, [opt], epochs=2, shuffle=False, n_threads=1)
    assert opt.t == 4 * 7
    assert np.array_equal(once.theta, twice.theta)


def test_verbose_prints_one_line_per_epoch(capsys):
    cb.fit_many([make(0), make(1)], X, Y_CLASS, cb.Adam(), epochs=2, verbose="lines")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "networks 2.0000" in lines[0] and "best_loss" in lines[0]


@pytest.mark.parametrize("change, message", [
    (lambda nets: nets.append(cb.Network(13, [cb.Dense(16, "tanh"), cb.Dense(8, "relu"),
                                              cb.Dense(3, "softmax")])),
     r"networks\[2\] has n_inputs 13, but networks\[0\] has 12"),
    (lambda nets: nets.append(cb.Network(12, [cb.Dense(16, "tanh"), cb.Dense(9, "relu"),
                                              cb.Dense(3, "softmax")])),
     r"networks\[2\] has layer sizes \[16, 9, 3\]"),
    (lambda nets: nets.append(make(5, dtype="float32")), r"networks\[2\] has dtype 'float32'"),
    (lambda nets: nets.append(cb.Network(12, [cb.Dense(16, "relu"), cb.Dense(8, "relu"),
                                              cb.Dense(3, "softmax")])),
     r"networks\[2\] has activations"),
    (lambda nets: nets.append(nets[0]), r"networks\[2\] is networks\[0\]"),
    (lambda nets: nets.append("net"), r"networks\[2\] must be a cb.Network"),
])
def test_networks_that_cannot_share_a_pass_are_named(change, message):
    nets = [make(0), make(1)]
    change(nets)
    before = [n.theta.copy() for n in nets if isinstance(n, cb.Network)]
    with pytest.raises((ValueError, TypeError), match=message):
        cb.fit_many(nets, X, Y_CLASS, cb.Adam(), epochs=1)
    after = [n.theta for n in nets if isinstance(n, cb.Network)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(optimizers=[cb.Adam()]), ValueError, "optimizers has 1 entries for 2 networks"),
    (dict(optimizers=[cb.Adam(), cb.SGD()]), ValueError, "one kind for all"),
    (dict(optimizers="adam"), TypeError, "optimizers must be a cb.Optimizer"),
    (dict(sample_weight=np.ones((3, 203))), ValueError, r"\(n_networks, n_samples\) = \(2, 203\)"),
    (dict(sample_weight=np.vstack([np.ones(203), np.zeros(203)])), ValueError,
     r"sample_weight\[1\] has no positive weight"),
    (dict(sample_weight=np.full((2, 203), np.nan)), ValueError, "NaN"),
    (dict(X=scipy.sparse.csr_matrix(X)), TypeError, "dense X only"),
    (dict(X=X[:, :5]), ValueError, "features per row"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(seed="x"), TypeError, "seed"),
])
def test_bad_arguments_raise_and_change_nothing(kwargs, error, message):
    nets = [make(0), make(1)]
    before = [n.theta.copy() for n in nets]
    args = dict(X=X, y=Y_CLASS, optimizers=cb.Adam())
    args.update(kwargs)
    with pytest.raises(error, match=message):
        cb.fit_many(nets, args.pop("X"), args.pop("y"), args.pop("optimizers"), **args)
    assert all(np.array_equal(n.theta, b) for n, b in zip(nets, before, strict=True))


def test_the_same_optimizer_twice_and_no_hidden_layer_are_refused():
    opt = cb.Adam()
    with pytest.raises(ValueError, match=r"optimizers\[1\] is optimizers\[0\]"):
        cb.fit_many([make(0), make(1)], X, Y_CLASS, [opt, opt])
    flat = [cb.Network(12, [cb.Dense(3, "softmax")], seed=s) for s in range(2)]
    with pytest.raises(ValueError, match="at least one hidden layer"):
        cb.fit_many(flat, X, Y_CLASS, cb.Adam())


def test_networks_are_free_again_after_a_failed_call():
    nets = [make(0), make(1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning):
            cb.fit_many(nets, X, Y_CLASS, [cb.SGD(lr=1e300), cb.SGD(lr=1e300)], epochs=1,
                        shuffle=False)
    nets[0].fit(X, Y_CLASS, epochs=1)             # not left claimed


@pytest.mark.parametrize("option,message", [(dict(health=True), "health figures"),
                                            (dict(checkpoint="x.ckpt"), "no checkpoints")])
def test_what_a_bank_cannot_do_is_refused_saying_so(option, message):
    nets = [cb.Network(4, [cb.Dense(3, "relu"), cb.Dense(2, "softmax")], seed=s)
            for s in range(2)]
    theta = [n.theta.copy() for n in nets]
    with pytest.raises(ValueError, match=message):
        cb.fit_many(nets, np.ones((6, 4)), np.arange(6) % 2, cb.SGD(), **option)
    for net, before in zip(nets, theta):
        np.testing.assert_array_equal(net.theta, before)
