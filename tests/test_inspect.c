/* test_inspect.c - the outputs of named layers (predict --outputs) against the same model
 * cut at that layer and against a hand computation, the inference plan keeping them
 * alive, their errors, and the PNG of `show`. */
#include <cairo.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>

#include "experiment.h"
#include "feature_maps.h"
#include "inspect.h"
#include "model.h"
#include "weights.h"
#include "testutil.h"

/* In the sanitizer build, LeakSanitizer calls this for its suppressions: fontconfig and
 * glib (under cairo's text in the show picture) keep caches for the process's life,
 * which is not memory ctrain could free. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfontconfig.so\nleak:libglib-2.0.so\nleak:libpango-1.0.so\n"
           "leak:libpangoft2-1.0.so\n";
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* A float32 dataset `name` of rows x dims in a new file path, values in [-1, 1). */
static void write_x(const char *path, const char *name, int rows, int ndim,
                   const int64_t *dims)
{
    hsize_t d[8] = {(hsize_t)rows};
    long n = rows;
    for (int i = 0; i < ndim; i++) {
        d[1 + i] = (hsize_t)dims[i];
        n *= (long)dims[i];
    }
    float *v = malloc((size_t)n * sizeof *v);
    tu_fill(v, n, 7, -1.0f, 1.0f);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hid_t sp = H5Screate_simple(1 + ndim, d, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    free(v);
}

/* Dataset `name` of path as floats (the caller frees), its shape into dims / *rank. */
static float *read_h5(const char *path, const char *name, int *rank, hsize_t *dims)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_msg(f >= 0, "cannot open %s", path);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert_msg(ds >= 0, "%s has no dataset %s", path, name);
    hid_t sp = H5Dget_space(ds);
    *rank = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    ck_assert_int_ge(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    return v;
}

static ct_experiment *load_text(const char *dir, const char *file, const char *yaml)
{
    const char *path = tu_write(dir, file, yaml);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(path, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    return ex;
}

/* A path in the test's folder: `char NAME[4200]` holding dir/file. */
#define PATH(name, file)                                                                  \
    char name[4200];                                                                      \
    snprintf(name, sizeof name, "%s/%s", dir, file)

/* Values a and b (n each) agree within 1e-6, relative to their size. */
static void assert_same(const float *a, const float *b, long n, const char *what)
{
    for (long i = 0; i < n; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= 1e-6f * fmaxf(1.0f, fabsf(b[i])),
                      "%s[%ld]: %.9g against %.9g", what, i, (double)a[i], (double)b[i]);
}

/* The model of `yaml` (with `outputs` appended) predicting on in.h5: the predictions of
 * the model cut at that layer, read back (rows x cols). */
static float *cut_predictions(const char *dir, const char *yaml, const char *output,
                              const char *weights, long *n)
{
    char text[4096];
    snprintf(text, sizeof text, "%s  outputs: [%s]\n", yaml, output);
    ct_experiment *cut = load_text(dir, "cut.yaml", text);
    ct_error err = {0};
    ck_assert_msg(ct_experiment_load_weights(cut, weights, &err) == 0, "%s", err.msg);
    PATH(out, "cut.h5");
    PATH(in, "in.h5");
    ck_assert_msg(ct_experiment_predict(cut, in, "x", out, &err) == 0, "%s",
                  err.msg);
    ct_experiment_free(cut);
    int rank;
    hsize_t dims[8];
    float *v = read_h5(out, "predictions", &rank, dims);
    ck_assert_int_eq(rank, 2);
    *n = (long)(dims[0] * dims[1]);
    return v;
}

/* A branch (b and c from a) joined by an add, a batch normalization whose ReLU the model
 * folds into it, and a softmax output. */
static const char *branchy =
    "compile: {optimizer: sgd, loss: categorical_crossentropy}\n"
    "fit: {batch_size: 16}\n"
    "model:\n  inputs: {x: {shape: [6]}}\n  layers:\n"
    "    - {name: a, type: dense, units: 8, activation: relu, inputs: x}\n"
    "    - {name: b, type: dense, units: 8, activation: tanh, inputs: a}\n"
    "    - {name: c, type: dense, units: 8, inputs: a}\n"
    "    - {name: s, type: add, inputs: [b, c]}\n"
    "    - {name: bn, type: batch_normalization, inputs: s}\n"
    "    - {name: r, type: relu, inputs: bn}\n"
    "    - {name: out, type: dense, units: 3, activation: softmax, inputs: r}\n";

static const char *cnn =
    "compile: {optimizer: sgd, loss: sparse_categorical_crossentropy}\n"
    "fit: {batch_size: 8}\n"
    "data:\n  test: {path: in.h5, x: x}\n"
    "model:\n  input_shape: [8, 8, 2]\n  layers:\n"
    "    - {type: conv2d, filters: 4, kernel_size: 3, activation: relu}\n"
    "    - {type: conv2d, filters: 5, kernel_size: 3}\n"
    "    - {type: max_pooling2d, pool_size: 2}\n"
    "    - {type: flatten}\n"
    "    - {type: dense, units: 3, activation: softmax}\n";

#define ROWS 37 /* not a multiple of the batch sizes: the last batch is short */

/* A model with random weights saved to w.h5 and inputs in in.h5 (x: rows x dims). */
static ct_experiment *setup(const char *dir, const char *yaml, int ndim, const int64_t *dims)
{
    PATH(in, "in.h5");
    PATH(w, "w.h5");
    write_x(in, "x", ROWS, ndim, dims);
    ct_experiment *ex = load_text(dir, "model.yaml", yaml);
    ct_error err = {0};
    ck_assert_int_eq(ct_model_plan_inference(ex->model, 4, &err), 0); /* fills parameters */
    /* Batch normalization's moving statistics away from 0 and 1, so it changes values. */
    for (int i = 0; i < ex->model->nlayers; i++) {
        ct_layer *l = &ex->model->layers[i];
        for (int j = 0; j < l->nparams; j++)
            if (strstr(l->params[j].name, "moving_"))
                tu_fill(l->params[j].value, (long)ct_shape_size(&l->params[j].shape), 3 + j,
                        0.2f, 0.9f);
    }
    ck_assert_msg(ct_weights_save(ex->model, w, NULL, NULL, &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(ct_experiment_load_weights(ex, w, &err) == 0, "%s", err.msg);
    return ex;
}

/* The planned buffer of tensor t is written by a layer after t's: t is overwritten. */
static bool shares_buffer(const ct_model *m, ct_source_id t)
{
    for (int u = 0; u < m->ntensors; u++)
        if (ct_tensor_layer(m, u) > ct_tensor_layer(m, t) && m->out[u].data == m->out[t].data &&
            !ct_layer_is_view(&m->layers[ct_tensor_layer(m, u)]))
            return true;
    return false;
}

/* ---- the inference plan ----------------------------------------------------------------- */

/* Without being asked, a's buffer is reused once b and c have read it, and the batch
 * normalization applies the ReLU folded into it; keeping a and bn gives a its own buffer
 * and unfolds the ReLU, and the next plain plan folds it back. */
START_TEST(test_plan_keeps)
{
    char *dir = tu_tmpdir();
    ct_experiment *ex = load_text(dir, "model.yaml", branchy);
    ct_model *m = ex->model;
    ct_error err = {0};
    ct_source_id a, bn, r;
    ck_assert_int_eq(ct_inspect_find(m, "a", &a, &err), 0);
    ck_assert_int_eq(ct_inspect_find(m, "bn", &bn, &err), 0);
    ck_assert_int_eq(ct_inspect_find(m, "r", &r, &err), 0);
    ck_assert_int_eq(ct_model_plan_inference(m, 16, &err), 0);
    ck_assert(shares_buffer(m, a));
    ck_assert(m->layers[bn].fused_relu && m->layers[r].fused_away);
    ct_source_id keep[2] = {a, bn};
    ck_assert_int_eq(ct_model_plan_inference_keeping(m, 16, 2, keep, &err), 0);
    ck_assert(!shares_buffer(m, a));
    ck_assert(!shares_buffer(m, bn)); /* r, unfolded, writes a buffer of its own */
    ck_assert(!m->layers[bn].fused_relu && !m->layers[r].fused_away);
    ck_assert_int_eq(ct_model_plan_inference(m, 16, &err), 0);
    ck_assert(shares_buffer(m, a));
    ck_assert(m->layers[bn].fused_relu && m->layers[r].fused_away);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* ---- predict --outputs ------------------------------------------------------------------ */

/* Each named output equals the prediction of the model cut at that layer (a reused
 * buffer, the add, the batch normalization before its folded ReLU, the ReLU), a is
 * relu(x W + b) by hand, and the final predictions are those of a plain predict, before
 * and after. */
START_TEST(test_branch_outputs)
{
    char *dir = tu_tmpdir();
    int64_t dims[1] = {6};
    ct_experiment *ex = setup(dir, branchy, 1, dims);
    ct_error err = {0};
    PATH(in, "in.h5");
    PATH(w, "w.h5");
    PATH(plain, "plain.h5");
    PATH(after, "after.h5");
    PATH(out, "layers.h5");
    ck_assert_msg(ct_experiment_predict(ex, in, "x", plain, &err) == 0, "%s", err.msg);
    const char *names[] = {"a", "s", "bn", "r", "out", "x"};
    ck_assert_msg(ct_experiment_predict_layers(ex, in, "x", 6, names, out, &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(ct_experiment_predict(ex, in, "x", after, &err) == 0, "%s", err.msg);
    int rank;
    hsize_t d[8];
    for (int k = 0; k < 4; k++) {
        long n;
        float *want = cut_predictions(dir, branchy, names[k], w, &n);
        float *got = read_h5(out, names[k], &rank, d);
        ck_assert_int_eq(rank, 2);
        ck_assert_int_eq(d[0], ROWS);
        ck_assert_int_eq(d[1], 8);
        ck_assert_int_eq(n, ROWS * 8);
        assert_same(got, want, n, names[k]);
        free(want);
        free(got);
    }
    /* r is bn through a ReLU: some of bn is negative, none of r */
    float *bn = read_h5(out, "bn", &rank, d), *r = read_h5(out, "r", &rank, d);
    int negative = 0;
    for (int i = 0; i < ROWS * 8; i++) {
        negative += bn[i] < 0;
        ck_assert_float_eq(r[i], fmaxf(bn[i], 0.0f));
    }
    ck_assert_int_gt(negative, 0);
    free(bn);
    free(r);
    /* a by hand, from the file's inputs and the layer's weights */
    float *x = read_h5(in, "x", &rank, d), *a = read_h5(out, "a", &rank, d);
    float *xin = read_h5(out, "x", &rank, d);
    ck_assert_int_eq(d[1], 6);
    assert_same(xin, x, ROWS * 6, "x");
    const ct_layer *la = &ex->model->layers[0];
    ck_assert_str_eq(la->name, "a");
    const float *kw = la->params[0].value, *kb = la->params[1].value;
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < 8; j++) {
            double z = kb[j];
            for (int k = 0; k < 6; k++)
                z += (double)x[i * 6 + k] * kw[k * 8 + j];
            ck_assert_msg(fabs(a[i * 8 + j] - fmax(z, 0)) < 1e-5, "a[%d][%d]: %g, by hand %g",
                          i, j, (double)a[i * 8 + j], fmax(z, 0));
        }
    free(x);
    free(a);
    free(xin);
    /* the final output, and plain predictions before and after: the same bits */
    float *p0 = read_h5(plain, "predictions", &rank, d);
    float *p1 = read_h5(after, "predictions", &rank, d);
    float *o = read_h5(out, "out", &rank, d);
    ck_assert_int_eq(memcmp(p0, p1, ROWS * 3 * sizeof *p0), 0);
    ck_assert_int_eq(memcmp(p0, o, ROWS * 3 * sizeof *p0), 0);
    free(p0);
    free(p1);
    free(o);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* A CNN: the first convolution (whose buffer the pooling reuses) as (N, 6, 6, 4), the
 * flatten view, each as the cut model gives them; CSV for one-axis outputs. */
START_TEST(test_cnn_outputs)
{
    char *dir = tu_tmpdir();
    int64_t dims[3] = {8, 8, 2};
    ct_experiment *ex = setup(dir, cnn, 3, dims);
    ct_error err = {0};
    PATH(in, "in.h5");
    PATH(w, "w.h5");
    PATH(out, "layers.h5");
    const char *names[] = {"conv2d", "flatten", "conv2d_1"};
    ck_assert_msg(ct_experiment_predict_layers(ex, in, "x", 3, names, out, &err) == 0, "%s",
                  err.msg);
    static const int shapes[3][4] = {{4, 6, 6, 4}, {2, 20}, {4, 4, 4, 5}};
    for (int k = 0; k < 3; k++) {
        long n;
        float *want = cut_predictions(dir, cnn, names[k], w, &n);
        int rank;
        hsize_t d[8];
        float *got = read_h5(out, names[k], &rank, d);
        ck_assert_int_eq(rank, shapes[k][0]);
        ck_assert_int_eq(d[0], ROWS);
        long size = ROWS;
        for (int a = 1; a < rank; a++) {
            ck_assert_int_eq(d[a], shapes[k][a]);
            size *= (long)d[a];
        }
        ck_assert_int_eq(size, n);
        assert_same(got, want, n, names[k]);
        free(want);
        free(got);
    }
    /* CSV: flatten's 20 and dense's 3 values side by side, one line per sample */
    PATH(csv, "layers.csv");
    const char *flat[] = {"flatten", "dense"};
    ck_assert_msg(ct_experiment_predict_layers(ex, in, "x", 2, flat, csv, &err) == 0, "%s",
                  err.msg);
    FILE *f = fopen(csv, "r");
    ck_assert_ptr_nonnull(f);
    char line[8192];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        int commas = 0;
        for (char *c = line; *c; c++)
            commas += *c == ',';
        ck_assert_int_eq(commas, 22);
        lines++;
    }
    fclose(f);
    ck_assert_int_eq(lines, ROWS);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* A recurrent layer's states: "lstm:1" is h, the same as the last output without
 * return_sequences; "lstm:2" is c; "lstm:3" does not exist. */
START_TEST(test_state_outputs)
{
    const char *yaml =
        "compile: {optimizer: sgd, loss: mse}\n"
        "model:\n  inputs: {x: {shape: [5, 3]}}\n  layers:\n"
        "    - {name: lstm, type: lstm, units: 4, return_state: true, inputs: x}\n"
        "    - {name: out, type: dense, units: 2, inputs: lstm}\n";
    char *dir = tu_tmpdir();
    int64_t dims[2] = {5, 3};
    ct_experiment *ex = setup(dir, yaml, 2, dims);
    ct_error err = {0};
    PATH(in, "in.h5");
    PATH(out, "states.h5");
    const char *names[] = {"lstm", "lstm:1", "lstm:2"};
    ck_assert_msg(ct_experiment_predict_layers(ex, in, "x", 3, names, out, &err) == 0, "%s",
                  err.msg);
    int rank;
    hsize_t d[8];
    float *y = read_h5(out, "lstm", &rank, d), *h = read_h5(out, "lstm:1", &rank, d);
    float *c = read_h5(out, "lstm:2", &rank, d);
    ck_assert_int_eq(rank, 2);
    ck_assert_int_eq(d[1], 4);
    ck_assert_int_eq(memcmp(y, h, ROWS * 4 * sizeof *y), 0);
    ck_assert_int_ne(memcmp(y, c, ROWS * 4 * sizeof *y), 0);
    free(y);
    free(h);
    free(c);
    const char *bad[] = {"lstm:3"};
    ck_assert_int_eq(ct_experiment_predict_layers(ex, in, "x", 1, bad, out, &err), -1);
    ck_assert_msg(strstr(err.msg, "has outputs 0 to 2") != NULL, "%s", err.msg);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

static void expect_error(ct_experiment *ex, const char *in, int n, const char *const *names,
                         const char *out, const char *want)
{
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_predict_layers(ex, in, "x", n, names, out, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_USAGE);
    ck_assert_msg(strstr(err.msg, want) != NULL, "expected '%s' in '%s'", want, err.msg);
    ck_assert_int_ne(access(out, F_OK), 0); /* nothing written */
}

START_TEST(test_output_errors)
{
    char *dir = tu_tmpdir();
    int64_t dims[3] = {8, 8, 2};
    ct_experiment *ex = setup(dir, cnn, 3, dims);
    PATH(in, "in.h5");
    PATH(h5, "bad.h5");
    PATH(csv, "bad.csv");
    const char *nope[] = {"conv2d", "nope"};
    expect_error(ex, in, 2, nope, h5, "the model has no layer 'nope'");
    expect_error(ex, in, 2, nope, h5, "layers: conv2d, conv2d_1, max_pooling2d, flatten, dense");
    const char *conv[] = {"dense", "conv2d"};
    expect_error(ex, in, 2, conv, csv, "'conv2d' gives (6, 6, 4) per sample; write .h5");
    const char *twice[] = {"dense", "dense"};
    expect_error(ex, in, 2, twice, h5, "'dense' is asked for twice");
    const char *one[] = {"dense:1"};
    expect_error(ex, in, 1, one, h5, "layer 'dense' (Dense) has one output");
    const char *dense[] = {"dense"};
    PATH(txt, "bad.txt");
    expect_error(ex, in, 1, dense, txt, "written as .h5, .hdf5 or .csv");
    /* an input of another shape: the data check's error, nothing written */
    int64_t other[3] = {8, 7, 2};
    PATH(other_h5, "other.h5");
    write_x(other_h5, "x", 5, 3, other);
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_predict_layers(ex, other_h5, "x", 1, dense,
                                                  h5, &err), -1);
    ck_assert_int_ne(access(h5, F_OK), 0);
    ct_experiment_free(ex);
    /* a layer that reaches no output is never computed */
    const char *dead =
        "compile: {optimizer: sgd, loss: mse}\n"
        "model:\n  inputs: {x: {shape: [6]}}\n  layers:\n"
        "    - {name: h, type: dense, units: 4, inputs: x}\n"
        "    - {name: side, type: dense, units: 3, inputs: h}\n"
        "    - {name: out, type: dense, units: 2, inputs: h}\n"
        "  outputs: out\n";
    int64_t six[1] = {6};
    ex = setup(dir, dead, 1, six);
    const char *side[] = {"side"};
    expect_error(ex, in, 1, side, h5, "layer 'side' reaches no output of the model");
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* ---- show ------------------------------------------------------------------------------- */

/* The PNG at path: its signature, its size (into w, h) and how many distinct colours. */
static int png_colours(const char *path, int *w, int *h)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "no %s", path);
    unsigned char sig[8];
    ck_assert_int_eq(fread(sig, 1, 8, f), 8);
    fclose(f);
    ck_assert_int_eq(memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0);
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    ck_assert_int_eq(cairo_surface_status(s), CAIRO_STATUS_SUCCESS);
    *w = cairo_image_surface_get_width(s);
    *h = cairo_image_surface_get_height(s);
    const unsigned char *data = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s), n = 0;
    static uint32_t seen[4096];
    for (int y = 0; y < *h; y++)
        for (int x = 0; x < *w && n < 4096; x++) {
            uint32_t p = ((const uint32_t *)(data + y * stride))[x] & 0xffffff;
            int k = 0;
            while (k < n && seen[k] != p)
                k++;
            if (k == n)
                seen[n++] = p;
        }
    cairo_surface_destroy(s);
    return n;
}

/* A figure without text has the size its tiles make: a 3x3 kernel enlarged to 48 pixels
 * a side (16 per value), four across; 6x6 maps to 78 (13 per value). */
START_TEST(test_figure_size)
{
    float k[3 * 3 * 4], maps[6 * 6 * 4];
    tu_fill(k, 36, 1, -1, 1);
    tu_fill(maps, 144, 2, 0, 1);
    ct_figure f = {.nside = 1, .nbelow = 1};
    f.side[0] = (ct_tile_grid){.v = k, .h = 3, .w = 3, .n = 4, .shown = 4,
                               .colour = CT_TILE_DIVERGING, .target = 48};
    f.below[0] = (ct_tile_grid){.v = maps, .h = 6, .w = 6, .n = 4, .shown = 4,
                                .colour = CT_TILE_GREY, .labels = true, .target = 80};
    char *dir = tu_tmpdir();
    PATH(png, "f.png");
    ct_error err = {0};
    ck_assert_msg(ct_figure_write_png(&f, png, &err) == 0, "%s", err.msg);
    int w, h;
    ck_assert_int_gt(png_colours(png, &w, &h), 20);
    /* margins 16, tiles 6 apart, captions 20 high, labels 13, the title lines 44 */
    ck_assert_int_eq(w, 16 + 4 * 78 + 3 * 6 + 16);
    ck_assert_int_eq(h, 16 + 44 + (20 + 48 + 6) + 8 + (20 + 78 + 6 + 13) + 16);
    free(dir);
}
END_TEST

START_TEST(test_show_png)
{
    char *dir = tu_tmpdir();
    int64_t dims[3] = {8, 8, 2};
    ct_experiment *ex = setup(dir, cnn, 3, dims);
    ct_error err = {0};
    PATH(png, "maps.png");
    PATH(in, "in.h5");
    /* data.test (in.h5's x), row 36: the last */
    ck_assert_msg(ct_experiment_show_layer(ex, "conv2d_1", NULL, NULL, ROWS - 1, png, &err) == 0,
                  "%s", err.msg);
    int w, h;
    ck_assert_int_gt(png_colours(png, &w, &h), 50);
    ck_assert_int_ge(w, 5 * 80); /* five 4x4 maps of 80 pixels side by side */
    ck_assert_int_ge(h, 80 + 48 + 112);
    ck_assert_int_eq(ct_experiment_show_layer(ex, "conv2d", NULL, NULL, ROWS, png, &err), -1);
    ck_assert_msg(strstr(err.msg, "which has 37 rows (samples 0 to 36)"), "%s", err.msg);
    ck_assert_int_eq(ct_experiment_show_layer(ex, "dense", in, "x", 0, png,
                                              &err), -1);
    ck_assert_msg(strstr(err.msg, "layer 'dense' is a Dense layer"), "%s", err.msg);
    ck_assert_int_eq(ct_experiment_show_layer(ex, "input_layer", NULL, NULL, 0, png, &err), -1);
    ck_assert_msg(strstr(err.msg, "not a layer's output"), "%s", err.msg);
    ck_assert_int_eq(ct_experiment_show_layer(ex, "conv3", NULL, NULL, 0, png, &err), -1);
    ck_assert_msg(strstr(err.msg, "no layer 'conv3'"), "%s", err.msg);
    ct_experiment_free(ex);
    /* depthwise and separable convolutions over three channels (an RGB input) */
    const char *dw =
        "compile: {optimizer: sgd, loss: mse}\n"
        "data:\n  test: {path: in.h5, x: x}\n"
        "model:\n  input_shape: [9, 9, 3]\n  layers:\n"
        "    - {type: depthwise_conv2d, kernel_size: 3, depth_multiplier: 2}\n"
        "    - {type: separable_conv2d, filters: 4, kernel_size: 3, activation: relu}\n"
        "    - {type: flatten}\n"
        "    - {type: dense, units: 2}\n";
    int64_t rgb[3] = {9, 9, 3};
    ex = setup(dir, dw, 3, rgb);
    const char *layers[] = {"depthwise_conv2d", "separable_conv2d"};
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(ct_experiment_show_layer(ex, layers[i], NULL, NULL, 1, png, &err) == 0,
                      "%s", err.msg);
        ck_assert_int_gt(png_colours(png, &w, &h), 50);
    }
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("inspect");
    TCase *t = tcase_create("layer outputs");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_plan_keeps);
    tcase_add_test(t, test_branch_outputs);
    tcase_add_test(t, test_cnn_outputs);
    tcase_add_test(t, test_state_outputs);
    tcase_add_test(t, test_output_errors);
    tcase_add_test(t, test_figure_size);
    tcase_add_test(t, test_show_png);
    suite_add_tcase(s, t);
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
