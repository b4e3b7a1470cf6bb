/* test_merge.c - the merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum,
 * Concatenate, Dot) built by hand on several inputs: output shapes and values, finite-
 * difference gradients with and without broadcasting, build errors, and the same bits for
 * any thread count. */
#include <stdarg.h>

#include "layer.h"
#include "parallel.h"
#include "testutil.h"

/* ---- harness: one layer on several inputs ------------------------------------------- */

#define MAX_IN 4

typedef struct mt {
    ct_node *root;
    ct_layer l;
    ct_shape in[MAX_IN];
    float *scratch;
    ct_error err;
} mt;

static ct_shape S(int ndim, ...)
{
    ct_shape s = {.ndim = ndim};
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++)
        s.dim[i] = va_arg(ap, int);
    va_end(ap);
    return s;
}

static float *fvec(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

static ct_tensor tensor(float *data, int64_t rows, ct_shape shape)
{
    return (ct_tensor){.data = data, .rows = rows, .shape = shape, .device = CT_DEVICE_CPU};
}

/* Parses yaml, configures and builds the layer on nin inputs of the given shapes, with
 * scratch for max_batch rows. Returns the status; t->err holds the message. */
static int mt_setup(mt *t, const char *yaml, const char *name, int nin, const ct_shape *shapes,
                    int64_t max_batch)
{
    memset(t, 0, sizeof *t);
    t->root = ct_config_parse(yaml, strlen(yaml), "layer.yaml", &t->err);
    ck_assert_msg(t->root != NULL, "%s", t->err.msg);
    ct_node *type = ct_map_get(t->root, "type");
    ck_assert_ptr_nonnull(type);
    t->l.kind = ct_layer_kind_find(type->scalar);
    ck_assert_msg(t->l.kind != NULL, "no layer kind '%s'", type->scalar);
    snprintf(t->l.name, sizeof t->l.name, "%s", name);
    t->l.be = ct_backend_cpu();
    t->l.cfg = t->root;
    for (int i = 0; i < nin; i++)
        t->in[i] = shapes[i];
    t->l.ninputs = nin;
    t->l.in_shapes = t->in;
    t->l.in_shape = t->in[0];
    if (t->l.kind->configure(&t->l, t->root, &t->err) || t->l.kind->build(&t->l, &t->err))
        return -1;
    int64_t ns = t->l.kind->scratch_floats ? t->l.kind->scratch_floats(&t->l, max_batch) : 0;
    t->scratch = fvec(ns);
    t->l.scratch = ns > 0 ? t->scratch : NULL;
    return 0;
}

static void mt_free(mt *t)
{
    if (t->l.kind && t->l.kind->free_state)
        t->l.kind->free_state(&t->l);
    free(t->scratch);
    ct_node_free(t->root);
}

static void mt_ok(mt *t, const char *yaml, int nin, const ct_shape *shapes, int64_t max_batch)
{
    int rc = mt_setup(t, yaml, "merge", nin, shapes, max_batch);
    ck_assert_msg(rc == 0, "%s: %s", yaml, t->err.msg);
}

static void mt_fails(const char *yaml, int nin, const ct_shape *shapes, const char *want)
{
    mt t;
    int rc = mt_setup(&t, yaml, "res", nin, shapes, 2);
    ck_assert_msg(rc == -1, "%s was accepted", yaml);
    ck_assert_str_eq(t.err.msg, want);
    mt_free(&t);
}

static const ct_pass pass = {.training = true, .seed = 1, .step = 0};

/* Inputs, output and gradients of one layer for `rows` samples. */
typedef struct io {
    int n;
    int64_t rows;
    float *x[MAX_IN], *dx[MAX_IN], *y, *dy;
    ct_tensor tx[MAX_IN], tdx[MAX_IN], ty, tdy;
} io;

static void io_make(io *b, const mt *t, int64_t rows)
{
    memset(b, 0, sizeof *b);
    b->n = t->l.ninputs;
    b->rows = rows;
    for (int i = 0; i < b->n; i++) {
        int64_t k = rows * ct_shape_size(&t->in[i]);
        b->x[i] = fvec(k);
        b->dx[i] = fvec(k);
        b->tx[i] = tensor(b->x[i], rows, t->in[i]);
        b->tdx[i] = tensor(b->dx[i], rows, t->in[i]);
    }
    int64_t ny = rows * ct_shape_size(&t->l.out_shape);
    b->y = fvec(ny);
    b->dy = fvec(ny);
    b->ty = tensor(b->y, rows, t->l.out_shape);
    b->tdy = tensor(b->dy, rows, t->l.out_shape);
}

static void io_free(io *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->x[i]), free(b->dx[i]);
    free(b->y), free(b->dy);
}

static void run_forward(mt *t, io *b)
{
    const ct_tensor *xs[MAX_IN];
    for (int i = 0; i < b->n; i++)
        xs[i] = &b->tx[i];
    t->l.kind->forward(&t->l, &pass, xs, b->n, &b->ty);
}

/* Backward with dy = r; want[i] false leaves dx[i] NULL. */
static void run_backward(mt *t, io *b, const float *r, const bool *want)
{
    const ct_tensor *xs[MAX_IN];
    ct_tensor *dxs[MAX_IN];
    for (int i = 0; i < b->n; i++) {
        xs[i] = &b->tx[i];
        dxs[i] = !want || want[i] ? &b->tdx[i] : NULL;
    }
    memcpy(b->dy, r, (size_t)ct_tensor_size(&b->tdy) * sizeof(float));
    t->l.kind->backward(&t->l, &pass, xs, b->n, &b->ty, &b->tdy, dxs);
}

/* Every input value distinct and at least 2/total apart, shuffled: maximum and minimum
 * then have no ties within a finite-difference step. */
static void spread_inputs(io *b, const mt *t)
{
    int64_t total = 0;
    for (int i = 0; i < b->n; i++)
        total += b->rows * ct_shape_size(&t->in[i]);
    float *v = fvec(total);
    for (int64_t j = 0; j < total; j++)
        v[j] = -1.0f + (2.0f * (float)j + 1.0f) / (float)total;
    unsigned long s = 12345;
    for (int64_t j = total - 1; j > 0; j--) {
        s = s * 6364136223846793005ul + 1442695040888963407ul;
        int64_t k = (int64_t)((s >> 33) % (unsigned long)(j + 1));
        float tmp = v[j];
        v[j] = v[k];
        v[k] = tmp;
    }
    int64_t at = 0;
    for (int i = 0; i < b->n; i++) {
        int64_t k = b->rows * ct_shape_size(&t->in[i]);
        memcpy(b->x[i], v + at, (size_t)k * sizeof(float));
        at += k;
    }
    free(v);
}

static double loss(mt *t, io *b, const float *r)
{
    run_forward(t, b);
    double s = 0;
    for (int64_t i = 0; i < ct_tensor_size(&b->ty); i++)
        s += (double)r[i] * (double)b->y[i];
    return s;
}

/* Checks every input's gradient against central differences of L = sum r * y; then that
 * leaving out one input's gradient changes none of the others. */
static void gradcheck(mt *t, int64_t rows)
{
    io b;
    io_make(&b, t, rows);
    spread_inputs(&b, t);
    int64_t ny = ct_tensor_size(&b.ty);
    float *r = fvec(ny);
    tu_fill(r, ny, 9, -1.0f, 1.0f);
    run_forward(t, &b);
    run_backward(t, &b, r, NULL);
    const double h = 1e-3;
    for (int i = 0; i < b.n; i++)
        for (int64_t e = 0; e < ct_tensor_size(&b.tx[i]); e++) {
            float old = b.x[i][e], up = (float)(old + h), down = (float)(old - h);
            b.x[i][e] = up;
            double lp = loss(t, &b, r);
            b.x[i][e] = down;
            double lm = loss(t, &b, r);
            b.x[i][e] = old;
            double num = (lp - lm) / ((double)up - (double)down), ana = b.dx[i][e];
            ck_assert_msg(fabs(num - ana) <= 2e-3 + 2e-2 * fmax(fabs(num), fabs(ana)),
                          "%s: dx%d[%lld]: analytic %.7g, numeric %.7g", t->l.kind->name, i,
                          (long long)e, ana, num);
        }
    for (int skip = 0; skip < b.n; skip++) {
        float *keep[MAX_IN];
        bool want[MAX_IN];
        for (int i = 0; i < b.n; i++) {
            int64_t k = ct_tensor_size(&b.tdx[i]);
            keep[i] = fvec(k);
            memcpy(keep[i], b.dx[i], (size_t)k * sizeof(float));
            want[i] = i != skip;
        }
        run_forward(t, &b);
        run_backward(t, &b, r, want);
        for (int i = 0; i < b.n; i++) {
            if (i != skip)
                ck_assert_msg(memcmp(keep[i], b.dx[i], (size_t)ct_tensor_size(&b.tdx[i]) *
                                                            sizeof(float)) == 0,
                              "%s: dx%d changed without dx%d", t->l.kind->name, i, skip);
            free(keep[i]);
        }
    }
    free(r);
    io_free(&b);
}

static void expect_shape(const mt *t, ct_shape want)
{
    char a[128], b[128];
    ck_assert_msg(ct_shape_equal(&t->l.out_shape, &want), "output %s, want %s",
                  ct_shape_format(&t->l.out_shape, a, sizeof a), ct_shape_format(&want, b, sizeof b));
}

/* ---- registry ------------------------------------------------------------------------ */

START_TEST(test_registry)
{
    const char *names[] = {"add", "subtract", "multiply", "average", "maximum", "minimum",
                           "concatenate", "dot"};
    const char *classes[] = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
                             "Concatenate", "Dot"};
    const int lo[] = {2, 2, 2, 2, 2, 2, 1, 2}, hi[] = {-1, 2, -1, -1, -1, -1, -1, 2};
    for (int i = 0; i < 8; i++) {
        const ct_layer_kind *k = ct_layer_kind_find(names[i]);
        ck_assert_ptr_nonnull(k);
        ck_assert_ptr_eq(ct_layer_kind_find(classes[i]), k);
        ck_assert_str_eq(k->class_name, classes[i]);
        ck_assert_int_eq(k->min_inputs, lo[i]);
        ck_assert_int_eq(k->max_inputs, hi[i]);
    }
}
END_TEST

/* ---- forward values ------------------------------------------------------------------ */

/* Runs the layer on rows samples of the given inputs and compares y with want. */
static void expect_values(const char *yaml, int nin, const ct_shape *shapes, int64_t rows,
                          const float *const *xs, const float *want, ct_shape want_shape)
{
    mt t;
    mt_ok(&t, yaml, nin, shapes, rows);
    expect_shape(&t, want_shape);
    io b;
    io_make(&b, &t, rows);
    for (int i = 0; i < nin; i++)
        memcpy(b.x[i], xs[i], (size_t)ct_tensor_size(&b.tx[i]) * sizeof(float));
    run_forward(&t, &b);
    for (int64_t i = 0; i < ct_tensor_size(&b.ty); i++)
        ck_assert_msg(fabsf(b.y[i] - want[i]) <= 1e-6f * fmaxf(1.0f, fabsf(want[i])),
                      "%s: y[%lld] = %.9g, want %.9g", yaml, (long long)i, b.y[i], want[i]);
    io_free(&b);
    mt_free(&t);
}

START_TEST(test_elementwise_values)
{
    /* (2,) and (1,) over 2 samples: the second broadcast along the axis. */
    const float a[] = {1, 2, 3, 4}, b[] = {10, 20}, c[] = {-1, 5, 0.5f, 8};
    ct_shape sh[] = {S(1, 2), S(1, 1), S(1, 2)};
    const float *abc[] = {a, b, c};
    expect_values("{type: add}", 3, sh, 2, abc, (float[]){10, 17, 23.5f, 32}, S(1, 2));
    expect_values("{type: Subtract}", 2, sh, 2, abc, (float[]){-9, -8, -17, -16}, S(1, 2));
    expect_values("{type: multiply}", 3, sh, 2, abc, (float[]){-10, 100, 30, 640}, S(1, 2));
    expect_values("{type: average}", 3, sh, 2, abc, (float[]){10 / 3.0f, 17 / 3.0f, 23.5f / 3,
                                                              32 / 3.0f}, S(1, 2));
    expect_values("{type: maximum}", 3, sh, 2, abc, (float[]){10, 10, 20, 20}, S(1, 2));
    expect_values("{type: minimum}", 3, sh, 2, abc, (float[]){-1, 2, 0.5f, 4}, S(1, 2));
    /* (2, 1) - (3,) -> (2, 3): ranks differ, numpy alignment. */
    const float p[] = {1, 2}, q[] = {10, 20, 30};
    ct_shape sh2[] = {S(2, 2, 1), S(1, 3)};
    expect_values("{type: subtract}", 2, sh2, 1, (const float *[]){p, q},
                  (float[]){-9, -19, -29, -8, -18, -28}, S(2, 2, 3));
}
END_TEST

START_TEST(test_concatenate_values)
{
    /* (2, 2) and (1, 2) per sample, one sample. */
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6};
    ct_shape sh[] = {S(2, 2, 2), S(2, 1, 2)};
    expect_values("{type: concatenate, axis: 1}", 2, sh, 1, (const float *[]){a, b},
                  (float[]){1, 2, 3, 4, 5, 6}, S(2, 3, 2));
    ct_shape sh2[] = {S(2, 2, 2), S(2, 2, 1)};
    expect_values("{type: concatenate}", 2, sh2, 1, (const float *[]){a, b},
                  (float[]){1, 2, 5, 3, 4, 6}, S(2, 2, 3));
    expect_values("{type: Concatenate, axis: -2}", 2, sh, 1, (const float *[]){a, b},
                  (float[]){1, 2, 3, 4, 5, 6}, S(2, 3, 2));
}
END_TEST

START_TEST(test_dot_values)
{
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
    ct_shape vv[] = {S(1, 2), S(1, 2)};
    expect_values("{type: dot, axes: 1}", 2, vv, 2, (const float *[]){a, b},
                  (float[]){17, 53}, S(1, 1));
    /* cosine similarity: (1,2).(5,6) / (|.| |.|) */
    float cos0 = 17.0f / (sqrtf(5.0f) * sqrtf(61.0f)), cos1 = 53.0f / (5.0f * sqrtf(113.0f));
    expect_values("{type: dot, axes: -1, normalize: true}", 2, vv, 2, (const float *[]){a, b},
                  (float[]){cos0, cos1}, S(1, 1));
    /* One sample: A (2, 2) = [[1, 2], [3, 4]], B (2, 2) = [[5, 6], [7, 8]]. */
    ct_shape mm[] = {S(2, 2, 2), S(2, 2, 2)};
    const float *ab[] = {a, b};
    expect_values("{type: dot, axes: 2}", 2, mm, 1, ab, (float[]){17, 23, 39, 53}, S(2, 2, 2));
    expect_values("{type: dot, axes: [1, 1]}", 2, mm, 1, ab, (float[]){26, 30, 38, 44},
                  S(2, 2, 2));
    expect_values("{type: dot, axes: [2, 1]}", 2, mm, 1, ab, (float[]){19, 22, 43, 50},
                  S(2, 2, 2));
    expect_values("{type: dot, axes: [1, 2]}", 2, mm, 1, ab, (float[]){23, 31, 34, 46},
                  S(2, 2, 2));
    /* (2,) . (2, 2) on axes 1: the vector against the matrix's rows. */
    ct_shape vm[] = {S(1, 2), S(2, 2, 2)};
    expect_values("{type: dot, axes: 1}", 2, vm, 1, ab, (float[]){19, 22}, S(1, 2));
}
END_TEST

/* ---- gradients ----------------------------------------------------------------------- */

typedef struct grad_case {
    const char *yaml;
    int n;
    ct_shape in[MAX_IN];
} grad_case;

/* A shape in a static table. */
#define SH(n, ...) {.ndim = n, .dim = {__VA_ARGS__}}

#define ELEMENTWISE_CASESH(T)                                                                  \
    {T, 2, {SH(2, 3, 4), SH(2, 3, 4)}}, {T, 3, {SH(1, 5), SH(1, 5), SH(1, 5)}},                     \
        {T, 2, {SH(2, 3, 1), SH(2, 3, 4)}}, {T, 3, {SH(3, 2, 3, 4), SH(1, 4), SH(1, 1)}},           \
        {T, 2, {SH(2, 1, 4), SH(3, 2, 3, 1)}}

static grad_case grad_cases[] = {
    ELEMENTWISE_CASESH("{type: add}"),
    ELEMENTWISE_CASESH("{type: multiply}"),
    ELEMENTWISE_CASESH("{type: average}"),
    ELEMENTWISE_CASESH("{type: maximum}"),
    ELEMENTWISE_CASESH("{type: minimum}"),
    {"{type: add}", 4, {SH(2, 2, 3), SH(1, 3), SH(2, 2, 1), SH(2, 2, 3)}},
    {"{type: multiply}", 4, {SH(2, 2, 3), SH(1, 3), SH(2, 2, 1), SH(2, 2, 3)}},
    {"{type: subtract}", 2, {SH(2, 3, 4), SH(2, 3, 4)}},
    {"{type: subtract}", 2, {SH(2, 3, 1), SH(1, 4)}},
    {"{type: subtract}", 2, {SH(1, 1), SH(2, 3, 2)}},
    {"{type: concatenate}", 3, {SH(2, 2, 3), SH(2, 2, 1), SH(2, 2, 2)}},
    {"{type: concatenate, axis: 1}", 2, {SH(3, 2, 3, 2), SH(3, 1, 3, 2)}},
    {"{type: concatenate, axis: 2}", 2, {SH(3, 2, 3, 2), SH(3, 2, 1, 2)}},
    {"{type: concatenate}", 1, {SH(1, 4)}},
    {"{type: dot, axes: 1}", 2, {SH(1, 5), SH(1, 5)}},
    {"{type: dot, axes: 2}", 2, {SH(2, 3, 4), SH(2, 2, 4)}},
    {"{type: dot, axes: [1, 1]}", 2, {SH(2, 4, 3), SH(2, 4, 2)}},
    {"{type: dot, axes: [2, 1]}", 2, {SH(2, 3, 4), SH(2, 4, 2)}},
    {"{type: dot, axes: [1, 2]}", 2, {SH(2, 4, 3), SH(2, 2, 4)}},
    {"{type: dot, axes: [-1, 1]}", 2, {SH(1, 4), SH(2, 4, 3)}},
    {"{type: dot, axes: [1, 2]}", 2, {SH(1, 4), SH(2, 3, 4)}},
    {"{type: dot, axes: [2, 1]}", 2, {SH(2, 3, 4), SH(1, 4)}},
    {"{type: dot, axes: 1}", 2, {SH(2, 4, 3), SH(1, 4)}},
    {"{type: dot, axes: 1, normalize: true}", 2, {SH(1, 5), SH(1, 5)}},
    {"{type: dot, axes: 2, normalize: true}", 2, {SH(2, 3, 4), SH(2, 2, 4)}},
    {"{type: dot, axes: [1, 1], normalize: true}", 2, {SH(2, 4, 3), SH(2, 4, 2)}},
    {"{type: dot, axes: [1, 2], normalize: true}", 2, {SH(1, 4), SH(2, 3, 4)}},
};

#define N_GRAD (int)(sizeof grad_cases / sizeof grad_cases[0])

START_TEST(test_gradients)
{
    const grad_case *c = &grad_cases[_i];
    mt t;
    mt_ok(&t, c->yaml, c->n, c->in, 2);
    gradcheck(&t, 2);
    mt_free(&t);
}
END_TEST

START_TEST(test_shapes)
{
    const struct {
        const char *yaml;
        int n;
        ct_shape in[3], out;
    } cases[] = {
        {"{type: add}", 2, {S(3, 28, 28, 32), S(1, 32)}, S(3, 28, 28, 32)},
        {"{type: add}", 3, {S(2, 1, 5), S(2, 4, 1), S(0)}, S(2, 4, 5)},
        {"{type: maximum}", 2, {S(1, 1), S(1, 1)}, S(1, 1)},
        {"{type: concatenate, axis: 1}", 3, {S(2, 1, 4), S(2, 2, 4), S(2, 3, 4)}, S(2, 6, 4)},
        {"{type: dot, axes: 1}", 2, {S(1, 7), S(1, 7)}, S(1, 1)},
        {"{type: dot, axes: 2}", 2, {S(2, 3, 7), S(2, 5, 7)}, S(2, 3, 5)},
        {"{type: dot, axes: [1, 1]}", 2, {S(2, 7, 3), S(2, 7, 5)}, S(2, 3, 5)},
        {"{type: dot, axes: 1}", 2, {S(1, 7), S(2, 7, 5)}, S(1, 5)},
        {"{type: dot, axes: [2, 1]}", 2, {S(2, 3, 7), S(1, 7)}, S(1, 3)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mt t;
        mt_ok(&t, cases[i].yaml, cases[i].n, cases[i].in, 2);
        expect_shape(&t, cases[i].out);
        mt_free(&t);
    }
}
END_TEST

/* ---- errors -------------------------------------------------------------------------- */

START_TEST(test_errors)
{
    ct_shape big[] = {S(3, 28, 28, 32), S(3, 14, 14, 32)};
    mt_fails("{type: add}", 2, big,
             "layer.yaml:1:1: layer 'res' (Add): inputs 1 and 2 have shapes (None, 28, 28, 32) "
             "and (None, 14, 14, 32), which do not broadcast (axis 1: 28 against 14)");
    ct_shape three[] = {S(2, 3, 1), S(1, 4), S(2, 1, 5)};
    mt_fails("{type: multiply}", 3, three,
             "layer.yaml:1:1: layer 'res' (Multiply): inputs 2 and 3 have shapes (None, 4) and "
             "(None, 1, 5), which do not broadcast (axis 2: 4 against 5)");
    ct_shape one[] = {S(1, 4)};
    mt_fails("{type: add}", 1, one,
             "layer.yaml:1:1: layer 'res' (Add): takes at least 2 inputs, got 1");
    ct_shape vec3[] = {S(1, 4), S(1, 4), S(1, 4)};
    mt_fails("{type: subtract}", 3, vec3,
             "layer.yaml:1:1: layer 'res' (Subtract): takes exactly 2 inputs, got 3");
    mt_fails("{type: dot, axes: 1}", 3, vec3,
             "layer.yaml:1:1: layer 'res' (Dot): takes exactly 2 inputs, got 3");
    mt_fails("{type: add, axis: 1}", 2, vec3,
             "layer.yaml:1:13: unknown key 'axis' in layer 'res' (Add); known keys: type, name, inputs, trainable");
    ct_shape cat[] = {S(2, 3, 4), S(2, 5, 6)};
    mt_fails("{type: concatenate}", 2, cat,
             "layer.yaml:1:1: layer 'res' (Concatenate): inputs 1 and 2 have shapes (None, 3, 4) "
             "and (None, 5, 6), which differ on axis 1 (3 against 5), not only on the "
             "concatenation axis -1");
    ct_shape cat2[] = {S(2, 3, 4), S(1, 3)};
    mt_fails("{type: concatenate}", 2, cat2,
             "layer.yaml:1:1: layer 'res' (Concatenate): inputs 1 and 2 have shapes "
             "(None, 3, 4) and (None, 3), of different ranks");
    mt_fails("{type: concatenate, axis: 0}", 2, cat,
             "layer.yaml:1:1: layer 'res' (Concatenate): axis 0 is the batch axis, which "
             "cannot be concatenated for inputs of shape (None, 3, 4)");
    mt_fails("{type: concatenate, axis: 3}", 2, cat,
             "layer.yaml:1:1: layer 'res' (Concatenate): axis 3 is out of range for inputs of "
             "shape (None, 3, 4)");
    ct_shape d3[] = {S(3, 2, 3, 4), S(2, 3, 4)};
    mt_fails("{type: dot, axes: 2}", 2, d3,
             "layer.yaml:1:1: layer 'res' (Dot): Dot takes inputs of rank 2 or 3 (batch "
             "included); input 1 has shape (None, 2, 3, 4)");
    ct_shape dm[] = {S(2, 3, 4), S(2, 3, 5)};
    mt_fails("{type: dot, axes: 2}", 2, dm,
             "layer.yaml:1:1: layer 'res' (Dot): inputs 1 and 2 have shapes (None, 3, 4) and "
             "(None, 3, 5), whose dot axes 2 and 2 differ in size (4 against 5)");
    mt_fails("{type: dot, axes: [0, 1]}", 2, dm,
             "layer.yaml:1:1: layer 'res' (Dot): axis 0 of input 1 (shape (None, 3, 4)) is the "
             "batch axis, which cannot be contracted");
    mt_fails("{type: dot, axes: [1, 3]}", 2, dm,
             "layer.yaml:1:1: layer 'res' (Dot): axis 3 of input 2 (shape (None, 3, 5)) is out "
             "of range");
    mt_fails("{type: dot}", 2, dm,
             "layer.yaml:1:1: layer 'res' (Dot) needs the key 'axes'");
    mt_fails("{type: dot, axes: [1, 2, 3]}", 2, dm,
             "layer.yaml:1:19: layer 'res' (Dot): axes must be an integer or a list of 2 "
             "integers");
    mt_fails("{type: dot, axes: 1, normalize: 3}", 2, dm,
             "layer.yaml:1:33: expected true or false for 'normalize', got '3'");
    mt_fails("{type: concatenate, axis: x}", 2, cat,
             "layer.yaml:1:27: expected an integer for 'axis', got 'x'");
}
END_TEST

/* ---- threads --------------------------------------------------------------------------- */

/* Forward and backward of a layer on 1 and 2 threads: the same bits. */
static void same_bits(const char *yaml, int nin, const ct_shape *shapes, int64_t rows)
{
    float *out[2][MAX_IN + 1];
    int64_t size[MAX_IN + 1];
    for (int th = 0; th < 2; th++) {
        ct_threads_set(th + 1);
        mt t;
        mt_ok(&t, yaml, nin, shapes, rows);
        io b;
        io_make(&b, &t, rows);
        for (int i = 0; i < nin; i++)
            tu_fill(b.x[i], ct_tensor_size(&b.tx[i]), 20u + (unsigned)i, -1, 1);
        int64_t ny = ct_tensor_size(&b.ty);
        float *r = fvec(ny);
        tu_fill(r, ny, 30, -1, 1);
        run_forward(&t, &b);
        out[th][0] = fvec(ny);
        memcpy(out[th][0], b.y, (size_t)ny * sizeof(float));
        size[0] = ny;
        run_backward(&t, &b, r, NULL);
        for (int i = 0; i < nin; i++) {
            size[i + 1] = ct_tensor_size(&b.tdx[i]);
            out[th][i + 1] = fvec(size[i + 1]);
            memcpy(out[th][i + 1], b.dx[i], (size_t)size[i + 1] * sizeof(float));
        }
        free(r);
        io_free(&b);
        mt_free(&t);
    }
    ct_threads_set(1);
    for (int i = 0; i <= nin; i++) {
        ck_assert_msg(memcmp(out[0][i], out[1][i], (size_t)size[i] * sizeof(float)) == 0,
                      "%s: result %d differs between 1 and 2 threads", yaml, i);
        free(out[0][i]), free(out[1][i]);
    }
}

START_TEST(test_same_bits)
{
    ct_shape ew[] = {S(3, 16, 16, 32), S(1, 32), S(3, 16, 1, 32)};
    same_bits("{type: add}", 3, ew, 64);
    same_bits("{type: average}", 3, ew, 64);
    same_bits("{type: multiply}", 3, ew, 64);
    same_bits("{type: maximum}", 3, ew, 64);
    ct_shape cat[] = {S(3, 16, 16, 32), S(3, 16, 16, 8)};
    same_bits("{type: concatenate}", 2, cat, 64);
    ct_shape dot[] = {S(2, 32, 64), S(2, 48, 64)};
    same_bits("{type: dot, axes: 2, normalize: true}", 2, dot, 64);
    ct_shape vec[] = {S(1, 256), S(1, 256)};
    same_bits("{type: dot, axes: 1, normalize: true}", 2, vec, 512);
}
END_TEST

static Suite *merge_suite(void)
{
    Suite *s = suite_create("merge");
    TCase *tc = tcase_create("layers");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_elementwise_values);
    tcase_add_test(tc, test_concatenate_values);
    tcase_add_test(tc, test_dot_values);
    tcase_add_test(tc, test_shapes);
    tcase_add_loop_test(tc, test_gradients, 0, N_GRAD);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_same_bits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(merge_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
