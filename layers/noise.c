/* noise.c - SpatialDropout1D/2D and GaussianNoise: active in training only, the identity
 * in inference. Random draws come from the counter-based streams keyed by the experiment
 * seed, the layer's index and the step, so a resumed run repeats them exactly; hence no
 * per-layer `seed` key. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "rng.h"

typedef struct noise_state {
    int rank;       /* spatial dropout: spatial axes, 1 or 2; 0 for gaussian noise */
    double amount;  /* dropout rate, or noise stddev */
} noise_state;

static void what_of(const ct_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "layer '%s' (%s)", l->name, l->kind->class_name);
}

/* Keras layers take a `seed`; here the experiment's seed governs, so say so plainly
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

/* Checks keys and reads the required float cfg[key] into a fresh state. */
static noise_state *configure_common(ct_layer *l, ct_node *cfg, const char *const *keys,
                                     const char *key, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    if (reject_seed(l, cfg, err) || ct_layer_check_keys(l, cfg, keys, err) ||
        ct_cfg_require(cfg, key, what, err))
        return NULL;
    noise_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    l->state = s;
    if (ct_cfg_float(cfg, key, 0.0, -HUGE_VAL, HUGE_VAL, &s->amount, err))
        return NULL;
    return s;
}

static void pass_through(const ct_backend *be, float *dst, const float *src, int64_t n)
{
    if (dst != src)
        be->copy(dst, src, n);
}

static void noise_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

/* ---- spatial dropout ------------------------------------------------------------- */

static int spatial_configure(ct_layer *l, ct_node *cfg, int rank, ct_error *err)
{
    static const char *const keys1[] = {"rate", NULL};
    static const char *const keys2[] = {"rate", "data_format", NULL};
    noise_state *s = configure_common(l, cfg, rank == 2 ? keys2 : keys1, "rate", err);
    if (!s)
        return -1;
    s->rank = rank;
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    if (!(s->amount >= 0.0 && s->amount < 1.0)) { /* 1 would drop everything */
        const ct_node *v = ct_map_get(cfg, "rate");
        return ct_node_err(err, v, "%s: rate must be at least 0 and below 1, got %s", what,
                           v->scalar);
    }
    if (rank == 1)
        return 0;
    const char *fmt;
    if (ct_cfg_string(cfg, "data_format", "channels_last", &fmt, err))
        return -1;
    if (!strcmp(fmt, "channels_last"))
        return 0;
    return ct_node_err(err, ct_map_get(cfg, "data_format"),
                       "%s: data_format '%s' is not supported; only channels_last is", what, fmt);
}

static int spatial1d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return spatial_configure(l, cfg, 1, err);
}

static int spatial2d_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return spatial_configure(l, cfg, 2, err);
}

static int spatial_build(ct_layer *l, ct_error *err)
{
    const noise_state *s = l->state;
    l->nparams = 0;
    if (l->in_shape.ndim != s->rank + 1) {
        char shape[160];
        ct_shape_format(&l->in_shape, shape, sizeof shape);
        return ct_layer_err(err, l, "expected input of rank %d (batch, %s, channels), got %s",
                            s->rank + 2, s->rank == 2 ? "height, width" : "steps", shape);
    }
    l->out_shape = l->in_shape;
    return 0;
}

static int64_t channels_of(const ct_layer *l)
{
    return l->in_shape.dim[l->in_shape.ndim - 1];
}

/* One mask value per (sample, channel). */
static int64_t spatial_scratch(const ct_layer *l, int64_t max_batch)
{
    const noise_state *s = l->state;
    return s->amount > 0 ? max_batch * channels_of(l) : 0;
}

static bool spatial_active(const ct_layer *l, const ct_pass *pass)
{
    const noise_state *s = l->state;
    return pass && pass->training && s->amount > 0;
}

static void spatial_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                            ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    const noise_state *s = l->state;
    if (!spatial_active(l, pass)) {
        pass_through(l->be, y->data, x->data, ct_tensor_size(x));
        return;
    }
    int64_t c = channels_of(l), spatial = ct_tensor_cols(x) / c;
    uint64_t key = ct_rng_key(pass->seed, CT_RNG_DROPOUT, (uint64_t)l->index,
                              (uint64_t)pass->step);
    l->be->dropout_mask(l->scratch, x->rows * c, (float)s->amount, key, 0);
    l->be->scale_channels(x->data, l->scratch, y->data, x->rows, spatial, c);
}

static void spatial_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                             const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    ct_tensor *dx = dxs[0];
    (void)y;
    if (!dx)
        return;
    if (!spatial_active(l, pass)) {
        pass_through(l->be, dx->data, dy->data, ct_tensor_size(dy));
        return;
    }
    int64_t c = channels_of(l), spatial = ct_tensor_cols(x) / c;
    l->be->scale_channels(dy->data, l->scratch, dx->data, x->rows, spatial, c);
}

const ct_layer_kind ct_layer_spatial_dropout1d = {
    .name = "spatial_dropout1d",
    .class_name = "SpatialDropout1D",
    .configure = spatial1d_configure,
    .build = spatial_build,
    .scratch_floats = spatial_scratch,
    .forward = spatial_forward,
    .backward = spatial_backward,
    .free_state = noise_free,
};

const ct_layer_kind ct_layer_spatial_dropout2d = {
    .name = "spatial_dropout2d",
    .class_name = "SpatialDropout2D",
    .configure = spatial2d_configure,
    .build = spatial_build,
    .scratch_floats = spatial_scratch,
    .forward = spatial_forward,
    .backward = spatial_backward,
    .free_state = noise_free,
};

/* ---- gaussian noise -------------------------------------------------------------- */

static int gaussian_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"stddev", NULL};
    noise_state *s = configure_common(l, cfg, keys, "stddev", err);
    if (!s)
        return -1;
    s->rank = 0;
    if (s->amount >= 0.0 && isfinite(s->amount))
        return 0;
    char what[CT_NAME_MAX + 80];
    what_of(l, what, sizeof what);
    const ct_node *v = ct_map_get(cfg, "stddev");
    return ct_node_err(err, v, "%s: stddev must be a finite number of at least 0, got %s", what,
                       v->scalar);
}

static int gaussian_build(ct_layer *l, ct_error *err)
{
    (void)err;
    l->nparams = 0;
    l->out_shape = l->in_shape;
    return 0;
}

static void gaussian_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                             ct_tensor *y)
{
    (void)nx;
    const ct_tensor *x = xs[0];
    const noise_state *s = l->state;
    int64_t n = ct_tensor_size(x);
    pass_through(l->be, y->data, x->data, n);
    if (!pass || !pass->training || s->amount <= 0)
        return;
    uint64_t key = ct_rng_key(pass->seed, CT_RNG_NOISE, (uint64_t)l->index,
                              (uint64_t)pass->step);
    l->be->add_noise(y->data, n, (float)s->amount, key, 0);
}

/* Additive noise does not depend on x: dx = dy. */
static void gaussian_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                              const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    (void)xs;
    ct_tensor *dx = dxs[0];
    (void)pass;
    (void)y;
    if (dx)
        pass_through(l->be, dx->data, dy->data, ct_tensor_size(dy));
}

const ct_layer_kind ct_layer_gaussian_noise = {
    .name = "gaussian_noise",
    .class_name = "GaussianNoise",
    .configure = gaussian_configure,
    .build = gaussian_build,
    .forward = gaussian_forward,
    .backward = gaussian_backward,
    .free_state = noise_free,
    .masks = CT_MASK_PASSES, /* per step */
};
