"""Dropout in training against an independent NumPy reference with the same masks.

The reference regenerates the engine's mask stream in pure Python: splitmix64
over the network's `rng_state`, one draw per activation, layer by layer in the
forward pass, row-major within a layer, batch after batch (shuffle=False, so
no draws for the order). A unit is kept when its draw u = (z >> 11)·2⁻⁵³ is
≥ p and then scaled by 1/(1−p) (inverted dropout); the backward pass sends the
gradient only through kept units, with the same factor. A statistical check,
independent of the stream, asks that the expected training-time output equal
the evaluation output.
"""

import numpy as np
import pytest
from reference import activation, derivative

import cbackprop as cb

TOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}
MASK64 = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, int]:
    """(new state, output) of one splitmix64 step (Steele, Lea, Flood 2014)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def draw_mask(state: int, shape: tuple[int, int], p: float) -> tuple[int, np.ndarray]:
    """(new state, mask of 0 and 1/(1−p)) for one layer's activations."""
    mask = np.empty(shape[0] * shape[1])
    for i in range(mask.size):
        state, z = splitmix64(state)
        mask[i] = 1 / (1 - p) if (z >> 11) * (1.0 / 2**53) >= p else 0.0
    return state, mask.reshape(shape)


def step_with_dropout(params, acts, rates, X, Y, state, lr):
    """One plain-SGD step of mse with dropout: (batch loss, new params, new state)."""
    zs, as_, masks = [], [], []
    a = X
    for (W, b), act, p in zip(params, acts, rates):
        z = a @ W + b
        a = activation(act, z)
        mask = np.ones_like(a)
        if p > 0:
            state, mask = draw_mask(state, a.shape, p)
        a = a * mask
        zs.append(z)
        as_.append(a)
        masks.append(mask)
    r = as_[-1] - Y
    loss = (r**2).mean()
    dz = 2 * r / r.size * derivative(acts[-1], zs[-1])
    new = [None] * len(params)
    for layer in range(len(params) - 1, -1, -1):
        W, b = params[layer]
        a_prev = X if layer == 0 else as_[layer - 1]
        new[layer] = (W - lr * a_prev.T @ dz, b - lr * dz.sum(axis=0))
        if layer > 0:
            dz = (dz @ W.T) * derivative(acts[layer - 1], zs[layer - 1]) * masks[layer - 1]
    return loss, new, state


def views(sizes, theta):
    out, p = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        out.append((theta[p:p + n_in * n_out].reshape(n_in, n_out),
                    theta[p + n_in * n_out:p + n_in * n_out + n_out]))
        p += n_in * n_out + n_out
    return out


def test_the_stream_is_splitmix64():
    """The reference generator against the published splitmix64 outputs for seed 0."""
    state, outputs = 0, []
    for _ in range(3):
        state, z = splitmix64(state)
        outputs.append(z)
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


@pytest.mark.parametrize("batch", [23, 5], ids=["one-step", "short-last"])
def test_training_with_dropout_follows_the_reference(dtype, batch):
    """Forward scaling (the reported loss) and the backward mask (θ after the
    steps) against the reference: one step on the whole set (the loss then
    depends on the forward pass alone), and batches of which the last is short."""
    acts, rates = ["tanh", "relu", "identity"], [0.3, 0.5, 0.0]
    net = cb.Network(4, [cb.Dense(8, acts[0], dropout=rates[0]),
                         cb.Dense(6, acts[1], dropout=rates[1]), cb.Dense(2, acts[2])],
                     loss="mse", dtype=dtype, seed=3)
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(23, 4)).astype(dtype), rng.normal(size=(23, 2)).astype(dtype)
    lr = 0.1
    params = views(net.sizes, net.theta.astype(np.float64))
    state, total = int(net.rng_state[0]), 0.0
    for start in range(0, 23, batch):
        rows = slice(start, start + batch)
        loss, params, state = step_with_dropout(params, acts, rates, X[rows].astype(float),
                                                Y[rows].astype(float), state, lr)
        total += loss * X[rows].shape[0]
    history = net.fit(X, Y, optimizer=cb.SGD(lr=lr), epochs=1, batch_size=batch, shuffle=False)
    assert int(net.rng_state[0]) == state, "the engine drew another number of masks"
    np.testing.assert_allclose(history.history["loss"][0], total / 23, rtol=TOL[dtype],
                               err_msg="training-time forward pass (dropout scaling)")
    expected = np.concatenate([part.ravel() for W, b in params for part in (W, b)])
    np.testing.assert_allclose(net.theta, expected, rtol=TOL[dtype], atol=TOL[dtype],
                               err_msg="backward pass (gradient through kept units only)")


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_expected_training_output_is_the_evaluation_output(dtype, p):
    """E[training output] = evaluation output when the layer after the dropout
    is linear. The training output's mean over many rows is read off one SGD
    step of mse with targets 0: the output bias moves by lr·(2/k)·mean(output)."""
    n_copies, k = 5000, 2
    net = cb.Network(3, [cb.Dense(40, "relu", dropout=p), cb.Dense(k, "identity")],
                     loss="mse", dtype=dtype, seed=5)
    (W1, _), (W2, b2) = net.params
    W1[...] = np.abs(W1)
    W2[...] = np.abs(W2)            # every unit pushes the same way: scaling shows
    rng = np.random.default_rng(6)
    X = np.repeat(np.abs(rng.normal(size=(4, 3))), n_copies, axis=0).astype(dtype)
    evaluation = net.predict(X).astype(np.float64).mean(axis=0)
    A = np.maximum(X.astype(np.float64) @ W1 + net.params[0][1], 0)
    # The mean's standard error: Var(mask) = p/(1−p) for each kept-or-dropped unit.
    stderr = np.sqrt(p / (1 - p) * ((A**2) @ (W2.astype(np.float64) ** 2)).sum(axis=0)) / len(X)
    assert not b2.any()
    net.fit(X, np.zeros((len(X), k)), optimizer=cb.SGD(lr=1.0), epochs=1, batch_size=len(X),
            shuffle=False)
    training = -net.params[1][1].astype(np.float64) * k / 2
    assert np.all(np.abs(training - evaluation) < 4 * stderr + TOL[dtype] * np.abs(evaluation)), \
        (training, evaluation, stderr)
    assert np.all(p * np.abs(evaluation) > 40 * stderr)   # unscaled dropout would show
