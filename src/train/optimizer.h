/* optimizer.h - optimizers step the model's contiguous parameter block. Each kind lives
 * in optimizers/<name>.c and is listed in optimizers/registry.c. The optimizer owns its
 * state (state_per_param floats per trainable parameter, and the moving average's with
 * use_ema: ct_optimizer_slots), allocated by ct_optimizer_new and freed by
 * ct_optimizer_free. */
#ifndef CT_OPTIMIZER_H
#define CT_OPTIMIZER_H

#include "config.h"
#include "layer.h"

typedef struct ct_optimizer ct_optimizer;

typedef struct ct_optimizer_kind {
    const char *name;        /* "adam" */
    const char *class_name;  /* "Adam" */
    /* Reads the kind's own keys into o->hyper (learning_rate and the clip/decay keys are
     * generic). */
    int (*configure)(ct_optimizer *o, ct_node *cfg, ct_error *err);
    /* Floats of state per parameter (0 for plain sgd). May depend on the config (sgd with
     * momentum needs 1, rmsprop centered 2 or 3). */
    int (*state_per_param)(const ct_optimizer *o);
    /* Names of those state slots, for checkpoints ("momentum", "m", "v", ...). */
    const char *(*state_name)(const ct_optimizer *o, int slot);
    /* Describes step t (the iteration number, from 1) at learning rate lr as the
     * backend's element-wise update (see ct_update in backend.h); the backend applies it
     * to the whole block, so the optimizer never touches parameter memory itself. */
    void (*prepare)(const ct_optimizer *o, int64_t t, float lr, ct_update *u);
    /* Optional: the value state slot `slot` starts at (adagrad's and ftrl's
     * initial_accumulator_value); zeros otherwise. */
    float (*initial_state)(const ct_optimizer *o, int slot);
} ct_optimizer_kind;

#define CT_OPT_MAX_HYPER 8

/* ---- learning-rate schedules (optimizers/schedules.c): the value type, which struct
 * ct_optimizer holds; the functions are declared at the end of this file. ------------ */

typedef enum {
    CT_SCHEDULE_CONSTANT = 0, /* no schedule: learning_rate every step (zeroed struct) */
    CT_SCHEDULE_EXPONENTIAL_DECAY,
    CT_SCHEDULE_PIECEWISE_CONSTANT_DECAY,
    CT_SCHEDULE_POLYNOMIAL_DECAY,
    CT_SCHEDULE_INVERSE_TIME_DECAY,
    CT_SCHEDULE_COSINE_DECAY,
    CT_SCHEDULE_COSINE_DECAY_RESTARTS
} ct_schedule_type;

#define CT_SCHEDULE_MAX_BOUNDARIES 32

/* Keras 3's schedules as plain values (nothing to free). Step counts are doubles because
 * Keras casts them to the rate's float type before dividing. */
typedef struct ct_schedule {
    ct_schedule_type type;
    double initial_learning_rate;
    double decay_steps;          /* first_decay_steps for cosine_decay_restarts */
    double decay_rate;           /* exponential_decay, inverse_time_decay */
    bool staircase;              /* exponential_decay, inverse_time_decay */
    double end_learning_rate, power; /* polynomial_decay */
    bool cycle;                  /* polynomial_decay */
    double alpha;                /* cosine_decay, cosine_decay_restarts */
    bool has_warmup_target;      /* cosine_decay: warmup_target is not null */
    double warmup_target, warmup_steps; /* cosine_decay */
    double t_mul, m_mul;         /* cosine_decay_restarts */
    int n_boundaries;            /* piecewise_constant_decay */
    int64_t boundaries[CT_SCHEDULE_MAX_BOUNDARIES];
    double values[CT_SCHEDULE_MAX_BOUNDARIES + 1];
} ct_schedule;

/* ---- end of the schedule types ------------------------------------------------------ */

struct ct_optimizer {
    const ct_optimizer_kind *kind;
    double hyper[CT_OPT_MAX_HYPER]; /* kind-specific (beta_1, momentum, ...) */
    bool flag[4];                   /* kind-specific (nesterov, amsgrad, centered) */
    double learning_rate;  /* constant rate, or the schedule's rate at step 0 */
    ct_schedule schedule;  /* CT_SCHEDULE_CONSTANT unless learning_rate is a map */
    double clipnorm, clipvalue, global_clipnorm; /* 0: off */
    double weight_decay;                         /* 0: off */
    /* Keras 3's use_ema: a moving average of the trainable weights, kept as the last
     * state slot ("average"), updated after every step as
     * average = m average + (1 - m) w, with m = 0 on the first step (average = w) and
     * ema_momentum after; every ema_overwrite_frequency steps (0: never) w = average, and
     * ct_optimizer_finalize puts it in the weights at the end of fit. */
    bool use_ema;
    double ema_momentum;
    int64_t ema_overwrite_frequency;
    int64_t n;             /* trainable parameters */
    const ct_backend *be;  /* where state lives and the update runs (NULL: the CPU) */
    float *state;          /* ct_optimizer_slots * n floats of backend memory (initial_state) */
    int64_t iterations;    /* steps taken */
};

/* Reads compile.optimizer (a name or a map), allocates state for n trainable floats in
 * be's memory (ct_optimizer_new: the CPU's). Returns NULL on error. */
ct_optimizer *ct_optimizer_new(ct_node *compile, const char *key, int64_t n, ct_error *err);
ct_optimizer *ct_optimizer_new_on(ct_node *compile, const char *key, int64_t n,
                                  const ct_backend *be, ct_error *err);
void ct_optimizer_free(ct_optimizer *o);

/* Clips the gradients (clipvalue elementwise, clipnorm per parameter tensor,
 * global_clipnorm over all), applies weight decay, increments iterations and steps, all
 * through o->be. params: the model's parameters (only trainable ones are touched); w/g
 * are the blocks, in o->be's memory. */
void ct_optimizer_apply(ct_optimizer *o, ct_param *const *params, int nparams, float *w,
                        float *g);

/* The state slots per parameter: the kind's, plus the EMA's "average" when use_ema. Slot k
 * of parameter i is state[k * n + i]; checkpoints save every slot under its name. */
int ct_optimizer_slots(const ct_optimizer *o);
const char *ct_optimizer_slot_name(const ct_optimizer *o, int slot);

/* The end of fit, as Keras's finalize_variable_values: with use_ema, w (the trainable
 * block, in o->be's memory) becomes the moving average. Does nothing before the first
 * step, or without use_ema. */
void ct_optimizer_finalize(const ct_optimizer *o, float *w);

const ct_optimizer_kind *ct_optimizer_kind_find(const char *name);
const char *ct_optimizer_kind_names(void);

/* ---- learning-rate schedules (optimizers/schedules.c) ------------------------------------
 * compile.optimizer.learning_rate may be a number or a map {type: NAME, ...} naming one of
 * Keras 3's schedules (snake_case or class name): exponential_decay, piecewise_constant_decay,
 * polynomial_decay, inverse_time_decay, cosine_decay, cosine_decay_restarts. Schedules count
 * optimizer steps from 0: the first update uses step 0, as Keras passes `iterations` before
 * incrementing it. */

/* Reads a schedule map (defaults written in; errors at the offending node). */
int ct_schedule_parse(ct_node *map, ct_schedule *s, ct_error *err);
/* The schedule's rate at step (0-based); NAN for CT_SCHEDULE_CONSTANT, which has no rate
 * of its own (see ct_optimizer_learning_rate). */
double ct_schedule_value(const ct_schedule *s, int64_t step);
/* "exponential_decay" ... ("constant" for CT_SCHEDULE_CONSTANT). */
const char *ct_schedule_name(ct_schedule_type type);
/* "exponential_decay, piecewise_constant_decay, ..." */
const char *ct_schedule_names(void);
/* The rate the step-th update (0-based) uses: the schedule's value, or learning_rate. */
double ct_optimizer_learning_rate(const ct_optimizer *o, int64_t step);

#endif
