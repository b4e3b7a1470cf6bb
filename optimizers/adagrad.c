/* adagrad.c - Adagrad as Keras 3 computes it:
 *   accumulator += g^2;  w -= lr g / sqrt(accumulator + epsilon)
 * The accumulator starts at initial_accumulator_value. Keras 3 adds epsilon inside the
 * square root (keras-semantics.md writes sqrt(a) + eps; Keras 3's source is followed). */
#include <math.h>

#include "optimizer.h"

enum { INITIAL, EPSILON };

const char *const ct_adagrad_keys[] = {"initial_accumulator_value", "epsilon", NULL};

static int adagrad_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    if (ct_cfg_float(cfg, "initial_accumulator_value", 0.1, 0.0, HUGE_VAL, &o->hyper[INITIAL],
                     err) < 0)
        return -1;
    return ct_cfg_float(cfg, "epsilon", 1e-7, 0.0, HUGE_VAL, &o->hyper[EPSILON], err);
}

static int adagrad_state_per_param(const ct_optimizer *o)
{
    (void)o;
    return 1;
}

static const char *adagrad_state_name(const ct_optimizer *o, int slot)
{
    (void)o;
    return slot == 0 ? "accumulator" : NULL;
}

static void adagrad_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    (void)t;
    u->kind = CT_UPDATE_ADAGRAD;
    u->lr = lr;
    u->h[0] = o->hyper[EPSILON];
}

static float adagrad_initial_state(const ct_optimizer *o, int slot)
{
    (void)slot;
    return (float)o->hyper[INITIAL];
}

const ct_optimizer_kind ct_optimizer_adagrad = {
    "adagrad", "Adagrad", adagrad_configure, adagrad_state_per_param, adagrad_state_name,
    adagrad_prepare, adagrad_initial_state,
};
