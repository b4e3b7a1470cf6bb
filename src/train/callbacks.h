/* callbacks.h - fit.callbacks: Keras's early_stopping, reduce_lr_on_plateau,
 * model_checkpoint, csv_logger, terminate_on_nan, backup_and_restore and tensorboard. The
 * training driver calls ct_callbacks_train_begin before the first step,
 * ct_callbacks_batch_end after the batches ct_callbacks_batch_due names, and
 * ct_callbacks_epoch_end after each epoch's validation with the epoch's values (the
 * history columns). Each callback's counters and best values are part of the
 * checkpoint (ct_callbacks_state_*), so a resumed run decides exactly as an unbroken one.
 *
 * Ownership: ct_callbacks_new allocates; ct_callbacks_free releases, closing the files
 * that train_begin opened. */
#ifndef CT_CALLBACKS_H
#define CT_CALLBACKS_H

#include "config.h"
#include "model.h"
#include "optimizer.h"

typedef struct ct_callbacks ct_callbacks;

/* Reads fit.callbacks (absent, null or a list of names / {type: NAME, ...} maps). Errors
 * point at the node. A learning-rate schedule and reduce_lr_on_plateau do not mix.
 * allow_outside: n_allow folders (fit's --allow-outside) under which the callbacks' paths
 * may write besides the run directory. Without any, a relative model_checkpoint filepath
 * or csv_logger filename that climbs out of the run directory ("../x") is refused here. */
ct_callbacks *ct_callbacks_new(ct_node *fit, const ct_optimizer *opt,
                               const char *const *allow_outside, int n_allow, ct_error *err);
void ct_callbacks_free(ct_callbacks *c);

/* Writes the model (weights only) or a whole checkpoint to path. */
typedef int (*ct_save_fn)(void *ctx, const char *path, bool weights_only, ct_error *err);

typedef struct ct_epoch_logs {
    int64_t epoch;              /* 0-based */
    int n;
    const char *const *names;   /* "accuracy", "loss", "val_loss", "learning_rate", ... */
    const double *values;
} ct_epoch_logs;

/* Before training: every monitor that a callback reads is one of the n names the run
 * reports, or an error at the monitor naming the ones it does report. */
int ct_callbacks_check_monitors(const ct_callbacks *c, int n, const char *const *names,
                                ct_error *err);

/* The paths that come from the experiment file (model_checkpoint's filepath, csv_logger's
 * filename, backup_and_restore's backup_dir, tensorboard's log_dir) must write inside run_dir or under an allowed
 * folder, compared after ".." and the symbolic links of existing folders are resolved;
 * values given with --set are the user's own and always pass. An error at the value
 * otherwise. model_checkpoint and csv_logger check again at each write. */
int ct_callbacks_check_paths(const ct_callbacks *c, const char *run_dir, ct_error *err);

/* Once the run directory is claimed, before the first step: tensorboard opens its event
 * files in log_dir (relative: in run_dir; a new file in each folder for every run, so a
 * resumed run adds files beside the earlier ones) and writes the model (write_graph).
 * validation: whether the run validates. An error names the file that cannot be written. */
int ct_callbacks_train_begin(ct_callbacks *c, const ct_model *m, const char *run_dir,
                             bool validation, ct_error *err);
/* Whether a callback reads the running values after global batch step (1-based, counted
 * over the whole run): tensorboard's update_freq. */
bool ct_callbacks_batch_due(const ct_callbacks *c, int64_t step);
/* After global batch step with the n running values the progress bar shows (names as the
 * history's training columns). */
int ct_callbacks_batch_end(ct_callbacks *c, int64_t step, int n, const char *const *names,
                           const double *values, ct_error *err);

/* After an epoch: may lower the optimizer's learning rate, save files (relative paths
 * are taken in run_dir), and set *stop. */
int ct_callbacks_epoch_end(ct_callbacks *c, ct_model *m, ct_optimizer *opt,
                           const ct_epoch_logs *logs, const char *run_dir, ct_save_fn save,
                           void *save_ctx, bool *stop, ct_error *err);
/* After the last epoch (or a stop): early_stopping with restore_best_weights puts the best
 * epoch's weights back (whether or not it stopped the run), and says so on out (Keras's
 * "Restoring model weights from the end of the best epoch: N."; NULL: silent);
 * tensorboard closes its files. */
void ct_callbacks_train_end(ct_callbacks *c, ct_model *m, FILE *out);

bool ct_callbacks_terminate_on_nan(const ct_callbacks *c);
/* backup_and_restore's folder, or NULL. */
const char *ct_callbacks_backup_dir(const ct_callbacks *c);
/* An error at backup_and_restore's backup_dir (its file:line:col). Returns -1. */
int ct_callbacks_backup_err(const ct_callbacks *c, ct_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether backup_and_restore removes its checkpoint after a finished run. */
bool ct_callbacks_backup_delete(const ct_callbacks *c);

/* The callbacks' state as doubles (model_size: floats in the model's block). */
int64_t ct_callbacks_state_size(const ct_callbacks *c, int64_t model_size);
void ct_callbacks_get_state(const ct_callbacks *c, double *out, int64_t model_size);
void ct_callbacks_set_state(ct_callbacks *c, const double *in, int64_t model_size,
                            ct_optimizer *opt);

#endif
