/* test_attention.c - MultiHeadAttention built by hand on its inputs: values against a
 * direct computation in double, finite-difference gradients of every input and weight
 * (causal or not, a separate key, one or two heads, dropout, masked inputs), config and
 * build errors, and a model's weights saved and loaded with Keras's nested weight names. */
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>

#include "model.h"
#include "layer.h"
#include "testutil.h"
#include "weights.h"

/* ---- harness: the layer on 2 or 3 inputs ---------------------------------------------- */

typedef struct at {
    ct_node *root;
    ct_layer l;
    ct_shape in[3];
    float *scratch;
    ct_error err;
    int n;
    int64_t rows;
    float *x[3], *dx[3], *y, *dy;
    const float *m[3];  /* the inputs' masks (rows x T), set before at_alloc; NULL: none */
    ct_tensor tx[3], tdx[3], ty, tdy;
} at;

static const ct_pass train_pass = {.training = true, .seed = 7, .step = 3};

static float *fvec(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static ct_tensor tensor(float *data, int64_t rows, ct_shape shape)
{
    return (ct_tensor){.data = data, .rows = rows, .shape = shape, .device = CT_DEVICE_CPU};
}

static ct_shape seq(int64_t t, int64_t d)
{
    int64_t dims[2] = {t, d};
    return ct_shape_make(2, dims);
}

/* Configures and builds on nin (T, d) inputs; 0 or -1 with t->err set. */
static int at_setup(at *t, const char *yaml, int nin, const ct_shape *shapes)
{
    memset(t, 0, sizeof *t);
    t->root = ct_config_parse(yaml, strlen(yaml), "layer.yaml", &t->err);
    ck_assert_msg(t->root != NULL, "%s", t->err.msg);
    t->l.kind = ct_layer_kind_find("multi_head_attention");
    ck_assert_ptr_nonnull(t->l.kind);
    snprintf(t->l.name, sizeof t->l.name, "mha");
    t->l.be = ct_backend_cpu();
    t->l.cfg = t->root;
    for (int i = 0; i < nin; i++)
        t->in[i] = shapes[i];
    t->l.ninputs = t->n = nin;
    t->l.in_shapes = t->in;
    t->l.in_shape = t->in[0];
    return t->l.kind->configure(&t->l, t->root, &t->err) || t->l.kind->build(&t->l, &t->err)
               ? -1 : 0;
}

/* Parameters, scratch, inputs and outputs for `rows` samples, filled with test values. */
static void at_alloc(at *t, int64_t rows)
{
    t->rows = rows;
    for (int i = 0; i < t->l.nparams; i++) {
        ct_param *p = &t->l.params[i];
        int64_t n = ct_shape_size(&p->shape);
        p->value = fvec(n);
        p->grad = fvec(n);
        tu_fill(p->value, n, 100u + (unsigned)i, -0.6f, 0.6f);
    }
    int64_t ns = t->l.kind->scratch_floats(&t->l, rows);
    t->scratch = fvec(ns);
    t->l.scratch = t->scratch;
    for (int i = 0; i < t->n; i++) {
        int64_t k = rows * ct_shape_size(&t->in[i]);
        t->x[i] = fvec(k);
        t->dx[i] = fvec(k);
        tu_fill(t->x[i], k, 10u + (unsigned)i, -1.0f, 1.0f);
        t->tx[i] = tensor(t->x[i], rows, t->in[i]);
        t->tx[i].mask = (float *)t->m[i];
        t->tdx[i] = tensor(t->dx[i], rows, t->in[i]);
    }
    int64_t ny = rows * ct_shape_size(&t->l.out_shape);
    t->y = fvec(ny);
    t->dy = fvec(ny);
    t->ty = tensor(t->y, rows, t->l.out_shape);
    t->tdy = tensor(t->dy, rows, t->l.out_shape);
}

/* masks: one per input (NULL: none), or NULL for no masks at all. As the model's planner
 * does, mask_out learns which inputs are masked before the scratch is sized. */
static void at_ok_masked(at *t, const char *yaml, int nin, const ct_shape *shapes, int64_t rows,
                         const float *const *masks)
{
    ck_assert_msg(at_setup(t, yaml, nin, shapes) == 0, "%s: %s", yaml, t->err.msg);
    bool in_masked[3] = {false, false, false};
    for (int i = 0; masks && i < nin; i++) {
        t->m[i] = masks[i];
        in_masked[i] = masks[i] != NULL;
    }
    ck_assert_int_eq(t->l.kind->masks, CT_MASK_BY_KIND);
    ck_assert_int_eq(t->l.kind->mask_out(&t->l, in_masked), 0); /* the query's mask goes on */
    at_alloc(t, rows);
}

static void at_ok(at *t, const char *yaml, int nin, const ct_shape *shapes, int64_t rows)
{
    at_ok_masked(t, yaml, nin, shapes, rows, NULL);
}

static void at_free(at *t)
{
    for (int i = 0; i < t->l.nparams; i++) {
        free(t->l.params[i].value);
        free(t->l.params[i].grad);
    }
    for (int i = 0; i < t->n; i++)
        free(t->x[i]), free(t->dx[i]);
    free(t->y), free(t->dy);
    if (t->l.kind && t->l.kind->free_state)
        t->l.kind->free_state(&t->l);
    free(t->scratch);
    ct_node_free(t->root);
}

static void at_fails(const char *yaml, int nin, const ct_shape *shapes, const char *want)
{
    at t;
    ck_assert_msg(at_setup(&t, yaml, nin, shapes) == -1, "%s was accepted", yaml);
    ck_assert_str_eq(t.err.msg, want);
    at_free(&t);
}

static void forward(at *t)
{
    const ct_tensor *xs[3] = {&t->tx[0], &t->tx[1], &t->tx[2]};
    t->l.kind->forward(&t->l, &train_pass, xs, t->n, &t->ty);
}

static void backward(at *t, const float *r)
{
    const ct_tensor *xs[3] = {&t->tx[0], &t->tx[1], &t->tx[2]};
    ct_tensor *dxs[3] = {&t->tdx[0], &t->tdx[1], &t->tdx[2]};
    memcpy(t->dy, r, (size_t)ct_tensor_size(&t->tdy) * sizeof(float));
    t->l.kind->backward(&t->l, &train_pass, xs, t->n, &t->ty, &t->tdy, dxs);
}

/* ---- values against loops in double --------------------------------------------------- */

/* The parameter named `name`, or NULL. */
static const float *param(const at *t, const char *name)
{
    for (int i = 0; i < t->l.nparams; i++)
        if (strcmp(t->l.params[i].name, name) == 0)
            return t->l.params[i].value;
    return NULL;
}

/* out[t][h][e] = sum_i x[t][i] w[i][h][e] + b[h][e] for one sample (b may be NULL). */
static void ref_project(const float *x, const float *w, const float *b, int64_t n, int64_t d,
                        int64_t cols, double *out)
{
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < cols; c++) {
            double s = b ? b[c] : 0.0;
            for (int64_t i = 0; i < d; i++)
                s += (double)x[r * d + i] * w[i * cols + c];
            out[r * cols + c] = s;
        }
}

/* Whether query position i of sample s may attend to key position j: causally, and where
 * the query's mask at i, the value's at j and the separate key's at j are set. */
static bool ref_allowed(const at *t, int64_t s, int64_t i, int64_t j, bool causal)
{
    int64_t tq = t->in[0].dim[0], tv = t->in[1].dim[0];
    bool ok = !causal || j <= i;
    ok = ok && (!t->m[0] || t->m[0][s * tq + i] != 0.0f);
    ok = ok && (!t->m[1] || t->m[1][s * tv + j] != 0.0f);
    return ok && (t->n < 3 || !t->m[2] || t->m[2][s * tv + j] != 0.0f);
}

/* One sample's output: heads h, key_dim kd, value_dim vd, output width o. */
static void ref_sample(const at *t, int64_t s, int64_t h, int64_t kd, int64_t vd, int64_t o,
                       bool causal, double *y)
{
    int64_t tq = t->in[0].dim[0], dq = t->in[0].dim[1], tv = t->in[1].dim[0];
    int64_t dv = t->in[1].dim[1], kin = t->n == 3 ? 2 : 1, dk = t->in[kin].dim[1];
    double *q = calloc((size_t)(tq * h * kd), sizeof *q), *k = calloc((size_t)(tv * h * kd), sizeof *k);
    double *v = calloc((size_t)(tv * h * vd), sizeof *v), *c = calloc((size_t)(tq * h * vd), sizeof *c);
    double *p = calloc((size_t)tv, sizeof *p);
    ref_project(t->x[0] + s * tq * dq, param(t, "query/kernel"), param(t, "query/bias"), tq, dq,
                h * kd, q);
    ref_project(t->x[kin] + s * tv * dk, param(t, "key/kernel"), param(t, "key/bias"), tv, dk,
                h * kd, k);
    ref_project(t->x[1] + s * tv * dv, param(t, "value/kernel"), param(t, "value/bias"), tv, dv,
                h * vd, v);
    for (int64_t hh = 0; hh < h; hh++)
        for (int64_t i = 0; i < tq; i++) {
            double m = -INFINITY, sum = 0;
            bool any = false;
            for (int64_t j = 0; j < tv; j++) {
                double d = 0;
                for (int64_t e = 0; e < kd; e++)
                    d += q[(i * h + hh) * kd + e] * k[(j * h + hh) * kd + e];
                p[j] = d / sqrt((double)kd);
                any |= ref_allowed(t, s, i, j, causal);
                if (ref_allowed(t, s, i, j, causal))
                    m = fmax(m, p[j]);
            }
            for (int64_t j = 0; j < tv; j++)
                sum += p[j] = ref_allowed(t, s, i, j, causal) ? exp(p[j] - m) : 0.0;
            /* a row with no position allowed: probabilities of zero, as Keras 3.10 on */
            for (int64_t e = 0; e < vd; e++) {
                double acc = 0;
                for (int64_t j = 0; any && j < tv; j++)
                    acc += p[j] / sum * v[(j * h + hh) * vd + e];
                c[(i * h + hh) * vd + e] = acc;
            }
        }
    float *cf = fvec(tq * h * vd);
    for (int64_t i = 0; i < tq * h * vd; i++)
        cf[i] = (float)c[i]; /* ref_project reads floats; the rounding is far below the tolerance */
    ref_project(cf, param(t, "attention_output/kernel"), param(t, "attention_output/bias"), tq,
                h * vd, o, y);
    free(cf), free(q), free(k), free(v), free(c), free(p);
}

/* masks: as at_ok_masked's, for 3 samples. */
static void check_values_masked(const char *yaml, int nin, const ct_shape *shapes, int64_t h,
                                int64_t kd, int64_t vd, int64_t o, bool causal,
                                const float *const *masks)
{
    at t;
    at_ok_masked(&t, yaml, nin, shapes, 3, masks);
    const ct_pass infer = {.training = false};
    const ct_tensor *xs[3] = {&t.tx[0], &t.tx[1], &t.tx[2]};
    t.l.kind->forward(&t.l, &infer, xs, t.n, &t.ty);
    int64_t per = ct_shape_size(&t.l.out_shape);
    ck_assert_int_eq(per, t.in[0].dim[0] * o);
    double *want = calloc((size_t)per, sizeof *want);
    for (int64_t s = 0; s < t.rows; s++) {
        ref_sample(&t, s, h, kd, vd, o, causal, want);
        for (int64_t i = 0; i < per; i++)
            ck_assert_msg(fabs(t.y[s * per + i] - want[i]) <= 1e-5 + 1e-5 * fabs(want[i]),
                          "%s: y[%lld][%lld] = %.8g, want %.8g", yaml, (long long)s,
                          (long long)i, (double)t.y[s * per + i], want[i]);
    }
    free(want);
    at_free(&t);
}

static void check_values(const char *yaml, int nin, const ct_shape *shapes, int64_t h,
                         int64_t kd, int64_t vd, int64_t o, bool causal)
{
    check_values_masked(yaml, nin, shapes, h, kd, vd, o, causal, NULL);
}

START_TEST(test_values)
{
    ct_shape qv[] = {seq(4, 5), seq(4, 5)};
    check_values("{num_heads: 2, key_dim: 3, use_causal_mask: true}", 2, qv, 2, 3, 3, 5, true);
    check_values("{num_heads: 2, key_dim: 3}", 2, qv, 2, 3, 3, 5, false);
    ct_shape qvk[] = {seq(3, 4), seq(5, 2), seq(5, 6)};
    check_values("{num_heads: 2, key_dim: 3, value_dim: 2, output_shape: 7}", 3, qvk, 2, 3, 2,
                 7, false);
    check_values("{num_heads: 1, key_dim: 4, use_bias: false}", 3, qvk, 1, 4, 4, 4, false);
}
END_TEST

/* Masks of 3 samples over 4 positions: trailing padding, leading and inner padding, none;
 * and over 5 positions, for a separate key and value of their own length. */
static const float q4[12] = {1, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1};
static const float v4[12] = {1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1};
static const float v4_empty[12] = {1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0}; /* sample 2: none */
static const float q3[9] = {1, 0, 1, 0, 1, 1, 1, 1, 1};
static const float v5[15] = {1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1};
static const float k5[15] = {1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1};

START_TEST(test_masked_values)
{
    ct_shape qv[] = {seq(4, 5), seq(4, 5)};
    const char *plain = "{num_heads: 2, key_dim: 3}";
    const char *causal = "{num_heads: 2, key_dim: 3, use_causal_mask: true}";
    for (int c = 0; c < 2; c++) {
        const char *yaml = c ? causal : plain;
        check_values_masked(yaml, 2, qv, 2, 3, 3, 5, c, (const float *[]){q4, NULL});
        check_values_masked(yaml, 2, qv, 2, 3, 3, 5, c, (const float *[]){NULL, v4});
        check_values_masked(yaml, 2, qv, 2, 3, 3, 5, c, (const float *[]){q4, v4});
        check_values_masked(yaml, 2, qv, 2, 3, 3, 5, c, (const float *[]){q4, v4_empty});
        /* self-attention as a model runs it: one mask on both inputs */
        check_values_masked(yaml, 2, qv, 2, 3, 3, 5, c, (const float *[]){v4, v4});
    }
    ct_shape qvk[] = {seq(3, 4), seq(5, 2), seq(5, 6)};
    const char *sep = "{num_heads: 2, key_dim: 3, value_dim: 2, output_shape: 7}";
    check_values_masked(sep, 3, qvk, 2, 3, 2, 7, false, (const float *[]){q3, v5, k5});
    check_values_masked(sep, 3, qvk, 2, 3, 2, 7, false, (const float *[]){NULL, NULL, k5});
    check_values_masked(sep, 3, qvk, 2, 3, 2, 7, false, (const float *[]){NULL, v5, NULL});
    check_values_masked(sep, 3, qvk, 2, 3, 2, 7, false, (const float *[]){q3, NULL, k5});
    ct_shape causal3[] = {seq(4, 3), seq(4, 2), seq(4, 2)};
    check_values_masked("{num_heads: 1, key_dim: 2, use_causal_mask: true}", 3, causal3, 1, 2, 2,
                        3, true, (const float *[]){q4, v4, v4_empty});
}
END_TEST

/* A masked key position changes nothing anywhere, whatever its value and key hold; a
 * masked query position changes nothing at the other positions, and its own output is
 * the output projection's bias alone (its probabilities are zeros). */
START_TEST(test_masked_positions_ignored)
{
    ct_shape qvk[] = {seq(3, 4), seq(5, 2), seq(5, 6)};
    at t;
    at_ok_masked(&t, "{num_heads: 2, key_dim: 3}", 3, qvk, 3, (const float *[]){q3, v5, k5});
    forward(&t);
    int64_t ny = ct_tensor_size(&t.ty);
    float *before = fvec(ny);
    memcpy(before, t.y, (size_t)ny * sizeof(float));
    for (int64_t s = 0; s < 3; s++)
        for (int64_t j = 0; j < 5; j++)
            if (v5[s * 5 + j] == 0.0f || k5[s * 5 + j] == 0.0f) {
                for (int64_t e = 0; e < 2; e++)
                    t.x[1][(s * 5 + j) * 2 + e] += 0.7f;
                for (int64_t e = 0; e < 6; e++)
                    t.x[2][(s * 5 + j) * 6 + e] -= 0.9f;
            }
    forward(&t);
    ck_assert_mem_eq(before, t.y, (size_t)ny * sizeof(float));
    /* query position 1 of sample 0 is masked: the others do not see its change */
    for (int64_t e = 0; e < 4; e++)
        t.x[0][1 * 4 + e] += 0.5f;
    forward(&t);
    for (int64_t i = 0; i < ny; i++)
        if (i / 4 != 1)
            ck_assert_float_eq(t.y[i], before[i]);
    const float *bias = param(&t, "attention_output/bias");
    for (int64_t s = 0; s < 3; s++)
        for (int64_t i = 0; i < 3; i++)
            for (int64_t e = 0; q3[s * 3 + i] == 0.0f && e < 4; e++)
                ck_assert_float_eq(t.y[(s * 3 + i) * 4 + e], bias[e]);
    free(before);
    at_free(&t);
}
END_TEST

/* A causal layer's output at position i must not change when later positions do. */
START_TEST(test_causal_independence)
{
    ct_shape qv[] = {seq(5, 3), seq(5, 3)};
    at t;
    at_ok(&t, "{num_heads: 2, key_dim: 2, use_causal_mask: true}", 2, qv, 1);
    forward(&t);
    float before[15];
    memcpy(before, t.y, sizeof before);
    for (int i = 3 * 3; i < 15; i++)
        t.x[1][i] += 0.5f; /* positions 3 and 4 of the value (and key) */
    forward(&t);
    ck_assert(memcmp(before, t.y, 9 * sizeof(float)) == 0);
    ck_assert(memcmp(before + 9, t.y + 9, 6 * sizeof(float)) != 0);
    at_free(&t);
}
END_TEST

/* ---- gradients -------------------------------------------------------------------------- */

static double loss(at *t, const float *r)
{
    forward(t);
    double s = 0;
    for (int64_t i = 0; i < ct_tensor_size(&t->ty); i++)
        s += (double)r[i] * (double)t->y[i];
    return s;
}

/* Central difference of the loss in *v against the analytic value. */
static void check_one(at *t, const float *r, float *v, double ana, const char *what, int64_t e)
{
    const double h = 1e-3;
    float old = *v, up = (float)(old + h), down = (float)(old - h);
    *v = up;
    double lp = loss(t, r);
    *v = down;
    double lm = loss(t, r);
    *v = old;
    double num = (lp - lm) / ((double)up - (double)down);
    ck_assert_msg(fabs(num - ana) <= 2e-3 + 2e-2 * fmax(fabs(num), fabs(ana)),
                  "%s[%lld]: analytic %.7g, numeric %.7g", what, (long long)e, ana, num);
}

static void gradcheck_masked(const char *yaml, int nin, const ct_shape *shapes,
                             const float *const *masks)
{
    at t;
    at_ok_masked(&t, yaml, nin, shapes, 2, masks);
    int64_t ny = ct_tensor_size(&t.ty);
    float *r = fvec(ny);
    tu_fill(r, ny, 9, -1.0f, 1.0f);
    forward(&t);
    backward(&t, r);
    for (int i = 0; i < t.n; i++) {
        float *dx = fvec(ct_tensor_size(&t.tdx[i]));
        memcpy(dx, t.dx[i], (size_t)ct_tensor_size(&t.tdx[i]) * sizeof(float));
        char what[64];
        snprintf(what, sizeof what, "%s: d%s", yaml, i == 0 ? "query" : i == 1 ? "value" : "key");
        for (int64_t e = 0; e < ct_tensor_size(&t.tx[i]); e++)
            check_one(&t, r, &t.x[i][e], dx[e], what, e);
        free(dx);
    }
    for (int i = 0; i < t.l.nparams; i++) {
        ct_param *p = &t.l.params[i];
        char what[128];
        snprintf(what, sizeof what, "%s: d%s", yaml, p->name);
        for (int64_t e = 0; e < ct_shape_size(&p->shape); e++)
            check_one(&t, r, &p->value[e], p->grad[e], what, e);
    }
    free(r);
    at_free(&t);
}

static void gradcheck(const char *yaml, int nin, const ct_shape *shapes)
{
    gradcheck_masked(yaml, nin, shapes, NULL);
}

START_TEST(test_gradients)
{
    ct_shape qv[] = {seq(4, 3), seq(4, 3)};
    gradcheck("{num_heads: 2, key_dim: 2, use_causal_mask: true}", 2, qv);
    gradcheck("{num_heads: 1, key_dim: 3}", 2, qv);
    ct_shape qvk[] = {seq(3, 4), seq(5, 2), seq(5, 3)};
    gradcheck("{num_heads: 2, key_dim: 2, value_dim: 3, output_shape: 2}", 3, qvk);
    gradcheck("{num_heads: 1, key_dim: 2, use_bias: false}", 3, qvk);
    ct_shape causal3[] = {seq(4, 3), seq(4, 2), seq(4, 2)};
    gradcheck("{num_heads: 2, key_dim: 2, use_causal_mask: true}", 3, causal3);
    /* the mask is drawn from the pass's seed and step, so it is the same in every pass */
    gradcheck("{num_heads: 2, key_dim: 2, dropout: 0.3, use_causal_mask: true}", 2, qv);
}
END_TEST

/* Two samples each of q4, v4, q3, v5 and k5. */
START_TEST(test_masked_gradients)
{
    ct_shape qv[] = {seq(4, 3), seq(4, 3)};
    gradcheck_masked("{num_heads: 2, key_dim: 2}", 2, qv, (const float *[]){NULL, v4});
    gradcheck_masked("{num_heads: 2, key_dim: 2}", 2, qv, (const float *[]){q4, v4});
    gradcheck_masked("{num_heads: 2, key_dim: 2, use_causal_mask: true}", 2, qv,
                     (const float *[]){q4, v4});
    gradcheck_masked("{num_heads: 1, key_dim: 3, use_causal_mask: true}", 2, qv,
                     (const float *[]){v4, v4});
    ct_shape qvk[] = {seq(3, 4), seq(5, 2), seq(5, 3)};
    gradcheck_masked("{num_heads: 2, key_dim: 2, value_dim: 3, output_shape: 2}", 3, qvk,
                     (const float *[]){q3, v5, k5});
    gradcheck_masked("{num_heads: 1, key_dim: 2, use_bias: false}", 3, qvk,
                     (const float *[]){NULL, NULL, k5});
    gradcheck_masked("{num_heads: 2, key_dim: 2, dropout: 0.3}", 3, qvk,
                     (const float *[]){q3, v5, NULL});
}
END_TEST

/* Self-attention as a model runs it: [x, x] gives two gradients that add up to the
 * derivative in x. */
START_TEST(test_self_attention_sum)
{
    ct_shape qv[] = {seq(3, 2), seq(3, 2)};
    at t;
    at_ok(&t, "{num_heads: 2, key_dim: 2}", 2, qv, 1);
    memcpy(t.x[1], t.x[0], 6 * sizeof(float));
    float r[6] = {0.3f, -0.2f, 0.5f, 0.1f, -0.7f, 0.4f};
    forward(&t);
    backward(&t, r);
    for (int e = 0; e < 6; e++) {
        const double h = 1e-3;
        float old = t.x[0][e];
        t.x[0][e] = t.x[1][e] = (float)(old + h);
        double lp = loss(&t, r);
        t.x[0][e] = t.x[1][e] = (float)(old - h);
        double lm = loss(&t, r);
        t.x[0][e] = t.x[1][e] = old;
        double num = (lp - lm) / (2 * h), ana = (double)t.dx[0][e] + t.dx[1][e];
        ck_assert_msg(fabs(num - ana) <= 2e-3 + 2e-2 * fabs(num), "dx[%d]: %g against %g", e,
                      ana, num);
    }
    at_free(&t);
}
END_TEST

/* Self-attention on one tensor (query and value the same memory, as a model passes them)
 * takes the fused projections; the same layer on two copies of it takes three. Outputs,
 * parameter gradients and the summed input gradient must agree, for the options that
 * change the fused path: biases, masks, causal, dropout. */
static void check_fused(const char *yaml, bool masked)
{
    static const float m3[6] = {1, 1, 0, 1, 0, 1}; /* rows 2 x T 3 */
    ct_shape qv[] = {seq(3, 4), seq(3, 4)};
    at t[2];
    for (int k = 0; k < 2; k++) {
        at_ok_masked(&t[k], yaml, 2, qv, 2, masked ? (const float *[]){m3, m3} : NULL);
        memcpy(t[k].x[1], t[k].x[0], 24 * sizeof(float));
    }
    t[0].tx[1].data = t[0].x[0]; /* aliased: the fused path */
    float r[64]; /* the output's gradient: 2 rows x 3 steps x up to 10 features */
    int64_t ny = ct_tensor_size(&t[0].ty);
    ck_assert_int_le(ny, 64);
    tu_fill(r, ny, 5, -1.0f, 1.0f);
    for (int k = 0; k < 2; k++) {
        forward(&t[k]);
        backward(&t[k], r);
    }
    for (int64_t e = 0; e < ny; e++)
        tu_assert_close(t[0].y[e], t[1].y[e], 1e-5);
    for (int e = 0; e < 24; e++)
        tu_assert_close(t[0].dx[0][e] + t[0].dx[1][e], t[1].dx[0][e] + t[1].dx[1][e], 1e-5);
    for (int i = 0; i < t[0].l.nparams; i++)
        for (int64_t e = 0; e < ct_shape_size(&t[0].l.params[i].shape); e++)
            tu_assert_close(t[0].l.params[i].grad[e], t[1].l.params[i].grad[e], 1e-5);
    for (int k = 0; k < 2; k++)
        at_free(&t[k]);
}

START_TEST(test_fused_projections)
{
    check_fused("{num_heads: 2, key_dim: 3, use_causal_mask: true}", false);
    check_fused("{num_heads: 2, key_dim: 3, value_dim: 2, output_shape: 5}", false);
    check_fused("{num_heads: 1, key_dim: 2, use_bias: false}", false);
    check_fused("{num_heads: 2, key_dim: 3, use_causal_mask: true}", true);
    check_fused("{num_heads: 2, key_dim: 2, dropout: 0.3}", false);
}
END_TEST

/* ---- shapes, weights and errors --------------------------------------------------------- */

START_TEST(test_weights_declared)
{
    ct_shape qvk[] = {seq(3, 4), seq(5, 2), seq(5, 6)};
    at t;
    ck_assert_int_eq(at_setup(&t, "{num_heads: 2, key_dim: 3, value_dim: 5, output_shape: 7}",
                              3, qvk), 0);
    static const char *const names[] = {"query/kernel", "query/bias", "key/kernel", "key/bias",
                                        "value/kernel", "value/bias", "attention_output/kernel",
                                        "attention_output/bias"};
    static const char *const shapes[] = {"(4, 2, 3)", "(2, 3)", "(6, 2, 3)", "(2, 3)",
                                         "(2, 2, 5)", "(2, 5)", "(2, 5, 7)", "(7,)"};
    ck_assert_int_eq(t.l.nparams, 8);
    for (int i = 0; i < 8; i++) {
        char buf[64];
        ck_assert_str_eq(t.l.params[i].name, names[i]);
        ct_shape_format_sample(&t.l.params[i].shape, buf, sizeof buf);
        ck_assert_str_eq(buf, shapes[i]);
    }
    char buf[64];
    ck_assert_str_eq(ct_shape_format(&t.l.out_shape, buf, sizeof buf), "(None, 3, 7)");
    at_free(&t);
    ck_assert_int_eq(at_setup(&t, "{num_heads: 2, key_dim: 3, use_bias: false}", 3, qvk), 0);
    ck_assert_int_eq(t.l.nparams, 4);
    ck_assert_str_eq(t.l.params[3].name, "attention_output/kernel");
    ck_assert_str_eq(ct_shape_format(&t.l.out_shape, buf, sizeof buf), "(None, 3, 4)");
    at_free(&t);
}
END_TEST

START_TEST(test_errors)
{
    ct_shape qv[] = {seq(4, 3), seq(6, 3), seq(6, 2)};
    at_fails("{key_dim: 2}", 2, qv,
             "layer.yaml:1:1: layer 'mha' (MultiHeadAttention) needs the key 'num_heads'");
    at_fails("{num_heads: 2}", 2, qv,
             "layer.yaml:1:1: layer 'mha' (MultiHeadAttention) needs the key 'key_dim'");
    at_fails("{num_heads: 2, key_dim: 2, use_causal_mask: true}", 2, qv,
             "layer.yaml:1:1: layer 'mha' (MultiHeadAttention): use_causal_mask needs as many "
             "query positions as key positions, got 4 and 6");
    at_fails("{num_heads: 2, key_dim: 2}", 1, qv,
             "layer.yaml:1:1: layer 'mha' (MultiHeadAttention): takes 2 or 3 inputs ([query, "
             "value] or [query, value, key]), got 1");
    at_fails("{num_heads: 2, key_dim: 2, attention_axes: [1]}", 2, qv,
             "layer.yaml:1:44: layer 'mha' (MultiHeadAttention): only the default "
             "attention_axes (null: attend over the sequence axis) is supported");
    at_fails("{num_heads: 2, key_dim: 2, dropout: 1}", 2, qv,
             "layer.yaml:1:37: layer 'mha' (MultiHeadAttention): dropout must be at least 0 "
             "and below 1, got 1");
    ct_shape bad_key[] = {seq(4, 3), seq(6, 3), seq(5, 2)};
    at_fails("{num_heads: 2, key_dim: 2}", 3, bad_key,
             "layer.yaml:1:1: layer 'mha' (MultiHeadAttention): its key has 5 positions but its "
             "value 6; they must be equal");
    int64_t d3[3] = {4, 4, 3};
    ct_shape img[] = {seq(4, 3), ct_shape_make(3, d3)};
    at_fails("{num_heads: 2, key_dim: 2}", 2, img,
             "layer.yaml:1:1: layer 'mha' (MultiHeadAttention): takes sequences of shape (None, "
             "T, d); its value has shape (None, 4, 4, 3)");
    ct_shape longer[] = {seq(1 << 20, 3), seq(1 << 20, 3)};
    at_fails("{num_heads: 32, key_dim: 2}", 2, longer,
             "layer.yaml:1:1: layer 'mha' (MultiHeadAttention): 32 heads on 1048576 query and "
             "1048576 key positions need more than 2^34 floats per sample; refusing to "
             "allocate that");
    at_fails("{num_heads: 65536, key_dim: 40000}", 2, qv,
             "layer.yaml:1:1: layer 'mha' (MultiHeadAttention): num_heads x key_dim and "
             "num_heads x value_dim must be at most 2147483647, got 65536 x 40000");
    at_fails("{num_heads: 2, key_dim: 2, use_casual_mask: true}", 2, qv,
             "layer.yaml:1:28: unknown key 'use_casual_mask' in layer 'mha' "
             "(MultiHeadAttention) (did you mean 'use_causal_mask'?); known keys: num_heads, "
             "key_dim, value_dim, dropout, use_bias, output_shape, attention_axes, "
             "kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, "
             "use_causal_mask, type, name, inputs, trainable");
}
END_TEST

/* ---- a model: graph inputs, weights file ----------------------------------------------- */

static const char model_yaml[] =
    "inputs: {x: {shape: [4, 6]}}\n"
    "layers:\n"
    "  - {name: ln, type: layer_normalization, inputs: x}\n"
    "  - {name: mha, type: multi_head_attention, num_heads: 2, key_dim: 3, use_causal_mask: true,"
    " inputs: [ln, ln]}\n"
    "  - {name: res, type: add, inputs: [mha, x]}\n"
    "  - {type: global_average_pooling1d}\n"
    "  - {type: dense, units: 2, activation: softmax}\n";

static ct_model *build_model(ct_node **root, uint64_t seed)
{
    ct_error err = {0};
    *root = ct_config_parse(model_yaml, strlen(model_yaml), "model.yaml", &err);
    ck_assert_msg(*root != NULL, "%s", err.msg);
    ct_model *m = ct_model_build(*root, ct_backend_cpu(), &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    ct_model_init_params(m, seed);
    return m;
}

static const ct_layer *layer_named(const ct_model *m, const char *name)
{
    for (int i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i].name, name) == 0)
            return &m->layers[i];
    return NULL;
}

START_TEST(test_weights_file)
{
    ct_node *ra, *rb;
    ct_model *a = build_model(&ra, 1), *b = build_model(&rb, 2);
    char *dir = tu_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/w.h5", dir);
    ct_error err = {0};
    ck_assert_msg(ct_weights_save(a, path, NULL, NULL, &err) == 0, "%s", err.msg);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    ck_assert(H5Lexists(f, "model_weights/mha/mha/query", H5P_DEFAULT) > 0);
    ck_assert(H5Lexists(f, "model_weights/mha/mha/query/kernel:0", H5P_DEFAULT) > 0);
    ck_assert(H5Lexists(f, "model_weights/mha/mha/attention_output/bias:0", H5P_DEFAULT) > 0);
    H5Fclose(f);
    ck_assert_msg(ct_weights_load(b, path, &err) == 0, "%s", err.msg);
    const ct_layer *la = layer_named(a, "mha"), *lb = layer_named(b, "mha");
    ck_assert_int_eq(la->nparams, 8);
    for (int i = 0; i < la->nparams; i++)
        ck_assert(memcmp(la->params[i].value, lb->params[i].value,
                         (size_t)ct_shape_size(&la->params[i].shape) * sizeof(float)) == 0);
    unlink(path);
    rmdir(dir);
    free(dir);
    ct_model_free(a);
    ct_model_free(b);
    ct_node_free(ra);
    ct_node_free(rb);
}
END_TEST

/* A model training step runs: [ln, ln] gets its two gradients added. */
START_TEST(test_model_step)
{
    ct_node *root;
    ct_model *m = build_model(&root, 3);
    ct_error err = {0};
    ck_assert_msg(ct_model_plan(m, 2, &err) == 0, "%s", err.msg);
    tu_fill(m->inputs[0].data, 2 * 24, 5, -1.0f, 1.0f);
    const ct_tensor *y = ct_model_forward(m, &train_pass, 2);
    for (int i = 0; i < 4; i++)
        ck_assert(isfinite(y->data[i]));
    ck_assert_float_eq_tol(y->data[0] + y->data[1], 1.0f, 1e-6f);
    float *g = ct_model_output_grad(m, 0);
    for (int i = 0; i < 4; i++)
        g[i] = i == 0 ? 1.0f : 0.0f;
    double penalty = 0;
    ct_model_backward(m, &train_pass, 1.0, &penalty);
    const ct_layer *l = layer_named(m, "mha");
    double norm = 0;
    for (int64_t i = 0; i < ct_shape_size(&l->params[0].shape); i++)
        norm += fabs(l->params[0].grad[i]);
    ck_assert(isfinite(norm) && norm > 0);
    ct_model_free(m);
    ct_node_free(root);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("attention");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_causal_independence);
    tcase_add_test(tc, test_masked_values);
    tcase_add_test(tc, test_masked_positions_ignored);
    tcase_add_test(tc, test_gradients);
    tcase_add_test(tc, test_masked_gradients);
    tcase_add_test(tc, test_self_attention_sum);
    tcase_add_test(tc, test_fused_projections);
    tcase_add_test(tc, test_weights_declared);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_weights_file);
    tcase_add_test(tc, test_model_step);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
