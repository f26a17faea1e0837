# Design: the one place that knows the GEMM layout. Every array in cbackprop
# is row-major; BLAS is column-major. A row-major C = op(A) op(B) is the
# column-major Cᵀ = op(B)ᵀ op(A)ᵀ, so we call BLAS with the operands swapped.
# scipy declares the pointers non-const (scipy issue 14262): we cast here.
#
# `gemm` also owns the choice between BLAS and the hand-written kernels of
# _kernels.c (register-blocked, compiled for AVX-512 and AVX2 with run-time
# dispatch, and a portable C version). A BLAS call has a fixed cost (argument
# checks, kernel selection, packing) that dominates for the GEMMs of small
# layers and of batches of one. The rule below comes from bench/kernels.py
# (see bench/README.md): the vector kernels where they measured faster than
# OpenBLAS; the portable one only for the outer products and short dot
# products where the plain loops already beat a BLAS call.
#
# And, for what goes to BLAS, the choice of GEMM provider: a small table of
# sgemm/dgemm pointers with the Fortran BLAS ABI. Entry 0 is SciPy's own BLAS
# (scipy.linalg.cython_blas), always there; cbackprop/_providers.py loads the
# others privately (the newest OpenBLAS wheel, MKL), fills their entries and
# sets the rule: a provider per dtype, thread count (1, or more) and shape
# class (SHAPE_CLASSES). Until it does, every entry of the rule is 0: SciPy's.

from scipy.linalg.cython_blas cimport sgemm, dgemm

ctypedef void (*sgemm_fn)(char* transa, char* transb, int* m, int* n, int* k,
                          float* alpha, float* a, int* lda, float* b, int* ldb,
                          float* beta, float* c, int* ldc) noexcept nogil
ctypedef void (*dgemm_fn)(char* transa, char* transb, int* m, int* n, int* k,
                          double* alpha, double* a, int* lda, double* b, int* ldb,
                          double* beta, double* c, int* ldc) noexcept nogil

cdef extern from "_kernels.h" nogil:
    int CBK_PORTABLE, CBK_AVX2, CBK_AVX512, CBK_PACK_MAX
    int cbk_level()
    int cbk_set_level(int level)
    void cbk_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float* A, int lda, const float* B, int ldb, float beta,
                   float* C, int ldc)
    void cbk_dgemm(int trans_a, int trans_b, int m, int n, int k, double alpha,
                   const double* A, int lda, const double* B, int ldb, double beta,
                   double* C, int ldc)
    void cbk_sgemm_threads(int threads, int trans_a, int trans_b, int m, int n, int k,
                           float alpha, const float* A, int lda, const float* B, int ldb,
                           float beta, float* C, int ldc)
    void cbk_dgemm_threads(int threads, int trans_a, int trans_b, int m, int n, int k,
                           double alpha, const double* A, int lda, const double* B, int ldb,
                           double beta, double* C, int ldc)
    int cbk_gemm_splits(int m, int n, int k)

# Multiply-add counts (m·n·k) of the rule below (bench/kernels.py).
cdef enum:
    HAND_MAX_MNK = 65536                # the small GEMMs
    HAND_MID_MIN_MNK = 1 << 20          # float32: the mid-sized band
    HAND_MID_MAX_MNK = 7 << 20
    HAND_ROW_MIN_MNK = 1 << 20          # float32, one row: from here on

cdef enum:
    MAX_PROVIDERS = 8
    N_CLASSES = 4
    ROW_CLASS = 0
    SMALL_CLASS = 1
    MEDIUM_CLASS = 2
    LARGE_CLASS = 3
    SMALL_MAX_MNK = 1 << 22              # below: "small" (4 Mi multiply-adds)
    MEDIUM_MAX_MNK = 1 << 28             # below: "medium" (256 Mi); from here on "large"

#: The shape classes of the provider rule, by index (gemm's shape_class).
SHAPE_CLASSES = ("row", "small", "medium", "large")

cdef sgemm_fn s_providers[MAX_PROVIDERS]
cdef dgemm_fn d_providers[MAX_PROVIDERS]
# rule[double][threaded][class]: the provider index that runs the GEMM.
cdef unsigned char rule[2][2][N_CLASSES]
cdef bint threaded = False
# The thread count cbackprop/_threads.py set: also the most threads a hand
# kernel's GEMM splits its rows over (cbk_sgemm_threads).
cdef int n_threads = 1
s_providers[0] = sgemm
d_providers[0] = dgemm

LEVELS = {"portable": CBK_PORTABLE, "avx2": CBK_AVX2, "avx512": CBK_AVX512}
cbk_level()         # chosen once, at import, before any kernel runs


cdef inline bint use_hand_kernel(bint single, bint trans_b, int m, int n,
                                 int k) noexcept nogil:
    """Shapes where the hand kernels measured faster than BLAS (single: float32)."""
    # Outer products and a few short dot products: the portable loops (the C
    # kernel runs them at every level) beat a BLAS call.
    if k == 1:
        return n <= (12 if single else 4)
    if trans_b and m < 4:
        return m == 1 and k <= 10 and n <= 32
    if cbk_level() == CBK_PORTABLE:
        return False
    # δ·Wᵀ through a small output layer: 2× faster than BLAS (which transposes
    # W at every call); float32 GEMMs of at least 32 columns and up to
    # HAND_MAX_MNK multiply-adds: as fast or faster. With fewer columns, or in
    # float64 (OpenBLAS's small-matrix dgemm measured up to 1.3× faster), BLAS.
    if trans_b:
        return <long> k * n <= CBK_PACK_MAX
    if n < 32:
        return False
    cdef long mnk = <long> m * n * k
    if m == 1:
        # One row (a batch of one) runs on the kernel's row path, 8 vectors
        # wide: 0.5–0.9× BLAS's time up to HAND_MAX_MNK in both dtypes, and in
        # float32 0.1–0.35× from HAND_ROW_MIN_MNK up (BLAS's packing path
        # again); in between, and for large float64 rows, BLAS.
        return mnk <= HAND_MAX_MNK or (single and mnk >= HAND_ROW_MIN_MNK)
    # AVX-512, float32, 32–256 columns, 1–7 Mi multiply-adds (the first layer
    # of an MNIST-sized network): OpenBLAS has left its small-matrix kernels for
    # its packing path there, and the hand kernel measured 1.1–4× faster than
    # BLAS on 1 thread (median 1.7×) and, at the median, faster than BLAS on 2
    # (`bench/kernels.py --band`; _threads counts these GEMMs as single-
    # threaded). Below the band BLAS's small-matrix kernels are as fast; above
    # it, with float64 or on AVX2, BLAS is faster.
    if (single and cbk_level() == CBK_AVX512 and n <= 256
            and HAND_MID_MIN_MNK <= mnk <= HAND_MID_MAX_MNK):
        return True
    return single and mnk <= HAND_MAX_MNK


cdef inline void small_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                            floating alpha, const floating* A, int lda,
                            const floating* B, int ldb,
                            floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major C(m×n) = alpha·op(A)·op(B) + beta·C by the hand kernels (any
    shape; fast only for the shapes use_hand_kernel picks), its rows split
    over the BLAS's thread count where that gains (bitwise the same)."""
    if floating is float:
        cbk_sgemm_threads(n_threads, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb,
                          beta, C, ldc)
    else:
        cbk_dgemm_threads(n_threads, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb,
                          beta, C, ldc)


cdef inline int shape_class(int m, int n, int k) noexcept nogil:
    """The provider rule's class of a GEMM (SHAPE_CLASSES): one row (a batch
    of one), then by multiply-adds m·n·k."""
    cdef long mnk = <long> m * n * k
    if m == 1:
        return ROW_CLASS
    if mnk < SMALL_MAX_MNK:
        return SMALL_CLASS
    return MEDIUM_CLASS if mnk < MEDIUM_MAX_MNK else LARGE_CLASS


cdef inline void blas_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                           floating alpha, const floating* A, int lda,
                           const floating* B, int ldb,
                           floating beta, floating* C, int ldc,
                           int provider=-1) noexcept nogil:
    """By BLAS: the rule's provider for this shape, or `provider` (an index of
    the table) when it is given."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if provider < 0:
        provider = rule[floating is double][threaded][shape_class(m, n, k)]
    if floating is float:
        s_providers[provider](&tb, &ta, &n, &m, &k, &alpha, <float*> B, &ldb,
                              <float*> A, &lda, &beta, C, &ldc)
    else:
        d_providers[provider](&tb, &ta, &n, &m, &k, &alpha, <double*> B, &ldb,
                              <double*> A, &lda, &beta, C, &ldc)


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* A, int lda,
               const floating* B, int ldb,
               floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major C(m×n) = alpha·op(A)(m×k)·op(B)(k×n) + beta·C."""
    if use_hand_kernel(floating is float, trans_b, m, n, k):
        small_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        blas_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef int kernel_level_code() noexcept nogil:
    """The level as its CBK_* code, for the other modules' kernels (_steps.c)."""
    return cbk_level()


def kernel_level():
    """The instruction set the hand kernels run at: "portable", "avx2" or "avx512"."""
    return {v: k for k, v in LEVELS.items()}[cbk_level()]


def set_kernel_level(str name):
    """Run the hand kernels at `name` (capped to what the CPU has), for tests and
    benchmarks; returns the level set. Not while a fit or predict runs."""
    level = cbk_set_level(LEVELS[name])
    return {v: k for k, v in LEVELS.items()}[level]


def kernel_for(dtype, bint trans_b, int m, int n, int k):
    """"hand" or "BLAS": what gemm runs for this shape (the thread choice,
    benchmarks and tests)."""
    single = str(dtype) == "float32"
    return "hand" if use_hand_kernel(single, trans_b, m, n, k) else "BLAS"


def hand_kernel_splits(int m, int n, int k):
    """Whether a hand kernel's GEMM of this shape splits its rows over threads
    (when more than one is set): large enough that the split gains."""
    return bool(cbk_gemm_splits(m, n, k))


def set_provider(int index, size_t sgemm_address, size_t dgemm_address):
    """Put a provider's sgemm_/dgemm_ (addresses of functions with the Fortran
    BLAS ABI) in entry `index` of the table (1 and up; 0 is SciPy's). For
    cbackprop/_providers.py, before the rule names the entry."""
    if not 0 < index < MAX_PROVIDERS or not sgemm_address or not dgemm_address:
        raise ValueError(f"provider entry {index} (1..{MAX_PROVIDERS - 1}) needs both addresses")
    s_providers[index] = <sgemm_fn> sgemm_address
    d_providers[index] = <dgemm_fn> dgemm_address


def clear_provider(int index):
    """Empty entry `index` (a provider that failed its check): set_rule and
    py_gemm refuse it from then on."""
    if 0 < index < MAX_PROVIDERS:
        for d in range(2):
            for t in range(2):
                for c in range(N_CLASSES):
                    if rule[d][t][c] == index:
                        rule[d][t][c] = 0
        s_providers[index] = NULL
        d_providers[index] = NULL


def set_rule(table):
    """Set the provider rule: table[double][threaded][class] = entry index
    (classes in SHAPE_CLASSES order). Every entry must have been set. Not
    while a fit or predict runs."""
    cdef int d, t, c, i
    for d in range(2):
        for t in range(2):
            for c in range(N_CLASSES):
                i = table[d][t][c]
                if not 0 <= i < MAX_PROVIDERS or (i > 0 and s_providers[i] == NULL):
                    raise ValueError(f"provider entry {i} is not set")
    for d in range(2):
        for t in range(2):
            for c in range(N_CLASSES):
                rule[d][t][c] = table[d][t][c]


def get_rule():
    """The provider rule as set_rule takes it."""
    return [[[rule[d][t][c] for c in range(N_CLASSES)] for t in range(2)] for d in range(2)]


def set_threads(int n):
    """The thread count cbackprop/_threads.py gave the BLAS: the rule's column
    (one thread, or more), and the most threads a hand kernel's GEMM splits
    its rows over."""
    global threaded, n_threads
    n_threads = max(1, n)
    threaded = n_threads > 1


def provider_for(dtype, bint trans_b, int m, int n, int k, threads=None):
    """The table entry that runs this GEMM (at `threads`, default: now), or
    -1 where a hand kernel runs it."""
    single = str(dtype) == "float32"
    if use_hand_kernel(single, trans_b, m, n, k):
        return -1
    t = threaded if threads is None else threads > 1
    return rule[not single][t][shape_class(m, n, k)]


def class_of(int m, int n, int k):
    """The name of a GEMM's shape class in the provider rule."""
    return SHAPE_CLASSES[shape_class(m, n, k)]


def py_gemm(const floating[:, ::1] A, const floating[:, ::1] B,
            floating[:, ::1] C, bint trans_a=False, bint trans_b=False,
            double alpha=1.0, double beta=0.0, Py_ssize_t repeat=1, kernel="auto"):
    """C = alpha·op(A)·op(B) + beta·C, for tests and benchmarks.

    kernel: "auto" (what the engine uses), "blas" (BLAS by the rule's
    provider), "hand" (the hand kernel whatever the shape), or an int: BLAS by
    that entry of the provider table. repeat > 1 runs the same call again
    (timings).
    """
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    cdef int which, provider = -1
    cdef Py_ssize_t r
    if isinstance(kernel, int):
        if not 0 <= kernel < MAX_PROVIDERS or (kernel > 0 and s_providers[kernel] == NULL):
            raise ValueError(f"provider entry {kernel} is not set")
        which, provider = 1, kernel
    else:
        which = ("auto", "blas", "hand").index(kernel)
    if ((A.shape[1] if trans_a else A.shape[0]) != m
            or (B.shape[1] if trans_b else B.shape[0]) != k
            or (B.shape[0] if trans_b else B.shape[1]) != n or m == 0 or n == 0 or k == 0):
        raise ValueError(f"op(A) ({A.shape[0]}, {A.shape[1]}) (trans {trans_a}), op(B) "
                         f"({B.shape[0]}, {B.shape[1]}) (trans {trans_b}) and C "
                         f"({m}, {n}) do not make a non-empty GEMM")
    with nogil:
        for r in range(repeat):
            if which == 0:
                gemm(trans_a, trans_b, m, n, k, <floating> alpha, &A[0, 0], A.shape[1],
                     &B[0, 0], B.shape[1], <floating> beta, &C[0, 0], n)
            elif which == 1:
                blas_gemm(trans_a, trans_b, m, n, k, <floating> alpha, &A[0, 0], A.shape[1],
                          &B[0, 0], B.shape[1], <floating> beta, &C[0, 0], n, provider)
            else:
                small_gemm(trans_a, trans_b, m, n, k, <floating> alpha, &A[0, 0],
                           A.shape[1], &B[0, 0], B.shape[1], <floating> beta, &C[0, 0], n)
