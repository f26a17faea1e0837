"""Interrupts and threads: Ctrl-C stops a long fit within 0.5 s leaving a
usable model; stop() works from another thread; a second fit of the same
model (or with the same optimizer) raises RuntimeError; predict is correct
from many threads at once and, during a fit, sees θ as it was between two
engine chunks, never a mix; separate models train concurrently exactly as
they do one after another."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cbackprop as cb
from cbackprop._concurrency import ReadWriteLock
from cbackprop._core import _engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(cb.__file__)))

CHILD_SETUP = """
import json, signal, sys, time
import numpy as np
import cbackprop as cb

def report(**fields):
    print(json.dumps(fields), flush=True)

def started(epoch, logs):
    if epoch == 0:
        report(event="running")
"""

INTERRUPTED_FIT = CHILD_SETUP + """
rng = np.random.default_rng(0)
X = rng.normal(size=(30000, 64)).astype(np.float32)    # epochs longer than a chunk
y = rng.integers(0, 10, 30000)
net = cb.Network(64, [cb.Dense(256, "relu"), cb.Dense(10, "softmax")], seed=0)
opt = cb.SGD(lr=0.01, momentum=0.9)
try:
    net.fit(X, y, optimizer=opt, epochs=10**6, batch_size=32, callbacks=[started])
    report(event="finished")
except KeyboardInterrupt:
    caught = time.monotonic()
    steps = opt.t
    usable = cb.Network.from_config(net.get_config())
    usable.theta = net.theta
    same = bool(np.array_equal(usable.predict(X[:50]), net.predict(X[:50])))
    loss = net.evaluate(X, y)["loss"]
    handler_restored = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    net.fit(X[:64], y[:64], optimizer=opt, epochs=1, batch_size=32)
    report(event="interrupted", caught=caught, steps=steps,
           finite=bool(np.isfinite(net.theta).all()), same=same, loss=loss,
           handler_restored=handler_restored, steps_after=opt.t)
"""

ONE_BATCH_EPOCHS = CHILD_SETUP + """
rng = np.random.default_rng(1)
X = rng.normal(size=(64, 16))
y = rng.integers(0, 4, 64)
def make():
    return cb.Network(16, [cb.Dense(32, "tanh"), cb.Dense(4, "softmax")], dtype="float64", seed=5)
net, opt = make(), cb.Adam(lr=1e-3)
try:
    net.fit(X, y, optimizer=opt, epochs=10**7, batch_size=64, callbacks=[started])
except KeyboardInterrupt:
    # One batch per epoch: replaying opt.t epochs on a fresh copy must give
    # the same θ and optimizer state, bit for bit.
    replay, replay_opt = make(), cb.Adam(lr=1e-3)
    replay.fit(X, y, optimizer=replay_opt, epochs=opt.t, batch_size=64)
    report(event="interrupted", steps=opt.t,
           theta_equal=bool(np.array_equal(replay.theta, net.theta)),
           state_equal=bool(np.array_equal(replay_opt.state, opt.state)))
"""


#: The contract: KeyboardInterrupt within 0.5 s of SIGINT (ten times that under
#: tools/sanitize.sh, whose instrumented build runs several times slower).
LATENCY = 0.5 * (10 if "libasan" in os.environ.get("LD_PRELOAD", "") else 1)


def interrupt_quickly(script, time_field):
    """run_and_interrupt until the latency meets LATENCY, at most three times
    (a busy CI machine can stall one run); return the report and the latency."""
    best = None
    for delay in (0.3, 0.5, 0.7):
        (report,), sent = run_and_interrupt(script, delay)
        latency = report[time_field] - sent
        assert latency >= 0
        if best is None or latency < best[1]:
            best = (report, latency)
        if latency < LATENCY:
            break
    return best


def run_and_interrupt(script, delay=0.3):
    """Start script, wait until its fit is running, send SIGINT; return
    (parsed report lines, the monotonic time the signal was sent)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert json.loads(line) == {"event": "running"}, (line, proc.stderr.read())
        time.sleep(delay)   # well inside a later epoch's chunk
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()], sent


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_stops_a_long_fit_within_half_a_second_leaving_a_usable_model():
    report, latency = interrupt_quickly(INTERRUPTED_FIT, "caught")
    assert report["event"] == "interrupted"
    assert latency < LATENCY, f"KeyboardInterrupt came {latency:.3f} s after SIGINT"
    assert report["steps"] > 30000 // 32          # more than the first epoch
    assert report["finite"] and report["same"] and np.isfinite(report["loss"])
    assert report["handler_restored"]
    assert report["steps_after"] == report["steps"] + 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_an_interrupted_fit_leaves_theta_and_optimizer_consistent():
    (report,), _ = run_and_interrupt(ONE_BATCH_EPOCHS, delay=0.2)
    assert report["steps"] > 1
    assert report["theta_equal"] and report["state_equal"]


INTERRUPTED_ESTIMATOR = CHILD_SETUP + """
import warnings
rng = np.random.default_rng(0)
X = rng.normal(size=(12000, 64))
y = rng.integers(0, 10, 12000)
clf = cb.MLPClassifier(hidden_layer_sizes=(128,), max_iter=10**6, n_iter_no_change=10**9,
                       random_state=0,
                       callbacks=[lambda est, logs: started(logs["epoch"] - 1, logs)])
with warnings.catch_warnings(record=True) as caught_warnings:
    warnings.simplefilter("always")
    clf.fit(X, y)                       # scikit-learn's rule: Ctrl-C ends fit, with a warning
returned = time.monotonic()
proba = clf.predict_proba(X[:50])
report(event="returned", returned=returned, n_iter=clf.n_iter_,
       warned=any("interrupted" in str(w.message) for w in caught_warnings),
       finite=bool(all(np.isfinite(W).all() for W in clf.coefs_)),
       proba_ok=bool(np.allclose(proba.sum(axis=1), 1)))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_ends_an_estimator_fit_within_half_a_second_with_a_usable_model():
    pytest.importorskip("sklearn")
    report, latency = interrupt_quickly(INTERRUPTED_ESTIMATOR, "returned")
    assert report["event"] == "returned"
    assert latency < LATENCY, f"fit returned {latency:.3f} s after SIGINT"
    assert report["n_iter"] >= 1 and report["warned"]
    assert report["finite"] and report["proba_ok"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_during_command_line_training_exits_130_and_saves_a_whole_model(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cbackprop", "train", "digits", "--epochs", "100000",
         "--save", str(tmp_path / "model.cbp")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        while "optimizer:" not in proc.stdout.readline():
            assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        exited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.endswith("cbackprop: interrupted\n")
    assert "saved the model as it stands" in err
    assert exited < 2.0, f"exited {exited:.2f} s after SIGINT"   # KeyboardInterrupt + teardown
    assert os.listdir(tmp_path) == ["model.cbp"]      # whole, and no temporary left
    assert cb.load(tmp_path / "model.cbp").n_inputs == 64


# ---- threads -----------------------------------------------------------------

def classification(n=3000, d=32, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


def big_net(seed=0, d=32, k=5, dtype="float32"):
    return cb.Network(d, [cb.Dense(128, "relu"), cb.Dense(k, "softmax")], dtype=dtype,
                      seed=seed)


class FitThread(threading.Thread):
    """A long fit in a worker; `running` is set once its first epoch is done."""

    def __init__(self, net, X, y, optimizer=None, epochs=10**6):
        super().__init__(daemon=True)
        self.net, self.X, self.y, self.epochs = net, X, y, epochs
        self.optimizer = optimizer or cb.SGD(lr=0.01)
        self.running = threading.Event()
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.net.fit(
                self.X, self.y, optimizer=self.optimizer, epochs=self.epochs, batch_size=32,
                callbacks=[lambda epoch, logs: self.running.set()])
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.running.set()


def test_stop_from_another_thread():
    X, y = classification()
    net = big_net()
    worker = FitThread(net, X, y)
    worker.start()
    assert worker.running.wait(30)
    time.sleep(0.2)
    asked = time.monotonic()
    net.stop()
    worker.join(5)
    assert not worker.is_alive() and worker.error is None
    assert time.monotonic() - asked < LATENCY
    assert isinstance(worker.result, cb.History) and len(worker.result.epoch) >= 1
    assert np.isfinite(net.theta).all()
    # A fit in a worker thread leaves the process's Ctrl-C handling alone.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_concurrent_fit_raises_and_changes_nothing():
    X, y = classification()
    net, other = big_net(), big_net(seed=1)
    shared = cb.SGD(lr=0.01)
    worker = FitThread(net, X, y, optimizer=shared)
    worker.start()
    try:
        assert worker.running.wait(30)
        with pytest.raises(RuntimeError, match="already being fitted"):
            net.fit(X, y, optimizer=cb.SGD(lr=0.01), epochs=1)
        before = other.theta.copy()
        with pytest.raises(RuntimeError, match="optimizer is in use by another fit"):
            other.fit(X, y, optimizer=shared, epochs=1)
        np.testing.assert_array_equal(other.theta, before)
    finally:
        net.stop()
        worker.join(5)
    assert worker.error is None
    # Both locks are free again.
    net.fit(X[:64], y[:64], optimizer=shared, epochs=1)
    other.fit(X[:64], y[:64], optimizer=cb.SGD(lr=0.01), epochs=1)


def test_predict_evaluate_and_gradients_from_many_threads_at_once():
    X, y = classification(n=2000)
    net = big_net(dtype="float64")
    parts = [(X[i::8], y[i::8]) for i in range(8)]
    expected = [(net.predict(Xp), net.evaluate(Xp, yp), net.loss_and_grad(Xp, yp))
                for Xp, yp in parts]
    got = [None] * 8
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        Xp, yp = parts[i]
        runs = [(net.predict(Xp), net.evaluate(Xp, yp), net.loss_and_grad(Xp, yp))
                for _ in range(10)]
        got[i] = runs

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for (p, ev, (loss, grad)), runs in zip(expected, got, strict=True):
        for p2, ev2, (loss2, grad2) in runs:
            np.testing.assert_array_equal(p2, p)
            assert ev2 == ev and loss2 == loss
            np.testing.assert_array_equal(grad2, grad)


def test_predict_and_save_during_fit_see_whole_chunks(tmp_path, monkeypatch):
    """Record θ after every engine chunk; every predict (and every file
    saved) during the fit must match one of those versions exactly. Without
    the lock, predicts land inside chunks and match none."""
    X, y = classification(n=4000)
    net = big_net()
    versions = [net.theta.copy()]
    train_batches = _engine.train_batches

    def recording(*args):
        out = train_batches(*args)
        versions.append(args[1].copy())     # θ, still inside fit's write section
        return out

    monkeypatch.setattr(_engine, "train_batches", recording)
    probe = np.random.default_rng(2).normal(size=(8, 32))
    seen, files = [], []
    worker = FitThread(net, X, y, epochs=40)
    worker.start()
    deadline = time.monotonic() + 60
    while worker.is_alive() and time.monotonic() < deadline:
        seen.append(net.predict(probe))
        if len(seen) % 50 == 0:
            path = tmp_path / f"m{len(files)}"
            net.save(path)
            files.append(path)
    worker.join()
    assert worker.error is None
    assert len(versions) > 5 and len(seen) > 20, (len(versions), len(seen))
    reference = big_net()
    outputs = []
    for theta in versions:
        reference.theta = theta
        outputs.append(reference.predict(probe).tobytes())
    outputs = set(outputs)
    mixed = sum(p.tobytes() not in outputs for p in seen)
    assert mixed == 0, f"{mixed} of {len(seen)} predictions saw a half-updated θ"
    thetas = {v.tobytes() for v in versions}
    assert all(cb.load(f).theta.tobytes() in thetas for f in files)


def test_separate_models_train_concurrently_as_they_do_sequentially():
    data = [classification(n=1500, seed=s) for s in range(3)]

    def train(i, results):
        net = big_net(seed=i)
        net.fit(*data[i], optimizer=cb.Adam(lr=1e-3), epochs=3, batch_size=32,
                validation_data=data[(i + 1) % 3])
        results[i] = net.theta.copy()

    sequential, concurrent = {}, {}
    for i in range(3):
        train(i, sequential)
    threads = [threading.Thread(target=train, args=(i, concurrent)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i in range(3):
        np.testing.assert_array_equal(concurrent[i], sequential[i])


# ---- the lock itself ------------------------------------------------------------

def test_readers_share_and_a_writer_excludes():
    lock = ReadWriteLock()
    inside = threading.Barrier(3, timeout=5)

    def reader():
        with lock.read():
            inside.wait()    # three readers at once, or this times out

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    with lock.read():
        inside.wait()
    for t in threads:
        t.join()

    # The reader signals once it blocks on the lock's condition (a profile hook
    # sees the call to Condition.wait), so the writer releases only after the
    # reader is really waiting: the test exercises the lock on every run.
    order = []
    waiting = threading.Event()

    def on_call(frame, event, arg):
        if event == "call" and frame.f_code is threading.Condition.wait.__code__:
            waiting.set()

    def blocked_reader():
        sys.setprofile(on_call)
        with lock.read():
            sys.setprofile(None)
            order.append("read")

    with lock.write():
        t = threading.Thread(target=blocked_reader)
        t.start()
        assert waiting.wait(5), "the reader never waited for the writer"
        order.append("write done")
    t.join(5)
    assert order == ["write done", "read"]


def test_waiting_readers_go_before_the_next_writer():
    """A writer that releases and re-acquires at once (fit between chunks)
    must not starve readers that were waiting."""
    lock = ReadWriteLock()
    stop = threading.Event()
    reads = []

    def writer():
        while not stop.is_set():
            with lock.write():
                time.sleep(0.005)

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 2
        while len(reads) < 20 and time.monotonic() < deadline:
            with lock.read():
                reads.append(1)
    finally:
        stop.set()
        t.join()
    assert len(reads) == 20


def test_a_stale_read_registration_is_cleared_by_the_same_thread():
    """An exception between registering and entering the read section (an
    asynchronous KeyboardInterrupt) must not block writers forever."""
    lock = ReadWriteLock()
    cm = lock.read()
    cm.__enter__()          # registered, never exited
    with lock.write():      # same thread: the registration is known to be stale
        pass
    done = threading.Event()
    threading.Thread(target=lambda: (lock.write().__enter__(), done.set())).start()
    assert done.wait(5)
