/* fuzz_dataset.c - libFuzzer target: the HDF5 dataset reader.
 *
 * Each input is written to a file and opened with ct_dataset_open as x = train/images,
 * y = train/labels (and, when that fails, as x alone). An open dataset is validated
 * (finite x, labels in 0..9) and served by two loaders: one that holds the rows in memory
 * and one forced to stream blocks from the file; a few batches are read from each.
 *
 * Datasets above FZ_MAX_FLOATS values are only opened: an HDF5 file of a few hundred bytes
 * can declare billions of rows (unwritten chunks read as the fill value), and scanning them
 * is legitimate work that would only slow the search down. */
#define FZ_HDF5
#include "fuzz_util.h"

#include <hdf5.h>

#include "data.h"

#define FZ_MAX_FLOATS (INT64_C(1) << 22)
#define FZ_BATCH 4
#define FZ_BATCHES 3

static int64_t dataset_floats(const ct_dataset *ds)
{
    ct_shape xs = ct_dataset_x_shape(ds), ys = ct_dataset_y_shape(ds);
    int64_t row = ct_shape_size(&xs) + (ct_dataset_has_y(ds) ? ct_shape_size(&ys) : 0);
    int64_t rows = ct_dataset_rows(ds);
    return row > 0 && rows > FZ_MAX_FLOATS / row ? FZ_MAX_FLOATS + 1 : rows * row;
}

/* Reads up to FZ_BATCHES batches of two epochs from a loader with this memory limit. */
static void serve(ct_dataset *ds, size_t memory_limit, float *x, float *y)
{
    ct_error err = {0};
    ct_loader *ld = ct_loader_new(ds, NULL, 0, FZ_BATCH, true, 7, memory_limit, &err);
    if (!ld) {
        fz_check_msg("ct_loader_new", err.msg);
        return;
    }
    for (int64_t epoch = 0; epoch < 2; epoch++) {
        if (ct_loader_begin_epoch(ld, epoch, &err) < 0)
            break;
        for (int b = 0; b < FZ_BATCHES; b++) {
            int64_t got = ct_loader_next(ld, x, y, &err);
            if (got < 0)
                fz_check_msg("ct_loader_next", err.msg);
            if (got > FZ_BATCH) {
                fprintf(stderr, "fuzz: a batch of %d rows returned %lld\n", FZ_BATCH,
                        (long long)got);
                abort();
            }
            if (got <= 0)
                break;
        }
    }
    ct_loader_free(ld);
}

static void exercise(ct_dataset *ds)
{
    ct_error err = {0};
    if (dataset_floats(ds) > FZ_MAX_FLOATS)
        return;
    if (ct_dataset_validate(ds, ct_dataset_y_is_integer(ds) ? 10 : 0, &err) < 0)
        fz_check_msg("ct_dataset_validate", err.msg);
    ct_shape xs = ct_dataset_x_shape(ds), ys = ct_dataset_y_shape(ds);
    size_t xn = (size_t)ct_shape_size(&xs) * FZ_BATCH, yn = (size_t)ct_shape_size(&ys) * FZ_BATCH;
    float *x = malloc((xn ? xn : 1) * sizeof *x), *y = malloc((yn ? yn : 1) * sizeof *y);
    if (x && y) {
        serve(ds, 1u << 20, x, y);
        serve(ds, 64, x, y);
    }
    free(x);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        /* The library silences HDF5 around its own calls; this covers everything else. */
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        quiet = true;
    }
    const char *path = fz_path("dataset", "data.h5");
    fz_write(path, data, size);
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(path, "train/images", "train/labels", 1.0 / 255, &err);
    if (!ds) {
        fz_check_msg("ct_dataset_open", err.msg);
        err.msg[0] = 0;
        ds = ct_dataset_open(path, "train/images", NULL, 1.0, &err);
        if (!ds)
            fz_check_msg("ct_dataset_open", err.msg);
    }
    if (ds)
        exercise(ds);
    ct_dataset_close(ds);
    return 0;
}
