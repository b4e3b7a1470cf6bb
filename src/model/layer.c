/* layer.c - what every layer kind shares: key checks, parameter declaration, errors and
 * the integer / list config readers. */
#include <stdarg.h>
#include <string.h>

#include "layer.h"

/* Generous bound on a kind's own keys; the array below adds the shared keys and NULL. */
#define CT_LAYER_MAX_KEYS 60

void ct_layer_describe(const ct_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "layer '%s' (%s)", l->name, l->kind ? l->kind->class_name : "?");
}

int ct_layer_check_keys(const ct_layer *l, const ct_node *cfg, const char *const *keys,
                        ct_error *err)
{
    const char *allowed[CT_LAYER_MAX_KEYS + 5];
    int n = 0;
    for (; keys && keys[n]; n++) {
        if (n == CT_LAYER_MAX_KEYS)
            return ct_err(err, CT_ERR_INTERNAL, "layer '%s': too many config keys", l->name);
        allowed[n] = keys[n];
    }
    allowed[n++] = "type";
    allowed[n++] = "name";
    allowed[n++] = "inputs";    /* read by the model */
    allowed[n++] = "trainable"; /* read by the model */
    allowed[n] = NULL;
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    return ct_cfg_check_keys(cfg, allowed, what, err);
}

int ct_layer_add_param(ct_layer *l, const char *name, ct_shape shape, ct_init init,
                       ct_regularizer reg, bool trainable, ct_error *err)
{
    if (l->nparams >= CT_MAX_PARAMS)
        return ct_layer_err(err, l, "more than %d parameters", CT_MAX_PARAMS);
    ct_param *p = &l->params[l->nparams];
    if (strlen(name) >= sizeof p->name)
        return ct_layer_err(err, l, "parameter name '%s' is too long", name);
    memset(p, 0, sizeof *p);
    strcpy(p->name, name);
    p->shape = shape;
    p->init = init;
    p->reg = reg;
    p->trainable = trainable;
    return l->nparams++;
}

int ct_layer_verr_at(ct_error *err, const ct_layer *l, const ct_node *at, const char *fmt,
                     va_list ap)
{
    char msg[1536], what[CT_NAME_MAX + 80];
    vsnprintf(msg, sizeof msg, fmt, ap);
    ct_layer_describe(l, what, sizeof what);
    if (at)
        return ct_node_err(err, at, "%s: %s", what, msg);
    return ct_err(err, CT_ERR_CONFIG, "%s: %s", what, msg);
}

int ct_layer_err_at(ct_error *err, const ct_layer *l, const ct_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ct_layer_verr_at(err, l, at, fmt, ap);
    va_end(ap);
    return rc;
}

int ct_layer_err(ct_error *err, const ct_layer *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ct_layer_verr_at(err, l, l->cfg, fmt, ap);
    va_end(ap);
    return rc;
}

/* Splits ct_act_names() into a NULL-terminated candidate list for ct_suggest. */
static void act_candidates(char *buf, size_t n, const char **out, int max)
{
    snprintf(buf, n, "%s", ct_act_names());
    int k = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ", ", &save); t && k < max - 1; t = strtok_r(NULL, ", ", &save))
        out[k++] = t;
    out[k] = NULL;
}

static int unknown_act(const ct_layer *l, const ct_node *v, const char *name, ct_error *err)
{
    char buf[2048], what[CT_NAME_MAX + 80], hint[160] = "";
    const char *cands[128];
    act_candidates(buf, sizeof buf, cands, 128);
    const char *s = ct_suggest(name, cands);
    if (s)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
    ct_layer_describe(l, what, sizeof what);
    return ct_node_err(err, v, "%s: unknown activation '%s'%s; known activations: %s", what,
                       name, hint, ct_act_names());
}

int ct_layer_parse_act(const ct_layer *l, ct_node *cfg, const char *key, const char *def,
                       ct_act *out, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (!def && ct_cfg_require(cfg, key, what, err))
        return -1;
    const char *name;  /* null reads as the default: linear, as Keras's None */
    if (ct_cfg_string(cfg, key, def, &name, err))
        return -1;
    if (ct_act_parse(name, out))
        return unknown_act(l, ct_map_get(cfg, key), name, err);
    return 0;
}

/* ---- integer and list config values ---------------------------------------------- */

int ct_layer_int_entry(const ct_layer *l, const ct_node *n, const char *key, int64_t min,
                       int64_t *out, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    if (ct_node_int(n, out, err))
        return -1;
    if (*out >= min && *out <= INT32_MAX)
        return 0;
    ct_layer_describe(l, what, sizeof what);
    return ct_node_err(err, n, "%s: %s values must be between %lld and %d, got %lld", what, key,
                       (long long)min, INT32_MAX, (long long)*out);
}

int ct_layer_put_ints(ct_node *cfg, const char *key, const int64_t *v, int n, ct_error *err)
{
    char text[32];
    if (n == 1) {
        snprintf(text, sizeof text, "%lld", (long long)v[0]);
        return ct_map_set_scalar(cfg, key, text) ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    ct_node *seq = ct_map_set_seq(cfg, key);
    for (int i = 0; seq && i < n; i++) {
        snprintf(text, sizeof text, "%lld", (long long)v[i]);
        ct_node *item = ct_seq_append_scalar(seq, text);
        if (item)
            item->used = true;
        else
            seq = NULL;
    }
    return seq ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
}

int ct_layer_read_ints(const ct_layer *l, ct_node *cfg, const char *key, int n, int64_t min,
                       const int64_t *fallback, int64_t *out, ct_error *err)
{
    ct_node *v = ct_map_get(cfg, key);
    if (ct_node_is_null(v)) {
        memcpy(out, fallback, (size_t)n * sizeof *out);
        return ct_layer_put_ints(cfg, key, out, n, err);
    }
    if (v->type == CT_NODE_SCALAR) {
        if (ct_layer_int_entry(l, v, key, min, &out[0], err))
            return -1;
        for (int i = 1; i < n; i++)
            out[i] = out[0];
        return 0;
    }
    if (v->type != CT_NODE_SEQ || v->len != (size_t)n) {
        char what[CT_NAME_MAX + 80];
        ct_layer_describe(l, what, sizeof what);
        return ct_node_err(err, v, "%s: %s must be an integer or a list of %d integer%s", what,
                           key, n, n == 1 ? "" : "s");
    }
    for (int i = 0; i < n; i++) {
        v->items[i]->used = true;
        if (ct_layer_int_entry(l, v->items[i], key, min, &out[i], err))
            return -1;
    }
    return 0;
}

int ct_layer_data_format(const ct_layer *l, ct_node *cfg, ct_error *err)
{
    const char *fmt;
    if (ct_cfg_string(cfg, "data_format", "channels_last", &fmt, err))
        return -1;
    if (!strcmp(fmt, "channels_last"))
        return 0;
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    return ct_node_err(err, ct_map_get(cfg, "data_format"),
                       "%s: data_format '%s' is not supported; only channels_last is", what, fmt);
}

/* ---- bias + activation tail --------------------------------------------------------- */

static const ct_act linear_act = {CT_ACT_LINEAR, 0.0f};

int64_t ct_tail_scratch(ct_act act, int64_t out_floats)
{
    return ct_act_from_output(act) ? 0 : out_floats;
}

float *ct_tail_target(const ct_layer *l, ct_act act, float *y)
{
    return ct_act_from_output(act) ? y : l->scratch;
}

void ct_tail_forward(const ct_layer *l, ct_act act, const float *bias, float *z, float *y,
                     int64_t n, int64_t cols)
{
    const ct_backend *be = l->be;
    if (z == y) {
        if (bias || act.kind != CT_ACT_LINEAR)
            be->bias_act(act, bias, y, n, cols);
        return;
    }
    be->bias_act_to(act, bias, z, y, n, cols);
}

ct_act ct_tail_inner_act(const ct_layer *l, ct_act act, bool backward)
{
    if (!ct_act_from_output(act) || (backward && l->act_fused))
        return linear_act;
    return act;
}

void ct_tail_backward(const ct_layer *l, ct_act act, const float *z, const float *y, float *dy,
                      float *db, int64_t n, int64_t cols)
{
    const ct_backend *be = l->be;
    ct_act inner = ct_tail_inner_act(l, act, true);
    if (inner.kind == CT_ACT_LINEAR && act.kind != CT_ACT_LINEAR && !l->act_fused)
        be->act_backward(act, z, y, dy, dy, n, cols);
    if (inner.kind != CT_ACT_LINEAR || db)
        be->bias_act_backward(inner, y, dy, db, n, cols);
}
