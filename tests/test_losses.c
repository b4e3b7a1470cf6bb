/* test_losses.c - losses (values, gradients, the fused softmax/sigmoid path), metrics and
 * the parsing of compile.loss / compile.metrics. */
#include <stdint.h>

#include "loss.h"
#include "metric.h"
#include "testutil.h"

#define H 1e-3 /* finite-difference step */

static ct_loss mk_loss(const char *name, bool from_logits)
{
    ct_loss l;
    memset(&l, 0, sizeof l);
    l.kind = ct_loss_kind_find(name);
    ck_assert_msg(l.kind != NULL, "loss %s not found", name);
    l.from_logits = from_logits;
    l.delta = 1.0;
    return l;
}

static double loss_value(const ct_loss *l, const float *p, const float *y, int64_t rows,
                         int64_t cols)
{
    return l->kind->compute(l, p, y, NULL, rows, cols, 1.0f);
}

/* Value without and with a gradient buffer must agree; returns it. */
static double loss_checked(const ct_loss *l, const float *p, const float *y, int64_t rows,
                           int64_t cols)
{
    float d[64];
    double a = loss_value(l, p, y, rows, cols);
    double b = l->kind->compute(l, p, y, d, rows, cols, 1.0f);
    ck_assert_double_eq(a, b);
    for (int64_t i = 0; i < rows * cols; i++)
        ck_assert_msg(isfinite(d[i]), "gradient %lld not finite", (long long)i);
    return a;
}

/* ---- values against hand-computed numbers ---------------------------------------------- */

START_TEST(test_mse_mae_values)
{
    const float p[] = {1, 2, 3, 5}, y[] = {0, 2, 4, 3};
    /* rows: (1 + 0) / 2 = 0.5 and (1 + 4) / 2 = 2.5 */
    tu_assert_close(loss_checked(&(ct_loss){.kind = ct_loss_kind_find("mse"), .delta = 1}, p, y, 2, 2),
                    3.0, 1e-12);
    ct_loss mse = mk_loss("MeanSquaredError", false);
    tu_assert_close(loss_checked(&mse, p, y, 1, 4), (1 + 0 + 1 + 4) / 4.0, 1e-12);
    /* rows: (1 + 0) / 2 = 0.5 and (1 + 2) / 2 = 1.5 */
    ct_loss mae = mk_loss("mae", false);
    tu_assert_close(loss_checked(&mae, p, y, 2, 2), 2.0, 1e-12);
    ck_assert_ptr_eq(ct_loss_kind_find("mean_absolute_error"), mae.kind);
    ck_assert_ptr_eq(ct_loss_kind_find("MSE"), mse.kind);
    /* as layer types: without regard to case or underscores */
    ck_assert_ptr_eq(ct_loss_kind_find("Mean_Absolute_Error"), mae.kind);
    ck_assert_ptr_eq(ct_loss_kind_find("MEANSQUAREDERROR"), mse.kind);
    ck_assert_ptr_null(ct_loss_kind_find("mean_squared"));
}
END_TEST

START_TEST(test_huber_values)
{
    const float p[] = {1, 2, 3, 5}, y[] = {0, 2, 4, 3};
    ct_loss h = mk_loss("huber", false);
    /* e = 1, 0, -1, 2 (delta 1): 0.5, 0, 0.5, 1 * 2 - 0.5 = 1.5 -> rows 0.25 + 1.0 */
    tu_assert_close(loss_checked(&h, p, y, 2, 2), 1.25, 1e-12);
    h.delta = 2.0; /* e = 2 is now quadratic: 0.5 * 4 = 2 -> rows 0.25 + 1.25 */
    tu_assert_close(loss_checked(&h, p, y, 2, 2), 1.5, 1e-12);
    ck_assert_ptr_eq(ct_loss_kind_find("Huber"), h.kind);
}
END_TEST

START_TEST(test_log_cosh_values)
{
    ct_loss l = mk_loss("log_cosh", false);
    const float p[] = {0.5f, 100.0f, -100.0f}, y[] = {0, 0, 0};
    /* log(cosh(0.5)) */
    tu_assert_close(loss_checked(&l, p, y, 1, 1), 0.12011450695827745, 1e-9);
    /* log(cosh(+-100)) = 100 - log 2: no overflow */
    tu_assert_close(loss_checked(&l, p + 1, y, 2, 1), 2 * 99.30685281944005, 1e-12);
}
END_TEST

START_TEST(test_bce_values)
{
    ct_loss l = mk_loss("binary_crossentropy", false);
    const float p[] = {0.9f, 0.2f}, y[] = {1, 0};
    /* (-log 0.9 - log 0.8) / 2 */
    tu_assert_close(loss_checked(&l, p, y, 1, 2), 0.16425204859413997, 1e-6);
    /* saturated probabilities are clipped to [1e-7, 1 - 1e-7] in float32 as Keras:
     * -log(1 - float32(1 - 1e-7)) = 15.942385..., -log(float32(1e-7)) = 16.118095... */
    const float ps[] = {1.0f, 0.0f}, ys[] = {0, 1};
    tu_assert_close(loss_checked(&l, ps, ys, 1, 1), 15.942385152878742, 1e-9);
    tu_assert_close(loss_checked(&l, ps + 1, ys + 1, 1, 1), 16.118095639272223, 1e-9);
    float d[2];
    l.kind->compute(&l, ps, ys, d, 2, 1, 1.0f);
    ck_assert_float_eq(d[0], 0.0f); /* clipped: no gradient, as a clip op in Keras */
    ck_assert_float_eq(d[1], 0.0f);
}
END_TEST

START_TEST(test_bce_logits_values)
{
    ct_loss l = mk_loss("BinaryCrossentropy", true);
    const float x[] = {2.0f, -1.0f}, y[] = {1, 0};
    /* (softplus(-2) + softplus(-1)) / 2 */
    tu_assert_close(loss_checked(&l, x, y, 1, 2), 0.2200948492805977, 1e-9);
    /* extreme logits: softplus(-100) ~ 0, softplus(100) = 100 -> (0 + 0 + 100 + 100) / 4 */
    const float xe[] = {100, -100, 100, -100}, ye[] = {1, 0, 0, 1};
    float d[4];
    double v = l.kind->compute(&l, xe, ye, d, 1, 4, 1.0f);
    tu_assert_close(v, 50.0, 1e-12);
    const double want[] = {0, 0, 0.25, -0.25}; /* (sigmoid(x) - y) / 4 */
    for (int i = 0; i < 4; i++)
        ck_assert_msg(fabs(d[i] - want[i]) < 1e-7, "d[%d] = %g", i, d[i]);
}
END_TEST

START_TEST(test_cce_values)
{
    ct_loss l = mk_loss("categorical_crossentropy", false);
    const float y[] = {0, 1, 0};
    const float p[] = {0.1f, 0.7f, 0.2f};
    tu_assert_close(loss_checked(&l, p, y, 1, 3), 0.35667496096863105, 1e-6); /* -log 0.7 */
    /* rows are normalised by their sum first: 1.4 / 2.0 = 0.7 */
    const float pu[] = {0.2f, 1.4f, 0.4f};
    tu_assert_close(loss_checked(&l, pu, y, 1, 3), 0.35667496096863105, 1e-6);
    /* soft labels, summed over classes: -2 * 0.5 * log 0.25 = log 4 */
    const float ys[] = {0.5f, 0.5f, 0}, ps[] = {0.25f, 0.25f, 0.5f};
    tu_assert_close(loss_checked(&l, ps, ys, 1, 3), 1.3862943611198906, 1e-7);
    /* a zero probability for the true class is clipped to 1e-7: -log(float32(1e-7)) */
    const float pz[] = {0, 1, 0}, yz[] = {1, 0, 0};
    tu_assert_close(loss_checked(&l, pz, yz, 1, 3), 16.118095639272223, 1e-9);
}
END_TEST

START_TEST(test_cce_logits_values)
{
    ct_loss l = mk_loss("categorical_crossentropy", true);
    const float x[] = {1, 2, 3}, y[] = {0, 0, 1};
    /* logsumexp(1, 2, 3) - 3 = log(1 + e^-1 + e^-2) */
    tu_assert_close(loss_checked(&l, x, y, 1, 3), 0.4076059644443804, 1e-9);
    /* extreme logits: logsumexp ~ 1000, loss ~ 1000 for class 1, finite gradient */
    const float xe[] = {1000, 0, -1000}, ye[] = {0, 1, 0};
    float d[3];
    tu_assert_close(l.kind->compute(&l, xe, ye, d, 1, 3, 1.0f), 1000.0, 1e-12);
    ck_assert_msg(fabs(d[0] - 1) < 1e-7 && fabs(d[1] + 1) < 1e-7 && fabs(d[2]) < 1e-7,
                  "d = %g %g %g", d[0], d[1], d[2]);
}
END_TEST

START_TEST(test_sparse_cce_values)
{
    ct_loss l = mk_loss("sparse_categorical_crossentropy", false);
    ck_assert(l.kind->sparse_labels);
    const float p[] = {0.1f, 0.7f, 0.2f, 0.25f, 0.25f, 0.5f}, y[] = {1, 2};
    /* -log 0.7 - log 0.5 */
    tu_assert_close(loss_checked(&l, p, y, 2, 3), 0.35667496096863105 + 0.6931471805599453,
                    1e-6);
    ct_loss lg = mk_loss("SparseCategoricalCrossentropy", true);
    const float x[] = {1, 2, 3, 100, -100, 0}, yl[] = {2, 0};
    /* log(1 + e^-1 + e^-2) + (logsumexp(100, -100, 0) - 100 ~ 0) */
    tu_assert_close(loss_checked(&lg, x, yl, 2, 3), 0.4076059644443804, 1e-9);
}
END_TEST

/* Out-of-range labels are skipped: no loss, zero gradient, no out-of-bounds read. */
START_TEST(test_sparse_bad_labels_skipped)
{
    const float p[] = {0.1f, 0.7f, 0.2f, 0.25f, 0.25f, 0.5f};
    const float bad[] = {7.0f, -1.0f, NAN, 3.0f};
    for (int lg = 0; lg < 2; lg++) {
        ct_loss l = mk_loss("sparse_categorical_crossentropy", lg);
        for (int b = 0; b < 4; b++) {
            const float y[] = {1, bad[b]};
            float d[6];
            for (int i = 0; i < 6; i++)
                d[i] = 42.0f;
            double v = l.kind->compute(&l, p, y, d, 2, 3, 1.0f);
            double row0 = loss_value(&l, p, y, 1, 3);
            ck_assert_double_eq(v, row0);
            for (int i = 3; i < 6; i++)
                ck_assert_float_eq(d[i], 0.0f);
            ck_assert_float_ne(d[1], 42.0f);
        }
    }
}
END_TEST

START_TEST(test_kld_values)
{
    ct_loss l = mk_loss("kld", false);
    ck_assert_str_eq(l.kind->name, "kl_divergence");
    const float y[] = {0.5f, 0.5f}, p[] = {0.25f, 0.75f};
    /* 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75), summed over the last axis */
    tu_assert_close(loss_checked(&l, p, y, 1, 2), 0.14384103622589042, 1e-7);
    /* y = 0 is clipped to 1e-7: 1e-7 log(1e-7 / 0.5) + 1 * log(1 / 0.5) */
    const float y0[] = {0, 1}, p0[] = {0.5f, 0.5f};
    double e = (double)1e-7f;
    tu_assert_close(loss_checked(&l, p0, y0, 1, 2), e * log(e / 0.5) + log(2.0), 1e-9);
}
END_TEST

START_TEST(test_hinge_values)
{
    ct_loss l = mk_loss("hinge", false);
    /* {0, 1} labels become {-1, 1}: y' = (1, -1): max(1 - 0.3, 0) = 0.7, max(1 + 0.4, 0) =
     * 1.4 -> 1.05 */
    const float y[] = {1, 0}, p[] = {0.3f, 0.4f};
    tu_assert_close(loss_checked(&l, p, y, 1, 2), 1.05, 1e-6);
    /* {-1, 1} labels are used as they are: 1 + 0.3 = 1.3, max(1 - 2, 0) = 0 -> 0.65 */
    const float y2[] = {-1, 1}, p2[] = {0.3f, 2.0f};
    tu_assert_close(loss_checked(&l, p2, y2, 1, 2), 0.65, 1e-6);
    /* the conversion looks at the whole batch: a -1 anywhere keeps the 0 as 0 */
    const float y3[] = {0, 1, -1, 1}, p3[] = {0.5f, 0.5f, 0.5f, 0.5f};
    /* rows: (1 + 0.5) / 2 = 0.75 and (1.5 + 0.5) / 2 = 1.0 */
    tu_assert_close(loss_checked(&l, p3, y3, 2, 2), 1.75, 1e-6);
}
END_TEST

/* ---- the rest of Keras's catalogue ------------------------------------------------------ */

/* A loss with its Keras constructor's defaults (ct_loss_parse's). */
static ct_loss mk_keras(const char *name, bool from_logits)
{
    ct_loss l = mk_loss(name, from_logits);
    l.alpha = 0.25;
    l.gamma = 2.0;
    return l;
}

/* The batch's mean (Keras's sum_over_batch_size) as a Keras loss object returns it. */
static double batch_mean(const ct_loss *l, const float *p, const float *y, int64_t rows,
                         int64_t cols)
{
    return loss_checked(l, p, y, rows, cols) / (double)rows;
}

/* Expected values: keras 3.15 (torch backend, float32) on the same arrays, e.g.
 * keras.losses.MeanSquaredLogarithmicError()(y, p); the float32 result is printed in
 * full, so the tolerance covers float32 rounding. */
START_TEST(test_regression_catalogue_values)
{
    const float p[] = {0.2f, 0.5f, 1.5f, 2.0f, 0.1f, 0.7f};
    const float y[] = {0.0f, 1.0f, 2.0f, 1.5f, 0.3f, 0.0f};
    const float ym[] = {0.5f, 1.0f, 2.0f, 1.5f, 0.3f, -0.4f};
    ct_loss msle = mk_keras("msle", false), mape = mk_keras("mape", false);
    ct_loss poisson = mk_keras("poisson", false);
    tu_assert_close(batch_mean(&msle, p, y, 2, 3), 0.08199294656515121, 1e-6);
    /* by hand too: rows (.6 + .5 + .25) / 3 and (1/3 + 2/3 + 2.75) / 3, mean 0.85, x100 */
    tu_assert_close(batch_mean(&mape, p, ym, 2, 3), 85.0, 1e-6);
    tu_assert_close(batch_mean(&poisson, p, y, 2, 3), 0.7555452585220337, 1e-6);
    ck_assert_ptr_eq(ct_loss_kind_find("MSLE"), msle.kind);
    ck_assert_ptr_eq(ct_loss_kind_find("MeanAbsolutePercentageError"), mape.kind);
}
END_TEST

START_TEST(test_cosine_hinge_catalogue_values)
{
    const float pc[] = {0.2f, -0.5f, 1.5f, 2.0f, 0.1f, -0.7f};
    const float yc[] = {0.0f, 1.0f, 2.0f, 1.5f, 0.3f, 0.0f};
    ct_loss cos = mk_keras("cosine_similarity", false);
    tu_assert_close(batch_mean(&cos, pc, yc, 2, 3), -0.8176311254501343, 1e-6);
    /* a zero target: Keras's bounded norm gives 0 */
    const float zero[3] = {0, 0, 0};
    tu_assert_close(loss_checked(&cos, pc, zero, 1, 3), 0.0, 1e-12);
    const float yh[] = {0, 1, 1, 1, 0, 0}, ph[] = {0.3f, -0.4f, 1.5f, 0.6f, 0.2f, -0.8f};
    ct_loss sq = mk_keras("squared_hinge", false);
    tu_assert_close(batch_mean(&sq, ph, yh, 2, 3), 0.8816666603088379, 1e-6);
    /* categorical_hinge by hand: rows max(.5 - .4 + 1, 0) = 1.1 and max(.9 - .2 + 1, 0) =
     * 1.7, mean 1.4 (Keras: 1.4000000953674316) */
    const float ych[] = {0, 1, 0, 1, 0, 0}, pch[] = {0.3f, 0.4f, 0.5f, 0.2f, 0.9f, 0.1f};
    ct_loss ch = mk_keras("categorical_hinge", false);
    tu_assert_close(batch_mean(&ch, pch, ych, 2, 3), 1.4, 1e-6);
}
END_TEST

START_TEST(test_focal_catalogue_values)
{
    const float yb[] = {1, 0, 1, 0, 0, 1}, pb[] = {0.7f, 0.2f, 0.4f, 0.1f, 0.8f, 0.95f};
    const float xb[] = {1.2f, -0.5f, 0.3f, -2.0f, 1.0f, 3.0f};
    ct_loss bf = mk_keras("binary_focal_crossentropy", false);
    tu_assert_close(batch_mean(&bf, pb, yb, 2, 3), 0.23368555307388306, 1e-6);
    bf.apply_class_balancing = true;
    bf.alpha = 0.3;
    bf.gamma = 1.5;
    bf.label_smoothing = 0.1;
    tu_assert_close(batch_mean(&bf, pb, yb, 2, 3), 0.14868979156017303, 1e-6);
    ct_loss bfl = mk_keras("binary_focal_crossentropy", true);
    tu_assert_close(batch_mean(&bfl, xb, yb, 2, 3), 0.14764247834682465, 1e-6);

    const float yf[] = {0, 1, 0, 0.2f, 0.3f, 0.5f}, pf[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.4f};
    const float xf[] = {1.0f, 2.0f, -1.0f, 0.5f, -0.5f, 3.0f};
    ct_loss cf = mk_keras("categorical_focal_crossentropy", false);
    tu_assert_close(batch_mean(&cf, pf, yf, 2, 3), 0.09510974586009979, 1e-6);
    cf.alpha = 0.5;
    cf.gamma = 1.0;
    cf.label_smoothing = 0.2;
    tu_assert_close(batch_mean(&cf, pf, yf, 2, 3), 0.31586402654647827, 1e-6);
    ct_loss cfl = mk_keras("categorical_focal_crossentropy", true);
    tu_assert_close(batch_mean(&cfl, xf, yf, 2, 3), 0.18774914741516113, 1e-6);
}
END_TEST

/* label_smoothing on the crossentropies: Keras's BinaryCrossentropy(label_smoothing=0.2)
 * and CategoricalCrossentropy(label_smoothing=0.1) on these arrays. */
START_TEST(test_label_smoothing_values)
{
    const float yb[] = {1, 0, 1, 0, 0, 1}, pb[] = {0.7f, 0.2f, 0.4f, 0.1f, 0.8f, 0.95f};
    const float xb[] = {1.2f, -0.5f, 0.3f, -2.0f, 1.0f, 3.0f};
    ct_loss b = mk_keras("binary_crossentropy", false);
    b.label_smoothing = 0.2;
    tu_assert_close(batch_mean(&b, pb, yb, 2, 3), 0.6367583274841309, 1e-6);
    b.from_logits = true;
    tu_assert_close(batch_mean(&b, xb, yb, 2, 3), 0.5634152889251709, 1e-6);
    const float yf[] = {0, 1, 0, 0.2f, 0.3f, 0.5f}, pf[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.4f};
    const float xf[] = {1.0f, 2.0f, -1.0f, 0.5f, -0.5f, 3.0f};
    ct_loss c = mk_keras("categorical_crossentropy", false);
    c.label_smoothing = 0.1;
    tu_assert_close(batch_mean(&c, pf, yf, 2, 3), 0.9600684642791748, 1e-6);
    c.from_logits = true;
    tu_assert_close(batch_mean(&c, xf, yf, 2, 3), 1.0918797254562378, 1e-6);
    /* the fused sigmoid path's gradient p - y uses the smoothed target */
    ct_loss f = mk_keras("binary_crossentropy", false);
    f.label_smoothing = 0.2;
    f.fused = true;
    float d[6];
    f.kind->compute(&f, pb, yb, d, 2, 3, 1.0f);
    tu_assert_close(d[0], (0.7 - 0.9) / 3.0, 1e-6);
    tu_assert_close(d[1], (0.2 - 0.1) / 3.0, 1e-6);
}
END_TEST

/* ---- gradients against central differences -------------------------------------------- */

/* d(sum)/d(pred) * scale against central differences in double (the perturbation is taken
 * as actually stored in float). */
/* A NaN prediction gives a NaN loss: clips and maxima must not turn it into a number
 * (NaN weights once evaluated to -log(1e-7) = 16.118). */
START_TEST(test_nan_prediction_is_nan)
{
    static const char *const names[] = {"mse", "mae", "huber", "log_cosh",
                                        "binary_crossentropy", "categorical_crossentropy",
                                        "sparse_categorical_crossentropy", "kl_divergence",
                                        "hinge", "msle", "mape", "poisson",
                                        "cosine_similarity", "squared_hinge",
                                        "categorical_hinge", "binary_focal_crossentropy",
                                        "categorical_focal_crossentropy"};
    const float p[3] = {0.2f, NAN, 0.3f}, y[3] = {0, 1, 0}, label[1] = {1};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        for (int logits = 0; logits < 2; logits++) {
            ct_loss l = mk_keras(names[i], logits);
            bool sparse = strstr(names[i], "sparse") != NULL;
            double v = loss_value(&l, p, sparse ? label : y, 1, 3);
            ck_assert_msg(isnan(v), "%s%s: %g", names[i], logits ? " from logits" : "", v);
        }
}
END_TEST

static void check_grad(const ct_loss *l, float *p, const float *y, int64_t rows, int64_t cols,
                       double tol)
{
    const float scale = 0.5f;
    float d[64];
    l->kind->compute(l, p, y, d, rows, cols, scale);
    for (int64_t i = 0; i < rows * cols; i++) {
        float save = p[i];
        p[i] = (float)(save + H);
        double up = p[i], lp = loss_value(l, p, y, rows, cols);
        p[i] = (float)(save - H);
        double dn = p[i], lm = loss_value(l, p, y, rows, cols);
        p[i] = save;
        double num = scale * (lp - lm) / (up - dn);
        ck_assert_msg(tu_relerr(d[i], num) <= tol, "%s%s: d[%lld] = %.9g, numeric %.9g",
                      l->kind->name, l->from_logits ? " (logits)" : "", (long long)i, d[i],
                      num);
    }
}

START_TEST(test_grad_regression)
{
    float p[] = {0.3f, -1.2f, 2.5f, 0.8f, -0.4f, 1.7f};
    const float y[] = {0.1f, 0.5f, 0.2f, -0.9f, -0.45f, 1.0f}; /* e: .2 -1.7 2.3 1.7 .05 .7 */
    const char *names[] = {"mse", "mae", "huber", "log_cosh"};
    for (int k = 0; k < 4; k++) {
        ct_loss l = mk_loss(names[k], false);
        check_grad(&l, p, y, 2, 3, 1e-4);
    }
    ct_loss h = mk_loss("huber", false);
    h.delta = 2.0;
    check_grad(&h, p, y, 2, 3, 1e-4);
}
END_TEST

START_TEST(test_grad_catalogue)
{
    float p[] = {0.3f, 1.2f, 2.5f, 0.8f, 0.4f, 1.7f};
    const float y[] = {0.1f, 0.5f, 0.2f, 0.9f, 0.45f, 1.0f};
    const char *names[] = {"msle", "mape", "poisson", "cosine_similarity"};
    for (int k = 0; k < 4; k++) {
        ct_loss l = mk_keras(names[k], false);
        check_grad(&l, p, y, 2, 3, 1e-3);
    }
    float pc[] = {0.3f, -1.2f, 2.5f, 0.8f, -0.4f, 1.7f};
    const float yc[] = {0.1f, -0.5f, 0.2f, -0.9f, 0.45f, 1.0f};
    ct_loss cos = mk_keras("cosine_similarity", false);
    check_grad(&cos, pc, yc, 2, 3, 1e-3);
    /* squared_hinge with {0, 1} labels (converted) and with signed ones; margins kept away
     * from the kink */
    float ph[] = {0.3f, -0.4f, 1.5f, 0.6f, 0.2f, -0.8f};
    const float yh[] = {0, 1, 1, 1, 0, 0}, ys[] = {-1, 1, 0.5f, 1, -1, -0.5f};
    ct_loss sq = mk_keras("squared_hinge", false);
    check_grad(&sq, ph, yh, 2, 3, 1e-3);
    check_grad(&sq, ph, ys, 2, 3, 1e-3);
    float pch[] = {0.3f, 0.4f, 0.5f, 0.2f, 0.9f, 0.1f};
    const float ych[] = {0, 1, 0, 1, 0, 0};
    ct_loss ch = mk_keras("categorical_hinge", false);
    check_grad(&ch, pch, ych, 2, 3, 1e-3);
}
END_TEST

START_TEST(test_grad_focal_and_smoothing)
{
    float pb[] = {0.7f, 0.2f, 0.4f, 0.1f, 0.8f, 0.95f};
    float xb[] = {1.2f, -0.5f, 0.3f, -2.0f, 1.0f, 3.0f};
    const float yb[] = {1, 0, 1, 0, 0.3f, 1};
    ct_loss bf = mk_keras("binary_focal_crossentropy", false);
    check_grad(&bf, pb, yb, 2, 3, 2e-3);
    bf.apply_class_balancing = true;
    bf.gamma = 1.5;
    bf.label_smoothing = 0.1;
    check_grad(&bf, pb, yb, 2, 3, 2e-3);
    bf.from_logits = true;
    check_grad(&bf, xb, yb, 2, 3, 2e-3);
    float pf[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.4f};
    float xf[] = {1.0f, 2.0f, -1.0f, 0.5f, -0.5f, 3.0f};
    const float yf[] = {0, 1, 0, 0.2f, 0.3f, 0.5f};
    ct_loss cf = mk_keras("categorical_focal_crossentropy", false);
    check_grad(&cf, pf, yf, 2, 3, 2e-3);
    cf.gamma = 0.5;
    cf.label_smoothing = 0.2;
    check_grad(&cf, pf, yf, 2, 3, 2e-3);
    cf.from_logits = true;
    check_grad(&cf, xf, yf, 2, 3, 2e-3);
    ct_loss b = mk_keras("binary_crossentropy", false);
    b.label_smoothing = 0.3; /* not 0.2, whose smoothed 0 is p = 0.1: a zero gradient */
    check_grad(&b, pb, yb, 2, 3, 2e-3);
    ct_loss c = mk_keras("categorical_crossentropy", false);
    c.label_smoothing = 0.1;
    check_grad(&c, pf, yf, 2, 3, 2e-3);
    c.from_logits = true;
    check_grad(&c, xf, yf, 2, 3, 1e-3);
}
END_TEST

START_TEST(test_grad_bce)
{
    float p[] = {0.3f, 0.8f, 0.55f, 0.1f, 0.9f, 0.45f};
    const float y[] = {1, 0, 1, 0, 0.3f, 1};
    ct_loss l = mk_loss("binary_crossentropy", false);
    check_grad(&l, p, y, 2, 3, 1e-3);
    float x[] = {2.0f, -1.5f, 0.3f, 4.0f, -3.0f, 0.0f};
    l.from_logits = true;
    check_grad(&l, x, y, 2, 3, 1e-4);
}
END_TEST

START_TEST(test_grad_cce)
{
    float p[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.4f}; /* second row sums to 1.3 */
    const float y[] = {0, 1, 0, 0.3f, 0.7f, 0};
    ct_loss l = mk_loss("categorical_crossentropy", false);
    check_grad(&l, p, y, 2, 3, 2e-3);
    float x[] = {1, 2, -1, 0.5f, -0.5f, 3};
    l.from_logits = true;
    check_grad(&l, x, y, 2, 3, 1e-4);
    /* labels that do not sum to one */
    const float y2[] = {0.5f, 1, 0, 0, 0.2f, 0.2f};
    check_grad(&l, x, y2, 2, 3, 1e-4);
    l.from_logits = false;
    check_grad(&l, p, y2, 2, 3, 2e-3);
}
END_TEST

START_TEST(test_grad_sparse_cce)
{
    float p[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.4f};
    const float y[] = {1, 2};
    ct_loss l = mk_loss("sparse_categorical_crossentropy", false);
    check_grad(&l, p, y, 2, 3, 2e-3);
    float x[] = {1, 2, -1, 0.5f, -0.5f, 3};
    l.from_logits = true;
    check_grad(&l, x, y, 2, 3, 1e-4);
}
END_TEST

/* Outputs (3, 4) per sample with labels (3): the driver hands the op every position as a
 * row (2 samples x 3 positions) with scale 1 / 6, so the loss is the mean over all
 * positions as Keras takes it. Value, gradient (logits, and the fused softmax path) and the
 * metrics against a direct computation. */
START_TEST(test_sparse_time_axis)
{
    float x[24];
    tu_fill(x, 24, 21, -2.0f, 2.0f);
    const float y[6] = {0, 3, 1, 2, 2, 3};
    const ct_backend *be = ct_backend_cpu();
    double want = 0, acc = 0, top2 = 0;
    float p[24], dwant[24];
    for (int r = 0; r < 6; r++) {
        double mx = x[r * 4], se = 0;
        int best = 0, larger = 0, t = (int)y[r];
        for (int c = 0; c < 4; c++) {
            mx = fmax(mx, x[r * 4 + c]);
            best = x[r * 4 + c] > x[r * 4 + best] ? c : best;
            larger += x[r * 4 + c] > x[r * 4 + t];
        }
        for (int c = 0; c < 4; c++)
            se += exp(x[r * 4 + c] - mx);
        for (int c = 0; c < 4; c++) {
            p[r * 4 + c] = (float)(exp(x[r * 4 + c] - mx) / se);
            dwant[r * 4 + c] = (float)((exp(x[r * 4 + c] - mx) / se - (c == t)) / 6.0);
        }
        want += (log(se) + mx - x[r * 4 + t]) / 6.0;
        acc += (best == t) / 6.0;
        top2 += (larger < 2) / 6.0;
    }
    const ct_loss_op ops[2] = {
        {.id = CT_LOSS_SPARSE_CCE, .from_logits = true, .delta = 1.0, .sum_scale = 1.0},
        {.id = CT_LOSS_SPARSE_CCE, .fused = true, .delta = 1.0, .sum_scale = 1.0}};
    for (int k = 0; k < 2; k++) {
        double sum = 0;
        float d[24];
        be->loss(&ops[k], k ? p : x, y, d, 6, 4, 1.0f / 6.0f, &sum);
        ck_assert_msg(tu_relerr(sum / 6.0, want) < 1e-6, "loss %.9g, want %.9g", sum / 6.0, want);
        for (int i = 0; i < 24; i++)
            ck_assert_msg(fabs(d[i] - dwant[i]) < 1e-6, "op %d: d[%d] = %.9g, want %.9g", k, i,
                          d[i], dwant[i]);
    }
    ct_loss l = mk_loss("sparse_categorical_crossentropy", true);
    check_grad(&l, x, y, 6, 4, 1e-4);
    double hits = 0, in2 = 0;
    be->metric(CT_METRIC_SPARSE_ACC, 0, x, y, 6, 4, &hits);
    be->metric(CT_METRIC_SPARSE_TOP_K, 2, x, y, 6, 4, &in2);
    ck_assert_double_eq_tol(hits / 6.0, acc, 1e-12);
    ck_assert_double_eq_tol(in2 / 6.0, top2, 1e-12);
}
END_TEST

/* sum_scale (a masked output's batch mean over its unmasked positions) scales what the
 * loss adds to the running sum and nothing else: 0 reads as 1, the gradient is the same,
 * and the sum is added to, not replaced. */
START_TEST(test_loss_sum_scale)
{
    float x[24], y[24], ys[6] = {0, 3, 1, 2, 2, 3};
    tu_fill(x, 24, 23, -2.0f, 2.0f);
    tu_fill(y, 24, 24, 0.0f, 1.0f);
    const ct_backend *be = ct_backend_cpu();
    const ct_loss_op ops[3] = {{.id = CT_LOSS_MSE, .delta = 1.0},
                               {.id = CT_LOSS_SPARSE_CCE, .from_logits = true, .delta = 1.0},
                               {.id = CT_LOSS_BCE, .from_logits = true, .delta = 1.0}};
    const double scales[3] = {0.0, 1.0, 2.5};
    for (int k = 0; k < 3; k++) {
        double sums[3];
        float d[3][24];
        for (int s = 0; s < 3; s++) {
            ct_loss_op op = ops[k];
            op.sum_scale = scales[s];
            sums[s] = 10.0;
            be->loss(&op, x, k == 1 ? ys : y, d[s], 6, 4, 0.25f, &sums[s]);
            sums[s] -= 10.0;
        }
        ck_assert_msg(sums[1] > 0 && sums[0] == sums[1], "op %d: sum_scale 0 adds %.9g, 1 adds "
                      "%.9g", k, sums[0], sums[1]);
        ck_assert_msg(tu_relerr(sums[2], 2.5 * sums[1]) < 1e-12, "op %d: sum_scale 2.5 adds %.9g, "
                      "1 adds %.9g", k, sums[2], sums[1]);
        ck_assert(memcmp(d[0], d[1], sizeof d[0]) == 0 && memcmp(d[1], d[2], sizeof d[0]) == 0);
    }
    ct_loss l = mk_loss("mse", false);
    ck_assert(ct_loss_op_of(&l).sum_scale == 1.0);
}
END_TEST

START_TEST(test_grad_kld_hinge)
{
    float p[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.1f};
    const float y[] = {0.1f, 0.6f, 0.3f, 0.5f, 0.25f, 0.25f};
    ct_loss l = mk_loss("kl_divergence", false);
    check_grad(&l, p, y, 2, 3, 1e-3);
    /* margins 1 - y'p: 1.3 0.6 -1.0 1.5 -0.5 1.2, none near the kink */
    float ph[] = {0.3f, 0.4f, 2.0f, -0.5f, -1.5f, 0.2f};
    const float yh[] = {0, 1, 1, 1, 0, 0};
    ct_loss h = mk_loss("hinge", false);
    check_grad(&h, ph, yh, 2, 3, 1e-4);
}
END_TEST

/* ---- the fused softmax / sigmoid path -------------------------------------------------- */

static void softmax_rows(const double *x, float *p, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        double mx = x[r * cols], s = 0;
        for (int64_t c = 1; c < cols; c++)
            mx = fmax(mx, x[r * cols + c]);
        for (int64_t c = 0; c < cols; c++)
            s += exp(x[r * cols + c] - mx);
        for (int64_t c = 0; c < cols; c++)
            p[r * cols + c] = (float)(exp(x[r * cols + c] - mx) / s);
    }
}

static void sigmoid_all(const double *x, float *p, int64_t n, int64_t cols)
{
    (void)cols;
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(1.0 / (1.0 + exp(-x[i])));
}

typedef void (*act_fn)(const double *x, float *p, int64_t rows, int64_t cols);

/* The unfused loss of act(x), as a function of the logits x. */
static double chain_loss(const ct_loss *l, act_fn act, const double *x, const float *y,
                         int64_t rows, int64_t cols, bool elementwise)
{
    float p[64];
    act(x, p, elementwise ? rows * cols : rows, cols);
    return loss_value(l, p, y, rows, cols);
}

static void check_fused(const char *name, act_fn act, bool elementwise, const float *y)
{
    const int64_t rows = 2, cols = 3;
    double x[] = {1.0, -0.5, 2.0, 0.3, 0.2, -1.0};
    float p[6], d[6];
    act(x, p, elementwise ? rows * cols : rows, cols);
    ct_loss plain = mk_loss(name, false), fused = plain;
    fused.fused = true;
    ck_assert(ct_loss_can_fuse(&plain, elementwise ? CT_ACT_SIGMOID : CT_ACT_SOFTMAX));
    double v = fused.kind->compute(&fused, p, y, d, rows, cols, 0.5f);
    tu_assert_close(v, loss_value(&plain, p, y, rows, cols), 1e-12);
    for (int i = 0; i < rows * cols; i++) {
        double save = x[i];
        x[i] = save + H;
        double lp = chain_loss(&plain, act, x, y, rows, cols, elementwise);
        x[i] = save - H;
        double lm = chain_loss(&plain, act, x, y, rows, cols, elementwise);
        x[i] = save;
        double num = 0.5 * (lp - lm) / (2 * H);
        ck_assert_msg(tu_relerr(d[i], num) <= 2e-3, "%s fused: d[%d] = %.9g, numeric %.9g",
                      name, i, d[i], num);
    }
}

START_TEST(test_fused_matches_chain_rule)
{
    const float yc[] = {0, 1, 0, 1, 0, 0}, ys[] = {1, 0}, yb[] = {1, 0, 1, 0, 0.25f, 1};
    check_fused("categorical_crossentropy", softmax_rows, false, yc);
    check_fused("sparse_categorical_crossentropy", softmax_rows, false, ys);
    check_fused("binary_crossentropy", sigmoid_all, true, yb);
}
END_TEST

START_TEST(test_fused_exact_form)
{
    /* categorical: scale * (p - y); binary: scale * (p - y) / cols */
    const float p[] = {0.2f, 0.5f, 0.3f}, y[] = {0, 1, 0}, ys[] = {1};
    float d[3];
    ct_loss l = mk_loss("categorical_crossentropy", false);
    l.fused = true;
    l.kind->compute(&l, p, y, d, 1, 3, 0.25f);
    ck_assert_float_eq_tol(d[0], 0.05f, 1e-7f);
    ck_assert_float_eq_tol(d[1], -0.125f, 1e-7f);
    ck_assert_float_eq_tol(d[2], 0.075f, 1e-7f);
    ct_loss s = mk_loss("sparse_categorical_crossentropy", false);
    s.fused = true;
    s.kind->compute(&s, p, ys, d, 1, 3, 1.0f);
    ck_assert_float_eq_tol(d[0], 0.2f, 1e-7f);
    ck_assert_float_eq_tol(d[1], -0.5f, 1e-7f);
    ck_assert_float_eq_tol(d[2], 0.3f, 1e-7f);
    ct_loss b = mk_loss("binary_crossentropy", false);
    b.fused = true;
    const float pb[] = {1.0f, 0.25f}, yb[] = {0, 1}; /* saturated p still gets p - y */
    b.kind->compute(&b, pb, yb, d, 1, 2, 1.0f);
    ck_assert_float_eq_tol(d[0], 0.5f, 1e-7f);
    ck_assert_float_eq_tol(d[1], -0.375f, 1e-7f);
}
END_TEST

START_TEST(test_can_fuse)
{
    ct_loss c = mk_loss("categorical_crossentropy", false);
    ct_loss s = mk_loss("sparse_categorical_crossentropy", false);
    ct_loss b = mk_loss("binary_crossentropy", false);
    ct_loss m = mk_loss("mse", false);
    ck_assert(ct_loss_can_fuse(&c, CT_ACT_SOFTMAX));
    ck_assert(ct_loss_can_fuse(&s, CT_ACT_SOFTMAX));
    ck_assert(!ct_loss_can_fuse(&c, CT_ACT_SIGMOID));
    ck_assert(ct_loss_can_fuse(&b, CT_ACT_SIGMOID));
    ck_assert(!ct_loss_can_fuse(&b, CT_ACT_SOFTMAX));
    ck_assert(!ct_loss_can_fuse(&m, CT_ACT_SOFTMAX));
    ck_assert(!ct_loss_can_fuse(&m, CT_ACT_LINEAR));
    c.from_logits = b.from_logits = true;
    ck_assert(!ct_loss_can_fuse(&c, CT_ACT_SOFTMAX));
    ck_assert(!ct_loss_can_fuse(&b, CT_ACT_SIGMOID));
}
END_TEST

/* ---- metrics ----------------------------------------------------------------------------- */

static ct_node scalar_node(const char *text)
{
    ct_node n;
    memset(&n, 0, sizeof n);
    n.type = CT_NODE_SCALAR;
    n.file = "t.yaml";
    n.line = n.col = 1;
    n.scalar = (char *)text;
    return n;
}

static ct_metric init_metric(const char *name, const char *loss_name, int64_t out_cols)
{
    ct_node n = scalar_node(name);
    ct_loss l;
    memset(&l, 0, sizeof l);
    if (loss_name)
        l = mk_loss(loss_name, false);
    ct_metric m;
    ct_error err = {0};
    ck_assert_msg(ct_metric_init(&m, &n, loss_name ? &l : NULL, out_cols, &err) == 0, "%s",
                  err.msg);
    return m;
}

START_TEST(test_metric_resolve_accuracy)
{
    ct_metric m = init_metric("accuracy", "sparse_categorical_crossentropy", 10);
    ck_assert_str_eq(m.kind->name, "sparse_categorical_accuracy");
    ck_assert_str_eq(m.name, "accuracy");
    m = init_metric("accuracy", "categorical_crossentropy", 10);
    ck_assert_str_eq(m.kind->name, "categorical_accuracy");
    m = init_metric("acc", "binary_crossentropy", 4);
    ck_assert_str_eq(m.kind->name, "binary_accuracy");
    ck_assert_str_eq(m.name, "acc");
    m = init_metric("accuracy", "mse", 1);
    ck_assert_str_eq(m.kind->name, "binary_accuracy");
    m = init_metric("accuracy", "mse", 3);
    ck_assert_str_eq(m.kind->name, "categorical_accuracy");
    m = init_metric("accuracy", NULL, 1);
    ck_assert_str_eq(m.kind->name, "binary_accuracy");
}
END_TEST

START_TEST(test_metric_names)
{
    ct_metric m = init_metric("mae", "mse", 1);
    ck_assert_str_eq(m.kind->name, "mean_absolute_error");
    ck_assert_str_eq(m.name, "mae");
    m = init_metric("mean_absolute_error", "mse", 1);
    ck_assert_str_eq(m.name, "mean_absolute_error");
    m = init_metric("MeanAbsoluteError", "mse", 1);
    ck_assert_str_eq(m.name, "mean_absolute_error");
    m = init_metric("rmse", "mse", 1);
    ck_assert_str_eq(m.kind->name, "root_mean_squared_error");
    m = init_metric("top_k_categorical_accuracy", "categorical_crossentropy", 10);
    ck_assert_int_eq(m.k, 5);
    m = init_metric("sparse_top_k_categorical_accuracy", "mse", 10);
    ck_assert_int_eq(m.k, 5);
    m = init_metric("binary_accuracy", "categorical_crossentropy", 10);
    ck_assert_str_eq(m.kind->name, "binary_accuracy");
}
END_TEST

static double metric_on(ct_metric *m, const float *p, const float *y, int64_t rows,
                        int64_t cols)
{
    ct_metric_reset(m);
    m->kind->update(m, p, y, rows, cols);
    return m->kind->result(m);
}

START_TEST(test_metric_values)
{
    /* binary: row 0 both right; row 1: 0.5 is not > 0.5 (wrong), 0.9 right -> 0.75 */
    const float pb[] = {0.6f, 0.4f, 0.5f, 0.9f}, yb[] = {1, 0, 1, 1};
    ct_metric m = init_metric("binary_accuracy", NULL, 2);
    tu_assert_close(metric_on(&m, pb, yb, 2, 2), 0.75, 1e-12);
    /* categorical: row 1 ties between classes 0 and 1, the first wins */
    const float pc[] = {0.1f, 0.6f, 0.3f, 0.5f, 0.5f, 0.0f, 0.2f, 0.2f, 0.6f};
    const float yc[] = {0, 1, 0, 0, 1, 0, 1, 0, 0};
    m = init_metric("categorical_accuracy", NULL, 3);
    tu_assert_close(metric_on(&m, pc, yc, 3, 3), 1.0 / 3.0, 1e-12);
    const float yc2[] = {0, 1, 0, 1, 0, 0, 0, 0, 1};
    tu_assert_close(metric_on(&m, pc, yc2, 3, 3), 1.0, 1e-12);
    /* sparse: labels 1, 0 (the tie's first maximum), 2 -> all right; then 1, 1, 1 -> 1/3 */
    const float ys[] = {1, 0, 2}, ys2[] = {1, 1, 1};
    m = init_metric("sparse_categorical_accuracy", NULL, 3);
    tu_assert_close(metric_on(&m, pc, ys, 3, 3), 1.0, 1e-12);
    tu_assert_close(metric_on(&m, pc, ys2, 3, 3), 1.0 / 3.0, 1e-12);
    /* regression metrics: squared errors 1, 0 | 1, 4 and absolute 1, 0 | 1, 2 */
    const float pr[] = {1, 2, 3, 5}, yr[] = {0, 2, 4, 3};
    m = init_metric("mse", NULL, 2);
    tu_assert_close(metric_on(&m, pr, yr, 2, 2), 1.5, 1e-12);
    m = init_metric("mae", NULL, 2);
    tu_assert_close(metric_on(&m, pr, yr, 2, 2), 1.0, 1e-12);
    m = init_metric("rmse", NULL, 2);
    tu_assert_close(metric_on(&m, pr, yr, 2, 2), sqrt(1.5), 1e-12);
    ct_metric_reset(&m);
    ck_assert_double_eq(m.sum, 0.0);
    ck_assert_double_eq(m.count, 0.0);
    ck_assert_double_eq(m.kind->result(&m), 0.0);
}
END_TEST

START_TEST(test_metric_top_k)
{
    /* k = 2. Row 0: 0.1 is third (miss); row 1: 0.3 second (hit); row 2: the label's 0.2
     * ties with class 0 behind 0.6, rank 1 + 1 = 2 (hit, as Keras's in_top_k) */
    const float p[] = {0.1f, 0.6f, 0.3f, 0.5f, 0.3f, 0.2f, 0.2f, 0.2f, 0.6f};
    const float ys[] = {0, 1, 1}, yc[] = {1, 0, 0, 0, 1, 0, 0, 1, 0};
    ct_metric m = init_metric("sparse_top_k_categorical_accuracy", NULL, 3);
    m.k = 2;
    tu_assert_close(metric_on(&m, p, ys, 3, 3), 2.0 / 3.0, 1e-12);
    m = init_metric("top_k_categorical_accuracy", NULL, 3);
    m.k = 2;
    tu_assert_close(metric_on(&m, p, yc, 3, 3), 2.0 / 3.0, 1e-12);
    m.k = 1;
    tu_assert_close(metric_on(&m, p, yc, 3, 3), 0.0, 1e-12);
    m.k = 5; /* k over the width: everything is in */
    tu_assert_close(metric_on(&m, p, yc, 3, 3), 1.0, 1e-12);
}
END_TEST

START_TEST(test_metric_streaming)
{
    float p[5 * 3], yc[5 * 3], ys[5];
    tu_fill(p, 15, 7, 0, 1);
    memset(yc, 0, sizeof yc);
    for (int r = 0; r < 5; r++) {
        ys[r] = (float)((r * 2) % 3);
        yc[r * 3 + (int)ys[r]] = 1;
    }
    const char *names[] = {"categorical_accuracy", "sparse_categorical_accuracy", "mse", "mae",
                           "rmse", "binary_accuracy", "top_k_categorical_accuracy"};
    for (int k = 0; k < 7; k++) {
        ct_metric m = init_metric(names[k], NULL, 3);
        m.k = 2;
        const float *y = k == 1 ? ys : yc;
        int64_t ystride = k == 1 ? 1 : 3;
        double one = metric_on(&m, p, y, 5, 3);
        ct_metric_reset(&m);
        m.kind->update(&m, p, y, 2, 3);
        m.kind->update(&m, p + 6, y + 2 * ystride, 3, 3);
        tu_assert_close(m.kind->result(&m), one, 1e-12);
        ck_assert_double_eq(m.count, 5.0);
    }
}
END_TEST

/* ---- parsing ------------------------------------------------------------------------------ */

static ct_node *parse(const char *text)
{
    ct_error err = {0};
    ct_node *root = ct_config_parse(text, strlen(text), "t.yaml", &err);
    ck_assert_msg(root != NULL, "parse failed: %s", err.msg);
    return root;
}

/* Parses compile.loss from text; returns 0/-1 and leaves the message in err. */
static int parse_loss(const char *text, ct_loss *out, ct_error *err)
{
    ct_node *root = parse(text);
    int rc = ct_loss_parse(ct_map_get(root, "compile"), "loss", out, err);
    ct_node_free(root);
    return rc;
}

START_TEST(test_loss_parse_ok)
{
    ct_loss l;
    ct_error err = {0};
    ck_assert_int_eq(parse_loss("compile:\n  loss: mse\n", &l, &err), 0);
    ck_assert_str_eq(l.kind->name, "mean_squared_error");
    ck_assert(!l.from_logits && !l.fused);
    ck_assert_int_eq(parse_loss("compile:\n  loss: CategoricalCrossentropy\n", &l, &err), 0);
    ck_assert_str_eq(l.kind->name, "categorical_crossentropy");
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: sparse_categorical_crossentropy, "
                                "from_logits: true}\n",
                                &l, &err),
                     0);
    ck_assert_str_eq(l.kind->name, "sparse_categorical_crossentropy");
    ck_assert(l.from_logits);
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: huber, delta: 2.5}\n", &l, &err), 0);
    ck_assert_double_eq(l.delta, 2.5);
    ck_assert_int_eq(parse_loss("compile:\n  loss: huber\n", &l, &err), 0);
    ck_assert_double_eq(l.delta, 1.0);
}
END_TEST

START_TEST(test_loss_parse_defaults_inserted)
{
    ct_node *root = parse("compile:\n  loss: {type: binary_crossentropy}\n");
    ct_loss l;
    ct_error err = {0};
    ck_assert_int_eq(ct_loss_parse(ct_map_get(root, "compile"), "loss", &l, &err), 0);
    ct_node *fl = ct_map_get(ct_map_get(ct_map_get(root, "compile"), "loss"), "from_logits");
    ck_assert_ptr_nonnull(fl);
    bool b = true;
    ck_assert_int_eq(ct_node_bool(fl, &b, &err), 0);
    ck_assert(!b);
    ct_node_free(root);
}
END_TEST

START_TEST(test_loss_parse_errors)
{
    ct_loss l;
    ct_error err = {0};
    ck_assert_int_eq(parse_loss("compile:\n  loss: mean_sqared_error\n", &l, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg,
                     "t.yaml:2:9: unknown loss 'mean_sqared_error' (did you mean "
                     "'mean_squared_error'?); known losses: mean_squared_error (mse), "
                     "mean_absolute_error (mae), huber, log_cosh (logcosh), binary_crossentropy "
                     "(bce), categorical_crossentropy, sparse_categorical_crossentropy, "
                     "kl_divergence (kld), hinge, mean_squared_logarithmic_error (msle), "
                     "mean_absolute_percentage_error (mape), poisson, cosine_similarity, "
                     "squared_hinge, categorical_hinge, binary_focal_crossentropy, "
                     "categorical_focal_crossentropy");
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: hnge}\n", &l, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:16: unknown loss 'hnge' (did you mean 'hinge'?); "
                              "known losses: mean_squared_error (mse), mean_absolute_error "
                              "(mae), huber, log_cosh (logcosh), binary_crossentropy (bce), "
                              "categorical_crossentropy, sparse_categorical_crossentropy, "
                              "kl_divergence (kld), hinge, mean_squared_logarithmic_error "
                              "(msle), mean_absolute_percentage_error (mape), poisson, "
                              "cosine_similarity, squared_hinge, categorical_hinge, "
                              "binary_focal_crossentropy, categorical_focal_crossentropy");
    ck_assert_int_eq(parse_loss("compile:\n  optimizer: adam\n", &l, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:3: compile needs the key 'loss'");
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: huber, delta: -1}\n", &l, &err), -1);
    ck_assert_str_eq(err.msg,
                     "t.yaml:2:30: loss 'huber': delta must be a positive number, got -1");
    ck_assert_int_eq(parse_loss("compile:\n  loss: [mse]\n", &l, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:9: loss must be a name such as mse or a map such as "
                              "{type: categorical_crossentropy, from_logits: true}");
}
END_TEST

START_TEST(test_loss_parse_unknown_keys)
{
    ct_loss l;
    ct_error err = {0};
    /* from_logits belongs to the crossentropies only */
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: mse, from_logits: true}\n", &l, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:21: unknown key 'from_logits' in loss "
                              "'mean_squared_error'; known keys: type");
    ck_assert_int_eq(
        parse_loss("compile:\n  loss: {type: categorical_crossentropy, delta: 1}\n", &l, &err),
        -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:42: unknown key 'delta' in loss "
                              "'categorical_crossentropy'; known keys: type, from_logits, "
                              "label_smoothing");
}
END_TEST

START_TEST(test_loss_parse_catalogue)
{
    ct_loss l;
    ct_error err = {0};
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: binary_focal_crossentropy, "
                                "apply_class_balancing: true, alpha: 0.4, gamma: 1.5, "
                                "from_logits: true, label_smoothing: 0.1}\n",
                                &l, &err),
                     0);
    ck_assert(l.apply_class_balancing && l.from_logits);
    ck_assert_double_eq(l.alpha, 0.4);
    ck_assert_double_eq(l.gamma, 1.5);
    ck_assert_double_eq(l.label_smoothing, 0.1);
    ck_assert_int_eq(parse_loss("compile:\n  loss: categorical_focal_crossentropy\n", &l, &err),
                     0);
    ck_assert(l.alpha == 0.25 && l.gamma == 2.0 && l.label_smoothing == 0.0);
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: cosine_similarity, axis: -1}\n", &l,
                                &err),
                     0);
    ck_assert_int_eq(parse_loss("compile:\n  loss: MSLE\n", &l, &err), 0);
    ck_assert_str_eq(l.kind->name, "mean_squared_logarithmic_error");
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: categorical_crossentropy, "
                                "label_smoothing: 1.5}\n",
                                &l, &err),
                     -1);
    ck_assert_msg(strstr(err.msg, "t.yaml:2:59: 'label_smoothing' must be between 0 and 1") == err.msg, "%s", err.msg);
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: binary_focal_crossentropy, "
                                "gamma: -1}\n",
                                &l, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:50: 'gamma' must be at least 0, got -1");
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: cosine_similarity, axis: 0}\n", &l,
                                &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:41: loss 'cosine_similarity': only axis -1 (the "
                              "last) is supported, got 0");
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: poisson, label_smoothing: 0.1}\n",
                                &l, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:25: unknown key 'label_smoothing' in loss 'poisson'; "
                              "known keys: type");
    ck_assert_int_eq(parse_loss("compile:\n  loss: {type: categorical_focal_crossentropy, "
                                "apply_class_balancing: true}\n",
                                &l, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:48: unknown key 'apply_class_balancing' in loss "
                              "'categorical_focal_crossentropy'; known keys: type, alpha, "
                              "gamma, from_logits, label_smoothing");
}
END_TEST

/* Initialises metric number `i` of compile.metrics. */
static int parse_metric(const char *text, int i, const char *loss_name, int64_t cols,
                        ct_metric *m, ct_error *err)
{
    ct_node *root = parse(text);
    ct_node *seq = ct_map_get(ct_map_get(root, "compile"), "metrics");
    ck_assert_ptr_nonnull(seq);
    ck_assert_int_eq(seq->type, CT_NODE_SEQ);
    ct_loss l = mk_loss(loss_name, false);
    int rc = ct_metric_init(m, seq->items[i], &l, cols, err);
    ct_node_free(root);
    return rc;
}

static int metric_from(const char *text, const char *loss_name, int64_t cols, ct_metric *m,
                       ct_error *err)
{
    return parse_metric(text, 0, loss_name, cols, m, err);
}

START_TEST(test_metric_parse)
{
    ct_metric m;
    ct_error err = {0};
    const char *text = "compile:\n  metrics: [accuracy, {type: top_k_categorical_accuracy, "
                       "k: 3}, acuracy, {type: mae, k: 2}, {type: sparse_top_k_categorical_"
                       "accuracy, k: 0}]\n";
    ck_assert_int_eq(parse_metric(text, 0, "sparse_categorical_crossentropy", 10, &m, &err), 0);
    ck_assert_str_eq(m.kind->name, "sparse_categorical_accuracy");
    ck_assert_int_eq(parse_metric(text, 1, "categorical_crossentropy", 10, &m, &err), 0);
    ck_assert_str_eq(m.name, "top_k_categorical_accuracy");
    ck_assert_int_eq(m.k, 3);
    ck_assert_int_eq(parse_metric(text, 2, "categorical_crossentropy", 10, &m, &err), -1);
    ck_assert_str_eq(err.msg,
                     "t.yaml:2:65: unknown metric 'acuracy' (did you mean 'accuracy'?); known "
                     "metrics: accuracy, acc, binary_accuracy, categorical_accuracy, "
                     "sparse_categorical_accuracy, top_k_categorical_accuracy, "
                     "sparse_top_k_categorical_accuracy, mean_squared_error, mse, "
                     "mean_absolute_error, mae, root_mean_squared_error, rmse, precision, "
                     "recall, auc, f1_score, fbeta_score, mean_iou, r2_score, "
                     "cosine_similarity");
    ck_assert_int_eq(parse_metric(text, 3, "mse", 1, &m, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:86: unknown key 'k' in metric 'mean_absolute_error'; "
                              "known keys: type, name");
    ck_assert_int_eq(parse_metric(text, 4, "mse", 1, &m, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:138: metric 'sparse_top_k_categorical_accuracy': k must "
                              "be a positive integer, got 0");
}
END_TEST

/* ---- metrics with an epoch's state (metric_state.c) ------------------------------------ */

/* Initialises compile.metrics[0] of `text` for an output of `cols` under loss_name. */
static int metric_from(const char *text, const char *loss_name, int64_t cols, ct_metric *m,
                       ct_error *err);

/* The result after the batches [0, split) and [split, rows): state carries across. */
static double metric_batches(const char *text, const char *loss_name, const float *p,
                             const float *y, int64_t rows, int64_t cols, int64_t ycols,
                             int64_t split)
{
    ct_metric m;
    ct_error err = {0};
    ck_assert_msg(metric_from(text, loss_name, cols, &m, &err) == 0, "%s", err.msg);
    ck_assert(m.host);
    ct_metric_reset(&m);
    m.kind->update(&m, p, y, split, cols);
    m.kind->update(&m, p + split * cols, y + split * ycols, rows - split, cols);
    double v = m.kind->result(&m);
    ct_metric_free(&m);
    return v;
}

#define MT(list) "compile:\n  metrics: [" list "]\n"

/* Expected values: keras 3.15 (torch backend) fed the same two batches through
 * update_state, then result(); e.g. keras.metrics.Precision() over yb/pb. Where a value is
 * simple, the hand count is given too. */
START_TEST(test_metric_precision_recall)
{
    const float yb[] = {1, 0, 1, 1, 0, 0, 1, 0};
    const float pb[] = {0.9f, 0.6f, 0.4f, 0.7f, 0.2f, 0.8f, 0.55f, 0.1f};
    /* > 0.5: .9 .6 .7 .8 .55 -> TP 3 (.9 .7 .55), FP 2: 0.6; recall 3 / 4 */
    tu_assert_close(metric_batches(MT("precision"), "binary_crossentropy", pb, yb, 8, 1, 1, 5),
                    0.6, 1e-12);
    tu_assert_close(metric_batches(MT("recall"), "binary_crossentropy", pb, yb, 8, 1, 1, 5),
                    0.75, 1e-12);
    tu_assert_close(metric_batches(MT("{type: precision, thresholds: 0.7}"),
                                   "binary_crossentropy", pb, yb, 8, 1, 1, 5),
                    0.5, 1e-12);
    /* the epoch's ratio, not the mean of the batches' (2/3 and 1/2) */
    ck_assert(fabs(0.6 - (2.0 / 3 + 0.5) / 2) > 0.01);
    const float yc[] = {0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0};
    const float pc[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.1f, 0.5f, 0.1f, 0.4f, 0.1f, 0.3f, 0.6f};
    const char *cce = "categorical_crossentropy";
    tu_assert_close(metric_batches(MT("{type: precision, class_id: 0}"), cce, pc, yc, 4, 3, 3, 2),
                    1.0, 1e-12);
    tu_assert_close(metric_batches(MT("{type: recall, class_id: 1, thresholds: 0.4}"), cce, pc,
                                   yc, 4, 3, 3, 2),
                    0.5, 1e-12);
    tu_assert_close(metric_batches(MT("{type: precision, top_k: 1}"), cce, pc, yc, 4, 3, 3, 2),
                    0.5, 1e-12);
    tu_assert_close(metric_batches(MT("{type: recall, top_k: 2}"), cce, pc, yc, 4, 3, 3, 2),
                    1.0, 1e-12);
}
END_TEST

START_TEST(test_metric_auc)
{
    const float yb[] = {1, 0, 1, 1, 0, 0, 1, 0};
    const float pb[] = {0.9f, 0.6f, 0.4f, 0.7f, 0.2f, 0.8f, 0.55f, 0.1f};
    const char *bce = "binary_crossentropy";
    /* ROC by hand: 11 of the 16 positive-negative pairs are ordered right: 0.6875 */
    tu_assert_close(metric_batches(MT("auc"), bce, pb, yb, 8, 1, 1, 5), 0.6875, 1e-9);
    tu_assert_close(metric_batches(MT("{type: auc, curve: PR}"), bce, pb, yb, 8, 1, 1, 5),
                    0.6959011554718018, 1e-6);
    tu_assert_close(metric_batches(MT("{type: auc, summation_method: minoring}"), bce, pb, yb,
                                   8, 1, 1, 5),
                    0.6875, 1e-6);
    tu_assert_close(metric_batches(MT("{type: auc, curve: PR, summation_method: majoring}"),
                                   bce, pb, yb, 8, 1, 1, 5),
                    0.73333340883255, 1e-6);
    tu_assert_close(metric_batches(MT("{type: AUC, num_thresholds: 10}"), bce, pb, yb, 8, 1, 1,
                                   5),
                    0.6875, 1e-6);
    const float yl[] = {1, 0, 1}, xl[] = {2.0f, -1.0f, 0.5f};
    tu_assert_close(metric_batches(MT("{type: auc, from_logits: true}"), bce, xl, yl, 3, 1, 1,
                                   1),
                    1.0, 1e-9);
}
END_TEST

START_TEST(test_metric_fbeta)
{
    const float yb[] = {1, 0, 1, 1, 0, 0, 1, 0};
    const float pb[] = {0.9f, 0.6f, 0.4f, 0.7f, 0.2f, 0.8f, 0.55f, 0.1f};
    /* precision 0.6, recall 0.75: 2 * .45 / 1.35 = 2/3 (Keras 0.6666666269302368) */
    tu_assert_close(metric_batches(MT("{type: f1_score, threshold: 0.5}"),
                                   "binary_crossentropy", pb, yb, 8, 1, 1, 5),
                    0.6666666269302368, 1e-6);
    const float yc[] = {0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0};
    const float pc[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.1f, 0.5f, 0.1f, 0.4f, 0.1f, 0.3f, 0.6f};
    const char *cce = "categorical_crossentropy";
    tu_assert_close(metric_batches(MT("{type: f1_score, average: macro}"), cce, pc, yc, 4, 3, 3,
                                   2),
                    0.4444443881511688, 1e-6);
    tu_assert_close(metric_batches(MT("{type: f1_score, average: micro}"), cce, pc, yc, 4, 3, 3,
                                   2),
                    0.4999999403953552, 1e-6);
    tu_assert_close(metric_batches(MT("{type: F1Score, average: weighted}"), cce, pc, yc, 4, 3,
                                   3, 2),
                    0.4999999403953552, 1e-6);
    tu_assert_close(metric_batches(MT("{type: fbeta_score, average: macro, beta: 2, "
                                      "threshold: 0.35}"),
                                   cce, pc, yc, 4, 3, 3, 2),
                    0.7407407164573669, 1e-6);
}
END_TEST

START_TEST(test_metric_iou_r2_cosine)
{
    const float yc[] = {0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0};
    const float pc[] = {0.2f, 0.5f, 0.3f, 0.6f, 0.3f, 0.1f, 0.5f, 0.1f, 0.4f, 0.1f, 0.3f, 0.6f};
    tu_assert_close(metric_batches(MT("{type: mean_iou, num_classes: 3, sparse_y_true: false, "
                                      "sparse_y_pred: false}"),
                                   "categorical_crossentropy", pc, yc, 4, 3, 3, 2),
                    0.3333333432674408, 1e-6);
    /* class ids on both sides: IoU 1, 2/4, 0 -> 0.5 (Keras 0.4999999701976776); class 2
     * ignored: 1, 2/3, (none) -> 5/9 over three classes, as Keras counts (0.5555555) */
    const float yi[] = {0, 1, 2, 1, 1}, pi[] = {0, 1, 1, 1, 2};
    tu_assert_close(metric_batches(MT("{type: mean_iou, num_classes: 3}"), "mse", pi, yi, 5, 1,
                                   1, 2),
                    0.5, 1e-6);
    tu_assert_close(metric_batches(MT("{type: mean_iou, num_classes: 3, ignore_class: 2}"),
                                   "mse", pi, yi, 5, 1, 1, 3),
                    0.555555522441864, 1e-6);
    /* sparse labels against an output of class probabilities */
    const float ys[] = {1, 0, 2, 1};
    tu_assert_close(metric_batches(MT("{type: MeanIoU, num_classes: 3, sparse_y_pred: false}"),
                                   "sparse_categorical_crossentropy", pc, ys, 4, 3, 1, 2),
                    0.3333333432674408, 1e-6);
    const float yr[] = {1.0f, 2.0f, 2.0f, 0.5f, 3.0f, 1.5f, 4.0f, -1.0f};
    const float pr[] = {1.1f, 1.8f, 1.9f, 0.7f, 3.2f, 1.0f, 3.7f, -0.5f};
    tu_assert_close(metric_batches(MT("r2_score"), "mse", pr, yr, 4, 2, 2, 3), 0.9297618865966797,
                    1e-6);
    tu_assert_close(metric_batches(MT("{type: r2_score, class_aggregation: "
                                      "variance_weighted_average}"),
                                   "mse", pr, yr, 4, 2, 2, 3),
                    0.9287805557250977, 1e-6);
    tu_assert_close(metric_batches(MT("{type: r2_score, num_regressors: 1}"), "mse", pr, yr, 4,
                                   2, 2, 1),
                    0.918055534362793, 1e-6);
    tu_assert_close(metric_batches(MT("cosine_similarity"), "mse", pr, yr, 4, 2, 2, 3),
                    0.992889940738678, 1e-6);
}
END_TEST

START_TEST(test_metric_state_parse)
{
    ct_metric m;
    ct_error err = {0};
    ck_assert_int_eq(metric_from(MT("{type: precision, name: p, thresholds: 0.7}"),
                                 "binary_crossentropy", 1, &m, &err),
                     0);
    ck_assert_str_eq(m.name, "p");
    ck_assert_str_eq(m.kind->name, "precision");
    ct_metric_free(&m);
    ck_assert_int_eq(metric_from(MT("{type: accuracy, name: hits}"), "binary_crossentropy", 1,
                                 &m, &err),
                     0);
    ck_assert_str_eq(m.name, "hits");
    ck_assert_int_eq(metric_from(MT("AUC"), "binary_crossentropy", 1, &m, &err), 0);
    ck_assert_str_eq(m.name, "auc");
    ck_assert_int_eq(m.nstate, 400);
    ct_metric_free(&m);
    ck_assert_int_eq(metric_from(MT("{type: precision, thresholds: 1.5}"),
                                 "binary_crossentropy", 1, &m, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:43: metric 'precision': thresholds must be from 0 to 1, "
                              "got 1.5");
    ck_assert_int_eq(metric_from(MT("{type: recall, class_id: 3}"), "categorical_crossentropy",
                                 3, &m, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:38: metric 'recall': class_id must be an integer from 0 "
                              "to 2, got 3");
    ck_assert_int_eq(metric_from(MT("{type: auc, curve: ROCK}"), "binary_crossentropy", 1, &m,
                                 &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:32: metric 'auc': curve must be one of ROC, PR");
    ck_assert_int_eq(metric_from(MT("{type: auc, k: 3}"), "binary_crossentropy", 1, &m, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:25: unknown key 'k' in metric 'auc'; known keys: type, "
                              "name, num_thresholds, curve, summation_method, from_logits");
    ck_assert_int_eq(metric_from(MT("f1_score"), "categorical_crossentropy", 3, &m, &err), -1);
    ck_assert_msg(strstr(err.msg, "t.yaml:2:13: metric 'f1_score': average null (the default) "
                                  "gives one score per class") == err.msg,
                  "%s", err.msg);
    ck_assert_int_eq(metric_from(MT("mean_iou"), "categorical_crossentropy", 3, &m, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:13: metric 'mean_iou' needs num_classes");
    /* Keras pairs the flattened labels and predictions: 3 values against 1 argmax */
    ck_assert_int_eq(metric_from(MT("{type: mean_iou, num_classes: 3, sparse_y_pred: false}"),
                                 "categorical_crossentropy", 3, &m, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:13: metric 'mean_iou': 3 label(s) but 1 prediction(s) "
                              "per sample; for an output of class probabilities set "
                              "sparse_y_pred: false (and sparse_y_true: false for one-hot "
                              "labels)");
    ck_assert_int_eq(metric_from(MT("precision"), "sparse_categorical_crossentropy", 4, &m, &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:13: metric 'precision' needs one target per output "
                              "column (one-hot labels), but the loss takes class indices");
    ck_assert_int_eq(metric_from(MT("{type: precision, name: ''}"), "binary_crossentropy", 1, &m,
                                 &err),
                     -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:37: a metric's name must be a non-empty text");
}
END_TEST

static Suite *losses_suite(void)
{
    Suite *s = suite_create("losses");
    TCase *v = tcase_create("values");
    tcase_add_test(v, test_mse_mae_values);
    tcase_add_test(v, test_huber_values);
    tcase_add_test(v, test_log_cosh_values);
    tcase_add_test(v, test_bce_values);
    tcase_add_test(v, test_bce_logits_values);
    tcase_add_test(v, test_cce_values);
    tcase_add_test(v, test_cce_logits_values);
    tcase_add_test(v, test_sparse_cce_values);
    tcase_add_test(v, test_sparse_bad_labels_skipped);
    tcase_add_test(v, test_kld_values);
    tcase_add_test(v, test_hinge_values);
    tcase_add_test(v, test_nan_prediction_is_nan);
    tcase_add_test(v, test_regression_catalogue_values);
    tcase_add_test(v, test_cosine_hinge_catalogue_values);
    tcase_add_test(v, test_focal_catalogue_values);
    tcase_add_test(v, test_label_smoothing_values);
    suite_add_tcase(s, v);
    TCase *g = tcase_create("gradients");
    tcase_add_test(g, test_grad_regression);
    tcase_add_test(g, test_grad_bce);
    tcase_add_test(g, test_grad_catalogue);
    tcase_add_test(g, test_grad_focal_and_smoothing);
    tcase_add_test(g, test_grad_cce);
    tcase_add_test(g, test_grad_sparse_cce);
    tcase_add_test(g, test_sparse_time_axis);
    tcase_add_test(g, test_loss_sum_scale);
    tcase_add_test(g, test_grad_kld_hinge);
    tcase_add_test(g, test_fused_matches_chain_rule);
    tcase_add_test(g, test_fused_exact_form);
    tcase_add_test(g, test_can_fuse);
    suite_add_tcase(s, g);
    return s;
}

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *t = tcase_create("metrics");
    tcase_add_test(t, test_metric_resolve_accuracy);
    tcase_add_test(t, test_metric_names);
    tcase_add_test(t, test_metric_values);
    tcase_add_test(t, test_metric_top_k);
    tcase_add_test(t, test_metric_streaming);
    tcase_add_test(t, test_metric_precision_recall);
    tcase_add_test(t, test_metric_auc);
    tcase_add_test(t, test_metric_fbeta);
    tcase_add_test(t, test_metric_iou_r2_cosine);
    tcase_add_test(t, test_metric_state_parse);
    suite_add_tcase(s, t);
    return s;
}

static Suite *parse_suite(void)
{
    Suite *s = suite_create("loss_parse");
    TCase *t = tcase_create("parse");
    tcase_set_timeout(t, 30);
    tcase_add_test(t, test_loss_parse_ok);
    tcase_add_test(t, test_loss_parse_defaults_inserted);
    tcase_add_test(t, test_loss_parse_errors);
    tcase_add_test(t, test_loss_parse_unknown_keys);
    tcase_add_test(t, test_loss_parse_catalogue);
    tcase_add_test(t, test_metric_parse);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(losses_suite());
    srunner_add_suite(sr, metrics_suite());
    srunner_add_suite(sr, parse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
