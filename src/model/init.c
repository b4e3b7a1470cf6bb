/* init.c - Keras initializers and weight regularizers. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "init.h"
#include "rng.h"
#include "simd.h"

/* Keras divides the VarianceScaling stddev by the stddev of a unit normal truncated at
 * +-2, so the truncated draws keep the intended variance. */
#define TRUNC_STDDEV 0.87962566103423978

static const char *const init_names[CT_INIT_COUNT + 1] = {
    [CT_INIT_ZEROS] = "zeros",
    [CT_INIT_ONES] = "ones",
    [CT_INIT_CONSTANT] = "constant",
    [CT_INIT_RANDOM_NORMAL] = "random_normal",
    [CT_INIT_RANDOM_UNIFORM] = "random_uniform",
    [CT_INIT_TRUNCATED_NORMAL] = "truncated_normal",
    [CT_INIT_GLOROT_UNIFORM] = "glorot_uniform",
    [CT_INIT_GLOROT_NORMAL] = "glorot_normal",
    [CT_INIT_HE_UNIFORM] = "he_uniform",
    [CT_INIT_HE_NORMAL] = "he_normal",
    [CT_INIT_LECUN_UNIFORM] = "lecun_uniform",
    [CT_INIT_LECUN_NORMAL] = "lecun_normal",
    [CT_INIT_ORTHOGONAL] = "orthogonal",
    [CT_INIT_COUNT] = NULL,
};

/* Short names Keras also accepts for the same classes. */
static const struct {
    const char *name;
    ct_init_kind kind;
} init_aliases[] = {
    {"zero", CT_INIT_ZEROS},
    {"one", CT_INIT_ONES},
    {"normal", CT_INIT_RANDOM_NORMAL},
    {"uniform", CT_INIT_RANDOM_UNIFORM},
};

/* ---- names ----------------------------------------------------------------------- */

/* Compares ignoring case and underscores, so "GlorotUniform" equals "glorot_uniform". */
static bool same_name(const char *a, const char *b)
{
    for (;;) {
        while (*a == '_')
            a++;
        while (*b == '_')
            b++;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
        if (!*a)
            return true;
        a++;
        b++;
    }
}

static int find_init(const char *name, ct_init_kind *kind)
{
    for (int k = 0; k < CT_INIT_COUNT; k++) {
        if (same_name(name, init_names[k])) {
            *kind = (ct_init_kind)k;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof init_aliases / sizeof init_aliases[0]; i++) {
        if (same_name(name, init_aliases[i].name)) {
            *kind = init_aliases[i].kind;
            return 0;
        }
    }
    return -1;
}

/* "a, b, c" from a NULL-terminated list. */
static void join_names(const char *const *names, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%s", i ? ", " : "", names[i]);
}

static int unknown_name(const ct_node *n, const char *family, const char *name,
                        const char *const *known, ct_error *err)
{
    char list[512], hint[160] = "";
    join_names(known, list, sizeof list);
    const char *close = ct_suggest(name, known);
    if (close)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", close);
    return ct_node_err(err, n, "unknown %s '%s'%s; known: %s", family, name, hint, list);
}

const char *ct_init_name(ct_init_kind kind)
{
    if ((int)kind < 0 || kind >= CT_INIT_COUNT)
        return "unknown";
    return init_names[kind];
}

/* ---- parsing --------------------------------------------------------------------- */

/* Defaults of the parameterised initializers, as Keras has them. */
static void init_defaults(ct_init *out)
{
    switch (out->kind) {
    case CT_INIT_ONES:
        out->a = 1.0;
        break;
    case CT_INIT_RANDOM_NORMAL:
    case CT_INIT_TRUNCATED_NORMAL:
        out->a = 0.0;
        out->b = 0.05;
        break;
    case CT_INIT_RANDOM_UNIFORM:
        out->a = -0.05;
        out->b = 0.05;
        break;
    case CT_INIT_ORTHOGONAL:
        out->a = 1.0;
        break;
    default:
        break;
    }
}

/* Reads the keys of a map form; the node's `type` has already been read. */
static int init_params(ct_node *map, ct_init *out, ct_error *err)
{
    static const char *const plain[] = {"type", NULL};
    static const char *const constant[] = {"type", "value", NULL};
    static const char *const normal[] = {"type", "mean", "stddev", NULL};
    static const char *const uniform[] = {"type", "minval", "maxval", NULL};
    static const char *const orthogonal[] = {"type", "gain", NULL};
    char what[64];
    snprintf(what, sizeof what, "initializer '%s'", init_names[out->kind]);

    switch (out->kind) {
    case CT_INIT_CONSTANT:
        if (ct_cfg_check_keys(map, constant, what, err))
            return -1;
        return ct_cfg_float(map, "value", 0.0, -HUGE_VAL, HUGE_VAL, &out->a, err);
    case CT_INIT_RANDOM_NORMAL:
    case CT_INIT_TRUNCATED_NORMAL:
        if (ct_cfg_check_keys(map, normal, what, err) ||
            ct_cfg_float(map, "mean", 0.0, -HUGE_VAL, HUGE_VAL, &out->a, err))
            return -1;
        return ct_cfg_float(map, "stddev", 0.05, 0.0, HUGE_VAL, &out->b, err);
    case CT_INIT_RANDOM_UNIFORM:
        if (ct_cfg_check_keys(map, uniform, what, err) ||
            ct_cfg_float(map, "minval", -0.05, -HUGE_VAL, HUGE_VAL, &out->a, err) ||
            ct_cfg_float(map, "maxval", 0.05, -HUGE_VAL, HUGE_VAL, &out->b, err))
            return -1;
        if (out->b < out->a)
            return ct_node_err(err, ct_map_get(map, "maxval"),
                               "%s: maxval %g is below minval %g", what, out->b, out->a);
        return 0;
    case CT_INIT_ORTHOGONAL:
        if (ct_cfg_check_keys(map, orthogonal, what, err))
            return -1;
        return ct_cfg_float(map, "gain", 1.0, -HUGE_VAL, HUGE_VAL, &out->a, err);
    default:
        return ct_cfg_check_keys(map, plain, what, err);
    }
}

static int init_from_name(const ct_node *n, const char *name, ct_init *out, ct_error *err)
{
    ct_init_kind kind;
    if (find_init(name, &kind) != 0)
        return unknown_name(n, "initializer", name, init_names, err);
    *out = (ct_init){.kind = kind};
    init_defaults(out);
    return 0;
}

int ct_init_parse(ct_node *map, const char *key, const char *def_name, ct_init *out,
                  ct_error *err)
{
    ct_node *n = ct_map_get(map, key);
    if (ct_node_is_null(n)) { /* null means the default, as for the other getters */
        if (!def_name)
            return ct_node_err(err, map, "missing key '%s'", key);
        n = ct_map_set_scalar(map, key, def_name);
        if (!n)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    if (n->type == CT_NODE_SCALAR)
        return init_from_name(n, n->scalar, out, err);
    if (n->type != CT_NODE_MAP)
        return ct_node_err(err, n, "%s: expected an initializer name or a map with 'type'", key);

    const char *type;
    if (ct_cfg_string(n, "type", NULL, &type, err))
        return -1;
    if (init_from_name(ct_map_get(n, "type"), type, out, err))
        return -1;
    return init_params(n, out, err);
}

/* ---- filling --------------------------------------------------------------------- */

static void compute_fans(const ct_shape *s, double *fan_in, double *fan_out)
{
    if (s->ndim < 2) {
        *fan_in = *fan_out = (double)ct_shape_size(s);
        return;
    }
    double receptive = 1.0;
    for (int i = 0; i < s->ndim - 2; i++)
        receptive *= (double)s->dim[i];
    *fan_in = (double)s->dim[s->ndim - 2] * receptive;
    *fan_out = (double)s->dim[s->ndim - 1] * receptive;
}

static void fill_constant(float *w, int64_t n, double value)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)value;
}

static void fill_uniform(float *w, int64_t n, double lo, double hi, uint64_t key)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)(lo + (hi - lo) * (double)ct_rng_uniform(key, (uint64_t)i));
}

static void fill_normal(float *w, int64_t n, double mean, double stddev, uint64_t key)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)(mean + stddev * (double)ct_rng_normal(key, (uint64_t)i));
}

/* Draws beyond 2 stddev are redrawn; element i tries counters i, i + n, i + 2n, ... so
 * each element depends on its own index only (the same on any backend). */
static void fill_truncated(float *w, int64_t n, double mean, double stddev, uint64_t key)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t c = (uint64_t)i;
        float z = ct_rng_normal(key, c);
        while (fabsf(z) > 2.0f) {
            c += (uint64_t)n;
            z = ct_rng_normal(key, c);
        }
        w[i] = (float)(mean + stddev * (double)z);
    }
}

/* Vector j of a set of `count` vectors of length `len` stored in w with strides. */
typedef struct {
    float *w;
    int64_t count, len, vstride, estride;
} vec_set;

static float *vec_at(const vec_set *v, int64_t j, int64_t i)
{
    return v->w + j * v->vstride + i * v->estride;
}

static double vec_dot(const vec_set *v, int64_t a, int64_t b)
{
    double s = 0.0;
    for (int64_t i = 0; i < v->len; i++)
        s += (double)*vec_at(v, a, i) * (double)*vec_at(v, b, i);
    return s;
}

/* a . b over n doubles in 8 running sums, combined pairwise in a fixed order: the adds no
 * longer wait on each other one by one (the sums' order, hence the result, is the same
 * on every machine). */
CT_CPU_CLONES
static double dot8(const double *restrict a, const double *restrict b, int64_t n)
{
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += a[i + k] * b[i + k];
    for (; i < n; i++)
        s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

CT_CPU_CLONES
static void sub_scaled(double *restrict y, const double *restrict x, double d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] -= d * x[i];
}

/* Modified Gram-Schmidt in double on a contiguous copy; run twice, which restores
 * orthogonality to rounding even for ill-conditioned draws. The diagonal of R stays
 * positive, which is Keras's sign fix. Without memory for the copy, the same in place. */
static void orthonormalise(const vec_set *v)
{
    double *c = malloc((size_t)(v->count * v->len) * sizeof *c);
    for (int64_t j = 0; c && j < v->count; j++)
        for (int64_t i = 0; i < v->len; i++)
            c[j * v->len + i] = (double)*vec_at(v, j, i);
    for (int pass = 0; c && pass < 2; pass++)
        for (int64_t j = 0; j < v->count; j++) {
            double *vj = c + j * v->len;
            for (int64_t p = 0; p < j; p++)
                sub_scaled(vj, c + p * v->len, dot8(c + p * v->len, vj, v->len), v->len);
            double norm = sqrt(dot8(vj, vj, v->len));
            double inv = norm > 0.0 ? 1.0 / norm : 0.0;
            for (int64_t i = 0; i < v->len; i++)
                vj[i] *= inv;
        }
    for (int64_t j = 0; c && j < v->count; j++)
        for (int64_t i = 0; i < v->len; i++)
            *vec_at(v, j, i) = (float)c[j * v->len + i];
    if (c) {
        free(c);
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t j = 0; j < v->count; j++) {
            for (int64_t p = 0; p < j; p++) {
                double d = vec_dot(v, p, j);
                for (int64_t i = 0; i < v->len; i++)
                    *vec_at(v, j, i) -= (float)(d * (double)*vec_at(v, p, i));
            }
            double norm = sqrt(vec_dot(v, j, j));
            double inv = norm > 0.0 ? 1.0 / norm : 0.0;
            for (int64_t i = 0; i < v->len; i++)
                *vec_at(v, j, i) = (float)((double)*vec_at(v, j, i) * inv);
        }
    }
}

/* Keras flattens to (prod(shape[:-1]), shape[-1]) and orthonormalises the shorter side:
 * the columns when rows >= cols, the rows otherwise. Shapes under 2-D are one row. */
static void fill_orthogonal(float *w, const ct_shape *s, double gain, uint64_t key)
{
    int64_t n = ct_shape_size(s);
    int64_t cols = s->ndim ? s->dim[s->ndim - 1] : 1;
    int64_t rows = cols ? n / cols : 0;
    if (s->ndim < 2) {
        rows = 1;
        cols = n;
    }
    fill_normal(w, n, 0.0, 1.0, key);
    vec_set v = {w, cols, rows, 1, cols}; /* columns */
    if (rows < cols)
        v = (vec_set){w, rows, cols, cols, 1}; /* rows */
    orthonormalise(&v);
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)(gain * (double)w[i]);
}

/* The VarianceScaling family: uniform limit sqrt(3 * scale / fan) or truncated normal
 * with stddev sqrt(scale / fan) / TRUNC_STDDEV. */
static void fill_scaled(float *w, int64_t n, double scale, double fan, bool uniform,
                        uint64_t key)
{
    double var = scale / fmax(1.0, fan);
    if (uniform) {
        double limit = sqrt(3.0 * var);
        fill_uniform(w, n, -limit, limit, key);
    } else {
        fill_truncated(w, n, 0.0, sqrt(var) / TRUNC_STDDEV, key);
    }
}

void ct_init_fill(const ct_init *init, float *w, const ct_shape *shape, uint64_t key)
{
    int64_t n = ct_shape_size(shape);
    double fan_in, fan_out;
    compute_fans(shape, &fan_in, &fan_out);
    double fan_avg = 0.5 * (fan_in + fan_out);

    switch (init->kind) {
    case CT_INIT_ZEROS:
        fill_constant(w, n, 0.0);
        break;
    case CT_INIT_ONES:
        fill_constant(w, n, 1.0);
        break;
    case CT_INIT_CONSTANT:
        fill_constant(w, n, init->a);
        break;
    case CT_INIT_RANDOM_NORMAL:
        fill_normal(w, n, init->a, init->b, key);
        break;
    case CT_INIT_RANDOM_UNIFORM:
        fill_uniform(w, n, init->a, init->b, key);
        break;
    case CT_INIT_TRUNCATED_NORMAL:
        fill_truncated(w, n, init->a, init->b, key);
        break;
    case CT_INIT_GLOROT_UNIFORM:
    case CT_INIT_GLOROT_NORMAL:
        fill_scaled(w, n, 1.0, fan_avg, init->kind == CT_INIT_GLOROT_UNIFORM, key);
        break;
    case CT_INIT_HE_UNIFORM:
    case CT_INIT_HE_NORMAL:
        fill_scaled(w, n, 2.0, fan_in, init->kind == CT_INIT_HE_UNIFORM, key);
        break;
    case CT_INIT_LECUN_UNIFORM:
    case CT_INIT_LECUN_NORMAL:
        fill_scaled(w, n, 1.0, fan_in, init->kind == CT_INIT_LECUN_UNIFORM, key);
        break;
    case CT_INIT_ORTHOGONAL:
        fill_orthogonal(w, shape, init->a, key);
        break;
    default:
        fill_constant(w, n, 0.0);
        break;
    }
    for (int64_t i = init->ones_begin; i < init->ones_end && i < n; i++)
        w[i] = 1.0f;
}

/* ---- regularizers ---------------------------------------------------------------- */

enum { REG_L1, REG_L2, REG_L1_L2, REG_COUNT };
static const char *const reg_names[REG_COUNT + 1] = {"l1", "l2", "l1_l2", NULL};

/* Python's None as well: users paste it from Keras code. */
static bool is_none(const ct_node *n)
{
    return ct_node_is_null(n) || (n->type == CT_NODE_SCALAR && !n->quoted &&
                          (!strcmp(n->scalar, "none") || !strcmp(n->scalar, "None")));
}

static int find_reg(const ct_node *n, const char *name, int *kind, ct_error *err)
{
    for (int k = 0; k < REG_COUNT; k++) {
        if (same_name(name, reg_names[k])) {
            *kind = k;
            return 0;
        }
    }
    return unknown_name(n, "regularizer", name, reg_names, err);
}

static void reg_defaults(int kind, ct_regularizer *out)
{
    out->l1 = kind == REG_L1 ? 0.01 : 0.0;
    out->l2 = kind == REG_L2 ? 0.01 : 0.0;
}

static int reg_params(ct_node *map, int kind, ct_regularizer *out, ct_error *err)
{
    static const char *const keys[REG_COUNT][4] = {
        {"type", "l1", NULL}, {"type", "l2", NULL}, {"type", "l1", "l2", NULL}};
    char what[64];
    snprintf(what, sizeof what, "regularizer '%s'", reg_names[kind]);
    if (ct_cfg_check_keys(map, keys[kind], what, err))
        return -1;
    if (kind != REG_L2 && ct_cfg_float(map, "l1", out->l1, 0.0, HUGE_VAL, &out->l1, err))
        return -1;
    if (kind != REG_L1 && ct_cfg_float(map, "l2", out->l2, 0.0, HUGE_VAL, &out->l2, err))
        return -1;
    return 0;
}

int ct_regularizer_parse(ct_node *map, const char *key, ct_regularizer *out, ct_error *err)
{
    out->l1 = out->l2 = 0.0;
    ct_node *n = ct_map_get(map, key);
    if (!n) {
        /* Recorded so the resolved config shows the setting. */
        ct_map_set_scalar(map, key, "null");
        return 0;
    }
    if (is_none(n))
        return 0;
    int kind = REG_L1;
    if (n->type == CT_NODE_SCALAR) {
        if (find_reg(n, n->scalar, &kind, err))
            return -1;
        reg_defaults(kind, out);
        return 0;
    }
    if (n->type != CT_NODE_MAP)
        return ct_node_err(err, n, "%s: expected a regularizer name or a map with 'type'", key);
    const char *type;
    if (ct_cfg_string(n, "type", NULL, &type, err) ||
        find_reg(ct_map_get(n, "type"), type, &kind, err))
        return -1;
    reg_defaults(kind, out);
    return reg_params(n, kind, out, err);
}
