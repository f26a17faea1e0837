/* e^x over an array, vectorised per instruction set, bitwise equal at every level (see _vexp.c). */
#ifndef CBACKPROP_VEXP_H
#define CBACKPROP_VEXP_H

#include <stddef.h>

/* x[i] ← e^x[i] in place, for x[i] ≤ 0 (softmax's z − z_max): within 2 ulp
   of e^x, 0 below the smallest normal result. `level` is a CBK_* level of
   _kernels.h. */
void cbk_sexp_nonpositive(int level, ptrdiff_t n, float *x);
void cbk_dexp_nonpositive(int level, ptrdiff_t n, double *x);

#endif
