/* merge.c - the layers that merge several inputs into one output, as Keras's merging
 * layers: Add, Subtract, Multiply, Average, Maximum, Minimum (element-wise, with numpy
 * broadcasting of the per-sample shapes), Concatenate and Dot.
 *
 * Element-wise kinds apply inputs in their order (y = x0, then y op= x1, ...), so sums and
 * products have a fixed order. An input whose shape differs from the output's is first
 * broadcast into scratch (expand), and its gradient summed back (expand_backward). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

typedef enum { M_ADD, M_SUBTRACT, M_MULTIPLY, M_AVERAGE, M_MAXIMUM, M_MINIMUM, M_CONCAT, M_DOT } merge_op;

/* Dot as one batched GEMM per call: per sample C (m x n) = op(A) op(B), A the first
 * input's sample and B the second's. */
typedef struct dot_geom {
    bool ta, tb;
    int64_t m, n, k, lda, ldb, size_a, size_b;
    int64_t outer[2], len[2], inner[2]; /* each input as [outer][len][inner] about its axis */
} dot_geom;

typedef struct merge_state {
    merge_op op;
    int n;               /* inputs at build */
    ct_bcast *g;         /* element-wise: per input, its broadcast to the output */
    bool *plain;         /* element-wise: the input already has the output's shape */
    bool any_expanded;
    int64_t *cols;       /* concatenate: per input, floats per block along the axis */
    int64_t axis;        /* concatenate: as configured (batch axis 0) */
    int64_t blocks;      /* concatenate: blocks per sample (product of the axes before) */
    int64_t axes[2];     /* dot: as configured */
    bool normalize;      /* dot */
    dot_geom d;
} merge_state;

static const char *const no_keys[] = {NULL};
static const char *const concat_keys[] = {"axis", NULL};
static const char *const dot_keys[] = {"axes", "normalize", NULL};

static merge_op op_of(const ct_layer *l)
{
    static const char *const names[] = {"add", "subtract", "multiply", "average",
                                        "maximum", "minimum", "concatenate", "dot"};
    for (int i = 0; i < 8; i++)
        if (!strcmp(l->kind->name, names[i]))
            return (merge_op)i;
    return M_ADD;
}

static int merge_read(ct_layer *l, ct_node *cfg, merge_state *s, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (s->op == M_CONCAT)
        return ct_cfg_int(cfg, "axis", -1, -(CT_MAX_DIMS + 1), CT_MAX_DIMS, &s->axis, err);
    if (s->op != M_DOT)
        return 0;
    if (ct_cfg_require(cfg, "axes", what, err) ||
        ct_layer_read_ints(l, cfg, "axes", 2, -(CT_MAX_DIMS + 1), s->axes, s->axes, err))
        return -1;
    return ct_cfg_bool(cfg, "normalize", false, &s->normalize, err);
}

static int merge_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    merge_op op = op_of(l);
    const char *const *keys = op == M_CONCAT ? concat_keys : op == M_DOT ? dot_keys : no_keys;
    if (ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    merge_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    s->op = op;
    return merge_read(l, cfg, s, err);
}

/* ---- build ------------------------------------------------------------------------ */

static int check_count(const ct_layer *l, ct_error *err)
{
    int lo = l->kind->min_inputs, hi = l->kind->max_inputs;
    if (l->ninputs >= lo && (hi < 0 || l->ninputs <= hi))
        return 0;
    if (lo == hi)
        return ct_layer_err(err, l, "takes exactly %d inputs, got %d", lo, l->ninputs);
    return ct_layer_err(err, l, "takes at least %d input%s, got %d", lo, lo == 1 ? "" : "s",
                        l->ninputs);
}

/* Input i's size on axis a of a rank-`rank` sample shape, right-aligned (1 where absent). */
static int64_t aligned_dim(const ct_shape *s, int rank, int a)
{
    int at = a - (rank - s->ndim);
    return at < 0 ? 1 : s->dim[at];
}

static int pair_err(ct_error *err, const ct_layer *l, int i, int j, const char *tail, ...)
    __attribute__((format(printf, 5, 6)));

/* "inputs I and J have shapes A and B, <tail>" (inputs counted from 1). */
static int pair_err(ct_error *err, const ct_layer *l, int i, int j, const char *tail, ...)
{
    char a[256], b[256], rest[512];
    va_list ap;
    va_start(ap, tail);
    vsnprintf(rest, sizeof rest, tail, ap);
    va_end(ap);
    return ct_layer_err(err, l, "inputs %d and %d have shapes %s and %s, %s", i + 1, j + 1,
                        ct_shape_format(&l->in_shapes[i], a, sizeof a),
                        ct_shape_format(&l->in_shapes[j], b, sizeof b), rest);
}

/* The broadcast output shape; an axis where two inputs disagree names the first input
 * with the size already taken and the one that conflicts with it. */
static int broadcast_shape(ct_layer *l, ct_error *err)
{
    int rank = 0;
    for (int i = 0; i < l->ninputs; i++)
        rank = l->in_shapes[i].ndim > rank ? l->in_shapes[i].ndim : rank;
    ct_shape out = {.ndim = rank};
    for (int a = 0; a < rank; a++) {
        int from = -1;
        out.dim[a] = 1;
        for (int i = 0; i < l->ninputs; i++) {
            int64_t d = aligned_dim(&l->in_shapes[i], rank, a);
            if (d == 1 || d == out.dim[a])
                continue;
            if (from >= 0)
                return pair_err(err, l, from, i,
                                "which do not broadcast (axis %d: %lld against %lld)", a + 1,
                                (long long)out.dim[a], (long long)d);
            from = i;
            out.dim[a] = d;
        }
    }
    l->out_shape = out;
    return 0;
}

static void free_arrays(merge_state *s)
{
    free(s->g);
    free(s->plain);
    free(s->cols);
    s->g = NULL;
    s->plain = NULL;
    s->cols = NULL;
}

static int build_elementwise(ct_layer *l, merge_state *s, ct_error *err)
{
    if (broadcast_shape(l, err))
        return -1;
    s->g = calloc((size_t)l->ninputs, sizeof *s->g);
    s->plain = calloc((size_t)l->ninputs, sizeof *s->plain);
    if (!s->g || !s->plain)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    s->any_expanded = false;
    for (int i = 0; i < l->ninputs; i++) {
        if (ct_bcast_make(&l->in_shapes[i], &l->out_shape, &s->g[i]))
            return ct_layer_err(err, l, "input %d does not broadcast", i + 1); /* not reached */
        s->plain[i] = ct_shape_equal(&l->in_shapes[i], &l->out_shape);
        s->any_expanded |= !s->plain[i];
    }
    return 0;
}

/* Keras axis (batch 0, negative from the end) to a sample axis, or -1. */
static int sample_axis(int64_t axis, int rank)
{
    int64_t a = axis < 0 ? axis + rank + 1 : axis;
    return a >= 1 && a <= rank ? (int)a - 1 : -1;
}

static int concat_check(const ct_layer *l, const merge_state *s, int ax, ct_error *err)
{
    const ct_shape *s0 = &l->in_shapes[0];
    for (int i = 1; i < l->ninputs; i++) {
        const ct_shape *si = &l->in_shapes[i];
        if (si->ndim != s0->ndim)
            return pair_err(err, l, 0, i, "of different ranks");
        for (int a = 0; a < s0->ndim; a++)
            if (a != ax && si->dim[a] != s0->dim[a])
                return pair_err(err, l, 0, i,
                                "which differ on axis %d (%lld against %lld), not only on the "
                                "concatenation axis %lld", a + 1, (long long)s0->dim[a],
                                (long long)si->dim[a], (long long)s->axis);
    }
    return 0;
}

static int build_concat(ct_layer *l, merge_state *s, ct_error *err)
{
    const ct_shape *s0 = &l->in_shapes[0];
    int ax = sample_axis(s->axis, s0->ndim);
    char buf[256];
    if (ax < 0)
        return ct_layer_err(err, l, "axis %lld is %s for inputs of shape %s", (long long)s->axis,
                            s->axis == 0 || s->axis == -(s0->ndim + 1)
                                ? "the batch axis, which cannot be concatenated"
                                : "out of range",
                            ct_shape_format(s0, buf, sizeof buf));
    if (concat_check(l, s, ax, err))
        return -1;
    s->cols = calloc((size_t)l->ninputs, sizeof *s->cols);
    if (!s->cols)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    int64_t inner = 1, blocks = 1, total = 0;
    for (int a = ax + 1; a < s0->ndim; a++)
        inner *= s0->dim[a];
    for (int a = 0; a < ax; a++)
        blocks *= s0->dim[a];
    for (int i = 0; i < l->ninputs; i++) {
        s->cols[i] = l->in_shapes[i].dim[ax] * inner;
        total += l->in_shapes[i].dim[ax];
    }
    s->blocks = blocks;
    l->out_shape = *s0;
    l->out_shape.dim[ax] = total;
    return 0;
}

/* Input i's contracted sample axis for Dot, or an error. */
static int dot_axis(const ct_layer *l, const merge_state *s, int i, int *out, ct_error *err)
{
    const ct_shape *si = &l->in_shapes[i];
    char buf[256];
    if (si->ndim < 1 || si->ndim > 2)
        return ct_layer_err(err, l, "Dot takes inputs of rank 2 or 3 (batch included); input "
                            "%d has shape %s", i + 1, ct_shape_format(si, buf, sizeof buf));
    *out = sample_axis(s->axes[i], si->ndim);
    if (*out >= 0)
        return 0;
    return ct_layer_err(err, l, "axis %lld of input %d (shape %s) is %s", (long long)s->axes[i],
                        i + 1, ct_shape_format(si, buf, sizeof buf),
                        s->axes[i] == 0 || s->axes[i] == -(si->ndim + 1)
                            ? "the batch axis, which cannot be contracted"
                            : "out of range");
}

/* Each input about its contracted axis c, as [outer][len][inner] per sample. */
static void dot_views(const ct_shape *sh, int c, int i, dot_geom *d)
{
    d->outer[i] = c == 1 ? sh->dim[0] : 1;
    d->len[i] = sh->dim[c];
    d->inner[i] = c == 0 && sh->ndim == 2 ? sh->dim[1] : 1;
}

static int build_dot(ct_layer *l, merge_state *s, ct_error *err)
{
    int c[2];
    if (dot_axis(l, s, 0, &c[0], err) || dot_axis(l, s, 1, &c[1], err))
        return -1;
    const ct_shape *x = &l->in_shapes[0], *y = &l->in_shapes[1];
    if (x->dim[c[0]] != y->dim[c[1]])
        return pair_err(err, l, 0, 1, "whose dot axes %d and %d differ in size (%lld against "
                        "%lld)", c[0] + 1, c[1] + 1, (long long)x->dim[c[0]],
                        (long long)y->dim[c[1]]);
    dot_geom *d = &s->d;
    d->k = x->dim[c[0]];
    d->ta = x->ndim == 2 && c[0] == 0;
    d->m = x->ndim == 1 ? 1 : x->dim[1 - c[0]];
    d->lda = x->ndim == 1 ? d->k : x->dim[1];
    d->tb = y->ndim == 2 && c[1] == 1;
    d->n = y->ndim == 1 ? 1 : y->dim[1 - c[1]];
    d->ldb = y->ndim == 1 ? 1 : y->dim[1];
    d->size_a = ct_shape_size(x);
    d->size_b = ct_shape_size(y);
    dot_views(x, c[0], 0, d);
    dot_views(y, c[1], 1, d);
    ct_shape out = {0};
    if (x->ndim == 2)
        out.dim[out.ndim++] = d->m;
    if (y->ndim == 2)
        out.dim[out.ndim++] = d->n;
    if (out.ndim == 0) /* two vectors: one value per sample, as (None, 1) */
        out.dim[out.ndim++] = 1;
    l->out_shape = out;
    return 0;
}

static int merge_build(ct_layer *l, ct_error *err)
{
    merge_state *s = l->state;
    free_arrays(s);
    if (check_count(l, err))
        return -1;
    s->n = l->ninputs;
    if (s->op == M_CONCAT)
        return build_concat(l, s, err);
    if (s->op == M_DOT)
        return build_dot(l, s, err);
    return build_elementwise(l, s, err);
}

/* Element-wise: an expanded input (when any), a product or gradient at the output's shape
 * (multiply, and maximum/minimum with broadcasting), and the index of the extreme input.
 * Dot: the normalized inputs, their factors, and one input's gradient before the
 * normalization's backward. */
static int64_t merge_scratch(const ct_layer *l, int64_t max_batch)
{
    const merge_state *s = l->state;
    int64_t out = max_batch * ct_shape_size(&l->out_shape);
    if (s->op == M_DOT) {
        if (!s->normalize)
            return 0;
        const dot_geom *d = &s->d;
        int64_t a = max_batch * d->size_a, b = max_batch * d->size_b;
        return a + b + max_batch * (d->outer[0] * d->inner[0] + d->outer[1] * d->inner[1]) +
               (a > b ? a : b);
    }
    if (s->op == M_CONCAT)
        return 0;
    bool extreme = s->op == M_MAXIMUM || s->op == M_MINIMUM;
    int64_t k = (s->any_expanded ? 1 : 0) + (extreme ? 1 : 0) +
                (s->op == M_MULTIPLY || (extreme && s->any_expanded) ? 1 : 0);
    return k * out;
}

/* ---- element-wise ------------------------------------------------------------------- */

/* The scratch regions of an element-wise merge for a batch of n output floats. */
typedef struct ew_scratch {
    float *tmp;  /* an input broadcast to the output's shape */
    float *arg;  /* maximum / minimum: which input is extreme */
    float *prod; /* multiply: the other inputs' product; extremes: a gradient to sum back */
} ew_scratch;

static ew_scratch ew_regions(const ct_layer *l, int64_t n)
{
    const merge_state *s = l->state;
    ew_scratch r = {0};
    float *at = l->scratch;
    if (s->any_expanded) {
        r.tmp = at;
        at += n;
    }
    if (s->op == M_MAXIMUM || s->op == M_MINIMUM) {
        r.arg = at;
        at += n;
    }
    r.prod = at;
    return r;
}

/* Input i at the output's shape: itself, or broadcast into tmp. */
static const float *ew_input(const ct_layer *l, const ct_tensor *x, int i, float *tmp)
{
    const merge_state *s = l->state;
    if (s->plain[i])
        return x->data;
    l->be->expand(&s->g[i], x->data, tmp, x->rows);
    return tmp;
}

static void merge_forward_ew(ct_layer *l, const ct_tensor *const *x, int nx, ct_tensor *y)
{
    const merge_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t n = ct_tensor_size(y);
    ew_scratch sc = ew_regions(l, n);
    if (s->op == M_MAXIMUM || s->op == M_MINIMUM) {
        for (int i = 0; i < nx; i++)
            be->extremum(s->op == M_MINIMUM, ew_input(l, x[i], i, sc.tmp), y->data, sc.arg,
                         (float)i, n);
        return;
    }
    int i = 1;
    if (s->op != M_MULTIPLY && nx >= 2 && s->plain[0] && s->plain[1]) {
        /* the first two in one pass (plain: neither needs the broadcast buffer) */
        be->add_scaled(n, x[0]->data, s->op == M_SUBTRACT ? -1.0f : 1.0f, x[1]->data, y->data);
        i = 2;
    } else {
        be->copy(y->data, ew_input(l, x[0], 0, sc.tmp), n);
    }
    for (; i < nx; i++) {
        const float *xi = ew_input(l, x[i], i, sc.tmp);
        if (s->op == M_MULTIPLY)
            be->mul(n, y->data, xi, y->data);
        else
            be->axpy(n, s->op == M_SUBTRACT ? -1.0f : 1.0f, xi, y->data);
    }
    if (s->op == M_AVERAGE)
        be->scale(n, 1.0f / (float)nx, y->data);
}

/* dx[i] from g, the gradient at the output's shape: a copy, or summed over the broadcast
 * positions. g may be dx[i]'s own memory when the input is plain. */
static void ew_give(const ct_layer *l, int i, const float *g, ct_tensor *dx)
{
    const merge_state *s = l->state;
    if (s->plain[i])
        l->be->copy(dx->data, g, ct_tensor_size(dx));
    else
        l->be->expand_backward(&s->g[i], g, dx->data, dx->rows);
}

/* Multiply: dx_i = dy * prod_{j != i} x_j, the product recomputed (no division, so zeros
 * are fine), in input order. */
static void multiply_backward(ct_layer *l, const ct_tensor *const *x, int nx, const float *dy,
                              int64_t n, ct_tensor *const *dx)
{
    const merge_state *s = l->state;
    ew_scratch sc = ew_regions(l, n);
    for (int i = 0; i < nx; i++) {
        if (!dx[i])
            continue;
        float *p = s->plain[i] ? dx[i]->data : sc.prod;
        l->be->copy(p, dy, n);
        for (int j = 0; j < nx; j++)
            if (j != i)
                l->be->mul(n, p, ew_input(l, x[j], j, sc.tmp), p);
        ew_give(l, i, p, dx[i]);
    }
}

static void extreme_backward(ct_layer *l, int nx, const float *dy, int64_t n,
                             ct_tensor *const *dx)
{
    const merge_state *s = l->state;
    ew_scratch sc = ew_regions(l, n);
    for (int i = 0; i < nx; i++) {
        if (!dx[i])
            continue;
        float *p = s->plain[i] ? dx[i]->data : sc.prod;
        l->be->take_where(sc.arg, (float)i, dy, p, n);
        ew_give(l, i, p, dx[i]);
    }
}

static void merge_backward_ew(ct_layer *l, const ct_tensor *const *x, int nx, ct_tensor *dy,
                              ct_tensor *const *dx)
{
    const merge_state *s = l->state;
    int64_t n = ct_tensor_size(dy);
    if (s->op == M_MULTIPLY) {
        multiply_backward(l, x, nx, dy->data, n, dx);
        return;
    }
    if (s->op == M_MAXIMUM || s->op == M_MINIMUM) {
        extreme_backward(l, nx, dy->data, n, dx);
        return;
    }
    if (s->op == M_AVERAGE) /* dy may be overwritten: scale it once for every input */
        l->be->scale(n, 1.0f / (float)nx, dy->data);
    for (int i = 0; i < nx; i++) {
        if (!dx[i])
            continue;
        ew_give(l, i, dy->data, dx[i]);
        if (s->op == M_SUBTRACT && i == 1)
            l->be->scale(ct_tensor_size(dx[i]), -1.0f, dx[i]->data);
    }
}

/* ---- concatenate -------------------------------------------------------------------- */

/* Each input fills its own columns of every block (the part of a sample from the
 * concatenation axis on); backward reads them back. */
static void concat_pass(ct_layer *l, const ct_tensor *const *x, ct_tensor *const *dx, int nx,
                        float *y, int64_t rows, bool backward)
{
    const merge_state *s = l->state;
    int64_t total = 0, off = 0;
    for (int i = 0; i < nx; i++)
        total += s->cols[i];
    for (int i = 0; i < nx; i++) {
        if (!backward)
            l->be->copy_strided(x[i]->data, s->cols[i], y + off, total, rows * s->blocks,
                                s->cols[i]);
        else if (dx[i])
            l->be->copy_strided(y + off, total, dx[i]->data, s->cols[i], rows * s->blocks,
                                s->cols[i]);
        off += s->cols[i];
    }
}

/* ---- dot ---------------------------------------------------------------------------- */

#define DOT_EPS 1e-12f /* Keras's l2_normalize epsilon */

typedef struct dot_scratch {
    float *an, *bn;   /* normalized inputs */
    float *ia, *ib;   /* their factors */
    float *g;         /* one input's gradient before the normalization's backward */
} dot_scratch;

static dot_scratch dot_regions(const ct_layer *l, int64_t rows)
{
    const dot_geom *d = &((const merge_state *)l->state)->d;
    dot_scratch r;
    r.an = l->scratch;
    r.bn = r.an + rows * d->size_a;
    r.ia = r.bn + rows * d->size_b;
    r.ib = r.ia + rows * d->outer[0] * d->inner[0];
    r.g = r.ib + rows * d->outer[1] * d->inner[1];
    return r;
}

static void dot_forward(ct_layer *l, const ct_tensor *const *x, ct_tensor *y)
{
    const merge_state *s = l->state;
    const dot_geom *d = &s->d;
    const ct_backend *be = l->be;
    int64_t rows = y->rows;
    const float *a = x[0]->data, *b = x[1]->data;
    if (s->normalize) {
        dot_scratch sc = dot_regions(l, rows);
        be->l2_normalize(a, sc.an, sc.ia, rows * d->outer[0], d->len[0], d->inner[0], DOT_EPS);
        be->l2_normalize(b, sc.bn, sc.ib, rows * d->outer[1], d->len[1], d->inner[1], DOT_EPS);
        a = sc.an;
        b = sc.bn;
    }
    be->gemm_batched(d->ta, d->tb, d->m, d->n, d->k, 1.0f, a, d->lda, d->size_a, b, d->ldb,
                     d->size_b, 0.0f, y->data, d->n, d->m * d->n, rows);
}

/* dA = dC op(B)^T, stored as A is (transposed when ta). */
static void dot_grad_a(const ct_layer *l, const float *dc, const float *b, float *da,
                       int64_t rows)
{
    const dot_geom *d = &((const merge_state *)l->state)->d;
    if (!d->ta)
        l->be->gemm_batched(false, !d->tb, d->m, d->k, d->n, 1.0f, dc, d->n, d->m * d->n, b,
                            d->ldb, d->size_b, 0.0f, da, d->lda, d->size_a, rows);
    else
        l->be->gemm_batched(d->tb, true, d->k, d->m, d->n, 1.0f, b, d->ldb, d->size_b, dc,
                            d->n, d->m * d->n, 0.0f, da, d->lda, d->size_a, rows);
}

/* dB = op(A)^T dC, stored as B is (transposed when tb). */
static void dot_grad_b(const ct_layer *l, const float *dc, const float *a, float *db,
                       int64_t rows)
{
    const dot_geom *d = &((const merge_state *)l->state)->d;
    if (!d->tb)
        l->be->gemm_batched(!d->ta, false, d->k, d->n, d->m, 1.0f, a, d->lda, d->size_a, dc,
                            d->n, d->m * d->n, 0.0f, db, d->ldb, d->size_b, rows);
    else
        l->be->gemm_batched(true, d->ta, d->n, d->k, d->m, 1.0f, dc, d->n, d->m * d->n, a,
                            d->lda, d->size_a, 0.0f, db, d->ldb, d->size_b, rows);
}

static void dot_backward(ct_layer *l, const ct_tensor *const *x, const ct_tensor *dy,
                         ct_tensor *const *dx)
{
    const merge_state *s = l->state;
    const dot_geom *d = &s->d;
    int64_t rows = dy->rows;
    dot_scratch sc = s->normalize ? dot_regions(l, rows) : (dot_scratch){0};
    const float *a = s->normalize ? sc.an : x[0]->data, *b = s->normalize ? sc.bn : x[1]->data;
    if (dx[0]) {
        dot_grad_a(l, dy->data, b, s->normalize ? sc.g : dx[0]->data, rows);
        if (s->normalize)
            l->be->l2_normalize_backward(x[0]->data, sc.an, sc.ia, sc.g, dx[0]->data,
                                         rows * d->outer[0], d->len[0], d->inner[0], DOT_EPS);
    }
    if (dx[1]) {
        dot_grad_b(l, dy->data, a, s->normalize ? sc.g : dx[1]->data, rows);
        if (s->normalize)
            l->be->l2_normalize_backward(x[1]->data, sc.bn, sc.ib, sc.g, dx[1]->data,
                                         rows * d->outer[1], d->len[1], d->inner[1], DOT_EPS);
    }
}

/* ---- the kinds ---------------------------------------------------------------------- */

static void merge_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *x, int nx,
                          ct_tensor *y)
{
    (void)pass;
    const merge_state *s = l->state;
    if (s->op == M_CONCAT)
        concat_pass(l, x, NULL, nx, y->data, y->rows, false);
    else if (s->op == M_DOT)
        dot_forward(l, x, y);
    else
        merge_forward_ew(l, x, nx, y);
}

static void merge_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *x, int nx,
                           const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dx)
{
    (void)pass;
    (void)y;
    const merge_state *s = l->state;
    if (s->op == M_CONCAT)
        concat_pass(l, x, dx, nx, dy->data, dy->rows, true);
    else if (s->op == M_DOT)
        dot_backward(l, x, dy, dx);
    else
        merge_backward_ew(l, x, nx, dy, dx);
}

static void merge_free(ct_layer *l)
{
    if (l->state)
        free_arrays(l->state);
    free(l->state);
    l->state = NULL;
}

/* Masks: a merge of per-step tensors carries the union of its inputs' masks (Keras 3 ORs
 * them), or none when one input has none (Keras 3 drops it; for Concatenate an input
 * without one counts as unmasked everywhere, which is the same); Dot's output has no such
 * axis. */
#define MERGE_KIND(var, config_name, cls, lo, hi, mask_rule)                                  \
    const ct_layer_kind var = {                                                               \
        .name = config_name,                                                                  \
        .class_name = cls,                                                                    \
        .configure = merge_configure,                                                         \
        .build = merge_build,                                                                 \
        .scratch_floats = merge_scratch,                                                      \
        .min_inputs = lo,                                                                     \
        .max_inputs = hi,                                                                     \
        .forward = merge_forward,                                                             \
        .backward = merge_backward,                                                           \
        .free_state = merge_free,                                                             \
        .masks = mask_rule,                                                                   \
    }

MERGE_KIND(ct_layer_add, "add", "Add", 2, -1, CT_MASK_PASSES);
MERGE_KIND(ct_layer_subtract, "subtract", "Subtract", 2, 2, CT_MASK_PASSES);
MERGE_KIND(ct_layer_multiply, "multiply", "Multiply", 2, -1, CT_MASK_PASSES);
MERGE_KIND(ct_layer_average, "average", "Average", 2, -1, CT_MASK_PASSES);
MERGE_KIND(ct_layer_maximum, "maximum", "Maximum", 2, -1, CT_MASK_PASSES);
MERGE_KIND(ct_layer_minimum, "minimum", "Minimum", 2, -1, CT_MASK_PASSES);
MERGE_KIND(ct_layer_concatenate, "concatenate", "Concatenate", 1, -1, CT_MASK_PASSES);
MERGE_KIND(ct_layer_dot, "dot", "Dot", 2, 2, CT_MASK_ENDS);
