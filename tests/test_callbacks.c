/* test_callbacks.c - fit.callbacks: each callback's decisions on scripted epoch values
 * (checked against Keras's rules worked by hand), their errors with positions, their
 * state round trip, and whole runs that stop, resume and write files through them. */
#include <hdf5.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "callbacks.h"
#include "experiment.h"
#include "model.h"
#include "blobs.h"
#include "testutil.h"

/* --- scripted epochs ------------------------------------------------------------------ */

#define NW 3 /* floats in the hand-made model */

typedef struct fx {
    ct_node *fit, *compile;
    ct_optimizer *opt;
    ct_callbacks *cb;
    ct_model m;
    ct_error err;
} fx;

static ct_node *parse(const char *text, ct_error *err)
{
    ct_node *n = ct_config_parse(text, strlen(text), "cb.yaml", err);
    ck_assert_msg(n != NULL, "%s", err->msg);
    return n;
}

/* --allow-outside folders for the next fx_open. */
static const char *fx_allow[2];
static int fx_nallow;

/* Builds the callbacks of `fit` for an optimizer from `compile`; returns NULL on a config
 * error (left in f->err). */
static ct_callbacks *fx_open(fx *f, const char *fit, const char *compile)
{
    memset(f, 0, sizeof *f);
    f->fit = parse(fit, &f->err);
    f->compile = parse(compile ? compile : "{optimizer: {type: sgd, learning_rate: 1.0}}", &f->err);
    f->opt = ct_optimizer_new(f->compile, "optimizer", NW, &f->err);
    ck_assert_msg(f->opt != NULL, "%s", f->err.msg);
    f->m.be = ct_backend_cpu();
    f->m.size = NW;
    f->m.values = f->m.be->alloc(NW * sizeof(float));
    ck_assert_ptr_nonnull(f->m.values);
    f->cb = ct_callbacks_new(f->fit, f->opt, fx_allow, fx_nallow, &f->err);
    return f->cb;
}

static void fx_close(fx *f)
{
    ct_callbacks_free(f->cb);
    ct_optimizer_free(f->opt);
    f->m.be->free(f->m.values);
    ct_node_free(f->fit);
    ct_node_free(f->compile);
}

static void set_weights(fx *f, float a, float b, float c)
{
    const float w[NW] = {a, b, c};
    f->m.be->upload(f->m.values, w, sizeof w);
}

/* The paths model_checkpoint asked to write. */
typedef struct saves {
    int n;
    char path[16][256];
    bool weights_only[16];
} saves;

static int record_save(void *ctx, const char *path, bool weights_only, ct_error *err)
{
    (void)err;
    saves *s = ctx;
    ck_assert_int_lt(s->n, 16);
    snprintf(s->path[s->n], sizeof s->path[0], "%s", path);
    s->weights_only[s->n++] = weights_only;
    return 0;
}

static const char *const names3[] = {"loss", "val_accuracy", "val_loss"};

/* One epoch with loss = val_loss = v and val_accuracy = acc; returns whether it stops. */
static bool epoch_end(fx *f, int64_t epoch, double v, double acc, const char *dir, saves *s)
{
    const double values[3] = {v, acc, v};
    ct_epoch_logs logs = {epoch, 3, names3, values};
    bool stop = false;
    saves ignored = {0};
    int rc = ct_callbacks_epoch_end(f->cb, &f->m, f->opt, &logs, dir ? dir : "/r", record_save,
                                    s ? s : &ignored, &stop, &f->err);
    ck_assert_msg(rc == 0, "epoch %lld: %s", (long long)epoch, f->err.msg);
    return stop;
}

/* Feeds seq[0..n) as val_loss and returns the epoch at which *stop first became true, or
 * -1; once stopped, every later epoch must also ask to stop (the driver would have left). */
static int64_t stop_epoch(const char *fit, const double *seq, int n, bool as_accuracy)
{
    fx f;
    ck_assert_msg(fx_open(&f, fit, NULL) != NULL, "%s", f.err.msg);
    int64_t at = -1;
    for (int i = 0; i < n && at < 0; i++)
        if (epoch_end(&f, i, as_accuracy ? 0.0 : seq[i], as_accuracy ? seq[i] : 0.0, NULL, NULL))
            at = i;
    fx_close(&f);
    return at;
}

START_TEST(test_early_stopping_patience)
{
    const double seq[] = {1.0, 0.8, 0.9, 0.85, 0.95, 0.99};
    /* best 0.8 at epoch 1; epochs 2 and 3 do not improve: wait reaches 2 at epoch 3 */
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, monitor: val_loss, "
                                "patience: 2}]}", seq, 6, false), 3);
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, patience: 3}]}", seq, 6,
                                false), 4);
    /* patience 0 (the default): the first epoch without improvement, never epoch 0 */
    ck_assert_int_eq(stop_epoch("{callbacks: [early_stopping]}", seq, 6, false), 2);
    const double up[] = {5.0, 4.0, 3.0, 2.0};
    ck_assert_int_eq(stop_epoch("{callbacks: [early_stopping]}", up, 4, false), -1);
    /* NaN never improves */
    const double nan_seq[] = {NAN, NAN, 1.0};
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, patience: 1}]}", nan_seq,
                                3, false), 1);
}
END_TEST

START_TEST(test_early_stopping_min_delta)
{
    /* min_delta 0.1: 0.95 is no improvement on 1.0, 0.85 is (0.85 + 0.1 < 1.0), then 0.8
     * and 0.76 are not improvements on 0.85. */
    const double seq[] = {1.0, 0.95, 0.85, 0.8, 0.76, 0.7};
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, min_delta: 0.1, "
                                "patience: 1}]}", seq, 6, false), 1);
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, min_delta: 0.1, "
                                "patience: 2}]}", seq, 6, false), 4);
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, patience: 1}]}", seq, 6,
                                false), -1);
}
END_TEST

START_TEST(test_early_stopping_mode)
{
    const double acc[] = {0.5, 0.6, 0.55, 0.7};
    /* auto on an accuracy means max: 0.55 after 0.6 is the first miss */
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, monitor: val_accuracy}]}",
                                acc, 4, true), 2);
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, monitor: val_accuracy, "
                                "mode: max}]}", acc, 4, true), 2);
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, monitor: val_accuracy, "
                                "mode: min}]}", acc, 4, true), 1);
    /* max on a loss: 0.8 after 1.0 is a miss */
    const double seq[] = {1.0, 0.8, 0.9};
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, mode: max}]}", seq, 3,
                                false), 1);
}
END_TEST

START_TEST(test_early_stopping_baseline)
{
    /* Improving epochs that miss the baseline do not reset wait: 1, 2, 3, then 0.85 does
     * not improve on 0.8 and wait is 4 >= 2. Without the baseline wait is 1 there. */
    const double seq[] = {1.0, 0.9, 0.8, 0.85, 0.86, 0.87};
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, patience: 2, "
                                "baseline: 0.5}]}", seq, 6, false), 3);
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, patience: 2}]}", seq, 6,
                                false), 4);
    /* a baseline that is met behaves as none */
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, patience: 2, "
                                "baseline: 2.0}]}", seq, 6, false), 4);
}
END_TEST

START_TEST(test_early_stopping_start_from_epoch)
{
    const double seq[] = {1.0, 2.0, 3.0, 2.5, 4.0};
    ck_assert_int_eq(stop_epoch("{callbacks: [early_stopping]}", seq, 5, false), 1);
    /* epochs 0 and 1 are not looked at: best is 3.0 at epoch 2, 2.5 improves, 4.0 stops */
    ck_assert_int_eq(stop_epoch("{callbacks: [{type: early_stopping, start_from_epoch: 2}]}",
                                seq, 5, false), 4);
}
END_TEST

START_TEST(test_restore_best_weights)
{
    const double seq[] = {1.0, 0.5, 0.7, 0.6};
    for (int restore = 0; restore < 2; restore++) {
        fx f;
        char text[200];
        snprintf(text, sizeof text, "{callbacks: [{type: early_stopping, patience: 10, "
                 "restore_best_weights: %s}]}", restore ? "true" : "false");
        ck_assert_msg(fx_open(&f, text, NULL) != NULL, "%s", f.err.msg);
        for (int e = 0; e < 4; e++) {
            set_weights(&f, (float)e, 2.0f * (float)e, -(float)e);
            ck_assert(!epoch_end(&f, e, seq[e], 0, NULL, NULL));
        }
        /* Not stopped, yet the best epoch (1) is put back: restored at the end of every run,
         * and said (epochs counted from 1, as Keras does). */
        char *said = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&said, &len);
        ct_callbacks_train_end(f.cb, &f.m, out);
        fclose(out);
        ck_assert_str_eq(said, restore ? "Restoring model weights from the end of the best "
                                         "epoch: 2.\n" : "");
        free(said);
        float w[NW];
        f.m.be->download(w, f.m.values, sizeof w);
        if (restore) {
            ck_assert_float_eq(w[0], 1.0f);
            ck_assert_float_eq(w[1], 2.0f);
            ck_assert_float_eq(w[2], -1.0f);
        } else {
            ck_assert_float_eq(w[0], 3.0f);
            ck_assert_float_eq(w[1], 6.0f);
            ck_assert_float_eq(w[2], -3.0f);
        }
        fx_close(&f);
    }
    /* Stopped by patience: the best epoch's weights too. */
    fx f;
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: early_stopping, patience: 1, "
                                      "restore_best_weights: true}]}", NULL));
    const double s2[] = {0.9, 0.3, 0.4};
    bool stop = false;
    for (int e = 0; e < 3 && !stop; e++) {
        set_weights(&f, 10.0f + (float)e, 0, 0);
        stop = epoch_end(&f, e, s2[e], 0, NULL, NULL);
    }
    ck_assert(stop);
    ct_callbacks_train_end(f.cb, &f.m, NULL);
    float w[NW];
    f.m.be->download(w, f.m.values, sizeof w);
    ck_assert_float_eq(w[0], 11.0f);
    fx_close(&f);
}
END_TEST

/* --- reduce_lr_on_plateau ------------------------------------------------------------- */

static void expect_rates(const char *fit, const double *loss, const double *lr, int n)
{
    fx f;
    ck_assert_msg(fx_open(&f, fit, NULL) != NULL, "%s", f.err.msg);
    ck_assert_double_eq(f.opt->learning_rate, 1.0);
    for (int e = 0; e < n; e++) {
        ck_assert(!epoch_end(&f, e, loss[e], 0, NULL, NULL));
        ck_assert_msg(fabs(f.opt->learning_rate - lr[e]) < 1e-12, "epoch %d: rate %.17g, "
                      "expected %.17g", e, f.opt->learning_rate, lr[e]);
    }
    fx_close(&f);
}

START_TEST(test_reduce_lr_plateau)
{
    /* A flat loss: patience 2 reduces at epochs 2, 4, 6; min_lr 0.2 holds the last one. */
    const double flat[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const double lr0[12] = {1, 1, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2};
    expect_rates("{callbacks: [{type: reduce_lr_on_plateau, monitor: loss, factor: 0.5, "
                 "patience: 2, min_lr: 0.2}]}", flat, lr0, 12);
    /* cooldown 2: after a reduction two epochs reset wait, so the next one comes 3 later
     * (cooldown 1 changes nothing: the counter runs down before the test, as in Keras). */
    const double lr2[12] = {1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2};
    expect_rates("{callbacks: [{type: reduce_lr_on_plateau, monitor: loss, factor: 0.5, "
                 "patience: 2, cooldown: 2, min_lr: 0.2}]}", flat, lr2, 12);
    expect_rates("{callbacks: [{type: reduce_lr_on_plateau, monitor: loss, factor: 0.5, "
                 "patience: 2, cooldown: 1, min_lr: 0.2}]}", flat, lr0, 12);
    /* Steps smaller than the default min_delta (1e-4) are a plateau; a real one resets wait. */
    const double slow[6] = {1.0, 0.99995, 0.99992, 0.5, 0.49995, 0.49992};
    const double lr3[6] = {1, 1, 0.1, 0.1, 0.1, 0.01};
    expect_rates("{callbacks: [{type: reduce_lr_on_plateau, monitor: loss, patience: 2}]}",
                 slow, lr3, 6);
    /* Defaults: patience 10, factor 0.1, monitor val_loss. */
    double lr4[12];
    for (int i = 0; i < 12; i++)
        lr4[i] = i < 10 ? 1.0 : 0.1;
    expect_rates("{callbacks: [reduce_lr_on_plateau]}", flat, lr4, 12);
}
END_TEST

/* --- model_checkpoint ----------------------------------------------------------------- */

START_TEST(test_model_checkpoint_names)
{
    fx f;
    fx_allow[0] = "/abs"; /* an absolute path outside the run directory needs allowing */
    fx_nallow = 1;
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: model_checkpoint, filepath: "
                                      "'w-{epoch:02d}-{val_loss:.2f}.h5'}, {type: model_checkpoint, "
                                      "filepath: '/abs/e{epoch}-{val_accuracy}.h5', "
                                      "save_weights_only: true}]}", NULL));
    fx_nallow = 0;
    saves s = {0};
    epoch_end(&f, 0, 0.5, 0.25, "/run/x", &s);
    epoch_end(&f, 1, 0.1234, 0.75, "/run/x", &s);
    epoch_end(&f, 10, 2.0, 1.0, "/run/x", &s);
    ck_assert_int_eq(s.n, 6);
    ck_assert_str_eq(s.path[0], "/run/x/w-01-0.50.h5");
    ck_assert_str_eq(s.path[1], "/abs/e1-0.2500.h5");
    ck_assert_str_eq(s.path[2], "/run/x/w-02-0.12.h5");
    ck_assert_str_eq(s.path[3], "/abs/e2-0.7500.h5");
    ck_assert_str_eq(s.path[4], "/run/x/w-11-2.00.h5");
    ck_assert_str_eq(s.path[5], "/abs/e11-1.0000.h5");
    ck_assert(!s.weights_only[0] && s.weights_only[1] && !s.weights_only[4] && s.weights_only[5]);
    fx_close(&f);
}
END_TEST

/* Placeholder formats follow Python's format-spec grammar (the strings below are what
 * Python's str.format writes), built into printf formats by ctrain itself. */
START_TEST(test_model_checkpoint_formats)
{
    static const struct {
        const char *spec, *want;
        int64_t epoch;
        double v;
    } cases[] = {
        {"{epoch:03d}", "003", 2, 0},
        {"{epoch:>5}", "    3", 2, 0},
        {"{epoch:*^7d}", "***3***", 2, 0},
        {"{epoch:+d}", "+3", 2, 0},
        {"{epoch:.1f}", "3.0", 2, 0},
        {"{epoch:,}", "3,000", 2999, 0},
        {"{val_loss:.2e}", "1.23e+03", 0, 1234.5678},
        {"{val_loss:,.1f}", "1,234.6", 0, 1234.5678},
        {"{val_loss:%}", "123456.780000%", 0, 1234.5678},
        {"{val_loss:.3}", "1.23e+03", 0, 1234.5678},
        {"{val_loss:#.0f}", "1235.", 0, 1234.5678},
        {"{val_loss:_<12.2f}", "1234.57_____", 0, 1234.5678},
        {"{val_loss:=+12.1f}", "+     1234.6", 0, 1234.5678},
        {"{val_loss:012.3f}", "00001234.568", 0, 1234.5678},
        {"{val_loss: .2f}", "-0.01", 0, -0.0123},
        {"{val_loss:.1%}", "-1.2%", 0, -0.0123},
        {"{val_loss:g}", "1e-05", 0, 1e-5},
        {"{val_loss}", "0.5000", 0, 0.5},
        {"{val_loss:.2f}", "nan", 0, NAN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char fit[256];
        snprintf(fit, sizeof fit, "{callbacks: [{type: model_checkpoint, filepath: '%s'}]}",
                 cases[i].spec);
        fx f;
        ck_assert_msg(fx_open(&f, fit, NULL) != NULL, "%s: %s", cases[i].spec, f.err.msg);
        saves s = {0};
        epoch_end(&f, cases[i].epoch, cases[i].v, 0, "d", &s);
        ck_assert_int_eq(s.n, 1);
        char want[256];
        snprintf(want, sizeof want, "d/%s", cases[i].want);
        ck_assert_msg(!strcmp(s.path[0], want), "%s gave '%s', expected '%s'", cases[i].spec,
                      s.path[0], want);
        fx_close(&f);
    }
}
END_TEST

START_TEST(test_model_checkpoint_best_only)
{
    fx f;
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: model_checkpoint, filepath: "
                                      "'b{epoch}.h5', save_best_only: true}, {type: model_checkpoint, "
                                      "filepath: 'a{epoch}.h5', save_best_only: true, monitor: "
                                      "val_accuracy}]}", NULL));
    saves s = {0};
    const double loss[] = {0.5, 0.6, 0.4, 0.4, NAN, 0.3};
    const double acc[] = {0.1, 0.2, 0.2, 0.15, 0.3, 0.1};
    for (int e = 0; e < 6; e++)
        epoch_end(&f, e, loss[e], acc[e], "d", &s);
    /* val_loss improves at 1, 3, 6 (1-based); val_accuracy (auto: max) at 1, 2, 5 */
    const char *expect[] = {"d/b1.h5", "d/a1.h5", "d/a2.h5", "d/b3.h5", "d/a5.h5", "d/b6.h5"};
    ck_assert_int_eq(s.n, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_str_eq(s.path[i], expect[i]);
    fx_close(&f);
}
END_TEST

/* --- csv_logger ----------------------------------------------------------------------- */

static char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void csv_run(const char *fit, const char *dir, int64_t first, int epochs)
{
    fx f;
    ck_assert_msg(fx_open(&f, fit, NULL) != NULL, "%s", f.err.msg);
    for (int64_t e = first; e < first + epochs; e++)
        epoch_end(&f, e, 0.5 / (double)(e + 1), 1e-10 * (double)(e + 1), dir, NULL);
    fx_close(&f);
}

START_TEST(test_csv_logger)
{
    char *dir = tu_tmpdir();
    char p[4200];
    snprintf(p, sizeof p, "%s/log.csv", dir);
    csv_run("{callbacks: [{type: csv_logger, filename: log.csv}]}", dir, 0, 2);
    ck_assert_str_eq(slurp(p), "epoch,loss,val_accuracy,val_loss\n"
                               "0,0.5,1e-10,0.5\n1,0.25,2e-10,0.25\n");
    /* A fresh run without append starts the file again. */
    csv_run("{callbacks: [{type: csv_logger, filename: log.csv, separator: ';'}]}", dir, 0, 1);
    ck_assert_str_eq(slurp(p), "epoch;loss;val_accuracy;val_loss\n0;0.5;1e-10;0.5\n");
    /* append adds rows after what is there, without a second header */
    csv_run("{callbacks: [{type: csv_logger, filename: log.csv, separator: ';', append: true}]}",
            dir, 0, 1);
    ck_assert_str_eq(slurp(p), "epoch;loss;val_accuracy;val_loss\n0;0.5;1e-10;0.5\n"
                               "0;0.5;1e-10;0.5\n");
    /* append to a file that does not exist writes the header; an absolute path is kept */
    char q[4300], fit[4500];
    snprintf(q, sizeof q, "%s/other.csv", dir);
    snprintf(fit, sizeof fit, "{callbacks: [{type: csv_logger, filename: '%s', append: true}]}", q);
    fx_allow[0] = dir;
    fx_nallow = 1;
    csv_run(fit, "/nonexistent", 0, 1);
    fx_nallow = 0;
    ck_assert_str_eq(slurp(q), "epoch,loss,val_accuracy,val_loss\n0,0.5,1e-10,0.5\n");
    free(dir);
}
END_TEST

/* The experiment file's paths stay in the run directory unless a folder is allowed. */
START_TEST(test_paths_outside)
{
    fx f;
    ck_assert_ptr_null(fx_open(&f, "{callbacks: [{type: model_checkpoint, filepath: ../x.h5}]}",
                               NULL));
    ck_assert_msg(strstr(f.err.msg, "cb.yaml:1:49: model_checkpoint: filepath '../x.h5' leaves "
                                    "the run directory") &&
                      strstr(f.err.msg, "--allow-outside DIR"), "%s", f.err.msg);
    fx_close(&f);
    fx_allow[0] = "/tmp";
    fx_nallow = 1;
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: csv_logger, filename: a/../../x.csv}]}",
                                  NULL));
    fx_nallow = 0;
    ck_assert_int_eq(ct_callbacks_check_paths(f.cb, "/tmp/r", &f.err), 0);
    ck_assert_int_eq(ct_callbacks_check_paths(f.cb, "/nonexistent/r", &f.err), -1);
    ck_assert_msg(strstr(f.err.msg, "csv_logger: filename 'a/../../x.csv' writes to "
                                    "/nonexistent/x.csv, outside the run directory "
                                    "/nonexistent/r"), "%s", f.err.msg);
    fx_close(&f);
}
END_TEST

/* --- errors --------------------------------------------------------------------------- */

static void expect_config_error(const char *fit, const char *compile, const char *expect)
{
    fx f;
    ck_assert_msg(fx_open(&f, fit, compile) == NULL, "'%s' was accepted", fit);
    ck_assert_msg(strstr(f.err.msg, expect) != NULL, "expected '%s' in '%s'", expect, f.err.msg);
    ck_assert_int_ne(f.err.code, CT_OK);
    f.cb = NULL;
    fx_close(&f);
}

START_TEST(test_config_errors)
{
    expect_config_error("{callbacks: [{type: erly_stopping}]}", NULL,
                        "cb.yaml:1:21: unknown callback 'erly_stopping' (did you mean "
                        "'early_stopping'?); known: early_stopping, reduce_lr_on_plateau, "
                        "model_checkpoint, csv_logger, terminate_on_nan, backup_and_restore");
    expect_config_error("callbacks:\n  - terminate_on_nan\n  - reduce_lr_on_plateau\n",
                        "{optimizer: {type: sgd, learning_rate: {type: exponential_decay, "
                        "initial_learning_rate: 0.1, decay_steps: 10, decay_rate: 0.9}}}",
                        "cb.yaml:3:5: reduce_lr_on_plateau changes a constant learning rate; "
                        "it cannot be combined with a learning-rate schedule");
    expect_config_error("{callbacks: [{type: model_checkpoint, save_best_only: true}]}", NULL,
                        "cb.yaml:1:14: ");
    expect_config_error("{callbacks: [{type: model_checkpoint, save_best_only: true}]}", NULL,
                        "needs the key 'filepath'");
    expect_config_error("{callbacks: [{type: early_stopping, patiense: 3}]}", NULL,
                        "cb.yaml:1:37: unknown key 'patiense' in callback 'early_stopping' "
                        "(did you mean 'patience'?)");
    expect_config_error("{callbacks: [{type: early_stopping, mode: maximum}]}", NULL,
                        "cb.yaml:1:43: ");
    expect_config_error("{callbacks: [{type: reduce_lr_on_plateau, factor: 1.0}]}", NULL,
                        "cb.yaml:1:51: ");
    expect_config_error("{callbacks: [terminate_on_nan, terminate_on_nan]}", NULL,
                        "cb.yaml:1:32: terminate_on_nan is listed twice");
    expect_config_error("{callbacks: early_stopping}", NULL,
                        "cb.yaml:1:13: fit.callbacks must be a list");
    /* Formats outside Python's grammar never reach printf: refused at load, at the
     * filepath's position. */
    static const char *const bad_formats[][2] = {
        {"{epoch:s%d}", "'{epoch:s%d}': 's' is not understood here"},
        {"{epoch:n%d}", "'{epoch:n%d}': 'n' is not understood here"},
        {"{epoch:p.%p.%p}", "'{epoch:p.%p.%p}': 'p' is not understood here"},
        {"{val_loss:.4f%n}", "'{val_loss:.4f%n}': '%' is not understood here"},
        {"{val_loss:d}", "the type d formats {epoch} only"},
        {"{epoch:.2d}", "an integer takes no precision"},
        {"{epoch:999d}", "the width must be at most 64"},
        {"{val_loss:.99f}", "the precision must be at most 64"},
        {"{val_loss:./}", "'.' must be followed by the precision"},
        {"{val_loss:s}", "'s' is not understood here"},
        {"{:d}", "a placeholder is {epoch} or {name}"},
        {"w{epoch", "unclosed '{' in filepath"},
    };
    /* Files the run writes itself are not a callback's to write. */
    expect_config_error("{callbacks: [{type: csv_logger, filename: history.csv}]}", NULL,
                        "cb.yaml:1:43: csv_logger: filename names the run's own history.csv, "
                        "which the run writes itself; choose another file name");
    expect_config_error("{callbacks: [{type: csv_logger, filename: './x/../history.csv'}]}",
                        NULL, "cb.yaml:1:43: csv_logger: filename names the run's own "
                        "history.csv");
    expect_config_error("{callbacks: [{type: csv_logger, filename: .//config.yaml}]}", NULL,
                        "cb.yaml:1:43: csv_logger: filename names the run's own config.yaml");
    expect_config_error("{callbacks: [{type: model_checkpoint, filepath: weights.h5}]}", NULL,
                        "cb.yaml:1:49: model_checkpoint: filepath names the run's own "
                        "weights.h5");
    for (size_t i = 0; i < sizeof bad_formats / sizeof bad_formats[0]; i++) {
        char fit[256];
        snprintf(fit, sizeof fit, "{callbacks: [{type: model_checkpoint, filepath: '%s'}]}",
                 bad_formats[i][0]);
        expect_config_error(fit, NULL, "cb.yaml:1:49: ");
        expect_config_error(fit, NULL, bad_formats[i][1]);
    }
}
END_TEST

START_TEST(test_runtime_errors)
{
    /* A monitored value this run does not report: the message lists what it reports. */
    fx f;
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: early_stopping, monitor: val_los}]}",
                                  NULL));
    static const char *const names[] = {"accuracy", "loss", "learning_rate"};
    const double values[] = {0.5, 1.0, 0.01};
    ct_epoch_logs logs = {0, 3, names, values};
    bool stop = false;
    ck_assert_int_eq(ct_callbacks_epoch_end(f.cb, &f.m, f.opt, &logs, "/r", record_save, NULL,
                                            &stop, &f.err), -1);
    ck_assert_str_eq(f.err.msg, "cb.yaml:1:46: callback 'early_stopping' monitors 'val_los', "
                                "which this run does not report; it reports: accuracy, loss, "
                                "learning_rate");
    /* The same is found before training, with a suggestion where one is close. */
    ck_assert_int_eq(ct_callbacks_check_monitors(f.cb, 3, names, &f.err), -1);
    ck_assert_str_eq(f.err.msg, "cb.yaml:1:46: callback 'early_stopping' monitors 'val_los', "
                                "which this run does not report; it reports: accuracy, loss, "
                                "learning_rate");
    static const char *const val_names[] = {"accuracy", "loss", "val_accuracy", "val_loss"};
    ck_assert_int_eq(ct_callbacks_check_monitors(f.cb, 4, val_names, &f.err), -1);
    ck_assert_msg(strstr(f.err.msg, "(did you mean 'val_loss'?)"), "%s", f.err.msg);
    fx_close(&f);
    /* Monitors the run reports, and one that nothing reads (no save_best_only), pass. */
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: early_stopping, monitor: "
                                      "val_accuracy}, {type: model_checkpoint, filepath: "
                                      "'w.h5', monitor: nothing}]}", NULL));
    ck_assert_int_eq(ct_callbacks_check_monitors(f.cb, 4, val_names, &f.err), 0);
    fx_close(&f);
    /* The default monitor (val_loss) without validation. */
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [reduce_lr_on_plateau]}", NULL));
    ck_assert_int_eq(ct_callbacks_epoch_end(f.cb, &f.m, f.opt, &logs, "/r", record_save, NULL,
                                            &stop, &f.err), -1);
    ck_assert_msg(strstr(f.err.msg, "cb.yaml:1:14: callback 'reduce_lr_on_plateau' monitors "
                                    "'val_loss', which this run does not report"), "%s",
                  f.err.msg);
    fx_close(&f);
    /* A placeholder in filepath that names nothing. */
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: model_checkpoint, filepath: "
                                      "'w{acc}.h5'}]}", NULL));
    saves s = {0};
    ck_assert_int_eq(ct_callbacks_epoch_end(f.cb, &f.m, f.opt, &logs, "/r", record_save, &s,
                                            &stop, &f.err), -1);
    ck_assert_str_eq(f.err.msg, "cb.yaml:1:49: filepath names '{acc}', which is neither epoch "
                                "nor a value this run reports");
    ck_assert_int_eq(s.n, 0);
    fx_close(&f);
    /* csv_logger into a folder that does not exist */
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: csv_logger, filename: log.csv}]}",
                                  NULL));
    ck_assert_int_eq(ct_callbacks_epoch_end(f.cb, &f.m, f.opt, &logs, "/nonexistent/dir",
                                            record_save, NULL, &stop, &f.err), -1);
    ck_assert_msg(strstr(f.err.msg, "csv_logger: cannot write /nonexistent/dir/log.csv"), "%s",
                  f.err.msg);
    ck_assert(!stop);
    fx_close(&f);
}
END_TEST

START_TEST(test_queries)
{
    fx f;
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [terminate_on_nan, {type: backup_and_restore, "
                                      "backup_dir: /tmp/b, delete_checkpoint: false}]}", NULL));
    ck_assert(ct_callbacks_terminate_on_nan(f.cb));
    ck_assert_str_eq(ct_callbacks_backup_dir(f.cb), "/tmp/b");
    ck_assert(!ct_callbacks_backup_delete(f.cb));
    fx_close(&f);
    ck_assert_ptr_nonnull(fx_open(&f, "{callbacks: [{type: BackupAndRestore, backup_dir: b}]}",
                                  NULL));
    ck_assert(!ct_callbacks_terminate_on_nan(f.cb));
    ck_assert(ct_callbacks_backup_delete(f.cb));
    fx_close(&f);
    /* absent callbacks: none, and the resolved config holds an empty list */
    ck_assert_ptr_nonnull(fx_open(&f, "{epochs: 3}", NULL));
    ck_assert(!ct_callbacks_terminate_on_nan(f.cb));
    ck_assert_ptr_null(ct_callbacks_backup_dir(f.cb));
    ck_assert_int_eq(ct_callbacks_state_size(f.cb, 100), 0);
    const ct_node *list = ct_map_get(f.fit, "callbacks");
    ck_assert(list != NULL && list->type == CT_NODE_SEQ && list->len == 0);
    fx_close(&f);
}
END_TEST

/* --- state round trip ----------------------------------------------------------------- */

START_TEST(test_state_round_trip)
{
    const char *fit = "{callbacks: [{type: early_stopping, patience: 3, restore_best_weights: "
                      "true}, {type: reduce_lr_on_plateau, monitor: loss, patience: 1, factor: "
                      "0.5}, {type: model_checkpoint, filepath: 'c{epoch}.h5', save_best_only: "
                      "true}, {type: csv_logger, filename: log.csv}]}";
    char *dir = tu_tmpdir();
    const double seq[] = {1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.76, 0.77};
    fx a, b;
    ck_assert_ptr_nonnull(fx_open(&a, fit, NULL));
    ck_assert_ptr_nonnull(fx_open(&b, fit, NULL));
    for (int e = 0; e < 3; e++) {
        set_weights(&a, (float)e, 1, 1);
        ck_assert(!epoch_end(&a, e, seq[e], 0, dir, NULL));
    }
    ck_assert_double_eq(a.opt->learning_rate, 0.5); /* 0.9 after 0.8 */
    int64_t n = ct_callbacks_state_size(a.cb, NW);
    ck_assert_int_eq(n, ct_callbacks_state_size(b.cb, NW));
    ck_assert_int_gt(n, NW);
    double *st = malloc(sizeof(double) * (size_t)n);
    ct_callbacks_get_state(a.cb, st, NW);
    ct_callbacks_set_state(b.cb, st, NW, b.opt);
    ck_assert_double_eq(b.opt->learning_rate, 0.5);
    /* b's model holds other weights: only the saved best must come back */
    set_weights(&b, 2, 1, 1);
    bool stopped = false;
    for (int e = 3; e < 8 && !stopped; e++) {
        saves sa = {0}, sb = {0};
        set_weights(&a, (float)e, 1, 1);
        set_weights(&b, (float)e, 1, 1);
        bool x = epoch_end(&a, e, seq[e], 0, dir, &sa), y = epoch_end(&b, e, seq[e], 0, dir, &sb);
        ck_assert_int_eq(x, y);
        ck_assert_double_eq(a.opt->learning_rate, b.opt->learning_rate);
        ck_assert_int_eq(sa.n, sb.n);
        ck_assert_int_eq(sa.n, e == 4); /* 0.7 beats 0.8 */
        ck_assert_msg(x == (e == 7), "epoch %d: stop %d", e, x);
        stopped = x;
    }
    ck_assert(stopped);
    /* loss: best 0.8, then 0.7 at epoch 4; every other epoch from 2 on halves the rate */
    ck_assert_double_eq(a.opt->learning_rate, 0.5 * 0.5 * 0.5 * 0.5 * 0.5);
    ct_callbacks_train_end(a.cb, &a.m, NULL);
    ct_callbacks_train_end(b.cb, &b.m, NULL);
    float wa[NW], wb[NW];
    a.m.be->download(wa, a.m.values, sizeof wa);
    b.m.be->download(wb, b.m.values, sizeof wb);
    ck_assert_float_eq(wa[0], 4.0f);
    ck_assert_float_eq(wb[0], 4.0f);
    /* the csv file continued without a new header (both wrote the resumed rows) */
    char p[4200];
    snprintf(p, sizeof p, "%s/log.csv", dir);
    const char *text = slurp(p);
    const char *head = "epoch,loss,val_accuracy,val_loss\n0,1,0,1\n1,0.8,0,0.8\n2,0.9,0,0.9\n"
                       "3,0.85,0,0.85\n3,0.85,0,0.85\n4,0.7,0,0.7\n";
    ck_assert_msg(strncmp(text, head, strlen(head)) == 0, "%s", text);
    ck_assert_ptr_null(strstr(text + 5, "epoch"));
    /* The state of a fresh object, written and read back, changes nothing. */
    fx c;
    ck_assert_ptr_nonnull(fx_open(&c, fit, NULL));
    ct_callbacks_get_state(c.cb, st, NW);
    ct_callbacks_set_state(c.cb, st, NW, c.opt);
    ck_assert_double_eq(c.opt->learning_rate, 1.0);
    ck_assert(!epoch_end(&c, 0, 5.0, 0, dir, NULL));
    fx_close(&c);
    free(st);
    fx_close(&a);
    fx_close(&b);
    free(dir);
}
END_TEST

/* --- whole runs ----------------------------------------------------------------------- */

static const char *blob_config =
    "name: blobs\nseed: 1\n"
    "data:\n  train: {path: train.h5}\n  validation_split: 0.2\n"
    "model:\n  input_shape: [8]\n  layers:\n"
    "    - {type: dense, units: 16, activation: tanh}\n"
    "    - {type: dropout, rate: 0.1}\n"
    "    - {type: dense, units: 4, activation: softmax}\n"
    "compile: {optimizer: {type: sgd, learning_rate: 0.1, momentum: 0.9}, "
    "loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "fit: {epochs: 5, batch_size: 32, verbose: 0}\n";

static char *blob_dir(void)
{
    char *dir = tu_tmpdir();
    char p[4096];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    write_blobs(p, 500, 1, false, 0);
    tu_write(dir, "blobs.yaml", blob_config);
    return dir;
}

static ct_experiment *load_set(const char *dir, const char **set, int nset)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/blobs.yaml", dir);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, set, nset, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    return ex;
}

/* Fits into dir/run (or resumes from dir/resume); returns fit's result, err filled. */
static int fit_run(ct_experiment *ex, const char *dir, const char *run, const char *resume,
                   int verbose, FILE *out, ct_error *err)
{
    char r[4200], q[4200];
    snprintf(r, sizeof r, "%s/%s", dir, run);
    if (resume)
        snprintf(q, sizeof q, "%s/%s", dir, resume);
    FILE *devnull = out ? NULL : fopen("/dev/null", "w");
    ct_fit_options o = {.run_dir = resume ? NULL : r, .verbose = verbose,
                        .out = out ? out : devnull, .resume = resume ? q : NULL};
    int rc = ct_experiment_fit(ex, &o, err);
    if (devnull)
        fclose(devnull);
    return rc;
}

static void fit_ok(ct_experiment *ex, const char *dir, const char *run, const char *resume)
{
    ct_error err = {0};
    int rc = fit_run(ex, dir, run, resume, 0, NULL, &err);
    ck_assert_msg(rc == 0, "fit failed: %s", err.msg);
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

static int count_rows(const char *text)
{
    int n = -1; /* the header */
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

static bool exists_in(const char *dir, const char *run, const char *file)
{
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s/%s", dir, run, file);
    return stat(p, &st) == 0;
}

static float *copy_weights(const ct_experiment *ex)
{
    float *w = malloc(sizeof(float) * (size_t)ex->model->size);
    memcpy(w, ex->model->values, sizeof(float) * (size_t)ex->model->size);
    return w;
}

START_TEST(test_fit_early_stopping)
{
    char *dir = blob_dir();
    /* min_delta 100: only epoch 0 improves (on infinity), so patience 2 stops after epoch 3 */
    const char *set[] = {"fit.epochs=10", "fit.callbacks=[{type: early_stopping, monitor: loss, "
                                          "min_delta: 100, patience: 2}]"};
    ct_experiment *ex = load_set(dir, set, 2);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ct_error err = {0};
    ck_assert_msg(fit_run(ex, dir, "run", NULL, 2, out, &err) == 0, "%s", err.msg);
    fclose(out);
    ck_assert_int_eq(count_rows(read_text(dir, "run", "history.csv")), 3);
    ck_assert_msg(strstr(buf, "early_stopping stopped the run after epoch 3"), "%s", buf);
    ck_assert(exists_in(dir, "run", "weights.h5"));
    free(buf);
    ct_experiment_free(ex);
    /* the same without min_delta trains on */
    const char *set2[] = {"fit.epochs=4", "fit.callbacks=[{type: early_stopping, monitor: loss, "
                                          "patience: 2}]"};
    ex = load_set(dir, set2, 2);
    fit_ok(ex, dir, "run2", NULL);
    ck_assert_int_eq(count_rows(read_text(dir, "run2", "history.csv")), 4);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* A linear regression with a rate far too large diverges geometrically until its output
 * overflows, with the weights still finite. (Softmax with cross-entropy never gets there:
 * the clipped loss stays finite even at a rate of 1e30.) */
#define NAN_SETTINGS "compile.optimizer={type: sgd, learning_rate: 100}", "fit.epochs=10", \
        "model.layers=[{type: dense, units: 1}]", "compile.loss=mse", "compile.metrics=[]"
#define NAN_NSET 5

START_TEST(test_fit_terminate_on_nan)
{
    char *dir = blob_dir();
    const char *set[] = {NAN_SETTINGS, "fit.callbacks=[terminate_on_nan]"};
    ct_experiment *ex = load_set(dir, set, NAN_NSET + 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ct_error err = {0};
    int rc = fit_run(ex, dir, "run", NULL, 2, out, &err);
    fclose(out);
    ck_assert_msg(rc == 0, "fit failed: %s", err.msg);
    ck_assert_msg(strstr(buf, "terminate_on_nan stopped the run: the loss became") &&
                  strstr(buf, "layer '"), "%s", buf);
    for (int64_t i = 0; i < ex->model->size; i++)
        ck_assert_msg(isfinite(ex->model->values[i]), "weight %lld is %g", (long long)i,
                      ex->model->values[i]);
    ck_assert(exists_in(dir, "run", "weights.h5"));
    ck_assert_int_lt(count_rows(read_text(dir, "run", "history.csv")), 10); /* stopped early */
    /* the saved file holds those finite weights */
    float *w = copy_weights(ex);
    ct_experiment *again = load_set(dir, set, NAN_NSET);
    char p[4200];
    snprintf(p, sizeof p, "%s/run/weights.h5", dir);
    ck_assert_msg(ct_experiment_load_weights(again, p, &err) == 0, "%s", err.msg);
    ck_assert(memcmp(w, again->model->values, sizeof(float) * (size_t)ex->model->size) == 0);
    free(w);
    free(buf);
    ct_experiment_free(again);
    ct_experiment_free(ex);
    /* without the callback the same run is an error */
    const char *set2[] = {NAN_SETTINGS};
    ex = load_set(dir, set2, NAN_NSET);
    ck_assert_int_eq(fit_run(ex, dir, "run2", NULL, 0, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "the loss became"), "%s", err.msg);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

START_TEST(test_fit_backup_and_restore)
{
    char *dir = blob_dir();
    char plant[4400], fresh[4400];
    /* a 1-epoch run that keeps its backup checkpoint: what a crashed run leaves behind */
    snprintf(plant, sizeof plant, "fit.callbacks=[{type: backup_and_restore, backup_dir: '%s/bk', "
             "delete_checkpoint: false}]", dir);
    const char *s1[] = {"fit.epochs=1", plant};
    ct_experiment *ex = load_set(dir, s1, 2);
    fit_ok(ex, dir, "first", NULL);
    ct_experiment_free(ex);
    ck_assert(exists_in(dir, "bk", "checkpoint.h5"));
    /* the run again, 3 epochs, in a new run directory: it resumes from the backup */
    snprintf(plant, sizeof plant, "fit.callbacks=[{type: backup_and_restore, backup_dir: '%s/bk'}]",
             dir);
    const char *s2[] = {"fit.epochs=3", plant};
    ex = load_set(dir, s2, 2);
    fit_ok(ex, dir, "resumed", NULL);
    float *w1 = copy_weights(ex);
    int64_t n = ex->model->size;
    ct_experiment_free(ex);
    ck_assert(!exists_in(dir, "bk", "checkpoint.h5"));
    /* an unbroken 3-epoch run with an empty backup folder */
    snprintf(fresh, sizeof fresh, "fit.callbacks=[{type: backup_and_restore, backup_dir: '%s/bk2'}]",
             dir);
    const char *s3[] = {"fit.epochs=3", fresh};
    ex = load_set(dir, s3, 2);
    fit_ok(ex, dir, "straight", NULL);
    ck_assert(!exists_in(dir, "bk2", "checkpoint.h5"));
    const char *h = read_text(dir, "straight", "history.csv");
    ck_assert_int_eq(count_rows(h), 3);
    ck_assert_str_eq(read_text(dir, "resumed", "history.csv"), h);
    ck_assert(memcmp(w1, ex->model->values, sizeof(float) * (size_t)n) == 0);
    free(w1);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

START_TEST(test_fit_model_checkpoint)
{
    char *dir = blob_dir();
    const char *set[] = {"fit.epochs=2", "fit.callbacks=[{type: model_checkpoint, filepath: "
                                         "'w-{epoch:02d}-{val_loss:.1f}.h5', save_weights_only: "
                                         "true}, {type: model_checkpoint, filepath: 'c{epoch}.h5'}]"};
    ct_experiment *ex = load_set(dir, set, 2);
    fit_ok(ex, dir, "run", NULL);
    /* the names carry each epoch's val_loss with one decimal, as history.csv has it */
    const char *h = read_text(dir, "run", "history.csv");
    double vl[2];
    const char *line = strchr(h, '\n') + 1;
    for (int e = 0; e < 2; e++) {
        double a, b, c, d, lr;
        int ep;
        ck_assert_int_eq(sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf", &ep, &a, &b, &c, &d, &lr), 6);
        vl[e] = d;
        line = strchr(line, '\n') + 1;
    }
    char name[64];
    for (int e = 0; e < 2; e++) {
        snprintf(name, sizeof name, "w-%02d-%.1f.h5", e + 1, vl[e]);
        ck_assert_msg(exists_in(dir, "run", name), "no %s", name);
        snprintf(name, sizeof name, "c%d.h5", e + 1);
        ck_assert_msg(exists_in(dir, "run", name), "no %s", name);
    }
    /* the last epoch's weights file holds the final weights */
    float *w = copy_weights(ex);
    ct_experiment *again = load_set(dir, NULL, 0);
    char p[4200];
    snprintf(p, sizeof p, "%s/run/w-02-%.1f.h5", dir, vl[1]);
    ct_error err = {0};
    ck_assert_msg(ct_experiment_load_weights(again, p, &err) == 0, "%s", err.msg);
    ck_assert(memcmp(w, again->model->values, sizeof(float) * (size_t)ex->model->size) == 0);
    /* the first epoch's full checkpoint resumes to the same end */
    ct_experiment_free(again);
    const char *set2[] = {"fit.epochs=2", set[1]};
    again = load_set(dir, set2, 2);
    ck_assert_msg(fit_run(again, dir, "x", "run/c1.h5", 0, NULL, &err) == 0, "%s", err.msg);
    ck_assert(memcmp(w, again->model->values, sizeof(float) * (size_t)ex->model->size) == 0);
    free(w);
    ct_experiment_free(again);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* 4 epochs in one go and 2 + resume + 2, with early_stopping (restoring the best weights)
 * and reduce_lr_on_plateau (lowering the rate every epoch): the same weights and history. */
START_TEST(test_fit_resume_with_callbacks)
{
    char *dir = blob_dir();
    const char *cbs = "fit.callbacks=[{type: early_stopping, patience: 100, restore_best_weights: "
                      "true}, {type: reduce_lr_on_plateau, monitor: loss, min_delta: 10, "
                      "patience: 1, factor: 0.5}, {type: csv_logger, filename: log.csv}]";
    const char *s4[] = {"fit.epochs=4", cbs}, *s2[] = {"fit.epochs=2", cbs};
    ct_experiment *ex = load_set(dir, s4, 2);
    fit_ok(ex, dir, "full", NULL);
    float *w0 = copy_weights(ex);
    int64_t n = ex->model->size;
    ct_experiment_free(ex);
    ex = load_set(dir, s2, 2);
    fit_ok(ex, dir, "half", NULL);
    ct_experiment_free(ex);
    ex = load_set(dir, s4, 2);
    fit_ok(ex, dir, "half", "half");
    ck_assert(memcmp(w0, ex->model->values, sizeof(float) * (size_t)n) == 0);
    ct_experiment_free(ex);
    const char *h = read_text(dir, "full", "history.csv");
    ck_assert_str_eq(read_text(dir, "half", "history.csv"), h);
    ck_assert_str_eq(read_text(dir, "half", "log.csv"), read_text(dir, "full", "log.csv"));
    /* the rate column: epoch 1 sets the best loss, each later one halves the rate */
    const char *line = strchr(h, '\n') + 1;
    for (int e = 0; e < 4; e++) {
        const char *end = strchr(line, '\n');
        ck_assert_ptr_nonnull(end);
        char row[512];
        snprintf(row, sizeof row, "%.*s", (int)(end - line), line);
        const char *last = strrchr(row, ',');
        ck_assert_ptr_nonnull(last);
        tu_assert_close(strtod(last + 1, NULL), 0.1 * pow(0.5, e > 0 ? e - 1 : 0), 1e-6);
        line = end + 1;
    }
    free(w0);
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("callbacks");
    TCase *u = tcase_create("scripted");
    tcase_set_timeout(u, 30);
    tcase_add_test(u, test_early_stopping_patience);
    tcase_add_test(u, test_early_stopping_min_delta);
    tcase_add_test(u, test_early_stopping_mode);
    tcase_add_test(u, test_early_stopping_baseline);
    tcase_add_test(u, test_early_stopping_start_from_epoch);
    tcase_add_test(u, test_restore_best_weights);
    tcase_add_test(u, test_reduce_lr_plateau);
    tcase_add_test(u, test_model_checkpoint_names);
    tcase_add_test(u, test_model_checkpoint_best_only);
    tcase_add_test(u, test_csv_logger);
    tcase_add_test(u, test_paths_outside);
    tcase_add_test(u, test_config_errors);
    tcase_add_test(u, test_model_checkpoint_formats);
    tcase_add_test(u, test_runtime_errors);
    tcase_add_test(u, test_queries);
    tcase_add_test(u, test_state_round_trip);
    suite_add_tcase(s, u);
    TCase *t = tcase_create("training");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_fit_early_stopping);
    tcase_add_test(t, test_fit_terminate_on_nan);
    tcase_add_test(t, test_fit_backup_and_restore);
    tcase_add_test(t, test_fit_model_checkpoint);
    tcase_add_test(t, test_fit_resume_with_callbacks);
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
