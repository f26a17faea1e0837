/* Design: the optimizer rules are elementwise loops over θ, its gradient and
   state; for the shapes that stay in cache (small layers, one example per
   step) their speed is the vector width. _steps_impl.h holds each loop once;
   it is compiled here for AVX-512, for AVX2 and for baseline x86-64 (or any
   other CPU) through function target attributes, as _kernels.c does for the
   GEMM kernels, and the caller picks the table for the level _blas chose.
   Built with -ffp-contract=off (setup.py): no level fuses a·b + c, so all
   levels give the same bits. */

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
#endif
#include "_kernels.h"
#include "_steps.h"

/* NaN and ±inf are the values for which x − x is not 0 (branch-free, so the
   loops stay vectorised; -fno-trapping-math, setup.py). */
#define NONFINITE(x) ((x) - (x) != 0)

#define TARGET
#define T float
#define FN(name) portable_s##name
#define SQRT sqrtf
#define STEPS_T cbk_ssteps_t
#include "_steps_impl.h"
#define T double
#define FN(name) portable_d##name
#define SQRT sqrt
#define STEPS_T cbk_dsteps_t
#include "_steps_impl.h"
#undef TARGET

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CBK_X86 1
#define TARGET __attribute__((target("avx512f,avx512vl")))
#define T float
#define FN(name) avx512_s##name
#define SQRT sqrtf
#define STEPS_T cbk_ssteps_t
#include "_steps_impl.h"
#define T double
#define FN(name) avx512_d##name
#define SQRT sqrt
#define STEPS_T cbk_dsteps_t
#include "_steps_impl.h"
#undef TARGET

#define TARGET __attribute__((target("avx2")))
#define T float
#define FN(name) avx2_s##name
#define SQRT sqrtf
#define STEPS_T cbk_ssteps_t
#include "_steps_impl.h"
#define T double
#define FN(name) avx2_d##name
#define SQRT sqrt
#define STEPS_T cbk_dsteps_t
#include "_steps_impl.h"
#undef TARGET
#endif

#ifdef CBK_X86
#define PICK(S) \
    return level == CBK_AVX512 ? &avx512_##S##steps : level == CBK_AVX2 ? &avx2_##S##steps \
                                                                         : &portable_##S##steps;
#else
#define PICK(S) return &portable_##S##steps;
#endif

const cbk_ssteps_t *cbk_ssteps(int level) { PICK(s) }
const cbk_dsteps_t *cbk_dsteps(int level) { PICK(d) }

/* Non-temporal stores (SSE2, so every x86-64 has them) write whole cache lines
   without reading them first and without evicting what the step reads next;
   memcpy keeps small copies in the cache, which a rollback copy only pollutes. */
void cbk_keep_copy(void *dst, const void *src, size_t bytes)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    char *d = dst;
    const char *s = src;
    size_t head = (16 - ((uintptr_t)d & 15)) & 15;
    if (head > bytes)
        head = bytes;
    memcpy(d, s, head);
    d += head;
    s += head;
    bytes -= head;
    for (; bytes >= 64; bytes -= 64, d += 64, s += 64) {
        __m128i x0 = _mm_loadu_si128((const __m128i *)s);
        __m128i x1 = _mm_loadu_si128((const __m128i *)(s + 16));
        __m128i x2 = _mm_loadu_si128((const __m128i *)(s + 32));
        __m128i x3 = _mm_loadu_si128((const __m128i *)(s + 48));
        _mm_stream_si128((__m128i *)d, x0);
        _mm_stream_si128((__m128i *)(d + 16), x1);
        _mm_stream_si128((__m128i *)(d + 32), x2);
        _mm_stream_si128((__m128i *)(d + 48), x3);
    }
    _mm_sfence();   /* the streamed lines are visible before the copy is used */
    memcpy(d, s, bytes);
#else
    memcpy(dst, src, bytes);
#endif
}
