/* Small-shape GEMM kernels with run-time dispatch (see _kernels.c). */
#ifndef CBACKPROP_KERNELS_H
#define CBACKPROP_KERNELS_H

/* Instruction-set levels, lowest first. */
enum { CBK_PORTABLE = 0, CBK_AVX2 = 1, CBK_AVX512 = 2 };

/* The level the kernels run at: the best this CPU has, capped by the
   environment variable CBACKPROP_KERNELS (portable, avx2, avx512) at start. */
int cbk_level(void);
/* Run at `level` from now on, capped to what the CPU has (for tests); returns
   the level set. Call only while no kernel runs. */
int cbk_set_level(int level);

/* Row-major C(m×n) = alpha·op(A)(m×k)·op(B)(k×n) + beta·C, any shape
   (C is read only when beta ≠ 0). Deterministic: each C[i, j] is summed
   along p in order, the same way for every shape and thread. */
void cbk_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc);
void cbk_dgemm(int trans_a, int trans_b, int m, int n, int k, double alpha,
               const double *A, int lda, const double *B, int ldb, double beta,
               double *C, int ldc);

/* A GEMM splits into bands of at least SPLIT_MIN_ROWS rows, and only from
   SPLIT_MIN_MNK multiply-adds on (below, a hand-off costs about what it saves). */
#define SPLIT_MIN_ROWS 16
#define SPLIT_MIN_MNK (1L << 20)
/* Whether a GEMM of this shape splits over threads (when more than one is allowed). */
int cbk_gemm_splits(int m, int n, int k);

/* The same, its rows split over up to `threads` threads (a small pool that
   spins while GEMMs follow one another) when the GEMM is large enough to gain;
   bitwise the result of cbk_sgemm/cbk_dgemm. */
void cbk_sgemm_threads(int threads, int trans_a, int trans_b, int m, int n, int k,
                       float alpha, const float *A, int lda, const float *B, int ldb,
                       float beta, float *C, int ldc);
void cbk_dgemm_threads(int threads, int trans_a, int trans_b, int m, int n, int k,
                       double alpha, const double *A, int lda, const double *B, int ldb,
                       double beta, double *C, int ldc);

/* Elements of op(B) the kernels copy to the stack for trans_b (k·n at most). */
#define CBK_PACK_MAX 4096

#endif
