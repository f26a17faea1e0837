"""GEMM providers (cbackprop/_providers.py): loaded privately, checked, chosen
by the rule or by set_blas/CBACKPROP_BLAS, threads set alike, results
reproducible per provider at n_threads=1, and SciPy's and NumPy's BLAS left
as they were."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cbackprop as cb
from cbackprop import _providers, _threads
from cbackprop._core import _blas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVAILABLE = ["scipy"] + [n for n, path in (("openblas", _providers._openblas_path()),
                                          ("mkl", _providers._mkl_path())) if path]


def run_python(code, **env):
    """Run `code` in a fresh interpreter from the repository root; its stdout."""
    full_env = {**os.environ, "CBACKPROP_BLAS": "", **env}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout, out.stderr


@pytest.fixture
def provider_setting():
    """Restore the rule after a test that calls set_blas."""
    previous = _providers.set_blas(None)
    _providers.set_blas(previous)
    yield
    _providers.set_blas(previous)


def test_the_extras_this_suite_needs_are_installed():
    # CI installs the [mkl] extra and the OpenBLAS wheel is a dependency, so no
    # provider test below is skipped there.
    if os.environ.get("CI") or os.environ.get("CBACKPROP_REQUIRE_PROVIDERS"):
        assert AVAILABLE == ["scipy", "openblas", "mkl"]


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_provider_computes_the_gemm(name, dtype, provider_setting):
    _providers.set_blas(name)
    index = _providers.PROVIDERS.index(name)
    rng = np.random.default_rng(1)
    tol = 1e-4 if dtype == "float32" else 1e-12
    # One shape per class (row, small, medium, large), every layout.
    for m, n, k in ((1, 40, 33), (17, 9, 23), (130, 257, 300), (300, 700, 1300)):
        for ta in (False, True):
            for tb in (False, True):
                A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                C0 = rng.standard_normal((m, n)).astype(dtype)
                want = 1.5 * (A.T if ta else A).astype(np.float64) @ (
                    B.T if tb else B).astype(np.float64) - 0.5 * C0
                for kernel in (index, "blas"):
                    C = C0.copy()
                    _blas.py_gemm(A, B, C, ta, tb, alpha=1.5, beta=-0.5, kernel=kernel)
                    err = np.abs(C - want).max() / max(1.0, np.abs(want).max())
                    assert err < tol, (name, m, n, k, ta, tb, kernel, err)
    assert _blas.provider_for(dtype, False, 300, 700, 1300, threads=1) == index


@pytest.mark.parametrize("name", AVAILABLE)
def test_each_provider_is_reproducible_on_one_thread(name, provider_setting):
    """The same GEMM gives the same bits whatever the operands' alignment (θ's
    layers lie at any offset), and a seeded fit gives the same θ twice."""
    _providers.set_blas(name)
    index = _providers.PROVIDERS.index(name)
    rng = np.random.default_rng(2)
    with _threads.BlasThreads(1):
        for dtype in ("float32", "float64"):
            for m, n, k in ((64, 128, 784), (128, 512, 512), (256, 1024, 512)):
                A0 = rng.standard_normal((m, k)).astype(dtype)
                B0 = rng.standard_normal((k, n)).astype(dtype)
                results = []
                for offset in (0, 1, 3, 8):       # the same values at other alignments
                    buf = np.empty(m * k + k * n + 16, dtype)
                    A = buf[offset:offset + m * k].reshape(m, k)
                    B = buf[offset + m * k:offset + m * k + k * n].reshape(k, n)
                    A[:], B[:] = A0, B0
                    C = np.zeros((m, n), dtype)
                    _blas.py_gemm(A, B, C, kernel=index)
                    results.append(C)
                for C in results[1:]:
                    assert np.array_equal(C, results[0]), (name, dtype, m, n, k)

    def fit():
        X = np.random.default_rng(3).standard_normal((300, 100)).astype("float32")
        y = (X[:, 0] > 0).astype(int)
        net = cb.Network(100, [cb.Dense(300, "relu"), cb.Dense(2, "softmax")],
                         dtype="float32", seed=1, n_threads=1)
        net.fit(X, y, optimizer=cb.SGD(lr=0.05, momentum=0.9), epochs=2, batch_size=150)
        return net.theta.copy()

    assert np.array_equal(fit(), fit())


def test_set_blas_checks_its_argument(provider_setting):
    with pytest.raises(ValueError, match="unknown GEMM provider"):
        _providers.set_blas("atlas")
    with pytest.raises(ValueError, match="unknown shape class"):
        _providers.set_blas({"huge": "scipy"})
    previous = _providers.set_blas({"large": "scipy"})
    assert _providers.set_blas(previous) == {"large": "scipy"}
    assert cb.set_blas is _providers.set_blas


def test_a_missing_or_broken_provider_falls_back_without_error():
    out, err = run_python(
        "import json, numpy as np\n"
        "from cbackprop import _providers as P\n"
        "def broken():\n"
        "    raise OSError('cannot open shared object file')\n"
        "P._LOADERS['openblas'] = broken\n"
        "P._mkl_path = lambda: None\n"
        "P.RULE = {k: {c: ('mkl', 'openblas', 'scipy') for c in v} for k, v in P._rule().items()}\n"
        "import cbackprop as cb\n"
        "X = np.random.default_rng(0).standard_normal((64, 8))\n"
        "net = cb.Network(8, [cb.Dense(4, 'relu'), cb.Dense(1, 'identity')], loss='mse', seed=0)\n"
        "net.fit(X, X[:, :1], epochs=1, batch_size=16)\n"
        "print(json.dumps([P.effective_rule()[('float64', 1)], P.report()]))\n"
        "try:\n"
        "    P.set_blas('mkl')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n")
    lines = out.splitlines()
    rule, report = json.loads(lines[0])
    assert set(rule.values()) == {"scipy"}
    why = {r["name"]: r.get("why", "") for r in report}
    assert "cannot open" in why["openblas"] and "not installed" in why["mkl"]
    assert "not available" in lines[1]


def test_a_provider_that_computes_wrongly_is_left_out(monkeypatch):
    if "openblas" not in AVAILABLE:
        pytest.skip("the OpenBLAS wheel is not installed")
    out, _ = run_python(
        "from cbackprop import _providers as P\n"
        "P._checked = lambda index: False\n"
        "P.set_blas(None)\n"
        "P.RULE = {k: {c: ('openblas',) for c in v} for k, v in P._rule().items()}\n"
        "P._ready = False\n"
        "P.ensure_loaded()\n"
        "print(P.effective_rule()[('float32', 1)]['large'], P._failed['openblas'])\n"
        "from cbackprop._core import _blas\n"
        "import numpy as np\n"
        "a = np.ones((2, 2))\n"
        "try:\n"
        "    _blas.py_gemm(a, a, a.copy(), kernel=1)\n"
        "except ValueError as exc:\n"
        "    print('refused:', exc)\n")
    assert out.startswith("scipy computed a wrong GEMM")
    assert "refused: provider entry 1 is not set" in out


def test_the_environment_variable_overrides_the_rule():
    want = AVAILABLE[-1]
    out, _ = run_python(
        "import json\nfrom cbackprop import _providers as P\n"
        "print(json.dumps(P.effective_rule()[('float32', 2)]))",
        CBACKPROP_BLAS=f"large={want},row=scipy")
    rule = json.loads(out)
    assert rule["large"] == want and rule["row"] == "scipy"
    out, err = run_python("from cbackprop import _providers as P\nprint(P._override)",
                          CBACKPROP_BLAS="atlas")
    assert out.strip() == "None" and "CBACKPROP_BLAS='atlas' ignored" in err


def test_providers_are_private_to_cbackprop():
    """After every provider is loaded and used: SciPy's own BLAS calls (the
    cython_blas cbackprop calls, and scipy.linalg.blas imported afterwards)
    still bind to SciPy's library, NumPy's to NumPy's, no provider's symbols
    are in the global scope, and each provider binds its own calls to itself."""
    code = (
        "import ctypes, json, numpy as np\n"
        "import cbackprop as cb\n"
        "from cbackprop import _providers as P\n"
        "for name in ('openblas', 'mkl'):\n"
        "    P._load(name)\n"
        "P.set_blas({'small': list(P._loaded)[-1] if P._loaded else 'scipy'})\n"
        "X = np.random.default_rng(0).standard_normal((64, 8))\n"
        "cb.Network(8, [cb.Dense(4, 'relu'), cb.Dense(1, 'identity')], loss='mse', seed=0)"
        ".fit(X, X[:, :1], epochs=1, batch_size=16)\n"
        "import scipy.linalg.blas as sb\n"
        "a = np.asfortranarray(np.ones((3, 3), np.float32))\n"
        "sb.sgemm(1.0, a, a); sb.dgemm(1.0, a.astype(float), a.astype(float))\n"
        "np.ones((50, 50)) @ np.ones((50, 50))\n"
        "glob = ctypes.CDLL(None)\n"
        "found = {s: hasattr(glob, s) for s in ('scipy_sgemm_', 'scipy_dgemm_', 'sgemm_',"
        " 'MKL_Set_Num_Threads')}\n"
        "print(json.dumps([found, [p.path for p in P.loaded()]]))\n")
    out, err = run_python(code, LD_DEBUG="bindings")
    found, paths = json.loads(out.splitlines()[-1])
    assert len(paths) == len(AVAILABLE) - 1
    # No scipy_* name is visible process-wide: the OpenBLAS wheel's stay private
    # (SciPy's own library is loaded locally too). MKL's layers export plain
    # names only (sgemm_, MKL_*), which the wheels' prefixed BLAS never binds to.
    assert not found["scipy_sgemm_"] and not found["scipy_dgemm_"], found
    if not any("mkl" in p for p in paths):
        assert not any(found.values()), found
    import scipy

    scipy_dir = os.path.dirname(os.path.realpath(scipy.__file__))
    scipy_libs = scipy_dir + ".libs"
    checked = 0
    for line in err.splitlines():
        if "binding file" not in line or "normal symbol" not in line:
            continue
        source, target = line.split("binding file ", 1)[1].split(" to ", 1)
        symbol = line.rsplit("`", 1)[-1].split("'")[0]
        if not any(s in symbol for s in ("gemm", "openblas", "MKL", "mkl")):
            continue
        if source.startswith(scipy_dir):         # SciPy's extension modules
            assert target.startswith(scipy_libs) or target.startswith(scipy_dir), line
            checked += 1
        for path in paths:                        # a provider's own calls
            if source.startswith(os.path.realpath(path)) and symbol.startswith("scipy_"):
                assert target.startswith(os.path.realpath(path)), line
    assert checked > 0, "LD_DEBUG=bindings showed no SciPy BLAS binding"


def test_one_thread_policy_over_every_provider(provider_setting):
    for name in AVAILABLE[1:]:
        _providers._load(name)
    _providers.set_blas(None)
    from threadpoolctl import threadpool_info

    files = {os.path.realpath(r["filepath"]) for r in threadpool_info()}
    for p in _providers.loaded():
        assert os.path.realpath(p.path) in files          # threadpoolctl sees them
    before = [p.get_threads() for p in _providers.loaded()]
    with _threads.BlasThreads(1):
        assert all(p.get_threads() == 1 for p in _providers.loaded())
        assert _blas.provider_for("float32", False, 256, 4096, 4096) == \
            _blas.provider_for("float32", False, 256, 4096, 4096, threads=1)
    assert [p.get_threads() for p in _providers.loaded()] == before


def test_info_lists_the_providers():
    out, _ = run_python("from cbackprop.__main__ import main\nmain(['info'])",
                        CBACKPROP_BLAS="row=openblas,large=mkl")
    assert "GEMM provider" in out
    for name in AVAILABLE:
        assert f"GEMM provider {name}: " in out
    if "mkl" in AVAILABLE:
        assert "runs float64 2t: large" in out.split("GEMM provider mkl")[1]


@pytest.mark.parametrize("name", AVAILABLE[1:])
def test_theta_digests_per_provider(name):
    """θ after the digest cases' seeded fits (n_threads=1) with every GEMM on
    one provider equals the digests recorded for it (tests/theta_digests.py)."""
    out, _ = run_python("import runpy, sys\nsys.argv = ['theta_digests.py']\n"
                        "runpy.run_path('tests/theta_digests.py', run_name='__main__')",
                        CBACKPROP_BLAS=name,
                        PYTHONPATH=ROOT + os.pathsep + os.path.join(ROOT, "tests"))
    if out.startswith("no digests recorded"):
        pytest.skip(out.strip())
    assert out.strip().endswith("differ: []"), out


@pytest.mark.parametrize("name", [n for n in AVAILABLE if n == "mkl"])
def test_mkl_threads_sleep_after_a_gemm(name, provider_setting):
    """MKL's OpenMP workers do not spin on a core after a GEMM (KMP_BLOCKTIME=0):
    that core is the one the next GEMM of the step, on another provider, needs."""
    if "KMP_BLOCKTIME" in os.environ:
        pytest.skip("KMP_BLOCKTIME is set by the user")
    import time

    _providers.set_blas(name)
    A, C = np.random.default_rng(0).random((400, 400)), np.zeros((400, 400))
    with _threads.BlasThreads(2):
        for _ in range(3):
            _blas.py_gemm(A, A, C, kernel=_providers.PROVIDERS.index(name))
        c0 = time.process_time()
        time.sleep(0.3)
        assert time.process_time() - c0 < 0.05


def test_the_openblas_wheel_rounds_as_scipys_openblas_with_the_same_kernel(provider_setting):
    """Where the OpenBLAS wheel and SciPy's OpenBLAS run the same kernel, they
    give the same bits (measured at the benchmark workloads' shapes): the rule
    may move a shape class between them without changing any result."""
    if "openblas" not in AVAILABLE:
        pytest.skip("the OpenBLAS wheel is not installed")
    _providers.set_blas({"large": "openblas"})
    kernels = {r["name"]: r["kernel"] for r in _providers.report() if r["loaded"]}
    if kernels["openblas"] != kernels["scipy"]:
        pytest.skip(f"different kernels: {kernels}")
    rng = np.random.default_rng(5)
    with _threads.BlasThreads(1):
        for dtype in ("float32", "float64"):
            for m, n, k, ta, tb in ((256, 1024, 512, False, False), (512, 256, 128, True, False),
                                    (128, 512, 10, False, True), (64, 10, 128, False, False)):
                A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                out = []
                for entry in (0, 1):
                    C = np.zeros((m, n), dtype)
                    _blas.py_gemm(A, B, C, ta, tb, kernel=entry)
                    out.append(C)
                assert np.array_equal(out[0], out[1]), (dtype, m, n, k, ta, tb)


def test_a_call_sets_every_provider_again_after_threadpoolctl_changed_it(provider_setting):
    """threadpoolctl's limits restore each library's own count when they end:
    the next cbackprop call must set the providers again, not trust what it
    set last time (MKL then ran on 2 threads while n_threads was 1)."""
    from threadpoolctl import threadpool_limits

    for name in AVAILABLE[1:]:
        _providers._load(name)
    _providers.set_blas(None)
    with threadpool_limits(2):
        with threadpool_limits(1):
            with _threads.BlasThreads(1):
                pass
        # threadpoolctl has put every library back to 2 threads here
        with _threads.BlasThreads(1):
            assert [p.get_threads() for p in _providers.loaded()] == [1] * len(
                _providers.loaded())
