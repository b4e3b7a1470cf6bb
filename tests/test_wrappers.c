/* test_wrappers.c - Bidirectional and TimeDistributed: finite-difference gradients through
 * both (every merge mode, with and without sequences, dropout while training, masked
 * inputs; dense, conv1d, a softmax dense, flatten and dropout inside time_distributed),
 * outputs against the wrapped layers run by hand (with a mask too: zeros at padded steps),
 * parameter names and shapes, config errors, a weights file round trip and a model's
 * training step. */
#include <hdf5.h>

#include "layertest.h"
#include "model.h"
#include "weights.h"

static void lt_bind(ct_layer *l, const char *type)
{
    l->kind = ct_layer_kind_find(type);
}

static void lt_fill(ct_param *p, int i, int64_t n)
{
    lt_fill_uniform(p, i, n);
}

static const ct_pass train_pass = {.training = true, .seed = 3, .step = 5};
static const ct_pass infer_pass = {.training = false, .seed = 3, .step = 5};

/* ---- finite differences ------------------------------------------------------------------ */

/* yaml: {layer: {...the wrapper...}}; input (rows, dims...). Every weight and input
 * checked (lt_gradcheck). In training the dropout masks are the same at every pass of one
 * step, so finite differences hold. */
static void gradcheck_in(const char *yaml, int ndim, const int64_t *dims, const ct_pass *pass)
{
    lt t;
    lt_ok(&t, yaml, "w", ndim, dims, 4); /* scratch for more rows than used */
    lt_gradcheck(&t, 2, pass, 2e-3, 1e-2);
    lt_free(&t);
}

static void gradcheck(const char *yaml, int ndim, const int64_t *dims)
{
    gradcheck_in(yaml, ndim, dims, &infer_pass);
}

START_TEST(test_bidirectional_gradients)
{
    static const char *const cells[] = {"lstm", "gru"};
    static const char *const modes[] = {"concat", "sum", "mul", "ave"};
    int64_t dims[2] = {4, 3};
    char yaml[256];
    for (int c = 0; c < 2; c++)
        for (int m = 0; m < 4; m++)
            for (int seq = 0; seq < 2; seq++) {
                snprintf(yaml, sizeof yaml, "{layer: {type: bidirectional, merge_mode: %s, "
                         "layer: {type: %s, units: 2, return_sequences: %s}}}", modes[m],
                         cells[c], seq ? "true" : "false");
                gradcheck(yaml, 2, dims);
            }
    gradcheck("{layer: {type: bidirectional, layer: {type: simple_rnn, units: 3, "
              "go_backwards: true, return_sequences: true}}}", 2, dims);
    gradcheck_in("{layer: {type: bidirectional, merge_mode: mul, layer: {type: lstm, units: 2, "
                 "return_sequences: true, dropout: 0.3, recurrent_dropout: 0.2}}}", 2, dims,
                 &train_pass);
}
END_TEST

/* Two samples of 4 steps: trailing padding, and padding at both ends and between. */
static const float grad_mask[8] = {1, 1, 1, 0, 0, 1, 0, 1};

static void gradcheck_masked(const char *yaml, int ndim, const int64_t *dims,
                             const ct_pass *pass)
{
    lt t;
    lt_ok(&t, yaml, "w", ndim, dims, 4);
    lt_gradcheck_masked(&t, 2, pass, grad_mask, 2e-3, 1e-2);
    lt_free(&t);
}

START_TEST(test_bidirectional_masked_gradients)
{
    static const char *const cells[] = {"lstm", "gru", "simple_rnn"};
    static const char *const modes[] = {"concat", "sum", "mul", "ave"};
    int64_t dims[2] = {4, 3};
    char yaml[256];
    for (int c = 0; c < 3; c++)
        for (int m = 0; m < 4; m++)
            for (int seq = 0; seq < 2; seq++) {
                snprintf(yaml, sizeof yaml, "{layer: {type: bidirectional, merge_mode: %s, "
                         "layer: {type: %s, units: 2, return_sequences: %s}}}", modes[m],
                         cells[c], seq ? "true" : "false");
                gradcheck_masked(yaml, 2, dims, &infer_pass);
            }
    gradcheck_masked("{layer: {type: bidirectional, layer: {type: gru, units: 2, reset_after: "
                     "false, go_backwards: true, return_sequences: true}}}", 2, dims,
                     &infer_pass);
    gradcheck_masked("{layer: {type: bidirectional, merge_mode: sum, layer: {type: lstm, "
                     "units: 2, return_sequences: true, dropout: 0.3, recurrent_dropout: "
                     "0.2}}}", 2, dims, &train_pass);
}
END_TEST

/* The mask reaches no layer inside time_distributed: every step is computed alike. */
START_TEST(test_time_distributed_masked_gradients)
{
    int64_t d2[2] = {4, 3}, d3[3] = {4, 3, 2};
    gradcheck_masked("{layer: {type: time_distributed, layer: {type: dense, units: 2, "
                     "activation: tanh}}}", 2, d2, &infer_pass);
    gradcheck_masked("{layer: {type: time_distributed, layer: {type: conv1d, filters: 2, "
                     "kernel_size: 2}}}", 3, d3, &infer_pass);
}
END_TEST

START_TEST(test_time_distributed_gradients)
{
    int64_t d2[2] = {3, 4}, d3[3] = {3, 5, 2};
    gradcheck("{layer: {type: time_distributed, layer: {type: dense, units: 3, "
              "activation: tanh}}}", 2, d2);
    gradcheck("{layer: {type: time_distributed, layer: {type: dense, units: 3, "
              "activation: softmax}}}", 2, d2);
    gradcheck("{layer: {type: time_distributed, layer: {type: conv1d, filters: 2, "
              "kernel_size: 2, activation: relu}}}", 3, d3);
    gradcheck("{layer: {type: time_distributed, layer: {type: flatten}}}", 3, d3);
    gradcheck_in("{layer: {type: time_distributed, layer: {type: dropout, rate: 0.4}}}", 3, d3,
                 &train_pass);
}
END_TEST

/* ---- outputs against the wrapped layers by hand ---------------------------------------- */

/* Runs t's layer on x (rows of it) into a new array. */
static float *run(lt *t, const float *x, int64_t rows)
{
    float *y = fvec(rows * ct_shape_size(&t->l.out_shape));
    ct_tensor tx = tensor((float *)x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    lt_forward(&t->l, &infer_pass, &tx, &ty);
    return y;
}

/* A plain layer from yaml whose parameters are the wrapper's from index first on. */
static void plain_copy(lt *p, const char *yaml, const lt *w, int first)
{
    int64_t dims[2] = {5, 3};
    lt_ok(p, yaml, "plain", 2, dims, 3);
    for (int j = 0; j < p->l.nparams; j++)
        memcpy(p->l.params[j].value, w->l.params[first + j].value,
               (size_t)ct_shape_size(&p->l.params[j].shape) * sizeof(float));
}

/* concat with sequences: y[t] = [forward[t], backward[T-1-t]]; without: the final states. */
static void check_bidi_concat(const char *cell, bool seq)
{
    int64_t dims[2] = {5, 3}, rows = 3, T = 5, u = 2;
    char yaml[200], fy[160], by[160];
    snprintf(yaml, sizeof yaml, "{layer: {type: bidirectional, layer: {type: %s, units: 2, "
             "return_sequences: %s}}}", cell, seq ? "true" : "false");
    snprintf(fy, sizeof fy, "{type: %s, units: 2, return_sequences: %s}", cell,
             seq ? "true" : "false");
    snprintf(by, sizeof by, "{type: %s, units: 2, return_sequences: %s, go_backwards: true}",
             cell, seq ? "true" : "false");
    lt w, f, b;
    lt_ok(&w, yaml, "bidirectional", 2, dims, rows);
    plain_copy(&f, fy, &w, 0);
    plain_copy(&b, by, &w, f.l.nparams);
    float *x = fvec(rows * 15);
    tu_fill(x, rows * 15, 4, -1.0f, 1.0f);
    float *yw = run(&w, x, rows), *yf = run(&f, x, rows), *yb = run(&b, x, rows);
    int64_t steps = seq ? T : 1;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < steps; t++)
            for (int64_t k = 0; k < u; k++) {
                int64_t bt = seq ? T - 1 - t : 0;
                ck_assert_float_eq_tol(yw[(r * steps + t) * 2 * u + k], yf[(r * steps + t) * u + k],
                                       1e-6f);
                ck_assert_float_eq_tol(yw[(r * steps + t) * 2 * u + u + k],
                                       yb[(r * steps + bt) * u + k], 1e-6f);
            }
    free(x), free(yw), free(yf), free(yb);
    lt_free(&w), lt_free(&f), lt_free(&b);
}

START_TEST(test_bidirectional_forward)
{
    check_bidi_concat("lstm", true);
    check_bidi_concat("lstm", false);
    check_bidi_concat("gru", true);
    check_bidi_concat("simple_rnn", false);
}
END_TEST

/* Runs t's layer on x with the input mask `mask` into a new array. */
static float *run_masked(lt *t, const float *x, int64_t rows, const float *mask)
{
    float *y = fvec(rows * ct_shape_size(&t->l.out_shape));
    ct_tensor tx = tensor((float *)x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    tx.mask = (float *)mask;
    lt_forward(&t->l, &infer_pass, &tx, &ty);
    return y;
}

/* Three samples of 5 steps: trailing padding, interleaved padding, padding only. */
static const float seq_mask[15] = {1, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0};

/* A masked input: the wrapper's output is the merge of the two plain copies run on the
 * same mask (with sequences, as Keras, each copy with zero_output_for_mask and the
 * backward one put back in input order), and with sequences every padded step's output
 * is zeros, whatever the merge. */
static void check_bidi_masked(const char *cell, const char *mode, bool seq)
{
    int64_t dims[2] = {5, 3}, rows = 3, T = 5, u = 2;
    const char *sq = seq ? "true" : "false", *zero = seq ? ", zero_output_for_mask: true" : "";
    char yaml[200], fy[200], by[200];
    snprintf(yaml, sizeof yaml, "{layer: {type: bidirectional, merge_mode: %s, layer: {type: "
             "%s, units: 2, return_sequences: %s}}}", mode, cell, sq);
    snprintf(fy, sizeof fy, "{type: %s, units: 2, return_sequences: %s%s}", cell, sq, zero);
    snprintf(by, sizeof by, "{type: %s, units: 2, return_sequences: %s, go_backwards: true%s}",
             cell, sq, zero);
    lt w, f, b;
    lt_ok(&w, yaml, "bidirectional", 2, dims, rows);
    plain_copy(&f, fy, &w, 0);
    plain_copy(&b, by, &w, f.l.nparams);
    float *x = fvec(rows * 15);
    tu_fill(x, rows * 15, 8, -1.0f, 1.0f);
    float *yw = run_masked(&w, x, rows, seq_mask), *yf = run_masked(&f, x, rows, seq_mask);
    float *yb = run_masked(&b, x, rows, seq_mask);
    int64_t steps = seq ? T : 1, c = !strcmp(mode, "concat") ? 2 * u : u;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < steps; t++)
            for (int64_t k = 0; k < u; k++) {
                float a = yf[(r * steps + t) * u + k];
                float z = yb[(r * steps + (seq ? T - 1 - t : 0)) * u + k];
                const float *got = yw + (r * steps + t) * c;
                if (c == 2 * u) {
                    ck_assert_float_eq_tol(got[k], a, 1e-6f);
                    ck_assert_float_eq_tol(got[u + k], z, 1e-6f);
                } else {
                    float want = !strcmp(mode, "sum") ? a + z : !strcmp(mode, "mul") ? a * z
                                                                                  : (a + z) / 2;
                    ck_assert_float_eq_tol(got[k], want, 1e-6f);
                }
                if (seq && seq_mask[r * T + t] == 0.0f)
                    ck_assert_msg(got[k] == 0.0f && got[c - u + k] == 0.0f,
                                  "%s: sample %lld step %lld is padding but gives %g, %g", yaml,
                                  (long long)r, (long long)t, got[k], got[c - u + k]);
            }
    free(x), free(yw), free(yf), free(yb);
    lt_free(&w), lt_free(&f), lt_free(&b);
}

START_TEST(test_bidirectional_masked_forward)
{
    static const char *const modes[] = {"concat", "sum", "mul", "ave"};
    for (int m = 0; m < 4; m++) {
        check_bidi_masked("lstm", modes[m], true);
        check_bidi_masked("gru", modes[m], true);
    }
    check_bidi_masked("simple_rnn", "concat", true);
    check_bidi_masked("lstm", "concat", false);
    check_bidi_masked("gru", "sum", false);
}
END_TEST

/* Keras gives padded steps zeros only in a Bidirectional's copies: the same layer alone
 * returns the carried state there, which is not zero after a step of data. */
START_TEST(test_bidirectional_zeroes_only_its_copies)
{
    int64_t dims[2] = {5, 3}, rows = 3;
    lt w, f;
    lt_ok(&w, "{layer: {type: bidirectional, layer: {type: gru, units: 2, return_sequences: "
              "true}}}", "bidirectional", 2, dims, rows);
    plain_copy(&f, "{type: gru, units: 2, return_sequences: true}", &w, 0);
    float *x = fvec(rows * 15);
    tu_fill(x, rows * 15, 8, -1.0f, 1.0f);
    float *yw = run_masked(&w, x, rows, seq_mask), *yf = run_masked(&f, x, rows, seq_mask);
    /* sample 0, step 3: padding after three steps of data */
    for (int k = 0; k < 2; k++) {
        ck_assert_float_eq(yw[3 * 4 + k], 0.0f);
        ck_assert_float_ne(yf[3 * 2 + k], 0.0f);
        ck_assert_float_eq(yf[3 * 2 + k], yf[2 * 2 + k]); /* the state of step 2 */
    }
    free(x), free(yw), free(yf);
    lt_free(&w), lt_free(&f);
}
END_TEST

/* TimeDistributed with a masked input computes every step, padding included, as without
 * the mask (the mask goes on past it, see layer.h's CT_MASK_PASSES). */
START_TEST(test_time_distributed_masked_forward)
{
    int64_t dims[2] = {5, 3}, rows = 3;
    lt t;
    lt_ok(&t, "{layer: {type: time_distributed, layer: {type: dense, units: 2}}}", "td", 2,
          dims, rows);
    ck_assert_int_eq(t.l.kind->masks, CT_MASK_PASSES);
    float *x = fvec(rows * 15);
    tu_fill(x, rows * 15, 5, -1.0f, 1.0f);
    float *plain = run(&t, x, rows), *masked = run_masked(&t, x, rows, seq_mask);
    ck_assert_mem_eq(plain, masked, (size_t)(rows * 10) * sizeof(float));
    for (int i = 0; i < rows * 10; i++)
        ck_assert_float_ne(masked[i], 0.0f);
    free(x), free(plain), free(masked);
    lt_free(&t);
}
END_TEST

/* y[t] = x[t] W + b for every sample and step, in double. */
START_TEST(test_time_distributed_forward)
{
    int64_t dims[2] = {4, 3}, rows = 3, T = 4, F = 3, U = 2;
    lt t;
    lt_ok(&t, "{layer: {type: time_distributed, layer: {type: dense, units: 2}}}", "td", 2, dims,
          rows);
    ck_assert_int_eq(t.l.out_shape.ndim, 2);
    ck_assert_int_eq(t.l.out_shape.dim[0], T);
    ck_assert_int_eq(t.l.out_shape.dim[1], U);
    const float *w = t.l.params[0].value, *b = t.l.params[1].value;
    float *x = fvec(rows * T * F);
    tu_fill(x, rows * T * F, 5, -1.0f, 1.0f);
    float *y = run(&t, x, rows);
    for (int64_t r = 0; r < rows * T; r++)
        for (int64_t u = 0; u < U; u++) {
            double s = b[u];
            for (int64_t f = 0; f < F; f++)
                s += (double)x[r * F + f] * w[f * U + u];
            ck_assert_float_eq_tol(y[r * U + u], (float)s, 1e-5f);
        }
    free(x), free(y);
    lt_free(&t);
}
END_TEST

/* The other merges from the concat's two halves. */
START_TEST(test_bidirectional_merges)
{
    static const char *const modes[] = {"sum", "mul", "ave"};
    int64_t dims[2] = {5, 3}, rows = 2, n = rows * 5 * 2;
    float *x = fvec(rows * 15);
    tu_fill(x, rows * 15, 6, -1.0f, 1.0f);
    lt c;
    lt_ok(&c, "{layer: {type: bidirectional, layer: {type: gru, units: 2, "
              "return_sequences: true}}}", "bidirectional", 2, dims, rows);
    float *yc = run(&c, x, rows);
    for (int m = 0; m < 3; m++) {
        char yaml[200];
        snprintf(yaml, sizeof yaml, "{layer: {type: bidirectional, merge_mode: %s, layer: "
                 "{type: gru, units: 2, return_sequences: true}}}", modes[m]);
        lt t;
        lt_ok(&t, yaml, "bidirectional", 2, dims, rows);
        ck_assert_int_eq(t.l.out_shape.dim[1], 2);
        float *y = run(&t, x, rows);
        for (int64_t i = 0; i < n; i++) {
            float a = yc[(i / 2) * 4 + i % 2], b = yc[(i / 2) * 4 + 2 + i % 2];
            float want = m == 0 ? a + b : m == 1 ? a * b : (a + b) / 2;
            ck_assert_float_eq_tol(y[i], want, 1e-6f);
        }
        free(y);
        lt_free(&t);
    }
    free(x), free(yc);
    lt_free(&c);
}
END_TEST

START_TEST(test_param_names)
{
    int64_t dims[2] = {5, 3}, d3[3] = {5, 6, 2};
    static const char *const want[] = {
        "forward_lstm/kernel", "forward_lstm/recurrent_kernel", "forward_lstm/bias",
        "backward_lstm/kernel", "backward_lstm/recurrent_kernel", "backward_lstm/bias"};
    lt t;
    lt_ok(&t, "{layer: {type: bidirectional, layer: {type: lstm, units: 4}}}", "b", 2, dims, 2);
    ck_assert_int_eq(t.l.nparams, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_str_eq(t.l.params[i].name, want[i]);
    ck_assert_int_eq(t.l.params[3].shape.dim[1], 16);
    ck_assert_int_eq(t.l.out_shape.ndim, 1);
    ck_assert_int_eq(t.l.out_shape.dim[0], 8);
    lt_free(&t);
    lt_ok(&t, "{layer: {type: bidirectional, layer: {name: enc, type: simple_rnn, units: 2}}}",
          "b", 2, dims, 2);
    ck_assert_str_eq(t.l.params[4].name, "backward_enc/recurrent_kernel");
    lt_free(&t);
    lt_ok(&t, "{layer: {type: time_distributed, layer: {type: conv1d, filters: 4, "
              "kernel_size: 3}}}", "td", 3, d3, 2);
    ck_assert_str_eq(t.l.params[0].name, "conv1d/kernel");
    ck_assert_int_eq(t.l.out_shape.ndim, 3);
    ck_assert_int_eq(t.l.out_shape.dim[0], 5);
    ck_assert_int_eq(t.l.out_shape.dim[1], 4);
    ck_assert_int_eq(t.l.out_shape.dim[2], 4);
    lt_free(&t);
}
END_TEST

START_TEST(test_config_errors)
{
    int64_t d2[2] = {4, 3}, d1[1] = {4};
    lt_fails("{layer: {type: bidirectional, merge_mode: null, layer: {type: lstm, units: 2}}}",
             2, d2, "bidirectional",
             "layer.yaml:1:43: layer 'bidirectional' (Bidirectional): merge_mode null (the two "
             "outputs apart) is not supported: a layer has one output; use concat, sum, mul or "
             "ave");
    lt_fails("{layer: {type: bidirectional, merge_mode: max, layer: {type: lstm, units: 2}}}",
             2, d2, "bidirectional",
             "layer.yaml:1:43: unknown value 'max' for 'merge_mode'; choices: concat, sum, mul, "
             "ave");
    lt_fails("{layer: {type: bidirectional, layer: {type: lstm, units: 2}, backward_layer: "
             "{type: lstm, units: 2, go_backwards: true}}}", 2, d2, "bidirectional",
             "layer.yaml:1:78: layer 'bidirectional' (Bidirectional): backward_layer is not "
             "supported yet: the backward copy is the wrapped layer with go_backwards flipped");
    lt_fails("{layer: {type: bidirectional, layer: {type: dense, units: 2}}}", 2, d2,
             "bidirectional", "layer.yaml:1:45: layer 'bidirectional' (Bidirectional): wraps a "
             "recurrent layer (lstm, gru or simple_rnn), not Dense");
    lt_fails("{layer: {type: bidirectional}}", 2, d2, "bidirectional",
             "layer.yaml:1:9: layer 'bidirectional' (Bidirectional) needs the key 'layer'");
    lt_fails("{layer: {type: bidirectional, layer: lstm}}", 2, d2, "bidirectional",
             "layer.yaml:1:38: layer 'bidirectional' (Bidirectional): layer must be a map with "
             "the wrapped layer's type and keys, such as {type: lstm, units: 32}");
    lt_fails("{layer: {type: bidirectional, layer: {type: lstm, units: 0}}}", 2, d2,
             "bidirectional", "layer.yaml:1:58: layer 'bidirectional/forward_lstm' (LSTM): "
             "units must be between 1 and 536870911, got 0");
    lt_fails("{layer: {type: bidirectional, layer: {type: lstm, units: 2}}}", 1, d1,
             "bidirectional", "layer.yaml:1:38: layer 'bidirectional/forward_lstm' (LSTM): "
             "expects an input of shape (timesteps, features), got (None, 4)");
    lt_fails("{layer: {type: time_distributed, layer: {type: dense, units: 2, name: a/b}}}", 2,
             d2, "td", "layer.yaml:1:71: layer 'td' (TimeDistributed): the wrapped layer's name "
             "'a/b' holds '/'");
    lt_fails("{layer: {type: time_distributed, layer: {type: dense, units: 2}}}", 1, d1, "td",
             "layer.yaml:1:9: layer 'td' (TimeDistributed): expects an input with a time axis "
             "(timesteps, ...), got (None, 4)");
    lt_fails("{layer: {type: time_distributed, layer: {type: add}}}", 2, d2, "td",
             "layer.yaml:1:48: layer 'td' (TimeDistributed): wraps layers of one input, not "
             "Add");
    lt_fails("{layer: {type: time_distributed, layer: {type: dense, units: 2, inputs: x}}}", 2,
             d2, "td", "layer.yaml:1:73: layer 'td' (TimeDistributed): the wrapped layer takes "
             "the wrapper's input; give inputs to the wrapper");
    lt_fails("{layer: {type: time_distributed, layer: {type: dense, units: 2}, units: 3}}", 2,
             d2, "td", "layer.yaml:1:66: unknown key 'units' in layer 'td' (TimeDistributed); "
             "known keys: layer, type, name, inputs, trainable");
}
END_TEST

/* ---- a model's weights file ---------------------------------------------------------- */

static const char *const model_yaml =
    "input_shape: [5, 3]\n"
    "layers:\n"
    "  - {type: bidirectional, merge_mode: sum, layer: {type: gru, units: 4, "
    "return_sequences: true}}\n"
    "  - {type: time_distributed, layer: {type: dense, units: 2, activation: softmax}}\n";

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

START_TEST(test_weights_file)
{
    ct_node *ra, *rb;
    ct_model *a = build_model(&ra, 1), *b = build_model(&rb, 2);
    char *dir = tu_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/w.h5", dir);
    ct_error err = {0};
    ck_assert_msg(ct_weights_save(a, path, NULL, NULL, &err) == 0, "%s", err.msg);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    static const char *const links[] = {
        "model_weights/bidirectional/bidirectional/forward_gru/kernel:0",
        "model_weights/bidirectional/bidirectional/backward_gru/recurrent_kernel:0",
        "model_weights/time_distributed/time_distributed/dense/kernel:0",
    };
    for (int i = 0; i < 3; i++)
        ck_assert_msg(H5Lexists(f, links[i], H5P_DEFAULT) > 0, "no %s", links[i]);
    H5Fclose(f);
    ck_assert_msg(ct_weights_load(b, path, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a->size, b->size);
    ck_assert(memcmp(a->values, b->values, (size_t)a->size * sizeof(float)) == 0);
    /* and the loaded model computes what the saved one does */
    ck_assert_msg(ct_model_plan(a, 2, &err) == 0 && ct_model_plan(b, 2, &err) == 0, "%s",
                  err.msg);
    tu_fill(a->inputs[0].data, 30, 3, -1.0f, 1.0f);
    memcpy(b->inputs[0].data, a->inputs[0].data, 30 * sizeof(float));
    const ct_tensor *ya = ct_model_forward(a, &infer_pass, 2), *yb = ct_model_forward(b, &infer_pass, 2);
    ck_assert(memcmp(ya->data, yb->data, 20 * sizeof(float)) == 0);
    unlink(path);
    rmdir(dir);
    free(dir);
    ct_model_free(a);
    ct_model_free(b);
    ct_node_free(ra);
    ct_node_free(rb);
}
END_TEST

/* A training step through a model: the fused softmax and crossentropy reach the wrapped
 * dense, and the gradients are finite. */
START_TEST(test_model_step)
{
    ct_node *root;
    ct_model *m = build_model(&root, 3);
    ct_error err = {0};
    ck_assert_msg(ct_model_plan(m, 3, &err) == 0, "%s", err.msg);
    tu_fill(m->inputs[0].data, 45, 5, -1.0f, 1.0f);
    const ct_tensor *y = ct_model_forward(m, &train_pass, 3);
    for (int i = 0; i < 15; i++)
        ck_assert_float_eq_tol(y->data[2 * i] + y->data[2 * i + 1], 1.0f, 1e-6f);
    float *dy = ct_model_output_grad(m, 0);
    for (int i = 0; i < 30; i++)
        dy[i] = y->data[i] - (i % 2 == 0);
    double penalty = 0;
    ct_model_backward(m, &train_pass, 1.0, &penalty);
    for (int64_t i = 0; i < m->trainable; i++)
        ck_assert(isfinite(m->grads[i]));
    ct_model_free(m);
    ct_node_free(root);
}
END_TEST

static Suite *wrappers_suite(void)
{
    Suite *s = suite_create("wrappers");
    TCase *tc = tcase_create("wrappers");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bidirectional_gradients);
    tcase_add_test(tc, test_time_distributed_gradients);
    tcase_add_test(tc, test_bidirectional_masked_gradients);
    tcase_add_test(tc, test_time_distributed_masked_gradients);
    tcase_add_test(tc, test_bidirectional_forward);
    tcase_add_test(tc, test_time_distributed_forward);
    tcase_add_test(tc, test_bidirectional_merges);
    tcase_add_test(tc, test_bidirectional_masked_forward);
    tcase_add_test(tc, test_bidirectional_zeroes_only_its_copies);
    tcase_add_test(tc, test_time_distributed_masked_forward);
    tcase_add_test(tc, test_param_names);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_weights_file);
    tcase_add_test(tc, test_model_step);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wrappers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
