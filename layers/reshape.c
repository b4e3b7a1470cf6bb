/* reshape.c - Flatten and Reshape. Row-major data does not move, so both are views: the
 * planner points the output at the input buffer. forward/backward only copy when handed
 * distinct buffers. */
#include <stdlib.h>
#include <string.h>

#include "layer.h"

typedef struct reshape_state {
    ct_shape target;  /* may hold one -1, resolved in build */
} reshape_state;

static void what_of(const ct_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "layer '%s' (%s)", l->name, l->kind->class_name);
}

static void view_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                         ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    if (y->data != x->data)
        l->be->copy(y->data, x->data, ct_tensor_size(x));
}

static void view_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    (void)xs;
    ct_tensor *dx = dxs[0];
    (void)pass;
    (void)y;
    if (dx && dx->data != dy->data)
        l->be->copy(dx->data, dy->data, ct_tensor_size(dy));
}

/* Flatten */

static int flatten_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"data_format", NULL};
    const char *fmt;
    if (ct_layer_check_keys(l, cfg, keys, err) ||
        ct_cfg_string(cfg, "data_format", "channels_last", &fmt, err))
        return -1;
    if (strcmp(fmt, "channels_last") != 0) {
        char what[CT_NAME_MAX + 80];
        what_of(l, what, sizeof what);
        return ct_node_err(err, ct_map_get(cfg, "data_format"),
                           "%s: data_format '%s' is not supported; only channels_last is",
                           what, fmt);
    }
    return 0;
}

static int flatten_build(ct_layer *l, ct_error *err)
{
    (void)err;
    l->nparams = 0;
    int64_t n = ct_shape_size(&l->in_shape);
    l->out_shape = ct_shape_make(1, &n);
    return 0;
}

const ct_layer_kind ct_layer_flatten = {
    .name = "flatten",
    .class_name = "Flatten",
    .configure = flatten_configure,
    .build = flatten_build,
    .forward = view_forward,
    .backward = view_backward,
    .is_view = true,
};

/* Reshape */

static int reshape_entry(const ct_layer *l, const ct_node *n, bool *seen_infer, int64_t *out,
                         ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    if (ct_node_int(n, out, err))
        return -1;
    if (*out == -1 && !*seen_infer) {
        *seen_infer = true;
        return 0;
    }
    if (*out == -1)
        return ct_node_err(err, n, "%s: only one entry of target_shape may be -1", what);
    if (*out < 1 || *out > INT32_MAX)
        return ct_node_err(err, n, "%s: target_shape entries must be positive (or one -1), "
                           "got %lld", what, (long long)*out);
    return 0;
}

static int reshape_read(const ct_layer *l, ct_node *cfg, ct_shape *target, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    if (ct_cfg_require(cfg, "target_shape", what, err))
        return -1;
    const ct_node *seq = ct_map_get(cfg, "target_shape");
    if (seq->type != CT_NODE_SEQ || seq->len < 1 || seq->len > CT_MAX_DIMS)
        return ct_node_err(err, seq, "%s: target_shape must be a list of 1 to %d integers, "
                           "such as [7, 7, 16]", what, CT_MAX_DIMS);
    memset(target, 0, sizeof *target);
    target->ndim = (int)seq->len;
    bool seen_infer = false;
    for (size_t i = 0; i < seq->len; i++) {
        seq->items[i]->used = true;
        if (reshape_entry(l, seq->items[i], &seen_infer, &target->dim[i], err))
            return -1;
    }
    return 0;
}

static int reshape_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"target_shape", NULL};
    if (ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    reshape_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    return reshape_read(l, cfg, &s->target, err);
}

/* known: the product of the fixed entries when one entry is -1, else 0. */
static int reshape_mismatch(const ct_layer *l, const ct_shape *out, int64_t known,
                            ct_error *err)
{
    char a[256], b[256];
    int64_t have = ct_shape_size(&l->in_shape);
    ct_shape_format(&l->in_shape, a, sizeof a);
    ct_shape_format(out, b, sizeof b);
    if (known)
        return ct_layer_err(err, l, "cannot reshape %s (%lld values) to %s: %lld is not a "
                            "multiple of %lld", a, (long long)have, b, (long long)have,
                            (long long)known);
    return ct_layer_err(err, l, "cannot reshape %s (%lld values) to %s (%lld values)", a,
                        (long long)have, b, (long long)ct_shape_size(out));
}

static int reshape_build(ct_layer *l, ct_error *err)
{
    const reshape_state *s = l->state;
    ct_shape out = s->target;
    int64_t have = ct_shape_size(&l->in_shape), known = 1;
    int infer = -1;
    l->nparams = 0;
    for (int i = 0; i < out.ndim; i++) {
        if (out.dim[i] == -1)
            infer = i;
        else
            known *= out.dim[i];
    }
    if (infer >= 0) {
        if (have % known != 0)
            return reshape_mismatch(l, &out, known, err);
        out.dim[infer] = have / known;
    }
    if (ct_shape_size(&out) != have)
        return reshape_mismatch(l, &out, 0, err);
    l->out_shape = out;
    return 0;
}

static void reshape_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

const ct_layer_kind ct_layer_reshape = {
    .name = "reshape",
    .class_name = "Reshape",
    .configure = reshape_configure,
    .build = reshape_build,
    .forward = view_forward,
    .backward = view_backward,
    .free_state = reshape_free,
    .is_view = true,
};
