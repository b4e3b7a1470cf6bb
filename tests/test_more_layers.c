/* test_more_layers.c - UnitNormalization, GaussianDropout, AlphaDropout and
 * ActivityRegularization built by hand from YAML snippets: outputs against hand-computed
 * values, finite-difference gradients, the dropouts' statistics and their identity at
 * inference, the activity penalty and its gradient, and config errors with positions. */
#include "layertest.h"
#include "rng.h"

static void lt_bind(ct_layer *l, const char *type) { l->kind = ct_layer_kind_find(type); }

static void lt_fill(ct_param *p, int i, int64_t n) { lt_fill_uniform(p, i, n); }

static const ct_pass infer_pass = {.training = false, .seed = 1, .step = 0};

static void run(lt *t, const ct_pass *pass, const float *x, float *y, int64_t rows)
{
    ct_tensor tx = tensor((float *)x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    lt_forward(&t->l, pass, &tx, &ty);
}

/* Inference is the identity, forward and backward. */
static void check_identity(lt *t, const ct_pass *pass, int64_t rows)
{
    int64_t n = rows * ct_shape_size(&t->l.in_shape);
    float *x = fvec(n), *y = fvec(n), *dx = fvec(n);
    tu_fill(x, n, 5, -2.0f, 2.0f);
    run(t, pass, x, y, rows);
    ck_assert_int_eq(memcmp(x, y, (size_t)n * sizeof(float)), 0);
    ct_tensor tx = tensor(x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    ct_tensor tdy = tensor(x, rows, t->l.out_shape), tdx = tensor(dx, rows, t->l.in_shape);
    lt_backward(&t->l, pass, &tx, &ty, &tdy, &tdx);
    ck_assert_int_eq(memcmp(x, dx, (size_t)n * sizeof(float)), 0);
    free(x), free(y), free(dx);
}

/* ---- unit normalization ------------------------------------------------------------ */

START_TEST(test_unit_norm_values)
{
    lt t;
    int64_t in[1] = {2};
    lt_ok(&t, "{type: unit_normalization}", "un", 1, in, 3);
    ck_assert(ct_shape_equal(&t.l.out_shape, &t.l.in_shape));
    ck_assert_int_eq(t.l.nparams, 0);
    /* a 3-4-5 triangle, a vector with a negative part, and zeros (which stay zeros: Keras
     * bounds the norm below by 1e-12) */
    float x[6] = {3, 4, -1e-3f, 0, 0, 0}, y[6];
    run(&t, &infer_pass, x, y, 3);
    const float want[6] = {0.6f, 0.8f, -1, 0, 0, 0};
    for (int i = 0; i < 6; i++)
        tu_assert_close(y[i], want[i], 1e-6);
    lt_free(&t);

    /* axis 1 of (2, 3): each column of a sample */
    int64_t in2[2] = {2, 3};
    lt_ok(&t, "{type: unit_normalization, axis: 1}", "un", 2, in2, 1);
    float x2[6] = {3, 1, 0, 4, 0, 2}, y2[6];
    run(&t, &infer_pass, x2, y2, 1);
    const float want2[6] = {0.6f, 1, 0, 0.8f, 0, 1};
    for (int i = 0; i < 6; i++)
        tu_assert_close(y2[i], want2[i], 1e-6);
    lt_free(&t);
}
END_TEST

START_TEST(test_unit_norm_gradients)
{
    static const char *const yamls[] = {
        "{type: unit_normalization}", "{type: unit_normalization, axis: 1}",
        "{type: unit_normalization, axis: -2}", "{type: unit_normalization, axis: 3}",
    };
    int64_t in[3] = {3, 2, 4};
    for (int k = 0; k < 4; k++) {
        lt t;
        lt_ok(&t, yamls[k], "un", 3, in, 2);
        lt_gradcheck_in(&t, 2, &infer_pass, NULL, -1.0f, 1.0f, 2e-3, 2e-2);
        lt_free(&t);
    }
}
END_TEST

START_TEST(test_unit_norm_errors)
{
    int64_t in[2] = {2, 3};
    lt_fails("layer:\n  type: unit_normalization\n  axis: 0\n", 2, in, "un",
             "layer.yaml:3:9: layer 'un' (UnitNormalization): axis 0 is the batch axis or "
             "outside the input (None, 2, 3)");
    lt_fails("layer:\n  type: unit_normalization\n  axis: -4\n", 2, in, "un",
             "layer.yaml:3:9: layer 'un' (UnitNormalization): axis -4 is the batch axis or "
             "outside the input (None, 2, 3)");
    lt_fails("layer:\n  type: unit_normalization\n  axis: [1, 2]\n", 2, in, "un",
             "layer.yaml:3:9: expected an integer for 'axis', got a list");
    lt_fails("layer:\n  type: unit_normalization\n  epsilon: 1\n", 2, in, "un",
             "layer.yaml:3:3: unknown key 'epsilon' in layer 'un' (UnitNormalization); known "
             "keys: axis, type, name, inputs, trainable");
}
END_TEST

/* ---- gaussian dropout -------------------------------------------------------------- */

START_TEST(test_gaussian_dropout_statistics)
{
    const int64_t rows = 40, cols = 1000, n = rows * cols;
    const double rate = 0.2, stddev = sqrt(rate / (1 - rate));
    lt t;
    int64_t in[1] = {cols};
    lt_ok(&t, "{type: gaussian_dropout, rate: 0.2}", "gd", 1, in, rows);
    t.l.index = 4;
    float *x = fvec(n), *y = fvec(n), *y2 = fvec(n);
    tu_fill(x, n, 11, 0.5f, 1.0f);
    ct_pass pass = {.training = true, .seed = 99, .step = 7};
    run(&t, &pass, x, y, rows);
    /* the factor is exactly 1 + stddev * the backend's normal draw for the documented key */
    uint64_t key = ct_rng_key(99, CT_RNG_NOISE, 4, 7);
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        float f = 1.0f + (float)stddev * ct_rng_normal(key, (uint64_t)i);
        tu_assert_close(y[i], x[i] * f, 1e-5);
        double r = (double)y[i] / x[i];
        s1 += r;
        s2 += r * r;
    }
    double mean = s1 / n, var = s2 / n - mean * mean;
    ck_assert_msg(fabs(mean - 1) < 0.01, "mean factor %g", mean);
    ck_assert_msg(fabs(var - stddev * stddev) < 0.01, "factor variance %g, want %g", var,
                  stddev * stddev);
    /* the same step draws the same factors; another step others */
    run(&t, &pass, x, y2, rows);
    ck_assert_int_eq(memcmp(y, y2, (size_t)n * sizeof(float)), 0);
    pass.step = 8;
    run(&t, &pass, x, y2, rows);
    ck_assert(memcmp(y, y2, (size_t)n * sizeof(float)) != 0);
    check_identity(&t, &infer_pass, rows);
    free(x), free(y), free(y2);
    lt_free(&t);
}
END_TEST

START_TEST(test_gaussian_dropout_gradients_and_errors)
{
    lt t;
    int64_t in[2] = {3, 4};
    lt_ok(&t, "{type: gaussian_dropout, rate: 0.5}", "gd", 2, in, 3);
    ct_pass train = {.training = true, .seed = 42, .step = 3};
    lt_gradcheck_in(&t, 3, &train, NULL, -1.0f, 1.0f, 2e-3, 2e-2); /* fixed step: fixed noise */
    lt_gradcheck_in(&t, 3, &infer_pass, NULL, -1.0f, 1.0f, 2e-3, 2e-2);
    lt_free(&t);

    lt_ok(&t, "{type: gaussian_dropout, rate: 0}", "gd", 2, in, 3);
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 3), 0);
    check_identity(&t, &train, 3);
    lt_free(&t);

    lt_fails("layer:\n  type: gaussian_dropout\n  rate: 1.0\n", 2, in, "gd",
             "layer.yaml:3:9: layer 'gd' (GaussianDropout): rate must be at least 0 and below "
             "1, got 1.0");
    lt_fails("layer:\n  type: gaussian_dropout\n  rate: 0.5\n  seed: 3\n", 2, in, "gd",
             "layer.yaml:4:3: layer 'gd' (GaussianDropout): 'seed' is not accepted; random "
             "draws follow the experiment's seed");
    lt_fails("layer:\n  type: gaussian_dropout\n", 2, in, "gd",
             "layer.yaml:2:3: layer 'gd' (GaussianDropout) needs the key 'rate'");
}
END_TEST

/* ---- alpha dropout ------------------------------------------------------------------ */

START_TEST(test_alpha_dropout_values)
{
    const int64_t rows = 50, cols = 1000, n = rows * cols;
    const double rate = 0.25, ap = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946;
    const double a = pow((1 - rate) * (1 + rate * ap * ap), -0.5), b = -a * ap * rate;
    lt t;
    int64_t in[1] = {cols};
    lt_ok(&t, "{type: alpha_dropout, rate: 0.25, noise_shape: null}", "ad", 1, in, rows);
    t.l.index = 2;
    float *x = fvec(n), *y = fvec(n);
    /* unit normal inputs, as SELU keeps them: the output stays mean 0, variance 1 */
    uint64_t xkey = ct_rng_key(5, CT_RNG_NOISE, 0, 0);
    for (int64_t i = 0; i < n; i++)
        x[i] = ct_rng_normal(xkey, (uint64_t)i);
    ct_pass pass = {.training = true, .seed = 1234, .step = 17};
    run(&t, &pass, x, y, rows);
    /* kept where the documented dropout stream says so: a x + b; else a alpha' + b */
    uint64_t key = ct_rng_key(1234, CT_RNG_DROPOUT, 2, 17);
    int64_t dropped = 0;
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        bool kept = ct_rng_uniform(key, (uint64_t)i) >= (float)rate;
        double want = kept ? a * x[i] + b : a * ap + b;
        ck_assert_msg(fabs(y[i] - want) <= 1e-5 * (1 + fabs(want)), "y[%lld] = %.7g, want %.7g",
                      (long long)i, y[i], want);
        dropped += !kept;
        s1 += y[i];
        s2 += (double)y[i] * y[i];
    }
    ck_assert_msg(fabs((double)dropped / n - rate) < 0.01, "dropped %lld of %lld",
                  (long long)dropped, (long long)n);
    double mean = s1 / n, var = s2 / n - mean * mean;
    ck_assert_msg(fabs(mean) < 0.02 && fabs(var - 1) < 0.03, "mean %g, variance %g", mean, var);
    check_identity(&t, &infer_pass, rows);
    free(x), free(y);
    lt_free(&t);
}
END_TEST

START_TEST(test_alpha_dropout_gradients_and_errors)
{
    lt t;
    int64_t in[2] = {3, 4};
    lt_ok(&t, "{type: alpha_dropout, rate: 0.4}", "ad", 2, in, 3);
    ct_pass train = {.training = true, .seed = 42, .step = 3};
    lt_gradcheck_in(&t, 3, &train, NULL, -1.0f, 1.0f, 2e-3, 2e-2);
    lt_gradcheck_in(&t, 3, &infer_pass, NULL, -1.0f, 1.0f, 2e-3, 2e-2);
    lt_free(&t);

    lt_ok(&t, "{type: alpha_dropout, rate: 0.0}", "ad", 2, in, 3);
    check_identity(&t, &train, 3);
    lt_free(&t);

    lt_fails("layer:\n  type: alpha_dropout\n  rate: 0.5\n  noise_shape: [null, 1, 4]\n", 2,
             in, "ad",
             "layer.yaml:4:16: layer 'ad' (AlphaDropout): only noise_shape: null (a draw per "
             "element) is supported");
    lt_fails("layer:\n  type: alpha_dropout\n  rate: -0.5\n", 2, in, "ad",
             "layer.yaml:3:9: layer 'ad' (AlphaDropout): rate must be at least 0 and below 1, "
             "got -0.5");
    lt_fails("layer:\n  type: alpha_dropout\n  rate: 0.1\n  seed: 1\n", 2, in, "ad",
             "layer.yaml:4:3: layer 'ad' (AlphaDropout): 'seed' is not accepted; random "
             "draws follow the experiment's seed");
}
END_TEST

/* ---- activity regularization -------------------------------------------------------- */

/* The batch's loss as the driver sees it: sum r * y (a loss whose gradient is r) plus the
 * layer's penalty divided by the rows (the driver's penalty sum holds rows times it). */
static double activity_loss(lt *t, const float *x, float *y, const float *r, int64_t rows)
{
    double penalty = 0;
    ct_pass pass = {.training = true, .seed = 1, .step = 0, .penalty = &penalty};
    run(t, &pass, x, y, rows);
    int64_t n = rows * ct_shape_size(&t->l.out_shape);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)r[i] * y[i];
    return s + penalty / (double)rows;
}

START_TEST(test_activity_regularization)
{
    const int64_t rows = 3, cols = 4, n = rows * cols;
    const double l1 = 0.3, l2 = 0.05;
    lt t;
    int64_t in[1] = {cols};
    lt_ok(&t, "{type: activity_regularization, l1: 0.3, l2: 0.05}", "ar", 1, in, rows);
    float *x = fvec(n), *y = fvec(n), *r = fvec(n), *dy = fvec(n), *dx = fvec(n);
    tu_fill(x, n, 3, 0.1f, 1.0f);
    for (int64_t i = 0; i < n; i += 2)
        x[i] = -x[i]; /* both signs, away from l1's kink at 0 */
    tu_fill(r, n, 4, -1.0f, 1.0f);
    /* the penalty, by hand: l1 sum|y| + l2 sum y^2 over the batch */
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++)
        s1 += fabs(x[i]), s2 += (double)x[i] * x[i];
    double penalty = 1.0; /* added to, not overwritten */
    ct_pass pass = {.training = false, .seed = 1, .step = 0, .penalty = &penalty};
    run(&t, &pass, x, y, rows);
    ck_assert_int_eq(memcmp(x, y, (size_t)n * sizeof(float)), 0);
    tu_assert_close(penalty, 1.0 + l1 * s1 + l2 * s2, 1e-6);
    /* dx against central differences of the batch's loss */
    ct_pass train = {.training = true, .seed = 1, .step = 0};
    memcpy(dy, r, (size_t)n * sizeof(float));
    tu_fill(dx, n, 8, 5.0f, 9.0f);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    lt_backward(&t.l, &train, &tx, &ty, &tdy, &tdx);
    for (int64_t i = 0; i < n; i++) {
        float old = x[i], h = 1e-3f;
        x[i] = old + h;
        double lp = activity_loss(&t, x, y, r, rows);
        x[i] = old - h;
        double lm = activity_loss(&t, x, y, r, rows);
        x[i] = old;
        double num = (lp - lm) / (2.0 * h);
        double want = r[i] + (l1 * ((old > 0) - (old < 0)) + 2 * l2 * old) / (double)rows;
        tu_assert_close(dx[i], want, 1e-5);
        ck_assert_msg(fabs(num - dx[i]) < 2e-3, "dx[%lld]: analytic %g, numeric %g",
                      (long long)i, dx[i], num);
    }
    free(x), free(y), free(r), free(dy), free(dx);
    lt_free(&t);
}
END_TEST

START_TEST(test_activity_regularization_defaults_and_errors)
{
    lt t;
    int64_t in[2] = {2, 2};
    lt_ok(&t, "{type: activity_regularization}", "ar", 2, in, 2);
    double penalty = 0;
    ct_pass pass = {.training = true, .seed = 1, .step = 0, .penalty = &penalty};
    check_identity(&t, &pass, 2); /* l1 = l2 = 0: nothing added, dx = dy */
    ck_assert(penalty == 0);
    lt_free(&t);

    lt_fails("layer:\n  type: activity_regularization\n  l1: -0.1\n", 2, in, "ar",
             "layer.yaml:3:7: layer 'ar' (ActivityRegularization): l1 must be a finite "
             "number of at least 0, got -0.1");
    lt_fails("layer:\n  type: activity_regularization\n  l2: .inf\n", 2, in, "ar",
             "layer.yaml:3:7: expected a number for 'l2', got '.inf'");
    lt_fails("layer:\n  type: activity_regularization\n  l3: 0.1\n", 2, in, "ar",
             "layer.yaml:3:3: unknown key 'l3' in layer 'ar' (ActivityRegularization) (did you "
             "mean 'l1'?); known keys: l1, l2, type, name, inputs, trainable");
}
END_TEST

static Suite *more_layers_suite(void)
{
    Suite *s = suite_create("more_layers");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_unit_norm_values);
    tcase_add_test(tc, test_unit_norm_gradients);
    tcase_add_test(tc, test_unit_norm_errors);
    tcase_add_test(tc, test_gaussian_dropout_statistics);
    tcase_add_test(tc, test_gaussian_dropout_gradients_and_errors);
    tcase_add_test(tc, test_alpha_dropout_values);
    tcase_add_test(tc, test_alpha_dropout_gradients_and_errors);
    tcase_add_test(tc, test_activity_regularization);
    tcase_add_test(tc, test_activity_regularization_defaults_and_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(more_layers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
