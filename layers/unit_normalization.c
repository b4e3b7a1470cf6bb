/* unit_normalization.c - UnitNormalization: each vector along one axis scaled to unit L2
 * norm, as Keras's ops.normalize(x, axis, order=2, epsilon=1e-12) does:
 * y = x * min(1/||x||, 1e12), that is x / max(||x||, 1e-12). No weights. */
#include <math.h>
#include <stdlib.h>

#include "layer.h"

/* Keras's epsilon bounds the norm; the backend's bounds the sum of squares. */
#define UNIT_NORM_EPS 1e-24f

typedef struct unit_norm_state {
    int64_t axis;                /* as configured, counting the batch axis */
    int64_t outer, n, inner;     /* a sample viewed as [outer][n][inner], n along the axis */
} unit_norm_state;

static int unit_norm_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"axis", NULL};
    if (ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    unit_norm_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    return ct_cfg_int(cfg, "axis", -1, INT64_MIN, INT64_MAX, &s->axis, err);
}

/* The axis as an index into the sample shape (which lacks the batch axis), or -1 when it
 * names the batch axis or lies outside the input. */
static int sample_axis(int64_t axis, int ndim)
{
    int64_t a = axis < 0 ? axis + ndim + 1 : axis; /* Keras's axes count the batch */
    return a >= 1 && a <= ndim ? (int)(a - 1) : -1;
}

static int unit_norm_build(ct_layer *l, ct_error *err)
{
    unit_norm_state *s = l->state;
    const ct_shape *in = &l->in_shape;
    l->nparams = 0;
    int a = sample_axis(s->axis, in->ndim);
    if (a < 0) {
        char shape[160], what[CT_NAME_MAX + 80];
        ct_shape_format(in, shape, sizeof shape);
        snprintf(what, sizeof what, "layer '%s' (%s)", l->name, l->kind->class_name);
        const ct_node *v = l->cfg ? ct_map_get(l->cfg, "axis") : NULL;
        const char *fmt = "%s: axis %lld is the batch axis or outside the input %s";
        return v ? ct_node_err(err, v, fmt, what, (long long)s->axis, shape)
                 : ct_layer_err(err, l, "axis %lld is the batch axis or outside the input %s",
                                (long long)s->axis, shape);
    }
    s->outer = s->inner = 1;
    for (int i = 0; i < in->ndim; i++) {
        if (i < a)
            s->outer *= in->dim[i];
        else if (i > a)
            s->inner *= in->dim[i];
    }
    s->n = in->dim[a];
    l->out_shape = *in;
    return 0;
}

/* The inverse norms, one per vector, kept for the backward. */
static int64_t unit_norm_scratch(const ct_layer *l, int64_t max_batch)
{
    const unit_norm_state *s = l->state;
    return max_batch * s->outer * s->inner;
}

static void unit_norm_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                              int nx, ct_tensor *y)
{
    (void)pass;
    (void)nx;
    const unit_norm_state *s = l->state;
    const ct_tensor *x = xs[0];
    l->be->l2_normalize(x->data, y->data, l->scratch, x->rows * s->outer, s->n, s->inner,
                        UNIT_NORM_EPS);
}

static void unit_norm_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                               int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass;
    (void)nx;
    const unit_norm_state *s = l->state;
    const ct_tensor *x = xs[0];
    if (dxs[0])
        l->be->l2_normalize_backward(x->data, y->data, l->scratch, dy->data, dxs[0]->data,
                                     x->rows * s->outer, s->n, s->inner, UNIT_NORM_EPS);
}

static void unit_norm_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

const ct_layer_kind ct_layer_unit_normalization = {
    .name = "unit_normalization",
    .class_name = "UnitNormalization",
    .configure = unit_norm_configure,
    .build = unit_norm_build,
    .scratch_floats = unit_norm_scratch,
    .forward = unit_norm_forward,
    .backward = unit_norm_backward,
    .free_state = unit_norm_free,
};
