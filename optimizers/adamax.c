/* adamax.c - Adamax as Keras 3 computes it (t starts at 1):
 *   m += (g - m)(1 - beta_1);  u = max(beta_2 u, |g|)
 *   w -= lr m / ((1 - beta_1^t)(u + epsilon))
 * Slots: momentum, norm (Keras's names). */
#include <math.h>

#include "adam.h"

const char *const ct_adamax_keys[] = {"beta_1", "beta_2", "epsilon", NULL};

static int adamax_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    /* beta_2 may be 1 (u is then the running maximum); beta_1 = 1 divides by zero */
    if (ct_adam_read_beta(o, cfg, "beta_1", 0.9, &o->hyper[CT_ADAM_BETA_1], err) < 0 ||
        ct_cfg_float(cfg, "beta_2", 0.999, 0.0, 1.0, &o->hyper[CT_ADAM_BETA_2], err) < 0)
        return -1;
    return ct_cfg_float(cfg, "epsilon", 1e-7, 0.0, HUGE_VAL, &o->hyper[CT_ADAM_EPSILON], err);
}

static int adamax_state_per_param(const ct_optimizer *o)
{
    (void)o;
    return 2;
}

static const char *adamax_state_name(const ct_optimizer *o, int slot)
{
    (void)o;
    return slot == 0 ? "momentum" : slot == 1 ? "norm" : NULL;
}

static void adamax_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    double b1 = o->hyper[CT_ADAM_BETA_1];
    u->kind = CT_UPDATE_ADAMAX;
    u->lr = lr;
    u->h[0] = 1.0 - b1;
    u->h[1] = o->hyper[CT_ADAM_BETA_2];
    u->h[2] = 1.0 - pow(b1, (double)t);
    u->h[3] = o->hyper[CT_ADAM_EPSILON];
}

const ct_optimizer_kind ct_optimizer_adamax = {
    "adamax", "Adamax", adamax_configure, adamax_state_per_param, adamax_state_name,
    adamax_prepare, NULL,
};
