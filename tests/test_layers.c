/* test_layers.c - every layer kind built by hand from a YAML snippet: shapes, config
 * errors with their positions, finite-difference gradients, dropout's statistics, and the
 * masks that masking and the embeddings' mask_zero write. */
#include "layertest.h"
#include "rng.h"

/* ---- harness ---------------------------------------------------------------------- */

static void lt_bind(ct_layer *l, const char *type) { l->kind = ct_layer_kind_find(type); }

static void lt_fill(ct_param *p, int i, int64_t n) { lt_fill_uniform(p, i, n); }

/* ---- finite differences ------------------------------------------------------------- */

/* Checks dx and every trainable parameter's gradient against central differences, for
 * inputs uniform in [lo, hi). */
static void gradcheck_range(lt *t, int64_t rows, const ct_pass *pass, float lo, float hi)
{
    lt_gradcheck_in(t, rows, pass, NULL, lo, hi, 2e-3, 2e-2);
}

static const ct_pass infer_pass = {.training = false, .seed = 1, .step = 0};

static void gradcheck(lt *t, int64_t rows) { gradcheck_range(t, rows, &infer_pass, -1.0f, 1.0f); }

/* ---- registry and shared helpers --------------------------------------------------- */

START_TEST(test_registry_find)
{
    const ct_layer_kind *d = ct_layer_kind_find("dense");
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d->class_name, "Dense");
    ck_assert_ptr_eq(ct_layer_kind_find("Dense"), d);
    const ct_layer_kind *lr = ct_layer_kind_find("LeakyReLU");
    ck_assert_ptr_nonnull(lr);
    ck_assert_str_eq(lr->name, "leaky_relu");
    ck_assert_ptr_eq(ct_layer_kind_find("leaky_relu"), lr);
    ck_assert_ptr_eq(ct_layer_kind_find("Leaky_ReLU"), lr);
    ck_assert_ptr_eq(ct_layer_kind_find("leakyrelu"), lr);
    ck_assert_str_eq(ct_layer_kind_find("ReLU")->name, "relu");
    ck_assert_str_eq(ct_layer_kind_find("ELU")->name, "elu");
    ck_assert_str_eq(ct_layer_kind_find("Softmax")->name, "softmax");
    ck_assert_str_eq(ct_layer_kind_find("Flatten")->name, "flatten");
    ck_assert_str_eq(ct_layer_kind_find("Reshape")->name, "reshape");
    ck_assert_str_eq(ct_layer_kind_find("Dropout")->name, "dropout");
    ck_assert_str_eq(ct_layer_kind_find("Activation")->name, "activation");
    ck_assert_str_eq(ct_layer_kind_find("Conv2D")->name, "conv2d");
    ck_assert_str_eq(ct_layer_kind_find("MaxPool2D")->name, "max_pooling2d");
    ck_assert_str_eq(ct_layer_kind_find("GlobalAvgPool2D")->name, "global_average_pooling2d");
    ck_assert_ptr_null(ct_layer_kind_find("MaxPool3D"));
    ck_assert_ptr_null(ct_layer_kind_find("denser"));
    ck_assert_ptr_null(ct_layer_kind_find(""));
    ck_assert_ptr_null(ct_layer_kind_find(NULL));
}
END_TEST

/* layers/kinds.def, the one list of kinds: its names and the kinds its lines name. */
#define CT_LAYER(name) extern const ct_layer_kind ct_layer_##name;
#include "../layers/kinds.def"
#undef CT_LAYER
static const struct {
    const char *name;
    const ct_layer_kind *kind;
} listed[] = {
#define CT_LAYER(name) {#name, &ct_layer_##name},
#include "../layers/kinds.def"
#undef CT_LAYER
};
#define NLISTED ((int)(sizeof listed / sizeof listed[0]))

START_TEST(test_registry_names)
{
    /* Alphabetical, as error messages show it. */
    const char *head = "activation, activity_regularization, add, alpha_dropout, average, "
                       "average_pooling1d, average_pooling2d, average_pooling3d, "
                       "batch_normalization, "
                       "bidirectional, concatenate, conv1d, conv1d_transpose, conv2d, ";
    ck_assert_msg(strncmp(ct_layer_kind_names(), head, strlen(head)) == 0,
                  "%s", ct_layer_kind_names());
    const char *const *list = ct_layer_kind_list();
    int n = 0;
    for (; list[n]; n++) {
        /* The registry is kinds.def, in its order, and each line's symbol is that kind. */
        ck_assert_msg(n < NLISTED, "%s is registered but not in layers/kinds.def", list[n]);
        ck_assert_str_eq(list[n], listed[n].name);
        ck_assert_str_eq(listed[n].kind->name, listed[n].name);
        ck_assert_ptr_eq(ct_layer_kind_find(listed[n].name), listed[n].kind);
        const ct_layer_kind *k = ct_layer_kind_find(list[n]);
        ck_assert_ptr_nonnull(k);
        ck_assert_str_eq(k->name, list[n]);
        ck_assert_ptr_nonnull(k->configure);
        ck_assert_ptr_nonnull(k->build);
        ck_assert_msg(k->is_view || (k->forward && k->backward), "%s", list[n]);
        if (n > 0)
            ck_assert_msg(strcmp(list[n - 1], list[n]) < 0, "%s before %s", list[n - 1], list[n]);
    }
    ck_assert_int_eq(n, NLISTED);
}
END_TEST

START_TEST(test_add_param_and_err)
{
    ct_layer l;
    memset(&l, 0, sizeof l);
    l.kind = ct_layer_kind_find("dense");
    strcpy(l.name, "dense_7");
    ct_error err;
    ct_init init = {.kind = CT_INIT_ONES};
    ct_regularizer reg = {.l1 = 0, .l2 = 0.5};
    int64_t d[2] = {2, 3};
    ck_assert_int_eq(
        ct_layer_add_param(&l, "kernel", ct_shape_make(2, d), init, reg, true, &err), 0);
    ck_assert_int_eq(ct_layer_add_param(&l, "moving_mean", ct_shape_make(1, d), init, reg, false,
                                        &err), 1);
    ck_assert_str_eq(l.params[0].name, "kernel");
    ck_assert_int_eq(l.params[0].shape.ndim, 2);
    ck_assert_int_eq(l.params[0].shape.dim[1], 3);
    ck_assert_int_eq(l.params[0].init.kind, CT_INIT_ONES);
    ck_assert(l.params[0].reg.l2 == 0.5);
    ck_assert(l.params[0].trainable);
    ck_assert(!l.params[1].trainable);
    ck_assert_str_eq(l.params[1].name, "moving_mean");
    ck_assert_ptr_null(l.params[0].value);
    for (int i = 2; i < CT_MAX_PARAMS; i++)
        ck_assert_int_eq(
            ct_layer_add_param(&l, "p", ct_shape_make(1, d), init, reg, true, &err), i);
    ck_assert_int_eq(ct_layer_add_param(&l, "p", ct_shape_make(1, d), init, reg, true, &err), -1);
    ck_assert_str_eq(err.msg, "layer 'dense_7' (Dense): more than 8 parameters");
    ck_assert_int_eq(l.nparams, CT_MAX_PARAMS);

    ck_assert_int_eq(ct_layer_err(&err, &l, "bad %d", 3), -1);
    ck_assert_str_eq(err.msg, "layer 'dense_7' (Dense): bad 3");
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ct_node *root = ct_config_parse("\n\n   {type: dense}\n", 19, "m.yaml", &err);
    ck_assert_ptr_nonnull(root);
    l.cfg = root;
    ct_layer_err(&err, &l, "bad %s", "thing");
    ck_assert_str_eq(err.msg, "m.yaml:3:4: layer 'dense_7' (Dense): bad thing");
    ct_node_free(root);
}
END_TEST

/* ---- dense ------------------------------------------------------------------------- */

START_TEST(test_dense_shapes)
{
    lt t;
    int64_t in1[1] = {5};
    lt_ok(&t, "{type: dense, units: 3, activation: tanh}", "dense", 1, in1, 4);
    ck_assert_int_eq(t.l.out_shape.ndim, 1);
    ck_assert_int_eq(t.l.out_shape.dim[0], 3);
    ck_assert_int_eq(t.l.nparams, 2);
    ck_assert_str_eq(t.l.params[0].name, "kernel");
    ck_assert_int_eq(t.l.params[0].shape.ndim, 2);
    ck_assert_int_eq(t.l.params[0].shape.dim[0], 5);
    ck_assert_int_eq(t.l.params[0].shape.dim[1], 3);
    ck_assert_int_eq(t.l.params[0].init.kind, CT_INIT_GLOROT_UNIFORM);
    ck_assert_str_eq(t.l.params[1].name, "bias");
    ck_assert_int_eq(t.l.params[1].shape.ndim, 1);
    ck_assert_int_eq(t.l.params[1].shape.dim[0], 3);
    ck_assert_int_eq(t.l.params[1].init.kind, CT_INIT_ZEROS);
    ck_assert(t.l.params[0].trainable && t.l.params[1].trainable);
    ck_assert_int_eq(t.l.kind->output_activation(&t.l), CT_ACT_TANH);
    /* tanh's derivative follows from its output: no pre-activation is kept */
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 10), 0);
    /* defaults are written into the config, so the resolved config shows them */
    ck_assert_ptr_nonnull(ct_map_get(t.cfg, "use_bias"));
    ck_assert_ptr_nonnull(ct_map_get(t.cfg, "kernel_initializer"));
    lt_free(&t);

    int64_t in2[2] = {4, 6};
    lt_ok(&t, "{type: Dense, units: 3, use_bias: false, kernel_initializer: he_normal}",
          "dense_1", 2, in2, 4);
    ck_assert_int_eq(t.l.out_shape.ndim, 2);
    ck_assert_int_eq(t.l.out_shape.dim[0], 4);
    ck_assert_int_eq(t.l.out_shape.dim[1], 3);
    ck_assert_int_eq(t.l.nparams, 1);
    ck_assert_int_eq(t.l.params[0].shape.dim[0], 6);
    ck_assert_int_eq(t.l.params[0].shape.dim[1], 3);
    ck_assert_int_eq(t.l.params[0].init.kind, CT_INIT_HE_NORMAL);
    ck_assert_int_eq(t.l.kind->output_activation(&t.l), CT_ACT_LINEAR);
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 10), 0);
    ct_node *act = ct_map_get(t.cfg, "activation");
    ck_assert_ptr_nonnull(act);
    ck_assert_str_eq(act->scalar, "linear");
    lt_free(&t);

    lt_ok(&t, "{type: dense, units: 2, kernel_regularizer: {type: l2, l2: 0.25}}", "d", 1, in1, 4);
    ck_assert(t.l.params[0].reg.l2 == 0.25);
    ck_assert(t.l.params[1].reg.l1 == 0 && t.l.params[1].reg.l2 == 0);
    lt_free(&t);

    lt_ok(&t, "{type: dense, units: 2, activation: null}", "d", 1, in1, 4);
    ck_assert_int_eq(t.l.kind->output_activation(&t.l), CT_ACT_LINEAR);
    lt_free(&t);
}
END_TEST

START_TEST(test_dense_errors)
{
    int64_t in1[1] = {5};
    char want[512], buf[64];
    ct_shape scalar = ct_shape_make(0, NULL);
    snprintf(want, sizeof want,
             "layer.yaml:1:1: layer 'dense' (Dense): expects an input with at least one axis, "
             "got %s", ct_shape_format(&scalar, buf, sizeof buf));
    lt_fails("{type: dense, units: 3}", 0, NULL, "dense", want);
    lt_fails("layer:\n  type: dense\n  activation: rleu\n  units: 4\n", 1, in1, "dense_2",
             "layer.yaml:3:15: layer 'dense_2' (Dense): unknown activation 'rleu' (did you "
             "mean 'relu'?); known activations: linear, relu, relu6, leaky_relu, elu, selu, "
             "gelu, silu, swish, sigmoid, hard_sigmoid, tanh, softplus, softsign, softmax, "
             "log_softmax");
    lt_fails("layer:\n  type: dense\n  units: 4\n  activaton: relu\n", 1, in1, "dense",
             "layer.yaml:4:3: unknown key 'activaton' in layer 'dense' (Dense) (did you mean "
             "'activation'?); known keys: units, activation, use_bias, kernel_initializer, "
             "bias_initializer, kernel_regularizer, bias_regularizer, type, name, inputs, trainable");
    lt_fails("layer:\n  type: dense\n  activation: relu\n", 1, in1, "dense",
             "layer.yaml:2:3: layer 'dense' (Dense) needs the key 'units'");
    lt_fails("layer:\n  type: dense\n  units: 0\n", 1, in1, "dense",
             "layer.yaml:3:10: 'units' must be at least 1, got 0");
    lt_fails("layer:\n  type: dense\n  units: 3000000000\n", 1, in1, "dense",
             "layer.yaml:3:10: layer 'dense' (Dense): units must be at most 2147483647, got "
             "3000000000");
}
END_TEST

/* Naive reference: y = gelu(x W + b) in double (exact erf form, Keras's default). */
START_TEST(test_dense_forward_reference)
{
    lt t;
    int64_t in[1] = {7};
    const int64_t rows = 5, units = 4;
    lt_ok(&t, "{type: dense, units: 4, activation: gelu}", "dense", 1, in, rows);
    /* gelu's derivative needs x: the pre-activation is kept */
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, rows), rows * units);
    float x[5 * 7], y[5 * 4];
    tu_fill(x, rows * 7, 3, -2.0f, 2.0f);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    const float *w = t.l.params[0].value, *b = t.l.params[1].value;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < units; j++) {
            double z = b[j];
            for (int64_t i = 0; i < 7; i++)
                z += (double)x[r * 7 + i] * w[i * units + j];
            tu_assert_close(y[r * units + j], 0.5 * z * (1.0 + erf(z / sqrt(2.0))), 1e-5);
            /* the pre-activation is kept for backward */
            tu_assert_close(t.scratch[r * units + j], z, 1e-5);
        }
    lt_free(&t);
}
END_TEST

static const char *const dense_acts[] = {
    "linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "elu", "selu", "silu",
    "softplus", "log_softmax", "leaky_relu", "hard_sigmoid", "relu6", "softsign", NULL,
};

START_TEST(test_dense_gradients)
{
    int64_t in[1] = {4};
    for (int a = 0; dense_acts[a]; a++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "{type: dense, units: 5, activation: %s}", dense_acts[a]);
        lt t;
        lt_ok(&t, yaml, dense_acts[a], 1, in, 3);
        gradcheck(&t, 3);
        lt_free(&t);
    }
}
END_TEST

START_TEST(test_dense_gradients_nd_and_nobias)
{
    lt t;
    int64_t in3[2] = {3, 4};
    lt_ok(&t, "{type: dense, units: 2, activation: tanh}", "dense_nd", 2, in3, 2);
    ck_assert_int_eq(t.l.out_shape.dim[0], 3);
    ck_assert_int_eq(t.l.out_shape.dim[1], 2);
    gradcheck(&t, 2);
    lt_free(&t);

    int64_t in4[3] = {2, 2, 3};
    lt_ok(&t, "{type: dense, units: 3, activation: softmax}", "dense_4d", 3, in4, 2);
    ck_assert_int_eq(t.l.out_shape.ndim, 3);
    ck_assert_int_eq(t.l.out_shape.dim[2], 3);
    gradcheck(&t, 2);
    lt_free(&t);

    int64_t in1[1] = {6};
    lt_ok(&t, "{type: dense, units: 3, use_bias: false, activation: sigmoid}", "nobias", 1, in1, 4);
    ck_assert_int_eq(t.l.nparams, 1);
    gradcheck(&t, 4);
    lt_free(&t);
}
END_TEST

/* With act_fused, dy is already dL/dz: dW = x^T dy, db = sum dy, dx = dy W^T. */
START_TEST(test_dense_fused)
{
    lt t;
    int64_t in[1] = {3};
    const int64_t rows = 4, units = 2;
    lt_ok(&t, "{type: dense, units: 2, activation: softmax}", "dense", 1, in, rows);
    t.l.act_fused = true;
    float x[12], y[8], dy[8], dy0[8], dx[12];
    tu_fill(x, 12, 1, -1, 1);
    tu_fill(dy0, 8, 2, -1, 1);
    memcpy(dy, dy0, sizeof dy);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t r = 0; r < rows; r++)
        tu_assert_close(y[r * 2] + y[r * 2 + 1], 1.0, 1e-6);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    const float *w = t.l.params[0].value, *dw = t.l.params[0].grad, *db = t.l.params[1].grad;
    for (int64_t j = 0; j < units; j++) {
        double sb = 0;
        for (int64_t r = 0; r < rows; r++)
            sb += dy0[r * units + j];
        tu_assert_close(db[j], sb, 1e-5);
        for (int64_t i = 0; i < 3; i++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++)
                s += (double)x[r * 3 + i] * dy0[r * units + j];
            tu_assert_close(dw[i * units + j], s, 1e-5);
        }
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < 3; i++) {
            double s = 0;
            for (int64_t j = 0; j < units; j++)
                s += (double)dy0[r * units + j] * w[i * units + j];
            tu_assert_close(dx[r * 3 + i], s, 1e-5);
        }
    lt_free(&t);
}
END_TEST

/* backward with dx NULL (the first layer) still writes the parameter gradients. */
START_TEST(test_dense_no_dx)
{
    lt t;
    int64_t in[1] = {3};
    lt_ok(&t, "{type: dense, units: 2, activation: relu}", "dense", 1, in, 2);
    float x[6], y[4], dy[4];
    tu_fill(x, 6, 1, -1, 1);
    tu_fill(dy, 4, 2, -1, 1);
    float *dw = t.l.params[0].grad;
    for (int i = 0; i < 6; i++)
        dw[i] = 1e9f;  /* must be overwritten, not accumulated */
    ct_tensor tx = tensor(x, 2, t.l.in_shape), ty = tensor(y, 2, t.l.out_shape);
    ct_tensor tdy = tensor(dy, 2, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    float dz[4];
    for (int i = 0; i < 4; i++)
        dz[i] = y[i] > 0 ? dy[i] : 0.0f;
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, NULL);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            tu_assert_close(dw[i * 2 + j],
                            (double)x[i] * dz[j] + (double)x[3 + i] * dz[2 + j], 1e-5);
    lt_free(&t);
}
END_TEST

/* ---- activation layers ------------------------------------------------------------- */

static const char *const all_acts[] = {
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish",
    "sigmoid", "hard_sigmoid", "tanh", "softplus", "softsign", "softmax", "log_softmax", NULL,
};

START_TEST(test_activation_layer_gradients)
{
    int64_t in[2] = {2, 3};
    for (int a = 0; all_acts[a]; a++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "{type: activation, activation: %s}", all_acts[a]);
        lt t;
        lt_ok(&t, yaml, all_acts[a], 2, in, 2);
        ck_assert(ct_shape_equal(&t.l.out_shape, &t.l.in_shape));
        ck_assert_int_eq(t.l.nparams, 0);
        ct_act want;
        ck_assert_int_eq(ct_act_parse(all_acts[a], &want), 0);
        ck_assert_int_eq(t.l.kind->output_activation(&t.l), want.kind);
        /* relu6 needs inputs beyond 6 to show its cap */
        float hi = !strcmp(all_acts[a], "relu6") ? 8.5f : 4.0f;
        gradcheck_range(&t, 2, &infer_pass, -4.0f, hi);
        lt_free(&t);
    }
}
END_TEST

/* Forward values of a layer on given inputs, one row. */
static void check_values(const char *yaml, int64_t n, const float *x, const double *want)
{
    lt t;
    int64_t in[1] = {n};
    lt_ok(&t, yaml, "act", 1, in, 1);
    float y[16];
    ct_tensor tx = tensor((float *)x, 1, t.l.in_shape), ty = tensor(y, 1, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(y[i] - want[i]) <= 1e-6 * fmax(1, fabs(want[i])),
                      "%s: y[%lld] = %.8g, want %.8g", yaml, (long long)i, y[i], want[i]);
    lt_free(&t);
}

START_TEST(test_activation_layer_kinds)
{
    const float x[4] = {-2.0f, -0.5f, 3.0f, 7.0f};
    check_values("{type: relu}", 4, x, (double[]){0, 0, 3, 7});
    check_values("{type: ReLU, max_value: 6}", 4, x, (double[]){0, 0, 3, 6});
    check_values("{type: ReLU, max_value: 6.0, threshold: 0}", 4, x, (double[]){0, 0, 3, 6});
    check_values("{type: relu, negative_slope: 0.1}", 4, x, (double[]){-0.2, -0.05, 3, 7});
    check_values("{type: leaky_relu}", 4, x, (double[]){-0.6, -0.15, 3, 7});
    check_values("{type: LeakyReLU, negative_slope: 0.5}", 4, x, (double[]){-1, -0.25, 3, 7});
    check_values("{type: elu}", 4, x, (double[]){exp(-2.0) - 1, exp(-0.5) - 1, 3, 7});
    check_values("{type: ELU, alpha: 2}", 4, x,
                 (double[]){2 * (exp(-2.0) - 1), 2 * (exp(-0.5) - 1), 3, 7});
    double z = exp(-2.0) + exp(-0.5) + exp(3.0) + exp(7.0);
    check_values("{type: softmax}", 4, x,
                 (double[]){exp(-2.0) / z, exp(-0.5) / z, exp(3.0) / z, exp(7.0) / z});
    check_values("{type: Softmax, axis: 1}", 4, x,
                 (double[]){exp(-2.0) / z, exp(-0.5) / z, exp(3.0) / z, exp(7.0) / z});
    check_values("{type: activation, activation: Sigmoid}", 4, x,
                 (double[]){1 / (1 + exp(2.0)), 1 / (1 + exp(0.5)), 1 / (1 + exp(-3.0)),
                            1 / (1 + exp(-7.0))});
}
END_TEST

START_TEST(test_activation_layer_class_gradients)
{
    static const char *const yamls[] = {
        "{type: relu}", "{type: relu, negative_slope: 0.2}", "{type: relu, max_value: 6}",
        "{type: leaky_relu}", "{type: elu}", "{type: elu, alpha: 0.5}", "{type: softmax}",
        NULL,
    };
    int64_t in[2] = {3, 4};
    for (int i = 0; yamls[i]; i++) {
        lt t;
        lt_ok(&t, yamls[i], "act", 2, in, 2);
        gradcheck_range(&t, 2, &infer_pass, -3.0f, 8.0f);
        lt_free(&t);
    }
}
END_TEST

/* Softmax on (3, 4) normalises each vector of 4, not the whole sample. */
START_TEST(test_softmax_last_axis)
{
    lt t;
    int64_t in[2] = {3, 4};
    lt_ok(&t, "{type: softmax, axis: -1}", "softmax", 2, in, 2);
    float x[24], y[24];
    tu_fill(x, 24, 5, -3, 3);
    ct_tensor tx = tensor(x, 2, t.l.in_shape), ty = tensor(y, 2, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int v = 0; v < 6; v++) {
        double s = 0;
        for (int j = 0; j < 4; j++)
            s += y[v * 4 + j];
        tu_assert_close(s, 1.0, 1e-6);
    }
    lt_free(&t);
}
END_TEST

START_TEST(test_activation_fused)
{
    lt t;
    int64_t in[1] = {3};
    lt_ok(&t, "{type: activation, activation: softmax}", "activation", 1, in, 2);
    ck_assert_int_eq(t.l.kind->output_activation(&t.l), CT_ACT_SOFTMAX);
    t.l.act_fused = true;
    float x[6], y[6], dy[6], dx[6];
    tu_fill(x, 6, 1, -1, 1);
    tu_fill(dy, 6, 2, -1, 1);
    ct_tensor tx = tensor(x, 2, t.l.in_shape), ty = tensor(y, 2, t.l.out_shape);
    ct_tensor tdy = tensor(dy, 2, t.l.out_shape), tdx = tensor(dx, 2, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    for (int i = 0; i < 6; i++)
        ck_assert(dx[i] == dy[i]);
    /* without the flag the softmax Jacobian applies: each row's dx sums to zero */
    t.l.act_fused = false;
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    ck_assert(fabs(dx[0] - dy[0]) > 1e-3);
    ck_assert(fabs(dx[0] + dx[1] + dx[2]) < 1e-6);
    lt_free(&t);
}
END_TEST

START_TEST(test_activation_layer_errors)
{
    int64_t in[1] = {4};
    lt_fails("layer:\n  type: ReLU\n  max_value: 5\n", 1, in, "re_lu",
             "layer.yaml:3:14: layer 're_lu' (ReLU): max_value 5 is not supported; use null "
             "or 6 (relu6)");
    lt_fails("layer:\n  type: relu\n  threshold: 0.5\n", 1, in, "re_lu",
             "layer.yaml:3:14: layer 're_lu' (ReLU): threshold 0.5 is not supported; only 0 is");
    lt_fails("layer:\n  type: relu\n  max_value: 6\n  negative_slope: 0.1\n", 1, in, "re_lu",
             "layer.yaml:2:3: layer 're_lu' (ReLU): max_value and a non-zero negative_slope "
             "cannot be combined");
    lt_fails("layer:\n  type: softmax\n  axis: 0\n", 1, in, "softmax",
             "layer.yaml:2:3: layer 'softmax' (Softmax): only the last axis (-1) is "
             "supported, got axis 0 for input (None, 4)");
    lt_fails("layer:\n  type: activation\n  activation: tahn\n", 1, in, "activation",
             "layer.yaml:3:15: layer 'activation' (Activation): unknown activation 'tahn' "
             "(did you mean 'tanh'?); known activations: linear, relu, relu6, leaky_relu, "
             "elu, selu, gelu, silu, swish, sigmoid, hard_sigmoid, tanh, softplus, softsign, "
             "softmax, log_softmax");
    lt_fails("layer:\n  type: leaky_relu\n  negative_slope: -1\n", 1, in, "leaky_re_lu",
             "layer.yaml:3:19: 'negative_slope' must be at least 0, got -1");
    lt_fails("layer:\n  type: activation\n", 1, in, "activation",
             "layer.yaml:2:3: layer 'activation' (Activation) needs the key 'activation'");
}
END_TEST

/* ---- dropout ----------------------------------------------------------------------- */

START_TEST(test_dropout_gradients)
{
    lt t;
    int64_t in[2] = {3, 5};
    lt_ok(&t, "{type: dropout, rate: 0.4}", "dropout", 2, in, 3);
    ck_assert(ct_shape_equal(&t.l.out_shape, &t.l.in_shape));
    ck_assert_int_eq(t.l.nparams, 0);
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 3), 45);
    ct_pass train = {.training = true, .seed = 42, .step = 3};
    gradcheck_range(&t, 3, &train, -1.0f, 1.0f);  /* same pass and step: the mask is fixed */
    gradcheck_range(&t, 3, &infer_pass, -1.0f, 1.0f);
    lt_free(&t);
}
END_TEST

static void dropout_run(lt *t, const ct_pass *pass, const float *x, float *y, int64_t rows)
{
    ct_tensor tx = tensor((float *)x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    lt_forward(&t->l, pass, &tx, &ty);
}

START_TEST(test_dropout_statistics)
{
    const int64_t rows = 50, cols = 1000, n = rows * cols;
    const float rate = 0.3f;
    lt t;
    int64_t in[1] = {cols};
    lt_ok(&t, "{type: dropout, rate: 0.3}", "dropout", 1, in, rows);
    t.l.index = 2;
    float *x = fvec(n), *y = fvec(n), *y2 = fvec(n), *mask = fvec(n);
    tu_fill(x, n, 11, 0.5f, 1.0f);
    ct_pass pass = {.training = true, .seed = 1234, .step = 17};
    dropout_run(&t, &pass, x, y, rows);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i] == 0.0f)
            zeros++;
        else
            tu_assert_close(y[i], x[i] / (1.0 - rate), 1e-6);
    }
    ck_assert_msg(fabs((double)zeros / n - rate) < 0.01, "dropped %lld of %lld", (long long)zeros,
                  (long long)n);
    /* the mask is exactly the backend's for the documented key */
    uint64_t key = ct_rng_key(1234, CT_RNG_DROPOUT, 2, 17);
    t.l.be->dropout_mask(mask, n, rate, key, 0);
    for (int64_t i = 0; i < n; i++)
        ck_assert(y[i] == x[i] * mask[i]);
    /* the same step draws the same mask again */
    dropout_run(&t, &pass, x, y2, rows);
    ck_assert_int_eq(memcmp(y, y2, (size_t)n * sizeof(float)), 0);
    /* another step, or another layer, draws a different one */
    pass.step = 18;
    dropout_run(&t, &pass, x, y2, rows);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++)
        differ += (y[i] == 0.0f) != (y2[i] == 0.0f);
    ck_assert_msg(differ > n / 3, "step change altered only %lld of %lld", (long long)differ,
                  (long long)n);
    pass.step = 17;
    t.l.index = 3;
    dropout_run(&t, &pass, x, y2, rows);
    differ = 0;
    for (int64_t i = 0; i < n; i++)
        differ += (y[i] == 0.0f) != (y2[i] == 0.0f);
    ck_assert_msg(differ > n / 3, "index change altered only %lld of %lld", (long long)differ,
                  (long long)n);
    /* inference is the identity, forward and backward */
    dropout_run(&t, &infer_pass, x, y2, rows);
    ck_assert_int_eq(memcmp(x, y2, (size_t)n * sizeof(float)), 0);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y2, rows, t.l.out_shape);
    ct_tensor tdy = tensor(x, rows, t.l.out_shape), tdx = tensor(y, rows, t.l.in_shape);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    ck_assert_int_eq(memcmp(x, y, (size_t)n * sizeof(float)), 0);
    free(x), free(y), free(y2), free(mask);
    lt_free(&t);
}
END_TEST

START_TEST(test_dropout_rate_zero_and_errors)
{
    lt t;
    int64_t in[1] = {8};
    lt_ok(&t, "{type: dropout, rate: 0}", "dropout", 1, in, 2);
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 2), 0);
    float x[16], y[16];
    tu_fill(x, 16, 4, -1, 1);
    ct_pass train = {.training = true, .seed = 1, .step = 1};
    dropout_run(&t, &train, x, y, 2);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
    lt_free(&t);

    lt_fails("layer:\n  type: dropout\n  rate: 1.0\n", 1, in, "dropout",
             "layer.yaml:3:9: layer 'dropout' (Dropout): rate must be at least 0 and below 1, "
             "got 1.0");
    lt_fails("layer:\n  type: dropout\n  rate: 0.5\n  seed: 3\n", 1, in, "dropout",
             "layer.yaml:4:3: unknown key 'seed' in layer 'dropout' (Dropout); known keys: "
             "rate, type, name, inputs, trainable");
    lt_fails("layer:\n  type: dropout\n  rate: -0.1\n", 1, in, "dropout",
             "layer.yaml:3:9: layer 'dropout' (Dropout): rate must be at least 0 and below 1, "
             "got -0.1");
    lt_fails("layer:\n  type: dropout\n", 1, in, "dropout",
             "layer.yaml:2:3: layer 'dropout' (Dropout) needs the key 'rate'");
}
END_TEST

/* ---- flatten and reshape ------------------------------------------------------------ */

/* A view: the planner aliases the buffers; handed distinct ones it copies unchanged. */
static void check_view(lt *t, int64_t rows)
{
    ck_assert(t->l.kind->is_view);
    int64_t n = rows * ct_shape_size(&t->l.in_shape);
    ck_assert_int_eq(ct_shape_size(&t->l.out_shape), ct_shape_size(&t->l.in_shape));
    float *x = fvec(n), *y = fvec(n), *dx = fvec(n);
    tu_fill(x, n, 8, -1, 1);
    ct_tensor tx = tensor(x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    lt_forward(&t->l, &infer_pass, &tx, &ty);
    ck_assert_int_eq(memcmp(x, y, (size_t)n * sizeof(float)), 0);
    ct_tensor tdx = tensor(dx, rows, t->l.in_shape);
    lt_backward(&t->l, &infer_pass, &tx, &ty, &ty, &tdx);
    ck_assert_int_eq(memcmp(x, dx, (size_t)n * sizeof(float)), 0);
    /* aliased: nothing moves */
    ct_tensor alias = tensor(x, rows, t->l.out_shape);
    lt_forward(&t->l, &infer_pass, &tx, &alias);
    ck_assert_int_eq(memcmp(x, y, (size_t)n * sizeof(float)), 0);
    free(x), free(y), free(dx);
}

START_TEST(test_flatten)
{
    lt t;
    int64_t in[3] = {2, 3, 4};
    lt_ok(&t, "{type: flatten}", "flatten", 3, in, 3);
    ck_assert_int_eq(t.l.out_shape.ndim, 1);
    ck_assert_int_eq(t.l.out_shape.dim[0], 24);
    ck_assert_int_eq(t.l.nparams, 0);
    check_view(&t, 3);
    lt_free(&t);

    lt_ok(&t, "{type: Flatten, data_format: channels_last}", "flatten", 3, in, 3);
    ck_assert_int_eq(t.l.out_shape.dim[0], 24);
    lt_free(&t);

    lt_fails("layer:\n  type: flatten\n  data_format: channels_first\n", 3, in, "flatten",
             "layer.yaml:3:16: layer 'flatten' (Flatten): data_format 'channels_first' is not "
             "supported; only channels_last is");
}
END_TEST

START_TEST(test_reshape)
{
    lt t;
    int64_t in[3] = {28, 28, 1};
    lt_ok(&t, "{type: reshape, target_shape: [-1, 7]}", "reshape", 3, in, 2);
    ck_assert_int_eq(t.l.out_shape.ndim, 2);
    ck_assert_int_eq(t.l.out_shape.dim[0], 112);
    ck_assert_int_eq(t.l.out_shape.dim[1], 7);
    check_view(&t, 2);
    lt_free(&t);

    lt_ok(&t, "{type: Reshape, target_shape: [7, 4, 28]}", "reshape", 3, in, 2);
    ck_assert_int_eq(t.l.out_shape.ndim, 3);
    ck_assert_int_eq(t.l.out_shape.dim[2], 28);
    lt_free(&t);

    lt_fails("layer:\n  type: reshape\n  target_shape: [100, 7]\n", 3, in, "reshape",
             "layer.yaml:2:3: layer 'reshape' (Reshape): cannot reshape (None, 28, 28, 1) "
             "(784 values) to (None, 100, 7) (700 values)");
    lt_fails("layer:\n  type: reshape\n  target_shape: [-1, 5]\n", 3, in, "reshape",
             "layer.yaml:2:3: layer 'reshape' (Reshape): cannot reshape (None, 28, 28, 1) "
             "(784 values) to (None, -1, 5): 784 is not a multiple of 5");
    lt_fails("layer:\n  type: reshape\n  target_shape: [-1, 4, -1]\n", 3, in, "reshape",
             "layer.yaml:3:25: layer 'reshape' (Reshape): only one entry of target_shape may "
             "be -1");
    lt_fails("layer:\n  type: reshape\n  target_shape: [0, 4]\n", 3, in, "reshape",
             "layer.yaml:3:18: layer 'reshape' (Reshape): target_shape entries must be "
             "positive (or one -1), got 0");
    lt_fails("layer:\n  type: reshape\n  target_shape: 7\n", 3, in, "reshape",
             "layer.yaml:3:17: layer 'reshape' (Reshape): target_shape must be a list of 1 to "
             "8 integers, such as [7, 7, 16]");
    lt_fails("layer:\n  type: reshape\n", 3, in, "reshape",
             "layer.yaml:2:3: layer 'reshape' (Reshape) needs the key 'target_shape'");
}
END_TEST

/* ---- embeddings ----------------------------------------------------------------------- */

/* Parameter gradients against central differences for a batch of given token ids, and no
 * gradient to the ids themselves. */
static void gradcheck_tokens(lt *t, int64_t rows, const float *ids)
{
    ct_layer *l = &t->l;
    int64_t nin = rows * ct_shape_size(&l->in_shape), nout = rows * ct_shape_size(&l->out_shape);
    float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin), *r = fvec(nout);
    memcpy(x, ids, (size_t)nin * sizeof *x);
    tu_fill(r, nout, 9, -1.0f, 1.0f);
    tu_fill(dx, nin, 3, 1.0f, 2.0f); /* must come back zeroed */
    lt_fd g = {.t = t, .pass = &infer_pass, .x = tensor(x, rows, l->in_shape),
               .y = tensor(y, rows, l->out_shape), .r = r};
    ct_tensor tdy = tensor(dy, rows, l->out_shape), tdx = tensor(dx, rows, l->in_shape);
    lt_forward(l, &infer_pass, &g.x, &g.y);
    memcpy(dy, r, (size_t)nout * sizeof(float));
    lt_backward(l, &infer_pass, &g.x, &g.y, &tdy, &tdx);
    for (int64_t i = 0; i < nin; i++)
        ck_assert_msg(dx[i] == 0.0f, "%s: dx[%lld] = %g", l->name, (long long)i, dx[i]);
    for (int p = 0; p < l->nparams; p++) {
        ct_param *pa = &l->params[p];
        int64_t n = ct_shape_size(&pa->shape);
        float *ana = fvec(n);
        memcpy(ana, pa->grad, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            lt_fd_compare(&g, pa->name, i, ana[i], &pa->value[i], 2e-3, 2e-2);
        free(ana);
    }
    free(x), free(y), free(dy), free(dx), free(r);
}

START_TEST(test_embedding_shapes)
{
    lt t;
    int64_t in[1] = {4};
    lt_ok(&t, "{type: embedding, input_dim: 10, output_dim: 3, input_length: 4}", "embedding",
          1, in, 2);
    ck_assert_int_eq(t.l.out_shape.ndim, 2);
    ck_assert_int_eq(t.l.out_shape.dim[0], 4);
    ck_assert_int_eq(t.l.out_shape.dim[1], 3);
    ck_assert_int_eq(t.l.nparams, 1);
    ck_assert_str_eq(t.l.params[0].name, "embeddings");
    ck_assert_int_eq(t.l.params[0].shape.dim[0], 10);
    ck_assert_int_eq(t.l.params[0].shape.dim[1], 3);
    /* Keras's "uniform": RandomUniform(-0.05, 0.05) */
    ck_assert_int_eq(t.l.params[0].init.kind, CT_INIT_RANDOM_UNIFORM);
    ck_assert(t.l.params[0].init.a == -0.05 && t.l.params[0].init.b == 0.05);
    ck_assert_int_eq(t.l.kind->token_ids(&t.l), 10);
    lt_free(&t);
    int64_t in2[2] = {3, 5};
    lt_ok(&t, "{type: position_embedding, sequence_length: 8}", "position_embedding", 2, in2, 2);
    ck_assert_int_eq(t.l.out_shape.ndim, 2);
    ck_assert_int_eq(t.l.out_shape.dim[1], 5);
    ck_assert_str_eq(t.l.params[0].name, "embeddings");
    ck_assert_int_eq(t.l.params[0].shape.dim[0], 8);
    ck_assert_int_eq(t.l.params[0].shape.dim[1], 5);
    ck_assert_int_eq(t.l.params[0].init.kind, CT_INIT_GLOROT_UNIFORM);
    ck_assert_ptr_null(t.l.kind->token_ids);
    lt_free(&t);
    lt_ok(&t, "{type: TokenAndPositionEmbedding, vocabulary_size: 7, sequence_length: 6, "
              "embedding_dim: 2}", "token_and_position_embedding", 1, in, 2);
    ck_assert_int_eq(t.l.out_shape.dim[0], 4);
    ck_assert_int_eq(t.l.out_shape.dim[1], 2);
    ck_assert_int_eq(t.l.nparams, 2);
    ck_assert_str_eq(t.l.params[0].name, "token_embedding/embeddings");
    ck_assert_str_eq(t.l.params[1].name, "position_embedding/embeddings");
    ck_assert_int_eq(t.l.params[0].shape.dim[0], 7);
    ck_assert_int_eq(t.l.params[1].shape.dim[0], 6);
    ck_assert_int_eq(t.l.params[1].init.kind, CT_INIT_RANDOM_UNIFORM);
    ck_assert_int_eq(t.l.kind->token_ids(&t.l), 7);
    lt_free(&t);
}
END_TEST

START_TEST(test_embedding_errors)
{
    int64_t in[1] = {4}, in2[2] = {9, 3};
    lt_fails("layer:\n  type: embedding\n  input_dim: 5\n  output_dim: 2\n  mask_zero: true\n",
             2, in2, "embedding",
             "layer.yaml:5:14: layer 'embedding' (Embedding): mask_zero needs an input of one "
             "axis (sequence) of token ids, got (None, 9, 3)");
    lt_fails("layer:\n  type: embedding\n  output_dim: 2\n", 1, in, "embedding",
             "layer.yaml:2:3: layer 'embedding' (Embedding) needs the key 'input_dim'");
    lt_fails("layer:\n  type: embedding\n  input_dim: 20000000\n  output_dim: 2\n", 1, in,
             "embedding",
             "layer.yaml:3:14: 'input_dim' must be between 1 and 16777216, got 20000000");
    lt_fails("{type: position_embedding, sequence_length: 8}", 2, in2, "position_embedding",
             "layer.yaml:1:1: layer 'position_embedding' (PositionEmbedding): input (None, 9, 3) "
             "has 9 positions, more than sequence_length 8");
    lt_fails("{type: position_embedding, sequence_length: 8}", 1, in, "position_embedding",
             "layer.yaml:1:1: layer 'position_embedding' (PositionEmbedding): expects an input "
             "(sequence, features), got (None, 4)");
    lt_fails("{type: token_and_position_embedding, vocabulary_size: 5, sequence_length: 3, "
             "embedding_dim: 2}", 1, in, "tap",
             "layer.yaml:1:1: layer 'tap' (TokenAndPositionEmbedding): input (None, 4) has 4 "
             "positions, more than sequence_length 3");
    lt_fails("{type: token_and_position_embedding, vocabulary_size: 5, sequence_length: 3, "
             "embedding_dim: 2, mask_zero: maybe}", 1, in, "tap",
             "layer.yaml:1:107: expected true or false for 'mask_zero', got 'maybe'");
}
END_TEST

/* Rows of the table by hand, the edges of the table included; ids that are no row of it
 * (negative, too large, fractional, NaN) read zeros and add nothing to the gradient. */
START_TEST(test_embedding_forward_backward)
{
    lt t;
    int64_t in[1] = {4};
    lt_ok(&t, "{type: embedding, input_dim: 5, output_dim: 3}", "embedding", 1, in, 2);
    const float *w = t.l.params[0].value;
    float ids[8] = {0, 4, 2, 4, -1, 5, 2.5f, NAN}, y[24], dy[24], dx[8];
    for (int i = 0; i < 24; i++)
        dy[i] = (float)(i + 1);
    ct_tensor tx = tensor(ids, 2, t.l.in_shape), ty = tensor(y, 2, t.l.out_shape);
    ct_tensor tdy = tensor(dy, 2, t.l.out_shape), tdx = tensor(dx, 2, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    const int row[8] = {0, 4, 2, 4, -1, -1, -1, -1};
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_float_eq(y[i * 3 + c], row[i] < 0 ? 0.0f : w[row[i] * 3 + c]);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    const float *g = t.l.params[0].grad;
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(g[0 * 3 + c], dy[0 * 3 + c]);
        ck_assert_float_eq(g[1 * 3 + c], 0.0f);
        ck_assert_float_eq(g[2 * 3 + c], dy[2 * 3 + c]);
        ck_assert_float_eq(g[3 * 3 + c], 0.0f);
        ck_assert_float_eq(g[4 * 3 + c], dy[1 * 3 + c] + dy[3 * 3 + c]);
    }
    lt_free(&t);
}
END_TEST

/* y[t] = token[id_t] + position[t], by hand. */
START_TEST(test_token_and_position_forward)
{
    lt t;
    int64_t in[1] = {3};
    lt_ok(&t, "{type: token_and_position_embedding, vocabulary_size: 4, sequence_length: 5, "
              "embedding_dim: 2}", "tap", 1, in, 2);
    const float *tok = t.l.params[0].value, *pos = t.l.params[1].value;
    float ids[6] = {3, 0, 3, 1, 2, 0}, y[12];
    ct_tensor tx = tensor(ids, 2, t.l.in_shape), ty = tensor(y, 2, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int r = 0; r < 2; r++)
        for (int s = 0; s < 3; s++)
            for (int c = 0; c < 2; c++)
                ck_assert_float_eq(y[(r * 3 + s) * 2 + c],
                                   tok[(int)ids[r * 3 + s] * 2 + c] + pos[s * 2 + c]);
    lt_free(&t);
}
END_TEST

START_TEST(test_embedding_gradients)
{
    lt t;
    int64_t in[1] = {5};
    const float ids[15] = {0, 3, 3, 6, 1, 6, 6, 0, 2, 3, 5, 4, 3, 3, 0}; /* repeats, edges */
    lt_ok(&t, "{type: embedding, input_dim: 7, output_dim: 3}", "embedding", 1, in, 3);
    gradcheck_tokens(&t, 3, ids);
    lt_free(&t);
    /* the position table longer than the sequence: its unused rows get zero gradient */
    lt_ok(&t, "{type: token_and_position_embedding, vocabulary_size: 7, sequence_length: 8, "
              "embedding_dim: 2}", "tap", 1, in, 3);
    gradcheck_tokens(&t, 3, ids);
    lt_free(&t);
    int64_t in2[2] = {3, 4}, in3[3] = {2, 3, 2};
    lt_ok(&t, "{type: position_embedding, sequence_length: 5}", "position_embedding", 2, in2, 3);
    gradcheck(&t, 3);
    lt_free(&t);
    lt_ok(&t, "{type: position_embedding, sequence_length: 3}", "position_nd", 3, in3, 2);
    gradcheck(&t, 2);
    lt_free(&t);
}
END_TEST

/* ---- masks: masking and mask_zero --------------------------------------------------- */

/* Runs a mask-writing layer on x (rows of it) with an output mask buffer, as the model's
 * planner gives one to a layer whose mask_out is CT_MASK_WRITES; the buffer starts as
 * garbage, which forward must overwrite. */
static void run_writes_mask(lt *t, const float *x, int64_t rows, float *y, float *mask)
{
    bool in_masked = false;
    ck_assert_int_eq(t->l.kind->masks, CT_MASK_BY_KIND);
    ck_assert_int_eq(t->l.kind->mask_out(&t->l, &in_masked), CT_MASK_WRITES);
    for (int64_t i = 0; i < rows * t->l.out_shape.dim[0]; i++)
        mask[i] = 7.0f;
    ct_tensor tx = tensor((float *)x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    ty.mask = mask;
    lt_forward(&t->l, &infer_pass, &tx, &ty);
}

/* Two samples of 4 steps of 3 features; v marks a step made of v only. Steps where some
 * features (not all) are v, or where all are equal to another value, hold data. */
static void masking_input(float *x, float v, float *want_mask)
{
    tu_fill(x, 24, 21, -1.0f, 1.0f);
    const int pad[8] = {0, 1, 0, 1, 1, 0, 0, 1};
    for (int s = 0; s < 8; s++) {
        want_mask[s] = pad[s] ? 0.0f : 1.0f;
        for (int f = 0; f < 3; f++)
            if (pad[s])
                x[s * 3 + f] = v;
    }
    x[2 * 3 + 0] = v;                   /* sample 0 step 2: two features of three are v */
    x[2 * 3 + 1] = v;
    x[5 * 3 + 0] = x[5 * 3 + 1] = x[5 * 3 + 2] = v + 0.5f; /* all equal, not to v */
}

/* y = x with the padded steps zeroed, the mask 0 there and 1 elsewhere; backward dx = dy
 * at the steps of data and 0 at padding (as Keras, which treats the mask as a constant:
 * the output there is zero whatever the input, so no finite difference is meant). */
static void check_masking(const char *yaml, float v)
{
    lt t;
    int64_t in[2] = {4, 3}, rows = 2;
    lt_ok(&t, yaml, "masking", 2, in, rows);
    ck_assert_int_eq(t.l.out_shape.ndim, 2);
    ck_assert_int_eq(t.l.out_shape.dim[0], 4);
    ck_assert_int_eq(t.l.out_shape.dim[1], 3);
    ck_assert_int_eq(t.l.nparams, 0);
    float x[24], y[24], dy[24], dx[24], mask[8], want[8];
    masking_input(x, v, want);
    run_writes_mask(&t, x, rows, y, mask);
    for (int s = 0; s < 8; s++) {
        ck_assert_msg(mask[s] == want[s], "%s: mask[%d] = %g, want %g", yaml, s, mask[s],
                      want[s]);
        for (int f = 0; f < 3; f++)
            ck_assert_float_eq(y[s * 3 + f], want[s] ? x[s * 3 + f] : 0.0f);
    }
    tu_fill(dy, 24, 22, -1.0f, 1.0f);
    for (int i = 0; i < 24; i++)
        dx[i] = 12345.0f; /* backward must overwrite */
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    ty.mask = mask;
    float dy0[24];
    memcpy(dy0, dy, sizeof dy0);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(dx[i], want[i / 3] ? dy0[i] : 0.0f);
    lt_free(&t);
}

START_TEST(test_masking_layer)
{
    check_masking("{type: masking}", 0.0f);
    check_masking("{type: Masking, mask_value: 0.0}", 0.0f);
    check_masking("{type: masking, mask_value: -1.5}", -1.5f);
    check_masking("{type: masking, mask_value: 2}", 2.0f);
    /* the default is written back into the config */
    lt t;
    int64_t in[2] = {4, 3};
    lt_ok(&t, "{type: masking}", "masking", 2, in, 1);
    ck_assert_ptr_nonnull(ct_map_get(t.cfg, "mask_value"));
    lt_free(&t);
}
END_TEST

/* At the steps of data y = x, so dx = dy there by central differences (a step of 1e-3
 * leaves the mask as it was); at padding dx is 0. */
START_TEST(test_masking_gradients)
{
    lt t;
    int64_t in[2] = {4, 3}, rows = 2;
    lt_ok(&t, "{type: masking, mask_value: -1.5}", "masking", 2, in, rows);
    float x[24], y[24], dy[24], dx[24], mask[8], want[8], r[24];
    masking_input(x, -1.5f, want);
    tu_fill(r, 24, 23, -1.0f, 1.0f);
    lt_fd g = {.t = &t, .pass = &infer_pass, .x = tensor(x, rows, t.l.in_shape),
               .y = tensor(y, rows, t.l.out_shape), .r = r};
    g.y.mask = mask;
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &g.x, &g.y);
    memcpy(dy, r, sizeof dy);
    lt_backward(&t.l, &infer_pass, &g.x, &g.y, &tdy, &tdx);
    for (int64_t i = 0; i < 24; i++)
        if (want[i / 3])
            lt_fd_compare(&g, "x", i, dx[i], &x[i], 1e-3, 1e-2);
        else
            ck_assert_float_eq(dx[i], 0.0f);
    lt_free(&t);
}
END_TEST

START_TEST(test_masking_errors)
{
    int64_t in1[1] = {4}, in3[3] = {4, 3, 2}, in2[2] = {4, 3};
    lt_fails("{type: masking}", 1, in1, "masking",
             "layer.yaml:1:1: layer 'masking' (Masking): expects an input (timesteps, "
             "features), got (None, 4)");
    lt_fails("{type: masking}", 3, in3, "masking",
             "layer.yaml:1:1: layer 'masking' (Masking): expects an input (timesteps, "
             "features), got (None, 4, 3, 2)");
    lt_fails("{type: masking, mask_value: zero}", 2, in2, "masking",
             "layer.yaml:1:29: expected a number for 'mask_value', got 'zero'");
    lt_fails("{type: masking, value: 0}", 2, in2, "masking",
             "layer.yaml:1:17: unknown key 'value' in layer 'masking' (Masking); known keys: "
             "mask_value, type, name, inputs, trainable");
}
END_TEST

/* mask_zero: true writes the output's mask, 0 where the id is 0 and 1 elsewhere; without
 * it the layer writes no mask. */
START_TEST(test_embedding_mask_zero)
{
    static const char *const yaml[] = {
        "{type: embedding, input_dim: 5, output_dim: 3, mask_zero: true}",
        "{type: token_and_position_embedding, vocabulary_size: 5, sequence_length: 4, "
        "embedding_dim: 3, mask_zero: true}",
    };
    const float ids[8] = {3, 1, 0, 0, 0, 4, 0, 2};
    for (int k = 0; k < 2; k++) {
        lt t;
        int64_t in[1] = {4};
        lt_ok(&t, yaml[k], "emb", 1, in, 2);
        float y[24], mask[8], plain[24];
        run_writes_mask(&t, ids, 2, y, mask);
        for (int i = 0; i < 8; i++)
            ck_assert_msg(mask[i] == (ids[i] != 0.0f ? 1.0f : 0.0f), "%s: mask[%d] = %g",
                          yaml[k], i, mask[i]);
        /* the values themselves are the unmasked layer's: id 0 still reads its row */
        ct_tensor tx = tensor((float *)ids, 2, t.l.in_shape), ty = tensor(plain, 2, t.l.out_shape);
        lt_forward(&t.l, &infer_pass, &tx, &ty);
        ck_assert_mem_eq(y, plain, sizeof y);
        lt_free(&t);
    }
    /* mask_zero false (the default): no mask out, and a buffer handed in stays as it was */
    lt t;
    int64_t in[1] = {4};
    lt_ok(&t, "{type: embedding, input_dim: 5, output_dim: 3}", "emb", 1, in, 2);
    bool in_masked = false;
    ck_assert_int_eq(t.l.kind->mask_out(&t.l, &in_masked), CT_MASK_NONE);
    float y[24], mask[8];
    for (int i = 0; i < 8; i++)
        mask[i] = 7.0f;
    ct_tensor tx = tensor((float *)ids, 2, t.l.in_shape), ty = tensor(y, 2, t.l.out_shape);
    ty.mask = mask;
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(mask[i], 7.0f);
    lt_free(&t);
}
END_TEST

/* ---- main --------------------------------------------------------------------------- */

static Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_registry_find);
    tcase_add_test(tc, test_registry_names);
    tcase_add_test(tc, test_add_param_and_err);
    tcase_add_test(tc, test_dense_shapes);
    tcase_add_test(tc, test_dense_errors);
    tcase_add_test(tc, test_dense_forward_reference);
    tcase_add_test(tc, test_dense_gradients);
    tcase_add_test(tc, test_dense_gradients_nd_and_nobias);
    tcase_add_test(tc, test_dense_fused);
    tcase_add_test(tc, test_dense_no_dx);
    tcase_add_test(tc, test_activation_layer_gradients);
    tcase_add_test(tc, test_activation_layer_kinds);
    tcase_add_test(tc, test_activation_layer_class_gradients);
    tcase_add_test(tc, test_softmax_last_axis);
    tcase_add_test(tc, test_activation_fused);
    tcase_add_test(tc, test_activation_layer_errors);
    tcase_add_test(tc, test_dropout_gradients);
    tcase_add_test(tc, test_dropout_statistics);
    tcase_add_test(tc, test_dropout_rate_zero_and_errors);
    tcase_add_test(tc, test_flatten);
    tcase_add_test(tc, test_reshape);
    tcase_add_test(tc, test_embedding_shapes);
    tcase_add_test(tc, test_embedding_errors);
    tcase_add_test(tc, test_embedding_forward_backward);
    tcase_add_test(tc, test_token_and_position_forward);
    tcase_add_test(tc, test_embedding_gradients);
    tcase_add_test(tc, test_masking_layer);
    tcase_add_test(tc, test_masking_gradients);
    tcase_add_test(tc, test_masking_errors);
    tcase_add_test(tc, test_embedding_mask_zero);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(layers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
