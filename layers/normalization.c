/* normalization.c - BatchNormalization, LayerNormalization and GroupNormalization over the
 * last (channels) axis, with Keras 3's parameters, defaults and weight order. */
#include <math.h>
#include <stdlib.h>

#include "layer.h"

typedef enum { NORM_BATCH, NORM_LAYER, NORM_GROUP } norm_kind;

typedef struct norm_state {
    norm_kind kind;
    int64_t axis;          /* as configured: -1 or the index of the last axis */
    int64_t groups;        /* group norm only; 1 otherwise */
    double epsilon, momentum;
    bool center, scale;
    ct_init gamma_init, beta_init, mean_init, var_init;
    ct_regularizer gamma_reg, beta_reg;
    int64_t c, spatial;    /* channels; positions per sample (product of the other axes) */
    int gamma_idx, beta_idx, mean_idx, var_idx; /* -1 when absent */
} norm_state;

static const char *const batch_keys[] = {
    "axis", "momentum", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer",
    "moving_mean_initializer", "moving_variance_initializer", "beta_regularizer",
    "gamma_regularizer", NULL,
};

static const char *const layer_keys[] = {
    "axis", "epsilon", "center", "scale", "rms_scaling", "beta_initializer",
    "gamma_initializer", "beta_regularizer", "gamma_regularizer", NULL,
};

static const char *const group_keys[] = {
    "groups", "axis", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer",
    "beta_regularizer", "gamma_regularizer", NULL,
};

/* "layer 'bn' (BatchNormalization)", the prefix of errors at a value's position. */
static void norm_what(const ct_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "layer '%s' (%s)", l->name, l->kind->class_name);
}

/* A float in [lo, hi] whose range error names the layer. */
static int norm_float(ct_layer *l, ct_node *cfg, const char *key, double def, double lo,
                      double hi, double *out, ct_error *err)
{
    if (ct_cfg_float(cfg, key, def, -HUGE_VAL, HUGE_VAL, out, err))
        return -1;
    if (*out >= lo && *out <= hi)
        return 0;
    char what[CT_NAME_MAX + 80];
    norm_what(l, what, sizeof what);
    const ct_node *v = ct_map_get(cfg, key);
    if (hi >= HUGE_VAL)
        return ct_node_err(err, v, "%s: %s must be at least %g, got %s", what, key, lo,
                           v->scalar);
    return ct_node_err(err, v, "%s: %s must be between %g and %g, got %s", what, key, lo, hi,
                       v->scalar);
}

/* The keys all three layers share. */
static int norm_read_common(ct_layer *l, ct_node *cfg, norm_state *s, ct_error *err)
{
    if (ct_cfg_int(cfg, "axis", -1, INT64_MIN, INT64_MAX, &s->axis, err) ||
        norm_float(l, cfg, "epsilon", 1e-3, 0.0, HUGE_VAL, &s->epsilon, err) ||
        ct_cfg_bool(cfg, "center", true, &s->center, err) ||
        ct_cfg_bool(cfg, "scale", true, &s->scale, err) ||
        ct_init_parse(cfg, "beta_initializer", "zeros", &s->beta_init, err) ||
        ct_init_parse(cfg, "gamma_initializer", "ones", &s->gamma_init, err) ||
        ct_regularizer_parse(cfg, "beta_regularizer", &s->beta_reg, err) ||
        ct_regularizer_parse(cfg, "gamma_regularizer", &s->gamma_reg, err))
        return -1;
    return 0;
}

static int norm_read_kind(ct_layer *l, ct_node *cfg, norm_state *s, ct_error *err)
{
    s->groups = 1;
    s->momentum = 0.0;
    if (s->kind == NORM_BATCH)
        return (norm_float(l, cfg, "momentum", 0.99, 0.0, 1.0, &s->momentum, err) ||
                ct_init_parse(cfg, "moving_mean_initializer", "zeros", &s->mean_init, err) ||
                ct_init_parse(cfg, "moving_variance_initializer", "ones", &s->var_init, err))
                   ? -1 : 0;
    if (s->kind == NORM_GROUP)
        return ct_cfg_int(cfg, "groups", 32, 1, INT64_MAX, &s->groups, err);
    bool rms = false;
    if (ct_cfg_bool(cfg, "rms_scaling", false, &rms, err))
        return -1;
    if (rms) {
        char what[CT_NAME_MAX + 80];
        norm_what(l, what, sizeof what);
        return ct_node_err(err, ct_map_get(cfg, "rms_scaling"),
                           "%s: rms_scaling true is not supported", what);
    }
    return 0;
}

static int norm_configure(ct_layer *l, ct_node *cfg, norm_kind kind, const char *const *keys,
                          ct_error *err)
{
    if (ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    norm_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    s->kind = kind;
    if (norm_read_common(l, cfg, s, err) || norm_read_kind(l, cfg, s, err))
        return -1;
    return 0;
}

static int batch_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return norm_configure(l, cfg, NORM_BATCH, batch_keys, err);
}

static int layer_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return norm_configure(l, cfg, NORM_LAYER, layer_keys, err);
}

static int group_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return norm_configure(l, cfg, NORM_GROUP, group_keys, err);
}

/* Only the channels axis is supported: -1, or its index counting the batch axis. */
static int norm_check_axis(const ct_layer *l, const norm_state *s, ct_error *err)
{
    int64_t last = l->in_shape.ndim;
    if (s->axis == -1 || s->axis == last)
        return 0;
    char buf[256], what[CT_NAME_MAX + 80];
    ct_shape_format(&l->in_shape, buf, sizeof buf);
    const ct_node *v = l->cfg ? ct_map_get(l->cfg, "axis") : NULL;
    if (!v)
        return ct_layer_err(err, l, "only the last axis (-1 or %lld) can be normalized for "
                            "the input %s, got axis %lld", (long long)last, buf,
                            (long long)s->axis);
    norm_what(l, what, sizeof what);
    return ct_node_err(err, v, "%s: only the last axis (-1 or %lld) can be normalized for the "
                       "input %s, got axis %lld", what, (long long)last, buf,
                       (long long)s->axis);
}

static int norm_check_shape(const ct_layer *l, const norm_state *s, ct_error *err)
{
    char buf[256];
    if (l->in_shape.ndim < 1)
        return ct_layer_err(err, l, "expects an input with at least one axis, got %s",
                            ct_shape_format(&l->in_shape, buf, sizeof buf));
    if (norm_check_axis(l, s, err))
        return -1;
    int64_t c = l->in_shape.dim[l->in_shape.ndim - 1];
    if (s->kind == NORM_GROUP && c % s->groups != 0)
        return ct_layer_err(err, l, "groups (%lld) must divide the number of channels (%lld) "
                            "of the input %s", (long long)s->groups, (long long)c,
                            ct_shape_format(&l->in_shape, buf, sizeof buf));
    return 0;
}

/* Declares gamma, beta and (batch norm) the moving statistics, in Keras's order. */
static int norm_add_params(ct_layer *l, norm_state *s, ct_error *err)
{
    ct_shape cs = ct_shape_make(1, &s->c);
    ct_regularizer none = {0.0, 0.0};
    s->gamma_idx = s->beta_idx = s->mean_idx = s->var_idx = -1;
    if (s->scale &&
        (s->gamma_idx = ct_layer_add_param(l, "gamma", cs, s->gamma_init, s->gamma_reg, true,
                                           err)) < 0)
        return -1;
    if (s->center &&
        (s->beta_idx = ct_layer_add_param(l, "beta", cs, s->beta_init, s->beta_reg, true,
                                          err)) < 0)
        return -1;
    if (s->kind != NORM_BATCH)
        return 0;
    if ((s->mean_idx = ct_layer_add_param(l, "moving_mean", cs, s->mean_init, none, false,
                                          err)) < 0 ||
        (s->var_idx = ct_layer_add_param(l, "moving_variance", cs, s->var_init, none, false,
                                         err)) < 0)
        return -1;
    return 0;
}

static int norm_build(ct_layer *l, ct_error *err)
{
    norm_state *s = l->state;
    if (norm_check_shape(l, s, err))
        return -1;
    l->nparams = 0; /* build may run again */
    l->out_shape = l->in_shape;
    s->c = l->in_shape.dim[l->in_shape.ndim - 1];
    s->spatial = ct_shape_size(&l->in_shape) / s->c;
    return norm_add_params(l, s, err);
}

/* Batch norm: the batch mean, variance and invstd (3c) plus three c-vectors of working
 * space for the inference-mode backward. Layer/group norm: mean and invstd per normalized
 * group of each sample. */
static int64_t norm_scratch(const ct_layer *l, int64_t max_batch)
{
    const norm_state *s = l->state;
    if (s->kind == NORM_BATCH)
        return 6 * s->c;
    if (s->kind == NORM_LAYER)
        return 2 * max_batch * s->spatial;
    return 2 * max_batch * s->groups;
}

static const float *param_value(const ct_layer *l, int idx)
{
    return idx >= 0 ? l->params[idx].value : NULL;
}

static float *param_grad(const ct_layer *l, int idx)
{
    return idx >= 0 ? l->params[idx].grad : NULL;
}

/* ---- batch normalization ------------------------------------------------------------ */

static void batch_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    const norm_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t n = x->rows * s->spatial, c = s->c;
    const float *gamma = param_value(l, s->gamma_idx), *beta = param_value(l, s->beta_idx);
    float *mm = l->params[s->mean_idx].value, *mv = l->params[s->var_idx].value;
    if (!pass->training || l->frozen) { /* frozen: inference mode, as Keras */
        be->batchnorm_infer(x->data, y->data, n, c, gamma, beta, (float)s->epsilon, mm, mv,
                            l->fused_relu);
        return;
    }
    float *mean = l->scratch, *var = l->scratch + c, *invstd = l->scratch + 2 * c;
    be->batchnorm_train(x->data, y->data, n, c, gamma, beta, (float)s->epsilon, mean, var,
                        invstd, l->fused_relu);
    /* moving = moving * momentum + batch * (1 - momentum), with the biased variance */
    float mom = (float)s->momentum;
    be->scale(c, mom, mm);
    be->axpy(c, 1.0f - mom, mean, mm);
    be->scale(c, mom, mv);
    be->axpy(c, 1.0f - mom, var, mv);
}

/* The moving statistics are constants here, so y is affine in x: dx = dy * gamma * is,
 * dbeta = sum dy, dgamma = is * (sum dy * x - moving_mean * sum dy), is = 1/sqrt(mv + eps).
 * dy is overwritten. */
static void batch_backward_infer(ct_layer *l, ct_tensor *dy, const ct_tensor *x, ct_tensor *dx)
{
    const norm_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t n = x->rows * s->spatial, c = s->c;
    float *ones = l->scratch + 3 * c, *work = l->scratch + 4 * c, *is = l->scratch + 5 * c;
    const float *gamma = param_value(l, s->gamma_idx);
    const float *mm = l->params[s->mean_idx].value, *mv = l->params[s->var_idx].value;
    float *dgamma = param_grad(l, s->gamma_idx), *dbeta = param_grad(l, s->beta_idx);
    /* is = 1/sqrt(mv + eps), as the normalization of ones with zero mean */
    be->fill(ones, c, 1.0f);
    be->fill(work, c, 0.0f);
    be->batchnorm_infer(ones, is, 1, c, NULL, NULL, (float)s->epsilon, work, mv, false);
    float *sdy = dbeta ? dbeta : ones;
    be->sum_rows(dy->data, sdy, n, c, 0.0f);
    if (dx) {
        if (gamma)
            be->mul(c, gamma, is, work);
        else
            be->copy(work, is, c);
        be->scale_channels(dy->data, work, dx->data, 1, n, c);
    }
    if (!dgamma)
        return;
    be->mul(n * c, x->data, dy->data, dy->data);
    be->sum_rows(dy->data, dgamma, n, c, 0.0f);
    be->mul(c, mm, sdy, work);
    be->axpy(c, -1.0f, work, dgamma);
    be->mul(c, dgamma, is, dgamma);
}

static void batch_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                           const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    const norm_state *s = l->state;
    int64_t n = x->rows * s->spatial, c = s->c;
    if (!pass->training || l->frozen) {
        if (l->fused_relu) /* dy through the relu first */
            l->be->bias_act_backward((ct_act){.kind = CT_ACT_RELU}, y->data, dy->data, NULL,
                                     n, c);
        batch_backward_infer(l, dy, x, dx);
        return;
    }
    l->be->batchnorm_backward(x->data, l->fused_relu ? y->data : NULL, dy->data,
                              dx ? dx->data : NULL, n, c,
                              param_value(l, s->gamma_idx), l->scratch, l->scratch + 2 * c,
                              param_grad(l, s->gamma_idx), param_grad(l, s->beta_idx));
}

/* ---- layer and group normalization --------------------------------------------------- */

/* The groupnorm op's view of a batch: layer norm treats every position as a sample with
 * one group and no spatial extent. */
static void group_geometry(const norm_state *s, int64_t rows, int64_t *r, int64_t *sp,
                           int64_t *g)
{
    if (s->kind == NORM_LAYER) {
        *r = rows * s->spatial;
        *sp = 1;
        *g = 1;
    } else {
        *r = rows;
        *sp = s->spatial;
        *g = s->groups;
    }
}

static void group_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    (void)pass;
    const norm_state *s = l->state;
    int64_t r, sp, g;
    group_geometry(s, x->rows, &r, &sp, &g);
    l->be->groupnorm_forward(x->data, y->data, r, sp, s->c, g, param_value(l, s->gamma_idx),
                             param_value(l, s->beta_idx), (float)s->epsilon, l->scratch,
                             l->scratch + r * g);
}

static void group_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                           const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)pass, (void)y;
    const norm_state *s = l->state;
    int64_t r, sp, g;
    group_geometry(s, x->rows, &r, &sp, &g);
    l->be->groupnorm_backward(x->data, dy->data, dx ? dx->data : NULL, r, sp, s->c, g,
                              param_value(l, s->gamma_idx), l->scratch, l->scratch + r * g,
                              param_grad(l, s->gamma_idx), param_grad(l, s->beta_idx));
}

static void norm_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

const ct_layer_kind ct_layer_batch_normalization = {
    .name = "batch_normalization",
    .class_name = "BatchNormalization",
    .configure = batch_configure,
    .build = norm_build,
    .scratch_floats = norm_scratch,
    .forward = batch_forward,
    .backward = batch_backward,
    .free_state = norm_free,
    .takes_relu = true,
};

const ct_layer_kind ct_layer_layer_normalization = {
    .name = "layer_normalization",
    .class_name = "LayerNormalization",
    .configure = layer_configure,
    .build = norm_build,
    .scratch_floats = norm_scratch,
    .forward = group_forward,
    .backward = group_backward,
    .free_state = norm_free,
    .masks = CT_MASK_PASSES, /* per step */
};

const ct_layer_kind ct_layer_group_normalization = {
    .name = "group_normalization",
    .class_name = "GroupNormalization",
    .configure = group_configure,
    .build = norm_build,
    .scratch_floats = norm_scratch,
    .forward = group_forward,
    .backward = group_backward,
    .free_state = norm_free,
};
