/* test_recurrent.c - SimpleRNN, LSTM and GRU: outputs against the Keras formulas computed
 * here in double from the Keras weight layouts, finite-difference gradients through time
 * (every weight and the input; return_sequences, go_backwards, dropout), masked inputs (the
 * state carried over padded steps, zero_output_for_mask) in both, parameter shapes,
 * unit_forget_bias, dropout masks and config errors. */
#include "layertest.h"
#include "model.h"

extern const ct_layer_kind ct_layer_simple_rnn, ct_layer_lstm, ct_layer_gru;

static void lt_bind(ct_layer *l, const char *type)
{
    const ct_layer_kind *kinds[] = {&ct_layer_simple_rnn, &ct_layer_lstm, &ct_layer_gru};
    l->kind = NULL;
    for (int i = 0; i < 3 && !l->kind; i++)
        if (!strcmp(kinds[i]->name, type) || !strcmp(kinds[i]->class_name, type))
            l->kind = kinds[i];
}

static void lt_fill(ct_param *p, int i, int64_t n)
{
    lt_fill_uniform(p, i, n);
}

static const ct_pass train_pass = {.training = true, .seed = 3, .step = 5};
static const ct_pass infer_pass = {.training = false, .seed = 3, .step = 5};

static ct_param *param(lt *t, const char *name)
{
    for (int i = 0; i < t->l.nparams; i++)
        if (!strcmp(t->l.params[i].name, name))
            return &t->l.params[i];
    return NULL;
}

/* ---- the Keras formulas in double ----------------------------------------------------- */

enum { REF_SIMPLE, REF_LSTM, REF_GRU_AFTER, REF_GRU_BEFORE };

typedef struct ref {
    int cell;
    int64_t n, T, F, u;
    const float *x, *k, *rk, *b; /* Keras layouts; b NULL: no bias */
    bool backwards, sequences;
    const float *mask;           /* n x T, 0 at padding; NULL: none */
    bool zero_masked;            /* zero_output_for_mask */
    const float *h0, *c0;        /* n x u initial states; NULL: zeros */
    double *hT, *cT;             /* n x u final states out; NULL: not wanted */
} ref;

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* z[c] = sum_f x[f] w[f][c] over cols columns of a (rows x cols) matrix. */
static void matvec(const float *x, const double *xd, int64_t rows, const float *w, int64_t cols,
                   double *z)
{
    for (int64_t c = 0; c < cols; c++) {
        double s = 0.0;
        for (int64_t f = 0; f < rows; f++)
            s += (x ? x[f] : xd[f]) * w[f * cols + c];
        z[c] = s;
    }
}

/* One step of sample state h (and c) from input row x. */
static void ref_step(const ref *r, const float *x, double *h, double *c)
{
    int64_t u = r->u, g = r->cell == REF_SIMPLE ? 1 : r->cell == REF_LSTM ? 4 : 3;
    double xz[16], hz[16];
    matvec(x, NULL, r->F, r->k, g * u, xz);
    matvec(NULL, h, u, r->rk, g * u, hz);
    for (int64_t j = 0; j < g * u && r->b; j++) {
        xz[j] += r->b[j];
        if (r->cell == REF_GRU_AFTER)
            hz[j] += r->b[g * u + j]; /* row 1: the recurrent bias */
    }
    for (int64_t j = 0; j < u; j++) {
        if (r->cell == REF_SIMPLE) {
            h[j] = tanh(xz[j] + hz[j]);
        } else if (r->cell == REF_LSTM) {
            double i = sigm(xz[j] + hz[j]), f = sigm(xz[u + j] + hz[u + j]);
            double cc = tanh(xz[2 * u + j] + hz[2 * u + j]), o = sigm(xz[3 * u + j] + hz[3 * u + j]);
            c[j] = f * c[j] + i * cc;
            hz[j] = o * tanh(c[j]); /* h waits: later units still read the old state */
        } else {
            double z = sigm(xz[j] + hz[j]), rr = sigm(xz[u + j] + hz[u + j]);
            xz[j] = z; /* kept for the update below */
            xz[u + j] = rr;
        }
    }
    if (r->cell == REF_LSTM)
        for (int64_t j = 0; j < u; j++)
            h[j] = hz[j];
    if (r->cell == REF_GRU_AFTER || r->cell == REF_GRU_BEFORE) {
        double rh[8], hh[8];
        for (int64_t j = 0; j < u; j++)
            rh[j] = xz[u + j] * h[j];
        for (int64_t j = 0; j < u; j++) {
            double rec = hz[2 * u + j];
            if (r->cell == REF_GRU_BEFORE) { /* (r * h) U_h */
                rec = 0.0;
                for (int64_t m = 0; m < u; m++)
                    rec += rh[m] * r->rk[m * 3 * u + 2 * u + j];
                hh[j] = tanh(xz[2 * u + j] + rec);
            } else {
                hh[j] = tanh(xz[2 * u + j] + xz[u + j] * rec);
            }
        }
        for (int64_t j = 0; j < u; j++)
            h[j] = xz[j] * h[j] + (1.0 - xz[j]) * hh[j];
    }
}

/* out: n x (T x u or u), as the layer lays it out. A padded step leaves h and c as they
 * were; its output is that carried state, or zeros with zero_masked (Keras). */
static void ref_run(const ref *r, double *out)
{
    int64_t u = r->u, T = r->T;
    for (int64_t s = 0; s < r->n; s++) {
        double h[8] = {0}, c[8] = {0};
        for (int64_t j = 0; j < u; j++) {
            h[j] = r->h0 ? r->h0[s * u + j] : 0.0;
            c[j] = r->c0 ? r->c0[s * u + j] : 0.0;
        }
        for (int64_t k = 0; k < T; k++) {
            int64_t t = r->backwards ? T - 1 - k : k;
            bool pad = r->mask && r->mask[s * T + t] == 0.0f;
            if (!pad)
                ref_step(r, r->x + (s * T + t) * r->F, h, c);
            if (r->sequences)
                for (int64_t j = 0; j < u; j++)
                    out[(s * T + k) * u + j] = pad && r->zero_masked ? 0.0 : h[j];
        }
        for (int64_t j = 0; j < u; j++) {
            if (!r->sequences)
                out[s * u + j] = h[j];
            if (r->hT)
                r->hT[s * u + j] = h[j];
            if (r->cT)
                r->cT[s * u + j] = c[j];
        }
    }
}

/* Builds the layer on (3, 3) input with units 2, runs forward on two samples and compares
 * with the reference. */
static void check_keras(const char *yaml, int cell, bool backwards, bool sequences)
{
    int64_t dims[2] = {3, 3}, n = 2, u = 2;
    lt t;
    lt_ok(&t, yaml, "rnn", 2, dims, n);
    int64_t nx = n * 9, ny = n * ct_shape_size(&t.l.out_shape);
    float *x = fvec(nx), *y = fvec(ny);
    double *want = dvec(ny);
    tu_fill(x, nx, 11, -1.0f, 1.0f);
    ct_param *b = param(&t, "bias");
    ref r = {.cell = cell, .n = n, .T = 3, .F = 3, .u = u, .x = x,
             .k = param(&t, "kernel")->value, .rk = param(&t, "recurrent_kernel")->value,
             .b = b ? b->value : NULL, .backwards = backwards, .sequences = sequences};
    ref_run(&r, want);
    ct_tensor tx = tensor(x, n, t.l.in_shape), ty = tensor(y, n, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t i = 0; i < ny; i++)
        ck_assert_msg(fabs(y[i] - want[i]) <= 1e-5, "%s: y[%lld] %.8g, Keras %.8g", yaml,
                      (long long)i, y[i], want[i]);
    free(x), free(y), free(want);
    lt_free(&t);
}

START_TEST(test_simple_rnn_keras)
{
    check_keras("{type: simple_rnn, units: 2}", REF_SIMPLE, false, false);
    check_keras("{type: simple_rnn, units: 2, return_sequences: true}", REF_SIMPLE, false, true);
    check_keras("{type: simple_rnn, units: 2, go_backwards: true, return_sequences: true}",
                REF_SIMPLE, true, true);
    check_keras("{type: SimpleRNN, units: 2, use_bias: false}", REF_SIMPLE, false, false);
}
END_TEST

START_TEST(test_lstm_keras)
{
    check_keras("{type: lstm, units: 2}", REF_LSTM, false, false);
    check_keras("{type: lstm, units: 2, return_sequences: true}", REF_LSTM, false, true);
    check_keras("{type: LSTM, units: 2, go_backwards: true}", REF_LSTM, true, false);
    check_keras("{type: lstm, units: 2, go_backwards: true, return_sequences: true}", REF_LSTM,
                true, true);
}
END_TEST

START_TEST(test_gru_keras)
{
    check_keras("{type: gru, units: 2}", REF_GRU_AFTER, false, false);
    check_keras("{type: gru, units: 2, return_sequences: true, go_backwards: true}",
                REF_GRU_AFTER, true, true);
    check_keras("{type: GRU, units: 2, reset_after: false, return_sequences: true}",
                REF_GRU_BEFORE, false, true);
    check_keras("{type: gru, units: 2, use_bias: false}", REF_GRU_AFTER, false, false);
}
END_TEST

/* ---- masked inputs against the reference ------------------------------------------------ */

/* Three samples of 5 steps: trailing padding, padding interleaved (the first step too),
 * and padding only. */
static const float seq_mask[15] = {1, 1, 1, 0, 0,
                                   0, 1, 0, 1, 1,
                                   0, 0, 0, 0, 0};

/* The cell the yaml names, for the reference. */
static int ref_cell(const char *yaml)
{
    if (strstr(yaml, "lstm"))
        return REF_LSTM;
    if (strstr(yaml, "gru"))
        return strstr(yaml, "reset_after: false") ? REF_GRU_BEFORE : REF_GRU_AFTER;
    return REF_SIMPLE;
}

/* Builds the layer (units 2) on (5, 3) inputs and runs it on seq_mask's three samples,
 * whose padded steps hold data like any other; compares with the reference. */
static void check_masked(const char *yaml)
{
    int64_t dims[2] = {5, 3}, n = 3, T = 5;
    lt t;
    lt_ok(&t, yaml, "rnn", 2, dims, n);
    int64_t nx = n * T * 3, ny = n * ct_shape_size(&t.l.out_shape);
    float *x = fvec(nx), *y = fvec(ny);
    double *want = dvec(ny);
    tu_fill(x, nx, 12, -1.0f, 1.0f);
    ct_param *b = param(&t, "bias");
    ref r = {.cell = ref_cell(yaml), .n = n, .T = T, .F = 3, .u = 2, .x = x,
             .k = param(&t, "kernel")->value, .rk = param(&t, "recurrent_kernel")->value,
             .b = b ? b->value : NULL, .backwards = strstr(yaml, "go_backwards: true") != NULL,
             .sequences = strstr(yaml, "return_sequences: true") != NULL, .mask = seq_mask,
             .zero_masked = strstr(yaml, "zero_output_for_mask: true") != NULL};
    ref_run(&r, want);
    ct_tensor tx = tensor(x, n, t.l.in_shape), ty = tensor(y, n, t.l.out_shape);
    tx.mask = (float *)seq_mask;
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t i = 0; i < ny; i++)
        ck_assert_msg(fabs(y[i] - want[i]) <= 1e-5, "%s: y[%lld] %.8g, Keras %.8g", yaml,
                      (long long)i, y[i], want[i]);
    /* a sample of padding only keeps the initial state, zeros, everywhere */
    int64_t per = ct_shape_size(&t.l.out_shape);
    for (int64_t i = 2 * per; i < 3 * per; i++)
        ck_assert_msg(y[i] == 0.0f, "%s: all-padding sample y[%lld] = %g", yaml, (long long)i,
                      y[i]);
    free(x), free(y), free(want);
    lt_free(&t);
}

/* Each cell forwards and backwards, the last state and sequences, the padded steps' output
 * the carried state or zeros. */
static void check_masked_variants(const char *cell)
{
    static const char *const opts[] = {
        "", ", go_backwards: true", ", return_sequences: true",
        ", return_sequences: true, go_backwards: true",
        ", return_sequences: true, zero_output_for_mask: true",
        ", return_sequences: true, go_backwards: true, zero_output_for_mask: true",
        ", zero_output_for_mask: true", /* no sequence: the last state is unaffected */
    };
    char yaml[200];
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        snprintf(yaml, sizeof yaml, "{type: %s, units: 2%s}", cell, opts[i]);
        check_masked(yaml);
    }
}

START_TEST(test_masked_keras)
{
    check_masked_variants("simple_rnn");
    check_masked_variants("lstm");
    check_masked_variants("gru");
    check_masked_variants("gru, reset_after: false");
    check_masked("{type: lstm, units: 2, use_bias: false, return_sequences: true}");
}
END_TEST

/* A mask of ones is no mask: the output is the unmasked one (to rounding: the kept state
 * is blended in). And the padded steps' inputs do not matter: changing them leaves every
 * output exactly as it was. */
START_TEST(test_mask_of_ones_and_padded_inputs)
{
    int64_t dims[2] = {5, 3}, n = 3, nx = 45, ny = 30;
    lt t;
    lt_ok(&t, "{type: gru, units: 2, return_sequences: true}", "gru", 2, dims, n);
    float *x = fvec(nx), *a = fvec(ny), *b = fvec(ny), *ones = fvec(15);
    tu_fill(x, nx, 3, -1.0f, 1.0f);
    for (int i = 0; i < 15; i++)
        ones[i] = 1.0f;
    ct_tensor tx = tensor(x, n, t.l.in_shape), ty = tensor(a, n, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    tx.mask = ones;
    ty.data = b;
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t i = 0; i < ny; i++)
        ck_assert_float_eq_tol(a[i], b[i], 1e-6f);
    tx.mask = (float *)seq_mask;
    ty.data = a;
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int i = 0; i < 15; i++)
        if (seq_mask[i] == 0.0f)
            for (int f = 0; f < 3; f++)
                x[i * 3 + f] += 0.75f;
    ty.data = b;
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    ck_assert_mem_eq(a, b, (size_t)ny * sizeof(float));
    free(x), free(a), free(b), free(ones);
    lt_free(&t);
}
END_TEST

/* ---- finite differences ------------------------------------------------------------------ */

static void gradcheck(const char *yaml, const ct_pass *pass)
{
    int64_t dims[2] = {4, 3}, rows = 3;
    lt t;
    lt_ok(&t, yaml, "rnn", 2, dims, rows + 2); /* scratch for more rows than used */
    lt_gradcheck(&t, rows, pass, 2e-3, 1e-2);
    lt_free(&t);
}

/* Three samples of 4 steps: trailing padding, interleaved padding, padding only. */
static const float grad_mask[12] = {1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0};

static void gradcheck_masked(const char *yaml, const ct_pass *pass)
{
    int64_t dims[2] = {4, 3}, rows = 3;
    lt t;
    lt_ok(&t, yaml, "rnn", 2, dims, rows + 2);
    lt_gradcheck_masked(&t, rows, pass, grad_mask, 2e-3, 1e-2);
    lt_free(&t);
}

/* Each cell with a masked input: the last state and sequences, forwards and backwards,
 * zero_output_for_mask, dropout. */
static void gradcheck_masked_variants(const char *cell)
{
    static const char *const opts[] = {
        "", ", go_backwards: true", ", return_sequences: true",
        ", return_sequences: true, go_backwards: true",
        ", return_sequences: true, zero_output_for_mask: true",
        ", return_sequences: true, go_backwards: true, zero_output_for_mask: true",
        ", return_sequences: true, dropout: 0.3, recurrent_dropout: 0.3",
    };
    char yaml[200];
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        snprintf(yaml, sizeof yaml, "{type: %s, units: 3%s}", cell, opts[i]);
        gradcheck_masked(yaml, &train_pass);
    }
}

START_TEST(test_masked_gradients)
{
    gradcheck_masked_variants("simple_rnn");
    gradcheck_masked_variants("lstm");
    gradcheck_masked_variants("gru");
    gradcheck_masked_variants("gru, reset_after: false");
}
END_TEST

START_TEST(test_simple_rnn_gradients)
{
    gradcheck("{type: simple_rnn, units: 3}", &train_pass);
    gradcheck("{type: simple_rnn, units: 3, return_sequences: true}", &train_pass);
    gradcheck("{type: simple_rnn, units: 3, go_backwards: true}", &train_pass);
    gradcheck("{type: simple_rnn, units: 3, go_backwards: true, return_sequences: true}",
              &train_pass);
    /* an activation whose derivative needs the pre-activation values */
    gradcheck("{type: simple_rnn, units: 3, activation: softplus, return_sequences: true}",
              &train_pass);
    gradcheck("{type: simple_rnn, units: 3, use_bias: false}", &infer_pass);
}
END_TEST

START_TEST(test_lstm_gradients)
{
    gradcheck("{type: lstm, units: 3}", &train_pass);
    gradcheck("{type: lstm, units: 3, return_sequences: true}", &train_pass);
    gradcheck("{type: lstm, units: 3, go_backwards: true}", &train_pass);
    gradcheck("{type: lstm, units: 3, go_backwards: true, return_sequences: true}", &train_pass);
    gradcheck("{type: lstm, units: 2, activation: softsign, use_bias: false}", &infer_pass);
}
END_TEST

START_TEST(test_gru_gradients)
{
    gradcheck("{type: gru, units: 3}", &train_pass);
    gradcheck("{type: gru, units: 3, return_sequences: true}", &train_pass);
    gradcheck("{type: gru, units: 3, go_backwards: true}", &train_pass);
    gradcheck("{type: gru, units: 3, go_backwards: true, return_sequences: true}", &train_pass);
    gradcheck("{type: gru, units: 3, reset_after: false, return_sequences: true}", &train_pass);
    gradcheck("{type: gru, units: 3, reset_after: false, go_backwards: true}", &train_pass);
    gradcheck("{type: gru, units: 2, use_bias: false}", &infer_pass);
}
END_TEST

/* The masks are fixed for a seed and step, so finite differences see the same function. */
START_TEST(test_dropout_gradients)
{
    static const char *const kinds[] = {"simple_rnn", "lstm", "gru"};
    char yaml[160];
    for (int i = 0; i < 3; i++) {
        snprintf(yaml, sizeof yaml,
                 "{type: %s, units: 3, dropout: 0.4, recurrent_dropout: 0.3, "
                 "return_sequences: true}", kinds[i]);
        gradcheck(yaml, &train_pass);
    }
    gradcheck("{type: gru, units: 3, reset_after: false, recurrent_dropout: 0.5}", &train_pass);
    gradcheck("{type: lstm, units: 3, dropout: 0.5, go_backwards: true}", &infer_pass);
}
END_TEST

/* ---- parameters and initialization ------------------------------------------------------- */

static void check_shape(lt *t, const char *name, int ndim, int64_t d0, int64_t d1)
{
    ct_param *p = param(t, name);
    ck_assert_msg(p != NULL, "no %s", name);
    ck_assert_int_eq(p->shape.ndim, ndim);
    ck_assert_int_eq(p->shape.dim[0], d0);
    if (ndim == 2)
        ck_assert_int_eq(p->shape.dim[1], d1);
}

START_TEST(test_param_shapes)
{
    int64_t dims[2] = {6, 5};
    lt t;
    lt_ok(&t, "{type: simple_rnn, units: 4, return_sequences: true}", "rnn", 2, dims, 2);
    check_shape(&t, "kernel", 2, 5, 4);
    check_shape(&t, "recurrent_kernel", 2, 4, 4);
    check_shape(&t, "bias", 1, 4, 0);
    ck_assert_int_eq(t.l.out_shape.ndim, 2);
    ck_assert_int_eq(t.l.out_shape.dim[0], 6);
    ck_assert_int_eq(t.l.out_shape.dim[1], 4);
    lt_free(&t);
    lt_ok(&t, "{type: lstm, units: 4}", "rnn", 2, dims, 2);
    check_shape(&t, "kernel", 2, 5, 16);
    check_shape(&t, "recurrent_kernel", 2, 4, 16);
    check_shape(&t, "bias", 1, 16, 0);
    ck_assert_int_eq(t.l.out_shape.ndim, 1);
    ck_assert_int_eq(t.l.out_shape.dim[0], 4);
    lt_free(&t);
    lt_ok(&t, "{type: gru, units: 4}", "rnn", 2, dims, 2);
    check_shape(&t, "kernel", 2, 5, 12);
    check_shape(&t, "recurrent_kernel", 2, 4, 12);
    check_shape(&t, "bias", 2, 2, 12);
    lt_free(&t);
    lt_ok(&t, "{type: gru, units: 4, reset_after: false}", "rnn", 2, dims, 2);
    check_shape(&t, "bias", 1, 12, 0);
    lt_free(&t);
    lt_ok(&t, "{type: gru, units: 4, use_bias: false}", "rnn", 2, dims, 2);
    ck_assert_int_eq(t.l.nparams, 2);
    ck_assert_ptr_null(param(&t, "bias"));
    lt_free(&t);
    /* each regularizer on its own weight */
    lt_ok(&t, "{type: lstm, units: 2, recurrent_regularizer: l2, bias_regularizer: {type: l1, "
          "l1: 0.5}}", "rnn", 2, dims, 2);
    ck_assert(param(&t, "kernel")->reg.l1 == 0 && param(&t, "kernel")->reg.l2 == 0);
    ck_assert(param(&t, "recurrent_kernel")->reg.l2 == 0.01);
    ck_assert(param(&t, "bias")->reg.l1 == 0.5 && param(&t, "bias")->reg.l2 == 0);
    lt_free(&t);
}
END_TEST

/* Fills the bias as the model does and checks each gate's slice against want (-1: random,
 * so neither all zero nor all one). */
static void check_bias_init(const char *yaml, const double want[4])
{
    int64_t dims[2] = {2, 3}, u = 5;
    lt t;
    lt_ok(&t, yaml, "lstm", 2, dims, 1);
    ct_param *b = param(&t, "bias");
    ct_init_fill(&b->init, b->value, &b->shape, 42);
    for (int g = 0; g < 4; g++) {
        bool all_same = true;
        for (int64_t j = 0; j < u; j++) {
            float v = b->value[g * u + j];
            if (want[g] >= 0)
                ck_assert_msg(v == (float)want[g], "%s: bias[%lld] = %g, want %g", yaml,
                              (long long)(g * u + j), v, want[g]);
            all_same = all_same && (v == 0.0f || v == 1.0f);
        }
        if (want[g] < 0)
            ck_assert_msg(!all_same, "%s: gate %d not random", yaml, g);
    }
    lt_free(&t);
}

START_TEST(test_unit_forget_bias)
{
    check_bias_init("{type: lstm, units: 5}", (double[]){0, 1, 0, 0});
    check_bias_init("{type: lstm, units: 5, unit_forget_bias: false}", (double[]){0, 0, 0, 0});
    check_bias_init("{type: lstm, units: 5, bias_initializer: random_uniform}",
                    (double[]){-1, 1, -1, -1});
    check_bias_init("{type: lstm, units: 5, bias_initializer: ones, unit_forget_bias: false}",
                    (double[]){1, 1, 1, 1});
    /* the defaults are written back into the config, only each kind's own keys */
    int64_t dims[2] = {2, 3};
    lt t;
    lt_ok(&t, "{type: lstm, units: 2}", "lstm", 2, dims, 1);
    ck_assert_ptr_nonnull(ct_map_get(t.cfg, "unit_forget_bias"));
    ck_assert_ptr_null(ct_map_get(t.cfg, "reset_after"));
    lt_free(&t);
    lt_ok(&t, "{type: gru, units: 2}", "gru", 2, dims, 1);
    ck_assert_ptr_nonnull(ct_map_get(t.cfg, "reset_after"));
    ck_assert_ptr_null(ct_map_get(t.cfg, "unit_forget_bias"));
    lt_free(&t);
}
END_TEST

/* ---- dropout -------------------------------------------------------------------------------- */

static void run_forward(lt *t, const ct_pass *pass, const float *x, int64_t rows, float *y)
{
    ct_tensor tx = tensor((float *)x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    lt_forward(&t->l, pass, &tx, &ty);
}

START_TEST(test_dropout_determinism)
{
    int64_t dims[2] = {5, 4}, rows = 6;
    const char *yaml = "{type: lstm, units: 3, dropout: 0.5, recurrent_dropout: 0.5}";
    lt t, plain;
    lt_ok(&t, yaml, "lstm", 2, dims, rows);
    lt_ok(&plain, "{type: lstm, units: 3}", "lstm", 2, dims, rows);
    int64_t nx = rows * 20, ny = rows * 3;
    float *x = fvec(nx), *a = fvec(ny), *b = fvec(ny), *c = fvec(ny), *d = fvec(ny);
    tu_fill(x, nx, 5, -1.0f, 1.0f);
    run_forward(&t, &train_pass, x, rows, a);
    run_forward(&t, &train_pass, x, rows, b);
    ck_assert_mem_eq(a, b, (size_t)ny * sizeof(float));
    ct_pass other = train_pass;
    other.step++;
    run_forward(&t, &other, x, rows, c);
    ck_assert_msg(memcmp(a, c, (size_t)ny * sizeof(float)) != 0, "same masks at another step");
    /* inference ignores dropout: the layer without it gives the same output */
    run_forward(&t, &infer_pass, x, rows, c);
    run_forward(&plain, &train_pass, x, rows, d);
    ck_assert_mem_eq(c, d, (size_t)ny * sizeof(float));
    ck_assert_msg(memcmp(a, c, (size_t)ny * sizeof(float)) != 0, "training dropped nothing");
    free(x), free(a), free(b), free(c), free(d);
    lt_free(&t);
    lt_free(&plain);
}
END_TEST

/* One input mask per sample and feature, the same at every timestep: dx is zero at every
 * timestep or at none. */
START_TEST(test_dropout_mask_per_sequence)
{
    int64_t T = 5, f = 4, rows = 6, dims[2] = {T, f};
    lt t;
    lt_ok(&t, "{type: gru, units: 3, dropout: 0.5, return_sequences: true}", "gru", 2, dims,
          rows);
    int64_t nx = rows * T * f, ny = rows * T * 3;
    float *x = fvec(nx), *y = fvec(ny), *dy = fvec(ny), *dx = fvec(nx);
    tu_fill(x, nx, 5, -1.0f, 1.0f);
    tu_fill(dy, ny, 6, -1.0f, 1.0f);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    lt_forward(&t.l, &train_pass, &tx, &ty);
    lt_backward(&t.l, &train_pass, &tx, &ty, &tdy, &tdx);
    int dropped = 0, kept = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < f; j++) {
            int zeros = 0;
            for (int64_t k = 0; k < T; k++)
                zeros += dx[(r * T + k) * f + j] == 0.0f;
            ck_assert_msg(zeros == 0 || zeros == T, "sample %lld feature %lld: %d of %lld",
                          (long long)r, (long long)j, zeros, (long long)T);
            dropped += zeros == T;
            kept += zeros == 0;
        }
    ck_assert_int_gt(dropped, 0);
    ck_assert_int_gt(kept, 0);
    free(x), free(y), free(dy), free(dx);
    lt_free(&t);
}
END_TEST

/* ---- config errors ---------------------------------------------------------------------- */

START_TEST(test_config_errors)
{
    int64_t d2[2] = {4, 3}, d3[3] = {4, 3, 2};
    lt_fails("{type: simple_rnn, units: 0}", 2, d2, "rnn",
             "layer.yaml:1:27: layer 'rnn' (SimpleRNN): units must be between 1 and "
             "2147483647, got 0");
    lt_fails("{type: lstm, units: 1000000000}", 2, d2, "lstm",
             "layer.yaml:1:21: layer 'lstm' (LSTM): units must be between 1 and 536870911, "
             "got 1000000000");
    lt_fails("{type: gru}", 2, d2, "gru", "layer.yaml:1:1: layer 'gru' (GRU) needs the key 'units'");
    lt_fails("{type: gru, units: 2, recurrent_activation: sigmoidd}", 2, d2, "gru",
             "layer.yaml:1:45: layer 'gru' (GRU): unknown activation 'sigmoidd' (did you mean "
             "'sigmoid'?); known activations: linear, relu, relu6, leaky_relu, elu, selu, gelu, "
             "silu, swish, sigmoid, hard_sigmoid, tanh, softplus, softsign, softmax, "
             "log_softmax");
    lt_fails("{type: lstm, units: 2, dropout: 1}", 2, d2, "lstm",
             "layer.yaml:1:33: layer 'lstm' (LSTM): dropout must be at least 0 and below 1, "
             "got 1");
    lt_fails("{type: lstm, units: 2, reset_after: true}", 2, d2, "lstm",
             "layer.yaml:1:24: unknown key 'reset_after' in layer 'lstm' (LSTM); known keys: "
             "units, activation, recurrent_activation, use_bias, kernel_initializer, "
             "recurrent_initializer, bias_initializer, unit_forget_bias, kernel_regularizer, "
             "recurrent_regularizer, bias_regularizer, dropout, recurrent_dropout, "
             "return_sequences, return_state, go_backwards, zero_output_for_mask, type, name, inputs, trainable");
    lt_fails("{type: gru, units: 2}", 3, d3, "gru",
             "layer.yaml:1:1: layer 'gru' (GRU): expects an input of shape (timesteps, "
             "features), got (None, 4, 3, 2)");
}
END_TEST

/* ---- states: return_state and initial_state ------------------------------------------ */

static void expect_close(const char *what, const float *got, const double *want, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5, "%s[%lld]: %.8g, Keras %.8g", what,
                      (long long)i, got[i], want[i]);
}

/* A layer returning its sequence and final states on a padded batch, against the
 * reference: outputs 1 (and 2) are the final h (and c), the state carried past the
 * padding. Started from given states (model inputs h and c), the steps ignore the mask, as
 * Keras 3's do (it passes no mask to a layer called with initial_state). */
static void check_states(const char *layer, int cell, bool backwards, bool given)
{
    int64_t n = 3, T = 4, F = 3, u = 2;
    bool lstm = cell == REF_LSTM;
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "model:\n  inputs: {x: {shape: [%lld, %lld]}, h: {shape: [%lld]}%s}\n"
             "  layers:\n"
             "    - {name: m, type: masking, inputs: x}\n"
             "    - {name: r, %s, units: %lld, return_sequences: true, return_state: true,"
             " go_backwards: %s, inputs: [m%s%s]}\n"
             "  outputs: [r, r:1%s]\n",
             (long long)T, (long long)F, (long long)u, lstm ? ", c: {shape: [2]}" : "",
             layer, (long long)u, backwards ? "true" : "false", given ? ", h" : "",
             given && lstm ? ", c" : "", lstm ? ", r:2" : "");
    ct_error err = {0};
    ct_node *root = ct_config_parse(yaml, strlen(yaml), "states.yaml", &err);
    ck_assert_msg(root != NULL, "%s", err.msg);
    ct_model *m = ct_model_build(ct_map_get(root, "model"), ct_backend_cpu(), &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    ct_model_init_params(m, 7);
    ck_assert_int_eq(ct_model_plan(m, n, &err), 0);
    ck_assert_int_eq(m->noutputs, lstm ? 3 : 2);
    float *x = m->inputs[0].data;
    tu_fill(x, n * T * F, 12, -1.0f, 1.0f);
    for (int64_t i = 1; i < m->ninputs; i++)
        tu_fill(m->inputs[i].data, n * u, 30 + (unsigned)i, -1.0f, 1.0f);
    float mask[12] = {1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 0}; /* sample 1: inner padding */
    for (int64_t s = 0; s < n; s++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t f = 0; f < F && mask[s * T + t] == 0.0f; f++)
                x[(s * T + t) * F + f] = 0.0f;
    const ct_layer *l = &m->layers[1];
    double seq[24], hT[6], cT[6];
    ref r = {.cell = cell, .n = n, .T = T, .F = F, .u = u, .x = x, .k = l->params[0].value,
             .rk = l->params[1].value, .b = l->params[2].value, .backwards = backwards,
             .sequences = true, .mask = given ? NULL : mask,
             .h0 = given ? m->inputs[1].data : NULL,
             .c0 = given && lstm ? m->inputs[2].data : NULL, .hT = hT, .cT = cT};
    ref_run(&r, seq);
    ct_model_forward(m, &infer_pass, n);
    expect_close(layer, ct_model_output(m, 0)->data, seq, n * T * u);
    expect_close("final h", ct_model_output(m, 1)->data, hT, n * u);
    if (lstm)
        expect_close("final c", ct_model_output(m, 2)->data, cT, n * u);
    ct_model_free(m);
    ct_node_free(root);
}

START_TEST(test_states_keras)
{
    for (int b = 0; b < 4; b++) {
        check_states("type: simple_rnn", REF_SIMPLE, b & 1, b & 2);
        check_states("type: lstm", REF_LSTM, b & 1, b & 2);
        check_states("type: gru", REF_GRU_AFTER, b & 1, b & 2);
        check_states("type: gru, reset_after: false", REF_GRU_BEFORE, b & 1, b & 2);
    }
}
END_TEST

static Suite *recurrent_suite(void)
{
    Suite *s = suite_create("recurrent");
    TCase *tc = tcase_create("recurrent");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_simple_rnn_keras);
    tcase_add_test(tc, test_lstm_keras);
    tcase_add_test(tc, test_gru_keras);
    tcase_add_test(tc, test_masked_keras);
    tcase_add_test(tc, test_mask_of_ones_and_padded_inputs);
    tcase_add_test(tc, test_masked_gradients);
    tcase_add_test(tc, test_simple_rnn_gradients);
    tcase_add_test(tc, test_lstm_gradients);
    tcase_add_test(tc, test_gru_gradients);
    tcase_add_test(tc, test_dropout_gradients);
    tcase_add_test(tc, test_param_shapes);
    tcase_add_test(tc, test_unit_forget_bias);
    tcase_add_test(tc, test_dropout_determinism);
    tcase_add_test(tc, test_dropout_mask_per_sequence);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_states_keras);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(recurrent_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
