from cython cimport floating

from cbackprop._core._sparse cimport CSRRows

# The one declaration of the optimizer codes, read by `cbackprop.optimizers`.
cpdef enum OptimizerKind:
    SGD = 0
    ADAM = 1
    ADAMW = 2
    RMSPROP = 3
    SGD_VELOCITY = 4     # scikit-learn's SGD: the velocity holds −lr·g

# Hyper-parameters travel as one double array, indexed by these slots
# (`Optimizer.hyperparameters` fills it by these names).
cpdef enum:
    HP_LR = 0
    HP_MOMENTUM = 1      # SGD, RMSprop
    HP_NESTEROV = 2      # SGD: 0 or 1
    HP_WEIGHT_DECAY = 3
    HP_BETA1 = 4         # Adam(W)
    HP_BETA2 = 5         # Adam(W); RMSprop's smoothing constant alpha
    HP_EPS = 6


cdef bint gemm_writes_step(int kind, const double* hp) noexcept nogil
cdef bint nonfinite(const floating* x, Py_ssize_t n) noexcept nogil
cdef bint update(int kind, const double* hp, long long t, floating* theta,
                 const floating* grad, floating* state, Py_ssize_t n) noexcept nogil
cdef bint update_slice(int kind, const double* hp, long long t, floating* theta,
                       const floating* grad, floating* s1, floating* s2,
                       Py_ssize_t n) noexcept nogil
cdef void keep_copy(floating* dst, const floating* src, Py_ssize_t n) noexcept nogil
cdef bint layer_step(int kind, const double* hp, long long t, double alpha,
                     const floating* a_prev, const CSRRows* sparse, const floating* dZ,
                     Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out, floating* W,
                     floating* g, floating* s1, floating* s2, bint need_grad) noexcept nogil
