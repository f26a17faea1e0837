/* One instantiation of the register-blocked kernel; _kernels.c includes this
   file once per (instruction set, dtype) after defining:
     T, V, W (elements per vector), MASK_T, TARGET (a target attribute),
     MR_MAX (rows of a tile: 4 or 8), NV_MAX (vectors per row of a tile: 2), FN(name) (the instance's names), and
     ZERO(), SET1(x), LOADM(p, mask), STOREM(p, mask, v), FMADD(a, b, c),
     MUL(a, b), MASK(n) (the first n of W lanes, 1 ≤ n ≤ W).
   It undefines the per-dtype ones at its end (TARGET, MR_MAX and NV_MAX
   belong to an instruction set and stay). */

/* C[0:MR, 0:nc] = alpha·Σ_p a(r, p)·B[p, 0:nc] + beta·C, nc ≤ NV·W: MR×NV
   accumulator vectors stay in registers over the whole k loop. Always
   inlined with constant MR and NV, so the loops unroll. */
static inline __attribute__((always_inline)) TARGET void
FN(tile)(const int MR, const int NV, int k, T alpha, const T *A, ptrdiff_t sai,
         ptrdiff_t sap, const T *B, ptrdiff_t ldb, T beta, T *C, ptrdiff_t ldc, int nc)
{
    V acc[MR_MAX][NV_MAX], b[NV_MAX];
    MASK_T full = MASK(W), last = MASK(nc - (NV - 1) * W);
    int r, v, p;
    for (r = 0; r < MR; r++)
        for (v = 0; v < NV; v++)
            acc[r][v] = ZERO();
    for (p = 0; p < k; p++) {
        for (v = 0; v < NV; v++)
            b[v] = LOADM(B + p * ldb + v * W, v == NV - 1 ? last : full);
        for (r = 0; r < MR; r++) {
            V a = SET1(A[r * sai + p * sap]);
            for (v = 0; v < NV; v++)
                acc[r][v] = FMADD(a, b[v], acc[r][v]);
        }
    }
    for (r = 0; r < MR; r++)
        for (v = 0; v < NV; v++) {
            MASK_T mk = v == NV - 1 ? last : full;
            T *c = C + r * ldc + v * W;
            V x = MUL(SET1(alpha), acc[r][v]);
            if (beta != 0)
                x = FMADD(SET1(beta), LOADM(c, mk), x);
            STOREM(c, mk, x);
        }
}

/* One row of C (a batch of one: z = a·B), ROW_NV vectors of it at a time:
   a wider tile than FN(tile)'s, so that enough FMAs are in flight with a
   single row. The same operations as FN(tile) with MR = 1, so the same bits. */
#define ROW_NV 8
static inline __attribute__((always_inline)) TARGET void
FN(row)(const int NV, int k, T alpha, const T *A, ptrdiff_t sap, const T *B,
        ptrdiff_t ldb, T beta, T *C, int nc)
{
    V acc[ROW_NV];
    MASK_T full = MASK(W), last = MASK(nc - (NV - 1) * W);
    int v, p;
    for (v = 0; v < NV; v++)
        acc[v] = ZERO();
    for (p = 0; p < k; p++) {
        V a = SET1(A[p * sap]);
        for (v = 0; v < NV; v++)
            acc[v] = FMADD(a, LOADM(B + p * ldb + v * W, v == NV - 1 ? last : full), acc[v]);
    }
    for (v = 0; v < NV; v++) {
        MASK_T mk = v == NV - 1 ? last : full;
        V x = MUL(SET1(alpha), acc[v]);
        if (beta != 0)
            x = FMADD(SET1(beta), LOADM(C + v * W, mk), x);
        STOREM(C + v * W, mk, x);
    }
}

/* The tile for this panel's nv vectors (nv ≤ NV_MAX = 2). */
#define CBK_TILES(MR)                                                          \
    switch (nv) {                                                              \
    case 1: FN(tile)(MR, 1, k, alpha, a, sai, sap, b, ldb, beta, c, ldc, nc); break; \
    case 2: FN(tile)(MR, 2, k, alpha, a, sai, sap, b, ldb, beta, c, ldc, nc); break; \
    }

static TARGET void
FN(gemm)(int trans_a, int trans_b, int m, int n, int k, T alpha, const T *A, int lda,
         const T *B, int ldb, T beta, T *C, int ldc)
{
    T pack[CBK_PACK_MAX] __attribute__((aligned(64)));
    ptrdiff_t sai = trans_a ? 1 : lda, sap = trans_a ? lda : 1;
    int i, j0, nc, nv, p, j;
    if (trans_b) {
        /* op(B) = Bᵀ: copy it row-major (the caller keeps k·n ≤ CBK_PACK_MAX). */
        for (p = 0; p < k; p++)
            for (j = 0; j < n; j++)
                pack[p * n + j] = B[j * (ptrdiff_t) ldb + p];
        B = pack;
        ldb = n;
    }
    if (m == 1) {
        for (j0 = 0; j0 < n; j0 += ROW_NV * W) {
            const T *b = B + j0;
            T *c = C + j0;
            nc = n - j0 < ROW_NV * W ? n - j0 : ROW_NV * W;
            switch ((nc + W - 1) / W) {
            case 1: FN(row)(1, k, alpha, A, sap, b, ldb, beta, c, nc); break;
            case 2: FN(row)(2, k, alpha, A, sap, b, ldb, beta, c, nc); break;
            case 3: FN(row)(3, k, alpha, A, sap, b, ldb, beta, c, nc); break;
            case 4: FN(row)(4, k, alpha, A, sap, b, ldb, beta, c, nc); break;
            case 5: FN(row)(5, k, alpha, A, sap, b, ldb, beta, c, nc); break;
            case 6: FN(row)(6, k, alpha, A, sap, b, ldb, beta, c, nc); break;
            case 7: FN(row)(7, k, alpha, A, sap, b, ldb, beta, c, nc); break;
            case 8: FN(row)(8, k, alpha, A, sap, b, ldb, beta, c, nc); break;
            }
        }
        return;
    }
    for (j0 = 0; j0 < n; j0 += NV_MAX * W) {
        const T *b = B + j0;
        nc = n - j0 < NV_MAX * W ? n - j0 : NV_MAX * W;
        nv = (nc + W - 1) / W;
#if MR_MAX == 8
        for (i = 0; i + 8 <= m; i += 8) {
            const T *a = A + i * sai;
            T *c = C + i * (ptrdiff_t) ldc + j0;
            CBK_TILES(8)
        }
#else
        i = 0;
#endif
        for (; i + 4 <= m; i += 4) {
            const T *a = A + i * sai;
            T *c = C + i * (ptrdiff_t) ldc + j0;
            CBK_TILES(4)
        }
        for (; i < m; i++) {
            const T *a = A + i * sai;
            T *c = C + i * (ptrdiff_t) ldc + j0;
            CBK_TILES(1)
        }
    }
}

#undef CBK_TILES
#undef ROW_NV
#undef T
#undef V
#undef W
#undef MASK_T
#undef FN
#undef ZERO
#undef SET1
#undef LOADM
#undef STOREM
#undef FMADD
#undef MUL
#undef MASK
