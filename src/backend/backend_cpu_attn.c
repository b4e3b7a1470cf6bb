/* backend_cpu_attn.c - attention's softmax over the key positions, forward and backward,
 * causal or not (backend.h's attention_softmax). Unlike the generic softmax (whose bits the
 * MLP's and CNN's results depend on), these take exp from fastmath.h and sum in float over
 * eight lanes, so every loop vectorises; with a causal mask they touch only a row's first
 * i + 1 entries, write exact zeros past them and never read the scores there.
 *
 * The lanes are explicit, so every CT_CPU_CLONES version sums in the same order and gives
 * the same bits; threads split whole rows, so the split changes nothing either. The
 * pragma is backend_cpu_act.c's (GCC turns the selects of ct_expf into branches
 * otherwise). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-pre", "no-thread-jumps", "no-trapping-math", "no-math-errno")
#endif

#include <math.h>

#include "backend_cpu.h"
#include "fastmath.h"
#include "parallel.h"
#include "simd.h"

#define LANES 8
#define GRAIN_ROW_FLOATS 16384 /* softmax work per thread, at least */

/* The largest of x[0..n), n >= 1. */
CT_CPU_CLONES
static float row_max_lanes(const float *restrict x, int64_t n)
{
    float m[LANES];
    for (int l = 0; l < LANES; l++)
        m[l] = x[0];
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int l = 0; l < LANES; l++)
            m[l] = x[c + l] > m[l] ? x[c + l] : m[l];
    float best = m[0];
    for (int l = 1; l < LANES; l++)
        best = m[l] > best ? m[l] : best;
    for (; c < n; c++)
        best = x[c] > best ? x[c] : best;
    return best;
}

/* x[c] = e^(x[c] - m) for c < n, in place, returning their sum (eight lanes, then the
 * tail). */
CT_CPU_CLONES
static float row_exp_sum(float *restrict x, int64_t n, float m)
{
    float s[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int l = 0; l < LANES; l++) {
            float e = ct_expf(x[c + l] - m);
            x[c + l] = e;
            s[l] += e;
        }
    float sum = 0.0f;
    for (int l = 0; l < LANES; l++)
        sum += s[l];
    for (; c < n; c++) {
        float e = ct_expf(x[c] - m);
        x[c] = e;
        sum += e;
    }
    return sum;
}

CT_CPU_CLONES
static void row_scale(float *restrict y, int64_t n, float f)
{
    for (int64_t c = 0; c < n; c++)
        y[c] *= f;
}

/* sum p[c] d[c] over c < n, in lanes. */
CT_CPU_CLONES
static float row_dot(const float *restrict p, const float *restrict d, int64_t n)
{
    float s[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int l = 0; l < LANES; l++)
            s[l] += p[c + l] * d[c + l];
    float sum = 0.0f;
    for (int l = 0; l < LANES; l++)
        sum += s[l];
    for (; c < n; c++)
        sum += p[c] * d[c];
    return sum;
}

/* d[c] = p[c] (d[c] - dot) for c < n. */
CT_CPU_CLONES
static void row_softmax_grad(const float *restrict p, float *restrict d, int64_t n, float dot)
{
    for (int64_t c = 0; c < n; c++)
        d[c] = p[c] * (d[c] - dot);
}

typedef struct attn_job {
    const float *p;
    float *s;
    int64_t tq, tv;
    bool causal;
} attn_job;

/* Entries of row r (of all blocks' rows) that take part: the causal mask keeps j <= i. */
static int64_t row_len(const attn_job *j, int64_t r)
{
    int64_t i = r % j->tq;
    return j->causal && i + 1 < j->tv ? i + 1 : j->tv;
}

static void fill_zero(float *x, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        x[c] = 0.0f;
}

static void softmax_task(void *ctx, int64_t b, int64_t e)
{
    const attn_job *j = ctx;
    for (int64_t r = b; r < e; r++) {
        float *x = j->s + r * j->tv;
        int64_t n = row_len(j, r);
        float m = row_max_lanes(x, n);
        float sum = row_exp_sum(x, n, m);
        row_scale(x, n, 1.0f / sum);
        fill_zero(x + n, j->tv - n);
    }
}

static void softmax_backward_task(void *ctx, int64_t b, int64_t e)
{
    const attn_job *j = ctx;
    for (int64_t r = b; r < e; r++) {
        const float *p = j->p + r * j->tv;
        float *d = j->s + r * j->tv;
        int64_t n = row_len(j, r);
        row_softmax_grad(p, d, n, row_dot(p, d, n));
        fill_zero(d + n, j->tv - n);
    }
}

void ct_cpu_attention_softmax(float *s, int64_t blocks, int64_t tq, int64_t tv, bool causal)
{
    if (tv <= 0)
        return;
    attn_job j = {NULL, s, tq, tv, causal};
    ct_parallel_for(blocks * tq, GRAIN_ROW_FLOATS / tv + 1, softmax_task, &j);
}

void ct_cpu_attention_softmax_backward(const float *p, float *d, int64_t blocks, int64_t tq,
                                       int64_t tv, bool causal)
{
    if (tv <= 0)
        return;
    attn_job j = {p, d, tq, tv, causal};
    ct_parallel_for(blocks * tq, GRAIN_ROW_FLOATS / tv + 1, softmax_backward_task, &j);
}
