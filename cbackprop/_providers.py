"""GEMM providers: which BLAS library runs the GEMMs that cbackprop sends to BLAS.

`_core/_blas.pyx` keeps a table of sgemm_/dgemm_ pointers (the Fortran BLAS
ABI) and a rule that picks an entry per dtype, thread count (1, or more) and
shape class ("row": one row, a batch of one; "small" < 4 Mi multiply-adds;
"medium" < 256 Mi; "large"). This module fills the table and sets the rule:

* "scipy": SciPy's own BLAS (`scipy.linalg.cython_blas`; in a wheel install
  SciPy's bundled OpenBLAS). Entry 0, always there.
* "openblas": the newest OpenBLAS wheel, `scipy-openblas32` (a dependency).
* "mkl": Intel MKL, from the `mkl` wheel (`pip install cbackprop[mkl]`).

The others are loaded privately, with dlopen's RTLD_LOCAL (the OpenBLAS
wheel's symbols never enter the process's global scope, so SciPy's and
NumPy's BLAS keep resolving to their own libraries even though that wheel
exports the very names SciPy's OpenBLAS does) and RTLD_DEEPBIND (their own
calls stay inside them). MKL's libmkl_rt loads its own layers globally
whatever we ask, which puts the plain names (sgemm_, cblas_sgemm…) in the
global scope: harmless to the BLAS of SciPy's and NumPy's wheels (prefixed
names), so MKL is loaded only where no BLAS with plain names is loaded
(`_unprefixed_blas`).
The Python package `scipy_openblas32` is never imported: only its library
file is located. A provider is loaded at the first cbackprop call that may
use it (`ensure_loaded`, from `_threads.BlasThreads`), not at import: MKL's
first call costs ~0.1 s. Each is checked with small exact GEMMs (both
dtypes, every layout) before it is used; one that is missing, fails to load
or computes wrongly is left out without an error (`report()` says why), and
its shapes fall back to the next provider of the rule's list, at last SciPy's.

GEMMs round as the kernel that runs them: results depend on the provider
(and, as before, on its kernel and on the hand kernels' level). With
n_threads=1 each provider is reproducible run to run (MKL with its
conditional-numerical-reproducibility mode, see `MKL_CNR`), and the θ digests
of tests/theta_digests.json are kept per provider.

The rule is `RULES` below, per CPU vendor, with the measurements it comes
from (bench/kernels.py --providers; bench/README.md, "GEMM providers").
`set_blas()` / `CBACKPROP_BLAS` override it; `cbackprop info` prints
which provider runs which shape class, with each provider's version and
kernel.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import threading
import warnings

import numpy as np

from ._core import _blas

#: Provider names; the position is the entry of _blas's table.
PROVIDERS = ("scipy", "openblas", "mkl")
CLASSES = tuple(_blas.SHAPE_CLASSES)

#: The measured rule, per CPU vendor: for (dtype, threads) and each shape class,
#: the providers in order of preference (the first one loaded runs it). A
#: provider other than SciPy's is named only where it measured at least 3 %
#: faster in two runs; the rest stay on SciPy's. Tables and machines:
#: bench/README.md, "GEMM providers (issue 30)".
#:
#: AMD (Zen 5 EPYC, 2 cores, AVX-512; OpenBLAS's SkylakeX kernel): from
#: `python bench/kernels.py --providers` (thread CPU time, 7 interleaved
#: repeats, medians, summed per class; two runs). Time against SciPy's
#: OpenBLAS 0.3.30 on 1 thread: the OpenBLAS 0.3.34 wheel 0.87/0.87 (small),
#: 0.94/0.93 (medium), 0.91/0.93 (large) in float32; 0.96/0.95, 0.99/0.98,
#: 0.98/0.99 in float64; 0.98–1.01 at one row. MKL 2026.2 1.7–3.3× slower
#: in every class (it runs no AVX-512 path on AMD), so never chosen here.
#: The wheel gives SciPy's OpenBLAS's bits at every shape measured (same
#: SkylakeX kernels): on 1 thread it is a pure gain. 2 threads: SciPy's for
#: every class. On the shared machine (other processes holding 1.5–2 of the
#: 2 cores) the wheel measured 1.17× SciPy's time on the large class in three
#: runs and 0.92–0.94× on the small one, medium was not measurable, and two
#: OpenBLAS pools that both run threaded GEMMs in one step would contend:
#: each pool's workers keep spinning ~0.1 s after its GEMM.
#:
#: Intel (Xeon, AVX-512, SkylakeX kernel): from issue 30's interleaved GEMM
#: study at the engine's shapes (medians, 1 and 2 threads), not re-measured
#: here: the OpenBLAS wheel 12–17 % faster than SciPy's on the large NN
#: sgemm on 1 thread and up to 1.3× on 2; MKL faster still at medium shapes
#: (1.1–1.5× on 1 thread, 1.1–1.7× on 2) and at large shapes on 2 threads
#: (up to 1.3×); OpenBLAS fastest at tiny shapes and at batch 1. Other CPUs:
#: SciPy's alone until measured.
_S, _O, _M = ("scipy",), ("openblas", "scipy"), ("mkl", "openblas", "scipy")
RULES: dict[str, dict[tuple[str, int], dict[str, tuple[str, ...]]]] = {
    "AuthenticAMD": {
        ("float32", 1): {"row": _S, "small": _O, "medium": _O, "large": _O},
        ("float32", 2): {"row": _S, "small": _S, "medium": _S, "large": _S},
        ("float64", 1): {"row": _S, "small": _O, "medium": _S, "large": _S},
        ("float64", 2): {"row": _S, "small": _S, "medium": _S, "large": _S},
    },
    "GenuineIntel": {
        ("float32", 1): {"row": _S, "small": _S, "medium": _M, "large": _O},
        ("float32", 2): {"row": _S, "small": _S, "medium": _M, "large": _M},
        ("float64", 1): {"row": _S, "small": _S, "medium": _M, "large": _O},
        ("float64", 2): {"row": _S, "small": _S, "medium": _M, "large": _M},
    },
}
_SCIPY_ONLY = {(dt, t): {c: _S for c in CLASSES} for dt in ("float32", "float64") for t in (1, 2)}


def cpu_vendor() -> str:
    """The CPU's vendor id ("GenuineIntel", "AuthenticAMD"…), "" where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


#: The rule this process uses (this CPU's vendor's, or SciPy's alone), set at
#: the first call that needs it (reading /proc/cpuinfo costs ~2 ms of import).
RULE: dict[tuple[str, int], dict[str, tuple[str, ...]]] | None = None


def _rule() -> dict[tuple[str, int], dict[str, tuple[str, ...]]]:
    global RULE
    if RULE is None:
        RULE = RULES.get(cpu_vendor(), _SCIPY_ONLY)
    return RULE

#: MKL's conditional numerical reproducibility: its code path for this CPU
#: (mkl_cbwr_get_auto_branch) with MKL_CBWR_STRICT, so a GEMM's bits do not
#: depend on the alignment of its arrays (θ's layers lie at any offset).
MKL_CNR = True
_MKL_CBWR_STRICT = 0x10000
_MKL_BRANCHES = {1: "off", 2: "auto", 3: "compatible", 4: "sse2", 6: "ssse3", 7: "sse4_1",
                 8: "sse4_2", 9: "avx", 10: "avx2", 11: "avx512_mic", 12: "avx512",
                 13: "avx512_mic_e1", 14: "avx512_e1"}

# RTLD_DEEPBIND: a provider's references to its own exported names bind to
# itself even if a library with the same names (another scipy_openblas) was
# loaded globally. The sanitizers' runtimes refuse it (ASan aborts the dlopen),
# so it is left out under them.
_DLOPEN_MODE = os.RTLD_LOCAL | os.RTLD_NOW | (
    0 if "san" in os.environ.get("LD_PRELOAD", "") else getattr(os, "RTLD_DEEPBIND", 0))

_lock = threading.Lock()
_loaded: dict[str, _Provider] = {}     # name -> provider, loaded and checked
_failed: dict[str, str] = {}           # name -> why it is not used
_override: dict[str, str] | None = None  # shape class -> provider (set_blas)
_ready = False                          # the table and rule are set for _override


class _Provider:
    """A loaded BLAS library: its sgemm_/dgemm_ and how to read and set its threads."""

    def __init__(self, name, path, lib, sgemm, dgemm, version, kernel, set_threads, get_threads):
        self.name, self.path, self.lib = name, path, lib
        self.sgemm, self.dgemm = sgemm, dgemm
        self.version, self.kernel = version, kernel
        self.set_threads, self.get_threads = set_threads, get_threads
        self.threads = None    # the count cbackprop/_threads.py last set
        # Per Python thread, for the libraries whose count can be per thread
        # (MKL): claim() makes the calling thread follow the count set_threads
        # sets and returns what release() puts back.
        self.claim = self.release = None


def _address(lib, name) -> int:
    import ctypes

    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0


def _openblas_path() -> str | None:
    """The library file of the scipy-openblas32 wheel, located without importing it."""
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(f for f in glob.glob(os.path.join(folder, "lib", "libscipy_openblas*"))
                       if f.endswith((".so", ".dylib", ".dll")) or ".so." in f)
        if found:
            return found[0]
    return None


def _mkl_path() -> str | None:
    """libmkl_rt of the `mkl` wheel (installed under the environment's lib/)."""
    import importlib.metadata

    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libmkl_rt.so"):
            path = os.path.realpath(f.locate())
            if os.path.exists(path):
                return path
    return None


def _load_openblas() -> _Provider | None:
    import ctypes

    path = _openblas_path()
    if path is None:
        return None
    lib = ctypes.CDLL(path, mode=_DLOPEN_MODE)
    prefix = "scipy_" if hasattr(lib, "scipy_sgemm_") else ""
    for fn in ("openblas_get_config", "openblas_get_corename"):
        getattr(lib, prefix + fn).restype = ctypes.c_char_p
    config = getattr(lib, prefix + "openblas_get_config")().decode()
    version = config.split()[1] if config.startswith("OpenBLAS ") else config
    kernel = getattr(lib, prefix + "openblas_get_corename")().decode()
    setter = getattr(lib, prefix + "openblas_set_num_threads")
    setter.restype = None
    getter = getattr(lib, prefix + "openblas_get_num_threads")
    return _Provider("openblas", path, lib, _address(lib, prefix + "sgemm_"),
                     _address(lib, prefix + "dgemm_"), version, kernel,
                     lambda n: setter(int(n)), lambda: int(getter()))


def _load_mkl() -> _Provider | None:
    import ctypes

    path = _mkl_path()
    if path is None:
        return None
    clash = _unprefixed_blas()
    if clash:
        raise RuntimeError(f"{clash} exports the plain BLAS names that MKL's layers would "
                           "take over process-wide")
    lib = ctypes.CDLL(path, mode=_DLOPEN_MODE)
    _mkl_openmp_sleeps(os.path.dirname(path))
    # MKL's C interface (the lower-case names are its Fortran one, by pointer).
    branch = int(lib.MKL_CBWR_Get_Auto_Branch())
    if MKL_CNR:
        # Before MKL's first computation; 0 on success. Named code paths (AVX2,
        # AVX512…) are refused on non-Intel CPUs: the auto branch is not.
        if lib.MKL_CBWR_Set(branch | _MKL_CBWR_STRICT) != 0:
            raise RuntimeError(f"MKL_CBWR_Set({branch} | STRICT) refused")
    buf = ctypes.create_string_buffer(256)
    lib.mkl_get_version_string(buf, len(buf))
    text = buf.value.decode(errors="replace")
    words = text.replace("-", " ").split()
    version = words[words.index("Version") + 1] if "Version" in words[:-1] else text.strip()
    kernel = ("own dispatch" if branch == 2 else f"cbwr branch {_MKL_BRANCHES.get(branch, branch)}"
              ) + (", CNR strict" if MKL_CNR else "")
    setter = lib.MKL_Set_Num_Threads
    setter.restype = None
    getter = lib.MKL_Get_Max_Threads
    provider = _Provider("mkl", path, lib, _address(lib, "sgemm_"), _address(lib, "dgemm_"),
                         version, kernel, lambda n: setter(int(n)), lambda: int(getter()))
    # threadpoolctl limits MKL per thread (MKL_Set_Num_Threads_Local), and a
    # thread's own count overrides the global one that _threads sets: while a
    # cbackprop call runs, its thread's own count is cleared (0: the global).
    local = lib.MKL_Set_Num_Threads_Local
    provider.claim = lambda: int(local(0))
    provider.release = lambda old: local(int(old))
    return provider


def _mkl_openmp_sleeps(folder: str) -> None:
    """MKL's threads go to sleep as soon as a GEMM ends (KMP_BLOCKTIME=0),
    unless the user set KMP_BLOCKTIME.

    Intel's OpenMP, under MKL's threaded layer, otherwise keeps its workers
    spinning for 200 ms after each parallel region: measured here, 0.2 s of
    CPU burnt in a 0.3 s pause after a 2-thread dgemm (0 with blocktime 0).
    That spinning core is one that SciPy's or the OpenBLAS wheel's threads,
    or the hand kernels on the calling thread, need for the next GEMM of the
    same step. (OpenBLAS's own workers spin ~0.1 s too, yielding the core.)
    The default is set before MKL starts its OpenMP runtime (the same library
    file, already loaded, is the one MKL then uses).
    """
    import ctypes

    if "KMP_BLOCKTIME" in os.environ:
        return
    for f in sorted(glob.glob(os.path.join(folder, "libiomp5.so*"))):
        try:
            omp = ctypes.CDLL(f, mode=os.RTLD_LOCAL | os.RTLD_NOW)
            omp.kmp_set_defaults(b"KMP_BLOCKTIME=0")
        except (OSError, AttributeError):
            continue
        return


def _unprefixed_blas() -> str | None:
    """A BLAS library already loaded (SciPy's, NumPy's…) that exports the plain
    names sgemm_/cblas_sgemm, or None.

    libmkl_rt loads MKL's interface and core layers with RTLD_GLOBAL whatever
    mode it was opened with, so MKL's sgemm_, cblas_sgemm… enter the process's
    global scope, where a later first call of such a library's users would bind
    to them. The BLAS of SciPy's and NumPy's wheels use prefixed names
    (scipy_sgemm_, scipy_sgemm_64_), which nothing of MKL's can capture; with a
    system BLAS under SciPy or NumPy, MKL is not loaded.
    """
    import ctypes

    from threadpoolctl import threadpool_info

    for r in threadpool_info():
        if r.get("user_api") != "blas" or is_provider_file(r.get("filepath", "")):
            continue
        try:
            lib = ctypes.CDLL(r["filepath"], mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
        if any(hasattr(lib, name) for name in ("sgemm_", "cblas_sgemm", "sgemm")):
            return r["filepath"]
    return None


_LOADERS = {"openblas": _load_openblas, "mkl": _load_mkl}


def _checked(index: int) -> bool:
    """Two small GEMMs with exact results, every layout, through table entry `index`."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for ta in (False, True):
            for tb in (False, True):
                A = rng.integers(-4, 5, (7, 5) if ta else (5, 7)).astype(dtype)
                B = rng.integers(-4, 5, (3, 7) if tb else (7, 3)).astype(dtype)
                C = np.ones((5, 3), dtype)
                _blas.py_gemm(A, B, C, ta, tb, alpha=2.0, beta=0.5, kernel=index)
                want = 2.0 * ((A.T if ta else A) @ (B.T if tb else B)) + 0.5
                if not np.array_equal(C, want):
                    return False
    return True


def _load(name: str) -> None:
    """Load, register and check provider `name` (lock held); failures are recorded."""
    if name == "scipy" or name in _loaded or name in _failed:
        return
    try:
        provider = _LOADERS[name]()
    except Exception as exc:   # a broken installation: fall back, do not fail the fit
        _failed[name] = f"failed to load: {exc}"
        return
    if provider is None:
        _failed[name] = "not installed" + (" (pip install cbackprop[mkl])" if name == "mkl" else "")
        return
    if not provider.sgemm or not provider.dgemm:
        _failed[name] = "no sgemm_/dgemm_ in " + provider.path
        return
    index = PROVIDERS.index(name)
    _blas.set_provider(index, provider.sgemm, provider.dgemm)
    try:
        good = _checked(index)
    except Exception as exc:
        good, why = False, str(exc)
    else:
        why = "computed a wrong GEMM in its self-check"
    if not good:
        _failed[name] = why
        _blas.clear_provider(index)      # no rule can name it now
        return
    # _threads gives it the count of the calls running, at their next change or
    # the next call (provider.threads records what it set).
    _loaded[name] = provider


def is_provider_file(path: str) -> bool:
    """True for the library file of a provider this module loaded."""
    real = os.path.realpath(path)
    return any(os.path.realpath(p.path) == real for p in _loaded.values())


def _wanted() -> list[str]:
    """The providers the rule (or the override) may name."""
    if _override is not None:
        return sorted(set(_override.values()))
    return sorted({p for table in _rule().values() for prefs in table.values() for p in prefs})


def _pick(prefs) -> str:
    for p in prefs:
        if p == "scipy" or p in _loaded:
            return p
    return "scipy"


def effective_rule() -> dict[tuple[str, int], dict[str, str]]:
    """{(dtype, threads 1 or 2): {shape class: provider that runs it}} now (the
    rule or the override, providers that failed to load left out)."""
    ensure_loaded()
    return _effective()


def _effective() -> dict[tuple[str, int], dict[str, str]]:
    out = {}
    for key, table in _rule().items():
        out[key] = {c: _pick((_override[c],) if _override and c in _override else prefs)
                    for c, prefs in table.items()}
    return out


def _apply() -> None:
    table = [[[0] * len(CLASSES) for _ in range(2)] for _ in range(2)]
    for (dtype, threads), row in _effective().items():
        for c, name in row.items():
            table[dtype == "float64"][threads > 1][CLASSES.index(c)] = PROVIDERS.index(name)
    _blas.set_rule(table)


def ensure_loaded() -> None:
    """Load the providers the rule may use and set the rule (once; cheap after)."""
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        for name in _wanted():
            _load(name)
        _apply()
        _ready = True


def loaded() -> list:
    """The providers loaded besides SciPy's (for _threads: their thread setters)."""
    return list(_loaded.values())


def claim_thread() -> list:
    """Make the calling thread's GEMMs follow the counts _threads sets, for the
    providers whose count can be set per thread; returns what release_thread
    puts back."""
    return [(p, p.claim()) for p in list(_loaded.values()) if p.claim is not None]


def release_thread(claims) -> None:
    for provider, old in reversed(claims):
        provider.release(old)


def _parse(spec) -> dict[str, str] | None:
    if spec is None or spec == "auto" or spec == "":
        return None
    if isinstance(spec, str) and "=" not in spec:
        spec = {c: spec for c in CLASSES}
    elif isinstance(spec, str):
        spec = dict(part.split("=", 1) for part in spec.replace(" ", "").split(",") if part)
    out = {}
    for c, name in dict(spec).items():
        if c not in CLASSES:
            raise ValueError(f"unknown shape class {c!r}; expected one of {', '.join(CLASSES)}")
        if name not in PROVIDERS:
            raise ValueError(f"unknown GEMM provider {name!r}; expected one of "
                             f"{', '.join(PROVIDERS)} or 'auto'")
        out[c] = name
    return out


def set_blas(provider=None):
    """Choose the GEMM provider, overriding the measured rule.

    Parameters
    ----------
    provider : None, "auto", "scipy", "openblas", "mkl", or a dict
        None or "auto": the measured rule (the default). A name: that provider
        for every shape class. A dict {shape class: name} (classes "row",
        "small", "medium", "large"): those classes, the rule for the rest.
        The environment variable CBACKPROP_BLAS takes the same values
        ("mkl", or "large=mkl,medium=openblas") at import.

    Returns
    -------
    The previous setting (None for the rule), to restore it with.

    Raises ValueError for an unknown name, or a provider that is not installed
    or failed its load or self-check (report() says why). Not while a fit or
    predict runs. Results round as the provider that runs each GEMM.
    """
    global _override, _ready
    wanted = _parse(provider)
    with _lock:
        for name in set((wanted or {}).values()):
            _load(name)
            if name != "scipy" and name not in _loaded:
                raise ValueError(f"GEMM provider {name!r} is not available: {_failed[name]}")
        previous, _override = _override, wanted
        _ready = False
    ensure_loaded()
    return previous


def report() -> list[dict]:
    """One record per provider: name, loaded, version, kernel, path or why not
    used, and the shape classes it runs per (dtype, threads)."""
    rule = effective_rule()
    out = []
    for name in PROVIDERS:
        runs = [f"{dt} {t}t: {', '.join(c for c, p in row.items() if p == name)}"
                for (dt, t), row in rule.items() if name in row.values()]
        if name == "scipy":
            used = [r for r in blas_info() if r["used"]][:1]
            r = used[0] if used else {}
            out.append(dict(name=name, loaded=True, version=r.get("version"),
                            kernel=r.get("architecture"), path=r.get("filepath"), runs=runs))
        elif name in _loaded:
            p = _loaded[name]
            out.append(dict(name=name, loaded=True, version=p.version, kernel=p.kernel,
                            path=p.path, runs=runs))
        else:
            why = _failed.get(name, "not needed by the rule")
            out.append(dict(name=name, loaded=False, why=why, runs=runs))
    return out


def is_scipys_file(filepath: str) -> bool:
    """True for a library file of SciPy's installation: in scipy/ or beside it
    (a wheel bundles its OpenBLAS in scipy.libs/ or scipy_openblas*/)."""
    import scipy

    site = os.path.dirname(os.path.dirname(os.path.realpath(scipy.__file__)))
    return os.path.realpath(filepath).startswith(os.path.join(site, "scipy"))


def blas_info() -> list[dict]:
    """threadpoolctl's records of the BLAS libraries loaded, the one cbackprop
    calls first.

    SciPy's BLAS (the one `scipy.linalg.cython_blas` is linked to, entry 0 of
    the provider table): the record whose file lies in SciPy's installation is
    marked "used" (when none does, e.g. a shared system BLAS, all are). The
    providers this module loaded come last, marked "provider" (which classes
    they run: `report()`). `cbackprop info` and `bench/` print these.
    """
    from threadpoolctl import threadpool_info

    records = [r for r in threadpool_info() if r.get("user_api") == "blas"]
    providers = [r for r in records if is_provider_file(r.get("filepath", ""))]
    records = [r for r in records if r not in providers]
    for r in records:
        r["used"] = is_scipys_file(r.get("filepath", ""))
    if not any(r["used"] for r in records):
        for r in records:
            r["used"] = True
    for r in providers:
        r["used"], r["provider"] = False, True
    return sorted(records, key=lambda r: not r["used"]) + providers


def _from_environment() -> None:
    global _override
    spec = os.environ.get("CBACKPROP_BLAS", "")
    try:
        _override = _parse(spec)
    except ValueError as exc:
        warnings.warn(f"CBACKPROP_BLAS={spec!r} ignored: {exc}", RuntimeWarning, stacklevel=2)


_from_environment()
