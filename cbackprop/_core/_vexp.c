/* Design: softmax spends its time in e^x, and libm's exp is one scalar call
   per element. This e^x is plain arithmetic the compiler vectorises:
   x = k·ln2 + r with |r| ≤ ln2/2 (k rounded by adding and taking away
   1.5·2^p; ln2 split in two so that k·ln2_hi is exact), e^r by its Taylor
   polynomial (degree 7 for float, 13 for double: the truncation stays below
   a tenth of an ulp), and 2^k built in the exponent bits. The loop is
   compiled for AVX-512, AVX2 and baseline x86-64 by target attributes (as
   _kernels.c); with -ffp-contract=off (setup.py) every level gives the same
   bits, so results do not depend on the CPU. */

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "_kernels.h"
#include "_vexp.h"

#define VEXP(NAME, TARGET, T, U, ROUND, MANT, BIAS, LN2_HI, LN2_LO, MIN_X, POLY)   \
static TARGET void NAME(ptrdiff_t n, T *restrict x)                                  \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        T xi = x[i] < (T) (MIN_X) ? (T) (MIN_X) : x[i];                              \
        /* t = 1.5·2^p + k: k = round(x/ln2) lies in t's low mantissa bits */        \
        T t = xi * (T) 1.4426950408889634 + (T) (ROUND);                             \
        T k = t - (T) (ROUND);                                                       \
        T r = (xi - k * (T) (LN2_HI)) - k * (T) (LN2_LO);                            \
        T p = POLY;                                                                  \
        U bits, e;                                                                   \
        T scale;                                                                     \
        memcpy(&bits, &t, sizeof bits);                                              \
        e = (bits + BIAS) << MANT;       /* the bits of 2^k */                       \
        memcpy(&scale, &e, sizeof scale);                                            \
        x[i] = p * scale * (T) (x[i] >= (T) (MIN_X));                                \
    }                                                                                \
}

/* e^r = Σ rⁱ/i!, by Horner. */
#define F(c) ((float) (c))
#define POLY_F                                                                       \
    1 + r * (1 + r * (F(1 / 2.) + r * (F(1 / 6.) + r * (F(1 / 24.) + r * (F(1 / 120.)  \
    + r * (F(1 / 720.) + r * F(1 / 5040.)))))))
#define POLY_D                                                                       \
    1 + r * (1 + r * (1 / 2. + r * (1 / 6. + r * (1 / 24. + r * (1 / 120. + r * (1 / 720. \
    + r * (1 / 5040. + r * (1 / 40320. + r * (1 / 362880. + r * (1 / 3628800.        \
    + r * (1 / 39916800. + r * (1 / 479001600. + r * (1 / 6227020800.)))))))))))))

/* MIN_X: a bound above which e^x (and 2^k) is a normal number; below it, 0. */
#define FLOAT_ARGS(NAME, TARGET) \
    VEXP(NAME, TARGET, float, uint32_t, 0x1.8p23, 23, 127, 0.693359375, -2.12194440e-4, -87.0f, POLY_F)
#define DOUBLE_ARGS(NAME, TARGET) \
    VEXP(NAME, TARGET, double, uint64_t, 0x1.8p52, 52, 1023, 6.93145751953125e-1, \
         1.42860682030941723212e-6, -708.0, POLY_D)

FLOAT_ARGS(portable_sexp, )
DOUBLE_ARGS(portable_dexp, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CBK_X86 1
FLOAT_ARGS(avx512_sexp, __attribute__((target("avx512f,avx512vl,avx512dq"))))
DOUBLE_ARGS(avx512_dexp, __attribute__((target("avx512f,avx512vl,avx512dq"))))
FLOAT_ARGS(avx2_sexp, __attribute__((target("avx2"))))
DOUBLE_ARGS(avx2_dexp, __attribute__((target("avx2"))))
#endif

#ifdef CBK_X86
#define PICK(S)                                                                      \
    if (level == CBK_AVX512) avx512_##S##exp(n, x);                                  \
    else if (level == CBK_AVX2) avx2_##S##exp(n, x);                                 \
    else portable_##S##exp(n, x);
#else
#define PICK(S) portable_##S##exp(n, x);
#endif

void cbk_sexp_nonpositive(int level, ptrdiff_t n, float *x) { PICK(s) }
void cbk_dexp_nonpositive(int level, ptrdiff_t n, double *x) { PICK(d) }
