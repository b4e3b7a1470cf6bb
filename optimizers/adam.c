/* adam.c - Adam as Keras 3 computes it (t starts at 1):
 *   m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2)
 *   alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
 *   w -= alpha m / (sqrt(v) + epsilon)
 * epsilon is added outside the bias correction, as Keras does. With amsgrad, v_hat =
 * max(v_hat, v) replaces v in the denominator. Slots: m, v (, v_hat). */
#include <math.h>

#include "adam.h"

const char *const ct_adam_keys[] = {"beta_1", "beta_2", "epsilon", "amsgrad", NULL};

/* A beta in [0, 1): beta_1 = 1 would divide by zero in alpha. */
static int read_beta(const ct_optimizer *o, ct_node *cfg, const char *key, double def,
                     double *out, ct_error *err)
{
    if (ct_cfg_float(cfg, key, def, 0.0, 1.0, out, err) < 0)
        return -1;
    if (*out >= 1.0)
        return ct_node_err(err, ct_map_get(cfg, key), "optimizer '%s': %s must be below 1, got %g",
                           o->kind->name, key, *out);
    return 0;
}

int ct_adam_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    if (read_beta(o, cfg, "beta_1", 0.9, &o->hyper[CT_ADAM_BETA_1], err) < 0 ||
        read_beta(o, cfg, "beta_2", 0.999, &o->hyper[CT_ADAM_BETA_2], err) < 0 ||
        ct_cfg_float(cfg, "epsilon", 1e-7, 0.0, HUGE_VAL, &o->hyper[CT_ADAM_EPSILON], err) < 0)
        return -1;
    return ct_cfg_bool(cfg, "amsgrad", false, &o->flag[CT_ADAM_AMSGRAD], err);
}

int ct_adam_state_per_param(const ct_optimizer *o)
{
    return o->flag[CT_ADAM_AMSGRAD] ? 3 : 2;
}

const char *ct_adam_state_name(const ct_optimizer *o, int slot)
{
    static const char *const names[] = {"m", "v", "v_hat"};
    return slot >= 0 && slot < ct_adam_state_per_param(o) ? names[slot] : NULL;
}

void ct_adam_step(const ct_optimizer *o, float *w, const float *g, float *state, int64_t stride,
                  int64_t n, int64_t t, float lr)
{
    double b1 = o->hyper[CT_ADAM_BETA_1], b2 = o->hyper[CT_ADAM_BETA_2];
    double eps = o->hyper[CT_ADAM_EPSILON];
    double alpha = lr * sqrt(1.0 - pow(b2, (double)t)) / (1.0 - pow(b1, (double)t));
    float *m = state, *v = state + stride, *vh = state + 2 * stride;
    bool ams = o->flag[CT_ADAM_AMSGRAD];
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i];
        double mi = m[i] + (gi - m[i]) * (1.0 - b1);
        double vi = v[i] + (gi * gi - v[i]) * (1.0 - b2);
        m[i] = (float)mi;
        v[i] = (float)vi;
        if (ams) {
            vi = fmax(vh[i], vi);
            vh[i] = (float)vi;
        }
        w[i] = (float)(w[i] - alpha * mi / (sqrt(vi) + eps));
    }
}

const ct_optimizer_kind ct_optimizer_adam = {
    "adam", "Adam", ct_adam_configure, ct_adam_state_per_param, ct_adam_state_name,
    ct_adam_step, NULL,
};
