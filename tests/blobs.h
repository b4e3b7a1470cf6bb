/* blobs.h - a synthetic classification task for whole-experiment tests (header-only):
 * four Gaussian blobs in 8 dimensions written to an HDF5 file as datasets x and y. */
#ifndef CT_TEST_BLOBS_H
#define CT_TEST_BLOBS_H

#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "testutil.h"

/* n samples; the class is the blob. nan_row puts a NaN in row 17, bad_label (when not 0)
 * replaces row 5's label. */
static inline void write_blobs(const char *path, int n, unsigned seed, bool nan_row, int bad_label)
{
    float *x = malloc(sizeof(float) * (size_t)n * 8);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    tu_fill(x, (long)n * 8, seed, -1.0f, 1.0f);
    for (int i = 0; i < n; i++) {
        y[i] = i % 4;
        x[i * 8 + y[i]] += 3.0f;
        x[i * 8 + 4 + y[i]] -= 2.0f;
    }
    if (nan_row)
        x[17 * 8 + 3] = NAN;
    if (bad_label)
        y[5] = bad_label;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dx[2] = {(hsize_t)n, 8}, dy[1] = {(hsize_t)n};
    hid_t sx = H5Screate_simple(2, dx, NULL), sy = H5Screate_simple(1, dy, NULL);
    hid_t a = H5Dcreate2(f, "x", H5T_NATIVE_FLOAT, sx, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t b = H5Dcreate2(f, "y", H5T_NATIVE_INT32, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(a, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dwrite(b, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(a);
    H5Dclose(b);
    H5Sclose(sx);
    H5Sclose(sy);
    H5Fclose(f);
    free(x);
    free(y);
}

#endif
