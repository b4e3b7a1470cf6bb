/* adamw.c - AdamW: Adam's update after the decoupled weight decay w -= lr * wd * w, which
 * ct_optimizer_apply performs for every optimizer; AdamW differs from Adam only in its
 * default weight_decay (0.004, set in optimizers/registry.c). */
#include "adam.h"

const ct_optimizer_kind ct_optimizer_adamw = {
    "adamw", "AdamW", ct_adam_configure, ct_adam_state_per_param, ct_adam_state_name,
    ct_adam_prepare, NULL,
};
