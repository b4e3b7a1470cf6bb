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

/* The update runs in double per element (backend_cpu_train.c, cuda_train.cu). */
static void sgd_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    (void)t;
    u->kind = CT_UPDATE_SGD;
    u->lr = lr;
    u->h[0] = o->hyper[MOMENTUM];
    u->flag[0] = o->flag[NESTEROV];
}

const ct_optimizer_kind ct_optimizer_sgd = {
    "sgd", "SGD", sgd_configure, sgd_state_per_param, sgd_state_name, sgd_prepare, NULL,
};
