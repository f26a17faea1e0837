from cython cimport floating

# The one declaration of the loss codes: Python reads the names from this
# enum (`cbackprop.losses.LOSSES`).
cpdef enum LossCode:
    CROSS_ENTROPY = 0
    BINARY_CROSS_ENTROPY = 1
    MSE = 2
    HUBER = 3
    POISSON = 4


cdef double loss_backward(int loss, int out_act, const floating* Z, const floating* A,
                          const floating* Y, const floating* w, floating* dZ,
                          Py_ssize_t n, Py_ssize_t k, double delta,
                          double grad_scale) noexcept nogil
