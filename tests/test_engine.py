"""The training engine: fused updates, BLAS kernels, threads, memory."""

import numpy as np
import pytest

import cbackprop as cb

#: Tolerances for a few training steps compared with a step-by-step reference.
STEP_RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}

OPTIMIZERS = [
    lambda: cb.SGD(lr=0.1),
    lambda: cb.SGD(lr=0.1, weight_decay=0.01),
    lambda: cb.SGD(lr=0.05, momentum=0.9),
    lambda: cb.SGD(lr=0.05, momentum=0.9, weight_decay=0.02),
    lambda: cb.SGD(lr=0.05, momentum=0.8, nesterov=True),
    lambda: cb.Adam(lr=0.01),
    lambda: cb.Adam(lr=0.01, weight_decay=0.05),
    lambda: cb.AdamW(lr=0.01, weight_decay=0.1),
    lambda: cb.RMSprop(lr=0.01, momentum=0.5),
]


def small_problem(dtype, loss, n=23, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    else:
        y = rng.standard_normal((n, k)).astype(dtype)
    return X, y


def make_net(dtype, loss, alpha=0.0, d=5, k=3, seed=1):
    out = "softmax" if loss == "cross_entropy" else "identity"
    return cb.Network(d, [cb.Dense(8, "relu"), cb.Dense(6, "tanh"), cb.Dense(k, out)],
                      loss=loss, dtype=dtype, seed=seed, alpha=alpha)


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=lambda f: repr(f()))
@pytest.mark.parametrize("loss,alpha", [("cross_entropy", 0.0), ("mse", 0.03)])
@pytest.mark.parametrize("B", [7, 1])       # 23 rows: batches of 7, 7, 7 and 2; or of 1
def test_fused_updates_equal_gradient_then_step(make_opt, loss, alpha, B, dtype):
    """fit updates each layer inside the backward pass (SGD even inside the
    ∂W GEMM, or its outer product at batch 1); the result must equal a full
    gradient then one optimizer step."""
    X, y = small_problem(dtype, loss)
    net, ref = make_net(dtype, loss, alpha), make_net(dtype, loss, alpha)
    opt, ref_opt = make_opt(), make_opt()
    net.fit(X, y, optimizer=opt, epochs=2, batch_size=B, shuffle=False)
    for _ in range(2):
        for pos in range(0, X.shape[0], B):
            _, g = ref.loss_and_grad(X[pos:pos + B], y[pos:pos + B])
            ref_opt.step(ref.theta, g)
    assert opt.t == ref_opt.t == 2 * -(-X.shape[0] // B)
    np.testing.assert_allclose(net.theta, ref.theta, rtol=STEP_RTOL[dtype],
                               atol=STEP_RTOL[dtype])
    np.testing.assert_allclose(opt.state, ref_opt.state, rtol=STEP_RTOL[dtype],
                               atol=STEP_RTOL[dtype])


# ---- threads -----------------------------------------------------------------

def _blas_threads_now():
    from cbackprop import _threads
    return _threads._blas_threads_now()


def test_networks_trained_on_threads_equal_sequential_training():
    """Each network owns its workspace and random stream: training several at
    once on Python threads gives bitwise the results of one after the other."""
    import threading

    X, y = small_problem(np.float32, "cross_entropy", n=300)

    def fit(net, opt):
        net.fit(X, y, optimizer=opt, epochs=3, batch_size=16)

    def fresh():
        return [(make_net(np.float32, "cross_entropy", seed=s), cb.Adam(lr=0.01))
                for s in range(4)]

    sequential = fresh()
    for net, opt in sequential:
        fit(net, opt)
    threaded = fresh()
    workers = [threading.Thread(target=fit, args=pair) for pair in threaded]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for (a, _), (b, _) in zip(sequential, threaded):
        np.testing.assert_array_equal(a.theta, b.theta)


def test_concurrent_fits_do_not_oversubscribe_and_blas_is_restored():
    """While two fits run at once each BLAS call gets cores // 2 threads; after
    both end the BLAS has its own thread count back."""
    import threading

    from threadpoolctl import threadpool_limits

    from cbackprop import _threads

    X, y = small_problem(np.float32, "cross_entropy", n=64)
    both_running = threading.Barrier(2, timeout=30)
    seen = []

    def during(epoch, logs):
        if epoch == 0:
            both_running.wait()
            seen.append(_blas_threads_now())
            both_running.wait()

    def fit(seed):
        net = make_net(np.float32, "cross_entropy", seed=seed)
        net.n_threads = 2
        net.fit(X, y, epochs=2, batch_size=8, callbacks=[during])

    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads_now()
        workers = [threading.Thread(target=fit, args=(s,)) for s in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert _blas_threads_now() == before
    assert seen == [max(1, _threads.available_cores() // 2)] * 2


def test_small_shapes_use_one_thread_and_n_threads_caps_the_rest():
    from cbackprop import _threads

    sizes = [64, 32, 10]
    assert _threads.threads_for_shape(sizes, 32, 8, "float32") == 1
    big = [1024, 4096, 1024]
    assert _threads.threads_for_shape(big, 256, 2, "float32") == 2
    assert _threads.threads_for_shape(big, 256, 1, "float32") == 1
    # The GEMMs that threads share count: BLAS's, and the hand kernel's that
    # split their rows (at AVX-512 a float32 784-128 layer at batch 64); a
    # batch of 8 has too few flops for a second thread.
    small = [784, 128, 10]
    assert _threads.threads_for_shape(small, 64, 2, "float64") == 2
    assert _threads.threads_for_shape(small, 64, 2, "float32") == 2
    assert _threads.threads_for_shape(small, 8, 2, "float32") == 1
    net = cb.Network(1024, [cb.Dense(4096, "relu"), cb.Dense(1024)], n_threads=1)
    from cbackprop import _session

    assert _session.blas_threads(net, 256).threads == 1


def run_chooser(chooser, seconds_per_row):
    """Drive a FitThreads through 40 chunks whose speed depends on its choice."""
    with chooser:
        for _ in range(40):
            rows = chooser.chunk_rows(800, 8)
            used = chooser._probe_threads if chooser.probing else chooser.threads
            chooser.observe(rows * seconds_per_row[used], rows)


def test_fit_threads_keeps_the_faster_choice(monkeypatch):
    """FitThreads probes the other thread count and adopts it only when faster."""
    from cbackprop import _threads

    monkeypatch.setattr(_threads, "cpu_seconds", lambda: None)       # an idle machine
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(_threads, "available_cores", lambda: 2)
    chooser = _threads.FitThreads(2, 2)
    run_chooser(chooser, {1: 1e-6, 2: 3e-6})     # one thread 3× faster (a busy core)
    assert chooser.threads == 1
    assert chooser.interval > 4                   # probes of 2 threads lost: backing off
    chooser = _threads.FitThreads(2, 2)
    run_chooser(chooser, {1: 2e-6, 2: 1e-6})
    assert chooser.threads == 2


def test_fit_threads_stay_on_one_thread_while_other_processes_hold_the_cores(monkeypatch):
    from cbackprop import _threads

    clock = {"wall": 0.0, "busy": 0.0, "own": 0.0}

    def busy_machine():
        # Each look: 0.1 s later, both cores busy, this process used 1 core.
        clock["wall"] += 0.1
        clock["busy"] += 0.2
        clock["own"] += 0.1
        return clock["wall"], clock["busy"], clock["own"]

    monkeypatch.setattr(_threads, "cpu_seconds", busy_machine)
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(_threads, "available_cores", lambda: 2)
    chooser = _threads.FitThreads(2, 2)
    probes = []
    with chooser:
        for _ in range(40):
            rows = chooser.chunk_rows(800, 8)
            probes.append(chooser.probing)
            chooser.observe(rows * 1e-6, rows)    # equal speed: only the load decides
    assert chooser.threads == 1
    assert chooser.others > 0.9
    assert probes.count(True) <= 1                # at most the first probe, down to 1


# ---- memory ------------------------------------------------------------------

def test_predict_memory_is_bounded():
    """predict runs in row chunks: beyond its output it allocates one chunk's
    workspace, however many rows there are."""
    import tracemalloc

    from cbackprop._core import _engine

    net = cb.Network(16, [cb.Dense(256, "relu"), cb.Dense(256, "relu"), cb.Dense(3, "softmax")],
                     dtype="float32", seed=0)
    X = np.random.default_rng(0).standard_normal((200_000, 16)).astype(np.float32)
    from cbackprop import _session

    rows = _session.chunk_rows(net.engine_layout(), X.shape[0])
    assert rows < X.shape[0]
    tracemalloc.start()
    try:
        out = net.predict(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    workspace = _engine.workspace_size(net.engine_layout(), rows) * 4
    assert peak < out.nbytes + workspace + (1 << 20)
    # All rows at once would need the hidden activations of every row.
    assert peak < 200_000 * 256 * 4
    np.testing.assert_allclose(out[-5:], net.predict(X[-5:]), rtol=1e-6)


def test_no_allocation_grows_with_the_number_of_batches():
    """The workspace is allocated once per fit and batches run inside the
    engine: 40 epochs allocate no more than 1 (tracemalloc's peak), and the
    peak is the fit's known buffers, with no room for a batch-sized temporary."""
    import tracemalloc

    from cbackprop._core import _engine

    X, y = small_problem(np.float32, "cross_entropy", n=512)
    net = cb.Network(5, [cb.Dense(256, "relu"), cb.Dense(3, "softmax")], seed=0)
    opt = cb.SGD(lr=0.01, momentum=0.9)
    B = 64
    net.fit(X, y, optimizer=opt, epochs=1, batch_size=B)     # optimizer state
    peaks = []
    for epochs in (1, 40):
        tracemalloc.start()
        try:
            net.fit(X, y, optimizer=opt, epochs=epochs, batch_size=B)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # 40 epochs × 8 batches: the only growth allowed is the per-epoch History.
    assert peaks[1] - peaks[0] < 40 * 1024
    # workspace, order, the saved θ and state, the one-hot targets: a temporary
    # of one batch's activations (64 × 256 × 4 bytes) would not fit in the slack.
    known = (_engine.workspace_size(net.engine_layout(), B) * 4 + X.shape[0] * 8
             + 2 * net.theta.nbytes + opt.state.nbytes + X.shape[0] * 3 * 4)
    assert peaks[0] < known + 48 * 1024


# ---- GEMM kernels --------------------------------------------------------------

GEMM_SHAPES = [(1, 1, 1), (1, 7, 1), (5, 3, 1), (784, 12, 1), (1, 128, 784), (1, 10, 128),
               (1, 32, 10), (1, 33, 9), (3, 1, 5), (7, 5, 3), (13, 17, 11), (32, 32, 64),
               (4, 8, 16), (33, 10, 31), (64, 128, 10), (37, 200, 300)]


@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_hand_kernel_and_blas_agree_with_numpy(m, n, k, trans_a, trans_b, dtype, rtol):
    """Every path of the one GEMM entry point, on shapes with 1s and odd
    sizes: C = α·op(A)·op(B) + β·C, and β = 0 never reads C."""
    from cbackprop._core._blas import py_gemm

    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    opA = (A.T if trans_a else A).astype(np.float64)
    opB = (B.T if trans_b else B).astype(np.float64)
    for alpha, beta in [(1.0, 0.0), (-0.5, 0.75)]:
        want = alpha * opA @ opB + beta * C0
        for kernel in ("hand", "blas", "auto"):
            C = C0.copy() if beta else np.full((m, n), np.nan, dtype)
            py_gemm(A, B, C, trans_a, trans_b, alpha, beta, kernel=kernel)
            np.testing.assert_allclose(C, want, rtol=rtol * 10, atol=rtol * 10 * np.sqrt(k),
                                       err_msg=f"{kernel} α={alpha} β={beta}")


def test_gemm_uses_the_hand_kernel_only_where_it_measured_faster():
    from cbackprop._core._blas import kernel_for, kernel_level

    assert kernel_for("float32", False, 128, 10, 1) == "hand"       # ∂W, batch 1, 10 units
    assert kernel_for("float32", True, 1, 32, 10) == "hand"         # δ·Wᵀ, batch 1
    assert kernel_for("float64", False, 128, 10, 1) == "BLAS"
    for m, n, k in [(1, 128, 784), (784, 128, 1), (32, 10, 32), (128, 512, 784),
                    (64, 64, 128)]:
        assert kernel_for("float32", False, m, n, k) == "BLAS"
    # The vector kernels (AVX2, AVX-512): the tiny layers' GEMMs.
    vector = kernel_level() != "portable"
    assert kernel_for("float32", False, 32, 32, 64) == ("hand" if vector else "BLAS")
    assert kernel_for("float64", True, 32, 32, 10) == ("hand" if vector else "BLAS")
    assert kernel_for("float64", False, 32, 32, 64) == "BLAS"     # its small kernels win
    # One row: small ones in both dtypes, large ones in float32 (the row path).
    assert kernel_for("float64", False, 1, 64, 64) == ("hand" if vector else "BLAS")
    assert kernel_for("float32", False, 1, 1024, 1024) == ("hand" if vector else "BLAS")
    assert kernel_for("float64", False, 1, 1024, 1024) == "BLAS"
    # AVX-512 only: float32 GEMMs of 1–7 Mi multiply-adds and 32–256 columns
    # (the forward pass and ∂W of a 784-128 layer at batch 64).
    avx512 = kernel_level() == "avx512"
    for m, n, k in [(64, 128, 784), (784, 128, 64), (8, 256, 512)]:
        assert kernel_for("float32", False, m, n, k) == ("hand" if avx512 else "BLAS")
        assert kernel_for("float64", False, m, n, k) == "BLAS"
    assert kernel_for("float32", False, 64, 512, 64) == "BLAS"      # 512 columns


def test_py_gemm_rejects_mismatched_shapes():
    from cbackprop._core._blas import py_gemm

    A = np.zeros((3, 4))
    with pytest.raises(ValueError, match="GEMM"):
        py_gemm(A, np.zeros((5, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="GEMM"):
        py_gemm(A, np.zeros((4, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize("where", [0, 1, 4095, 4096, 9999])
def test_all_finite_finds_nan_and_inf_anywhere(where, dtype):
    from cbackprop._core import _engine

    info = np.finfo(dtype)
    x = np.random.default_rng(0).standard_normal(10_000).astype(dtype)
    x[:4] = [info.max, -info.max, info.smallest_subnormal, -0.0]
    assert _engine.all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[where] = bad
        assert not _engine.all_finite(y)


def test_fit_threads_on_sure_shapes_do_not_probe_but_follow_the_load(monkeypatch):
    from cbackprop import _threads

    busy = {"others": 0.0}
    clock = {"wall": 0.0, "busy": 0.0, "own": 0.0}

    def machine():
        clock["wall"] += 0.1
        clock["own"] += 0.1
        clock["busy"] += 0.1 + 0.1 * busy["others"]
        return clock["wall"], clock["busy"], clock["own"]

    monkeypatch.setattr(_threads, "cpu_seconds", machine)
    monkeypatch.setattr(_threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(_threads, "available_cores", lambda: 2)
    chooser = _threads.FitThreads(2, 2, sure=True)
    with chooser:
        for chunk in range(30):
            busy["others"] = 1.0 if 10 <= chunk < 20 else 0.0
            rows = chooser.chunk_rows(800, 8)
            assert not chooser.probing
            chooser.observe(rows * 1e-6, rows)
            if chunk == 15:
                assert chooser.threads == 1       # another process holds the core
    assert chooser.threads == 2                   # and gave it back


SPLIT_SHAPES = [(64, 128, 784), (784, 128, 64), (100, 33, 400), (33, 1000, 64), (4096, 10, 64)]


def _split_operands(m, n, k, trans_a, trans_b, dtype):
    rng = np.random.default_rng(m + 7 * n + 31 * k)
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return A, B, rng.standard_normal((m, n)).astype(dtype)


@pytest.mark.parametrize("m,n,k", SPLIT_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_hand_kernel_rows_split_over_threads_give_the_same_bits(m, n, k, trans_a, trans_b,
                                                                dtype):
    """A hand kernel's GEMM large enough splits its rows over a pool of
    threads: each band is the same kernel on whole rows, so C is bitwise that
    of one thread, for every thread count and layout, with β ≠ 0 too."""
    from cbackprop._core import _blas

    assert _blas.hand_kernel_splits(m, n, k) == (m >= 32 and m * n * k >= 1 << 20)
    A, B, C0 = _split_operands(m, n, k, trans_a, trans_b, dtype)
    results = []
    try:
        for threads in (1, 2, 3, 8):
            _blas.set_threads(threads)
            for beta in (0.0, 0.75):
                C = C0.copy()
                _blas.py_gemm(A, B, C, trans_a, trans_b, -0.5, beta, kernel="hand")
                results.append(C)
    finally:
        _blas.set_threads(1)
    for i, C in enumerate(results[2:], 2):
        np.testing.assert_array_equal(C, results[i % 2])


def test_split_gemms_on_two_python_threads_and_after_fork_are_whole():
    """Two Python threads' GEMMs share the pool (one runs whole while the other
    holds it) and give the one-thread bits; a child forked after the pool
    started starts its own and finishes."""
    import multiprocessing
    import threading

    from cbackprop._core import _blas

    A, B, C0 = _split_operands(784, 128, 64, True, False, np.float32)
    want = C0.copy()
    _blas.py_gemm(A, B, want, True, False, 1.0, 0.5, kernel="hand")
    got = [C0.copy() for _ in range(2)]

    def run(C):
        _blas.py_gemm(A, B, C, True, False, 1.0, 0.5, kernel="hand")

    try:
        _blas.set_threads(2)
        workers = [threading.Thread(target=run, args=(C,)) for C in got]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        child = multiprocessing.get_context("fork").Process(target=run, args=(C0.copy(),))
        child.start()
        child.join(60)
    finally:
        _blas.set_threads(1)
    for C in got:
        np.testing.assert_array_equal(C, want)
    assert child.exitcode == 0
