# Design: the one place that knows the GEMM layout. Every array in cbackprop
# is row-major; BLAS is column-major. A row-major C = op(A) op(B) is the
# column-major Cᵀ = op(B)ᵀ op(A)ᵀ, so we call BLAS with the operands swapped.
# scipy declares the pointers non-const (scipy issue 14262): we cast here.

from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* A, int lda,
               const floating* B, int ldb,
               floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major C(m×n) = alpha·op(A)(m×k)·op(B)(k×n) + beta·C."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> B, &ldb,
              <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> B, &ldb,
              <double*> A, &lda, &beta, C, &ldc)


def py_gemm(const floating[:, ::1] A, const floating[:, ::1] B,
                   floating[:, ::1] C, bint trans_a=False, bint trans_b=False,
                   double alpha=1.0, double beta=0.0, Py_ssize_t repeat=1):
    """C = alpha·op(A)·op(B) + beta·C, for tests and benchmarks."""
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    cdef Py_ssize_t r
    with nogil:
      for r in range(repeat):
        gemm(trans_a, trans_b, m, n, k, <floating> alpha, &A[0, 0], A.shape[1],
             &B[0, 0], B.shape[1], <floating> beta, &C[0, 0], n)
