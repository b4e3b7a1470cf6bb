/* registry.c - the optimizer kinds, the keys every optimizer shares, and the update
 * driver.
 *
 * Adding an optimizer: one file in optimizers/ defining a `const ct_optimizer_kind` and
 * its NULL-terminated key list, and one line in the table below.
 *
 * Generic keys (Keras 3's base optimizer): learning_rate, clipnorm (per tensor), clipvalue,
 * global_clipnorm, weight_decay. Unlike Keras 3, which applies only the first of clipnorm,
 * global_clipnorm and clipvalue that is set, every clip given is applied, in the order
 * clipvalue, clipnorm, global_clipnorm. Weight decay is Keras 3's: w -= lr * wd * w for
 * every trainable weight before the update.
 *
 * And Keras 3's moving average of the weights: use_ema (false), ema_momentum (0.99),
 * ema_overwrite_frequency (null: never during training). The average is the last state
 * slot ("average"), stepped by the backend's update right after the weights (see struct
 * ct_optimizer), so checkpoints carry it like any other state. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optimizer.h"
#include "parallel.h"
#include "text.h"

extern const ct_optimizer_kind ct_optimizer_sgd, ct_optimizer_adam, ct_optimizer_adamw,
    ct_optimizer_rmsprop, ct_optimizer_adagrad, ct_optimizer_nadam, ct_optimizer_adamax,
    ct_optimizer_adadelta, ct_optimizer_lion, ct_optimizer_ftrl;
extern const char *const ct_sgd_keys[], *const ct_adam_keys[], *const ct_rmsprop_keys[],
    *const ct_adagrad_keys[], *const ct_nadam_keys[], *const ct_adamax_keys[],
    *const ct_adadelta_keys[], *const ct_lion_keys[], *const ct_ftrl_keys[];

typedef struct opt_entry {
    const ct_optimizer_kind *kind;
    const char *const *keys;   /* the kind's own keys */
    double learning_rate;      /* Keras 3 defaults */
    double weight_decay;
} opt_entry;

static const opt_entry table[] = {
    {&ct_optimizer_sgd, ct_sgd_keys, 0.01, 0.0},
    {&ct_optimizer_adam, ct_adam_keys, 0.001, 0.0},
    {&ct_optimizer_adamw, ct_adam_keys, 0.001, 0.004},
    {&ct_optimizer_rmsprop, ct_rmsprop_keys, 0.001, 0.0},
    {&ct_optimizer_adagrad, ct_adagrad_keys, 0.001, 0.0},
    {&ct_optimizer_nadam, ct_nadam_keys, 0.001, 0.0},
    {&ct_optimizer_adamax, ct_adamax_keys, 0.001, 0.0},
    {&ct_optimizer_adadelta, ct_adadelta_keys, 0.001, 0.0},
    {&ct_optimizer_lion, ct_lion_keys, 0.001, 0.0},
    {&ct_optimizer_ftrl, ct_ftrl_keys, 0.001, 0.0},
};

#define N_KINDS (sizeof table / sizeof table[0])
#define MAX_KEYS 24

static const char *const generic_keys[] = {"type", "learning_rate", "clipnorm", "clipvalue",
                                           "global_clipnorm", "weight_decay", "use_ema",
                                           "ema_momentum", "ema_overwrite_frequency", NULL};

static const opt_entry *find_entry(const char *name)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (!strcmp(name, table[i].kind->name) || !strcmp(name, table[i].kind->class_name))
            return &table[i];
    /* then as layer types are matched (and as Keras 3 reads optimizer names): "ADAM" */
    for (size_t i = 0; i < N_KINDS; i++)
        if (ct_name_matches(name, table[i].kind->name) ||
            ct_name_matches(name, table[i].kind->class_name))
            return &table[i];
    return NULL;
}

const ct_optimizer_kind *ct_optimizer_kind_find(const char *name)
{
    const opt_entry *e = name ? find_entry(name) : NULL;
    return e ? e->kind : NULL;
}

const char *ct_optimizer_kind_names(void)
{
    static char buf[256];
    size_t used = 0;
    for (size_t i = 0; i < N_KINDS; i++)
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", i ? ", " : "",
                                 table[i].kind->name);
    return buf;
}

/* An optional positive number; absent or null leaves *out at 0 (off) and inserts nothing,
 * so the resolved config reads back the same. */
static int read_optional_positive(ct_node *cfg, const char *key, const char *what, double *out,
                                  ct_error *err)
{
    ct_node *n = ct_map_get(cfg, key);
    *out = 0.0;
    if (!n) /* written back, so the resolved config shows every key (Keras's None) */
        return ct_map_set_scalar(cfg, key, "null") ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (ct_node_is_null(n))
        return 0;
    if (ct_node_float(n, out, err) < 0)
        return -1;
    if (!(*out > 0.0) || !isfinite(*out))
        return ct_node_err(err, n, "%s: %s must be a positive number, got %g", what, key, *out);
    return 0;
}

/* learning_rate: a number, or a schedule map (see schedules.c), whose step-0 rate becomes
 * o->learning_rate. */
static int read_learning_rate(ct_optimizer *o, ct_node *cfg, const opt_entry *e,
                              const char *what, ct_error *err)
{
    ct_node *n = ct_map_get(cfg, "learning_rate");
    if (n && n->type == CT_NODE_MAP) {
        if (ct_schedule_parse(n, &o->schedule, err) < 0)
            return -1;
        o->learning_rate = ct_schedule_value(&o->schedule, 0);
        return 0;
    }
    double x;
    ct_error scratch;
    if (!ct_node_is_null(n) && (n->type != CT_NODE_SCALAR || ct_node_float(n, &x, &scratch) < 0))
        return ct_node_err(err, n, "%s: learning_rate must be a number or a schedule such as "
                                   "{type: exponential_decay, initial_learning_rate: 0.1, "
                                   "decay_steps: 1000, decay_rate: 0.96}; schedules: %s",
                           what, ct_schedule_names());
    if (ct_cfg_float(cfg, "learning_rate", e->learning_rate, -HUGE_VAL, HUGE_VAL,
                     &o->learning_rate, err) < 0)
        return -1;
    if (!(o->learning_rate > 0.0) || !isfinite(o->learning_rate))
        return ct_node_err(err, ct_map_get(cfg, "learning_rate"),
                           "%s: learning_rate must be a positive number, got %g", what,
                           o->learning_rate);
    return 0;
}

static int read_generic(ct_optimizer *o, ct_node *cfg, const opt_entry *e, const char *what,
                        ct_error *err)
{
    if (read_learning_rate(o, cfg, e, what, err) < 0)
        return -1;
    if (read_optional_positive(cfg, "clipnorm", what, &o->clipnorm, err) < 0 ||
        read_optional_positive(cfg, "clipvalue", what, &o->clipvalue, err) < 0 ||
        read_optional_positive(cfg, "global_clipnorm", what, &o->global_clipnorm, err) < 0)
        return -1;
    if (o->clipnorm > 0 && o->global_clipnorm > 0)
        return ct_node_err(err, ct_map_get(cfg, "global_clipnorm"),
                           "%s: only one of clipnorm and global_clipnorm can be set", what);
    if (ct_cfg_float(cfg, "weight_decay", e->weight_decay, -HUGE_VAL, HUGE_VAL,
                     &o->weight_decay, err) < 0)
        return -1;
    if (!(o->weight_decay >= 0.0) || !isfinite(o->weight_decay))
        return ct_node_err(err, ct_map_get(cfg, "weight_decay"),
                           "%s: weight_decay must be 0 or more, got %g", what, o->weight_decay);
    return 0;
}

/* use_ema, ema_momentum in [0, 1] and ema_overwrite_frequency (null, or a step count of at
 * least 1; Keras reads 0 as None, ctrain asks for null). Checked even without use_ema, so
 * a typo is found before it matters. */
static int read_ema(ct_optimizer *o, ct_node *cfg, const char *what, ct_error *err)
{
    if (ct_cfg_bool(cfg, "use_ema", false, &o->use_ema, err) < 0 ||
        ct_cfg_float(cfg, "ema_momentum", 0.99, 0.0, 1.0, &o->ema_momentum, err) < 0)
        return -1;
    ct_node *n = ct_map_get(cfg, "ema_overwrite_frequency");
    o->ema_overwrite_frequency = 0;
    if (!n) /* written back as Keras's None */
        return ct_map_set_scalar(cfg, "ema_overwrite_frequency", "null")
                   ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (ct_node_is_null(n))
        return 0;
    if (ct_cfg_int(cfg, "ema_overwrite_frequency", 0, INT64_MIN, INT64_MAX,
                   &o->ema_overwrite_frequency, err) < 0)
        return -1;
    if (o->ema_overwrite_frequency < 1)
        return ct_node_err(err, n, "%s: ema_overwrite_frequency must be a number of steps (1 "
                           "or more), or null for never, got %lld", what,
                           (long long)o->ema_overwrite_frequency);
    return 0;
}

static int check_keys(const ct_node *cfg, const opt_entry *e, const char *what, ct_error *err)
{
    const char *allowed[MAX_KEYS];
    int k = 0;
    for (int i = 0; generic_keys[i]; i++)
        allowed[k++] = generic_keys[i];
    for (int i = 0; e->keys[i] && k < MAX_KEYS - 1; i++)
        allowed[k++] = e->keys[i];
    allowed[k] = NULL;
    return ct_cfg_check_keys(cfg, allowed, what, err);
}

static int unknown_optimizer(const ct_node *at, const char *name, ct_error *err)
{
    const char *cands[N_KINDS + 1];
    for (size_t i = 0; i < N_KINDS; i++)
        cands[i] = table[i].kind->name;
    cands[N_KINDS] = NULL;
    char hint[96] = "";
    const char *s = ct_suggest(name, cands);
    if (s)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
    return ct_node_err(err, at, "unknown optimizer '%s'%s; known optimizers: %s", name, hint,
                       ct_optimizer_kind_names());
}

/* compile[key] as a map with a type: absent or null -> rmsprop (Keras's compile default); a name
 * is expanded to {type: name} so the resolved config shows every default. */
static ct_node *optimizer_node(ct_node *compile, const char *key, ct_error *err)
{
    if (!compile || compile->type != CT_NODE_MAP) {
        if (compile)
            ct_node_err(err, compile, "compile must be a map");
        else
            ct_err(err, CT_ERR_CONFIG, "compile: missing section");
        return NULL;
    }
    ct_node *n = ct_map_get(compile, key);
    if (ct_node_is_null(n))
        n = ct_map_set_scalar(compile, key, "rmsprop");
    if (n && n->type == CT_NODE_SCALAR && ct_node_expand_scalar(n, "type", err) < 0)
        return NULL;
    if (!n || n->type != CT_NODE_MAP) {
        if (n)
            ct_node_err(err, n, "optimizer must be a name such as adam or a map such as "
                                "{type: adam, learning_rate: 0.001}");
        else
            ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return n;
}

int ct_optimizer_slots(const ct_optimizer *o)
{
    return o->kind->state_per_param(o) + (o->use_ema ? 1 : 0);
}

const char *ct_optimizer_slot_name(const ct_optimizer *o, int slot)
{
    int own = o->kind->state_per_param(o);
    if (slot < own)
        return o->kind->state_name(o, slot);
    return slot == own && o->use_ema ? "average" : NULL;
}

/* Each slot at the kind's initial value, the average at 0 (as Keras; the first step
 * replaces it with the weights). */
static void init_state(ct_optimizer *o)
{
    int own = o->kind->state_per_param(o), slots = ct_optimizer_slots(o);
    for (int k = 0; k < slots; k++) {
        float v = k < own && o->kind->initial_state ? o->kind->initial_state(o, k) : 0.0f;
        o->be->fill(o->state + (int64_t)k * o->n, o->n, v);
    }
}

static int alloc_state(ct_optimizer *o, ct_error *err)
{
    int64_t spp = ct_optimizer_slots(o);
    if (spp <= 0 || o->n <= 0)
        return 0;
    if (o->n > INT64_MAX / spp / (int64_t)sizeof(float))
        return ct_err(err, CT_ERR_NOMEM, "optimizer state for %lld parameters is too large",
                      (long long)o->n);
    o->state = o->be->alloc((size_t)(spp * o->n) * sizeof(float));
    if (!o->state)
        return ct_err(err, CT_ERR_NOMEM, "out of memory for the optimizer's state (%lld floats)",
                      (long long)(spp * o->n));
    init_state(o);
    return 0;
}

static int configure(ct_optimizer *o, ct_node *cfg, ct_error *err)
{
    const char *name = NULL;
    if (ct_cfg_require(cfg, "type", "optimizer", err) < 0 ||
        ct_cfg_string(cfg, "type", NULL, &name, err) < 0)
        return -1;
    const opt_entry *e = find_entry(name);
    if (!e)
        return unknown_optimizer(ct_map_get(cfg, "type"), name, err);
    o->kind = e->kind;
    char what[64];
    snprintf(what, sizeof what, "optimizer '%s'", e->kind->name);
    if (read_generic(o, cfg, e, what, err) < 0 || read_ema(o, cfg, what, err) < 0 ||
        e->kind->configure(o, cfg, err) < 0)
        return -1;
    return check_keys(cfg, e, what, err);
}

ct_optimizer *ct_optimizer_new(ct_node *compile, const char *key, int64_t n, ct_error *err)
{
    return ct_optimizer_new_on(compile, key, n, ct_backend_cpu(), err);
}

ct_optimizer *ct_optimizer_new_on(ct_node *compile, const char *key, int64_t n,
                                  const ct_backend *be, ct_error *err)
{
    ct_node *cfg = optimizer_node(compile, key, err);
    if (!cfg)
        return NULL;
    ct_optimizer *o = calloc(1, sizeof *o);
    if (!o) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o->n = n;
    o->be = be;
    if (configure(o, cfg, err) < 0 || alloc_state(o, err) < 0) {
        ct_optimizer_free(o);
        return NULL;
    }
    return o;
}

void ct_optimizer_free(ct_optimizer *o)
{
    if (!o)
        return;
    if (o->state)
        (o->be ? o->be : ct_backend_cpu())->free(o->state);
    free(o);
}

/* ---- the update ------------------------------------------------------------------------ */

/* A trainable parameter's slice of the block, or false for the others. */
static bool trainable_slice(const ct_optimizer *o, const ct_param *p, int64_t *off, int64_t *len)
{
    if (!p || !p->grad || !p->trainable)
        return false;
    *off = p->offset;
    *len = ct_shape_size(&p->shape);
    return *off >= 0 && *len > 0 && *off + *len <= o->n;
}

static void clip_gradients(const ct_optimizer *o, const ct_backend *be, ct_param *const *params,
                           int nparams, float *g)
{
    if (o->clipvalue > 0)
        be->clip_value(g, o->n, (float)o->clipvalue);
    if (o->clipnorm > 0) {
        for (int i = 0; i < nparams; i++) {
            int64_t off, len;
            if (trainable_slice(o, params[i], &off, &len))
                be->clip_norm(g + off, len, o->clipnorm);
        }
    }
    if (o->global_clipnorm > 0)
        be->clip_norm(g, o->n, o->global_clipnorm);
}

void ct_optimizer_apply(ct_optimizer *o, ct_param *const *params, int nparams, float *w,
                        float *g)
{
    const ct_backend *be = o->be ? o->be : ct_backend_cpu();
    clip_gradients(o, be, params, nparams, g);
    /* Keras evaluates the schedule at the steps already taken, before counting this one;
     * the weight decay uses the same current rate. */
    double rate = ct_optimizer_learning_rate(o, o->iterations);
    o->iterations++;
    ct_update u = {0};
    o->kind->prepare(o, o->iterations, (float)rate, &u);
    u.decay = o->weight_decay > 0 ? (float)(rate * o->weight_decay) : 0.0f;
    if (o->use_ema) {
        /* Keras's momentum is 0 on the first step, and it overwrites the weights when
         * the step count is a multiple of the frequency. */
        u.ema = true;
        u.ema_slot = o->kind->state_per_param(o);
        u.ema_momentum = o->iterations == 1 ? 0.0f : (float)o->ema_momentum;
        u.ema_overwrite = o->ema_overwrite_frequency > 0 &&
                          o->iterations % o->ema_overwrite_frequency == 0;
    }
    be->update(&u, w, g, o->state, o->n);
}

void ct_optimizer_finalize(const ct_optimizer *o, float *w)
{
    if (!o->use_ema || o->iterations == 0 || o->n <= 0)
        return;
    const ct_backend *be = o->be ? o->be : ct_backend_cpu();
    be->copy(w, o->state + (int64_t)o->kind->state_per_param(o) * o->n, o->n);
}
