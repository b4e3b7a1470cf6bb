/* experiment.c - the experiment schema: reads every section of the config tree with the
 * typed getters (defaults filled in), builds the model, and checks data against it. */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "callbacks.h"
#include "data.h"
#include "experiment.h"
#include "h5util.h"
#include "parallel.h"
#include "weights.h"

/* The experiment's name names its run directory (runs/NAME-N): at most this long. */
#define CT_EXPERIMENT_NAME_MAX 128

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

/* x or y of a source: one dataset name for a model with one input (output), or a map
 * from input (output) names to dataset names. */
static int read_members(ct_node *n, const char *key, const char *def, int count,
                        const char (*names)[CT_NAME_MAX], const char *what, const char **out,
                        ct_error *err)
{
    ct_node *v = ct_map_get(n, key);
    if (!v || v->type == CT_NODE_SCALAR) {
        if (count > 1)
            return ct_node_err(err, v ? v : n, "%s.%s must map each of the model's %d %ss to a "
                               "dataset, such as {%s: DATASET, %s: DATASET}", what, key, count,
                               strcmp(key, "x") ? "output" : "input", names[0], names[1]);
        return ct_cfg_string(n, key, def, &out[0], err);
    }
    if (v->type != CT_NODE_MAP)
        return ct_node_err(err, v, "%s.%s must be a dataset name or a map of them", what, key);
    const char *allowed[CT_MAX_IO + 1];
    for (int k = 0; k < count; k++)
        allowed[k] = names[k];
    allowed[count] = NULL;
    char where[64];
    snprintf(where, sizeof where, "%s.%s", what, key);
    if (ct_cfg_check_keys(v, allowed, where, err) < 0)
        return -1;
    for (int k = 0; k < count; k++) {
        if (!ct_map_get(v, names[k]))
            return ct_node_err(err, v, "%s has no dataset for the model's %s '%s'", where,
                               strcmp(key, "x") ? "output" : "input", names[k]);
        if (ct_cfg_string(v, names[k], NULL, &out[k], err) < 0)
            return -1;
    }
    return 0;
}

static int read_source(ct_experiment *ex, ct_node *data, const char *key, ct_source *src,
                       ct_error *err)
{
    static const char *const keys[] = {"path", "x", "y", "sample_weight", NULL};
    ct_node *n = ct_map_get(data, key);
    if (!n)
        return 0;
    char what[32];
    snprintf(what, sizeof what, "data.%s", key);
    if (n->type != CT_NODE_MAP)
        return ct_node_err(err, n, "%s must be a map {path: FILE.h5, x: DATASET, y: DATASET}", what);
    const ct_model *m = ex->model;
    char outs[CT_MAX_IO][CT_NAME_MAX];
    for (int k = 0; k < m->noutputs; k++)
        snprintf(outs[k], CT_NAME_MAX, "%s", m->output_names[k]);
    if (m->ninputs == 1 && !ct_map_get(n, "x"))
        snprintf(src->group_x, sizeof src->group_x, "%s/x", key);
    if (m->noutputs == 1 && !ct_map_get(n, "y"))
        snprintf(src->group_y, sizeof src->group_y, "%s/y", key);
    const char *path;
    if (ct_cfg_check_keys(n, keys, what, err) < 0 || ct_cfg_string(n, "path", NULL, &path, err) < 0 ||
        read_members(n, "x", "x", m->ninputs, (const char (*)[CT_NAME_MAX])m->input_names, what,
                     src->x, err) < 0 ||
        read_members(n, "y", "y", m->noutputs, (const char (*)[CT_NAME_MAX])outs, what, src->y,
                     err) < 0 ||
        (ct_map_get(n, "sample_weight") &&
         ct_cfg_string(n, "sample_weight", NULL, &src->sample_weight, err) < 0))
        return -1;
    src->path = resolve_path(ex->path, path);
    if (!src->path)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ct_map_set_scalar(n, "path", src->path);
    src->given = true;
    src->node = n;
    return 0;
}

/* data.scale (inputs) or data.target_scale (outputs): one number for every member, or a map
 * from input (output) names to numbers (the members it does not name are not scaled). */
static int read_scales(ct_node *data, const char *key, int count, const char *const *names,
                       double *out, ct_error *err)
{
    ct_node *v = ct_map_get(data, key);
    for (int k = 0; k < CT_MAX_IO; k++)
        out[k] = 1.0;
    if (!v || v->type != CT_NODE_MAP) {
        if (ct_cfg_float(data, key, 1.0, -1e30, 1e30, &out[0], err) < 0)
            return -1;
        for (int k = 1; k < count; k++)
            out[k] = out[0];
        return 0;
    }
    const char *allowed[CT_MAX_IO + 1];
    for (int k = 0; k < count; k++)
        allowed[k] = names[k];
    allowed[count] = NULL;
    char where[32];
    snprintf(where, sizeof where, "data.%s", key);
    if (ct_cfg_check_keys(v, allowed, where, err) < 0)
        return -1;
    for (int k = 0; k < count; k++)
        if (ct_map_get(v, names[k]) &&
            ct_cfg_float(v, names[k], 1.0, -1e30, 1e30, &out[k], err) < 0)
            return -1;
    return 0;
}

static int read_scale(ct_experiment *ex, ct_node *data, ct_error *err)
{
    const ct_model *m = ex->model;
    const char *ins[CT_MAX_IO], *outs[CT_MAX_IO];
    for (int k = 0; k < m->ninputs; k++)
        ins[k] = m->input_names[k];
    for (int k = 0; k < m->noutputs; k++)
        outs[k] = m->output_names[k];
    return read_scales(data, "scale", m->ninputs, ins, ex->scale, err) < 0 ||
                   read_scales(data, "target_scale", m->noutputs, outs, ex->target_scale,
                               err) < 0
               ? -1
               : 0;
}

static int read_data(ct_experiment *ex, ct_error *err)
{
    static const char *const keys[] = {"train",         "test",  "validation",
                                       "validation_split", "split", "scale",
                                       "target_scale",  "memory_limit_mb", NULL};
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
        read_scale(ex, data, err) < 0 ||
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

static const char *output_name(const ct_model *m, int k) { return m->output_names[k]; }

/* Whether compile[key] is a map keyed by output names (rather than one setting for all). */
static bool per_output(const ct_model *m, ct_node *c, const char *key)
{
    ct_node *v = ct_map_get(c, key);
    if (!v || v->type != CT_NODE_MAP || ct_map_get(v, "type"))
        return false;
    if (m->noutputs > 1)
        return true;
    return v->len == 1 && !strcmp(v->keys[0], output_name(m, 0));
}

/* Checks that a per-output map names only outputs, with a suggestion. */
static int check_output_keys(const ct_model *m, ct_node *v, const char *what, ct_error *err)
{
    const char *allowed[CT_MAX_IO + 1];
    for (int k = 0; k < m->noutputs; k++)
        allowed[k] = output_name(m, k);
    allowed[m->noutputs] = NULL;
    return ct_cfg_check_keys(v, allowed, what, err);
}

static int read_losses(ct_experiment *ex, ct_node *c, ct_error *err)
{
    const ct_model *m = ex->model;
    if (!per_output(m, c, "loss")) {
        if (ct_loss_parse(c, "loss", &ex->loss[0], err) < 0)
            return -1;
        for (int k = 1; k < m->noutputs; k++) /* one loss for every output, as Keras */
            ex->loss[k] = ex->loss[0];
    } else {
        ct_node *v = ct_map_get(c, "loss");
        if (check_output_keys(m, v, "compile.loss", err) < 0)
            return -1;
        for (int k = 0; k < m->noutputs; k++) {
            if (!ct_map_get(v, output_name(m, k)))
                return ct_node_err(err, v, "compile.loss has no loss for output '%s'",
                                   output_name(m, k));
            if (ct_loss_parse(v, output_name(m, k), &ex->loss[k], err) < 0)
                return -1;
        }
    }
    ct_node *w = ct_map_get(c, "loss_weights");
    for (int k = 0; k < m->noutputs; k++)
        ex->loss_weight[k] = 1.0;
    if (!w)
        return 0;
    if (w->type == CT_NODE_MAP) {
        if (check_output_keys(m, w, "compile.loss_weights", err) < 0)
            return -1;
        for (int k = 0; k < m->noutputs; k++)
            if (ct_map_get(w, output_name(m, k)) &&
                ct_cfg_float(w, output_name(m, k), 1.0, 0.0, 1e30, &ex->loss_weight[k], err) < 0)
                return -1;
        return 0;
    }
    if (w->type != CT_NODE_SEQ || (int)w->len != m->noutputs)
        return ct_node_err(err, w, "compile.loss_weights must map output names to weights "
                           "(or list %d weights in output order)", m->noutputs);
    for (int k = 0; k < m->noutputs; k++) {
        if (ct_node_float(w->items[k], &ex->loss_weight[k], err) < 0)
            return -1;
        if (!(ex->loss_weight[k] >= 0 && ex->loss_weight[k] <= 1e30))
            return ct_node_err(err, w->items[k], "compile.loss_weights must be between 0 and "
                               "1e+30, got %g", ex->loss_weight[k]);
    }
    return 0;
}

/* A metrics list (a name alone means a list of one) for output k. */
static int read_metric_list(ct_experiment *ex, ct_node *parent, const char *key, int k,
                            ct_error *err)
{
    ct_node *metrics = ct_map_get(parent, key);
    if (metrics && metrics->type == CT_NODE_SCALAR && !ct_node_is_null(metrics)) {
        char *name = strdup(metrics->scalar);
        if (!name)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        ct_node *seq = ct_map_set_seq(parent, key);
        ct_seq_append_scalar(seq, name);
        free(name);
        metrics = seq;
    }
    if (!metrics || metrics->type == CT_NODE_SCALAR)
        metrics = ct_map_set_seq(parent, key);
    if (metrics->type != CT_NODE_SEQ)
        return ct_node_err(err, metrics, "compile.metrics must be a list such as [accuracy]");
    const ct_model *m = ex->model;
    const ct_shape *out = ct_model_output_shape_at(m, k);
    int64_t cols = out->ndim ? out->dim[out->ndim - 1] : 1;
    for (size_t i = 0; i < metrics->len; i++) {
        if (ex->nmetrics == CT_MAX_METRICS)
            return ct_node_err(err, metrics, "at most %d metrics are supported", CT_MAX_METRICS);
        ct_metric *mt = &ex->metrics[ex->nmetrics];
        if (ct_metric_init(mt, metrics->items[i], &ex->loss[k], cols, err) < 0)
            return -1;
        mt->output = k;
        ex->nmetrics++; /* counted now, so ct_experiment_free releases its state */
        if (m->noutputs > 1) { /* Keras's names: label_accuracy */
            char full[2 * sizeof mt->name];
            snprintf(full, sizeof full, "%s_%s", output_name(m, k), mt->name);
            if (strlen(full) >= sizeof mt->name)
                return ct_node_err(err, metrics->items[i], "metric name '%s' is too long; "
                                   "use a shorter output name", full);
            memcpy(mt->name, full, strlen(full) + 1);
        }
        for (int j = 0; j < ex->nmetrics - 1; j++)
            if (strcmp(mt->name, ex->metrics[j].name) == 0)
                return ct_node_err(err, metrics->items[i], "metric '%s' is listed twice", mt->name);
    }
    return 0;
}

static int read_metrics(ct_experiment *ex, ct_node *c, ct_error *err)
{
    const ct_model *m = ex->model;
    if (!per_output(m, c, "metrics")) {
        for (int k = 0; k < m->noutputs; k++)
            if (read_metric_list(ex, c, "metrics", k, err) < 0)
                return -1;
        return 0;
    }
    ct_node *v = ct_map_get(c, "metrics");
    if (check_output_keys(m, v, "compile.metrics", err) < 0)
        return -1;
    for (int k = 0; k < m->noutputs; k++)
        if (ct_map_get(v, output_name(m, k)) && read_metric_list(ex, v, output_name(m, k), k, err) < 0)
            return -1;
    return 0;
}

/* Whether any layer (a view of it included) reads layer o's output. */
static bool consumed(const ct_model *m, int o)
{
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i].ninputs; j++)
            if (m->sources[i][j] == o)
                return true;
    return false;
}

/* Softmax + crossentropy (sigmoid + binary crossentropy) are computed fused: stable, and
 * the gradient is simply p - y. Only where the loss is the output's one consumer. */
static void fuse_losses(ct_experiment *ex)
{
    ct_model *m = ex->model;
    for (int k = 0; k < m->noutputs; k++) {
        if (m->outputs[k] >= m->nlayers) /* a layer's output 1 and up: no activation */
            continue;
        ct_layer *last = &m->layers[m->outputs[k]];
        if (last->shared || consumed(m, last->index) || !last->kind->output_activation)
            continue;
        bool twice = false;
        for (int j = 0; j < m->noutputs; j++)
            twice |= j != k && m->outputs[j] == m->outputs[k];
        if (!twice && ct_loss_can_fuse(&ex->loss[k], last->kind->output_activation(last))) {
            last->act_fused = true;
            ex->loss[k].fused = true;
        }
    }
}

/* from_logits on an output that ends in softmax or sigmoid: it gives probabilities, which
 * the loss would take for logits (Keras warns the same). */
static int warn_logits(ct_experiment *ex, const ct_node *c, ct_error *err)
{
    ct_model *m = ex->model;
    const ct_node *losses = ct_map_get(c, "loss");
    for (int k = 0; k < m->noutputs; k++) {
        if (!ex->loss[k].from_logits || m->outputs[k] >= m->nlayers)
            continue;
        const ct_layer *l = &m->layers[m->outputs[k]];
        ct_activation a = l->kind->output_activation ? l->kind->output_activation(l)
                                                     : CT_ACT_LINEAR;
        if (a != CT_ACT_SOFTMAX && a != CT_ACT_SIGMOID)
            continue;
        const ct_node *at = losses;
        if (losses && losses->type == CT_NODE_MAP && ct_map_get(losses, output_name(m, k)))
            at = ct_map_get(losses, output_name(m, k));
        if (ct_model_warn(m, at, "loss '%s' has from_logits: true, but output '%s' ends in "
                          "a %s (layer '%s'), so it gives probabilities, not logits; drop "
                          "from_logits or the activation", ex->loss[k].kind->name,
                          output_name(m, k), ct_act_name(a), l->name) < 0)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    return 0;
}

static int read_compile(ct_experiment *ex, ct_error *err)
{
    static const char *const keys[] = {"optimizer", "loss", "loss_weights", "metrics", NULL};
    ct_node *c = ct_map_get(ex->root, "compile");
    if (!c)
        return ct_err(err, CT_ERR_CONFIG, "%s: the experiment needs a 'compile' section with "
                      "at least a loss", ex->path);
    if (c->type != CT_NODE_MAP)
        return ct_node_err(err, c, "'compile' must be a map with optimizer, loss and metrics");
    if (ct_cfg_check_keys(c, keys, "compile", err) < 0 || read_losses(ex, c, err) < 0 ||
        read_metrics(ex, c, err) < 0)
        return -1;
    ct_model *m = ex->model;
    ex->optimizer = ct_optimizer_new_on(c, "optimizer", m->trainable, m->be, err);
    if (!ex->optimizer)
        return -1;
    fuse_losses(ex);
    return warn_logits(ex, c, err);
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

/* Keras's fit() arguments that ctrain reads from the data section: pointed there. */
static int keras_fit_habits(const ct_node *f, ct_error *err)
{
    static const char *const moved[][2] = {
        {"validation_data", "data.validation: {path: FILE.h5, x: DATASET, y: DATASET}"},
        {"validation_split", "data.validation_split: 0.2"},
        {"x", "data.train: {path: FILE.h5, x: DATASET, y: DATASET}"},
        {"y", "data.train: {path: FILE.h5, x: DATASET, y: DATASET}"},
    };
    for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
        const ct_node *v = ct_map_get(f, moved[i][0]);
        if (v)
            return ct_node_err(err, v, "fit.%s: ctrain reads its data from the experiment's "
                               "data section; write %s", moved[i][0], moved[i][1]);
    }
    return 0;
}

/* model.weights: a weights file that fit starts from (fine-tuning). */
static int read_initial_weights(ct_experiment *ex, ct_error *err)
{
    ct_node *model = ct_map_get(ex->root, "model");
    if (!ct_map_get(model, "weights"))
        return 0;
    const char *path;
    if (ct_cfg_string(model, "weights", NULL, &path, err) < 0)
        return -1;
    if (!*path)
        return ct_node_err(err, ct_map_get(model, "weights"), "model.weights must name a "
                           "weights file (.h5)");
    if (!(ex->initial_weights = resolve_path(ex->path, path)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    return 0;
}

/* The node of data.target_scale that sets output k's scale. */
static const ct_node *target_scale_node(const ct_experiment *ex, int k)
{
    const ct_node *v = ct_map_get(ct_map_get(ex->root, "data"), "target_scale");
    const ct_node *named = v && v->type == CT_NODE_MAP
                               ? ct_map_get((ct_node *)v, ex->model->output_names[k])
                               : NULL;
    return named ? named : v;
}

/* x i and y k of one source that name the same dataset (an autoencoder's) but are scaled
 * differently train the model to map scaled inputs to unscaled copies: say so. */
static int warn_scale_mismatch(ct_experiment *ex, const ct_source *src, const char *role)
{
    const ct_model *m = ex->model;
    for (int i = 0; src->given && i < m->ninputs; i++)
        for (int k = 0; k < m->noutputs; k++) {
            /* within rounding of a scale written with fewer digits (1/255 as 0.00392157) */
            if (!src->x[i] || !src->y[k] || strcmp(src->x[i], src->y[k]) ||
                fabs(ex->scale[i] - ex->target_scale[k]) <= 1e-6 * fabs(ex->scale[i]))
                continue;
            const ct_node *at = ct_map_get(ct_map_get(ex->root, "data"), "scale");
            if (ct_model_warn(ex->model, at ? at : src->node, "%s: x and y are both '%s', but "
                              "x is scaled by %g and y by %g, so the model learns to give the "
                              "unscaled values back; set data.target_scale: %.9g to compare "
                              "like with like", role, src->x[i], ex->scale[i],
                              ex->target_scale[k], ex->scale[i]) < 0)
                return -1;
        }
    return 0;
}

/* Class indices are never scaled; float targets may be, as inputs are. */
static int check_target_scale(ct_experiment *ex, ct_error *err)
{
    for (int k = 0; k < ex->model->noutputs; k++)
        if (ex->target_scale[k] != 1.0 && ex->loss[k].kind->sparse_labels)
            return ct_node_err(err, target_scale_node(ex, k), "data.target_scale: the loss %s "
                               "of output '%s' takes class indices, which are never scaled",
                               ex->loss[k].kind->name, ex->model->output_names[k]);
    if (warn_scale_mismatch(ex, &ex->train, "data.train") < 0 ||
        warn_scale_mismatch(ex, &ex->validation, "data.validation") < 0 ||
        warn_scale_mismatch(ex, &ex->test, "data.test") < 0)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    return 0;
}

/* The class count of a one-output classifier without a time axis (binary: 2), or 0. */
static int64_t weighable_classes(const ct_experiment *ex)
{
    const ct_shape *out = ct_model_output_shape_at(ex->model, 0);
    int64_t cols = out->ndim ? out->dim[out->ndim - 1] : 1;
    if (ex->model->noutputs != 1 || ct_shape_size(out) != cols)
        return 0;
    return cols == 1 ? 2 : cols;
}

/* fit.class_weight: {CLASS_ID: WEIGHT, ...}, Keras's dict; the classes it leaves out weigh
 * 1. For a classifier of one output and one label per sample, as Keras allows. */
static int read_class_weight(ct_experiment *ex, ct_node *f, ct_error *err)
{
    ct_node *v = ct_map_get(f, "class_weight");
    if (!v || ct_node_is_null(v))
        return 0;
    int64_t n = weighable_classes(ex);
    char shape[128];
    ct_shape_format(ct_model_output_shape_at(ex->model, 0), shape, sizeof shape);
    if (!n)
        return ct_node_err(err, v, "fit.class_weight weighs the samples of a classifier with "
                           "one output and one label per sample; this model has %d output%s, "
                           "the first of shape %s", ex->model->noutputs,
                           ex->model->noutputs == 1 ? "" : "s", shape);
    if (v->type != CT_NODE_MAP || v->len == 0)
        return ct_node_err(err, v, "fit.class_weight is a map from class ids to weights, such "
                           "as {0: 1.0, 1: 5.0}");
    if (!(ex->class_weight = malloc((size_t)n * sizeof *ex->class_weight)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ex->nclass_weight = n;
    for (int64_t c = 0; c < n; c++)
        ex->class_weight[c] = 1.0f;
    for (size_t i = 0; i < v->len; i++) {
        char *end;
        errno = 0;
        long long c = strtoll(v->keys[i], &end, 10);
        double w;
        if (*end || end == v->keys[i] || errno || c < 0 || c >= n)
            return ct_node_err(err, v->key_nodes[i], "fit.class_weight: '%s' is not a class id of "
                               "this model (0 to %" PRId64 ")", v->keys[i], n - 1);
        if (ct_cfg_float(v, v->keys[i], 1.0, 0.0, 1e30, &w, err) < 0)
            return -1;
        ex->class_weight[c] = (float)w;
    }
    return 0;
}

static int read_fit(ct_experiment *ex, ct_error *err)
{
    static const char *const keys[] = {"epochs",  "batch_size", "shuffle",      "validation_freq",
                                       "verbose", "callbacks",  "class_weight", NULL};
    static const char *const verbosity[] = {"auto", "0", "1", "2", NULL};
    ct_node *f = ct_map_get(ex->root, "fit");
    if (!f)
        f = ct_map_set_map(ex->root, "fit");
    if (f->type != CT_NODE_MAP)
        return ct_node_err(err, f, "'fit' must be a map with epochs, batch_size, ...");
    int verbose;
    if (keras_fit_habits(f, err) < 0 || ct_cfg_check_keys(f, keys, "fit", err) < 0 ||
        ct_cfg_int(f, "epochs", 1, 1, 1000000000, &ex->epochs, err) < 0 ||
        ct_cfg_int(f, "batch_size", 32, 1, 1 << 24, &ex->batch_size, err) < 0 ||
        ct_cfg_bool(f, "shuffle", true, &ex->shuffle, err) < 0 ||
        ct_cfg_int(f, "validation_freq", 1, 1, 1000000000, &ex->validation_freq, err) < 0 ||
        ct_cfg_enum(f, "verbose", "auto", verbosity, &verbose, err) < 0)
        return -1;
    ex->verbose = verbose - 1;
    if (read_class_weight(ex, f, err) < 0 || resolve_backup_dirs(ex, f, err) < 0)
        return -1;
    ex->callbacks = ct_callbacks_new(f, ex->optimizer, ex->allow_outside, ex->n_allow, err);
    return ex->callbacks ? 0 : -1;
}

static int read_backend(ct_experiment *ex, const ct_backend **be, ct_model_budget *budget,
                        ct_error *err)
{
    static const char *const keys[] = {"device", "threads", "adapt_threads", "memory_limit_mb",
                                       "conv_algorithm", NULL};
    static const char *const devices[] = {"cpu", "cuda", NULL};
    /* In ct_conv_algo's order. */
    static const char *const algos[] = {"auto", "im2col", "direct", "winograd", NULL};
    ct_node *b = ct_map_get(ex->root, "backend");
    if (!b)
        b = ct_map_set_map(ex->root, "backend");
    if (b->type != CT_NODE_MAP)
        return ct_node_err(err, b, "'backend' must be a map such as {device: cpu, threads: 2}");
    long cores = ct_usable_cores();
    /* The default is the machine's memory, as the default thread count is the cores this
     * process may use. */
    double phys = ct_physical_memory();
    int64_t phys_mb = phys >= (1 << 20) ? (int64_t)(phys / (1 << 20)) : CT_MAX_MEMORY_MB;
    bool given = ct_map_get(b, "memory_limit_mb") != NULL;
    int device, algo;
    int64_t threads, mb;
    if (ct_cfg_check_keys(b, keys, "backend", err) < 0 ||
        ct_cfg_enum(b, "device", "cpu", devices, &device, err) < 0 ||
        ct_cfg_int(b, "threads", cores > 0 ? cores : 1, 1, 1024, &threads, err) < 0 ||
        ct_cfg_bool(b, "adapt_threads", true, &ex->adapt_threads, err) < 0 ||
        ct_cfg_int(b, "memory_limit_mb", phys_mb, 1, CT_MAX_MEMORY_MB, &mb, err) < 0 ||
        ct_cfg_enum(b, "conv_algorithm", "auto", algos, &algo, err) < 0)
        return -1;
    ex->threads = (int)threads;
    ex->conv_algo = (ct_conv_algo)algo;
    *budget = (ct_model_budget){(double)mb * (1 << 20), !given, 1, 0, 0};
    ct_blas_choose_kernels(NULL); /* before any GEMM runs; once per process */
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
    if (rc == 0 && strlen(ex->name) > CT_EXPERIMENT_NAME_MAX)
        return ct_node_err(err, ct_map_get(root, "name"), "name is %zu characters long; it names "
                           "the run directory and may have at most %d", strlen(ex->name),
                           CT_EXPERIMENT_NAME_MAX);
    int64_t seed;
    const ct_backend *be = NULL;
    ct_model_budget budget;
    if (rc < 0 || ct_cfg_int(root, "seed", 1, 0, INT64_MAX, &seed, err) < 0 ||
        read_backend(ex, &be, &budget, err) < 0)
        return -1;
    ex->seed = (uint64_t)seed;
    /* Checked twice: before the model's own blocks are allocated, and once the batch size,
     * the optimizer's state and the callbacks' copies of the weights are known. */
    if (!ct_map_get(root, "model"))
        return ct_err(err, CT_ERR_CONFIG, "%s: the experiment needs a 'model' section",
                      ex->path);
    ex->model = ct_model_build_within(ct_map_get(root, "model"), be, &budget, ex->conv_algo,
                                      err);
    if (!ex->model || read_initial_weights(ex, err) < 0 || read_data(ex, err) < 0 ||
        read_compile(ex, err) < 0 || check_target_scale(ex, err) < 0 || read_fit(ex, err) < 0)
        return -1;
    budget.batch = ex->batch_size;
    budget.opt_slots = ct_optimizer_slots(ex->optimizer);
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
    return ct_experiment_load_allowing(path, overrides, n_overrides, NULL, 0, err);
}

/* text NULL: the file at path; else len bytes of YAML standing for that file. */
static ct_experiment *load(const char *path, const char *text, size_t len,
                           const char *const *overrides, int n_overrides,
                           const char *const *allow_outside, int n_allow, bool lazily,
                           ct_error *err)
{
    ct_experiment *ex = calloc(1, sizeof *ex);
    if (!ex) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ex->allow_outside = allow_outside;
    ex->n_allow = n_allow;
    ex->path = strdup(path);
    ex->root = text ? ct_config_parse(text, len, path, err) : ct_config_load(path, err);
    if (!ex->path || !ex->root)
        goto fail;
    for (int i = 0; i < n_overrides; i++)
        if (ct_config_set(ex->root, overrides[i], err) < 0)
            goto fail;
    if (read_experiment(ex, err) < 0)
        goto fail;
    if (lazily)
        ct_model_defer_init(ex->model, ex->seed);
    else
        ct_model_init_params(ex->model, ex->seed);
    return ex;
fail:
    ct_experiment_free(ex);
    return NULL;
}

ct_experiment *ct_experiment_load_allowing(const char *path, const char *const *overrides,
                                           int n_overrides, const char *const *allow_outside,
                                           int n_allow, ct_error *err)
{
    return load(path, NULL, 0, overrides, n_overrides, allow_outside, n_allow, false, err);
}

ct_experiment *ct_experiment_load_lazily(const char *path, const char *const *overrides,
                                         int n_overrides, ct_error *err)
{
    return load(path, NULL, 0, overrides, n_overrides, NULL, 0, true, err);
}

ct_experiment *ct_experiment_load_text(const char *text, size_t len, const char *name,
                                       const char *dir, const char *const *overrides,
                                       int n_overrides, ct_error *err)
{
    char path[4096];
    if (!text)
        return ct_err(err, CT_ERR_USAGE, "no experiment text"), NULL;
    snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", name ? name : "experiment.yaml");
    return load(path, text, len, overrides, n_overrides, NULL, 0, false, err);
}

ct_experiment *ct_experiment_copy(const ct_experiment *ex, ct_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m) {
        ct_err(err, CT_ERR_NOMEM, "out of memory copying the experiment");
        return NULL;
    }
    int rc = ct_config_emit(ex->root, m, err);
    if (fclose(m) != 0 && rc == 0)
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory copying the experiment");
    /* the emitted tree has the overrides and defaults in it already */
    ct_experiment *copy = rc == 0 ? load(ex->path, text, len, NULL, 0, NULL, 0, true, err) : NULL;
    free(text);
    return copy;
}

void ct_experiment_free(ct_experiment *ex)
{
    if (!ex)
        return;
    ct_callbacks_free(ex->callbacks);
    ct_optimizer_free(ex->optimizer);
    for (int i = 0; i < ex->nmetrics; i++)
        ct_metric_free(&ex->metrics[i]);
    if (ex->model && ex->acc)
        ex->model->be->free(ex->acc);
    ct_model_free(ex->model);
    free(ex->mask_host);
    free(ex->host_pred);
    free(ex->host_y);
    free(ex->train.path);
    free(ex->test.path);
    free(ex->validation.path);
    free(ex->initial_weights);
    free(ex->class_weight);
    ct_node_free(ex->root);
    free(ex->path);
    free(ex);
}

int ct_experiment_write_config(const ct_experiment *ex, FILE *out, ct_error *err)
{
    return ct_config_emit(ex->root, out, err);
}

void ct_experiment_summary(const ct_experiment *ex, FILE *out) { ct_model_summary(ex->model, out); }

const char *ct_experiment_warnings(const ct_experiment *ex)
{
    return ex->model && ex->model->warnings ? ex->model->warnings : "";
}

int ct_experiment_verbose(const ct_experiment *ex) { return ex->verbose; }

int ct_experiment_load_weights(ct_experiment *ex, const char *path, ct_error *err)
{
    return ct_weights_load(ex->model, path, err);
}

/* Output k's targets in y member k: label checks apply to sparse losses, whose targets
 * are class indices. nclasses[k] receives the classes to check labels against (0: none). */
static int check_targets(ct_experiment *ex, ct_dataset *ds, int k, const char *role,
                         int64_t *nclasses, ct_error *err)
{
    char a[128], b[128];
    ct_shape ys = ct_dataset_y_shape_at(ds, k);
    const ct_shape *out = ct_model_output_shape_at(ex->model, k);
    const ct_loss *loss = &ex->loss[k];
    char which[CT_NAME_MAX + 32] = "";
    if (ex->model->noutputs > 1)
        snprintf(which, sizeof which, " '%s'", ex->model->output_names[k]);
    nclasses[k] = 0;
    if (loss->kind->sparse_labels) {
        /* One class index per position: per sample for an output (None, classes). */
        int64_t classes = out->dim[out->ndim - 1], per_sample = ct_shape_size(out) / classes;
        if (ct_shape_size(&ys) != per_sample)
            return ct_err(err, CT_ERR_DATA, "%s: y '%s' has targets of shape %s, but the loss %s "
                          "takes one class index per position of the output%s %s (%lld per sample)",
                          role, ct_dataset_y_name_at(ds, k), ct_shape_format_sample(&ys, a, sizeof a),
                          loss->kind->name, which, ct_shape_format(out, b, sizeof b),
                          (long long)per_sample);
        nclasses[k] = classes;
        return 0;
    }
    if (ct_shape_size(&ys) != ct_shape_size(out))
        return ct_err(err, CT_ERR_DATA, "%s: y '%s' has targets of shape %s, but the model's "
                      "output%s has shape %s%s", role, ct_dataset_y_name_at(ds, k),
                      ct_shape_format_sample(&ys, a, sizeof a), which,
                      ct_shape_format(out, b, sizeof b),
                      ct_shape_size(&ys) == 1 ? " (integer labels need the loss "
                                                "sparse_categorical_crossentropy)" : "");
    if (!strcmp(loss->kind->name, "binary_crossentropy") ||
        !strcmp(loss->kind->name, "categorical_crossentropy") ||
        !strcmp(loss->kind->name, "binary_focal_crossentropy") ||
        !strcmp(loss->kind->name, "categorical_focal_crossentropy"))
        nclasses[k] = CT_TARGETS_UNIT; /* labels 0..9 would train to a negative loss */
    return 0;
}

static int shape_err(ct_experiment *ex, const ct_source *src, ct_dataset *ds, int k,
                     const char *role, ct_error *err)
{
    char a[128], b[128];
    ct_shape xs = ct_dataset_x_shape_at(ds, k);
    const ct_model *m = ex->model;
    if (m->functional)
        ct_err(err, CT_ERR_DATA, "%s: x '%s' has samples of shape %s, but the model's input "
               "'%s' has shape %s", role, ct_dataset_x_name_at(ds, k),
               ct_shape_format_sample(&xs, a, sizeof a), m->input_names[k],
               ct_shape_format_sample(&m->input_shapes[k], b, sizeof b));
    else
        ct_err(err, CT_ERR_DATA, "%s: x '%s' has samples of shape %s, but model.input_shape "
               "is %s", role, ct_dataset_x_name_at(ds, k), ct_shape_format_sample(&xs, a, sizeof a),
               ct_shape_format_sample(&m->input_shapes[k], b, sizeof b));
    if (src->node)
        ct_err_prefix(err, "%s:%d:%d", src->node->file, src->node->line, src->node->col);
    return -1;
}

/* Model input k is a token input when a layer reading token ids (an embedding) takes it:
 * returns the fewest ids such a layer takes (0: not a token input) and names that layer
 * in `user`. */
static int64_t token_input(const ct_model *m, int k, char *user, size_t n)
{
    int64_t ids = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = ct_layer_owner(&m->layers[i]);
        for (int j = 0; l->kind->token_ids && j < m->layers[i].ninputs; j++) {
            int64_t v = l->kind->token_ids(l);
            if (m->sources[i][j] != -1 - k || (ids && v >= ids))
                continue;
            ids = v;
            ct_layer_describe(&m->layers[i], user, n);
        }
    }
    return ids;
}

/* Marks the token inputs in ds (integer data, ids checked, never scaled). */
static int mark_token_inputs(const ct_experiment *ex, ct_dataset *ds, const char *role,
                             ct_error *err)
{
    for (int k = 0; k < ex->model->ninputs; k++) {
        char user[CT_NAME_MAX + 80];
        int64_t ids = token_input(ex->model, k, user, sizeof user);
        if (ids > 0 && ct_dataset_set_token_ids(ds, k, ids, user, err) < 0) {
            ct_err_prefix(err, "%s", role);
            return -1;
        }
    }
    return 0;
}

/* Where x or y was left to its default and the file has no "x" ("y") but the source's own
 * group does (train/x), that is read. Asked only once opening with "x" and "y" found the
 * file sound but a dataset missing: the first open is the one guarded against files that
 * make HDF5 hang or crash. */
static bool default_names(const ct_source *given, ct_source *use)
{
    *use = *given;
    bool changed = false;
    if (use->group_x[0] && !ct_h5_has_object(use->path, use->x[0]) &&
        ct_h5_has_object(use->path, use->group_x)) {
        use->x[0] = use->group_x;
        changed = true;
    }
    if (use->group_y[0] && use->y[0] && !ct_h5_has_object(use->path, use->y[0]) &&
        ct_h5_has_object(use->path, use->group_y)) {
        use->y[0] = use->group_y;
        changed = true;
    }
    return changed;
}

/* A source's datasets: the model's inputs, its ny targets and, where weighted, its sample
 * weights. */
static ct_dataset *open_members(const ct_experiment *ex, const ct_source *src, int ny,
                                bool weighted, ct_error *err)
{
    const ct_model *m = ex->model;
    return ct_dataset_open_weighted(src->path, m->ninputs, src->x, ex->scale, ny, src->y,
                                    weighted ? src->sample_weight : NULL, err);
}

/* sample_weight weighs each sample's loss; a masked output already weighs its positions
 * (by the mask), and the weights take one more slot beside the targets. */
static int sample_weight_usable(const ct_experiment *ex, const ct_source *src,
                                const char *role, ct_error *err)
{
    const ct_model *m = ex->model;
    const ct_node *at = src->node ? ct_map_get((ct_node *)src->node, "sample_weight") : NULL;
    if (m->noutputs >= CT_MAX_IO) {
        ct_err(err, CT_ERR_CONFIG, "%s.sample_weight: a model with %d outputs takes no sample "
               "weights (at most %d outputs do)", role, m->noutputs, CT_MAX_IO - 1);
    } else {
        for (int k = 0; k < m->noutputs; k++)
            if (m->outputs[k] >= 0 && m->outputs[k] < m->nlayers &&
                m->layers[m->outputs[k]].mask_out != CT_MASK_NONE) {
                ct_err(err, CT_ERR_CONFIG, "%s.sample_weight: the output '%s' is masked (its "
                       "padded steps are left out of the loss); sample weights and masks "
                       "together are not supported", role, m->output_names[k]);
                goto fail;
            }
        return 0;
    }
fail:
    if (at)
        ct_err_prefix(err, "%s:%d:%d", at->file, at->line, at->col);
    return -1;
}

ct_dataset *ct_experiment_open_source(ct_experiment *ex, const ct_source *given,
                                      const char *role, bool will_load, ct_error *err)
{
    ct_source chosen = *given;
    const ct_source *src = &chosen;
    const ct_model *m = ex->model;
    int ny = src->y[0] ? m->noutputs : 0;
    if (ny && src->sample_weight && sample_weight_usable(ex, src, role, err) < 0)
        return NULL;
    bool weighted = ny && src->sample_weight;
    ct_dataset *ds = open_members(ex, src, ny, weighted, err);
    if (!ds && err && err->code == CT_ERR_DATA && strstr(err->msg, ": no dataset '") &&
        default_names(given, &chosen)) {
        ct_error again = {0};
        ds = open_members(ex, src, ny, weighted, &again);
        if (!ds)
            *err = again;
    }
    if (!ds) {
        ct_err_prefix(err, "%s", role);
        return NULL;
    }
    for (int k = 0; k < m->ninputs; k++) {
        ct_shape xs = ct_dataset_x_shape_at(ds, k);
        if (!ct_shape_equal(&xs, &m->input_shapes[k])) {
            shape_err(ex, src, ds, k, role, err);
            goto fail;
        }
    }
    if (mark_token_inputs(ex, ds, role, err) < 0)
        goto fail;
    int64_t nclasses[CT_MAX_IO] = {0};
    for (int k = 0; k < ny; k++) {
        if (check_targets(ex, ds, k, role, nclasses, err) < 0)
            goto fail;
        ct_dataset_set_y_scale(ds, k, ex->loss[k].kind->sparse_labels ? 1.0 : ex->target_scale[k]);
    }
    if (weighted) {
        ct_shape ws = ct_dataset_y_shape_at(ds, ny);
        if (ct_shape_size(&ws) != 1) {
            char a[128];
            ct_err(err, CT_ERR_DATA, "%s: sample_weight '%s' has samples of shape %s, but it "
                   "holds one weight per sample (shape (N,) or (N, 1))", role,
                   ct_dataset_y_name_at(ds, ny), ct_shape_format_sample(&ws, a, sizeof a));
            goto fail;
        }
        nclasses[ny] = CT_TARGETS_WEIGHT;
    }
    if (will_load)
        ct_dataset_will_load(ds);
    if (ct_dataset_check_chunks(ds, ex->memory_limit, err) < 0 ||
        ct_dataset_validate_multi(ds, ny ? nclasses : NULL, err) < 0)
        goto fail;
    return ds;
fail:
    ct_dataset_close(ds);
    return NULL;
}

int ct_experiment_value_names(const ct_experiment *ex, const char **names, const char *prefix,
                              char (*store)[64])
{
    int n = 0;
    for (int i = 0; i < ex->nmetrics; i++, n++) {
        snprintf(store[n], 64, "%s%s", prefix, ex->metrics[i].name);
        names[n] = store[n];
    }
    const ct_model *m = ex->model;
    for (int k = 0; m->noutputs > 1 && k < m->noutputs; k++, n++) {
        snprintf(store[n], 64, "%s%.40s_loss", prefix, m->output_names[k]);
        names[n] = store[n];
    }
    snprintf(store[n], 64, "%sloss", prefix);
    names[n] = store[n];
    return n + 1;
}

int ct_experiment_check_data(ct_experiment *ex, ct_error *err)
{
    const ct_source *srcs[] = {&ex->train, &ex->validation, &ex->test};
    const char *roles[] = {"data.train", "data.validation", "data.test"};
    for (int i = 0; i < 3; i++) {
        if (!srcs[i]->given)
            continue;
        ct_dataset *ds = ct_experiment_open_source(ex, srcs[i], roles[i], false, err);
        if (!ds)
            return -1;
        ct_dataset_close(ds);
    }
    return 0;
}
