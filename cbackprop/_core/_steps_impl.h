/* One instantiation of the optimizer loops; _steps.c includes this file once
   per (instruction set, dtype) after defining T, TARGET and FN(name). Each
   loop returns 1 when a parameter it wrote is NaN or ±inf (the fit then
   rolls back), tested as it is written: no second pass over θ. The
   loops are plain C the compiler vectorises for TARGET; each expression is
   written as _optim.pyx's rules state it, and the module is built with
   -ffp-contract=off, so every level rounds the same way (bitwise equal
   results). */

static TARGET int FN(sgd)(ptrdiff_t n, T lr, T wd, T *restrict theta, const T *restrict g)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        theta[i] -= lr * (g[i] + wd * theta[i]);
        bad |= NONFINITE(theta[i]);
    }
    return bad;
}

static TARGET int FN(momentum)(ptrdiff_t n, T lr, T mu, T wd, T *restrict theta,
                                const T *restrict g, T *restrict v)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        v[i] = mu * v[i] + g[i] + wd * theta[i];
        theta[i] -= lr * v[i];
        bad |= NONFINITE(theta[i]);
    }
    return bad;
}

static TARGET int FN(nesterov)(ptrdiff_t n, T lr, T mu, T wd, T *restrict theta,
                                const T *restrict g, T *restrict v)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        T gi = g[i] + wd * theta[i];
        v[i] = mu * v[i] + gi;
        theta[i] -= lr * (gi + mu * v[i]);
        bad |= NONFINITE(theta[i]);
    }
    return bad;
}

static TARGET int FN(velocity)(ptrdiff_t n, T lr, T mu, T wd, T *restrict theta,
                                const T *restrict g, T *restrict v)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        v[i] = mu * v[i] - lr * (g[i] + wd * theta[i]);
        theta[i] += v[i];
        bad |= NONFINITE(theta[i]);
    }
    return bad;
}

static TARGET int FN(velocity_nesterov)(ptrdiff_t n, T lr, T mu, T wd, T *restrict theta,
                                         const T *restrict g, T *restrict v)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        T gi = g[i] + wd * theta[i];
        v[i] = mu * v[i] - lr * gi;
        theta[i] += mu * v[i] - lr * gi;
        bad |= NONFINITE(theta[i]);
    }
    return bad;
}

static TARGET int FN(adam)(ptrdiff_t n, T step, T inv_sqrt_bc2, T eps, T wd, T b1, T b2,
                            T c1, T c2, T shrink, T *restrict theta, const T *restrict g,
                            T *restrict m, T *restrict v)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        T gi = g[i] + wd * theta[i];
        m[i] = b1 * m[i] + c1 * gi;
        v[i] = b2 * v[i] + c2 * gi * gi;
        theta[i] = shrink * theta[i] - step * m[i] / (SQRT(v[i]) * inv_sqrt_bc2 + eps);
        bad |= NONFINITE(theta[i]);
    }
    return bad;
}

static TARGET int FN(rmsprop)(ptrdiff_t n, T lr, T wd, T eps, T alpha, T c,
                               T *restrict theta, const T *restrict g, T *restrict v)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        T gi = g[i] + wd * theta[i];
        v[i] = alpha * v[i] + c * gi * gi;
        theta[i] -= lr * gi / (SQRT(v[i]) + eps);
        bad |= NONFINITE(theta[i]);
    }
    return bad;
}

static TARGET int FN(rmsprop_momentum)(ptrdiff_t n, T lr, T mu, T wd, T eps, T alpha, T c,
                                        T *restrict theta, const T *restrict g,
                                        T *restrict v, T *restrict b)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        T gi = g[i] + wd * theta[i];
        v[i] = alpha * v[i] + c * gi * gi;
        b[i] = mu * b[i] + gi / (SQRT(v[i]) + eps);
        theta[i] -= lr * b[i];
        bad |= NONFINITE(theta[i]);
    }
    return bad;
}

static TARGET int FN(velocity_decay)(ptrdiff_t n, T vg, T vs, T lam, T *restrict W,
                                      T *restrict v)
{
    int bad = 0;
    if (lam == 0) {  /* v += 0·W leaves v as it is: skip the pass that writes it */
        for (ptrdiff_t i = 0; i < n; i++) {
            W[i] -= vs * v[i];
            bad |= NONFINITE(W[i]);
        }
        return bad;
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        v[i] += vg * lam * W[i];
        W[i] -= vs * v[i];
        bad |= NONFINITE(W[i]);
    }
    return bad;
}

static TARGET int FN(rank1)(ptrdiff_t n_in, ptrdiff_t n_out, T mu, T vg, T vs, T lam,
                             const T *restrict a, const T *restrict delta, T *restrict W,
                             T *restrict v)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n_in; i++) {
        T ai = a[i];
        T *restrict w = W + i * n_out, *restrict vi = v + i * n_out;
        for (ptrdiff_t j = 0; j < n_out; j++) {
            vi[j] = mu * vi[j] + vg * ai * delta[j] + vg * lam * w[j];
            w[j] -= vs * vi[j];
            bad |= NONFINITE(w[j]);
        }
    }
    return bad;
}

static TARGET int FN(sgd_rank1)(ptrdiff_t n_in, ptrdiff_t n_out, T alpha, T beta,
                                const T *restrict a, const T *restrict delta, T *restrict W)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n_in; i++) {
        T ai = alpha * a[i];
        T *restrict w = W + i * n_out;
        for (ptrdiff_t j = 0; j < n_out; j++) {
            w[j] = ai * delta[j] + beta * w[j];
            bad |= NONFINITE(w[j]);
        }
    }
    return bad;
}

static TARGET int FN(adam_rank1)(ptrdiff_t n_in, ptrdiff_t n_out, T alpha, T step,
                                  T inv_sqrt_bc2, T eps, T wd, T b1, T b2, T c1, T c2,
                                  T shrink, const T *restrict a, const T *restrict delta,
                                  T *restrict W, T *restrict m, T *restrict v)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n_in; i++) {
        T ai = a[i];
        T *restrict w = W + i * n_out, *restrict mi = m + i * n_out;
        T *restrict vi = v + i * n_out;
        for (ptrdiff_t j = 0; j < n_out; j++) {
            /* ∂W as the GEMM forms it (a sum from +0: a −0 product gives +0),
               plus the L2 term; then adam's lines */
            T g = (ai * delta[j] + (T) 0) + alpha * w[j];
            T gi = g + wd * w[j];
            mi[j] = b1 * mi[j] + c1 * gi;
            vi[j] = b2 * vi[j] + c2 * gi * gi;
            w[j] = shrink * w[j] - step * mi[j] / (SQRT(vi[j]) * inv_sqrt_bc2 + eps);
            bad |= NONFINITE(w[j]);
        }
    }
    return bad;
}

static TARGET int FN(nonfinite)(ptrdiff_t n, const T *restrict x)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++)
        bad |= NONFINITE(x[i]);
    return bad;
}

static const STEPS_T FN(steps) = {
    FN(sgd), FN(momentum), FN(nesterov), FN(velocity), FN(velocity_nesterov), FN(adam),
    FN(rmsprop), FN(rmsprop_momentum), FN(velocity_decay), FN(rank1),
    FN(sgd_rank1), FN(adam_rank1), FN(nonfinite),
};

#undef T
#undef FN
#undef SQRT
#undef STEPS_T
