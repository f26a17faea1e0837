from cython cimport floating
from libc.math cimport exp, expf, log1p, log1pf, tanh, tanhf, erf, erff, expm1, expm1f, fabs

# The one declaration of the activation codes: Python reads the names from
# this enum (`cbackprop.activations.ACTIVATIONS`).
cpdef enum Activation:
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    ELU = 5
    SOFTPLUS = 6
    GELU = 7
    SILU = 8
    SOFTMAX = 9

# Constants as C macros: a plain assignment in a .pxd is never executed.
cdef extern from *:
    """
    #define CB_LEAKY_SLOPE 0.01
    #define CB_INV_SQRT2 0.7071067811865476
    #define CB_INV_SQRT_2PI 0.3989422804014327
    """
    const double LEAKY_SLOPE "CB_LEAKY_SLOPE"
    const double INV_SQRT2 "CB_INV_SQRT2"
    const double INV_SQRT_2PI "CB_INV_SQRT_2PI"


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating sigmoid(floating z) noexcept nogil:
    """1 / (1 + e^-z), without overflow for either sign of z."""
    cdef floating e
    if z >= 0:
        return 1 / (1 + fexp(-z))
    e = fexp(z)
    return e / (1 + e)


cdef inline floating softplus(floating z) noexcept nogil:
    """log(1 + e^z) = max(z, 0) + log1p(e^-|z|)."""
    if floating is float:
        return (z if z > 0 else 0) + log1pf(expf(-fabs(z)))
    else:
        return (z if z > 0 else 0) + log1p(exp(-fabs(z)))


cdef inline floating activate(int act, floating z) noexcept nogil:
    """a = σ(z) for one element (not softmax, which needs the whole row)."""
    if act == RELU:
        return z if z > 0 else 0
    elif act == SIGMOID:
        return sigmoid(z)
    elif act == TANH:
        return tanhf(z) if floating is float else tanh(z)
    elif act == LEAKY_RELU:
        return z if z > 0 else <floating> LEAKY_SLOPE * z
    elif act == ELU:
        if z > 0:
            return z
        return expm1f(z) if floating is float else expm1(z)
    elif act == SOFTPLUS:
        return softplus(z)
    elif act == GELU:
        if floating is float:
            return 0.5 * z * (1 + erff(z * <float> INV_SQRT2))
        else:
            return 0.5 * z * (1 + erf(z * INV_SQRT2))
    elif act == SILU:
        return z * sigmoid(z)
    return z


cdef inline floating derivative(int act, floating z, floating a) noexcept nogil:
    """σ'(z), using a = σ(z) where that is cheaper."""
    cdef floating s
    if act == RELU:
        return 1 if z > 0 else 0
    elif act == SIGMOID:
        return a * (1 - a)
    elif act == TANH:
        return 1 - a * a
    elif act == LEAKY_RELU:
        return 1 if z > 0 else <floating> LEAKY_SLOPE
    elif act == ELU:
        return 1 if z > 0 else a + 1
    elif act == SOFTPLUS:
        return sigmoid(z)
    elif act == GELU:
        if floating is float:
            return (0.5 * (1 + erff(z * <float> INV_SQRT2))
                    + z * <float> INV_SQRT_2PI * expf(-0.5 * z * z))
        else:
            return 0.5 * (1 + erf(z * INV_SQRT2)) + z * INV_SQRT_2PI * exp(-0.5 * z * z)
    elif act == SILU:
        s = sigmoid(z)
        return s * (1 + z * (1 - s))
    return 1


cdef void bias_activation_forward(int act, floating* Z, floating* A, const floating* b,
                                  Py_ssize_t n, Py_ssize_t m) noexcept nogil
cdef void activation_backward(int act, const floating* Z, const floating* A, floating* dZ,
                              Py_ssize_t size) noexcept nogil
