/* test_experiment.c - whole experiments: config errors with their positions, summary,
 * end-to-end training on a synthetic task, determinism, data checks, evaluate, predict,
 * and the loss, metrics and gradient of a masked sequence output. */
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef CT_HAVE_OPENBLAS
#include <cblas.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "data.h"
#include "experiment.h"
#include "graph.h"
#include "model.h"
#include "blobs.h"
#include "testutil.h"

/* --- bad configs: each must fail with this message at this position --------------------- */

static const char *const good_tail =
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n";

typedef struct bad_case {
    const char *yaml;
    const char *expect; /* substring of the message, after "FILE:" */
} bad_case;

#define A10 "aaaaaaaaaa"

static const bad_case bad_cases[] = {
    /* 0 unknown top-level key with a suggestion */
    {"nme: x\nmodel: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s",
     "1:1: unknown key 'nme' in the experiment (did you mean 'name'?)"},
    /* 1 unknown layer key */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense, unts: 2}\n%s",
     "4:21: unknown key 'unts' in layer 'dense' (Dense) (did you mean 'units'?)"},
    /* 2 unknown layer type */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dence, units: 2}\n%s",
     "4:14: unknown layer type 'dence' (did you mean 'dense'?); known types:"},
    /* 3 missing units */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense}\n%s", "4:7: "},
    /* 4 units of the wrong type */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense, units: many}\n%s", "4:28: "},
    /* 5 units out of range */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense, units: 0}\n%s", "4:28: "},
    /* 6 unknown activation */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense, units: 2, activation: rleu}\n%s",
     "4:43: layer 'dense' (Dense): unknown activation 'rleu' (did you mean 'relu'?)"},
    /* 7 missing input_shape */
    {"model:\n  layers:\n    - {type: dense, units: 2}\n%s", "2:3: 'model' needs the key 'input_shape'"},
    /* 8 missing layers */
    {"model: {input_shape: [4]}\n%s", "1:8: model needs the key 'layers'"},
    /* 9 empty layers */
    {"model: {input_shape: [4], layers: []}\n%s", "1:35: model.layers must be a non-empty list"},
    /* 10 unknown loss */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n"
     "compile: {optimizer: adam, loss: sparse_categorical_crossentropi}\n",
     "2:34: unknown loss 'sparse_categorical_crossentropi'"},
    /* 11 unknown optimizer */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n"
     "compile: {optimizer: adma, loss: mse}\n", "2:22: unknown optimizer 'adma' (did you mean 'adam'?)"},
    /* 12 optimizer key that belongs to another optimizer */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n"
     "compile: {optimizer: {type: adam, momentum: 0.9}, loss: mse}\n", "2:35: unknown key 'momentum'"},
    /* 13 negative learning rate */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n"
     "compile: {optimizer: {type: sgd, learning_rate: -1}, loss: mse}\n", "2:49: "},
    /* 14 unknown metric */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n"
     "compile: {loss: mse, metrics: [acuracy]}\n", "2:32: unknown metric 'acuracy'"},
    /* 15 missing loss */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\ncompile: {optimizer: adam}\n",
     "2:10: compile needs the key 'loss'"},
    /* 16 incompatible shapes: both layers and both shapes */
    {"model:\n  input_shape: [28, 28, 1]\n  layers:\n    - {type: flatten}\n"
     "    - {type: reshape, target_shape: [100, 7]}\n%s",
     "5:7: layer 'reshape' (Reshape): cannot reshape (None, 784)"},
    /* 17 fit key of the wrong type */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%sfit: {epochs: ten}\n",
     "3:15: "},
    /* 18 bad bool */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%sfit: {shuffle: maybe}\n",
     "3:16: "},
    /* 19 validation_split out of range */
    {"data: {validation_split: 1.5}\nmodel: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s",
     "1:26: 'validation_split' must be between 0 and 0.99, got 1.5"},
    /* 20 cuda where it cannot run (no CUDA backend built, or no GPU): skipped where it can */
    {"backend: {device: cuda}\nmodel: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s",
     "1:19: device: cuda: "},
    /* 21 duplicate layer names */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense, units: 2, name: a}\n"
     "    - {type: dense, units: 2, name: a}\n%s", "5:37: layer name 'a' is already used by the layer at line 4"},
    /* 22 a layer that is not a map */
    {"model:\n  input_shape: [4]\n  layers:\n    - dense\n%s", "4:7: each entry of model.layers must be a map"},
    /* 23 YAML syntax error */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]\n%s", "2:"},
    /* 24 data source without a path */
    {"data: {train: {x: a, y: b}}\nmodel: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s",
     "1:15: 'train' needs the key 'path'"},
    /* 25 a config cannot ask for code */
    {"model: !!python/object:os.system {input_shape: [4]}\n%s", "1:8: "},
    /* 26 an unknown callback */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%sfit: {callbacks: [{type: erly_stopping}]}\n",
     "3:26: unknown callback 'erly_stopping' (did you mean 'early_stopping'?)"},
    /* 27 dropout rate out of range */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dropout, rate: 1.0}\n%s", "4:29: "},
    /* 28 absurd sizes are refused before allocating */
    {"model: {input_shape: [1000000, 1000000], layers: [{type: flatten}]}\n%s", "1:22: input_shape holds 1000000000000 values per sample"},
    /* 29 a name that would put the run directory elsewhere */
    {"name: ../../etc\nmodel: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s",
     "1:7: name '../../etc' names the run directory"},
    /* 30 a shape whose size overflows 64 bits (2^64 wraps to 0) */
    {"model: {input_shape: [4294967296, 4294967296], layers: [{type: flatten}]}\n%s",
     "1:22: input_shape holds more than 2^63 values per sample"},
    /* 31 a parameter whose size overflows 64 bits */
    {"model: {input_shape: [17179869184], layers: [{type: dense, units: 2147483647}]}\n%s",
     "1:46: layer 'dense' (Dense): its parameters (kernel of shape (17179869184, 2147483647)) "
     "do not fit in 64-bit sizes"},
    /* 33 an output shape that overflows 64 bits */
    {"model: {input_shape: [4294967296, 4, 1], layers: [{type: zero_padding2d, "
     "padding: 2147483647}]}\n%s",
     "1:51: layer 'zero_padding2d' (ZeroPadding2D): its output shape (None, 8589934590, "
     "4294967298, 1) does not fit in 64-bit sizes"},
    /* 32 a convolution with an absurd filter count */
    {"model:\n  input_shape: [28, 28, 1]\n  layers:\n"
     "    - {type: conv2d, filters: 2000000000, kernel_size: 3}\n%s",
     "4:7: layer 'conv2d' (Conv2D): needs 74.5 GiB for its parameters and 4.9 TiB per sample "
     "for its output; refusing to allocate that"},
    /* 34 no model section: the message names the file */
    {"name: x\n%s", " the experiment needs a 'model' section"},
    /* 35, 36, 37 layer names that would name other HDF5 groups, or a path */
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense, units: 2, name: .}\n%s",
     "4:37: layer names must be 1 to 63 characters without '/', and not '.' or '..'"},
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense, units: 2, name: ..}\n%s",
     "4:37: layer names must be 1 to 63 characters without '/', and not '.' or '..'"},
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: dense, units: 2, name: a/b}\n%s",
     "4:37: layer names must be 1 to 63 characters without '/', and not '.' or '..'"},
    /* 38 an experiment name too long for a directory name */
    {"name: " A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 "\n"
     "model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s",
     "1:7: name is 130 characters long; it names the run directory and may have at most 128"},
    /* 39 a model name longer than names are kept */
    {"model: {name: " A10 A10 A10 A10 A10 A10 A10 ", input_shape: [4], layers: [{type: dense, "
     "units: 2}]}\n%s", "1:15: model.name is 70 characters long; at most 63 are allowed"},
    /* 40-43 Keras habits pointed the way: validation data in fit, an input layer, a tuple */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n"
     "fit: {epochs: 1, validation_data: val}\n%s",
     "2:35: fit.validation_data: ctrain reads its data from the experiment's data section; "
     "write data.validation: {path: FILE.h5, x: DATASET, y: DATASET}"},
    {"model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n"
     "fit: {validation_split: 0.2}\n%s",
     "2:25: fit.validation_split: ctrain reads its data from the experiment's data section; "
     "write data.validation_split: 0.2"},
    {"model:\n  input_shape: [4]\n  layers:\n    - {type: InputLayer, shape: [4]}\n"
     "    - {type: dense, units: 2}\n%s",
     "4:14: model inputs are not layers here: declare them with model.input_shape: [...] (one "
     "input) or model.inputs: {NAME: {shape: [...]}}, and list only the layers after them"},
    {"model:\n  input_shape: (4,)\n  layers:\n    - {type: dense, units: 2}\n%s",
     "2:16: input_shape is a list such as [28, 28, 1]: Keras's tuple (4,) is written with "
     "brackets"},
    /* Keras's Accuracy class is another metric than "accuracy": pointed to the right one */
    {"model: {input_shape: [4], layers: [{type: dense, units: 2, activation: softmax}]}\n"
     "compile: {optimizer: ADAM, loss: Sparse_Categorical_Crossentropy, metrics: [Accuracy]}\n",
     "2:77: unknown metric 'Accuracy': Keras's Accuracy class counts outputs exactly equal to "
     "their targets, which ctrain does not offer; for the share of correct classes write "
     "'accuracy'"},
};

START_TEST(test_bad_config)
{
    const bad_case *c = &bad_cases[_i];
    if (_i == 20 && ct_cuda_available())
        return; /* a GPU is here: device: cuda is no error */
    char *dir = tu_tmpdir();
    char text[2048];
    snprintf(text, sizeof text, c->yaml, good_tail);
    const char *path = tu_write(dir, "bad.yaml", text);
    char expect[4700];
    snprintf(expect, sizeof expect, "%s:%s", path, c->expect);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(path, NULL, 0, &err);
    ck_assert_msg(ex == NULL, "case %d loaded", _i);
    ck_assert_msg(strstr(err.msg, expect) != NULL, "case %d: expected '%s' in '%s'", _i, expect, err.msg);
    ck_assert_int_ne(err.code, CT_OK);
    free(dir);
}
END_TEST

/* --- models too large for the memory are refused before anything big is allocated ----- */

/* Caps this (forked) test's address space near what it uses now, so that a model that
 * slipped past the checks would fail to allocate instead of exhausting the machine. */
static void cap_address_space(struct rlimit *old)
{
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &pages), 1);
    fclose(f);
    ck_assert_int_eq(getrlimit(RLIMIT_AS, old), 0);
    struct rlimit cap = *old;
    cap.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGE_SIZE) + ((rlim_t)1 << 30);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &cap), 0);
}

/* The model part of a config, with good_tail after it; expects err.msg exactly
 * (after "PATH:"), and that nothing was loaded. */
static void expect_too_big(const char *yaml, const char *const *set, int nset, const char *want)
{
    char *dir = tu_tmpdir();
    char text[4096], full[8192];
    snprintf(text, sizeof text, "%s%s", yaml, good_tail);
    const char *path = tu_write(dir, "big.yaml", text);
    snprintf(full, sizeof full, "%s:%s", path, want);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(path, set, nset, &err);
    ck_assert_ptr_null(ex);
    ck_assert_int_eq(err.code, CT_ERR_NOMEM);
    ck_assert_str_eq(err.msg, full);
    free(dir);
}

/* ct_model's byte format: binary units, one decimal. */
static void fmt_bytes(double b, char *buf, size_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    for (; b >= 1024 && u < 6; u++)
        b /= 1024;
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

START_TEST(test_absurd_sizes)
{
    struct rlimit old;
    cap_address_space(&old);
    /* A billion units: 5e9 parameters, 4 bytes each, with their gradients (2 x 18.6 GiB),
     * plus output and gradient for one row (2 x 3.7 GiB), checked at build time. */
    expect_too_big("backend: {memory_limit_mb: 1024}\n"
                   "model: {input_shape: [4], layers: [{type: dense, units: 1000000000}]}\n",
                   NULL, 0,
                   "2:36: layer 'dense' (Dense): needs 44.7 GiB: 5,000,000,000 parameters take "
                   "37.3 GiB with their gradients and optimizer state, and its activations for "
                   "batches of 1 row take 7.5 GiB; the model needs 44.7 GiB in all, more than "
                   "backend.memory_limit_mb (1024 MiB)");
    /* Small weights, huge batches: checked once batch_size and adam's two slots are known.
     * Layer: 1,001,000 x 4 x (1 + 1 + 2) B = 15.3 MiB, outputs 8 x 1e5 x 1000 B and the
     * kernel packed for a product of that many rows, 1000 x 1000 x 4 B: 766.8 MiB; the
     * input batch adds 4e8 B, 1,220,016,000 B in all. */
    const char *batch[] = {"fit.batch_size=100000"};
    expect_too_big("backend: {memory_limit_mb: 1024}\n"
                   "model: {input_shape: [1000], layers: [{type: dense, units: 1000}]}\n",
                   batch, 1,
                   "2:39: layer 'dense' (Dense): needs 782.1 MiB: 1,001,000 parameters take "
                   "15.3 MiB with their gradients and optimizer state, and its activations for "
                   "batches of 100000 rows take 766.8 MiB; the model needs 1.1 GiB in all, more "
                   "than backend.memory_limit_mb (1024 MiB)");
    /* Many filters: 26 x 26 x 400000 outputs per row, 2 x 4 B each, already 2.0 GiB. */
    expect_too_big("backend: {memory_limit_mb: 1024}\nmodel:\n  input_shape: [28, 28, 1]\n"
                   "  layers:\n    - {type: conv2d, filters: 400000, kernel_size: 3}\n",
                   NULL, 0,
                   "5:7: layer 'conv2d' (Conv2D): needs 2.1 GiB: 4,000,000 parameters take "
                   "30.5 MiB with their gradients and optimizer state, and its activations for "
                   "batches of 1 row take 2.0 GiB; the model needs 2.1 GiB in all, more than "
                   "backend.memory_limit_mb (1024 MiB)");
    /* Without memory_limit_mb the limit is the physical memory. 15 pairs of dense layers,
     * each pair 144 GiB (9 x 2^30 and 8 x 2^30 + 8 parameters, with gradients, and 2^30
     * outputs): 2160 GiB in all, more than any machine this runs on. */
    char yaml[4096] = "model:\n  input_shape: [8]\n  layers:\n";
    for (int i = 0; i < 15; i++)
        strcat(yaml, "    - {type: dense, units: 1073741824}\n    - {type: dense, units: 8}\n");
    char phys[32], want[1024];
    fmt_bytes((double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE), phys,
              sizeof phys);
    snprintf(want, sizeof want,
             "4:7: layer 'dense' (Dense): needs 80.0 GiB: 9,663,676,416 parameters take 72.0 GiB "
             "with their gradients and optimizer state, and its activations for batches of 1 row "
             "take 8.0 GiB; the model needs 2.1 TiB in all, more than the physical memory (%s; "
             "backend.memory_limit_mb sets another limit)", phys);
    expect_too_big(yaml, NULL, 0, want);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &old), 0);
}
END_TEST

/* The limit is a setting like any other: shown in the resolved config, checked for range. */
START_TEST(test_memory_limit_setting)
{
    char *dir = tu_tmpdir();
    char text[1024];
    snprintf(text, sizeof text, "model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s",
             good_tail);
    const char *path = tu_write(dir, "ok.yaml", text);
    char p[4200];
    snprintf(p, sizeof p, "%s", path);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ck_assert_int_eq(ct_experiment_write_config(ex, f, &err), 0);
    fclose(f);
    char want[128];
    snprintf(want, sizeof want, "memory_limit_mb: %lld\n",
             (long long)((double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE) /
                         (1 << 20)));
    ck_assert_msg(strstr(out, want) != NULL, "'%s' not in:\n%s", want, out);
    free(out);
    ct_experiment_free(ex);
    const char *zero[] = {"backend.memory_limit_mb=0"};
    ck_assert_ptr_null(ct_experiment_load(p, zero, 1, &err));
    ck_assert_msg(strstr(err.msg, "--set:1:25: ") && strstr(err.msg, "memory_limit_mb"), "%s",
                  err.msg);
    free(dir);
}
END_TEST

START_TEST(test_bad_override)
{
    char *dir = tu_tmpdir();
    char text[1024];
    snprintf(text, sizeof text, "model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s", good_tail);
    const char *path = tu_write(dir, "ok.yaml", text);
    ct_error err = {0};
    const char *bad[] = {"model.layers.5.units=3"};
    ck_assert_ptr_null(ct_experiment_load(path, bad, 1, &err));
    ck_assert_msg(strstr(err.msg, "--set model.layers.5.units") != NULL, "%s", err.msg);
    const char *wrong[] = {"fit.epochs=zero"};
    ck_assert_ptr_null(ct_experiment_load(path, wrong, 1, &err));
    ck_assert_msg(strstr(err.msg, "--set:") != NULL && strstr(err.msg, "epochs") != NULL, "%s", err.msg);
    free(dir);
}
END_TEST

START_TEST(test_override_and_defaults)
{
    char *dir = tu_tmpdir();
    char text[1024];
    snprintf(text, sizeof text, "model: {input_shape: [4], layers: [{type: dense, units: 2}]}\n%s", good_tail);
    const char *path = tu_write(dir, "ok.yaml", text);
    ct_error err = {0};
    const char *set[] = {"fit.epochs=7", "model.layers.0.units=5"};
    ct_experiment *ex = ct_experiment_load(path, set, 2, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ck_assert_int_eq(ex->epochs, 7);
    ck_assert_int_eq(ex->batch_size, 32);              /* Keras's default */
    ck_assert_int_eq(ex->model->layers[0].out_shape.dim[0], 5);
    ck_assert_str_eq(ex->name, "ok");                  /* from the file name */
    ck_assert_int_eq((int)ex->seed, 1);
    ck_assert_double_eq_tol(ex->optimizer->learning_rate, 0.001, 1e-12);
    /* The resolved config holds every default. */
    char out[4096];
    snprintf(out, sizeof out, "%s/resolved.yaml", dir);
    FILE *f = fopen(out, "w");
    ck_assert_int_eq(ct_experiment_write_config(ex, f, &err), 0);
    fclose(f);
    ct_experiment_free(ex);
    ex = ct_experiment_load(out, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "resolved config does not load: %s", err.msg);
    ck_assert_int_eq(ex->epochs, 7);
    f = fopen(out, "r");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    ck_assert_msg(strstr(buf, "batch_size: 32") && strstr(buf, "kernel_initializer: glorot_uniform") &&
                  strstr(buf, "beta_1: 0.9"), "defaults missing from:\n%s", buf);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* Metrics, like losses, act on the last axis: an output (None, 3, 1) with mse gets binary
 * accuracy (one value per position), not categorical accuracy over 3 values; (None, 2, 3)
 * gets categorical accuracy over 3 classes per position. */
START_TEST(test_metric_on_last_axis)
{
    char *dir = tu_tmpdir();
    const char *path = tu_write(dir, "axis.yaml",
                                "model:\n  input_shape: [3]\n  layers:\n"
                                "    - {type: dense, units: 3, activation: sigmoid}\n"
                                "    - {type: reshape, target_shape: [3, 1]}\n"
                                "compile: {loss: mse, metrics: [accuracy]}\n");
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(path, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ck_assert_str_eq(ex->metrics[0].kind->name, "binary_accuracy");
    ct_experiment_free(ex);
    path = tu_write(dir, "axis2.yaml",
                    "model:\n  input_shape: [6]\n  layers:\n"
                    "    - {type: dense, units: 6}\n"
                    "    - {type: reshape, target_shape: [2, 3]}\n"
                    "compile: {loss: mse, metrics: [accuracy]}\n");
    ex = ct_experiment_load(path, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ck_assert_str_eq(ex->metrics[0].kind->name, "categorical_accuracy");
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* --- summary --------------------------------------------------------------------------- */

START_TEST(test_summary_mlp)
{
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(tu_src("configs/fashion_mnist_mlp.yaml"), NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ct_experiment_summary(ex, f);
    fclose(f);
    ck_assert_msg(strstr(buf, "Total params: 235,146 (918.54 KB)"), "%s", buf);
    ck_assert_msg(strstr(buf, "dense (Dense)") && strstr(buf, "dense_1 (Dense)") &&
                  strstr(buf, "(None, 784)") && strstr(buf, "200,960"), "%s", buf);
    ck_assert_msg(strstr(buf, "Non-trainable params: 0 (0.00 B)"), "%s", buf);
    free(buf);
    ct_experiment_free(ex);
}
END_TEST

/* from_logits on an output ending in softmax or sigmoid is warned about, where the loss is
 * given (a per-output loss: at that output's entry); on a linear output it is not. */
START_TEST(test_from_logits_warning)
{
    static const char *const cases[][2] = {
        {"model:\n  input_shape: [4]\n  layers:\n"
         "    - {type: dense, units: 3, activation: softmax}\n"
         "compile: {loss: {type: categorical_crossentropy, from_logits: true}}\n",
         "logits.yaml:5:17: loss 'categorical_crossentropy' has from_logits: true, but output "
         "'dense' ends in a softmax (layer 'dense'), so it gives probabilities, not logits; "
         "drop from_logits or the activation\n"},
        {"model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
         "    - {name: p, type: dense, units: 1, activation: sigmoid, inputs: x}\n"
         "    - {name: q, type: dense, units: 2, inputs: x}\n"
         "  outputs: [p, q]\n"
         "compile:\n  loss:\n"
         "    p: {type: binary_crossentropy, from_logits: true}\n"
         "    q: {type: binary_crossentropy, from_logits: true}\n",
         "logits.yaml:9:8: loss 'binary_crossentropy' has from_logits: true, but output 'p' "
         "ends in a sigmoid (layer 'p'), so it gives probabilities, not logits; drop "
         "from_logits or the activation\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = tu_tmpdir();
        const char *path = tu_write(dir, "logits.yaml", cases[i][0]);
        ct_error err = {0};
        ct_experiment *ex = ct_experiment_load(path, NULL, 0, &err);
        ck_assert_msg(ex != NULL, "%s", err.msg);
        char want[1024];
        snprintf(want, sizeof want, "%s/%s", dir, cases[i][1]);
        ck_assert_str_eq(ct_experiment_warnings(ex), want);
        ct_experiment_free(ex);
        free(dir);
    }
}
END_TEST

/* --- synthetic data ------------------------------------------------------------------- */

static const char *blob_config =
    "name: blobs\nseed: %d\n"
    "data:\n  train: {path: train.h5}\n  test: {path: test.h5}\n  validation_split: 0.2\n"
    "model:\n  input_shape: [8]\n  layers:\n"
    "    - {type: dense, units: 16, activation: tanh}\n"
    "    - {type: dropout, rate: 0.1}\n"
    "    - {type: dense, units: 4, activation: softmax}\n"
    "compile: {optimizer: {type: sgd, learning_rate: 0.1, momentum: 0.9}, "
    "loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "fit: {epochs: 5, batch_size: 32, verbose: 0}\n";

static char *blob_dir(int seed)
{
    char *dir = tu_tmpdir();
    char p[4096], text[2048];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    write_blobs(p, 1000, 1, false, 0);
    snprintf(p, sizeof p, "%s/test.h5", dir);
    write_blobs(p, 400, 2, false, 0);
    snprintf(text, sizeof text, blob_config, seed);
    tu_write(dir, "blobs.yaml", text);
    return dir;
}

static ct_experiment *load_in(const char *dir, const char *file)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    return ex;
}

static void fit_into(ct_experiment *ex, const char *run)
{
    ct_error err = {0};
    FILE *devnull = fopen("/dev/null", "w");
    ct_fit_options o = {.run_dir = run, .verbose = 0, .out = devnull};
    int rc = ct_experiment_fit(ex, &o, &err);
    fclose(devnull);
    ck_assert_msg(rc == 0, "fit failed: %s", err.msg);
}

START_TEST(test_fit_synthetic)
{
    char *dir = blob_dir(1);
    ct_experiment *ex = load_in(dir, "blobs.yaml");
    char run[4096];
    snprintf(run, sizeof run, "%s/run", dir);
    fit_into(ex, run);
    const char *names[8];
    double values[8];
    ct_error err = {0};
    int n = ct_experiment_evaluate(ex, NULL, NULL, NULL, names, values, 8, &err);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(names[0], "loss");
    ck_assert_str_eq(names[1], "accuracy");
    ck_assert_msg(values[1] >= 0.95, "test accuracy %g < 0.95", values[1]);
    ck_assert_msg(values[0] < 0.3, "test loss %g", values[0]);
    /* Run directory contents. */
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/weights.h5", run);
    ck_assert_int_eq(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/config.yaml", run);
    ck_assert_int_eq(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/history.csv", run);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "epoch,accuracy,loss,val_accuracy,val_loss,learning_rate\n");
    int rows = 0;
    while (fgets(line, sizeof line, f))
        rows++;
    fclose(f);
    ck_assert_int_eq(rows, 5);
    /* Weights reload into a fresh experiment and give the same evaluation, also one whose
     * parameters were left unfilled (planning must not fill them over the loaded ones). */
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    ct_experiment *again = ct_experiment_load_lazily(p, NULL, 0, &err);
    ck_assert_msg(again != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_experiment_load_weights(again, (snprintf(p, sizeof p, "%s/weights.h5", run), p), &err), 0);
    double v2[8];
    ck_assert_int_eq(ct_experiment_evaluate(again, NULL, NULL, NULL, names, v2, 8, &err), 2);
    ck_assert_double_eq(values[0], v2[0]);
    ck_assert_double_eq(values[1], v2[1]);
    /* A finished run is not overwritten silently. */
    ct_fit_options o = {.run_dir = run, .verbose = 0};
    ck_assert_int_eq(ct_experiment_fit(again, &o, &err), -1);
    ck_assert_msg(strstr(err.msg, "already holds a finished run"), "%s", err.msg);
    ct_experiment_free(again);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* ct_experiment_copy (serve's reloads): the copy has the original's overrides and resolved
 * data paths, leaves its parameters to the weights loaded next, and with the original's
 * weights predicts exactly as the original does. */
START_TEST(test_experiment_copy)
{
    char *dir = blob_dir(1);
    char p[4200], run[4096];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    const char *set[] = {"model.layers.0.units=12", "fit.batch_size=20"};
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, set, 2, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ct_experiment *copy = ct_experiment_copy(ex, &err);
    ck_assert_msg(copy != NULL, "%s", err.msg);
    ck_assert_int_eq(copy->batch_size, 20);
    ck_assert_int_eq(copy->model->layers[0].out_shape.dim[0], 12);
    ck_assert_int_eq(copy->model->size, ex->model->size);
    ck_assert_str_eq(copy->train.path, ex->train.path);
    ck_assert(copy->model->params_pending);
    snprintf(run, sizeof run, "%s/run", dir);
    fit_into(ex, run);
    snprintf(p, sizeof p, "%s/weights.h5", run);
    ck_assert_msg(ct_experiment_load_weights(copy, p, &err) == 0, "%s", err.msg);
    float x[5 * 8], want[5 * 4], got[5 * 4];
    for (int i = 0; i < 5 * 8; i++)
        x[i] = sinf((float)i);
    const float *in[] = {x};
    ck_assert_int_eq(ct_experiment_predict_arrays(ex, 5, in, (float *[]){want}, &err), 0);
    ck_assert_int_eq(ct_experiment_predict_arrays(copy, 5, in, (float *[]){got}, &err), 0);
    ck_assert_mem_eq(got, want, sizeof want);
    ct_experiment_free(copy);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* The blobs with one-hot targets ("yh": n x 4 floats) beside the class indices. */
static void add_one_hot(const char *path, int n)
{
    float *y = calloc((size_t)n * 4, sizeof *y);
    for (int i = 0; i < n; i++)
        y[i * 4 + i % 4] = 1.0f; /* write_blobs's labels */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t d[2] = {(hsize_t)n, 4};
    hid_t sp = H5Screate_simple(2, d, NULL);
    hid_t ds = H5Dcreate2(f, "yh", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    free(y);
}

/* The metrics with an epoch's state through fit: history.csv has their names (Keras's
 * name argument where given) and val_ for validation, and the learnt blobs score well. */
START_TEST(test_fit_state_metrics)
{
    char *dir = tu_tmpdir(), p[4200], run[4096];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    write_blobs(p, 600, 1, false, 0);
    add_one_hot(p, 600);
    tu_write(dir, "m.yaml",
             "name: m\nseed: 3\n"
             "data:\n  train: {path: train.h5, y: yh}\n  validation_split: 0.25\n"
             "model:\n  input_shape: [8]\n  layers:\n"
             "    - {type: dense, units: 4, activation: softmax}\n"
             "compile:\n  optimizer: {type: sgd, learning_rate: 0.2}\n"
             "  loss: {type: categorical_crossentropy, label_smoothing: 0.05}\n"
             "  metrics: [precision, {type: recall, name: rec, class_id: 1}, auc,\n"
             "            {type: f1_score, average: macro, name: f1},\n"
             "            {type: mean_iou, num_classes: 4, sparse_y_true: false, "
             "sparse_y_pred: false}, r2_score, cosine_similarity]\n"
             "fit: {epochs: 3, batch_size: 32, verbose: 0}\n");
    ct_experiment *ex = load_in(dir, "m.yaml");
    snprintf(run, sizeof run, "%s/run", dir);
    fit_into(ex, run);
    snprintf(p, sizeof p, "%s/history.csv", run);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "epoch,precision,rec,auc,f1,mean_iou,r2_score,cosine_similarity,"
                           "loss,val_precision,val_rec,val_auc,val_f1,val_mean_iou,"
                           "val_r2_score,val_cosine_similarity,val_loss,learning_rate\n");
    char *last = NULL;
    while (fgets(line, sizeof line, f))
        last = line;
    fclose(f);
    ck_assert_ptr_nonnull(last);
    /* the last epoch: every score of the separable blobs near its best */
    double v[18];
    char *s = last;
    for (int i = 0; i < 18; i++) {
        v[i] = strtod(s, &s);
        s += *s == ',';
    }
    for (int i = 1; i <= 3; i++)
        ck_assert_msg(v[i] > 0.9 && v[i] <= 1.0, "column %d: %g", i, v[i]);
    ck_assert_msg(v[4] > 0.9 && v[5] > 0.8 && v[7] > 0.9, "f1 %g iou %g cos %g", v[4], v[5],
                  v[7]);
    for (int i = 9; i <= 11; i++)
        ck_assert_msg(v[i] > 0.9 && v[i] <= 1.0, "column %d: %g", i, v[i]);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

static void copy_params(ct_experiment *ex, float **out, int64_t *n)
{
    *n = ex->model->size;
    *out = malloc(sizeof(float) * (size_t)*n);
    memcpy(*out, ex->model->values, sizeof(float) * (size_t)*n);
}

/* A crossentropy on probabilities takes targets in [0, 1]: class labels 0..3 with
 * binary_crossentropy (which would train to a negative loss) are refused by the data
 * check, naming the row and the loss to use. */
START_TEST(test_crossentropy_targets)
{
    char *dir = blob_dir(3); /* train.h5: labels 0..3 */
    tu_write(dir, "bin.yaml",
             "data: {train: {path: train.h5}}\n"
             "model: {input_shape: [8], layers: [{type: dense, units: 1, activation: sigmoid}]}\n"
             "compile: {optimizer: sgd, loss: binary_crossentropy}\n");
    ct_experiment *ex = load_in(dir, "bin.yaml");
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_check_data(ex, &err), -1);
    ck_assert_msg(strstr(err.msg, "but the loss's targets lie between 0 and 1 (class labels 0, "
                                  "1, 2, ... need sparse_categorical_crossentropy and an "
                                  "output of one unit per class)") &&
                  strstr(err.msg, "has target "), "%s", err.msg);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST


/* An autoencoder's file: "pix", 8 rows of 6 uint8 values (row r: 10 r + c). */
static void write_pixels(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/ae.h5", dir);
    uint8_t v[48];
    for (int i = 0; i < 48; i++)
        v[i] = (uint8_t)(10 * (i / 6) + i % 6);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {8, 6};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "pix", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
}

#define AE_CONFIG                                                                          \
    "data: {train: {path: ae.h5, x: pix, y: pix}, scale: 0.00392156862745098%s}\n"         \
    "model: {input_shape: [6], layers: [{type: dense, units: 6, activation: sigmoid}]}\n"   \
    "compile: {optimizer: adam, loss: %s}\n"

/* Targets are scaled by data.target_scale (float targets only), and x and y naming one
 * dataset with different scales is a warning that gives the scale to set. */
START_TEST(test_target_scale)
{
    char *dir = tu_tmpdir(), text[1024];
    write_pixels(dir);
    snprintf(text, sizeof text, AE_CONFIG, "", "binary_crossentropy");
    tu_write(dir, "ae.yaml", text);
    ct_experiment *ex = load_in(dir, "ae.yaml");
    ck_assert_msg(ex->model->warnings &&
                  strstr(ex->model->warnings, "ae.yaml:1:53: data.train: x and y are both "
                                              "'pix', but x is scaled by 0.00392157 and y by 1") &&
                  strstr(ex->model->warnings, "set data.target_scale: 0.00392156863"),
                  "%s", ex->model->warnings ? ex->model->warnings : "(no warning)");
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_check_data(ex, &err), -1); /* 0..75 for a [0, 1] loss */
    ct_experiment_free(ex);

    snprintf(text, sizeof text, AE_CONFIG, ", target_scale: 0.00392157", "binary_crossentropy");
    tu_write(dir, "ae.yaml", text);
    ex = load_in(dir, "ae.yaml");
    ck_assert_msg(!ex->model->warnings, "%s", ex->model->warnings);
    ck_assert_msg(ct_experiment_check_data(ex, &err) == 0, "%s", err.msg);
    ct_dataset *ds = ct_experiment_open_source(ex, &ex->train, "data.train", false, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    float x[12], y[12];
    ck_assert_int_eq(ct_dataset_read(ds, 7, 1, x, y, &err), 0);
    for (int c = 0; c < 6; c++) {
        ck_assert_float_eq(x[c], (float)(70 + c) * (float)0.00392156862745098);
        ck_assert_float_eq(y[c], (float)(70 + c) * (float)0.00392157);
    }
    ct_dataset_close(ds);
    ct_experiment_free(ex);

    /* Class indices are never scaled. */
    snprintf(text, sizeof text, AE_CONFIG, ", target_scale: {dense: 0.5}",
             "sparse_categorical_crossentropy");
    tu_write(dir, "ae.yaml", text);
    char p[4200];
    snprintf(p, sizeof p, "%s/ae.yaml", dir);
    ck_assert_ptr_null(ct_experiment_load(p, NULL, 0, &err));
    ck_assert_msg(strstr(err.msg, "ae.yaml:1:96: data.target_scale: the loss "
                                  "sparse_categorical_crossentropy of output 'dense' takes "
                                  "class indices, which are never scaled"), "%s", err.msg);
    free(dir);
}
END_TEST


/* A model of dense layers (the middle one's key `mid`, then a batch normalization with
 * `bn`), trained for `epochs` epochs of one batch of plain SGD on the blobs (0: only
 * planned, its initial weights filled). */
static ct_experiment *fit_frozen(const char *dir, const char *run, const char *first,
                                 const char *mid, const char *bn, int epochs)
{
    char text[2048];
    snprintf(text, sizeof text,
             "name: frozen\nseed: 3\ndata: {train: {path: train.h5}}\n"
             "model:\n  input_shape: [8]\n  layers:\n"
             "    - {type: dense, units: 16, activation: tanh%s}\n"
             "    - {type: dense, units: 12, activation: tanh%s}\n"
             "    - {type: batch_normalization%s}\n"
             "    - {type: dense, units: 4, activation: softmax}\n"
             "compile: {optimizer: {type: sgd, learning_rate: 0.1}, "
             "loss: sparse_categorical_crossentropy}\n"
             "fit: {epochs: %d, batch_size: 1000, shuffle: false, verbose: 0}\n",
             first, mid, bn, epochs ? epochs : 1);
    tu_write(dir, "frozen.yaml", text);
    ct_experiment *ex = load_in(dir, "frozen.yaml");
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, run);
    ct_error err = {0};
    if (epochs) /* else only the initial weights */
        fit_into(ex, path);
    else
        ck_assert_msg(ct_model_plan(ex->model, 32, &err) == 0, "%s", err.msg);
    return ex;
}

static void param_copy(const ct_experiment *ex, int layer, int j, float *out)
{
    const ct_param *p = &ex->model->layers[layer].params[j];
    memcpy(out, p->value, (size_t)ct_shape_size(&p->shape) * sizeof *out);
}

/* Whether every weight of the layer is what it was in `init`. */
static bool layer_kept(const ct_experiment *ex, const ct_experiment *init, int layer)
{
    float a[16 * 16], b[16 * 16];
    for (int j = 0; j < ex->model->layers[layer].nparams; j++) {
        param_copy(ex, layer, j, a);
        param_copy(init, layer, j, b);
        int64_t n = ct_shape_size(&ex->model->layers[layer].params[j].shape);
        if (memcmp(a, b, (size_t)n * sizeof *a) != 0)
            return false;
    }
    return true;
}

/* trainable: false keeps a layer's weights and lets the gradient pass through it to the
 * layers before: after one step of SGD the first layer's kernel is what it is when nothing
 * is frozen (same initial weights, same batch). A frozen batch normalization runs in
 * inference mode (Keras's rule) and keeps its moving statistics; the summary counts frozen
 * weights as non-trainable; a frozen first layer runs no backward pass at all. */
START_TEST(test_trainable_false)
{
    char *dir = blob_dir(1);
    const char *off = ", trainable: false";
    ct_experiment *a = fit_frozen(dir, "a", "", off, "", 1);
    ct_experiment *b = fit_frozen(dir, "b", "", "", "", 1);
    ct_experiment *init = fit_frozen(dir, "c", "", off, "", 0);
    float ka[8 * 16], kb[8 * 16], k0[8 * 16];
    param_copy(a, 0, 0, ka);
    param_copy(b, 0, 0, kb);
    param_copy(init, 0, 0, k0);
    ck_assert_msg(memcmp(ka, kb, sizeof ka) == 0, "the gradient through a frozen layer "
                  "differs from the one through a trainable one");
    ck_assert_msg(memcmp(ka, k0, sizeof ka) != 0, "the first layer did not train");
    ck_assert(layer_kept(a, init, 1) && !layer_kept(b, init, 1));
    ck_assert(layer_kept(a, init, 2) == false); /* the batch normalization trains */
    ct_experiment_free(a);
    ct_experiment_free(b);
    ct_experiment_free(init);

    a = fit_frozen(dir, "d", "", "", off, 2);
    init = fit_frozen(dir, "e", "", "", off, 0);
    ck_assert(layer_kept(a, init, 2) && !layer_kept(a, init, 1));
    ck_assert_int_eq(a->model->trainable, 8 * 16 + 16 + 16 * 12 + 12 + 12 * 4 + 4);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ct_experiment_summary(a, f);
    fclose(f);
    ck_assert_msg(strstr(text, "Non-trainable params: 48 "), "%s", text);
    free(text);
    ct_experiment_free(a);
    ct_experiment_free(init);

    /* Frozen from the input on: those layers have no backward to run. */
    a = fit_frozen(dir, "f", off, off, "", 1);
    ck_assert(!a->model->plan->backprop[0] && !a->model->plan->backprop[1] &&
              a->model->plan->backprop[2] && a->model->plan->backprop[3]);
    ct_experiment_free(a);
    free(dir);
}
END_TEST


/* Fine-tuning: model.weights starts a fit from another run's weights, layer by layer by
 * name and shape; a frozen base keeps them exactly, a head of another shape keeps its
 * initial values, the report says which is which, and a file with nothing for the model is
 * an error before the run directory is touched. */
START_TEST(test_initial_weights)
{
    char *dir = blob_dir(2), text[2048], run[4200];
    const char *layers = "model:\n  input_shape: [8]\n%s  layers:\n"
                         "    - {name: f1, type: dense, units: 16, activation: tanh%s}\n"
                         "    - {name: f2, type: dense, units: 8, activation: tanh%s}\n"
                         "    - {name: head, type: dense, units: %d, activation: softmax}\n";
    char model[1024];
    snprintf(model, sizeof model, layers, "", "", "", 4);
    snprintf(text, sizeof text, "name: base\nseed: 1\ndata: {train: {path: train.h5}}\n%s"
             "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
             "fit: {epochs: 2, batch_size: 100, verbose: 0}\n", model);
    tu_write(dir, "base.yaml", text);
    ct_experiment *base = load_in(dir, "base.yaml");
    snprintf(run, sizeof run, "%s/base", dir);
    fit_into(base, run);

    snprintf(model, sizeof model, layers, "  weights: base/weights.h5\n", ", trainable: false",
             ", trainable: false", 6);
    snprintf(text, sizeof text, "name: tune\nseed: 9\ndata: {train: {path: train.h5}}\n%s"
             "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
             "fit: {epochs: 2, batch_size: 100}\n", model);
    tu_write(dir, "tune.yaml", text);
    ct_experiment *tune = load_in(dir, "tune.yaml");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    snprintf(run, sizeof run, "%s/tune", dir);
    ct_fit_options o = {.run_dir = run, .verbose = 2, .out = f};
    ct_error err = {0};
    int rc = ct_experiment_fit(tune, &o, &err);
    fclose(f);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_msg(strstr(out, "base/weights.h5, by layer name:\n  f1 ") &&
                  strstr(out, "  f2                   loaded\n") &&
                  strstr(out, "  head                 skipped, keeps its initial values: "
                              "layer 'head' (Dense): weight 'kernel'") &&
                  strstr(out, "has shape (8, 4) but the model expects (8, 6)"), "%s", out);
    free(out);
    for (int layer = 0; layer < 2; layer++)
        for (int j = 0; j < 2; j++) {
            const ct_param *a = &base->model->layers[layer].params[j];
            const ct_param *b = &tune->model->layers[layer].params[j];
            ck_assert_msg(memcmp(a->value, b->value,
                                 (size_t)ct_shape_size(&a->shape) * sizeof(float)) == 0,
                          "frozen %s/%s differs from the base's", a->name, b->name);
        }
    ct_experiment_free(tune);

    /* A file with nothing for this model (other names): an error listing the layers. */
    snprintf(text, sizeof text, "name: other\nseed: 9\ndata: {train: {path: train.h5}}\n"
             "model: {input_shape: [8], weights: base/weights.h5, layers: "
             "[{name: g, type: dense, units: 4, activation: softmax}]}\n"
             "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
             "fit: {epochs: 1, verbose: 0}\n");
    tu_write(dir, "other.yaml", text);
    ct_experiment *other = load_in(dir, "other.yaml");
    snprintf(run, sizeof run, "%s/other", dir);
    ct_fit_options o2 = {.run_dir = run, .verbose = 0};
    ck_assert_int_eq(ct_experiment_fit(other, &o2, &err), -1);
    ck_assert_msg(strstr(err.msg, "initial weights: ") &&
                  strstr(err.msg, "has no weights for any layer of the model") &&
                  strstr(err.msg, "  g                    not in the file") &&
                  strstr(err.msg, "  f1                   in the file only"), "%s", err.msg);
    struct stat st;
    ck_assert_int_ne(stat(run, &st), 0); /* nothing was created */
    ct_experiment_free(other);
    ct_experiment_free(base);
    free(dir);
}
END_TEST


START_TEST(test_determinism)
{
    char *dir = blob_dir(7);
    float *w[5];
    int64_t n[5];
    for (int i = 0; i < 5; i++) {
        char run[4096];
        snprintf(run, sizeof run, "%s/run%d", dir, i);
        ct_experiment *ex;
        if (i < 2) {
            ex = load_in(dir, "blobs.yaml");
        } else if (i == 4) { /* parameters filled when fit first plans */
            char p[4096];
            snprintf(p, sizeof p, "%s/blobs.yaml", dir);
            ct_error err = {0};
            ex = ct_experiment_load_lazily(p, NULL, 0, &err);
            ck_assert_ptr_nonnull(ex);
        } else {
            char p[4096];
            snprintf(p, sizeof p, "%s/blobs.yaml", dir);
            ct_error err = {0};
            const char *set[] = {i == 2 ? "seed=8" : "backend.threads=3"};
            ex = ct_experiment_load(p, set, 1, &err);
            ck_assert_ptr_nonnull(ex);
        }
        fit_into(ex, run);
        copy_params(ex, &w[i], &n[i]);
        ct_experiment_free(ex);
    }
    ck_assert_int_eq(n[0], n[1]);
    ck_assert_msg(memcmp(w[0], w[1], sizeof(float) * (size_t)n[0]) == 0,
                  "two runs with the same seed differ");
    ck_assert_msg(memcmp(w[0], w[2], sizeof(float) * (size_t)n[0]) != 0,
                  "a different seed gave the same weights");
    /* Work is split over threads without changing any sum's order. */
    ck_assert_msg(memcmp(w[0], w[3], sizeof(float) * (size_t)n[0]) == 0,
                  "another thread count gave other weights");
    ck_assert_msg(memcmp(w[0], w[4], sizeof(float) * (size_t)n[0]) == 0,
                  "parameters filled when first needed gave other weights");
    for (int i = 0; i < 5; i++)
        free(w[i]);
    free(dir);
}
END_TEST

/* --- checkpoints and exact resume ------------------------------------------------------ */

static void params_of(const char *dir, const char *run, int64_t epochs, bool stop_first,
                      const char *resume, float **w, int64_t *n, float **state, int64_t *ns)
{
    char p[4096], e[64];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    snprintf(e, sizeof e, "fit.epochs=%lld", (long long)epochs);
    const char *set[] = {e};
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, set, 1, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    char r[4200];
    snprintf(r, sizeof r, "%s/%s", dir, run);
    ct_fit_options o = {.run_dir = resume ? NULL : r, .verbose = 0, .resume = resume};
    if (stop_first)
        ct_request_stop();
    int rc = ct_experiment_fit(ex, &o, &err);
    if (stop_first) {
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(err.code, CT_ERR_INTERRUPT);
        ck_assert_msg(strstr(err.msg, "stopped after step 1 (epoch 1, batch 1)"), "%s", err.msg);
    } else {
        ck_assert_msg(rc == 0, "%s", err.msg);
    }
    copy_params(ex, w, n);
    *ns = ex->optimizer->n * ct_optimizer_slots(ex->optimizer);
    *state = malloc(sizeof(float) * (size_t)*ns);
    memcpy(*state, ex->optimizer->state, sizeof(float) * (size_t)*ns);
    ct_experiment_free(ex);
}

static char *read_text(const char *dir, const char *run, const char *file)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s/%s", dir, run, file);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "%s", p);
    static char buf[3][8192];
    static int k;
    char *b = buf[k++ % 3];
    size_t len = fread(b, 1, sizeof buf[0] - 1, f);
    b[len] = 0;
    fclose(f);
    return b;
}

/* The optimizers test_resume_exact runs besides the config's sgd with momentum; with
 * use_ema the average is state too, and the run ends with it as the weights. */
static const char *const resume_optimizers[] = {
    NULL, "adam", "{type: nadam, use_ema: true}", "lion",
    "{type: ftrl, use_ema: true, ema_momentum: 0.9, ema_overwrite_frequency: 7}", "adam",
};
/* The metrics of each case (NULL: accuracy): the last adds metrics whose epoch state is
 * more than a sum, which a checkpoint in the middle of an epoch must carry. */
static const char *const resume_metrics[] = {
    NULL, NULL, NULL, NULL, NULL, "[accuracy, {type: mean_iou, num_classes: 4, sparse_y_pred: false}]",
};

static void use_optimizer(const char *dir, const char *opt)
{
    static const char *const sgd = "{type: sgd, learning_rate: 0.1, momentum: 0.9}";
    char text[2048], out[2200];
    snprintf(text, sizeof text, blob_config, 1);
    char *o = strstr(text, sgd);
    ck_assert_ptr_nonnull(o);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(o - text), text, opt, o + strlen(sgd));
    tu_write(dir, "blobs.yaml", out);
}

static void use_metrics(const char *dir, const char *metrics)
{
    char out[2400];
    char *text = read_text(dir, ".", "blobs.yaml"); /* read_text's own buffer */
    char *m = strstr(text, "metrics: [accuracy]");
    ck_assert_ptr_nonnull(m);
    snprintf(out, sizeof out, "%.*smetrics: %s%s", (int)(m - text), text, metrics,
             m + strlen("metrics: [accuracy]"));
    tu_write(dir, "blobs.yaml", out);
}

/* 4 epochs in one go, 2 + resume + 2, and a stop after the first batch + resume: the same
 * weights, optimizer state and history, bit for bit (sgd with momentum, adam, nadam and ftrl
 * with use_ema, lion; dropout and shuffling on). */
START_TEST(test_resume_exact)
{
    char *dir = blob_dir(1);
    const char *opt = resume_optimizers[_i];
    if (opt)
        use_optimizer(dir, opt);
    if (resume_metrics[_i])
        use_metrics(dir, resume_metrics[_i]);
    float *w[3], *st[3];
    int64_t n[3], ns[3];
    char resume[4200];
    params_of(dir, "full", 4, false, NULL, &w[0], &n[0], &st[0], &ns[0]);
    params_of(dir, "half", 2, false, NULL, &w[1], &n[1], &st[1], &ns[1]);
    free(w[1]);
    free(st[1]);
    snprintf(resume, sizeof resume, "%s/half", dir);
    params_of(dir, "half", 4, false, resume, &w[1], &n[1], &st[1], &ns[1]);
    params_of(dir, "cut", 4, true, NULL, &w[2], &n[2], &st[2], &ns[2]);
    free(w[2]);
    free(st[2]);
    snprintf(resume, sizeof resume, "%s/cut/checkpoint.h5", dir);
    params_of(dir, "cut", 4, false, resume, &w[2], &n[2], &st[2], &ns[2]);
    for (int i = 1; i < 3; i++) {
        ck_assert_int_eq(n[i], n[0]);
        ck_assert_int_eq(ns[i], ns[0]);
        ck_assert_msg(memcmp(w[0], w[i], sizeof(float) * (size_t)n[0]) == 0, "weights %d", i);
        ck_assert_msg(memcmp(st[0], st[i], sizeof(float) * (size_t)ns[0]) == 0, "state %d", i);
    }
    if (opt && strstr(opt, "use_ema")) { /* fit ended on the average (the last slot) */
        int64_t trainable = ns[0] / 3; /* nadam's and ftrl's two slots, and the average */
        ck_assert_msg(memcmp(w[0], st[0] + 2 * trainable, sizeof(float) * (size_t)trainable)
                      == 0, "the weights are not the moving average");
    }
    const char *h0 = read_text(dir, "full", "history.csv");
    ck_assert_str_eq(read_text(dir, "half", "history.csv"), h0);
    ck_assert_str_eq(read_text(dir, "cut", "history.csv"), h0);
    for (int i = 0; i < 3; i++)
        free(w[i]), free(st[i]);
    free(dir);
}
END_TEST

START_TEST(test_resume_errors)
{
    char *dir = blob_dir(1);
    ct_experiment *ex = load_in(dir, "blobs.yaml");
    char r[4200];
    snprintf(r, sizeof r, "%s/nothing", dir);
    ct_fit_options o = {.verbose = 0, .resume = r};
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_fit(ex, &o, &err), -1);
    ck_assert_msg(strstr(err.msg, "cannot resume from") && strstr(err.msg, "nothing"), "%s", err.msg);
    /* a weights file is not a checkpoint */
    snprintf(r, sizeof r, "%s/run", dir);
    fit_into(ex, r);
    snprintf(r, sizeof r, "%s/run/weights.h5", dir);
    ck_assert_int_eq(ct_experiment_fit(ex, &o, &err), -1);
    ck_assert_msg(strstr(err.msg, "holds weights only, not a checkpoint"), "%s", err.msg);
    /* resuming into another folder that holds a finished run keeps that run */
    char other[4200], ow[4300];
    snprintf(other, sizeof other, "%s/other", dir);
    fit_into(ex, other);
    snprintf(r, sizeof r, "%s/run", dir);
    ct_fit_options into = {.verbose = 0, .resume = r, .run_dir = other};
    ck_assert_int_eq(ct_experiment_fit(ex, &into, &err), -1);
    ck_assert_msg(strstr(err.msg, "other already holds a finished run"), "%s", err.msg);
    snprintf(ow, sizeof ow, "%s/weights.h5", other);
    ck_assert_int_eq(access(ow, F_OK), 0);
    ct_experiment_free(ex);
    /* another optimizer than the checkpoint's */
    char p[4096];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    const char *set[] = {"compile.optimizer=adam"};
    ex = ct_experiment_load(p, set, 1, &err);
    ck_assert_ptr_nonnull(ex);
    snprintf(r, sizeof r, "%s/run", dir);
    ck_assert_int_eq(ct_experiment_fit(ex, &o, &err), -1);
    ck_assert_msg(strstr(err.msg, "written by the optimizer 'sgd', but the experiment uses 'adam'"),
                  "%s", err.msg);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* --- a chunked, compressed copy of the data trains exactly as the contiguous one -------- */

/* Rewrites dataset `name` of `from` into `to` with chunks of 37 rows and shuffle + gzip. */
static void repack(hid_t from, hid_t to, const char *name, hid_t mtype, size_t elem)
{
    hid_t d = H5Dopen2(from, name, H5P_DEFAULT), space = H5Dget_space(d);
    hsize_t dims[2] = {0, 0}, chunk[2];
    int rank = H5Sget_simple_extent_ndims(space);
    H5Sget_simple_extent_dims(space, dims, NULL);
    size_t n = (size_t)dims[0] * (rank == 2 ? (size_t)dims[1] : 1);
    void *buf = malloc(n * elem);
    ck_assert(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    chunk[0] = 37;
    chunk[1] = dims[1];
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_chunk(dcpl, rank, chunk) >= 0 && H5Pset_shuffle(dcpl) >= 0 &&
              H5Pset_deflate(dcpl, 6) >= 0);
    hid_t out = H5Dcreate2(to, name, mtype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert(out >= 0 && H5Dwrite(out, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Dclose(out);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Dclose(d);
    free(buf);
}

START_TEST(test_fit_chunked_gzip)
{
    char *dir = blob_dir(1);
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/train.h5", dir);
    snprintf(b, sizeof b, "%s/train_gz.h5", dir);
    hid_t from = H5Fopen(a, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t to = H5Fcreate(b, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    repack(from, to, "x", H5T_NATIVE_FLOAT, sizeof(float));
    repack(from, to, "y", H5T_NATIVE_INT32, sizeof(int32_t));
    H5Fclose(to);
    H5Fclose(from);
    float *w[2];
    int64_t n[2];
    for (int i = 0; i < 2; i++) {
        /* (The loaders' streaming mode meets packed files in test_data.) */
        const char *set[] = {"fit.epochs=2", "data.train.path=train_gz.h5"};
        char p[4200], run[4200];
        snprintf(p, sizeof p, "%s/blobs.yaml", dir);
        snprintf(run, sizeof run, "%s/run%d", dir, i);
        ct_error err = {0};
        ct_experiment *ex = ct_experiment_load(p, set, i ? 2 : 1, &err);
        ck_assert_msg(ex != NULL, "%s", err.msg);
        fit_into(ex, run);
        copy_params(ex, &w[i], &n[i]);
        ct_experiment_free(ex);
    }
    ck_assert_int_eq(n[0], n[1]);
    ck_assert_msg(memcmp(w[0], w[1], sizeof(float) * (size_t)n[0]) == 0,
                  "the packed file trained differently");
    free(w[0]);
    free(w[1]);
    free(dir);
}
END_TEST

/* --- damaged checkpoints are refused, naming the file and what is wrong ----------------- */

/* Copies the first `fraction` of a file. */
static void copy_file(const char *from, const char *to, double fraction)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ck_assert(in && out);
    char buf[1 << 16];
    fseek(in, 0, SEEK_END);
    long n = (long)((double)ftell(in) * fraction);
    rewind(in);
    while (n > 0) {
        size_t got = fread(buf, 1, n < (long)sizeof buf ? (size_t)n : sizeof buf, in);
        ck_assert(got > 0 && fwrite(buf, 1, got, out) == got);
        n -= (long)got;
    }
    fclose(in);
    fclose(out);
}

typedef void (*h5_edit)(hid_t f);

static void drop_momentum(hid_t f)
{
    ck_assert(H5Ldelete(f, "optimizer_weights/0_momentum", H5P_DEFAULT) >= 0);
}

static void short_momentum(hid_t f)
{
    drop_momentum(f);
    hsize_t n = 5;
    float v[5] = {0};
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "optimizer_weights/0_momentum", H5T_NATIVE_FLOAT, space,
                         H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d);
    H5Sclose(space);
}

/* The momentum as a virtual dataset mapping itself: HDF5 would recurse until the stack
 * overflows. The history as a virtual dataset whose source file does not exist: it would
 * read as fill values. */
static void virtual_at(hid_t f, const char *name, const char *src_file, const char *src_name,
                       hsize_t n, hsize_t cols)
{
    hsize_t dims[2] = {n, cols};
    int rank = cols ? 2 : 1;
    ck_assert(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    hid_t space = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_virtual(dcpl, space, src_file, src_name, space) >= 0);
    hid_t d = H5Dcreate2(f, name, H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert(d >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
}

static void momentum_virtual(hid_t f)
{
    virtual_at(f, "optimizer_weights/0_momentum", ".", "optimizer_weights/0_momentum", 212, 0);
}

static void history_virtual(hid_t f)
{
    hid_t d = H5Dopen2(f, "training_state/history", H5P_DEFAULT), space = H5Dget_space(d);
    hsize_t dims[2];
    ck_assert(H5Sget_simple_extent_dims(space, dims, NULL) == 2);
    H5Sclose(space);
    H5Dclose(d);
    virtual_at(f, "training_state/history", "absent.h5", "history", dims[0], dims[1]);
}

static void drop_state(hid_t f)
{
    ck_assert(H5Ldelete(f, "training_state", H5P_DEFAULT) >= 0);
}

static void kernel_wrong_shape(hid_t f)
{
    const char *k = "model_weights/dense/dense/kernel:0";
    ck_assert(H5Ldelete(f, k, H5P_DEFAULT) >= 0);
    hsize_t d[2] = {16, 8};
    hid_t space = H5Screate_simple(2, d, NULL);
    hid_t ds = H5Dcreate2(f, k, H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(ds >= 0);
    H5Dclose(ds);
    H5Sclose(space);
}

/* Rewrites a scalar int64 attribute of training_state. */
static void set_counter(hid_t f, const char *name, int64_t v)
{
    hid_t g = H5Gopen2(f, "training_state", H5P_DEFAULT);
    ck_assert(g >= 0);
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    ck_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Gclose(g);
}

static void negative_epoch(hid_t f) { set_counter(f, "epoch", -1); }
static void negative_step(hid_t f) { set_counter(f, "step", -5); }
static void negative_batch(hid_t f) { set_counter(f, "batch", -3); }
static void negative_seen(hid_t f) { set_counter(f, "seen", INT64_MIN); }
static void huge_batch(hid_t f) { set_counter(f, "batch", 1000000000); }
static void huge_seen(hid_t f)
{
    set_counter(f, "batch", 1);
    set_counter(f, "seen", 1000000000);
}

static void negative_iterations(hid_t f)
{
    hid_t d = H5Dopen2(f, "optimizer_weights/iterations", H5P_DEFAULT);
    int64_t v = -7;
    ck_assert(d >= 0 && H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) >= 0);
    H5Dclose(d);
}

/* Resuming from a damaged copy (made by `edit`, or a prefix of `fraction` of the file)
 * fails with exactly `fmt` (%s: the copy's path). */
static void expect_resume_error(const char *dir, const char *good, const char *name,
                                h5_edit edit, double fraction, const char *fmt)
{
    char copy[4200], want[8800], run[4200];
    snprintf(copy, sizeof copy, "%s/%s", dir, name);
    snprintf(run, sizeof run, "%s/resumed", dir);
    copy_file(good, copy, fraction);
    if (edit) {
        hid_t f = H5Fopen(copy, H5F_ACC_RDWR, H5P_DEFAULT);
        ck_assert(f >= 0);
        edit(f);
        ck_assert(H5Fclose(f) >= 0);
    }
    ct_experiment *ex = load_in(dir, "blobs.yaml");
    ct_fit_options o = {.run_dir = run, .verbose = 0, .resume = copy};
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_fit(ex, &o, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_DATA);
    snprintf(want, sizeof want, fmt, copy);
    ck_assert_str_eq(err.msg, want);
    ct_experiment_free(ex);
}

START_TEST(test_checkpoint_damage)
{
    char *dir = blob_dir(1);
    const char *one[] = {"fit.epochs=1"};
    char p[4200], good[4200];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, one, 1, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    snprintf(p, sizeof p, "%s/run", dir);
    fit_into(ex, p);
    ct_experiment_free(ex);
    snprintf(good, sizeof good, "%s/run/checkpoint.h5", dir);
    expect_resume_error(dir, good, "half.h5", NULL, 0.5, "%s is not an HDF5 file or is damaged");
    expect_resume_error(dir, tu_write(dir, "text.h5", "not a checkpoint\n"), "text2.h5", NULL,
                        1.0, "%s is not an HDF5 file or is damaged");
    /* 8 x 16 + 16 + 16 x 4 + 4 = 212 trainable parameters, one momentum each. */
    expect_resume_error(dir, good, "no_momentum.h5", drop_momentum, 1.0,
                        "%s: optimizer_weights/0_momentum is missing or does not hold 212 values");
    expect_resume_error(dir, good, "short_momentum.h5", short_momentum, 1.0,
                        "%s: optimizer_weights/0_momentum is missing or does not hold 212 values");
    expect_resume_error(dir, good, "virtual_momentum.h5", momentum_virtual, 1.0,
                        "%s:/optimizer_weights/0_momentum is a virtual dataset (its data is "
                        "mapped from other datasets or files); ctrain reads only data stored "
                        "inside the HDF5 file");
    expect_resume_error(dir, good, "virtual_history.h5", history_virtual, 1.0,
                        "%s:/training_state/history is a virtual dataset (its data is mapped "
                        "from other datasets or files); ctrain reads only data stored inside "
                        "the HDF5 file");
    expect_resume_error(dir, good, "no_state.h5", drop_state, 1.0,
                        "%s has no training_state; it is not a checkpoint");
    expect_resume_error(dir, good, "bad_kernel.h5", kernel_wrong_shape, 1.0,
                        "layer 'dense' (Dense): weight 'kernel' in %s has shape (16, 8) but the "
                        "model expects (8, 16)");
    /* Counters out of range, each named with its file. */
    expect_resume_error(dir, good, "neg_epoch.h5", negative_epoch, 1.0, "%s: the attribute "
                        "training_state/epoch is -1; a checkpoint's counters are never negative");
    expect_resume_error(dir, good, "neg_step.h5", negative_step, 1.0, "%s: the attribute "
                        "training_state/step is -5; a checkpoint's counters are never negative");
    expect_resume_error(dir, good, "neg_batch.h5", negative_batch, 1.0, "%s: the attribute "
                        "training_state/batch is -3; a checkpoint's counters are never negative");
    expect_resume_error(dir, good, "neg_seen.h5", negative_seen, 1.0, "%s: the attribute "
                        "training_state/seen is -9223372036854775808; a checkpoint's counters "
                        "are never negative");
    expect_resume_error(dir, good, "neg_iter.h5", negative_iterations, 1.0, "%s: "
                        "optimizer_weights/iterations is -7; a checkpoint's counters are never "
                        "negative");
    /* The good one still resumes. */
    ex = load_in(dir, "blobs.yaml");
    snprintf(p, sizeof p, "%s/resumed", dir);
    ct_fit_options o = {.run_dir = p, .verbose = 0, .resume = good};
    ck_assert_msg(ct_experiment_fit(ex, &o, &err) == 0, "%s", err.msg);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* A listing of folder dir with each file's size and modification time, sorted. */
static char *snapshot(const char *dir)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -printf '%%p %%s %%T@\\n' | sort", dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    static char buf[2][8192];
    static int which;
    char *out = buf[which++ % 2];
    size_t n = fread(out, 1, sizeof buf[0] - 1, p);
    out[n] = 0;
    pclose(p);
    return out;
}

/* A resumed run that fails its checks leaves the run directory exactly as it was: the
 * finished run's weights.h5 included. */
START_TEST(test_resume_checks_first)
{
    char *dir = blob_dir(1);
    const char *one[] = {"fit.epochs=1"};
    char p[4200], ckpt[4300];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, one, 1, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    snprintf(p, sizeof p, "%s/run", dir);
    fit_into(ex, p);
    ct_experiment_free(ex);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", p);
    static const h5_edit edits[] = {huge_batch, huge_seen, negative_batch};
    static const char *const want[] = {
        "%s: the checkpoint is 1000000000 batches into epoch 2, but the epoch has 25",
        "%s: the checkpoint has seen 1000000000 samples of epoch 2, but the epoch has 800",
        "%s: the attribute training_state/batch is -3; a checkpoint's counters are never "
        "negative"};
    char orig[4200];
    snprintf(orig, sizeof orig, "%s/orig.h5", dir);
    copy_file(ckpt, orig, 1.0);
    for (int i = 0; i < 3; i++) {
        copy_file(orig, ckpt, 1.0);
        hid_t f = H5Fopen(ckpt, H5F_ACC_RDWR, H5P_DEFAULT);
        ck_assert(f >= 0);
        edits[i](f);
        ck_assert(H5Fclose(f) >= 0);
        char before[8192], w[8800];
        snprintf(before, sizeof before, "%s", snapshot(p));
        ex = load_in(dir, "blobs.yaml");
        ct_fit_options o = {.verbose = 0, .resume = p};
        ck_assert_int_eq(ct_experiment_fit(ex, &o, &err), -1);
        snprintf(w, sizeof w, want[i], ckpt);
        ck_assert_str_eq(err.msg, w);
        ck_assert_str_eq(snapshot(p), before);
        ck_assert_msg(strstr(before, "./weights.h5 "), "%s", before);
        ct_experiment_free(ex);
    }
    free(dir);
}
END_TEST

/* Sets element k of dataset name in file path to v. */
static void poke(const char *path, const char *name, int k, float v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, name, H5P_DEFAULT) : -1;
    ck_assert(d >= 0);
    hid_t space = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert(x && k < n && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    x[k] = v;
    ck_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    free(x);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
}

/* Runs ct_experiment_load_weights with stderr going to a file; returns what it wrote. */
static char *load_weights_stderr(ct_experiment *ex, const char *dir, const char *weights)
{
    char log[4200];
    snprintf(log, sizeof log, "%s/stderr.txt", dir);
    fflush(stderr);
    int saved = dup(2), fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert(saved >= 0 && fd >= 0 && dup2(fd, 2) == 2);
    ct_error err = {0};
    int rc = ct_experiment_load_weights(ex, weights, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    ck_assert_msg(rc == 0, "%s", err.msg);
    static char text[2048];
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    return text;
}

/* Weights that are not finite load with a warning naming the file, the layer and the
 * weight, and evaluate reports the NaN loss they give instead of a clipped number. */
START_TEST(test_non_finite_weights)
{
    char *dir = blob_dir(1);
    const char *one[] = {"fit.epochs=1"};
    char p[4200], w[4200], want[8800];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, one, 1, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    snprintf(p, sizeof p, "%s/run", dir);
    fit_into(ex, p);
    snprintf(w, sizeof w, "%s/run/weights.h5", dir);
    ck_assert_str_eq(load_weights_stderr(ex, dir, w), "");
    const char *names[8];
    double values[8];
    ck_assert_int_gt(ct_experiment_evaluate(ex, NULL, NULL, NULL, names, values, 8, &err), 0);
    ck_assert(isfinite(values[0]));
    poke(w, "model_weights/dense_1/dense_1/kernel:0", 5, NAN);
    poke(w, "model_weights/dense_1/dense_1/bias:0", 1, -INFINITY);
    snprintf(want, sizeof want, "ctrain: warning: %s: layer 'dense_1' (Dense): weight 'kernel' "
             "holds nan at index 5 (2 values in the file are not finite); what the model "
             "computes with them is not finite\n", w);
    ck_assert_str_eq(load_weights_stderr(ex, dir, w), want);
    int n = ct_experiment_evaluate(ex, NULL, NULL, NULL, names, values, 8, &err);
    ck_assert_msg(n > 0, "%s", err.msg);
    ck_assert_str_eq(names[0], "loss");
    ck_assert_msg(isnan(values[0]), "loss %g", values[0]);
    /* The same from a checkpoint. */
    snprintf(w, sizeof w, "%s/run/checkpoint.h5", dir);
    poke(w, "model_weights/dense/dense/bias:0", 0, INFINITY);
    snprintf(want, sizeof want, "ctrain: warning: %s: layer 'dense' (Dense): weight 'bias' holds "
             "inf at index 0 (1 value in the file is not finite); what the model computes with "
             "them is not finite\n", w);
    ck_assert_str_eq(load_weights_stderr(ex, dir, w), want);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* --- bad data is refused before training --------------------------------------------- */

static void expect_fit_error(bool nan_row, int bad_label, const char *set, const char *expect)
{
    char *dir = tu_tmpdir();
    char p[4096], text[2048];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    write_blobs(p, 200, 3, nan_row, bad_label);
    snprintf(p, sizeof p, "%s/test.h5", dir);
    write_blobs(p, 50, 4, false, 0);
    snprintf(text, sizeof text, blob_config, 1);
    tu_write(dir, "blobs.yaml", text);
    char path[4096];
    snprintf(path, sizeof path, "%s/blobs.yaml", dir);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(path, &set, set ? 1 : 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    char run[4096];
    snprintf(run, sizeof run, "%s/run", dir);
    ct_fit_options o = {.run_dir = run, .verbose = 0};
    ck_assert_int_eq(ct_experiment_fit(ex, &o, &err), -1);
    ck_assert_msg(strstr(err.msg, expect), "expected '%s' in '%s'", expect, err.msg);
    snprintf(run, sizeof run, "%s/run/weights.h5", dir);
    struct stat st;
    ck_assert_int_ne(stat(run, &st), 0);
    ct_experiment_free(ex);
    free(dir);
}

START_TEST(test_bad_data)
{
    expect_fit_error(true, 0, NULL, "row 17");
    expect_fit_error(false, 4, NULL, "row 5 has label 4");
    expect_fit_error(false, -1, NULL, "row 5");
    expect_fit_error(false, 0, "data.train.path=missing.h5", "missing.h5");
}
END_TEST

START_TEST(test_shape_mismatch_data)
{
    char *dir = blob_dir(1);
    char p[4096];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    const char *set[] = {"model.input_shape=[2, 4]"};
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, set, 1, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_experiment_check_data(ex, &err), -1);
    ck_assert_msg(strstr(err.msg, "has samples of shape (8,), but model.input_shape is (2, 4)"), "%s",
                  err.msg);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

START_TEST(test_predict_csv)
{
    char *dir = blob_dir(1);
    ct_experiment *ex = load_in(dir, "blobs.yaml");
    char run[4096], in[4200], out[4200];
    snprintf(run, sizeof run, "%s/run", dir);
    fit_into(ex, run);
    snprintf(in, sizeof in, "%s/test.h5", dir);
    snprintf(out, sizeof out, "%s/pred.csv", dir);
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_predict(ex, in, NULL, out, &err), 0);
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    int rows = 0;
    double a, b, c, d;
    while (fscanf(f, "%lf,%lf,%lf,%lf", &a, &b, &c, &d) == 4) {
        ck_assert_double_eq_tol(a + b + c + d, 1.0, 1e-5); /* softmax rows */
        rows++;
    }
    fclose(f);
    ck_assert_int_eq(rows, 400);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

START_TEST(test_regularizer_in_loss)
{
    char *dir = blob_dir(1);
    char p[4096];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    ct_error err = {0};
    const char *set[] = {"model.layers.0.kernel_regularizer={type: l2, l2: 0.5}"};
    ct_experiment *plain = ct_experiment_load(p, NULL, 0, &err);
    ct_experiment *reg = ct_experiment_load(p, set, 1, &err);
    ck_assert_msg(reg != NULL, "%s", err.msg);
    const char *names[4];
    double v0[4], v1[4];
    ck_assert_int_eq(ct_experiment_evaluate(plain, NULL, NULL, NULL, names, v0, 4, &err), 2);
    ck_assert_int_eq(ct_experiment_evaluate(reg, NULL, NULL, NULL, names, v1, 4, &err), 2);
    /* Same initial weights; the difference is 0.5 * sum(kernel^2). */
    const ct_param *k = &reg->model->layers[0].params[0];
    double s = 0;
    for (int64_t i = 0; i < ct_shape_size(&k->shape); i++)
        s += (double)k->value[i] * k->value[i];
    tu_assert_close(v1[0] - v0[0], 0.5 * s, 1e-4);
    ct_experiment_free(plain);
    ct_experiment_free(reg);
    free(dir);
}
END_TEST

/* --- token inputs and targets over a time axis ------------------------------------------ */

#define NO_BAD (-1000)

/* n sequences of t ids below vocab. Dataset x: class c (y, 0 or 1) draws its ids from the
 * lower or upper half of the vocabulary; next: the id that follows each one, (x + 1) %
 * vocab, one target per position. float_x stores x as float32; bad (unless NO_BAD) puts that
 * id at row 3, position 1. */
static void write_tokens(const char *path, int n, int t, int vocab, bool float_x, int bad)
{
    int32_t *x = malloc(sizeof(int32_t) * (size_t)(n * t)), *y = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)(n * t));
    float *xf = malloc(sizeof(float) * (size_t)(n * t));
    uint32_t state = 12345;
    for (int i = 0; i < n; i++) {
        y[i] = i % 2;
        for (int j = 0; j < t; j++) {
            state = state * 1664525u + 1013904223u;
            x[i * t + j] = y[i] * (vocab / 2) + (int32_t)((state >> 16) % (uint32_t)(vocab / 2));
        }
    }
    if (bad != NO_BAD)
        x[3 * t + 1] = bad;
    for (int i = 0; i < n * t; i++) {
        next[i] = (x[i] + 1) % vocab;
        xf[i] = (float)x[i];
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dx[2] = {(hsize_t)n, (hsize_t)t}, dy[1] = {(hsize_t)n};
    hid_t sx = H5Screate_simple(2, dx, NULL), sy = H5Screate_simple(1, dy, NULL);
    hid_t a = H5Dcreate2(f, "x", float_x ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32, sx, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    hid_t b = H5Dcreate2(f, "y", H5T_NATIVE_INT32, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t c = H5Dcreate2(f, "next", H5T_NATIVE_INT32, sx, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(a, float_x ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
             float_x ? (void *)xf : (void *)x);
    H5Dwrite(b, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dwrite(c, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, next);
    H5Dclose(a), H5Dclose(b), H5Dclose(c), H5Sclose(sx), H5Sclose(sy), H5Fclose(f);
    free(x), free(y), free(next), free(xf);
}

/* data.scale is set to show that token inputs ignore it. */
static const char *token_config =
    "name: tokens\nseed: 3\n"
    "data: {train: {path: train.h5}, test: {path: test.h5}, scale: 0.001}\n"
    "model:\n  input_shape: [6]\n  layers:\n"
    "    - {type: embedding, input_dim: 10, output_dim: 8}\n"
    "    - {type: global_average_pooling1d}\n"
    "    - {type: dense, units: 2, activation: softmax}\n"
    "compile: {optimizer: {type: adam, learning_rate: 0.05}, "
    "loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "fit: {epochs: 6, batch_size: 16, verbose: 0}\n";

static char *token_dir(const char *config, bool float_x, int bad)
{
    char *dir = tu_tmpdir();
    char p[4096];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    write_tokens(p, 256, 6, 10, float_x, bad);
    snprintf(p, sizeof p, "%s/test.h5", dir);
    write_tokens(p, 64, 6, 10, false, NO_BAD);
    tu_write(dir, "tokens.yaml", config);
    return dir;
}

/* history.csv of a run with one accuracy metric: the first epoch's accuracy and loss (acc0,
 * first; either may be NULL) and the last epoch's loss (last, may be NULL). */
static void history_read(const char *run, double *acc0, double *first, double *last)
{
    char p[4200], line[512];
    snprintf(p, sizeof p, "%s/history.csv", run);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "epoch,accuracy,loss,learning_rate\n");
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        double epoch, acc, loss;
        ck_assert_int_eq(sscanf(line, "%lf,%lf,%lf", &epoch, &acc, &loss), 3);
        if (rows++ == 0) {
            if (acc0)
                *acc0 = acc;
            if (first)
                *first = loss;
        }
        if (last)
            *last = loss;
    }
    ck_assert_int_gt(rows, 0);
    fclose(f);
}

/* fit.class_weight scales each sample's training loss by its class's weight (Keras's
 * sum_over_batch_size: divided by the batch's rows): every class at 2 trains one SGD step
 * exactly as the learning rate doubled does; every class at 0 trains nothing; validation
 * and test losses are not weighted. */
static ct_experiment *fit_weighted(const char *dir, const char *run, const char *cw, double lr)
{
    char text[2048];
    snprintf(text, sizeof text,
             "name: cw\nseed: 4\ndata: {train: {path: train.h5}, test: {path: test.h5}}\n"
             "model: {input_shape: [8], layers: [{type: dense, units: 4, activation: softmax}]}\n"
             "compile: {optimizer: {type: sgd, learning_rate: %g}, "
             "loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
             "fit: {epochs: 1, batch_size: 1000, shuffle: false, verbose: 0%s}\n", lr, cw);
    tu_write(dir, "cw.yaml", text);
    ct_experiment *ex = load_in(dir, "cw.yaml");
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, run);
    fit_into(ex, path);
    return ex;
}

START_TEST(test_class_weight)
{
    char *dir = blob_dir(6);
    ct_experiment *a = fit_weighted(dir, "a", ", class_weight: {0: 2, 1: 2, 2: 2, 3: 2}", 0.1);
    ct_experiment *b = fit_weighted(dir, "b", "", 0.2);
    ck_assert_int_eq(a->model->size, b->model->size);
    ck_assert_msg(memcmp(a->model->values, b->model->values,
                         (size_t)a->model->size * sizeof(float)) == 0,
                  "class weights of 2 differ from a doubled learning rate");
    double la, lb, ta[8], tb[8];
    char run[4200];
    snprintf(run, sizeof run, "%s/a", dir);
    history_read(run, NULL, &la, NULL);
    snprintf(run, sizeof run, "%s/b", dir);
    history_read(run, NULL, &lb, NULL);
    tu_assert_close(la, 2 * lb, 1e-6 * lb); /* the training loss is weighted */
    const char *names[8];
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_evaluate(a, NULL, NULL, NULL, names, ta, 8, &err), 2);
    ck_assert_int_eq(ct_experiment_evaluate(b, NULL, NULL, NULL, names, tb, 8, &err), 2);
    ck_assert_double_eq(ta[0], tb[0]); /* the test loss is not */
    ct_experiment_free(a);
    ct_experiment_free(b);

    a = fit_weighted(dir, "c", ", class_weight: {0: 0, 1: 0, 2: 0, 3: 0}", 0.1);
    ct_experiment *init = load_in(dir, "cw.yaml");
    ck_assert_int_eq(ct_model_plan(init->model, 32, &err), 0);
    ck_assert(memcmp(a->model->values, init->model->values,
                     (size_t)a->model->size * sizeof(float)) == 0);
    ct_experiment_free(a);
    ct_experiment_free(init);
    free(dir);
}
END_TEST

/* Writes dataset `name` of rows x cols float32 values f(row) into the HDF5 file at path
 * (created when create is set). */
static void h5_put(const char *path, bool create, const char *name, int rows, int cols,
                   const float *v)
{
    hid_t f = create ? H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)
                     : H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    hsize_t d[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t sp = H5Screate_simple(cols > 1 ? 2 : 1, d, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
}

static void put_weights(const char *dir, const char *file, const char *name, int rows,
                        float even, float odd)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    float *w = malloc((size_t)rows * sizeof *w);
    for (int i = 0; i < rows; i++)
        w[i] = i % 2 ? odd : even;
    h5_put(p, false, name, rows, 1, w);
    free(w);
}

/* One epoch of SGD on blobs (batch 1000, no shuffling) with data sources `src`. */
static ct_experiment *fit_sw(const char *dir, const char *run, const char *src, double lr,
                             int batch)
{
    char text[2048];
    snprintf(text, sizeof text,
             "name: sw\nseed: 4\ndata: {%s}\n"
             "model: {input_shape: [8], layers: [{type: dense, units: 4, activation: softmax}]}\n"
             "compile: {optimizer: {type: sgd, learning_rate: %g}, "
             "loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
             "fit: {epochs: 1, batch_size: %d, shuffle: false, verbose: 0}\n", src, lr, batch);
    tu_write(dir, "sw.yaml", text);
    ct_experiment *ex = load_in(dir, "sw.yaml");
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, run);
    fit_into(ex, path);
    return ex;
}

/* The last row of a run's history.csv: loss and val_loss (columns 2 and 4 of epoch,
 * accuracy, loss, val_accuracy, val_loss, learning_rate). */
static void history_losses(const char *dir, const char *run, double *loss, double *val_loss)
{
    char p[4200], line[512];
    snprintf(p, sizeof p, "%s/%s/history.csv", dir, run);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "epoch,accuracy,loss,val_accuracy,val_loss,learning_rate\n");
    double e, a, va;
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_int_eq(sscanf(line, "%lf,%lf,%lf,%lf,%lf", &e, &a, loss, &va, val_loss), 5);
    fclose(f);
}

/* data.*.sample_weight weighs each sample's loss as Keras's sample_weight does (divided by
 * the batch's rows, sum_over_batch_size), in training, validation (split with the rows) and
 * evaluation alike; the metrics are not weighted. */
START_TEST(test_sample_weight)
{
    char *dir = blob_dir(6);
    put_weights(dir, "train.h5", "w", 1000, 2.0f, 2.0f);
    put_weights(dir, "test.h5", "w", 400, 0.5f, 0.5f);
    /* Weights of 2 train as a doubled learning rate does, and double the reported losses. */
    ct_experiment *a = fit_sw(dir, "a", "train: {path: train.h5, sample_weight: w}, test: "
                              "{path: test.h5, sample_weight: w}, validation_split: 0.2", 0.1, 1000);
    ct_experiment *b = fit_sw(dir, "b", "train: {path: train.h5}, test: {path: test.h5}, "
                              "validation_split: 0.2", 0.2, 1000);
    ck_assert(memcmp(a->model->values, b->model->values,
                     (size_t)a->model->size * sizeof(float)) == 0);
    double la, va, lb, vb;
    history_losses(dir, "a", &la, &va);
    history_losses(dir, "b", &lb, &vb);
    tu_assert_close(la, 2 * lb, 1e-6 * lb);
    tu_assert_close(va, 2 * vb, 1e-6 * vb);
    /* The test loss is weighted by 0.5; the accuracy is not weighted. */
    const char *names[8];
    double ta[8], tb[8];
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_evaluate(a, NULL, NULL, NULL, names, ta, 8, &err), 2);
    ck_assert_int_eq(ct_experiment_evaluate(b, NULL, NULL, NULL, names, tb, 8, &err), 2);
    tu_assert_close(ta[0], 0.5 * tb[0], 1e-6 * tb[0]);
    ck_assert_double_eq(ta[1], tb[1]);
    ct_experiment_free(a);
    ct_experiment_free(b);

    /* Weights 2, 0, 2, 0, ... train as the even rows alone do: the odd ones add nothing. */
    put_weights(dir, "train.h5", "w2", 1000, 2.0f, 0.0f);
    char p[4200];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    float *x = malloc(1000 * 8 * sizeof *x), *y = malloc(1000 * sizeof *y);
    hid_t dx = H5Dopen2(f, "x", H5P_DEFAULT), dy = H5Dopen2(f, "y", H5P_DEFAULT);
    ck_assert_int_ge(H5Dread(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    ck_assert_int_ge(H5Dread(dy, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), 0);
    H5Dclose(dx);
    H5Dclose(dy);
    H5Fclose(f);
    for (int i = 0; i < 500; i++) {
        memmove(x + i * 8, x + 2 * i * 8, 8 * sizeof *x);
        y[i] = y[2 * i];
    }
    snprintf(p, sizeof p, "%s/even.h5", dir);
    h5_put(p, true, "x", 500, 8, x);
    h5_put(p, false, "y", 500, 1, y);
    free(x);
    free(y);
    a = fit_sw(dir, "c", "train: {path: train.h5, sample_weight: w2}", 0.5, 1000);
    b = fit_sw(dir, "d", "train: {path: even.h5}", 0.5, 500);
    for (int64_t i = 0; i < a->model->size; i++)
        tu_assert_close(a->model->values[i], b->model->values[i], 1e-6);
    ct_experiment_free(a);
    ct_experiment_free(b);
    free(dir);
}
END_TEST

/* Sample weights that are negative, NaN, of the wrong shape, of another row count or
 * missing: refused before training, naming the dataset and row. */
static void expect_weight_error(const char *dir, const char *dataset, const char *expect)
{
    char text[1024];
    snprintf(text, sizeof text,
             "name: swe\ndata: {train: {path: train.h5, sample_weight: %s}}\n"
             "model: {input_shape: [8], layers: [{type: dense, units: 4, activation: softmax}]}\n"
             "compile: {optimizer: sgd, loss: sparse_categorical_crossentropy}\n"
             "fit: {epochs: 1, verbose: 0}\n", dataset);
    tu_write(dir, "swe.yaml", text);
    ct_experiment *ex = load_in(dir, "swe.yaml");
    char run[4200];
    snprintf(run, sizeof run, "%s/run-%s", dir, dataset);
    ct_fit_options o = {.run_dir = run, .verbose = 0};
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_fit(ex, &o, &err), -1);
    ck_assert_msg(strstr(err.msg, expect), "expected '%s' in '%s'", expect, err.msg);
    struct stat st;
    ck_assert_int_ne(stat(run, &st), 0);
    ct_experiment_free(ex);
}

START_TEST(test_sample_weight_errors)
{
    char *dir = blob_dir(1);
    put_weights(dir, "train.h5", "neg", 1000, 1.0f, 1.0f);
    char p[4200];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    float w[2000];
    for (int i = 0; i < 2000; i++)
        w[i] = 1.0f;
    w[7] = -1.0f;
    h5_put(p, false, "negative", 1000, 1, w);
    w[7] = NAN;
    h5_put(p, false, "nan", 1000, 1, w);
    w[7] = 1.0f;
    h5_put(p, false, "pairs", 1000, 2, w);
    h5_put(p, false, "short", 999, 1, w);
    expect_weight_error(dir, "negative", "train.h5:/negative: row 7 has sample weight -1, but "
                        "sample weights must be 0 or more");
    expect_weight_error(dir, "nan", "train.h5:/nan: row 7 holds NaN or Inf");
    expect_weight_error(dir, "pairs", "train.h5:/pairs' has samples of shape (2,), but it holds one weight per sample");
    expect_weight_error(dir, "short", "999");
    expect_weight_error(dir, "nope", "no dataset 'nope'");
    free(dir);
}
END_TEST

/* ct_fit_options.stop: the caller's own flag stops that fit after its batch (a checkpoint,
 * CT_ERR_INTERRUPT) and leaves the process-wide request alone, so the next fit runs to its
 * end; an experiment loaded from text trains as the file would. */
START_TEST(test_own_stop_flag)
{
    char *dir = blob_dir(2);
    char p[4200], text[2048];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load_text(text, len, "blobs.yaml", dir, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    volatile int stop = 1;
    char run[4200], ckpt[4300];
    snprintf(run, sizeof run, "%s/stopped", dir);
    ct_fit_options o = {.run_dir = run, .verbose = 0, .stop = &stop};
    ck_assert_int_eq(ct_experiment_fit(ex, &o, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_INTERRUPT);
    ck_assert_msg(strstr(err.msg, "stopped after step 1 "), "%s", err.msg);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", run);
    struct stat st;
    ck_assert_int_eq(stat(ckpt, &st), 0);
    ct_experiment_free(ex);
    /* the same text, no flag: every epoch */
    ex = ct_experiment_load_text(text, len, "blobs.yaml", dir, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    snprintf(run, sizeof run, "%s/whole", dir);
    fit_into(ex, run);
    ct_experiment_free(ex);
    ck_assert_ptr_null(ct_experiment_load_text("model: [", 8, "bad.yaml", dir, NULL, 0, &err));
    ck_assert_msg(strstr(err.msg, "/bad.yaml:2:1: did not find expected node content"), "%s",
                  err.msg);
    free(dir);
}
END_TEST

START_TEST(test_token_fit)
{
    char *dir = token_dir(token_config, false, NO_BAD);
    ct_experiment *ex = load_in(dir, "tokens.yaml");
    char run[4096];
    snprintf(run, sizeof run, "%s/run", dir);
    fit_into(ex, run);
    double first = 0, last = 0;
    history_read(run, NULL, &first, &last);
    ck_assert_msg(last < 0.5 * first, "loss %g -> %g", first, last);
    const char *names[8];
    double values[8];
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_evaluate(ex, NULL, NULL, NULL, names, values, 8, &err), 2);
    ck_assert_msg(values[1] >= 0.95, "test accuracy %g", values[1]);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* Token inputs reach the model unscaled, whatever data.scale says. */
START_TEST(test_token_input_unscaled)
{
    char *dir = token_dir(token_config, false, NO_BAD);
    ct_experiment *ex = load_in(dir, "tokens.yaml");
    ct_error err = {0};
    ct_dataset *ds = ct_experiment_open_source(ex, &ex->train, "data.train", true, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ct_loader *ld = ct_loader_new(ds, NULL, ct_dataset_rows(ds), 4, false, 1, 1 << 20, &err);
    ck_assert_msg(ld != NULL, "%s", err.msg);
    float x[24], y[4];
    ck_assert_int_eq(ct_loader_begin_epoch(ld, 0, &err), 0);
    ck_assert_int_eq(ct_loader_next(ld, x, y, &err), 4);
    bool big = false;
    for (int i = 0; i < 24; i++) {
        ck_assert_msg(x[i] == floorf(x[i]) && x[i] >= 0 && x[i] < 10, "x[%d] = %g", i, x[i]);
        big |= x[i] >= 1;
    }
    ck_assert(big);
    ct_loader_free(ld);
    ct_dataset_close(ds);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

static void expect_token_error(bool float_x, int bad, const char *tail)
{
    char *dir = token_dir(token_config, float_x, bad);
    ct_experiment *ex = load_in(dir, "tokens.yaml");
    ct_error err = {0};
    char want[8192];
    snprintf(want, sizeof want, "%s/train.h5:/x%s", dir, tail);
    int rc = ct_experiment_check_data(ex, &err);
    ck_assert_msg(rc == -1, "bad=%d float=%d accepted (%s)", bad, float_x, err.msg);
    ck_assert_msg(strstr(err.msg, want), "expected '%s' in '%s'", want, err.msg);
    ct_experiment_free(ex);
    free(dir);
}

START_TEST(test_token_data_errors)
{
    expect_token_error(false, 10, ": row 3 has token id 10 at position 1, but layer "
                                  "'embedding' (Embedding) takes ids 0..9");
    expect_token_error(false, -2, ": row 3 has token id -2 at position 1, but layer "
                                  "'embedding' (Embedding) takes ids 0..9");
    expect_token_error(true, NO_BAD, " holds floating-point values, but it feeds layer "
                                 "'embedding' (Embedding), which takes integer token ids: "
                                 "store them as an integer type");
    /* targets per position for an output with one position are refused, as one-hot
     * rows are */
    char *dir = token_dir(token_config, false, NO_BAD);
    char p[4200], want[8192];
    snprintf(p, sizeof p, "%s/tokens.yaml", dir);
    const char *set[] = {"data.train.y=next"};
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, set, 1, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_experiment_check_data(ex, &err), -1);
    snprintf(want, sizeof want, "data.train: y '%s/train.h5:/next' has targets of shape (6,), "
             "but the loss sparse_categorical_crossentropy takes one class index per position "
             "of the output (None, 2) (1 per sample)", dir);
    ck_assert_str_eq(err.msg, want);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* A next-token model: outputs (6, 10) with one target per position. Loss and metrics over
 * the time axis are compared with a direct computation from the model's outputs; loop 0
 * takes logits (from_logits), loop 1 a softmax output (fused with the loss). */
static const char *sequence_configs[2] = {
    "name: seq\nseed: 5\n"
    "data: {train: {path: train.h5, y: next}, test: {path: test.h5, y: next}}\n"
    "model:\n  input_shape: [6]\n  layers:\n"
    "    - {type: token_and_position_embedding, vocabulary_size: 10, sequence_length: 8, "
    "embedding_dim: 12}\n"
    "    - {type: dense, units: 10}\n"
    "compile: {optimizer: {type: adam, learning_rate: 0.05}, loss: {type: "
    "sparse_categorical_crossentropy, from_logits: true}, metrics: [accuracy, "
    "{type: sparse_top_k_categorical_accuracy, k: 2}]}\n"
    "fit: {epochs: 4, batch_size: 16, verbose: 0}\n",
    "name: seq\nseed: 5\n"
    "data: {train: {path: train.h5, y: next}, test: {path: test.h5, y: next}}\n"
    "model:\n  input_shape: [6]\n  layers:\n"
    "    - {type: embedding, input_dim: 10, output_dim: 12}\n"
    "    - {type: position_embedding, sequence_length: 6}\n"
    "    - {type: dense, units: 10, activation: softmax}\n"
    "compile: {optimizer: {type: adam, learning_rate: 0.05}, "
    "loss: sparse_categorical_crossentropy, metrics: [accuracy, "
    "{type: sparse_top_k_categorical_accuracy, k: 2}]}\n"
    "fit: {epochs: 4, batch_size: 16, verbose: 0}\n",
};

/* Mean over samples and positions of the loss, accuracy and top-2 hits, from outputs out
 * (n x 6 x 10, probabilities or logits) and targets y. */
static void direct_scores(const float *out, const float *y, int n, bool logits, double *v)
{
    v[0] = v[1] = v[2] = 0;
    for (int i = 0; i < n * 6; i++) {
        const float *o = out + i * 10;
        int target = (int)y[i], best = 0, larger = 0;
        double mx = o[0], se = 0;
        for (int c = 0; c < 10; c++) {
            mx = fmax(mx, o[c]);
            best = o[c] > o[best] ? c : best;
            larger += o[c] > o[target];
        }
        for (int c = 0; c < 10; c++)
            se += exp(o[c] - mx);
        v[0] += logits ? -(o[target] - mx - log(se)) : -log(fmax(o[target], 1e-7));
        v[1] += best == target;
        v[2] += larger < 2;
    }
    for (int k = 0; k < 3; k++)
        v[k] /= n * 6;
}

START_TEST(test_sequence_targets)
{
    char *dir = token_dir(sequence_configs[_i], false, NO_BAD);
    ct_experiment *ex = load_in(dir, "tokens.yaml");
    char run[4096];
    snprintf(run, sizeof run, "%s/run", dir);
    fit_into(ex, run);
    const char *names[8];
    double values[8];
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_evaluate(ex, NULL, NULL, NULL, names, values, 8, &err), 3);
    ck_assert_str_eq(names[1], "accuracy");
    ck_assert_str_eq(names[2], "sparse_top_k_categorical_accuracy");
    ck_assert_msg(values[1] >= 0.9, "next-token accuracy %g", values[1]);
    /* the weights (keras_hub's nested names for the token and position tables) reload */
    ct_experiment *again = load_in(dir, "tokens.yaml");
    char w[4200];
    snprintf(w, sizeof w, "%s/weights.h5", run);
    ck_assert_msg(ct_experiment_load_weights(again, w, &err) == 0, "%s", err.msg);
    double v2[8];
    ck_assert_int_eq(ct_experiment_evaluate(again, NULL, NULL, NULL, names, v2, 8, &err), 3);
    for (int k = 0; k < 3; k++)
        ck_assert_double_eq(values[k], v2[k]);
    ct_experiment_free(again);
    /* the same scores from the model's outputs on the test data */
    ct_dataset *ds = ct_experiment_open_source(ex, &ex->test, "data.test", true, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    int n = (int)ct_dataset_rows(ds);
    float *x = malloc(sizeof(float) * (size_t)n * 6), *y = malloc(sizeof(float) * (size_t)n * 6);
    ck_assert_int_eq(ct_dataset_read(ds, 0, n, x, y, &err), 0);
    ct_model *m = ex->model;
    ck_assert_int_eq(ct_model_plan_inference(m, n, &err), 0);
    memcpy(m->inputs[0].data, x, sizeof(float) * (size_t)n * 6);
    ct_pass pass = {.training = false, .seed = 5};
    const ct_tensor *out = ct_model_forward(m, &pass, n);
    double v[3];
    direct_scores(out->data, y, n, _i == 0, v);
    ck_assert_msg(fabs(v[0] - values[0]) < 1e-5 * fmax(1, v[0]), "loss %.9g vs %.9g", values[0], v[0]);
    ck_assert_double_eq_tol(values[1], v[1], 1e-12);
    ck_assert_double_eq_tol(values[2], v[2], 1e-12);
    free(x), free(y);
    ct_dataset_close(ds);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* --- a masked sequence output ------------------------------------------------------------ */

#define MS_N 6
#define MS_T 4

/* Per-position classes of token sequences with padding (0) at the end and in the middle;
 * the output carries the embedding's mask, so padded positions do not count (Keras: the
 * batch's loss is sum(mask * loss) / sum(mask), and the epoch's the batches' losses
 * weighted by their sizes; metrics count unmasked positions). */
static const char *mask_config =
    "name: masked\nseed: 4\n"
    "data: {train: {path: m.h5, x: x, y: y}}\n"
    "model:\n  input_shape: [4]\n  layers:\n"
    "    - {type: embedding, input_dim: 5, output_dim: 3, mask_zero: true}\n"
    "    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: {type: sgd, learning_rate: 0.5}, "
    "loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "fit: {epochs: 1, batch_size: 4, shuffle: false, verbose: 0}\n";

/* Set 0; set 1 is set 0 with its last two rows all padding. */
static const int32_t ms_ids[2][MS_N][MS_T] = {
    {{1, 2, 3, 0}, {4, 0, 2, 1}, {2, 2, 0, 0}, {3, 1, 4, 2}, {1, 0, 0, 0}, {4, 3, 0, 0}},
    {{1, 2, 3, 0}, {4, 0, 2, 1}, {2, 2, 0, 0}, {3, 1, 4, 2}, {0, 0, 0, 0}, {0, 0, 0, 0}},
};

/* Labels: 2 at padding (where a model starting near uniform is as wrong as anywhere). */
static int32_t ms_label(int set, int r, int t)
{
    int32_t id = ms_ids[set][r][t];
    return id ? (id + r + t) % 3 : 2;
}

static void h5_ints(hid_t f, const char *name, int rows, const int32_t *v)
{
    hsize_t d[2] = {(hsize_t)rows, MS_T};
    hid_t sp = H5Screate_simple(2, d, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_NATIVE_INT32, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
}

/* m.h5: x/y (set 0), xp/yp (set 1), x4/y4 (the first 4 rows), xz/yz (2 rows of padding). */
static char *mask_dir(void)
{
    char *dir = tu_tmpdir();
    char p[4200];
    snprintf(p, sizeof p, "%s/m.h5", dir);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int32_t y[2][MS_N][MS_T];
    for (int s = 0; s < 2; s++)
        for (int r = 0; r < MS_N; r++)
            for (int t = 0; t < MS_T; t++)
                y[s][r][t] = ms_label(s, r, t);
    h5_ints(f, "x", MS_N, &ms_ids[0][0][0]);
    h5_ints(f, "y", MS_N, &y[0][0][0]);
    h5_ints(f, "xp", MS_N, &ms_ids[1][0][0]);
    h5_ints(f, "yp", MS_N, &y[1][0][0]);
    h5_ints(f, "x4", 4, &ms_ids[0][0][0]);
    h5_ints(f, "y4", 4, &y[0][0][0]);
    h5_ints(f, "xz", 2, &ms_ids[1][4][0]);
    h5_ints(f, "yz", 2, &y[1][4][0]);
    H5Fclose(f);
    tu_write(dir, "masked.yaml", mask_config);
    return dir;
}

/* The model's probabilities at row r, step t of a set, in double. */
static void ms_probs(const ct_model *m, int set, int r, int t, double *p)
{
    const float *e = m->layers[0].params[0].value + ms_ids[set][r][t] * 3;
    const float *w = m->layers[1].params[0].value, *b = m->layers[1].params[1].value;
    double z[3], mx = -1e30, sum = 0;
    for (int j = 0; j < 3; j++) {
        z[j] = b[j];
        for (int i = 0; i < 3; i++)
            z[j] += (double)e[i] * w[i * 3 + j];
        mx = fmax(mx, z[j]);
    }
    for (int j = 0; j < 3; j++)
        sum += p[j] = exp(z[j] - mx);
    for (int j = 0; j < 3; j++)
        p[j] /= sum;
}

typedef struct ms_expect {
    double loss, accuracy; /* as Keras reports them */
    double all_loss;       /* the mean over every position, padding too */
    double pooled_loss;    /* the mean over the unmasked positions of all batches at once */
} ms_expect;

/* Rows [0, n) of a set in batches of `batch`. */
static ms_expect ms_by_hand(const ct_model *m, int set, int n, int batch)
{
    ms_expect e = {0, 0, 0, 0};
    double hits = 0, counted = 0;
    for (int r0 = 0; r0 < n; r0 += batch) {
        double sum = 0, valid = 0;
        int rows = n - r0 < batch ? n - r0 : batch;
        for (int r = r0; r < r0 + rows; r++)
            for (int t = 0; t < MS_T; t++) {
                double p[3];
                ms_probs(m, set, r, t, p);
                int y = ms_label(set, r, t), best = p[1] > p[0];
                best = p[2] > p[best] ? 2 : best;
                e.all_loss -= log(p[y]);
                if (!ms_ids[set][r][t])
                    continue;
                sum -= log(p[y]);
                valid++;
                hits += best == y;
            }
        e.loss += valid ? rows * sum / valid : 0;
        e.pooled_loss += sum;
        counted += valid;
    }
    e.loss /= n;
    e.pooled_loss = counted ? e.pooled_loss / counted : 0;
    e.accuracy = counted ? hits / counted : 0;
    e.all_loss /= n * MS_T;
    return e;
}

/* Weights far from the initial near-uniform model, so that positions differ. */
static void ms_weights(ct_experiment *ex)
{
    ct_model *m = ex->model;
    tu_fill(m->layers[0].params[0].value, 15, 3, -2, 2);
    tu_fill(m->layers[1].params[0].value, 9, 32, -2, 2);
    tu_fill(m->layers[1].params[1].value, 3, 33, -1, 1);
}

static void ms_evaluate(ct_experiment *ex, const char *dir, const char *x, const char *y,
                        double *v)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/m.h5", dir);
    const char *names[4];
    ct_error err = {0};
    ck_assert_msg(ct_experiment_evaluate(ex, p, x, y, names, v, 4, &err) == 2, "%s", err.msg);
    ck_assert_str_eq(names[0], "loss");
    ck_assert_str_eq(names[1], "accuracy");
}

/* evaluate: the loss and accuracy of the unmasked positions, in batches of 4 and 2. A
 * batch of padding only adds nothing (Keras: 0 / 0 is 0 there) and makes no NaN, nor does
 * data of padding only. */
START_TEST(test_masked_output_evaluate)
{
    char *dir = mask_dir();
    ct_experiment *ex = load_in(dir, "masked.yaml");
    ms_weights(ex);
    double v[4];
    ms_evaluate(ex, dir, "x", "y", v);
    ms_expect e = ms_by_hand(ex->model, 0, MS_N, 4);
    ck_assert_msg(tu_relerr(v[0], e.loss) <= 1e-5, "loss %.9g, by hand %.9g", v[0], e.loss);
    ck_assert_msg(fabs(v[1] - e.accuracy) <= 1e-12, "accuracy %.9g, by hand %.9g", v[1],
                  e.accuracy);
    ck_assert_msg(tu_relerr(e.loss, e.all_loss) > 1e-2, "the padding makes no difference");
    ck_assert_msg(tu_relerr(e.loss, e.pooled_loss) > 1e-2, "the batches make no difference");
    ck_assert(e.accuracy > 0 && e.accuracy < 1);
    /* a batch of padding only */
    ms_evaluate(ex, dir, "xp", "yp", v);
    e = ms_by_hand(ex->model, 1, MS_N, 4);
    ck_assert_msg(isfinite(v[0]) && tu_relerr(v[0], e.loss) <= 1e-5, "loss %.9g, by hand %.9g",
                  v[0], e.loss);
    ck_assert_msg(fabs(v[1] - e.accuracy) <= 1e-12, "accuracy %.9g, by hand %.9g", v[1],
                  e.accuracy);
    ct_experiment_free(ex);
    /* nothing but padding */
    const char *small[] = {"fit.batch_size=2"};
    char p[4200];
    snprintf(p, sizeof p, "%s/masked.yaml", dir);
    ct_error err = {0};
    ex = ct_experiment_load(p, small, 1, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ms_evaluate(ex, dir, "xz", "yz", v);
    ck_assert_msg(v[0] == 0.0 && v[1] == 0.0, "padding only: loss %g, accuracy %g", v[0], v[1]);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

static ct_experiment *ms_load(const char *dir, const char *const *set, int nset)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/masked.yaml", dir);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, set, nset, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    return ex;
}

/* fit, one batch of every row: the history's values are the unmasked positions' (before
 * the update); the loss's gradient is zero at padding and (p - onehot) / (unmasked
 * positions) elsewhere; so the padding's embedding row does not move. */
START_TEST(test_masked_output_fit)
{
    char *dir = mask_dir();
    const char *one_batch[] = {"fit.batch_size=6"};
    ct_experiment *ex = ms_load(dir, one_batch, 1);
    ms_weights(ex);
    ct_model *m = ex->model;
    ms_expect e = ms_by_hand(m, 0, MS_N, MS_N);
    double p[MS_N][MS_T][3];
    int valid = 0;
    for (int r = 0; r < MS_N; r++)
        for (int t = 0; t < MS_T; t++) {
            ms_probs(m, 0, r, t, p[r][t]);
            valid += ms_ids[0][r][t] != 0;
        }
    float table[15];
    memcpy(table, m->layers[0].params[0].value, sizeof table);
    char run[4200];
    snprintf(run, sizeof run, "%s/run", dir);
    fit_into(ex, run);
    double acc, loss;
    history_read(run, &acc, &loss, NULL);
    ck_assert_msg(tu_relerr(loss, e.loss) <= 1e-5, "loss %.9g, by hand %.9g", loss, e.loss);
    ck_assert_msg(fabs(acc - e.accuracy) <= 1e-6, "accuracy %.9g, by hand %.9g", acc, e.accuracy);
    const float *g = ct_model_output_grad(m, 0);
    for (int r = 0; r < MS_N; r++)
        for (int t = 0; t < MS_T; t++)
            for (int j = 0; j < 3; j++) {
                bool pad = !ms_ids[0][r][t];
                double want = pad ? 0 : (p[r][t][j] - (j == ms_label(0, r, t))) / valid;
                float got = g[(r * MS_T + t) * 3 + j];
                ck_assert_msg(pad ? got == 0.0f : fabs(got - want) <= 1e-6,
                              "gradient at row %d step %d class %d: %.9g, want %.9g", r, t, j,
                              got, want);
            }
    const float *after = m->layers[0].params[0].value;
    for (int i = 0; i < 15; i++)
        ck_assert_msg((after[i] == table[i]) == (i < 3), "embedding row %d %s", i / 3,
                      i < 3 ? "moved" : "did not move");
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* fit in batches of 2 where the last batch is padding only: it moves no weight (the same
 * weights as without it) and the history stays finite. */
START_TEST(test_masked_padding_batch)
{
    char *dir = mask_dir();
    const char *with[] = {"fit.batch_size=2", "data.train.x=xp", "data.train.y=yp"};
    const char *without[] = {"fit.batch_size=2", "data.train.x=x4", "data.train.y=y4"};
    ct_experiment *a = ms_load(dir, with, 3), *b = ms_load(dir, without, 3);
    ms_weights(a);
    ms_weights(b);
    char run[4200];
    snprintf(run, sizeof run, "%s/with", dir);
    fit_into(a, run);
    double acc, loss;
    history_read(run, &acc, &loss, NULL);
    ck_assert_msg(isfinite(loss) && loss > 0 && isfinite(acc), "loss %g, accuracy %g", loss, acc);
    snprintf(run, sizeof run, "%s/without", dir);
    fit_into(b, run);
    ck_assert_int_eq(a->model->size, b->model->size);
    for (int64_t i = 0; i < a->model->size; i++)
        ck_assert_msg(isfinite(a->model->values[i]) &&
                      a->model->values[i] == b->model->values[i],
                      "weight %lld: %.9g with a batch of padding, %.9g without", (long long)i,
                      a->model->values[i], b->model->values[i]);
    ct_experiment_free(a);
    ct_experiment_free(b);
    free(dir);
}
END_TEST


/* The library flushes denormals while it computes (the caller's thread works too), and
 * gives the caller its own floating-point state back: a program's arithmetic after fit,
 * evaluate, predict and ct_experiment_free is what it was before. */
START_TEST(test_caller_fp_state)
{
#if defined(__x86_64__) || defined(__i386__)
    const unsigned ftz_daz = 0x8040;
    _mm_setcsr(_mm_getcsr() & ~ftz_daz);
    unsigned before = _mm_getcsr() & ~0x3fu;
    char *dir = blob_dir(4);
    ct_experiment *ex = load_in(dir, "blobs.yaml");
    char run[4096], out[4200];
    snprintf(run, sizeof run, "%s/run", dir);
    fit_into(ex, run);
    ck_assert_uint_eq(_mm_getcsr() & ~0x3fu, before);
    const char *names[8];
    double values[8];
    ct_error err = {0};
    ck_assert_int_eq(ct_experiment_evaluate(ex, NULL, NULL, NULL, names, values, 8, &err), 2);
    ck_assert_uint_eq(_mm_getcsr() & ~0x3fu, before);
    snprintf(run, sizeof run, "%s/test.h5", dir);
    snprintf(out, sizeof out, "%s/pred.h5", dir);
    ck_assert_msg(ct_experiment_predict(ex, run, NULL, out, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(_mm_getcsr() & ~0x3fu, before);
    ct_experiment_free(ex);
    ck_assert_uint_eq(_mm_getcsr() & ~0x3fu, before);
    /* The smallest normal float halved is a denormal, not 0, in the caller's arithmetic. */
    volatile float tiny = 1.17549435e-38f;
    ck_assert(tiny * 0.5f != 0.0f);
    free(dir);
#endif
}
END_TEST


/* A program that embeds the library gets OpenBLAS's better kernels too: loading an
 * experiment makes the choice the command line makes. Run in a child of its own, as the
 * choice is made once per process. */
START_TEST(test_blas_kernels_embedded)
{
#ifdef CT_HAVE_OPENBLAS
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
        getenv("OPENBLAS_CORETYPE") || getenv("CTRAIN_KEEP_BLAS_CORE")) {
        fprintf(stderr, "test_blas_kernels_embedded: skipped (no AVX2, or the kernels are "
                        "fixed by the environment)\n");
        return;
    }
    char *dir = blob_dir(5);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("CTRAIN_ASSUME_BLAS_CORE", "Prescott", 1);
        char p[4096];
        snprintf(p, sizeof p, "%s/blobs.yaml", dir);
        ct_error err = {0};
        ct_experiment *ex = ct_experiment_load(p, NULL, 0, &err);
        const char *why = NULL;
        int switched = ct_blas_choose_kernels(&why);
        const char *core = openblas_get_corename();
        bool ok = ex && switched == 1 && why && strstr(why, "generic Prescott kernels") &&
                  (!strcmp(core, "Haswell") || !strcmp(core, "SkylakeX"));
        if (!ok)
            fprintf(stderr, "kernels %s, switched %d, note %s, %s\n", core, switched,
                    why ? why : "(none)", err.msg);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the kernels were not switched");
    free(dir);
#endif
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("experiment");
    TCase *c = tcase_create("config");
    tcase_add_loop_test(c, test_bad_config, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(c, test_bad_override);
    tcase_add_test(c, test_absurd_sizes);
    tcase_add_test(c, test_memory_limit_setting);
    tcase_add_test(c, test_override_and_defaults);
    tcase_add_test(c, test_summary_mlp);
    tcase_add_test(c, test_from_logits_warning);
    tcase_add_test(c, test_crossentropy_targets);
    tcase_add_test(c, test_target_scale);
    tcase_add_test(c, test_metric_on_last_axis);
    suite_add_tcase(s, c);
    TCase *t = tcase_create("training");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_fit_synthetic);
    tcase_add_test(t, test_experiment_copy);
    tcase_add_test(t, test_caller_fp_state);
    tcase_add_test(t, test_trainable_false);
    tcase_add_test(t, test_initial_weights);
    tcase_add_test(t, test_class_weight);
    tcase_add_test(t, test_sample_weight);
    tcase_add_test(t, test_sample_weight_errors);
    tcase_add_test(t, test_own_stop_flag);
    tcase_add_test(t, test_blas_kernels_embedded);
    tcase_add_test(t, test_determinism);
    tcase_add_test(t, test_bad_data);
    tcase_add_test(t, test_shape_mismatch_data);
    tcase_add_test(t, test_predict_csv);
    tcase_add_test(t, test_fit_state_metrics);
    tcase_add_test(t, test_regularizer_in_loss);
    tcase_add_loop_test(t, test_resume_exact, 0, 6);
    tcase_add_test(t, test_resume_errors);
    tcase_add_test(t, test_checkpoint_damage);
    tcase_add_test(t, test_resume_checks_first);
    tcase_add_test(t, test_non_finite_weights);
    tcase_add_test(t, test_fit_chunked_gzip);
    tcase_add_test(t, test_token_fit);
    tcase_add_test(t, test_token_input_unscaled);
    tcase_add_test(t, test_token_data_errors);
    tcase_add_loop_test(t, test_sequence_targets, 0, 2);
    tcase_add_test(t, test_masked_output_evaluate);
    tcase_add_test(t, test_masked_output_fit);
    tcase_add_test(t, test_masked_padding_batch);
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
