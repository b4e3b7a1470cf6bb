/* preprocessing.c - Keras's preprocessing and image augmentation layers: Rescaling,
 * RandomFlip, RandomTranslation, RandomZoom, RandomRotation, RandomCrop and RandomContrast.
 *
 * The random layers act in training only and are the identity in inference (RandomCrop
 * resizes instead, as Keras). Their draws come from the counter-based stream keyed by the
 * experiment seed, the layer's index and the step (as dropout's), so a run is repeated by
 * its seed and a resumed run draws exactly what the uninterrupted one did; a layer's `seed`
 * is mixed into that key rather than replacing it. Each draws per sample (image_aug.h).
 *
 * Backward passes the Jacobian of the transform applied (the transpose of the resampling),
 * so a trainable layer may precede them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_aug.h"
#include "layer.h"
#include "rng.h"

typedef struct prep_state {
    ct_image_aug aug;      /* geometric layers; h, w, c, oh, ow set by build */
    double scale, offset;  /* rescaling */
    float lo, hi, vmin, vmax; /* contrast */
    bool has_seed;
    int64_t seed;
} prep_state;

static const char *const fill_names[] = {"reflect", "wrap", "constant", "nearest", NULL};
static const char *const interp_names[] = {"bilinear", "nearest", NULL};

static prep_state *state_of(ct_layer *l, ct_error *err)
{
    if (!l->state)
        l->state = calloc(1, sizeof(prep_state));
    if (!l->state)
        ct_err(err, CT_ERR_NOMEM, "out of memory");
    return l->state;
}

static void prep_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

/* The optional integer `seed`: mixed into the per-step key, so two layers (or two runs)
 * told different seeds differ while the experiment's seed still governs. */
static int read_seed(ct_node *cfg, prep_state *s, ct_error *err)
{
    ct_node *v = ct_map_get(cfg, "seed");
    s->has_seed = !ct_node_is_null(v);
    return s->has_seed ? ct_node_int(v, &s->seed, err) : 0;
}

static uint64_t step_key(const ct_layer *l, const ct_pass *pass)
{
    const prep_state *s = l->state;
    uint64_t key = ct_rng_key(pass->seed, CT_RNG_AUGMENT, (uint64_t)l->index,
                              (uint64_t)pass->step);
    return s->has_seed ? ct_rng_mix64(key ^ ct_rng_mix64((uint64_t)s->seed + 1)) : key;
}

/* A factor: a number f (the range [-f, f] as Keras's) or a list [a, b] (sorted). Each end
 * must lie in [min, max] (min_open: above min). */
static int read_range(ct_layer *l, ct_node *cfg, const char *key, double min, bool min_open,
                      double max, float *lo, float *hi, ct_error *err)
{
    ct_node *v = ct_map_get(cfg, key);
    double a, b;
    if (v->type == CT_NODE_SEQ) {
        if (v->len != 2)
            return ct_layer_err_at(err, l, v, "%s must be a number or a list of two numbers",
                                   key);
        if (ct_node_float(v->items[0], &a, err) || ct_node_float(v->items[1], &b, err))
            return -1;
        if (a > b) {
            double t = a;
            a = b, b = t;
        }
    } else {
        if (ct_node_float(v, &b, err))
            return -1;
        b = fabs(b), a = -b;
    }
    if (!(isfinite(a) && isfinite(b)) || (min_open ? a <= min : a < min) || b > max)
        return ct_layer_err_at(err, l, v, "%s must lie in %s%g, %g], got [%g, %g]", key,
                               min_open ? "(" : "[", min, max, a, b);
    *lo = (float)a, *hi = (float)b;
    return 0;
}

/* fill_mode, interpolation, fill_value, seed and data_format: the geometric layers' common
 * keys. */
static int read_geometry(ct_layer *l, ct_node *cfg, prep_state *s, ct_error *err)
{
    int fill, interp;
    double fv;
    if (ct_cfg_enum(cfg, "fill_mode", "reflect", fill_names, &fill, err) ||
        ct_cfg_enum(cfg, "interpolation", "bilinear", interp_names, &interp, err) ||
        ct_cfg_float(cfg, "fill_value", 0.0, -HUGE_VAL, HUGE_VAL, &fv, err) ||
        read_seed(cfg, s, err) || ct_layer_data_format(l, cfg, err))
        return -1;
    s->aug.fill = fill;
    s->aug.nearest = interp == 1;
    s->aug.fill_value = (float)fv;
    return 0;
}

/* Shared start of every configure: the state, the keys, the required ones. */
static prep_state *begin(ct_layer *l, ct_node *cfg, const char *const *keys,
                         const char *const *required, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (ct_layer_check_keys(l, cfg, keys, err))
        return NULL;
    for (int i = 0; required[i]; i++)
        if (ct_cfg_require(cfg, required[i], what, err))
            return NULL;
    return state_of(l, err);
}

/* ---- rescaling ------------------------------------------------------------------------ */

static int rescaling_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"scale", "offset", NULL};
    static const char *const req[] = {"scale", NULL};
    prep_state *s = begin(l, cfg, keys, req, err);
    if (!s || ct_cfg_float(cfg, "scale", 1.0, -HUGE_VAL, HUGE_VAL, &s->scale, err) ||
        ct_cfg_float(cfg, "offset", 0.0, -HUGE_VAL, HUGE_VAL, &s->offset, err))
        return -1;
    if (isfinite(s->scale) && isfinite(s->offset))
        return 0;
    return ct_layer_err(err, l, "scale and offset must be finite numbers");
}

static int same_shape_build(ct_layer *l, ct_error *err)
{
    (void)err;
    l->nparams = 0;
    l->out_shape = l->in_shape;
    return 0;
}

static void rescaling_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                              int nx, ct_tensor *y)
{
    (void)pass, (void)nx;
    const prep_state *s = l->state;
    l->be->scale_shift(xs[0]->data, y->data, ct_tensor_size(y), (float)s->scale,
                       (float)s->offset);
}

static void rescaling_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                               int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass, (void)xs, (void)nx, (void)y;
    const prep_state *s = l->state;
    if (dxs[0])
        l->be->scale_shift(dy->data, dxs[0]->data, ct_tensor_size(dy), (float)s->scale, 0.0f);
}

const ct_layer_kind ct_layer_rescaling = {
    .name = "rescaling",
    .class_name = "Rescaling",
    .configure = rescaling_configure,
    .build = same_shape_build,
    .forward = rescaling_forward,
    .backward = rescaling_backward,
    .free_state = prep_free,
    .masks = CT_MASK_PASSES,
};

/* ---- the geometric layers -------------------------------------------------------------- */

/* Input (height, width, channels); output the same but for a crop's size. */
static int image_build(ct_layer *l, ct_error *err)
{
    prep_state *s = l->state;
    l->nparams = 0;
    if (l->in_shape.ndim != 3) {
        char shape[160];
        ct_shape_format(&l->in_shape, shape, sizeof shape);
        return ct_layer_err(err, l, "expected images of rank 4 (batch, height, width, "
                            "channels), got %s", shape);
    }
    s->aug.h = l->in_shape.dim[0], s->aug.w = l->in_shape.dim[1], s->aug.c = l->in_shape.dim[2];
    if (s->aug.kind != CT_AUG_CROP) {
        s->aug.oh = s->aug.h, s->aug.ow = s->aug.w;
    }
    l->out_shape = l->in_shape;
    l->out_shape.dim[0] = s->aug.oh, l->out_shape.dim[1] = s->aug.ow;
    return 0;
}

static bool is_identity(const ct_layer *l, const ct_pass *pass)
{
    const prep_state *s = l->state;
    return (!pass || !pass->training) && s->aug.kind != CT_AUG_CROP;
}

/* The transform this pass applies: a random crop is a centred resize in inference, and in
 * training too where the image is smaller than the crop (as Keras). */
static ct_image_aug pass_aug(const ct_layer *l, const ct_pass *pass)
{
    const prep_state *s = l->state;
    ct_image_aug a = s->aug;
    if (a.kind == CT_AUG_CROP &&
        (!pass || !pass->training || a.h < a.oh || a.w < a.ow)) {
        a.kind = CT_AUG_RESIZE;
        a.fill = CT_FILL_NEAREST;
        a.nearest = false;
    }
    return a;
}

static void image_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          ct_tensor *y)
{
    (void)nx;
    if (is_identity(l, pass)) {
        if (y->data != xs[0]->data)
            l->be->copy(y->data, xs[0]->data, ct_tensor_size(y));
        return;
    }
    ct_image_aug a = pass_aug(l, pass);
    uint64_t key = pass ? step_key(l, pass) : 0;
    l->be->image_aug(&a, xs[0]->data, y->data, xs[0]->rows, key);
}

static void image_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                           const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx, (void)y;
    ct_tensor *dx = dxs[0];
    if (!dx)
        return;
    if (is_identity(l, pass)) {
        if (dx->data != dy->data)
            l->be->copy(dx->data, dy->data, ct_tensor_size(dy));
        return;
    }
    ct_image_aug a = pass_aug(l, pass);
    uint64_t key = pass ? step_key(l, pass) : 0;
    l->be->image_aug_backward(&a, dy->data, dx->data, xs[0]->rows, key);
}

static int flip_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"mode", "seed", "data_format", NULL};
    static const char *const req[] = {NULL};
    static const char *const modes[] = {"horizontal_and_vertical", "horizontal", "vertical",
                                        NULL};
    int mode;
    prep_state *s = begin(l, cfg, keys, req, err);
    if (!s || ct_cfg_enum(cfg, "mode", "horizontal_and_vertical", modes, &mode, err) ||
        read_seed(cfg, s, err) || ct_layer_data_format(l, cfg, err))
        return -1;
    s->aug.kind = CT_AUG_FLIP;
    s->aug.flip_h = mode != 2;
    s->aug.flip_v = mode != 1;
    s->aug.nearest = true; /* whole pixels: exact */
    s->aug.fill = CT_FILL_NEAREST;
    return 0;
}

static int translation_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"height_factor", "width_factor", "fill_mode",
                                       "interpolation", "seed", "fill_value", "data_format",
                                       NULL};
    static const char *const req[] = {"height_factor", "width_factor", NULL};
    prep_state *s = begin(l, cfg, keys, req, err);
    if (!s ||
        read_range(l, cfg, "height_factor", -1.0, false, 1.0, &s->aug.lo[0], &s->aug.hi[0],
                   err) ||
        read_range(l, cfg, "width_factor", -1.0, false, 1.0, &s->aug.lo[1], &s->aug.hi[1],
                   err) ||
        read_geometry(l, cfg, s, err))
        return -1;
    s->aug.kind = CT_AUG_TRANSLATE;
    return 0;
}

static int zoom_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"height_factor", "width_factor", "fill_mode",
                                       "interpolation", "seed", "fill_value", "data_format",
                                       NULL};
    static const char *const req[] = {"height_factor", NULL};
    prep_state *s = begin(l, cfg, keys, req, err);
    if (!s || read_range(l, cfg, "height_factor", -1.0, true, 1.0, &s->aug.lo[0],
                         &s->aug.hi[0], err))
        return -1;
    s->aug.zoom_same = ct_node_is_null(ct_map_get(cfg, "width_factor"));
    if (!s->aug.zoom_same && read_range(l, cfg, "width_factor", -1.0, true, 1.0,
                                        &s->aug.lo[1], &s->aug.hi[1], err))
        return -1;
    if (read_geometry(l, cfg, s, err))
        return -1;
    s->aug.kind = CT_AUG_ZOOM;
    return 0;
}

static int rotation_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"factor", "fill_mode", "interpolation", "seed",
                                       "fill_value", "data_format", NULL};
    static const char *const req[] = {"factor", NULL};
    prep_state *s = begin(l, cfg, keys, req, err);
    if (!s ||
        read_range(l, cfg, "factor", -1.0, false, 1.0, &s->aug.lo[0], &s->aug.hi[0], err) ||
        read_geometry(l, cfg, s, err))
        return -1;
    s->aug.kind = CT_AUG_ROTATE;
    return 0;
}

static int crop_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"height", "width", "seed", "data_format", NULL};
    static const char *const req[] = {"height", "width", NULL};
    prep_state *s = begin(l, cfg, keys, req, err);
    if (!s || ct_cfg_int(cfg, "height", 1, 1, INT32_MAX, &s->aug.oh, err) ||
        ct_cfg_int(cfg, "width", 1, 1, INT32_MAX, &s->aug.ow, err) ||
        read_seed(cfg, s, err) || ct_layer_data_format(l, cfg, err))
        return -1;
    s->aug.kind = CT_AUG_CROP;
    s->aug.nearest = true; /* whole-pixel offsets */
    s->aug.fill = CT_FILL_NEAREST;
    return 0;
}

#define IMAGE_KIND(cfgname, cls, conf)                                                    \
    const ct_layer_kind ct_layer_##cfgname = {                                            \
        .name = #cfgname,                                                                 \
        .class_name = cls,                                                                \
        .configure = conf,                                                                \
        .build = image_build,                                                             \
        .forward = image_forward,                                                         \
        .backward = image_backward,                                                       \
        .free_state = prep_free,                                                          \
    }

IMAGE_KIND(random_flip, "RandomFlip", flip_configure);
IMAGE_KIND(random_translation, "RandomTranslation", translation_configure);
IMAGE_KIND(random_zoom, "RandomZoom", zoom_configure);
IMAGE_KIND(random_rotation, "RandomRotation", rotation_configure);
IMAGE_KIND(random_crop, "RandomCrop", crop_configure);

/* ---- random contrast --------------------------------------------------------------------- */

static int contrast_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"factor", "value_range", "seed", NULL};
    static const char *const req[] = {"factor", NULL};
    prep_state *s = begin(l, cfg, keys, req, err);
    if (!s || read_seed(cfg, s, err))
        return -1;
    /* Keras 3: a number f draws the factor from [1, 1 + f]; a list [a, b] from
     * [1 - a, 1 + b]; both ends in [0, 1]. */
    ct_node *v = ct_map_get(cfg, "factor");
    if (read_range(l, cfg, "factor", -1.0, false, 1.0, &s->lo, &s->hi, err))
        return -1;
    if (v->type != CT_NODE_SEQ)
        s->lo = 0.0f;
    if (s->lo < 0.0f)
        return ct_layer_err_at(err, l, v, "factor must lie in [0, 1]");
    s->vmin = 0.0f, s->vmax = 255.0f;
    ct_node *r = ct_map_get(cfg, "value_range");
    if (ct_node_is_null(r))
        return 0;
    double a, b;
    if (r->type != CT_NODE_SEQ || r->len != 2)
        return ct_layer_err_at(err, l, r, "value_range must be a list of two numbers");
    if (ct_node_float(r->items[0], &a, err) || ct_node_float(r->items[1], &b, err))
        return -1;
    if (!(a < b))
        return ct_layer_err_at(err, l, r, "value_range must be [low, high] with low < high");
    s->vmin = (float)a, s->vmax = (float)b;
    return 0;
}

static int contrast_build(ct_layer *l, ct_error *err)
{
    if (l->in_shape.ndim != 3) {
        char shape[160];
        ct_shape_format(&l->in_shape, shape, sizeof shape);
        return ct_layer_err(err, l, "expected images of rank 4 (batch, height, width, "
                            "channels), got %s", shape);
    }
    return same_shape_build(l, err);
}

static void contrast_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                             int nx, ct_tensor *y)
{
    (void)nx;
    const prep_state *s = l->state;
    const ct_tensor *x = xs[0];
    if (!pass || !pass->training) {
        if (y->data != x->data)
            l->be->copy(y->data, x->data, ct_tensor_size(y));
        return;
    }
    int64_t c = l->in_shape.dim[2], spatial = l->in_shape.dim[0] * l->in_shape.dim[1];
    l->be->contrast(x->data, y->data, x->rows, spatial, c, s->lo, s->hi, s->vmin, s->vmax,
                    step_key(l, pass));
}

static void contrast_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                              int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    const prep_state *s = l->state;
    ct_tensor *dx = dxs[0];
    if (!dx)
        return;
    if (!pass || !pass->training) {
        if (dx->data != dy->data)
            l->be->copy(dx->data, dy->data, ct_tensor_size(dy));
        return;
    }
    int64_t c = l->in_shape.dim[2], spatial = l->in_shape.dim[0] * l->in_shape.dim[1];
    l->be->contrast_backward(y->data, dy->data, dx->data, xs[0]->rows, spatial, c, s->lo,
                             s->hi, s->vmin, s->vmax, step_key(l, pass));
}

const ct_layer_kind ct_layer_random_contrast = {
    .name = "random_contrast",
    .class_name = "RandomContrast",
    .configure = contrast_configure,
    .build = contrast_build,
    .forward = contrast_forward,
    .backward = contrast_backward,
    .free_state = prep_free,
};

/* ---- normalization ---------------------------------------------------------------------- */

/* Keras's Normalization on the last axis: y = (x - mean) / max(sqrt(variance), 1e-7). The
 * statistics are the config's `mean` and `variance`, or else the weights mean, variance and
 * count (non-trainable, so saved, restored by --resume and loadable as initial weights),
 * which a fresh fit computes from its training data before the first step (Keras's
 * adapt). */
typedef struct norm_prep {
    int64_t c;
    bool invert, fixed;
    int nfixed;              /* entries given for mean and variance: 1 or c */
    float *fixed_mean, *fixed_var;
    double n, *mean, *m2;    /* adapt's running sums (host), merged batch by batch */
    float *host;             /* 2c floats: a batch's moments, read back */
} norm_prep;

/* cfg[key]: a number or a list of numbers (n of them, at most 4096). */
static int read_numbers(ct_layer *l, const ct_node *v, const char *key, float **out, int *n,
                        ct_error *err)
{
    int len = v->type == CT_NODE_SEQ ? (int)v->len : 1;
    if (v->type == CT_NODE_MAP || len < 1 || len > 4096)
        return ct_layer_err_at(err, l, v, "%s must be a number or a list of 1 to 4096 numbers",
                               key);
    *out = calloc((size_t)len, sizeof **out);
    if (!*out)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < len; i++) {
        double d;
        if (ct_node_float(v->type == CT_NODE_SEQ ? v->items[i] : v, &d, err))
            return -1;
        (*out)[i] = (float)d;
    }
    *n = len;
    return 0;
}

static void normp_free(ct_layer *l)
{
    norm_prep *s = l->state;
    if (s) {
        free(s->fixed_mean), free(s->fixed_var), free(s->mean), free(s->m2), free(s->host);
    }
    free(s);
    l->state = NULL;
}

static int normp_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"axis", "mean", "variance", "invert", NULL};
    if (ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    normp_free(l);
    norm_prep *s = calloc(1, sizeof *s);
    if (!(l->state = s))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    int64_t axis;
    if (ct_cfg_int(cfg, "axis", -1, INT32_MIN, INT32_MAX, &axis, err) ||
        ct_cfg_bool(cfg, "invert", false, &s->invert, err))
        return -1;
    if (axis != -1)
        return ct_layer_err_at(err, l, ct_map_get(cfg, "axis"),
                               "only axis -1 (the last) is supported, got %lld",
                               (long long)axis);
    ct_node *m = ct_map_get(cfg, "mean"), *v = ct_map_get(cfg, "variance");
    if (ct_node_is_null(m) != ct_node_is_null(v))
        return ct_layer_err(err, l, "mean and variance must be given together (or neither, "
                            "to compute them from the training data)");
    if (ct_node_is_null(m))
        return 0;
    int nm, nv;
    if (read_numbers(l, m, "mean", &s->fixed_mean, &nm, err) ||
        read_numbers(l, v, "variance", &s->fixed_var, &nv, err))
        return -1;
    if (nm != nv)
        return ct_layer_err_at(err, l, v, "variance has %d values but mean has %d", nv, nm);
    for (int i = 0; i < nv; i++)
        if (!(s->fixed_var[i] >= 0.0f) || !isfinite(s->fixed_var[i]) ||
            !isfinite(s->fixed_mean[i]))
            return ct_layer_err_at(err, l, v, "mean must be finite and variance finite and "
                                   "at least 0");
    s->fixed = true;
    s->nfixed = nm;
    return 0;
}

static int normp_build(ct_layer *l, ct_error *err)
{
    norm_prep *s = l->state;
    l->nparams = 0;
    l->out_shape = l->in_shape;
    if (l->in_shape.ndim < 1)
        return ct_layer_err(err, l, "expected an input with a last axis");
    s->c = l->in_shape.dim[l->in_shape.ndim - 1];
    free(s->host);
    if (!(s->host = calloc(2 * (size_t)s->c, sizeof *s->host)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (s->fixed) {
        if (s->nfixed != 1 && s->nfixed != s->c)
            return ct_layer_err(err, l, "mean and variance have %d values; the last axis has "
                                "%lld", s->nfixed, (long long)s->c);
        return 0;
    }
    free(s->mean), free(s->m2);
    s->mean = calloc((size_t)s->c, sizeof *s->mean);
    s->m2 = calloc((size_t)s->c, sizeof *s->m2);
    if (!s->mean || !s->m2)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ct_shape cs = ct_shape_make(1, &s->c), scalar = ct_shape_make(0, NULL);
    ct_init zeros = {.kind = CT_INIT_ZEROS}, ones = {.kind = CT_INIT_ONES};
    ct_regularizer none = {0.0, 0.0};
    if (ct_layer_add_param(l, "mean", cs, zeros, none, false, err) < 0 ||
        ct_layer_add_param(l, "variance", cs, ones, none, false, err) < 0 ||
        ct_layer_add_param(l, "count", scalar, zeros, none, false, err) < 0)
        return -1;
    return 0;
}

/* Scratch: the constants of a fixed mean and variance, or a batch's moments in adapt. */
static int64_t normp_scratch(const ct_layer *l, int64_t max_batch)
{
    (void)max_batch;
    const norm_prep *s = l->state;
    return 2 * s->c;
}

/* Where mean and variance are for this pass: the weights, or the config's constants
 * copied (one value spread over every channel) into scratch. */
static void normp_stats(ct_layer *l, const float **mean, const float **var)
{
    norm_prep *s = l->state;
    if (!s->fixed) {
        *mean = l->params[0].value, *var = l->params[1].value;
        return;
    }
    float *h = s->host;
    for (int64_t k = 0; k < s->c; k++) {
        h[k] = s->fixed_mean[s->nfixed == 1 ? 0 : k];
        h[s->c + k] = s->fixed_var[s->nfixed == 1 ? 0 : k];
    }
    l->be->upload(l->scratch, h, 2 * (size_t)s->c * sizeof(float));
    *mean = l->scratch, *var = l->scratch + s->c;
}

/* Merges a batch's per-channel moments into the running ones (Chan et al.'s pairwise
 * update, in double, so the order of batches barely matters). */
static void normp_gather(ct_layer *l, const float *x, int64_t rows)
{
    norm_prep *s = l->state;
    int64_t c = s->c;
    l->be->channel_moments(x, rows, c, l->scratch, l->scratch + c);
    l->be->download(s->host, l->scratch, 2 * (size_t)c * sizeof(float));
    double nb = (double)rows, n = s->n + nb;
    for (int64_t k = 0; k < c; k++) {
        double d = s->host[k] - s->mean[k];
        s->mean[k] += d * nb / n;
        s->m2[k] += s->host[c + k] + d * d * s->n * nb / n;
    }
    s->n = n;
}

static void normp_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          ct_tensor *y)
{
    (void)nx;
    norm_prep *s = l->state;
    const ct_tensor *x = xs[0];
    int64_t rows = ct_tensor_size(x) / s->c;
    if (pass && pass->adapting == l)
        normp_gather(l, x->data, rows);
    const float *mean, *var;
    normp_stats(l, &mean, &var);
    l->be->normalize_channels(x->data, y->data, rows, s->c, mean, var, s->invert);
}

static void normp_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                           const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass, (void)xs, (void)nx, (void)y;
    norm_prep *s = l->state;
    if (!dxs[0])
        return;
    const float *mean, *var;
    normp_stats(l, &mean, &var);
    l->be->normalize_channels_backward(dy->data, dxs[0]->data, ct_tensor_size(dy) / s->c, s->c,
                                       var, s->invert);
}

/* Adapts unless the statistics are the config's or already in the weights (count above
 * 0: initial weights that hold them). */
static bool normp_adapt_begin(ct_layer *l)
{
    norm_prep *s = l->state;
    if (s->fixed)
        return false;
    float count = 0.0f;
    l->be->download(&count, l->params[2].value, sizeof count);
    if (count > 0.0f)
        return false;
    s->n = 0.0;
    memset(s->mean, 0, (size_t)s->c * sizeof *s->mean);
    memset(s->m2, 0, (size_t)s->c * sizeof *s->m2);
    return true;
}

/* The population variance, as Keras's adapt. */
static int normp_adapt_end(ct_layer *l, ct_error *err)
{
    norm_prep *s = l->state;
    if (s->n <= 0.0)
        return ct_layer_err(err, l, "no training data to compute the mean and variance from");
    for (int64_t k = 0; k < s->c; k++) {
        s->host[k] = (float)s->mean[k];
        s->host[s->c + k] = (float)(s->m2[k] / s->n);
    }
    float count = (float)s->n;
    l->be->upload(l->params[0].value, s->host, (size_t)s->c * sizeof(float));
    l->be->upload(l->params[1].value, s->host + s->c, (size_t)s->c * sizeof(float));
    l->be->upload(l->params[2].value, &count, sizeof count);
    return 0;
}

const ct_layer_kind ct_layer_normalization = {
    .name = "normalization",
    .class_name = "Normalization",
    .configure = normp_configure,
    .build = normp_build,
    .scratch_floats = normp_scratch,
    .forward = normp_forward,
    .backward = normp_backward,
    .free_state = normp_free,
    .masks = CT_MASK_PASSES,
    .adapt_begin = normp_adapt_begin,
    .adapt_end = normp_adapt_end,
};
