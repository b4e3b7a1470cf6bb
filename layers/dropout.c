/* dropout.c - Dropout: inverted dropout in training (kept values scaled by 1/(1-rate)),
 * the identity otherwise. The mask comes from the counter-based stream keyed by the
 * experiment seed, the layer's index and the step, so a resumed run draws the same masks;
 * hence no per-layer `seed` key. */
#include <math.h>
#include <stdlib.h>

#include "layer.h"
#include "rng.h"

typedef struct dropout_state {
    double rate;
} dropout_state;

static int dropout_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"rate", NULL};
    char what[CT_NAME_MAX + 80];
    snprintf(what, sizeof what, "layer '%s' (%s)", l->name, l->kind->class_name);
    if (ct_layer_check_keys(l, cfg, keys, err) || ct_cfg_require(cfg, "rate", what, err))
        return -1;
    dropout_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    if (ct_cfg_float(cfg, "rate", 0.0, -HUGE_VAL, HUGE_VAL, &s->rate, err))
        return -1;
    if (s->rate < 0.0 || s->rate >= 1.0) { /* 1 would drop everything */
        const ct_node *v = ct_map_get(cfg, "rate");
        return ct_node_err(err, v, "%s: rate must be at least 0 and below 1, got %s", what,
                           v->scalar);
    }
    return 0;
}

static int dropout_build(ct_layer *l, ct_error *err)
{
    (void)err;
    l->nparams = 0;
    l->out_shape = l->in_shape;
    return 0;
}

static int64_t dropout_scratch(const ct_layer *l, int64_t max_batch)
{
    const dropout_state *s = l->state;
    return s->rate > 0 ? max_batch * ct_shape_size(&l->in_shape) : 0;
}

static bool dropout_active(const ct_layer *l, const ct_pass *pass)
{
    const dropout_state *s = l->state;
    return pass && pass->training && s->rate > 0;
}

static void pass_through(const ct_backend *be, float *dst, const float *src, int64_t n)
{
    if (dst != src)
        be->copy(dst, src, n);
}

static void dropout_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                            ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    const dropout_state *s = l->state;
    int64_t n = ct_tensor_size(x);
    if (!dropout_active(l, pass)) {
        pass_through(l->be, y->data, x->data, n);
        return;
    }
    uint64_t key = ct_rng_key(pass->seed, CT_RNG_DROPOUT, (uint64_t)l->index,
                              (uint64_t)pass->step);
    l->be->dropout_mask(l->scratch, n, (float)s->rate, key, 0);
    l->be->mul(n, x->data, l->scratch, y->data);
}

static void dropout_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                             const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    (void)xs;
    ct_tensor *dx = dxs[0];
    (void)y;
    if (!dx)
        return;
    int64_t n = ct_tensor_size(dy);
    if (dropout_active(l, pass))
        l->be->mul(n, dy->data, l->scratch, dx->data);
    else
        pass_through(l->be, dx->data, dy->data, n);
}

static void dropout_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

const ct_layer_kind ct_layer_dropout = {
    .name = "dropout",
    .class_name = "Dropout",
    .configure = dropout_configure,
    .build = dropout_build,
    .scratch_floats = dropout_scratch,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .free_state = dropout_free,
    .masks = CT_MASK_PASSES, /* per step */
};
