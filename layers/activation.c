/* activation.c - Activation and the activation-layer classes (ReLU, LeakyReLU, ELU,
 * Softmax). All apply one backend activation over the last axis; they differ only in how
 * the config names it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

typedef struct act_state {
    ct_act act;
    int64_t axis;  /* Softmax only */
} act_state;

static act_state *act_state_get(ct_layer *l, ct_error *err)
{
    if (!l->state)
        l->state = calloc(1, sizeof(act_state));
    if (!l->state)
        ct_err(err, CT_ERR_NOMEM, "out of memory");
    return l->state;
}

static void act_what(const ct_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "layer '%s' (%s)", l->name, l->kind->class_name);
}

/* Activation */

static int activation_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"activation", NULL};
    act_state *s;
    if (ct_layer_check_keys(l, cfg, keys, err) || !(s = act_state_get(l, err)))
        return -1;
    return ct_layer_parse_act(l, cfg, "activation", NULL, &s->act, err);
}

/* ReLU: Keras's max_value / negative_slope / threshold map onto relu, relu6 and
 * leaky_relu; other combinations have no backend activation. */

static int relu_max_value(ct_layer *l, ct_node *cfg, bool *six, ct_error *err)
{
    ct_node *v = ct_map_get(cfg, "max_value");
    *six = false;
    if (!v) {
        ct_map_set_scalar(cfg, "max_value", "null");
        return 0;
    }
    if (ct_node_is_null(v))
        return 0;
    double m;
    if (ct_node_float(v, &m, err))
        return -1;
    if (m != 6.0) {
        char what[CT_NAME_MAX + 80];
        act_what(l, what, sizeof what);
        return ct_node_err(err, v, "%s: max_value %s is not supported; use null or 6 (relu6)",
                           what, v->scalar);
    }
    *six = true;
    return 0;
}

static int relu_threshold(ct_layer *l, ct_node *cfg, ct_error *err)
{
    double t;
    if (ct_cfg_float(cfg, "threshold", 0.0, -HUGE_VAL, HUGE_VAL, &t, err))
        return -1;
    if (t == 0.0)
        return 0;
    char what[CT_NAME_MAX + 80];
    act_what(l, what, sizeof what);
    const ct_node *v = ct_map_get(cfg, "threshold");
    return ct_node_err(err, v, "%s: threshold %s is not supported; only 0 is", what, v->scalar);
}

static int relu_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"max_value", "negative_slope", "threshold", NULL};
    act_state *s;
    bool six;
    double slope;
    if (ct_layer_check_keys(l, cfg, keys, err) || !(s = act_state_get(l, err)) ||
        relu_max_value(l, cfg, &six, err) ||
        ct_cfg_float(cfg, "negative_slope", 0.0, 0.0, HUGE_VAL, &slope, err) ||
        relu_threshold(l, cfg, err))
        return -1;
    if (six && slope != 0.0)
        return ct_layer_err(err, l, "max_value and a non-zero negative_slope cannot be combined");
    s->act.kind = six ? CT_ACT_RELU6 : slope != 0.0 ? CT_ACT_LEAKY_RELU : CT_ACT_RELU;
    s->act.alpha = (float)slope;
    return 0;
}

/* LeakyReLU: the layer's default slope is 0.3 (the leaky_relu activation's is 0.2). */
static int leaky_relu_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"negative_slope", NULL};
    act_state *s;
    double slope;
    if (ct_layer_check_keys(l, cfg, keys, err) || !(s = act_state_get(l, err)) ||
        ct_cfg_float(cfg, "negative_slope", 0.3, 0.0, HUGE_VAL, &slope, err))
        return -1;
    s->act.kind = CT_ACT_LEAKY_RELU;
    s->act.alpha = (float)slope;
    return 0;
}

static int elu_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"alpha", NULL};
    act_state *s;
    double alpha;
    if (ct_layer_check_keys(l, cfg, keys, err) || !(s = act_state_get(l, err)) ||
        ct_cfg_float(cfg, "alpha", 1.0, -HUGE_VAL, HUGE_VAL, &alpha, err))
        return -1;
    s->act.kind = CT_ACT_ELU;
    s->act.alpha = (float)alpha;
    return 0;
}

static int softmax_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"axis", NULL};
    act_state *s;
    if (ct_layer_check_keys(l, cfg, keys, err) || !(s = act_state_get(l, err)) ||
        ct_cfg_int(cfg, "axis", -1, -CT_MAX_DIMS - 1, CT_MAX_DIMS, &s->axis, err))
        return -1;
    s->act.kind = CT_ACT_SOFTMAX;
    s->act.alpha = 0;
    return 0;
}

/* Shared build / forward / backward */

static int act_build(ct_layer *l, ct_error *err)
{
    (void)err;
    l->nparams = 0;
    l->out_shape = l->in_shape;
    return 0;
}

/* Softmax normalises the last axis only; axis may name it from either end. */
static int softmax_build(ct_layer *l, ct_error *err)
{
    const act_state *s = l->state;
    if (s->axis != -1 && s->axis != l->in_shape.ndim) {
        char buf[256];
        return ct_layer_err(err, l, "only the last axis (-1) is supported, got axis %lld for "
                            "input %s", (long long)s->axis,
                            ct_shape_format(&l->in_shape, buf, sizeof buf));
    }
    return act_build(l, err);
}

/* Rows x cols with cols the last axis, so softmax normalises each vector. */
static void act_dims(const ct_tensor *x, int64_t *rows, int64_t *cols)
{
    *cols = x->shape.ndim > 0 ? x->shape.dim[x->shape.ndim - 1] : 1;
    *rows = *cols > 0 ? ct_tensor_size(x) / *cols : 0;
}

static void act_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                        ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    const act_state *s = l->state;
    int64_t rows, cols;
    act_dims(x, &rows, &cols);
    l->be->act_forward(s->act, x->data, y->data, rows, cols);
}

static void act_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                         const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass;
    const act_state *s = l->state;
    if (!dx)
        return;
    int64_t rows, cols;
    act_dims(x, &rows, &cols);
    if (l->act_fused) {
        /* dy is already the gradient of the pre-activation values */
        if (dx->data != dy->data)
            l->be->copy(dx->data, dy->data, rows * cols);
        return;
    }
    l->be->act_backward(s->act, x->data, y->data, dy->data, dx->data, rows, cols);
}

static void act_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

static ct_activation act_output_activation(const ct_layer *l)
{
    const act_state *s = l->state;
    return s->act.kind;
}

#define CT_ACT_LAYER(var, cfgname, cls, conf, bld)                                         \
    const ct_layer_kind var = {                                                            \
        .name = cfgname,                                                                   \
        .class_name = cls,                                                                 \
        .configure = conf,                                                                 \
        .build = bld,                                                                      \
        .forward = act_forward,                                                            \
        .backward = act_backward,                                                          \
        .free_state = act_free,                                                            \
        .output_activation = act_output_activation,                                        \
        .is_activation = true,                                                             \
        .masks = CT_MASK_PASSES,                                                           \
    }

CT_ACT_LAYER(ct_layer_activation, "activation", "Activation", activation_configure, act_build);
CT_ACT_LAYER(ct_layer_relu, "relu", "ReLU", relu_configure, act_build);
CT_ACT_LAYER(ct_layer_leaky_relu, "leaky_relu", "LeakyReLU", leaky_relu_configure, act_build);
CT_ACT_LAYER(ct_layer_elu, "elu", "ELU", elu_configure, act_build);
CT_ACT_LAYER(ct_layer_softmax, "softmax", "Softmax", softmax_configure, softmax_build);
