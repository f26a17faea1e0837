"""The training session: its step boundary (gradient -> reduce hook -> update),
optimizer state it owns through state_dict, and the claim on an optimizer."""

import numpy as np
import pytest

import cbackprop as cb
from cbackprop import trainer
from cbackprop._session import Reducer, TrainingSession
from cbackprop.history import History
from cbackprop.progress import Progress


class Recording(Reducer):
    """A one-process reducer that records what it is given and may change grad."""

    def __init__(self, change=None):
        self.weights, self.grads, self.change = [], [], change

    def reduce_gradient(self, grad, weight, loss, rows, stop, failed):
        self.weights.append(weight)
        self.grads.append(grad.copy())
        if self.change is not None:
            self.change(grad)
        return loss, rows, stop, failed

class Layered(Recording):
    """The overlapped form of the hook: the gradient a layer at a time
    (begin_step, gradient_ready, finish_step), recorded; finish_step is the
    base class's: reduce_gradient on the whole."""

    def __init__(self, change=None):
        super().__init__(change)
        self.ready, self.steps = [], []

    def bucket_size(self, session):
        return 1

    def begin_step(self, weight, loss, rows, stop, failed):
        self.ready.append([])
        super().begin_step(weight, loss, rows, stop, failed)

    def gradient_ready(self, grad, lo, hi):
        self.ready[-1].append((lo, hi, grad[lo:hi].copy()))


OPTIMIZERS = [
    lambda: cb.SGD(lr=0.1),
    lambda: cb.SGD(lr=0.05, momentum=0.9, weight_decay=0.01),
    lambda: cb.SGD(lr=0.05, momentum=0.8, nesterov=True),
    lambda: cb.Adam(lr=0.01),
    lambda: cb.AdamW(lr=0.01, weight_decay=0.1),
    lambda: cb.RMSprop(lr=0.01, momentum=0.5),
]
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def problem(dtype, n=37):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5)).astype(dtype)
    y = rng.integers(0, 3, n)
    net = cb.Network(5, [cb.Dense(8, "tanh", dropout=0.25), cb.Dense(3, "softmax")],
                     dtype=dtype, seed=2, alpha=0.01, n_threads=1)
    return net, X, y


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=lambda f: repr(f()))
def test_an_identity_hook_gives_the_fused_result(make_opt, dtype):
    """With a hook each batch goes gradient -> hook -> update in Python; a hook
    that leaves the gradient alone must train as the fused engine does (to
    rounding), dropout stream and step count included."""
    net, X, y = problem(dtype)
    ref, _, _ = problem(dtype)
    reducer = Recording()
    opt, ref_opt = make_opt(), make_opt()
    hooked = TrainingSession(net, X, y, optimizer=opt, batch_size=8, reducer=reducer).fit(3)
    history = ref.fit(X, y, optimizer=ref_opt, epochs=3, batch_size=8)
    assert reducer.weights == [8, 8, 8, 8, 5] * 3          # the batches' weights (rows)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(hooked[key], history[key], rtol=TOL[dtype])
    assert opt.t == ref_opt.t == 15
    np.testing.assert_array_equal(net.rng_state, ref.rng_state)
    np.testing.assert_allclose(net.theta, ref.theta, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(opt.state, ref_opt.state, rtol=TOL[dtype], atol=TOL[dtype])


def test_the_hook_sees_the_batch_gradient_and_its_changes_are_applied():
    """The hook gets ∇L(θ) of the batch (as loss_and_grad computes it) before the
    update, and the update uses what the hook leaves: zeroing it freezes θ."""
    net, X, y = problem(np.float64)
    net = cb.Network(5, [cb.Dense(8, "tanh"), cb.Dense(3, "softmax")], dtype="float64",
                     seed=2, alpha=0.01)
    theta0 = net.theta.copy()
    expected = net.loss_and_grad(X[:8], y[:8])[1]
    reducer = Recording(change=lambda grad: grad.fill(0))
    TrainingSession(net, X, y, optimizer=cb.SGD(lr=0.1), batch_size=8, shuffle=False,
                    reducer=reducer).fit(1)
    np.testing.assert_allclose(reducer.grads[0], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(net.theta, theta0)


def test_a_hook_gets_the_weight_of_weighted_batches():
    net, X, y = problem(np.float64)
    w = np.linspace(0.5, 2.0, X.shape[0])
    reducer = Recording()
    TrainingSession(net, X, y, w, optimizer=cb.SGD(lr=0.1), batch_size=10, shuffle=False,
                    reducer=reducer).fit(1)
    np.testing.assert_allclose(reducer.weights, [w[i:i + 10].sum() for i in range(0, 37, 10)])


def test_a_reducer_decides_stops_and_failures_for_every_process():
    """stop() only asks; the reducer's answer stops the session, after that step.
    A failure it reports raises DivergenceError and restores θ."""
    net, X, y = problem(np.float64)

    class StopAtThird(Reducer):
        calls = 0

        def reduce_gradient(self, grad, weight, loss, rows, stop, failed):
            self.calls += 1
            return loss, rows, self.calls == 3, failed

    reducer = StopAtThird()
    s = TrainingSession(net, X, y, optimizer=cb.SGD(lr=0.1), batch_size=8, reducer=reducer)
    s.stop()                           # asked, not agreed: training goes on
    s.fit(1)
    assert s.stopped and reducer.calls == 3
    theta0 = net.theta.copy()

    class Fail(Reducer):
        def reduce_gradient(self, grad, weight, loss, rows, stop, failed):
            return loss, rows, stop, True

    with pytest.raises(cb.DivergenceError):
        TrainingSession(net, X, y, optimizer=cb.SGD(lr=0.1), reducer=Fail()).fit(1)
    np.testing.assert_array_equal(net.theta, theta0)


def test_an_update_that_overflows_under_a_reducer_is_caught_after_that_step():
    """The hook's gradient is finite but the update overflows: the step says
    so, the session stops after that step and θ is restored."""
    net, X, y = problem(np.float64)
    theta0 = net.theta.copy()
    reducer = Recording(change=lambda grad: grad.__setitem__(slice(None), 1e300))
    with pytest.raises(cb.DivergenceError, match="the parameters became NaN or infinite"):
        TrainingSession(net, X, y, optimizer=cb.SGD(lr=1e300), batch_size=8,
                        reducer=reducer).fit(1)
    assert len(reducer.grads) == 1                # it stopped after the first step
    np.testing.assert_array_equal(net.theta, theta0)


def test_a_reducer_must_be_a_reducer():
    net, X, y = problem(np.float64)
    with pytest.raises(TypeError, match="reducer must be a Reducer"):
        TrainingSession(net, X, y, optimizer=cb.SGD(), reducer=print)


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=lambda f: repr(f()))
def test_state_dict_round_trip_continues_bitwise(make_opt):
    """An optimizer restored from state_dict (and θ) continues exactly as the
    original does."""
    net, X, y = problem(np.float64)
    opt = make_opt()
    net.fit(X, y, optimizer=opt, epochs=2, batch_size=8)
    saved_theta, saved_rng, saved = net.theta.copy(), net.rng_state.copy(), opt.state_dict()
    net.fit(X, y, optimizer=opt, epochs=2, batch_size=8)
    other, _, _ = problem(np.float64)
    other.theta = saved_theta
    other.rng_state[...] = saved_rng
    restored = make_opt()
    restored.load_state_dict(saved)
    assert restored.t == saved["t"] > 0
    other.fit(X, y, optimizer=restored, epochs=2, batch_size=8)
    np.testing.assert_array_equal(other.theta, net.theta)
    np.testing.assert_array_equal(restored.state, opt.state)


def test_state_dict_is_a_copy_and_load_checks_what_it_gets():
    net, X, y = problem(np.float64)
    opt = cb.Adam(lr=0.01)
    assert opt.state_dict()["state"] is None
    net.fit(X, y, optimizer=opt, epochs=1)
    d = opt.state_dict()
    d["state"][...] = 7
    assert not np.any(opt.state == 7)
    buffer = opt.state
    opt.load_state_dict(d)
    assert opt.state is buffer and np.all(buffer == 7)   # copied in place
    with pytest.raises(ValueError, match="'sgd' optimizer"):
        opt.load_state_dict(cb.SGD().state_dict())
    with pytest.raises(ValueError, match="NaN"):
        opt.load_state_dict({**d, "state": np.full_like(d["state"], np.nan)})
    with pytest.raises(ValueError, match="t"):
        opt.load_state_dict({**d, "t": -1})
    with pytest.raises(TypeError, match="state_dict"):
        opt.load_state_dict({"state": None})
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict({**d, "hyperparameters": {**d["hyperparameters"], "lr": -1}})


def test_the_optimizer_state_is_taken_once_the_fit_has_claimed_it():
    """A session set up while the optimizer had no state, entered after another
    fit trained with that optimizer, continues from that fit's momentum (it does
    not put back the zeros it saw when it was set up)."""
    net, X, y = problem(np.float64)
    opt = cb.SGD(lr=0.05, momentum=0.9)
    later = TrainingSession(net, X, y, optimizer=opt, batch_size=8)   # state still None
    net.fit(X, y, optimizer=opt, epochs=1, batch_size=8)
    momentum = opt.state.copy()
    assert np.any(momentum != 0)
    with later:
        np.testing.assert_array_equal(opt.state, momentum)


def test_a_second_session_on_a_busy_network_or_optimizer_is_refused():
    net, X, y = problem(np.float64)
    other, _, _ = problem(np.float64)
    opt = cb.SGD()
    with TrainingSession(net, X, y, optimizer=opt):
        with pytest.raises(RuntimeError, match="already being fitted"):
            TrainingSession(net, X, y, optimizer=cb.SGD()).__enter__()
        with pytest.raises(RuntimeError, match="optimizer is in use"):
            TrainingSession(other, X, y, optimizer=opt).__enter__()
    with TrainingSession(other, X, y, optimizer=opt):     # released again
        pass


def test_a_diverging_epoch_falls_back_to_the_last_commit():
    net, X, y = problem(np.float64)
    opt = cb.SGD(lr=0.1, momentum=0.9)
    with TrainingSession(net, X, y, optimizer=opt, batch_size=8) as s:
        trainer.train(s, [History()], 1, [], Progress(1, len(X)))
        s.commit()
        kept = (net.theta.copy(), opt.state.copy(), opt.t, net.rng_state.copy())
        opt.lr = 1e300
        with pytest.raises(cb.DivergenceError):
            trainer.train(s, [History()], 1, [], Progress(1, len(X)))
    np.testing.assert_array_equal(net.theta, kept[0])
    np.testing.assert_array_equal(opt.state, kept[1])
    assert opt.t == kept[2] and opt.lr == 1e300
    np.testing.assert_array_equal(net.rng_state, kept[3])


def test_a_later_fit_reuses_the_networks_buffers():
    """The workspace, gradient and rollback copies stay with the network between
    fits (and the validation workspace too): a second fit allocates none of them."""
    import tracemalloc
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 64)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    net = cb.Network(64, [cb.Dense(512, "relu"), cb.Dense(10, "softmax")],
                     dtype="float32", seed=0, n_threads=1)
    opt = cb.SGD(lr=0.01, momentum=0.9)
    fit = dict(optimizer=opt, epochs=1, batch_size=128, validation_data=(X, y))
    net.fit(X, y, **fit)
    tracemalloc.start()
    try:
        net.fit(X, y, **fit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # θ is 37 K floats (150 kB); the training workspace alone is 1.1 MB.
    assert peak < net.theta.nbytes


def test_predict_and_evaluate_beside_a_fit_do_not_share_its_buffers():
    """Another thread's predict and evaluate, run while the network trains with
    validation data, use buffers of their own: the fit is bitwise the fit
    without them, validation figures included."""
    import threading
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 20))
    y = rng.integers(0, 4, 300)

    def run(beside):
        net = cb.Network(20, [cb.Dense(64, "relu"), cb.Dense(4, "softmax")], seed=3,
                         n_threads=1)
        done = threading.Event()

        def other():
            while not done.is_set():
                net.predict(X)
                net.evaluate(X, y)

        worker = threading.Thread(target=other) if beside else None
        if worker is not None:
            worker.start()
        try:
            hist = net.fit(X, y, optimizer=cb.SGD(lr=0.05, momentum=0.9), epochs=6,
                           batch_size=16, validation_data=(X[:100], y[:100]))
        finally:
            done.set()
            if worker is not None:
                worker.join()
        return net.theta.copy(), hist.history["val_loss"]

    theta, val = run(False)
    theta_beside, val_beside = run(True)
    np.testing.assert_array_equal(theta_beside, theta)
    assert val_beside == val


@pytest.mark.parametrize("activation,make_opt", [
    ("relu", lambda: cb.SGD(lr=0.1, momentum=0.9, weight_decay=1e-3)),
    ("sigmoid", lambda: cb.Adam(lr=1e-2)),
    ("tanh", lambda: cb.SGD(lr=0.05)),
])
def test_health_under_a_reducer_equals_the_engines(activation, make_opt):
    """With a reducer (comm's path) the health figures are measured from each
    watched step's reduced gradient in Python; an identity reducer must give
    the engine's own figures, epoch by epoch."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((83, 6))
    y = rng.integers(0, 3, 83)

    def run(reducer):
        net = cb.Network(6, [cb.Dense(9, activation), cb.Dense(7, activation),
                             cb.Dense(3, "softmax")], dtype="float64", seed=5, alpha=0.01,
                         n_threads=1)
        session = TrainingSession(net, X, y, optimizer=make_opt(), batch_size=4,
                                  reducer=reducer, health=True)
        return session.fit(3)["health"]

    fused, hooked = run(None), run(Reducer())
    assert len(fused) == len(hooked) == 9
    for a, b in zip(fused, hooked):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
            else:
                assert b[key] == value, key


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_the_layered_hook_sees_each_layer_final_and_the_same_gradient(dtype, sparse):
    """With bucket_size (the overlapped form) the backward pass runs a layer at a
    time: each layer's part of grad is handed over once final (output layer
    first, end of θ to its start, covering it once), and the whole gradient
    and the trained θ are the whole-gradient hook's, bit for bit (the same
    GEMMs and sums: dropout, L2, sparse X included)."""
    net, X, y = problem(dtype)
    ref, _, _ = problem(dtype)
    if sparse:
        sp = pytest.importorskip("scipy.sparse")
        X = sp.csr_matrix(np.where(X > 0.3, X, 0))
    layered, whole = Layered(), Recording()
    TrainingSession(net, X, y, optimizer=cb.Adam(lr=0.01), batch_size=8,
                    reducer=layered).fit(2)
    TrainingSession(ref, X, y, optimizer=cb.Adam(lr=0.01), batch_size=8,
                    reducer=whole).fit(2)
    assert len(layered.ready) == len(layered.grads) == len(whole.grads) == 10
    sizes = net.sizes
    ends = np.cumsum([0] + [a * b + b for a, b in zip(sizes, sizes[1:])])
    for parts, grad in zip(layered.ready, layered.grads):
        assert [(lo, hi) for lo, hi, _ in parts] == [(int(ends[i]), int(ends[i + 1]))
                                                     for i in (1, 0)]
        for lo, hi, part in parts:
            np.testing.assert_array_equal(part, grad[lo:hi])
    np.testing.assert_array_equal(np.array(layered.grads), np.array(whole.grads))
    np.testing.assert_array_equal(net.theta, ref.theta)
    np.testing.assert_array_equal(net.rng_state, ref.rng_state)


def test_the_layered_hook_gives_the_fused_result_and_agrees_failures():
    """The overlapped form trains as the fused engine does (to rounding), and a
    non-finite loss reaches the hook as failed with a zero gradient."""
    net, X, y = problem(np.float64)
    ref, _, _ = problem(np.float64)
    TrainingSession(net, X, y, optimizer=cb.SGD(lr=0.05, momentum=0.9), batch_size=8,
                    reducer=Layered()).fit(3)
    ref.fit(X, y, optimizer=cb.SGD(lr=0.05, momentum=0.9), epochs=3, batch_size=8)
    np.testing.assert_allclose(net.theta, ref.theta, rtol=1e-12, atol=1e-12)

    class Failing(Layered):
        def reduce_gradient(self, grad, weight, loss, rows, stop, failed):
            self.seen = (failed, grad.copy())
            return loss, rows, stop, True

    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((16, 5)), rng.standard_normal((16, 2))
    Y[3] = 1e200                   # finite, but its squared error is not
    net = cb.Network(5, [cb.Dense(2)], loss="mse", dtype="float64", seed=0)
    before = net.theta.copy()
    hook = Failing()
    with pytest.raises(cb.DivergenceError):
        TrainingSession(net, X, Y, optimizer=cb.SGD(lr=0.1), batch_size=8, shuffle=False,
                        reducer=hook).fit(1)
    assert hook.seen[0] and not hook.seen[1].any()
    np.testing.assert_array_equal(net.theta, before)
