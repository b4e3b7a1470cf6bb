/* adam.h - Adam's pieces, shared with AdamW (optimizers/adamw.c), which is Adam plus the
 * decoupled weight decay that ct_optimizer_apply performs, and the beta reader with Nadam
 * and Adamax. */
#ifndef CT_OPTIMIZERS_ADAM_H
#define CT_OPTIMIZERS_ADAM_H

#include "optimizer.h"

/* hyper[] and flag[] slots used by Adam and AdamW. */
enum { CT_ADAM_BETA_1, CT_ADAM_BETA_2, CT_ADAM_EPSILON };
enum { CT_ADAM_AMSGRAD };

/* The kind's own config keys (NULL-terminated). */
extern const char *const ct_adam_keys[];

/* Reads cfg[key] (default def) as a number in [0, 1) into *out: Adam's and its relatives'
 * betas, where 1 would divide by zero. */
int ct_adam_read_beta(const ct_optimizer *o, ct_node *cfg, const char *key, double def,
                      double *out, ct_error *err);
int ct_adam_configure(ct_optimizer *o, ct_node *cfg, ct_error *err);
int ct_adam_state_per_param(const ct_optimizer *o);
const char *ct_adam_state_name(const ct_optimizer *o, int slot);
void ct_adam_prepare(const ct_optimizer *o, int64_t t, float lr, ct_update *u);

#endif
