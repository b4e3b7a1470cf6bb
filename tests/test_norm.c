/* test_norm.c - batch and group normalization: the CPU ops against plain double loops
 * (including data far from zero), and the BatchNormalization, LayerNormalization and
 * GroupNormalization layers: values, moving statistics, parameters, finite-difference
 * gradients and config errors; every op's outputs are the same for 1, 2 and 3 threads. */
#include "backend_cpu.h"
#include "layertest.h"
#include "parallel.h"

extern const ct_layer_kind ct_layer_batch_normalization, ct_layer_layer_normalization,
    ct_layer_group_normalization;

/* ---- double references ------------------------------------------------------------- */

/* Mean and biased variance of channel j over n rows of c channels. */
static void ref_moments(const float *x, int64_t n, int64_t c, int64_t j, double *m, double *v)
{
    double s = 0.0, q = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += x[i * c + j];
    *m = s / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i * c + j] - *m;
        q += d * d;
    }
    *v = q / (double)n;
}

/* Mean and biased variance of group g of sample r (spatial x c layout). */
static void ref_group_moments(const float *x, int64_t r, int64_t spatial, int64_t c,
                              int64_t groups, int64_t g, double *m, double *v)
{
    int64_t cg = c / groups;
    const float *xs = x + r * spatial * c;
    double s = 0.0, q = 0.0;
    for (int64_t p = 0; p < spatial; p++)
        for (int64_t j = g * cg; j < (g + 1) * cg; j++)
            s += xs[p * c + j];
    *m = s / (double)(spatial * cg);
    for (int64_t p = 0; p < spatial; p++)
        for (int64_t j = g * cg; j < (g + 1) * cg; j++) {
            double d = xs[p * c + j] - *m;
            q += d * d;
        }
    *v = q / (double)(spatial * cg);
}

static double at_or(const float *v, int64_t j, double def) { return v ? v[j] : def; }

/* Fills 1000 + noise in [-0.01, 0.01): float spacing at 1000 is 6.1e-5, so the variance is
 * ~3.3e-5 while the squares are 1e6: naive float sums lose it completely. */
static void fill_offset(float *x, int64_t n, unsigned seed)
{
    tu_fill(x, n, seed, -0.01f, 0.01f);
    for (int64_t i = 0; i < n; i++)
        x[i] += 1000.0f;
}

/* ---- batchnorm op -------------------------------------------------------------------- */

static void check_bn_train(const float *x, int64_t n, int64_t c, const float *gamma,
                           const float *beta, float eps, double tol_stat, double tol_y)
{
    float *y = fvec(n * c), *mean = fvec(c), *var = fvec(c), *is = fvec(c);
    ct_cpu_batchnorm_train(x, y, n, c, gamma, beta, eps, mean, var, is, false);
    for (int64_t j = 0; j < c; j++) {
        double m, v;
        ref_moments(x, n, c, j, &m, &v);
        double ris = 1.0 / sqrt(v + eps);
        tu_assert_close(mean[j], m, 1e-7);
        ck_assert_msg(fabs(var[j] - v) <= tol_stat * v + 1e-12, "var[%lld] %.9g vs %.9g",
                      (long long)j, var[j], v);
        ck_assert_msg(fabs(is[j] - ris) <= tol_stat * ris, "invstd %.9g vs %.9g", is[j], ris);
        for (int64_t i = 0; i < n; i++) {
            double want = (x[i * c + j] - m) * ris * at_or(gamma, j, 1) + at_or(beta, j, 0);
            ck_assert_msg(fabs(y[i * c + j] - want) <= tol_y, "y[%lld][%lld] %.9g vs %.9g",
                          (long long)i, (long long)j, y[i * c + j], want);
        }
    }
    free(y), free(mean), free(var), free(is);
}

START_TEST(test_bn_train_values)
{
    int64_t n = 37, c = 5;
    float *x = fvec(n * c), gamma[5], beta[5];
    tu_fill(x, n * c, 1, -2.0f, 3.0f);
    tu_fill(gamma, c, 2, 0.5f, 1.5f);
    tu_fill(beta, c, 3, -1.0f, 1.0f);
    check_bn_train(x, n, c, gamma, beta, 1e-3f, 1e-6, 2e-6);
    check_bn_train(x, n, c, NULL, NULL, 1e-3f, 1e-6, 2e-6);
    check_bn_train(x, n, c, gamma, NULL, 1e-3f, 1e-6, 2e-6);
    /* more channels than one block of the implementation */
    int64_t n2 = 9, c2 = 600;
    float *x2 = fvec(n2 * c2);
    tu_fill(x2, n2 * c2, 4, -1.0f, 1.0f);
    check_bn_train(x2, n2, c2, NULL, NULL, 1e-5f, 1e-6, 2e-6);
    free(x), free(x2);
}
END_TEST

START_TEST(test_bn_large_offset)
{
    int64_t n = 200000, c = 3;
    float *x = fvec(n * c);
    fill_offset(x, n * c, 5);
    /* eps far below the variance, so invstd measures the variance's accuracy too */
    check_bn_train(x, n, c, NULL, NULL, 1e-9f, 1e-4, 2e-3);
    free(x);
}
END_TEST

START_TEST(test_bn_infer_values)
{
    /* y = (x - mean) / sqrt(var + eps) * gamma + beta, worked by hand per channel */
    float x[6] = {3.0f, -2.0f, 1.0f, -1.5f, -1.0f, 0.0f}, y[6];
    float mean[2] = {1.0f, -2.0f}, var[2] = {4.0f, 0.25f};
    float gamma[2] = {2.0f, 1.0f}, beta[2] = {0.5f, 0.0f};
    ct_cpu_batchnorm_infer(x, y, 3, 2, gamma, beta, 1e-3f, mean, var, false);
    double want[6] = {2.0 / sqrt(4.001) * 2 + 0.5, 0.0, 0.0 * 2 + 0.5,
                      0.5 / sqrt(0.251), -2.0 / sqrt(4.001) * 2 + 0.5, 2.0 / sqrt(0.251)};
    for (int i = 0; i < 6; i++)
        tu_assert_close(y[i], want[i], 1e-6);
    ct_cpu_batchnorm_infer(x, y, 3, 2, NULL, NULL, 1e-3f, mean, var, false);
    tu_assert_close(y[0], 2.0 / sqrt(4.001), 1e-6);
    tu_assert_close(y[5], 2.0 / sqrt(0.251), 1e-6);
}
END_TEST

/* dx, dgamma, dbeta of batchnorm_backward against the training-mode formula in double. */
static void check_bn_backward(const float *x, const float *dy, int64_t n, int64_t c,
                              const float *gamma, double tol)
{
    float *y = fvec(n * c), *dx = fvec(n * c), *mean = fvec(c), *var = fvec(c), *is = fvec(c);
    float *dg = fvec(c), *db = fvec(c), *dg2 = fvec(c);
    ct_cpu_batchnorm_train(x, y, n, c, gamma, NULL, 1e-3f, mean, var, is, false);
    ct_cpu_batchnorm_backward(x, NULL, (float *)dy, dx, n, c, gamma, mean, is, dg, db);
    for (int64_t j = 0; j < c; j++) {
        double m, v, sdy = 0.0, sdyx = 0.0;
        ref_moments(x, n, c, j, &m, &v);
        double ris = 1.0 / sqrt(v + 1e-3), g = at_or(gamma, j, 1);
        for (int64_t i = 0; i < n; i++) {
            sdy += dy[i * c + j];
            sdyx += dy[i * c + j] * (x[i * c + j] - m) * ris;
        }
        ck_assert_msg(fabs(db[j] - sdy) <= tol * (1 + fabs(sdy)), "dbeta %g vs %g", db[j], sdy);
        ck_assert_msg(fabs(dg[j] - sdyx) <= tol * (1 + fabs(sdyx)), "dgamma %g vs %g", dg[j],
                      sdyx);
        for (int64_t i = 0; i < n; i++) {
            double xh = (x[i * c + j] - m) * ris;
            double want = g * ris / (double)n *
                          ((double)n * dy[i * c + j] - sdy - xh * sdyx);
            ck_assert_msg(fabs(dx[i * c + j] - want) <= tol * (1 + fabs(want)),
                          "dx[%lld][%lld] %.9g vs %.9g", (long long)i, (long long)j,
                          dx[i * c + j], want);
        }
    }
    /* without dx the parameter gradients are the same */
    ct_cpu_batchnorm_backward(x, NULL, (float *)dy, NULL, n, c, gamma, mean, is, dg2, NULL);
    for (int64_t j = 0; j < c; j++)
        ck_assert_float_eq(dg2[j], dg[j]);
    free(y), free(dx), free(mean), free(var), free(is), free(dg), free(db), free(dg2);
}

START_TEST(test_bn_backward_values)
{
    int64_t n = 23, c = 4;
    float *x = fvec(n * c), *dy = fvec(n * c), gamma[4];
    tu_fill(x, n * c, 11, -1.0f, 2.0f);
    tu_fill(dy, n * c, 12, -1.0f, 1.0f);
    tu_fill(gamma, c, 13, 0.5f, 1.5f);
    check_bn_backward(x, dy, n, c, gamma, 1e-5);
    check_bn_backward(x, dy, n, c, NULL, 1e-5);
    free(x), free(dy);
}
END_TEST

/* A fused relu gives the bits of batch normalization followed by a relu of its own:
 * forward (training and inference) and backward (dy taken where y > 0). */
START_TEST(test_bn_fused_relu)
{
    const int64_t n = 37, c = 21; /* a block of 16 channels and a partial one */
    float *x = fvec(n * c), *dy = fvec(n * c), *gamma = fvec(c), *beta = fvec(c);
    float *y = fvec(n * c), *yr = fvec(n * c), *dx = fvec(n * c), *dxr = fvec(n * c);
    float *mean = fvec(c), *var = fvec(c), *is = fvec(c), *dg = fvec(c), *db = fvec(c);
    float *dgr = fvec(c), *dbr = fvec(c), *dym = fvec(n * c), *dyc = fvec(n * c);
    tu_fill(x, n * c, 61, -2.0f, 3.0f);
    tu_fill(dy, n * c, 62, -1.0f, 1.0f);
    tu_fill(gamma, c, 63, 0.5f, 1.5f);
    tu_fill(beta, c, 64, -0.5f, 0.5f);
    ct_cpu_batchnorm_train(x, y, n, c, gamma, beta, 1e-3f, mean, var, is, false);
    ct_cpu_batchnorm_train(x, yr, n, c, gamma, beta, 1e-3f, mean, var, is, true);
    int zeros = 0;
    for (int64_t i = 0; i < n * c; i++) {
        float want = y[i] > 0.0f ? y[i] : 0.0f;
        ck_assert_msg(memcmp(&yr[i], &want, sizeof want) == 0, "y[%lld]", (long long)i);
        zeros += yr[i] == 0.0f;
        dym[i] = yr[i] > 0.0f ? dy[i] : 0.0f;
    }
    ck_assert_int_gt(zeros, n * c / 4); /* the relu cut something */
    memcpy(dyc, dy, (size_t)(n * c) * sizeof(float));
    ct_cpu_batchnorm_backward(x, yr, dyc, dxr, n, c, gamma, mean, is, dgr, dbr);
    ct_cpu_batchnorm_backward(x, NULL, dym, dx, n, c, gamma, mean, is, dg, db);
    ck_assert(memcmp(dx, dxr, (size_t)(n * c) * sizeof(float)) == 0);
    ck_assert(memcmp(dg, dgr, (size_t)c * sizeof(float)) == 0);
    ck_assert(memcmp(db, dbr, (size_t)c * sizeof(float)) == 0);
    ct_cpu_batchnorm_infer(x, y, n, c, gamma, beta, 1e-3f, mean, var, false);
    ct_cpu_batchnorm_infer(x, yr, n, c, gamma, beta, 1e-3f, mean, var, true);
    for (int64_t i = 0; i < n * c; i++) {
        float want = y[i] > 0.0f ? y[i] : 0.0f;
        ck_assert_msg(memcmp(&yr[i], &want, sizeof want) == 0, "inference y[%lld]", (long long)i);
    }
    free(x), free(dy), free(gamma), free(beta), free(y), free(yr), free(dx), free(dxr);
    free(mean), free(var), free(is), free(dg), free(db), free(dgr), free(dbr), free(dym);
    free(dyc);
}
END_TEST

START_TEST(test_bn_backward_large_offset)
{
    /* std 0.0058, eps 1e-3 dominates: still the centring must not lose x - mean */
    int64_t n = 5000, c = 2;
    float *x = fvec(n * c), *dy = fvec(n * c);
    fill_offset(x, n * c, 14);
    tu_fill(dy, n * c, 15, -1.0f, 1.0f);
    check_bn_backward(x, dy, n, c, NULL, 2e-3);
    free(x), free(dy);
}
END_TEST

/* ---- groupnorm op ---------------------------------------------------------------------- */

static void check_gn_forward(const float *x, int64_t rows, int64_t spatial, int64_t c,
                             int64_t groups, const float *gamma, const float *beta, float eps,
                             double tol_stat, double tol_y)
{
    int64_t cg = c / groups;
    float *y = fvec(rows * spatial * c), *mean = fvec(rows * groups), *is = fvec(rows * groups);
    ct_cpu_groupnorm_forward(x, y, rows, spatial, c, groups, gamma, beta, eps, mean, is);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            double m, v;
            ref_group_moments(x, r, spatial, c, groups, g, &m, &v);
            double ris = 1.0 / sqrt(v + eps);
            tu_assert_close(mean[r * groups + g], m, 1e-7);
            ck_assert_msg(fabs(is[r * groups + g] - ris) <= tol_stat * ris,
                          "invstd %.9g vs %.9g", is[r * groups + g], ris);
            for (int64_t p = 0; p < spatial; p++)
                for (int64_t j = g * cg; j < (g + 1) * cg; j++) {
                    int64_t i = (r * spatial + p) * c + j;
                    double want = (x[i] - m) * ris * at_or(gamma, j, 1) + at_or(beta, j, 0);
                    ck_assert_msg(fabs(y[i] - want) <= tol_y, "y[%lld] %.9g vs %.9g",
                                  (long long)i, y[i], want);
                }
        }
    free(y), free(mean), free(is);
}

START_TEST(test_gn_forward_values)
{
    int64_t rows = 3, spatial = 5, c = 6;
    float *x = fvec(rows * spatial * c), gamma[6], beta[6];
    tu_fill(x, rows * spatial * c, 21, -2.0f, 2.0f);
    tu_fill(gamma, c, 22, 0.5f, 1.5f);
    tu_fill(beta, c, 23, -1.0f, 1.0f);
    for (int64_t groups = 1; groups <= 6; groups++)
        if (c % groups == 0) {
            check_gn_forward(x, rows, spatial, c, groups, gamma, beta, 1e-3f, 1e-6, 2e-6);
            check_gn_forward(x, rows, spatial, c, groups, NULL, NULL, 1e-3f, 1e-6, 2e-6);
            check_gn_forward(x, rows, spatial, c, groups, gamma, NULL, 1e-3f, 1e-6, 2e-6);
            check_gn_forward(x, rows, spatial, c, groups, NULL, beta, 1e-3f, 1e-6, 2e-6);
        }
    /* layer-norm layout with a row longer than the lanes */
    float *x2 = fvec(4 * 37);
    tu_fill(x2, 4 * 37, 24, -1.0f, 1.0f);
    check_gn_forward(x2, 4, 1, 37, 1, NULL, NULL, 1e-3f, 1e-6, 2e-6);
    /* large groups over several positions; small groups over several channel blocks */
    int64_t n3 = 2 * 3 * 400;
    float *x3 = fvec(n3), *g3 = fvec(400), *b3 = fvec(400);
    tu_fill(x3, n3, 26, -1.0f, 3.0f);
    tu_fill(g3, 400, 27, 0.5f, 1.5f);
    tu_fill(b3, 400, 28, -1.0f, 1.0f);
    check_gn_forward(x3, 2, 3, 400, 5, g3, b3, 1e-3f, 1e-6, 2e-6);
    check_gn_forward(x3, 2, 3, 400, 10, g3, b3, 1e-3f, 1e-6, 2e-6);
    check_gn_forward(x3, 2, 4, 300, 100, g3, b3, 1e-3f, 1e-6, 2e-6);
    free(x), free(x2), free(x3), free(g3), free(b3);
}
END_TEST

START_TEST(test_gn_large_offset)
{
    float *x = fvec(2 * 50000);
    fill_offset(x, 2 * 50000, 25);
    check_gn_forward(x, 2, 1, 50000, 1, NULL, NULL, 1e-9f, 1e-4, 2e-3);
    check_gn_forward(x, 2, 500, 100, 4, NULL, NULL, 1e-9f, 1e-4, 2e-3);
    free(x);
}
END_TEST

/* groupnorm_backward against dx = is/m (m dxh - sum dxh - xh sum dxh xh), dxh = dy gamma. */
static void check_gn_backward(const float *x, const float *dy, int64_t rows, int64_t spatial,
                              int64_t c, int64_t groups, const float *gamma, double tol)
{
    int64_t cg = c / groups, size = rows * spatial * c;
    float *y = fvec(size), *dx = fvec(size), *mean = fvec(rows * groups);
    float *is = fvec(rows * groups), *dg = fvec(c), *db = fvec(c);
    double *rdg = calloc((size_t)c, sizeof(double)), *rdb = calloc((size_t)c, sizeof(double));
    ct_cpu_groupnorm_forward(x, y, rows, spatial, c, groups, gamma, NULL, 1e-3f, mean, is);
    ct_cpu_groupnorm_backward(x, dy, dx, rows, spatial, c, groups, gamma, mean, is, dg, db);
    double m_n = (double)(spatial * cg);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            double m, v, a = 0.0, b = 0.0;
            ref_group_moments(x, r, spatial, c, groups, g, &m, &v);
            double ris = 1.0 / sqrt(v + 1e-3);
            for (int64_t p = 0; p < spatial; p++)
                for (int64_t j = g * cg; j < (g + 1) * cg; j++) {
                    int64_t i = (r * spatial + p) * c + j;
                    double xh = (x[i] - m) * ris, dxh = dy[i] * at_or(gamma, j, 1);
                    a += dxh;
                    b += dxh * xh;
                    rdg[j] += dy[i] * xh;
                    rdb[j] += dy[i];
                }
            for (int64_t p = 0; p < spatial; p++)
                for (int64_t j = g * cg; j < (g + 1) * cg; j++) {
                    int64_t i = (r * spatial + p) * c + j;
                    double xh = (x[i] - m) * ris, dxh = dy[i] * at_or(gamma, j, 1);
                    double want = ris / m_n * (m_n * dxh - a - xh * b);
                    ck_assert_msg(fabs(dx[i] - want) <= tol * (1 + fabs(want)),
                                  "dx[%lld] %.9g vs %.9g", (long long)i, dx[i], want);
                }
        }
    for (int64_t j = 0; j < c; j++) {
        ck_assert_msg(fabs(dg[j] - rdg[j]) <= tol * (1 + fabs(rdg[j])), "dgamma %g vs %g",
                      dg[j], rdg[j]);
        ck_assert_msg(fabs(db[j] - rdb[j]) <= tol * (1 + fabs(rdb[j])), "dbeta %g vs %g",
                      db[j], rdb[j]);
    }
    free(y), free(dx), free(mean), free(is), free(dg), free(db), free(rdg), free(rdb);
}

START_TEST(test_gn_backward_large_offset)
{
    int64_t n = 2 * 500 * 8;
    float *x = fvec(n), *dy = fvec(n), gamma[800];
    fill_offset(x, n, 37);
    tu_fill(dy, n, 38, -1.0f, 1.0f);
    tu_fill(gamma, 800, 39, 0.5f, 1.5f);
    check_gn_backward(x, dy, 2, 500, 8, 2, gamma, 2e-3);
    check_gn_backward(x, dy, 2, 500, 8, 1, NULL, 2e-3);
    check_gn_backward(x, dy, 10, 1, 800, 1, gamma, 2e-3);
    free(x), free(dy);
}
END_TEST

START_TEST(test_gn_backward_values)
{
    int64_t rows = 3, spatial = 4, c = 20;
    float *x = fvec(rows * spatial * c), *dy = fvec(rows * spatial * c), gamma[20];
    tu_fill(x, rows * spatial * c, 31, -1.0f, 2.0f);
    tu_fill(dy, rows * spatial * c, 32, -1.0f, 1.0f);
    tu_fill(gamma, c, 33, 0.5f, 1.5f);
    check_gn_backward(x, dy, rows, spatial, c, 2, gamma, 1e-5);
    check_gn_backward(x, dy, rows, spatial, c, 5, NULL, 1e-5);
    check_gn_backward(x, dy, rows * spatial, 1, c, 1, gamma, 1e-5);
    int64_t n3 = 2 * 3 * 400;
    float *x3 = fvec(n3), *dy3 = fvec(n3), *g3 = fvec(600);
    tu_fill(x3, n3, 34, -1.0f, 3.0f);
    tu_fill(dy3, n3, 35, -1.0f, 1.0f);
    tu_fill(g3, 600, 36, 0.5f, 1.5f);
    check_gn_backward(x3, dy3, 2, 3, 400, 5, g3, 1e-5);
    check_gn_backward(x3, dy3, 2, 3, 400, 10, NULL, 1e-5);
    check_gn_backward(x3, dy3, 2, 4, 300, 100, g3, 1e-5);
    check_gn_backward(x3, dy3, 2, 2, 600, 2, g3, 1e-5);
    free(x), free(dy), free(x3), free(dy3), free(g3);
}
END_TEST

/* ---- thread counts ------------------------------------------------------------------ */

/* A shape for every op: batch norm over rows * spatial positions when groups is 0, else
 * group norm. */
typedef struct norm_case {
    int64_t rows, spatial, c, groups;
} norm_case;

/* Everything the ops write for one case: y (training), yi (inference), statistics, dx,
 * dgamma/dbeta with dx and dgamma without. */
enum { OUT_Y, OUT_YI, OUT_DX, OUT_S0, OUT_S1, OUT_S2, OUT_DG, OUT_DB, OUT_DG2, OUT_COUNT };

static void norm_outputs_alloc(const norm_case *k, float *out[OUT_COUNT], int64_t len[OUT_COUNT])
{
    int64_t size = k->rows * k->spatial * k->c;
    int64_t stats = k->groups ? k->rows * k->groups : k->c;
    int64_t sizes[OUT_COUNT] = {size, size, size, stats, stats, stats, k->c, k->c, k->c};
    for (int i = 0; i < OUT_COUNT; i++) {
        len[i] = sizes[i];
        out[i] = fvec(sizes[i]);
        for (int64_t j = 0; j < sizes[i]; j++)
            out[i][j] = NAN; /* so anything left unwritten differs */
    }
}

static void run_norm_ops(const norm_case *k, const float *x, const float *dy,
                         const float *gamma, const float *beta, float *out[OUT_COUNT])
{
    int64_t n = k->rows * k->spatial, c = k->c;
    if (!k->groups) {
        ct_cpu_batchnorm_train(x, out[OUT_Y], n, c, gamma, beta, 1e-3f, out[OUT_S0],
                               out[OUT_S1], out[OUT_S2], false);
        ct_cpu_batchnorm_infer(x, out[OUT_YI], n, c, gamma, beta, 1e-3f, out[OUT_S0],
                               out[OUT_S1], false);
        ct_cpu_batchnorm_backward(x, NULL, (float *)dy, out[OUT_DX], n, c, gamma, out[OUT_S0],
                                  out[OUT_S2], out[OUT_DG], out[OUT_DB]);
        ct_cpu_batchnorm_backward(x, NULL, (float *)dy, NULL, n, c, gamma, out[OUT_S0],
                                  out[OUT_S2], out[OUT_DG2], NULL);
        return;
    }
    ct_cpu_groupnorm_forward(x, out[OUT_Y], k->rows, k->spatial, c, k->groups, gamma, beta,
                             1e-3f, out[OUT_S0], out[OUT_S1]);
    /* without gamma/beta; invstd again into OUT_S1 */
    ct_cpu_groupnorm_forward(x, out[OUT_YI], k->rows, k->spatial, c, k->groups, NULL, NULL,
                             1e-3f, out[OUT_S2], out[OUT_S1]);
    ct_cpu_groupnorm_backward(x, dy, out[OUT_DX], k->rows, k->spatial, c, k->groups, gamma,
                              out[OUT_S0], out[OUT_S1], out[OUT_DG], out[OUT_DB]);
    ct_cpu_groupnorm_backward(x, dy, NULL, k->rows, k->spatial, c, k->groups, gamma,
                              out[OUT_S0], out[OUT_S1], out[OUT_DG2], NULL);
}

/* Adds +2^40 at the second and -2^40 at the last position of every channel. Sums of such
 * data depend on their order (what is lost next to 2^40 depends on where the parts begin),
 * so a split that changed with the thread count would show in the float results; with
 * ordinary data the double sums' differences would almost never survive rounding to float. */
static void add_spikes(float *v, int64_t positions, int64_t c)
{
    for (int64_t j = 0; j < c; j++) {
        v[c + j] += 0x1p40f;
        v[(positions - 1) * c + j] -= 0x1p40f;
    }
}

/* Runs every op of the case with 1, 2 and 3 threads: the outputs must match bit for bit. */
static void check_thread_counts(const norm_case *k, unsigned seed)
{
    int64_t size = k->rows * k->spatial * k->c, len[OUT_COUNT];
    float *x = fvec(size), *dy = fvec(size), *gamma = fvec(k->c), *beta = fvec(k->c);
    float *want[OUT_COUNT], *got[OUT_COUNT];
    tu_fill(x, size, seed, -1.0f, 3.0f);
    tu_fill(dy, size, seed + 1, -1.0f, 1.0f);
    tu_fill(gamma, k->c, seed + 2, 0.5f, 1.5f);
    tu_fill(beta, k->c, seed + 3, -1.0f, 1.0f);
    add_spikes(x, k->rows * k->spatial, k->c);
    add_spikes(dy, k->rows * k->spatial, k->c);
    ct_threads_set(1);
    norm_outputs_alloc(k, want, len);
    run_norm_ops(k, x, dy, gamma, beta, want);
    for (int threads = 2; threads <= 3; threads++) {
        ct_threads_set(threads);
        ck_assert_int_eq(ct_threads_get(), threads);
        norm_outputs_alloc(k, got, len);
        run_norm_ops(k, x, dy, gamma, beta, got);
        for (int i = 0; i < OUT_COUNT; i++) {
            ck_assert_msg(memcmp(got[i], want[i], (size_t)len[i] * sizeof(float)) == 0,
                          "output %d of case (%lld, %lld, %lld, %lld) differs with %d threads",
                          i, (long long)k->rows, (long long)k->spatial, (long long)k->c,
                          (long long)k->groups, threads);
            free(got[i]);
        }
    }
    ct_threads_set(1);
    for (int i = 0; i < OUT_COUNT; i++)
        free(want[i]);
    free(x), free(dy), free(gamma), free(beta);
}

START_TEST(test_thread_counts_identical)
{
    static const norm_case cases[] = {
        {200, 100, 37, 0},  /* batch norm: 20000 positions in parts, an odd channel count */
        {30, 100, 300, 0},  /* batch norm over two channel blocks */
        {12, 500, 24, 6},   /* group norm: small groups, per-channel blocks */
        {8, 300, 128, 2},   /* group norm: wide groups, contiguous runs */
        {6, 20, 600, 1},    /* group norm: a group wider than a block */
        {5000, 1, 40, 1},   /* layer norm: one position per sample */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_thread_counts(&cases[i], 41 + 4 * (unsigned)i);
}
END_TEST

/* ---- layer harness ----------------------------------------------------------------------- */

static void lt_bind(ct_layer *l, const char *type)
{
    const ct_layer_kind *kinds[] = {&ct_layer_batch_normalization, &ct_layer_layer_normalization,
                                    &ct_layer_group_normalization};
    l->kind = NULL;
    for (int i = 0; i < 3 && !l->kind; i++)
        if (!strcmp(kinds[i]->name, type) || !strcmp(kinds[i]->class_name, type))
            l->kind = kinds[i];
}

/* gamma in [0.5, 1.5), beta in [-0.5, 0.5), moving statistics as initialized: zeros and
 * ones. */
static void lt_fill(ct_param *p, int i, int64_t n)
{
    if (!strcmp(p->name, "gamma"))
        tu_fill(p->value, n, 40u + (unsigned)i, 0.5f, 1.5f);
    else if (!strcmp(p->name, "beta"))
        tu_fill(p->value, n, 40u + (unsigned)i, -0.5f, 0.5f);
    else
        for (int64_t k = 0; k < n; k++)
            p->value[k] = strcmp(p->name, "moving_variance") ? 0.0f : 1.0f;
}

static const ct_pass train_pass = {.training = true, .seed = 1, .step = 0};
static const ct_pass infer_pass = {.training = false, .seed = 1, .step = 0};

static float *param(lt *t, const char *name)
{
    for (int i = 0; i < t->l.nparams; i++)
        if (!strcmp(t->l.params[i].name, name))
            return t->l.params[i].value;
    ck_abort_msg("no parameter %s", name);
    return NULL;
}

/* ---- finite differences ---------------------------------------------------------------- */

/* Checks dx and every trainable parameter's gradient of L = sum r * y, x in [-1, 2). */
static void gradcheck(lt *t, int64_t rows, const ct_pass *pass)
{
    lt_gradcheck_in(t, rows, pass, NULL, -1.0f, 2.0f, 3e-3, 2e-2);
}

static void gradcheck_yaml(const char *yaml, int ndim, const int64_t *dims, int64_t rows,
                           const ct_pass *pass)
{
    lt t;
    lt_ok(&t, yaml, "norm", ndim, dims, rows);
    if (pass == &infer_pass && t.l.kind == &ct_layer_batch_normalization) {
        /* moving statistics away from their initial values */
        int64_t c = dims[ndim - 1];
        tu_fill(param(&t, "moving_mean"), c, 50, -0.5f, 0.5f);
        tu_fill(param(&t, "moving_variance"), c, 51, 0.3f, 2.0f);
    }
    gradcheck(&t, rows, pass);
    lt_free(&t);
}

/* ---- batch normalization layer ---------------------------------------------------------- */

START_TEST(test_bn_params)
{
    int64_t dims[3] = {4, 4, 8};
    lt t;
    lt_ok(&t, "type: batch_normalization", "batch_normalization", 3, dims, 2);
    ck_assert_int_eq(t.l.nparams, 4);
    const char *names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    int trainable = 0;
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(t.l.params[i].name, names[i]);
        ck_assert_int_eq(t.l.params[i].shape.ndim, 1);
        ck_assert_int_eq(t.l.params[i].shape.dim[0], 8);
        ck_assert_int_eq(t.l.params[i].trainable, i < 2);
        trainable += t.l.params[i].trainable;
    }
    ck_assert_int_eq(4 - trainable, 2);
    ck_assert_int_eq(t.l.params[0].init.kind, CT_INIT_ONES);
    ck_assert_int_eq(t.l.params[1].init.kind, CT_INIT_ZEROS);
    ck_assert_int_eq(t.l.params[2].init.kind, CT_INIT_ZEROS);
    ck_assert_int_eq(t.l.params[3].init.kind, CT_INIT_ONES);
    ck_assert(ct_shape_equal(&t.l.out_shape, &t.l.in_shape));
    lt_free(&t);

    lt_ok(&t, "{type: BatchNormalization, center: false, gamma_regularizer: l2, "
              "moving_variance_initializer: zeros}", "bn", 3, dims, 2);
    ck_assert_int_eq(t.l.nparams, 3);
    ck_assert_str_eq(t.l.params[0].name, "gamma");
    tu_assert_close(t.l.params[0].reg.l2, 0.01, 1e-12);
    ck_assert_str_eq(t.l.params[1].name, "moving_mean");
    ck_assert_int_eq(t.l.params[2].init.kind, CT_INIT_ZEROS);
    lt_free(&t);

    lt_ok(&t, "{type: batch_normalization, center: false, scale: false, axis: 3}", "bn", 3,
          dims, 2);
    ck_assert_int_eq(t.l.nparams, 2);
    ck_assert_str_eq(t.l.params[0].name, "moving_mean");
    ck_assert(!t.l.params[0].trainable && !t.l.params[1].trainable);
    lt_free(&t);
}
END_TEST

START_TEST(test_bn_moving_statistics)
{
    /* momentum 0.9; batches (rows x 2 channels):
     * 1: [1, 0], [2, 0], [3, 6] -> mean (2, 2), biased var (2/3, 8)
     * 2: [4, -1], [4, 1], [4, 3] -> mean (4, 1), biased var (0, 8/3)
     * mean: 0 -> 0.2 -> 0.9 * 0.2 + 0.1 * 4 = 0.58 | 0 -> 0.2 -> 0.18 + 0.1 = 0.28
     * var:  1 -> 0.9 + 0.2/3 -> 0.9 * (0.9 + 0.2/3) + 0 = 0.87
     *       1 -> 1.7 -> 0.9 * 1.7 + 0.8/3 = 1.7966667 */
    int64_t dims[1] = {2};
    lt t;
    lt_ok(&t, "{type: batch_normalization, momentum: 0.9}", "bn", 1, dims, 3);
    float b1[6] = {1, 0, 2, 0, 3, 6}, b2[6] = {4, -1, 4, 1, 4, 3}, y[6];
    ct_shape s = ct_shape_make(1, dims);
    ct_tensor x1 = tensor(b1, 3, s), x2 = tensor(b2, 3, s), ty = tensor(y, 3, s);
    float *mm = param(&t, "moving_mean"), *mv = param(&t, "moving_variance");
    lt_forward(&t.l, &train_pass, &x1, &ty);
    tu_assert_close(mm[0], 0.2, 1e-6);
    tu_assert_close(mv[1], 1.7, 1e-6);
    lt_forward(&t.l, &train_pass, &x2, &ty);
    tu_assert_close(mm[0], 0.58, 1e-6);
    tu_assert_close(mm[1], 0.28, 1e-6);
    tu_assert_close(mv[0], 0.87, 1e-6);
    tu_assert_close(mv[1], 1.7966667, 1e-6);
    /* the training output used batch 2's own statistics: channel 0 is constant -> beta */
    float *gamma = param(&t, "gamma"), *beta = param(&t, "beta");
    for (int i = 0; i < 3; i++)
        tu_assert_close(y[2 * i], beta[0], 1e-6);
    tu_assert_close(y[1], -2.0 / sqrt(8.0 / 3 + 1e-3) * gamma[1] + beta[1], 1e-5);
    /* inference leaves the moving statistics alone and uses them */
    lt_forward(&t.l, &infer_pass, &x1, &ty);
    tu_assert_close(mm[0], 0.58, 1e-6);
    tu_assert_close(y[0], (1 - 0.58) / sqrt(0.87 + 1e-3) * gamma[0] + beta[0], 1e-5);
    tu_assert_close(y[5], (6 - 0.28) / sqrt(1.7966667 + 1e-3) * gamma[1] + beta[1], 1e-5);
    lt_free(&t);
}
END_TEST

START_TEST(test_bn_inference_values)
{
    /* hand-set moving statistics on a (2, 2) input with spatial positions */
    int64_t dims[2] = {2, 2};
    lt t;
    lt_ok(&t, "{type: batch_normalization, epsilon: 0.01}", "bn", 2, dims, 1);
    float *g = param(&t, "gamma"), *b = param(&t, "beta");
    float *mm = param(&t, "moving_mean"), *mv = param(&t, "moving_variance");
    g[0] = 2, g[1] = 0.5f, b[0] = 1, b[1] = -1, mm[0] = 1, mm[1] = -1, mv[0] = 0.99f,
    mv[1] = 3.99f;
    float x[4] = {3, 1, -1, -5}, y[4];
    ct_shape s = ct_shape_make(2, dims);
    ct_tensor tx = tensor(x, 1, s), ty = tensor(y, 1, s);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    /* sqrt(0.99 + 0.01) = 1, sqrt(3.99 + 0.01) = 2 */
    tu_assert_close(y[0], (3 - 1) / 1.0 * 2 + 1, 1e-6);
    tu_assert_close(y[1], (1 + 1) / 2.0 * 0.5 - 1, 1e-6);
    tu_assert_close(y[2], (-1 - 1) / 1.0 * 2 + 1, 1e-6);
    tu_assert_close(y[3], (-5 + 1) / 2.0 * 0.5 - 1, 1e-6);
    lt_free(&t);
}
END_TEST

START_TEST(test_bn_gradients)
{
    int64_t d1[1] = {3}, d3[3] = {2, 3, 4};
    const ct_pass *passes[2] = {&train_pass, &infer_pass};
    for (int p = 0; p < 2; p++) {
        gradcheck_yaml("type: batch_normalization", 1, d1, 5, passes[p]);
        gradcheck_yaml("type: batch_normalization", 3, d3, 2, passes[p]);
        gradcheck_yaml("{type: batch_normalization, center: false}", 3, d3, 2, passes[p]);
        gradcheck_yaml("{type: batch_normalization, scale: false}", 1, d1, 4, passes[p]);
        gradcheck_yaml("{type: batch_normalization, center: false, scale: false}", 3, d3, 2,
                       passes[p]);
    }
}
END_TEST

/* ---- layer and group normalization layers ------------------------------------------------ */

START_TEST(test_ln_values_3d)
{
    /* (3, 5) per sample: each of the 3 positions is normalized over its 5 channels */
    int64_t dims[2] = {3, 5}, rows = 2, n = rows * 15;
    lt t;
    lt_ok(&t, "type: layer_normalization", "layer_normalization", 2, dims, rows);
    ck_assert_int_eq(t.l.nparams, 2);
    ck_assert_str_eq(t.l.params[0].name, "gamma");
    ck_assert_str_eq(t.l.params[1].name, "beta");
    ck_assert_int_eq(t.l.params[0].shape.dim[0], 5);
    ck_assert(t.l.params[0].trainable && t.l.params[1].trainable);
    float *x = fvec(n), *y = fvec(n), *g = param(&t, "gamma"), *b = param(&t, "beta");
    tu_fill(x, n, 60, -3.0f, 3.0f);
    ct_shape s = ct_shape_make(2, dims);
    ct_tensor tx = tensor(x, rows, s), ty = tensor(y, rows, s);
    lt_forward(&t.l, &train_pass, &tx, &ty);
    for (int64_t pos = 0; pos < rows * 3; pos++) {
        double m, v; /* the position's 5 channels read as 5 rows of one channel */
        ref_moments(x + pos * 5, 5, 1, 0, &m, &v);
        for (int j = 0; j < 5; j++) {
            double want = (x[pos * 5 + j] - m) / sqrt(v + 1e-3) * g[j] + b[j];
            tu_assert_close(y[pos * 5 + j], want, 1e-5);
        }
    }
    free(x), free(y);
    lt_free(&t);
}
END_TEST

START_TEST(test_gn_values)
{
    /* groups 2 on (3, 4): each sample has two groups of 3 positions x 2 channels */
    int64_t dims[2] = {3, 4}, rows = 2, n = rows * 12;
    lt t;
    lt_ok(&t, "{type: group_normalization, groups: 2, epsilon: 0.001}", "gn", 2, dims, rows);
    float *x = fvec(n), *y = fvec(n), *g = param(&t, "gamma"), *b = param(&t, "beta");
    tu_fill(x, n, 61, -2.0f, 2.0f);
    ct_shape s = ct_shape_make(2, dims);
    ct_tensor tx = tensor(x, rows, s), ty = tensor(y, rows, s);
    lt_forward(&t.l, &train_pass, &tx, &ty);
    for (int64_t r = 0; r < rows; r++)
        for (int grp = 0; grp < 2; grp++) {
            double sm = 0, sq = 0;
            for (int p = 0; p < 3; p++)
                for (int j = 2 * grp; j < 2 * grp + 2; j++)
                    sm += x[r * 12 + p * 4 + j];
            sm /= 6;
            for (int p = 0; p < 3; p++)
                for (int j = 2 * grp; j < 2 * grp + 2; j++) {
                    double d = x[r * 12 + p * 4 + j] - sm;
                    sq += d * d;
                }
            sq /= 6;
            for (int p = 0; p < 3; p++)
                for (int j = 2 * grp; j < 2 * grp + 2; j++) {
                    int64_t i = r * 12 + p * 4 + j;
                    tu_assert_close(y[i], (x[i] - sm) / sqrt(sq + 1e-3) * g[j] + b[j], 1e-5);
                }
        }
    lt_free(&t);
    /* groups 1: the whole sample is one group */
    lt_ok(&t, "{type: GroupNormalization, groups: 1, center: false, scale: false}", "gn", 2,
          dims, rows);
    ck_assert_int_eq(t.l.nparams, 0);
    lt_forward(&t.l, &train_pass, &tx, &ty);
    for (int64_t r = 0; r < rows; r++) {
        double sm = 0, sq = 0;
        for (int i = 0; i < 12; i++)
            sm += x[r * 12 + i];
        sm /= 12;
        for (int i = 0; i < 12; i++)
            sq += (x[r * 12 + i] - sm) * (x[r * 12 + i] - sm);
        sq /= 12;
        for (int i = 0; i < 12; i++)
            tu_assert_close(y[r * 12 + i], (x[r * 12 + i] - sm) / sqrt(sq + 1e-3), 1e-5);
    }
    free(x), free(y);
    lt_free(&t);
}
END_TEST

START_TEST(test_ln_gn_gradients)
{
    int64_t d1[1] = {6}, d2[2] = {3, 4}, d3[3] = {2, 2, 6};
    const ct_pass *passes[2] = {&train_pass, &infer_pass};
    for (int p = 0; p < 2; p++) {
        gradcheck_yaml("type: layer_normalization", 1, d1, 3, passes[p]);
        gradcheck_yaml("type: layer_normalization", 2, d2, 2, passes[p]);
        gradcheck_yaml("{type: layer_normalization, center: false}", 3, d3, 2, passes[p]);
        gradcheck_yaml("{type: layer_normalization, scale: false}", 2, d2, 2, passes[p]);
        gradcheck_yaml("{type: layer_normalization, center: false, scale: false}", 2, d2, 2,
                       passes[p]);
    }
    gradcheck_yaml("{type: group_normalization, groups: 2}", 2, d2, 3, &train_pass);
    gradcheck_yaml("{type: group_normalization, groups: 1}", 2, d2, 2, &train_pass);
    gradcheck_yaml("{type: group_normalization, groups: 3}", 3, d3, 2, &train_pass);
    gradcheck_yaml("{type: group_normalization, groups: 2, center: false}", 1, d1, 3,
                   &train_pass);
    gradcheck_yaml("{type: group_normalization, groups: 6, scale: false}", 3, d3, 2,
                   &infer_pass);
    gradcheck_yaml("{type: group_normalization, groups: 2, center: false, scale: false}", 2, d2,
                   2, &train_pass);
}
END_TEST

START_TEST(test_gn_params)
{
    int64_t dims[3] = {4, 4, 64};
    lt t;
    lt_ok(&t, "type: group_normalization", "group_normalization", 3, dims, 2);
    ck_assert_int_eq(t.l.nparams, 2);
    ck_assert_str_eq(t.l.params[0].name, "gamma");
    ck_assert_str_eq(t.l.params[1].name, "beta");
    ck_assert_int_eq(t.l.params[1].shape.dim[0], 64);
    /* the default of 32 groups was filled into the config */
    ct_node *gr = ct_map_get(t.root, "groups");
    ck_assert_ptr_nonnull(gr);
    ck_assert_str_eq(gr->scalar, "32");
    lt_free(&t);
}
END_TEST

/* ---- config errors ------------------------------------------------------------------------ */

START_TEST(test_config_errors)
{
    int64_t d2[2] = {3, 12}, d3[3] = {4, 4, 3};
    lt_fails("type: group_normalization", 2, d2, "gn",
             "layer.yaml:1:1: layer 'gn' (GroupNormalization): groups (32) must divide the "
             "number of channels (12) of the input (None, 3, 12)");
    lt_fails("{type: group_normalization, groups: 5}", 2, d2, "gn",
             "layer.yaml:1:1: layer 'gn' (GroupNormalization): groups (5) must divide the "
             "number of channels (12) of the input (None, 3, 12)");
    lt_fails("{type: group_normalization, groups: 0}", 2, d2, "gn",
             "layer.yaml:1:37: 'groups' must be at least 1, got 0");
    lt_fails("{type: batch_normalization, axis: 1}", 3, d3, "bn",
             "layer.yaml:1:35: layer 'bn' (BatchNormalization): only the last axis (-1 or 3) "
             "can be normalized for the input (None, 4, 4, 3), got axis 1");
    lt_fails("{type: layer_normalization, axis: -2}", 2, d2, "ln",
             "layer.yaml:1:35: layer 'ln' (LayerNormalization): only the last axis (-1 or 2) "
             "can be normalized for the input (None, 3, 12), got axis -2");
    lt_fails("{type: group_normalization, groups: 3, axis: 1}", 2, d2, "gn",
             "layer.yaml:1:46: layer 'gn' (GroupNormalization): only the last axis (-1 or 2) "
             "can be normalized for the input (None, 3, 12), got axis 1");
    lt_fails("{type: batch_normalization, momentum: 1.5}", 3, d3, "bn",
             "layer.yaml:1:39: layer 'bn' (BatchNormalization): momentum must be between 0 "
             "and 1, got 1.5");
    lt_fails("{type: batch_normalization, momentum: -0.1}", 3, d3, "bn",
             "layer.yaml:1:39: layer 'bn' (BatchNormalization): momentum must be between 0 "
             "and 1, got -0.1");
    lt_fails("{type: layer_normalization, epsilon: -1}", 2, d2, "ln",
             "layer.yaml:1:38: layer 'ln' (LayerNormalization): epsilon must be at least 0, "
             "got -1");
    lt_fails("{type: layer_normalization, rms_scaling: true}", 2, d2, "ln",
             "layer.yaml:1:42: layer 'ln' (LayerNormalization): rms_scaling true is not "
             "supported");
    lt_fails("{type: batch_normalization, groups: 2}", 3, d3, "bn",
             "layer.yaml:1:29: unknown key 'groups' in layer 'bn' (BatchNormalization); known "
             "keys: axis, momentum, epsilon, center, scale, beta_initializer, "
             "gamma_initializer, moving_mean_initializer, moving_variance_initializer, "
             "beta_regularizer, gamma_regularizer, type, name, inputs, trainable");
    int64_t d0[1] = {0};
    lt_fails("type: batch_normalization", 0, d0, "bn",
             "layer.yaml:1:1: layer 'bn' (BatchNormalization): expects an input with at least "
             "one axis, got (None,)");
}
END_TEST

static Suite *norm_suite(void)
{
    Suite *s = suite_create("norm");
    TCase *ops = tcase_create("ops");
    tcase_set_timeout(ops, 60);
    tcase_add_test(ops, test_bn_train_values);
    tcase_add_test(ops, test_bn_large_offset);
    tcase_add_test(ops, test_bn_infer_values);
    tcase_add_test(ops, test_bn_backward_values);
    tcase_add_test(ops, test_bn_backward_large_offset);
    tcase_add_test(ops, test_bn_fused_relu);
    tcase_add_test(ops, test_gn_forward_values);
    tcase_add_test(ops, test_gn_large_offset);
    tcase_add_test(ops, test_gn_backward_values);
    tcase_add_test(ops, test_gn_backward_large_offset);
    tcase_add_test(ops, test_thread_counts_identical);
    suite_add_tcase(s, ops);
    TCase *layers = tcase_create("layers");
    tcase_set_timeout(layers, 60);
    tcase_add_test(layers, test_bn_params);
    tcase_add_test(layers, test_bn_moving_statistics);
    tcase_add_test(layers, test_bn_inference_values);
    tcase_add_test(layers, test_bn_gradients);
    tcase_add_test(layers, test_ln_values_3d);
    tcase_add_test(layers, test_gn_values);
    tcase_add_test(layers, test_ln_gn_gradients);
    tcase_add_test(layers, test_gn_params);
    tcase_add_test(layers, test_config_errors);
    suite_add_tcase(s, layers);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(norm_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
