/* data.h - HDF5 datasets in, batches out.
 *
 * A ct_dataset is a table of HDF5 datasets in one file, one per model input (x members)
 * and one per output (y members, possibly none), all with the same rows along axis 0.
 * x may be float32, float64 or any integer type; each x member is converted to float and
 * multiplied by its own scale when read. y holds integer labels or float targets (which
 * may be scaled too).
 * A ct_loader serves batches from a subset of a dataset's rows, the same rows in the same
 * order for every member. If the subset fits in `memory_limit` bytes it is read once into
 * memory (integer data of one or two bytes, such as images, is kept in its stored type and
 * converted per batch); otherwise batches are read by hyperslab in blocks of contiguous
 * rows, shuffled block order and shuffled within each block. The order of an epoch depends
 * only on (seed, epoch). With ct_loader_prefetch a streaming loader's reader thread reads
 * the next batch while the caller works on the current one; the batches are the same
 * either way. ct_loader_next(_multi) uses ct_parallel_for, so it must be called from the
 * thread that owns the worker pool.
 *
 * The single-member functions (ct_dataset_open, ct_dataset_x_shape, ct_loader_next, ...)
 * act on x member 0 and y member 0.
 *
 * Ownership: ct_dataset_open(_multi) / ct_loader_new return objects freed by
 * ct_dataset_close / ct_loader_free. A loader borrows its dataset, which must outlive it.
 * Names and shapes returned by the getters belong to the dataset. Batch buffers belong to
 * the caller. */
#ifndef CT_DATA_H
#define CT_DATA_H

#include "tensor.h"

typedef struct ct_dataset ct_dataset;

/* Opens path's datasets x and (unless y is NULL) y. Fails, naming the file and dataset,
 * when either is missing, is not a numeric dataset, has rank 0, has zero rows, or when the
 * row counts differ. */
ct_dataset *ct_dataset_open(const char *path, const char *x, const char *y, double scale,
                            ct_error *err);
/* Opens nx (1..CT_MAX_IO) x datasets and ny (0..CT_MAX_IO) y datasets of one file, with
 * the same checks; a row count that differs from x[0]'s names both datasets. xscale[i]
 * multiplies x member i when read (NULL: all 1). The name arrays are copied. */
ct_dataset *ct_dataset_open_multi(const char *path, int nx, const char *const *x,
                                  const double *xscale, int ny, const char *const *y,
                                  ct_error *err);
/* The same with one more y member, `weights` (NULL: none; ny at least 1), the samples'
 * weights: served by the loader like the other y members, handed to the loss apart from
 * the targets by ct_batches, and named as sample_weight in messages. */
ct_dataset *ct_dataset_open_weighted(const char *path, int nx, const char *const *x,
                                     const double *xscale, int ny, const char *const *y,
                                     const char *weights, ct_error *err);
void ct_dataset_close(ct_dataset *ds);

int64_t ct_dataset_rows(const ct_dataset *ds);
/* Refuses a chunked member whose chunks holding one row would take more than memory_limit
 * bytes once decompressed (a 277 KB file can hold one 256 MiB gzip chunk). Returns 0 or
 * -1. */
int ct_dataset_check_chunks(const ct_dataset *ds, size_t memory_limit, ct_error *err);
int ct_dataset_nx(const ct_dataset *ds);
int ct_dataset_ny(const ct_dataset *ds);
/* Per-sample shapes (axis 0 removed). y of shape (N,) gives ndim 0. Out of range: ndim 0. */
ct_shape ct_dataset_x_shape_at(const ct_dataset *ds, int i);
ct_shape ct_dataset_y_shape_at(const ct_dataset *ds, int j);
/* "file.h5:/train/images" for messages; "" out of range. */
const char *ct_dataset_x_name_at(const ct_dataset *ds, int i);
const char *ct_dataset_y_name_at(const ct_dataset *ds, int j);
/* Whether y member j is stored as an integer type. */
bool ct_dataset_y_is_integer_at(const ct_dataset *ds, int j);
/* Marks x member i as token ids read by `user` (a phrase naming the layer, for messages):
 * it is never scaled, and validation requires every value to be an integer in [0, ids).
 * Fails, naming the dataset and user, when the member is not stored as an integer type. */
int ct_dataset_set_token_ids(ct_dataset *ds, int i, int64_t ids, const char *user,
                             ct_error *err);

/* Multiplies y member j's values by scale when read (float targets: an autoencoder's
 * targets scaled as its inputs are); before any read or validation. */
void ct_dataset_set_y_scale(ct_dataset *ds, int j, double scale);

/* Member 0 of each. */
ct_shape ct_dataset_x_shape(const ct_dataset *ds);
ct_shape ct_dataset_y_shape(const ct_dataset *ds);
bool ct_dataset_has_y(const ct_dataset *ds);
bool ct_dataset_y_is_integer(const ct_dataset *ds);
const char *ct_dataset_x_name(const ct_dataset *ds);
const char *ct_dataset_y_name(const ct_dataset *ds);

/* Reads rows [start, start + count) of x member 0 converted to float and scaled
 * (count * x size) and, when y is not NULL, of y member 0 (count * y size). */
int ct_dataset_read(ct_dataset *ds, int64_t start, int64_t count, float *x, float *y,
                    ct_error *err);

/* nclasses[j] for targets that must lie in [0, 1] (the binary and categorical
 * crossentropies'): probabilities, one-hot rows, 0/1 labels. */
#define CT_TARGETS_UNIT (-1)

/* nclasses[j] for sample weights: finite and at least 0. */
#define CT_TARGETS_WEIGHT (-2)

/* The y member holding the samples' weights (-1: none): see ct_dataset_open_weighted. */
int ct_dataset_weight_member(const ct_dataset *ds);

/* Scans the whole dataset once (in blocks): every member must be finite; y member j must
 * hold integers in [0, nclasses[j]) where nclasses[j] > 0, and values in [0, 1] where it is
 * CT_TARGETS_UNIT (nclasses NULL: no target checks; else ny entries), every value of its rows (one per row, or one per position of a time
 * axis: its shape against the model is the caller's check); token-id members must hold
 * ids in their range. Errors name the file, dataset, first bad row and value. */
int ct_dataset_validate_multi(ct_dataset *ds, const int64_t *nclasses, ct_error *err);
/* Says that a loader will read every value after validation (fit, evaluate, predict):
 * validation then leaves out members that hold integers finite whatever they are (once
 * scaled) and are not class labels, so uint8 images are read once, not twice; a damaged
 * chunk among them shows when the loader reads it. `check` reads everything. */
void ct_dataset_will_load(ct_dataset *ds);
/* The same with nclasses for y member 0 only. */
int ct_dataset_validate(ct_dataset *ds, int64_t nclasses, ct_error *err);

typedef struct ct_loader ct_loader;

/* rows: the dataset rows to serve (copied; NULL means all rows in order), n of them.
 * memory_limit: bytes; above it the loader streams blocks from the file. */
ct_loader *ct_loader_new(ct_dataset *ds, const int64_t *rows, int64_t n, int64_t batch,
                         bool shuffle, uint64_t seed, size_t memory_limit, ct_error *err);
void ct_loader_free(ct_loader *ld);
/* The dataset the loader serves (borrowed). */
const ct_dataset *ct_loader_dataset(const ct_loader *ld);
int64_t ct_loader_rows(const ct_loader *ld);
int64_t ct_loader_batches(const ct_loader *ld);
/* Data-parallel training: every batch is cut into `parts` consecutive stretches (of a
 * batch of k rows, part p takes rows [k p / parts, k (p + 1) / parts) of it), and the
 * loader fills only stretch `part`; ct_loader_next(_multi) still returns the whole batch's
 * rows (0 at the end of the epoch, the same for every part), ct_loader_part_rows the rows
 * it filled (0 when a last batch has fewer rows than parts). The order of the epoch is the
 * same for every part. */
void ct_loader_shard(ct_loader *ld, int part, int parts);
int ct_loader_parts(const ct_loader *ld);
int64_t ct_loader_part_rows(const ct_loader *ld);
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
/* Fills the next batch: x[i] receives batch * (x member i size) floats for each x member,
 * and unless y is NULL (no labels) y[j] likewise for each y member; a NULL x[i] or y[j]
 * skips that member. Returns its row count (the last may be smaller), 0 at the end of the
 * epoch, -1 on error. */
int64_t ct_loader_next_multi(ct_loader *ld, float *const *x, float *const *y, ct_error *err);
/* The same for x member 0 and (y not NULL) y member 0 only. */
int64_t ct_loader_next(ct_loader *ld, float *x, float *y, ct_error *err);

/* Writes a float32 matrix (rows x cols) to `path`: HDF5 dataset "predictions" for .h5 /
 * .hdf5 (shape (rows, cols)), CSV text for .csv. Other extensions are an error. */
/* n matrices of rows x cols[k]: HDF5 datasets names[k], or CSV columns side by side. */
int ct_write_matrices(const char *path, int n, const char *const *names,
                      const float *const *m, int64_t rows, const int64_t *cols, ct_error *err);
int ct_write_matrix(const char *path, const float *m, int64_t rows, int64_t cols,
                    ct_error *err);

#define CT_MAX_ARRAYS 64
/* n <= CT_MAX_ARRAYS arrays of rows samples of shape shapes[k]: HDF5 datasets names[k] of
 * shape (rows, shapes[k]...), or CSV columns side by side (the caller checks that each
 * sample is one row of numbers). what names them in messages ("layer outputs"). */
int ct_write_arrays(const char *path, int n, const char *const *names, const float *const *m,
                    int64_t rows, const ct_shape *shapes, const char *what, ct_error *err);

#endif
