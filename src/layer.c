/* layer.c - what every layer kind shares: key checks, parameter declaration, errors. */
#include <stdarg.h>
#include <string.h>

#include "layer.h"

/* Generous bound on a kind's own keys; the array below adds "type", "name" and NULL. */
#define CT_LAYER_MAX_KEYS 61

static void layer_what(const ct_layer *l, char *buf, size_t n)
{
    snprintf(buf, n, "layer '%s' (%s)", l->name, l->kind ? l->kind->class_name : "?");
}

int ct_layer_check_keys(const ct_layer *l, const ct_node *cfg, const char *const *keys,
                        ct_error *err)
{
    const char *allowed[CT_LAYER_MAX_KEYS + 3];
    int n = 0;
    for (; keys && keys[n]; n++) {
        if (n == CT_LAYER_MAX_KEYS)
            return ct_err(err, CT_ERR_INTERNAL, "layer '%s': too many config keys", l->name);
        allowed[n] = keys[n];
    }
    allowed[n++] = "type";
    allowed[n++] = "name";
    allowed[n] = NULL;
    char what[CT_NAME_MAX + 80];
    layer_what(l, what, sizeof what);
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

int ct_layer_err(ct_error *err, const ct_layer *l, const char *fmt, ...)
{
    char msg[1536], what[CT_NAME_MAX + 80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    layer_what(l, what, sizeof what);
    if (l->cfg)
        return ct_node_err(err, l->cfg, "%s: %s", what, msg);
    return ct_err(err, CT_ERR_CONFIG, "%s: %s", what, msg);
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
    layer_what(l, what, sizeof what);
    return ct_node_err(err, v, "%s: unknown activation '%s'%s; known activations: %s", what,
                       name, hint, ct_act_names());
}

int ct_layer_parse_act(const ct_layer *l, ct_node *cfg, const char *key, const char *def,
                       ct_act *out, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    layer_what(l, what, sizeof what);
    if (!def && ct_cfg_require(cfg, key, what, err))
        return -1;
    const char *name;  /* null reads as the default: linear, as Keras's None */
    if (ct_cfg_string(cfg, key, def, &name, err))
        return -1;
    if (ct_act_parse(name, out))
        return unknown_act(l, ct_map_get(cfg, key), name, err);
    return 0;
}
