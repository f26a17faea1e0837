# Design: the output layer's δ = ∂C/∂z comes straight from the loss, fused
# with the output activation where the pair simplifies:
#   softmax + cross_entropy         δ = softmax(z) − y
#   sigmoid + binary_cross_entropy  δ = σ(z) − y
#   identity + poisson (log link)   δ = eᶻ − y   (the output z is log μ)
# Both losses are computed from z (log-sum-exp, log-sigmoid), never from a
# probability that may round to 0, so logits of ±1e4 still give finite numbers
# (cross-entropy's log-sum-exp is z_max − log of the largest probability,
# which is ≥ 1/k). mse and
# huber give ∂C/∂a, which activation_backward turns into ∂C/∂z for any output
# activation. Rows carry weights w (NULL means 1); the caller chooses
# grad_scale (1 / Σw, times 1 / k for the element-wise losses).

from libc.math cimport log, exp, fabs, log1p
from cbackprop._core._activations cimport activation_backward



cdef double loss_backward(int loss, int out_act, const floating* Z, const floating* A,
                          const floating* Y, const floating* w, floating* dZ,
                          Py_ssize_t n, Py_ssize_t k, double delta,
                          double grad_scale) noexcept nogil:
    """Return Σ_rows w·Cⁿ (unscaled) and write δ = grad_scale·w·∂Cⁿ/∂z into dZ."""
    cdef Py_ssize_t i, j
    cdef floating zmax, amax
    cdef const floating* z
    cdef const floating* a
    cdef const floating* y
    cdef floating* d
    cdef double total = 0, row, lse, ysum, r, wi, s
    for i in range(n):
        z = Z + i * k
        a = A + i * k
        y = Y + i * k
        d = dZ + i * k
        wi = 1.0 if w == NULL else w[i]
        s = wi * grad_scale
        row = 0
        if loss == CROSS_ENTROPY:
            # −Σ y log softmax(z) = Σy · lse(z) − Σ y z. A = softmax(Z) already
            # holds exp(z − lse): at the largest z, a ≥ 1/k, so
            # lse = z_max − log(a_max) is exact to rounding, with no exp.
            # (z and a peak at the same element; their maxima as values, not
            # an index, so the loop is branch-free)
            zmax = z[0]
            amax = a[0]
            for j in range(1, k):
                zmax = z[j] if z[j] > zmax else zmax
                amax = a[j] if a[j] > amax else amax
            lse = zmax - log(amax)
            ysum = 0
            for j in range(k):
                ysum += y[j]
                row -= y[j] * (z[j] - lse)
            for j in range(k):
                d[j] = <floating> (s * (a[j] * ysum - y[j]))
        elif loss == BINARY_CROSS_ENTROPY:
            # −[y log σ(z) + (1−y) log(1−σ(z))] = max(z, 0) − z y + log1p(e^−|z|)
            for j in range(k):
                row += (z[j] if z[j] > 0 else 0) - z[j] * y[j] + log1p(exp(-fabs(z[j])))
                d[j] = <floating> (s * (a[j] - y[j]))
        elif loss == MSE:
            for j in range(k):
                r = a[j] - y[j]
                row += r * r
                d[j] = <floating> (s * 2 * r)
        elif loss == POISSON:
            # half Poisson deviance of μ = eᶻ (scikit-learn's, with its constant
            # y log y − y): μ − y z + y log y − y, computed from z = log μ.
            for j in range(k):
                r = exp(<double> z[j])
                row += r - y[j] * <double> z[j] - y[j]
                if y[j] > 0:
                    row += y[j] * log(<double> y[j])
                d[j] = <floating> (s * (r - y[j]))
        else:  # HUBER
            for j in range(k):
                r = a[j] - y[j]
                if fabs(r) <= delta:
                    row += 0.5 * r * r
                    d[j] = <floating> (s * r)
                else:
                    row += delta * (fabs(r) - 0.5 * delta)
                    d[j] = <floating> (s * (delta if r > 0 else -delta))
        total += wi * row
    if loss == MSE or loss == HUBER:
        activation_backward(out_act, Z, A, dZ, n * k)
    return total
