/* onnx_export.c - a model as an ONNX file (opset 17, IR version 8) that ONNX Runtime runs:
 * the driver, the graph's ends, and the translations of dense, the convolutions, pools,
 * batch normalization, the merges and the shape and activation layers. The sequence layers
 * are onnx_sequence.c's (onnx_translate.h).
 *
 * Inputs and outputs keep ctrain's (and Keras's) layout: images (N, H, W, C), sequences
 * (N, T, C). ONNX's convolutions and pools take channels first, (N, C, H, W) or (N, C, T),
 * so such a tensor is transposed to it where such an operator needs it and back where a
 * layer needs the channels last (flatten, dense, reshape, the outputs); each transpose is
 * made once per tensor. A model input that an embedding reads is a token input: int64 ids
 * (ctrain's own data carry them as float32 integers). Masks are made where a layer that
 * honours them reads them. Layers without a translation here are refused by name, before
 * anything is written. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "experiment.h"
#include "guard.h"
#include "ctrain.h"
#include "onnx_export.h"
#include "onnx_translate.h"

#define OPSET 17

typedef ct_onnx_exporter exporter;
typedef ct_onnx_val value;

ct_onnx_val *ct_onnx_value_of(ct_onnx_exporter *e, ct_source_id s)
{
    return s < 0 ? &e->values[-1 - s] : &e->values[e->m->ninputs + s];
}

/* The permutation of a tensor of `rank` axes past the batch axis that brings its channels
 * first (from last) or last (from first). */
static void channel_perm(int rank, bool to_first, int64_t *perm)
{
    perm[0] = 0;
    for (int i = 1; i <= rank; i++)
        perm[i] = to_first ? (i == 1 ? rank : i - 1) : (i == rank ? 1 : i + 1);
}

/* A token input's ids as float32, made once, where a layer reads them as numbers. */
static void ids_as_floats(exporter *e, value *v, const char *base)
{
    if (v->nhwc || v->nchw || !v->ids)
        return;
    char *y = ct_onnx_name(&e->g, base, "ids_float");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Cast", base, 1, &v->ids, y), "to",
                     CT_ONNX_FLOAT);
    v->nhwc = y;
}

const char *ct_onnx_any(ct_onnx_exporter *e, ct_onnx_val *v, const char *base)
{
    ids_as_floats(e, v, base);
    return v->nhwc ? v->nhwc : v->nchw;
}

const char *ct_onnx_layout(ct_onnx_exporter *e, ct_onnx_val *v, bool nchw, const char *base)
{
    ids_as_floats(e, v, base);
    if (v->rank < 2)
        return v->nhwc ? v->nhwc : v->nchw;
    int64_t perm[CT_MAX_DIMS + 1];
    if (nchw && !v->nchw) {
        channel_perm(v->rank, true, perm);
        v->nchw = ct_onnx_transpose(e, base, v->nhwc, v->rank + 1, perm);
    } else if (!nchw && !v->nhwc) {
        channel_perm(v->rank, false, perm);
        v->nhwc = ct_onnx_transpose(e, base, v->nchw, v->rank + 1, perm);
    }
    return nchw ? v->nchw : v->nhwc;
}

/* ---- the layer's config and parameters ---- */

const char *ct_onnx_cfg_str(const ct_layer *l, const char *key, const char *def)
{
    const ct_node *cfg = ct_layer_owner(l)->cfg;
    const ct_node *v = cfg ? ct_map_get(cfg, key) : NULL;
    return v && v->type == CT_NODE_SCALAR && !ct_node_is_null(v) ? v->scalar : def;
}

double ct_onnx_cfg_num(const ct_layer *l, const char *key, double def)
{
    const char *s = ct_onnx_cfg_str(l, key, NULL);
    return s ? strtod(s, NULL) : def;
}

void ct_onnx_cfg_ints(const ct_layer *l, const char *key, int n, int64_t def, int64_t *out)
{
    const ct_node *cfg = ct_layer_owner(l)->cfg;
    const ct_node *v = cfg ? ct_map_get(cfg, key) : NULL;
    for (int i = 0; i < n; i++) {
        out[i] = def;
        if (v && v->type == CT_NODE_SCALAR && !ct_node_is_null(v))
            out[i] = strtoll(v->scalar, NULL, 10);
        else if (v && v->type == CT_NODE_SEQ && (size_t)i < v->len)
            out[i] = strtoll(v->items[i]->scalar, NULL, 10);
    }
}

bool ct_onnx_cfg_bool(const ct_layer *l, const char *key, bool def)
{
    const char *s = ct_onnx_cfg_str(l, key, NULL);
    return s ? !strcmp(s, "true") || !strcmp(s, "True") : def;
}

/* The layer whose parameters hold l's weights, and the prefix of their names there. */
static const ct_layer *weights_of(const exporter *e, const ct_layer *l, const char **prefix)
{
    *prefix = e->holder ? e->prefix : NULL;
    return ct_layer_owner(e->holder ? e->holder : l);
}

const ct_param *ct_onnx_param(ct_onnx_exporter *e, const ct_layer *l, const char *name,
                              const float **v)
{
    const char *prefix;
    const ct_layer *o = weights_of(e, l, &prefix);
    char full[CT_NAME_MAX * 2 + 64];
    snprintf(full, sizeof full, "%s%s%s", prefix ? prefix : "", prefix ? "/" : "", name);
    for (int i = 0; i < o->nparams; i++) {
        const ct_param *p = &o->params[i];
        if (strcmp(p->name, full))
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

void ct_onnx_weight_name(ct_onnx_exporter *e, const ct_layer *l, const char *what, char *buf,
                         size_t n)
{
    const char *prefix;
    const ct_layer *o = weights_of(e, l, &prefix);
    snprintf(buf, n, "%s/%s%s%s", o->name, prefix ? prefix : "", prefix ? "/" : "", what);
}

const char *ct_onnx_param_init(ct_onnx_exporter *e, const ct_layer *l, const char *name,
                               int ndim, const int64_t *dims)
{
    const float *v;
    const ct_param *p = ct_onnx_param(e, l, name, &v);
    if (!p)
        return NULL;
    char full[CT_NAME_MAX * 3 + 64];
    ct_onnx_weight_name(e, l, name, full, sizeof full);
    int64_t own[CT_MAX_DIMS];
    if (ndim == 0) {
        ndim = p->shape.ndim;
        for (int i = 0; i < ndim; i++)
            own[i] = p->shape.dim[i];
        dims = own;
    }
    return ct_onnx_floats(&e->g, full, ndim, dims, v);
}

const char *ct_onnx_const_float(ct_onnx_exporter *e, const char *base, float v)
{
    return ct_onnx_floats(&e->g, ct_onnx_name(&e->g, base, "const"), 0, NULL, &v);
}

const char *ct_onnx_const_ints(ct_onnx_exporter *e, const char *base, int n, const int64_t *v)
{
    int64_t len = n;
    return ct_onnx_int64s(&e->g, ct_onnx_name(&e->g, base, "ints"), 1, &len, v);
}

/* ---- small nodes ---- */

const char *ct_onnx_unary(ct_onnx_exporter *e, const char *op, const char *base, const char *x)
{
    char *y = ct_onnx_name(&e->g, base, op);
    ct_onnx_node(&e->g, op, base, 1, &x, y);
    return y;
}

const char *ct_onnx_binary(ct_onnx_exporter *e, const char *op, const char *base,
                           const char *a, const char *b)
{
    const char *in[2] = {a, b};
    char *y = ct_onnx_name(&e->g, base, op);
    ct_onnx_node(&e->g, op, base, 2, in, y);
    return y;
}

const char *ct_onnx_transpose(ct_onnx_exporter *e, const char *base, const char *x, int n,
                              const int64_t *perm)
{
    char *y = ct_onnx_name(&e->g, base, "transposed");
    ct_onnx_attr_ints(&e->g, ct_onnx_node(&e->g, "Transpose", base, 1, &x, y), "perm", n,
                      perm);
    return y;
}

const char *ct_onnx_reshape(ct_onnx_exporter *e, const char *base, const char *x, int n,
                            const int64_t *shape)
{
    return ct_onnx_binary(e, "Reshape", base, x, ct_onnx_const_ints(e, base, n, shape));
}

const char *ct_onnx_squeeze(ct_onnx_exporter *e, const char *op, const char *base,
                            const char *x, int64_t axis)
{
    return ct_onnx_binary(e, op, base, x, ct_onnx_const_ints(e, base, 1, &axis));
}

const char *ct_onnx_reverse(ct_onnx_exporter *e, const char *base, const char *x, int64_t axis)
{
    /* Slice from the last index by steps of -1 to before the first (ends clamp there) */
    int64_t start = -1, end = INT64_MIN, step = -1;
    const char *in[5] = {x, ct_onnx_const_ints(e, base, 1, &start),
                         ct_onnx_const_ints(e, base, 1, &end),
                         ct_onnx_const_ints(e, base, 1, &axis),
                         ct_onnx_const_ints(e, base, 1, &step)};
    char *y = ct_onnx_name(&e->g, base, "reversed");
    ct_onnx_node(&e->g, "Slice", base, 5, in, y);
    return y;
}

/* ---- activations ---- */

const char *ct_onnx_activation(ct_onnx_exporter *e, const char *base, const char *act,
                               float alpha, const char *x, ct_error *err)
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
        const char *in[3] = {x, ct_onnx_const_float(e, base, 0.0f),
                             ct_onnx_const_float(e, base, 6.0f)};
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
        const char *s1[2] = {x, ct_onnx_const_float(e, base, (float)M_SQRT1_2)};
        ct_onnx_node(g, "Mul", base, 2, s1, a);
        ct_onnx_node(g, "Erf", base, 1, (const char *const *)&a, b);
        const char *s2[2] = {b, ct_onnx_const_float(e, base, 1.0f)};
        ct_onnx_node(g, "Add", base, 2, s2, c);
        const char *s3[2] = {x, c};
        ct_onnx_node(g, "Mul", base, 2, s3, d);
        const char *s4[2] = {d, ct_onnx_const_float(e, base, 0.5f)};
        ct_onnx_node(g, "Mul", base, 2, s4, y);
    } else {
        ct_err(err, CT_ERR_USAGE, "layer '%s': the activation '%s' has no ONNX translation "
               "here", base, act);
        return NULL;
    }
    return y;
}

float ct_onnx_default_alpha(const char *act)
{
    return act && !strcmp(act, "leaky_relu") ? 0.2f : 1.0f;
}


/* ---- layers ---- */

/* Short names for the driver's translations. */
#define cfg_str ct_onnx_cfg_str
#define cfg_num ct_onnx_cfg_num
#define cfg_ints ct_onnx_cfg_ints
#define cfg_bool ct_onnx_cfg_bool

/* The begin and end padding of each of n spatial axes for Keras's padding "same" (the odd
 * one at the end, as TensorFlow pads), in ONNX's order: begins, then ends. */
static void same_pads(const ct_shape *in, int n, const int64_t *k, const int64_t *s,
                      const int64_t *d, int64_t *pads)
{
    for (int i = 0; i < n; i++) {
        int64_t size = in->dim[i], out = (size + s[i] - 1) / s[i];
        int64_t total = (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size;
        total = total > 0 ? total : 0;
        pads[i] = total / 2;
        pads[i + n] = total - total / 2;
    }
}

/* Keras's kernel (k..., in, out) as ONNX's (out, in, k...), for kk kernel positions. */
static const char *conv_kernel(exporter *e, const ct_layer *l, int n, const int64_t *k)
{
    const float *kv;
    const ct_param *p = ct_onnx_param(e, l, "kernel", &kv);
    if (!p)
        return NULL;
    int64_t cin = p->shape.dim[n], cout = p->shape.dim[n + 1], kk = 1;
    int64_t dims[4] = {cout, cin, k[0], n > 1 ? k[1] : 0};
    for (int i = 0; i < n; i++)
        kk *= k[i];
    float *w = malloc((size_t)(cout * cin * kk) * sizeof *w);
    if (!w) {
        e->g.failed = true;
        return NULL;
    }
    for (int64_t at = 0; at < kk; at++)
        for (int64_t c = 0; c < cin; c++)
            for (int64_t o = 0; o < cout; o++)
                w[(o * cin + c) * kk + at] = kv[(at * cin + c) * cout + o];
    char full[CT_NAME_MAX * 3 + 64];
    ct_onnx_weight_name(e, l, "kernel", full, sizeof full);
    const char *name = ct_onnx_floats(&e->g, full, n + 2, dims, w);
    free(w);
    return name;
}

/* Conv1D and Conv2D: n = 1 or 2 spatial axes, channels first inside. */
static const char *conv(exporter *e, const ct_layer *l, value *x, ct_error *err)
{
    ct_onnx_graph *g = &e->g;
    int n = x->rank - 1;
    int64_t k[2], s[2], d[2], pads[4] = {0, 0, 0, 0};
    cfg_ints(l, "kernel_size", n, 1, k);
    cfg_ints(l, "strides", n, 1, s);
    cfg_ints(l, "dilation_rate", n, 1, d);
    int64_t groups = (int64_t)cfg_num(l, "groups", 1);
    const char *padding = cfg_str(l, "padding", "valid");
    if (!strcmp(padding, "same"))
        same_pads(&l->in_shape, n, k, s, d, pads);
    else if (!strcmp(padding, "causal")) /* Conv1D: all the padding before the steps */
        pads[0] = (k[0] - 1) * d[0];
    const char *in[3] = {ct_onnx_layout(e, x, true, l->name), conv_kernel(e, l, n, k),
                         ct_onnx_param_init(e, l, "bias", 0, NULL)};
    if (!in[1])
        return NULL;
    char *y = ct_onnx_name(g, l->name, "conv");
    Onnx__NodeProto *node = ct_onnx_node(g, "Conv", l->name, in[2] ? 3 : 2, in, y);
    ct_onnx_attr_ints(g, node, "kernel_shape", n, k);
    ct_onnx_attr_ints(g, node, "strides", n, s);
    ct_onnx_attr_ints(g, node, "dilations", n, d);
    ct_onnx_attr_ints(g, node, "pads", 2 * n, pads);
    ct_onnx_attr_int(g, node, "group", groups);
    const char *act = cfg_str(l, "activation", "linear");
    return ct_onnx_activation(e, l->name, act, ct_onnx_default_alpha(act), y, err);
}

/* The 1-D and 2-D pools (MaxPool, AveragePool), channels first inside. */
static const char *pool(exporter *e, const ct_layer *l, value *x, const char *op)
{
    int n = x->rank - 1;
    int64_t k[2], s[2], d[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
    cfg_ints(l, "pool_size", n, 2, k);
    int64_t def[2];
    cfg_ints(l, "strides", n, -1, def);
    for (int i = 0; i < n; i++)
        s[i] = def[i] > 0 ? def[i] : k[i]; /* strides default to the pool size */
    if (!strcmp(cfg_str(l, "padding", "valid"), "same"))
        same_pads(&l->in_shape, n, k, s, d, pads);
    const char *in = ct_onnx_layout(e, x, true, l->name);
    char *y = ct_onnx_name(&e->g, l->name, op);
    Onnx__NodeProto *node = ct_onnx_node(&e->g, op, l->name, 1, &in, y);
    ct_onnx_attr_ints(&e->g, node, "kernel_shape", n, k);
    ct_onnx_attr_ints(&e->g, node, "strides", n, s);
    ct_onnx_attr_ints(&e->g, node, "pads", 2 * n, pads);
    return y; /* AveragePool leaves the padding out of each mean, as Keras does */
}

/* GlobalAveragePool/GlobalMaxPool over steps or pixels: (N, C, 1[, 1]), which keepdims
 * keeps (channels first); else (N, C). Returns NULL once out is set. */
static const char *global_pool(exporter *e, const ct_layer *l, value *x, const char *op,
                               value *out)
{
    const char *in = ct_onnx_layout(e, x, true, l->name);
    char *y = ct_onnx_name(&e->g, l->name, op);
    ct_onnx_node(&e->g, op, l->name, 1, &in, y);
    if (cfg_bool(l, "keepdims", false)) {
        out->rank = l->out_shape.ndim;
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
    const char *in[3] = {ct_onnx_layout(e, x, false, l->name),
                         ct_onnx_param_init(e, l, "kernel", 0, NULL),
                         ct_onnx_param_init(e, l, "bias", 0, NULL)};
    const char *y;
    if (!in[1]) {
        return NULL;
    } else if (x->rank == 1) { /* (N, in) x (in, out) + b */
        char *g = ct_onnx_name(&e->g, l->name, "gemm");
        ct_onnx_node(&e->g, "Gemm", l->name, in[2] ? 3 : 2, in, g);
        y = g;
    } else { /* over the last axis of (N, ..., in) */
        y = ct_onnx_binary(e, "MatMul", l->name, in[0], in[1]);
        if (in[2])
            y = ct_onnx_binary(e, "Add", l->name, y, in[2]);
    }
    const char *act = cfg_str(l, "activation", "linear");
    return ct_onnx_activation(e, l->name, act, ct_onnx_default_alpha(act), y, err);
}

/* A vector of c values v, the stand-in for a parameter a layer leaves out. */
static const char *filled(exporter *e, const ct_layer *l, const char *what, int64_t c, float v)
{
    float *ones = malloc((size_t)c * sizeof *ones);
    if (!ones) {
        e->g.failed = true;
        return NULL;
    }
    for (int64_t i = 0; i < c; i++)
        ones[i] = v;
    const char *name = ct_onnx_floats(&e->g, ct_onnx_name(&e->g, l->name, what), 1, &c, ones);
    free(ones);
    return name;
}

/* Inference: (x - mean) / sqrt(var + eps) * gamma + beta over the channels, which ONNX
 * wants on axis 1: (N, C), (N, C, T), (N, C, H, W). */
static const char *batch_norm(exporter *e, const ct_layer *l, value *x, ct_error *err)
{
    int64_t axis = (int64_t)cfg_num(l, "axis", -1);
    if (axis != -1 && axis != x->rank) {
        ct_err(err, CT_ERR_USAGE, "layer '%s' (BatchNormalization): axis %lld has no ONNX "
               "translation here; only the channels (-1) do", l->name, (long long)axis);
        return NULL;
    }
    const float *mv;
    const ct_param *mean = ct_onnx_param(e, l, "moving_mean", &mv);
    if (!mean)
        return NULL;
    int64_t c = mean->shape.dim[0];
    const char *gamma = ct_onnx_param_init(e, l, "gamma", 0, NULL);
    const char *beta = ct_onnx_param_init(e, l, "beta", 0, NULL);
    if (!gamma) /* scale: false */
        gamma = filled(e, l, "gamma", c, 1.0f);
    if (!beta) /* center: false */
        beta = filled(e, l, "beta", c, 0.0f);
    const char *in[5] = {ct_onnx_layout(e, x, true, l->name), gamma, beta,
                         ct_onnx_param_init(e, l, "moving_mean", 0, NULL),
                         ct_onnx_param_init(e, l, "moving_variance", 0, NULL)};
    char *y = ct_onnx_name(&e->g, l->name, "bn");
    Onnx__NodeProto *n = ct_onnx_node(&e->g, "BatchNormalization", l->name, 5, in, y);
    ct_onnx_attr_float(&e->g, n, "epsilon", (float)cfg_num(l, "epsilon", 1e-3));
    return y;
}

/* Elementwise merges: every input in one layout (channels first where any input is so
 * already; fewer transposes). */
static int merge(exporter *e, const ct_layer *l, const char *op, value *const *in, value *out)
{
    int n = l->ninputs;
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names) {
        e->g.failed = true;
        return -1;
    }
    bool nchw = false;
    for (int i = 0; i < n; i++)
        nchw |= in[i]->nchw != NULL && in[i]->rank >= 2;
    for (int i = 0; i < n; i++)
        names[i] = ct_onnx_layout(e, in[i], nchw, l->name);
    char *y = ct_onnx_name(&e->g, l->name, op);
    ct_onnx_node(&e->g, op, l->name, n, names, y);
    free(names);
    out->rank = l->out_shape.ndim;
    if (nchw && out->rank >= 2)
        out->nchw = y;
    else
        out->nhwc = y;
    return 0;
}

/* Concatenate: images along their axis channels first, everything else channels last. */
static int concatenate(exporter *e, const ct_layer *l, value *const *in, value *out)
{
    int64_t axis = (int64_t)cfg_num(l, "axis", -1);
    int rank = l->out_shape.ndim + 1; /* with the batch axis */
    if (axis < 0)
        axis += rank;
    bool nchw = rank == 4;
    int n = l->ninputs;
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names) {
        e->g.failed = true;
        return -1;
    }
    for (int i = 0; i < n; i++)
        names[i] = ct_onnx_layout(e, in[i], nchw, l->name);
    static const int64_t first[4] = {0, 2, 3, 1}; /* NHWC axis -> NCHW axis */
    char *y = ct_onnx_name(&e->g, l->name, "concat");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Concat", l->name, n, names, y), "axis",
                     nchw ? first[axis] : axis);
    free(names);
    out->rank = l->out_shape.ndim;
    if (nchw)
        out->nchw = y;
    else
        out->nhwc = y;
    return 0;
}

static const char *flatten(exporter *e, const ct_layer *l, value *x)
{
    const char *in = ct_onnx_layout(e, x, false, l->name);
    char *y = ct_onnx_name(&e->g, l->name, "flatten");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Flatten", l->name, 1, &in, y), "axis", 1);
    return y;
}

static const char *reshape(exporter *e, const ct_layer *l, value *x)
{
    int64_t shape[CT_MAX_DIMS + 1] = {0}; /* 0: keep the batch */
    for (int i = 0; i < l->out_shape.ndim; i++)
        shape[i + 1] = l->out_shape.dim[i];
    return ct_onnx_reshape(e, l->name, ct_onnx_layout(e, x, false, l->name),
                           l->out_shape.ndim + 1, shape);
}

/* Rescaling: x * scale + offset. */
static const char *rescaling(exporter *e, const ct_layer *l, value *x)
{
    const char *y = ct_onnx_binary(e, "Mul", l->name, ct_onnx_any(e, x, l->name),
                                   ct_onnx_const_float(e, l->name,
                                                       (float)cfg_num(l, "scale", 1.0)));
    return ct_onnx_binary(e, "Add", l->name, y,
                          ct_onnx_const_float(e, l->name, (float)cfg_num(l, "offset", 0.0)));
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
    const char *kind = l->kind->name, *in = ct_onnx_any(e, x, l->name);
    if (!strcmp(kind, "activation")) {
        const char *act = cfg_str(l, "activation", "linear");
        return ct_onnx_activation(e, l->name, act, ct_onnx_default_alpha(act), in, err);
    }
    if (!strcmp(kind, "relu")) {
        double slope = cfg_num(l, "negative_slope", 0.0);
        const char *max = cfg_str(l, "max_value", NULL);
        if (max && slope == 0.0)
            return ct_onnx_activation(e, l->name, "relu6", 0, in, err);
        if (max) {
            ct_err(err, CT_ERR_USAGE, "layer '%s' (ReLU) with both max_value and "
                   "negative_slope has no ONNX translation here", l->name);
            return NULL;
        }
        return slope == 0.0 ? ct_onnx_activation(e, l->name, "relu", 0, in, err)
                            : ct_onnx_activation(e, l->name, "leaky_relu", (float)slope, in,
                                                 err);
    }
    if (!strcmp(kind, "leaky_relu"))
        return ct_onnx_activation(e, l->name, "leaky_relu",
                                  (float)cfg_num(l, "negative_slope", 0.3), in, err);
    if (!strcmp(kind, "elu"))
        return ct_onnx_activation(e, l->name, "elu", (float)cfg_num(l, "alpha", 1.0), in, err);
    /* softmax over the last axis: channels last */
    return ct_onnx_activation(e, l->name, "softmax", 0, ct_onnx_layout(e, x, false, l->name),
                              err);
}

static bool kind_is(const char *k, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (!strcmp(k, names[i]))
            return true;
    return false;
}

/* The translations that write their outputs themselves (several inputs or outputs, or
 * the sequence layers); 1 when l is none of them. */
static int translate_whole(exporter *e, const ct_layer *l, value *const *in, value *const *out,
                           ct_error *err)
{
    static const char *const merges[][2] = {{"add", "Sum"},     {"subtract", "Sub"},
                                            {"multiply", "Mul"}, {"average", "Mean"},
                                            {"maximum", "Max"},  {"minimum", "Min"}};
    const char *k = l->kind->name;
    for (int j = 0; j < 6; j++)
        if (!strcmp(k, merges[j][0]))
            return merge(e, l, merges[j][1], in, out[0]);
    if (!strcmp(k, "concatenate"))
        return concatenate(e, l, in, out[0]);
    if (!strcmp(k, "embedding") || !strcmp(k, "token_and_position_embedding"))
        return ct_onnx_embedding(e, l, in[0], out[0]);
    if (!strcmp(k, "position_embedding"))
        return ct_onnx_position_embedding(e, l, in[0], out[0]);
    if (!strcmp(k, "simple_rnn") || !strcmp(k, "lstm") || !strcmp(k, "gru"))
        return ct_onnx_recurrent(e, l, in, out, err);
    if (!strcmp(k, "bidirectional"))
        return ct_onnx_bidirectional(e, l, in, out, err);
    if (!strcmp(k, "time_distributed"))
        return ct_onnx_time_distributed(e, l, in[0], out[0], err);
    if (!strcmp(k, "multi_head_attention"))
        return ct_onnx_attention(e, l, in, out[0]);
    if (!strcmp(k, "global_average_pooling1d") && in[0]->mask)
        return ct_onnx_masked_mean(e, l, in[0], out[0]);
    if (!strcmp(k, "layer_normalization"))
        return ct_onnx_layer_norm(e, l, in[0], out[0]);
    if (!strcmp(k, "masking"))
        return ct_onnx_masking(e, l, in[0], out[0]);
    return 1;
}

/* The one-output translations: y, the name of l's output (channels first where out_nchw
 * says so), or NULL with err set; `unknown` where l has none. */
static const char *translate_one(exporter *e, const ct_layer *l, value *x, value *out,
                                 bool *out_nchw, bool *unknown, ct_error *err)
{
    static const char *const pools[] = {"max_pooling1d", "average_pooling1d", "max_pooling2d",
                                        "average_pooling2d", NULL};
    static const char *const globals[] = {"global_average_pooling1d", "global_max_pooling1d",
                                          "global_average_pooling2d", "global_max_pooling2d",
                                          NULL};
    static const char *const acts[] = {"activation", "relu", "leaky_relu", "elu", NULL};
    const char *k = l->kind->name;
    *out_nchw = false;
    if (!strcmp(k, "dense"))
        return dense(e, l, x, err);
    if (!strcmp(k, "conv1d") || !strcmp(k, "conv2d"))
        return *out_nchw = true, conv(e, l, x, err);
    if (kind_is(k, pools))
        return *out_nchw = true, pool(e, l, x, k[0] == 'm' ? "MaxPool" : "AveragePool");
    if (kind_is(k, globals))
        return global_pool(e, l, x, k[7] == 'a' ? "GlobalAveragePool" : "GlobalMaxPool", out);
    if (!strcmp(k, "batch_normalization"))
        return *out_nchw = true, batch_norm(e, l, x, err);
    if (!strcmp(k, "flatten"))
        return flatten(e, l, x);
    if (!strcmp(k, "reshape"))
        return reshape(e, l, x);
    if (!strcmp(k, "softmax"))
        return activation_layer(e, l, x, err);
    /* elementwise: the output keeps x's layout */
    *out_nchw = x->nchw && !x->nhwc;
    if (!strcmp(k, "rescaling"))
        return rescaling(e, l, x);
    if (kind_is(k, acts))
        return activation_layer(e, l, x, err);
    *unknown = true;
    return NULL;
}

/* A translation that returned -1: out of memory, or its own message; else a weight it
 * needs was missing, which a built model never lacks. */
static int failed(const exporter *e, const ct_layer *l, ct_error *err)
{
    if (e->g.failed)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (err && !err->msg[0])
        return ct_err(err, CT_ERR_INTERNAL, "layer '%s' (%s): a weight its ONNX translation "
                      "needs is missing", l->name, l->kind->class_name);
    return -1;
}

int ct_onnx_translate(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                      ct_onnx_val *const *out, ct_error *err)
{
    out[0]->rank = l->out_shape.ndim;
    if (is_identity(l->kind->name) || l->fused_away) {
        *out[0] = *in[0];
        return 0;
    }
    int rc = translate_whole(e, l, in, out, err);
    if (rc <= 0)
        return rc < 0 ? failed(e, l, err) : 0;
    if (l->noutputs > 1)
        return ct_err(err, CT_ERR_USAGE, "layer '%s' (%s) has several outputs, which the ONNX "
                      "export does not translate", l->name, l->kind->class_name);
    bool nchw, unknown = false;
    const char *y = translate_one(e, l, in[0], out[0], &nchw, &unknown, err);
    if (unknown)
        return ct_err(err, CT_ERR_USAGE, "layer '%s' (%s) has no ONNX translation here; see "
                      "ctrain(1), export, for the layers that translate", l->name,
                      l->kind->class_name);
    if (!y && (out[0]->nhwc || out[0]->nchw))
        return 0; /* a global pool with keepdims set out itself */
    if (!y)
        return failed(e, l, err);
    /* A folded relu (the layer's only consumer) is applied here, where Keras has it. */
    if (l->fused_relu && !(y = ct_onnx_activation(e, l->name, "relu", 0, y, err)))
        return -1;
    if (nchw && out[0]->rank >= 2)
        out[0]->nchw = y;
    else
        out[0]->nhwc = y;
    return 0;
}

/* ---- the driver ---- */

/* The mask tensor s carries, made where a layer reads it (see ct_onnx_val.mask); NULL:
 * none. A tensor passes on the mask of one of its layer's inputs, or the union of
 * theirs, or carries the one its layer writes (mask_zero, masking), as the model decided
 * when it was built. */
static const char *mask_of(exporter *e, ct_source_id s)
{
    const ct_model *m = e->m;
    if (s < 0 || s >= m->nlayers) /* model inputs and states carry none */
        return NULL;
    value *v = ct_onnx_value_of(e, s);
    const ct_layer *l = &m->layers[s];
    if (v->mask || l->mask_out == CT_MASK_NONE)
        return v->mask;
    if (l->mask_out >= 0) {
        v->mask = mask_of(e, m->sources[s][l->mask_out]);
    } else if (l->mask_out == CT_MASK_WRITES) { /* mask_zero (masking made its own) */
        v->mask = ct_onnx_mask_zero(e, l, ct_onnx_value_of(e, m->sources[s][0]));
    } else {
        for (int j = 0; j < l->ninputs; j++) {
            const char *mj = mask_of(e, m->sources[s][j]);
            v->mask = v->mask && mj ? ct_onnx_binary(e, "Max", l->name, v->mask, mj)
                                    : v->mask ? v->mask : mj;
        }
    }
    return v->mask;
}

/* Layers whose output a mask changes (see layer.h), which their translations honour. */
static bool honours_mask(const ct_layer *l)
{
    static const char *const kinds[] = {"multi_head_attention", "global_average_pooling1d",
                                        "simple_rnn", "lstm", "gru", "bidirectional", NULL};
    return kind_is(l->kind->name, kinds);
}

/* Layer i: fills its values (names and layouts) or says why it cannot. */
static int export_layer(exporter *e, int i, ct_error *err)
{
    const ct_model *m = e->m;
    const ct_layer *l = &m->layers[i];
    value **in = malloc((size_t)l->ninputs * sizeof *in), *out[CT_MAX_OUTPUTS];
    if (!in)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int j = 0; j < l->ninputs; j++)
        in[j] = ct_onnx_value_of(e, m->sources[i][j]);
    out[0] = ct_onnx_value_of(e, i);
    for (int k = 1; k < l->noutputs; k++) {
        out[k] = ct_onnx_value_of(e, m->more_at[i] + k - 1);
        out[k]->rank = l->more_shapes[k - 1].ndim;
    }
    for (int j = 0; honours_mask(l) && j < l->ninputs; j++)
        in[j]->mask = mask_of(e, m->sources[i][j]);
    int rc = ct_onnx_translate(e, l, in, out, err);
    free(in);
    return rc;
}

/* Model input k is a token input where a layer reading token ids takes it (as the
 * experiment's data checks decide). */
static bool token_input(const ct_model *m, int k)
{
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        for (int j = 0; m->live[i] && ct_layer_owner(l)->kind->token_ids && j < l->ninputs; j++)
            if (m->sources[i][j] == -1 - k)
                return true;
    }
    return false;
}

/* The graph's inputs: ctrain's names, channels last; token inputs int64. */
static Onnx__ValueInfoProto **graph_inputs(exporter *e)
{
    const ct_model *m = e->m;
    Onnx__ValueInfoProto **ins = calloc((size_t)m->ninputs, sizeof *ins);
    int64_t dims[CT_MAX_DIMS];
    for (int k = 0; ins && k < m->ninputs; k++) {
        bool ids = token_input(m, k);
        for (int i = 0; i < m->input_shapes[k].ndim; i++)
            dims[i] = m->input_shapes[k].dim[i];
        ins[k] = ct_onnx_value(&e->g, m->input_names[k], ids ? CT_ONNX_INT64 : CT_ONNX_FLOAT,
                               m->input_shapes[k].ndim, dims);
        e->values[k] = (value){.rank = m->input_shapes[k].ndim};
        if (ids)
            e->values[k].ids = m->input_names[k];
        else
            e->values[k].nhwc = m->input_names[k];
    }
    return ins;
}

/* The graph's outputs: the model's output names, channels last, each through an Identity
 * so it carries that name. */
static Onnx__ValueInfoProto **graph_outputs(exporter *e)
{
    const ct_model *m = e->m;
    Onnx__ValueInfoProto **outs = calloc((size_t)m->noutputs, sizeof *outs);
    int64_t dims[CT_MAX_DIMS];
    for (int k = 0; outs && k < m->noutputs; k++) {
        value *v = ct_onnx_value_of(e, m->outputs[k]);
        const ct_shape *s = ct_model_output_shape_at(m, k);
        const char *y = ct_onnx_layout(e, v, false, m->output_names[k]);
        ct_onnx_node(&e->g, "Identity", m->output_names[k], 1, &y, m->output_names[k]);
        for (int i = 0; i < s->ndim; i++)
            dims[i] = s->dim[i];
        outs[k] = ct_onnx_value(&e->g, m->output_names[k], CT_ONNX_FLOAT, s->ndim, dims);
    }
    return outs;
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

/* The model message around the graph, written to path. */
static int write_graph(exporter *e, Onnx__GraphProto *graph, const char *path, ct_error *err)
{
    graph->name = (char *)e->m->name;
    graph->n_node = e->g.nnodes;
    graph->node = e->g.nodes;
    graph->n_initializer = e->g.ninits;
    graph->initializer = e->g.inits;
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
    model.graph = graph;
    return write_model(&model, path, err);
}

int ct_model_export_onnx(const ct_model *m, const char *path, ct_error *err)
{
    exporter e = {.m = m};
    e.values = calloc((size_t)(m->ninputs + m->ntensors), sizeof *e.values);
    if (!e.values)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    graph.input = graph_inputs(&e);
    graph.n_input = (size_t)m->ninputs;
    int rc = graph.input ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int i = 0; rc == 0 && i < m->nlayers; i++)
        if (m->live[i])
            rc = export_layer(&e, i, err);
    if (rc == 0 && !(graph.output = graph_outputs(&e)))
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
    graph.n_output = (size_t)m->noutputs;
    if (rc == 0 && e.g.failed)
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory building the ONNX graph");
    if (rc == 0)
        rc = write_graph(&e, &graph, path, err);
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
