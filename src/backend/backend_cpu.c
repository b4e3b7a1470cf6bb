/* backend_cpu.c - the reference backend: OpenBLAS for gemm, plain loops elsewhere.
 * Loops are kept simple (one operation per pass, no calls inside where possible) so the
 * compiler can vectorise them. */
/* The vectoriser is on by the build's flags (Makefile.am): a #pragma GCC optimize here
 * would reset -fno-math-errno and -fno-trapping-math, without which fastmath.h's loops do
 * not vectorise. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "fastmath.h"
#include "parallel.h"
#include "rng.h"
#include "simd.h"

#define SELU_ALPHA 1.67326324235437728f
#define SELU_SCALE 1.05070098735548049f
#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_CUBIC 0.044715f

/* ---- memory ---------------------------------------------------------------------- */

static void *cpu_alloc(size_t bytes)
{
    /* aligned_alloc wants a multiple of the alignment; 0 still yields a usable block. */
    size_t size = bytes ? bytes : 1;
    if (size > SIZE_MAX - 63)
        return NULL;
    size = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, size);
    if (p)
        memset(p, 0, size);
    return p;
}

static void cpu_free(void *p) { free(p); }

static void cpu_memcpy(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        memcpy(dst, src, bytes);
}

/* ---- BLAS-like ------------------------------------------------------------------- */

CT_CPU_CLONES
static void cpu_scale(int64_t n, float alpha, float *x)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= alpha;
}

static void cpu_fill(float *x, int64_t n, float value)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = value;
}

/* C = beta * C when there is nothing to multiply; beta 0 overwrites (NaN in C is not
 * propagated), as BLAS does. */
static void scale_matrix(int64_t m, int64_t n, float beta, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        if (beta == 0.0f)
            cpu_fill(c + i * ldc, n, 0.0f);
        else
            cpu_scale(n, beta, c + i * ldc);
    }
}

static void cpu_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0 || alpha == 0.0f) {
        scale_matrix(m, n, beta, c, ldc);
        return;
    }
    /* beta 0: C zeroed here, then beta 1. OpenBLAS zeroes C with its beta kernel, which
     * stores one float at a time on Zen and Haswell (4% of the transformer's step), and its
     * kernels then add alpha A B to the zeros either way: the same bits. */
    if (beta == 0.0f) {
        for (int64_t i = 0; i < m; i++)
            memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        beta = 1.0f;
    }
    /* CBLAS takes int: every dimension of a planned buffer fits (the planner refuses
     * tensors beyond 2^31 elements per matrix side). */
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static void cpu_copy(float *dst, const float *src, int64_t n)
{
    if (n > 0 && dst != src)
        memmove(dst, src, (size_t)n * sizeof(float));
}

CT_CPU_CLONES
static void cpu_axpy(int64_t n, float alpha, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

CT_CPU_CLONES
static void cpu_add_scaled(int64_t n, const float *a, float alpha, const float *b, float *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + alpha * b[i];
}

CT_CPU_CLONES
static void cpu_mul(int64_t n, const float *a, const float *b, float *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] * b[i];
}

CT_CPU_CLONES
static void cpu_add_row_vector(float *restrict y, const float *restrict b, int64_t rows,
                               int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float *row = y + r * cols;
        for (int64_t c = 0; c < cols; c++)
            row[c] += b[c];
    }
}

/* ---- activations: forward -------------------------------------------------------- */

static float sigmoidf(float x) { return ct_sigmoidf(x); }

static float softplusf(float x) { return log1pf(expf(-fabsf(x))) + fmaxf(x, 0.0f); }

/* 0.5 * (1 + tanh(u)) written as sigmoid(2u): no cancellation for negative x. */
static float gelu_tanh_gate(float x)
{
    return sigmoidf(2.0f * SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x));
}

/* 0.5 * (1 + erf(x / sqrt 2)) through erfc, accurate in the negative tail. */
static inline float gelu_erf_gate(float x) { return ct_gelu_gatef(x); }

static float act_scalar(ct_act act, float x)
{
    switch (act.kind) {
    case CT_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case CT_ACT_RELU6:
        return fminf(fmaxf(x, 0.0f), 6.0f);
    case CT_ACT_LEAKY_RELU:
        return x > 0.0f ? x : act.alpha * x;
    case CT_ACT_ELU:
        return x > 0.0f ? x : act.alpha * expm1f(x);
    case CT_ACT_SELU:
        return SELU_SCALE * (x > 0.0f ? x : SELU_ALPHA * expm1f(x));
    case CT_ACT_GELU:
        return x * (act.alpha != 0.0f ? gelu_tanh_gate(x) : gelu_erf_gate(x));
    case CT_ACT_SILU:
        return x * sigmoidf(x);
    case CT_ACT_SIGMOID:
        return sigmoidf(x);
    case CT_ACT_HARD_SIGMOID:
        return fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    case CT_ACT_TANH:
        return ct_tanhf(x);
    case CT_ACT_SOFTPLUS:
        return softplusf(x);
    case CT_ACT_SOFTSIGN:
        return x / (1.0f + fabsf(x));
    default:
        return x;
    }
}

/* A select, not fmaxf (a libm call here): the same result, NaNs skipped alike. */
static float row_max(const float *x, int64_t cols)
{
    float m = -INFINITY;
    for (int64_t c = 0; c < cols; c++)
        m = x[c] > m ? x[c] : m;
    return m;
}

/* expf(d) for d <= 0: below -104 the result rounds to 0, which is returned without the
 * call (libm takes a slow path to underflow; attention's masked scores land there). */
static inline float exp_nonpositive(float d)
{
    return d < -104.0f ? 0.0f : expf(d);
}

/* Subtracting the row max keeps exp from overflowing; the result is unchanged. */
static void softmax_row(const float *x, float *y, int64_t cols, bool log_form)
{
    float m = row_max(x, cols);
    double sum = 0.0;
    if (log_form) {
        for (int64_t c = 0; c < cols; c++)
            sum += (double)exp_nonpositive(x[c] - m);
        /* (x - m) first: exact, and keeps digits that x - (m + log sum) would lose */
        float log_sum = (float)log(sum);
        for (int64_t c = 0; c < cols; c++)
            y[c] = (x[c] - m) - log_sum;
        return;
    }
    /* Each exp once, kept in y until the sum is known (y may be x: each x[c] is read
     * before y[c] is written); the same values as computing it twice. The exps are
     * libm's bits, four at a time where the CPU allows (exp_libm.c); the sum keeps its
     * order. */
    ct_cpu_exp_shifted(x, m, y, cols);
    for (int64_t c = 0; c < cols; c++)
        sum += (double)y[c];
    float inv = (float)(1.0 / sum);
    for (int64_t c = 0; c < cols; c++)
        y[c] = y[c] * inv;
}


CT_CPU_CLONES
static void cpu_act_forward(ct_act act, const float *x, float *y, int64_t rows, int64_t cols)
{
    if (act.kind == CT_ACT_SOFTMAX || act.kind == CT_ACT_LOG_SOFTMAX) {
        for (int64_t r = 0; r < rows; r++)
            softmax_row(x + r * cols, y + r * cols, cols, act.kind == CT_ACT_LOG_SOFTMAX);
        return;
    }
    int64_t n = rows * cols;
    switch (act.kind) {
    case CT_ACT_LINEAR:
        cpu_copy(y, x, n);
        return;
    case CT_ACT_RELU: /* common enough to deserve a loop the compiler vectorises */
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        return;
    case CT_ACT_SIGMOID: /* the gates of recurrent layers */
        ct_cpu_map_sigmoid(x, y, n);
        return;
    case CT_ACT_TANH:
        ct_cpu_map_tanh(x, y, n);
        return;
    case CT_ACT_GELU: /* transformers' feed-forward parts */
        if (act.alpha != 0.0f)
            break;
        ct_cpu_map_gelu(x, y, n);
        return;
    default:
        break;
    }
    for (int64_t i = 0; i < n; i++)
        y[i] = act_scalar(act, x[i]);
}

/* ---- activations: backward ------------------------------------------------------- */

/* d act / dx at x, with y = act(x) where that is cheaper or more accurate. */
static float act_grad(ct_act act, float x, float y)
{
    switch (act.kind) {
    case CT_ACT_RELU:
        return x > 0.0f ? 1.0f : 0.0f;
    case CT_ACT_RELU6:
        return (x > 0.0f && x < 6.0f) ? 1.0f : 0.0f;
    case CT_ACT_LEAKY_RELU:
        return x > 0.0f ? 1.0f : act.alpha;
    case CT_ACT_ELU:
        return x > 0.0f ? 1.0f : act.alpha * expf(x);
    case CT_ACT_SELU:
        return SELU_SCALE * (x > 0.0f ? 1.0f : SELU_ALPHA * expf(x));
    case CT_ACT_GELU:
        if (act.alpha != 0.0f) {
            float s = gelu_tanh_gate(x);
            float du = 2.0f * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_CUBIC * x * x);
            return s + x * s * (1.0f - s) * du;
        }
        return ct_gelu_gradf(x);
    case CT_ACT_SILU: {
        float s = sigmoidf(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case CT_ACT_SIGMOID:
        return y * (1.0f - y);
    case CT_ACT_HARD_SIGMOID:
        return (x > -3.0f && x < 3.0f) ? 1.0f / 6.0f : 0.0f;
    case CT_ACT_TANH:
        return 1.0f - y * y;
    case CT_ACT_SOFTPLUS:
        return sigmoidf(x);
    case CT_ACT_SOFTSIGN: {
        float d = 1.0f + fabsf(x);
        return 1.0f / (d * d);
    }
    default:
        return 1.0f;
    }
}

float ct_cpu_act_value(ct_act act, float x) { return act_scalar(act, x); }

float ct_cpu_act_deriv(ct_act act, float x, float y) { return act_grad(act, x, y); }

/* softmax: dx = y * (dy - sum(dy * y)); the sum is taken before dx (maybe dy) is written. */
static void softmax_row_backward(const float *y, const float *dy, float *dx, int64_t cols)
{
    double dot = 0.0;
    for (int64_t c = 0; c < cols; c++)
        dot += (double)dy[c] * (double)y[c];
    float d = (float)dot;
    for (int64_t c = 0; c < cols; c++)
        dx[c] = y[c] * (dy[c] - d);
}

/* log_softmax: dx = dy - softmax(x) * sum(dy), with softmax(x) = exp(y). */
static void log_softmax_row_backward(const float *y, const float *dy, float *dx, int64_t cols)
{
    double sum = 0.0;
    for (int64_t c = 0; c < cols; c++)
        sum += (double)dy[c];
    float s = (float)sum;
    for (int64_t c = 0; c < cols; c++)
        dx[c] = dy[c] - expf(y[c]) * s;
}

CT_CPU_CLONES
static void cpu_act_backward(ct_act act, const float *x, const float *y, const float *dy,
                             float *dx, int64_t rows, int64_t cols)
{
    if (act.kind == CT_ACT_SOFTMAX || act.kind == CT_ACT_LOG_SOFTMAX) {
        for (int64_t r = 0; r < rows; r++) {
            int64_t o = r * cols;
            if (act.kind == CT_ACT_SOFTMAX)
                softmax_row_backward(y + o, dy + o, dx + o, cols);
            else
                log_softmax_row_backward(y + o, dy + o, dx + o, cols);
        }
        return;
    }
    int64_t n = rows * cols;
    switch (act.kind) {
    case CT_ACT_LINEAR:
        cpu_copy(dx, dy, n);
        return;
    case CT_ACT_RELU:
        for (int64_t i = 0; i < n; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
        return;
    case CT_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            dx[i] = dy[i] * (y[i] * (1.0f - y[i]));
        return;
    case CT_ACT_TANH:
        for (int64_t i = 0; i < n; i++)
            dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        return;
    case CT_ACT_GELU:
        if (act.alpha != 0.0f)
            break;
        ct_cpu_gelu_backward(x, y, dy, dx, n);
        return;
    default:
        break;
    }
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * act_grad(act, x[i], y[i]);
}

/* ---- bias + activation, fused ----------------------------------------------------- */

CT_CPU_CLONES
void ct_cpu_bias_act(ct_act act, const float *b, float *y, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float *restrict row = y + r * cols;
        if (b)
            for (int64_t c = 0; c < cols; c++)
                row[c] += b[c];
        switch (act.kind) {
        case CT_ACT_LINEAR:
            break;
        case CT_ACT_RELU:
            for (int64_t c = 0; c < cols; c++)
                row[c] = row[c] > 0.0f ? row[c] : 0.0f;
            break;
        case CT_ACT_SIGMOID:
            ct_cpu_map_sigmoid(row, row, cols);
            break;
        case CT_ACT_TANH:
            ct_cpu_map_tanh(row, row, cols);
            break;
        case CT_ACT_GELU:
            if (act.alpha == 0.0f) {
                ct_cpu_map_gelu(row, row, cols);
                break;
            }
            /* fall through */
        default:
            for (int64_t c = 0; c < cols; c++)
                row[c] = act_scalar(act, row[c]);
            break;
        }
    }
}

/* d act / dx from y = act(x) alone, for the kinds ct_act_from_output accepts. */
static float act_grad_y(ct_act act, float y)
{
    switch (act.kind) {
    case CT_ACT_RELU:
        return y > 0.0f ? 1.0f : 0.0f;
    case CT_ACT_RELU6:
        return (y > 0.0f && y < 6.0f) ? 1.0f : 0.0f;
    case CT_ACT_LEAKY_RELU:
        return y > 0.0f ? 1.0f : act.alpha;
    case CT_ACT_SIGMOID:
        return y * (1.0f - y);
    case CT_ACT_HARD_SIGMOID:
        return (y > 0.0f && y < 1.0f) ? 1.0f / 6.0f : 0.0f;
    case CT_ACT_TANH:
        return 1.0f - y * y;
    default:
        return 1.0f;
    }
}

CT_CPU_CLONES
void ct_cpu_bias_act_grad(ct_act act, const float *y, float *dy, float *db, int64_t rows,
                          int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float *restrict d = dy + r * cols;
        const float *restrict yr = y ? y + r * cols : NULL;
        switch (act.kind) {
        case CT_ACT_LINEAR:
            break;
        case CT_ACT_RELU:
            for (int64_t c = 0; c < cols; c++)
                d[c] = yr[c] > 0.0f ? d[c] : 0.0f;
            break;
        default:
            for (int64_t c = 0; c < cols; c++)
                d[c] *= act_grad_y(act, yr[c]);
            break;
        }
        if (db)
            for (int64_t c = 0; c < cols; c++)
                db[c] += d[c];
    }
}

/* ---- randomness ------------------------------------------------------------------ */

CT_CPU_CLONES
static void cpu_dropout_mask(float *mask, int64_t n, float rate, uint64_t key, uint64_t counter0)
{
    if (rate <= 0.0f) {
        cpu_fill(mask, n, 1.0f);
        return;
    }
    if (rate >= 1.0f) { /* everything dropped; 1/(1-rate) would be inf */
        cpu_fill(mask, n, 0.0f);
        return;
    }
    float keep_scale = 1.0f / (1.0f - rate);
    for (int64_t i = 0; i < n; i++)
        mask[i] = ct_rng_uniform(key, counter0 + (uint64_t)i) >= rate ? keep_scale : 0.0f;
}

/* ---- threads --------------------------------------------------------------------
 * Each op below splits its work statically over the backend's threads (src/backend/parallel.h)
 * and runs the serial kernel on each part; OpenBLAS itself runs single-threaded, so the
 * two never compete for cores. Splits never change the order of a sum, so results are
 * the same for any thread count. */

#define GRAIN_ELEMENTS 32768          /* element-wise work per thread, at least */
#define GRAIN_FLOPS (INT64_C(1) << 22) /* GEMM work per thread, at least */

typedef struct gemm_job {
    bool ta, tb, split_m;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_job;

/* Columns (or rows) of C are cut into chunks, each one BLAS call: the cut depends on the
 * sizes and the machine's core count, never on backend.threads, because BLAS kernels may
 * round an edge block differently from a full one (OpenBLAS's Haswell SGEMM does), and a
 * seed must give the same bits with any thread count. A chunk per core at most: each call
 * packs the other operand again. */
static int64_t gemm_max_chunks(void)
{
    static int64_t n;
    if (!n) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores < 1 ? 1 : cores > 64 ? 64 : cores;
    }
    return n;
}

typedef struct gemm_chunks {
    gemm_job job;
    int64_t along, chunk;
} gemm_chunks;

static void gemm_task(void *ctx, int64_t first, int64_t last)
{
    const gemm_chunks *g = ctx;
    const gemm_job *j = &g->job;
    int64_t begin = first * g->chunk, end = last * g->chunk < g->along ? last * g->chunk : g->along;
    for (int64_t at = begin; at < end; at += g->chunk) {
        int64_t len = end - at < g->chunk ? end - at : g->chunk;
        if (j->split_m) /* rows of C: rows of op(A) */
            cpu_gemm(j->ta, j->tb, len, j->n, j->k, j->alpha,
                     j->a + (j->ta ? at : at * j->lda), j->lda, j->b, j->ldb, j->beta,
                     j->c + at * j->ldc, j->ldc);
        else /* columns of C: columns of op(B) */
            cpu_gemm(j->ta, j->tb, j->m, len, j->k, j->alpha, j->a, j->lda,
                     j->b + (j->tb ? at * j->ldb : at), j->ldb, j->beta, j->c + at, j->ldc);
    }
}

static void par_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc)
{
    gemm_chunks g = {{trans_a, trans_b, m >= n, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c},
                     0, 0};
    g.along = g.job.split_m ? m : n;
    int64_t flops_per_item = 2 * (g.job.split_m ? n : m) * (k > 0 ? k : 1);
    /* Chunks of at least 16 rows/columns keep the BLAS kernels efficient. */
    int64_t grain = GRAIN_FLOPS / flops_per_item, chunks = gemm_max_chunks(),
            fewest = (g.along + chunks - 1) / chunks;
    g.chunk = grain > fewest ? grain : fewest;
    g.chunk = g.chunk < 16 ? 16 : (g.chunk + 15) & ~(int64_t)15;
    if (g.along <= 0)
        return;
    ct_parallel_for((g.along + g.chunk - 1) / g.chunk, 1, gemm_task, &g);
}

typedef struct ew_job {
    const float *x, *y2, *y3;
    float *out, *out2;
    float alpha;
    ct_act act;
    int64_t cols;
    uint64_t key, counter0;
} ew_job;

static void fill_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_fill(j->out + b, e - b, j->alpha);
}
static void par_fill(float *x, int64_t n, float value)
{
    ew_job j = {.out = x, .alpha = value};
    ct_parallel_for(n, GRAIN_ELEMENTS, fill_task, &j);
}

static void copy_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_copy(j->out + b, j->x + b, e - b);
}
static void par_copy(float *dst, const float *src, int64_t n)
{
    ew_job j = {.x = src, .out = dst};
    if (dst != src)
        ct_parallel_for(n, GRAIN_ELEMENTS, copy_task, &j);
}

static void axpy_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_axpy(e - b, j->alpha, j->x + b, j->out + b);
}
static void par_axpy(int64_t n, float alpha, const float *x, float *y)
{
    ew_job j = {.x = x, .out = y, .alpha = alpha};
    ct_parallel_for(n, GRAIN_ELEMENTS, axpy_task, &j);
}

static void scale_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_scale(e - b, j->alpha, j->out + b);
}
static void par_scale(int64_t n, float alpha, float *x)
{
    ew_job j = {.out = x, .alpha = alpha};
    ct_parallel_for(n, GRAIN_ELEMENTS, scale_task, &j);
}

static void add_scaled_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_add_scaled(e - b, j->x + b, j->alpha, j->y2 + b, j->out + b);
}
static void par_add_scaled(int64_t n, const float *a, float alpha, const float *b, float *out)
{
    ew_job j = {.x = a, .y2 = b, .out = out, .alpha = alpha};
    ct_parallel_for(n, GRAIN_ELEMENTS, add_scaled_task, &j);
}

static void mul_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_mul(e - b, j->x + b, j->y2 + b, j->out + b);
}
static void par_mul(int64_t n, const float *a, const float *b, float *out)
{
    ew_job j = {.x = a, .y2 = b, .out = out};
    ct_parallel_for(n, GRAIN_ELEMENTS, mul_task, &j);
}

/* Row-wise ops split by rows: begin/end count rows. */
static void add_row_vector_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_add_row_vector(j->out + b * j->cols, j->x, e - b, j->cols);
}
static void par_add_row_vector(float *y, const float *b, int64_t rows, int64_t cols)
{
    ew_job j = {.x = b, .out = y, .cols = cols};
    ct_parallel_for(rows, GRAIN_ELEMENTS / (cols > 0 ? cols : 1) + 1, add_row_vector_task, &j);
}

/* Column sums split by columns, so each sum keeps its serial order. */
typedef struct sum_job {
    const float *x;
    float *out;
    int64_t rows, cols;
    float beta;
} sum_job;
/* Columns in blocks of SUM_BLOCK kept in registers over all the rows (the sums stored and
 * reloaded at every row were the cost), each column still summed in row order. */
#define SUM_BLOCK 64
CT_CPU_CLONES
static void sum_rows_task(void *ctx, int64_t b, int64_t e)
{
    const sum_job *j = ctx;
    float *restrict out = j->out;
    for (int64_t c0 = b; c0 < e; c0 += SUM_BLOCK) {
        int64_t w = e - c0 < SUM_BLOCK ? e - c0 : SUM_BLOCK;
        float acc[SUM_BLOCK];
        for (int64_t c = 0; c < w; c++)
            acc[c] = j->beta == 0.0f ? 0.0f : j->beta * out[c0 + c];
        const float *restrict x = j->x + c0;
        if (w == SUM_BLOCK)
            for (int64_t r = 0; r < j->rows; r++)
                for (int64_t c = 0; c < SUM_BLOCK; c++)
                    acc[c] += x[r * j->cols + c];
        else
            for (int64_t r = 0; r < j->rows; r++)
                for (int64_t c = 0; c < w; c++)
                    acc[c] += x[r * j->cols + c];
        for (int64_t c = 0; c < w; c++)
            out[c0 + c] = acc[c];
    }
}
static void par_sum_rows(const float *x, float *out, int64_t rows, int64_t cols, float beta)
{
    sum_job j = {x, out, rows, cols, beta};
    /* Parts of 16 columns or more keep the inner loop vectorised. */
    int64_t grain = rows * cols < 2 * GRAIN_ELEMENTS ? cols : 16;
    ct_parallel_for(cols, grain, sum_rows_task, &j);
}

static void act_forward_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_act_forward(j->act, j->x + b * j->cols, j->out + b * j->cols, e - b, j->cols);
}
static void par_act_forward(ct_act act, const float *x, float *y, int64_t rows, int64_t cols)
{
    ew_job j = {.x = x, .out = y, .act = act, .cols = cols};
    ct_parallel_for(rows, GRAIN_ELEMENTS / (cols > 0 ? cols : 1) + 1, act_forward_task, &j);
}

static void act_backward_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    int64_t o = b * j->cols;
    cpu_act_backward(j->act, j->x + o, j->y2 + o, j->y3 + o, j->out + o, e - b, j->cols);
}
static void par_act_backward(ct_act act, const float *x, const float *y, const float *dy,
                             float *dx, int64_t rows, int64_t cols)
{
    ew_job j = {.x = x, .y2 = y, .y3 = dy, .out = dx, .act = act, .cols = cols};
    ct_parallel_for(rows, GRAIN_ELEMENTS / (cols > 0 ? cols : 1) + 1, act_backward_task, &j);
}

static void bias_act_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    ct_cpu_bias_act(j->act, j->x, j->out + b * j->cols, e - b, j->cols);
}
static void par_bias_act(ct_act act, const float *bias, float *y, int64_t rows, int64_t cols)
{
    ew_job j = {.x = bias, .out = y, .act = act, .cols = cols};
    ct_parallel_for(rows, GRAIN_ELEMENTS / (cols > 0 ? cols : 1) + 1, bias_act_task, &j);
}

/* Row by row, so each row's activation reads it back from L1 (two passes over the whole
 * matrix would read it from memory twice). */
static void bias_act_to_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    for (int64_t r = b; r < e; r++) {
        float *z = j->out + r * j->cols;
        if (j->x)
            cpu_add_row_vector(z, j->x, 1, j->cols);
        cpu_act_forward(j->act, z, j->out2 + r * j->cols, 1, j->cols);
    }
}
static void par_bias_act_to(ct_act act, const float *bias, float *z, float *y, int64_t rows,
                            int64_t cols)
{
    ew_job j = {.x = bias, .out = z, .out2 = y, .act = act, .cols = cols};
    ct_parallel_for(rows, GRAIN_ELEMENTS / (cols > 0 ? cols : 1) + 1, bias_act_to_task, &j);
}

static void act_grad_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    ct_cpu_bias_act_grad(j->act, j->x ? j->x + b * j->cols : NULL, j->out + b * j->cols, NULL,
                         e - b, j->cols);
}
/* Two passes: the element-wise part split by rows, the column sums by columns (each sum
 * in its serial order), so results do not depend on the thread count. */
static void par_bias_act_backward(ct_act act, const float *y, float *dy, float *db,
                                  int64_t rows, int64_t cols)
{
    if (act.kind != CT_ACT_LINEAR) {
        ew_job j = {.x = y, .out = dy, .act = act, .cols = cols};
        ct_parallel_for(rows, GRAIN_ELEMENTS / (cols > 0 ? cols : 1) + 1, act_grad_task, &j);
    }
    if (db)
        par_sum_rows(dy, db, rows, cols, 0.0f);
}

static void dropout_task(void *ctx, int64_t b, int64_t e)
{
    const ew_job *j = ctx;
    cpu_dropout_mask(j->out + b, e - b, j->alpha, j->key, j->counter0 + (uint64_t)b);
}
static void par_dropout_mask(float *mask, int64_t n, float rate, uint64_t key, uint64_t counter0)
{
    ew_job j = {.out = mask, .alpha = rate, .key = key, .counter0 = counter0};
    ct_parallel_for(n, GRAIN_ELEMENTS, dropout_task, &j);
}

/* Window ops split by samples: each sample's input and output are separate. */
typedef struct win_job {
    const ct_window *w;
    const float *x, *y, *dy, *kernel;
    float *out, *dkernel;
    int64_t c0, cn, m;
    ct_pool kind;
} win_job;

static int64_t in_size(const ct_window *w) { return w->in_h * w->in_w * w->in_c; }
static int64_t out_positions(const ct_window *w) { return w->out_h * w->out_w; }
static int64_t sample_grain(int64_t per_sample)
{
    return GRAIN_ELEMENTS / (per_sample > 0 ? per_sample : 1) + 1;
}

static void im2col_task(void *ctx, int64_t b, int64_t e)
{
    const win_job *j = ctx;
    int64_t cols = out_positions(j->w) * j->w->k_h * j->w->k_w * j->cn;
    ct_cpu_im2col(j->w, j->x + b * in_size(j->w), e - b, j->c0, j->cn, j->out + b * cols);
}
static void par_im2col(const ct_window *w, const float *x, int64_t rows, int64_t c0, int64_t cn,
                       float *cols)
{
    win_job j = {.w = w, .x = x, .out = cols, .c0 = c0, .cn = cn};
    ct_parallel_for(rows, sample_grain(out_positions(w) * w->k_h * w->k_w * cn), im2col_task, &j);
}

static void col2im_task(void *ctx, int64_t b, int64_t e)
{
    const win_job *j = ctx;
    int64_t cols = out_positions(j->w) * j->w->k_h * j->w->k_w * j->cn;
    ct_cpu_col2im(j->w, j->x + b * cols, e - b, j->c0, j->cn, j->out + b * in_size(j->w));
}
static void par_col2im(const ct_window *w, const float *cols, int64_t rows, int64_t c0,
                       int64_t cn, float *dx)
{
    win_job j = {.w = w, .x = cols, .out = dx, .c0 = c0, .cn = cn};
    ct_parallel_for(rows, sample_grain(out_positions(w) * w->k_h * w->k_w * cn), col2im_task, &j);
}

static void pool_forward_task(void *ctx, int64_t b, int64_t e)
{
    const win_job *j = ctx;
    ct_cpu_pool_forward(j->kind, j->w, j->x + b * in_size(j->w),
                        j->out + b * out_positions(j->w) * j->w->in_c, e - b);
}
static void par_pool_forward(ct_pool kind, const ct_window *w, const float *x, float *y,
                             int64_t rows)
{
    win_job j = {.w = w, .x = x, .out = y, .kind = kind};
    ct_parallel_for(rows, sample_grain(in_size(w)), pool_forward_task, &j);
}

static void pool_backward_task(void *ctx, int64_t b, int64_t e)
{
    const win_job *j = ctx;
    int64_t o = b * out_positions(j->w) * j->w->in_c;
    ct_cpu_pool_backward(j->kind, j->w, j->x + b * in_size(j->w), j->y + o, j->dy + o,
                         j->out + b * in_size(j->w), e - b);
}
static void par_pool_backward(ct_pool kind, const ct_window *w, const float *x, const float *y,
                              const float *dy, float *dx, int64_t rows)
{
    win_job j = {.w = w, .x = x, .y = y, .dy = dy, .out = dx, .kind = kind};
    ct_parallel_for(rows, sample_grain(in_size(w)), pool_backward_task, &j);
}

/* ---- queues and staging: the CPU runs each op to completion, in the caller's memory -- */

static void cpu_sync(void) {}

static int cpu_check(ct_error *err)
{
    (void)err;
    return 0;
}

static void cpu_stage_slot(int slot) { (void)slot; }

static void cpu_stage_upload(int slot, void *dst, const void *src, size_t bytes)
{
    (void)slot;
    cpu_memcpy(dst, src, bytes);
}

static const ct_backend cpu_backend = {
    .name = "cpu",
    .device = CT_DEVICE_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .gemm = par_gemm,
    .gemm_pack_b = ct_cpu_gemm_pack_b,
    .gemm_packed = ct_cpu_gemm_packed,
    .fill = par_fill,
    .copy = par_copy,
    .axpy = par_axpy,
    .add_scaled = par_add_scaled,
    .scale = par_scale,
    .mul = par_mul,
    .add_row_vector = par_add_row_vector,
    .sum_rows = par_sum_rows,
    .bias_act = par_bias_act,
    .bias_act_backward = par_bias_act_backward,
    .bias_act_to = par_bias_act_to,
    .act_forward = par_act_forward,
    .act_backward = par_act_backward,
    .dropout_mask = par_dropout_mask,
    .add_noise = ct_cpu_add_noise,
    .scale_channels = ct_cpu_scale_channels,
    .scale_shift = ct_cpu_scale_shift,
    .image_aug = ct_cpu_image_aug,
    .image_aug_backward = ct_cpu_image_aug_backward,
    .contrast = ct_cpu_contrast,
    .contrast_backward = ct_cpu_contrast_backward,
    .channel_moments = ct_cpu_channel_moments,
    .normalize_channels = ct_cpu_normalize_channels,
    .normalize_channels_backward = ct_cpu_normalize_channels_backward,
    .im2col = par_im2col,
    .col2im = par_col2im,
    .conv_algorithm = ct_cpu_conv_algorithm,
    .conv_workspace = ct_cpu_conv_workspace,
    .conv_forward = ct_cpu_conv_forward,
    .conv_backward = ct_cpu_conv_backward,
    .depthwise_forward = ct_cpu_depthwise_forward,
    .depthwise_backward = ct_cpu_depthwise_backward,
    .pool_forward = par_pool_forward,
    .pool_backward = par_pool_backward,
    .global_pool_forward = ct_cpu_global_pool_forward,
    .global_pool_backward = ct_cpu_global_pool_backward,
    .pad2d = ct_cpu_pad2d,
    .upsample2d = ct_cpu_upsample2d,
    .batchnorm_train = ct_cpu_batchnorm_train,
    .batchnorm_infer = ct_cpu_batchnorm_infer,
    .batchnorm_backward = ct_cpu_batchnorm_backward,
    .groupnorm_forward = ct_cpu_groupnorm_forward,
    .groupnorm_backward = ct_cpu_groupnorm_backward,
    .loss = ct_cpu_loss,
    .metric = ct_cpu_metric,
    .regularize = ct_cpu_regularize,
    .clip_value = ct_cpu_clip_value,
    .clip_norm = ct_cpu_clip_norm,
    .update = ct_cpu_update,
    .copy_strided = ct_cpu_copy_strided,
    .expand = ct_cpu_expand,
    .expand_backward = ct_cpu_expand_backward,
    .extremum = ct_cpu_extremum,
    .take_where = ct_cpu_take_where,
    .gemm_batched = ct_cpu_gemm_batched,
    .attention_softmax = ct_cpu_attention_softmax,
    .attention_softmax_backward = ct_cpu_attention_softmax_backward,
    .gemm_batched_causal = ct_cpu_gemm_batched_causal,
    .l2_normalize = ct_cpu_l2_normalize,
    .l2_normalize_backward = ct_cpu_l2_normalize_backward,
    .gather_rows = ct_cpu_gather_rows,
    .scatter_add_rows = ct_cpu_scatter_add_rows,
    .step_mask = ct_cpu_step_mask,
    .transpose = ct_cpu_transpose,
    .lstm_step = ct_cpu_lstm_step,
    .lstm_step_backward = ct_cpu_lstm_step_backward,
    .lstm_step_packed = ct_cpu_lstm_step_packed,
    .lstm_step_backward_packed = ct_cpu_lstm_step_backward_packed,
    .mask_weights = ct_cpu_mask_weights,
    .sync = cpu_sync,
    .check = cpu_check,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .stage_wait_host = cpu_stage_slot,
    .stage_upload = cpu_stage_upload,
    .stage_use = cpu_stage_slot,
    .stage_release = cpu_stage_slot,
};

const ct_backend *ct_backend_cpu(void) { return &cpu_backend; }
