/* pooling.c - MaxPooling1D/2D/3D, AveragePooling1D/2D/3D and the global pools (1-D, 2-D
 * and 3-D), channels_last. A 1-D sample (steps, C) is pooled as a 2-D sample of height 1,
 * so one window geometry and one pair of backend ops serve the 1-D and 2-D kinds. A 3-D
 * pool is a 2-D pool over (height, width) of each depth slice, then a 1-D pool over depth
 * whose channels are the pooled slice's height' * width' * C values: the max and the mean
 * over a box are the max and the mean of per-axis ones (with 'same' padding too, an
 * average's count being the product of per-axis counts), so the same ops serve it. */
#include <stdlib.h>
#include <string.h>

#include "layer.h"

typedef struct pool_state {
    ct_pool op;
    int rank;            /* spatial axes: 1, 2 or 3 */
    bool same;           /* padding 'same' (else 'valid') */
    bool keepdims;       /* global pools */
    int64_t size[2];     /* pool size (h, w); 1-D keeps its size in [1] and 1 in [0] */
    int64_t stride[2];
    ct_window win;       /* filled in build; 3-D: the (height, width) pool of each slice */
    int64_t size_d, stride_d; /* 3-D: the depth axis */
    ct_window win_d;     /* 3-D: the depth pool, slices as steps */
} pool_state;

static pool_state *state_of(ct_layer *l, ct_error *err)
{
    pool_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    l->state = s;
    return s;
}

/* ---- windowed pools -------------------------------------------------------------- */

static int window_configure(ct_layer *l, ct_node *cfg, ct_pool op, int rank, ct_error *err)
{
    static const char *const keys[] = {"pool_size", "strides", "padding", "data_format", NULL};
    static const char *const paddings[] = {"valid", "same", NULL};
    pool_state *s = state_of(l, err);
    if (!s || ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    s->op = op;
    s->rank = rank;
    int64_t two[3] = {2, 2, 2}, size[3], stride[3];
    int pad;
    /* Sizes and strides are at least 1; strides default to the pool size, as Keras. */
    if (ct_layer_read_ints(l, cfg, "pool_size", rank, 1, two, size, err) ||
        ct_layer_read_ints(l, cfg, "strides", rank, 1, size, stride, err) ||
        ct_cfg_enum(cfg, "padding", "valid", paddings, &pad, err) ||
        ct_layer_data_format(l, cfg, err))
        return -1;
    s->same = pad == 1;
    if (rank == 3) { /* depth apart; (height, width) as in 2-D */
        s->size_d = size[0], s->stride_d = stride[0];
        memmove(size, size + 1, 2 * sizeof *size);
        memmove(stride, stride + 1, 2 * sizeof *stride);
        rank = 2;
    }
    /* 1-D: height 1, so the single axis lands in [1]. */
    s->size[0] = rank == 2 ? size[0] : 1;
    s->size[1] = rank == 2 ? size[1] : size[0];
    s->stride[0] = rank == 2 ? stride[0] : 1;
    s->stride[1] = rank == 2 ? stride[1] : stride[0];
    return 0;
}

static int rank_error(const ct_layer *l, int rank, ct_error *err)
{
    char shape[160];
    ct_shape_format(&l->in_shape, shape, sizeof shape);
    static const char *const axes[] = {"steps", "height, width", "depth, height, width"};
    return ct_layer_err(err, l, "expected input of rank %d (batch, %s, channels), got %s",
                        rank + 2, axes[rank - 1], shape);
}

/* Output length of one axis and the padding before it; -1 when a valid window is larger
 * than the input. */
static int64_t axis_out(int64_t in, int64_t k, int64_t stride, bool same, int64_t *pad_before)
{
    *pad_before = 0;
    if (!same)
        return in >= k ? (in - k) / stride + 1 : -1;
    int64_t out = (in + stride - 1) / stride;
    int64_t total = (out - 1) * stride + k - in;
    *pad_before = total > 0 ? total / 2 : 0;
    return out;
}

static int fit_error(const ct_layer *l, const pool_state *s, ct_error *err)
{
    char shape[160], size[64];
    ct_shape_format(&l->in_shape, shape, sizeof shape);
    if (s->rank == 3)
        snprintf(size, sizeof size, "a %lldx%lldx%lld pool", (long long)s->size_d,
                 (long long)s->size[0], (long long)s->size[1]);
    else if (s->rank == 2)
        snprintf(size, sizeof size, "a %lldx%lld pool", (long long)s->size[0],
                 (long long)s->size[1]);
    else
        snprintf(size, sizeof size, "a pool of size %lld", (long long)s->size[1]);
    return ct_layer_err(err, l, "%s with padding 'valid' does not fit the input %s", size, shape);
}

/* 3-D: the depth pool over the (height, width) pool's output, and the output shape. */
static int depth_build(ct_layer *l, ct_error *err)
{
    pool_state *s = l->state;
    const ct_window *w = &s->win;
    ct_window *d = &s->win_d;
    memset(d, 0, sizeof *d);
    d->in_h = 1, d->in_w = l->in_shape.dim[0], d->in_c = w->out_h * w->out_w * w->in_c;
    d->k_h = 1, d->k_w = s->size_d;
    d->stride_h = 1, d->stride_w = s->stride_d;
    d->dil_h = d->dil_w = 1;
    d->out_h = 1;
    d->out_w = axis_out(d->in_w, d->k_w, d->stride_w, s->same, &d->pad_left);
    if (d->out_w < 1)
        return fit_error(l, s, err);
    int64_t dims[4] = {d->out_w, w->out_h, w->out_w, w->in_c};
    l->out_shape = ct_shape_make(4, dims);
    return 0;
}

static int window_build(ct_layer *l, ct_error *err)
{
    pool_state *s = l->state;
    const ct_shape *in = &l->in_shape;
    l->nparams = 0;
    if (in->ndim != s->rank + 1)
        return rank_error(l, s->rank, err);
    ct_window *w = &s->win;
    memset(w, 0, sizeof *w);
    w->in_h = s->rank >= 2 ? in->dim[s->rank - 2] : 1;
    w->in_w = in->dim[s->rank - 1];
    w->in_c = in->dim[s->rank];
    w->k_h = s->size[0], w->k_w = s->size[1];
    w->stride_h = s->stride[0], w->stride_w = s->stride[1];
    w->dil_h = w->dil_w = 1;
    w->out_h = axis_out(w->in_h, w->k_h, w->stride_h, s->same, &w->pad_top);
    w->out_w = axis_out(w->in_w, w->k_w, w->stride_w, s->same, &w->pad_left);
    if (w->out_h < 1 || w->out_w < 1)
        return fit_error(l, s, err);
    if (s->rank == 3)
        return depth_build(l, err);
    int64_t dims[3] = {w->out_h, w->out_w, w->in_c};
    l->out_shape = s->rank == 2 ? ct_shape_make(3, dims) : ct_shape_make(2, dims + 1);
    return 0;
}

/* 3-D: the (height, width) pool's output for the backward, then room for its gradient. */
static int64_t slices_floats(const ct_layer *l, int64_t rows)
{
    const pool_state *s = l->state;
    return rows * s->win_d.in_w * s->win_d.in_c;
}

static int64_t window_scratch(const ct_layer *l, int64_t max_batch)
{
    const pool_state *s = l->state;
    return s->rank == 3 ? 2 * slices_floats(l, max_batch) : 0;
}

static void window_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                           ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    const pool_state *s = l->state;
    if (s->rank != 3) {
        l->be->pool_forward(s->op, &s->win, x->data, y->data, x->rows);
        return;
    }
    float *t = l->scratch;
    l->be->pool_forward(s->op, &s->win, x->data, t, x->rows * s->win_d.in_w);
    l->be->pool_forward(s->op, &s->win_d, t, y->data, x->rows);
}

static void window_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                            const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass;
    const pool_state *s = l->state;
    if (!dx)
        return;
    if (s->rank != 3) {
        l->be->pool_backward(s->op, &s->win, x->data, y->data, dy->data, dx->data, x->rows);
        return;
    }
    float *t = l->scratch, *dt = t + slices_floats(l, x->rows);
    l->be->pool_backward(s->op, &s->win_d, t, y->data, dy->data, dt, x->rows);
    l->be->pool_backward(s->op, &s->win, x->data, t, dt, dx->data, x->rows * s->win_d.in_w);
}

static void pool_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

static int max1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return window_configure(l, cfg, CT_POOL_MAX, 1, err);
}

static int max2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return window_configure(l, cfg, CT_POOL_MAX, 2, err);
}

static int avg1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return window_configure(l, cfg, CT_POOL_AVG, 1, err);
}

static int avg2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return window_configure(l, cfg, CT_POOL_AVG, 2, err);
}

static int max3d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return window_configure(l, cfg, CT_POOL_MAX, 3, err);
}

static int avg3d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return window_configure(l, cfg, CT_POOL_AVG, 3, err);
}

#define WINDOW_KIND(var, cname, kname, conf)                                                  \
    const ct_layer_kind var = {                                                              \
        .name = cname,                                                                       \
        .class_name = kname,                                                                 \
        .configure = conf,                                                                   \
        .build = window_build,                                                               \
        .scratch_floats = window_scratch,                                                    \
        .forward = window_forward,                                                           \
        .backward = window_backward,                                                         \
        .free_state = pool_free,                                                             \
    }

WINDOW_KIND(ct_layer_max_pooling1d, "max_pooling1d", "MaxPooling1D", max1d_configure);
WINDOW_KIND(ct_layer_max_pooling2d, "max_pooling2d", "MaxPooling2D", max2d_configure);
WINDOW_KIND(ct_layer_average_pooling1d, "average_pooling1d", "AveragePooling1D",
            avg1d_configure);
WINDOW_KIND(ct_layer_average_pooling2d, "average_pooling2d", "AveragePooling2D",
            avg2d_configure);
WINDOW_KIND(ct_layer_max_pooling3d, "max_pooling3d", "MaxPooling3D", max3d_configure);
WINDOW_KIND(ct_layer_average_pooling3d, "average_pooling3d", "AveragePooling3D",
            avg3d_configure);

/* ---- global pools ---------------------------------------------------------------- */

static int global_configure(ct_layer *l, ct_node *cfg, ct_pool op, int rank, ct_error *err)
{
    static const char *const keys[] = {"data_format", "keepdims", NULL};
    pool_state *s = state_of(l, err);
    if (!s || ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    s->op = op;
    s->rank = rank;
    if (ct_layer_data_format(l, cfg, err) || ct_cfg_bool(cfg, "keepdims", false, &s->keepdims, err))
        return -1;
    return 0;
}

static int global_build(ct_layer *l, ct_error *err)
{
    const pool_state *s = l->state;
    const ct_shape *in = &l->in_shape;
    l->nparams = 0;
    if (in->ndim != s->rank + 1)
        return rank_error(l, s->rank, err);
    int64_t dims[4] = {1, 1, 1, in->dim[s->rank]};
    if (s->keepdims)
        l->out_shape = ct_shape_make(s->rank + 1, dims + (3 - s->rank));
    else
        l->out_shape = ct_shape_make(1, dims + 3);
    return 0;
}

/* Positions per sample (steps, height * width, or depth * height * width). */
static int64_t global_spatial(const ct_layer *l)
{
    const pool_state *s = l->state;
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= l->in_shape.dim[i];
    return n;
}

/* GlobalAveragePooling1D over a masked input (Keras): the mean over the steps that hold
 * data, y_r = w_r x_r with w the mask's weights (kept in the scratch for the backward). A
 * sample of padding only gives zeros. */
static int64_t gavg1d_scratch(const ct_layer *l, int64_t max_batch)
{
    return max_batch * l->in_shape.dim[0];
}

static void masked_mean(ct_layer *l, const ct_tensor *x, ct_tensor *y)
{
    int64_t n = x->rows, T = l->in_shape.dim[0], c = l->in_shape.dim[1];
    l->be->mask_weights(x->mask, n, T, l->scratch);
    l->be->gemm_batched(false, false, 1, c, T, 1.0f, l->scratch, T, T, x->data, c, T * c, 0.0f,
                        y->data, c, c, n);
}

static void masked_mean_backward(ct_layer *l, const ct_tensor *x, const ct_tensor *dy,
                                 ct_tensor *dx)
{
    int64_t n = x->rows, T = l->in_shape.dim[0], c = l->in_shape.dim[1];
    l->be->gemm_batched(false, false, T, c, 1, 1.0f, l->scratch, 1, T, dy->data, c, c, 0.0f,
                        dx->data, c, T * c, n);
}

static int gavg1d_mask_out(const ct_layer *l, const bool *in_masked)
{
    (void)l;
    (void)in_masked;
    return CT_MASK_NONE; /* used here */
}

static void global_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                           ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    const pool_state *s = l->state;
    int64_t c = l->in_shape.dim[s->rank];
    if (x->mask && s->op == CT_POOL_AVG && s->rank == 1)
        masked_mean(l, x, y);
    else
        l->be->global_pool_forward(s->op, x->data, y->data, x->rows, global_spatial(l), c);
}

static void global_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                            const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass;
    const pool_state *s = l->state;
    if (!dx)
        return;
    int64_t c = l->in_shape.dim[s->rank];
    if (x->mask && s->op == CT_POOL_AVG && s->rank == 1)
        masked_mean_backward(l, x, dy, dx);
    else
        l->be->global_pool_backward(s->op, x->data, y->data, dy->data, dx->data, x->rows,
                                    global_spatial(l), c);
}

static int gmax1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return global_configure(l, cfg, CT_POOL_MAX, 1, err);
}

static int gmax2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return global_configure(l, cfg, CT_POOL_MAX, 2, err);
}

static int gavg1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return global_configure(l, cfg, CT_POOL_AVG, 1, err);
}

static int gavg2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return global_configure(l, cfg, CT_POOL_AVG, 2, err);
}

static int gmax3d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return global_configure(l, cfg, CT_POOL_MAX, 3, err);
}

static int gavg3d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return global_configure(l, cfg, CT_POOL_AVG, 3, err);
}

#define GLOBAL_KIND(var, cname, kname, conf, ...)                                             \
    const ct_layer_kind var = {                                                              \
        .name = cname,                                                                       \
        .class_name = kname,                                                                 \
        .configure = conf,                                                                   \
        .build = global_build,                                                               \
        .forward = global_forward,                                                           \
        .backward = global_backward,                                                         \
        .free_state = pool_free,                                                             \
        __VA_ARGS__                                                                          \
    }

GLOBAL_KIND(ct_layer_global_max_pooling1d, "global_max_pooling1d", "GlobalMaxPooling1D",
            gmax1d_configure);
GLOBAL_KIND(ct_layer_global_max_pooling2d, "global_max_pooling2d", "GlobalMaxPooling2D",
            gmax2d_configure);
GLOBAL_KIND(ct_layer_global_average_pooling1d, "global_average_pooling1d",
            "GlobalAveragePooling1D", gavg1d_configure, .scratch_floats = gavg1d_scratch,
            .masks = CT_MASK_BY_KIND, .mask_out = gavg1d_mask_out);
GLOBAL_KIND(ct_layer_global_average_pooling2d, "global_average_pooling2d",
            "GlobalAveragePooling2D", gavg2d_configure);
GLOBAL_KIND(ct_layer_global_max_pooling3d, "global_max_pooling3d", "GlobalMaxPooling3D",
            gmax3d_configure);
GLOBAL_KIND(ct_layer_global_average_pooling3d, "global_average_pooling3d",
            "GlobalAveragePooling3D", gavg3d_configure);
