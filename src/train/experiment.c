/* experiment.c - the experiment schema: reads every section of the config tree with the
 * typed getters (defaults filled in), builds the model, and checks data against it. */
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "callbacks.h"
#include "data.h"
#include "experiment.h"
#include "parallel.h"
#include "weights.h"

/* backend.memory_limit_mb at most 2^40 MiB (1 EiB): a limit, never an allocation size. */
#define CT_MAX_MEMORY_MB (INT64_C(1) << 40)

void ct_set_threads(int threads) { ct_threads_set(threads); }

/* p relative to the config file's folder, made absolute so the resolved config written into
 * a run directory still finds the data from there. Caller frees. */
static char *resolve_path(const char *config_path, const char *p)
{
    char *joined;
    if (p[0] == '/') {
        joined = strdup(p);
    } else {
        char *copy = strdup(config_path), cwd[4096];
        if (!copy)
            return NULL;
        const char *dir = dirname(copy);
        bool relative = dir[0] != '/';
        if (relative && !getcwd(cwd, sizeof cwd))
            relative = false;
        size_t n = strlen(dir) + strlen(p) + (relative ? strlen(cwd) : 0) + 3;
        joined = malloc(n);
        if (joined)
            snprintf(joined, n, "%s%s%s/%s", relative ? cwd : "", relative ? "/" : "", dir, p);
        free(copy);
    }
    char *real = joined ? realpath(joined, NULL) : NULL;
    if (real) {
        free(joined);
        return real;
    }
    return joined;
}

static int read_source(ct_experiment *ex, ct_node *data, const char *key, ct_source *src,
                       ct_error *err)
{
    static const char *const keys[] = {"path", "x", "y", NULL};
    ct_node *n = ct_map_get(data, key);
    if (!n)
        return 0;
    char what[32];
    snprintf(what, sizeof what, "data.%s", key);
    if (n->type != CT_NODE_MAP)
        return ct_node_err(err, n, "%s must be a map {path: FILE.h5, x: DATASET, y: DATASET}", what);
    const char *path;
    if (ct_cfg_check_keys(n, keys, what, err) < 0 || ct_cfg_string(n, "path", NULL, &path, err) < 0 ||
        ct_cfg_string(n, "x", "x", &src->x, err) < 0 || ct_cfg_string(n, "y", "y", &src->y, err) < 0)
        return -1;
    src->path = resolve_path(ex->path, path);
    if (!src->path)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ct_map_set_scalar(n, "path", src->path);
    src->given = true;
    src->node = n;
    return 0;
}

static int read_data(ct_experiment *ex, ct_error *err)
{
    static const char *const keys[] = {"train", "test", "validation", "validation_split",
                                       "split", "scale", "memory_limit_mb", NULL};
    static const char *const splits[] = {"last", "shuffled", NULL};
    ct_node *data = ct_map_get(ex->root, "data");
    if (!data)
        data = ct_map_set_map(ex->root, "data");
    if (data->type != CT_NODE_MAP)
        return ct_node_err(err, data, "'data' must be a map with train, test, validation_split, ...");
    int split;
    int64_t mb;
    if (ct_cfg_check_keys(data, keys, "data", err) < 0 ||
        read_source(ex, data, "train", &ex->train, err) < 0 ||
        read_source(ex, data, "test", &ex->test, err) < 0 ||
        read_source(ex, data, "validation", &ex->validation, err) < 0 ||
        ct_cfg_float(data, "validation_split", 0.0, 0.0, 0.99, &ex->validation_split, err) < 0 ||
        ct_cfg_enum(data, "split", "last", splits, &split, err) < 0 ||
        ct_cfg_float(data, "scale", 1.0, -1e30, 1e30, &ex->scale, err) < 0 ||
        ct_cfg_int(data, "memory_limit_mb", 2048, 1, INT64_C(1) << 30, &mb, err) < 0)
        return -1;
    ex->split_mode = (ct_split_mode)split;
    ex->memory_limit = (size_t)mb << 20;
    if (ex->validation.given && ex->validation_split > 0)
        return ct_node_err(err, ct_map_get(data, "validation_split"),
                           "give either data.validation or data.validation_split, not both");
    if (ex->validation_split > 0 && !ex->train.given)
        return ct_node_err(err, ct_map_get(data, "validation_split"),
                           "validation_split needs data.train");
    return 0;
}

static int read_compile(ct_experiment *ex, ct_error *err)
{
    static const char *const keys[] = {"optimizer", "loss", "metrics", NULL};
    ct_node *c = ct_map_get(ex->root, "compile");
    if (!c)
        return ct_err(err, CT_ERR_CONFIG, "%s: the experiment needs a 'compile' section with "
                      "at least a loss", ex->path);
    if (c->type != CT_NODE_MAP)
        return ct_node_err(err, c, "'compile' must be a map with optimizer, loss and metrics");
    if (ct_cfg_check_keys(c, keys, "compile", err) < 0 || ct_loss_parse(c, "loss", &ex->loss, err) < 0)
        return -1;
    ct_model *m = ex->model;
    /* Metrics act on the last axis, like the loss (earlier axes are positions). */
    const ct_shape *out = ct_model_output_shape(m);
    int64_t cols = out->ndim ? out->dim[out->ndim - 1] : 1;
    ct_node *metrics = ct_map_get(c, "metrics");
    if (!metrics)
        metrics = ct_map_set_seq(c, "metrics");
    if (metrics->type == CT_NODE_SCALAR && !ct_node_is_null(metrics)) {
        /* `metrics: accuracy` means a list of one. */
        char *name = strdup(metrics->scalar);
        ct_node *seq = ct_map_set_seq(c, "metrics");
        ct_seq_append_scalar(seq, name);
        free(name);
        metrics = seq;
    }
    if (metrics->type == CT_NODE_SCALAR) {
        metrics = ct_map_set_seq(c, "metrics");
    }
    if (metrics->type != CT_NODE_SEQ)
        return ct_node_err(err, metrics, "compile.metrics must be a list such as [accuracy]");
    if (metrics->len > CT_MAX_METRICS)
        return ct_node_err(err, metrics, "at most %d metrics are supported", CT_MAX_METRICS);
    for (size_t i = 0; i < metrics->len; i++) {
        if (ct_metric_init(&ex->metrics[i], metrics->items[i], &ex->loss, cols, err) < 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(ex->metrics[i].name, ex->metrics[j].name) == 0)
                return ct_node_err(err, metrics->items[i], "metric '%s' is listed twice",
                                   ex->metrics[i].name);
        ex->nmetrics = (int)i + 1;
    }
    ex->optimizer = ct_optimizer_new_on(c, "optimizer", m->trainable, m->be, err);
    if (!ex->optimizer)
        return -1;
    /* Softmax + crossentropy (sigmoid + binary crossentropy) are computed fused: stable,
     * and the gradient is simply p - y. */
    ct_layer *last = &m->layers[m->nlayers - 1];
    if (last->kind->output_activation &&
        ct_loss_can_fuse(&ex->loss, last->kind->output_activation(last))) {
        last->act_fused = true;
        ex->loss.fused = true;
    }
    return 0;
}

/* backup_and_restore's backup_dir is relative to the experiment file's folder, as data
 * paths are, and is made absolute in the tree so the resolved config keeps meaning it. */
static int resolve_backup_dirs(const ct_experiment *ex, ct_node *fit, ct_error *err)
{
    ct_node *cbs = ct_map_get(fit, "callbacks");
    for (size_t i = 0; cbs && cbs->type == CT_NODE_SEQ && i < cbs->len; i++) {
        ct_node *n = cbs->items[i], *type = ct_map_get(n, "type");
        if (!type || type->type != CT_NODE_SCALAR || (strcmp(type->scalar, "backup_and_restore")
                                                      && strcmp(type->scalar, "BackupAndRestore")))
            continue;
        ct_node *d = ct_map_get(n, "backup_dir");
        if (ct_node_is_null(d) || d->type != CT_NODE_SCALAR || !d->scalar[0] || d->scalar[0] == '/')
            continue;
        char *abs = resolve_path(ex->path, d->scalar);
        if (!abs)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        free(d->scalar);
        d->scalar = abs;
    }
    return 0;
}

static int read_fit(ct_experiment *ex, ct_error *err)
{
    static const char *const keys[] = {"epochs", "batch_size", "shuffle", "validation_freq",
                                       "verbose", "callbacks", NULL};
    static const char *const verbosity[] = {"auto", "0", "1", "2", NULL};
    ct_node *f = ct_map_get(ex->root, "fit");
    if (!f)
        f = ct_map_set_map(ex->root, "fit");
    if (f->type != CT_NODE_MAP)
        return ct_node_err(err, f, "'fit' must be a map with epochs, batch_size, ...");
    int verbose;
    if (ct_cfg_check_keys(f, keys, "fit", err) < 0 ||
        ct_cfg_int(f, "epochs", 1, 1, 1000000000, &ex->epochs, err) < 0 ||
        ct_cfg_int(f, "batch_size", 32, 1, 1 << 24, &ex->batch_size, err) < 0 ||
        ct_cfg_bool(f, "shuffle", true, &ex->shuffle, err) < 0 ||
        ct_cfg_int(f, "validation_freq", 1, 1, 1000000000, &ex->validation_freq, err) < 0 ||
        ct_cfg_enum(f, "verbose", "auto", verbosity, &verbose, err) < 0)
        return -1;
    ex->verbose = verbose - 1;
    if (resolve_backup_dirs(ex, f, err) < 0)
        return -1;
    ex->callbacks = ct_callbacks_new(f, ex->optimizer, err);
    return ex->callbacks ? 0 : -1;
}

static int read_backend(ct_experiment *ex, const ct_backend **be, ct_model_budget *budget,
                        ct_error *err)
{
    static const char *const keys[] = {"device", "threads", "memory_limit_mb", NULL};
    static const char *const devices[] = {"cpu", "cuda", NULL};
    ct_node *b = ct_map_get(ex->root, "backend");
    if (!b)
        b = ct_map_set_map(ex->root, "backend");
    if (b->type != CT_NODE_MAP)
        return ct_node_err(err, b, "'backend' must be a map such as {device: cpu, threads: 2}");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    /* The default is the machine's memory, as the default thread count is its cores. */
    double phys = ct_physical_memory();
    int64_t phys_mb = phys >= (1 << 20) ? (int64_t)(phys / (1 << 20)) : CT_MAX_MEMORY_MB;
    bool given = ct_map_get(b, "memory_limit_mb") != NULL;
    int device;
    int64_t threads, mb;
    if (ct_cfg_check_keys(b, keys, "backend", err) < 0 ||
        ct_cfg_enum(b, "device", "cpu", devices, &device, err) < 0 ||
        ct_cfg_int(b, "threads", cores > 0 ? cores : 1, 1, 1024, &threads, err) < 0 ||
        ct_cfg_int(b, "memory_limit_mb", phys_mb, 1, CT_MAX_MEMORY_MB, &mb, err) < 0)
        return -1;
    ex->threads = (int)threads;
    *budget = (ct_model_budget){(double)mb * (1 << 20), !given, 1, 0, 0};
    *be = ct_backend_cpu();
    if (device == 1) {
        /* Never a silent fallback to the CPU: a run asked for a GPU gets one or stops. */
        ct_error why;
        if (!(*be = ct_backend_cuda(&why)))
            return ct_node_err(err, ct_map_get(b, "device"), "device: cuda: %s", why.msg);
    }
    return 0;
}

static char *default_name(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    char *base = strdup(basename(copy));
    free(copy);
    if (base) {
        char *dot = strrchr(base, '.');
        if (dot && dot != base)
            *dot = 0;
    }
    return base;
}

static int read_experiment(ct_experiment *ex, ct_error *err)
{
    static const char *const keys[] = {"name", "seed", "data", "model", "compile", "fit",
                                       "backend", NULL};
    ct_node *root = ex->root;
    if (ct_cfg_check_keys(root, keys, "the experiment", err) < 0)
        return -1;
    char *def = default_name(ex->path);
    int rc = def ? ct_cfg_string(root, "name", def, &ex->name, err)
                 : ct_err(err, CT_ERR_NOMEM, "out of memory");
    free(def);
    if (rc == 0 && (!ex->name[0] || ex->name[0] == '.' ||
                    strspn(ex->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789_.-") != strlen(ex->name)))
        return ct_node_err(err, ct_map_get(root, "name"), "name '%s' names the run directory: use "
                           "letters, digits, '_', '-' and '.' (not first)", ex->name);
    int64_t seed;
    const ct_backend *be = NULL;
    ct_model_budget budget;
    if (rc < 0 || ct_cfg_int(root, "seed", 1, 0, INT64_MAX, &seed, err) < 0 ||
        read_backend(ex, &be, &budget, err) < 0 || read_data(ex, err) < 0)
        return -1;
    ex->seed = (uint64_t)seed;
    /* Checked twice: before the model's own blocks are allocated, and once the batch size,
     * the optimizer's state and the callbacks' copies of the weights are known. */
    ex->model = ct_model_build_within(ct_map_get(root, "model"), be, &budget, err);
    if (!ex->model || read_compile(ex, err) < 0 || read_fit(ex, err) < 0)
        return -1;
    budget.batch = ex->batch_size;
    budget.opt_slots = ex->optimizer->kind->state_per_param(ex->optimizer);
    budget.extra = ct_callbacks_state_size(ex->callbacks, ex->model->size);
    if (ct_model_check_budget(ex->model, &budget, err) < 0)
        return -1;
    if (!(ex->acc = be->alloc(sizeof ex->acc_host)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    return 0;
}

ct_experiment *ct_experiment_load(const char *path, const char *const *overrides,
                                  int n_overrides, ct_error *err)
{
    ct_experiment *ex = calloc(1, sizeof *ex);
    if (!ex) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ex->path = strdup(path);
    ex->root = ct_config_load(path, err);
    if (!ex->path || !ex->root)
        goto fail;
    for (int i = 0; i < n_overrides; i++)
        if (ct_config_set(ex->root, overrides[i], err) < 0)
            goto fail;
    if (read_experiment(ex, err) < 0)
        goto fail;
    ct_model_init_params(ex->model, ex->seed);
    return ex;
fail:
    ct_experiment_free(ex);
    return NULL;
}

void ct_experiment_free(ct_experiment *ex)
{
    if (!ex)
        return;
    ct_callbacks_free(ex->callbacks);
    ct_optimizer_free(ex->optimizer);
    if (ex->model && ex->acc)
        ex->model->be->free(ex->acc);
    ct_model_free(ex->model);
    free(ex->train.path);
    free(ex->test.path);
    free(ex->validation.path);
    ct_node_free(ex->root);
    free(ex->path);
    free(ex);
}

int ct_experiment_write_config(const ct_experiment *ex, FILE *out, ct_error *err)
{
    return ct_config_emit(ex->root, out, err);
}

void ct_experiment_summary(const ct_experiment *ex, FILE *out) { ct_model_summary(ex->model, out); }

int ct_experiment_load_weights(ct_experiment *ex, const char *path, ct_error *err)
{
    return ct_weights_load(ex->model, path, err);
}

/* Label checks apply to sparse losses, whose targets are class indices. */
static int check_targets(ct_experiment *ex, ct_dataset *ds, const char *role, ct_error *err)
{
    char a[128], b[128];
    ct_shape ys = ct_dataset_y_shape(ds);
    const ct_shape *out = ct_model_output_shape(ex->model);
    if (ex->loss.kind->sparse_labels) {
        /* One class index per position: per sample for an output (None, classes). */
        int64_t classes = out->dim[out->ndim - 1], per_sample = ct_shape_size(out) / classes;
        if (ct_shape_size(&ys) != per_sample)
            return ct_err(err, CT_ERR_DATA, "%s: y '%s' has targets of shape %s, but the loss %s "
                          "takes one class index per position of the output %s (%lld per sample)",
                          role, ct_dataset_y_name(ds), ct_shape_format_sample(&ys, a, sizeof a),
                          ex->loss.kind->name, ct_shape_format(out, b, sizeof b),
                          (long long)per_sample);
        return ct_dataset_validate(ds, classes, err);
    }
    if (ct_shape_size(&ys) != ct_shape_size(out))
        return ct_err(err, CT_ERR_DATA, "%s: y '%s' has targets of shape %s, but the model's "
                      "output has shape %s%s", role, ct_dataset_y_name(ds),
                      ct_shape_format_sample(&ys, a, sizeof a), ct_shape_format(out, b, sizeof b),
                      ct_shape_size(&ys) == 1 ? " (integer labels need the loss "
                                                "sparse_categorical_crossentropy)" : "");
    return ct_dataset_validate(ds, 0, err);
}

ct_dataset *ct_experiment_open_source(ct_experiment *ex, const ct_source *src, const char *role,
                                      ct_error *err)
{
    ct_dataset *ds = ct_dataset_open(src->path, src->x, src->y, ex->scale, err);
    if (!ds) {
        ct_err_prefix(err, "%s", role);
        return NULL;
    }
    ct_shape xs = ct_dataset_x_shape(ds);
    char a[128], b[128];
    if (!ct_shape_equal(&xs, &ex->model->input_shape)) {
        ct_err(err, CT_ERR_DATA, "%s: x '%s' has samples of shape %s, but model.input_shape "
               "is %s", role, ct_dataset_x_name(ds), ct_shape_format_sample(&xs, a, sizeof a),
               ct_shape_format_sample(&ex->model->input_shape, b, sizeof b));
        if (src->node)
            ct_err_prefix(err, "%s:%d:%d", src->node->file, src->node->line, src->node->col);
        goto fail;
    }
    if (src->y ? check_targets(ex, ds, role, err) < 0 : ct_dataset_validate(ds, 0, err) < 0)
        goto fail;
    return ds;
fail:
    ct_dataset_close(ds);
    return NULL;
}

int ct_experiment_check_data(ct_experiment *ex, ct_error *err)
{
    const ct_source *srcs[] = {&ex->train, &ex->validation, &ex->test};
    const char *roles[] = {"data.train", "data.validation", "data.test"};
    for (int i = 0; i < 3; i++) {
        if (!srcs[i]->given)
            continue;
        ct_dataset *ds = ct_experiment_open_source(ex, srcs[i], roles[i], err);
        if (!ds)
            return -1;
        ct_dataset_close(ds);
    }
    return 0;
}
