/* test_cuda.c - the CUDA backend against the CPU reference: every op on random inputs,
 * every layer kind forward and backward inside small models (masked ones too), every loss
 * (with a masked output's sum_scale), metric and optimizer step, then short training runs
 * of the example configs compared step by step, and a masked output through evaluate and
 * fit.
 *
 * Without a GPU (or in a build without the CUDA backend) the suite says why and exits 77,
 * which automake reports as SKIP. CT_CUDA_TEST_SELF=1 runs the suite with the CPU backend
 * in the GPU's place, to check the suite itself on a machine without one.
 *
 * Tolerances: element-wise ops use the same formulas on both (libm and CUDA's math
 * functions differ by an ulp or two): 2e-6 relative. Reductions and GEMMs sum in another
 * order: 1e-4 relative to the scale of the result. Training runs drift apart by rounding
 * each step: losses within 1e-3 relative over 20 steps, weights within 1% of their norm. */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>

#include "checkpoint.h"
#include "experiment.h"
#include "image_aug.h"
#include "layer.h"
#include "metric.h"
#include "model.h"
#include "optimizer.h"
#include "testutil.h"

static const ct_backend *CPU, *GPU;

/* ---- paired buffers: the same values in CPU memory and GPU memory --------------------- */

typedef struct pair {
    float *c, *g;
    int64_t n;
} pair;

static pair mk(int64_t n, unsigned seed, float lo, float hi)
{
    pair p = {CPU->alloc((size_t)(n ? n : 1) * sizeof(float)),
              GPU->alloc((size_t)(n ? n : 1) * sizeof(float)), n};
    ck_assert(p.c && p.g);
    if (lo < hi)
        tu_fill(p.c, n, seed, lo, hi);
    GPU->upload(p.g, p.c, (size_t)n * sizeof(float));
    return p;
}

static pair mk_from(const float *host, int64_t n)
{
    pair p = mk(n, 0, 0, 0);
    memcpy(p.c, host, (size_t)n * sizeof(float));
    GPU->upload(p.g, p.c, (size_t)n * sizeof(float));
    return p;
}

static void drop(pair *p)
{
    CPU->free(p->c);
    GPU->free(p->g);
    p->c = p->g = NULL;
}

/* |gpu - cpu| <= atol + rtol * max(|cpu|, scale) element by element, where scale is the
 * largest |cpu| value times `global` (so sums that cancel are judged against their
 * terms' size). Reports the worst element. */
static void expect_close_host(const char *what, const float *g, const float *c, int64_t n,
                              double rtol, double global)
{
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)c[i]));
    scale *= global;
    int64_t worst = -1;
    double excess = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - (double)c[i]);
        double lim = 1e-6 + rtol * fmax(fabs((double)c[i]), scale);
        bool nan_ok = isnan(c[i]) && isnan(g[i]);
        if (!nan_ok && (!(d <= lim)) && (d / lim > excess || worst < 0)) {
            worst = i;
            excess = d / lim;
        }
    }
    ck_assert_msg(worst < 0, "%s: element %lld of %lld: gpu %.9g, cpu %.9g", what,
                  (long long)worst, (long long)n, worst >= 0 ? g[worst] : 0.0,
                  worst >= 0 ? c[worst] : 0.0);
}

static void expect_close(const char *what, const pair *p, double rtol, double global)
{
    float *h = malloc((size_t)(p->n ? p->n : 1) * sizeof *h);
    GPU->download(h, p->g, (size_t)p->n * sizeof *h);
    ct_error err = {0};
    ck_assert_msg(GPU->check(&err) == 0, "%s: %s", what, err.msg);
    expect_close_host(what, h, p->c, p->n, rtol, global);
    free(h);
}

/* |gpu - cpu| <= atol everywhere: for sums, whose rounding error scales with the sum of
 * their terms' magnitudes rather than with the result. */
static void expect_close_abs(const char *what, const pair *p, double atol)
{
    float *h = malloc((size_t)(p->n ? p->n : 1) * sizeof *h);
    GPU->download(h, p->g, (size_t)p->n * sizeof *h);
    for (int64_t i = 0; i < p->n; i++)
        ck_assert_msg(fabs((double)h[i] - (double)p->c[i]) <= atol,
                      "%s: element %lld of %lld: gpu %.9g, cpu %.9g (tolerance %g)", what,
                      (long long)i, (long long)p->n, h[i], p->c[i], atol);
    free(h);
}

/* The tolerance of a float sum of rows terms, the largest column's |terms| summing to
 * abs_sum: a few times the typical (square-root) growth of rounding error. */
static double sum_tolerance(int64_t rows, double abs_sum)
{
    return 1e-6 + 4.0 * sqrt((double)rows) * 6e-8 * abs_sum;
}

static double max_column_abs_sum(const float *a, int64_t rows, int64_t cols)
{
    double best = 0;
    for (int64_t c = 0; c < cols; c++) {
        double s = 0;
        for (int64_t r = 0; r < rows; r++)
            s += fabs((double)a[r * cols + c]);
        best = fmax(best, s);
    }
    return best;
}

static void expect_equal(const char *what, const pair *p)
{
    expect_close(what, p, 0, 0);
}

#define ELEM 2e-6 /* element-wise */
#define SUM 1e-4  /* reductions and products, relative to the largest value */

/* ---- BLAS-like and element-wise ops --------------------------------------------------- */

START_TEST(test_gemm)
{
    const int64_t m = 37, n = 29, k = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            pair a = mk(m * k, 1, -1, 1), b = mk(k * n, 2, -1, 1), c = mk(m * n, 3, -1, 1);
            int64_t lda = ta ? m : k, ldb = tb ? k : n;
            CPU->gemm(ta, tb, m, n, k, 0.7f, a.c, lda, b.c, ldb, 0.3f, c.c, n);
            GPU->gemm(ta, tb, m, n, k, 0.7f, a.g, lda, b.g, ldb, 0.3f, c.g, n);
            char what[64];
            snprintf(what, sizeof what, "gemm trans_a %d trans_b %d", ta, tb);
            expect_close(what, &c, SUM, 1);
            drop(&a);
            drop(&b);
            drop(&c);
        }
}
END_TEST

/* Products by a packed matrix (each backend packs in its own form), with and without the
 * transpose and the addend; the shape leaves partial tiles. */
START_TEST(test_gemm_packed)
{
    const int64_t m = 37, n = 29, k = 53, ldd = n + 3;
    for (int tb = 0; tb < 2; tb++)
        for (int addend = 0; addend < 2; addend++) {
            pair a = mk(m * k, 11, -1, 1), b = mk(k * n, 12, -1, 1), c = mk(m * n, 13, -1, 1);
            pair d = mk(m * ldd, 14, -1, 1);
            pair p = mk(CT_GEMM_PACKED_FLOATS(k, n), 0, 0, 0);
            int64_t ldb = tb ? k : n;
            CPU->gemm_pack_b(tb, k, n, b.c, ldb, p.c);
            GPU->gemm_pack_b(tb, k, n, b.g, ldb, p.g);
            CPU->gemm_packed(m, n, k, a.c, k, p.c, addend ? d.c : NULL, ldd, c.c, n);
            GPU->gemm_packed(m, n, k, a.g, k, p.g, addend ? d.g : NULL, ldd, c.g, n);
            char what[64];
            snprintf(what, sizeof what, "gemm_packed trans_b %d addend %d", tb, addend);
            expect_close(what, &c, SUM, 1);
            pair *all[] = {&a, &b, &c, &d, &p};
            for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
                drop(all[j]);
        }
}
END_TEST

START_TEST(test_blas1)
{
    const int64_t n = 10007;
    pair x = mk(n, 4, -2, 2), y = mk(n, 5, -2, 2), o = mk(n, 6, 0, 0);
    CPU->axpy(n, -0.75f, x.c, y.c);
    GPU->axpy(n, -0.75f, x.g, y.g);
    expect_close("axpy", &y, ELEM, 0);
    CPU->scale(n, 1.5f, y.c);
    GPU->scale(n, 1.5f, y.g);
    expect_close("scale", &y, ELEM, 0);
    CPU->add_scaled(n, x.c, -0.5f, y.c, o.c);
    GPU->add_scaled(n, x.g, -0.5f, y.g, o.g);
    expect_close("add_scaled", &o, ELEM, 0);
    CPU->mul(n, x.c, y.c, o.c);
    GPU->mul(n, x.g, y.g, o.g);
    expect_close("mul", &o, ELEM, 0);
    CPU->copy(o.c, x.c, n);
    GPU->copy(o.g, x.g, n);
    expect_equal("copy", &o);
    CPU->fill(o.c, n - 3, 0.25f);
    GPU->fill(o.g, n - 3, 0.25f);
    expect_equal("fill", &o);
    drop(&x);
    drop(&y);
    drop(&o);
    /* Tall and wide matrices for the row and column reductions. */
    const int64_t shapes[][2] = {{1000, 37}, {3, 5000}, {1, 1}, {4097, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        pair a = mk(rows * cols, 7, -1, 1), b = mk(cols, 8, -1, 1), sums = mk(cols, 9, -1, 1);
        CPU->add_row_vector(a.c, b.c, rows, cols);
        GPU->add_row_vector(a.g, b.g, rows, cols);
        expect_close("add_row_vector", &a, ELEM, 0);
        double tol = sum_tolerance(rows, max_column_abs_sum(a.c, rows, cols) + 1);
        CPU->sum_rows(a.c, sums.c, rows, cols, 0.5f);
        GPU->sum_rows(a.g, sums.g, rows, cols, 0.5f);
        expect_close_abs("sum_rows beta 0.5", &sums, tol);
        CPU->sum_rows(a.c, sums.c, rows, cols, 0.0f);
        GPU->sum_rows(a.g, sums.g, rows, cols, 0.0f);
        expect_close_abs("sum_rows beta 0", &sums, tol);
        drop(&a);
        drop(&b);
        drop(&sums);
    }
}
END_TEST

static const ct_act ACTS[] = {
    {CT_ACT_LINEAR, 0},  {CT_ACT_RELU, 0},         {CT_ACT_RELU6, 0},   {CT_ACT_LEAKY_RELU, 0.2f},
    {CT_ACT_ELU, 1.0f},  {CT_ACT_SELU, 0},         {CT_ACT_GELU, 0},    {CT_ACT_GELU, 1.0f},
    {CT_ACT_SILU, 0},    {CT_ACT_SIGMOID, 0},      {CT_ACT_HARD_SIGMOID, 0},
    {CT_ACT_TANH, 0},    {CT_ACT_SOFTPLUS, 0},     {CT_ACT_SOFTSIGN, 0},
    {CT_ACT_SOFTMAX, 0}, {CT_ACT_LOG_SOFTMAX, 0},
};

START_TEST(test_activations)
{
    const int64_t rows = 17, cols = 33, n = rows * cols;
    for (size_t i = 0; i < sizeof ACTS / sizeof ACTS[0]; i++) {
        ct_act a = ACTS[i];
        char what[96];
        pair x = mk(n, 10 + (unsigned)i, -6, 6), y = mk(n, 0, 0, 0), dy = mk(n, 30, -1, 1);
        pair dx = mk(n, 0, 0, 0);
        CPU->act_forward(a, x.c, y.c, rows, cols);
        GPU->act_forward(a, x.g, y.g, rows, cols);
        snprintf(what, sizeof what, "%s forward", ct_act_name(a.kind));
        expect_close(what, &y, ELEM, a.kind == CT_ACT_LOG_SOFTMAX ? 1e-6 : 0);
        /* Both backwards see the CPU's y, so only the backward is compared. */
        GPU->upload(y.g, y.c, (size_t)n * sizeof(float));
        CPU->act_backward(a, x.c, y.c, dy.c, dx.c, rows, cols);
        GPU->act_backward(a, x.g, y.g, dy.g, dx.g, rows, cols);
        snprintf(what, sizeof what, "%s backward", ct_act_name(a.kind));
        expect_close(what, &dx, 1e-5, 1e-6);
        if (a.kind != CT_ACT_SOFTMAX && a.kind != CT_ACT_LOG_SOFTMAX) {
            pair b = mk(cols, 40, -1, 1), z = mk_from(x.c, n), db = mk(cols, 41, -1, 1);
            pair zk = mk_from(x.c, n), yk = mk(n, 0, 0, 0);
            CPU->bias_act_to(a, b.c, zk.c, yk.c, rows, cols);
            GPU->bias_act_to(a, b.g, zk.g, yk.g, rows, cols);
            snprintf(what, sizeof what, "%s bias_act_to z", ct_act_name(a.kind));
            expect_close(what, &zk, ELEM, 0);
            snprintf(what, sizeof what, "%s bias_act_to y", ct_act_name(a.kind));
            expect_close(what, &yk, ELEM, 0);
            drop(&zk);
            drop(&yk);
            CPU->bias_act(a, b.c, z.c, rows, cols);
            GPU->bias_act(a, b.g, z.g, rows, cols);
            snprintf(what, sizeof what, "%s bias_act", ct_act_name(a.kind));
            expect_close(what, &z, ELEM, 0);
            if (ct_act_from_output(a)) {
                GPU->upload(z.g, z.c, (size_t)n * sizeof(float));
                pair d = mk_from(dy.c, n);
                CPU->bias_act_backward(a, z.c, d.c, db.c, rows, cols);
                GPU->bias_act_backward(a, z.g, d.g, db.g, rows, cols);
                snprintf(what, sizeof what, "%s bias_act_backward dy", ct_act_name(a.kind));
                expect_close(what, &d, ELEM, 0);
                snprintf(what, sizeof what, "%s bias_act_backward db", ct_act_name(a.kind));
                expect_close(what, &db, SUM, 1);
                drop(&d);
            }
            drop(&b);
            drop(&z);
            drop(&db);
        }
        drop(&x);
        drop(&y);
        drop(&dy);
        drop(&dx);
    }
}
END_TEST

START_TEST(test_random_streams)
{
    const int64_t n = 100003;
    pair m = mk(n, 0, 0, 0), x = mk(n, 50, -1, 1);
    CPU->dropout_mask(m.c, n, 0.3f, 0x1234abcdull, 77);
    GPU->dropout_mask(m.g, n, 0.3f, 0x1234abcdull, 77);
    expect_equal("dropout_mask (the same bits for the same key)", &m);
    CPU->add_noise(x.c, n, 0.5f, 99, 1000);
    GPU->add_noise(x.g, n, 0.5f, 99, 1000);
    expect_close("add_noise", &x, 1e-5, 1e-5);
    const int64_t rows = 6, spatial = 35, c = 7;
    pair s = mk(rows * c, 51, 0, 2), a = mk(rows * spatial * c, 52, -1, 1), b = mk(rows * spatial * c, 0, 0, 0);
    CPU->scale_channels(a.c, s.c, b.c, rows, spatial, c);
    GPU->scale_channels(a.g, s.g, b.g, rows, spatial, c);
    expect_close("scale_channels", &b, ELEM, 0);
    drop(&m);
    drop(&x);
    drop(&s);
    drop(&a);
    drop(&b);
}
END_TEST

/* ---- preprocessing and augmentation ------------------------------------------------- */

/* Every transform kind and fill mode, forward and backward, and random contrast: the same
 * draws from the same key on both backends. */
START_TEST(test_image_ops)
{
    const int64_t rows = 5, h = 9, w = 7, c = 3, n = rows * h * w * c;
    pair x = mk(n, 60, -1, 1), y = mk(n, 0, 0, 0), dx = mk(n, 0, 0, 0);
    for (int kind = CT_AUG_FLIP; kind <= CT_AUG_RESIZE; kind++) {
        for (int fill = CT_FILL_REFLECT; fill <= CT_FILL_NEAREST; fill++) {
            ct_image_aug a = {.kind = kind, .h = h, .w = w, .c = c, .oh = h, .ow = w,
                              .flip_h = true, .flip_v = true, .lo = {-0.3f, -0.2f},
                              .hi = {0.3f, 0.4f}, .nearest = fill == CT_FILL_WRAP,
                              .fill = fill, .fill_value = 0.5f};
            if (kind >= CT_AUG_CROP)
                a.oh = 5, a.ow = 4;
            int64_t m = rows * a.oh * a.ow * c;
            CPU->image_aug(&a, x.c, y.c, rows, 0xfeedull + (uint64_t)kind);
            GPU->image_aug(&a, x.g, y.g, rows, 0xfeedull + (uint64_t)kind);
            pair yo = y;
            yo.n = m;
            expect_close("image_aug", &yo, 1e-5, 1e-5);
            CPU->image_aug_backward(&a, y.c, dx.c, rows, 0xbeefull);
            GPU->image_aug_backward(&a, y.g, dx.g, rows, 0xbeefull);
            expect_close("image_aug_backward", &dx, 1e-5, 1e-5);
        }
    }
    pair mean = mk(c, 61, -1, 1), var = mk(c, 62, 0.5f, 2), m2 = mk(c, 0, 0, 0);
    CPU->channel_moments(x.c, rows * h * w, c, mean.c, m2.c);
    GPU->channel_moments(x.g, rows * h * w, c, mean.g, m2.g);
    expect_close("channel_moments (mean)", &mean, 1e-5, 1e-5);
    expect_close("channel_moments (m2)", &m2, 1e-5, 1e-5);
    for (int inv = 0; inv < 2; inv++) {
        CPU->normalize_channels(x.c, y.c, rows * h * w, c, mean.c, var.c, inv);
        GPU->normalize_channels(x.g, y.g, rows * h * w, c, mean.g, var.g, inv);
        expect_close("normalize_channels", &y, 1e-5, 0);
        CPU->normalize_channels_backward(y.c, dx.c, rows * h * w, c, var.c, inv);
        GPU->normalize_channels_backward(y.g, dx.g, rows * h * w, c, var.g, inv);
        expect_close("normalize_channels_backward", &dx, 1e-5, 0);
    }
    drop(&mean);
    drop(&var);
    drop(&m2);
    CPU->scale_shift(x.c, y.c, n, 0.25f, -3.0f);
    GPU->scale_shift(x.g, y.g, n, 0.25f, -3.0f);
    expect_close("scale_shift", &y, ELEM, 0);
    CPU->contrast(x.c, y.c, rows, h * w, c, 0.3f, 0.5f, -0.8f, 0.9f, 77);
    GPU->contrast(x.g, y.g, rows, h * w, c, 0.3f, 0.5f, -0.8f, 0.9f, 77);
    expect_close("contrast", &y, 1e-5, 1e-5);
    CPU->contrast_backward(y.c, x.c, dx.c, rows, h * w, c, 0.3f, 0.5f, -0.8f, 0.9f, 77);
    GPU->contrast_backward(y.g, x.g, dx.g, rows, h * w, c, 0.3f, 0.5f, -0.8f, 0.9f, 77);
    expect_close("contrast_backward", &dx, 1e-5, 1e-5);
    drop(&x);
    drop(&y);
    drop(&dx);
}
END_TEST

/* ---- windows: convolution, pooling, padding ----------------------------------------- */

static ct_window window(int64_t ih, int64_t iw, int64_t ic, int64_t kh, int64_t kw, int64_t sh,
                        int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t pb,
                        int64_t pr)
{
    ct_window w = {ih, iw, ic, 0, 0, kh, kw, sh, sw, dh, dw, pt, pl, CT_CONV_IM2COL};
    w.out_h = (ih + pt + pb - (dh * (kh - 1) + 1)) / sh + 1;
    w.out_w = (iw + pl + pr - (dw * (kw - 1) + 1)) / sw + 1;
    return w;
}

typedef struct conv_case {
    ct_window w;
    int64_t groups, filters;
    ct_act act;
    bool bias;
} conv_case;

START_TEST(test_conv)
{
    const conv_case cases[] = {
        {window(9, 9, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 1, 8, {CT_ACT_RELU, 0}, true},
        {window(10, 7, 4, 3, 2, 2, 1, 1, 2, 1, 0, 1, 1), 2, 6, {CT_ACT_LINEAR, 0}, false},
        {window(6, 5, 8, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0), 1, 5, {CT_ACT_TANH, 0}, true},
        {window(1, 20, 3, 1, 5, 1, 2, 1, 1, 0, 2, 0, 2), 1, 4, {CT_ACT_SIGMOID, 0}, true},
        {window(14, 14, 32, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0), 1, 64, {CT_ACT_RELU, 0}, true},
    };
    const int64_t rows = 5;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_case *cc = &cases[i];
        const ct_window *w = &cc->w;
        int64_t kin = w->k_h * w->k_w * (w->in_c / cc->groups);
        int64_t nx = rows * w->in_h * w->in_w * w->in_c, ny = rows * w->out_h * w->out_w * cc->filters;
        pair x = mk(nx, 60 + (unsigned)i, -1, 1), k = mk(kin * cc->filters, 61, -0.5f, 0.5f);
        pair b = mk(cc->filters, 62, -0.2f, 0.2f), y = mk(ny, 0, 0, 0);
        int64_t cw = CPU->conv_workspace(w, cc->groups, cc->filters, rows);
        int64_t gw = GPU->conv_workspace(w, cc->groups, cc->filters, rows);
        pair wc = mk(cw, 0, 0, 0), wg = mk(gw, 0, 0, 0);
        const float *bc = cc->bias ? b.c : NULL, *bg = cc->bias ? b.g : NULL;
        CPU->conv_forward(w, cc->groups, cc->filters, x.c, k.c, bc, cc->act, y.c, rows, wc.c);
        GPU->conv_forward(w, cc->groups, cc->filters, x.g, k.g, bg, cc->act, y.g, rows, wg.g);
        char what[96];
        snprintf(what, sizeof what, "conv case %zu forward", i);
        expect_close(what, &y, SUM, 1);
        GPU->upload(y.g, y.c, (size_t)ny * sizeof(float));
        pair dy = mk(ny, 63, -1, 1), dx = mk(nx, 0, 0, 0), dk = mk(kin * cc->filters, 0, 0, 0);
        pair db = mk(cc->filters, 0, 0, 0);
        CPU->conv_backward(w, cc->groups, cc->filters, x.c, k.c, y.c, cc->act, dy.c, dx.c, dk.c,
                           cc->bias ? db.c : NULL, rows, wc.c);
        GPU->conv_backward(w, cc->groups, cc->filters, x.g, k.g, y.g, cc->act, dy.g, dx.g, dk.g,
                           cc->bias ? db.g : NULL, rows, wg.g);
        snprintf(what, sizeof what, "conv case %zu dy after the activation", i);
        expect_close(what, &dy, ELEM, 0);
        snprintf(what, sizeof what, "conv case %zu dx", i);
        expect_close(what, &dx, SUM, 1);
        snprintf(what, sizeof what, "conv case %zu dkernel", i);
        expect_close(what, &dk, SUM, 1);
        snprintf(what, sizeof what, "conv case %zu dbias", i);
        expect_close(what, &db, SUM, 1);
        /* The patch ops the transposed convolution uses, on the same geometry. */
        int64_t cn = w->in_c / cc->groups, np = rows * w->out_h * w->out_w * w->k_h * w->k_w * cn;
        pair cols = mk(np, 0, 0, 0);
        CPU->im2col(w, x.c, rows, w->in_c - cn, cn, cols.c);
        GPU->im2col(w, x.g, rows, w->in_c - cn, cn, cols.g);
        snprintf(what, sizeof what, "conv case %zu im2col", i);
        expect_equal(what, &cols);
        pair back = mk(nx, 64, -1, 1);
        CPU->col2im(w, cols.c, rows, w->in_c - cn, cn, back.c);
        GPU->col2im(w, cols.g, rows, w->in_c - cn, cn, back.g);
        snprintf(what, sizeof what, "conv case %zu col2im", i);
        expect_close(what, &back, SUM, 1);
        pair *all[] = {&x, &k, &b, &y, &wc, &wg, &dy, &dx, &dk, &db, &cols, &back};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
            drop(all[j]);
    }
}
END_TEST

START_TEST(test_depthwise)
{
    const ct_window ws[] = {window(9, 8, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
                            window(7, 7, 4, 3, 3, 1, 1, 2, 2, 0, 0, 0, 0)};
    const int64_t rows = 3, mults[] = {2, 1};
    for (size_t i = 0; i < 2; i++) {
        const ct_window *w = &ws[i];
        int64_t m = mults[i], nx = rows * w->in_h * w->in_w * w->in_c;
        int64_t ny = rows * w->out_h * w->out_w * w->in_c * m, nk = w->k_h * w->k_w * w->in_c * m;
        pair x = mk(nx, 70, -1, 1), k = mk(nk, 71, -1, 1), y = mk(ny, 0, 0, 0);
        CPU->depthwise_forward(w, m, x.c, k.c, y.c, rows);
        GPU->depthwise_forward(w, m, x.g, k.g, y.g, rows);
        expect_close("depthwise forward", &y, SUM, 1);
        pair dy = mk(ny, 72, -1, 1), dx = mk(nx, 0, 0, 0), dk = mk(nk, 0, 0, 0);
        CPU->depthwise_backward(w, m, x.c, k.c, dy.c, dx.c, dk.c, rows);
        GPU->depthwise_backward(w, m, x.g, k.g, dy.g, dx.g, dk.g, rows);
        expect_close("depthwise dx", &dx, SUM, 1);
        expect_close("depthwise dkernel", &dk, SUM, 1);
        pair *all[] = {&x, &k, &y, &dy, &dx, &dk};
        for (size_t j = 0; j < 6; j++)
            drop(all[j]);
    }
}
END_TEST

START_TEST(test_pooling)
{
    const ct_window ws[] = {window(8, 8, 3, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0),
                            window(7, 9, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
                            window(9, 9, 4, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0),
                            window(1, 11, 3, 1, 3, 1, 2, 1, 1, 0, 1, 0, 1)};
    const int64_t rows = 4;
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        for (int kind = 0; kind < 2; kind++) {
            const ct_window *w = &ws[i];
            int64_t nx = rows * w->in_h * w->in_w * w->in_c, ny = rows * w->out_h * w->out_w * w->in_c;
            pair x = mk(nx, 80 + (unsigned)i, -2, 2);
            /* Coarse values make ties, where the first maximum must win on both. */
            for (int64_t j = 0; j < nx; j++)
                x.c[j] = roundf(x.c[j] * 2) / 2;
            GPU->upload(x.g, x.c, (size_t)nx * sizeof(float));
            pair y = mk(ny, 0, 0, 0), dy = mk(ny, 81, -1, 1), dx = mk(nx, 82, -1, 1);
            CPU->pool_forward((ct_pool)kind, w, x.c, y.c, rows);
            GPU->pool_forward((ct_pool)kind, w, x.g, y.g, rows);
            char what[64];
            snprintf(what, sizeof what, "%s pooling %zu forward", kind ? "avg" : "max", i);
            expect_close(what, &y, ELEM, 0);
            CPU->pool_backward((ct_pool)kind, w, x.c, y.c, dy.c, dx.c, rows);
            GPU->pool_backward((ct_pool)kind, w, x.g, y.g, dy.g, dx.g, rows);
            snprintf(what, sizeof what, "%s pooling %zu backward", kind ? "avg" : "max", i);
            expect_close(what, &dx, 1e-5, 1e-6);
            drop(&x);
            drop(&y);
            drop(&dy);
            drop(&dx);
        }
    const int64_t rows2 = 5, spatial = 49, c = 6;
    for (int kind = 0; kind < 2; kind++) {
        pair x = mk(rows2 * spatial * c, 83, -1, 1), y = mk(rows2 * c, 0, 0, 0);
        pair dy = mk(rows2 * c, 84, -1, 1), dx = mk(rows2 * spatial * c, 0, 0, 0);
        CPU->global_pool_forward((ct_pool)kind, x.c, y.c, rows2, spatial, c);
        GPU->global_pool_forward((ct_pool)kind, x.g, y.g, rows2, spatial, c);
        expect_close("global pooling forward", &y, SUM, 1);
        CPU->global_pool_backward((ct_pool)kind, x.c, y.c, dy.c, dx.c, rows2, spatial, c);
        GPU->global_pool_backward((ct_pool)kind, x.g, y.g, dy.g, dx.g, rows2, spatial, c);
        expect_close("global pooling backward", &dx, ELEM, 0);
        drop(&x);
        drop(&y);
        drop(&dy);
        drop(&dx);
    }
}
END_TEST

START_TEST(test_pad_upsample)
{
    const int64_t rows = 3, h = 5, w = 4, c = 3, t = 1, b = 2, l = 0, r = 3;
    int64_t small = rows * h * w * c, big = rows * (h + t + b) * (w + l + r) * c;
    pair x = mk(small, 90, -1, 1), y = mk(big, 91, -1, 1), back = mk(small, 0, 0, 0);
    CPU->pad2d(x.c, y.c, rows, h, w, c, t, b, l, r, false);
    GPU->pad2d(x.g, y.g, rows, h, w, c, t, b, l, r, false);
    expect_equal("zero padding", &y);
    CPU->pad2d(y.c, back.c, rows, h, w, c, t, b, l, r, true);
    GPU->pad2d(y.g, back.g, rows, h, w, c, t, b, l, r, true);
    expect_equal("cropping", &back);
    pair up = mk(rows * h * 2 * w * 3 * c, 0, 0, 0), sum = mk(small, 0, 0, 0);
    CPU->upsample2d(x.c, up.c, rows, h, w, c, 2, 3, false);
    GPU->upsample2d(x.g, up.g, rows, h, w, c, 2, 3, false);
    expect_equal("up-sampling", &up);
    CPU->upsample2d(up.c, sum.c, rows, h, w, c, 2, 3, true);
    GPU->upsample2d(up.g, sum.g, rows, h, w, c, 2, 3, true);
    expect_close("up-sampling backward", &sum, SUM, 1);
    pair *all[] = {&x, &y, &back, &up, &sum};
    for (size_t j = 0; j < 5; j++)
        drop(all[j]);
}
END_TEST

/* ---- normalization ---------------------------------------------------------------- */

START_TEST(test_batchnorm)
{
    const int64_t n = 3000, c = 13;
    pair x = mk(n * c, 100, -3, 5), y = mk(n * c, 0, 0, 0), gamma = mk(c, 101, 0.5f, 1.5f);
    pair beta = mk(c, 102, -1, 1), mean = mk(c, 0, 0, 0), var = mk(c, 0, 0, 0), is = mk(c, 0, 0, 0);
    CPU->batchnorm_train(x.c, y.c, n, c, gamma.c, beta.c, 1e-3f, mean.c, var.c, is.c, false);
    GPU->batchnorm_train(x.g, y.g, n, c, gamma.g, beta.g, 1e-3f, mean.g, var.g, is.g, false);
    expect_close("batchnorm mean", &mean, SUM, 1);
    expect_close("batchnorm var", &var, SUM, 0);
    expect_close("batchnorm invstd", &is, SUM, 0);
    expect_close("batchnorm y", &y, SUM, 1);
    GPU->upload(mean.g, mean.c, (size_t)c * sizeof(float));
    GPU->upload(is.g, is.c, (size_t)c * sizeof(float));
    pair dy = mk(n * c, 103, -1, 1), dx = mk(n * c, 0, 0, 0), dg = mk(c, 0, 0, 0), db = mk(c, 0, 0, 0);
    CPU->batchnorm_backward(x.c, NULL, dy.c, dx.c, n, c, gamma.c, mean.c, is.c, dg.c, db.c);
    GPU->batchnorm_backward(x.g, NULL, dy.g, dx.g, n, c, gamma.g, mean.g, is.g, dg.g, db.g);
    expect_close("batchnorm dx", &dx, 1e-3, 1e-2);
    expect_close("batchnorm dgamma", &dg, SUM, 1);
    expect_close("batchnorm dbeta", &db, SUM, 1);
    CPU->batchnorm_infer(x.c, y.c, n, c, NULL, beta.c, 1e-3f, mean.c, var.c, false);
    GPU->upload(var.g, var.c, (size_t)c * sizeof(float));
    GPU->batchnorm_infer(x.g, y.g, n, c, NULL, beta.g, 1e-3f, mean.g, var.g, false);
    expect_close("batchnorm inference", &y, ELEM, 1e-6);
    pair *all[] = {&x, &y, &gamma, &beta, &mean, &var, &is, &dy, &dx, &dg, &db};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
        drop(all[j]);
}
END_TEST

START_TEST(test_groupnorm)
{
    const int64_t shapes[][4] = {{4, 25, 8, 2}, {300, 1, 64, 1}, {2, 9, 6, 6}};
    for (size_t s = 0; s < 3; s++) {
        int64_t rows = shapes[s][0], spatial = shapes[s][1], c = shapes[s][2], groups = shapes[s][3];
        int64_t n = rows * spatial * c;
        pair x = mk(n, 110, -2, 3), y = mk(n, 0, 0, 0), gamma = mk(c, 111, 0.5f, 1.5f);
        pair beta = mk(c, 112, -1, 1), mean = mk(rows * groups, 0, 0, 0), is = mk(rows * groups, 0, 0, 0);
        CPU->groupnorm_forward(x.c, y.c, rows, spatial, c, groups, gamma.c, beta.c, 1e-3f, mean.c, is.c);
        GPU->groupnorm_forward(x.g, y.g, rows, spatial, c, groups, gamma.g, beta.g, 1e-3f, mean.g, is.g);
        expect_close("groupnorm mean", &mean, SUM, 1);
        expect_close("groupnorm invstd", &is, SUM, 0);
        expect_close("groupnorm y", &y, SUM, 1);
        GPU->upload(mean.g, mean.c, (size_t)(rows * groups) * sizeof(float));
        GPU->upload(is.g, is.c, (size_t)(rows * groups) * sizeof(float));
        pair dy = mk(n, 113, -1, 1), dx = mk(n, 0, 0, 0), dg = mk(c, 0, 0, 0), db = mk(c, 0, 0, 0);
        CPU->groupnorm_backward(x.c, dy.c, dx.c, rows, spatial, c, groups, gamma.c, mean.c, is.c, dg.c, db.c);
        GPU->groupnorm_backward(x.g, dy.g, dx.g, rows, spatial, c, groups, gamma.g, mean.g, is.g, dg.g, db.g);
        expect_close("groupnorm dx", &dx, 1e-3, 1e-2);
        expect_close("groupnorm dgamma", &dg, SUM, 1);
        expect_close("groupnorm dbeta", &db, SUM, 1);
        pair *all[] = {&x, &y, &gamma, &beta, &mean, &is, &dy, &dx, &dg, &db};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
            drop(all[j]);
    }
}
END_TEST

/* ---- the training step's ops -------------------------------------------------------- */

/* One double of each backend's memory, zeroed. */
typedef struct acc {
    double *c, *g;
} acc;

static acc mk_acc(void)
{
    acc a = {CPU->alloc(sizeof(double)), GPU->alloc(sizeof(double))};
    ck_assert(a.c && a.g);
    return a;
}

static void expect_acc(const char *what, acc *a, double rtol)
{
    double g;
    GPU->download(&g, a->g, sizeof g);
    ct_error err = {0};
    ck_assert_msg(GPU->check(&err) == 0, "%s: %s", what, err.msg);
    ck_assert_msg(fabs(g - *a->c) <= 1e-9 + rtol * fabs(*a->c), "%s: gpu %.12g, cpu %.12g", what,
                  g, *a->c);
    CPU->free(a->c);
    GPU->free(a->g);
}

typedef struct loss_case {
    ct_loss_op op;
    bool probs;   /* predictions are probabilities (softmax / sigmoid of the inputs) */
    int labels;   /* 0 dense in [0, 1], 1 one-hot, 2 class indices, 3 {0, 1}, 4 {-1, 1} */
} loss_case;

/* Predictions and labels of case i. */
static void loss_inputs(const loss_case *lc, size_t i, int64_t rows, int64_t cols, pair *p,
                        pair *y)
{
    *p = mk(rows * cols, 120 + (unsigned)i, -4, 4);
    if (lc->probs) {
        bool binary = lc->op.id == CT_LOSS_BCE || lc->op.id == CT_LOSS_BINARY_FOCAL;
        ct_act a = {binary ? CT_ACT_SIGMOID : CT_ACT_SOFTMAX, 0};
        CPU->act_forward(a, p->c, p->c, rows, cols);
    }
    /* Saturated predictions test the clipping. */
    p->c[3] = lc->probs ? 1.0f : 30.0f;
    p->c[7] = lc->probs ? 0.0f : -30.0f;
    GPU->upload(p->g, p->c, (size_t)(rows * cols) * sizeof(float));
    int64_t ny = lc->labels == 2 ? rows : rows * cols;
    *y = mk(ny, 130 + (unsigned)i, 0, 1);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++) {
            float *v = lc->labels == 2 ? &y->c[r] : &y->c[r * cols + k];
            if (lc->labels == 1)
                *v = (float)(k == r % cols);
            else if (lc->labels == 2)
                *v = (float)(r % cols);
            else if (lc->labels == 3)
                *v = (float)((r + k) % 2);
            else if (lc->labels == 4)
                *v = (r + k) % 3 ? 1.0f : -1.0f;
        }
    if (lc->labels == 2)
        y->c[5] = 99.0f; /* out of range: skipped by both */
    GPU->upload(y->g, y->c, (size_t)ny * sizeof(float));
}

/* Case i with the op's sum_scale set to sum_scale (0 reads as 1; another value takes the
 * GPU's staging path), added to a sum that starts at `start`. */
static void loss_case_check(const loss_case *lc, size_t i, double sum_scale, double start)
{
    const int64_t rows = 200, cols = 10;
    ct_loss_op op = lc->op;
    op.sum_scale = sum_scale;
    pair p, y;
    loss_inputs(lc, i, rows, cols, &p, &y);
    pair d = mk(rows * cols, 0, 0, 0);
    acc s = mk_acc();
    *s.c = start;
    GPU->upload(s.g, &start, sizeof start);
    CPU->loss(&op, p.c, y.c, d.c, rows, cols, 1.0f / rows, s.c);
    GPU->loss(&op, p.g, y.g, d.g, rows, cols, 1.0f / rows, s.g);
    char what[128];
    snprintf(what, sizeof what, "loss case %zu (id %d, sum_scale %g) value", i, (int)op.id,
             sum_scale);
    expect_acc(what, &s, 1e-6);
    snprintf(what, sizeof what, "loss case %zu (id %d, sum_scale %g) gradient", i, (int)op.id,
             sum_scale);
    expect_close(what, &d, 1e-5, 1e-6);
    /* Without a gradient buffer, the value alone. */
    acc s2 = mk_acc();
    CPU->loss(&op, p.c, y.c, NULL, rows, cols, 1.0f, s2.c);
    GPU->loss(&op, p.g, y.g, NULL, rows, cols, 1.0f, s2.g);
    expect_acc(what, &s2, 1e-6);
    drop(&p);
    drop(&y);
    drop(&d);
}

START_TEST(test_losses)
{
/* An op with Keras's defaults for the focal losses; ls: label_smoothing. */
#define LOP(ID, LOGITS, FUSED, DELTA) \
    {.id = (ID), .from_logits = (LOGITS), .fused = (FUSED), .delta = (DELTA), .sum_scale = 1, \
     .alpha = 0.25, .gamma = 2.0}
#define LOPX(ID, LOGITS, FUSED, LS, GAMMA, BALANCE) \
    {.id = (ID), .from_logits = (LOGITS), .fused = (FUSED), .sum_scale = 1, \
     .label_smoothing = (LS), .alpha = 0.3, .gamma = (GAMMA), .apply_class_balancing = (BALANCE)}
    const loss_case cases[] = {
        {LOP(CT_LOSS_MSE, false, false, 0), false, 0},      {LOP(CT_LOSS_MAE, false, false, 0), false, 0},
        {LOP(CT_LOSS_HUBER, false, false, 0.7), false, 0},  {LOP(CT_LOSS_LOG_COSH, false, false, 0), false, 0},
        {LOP(CT_LOSS_BCE, false, false, 0), true, 3},       {LOP(CT_LOSS_BCE, true, false, 0), false, 3},
        {LOP(CT_LOSS_BCE, false, true, 0), true, 0},        {LOP(CT_LOSS_CCE, false, false, 0), true, 1},
        {LOP(CT_LOSS_CCE, true, false, 0), false, 1},       {LOP(CT_LOSS_CCE, false, true, 0), true, 1},
        {LOP(CT_LOSS_SPARSE_CCE, false, false, 0), true, 2}, {LOP(CT_LOSS_SPARSE_CCE, true, false, 0), false, 2},
        {LOP(CT_LOSS_SPARSE_CCE, false, true, 0), true, 2}, {LOP(CT_LOSS_KLD, false, false, 0), true, 0},
        {LOP(CT_LOSS_HINGE, false, false, 0), false, 3},    {LOP(CT_LOSS_HINGE, false, false, 0), false, 4},
        /* the rest of Keras's catalogue, and label smoothing */
        {LOP(CT_LOSS_MSLE, false, false, 0), false, 0},     {LOP(CT_LOSS_MAPE, false, false, 0), false, 0},
        {LOP(CT_LOSS_POISSON, false, false, 0), true, 0},   {LOP(CT_LOSS_COSINE, false, false, 0), false, 0},
        {LOP(CT_LOSS_SQUARED_HINGE, false, false, 0), false, 3},
        {LOP(CT_LOSS_SQUARED_HINGE, false, false, 0), false, 4},
        {LOP(CT_LOSS_CAT_HINGE, false, false, 0), false, 1},
        {LOP(CT_LOSS_BINARY_FOCAL, false, false, 0), true, 3},
        {LOP(CT_LOSS_BINARY_FOCAL, true, false, 0), false, 0},
        {LOPX(CT_LOSS_BINARY_FOCAL, false, false, 0.1, 1.5, true), true, 3},
        {LOP(CT_LOSS_CAT_FOCAL, false, false, 0), true, 1},
        {LOPX(CT_LOSS_CAT_FOCAL, true, false, 0.2, 0.5, false), false, 0},
        {LOPX(CT_LOSS_BCE, false, false, 0.2, 0, false), true, 3},
        {LOPX(CT_LOSS_BCE, false, true, 0.2, 0, false), true, 3},
        {LOPX(CT_LOSS_CCE, true, false, 0.1, 0, false), false, 1},
        {LOPX(CT_LOSS_CCE, false, false, 0.1, 0, false), true, 0},
    };
#undef LOP
#undef LOPX
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loss_case_check(&cases[i], i, 1.0, 0.0);
        /* a masked output's batch: the sum scaled, added to the epoch's */
        loss_case_check(&cases[i], i, 2.5, 7.25);
        loss_case_check(&cases[i], i, 0.0, 0.0);
    }
}
END_TEST

START_TEST(test_metrics)
{
    const int64_t rows = 300, cols = 7;
    for (int id = 0; id < CT_METRIC_COUNT; id++) {
        bool sparse = id == CT_METRIC_SPARSE_ACC || id == CT_METRIC_SPARSE_TOP_K;
        pair p = mk(rows * cols, 140 + (unsigned)id, 0, 1);
        for (int64_t j = 0; j < rows * cols; j += 5)
            p.c[j] = 0.5f; /* ties */
        GPU->upload(p.g, p.c, (size_t)(rows * cols) * sizeof(float));
        int64_t ny = sparse ? rows : rows * cols;
        pair y = mk(ny, 150 + (unsigned)id, 0, 1);
        for (int64_t r = 0; r < rows && id != CT_METRIC_MSE && id != CT_METRIC_MAE; r++)
            for (int64_t k = 0; k < cols; k++) {
                if (sparse)
                    y.c[r] = (float)(r % cols);
                else if (id == CT_METRIC_BINARY_ACC)
                    y.c[r * cols + k] = (float)((r * k) % 2);
                else
                    y.c[r * cols + k] = (float)(k == (r * 3) % cols);
            }
        GPU->upload(y.g, y.c, (size_t)ny * sizeof(float));
        acc s = mk_acc();
        CPU->metric((ct_metric_id)id, 3, p.c, y.c, rows, cols, s.c);
        GPU->metric((ct_metric_id)id, 3, p.g, y.g, rows, cols, s.g);
        char what[64];
        snprintf(what, sizeof what, "metric id %d", id);
        expect_acc(what, &s, 1e-9);
        drop(&p);
        drop(&y);
    }
}
END_TEST

START_TEST(test_regularize_clip)
{
    const int64_t n = 5003;
    pair w = mk(n, 160, -1, 1), g = mk(n, 161, -1, 1);
    acc pen = mk_acc();
    CPU->regularize(w.c, g.c, n, 0.01, 0.02, 64, pen.c);
    GPU->regularize(w.g, g.g, n, 0.01, 0.02, 64, pen.g);
    expect_acc("regularizer penalty", &pen, 1e-9);
    expect_close("regularizer gradient", &g, ELEM, 0);
    CPU->clip_value(g.c, n, 0.3f);
    GPU->clip_value(g.g, n, 0.3f);
    expect_equal("clip_value", &g);
    for (int k = 0; k < 2; k++) {
        double c = k ? 1e6 : 2.0; /* clipped, and left alone */
        CPU->clip_norm(g.c, n, c);
        GPU->clip_norm(g.g, n, c);
        expect_close("clip_norm", &g, ELEM, 0);
    }
    drop(&w);
    drop(&g);
}
END_TEST

START_TEST(test_updates)
{
    typedef struct { ct_update u; int slots; } upd;
    /* designated: the EMA fields stay zero (off) where not given */
    const upd cases[] = {
        {{.kind = CT_UPDATE_SGD, .lr = 0.1f, .h = {0}}, 0},
        {{.kind = CT_UPDATE_SGD, .lr = 0.1f, .decay = 0.001f, .h = {0.9}}, 1},
        {{.kind = CT_UPDATE_SGD, .lr = 0.1f, .h = {0.9}, .flag = {true}}, 1},
        {{.kind = CT_UPDATE_ADAM, .lr = 0.001f, .h = {0.0005, 0.1, 0.001, 1e-7}}, 2},
        {{.kind = CT_UPDATE_ADAM, .lr = 0.001f, .decay = 0.004f,
          .h = {0.0005, 0.1, 0.001, 1e-7}, .flag = {true}}, 3},
        {{.kind = CT_UPDATE_RMSPROP, .lr = 0.01f, .h = {0.9, 0, 1e-7}}, 1},
        {{.kind = CT_UPDATE_RMSPROP, .lr = 0.01f, .h = {0.9, 0.5, 1e-7}, .flag = {true}}, 3},
        {{.kind = CT_UPDATE_ADAGRAD, .lr = 0.01f, .h = {1e-7}}, 1},
        /* nadam's constants at t = 2 with Keras's defaults; adamax's at t = 2 */
        {{.kind = CT_UPDATE_NADAM, .lr = 0.001f, .h = {0.9474, 1.0, 0.002, 0.1, 0.001, 1e-7}}, 2},
        {{.kind = CT_UPDATE_ADAMAX, .lr = 0.001f, .decay = 0.004f,
          .h = {0.1, 0.999, 0.19, 1e-7}}, 2},
        {{.kind = CT_UPDATE_ADADELTA, .lr = 1.0f, .h = {0.95, 0.05, 1e-7}}, 2},
        {{.kind = CT_UPDATE_LION, .lr = 0.001f, .h = {0.9, 0.1, 0.99, 0.01}}, 1},
        /* ftrl with the default power (a square root) and another (pow in double) */
        {{.kind = CT_UPDATE_FTRL, .lr = 0.01f, .h = {0.5, 0.0, 0.0, 0.0}}, 2},
        {{.kind = CT_UPDATE_FTRL, .lr = 0.01f, .h = {0.7, 0.05, 0.2, 0.04}}, 2},
        /* use_ema: the average in the slot after the kind's; a first step (momentum 0),
         * one that overwrites the weights, and a plain one */
        {{.kind = CT_UPDATE_SGD, .lr = 0.1f, .ema = true, .ema_slot = 0}, 1},
        {{.kind = CT_UPDATE_ADAM, .lr = 0.001f, .h = {0.0005, 0.1, 0.001, 1e-7}, .ema = true,
          .ema_overwrite = true, .ema_slot = 2, .ema_momentum = 0.99f}, 3},
        {{.kind = CT_UPDATE_LION, .lr = 0.001f, .h = {0.9, 0.1, 0.99, 0.01}, .ema = true,
          .ema_slot = 1, .ema_momentum = 0.99f}, 2},
    };
    const int64_t n = 40009;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int slots = cases[i].slots;
        pair w = mk(n, 170, -1, 1), st = mk(n * (slots ? slots : 1), 171, 0, slots ? 0.1f : 0.0f);
        for (int step = 0; step < 3; step++) {
            pair g = mk(n, 172 + (unsigned)step, -1, 1);
            CPU->update(&cases[i].u, w.c, g.c, slots ? st.c : NULL, n);
            GPU->update(&cases[i].u, w.g, g.g, slots ? st.g : NULL, n);
            drop(&g);
        }
        char what[64];
        snprintf(what, sizeof what, "update case %zu weights", i);
        expect_close(what, &w, 1e-5, 1e-5);
        snprintf(what, sizeof what, "update case %zu state", i);
        expect_close(what, &st, 1e-5, 1e-5);
        drop(&w);
        drop(&st);
    }
}
END_TEST

/* The merging ops: broadcasting and L2 normalization sum in the CPU's order (same bits),
 * batched GEMM within the GEMM tolerance. */
START_TEST(test_merge_ops)
{
    const int64_t rows = 5, ldx = 7, ldy = 12, cols = 4;
    pair x = mk(rows * ldx, 180, -1, 1), y = mk(rows * ldy, 181, -1, 1);
    CPU->copy_strided(x.c + 2, ldx, y.c + 3, ldy, rows, cols);
    GPU->copy_strided(x.g + 2, ldx, y.g + 3, ldy, rows, cols);
    expect_equal("copy_strided", &y);
    drop(&x);
    drop(&y);
    const int64_t shapes[][2][4] = { /* ndim, dims of the operand; of the output */
        {{2, 3, 1, 0}, {2, 3, 40, 0}}, {{1, 4, 0, 0}, {3, 2, 33, 4}}, {{1, 1, 0, 0}, {2, 7, 9, 0}},
        {{3, 1, 30, 1}, {3, 20, 30, 6}}, {{3, 5, 1, 7}, {3, 5, 11, 7}},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        ct_shape in = ct_shape_make((int)shapes[s][0][0], &shapes[s][0][1]);
        ct_shape out = ct_shape_make((int)shapes[s][1][0], &shapes[s][1][1]);
        ct_bcast g;
        ck_assert_int_eq(ct_bcast_make(&in, &out, &g), 0);
        pair a = mk(rows * g.in_size, 182, -1, 1), b = mk(rows * g.out_size, 183, -1, 1);
        pair da = mk(rows * g.in_size, 184, -1, 1);
        CPU->expand(&g, a.c, b.c, rows);
        GPU->expand(&g, a.g, b.g, rows);
        expect_equal("expand", &b);
        CPU->expand_backward(&g, b.c, da.c, rows);
        GPU->expand_backward(&g, b.g, da.g, rows);
        expect_equal("expand_backward", &da);
        drop(&a);
        drop(&b);
        drop(&da);
    }
    const int64_t n = 3001;
    pair ins[3] = {mk(n, 185, -1, 1), mk(n, 186, -1, 1), mk(n, 187, -1, 1)};
    CPU->copy(ins[1].c, ins[0].c, 100); /* ties */
    GPU->copy(ins[1].g, ins[0].g, 100);
    for (int minimum = 0; minimum < 2; minimum++) {
        pair e = mk(n, 0, 0, 0), arg = mk(n, 0, 0, 0), dy = mk(n, 188, -1, 1), dx = mk(n, 0, 0, 0);
        for (int k = 0; k < 3; k++) {
            CPU->extremum(minimum, ins[k].c, e.c, arg.c, (float)k, n);
            GPU->extremum(minimum, ins[k].g, e.g, arg.g, (float)k, n);
        }
        expect_equal("extremum", &e);
        expect_equal("extremum arg", &arg);
        CPU->take_where(arg.c, 1.0f, dy.c, dx.c, n);
        GPU->take_where(arg.g, 1.0f, dy.g, dx.g, n);
        expect_equal("take_where", &dx);
        pair *all[] = {&e, &arg, &dy, &dx};
        for (size_t j = 0; j < 4; j++)
            drop(all[j]);
    }
    for (int k = 0; k < 3; k++)
        drop(&ins[k]);
    const int64_t sizes[][3] = {{9, 13, 17}, {1, 1, 50}, {20, 1, 8}};
    for (size_t s = 0; s < 3; s++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            int64_t m = sizes[s][0], nn = sizes[s][1], k = sizes[s][2], batch = 6;
            int64_t lda = ta ? m : k, ldb = tb ? k : nn, sa = m * k + 3, sb = k * nn + 1;
            pair a = mk(batch * sa, 189, -1, 1), b = mk(batch * sb, 190, -1, 1);
            pair c = mk(batch * m * nn, 191, -1, 1);
            CPU->gemm_batched(ta, tb, m, nn, k, 0.9f, a.c, lda, sa, b.c, ldb, sb, 0.5f, c.c, nn,
                              m * nn, batch);
            GPU->gemm_batched(ta, tb, m, nn, k, 0.9f, a.g, lda, sa, b.g, ldb, sb, 0.5f, c.g, nn,
                              m * nn, batch);
            expect_close("gemm_batched", &c, SUM, 1);
            drop(&a);
            drop(&b);
            drop(&c);
        }
    const int64_t outer = 7, len = 33, inner = 5, tot = outer * len * inner;
    pair lx = mk(tot, 192, -1, 1), ly = mk(tot, 0, 0, 0), inv = mk(outer * inner, 0, 0, 0);
    pair ldy2 = mk(tot, 193, -1, 1), ldx2 = mk(tot, 0, 0, 0);
    CPU->scale(len * inner, 1e-8f, lx.c); /* the first block sums below eps */
    GPU->scale(len * inner, 1e-8f, lx.g);
    CPU->l2_normalize(lx.c, ly.c, inv.c, outer, len, inner, 1e-12f);
    GPU->l2_normalize(lx.g, ly.g, inv.g, outer, len, inner, 1e-12f);
    expect_equal("l2_normalize", &ly);
    expect_equal("l2_normalize factors", &inv);
    CPU->l2_normalize_backward(lx.c, ly.c, inv.c, ldy2.c, ldx2.c, outer, len, inner, 1e-12f);
    GPU->l2_normalize_backward(lx.g, ly.g, inv.g, ldy2.g, ldx2.g, outer, len, inner, 1e-12f);
    expect_equal("l2_normalize_backward", &ldx2);
    pair *all[] = {&lx, &ly, &inv, &ldy2, &ldx2};
    for (size_t j = 0; j < 5; j++)
        drop(all[j]);
}
END_TEST

/* Gather and scatter-add with repeated ids, the table's edges and ids outside it (which
 * read zeros and add nothing); the scatter on both of the GPU's paths (more ids than table
 * rows, and fewer), onto a gradient that already holds values. Bits must match. */
START_TEST(test_embedding_ops)
{
    const int64_t nrows = 37, dim = 13, counts[2] = {500, 20};
    for (int k = 0; k < 2; k++) {
        int64_t n = counts[k];
        pair table = mk(nrows * dim, 194, -1, 1), ids = mk(n, 195 + (unsigned)k, 0, 1);
        for (int64_t i = 0; i < n; i++)
            ids.c[i] = floorf(ids.c[i] * (float)(nrows + 3)) - 1.0f; /* -1 .. nrows + 1 */
        ids.c[0] = 0.0f, ids.c[1] = (float)(nrows - 1), ids.c[2] = 2.5f, ids.c[3] = NAN;
        ids.c[4] = (float)nrows, ids.c[5] = 0.0f, ids.c[6] = -1.0f;
        GPU->upload(ids.g, ids.c, (size_t)n * sizeof(float));
        pair y = mk(n * dim, 0, 0, 0), dy = mk(n * dim, 196, -1, 1);
        pair grad = mk(nrows * dim, 197, -1, 1);
        CPU->gather_rows(table.c, nrows, dim, ids.c, n, y.c);
        GPU->gather_rows(table.g, nrows, dim, ids.g, n, y.g);
        expect_equal("gather_rows", &y);
        CPU->scatter_add_rows(dy.c, ids.c, n, dim, grad.c, nrows);
        GPU->scatter_add_rows(dy.g, ids.g, n, dim, grad.g, nrows);
        expect_equal(k ? "scatter_add_rows (by id)" : "scatter_add_rows (by row)", &grad);
        pair *all[] = {&table, &ids, &y, &dy, &grad};
        for (size_t j = 0; j < 5; j++)
            drop(all[j]);
    }
}
END_TEST

/* The masks' ops: step_mask over token ids (feat 1, value 0: id 0, and -0, are padding)
 * and over steps of features (a step is padding only where every feature equals the
 * value; NaN never does); mask_weights with rows of padding only (zeros). Bits must match
 * for the mask, the weights to an element-wise tolerance. */
/* The LSTM cell (row-major gates) forward and backward, with Keras's activations and with
 * others, and the transpose. */
static void check_lstm_cell(ct_act act, ct_act rec_act, const char *what)
{
    const int64_t rows = 37, u = 29, nu = rows * u;
    pair a = mk(4 * nu, 211, -4, 4), y = mk(4 * nu, 0, 0, 0), c0 = mk(nu, 212, -2, 2);
    pair c1 = mk(nu, 0, 0, 0), tc = mk(nu, 0, 0, 0), h = mk(nu, 0, 0, 0);
    CPU->lstm_step(act, rec_act, a.c, y.c, c0.c, c1.c, tc.c, h.c, rows, u);
    GPU->lstm_step(act, rec_act, a.g, y.g, c0.g, c1.g, tc.g, h.g, rows, u);
    char name[96];
    snprintf(name, sizeof name, "lstm_step %s: gates", what);
    expect_close(name, &y, ELEM, 0);
    snprintf(name, sizeof name, "lstm_step %s: h", what);
    expect_close(name, &h, ELEM, 1e-6);
    pair dh = mk(nu, 213, -1, 1), dc = mk(nu, 214, -1, 1), da = mk(4 * nu, 0, 0, 0);
    CPU->lstm_step_backward(act, rec_act, a.c, y.c, c0.c, c1.c, tc.c, dh.c, dc.c, da.c, rows, u);
    GPU->lstm_step_backward(act, rec_act, a.g, y.g, c0.g, c1.g, tc.g, dh.g,
                            dc.g, da.g, rows, u);
    snprintf(name, sizeof name, "lstm_step_backward %s: da", what);
    expect_close(name, &da, 1e-5, 1e-6);
    snprintf(name, sizeof name, "lstm_step_backward %s: dc", what);
    expect_close(name, &dc, 1e-5, 1e-6);
    /* with the product first: units a multiple of 16 and not */
    for (int64_t uu = 29; uu <= 32; uu += 3) {
        const int64_t k = 45, gu = 4 * uu, nuu = rows * uu;
        pair z = mk(rows * k, 215, -1, 1), w = mk(k * gu, 216, -0.5f, 0.5f);
        pair p = mk(CT_GEMM_PACKED_FLOATS(k, gu), 0, 0, 0), pa = mk(4 * nuu, 0, 0, 0);
        pair py = mk(4 * nuu, 0, 0, 0), pc0 = mk(nuu, 217, -2, 2), pc1 = mk(nuu, 0, 0, 0);
        pair ptc = mk(nuu, 0, 0, 0), ph = mk(nuu, 0, 0, 0);
        CPU->gemm_pack_b(false, k, gu, w.c, gu, p.c);
        GPU->gemm_pack_b(false, k, gu, w.g, gu, p.g);
        CPU->lstm_step_packed(act, rec_act, z.c, k, k, p.c, pa.c, py.c, pc0.c, pc1.c, ptc.c, ph.c,
                              rows, uu);
        GPU->lstm_step_packed(act, rec_act, z.g, k, k, p.g, pa.g, py.g, pc0.g, pc1.g, ptc.g, ph.g,
                              rows, uu);
        snprintf(name, sizeof name, "lstm_step_packed %s units %d: h", what, (int)uu);
        expect_close(name, &ph, 1e-5, 1e-6);
        /* the backward from the CPU's forward values, with dh = r U^T + d first */
        pair ut = mk(CT_GEMM_PACKED_FLOATS(gu, uu), 0, 0, 0), r = mk(rows * gu, 218, -1, 1);
        pair dd = mk(nuu, 219, -1, 1), pdh = mk(nuu, 0, 0, 0), pdc = mk(nuu, 220, -1, 1);
        pair pda = mk(4 * nuu, 0, 0, 0);
        pair *fwd[] = {&pa, &py, &pc1, &ptc};
        for (size_t j = 0; j < 4; j++)
            GPU->upload(fwd[j]->g, fwd[j]->c, (size_t)fwd[j]->n * sizeof(float));
        CPU->gemm_pack_b(true, gu, uu, w.c, gu, ut.c);
        GPU->gemm_pack_b(true, gu, uu, w.g, gu, ut.g);
        CPU->lstm_step_backward_packed(act, rec_act, r.c, gu, gu, ut.c, dd.c, uu, pa.c, py.c,
                                       pc0.c, pc1.c, ptc.c, pdh.c, pdc.c, pda.c, rows, uu);
        GPU->lstm_step_backward_packed(act, rec_act, r.g, gu, gu, ut.g, dd.g, uu, pa.g, py.g,
                                       pc0.g, pc1.g, ptc.g, pdh.g, pdc.g, pda.g, rows, uu);
        snprintf(name, sizeof name, "lstm_step_backward_packed %s units %d: da", what, (int)uu);
        expect_close(name, &pda, 1e-4, 1e-5);
        snprintf(name, sizeof name, "lstm_step_backward_packed %s units %d: dc", what, (int)uu);
        expect_close(name, &pdc, 1e-4, 1e-5);
        pair *more[] = {&z, &w, &p, &pa, &py, &pc0, &pc1, &ptc, &ph, &ut, &r, &dd, &pdh, &pdc, &pda};
        for (size_t j = 0; j < sizeof more / sizeof more[0]; j++)
            drop(more[j]);
    }
    pair *all[] = {&a, &y, &c0, &c1, &tc, &h, &dh, &dc, &da};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
        drop(all[j]);
}

/* Attention's softmax, causal (tq == tv) and not (tq != tv), forward and backward; the
 * entries past a causal row's diagonal hold scores that must not be read (huge ones here)
 * and come back as zeros. */
START_TEST(test_attention_softmax)
{
    const int64_t blocks = 7, shapes[2][2] = {{37, 37}, {13, 41}};
    for (int k = 0; k < 2; k++) {
        int64_t tq = shapes[k][0], tv = shapes[k][1], n = blocks * tq * tv;
        bool causal = k == 0;
        pair s = mk(n, 216 + (unsigned)k, -6, 6), d = mk(n, 218 + (unsigned)k, -1, 1);
        if (causal) {
            for (int64_t r = 0; r < blocks * tq; r++)
                for (int64_t j = r % tq + 1; j < tv; j++)
                    s.c[r * tv + j] = 1e30f;
            GPU->upload(s.g, s.c, (size_t)n * sizeof(float));
        }
        CPU->attention_softmax(s.c, blocks, tq, tv, causal);
        GPU->attention_softmax(s.g, blocks, tq, tv, causal);
        expect_close(causal ? "attention_softmax causal" : "attention_softmax", &s, 1e-5, 1e-6);
        GPU->upload(s.g, s.c, (size_t)n * sizeof(float)); /* the backward from the same p */
        CPU->attention_softmax_backward(s.c, d.c, blocks, tq, tv, causal);
        GPU->attention_softmax_backward(s.g, d.g, blocks, tq, tv, causal);
        expect_close(causal ? "attention_softmax_backward causal" : "attention_softmax_backward",
                     &d, 1e-5, 1e-6);
        drop(&s);
        drop(&d);
    }
}
END_TEST

/* gemm_batched_causal: the lower triangle of A B^T, and products with a lower triangular
 * A, plain and transposed; 37 positions and width 19 leave partial tiles on the CPU. */
START_TEST(test_gemm_batched_causal)
{
    const int64_t T = 37, d = 19, batch = 3;
    pair sq = mk(batch * T * T, 231, -1, 1), x = mk(batch * T * d, 232, -1, 1);
    pair y = mk(batch * T * d, 233, -1, 1);
    for (int64_t i = 0; i < batch * T; i++)
        for (int64_t j = i % T + 1; j < T; j++)
            sq.c[i * T + j] = 0.0f;
    GPU->upload(sq.g, sq.c, (size_t)sq.n * sizeof(float));
    pair s = mk(batch * T * T, 0, 0, 0);
    CPU->gemm_batched_causal(false, true, T, T, d, 0.5f, x.c, d, T * d, y.c, d, T * d, s.c, T,
                             T * T, batch);
    GPU->gemm_batched_causal(false, true, T, T, d, 0.5f, x.g, d, T * d, y.g, d, T * d, s.g, T,
                             T * T, batch);
    float *h = malloc((size_t)s.n * sizeof *h);
    GPU->download(h, s.g, (size_t)s.n * sizeof *h);
    for (int64_t i = 0; i < batch * T; i++) /* only the lower triangle is specified */
        for (int64_t j = 0; j <= i % T; j++)
            ck_assert_msg(fabsf(h[i * T + j] - s.c[i * T + j]) <= 1e-5f,
                          "gemm_batched_causal scores [%lld][%lld]: gpu %.9g, cpu %.9g",
                          (long long)i, (long long)j, h[i * T + j], s.c[i * T + j]);
    free(h);
    for (int ta = 0; ta < 2; ta++) {
        pair c = mk(batch * T * d, 0, 0, 0);
        CPU->gemm_batched_causal(ta, false, T, d, T, 0.5f, sq.c, T, T * T, x.c, d, T * d, c.c, d,
                                 T * d, batch);
        GPU->gemm_batched_causal(ta, false, T, d, T, 0.5f, sq.g, T, T * T, x.g, d, T * d, c.g, d,
                                 T * d, batch);
        expect_close(ta ? "gemm_batched_causal A^T B" : "gemm_batched_causal A B", &c, 1e-4, 1);
        drop(&c);
    }
    drop(&sq), drop(&x), drop(&y), drop(&s);
}
END_TEST

START_TEST(test_rnn_ops)
{
    check_lstm_cell((ct_act){CT_ACT_TANH, 0}, (ct_act){CT_ACT_SIGMOID, 0}, "tanh/sigmoid");
    check_lstm_cell((ct_act){CT_ACT_SOFTSIGN, 0}, (ct_act){CT_ACT_HARD_SIGMOID, 0},
                    "softsign/hard_sigmoid");
    const int64_t r = 45, c = 70;
    pair x = mk(r * c, 215, -1, 1), t = mk(r * c, 0, 0, 0);
    CPU->transpose(x.c, r, c, t.c);
    GPU->transpose(x.g, r, c, t.g);
    expect_equal("transpose", &t);
    ck_assert(t.c[5 * r + 3] == x.c[3 * c + 5]);
    drop(&x);
    drop(&t);
}
END_TEST

START_TEST(test_mask_ops)
{
    const int64_t n = 1000, feat = 5;
    pair ids = mk(n, 198, 0, 4), mask = mk(n, 0, 0, 0);
    for (int64_t i = 0; i < n; i++)
        ids.c[i] = floorf(ids.c[i]);
    ids.c[0] = -0.0f, ids.c[1] = NAN, ids.c[2] = 1e-30f;
    GPU->upload(ids.g, ids.c, (size_t)n * sizeof(float));
    CPU->step_mask(ids.c, n, 1, 0.0f, mask.c);
    GPU->step_mask(ids.g, n, 1, 0.0f, mask.g);
    expect_equal("step_mask (ids)", &mask);
    ck_assert(mask.c[0] == 0.0f && mask.c[1] == 1.0f && mask.c[2] == 1.0f);
    pair x = mk(n * feat, 199, -1, 1);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < feat && i % 3; j++) /* a step of 0.5s, or all but one */
            x.c[i * feat + j] = i % 3 == 1 || j != (i / 3) % feat ? 0.5f : x.c[i * feat + j];
    x.c[4 * feat + 2] = NAN;
    GPU->upload(x.g, x.c, (size_t)(n * feat) * sizeof(float));
    CPU->step_mask(x.c, n, feat, 0.5f, mask.c);
    GPU->step_mask(x.g, n, feat, 0.5f, mask.g);
    expect_equal("step_mask (features)", &mask);
    ck_assert(mask.c[0] == 1.0f && mask.c[1] == 0.0f && mask.c[2] == 1.0f && mask.c[4] == 1.0f);
    const int64_t rows = 40, steps = 25;
    pair m = mk(rows * steps, 0, 0, 0), w = mk(rows * steps, 0, 0, 0);
    memcpy(m.c, mask.c, (size_t)(rows * steps) * sizeof(float));
    memset(m.c + 3 * steps, 0, (size_t)steps * sizeof(float)); /* padding only */
    GPU->upload(m.g, m.c, (size_t)(rows * steps) * sizeof(float));
    CPU->mask_weights(m.c, rows, steps, w.c);
    GPU->mask_weights(m.g, rows, steps, w.g);
    expect_close("mask_weights", &w, ELEM, 0);
    float row[25];
    GPU->download(row, w.g + 3 * steps, sizeof row);
    for (int64_t t = 0; t < steps; t++)
        ck_assert_msg(row[t] == 0.0f && w.c[3 * steps + t] == 0.0f, "a row of padding weighs "
                      "%g on the gpu, %g on the cpu", row[t], w.c[3 * steps + t]);
    pair *all[] = {&ids, &mask, &x, &m, &w};
    for (size_t j = 0; j < 5; j++)
        drop(all[j]);
}
END_TEST

/* ---- layers and whole experiments ---------------------------------------------------- */

/* The same experiment on both backends (the CUDA one with backend.device=cuda). */
static void load_both(const char *path, const char *const *extra, int nextra, ct_experiment **c,
                      ct_experiment **g)
{
    const char *over[16] = {0};
    ct_error err = {0};
    for (int i = 0; i < nextra; i++)
        over[i] = extra[i];
    *c = ct_experiment_load(path, over, nextra, &err);
    ck_assert_msg(*c != NULL, "%s on the CPU: %s", path, err.msg);
    /* In self-test mode the "GPU" experiment is a second CPU one. */
    bool self = GPU == CPU;
    over[nextra] = self ? "backend.device=cpu" : "backend.device=cuda";
    *g = ct_experiment_load(path, over, nextra + 1, &err);
    ck_assert_msg(*g != NULL, "%s on the GPU: %s", path, err.msg);
    ck_assert_ptr_eq((*g)->model->be, GPU);
}

static void expect_model_close(const char *what, const ct_model *mc, const ct_model *mg,
                               const float *c, const float *g, int64_t n, double rtol)
{
    (void)mc;
    float *h = malloc((size_t)(n ? n : 1) * sizeof *h);
    mg->be->download(h, g, (size_t)n * sizeof *h);
    expect_close_host(what, h, c, n, rtol, rtol);
    free(h);
}

/* One training step on both: same batch, same labels; returns the two mean losses. */
static void train_step(ct_experiment *ex, const float *x, const float *y, int64_t rows,
                       int64_t ycols, int64_t step, double *loss)
{
    ct_model *m = ex->model;
    const ct_backend *be = m->be;
    const ct_shape *out = ct_model_output_shape(m);
    int64_t cols = out->dim[out->ndim - 1], positions = ct_shape_size(out) / cols;
    float *yd = be->alloc((size_t)(rows * ycols) * sizeof(float));
    be->upload(m->inputs[0].data, x, (size_t)(rows * ct_shape_size(&m->input_shape)) * sizeof(float));
    be->upload(yd, y, (size_t)(rows * ycols) * sizeof(float));
    double zero[2] = {0, 0};
    be->upload(ex->acc, zero, sizeof zero);
    ct_pass pass = {.training = true, .seed = ex->seed, .step = step};
    const ct_tensor *pred = ct_model_forward(m, &pass, rows);
    ct_loss_op op = ct_loss_op_of(&ex->loss[0]);
    be->loss(&op, pred->data, yd, ct_model_output_grad(m, 0), rows * positions, cols,
             1.0f / (float)(rows * positions), &ex->acc[0]);
    ct_model_backward(m, &pass, (double)rows, &ex->acc[1]);
    ct_optimizer_apply(ex->optimizer, m->params, m->nparams, m->values, m->grads);
    double sums[2];
    be->download(sums, ex->acc, sizeof sums);
    *loss = sums[0] / (double)(rows * positions) + sums[1] / (double)rows;
    be->free(yd);
    ct_error err = {0};
    ck_assert_msg(be->check(&err) == 0, "step %lld: %s", (long long)step, err.msg);
}

/* Forward and backward of every layer kind, layer by layer, then a few steps. */
static const char *const ZOO[] = {
    /* dense, activations, dropout, normalization */
    "model:\n  input_shape: [12]\n  layers:\n"
    "    - {type: dense, units: 16, activation: gelu, kernel_regularizer: {type: l2, l2: 0.01}}\n"
    "    - {type: layer_normalization}\n    - {type: dropout, rate: 0.3}\n"
    "    - {type: dense, units: 16, activation: elu}\n    - {type: batch_normalization}\n"
    "    - {type: leaky_relu}\n    - {type: gaussian_noise, stddev: 0.1}\n"
    "    - {type: dense, units: 8, activation: selu}\n    - {type: activation, activation: silu}\n"
    "    - {type: dense, units: 4, activation: softmax}\n"
    "compile: {optimizer: {type: sgd, momentum: 0.9, nesterov: true, clipnorm: 1.0}, "
    "loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* convolutions and pooling in 2-D */
    "model:\n  input_shape: [12, 12, 3]\n  layers:\n"
    "    - {type: conv2d, filters: 8, kernel_size: 3, padding: same, activation: relu}\n"
    "    - {type: max_pooling2d}\n    - {type: zero_padding2d, padding: 1}\n"
    "    - {type: depthwise_conv2d, kernel_size: 3, depth_multiplier: 2}\n"
    "    - {type: separable_conv2d, filters: 6, kernel_size: 3, padding: same}\n"
    "    - {type: group_normalization, groups: 2}\n    - {type: spatial_dropout2d, rate: 0.2}\n"
    "    - {type: conv2d_transpose, filters: 4, kernel_size: 3, strides: 2}\n"
    "    - {type: cropping2d, cropping: 1}\n    - {type: up_sampling2d}\n"
    "    - {type: average_pooling2d, pool_size: 3, strides: 2}\n"
    "    - {type: conv2d, filters: 5, kernel_size: 2, dilation_rate: 2, groups: 1}\n"
    "    - {type: global_max_pooling2d}\n    - {type: softmax}\n"
    "compile: {optimizer: {type: rmsprop, centered: true, momentum: 0.5}, "
    "loss: categorical_crossentropy, metrics: [accuracy, top_k_categorical_accuracy]}\n",
    /* 1-D layers and reshaping */
    "model:\n  input_shape: [16, 4]\n  layers:\n"
    "    - {type: conv1d, filters: 6, kernel_size: 3, activation: tanh}\n"
    "    - {type: max_pooling1d}\n    - {type: zero_padding1d, padding: 2}\n"
    "    - {type: up_sampling1d, size: 2}\n    - {type: cropping1d, cropping: [1, 2]}\n"
    "    - {type: spatial_dropout1d, rate: 0.2}\n    - {type: average_pooling1d}\n"
    "    - {type: global_average_pooling1d}\n    - {type: reshape, target_shape: [2, 3]}\n"
    "    - {type: flatten}\n    - {type: dense, units: 3, activation: sigmoid}\n"
    "compile: {optimizer: {type: adam, amsgrad: true, weight_decay: 0.01}, "
    "loss: binary_crossentropy, metrics: [binary_accuracy, mae]}\n",
    /* regression losses and the rest of the optimizers */
    "model:\n  input_shape: [5, 6]\n  layers:\n"
    "    - {type: dense, units: 8, activation: relu6}\n    - {type: relu}\n"
    "    - {type: elu}\n    - {type: global_average_pooling1d}\n"
    "compile: {optimizer: {type: adagrad, clipvalue: 0.5}, loss: huber, metrics: [mse, rmse]}\n",
    /* unit normalization, the SELU and Gaussian dropouts, an activity penalty */
    "model:\n  input_shape: [5, 6]\n  layers:\n"
    "    - {type: dense, units: 8, activation: selu}\n    - {type: alpha_dropout, rate: 0.2}\n"
    "    - {type: unit_normalization, axis: 1}\n    - {type: gaussian_dropout, rate: 0.3}\n"
    "    - {type: activity_regularization, l1: 0.01, l2: 0.02}\n    - {type: flatten}\n"
    "    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* the 1-D transposed, depthwise and separable convolutions */
    "model:\n  input_shape: [8, 3]\n  layers:\n"
    "    - {type: conv1d_transpose, filters: 4, kernel_size: 3, strides: 2, activation: relu}\n"
    "    - {type: depthwise_conv1d, kernel_size: 3, depth_multiplier: 2, padding: same}\n"
    "    - {type: separable_conv1d, filters: 4, kernel_size: 3, strides: 2, activation: tanh}\n"
    "    - {type: global_average_pooling1d}\n    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* a 3-D convolution and the 3-D pools: windowed, then global side by side */
    "model:\n  input_shape: [5, 4, 6, 2]\n  layers:\n"
    "    - {name: h, type: conv3d, filters: 4, kernel_size: [2, 3, 2], padding: same, "
    "activation: elu}\n"
    "    - {name: mp, type: max_pooling3d, pool_size: [2, 2, 3], padding: same}\n"
    "    - {name: d, type: average_pooling3d, pool_size: 2, strides: 1}\n"
    "    - {name: ga, type: global_average_pooling3d, inputs: d}\n"
    "    - {name: gm, type: global_max_pooling3d, keepdims: true, inputs: d}\n"
    "    - {name: f, type: flatten, inputs: gm}\n"
    "    - {name: cat, type: concatenate, inputs: [ga, f]}\n"
    "    - {name: out, type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* a graph: fan-out, a shared layer, every merge (one broadcasting), a view */
    "model:\n  input_shape: [6, 4]\n  layers:\n"
    "    - {name: a, type: dense, units: 4, activation: tanh}\n"
    "    - {name: b, type: dense, units: 4, activation: relu, inputs: input_layer}\n"
    "    - {name: s, type: shared, layer: a, inputs: b}\n"
    "    - {name: sum, type: add, inputs: [a, b, s]}\n"
    "    - {name: diff, type: subtract, inputs: [a, b]}\n"
    "    - {name: prod, type: multiply, inputs: [sum, diff]}\n"
    "    - {name: avg, type: average, inputs: [prod, a]}\n"
    "    - {name: hi, type: maximum, inputs: [avg, b]}\n"
    "    - {name: lo, type: minimum, inputs: [hi, s]}\n"
    "    - {name: gate, type: dense, units: 1, activation: sigmoid, inputs: b}\n"
    "    - {name: gated, type: multiply, inputs: [lo, gate]}\n"
    "    - {name: cat, type: concatenate, inputs: [gated, sum]}\n"
    "    - {name: sim, type: dot, axes: 2, normalize: true, inputs: [cat, cat]}\n"
    "    - {name: flat, type: flatten}\n"
    "    - {name: out, type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* the remaining global poolings */
    "model:\n  input_shape: [6, 6, 3]\n  layers:\n"
    "    - {type: conv2d, filters: 4, kernel_size: 3, activation: selu}\n"
    "    - {type: global_average_pooling2d}\n    - {type: reshape, target_shape: [2, 2]}\n"
    "    - {type: global_max_pooling1d}\n    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: sgd, loss: categorical_crossentropy, metrics: [accuracy]}\n",
    /* token ids in, one class per position out (a loss over a time axis) */
    "model:\n  input_shape: [7]\n  layers:\n"
    "    - {type: embedding, input_dim: 11, output_dim: 6}\n"
    "    - {type: position_embedding, sequence_length: 9}\n"
    "    - {name: tap, type: token_and_position_embedding, vocabulary_size: 11, "
    "sequence_length: 7, embedding_dim: 6, inputs: input_layer}\n"
    "    - {type: add, inputs: [position_embedding, tap]}\n"
    "    - {type: dense, units: 5, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* recurrent layers: through time both ways, with both dropouts and both GRU biases */
    "model:\n  input_shape: [7, 4]\n  layers:\n"
    "    - {type: lstm, units: 6, return_sequences: true, dropout: 0.2, "
    "recurrent_dropout: 0.2}\n"
    "    - {type: gru, units: 5, return_sequences: true, go_backwards: true}\n"
    "    - {type: gru, units: 5, return_sequences: true, reset_after: false, "
    "recurrent_dropout: 0.3}\n"
    "    - {type: simple_rnn, units: 4, go_backwards: true, dropout: 0.1}\n"
    "    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: categorical_crossentropy, metrics: [accuracy]}\n",
    /* wrappers: a bidirectional lstm (concat, backward reversed in time) and a gru (mul),
     * then a time-distributed convolution and a time-distributed softmax dense */
    "model:\n  input_shape: [6, 4]\n  layers:\n"
    "    - {type: bidirectional, layer: {type: lstm, units: 5, return_sequences: true, "
    "dropout: 0.2}}\n"
    "    - {type: bidirectional, merge_mode: mul, layer: {type: gru, units: 4, "
    "return_sequences: true, go_backwards: true}}\n"
    "    - {type: reshape, target_shape: [6, 4, 1]}\n"
    "    - {type: time_distributed, layer: {type: conv1d, filters: 3, kernel_size: 2, "
    "activation: relu}}\n"
    "    - {type: reshape, target_shape: [6, 9]}\n"
    "    - {type: time_distributed, layer: {type: dense, units: 3, activation: softmax}}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* attention: causal self-attention with dropout, then cross-attention with a key */
    "model:\n  input_shape: [5, 6]\n  layers:\n"
    "    - {name: ln, type: layer_normalization}\n"
    "    - {name: self, type: multi_head_attention, num_heads: 2, key_dim: 3, dropout: 0.2,"
    " use_causal_mask: true, inputs: [ln, ln]}\n"
    "    - {name: res, type: add, inputs: [self, input_layer]}\n"
    "    - {name: k, type: dense, units: 4, inputs: ln}\n"
    "    - {name: cross, type: multi_head_attention, num_heads: 1, key_dim: 4, value_dim: 2,"
    " output_shape: 3, inputs: [res, ln, k]}\n"
    "    - {type: global_average_pooling1d}\n    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* masks from token ids (0 is padding): the union of two, an LSTM and a GRU
     * carrying their state over padding, attention honouring them, a masked output */
    "model:\n  input_shape: [7]\n  layers:\n"
    "    - {name: e, type: embedding, input_dim: 11, output_dim: 6, mask_zero: true}\n"
    "    - {name: tap, type: token_and_position_embedding, vocabulary_size: 11, "
    "sequence_length: 7, embedding_dim: 6, mask_zero: true, inputs: input_layer}\n"
    "    - {name: both, type: add, inputs: [e, tap]}\n"
    "    - {name: lstm, type: lstm, units: 5, return_sequences: true}\n"
    "    - {name: att, type: multi_head_attention, num_heads: 2, key_dim: 3, "
    "inputs: [lstm, lstm]}\n"
    "    - {name: gru, type: gru, units: 4, return_sequences: true, go_backwards: true}\n"
    "    - {name: out, type: dense, units: 4, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* Masking (steps of zeros, a row of them only), a bidirectional LSTM zeroing its
     * sequences there, a simple RNN, a masked mean over time */
    "model:\n  input_shape: [6, 4]\n  layers:\n"
    "    - {type: masking}\n"
    "    - {type: bidirectional, layer: {type: lstm, units: 3, return_sequences: true}}\n"
    "    - {type: simple_rnn, units: 4, return_sequences: true}\n"
    "    - {type: time_distributed, layer: {type: dense, units: 3, activation: tanh}}\n"
    "    - {type: global_average_pooling1d}\n    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* states: an encoder's (return_state) starting a decoder (initial_state), a
     * bidirectional GRU's states, one of them a GRU's initial state */
    "model:\n  input_shape: [6, 4]\n  layers:\n"
    "    - {name: enc, type: lstm, units: 3, return_state: true}\n"
    "    - {name: benc, type: bidirectional, layer: {type: gru, units: 3, return_state: true},"
    " inputs: input_layer}\n"
    "    - {name: dec, type: lstm, units: 3, return_sequences: true,"
    " inputs: [input_layer, enc:1, enc:2]}\n"
    "    - {name: g, type: gru, units: 3, inputs: [dec, benc:1]}\n"
    "    - {name: cat, type: concatenate, inputs: [g, benc:2]}\n"
    "    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
    /* preprocessing and augmentation, behind a convolution so their backward runs */
    "model:\n  input_shape: [10, 10, 2]\n  layers:\n"
    "    - {type: rescaling, scale: 0.5, offset: 0.1}\n"
    "    - {type: normalization}\n    - {type: normalization, mean: 0.5, variance: 2}\n"
    "    - {type: conv2d, filters: 3, kernel_size: 3, padding: same}\n"
    "    - {type: random_flip}\n"
    "    - {type: random_translation, height_factor: 0.2, width_factor: 0.2}\n"
    "    - {type: random_zoom, height_factor: 0.2, fill_mode: constant}\n"
    "    - {type: random_rotation, factor: 0.1, fill_mode: wrap}\n"
    "    - {type: random_contrast, factor: 0.3, value_range: [-5, 5]}\n"
    "    - {type: random_crop, height: 8, width: 8}\n"
    "    - {type: flatten}\n    - {type: dense, units: 4, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n",
};

/* Every kind in layers/kinds.def must appear in one of ZOO's models, so that a new kind
 * cannot go without a GPU check. Runs before the GPU is looked for: a missing kind fails
 * even where the rest of the suite is skipped. Returns the number of kinds missing. */
static int zoo_missing_kinds(void)
{
    static const char *const listed[] = {
#define CT_LAYER(name) #name,
#include "../layers/kinds.def"
#undef CT_LAYER
    };
    enum { NLISTED = sizeof listed / sizeof listed[0] };
    bool used[NLISTED] = {0};
    for (size_t z = 0; z < sizeof ZOO / sizeof ZOO[0]; z++) {
        ct_error err = {0};
        ct_node *root = ct_config_parse(ZOO[z], strlen(ZOO[z]), "zoo", &err);
        if (!root) {
            printf("ZOO[%zu] does not parse: %s\n", z, err.msg);
            return 1;
        }
        const ct_node *layers = ct_map_get(ct_map_get(root, "model"), "layers");
        for (size_t i = 0; layers && i < layers->len; i++) {
            /* By kind, so a class name or an alias counts for its kind. */
            const ct_node *type = ct_map_get(layers->items[i], "type");
            const ct_layer_kind *k = type ? ct_layer_kind_find(type->scalar) : NULL;
            for (int j = 0; k && j < NLISTED; j++)
                used[j] |= !strcmp(k->name, listed[j]);
        }
        ct_node_free(root);
    }
    int missing = 0;
    for (int j = 0; j < NLISTED; j++)
        if (!used[j]) {
            printf("layer kind '%s' is in none of test_cuda.c's models (ZOO)\n", listed[j]);
            missing++;
        }
    return missing;
}

/* Labels for a model's loss, rows of ycols floats (sparse: one class per position). */
static void make_labels(const ct_experiment *ex, float *y, int64_t rows, int64_t ycols,
                        unsigned seed)
{
    const ct_shape *out = ct_model_output_shape(ex->model);
    int64_t classes = out->dim[out->ndim - 1];
    tu_fill(y, rows * ycols, seed, 0, 1);
    if (ex->loss[0].kind->sparse_labels)
        for (int64_t r = 0; r < rows * ycols; r++)
            y[r] = (float)(r % classes);
    else if (ct_loss_op_of(&ex->loss[0]).id == CT_LOSS_CCE)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < ycols; k++)
                y[r * ycols + k] = (float)(k == r % ycols);
    else if (ct_loss_op_of(&ex->loss[0]).id == CT_LOSS_BCE)
        for (int64_t i = 0; i < rows * ycols; i++)
            y[i] = y[i] > 0.5f;
}

/* A model whose input is read by an embedding gets token ids: the table's edges, an id
 * outside it (a row of zeros on both) and repeats. */
static void token_ids(const ct_model *m, float *x, int64_t n)
{
    int64_t ids = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind->token_ids)
            ids = m->layers[i].kind->token_ids(&m->layers[i]);
    if (!ids)
        return;
    for (int64_t i = 0; i < n; i++)
        x[i] = floorf((x[i] + 1.0f) * 0.5f * (float)ids);
    x[0] = 0.0f, x[1] = (float)(ids - 1), x[2] = (float)ids, x[3] = x[1];
}

/* A model starting with Masking (mask_value 0) gets padding: whole steps of zeros, every
 * step of row 2. */
static void padding_steps(const ct_model *m, float *x, int64_t rows)
{
    if (strcmp(m->layers[0].kind->name, "masking") != 0)
        return;
    int64_t steps = m->input_shape.dim[0], feat = m->input_shape.dim[1];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < steps; t++)
            if (r == 2 || (r + t) % 4 == 1)
                memset(x + (r * steps + t) * feat, 0, (size_t)feat * sizeof *x);
}

START_TEST(test_layers)
{
    char *dir = tu_tmpdir();
    const char *path = tu_write(dir, "zoo.yaml", ZOO[_i]);
    ct_experiment *c, *g;
    load_both(path, NULL, 0, &c, &g);
    ct_error err = {0};
    const int64_t rows = 9;
    c->model->keep_gradients = g->model->keep_gradients = true; /* all compared below */
    ck_assert_int_eq(ct_model_plan(c->model, rows, &err), 0);
    ck_assert_int_eq(ct_model_plan(g->model, rows, &err), 0);
    ct_model *mc = c->model, *mg = g->model;
    /* Same initial weights: both drew them from the seed on the host. */
    expect_model_close("initial weights", mc, mg, mc->values, mg->values, mc->size, 0);
    int64_t xn = rows * ct_shape_size(&mc->input_shape);
    float *x = malloc((size_t)xn * sizeof *x);
    tu_fill(x, xn, 200 + (unsigned)_i, -1, 1);
    token_ids(mc, x, xn);
    padding_steps(mc, x, rows);
    mc->be->upload(mc->inputs[0].data, x, (size_t)xn * sizeof *x);
    mg->be->upload(mg->inputs[0].data, x, (size_t)xn * sizeof *x);
    ct_pass pass = {.training = true, .seed = 5, .step = 3};
    ct_model_forward(mc, &pass, rows);
    ct_model_forward(mg, &pass, rows);
    for (int i = 0; i < mc->nlayers; i++) {
        char what[160];
        snprintf(what, sizeof what, "layer %d '%s' (%s) forward", i, mc->layers[i].name,
                 mc->layers[i].kind->class_name);
        expect_model_close(what, mc, mg, mc->out[i].data, mg->out[i].data,
                           ct_tensor_size(&mc->out[i]), 1e-4);
        /* Later layers must see the same input on both, or errors would compound. */
        mg->be->upload(mg->out[i].data, mc->out[i].data,
                       (size_t)ct_tensor_size(&mc->out[i]) * sizeof(float));
    }
    int last = mc->outputs[0];
    int64_t dn = ct_tensor_size(&mc->dout[last]);
    float *d = malloc((size_t)dn * sizeof *d);
    tu_fill(d, dn, 300 + (unsigned)_i, -1, 1);
    mc->be->upload(ct_model_output_grad(mc, 0), d, (size_t)dn * sizeof *d);
    mg->be->upload(ct_model_output_grad(mg, 0), d, (size_t)dn * sizeof *d);
    double pc = 0, pg = 0;
    double *pgd = mg->be->alloc(sizeof(double));
    ct_model_backward(mc, &pass, 1.0, &pc);
    ct_model_backward(mg, &pass, 1.0, pgd);
    mg->be->download(&pg, pgd, sizeof pg);
    mg->be->free(pgd);
    ck_assert_msg(fabs(pc - pg) <= 1e-6 + 1e-5 * fabs(pc), "penalty: gpu %g, cpu %g", pg, pc);
    expect_model_close("parameter gradients", mc, mg, mc->grads, mg->grads, mc->trainable, 1e-3);
    for (int i = 0; i < mc->nlayers; i++) {
        if (!mc->dout[i].data || i == last)
            continue;
        char what[160];
        snprintf(what, sizeof what, "gradient of layer %d '%s' (%s)'s output", i,
                 mc->layers[i].name, mc->layers[i].kind->class_name);
        expect_model_close(what, mc, mg, mc->dout[i].data, mg->dout[i].data,
                           ct_tensor_size(&mc->dout[i]), 1e-3);
    }
    /* Then five optimizer steps from the same weights; the losses must follow. */
    mg->be->upload(mg->values, mc->values, (size_t)mc->size * sizeof(float));
    const ct_shape *out = ct_model_output_shape(mc);
    int64_t ycols = c->loss[0].kind->sparse_labels ? ct_shape_size(out) / out->dim[out->ndim - 1]
                                                   : ct_shape_size(out);
    float *y = malloc((size_t)(rows * ycols) * sizeof *y);
    make_labels(c, y, rows, ycols, 400 + (unsigned)_i);
    for (int64_t s = 0; s < 5; s++) {
        double lc, lg;
        train_step(c, x, y, rows, ycols, s, &lc);
        train_step(g, x, y, rows, ycols, s, &lg);
        ck_assert_msg(fabs(lc - lg) <= 1e-5 + 1e-3 * fabs(lc), "step %lld: loss gpu %.9g, cpu %.9g",
                      (long long)s, lg, lc);
    }
    expect_model_close("weights after 5 steps", mc, mg, mc->values, mg->values, mc->size, 1e-3);
    free(x);
    free(d);
    free(y);
    ct_experiment_free(c);
    ct_experiment_free(g);
    free(dir);
}
END_TEST

/* The example configs: 20 training steps on both from the same weights and batches,
 * loss by loss. */
START_TEST(test_examples)
{
    static const char *const configs[] = {"configs/fashion_mnist_mlp.yaml",
                                          "configs/fashion_mnist_cnn.yaml",
                                          "configs/fashion_mnist_cnn_bn.yaml"};
    const char *path = tu_src(configs[_i]);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    ct_experiment *c, *g;
    load_both(copy, NULL, 0, &c, &g);
    ct_error err = {0};
    const int64_t rows = c->batch_size;
    ck_assert_int_eq(ct_model_plan(c->model, rows, &err), 0);
    ck_assert_int_eq(ct_model_plan(g->model, rows, &err), 0);
    int64_t xn = rows * ct_shape_size(&c->model->input_shape);
    float *x = malloc((size_t)xn * sizeof *x), *y = malloc((size_t)rows * sizeof *y);
    for (int64_t s = 0; s < 20; s++) {
        tu_fill(x, xn, 500 + (unsigned)s, 0, 1);
        for (int64_t r = 0; r < rows; r++)
            y[r] = (float)((r * 7 + s) % 10);
        /* Images with a class-dependent bright patch, so the loss falls. */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < 28; k++)
                x[r * 784 + (int64_t)y[r] * 56 + k] = 1.0f;
        double lc, lg;
        train_step(c, x, y, rows, 1, s, &lc);
        train_step(g, x, y, rows, 1, s, &lg);
        ck_assert_msg(fabs(lc - lg) <= 1e-3 * fabs(lc), "%s step %lld: loss gpu %.9g, cpu %.9g",
                      configs[_i], (long long)s + 1, lg, lc);
    }
    /* Adam moves a weight whose gradient is nearly zero by about the learning rate in a
     * direction rounding can flip, so single weights may part by 20 lr; the weights as a
     * whole must stay together. */
    int64_t n = c->model->size;
    float *wg = malloc((size_t)n * sizeof *wg);
    g->model->be->download(wg, g->model->values, (size_t)n * sizeof *wg);
    double dd = 0, ww = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)wg[i] - (double)c->model->values[i];
        dd += d * d;
        ww += (double)c->model->values[i] * c->model->values[i];
        ck_assert_msg(fabs(d) <= 20 * 1e-3 + 1e-6, "%s: weight %lld: gpu %.9g, cpu %.9g",
                      configs[_i], (long long)i, wg[i], c->model->values[i]);
    }
    ck_assert_msg(sqrt(dd) <= 1e-2 * sqrt(ww), "%s: the weights after 20 steps differ by %.3g "
                  "of their norm", configs[_i], sqrt(dd / ww));
    free(wg);
    free(x);
    free(y);
    ct_experiment_free(c);
    ct_experiment_free(g);
}
END_TEST

/* The masked ZOO model's data: 40 rows of 7 ids with padding (the last 8 rows padding
 * only, a batch of its own) and a class per position. */
static void masked_data(const char *dir)
{
    enum { N = 40, T = 7 };
    int32_t x[N * T], y[N * T];
    float u[N * T];
    tu_fill(u, N * T, 610, 0, 11);
    for (int i = 0; i < N * T; i++) {
        x[i] = i >= 32 * T || i % 5 == 3 ? 0 : (int32_t)u[i];
        y[i] = (x[i] + i / T) % 4;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/m.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d[2] = {N, T};
    hid_t sp = H5Screate_simple(2, d, NULL);
    for (int k = 0; k < 2; k++) {
        hid_t ds = H5Dcreate2(f, k ? "y" : "x", H5T_NATIVE_INT32, sp, H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT);
        ck_assert(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                      k ? y : x) >= 0);
        H5Dclose(ds);
    }
    H5Sclose(sp);
    H5Fclose(f);
}

/* A masked output through the experiment on both: evaluate's loss and accuracy (the mask
 * read back, the loss's sum_scale, a batch of padding only), then an epoch of fit from
 * the same weights, whose history and weights must follow. */
START_TEST(test_masked_experiment)
{
    const char *model = NULL;
    for (size_t z = 0; z < sizeof ZOO / sizeof ZOO[0]; z++)
        model = strstr(ZOO[z], "mask_zero: true") ? ZOO[z] : model;
    ck_assert_ptr_nonnull(model);
    char *dir = tu_tmpdir(), text[4096];
    masked_data(dir);
    snprintf(text, sizeof text, "%sdata: {train: {path: m.h5}, test: {path: m.h5}}\n"
             "fit: {epochs: 1, batch_size: 16, shuffle: false, verbose: 0}\n", model);
    ct_experiment *ex[2];
    load_both(tu_write(dir, "masked.yaml", text), NULL, 0, &ex[0], &ex[1]);
    const char *names[4];
    double v[2][4];
    ct_error err = {0};
    for (int b = 0; b < 2; b++)
        ck_assert_msg(ct_experiment_evaluate(ex[b], NULL, NULL, NULL, names, v[b], 4, &err) == 2,
                      "%s", err.msg);
    ck_assert_msg(isfinite(v[0][0]) && fabs(v[1][0] - v[0][0]) <= 1e-5 * fabs(v[0][0]),
                  "evaluate's loss: gpu %.9g, cpu %.9g", v[1][0], v[0][0]);
    /* a position or two may flip where the classes nearly tie */
    ck_assert_msg(fabs(v[1][1] - v[0][1]) <= 0.02, "evaluate's accuracy: gpu %.9g, cpu %.9g",
                  v[1][1], v[0][1]);
    FILE *devnull = fopen("/dev/null", "w");
    for (int b = 0; b < 2; b++) {
        char run[4200];
        snprintf(run, sizeof run, "%s/run%d", dir, b);
        ct_fit_options o = {.run_dir = run, .verbose = 0, .out = devnull};
        ck_assert_msg(ct_experiment_fit(ex[b], &o, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(ct_experiment_evaluate(ex[b], NULL, NULL, NULL, names, v[b], 4, &err), 2);
    }
    fclose(devnull);
    ck_assert_msg(fabs(v[1][0] - v[0][0]) <= 1e-3 * fabs(v[0][0]), "loss after an epoch: gpu "
                  "%.9g, cpu %.9g", v[1][0], v[0][0]);
    ct_model *mc = ex[0]->model, *mg = ex[1]->model;
    expect_model_close("weights after an epoch", mc, mg, mc->values, mg->values, mc->size, 1e-3);
    ct_experiment_free(ex[0]);
    ct_experiment_free(ex[1]);
    free(dir);
}
END_TEST

/* A checkpoint written by a GPU run loads into a CPU run with the same weights and
 * optimizer state, and the other way round. */
START_TEST(test_checkpoint_across)
{
    char *dir = tu_tmpdir();
    const char *path = tu_write(dir, "zoo.yaml", ZOO[0]);
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", dir);
    ct_experiment *c, *g;
    load_both(path, NULL, 0, &c, &g);
    ct_error err = {0};
    const int64_t rows = 8;
    ck_assert_int_eq(ct_model_plan(c->model, rows, &err), 0);
    ck_assert_int_eq(ct_model_plan(g->model, rows, &err), 0);
    float x[8 * 12], y[8];
    tu_fill(x, 8 * 12, 600, -1, 1);
    for (int r = 0; r < 8; r++)
        y[r] = (float)(r % 4);
    for (int dir_i = 0; dir_i < 2; dir_i++) {
        ct_experiment *from = dir_i ? c : g, *to = dir_i ? g : c;
        double loss;
        for (int64_t s = 0; s < 3; s++)
            train_step(from, x, y, rows, 1, s, &loss);
        ct_train_state st = {0};
        st.ncols = 3;
        ck_assert_msg(ct_checkpoint_save(from, &st, ckpt, &err) == 0, "%s", err.msg);
        ct_train_state back = {.ncols = 3};
        ck_assert_msg(ct_checkpoint_load(to, ckpt, &back, &err) == 0, "%s", err.msg);
        ct_train_state_clear(&back);
        ct_model *mf = from->model, *mt = to->model;
        int64_t n = mf->size, ns = ct_optimizer_slots(from->optimizer) *
                                   from->optimizer->n;
        float *a = malloc((size_t)(n + ns) * sizeof *a), *b = malloc((size_t)(n + ns) * sizeof *b);
        mf->be->download(a, mf->values, (size_t)n * sizeof *a);
        mt->be->download(b, mt->values, (size_t)n * sizeof *b);
        mf->be->download(a + n, from->optimizer->state, (size_t)ns * sizeof *a);
        mt->be->download(b + n, to->optimizer->state, (size_t)ns * sizeof *b);
        ck_assert_msg(memcmp(a, b, (size_t)(n + ns) * sizeof *a) == 0,
                      "a checkpoint written on the %s loads with other values on the %s",
                      dir_i ? "CPU" : "GPU", dir_i ? "GPU" : "CPU");
        ck_assert_int_eq(to->optimizer->iterations, from->optimizer->iterations);
        free(a);
        free(b);
    }
    ct_experiment_free(c);
    ct_experiment_free(g);
    free(dir);
}
END_TEST

static Suite *cuda_suite(void)
{
    Suite *s = suite_create("cuda");
    TCase *ops = tcase_create("ops");
    tcase_set_timeout(ops, 120);
    tcase_add_test(ops, test_gemm);
    tcase_add_test(ops, test_gemm_packed);
    tcase_add_test(ops, test_blas1);
    tcase_add_test(ops, test_activations);
    tcase_add_test(ops, test_random_streams);
    tcase_add_test(ops, test_image_ops);
    tcase_add_test(ops, test_conv);
    tcase_add_test(ops, test_depthwise);
    tcase_add_test(ops, test_pooling);
    tcase_add_test(ops, test_pad_upsample);
    tcase_add_test(ops, test_batchnorm);
    tcase_add_test(ops, test_groupnorm);
    tcase_add_test(ops, test_losses);
    tcase_add_test(ops, test_metrics);
    tcase_add_test(ops, test_regularize_clip);
    tcase_add_test(ops, test_updates);
    tcase_add_test(ops, test_merge_ops);
    tcase_add_test(ops, test_embedding_ops);
    tcase_add_test(ops, test_mask_ops);
    tcase_add_test(ops, test_attention_softmax);
    tcase_add_test(ops, test_gemm_batched_causal);
    tcase_add_test(ops, test_rnn_ops);
    suite_add_tcase(s, ops);
    TCase *models = tcase_create("models");
    tcase_set_timeout(models, 300);
    tcase_add_loop_test(models, test_layers, 0, (int)(sizeof ZOO / sizeof ZOO[0]));
    tcase_add_loop_test(models, test_examples, 0, 3);
    tcase_add_test(models, test_checkpoint_across);
    tcase_add_test(models, test_masked_experiment);
    suite_add_tcase(s, models);
    return s;
}

int main(void)
{
    if (zoo_missing_kinds())
        return EXIT_FAILURE;
    CPU = ct_backend_cpu();
    const char *self = getenv("CT_CUDA_TEST_SELF");
    if (self && strcmp(self, "1") == 0) {
        GPU = CPU;
        printf("CT_CUDA_TEST_SELF=1: the CPU backend stands in for the GPU\n");
    } else {
        /* This program links the library statically, so the loader would look for the
         * module beside it, not in the build tree's .libs; the environment may say. */
#ifdef CT_TEST_BUILDDIR
        setenv("CTRAIN_CUDA_MODULE", CT_TEST_BUILDDIR "/.libs/ctrain-cuda.so", 0);
#endif
        ct_error err = {0};
        GPU = ct_backend_cuda(&err);
        if (!GPU) {
            printf("SKIP: no CUDA backend to compare: %s\n", err.msg);
            return 77;
        }
        printf("comparing the CUDA backend (%s) with the CPU\n", GPU->name);
    }
    SRunner *sr = srunner_create(cuda_suite());
    /* A CUDA context does not survive fork: run the tests in this process. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
