/* batches.h - moves a loader's batches into the model's input buffer and a label buffer
 * the loss can read. On the CPU the loader writes them in place. On a GPU each batch goes
 * through one of CT_STAGE_SLOTS page-locked host buffers and is copied on the backend's
 * copy stream into its own device buffers, so the next batch is read and copied while
 * this one computes.
 *
 * Ownership: ct_batches_init allocates the buffers, ct_batches_free releases them (safe on
 * a zeroed struct). The model is borrowed and must outlive it. */
#ifndef CT_BATCHES_H
#define CT_BATCHES_H

#include "data.h"
#include "model.h"

typedef struct ct_batches {
    ct_model *m;
    const ct_backend *be;
    int64_t xcols, ycols, max_rows;
    bool direct;                      /* CPU: no staging */
    float *host_x[CT_STAGE_SLOTS], *host_y[CT_STAGE_SLOTS]; /* host_alloc'd */
    float *dev_x[CT_STAGE_SLOTS], *dev_y[CT_STAGE_SLOTS];   /* be->alloc'd (GPU only) */
    int slot;
    float *planned_input;             /* m->input.data before staging replaced it */
    float *y;                         /* this batch's labels, backend memory */
} ct_batches;

/* For batches of up to m->max_batch rows of ycols label floats (0: no labels). */
int ct_batches_init(ct_batches *b, ct_model *m, int64_t ycols, ct_error *err);
void ct_batches_free(ct_batches *b);
/* Reads ld's next batch into m->input and (labels) b->y; returns its rows, 0 at the end of
 * the epoch, -1 on error. The compute that reads it must be issued before ct_batches_done. */
int64_t ct_batches_next(ct_batches *b, ct_loader *ld, bool labels, ct_error *err);
/* Marks the current batch's compute as issued; its slot may be refilled after that. */
void ct_batches_done(ct_batches *b);

#endif
