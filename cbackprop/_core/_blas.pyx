# Design: the one place that knows the GEMM layout. Every array in cbackprop
# is row-major; BLAS is column-major. A row-major C = op(A) op(B) is the
# column-major Cᵀ = op(B)ᵀ op(A)ᵀ, so we call BLAS with the operands swapped.
# scipy declares the pointers non-const (scipy issue 14262): we cast here.
#
# `gemm` also owns the choice between BLAS and a hand-written kernel
# (`small_gemm`). A BLAS call has a fixed cost (argument checks, kernel
# selection) that dominates when a GEMM degenerates into an outer product with
# a few columns (∂W of a small output layer for a batch of one) or into a few
# short dot products (δ·Wᵀ for one example through a layer of a few units).
# There the hand kernel, plain loops the C compiler vectorises, is faster.
# Everywhere else BLAS is, by far: cbackprop is compiled for baseline x86-64
# (SSE2), and a register-blocked SSE2 kernel measured 10–13× slower than
# OpenBLAS's AVX-512 kernels even at 32×32×64, and 1.4–3× slower for GEMVs
# and wide outer products. The rule below comes from bench/kernels.py (see
# bench/README.md).

from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline bint use_hand_kernel(bint single, bint trans_b, int m, int n,
                                 int k) noexcept nogil:
    """Shapes where the hand kernel measured faster than BLAS (single: float32)."""
    if k == 1:
        return n <= (12 if single else 4)                # outer product, few columns
    return trans_b and m == 1 and k <= 10 and n <= 32   # a few short dot products


cdef inline void store(floating* C, floating acc, floating alpha, floating beta) noexcept nogil:
    """C = alpha·acc + beta·C, reading C only when beta ≠ 0 (C may be garbage)."""
    if beta == 0:
        C[0] = alpha * acc
    else:
        C[0] = alpha * acc + beta * C[0]


cdef void small_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                     floating alpha, const floating* A, int lda,
                     const floating* B, int ldb,
                     floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major C(m×n) = alpha·op(A)·op(B) + beta·C without BLAS (any shape;
    fast only for the shapes use_hand_kernel picks)."""
    cdef Py_ssize_t sa_i = 1 if trans_a else lda, sa_p = lda if trans_a else 1
    cdef Py_ssize_t i, j, p
    cdef floating acc, aip
    cdef floating* c
    cdef const floating* b
    if trans_b:
        # op(B)[p, j] = B[j, p]: each C[i, j] is a dot product along p.
        for i in range(m):
            for j in range(n):
                acc = 0
                for p in range(k):
                    acc += A[i * sa_i + p * sa_p] * B[j * ldb + p]
                store(C + i * ldc + j, acc, alpha, beta)
        return
    # Row i of C: beta·C[i] + Σ_p alpha·A[i, p]·B[p] (axpys along contiguous rows).
    for i in range(m):
        c = C + i * ldc
        aip = alpha * A[i * sa_i]
        if beta == 0:
            for j in range(n):
                c[j] = aip * B[j]
        else:
            for j in range(n):
                c[j] = aip * B[j] + beta * c[j]
        for p in range(1, k):
            aip = alpha * A[i * sa_i + p * sa_p]
            b = B + p * ldb
            for j in range(n):
                c[j] += aip * b[j]


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


def kernel_for(dtype, bint trans_b, int m, int n, int k):
    """"hand" or "BLAS": what gemm runs for this shape (for benchmarks and tests)."""
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
