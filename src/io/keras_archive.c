/* keras_archive.c - a model and its weights in Keras 3's own formats: the .keras archive
 * (a zip of config.json, metadata.json and model.weights.h5, as keras.saving.save_model
 * writes it) and the .weights.h5 file of model.save_weights.
 *
 * config.json is the model_config ctrain writes into its legacy files (weights.c), with
 * the module names Keras 3's deserializer looks classes up by. model.weights.h5 holds
 * each layer's variables as layers/<path>/vars/0, 1, ... in the order of the layer's
 * weights, where <path> is not the layer's name but its class in snake case, numbered
 * _1, _2, ... among the model's layers of that class in model.layers order (Keras's
 * saving_lib addresses them so, since names are often generated); recurrent layers keep
 * theirs in their cell, wrappers in their wrapped layers. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <hdf5.h>

#include "experiment.h"
#include "guard.h"
#include "h5image.h"
#include "h5util.h"
#include "keras_io.h"
#include "weights.h"
#include "zip.h"

/* The Keras release whose format this writes (metadata.json's keras_version). */
#define KERAS_VERSION "3.15.1"

void ct_keras_snake_case(const char *cls, char *out, size_t n)
{
    /* keras.src.utils.naming.to_snake_case: drop non-word characters, then "_" before an
     * upper-case letter that starts a lower-case run and between a lower-case letter and
     * an upper-case one, then lower-case all. */
    char a[CT_NAME_MAX * 2], b[CT_NAME_MAX * 3], c[CT_NAME_MAX * 4];
    size_t k = 0;
    for (const char *p = cls; *p && k + 1 < sizeof a; p++)
        if (isalnum((unsigned char)*p) || *p == '_')
            a[k++] = *p;
    a[k] = '\0';
    k = 0;
    for (size_t i = 0; a[i] && k + 3 < sizeof b;) {
        size_t j = i + 2;
        while (a[i + 1] && islower((unsigned char)a[j]))
            j++;
        if (a[i + 1] && isupper((unsigned char)a[i + 1]) && j > i + 2) {
            b[k++] = a[i];
            b[k++] = '_';
            for (size_t t = i + 1; t < j && k + 1 < sizeof b; t++)
                b[k++] = a[t];
            i = j;
        } else {
            b[k++] = a[i++];
        }
    }
    b[k] = '\0';
    k = 0;
    for (size_t i = 0; b[i] && k + 3 < sizeof c;) {
        if (islower((unsigned char)b[i]) && isupper((unsigned char)b[i + 1])) {
            c[k++] = b[i];
            c[k++] = '_';
            c[k++] = b[i + 1];
            i += 2;
        } else {
            c[k++] = b[i++];
        }
    }
    c[k] = '\0';
    for (k = 0; c[k]; k++)
        c[k] = (char)tolower((unsigned char)c[k]);
    snprintf(out, n, "%s", c);
}

static bool kind_is(const ct_layer_kind *k, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(k->name, *names))
            return true;
    return false;
}

/* Kinds whose weights are the layer's own variables, in ctrain's order. */
static const char *const own_vars[] = {
    "dense", "conv1d", "conv2d", "conv3d", "conv1d_transpose", "conv2d_transpose",
    "depthwise_conv1d", "depthwise_conv2d", "separable_conv1d", "separable_conv2d",
    "batch_normalization", "layer_normalization", "group_normalization", "embedding",
    "normalization", "position_embedding", NULL};
/* Kinds that keep theirs in their cell. */
static const char *const in_cell[] = {"lstm", "gru", "simple_rnn", NULL};

/* The kind a wrapper wraps (its config's layer.type), or NULL. */
static const ct_layer_kind *wrapped_kind(const ct_layer *l)
{
    const ct_node *in = l->cfg ? ct_map_get(l->cfg, "layer") : NULL;
    const ct_node *t = in && in->type == CT_NODE_MAP ? ct_map_get(in, "type") : NULL;
    return t && t->type == CT_NODE_SCALAR ? ct_layer_kind_find(t->scalar) : NULL;
}

/* Where parameter i of l goes below the layer's group ("vars", "cell/vars",
 * "forward_layer/cell/vars"), and *index its number there. NULL: Keras's layout for
 * this kind is not known here. */
const char *ct_keras_var_place(const ct_layer *l, int i, int *index)
{
    const ct_layer_kind *k = l->kind;
    *index = i;
    if (kind_is(k, own_vars))
        return "vars";
    if (kind_is(k, in_cell))
        return "cell/vars";
    if (!strcmp(k->name, "token_and_position_embedding")) {
        /* keras_hub's: each table in its sublayer, "token_embedding/embeddings" ->
         * token_embedding/vars/0 */
        *index = 0;
        return !strncmp(l->params[i].name, "token_", 6) ? "token_embedding/vars"
                                                         : "position_embedding/vars";
    }
    if (!strcmp(k->name, "bidirectional")) {
        bool fwd = !strncmp(l->params[i].name, "forward_", 8);
        int before = 0;
        for (int j = 0; j < i; j++)
            before += !strncmp(l->params[j].name, "forward_", 8) == fwd;
        *index = before;
        return fwd ? "forward_layer/cell/vars" : "backward_layer/cell/vars";
    }
    if (!strcmp(k->name, "multi_head_attention")) {
        /* "query/kernel" -> query_dense/vars/0, "attention_output/bias" -> output_dense/vars/1 */
        static const char *const proj[][2] = {{"query/", "query_dense/vars"},
                                              {"key/", "key_dense/vars"},
                                              {"value/", "value_dense/vars"},
                                              {"attention_output/", "output_dense/vars"}};
        const char *name = l->params[i].name;
        for (size_t j = 0; j < sizeof proj / sizeof proj[0]; j++) {
            size_t n = strlen(proj[j][0]);
            if (!strncmp(name, proj[j][0], n)) {
                *index = !strcmp(name + n, "bias");
                return proj[j][1];
            }
        }
        return NULL;
    }
    if (!strcmp(k->name, "time_distributed")) {
        const ct_layer_kind *in = wrapped_kind(l);
        if (in && kind_is(in, own_vars))
            return "layer/vars";
        if (in && kind_is(in, in_cell))
            return "layer/cell/vars";
    }
    return NULL;
}

int ct_keras_check_exportable(const ct_model *m, ct_error *err)
{
    char list[1024] = "";
    int bad = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        int idx;
        if (l->shared || l->nparams == 0 || ct_keras_var_place(l, 0, &idx))
            continue;
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s'%s' (%s)", bad ? ", " : "", l->name,
                 l->kind->class_name);
        bad++;
    }
    if (bad)
        return ct_err(err, CT_ERR_USAGE, "Keras export cannot write the weights of layer%s %s: "
                      "where Keras 3 keeps them for %s is not known to ctrain",
                      bad > 1 ? "s" : "", list, bad > 1 ? "these kinds" : "this kind");
    return 0;
}

/* Writes one parameter as dataset `index` of group path (created with its parents). */
static int write_var(hid_t file, const ct_model *m, const char *path, int index,
                     const ct_param *p)
{
    hsize_t dims[CT_MAX_DIMS];
    for (int i = 0; i < p->shape.ndim; i++)
        dims[i] = (hsize_t)p->shape.dim[i];
    int64_t n = ct_shape_size(&p->shape);
    const float *data = p->value;
    float *host = NULL;
    if (m->be && m->be->device != CT_DEVICE_CPU) {
        if (!(host = malloc((size_t)(n ? n : 1) * sizeof *host)))
            return -1;
        m->be->download(host, p->value, (size_t)n * sizeof *host);
        data = host;
    }
    char name[600];
    snprintf(name, sizeof name, "%s/%d", path, index);
    hid_t space = p->shape.ndim ? H5Screate_simple(p->shape.ndim, dims, NULL)
                                : H5Screate(H5S_SCALAR);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), d = H5I_INVALID_HID;
    int rc = -1;
    if (space >= 0 && lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        d = H5Dcreate2(file, name, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0)
        rc = n == 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0
                 ? 0 : -1;
    if (d >= 0 && H5Dclose(d) < 0)
        rc = -1;
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (space >= 0)
        H5Sclose(space);
    free(host);
    return rc;
}

static int make_group(hid_t file, const char *path)
{
    if (H5Lexists(file, path, H5P_DEFAULT) > 0)
        return 0;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), g = H5I_INVALID_HID;
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        g = H5Gcreate2(file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    return g >= 0 && H5Gclose(g) >= 0 ? 0 : -1;
}

char (*ct_keras_layer_groups(const ct_model *m))[CT_KERAS_GROUP_MAX]
{
    int *order = malloc(((size_t)m->nlayers + 1) * sizeof *order);
    /* classes seen so far and their counts, for the _1, _2 ... suffixes */
    char (*seen)[CT_KERAS_GROUP_MAX] = calloc((size_t)m->nlayers + 2, sizeof *seen);
    int *count = calloc((size_t)m->nlayers + 2, sizeof *count);
    char (*groups)[CT_KERAS_GROUP_MAX] = calloc((size_t)m->nlayers + 1, sizeof *groups);
    int n = order ? ct_keras_layer_order(m, order) : -1, nseen = 0;
    if (n < 0 || !seen || !count || !groups) {
        free(groups);
        groups = NULL;
        n = 0;
    }
    for (int j = 0; j < n; j++) {
        const ct_layer *l = &m->layers[order[j]];
        char snake[CT_KERAS_GROUP_MAX - 24];
        ct_keras_snake_case(l->kind->class_name, snake, sizeof snake);
        int s = 0;
        while (s < nseen && strcmp(seen[s], snake))
            s++;
        if (s == nseen)
            snprintf(seen[nseen++], sizeof seen[0], "%s", snake);
        if (count[s]++ == 0)
            snprintf(groups[order[j]], sizeof groups[0], "layers/%s", snake);
        else
            snprintf(groups[order[j]], sizeof groups[0], "layers/%s_%d", snake, count[s] - 1);
    }
    free(order);
    free(seen);
    free(count);
    return groups;
}

/* The group of each layer of model.layers and its variables. */
static int write_layers(hid_t file, const ct_model *m, ct_error *err)
{
    char (*groups)[CT_KERAS_GROUP_MAX] = ct_keras_layer_groups(m);
    int rc = groups ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int j = 0; rc == 0 && j < m->nlayers; j++) {
        const ct_layer *l = &m->layers[j];
        if (l->shared)
            continue;
        char vars[CT_KERAS_GROUP_MAX + 32];
        snprintf(vars, sizeof vars, "%s/vars", groups[j]);
        if (make_group(file, vars) < 0)
            rc = -1;
        for (int i = 0; rc == 0 && i < l->nparams; i++) {
            int idx;
            const char *place = ct_keras_var_place(l, i, &idx);
            snprintf(vars, sizeof vars, "%s/%s", groups[j], place ? place : "vars");
            rc = write_var(file, m, vars, idx, &l->params[i]);
        }
        if (rc < 0 && !err->msg[0]) {
            char why[CT_H5_REASON_MAX];
            ct_h5_failure(why);
            ct_err(err, CT_ERR_IO, "writing the weights of layer '%s' failed%s%s", l->name,
                   why[0] ? ": " : "", why);
        }
    }
    if (rc == 0 && make_group(file, "vars") < 0)
        rc = ct_err(err, CT_ERR_IO, "writing the model's group failed");
    free(groups);
    return rc;
}

int ct_keras_weights_image(const ct_model *m, const char *label, void **bytes, size_t *len,
                           ct_error *err)
{
    *bytes = NULL;
    *len = 0;
    if (ct_keras_check_exportable(m, err) < 0)
        return -1;
    /* HDF5's core driver looks at a file of the name it is given even without a backing
     * store (an existing archive there makes it build nothing): it gets a fresh empty
     * one beside the output, removed afterwards. */
    char *scratch = ct_temp_beside(label, err);
    if (!scratch)
        return -1;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    ct_h5_image img;
    hid_t file = ct_h5_image_create(&img, scratch);
    int rc = 0;
    if (file < 0)
        rc = ct_err(err, CT_ERR_IO, "%s: HDF5 could not create the weights file", label);
    else {
        err->msg[0] = '\0';
        rc = write_layers(file, m, err);
        if (rc < 0)
            H5Fclose(file), free(img.kept);
        else
            rc = ct_h5_image_take(&img, file, label, bytes, len, err);
    }
    ct_h5_quiet_off(&q);
    unlink(scratch);
    free(scratch);
    return rc;
}

/* The module of a layer class that Keras itself has not: keras_hub's embeddings, which
 * keras.saving.load_model imports where keras_hub is installed. NULL: keras.layers. */
static const char *hub_class(const cJSON *l)
{
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(l, "class_name");
    static const char *const hub[] = {"TokenAndPositionEmbedding", "PositionEmbedding", NULL};
    for (int i = 0; cJSON_IsString(cls) && hub[i]; i++)
        if (!strcmp(cls->valuestring, hub[i]))
            return hub[i];
    return NULL;
}

/* Keras 3 looks a class up by its module: the model's, and each layer's. */
static int add_modules(cJSON *root)
{
    cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "class_name");
    bool seq = cJSON_IsString(cls) && !strcmp(cls->valuestring, "Sequential");
    if (!cJSON_AddStringToObject(root, "module", seq ? "keras" : "keras.src.models.functional")
        || !cJSON_AddNullToObject(root, "registered_name"))
        return -1;
    cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(cfg, "layers"), *l;
    cJSON_ArrayForEach(l, layers) {
        const char *hub = hub_class(l);
        char registered[64];
        snprintf(registered, sizeof registered, "keras_hub>%s", hub ? hub : "");
        if (!cJSON_HasObjectItem(l, "module") &&
            !cJSON_AddStringToObject(l, "module", hub ? "keras_hub.layers" : "keras.layers"))
            return -1;
        if (!cJSON_HasObjectItem(l, "registered_name") &&
            !(hub ? cJSON_AddStringToObject(l, "registered_name", registered)
                  : cJSON_AddNullToObject(l, "registered_name")))
            return -1;
    }
    return 0;
}

char *ct_keras_config_json(const ct_model *m)
{
    cJSON *root = ct_model_config_tree(m);
    char *text = root && add_modules(root) == 0 ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

/* Writes bytes to path through a temporary beside it, renamed into place. */
static int write_file_bytes(const char *path, const void *bytes, size_t len, ct_error *err)
{
    char *tmp = ct_temp_beside(path, err);
    if (!tmp)
        return -1;
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(bytes, 1, len, f) == len;
    int saved = errno;
    if (f && fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    int rc = ok ? ct_commit_temp(tmp, path, err)
                : ct_err(err, CT_ERR_IO, "writing %s: %s", path, strerror(saved));
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

int ct_keras_export_model(const ct_model *m, const char *path, ct_error *err)
{
    bool archive = ends_with(path, ".keras");
    if (!archive && !ends_with(path, ".weights.h5"))
        return ct_err(err, CT_ERR_USAGE, "%s: a Keras export is a .keras archive or a "
                      ".weights.h5 file; name the output so", path);
    void *weights = NULL;
    size_t wlen = 0;
    if (ct_keras_weights_image(m, path, &weights, &wlen, err) < 0)
        return -1;
    int rc;
    if (!archive) {
        rc = write_file_bytes(path, weights, wlen, err);
        free(weights);
        return rc;
    }
    char *config = ct_keras_config_json(m);
    char meta[160], date[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(date, sizeof date, "%Y-%m-%d@%H:%M:%S", &tm);
    snprintf(meta, sizeof meta, "{\"keras_version\": \"%s\", \"date_saved\": \"%s\"}",
             KERAS_VERSION, date);
    if (!config) {
        free(weights);
        return ct_err(err, CT_ERR_NOMEM, "out of memory writing the model's config");
    }
    ct_zip_entry e[] = {{"metadata.json", meta, strlen(meta), false},
                        {"config.json", config, strlen(config), false},
                        {"model.weights.h5", weights, wlen, false}};
    rc = ct_zip_write(path, e, 3, err);
    free(config);
    free(weights);
    return rc;
}

int ct_experiment_export_keras(ct_experiment *ex, const char *path, ct_error *err)
{
    return ct_keras_export_model(ex->model, path, err);
}
