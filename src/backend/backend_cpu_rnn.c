/* backend_cpu_rnn.c - the LSTM cell's element-wise part in one pass per step (forward and
 * backward), instead of a dozen passes of separate ops: a step's blocks stay in cache and
 * the default activations (tanh, sigmoid) vectorise. Each element computes exactly what
 * the separate ops did, in the same order, so results are unchanged. */
#include "backend_cpu.h"
#include "fastmath.h"
#include "parallel.h"
#include "simd.h"

/* Enough work per thread for a cell's few exps per element. */
#define GRAIN_CELLS 4096

typedef struct lstm_job {
    ct_act act, rec_act;
    const float *a, *y, *c0, *c1, *tc, *dh;
    float *yw, *c1w, *tcw, *h, *dc, *da;
    int64_t nu;
} lstm_job;

static bool default_acts(const lstm_job *j)
{
    return j->act.kind == CT_ACT_TANH && j->rec_act.kind == CT_ACT_SIGMOID;
}

/* i, f, g, o = gates; c1 = f c0 + i g; tc = act(c1); h = o tc. */
CT_CPU_CLONES
static void lstm_fast(const float *restrict a, const float *restrict c0, float *restrict y,
                      float *restrict c1, float *restrict tc, float *restrict h, int64_t nu,
                      int64_t b, int64_t e)
{
    for (int64_t k = b; k < e; k++) {
        float i = ct_sigmoidf(a[k]), f = ct_sigmoidf(a[nu + k]);
        float g = ct_tanhf(a[2 * nu + k]), o = ct_sigmoidf(a[3 * nu + k]);
        y[k] = i;
        y[nu + k] = f;
        y[2 * nu + k] = g;
        y[3 * nu + k] = o;
        float c = f * c0[k];
        c = c + i * g;
        c1[k] = c;
        float t = ct_tanhf(c);
        tc[k] = t;
        h[k] = o * t;
    }
}

static void lstm_any(const lstm_job *j, int64_t b, int64_t e)
{
    int64_t nu = j->nu;
    const float *a = j->a;
    for (int64_t k = b; k < e; k++) {
        float i = ct_cpu_act_value(j->rec_act, a[k]);
        float f = ct_cpu_act_value(j->rec_act, a[nu + k]);
        float g = ct_cpu_act_value(j->act, a[2 * nu + k]);
        float o = ct_cpu_act_value(j->rec_act, a[3 * nu + k]);
        j->yw[k] = i;
        j->yw[nu + k] = f;
        j->yw[2 * nu + k] = g;
        j->yw[3 * nu + k] = o;
        float c = f * j->c0[k];
        c = c + i * g;
        j->c1w[k] = c;
        float t = ct_cpu_act_value(j->act, c);
        j->tcw[k] = t;
        j->h[k] = o * t;
    }
}

static void lstm_task(void *ctx, int64_t b, int64_t e)
{
    const lstm_job *j = ctx;
    if (default_acts(j))
        lstm_fast(j->a, j->c0, j->yw, j->c1w, j->tcw, j->h, j->nu, b, e);
    else
        lstm_any(j, b, e);
}

void ct_cpu_lstm_step(ct_act act, ct_act rec_act, const float *a, float *y, const float *c0,
                      float *c1, float *tc, float *h, int64_t nu)
{
    lstm_job j = {.act = act, .rec_act = rec_act, .a = a, .c0 = c0, .yw = y, .c1w = c1,
                  .tcw = tc, .h = h, .nu = nu};
    ct_parallel_for(nu, GRAIN_CELLS, lstm_task, &j);
}

/* The backward, per element: do, d act(c1) into dc, then di, dg, df and dc_prev. */
CT_CPU_CLONES
static void lstm_back_fast(const float *restrict y, const float *restrict c0,
                           const float *restrict tc, const float *restrict dh,
                           float *restrict dc, float *restrict da, int64_t nu, int64_t b,
                           int64_t e)
{
    for (int64_t k = b; k < e; k++) {
        float i = y[k], f = y[nu + k], g = y[2 * nu + k], o = y[3 * nu + k], t = tc[k];
        float d_o = dh[k] * t;
        da[3 * nu + k] = d_o * (o * (1.0f - o));
        float dt = dh[k] * o;
        dt = dt * (1.0f - t * t);
        float c = dc[k] + 1.0f * dt;
        float di = c * g;
        da[k] = di * (i * (1.0f - i));
        float dg = c * i;
        da[2 * nu + k] = dg * (1.0f - g * g);
        float df = c * c0[k];
        da[nu + k] = df * (f * (1.0f - f));
        dc[k] = c * f;
    }
}

static void lstm_back_any(const lstm_job *j, int64_t b, int64_t e)
{
    int64_t nu = j->nu;
    const float *a = j->a, *y = j->y;
    for (int64_t k = b; k < e; k++) {
        float i = y[k], f = y[nu + k], g = y[2 * nu + k], o = y[3 * nu + k], t = j->tc[k];
        float d_o = j->dh[k] * t;
        j->da[3 * nu + k] = d_o * ct_cpu_act_deriv(j->rec_act, a[3 * nu + k], o);
        float dt = j->dh[k] * o;
        dt = dt * ct_cpu_act_deriv(j->act, j->c1[k], t);
        float c = j->dc[k] + 1.0f * dt;
        j->da[k] = (c * g) * ct_cpu_act_deriv(j->rec_act, a[k], i);
        j->da[2 * nu + k] = (c * i) * ct_cpu_act_deriv(j->act, a[2 * nu + k], g);
        j->da[nu + k] = (c * j->c0[k]) * ct_cpu_act_deriv(j->rec_act, a[nu + k], f);
        j->dc[k] = c * f;
    }
}

static void lstm_back_task(void *ctx, int64_t b, int64_t e)
{
    const lstm_job *j = ctx;
    if (default_acts(j))
        lstm_back_fast(j->y, j->c0, j->tc, j->dh, j->dc, j->da, j->nu, b, e);
    else
        lstm_back_any(j, b, e);
}

void ct_cpu_lstm_step_backward(ct_act act, ct_act rec_act, const float *a, const float *y,
                               const float *c0, const float *c1, const float *tc,
                               const float *dh, float *dc, float *da, int64_t nu)
{
    lstm_job j = {.act = act, .rec_act = rec_act, .a = a, .y = y, .c0 = c0, .c1 = c1,
                  .tc = tc, .dh = dh, .dc = dc, .da = da, .nu = nu};
    ct_parallel_for(nu, GRAIN_CELLS, lstm_back_task, &j);
}
