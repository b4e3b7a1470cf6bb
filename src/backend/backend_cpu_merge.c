/* backend_cpu_merge.c - the ops of merge layers on the CPU: strided copies (concatenation),
 * broadcasting and its adjoint, running extrema, batched GEMM, L2 normalization, and the
 * embeddings' row gather and its scatter-add.
 *
 * Threads (parallel.h) split samples, elements or GEMM batch items; every value is computed
 * by one thread in a fixed order, so results are the same for any thread count. */
/* Some GCC builds leave the vectoriser off at -O2. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize")
#endif

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "backend_cpu.h"
#include "parallel.h"

#define GRAIN_ELEMENTS 32768          /* element-wise work per thread, at least */
#define GRAIN_FLOPS (INT64_C(1) << 22) /* GEMM work per thread, at least */
#define L2_BLOCK 256                  /* positions of `inner` summed together */

/* Items per thread, at least, for items of `size` floats of work each. */
static int64_t grain_for(int64_t size)
{
    return GRAIN_ELEMENTS / (size > 0 ? size : 1) + 1;
}

/* One job type for every op here: each task reads what its op needs. */
typedef struct merge_job {
    const ct_bcast *g;
    const float *x, *x2, *x3, *x4;
    float *y, *y2;
    int64_t ldx, ldy, cols, n, inner;
    float k, eps;
    bool flag;
} merge_job;

/* ---- strided copies ---------------------------------------------------------------- */

static void copy_strided_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    for (int64_t r = b; r < e; r++)
        memcpy(j->y + r * j->ldy, j->x + r * j->ldx, (size_t)j->cols * sizeof(float));
}

void ct_cpu_copy_strided(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                         int64_t cols)
{
    if (rows <= 0 || cols <= 0)
        return;
    merge_job j = {.x = x, .y = y, .ldx = ldx, .ldy = ldy, .cols = cols};
    ct_parallel_for(rows, grain_for(cols), copy_strided_task, &j);
}

/* ---- broadcasting ------------------------------------------------------------------ */

/* Steps the index over every axis but the last (an odometer) and returns the operand
 * offset's change. */
static int64_t bcast_step(const ct_bcast *g, int64_t *idx)
{
    int64_t delta = 0;
    for (int a = g->ndim - 2; a >= 0; a--) {
        delta += g->stride[a];
        if (++idx[a] < g->dim[a])
            return delta;
        delta -= g->stride[a] * g->dim[a];
        idx[a] = 0;
    }
    return delta;
}

static void expand_sample(const ct_bcast *g, const float *restrict x, float *restrict y)
{
    if (g->ndim == 0) { /* one value per sample */
        y[0] = x[0];
        return;
    }
    int64_t inner = g->dim[g->ndim - 1], s = g->stride[g->ndim - 1], off = 0;
    int64_t idx[CT_MAX_DIMS] = {0};
    for (int64_t o = 0; o < g->out_size; o += inner) {
        const float *src = x + off;
        if (s == 0)
            for (int64_t i = 0; i < inner; i++)
                y[o + i] = src[0];
        else
            for (int64_t i = 0; i < inner; i++)
                y[o + i] = src[i * s];
        off += bcast_step(g, idx);
    }
}

/* Adds dy into dx position by position in increasing output order: the order the CUDA
 * kernel sums each dx element in too. */
static void expand_backward_sample(const ct_bcast *g, const float *restrict dy,
                                   float *restrict dx)
{
    memset(dx, 0, (size_t)g->in_size * sizeof(float));
    if (g->ndim == 0) {
        dx[0] = dy[0];
        return;
    }
    int64_t inner = g->dim[g->ndim - 1], s = g->stride[g->ndim - 1], off = 0;
    int64_t idx[CT_MAX_DIMS] = {0};
    for (int64_t o = 0; o < g->out_size; o += inner) {
        float *dst = dx + off;
        if (s == 0) {
            float acc = dst[0];
            for (int64_t i = 0; i < inner; i++)
                acc += dy[o + i];
            dst[0] = acc;
        } else {
            for (int64_t i = 0; i < inner; i++)
                dst[i * s] += dy[o + i];
        }
        off += bcast_step(g, idx);
    }
}

static void expand_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    for (int64_t r = b; r < e; r++)
        expand_sample(j->g, j->x + r * j->g->in_size, j->y + r * j->g->out_size);
}

void ct_cpu_expand(const ct_bcast *g, const float *x, float *y, int64_t rows)
{
    if (rows <= 0 || g->out_size <= 0)
        return;
    merge_job j = {.g = g, .x = x, .y = y};
    ct_parallel_for(rows, grain_for(g->out_size), expand_task, &j);
}

static void expand_backward_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    for (int64_t r = b; r < e; r++)
        expand_backward_sample(j->g, j->x + r * j->g->out_size, j->y + r * j->g->in_size);
}

void ct_cpu_expand_backward(const ct_bcast *g, const float *dy, float *dx, int64_t rows)
{
    if (rows <= 0 || g->in_size <= 0)
        return;
    if (g->out_size <= 0) { /* nothing reads the operand: its gradient is zero */
        memset(dx, 0, (size_t)(rows * g->in_size) * sizeof(float));
        return;
    }
    merge_job j = {.g = g, .x = dy, .y = dx};
    ct_parallel_for(rows, grain_for(g->out_size), expand_backward_task, &j);
}

/* ---- running extrema ----------------------------------------------------------------- */

static void extremum_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    const float *restrict x = j->x;
    float *restrict y = j->y, *restrict arg = j->y2;
    if (j->k == 0.0f) {
        for (int64_t i = b; i < e; i++) {
            y[i] = x[i];
            arg[i] = 0.0f;
        }
        return;
    }
    for (int64_t i = b; i < e; i++) {
        bool take = j->flag ? x[i] < y[i] : x[i] > y[i];
        y[i] = take ? x[i] : y[i];
        arg[i] = take ? j->k : arg[i];
    }
}

void ct_cpu_extremum(bool minimum, const float *x, float *y, float *arg, float k, int64_t n)
{
    merge_job j = {.x = x, .y = y, .y2 = arg, .k = k, .flag = minimum};
    ct_parallel_for(n, GRAIN_ELEMENTS, extremum_task, &j);
}

static void take_where_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    const float *restrict arg = j->x, *restrict dy = j->x2;
    float *restrict dx = j->y;
    for (int64_t i = b; i < e; i++)
        dx[i] = arg[i] == j->k ? dy[i] : 0.0f;
}

void ct_cpu_take_where(const float *arg, float k, const float *dy, float *dx, int64_t n)
{
    merge_job j = {.x = arg, .x2 = dy, .y = dx, .k = k};
    ct_parallel_for(n, GRAIN_ELEMENTS, take_where_task, &j);
}

/* ---- batched GEMM -------------------------------------------------------------------- */

typedef struct gemm_batch_job {
    bool ta, tb;
    int64_t m, n, k, lda, ldb, ldc, sa, sb, sc;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_batch_job;

/* m == n == 1: one dot product per item, the Dot layer's usual case, where a BLAS call
 * would cost more than the sum. */
static void dot_item(const gemm_batch_job *j, const float *a, const float *b, float *c)
{
    int64_t sa = j->ta ? j->lda : 1, sb = j->tb ? 1 : j->ldb;
    float acc = 0.0f;
    for (int64_t i = 0; i < j->k; i++)
        acc += a[i * sa] * b[i * sb];
    *c = j->alpha * acc + (j->beta == 0.0f ? 0.0f : j->beta * *c);
}

/* One item as BLAS computes gemm (cpu_gemm in backend_cpu.c): beta 0 overwrites. */
static void gemm_item(const gemm_batch_job *j, const float *a, const float *b, float *c)
{
    if (j->k <= 0 || j->alpha == 0.0f) {
        for (int64_t r = 0; r < j->m; r++)
            for (int64_t i = 0; i < j->n; i++)
                c[r * j->ldc + i] = j->beta == 0.0f ? 0.0f : j->beta * c[r * j->ldc + i];
        return;
    }
    if (j->m == 1 && j->n == 1) {
        dot_item(j, a, b, c);
        return;
    }
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans,
                j->tb ? CblasTrans : CblasNoTrans, (int)j->m, (int)j->n, (int)j->k, j->alpha, a,
                (int)j->lda, b, (int)j->ldb, j->beta, c, (int)j->ldc);
}

static void gemm_batch_task(void *ctx, int64_t first, int64_t last)
{
    const gemm_batch_job *j = ctx;
    for (int64_t i = first; i < last; i++)
        gemm_item(j, j->a + i * j->sa, j->b + i * j->sb, j->c + i * j->sc);
}

void ct_cpu_gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, int64_t stride_a,
                         const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                         int64_t ldc, int64_t stride_c, int64_t batch)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return;
    gemm_batch_job j = {trans_a, trans_b, m, n, k, lda, ldb, ldc, stride_a, stride_b, stride_c,
                        alpha, beta, a, b, c};
    int64_t flops = 2 * m * n * (k > 0 ? k : 1);
    ct_parallel_for(batch, GRAIN_FLOPS / flops + 1, gemm_batch_task, &j);
}

/* ---- L2 normalization ---------------------------------------------------------------- */

/* Sums of squares over the n axis for positions [i0, i0 + cnt) of one outer block, each in
 * double and in increasing order along the axis (the CUDA kernel's order too). */
static void square_sums(const float *x, int64_t n, int64_t inner, int64_t i0, int64_t cnt,
                        double *restrict s)
{
    for (int64_t i = 0; i < cnt; i++)
        s[i] = 0.0;
    for (int64_t t = 0; t < n; t++) {
        const float *restrict row = x + t * inner + i0;
        for (int64_t i = 0; i < cnt; i++)
            s[i] += (double)row[i] * (double)row[i];
    }
}

static float l2_factor(double s, float eps)
{
    return (float)(1.0 / sqrt(s > (double)eps ? s : (double)eps));
}

static void l2_block(const merge_job *j, int64_t o, int64_t i0, int64_t cnt)
{
    double s[L2_BLOCK];
    float f[L2_BLOCK];
    int64_t base = o * j->n * j->inner;
    square_sums(j->x + base, j->n, j->inner, i0, cnt, s);
    for (int64_t i = 0; i < cnt; i++) {
        f[i] = l2_factor(s[i], j->eps);
        j->y2[o * j->inner + i0 + i] = f[i];
    }
    for (int64_t t = 0; t < j->n; t++) {
        const float *restrict xr = j->x + base + t * j->inner + i0;
        float *restrict yr = j->y + base + t * j->inner + i0;
        for (int64_t i = 0; i < cnt; i++)
            yr[i] = xr[i] * f[i];
    }
}

static void l2_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    for (int64_t o = b; o < e; o++)
        for (int64_t i0 = 0; i0 < j->inner; i0 += L2_BLOCK)
            l2_block(j, o, i0, j->inner - i0 < L2_BLOCK ? j->inner - i0 : L2_BLOCK);
}

void ct_cpu_l2_normalize(const float *x, float *y, float *inv, int64_t outer, int64_t n,
                         int64_t inner, float eps)
{
    if (outer <= 0 || n <= 0 || inner <= 0)
        return;
    merge_job j = {.x = x, .y = y, .y2 = inv, .n = n, .inner = inner, .eps = eps};
    ct_parallel_for(outer, grain_for(n * inner), l2_task, &j);
}

/* dx = inv (dy - y (y . dy)) where the sum of squares reached eps, else dy * inv. */
static void l2_backward_block(const merge_job *j, int64_t o, int64_t i0, int64_t cnt)
{
    double s[L2_BLOCK], d[L2_BLOCK];
    float dd[L2_BLOCK];
    int64_t base = o * j->n * j->inner;
    const float *x = j->x + base, *y = j->x2 + base, *dy = j->x4 + base;
    const float *inv = j->x3 + o * j->inner + i0;
    square_sums(x, j->n, j->inner, i0, cnt, s);
    for (int64_t i = 0; i < cnt; i++)
        d[i] = 0.0;
    for (int64_t t = 0; t < j->n; t++)
        for (int64_t i = 0; i < cnt; i++)
            d[i] += (double)y[t * j->inner + i0 + i] * (double)dy[t * j->inner + i0 + i];
    for (int64_t i = 0; i < cnt; i++)
        dd[i] = s[i] < (double)j->eps ? 0.0f : (float)d[i];
    for (int64_t t = 0; t < j->n; t++) {
        const float *restrict yr = y + t * j->inner + i0, *restrict dyr = dy + t * j->inner + i0;
        float *restrict dxr = j->y + base + t * j->inner + i0;
        for (int64_t i = 0; i < cnt; i++)
            dxr[i] = inv[i] * (dyr[i] - yr[i] * dd[i]);
    }
}

static void l2_backward_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    for (int64_t o = b; o < e; o++)
        for (int64_t i0 = 0; i0 < j->inner; i0 += L2_BLOCK)
            l2_backward_block(j, o, i0, j->inner - i0 < L2_BLOCK ? j->inner - i0 : L2_BLOCK);
}

void ct_cpu_l2_normalize_backward(const float *x, const float *y, const float *inv,
                                  const float *dy, float *dx, int64_t outer, int64_t n,
                                  int64_t inner, float eps)
{
    if (outer <= 0 || n <= 0 || inner <= 0)
        return;
    merge_job j = {.x = x, .x2 = y, .x3 = inv, .x4 = dy, .y = dx, .n = n, .inner = inner,
                   .eps = eps};
    ct_parallel_for(outer, grain_for(n * inner), l2_backward_task, &j);
}

/* ---- embeddings ------------------------------------------------------------------------ */

/* The table row of id v, or -1 when v is not an integer in [0, nrows) (NaN included). */
static int64_t table_row(float v, int64_t nrows)
{
    if (!(v >= 0.0f && v < (float)nrows) || v != floorf(v))
        return -1;
    return (int64_t)v;
}

static void gather_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    for (int64_t i = b; i < e; i++) {
        int64_t r = table_row(j->x2[i], j->n);
        float *out = j->y + i * j->cols;
        if (r < 0)
            memset(out, 0, (size_t)j->cols * sizeof *out);
        else
            memcpy(out, j->x + r * j->cols, (size_t)j->cols * sizeof *out);
    }
}

void ct_cpu_gather_rows(const float *table, int64_t nrows, int64_t dim, const float *ids,
                        int64_t n, float *y)
{
    if (n <= 0 || dim <= 0)
        return;
    merge_job j = {.x = table, .x2 = ids, .y = y, .n = nrows, .cols = dim};
    ct_parallel_for(n, grain_for(dim), gather_task, &j);
}

/* Threads split the columns: each walks every id in order over its own columns, so each
 * gradient value takes its adds in increasing i whatever the split. */
static void scatter_task(void *ctx, int64_t b, int64_t e)
{
    const merge_job *j = ctx;
    for (int64_t i = 0; i < j->inner; i++) {
        int64_t r = table_row(j->x2[i], j->n);
        if (r < 0)
            continue;
        const float *src = j->x + i * j->cols;
        float *dst = j->y + r * j->cols;
        for (int64_t c = b; c < e; c++)
            dst[c] += src[c];
    }
}

void ct_cpu_scatter_add_rows(const float *dy, const float *ids, int64_t n, int64_t dim,
                             float *grad, int64_t nrows)
{
    if (n <= 0 || dim <= 0)
        return;
    merge_job j = {.x = dy, .x2 = ids, .y = grad, .n = nrows, .cols = dim, .inner = n};
    ct_parallel_for(dim, grain_for(n), scatter_task, &j);
}

void ct_cpu_step_mask(const float *x, int64_t n, int64_t feat, float value, float *mask)
{
    for (int64_t i = 0; i < n; i++) {
        const float *v = x + i * feat;
        int64_t j = 0;
        while (j < feat && v[j] == value)
            j++;
        mask[i] = j < feat ? 1.0f : 0.0f;
    }
}

void ct_cpu_mask_weights(const float *mask, int64_t rows, int64_t steps, float *w)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *m = mask + r * steps;
        float sum = 0.0f;
        for (int64_t t = 0; t < steps; t++)
            sum += m[t];
        for (int64_t t = 0; t < steps; t++)
            w[r * steps + t] = sum > 0.0f ? m[t] / sum : 0.0f;
    }
}

/* In 32 x 32 tiles, so both sides stay in cache. */
void ct_cpu_transpose(const float *x, int64_t rows, int64_t cols, float *y)
{
    enum { TILE = 32 };
    for (int64_t r0 = 0; r0 < rows; r0 += TILE)
        for (int64_t c0 = 0; c0 < cols; c0 += TILE) {
            int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
            int64_t c1 = c0 + TILE < cols ? c0 + TILE : cols;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    y[c * rows + r] = x[r * cols + c];
        }
}
