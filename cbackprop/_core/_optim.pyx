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

from libc.math cimport sqrt, pow

from cbackprop._core._blas cimport gemm, kernel_level_code
from cbackprop._core._sparse cimport CSRRows, csr_t_gemm

# The per-element loops themselves are C (_steps.c), compiled for AVX-512,
# AVX2 and any CPU; the functions below state each rule and pass its scalars.
# Each step returns True when a parameter it wrote is NaN or ±inf: the fit
# then stops and rolls back, with no second pass over θ to find out.
cdef extern from "_steps.h" nogil:
    ctypedef struct cbk_ssteps_t:
        int (*sgd)(Py_ssize_t n, float lr, float wd, float* theta, const float* g) noexcept nogil
        int (*momentum)(Py_ssize_t n, float lr, float mu, float wd, float* theta,
                      const float* g, float* v) noexcept nogil
        int (*nesterov)(Py_ssize_t n, float lr, float mu, float wd, float* theta,
                      const float* g, float* v) noexcept nogil
        int (*velocity)(Py_ssize_t n, float lr, float mu, float wd, float* theta,
                      const float* g, float* v) noexcept nogil
        int (*velocity_nesterov)(Py_ssize_t n, float lr, float mu, float wd, float* theta,
                               const float* g, float* v) noexcept nogil
        int (*adam)(Py_ssize_t n, float step, float inv_sqrt_bc2, float eps, float wd,
                  float b1, float b2, float c1, float c2, float shrink, float* theta,
                  const float* g, float* m, float* v) noexcept nogil
        int (*rmsprop)(Py_ssize_t n, float lr, float wd, float eps, float alpha, float c,
                     float* theta, const float* g, float* v) noexcept nogil
        int (*rmsprop_momentum)(Py_ssize_t n, float lr, float mu, float wd, float eps,
                              float alpha, float c, float* theta, const float* g,
                              float* v, float* b) noexcept nogil
        int (*velocity_decay)(Py_ssize_t n, float vg, float vs, float lam, float* W,
                            float* v) noexcept nogil
        int (*rank1)(Py_ssize_t n_in, Py_ssize_t n_out, float mu, float vg, float vs,
                   float lam, const float* a, const float* delta, float* W, float* v) noexcept nogil
        int (*sgd_rank1)(Py_ssize_t n_in, Py_ssize_t n_out, float alpha, float beta,
                         const float* a, const float* delta, float* W) noexcept nogil
        int (*adam_rank1)(Py_ssize_t n_in, Py_ssize_t n_out, float alpha, float step,
                          float inv_sqrt_bc2, float eps, float wd, float b1, float b2, float c1,
                          float c2, float shrink, const float* a, const float* delta, float* W,
                          float* m, float* v) noexcept nogil
        int (*nonfinite)(Py_ssize_t n, const float* x) noexcept nogil
    ctypedef struct cbk_dsteps_t:
        int (*sgd)(Py_ssize_t n, double lr, double wd, double* theta, const double* g) noexcept nogil
        int (*momentum)(Py_ssize_t n, double lr, double mu, double wd, double* theta,
                      const double* g, double* v) noexcept nogil
        int (*nesterov)(Py_ssize_t n, double lr, double mu, double wd, double* theta,
                      const double* g, double* v) noexcept nogil
        int (*velocity)(Py_ssize_t n, double lr, double mu, double wd, double* theta,
                      const double* g, double* v) noexcept nogil
        int (*velocity_nesterov)(Py_ssize_t n, double lr, double mu, double wd,
                               double* theta, const double* g, double* v) noexcept nogil
        int (*adam)(Py_ssize_t n, double step, double inv_sqrt_bc2, double eps, double wd,
                  double b1, double b2, double c1, double c2, double shrink,
                  double* theta, const double* g, double* m, double* v) noexcept nogil
        int (*rmsprop)(Py_ssize_t n, double lr, double wd, double eps, double alpha,
                     double c, double* theta, const double* g, double* v) noexcept nogil
        int (*rmsprop_momentum)(Py_ssize_t n, double lr, double mu, double wd, double eps,
                              double alpha, double c, double* theta, const double* g,
                              double* v, double* b) noexcept nogil
        int (*velocity_decay)(Py_ssize_t n, double vg, double vs, double lam, double* W,
                            double* v) noexcept nogil
        int (*rank1)(Py_ssize_t n_in, Py_ssize_t n_out, double mu, double vg, double vs,
                   double lam, const double* a, const double* delta, double* W,
                   double* v) noexcept nogil
        int (*sgd_rank1)(Py_ssize_t n_in, Py_ssize_t n_out, double alpha, double beta,
                         const double* a, const double* delta, double* W) noexcept nogil
        int (*adam_rank1)(Py_ssize_t n_in, Py_ssize_t n_out, double alpha, double step,
                          double inv_sqrt_bc2, double eps, double wd, double b1, double b2, double c1,
                          double c2, double shrink, const double* a, const double* delta, double* W,
                          double* m, double* v) noexcept nogil
        int (*nonfinite)(Py_ssize_t n, const double* x) noexcept nogil
    const cbk_ssteps_t* cbk_ssteps(int level)
    const cbk_dsteps_t* cbk_dsteps(int level)
    void cbk_keep_copy(void* dst, const void* src, size_t n_bytes)

#: State buffers per optimizer, in units of θ's size.
N_STATE = {SGD: 1, ADAM: 2, ADAMW: 2, RMSPROP: 2, SGD_VELOCITY: 1}


cdef bint sgd(const double* hp, floating* theta, const floating* grad,
              floating* v, Py_ssize_t n) noexcept nogil:
    """g ← g + λθ; v ← μv + g; θ ← θ − lr·(g + μv if nesterov else v)."""
    cdef floating lr = <floating> hp[HP_LR], mu = <floating> hp[HP_MOMENTUM]
    cdef floating wd = <floating> hp[HP_WEIGHT_DECAY]
    cdef int level = kernel_level_code()
    if floating is float:
        if mu == 0:
            return cbk_ssteps(level).sgd(n, lr, wd, theta, grad)
        elif hp[HP_NESTEROV] != 0:
            return cbk_ssteps(level).nesterov(n, lr, mu, wd, theta, grad, v)
        else:
            return cbk_ssteps(level).momentum(n, lr, mu, wd, theta, grad, v)
    else:
        if mu == 0:
            return cbk_dsteps(level).sgd(n, lr, wd, theta, grad)
        elif hp[HP_NESTEROV] != 0:
            return cbk_dsteps(level).nesterov(n, lr, mu, wd, theta, grad, v)
        else:
            return cbk_dsteps(level).momentum(n, lr, mu, wd, theta, grad, v)


cdef bint sgd_velocity(const double* hp, floating* theta, const floating* grad,
                       floating* v, Py_ssize_t n) noexcept nogil:
    """scikit-learn's SGD (the velocity carries the learning rate, so a schedule
    that changes lr acts on new gradients only): g ← g + λθ; v ← μv − lr·g;
    θ ← θ + (μv − lr·g if nesterov else v). Equal to `sgd` while lr is constant."""
    if hp[HP_MOMENTUM] == 0:       # no velocity: the same step as `sgd`
        return sgd(hp, theta, grad, v, n)
    cdef floating lr = <floating> hp[HP_LR], mu = <floating> hp[HP_MOMENTUM]
    cdef floating wd = <floating> hp[HP_WEIGHT_DECAY]
    cdef int level = kernel_level_code()
    if floating is float:
        if hp[HP_NESTEROV] != 0:
            return cbk_ssteps(level).velocity_nesterov(n, lr, mu, wd, theta, grad, v)
        else:
            return cbk_ssteps(level).velocity(n, lr, mu, wd, theta, grad, v)
    else:
        if hp[HP_NESTEROV] != 0:
            return cbk_dsteps(level).velocity_nesterov(n, lr, mu, wd, theta, grad, v)
        else:
            return cbk_dsteps(level).velocity(n, lr, mu, wd, theta, grad, v)


cdef bint adam(bint decoupled, const double* hp, long long t, floating* theta,
               const floating* grad, floating* m, floating* v, Py_ssize_t n,
               const floating* a_prev, Py_ssize_t n_in, floating alpha) noexcept nogil:
    """Adam: g ← g + λθ (AdamW instead: θ ← θ(1 − lr·λ));
    m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
    θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
    With a_prev (else NULL): one example's step on a layer's W (n_in × n), g =
    a_prev ⊗ grad + alpha·W formed in the loop (grad is then δ)."""
    cdef double lr = hp[HP_LR], b1 = hp[HP_BETA1], b2 = hp[HP_BETA2]
    # Per-step scalars in double, the per-element work in the network's dtype.
    cdef floating step = <floating> (lr / (1 - pow(b1, <double> t)))
    cdef floating inv_sqrt_bc2 = <floating> (1 / sqrt(1 - pow(b2, <double> t)))
    cdef floating eps = <floating> hp[HP_EPS], wd = <floating> hp[HP_WEIGHT_DECAY]
    cdef floating fb1 = <floating> b1, fb2 = <floating> b2
    cdef floating c1 = <floating> (1 - b1), c2 = <floating> (1 - b2)
    cdef floating shrink = 1
    cdef int level = kernel_level_code()
    if decoupled:       # AdamW shrinks θ instead of adding λθ to g
        shrink = <floating> (1 - lr * hp[HP_WEIGHT_DECAY])
        wd = 0
    if floating is float:
        if a_prev != NULL:
            return cbk_ssteps(level).adam_rank1(n_in, n, alpha, step, inv_sqrt_bc2, eps, wd,
                                                fb1, fb2, c1, c2, shrink, a_prev, grad,
                                                theta, m, v)
        return cbk_ssteps(level).adam(n, step, inv_sqrt_bc2, eps, wd, fb1, fb2,
                                      c1, c2, shrink, theta, grad, m, v)
    else:
        if a_prev != NULL:
            return cbk_dsteps(level).adam_rank1(n_in, n, alpha, step, inv_sqrt_bc2, eps, wd,
                                                fb1, fb2, c1, c2, shrink, a_prev, grad,
                                                theta, m, v)
        return cbk_dsteps(level).adam(n, step, inv_sqrt_bc2, eps, wd, fb1, fb2,
                                      c1, c2, shrink, theta, grad, m, v)


cdef bint rmsprop(const double* hp, floating* theta, const floating* grad,
                  floating* v, floating* buf, Py_ssize_t n) noexcept nogil:
    """g ← g + λθ; v ← αv + (1−α)g²; with momentum μ: b ← μb + g/(√v + ε),
    θ ← θ − lr·b; without: θ ← θ − lr·g/(√v + ε)."""
    cdef floating lr = <floating> hp[HP_LR], mu = <floating> hp[HP_MOMENTUM]
    cdef floating wd = <floating> hp[HP_WEIGHT_DECAY], eps = <floating> hp[HP_EPS]
    cdef floating alpha = <floating> hp[HP_BETA2], c = <floating> (1 - hp[HP_BETA2])
    cdef int level = kernel_level_code()
    if floating is float:
        if mu == 0:
            return cbk_ssteps(level).rmsprop(n, lr, wd, eps, alpha, c, theta, grad, v)
        else:
            return cbk_ssteps(level).rmsprop_momentum(n, lr, mu, wd, eps, alpha, c, theta,
                                                      grad, v, buf)
    else:
        if mu == 0:
            return cbk_dsteps(level).rmsprop(n, lr, wd, eps, alpha, c, theta, grad, v)
        else:
            return cbk_dsteps(level).rmsprop_momentum(n, lr, mu, wd, eps, alpha, c, theta,
                                                      grad, v, buf)


cdef bint update_slice(int kind, const double* hp, long long t, floating* theta,
                       const floating* grad, floating* s1, floating* s2,
                       Py_ssize_t n) noexcept nogil:
    """One optimizer step t on n parameters whose state buffers start at s1
    and s2 (so a slice of θ can be updated: the engine does it layer by layer);
    True if a parameter became NaN or ±inf."""
    if kind == SGD:
        return sgd(hp, theta, grad, s1, n)
    elif kind == SGD_VELOCITY:
        return sgd_velocity(hp, theta, grad, s1, n)
    elif kind == ADAM or kind == ADAMW:
        return adam(kind == ADAMW, hp, t, theta, grad, s1, s2, n, NULL, 0, 0)
    return rmsprop(hp, theta, grad, s1, s2, n)


cdef bint gemm_writes_step(int kind, const double* hp) noexcept nogil:
    """True for plain SGD (no momentum, either kind): `layer_step` writes its
    step into W inside the ∂W GEMM (batches > 1), where it is not checked for
    NaN or ±inf as it is written; the caller checks θ once per chunk."""
    return (kind == SGD or kind == SGD_VELOCITY) and hp[HP_MOMENTUM] == 0


cdef bint nonfinite(const floating* x, Py_ssize_t n) noexcept nogil:
    """True if an x[i] is NaN or ±inf (vectorised, whole array)."""
    if floating is float:
        return cbk_ssteps(kernel_level_code()).nonfinite(n, x)
    else:
        return cbk_dsteps(kernel_level_code()).nonfinite(n, x)


cdef bint update(int kind, const double* hp, long long t, floating* theta,
                 const floating* grad, floating* state, Py_ssize_t n) noexcept nogil:
    """One optimizer step t (counted from 1) on θ in place; True if a parameter
    became NaN or ±inf."""
    return update_slice(kind, hp, t, theta, grad, state, state + n, n)


cdef void keep_copy(floating* dst, const floating* src, Py_ssize_t n) noexcept nogil:
    """dst[0:n] = src[0:n], written past the caches: for a rollback copy, read
    back only if a fit diverges (see _engine.train_batches)."""
    cbk_keep_copy(dst, src, n * sizeof(floating))


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


cdef bint layer_step(int kind, const double* hp, long long t, double alpha,
                     const floating* a_prev, const CSRRows* sparse, const floating* dZ,
                     Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out, floating* W,
                     floating* g, floating* s1, floating* s2, bint need_grad) noexcept nogil:
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
    get ∂W in g, then `update_slice`; Adam at n = 1 folds the outer product
    into its loop instead, unless need_grad (the health figures read ∂W in g).
    λ = weight_decay + alpha (the L2 term's
    gradient αW); biases get no alpha. The result is
    the flat rule's, in another order of rounding. Returns True if a
    parameter of the layer became NaN or ±inf."""
    cdef Py_ssize_t i, nw = n_in * n_out
    cdef floating one = 1
    cdef bint bad = False
    cdef int level = kernel_level_code()
    cdef floating* gb = g + nw
    cdef floating* v = s1
    cdef floating lr = <floating> hp[HP_LR], mu = <floating> hp[HP_MOMENTUM]
    cdef floating wd = <floating> hp[HP_WEIGHT_DECAY], a = <floating> alpha
    cdef floating lam = wd + a
    cdef bint velocity = kind == SGD_VELOCITY
    cdef bint plain_sgd = (kind == SGD or velocity) and hp[HP_NESTEROV] == 0
    cdef bint in_gemm = gemm_writes_step(kind, hp)
    # The velocity form stores −lr·(the torch form's buffer): vg scales the
    # gradient into v, vs the step W takes from v.
    cdef floating vg = -lr if velocity else 1, vs = -1 if velocity else lr
    if in_gemm:
        # W ← (1 − lr·λ)·W − lr·a_prevᵀ·dZ: one example's outer product in a
        # loop that checks what it writes; else inside the GEMM, unchecked
        # (see gemm_writes_step).
        if n == 1 and sparse == NULL:
            if floating is float:
                bad = cbk_ssteps(level).sgd_rank1(n_in, n_out, -lr, 1 - lr * lam, a_prev, dZ, W)
            else:
                bad = cbk_dsteps(level).sgd_rank1(n_in, n_out, -lr, 1 - lr * lam, a_prev, dZ, W)
        else:
            input_t_gemm(sparse, a_prev, n, n_in, n_out, -lr, dZ, 1 - lr * lam, W)
        for i in range(nw, nw + n_out):
            W[i] -= lr * (gb[i - nw] + wd * W[i])
        return bad | nonfinite(W + nw, n_out)
    elif plain_sgd and n == 1 and sparse == NULL:
        # One example: ∂W = a_prevᵀ·dZ is an outer product, folded into the
        # momentum loop (one pass over v and W instead of two); the bias is
        # the same step with a_prev = 1 (and λ = weight_decay).
        if floating is float:
            return (cbk_ssteps(level).rank1(n_in, n_out, mu, vg, vs, lam, a_prev, dZ, W, v)
                    | cbk_ssteps(level).rank1(1, n_out, mu, vg, vs, wd, &one, dZ, W + nw,
                                              v + nw))
        else:
            return (cbk_dsteps(level).rank1(n_in, n_out, mu, vg, vs, lam, a_prev, dZ, W, v)
                    | cbk_dsteps(level).rank1(1, n_out, mu, vg, vs, wd, &one, dZ, W + nw,
                                              v + nw))
    elif plain_sgd:
        input_t_gemm(sparse, a_prev, n, n_in, n_out, vg, dZ, mu, v)
        if floating is float:
            return (cbk_ssteps(level).velocity_decay(nw, vg, vs, lam, W, v)
                    | cbk_ssteps(level).rank1(1, n_out, mu, vg, vs, wd, &one, gb, W + nw,
                                              v + nw))
        else:
            return (cbk_dsteps(level).velocity_decay(nw, vg, vs, lam, W, v)
                    | cbk_dsteps(level).rank1(1, n_out, mu, vg, vs, wd, &one, gb, W + nw,
                                              v + nw))
    elif (kind == ADAM or kind == ADAMW) and n == 1 and sparse == NULL and not need_grad:
        return (adam(kind == ADAMW, hp, t, W, dZ, s1, s2, n_out, a_prev, n_in, a)
                | adam(kind == ADAMW, hp, t, W + nw, gb, s1 + nw, s2 + nw, n_out, NULL, 0, 0))
    input_t_gemm(sparse, a_prev, n, n_in, n_out, <floating> 1, dZ, <floating> 0, g)
    if a != 0:
        for i in range(nw):
            g[i] += a * W[i]
    return update_slice(kind, hp, t, W, g, s1, s2, nw + n_out)


def step(int kind, const double[::1] hp, long long t, floating[::1] theta,
         const floating[::1] grad, floating[::1] state):
    """Apply update step t to theta in place (shapes checked by the caller);
    returns True if a parameter became NaN or ±inf."""
    cdef bint bad
    with nogil:
        bad = update(kind, &hp[0], t, &theta[0], &grad[0], &state[0], theta.shape[0])
    return bad
