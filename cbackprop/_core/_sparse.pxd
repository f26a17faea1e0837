from cython cimport floating


# Rows of a CSR matrix as the kernels see them: values of the network's dtype,
# int32 column indices (every width fits, see _validation.MAX_WIDTH), intp row
# pointers (any number of non-zeros). Row i of a batch is row rows[i] of the
# matrix, or row first + i when rows is NULL.
cdef struct CSRRows:
    const void* data
    const int* indices
    const Py_ssize_t* indptr
    const Py_ssize_t* rows
    Py_ssize_t first


cdef class CSR:
    cdef CSRRows rows
    cdef readonly object data, indices, indptr
    cdef readonly tuple shape
    cdef readonly Py_ssize_t itemsize


cdef void csr_gemm(const CSRRows* X, Py_ssize_t n, Py_ssize_t n_out, const floating* W,
                   floating* Z) noexcept nogil
cdef void csr_t_gemm(const CSRRows* X, Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                     floating alpha, const floating* dZ, floating beta,
                     floating* C) noexcept nogil
