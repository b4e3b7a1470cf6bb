/* layertest.h - one layer built by hand from a YAML snippet, for the layer suites
 * (header-only).
 *
 * The including file declares these before the #include and defines them after it:
 *   static void lt_bind(ct_layer *l, const char *type);   sets l->kind (NULL if unknown)
 *                                                          and any field fixed per file
 *   static void lt_fill(ct_param *p, int i, int64_t n);   initial values of parameter i
 */
#ifndef CT_LAYERTEST_H
#define CT_LAYERTEST_H

#include "layer.h"
#include "testutil.h"

static void lt_bind(ct_layer *l, const char *type);
static void lt_fill(ct_param *p, int i, int64_t n);

typedef struct lt {
    ct_node *root;
    ct_node *cfg;      /* the layer's map: the root, or the root's `layer` entry */
    ct_layer l;
    float *scratch;
    ct_error err;
} lt;

static inline float *fvec(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static inline double *dvec(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

static inline ct_tensor tensor(float *data, int64_t rows, ct_shape shape)
{
    ct_tensor t = {.data = data, .rows = rows, .shape = shape, .device = CT_DEVICE_CPU};
    return t;
}

/* Parameter values in [-0.6, 0.6), distinct per parameter. */
static inline void lt_fill_uniform(ct_param *p, int i, int64_t n)
{
    tu_fill(p->value, n, 100u + (unsigned)i, -0.6f, 0.6f);
}

/* Gives every parameter a value array (filled by lt_fill) and, if trainable, a zeroed
 * gradient. */
static inline void lt_alloc_params(lt *t)
{
    for (int i = 0; i < t->l.nparams; i++) {
        ct_param *p = &t->l.params[i];
        int64_t n = ct_shape_size(&p->shape);
        p->value = fvec(n);
        lt_fill(p, i, n);
        p->grad = p->trainable ? fvec(n) : NULL;
    }
}

/* Parses yaml, configures and builds the layer on input shape dims, then allocates its
 * parameters and scratch for max_batch rows. Returns the configure/build status; t->err
 * holds the message on failure. */
static inline int lt_setup(lt *t, const char *yaml, const char *name, int ndim,
                           const int64_t *dims, int64_t max_batch)
{
    memset(t, 0, sizeof *t);
    t->root = ct_config_parse(yaml, strlen(yaml), "layer.yaml", &t->err);
    ck_assert_msg(t->root != NULL, "%s", t->err.msg);
    ct_node *inner = ct_map_get(t->root, "layer");
    t->cfg = inner ? inner : t->root;
    ct_node *type = ct_map_get(t->cfg, "type");
    ck_assert_ptr_nonnull(type);
    lt_bind(&t->l, type->scalar);
    ck_assert_msg(t->l.kind != NULL, "no layer kind '%s'", type->scalar);
    snprintf(t->l.name, sizeof t->l.name, "%s", name);
    t->l.be = ct_backend_cpu();
    t->l.cfg = t->cfg;
    t->l.in_shape = ct_shape_make(ndim, dims);
    t->l.ninputs = 1;
    t->l.in_shapes = &t->l.in_shape;
    if (t->l.kind->configure(&t->l, t->cfg, &t->err) || t->l.kind->build(&t->l, &t->err))
        return -1;
    lt_alloc_params(t);
    int64_t ns = t->l.kind->scratch_floats ? t->l.kind->scratch_floats(&t->l, max_batch) : 0;
    t->scratch = fvec(ns);
    t->l.scratch = ns > 0 ? t->scratch : NULL;
    return 0;
}

/* One-input forward and backward through the layer interface's arrays (dx NULL: no input
 * gradient wanted). */
static inline void lt_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *x, ct_tensor *y)
{
    l->kind->forward(l, pass, &x, 1, y);
}

/* Finite differences of L = sum r * y for one-input layers: g holds the layer, the pass,
 * the input x, the output y and the weights r. */
typedef struct lt_fd {
    lt *t;
    const ct_pass *pass;
    ct_tensor x, y;
    const float *r;
} lt_fd;

static inline double lt_fd_loss(lt_fd *g)
{
    lt_forward(&g->t->l, g->pass, &g->x, &g->y);
    double s = 0.0;
    for (int64_t i = 0; i < ct_tensor_size(&g->y); i++)
        s += (double)g->r[i] * g->y.data[i];
    return s;
}

/* Central difference of L in *v (step 1e-3) against the analytic ana, within
 * abs_tol + rel_tol * the larger magnitude; the message names the layer, the pass and
 * what[i]. */
static inline void lt_fd_compare(lt_fd *g, const char *what, int64_t i, double ana, float *v,
                                 double abs_tol, double rel_tol)
{
    float old = *v, h = 1e-3f, up = old + h, down = old - h;
    *v = up;
    double lp = lt_fd_loss(g);
    *v = down;
    double lm = lt_fd_loss(g);
    *v = old;
    double num = (lp - lm) / ((double)up - (double)down);
    ck_assert_msg(fabs(num - ana) <= abs_tol + rel_tol * fmax(fabs(num), fabs(ana)),
                  "%s (%s, %s) d%s[%lld]: analytic %.7g, numeric %.7g", g->t->l.name,
                  g->t->l.kind->name, g->pass->training ? "training" : "inference", what,
                  (long long)i, ana, num);
}

static inline void lt_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *x,
                               const ct_tensor *y, ct_tensor *dy, ct_tensor *dx)
{
    l->kind->backward(l, pass, &x, 1, y, dy, &dx);
}

/* The output's mask buffer, rows x the output's first axis, where the layer writes one
 * (CT_MASK_WRITES: masking, embeddings with mask_zero), as the model's planner would give
 * it; else NULL. in_mask: whether the input carries a mask. */
static inline float *lt_out_mask(const ct_layer *l, bool in_mask, int64_t rows)
{
    if (l->kind->masks != CT_MASK_BY_KIND || l->out_shape.ndim < 1 ||
        l->kind->mask_out(l, &in_mask) != CT_MASK_WRITES)
        return NULL;
    return fvec(rows * l->out_shape.dim[0]);
}

/* Checks t's dx and every trainable parameter's gradient of L = sum r * y over `rows`
 * rows (x uniform in [lo, hi) and r from fixed seeds) against central differences, within
 * abs_tol + rel_tol, with the input carrying `mask` (rows x the input's first axis; NULL:
 * none). Gradients and dx start as garbage: backward must write them, not add. */
static inline void lt_gradcheck_in(lt *t, int64_t rows, const ct_pass *pass, const float *mask,
                                   float lo, float hi, double abs_tol, double rel_tol)
{
    ct_layer *l = &t->l;
    int64_t nin = rows * ct_shape_size(&l->in_shape), nout = rows * ct_shape_size(&l->out_shape);
    float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin), *r = fvec(nout);
    tu_fill(x, nin, 7, lo, hi);
    tu_fill(r, nout, 9, -1.0f, 1.0f);
    lt_fd g = {.t = t, .pass = pass, .x = tensor(x, rows, l->in_shape),
               .y = tensor(y, rows, l->out_shape), .r = r};
    g.x.mask = (float *)mask;
    g.y.mask = lt_out_mask(l, mask != NULL, rows);
    ct_tensor tdy = tensor(dy, rows, l->out_shape), tdx = tensor(dx, rows, l->in_shape);
    lt_forward(l, pass, &g.x, &g.y);
    memcpy(dy, r, (size_t)nout * sizeof(float));
    tu_fill(dx, nin, 78, 5.0f, 9.0f);
    for (int p = 0; p < l->nparams; p++)
        if (l->params[p].grad)
            tu_fill(l->params[p].grad, ct_shape_size(&l->params[p].shape), 77, 5.0f, 9.0f);
    lt_backward(l, pass, &g.x, &g.y, &tdy, &tdx);
    for (int p = 0; p < l->nparams; p++) {
        ct_param *pa = &l->params[p];
        if (!pa->grad)
            continue;
        int64_t n = ct_shape_size(&pa->shape);
        float *ana = fvec(n);
        memcpy(ana, pa->grad, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            lt_fd_compare(&g, pa->name, i, ana[i], &pa->value[i], abs_tol, rel_tol);
        free(ana);
    }
    for (int64_t i = 0; i < nin; i++)
        lt_fd_compare(&g, "x", i, dx[i], &x[i], abs_tol, rel_tol);
    free(x), free(y), free(dy), free(dx), free(r), free(g.y.mask);
}

/* lt_gradcheck_in with x in [-1, 1.5). */
static inline void lt_gradcheck_masked(lt *t, int64_t rows, const ct_pass *pass,
                                       const float *mask, double abs_tol, double rel_tol)
{
    lt_gradcheck_in(t, rows, pass, mask, -1.0f, 1.5f, abs_tol, rel_tol);
}

/* lt_gradcheck_masked without a mask. */
static inline void lt_gradcheck(lt *t, int64_t rows, const ct_pass *pass, double abs_tol,
                                double rel_tol)
{
    lt_gradcheck_masked(t, rows, pass, NULL, abs_tol, rel_tol);
}

static inline void lt_free(lt *t)
{
    for (int i = 0; i < t->l.nparams; i++) {
        free(t->l.params[i].value);
        free(t->l.params[i].grad);
    }
    if (t->l.kind && t->l.kind->free_state)
        t->l.kind->free_state(&t->l);
    free(t->scratch);
    ct_node_free(t->root);
}

/* Sets up a layer that must configure and build. */
static inline void lt_ok(lt *t, const char *yaml, const char *name, int ndim,
                         const int64_t *dims, int64_t max_batch)
{
    int rc = lt_setup(t, yaml, name, ndim, dims, max_batch);
    ck_assert_msg(rc == 0, "%s: %s", yaml, t->err.msg);
}

/* Sets up a layer that must fail, and checks the message. */
static inline void lt_fails(const char *yaml, int ndim, const int64_t *dims, const char *name,
                            const char *want)
{
    lt t;
    int rc = lt_setup(&t, yaml, name, ndim, dims, 4);
    ck_assert_msg(rc == -1, "%s was accepted", yaml);
    ck_assert_str_eq(t.err.msg, want);
    lt_free(&t);
}

#endif
