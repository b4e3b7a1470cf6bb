/* test_backend.c - the CPU backend, activations, the counter-based RNG, initializers and
 * regularizers. */
#include <float.h>
#include <inttypes.h>
#include <stdint.h>

#include "backend.h"
#include "backend_cpu.h"
#include "config.h"
#include "init.h"
#include "rng.h"
#include "testutil.h"
#include "parallel.h"
#include "thread_tuner.h"

static const ct_backend *be(void) { return ct_backend_cpu(); }

/* ---- memory ---------------------------------------------------------------------- */

START_TEST(test_alloc)
{
    size_t sizes[] = {0, 1, 63, 64, 65, 1000, 4096 * 3 + 5};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        unsigned char *p = be()->alloc(sizes[s]);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 64, 0);
        for (size_t i = 0; i < sizes[s]; i++)
            ck_assert_uint_eq(p[i], 0);
        if (sizes[s])
            memset(p, 0xab, sizes[s]); /* the whole requested size is writable */
        be()->free(p);
    }
    be()->free(NULL);
}
END_TEST

START_TEST(test_upload_download)
{
    float host[5] = {1, 2, 3, 4, 5}, back[5] = {0};
    float *dev = be()->alloc(sizeof host);
    be()->upload(dev, host, sizeof host);
    be()->download(back, dev, sizeof host);
    for (int i = 0; i < 5; i++)
        ck_assert_float_eq(back[i], host[i]);
    be()->free(dev);
    ck_assert_str_eq(be()->name, "cpu");
    ck_assert_int_eq(be()->device, CT_DEVICE_CPU);
}
END_TEST

/* ---- gemm ------------------------------------------------------------------------ */

/* op(X)[i][j] of a row-major matrix with leading dimension ld. */
static double op_at(const float *x, int64_t ld, bool trans, int64_t i, int64_t j)
{
    return trans ? x[j * ld + i] : x[i * ld + j];
}

static void check_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       float beta)
{
    /* Leading dimensions wider than needed, to catch confusing them with the sizes. */
    int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
    int64_t arows = ta ? k : m, brows = tb ? n : k;
    float *a = malloc(sizeof(float) * (size_t)(arows * lda));
    float *b = malloc(sizeof(float) * (size_t)(brows * ldb));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc));
    float *c0 = malloc(sizeof(float) * (size_t)(m * ldc));
    tu_fill(a, arows * lda, 1, -1, 1);
    tu_fill(b, brows * ldb, 2, -1, 1);
    tu_fill(c0, m * ldc, 3, -1, 1);
    if (beta == 0.0f) /* beta 0 must ignore what C held, NaN included */
        for (int64_t i = 0; i < m * ldc; i++)
            c0[i] = NAN;
    memcpy(c, c0, sizeof(float) * (size_t)(m * ldc));

    be()->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += op_at(a, lda, ta, i, p) * op_at(b, ldb, tb, p, j);
            double want = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)c0[i * ldc + j]);
            ck_assert_msg(fabs(c[i * ldc + j] - want) < 1e-5 * (1 + fabs(want)),
                          "ta=%d tb=%d (%d,%d): %g vs %g", ta, tb, (int)i, (int)j,
                          (double)c[i * ldc + j], want);
        }
        /* the padding column of C is untouched */
        ck_assert_msg(memcmp(&c[i * ldc + n], &c0[i * ldc + n], sizeof(float)) == 0,
                      "padding of C changed");
    }
    free(a);
    free(b);
    free(c);
    free(c0);
}

START_TEST(test_gemm_transposes)
{
    bool ta = _i & 1, tb = (_i >> 1) & 1;
    check_gemm(ta, tb, 7, 5, 9, 0.7f, 0.3f);
    check_gemm(ta, tb, 13, 11, 3, -1.5f, 1.0f);
    check_gemm(ta, tb, 1, 17, 33, 1.0f, 0.0f);
    check_gemm(ta, tb, 31, 1, 1, 2.0f, 0.0f);
}
END_TEST

START_TEST(test_gemm_k_zero)
{
    float c[6] = {1, 2, 3, 4, 5, 6}, a[1] = {0}, b[1] = {0};
    be()->gemm(false, false, 2, 3, 0, 1.0f, a, 1, b, 3, 0.5f, c, 3);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(c[i], 0.5f * (float)(i + 1));
    c[0] = NAN;
    be()->gemm(false, false, 2, 3, 0, 1.0f, a, 1, b, 3, 0.0f, c, 3);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(c[i], 0.0f);
}
END_TEST

/* gemm_packed against a plain sum: op(B) packed with and without the transpose, with no
 * addend, a separate one and C itself as the addend, for shapes that leave partial tiles
 * (m not a multiple of 6, n not of 16), under the register tiles and the plain layout. */
static void check_gemm_packed(bool tb, int addend, int64_t m, int64_t n, int64_t k)
{
    int64_t lda = k + 3, ldb = (tb ? k : n) + 2, ldc = n + 1, ldd = n + 5;
    int64_t brows = tb ? n : k;
    float *a = malloc(sizeof(float) * (size_t)(m * lda + 1));
    float *b = malloc(sizeof(float) * (size_t)(brows * ldb + 1));
    float *p = malloc(sizeof(float) * (size_t)(CT_GEMM_PACKED_FLOATS(k, n) + 1));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc));
    float *c0 = malloc(sizeof(float) * (size_t)(m * ldc));
    float *d = malloc(sizeof(float) * (size_t)(m * ldd));
    tu_fill(a, m * lda + 1, 4, -1, 1);
    tu_fill(b, brows * ldb + 1, 5, -1, 1);
    tu_fill(c0, m * ldc, 6, -1, 1);
    tu_fill(d, m * ldd, 7, -1, 1);
    if (addend == 0) /* without an addend C's old values must not matter */
        for (int64_t i = 0; i < m * ldc; i++)
            c0[i] = NAN;
    memcpy(c, c0, sizeof(float) * (size_t)(m * ldc));
    be()->gemm_pack_b(tb, k, n, b, ldb, p);
    const float *dd = addend == 0 ? NULL : addend == 1 ? d : c;
    be()->gemm_packed(m, n, k, a, lda, p, dd, addend == 1 ? ldd : ldc, c, ldc);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double want = addend == 0 ? 0.0 : addend == 1 ? d[i * ldd + j] : c0[i * ldc + j];
            for (int64_t q = 0; q < k; q++)
                want += op_at(a, lda, false, i, q) * op_at(b, ldb, tb, q, j);
            ck_assert_msg(fabs(c[i * ldc + j] - want) < 1e-5 * (1 + fabs(want)),
                          "tb=%d addend=%d %dx%dx%d (%d,%d): %g vs %g", tb, addend, (int)m,
                          (int)n, (int)k, (int)i, (int)j, (double)c[i * ldc + j], want);
        }
        ck_assert_msg(memcmp(&c[i * ldc + n], &c0[i * ldc + n], sizeof(float)) == 0,
                      "padding of C changed");
    }
    free(a), free(b), free(p), free(c), free(c0), free(d);
}

START_TEST(test_gemm_packed)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 9},  {13, 17, 33}, {64, 40, 31},
                                        {6, 16, 8}, {5, 33, 0}, {19, 130, 257}};
    bool tiles = ct_cpu_gemm_packed_tiles(-1);
    for (int mode = 0; mode < 2; mode++) {
        ct_cpu_gemm_packed_tiles(mode == 0 ? 0 : 1);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int tb = 0; tb < 2; tb++)
                for (int addend = 0; addend < 3; addend++)
                    check_gemm_packed(tb, addend, shapes[s][0], shapes[s][1], shapes[s][2]);
    }
    ct_cpu_gemm_packed_tiles(tiles ? 1 : 0);
}
END_TEST

/* The packed product gives the same bits with one thread or two. */
START_TEST(test_gemm_packed_threads)
{
    const int64_t m = 37, n = 300, k = 260;
    float *a = malloc(sizeof(float) * (size_t)(m * k)), *b = malloc(sizeof(float) * (size_t)(k * n));
    float *p = malloc(sizeof(float) * (size_t)CT_GEMM_PACKED_FLOATS(k, n));
    float *c[2];
    tu_fill(a, m * k, 8, -1, 1);
    tu_fill(b, k * n, 9, -1, 1);
    be()->gemm_pack_b(false, k, n, b, n, p);
    for (int t = 0; t < 2; t++) {
        ct_threads_set(t + 1);
        c[t] = calloc((size_t)(m * n), sizeof(float));
        be()->gemm_packed(m, n, k, a, k, p, NULL, 0, c[t], n);
    }
    ct_threads_set(1);
    ck_assert(memcmp(c[0], c[1], sizeof(float) * (size_t)(m * n)) == 0);
    free(a), free(b), free(p), free(c[0]), free(c[1]);
}
END_TEST

/* lstm_step_packed gives the bits of gemm_packed and lstm_step, with units a multiple of
 * 16 (the cell runs per block of units) and not, with Keras's activations and others. */
START_TEST(test_lstm_step_packed)
{
    const int64_t rows = 37, k = 45, units[] = {32, 29};
    const ct_act acts[2][2] = {{{CT_ACT_TANH, 0}, {CT_ACT_SIGMOID, 0}},
                               {{CT_ACT_RELU, 0}, {CT_ACT_HARD_SIGMOID, 0}}};
    for (int ui = 0; ui < 2; ui++)
        for (int ai = 0; ai < 2; ai++) {
            int64_t u = units[ui], gu = 4 * u, nu = rows * u, ldz = k + 3;
            float *z = malloc(sizeof(float) * (size_t)(rows * ldz));
            float *w = malloc(sizeof(float) * (size_t)(k * gu));
            float *p = malloc(sizeof(float) * (size_t)CT_GEMM_PACKED_FLOATS(k, gu));
            float *c0 = malloc(sizeof(float) * (size_t)nu), *out[2][6];
            tu_fill(z, rows * ldz, 21, -1, 1);
            tu_fill(w, k * gu, 22, -0.5f, 0.5f);
            tu_fill(c0, nu, 23, -2, 2);
            be()->gemm_pack_b(false, k, gu, w, gu, p);
            for (int v = 0; v < 2; v++) {
                for (int o = 0; o < 6; o++)
                    out[v][o] = calloc((size_t)(o < 2 ? 4 * nu : nu), sizeof(float));
                float *a = out[v][0], *y = out[v][1], *c1 = out[v][2], *tc = out[v][3];
                float *h = out[v][4];
                if (v == 0) {
                    be()->gemm_packed(rows, gu, k, z, ldz, p, NULL, 0, a, gu);
                    be()->lstm_step(acts[ai][0], acts[ai][1], a, y, c0, c1, tc, h, rows, u);
                } else {
                    be()->lstm_step_packed(acts[ai][0], acts[ai][1], z, ldz, k, p, a, y, c0, c1,
                                           tc, h, rows, u);
                }
            }
            for (int o = 0; o < 5; o++)
                ck_assert_msg(memcmp(out[0][o], out[1][o],
                                     sizeof(float) * (size_t)(o < 2 ? 4 * nu : nu)) == 0,
                              "units %d acts %d: output %d differs", (int)u, ai, o);
            /* the backward: dh = r U^T + d, then the cell's backward (r: 4u wide) */
            float *ut = malloc(sizeof(float) * (size_t)CT_GEMM_PACKED_FLOATS(gu, u));
            float *r = malloc(sizeof(float) * (size_t)(rows * gu)), *d = malloc(sizeof(float) * (size_t)nu);
            float *bk[2][3];
            tu_fill(r, rows * gu, 24, -1, 1);
            tu_fill(d, nu, 25, -1, 1);
            be()->gemm_pack_b(true, gu, u, w, gu, ut); /* w's first u rows as U (u x 4u) */
            for (int v = 0; v < 2; v++) {
                bk[v][0] = calloc((size_t)nu, sizeof(float));     /* dh */
                bk[v][1] = malloc(sizeof(float) * (size_t)nu);    /* dc */
                bk[v][2] = calloc((size_t)(4 * nu), sizeof(float)); /* da */
                tu_fill(bk[v][1], nu, 26, -1, 1);
                const ct_act act = acts[ai][0], rec = acts[ai][1];
                if (v == 0) {
                    be()->gemm_packed(rows, u, gu, r, gu, ut, d, u, bk[v][0], u);
                    be()->lstm_step_backward(act, rec, out[0][0], out[0][1], c0, out[0][2],
                                             out[0][3], bk[v][0], bk[v][1], bk[v][2], rows, u);
                } else {
                    be()->lstm_step_backward_packed(act, rec, r, gu, gu, ut, d, u, out[0][0],
                                                    out[0][1], c0, out[0][2], out[0][3],
                                                    bk[v][0], bk[v][1], bk[v][2], rows, u);
                }
            }
            for (int o = 0; o < 3; o++)
                ck_assert_msg(memcmp(bk[0][o], bk[1][o],
                                     sizeof(float) * (size_t)(o == 2 ? 4 * nu : nu)) == 0,
                              "units %d acts %d: backward output %d differs", (int)u, ai, o);
            for (int v = 0; v < 2; v++)
                for (int o = 0; o < 3; o++)
                    free(bk[v][o]);
            free(ut), free(r), free(d);
            for (int v = 0; v < 2; v++)
                for (int o = 0; o < 6; o++)
                    free(out[v][o]);
            free(z), free(w), free(p), free(c0);
        }
}
END_TEST

/* ---- element-wise ---------------------------------------------------------------- */

START_TEST(test_elementwise)
{
    enum { N = 37 };
    float x[N], y[N], z[N], y0[N];
    tu_fill(x, N, 11, -2, 2);
    tu_fill(y0, N, 12, -2, 2);

    be()->fill(y, N, 2.5f);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(y[i], 2.5f);

    be()->copy(y, x, N);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);

    memcpy(y, y0, sizeof y);
    be()->axpy(N, -0.75f, x, y);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq_tol(y[i], y0[i] - 0.75f * x[i], 1e-6f);

    memcpy(y, y0, sizeof y);
    be()->scale(N, 3.0f, y);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq_tol(y[i], 3.0f * y0[i], 1e-6f);

    /* add_scaled: axpy's bits, out apart or over either input */
    memcpy(y, y0, sizeof y);
    be()->axpy(N, -1.0f, x, y);
    be()->add_scaled(N, y0, -1.0f, x, z);
    ck_assert_int_eq(memcmp(y, z, sizeof z), 0);
    memcpy(z, y0, sizeof z);
    be()->add_scaled(N, z, -1.0f, x, z);
    ck_assert_int_eq(memcmp(y, z, sizeof z), 0);
    memcpy(y, y0, sizeof y);
    be()->axpy(N, 0.5f, x, y);
    memcpy(z, x, sizeof z);
    be()->add_scaled(N, y0, 0.5f, z, z);
    ck_assert_int_eq(memcmp(y, z, sizeof z), 0);

    be()->mul(N, x, y0, z);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(z[i], x[i] * y0[i]);
    memcpy(y, y0, sizeof y); /* out aliasing an input */
    be()->mul(N, x, y, y);
    ck_assert_int_eq(memcmp(y, z, sizeof z), 0);
}
END_TEST

START_TEST(test_rows)
{
    enum { R = 5, C = 7 };
    float y[R * C], y0[R * C], b[C], out[C];
    tu_fill(y0, R * C, 21, -1, 1);
    tu_fill(b, C, 22, -1, 1);

    memcpy(y, y0, sizeof y);
    be()->add_row_vector(y, b, R, C);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            ck_assert_float_eq(y[r * C + c], y0[r * C + c] + b[c]);

    for (int c = 0; c < C; c++)
        out[c] = NAN; /* beta 0 overwrites */
    be()->sum_rows(y0, out, R, C, 0.0f);
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int r = 0; r < R; r++)
            s += y0[r * C + c];
        ck_assert_float_eq_tol(out[c], s, 1e-5);
    }
    for (int c = 0; c < C; c++)
        out[c] = (float)c;
    be()->sum_rows(y0, out, R, C, 1.0f); /* beta 1 accumulates */
    for (int c = 0; c < C; c++) {
        double s = c;
        for (int r = 0; r < R; r++)
            s += y0[r * C + c];
        ck_assert_float_eq_tol(out[c], s, 1e-5);
    }
}
END_TEST

/* ---- activations: names ---------------------------------------------------------- */

START_TEST(test_act_parse)
{
    static const struct {
        const char *name;
        ct_activation kind;
        float alpha;
    } cases[] = {
        {"relu", CT_ACT_RELU, 0},         {"ReLU", CT_ACT_RELU, 0},
        {"relu6", CT_ACT_RELU6, 0},       {"leaky_relu", CT_ACT_LEAKY_RELU, 0.2f},
        {"LeakyReLU", CT_ACT_LEAKY_RELU, 0.2f}, {"elu", CT_ACT_ELU, 1.0f},
        {"ELU", CT_ACT_ELU, 1.0f},        {"selu", CT_ACT_SELU, 0},
        {"gelu", CT_ACT_GELU, 0},         {"silu", CT_ACT_SILU, 0},
        {"swish", CT_ACT_SILU, 0},        {"sigmoid", CT_ACT_SIGMOID, 0},
        {"hard_sigmoid", CT_ACT_HARD_SIGMOID, 0}, {"HardSigmoid", CT_ACT_HARD_SIGMOID, 0},
        {"tanh", CT_ACT_TANH, 0},         {"softplus", CT_ACT_SOFTPLUS, 0},
        {"softsign", CT_ACT_SOFTSIGN, 0}, {"softmax", CT_ACT_SOFTMAX, 0},
        {"Softmax", CT_ACT_SOFTMAX, 0},   {"log_softmax", CT_ACT_LOG_SOFTMAX, 0},
        {"linear", CT_ACT_LINEAR, 0},     {"Linear", CT_ACT_LINEAR, 0},
        {"none", CT_ACT_LINEAR, 0},       {"", CT_ACT_LINEAR, 0},
        {NULL, CT_ACT_LINEAR, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ct_act a = {CT_ACT_COUNT, -1};
        ck_assert_msg(ct_act_parse(cases[i].name, &a) == 0, "%s", cases[i].name);
        ck_assert_int_eq(a.kind, cases[i].kind);
        ck_assert_float_eq(a.alpha, cases[i].alpha);
    }
    ct_act a;
    ck_assert_int_eq(ct_act_parse("relu7", &a), -1);
    ck_assert_int_eq(ct_act_parse("soft_max_plus_a_very_long_name_indeed_xx", &a), -1);
    ck_assert_str_eq(ct_act_name(CT_ACT_LEAKY_RELU), "leaky_relu");
    ck_assert_str_eq(ct_act_name(CT_ACT_LOG_SOFTMAX), "log_softmax");
    /* every canonical name is listed and parses back to itself */
    for (int k = 0; k < CT_ACT_COUNT; k++) {
        ck_assert_ptr_nonnull(strstr(ct_act_names(), ct_act_name((ct_activation)k)));
        ck_assert_int_eq(ct_act_parse(ct_act_name((ct_activation)k), &a), 0);
        ck_assert_int_eq(a.kind, k);
    }
}
END_TEST

/* ---- activations: forward -------------------------------------------------------- */

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The formulas in double, written independently of the backend's float code. */
static double ref_scalar(ct_act a, double x)
{
    const double sa = 1.67326324235437728, ss = 1.05070098735548049;
    switch (a.kind) {
    case CT_ACT_RELU: return x > 0 ? x : 0;
    case CT_ACT_RELU6: return x < 0 ? 0 : x > 6 ? 6 : x;
    case CT_ACT_LEAKY_RELU: return x > 0 ? x : a.alpha * x;
    case CT_ACT_ELU: return x > 0 ? x : a.alpha * (exp(x) - 1);
    case CT_ACT_SELU: return ss * (x > 0 ? x : sa * (exp(x) - 1));
    case CT_ACT_GELU:
        if (a.alpha != 0)
            return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case CT_ACT_SILU: return x * ref_sigmoid(x);
    case CT_ACT_SIGMOID: return ref_sigmoid(x);
    case CT_ACT_HARD_SIGMOID: return x <= -3 ? 0 : x >= 3 ? 1 : (x + 3) / 6;
    case CT_ACT_TANH: return tanh(x);
    case CT_ACT_SOFTPLUS: return log(1 + exp(x));
    case CT_ACT_SOFTSIGN: return x / (1 + fabs(x));
    default: return x;
    }
}

static void ref_forward(ct_act a, const double *x, double *y, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        const double *xr = x + r * cols;
        double *yr = y + r * cols;
        if (a.kind != CT_ACT_SOFTMAX && a.kind != CT_ACT_LOG_SOFTMAX) {
            for (int c = 0; c < cols; c++)
                yr[c] = ref_scalar(a, xr[c]);
            continue;
        }
        double sum = 0;
        for (int c = 0; c < cols; c++)
            sum += exp(xr[c]);
        for (int c = 0; c < cols; c++)
            yr[c] = a.kind == CT_ACT_SOFTMAX ? exp(xr[c]) / sum : xr[c] - log(sum);
    }
}

static ct_act act_of(ct_activation kind, float alpha)
{
    ct_act a = {kind, alpha};
    return a;
}

static float fwd1(ct_act a, float x)
{
    float y;
    be()->act_forward(a, &x, &y, 1, 1);
    return y;
}

START_TEST(test_act_forward_values)
{
    /* hand-computed values */
    tu_assert_close(fwd1(act_of(CT_ACT_GELU, 0), 1.0f), 0.8413447460685429, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_GELU, 0), -1.5f), -0.10021080190328713, 1e-5);
    tu_assert_close(fwd1(act_of(CT_ACT_GELU, 1), 1.0f), 0.8411919906082768, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_SELU, 0), -1.0f), -1.1113307378125628, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_SELU, 0), 2.0f), 2.101401974710961, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_ELU, 1), -2.0f), -0.8646647167633873, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_ELU, 0.5f), -2.0f), 0.5 * -0.8646647167633873, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_SILU, 0), 1.0f), 0.7310585786300049, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_SILU, 0), -2.0f), -0.2384058440442351, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_SIGMOID, 0), 2.0f), 0.8807970779778823, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_TANH, 0), 0.5f), 0.46211715726000974, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_SOFTPLUS, 0), 1.0f), 1.3132616875182228, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_SOFTPLUS, 0), -3.0f), 0.04858735157374206, 1e-6);
    tu_assert_close(fwd1(act_of(CT_ACT_SOFTSIGN, 0), -3.0f), -0.75, 1e-7);
    tu_assert_close(fwd1(act_of(CT_ACT_LEAKY_RELU, 0.2f), -2.0f), -0.4, 1e-7);
    tu_assert_close(fwd1(act_of(CT_ACT_HARD_SIGMOID, 0), 1.5f), 0.75, 1e-7);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_HARD_SIGMOID, 0), -3.5f), 0.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_HARD_SIGMOID, 0), 4.0f), 1.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_RELU6, 0), 7.5f), 6.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_RELU6, 0), -1.0f), 0.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_RELU, 0), -0.0f), 0.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_LINEAR, 0), -1.25f), -1.25f);

    /* the extremes stay finite and saturate */
    ck_assert_float_eq(fwd1(act_of(CT_ACT_SOFTPLUS, 0), 100.0f), 100.0f);
    float sp = fwd1(act_of(CT_ACT_SOFTPLUS, 0), -100.0f); /* exp(-100), a denormal */
    ck_assert(sp >= 0.0f && sp < 1e-40f);
    float s = fwd1(act_of(CT_ACT_SIGMOID, 0), -100.0f);
    ck_assert(isfinite(s) && s >= 0.0f && s < 1e-40f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_SIGMOID, 0), 100.0f), 1.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_SILU, 0), -200.0f), -0.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_GELU, 0), -20.0f), 0.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_ELU, 1), -200.0f), -1.0f);
    ck_assert_float_eq(fwd1(act_of(CT_ACT_TANH, 0), 50.0f), 1.0f);
}
END_TEST

START_TEST(test_softmax_values)
{
    float x[6] = {1, 2, 3, 1001, 1002, 1003}, y[6];
    const double sm[3] = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
    const double lsm[3] = {-2.40760596444438, -1.4076059644443801, -0.40760596444438013};
    be()->act_forward(act_of(CT_ACT_SOFTMAX, 0), x, y, 2, 3);
    for (int i = 0; i < 6; i++) /* the shifted row must not overflow */
        tu_assert_close(y[i], sm[i % 3], 1e-6);
    be()->act_forward(act_of(CT_ACT_LOG_SOFTMAX, 0), x, y, 2, 3);
    for (int i = 0; i < 6; i++)
        tu_assert_close(y[i], lsm[i % 3], 1e-5);
    /* in place */
    be()->act_forward(act_of(CT_ACT_SOFTMAX, 0), x, x, 2, 3);
    for (int i = 0; i < 6; i++)
        tu_assert_close(x[i], sm[i % 3], 1e-6);
    float big[2] = {-1000, 1000}, out[2];
    be()->act_forward(act_of(CT_ACT_LOG_SOFTMAX, 0), big, out, 1, 2);
    ck_assert_float_eq_tol(out[0], -2000.0f, 1e-3f);
    ck_assert_float_eq(out[1], 0.0f);
}
END_TEST

/* attention_softmax against the generic softmax of the same rows, the causal ones over
 * their first i + 1 entries (past them: zeros, whatever the scores held); the backward
 * against the generic softmax's backward. Rows of 37 and 45 entries cover the eight-lane
 * sums' tails. */
START_TEST(test_attention_softmax)
{
    const int64_t blocks = 3, tq = 45, tv = 45, n = blocks * tq * tv;
    for (int causal = 0; causal < 2; causal++) {
        float *s = malloc((size_t)n * sizeof *s), *p = malloc((size_t)n * sizeof *p);
        float *d = malloc((size_t)n * sizeof *d), *ref = malloc((size_t)n * sizeof *ref);
        float *dref = malloc((size_t)n * sizeof *dref);
        tu_fill(s, n, 31 + (unsigned)causal, -9, 9);
        tu_fill(d, n, 41 + (unsigned)causal, -1, 1);
        memcpy(p, s, (size_t)n * sizeof *s);
        if (causal)
            for (int64_t r = 0; r < blocks * tq; r++)
                for (int64_t j = r % tq + 1; j < tv; j++)
                    p[r * tv + j] = NAN; /* never read */
        be()->attention_softmax(p, blocks, tq, tv, causal);
        for (int64_t r = 0; r < blocks * tq; r++) {
            int64_t len = causal ? r % tq + 1 : tv;
            be()->act_forward(act_of(CT_ACT_SOFTMAX, 0), s + r * tv, ref + r * tv, 1, len);
            for (int64_t j = len; j < tv; j++)
                ref[r * tv + j] = 0.0f;
            memcpy(dref + r * tv, d + r * tv, (size_t)tv * sizeof *d);
            be()->act_backward(act_of(CT_ACT_SOFTMAX, 0), NULL, ref + r * tv, dref + r * tv,
                               dref + r * tv, 1, len);
            for (int64_t j = len; j < tv; j++)
                dref[r * tv + j] = 0.0f;
        }
        for (int64_t i = 0; i < n; i++)
            tu_assert_close(p[i], ref[i], 2e-6);
        if (causal) /* past the diagonal d is not read */
            for (int64_t r = 0; r < blocks * tq; r++)
                for (int64_t j = r % tq + 1; j < tv; j++)
                    d[r * tv + j] = NAN;
        be()->attention_softmax_backward(ref, d, blocks, tq, tv, causal);
        for (int64_t i = 0; i < n; i++) /* d - dot cancels: an absolute part too */
            ck_assert_msg(fabs((double)d[i] - dref[i]) <= 1e-7 + 1e-5 * fabs(dref[i]),
                          "%lld: %.9g against %.9g", (long long)i, d[i], dref[i]);
        free(s), free(p), free(d), free(ref), free(dref);
    }
}
END_TEST

/* gemm_batched_causal against gemm_batched: the lower triangle of a product (the scores'
 * case, t = 0) and products with a lower triangular A, plain (t = 1) and transposed
 * (t = 2), on sizes that leave partial tiles (37 positions, widths 16, 19 and 5) and
 * strided operands, as attention's heads are. */
START_TEST(test_gemm_batched_causal)
{
    const int64_t T = 37, batch = 3, widths[3] = {16, 19, 5};
    for (int w = 0; w < 3; w++)
        for (int t = 0; t < 3; t++) {
            int64_t d = widths[w], ld = d + 3; /* strided, as one head of several */
            float *sq = calloc((size_t)(batch * T * T), sizeof(float));
            float *x = calloc((size_t)(batch * T * ld), sizeof(float));
            float *y = calloc((size_t)(batch * T * ld), sizeof(float));
            float *want = calloc((size_t)(batch * T * (t ? ld : T)), sizeof(float));
            float *got = calloc((size_t)(batch * T * (t ? ld : T)), sizeof(float));
            tu_fill(sq, batch * T * T, 51, -1, 1);
            tu_fill(x, batch * T * ld, 52, -1, 1);
            tu_fill(y, batch * T * ld, 53, -1, 1);
            for (int64_t b = 0; b < batch; b++) /* A lower triangular */
                for (int64_t i = 0; i < T; i++)
                    for (int64_t j = i + 1; j < T; j++)
                        sq[(b * T + i) * T + j] = 0.0f;
            if (t == 0) {
                be()->gemm_batched(false, true, T, T, d, 0.5f, x, ld, T * ld, y, ld, T * ld, 0.0f,
                                   want, T, T * T, batch);
                be()->gemm_batched_causal(false, true, T, T, d, 0.5f, x, ld, T * ld, y, ld, T * ld,
                                          got, T, T * T, batch);
            } else {
                bool ta = t == 2;
                be()->gemm_batched(ta, false, T, d, T, 0.5f, sq, T, T * T, x, ld, T * ld, 0.0f,
                                   want, ld, T * ld, batch);
                be()->gemm_batched_causal(ta, false, T, d, T, 0.5f, sq, T, T * T, x, ld, T * ld,
                                          got, ld, T * ld, batch);
            }
            for (int64_t b = 0; b < batch; b++)
                for (int64_t i = 0; i < T; i++)
                    for (int64_t j = 0; j < (t ? d : i + 1); j++) {
                        int64_t at = t ? (b * T + i) * ld + j : (b * T + i) * T + j;
                        ck_assert_msg(fabsf(got[at] - want[at]) <= 1e-5f,
                                      "case %d width %lld: [%lld][%lld][%lld] %.9g against %.9g",
                                      t, (long long)d, (long long)b, (long long)i, (long long)j,
                                      got[at], want[at]);
                    }
            if (t) /* the padding between rows is not written */
                for (int64_t r = 0; r < batch * T; r++)
                    ck_assert_float_eq(got[r * ld + d], 0.0f);
            free(sq), free(x), free(y), free(want), free(got);
        }
}
END_TEST

/* Every activation with the parameters worth checking. */
static const ct_act all_acts[] = {
    {CT_ACT_LINEAR, 0}, {CT_ACT_RELU, 0},       {CT_ACT_RELU6, 0},
    {CT_ACT_LEAKY_RELU, 0.2f}, {CT_ACT_LEAKY_RELU, 0.01f}, {CT_ACT_ELU, 1.0f},
    {CT_ACT_ELU, 0.3f}, {CT_ACT_SELU, 0},       {CT_ACT_GELU, 0},
    {CT_ACT_GELU, 1},   {CT_ACT_SILU, 0},       {CT_ACT_SIGMOID, 0},
    {CT_ACT_HARD_SIGMOID, 0}, {CT_ACT_TANH, 0}, {CT_ACT_SOFTPLUS, 0},
    {CT_ACT_SOFTSIGN, 0}, {CT_ACT_SOFTMAX, 0},  {CT_ACT_LOG_SOFTMAX, 0},
};
#define N_ACTS ((int)(sizeof all_acts / sizeof all_acts[0]))

enum { AR = 4, AC = 9 };

/* Inputs in [-7, 7] kept away from the kinks (0, +-3, 6) by more than the FD step. */
static void act_inputs(float *x, int n, unsigned seed)
{
    tu_fill(x, n, seed, -7, 7);
    for (int i = 0; i < n; i++) {
        const float kinks[] = {0, 3, -3, 6};
        for (int k = 0; k < 4; k++)
            if (fabsf(x[i] - kinks[k]) < 0.05f)
                x[i] = kinks[k] + 0.1f;
    }
}

START_TEST(test_act_forward_sweep)
{
    ct_act a = all_acts[_i];
    float x[AR * AC], y[AR * AC];
    double xd[AR * AC], yd[AR * AC];
    act_inputs(x, AR * AC, 31 + _i);
    for (int i = 0; i < AR * AC; i++)
        xd[i] = x[i];
    be()->act_forward(a, x, y, AR, AC);
    ref_forward(a, xd, yd, AR, AC);
    for (int i = 0; i < AR * AC; i++)
        ck_assert_msg(tu_relerr(y[i], yd[i]) < 2e-6, "%s(%g) = %.9g, want %.9g",
                      ct_act_name(a.kind), (double)x[i], (double)y[i], yd[i]);
    be()->act_forward(a, x, x, AR, AC); /* in place gives the same */
    ck_assert_int_eq(memcmp(x, y, sizeof y), 0);
}
END_TEST

/* GELU (the exact erf form) against erfc in double at every 1/4096 over [-13, 13]: the
 * forward within 1e-6 relative wherever the value is a normal float (fastmath.h), and so
 * is its derivative (from x and y, as the backward takes it), relative to its terms' size. */
START_TEST(test_gelu_accuracy)
{
    enum { N = 26 * 4096 + 1 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *g = malloc(N * sizeof *g);
    float *ones = malloc(N * sizeof *ones);
    ck_assert(x && y && g && ones);
    for (int i = 0; i < N; i++) {
        x[i] = -13.0f + (float)i / 4096.0f; /* exact */
        ones[i] = 1.0f;
    }
    ct_act a = act_of(CT_ACT_GELU, 0);
    be()->act_forward(a, x, y, 1, N);
    be()->act_backward(a, x, y, ones, g, 1, N);
    double worst = 0, worst_grad = 0;
    int at = 0, at_grad = 0;
    for (int i = 0; i < N; i++) {
        double xd = x[i], phi = 0.5 * erfc(-xd / sqrt(2.0));
        double bump = xd * exp(-0.5 * xd * xd) / sqrt(2 * M_PI);
        double want = xd * phi, dwant = phi + bump;
        /* the derivative's error relative to its terms' size: it crosses 0 near -0.75 */
        double dsize = phi + fabs(bump);
        if (fabs(want) >= FLT_MIN && fabs((double)y[i] - want) / fabs(want) > worst) {
            worst = fabs((double)y[i] - want) / fabs(want);
            at = i;
        }
        if (dsize >= FLT_MIN &&
            fabs((double)g[i] - dwant) / dsize > worst_grad) {
            worst_grad = fabs((double)g[i] - dwant) / dsize;
            at_grad = i;
        }
    }
    ck_assert_msg(worst < 1e-6, "gelu(%g): relative error %g", (double)x[at], worst);
    ck_assert_msg(worst_grad < 1e-6, "gelu'(%g): relative error %g", (double)x[at_grad],
                  worst_grad);
    free(x);
    free(y);
    free(g);
    free(ones);
}
END_TEST

/* ---- activations: backward ------------------------------------------------------- */

static double weighted_loss(ct_act a, const double *x, const double *w)
{
    double y[AR * AC], s = 0;
    ref_forward(a, x, y, AR, AC);
    for (int i = 0; i < AR * AC; i++)
        s += w[i] * y[i];
    return s;
}

START_TEST(test_act_backward_fd)
{
    ct_act a = all_acts[_i];
    float x[AR * AC], y[AR * AC], dy[AR * AC], dx[AR * AC];
    double xd[AR * AC], wd[AR * AC];
    act_inputs(x, AR * AC, 41 + _i);
    tu_fill(dy, AR * AC, 51 + _i, -1, 1);
    for (int i = 0; i < AR * AC; i++) {
        xd[i] = x[i];
        wd[i] = dy[i];
    }
    be()->act_forward(a, x, y, AR, AC);
    be()->act_backward(a, x, y, dy, dx, AR, AC);

    const double h = 1e-5;
    for (int i = 0; i < AR * AC; i++) {
        double keep = xd[i];
        xd[i] = keep + h;
        double up = weighted_loss(a, xd, wd);
        xd[i] = keep - h;
        double down = weighted_loss(a, xd, wd);
        xd[i] = keep;
        double fd = (up - down) / (2 * h);
        ck_assert_msg(tu_relerr(dx[i], fd) < 1e-4, "%s alpha %g at x=%g: dx %.9g, fd %.9g",
                      ct_act_name(a.kind), (double)a.alpha, (double)x[i], (double)dx[i], fd);
    }

    /* dx may be dy itself */
    float inplace[AR * AC];
    memcpy(inplace, dy, sizeof dy);
    be()->act_backward(a, x, y, inplace, inplace, AR, AC);
    ck_assert_int_eq(memcmp(inplace, dx, sizeof dx), 0);
}
END_TEST

/* bias_act equals bias then act_forward; for the activations whose derivative follows
 * from y, bias_act_backward equals act_backward, and its column sums are the bias
 * gradient (sums in double as the reference). */
START_TEST(test_bias_act_fused)
{
    ct_act a = all_acts[_i];
    if (a.kind == CT_ACT_SOFTMAX || a.kind == CT_ACT_LOG_SOFTMAX)
        return; /* row-wise: not element-wise, never fused */
    float x[AR * AC], b[AC], z[AR * AC], y[AR * AC], yf[AR * AC];
    float dy[AR * AC], dx[AR * AC], db[AC];
    act_inputs(x, AR * AC, 61 + _i);
    tu_fill(b, AC, 62 + _i, -0.04f, 0.04f); /* small: z stays off the kinks */
    for (int r = 0; r < AR; r++)
        for (int c = 0; c < AC; c++)
            z[r * AC + c] = x[r * AC + c] + b[c];
    be()->act_forward(a, z, y, AR, AC);
    memcpy(yf, x, sizeof x);
    be()->bias_act(a, b, yf, AR, AC);
    ck_assert_int_eq(memcmp(yf, y, sizeof y), 0);
    /* bias_act_to: z kept with the bias added, y the same bits; and without a bias */
    float zk[AR * AC], yk[AR * AC];
    memcpy(zk, x, sizeof x);
    be()->bias_act_to(a, b, zk, yk, AR, AC);
    ck_assert_int_eq(memcmp(zk, z, sizeof z), 0);
    ck_assert_int_eq(memcmp(yk, y, sizeof y), 0);
    be()->bias_act_to(a, NULL, zk, yk, AR, AC);
    ck_assert_int_eq(memcmp(zk, z, sizeof z), 0);
    ck_assert_int_eq(memcmp(yk, y, sizeof y), 0);
    bool from_y = ct_act_from_output(a);
    ck_assert_int_eq(from_y, a.kind == CT_ACT_LINEAR || a.kind == CT_ACT_RELU ||
                                 a.kind == CT_ACT_RELU6 || a.kind == CT_ACT_SIGMOID ||
                                 a.kind == CT_ACT_HARD_SIGMOID || a.kind == CT_ACT_TANH ||
                                 (a.kind == CT_ACT_LEAKY_RELU && a.alpha > 0));
    if (!from_y)
        return;
    tu_fill(dy, AR * AC, 63 + _i, -1, 1);
    be()->act_backward(a, z, y, dy, dx, AR, AC);
    be()->bias_act_backward(a, y, dy, db, AR, AC);
    for (int i = 0; i < AR * AC; i++)
        ck_assert_msg(tu_relerr(dy[i], dx[i]) < 1e-5, "%s at z=%g: %.9g from y, %.9g from z",
                      ct_act_name(a.kind), (double)z[i], (double)dy[i], (double)dx[i]);
    for (int c = 0; c < AC; c++) {
        double sum = 0;
        for (int r = 0; r < AR; r++)
            sum += dx[r * AC + c];
        tu_assert_close(db[c], sum, 1e-5);
    }
}
END_TEST

START_TEST(test_act_backward_edges)
{
    float x[5] = {0.0f, -0.0f, 6.0f, 3.0f, -3.0f}, y[5], dy[5] = {1, 1, 1, 1, 1}, dx[5];
    be()->act_forward(act_of(CT_ACT_RELU, 0), x, y, 1, 2);
    be()->act_backward(act_of(CT_ACT_RELU, 0), x, y, dy, dx, 1, 2);
    ck_assert_float_eq(dx[0], 0.0f); /* relu'(0) = 0 */
    ck_assert_float_eq(dx[1], 0.0f);
    be()->act_backward(act_of(CT_ACT_RELU6, 0), x, y, dy, dx, 1, 3);
    ck_assert_float_eq(dx[2], 0.0f);
    be()->act_backward(act_of(CT_ACT_HARD_SIGMOID, 0), x, y, dy, dx, 1, 5);
    ck_assert_float_eq(dx[0], 1.0f / 6.0f);
    ck_assert_float_eq(dx[3], 0.0f);
    ck_assert_float_eq(dx[4], 0.0f);

    /* saturated sigmoid / softplus gradients are finite */
    float big[4] = {-100, 100, -1000, 1000}, ybig[4], ones[4] = {1, 1, 1, 1}, g[4];
    const ct_activation kinds[] = {CT_ACT_SIGMOID, CT_ACT_SOFTPLUS, CT_ACT_SILU, CT_ACT_GELU,
                                   CT_ACT_TANH, CT_ACT_ELU, CT_ACT_SELU, CT_ACT_SOFTSIGN};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        ct_act a = act_of(kinds[k], kinds[k] == CT_ACT_ELU ? 1.0f : 0.0f);
        be()->act_forward(a, big, ybig, 1, 4);
        be()->act_backward(a, big, ybig, ones, g, 1, 4);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(isfinite(ybig[i]) && isfinite(g[i]), "%s at %g",
                          ct_act_name(kinds[k]), (double)big[i]);
    }
    be()->act_backward(act_of(CT_ACT_SOFTPLUS, 0), big, ybig, ones, g, 1, 4);
    ck_assert_float_eq(g[1], 1.0f);
    ck_assert_float_eq_tol(g[0], 0.0f, 1e-30f);
}
END_TEST

/* ---- dropout --------------------------------------------------------------------- */

START_TEST(test_dropout_mask)
{
    enum { N = 100000 };
    float *m = malloc(N * sizeof(float)), *m2 = malloc(N * sizeof(float));
    uint64_t key = ct_rng_key(7, CT_RNG_DROPOUT, 3, 0);
    const float rate = 0.3f, keep = 1.0f / (1.0f - rate);

    be()->dropout_mask(m, N, rate, key, 1000);
    long kept = 0;
    for (int i = 0; i < N; i++) {
        ck_assert(m[i] == 0.0f || m[i] == keep);
        ck_assert_int_eq(m[i] != 0.0f, ct_rng_uniform(key, 1000 + (uint64_t)i) >= rate);
        kept += m[i] != 0.0f;
    }
    double p = 1 - rate, sigma = sqrt(N * p * (1 - p));
    ck_assert_msg(fabs(kept - N * p) < 3 * sigma, "kept %ld of %d", kept, N);

    /* counter0 shifts the stream; the same arguments give the same mask */
    be()->dropout_mask(m2, N - 10, rate, key, 1010);
    ck_assert_int_eq(memcmp(m + 10, m2, (N - 10) * sizeof(float)), 0);
    be()->dropout_mask(m2, N, rate, key, 1000);
    ck_assert_int_eq(memcmp(m, m2, N * sizeof(float)), 0);
    be()->dropout_mask(m2, N, rate, ct_rng_key(7, CT_RNG_DROPOUT, 4, 0), 1000);
    ck_assert_int_ne(memcmp(m, m2, N * sizeof(float)), 0);

    be()->dropout_mask(m, N, 0.0f, key, 0);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(m[i], 1.0f);
    free(m);
    free(m2);
}
END_TEST

/* ---- rng ------------------------------------------------------------------------- */

START_TEST(test_rng_fixed_values)
{
    /* Pinned outputs: a change here breaks reproducibility of every stored run. */
    uint64_t k = ct_rng_key(42, 1, 2, 3);
    ck_assert_uint_eq(k, 0x9662d7598b70db79ull);
    ck_assert_uint_eq(ct_rng_u64(0, 0), 0x25c3ee710b1e100cull);
    ck_assert_uint_eq(ct_rng_u64(k, 7), 0xa9562b6fa30ac387ull);
    ck_assert_float_eq(ct_rng_uniform(k, 7), (float)(0xa9562b6fa30ac387ull >> 40) / 16777216.0f);
    ck_assert_float_eq_tol(ct_rng_normal(k, 7), 0.322179437f, 1e-6f);
    int64_t p[10];
    const int64_t want[10] = {7, 9, 5, 2, 8, 6, 4, 0, 3, 1};
    ct_rng_permutation(ct_rng_key(42, 3, 0, 0), p, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(p[i], want[i]);
}
END_TEST

START_TEST(test_rng_keys)
{
    static const uint64_t args[][4] = {
        {1, 0, 0, 0}, {2, 0, 0, 0}, {1, 1, 0, 0}, {1, 0, 1, 0}, {1, 0, 0, 1},
        {1, 1, 2, 3}, {1, 3, 2, 1}, {1, 2, 1, 3}, {0, 0, 0, 0}, {1, 0, 0, 2},
    };
    enum { N = sizeof args / sizeof args[0] };
    uint64_t keys[N];
    for (int i = 0; i < N; i++) {
        keys[i] = ct_rng_key(args[i][0], args[i][1], args[i][2], args[i][3]);
        ck_assert_uint_eq(keys[i], ct_rng_key(args[i][0], args[i][1], args[i][2], args[i][3]));
        for (int j = 0; j < i; j++) {
            ck_assert_uint_ne(keys[i], keys[j]);
            ck_assert_uint_ne(ct_rng_u64(keys[i], 0), ct_rng_u64(keys[j], 0));
        }
    }
    /* neighbouring counters and keys differ in about half their bits */
    long bits = 0;
    for (uint64_t c = 0; c < 1000; c++) {
        bits += __builtin_popcountll(ct_rng_u64(5, c) ^ ct_rng_u64(5, c + 1));
        bits += __builtin_popcountll(ct_rng_u64(c, 9) ^ ct_rng_u64(c + 1, 9));
    }
    ck_assert_msg(fabs(bits / 2000.0 - 32) < 0.5, "mean flipped bits %g", bits / 2000.0);
}
END_TEST

START_TEST(test_rng_uniform)
{
    enum { N = 100000 };
    uint64_t key = ct_rng_key(3, CT_RNG_NOISE, 0, 0);
    double s = 0, s2 = 0, lag = 0, prev = 0;
    long bitcount[64] = {0};
    for (uint64_t i = 0; i < N; i++) {
        float u = ct_rng_uniform(key, i);
        ck_assert(u >= 0.0f && u < 1.0f);
        ck_assert_float_eq(u * 16777216.0f, floorf(u * 16777216.0f)); /* 24 bits */
        s += u;
        s2 += (double)u * u;
        lag += (u - 0.5) * (prev - 0.5);
        prev = u;
        uint64_t r = ct_rng_u64(key, i);
        for (int b = 0; b < 64; b++)
            bitcount[b] += (r >> b) & 1;
    }
    double mean = s / N, var = s2 / N - mean * mean;
    ck_assert_msg(fabs(mean - 0.5) < 4 * sqrt(1.0 / 12 / N), "mean %g", mean);
    ck_assert_msg(fabs(var - 1.0 / 12) < 0.002, "variance %g", var);
    ck_assert_msg(fabs(lag / N) < 4 * (1.0 / 12) / sqrt(N), "lag-1 covariance %g", lag / N);
    for (int b = 0; b < 64; b++) /* every bit is a fair coin (5 sigma) */
        ck_assert_msg(labs(bitcount[b] - N / 2) < 5 * sqrt(N / 4.0), "bit %d: %ld", b,
                      bitcount[b]);
    ck_assert_uint_eq(ct_rng_u64(key, 12345), ct_rng_u64(key, 12345));
}
END_TEST

START_TEST(test_rng_normal)
{
    enum { N = 100000 };
    uint64_t key = ct_rng_key(4, CT_RNG_INIT, 1, 0);
    double s = 0, s2 = 0, s4 = 0;
    long beyond2 = 0;
    for (uint64_t i = 0; i < N; i++) {
        double z = ct_rng_normal(key, i);
        ck_assert(isfinite(z));
        s += z;
        s2 += z * z;
        s4 += z * z * z * z;
        beyond2 += fabs(z) > 2;
    }
    double mean = s / N, sd = sqrt(s2 / N - mean * mean);
    ck_assert_msg(fabs(mean) < 0.015, "mean %g", mean);
    ck_assert_msg(fabs(sd - 1) < 0.01, "std %g", sd);
    ck_assert_msg(fabs(s4 / N - 3) < 0.1, "fourth moment %g", s4 / N);
    /* P(|z| > 2) = 0.0455 */
    ck_assert_msg(fabs(beyond2 / (double)N - 0.0455) < 0.003, "tail %ld", beyond2);
}
END_TEST

START_TEST(test_rng_below_permutation)
{
    uint64_t key = ct_rng_key(5, CT_RNG_SHUFFLE, 0, 0);
    long counts[3] = {0};
    for (uint64_t i = 0; i < 30000; i++) {
        uint64_t v = ct_rng_below(key, i, 3);
        ck_assert_uint_lt(v, 3);
        counts[v]++;
    }
    for (int v = 0; v < 3; v++)
        ck_assert_msg(labs(counts[v] - 10000) < 5 * sqrt(30000 * 2.0 / 9), "count %ld",
                      counts[v]);
    ck_assert_uint_eq(ct_rng_below(key, 9, 1), 0);
    /* a bound near 2^64 rejects most of nothing but still stays below it */
    uint64_t huge = UINT64_MAX - 5;
    for (uint64_t i = 0; i < 100; i++)
        ck_assert_uint_lt(ct_rng_below(key, i, huge), huge);

    enum { P = 1000 };
    int64_t a[P], b[P], c[P];
    char seen[P] = {0};
    ct_rng_permutation(key, a, P);
    ct_rng_permutation(key, b, P);
    ct_rng_permutation(ct_rng_key(6, CT_RNG_SHUFFLE, 0, 0), c, P);
    int fixed = 0;
    for (int i = 0; i < P; i++) {
        ck_assert(a[i] >= 0 && a[i] < P && !seen[a[i]]);
        seen[a[i]] = 1;
        fixed += a[i] == i;
    }
    ck_assert_int_le(fixed, 8); /* expected 1 fixed point for a random permutation */
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    ck_assert_int_ne(memcmp(a, c, sizeof a), 0);
    int64_t one[1] = {42};
    ct_rng_permutation(key, one, 1);
    ck_assert_int_eq(one[0], 0);
    ct_rng_permutation(key, one, 0);
}
END_TEST

/* ---- initializers ---------------------------------------------------------------- */

static ct_shape shape2(int64_t a, int64_t b)
{
    int64_t d[2] = {a, b};
    return ct_shape_make(2, d);
}

static double max_abs(const float *w, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(w[i]));
    return m;
}

static void moments(const float *w, int64_t n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += w[i];
        s2 += (double)w[i] * w[i];
    }
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean);
}

START_TEST(test_init_glorot_uniform)
{
    ct_shape s = shape2(784, 256);
    int64_t n = ct_shape_size(&s);
    float *w = malloc(sizeof(float) * (size_t)n), *w2 = malloc(sizeof(float) * (size_t)n);
    ct_init init = {.kind = CT_INIT_GLOROT_UNIFORM, .a = 0, .b = 0};
    uint64_t key = ct_rng_key(1, CT_RNG_INIT, 0, 0);
    ct_init_fill(&init, w, &s, key);
    double limit = sqrt(6.0 / (784 + 256)), mean, sd;
    double m = max_abs(w, n);
    ck_assert_msg(m <= limit && m > 0.95 * limit, "max %g, limit %g", m, limit);
    moments(w, n, &mean, &sd);
    ck_assert_msg(fabs(sd - limit / sqrt(3)) < 0.01 * limit, "std %g", sd);
    ct_init_fill(&init, w2, &s, key);
    ck_assert_int_eq(memcmp(w, w2, sizeof(float) * (size_t)n), 0);
    ct_init_fill(&init, w2, &s, ct_rng_key(1, CT_RNG_INIT, 1, 0));
    ck_assert_int_ne(memcmp(w, w2, sizeof(float) * (size_t)n), 0);
    free(w);
    free(w2);
}
END_TEST

START_TEST(test_init_variance_family)
{
    int64_t conv[4] = {3, 3, 4, 8}; /* fan_in 36, fan_out 72 */
    ct_shape cs = ct_shape_make(4, conv), ds = shape2(784, 256);
    int64_t one[1] = {10};
    ct_shape vs = ct_shape_make(1, one);
    float *w = malloc(sizeof(float) * 784 * 256);
    uint64_t key = ct_rng_key(2, CT_RNG_INIT, 0, 0);
    double mean, sd;

    /* he_normal: truncated at 2 stddev_used, with the truncation keeping the variance */
    ct_init init = {.kind = CT_INIT_HE_NORMAL, .a = 0, .b = 0};
    ct_init_fill(&init, w, &ds, key);
    double used = sqrt(2.0 / 784) / 0.87962566103423978;
    ck_assert_msg(max_abs(w, 784 * 256) <= 2 * used * (1 + 1e-6), "max %g", max_abs(w, 784 * 256));
    moments(w, 784 * 256, &mean, &sd);
    ck_assert_msg(fabs(sd / sqrt(2.0 / 784) - 1) < 0.01, "std %g", sd);
    ck_assert_msg(fabs(mean) < 0.01 * sd, "mean %g", mean);

    init.kind = CT_INIT_GLOROT_NORMAL;
    ct_init_fill(&init, w, &ds, key);
    moments(w, 784 * 256, &mean, &sd);
    ck_assert_msg(fabs(sd / sqrt(2.0 / 1040) - 1) < 0.01, "std %g", sd);

    init.kind = CT_INIT_LECUN_NORMAL;
    ct_init_fill(&init, w, &ds, key);
    moments(w, 784 * 256, &mean, &sd);
    ck_assert_msg(fabs(sd / sqrt(1.0 / 784) - 1) < 0.01, "std %g", sd);

    /* conv fans include the receptive field */
    init.kind = CT_INIT_LECUN_UNIFORM;
    ct_init_fill(&init, w, &cs, key);
    double lim = sqrt(3.0 / 36);
    ck_assert(max_abs(w, 288) <= lim && max_abs(w, 288) > 0.9 * lim);
    init.kind = CT_INIT_GLOROT_UNIFORM;
    ct_init_fill(&init, w, &cs, key);
    lim = sqrt(6.0 / (36 + 72));
    ck_assert(max_abs(w, 288) <= lim && max_abs(w, 288) > 0.9 * lim);
    /* a 1-D shape uses its size for both fans */
    init.kind = CT_INIT_HE_UNIFORM;
    float v[10];
    ct_init_fill(&init, v, &vs, key);
    ck_assert(max_abs(v, 10) <= sqrt(6.0 / 10) && max_abs(v, 10) > 0.2);
    free(w);
}
END_TEST

START_TEST(test_init_plain)
{
    ct_shape s = shape2(50, 40);
    float w[2000];
    uint64_t key = ct_rng_key(3, CT_RNG_INIT, 0, 0);
    double mean, sd;
    ct_init init = {.kind = CT_INIT_CONSTANT, .a = 0.25, .b = 0};
    ct_init_fill(&init, w, &s, key);
    for (int i = 0; i < 2000; i++)
        ck_assert_float_eq(w[i], 0.25f);
    init = (ct_init){.kind = CT_INIT_ZEROS, .a = 0, .b = 0};
    ct_init_fill(&init, w, &s, key);
    for (int i = 0; i < 2000; i++)
        ck_assert_float_eq(w[i], 0.0f);
    init = (ct_init){.kind = CT_INIT_ONES, .a = 0, .b = 0};
    ct_init_fill(&init, w, &s, key);
    for (int i = 0; i < 2000; i++)
        ck_assert_float_eq(w[i], 1.0f);
    init = (ct_init){.kind = CT_INIT_RANDOM_UNIFORM, .a = -0.5, .b = 1.5};
    ct_init_fill(&init, w, &s, key);
    moments(w, 2000, &mean, &sd);
    for (int i = 0; i < 2000; i++)
        ck_assert(w[i] >= -0.5f && w[i] < 1.5f);
    ck_assert(fabs(mean - 0.5) < 0.05);
    init = (ct_init){.kind = CT_INIT_RANDOM_NORMAL, .a = 2.0, .b = 0.5};
    ct_init_fill(&init, w, &s, key);
    moments(w, 2000, &mean, &sd);
    ck_assert_msg(fabs(mean - 2) < 0.05 && fabs(sd - 0.5) < 0.03, "%g %g", mean, sd);
    ck_assert(max_abs(w, 2000) > 3.0); /* not truncated */
    init = (ct_init){.kind = CT_INIT_TRUNCATED_NORMAL, .a = 1.0, .b = 0.1};
    ct_init_fill(&init, w, &s, key);
    for (int i = 0; i < 2000; i++)
        ck_assert(w[i] >= 0.8f - 1e-6f && w[i] <= 1.2f + 1e-6f);
    moments(w, 2000, &mean, &sd);
    ck_assert_msg(fabs(sd - 0.1 * 0.87962566103423978) < 0.006, "sd %g", sd);
}
END_TEST

/* max |W^T W - gain^2 I| over the shorter side of a (rows, cols) matrix */
static double orth_error(const float *w, int64_t rows, int64_t cols, double gain)
{
    bool by_cols = rows >= cols;
    int64_t count = by_cols ? cols : rows, len = by_cols ? rows : cols;
    double worst = 0;
    for (int64_t a = 0; a < count; a++) {
        for (int64_t b = 0; b < count; b++) {
            double s = 0;
            for (int64_t i = 0; i < len; i++)
                s += by_cols ? (double)w[i * cols + a] * w[i * cols + b]
                             : (double)w[a * cols + i] * w[b * cols + i];
            worst = fmax(worst, fabs(s - (a == b ? gain * gain : 0)));
        }
    }
    return worst;
}

START_TEST(test_init_orthogonal)
{
    float w[4096];
    uint64_t key = ct_rng_key(4, CT_RNG_INIT, 0, 0);
    ct_init init = {.kind = CT_INIT_ORTHOGONAL, .a = 1.0, .b = 0};
    const int64_t sizes[][2] = {{64, 32}, {32, 64}, {48, 48}, {1, 7}};
    for (int t = 0; t < 4; t++) {
        ct_shape s = shape2(sizes[t][0], sizes[t][1]);
        ct_init_fill(&init, w, &s, key);
        double e = orth_error(w, sizes[t][0], sizes[t][1], 1.0);
        ck_assert_msg(e < 2e-6, "(%d, %d): %g", (int)sizes[t][0], (int)sizes[t][1], e);
    }
    int64_t conv[4] = {3, 3, 4, 8}; /* flattened to (36, 8) */
    ct_shape cs = ct_shape_make(4, conv);
    init.a = 2.0;
    ct_init_fill(&init, w, &cs, key);
    ck_assert_double_lt(orth_error(w, 36, 8, 2.0), 1e-5);
}
END_TEST

/* ---- parsing initializers and regularizers --------------------------------------- */

static ct_node *yaml(const char *text)
{
    ct_error err = {0};
    ct_node *root = ct_config_parse(text, strlen(text), "t.yaml", &err);
    ck_assert_msg(root != NULL, "%s", err.msg);
    return root;
}

START_TEST(test_init_parse_names)
{
    ct_node *root = yaml("a: glorot_uniform\nb: HeNormal\nc: RandomNormal\nd: Zeros\n"
                         "e: orthogonal\nf: lecun_normal\ng: TruncatedNormal\n");
    ct_error err = {0};
    ct_init in;
    const struct {
        const char *key;
        ct_init_kind kind;
        double a, b;
    } want[] = {
        {"a", CT_INIT_GLOROT_UNIFORM, 0, 0}, {"b", CT_INIT_HE_NORMAL, 0, 0},
        {"c", CT_INIT_RANDOM_NORMAL, 0, 0.05}, {"d", CT_INIT_ZEROS, 0, 0},
        {"e", CT_INIT_ORTHOGONAL, 1, 0}, {"f", CT_INIT_LECUN_NORMAL, 0, 0},
        {"g", CT_INIT_TRUNCATED_NORMAL, 0, 0.05},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert_msg(ct_init_parse(root, want[i].key, "zeros", &in, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(in.kind, want[i].kind);
        ck_assert_double_eq(in.a, want[i].a);
        ck_assert_double_eq(in.b, want[i].b);
    }
    /* absent: the default is written into the map */
    ck_assert_int_eq(ct_init_parse(root, "kernel_initializer", "glorot_uniform", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_GLOROT_UNIFORM);
    ck_assert_str_eq(ct_map_get(root, "kernel_initializer")->scalar, "glorot_uniform");
    ck_assert_int_eq(ct_init_parse(root, "bias_initializer", "zeros", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_ZEROS);
    ct_node_free(root);
    /* null also means the default */
    root = yaml("k:\nm: ~\n");
    ck_assert_int_eq(ct_init_parse(root, "k", "he_uniform", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_HE_UNIFORM);
    ck_assert_str_eq(ct_map_get(root, "k")->scalar, "he_uniform");
    ck_assert_int_eq(ct_init_parse(root, "m", "orthogonal", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_ORTHOGONAL);
    ck_assert_double_eq(in.a, 1.0);
    for (int k = 0; k < CT_INIT_COUNT; k++)
        ck_assert_str_ne(ct_init_name((ct_init_kind)k), "unknown");
    ck_assert_str_eq(ct_init_name(CT_INIT_HE_UNIFORM), "he_uniform");
    ct_node_free(root);
}
END_TEST

START_TEST(test_init_parse_maps)
{
    ct_node *root = yaml("a: {type: random_normal, mean: 1.5, stddev: 0.2}\n"
                         "b: {type: RandomUniform, maxval: 2}\n"
                         "c: {type: constant, value: -3}\n"
                         "d: {type: orthogonal, gain: 0.5}\n"
                         "e: {type: truncated_normal}\n"
                         "f: {type: he_uniform}\n");
    ct_error err = {0};
    ct_init in;
    ck_assert_int_eq(ct_init_parse(root, "a", "zeros", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_RANDOM_NORMAL);
    ck_assert_double_eq(in.a, 1.5);
    ck_assert_double_eq(in.b, 0.2);
    ck_assert_int_eq(ct_init_parse(root, "b", "zeros", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_RANDOM_UNIFORM);
    ck_assert_double_eq(in.a, -0.05);
    ck_assert_double_eq(in.b, 2.0);
    ck_assert_int_eq(ct_init_parse(root, "c", "zeros", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_CONSTANT);
    ck_assert_double_eq(in.a, -3.0);
    ck_assert_int_eq(ct_init_parse(root, "d", "zeros", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_ORTHOGONAL);
    ck_assert_double_eq(in.a, 0.5);
    ck_assert_int_eq(ct_init_parse(root, "e", "zeros", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_TRUNCATED_NORMAL);
    ck_assert_double_eq(in.a, 0.0);
    ck_assert_double_eq(in.b, 0.05);
    /* the defaults were filled into the map */
    ck_assert_ptr_nonnull(ct_map_get(ct_map_get(root, "e"), "stddev"));
    ck_assert_int_eq(ct_init_parse(root, "f", "zeros", &in, &err), 0);
    ck_assert_int_eq(in.kind, CT_INIT_HE_UNIFORM);
    ct_node_free(root);
}
END_TEST

static void expect_init_error(const char *text, const char *msg)
{
    ct_node *root = yaml(text);
    ct_error err = {0};
    ct_init in;
    ck_assert_int_eq(ct_init_parse(root, "k", "zeros", &in, &err), -1);
    ck_assert_msg(strcmp(err.msg, msg) == 0, "got  '%s'\nwant '%s'", err.msg, msg);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ct_node_free(root);
}

static void expect_init_error_prefix(const char *text, const char *prefix)
{
    ct_node *root = yaml(text);
    ct_error err = {0};
    ct_init in;
    ck_assert_int_eq(ct_init_parse(root, "k", "zeros", &in, &err), -1);
    ck_assert_msg(strncmp(err.msg, prefix, strlen(prefix)) == 0, "got  '%s'\nwant '%s...'",
                  err.msg, prefix);
    ct_node_free(root);
}

#define KNOWN_INITS                                                                        \
    "known: zeros, ones, constant, random_normal, random_uniform, truncated_normal, "      \
    "glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal, "  \
    "orthogonal"

START_TEST(test_init_parse_errors)
{
    expect_init_error("x: 1\nk: glorot_unifrom\n",
                      "t.yaml:2:4: unknown initializer 'glorot_unifrom' (did you mean "
                      "'glorot_uniform'?); " KNOWN_INITS);
    expect_init_error("k:\n  type: he_nromal\n",
                      "t.yaml:2:9: unknown initializer 'he_nromal' (did you mean "
                      "'he_normal'?); " KNOWN_INITS);
    expect_init_error("k: {type: random_normal, stdev: 0.1}\n",
                      "t.yaml:1:26: unknown key 'stdev' in initializer 'random_normal' (did "
                      "you mean 'stddev'?); known keys: type, mean, stddev");
    expect_init_error_prefix("k: {type: glorot_uniform, seed: 3}\n",
                             "t.yaml:1:27: unknown key 'seed' in initializer 'glorot_uniform'");
    expect_init_error_prefix("k: {type: random_normal, stddev: -1}\n", "t.yaml:1:34: 'stddev'");
    expect_init_error("k: {type: random_uniform, minval: 1, maxval: 0}\n",
                      "t.yaml:1:46: initializer 'random_uniform': maxval 0 is below minval 1");
    expect_init_error_prefix("k: {mean: 1}\n", "t.yaml:1:4: ");
    expect_init_error("k: [1, 2]\n",
                      "t.yaml:1:4: k: expected an initializer name or a map with 'type'");
    expect_init_error("k: {type: 3x}\n", "t.yaml:1:11: unknown initializer '3x'; " KNOWN_INITS);
}
END_TEST

START_TEST(test_regularizer_parse)
{
    ct_node *root = yaml("a: l2\nb: L1\nc: l1_l2\nd: {type: l1_l2, l1: 0.001, l2: 0.002}\n"
                         "e: {type: l2, l2: 0.5}\nf: null\ng: {type: l1}\nh: None\ni:\n");
    ct_error err = {0};
    ct_regularizer r;
    const struct {
        const char *key;
        double l1, l2;
    } want[] = {{"a", 0, 0.01}, {"b", 0.01, 0}, {"c", 0, 0}, {"d", 0.001, 0.002},
                {"e", 0, 0.5},  {"f", 0, 0},    {"g", 0.01, 0}, {"h", 0, 0},
                {"i", 0, 0},    {"absent", 0, 0}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        r.l1 = r.l2 = -1;
        ck_assert_msg(ct_regularizer_parse(root, want[i].key, &r, &err) == 0, "%s", err.msg);
        ck_assert_double_eq(r.l1, want[i].l1);
        ck_assert_double_eq(r.l2, want[i].l2);
    }
    ct_node_free(root);

    root = yaml("k: l3\n");
    ck_assert_int_eq(ct_regularizer_parse(root, "k", &r, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:1:4: unknown regularizer 'l3' (did you mean 'l1'?); "
                              "known: l1, l2, l1_l2");
    ct_node_free(root);
    root = yaml("k: {type: l2, l1: 0.1}\n");
    ck_assert_int_eq(ct_regularizer_parse(root, "k", &r, &err), -1);
    ck_assert_msg(strncmp(err.msg, "t.yaml:1:15: unknown key 'l1' in regularizer 'l2'", 49) == 0,
                  "%s", err.msg);
    ct_node_free(root);
    root = yaml("k: {type: l1, l1: -0.1}\n");
    ck_assert_int_eq(ct_regularizer_parse(root, "k", &r, &err), -1);
    ck_assert_msg(strncmp(err.msg, "t.yaml:1:19: 'l1'", 17) == 0, "%s", err.msg);
    ct_node_free(root);
    root = yaml("k: [l2]\n");
    ck_assert_int_eq(ct_regularizer_parse(root, "k", &r, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:1:4: k: expected a regularizer name or a map with 'type'");
    ct_node_free(root);
    /* absent: recorded as null for the resolved config */
    root = yaml("x: 1\n");
    ck_assert_int_eq(ct_regularizer_parse(root, "kernel_regularizer", &r, &err), 0);
    ck_assert_ptr_nonnull(ct_map_get(root, "kernel_regularizer"));
    ck_assert_str_eq(ct_map_get(root, "kernel_regularizer")->scalar, "null");
    ct_node_free(root);
}
END_TEST

/* ---- suites ---------------------------------------------------------------------- */

/* ---- merging and broadcasting --------------------------------------------------------- */

START_TEST(test_copy_strided)
{
    float x[15], y[21];
    tu_fill(x, 15, 1, -1, 1);
    for (int i = 0; i < 21; i++)
        y[i] = 100.0f + (float)i;
    be()->copy_strided(x + 1, 5, y + 3, 7, 3, 2);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 7; c++) {
            float want = c >= 3 && c < 5 ? x[r * 5 + 1 + c - 3] : 100.0f + (float)(r * 7 + c);
            ck_assert_float_eq(y[r * 7 + c], want);
        }
}
END_TEST

static ct_shape shp(int ndim, int64_t a, int64_t b, int64_t c)
{
    int64_t d[3] = {a, b, c};
    return ct_shape_make(ndim, d);
}

/* Operand offset of output element i under numpy's right-aligned broadcasting. */
static int64_t ref_bcast_offset(const ct_shape *in, const ct_shape *out, int64_t i)
{
    int64_t off = 0, istride = 1;
    for (int a = out->ndim - 1; a >= 0; a--) {
        int64_t idx = i % out->dim[a];
        i /= out->dim[a];
        int ia = a - (out->ndim - in->ndim);
        if (ia < 0)
            continue;
        if (in->dim[ia] != 1)
            off += idx * istride;
        istride *= in->dim[ia];
    }
    return off;
}

START_TEST(test_expand)
{
    const ct_shape cases[][2] = {
        {shp(2, 3, 1, 0), shp(2, 3, 4, 0)}, {shp(1, 4, 0, 0), shp(3, 2, 3, 4)},
        {shp(1, 1, 0, 0), shp(3, 2, 3, 4)}, {shp(0, 0, 0, 0), shp(2, 2, 3, 0)},
        {shp(3, 2, 1, 4), shp(3, 2, 3, 4)}, {shp(3, 1, 3, 1), shp(3, 2, 3, 4)},
        {shp(2, 3, 4, 0), shp(2, 3, 4, 0)}, {shp(2, 1, 4, 0), shp(3, 5, 1, 4)},
    };
    const int64_t rows = 3;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const ct_shape *in = &cases[c][0], *out = &cases[c][1];
        ct_bcast g;
        ck_assert_int_eq(ct_bcast_make(in, out, &g), 0);
        int64_t ni = ct_shape_size(in), no = ct_shape_size(out);
        ck_assert_int_eq(g.in_size, ni);
        ck_assert_int_eq(g.out_size, no);
        float *x = malloc(sizeof(float) * rows * ni), *y = malloc(sizeof(float) * rows * no);
        float *dy = malloc(sizeof(float) * rows * no), *dx = malloc(sizeof(float) * rows * ni);
        float *want = calloc((size_t)(rows * ni), sizeof(float));
        tu_fill(x, rows * ni, 2, -1, 1);
        tu_fill(dy, rows * no, 3, -1, 1);
        tu_fill(dx, rows * ni, 4, -1, 1); /* overwritten */
        be()->expand(&g, x, y, rows);
        be()->expand_backward(&g, dy, dx, rows);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < no; i++) {
                int64_t off = ref_bcast_offset(in, out, i);
                ck_assert_msg(y[r * no + i] == x[r * ni + off], "case %zu: y[%lld][%lld]", c,
                              (long long)r, (long long)i);
                want[r * ni + off] += dy[r * no + i]; /* in increasing output order */
            }
        for (int64_t i = 0; i < rows * ni; i++)
            ck_assert_msg(dx[i] == want[i], "case %zu: dx[%lld] = %.9g, want %.9g", c,
                          (long long)i, dx[i], want[i]);
        free(x), free(y), free(dy), free(dx), free(want);
    }
    ct_bcast g;
    ck_assert_int_eq(ct_bcast_make(&(ct_shape){2, {3, 2}}, &(ct_shape){2, {3, 4}}, &g), -1);
    ck_assert_int_eq(ct_bcast_make(&(ct_shape){3, {2, 3, 4}}, &(ct_shape){2, {3, 4}}, &g), -1);
    ck_assert_int_eq(ct_bcast_make(&(ct_shape){2, {3, 4}}, &(ct_shape){2, {3, 1}}, &g), -1);
}
END_TEST

START_TEST(test_extremum)
{
    const float in[3][5] = {{1, 5, 2, -1, 0}, {3, 5, 1, -1, 4}, {3, 6, 0, -2, 4}};
    const float maxv[5] = {3, 6, 2, -1, 4}, maxa[5] = {1, 2, 0, 0, 1};
    const float minv[5] = {1, 5, 0, -2, 0}, mina[5] = {0, 0, 2, 2, 0};
    for (int minimum = 0; minimum < 2; minimum++) {
        float y[5], arg[5], dy[5] = {1, 2, 3, 4, 5}, dx[5];
        for (int k = 0; k < 3; k++)
            be()->extremum(minimum, in[k], y, arg, (float)k, 5);
        for (int i = 0; i < 5; i++) {
            ck_assert_float_eq(y[i], minimum ? minv[i] : maxv[i]);
            ck_assert_float_eq(arg[i], minimum ? mina[i] : maxa[i]);
        }
        for (int k = 0; k < 3; k++) {
            be()->take_where(arg, (float)k, dy, dx, 5);
            for (int i = 0; i < 5; i++)
                ck_assert_float_eq(dx[i], arg[i] == (float)k ? dy[i] : 0.0f);
        }
    }
}
END_TEST

static double ref_op(const float *x, int64_t ld, bool trans, int64_t i, int64_t j)
{
    return trans ? x[j * ld + i] : x[i * ld + j];
}

START_TEST(test_gemm_batched)
{
    const int64_t sizes[][3] = {{3, 4, 5}, {1, 1, 7}, {1, 3, 4}, {2, 1, 1}};
    const int64_t batch = 3, pad = 3;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
            int64_t lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 1;
            int64_t sa = (ta ? k : m) * lda + pad, sb = (tb ? n : k) * ldb + pad, sc = m * ldc + pad;
            float *a = malloc(sizeof(float) * batch * sa), *b = malloc(sizeof(float) * batch * sb);
            float *c = malloc(sizeof(float) * batch * sc), *c0 = malloc(sizeof(float) * batch * sc);
            tu_fill(a, batch * sa, 5, -1, 1);
            tu_fill(b, batch * sb, 6, -1, 1);
            tu_fill(c0, batch * sc, 7, -1, 1);
            memcpy(c, c0, sizeof(float) * batch * sc);
            be()->gemm_batched(ta, tb, m, n, k, 0.7f, a, lda, sa, b, ldb, sb, 0.5f, c, ldc, sc,
                               batch);
            for (int64_t q = 0; q < batch; q++)
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double acc = 0;
                        for (int64_t p = 0; p < k; p++)
                            acc += ref_op(a + q * sa, lda, ta, i, p) * ref_op(b + q * sb, ldb, tb, p, j);
                        int64_t at = q * sc + i * ldc + j;
                        double want = 0.7 * acc + 0.5 * c0[at];
                        ck_assert_msg(fabs(c[at] - want) < 1e-5, "m %lld n %lld k %lld ta %d tb %d: "
                                      "c = %.7g, want %.7g", (long long)m, (long long)n,
                                      (long long)k, ta, tb, c[at], want);
                    }
            /* Everything outside the items' m x n blocks is left alone. */
            for (int64_t q = 0; q < batch; q++)
                for (int64_t i = 0; i < sc; i++)
                    if (i / ldc >= m || i % ldc >= n)
                        ck_assert_float_eq(c[q * sc + i], c0[q * sc + i]);
            free(a), free(b), free(c), free(c0);
        }
}
END_TEST

/* Reference l2 normalization and its backward in double, over [outer][n][inner]. */
static void ref_l2(const float *x, const float *dy, int64_t outer, int64_t n, int64_t inner,
                   double eps, double *y, double *dx)
{
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double s = 0, d = 0;
            for (int64_t t = 0; t < n; t++) {
                double v = x[(o * n + t) * inner + i];
                s += v * v;
            }
            double inv = 1.0 / sqrt(fmax(s, eps));
            for (int64_t t = 0; t < n; t++) {
                int64_t at = (o * n + t) * inner + i;
                y[at] = x[at] * inv;
                d += y[at] * dy[at];
            }
            for (int64_t t = 0; t < n; t++) {
                int64_t at = (o * n + t) * inner + i;
                dx[at] = s < eps ? dy[at] * inv : inv * (dy[at] - y[at] * d);
            }
        }
}

START_TEST(test_l2_normalize)
{
    const int64_t outer = 2, n = 3, inner = 4, tot = outer * n * inner;
    float x[24], y[24], dy[24], dx[24], inv[8];
    double ry[24], rdx[24];
    tu_fill(x, tot, 8, -1, 1);
    tu_fill(dy, tot, 9, -1, 1);
    for (int64_t t = 0; t < n; t++) /* position (1, 2): below eps, a constant factor */
        x[(1 * n + t) * inner + 2] = 1e-7f * (float)(t + 1);
    be()->l2_normalize(x, y, inv, outer, n, inner, 1e-12f);
    be()->l2_normalize_backward(x, y, inv, dy, dx, outer, n, inner, 1e-12f);
    ref_l2(x, dy, outer, n, inner, (double)1e-12f, ry, rdx);
    for (int64_t i = 0; i < tot; i++) {
        tu_assert_close(y[i], ry[i], 1e-6);
        tu_assert_close(dx[i], rdx[i], 1e-5);
    }
    tu_assert_close(inv[1 * inner + 2], 1e6, 1e-6);
    /* In place. */
    be()->l2_normalize(x, x, inv, outer, n, inner, 1e-12f);
    ck_assert(memcmp(x, y, sizeof y) == 0);
}
END_TEST

/* Every merging op gives the same bits on 1 and 2 threads. */
START_TEST(test_merge_same_bits)
{
    const ct_backend *b = be();
    const int64_t rows = 64, outer = 64, n = 40, inner = 33, big = rows * n * inner;
    ct_bcast g;
    ct_shape in = shp(3, n, 1, inner), out = shp(3, n, 5, inner);
    ck_assert_int_eq(ct_bcast_make(&in, &out, &g), 0);
    float *x = malloc(sizeof(float) * big * 5), *x2 = malloc(sizeof(float) * big * 5);
    tu_fill(x, big * 5, 10, -1, 1);
    tu_fill(x2, big * 5, 11, -1, 1);
    float *res[2][7];
    for (int t = 0; t < 2; t++) {
        ct_threads_set(t + 1);
        for (int i = 0; i < 7; i++)
            res[t][i] = calloc((size_t)(big * 5), sizeof(float));
        b->expand(&g, x, res[t][0], rows);
        b->expand_backward(&g, x2, res[t][1], rows);
        b->l2_normalize(x, res[t][2], res[t][3], outer, n, inner, 1e-12f);
        b->l2_normalize_backward(x, res[t][2], res[t][3], x2, res[t][4], outer, n, inner, 1e-12f);
        b->gemm_batched(false, true, 7, 9, n, 1.0f, x, n, 7 * n, x2, n, 9 * n, 0.0f, res[t][5], 9,
                        63, rows);
        b->extremum(false, x, res[t][6], res[t][6] + big, 0.0f, big);
        b->extremum(false, x2, res[t][6], res[t][6] + big, 1.0f, big);
    }
    ct_threads_set(1);
    for (int i = 0; i < 7; i++) {
        ck_assert_msg(memcmp(res[0][i], res[1][i], sizeof(float) * (size_t)(big * 5)) == 0,
                      "result %d differs", i);
        free(res[0][i]), free(res[1][i]);
    }
    free(x), free(x2);
}
END_TEST

/* The embedding ops give the same bits on 1 and 3 threads: the scatter-add splits the
 * table's columns, each walking every id in order. */
START_TEST(test_embedding_same_bits)
{
    const ct_backend *b = be();
    const int64_t nrows = 50, dim = 96, n = 4000;
    float *table = malloc(sizeof(float) * nrows * dim), *ids = malloc(sizeof(float) * n);
    float *dy = malloc(sizeof(float) * n * dim);
    tu_fill(table, nrows * dim, 12, -1, 1);
    tu_fill(dy, n * dim, 13, -1, 1);
    tu_fill(ids, n, 14, 0, 1);
    for (int64_t i = 0; i < n; i++)
        ids[i] = floorf(ids[i] * (float)nrows);
    float *y[2], *g[2];
    for (int t = 0; t < 2; t++) {
        ct_threads_set(1 + 2 * t);
        y[t] = calloc((size_t)(n * dim), sizeof(float));
        g[t] = calloc((size_t)(nrows * dim), sizeof(float));
        b->gather_rows(table, nrows, dim, ids, n, y[t]);
        b->scatter_add_rows(dy, ids, n, dim, g[t], nrows);
    }
    ct_threads_set(1);
    ck_assert(memcmp(y[0], y[1], sizeof(float) * (size_t)(n * dim)) == 0);
    ck_assert(memcmp(g[0], g[1], sizeof(float) * (size_t)(nrows * dim)) == 0);
    for (int t = 0; t < 2; t++)
        free(y[t]), free(g[t]);
    free(table), free(ids), free(dy);
}
END_TEST

/* ---- threads --------------------------------------------------------------------- */

static void mark_task(void *ctx, int64_t begin, int64_t end)
{
    int *hits = ctx;
    for (int64_t i = begin; i < end; i++)
        hits[i]++;
}

START_TEST(test_parallel_for_covers_once)
{
    static const int64_t sizes[] = {0, 1, 7, 100, 4097, 100003};
    for (int threads = 1; threads <= 3; threads++) {
        ct_threads_set(threads);
        ck_assert_int_eq(ct_threads_get(), threads);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int64_t grain = 1; grain <= 4096; grain *= 64) {
                int64_t n = sizes[s];
                int *hits = calloc((size_t)n + 1, sizeof *hits);
                for (int rep = 0; rep < 3; rep++)
                    ct_parallel_for(n, grain, mark_task, hits);
                for (int64_t i = 0; i < n; i++)
                    ck_assert_msg(hits[i] == 3, "n %" PRId64 " grain %" PRId64 " threads %d: "
                                  "index %" PRId64 " ran %d times", n, grain, threads, i, hits[i]);
                free(hits);
            }
    }
    ct_threads_set(1);
}
END_TEST

/* Splitting work over threads never changes a result: GEMM splits rows or columns of C,
 * column sums split columns. */
/* Every thread flushes denormals to zero (as TensorFlow does), so tiny values cost no
 * microcode assists and the result does not depend on which thread computed it. */
START_TEST(test_threads_flush_denormals)
{
    const int64_t n = 4 * 32768;
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = 1e-20f;
    ct_threads_set(2);
    be()->scale(n, 1e-20f, x); /* 1e-40 is below FLT_MIN: denormal unless flushed */
    ct_threads_set(1);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(x[i] == 0.0f, "x[%lld] = %g", (long long)i, (double)x[i]);
    free(x);
}
END_TEST

START_TEST(test_threads_same_bits)
{
    const ct_backend *be = ct_backend_cpu();
    const int64_t m = 300, n = 70, k = 513;
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
    float *c[2], *d[2], *s[2], *y[2];
    tu_fill(a, m * k, 1, -1, 1);
    tu_fill(b, k * n, 2, -1, 1);
    for (int t = 0; t < 2; t++) {
        ct_threads_set(t + 1);
        c[t] = calloc((size_t)(m * n), sizeof(float));
        d[t] = calloc((size_t)(k * n), sizeof(float));
        s[t] = calloc((size_t)k, sizeof(float));
        y[t] = calloc((size_t)(m * k), sizeof(float));
        be->gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c[t], n);   /* split rows */
        be->gemm(true, false, k, n, m, 0.5f, a, k, c[t], n, 0.0f, d[t], n); /* long sums */
        be->gemm(true, true, n, m, k, 1.0f, b, n, a, k, 0.0f, c[t], m);     /* split columns */
        be->sum_rows(a, s[t], m, k, 0.0f);
        be->act_forward((ct_act){CT_ACT_GELU, 0}, a, y[t], m, k);
    }
    ck_assert(memcmp(c[0], c[1], sizeof(float) * (size_t)(m * n)) == 0);
    ck_assert(memcmp(d[0], d[1], sizeof(float) * (size_t)(k * n)) == 0);
    ck_assert(memcmp(s[0], s[1], sizeof(float) * (size_t)k) == 0);
    ck_assert(memcmp(y[0], y[1], sizeof(float) * (size_t)(m * k)) == 0);
    ct_threads_set(1);
    for (int t = 0; t < 2; t++)
        free(c[t]), free(d[t]), free(s[t]), free(y[t]);
    free(a);
    free(b);
}
END_TEST

/* ---- exp with libm's bits (exp_libm.c) ---------------------------------------------------- */

static float exp_ref(float d) { return d < -104.0f ? 0.0f : expf(d); }

/* ct_cpu_exp_shifted gives expf's own bits: every 61st float from 0 down past -104 (all
 * of them were compared once, under both floating-point modes), odd lengths, in place,
 * the values below -87 that go to expf itself, and NaN. */
START_TEST(test_exp_libm_bits)
{
    enum { N = 4099 };
    static float x[N], y[N];
    int64_t bad = 0, checked = 0;
    for (uint64_t b = 0x80000000u; b <= 0xc2d10000u; b += 61 * (uint64_t)N) {
        for (int k = 0; k < N; k++) {
            uint32_t v = (uint32_t)(b + 61 * (uint64_t)k);
            memcpy(&x[k], &v, sizeof v);
        }
        ct_cpu_exp_shifted(x, 0.0f, y, N);
        for (int k = 0; k < N; k++) {
            float want = exp_ref(x[k]);
            bad += memcmp(&want, &y[k], sizeof want) != 0;
        }
        checked += N;
    }
    ck_assert_int_gt(checked, 18000000);
#if defined(__GLIBC__) && defined(__x86_64__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 28)
    /* GNU libc's expf of 2.28 on is the one exp_libm.c reproduces: with AVX2 and FMA the
     * vector path must have passed its own check */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        ck_assert(ct_cpu_exp_vector());
#endif
    ck_assert_msg(bad == 0, "%lld of %lld values differ from expf", (long long)bad,
                  (long long)checked);
    float a[7] = {-1.0f, -2.0f, NAN, -100.0f, -0.5f, -90.0f, 3.0f}, want[7];
    for (int i = 0; i < 7; i++)
        want[i] = exp_ref(a[i] - 3.25f);
    ct_cpu_exp_shifted(a, 3.25f, a, 7); /* in place, with a shift */
    for (int i = 0; i < 7; i++)
        ck_assert_msg(memcmp(&a[i], &want[i], sizeof a[i]) == 0 || (isnan(a[i]) && isnan(want[i])),
                      "value %d: %a, expf gives %a", i, a[i], want[i]);
}
END_TEST

/* ---- the thread tuner (backend.adapt_threads) ------------------------------------------ */

/* Runs the tuner for `steps` steps whose time is ms[threads] milliseconds, from time *now;
 * returns the count it settled on. */
static int tune(ct_tuner *t, double *now, const double *ms, int steps)
{
    int threads = t->current;
    for (int i = 0; i < steps; i++) {
        double sec = ms[threads] / 1e3;
        *now += sec;
        threads = ct_tuner_step(t, *now, sec);
    }
    return threads;
}

START_TEST(test_tuner_candidates)
{
    ct_tuner t;
    ct_tuner_init(&t, 16, true);
    ck_assert_int_eq(t.ncand, 4);
    ck_assert(t.cand[0] == 16 && t.cand[1] == 15 && t.cand[2] == 8 && t.cand[3] == 1);
    ct_tuner_init(&t, 3, true);
    ck_assert(t.ncand == 3 && t.cand[0] == 3 && t.cand[1] == 2 && t.cand[2] == 1);
    ct_tuner_init(&t, 2, true);
    ck_assert(t.ncand == 2 && t.cand[0] == 2 && t.cand[1] == 1);
    /* Off, or nothing to choose: the configured count, always. */
    double now = 1, slow_all[3] = {0, 1.0, 9.0};
    ct_tuner_init(&t, 2, false);
    ck_assert_int_eq(tune(&t, &now, slow_all, 500), 2);
    ct_tuner_init(&t, 1, true);
    ck_assert_int_eq(tune(&t, &now, slow_all, 500), 1);
    ck_assert_int_eq(t.switches, 0);
}
END_TEST

/* A busy core: one thread is faster, so the tuner keeps one; when the other process ends,
 * the next probe (within the hold's bounds) goes back to both. */
START_TEST(test_tuner_follows_the_machine)
{
    ct_tuner t;
    double now = 100;
    ct_tuner_init(&t, 2, true);
    const double busy[3] = {0, 2.0, 4.5}, quiet[3] = {0, 2.0, 1.2};
    ck_assert_int_eq(tune(&t, &now, busy, 20), 1); /* two windows of 10 steps */
    ck_assert_int_eq(t.probing, -1);
    ck_assert(fabs(t.chosen - 2e-3) < 1e-12);
    /* The probe took 65 ms (10 steps of each): the hold is 100 times that, so probing
     * costs about 1 % of the run. */
    ck_assert(fabs(t.probe_at - now - 6.5) < 1e-6);
    ck_assert_int_eq(tune(&t, &now, quiet, 3000), 1); /* 6 s at 2 ms: still holding */
    ck_assert_int_eq(tune(&t, &now, quiet, 300), 2);
    ck_assert(t.steps[0] > 0 && t.steps[1] > 3000);
}
END_TEST

/* All threads are faster alone, and noise of a few percent never takes threads away; a
 * step time that grows by a third starts a probe at once, before the hold ends. */
START_TEST(test_tuner_margin_and_growth)
{
    ct_tuner t;
    double now = 0;
    ct_tuner_init(&t, 2, true);
    const double close[3] = {0, 0.99, 1.0}, quiet[3] = {0, 2.0, 1.0}, busy[3] = {0, 2.0, 5.0};
    ck_assert_int_eq(tune(&t, &now, close, 20), 2);
    ct_tuner_init(&t, 2, true);
    /* One thread loses by 2x: measured for 3 steps after its warm-up, not a whole window. */
    ck_assert_int_eq(tune(&t, &now, quiet, 20), 2);
    ck_assert_int_eq(t.probing, -1);
    ck_assert_int_eq(t.steps[1], 4);
    ck_assert(fabs(t.median[1] - 2e-3) < 1e-12);
    double hold_ends = t.probe_at;
    /* a window to notice, then one per candidate */
    ck_assert_int_eq(tune(&t, &now, busy, 30), 1);
    ck_assert(now < hold_ends);
}
END_TEST

static Suite *backend_suite(void)
{
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("ops");
    tcase_add_test(tc, test_parallel_for_covers_once);
    tcase_add_test(tc, test_threads_same_bits);
    tcase_add_test(tc, test_threads_flush_denormals);
    tcase_add_test(tc, test_exp_libm_bits);
    tcase_add_test(tc, test_tuner_candidates);
    tcase_add_test(tc, test_tuner_follows_the_machine);
    tcase_add_test(tc, test_tuner_margin_and_growth);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_alloc);
    tcase_add_test(tc, test_upload_download);
    tcase_add_loop_test(tc, test_gemm_transposes, 0, 4);
    tcase_add_test(tc, test_gemm_k_zero);
    tcase_add_test(tc, test_gemm_packed);
    tcase_add_test(tc, test_gemm_packed_threads);
    tcase_add_test(tc, test_lstm_step_packed);
    tcase_add_test(tc, test_elementwise);
    tcase_add_test(tc, test_rows);
    suite_add_tcase(s, tc);

    tc = tcase_create("activations");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_act_parse);
    tcase_add_test(tc, test_act_forward_values);
    tcase_add_test(tc, test_gelu_accuracy);
    tcase_add_test(tc, test_softmax_values);
    tcase_add_test(tc, test_attention_softmax);
    tcase_add_test(tc, test_gemm_batched_causal);
    tcase_add_loop_test(tc, test_act_forward_sweep, 0, N_ACTS);
    tcase_add_loop_test(tc, test_act_backward_fd, 0, N_ACTS);
    tcase_add_test(tc, test_act_backward_edges);
    tcase_add_loop_test(tc, test_bias_act_fused, 0, N_ACTS);
    tcase_add_test(tc, test_dropout_mask);
    suite_add_tcase(s, tc);
    tc = tcase_create("merge");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_copy_strided);
    tcase_add_test(tc, test_expand);
    tcase_add_test(tc, test_extremum);
    tcase_add_test(tc, test_gemm_batched);
    tcase_add_test(tc, test_l2_normalize);
    tcase_add_test(tc, test_merge_same_bits);
    tcase_add_test(tc, test_embedding_same_bits);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *rng_suite(void)
{
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("streams");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rng_fixed_values);
    tcase_add_test(tc, test_rng_keys);
    tcase_add_test(tc, test_rng_uniform);
    tcase_add_test(tc, test_rng_normal);
    tcase_add_test(tc, test_rng_below_permutation);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *init_suite(void)
{
    Suite *s = suite_create("init");
    TCase *tc = tcase_create("fill");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_init_glorot_uniform);
    tcase_add_test(tc, test_init_variance_family);
    tcase_add_test(tc, test_init_plain);
    tcase_add_test(tc, test_init_orthogonal);
    suite_add_tcase(s, tc);
    tc = tcase_create("parse");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_init_parse_names);
    tcase_add_test(tc, test_init_parse_maps);
    tcase_add_test(tc, test_init_parse_errors);
    tcase_add_test(tc, test_regularizer_parse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(backend_suite());
    srunner_add_suite(sr, rng_suite());
    srunner_add_suite(sr, init_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
