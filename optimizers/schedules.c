/* schedules.c - Keras 3's learning-rate schedules, read from
 * compile.optimizer.learning_rate: {type: NAME, ...}, and evaluated in double.
 *
 * Keras's formulas (step = optimizer steps already taken, 0 for the first update):
 *   exponential_decay         init * rate^(step / decay_steps)       (floor when staircase)
 *   piecewise_constant_decay  values[i] for boundaries[i-1] < step <= boundaries[i]
 *   polynomial_decay          (init - end) * (1 - s / d)^power + end, s = min(step, d), or
 *                             with cycle d = decay_steps * ceil(step / decay_steps), s = step
 *   inverse_time_decay        init / (1 + rate * step / decay_steps)  (floor when staircase)
 *   cosine_decay              optional linear warmup from init to warmup_target, then
 *                             peak * ((1 - alpha) * 0.5 * (1 + cos(pi * s / d)) + alpha),
 *                             peak = warmup_target (or init without one), s = min(step, d)
 *   cosine_decay_restarts     SGDR: periods first_decay_steps * t_mul^i, peaks init * m_mul^i
 *
 * Adding a schedule: a parse function, a value function, its key list and a table row. */
#include <math.h>
#include <string.h>

#include "optimizer.h"

/* Not every C11 <math.h> defines M_PI. */
#define SCHED_PI 3.14159265358979323846

typedef int (*sched_parse_fn)(ct_node *map, ct_schedule *s, const char *what, ct_error *err);

typedef struct sched_entry {
    ct_schedule_type type;
    const char *name, *class_name;
    const char *const *keys;  /* NULL-terminated, "type" first */
    sched_parse_fn parse;
} sched_entry;

/* ---- reading ----------------------------------------------------------------------------- */

/* A required number, at least min. */
static int need_float(ct_node *map, const char *key, double min, const char *what, double *out,
                      ct_error *err)
{
    if (ct_cfg_require(map, key, what, err) < 0)
        return -1;
    return ct_cfg_float(map, key, 0.0, min, HUGE_VAL, out, err);
}

/* A required number above 0 (step counts: Keras rejects decay_steps <= 0). */
static int need_positive(ct_node *map, const char *key, const char *what, double *out,
                         ct_error *err)
{
    if (need_float(map, key, -HUGE_VAL, what, out, err) < 0)
        return -1;
    if (!(*out > 0.0))
        return ct_node_err(err, ct_map_get(map, key), "%s: %s must be a positive number, got %g",
                           what, key, *out);
    return 0;
}

/* map[key] as a list of 1..max entries; *out is the sequence node. */
static int need_list(ct_node *map, const char *key, size_t max, const char *of,
                     const char *what, ct_node **out, ct_error *err)
{
    if (ct_cfg_require(map, key, what, err) < 0)
        return -1;
    ct_node *n = ct_map_get(map, key);
    if (n->type != CT_NODE_SEQ || n->len < 1 || n->len > max)
        return ct_node_err(err, n, "%s: %s must be a list of 1 to %zu %s", what, key, max, of);
    for (size_t i = 0; i < n->len; i++)
        n->items[i]->used = true;
    *out = n;
    return 0;
}

static int parse_exponential(ct_node *map, ct_schedule *s, const char *what, ct_error *err)
{
    if (need_float(map, "initial_learning_rate", 0.0, what, &s->initial_learning_rate, err) < 0 ||
        need_positive(map, "decay_steps", what, &s->decay_steps, err) < 0 ||
        need_float(map, "decay_rate", 0.0, what, &s->decay_rate, err) < 0)
        return -1;
    return ct_cfg_bool(map, "staircase", false, &s->staircase, err);
}

/* inverse_time_decay has exponential_decay's keys and checks. */
static int parse_inverse_time(ct_node *map, ct_schedule *s, const char *what, ct_error *err)
{
    return parse_exponential(map, s, what, err);
}

static int parse_boundaries(ct_node *map, ct_schedule *s, const char *what, ct_error *err)
{
    ct_node *b;
    if (need_list(map, "boundaries", CT_SCHEDULE_MAX_BOUNDARIES, "integers", what, &b, err) < 0)
        return -1;
    s->n_boundaries = (int)b->len;
    for (size_t i = 0; i < b->len; i++) {
        if (ct_node_int(b->items[i], &s->boundaries[i], err) < 0)
            return -1;
        if (i > 0 && s->boundaries[i] <= s->boundaries[i - 1])
            return ct_node_err(err, b->items[i],
                               "%s: boundaries must be strictly increasing, got %lld after %lld",
                               what, (long long)s->boundaries[i],
                               (long long)s->boundaries[i - 1]);
    }
    return 0;
}

static int parse_piecewise(ct_node *map, ct_schedule *s, const char *what, ct_error *err)
{
    ct_node *v;
    if (parse_boundaries(map, s, what, err) < 0 ||
        need_list(map, "values", CT_SCHEDULE_MAX_BOUNDARIES + 1, "numbers", what, &v, err) < 0)
        return -1;
    if (v->len != (size_t)s->n_boundaries + 1)
        return ct_node_err(err, v,
                           "%s: values needs %d entries (one more than boundaries), got %zu",
                           what, s->n_boundaries + 1, v->len);
    for (size_t i = 0; i < v->len; i++) {
        if (ct_node_float(v->items[i], &s->values[i], err) < 0)
            return -1;
        if (!(s->values[i] >= 0.0))
            return ct_node_err(err, v->items[i], "%s: values must be 0 or more, got %g", what,
                               s->values[i]);
    }
    return 0;
}

static int parse_polynomial(ct_node *map, ct_schedule *s, const char *what, ct_error *err)
{
    if (need_float(map, "initial_learning_rate", 0.0, what, &s->initial_learning_rate, err) < 0 ||
        need_positive(map, "decay_steps", what, &s->decay_steps, err) < 0 ||
        ct_cfg_float(map, "end_learning_rate", 1e-4, 0.0, HUGE_VAL, &s->end_learning_rate,
                     err) < 0 ||
        ct_cfg_float(map, "power", 1.0, 0.0, HUGE_VAL, &s->power, err) < 0)
        return -1;
    return ct_cfg_bool(map, "cycle", false, &s->cycle, err);
}

/* warmup_target: absent or null is Keras's None (no warmup); the resolved config shows
 * `warmup_target: null` so every key is visible. */
static int parse_warmup_target(ct_node *map, ct_schedule *s, ct_error *err)
{
    ct_node *n = ct_map_get(map, "warmup_target");
    s->has_warmup_target = false;
    if (!ct_node_is_null(n)) {
        s->has_warmup_target = true;
        return ct_cfg_float(map, "warmup_target", 0.0, 0.0, HUGE_VAL, &s->warmup_target, err);
    }
    if (!n && !ct_map_set_scalar(map, "warmup_target", "null"))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ct_map_get(map, "warmup_target");
    return 0;
}

static int parse_cosine(ct_node *map, ct_schedule *s, const char *what, ct_error *err)
{
    if (need_float(map, "initial_learning_rate", 0.0, what, &s->initial_learning_rate, err) < 0 ||
        need_positive(map, "decay_steps", what, &s->decay_steps, err) < 0 ||
        ct_cfg_float(map, "alpha", 0.0, 0.0, 1.0, &s->alpha, err) < 0 ||
        parse_warmup_target(map, s, err) < 0)
        return -1;
    return ct_cfg_float(map, "warmup_steps", 0.0, 0.0, HUGE_VAL, &s->warmup_steps, err);
}

/* t_mul below 1 would make the periods' total length finite and the restart index's log
 * undefined past it, so it is refused rather than turning the rate into NaN. */
static int parse_restarts(ct_node *map, ct_schedule *s, const char *what, ct_error *err)
{
    if (need_float(map, "initial_learning_rate", 0.0, what, &s->initial_learning_rate, err) < 0 ||
        need_positive(map, "first_decay_steps", what, &s->decay_steps, err) < 0 ||
        ct_cfg_float(map, "t_mul", 2.0, 1.0, HUGE_VAL, &s->t_mul, err) < 0 ||
        ct_cfg_float(map, "m_mul", 1.0, 0.0, HUGE_VAL, &s->m_mul, err) < 0)
        return -1;
    return ct_cfg_float(map, "alpha", 0.0, 0.0, 1.0, &s->alpha, err);
}

static const char *const exponential_keys[] = {"type", "initial_learning_rate", "decay_steps",
                                               "decay_rate", "staircase", NULL};
static const char *const piecewise_keys[] = {"type", "boundaries", "values", NULL};
static const char *const polynomial_keys[] = {"type", "initial_learning_rate", "decay_steps",
                                              "end_learning_rate", "power", "cycle", NULL};
static const char *const cosine_keys[] = {"type", "initial_learning_rate", "decay_steps", "alpha",
                                          "warmup_target", "warmup_steps", NULL};
static const char *const restarts_keys[] = {"type", "initial_learning_rate", "first_decay_steps",
                                            "t_mul", "m_mul", "alpha", NULL};

static const sched_entry table[] = {
    {CT_SCHEDULE_EXPONENTIAL_DECAY, "exponential_decay", "ExponentialDecay", exponential_keys,
     parse_exponential},
    {CT_SCHEDULE_PIECEWISE_CONSTANT_DECAY, "piecewise_constant_decay", "PiecewiseConstantDecay",
     piecewise_keys, parse_piecewise},
    {CT_SCHEDULE_POLYNOMIAL_DECAY, "polynomial_decay", "PolynomialDecay", polynomial_keys,
     parse_polynomial},
    {CT_SCHEDULE_INVERSE_TIME_DECAY, "inverse_time_decay", "InverseTimeDecay", exponential_keys,
     parse_inverse_time},
    {CT_SCHEDULE_COSINE_DECAY, "cosine_decay", "CosineDecay", cosine_keys, parse_cosine},
    {CT_SCHEDULE_COSINE_DECAY_RESTARTS, "cosine_decay_restarts", "CosineDecayRestarts",
     restarts_keys, parse_restarts},
};

#define N_SCHEDULES (sizeof table / sizeof table[0])

static const sched_entry *find_entry(const char *name)
{
    for (size_t i = 0; i < N_SCHEDULES; i++)
        if (!strcmp(name, table[i].name) || !strcmp(name, table[i].class_name))
            return &table[i];
    return NULL;
}

const char *ct_schedule_name(ct_schedule_type type)
{
    for (size_t i = 0; i < N_SCHEDULES; i++)
        if (table[i].type == type)
            return table[i].name;
    return "constant";
}

const char *ct_schedule_names(void)
{
    static char buf[256];
    size_t used = 0;
    for (size_t i = 0; i < N_SCHEDULES; i++)
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", i ? ", " : "",
                                 table[i].name);
    return buf;
}

static int unknown_schedule(const ct_node *at, const char *name, ct_error *err)
{
    const char *cands[2 * N_SCHEDULES + 1];
    for (size_t i = 0; i < N_SCHEDULES; i++) {
        cands[i] = table[i].name;
        cands[N_SCHEDULES + i] = table[i].class_name;
    }
    cands[2 * N_SCHEDULES] = NULL;
    char hint[96] = "";
    const char *s = ct_suggest(name, cands);
    if (s)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
    return ct_node_err(err, at, "unknown learning_rate schedule '%s'%s; known schedules: %s", name,
                       hint, ct_schedule_names());
}

int ct_schedule_parse(ct_node *map, ct_schedule *s, ct_error *err)
{
    const char *name = NULL;
    memset(s, 0, sizeof *s);
    if (!map || map->type != CT_NODE_MAP)
        return map ? ct_node_err(err, map, "a learning_rate schedule must be a map such as "
                                           "{type: cosine_decay, initial_learning_rate: 0.1, "
                                           "decay_steps: 1000}")
                   : ct_err(err, CT_ERR_INTERNAL, "no learning_rate schedule to read");
    if (ct_cfg_require(map, "type", "learning_rate schedule", err) < 0 ||
        ct_cfg_string(map, "type", NULL, &name, err) < 0)
        return -1;
    const sched_entry *e = find_entry(name);
    if (!e)
        return unknown_schedule(ct_map_get(map, "type"), name, err);
    char what[64];
    snprintf(what, sizeof what, "learning_rate schedule '%s'", e->name);
    /* Keys first, so a misspelt key is reported as such rather than as a missing one. */
    if (ct_cfg_check_keys(map, e->keys, what, err) < 0 || e->parse(map, s, what, err) < 0)
        return -1;
    s->type = e->type;
    return 0;
}

/* ---- values ------------------------------------------------------------------------------ */

static double exponential_value(const ct_schedule *s, double step)
{
    double p = step / s->decay_steps;
    if (s->staircase)
        p = floor(p);
    return s->initial_learning_rate * pow(s->decay_rate, p);
}

static double inverse_time_value(const ct_schedule *s, double step)
{
    double p = step / s->decay_steps;
    if (s->staircase)
        p = floor(p);
    return s->initial_learning_rate / (1.0 + s->decay_rate * p);
}

/* Keras: step <= b[0] -> values[0]; b[i-1] < step <= b[i] -> values[i]; beyond -> last. */
static double piecewise_value(const ct_schedule *s, int64_t step)
{
    for (int i = 0; i < s->n_boundaries; i++)
        if (step <= s->boundaries[i])
            return s->values[i];
    return s->values[s->n_boundaries];
}

static double polynomial_value(const ct_schedule *s, double step)
{
    double d = s->decay_steps;
    if (s->cycle)
        d *= step == 0.0 ? 1.0 : ceil(step / d); /* the first multiple of d reaching step */
    else
        step = fmin(step, d);
    double p = step / d;
    return (s->initial_learning_rate - s->end_learning_rate) * pow(1.0 - p, s->power) +
           s->end_learning_rate;
}

/* (1 - alpha) * 0.5 * m_fac * (1 + cos(pi * fraction)) + alpha */
static double cosine_factor(double fraction, double alpha, double m_fac)
{
    return (1.0 - alpha) * (0.5 * m_fac * (1.0 + cos(SCHED_PI * fraction))) + alpha;
}

static double cosine_value(const ct_schedule *s, double step)
{
    double d = s->decay_steps;
    if (!s->has_warmup_target)
        return s->initial_learning_rate * cosine_factor(fmin(step, d) / d, s->alpha, 1.0);
    double w = s->warmup_steps;
    step = fmin(step, d + w);
    if (step < w)
        return (s->warmup_target - s->initial_learning_rate) * (step / w) +
               s->initial_learning_rate;
    return s->warmup_target * cosine_factor((step - w) / d, s->alpha, 1.0);
}

/* Steps before restart i, in units of first_decay_steps: (1 - t^i) / (1 - t). */
static double restart_start(double t, double i)
{
    return (1.0 - pow(t, i)) / (1.0 - t);
}

static double restarts_value(const ct_schedule *s, double step)
{
    double f = step / s->decay_steps, t = s->t_mul, i;
    if (t == 1.0) {
        i = floor(f);
        f -= i;
    } else {
        i = floor(log(1.0 - f * (1.0 - t)) / log(t));
        /* The log ratio can round to just below an integer exactly at a restart; step the
         * index so that restart_start(i) <= f < restart_start(i + 1) holds. */
        while (i > 0 && restart_start(t, i) > f)
            i--;
        while (restart_start(t, i + 1) <= f)
            i++;
        f = (f - restart_start(t, i)) / pow(t, i);
    }
    return s->initial_learning_rate * cosine_factor(f, s->alpha, pow(s->m_mul, i));
}

double ct_schedule_value(const ct_schedule *s, int64_t step)
{
    double x = (double)step;
    switch (s->type) {
    case CT_SCHEDULE_EXPONENTIAL_DECAY: return exponential_value(s, x);
    case CT_SCHEDULE_PIECEWISE_CONSTANT_DECAY: return piecewise_value(s, step);
    case CT_SCHEDULE_POLYNOMIAL_DECAY: return polynomial_value(s, x);
    case CT_SCHEDULE_INVERSE_TIME_DECAY: return inverse_time_value(s, x);
    case CT_SCHEDULE_COSINE_DECAY: return cosine_value(s, x);
    case CT_SCHEDULE_COSINE_DECAY_RESTARTS: return restarts_value(s, x);
    case CT_SCHEDULE_CONSTANT: break;
    }
    return NAN;
}

double ct_optimizer_learning_rate(const ct_optimizer *o, int64_t step)
{
    if (o->schedule.type == CT_SCHEDULE_CONSTANT)
        return o->learning_rate;
    return ct_schedule_value(&o->schedule, step);
}
