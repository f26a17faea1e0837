# Design: the first layer's two products when the input X is sparse (CSR), as
# scatters over the non-zeros, so that nothing of size rows × d is formed and
# the work is proportional to the non-zeros times the layer's width:
#
#   forward   Z = X·W:     row i of Z is Σ over the non-zeros x at (i, j) of x·W[j, :]
#   backward  ∂W = Xᵀ·δ:   each non-zero x at (i, j) adds x·δ[i, :] to row j of ∂W
#
# Both inner loops run along a contiguous row of W (or ∂W) of the layer's
# width, which the C compiler vectorises. The results equal the dense GEMM's
# to rounding (the zeros' products are exact zeros; the order of the sums
# differs). A `CSR` holds the arrays, checked and converted by
# `cbackprop._validation`: the kernels trust them.

from libc.string cimport memset

import numpy as np


cdef class CSR:
    """A CSR matrix for the kernels: data (the network's dtype), indices
    (int32), indptr (intp), of shape (n_rows, n_cols); trusted, so build it
    only from checked arrays (`cbackprop._validation.check_X` does)."""

    def __init__(self, data, const int[::1] indices, const Py_ssize_t[::1] indptr,
                 Py_ssize_t n_cols):
        cdef const unsigned char[::1] raw = np.ascontiguousarray(data).view(np.uint8)
        self.data, self.indices, self.indptr = data, np.asarray(indices), np.asarray(indptr)
        self.shape = (indptr.shape[0] - 1, n_cols)
        self.itemsize = data.dtype.itemsize
        # An empty matrix has no first element; its pointers are never read.
        self.rows.data = &raw[0] if raw.shape[0] else NULL
        self.rows.indices = &indices[0] if indices.shape[0] else NULL
        self.rows.indptr = &indptr[0]
        self.rows.rows = NULL
        self.rows.first = 0

    @property
    def nnz(self):
        return self.indices.shape[0]


cdef inline Py_ssize_t row_of(const CSRRows* X, Py_ssize_t i) noexcept nogil:
    return X.rows[i] if X.rows != NULL else X.first + i


cdef void csr_gemm(const CSRRows* X, Py_ssize_t n, Py_ssize_t n_out, const floating* W,
                   floating* Z) noexcept nogil:
    """Z (n × n_out) = X_rows·W, for the n rows of the batch X and W (d × n_out)."""
    cdef const floating* v = <const floating*> X.data
    cdef const floating* w
    cdef floating* z
    cdef floating x
    cdef Py_ssize_t i, j, p, r
    for i in range(n):
        r = row_of(X, i)
        z = Z + i * n_out
        memset(z, 0, n_out * sizeof(floating))
        for p in range(X.indptr[r], X.indptr[r + 1]):
            x = v[p]
            w = W + <Py_ssize_t> X.indices[p] * n_out
            for j in range(n_out):
                z[j] += x * w[j]


cdef void csr_t_gemm(const CSRRows* X, Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                     floating alpha, const floating* dZ, floating beta,
                     floating* C) noexcept nogil:
    """C (n_in × n_out) = alpha·X_rowsᵀ·dZ + beta·C, for the n rows of the batch
    X and dZ (n × n_out); C is not read when beta = 0 (as in GEMM), not scaled
    when beta = 1."""
    cdef const floating* v = <const floating*> X.data
    cdef const floating* d
    cdef floating* c
    cdef floating a
    cdef Py_ssize_t i, j, p, r
    if beta == 0:
        memset(C, 0, n_in * n_out * sizeof(floating))
    elif beta != 1:
        for p in range(n_in * n_out):
            C[p] *= beta
    for i in range(n):
        r = row_of(X, i)
        d = dZ + i * n_out
        for p in range(X.indptr[r], X.indptr[r + 1]):
            a = alpha * v[p]
            c = C + <Py_ssize_t> X.indices[p] * n_out
            for j in range(n_out):
                c[j] += a * d[j]
