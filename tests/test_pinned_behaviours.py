"""Behaviours of the long-run, many-network and sparse rooms that a planted bug
once survived the whole suite with (issue 29, part 2); the MPI one is in
tests/test_distributed.py (shards of 14 and 15 rows at batch 7).
Each test here was seen to fail with its bug planted."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from chunks import interrupt_after

import cbackprop as cb


def classification(n=90, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, 3, n)


def small_net(dtype="float64", hidden="relu", dropout=0.2, seed=4):
    return cb.Network(5, [cb.Dense(9, hidden, dropout=dropout), cb.Dense(3, "softmax")],
                      dtype=dtype, seed=seed, alpha=0.01, n_threads=1)


def stop_after_chunks(monkeypatch, chunks):
    """One batch per chunk; the fit stops itself after `chunks` of them."""
    interrupt_after(monkeypatch, chunks, lambda session: session.stop())


# 1 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("chunks", [12, 17])          # at an epoch boundary; inside epoch 2
def test_an_unshuffled_run_resumed_ends_as_the_uninterrupted_one(chunks, tmp_path, monkeypatch):
    X, y = classification()
    ref, ref_opt = small_net(), cb.Adam(lr=0.01)
    ref.fit(X, y, optimizer=ref_opt, epochs=4, batch_size=8, shuffle=False)
    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        stop_after_chunks(m, chunks)
        small_net().fit(X, y, optimizer=cb.Adam(lr=0.01), epochs=4, batch_size=8,
                        shuffle=False, checkpoint=path)
    run = cb.resume(path)
    assert run.optimizer.t == chunks
    run.fit(X, y)
    np.testing.assert_array_equal(run.network.theta, ref.theta)
    np.testing.assert_array_equal(run.optimizer.state, ref_opt.state)


# 2 ---------------------------------------------------------------------------------

def test_resuming_with_other_positive_sample_weights_is_refused(tmp_path):
    X, y = classification()
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    path = tmp_path / "run.ckpt"
    small_net().fit(X, y, optimizer=cb.SGD(lr=0.1), epochs=3, batch_size=8,
                    sample_weight=w, checkpoint=path, callbacks=[lambda e, logs: e == 0])
    before = path.read_bytes()
    for other in (w * 1.5, np.ones_like(w), None, np.roll(w, 1)):
        run = cb.resume(path)
        theta = run.network.theta.copy()
        with pytest.raises(ValueError, match="not the data"):
            run.fit(X, y, sample_weight=other)
        np.testing.assert_array_equal(run.network.theta, theta)
    assert path.read_bytes() == before
    assert len(cb.resume(path).fit(X, y, sample_weight=w).epoch) == 3


# 3 ---------------------------------------------------------------------------------

def test_each_epochs_health_covers_that_epoch_alone():
    """Epoch e's figures equal those of a one-epoch health fit started from the state
    the run had after epoch e − 1 (θ, random stream, optimizer)."""
    X, y = classification()
    net, opt = small_net(hidden="tanh"), cb.Adam(lr=0.01)
    states = []

    def keep_state(epoch, logs):
        states.append((net.theta.copy(), net.rng_state.copy(), opt.state_dict()))

    history = net.fit(X, y, optimizer=opt, epochs=3, batch_size=8, shuffle=False,
                      health=True, callbacks=[keep_state])
    for epoch in (1, 2):
        theta, rng, state = states[epoch - 1]
        again, again_opt = small_net(hidden="tanh"), cb.Adam()
        again.theta = theta
        again.rng_state[...] = rng
        again_opt.load_state_dict(state)
        one = again.fit(X, y, optimizer=again_opt, epochs=1, batch_size=8, shuffle=False,
                        health=True)["health"]
        mine = [r for r in history["health"] if r["epoch"] == epoch]
        assert len(mine) == len(one) == 2
        for a, b in zip(mine, one, strict=True):
            for key in ("grad_norm", "weight_norm", "update_ratio", "saturated_fraction"):
                assert a[key] == (None if b[key] is None else pytest.approx(
                    b[key], rel=1e-12, abs=1e-15)), (epoch, key)


# 4 ---------------------------------------------------------------------------------

def test_saturated_fraction_of_a_partly_saturated_layer():
    """4 of 10 sigmoid units pushed far into saturation (z ≈ 60): 0.4 saturated."""
    X, y = classification(n=64, d=6)
    net = cb.Network(6, [cb.Dense(10, "sigmoid"), cb.Dense(3, "softmax")], seed=0,
                     dtype="float64")
    W, b = net.params[0]
    W[...] *= 0.1
    b[:4] = 60.0
    history = net.fit(X, y, optimizer=cb.SGD(lr=1e-3), epochs=2, batch_size=8, health=True)
    assert [r["saturated_fraction"] for r in history["health"] if r["layer"] == 0] == [0.4,
                                                                                      0.4]
    assert "units are saturated" not in history.health_table()     # under the 50 % warning


# fit_many --------------------------------------------------------------------------

RNG = np.random.default_rng(0)
XM = RNG.standard_normal((203, 12))
YM = RNG.integers(0, 3, 203)


def bank_net(seed, dtype="float64"):
    return cb.Network(12, [cb.Dense(16, "tanh"), cb.Dense(8, "relu"), cb.Dense(3, "softmax")],
                      dtype=dtype, seed=seed)


# 5 ---------------------------------------------------------------------------------

def test_per_network_weights_on_two_threads_with_a_network_that_drops_out():
    """Two threads split the bank, each with its members' rows of weights; when a
    network drops out (diverges) the groups are rebuilt and keep the right rows."""
    k = 5
    w = RNG.uniform(0.5, 2.0, (k, XM.shape[0]))
    for i in range(k):
        w[i, i::k] = 0                           # fold-style: each leaves other rows out
    lrs = [0.01, 1e300, 0.02, 0.005, 0.01]       # network 1 diverges in epoch 0
    banked = [bank_net(s) for s in range(k)]
    before = banked[1].theta.copy()
    with pytest.warns(RuntimeWarning, match="network 1: "):
        hists = cb.fit_many(banked, XM, YM, [cb.Adam(lr=lr) for lr in lrs], epochs=3,
                            batch_size=16, sample_weight=w, shuffle=False, n_threads=2)
    assert hists[1].stop_reason == "diverged"
    np.testing.assert_array_equal(banked[1].theta, before)
    for i in (0, 2, 3, 4):
        assert hists[i].stop_reason is None and len(hists[i].epoch) == 3
        alone = bank_net(i)
        # The network's own fit drops its zero-weight rows, so its batches differ: the
        # bank's equal a fit on the rows in the bank's batches, weights kept.
        ref = cb.fit_many([alone], XM, YM, [cb.Adam(lr=lrs[i])], epochs=3, batch_size=16,
                          sample_weight=w[i:i + 1], shuffle=False, n_threads=1)
        np.testing.assert_allclose(banked[i].theta, alone.theta, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hists[i]["loss"], ref[0]["loss"], rtol=1e-10)


# 6 ---------------------------------------------------------------------------------

def test_a_callback_changing_one_networks_learning_rate_takes_effect():
    opts = [cb.SGD(lr=0.05, momentum=0.9), cb.SGD(lr=0.05, momentum=0.9)]

    def slow_down_network_1(epoch, logs):
        if logs["network"] == 1 and epoch == 0:
            opts[1].lr = 0.001

    banked = [bank_net(0), bank_net(1)]
    cb.fit_many(banked, XM, YM, opts, epochs=3, batch_size=16, shuffle=False, n_threads=1,
                callbacks=[slow_down_network_1])
    for i, later_lr in ((0, 0.05), (1, 0.001)):
        alone, opt = bank_net(i), cb.SGD(lr=0.05, momentum=0.9)
        alone.fit(XM, YM, optimizer=opt, epochs=1, batch_size=16, shuffle=False)
        opt.lr = later_lr
        alone.fit(XM, YM, optimizer=opt, epochs=2, batch_size=16, shuffle=False)
        np.testing.assert_allclose(banked[i].theta, alone.theta, rtol=1e-10, atol=1e-12)


# 7 ---------------------------------------------------------------------------------

def test_theta_overflowing_on_the_last_batch_with_a_finite_loss_is_divergence():
    """One batch per epoch; network 1's lr becomes 1e300 (inf in float32) after epoch
    0, so epoch 1's only batch has a finite loss and its update makes θ infinite:
    no later loss shows it, the check of θ does."""
    opts = [cb.SGD(lr=0.05), cb.SGD(lr=0.05), cb.SGD(lr=0.05)]
    banked = [bank_net(s, "float32") for s in range(3)]
    before = banked[1].theta.copy()

    def blow_up(epoch, logs):
        if logs["network"] == 1 and epoch == 0:
            opts[1].lr = 1e300

    with pytest.warns(RuntimeWarning, match="network 1: .*the parameters became NaN or "
                                            "infinite.* at epoch 1"):
        hists = cb.fit_many(banked, XM, YM, opts, epochs=2, batch_size=XM.shape[0],
                            shuffle=False, n_threads=1, callbacks=[blow_up])
    assert np.isfinite(hists[1]["loss"]).all() and len(hists[1].epoch) == 1
    assert hists[1].stop_reason == "diverged"
    np.testing.assert_array_equal(banked[1].theta, before)
    assert opts[1].t == 0
    assert [h.stop_reason for h in hists] == [None, "diverged", None]
    assert all(np.isfinite(net.theta).all() for net in banked)


# 9 ---------------------------------------------------------------------------------

def test_a_sparse_column_index_equal_to_n_features_is_refused():
    rng = np.random.default_rng(0)
    X = sp.random(20, 30, density=0.2, format="csr", random_state=0)
    y = rng.integers(0, 3, 20)
    net = cb.Network(30, [cb.Dense(4, "relu"), cb.Dense(3, "softmax")], seed=0)
    indices = X.indices.copy()
    indices[-1] = 30                              # one past the last column, exactly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = sp.csr_matrix((X.data, indices, X.indptr), shape=X.shape)
        bad_csc = sp.csc_matrix((X.T.tocsr().data, X.T.tocsr().indices.copy(),
                                 X.T.tocsr().indptr), shape=X.shape)
    bad_csc.indices[-1] = 20                      # a CSC's row index equal to n_rows
    theta = net.theta.copy()
    for Xbad in (bad, bad_csc):
        for call in (lambda X=Xbad: net.fit(X, y, optimizer=cb.SGD()),
                     lambda X=Xbad: net.predict(X), lambda X=Xbad: net.evaluate(X, y)):
            with pytest.raises(ValueError, match="index lies outside its shape"):
                call()
    np.testing.assert_array_equal(net.theta, theta)


# 10 --------------------------------------------------------------------------------

def test_a_batch_that_weighs_nothing_for_one_network_is_sat_out_not_diverged():
    """Fold-style weights: network 1 weighs rows 0..15 (the first batch, unshuffled)
    at 0. It sits that batch out, every epoch, and trains on the others exactly as a
    fit on rows 16.. does; it is not reported as diverged."""
    w = np.ones((2, XM.shape[0]))
    w[1, :16] = 0
    banked, opts = [bank_net(0), bank_net(1)], [cb.Adam(lr=0.01), cb.Adam(lr=0.01)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        hists = cb.fit_many(banked, XM, YM, opts, epochs=3, batch_size=16, sample_weight=w,
                            shuffle=False, n_threads=1)
    assert [h.stop_reason for h in hists] == [None, None]
    assert [len(h.epoch) for h in hists] == [3, 3]
    steps = -(-XM.shape[0] // 16)
    assert (opts[0].t, opts[1].t) == (3 * steps, 3 * (steps - 1))
    alone = bank_net(1)
    alone.fit(XM[16:], YM[16:], optimizer=cb.Adam(lr=0.01), epochs=3, batch_size=16,
              shuffle=False)
    np.testing.assert_allclose(banked[1].theta, alone.theta, rtol=1e-10, atol=1e-12)
