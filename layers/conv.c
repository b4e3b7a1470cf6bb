/* conv.c - Conv1D and Conv2D (channels_last) through the backend's conv_forward /
 * conv_backward (patches times kernel, group by group), a plain gemm for 1x1 kernels,
 * and the geometry/config helpers shared with conv_transpose.c and depthwise.c
 * (ct_conv_*). The transposed convolution still builds patches in chunks of samples of
 * at most CT_CONV_COLS_FLOATS floats (ct_conv_chunk). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "conv_util.h"

/* Patch buffer bound: 16 MiB of floats keeps the patches of a chunk in cache-friendly
 * reach while making each gemm large enough to run at full speed. */
#define CT_CONV_COLS_FLOATS ((int64_t)8 << 20)
/* Kernel sizes, strides and dilations beyond this are certainly mistakes, and bounding
 * them keeps every size product far from overflow. */
#define CT_CONV_MAX_EXTENT ((int64_t)1 << 20)

static const char *const padding_names[] = {"valid", "same", "causal", NULL};

/* An error at cfg[key]'s value (the map itself when the key is absent), naming the
 * layer. Returns -1. */
int ct_conv_node_err(const ct_layer *l, ct_node *cfg, const char *key, ct_error *err,
                     const char *fmt, ...)
{
    ct_node *v = key ? ct_map_get(cfg, key) : NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = ct_layer_verr_at(err, l, v ? v : cfg, fmt, ap);
    va_end(ap);
    return rc;
}

/* An int or a list of `rank` ints, each in [1, CT_CONV_MAX_EXTENT]; def 0: required.
 * out[0] is the height, out[1] the width (1-D: out[0] = 1). */
int ct_conv_tuple(const ct_layer *l, ct_node *cfg, const char *key, int rank, int64_t def,
                  int64_t out[2], ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (def == 0 && ct_cfg_require(cfg, key, what, err))
        return -1;
    ct_node *v = ct_map_get(cfg, key);
    int64_t vals[2] = {def, def};
    if (v && v->type == CT_NODE_SEQ) {
        int len = 0;
        if (v->len != (size_t)rank)
            return ct_conv_node_err(l, cfg, key, err,
                                    "%s must be an integer or a list of %d integer%s", key,
                                    rank, rank == 1 ? "" : "s");
        if (ct_cfg_int_list(cfg, key, vals, rank, &len, err))
            return -1;
        for (int i = 0; i < rank; i++)
            if (vals[i] > CT_CONV_MAX_EXTENT)
                return ct_node_err(err, v->items[i],
                                   "%s: %s entries must be at most %lld, got %lld", what, key,
                                   (long long)CT_CONV_MAX_EXTENT, (long long)vals[i]);
    } else if (v && v->type == CT_NODE_MAP) {
        return ct_conv_node_err(l, cfg, key, err,
                                "%s must be an integer or a list of %d integer%s", key, rank,
                                rank == 1 ? "" : "s");
    } else {
        if (ct_cfg_int(cfg, key, def, 1, CT_CONV_MAX_EXTENT, &vals[0], err))
            return -1;
        vals[1] = vals[0];
    }
    out[0] = rank == 1 ? 1 : vals[0];
    out[1] = rank == 1 ? vals[0] : vals[1];
    return 0;
}

int ct_conv_padding(ct_node *cfg, bool causal, int *out, ct_error *err)
{
    static const char *const plain[] = {"valid", "same", NULL};
    return ct_cfg_enum(cfg, "padding", "valid", causal ? padding_names : plain, out, err);
}

int ct_conv_data_format(const ct_layer *l, ct_node *cfg, ct_error *err)
{
    return ct_layer_data_format(l, cfg, err);
}

/* Keras refuses strides > 1 together with dilation_rate > 1 for convolutions. */
int ct_conv_check_dilation(const ct_layer *l, ct_node *cfg, const int64_t strides[2],
                           const int64_t dil[2], ct_error *err)
{
    bool strided = strides[0] > 1 || strides[1] > 1, dilated = dil[0] > 1 || dil[1] > 1;
    if (strided && dilated)
        return ct_conv_node_err(l, cfg, "dilation_rate", err,
                                "strides > 1 cannot be combined with dilation_rate > 1");
    return 0;
}

/* Output length and padding before the input along one axis; -1 when a valid window
 * does not fit. "same" puts the odd padding after, as TensorFlow does; "causal" pads
 * only before. */
int ct_conv_axis(int padding, int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t *out,
                 int64_t *pad)
{
    int64_t span = (k - 1) * dil + 1;
    if (padding == CT_CONV_SAME) {
        *out = (in + stride - 1) / stride;
        int64_t total = (*out - 1) * stride + span - in;
        *pad = total > 0 ? total / 2 : 0;
        return 0;
    }
    *pad = padding == CT_CONV_CAUSAL ? span - 1 : 0;
    if (in + *pad < span)
        return -1;
    *out = (in + *pad - span) / stride + 1;
    return 0;
}

/* The spatial dims and channels of a rank-1 (steps, c) or rank-2 (h, w, c) input. */
int ct_conv_input(const ct_layer *l, int rank, int64_t *h, int64_t *w, int64_t *c,
                  ct_error *err)
{
    char buf[256];
    if (l->in_shape.ndim != rank + 1)
        return ct_layer_err(err, l, "expects a %d-D input %s, got %s", rank + 2,
                            rank == 1 ? "(batch, steps, channels)"
                                      : "(batch, height, width, channels)",
                            ct_shape_format(&l->in_shape, buf, sizeof buf));
    *h = rank == 1 ? 1 : l->in_shape.dim[0];
    *w = l->in_shape.dim[rank - 1];
    *c = l->in_shape.dim[rank];
    return 0;
}

static void kernel_text(int rank, const int64_t v[2], char *buf, size_t n)
{
    if (rank == 1)
        snprintf(buf, n, "%lld", (long long)v[1]);
    else
        snprintf(buf, n, "%lldx%lld", (long long)v[0], (long long)v[1]);
}

static int no_fit(const ct_layer *l, int rank, int padding, const int64_t k[2],
                  const int64_t dil[2], ct_error *err)
{
    char ks[64], spans[96] = "", shape[256];
    kernel_text(rank, k, ks, sizeof ks);
    if (dil[0] > 1 || dil[1] > 1) {
        int64_t span[2] = {(k[0] - 1) * dil[0] + 1, (k[1] - 1) * dil[1] + 1};
        char ss[64];
        kernel_text(rank, span, ss, sizeof ss);
        snprintf(spans, sizeof spans, " (spanning %s with dilation)", ss);
    }
    return ct_layer_err(err, l, "%s%s%s%s with padding '%s' does not fit the input %s",
                        rank == 1 ? "a kernel of size " : "a ", ks, rank == 1 ? "" : " kernel",
                        spans, padding_names[padding],
                        ct_shape_format(&l->in_shape, shape, sizeof shape));
}

/* Fills the window of a convolution of l->in_shape: sizes, output grid and padding. */
int ct_conv_window(const ct_layer *l, int rank, int padding, const int64_t k[2],
                   const int64_t strides[2], const int64_t dil[2], ct_window *win,
                   ct_error *err)
{
    memset(win, 0, sizeof *win);
    if (ct_conv_input(l, rank, &win->in_h, &win->in_w, &win->in_c, err))
        return -1;
    win->k_h = k[0], win->k_w = k[1];
    win->stride_h = strides[0], win->stride_w = strides[1];
    win->dil_h = dil[0], win->dil_w = dil[1];
    int ph = rank == 1 ? CT_CONV_VALID : padding;  /* 1-D: the height axis is a dummy 1 */
    if (ct_conv_axis(ph, win->in_h, k[0], strides[0], dil[0], &win->out_h, &win->pad_top) ||
        ct_conv_axis(padding, win->in_w, k[1], strides[1], dil[1], &win->out_w, &win->pad_left))
        return no_fit(l, rank, padding, k, dil, err);
    return 0;
}

ct_shape ct_conv_out_shape(int rank, int64_t h, int64_t w, int64_t c)
{
    int64_t d[3] = {h, w, c};
    return rank == 1 ? ct_shape_make(2, d + 1) : ct_shape_make(3, d);
}

/* Samples per chunk so that a chunk's patches stay within CT_CONV_COLS_FLOATS (at least
 * one sample, at most max_batch when max_batch > 0). */
int64_t ct_conv_chunk(int64_t floats_per_sample, int64_t max_batch)
{
    int64_t n = floats_per_sample > 0 ? CT_CONV_COLS_FLOATS / floats_per_sample : 1;
    if (n < 1)
        n = 1;
    if (max_batch > 0 && n > max_batch)
        n = max_batch;
    return n;
}

/* ---- Conv1D / Conv2D ------------------------------------------------------------------ */

typedef struct conv_state {
    int rank, padding;
    int64_t filters, groups;
    int64_t k[2], strides[2], dil[2];
    ct_act act;
    bool use_bias;
    ct_init kernel_init, bias_init;
    ct_regularizer kernel_reg, bias_reg;
    /* from build */
    ct_window win;
    int64_t cg, fg, kdim;   /* channels and filters per group, patch length per group */
    bool pointwise;           /* 1x1, stride 1, one group: x is its own patch matrix */
} conv_state;

static const char *const conv_keys[] = {
    "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
    "activation", "use_bias", "kernel_initializer", "bias_initializer", "kernel_regularizer",
    "bias_regularizer", NULL,
};

static int conv_read_geometry(ct_layer *l, ct_node *cfg, conv_state *s, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (ct_cfg_require(cfg, "filters", what, err) ||
        ct_cfg_int(cfg, "filters", 1, 1, INT32_MAX, &s->filters, err) ||
        ct_conv_tuple(l, cfg, "kernel_size", s->rank, 0, s->k, err) ||
        ct_conv_tuple(l, cfg, "strides", s->rank, 1, s->strides, err) ||
        ct_conv_padding(cfg, s->rank == 1, &s->padding, err) ||
        ct_conv_data_format(l, cfg, err) ||
        ct_conv_tuple(l, cfg, "dilation_rate", s->rank, 1, s->dil, err) ||
        ct_cfg_int(cfg, "groups", 1, 1, INT32_MAX, &s->groups, err))
        return -1;
    if (ct_conv_check_dilation(l, cfg, s->strides, s->dil, err))
        return -1;
    if (s->filters % s->groups)
        return ct_conv_node_err(l, cfg, "groups", err,
                                "filters (%lld) must be divisible by groups (%lld)",
                                (long long)s->filters, (long long)s->groups);
    return 0;
}

static int conv_read(ct_layer *l, ct_node *cfg, conv_state *s, ct_error *err)
{
    if (conv_read_geometry(l, cfg, s, err) ||
        ct_layer_parse_act(l, cfg, "activation", "linear", &s->act, err) ||
        ct_cfg_bool(cfg, "use_bias", true, &s->use_bias, err) ||
        ct_init_parse(cfg, "kernel_initializer", "glorot_uniform", &s->kernel_init, err) ||
        ct_init_parse(cfg, "bias_initializer", "zeros", &s->bias_init, err) ||
        ct_regularizer_parse(cfg, "kernel_regularizer", &s->kernel_reg, err) ||
        ct_regularizer_parse(cfg, "bias_regularizer", &s->bias_reg, err))
        return -1;
    return 0;
}

static int conv_configure_rank(ct_layer *l, ct_node *cfg, int rank, ct_error *err)
{
    if (ct_layer_check_keys(l, cfg, conv_keys, err))
        return -1;
    conv_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    s->rank = rank;
    return conv_read(l, cfg, s, err);
}

static int conv1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return conv_configure_rank(l, cfg, 1, err);
}

static int conv2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return conv_configure_rank(l, cfg, 2, err);
}

static int conv_build(ct_layer *l, ct_error *err)
{
    conv_state *s = l->state;
    l->nparams = 0;
    if (ct_conv_window(l, s->rank, s->padding, s->k, s->strides, s->dil, &s->win, err))
        return -1;
    const ct_window *w = &s->win;
    if (w->in_c % s->groups) {
        char buf[256];
        return ct_layer_err(err, l, "the input channels (%lld) of %s must be divisible by "
                            "groups (%lld)", (long long)w->in_c,
                            ct_shape_format(&l->in_shape, buf, sizeof buf), (long long)s->groups);
    }
    s->cg = w->in_c / s->groups;
    s->fg = s->filters / s->groups;
    s->kdim = w->k_h * w->k_w * s->cg;
    s->pointwise = w->k_h == 1 && w->k_w == 1 && w->stride_h == 1 && w->stride_w == 1 &&
                s->groups == 1;
    if (s->pointwise) {
        l->algo = "gemm";
    } else {
        ct_conv_algo a = l->be->conv_algorithm
                             ? l->be->conv_algorithm(w, s->groups, s->filters, l->conv_algo)
                             : CT_CONV_IM2COL;
        s->win.algo = (int)a;
        l->algo = ct_conv_algo_name(a);
    }
    l->out_shape = ct_conv_out_shape(s->rank, w->out_h, w->out_w, s->filters);
    int64_t kd[4] = {w->k_h, w->k_w, s->cg, s->filters};
    ct_shape ks = s->rank == 1 ? ct_shape_make(3, kd + 1) : ct_shape_make(4, kd);
    if (ct_layer_add_param(l, "kernel", ks, s->kernel_init, s->kernel_reg, true, err) < 0)
        return -1;
    if (s->use_bias && ct_layer_add_param(l, "bias", ct_shape_make(1, &s->filters),
                                          s->bias_init, s->bias_reg, true, err) < 0)
        return -1;
    return 0;
}

static int64_t conv_positions(const conv_state *s) { return s->win.out_h * s->win.out_w; }

/* Pre-activation values (only for activations that need them, ct_tail_scratch), then the
 * backend's convolution workspace. */
static int64_t conv_scratch(const ct_layer *l, int64_t max_batch)
{
    const conv_state *s = l->state;
    int64_t n = ct_tail_scratch(s->act, max_batch * ct_shape_size(&l->out_shape));
    if (!s->pointwise)
        n += l->be->conv_workspace(&s->win, s->groups, s->filters, max_batch);
    return n;
}
static float *conv_work(const ct_layer *l, int64_t max_batch)
{
    const conv_state *s = l->state;
    return l->scratch + ct_tail_scratch(s->act, max_batch * ct_shape_size(&l->out_shape));
}

static void conv_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                         ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    const conv_state *s = l->state;
    const ct_backend *be = l->be;
    const int64_t n = x->rows * conv_positions(s);
    const float *bias = s->use_bias ? l->params[1].value : NULL;
    float *z = ct_tail_target(l, s->act, y->data);
    if (s->pointwise) {
        be->gemm(false, false, n, s->filters, s->win.in_c, 1.0f, x->data, s->win.in_c,
                 l->params[0].value, s->filters, 0.0f, z, s->filters);
        ct_tail_forward(l, s->act, bias, z, y->data, n, s->filters);
        return;
    }
    /* Bias and an in-place activation are applied inside, sample by sample. */
    ct_act inner = ct_tail_inner_act(l, s->act, false);
    be->conv_forward(&s->win, s->groups, s->filters, x->data, l->params[0].value, bias, inner, z,
                     x->rows, conv_work(l, y->rows));
    if (z != y->data)
        be->act_forward(s->act, z, y->data, n, s->filters);
}

static void conv_backward_pointwise(const ct_layer *l, const ct_tensor *x, const float *dz,
                                 ct_tensor *dx)
{
    const conv_state *s = l->state;
    const ct_backend *be = l->be;
    const ct_param *kp = &l->params[0];
    const int64_t n = x->rows * conv_positions(s), c = s->win.in_c;
    if (kp->grad)
        be->gemm(true, false, c, s->filters, n, 1.0f, x->data, c, dz, s->filters, 0.0f, kp->grad,
                 s->filters);
    if (dx)
        be->gemm(false, true, n, c, s->filters, 1.0f, dz, s->filters, kp->value, s->filters, 0.0f,
                 dx->data, c);
}

static void conv_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass;
    const conv_state *s = l->state;
    const ct_backend *be = l->be;
    const int64_t n = x->rows * conv_positions(s);
    float *dz = dy->data, *db = s->use_bias ? l->params[1].grad : NULL;
    if (s->pointwise) {
        ct_tail_backward(l, s->act, l->scratch, y->data, dz, db, n, s->filters);
        conv_backward_pointwise(l, x, dz, dx);
        return;
    }
    /* An activation kept outside the fused op is differentiated first. */
    ct_act inner = ct_tail_inner_act(l, s->act, true);
    if (inner.kind == CT_ACT_LINEAR && s->act.kind != CT_ACT_LINEAR && !l->act_fused)
        be->act_backward(s->act, l->scratch, y->data, dz, dz, n, s->filters);
    be->conv_backward(&s->win, s->groups, s->filters, x->data, l->params[0].value, y->data, inner,
                      dz, dx ? dx->data : NULL, l->params[0].grad, db, x->rows,
                      conv_work(l, x->rows));
}

static void conv_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

static ct_activation conv_output_activation(const ct_layer *l)
{
    const conv_state *s = l->state;
    return s->act.kind;
}

const ct_layer_kind ct_layer_conv1d = {
    .name = "conv1d",
    .class_name = "Conv1D",
    .configure = conv1d_configure,
    .build = conv_build,
    .scratch_floats = conv_scratch,
    .forward = conv_forward,
    .backward = conv_backward,
    .free_state = conv_free,
    .output_activation = conv_output_activation,
};

const ct_layer_kind ct_layer_conv2d = {
    .name = "conv2d",
    .class_name = "Conv2D",
    .configure = conv2d_configure,
    .build = conv_build,
    .scratch_floats = conv_scratch,
    .forward = conv_forward,
    .backward = conv_backward,
    .free_state = conv_free,
    .output_activation = conv_output_activation,
};
