/* nadam.c - Nadam as Keras 3 computes it (t starts at 1):
 *   u_t = beta_1 (1 - 0.5 * 0.96^t);  P_t = u_1 u_2 ... u_t
 *   m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2)
 *   m_hat = u_{t+1} m / (1 - P_t u_{t+1}) + (1 - u_t) g / (1 - P_t)
 *   v_hat = v / (1 - beta_2^t)
 *   w -= m_hat lr / (sqrt(v_hat) + epsilon)
 * Keras keeps P_t as a float32 variable multiplied once a step; here it is recomputed from
 * t in double each step, so it is no state of its own and a resumed run has it exactly.
 * Slots: momentum, velocity. */
#include <math.h>

#include "adam.h"

const char *const ct_nadam_keys[] = {"beta_1", "beta_2", "epsilon", NULL};

static int nadam_configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    if (ct_adam_read_beta(o, cfg, "beta_1", 0.9, &o->hyper[CT_ADAM_BETA_1], err) < 0 ||
        ct_adam_read_beta(o, cfg, "beta_2", 0.999, &o->hyper[CT_ADAM_BETA_2], err) < 0)
        return -1;
    return ct_cfg_float(cfg, "epsilon", 1e-7, 0.0, HUGE_VAL, &o->hyper[CT_ADAM_EPSILON], err);
}

static int nadam_state_per_param(const ct_optimizer *o)
{
    (void)o;
    return 2;
}

static const char *nadam_state_name(const ct_optimizer *o, int slot)
{
    (void)o;
    return slot == 0 ? "momentum" : slot == 1 ? "velocity" : NULL;
}

static double nadam_u(double b1, int64_t t)
{
    return b1 * (1.0 - 0.5 * pow(0.96, (double)t));
}

/* P_t. Past k = 1100, 0.96^k < 2^-64 and every u_k is beta_1 in double, so the tail is
 * one power: the cost stays bounded however long the run. */
static double nadam_product(double b1, int64_t t)
{
    int64_t head = t < 1100 ? t : 1100;
    double p = 1.0;
    for (int64_t k = 1; k <= head; k++)
        p *= nadam_u(b1, k);
    return t > head ? p * pow(b1, (double)(t - head)) : p;
}

static void nadam_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u)
{
    double b1 = o->hyper[CT_ADAM_BETA_1], b2 = o->hyper[CT_ADAM_BETA_2];
    double u_t = nadam_u(b1, t), u_next = nadam_u(b1, t + 1);
    double p_t = nadam_product(b1, t), p_next = p_t * u_next;
    u->kind = CT_UPDATE_NADAM;
    u->lr = lr;
    u->h[0] = u_next / (1.0 - p_next);
    u->h[1] = (1.0 - u_t) / (1.0 - p_t);
    u->h[2] = 1.0 - pow(b2, (double)t);
    u->h[3] = 1.0 - b1;
    u->h[4] = 1.0 - b2;
    u->h[5] = o->hyper[CT_ADAM_EPSILON];
}

const ct_optimizer_kind ct_optimizer_nadam = {
    "nadam", "Nadam", nadam_configure, nadam_state_per_param, nadam_state_name, nadam_prepare,
    NULL,
};
