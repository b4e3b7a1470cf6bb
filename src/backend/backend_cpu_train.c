/* backend_cpu_train.c - the CPU kernels of the training step's ops: regularizer penalty
 * and gradient, gradient clipping and each optimizer's element-wise update. Each
 * optimizer's file in optimizers/ states its formula and fills a ct_update; the loops
 * here apply it. */
#include <math.h>

#include "backend_cpu.h"
#include "parallel.h"
#include "simd.h"

void ct_cpu_regularize(const float *w, float *g, int64_t n, double l1, double l2, double weight,
                       double *penalty)
{
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        float x = w[i];
        s1 += fabsf(x);
        s2 += (double)x * x;
        if (g)
            g[i] += (float)(l1 * ((x > 0) - (x < 0)) + 2 * l2 * x);
    }
    *penalty += weight * (l1 * s1 + l2 * s2);
}

void ct_cpu_clip_value(float *x, int64_t n, float c)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] > c ? c : (x[i] < -c ? -c : x[i]);
}

void ct_cpu_clip_norm(float *x, int64_t n, double c)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    double norm = sqrt(s);
    if (norm <= c)
        return;
    float f = (float)(c / norm);
    for (int64_t i = 0; i < n; i++)
        x[i] *= f;
}

/* ---- optimizer updates: element i of a slice, state slot k at state[k * stride + i] ---- */

static void decay(float *restrict w, int64_t n, float f)
{
    for (int64_t i = 0; i < n; i++)
        w[i] -= w[i] * f;
}

static void sgd(const ct_update *u, float *restrict w, const float *restrict g,
                float *restrict state, int64_t n)
{
    double mom = u->h[0], lr = u->lr;
    if (mom == 0.0) {
        for (int64_t i = 0; i < n; i++)
            w[i] = (float)(w[i] - lr * g[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = mom * state[i] - lr * g[i];
        state[i] = (float)v;
        w[i] = (float)(w[i] + (u->flag[0] ? mom * v - lr * g[i] : v));
    }
}

/* Adam in float32 as Keras computes it, in loops the compiler vectorises. */
CT_CPU_CLONES
static void adam(const ct_update *u, float *restrict w, const float *restrict g,
                 float *restrict state, int64_t stride, int64_t n)
{
    const float alpha = (float)u->h[0], c1 = (float)u->h[1], c2 = (float)u->h[2];
    const float eps = (float)u->h[3];
    float *restrict m = state, *restrict v = state + stride, *restrict vh = state + 2 * stride;
    if (!u->flag[0]) {
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i];
            float mi = m[i] + (gi - m[i]) * c1;
            float vi = v[i] + (gi * gi - v[i]) * c2;
            m[i] = mi;
            v[i] = vi;
            w[i] -= alpha * mi / (sqrtf(vi) + eps);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = m[i] + (gi - m[i]) * c1;
        float vi = v[i] + (gi * gi - v[i]) * c2;
        m[i] = mi;
        v[i] = vi;
        float vmax = fmaxf(vh[i], vi);
        vh[i] = vmax;
        w[i] -= alpha * mi / (sqrtf(vmax) + eps);
    }
}

static void rmsprop(const ct_update *u, float *restrict w, const float *restrict g,
                    float *restrict state, int64_t stride, int64_t n)
{
    double rho = u->h[0], mom = u->h[1], eps = u->h[2], lr = u->lr;
    bool centered = u->flag[0];
    float *vel = state, *ag = state + stride, *m = state + (centered ? 2 : 1) * stride;
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i];
        double v = rho * vel[i] + (1.0 - rho) * gi * gi;
        vel[i] = (float)v;
        double den = v + eps;
        if (centered) {
            double a = rho * ag[i] + (1.0 - rho) * gi;
            ag[i] = (float)a;
            den = v - a * a + eps;
        }
        double inc = lr * gi / sqrt(den);
        if (mom > 0.0) {
            inc = mom * m[i] + inc;
            m[i] = (float)inc;
        }
        w[i] = (float)(w[i] - inc);
    }
}

static void adagrad(const ct_update *u, float *restrict w, const float *restrict g,
                    float *restrict state, int64_t n)
{
    double eps = u->h[0], lr = u->lr;
    for (int64_t i = 0; i < n; i++) {
        double a = (double)state[i] + (double)g[i] * g[i];
        state[i] = (float)a;
        w[i] = (float)(w[i] - lr * g[i] / sqrt(a + eps));
    }
}

typedef struct update_job {
    const ct_update *u;
    float *w, *state;
    const float *g;
    int64_t n;
} update_job;

static void update_task(void *ctx, int64_t begin, int64_t end)
{
    const update_job *j = ctx;
    const ct_update *u = j->u;
    float *w = j->w + begin, *st = j->state ? j->state + begin : NULL;
    const float *g = j->g + begin;
    int64_t n = end - begin;
    if (u->decay != 0.0f)
        decay(w, n, u->decay);
    switch (u->kind) {
    case CT_UPDATE_SGD: sgd(u, w, g, st, n); break;
    case CT_UPDATE_ADAM: adam(u, w, g, st, j->n, n); break;
    case CT_UPDATE_RMSPROP: rmsprop(u, w, g, st, j->n, n); break;
    case CT_UPDATE_ADAGRAD: adagrad(u, w, g, st, n); break;
    default: ct_cpu_update_more(u, w, g, st, j->n, n); break;
    }
    if (u->ema)
        ct_cpu_ema(u, w, st + (int64_t)u->ema_slot * j->n, n);
}

void ct_cpu_update(const ct_update *u, float *w, const float *g, float *state, int64_t n)
{
    /* Each thread steps its own slice; element i's slots stay at k * n + i. */
    update_job j = {u, w, state, g, n};
    ct_parallel_for(n, 16384, update_task, &j);
}
