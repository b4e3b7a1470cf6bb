/* batches.h - moves a loader's batches into a model's input buffers and label buffers the
 * loss can read. On the CPU the loader writes them in place. On a GPU each batch goes
 * through one of CT_STAGE_SLOTS page-locked host buffers per member and is copied on the
 * backend's copy stream into its own device buffers, so the next batch is read and copied
 * while this one computes; the input tensors' .data is pointed at those device buffers
 * batch by batch.
 *
 * Ownership: ct_batches_init allocates the buffers, ct_batches_free releases them and puts
 * back each input's .data (safe on a zeroed struct). The input tensors are the caller's,
 * borrowed, and must outlive the ct_batches. */
#ifndef CT_BATCHES_H
#define CT_BATCHES_H

#include "backend.h"
#include "data.h"

typedef struct ct_batches {
    const ct_backend *be;
    int nx, ny;
    ct_tensor *inputs;                /* nx, borrowed */
    int64_t xcols[CT_MAX_IO], ycols[CT_MAX_IO], max_rows;
    bool direct;                      /* CPU: no staging */
    float *host_x[CT_STAGE_SLOTS][CT_MAX_IO], *host_y[CT_STAGE_SLOTS][CT_MAX_IO]; /* host_alloc'd */
    float *dev_x[CT_STAGE_SLOTS][CT_MAX_IO], *dev_y[CT_STAGE_SLOTS][CT_MAX_IO];   /* GPU only */
    int slot;
    float *planned[CT_MAX_IO];        /* inputs[i].data before staging replaced it */
    float *y[CT_MAX_IO];              /* this batch's labels, backend memory (NULL: none) */
    float *host_w[CT_STAGE_SLOTS];    /* sample weights, host memory (malloc'd) */
    const float *w;                   /* this batch's sample weights (NULL: none), host */
    int64_t rows;                     /* this batch's rows here (a sharded loader's part) */
} ct_batches;

/* For batches of up to max_rows rows: nx (1..CT_MAX_IO) input tensors, each receiving
 * rows * ct_tensor_cols(&inputs[i]) floats per batch, and ny (0..CT_MAX_IO) label buffers
 * of ycols[j] floats per row. */
int ct_batches_init(ct_batches *b, const ct_backend *be, int nx, ct_tensor *inputs,
                    int64_t max_rows, int ny, const int64_t *ycols, ct_error *err);
void ct_batches_free(ct_batches *b);
/* Reads ld's next batch into the inputs and (labels) b->y[j]; ld's dataset needs at least
 * nx x members and, for labels, ny y members (members beyond those are skipped). With
 * labels, a dataset's sample weights (ct_dataset_weight_member) land in b->w, one per
 * row; b->w is NULL for a dataset without them. Returns its rows, 0 at the end of the
 * epoch, -1 on error; b->rows is how many of them were read here (fewer when the loader
 * serves a part of each batch, ct_loader_shard). The compute that reads it must be issued
 * before ct_batches_done. */
int64_t ct_batches_next(ct_batches *b, ct_loader *ld, bool labels, ct_error *err);
/* Marks the current batch's compute as issued; its slot may be refilled after that. */
void ct_batches_done(ct_batches *b);

#endif
