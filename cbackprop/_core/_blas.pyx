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

from scipy.linalg.cython_blas cimport sgemm, dgemm

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

# Multiply-add counts (m·n·k) of the rule below (bench/kernels.py).
cdef enum:
    HAND_MAX_MNK = 65536                # the small GEMMs
    HAND_MID_MIN_MNK = 1 << 20          # float32: the mid-sized band
    HAND_MID_MAX_MNK = 7 << 20
    HAND_ROW_MIN_MNK = 1 << 20          # float32, one row: from here on

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
    shape; fast only for the shapes use_hand_kernel picks)."""
    if floating is float:
        cbk_sgemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        cbk_dgemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef inline void blas_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                           floating alpha, const floating* A, int lda,
                           const floating* B, int ldb,
                           floating beta, floating* C, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> B, &ldb,
              <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> B, &ldb,
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


def py_gemm(const floating[:, ::1] A, const floating[:, ::1] B,
            floating[:, ::1] C, bint trans_a=False, bint trans_b=False,
            double alpha=1.0, double beta=0.0, Py_ssize_t repeat=1, str kernel="auto"):
    """C = alpha·op(A)·op(B) + beta·C, for tests and benchmarks.

    kernel: "auto" (what the engine uses), "blas" or "hand" (the hand kernel
    whatever the shape). repeat > 1 runs the same call again (timings).
    """
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    cdef int which = ("auto", "blas", "hand").index(kernel)
    cdef Py_ssize_t r
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
                          &B[0, 0], B.shape[1], <floating> beta, &C[0, 0], n)
            else:
                small_gemm(trans_a, trans_b, m, n, k, <floating> alpha, &A[0, 0],
                           A.shape[1], &B[0, 0], B.shape[1], <floating> beta, &C[0, 0], n)
