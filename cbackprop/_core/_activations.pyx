from cbackprop._core._blas cimport kernel_level_code

cdef extern from "_vexp.h" nogil:
    void cbk_sexp_nonpositive(int level, Py_ssize_t n, float* x)
    void cbk_dexp_nonpositive(int level, Py_ssize_t n, double* x)

# Design: one pass per layer. The GEMM leaves X·W in Z; bias_activation_forward
# adds b and applies σ in the same sweep (Z keeps z, A gets a). On the way
# back, activation_backward turns ∂C/∂a into ∂C/∂z = σ'(z) ⊙ ∂C/∂a in place.
# The per-element σ and σ' are inline functions in the .pxd, so the branch on
# `act` is hoisted out of the loop by the C compiler where it can.



cdef void bias_activation_forward(int act, floating* Z, floating* A, const floating* b,
                                  Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """z[i, j] += b[j]; a[i, j] = σ(z[i, j]) (softmax: over each row)."""
    cdef Py_ssize_t i, j
    cdef floating* z
    cdef floating* a
    cdef floating zmax, total
    if act == SOFTMAX:
        # a = z − max(z) per row, then e^a over the whole block in one
        # vectorised pass (_vexp.c), then each row over its sum.
        for i in range(n):
            z = Z + i * m
            a = A + i * m
            for j in range(m):
                z[j] += b[j]
            zmax = z[0]
            for j in range(1, m):
                if z[j] > zmax:
                    zmax = z[j]
            for j in range(m):
                a[j] = z[j] - zmax
        if floating is float:
            cbk_sexp_nonpositive(kernel_level_code(), n * m, A)
        else:
            cbk_dexp_nonpositive(kernel_level_code(), n * m, A)
        for i in range(n):
            a = A + i * m
            total = 0
            for j in range(m):
                total += a[j]
            for j in range(m):
                a[j] /= total
        return
    for i in range(n):
        z = Z + i * m
        a = A + i * m
        for j in range(m):
            z[j] += b[j]
        if act == RELU:
            for j in range(m):
                a[j] = z[j] if z[j] > 0 else 0
        elif act == IDENTITY:
            for j in range(m):
                a[j] = z[j]
        else:
            for j in range(m):
                a[j] = activate(act, z[j])


cdef void activation_backward(int act, const floating* Z, const floating* A, floating* dZ,
                              Py_ssize_t size) noexcept nogil:
    """dZ ⊙= σ'(Z) elementwise (dZ holds ∂C/∂a on entry, ∂C/∂z on exit)."""
    cdef Py_ssize_t i
    if act == IDENTITY:
        return
    elif act == RELU:
        for i in range(size):       # a select, not a branch: it vectorises
            dZ[i] = dZ[i] if Z[i] > 0 else 0
    else:
        for i in range(size):
            dZ[i] *= derivative(act, Z[i], A[i])

