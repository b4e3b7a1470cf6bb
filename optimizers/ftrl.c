/* ftrl.c - FTRL as Keras 3 computes it, with p = -learning_rate_power (0.5 by default):
 *   l2_reg = l2 + beta / (2 lr)
 *   grad = g + 2 l2_shrinkage w;  new_acc = acc + g^2
 *   linear += grad - (new_acc^p - acc^p) / lr * w
 *   quadratic = new_acc^p / lr + 2 l2_reg
 *   w = (clip(linear, -l1, l1) - linear) / quadratic;  acc = new_acc
 * (l1, l2, l2_shrinkage: the *_regularization_strength keys.) Slots: accumulator (starting
 * at initial_accumulator_value), linear (at 0). */
#include <math.h>

#include "optimizer.h"

enum { POWER, INITIAL, L1, L2, L2_SHRINKAGE, BETA };

const char *const ct_ftrl_keys[] = {"learning_rate_power", "initial_accumulator_value",
                                    "l1_regularization_strength", "l2_regularization_strength",
                                    "l2_shrinkage_regularization_strength", "beta", NULL};

static int ftrl_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    double *h = o->hyper;
    if (ct_cfg_float(cfg, "learning_rate_power", -0.5, -HUGE_VAL, 0.0, &h[POWER], err) < 0 ||
        ct_cfg_float(cfg, "initial_accumulator_value", 0.1, 0.0, HUGE_VAL, &h[INITIAL], err) < 0 ||
        ct_cfg_float(cfg, "l1_regularization_strength", 0.0, 0.0, HUGE_VAL, &h[L1], err) < 0 ||
        ct_cfg_float(cfg, "l2_regularization_strength", 0.0, 0.0, HUGE_VAL, &h[L2], err) < 0 ||
        ct_cfg_float(cfg, "l2_shrinkage_regularization_strength", 0.0, 0.0, HUGE_VAL,
                     &h[L2_SHRINKAGE], err) < 0)
        return -1;
    return ct_cfg_float(cfg, "beta", 0.0, -HUGE_VAL, HUGE_VAL, &h[BETA], err);
}

static int ftrl_state_per_param(const ct_optimizer *o)
{
    (void)o;
    return 2;
}

static const char *ftrl_state_name(const ct_optimizer *o, int slot)
{
    (void)o;
    return slot == 0 ? "accumulator" : slot == 1 ? "linear" : NULL;
}

static void ftrl_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    (void)t;
    const double *h = o->hyper;
    u->kind = CT_UPDATE_FTRL;
    u->lr = lr;
    u->h[0] = -h[POWER];
    u->h[1] = h[L1];
    u->h[2] = 2.0 * (h[L2] + h[BETA] / (2.0 * lr));
    u->h[3] = 2.0 * h[L2_SHRINKAGE];
}

static float ftrl_initial_state(const ct_optimizer *o, int slot)
{
    return slot == 0 ? (float)o->hyper[INITIAL] : 0.0f;
}

const ct_optimizer_kind ct_optimizer_ftrl = {
    "ftrl", "Ftrl", ftrl_configure, ftrl_state_per_param, ftrl_state_name, ftrl_prepare,
    ftrl_initial_state,
};
