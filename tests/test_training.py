"""fit / predict / evaluate: learning, determinism, history, divergence, files."""

import pickle

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cbackprop as cb


@pytest.fixture(scope="module")
def digits():
    X, y = cb.datasets.load_digits()
    return cb.datasets.train_test_split(X / 16.0, y, test_size=0.25, seed=0)


def digits_net(dtype="float32", seed=0):
    return cb.Network(64, [cb.Dense(64, "relu"), cb.Dense(10, "softmax")],
                      loss="cross_entropy", dtype=dtype, seed=seed)


def test_embedded_digits():
    X, y = cb.datasets.load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.min() == 0 and X.max() == 16
    counts = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    np.testing.assert_array_equal(np.bincount(y), counts)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_digits_reaches_97_percent(digits, dtype):
    X_train, X_test, y_train, y_test = digits
    net = digits_net(dtype)
    hist = net.fit(X_train, y_train, optimizer=cb.SGD(lr=0.1, momentum=0.9), epochs=30,
                   batch_size=32, validation_data=(X_test, y_test))
    accuracy = net.evaluate(X_test, y_test)["accuracy"]
    assert accuracy >= 0.97
    assert hist.history["val_accuracy"][-1] == accuracy
    assert hist.history["loss"][-1] < hist.history["loss"][0] / 10
    assert len(hist.history["time"]) == 30
    # evaluate's accuracy is predict's argmax accuracy
    assert accuracy == np.mean(net.predict(X_test).argmax(axis=1) == y_test)


def test_same_seed_gives_bitwise_identical_theta(digits):
    X_train, _, y_train, _ = digits
    with threadpool_limits(1):
        runs = []
        for _ in range(2):
            net = cb.Network(64, [cb.Dense(32, "tanh", dropout=0.1), cb.Dense(10, "softmax")],
                             seed=7)
            net.fit(X_train, y_train, optimizer=cb.Adam(), epochs=3, batch_size=16)
            net.fit(X_train, y_train, optimizer=cb.SGD(0.01), epochs=1)   # fits continue the stream
            runs.append(net.theta.copy())
        other = cb.Network(64, [cb.Dense(32, "tanh", dropout=0.1), cb.Dense(10, "softmax")],
                           seed=8)
        other.fit(X_train, y_train, optimizer=cb.Adam(), epochs=3, batch_size=16)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][: other.theta.size], other.theta)


def test_fit_updates_theta_in_place_and_views_stay_valid():
    net = cb.Network(3, [cb.Dense(4, "relu"), cb.Dense(1)], seed=0)
    theta, W = net.theta, net.params[0][0]
    before = W.copy()
    net.fit(np.random.default_rng(0).normal(size=(20, 3)), np.ones(20), epochs=2)
    assert net.theta is theta
    assert not np.array_equal(W, before)
    assert np.shares_memory(W, net.theta)


def test_loss_does_not_depend_on_batch_size():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(64, 4)), rng.normal(size=(64, 2))
    net = cb.Network(4, [cb.Dense(5, "tanh"), cb.Dense(2)], dtype="float64", seed=0)
    full = net.evaluate(X, y)["loss"]
    halves = np.mean([net.evaluate(X[:32], y[:32])["loss"], net.evaluate(X[32:], y[32:])["loss"]])
    assert full == pytest.approx(halves, rel=1e-12)
    # one full-batch SGD step equals θ − lr·∇L(θ)
    _, g = net.loss_and_grad(X, y)
    expected = net.theta - 0.1 * g
    net.fit(X, y, optimizer=cb.SGD(lr=0.1), epochs=1, batch_size=64, shuffle=False)
    np.testing.assert_allclose(net.theta, expected, rtol=1e-12)


def test_dropout_is_off_at_predict_and_on_in_training():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 6)), rng.integers(0, 3, 32)
    net = cb.Network(6, [cb.Dense(16, "relu", dropout=0.5), cb.Dense(3, "softmax")], seed=0)
    np.testing.assert_array_equal(net.predict(X), net.predict(X))
    plain = cb.Network(6, [cb.Dense(16, "relu"), cb.Dense(3, "softmax")], seed=0)
    np.testing.assert_array_equal(net.predict(X), plain.predict(X))
    net.fit(X, y, optimizer=cb.SGD(0.1), epochs=1, batch_size=32, shuffle=False)
    plain.fit(X, y, optimizer=cb.SGD(0.1), epochs=1, batch_size=32, shuffle=False)
    assert not np.allclose(net.theta, plain.theta)


def test_history_callbacks_and_stop():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, (40, 2))
    net = cb.Network(3, [cb.Dense(4, "relu"), cb.Dense(2, "sigmoid")], seed=0)
    seen = []
    hist = net.fit(X, y, epochs=10, validation_data=(X, y),
                   callbacks=[lambda epoch, logs: seen.append((epoch, logs)) or epoch == 2])
    assert [e for e, _ in seen] == [0, 1, 2] and hist.epoch == [0, 1, 2]
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    assert net.fit(X, y, epochs=0).epoch == []


def test_predict_is_2d_and_bounded_by_output_activation():
    net = cb.Network(2, [cb.Dense(3, "softmax")], seed=0)
    p = net.predict([[1.0, 2.0]])
    assert p.shape == (1, 3) and p.dtype == np.float32
    assert p.sum() == pytest.approx(1, rel=1e-6)
    reg = cb.Network(2, [cb.Dense(1)], seed=0)
    assert reg.predict(np.ones((5, 2))).shape == (5, 1)


def test_divergence_restores_the_parameters():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)) * 100, rng.normal(size=50) * 100
    net = cb.Network(3, [cb.Dense(8, "relu"), cb.Dense(1)], dtype="float32", seed=0)
    opt = cb.SGD(lr=10.0, momentum=0.9)
    before = net.theta.copy()
    with pytest.raises(cb.DivergenceError, match="restored"):
        net.fit(X, y, optimizer=opt, epochs=50, batch_size=5)
    np.testing.assert_array_equal(net.theta, before)
    assert opt.t == 0 and not opt.state.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip_is_bitwise(tmp_path, digits, dtype):
    X_train, X_test, y_train, _ = digits
    net = cb.Network(64, [cb.Dense(20, "gelu", dropout=0.1), cb.Dense(10, "softmax")],
                     dtype=dtype, seed=3, alpha=1e-4)
    net.fit(X_train, y_train, epochs=2)
    path = tmp_path / "model.safetensors"
    net.save(path)
    loaded = cb.load(path)
    assert loaded.get_config() == net.get_config()
    np.testing.assert_array_equal(loaded.theta, net.theta)
    np.testing.assert_array_equal(loaded.predict(X_test), net.predict(X_test))
    again = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(again.predict(X_test), net.predict(X_test))

    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(ValueError, match="not a valid cbackprop model"):
        cb.load(path)


def test_poisson_targets_must_be_non_negative_and_theta_stays():
    net = cb.Network(2, [cb.Dense(1)], loss=cb.Poisson(), seed=0)
    theta = net.theta.copy()
    with pytest.raises(ValueError, match="poisson loss are counts or rates, >= 0"):
        net.fit(np.ones((3, 2)), np.array([1.0, -1.0, 2.0]), optimizer=cb.SGD())
    np.testing.assert_array_equal(net.theta, theta)
    net.fit(np.ones((3, 2)), np.array([1.0, 0.0, 2.0]), optimizer=cb.SGD())
