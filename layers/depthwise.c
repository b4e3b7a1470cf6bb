/* depthwise.c - DepthwiseConv1D/2D (each input channel convolved with its own
 * depth_multiplier filters) and SeparableConv1D/2D (a depthwise convolution followed by a
 * 1x1 convolution, the intermediate image kept in scratch for the backward). A 1-D layer
 * is the 2-D one with a height of 1; only its weights' shapes drop that axis, as Keras's
 * do, the memory layout being the same. */
#include <stdlib.h>

#include "conv_util.h"

typedef struct dw_state {
    bool separable;
    int rank;    /* spatial axes: 1 or 2 */
    int padding;
    int64_t filters, mult, k[2], strides[2], dil[2];
    ct_act act;
    bool use_bias;
    ct_init dw_init, pw_init, bias_init;
    ct_regularizer dw_reg, pw_reg, bias_reg;
    /* from build */
    ct_window win;
    int64_t cm;  /* depthwise output channels: in_c * depth_multiplier */
} dw_state;

static const char *const depthwise_keys[] = {
    "kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate",
    "activation", "use_bias", "depthwise_initializer", "bias_initializer",
    "depthwise_regularizer", "bias_regularizer", NULL,
};

static const char *const separable_keys[] = {
    "filters", "kernel_size", "strides", "padding", "depth_multiplier", "data_format",
    "dilation_rate", "activation", "use_bias", "depthwise_initializer", "pointwise_initializer",
    "bias_initializer", "depthwise_regularizer", "pointwise_regularizer", "bias_regularizer",
    NULL,
};

static int dw_read_geometry(ct_layer *l, ct_node *cfg, dw_state *s, ct_error *err)
{
    if (s->separable) {
        char what[CT_NAME_MAX + 80];
        snprintf(what, sizeof what, "layer '%s' (%s)", l->name, l->kind->class_name);
        if (ct_cfg_require(cfg, "filters", what, err) ||
            ct_cfg_int(cfg, "filters", 1, 1, INT32_MAX, &s->filters, err))
            return -1;
    }
    if (ct_conv_tuple(l, cfg, "kernel_size", s->rank, 0, s->k, err) ||
        ct_conv_tuple(l, cfg, "strides", s->rank, 1, s->strides, err) ||
        ct_conv_padding(cfg, false, &s->padding, err) ||
        ct_cfg_int(cfg, "depth_multiplier", 1, 1, INT32_MAX, &s->mult, err) ||
        ct_conv_data_format(l, cfg, err) ||
        ct_conv_tuple(l, cfg, "dilation_rate", s->rank, 1, s->dil, err) ||
        ct_conv_check_dilation(l, cfg, s->strides, s->dil, err))
        return -1;
    return 0;
}

static int dw_read(ct_layer *l, ct_node *cfg, dw_state *s, ct_error *err)
{
    if (dw_read_geometry(l, cfg, s, err) ||
        ct_layer_parse_act(l, cfg, "activation", "linear", &s->act, err) ||
        ct_cfg_bool(cfg, "use_bias", true, &s->use_bias, err) ||
        ct_init_parse(cfg, "depthwise_initializer", "glorot_uniform", &s->dw_init, err) ||
        (s->separable &&
         ct_init_parse(cfg, "pointwise_initializer", "glorot_uniform", &s->pw_init, err)) ||
        ct_init_parse(cfg, "bias_initializer", "zeros", &s->bias_init, err) ||
        ct_regularizer_parse(cfg, "depthwise_regularizer", &s->dw_reg, err) ||
        (s->separable && ct_regularizer_parse(cfg, "pointwise_regularizer", &s->pw_reg, err)) ||
        ct_regularizer_parse(cfg, "bias_regularizer", &s->bias_reg, err))
        return -1;
    return 0;
}

static int dw_configure_kind(ct_layer *l, ct_node *cfg, bool separable, int rank,
                             ct_error *err)
{
    if (ct_layer_check_keys(l, cfg, separable ? separable_keys : depthwise_keys, err))
        return -1;
    dw_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    s->separable = separable;
    s->rank = rank;
    return dw_read(l, cfg, s, err);
}

static int depthwise1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return dw_configure_kind(l, cfg, false, 1, err);
}

static int depthwise_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return dw_configure_kind(l, cfg, false, 2, err);
}

static int separable1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return dw_configure_kind(l, cfg, true, 1, err);
}

static int separable_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return dw_configure_kind(l, cfg, true, 2, err);
}

/* Parameters in Keras's order: depthwise kernel, (pointwise kernel), bias. */
static int dw_build(ct_layer *l, ct_error *err)
{
    dw_state *s = l->state;
    l->nparams = 0;
    if (ct_conv_window(l, s->rank, s->padding, s->k, s->strides, s->dil, &s->win, err))
        return -1;
    const ct_window *w = &s->win;
    s->cm = w->in_c * s->mult;
    int64_t out_c = s->separable ? s->filters : s->cm;
    l->out_shape = ct_conv_out_shape(s->rank, w->out_h, w->out_w, out_c);
    /* Keras: kernel_size + (in_c, mult) and (1,) * rank + (in_c * mult, filters); the
     * 1-D shapes leave out the leading height axis of 1. */
    int64_t kd[4] = {w->k_h, w->k_w, w->in_c, s->mult}, drop = s->rank == 1;
    if (ct_layer_add_param(l, s->separable ? "depthwise_kernel" : "kernel",
                           ct_shape_make(4 - (int)drop, kd + drop), s->dw_init, s->dw_reg,
                           true, err) < 0)
        return -1;
    int64_t pd[4] = {1, 1, s->cm, s->filters};
    if (s->separable &&
        ct_layer_add_param(l, "pointwise_kernel", ct_shape_make(4 - (int)drop, pd + drop),
                           s->pw_init, s->pw_reg, true, err) < 0)
        return -1;
    if (s->use_bias && ct_layer_add_param(l, "bias", ct_shape_make(1, &out_c), s->bias_init,
                                          s->bias_reg, true, err) < 0)
        return -1;
    return 0;
}

static int64_t dw_positions(const dw_state *s) { return s->win.out_h * s->win.out_w; }

static int64_t dw_kernel_size(const dw_state *s)
{
    return s->win.k_h * s->win.k_w * s->cm;
}

/* Per sample: the depthwise image (separable only), then the pre-activation (with an
 * activation); after the batch, room for a depthwise kernel gradient nobody asked for
 * (a frozen kernel: the backend op always writes one). */
static int64_t dw_per_sample(const ct_layer *l)
{
    const dw_state *s = l->state;
    int64_t n = s->separable ? dw_positions(s) * s->cm : 0;
    return n + ct_tail_scratch(s->act, ct_shape_size(&l->out_shape));
}

static int64_t dw_scratch(const ct_layer *l, int64_t max_batch)
{
    return max_batch * dw_per_sample(l) + dw_kernel_size(l->state);
}

/* The scratch areas for a batch of `rows`: depthwise image t, pre-activation z, spare. */
static void dw_areas(const ct_layer *l, int64_t rows, float **t, float **z, float **spare)
{
    const dw_state *s = l->state;
    float *p = l->scratch;
    *t = p;
    if (s->separable)
        p += rows * dw_positions(s) * s->cm;
    *z = p;
    p += ct_tail_scratch(s->act, rows * ct_shape_size(&l->out_shape));
    *spare = p;
}

static int64_t dw_out_c(const dw_state *s) { return s->separable ? s->filters : s->cm; }

static void dw_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                       ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    const dw_state *s = l->state;
    const ct_backend *be = l->be;
    const int64_t n = x->rows * dw_positions(s), out_c = dw_out_c(s);
    float *t, *z, *spare;
    dw_areas(l, x->rows, &t, &z, &spare);
    if (ct_act_from_output(s->act))
        z = y->data;
    if (s->separable) {
        be->depthwise_forward(&s->win, s->mult, x->data, l->params[0].value, t, x->rows);
        be->gemm(false, false, n, s->filters, s->cm, 1.0f, t, s->cm, l->params[1].value,
                 s->filters, 0.0f, z, s->filters);
    } else {
        be->depthwise_forward(&s->win, s->mult, x->data, l->params[0].value, z, x->rows);
    }
    ct_tail_forward(l, s->act, s->use_bias ? l->params[l->nparams - 1].value : NULL, z, y->data,
                    n, out_c);
}

/* The pointwise step backward: dpointwise = t^T dz, then dt = dz pointwise^T over t. */
static void separable_pointwise_backward(const ct_layer *l, int64_t n, const float *dz,
                                         float *t)
{
    const dw_state *s = l->state;
    const ct_backend *be = l->be;
    const ct_param *pw = &l->params[1];
    if (pw->grad)
        be->gemm(true, false, s->cm, s->filters, n, 1.0f, t, s->cm, dz, s->filters, 0.0f,
                 pw->grad, s->filters);
    be->gemm(false, true, n, s->cm, s->filters, 1.0f, dz, s->filters, pw->value, s->filters,
             0.0f, t, s->cm);
}

static void dw_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                        const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass;
    const dw_state *s = l->state;
    const ct_backend *be = l->be;
    const int64_t n = x->rows * dw_positions(s), out_c = dw_out_c(s);
    float *t, *z, *spare, *dz = dy->data;
    dw_areas(l, x->rows, &t, &z, &spare);
    const ct_param *bias = s->use_bias ? &l->params[l->nparams - 1] : NULL;
    ct_tail_backward(l, s->act, z, y->data, dz, bias ? bias->grad : NULL, n, out_c);
    const float *ddw = dz;  /* gradient at the depthwise output */
    if (s->separable) {
        separable_pointwise_backward(l, n, dz, t);
        ddw = t;
    }
    const ct_param *k = &l->params[0];
    be->depthwise_backward(&s->win, s->mult, x->data, k->value, ddw, dx ? dx->data : NULL,
                           k->grad ? k->grad : spare, x->rows);
}

static void dw_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

static ct_activation dw_output_activation(const ct_layer *l)
{
    const dw_state *s = l->state;
    return s->act.kind;
}

const ct_layer_kind ct_layer_depthwise_conv1d = {
    .name = "depthwise_conv1d",
    .class_name = "DepthwiseConv1D",
    .configure = depthwise1d_configure,
    .build = dw_build,
    .scratch_floats = dw_scratch,
    .forward = dw_forward,
    .backward = dw_backward,
    .free_state = dw_free,
    .output_activation = dw_output_activation,
};

const ct_layer_kind ct_layer_depthwise_conv2d = {
    .name = "depthwise_conv2d",
    .class_name = "DepthwiseConv2D",
    .configure = depthwise_configure,
    .build = dw_build,
    .scratch_floats = dw_scratch,
    .forward = dw_forward,
    .backward = dw_backward,
    .free_state = dw_free,
    .output_activation = dw_output_activation,
};

const ct_layer_kind ct_layer_separable_conv1d = {
    .name = "separable_conv1d",
    .class_name = "SeparableConv1D",
    .configure = separable1d_configure,
    .build = dw_build,
    .scratch_floats = dw_scratch,
    .forward = dw_forward,
    .backward = dw_backward,
    .free_state = dw_free,
    .output_activation = dw_output_activation,
};

const ct_layer_kind ct_layer_separable_conv2d = {
    .name = "separable_conv2d",
    .class_name = "SeparableConv2D",
    .configure = separable_configure,
    .build = dw_build,
    .scratch_floats = dw_scratch,
    .forward = dw_forward,
    .backward = dw_backward,
    .free_state = dw_free,
    .output_activation = dw_output_activation,
};
