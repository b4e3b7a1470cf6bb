/* backend_cpu_optim.c - the CPU loops of the optimizers added after the first four
 * (nadam, adamax, adadelta, lion, ftrl) and of the weights' moving average (use_ema).
 * backend_cpu_train.c's update dispatches here. Each works in float32 element by element,
 * as Keras 3 does; optimizers/<name>.c states the formula and what h[] holds (see also
 * ct_update in backend.h). Element-wise, so any split of the block gives the same bits. */
#include <math.h>

#include "backend_cpu.h"

static void nadam(const ct_update *u, float *restrict w, const float *restrict g,
                  float *restrict state, int64_t stride, int64_t n)
{
    const float cm = (float)u->h[0], cg = (float)u->h[1], bc2 = (float)u->h[2];
    const float c1 = (float)u->h[3], c2 = (float)u->h[4], eps = (float)u->h[5], lr = u->lr;
    float *restrict m = state, *restrict v = state + stride;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = m[i] + (gi - m[i]) * c1;
        float vi = v[i] + (gi * gi - v[i]) * c2;
        m[i] = mi;
        v[i] = vi;
        float mhat = cm * mi + cg * gi;
        w[i] -= mhat * lr / (sqrtf(vi / bc2) + eps);
    }
}

static void adamax(const ct_update *u, float *restrict w, const float *restrict g,
                   float *restrict state, int64_t stride, int64_t n)
{
    const float c1 = (float)u->h[0], b2 = (float)u->h[1], bc1 = (float)u->h[2];
    const float eps = (float)u->h[3], lr = u->lr;
    float *restrict m = state, *restrict norm = state + stride;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = m[i] + (gi - m[i]) * c1;
        float ui = fmaxf(b2 * norm[i], fabsf(gi));
        m[i] = mi;
        norm[i] = ui;
        w[i] -= lr * mi / (bc1 * (ui + eps));
    }
}

static void adadelta(const ct_update *u, float *restrict w, const float *restrict g,
                     float *restrict state, int64_t stride, int64_t n)
{
    const float rho = (float)u->h[0], c = (float)u->h[1], eps = (float)u->h[2], lr = u->lr;
    float *restrict ag = state, *restrict ad = state + stride;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float a = rho * ag[i] + c * (gi * gi);
        float delta = -(sqrtf(ad[i] + eps) * gi / sqrtf(a + eps));
        ag[i] = a;
        ad[i] = rho * ad[i] + c * (delta * delta);
        w[i] += lr * delta;
    }
}

/* sign as Keras's: 0 at 0, NaN stays NaN */
static inline float sign_of(float x)
{
    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);
}

static void lion(const ct_update *u, float *restrict w, const float *restrict g,
                 float *restrict m, int64_t n)
{
    const float b1 = (float)u->h[0], c1 = (float)u->h[1], b2 = (float)u->h[2];
    const float c2 = (float)u->h[3], lr = u->lr;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        w[i] -= lr * sign_of(m[i] * b1 + gi * c1);
        m[i] = m[i] * b2 + gi * c2;
    }
}

/* x^p for FTRL: the square root exactly for Keras's default p = 0.5; otherwise pow in
 * double, rounded once, so that the GPU's result has the same bits. */
static inline float ftrl_pow(float x, double p)
{
    return p == 0.5 ? sqrtf(x) : (float)pow((double)x, p);
}

static void ftrl(const ct_update *u, float *restrict w, const float *restrict g,
                 float *restrict state, int64_t stride, int64_t n)
{
    const double p = u->h[0];
    const float l1 = (float)u->h[1], q2 = (float)u->h[2], s2 = (float)u->h[3], lr = u->lr;
    float *restrict acc = state, *restrict lin = state + stride;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], wi = w[i];
        float grad = gi + s2 * wi;
        float na = acc[i] + gi * gi;
        float pn = ftrl_pow(na, p), po = ftrl_pow(acc[i], p);
        float li = lin[i] + (grad - (pn - po) / lr * wi);
        float quad = pn / lr + q2;
        float clipped = li > l1 ? l1 : (li < -l1 ? -l1 : li);
        lin[i] = li;
        acc[i] = na;
        w[i] = (clipped - li) / quad;
    }
}

void ct_cpu_update_more(const ct_update *u, float *w, const float *g, float *state,
                        int64_t stride, int64_t n)
{
    switch (u->kind) {
    case CT_UPDATE_NADAM: nadam(u, w, g, state, stride, n); break;
    case CT_UPDATE_ADAMAX: adamax(u, w, g, state, stride, n); break;
    case CT_UPDATE_ADADELTA: adadelta(u, w, g, state, stride, n); break;
    case CT_UPDATE_LION: lion(u, w, g, state, n); break;
    case CT_UPDATE_FTRL: ftrl(u, w, g, state, stride, n); break;
    default: break; /* the first four run in backend_cpu_train.c */
    }
}

void ct_cpu_ema(const ct_update *u, float *restrict w, float *restrict avg, int64_t n)
{
    const float m = u->ema_momentum, c = 1.0f - u->ema_momentum;
    for (int64_t i = 0; i < n; i++) {
        float a = m * avg[i] + c * w[i];
        avg[i] = a;
        if (u->ema_overwrite)
            w[i] = a;
    }
}
