/* serve_json.c - predict request and answer bodies (see serve_json.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve_json.h"

/* Reads the nested list v of the given shape (axes from `axis` on) into out, in row-major
 * order; *at counts the values written. `what` names the instance for messages. */
static int read_nested(const cJSON *v, const ct_shape *s, int axis, float *out, int64_t *at,
                       const char *what, ct_error *err)
{
    if (axis == s->ndim) {
        if (!cJSON_IsNumber(v))
            return ct_err(err, CT_ERR_USAGE, "%s: expected a number at depth %d, got %s", what,
                          axis, cJSON_IsArray(v) ? "a list" : cJSON_IsString(v) ? "a string"
                                                                                 : "another value");
        out[(*at)++] = (float)v->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return ct_err(err, CT_ERR_USAGE, "%s: expected a list of %lld on axis %d, got %s", what,
                      (long long)s->dim[axis], axis + 1,
                      cJSON_IsNumber(v) ? "a number" : "another value");
    int n = cJSON_GetArraySize(v);
    if (n != s->dim[axis])
        return ct_err(err, CT_ERR_USAGE, "%s: expected %lld values on axis %d, got %d", what,
                      (long long)s->dim[axis], axis + 1, n);
    for (const cJSON *e = v->child; e; e = e->next)
        if (read_nested(e, s, axis + 1, out, at, what, err) < 0)
            return -1;
    return 0;
}

/* One sample of input k from v into req->x[k] at row r. */
static int read_sample(const ct_serve_sig *sig, int k, const cJSON *v, ct_serve_request *req,
                       int64_t r, const char *what, ct_error *err)
{
    const ct_shape *s = &sig->input_shapes[k];
    int64_t size = ct_shape_size(s), at = 0;
    float *row = req->x[k] + r * size;
    if (read_nested(v, s, 0, row, &at, what, err) < 0)
        return -1;
    for (int64_t i = 0; i < size; i++)
        row[i] = (float)(row[i] * sig->scale[k]);
    return 0;
}

static int alloc_rows(const ct_serve_sig *sig, ct_serve_request *req, int64_t rows,
                      ct_error *err)
{
    req->rows = rows;
    for (int k = 0; k < sig->ninputs; k++) {
        int64_t n = rows * ct_shape_size(&sig->input_shapes[k]);
        if (!(req->x[k] = malloc((size_t)(n ? n : 1) * sizeof(float))))
            return ct_err(err, CT_ERR_NOMEM, "out of memory for %lld rows", (long long)rows);
    }
    return 0;
}

/* An object's member for input k: by name, or the only member of a one-input model. */
static const cJSON *member(const ct_serve_sig *sig, const cJSON *obj, int k, const char *what,
                           ct_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, sig->input_names[k]);
    if (!v)
        ct_err(err, CT_ERR_USAGE, "%s: no input named '%s'", what, sig->input_names[k]);
    return v;
}

/* {"instances": [sample, ...]}: a sample is a nested list (one input) or an object of
 * one per input. */
static int parse_rows(const ct_serve_sig *sig, const cJSON *list, ct_serve_request *req,
                      ct_error *err)
{
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return ct_err(err, CT_ERR_USAGE, "\"instances\" must be a non-empty list of samples");
    if (alloc_rows(sig, req, cJSON_GetArraySize(list), err) < 0)
        return -1;
    int64_t r = 0;
    for (const cJSON *e = list->child; e; e = e->next, r++) {
        char what[48];
        snprintf(what, sizeof what, "instance %lld", (long long)r);
        for (int k = 0; k < sig->ninputs; k++) {
            const cJSON *v = e;
            if (cJSON_IsObject(e) && !(v = member(sig, e, k, what, err)))
                return -1;
            if (sig->ninputs > 1 && !cJSON_IsObject(e))
                return ct_err(err, CT_ERR_USAGE, "%s: the model has %d inputs; give an object "
                              "with one entry per input", what, sig->ninputs);
            if (read_sample(sig, k, v, req, r, what, err) < 0)
                return -1;
        }
    }
    return 0;
}

/* {"inputs": batch} or {"inputs": {name: batch, ...}}: each batch a list of samples. */
static int parse_columns(const ct_serve_sig *sig, const cJSON *in, ct_serve_request *req,
                         ct_error *err)
{
    const cJSON *first = cJSON_IsObject(in) ? member(sig, in, 0, "inputs", err) : in;
    if (!first)
        return -1;
    if (!cJSON_IsArray(first) || cJSON_GetArraySize(first) == 0)
        return ct_err(err, CT_ERR_USAGE, "\"inputs\" must hold a non-empty list of samples "
                      "per input");
    if (sig->ninputs > 1 && !cJSON_IsObject(in))
        return ct_err(err, CT_ERR_USAGE, "the model has %d inputs: \"inputs\" must be an "
                      "object with one entry per input", sig->ninputs);
    if (alloc_rows(sig, req, cJSON_GetArraySize(first), err) < 0)
        return -1;
    for (int k = 0; k < sig->ninputs; k++) {
        const cJSON *batch = cJSON_IsObject(in) ? member(sig, in, k, "inputs", err) : in;
        if (!batch)
            return -1;
        if (!cJSON_IsArray(batch) || cJSON_GetArraySize(batch) != req->rows)
            return ct_err(err, CT_ERR_USAGE, "inputs '%s': expected a list of %lld samples",
                          sig->input_names[k], (long long)req->rows);
        int64_t r = 0;
        for (const cJSON *e = batch->child; e; e = e->next, r++) {
            char what[160];
            snprintf(what, sizeof what, "inputs '%s' sample %lld", sig->input_names[k],
                     (long long)r);
            if (read_sample(sig, k, e, req, r, what, err) < 0)
                return -1;
        }
    }
    return 0;
}

int ct_serve_parse(const ct_serve_sig *sig, const char *body, size_t len,
                   ct_serve_request *req, ct_error *err)
{
    *req = (ct_serve_request){0};
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= body && at <= body + len ? (long)(at - body) : -1;
        return ct_err(err, CT_ERR_USAGE, "the body is not JSON (error near byte %ld)", off);
    }
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "instances");
    const cJSON *cols = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    int rc;
    if (!cJSON_IsObject(root) || (!rows == !cols))
        rc = ct_err(err, CT_ERR_USAGE, "the body must be an object with \"instances\" (a list "
                    "of samples) or \"inputs\", not both");
    else if (rows)
        rc = parse_rows(sig, rows, req, err);
    else {
        req->columnar = true;
        rc = parse_columns(sig, cols, req, err);
    }
    cJSON_Delete(root);
    if (rc < 0)
        ct_serve_request_free(req);
    return rc;
}

void ct_serve_request_free(ct_serve_request *req)
{
    for (int k = 0; k < CT_MAX_IO; k++)
        free(req->x[k]);
    *req = (ct_serve_request){0};
}

/* The values of one sample (shape s) as nested lists. */
static cJSON *nested(const float *v, const ct_shape *s, int axis, int64_t *at)
{
    if (axis == s->ndim) {
        float x = v[(*at)++];
        return isfinite(x) ? cJSON_CreateNumber((double)x) : cJSON_CreateNull();
    }
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; a && i < s->dim[axis]; i++)
        if (!cJSON_AddItemToArray(a, nested(v, s, axis + 1, at))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

static cJSON *sample(const ct_serve_sig *sig, int k, const float *y, int64_t r)
{
    int64_t at = 0, size = ct_shape_size(&sig->output_shapes[k]);
    return nested(y + r * size, &sig->output_shapes[k], 0, &at);
}

char *ct_serve_format(const ct_serve_sig *sig, bool columnar, int64_t rows,
                      const float *const *y)
{
    cJSON *root = cJSON_CreateObject(), *body = NULL;
    bool ok = root != NULL;
    if (ok && columnar && sig->noutputs == 1) { /* {"outputs": [sample, ...]} */
        body = cJSON_AddArrayToObject(root, "outputs");
        for (int64_t r = 0; body && r < rows; r++)
            ok &= cJSON_AddItemToArray(body, sample(sig, 0, y[0], r));
    } else if (ok && columnar) { /* {"outputs": {name: [sample, ...], ...}} */
        body = cJSON_AddObjectToObject(root, "outputs");
        for (int k = 0; body && k < sig->noutputs; k++) {
            cJSON *a = cJSON_AddArrayToObject(body, sig->output_names[k]);
            for (int64_t r = 0; a && r < rows; r++)
                ok &= cJSON_AddItemToArray(a, sample(sig, k, y[k], r));
            ok &= a != NULL;
        }
    } else if (ok) { /* {"predictions": [sample or {name: sample, ...}, ...]} */
        body = cJSON_AddArrayToObject(root, "predictions");
        for (int64_t r = 0; body && r < rows; r++) {
            cJSON *item = sig->noutputs == 1 ? sample(sig, 0, y[0], r) : cJSON_CreateObject();
            for (int k = 0; sig->noutputs > 1 && item && k < sig->noutputs; k++)
                ok &= cJSON_AddItemToObject(item, sig->output_names[k], sample(sig, k, y[k], r));
            ok &= cJSON_AddItemToArray(body, item);
        }
    }
    char *text = ok && body ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}
