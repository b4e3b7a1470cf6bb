/* backend_cpu_layernorm.c - layer normalization on the CPU: rows of c values (c at most
 * CT_LN_MAX), each normalized on its own. This is the groupnorm op with one position and
 * one group, which ct_cpu_groupnorm_forward/_backward hand over here. For rows as short as
 * a transformer's (64 values) the general path (backend_cpu_norm.c) spent most of its time
 * waiting on each row's chains of dependent additions. Here:
 *
 * - the forward sums two rows at once, each exactly as the general path sums it (double
 *   lanes of x - x[0]), and finishes each row as it does: the same bits, about twice as fast;
 * - the backward's three row sums are float lanes of values already centred (x - mean),
 *   and dgamma and dbeta are summed in float over blocks of LN_BLOCK rows, each block's sums
 *   then added in double, over parts of the rows fixed by the shape alone (as in
 *   backend_cpu_norm.c), so the results do not depend on the thread count.
 *
 * Every loop runs over fixed lanes, so each CT_CPU_CLONES version gives the same bits.
 * Buffers are the caller's; the part sums live in a static block (these ops run from one
 * thread at a time, as the worker pool requires). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize")
#endif

#include <math.h>

#include "backend_cpu.h"
#include "parallel.h"
#include "simd.h"

#if defined(__GNUC__)
#define LN_INLINE static inline __attribute__((always_inline))
#else
#define LN_INLINE static inline
#endif

#define LN_LANES 8
#define LN_BLOCK 16     /* rows whose dgamma/dbeta terms are summed in float */
#define LN_PARTS 16     /* parts of the rows for the dgamma/dbeta sums, at most... */
#define LN_PART_MIN 16384 /* ...each of at least this many values */
#define LN_GRAIN 32768  /* values per thread, at least */

static double part_sums[LN_PARTS * 2 * CT_LN_MAX];

typedef struct ln_job {
    const float *x, *dy;
    float *y, *dx;
    int64_t rows, c, parts;
    const float *gamma, *beta;
    float eps;
    float *mean, *invstd;                 /* the forward's outputs */
    const float *mean_in, *invstd_in;     /* the backward's inputs */
} ln_job;

/* Two rows' sums of d = x - shift and d^2 in double lanes, interleaved: one row's sums
 * form chains of dependent additions that leave most of the core idle (a row of 64 values
 * is over before they are done); two rows fill it. Lane k of a row sums its values k,
 * k + LN_LANES, ..., then the tail's value k: the general path's order (run_sums). */
LN_INLINE void row_pair_sums(const float *restrict x0, const float *restrict x1, int64_t n,
                             double t[2][2])
{
    double a0[LN_LANES] = {0}, b0[LN_LANES] = {0}, a1[LN_LANES] = {0}, b1[LN_LANES] = {0};
    double s0 = (double)x0[0], s1 = (double)x1[0];
    int64_t i = 0;
    for (; i + LN_LANES <= n; i += LN_LANES)
        for (int k = 0; k < LN_LANES; k++) {
            double d0 = (double)x0[i + k] - s0, d1 = (double)x1[i + k] - s1;
            a0[k] += d0;
            b0[k] += d0 * d0;
            a1[k] += d1;
            b1[k] += d1 * d1;
        }
    for (int k = 0; i + k < n; k++) {
        double d0 = (double)x0[i + k] - s0, d1 = (double)x1[i + k] - s1;
        a0[k] += d0;
        b0[k] += d0 * d0;
        a1[k] += d1;
        b1[k] += d1 * d1;
    }
    double *lanes[4] = {a0, b0, a1, b1};
    for (int q = 0; q < 4; q++) {
        double sum = 0.0;
        for (int k = 0; k < LN_LANES; k++)
            sum += lanes[q][k];
        t[q / 2][q % 2] = sum;
    }
}

/* Row r from its sums: mean, invstd and y, as the general path computes them. */
LN_INLINE void ln_finish_row(const ln_job *j, int64_t r, const double t[2])
{
    int64_t c = j->c;
    const float *restrict x = j->x + r * c;
    float *restrict y = j->y + r * c;
    const float *gamma = j->gamma, *beta = j->beta;
    double m_n = (double)c, dm = t[0] / m_n, v = t[1] / m_n - dm * dm;
    if (v < 0.0)
        v = 0.0;
    double m = (double)x[0] + dm, is = 1.0 / sqrt(v + (double)j->eps);
    j->mean[r] = (float)m;
    j->invstd[r] = (float)is;
    float hi = (float)m, lo = (float)(m - (double)hi), isf = (float)is;
    if (gamma && beta)
        for (int64_t k = 0; k < c; k++)
            y[k] = ((x[k] - hi) - lo) * isf * gamma[k] + beta[k];
    else if (gamma)
        for (int64_t k = 0; k < c; k++)
            y[k] = ((x[k] - hi) - lo) * isf * gamma[k];
    else if (beta)
        for (int64_t k = 0; k < c; k++)
            y[k] = ((x[k] - hi) - lo) * isf + beta[k];
    else
        for (int64_t k = 0; k < c; k++)
            y[k] = ((x[k] - hi) - lo) * isf;
}

CT_CPU_CLONES
static void ln_forward_task(void *ctx, int64_t begin, int64_t end)
{
    const ln_job *j = ctx;
    int64_t c = j->c;
    for (int64_t r = begin; r < end; r += 2) {
        int64_t r1 = r + 1 < end ? r + 1 : r; /* an odd row out pairs with itself */
        double t[2][2];
        row_pair_sums(j->x + r * c, j->x + r1 * c, c, t);
        ln_finish_row(j, r, t[0]);
        if (r1 != r)
            ln_finish_row(j, r1, t[1]);
    }
}

void ct_cpu_layernorm_forward(const float *x, float *y, int64_t rows, int64_t c,
                              const float *gamma, const float *beta, float eps, float *mean,
                              float *invstd)
{
    ln_job j = {.x = x, .y = y, .rows = rows, .c = c, .gamma = gamma, .beta = beta, .eps = eps,
                .mean = mean, .invstd = invstd};
    ct_parallel_for(rows, LN_GRAIN / c + 1, ln_forward_task, &j);
}

/* One row's sums: of d = x - m, of g = dy gamma, and of g d, in float lanes. */
LN_INLINE void grad_sums(const float *restrict x, const float *restrict dy,
                         const float *restrict gamma, int64_t n, float m, double t[3])
{
    float a[LN_LANES] = {0}, b[LN_LANES] = {0}, e[LN_LANES] = {0};
    int64_t i = 0;
    for (; i + LN_LANES <= n; i += LN_LANES)
        for (int k = 0; k < LN_LANES; k++) {
            float d = x[i + k] - m, g = gamma ? dy[i + k] * gamma[i + k] : dy[i + k];
            a[k] += d;
            b[k] += g;
            e[k] += g * d;
        }
    double t0 = 0.0, t1 = 0.0, t2 = 0.0;
    for (int k = 0; k < LN_LANES; k++)
        t0 += (double)a[k], t1 += (double)b[k], t2 += (double)e[k];
    for (; i < n; i++) {
        float d = x[i] - m, g = gamma ? dy[i] * gamma[i] : dy[i];
        t0 += (double)d, t1 += (double)g, t2 += (double)(g * d);
    }
    t[0] = t0, t[1] = t1, t[2] = t2;
}

/* Rows [r0, r1) of one part: dx, and the part's dgamma/dbeta terms into acc (2 c). */
LN_INLINE void ln_backward_rows(const ln_job *j, int64_t r0, int64_t r1, double *acc)
{
    int64_t c = j->c;
    const float *gamma = j->gamma;
    float fg[CT_LN_MAX], fb[CT_LN_MAX];
    for (int64_t b0 = r0; b0 < r1; b0 += LN_BLOCK) {
        int64_t b1 = b0 + LN_BLOCK < r1 ? b0 + LN_BLOCK : r1;
        for (int64_t k = 0; k < c; k++)
            fg[k] = fb[k] = 0.0f;
        for (int64_t r = b0; r < b1; r++) {
            const float *restrict x = j->x + r * c, *restrict dy = j->dy + r * c;
            float m = j->mean_in[r], isf = j->invstd_in[r];
            double t[3], is = (double)isf, inv_n = 1.0 / (double)c;
            grad_sums(x, dy, gamma, c, m, t);
            double delta = t[0] * inv_n, sx = is * (t[2] - delta * t[1]);
            float dl = (float)delta, bb = (float)(is * t[1] * inv_n);
            float e = (float)(is * is * sx * inv_n);
            for (int64_t k = 0; k < c; k++) {
                fg[k] += dy[k] * (((x[k] - m) - dl) * isf);
                fb[k] += dy[k];
            }
            if (!j->dx)
                continue;
            float *restrict dx = j->dx + r * c;
            if (gamma)
                for (int64_t k = 0; k < c; k++)
                    dx[k] = isf * gamma[k] * dy[k] - bb - ((x[k] - m) - dl) * e;
            else
                for (int64_t k = 0; k < c; k++)
                    dx[k] = isf * dy[k] - bb - ((x[k] - m) - dl) * e;
        }
        for (int64_t k = 0; k < c; k++) {
            acc[k] += (double)fg[k];
            acc[c + k] += (double)fb[k];
        }
    }
}

CT_CPU_CLONES
static void ln_backward_task(void *ctx, int64_t begin, int64_t end)
{
    const ln_job *j = ctx;
    int64_t c = j->c;
    double acc[2 * CT_LN_MAX];
    for (int64_t p = begin; p < end; p++) {
        for (int64_t k = 0; k < 2 * c; k++)
            acc[k] = 0.0;
        ln_backward_rows(j, j->rows * p / j->parts, j->rows * (p + 1) / j->parts, acc);
        for (int64_t k = 0; k < 2 * c; k++)
            part_sums[p * 2 * c + k] = acc[k];
    }
}

void ct_cpu_layernorm_backward(const float *x, const float *dy, float *dx, int64_t rows,
                               int64_t c, const float *gamma, const float *mean,
                               const float *invstd, float *dgamma, float *dbeta)
{
    if (rows <= 0)
        return;
    ln_job j = {.x = x, .dy = dy, .dx = dx, .rows = rows, .c = c, .gamma = gamma,
                .mean_in = mean, .invstd_in = invstd};
    int64_t parts = rows / (LN_PART_MIN / (2 * c) + 1);
    j.parts = parts < 1 ? 1 : parts > LN_PARTS ? LN_PARTS : parts;
    ct_parallel_for(j.parts, 1, ln_backward_task, &j);
    for (int64_t k = 0; k < c; k++) { /* the parts in order */
        double g = 0.0, b = 0.0;
        for (int64_t p = 0; p < j.parts; p++) {
            g += part_sums[p * 2 * c + k];
            b += part_sums[p * 2 * c + c + k];
        }
        if (dgamma)
            dgamma[k] = (float)g;
        if (dbeta)
            dbeta[k] = (float)b;
    }
}
