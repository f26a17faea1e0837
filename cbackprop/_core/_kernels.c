/* Design: small-shape GEMM kernels for the shapes where a BLAS call costs more
   in fixed overhead than in arithmetic (the first and last layers of small
   networks, batch-1 GEMVs and outer products). One register-blocked kernel
   (_kernels_impl.h: a tile of 8 or 4 rows × 2 vectors of C in registers, the k loop innermost, the
   column tail masked) is compiled for AVX-512 and for AVX2+FMA through
   function target attributes, so the module itself stays baseline x86-64; a
   portable C version serves every other CPU. The level is chosen once, from
   __builtin_cpu_supports, capped by CBACKPROP_KERNELS; _blas.pyx decides per
   shape whether these kernels or BLAS run. */

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "_kernels.h"

/* ---- portable: the same operation in plain C (any CPU) ----------------------- */

#define PORTABLE(NAME, T)                                                       \
static void NAME(int trans_a, int trans_b, int m, int n, int k, T alpha,         \
                 const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc) \
{                                                                               \
    ptrdiff_t sai = trans_a ? 1 : lda, sap = trans_a ? lda : 1;                 \
    int i, j, p;                                                                \
    for (i = 0; i < m; i++) {                                                   \
        T *c = C + i * (ptrdiff_t) ldc;                                         \
        if (trans_b) {  /* dot products along contiguous rows of B */           \
            for (j = 0; j < n; j++) {                                           \
                T acc = 0;                                                      \
                for (p = 0; p < k; p++)                                         \
                    acc += A[i * sai + p * sap] * B[j * (ptrdiff_t) ldb + p];   \
                c[j] = beta == 0 ? alpha * acc : alpha * acc + beta * c[j];     \
            }                                                                   \
            continue;                                                           \
        }                                                                       \
        /* row i of C: beta·C[i] + Σ_p alpha·A[i, p]·B[p] (axpys the compiler   \
           vectorises) */                                                       \
        T aip = alpha * A[i * sai];                                             \
        for (j = 0; j < n; j++)                                                 \
            c[j] = beta == 0 ? aip * B[j] : aip * B[j] + beta * c[j];           \
        for (p = 1; p < k; p++) {                                               \
            const T *b = B + p * (ptrdiff_t) ldb;                               \
            aip = alpha * A[i * sai + p * sap];                                 \
            for (j = 0; j < n; j++)                                             \
                c[j] += aip * b[j];                                             \
        }                                                                       \
    }                                                                           \
}
PORTABLE(portable_sgemm, float)
PORTABLE(portable_dgemm, double)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CBK_X86 1
#include <immintrin.h>

/* ---- AVX-512 (F + VL): 16 floats / 8 doubles per vector, masked tails -------- */
#define TARGET __attribute__((target("avx512f,avx512vl,fma")))
/* 8×2 tiles: 16 accumulators of the 32 registers, enough to hide FMA latency. */
#define MR_MAX 8
#define NV_MAX 2

#define T float
#define V __m512
#define W 16
#define MASK_T __mmask16
#define FN(name) avx512_s##name
#define ZERO() _mm512_setzero_ps()
#define SET1(x) _mm512_set1_ps(x)
#define LOADM(p, mk) _mm512_maskz_loadu_ps(mk, p)
#define STOREM(p, mk, v) _mm512_mask_storeu_ps(p, mk, v)
#define FMADD(a, b, c) _mm512_fmadd_ps(a, b, c)
#define MUL(a, b) _mm512_mul_ps(a, b)
#define MASK(n) ((__mmask16) ((1u << (n)) - 1u))
#include "_kernels_impl.h"

#define T double
#define V __m512d
#define W 8
#define MASK_T __mmask8
#define FN(name) avx512_d##name
#define ZERO() _mm512_setzero_pd()
#define SET1(x) _mm512_set1_pd(x)
#define LOADM(p, mk) _mm512_maskz_loadu_pd(mk, p)
#define STOREM(p, mk, v) _mm512_mask_storeu_pd(p, mk, v)
#define FMADD(a, b, c) _mm512_fmadd_pd(a, b, c)
#define MUL(a, b) _mm512_mul_pd(a, b)
#define MASK(n) ((__mmask8) ((1u << (n)) - 1u))
#include "_kernels_impl.h"
#undef TARGET
#undef MR_MAX
#undef NV_MAX

/* ---- AVX2 + FMA: 8 floats / 4 doubles per vector (16 registers: 4×2 tiles) -- */
#define TARGET __attribute__((target("avx2,fma")))
#define MR_MAX 4
#define NV_MAX 2

/* Lane masks for maskload/maskstore: lanes below n all ones. */
static const int avx2_lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

#define T float
#define V __m256
#define W 8
#define MASK_T __m256i
#define FN(name) avx2_s##name
#define ZERO() _mm256_setzero_ps()
#define SET1(x) _mm256_set1_ps(x)
#define LOADM(p, mk) _mm256_maskload_ps(p, mk)
#define STOREM(p, mk, v) _mm256_maskstore_ps(p, mk, v)
#define FMADD(a, b, c) _mm256_fmadd_ps(a, b, c)
#define MUL(a, b) _mm256_mul_ps(a, b)
#define MASK(n) _mm256_loadu_si256((const __m256i *) (avx2_lanes + 8 - (n)))
#include "_kernels_impl.h"

/* 64-bit lanes: lane i of a double mask is ints 2i and 2i+1. */
#define T double
#define V __m256d
#define W 4
#define MASK_T __m256i
#define FN(name) avx2_d##name
#define ZERO() _mm256_setzero_pd()
#define SET1(x) _mm256_set1_pd(x)
#define LOADM(p, mk) _mm256_maskload_pd(p, mk)
#define STOREM(p, mk, v) _mm256_maskstore_pd(p, mk, v)
#define FMADD(a, b, c) _mm256_fmadd_pd(a, b, c)
#define MUL(a, b) _mm256_mul_pd(a, b)
#define MASK(n) _mm256_loadu_si256((const __m256i *) (avx2_lanes + 8 - 2 * (n)))
#include "_kernels_impl.h"
#undef TARGET
#undef MR_MAX
#undef NV_MAX
#endif

/* ---- dispatch --------------------------------------------------------------- */

static int cpu_level(void)
{
#ifdef CBK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        return CBK_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return CBK_AVX2;
#endif
    return CBK_PORTABLE;
}

static int level = -1;

int cbk_set_level(int wanted)
{
    int best = cpu_level();
    level = wanted < best ? wanted : best;
    return level;
}

int cbk_level(void)
{
    if (level < 0) {
        const char *cap = getenv("CBACKPROP_KERNELS");
        int wanted = CBK_AVX512;
        if (cap != NULL && strcmp(cap, "portable") == 0)
            wanted = CBK_PORTABLE;
        else if (cap != NULL && strcmp(cap, "avx2") == 0)
            wanted = CBK_AVX2;
        cbk_set_level(wanted);
    }
    return level;
}

#define DISPATCH(NAME, T, S)                                                    \
void NAME(int trans_a, int trans_b, int m, int n, int k, T alpha, const T *A,    \
          int lda, const T *B, int ldb, T beta, T *C, int ldc)                   \
{                                                                               \
    int lv = level;  /* set when _blas is imported (cbk_level) */               \
    /* Outer products (k = 1: the masked stores dominate), a few rows of      \
       dot products (packing Bᵀ dominates), a Bᵀ too big to pack: portable. */ \
    if (k == 1 || (trans_b && (m < 4 || (long) k * n > CBK_PACK_MAX)))          \
        lv = CBK_PORTABLE;                                                      \
    DISPATCH_X86(T, S)                                                          \
    portable_##S##gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); \
}
#ifdef CBK_X86
#define DISPATCH_X86(T, S)                                                      \
    if (lv == CBK_AVX512) {                                                     \
        avx512_##S##gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); \
        return;                                                                 \
    }                                                                           \
    if (lv == CBK_AVX2) {                                                       \
        avx2_##S##gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); \
        return;                                                                 \
    }
#else
#define DISPATCH_X86(T, S)
#endif
DISPATCH(cbk_sgemm, float, s)
DISPATCH(cbk_dgemm, double, d)
