/* adadelta.c - Adadelta as Keras 3 computes it:
 *   acc_g = rho acc_g + (1 - rho) g^2
 *   delta = -sqrt(acc_d + epsilon) g / sqrt(acc_g + epsilon)
 *   acc_d = rho acc_d + (1 - rho) delta^2
 *   w += lr delta
 * Keras 3's learning_rate default is 0.001 (the paper's method has none: set it to 1.0 for
 * that). Slots: accumulated_grad, accumulated_delta_var. */
#include <math.h>

#include "optimizer.h"

enum { RHO, EPSILON };

const char *const ct_adadelta_keys[] = {"rho", "epsilon", NULL};

static int adadelta_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    if (ct_cfg_float(cfg, "rho", 0.95, 0.0, 1.0, &o->hyper[RHO], err) < 0)
        return -1;
    return ct_cfg_float(cfg, "epsilon", 1e-7, 0.0, HUGE_VAL, &o->hyper[EPSILON], err);
}

static int adadelta_state_per_param(const ct_optimizer *o)
{
    (void)o;
    return 2;
}

static const char *adadelta_state_name(const ct_optimizer *o, int slot)
{
    (void)o;
    return slot == 0 ? "accumulated_grad" : slot == 1 ? "accumulated_delta_var" : NULL;
}

static void adadelta_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    (void)t;
    u->kind = CT_UPDATE_ADADELTA;
    u->lr = lr;
    u->h[0] = o->hyper[RHO];
    u->h[1] = 1.0 - o->hyper[RHO];
    u->h[2] = o->hyper[EPSILON];
}

const ct_optimizer_kind ct_optimizer_adadelta = {
    "adadelta", "Adadelta", adadelta_configure, adadelta_state_per_param, adadelta_state_name,
    adadelta_prepare, NULL,
};
