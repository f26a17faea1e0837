"""Checkpoints and resume: a resumed run ends bitwise where the uninterrupted one does."""

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from chunks import interrupt_after

import cbackprop as cb
from cbackprop import serialization

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


# ---- a checkpoint is input: crafted entries (valid checksum) are refused ----------

def split(blob: bytes):
    """(header, data) of a file; the checkpoint entry parsed."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    return header, blob[8 + n:]


def craft(path, edit=None, edit_header=None, out=None):
    """Rewrite the checkpoint at path with edit(entry) applied and a valid checksum."""
    header, data = split(Path(path).read_bytes())
    entry = json.loads(header["__metadata__"]["checkpoint"])
    if callable(edit):
        edit(entry)
    elif edit is not None:          # the whole entry replaced
        entry = edit
    header["__metadata__"]["checkpoint"] = json.dumps(entry)
    if edit_header is not None:
        data = edit_header(header, data) or data
    out = Path(out or path)
    out.write_bytes(serialization.seal(header, data))
    return out


@pytest.fixture
def half_done(tmp_path, monkeypatch):
    """A run stopped inside its third epoch (position 64 of 90 rows, batch 8)."""
    net, X, y = problem()
    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        interrupt_after(m, 30, lambda session: session.stop())
        net.fit(X, y, optimizer=cb.Adam(lr=0.01), epochs=6, batch_size=8, checkpoint=path,
                health=True)
    return path, X, y


def put(key, value):
    return lambda entry: entry.__setitem__(key, value)


def drop(key):
    return lambda entry: entry.pop(key)


CRAFTED = {
    "position -1000000": (put("position", -1000000), "position"),
    "position -1": (put("position", -1), "position"),
    "position = rows": (put("position", 90), "position"),
    "position 1e6": (put("position", 10**6), "position"),
    "position 1e30": (put("position", 1e30), "position"),
    "position not a batch": (put("position", 63), "position"),
    "position 'x'": (put("position", "64"), "position"),
    "position None, sums kept": (put("position", None), "loss_sum"),
    "loss_sum []": (put("loss_sum", []), "loss_sum"),
    "loss_sum True": (put("loss_sum", True), "loss_sum"),
    "correct > position": (put("correct", 65.0), "correct"),
    "correct 0.5": (put("correct", 0.5), "correct"),
    "no position": (drop("position"), "position"),
    "no shuffle": (drop("shuffle"), "shuffle"),
    "no data": (drop("data"), "data"),
    "no optimizer": (drop("optimizer"), "optimizer"),
    "unknown key": (put("learning_rate", 0.1), "learning_rate"),
    "epoch > epochs": (put("epoch", 7), "epoch"),
    "epoch -1": (put("epoch", -1), "epoch"),
    "epoch True": (put("epoch", True), "epoch"),
    "epochs 2.0": (put("epochs", 2.0), "epochs"),
    "every 0": (put("every", 0), "every"),
    "batch_size 0": (put("batch_size", 0), "batch_size"),
    "batch_size > rows": (put("batch_size", 91), "batch_size"),
    "n_rows 0": (put("n_rows", 0), "n_rows"),
    "shuffle 1": (put("shuffle", 1), "shuffle"),
    "data short": (put("data", "ab"), "data"),
    "metadata list": (put("metadata", [1]), "metadata"),
    "t 2**63": (lambda e: e["optimizer"].__setitem__("t", 2**63), "optimizer t"),
    "t -1": (lambda e: e["optimizer"].__setitem__("t", -1), "optimizer t"),
    "t 1.5": (lambda e: e["optimizer"].__setitem__("t", 1.5), "optimizer t"),
    "optimizer unknown": (lambda e: e["optimizer"].__setitem__("name", "lbfgs"), "optimizer"),
    "optimizer other kind": (lambda e: e["optimizer"].__setitem__("name", "sgd"), "optimizer"),
    "lr -1": (lambda e: e["optimizer"]["hyperparameters"].__setitem__("lr", -1), "optimizer"),
    "hyperparameter unknown": (lambda e: e["optimizer"]["hyperparameters"].__setitem__(
        "foo", 1), "optimizer"),
    "history epochs ['a', 'b']": (lambda e: e["history"].__setitem__("epoch", ["a", "b"]),
                                  "history"),
    "history epochs [0, 2]": (lambda e: e["history"].__setitem__("epoch", [0, 2]), "history"),
    "history list short": (lambda e: e["history"]["history"][0][1].pop(), "history"),
    "history value str": (lambda e: e["history"]["history"][1][1].__setitem__(0, "x"),
                          "history accuracy"),
    "history unknown name": (lambda e: e["history"]["history"].append(["lr", [1, 2]]),
                             "history"),
    "history not pairs": (lambda e: e["history"].__setitem__("history", {"loss": [1, 2]}),
                          "history"),
    "health record moved": (lambda e: dict(e["history"]["history"])["health"][0].__setitem__(
        "layer", 1), "history"),
    "entry a list": ([1, 2], None),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_entry_is_a_value_error_naming_it(half_done, case):
    path, X, y = half_done
    edit, name = CRAFTED[case]
    craft(path, edit)
    before = path.read_bytes()
    message = ("bad checkpoint entry" if name is None
               else f"not a valid cbackprop checkpoint: entry '{name}'")
    with pytest.raises(ValueError, match=message):
        cb.resume(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("token, message", [
    ("NaN", "NaN is not JSON"), ("Infinity", "Infinity is not JSON"),
    ("-Infinity", "-Infinity is not JSON"), ("1e400", "entry 'loss_sum': inf is not finite")])
def test_json_without_nan_or_infinity_tokens(half_done, token, message):
    path, _, _ = half_done
    header, data = split(path.read_bytes())
    text = header["__metadata__"]["checkpoint"]
    header["__metadata__"]["checkpoint"] = re.sub(r'"loss_sum": [^,}]+', f'"loss_sum": {token}',
                                                  text)
    path.write_bytes(serialization.seal(header, data))
    with pytest.raises(ValueError, match=message):
        cb.resume(path)


def state_tensor(edit_array):
    """An edit of the file's data that rewrites the checkpoint tensor `name` in place."""
    def edit(header, data):
        name, fn = edit_array
        spec = header["checkpoint." + name]
        a, b = spec["data_offsets"]
        dtype = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}[spec["dtype"]]
        arr = np.frombuffer(data[a:b], dtype=dtype).copy()
        fn(arr)
        return data[:a] + arr.tobytes() + data[b:]
    return edit


@pytest.mark.parametrize("name, fn, entry", [
    ("order", lambda o: o.__setitem__(0, o[1]), "order"),            # a row twice
    ("order", lambda o: o.__setitem__(0, -1), "order"),
    ("order", lambda o: o.__setitem__(0, 10**12), "order"),
    ("optimizer_state", lambda s: s.__setitem__(3, np.nan), "optimizer_state"),
])
def test_crafted_tensors_are_refused(half_done, name, fn, entry):
    path, _, _ = half_done
    craft(path, edit_header=state_tensor((name, fn)))
    with pytest.raises(ValueError, match=f"entry '{entry}'"):
        cb.resume(path)


def test_a_shuffled_order_in_an_unshuffled_run_is_refused(tmp_path):
    net, X, y = problem()
    path = tmp_path / "run.ckpt"
    net.fit(X, y, optimizer=cb.SGD(), epochs=1, batch_size=8, shuffle=False, checkpoint=path)
    craft(path, edit_header=state_tensor(("order", lambda o: o.__setitem__(
        slice(0, 2), o[1::-1]))))
    with pytest.raises(ValueError, match="entry 'order': shuffled in a run with shuffle=False"):
        cb.resume(path)


# ---- what a resumed run may change, and what it refuses ------------------------

def stopped_at(tmp_path, epochs=6, stop_after=2, make_opt=OPTIMIZERS[2], **kw):
    net, X, y = problem()
    path = tmp_path / "run.ckpt"
    net.fit(X, y, optimizer=make_opt(), epochs=epochs, batch_size=8, checkpoint=path,
            validation_data=(X[:20], y[:20]),
            callbacks=[lambda epoch, logs: epoch == stop_after - 1], **kw)
    return path, X, y


def test_a_checkpoint_fitted_twice_is_one_run(tmp_path):
    ref, ref_opt, ref_history = uninterrupted(OPTIMIZERS[2])
    path, X, y = stopped_at(tmp_path)
    run = cb.resume(path)
    run.fit(X, y, validation_data=(X[:20], y[:20]), epochs=4)
    assert run.epoch == 4 and "4 of 4 epochs" in repr(run)
    history = run.fit(X, y, validation_data=(X[:20], y[:20]), epochs=6)
    np.testing.assert_array_equal(run.network.theta, ref.theta)
    assert run.optimizer.t == ref_opt.t
    same_history(history, ref_history)
    assert cb.resume(path).epoch == 6


def test_a_checkpoint_stopped_inside_an_epoch_and_fitted_again(tmp_path, monkeypatch):
    ref, _, ref_history = uninterrupted(OPTIMIZERS[2])
    path, X, y = stopped_at(tmp_path)
    run = cb.resume(path)
    with monkeypatch.context() as m:
        interrupt_after(m, 5, lambda session: session.stop())       # epoch 3, batch 5 of 12
        run.fit(X, y, validation_data=(X[:20], y[:20]))
    assert run.epoch == 2 and "40 rows into epoch 3" in repr(run)
    history = run.fit(X, y, validation_data=(X[:20], y[:20]))
    np.testing.assert_array_equal(run.network.theta, ref.theta)
    same_history(history, ref_history)


def test_settings_a_resumed_run_cannot_change_are_refused_saying_how(tmp_path):
    path, X, y = stopped_at(tmp_path)
    before = path.read_bytes()
    run = cb.resume(path)
    theta = run.network.theta.copy()
    val = (X[:20], y[:20])
    with pytest.raises(ValueError, match="batch_size 8.*run.network.fit"):
        run.fit(X, y, validation_data=val, batch_size=16)
    with pytest.raises(ValueError, match="shuffle=True.*new run"):
        run.fit(X, y, validation_data=val, shuffle=False)
    with pytest.raises(ValueError, match="trains with run.optimizer.*lr = "):
        run.fit(X, y, validation_data=val, optimizer=cb.Adam(lr=0.01))
    with pytest.raises(ValueError, match="validation_data it had"):
        run.fit(X, y)
    with pytest.raises(ValueError, match="epochs >= 2 .*epochs=3 for one more"):
        run.fit(X, y, validation_data=val, epochs=1)
    with pytest.raises(ValueError, match="not the data"):
        run.fit(X, y, sample_weight=np.full(len(y), 2.0), validation_data=val)
    fresh = run.optimizer
    run.optimizer = cb.Adam(lr=0.01)                              # replaced: no state
    with pytest.raises(ValueError, match="not the adam optimizer holding the run's state"):
        run.fit(X, y, validation_data=val)
    run.optimizer = fresh
    run.network.theta[0] += 1
    with pytest.raises(ValueError, match="run.network is no longer where"):
        run.fit(X, y, validation_data=val)
    run.network.theta[0] -= 1
    np.testing.assert_array_equal(run.network.theta, theta)
    assert path.read_bytes() == before                            # nothing changed
    # The run's own values are accepted.
    run.fit(X, y, validation_data=val, batch_size=8, shuffle=True, optimizer=fresh, epochs=3)
    assert cb.resume(path).epoch == 3


def test_a_new_learning_rate_or_more_epochs_continue_the_run_and_are_recorded(tmp_path):
    path, X, y = stopped_at(tmp_path, epochs=3)
    run = cb.resume(path)
    run.optimizer.lr = 1e-3
    history = run.fit(X, y, validation_data=(X[:20], y[:20]), epochs=5)
    assert len(history.epoch) == 5
    again = cb.resume(path)
    assert (again.epoch, again.epochs, again.optimizer.lr) == (5, 5, 1e-3)
    # The same as lowering lr by a callback at the end of epoch 2 of one 5-epoch fit.
    net, X, y = problem()
    opt = OPTIMIZERS[2]()
    net.fit(X, y, optimizer=opt, epochs=5, batch_size=8, validation_data=(X[:20], y[:20]),
            callbacks=[lambda epoch, logs: setattr(opt, "lr", 1e-3) if epoch == 1 else None])
    np.testing.assert_array_equal(run.network.theta, net.theta)


def test_a_diverging_resumed_fit_leaves_the_checkpoint_as_it_was(tmp_path):
    ref, _, ref_history = uninterrupted(OPTIMIZERS[0])
    path, X, y = stopped_at(tmp_path, make_opt=OPTIMIZERS[0])
    run = cb.resume(path)
    theta, t = run.network.theta.copy(), run.optimizer.t
    run.optimizer.lr = 1e300
    with pytest.raises(cb.DivergenceError):
        run.fit(X, y, validation_data=(X[:20], y[:20]))
    np.testing.assert_array_equal(run.network.theta, theta)
    assert run.optimizer.t == t and run.epoch == 2 and len(run.history.epoch) == 2
    run.optimizer.lr = 0.1
    history = run.fit(X, y, validation_data=(X[:20], y[:20]))
    np.testing.assert_array_equal(run.network.theta, ref.theta)
    same_history(history, ref_history)


def test_health_goes_on_in_a_resumed_run(tmp_path):
    path, X, y = stopped_at(tmp_path, epochs=4, health=True)
    history = cb.resume(path).fit(X, y, validation_data=(X[:20], y[:20]))
    assert [r["epoch"] for r in history["health"]] == [e for e in range(4) for _ in range(2)]
    assert len(history["loss"]) == 4


def test_another_runs_checkpoint_is_replaced_only_when_asked(tmp_path):
    path, X, y = stopped_at(tmp_path)
    before = path.read_bytes()
    net, _, _ = problem()
    theta = net.theta.copy()
    with pytest.raises(FileExistsError, match=r"another run \(epoch 2 of 6\).*resume"):
        net.fit(X, y, optimizer=cb.SGD(), epochs=1, checkpoint=path)
    assert path.read_bytes() == before
    np.testing.assert_array_equal(net.theta, theta)
    net.fit(X, y, optimizer=cb.SGD(), epochs=1, checkpoint=path, checkpoint_overwrite=True)
    assert (cb.resume(path).epoch, cb.resume(path).epochs) == (1, 1)
    with pytest.raises(TypeError, match="checkpoint_overwrite"):
        net.fit(X, y, epochs=1, checkpoint=path, checkpoint_overwrite="yes")
    # A model file (no run in it) or any other file is replaced, as save replaces it.
    model = tmp_path / "model.cbp"
    net.save(model)
    net.fit(X, y, optimizer=cb.SGD(), epochs=1, checkpoint=model)
    assert cb.resume(model).epoch == 1


def _estimator(kind, **extra):
    from cbackprop import MLPClassifier, MLPRegressor
    params = dict(hidden_layer_sizes=(12,), max_iter=6, batch_size=16, random_state=3,
                  dtype="float64", n_iter_no_change=50, tol=0.0, **extra)
    if kind == "sgd":
        return MLPClassifier(solver="sgd", learning_rate="invscaling", momentum=0.9,
                             early_stopping=True, **params)
    return MLPRegressor(solver="adam", activation="tanh", **params)


def _data(kind):
    X, y = cb.datasets.load_digits()
    X, y = X[:300] / 16, y[:300]
    return (X, y) if kind == "sgd" else (X, y.astype(float) + X[:, 10])


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_an_estimators_fit_continues_its_checkpoint_bitwise(kind, tmp_path, monkeypatch):
    """An estimator's fit stopped inside an epoch (as Ctrl-C stops it) leaves its run
    in `checkpoint`; fitting an estimator of the same parameters again on the same
    data continues it and ends bitwise where the uninterrupted fit ends: weights,
    curves, the schedule and early stopping's best weights included. A finished run
    there is started afresh over. (The stopped run trains one batch per chunk.)"""
    import warnings

    from sklearn.base import clone
    X, y = _data(kind)
    path = tmp_path / "est.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = _estimator(kind).fit(X, y)
        with monkeypatch.context() as m:
            interrupt_after(m, 45, lambda session: session.stop())   # epoch 3 of 6
            stopped = _estimator(kind, checkpoint=path).fit(X, y)
        assert 0 < stopped.n_iter_ < 6
        again = clone(stopped).fit(X, y)
        fresh = clone(stopped).fit(X, y)           # the file's run is finished now
    for est in (again, fresh):
        for mine, theirs in zip(est.coefs_ + est.intercepts_,
                                whole.coefs_ + whole.intercepts_):
            np.testing.assert_array_equal(mine, theirs)
        assert est.n_iter_ == whole.n_iter_ and est.t_ == whole.t_
        # The epoch's loss is summed chunk by chunk: a stop re-groups the sum.
        np.testing.assert_allclose(est.loss_curve_, whole.loss_curve_, rtol=1e-13)
        assert est.validation_scores_ == whole.validation_scores_
        assert est.best_validation_score_ == whole.best_validation_score_
        assert (est.best_loss_ is None) == (whole.best_loss_ is None)


def test_an_estimators_checkpoint_refuses_what_it_cannot_continue(tmp_path, monkeypatch):
    import warnings

    from sklearn.base import clone
    X, y = _data("adam")
    path = tmp_path / "est.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with monkeypatch.context() as m:
            interrupt_after(m, 20, lambda session: session.stop())
            stopped = _estimator("adam", checkpoint=path).fit(X, y)
        with pytest.raises(FileExistsError, match="another, unfinished run"):
            clone(stopped).set_params(alpha=0.5).fit(X, y)
        with pytest.raises(ValueError, match="other data"):
            clone(stopped).fit(X[:-1], y[:-1])
        model = tmp_path / "model.cbp"
        cb.Network(3, [cb.Dense(2)], seed=0).save(model)
        _estimator("adam", checkpoint=model).fit(X, y)     # not a checkpoint: replaced
        assert cb.resume(model).epoch == 6
    for params, message in [(dict(solver="lbfgs"), "lbfgs"),
                            (dict(random_state=None), "int random_state")]:
        with pytest.raises(ValueError, match=message):
            clone(stopped).set_params(**params).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit"):
        clone(stopped).partial_fit(X, y)


def test_a_finished_estimator_run_is_replaced_and_a_search_refuses_one_file(tmp_path):
    """A finished run at `checkpoint` is replaced by the next fit, whatever its
    parameters (scikit-learn's own search fits candidates one after another);
    cbackprop's search refuses a checkpoint (one file for many fits)."""
    import warnings

    from sklearn.base import clone
    X, y = _data("adam")
    path = tmp_path / "est.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = _estimator("adam", checkpoint=path).fit(X, y)
        other = clone(first).set_params(alpha=0.5).fit(X, y)
        plain = _estimator("adam", alpha=0.5).fit(X, y)
    np.testing.assert_array_equal(other.coefs_[0], plain.coefs_[0])
    with pytest.raises(ValueError, match="fits many"):
        cb.GridSearchCV(first, {"alpha": [1e-4, 1e-2]}, cv=2).fit(X, y)

