/* tensorboard.h - what fit.callbacks' tensorboard writes (Keras's TensorBoard callback):
 * event files in <log_dir>/train and <log_dir>/validation (tfevents.h) that TensorBoard
 * shows. Tags and steps are Keras's: epoch_<name> at the 0-based epoch, the validation
 * values without their val_ prefix in validation/, batch_<name> at the global batch, and
 * weight histograms <layer>/<weight>/histogram.
 *
 * Ownership: ct_tensorboard_open allocates; ct_tensorboard_close flushes and frees. */
#ifndef CT_TENSORBOARD_H
#define CT_TENSORBOARD_H

#include "callbacks.h"
#include "model.h"

typedef struct ct_tensorboard ct_tensorboard;

/* Opens a new event file in log_dir/train, and one in log_dir/validation when the run
 * validates (creating the folders). NULL with err set. */
ct_tensorboard *ct_tensorboard_open(const char *log_dir, bool validation, ct_error *err);

/* write_graph, at step 0 in train/: the model's summary table (as `ctrain summary` prints
 * it) for the Text tab (tag model_summary), and the Keras model config for the Graphs tab
 * (tag keras, as Keras writes it). */
int ct_tensorboard_graph(ct_tensorboard *tb, const ct_model *m, ct_error *err);

/* batch_<name> of the n running values (the progress bar's) after global batch step
 * (1-based). */
int ct_tensorboard_batch(ct_tensorboard *tb, int64_t step, int n, const char *const *names,
                         const double *values, ct_error *err);

/* The epoch's values (history.csv's columns): epoch_<name> in train/, the val_ ones as
 * epoch_<name> in validation/ and, as Keras, evaluation_<name>_vs_iterations there at
 * step iterations (the optimizer's steps). A validation value that is NaN (an epoch that
 * validation_freq skips) is left out. Then flushes both files. */
int ct_tensorboard_epoch(ct_tensorboard *tb, const ct_epoch_logs *logs, int64_t iterations,
                         ct_error *err);

/* A histogram of each weight of each layer at step epoch, in train/, and flushes. */
int ct_tensorboard_histograms(ct_tensorboard *tb, const ct_model *m, int64_t epoch,
                              ct_error *err);

/* Closes both files and frees tb (NULL: nothing). 0, or -1 when the last writes failed. */
int ct_tensorboard_close(ct_tensorboard *tb, ct_error *err);

#endif
