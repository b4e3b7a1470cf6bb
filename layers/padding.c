/* padding.c - ZeroPadding1D/2D, Cropping1D/2D and UpSampling1D/2D, channels_last.
 * Padding and cropping are each other's adjoint (one backend op run both ways), and so
 * are nearest upsampling and block sums. A 1-D sample (steps, C) is handled as a 2-D
 * sample of height 1. */
#include <stdlib.h>
#include <string.h>

#include "layer.h"

typedef enum { OP_PAD, OP_CROP, OP_UPSAMPLE } reshape_op;

typedef struct pad_state {
    reshape_op op;
    int rank;                         /* spatial axes: 1 or 2 */
    int64_t top, bottom, left, right; /* padding or cropping */
    int64_t sh, sw;                   /* upsampling factors */
    int64_t h, w, c;                  /* the smaller of input and output (set in build) */
} pad_state;

static pad_state *state_of(ct_layer *l, reshape_op op, int rank, ct_error *err)
{
    pad_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    l->state = s;
    s->op = op;
    s->rank = rank;
    s->sh = s->sw = 1;
    return s;
}

/* ---- config helpers -------------------------------------------------------------- */

static int form_error(const ct_layer *l, const ct_node *v, const char *key, int rank,
                      ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (rank == 1)
        return ct_node_err(err, v, "%s: %s must be an integer or a list of 2 integers "
                           "[left, right]", what, key);
    return ct_node_err(err, v, "%s: %s must be an integer, a list of 2 integers "
                       "[height, width] or a list of 2 pairs [[top, bottom], [left, right]]",
                       what, key);
}

/* One axis of a 2-D amount: an integer (both sides) or a pair [before, after]. */
static int read_axis(const ct_layer *l, const ct_node *v, const ct_node *item, const char *key,
                     int64_t *before, int64_t *after, ct_error *err)
{
    if (item->type == CT_NODE_SCALAR) {
        if (ct_layer_int_entry(l, item, key, 0, before, err))
            return -1;
        *after = *before;
        return 0;
    }
    if (item->type != CT_NODE_SEQ || item->len != 2)
        return form_error(l, v, key, 2, err);
    item->items[0]->used = item->items[1]->used = true;
    return ct_layer_int_entry(l, item->items[0], key, 0, before, err) ||
                   ct_layer_int_entry(l, item->items[1], key, 0, after, err)
               ? -1
               : 0;
}

/* Padding or cropping amounts from cfg[key] into s (top, bottom, left, right). 2-D: an
 * integer, [height, width] or [[top, bottom], [left, right]]; 1-D: an integer or
 * [left, right]. Absent: the default def (one integer, or def_n of them). */
static int read_amounts(const ct_layer *l, ct_node *cfg, const char *key, const int64_t *def,
                        int def_n, pad_state *s, ct_error *err)
{
    ct_node *v = ct_map_get(cfg, key);
    if (ct_node_is_null(v)) {
        if (ct_layer_put_ints(cfg, key, def, def_n, err))
            return -1;
        v = ct_map_get(cfg, key);
    }
    s->top = s->bottom = 0;
    if (v->type == CT_NODE_SCALAR) {
        if (ct_layer_int_entry(l, v, key, 0, &s->left, err))
            return -1;
        s->right = s->left;
        if (s->rank == 2)
            s->top = s->bottom = s->left;
        return 0;
    }
    if (v->type != CT_NODE_SEQ || v->len != 2)
        return form_error(l, v, key, s->rank, err);
    if (s->rank == 2)
        return read_axis(l, v, v->items[0], key, &s->top, &s->bottom, err) ||
                       read_axis(l, v, v->items[1], key, &s->left, &s->right, err)
                   ? -1
                   : 0;
    if (v->items[0]->type != CT_NODE_SCALAR || v->items[1]->type != CT_NODE_SCALAR)
        return form_error(l, v, key, 1, err);
    v->items[0]->used = v->items[1]->used = true;
    return ct_layer_int_entry(l, v->items[0], key, 0, &s->left, err) ||
                   ct_layer_int_entry(l, v->items[1], key, 0, &s->right, err)
               ? -1
               : 0;
}

/* cfg[key]: an integer (every axis) or a list of rank integers, each at least 1;
 * absent: 2 on every axis, as Keras. */
static int read_factors(const ct_layer *l, ct_node *cfg, const char *key, pad_state *s,
                        ct_error *err)
{
    static const int64_t two[2] = {2, 2};
    int64_t f[2] = {1, 1};
    if (ct_layer_read_ints(l, cfg, key, s->rank, 1, two, f, err))
        return -1;
    s->sh = s->rank == 2 ? f[0] : 1;
    s->sw = s->rank == 2 ? f[1] : f[0];
    return 0;
}

/* ---- configure ------------------------------------------------------------------- */

static int pad_configure(ct_layer *l, ct_node *cfg, int rank, ct_error *err)
{
    static const char *const keys[] = {"padding", "data_format", NULL};
    static const int64_t one = 1;
    pad_state *s = state_of(l, OP_PAD, rank, err);
    if (!s || ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    return read_amounts(l, cfg, "padding", &one, 1, s, err) || ct_layer_data_format(l, cfg, err)
               ? -1
               : 0;
}

static int zero_padding1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return pad_configure(l, cfg, 1, err);
}

static int zero_padding2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return pad_configure(l, cfg, 2, err);
}

static int cropping1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"cropping", NULL};
    static const int64_t def[2] = {1, 1}; /* Keras: Cropping1D((1, 1)) */
    pad_state *s = state_of(l, OP_CROP, 1, err);
    if (!s || ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    return read_amounts(l, cfg, "cropping", def, 2, s, err);
}

static int cropping2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"cropping", "data_format", NULL};
    static const int64_t zero = 0;
    pad_state *s = state_of(l, OP_CROP, 2, err);
    if (!s || ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    return read_amounts(l, cfg, "cropping", &zero, 1, s, err) || ct_layer_data_format(l, cfg, err)
               ? -1
               : 0;
}

static int up_sampling1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"size", NULL};
    pad_state *s = state_of(l, OP_UPSAMPLE, 1, err);
    if (!s || ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    return read_factors(l, cfg, "size", s, err);
}

static int up_sampling2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"size", "data_format", "interpolation", NULL};
    pad_state *s = state_of(l, OP_UPSAMPLE, 2, err);
    const char *interp;
    if (!s || ct_layer_check_keys(l, cfg, keys, err) || read_factors(l, cfg, "size", s, err) ||
        ct_layer_data_format(l, cfg, err) ||
        ct_cfg_string(cfg, "interpolation", "nearest", &interp, err))
        return -1;
    if (!strcmp(interp, "nearest"))
        return 0;
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    return ct_node_err(err, ct_map_get(cfg, "interpolation"),
                       "%s: interpolation '%s' is not supported; only 'nearest' is supported",
                       what, interp);
}

/* ---- build, forward, backward ---------------------------------------------------- */

static int crop_error(const ct_layer *l, const pad_state *s, ct_error *err)
{
    char shape[160];
    ct_shape_format(&l->in_shape, shape, sizeof shape);
    if (s->rank == 1)
        return ct_layer_err(err, l, "cropping (%lld, %lld) leaves nothing of the input %s",
                            (long long)s->left, (long long)s->right, shape);
    return ct_layer_err(err, l,
                        "cropping ((%lld, %lld), (%lld, %lld)) leaves nothing of the input %s",
                        (long long)s->top, (long long)s->bottom, (long long)s->left,
                        (long long)s->right, shape);
}

static int reshape_build(ct_layer *l, ct_error *err)
{
    pad_state *s = l->state;
    const ct_shape *in = &l->in_shape;
    l->nparams = 0;
    if (in->ndim != s->rank + 1) {
        char shape[160];
        ct_shape_format(in, shape, sizeof shape);
        return ct_layer_err(err, l, "expected input of rank %d (batch, %s, channels), got %s",
                            s->rank + 2, s->rank == 2 ? "height, width" : "steps", shape);
    }
    int64_t h = s->rank == 2 ? in->dim[0] : 1, w = in->dim[s->rank - 1];
    int64_t out[3] = {h, w, in->dim[s->rank]};
    s->h = h, s->w = w, s->c = out[2];
    if (s->op == OP_PAD) {
        if (__builtin_add_overflow(h, s->top + s->bottom, &out[0]) ||
            __builtin_add_overflow(w, s->left + s->right, &out[1]))
            return ct_layer_err(err, l, "the padded size does not fit in 64-bit sizes");
    } else if (s->op == OP_CROP) {
        s->h = out[0] = h - s->top - s->bottom, s->w = out[1] = w - s->left - s->right;
        if (out[0] < 1 || out[1] < 1)
            return crop_error(l, s, err);
    } else if (__builtin_mul_overflow(h, s->sh, &out[0]) ||
               __builtin_mul_overflow(w, s->sw, &out[1])) {
        return ct_layer_err(err, l, "the upsampled size does not fit in 64-bit sizes");
    }
    l->out_shape = s->rank == 2 ? ct_shape_make(3, out) : ct_shape_make(2, out + 1);
    return 0;
}

/* Runs the layer's op on (src, dst), or its adjoint when back is set. */
static void run_op(const ct_layer *l, const float *src, float *dst, int64_t rows, bool back)
{
    const pad_state *s = l->state;
    if (s->op == OP_UPSAMPLE)
        l->be->upsample2d(src, dst, rows, s->h, s->w, s->c, s->sh, s->sw, back);
    else
        l->be->pad2d(src, dst, rows, s->h, s->w, s->c, s->top, s->bottom, s->left, s->right,
                     (s->op == OP_CROP) != back);
}

static void reshape_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                            ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    run_op(l, x->data, y->data, x->rows, false);
}

static void reshape_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                             const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass;
    (void)y;
    if (dx)
        run_op(l, dy->data, dx->data, x->rows, true);
}

static void reshape_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

#define RESHAPE_KIND(var, cname, kname, conf)                                                 \
    const ct_layer_kind var = {                                                              \
        .name = cname,                                                                       \
        .class_name = kname,                                                                 \
        .configure = conf,                                                                   \
        .build = reshape_build,                                                              \
        .forward = reshape_forward,                                                          \
        .backward = reshape_backward,                                                        \
        .free_state = reshape_free,                                                          \
    }

RESHAPE_KIND(ct_layer_zero_padding1d, "zero_padding1d", "ZeroPadding1D",
             zero_padding1d_configure);
RESHAPE_KIND(ct_layer_zero_padding2d, "zero_padding2d", "ZeroPadding2D",
             zero_padding2d_configure);
RESHAPE_KIND(ct_layer_cropping1d, "cropping1d", "Cropping1D", cropping1d_configure);
RESHAPE_KIND(ct_layer_cropping2d, "cropping2d", "Cropping2D", cropping2d_configure);
RESHAPE_KIND(ct_layer_up_sampling1d, "up_sampling1d", "UpSampling1D", up_sampling1d_configure);
RESHAPE_KIND(ct_layer_up_sampling2d, "up_sampling2d", "UpSampling2D", up_sampling2d_configure);
