/* Design: small-shape GEMM kernels for the shapes where a BLAS call costs more
   in fixed overhead than in arithmetic (the first and last layers of small
   networks, batch-1 GEMVs and outer products). One register-blocked kernel
   (_kernels_impl.h: a tile of 8 or 4 rows × 2 vectors of C in registers, the k loop innermost, the
   column tail masked) is compiled for AVX-512 and for AVX2+FMA through
   function target attributes, so the module itself stays baseline x86-64; a
   portable C version serves every other CPU. The level is chosen once, from
   __builtin_cpu_supports, capped by CBACKPROP_KERNELS; _blas.pyx decides per
   shape whether these kernels or BLAS run. */

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* ---- threads: a GEMM's rows split over a small pool of workers --------------

   The GEMMs the hand kernels take last tens of microseconds: a thread started
   per call, or woken from sleep, costs about as much. So the workers wait for
   work spinning for a while (as OpenBLAS's do), then sleep on a condition
   variable; a GEMM splits only when `threads` > 1, and runs whole on the
   calling thread when the pool is busy (another Python thread's GEMM) or
   cannot start. Each part is a band of whole rows of C computed by the same
   kernel as the whole, so the bits are those of the whole GEMM. After fork()
   the child has no workers: the pool starts again. */

enum { POOL_MAX = 8 };
#define SPIN_NS 200000L   /* a worker spins this long for more work, then sleeps */

typedef struct {
    void (*fn)(void *);
    void *arg;
    _Atomic unsigned long posted, done;   /* job numbers: posted by the caller, done */
    _Atomic int sleeping;
    pthread_t thread;
    int started;
} worker_t;

static struct {
    worker_t w[POOL_MAX];
    atomic_flag busy;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_once_t atfork_once;
} pool = {.busy = ATOMIC_FLAG_INIT, .mu = PTHREAD_MUTEX_INITIALIZER,
          .cv = PTHREAD_COND_INITIALIZER, .atfork_once = PTHREAD_ONCE_INIT};

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *work(void *arg)
{
    worker_t *w = arg;
    unsigned long seen = 0;
    for (;;) {
        unsigned long job;
        long until = now_ns() + SPIN_NS;
        for (int i = 0; (job = atomic_load(&w->posted)) == seen; i++) {
            if ((i & 255) == 255 && now_ns() > until)
                break;
#ifdef CBK_X86
            _mm_pause();
#endif
        }
        if (job == seen) {
            /* The caller stores `posted` then reads `sleeping`; this stores
               `sleeping` then reads `posted` (sequentially consistent): one
               of the two sees the other's store, so no wake-up is lost. */
            pthread_mutex_lock(&pool.mu);
            atomic_store(&w->sleeping, 1);
            while ((job = atomic_load(&w->posted)) == seen)
                pthread_cond_wait(&pool.cv, &pool.mu);
            atomic_store(&w->sleeping, 0);
            pthread_mutex_unlock(&pool.mu);
        }
        seen = job;
        w->fn(w->arg);
        atomic_store(&w->done, job);
    }
    return NULL;
}

static void forget_workers(void)   /* in a child after fork(): none of them exist */
{
    for (int i = 0; i < POOL_MAX; i++) {
        pool.w[i].started = 0;
        atomic_store(&pool.w[i].posted, 0);
        atomic_store(&pool.w[i].done, 0);
        atomic_store(&pool.w[i].sleeping, 0);
    }
    atomic_flag_clear(&pool.busy);
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.cv, NULL);
}

static void register_atfork(void) { pthread_atfork(NULL, NULL, forget_workers); }

static int start_worker(worker_t *w)
{
    sigset_t all, old;
    pthread_once(&pool.atfork_once, register_atfork);
    sigfillset(&all);   /* signals go to the threads that handle them, not to workers */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    w->started = pthread_create(&w->thread, NULL, work, w) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (w->started)
        pthread_detach(w->thread);
    return w->started;
}

/* fn(args + i·size) for i < parts: part 0 on the calling thread, the others on
   the pool's workers (all on the calling thread when the pool is busy or a
   worker cannot start). Returns when every part is done. */
static void run_parts(int parts, void (*fn)(void *), char *args, size_t size)
{
    int used = 0;
    if (!atomic_flag_test_and_set(&pool.busy)) {
        for (used = 1; used < parts && (pool.w[used].started || start_worker(&pool.w[used]));
             used++) {
            worker_t *w = &pool.w[used];
            w->fn = fn;
            w->arg = args + used * size;
            atomic_store(&w->posted, atomic_load(&w->posted) + 1);
            if (atomic_load(&w->sleeping)) {
                pthread_mutex_lock(&pool.mu);
                pthread_cond_broadcast(&pool.cv);
                pthread_mutex_unlock(&pool.mu);
            }
        }
    }
    fn(args);
    for (int i = used > 0 ? used : 1; i < parts; i++)    /* parts no worker took */
        fn(args + i * size);
    for (int i = 1; i < used; i++)
        while (atomic_load(&pool.w[i].done) != atomic_load(&pool.w[i].posted)) {
#ifdef CBK_X86
            _mm_pause();
#endif
        }
    if (used > 0)
        atomic_flag_clear(&pool.busy);
}

int cbk_gemm_splits(int m, int n, int k)
{
    return m >= 2 * SPLIT_MIN_ROWS && (long) m * n * k >= SPLIT_MIN_MNK;
}

#define THREADED(NAME, T, KERNEL)                                               \
typedef struct {                                                                \
    int trans_a, trans_b, m, n, k;                                              \
    T alpha, beta;                                                              \
    const T *A, *B;                                                             \
    T *C;                                                                       \
    int lda, ldb, ldc;                                                          \
} NAME##_part_t;                                                                \
static void NAME##_part(void *arg)                                              \
{                                                                               \
    NAME##_part_t *p = arg;                                                     \
    KERNEL(p->trans_a, p->trans_b, p->m, p->n, p->k, p->alpha, p->A, p->lda,    \
           p->B, p->ldb, p->beta, p->C, p->ldc);                                \
}                                                                               \
void NAME(int threads, int trans_a, int trans_b, int m, int n, int k, T alpha,   \
          const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc)       \
{                                                                               \
    NAME##_part_t parts[POOL_MAX];                                              \
    int n_parts = threads < POOL_MAX ? threads : POOL_MAX, rows;                \
    if (n_parts > m / SPLIT_MIN_ROWS)                                           \
        n_parts = m / SPLIT_MIN_ROWS;                                           \
    if (n_parts < 2 || !cbk_gemm_splits(m, n, k)) {                             \
        KERNEL(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); \
        return;                                                                 \
    }                                                                           \
    rows = ((m + n_parts - 1) / n_parts + 7) / 8 * 8;  /* whole 8-row tiles */  \
    n_parts = (m + rows - 1) / rows;                                            \
    for (int i = 0; i < n_parts; i++) {                                         \
        int lo = i * rows, hi = lo + rows < m ? lo + rows : m;                  \
        parts[i] = (NAME##_part_t){trans_a, trans_b, hi - lo, n, k, alpha, beta,  \
                                   A + (trans_a ? lo : (ptrdiff_t) lo * lda), B, \
                                   C + (ptrdiff_t) lo * ldc, lda, ldb, ldc};      \
    }                                                                           \
    run_parts(n_parts, NAME##_part, (char *) parts, sizeof(parts[0]));          \
}
THREADED(cbk_sgemm_threads, float, cbk_sgemm)
THREADED(cbk_dgemm_threads, double, cbk_dgemm)
