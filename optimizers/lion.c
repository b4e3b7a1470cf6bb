/* lion.c - Lion as Keras 3 computes it:
 *   w -= lr sign(beta_1 m + (1 - beta_1) g)
 *   m = beta_2 m + (1 - beta_2) g
 * beta_1 must lie in (0, 1], as Keras checks (0 would make it sign SGD). Slot: momentum. */
#include <math.h>

#include "optimizer.h"

enum { BETA_1, BETA_2 };

const char *const ct_lion_keys[] = {"beta_1", "beta_2", NULL};

static int lion_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    if (ct_cfg_float(cfg, "beta_1", 0.9, 0.0, 1.0, &o->hyper[BETA_1], err) < 0)
        return -1;
    if (o->hyper[BETA_1] <= 0.0)
        return ct_node_err(err, ct_map_get(cfg, "beta_1"), "optimizer 'lion': beta_1 must be "
                           "above 0 (otherwise Lion is sign SGD), got %g", o->hyper[BETA_1]);
    return ct_cfg_float(cfg, "beta_2", 0.99, 0.0, 1.0, &o->hyper[BETA_2], err);
}

static int lion_state_per_param(const ct_optimizer *o)
{
    (void)o;
    return 1;
}

static const char *lion_state_name(const ct_optimizer *o, int slot)
{
    (void)o;
    return slot == 0 ? "momentum" : NULL;
}

static void lion_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    (void)t;
    u->kind = CT_UPDATE_LION;
    u->lr = lr;
    u->h[0] = o->hyper[BETA_1];
    u->h[1] = 1.0 - o->hyper[BETA_1];
    u->h[2] = o->hyper[BETA_2];
    u->h[3] = 1.0 - o->hyper[BETA_2];
}

const ct_optimizer_kind ct_optimizer_lion = {
    "lion", "Lion", lion_configure, lion_state_per_param, lion_state_name, lion_prepare, NULL,
};
