/* backend_cpu_rnn.c - the LSTM cell's element-wise part in one pass per step (forward and
 * backward), instead of a dozen passes of separate ops: a step's values stay in cache and
 * the default activations (tanh, sigmoid) vectorise. Gate values are row-major, each row
 * [i | f | c | o] of `units` values, as one GEMM writes them and as the next GEMM reads
 * their gradients. Threads split the rows; each value is computed alone, so results do
 * not depend on the split. */
#include "backend_cpu.h"
#include "fastmath.h"
#include "parallel.h"
#include "simd.h"

/* Enough work per thread for a cell's few exps per value. */
#define GRAIN_CELLS 4096

typedef struct lstm_job {
    ct_act act, rec_act;
    const float *a, *y, *c0, *c1, *tc, *dh;
    float *yw, *c1w, *tcw, *h, *dc, *da;
    int64_t u;
} lstm_job;

static bool default_acts(const lstm_job *j)
{
    return j->act.kind == CT_ACT_TANH && j->rec_act.kind == CT_ACT_SIGMOID;
}

/* One row's units [0, cnt): i, f, g, o = the gates; c1 = f c0 + i g; tc = tanh(c1);
 * h = o tc. The pointers are the first unit's (a and y: gates u apart, the rest one
 * value per unit). */
CT_CPU_CLONES
static void lstm_row_fast(const float *restrict a, const float *restrict c0, float *restrict y,
                          float *restrict c1, float *restrict tc, float *restrict h, int64_t u,
                          int64_t cnt)
{
    for (int64_t k = 0; k < cnt; k++) {
        float i = ct_sigmoidf(a[k]), f = ct_sigmoidf(a[u + k]);
        float g = ct_tanhf(a[2 * u + k]), o = ct_sigmoidf(a[3 * u + k]);
        y[k] = i;
        y[u + k] = f;
        y[2 * u + k] = g;
        y[3 * u + k] = o;
        float c = f * c0[k];
        c = c + i * g;
        c1[k] = c;
        float t = ct_tanhf(c);
        tc[k] = t;
        h[k] = o * t;
    }
}

/* The same for any activations, over units [k0, k1). */
static void lstm_row_any(const lstm_job *j, int64_t r, int64_t k0, int64_t k1)
{
    int64_t u = j->u, gu = 4 * u;
    const float *a = j->a + r * gu, *c0 = j->c0 + r * u;
    float *y = j->yw + r * gu;
    for (int64_t k = k0; k < k1; k++) {
        float i = ct_cpu_act_value(j->rec_act, a[k]);
        float f = ct_cpu_act_value(j->rec_act, a[u + k]);
        float g = ct_cpu_act_value(j->act, a[2 * u + k]);
        float o = ct_cpu_act_value(j->rec_act, a[3 * u + k]);
        y[k] = i;
        y[u + k] = f;
        y[2 * u + k] = g;
        y[3 * u + k] = o;
        float c = f * c0[k];
        c = c + i * g;
        j->c1w[r * u + k] = c;
        float t = ct_cpu_act_value(j->act, c);
        j->tcw[r * u + k] = t;
        j->h[r * u + k] = o * t;
    }
}

static void lstm_task(void *ctx, int64_t b, int64_t e)
{
    const lstm_job *j = ctx;
    int64_t u = j->u, gu = 4 * u;
    for (int64_t r = b; r < e; r++) {
        if (default_acts(j))
            lstm_row_fast(j->a + r * gu, j->c0 + r * u, j->yw + r * gu, j->c1w + r * u,
                          j->tcw + r * u, j->h + r * u, u, u);
        else
            lstm_row_any(j, r, 0, u);
    }
}

void ct_cpu_lstm_cells(ct_act act, ct_act rec_act, const float *a, float *y, const float *c0,
                       float *c1, float *tc, float *h, int64_t rows, int64_t units, int64_t k0,
                       int64_t k1)
{
    lstm_job j = {.act = act, .rec_act = rec_act, .a = a, .c0 = c0, .yw = y, .c1w = c1,
                  .tcw = tc, .h = h, .u = units};
    int64_t u = units, gu = 4 * u;
    for (int64_t r = 0; r < rows; r++) {
        if (default_acts(&j))
            lstm_row_fast(a + r * gu + k0, c0 + r * u + k0, y + r * gu + k0, c1 + r * u + k0,
                          tc + r * u + k0, h + r * u + k0, u, k1 - k0);
        else
            lstm_row_any(&j, r, k0, k1);
    }
}

void ct_cpu_lstm_step(ct_act act, ct_act rec_act, const float *a, float *y, const float *c0,
                      float *c1, float *tc, float *h, int64_t rows, int64_t units)
{
    lstm_job j = {.act = act, .rec_act = rec_act, .a = a, .c0 = c0, .yw = y, .c1w = c1,
                  .tcw = tc, .h = h, .u = units};
    ct_parallel_for(rows, GRAIN_CELLS / (units > 0 ? units : 1) + 1, lstm_task, &j);
}

/* One row of the backward, units [0, cnt) (pointers at the first, gates u apart): do,
 * d tanh(c1) into dc, then di, dg, df and dc_prev. */
CT_CPU_CLONES
static void lstm_back_row_fast(const float *restrict y, const float *restrict c0,
                               const float *restrict tc, const float *restrict dh,
                               float *restrict dc, float *restrict da, int64_t u, int64_t cnt)
{
    for (int64_t k = 0; k < cnt; k++) {
        float i = y[k], f = y[u + k], g = y[2 * u + k], o = y[3 * u + k], t = tc[k];
        float d_o = dh[k] * t;
        da[3 * u + k] = d_o * (o * (1.0f - o));
        float dt = dh[k] * o;
        dt = dt * (1.0f - t * t);
        float c = dc[k] + 1.0f * dt;
        float di = c * g;
        da[k] = di * (i * (1.0f - i));
        float dg = c * i;
        da[2 * u + k] = dg * (1.0f - g * g);
        float df = c * c0[k];
        da[u + k] = df * (f * (1.0f - f));
        dc[k] = c * f;
    }
}

static void lstm_back_row_any(const lstm_job *j, int64_t r, int64_t k0, int64_t k1)
{
    int64_t u = j->u, gu = 4 * u;
    const float *a = j->a + r * gu, *y = j->y + r * gu;
    float *da = j->da + r * gu;
    for (int64_t k = k0; k < k1; k++) {
        int64_t e = r * u + k;
        float i = y[k], f = y[u + k], g = y[2 * u + k], o = y[3 * u + k], t = j->tc[e];
        float d_o = j->dh[e] * t;
        da[3 * u + k] = d_o * ct_cpu_act_deriv(j->rec_act, a[3 * u + k], o);
        float dt = j->dh[e] * o;
        dt = dt * ct_cpu_act_deriv(j->act, j->c1[e], t);
        float c = j->dc[e] + 1.0f * dt;
        da[k] = (c * g) * ct_cpu_act_deriv(j->rec_act, a[k], i);
        da[2 * u + k] = (c * i) * ct_cpu_act_deriv(j->act, a[2 * u + k], g);
        da[u + k] = (c * j->c0[e]) * ct_cpu_act_deriv(j->rec_act, a[u + k], f);
        j->dc[e] = c * f;
    }
}

static void lstm_back_task(void *ctx, int64_t b, int64_t e)
{
    const lstm_job *j = ctx;
    int64_t u = j->u, gu = 4 * u;
    for (int64_t r = b; r < e; r++) {
        if (default_acts(j))
            lstm_back_row_fast(j->y + r * gu, j->c0 + r * u, j->tc + r * u, j->dh + r * u,
                               j->dc + r * u, j->da + r * gu, u, u);
        else
            lstm_back_row_any(j, r, 0, u);
    }
}

void ct_cpu_lstm_back_cells(ct_act act, ct_act rec_act, const float *a, const float *y,
                            const float *c0, const float *c1, const float *tc, const float *dh,
                            float *dc, float *da, int64_t rows, int64_t units, int64_t k0,
                            int64_t k1)
{
    lstm_job j = {.act = act, .rec_act = rec_act, .a = a, .y = y, .c0 = c0, .c1 = c1,
                  .tc = tc, .dh = dh, .dc = dc, .da = da, .u = units};
    int64_t u = units, gu = 4 * u;
    for (int64_t r = 0; r < rows; r++) {
        if (default_acts(&j))
            lstm_back_row_fast(y + r * gu + k0, c0 + r * u + k0, tc + r * u + k0,
                               dh + r * u + k0, dc + r * u + k0, da + r * gu + k0, u, k1 - k0);
        else
            lstm_back_row_any(&j, r, k0, k1);
    }
}

void ct_cpu_lstm_step_backward(ct_act act, ct_act rec_act, const float *a, const float *y,
                               const float *c0, const float *c1, const float *tc,
                               const float *dh, float *dc, float *da, int64_t rows,
                               int64_t units)
{
    lstm_job j = {.act = act, .rec_act = rec_act, .a = a, .y = y, .c0 = c0, .c1 = c1,
                  .tc = tc, .dh = dh, .dc = dc, .da = da, .u = units};
    ct_parallel_for(rows, GRAIN_CELLS / (units > 0 ? units : 1) + 1, lstm_back_task, &j);
}
