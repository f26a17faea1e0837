"""Training health measured inside the engine (fit(health=True))."""

import numpy as np
import pytest

import cbackprop as cb
from cbackprop.optimizers import SGDVelocity

OPTIMIZERS = [
    lambda: cb.SGD(lr=0.1),
    lambda: cb.SGD(lr=0.05, momentum=0.9, weight_decay=0.01),
    lambda: SGDVelocity(lr=0.05, momentum=0.9, weight_decay=0.01),
    lambda: cb.Adam(lr=0.01),
    lambda: cb.RMSprop(lr=0.01, momentum=0.5),
]


def data(n=64, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, 3, n)


# (width, batch): batch 1 runs the one-example loops (∂W folded into the
# update), which a watched Adam step leaves for the GEMM (its figures read ∂W).
@pytest.mark.parametrize("width, batch", [(16, 4), (48, 1)])
@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=lambda f: repr(f()))
def test_health_figures_leave_training_bitwise_unchanged(make_opt, dtype, width, batch):
    X, y = data()
    nets = [cb.Network(6, [cb.Dense(width, "relu", dropout=0.1), cb.Dense(3, "softmax")],
                       dtype=dtype, seed=1, alpha=0.01, n_threads=1) for _ in range(2)]
    opts = [make_opt(), make_opt()]
    nets[0].fit(X, y, optimizer=opts[0], epochs=3, batch_size=batch)
    history = nets[1].fit(X, y, optimizer=opts[1], epochs=3, batch_size=batch, health=True)
    np.testing.assert_array_equal(nets[0].theta, nets[1].theta)
    np.testing.assert_array_equal(opts[0].state, opts[1].state)
    assert [(r["epoch"], r["layer"]) for r in history["health"]] == [
        (e, layer) for e in range(3) for layer in range(2)]


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=lambda f: repr(f()))
def test_one_step_figures_equal_loss_and_grad_and_the_update(make_opt, dtype):
    """A one-step epoch: grad_norm is ‖∇L(θ)‖ of each layer (loss_and_grad,
    L2 term included), update_ratio ‖Δθ‖/‖θ‖ of that layer, weight_norm ‖W‖."""
    X, y = data(n=16)
    net = cb.Network(6, [cb.Dense(8, "tanh"), cb.Dense(3, "softmax")], dtype=dtype, seed=2,
                     alpha=0.05)
    _, g = net.loss_and_grad(X, y)
    before = net.theta.copy()
    history = net.fit(X, y, optimizer=make_opt(), epochs=1, batch_size=16, health=True)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    offsets = np.cumsum([0] + [a * b + b for a, b in zip(net.sizes[:-1], net.sizes[1:])])
    for record, lo, hi in zip(history["health"], offsets[:-1], offsets[1:]):
        assert record["grad_norm"] == pytest.approx(np.linalg.norm(g[lo:hi]), rel=tol)
        ratio = np.linalg.norm(net.theta[lo:hi] - before[lo:hi]) / np.linalg.norm(
            net.theta[lo:hi])
        assert record["update_ratio"] == pytest.approx(ratio, rel=1e-4 if tol > 1e-6 else 1e-9)
        W = net.params[record["layer"]][0]
        assert record["weight_norm"] == pytest.approx(np.linalg.norm(W), rel=tol)


def test_a_relu_layer_with_a_large_negative_bias_is_all_dead():
    X, y = data()
    net = cb.Network(6, [cb.Dense(10, "relu"), cb.Dense(10, "relu"), cb.Dense(3, "softmax")],
                     seed=0, dtype="float64")
    net.params[0][1][...] = -100.0
    history = net.fit(X, y, optimizer=cb.SGD(lr=0.01), epochs=2, batch_size=8, health=True)
    first, second = history["health"][-3:-1]
    assert first["dead_fraction"] == 1.0
    assert second["dead_fraction"] == 1.0         # its inputs are 0, so z = b = 0: dead too
    assert history["health"][-1]["dead_fraction"] is None           # softmax
    assert "dead" in history.health_table() and "leaky_relu" in history.health_table()


def test_a_sigmoid_layer_fed_huge_inputs_is_saturated_and_gradients_vanish():
    X, y = data()
    net = cb.Network(6, [cb.Dense(10, "sigmoid"), cb.Dense(3, "softmax")], seed=0,
                     dtype="float64")
    history = net.fit(1000 * X, y, optimizer=cb.SGD(lr=0.01), epochs=1, batch_size=8,
                      health=True)
    assert history["health"][0]["saturated_fraction"] == 1.0
    assert history["health"][0]["dead_fraction"] is None
    deep = cb.Network(6, [cb.Dense(16, "sigmoid") for _ in range(6)] + [cb.Dense(3, "softmax")],
                      seed=0, dtype="float64")
    table = deep.fit(X, y, optimizer=cb.SGD(lr=0.01), epochs=1, health=True).health_table()
    assert "vanishing gradients" in table


def test_health_plot(tmp_path):
    pytest.importorskip("matplotlib")
    X, y = data()
    net = cb.Network(6, [cb.Dense(8, "relu"), cb.Dense(8, "tanh"), cb.Dense(3, "softmax")],
                     seed=0)
    history = net.fit(X, y, optimizer=cb.Adam(), epochs=3, health=True)
    history.plot(tmp_path / "health.png", kind="health")
    assert (tmp_path / "health.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="health=True"):
        net.fit(X, y, epochs=1).plot(kind="health")
    with pytest.raises(ValueError, match="kind"):
        history.plot(kind="nope")


def test_the_health_table_counts_layers_as_the_records_do():
    """One convention: record "layer": i is net.layers[i], and the table says layers[i]."""
    X, y = cb.datasets.make_xor(200)
    net = cb.Network(2, [cb.Dense(8, "relu"), cb.Dense(8, "tanh"), cb.Dense(2, "softmax")],
                     seed=0)
    history = net.fit(X, y, epochs=2, health=True)
    records = history["health"]
    assert [r["layer"] for r in records] == [0, 1, 2, 0, 1, 2]
    assert [r["epoch"] for r in records] == [0, 0, 0, 1, 1, 1] and history.epoch == [0, 1]
    assert all(net.layers[r["layer"]].activation == r["activation"] for r in records)
    rows = history.health_table().splitlines()[1:4]
    assert [row.split()[0] for row in rows] == ["layers[0]", "layers[1]", "layers[2]"]
    assert [row.split()[2] for row in rows] == ["relu", "tanh", "softmax"]
