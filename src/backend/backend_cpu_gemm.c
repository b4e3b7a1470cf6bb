/* backend_cpu_gemm.c - products by a matrix packed once and used many times over
 * (gemm_pack_b, gemm_packed): a recurrent layer multiplies the same kernel at every step,
 * and a general GEMM would pack it again at each of them.
 *
 * On a CPU with AVX2 and FMA, op(B) is packed in panels of 16 columns (zeros past n), each
 * panel k rows of 16 contiguous floats, and register tiles of 6 rows by 16 columns run
 * over it. Each output is one sum, the addend first, then the products in increasing
 * order of the shared axis, fused multiply-adds: the same bits on a CPU run after run and
 * for any thread count (threads split the panels, never the sum), but not the bits of
 * the plain gemm, nor of another CPU's kernel (as with BLAS). Elsewhere the packed form is
 * op(B) itself, k x n row-major, and the product is the backend's gemm. */
#include <string.h>

#include "backend_cpu.h"
#include "parallel.h"

#define PANEL 16 /* columns per panel: two 8-float vectors */
#define TILE_ROWS 6
/* Work per thread, at least: a panel's product is m * 16 * k multiply-adds. */
#define GRAIN_MACS 65536

#if defined(__GNUC__) && defined(__x86_64__)
#define PK_X86 1
#include <immintrin.h>
#endif

/* 1: panels and the FMA tiles; 0: the plain layout and gemm; -1: not decided yet. */
static int tiles = -1;

static bool use_tiles(void)
{
    if (tiles < 0) {
#ifdef PK_X86
        __builtin_cpu_init();
        tiles = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        tiles = 0;
#endif
    }
    return tiles == 1;
}

bool ct_cpu_gemm_packed_tiles(int want)
{
    if (want == 0)
        tiles = 0;
    else if (want > 0) {
        tiles = -1;
        use_tiles();
    }
    return use_tiles();
}

void ct_cpu_gemm_pack_b(bool trans_b, int64_t k, int64_t n, const float *b, int64_t ldb,
                        float *packed)
{
    if (k <= 0 || n <= 0)
        return;
    if (!use_tiles()) {
        if (!trans_b) {
            ct_cpu_copy_strided(b, ldb, packed, n, k, n);
            return;
        }
        for (int64_t j = 0; j < n; j++)
            for (int64_t l = 0; l < k; l++)
                packed[l * n + j] = b[j * ldb + l];
        return;
    }
    int64_t panels = (n + PANEL - 1) / PANEL;
    for (int64_t t = 0; t < panels; t++) {
        float *p = packed + t * PANEL * k;
        int64_t j0 = t * PANEL, cols = n - j0 < PANEL ? n - j0 : PANEL;
        if (trans_b) { /* op(B)[l][j] = b[j * ldb + l]: along B's rows */
            for (int64_t c = 0; c < cols; c++) {
                const float *row = b + (j0 + c) * ldb;
                for (int64_t l = 0; l < k; l++)
                    p[l * PANEL + c] = row[l];
            }
        } else {
            for (int64_t l = 0; l < k; l++)
                memcpy(p + l * PANEL, b + l * ldb + j0, (size_t)cols * sizeof(float));
        }
        for (int64_t l = 0; cols < PANEL && l < k; l++)
            memset(p + l * PANEL + cols, 0, (size_t)(PANEL - cols) * sizeof(float));
    }
}

typedef struct packed_job {
    int64_t m, n, k, lda, ldd, ldc;
    const float *a, *p, *d;
    float *c;
} packed_job;

#ifdef PK_X86
/* One tile: rows ar[0..5] of A (the last row repeated past m), a panel p; accumulators
 * start from the addend's rows dr[r] (NULL: zero) and go to cr[r] (NULL: not stored), 16
 * floats each. Named accumulators: GCC keeps an array of vectors in memory. */
__attribute__((target("avx2,fma"))) static void tile_6x16(int64_t k, const float *const *ar,
                                                          const float *p,
                                                          const float *const *dr,
                                                          float *const *cr)
{
    __m256 z = _mm256_setzero_ps();
#define PK_INIT(r)                                                                            \
    __m256 c##r##0 = dr[r] ? _mm256_loadu_ps(dr[r]) : z;                                      \
    __m256 c##r##1 = dr[r] ? _mm256_loadu_ps(dr[r] + 8) : z
    PK_INIT(0);
    PK_INIT(1);
    PK_INIT(2);
    PK_INIT(3);
    PK_INIT(4);
    PK_INIT(5);
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    for (int64_t l = 0; l < k; l++, p += PANEL) {
        __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8), x;
#define PK_STEP(r)                                                                            \
    x = _mm256_broadcast_ss(a##r + l);                                                        \
    c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);                                                \
    c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1)
        PK_STEP(0);
        PK_STEP(1);
        PK_STEP(2);
        PK_STEP(3);
        PK_STEP(4);
        PK_STEP(5);
    }
#define PK_PUT(r)                                                                             \
    if (cr[r]) {                                                                              \
        _mm256_storeu_ps(cr[r], c##r##0);                                                     \
        _mm256_storeu_ps(cr[r] + 8, c##r##1);                                                 \
    }
    PK_PUT(0);
    PK_PUT(1);
    PK_PUT(2);
    PK_PUT(3);
    PK_PUT(4);
    PK_PUT(5);
#undef PK_INIT
#undef PK_STEP
#undef PK_PUT
}

/* Panel t over rows [r0, r1): the panel stays in L1 while every row block reads it. A
 * panel cut short by n goes through a 16-column buffer. */
static void panel_block(const packed_job *j, int64_t t, int64_t r0, int64_t r1)
{
    float dbuf[TILE_ROWS][PANEL], cbuf[TILE_ROWS][PANEL];
    const float *p = j->p + t * PANEL * j->k;
    int64_t c0 = t * PANEL, cols = j->n - c0 < PANEL ? j->n - c0 : PANEL;
    for (int64_t i0 = r0; i0 < r1; i0 += TILE_ROWS) {
        int rows = r1 - i0 < TILE_ROWS ? (int)(r1 - i0) : TILE_ROWS;
        const float *ar[TILE_ROWS], *dr[TILE_ROWS];
        float *cr[TILE_ROWS];
        for (int r = 0; r < TILE_ROWS; r++) {
            int64_t i = i0 + (r < rows ? r : rows - 1);
            ar[r] = j->a + i * j->lda;
            dr[r] = j->d && r < rows ? j->d + i * j->ldd + c0 : NULL;
            cr[r] = r < rows ? j->c + i * j->ldc + c0 : NULL;
            if (cols < PANEL && r < rows) {
                if (dr[r]) {
                    memcpy(dbuf[r], dr[r], (size_t)cols * sizeof(float));
                    dr[r] = dbuf[r];
                }
                cr[r] = cbuf[r];
            }
        }
        tile_6x16(j->k, ar, p, dr, cr);
        for (int r = 0; cols < PANEL && r < rows; r++)
            memcpy(j->c + (i0 + r) * j->ldc + c0, cbuf[r], (size_t)cols * sizeof(float));
    }
}

static void panel_rows(const packed_job *j, int64_t t)
{
    panel_block(j, t, 0, j->m);
}

static void packed_task(void *ctx, int64_t t0, int64_t t1)
{
    for (int64_t t = t0; t < t1; t++)
        panel_rows(ctx, t);
}

/* Many rows: blocks of BLOCK_ROWS rows, each over every panel, so that the block's rows
 * of A stay in L1 and the packed B in L2 (panel by panel over all rows, A came from
 * further away once per panel). Each output is summed as panel_rows sums it. */
#define BLOCK_ROWS 96
static void row_block_task(void *ctx, int64_t b0, int64_t b1)
{
    const packed_job *j = ctx;
    int64_t panels = (j->n + PANEL - 1) / PANEL;
    for (int64_t b = b0; b < b1; b++) {
        int64_t r0 = b * BLOCK_ROWS, r1 = r0 + BLOCK_ROWS < j->m ? r0 + BLOCK_ROWS : j->m;
        for (int64_t t = 0; t < panels; t++)
            panel_block(j, t, r0, r1);
    }
}

typedef struct lstm_packed_job {
    packed_job g;
    ct_act act, rec_act;
    float *y, *c1, *tc, *h, *dc, *da;
    const float *c0, *a, *yr, *c1r, *tcr;
    int64_t units;
} lstm_packed_job;

/* Blocks of 16 units: the four gates' panels of the block, then the cell on them while
 * they are in cache. */
static void lstm_packed_task(void *ctx, int64_t b0, int64_t b1)
{
    const lstm_packed_job *j = ctx;
    int64_t per_gate = j->units / PANEL;
    for (int64_t blk = b0; blk < b1; blk++) {
        for (int64_t g = 0; g < 4; g++)
            panel_rows(&j->g, g * per_gate + blk);
        ct_cpu_lstm_cells(j->act, j->rec_act, j->g.c, j->y, j->c0, j->c1, j->tc, j->h, j->g.m,
                          j->units, blk * PANEL, (blk + 1) * PANEL);
    }
}

/* The backward's blocks of 16 units: dh's panel, then the cell's backward on it. */
static void lstm_back_packed_task(void *ctx, int64_t b0, int64_t b1)
{
    const lstm_packed_job *j = ctx;
    for (int64_t blk = b0; blk < b1; blk++) {
        panel_rows(&j->g, blk);
        ct_cpu_lstm_back_cells(j->act, j->rec_act, j->a, j->yr, j->c0, j->c1r, j->tcr, j->g.c,
                               j->dc, j->da, j->g.m, j->units, blk * PANEL, (blk + 1) * PANEL);
    }
}
#endif

void ct_cpu_lstm_step_backward_packed(ct_act act, ct_act rec_act, const float *r, int64_t ldr,
                                      int64_t k, const float *packed, const float *d,
                                      int64_t ldd, const float *a, const float *y,
                                      const float *c0, const float *c1, const float *tc,
                                      float *dh, float *dc, float *da, int64_t rows,
                                      int64_t units)
{
    if (rows <= 0 || units <= 0)
        return;
#ifdef PK_X86
    if (use_tiles() && k > 0 && units % PANEL == 0) {
        lstm_packed_job j = {.g = {rows, units, k, ldr, ldd, units, r, packed, d, dh},
                             .act = act, .rec_act = rec_act, .dc = dc, .da = da, .c0 = c0,
                             .a = a, .yr = y, .c1r = c1, .tcr = tc, .units = units};
        int64_t per = rows * PANEL * k;
        ct_parallel_for(units / PANEL, GRAIN_MACS / per + 1, lstm_back_packed_task, &j);
        return;
    }
#endif
    ct_cpu_gemm_packed(rows, units, k, r, ldr, packed, d, ldd, dh, units);
    ct_cpu_lstm_step_backward(act, rec_act, a, y, c0, c1, tc, dh, dc, da, rows, units);
}

void ct_cpu_lstm_step_packed(ct_act act, ct_act rec_act, const float *z, int64_t ldz,
                             int64_t k, const float *packed, float *a, float *y,
                             const float *c0, float *c1, float *tc, float *h, int64_t rows,
                             int64_t units)
{
    if (rows <= 0 || units <= 0)
        return;
#ifdef PK_X86
    /* units a multiple of 16: no panel holds two gates */
    if (use_tiles() && k > 0 && units % PANEL == 0) {
        lstm_packed_job j = {.g = {rows, 4 * units, k, ldz, 0, 4 * units, z, packed, NULL, a},
                             .act = act, .rec_act = rec_act, .y = y, .c1 = c1, .tc = tc,
                             .h = h, .c0 = c0, .units = units};
        int64_t per = 4 * rows * PANEL * k;
        ct_parallel_for(units / PANEL, GRAIN_MACS / per + 1, lstm_packed_task, &j);
        return;
    }
#endif
    ct_cpu_gemm_packed(rows, 4 * units, k, z, ldz, packed, NULL, 0, a, 4 * units);
    ct_cpu_lstm_step(act, rec_act, a, y, c0, c1, tc, h, rows, units);
}

void ct_cpu_gemm_packed(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                        const float *packed, const float *d, int64_t ldd, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
#ifdef PK_X86
    if (use_tiles() && k > 0) {
        packed_job j = {m, n, k, lda, ldd, ldc, a, packed, d, c};
        int64_t panels = (n + PANEL - 1) / PANEL, per = m * PANEL * k;
        if (m >= 4 * BLOCK_ROWS) {
            int64_t blocks = (m + BLOCK_ROWS - 1) / BLOCK_ROWS;
            ct_parallel_for(blocks, GRAIN_MACS / (BLOCK_ROWS * n * k) + 1, row_block_task, &j);
            return;
        }
        ct_parallel_for(panels, GRAIN_MACS / per + 1, packed_task, &j);
        return;
    }
#endif
    if (d && d != c)
        ct_cpu_copy_strided(d, ldd, c, ldc, m, n);
    ct_backend_cpu()->gemm(false, false, m, n, k, 1.0f, a, lda, packed, n, d ? 1.0f : 0.0f, c,
                           ldc);
}
