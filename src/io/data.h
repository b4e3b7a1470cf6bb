/* data.h - HDF5 datasets in, batches out.
 *
 * A ct_dataset is one (x, y) pair of HDF5 datasets in one file, rows along axis 0. x may
 * be float32, float64 or any integer type; it is converted to float and multiplied by
 * `scale` when read. y (optional) holds integer labels or float targets.
 * A ct_loader serves batches from a subset of a dataset's rows. If the subset fits in
 * `memory_limit` bytes it is read once into memory (integer x of one or two bytes, such as
 * images, is kept in its stored type and converted per batch); otherwise batches are read
 * by hyperslab in blocks of contiguous rows, shuffled block order and shuffled within each
 * block. The order of an epoch depends only on (seed, epoch). With ct_loader_prefetch a
 * streaming loader's reader thread reads the next batch while the caller works on the
 * current one; the batches are the same either way. ct_loader_next uses ct_parallel_for,
 * so it must be called from the thread that owns the worker pool.
 *
 * Ownership: ct_dataset_open / ct_loader_new return objects freed by ct_dataset_close /
 * ct_loader_free. A loader borrows its dataset, which must outlive it. */
#ifndef CT_DATA_H
#define CT_DATA_H

#include "tensor.h"

typedef struct ct_dataset ct_dataset;

/* Opens path's datasets x and (unless y is NULL) y. Fails, naming the file and dataset,
 * when either is missing, is not a numeric dataset, has rank 0, has zero rows, or when the
 * row counts differ. */
ct_dataset *ct_dataset_open(const char *path, const char *x, const char *y, double scale,
                            ct_error *err);
void ct_dataset_close(ct_dataset *ds);

int64_t ct_dataset_rows(const ct_dataset *ds);
/* Per-sample shapes (axis 0 removed). y of shape (N,) gives ndim 0. */
ct_shape ct_dataset_x_shape(const ct_dataset *ds);
ct_shape ct_dataset_y_shape(const ct_dataset *ds);
bool ct_dataset_has_y(const ct_dataset *ds);
/* Whether y is stored as an integer type. */
bool ct_dataset_y_is_integer(const ct_dataset *ds);
/* "file.h5:/train/images" for messages. */
const char *ct_dataset_x_name(const ct_dataset *ds);
const char *ct_dataset_y_name(const ct_dataset *ds);

/* Reads rows [start, start + count) converted to float: x (count * x size) and, when y is
 * not NULL, y (count * y size). */
int ct_dataset_read(ct_dataset *ds, int64_t start, int64_t count, float *x, float *y,
                    ct_error *err);

/* Scans the whole dataset once (in blocks): x must be finite; when nclasses > 0, y must
 * hold integers in [0, nclasses). Errors name the file, dataset and first bad row. */
int ct_dataset_validate(ct_dataset *ds, int64_t nclasses, ct_error *err);

typedef struct ct_loader ct_loader;

/* rows: the dataset rows to serve (copied; NULL means all rows in order), n of them.
 * memory_limit: bytes; above it the loader streams blocks from the file. */
ct_loader *ct_loader_new(ct_dataset *ds, const int64_t *rows, int64_t n, int64_t batch,
                         bool shuffle, uint64_t seed, size_t memory_limit, ct_error *err);
void ct_loader_free(ct_loader *ld);
int64_t ct_loader_rows(const ct_loader *ld);
int64_t ct_loader_batches(const ct_loader *ld);
/* Bytes the loader holds for its rows (the subset, or one streaming block). */
size_t ct_loader_memory(const ct_loader *ld);
/* Starts the reader thread (stopped by ct_loader_free) for a streaming loader; in memory
 * mode, or where threads cannot start, it does nothing and ct_loader_next assembles each
 * batch itself (on the worker threads). Returns 0 or -1 (out of memory). */
int ct_loader_prefetch(ct_loader *ld, ct_error *err);
/* Waits until the reader thread is not reading: call before other HDF5 use (writing a
 * checkpoint) from the caller's thread while an epoch is unfinished. */
void ct_loader_settle(ct_loader *ld);
/* Starts epoch `epoch` (0-based): a fresh order if shuffling. */
int ct_loader_begin_epoch(ct_loader *ld, int64_t epoch, ct_error *err);
/* Fills the next batch (x: batch * x size floats, y: batch * y size floats or NULL).
 * Returns its row count (the last may be smaller), 0 at the end of the epoch, -1 on error. */
int64_t ct_loader_next(ct_loader *ld, float *x, float *y, ct_error *err);

/* Writes a float32 matrix (rows x cols) to `path`: HDF5 dataset "predictions" for .h5 /
 * .hdf5 (shape (rows, cols)), CSV text for .csv. Other extensions are an error. */
int ct_write_matrix(const char *path, const float *m, int64_t rows, int64_t cols,
                    ct_error *err);

#endif
