/* inspect.c - the outputs of named layers: finding them, running the model with them kept
 * alive, and `ctrain predict --outputs` (ct_experiment_predict_layers). */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "inspect.h"
#include "parallel.h"

/* Appends the model's layer names (and its inputs') to err's message, so a misspelt name
 * can be put right; cut with "..." where the message is full. */
static void list_names(const ct_model *m, ct_error *err)
{
    size_t len = strlen(err->msg), cap = sizeof err->msg - 8;
    const char *sep = "; the model's layers: ";
    for (int i = 0; i < m->nlayers + m->ninputs && len < cap; i++) {
        const char *name = i < m->nlayers ? m->layers[i].name : m->input_names[i - m->nlayers];
        if (i == m->nlayers)
            sep = m->ninputs > 1 ? "; its inputs: " : "; its input: ";
        int w = snprintf(err->msg + len, cap - len, "%s%s", sep, name);
        len = w < 0 || (size_t)w >= cap - len ? cap : len + (size_t)w;
        sep = ", ";
    }
    if (len >= cap) /* snprintf ended the text at cap - 1 */
        strcpy(err->msg + cap - 1, " ...");
}

static int find_layer(const ct_model *m, const char *name, size_t len)
{
    for (int i = 0; i < m->nlayers; i++)
        if (strlen(m->layers[i].name) == len && !strncmp(m->layers[i].name, name, len))
            return i;
    return -1;
}

/* Output k of layer i, or an error naming the outputs it has. */
static int layer_output(const ct_model *m, int i, long k, const char *name, ct_source_id *t,
                        ct_error *err)
{
    const ct_layer *l = &m->layers[i];
    if (k < 0 || k >= l->noutputs) {
        if (l->noutputs == 1)
            return ct_err(err, CT_ERR_USAGE, "'%s': layer '%s' (%s) has one output, '%s' (a "
                          "recurrent layer with return_state: true has its states as "
                          "outputs 1 and up)", name, l->name, l->kind->class_name, l->name);
        return ct_err(err, CT_ERR_USAGE, "'%s': layer '%s' (%s) has outputs 0 to %d ('%s' "
                      "or '%s:0' to '%s:%d')", name, l->name, l->kind->class_name,
                      l->noutputs - 1, l->name, l->name, l->name, l->noutputs - 1);
    }
    *t = k == 0 ? i : m->more_at[i] + (int)k - 1;
    return 0;
}

int ct_inspect_find(const ct_model *m, const char *name, ct_source_id *t, ct_error *err)
{
    size_t len = strlen(name);
    int i = find_layer(m, name, len);
    if (i >= 0)
        return layer_output(m, i, 0, name, t, err);
    const char *colon = strrchr(name, ':');
    if (colon && colon > name && colon[1]) {
        char *end;
        long k = strtol(colon + 1, &end, 10);
        i = *end ? -1 : find_layer(m, name, (size_t)(colon - name));
        if (i >= 0)
            return layer_output(m, i, k, name, t, err);
    }
    for (int k = 0; k < m->ninputs; k++)
        if (!strcmp(m->input_names[k], name)) {
            *t = -1 - k;
            return 0;
        }
    ct_err(err, CT_ERR_USAGE, "the model has no layer '%s'", name);
    list_names(m, err);
    return -1;
}

int ct_inspect_resolve(const ct_model *m, int n, const char *const *names,
                       ct_inspect_result *r, ct_error *err)
{
    memset(r, 0, sizeof *r);
    if (n < 1 || n > CT_MAX_COLLECT)
        return ct_err(err, CT_ERR_USAGE, "name 1 to %d layers, not %d", CT_MAX_COLLECT, n);
    for (int j = 0; j < n; j++) {
        ct_source_id t;
        if (ct_inspect_find(m, names[j], &t, err) < 0)
            return -1;
        if (t >= 0 && !m->live[ct_tensor_layer(m, t)])
            return ct_err(err, CT_ERR_USAGE, "layer '%s' reaches no output of the model, so "
                          "the model never computes it", m->layers[ct_tensor_layer(m, t)].name);
        for (int i = 0; i < j; i++)
            if (r->tensor[i] == t)
                return ct_err(err, CT_ERR_USAGE, "'%s' is asked for twice%s%s%s", names[j],
                              strcmp(names[i], names[j]) ? " (as '" : "",
                              strcmp(names[i], names[j]) ? names[i] : "",
                              strcmp(names[i], names[j]) ? "')" : "");
        r->tensor[j] = t;
        r->shape[j] = *ct_tensor_shape(m, t);
    }
    r->n = n;
    return 0;
}

int ct_inspect_run(ct_experiment *ex, const char *input, const char *x, int64_t sample,
                   ct_inspect_result *r, ct_error *err)
{
    ct_source src;
    if (ct_experiment_source(ex, input, x, &src, err) < 0)
        return -1;
    int64_t rows = ct_experiment_collect(ex, &src, input ? input : "data.test", sample, r->n,
                                         r->tensor, r->values, err);
    if (rows < 0)
        return -1;
    r->rows = rows;
    return 0;
}

void ct_inspect_free(ct_inspect_result *r)
{
    for (int j = 0; j < r->n; j++) {
        free(r->values[j]);
        r->values[j] = NULL;
    }
}

/* CSV holds one row of numbers per sample: only outputs of one axis fit. */
static int check_csv(const ct_inspect_result *r, const char *const *names, const char *path,
                     ct_error *err)
{
    for (int j = 0; j < r->n; j++) {
        if (r->shape[j].ndim == 1)
            continue;
        char shape[128];
        ct_shape_format_sample(&r->shape[j], shape, sizeof shape);
        return ct_err(err, CT_ERR_USAGE, "%s: a CSV file holds one row of numbers per "
                      "sample, but '%s' gives %s per sample; write .h5 instead (one dataset "
                      "per layer, shaped (N, ...))", path, names[j], shape);
    }
    return 0;
}

static int predict_layers(ct_experiment *ex, const char *input, const char *x, int n,
                          const char *const *layers, const char *output, ct_error *err)
{
    const char *ext = strrchr(output, '.');
    if (!ext || (strcmp(ext, ".h5") && strcmp(ext, ".hdf5") && strcmp(ext, ".csv")))
        return ct_err(err, CT_ERR_USAGE, "%s: layer outputs are written as .h5, .hdf5 or .csv, "
                      "not '%s'", output, ext ? ext : "");
    ct_inspect_result r;
    if (ct_inspect_resolve(ex->model, n, layers, &r, err) < 0 ||
        (!strcmp(ext, ".csv") && check_csv(&r, layers, output, err) < 0) ||
        ct_inspect_run(ex, input, x, -1, &r, err) < 0)
        return -1;
    int rc = ct_write_arrays(output, n, layers, (const float *const *)r.values, r.rows, r.shape,
                             "layer outputs", err);
    ct_inspect_free(&r);
    return rc;
}

int ct_experiment_predict_layers(ct_experiment *ex, const char *input, const char *x,
                                 int nlayers, const char *const *layers, const char *output,
                                 ct_error *err)
{
    ct_fp_state fp = ct_fp_enter();
    int rc = predict_layers(ex, input, x, nlayers, layers, output, err);
    ct_fp_leave(fp);
    return rc;
}
