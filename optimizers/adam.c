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
int ct_adam_read_beta(const ct_optimizer *o, ct_node *cfg, const char *key, double def,
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
    if (ct_adam_read_beta(o, cfg, "beta_1", 0.9, &o->hyper[CT_ADAM_BETA_1], err) < 0 ||
        ct_adam_read_beta(o, cfg, "beta_2", 0.999, &o->hyper[CT_ADAM_BETA_2], err) < 0 ||
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

void ct_adam_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    /* Per-step constants in double; the backend's per-element update runs in float32, as
     * Keras computes it. */
    double b1 = o->hyper[CT_ADAM_BETA_1], b2 = o->hyper[CT_ADAM_BETA_2];
    u->kind = CT_UPDATE_ADAM;
    u->lr = lr;
    u->h[0] = (float)(lr * sqrt(1.0 - pow(b2, (double)t)) / (1.0 - pow(b1, (double)t)));
    u->h[1] = (float)(1.0 - b1);
    u->h[2] = (float)(1.0 - b2);
    u->h[3] = (float)o->hyper[CT_ADAM_EPSILON];
    u->flag[0] = o->flag[CT_ADAM_AMSGRAD];
}

const ct_optimizer_kind ct_optimizer_adam = {
    "adam", "Adam", ct_adam_configure, ct_adam_state_per_param, ct_adam_state_name,
    ct_adam_prepare, NULL,
};
