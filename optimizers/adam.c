/* adam.c - Adam as Keras 3 computes it (t starts at 1):
 *   m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2)
 *   alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
 *   w -= alpha m / (sqrt(v) + epsilon)
 * epsilon is added outside the bias correction, as Keras does. With amsgrad, v_hat =
 * max(v_hat, v) replaces v in the denominator. Slots: m, v (, v_hat). */
#include <math.h>

#include "adam.h"
#include "simd.h"

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

CT_CPU_CLONES
void ct_adam_step(const ct_optimizer *o, float *w, const float *g, float *state, int64_t stride,
                  int64_t n, int64_t t, float lr)
{
    /* Per-step constants in double; the per-element update in float32, as Keras computes
     * it, in loops the compiler vectorises. */
    double b1 = o->hyper[CT_ADAM_BETA_1], b2 = o->hyper[CT_ADAM_BETA_2];
    const float alpha = (float)(lr * sqrt(1.0 - pow(b2, (double)t)) / (1.0 - pow(b1, (double)t)));
    const float c1 = (float)(1.0 - b1), c2 = (float)(1.0 - b2);
    const float eps = (float)o->hyper[CT_ADAM_EPSILON];
    float *restrict m = state, *restrict v = state + stride, *restrict vh = state + 2 * stride;
    float *restrict wr = w;
    const float *restrict gr = g;
    if (!o->flag[CT_ADAM_AMSGRAD]) {
        for (int64_t i = 0; i < n; i++) {
            float gi = gr[i];
            float mi = m[i] + (gi - m[i]) * c1;
            float vi = v[i] + (gi * gi - v[i]) * c2;
            m[i] = mi;
            v[i] = vi;
            wr[i] -= alpha * mi / (sqrtf(vi) + eps);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float gi = gr[i];
        float mi = m[i] + (gi - m[i]) * c1;
        float vi = v[i] + (gi * gi - v[i]) * c2;
        m[i] = mi;
        v[i] = vi;
        float vmax = fmaxf(vh[i], vi);
        vh[i] = vmax;
        wr[i] -= alpha * mi / (sqrtf(vmax) + eps);
    }
}

const ct_optimizer_kind ct_optimizer_adam = {
    "adam", "Adam", ct_adam_configure, ct_adam_state_per_param, ct_adam_state_name,
    ct_adam_step, NULL,
};
