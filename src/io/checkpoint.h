/* checkpoint.h - complete training checkpoints: one HDF5 file holding the weights in
 * Keras's layout (see weights.h), the optimizer's kind, iteration count and full state,
 * the training position (epochs done, global step, batches done in the current epoch and
 * that epoch's running sums), the history so far, and the resolved config. Data order,
 * dropout masks and noise are functions of (seed, epoch, step), so this is all a resume
 * needs to continue bit for bit. Files are written atomically (temporary file, fsync,
 * rename), so a crash never destroys the previous checkpoint.
 *
 * Layout, besides weights.h's:
 *   /                    attrs ctrain_checkpoint (format version), ctrain_config (YAML)
 *   /optimizer_weights   attr optimizer (kind name); datasets iterations (int64) and one
 *                        float32 dataset per state slot over the trainable block,
 *                        named "<slot>_<name>" (e.g. 0_m, 1_v)
 *   /training_state      attrs epoch, step, batch, seen (int64), loss_sum (float64);
 *                        a model with several outputs: dataset output_losses (the running
 *                        loss sums of outputs 2..n);
 *                        datasets metrics (nmetrics x 2: sum, count), history
 *                        (epochs x columns, float64) and callbacks (their counters,
 *                        best values and best weights, float64) */
#ifndef CT_CHECKPOINT_H
#define CT_CHECKPOINT_H

#include "experiment.h"

#define CT_CHECKPOINT_VERSION 1

typedef struct ct_train_state {
    int64_t epoch;     /* epochs completed */
    int64_t step;      /* optimizer steps taken */
    int64_t batch;     /* batches done in the unfinished epoch (0 at an epoch boundary) */
    double loss_sum;   /* that epoch's running loss sum and sample count */
    double loss_parts[2]; /* loss_sum's two running sums (ct_experiment's acc[0], acc[1]) */
    double loss_more[CT_MAX_IO - 1]; /* outputs 1.. of a model with several: their sums */
    int64_t seen;
    double metric_sum[CT_MAX_METRICS], metric_count[CT_MAX_METRICS];
    int ncols;         /* history columns (after the epoch number) */
    int64_t rows;      /* history rows (epochs) held */
    double *history;   /* rows x ncols, owned: free with ct_train_state_clear */
} ct_train_state;

void ct_train_state_clear(ct_train_state *st);
/* Appends one row of ncols values to the history. */
int ct_train_state_add_row(ct_train_state *st, const double *values, ct_error *err);

int ct_checkpoint_save(const ct_experiment *ex, const ct_train_state *st, const char *path,
                       ct_error *err);
/* Loads weights, optimizer state and training position into ex and st (st is cleared
 * first). The optimizer kind and the model must match the experiment's. */
int ct_checkpoint_load(ct_experiment *ex, const char *path, ct_train_state *st, ct_error *err);

#endif
