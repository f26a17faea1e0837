# Design: every optimizer is one fused in-place loop over the flat parameter
# vector θ, its gradient g and its state (same layout as θ, stacked: state[0:n]
# is the first buffer, state[n:2n] the second). The formulas are PyTorch's
# (torch.optim), so results can be compared step for step. Per-step scalars are
# computed in double, the per-element arithmetic in the network's dtype (as
# torch does), in branch-free loops the C compiler vectorises.
#
# Each rule has two forms, side by side (as torch/optim/sgd.py keeps its
# single-tensor and fused forms together): `update` on a flat vector, and
# `layer_step`, which the engine calls inside the backward pass for one layer
# whose ∂C/∂W is not yet formed (SGD folds it into the ∂W GEMM).

from libc.math cimport sqrt, sqrtf, pow

from cbackprop._core._blas cimport gemm
from cbackprop._core._sparse cimport CSRRows, csr_t_gemm

#: State buffers per optimizer, in units of θ's size.
N_STATE = {SGD: 1, ADAM: 2, ADAMW: 2, RMSPROP: 2, SGD_VELOCITY: 1}


cdef inline floating fsqrt(floating x) noexcept nogil:
    return sqrtf(x) if floating is float else sqrt(x)


cdef void sgd(const double* hp, floating* theta, const floating* grad,
              floating* v, Py_ssize_t n) noexcept nogil:
    """g ← g + λθ; v ← μv + g; θ ← θ − lr·(g + μv if nesterov else v)."""
    cdef Py_ssize_t i
    cdef floating lr = <floating> hp[HP_LR], mu = <floating> hp[HP_MOMENTUM]
    cdef floating wd = <floating> hp[HP_WEIGHT_DECAY], g
    # One branch-free loop per case, so the C compiler vectorises each.
    if mu == 0:
        for i in range(n):
            theta[i] -= lr * (grad[i] + wd * theta[i])
    elif hp[HP_NESTEROV] != 0:
        for i in range(n):
            g = grad[i] + wd * theta[i]
            v[i] = mu * v[i] + g
            theta[i] -= lr * (g + mu * v[i])
    else:
        for i in range(n):
            v[i] = mu * v[i] + grad[i] + wd * theta[i]
            theta[i] -= lr * v[i]


cdef void sgd_velocity(const double* hp, floating* theta, const floating* grad,
                       floating* v, Py_ssize_t n) noexcept nogil:
    """scikit-learn's SGD (the velocity carries the learning rate, so a schedule
    that changes lr acts on new gradients only): g ← g + λθ; v ← μv − lr·g;
    θ ← θ + (μv − lr·g if nesterov else v). Equal to `sgd` while lr is constant."""
    if hp[HP_MOMENTUM] == 0:       # no velocity: the same step as `sgd`
        sgd(hp, theta, grad, v, n)
        return
    cdef Py_ssize_t i
    cdef floating lr = <floating> hp[HP_LR], mu = <floating> hp[HP_MOMENTUM]
    cdef floating wd = <floating> hp[HP_WEIGHT_DECAY], g
    if hp[HP_NESTEROV] != 0:
        for i in range(n):
            g = grad[i] + wd * theta[i]
            v[i] = mu * v[i] - lr * g
            theta[i] += mu * v[i] - lr * g
    else:
        for i in range(n):
            v[i] = mu * v[i] - lr * (grad[i] + wd * theta[i])
            theta[i] += v[i]


cdef void adam(bint decoupled, const double* hp, long long t, floating* theta,
               const floating* grad, floating* m, floating* v, Py_ssize_t n) noexcept nogil:
    """Adam: g ← g + λθ (AdamW instead: θ ← θ(1 − lr·λ));
    m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
    θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)."""
    cdef Py_ssize_t i
    cdef double lr = hp[HP_LR], b1 = hp[HP_BETA1], b2 = hp[HP_BETA2]
    # Per-step scalars in double, the per-element work in the network's dtype.
    cdef floating step = <floating> (lr / (1 - pow(b1, <double> t)))
    cdef floating inv_sqrt_bc2 = <floating> (1 / sqrt(1 - pow(b2, <double> t)))
    cdef floating eps = <floating> hp[HP_EPS], wd = <floating> hp[HP_WEIGHT_DECAY]
    cdef floating fb1 = <floating> b1, fb2 = <floating> b2
    cdef floating c1 = <floating> (1 - b1), c2 = <floating> (1 - b2)
    cdef floating shrink = 1, g
    if decoupled:       # AdamW shrinks θ instead of adding λθ to g
        shrink = <floating> (1 - lr * hp[HP_WEIGHT_DECAY])
        wd = 0
    for i in range(n):
        g = grad[i] + wd * theta[i]
        m[i] = fb1 * m[i] + c1 * g
        v[i] = fb2 * v[i] + c2 * g * g
        theta[i] = shrink * theta[i] - step * m[i] / (fsqrt(v[i]) * inv_sqrt_bc2 + eps)


cdef void rmsprop(const double* hp, floating* theta, const floating* grad,
                  floating* v, floating* buf, Py_ssize_t n) noexcept nogil:
    """g ← g + λθ; v ← αv + (1−α)g²; with momentum μ: b ← μb + g/(√v + ε),
    θ ← θ − lr·b; without: θ ← θ − lr·g/(√v + ε)."""
    cdef Py_ssize_t i
    cdef floating lr = <floating> hp[HP_LR], mu = <floating> hp[HP_MOMENTUM]
    cdef floating wd = <floating> hp[HP_WEIGHT_DECAY], eps = <floating> hp[HP_EPS]
    cdef floating alpha = <floating> hp[HP_BETA2], c = <floating> (1 - hp[HP_BETA2]), g
    if mu == 0:
        for i in range(n):
            g = grad[i] + wd * theta[i]
            v[i] = alpha * v[i] + c * g * g
            theta[i] -= lr * g / (fsqrt(v[i]) + eps)
    else:
        for i in range(n):
            g = grad[i] + wd * theta[i]
            v[i] = alpha * v[i] + c * g * g
            buf[i] = mu * buf[i] + g / (fsqrt(v[i]) + eps)
            theta[i] -= lr * buf[i]


cdef void update_slice(int kind, const double* hp, long long t, floating* theta,
                       const floating* grad, floating* s1, floating* s2,
                       Py_ssize_t n) noexcept nogil:
    """One optimizer step t on n parameters whose state buffers start at s1
    and s2 (so a slice of θ can be updated: the engine does it layer by layer)."""
    if kind == SGD:
        sgd(hp, theta, grad, s1, n)
    elif kind == SGD_VELOCITY:
        sgd_velocity(hp, theta, grad, s1, n)
    elif kind == ADAM or kind == ADAMW:
        adam(kind == ADAMW, hp, t, theta, grad, s1, s2, n)
    else:
        rmsprop(hp, theta, grad, s1, s2, n)


cdef void update(int kind, const double* hp, long long t, floating* theta,
                 const floating* grad, floating* state, Py_ssize_t n) noexcept nogil:
    """One optimizer step t (counted from 1) on θ in place."""
    update_slice(kind, hp, t, theta, grad, state, state + n, n)


cdef inline void input_t_gemm(const CSRRows* sparse, const floating* a_prev,
                              Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                              floating alpha, const floating* dZ, floating beta,
                              floating* C) noexcept nogil:
    """C = alpha·a_prevᵀ·dZ + beta·C, with a_prev the CSR rows `sparse` unless NULL."""
    if sparse != NULL:
        csr_t_gemm(sparse, n, n_in, n_out, alpha, dZ, beta, C)
    else:
        gemm(True, False, <int> n_in, <int> n_out, <int> n, alpha, a_prev, <int> n_in,
             dZ, <int> n_out, beta, C, <int> n_out)


cdef void layer_step(int kind, const double* hp, long long t, double alpha,
                     const floating* a_prev, const CSRRows* sparse, const floating* dZ,
                     Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out, floating* W,
                     floating* g, floating* s1, floating* s2) noexcept nogil:
    """Step t for one layer, inside the backward pass: W (n_in × n_out, its bias
    b at W + n_in·n_out) from the layer's input a_prev (or, unless NULL, the
    CSR rows `sparse`: the first layer of sparse input) and δ = dZ (n rows
    each), with g + n_in·n_out already holding ∂C/∂b = Σ_rows dZ. g is the
    layer's slice of the gradient buffer, s1 and s2 its slices of the state
    buffers.

    Plain SGD (either kind) writes the step into W inside the ∂W GEMM:
    W ← (1 − lr·λ)W − lr·a_prevᵀ·dZ; SGD with momentum accumulates into the
    velocity there: v ← μv + a_prevᵀ·dZ (SGD_VELOCITY: v ← μv − lr·a_prevᵀ·dZ;
    at n = 1 an outer product folded into the velocity loop). Other optimizers
    get ∂W in g, then `update_slice`. λ = weight_decay + alpha (the L2 term's
    gradient αW); biases get no alpha. The result is
    the flat rule's, in another order of rounding."""
    cdef Py_ssize_t i, j, nw = n_in * n_out
    cdef floating ai
    cdef floating* gb = g + nw
    cdef floating* v = s1
    cdef floating lr = <floating> hp[HP_LR], mu = <floating> hp[HP_MOMENTUM]
    cdef floating wd = <floating> hp[HP_WEIGHT_DECAY], a = <floating> alpha
    cdef floating lam = wd + a
    cdef bint velocity = kind == SGD_VELOCITY
    cdef bint plain_sgd = (kind == SGD or velocity) and hp[HP_NESTEROV] == 0
    # The velocity form stores −lr·(the torch form's buffer): vg scales the
    # gradient into v, vs the step W takes from v.
    cdef floating vg = -lr if velocity else 1, vs = -1 if velocity else lr
    if plain_sgd and mu == 0:
        input_t_gemm(sparse, a_prev, n, n_in, n_out, -lr, dZ, 1 - lr * lam, W)
        for i in range(n_out):
            W[nw + i] -= lr * (gb[i] + wd * W[nw + i])
    elif plain_sgd and n == 1 and sparse == NULL:
        # One example: ∂W = a_prevᵀ·dZ is an outer product, folded into the
        # momentum loop (one pass over v and W instead of two).
        for i in range(n_in):
            ai = a_prev[i]
            for j in range(n_out):
                v[i * n_out + j] = (mu * v[i * n_out + j] + vg * ai * dZ[j]
                                    + vg * lam * W[i * n_out + j])
                W[i * n_out + j] -= vs * v[i * n_out + j]
        for i in range(nw, nw + n_out):
            v[i] = mu * v[i] + vg * dZ[i - nw] + vg * wd * W[i]
            W[i] -= vs * v[i]
    elif plain_sgd:
        input_t_gemm(sparse, a_prev, n, n_in, n_out, vg, dZ, mu, v)
        for i in range(nw):
            v[i] += vg * lam * W[i]
            W[i] -= vs * v[i]
        for i in range(nw, nw + n_out):
            v[i] = mu * v[i] + vg * gb[i - nw] + vg * wd * W[i]
            W[i] -= vs * v[i]
    else:
        input_t_gemm(sparse, a_prev, n, n_in, n_out, <floating> 1, dZ, <floating> 0, g)
        if a != 0:
            for i in range(nw):
                g[i] += a * W[i]
        update_slice(kind, hp, t, W, g, s1, s2, nw + n_out)


def step(int kind, const double[::1] hp, long long t, floating[::1] theta,
         const floating[::1] grad, floating[::1] state):
    """Apply update step t to theta in place (shapes checked by the caller)."""
    with nogil:
        update(kind, &hp[0], t, &theta[0], &grad[0], &state[0], theta.shape[0])
