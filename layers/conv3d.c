/* conv3d.c - Conv3D on (depth, height, width, channels) samples, built on the 2-D ops:
 * every depth slice of every sample is a 2-D image whose patches im2col gathers, and
 * output slice od is the sum over kernel depth i of the GEMMs of input slice
 * od*stride - pad + i*dilation's patches by kernel[i], Keras's kernel being
 * (k_d, k_h, k_w, in_channels, filters) so that kernel[i] is one 2-D kernel. The
 * backward runs the same GEMMs transposed, and col2im takes the patches' gradient back
 * to the slices. One group only. */
#include <stdlib.h>
#include <string.h>

#include "conv_util.h"

typedef struct conv3d_state {
    int padding;
    int64_t filters, k[3], strides[3], dil[3];
    ct_act act;
    bool use_bias;
    ct_init kernel_init, bias_init;
    ct_regularizer kernel_reg, bias_reg;
    /* from build */
    ct_window win;            /* the 2-D convolution of one slice */
    int64_t in_d, out_d, pad_d;
    int64_t kdim;             /* 2-D patch length: k_h * k_w * in_channels */
} conv3d_state;

static const char *const conv3d_keys[] = {
    "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
    "activation", "use_bias", "kernel_initializer", "bias_initializer", "kernel_regularizer",
    "bias_regularizer", NULL,
};

static int conv3d_geometry(ct_layer *l, ct_node *cfg, conv3d_state *s, ct_error *err)
{
    static const int64_t ones[3] = {1, 1, 1};
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    int64_t groups;
    if (ct_cfg_require(cfg, "filters", what, err) ||
        ct_cfg_int(cfg, "filters", 1, 1, INT32_MAX, &s->filters, err) ||
        ct_cfg_require(cfg, "kernel_size", what, err) ||
        ct_layer_read_ints(l, cfg, "kernel_size", 3, 1, ones, s->k, err) ||
        ct_layer_read_ints(l, cfg, "strides", 3, 1, ones, s->strides, err) ||
        ct_conv_padding(cfg, false, &s->padding, err) || ct_conv_data_format(l, cfg, err) ||
        ct_layer_read_ints(l, cfg, "dilation_rate", 3, 1, ones, s->dil, err) ||
        ct_cfg_int(cfg, "groups", 1, 1, INT32_MAX, &groups, err))
        return -1;
    if (groups != 1)
        return ct_conv_node_err(l, cfg, "groups", err, "only groups: 1 is supported");
    bool strided = false, dilated = false;
    for (int a = 0; a < 3; a++)
        strided |= s->strides[a] > 1, dilated |= s->dil[a] > 1;
    if (strided && dilated) /* as Keras */
        return ct_conv_node_err(l, cfg, "dilation_rate", err,
                                "strides > 1 cannot be combined with dilation_rate > 1");
    return 0;
}

static int conv3d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    if (ct_layer_check_keys(l, cfg, conv3d_keys, err))
        return -1;
    conv3d_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    if (conv3d_geometry(l, cfg, s, err) ||
        ct_layer_parse_act(l, cfg, "activation", "linear", &s->act, err) ||
        ct_cfg_bool(cfg, "use_bias", true, &s->use_bias, err) ||
        ct_init_parse(cfg, "kernel_initializer", "glorot_uniform", &s->kernel_init, err) ||
        ct_init_parse(cfg, "bias_initializer", "zeros", &s->bias_init, err) ||
        ct_regularizer_parse(cfg, "kernel_regularizer", &s->kernel_reg, err) ||
        ct_regularizer_parse(cfg, "bias_regularizer", &s->bias_reg, err))
        return -1;
    return 0;
}

/* The slice window and the depth axis; -1 where a valid kernel does not fit. */
static int conv3d_window(conv3d_state *s, const ct_shape *in)
{
    ct_window *w = &s->win;
    memset(w, 0, sizeof *w);
    s->in_d = in->dim[0], w->in_h = in->dim[1], w->in_w = in->dim[2], w->in_c = in->dim[3];
    w->k_h = s->k[1], w->k_w = s->k[2];
    w->stride_h = s->strides[1], w->stride_w = s->strides[2];
    w->dil_h = s->dil[1], w->dil_w = s->dil[2];
    w->algo = CT_CONV_IM2COL;
    if (ct_conv_axis(s->padding, s->in_d, s->k[0], s->strides[0], s->dil[0], &s->out_d,
                     &s->pad_d) ||
        ct_conv_axis(s->padding, w->in_h, w->k_h, w->stride_h, w->dil_h, &w->out_h,
                     &w->pad_top) ||
        ct_conv_axis(s->padding, w->in_w, w->k_w, w->stride_w, w->dil_w, &w->out_w,
                     &w->pad_left))
        return -1;
    return 0;
}

static int conv3d_build(ct_layer *l, ct_error *err)
{
    conv3d_state *s = l->state;
    const ct_shape *in = &l->in_shape;
    char shape[160];
    l->nparams = 0;
    if (in->ndim != 4)
        return ct_layer_err(err, l, "expects a 5-D input (batch, depth, height, width, "
                            "channels), got %s", ct_shape_format(in, shape, sizeof shape));
    if (conv3d_window(s, in))
        return ct_layer_err(err, l, "a %lldx%lldx%lld kernel with padding 'valid' "
                            "does not fit the input %s", (long long)s->k[0], (long long)s->k[1],
                            (long long)s->k[2], ct_shape_format(in, shape, sizeof shape));
    const ct_window *w = &s->win;
    s->kdim = w->k_h * w->k_w * w->in_c;
    l->algo = "im2col";
    int64_t od[4] = {s->out_d, w->out_h, w->out_w, s->filters};
    l->out_shape = ct_shape_make(4, od);
    int64_t kd[5] = {s->k[0], w->k_h, w->k_w, w->in_c, s->filters};
    if (ct_layer_add_param(l, "kernel", ct_shape_make(5, kd), s->kernel_init, s->kernel_reg,
                           true, err) < 0)
        return -1;
    if (s->use_bias && ct_layer_add_param(l, "bias", ct_shape_make(1, &s->filters),
                                          s->bias_init, s->bias_reg, true, err) < 0)
        return -1;
    return 0;
}

static int64_t slice_positions(const conv3d_state *s) { return s->win.out_h * s->win.out_w; }

/* Floats of every input slice's patches for `rows` samples. */
static int64_t cols_floats(const conv3d_state *s, int64_t rows)
{
    return rows * s->in_d * slice_positions(s) * s->kdim;
}

/* Scratch: the pre-activation where the activation needs it (ct_tail_target), the
 * patches, then their gradient. */
static int64_t conv3d_scratch(const ct_layer *l, int64_t max_batch)
{
    const conv3d_state *s = l->state;
    return ct_tail_scratch(s->act, max_batch * ct_shape_size(&l->out_shape)) +
           2 * cols_floats(s, max_batch);
}

static float *cols_of(const ct_layer *l, int64_t rows)
{
    const conv3d_state *s = l->state;
    return l->scratch + ct_tail_scratch(s->act, rows * ct_shape_size(&l->out_shape));
}

/* The input slice that kernel depth i reads for output slice od, or -1 (padding). */
static int64_t slice_of(const conv3d_state *s, int64_t od, int64_t i)
{
    int64_t d = od * s->strides[0] - s->pad_d + i * s->dil[0];
    return d >= 0 && d < s->in_d ? d : -1;
}

static void conv3d_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                           int nx, ct_tensor *y)
{
    (void)pass;
    (void)nx;
    const ct_tensor *x = xs[0];
    const conv3d_state *s = l->state;
    const ct_backend *be = l->be;
    const int64_t rows = x->rows, p = slice_positions(s), f = s->filters;
    const int64_t n = rows * s->out_d * p;
    float *cols = cols_of(l, rows), *z = ct_tail_target(l, s->act, y->data);
    const float *kernel = l->params[0].value;
    be->im2col(&s->win, x->data, rows * s->in_d, 0, s->win.in_c, cols);
    be->fill(z, n * f, 0.0f);
    /* per output slice and kernel depth, one GEMM per sample, batched over the samples */
    for (int64_t od = 0; od < s->out_d; od++)
        for (int64_t i = 0; i < s->k[0]; i++) {
            int64_t d = slice_of(s, od, i);
            if (d < 0)
                continue;
            be->gemm_batched(false, false, p, f, s->kdim, 1.0f, cols + d * p * s->kdim,
                             s->kdim, s->in_d * p * s->kdim, kernel + i * s->kdim * f, f, 0,
                             1.0f, z + od * p * f, f, s->out_d * p * f, rows);
        }
    ct_tail_forward(l, s->act, s->use_bias ? l->params[1].value : NULL, z, y->data, n, f);
}

/* dkernel[i] = the sum over samples and output slices of patches^T dz. */
static void kernel_backward(const ct_layer *l, const float *cols, const float *dz, int64_t rows,
                            float *dk)
{
    const conv3d_state *s = l->state;
    const int64_t p = slice_positions(s), f = s->filters;
    l->be->fill(dk, s->k[0] * s->kdim * f, 0.0f);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t od = 0; od < s->out_d; od++)
            for (int64_t i = 0; i < s->k[0]; i++) {
                int64_t d = slice_of(s, od, i);
                if (d >= 0)
                    l->be->gemm(true, false, s->kdim, f, p, 1.0f,
                                cols + (r * s->in_d + d) * p * s->kdim, s->kdim,
                                dz + (r * s->out_d + od) * p * f, f, 1.0f,
                                dk + i * s->kdim * f, f);
            }
}

/* dx: the patches' gradient dz kernel[i]^T, added up per input slice, then col2im. */
static void input_backward(const ct_layer *l, const float *dz, int64_t rows, float *dcols,
                           float *dx)
{
    const conv3d_state *s = l->state;
    const ct_backend *be = l->be;
    const int64_t p = slice_positions(s), f = s->filters;
    const float *kernel = l->params[0].value;
    be->fill(dcols, cols_floats(s, rows), 0.0f);
    for (int64_t od = 0; od < s->out_d; od++)
        for (int64_t i = 0; i < s->k[0]; i++) {
            int64_t d = slice_of(s, od, i);
            if (d < 0)
                continue;
            be->gemm_batched(false, true, p, s->kdim, f, 1.0f, dz + od * p * f, f,
                             s->out_d * p * f, kernel + i * s->kdim * f, f, 0, 1.0f,
                             dcols + d * p * s->kdim, s->kdim, s->in_d * p * s->kdim, rows);
        }
    be->fill(dx, rows * ct_shape_size(&l->in_shape), 0.0f);
    be->col2im(&s->win, dcols, rows * s->in_d, 0, s->win.in_c, dx);
}

static void conv3d_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                            int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass;
    (void)nx;
    const ct_tensor *x = xs[0];
    const conv3d_state *s = l->state;
    const int64_t rows = x->rows, n = rows * s->out_d * slice_positions(s);
    float *cols = cols_of(l, rows), *z = ct_tail_target(l, s->act, y->data);
    const ct_param *bias = s->use_bias ? &l->params[1] : NULL;
    ct_tail_backward(l, s->act, z, y->data, dy->data, bias ? bias->grad : NULL, n, s->filters);
    if (l->params[0].grad)
        kernel_backward(l, cols, dy->data, rows, l->params[0].grad);
    if (dxs[0])
        input_backward(l, dy->data, rows, cols + cols_floats(s, rows), dxs[0]->data);
}

static void conv3d_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

static ct_activation conv3d_output_activation(const ct_layer *l)
{
    const conv3d_state *s = l->state;
    return s->act.kind;
}

const ct_layer_kind ct_layer_conv3d = {
    .name = "conv3d",
    .class_name = "Conv3D",
    .configure = conv3d_configure,
    .build = conv3d_build,
    .scratch_floats = conv3d_scratch,
    .forward = conv3d_forward,
    .backward = conv3d_backward,
    .free_state = conv3d_free,
    .output_activation = conv3d_output_activation,
};
