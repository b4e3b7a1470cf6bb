/* backend_cpu.c - the reference backend: OpenBLAS for gemm, plain loops elsewhere.
 * Loops are kept simple (one operation per pass, no calls inside where possible) so the
 * compiler can vectorise them. */
/* Some GCC builds leave the vectoriser off at -O2; these loops are the hot path. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize")
#endif

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "rng.h"

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

static void cpu_axpy(int64_t n, float alpha, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

static void cpu_mul(int64_t n, const float *a, const float *b, float *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] * b[i];
}

static void cpu_add_row_vector(float *restrict y, const float *restrict b, int64_t rows,
                               int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        float *row = y + r * cols;
        for (int64_t c = 0; c < cols; c++)
            row[c] += b[c];
    }
}

static void cpu_sum_rows(const float *restrict x, float *restrict out, int64_t rows,
                         int64_t cols, float beta)
{
    scale_matrix(1, cols, beta, out, cols);
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        for (int64_t c = 0; c < cols; c++)
            out[c] += row[c];
    }
}

/* ---- activations: forward -------------------------------------------------------- */

/* Never evaluates exp of a large positive number, so no inf/inf. */
static float sigmoidf(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static float softplusf(float x) { return log1pf(expf(-fabsf(x))) + fmaxf(x, 0.0f); }

/* 0.5 * (1 + tanh(u)) written as sigmoid(2u): no cancellation for negative x. */
static float gelu_tanh_gate(float x)
{
    return sigmoidf(2.0f * SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x));
}

/* 0.5 * (1 + erf(x / sqrt 2)) through erfc, accurate in the negative tail. */
static float gelu_erf_gate(float x) { return 0.5f * erfcf(-x * INV_SQRT2); }

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
        return tanhf(x);
    case CT_ACT_SOFTPLUS:
        return softplusf(x);
    case CT_ACT_SOFTSIGN:
        return x / (1.0f + fabsf(x));
    default:
        return x;
    }
}

static float row_max(const float *x, int64_t cols)
{
    float m = -INFINITY;
    for (int64_t c = 0; c < cols; c++)
        m = fmaxf(m, x[c]);
    return m;
}

/* Subtracting the row max keeps exp from overflowing; the result is unchanged. */
static void softmax_row(const float *x, float *y, int64_t cols, bool log_form)
{
    float m = row_max(x, cols);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; c++)
        sum += (double)expf(x[c] - m);
    if (log_form) {
        /* (x - m) first: exact, and keeps digits that x - (m + log sum) would lose */
        float log_sum = (float)log(sum);
        for (int64_t c = 0; c < cols; c++)
            y[c] = (x[c] - m) - log_sum;
        return;
    }
    float inv = (float)(1.0 / sum);
    for (int64_t c = 0; c < cols; c++)
        y[c] = expf(x[c] - m) * inv;
}

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
    default:
        for (int64_t i = 0; i < n; i++)
            y[i] = act_scalar(act, x[i]);
        return;
    }
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
        return gelu_erf_gate(x) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
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
    default:
        for (int64_t i = 0; i < n; i++)
            dx[i] = dy[i] * act_grad(act, x[i], y[i]);
        return;
    }
}

/* ---- randomness ------------------------------------------------------------------ */

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

static const ct_backend cpu_backend = {
    .name = "cpu",
    .device = CT_DEVICE_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .gemm = cpu_gemm,
    .fill = cpu_fill,
    .copy = cpu_copy,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    .mul = cpu_mul,
    .add_row_vector = cpu_add_row_vector,
    .sum_rows = cpu_sum_rows,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .dropout_mask = cpu_dropout_mask,
    .add_noise = ct_cpu_add_noise,
    .scale_channels = ct_cpu_scale_channels,
    .im2col = ct_cpu_im2col,
    .col2im = ct_cpu_col2im,
    .depthwise_forward = ct_cpu_depthwise_forward,
    .depthwise_backward = ct_cpu_depthwise_backward,
    .pool_forward = ct_cpu_pool_forward,
    .pool_backward = ct_cpu_pool_backward,
    .global_pool_forward = ct_cpu_global_pool_forward,
    .global_pool_backward = ct_cpu_global_pool_backward,
    .pad2d = ct_cpu_pad2d,
    .upsample2d = ct_cpu_upsample2d,
    .batchnorm_train = ct_cpu_batchnorm_train,
    .batchnorm_infer = ct_cpu_batchnorm_infer,
    .batchnorm_backward = ct_cpu_batchnorm_backward,
    .groupnorm_forward = ct_cpu_groupnorm_forward,
    .groupnorm_backward = ct_cpu_groupnorm_backward,
};

const ct_backend *ct_backend_cpu(void) { return &cpu_backend; }
