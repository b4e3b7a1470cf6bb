/* test_tfevents.c - TensorFlow event files and the tensorboard callback: CRC32C against
 * published vectors and TFRecord's masked CRC against TensorBoard's own values; written
 * files read back record by record (each length and CRC checked) and decoded with the
 * generated protobuf-c functions; the callback's configuration errors; and whole runs:
 * every history.csv column as a scalar at its epoch, batch values every update_freq
 * batches, weight histograms every histogram_freq epochs, the model, a resumed run's
 * added files, and a log_dir that cannot be written. */
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "callbacks.h"
#include "experiment.h"
#include "model.h"
#include "tensorboard.pb-c.h"
#include "tfevents.h"
#include "blobs.h"
#include "testutil.h"

/* --- a reader ------------------------------------------------------------------------- */

typedef struct events {
    int n;
    Tensorboard__Event *ev[4096];
} events;

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Appends the events of path to out: every record's length and data must carry their
 * masked CRCs, and the file must end where a record ends. */
static void read_events(const char *path, events *out)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len ? len : 1);
    ck_assert_uint_eq(fread(buf, 1, len, f), len);
    fclose(f);
    size_t at = 0;
    while (at < len) {
        ck_assert_msg(len - at >= 12, "%s: a record's header is cut at byte %zu", path, at);
        uint64_t n = get_le(buf + at, 8);
        ck_assert_msg(get_le(buf + at + 8, 4) == ct_crc32c_mask(ct_crc32c(buf + at, 8)),
                      "%s: bad length CRC at byte %zu", path, at);
        ck_assert_msg(len - at - 12 >= n + 4, "%s: a record is cut at byte %zu", path, at);
        const unsigned char *data = buf + at + 12;
        ck_assert_msg(get_le(data + n, 4) == ct_crc32c_mask(ct_crc32c(data, n)),
                      "%s: bad data CRC at byte %zu", path, at);
        ck_assert_int_lt(out->n, 4096);
        Tensorboard__Event *e = tensorboard__event__unpack(NULL, n, data);
        ck_assert_msg(e != NULL, "%s: the record at byte %zu is not an Event", path, at);
        out->ev[out->n++] = e;
        at += 12 + n + 4;
    }
    free(buf);
}

static void free_events(events *e)
{
    for (int i = 0; i < e->n; i++)
        tensorboard__event__free_unpacked(e->ev[i], NULL);
    e->n = 0;
}

/* The value with tag at step (NULL if none); *count: how many events hold tag at all. */
static const Tensorboard__Summary__Value *find(const events *e, const char *tag, int64_t step,
                                               int *count)
{
    const Tensorboard__Summary__Value *found = NULL;
    if (count)
        *count = 0;
    for (int i = 0; i < e->n; i++) {
        const Tensorboard__Event *ev = e->ev[i];
        if (ev->what_case != TENSORBOARD__EVENT__WHAT_SUMMARY)
            continue;
        for (size_t k = 0; k < ev->summary->n_value; k++)
            if (!strcmp(ev->summary->value[k]->tag, tag)) {
                if (count)
                    (*count)++;
                if (ev->step == step)
                    found = ev->summary->value[k];
            }
    }
    return found;
}

static double scalar_at(const events *e, const char *tag, int64_t step)
{
    const Tensorboard__Summary__Value *v = find(e, tag, step, NULL);
    ck_assert_msg(v != NULL, "no %s at step %lld", tag, (long long)step);
    ck_assert_int_eq(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE);
    return v->simple_value;
}

/* --- CRC ------------------------------------------------------------------------------ */

START_TEST(test_crc32c)
{
    /* RFC 3720's vectors (B.4) and the common check value */
    unsigned char zeros[32] = {0}, ones[32], up[32];
    memset(ones, 0xff, sizeof ones);
    for (int i = 0; i < 32; i++)
        up[i] = (unsigned char)i;
    ck_assert_uint_eq(ct_crc32c("123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(ct_crc32c("", 0), 0);
    ck_assert_uint_eq(ct_crc32c(zeros, 32), 0x8A9136AAu);
    ck_assert_uint_eq(ct_crc32c(ones, 32), 0x62A8AB43u);
    ck_assert_uint_eq(ct_crc32c(up, 32), 0x46DD794Eu);
}
END_TEST

START_TEST(test_masked_crc)
{
    /* the values of TensorBoard's masked_crc32c */
    ck_assert_uint_eq(ct_crc32c_mask(0), 0xa282ead8u);
    ck_assert_uint_eq(ct_crc32c_mask(ct_crc32c("123456789", 9)), 0xc78ab0e5u);
    const unsigned char len24[8] = {24, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_uint_eq(ct_crc32c_mask(ct_crc32c(len24, 8)), 0x224b7fa3u);
}
END_TEST

/* --- the writer ----------------------------------------------------------------------- */

START_TEST(test_write_read)
{
    char *tmp = tu_tmpdir(), dir[4200];
    snprintf(dir, sizeof dir, "%s/a/b", tmp); /* missing parents are created */
    ct_error err = {0};
    ct_tfevents *w = ct_tfevents_open(dir, &err);
    ck_assert_msg(w != NULL, "%s", err.msg);
    char path[4300], host[256] = "", tail[64];
    snprintf(path, sizeof path, "%s", ct_tfevents_path(w));
    gethostname(host, sizeof host);
    snprintf(tail, sizeof tail, ".%ld.v2", (long)getpid());
    const char *base = strrchr(path, '/') + 1;
    ck_assert_msg(!strncmp(path, dir, strlen(dir)) && !strncmp(base, "events.out.tfevents.", 20) &&
                      strstr(base, host) && !strcmp(path + strlen(path) - strlen(tail), tail),
                  "%s", path);
    const float x[] = {-1, 0, 0.5f, 1, NAN, 2}, same[] = {3, 3, 3}, huge[] = {1e20f, 1e20f};
    ck_assert_int_eq(ct_tfevents_scalar(w, "loss", 3, 0.25, &err), 0);
    ck_assert_int_eq(ct_tfevents_scalar(w, "loss", 4, 1e10, &err), 0);
    ck_assert_int_eq(ct_tfevents_histogram(w, "w", 1, x, 6, &err), 0);
    ck_assert_int_eq(ct_tfevents_histogram(w, "same", 2, same, 3, &err), 0);
    ck_assert_int_eq(ct_tfevents_histogram(w, "huge", 2, huge, 2, &err), 0);
    ck_assert_int_eq(ct_tfevents_string(w, "notes", 0, "text", NULL, "hello\nworld", &err), 0);
    ck_assert_int_eq(ct_tfevents_string(w, "keras", 0, "graph_keras_model", "1", "{}", &err), 0);
    /* a second writer of this process in this folder gets a file of its own, named to sort
     * after the first (TensorBoard reads them in name order) */
    ct_tfevents *w2 = ct_tfevents_open(dir, &err);
    ck_assert_msg(w2 != NULL, "%s", err.msg);
    ck_assert_msg(strcmp(ct_tfevents_path(w2), path) > 0, "%s", ct_tfevents_path(w2));
    ck_assert_int_eq(ct_tfevents_close(w2, &err), 0);
    ck_assert_int_eq(ct_tfevents_close(w, &err), 0);

    events e = {0};
    read_events(path, &e);
    ck_assert_int_eq(e.n, 8);
    /* the first event: the version, at the wall time */
    ck_assert_int_eq(e.ev[0]->what_case, TENSORBOARD__EVENT__WHAT_FILE_VERSION);
    ck_assert_str_eq(e.ev[0]->file_version, "brain.Event:2");
    double now = (double)time(NULL);
    ck_assert(e.ev[0]->wall_time > now - 60 && e.ev[0]->wall_time < now + 60);
    for (int i = 1; i < e.n; i++)
        ck_assert(e.ev[i]->wall_time >= e.ev[0]->wall_time);
    ck_assert_float_eq(scalar_at(&e, "loss", 3), 0.25f);
    ck_assert_float_eq(scalar_at(&e, "loss", 4), 1e10f);
    ck_assert_ptr_null(find(&e, "loss", 5, NULL));

    const Tensorboard__Summary__Value *v = find(&e, "w", 1, NULL);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_HISTO);
    const Tensorboard__HistogramProto *h = v->histo;
    ck_assert_double_eq(h->num, 5); /* the NaN is not counted */
    ck_assert_double_eq(h->min, -1);
    ck_assert_double_eq(h->max, 2);
    ck_assert_double_eq_tol(h->sum, 2.5, 1e-12);
    ck_assert_double_eq_tol(h->sum_squares, 6.25, 1e-12);
    ck_assert_uint_eq(h->n_bucket, CT_TFEVENTS_BUCKETS);
    ck_assert_uint_eq(h->n_bucket_limit, CT_TFEVENTS_BUCKETS);
    double total = 0;
    for (size_t b = 0; b < h->n_bucket; b++) {
        total += h->bucket[b];
        if (b)
            ck_assert(h->bucket_limit[b] > h->bucket_limit[b - 1]);
    }
    ck_assert_double_eq(total, 5);
    ck_assert_double_eq(h->bucket[0], 1);                          /* -1 */
    ck_assert_double_eq(h->bucket[CT_TFEVENTS_BUCKETS - 1], 1);    /* 2 */
    ck_assert_double_eq(h->bucket_limit[CT_TFEVENTS_BUCKETS - 1], 2);
    ck_assert_double_eq_tol(h->bucket_limit[0], -0.9, 1e-12);

    h = find(&e, "same", 2, NULL)->histo;
    ck_assert_uint_eq(h->n_bucket, 1);
    ck_assert_double_eq(h->min, 3);
    ck_assert_double_eq(h->max, 3);
    ck_assert_double_eq(h->bucket[0], 3);
    ck_assert_double_eq(h->bucket_limit[0], 3.5);

    h = find(&e, "huge", 2, NULL)->histo;
    ck_assert_uint_eq(h->n_bucket, 1);
    ck_assert_double_eq(h->bucket[0], 2);

    v = find(&e, "notes", 0, NULL);
    ck_assert_int_eq(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR);
    ck_assert_int_eq(v->tensor->dtype, TENSORBOARD__DATA_TYPE__DT_STRING);
    ck_assert_ptr_nonnull(v->tensor->tensor_shape);
    ck_assert_uint_eq(v->tensor->tensor_shape->n_dim, 0);
    ck_assert_uint_eq(v->tensor->n_string_val, 1);
    ck_assert_uint_eq(v->tensor->string_val[0].len, 11);
    ck_assert(!memcmp(v->tensor->string_val[0].data, "hello\nworld", 11));
    ck_assert_str_eq(v->metadata->plugin_data->plugin_name, "text");
    ck_assert_uint_eq(v->metadata->plugin_data->content.len, 0);
    v = find(&e, "keras", 0, NULL);
    ck_assert_str_eq(v->metadata->plugin_data->plugin_name, "graph_keras_model");
    ck_assert_uint_eq(v->metadata->plugin_data->content.len, 1);
    ck_assert_int_eq(v->metadata->plugin_data->content.data[0], '1');
    free_events(&e);
    free(tmp);
}
END_TEST

START_TEST(test_open_errors)
{
    char *tmp = tu_tmpdir(), dir[4200];
    tu_write(tmp, "file", "x");
    snprintf(dir, sizeof dir, "%s/file/logs", tmp);
    ct_error err = {0};
    ck_assert_ptr_null(ct_tfevents_open(dir, &err));
    char expect[4300];
    snprintf(expect, sizeof expect, "cannot create %s/file/logs: Not a directory", tmp);
    ck_assert_str_eq(err.msg, expect);
    ck_assert_int_eq(err.code, CT_ERR_IO);
    free(tmp);
}
END_TEST

/* --- the callback's configuration ------------------------------------------------------ */

typedef struct cfg {
    ct_node *fit, *compile;
    ct_optimizer *opt;
    ct_callbacks *cb;
    ct_error err;
} cfg;

static ct_callbacks *cfg_open(cfg *c, const char *fit)
{
    memset(c, 0, sizeof *c);
    const char *comp = "{optimizer: {type: sgd, learning_rate: 0.1}}";
    c->fit = ct_config_parse(fit, strlen(fit), "cb.yaml", &c->err);
    c->compile = ct_config_parse(comp, strlen(comp), "c.yaml", &c->err);
    ck_assert_msg(c->fit && c->compile, "%s", c->err.msg);
    c->opt = ct_optimizer_new(c->compile, "optimizer", 4, &c->err);
    ck_assert_ptr_nonnull(c->opt);
    c->cb = ct_callbacks_new(c->fit, c->opt, NULL, 0, &c->err);
    return c->cb;
}

static void cfg_close(cfg *c)
{
    ct_callbacks_free(c->cb);
    ct_optimizer_free(c->opt);
    ct_node_free(c->fit);
    ct_node_free(c->compile);
}

static void expect_error(const char *fit, const char *expect)
{
    cfg c;
    ck_assert_msg(cfg_open(&c, fit) == NULL, "'%s' was accepted", fit);
    ck_assert_msg(strstr(c.err.msg, expect) != NULL, "expected '%s' in '%s'", expect, c.err.msg);
    cfg_close(&c);
}

START_TEST(test_config)
{
    expect_error("{callbacks: [{type: tensorboard, log_dri: x}]}",
                 "cb.yaml:1:34: unknown key 'log_dri' in callback 'tensorboard' (did you mean "
                 "'log_dir'?)");
    expect_error("{callbacks: [{type: tensorboard, update_freq: 0}]}",
                 "cb.yaml:1:47: update_freq must be epoch, batch or a number of batches (at "
                 "least 1), got 0");
    expect_error("{callbacks: [{type: tensorboard, update_freq: often}]}",
                 "cb.yaml:1:47: update_freq must be epoch, batch or a number of batches (at "
                 "least 1), got often");
    expect_error("{callbacks: [{type: tensorboard, histogram_freq: -1}]}", "cb.yaml:1:50: ");
    expect_error("{callbacks: [{type: tensorboard, write_graph: maybe}]}", "cb.yaml:1:47: ");
    expect_error("{callbacks: [{type: tensorboard, log_dir: ../x}]}",
                 "cb.yaml:1:43: tensorboard: log_dir '../x' leaves the run directory");
    expect_error("{callbacks: [{type: tensorboard, log_dir: checkpoint.h5}]}",
                 "cb.yaml:1:43: tensorboard: log_dir names the run's own checkpoint.h5");
    expect_error("{callbacks: [{type: tensor_board}]}",
                 "(did you mean 'tensorboard'?)");

    /* Keras's class name and the bare name; the defaults are written into the config */
    cfg c;
    ck_assert_msg(cfg_open(&c, "{callbacks: [TensorBoard, {type: tensorboard, update_freq: "
                               "batch, log_dir: /tmp/elsewhere}]}") != NULL, "%s", c.err.msg);
    ct_node *first = ct_map_get(c.fit, "callbacks")->items[0];
    ck_assert_str_eq(ct_map_get(first, "log_dir")->scalar, "logs");
    ck_assert_str_eq(ct_map_get(first, "update_freq")->scalar, "epoch");
    ck_assert_str_eq(ct_map_get(first, "histogram_freq")->scalar, "0");
    ck_assert_str_eq(ct_map_get(first, "write_graph")->scalar, "true");
    /* not opened yet: no batch is due; the absolute log_dir lies outside /tmp/r */
    ck_assert(!ct_callbacks_batch_due(c.cb, 1));
    ck_assert_int_eq(ct_callbacks_check_paths(c.cb, "/tmp/r", &c.err), -1);
    ck_assert_msg(strstr(c.err.msg, "cb.yaml:1:76: tensorboard: log_dir '/tmp/elsewhere' writes "
                                    "to /tmp/elsewhere, outside the run directory /tmp/r"),
                  "%s", c.err.msg);
    cfg_close(&c);
}
END_TEST

/* --- whole runs ----------------------------------------------------------------------- */

static const char *blob_config =
    "name: blobs\nseed: 1\n"
    "data:\n  train: {path: train.h5}\n  validation_split: 0.2\n"
    "model:\n  input_shape: [8]\n  layers:\n"
    "    - {type: dense, units: 16, activation: tanh}\n"
    "    - {type: dense, units: 4, activation: softmax}\n"
    "compile: {optimizer: {type: sgd, learning_rate: 0.1, momentum: 0.9}, "
    "loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "fit: {epochs: 3, batch_size: 32, verbose: 0}\n";

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

static int fit_run(ct_experiment *ex, const char *dir, const char *run, bool resume,
                   ct_error *err)
{
    char r[4200];
    snprintf(r, sizeof r, "%s/%s", dir, run);
    FILE *devnull = fopen("/dev/null", "w");
    ct_fit_options o = {.run_dir = resume ? NULL : r, .verbose = 0, .out = devnull,
                        .resume = resume ? r : NULL};
    int rc = ct_experiment_fit(ex, &o, err);
    fclose(devnull);
    return rc;
}

/* The event files of folder dir/sub, in name order (as TensorBoard reads them), read into
 * e; returns how many there are. */
static int read_folder(const char *dir, const char *sub, events *e)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    struct dirent **names;
    int n = scandir(p, &names, NULL, alphasort), files = 0;
    ck_assert_msg(n >= 0, "cannot list %s", p);
    for (int i = 0; i < n; i++) {
        if (strstr(names[i]->d_name, "tfevents")) {
            char f[4600];
            snprintf(f, sizeof f, "%s/%s", p, names[i]->d_name);
            read_events(f, e);
            files++;
        }
        free(names[i]);
    }
    free(names);
    return files;
}

typedef struct history {
    int ncols, nrows;
    char names[16][64];
    double v[16][16];
} history;

static void read_history(const char *dir, history *h)
{
    char p[4300], line[4096];
    snprintf(p, sizeof p, "%s/history.csv", dir);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "%s", p);
    memset(h, 0, sizeof *h);
    ck_assert(fgets(line, sizeof line, f));
    line[strcspn(line, "\n")] = 0;
    for (char *s = strtok(line, ","); s; s = strtok(NULL, ","))
        if (strcmp(s, "epoch"))
            snprintf(h->names[h->ncols++], 64, "%s", s);
    while (fgets(line, sizeof line, f)) {
        char *s = strtok(line, ",");
        ck_assert_int_eq(atoi(s), h->nrows);
        for (int c = 0; c < h->ncols; c++)
            h->v[h->nrows][c] = strtod(strtok(NULL, ","), NULL);
        h->nrows++;
    }
    fclose(f);
}

/* Every history column at every epoch, as Keras names and places it. */
static void expect_history(const history *h, const events *train, const events *val)
{
    ck_assert_int_eq(h->ncols, 5); /* accuracy, loss, val_accuracy, val_loss, learning_rate */
    for (int c = 0; c < h->ncols; c++) {
        bool is_val = !strncmp(h->names[c], "val_", 4);
        char tag[96];
        snprintf(tag, sizeof tag, "epoch_%s", h->names[c] + (is_val ? 4 : 0));
        int count;
        find(is_val ? val : train, tag, 0, &count);
        ck_assert_int_eq(count, h->nrows);
        for (int r = 0; r < h->nrows; r++)
            ck_assert_float_eq_tol(scalar_at(is_val ? val : train, tag, r), h->v[r][c],
                                   1e-6 * fmax(1, fabs(h->v[r][c])));
    }
}

START_TEST(test_fit_writes_events)
{
    char *dir = blob_dir();
    const char *set[] = {"fit.callbacks=[{type: tensorboard, update_freq: 5, histogram_freq: 2}]"};
    ct_experiment *ex = load_set(dir, set, 1);
    ct_error err = {0};
    ck_assert_msg(fit_run(ex, dir, "run", false, &err) == 0, "%s", err.msg);
    char run[4200];
    snprintf(run, sizeof run, "%s/run", dir);
    history h;
    read_history(run, &h);
    ck_assert_int_eq(h.nrows, 3);
    events train = {0}, val = {0};
    ck_assert_int_eq(read_folder(run, "logs/train", &train), 1);
    ck_assert_int_eq(read_folder(run, "logs/validation", &val), 1);
    ck_assert_str_eq(train.ev[0]->file_version, "brain.Event:2");
    ck_assert_str_eq(val.ev[0]->file_version, "brain.Event:2");
    expect_history(&h, &train, &val);
    /* 400 training rows in batches of 32: 13 a epoch, 39 in all; every 5th is logged, at
     * its global step, with the running values the progress bar shows */
    int count;
    find(&train, "batch_loss", 0, &count);
    ck_assert_int_eq(count, 7);
    for (int s = 5; s <= 35; s += 5) {
        ck_assert_ptr_nonnull(find(&train, "batch_loss", s, NULL));
        double acc = scalar_at(&train, "batch_accuracy", s);
        ck_assert(acc >= 0 && acc <= 1);
    }
    ck_assert_ptr_null(find(&train, "batch_loss", 13, NULL));
    /* the validation values again against the optimizer's steps, as Keras */
    for (int r = 0; r < 3; r++)
        ck_assert_float_eq_tol(scalar_at(&val, "evaluation_loss_vs_iterations", 13 * (r + 1)),
                               h.v[r][3], 1e-6);
    /* histograms at epochs 0 and 2; at 2 they hold the final weights */
    const char *tags[] = {"dense/kernel/histogram", "dense/bias/histogram",
                          "dense_1/kernel/histogram", "dense_1/bias/histogram"};
    const ct_model *m = ex->model;
    for (int k = 0; k < 4; k++) {
        find(&train, tags[k], 0, &count);
        ck_assert_int_eq(count, 2);
        ck_assert_ptr_nonnull(find(&train, tags[k], 0, NULL));
        const Tensorboard__Summary__Value *v = find(&train, tags[k], 2, NULL);
        ck_assert_ptr_nonnull(v);
        const ct_param *p = &m->layers[k / 2].params[k % 2];
        int64_t n = ct_shape_size(&p->shape);
        double sum = 0, lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            float x = m->values[p->offset + i];
            sum += x;
            lo = fmin(lo, x);
            hi = fmax(hi, x);
        }
        ck_assert_double_eq(v->histo->num, (double)n);
        ck_assert_double_eq_tol(v->histo->sum, sum, 1e-9);
        ck_assert_double_eq(v->histo->min, lo);
        ck_assert_double_eq(v->histo->max, hi);
    }
    /* write_graph: the summary table and the Keras config */
    const Tensorboard__Summary__Value *v = find(&train, "model_summary", 0, NULL);
    ck_assert_ptr_nonnull(v);
    char *text = strndup((const char *)v->tensor->string_val[0].data,
                         v->tensor->string_val[0].len);
    ck_assert_msg(strstr(text, "    Model: \"sequential\"") && strstr(text, "Total params: 212"),
                  "%s", text);
    free(text);
    v = find(&train, "keras", 0, NULL);
    ck_assert_ptr_nonnull(v);
    ck_assert(memmem(v->tensor->string_val[0].data, v->tensor->string_val[0].len,
                     "\"class_name\":\"Sequential\"", 25));
    free_events(&train);
    free_events(&val);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* 2 epochs, then resumed to 4: a second file in each folder, whose steps go on where the
 * first stopped, and together they hold the history of the whole run. A run without the
 * callback may be resumed with it. */
START_TEST(test_fit_resume)
{
    char *dir = blob_dir();
    const char *s2[] = {"fit.epochs=2", "fit.callbacks=[tensorboard]"},
               *s4[] = {"fit.epochs=4", "fit.callbacks=[tensorboard]"};
    ct_experiment *ex = load_set(dir, s2, 2);
    ct_error err = {0};
    ck_assert_msg(fit_run(ex, dir, "run", false, &err) == 0, "%s", err.msg);
    ct_experiment_free(ex);
    ex = load_set(dir, s4, 2);
    ck_assert_msg(fit_run(ex, dir, "run", true, &err) == 0, "%s", err.msg);
    ct_experiment_free(ex);
    char run[4200];
    snprintf(run, sizeof run, "%s/run", dir);
    history h;
    read_history(run, &h);
    ck_assert_int_eq(h.nrows, 4);
    events train = {0}, val = {0};
    ck_assert_int_eq(read_folder(run, "logs/train", &train), 2);
    ck_assert_int_eq(read_folder(run, "logs/validation", &val), 2);
    expect_history(&h, &train, &val);
    /* read in name order, as TensorBoard does, the steps only go up: none is dropped as
     * orphaned (the two runs of this process may have begun in the same second) */
    int64_t last = -1;
    for (int i = 0; i < train.n; i++)
        if (train.ev[i]->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY &&
            !strcmp(train.ev[i]->summary->value[0]->tag, "epoch_loss")) {
            ck_assert_int_gt(train.ev[i]->step, last);
            last = train.ev[i]->step;
        }
    ck_assert_int_eq(last, 3);
    /* update_freq epoch: no batch values */
    int count;
    find(&train, "batch_loss", 0, &count);
    ck_assert_int_eq(count, 0);
    free_events(&train);
    free_events(&val);

    /* tensorboard holds no state in the checkpoint: a run without it resumes with it */
    const char *plain[] = {"fit.epochs=1"},
               *more[] = {"fit.epochs=2", "fit.callbacks=[tensorboard]"};
    ex = load_set(dir, plain, 1);
    ck_assert_msg(fit_run(ex, dir, "later", false, &err) == 0, "%s", err.msg);
    ct_experiment_free(ex);
    ex = load_set(dir, more, 2);
    ck_assert_msg(fit_run(ex, dir, "later", true, &err) == 0, "%s", err.msg);
    ct_experiment_free(ex);
    snprintf(run, sizeof run, "%s/later", dir);
    ck_assert_int_eq(read_folder(run, "logs/train", &train), 1);
    find(&train, "epoch_loss", 1, &count);
    ck_assert_int_eq(count, 1);
    ck_assert_ptr_nonnull(find(&train, "epoch_loss", 1, NULL));
    free_events(&train);
    free(dir);
}
END_TEST

/* A log_dir that cannot be created stops the run before its first step. */
START_TEST(test_fit_unwritable)
{
    char *dir = blob_dir();
    char run[2048];
    snprintf(run, sizeof run, "%s/run", dir);
    ck_assert_int_eq(mkdir(run, 0777), 0);
    tu_write(run, "logs", "not a folder");
    const char *set[] = {"fit.callbacks=[tensorboard]"};
    ct_experiment *ex = load_set(dir, set, 1);
    ct_error err = {0};
    ck_assert_int_eq(fit_run(ex, dir, "run", false, &err), -1);
    char expect[4400];
    snprintf(expect, sizeof expect, "tensorboard: cannot create %s/logs/train: Not a directory",
             run);
    ck_assert_str_eq(err.msg, expect);
    struct stat st;
    char p[4400];
    snprintf(p, sizeof p, "%s/checkpoint.h5", run);
    ck_assert_int_ne(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/history.csv", run);
    ck_assert_int_ne(stat(p, &st), 0);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tfevents");
    TCase *u = tcase_create("files");
    tcase_add_test(u, test_crc32c);
    tcase_add_test(u, test_masked_crc);
    tcase_add_test(u, test_write_read);
    tcase_add_test(u, test_open_errors);
    tcase_add_test(u, test_config);
    suite_add_tcase(s, u);
    TCase *t = tcase_create("training");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_fit_writes_events);
    tcase_add_test(t, test_fit_resume);
    tcase_add_test(t, test_fit_unwritable);
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
