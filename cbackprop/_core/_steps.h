/* The optimizer rules' per-element loops, compiled per instruction set (see _steps.c). */
#ifndef CBACKPROP_STEPS_H
#define CBACKPROP_STEPS_H

#include <stddef.h>

/* One table of loops per (level, dtype); T is float (cbk_ssteps) or double
   (cbk_dsteps). Every loop is elementwise over i < n (rank1: i < n_in, j < n_out)
   and returns 1 if a parameter it wrote is NaN or ±inf, else 0. */
#define CBK_STEPS_STRUCT(NAME, T)                                                 \
typedef struct {                                                                  \
    /* θ ← θ − lr·(g + λθ) */                                                     \
    int (*sgd)(ptrdiff_t n, T lr, T wd, T *theta, const T *g);                   \
    /* v ← μv + g + λθ; θ ← θ − lr·v */                                           \
    int (*momentum)(ptrdiff_t n, T lr, T mu, T wd, T *theta, const T *g, T *v);  \
    /* v ← μv + g + λθ; θ ← θ − lr·(g + λθ + μv) */                               \
    int (*nesterov)(ptrdiff_t n, T lr, T mu, T wd, T *theta, const T *g, T *v);  \
    /* v ← μv − lr·(g + λθ); θ ← θ + v */                                         \
    int (*velocity)(ptrdiff_t n, T lr, T mu, T wd, T *theta, const T *g, T *v);  \
    /* v ← μv − lr·(g + λθ); θ ← θ + μv − lr·(g + λθ) */                          \
    int (*velocity_nesterov)(ptrdiff_t n, T lr, T mu, T wd, T *theta, const T *g, \
                              T *v);                                              \
    /* Adam (see _optim.pyx for the scalars) */                                   \
    int (*adam)(ptrdiff_t n, T step, T inv_sqrt_bc2, T eps, T wd, T b1, T b2, T c1, \
                 T c2, T shrink, T *theta, const T *g, T *m, T *v);               \
    /* v ← αv + c·g²; θ ← θ − lr·g/(√v + ε), g = g + λθ */                        \
    int (*rmsprop)(ptrdiff_t n, T lr, T wd, T eps, T alpha, T c, T *theta,       \
                    const T *g, T *v);                                            \
    /* the same, with b ← μb + g/(√v + ε), θ ← θ − lr·b */                        \
    int (*rmsprop_momentum)(ptrdiff_t n, T lr, T mu, T wd, T eps, T alpha, T c,  \
                             T *theta, const T *g, T *v, T *b);                   \
    /* after v ← μv + vg·a_prevᵀ·δ (a GEMM): v ← v + vg·λ·W; W ← W − vs·v */       \
    int (*velocity_decay)(ptrdiff_t n, T vg, T vs, T lam, T *W, T *v);           \
    /* one example's momentum step, ∂W = a ⊗ δ folded in:                          \
       v ← μv + vg·a_i·δ_j + vg·λ·W; W ← W − vs·v  (n_in × n_out) */               \
    int (*rank1)(ptrdiff_t n_in, ptrdiff_t n_out, T mu, T vg, T vs, T lam,       \
                  const T *a, const T *delta, T *W, T *v);                        \
    /* one example's plain SGD step: W ← β·W + (α·a_i)·δ_j (α = −lr, β = 1 − lr·λ) */ \
    int (*sgd_rank1)(ptrdiff_t n_in, ptrdiff_t n_out, T alpha, T beta, const T *a,    \
                     const T *delta, T *W);                                       \
    /* one example's Adam step on W (n_in × n_out), ∂W = a ⊗ δ + α·W folded in */  \
    int (*adam_rank1)(ptrdiff_t n_in, ptrdiff_t n_out, T alpha, T step, T inv_sqrt_bc2, \
                      T eps, T wd, T b1, T b2, T c1, T c2, T shrink, const T *a,   \
                      const T *delta, T *W, T *m, T *v);                           \
    /* 1 if any x[i] is NaN or ±inf */                                            \
    int (*nonfinite)(ptrdiff_t n, const T *x);                                    \
} NAME;
CBK_STEPS_STRUCT(cbk_ssteps_t, float)
CBK_STEPS_STRUCT(cbk_dsteps_t, double)
#undef CBK_STEPS_STRUCT

/* The loops for a kernel level (CBK_PORTABLE, CBK_AVX2, CBK_AVX512 of
   _kernels.h; the caller passes the level _blas chose). */
const cbk_ssteps_t *cbk_ssteps(int level);
const cbk_dsteps_t *cbk_dsteps(int level);

/* dst[0:bytes] = src[0:bytes], written past the caches where the CPU can:
   for the rollback copy that a fit's first update keeps, which is read back
   only if the fit diverges. */
void cbk_keep_copy(void *dst, const void *src, size_t bytes);

#endif
