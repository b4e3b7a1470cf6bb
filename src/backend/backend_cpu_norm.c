/* backend_cpu_norm.c - batch and group normalization on the CPU.
 *
 * Statistics are sums of (x - shift) in double, with shift an element of the same
 * channel/group: the shift keeps the sum of squares free of cancellation when the data sit
 * far from zero (1000 + small noise), and double keeps large n accurate. The normalized
 * output subtracts the mean as a float pair (hi + lo), so x - hi is exact for data near the
 * mean. Backward passes re-centre x - mean by the mean of that difference, which is what
 * the float mean missed. Inner loops run over contiguous channels (or fixed lanes) so they
 * vectorize; per-channel constants are staged in small stack blocks, never allocated.
 *
 * Group norm has two layouts: a group of many channels (or a single position, as layer
 * norm) is a set of contiguous runs reduced in lanes; small groups over many positions are
 * summed per channel across the positions, then folded into groups.
 *
 * Threads (parallel.h): element-wise passes split the positions, group norm splits its
 * samples (every sample's groups are independent), and sums over positions or samples are
 * taken over parts fixed by the shape alone, never by the thread count: each part is summed
 * serially, then the parts are added in order on the calling thread. So every result is
 * the same for any number of threads. */
/* Some GCC builds leave the vectoriser off at -O2; these loops are on the hot path. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize")
#endif

#include <math.h>

#include "backend_cpu.h"
#include "parallel.h"
#include "simd.h"

/* The layer-norm path's helpers, inlined into the cloned tasks that call them (simd.h): a
 * call would run the baseline's code. */
#if defined(__GNUC__)
#define CT_NORM_INLINE static inline __attribute__((always_inline))
#else
#define CT_NORM_INLINE static inline
#endif

/* Channels handled per block by the batch-norm passes (stack arrays of this size). */
#define CT_BN_BLOCK 256
/* Independent accumulators for reductions over one contiguous run. */
#define CT_LANES 8
/* Reductions over positions: at most this many parts, each of at least CT_PART_MIN values. */
#define CT_PARTS 16
#define CT_PART_MIN 16384
/* Element-wise work per thread, at least: less is not worth handing out. */
#define CT_GRAIN 32768

/* The parts' partial sums (up to three per channel of a block). Static like the worker
 * pool, whose rule it shares: these ops run from one thread at a time. */
static double part_sums[CT_PARTS * 3 * CT_BN_BLOCK];

/* How many parts `items` items of `size` values each are summed in: depends on the shape
 * only. */
static int64_t parts_for(int64_t items, int64_t size)
{
    int64_t p = size > 0 ? items / (CT_PART_MIN / size + 1) : 1;
    p = p < CT_PARTS ? p : CT_PARTS;
    return p > 1 ? p : 1;
}

/* The first item of part p of n items in `parts` parts. */
static int64_t part_start(int64_t n, int64_t parts, int64_t p)
{
    return n * p / parts;
}

/* Part p's k sums. Tasks sum into their own stack and store once, so parts of different
 * threads never share a cache line while they are summed. */
static void store_part(int64_t p, const double *sums, int64_t k)
{
    for (int64_t i = 0; i < k; i++)
        part_sums[p * k + i] = sums[i];
}

/* Adds up the parts' sums in part order: out[i] = sum over p of part[p * k + i], i < k. */
static void combine_parts(const double *part, int64_t parts, int64_t k, double *out)
{
    for (int64_t i = 0; i < k; i++)
        out[i] = part[i];
    for (int64_t p = 1; p < parts; p++)
        for (int64_t i = 0; i < k; i++)
            out[i] += part[p * k + i];
}

/* Items per thread, at least, for items of `size` values each. */
static int64_t grain_for(int64_t size)
{
    return CT_GRAIN / (size > 0 ? size : 1) + 1;
}

/* ---- batch normalization ------------------------------------------------------------ */

/* Rows summed per step of the reductions below: each channel's sum is loaded and stored
 * once per step rather than once per row. */
#define CT_ROW_STEP 4

/* Per-channel sums over n rows of d = x - shift, for channels [c0, c0 + cb). */
static void bn_sums(const float *x, int64_t n, int64_t c, int64_t c0, int64_t cb,
                    const float *shift, double *restrict s1, double *restrict s2)
{
    double sh[CT_BN_BLOCK];
    for (int64_t j = 0; j < cb; j++) {
        s1[j] = s2[j] = 0.0;
        sh[j] = (double)shift[j];
    }
    int64_t i = 0;
    for (; i + CT_ROW_STEP <= n; i += CT_ROW_STEP) {
        const float *x0 = x + i * c + c0, *x1 = x0 + c, *x2 = x1 + c, *x3 = x2 + c;
        for (int64_t j = 0; j < cb; j++) {
            double d0 = (double)x0[j] - sh[j], d1 = (double)x1[j] - sh[j];
            double d2 = (double)x2[j] - sh[j], d3 = (double)x3[j] - sh[j];
            s1[j] += (d0 + d1) + (d2 + d3);
            s2[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
        }
    }
    for (; i < n; i++) {
        const float *xr = x + i * c + c0;
        for (int64_t j = 0; j < cb; j++) {
            double d = (double)xr[j] - sh[j];
            s1[j] += d;
            s2[j] += d * d;
        }
    }
}

/* y = ((x - hi) - lo) * sc + bt over n rows of channels [c0, c0 + cb), then relu(y) if
 * asked. */
static void bn_apply(const float *x, float *y, int64_t n, int64_t c, int64_t c0, int64_t cb,
                     const float *hi, const float *lo, const float *sc, const float *bt,
                     bool relu)
{
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * c + c0;
        float *yr = y + i * c + c0;
        if (relu) {
            for (int64_t j = 0; j < cb; j++) {
                float v = ((xr[j] - hi[j]) - lo[j]) * sc[j] + bt[j];
                yr[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int64_t j = 0; j < cb; j++)
                yr[j] = ((xr[j] - hi[j]) - lo[j]) * sc[j] + bt[j];
        }
    }
}

static float gamma_at(const float *gamma, int64_t j) { return gamma ? gamma[j] : 1.0f; }
static float beta_at(const float *beta, int64_t j) { return beta ? beta[j] : 0.0f; }

/* Splits a double mean into hi + lo floats. */
CT_NORM_INLINE void split_mean(double m, float *hi, float *lo)
{
    *hi = (float)m;
    *lo = (float)(m - (double)*hi);
}

/* One channel block of a batch-norm pass: what its tasks need. */
typedef struct bn_job {
    const float *x, *dy;
    const float *y;    /* the gradient: the output of a fused relu (dy counts where y > 0) */
    bool relu;         /* the forward: apply relu to y */
    float *out;
    int64_t n, c, c0, cb, parts;
    const float *m;    /* the block's shift (statistics) or mean (gradient) */
    const float *k[4]; /* the block's constants of the element-wise pass */
} bn_job;

static void bn_sums_task(void *ctx, int64_t begin, int64_t end)
{
    const bn_job *j = ctx;
    double s[2 * CT_BN_BLOCK];
    for (int64_t p = begin; p < end; p++) {
        int64_t r0 = part_start(j->n, j->parts, p), r1 = part_start(j->n, j->parts, p + 1);
        bn_sums(j->x + r0 * j->c, r1 - r0, j->c, j->c0, j->cb, j->m, s, s + j->cb);
        store_part(p, s, 2 * j->cb);
    }
}

static void bn_apply_task(void *ctx, int64_t begin, int64_t end)
{
    const bn_job *j = ctx;
    bn_apply(j->x + begin * j->c, j->out + begin * j->c, end - begin, j->c, j->c0, j->cb,
             j->k[0], j->k[1], j->k[2], j->k[3], j->relu);
}

void ct_cpu_batchnorm_train(const float *x, float *y, int64_t n, int64_t c, const float *gamma,
                            const float *beta, float eps, float *mean, float *var, float *invstd,
                            bool relu)
{
    float shift[CT_BN_BLOCK], hi[CT_BN_BLOCK], lo[CT_BN_BLOCK], sc[CT_BN_BLOCK], bt[CT_BN_BLOCK];
    double s[2 * CT_BN_BLOCK];
    for (int64_t c0 = 0; c0 < c; c0 += CT_BN_BLOCK) {
        int64_t cb = c - c0 < CT_BN_BLOCK ? c - c0 : CT_BN_BLOCK;
        for (int64_t j = 0; j < cb; j++)
            shift[j] = n > 0 ? x[c0 + j] : 0.0f;
        bn_job job = {.x = x, .out = y, .n = n, .c = c, .c0 = c0, .cb = cb, .relu = relu,
                      .parts = parts_for(n, cb), .m = shift, .k = {hi, lo, sc, bt}};
        ct_parallel_for(job.parts, 1, bn_sums_task, &job);
        combine_parts(part_sums, job.parts, 2 * cb, s);
        for (int64_t j = 0; j < cb; j++) {
            double dm = n > 0 ? s[j] / (double)n : 0.0;
            double v = n > 0 ? s[cb + j] / (double)n - dm * dm : 0.0;
            if (v < 0.0)
                v = 0.0;
            double m = (double)shift[j] + dm, is = 1.0 / sqrt(v + (double)eps);
            mean[c0 + j] = (float)m;
            var[c0 + j] = (float)v;
            invstd[c0 + j] = (float)is;
            split_mean(m, &hi[j], &lo[j]);
            sc[j] = (float)(is * (double)gamma_at(gamma, c0 + j));
            bt[j] = beta_at(beta, c0 + j);
        }
        ct_parallel_for(n, grain_for(cb), bn_apply_task, &job);
    }
}

void ct_cpu_batchnorm_infer(const float *x, float *y, int64_t n, int64_t c, const float *gamma,
                            const float *beta, float eps, const float *mean, const float *var,
                            bool relu)
{
    float hi[CT_BN_BLOCK], lo[CT_BN_BLOCK], sc[CT_BN_BLOCK], bt[CT_BN_BLOCK];
    for (int64_t c0 = 0; c0 < c; c0 += CT_BN_BLOCK) {
        int64_t cb = c - c0 < CT_BN_BLOCK ? c - c0 : CT_BN_BLOCK;
        for (int64_t j = 0; j < cb; j++) {
            double is = 1.0 / sqrt((double)var[c0 + j] + (double)eps);
            hi[j] = mean[c0 + j];
            lo[j] = 0.0f;
            sc[j] = (float)(is * (double)gamma_at(gamma, c0 + j));
            bt[j] = beta_at(beta, c0 + j);
        }
        bn_job job = {.x = x, .out = y, .n = n, .c = c, .c0 = c0, .cb = cb, .relu = relu,
                      .k = {hi, lo, sc, bt}};
        ct_parallel_for(n, grain_for(cb), bn_apply_task, &job);
    }
}

/* bn_grad_sums with dy taken through a fused relu (y its output), in the same order. */
/* GCC turns the masked selects into branches while a comparison may raise an FP exception
 * (-ftrapping-math): without that assumption the loop vectorises, computing the same. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-trapping-math")))
#endif
static void bn_grad_sums_relu(const float *x, const float *y, const float *dy, int64_t n,
                              int64_t c, int64_t c0, int64_t cb, const float *m,
                              double *restrict sd, double *restrict sdy, double *restrict sdyd)
{
    double md[CT_BN_BLOCK];
    for (int64_t j = 0; j < cb; j++) {
        sd[j] = sdy[j] = sdyd[j] = 0.0;
        md[j] = (double)m[j];
    }
    int64_t i = 0;
    for (; i + CT_ROW_STEP <= n; i += CT_ROW_STEP) {
        const int64_t o = i * c + c0;
        const float *x0 = x + o, *x1 = x0 + c, *x2 = x1 + c, *x3 = x2 + c;
        const float *y0 = y + o, *y1 = y0 + c, *y2 = y1 + c, *y3 = y2 + c;
        const float *g0 = dy + o, *g1 = g0 + c, *g2 = g1 + c, *g3 = g2 + c;
        for (int64_t j = 0; j < cb; j++) {
            double d0 = (double)x0[j] - md[j], d1 = (double)x1[j] - md[j];
            double d2 = (double)x2[j] - md[j], d3 = (double)x3[j] - md[j];
            /* masked in float, from values loaded whatever the mask: a select of one
             * width without a branch, which vectorises */
            float h0 = g0[j], h1 = g1[j], h2 = g2[j], h3 = g3[j];
            float m0 = y0[j] > 0.0f ? h0 : 0.0f, m1 = y1[j] > 0.0f ? h1 : 0.0f;
            float m2 = y2[j] > 0.0f ? h2 : 0.0f, m3 = y3[j] > 0.0f ? h3 : 0.0f;
            double e0 = (double)m0, e1 = (double)m1, e2 = (double)m2, e3 = (double)m3;
            sd[j] += (d0 + d1) + (d2 + d3);
            sdy[j] += (e0 + e1) + (e2 + e3);
            sdyd[j] += (e0 * d0 + e1 * d1) + (e2 * d2 + e3 * d3);
        }
    }
    for (; i < n; i++) {
        const float *xr = x + i * c + c0, *yr = y + i * c + c0, *gr = dy + i * c + c0;
        for (int64_t j = 0; j < cb; j++) {
            float h = gr[j], mg = yr[j] > 0.0f ? h : 0.0f;
            double d = (double)xr[j] - md[j], g = (double)mg;
            sd[j] += d;
            sdy[j] += g;
            sdyd[j] += g * d;
        }
    }
}

/* Per-channel sums over n rows of d = x - m, dy and dy * d (m block-local); dy through a
 * fused relu where y is given. */
static void bn_grad_sums(const float *x, const float *y, const float *dy, int64_t n, int64_t c,
                         int64_t c0, int64_t cb, const float *m, double *restrict sd,
                         double *restrict sdy, double *restrict sdyd)
{
    if (y) {
        bn_grad_sums_relu(x, y, dy, n, c, c0, cb, m, sd, sdy, sdyd);
        return;
    }
    double md[CT_BN_BLOCK];
    for (int64_t j = 0; j < cb; j++) {
        sd[j] = sdy[j] = sdyd[j] = 0.0;
        md[j] = (double)m[j];
    }
    int64_t i = 0;
    for (; i + CT_ROW_STEP <= n; i += CT_ROW_STEP) {
        const float *x0 = x + i * c + c0, *x1 = x0 + c, *x2 = x1 + c, *x3 = x2 + c;
        const float *g0 = dy + i * c + c0, *g1 = g0 + c, *g2 = g1 + c, *g3 = g2 + c;
        for (int64_t j = 0; j < cb; j++) {
            double d0 = (double)x0[j] - md[j], d1 = (double)x1[j] - md[j];
            double d2 = (double)x2[j] - md[j], d3 = (double)x3[j] - md[j];
            double e0 = (double)g0[j], e1 = (double)g1[j], e2 = (double)g2[j];
            double e3 = (double)g3[j];
            sd[j] += (d0 + d1) + (d2 + d3);
            sdy[j] += (e0 + e1) + (e2 + e3);
            sdyd[j] += (e0 * d0 + e1 * d1) + (e2 * d2 + e3 * d3);
        }
    }
    for (; i < n; i++) {
        const float *xr = x + i * c + c0, *gr = dy + i * c + c0;
        for (int64_t j = 0; j < cb; j++) {
            double d = (double)xr[j] - md[j], g = (double)gr[j];
            sd[j] += d;
            sdy[j] += g;
            sdyd[j] += g * d;
        }
    }
}

/* dx = a * dy - b - ((x - m) - dl) * e over n rows of channels [c0, c0 + cb); the
 * per-channel constants are block-local. */
static void grad_apply(const float *x, const float *y, const float *dy, float *restrict dx,
                       int64_t n, int64_t c, int64_t c0, int64_t cb, const float *m,
                       const float *dl, const float *a, const float *b, const float *e)
{
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * c + c0, *gr = dy + i * c + c0;
        float *dr = dx + i * c + c0;
        if (y) {
            const float *yr = y + i * c + c0;
            for (int64_t j = 0; j < cb; j++) {
                float h = gr[j], g = yr[j] > 0.0f ? h : 0.0f;
                dr[j] = a[j] * g - b[j] - ((xr[j] - m[j]) - dl[j]) * e[j];
            }
        } else {
            for (int64_t j = 0; j < cb; j++)
                dr[j] = a[j] * gr[j] - b[j] - ((xr[j] - m[j]) - dl[j]) * e[j];
        }
    }
}

static void bn_grad_sums_task(void *ctx, int64_t begin, int64_t end)
{
    const bn_job *j = ctx;
    double s[3 * CT_BN_BLOCK];
    for (int64_t p = begin; p < end; p++) {
        int64_t r0 = part_start(j->n, j->parts, p), r1 = part_start(j->n, j->parts, p + 1);
        bn_grad_sums(j->x + r0 * j->c, j->y ? j->y + r0 * j->c : NULL, j->dy + r0 * j->c,
                     r1 - r0, j->c, j->c0, j->cb, j->m, s, s + j->cb, s + 2 * j->cb);
        store_part(p, s, 3 * j->cb);
    }
}

static void bn_grad_apply_task(void *ctx, int64_t begin, int64_t end)
{
    const bn_job *j = ctx;
    int64_t at = begin * j->c;
    grad_apply(j->x + at, j->y ? j->y + at : NULL, j->dy + at, j->out + at, end - begin, j->c,
               j->c0, j->cb, j->m, j->k[0], j->k[1], j->k[2], j->k[3]);
}

/* With xhat = (x - mean) * invstd: dx = gamma * invstd * (dy - mean(dy) - xhat *
 * mean(dy * xhat)). dl re-centres x - mean by what the float mean missed. */
void ct_cpu_batchnorm_backward(const float *x, const float *y, float *dy, float *dx, int64_t n,
                               int64_t c, const float *gamma, const float *mean,
                               const float *invstd, float *dgamma, float *dbeta)
{
    double s[3 * CT_BN_BLOCK];
    float dl[CT_BN_BLOCK], a[CT_BN_BLOCK], b[CT_BN_BLOCK], e[CT_BN_BLOCK];
    double inv_n = n > 0 ? 1.0 / (double)n : 0.0;
    for (int64_t c0 = 0; c0 < c; c0 += CT_BN_BLOCK) {
        int64_t cb = c - c0 < CT_BN_BLOCK ? c - c0 : CT_BN_BLOCK;
        bn_job job = {.x = x, .y = y, .dy = dy, .out = dx, .n = n, .c = c, .c0 = c0, .cb = cb,
                      .parts = parts_for(n, 2 * cb), .m = mean + c0, .k = {dl, a, b, e}};
        ct_parallel_for(job.parts, 1, bn_grad_sums_task, &job);
        combine_parts(part_sums, job.parts, 3 * cb, s);
        const double *sd = s, *sdy = s + cb, *sdyd = s + 2 * cb;
        for (int64_t j = 0; j < cb; j++) {
            double is = (double)invstd[c0 + j], delta = sd[j] * inv_n;
            double sdyx = is * (sdyd[j] - delta * sdy[j]); /* sum(dy * xhat) */
            double k = is * (double)gamma_at(gamma, c0 + j);
            if (dgamma)
                dgamma[c0 + j] = (float)sdyx;
            if (dbeta)
                dbeta[c0 + j] = (float)sdy[j];
            dl[j] = (float)delta;
            a[j] = (float)k;
            b[j] = (float)(k * sdy[j] * inv_n);
            e[j] = (float)(k * is * sdyx * inv_n);
        }
        if (dx)
            ct_parallel_for(n, grain_for(3 * cb), bn_grad_apply_task, &job);
    }
}

/* ---- group normalization ------------------------------------------------------------ */

/* Adds d = x - shift and d^2 of n contiguous floats into lane accumulators. */
CT_NORM_INLINE void run_sums(const float *x, int64_t n, float shift, double *a1, double *a2)
{
    int64_t i = 0;
    for (; i + CT_LANES <= n; i += CT_LANES)
        for (int k = 0; k < CT_LANES; k++) {
            double d = (double)x[i + k] - (double)shift;
            a1[k] += d;
            a2[k] += d * d;
        }
    for (int k = 0; i + k < n; k++) { /* the tail, still one lane each */
        double d = (double)x[i + k] - (double)shift;
        a1[k] += d;
        a2[k] += d * d;
    }
}

CT_NORM_INLINE double lanes_total(const double *a)
{
    double s = 0.0;
    for (int k = 0; k < CT_LANES; k++)
        s += a[k];
    return s;
}

/* y = ((x - hi) - lo) * is * gamma + beta over a run of cg channels starting at channel j0. */
CT_NORM_INLINE void gn_apply_run(const float *x, float *y, int64_t cg, int64_t j0, float hi,
                                 float lo, float is, const float *gamma, const float *beta)
{
    if (gamma && beta)
        for (int64_t j = 0; j < cg; j++)
            y[j] = ((x[j] - hi) - lo) * is * gamma[j0 + j] + beta[j0 + j];
    else if (gamma)
        for (int64_t j = 0; j < cg; j++)
            y[j] = ((x[j] - hi) - lo) * is * gamma[j0 + j];
    else if (beta)
        for (int64_t j = 0; j < cg; j++)
            y[j] = ((x[j] - hi) - lo) * is + beta[j0 + j];
    else
        for (int64_t j = 0; j < cg; j++)
            y[j] = ((x[j] - hi) - lo) * is;
}

/* One sample's group: spatial runs of cg channels at stride c, starting at x (channel j0). */
CT_NORM_INLINE void gn_forward_group(const float *x, float *y, int64_t spatial, int64_t c,
                                     int64_t cg, int64_t j0, const float *gamma,
                                     const float *beta, float eps, float *mean, float *invstd)
{
    double a1[CT_LANES] = {0}, a2[CT_LANES] = {0};
    float shift = x[0];
    for (int64_t p = 0; p < spatial; p++)
        run_sums(x + p * c, cg, shift, a1, a2);
    double m_n = (double)(spatial * cg);
    double dm = lanes_total(a1) / m_n, v = lanes_total(a2) / m_n - dm * dm;
    if (v < 0.0)
        v = 0.0;
    double m = (double)shift + dm, is = 1.0 / sqrt(v + (double)eps);
    *mean = (float)m;
    *invstd = (float)is;
    float hi, lo;
    split_mean(m, &hi, &lo);
    for (int64_t p = 0; p < spatial; p++)
        gn_apply_run(x + p * c, y + p * c, cg, j0, hi, lo, (float)is, gamma, beta);
}

/* Small groups over several positions: per-channel sums over the positions (contiguous,
 * vectorized), then folded into groups. Channels [c0, c0 + cb) of one sample, cb a multiple
 * of cg; mean/invstd point at the block's first group. */
static void gn_forward_block(const float *x, float *y, int64_t spatial, int64_t c, int64_t cg,
                             int64_t c0, int64_t cb, const float *gamma, const float *beta,
                             float eps, float *mean, float *invstd)
{
    float sh[CT_BN_BLOCK] = {0}, hi[CT_BN_BLOCK], lo[CT_BN_BLOCK];
    float sc[CT_BN_BLOCK], bt[CT_BN_BLOCK];
    double s1[CT_BN_BLOCK], s2[CT_BN_BLOCK];
    for (int64_t j = 0; j < cb; j++)
        sh[j] = x[c0 + j - j % cg]; /* the group's first value */
    bn_sums(x, spatial, c, c0, cb, sh, s1, s2);
    double m_n = (double)(spatial * cg);
    for (int64_t g0 = 0; g0 < cb; g0 += cg) {
        double t1 = 0.0, t2 = 0.0;
        for (int64_t j = g0; j < g0 + cg; j++)
            t1 += s1[j], t2 += s2[j];
        double dm = t1 / m_n, v = t2 / m_n - dm * dm;
        if (v < 0.0)
            v = 0.0;
        double m = (double)sh[g0] + dm, is = 1.0 / sqrt(v + (double)eps);
        mean[g0 / cg] = (float)m;
        invstd[g0 / cg] = (float)is;
        for (int64_t j = g0; j < g0 + cg; j++) {
            split_mean(m, &hi[j], &lo[j]);
            sc[j] = (float)(is * (double)gamma_at(gamma, c0 + j));
            bt[j] = beta_at(beta, c0 + j);
        }
    }
    bn_apply(x, y, spatial, c, c0, cb, hi, lo, sc, bt, false);
}

/* Runs of channels suit large groups and single positions (layer norm); per-channel
 * blocks suit small groups spread over many positions. */
static bool gn_blocked(int64_t spatial, int64_t cg)
{
    return spatial > 1 && cg < 64;
}

/* Channels per block for the blocked path: whole groups only. */
static int64_t gn_block(int64_t cg)
{
    return CT_BN_BLOCK / cg * cg;
}

/* A group-norm pass: its arguments and how its channels are blocked. */
typedef struct gn_job {
    const float *x;
    float *out;
    int64_t spatial, c, groups, cg;
    int64_t bs, blocks; /* channels per block (whole groups), blocks per sample */
    const float *gamma, *beta;
    float eps;
    float *mean, *invstd;
} gn_job;

/* Items [begin, end) are (sample, block) pairs. */
static void gn_forward_blocks_task(void *ctx, int64_t begin, int64_t end)
{
    const gn_job *j = ctx;
    int64_t sample = j->spatial * j->c;
    for (int64_t u = begin; u < end; u++) {
        int64_t r = u / j->blocks, c0 = u % j->blocks * j->bs;
        int64_t at = r * j->groups + c0 / j->cg;
        gn_forward_block(j->x + r * sample, j->out + r * sample, j->spatial, j->c, j->cg, c0,
                         j->c - c0 < j->bs ? j->c - c0 : j->bs, j->gamma, j->beta, j->eps,
                         j->mean + at, j->invstd + at);
    }
}

/* Items [begin, end) are (sample, group) pairs. Cloned (simd.h) for layer norm, where
 * each group is one short run and the baseline's two-double vectors were the cost; the
 * clones give the same bits (no contraction, the same lanes). */
CT_CPU_CLONES
static void gn_forward_groups_task(void *ctx, int64_t begin, int64_t end)
{
    const gn_job *j = ctx;
    for (int64_t u = begin; u < end; u++) {
        int64_t r = u / j->groups, g = u % j->groups;
        int64_t off = r * j->spatial * j->c + g * j->cg;
        gn_forward_group(j->x + off, j->out + off, j->spatial, j->c, j->cg, g * j->cg,
                         j->gamma, j->beta, j->eps, &j->mean[u], &j->invstd[u]);
    }
}

void ct_cpu_groupnorm_forward(const float *x, float *y, int64_t rows, int64_t spatial, int64_t c,
                              int64_t groups, const float *gamma, const float *beta, float eps,
                              float *mean, float *invstd)
{
    if (spatial <= 0 || c <= 0 || groups <= 0)
        return;
    if (spatial == 1 && groups == 1 && c <= CT_LN_MAX) {
        ct_cpu_layernorm_forward(x, y, rows, c, gamma, beta, eps, mean, invstd);
        return;
    }
    gn_job j = {.x = x, .out = y, .spatial = spatial, .c = c, .groups = groups,
                .cg = c / groups, .gamma = gamma, .beta = beta, .eps = eps, .mean = mean,
                .invstd = invstd};
    if (gn_blocked(spatial, j.cg)) {
        j.bs = gn_block(j.cg);
        j.blocks = (c + j.bs - 1) / j.bs;
        ct_parallel_for(rows * j.blocks, grain_for(spatial * j.bs), gn_forward_blocks_task, &j);
        return;
    }
    ct_parallel_for(rows * groups, grain_for(spatial * j.cg), gn_forward_groups_task, &j);
}

/* Sums over a run of n channels: d = x - m, g = dy * gamma, g * d. */
CT_NORM_INLINE void gn_grad_run(const float *x, const float *dy, int64_t n, float m,
                                const float *gamma, double *sd, double *sg, double *sgd)
{
    int64_t i = 0;
    for (; i + CT_LANES <= n; i += CT_LANES)
        for (int k = 0; k < CT_LANES; k++) {
            double d = (double)x[i + k] - (double)m, g = (double)(dy[i + k] * gamma[i + k]);
            sd[k] += d;
            sg[k] += g;
            sgd[k] += g * d;
        }
    for (int k = 0; i + k < n; k++) {
        double d = (double)x[i + k] - (double)m, g = (double)(dy[i + k] * gamma[i + k]);
        sd[k] += d;
        sg[k] += g;
        sgd[k] += g * d;
    }
}

/* As gn_grad_run with gamma = 1. */
CT_NORM_INLINE void gn_grad_run_plain(const float *x, const float *dy, int64_t n, float m,
                                      double *sd, double *sg, double *sgd)
{
    int64_t i = 0;
    for (; i + CT_LANES <= n; i += CT_LANES)
        for (int k = 0; k < CT_LANES; k++) {
            double d = (double)x[i + k] - (double)m, g = (double)dy[i + k];
            sd[k] += d;
            sg[k] += g;
            sgd[k] += g * d;
        }
    for (int k = 0; i + k < n; k++) {
        double d = (double)x[i + k] - (double)m, g = (double)dy[i + k];
        sd[k] += d;
        sg[k] += g;
        sgd[k] += g * d;
    }
}

/* Sum of v[j] (times gamma[j] when gamma is not NULL) over n values, in lanes. */
static double fold(const double *v, const float *gamma, int64_t n)
{
    double a[CT_LANES] = {0};
    int64_t i = 0;
    if (gamma)
        for (; i + CT_LANES <= n; i += CT_LANES)
            for (int k = 0; k < CT_LANES; k++)
                a[k] += v[i + k] * (double)gamma[i + k];
    else
        for (; i + CT_LANES <= n; i += CT_LANES)
            for (int k = 0; k < CT_LANES; k++)
                a[k] += v[i + k];
    for (int k = 0; i + k < n; k++)
        a[k] += v[i + k] * (gamma ? (double)gamma[i + k] : 1.0);
    return lanes_total(a);
}

/* A group's totals of d = x - m, dy * gamma and dy * gamma * d over all its positions, for
 * groups wider than a block (x, dy and gamma start at the group's first channel). */
CT_NORM_INLINE void gn_group_totals(const float *x, const float *dy, int64_t spatial, int64_t c,
                                    int64_t cg, const float *gamma, float m, double t[3])
{
    double sd[CT_LANES] = {0}, sg[CT_LANES] = {0}, sgd[CT_LANES] = {0};
    for (int64_t p = 0; p < spatial; p++)
        if (gamma)
            gn_grad_run(x + p * c, dy + p * c, cg, m, gamma, sd, sg, sgd);
        else
            gn_grad_run_plain(x + p * c, dy + p * c, cg, m, sd, sg, sgd);
    t[0] = lanes_total(sd);
    t[1] = lanes_total(sg);
    t[2] = lanes_total(sgd);
}

/* Where a block of channels sits: [c0, c0 + cb) of a sample of `spatial` positions. */
typedef struct gn_block_pos {
    int64_t spatial, c, cg, c0, cb;
} gn_block_pos;

/* Per-channel sums of one sample's block are computed once and serve three ends: the
 * group totals (when the block holds whole groups), dgamma/dbeta (acc, accumulated in
 * double over the samples) and dx. With xhat = (d - delta) * is, d = x - mean and delta
 * what the float mean missed: dx = is * (dy * gamma - mean(dy * gamma) - xhat *
 * mean(dy * gamma * xhat)) over the group. mean/invstd point at the sample's groups. */
static void gn_backward_sample(const gn_block_pos *bp, const float *x, const float *dy,
                               float *dx, const float *gamma, const float *mean,
                               const float *invstd, double *accg, double *accb)
{
    int64_t c0 = bp->c0, cb = bp->cb, cg = bp->cg;
    double sd[CT_BN_BLOCK], sdy[CT_BN_BLOCK], sdyd[CT_BN_BLOCK];
    float m[CT_BN_BLOCK] = {0}, dl[CT_BN_BLOCK], a[CT_BN_BLOCK], b[CT_BN_BLOCK], e[CT_BN_BLOCK];
    const float *gm = gamma ? gamma + c0 : NULL;
    for (int64_t s0 = 0, s1; s0 < cb; s0 = s1) { /* segments of one group each */
        int64_t g = (c0 + s0) / cg;
        s1 = (g + 1) * cg - c0 < cb ? (g + 1) * cg - c0 : cb;
        for (int64_t j = s0; j < s1; j++)
            m[j] = mean[g];
    }
    bn_grad_sums(x, NULL, dy, bp->spatial, bp->c, c0, cb, m, sd, sdy, sdyd);
    double inv_n = 1.0 / (double)(bp->spatial * cg);
    for (int64_t s0 = 0, s1; s0 < cb; s0 = s1) {
        int64_t g = (c0 + s0) / cg;
        s1 = (g + 1) * cg - c0 < cb ? (g + 1) * cg - c0 : cb;
        int64_t n = s1 - s0;
        double t[3];
        if (n == cg) {
            t[0] = fold(sd + s0, NULL, n);
            t[1] = fold(sdy + s0, gm ? gm + s0 : NULL, n);
            t[2] = fold(sdyd + s0, gm ? gm + s0 : NULL, n);
        } else {
            int64_t off = g * cg - c0; /* the group starts before or at this block */
            gn_group_totals(x + c0 + off, dy + c0 + off, bp->spatial, bp->c, cg,
                            gamma ? gamma + g * cg : NULL, mean[g], t);
        }
        double is = (double)invstd[g], delta = t[0] * inv_n;
        double sx = is * (t[2] - delta * t[1]); /* sum(dy * gamma * xhat) */
        for (int64_t j = s0; j < s1; j++) {
            double k = is * (gm ? (double)gm[j] : 1.0);
            accg[j] += is * (sdyd[j] - delta * sdy[j]);
            accb[j] += sdy[j];
            dl[j] = (float)delta;
            a[j] = (float)k;
            b[j] = (float)(is * t[1] * inv_n);
            e[j] = (float)(is * is * sx * inv_n);
        }
    }
    if (dx)
        grad_apply(x, NULL, dy, dx, bp->spatial, bp->c, c0, cb, m, dl, a, b, e);
}

/* dx of n channels and their dgamma/dbeta terms, given the group's constants. */
CT_NORM_INLINE void gn_fused_apply(const float *x, const float *dy, float *dx, int64_t n,
                                   const float *gamma, float m, float dl, float is, float b,
                                   float e, double *accg, double *accb)
{
    for (int64_t j = 0; j < n; j++) {
        accg[j] += (double)(dy[j] * (((x[j] - m) - dl) * is));
        accb[j] += (double)dy[j];
    }
    if (dx && gamma)
        for (int64_t j = 0; j < n; j++)
            dx[j] = is * gamma[j] * dy[j] - b - ((x[j] - m) - dl) * e;
    else if (dx)
        for (int64_t j = 0; j < n; j++)
            dx[j] = is * dy[j] - b - ((x[j] - m) - dl) * e;
}

/* gn_backward_sample for samples of a single position (layer norm): every group is one
 * contiguous run, so its totals come from one lane pass and the rest is one fused loop. */
CT_NORM_INLINE void gn_backward_position(const gn_block_pos *bp, const float *x,
                                         const float *dy, float *dx, const float *gamma,
                                         const float *mean, const float *invstd, double *accg,
                                         double *accb)
{
    int64_t c0 = bp->c0, cb = bp->cb, cg = bp->cg;
    double inv_n = 1.0 / (double)cg;
    for (int64_t s0 = 0, s1; s0 < cb; s0 = s1) {
        int64_t g = (c0 + s0) / cg;
        s1 = (g + 1) * cg - c0 < cb ? (g + 1) * cg - c0 : cb;
        double t[3];
        gn_group_totals(x + g * cg, dy + g * cg, 1, bp->c, cg, gamma ? gamma + g * cg : NULL,
                        mean[g], t);
        double is = (double)invstd[g], delta = t[0] * inv_n;
        double sx = is * (t[2] - delta * t[1]);
        gn_fused_apply(x + c0 + s0, dy + c0 + s0, dx ? dx + c0 + s0 : NULL, s1 - s0,
                       gamma ? gamma + c0 + s0 : NULL, mean[g], (float)delta, (float)is,
                       (float)(is * t[1] * inv_n), (float)(is * is * sx * inv_n), accg + s0,
                       accb + s0);
    }
}

/* A group-norm backward pass over one block of channels. */
typedef struct gn_back_job {
    gn_block_pos bp;
    const float *x, *dy;
    float *dx;
    int64_t rows, groups, parts;
    const float *gamma, *mean, *invstd;
} gn_back_job;

/* Items [begin, end) are parts of the samples: each part writes its samples' dx of the
 * block and sums their dgamma/dbeta terms, in sample order, into its own partial sums. */
CT_CPU_CLONES
static void gn_backward_task(void *ctx, int64_t begin, int64_t end)
{
    const gn_back_job *j = ctx;
    int64_t sample = j->bp.spatial * j->bp.c, cb = j->bp.cb;
    double acc[2 * CT_BN_BLOCK], *accg = acc, *accb = acc + cb;
    for (int64_t p = begin; p < end; p++) {
        for (int64_t i = 0; i < 2 * cb; i++)
            acc[i] = 0.0;
        int64_t r1 = part_start(j->rows, j->parts, p + 1);
        for (int64_t r = part_start(j->rows, j->parts, p); r < r1; r++) {
            const float *x = j->x + r * sample, *dy = j->dy + r * sample;
            float *dx = j->dx ? j->dx + r * sample : NULL;
            const float *mean = j->mean + r * j->groups, *invstd = j->invstd + r * j->groups;
            if (j->bp.spatial == 1)
                gn_backward_position(&j->bp, x, dy, dx, j->gamma, mean, invstd, accg, accb);
            else
                gn_backward_sample(&j->bp, x, dy, dx, j->gamma, mean, invstd, accg, accb);
        }
        store_part(p, acc, 2 * cb);
    }
}

/* One block of channels over every sample; the block holds whole groups, or lies inside
 * one group wider than a block. */
static void gn_backward_block(gn_back_job *j, float *dgamma, float *dbeta)
{
    int64_t cb = j->bp.cb;
    double acc[2 * CT_BN_BLOCK];
    j->parts = parts_for(j->rows, 2 * j->bp.spatial * cb);
    ct_parallel_for(j->parts, 1, gn_backward_task, j);
    combine_parts(part_sums, j->parts, 2 * cb, acc);
    for (int64_t i = 0; i < cb; i++) {
        if (dgamma)
            dgamma[j->bp.c0 + i] = (float)acc[i];
        if (dbeta)
            dbeta[j->bp.c0 + i] = (float)acc[cb + i];
    }
}

void ct_cpu_groupnorm_backward(const float *x, const float *dy, float *dx, int64_t rows,
                               int64_t spatial, int64_t c, int64_t groups, const float *gamma,
                               const float *mean, const float *invstd, float *dgamma,
                               float *dbeta)
{
    if (spatial <= 0 || c <= 0 || groups <= 0)
        return;
    if (spatial == 1 && groups == 1 && c <= CT_LN_MAX) {
        ct_cpu_layernorm_backward(x, dy, dx, rows, c, gamma, mean, invstd, dgamma, dbeta);
        return;
    }
    gn_back_job j = {.bp = {.spatial = spatial, .c = c, .cg = c / groups}, .x = x, .dy = dy,
                     .dx = dx, .rows = rows, .groups = groups, .gamma = gamma, .mean = mean,
                     .invstd = invstd};
    gn_block_pos *bp = &j.bp;
    int64_t bs = bp->cg <= CT_BN_BLOCK ? gn_block(bp->cg) : CT_BN_BLOCK;
    for (bp->c0 = 0; bp->c0 < c; bp->c0 += bp->cb) {
        int64_t end = bp->c0 + bs;
        if (bp->cg > CT_BN_BLOCK && end > (bp->c0 / bp->cg + 1) * bp->cg)
            end = (bp->c0 / bp->cg + 1) * bp->cg; /* stay inside the group */
        bp->cb = (end < c ? end : c) - bp->c0;
        gn_backward_block(&j, dgamma, dbeta);
    }
}
