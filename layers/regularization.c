/* regularization.c - GaussianDropout, AlphaDropout and ActivityRegularization.
 *
 * The two dropouts act in training only and are the identity otherwise. Their random draws
 * come from the counter-based streams keyed by the experiment seed, the layer's index and
 * the step (as Dropout's do), so a resumed run repeats them; hence no `seed` key. Both keep
 * the per-element factor they drew in scratch, and the backward is dy times it.
 *
 * ActivityRegularization adds l1 sum|y| + l2 sum y^2 over the batch, divided by the batch
 * size (Keras divides a layer's activity loss by it), to the loss, in training and in
 * evaluation alike, as Keras's layer losses are; its output is its input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "rng.h"

/* SELU's constants, with which AlphaDropout keeps SELU's fixed point (mean 0, var 1). */
#define SELU_ALPHA 1.6732632423543772848170429916717
#define SELU_SCALE 1.0507009873554804934193349852946

/* Floats before the mask in scratch: a constant (alpha dropout) or a double (activity),
 * padded so the mask keeps the scratch's alignment. */
#define HEAD_FLOATS 16

typedef struct reg_state {
    double rate;   /* dropouts */
    double l1, l2; /* activity regularization */
} reg_state;

static void what_of(const ct_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "layer '%s' (%s)", l->name, l->kind->class_name);
}

static reg_state *state_of(ct_layer *l, ct_error *err)
{
    reg_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    return s;
}

/* Keras's dropouts take a `seed`; here the experiment's seed governs, so say so plainly
 * rather than calling it an unknown key. */
static int reject_seed(const ct_layer *l, const ct_node *cfg, ct_error *err)
{
    const ct_node *k = ct_map_key_node(cfg, "seed");
    if (!k)
        return 0;
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    return ct_node_err(err, k, "%s: 'seed' is not accepted; random draws follow the "
                       "experiment's seed", what);
}

/* The required rate, in [0, 1): Keras accepts 1, but both dropouts divide by 1 - rate. */
static int read_rate(ct_layer *l, ct_node *cfg, const char *const *keys, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    reg_state *s;
    if (reject_seed(l, cfg, err) || ct_layer_check_keys(l, cfg, keys, err) ||
        ct_cfg_require(cfg, "rate", what, err) || !(s = state_of(l, err)) ||
        ct_cfg_float(cfg, "rate", 0.0, -HUGE_VAL, HUGE_VAL, &s->rate, err))
        return -1;
    if (s->rate >= 0.0 && s->rate < 1.0)
        return 0;
    const ct_node *v = ct_map_get(cfg, "rate");
    return ct_node_err(err, v, "%s: rate must be at least 0 and below 1, got %s", what,
                       v->scalar);
}

static int same_shape_build(ct_layer *l, ct_error *err)
{
    (void)err;
    l->nparams = 0;
    l->out_shape = l->in_shape;
    return 0;
}

static bool dropping(const ct_layer *l, const ct_pass *pass)
{
    const reg_state *s = l->state;
    return pass && pass->training && s->rate > 0;
}

static int64_t dropout_scratch(const ct_layer *l, int64_t max_batch)
{
    const reg_state *s = l->state;
    return s->rate > 0 ? HEAD_FLOATS + max_batch * ct_shape_size(&l->in_shape) : 0;
}

static float *mask_of(const ct_layer *l)
{
    return l->scratch + HEAD_FLOATS;
}

static void pass_through(const ct_backend *be, float *dst, const float *src, int64_t n)
{
    if (dst != src)
        be->copy(dst, src, n);
}

/* dx = dy * the factors the forward drew, or dy where the layer was the identity. */
static void factor_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                            int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)xs;
    (void)nx;
    (void)y;
    ct_tensor *dx = dxs[0];
    if (!dx)
        return;
    int64_t n = ct_tensor_size(dy);
    if (dropping(l, pass))
        l->be->mul(n, dy->data, mask_of(l), dx->data);
    else
        pass_through(l->be, dx->data, dy->data, n);
}

static void reg_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

/* ---- gaussian dropout: y = x * (1 + sqrt(rate / (1 - rate)) * N(0, 1)) ------------ */

static int gaussian_dropout_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"rate", NULL};
    return read_rate(l, cfg, keys, err);
}

static void gaussian_dropout_forward(ct_layer *l, const ct_pass *pass,
                                     const ct_tensor *const *xs, int nx, ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    const reg_state *s = l->state;
    int64_t n = ct_tensor_size(x);
    if (!dropping(l, pass)) {
        pass_through(l->be, y->data, x->data, n);
        return;
    }
    uint64_t key = ct_rng_key(pass->seed, CT_RNG_NOISE, (uint64_t)l->index,
                              (uint64_t)pass->step);
    float *m = mask_of(l);
    l->be->fill(m, n, 1.0f);
    l->be->add_noise(m, n, (float)sqrt(s->rate / (1.0 - s->rate)), key, 0);
    l->be->mul(n, x->data, m, y->data);
}

const ct_layer_kind ct_layer_gaussian_dropout = {
    .name = "gaussian_dropout",
    .class_name = "GaussianDropout",
    .configure = gaussian_dropout_configure,
    .build = same_shape_build,
    .scratch_floats = dropout_scratch,
    .forward = gaussian_dropout_forward,
    .backward = factor_backward,
    .free_state = reg_free,
    .masks = CT_MASK_PASSES, /* per element */
};

/* ---- alpha dropout --------------------------------------------------------------- */
/* Keras: with k = 1 where kept (probability 1 - rate), alpha' = -SELU_ALPHA * SELU_SCALE,
 * a = ((1 - rate)(1 + rate alpha'^2))^-1/2 and b = -a alpha' rate,
 * y = a (x k + alpha' (1 - k)) + b. With m = a k that is y = (x - alpha') m + a alpha' + b,
 * so the backward is dy * m. */

static int alpha_dropout_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"rate", "noise_shape", NULL};
    if (read_rate(l, cfg, keys, err))
        return -1;
    const ct_node *ns = ct_map_get(cfg, "noise_shape");
    if (!ns || ct_node_is_null(ns))
        return 0;
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    return ct_node_err(err, ns, "%s: only noise_shape: null (a draw per element) is "
                       "supported", what);
}

static void alpha_dropout_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                                  int nx, ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    const reg_state *s = l->state;
    int64_t n = ct_tensor_size(x);
    if (!dropping(l, pass)) {
        pass_through(l->be, y->data, x->data, n);
        return;
    }
    double ap = -SELU_ALPHA * SELU_SCALE, r = s->rate;
    double a = 1.0 / sqrt((1.0 - r) * (1.0 + r * ap * ap)), b = -a * ap * r;
    uint64_t key = ct_rng_key(pass->seed, CT_RNG_DROPOUT, (uint64_t)l->index,
                              (uint64_t)pass->step);
    float *m = mask_of(l), *c = l->scratch;
    l->be->dropout_mask(m, n, (float)r, key, 0); /* k / (1 - rate) */
    l->be->scale(n, (float)(a * (1.0 - r)), m);  /* now a k */
    l->be->mul(n, x->data, m, y->data);
    l->be->axpy(n, (float)-ap, m, y->data);
    l->be->fill(c, 1, (float)(a * ap + b));
    l->be->add_row_vector(y->data, c, n, 1);
}

const ct_layer_kind ct_layer_alpha_dropout = {
    .name = "alpha_dropout",
    .class_name = "AlphaDropout",
    .configure = alpha_dropout_configure,
    .build = same_shape_build,
    .scratch_floats = dropout_scratch,
    .forward = alpha_dropout_forward,
    .backward = factor_backward,
    .free_state = reg_free,
    .masks = CT_MASK_PASSES, /* per element */
};

/* ---- activity regularization ----------------------------------------------------- */

/* cfg[key] (default 0), a finite factor of at least 0 as Keras's L1L2 wants. */
static int read_factor(ct_layer *l, ct_node *cfg, const char *key, double *out, ct_error *err)
{
    if (ct_cfg_float(cfg, key, 0.0, -HUGE_VAL, HUGE_VAL, out, err))
        return -1;
    if (*out >= 0.0 && isfinite(*out))
        return 0;
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    const ct_node *v = ct_map_get(cfg, key);
    return ct_node_err(err, v, "%s: %s must be a finite number of at least 0, got %s", what,
                       key, v->scalar);
}

static int activity_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"l1", "l2", NULL};
    reg_state *s;
    if (ct_layer_check_keys(l, cfg, keys, err) || !(s = state_of(l, err)) ||
        read_factor(l, cfg, "l1", &s->l1, err) || read_factor(l, cfg, "l2", &s->l2, err))
        return -1;
    return 0;
}

/* The backward's regularize call needs somewhere to add a penalty the forward already
 * counted: one double at the start of scratch. */
static int64_t activity_scratch(const ct_layer *l, int64_t max_batch)
{
    (void)l;
    (void)max_batch;
    return HEAD_FLOATS;
}

static bool regularizing(const ct_layer *l)
{
    const reg_state *s = l->state;
    return s->l1 != 0 || s->l2 != 0;
}

/* Adds the batch's penalty, l1 sum|y| + l2 sum y^2 (rows times the per-sample mean that
 * Keras adds to the loss), to the driver's sum, in training and evaluation alike. */
static void activity_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                             int nx, ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    const reg_state *s = l->state;
    int64_t n = ct_tensor_size(x);
    pass_through(l->be, y->data, x->data, n);
    if (pass && pass->penalty && regularizing(l) && x->rows > 0)
        l->be->regularize(y->data, NULL, n, s->l1, s->l2, 1.0, pass->penalty);
}

/* dx = dy + (l1 sign(y) + 2 l2 y) / rows: the penalty's gradient, the batch's loss being
 * the mean over its rows. */
static void activity_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                              int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass;
    (void)nx;
    const reg_state *s = l->state;
    ct_tensor *dx = dxs[0];
    if (!dx)
        return;
    int64_t n = ct_tensor_size(dy), rows = xs[0]->rows;
    pass_through(l->be, dx->data, dy->data, n);
    if (regularizing(l) && rows > 0)
        l->be->regularize(y->data, dx->data, n, s->l1 / (double)rows, s->l2 / (double)rows,
                          0.0, (double *)(void *)l->scratch);
}

const ct_layer_kind ct_layer_activity_regularization = {
    .name = "activity_regularization",
    .class_name = "ActivityRegularization",
    .configure = activity_configure,
    .build = same_shape_build,
    .scratch_floats = activity_scratch,
    .forward = activity_forward,
    .backward = activity_backward,
    .free_state = reg_free,
    .masks = CT_MASK_PASSES, /* per element */
};
