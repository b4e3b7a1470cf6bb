/* masking.c - Masking (Keras): over inputs (timesteps, features), a step whose features
 * all equal mask_value (default 0) is padding. The output is the input with those steps
 * set to zero, and it carries the mask (0 at padding) to the layers after it. */
#include <math.h>
#include <stdlib.h>

#include "layer.h"

typedef struct masking_state {
    double value;
} masking_state;

static int masking_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"mask_value", NULL};
    masking_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    return ct_layer_check_keys(l, cfg, keys, err) ||
           ct_cfg_float(cfg, "mask_value", 0.0, -HUGE_VAL, HUGE_VAL, &s->value, err) ? -1 : 0;
}

static int masking_build(ct_layer *l, ct_error *err)
{
    char buf[256];
    if (l->in_shape.ndim != 2)
        return ct_layer_err(err, l, "expects an input (timesteps, features), got %s",
                            ct_shape_format(&l->in_shape, buf, sizeof buf));
    l->nparams = 0;
    l->out_shape = l->in_shape;
    return 0;
}

static int masking_mask_out(const ct_layer *l, const bool *in_masked)
{
    (void)l;
    (void)in_masked;
    return CT_MASK_WRITES;
}

static void masking_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                            int nx, ct_tensor *y)
{
    (void)pass;
    (void)nx;
    const masking_state *s = l->state;
    const ct_tensor *x = xs[0];
    int64_t steps = x->rows * l->in_shape.dim[0], feat = l->in_shape.dim[1];
    l->be->step_mask(x->data, steps, feat, (float)s->value, y->mask);
    l->be->scale_channels(x->data, y->mask, y->data, steps, feat, 1);
}

static void masking_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                             int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass;
    (void)nx;
    if (!dxs[0])
        return;
    int64_t steps = xs[0]->rows * l->in_shape.dim[0], feat = l->in_shape.dim[1];
    l->be->scale_channels(dy->data, y->mask, dxs[0]->data, steps, feat, 1);
}

static void masking_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

const ct_layer_kind ct_layer_masking = {
    .name = "masking",
    .class_name = "Masking",
    .configure = masking_configure,
    .build = masking_build,
    .forward = masking_forward,
    .backward = masking_backward,
    .free_state = masking_free,
    .masks = CT_MASK_BY_KIND,
    .mask_out = masking_mask_out,
};
