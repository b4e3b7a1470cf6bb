/* dense.c - Dense: y = act(x W + b) over the last axis; leading axes act as extra rows,
 * as Keras applies Dense to N-D input. */
#include <stdlib.h>

#include "layer.h"

typedef struct dense_state {
    int64_t units, in;
    ct_act act;
    bool use_bias;
    ct_init kernel_init, bias_init;
    ct_regularizer kernel_reg, bias_reg;
} dense_state;

static const char *const dense_keys[] = {
    "units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
    "kernel_regularizer", "bias_regularizer", NULL,
};

static int dense_read(ct_layer *l, ct_node *cfg, dense_state *s, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    snprintf(what, sizeof what, "layer '%s' (%s)", l->name, l->kind->class_name);
    if (ct_cfg_require(cfg, "units", what, err) ||
        ct_cfg_int(cfg, "units", 1, 1, INT64_MAX, &s->units, err))
        return -1;
    if (s->units > INT32_MAX)  /* the backend's gemm takes int dimensions */
        return ct_node_err(err, ct_map_get(cfg, "units"), "%s: units must be at most %d, got %lld",
                           what, INT32_MAX, (long long)s->units);
    if (ct_layer_parse_act(l, cfg, "activation", "linear", &s->act, err) ||
        ct_cfg_bool(cfg, "use_bias", true, &s->use_bias, err) ||
        ct_init_parse(cfg, "kernel_initializer", "glorot_uniform", &s->kernel_init, err) ||
        ct_init_parse(cfg, "bias_initializer", "zeros", &s->bias_init, err) ||
        ct_regularizer_parse(cfg, "kernel_regularizer", &s->kernel_reg, err) ||
        ct_regularizer_parse(cfg, "bias_regularizer", &s->bias_reg, err))
        return -1;
    return 0;
}

static int dense_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    if (ct_layer_check_keys(l, cfg, dense_keys, err))
        return -1;
    dense_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    return dense_read(l, cfg, s, err);
}

static int dense_build(ct_layer *l, ct_error *err)
{
    dense_state *s = l->state;
    if (l->in_shape.ndim < 1) {
        char buf[256];
        return ct_layer_err(err, l, "expects an input with at least one axis, got %s",
                            ct_shape_format(&l->in_shape, buf, sizeof buf));
    }
    l->nparams = 0; /* build may run again, e.g. after a config change */
    s->in = l->in_shape.dim[l->in_shape.ndim - 1];
    l->out_shape = l->in_shape;
    l->out_shape.dim[l->out_shape.ndim - 1] = s->units;
    int64_t kdim[2] = {s->in, s->units};
    if (ct_layer_add_param(l, "kernel", ct_shape_make(2, kdim), s->kernel_init, s->kernel_reg,
                           true, err) < 0)
        return -1;
    if (s->use_bias && ct_layer_add_param(l, "bias", ct_shape_make(1, &s->units), s->bias_init,
                                          s->bias_reg, true, err) < 0)
        return -1;
    return 0;
}

/* A product of at least this many rows (a layer applied at every position of a sequence,
 * or a large batch) multiplies by the kernel packed for it (gemm_pack_b, gemm_packed),
 * which beats the general GEMM there for the kernels of 64-256 columns measured
 * (bench/RESULTS.md); fewer rows take the general GEMM. */
#define PACKED_ROWS 384

/* Floats of the kernel packed either way round (the forward's x W, the backward's dz W^T). */
static int64_t packed_floats(const dense_state *s)
{
    int64_t a = CT_GEMM_PACKED_FLOATS(s->in, s->units), b = CT_GEMM_PACKED_FLOATS(s->units, s->in);
    return a > b ? a : b;
}

/* Scratch: the pre-activation values, kept only for activations that need them
 * (ct_tail_scratch), then, where a batch can reach PACKED_ROWS rows, the packed kernel. */
static int64_t dense_scratch(const ct_layer *l, int64_t max_batch)
{
    const dense_state *s = l->state;
    int64_t out = max_batch * ct_shape_size(&l->out_shape);
    return ct_tail_scratch(s->act, out) + (out / s->units >= PACKED_ROWS ? packed_floats(s) : 0);
}

/* c (n x cols) = a (n x k) op(w), op(w) = w (k x cols) or, with trans, w^T (w: cols x k).
 * The packed kernel goes after this batch's pre-activation values (n rows of them). */
static void dense_gemm(const ct_layer *l, int64_t n, int64_t k, int64_t cols, const float *a,
                       const float *w, bool trans, float *c)
{
    const dense_state *s = l->state;
    const ct_backend *be = l->be;
    if (n >= PACKED_ROWS) {
        float *pk = l->scratch + ct_tail_scratch(s->act, n * s->units);
        be->gemm_pack_b(trans, k, cols, w, trans ? k : cols, pk);
        be->gemm_packed(n, cols, k, a, k, pk, NULL, 0, c, cols);
    } else {
        be->gemm(false, trans, n, cols, k, 1.0f, a, k, w, trans ? k : cols, 0.0f, c, cols);
    }
}

/* Rows of the matrix product: samples times every leading axis. */
static int64_t dense_rows(const dense_state *s, const ct_tensor *x)
{
    return x->rows * (ct_shape_size(&x->shape) / s->in);
}

static void dense_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    const dense_state *s = l->state;
    int64_t n = dense_rows(s, x);
    float *z = ct_tail_target(l, s->act, y->data);
    dense_gemm(l, n, s->in, s->units, x->data, l->params[0].value, false, z);
    ct_tail_forward(l, s->act, s->use_bias ? l->params[1].value : NULL, z, y->data, n,
                    s->units);
}

static void dense_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                           const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass;
    const dense_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t n = dense_rows(s, x);
    float *dz = dy->data;
    ct_tail_backward(l, s->act, l->scratch, y->data, dz,
                     s->use_bias ? l->params[1].grad : NULL, n, s->units);
    const ct_param *w = &l->params[0];
    if (w->grad)
        be->gemm(true, false, s->in, s->units, n, 1.0f, x->data, s->in, dz, s->units, 0.0f,
                 w->grad, s->units);
    if (dx)
        dense_gemm(l, n, s->units, s->in, dz, w->value, true, dx->data);
}

static void dense_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

static ct_activation dense_output_activation(const ct_layer *l)
{
    const dense_state *s = l->state;
    return s->act.kind;
}

const ct_layer_kind ct_layer_dense = {
    .name = "dense",
    .class_name = "Dense",
    .configure = dense_configure,
    .build = dense_build,
    .scratch_floats = dense_scratch,
    .forward = dense_forward,
    .backward = dense_backward,
    .free_state = dense_free,
    .output_activation = dense_output_activation,
    .masks = CT_MASK_PASSES, /* per step */
};
