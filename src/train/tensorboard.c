/* tensorboard.c - the tensorboard callback's event files (see tensorboard.h). */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorboard.h"
#include "tensor.h"
#include "tfevents.h"
#include "weights.h"

struct ct_tensorboard {
    ct_tfevents *train, *val; /* val NULL when the run does not validate */
};

/* log_dir/sub, allocated; NULL when out of memory. */
static char *join(const char *dir, const char *sub)
{
    size_t n = strlen(dir) + strlen(sub) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, sub);
    return p;
}

ct_tensorboard *ct_tensorboard_open(const char *log_dir, bool validation, ct_error *err)
{
    ct_tensorboard *tb = calloc(1, sizeof *tb);
    char *train = join(log_dir, "train"), *val = join(log_dir, "validation");
    if (!tb || !train || !val) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(tb->train = ct_tfevents_open(train, err)) ||
        (validation && !(tb->val = ct_tfevents_open(val, err))))
        goto fail;
    free(train);
    free(val);
    return tb;
fail:
    free(train);
    free(val);
    ct_tensorboard_close(tb, NULL);
    return NULL;
}

/* Each line indented by four spaces: a code block in the Markdown the Text tab renders,
 * so the table keeps its columns. Allocated; NULL when out of memory. */
static char *code_block(const char *text)
{
    size_t lines = 1;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    char *out = malloc(strlen(text) + 4 * lines + 1), *at = out;
    if (!out)
        return NULL;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        memcpy(at, "    ", 4);
        memcpy(at + 4, p, len);
        at += 4 + len;
        p += len;
        if (*p)
            *at++ = *p++;
    }
    *at = 0;
    return out;
}

/* The inbound nodes of a layer in the form of Keras 3's config, the one TensorBoard's
 * Graphs tab reads: each node {"args": [tensor or [tensors]], "kwargs": {}}, a tensor
 * {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, index]}},
 * from the lists [[layer, node, index, kwargs], ...] of the weights file's config (Keras 2's
 * form, which Keras 3 loads, but from which the Graphs tab draws no edges). */
static bool keras3_inbound(cJSON *layer)
{
    cJSON *nodes = cJSON_GetObjectItemCaseSensitive(layer, "inbound_nodes"), *node;
    if (!cJSON_IsArray(nodes))
        return true;
    cJSON *out = cJSON_CreateArray();
    if (!out)
        return false;
    cJSON_ArrayForEach(node, nodes) {
        cJSON *tensors = cJSON_CreateArray(), *args = cJSON_CreateArray(), *call, *in;
        if (!tensors || !args || !(call = cJSON_CreateObject())) {
            cJSON_Delete(tensors);
            cJSON_Delete(args);
            cJSON_Delete(out);
            return false;
        }
        cJSON_AddItemToArray(out, call);
        cJSON_AddItemToObject(call, "args", args);
        cJSON_AddItemToObject(call, "kwargs", cJSON_CreateObject());
        cJSON_ArrayForEach(in, node) {
            cJSON *t = cJSON_CreateObject(), *cfg = cJSON_CreateObject(),
                  *hist = cJSON_CreateArray();
            if (t)
                cJSON_AddItemToArray(tensors, t);
            if (!t || !cfg || !hist) {
                cJSON_Delete(cfg);
                cJSON_Delete(hist);
                cJSON_Delete(tensors);
                cJSON_Delete(out);
                return false;
            }
            cJSON_AddStringToObject(t, "class_name", "__keras_tensor__");
            cJSON_AddItemToObject(t, "config", cfg);
            cJSON_AddItemToObject(cfg, "keras_history", hist);
            for (int k = 0; k < 3; k++)
                cJSON_AddItemToArray(hist, cJSON_Duplicate(cJSON_GetArrayItem(in, k), true));
        }
        /* one input is the tensor itself, several a list of them */
        if (cJSON_GetArraySize(tensors) == 1)
            cJSON_AddItemToArray(args, cJSON_DetachItemFromArray(tensors, 0));
        if (cJSON_GetArraySize(tensors) > 1)
            cJSON_AddItemToArray(args, tensors);
        else
            cJSON_Delete(tensors);
    }
    if (!cJSON_ReplaceItemInObjectCaseSensitive(layer, "inbound_nodes", out)) {
        cJSON_Delete(out);
        return false;
    }
    return true;
}

/* The model's Keras config for the Graphs tab (see keras3_inbound); NULL when out of
 * memory. Allocated with malloc. */
static char *graph_config(const ct_model *m)
{
    char *json = ct_model_config_json(m), *out = NULL;
    cJSON *root = json ? cJSON_Parse(json) : NULL, *layer;
    free(json);
    if (!root)
        return NULL;
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "config"), "layers");
    bool ok = true;
    cJSON_ArrayForEach(layer, layers) {
        ok = ok && keras3_inbound(layer);
    }
    if (ok)
        out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

int ct_tensorboard_graph(ct_tensorboard *tb, const ct_model *m, ct_error *err)
{
    char *table = NULL, *block = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&table, &size);
    if (!f)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ct_model_summary(m, f);
    if (fclose(f) != 0 || !table || !(block = code_block(table))) {
        free(table);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    free(table);
    int rc = ct_tfevents_string(tb->train, "model_summary", 0, "text", NULL, block, err);
    free(block);
    if (rc < 0)
        return -1;
    /* The Graphs tab draws a Keras model from its config: plugin graph_keras_model, whose
     * content "1" is the version of that format. */
    char *json = graph_config(m);
    if (!json)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    rc = ct_tfevents_string(tb->train, "keras", 0, "graph_keras_model", "1", json, err);
    free(json);
    return rc < 0 ? -1 : ct_tfevents_flush(tb->train, err);
}

int ct_tensorboard_batch(ct_tensorboard *tb, int64_t step, int n, const char *const *names,
                         const double *values, ct_error *err)
{
    char t[256];
    for (int i = 0; i < n; i++) {
        snprintf(t, sizeof t, "batch_%s", names[i]);
        if (ct_tfevents_scalar(tb->train, t, step, values[i], err) < 0)
            return -1;
    }
    return 0;
}

int ct_tensorboard_epoch(ct_tensorboard *tb, const ct_epoch_logs *logs, int64_t iterations,
                         ct_error *err)
{
    char t[256];
    for (int i = 0; i < logs->n; i++) {
        const char *name = logs->names[i];
        double v = logs->values[i];
        if (strncmp(name, "val_", 4)) {
            snprintf(t, sizeof t, "epoch_%s", name);
            if (ct_tfevents_scalar(tb->train, t, logs->epoch, v, err) < 0)
                return -1;
            continue;
        }
        if (!tb->val || isnan(v))
            continue;
        snprintf(t, sizeof t, "epoch_%s", name + 4);
        if (ct_tfevents_scalar(tb->val, t, logs->epoch, v, err) < 0)
            return -1;
        snprintf(t, sizeof t, "evaluation_%s_vs_iterations", name + 4);
        if (ct_tfevents_scalar(tb->val, t, iterations, v, err) < 0)
            return -1;
    }
    return ct_tfevents_flush(tb->train, err) < 0 ||
                   (tb->val && ct_tfevents_flush(tb->val, err) < 0)
               ? -1 : 0;
}

int ct_tensorboard_histograms(ct_tensorboard *tb, const ct_model *m, int64_t epoch,
                              ct_error *err)
{
    float *w = malloc((size_t)(m->size ? m->size : 1) * sizeof *w);
    if (!w)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    m->be->download(w, m->values, (size_t)m->size * sizeof *w); /* a GPU's weights too */
    int rc = 0;
    for (int i = 0; i < m->nlayers && rc == 0; i++) {
        const ct_layer *l = &m->layers[i];
        if (l->shared) /* a second application: its weights are the first one's */
            continue;
        for (int k = 0; k < l->nparams && rc == 0; k++) {
            const ct_param *p = &l->params[k];
            char t[CT_NAME_MAX + 80];
            snprintf(t, sizeof t, "%s/%s/histogram", l->name, p->name);
            rc = ct_tfevents_histogram(tb->train, t, epoch, w + p->offset,
                                       ct_shape_size(&p->shape), err);
        }
    }
    free(w);
    return rc < 0 ? -1 : ct_tfevents_flush(tb->train, err);
}

int ct_tensorboard_close(ct_tensorboard *tb, ct_error *err)
{
    if (!tb)
        return 0;
    int rc = ct_tfevents_close(tb->train, err);
    if (ct_tfevents_close(tb->val, rc < 0 ? NULL : err) < 0)
        rc = -1;
    free(tb);
    return rc;
}
