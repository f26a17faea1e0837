/* Design: the optimizer rules are elementwise loops over θ, its gradient and
   state; for the shapes that stay in cache (small layers, one example per
   step) their speed is the vector width. _steps_impl.h holds each loop once;
   it is compiled here for AVX-512, for AVX2 and for baseline x86-64 (or any
   other CPU) through function target attributes, as _kernels.c does for the
   GEMM kernels, and the caller picks the table for the level _blas chose.
   Built with -ffp-contract=off (setup.py): no level fuses a·b + c, so all
   levels give the same bits. */

#include <math.h>
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
