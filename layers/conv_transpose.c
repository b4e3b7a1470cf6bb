/* conv_transpose.c - Conv1DTranspose and Conv2DTranspose: the adjoint of a Conv1D/2D taken
 * from the output image to the input grid (1-D: an image of height 1, whose kernel drops
 * that axis as Keras's (k, filters, in_channels) does). Each input position spreads x[p] K^T (kh*kw*filters values) over its
 * window of the output, which is exactly col2im with a window whose "input" is the output
 * image and whose "output" grid is the input image. */
#include <stdlib.h>
#include <string.h>

#include "conv_util.h"

typedef struct convt_state {
    int rank;    /* spatial axes: 1 or 2 */
    int padding;
    int64_t filters, k[2], strides[2], dil[2];
    ct_act act;
    bool use_bias;
    ct_init kernel_init, bias_init;
    ct_regularizer kernel_reg, bias_reg;
    /* from build: in_* is the output image, out_* the input grid */
    ct_window win;
    int64_t cin, kdim;  /* input channels, kh*kw*filters */
} convt_state;

static const char *const convt_keys[] = {
    "filters", "kernel_size", "strides", "padding", "output_padding", "data_format",
    "dilation_rate", "activation", "use_bias", "kernel_initializer", "bias_initializer",
    "kernel_regularizer", "bias_regularizer", NULL,
};

/* output_padding shifts the output size; only its absence (null) is supported. */
static int convt_output_padding(const ct_layer *l, ct_node *cfg, ct_error *err)
{
    ct_node *v = ct_map_get(cfg, "output_padding");
    if (ct_node_is_null(v))
        return 0;
    return ct_conv_node_err(l, cfg, "output_padding", err,
                            "output_padding is not supported; leave it out (null)");
}

static int convt_read(ct_layer *l, ct_node *cfg, convt_state *s, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    snprintf(what, sizeof what, "layer '%s' (%s)", l->name, l->kind->class_name);
    if (ct_cfg_require(cfg, "filters", what, err) ||
        ct_cfg_int(cfg, "filters", 1, 1, INT32_MAX, &s->filters, err) ||
        ct_conv_tuple(l, cfg, "kernel_size", s->rank, 0, s->k, err) ||
        ct_conv_tuple(l, cfg, "strides", s->rank, 1, s->strides, err) ||
        ct_conv_padding(cfg, false, &s->padding, err) ||
        convt_output_padding(l, cfg, err) || ct_conv_data_format(l, cfg, err) ||
        ct_conv_tuple(l, cfg, "dilation_rate", s->rank, 1, s->dil, err) ||
        ct_conv_check_dilation(l, cfg, s->strides, s->dil, err) ||
        ct_layer_parse_act(l, cfg, "activation", "linear", &s->act, err) ||
        ct_cfg_bool(cfg, "use_bias", true, &s->use_bias, err) ||
        ct_init_parse(cfg, "kernel_initializer", "glorot_uniform", &s->kernel_init, err) ||
        ct_init_parse(cfg, "bias_initializer", "zeros", &s->bias_init, err) ||
        ct_regularizer_parse(cfg, "kernel_regularizer", &s->kernel_reg, err) ||
        ct_regularizer_parse(cfg, "bias_regularizer", &s->bias_reg, err))
        return -1;
    return 0;
}

static int convt_configure_rank(ct_layer *l, ct_node *cfg, int rank, ct_error *err)
{
    if (ct_layer_check_keys(l, cfg, convt_keys, err))
        return -1;
    convt_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    s->rank = rank;
    return convt_read(l, cfg, s, err);
}

static int convt1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return convt_configure_rank(l, cfg, 1, err);
}

static int convt_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return convt_configure_rank(l, cfg, 2, err);
}

/* Keras's output length: valid in*stride + max(span - stride, 0), same in*stride. */
static int64_t convt_length(int padding, int64_t in, int64_t k, int64_t stride, int64_t dil)
{
    int64_t span = (k - 1) * dil + 1;
    if (padding == CT_CONV_SAME || span <= stride)
        return in * stride;
    return in * stride + span - stride;
}

/* One axis of the window: the output length, and the padding the forward convolution
 * from that length back to `in` would use (TensorFlow's conv_transpose is its adjoint). */
static void convt_axis(int padding, int64_t in, int64_t k, int64_t stride, int64_t dil,
                       int64_t *image, int64_t *grid, int64_t *pad)
{
    *image = convt_length(padding, in, k, stride, dil);
    /* never fails: the image is at least one span long */
    ct_conv_axis(padding, *image, k, stride, dil, grid, pad);
}

static int convt_build(ct_layer *l, ct_error *err)
{
    convt_state *s = l->state;
    l->nparams = 0;
    int64_t ih, iw;
    if (ct_conv_input(l, s->rank, &ih, &iw, &s->cin, err))
        return -1;
    ct_window *w = &s->win;
    memset(w, 0, sizeof *w);
    w->in_c = s->filters;
    w->k_h = s->k[0], w->k_w = s->k[1];
    w->stride_h = s->strides[0], w->stride_w = s->strides[1];
    w->dil_h = s->dil[0], w->dil_w = s->dil[1];
    convt_axis(s->padding, ih, s->k[0], s->strides[0], s->dil[0], &w->in_h, &w->out_h,
               &w->pad_top);
    convt_axis(s->padding, iw, s->k[1], s->strides[1], s->dil[1], &w->in_w, &w->out_w,
               &w->pad_left);
    if (w->out_h != ih || w->out_w != iw)  /* holds by construction of the lengths */
        return ct_layer_err(err, l, "inconsistent transposed geometry");
    s->kdim = w->k_h * w->k_w * s->filters;
    /* 1-D: the height of 1 is a dummy axis (k 1, stride 1: length 1 with any padding) */
    l->out_shape = ct_conv_out_shape(s->rank, w->in_h, w->in_w, s->filters);
    int64_t kd[4] = {w->k_h, w->k_w, s->filters, s->cin}, drop = s->rank == 1;
    if (ct_layer_add_param(l, "kernel", ct_shape_make(4 - (int)drop, kd + drop),
                           s->kernel_init, s->kernel_reg, true, err) < 0)
        return -1;
    if (s->use_bias && ct_layer_add_param(l, "bias", ct_shape_make(1, &s->filters),
                                          s->bias_init, s->bias_reg, true, err) < 0)
        return -1;
    return 0;
}

static int64_t convt_positions(const convt_state *s) { return s->win.out_h * s->win.out_w; }

static int64_t convt_cols_per_sample(const convt_state *s)
{
    return convt_positions(s) * s->kdim;
}

static int64_t convt_scratch(const ct_layer *l, int64_t max_batch)
{
    const convt_state *s = l->state;
    int64_t n = ct_tail_scratch(s->act, max_batch * ct_shape_size(&l->out_shape));
    return n + ct_conv_chunk(convt_cols_per_sample(s), max_batch) * convt_cols_per_sample(s);
}

static float *convt_cols(const ct_layer *l, int64_t rows)
{
    const convt_state *s = l->state;
    return l->scratch + ct_tail_scratch(s->act, rows * ct_shape_size(&l->out_shape));
}

static void convt_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    const convt_state *s = l->state;
    const ct_backend *be = l->be;
    const int64_t in_size = ct_shape_size(&l->in_shape), out_size = ct_shape_size(&l->out_shape);
    float *z = ct_tail_target(l, s->act, y->data), *cols = convt_cols(l, x->rows);
    be->fill(z, x->rows * out_size, 0.0f);
    const int64_t chunk = ct_conv_chunk(convt_cols_per_sample(s), x->rows);
    for (int64_t r0 = 0; r0 < x->rows; r0 += chunk) {
        int64_t nr = x->rows - r0 < chunk ? x->rows - r0 : chunk;
        be->gemm(false, true, nr * convt_positions(s), s->kdim, s->cin, 1.0f,
                 x->data + r0 * in_size, s->cin, l->params[0].value, s->cin, 0.0f, cols, s->kdim);
        be->col2im(&s->win, cols, nr, 0, s->filters, z + r0 * out_size);
    }
    const int64_t n = x->rows * s->win.in_h * s->win.in_w;
    ct_tail_forward(l, s->act, s->use_bias ? l->params[1].value : NULL, z, y->data, n,
                    s->filters);
}

/* One chunk: patches of dz, then dx = patches K and dkernel (+)= patches^T x. */
static void convt_chunk_backward(const ct_layer *l, const float *x, const float *dz, int64_t nr,
                                 float *cols, float beta, float *dx)
{
    const convt_state *s = l->state;
    const ct_backend *be = l->be;
    const ct_param *kp = &l->params[0];
    const int64_t n = nr * convt_positions(s);
    be->im2col(&s->win, dz, nr, 0, s->filters, cols);
    if (kp->grad)
        be->gemm(true, false, s->kdim, s->cin, n, 1.0f, cols, s->kdim, x, s->cin, beta, kp->grad,
                 s->cin);
    if (dx)
        be->gemm(false, false, n, s->cin, s->kdim, 1.0f, cols, s->kdim, kp->value, s->cin, 0.0f,
                 dx, s->cin);
}

static void convt_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                           const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass;
    const convt_state *s = l->state;
    const ct_backend *be = l->be;
    const int64_t in_size = ct_shape_size(&l->in_shape), out_size = ct_shape_size(&l->out_shape);
    const int64_t n = x->rows * s->win.in_h * s->win.in_w;
    float *dz = dy->data;
    ct_tail_backward(l, s->act, l->scratch, y->data, dz, s->use_bias ? l->params[1].grad : NULL,
                     n, s->filters);
    if (x->rows == 0 && l->params[0].grad)
        be->fill(l->params[0].grad, ct_shape_size(&l->params[0].shape), 0.0f);
    float *cols = convt_cols(l, x->rows);
    const int64_t chunk = ct_conv_chunk(convt_cols_per_sample(s), x->rows);
    for (int64_t r0 = 0; r0 < x->rows; r0 += chunk) {
        int64_t nr = x->rows - r0 < chunk ? x->rows - r0 : chunk;
        convt_chunk_backward(l, x->data + r0 * in_size, dz + r0 * out_size, nr, cols,
                             r0 == 0 ? 0.0f : 1.0f, dx ? dx->data + r0 * in_size : NULL);
    }
}

static void convt_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

static ct_activation convt_output_activation(const ct_layer *l)
{
    const convt_state *s = l->state;
    return s->act.kind;
}

const ct_layer_kind ct_layer_conv1d_transpose = {
    .name = "conv1d_transpose",
    .class_name = "Conv1DTranspose",
    .configure = convt1d_configure,
    .build = convt_build,
    .scratch_floats = convt_scratch,
    .forward = convt_forward,
    .backward = convt_backward,
    .free_state = convt_free,
    .output_activation = convt_output_activation,
};

const ct_layer_kind ct_layer_conv2d_transpose = {
    .name = "conv2d_transpose",
    .class_name = "Conv2DTranspose",
    .configure = convt_configure,
    .build = convt_build,
    .scratch_floats = convt_scratch,
    .forward = convt_forward,
    .backward = convt_backward,
    .free_state = convt_free,
    .output_activation = convt_output_activation,
};
