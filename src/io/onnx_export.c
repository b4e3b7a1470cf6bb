/* onnx_export.c - a model as an ONNX file (opset 17, IR version 8) that ONNX Runtime runs.
 *
 * Inputs and outputs keep ctrain's (and Keras's) layout: images (N, H, W, C). ONNX's
 * convolutions and pools take (N, C, H, W), so an image tensor is transposed to it where
 * such an operator needs it and back where a layer needs the channels last (flatten,
 * dense, reshape, the outputs); each transpose is made once per tensor. Layers without a
 * translation here are refused by name, before anything is written. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "experiment.h"
#include "guard.h"
#include "ctrain.h"
#include "model.h"
#include "onnx_graph.h"
#include "onnx_export.h"

#define OPSET 17

/* A value of the graph: its name in each layout it has been made in. */
typedef struct value {
    const char *nhwc, *nchw; /* NULL: not made in that layout */
    int rank;                /* without the batch axis */
} value;

typedef struct exporter {
    const ct_model *m;
    ct_onnx_graph g;
    value *values;           /* per model input (first ninputs) then per layer */
    float *host;             /* a parameter read back from the backend */
} exporter;

static value *value_of(exporter *e, ct_source_id s)
{
    return s < 0 ? &e->values[-1 - s] : &e->values[e->m->ninputs + s];
}

/* The value in the layout asked for (channels first only means something for images). */
static const char *as_layout(exporter *e, value *v, bool nchw, const char *base)
{
    if (v->rank != 3)
        return v->nhwc ? v->nhwc : v->nchw;
    if (nchw && !v->nchw) {
        static const int64_t to_first[4] = {0, 3, 1, 2};
        v->nchw = ct_onnx_name(&e->g, base, "nchw");
        Onnx__NodeProto *n = ct_onnx_node(&e->g, "Transpose", base, 1, &v->nhwc, v->nchw);
        ct_onnx_attr_ints(&e->g, n, "perm", 4, to_first);
    } else if (!nchw && !v->nhwc) {
        static const int64_t to_last[4] = {0, 2, 3, 1};
        v->nhwc = ct_onnx_name(&e->g, base, "nhwc");
        Onnx__NodeProto *n = ct_onnx_node(&e->g, "Transpose", base, 1, &v->nchw, v->nhwc);
        ct_onnx_attr_ints(&e->g, n, "perm", 4, to_last);
    }
    return nchw ? v->nchw : v->nhwc;
}

/* ---- the layer's config and parameters ---- */

static const char *cfg_str(const ct_layer *l, const char *key, const char *def)
{
    const ct_node *v = l->cfg ? ct_map_get(l->cfg, key) : NULL;
    return v && v->type == CT_NODE_SCALAR && !ct_node_is_null(v) ? v->scalar : def;
}

static double cfg_num(const ct_layer *l, const char *key, double def)
{
    const char *s = cfg_str(l, key, NULL);
    return s ? strtod(s, NULL) : def;
}

/* An int or a list of n ints (a kernel size, strides); missing: def each. */
static void cfg_ints(const ct_layer *l, const char *key, int n, int64_t def, int64_t *out)
{
    const ct_node *v = l->cfg ? ct_map_get(l->cfg, key) : NULL;
    for (int i = 0; i < n; i++) {
        out[i] = def;
        if (v && v->type == CT_NODE_SCALAR && !ct_node_is_null(v))
            out[i] = strtoll(v->scalar, NULL, 10);
        else if (v && v->type == CT_NODE_SEQ && (size_t)i < v->len)
            out[i] = strtoll(v->items[i]->scalar, NULL, 10);
    }
}

static bool cfg_bool(const ct_layer *l, const char *key, bool def)
{
    const char *s = cfg_str(l, key, NULL);
    return s ? !strcmp(s, "true") || !strcmp(s, "True") : def;
}

/* Parameter `name` of l (a shared layer's come from its owner) in host memory, or NULL. */
static const ct_param *param(exporter *e, const ct_layer *l, const char *name, const float **v)
{
    const ct_layer *o = ct_layer_owner(l);
    for (int i = 0; i < o->nparams; i++) {
        const ct_param *p = &o->params[i];
        if (strcmp(p->name, name))
            continue;
        int64_t n = ct_shape_size(&p->shape);
        float *h = realloc(e->host, (size_t)(n ? n : 1) * sizeof *h);
        if (!h) {
            e->g.failed = true;
            return NULL;
        }
        e->host = h;
        e->m->be->download(h, p->value, (size_t)n * sizeof *h);
        *v = h;
        return p;
    }
    return NULL;
}

/* An initializer of parameter `name`, named "<layer>/<name>", in its own shape. */
static const char *param_init(exporter *e, const ct_layer *l, const char *name)
{
    const float *v;
    const ct_param *p = param(e, l, name, &v);
    if (!p)
        return NULL;
    char full[CT_NAME_MAX + 64];
    snprintf(full, sizeof full, "%s/%s", ct_layer_owner(l)->name, name);
    int64_t dims[CT_MAX_DIMS];
    for (int i = 0; i < p->shape.ndim; i++)
        dims[i] = p->shape.dim[i];
    return ct_onnx_floats(&e->g, full, p->shape.ndim, dims, v);
}

static const char *const_float(exporter *e, const char *base, float v)
{
    return ct_onnx_floats(&e->g, ct_onnx_name(&e->g, base, "const"), 0, NULL, &v);
}

/* ---- activations ---- */

/* y = act(x) by its Keras name (NULL or "linear": x itself). */
static const char *activation(exporter *e, const char *base, const char *act, float alpha,
                              const char *x, ct_error *err)
{
    ct_onnx_graph *g = &e->g;
    static const struct { const char *keras, *onnx; } plain[] = {
        {"relu", "Relu"},         {"sigmoid", "Sigmoid"}, {"tanh", "Tanh"},
        {"softplus", "Softplus"}, {"softsign", "Softsign"}, {"selu", "Selu"},
        {"exponential", "Exp"},
    };
    if (!act || !strcmp(act, "linear"))
        return x;
    char *y = ct_onnx_name(g, base, act);
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        if (!strcmp(act, plain[i].keras)) {
            ct_onnx_node(g, plain[i].onnx, base, 1, &x, y);
            return y;
        }
    if (!strcmp(act, "softmax") || !strcmp(act, "log_softmax")) {
        Onnx__NodeProto *n = ct_onnx_node(g, act[0] == 's' ? "Softmax" : "LogSoftmax", base, 1,
                                          &x, y);
        ct_onnx_attr_int(g, n, "axis", -1);
    } else if (!strcmp(act, "leaky_relu")) {
        ct_onnx_attr_float(g, ct_onnx_node(g, "LeakyRelu", base, 1, &x, y), "alpha", alpha);
    } else if (!strcmp(act, "elu")) {
        ct_onnx_attr_float(g, ct_onnx_node(g, "Elu", base, 1, &x, y), "alpha", alpha);
    } else if (!strcmp(act, "relu6")) {
        const char *in[3] = {x, const_float(e, base, 0.0f), const_float(e, base, 6.0f)};
        ct_onnx_node(g, "Clip", base, 3, in, y);
    } else if (!strcmp(act, "hard_sigmoid")) { /* Keras 3: relu6(x + 3) / 6 */
        Onnx__NodeProto *n = ct_onnx_node(g, "HardSigmoid", base, 1, &x, y);
        ct_onnx_attr_float(g, n, "alpha", 1.0f / 6.0f);
        ct_onnx_attr_float(g, n, "beta", 0.5f);
    } else if (!strcmp(act, "silu") || !strcmp(act, "swish")) {
        char *s = ct_onnx_name(g, base, "sigmoid");
        ct_onnx_node(g, "Sigmoid", base, 1, &x, s);
        const char *in[2] = {x, s};
        ct_onnx_node(g, "Mul", base, 2, in, y);
    } else if (!strcmp(act, "gelu")) { /* the exact form: x (1 + erf(x / sqrt 2)) / 2 */
        char *a = ct_onnx_name(g, base, "scaled"), *b = ct_onnx_name(g, base, "erf"),
             *c = ct_onnx_name(g, base, "plus1"), *d = ct_onnx_name(g, base, "times");
        const char *s1[2] = {x, const_float(e, base, (float)M_SQRT1_2)};
        ct_onnx_node(g, "Mul", base, 2, s1, a);
        ct_onnx_node(g, "Erf", base, 1, (const char *const *)&a, b);
        const char *s2[2] = {b, const_float(e, base, 1.0f)};
        ct_onnx_node(g, "Add", base, 2, s2, c);
        const char *s3[2] = {x, c};
        ct_onnx_node(g, "Mul", base, 2, s3, d);
        const char *s4[2] = {d, const_float(e, base, 0.5f)};
        ct_onnx_node(g, "Mul", base, 2, s4, y);
    } else {
        ct_err(err, CT_ERR_USAGE, "layer '%s': the activation '%s' has no ONNX translation "
               "here", base, act);
        return NULL;
    }
    return y;
}

/* Keras's alpha of an activation named in a layer's config (leaky_relu 0.2, elu 1). */
static float default_alpha(const char *act)
{
    return act && !strcmp(act, "leaky_relu") ? 0.2f : 1.0f;
}

/* ---- layers ---- */

/* The begin and end padding of each spatial axis for Keras's padding "same" (the odd one at
 * the end, as TensorFlow pads), in ONNX's order: begins, then ends. */
static void same_pads(const ct_shape *in, const int64_t *k, const int64_t *s, const int64_t *d,
                      int64_t *pads)
{
    for (int i = 0; i < 2; i++) {
        int64_t size = in->dim[i], out = (size + s[i] - 1) / s[i];
        int64_t total = (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size;
        total = total > 0 ? total : 0;
        pads[i] = total / 2;
        pads[i + 2] = total - total / 2;
    }
}

static const char *conv2d(exporter *e, const ct_layer *l, value *x, ct_error *err)
{
    ct_onnx_graph *g = &e->g;
    int64_t k[2], s[2], d[2], pads[4] = {0, 0, 0, 0};
    cfg_ints(l, "kernel_size", 2, 1, k);
    cfg_ints(l, "strides", 2, 1, s);
    cfg_ints(l, "dilation_rate", 2, 1, d);
    int64_t groups = (int64_t)cfg_num(l, "groups", 1);
    if (!strcmp(cfg_str(l, "padding", "valid"), "same"))
        same_pads(&l->in_shape, k, s, d, pads);
    /* Keras's kernel (kh, kw, in, out) as ONNX's (out, in, kh, kw) */
    const float *kv;
    const ct_param *p = param(e, l, "kernel", &kv);
    if (!p)
        return NULL;
    int64_t cin = p->shape.dim[2], cout = p->shape.dim[3], dims[4] = {cout, cin, k[0], k[1]};
    float *w = malloc((size_t)(cout * cin * k[0] * k[1]) * sizeof *w);
    if (!w) {
        g->failed = true;
        return NULL;
    }
    for (int64_t i = 0; i < k[0]; i++)
        for (int64_t j = 0; j < k[1]; j++)
            for (int64_t c = 0; c < cin; c++)
                for (int64_t o = 0; o < cout; o++)
                    w[((o * cin + c) * k[0] + i) * k[1] + j] = kv[((i * k[1] + j) * cin + c) * cout + o];
    char full[CT_NAME_MAX + 16];
    snprintf(full, sizeof full, "%s/kernel", ct_layer_owner(l)->name);
    const char *in[3] = {as_layout(e, x, true, l->name), ct_onnx_floats(g, full, 4, dims, w),
                         param_init(e, l, "bias")};
    free(w);
    char *y = ct_onnx_name(g, l->name, "conv");
    Onnx__NodeProto *n = ct_onnx_node(g, "Conv", l->name, in[2] ? 3 : 2, in, y);
    ct_onnx_attr_ints(g, n, "kernel_shape", 2, k);
    ct_onnx_attr_ints(g, n, "strides", 2, s);
    ct_onnx_attr_ints(g, n, "dilations", 2, d);
    ct_onnx_attr_ints(g, n, "pads", 4, pads);
    ct_onnx_attr_int(g, n, "group", groups);
    const char *act = cfg_str(l, "activation", "linear");
    return activation(e, l->name, act, default_alpha(act), y, err);
}

static const char *pool2d(exporter *e, const ct_layer *l, value *x, const char *op)
{
    int64_t k[2], s[2], d[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
    cfg_ints(l, "pool_size", 2, 2, k);
    int64_t def[2];
    cfg_ints(l, "strides", 2, -1, def);
    for (int i = 0; i < 2; i++)
        s[i] = def[i] > 0 ? def[i] : k[i]; /* strides default to the pool size */
    if (!strcmp(cfg_str(l, "padding", "valid"), "same"))
        same_pads(&l->in_shape, k, s, d, pads);
    const char *in = as_layout(e, x, true, l->name);
    char *y = ct_onnx_name(&e->g, l->name, op);
    Onnx__NodeProto *n = ct_onnx_node(&e->g, op, l->name, 1, &in, y);
    ct_onnx_attr_ints(&e->g, n, "kernel_shape", 2, k);
    ct_onnx_attr_ints(&e->g, n, "strides", 2, s);
    ct_onnx_attr_ints(&e->g, n, "pads", 4, pads);
    return y; /* AveragePool leaves the padding out of each mean, as Keras does */
}

/* GlobalAveragePool/GlobalMaxPool (N, C, 1, 1), then (N, C) unless keepdims. */
static const char *global_pool2d(exporter *e, const ct_layer *l, value *x, const char *op,
                                 value *out)
{
    const char *in = as_layout(e, x, true, l->name);
    char *y = ct_onnx_name(&e->g, l->name, op);
    ct_onnx_node(&e->g, op, l->name, 1, &in, y);
    if (cfg_bool(l, "keepdims", false)) {
        out->rank = 3;
        out->nchw = y;
        return NULL;
    }
    char *f = ct_onnx_name(&e->g, l->name, "flat");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Flatten", l->name, 1, (const char **)&y, f),
                     "axis", 1);
    return f;
}

static const char *dense(exporter *e, const ct_layer *l, value *x, ct_error *err)
{
    ct_onnx_graph *g = &e->g;
    const char *in[3] = {as_layout(e, x, false, l->name), param_init(e, l, "kernel"),
                         param_init(e, l, "bias")};
    char *y = ct_onnx_name(g, l->name, "matmul");
    if (x->rank == 1) { /* (N, in) x (in, out) + b */
        ct_onnx_node(g, "Gemm", l->name, in[2] ? 3 : 2, in, y);
    } else {
        ct_onnx_node(g, "MatMul", l->name, 2, in, y);
        if (in[2]) {
            const char *add[2] = {y, in[2]};
            y = ct_onnx_name(g, l->name, "bias");
            ct_onnx_node(g, "Add", l->name, 2, add, y);
        }
    }
    const char *act = cfg_str(l, "activation", "linear");
    return activation(e, l->name, act, default_alpha(act), y, err);
}

/* Inference: (x - mean) / sqrt(var + eps) * gamma + beta over the channels. */
static const char *batch_norm(exporter *e, const ct_layer *l, value *x, ct_error *err)
{
    int64_t axis = (int64_t)cfg_num(l, "axis", -1);
    if (axis != -1 && axis != x->rank) {
        ct_err(err, CT_ERR_USAGE, "layer '%s' (BatchNormalization): axis %lld has no ONNX "
               "translation here; only the channels (-1) do", l->name, (long long)axis);
        return NULL;
    }
    const float *mv;
    const ct_param *mean = param(e, l, "moving_mean", &mv);
    if (!mean)
        return NULL;
    int64_t c = mean->shape.dim[0];
    float *ones = malloc((size_t)c * 2 * sizeof *ones);
    if (!ones) {
        e->g.failed = true;
        return NULL;
    }
    for (int64_t i = 0; i < c; i++)
        ones[i] = 1.0f, ones[c + i] = 0.0f;
    const char *gamma = param_init(e, l, "gamma"), *beta = param_init(e, l, "beta");
    if (!gamma) /* scale: false */
        gamma = ct_onnx_floats(&e->g, ct_onnx_name(&e->g, l->name, "gamma"), 1, &c, ones);
    if (!beta) /* center: false */
        beta = ct_onnx_floats(&e->g, ct_onnx_name(&e->g, l->name, "beta"), 1, &c, ones + c);
    free(ones);
    /* (N, C) and (N, C, H, W) carry the channels on axis 1; (N, T, C) would not */
    if (x->rank == 2) {
        ct_err(err, CT_ERR_USAGE, "layer '%s' (BatchNormalization) over (steps, channels) "
               "has no ONNX translation here", l->name);
        return NULL;
    }
    const char *in[5] = {as_layout(e, x, true, l->name), gamma, beta,
                         param_init(e, l, "moving_mean"), param_init(e, l, "moving_variance")};
    char *y = ct_onnx_name(&e->g, l->name, "bn");
    Onnx__NodeProto *n = ct_onnx_node(&e->g, "BatchNormalization", l->name, 5, in, y);
    ct_onnx_attr_float(&e->g, n, "epsilon", (float)cfg_num(l, "epsilon", 1e-3));
    return y;
}

/* Elementwise merges: every input in one layout (channels first where any image input is
 * so already; fewer transposes). */
static void merge(exporter *e, const ct_layer *l, const char *op, value *out)
{
    ct_onnx_graph *g = &e->g;
    const char *in[64];
    int n = l->ninputs < 64 ? l->ninputs : 64;
    bool nchw = false;
    for (int i = 0; i < n; i++)
        nchw |= value_of(e, e->m->sources[l->index][i])->nchw != NULL &&
                value_of(e, e->m->sources[l->index][i])->rank == 3;
    for (int i = 0; i < n; i++)
        in[i] = as_layout(e, value_of(e, e->m->sources[l->index][i]), nchw, l->name);
    char *y = ct_onnx_name(g, l->name, op);
    ct_onnx_node(g, op, l->name, n, in, y);
    out->rank = l->out_shape.ndim;
    if (nchw && out->rank == 3)
        out->nchw = y;
    else
        out->nhwc = y;
}

static void concatenate(exporter *e, const ct_layer *l, value *out)
{
    int64_t axis = (int64_t)cfg_num(l, "axis", -1);
    int rank = l->out_shape.ndim + 1; /* with the batch axis */
    if (axis < 0)
        axis += rank;
    bool nchw = rank == 4;
    const char *in[64];
    int n = l->ninputs < 64 ? l->ninputs : 64;
    for (int i = 0; i < n; i++)
        in[i] = as_layout(e, value_of(e, e->m->sources[l->index][i]), nchw, l->name);
    static const int64_t first[4] = {0, 2, 3, 1}; /* NHWC axis -> NCHW axis */
    char *y = ct_onnx_name(&e->g, l->name, "concat");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Concat", l->name, n, in, y), "axis",
                     nchw ? first[axis] : axis);
    out->rank = l->out_shape.ndim;
    if (nchw)
        out->nchw = y;
    else
        out->nhwc = y;
}

static const char *flatten(exporter *e, const ct_layer *l, value *x)
{
    const char *in = as_layout(e, x, false, l->name);
    char *y = ct_onnx_name(&e->g, l->name, "flatten");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Flatten", l->name, 1, &in, y), "axis", 1);
    return y;
}

static const char *reshape(exporter *e, const ct_layer *l, value *x)
{
    int64_t shape[CT_MAX_DIMS + 1] = {0}, n = l->out_shape.ndim + 1; /* 0: keep the batch */
    for (int i = 0; i < l->out_shape.ndim; i++)
        shape[i + 1] = l->out_shape.dim[i];
    const char *in[2] = {as_layout(e, x, false, l->name),
                         ct_onnx_int64s(&e->g, ct_onnx_name(&e->g, l->name, "shape"), 1, &n, shape)};
    char *y = ct_onnx_name(&e->g, l->name, "reshape");
    ct_onnx_node(&e->g, "Reshape", l->name, 2, in, y);
    return y;
}

/* Rescaling: x * scale + offset. */
static const char *rescaling(exporter *e, const ct_layer *l, value *x)
{
    const char *in[2] = {x->nhwc ? x->nhwc : x->nchw,
                         const_float(e, l->name, (float)cfg_num(l, "scale", 1.0))};
    char *y = ct_onnx_name(&e->g, l->name, "scaled");
    ct_onnx_node(&e->g, "Mul", l->name, 2, in, y);
    const char *add[2] = {y, const_float(e, l->name, (float)cfg_num(l, "offset", 0.0))};
    char *z = ct_onnx_name(&e->g, l->name, "offset");
    ct_onnx_node(&e->g, "Add", l->name, 2, add, z);
    return z;
}

/* Layers that change nothing at inference. */
static bool is_identity(const char *kind)
{
    static const char *const kinds[] = {
        "dropout", "spatial_dropout1d", "spatial_dropout2d", "gaussian_dropout",
        "gaussian_noise", "alpha_dropout", "activity_regularization", "random_flip",
        "random_translation", "random_zoom", "random_rotation", "random_contrast", NULL,
    };
    for (int i = 0; kinds[i]; i++)
        if (!strcmp(kind, kinds[i]))
            return true;
    return false;
}

/* An activation layer's function: activation, relu (plain or relu6, negative_slope),
 * leaky_relu, elu, softmax (last axis). */
static const char *activation_layer(exporter *e, const ct_layer *l, value *x, ct_error *err)
{
    const char *kind = l->kind->name, *in = x->nhwc ? x->nhwc : x->nchw;
    if (!strcmp(kind, "activation")) {
        const char *act = cfg_str(l, "activation", "linear");
        return activation(e, l->name, act, default_alpha(act), in, err);
    }
    if (!strcmp(kind, "relu")) {
        double slope = cfg_num(l, "negative_slope", 0.0);
        const char *max = cfg_str(l, "max_value", NULL);
        if (max && slope == 0.0)
            return activation(e, l->name, "relu6", 0, in, err);
        if (max) {
            ct_err(err, CT_ERR_USAGE, "layer '%s' (ReLU) with both max_value and "
                   "negative_slope has no ONNX translation here", l->name);
            return NULL;
        }
        return slope == 0.0 ? activation(e, l->name, "relu", 0, in, err)
                            : activation(e, l->name, "leaky_relu", (float)slope, in, err);
    }
    if (!strcmp(kind, "leaky_relu"))
        return activation(e, l->name, "leaky_relu", (float)cfg_num(l, "negative_slope", 0.3),
                          in, err);
    if (!strcmp(kind, "elu"))
        return activation(e, l->name, "elu", (float)cfg_num(l, "alpha", 1.0), in, err);
    /* softmax over the last axis: channels last for an image */
    return activation(e, l->name, "softmax", 0, as_layout(e, x, false, l->name), err);
}

/* Layer i: fills its value (name and layout) or says why it cannot. */
static int export_layer(exporter *e, int i, ct_error *err)
{
    const ct_model *m = e->m;
    const ct_layer *l = &m->layers[i];
    value *out = value_of(e, i), *x = value_of(e, m->sources[i][0]);
    const char *k = l->kind->name, *y = NULL;
    bool layout_kept = false; /* elementwise: the output keeps x's layout */
    out->rank = l->out_shape.ndim;
    if (l->noutputs > 1)
        return ct_err(err, CT_ERR_USAGE, "layer '%s' (%s) has several outputs, which the ONNX "
                      "export does not translate", l->name, l->kind->class_name);
    if (is_identity(k) || l->fused_away) {
        *out = *x;
        return 0;
    }
    if (!strcmp(k, "dense"))
        y = dense(e, l, x, err);
    else if (!strcmp(k, "conv2d"))
        y = conv2d(e, l, x, err);
    else if (!strcmp(k, "max_pooling2d") || !strcmp(k, "average_pooling2d"))
        y = pool2d(e, l, x, k[0] == 'm' ? "MaxPool" : "AveragePool");
    else if (!strcmp(k, "global_average_pooling2d") || !strcmp(k, "global_max_pooling2d")) {
        y = global_pool2d(e, l, x, k[7] == 'a' ? "GlobalAveragePool" : "GlobalMaxPool", out);
        if (!y && !e->g.failed)
            return 0;
    } else if (!strcmp(k, "batch_normalization"))
        y = batch_norm(e, l, x, err);
    else if (!strcmp(k, "flatten"))
        y = flatten(e, l, x);
    else if (!strcmp(k, "reshape"))
        y = reshape(e, l, x);
    else if (!strcmp(k, "rescaling"))
        y = rescaling(e, l, x), layout_kept = true;
    else if (!strcmp(k, "activation") || !strcmp(k, "relu") || !strcmp(k, "leaky_relu") ||
             !strcmp(k, "elu") || !strcmp(k, "softmax"))
        y = activation_layer(e, l, x, err), layout_kept = strcmp(k, "softmax") != 0;
    else if (!strcmp(k, "add") || !strcmp(k, "subtract") || !strcmp(k, "multiply") ||
             !strcmp(k, "average") || !strcmp(k, "maximum") || !strcmp(k, "minimum")) {
        static const char *const ops[][2] = {{"add", "Sum"},     {"subtract", "Sub"},
                                             {"multiply", "Mul"}, {"average", "Mean"},
                                             {"maximum", "Max"},  {"minimum", "Min"}};
        for (int j = 0; j < 6; j++)
            if (!strcmp(k, ops[j][0]))
                merge(e, l, ops[j][1], out);
        return e->g.failed ? ct_err(err, CT_ERR_NOMEM, "out of memory") : 0;
    } else if (!strcmp(k, "concatenate")) {
        concatenate(e, l, out);
        return e->g.failed ? ct_err(err, CT_ERR_NOMEM, "out of memory") : 0;
    } else
        return ct_err(err, CT_ERR_USAGE, "layer '%s' (%s) has no ONNX translation here; the "
                      "export takes dense, conv2d, the 2-D pools, batch_normalization, "
                      "flatten, reshape, rescaling, the activation layers, the merges and the "
                      "layers that do nothing at inference (dropout, noise, augmentation)",
                      l->name, l->kind->class_name);
    if (!y)
        return e->g.failed ? ct_err(err, CT_ERR_NOMEM, "out of memory") : -1;
    /* A folded relu (the layer's only consumer) is applied here, where Keras has it. */
    if (l->fused_relu && !(y = activation(e, l->name, "relu", 0, y, err)))
        return -1;
    bool nchw = out->rank == 3 && (layout_kept ? x->nchw && !x->nhwc
                                               : !strcmp(k, "conv2d") || strstr(k, "pooling2d") ||
                                                     !strcmp(k, "batch_normalization"));
    if (nchw)
        out->nchw = y;
    else
        out->nhwc = y;
    return 0;
}

/* The graph's inputs (ctrain's names, channels last) and outputs (the model's output
 * names, channels last, each through an Identity so it carries that name). */
static int graph_ends(exporter *e, Onnx__GraphProto *graph, ct_error *err)
{
    const ct_model *m = e->m;
    Onnx__ValueInfoProto **ins = calloc((size_t)m->ninputs, sizeof *ins);
    Onnx__ValueInfoProto **outs = calloc((size_t)m->noutputs, sizeof *outs);
    if (!ins || !outs) {
        free(ins);
        free(outs);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    int64_t dims[CT_MAX_DIMS];
    for (int k = 0; k < m->ninputs; k++) {
        for (int i = 0; i < m->input_shapes[k].ndim; i++)
            dims[i] = m->input_shapes[k].dim[i];
        ins[k] = ct_onnx_value(&e->g, m->input_names[k], m->input_shapes[k].ndim, dims);
    }
    for (int k = 0; k < m->noutputs; k++) {
        value *v = value_of(e, m->outputs[k]);
        const ct_shape *s = ct_model_output_shape_at(m, k);
        const char *y = as_layout(e, v, false, m->output_names[k]);
        ct_onnx_node(&e->g, "Identity", m->output_names[k], 1, &y, m->output_names[k]);
        for (int i = 0; i < s->ndim; i++)
            dims[i] = s->dim[i];
        outs[k] = ct_onnx_value(&e->g, m->output_names[k], s->ndim, dims);
    }
    graph->n_input = (size_t)m->ninputs;
    graph->input = ins;
    graph->n_output = (size_t)m->noutputs;
    graph->output = outs;
    return 0;
}

/* The serialized model into path, through a temporary file renamed into place. */
static int write_model(const Onnx__ModelProto *model, const char *path, ct_error *err)
{
    size_t n = onnx__model_proto__get_packed_size(model);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return ct_err(err, CT_ERR_NOMEM, "out of memory for a %zu-byte ONNX model", n);
    onnx__model_proto__pack(model, buf);
    char *tmp = ct_temp_beside(path, err);
    FILE *f = tmp ? fopen(tmp, "wb") : NULL;
    int rc = -1;
    if (tmp && !f)
        ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (f) {
        bool ok = fwrite(buf, 1, n, f) == n;
        ok &= fclose(f) == 0;
        if (!ok)
            ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        else
            rc = ct_commit_temp(tmp, path, err);
    }
    if (tmp && rc < 0)
        unlink(tmp);
    free(tmp);
    free(buf);
    return rc;
}

int ct_model_export_onnx(const ct_model *m, const char *path, ct_error *err)
{
    exporter e = {.m = m};
    e.values = calloc((size_t)(m->ninputs + m->nlayers), sizeof *e.values);
    if (!e.values)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < m->ninputs; k++)
        e.values[k] = (value){.nhwc = m->input_names[k], .rank = m->input_shapes[k].ndim};
    int rc = 0;
    for (int i = 0; rc == 0 && i < m->nlayers; i++)
        if (m->live[i])
            rc = export_layer(&e, i, err);
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    if (rc == 0)
        rc = graph_ends(&e, &graph, err);
    if (rc == 0 && e.g.failed)
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory building the ONNX graph");
    if (rc == 0) {
        graph.name = (char *)m->name;
        graph.n_node = e.g.nnodes;
        graph.node = e.g.nodes;
        graph.n_initializer = e.g.ninits;
        graph.initializer = e.g.inits;
        Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
        Onnx__OperatorSetIdProto *opsets[1] = {&opset};
        opset.domain = "";
        opset.has_version = 1;
        opset.version = OPSET;
        Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
        model.has_ir_version = 1;
        model.ir_version = 8;
        model.n_opset_import = 1;
        model.opset_import = opsets;
        model.producer_name = "ctrain";
        model.producer_version = PACKAGE_VERSION;
        model.graph = &graph;
        rc = write_model(&model, path, err);
    }
    if (rc < 0)
        ct_err_prefix(err, "exporting %s to ONNX", m->name);
    free(graph.input);
    free(graph.output);
    free(e.values);
    free(e.host);
    ct_onnx_graph_free(&e.g);
    return rc;
}

int ct_experiment_export_onnx(ct_experiment *ex, const char *path, ct_error *err)
{
    return ct_model_export_onnx(ex->model, path, err);
}
