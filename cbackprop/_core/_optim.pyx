# Design: every optimizer is one fused in-place loop over the flat parameter
# vector θ, its gradient g and its state (same layout as θ, stacked: state[0:n]
# is the first buffer, state[n:2n] the second). The formulas are PyTorch's
# (torch.optim), so results can be compared step for step.

from libc.math cimport sqrt, pow

NAMES = ("sgd", "adam", "adamw", "rmsprop")
N_STATE = (1, 2, 2, 2)     # state buffers per optimizer, in units of n
HP_SLOTS = ("lr", "momentum", "nesterov", "weight_decay", "beta1", "beta2", "eps")


cdef void sgd(const double* hp, floating* theta, const floating* grad,
              floating* v, Py_ssize_t n) noexcept nogil:
    """g ← g + λθ; v ← μv + g; θ ← θ − lr·(g + μv if nesterov else v)."""
    cdef Py_ssize_t i
    cdef double g, lr = hp[HP_LR], mu = hp[HP_MOMENTUM], wd = hp[HP_WEIGHT_DECAY]
    cdef bint nesterov = hp[HP_NESTEROV] != 0
    if mu == 0:
        for i in range(n):
            theta[i] -= <floating> (lr * (grad[i] + wd * theta[i]))
        return
    for i in range(n):
        g = grad[i] + wd * theta[i]
        v[i] = <floating> (mu * v[i] + g)
        theta[i] -= <floating> (lr * (g + mu * v[i] if nesterov else v[i]))


cdef void adam(bint decoupled, const double* hp, long long t, floating* theta,
               const floating* grad, floating* m, floating* v, Py_ssize_t n) noexcept nogil:
    """Adam: g ← g + λθ (AdamW instead: θ ← θ(1 − lr·λ));
    m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
    θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)."""
    cdef Py_ssize_t i
    cdef double lr = hp[HP_LR], wd = hp[HP_WEIGHT_DECAY], eps = hp[HP_EPS]
    cdef double b1 = hp[HP_BETA1], b2 = hp[HP_BETA2]
    cdef double step = lr / (1 - pow(b1, <double> t))
    cdef double inv_sqrt_bc2 = 1 / sqrt(1 - pow(b2, <double> t))
    cdef double shrink = 1 - lr * wd, g
    for i in range(n):
        if decoupled:
            theta[i] = <floating> (theta[i] * shrink)
            g = grad[i]
        else:
            g = grad[i] + wd * theta[i]
        m[i] = <floating> (b1 * m[i] + (1 - b1) * g)
        v[i] = <floating> (b2 * v[i] + (1 - b2) * g * g)
        theta[i] -= <floating> (step * m[i] / (sqrt(v[i]) * inv_sqrt_bc2 + eps))


cdef void rmsprop(const double* hp, floating* theta, const floating* grad,
                  floating* v, floating* buf, Py_ssize_t n) noexcept nogil:
    """g ← g + λθ; v ← αv + (1−α)g²; with momentum μ: b ← μb + g/(√v + ε),
    θ ← θ − lr·b; without: θ ← θ − lr·g/(√v + ε)."""
    cdef Py_ssize_t i
    cdef double lr = hp[HP_LR], mu = hp[HP_MOMENTUM], wd = hp[HP_WEIGHT_DECAY]
    cdef double alpha = hp[HP_BETA2], eps = hp[HP_EPS], g, r
    for i in range(n):
        g = grad[i] + wd * theta[i]
        v[i] = <floating> (alpha * v[i] + (1 - alpha) * g * g)
        r = g / (sqrt(v[i]) + eps)
        if mu != 0:
            buf[i] = <floating> (mu * buf[i] + r)
            r = buf[i]
        theta[i] -= <floating> (lr * r)


cdef void update(int kind, const double* hp, long long t, floating* theta,
                 const floating* grad, floating* state, Py_ssize_t n) noexcept nogil:
    """One optimizer step t (counted from 1) on θ in place."""
    if kind == SGD:
        sgd(hp, theta, grad, state, n)
    elif kind == ADAM or kind == ADAMW:
        adam(kind == ADAMW, hp, t, theta, grad, state, state + n, n)
    else:
        rmsprop(hp, theta, grad, state, state + n, n)


def step(int kind, const double[::1] hp, long long t, floating[::1] theta,
         const floating[::1] grad, floating[::1] state):
    """Apply update step t to theta in place (shapes checked by the caller)."""
    with nogil:
        update(kind, &hp[0], t, &theta[0], &grad[0], &state[0], theta.shape[0])
