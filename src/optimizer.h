/* optimizer.h - optimizers step the model's contiguous parameter block. Each kind lives
 * in optimizers/<name>.c and is listed in optimizers/registry.c. The optimizer owns its
 * state (state_per_param floats per trainable parameter), allocated by ct_optimizer_new
 * and freed by ct_optimizer_free. */
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
    /* One update of n parameters w with gradients g (already clipped), slots
     * state[slot * stride .. + n] (stride = the block's total trainable count),
     * t = iteration number starting at 1, lr = learning rate for this step. */
    void (*step)(const ct_optimizer *o, float *w, const float *g, float *state,
                 int64_t stride, int64_t n, int64_t t, float lr);
    /* Optional: initial state (adagrad's initial_accumulator_value); zeros otherwise. */
    void (*init_state)(const ct_optimizer *o, float *state, int64_t n);
} ct_optimizer_kind;

#define CT_OPT_MAX_HYPER 8

struct ct_optimizer {
    const ct_optimizer_kind *kind;
    double hyper[CT_OPT_MAX_HYPER]; /* kind-specific (beta_1, momentum, ...) */
    bool flag[4];                   /* kind-specific (nesterov, amsgrad, centered) */
    double learning_rate;
    double clipnorm, clipvalue, global_clipnorm; /* 0: off */
    double weight_decay;                         /* 0: off */
    int64_t n;             /* trainable parameters */
    float *state;          /* state_per_param * n floats, zero-initialised (see init_state) */
    int64_t iterations;    /* steps taken */
};

/* Reads compile.optimizer (a name or a map), allocates state for n trainable floats.
 * Returns NULL on error. */
ct_optimizer *ct_optimizer_new(ct_node *compile, const char *key, int64_t n, ct_error *err);
void ct_optimizer_free(ct_optimizer *o);

/* Clips the gradients (clipvalue elementwise, clipnorm per parameter tensor,
 * global_clipnorm over all), applies weight decay, increments iterations and steps.
 * params: the model's parameters (only trainable ones are touched); w/g are the blocks. */
void ct_optimizer_apply(ct_optimizer *o, ct_param *const *params, int nparams, float *w,
                        float *g);

const ct_optimizer_kind *ct_optimizer_kind_find(const char *name);
const char *ct_optimizer_kind_names(void);

#endif
