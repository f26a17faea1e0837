"""Checkpoints and resume: a resumed run ends bitwise where the uninterrupted one does."""

import os
import signal

import numpy as np
import pytest

import cbackprop as cb
from cbackprop import _session, trainer

OPTIMIZERS = [
    lambda: cb.SGD(lr=0.1),
    lambda: cb.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: cb.Adam(lr=0.01),
    lambda: cb.AdamW(lr=0.01),
    lambda: cb.RMSprop(lr=0.01, momentum=0.5),
]


def problem(dtype="float64", n=90):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5)).astype(dtype)
    y = rng.integers(0, 3, n)
    net = cb.Network(5, [cb.Dense(9, "relu", dropout=0.2), cb.Dense(3, "softmax")],
                     dtype=dtype, seed=4, alpha=0.01, n_threads=1)
    return net, X, y


def uninterrupted(make_opt, epochs=6, dtype="float64"):
    net, X, y = problem(dtype)
    opt = make_opt()
    history = net.fit(X, y, optimizer=opt, epochs=epochs, batch_size=8,
                      validation_data=(X[:20], y[:20]))
    return net, opt, history


def same_history(a, b):
    """The same epochs and figures (epoch losses are sums over timed chunks, so
    their last bits depend on where chunks end)."""
    assert a.epoch == b.epoch
    for key in a.history:
        if key != "time":
            np.testing.assert_allclose(a.history[key], b.history[key], rtol=1e-12,
                                       err_msg=key)


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=lambda f: repr(f()))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_at_an_epoch_boundary_is_bitwise_uninterrupted(make_opt, dtype, tmp_path):
    ref, ref_opt, ref_history = uninterrupted(make_opt, dtype=dtype)
    net, X, y = problem(dtype)
    path = tmp_path / "run.ckpt"
    net.fit(X, y, optimizer=make_opt(), epochs=6, batch_size=8,
            validation_data=(X[:20], y[:20]), checkpoint=path, checkpoint_every=2,
            callbacks=[lambda epoch, logs: epoch == 2])        # stops after 3 epochs
    run = cb.resume(path)
    assert run.epoch == 3 and run.epochs == 6
    history = run.fit(X, y, validation_data=(X[:20], y[:20]))
    np.testing.assert_array_equal(run.network.theta, ref.theta)
    np.testing.assert_array_equal(run.optimizer.state, ref_opt.state)
    assert run.optimizer.t == ref_opt.t
    same_history(history, ref_history)


def interrupt_after(monkeypatch, chunks, action):
    """One batch per chunk; `action(session)` after that many chunks."""
    monkeypatch.setattr(trainer, "CHUNK_SECONDS", 0.0)
    original = _session.TrainingSession._train_chunk
    calls = []

    def counted(self, pos, stop):
        out = original(self, pos, stop)
        calls.append(pos)
        if len(calls) == chunks:
            action(self)
        return out

    monkeypatch.setattr(_session.TrainingSession, "_train_chunk", counted)


@pytest.mark.parametrize("make_opt", OPTIMIZERS[1:3], ids=lambda f: repr(f()))
def test_stop_inside_an_epoch_resumes_inside_it(make_opt, tmp_path, monkeypatch):
    ref, ref_opt, ref_history = uninterrupted(make_opt)
    net, X, y = problem()
    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        interrupt_after(m, 30, lambda session: session.stop())    # epoch 3, batch 8 of 12
        net.fit(X, y, optimizer=make_opt(), epochs=6, batch_size=8,
                validation_data=(X[:20], y[:20]), checkpoint=path)
    run = cb.resume(path)
    assert run.epoch == 2 and "rows into epoch 3" in repr(run)
    history = run.fit(X, y, validation_data=(X[:20], y[:20]))
    np.testing.assert_array_equal(run.network.theta, ref.theta)
    np.testing.assert_array_equal(run.optimizer.state, ref_opt.state)
    same_history(history, ref_history)


def test_ctrl_c_writes_the_run_at_its_last_chunk_and_raises(tmp_path, monkeypatch):
    ref, ref_opt, _ = uninterrupted(OPTIMIZERS[2])
    net, X, y = problem()
    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        interrupt_after(m, 17, lambda session: os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            net.fit(X, y, optimizer=OPTIMIZERS[2](), epochs=6, batch_size=8,
                    validation_data=(X[:20], y[:20]), checkpoint=path)
    run = cb.resume(path)
    assert run.optimizer.t == 17
    run.fit(X, y, validation_data=(X[:20], y[:20]))
    np.testing.assert_array_equal(run.network.theta, ref.theta)


def test_a_checkpoint_is_a_model_file_and_a_model_file_no_checkpoint(tmp_path):
    net, X, y = problem()
    path, model = tmp_path / "run.ckpt", tmp_path / "model.cbp"
    net.fit(X, y, optimizer=cb.Adam(), epochs=2, checkpoint=path)
    np.testing.assert_array_equal(cb.load(path).theta, net.theta)
    net.save(model)
    with pytest.raises(ValueError, match="not a checkpoint"):
        cb.resume(model)
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum"):
        cb.resume(path)


def test_resume_refuses_other_data(tmp_path):
    net, X, y = problem()
    path = tmp_path / "run.ckpt"
    net.fit(X, y, optimizer=cb.SGD(), epochs=3, checkpoint=path,
            callbacks=[lambda epoch, logs: epoch == 0])
    with pytest.raises(ValueError, match="not the data"):
        cb.resume(path).fit(X[::-1], y)


def test_a_checkpoint_that_cannot_be_written_fails_before_training(tmp_path):
    net, X, y = problem()
    theta = net.theta.copy()
    with pytest.raises(FileNotFoundError, match="no folder"):
        net.fit(X, y, optimizer=cb.SGD(), epochs=3, checkpoint=tmp_path / "no" / "run.ckpt")
    with pytest.raises(IsADirectoryError):
        net.fit(X, y, optimizer=cb.SGD(), epochs=3, checkpoint=tmp_path)
    with pytest.raises(ValueError, match="checkpoint_every"):
        net.fit(X, y, optimizer=cb.SGD(), checkpoint=tmp_path / "a", checkpoint_every=0)
    np.testing.assert_array_equal(net.theta, theta)


def test_checkpoint_metadata_is_kept_through_resume(tmp_path):
    """checkpoint_metadata comes back as resume(path).metadata, and a resumed run keeps
    writing it; what JSON cannot keep is refused before training."""
    X, y = cb.datasets.load_digits()
    X, y = X[:200] / 16, y[:200]
    net = cb.Network(64, [cb.Dense(8, "relu"), cb.Dense(10, "softmax")],
                     loss="cross_entropy", seed=0)
    path = tmp_path / "run.ckpt"
    meta = {"hidden": [8], "label_column": "species", "split": 0.1, "quiet": False}
    net.fit(X, y, optimizer=cb.SGD(0.1), epochs=1, checkpoint=path, checkpoint_metadata=meta)
    run = cb.resume(path)
    assert run.metadata == meta
    run.fit(X, y, epochs=2)
    assert cb.resume(path).metadata == meta
    before = net.theta.copy()
    with pytest.raises(ValueError, match="NaN"):
        net.fit(X, y, checkpoint=path, checkpoint_metadata={"lr": float("nan")})
    with pytest.raises(TypeError, match="keys must be strings"):
        net.fit(X, y, checkpoint=path, checkpoint_metadata={1: 2})
    np.testing.assert_array_equal(net.theta, before)
