/* sgd.c - SGD as Keras 3 computes it:
 *   momentum 0:  w -= lr g
 *   otherwise:   v = momentum v - lr g;  w += v   (nesterov: w += momentum v - lr g)
 * The "momentum" slot exists only when momentum != 0. */
#include "optimizer.h"

enum { MOMENTUM };
enum { NESTEROV };

const char *const ct_sgd_keys[] = {"momentum", "nesterov", NULL};

static int sgd_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    if (ct_cfg_float(cfg, "momentum", 0.0, 0.0, 1.0, &o->hyper[MOMENTUM], err) < 0)
        return -1;
    return ct_cfg_bool(cfg, "nesterov", false, &o->flag[NESTEROV], err);
}

static int sgd_state_per_param(const ct_optimizer *o)
{
    return o->hyper[MOMENTUM] != 0.0;
}

static const char *sgd_state_name(const ct_optimizer *o, int slot)
{
    return slot == 0 && sgd_state_per_param(o) ? "momentum" : NULL;
}

static void sgd_step(const ct_optimizer *o, float *w, const float *g, float *state,
                     int64_t stride, int64_t n, int64_t t, float lr)
{
    (void)stride;
    (void)t;
    double mom = o->hyper[MOMENTUM];
    if (mom == 0.0) {
        for (int64_t i = 0; i < n; i++)
            w[i] = (float)(w[i] - (double)lr * g[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = mom * state[i] - (double)lr * g[i];
        state[i] = (float)v;
        w[i] = (float)(w[i] + (o->flag[NESTEROV] ? mom * v - (double)lr * g[i] : v));
    }
}

const ct_optimizer_kind ct_optimizer_sgd = {
    "sgd", "SGD", sgd_configure, sgd_state_per_param, sgd_state_name, sgd_step, NULL,
};
