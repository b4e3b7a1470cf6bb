/* rmsprop.c - RMSprop as Keras 3 computes it:
 *   velocity = rho velocity + (1 - rho) g^2
 *   centered: average_gradient = rho ag + (1 - rho) g;  denominator = velocity - ag^2 + eps
 *   else:     denominator = velocity + eps
 *   increment = lr g / sqrt(denominator)
 *   momentum > 0: m = momentum m + increment;  w -= m.   Otherwise w -= increment.
 * Keras 3 adds epsilon inside the square root (keras-semantics.md writes sqrt(v) + eps;
 * Keras 3's source is followed here). Slots: velocity (, average_gradient when centered)
 * (, momentum when momentum > 0). */
#include <math.h>

#include "optimizer.h"

enum { RHO, MOMENTUM, EPSILON };
enum { CENTERED };

const char *const ct_rmsprop_keys[] = {"rho", "momentum", "epsilon", "centered", NULL};

static int rmsprop_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    if (ct_cfg_float(cfg, "rho", 0.9, 0.0, 1.0, &o->hyper[RHO], err) < 0 ||
        ct_cfg_float(cfg, "momentum", 0.0, 0.0, 1.0, &o->hyper[MOMENTUM], err) < 0 ||
        ct_cfg_float(cfg, "epsilon", 1e-7, 0.0, HUGE_VAL, &o->hyper[EPSILON], err) < 0)
        return -1;
    return ct_cfg_bool(cfg, "centered", false, &o->flag[CENTERED], err);
}

static int rmsprop_state_per_param(const ct_optimizer *o)
{
    return 1 + o->flag[CENTERED] + (o->hyper[MOMENTUM] > 0.0);
}

static const char *rmsprop_state_name(const ct_optimizer *o, int slot)
{
    if (slot == 0)
        return "velocity";
    if (slot == 1 && o->flag[CENTERED])
        return "average_gradient";
    if (slot == rmsprop_state_per_param(o) - 1 && o->hyper[MOMENTUM] > 0.0)
        return "momentum";
    return NULL;
}

static void rmsprop_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    (void)t;
    u->kind = CT_UPDATE_RMSPROP;
    u->lr = lr;
    u->h[0] = o->hyper[RHO];
    u->h[1] = o->hyper[MOMENTUM];
    u->h[2] = o->hyper[EPSILON];
    u->flag[0] = o->flag[CENTERED];
}

const ct_optimizer_kind ct_optimizer_rmsprop = {
    "rmsprop", "RMSprop", rmsprop_configure, rmsprop_state_per_param, rmsprop_state_name,
    rmsprop_prepare, NULL,
};
