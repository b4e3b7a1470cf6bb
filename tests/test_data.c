/* test_data.c - HDF5 datasets, loaders, prediction output, IDX/CSV import and weights. */
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <hdf5.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <zlib.h>
#include <png.h>
#include <stdio.h>
#include <jpeglib.h>

#include "data.h"
#include "isolate.h"
#include "guard.h"
#include "h5util.h"
#include "rng.h"
#include "testutil.h"
#include "weights.h"

static char *dir;          /* fixtures for the whole run */
static char main_h5[4200], list_h5[4200], rows_h5[4200], wide_h5[4200];

#define ROWS 103
#define WIDE_ROWS 40
#define WIDE_COLS 20000

static const char *path_in(const char *name)
{
    static char buf[4][4200];
    static int at;
    at = (at + 1) % 4;
    snprintf(buf[at], sizeof buf[at], "%s/%s", dir, name);
    return buf[at];
}

/* ---- fixture writers (HDF5 C API) ---- */

static void fx_put(hid_t file, const char *name, hid_t ftype, hid_t mtype, hid_t space,
                   hid_t dcpl, const void *data)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    ck_assert(H5Pset_create_intermediate_group(lcpl, 1) >= 0);
    hid_t d = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "creating %s", name);
    if (data)
        ck_assert(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Pclose(lcpl);
}

static void fx_array(hid_t file, const char *name, hid_t ftype, hid_t mtype, int rank,
                     const hsize_t *dims, const void *data)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    fx_put(file, name, ftype, mtype, space, H5P_DEFAULT, data);
    H5Sclose(space);
}

static void write_main_fixture(void)
{
    hid_t f = H5Fcreate(main_h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    unsigned char img[10 * 2 * 3];
    for (int i = 0; i < 60; i++)
        img[i] = (unsigned char)(i * 4);
    hsize_t d3[3] = {10, 2, 3}, d1[1] = {10}, d2[2] = {10, 2}, d9[1] = {9};
    fx_array(f, "train/images", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 3, d3, img);
    int64_t lab[10], bad[10], short_lab[9];
    for (int i = 0; i < 10; i++)
        lab[i] = bad[i] = i % 3;
    bad[5] = 10;
    memcpy(short_lab, lab, sizeof short_lab);
    fx_array(f, "train/labels", H5T_STD_I64BE, H5T_NATIVE_INT64, 1, d1, lab);
    fx_array(f, "bad_labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d1, bad);
    fx_array(f, "short_labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d9, short_lab);
    double x64[10 * 2];
    float t32[10 * 2], nan32[10 * 2], frac[10];
    for (int i = 0; i < 20; i++) {
        x64[i] = i * 0.25 - 1.0;
        t32[i] = nan32[i] = (float)i / 8;
    }
    for (int i = 0; i < 10; i++)
        frac[i] = (float)(i % 2);
    frac[4] = 2.5f;
    nan32[7 * 2 + 1] = NAN;
    fx_array(f, "f64", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d2, x64);
    fx_array(f, "targets", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 2, d2, t32);
    fx_array(f, "nan_x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, nan32);
    fx_array(f, "frac_labels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d1, frac);
    x64[3 * 2] = INFINITY;
    fx_array(f, "inf_x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, d2, x64);

    /* chunked + gzip */
    float gz[100 * 3];
    for (int i = 0; i < 300; i++)
        gz[i] = (float)i;
    hsize_t dg[2] = {100, 3}, chunk[2] = {16, 3};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_chunk(dcpl, 2, chunk) >= 0 && H5Pset_deflate(dcpl, 6) >= 0);
    hid_t space = H5Screate_simple(2, dg, NULL);
    fx_put(f, "gz", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, dcpl, gz);
    H5Sclose(space);
    H5Pclose(dcpl);

    /* a string dataset, a compound one, a scalar, zero rows, one-hot labels */
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 4);
    hsize_t ds3[1] = {3};
    fx_array(f, "str", st, st, 1, ds3, "abc\0def\0ghi\0");
    H5Tclose(st);
    hid_t ct = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(ct, "a", 0, H5T_NATIVE_FLOAT);
    H5Tinsert(ct, "b", 4, H5T_NATIVE_FLOAT);
    fx_array(f, "compound", ct, ct, 1, ds3, NULL);
    H5Tclose(ct);
    space = H5Screate(H5S_SCALAR);
    float one = 1;
    fx_put(f, "scalar", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, H5P_DEFAULT, &one);
    H5Sclose(space);
    hsize_t d0[2] = {0, 3}, d10_3[2] = {10, 3};
    fx_array(f, "empty", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d0, NULL);
    float onehot[30] = {0};
    fx_array(f, "onehot", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d10_3, onehot);

    /* external links, straight and through a group */
    ck_assert(H5Lcreate_external("other.h5", "/data", f, "ext", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Lcreate_external("other.h5", "/", f, "extgrp", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Fclose(f) >= 0);

    hid_t o = H5Fcreate(path_in("other.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    fx_array(o, "data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, t32);
    ck_assert(H5Fclose(o) >= 0);
}

static void write_list_fixture(void)
{
    hid_t f = H5Fcreate(list_h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d[1] = {4};
    float v[4] = {1, 2, 3, 4};
    const char *names[] = {"train/images", "train/labels", "test/images", "test/labels"};
    for (int i = 0; i < 4; i++)
        fx_array(f, names[i], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d, v);
    ck_assert(H5Fclose(f) >= 0);
}

/* rows.h5: x[r] = (r, 2r, 0.5), y[r] = r. wide.h5: 80 KB rows so reads split into runs. */
static void write_rows_fixtures(void)
{
    hid_t f = H5Fcreate(rows_h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    float x[ROWS * 3];
    int32_t y[ROWS];
    for (int r = 0; r < ROWS; r++) {
        x[r * 3] = (float)r;
        x[r * 3 + 1] = 2.0f * (float)r;
        x[r * 3 + 2] = 0.5f;
        y[r] = r;
    }
    hsize_t dx[2] = {ROWS, 3}, dy[1] = {ROWS};
    fx_array(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dx, x);
    fx_array(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dy, y);
    ck_assert(H5Fclose(f) >= 0);

    f = H5Fcreate(wide_h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    float *w = malloc(sizeof(float) * WIDE_ROWS * WIDE_COLS);
    int32_t wy[WIDE_ROWS];
    for (int r = 0; r < WIDE_ROWS; r++) {
        wy[r] = r;
        for (int c = 0; c < WIDE_COLS; c++)
            w[(size_t)r * WIDE_COLS + c] = (float)(r * 100000 + c);
    }
    hsize_t dw[2] = {WIDE_ROWS, WIDE_COLS}, dwy[1] = {WIDE_ROWS};
    fx_array(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dw, w);
    fx_array(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dwy, wy);
    ck_assert(H5Fclose(f) >= 0);
    free(w);
}

static void copy_prefix(const char *from, const char *to, double fraction)
{
    FILE *in = fopen(from, "rb");
    ck_assert(in != NULL);
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    rewind(in);
    char *buf = malloc((size_t)n);
    ck_assert(fread(buf, 1, (size_t)n, in) == (size_t)n);
    fclose(in);
    FILE *out = fopen(to, "wb");
    ck_assert(out != NULL);
    fwrite(buf, 1, (size_t)(n * fraction), out);
    fclose(out);
    free(buf);
}

static void setup_fixtures(void)
{
    if (dir)
        return;
    dir = tu_tmpdir();
    ck_assert(dir != NULL);
    snprintf(main_h5, sizeof main_h5, "%s/main.h5", dir);
    snprintf(list_h5, sizeof list_h5, "%s/list.h5", dir);
    snprintf(rows_h5, sizeof rows_h5, "%s/rows.h5", dir);
    snprintf(wide_h5, sizeof wide_h5, "%s/wide.h5", dir);
    write_main_fixture();
    write_list_fixture();
    write_rows_fixtures();
    copy_prefix(wide_h5, path_in("truncated.h5"), 0.5);
    tu_write(dir, "text.h5", "this is not HDF5\n");
}

/* Every HDF5 file, group, dataset and attribute a test (and the code under test) opens
 * must be closed by its end. */
static ssize_t objs_before;

static void ids_setup(void) { objs_before = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL); }

static void ids_teardown(void)
{
    ssize_t now = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    ck_assert_msg(now == objs_before, "%zd HDF5 objects open before the test, %zd after",
                  objs_before, now);
}

/* ---- opening ---- */

static void expect_open_error(const char *path, const char *x, const char *y,
                              ct_error_code code, const char *expected)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(path, x, y, 1.0, &err);
    ck_assert_msg(ds == NULL, "opening %s:%s should fail", path, x);
    ck_assert_int_eq(err.code, code);
    ck_assert_str_eq(err.msg, expected);
}

START_TEST(test_open_file_errors)
{
    char want[8192];
    const char *missing = path_in("missing.h5");
    snprintf(want, sizeof want, "cannot open %s: No such file or directory", missing);
    expect_open_error(missing, "x", NULL, CT_ERR_IO, want);
    snprintf(want, sizeof want, "%s/text.h5 is not an HDF5 file or is damaged", dir);
    expect_open_error(path_in("text.h5"), "x", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want, "%s/truncated.h5 is not an HDF5 file or is damaged", dir);
    expect_open_error(path_in("truncated.h5"), "x", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want, "cannot open %s: it is a directory", dir);
    expect_open_error(dir, "x", NULL, CT_ERR_IO, want);

    /* A file another program holds locked is reported as such, not as damaged. */
    const char *env = getenv("HDF5_USE_FILE_LOCKING");
    if (env && strcmp(env, "TRUE") != 0)
        return;
    char locked[4200];
    snprintf(locked, sizeof locked, "%s", path_in("locked.h5"));
    copy_prefix(rows_h5, locked, 1.0);
    int fd = open(locked, O_RDONLY);
    ck_assert(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);
    ct_error err = {0};
    ck_assert(ct_dataset_open(locked, "x", NULL, 1.0, &err) == NULL);
    ck_assert_int_eq(err.code, CT_ERR_IO);
    snprintf(want, sizeof want, "cannot open %s: HDF5 could not lock it (unable to lock file",
             locked);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "HDF5_USE_FILE_LOCKING=FALSE") != NULL, "%s", err.msg);
    close(fd);
    ct_dataset *ds = ct_dataset_open(locked, "x", NULL, 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ct_dataset_close(ds);
}
END_TEST

START_TEST(test_open_missing_dataset)
{
    char want[8192];
    snprintf(want, sizeof want,
             "%s: no dataset 'train/imgs' (datasets in the file: test/images, test/labels, "
             "train/images, train/labels)", list_h5);
    expect_open_error(list_h5, "train/imgs", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want,
             "%s: no dataset 'nope/labels' (datasets in the file: test/images, test/labels, "
             "train/images, train/labels)", list_h5);
    expect_open_error(list_h5, "train/images", "nope/labels", CT_ERR_DATA, want);
    snprintf(want, sizeof want,
             "%s: 'train' is a group, not a dataset (datasets in the file: test/images, "
             "test/labels, train/images, train/labels)", list_h5);
    expect_open_error(list_h5, "train", NULL, CT_ERR_DATA, want);

    /* More than 20 datasets: the first 20 and a count. */
    const char *many = path_in("many.h5");
    hid_t f = H5Fcreate(many, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d[1] = {1};
    float v = 0;
    char expected_list[4096] = "";
    for (int i = 0; i < 23; i++) {
        char name[16];
        snprintf(name, sizeof name, "d%02d", i);
        fx_array(f, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d, &v);
        if (i < 20)
            snprintf(expected_list + strlen(expected_list),
                     sizeof expected_list - strlen(expected_list), "%s%s", i ? ", " : "", name);
    }
    H5Fclose(f);
    snprintf(want, sizeof want, "%s: no dataset 'x' (datasets in the file: %s, and 3 more)",
             many, expected_list);
    expect_open_error(many, "x", NULL, CT_ERR_DATA, want);
}
END_TEST

START_TEST(test_open_bad_datasets)
{
    char want[8192];
    snprintf(want, sizeof want, "%s:/str has type string; expected numbers", main_h5);
    expect_open_error(main_h5, "str", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want, "%s:/compound has type compound; expected numbers", main_h5);
    expect_open_error(main_h5, "f64", "/compound", CT_ERR_DATA, want);
    snprintf(want, sizeof want,
             "%s:/scalar is a scalar (rank 0); expected samples along axis 0", main_h5);
    expect_open_error(main_h5, "scalar", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want, "%s:/empty has zero rows", main_h5);
    expect_open_error(main_h5, "empty", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want,
             "%s: x 'train/images' has 10 rows but y 'short_labels' has 9", main_h5);
    expect_open_error(main_h5, "train/images", "short_labels", CT_ERR_DATA, want);
    snprintf(want, sizeof want, "%s: 'ext' is an external link; copy the data into the file",
             main_h5);
    expect_open_error(main_h5, "ext", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want,
             "%s: 'extgrp' is an external link; copy the data into the file", main_h5);
    expect_open_error(main_h5, "f64", "extgrp/data", CT_ERR_DATA, want);
}
END_TEST

START_TEST(test_read_conversion)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(main_h5, "train/images", "/train/labels", 1.0 / 255, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_rows(ds), 10);
    ct_shape xs = ct_dataset_x_shape(ds), ys = ct_dataset_y_shape(ds);
    ck_assert_int_eq(xs.ndim, 2);
    ck_assert_int_eq(xs.dim[0], 2);
    ck_assert_int_eq(xs.dim[1], 3);
    ck_assert_int_eq(ys.ndim, 0);
    ck_assert(ct_dataset_has_y(ds));
    ck_assert(ct_dataset_y_is_integer(ds));
    char want[4300];
    snprintf(want, sizeof want, "%s:/train/images", main_h5);
    ck_assert_str_eq(ct_dataset_x_name(ds), want);
    snprintf(want, sizeof want, "%s:/train/labels", main_h5);
    ck_assert_str_eq(ct_dataset_y_name(ds), want);

    float x[3 * 6], y[3];
    ck_assert_int_eq(ct_dataset_read(ds, 4, 3, x, y, &err), 0);
    for (int i = 0; i < 18; i++)
        tu_assert_close(x[i], (float)((24 + i) * 4) * (float)(1.0 / 255), 1e-6);
    ck_assert(y[0] == 1 && y[1] == 2 && y[2] == 0);

    ck_assert_int_eq(ct_dataset_read(ds, 8, 3, x, y, &err), -1);
    snprintf(want, sizeof want, "%s:/train/images: rows 8..10 are out of range (10 rows)",
             main_h5);
    ck_assert_str_eq(err.msg, want);
    ck_assert_int_eq(ct_dataset_read(ds, -1, 1, x, NULL, &err), -1);
    ct_dataset_close(ds);

    /* float64 x with float32 targets (big-endian in the file), no scaling */
    ds = ct_dataset_open(main_h5, "f64", "targets", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert(!ct_dataset_y_is_integer(ds));
    ck_assert_int_eq(ct_dataset_y_shape(ds).ndim, 1);
    ck_assert_int_eq(ct_dataset_y_shape(ds).dim[0], 2);
    float t[4];
    ck_assert_int_eq(ct_dataset_read(ds, 9, 1, x, t, &err), 0);
    ck_assert(x[0] == 3.5f && x[1] == 3.75f);
    ck_assert(t[0] == 18.0f / 8 && t[1] == 19.0f / 8);
    ct_dataset_close(ds);

    /* chunked and compressed, without y */
    ds = ct_dataset_open(main_h5, "gz", NULL, 2.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert(!ct_dataset_has_y(ds));
    ck_assert_str_eq(ct_dataset_y_name(ds), "");
    float g[30 * 3];
    ck_assert_int_eq(ct_dataset_read(ds, 50, 30, g, NULL, &err), 0);
    for (int i = 0; i < 90; i++)
        ck_assert(g[i] == 2.0f * (float)(150 + i));
    ct_dataset_close(ds);
}
END_TEST

static void expect_validate_error(const char *x, const char *y, int64_t nclasses,
                                  const char *expected)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(main_h5, x, y, 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_validate(ds, nclasses, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_DATA);
    ck_assert_str_eq(err.msg, expected);
    ct_dataset_close(ds);
}

START_TEST(test_validate)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(main_h5, "train/images", "train/labels", 1.0, &err);
    ck_assert_int_eq(ct_dataset_validate(ds, 3, &err), 0);
    ck_assert_int_eq(ct_dataset_validate(ds, 0, &err), 0);
    ct_dataset_close(ds);

    char want[8192];
    snprintf(want, sizeof want, "%s:/nan_x: row 7 holds NaN or Inf", main_h5);
    expect_validate_error("nan_x", "train/labels", 3, want);
    snprintf(want, sizeof want, "%s:/inf_x: row 3 holds NaN or Inf", main_h5);
    expect_validate_error("inf_x", NULL, 0, want);
    snprintf(want, sizeof want, "%s:/nan_x: row 7 holds NaN or Inf", main_h5);
    expect_validate_error("f64", "nan_x", 0, want);
    snprintf(want, sizeof want,
             "%s:/bad_labels: row 5 has label 10, but the model's output has 10 classes "
             "(labels must be 0..9)", main_h5);
    expect_validate_error("f64", "bad_labels", 10, want);
    snprintf(want, sizeof want,
             "%s:/train/labels: row 2 has label 2, but the model's output has 2 classes "
             "(labels must be 0..1)", main_h5);
    expect_validate_error("f64", "train/labels", 2, want);
    snprintf(want, sizeof want,
             "%s:/frac_labels: row 4 has label 2.5, but class labels must be integers", main_h5);
    expect_validate_error("f64", "frac_labels", 3, want);
    /* Rows of several labels (one per position of a time axis) are checked value by
     * value; their shape against the model's output is the experiment's check. */
    snprintf(want, sizeof want,
             "%s:/gz: row 1 has label 3 at position 0, but the model's output has 3 classes "
             "(labels must be 0..2)", main_h5);
    expect_validate_error("gz", "gz", 3, want);
    ct_dataset *oh = ct_dataset_open(main_h5, "f64", "onehot", 1.0, &err);
    ck_assert_msg(oh != NULL, "%s", err.msg);
    ck_assert_msg(ct_dataset_validate(oh, 3, &err) == 0, "%s", err.msg);
    ct_dataset_close(oh);
}
END_TEST

/* ---- several members ---- */

static ct_dataset *open_multi(int nx, const char *const *x, const double *xscale, int ny,
                              const char *const *y)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open_multi(main_h5, nx, x, xscale, ny, y, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    return ds;
}

static void expect_multi_error(int nx, const char *const *x, int ny, const char *const *y,
                               const char *expected)
{
    ct_error err = {0};
    ck_assert(ct_dataset_open_multi(main_h5, nx, x, NULL, ny, y, &err) == NULL);
    ck_assert_str_eq(err.msg, expected);
}

START_TEST(test_open_multi)
{
    /* three x of three types, two y: one integer, one float */
    const char *x[] = {"train/images", "f64", "targets"}, *y[] = {"train/labels", "/targets"};
    const double scale[] = {0.25, 2.0, 1.0};
    ct_dataset *ds = open_multi(3, x, scale, 2, y);
    ck_assert_int_eq(ct_dataset_nx(ds), 3);
    ck_assert_int_eq(ct_dataset_ny(ds), 2);
    ck_assert_int_eq(ct_dataset_rows(ds), 10);
    ct_shape s = ct_dataset_x_shape_at(ds, 0);
    ck_assert(s.ndim == 2 && s.dim[0] == 2 && s.dim[1] == 3);
    s = ct_dataset_x_shape_at(ds, 1);
    ck_assert(s.ndim == 1 && s.dim[0] == 2);
    ck_assert_int_eq(ct_dataset_y_shape_at(ds, 0).ndim, 0);
    s = ct_dataset_y_shape_at(ds, 1);
    ck_assert(s.ndim == 1 && s.dim[0] == 2);
    ck_assert(ct_dataset_y_is_integer_at(ds, 0) && !ct_dataset_y_is_integer_at(ds, 1));
    char want[4400];
    snprintf(want, sizeof want, "%s:/f64", main_h5);
    ck_assert_str_eq(ct_dataset_x_name_at(ds, 1), want);
    snprintf(want, sizeof want, "%s:/targets", main_h5);
    ck_assert_str_eq(ct_dataset_y_name_at(ds, 1), want);
    /* out of range: empty, not a crash */
    ck_assert_str_eq(ct_dataset_x_name_at(ds, 3), "");
    ck_assert_str_eq(ct_dataset_y_name_at(ds, -1), "");
    ck_assert_int_eq(ct_dataset_y_shape_at(ds, 2).ndim, 0);
    ck_assert(!ct_dataset_y_is_integer_at(ds, 2));
    /* the single-member calls see member 0, with its scale */
    ck_assert_str_eq(ct_dataset_x_name(ds), ct_dataset_x_name_at(ds, 0));
    ck_assert_str_eq(ct_dataset_y_name(ds), ct_dataset_y_name_at(ds, 0));
    ck_assert(ct_dataset_has_y(ds) && ct_dataset_y_is_integer(ds));
    float xr[10 * 6], yr[10];
    ct_error err = {0};
    ck_assert_int_eq(ct_dataset_read(ds, 0, 10, xr, yr, &err), 0);
    for (int i = 0; i < 60; i++)
        ck_assert_float_eq(xr[i], (float)i); /* stored i * 4, scale 0.25 */
    for (int i = 0; i < 10; i++)
        ck_assert_float_eq(yr[i], (float)(i % 3));
    ck_assert_int_eq(ct_dataset_validate_multi(ds, (int64_t[]){3, 0}, &err), 0);
    ck_assert_int_eq(ct_dataset_validate_multi(ds, NULL, &err), 0);
    ct_dataset_close(ds);

    /* no y at all */
    ds = open_multi(2, x, NULL, 0, NULL);
    ck_assert(!ct_dataset_has_y(ds) && ct_dataset_ny(ds) == 0);
    ck_assert_str_eq(ct_dataset_y_name(ds), "");
    ct_dataset_close(ds);
}
END_TEST

START_TEST(test_open_multi_errors)
{
    char want[8192];
    /* a row-count mismatch names both datasets and both counts, whichever member it is */
    const char *x[] = {"train/images", "short_labels"}, *y[] = {"train/labels", "short_labels"};
    snprintf(want, sizeof want, "%s: x 'train/images' has 10 rows but x 'short_labels' has 9",
             main_h5);
    expect_multi_error(2, x, 1, y, want);
    snprintf(want, sizeof want, "%s: x 'train/images' has 10 rows but y 'short_labels' has 9",
             main_h5);
    expect_multi_error(1, x, 2, y, want);
    /* a missing later member is reported like a missing first one */
    const char *xm[] = {"f64", "nope"};
    ct_error err = {0};
    ck_assert(ct_dataset_open_multi(main_h5, 2, xm, NULL, 0, NULL, &err) == NULL);
    snprintf(want, sizeof want, "%s: no dataset 'nope' (datasets in the file: ", main_h5);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
    /* counts outside 1..CT_MAX_IO, and a missing name */
    snprintf(want, sizeof want,
             "%s: 0 x and 0 y datasets; 1 to %d x and 0 to %d y are supported", main_h5,
             CT_MAX_IO, CT_MAX_IO);
    expect_multi_error(0, x, 0, NULL, want);
    const char *xn[] = {"f64", NULL};
    snprintf(want, sizeof want, "%s: x dataset 1 has no name", main_h5);
    expect_multi_error(2, xn, 0, NULL, want);
}
END_TEST

static void expect_validate_multi(int nx, const char *const *x, int ny, const char *const *y,
                                  const int64_t *nclasses, const char *expected)
{
    ct_dataset *ds = open_multi(nx, x, NULL, ny, y);
    ct_error err = {0};
    int rc = ct_dataset_validate_multi(ds, nclasses, &err);
    if (expected) {
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(err.code, CT_ERR_DATA);
        ck_assert_str_eq(err.msg, expected);
    } else {
        ck_assert_msg(rc == 0, "%s", err.msg);
    }
    ct_dataset_close(ds);
}

START_TEST(test_validate_multi)
{
    char want[8192];
    const char *x[] = {"train/images", "nan_x"}, *y[] = {"train/labels", "bad_labels"};
    snprintf(want, sizeof want, "%s:/nan_x: row 7 holds NaN or Inf", main_h5);
    expect_validate_multi(2, x, 2, y, NULL, want);
    /* labels are checked in the y members given classes, each against its own count */
    snprintf(want, sizeof want,
             "%s:/bad_labels: row 5 has label 10, but the model's output has 10 classes "
             "(labels must be 0..9)", main_h5);
    expect_validate_multi(1, x, 2, y, (int64_t[]){3, 10}, want);
    expect_validate_multi(1, x, 2, y, (int64_t[]){3, 11}, NULL);
    expect_validate_multi(1, x, 2, y, (int64_t[]){3, 0}, NULL);
    const char *yf[] = {"targets", "frac_labels"};
    expect_validate_multi(1, x, 2, yf, (int64_t[]){0, 0}, NULL);
    snprintf(want, sizeof want,
             "%s:/frac_labels: row 4 has label 2.5, but class labels must be integers", main_h5);
    expect_validate_multi(1, x, 2, yf, (int64_t[]){0, 3}, want);
    const char *yo[] = {"train/labels", "onehot"};
    expect_validate_multi(1, x, 2, yo, (int64_t[]){3, 3}, NULL);
    expect_validate_multi(1, x, 2, yo, (int64_t[]){3, 0}, NULL);
    /* the single-member call checks labels in y member 0 only */
    ct_dataset *ds = open_multi(1, x, NULL, 2, y);
    ct_error err = {0};
    ck_assert_int_eq(ct_dataset_validate(ds, 3, &err), 0);
    ct_dataset_close(ds);
}
END_TEST

/* ---- loader ---- */

/* Runs one epoch, recording row ids (checked against x and y) and batch sizes. */
static int64_t run_epoch(ct_loader *ld, int64_t epoch, int64_t batch, int64_t *seq,
                         int64_t *sizes, int64_t *nbatches)
{
    ct_error err = {0};
    ck_assert_int_eq(ct_loader_begin_epoch(ld, epoch, &err), 0);
    float x[64 * 3], y[64];
    int64_t n = 0, b = 0, got;
    while ((got = ct_loader_next(ld, x, y, &err)) > 0) {
        ck_assert(got <= batch);
        for (int64_t i = 0; i < got; i++) {
            ck_assert(x[i * 3 + 1] == 2 * x[i * 3] && x[i * 3 + 2] == 0.5f);
            ck_assert(y[i] == x[i * 3]);
            seq[n++] = (int64_t)x[i * 3];
        }
        if (sizes)
            sizes[b] = got;
        b++;
    }
    ck_assert_msg(got == 0, "%s", err.msg);
    if (nbatches)
        *nbatches = b;
    return n;
}

static void assert_each_once(const int64_t *seq, int64_t n, int64_t rows)
{
    int seen[ROWS] = {0};
    ck_assert_int_eq(n, rows);
    for (int64_t i = 0; i < n; i++) {
        ck_assert(seq[i] >= 0 && seq[i] < ROWS);
        seen[seq[i]]++;
    }
    for (int64_t r = 0; r < rows; r++)
        ck_assert_int_eq(seen[r], 1);
}

static ct_loader *rows_loader(ct_dataset **ds, const int64_t *rows, int64_t n, bool shuffle,
                              uint64_t seed, size_t limit)
{
    ct_error err = {0};
    *ds = ct_dataset_open(rows_h5, "x", "y", 1.0, &err);
    ck_assert_msg(*ds != NULL, "%s", err.msg);
    ct_loader *ld = ct_loader_new(*ds, rows, n, 10, shuffle, seed, limit, &err);
    ck_assert_msg(ld != NULL, "%s", err.msg);
    return ld;
}

static void check_in_order(size_t limit)
{
    ct_dataset *ds;
    ct_loader *ld = rows_loader(&ds, NULL, 0, false, 1, limit);
    ck_assert_int_eq(ct_loader_rows(ld), ROWS);
    ck_assert_int_eq(ct_loader_batches(ld), 11);
    int64_t seq[ROWS], sizes[16], nb;
    for (int epoch = 0; epoch < 2; epoch++) {
        ck_assert_int_eq(run_epoch(ld, epoch, 10, seq, sizes, &nb), ROWS);
        ck_assert_int_eq(nb, 11);
        for (int i = 0; i < 10; i++)
            ck_assert_int_eq(sizes[i], 10);
        ck_assert_int_eq(sizes[10], 3);
        for (int64_t i = 0; i < ROWS; i++)
            ck_assert_int_eq(seq[i], i);
    }
    ct_loader_free(ld);
    ct_dataset_close(ds);
}

START_TEST(test_loader_in_order)
{
    check_in_order(1 << 20);
    check_in_order(200);   /* streaming */
}
END_TEST

static void check_shuffled(size_t limit, int64_t *first_epoch)
{
    ct_dataset *ds, *ds2;
    ct_loader *ld = rows_loader(&ds, NULL, 0, true, 42, limit);
    ct_loader *same = rows_loader(&ds2, NULL, 0, true, 42, limit);
    int64_t a[ROWS], b[ROWS], c[ROWS], sizes[16], nb;
    ck_assert_int_eq(run_epoch(ld, 0, 10, a, sizes, &nb), ROWS);
    ck_assert_int_eq(nb, 11);
    ck_assert_int_eq(sizes[10], 3);
    assert_each_once(a, ROWS, ROWS);
    ck_assert_int_eq(run_epoch(ld, 1, 10, b, NULL, NULL), ROWS);
    assert_each_once(b, ROWS, ROWS);
    ck_assert_msg(memcmp(a, b, sizeof a) != 0, "epochs 0 and 1 have the same order");
    int64_t identity = 0;
    for (int64_t i = 0; i < ROWS; i++)
        identity += a[i] == i;
    ck_assert_msg(identity < ROWS / 2, "epoch 0 is barely shuffled");
    /* Same seed, fresh loader, epochs visited out of order: the same sequences. */
    ck_assert_int_eq(run_epoch(same, 1, 10, c, NULL, NULL), ROWS);
    ck_assert(memcmp(b, c, sizeof b) == 0);
    ck_assert_int_eq(run_epoch(same, 0, 10, c, NULL, NULL), ROWS);
    ck_assert(memcmp(a, c, sizeof a) == 0);
    /* Replaying an epoch on the same loader repeats it. */
    ck_assert_int_eq(run_epoch(ld, 0, 10, c, NULL, NULL), ROWS);
    ck_assert(memcmp(a, c, sizeof a) == 0);
    memcpy(first_epoch, a, sizeof a);
    ct_loader_free(ld);
    ct_loader_free(same);
    ct_dataset_close(ds);
    ct_dataset_close(ds2);

    ld = rows_loader(&ds, NULL, 0, true, 43, limit);
    ck_assert_int_eq(run_epoch(ld, 0, 10, c, NULL, NULL), ROWS);
    ck_assert_msg(memcmp(a, c, sizeof a) != 0, "seeds 42 and 43 give the same order");
    ct_loader_free(ld);
    ct_dataset_close(ds);
}

START_TEST(test_loader_shuffle_memory)
{
    int64_t a[ROWS];
    check_shuffled(1 << 20, a);
    /* The in-memory order is exactly the documented permutation. */
    int64_t perm[ROWS];
    ct_rng_permutation(ct_rng_key(42, CT_RNG_SHUFFLE, 0, 0), perm, ROWS);
    for (int i = 0; i < ROWS; i++)
        ck_assert_int_eq(a[i], perm[i]);
}
END_TEST

START_TEST(test_loader_shuffle_streaming)
{
    /* 16 bytes per row and 200 bytes of memory: blocks of 12 rows (9 blocks). */
    int64_t a[ROWS];
    check_shuffled(200, a);
    /* The epoch is whole blocks one after another, each shuffled inside. */
    int64_t i = 0, blocks = 0;
    while (i < ROWS) {
        int64_t b = a[i] / 12, len = b == 8 ? ROWS - 96 : 12;
        for (int64_t k = 0; k < len; k++)
            ck_assert_msg(a[i + k] / 12 == b, "entry %" PRId64 " leaves block %" PRId64,
                          i + k, b);
        i += len;
        blocks++;
    }
    ck_assert_int_eq(blocks, 9);
    int64_t in_place = 0;
    for (int64_t k = 0; k < 12; k++)
        in_place += a[k] % 12 == k;
    ck_assert_msg(in_place < 12, "the first block is not shuffled");
}
END_TEST

START_TEST(test_loader_subset)
{
    const int64_t rows[] = {90, 1, 50, 51, 52, 7, 102, 4, 4};
    const int64_t n = sizeof rows / sizeof rows[0];
    size_t limits[2] = {1 << 20, 40};
    for (int l = 0; l < 2; l++) {
        ct_dataset *ds;
        ct_loader *ld = rows_loader(&ds, rows, n, false, 3, limits[l]);
        ck_assert_int_eq(ct_loader_rows(ld), n);
        ck_assert_int_eq(ct_loader_batches(ld), 1);
        int64_t seq[16];
        ck_assert_int_eq(run_epoch(ld, 0, 10, seq, NULL, NULL), n);
        for (int64_t i = 0; i < n; i++)
            ck_assert_int_eq(seq[i], rows[i]);
        ct_loader_free(ld);
        ct_dataset_close(ds);
    }
    /* Shuffled subset: the same multiset in both modes, every epoch. */
    const int64_t sub[] = {3, 99, 17, 18, 19, 20, 60, 61, 0, 45, 46, 100, 101, 77, 8};
    const int64_t ns = sizeof sub / sizeof sub[0];
    for (int l = 0; l < 2; l++) {
        ct_dataset *ds;
        ct_loader *ld = rows_loader(&ds, sub, ns, true, 9, limits[l]);
        for (int epoch = 0; epoch < 3; epoch++) {
            int64_t seq[16], count[ROWS] = {0};
            ck_assert_int_eq(run_epoch(ld, epoch, 10, seq, NULL, NULL), ns);
            for (int64_t i = 0; i < ns; i++)
                count[seq[i]]++;
            for (int64_t i = 0; i < ns; i++)
                ck_assert_int_eq(count[sub[i]], 1);
        }
        ct_loader_free(ld);
        ct_dataset_close(ds);
    }
}
END_TEST

START_TEST(test_loader_wide_rows)
{
    /* 80 KB rows: reads split into several runs and skip the gaps. */
    const int64_t rows[] = {39, 0, 2, 3, 4, 20, 21, 13, 12, 11, 10, 9, 8, 7, 6, 5, 30};
    const int64_t n = sizeof rows / sizeof rows[0];
    size_t limits[2] = {64u << 20, 300000};
    float *x = malloc(sizeof(float) * 4 * WIDE_COLS);
    for (int l = 0; l < 2; l++) {
        ct_error err = {0};
        ct_dataset *ds = ct_dataset_open(wide_h5, "x", "y", 1.0, &err);
        ck_assert_msg(ds != NULL, "%s", err.msg);
        ct_loader *ld = ct_loader_new(ds, rows, n, 4, false, 0, limits[l], &err);
        ck_assert_msg(ld != NULL, "%s", err.msg);
        ck_assert_int_eq(ct_loader_batches(ld), 5);
        int64_t at = 0, got;
        float y[4];
        while ((got = ct_loader_next(ld, x, y, &err)) > 0) {
            for (int64_t i = 0; i < got; i++, at++) {
                ck_assert(y[i] == (float)rows[at]);
                for (int c = 0; c < WIDE_COLS; c += 997)
                    ck_assert(x[i * WIDE_COLS + c] == (float)(rows[at] * 100000 + c));
            }
        }
        ck_assert_int_eq(got, 0);
        ck_assert_int_eq(at, n);
        ct_loader_free(ld);
        ct_dataset_close(ds);
    }
    free(x);
}
END_TEST

START_TEST(test_loader_errors)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(rows_h5, "x", "y", 1.0, &err);
    const int64_t bad[] = {1, ROWS};
    ck_assert(ct_loader_new(ds, bad, 2, 10, false, 0, 1 << 20, &err) == NULL);
    char want[4400];
    snprintf(want, sizeof want, "%s:/x: row 103 is out of range (103 rows)", rows_h5);
    ck_assert_str_eq(err.msg, want);
    ck_assert(ct_loader_new(ds, NULL, 0, 0, false, 0, 1 << 20, &err) == NULL);
    ck_assert_str_eq(err.msg, "batch size 0 must be positive");
    ct_dataset_close(ds);
}
END_TEST

/* ---- hostile and unusual HDF5 layouts ---- */

/* links.h5: data/x (6 x 3 float32: r, 10r + c) and data/y (int32: r); soft links alias ->
 * /data/x, grp -> /data, dangling -> /nowhere; deep (rank 10); huge (2 x 2^41, chunked,
 * never written); ext_raw, whose values live in raw.bin beside it. */
static const char *write_links_fixture(void)
{
    static char path[4300];
    snprintf(path, sizeof path, "%s", path_in("links.h5"));
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    float x[18];
    int32_t y[6];
    for (int r = 0; r < 6; r++) {
        y[r] = r;
        for (int c = 0; c < 3; c++)
            x[r * 3 + c] = (float)(10 * r + c);
    }
    hsize_t dx[2] = {6, 3}, dy[1] = {6};
    fx_array(f, "data/x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dx, x);
    fx_array(f, "data/y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dy, y);
    ck_assert(H5Lcreate_soft("/data/x", f, "alias", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Lcreate_soft("/data", f, "grp", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Lcreate_soft("/nowhere", f, "dangling", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    hsize_t d10[10] = {2, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    fx_array(f, "deep", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 10, d10, NULL);
    hsize_t dh[2] = {2, (hsize_t)1 << 41}, ch[2] = {1, 1024};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_chunk(dcpl, 2, ch) >= 0);
    hid_t space = H5Screate_simple(2, dh, NULL);
    fx_put(f, "huge", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, dcpl, NULL);
    H5Sclose(space);
    H5Pclose(dcpl);
    /* The raw file sits beside links.h5; HDF5 looks for it relative to the current
     * directory by default, which is exactly why ctrain must not read it. */
    FILE *raw = fopen(path_in("raw.bin"), "wb");
    ck_assert(raw != NULL);
    ck_assert_int_eq(fwrite(x, sizeof x, 1, raw), 1);
    fclose(raw);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_external(dcpl, "raw.bin", 0, sizeof x) >= 0);
    space = H5Screate_simple(2, dx, NULL);
    fx_put(f, "ext_raw", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, dcpl, NULL);
    H5Sclose(space);
    H5Pclose(dcpl);
    ck_assert(H5Fclose(f) >= 0);
    return path;
}

START_TEST(test_open_links_and_layouts)
{
    const char *links = write_links_fixture();
    ct_error err = {0};
    /* Soft links are fine, also as a path component. */
    ct_dataset *ds = ct_dataset_open(links, "alias", "grp/y", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    float x[18], y[6];
    ck_assert_int_eq(ct_dataset_read(ds, 0, 6, x, y, &err), 0);
    for (int r = 0; r < 6; r++) {
        ck_assert(y[r] == (float)r);
        for (int c = 0; c < 3; c++)
            ck_assert(x[r * 3 + c] == (float)(10 * r + c));
    }
    ck_assert_int_eq(ct_dataset_validate(ds, 6, &err), 0);
    ct_dataset_close(ds);

    char want[8192];
    snprintf(want, sizeof want, "%s: no dataset 'dangling' (datasets in the file: data/x, "
             "data/y, deep, ext_raw, huge)", links);
    expect_open_error(links, "dangling", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want, "%s:/deep has rank 10; at most 9 is supported", links);
    expect_open_error(links, "deep", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want, "%s:/huge is absurdly large", links);
    expect_open_error(links, "huge", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want, "%s:/ext_raw keeps its data in the external file 'raw.bin'; "
             "ctrain reads only data stored inside the HDF5 file", links);
    expect_open_error(links, "ext_raw", NULL, CT_ERR_DATA, want);
}
END_TEST

/* The check behind the last case, on its own: only external storage is refused. */
START_TEST(test_check_storage)
{
    const char *links = write_links_fixture();
    hid_t f = H5Fopen(links, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    ct_error err = {0};
    hid_t d = H5Dopen2(f, "ext_raw", H5P_DEFAULT);
    ck_assert_int_eq(ct_h5_check_storage(d, "L:/ext_raw", &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_DATA);
    ck_assert_str_eq(err.msg, "L:/ext_raw keeps its data in the external file 'raw.bin'; "
                              "ctrain reads only data stored inside the HDF5 file");
    H5Dclose(d);
    const char *fine[] = {"data/x", "alias"};
    for (int i = 0; i < 2; i++) {
        d = H5Dopen2(f, fine[i], H5P_DEFAULT);
        ck_assert_int_eq(ct_h5_check_storage(d, fine[i], &err), 0);
        H5Dclose(d);
    }
    /* Link walks: soft links pass, external ones are named with their target. */
    bool missing = true;
    ck_assert_int_eq(ct_h5_check_links(f, "grp/y", "L", &missing, &err), 0);
    ck_assert(!missing);
    ck_assert_int_eq(ct_h5_check_links(f, "data/none", "L", &missing, &err), 0);
    ck_assert(missing);
    H5Fclose(f);
    f = H5Fopen(main_h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert_int_eq(ct_h5_check_links(f, "extgrp/data", "M", &missing, &err), -1);
    ck_assert_str_eq(err.msg, "M: 'extgrp' is an external link to other.h5:/; ctrain reads "
                              "only data stored inside the file");
    H5Fclose(f);
}
END_TEST

/* rows.h5's data again, chunked in 7-row chunks of `width` of x's 3 columns (3: whole
 * rows; 2: each row split over two chunks, as h5py's automatic chunks split images) with
 * shuffle and gzip filters. */
static const char *write_packed_rows(hsize_t width)
{
    static char path[4300];
    snprintf(path, sizeof path, "%s", path_in(width == 3 ? "packed.h5" : "packed2.h5"));
    float x[ROWS * 3];
    int32_t y[ROWS];
    for (int r = 0; r < ROWS; r++) {
        x[r * 3] = (float)r;
        x[r * 3 + 1] = 2.0f * (float)r;
        x[r * 3 + 2] = 0.5f;
        y[r] = r;
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dx[2] = {ROWS, 3}, dy[1] = {ROWS}, cx[2] = {7, width}, cy[1] = {7};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_chunk(dcpl, 2, cx) >= 0 && H5Pset_shuffle(dcpl) >= 0 &&
              H5Pset_deflate(dcpl, 9) >= 0);
    hid_t space = H5Screate_simple(2, dx, NULL);
    fx_put(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, dcpl, x);
    H5Sclose(space);
    H5Pclose(dcpl);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_chunk(dcpl, 1, cy) >= 0 && H5Pset_deflate(dcpl, 1) >= 0);
    space = H5Screate_simple(1, dy, NULL);
    fx_put(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, space, dcpl, y);
    H5Sclose(space);
    H5Pclose(dcpl);
    ck_assert(H5Fclose(f) >= 0);
    return path;
}

/* Every batch of every epoch is the same, bit for bit, from the packed file as from the
 * contiguous one, in memory and streaming, in order and shuffled. */
START_TEST(test_chunked_gzip_same_as_contiguous)
{
    const char *packed = write_packed_rows(_i ? 2 : 3);
    hid_t f = H5Fopen(packed, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "x", H5P_DEFAULT), dcpl = H5Dget_create_plist(d);
    ck_assert_int_eq(H5Pget_layout(dcpl), H5D_CHUNKED);
    ck_assert_int_eq(H5Pget_nfilters(dcpl), 2);
    H5Pclose(dcpl);
    H5Dclose(d);
    H5Fclose(f);
    const size_t limits[2] = {1 << 20, 200};
    for (int mode = 0; mode < 4; mode++) {
        ct_error err = {0};
        ct_dataset *a = ct_dataset_open(rows_h5, "x", "y", 1.0, &err);
        ct_dataset *b = ct_dataset_open(packed, "x", "y", 1.0, &err);
        ck_assert_msg(a && b, "%s", err.msg);
        bool shuffle = mode & 1;
        ct_loader *la = ct_loader_new(a, NULL, 0, 10, shuffle, 5, limits[mode / 2], &err);
        ct_loader *lb = ct_loader_new(b, NULL, 0, 10, shuffle, 5, limits[mode / 2], &err);
        ck_assert_msg(la && lb, "%s", err.msg);
        for (int epoch = 0; epoch < 2; epoch++) {
            ck_assert_int_eq(ct_loader_begin_epoch(la, epoch, &err), 0);
            ck_assert_int_eq(ct_loader_begin_epoch(lb, epoch, &err), 0);
            float xa[30], ya[10], xb[30], yb[10];
            int64_t na, nb, total = 0;
            do {
                na = ct_loader_next(la, xa, ya, &err);
                nb = ct_loader_next(lb, xb, yb, &err);
                ck_assert_int_eq(na, nb);
                ck_assert(na >= 0);
                ck_assert(memcmp(xa, xb, sizeof(float) * 3 * (size_t)na) == 0);
                ck_assert(memcmp(ya, yb, sizeof(float) * (size_t)na) == 0);
                for (int64_t i = 0; i < na; i++)
                    ck_assert(xb[i * 3 + 1] == 2 * xb[i * 3] && yb[i] == xb[i * 3]);
                total += na;
            } while (na > 0);
            ck_assert_int_eq(total, ROWS);
        }
        ct_loader_free(la);
        ct_loader_free(lb);
        ct_dataset_close(a);
        ct_dataset_close(b);
    }
}
END_TEST

/* ---- prediction output ---- */

START_TEST(test_write_matrix)
{
    const float m[6] = {1, -2.5f, 1.0f / 3, 1e-20f, 123456789, 0};
    ct_error err = {0};
    const char *h5 = path_in("pred.h5");
    ck_assert_int_eq(ct_write_matrix(h5, m, 3, 2, &err), 0);
    ct_dataset *ds = ct_dataset_open(h5, "predictions", NULL, 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_rows(ds), 3);
    ck_assert_int_eq(ct_dataset_x_shape(ds).ndim, 1);
    ck_assert_int_eq(ct_dataset_x_shape(ds).dim[0], 2);
    float back[6];
    ck_assert_int_eq(ct_dataset_read(ds, 0, 3, back, NULL, &err), 0);
    ck_assert(memcmp(back, m, sizeof m) == 0);
    ct_dataset_close(ds);
    /* Writing again truncates. */
    ck_assert_int_eq(ct_write_matrix(h5, m, 1, 2, &err), 0);
    ds = ct_dataset_open(h5, "predictions", NULL, 1.0, &err);
    ck_assert_int_eq(ct_dataset_rows(ds), 1);
    ct_dataset_close(ds);

    const char *csv = path_in("pred.CSV");
    ck_assert_int_eq(ct_write_matrix(csv, m, 2, 3, &err), 0);
    FILE *f = fopen(csv, "r");
    char text[256] = "";
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    ck_assert_str_eq(text, "1,-2.5,0.333333343\n9.99999968e-21,123456792,0\n");

    char want[4400];
    const char *txt = path_in("pred.txt");
    ck_assert_int_eq(ct_write_matrix(txt, m, 2, 3, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_USAGE);
    snprintf(want, sizeof want,
             "%s: unsupported extension '.txt'; supported ones are .h5, .hdf5 and .csv", txt);
    ck_assert_str_eq(err.msg, want);
    ck_assert_int_eq(ct_write_matrix("out.d/pred", m, 2, 3, &err), -1);
    ck_assert_str_eq(err.msg,
                     "out.d/pred has no file extension; supported ones are .h5, .hdf5 and .csv");
    const char *nocsv = path_in("nodir/p.csv");
    ck_assert_int_eq(ct_write_matrix(nocsv, m, 2, 3, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_IO);
    snprintf(want, sizeof want, "cannot write %s: cannot create a temporary file beside it: "
             "No such file or directory", nocsv);
    ck_assert_str_eq(err.msg, want);
    const char *nodir = path_in("nodir/p.hdf5");
    ck_assert_int_eq(ct_write_matrix(nodir, m, 2, 3, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_IO);
    snprintf(want, sizeof want, "cannot write %s: cannot create a temporary file beside it: "
             "No such file or directory", nodir);
    ck_assert_str_eq(err.msg, want);
}
END_TEST

/* ---- IDX import ---- */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX file: magic (type, ndims), dims, then `nbytes` bytes base, base+1, ... */
static const char *write_idx(const char *name, int type, int ndims, const uint32_t *dims,
                             size_t nbytes, int base, bool gz)
{
    unsigned char buf[4096];
    buf[0] = buf[1] = 0;
    buf[2] = (unsigned char)type;
    buf[3] = (unsigned char)ndims;
    for (int i = 0; i < ndims; i++)
        put_be32(buf + 4 + 4 * i, dims[i]);
    size_t at = 4 + 4 * (size_t)ndims;
    for (size_t i = 0; i < nbytes; i++)
        buf[at + i] = (unsigned char)(base + (int)i);
    const char *path = path_in(name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert(f != NULL);
        ck_assert_int_eq(gzwrite(f, buf, (unsigned)(at + nbytes)), (int)(at + nbytes));
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert(f != NULL);
        fwrite(buf, 1, at + nbytes, f);
        fclose(f);
    }
    return path;
}

static void check_idx_output(const char *out, const char *group, int base, int lbase)
{
    char x[256], y[256];
    snprintf(x, sizeof x, "%s/images", group);
    snprintf(y, sizeof y, "%s/labels", group);
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(out, x, y, 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_rows(ds), 3);
    ct_shape s = ct_dataset_x_shape(ds);
    ck_assert_int_eq(s.ndim, 3);
    ck_assert(s.dim[0] == 2 && s.dim[1] == 2 && s.dim[2] == 1);
    ck_assert_int_eq(ct_dataset_y_shape(ds).ndim, 0);
    ck_assert(ct_dataset_y_is_integer(ds));
    float v[12], l[3];
    ck_assert_int_eq(ct_dataset_read(ds, 0, 3, v, l, &err), 0);
    for (int i = 0; i < 12; i++)
        ck_assert(v[i] == (float)(base + i));
    for (int i = 0; i < 3; i++)
        ck_assert(l[i] == (float)(lbase + i));
    ct_dataset_close(ds);
}

START_TEST(test_import_idx)
{
    uint32_t im[3] = {3, 2, 2}, lb[1] = {3};
    char out[4200], images[4200], labels[4200];
    snprintf(out, sizeof out, "%s", path_in("mnist.h5"));
    snprintf(images, sizeof images, "%s", write_idx("img.idx", 0x08, 3, im, 12, 10, false));
    snprintf(labels, sizeof labels, "%s", write_idx("lab.idx", 0x08, 1, lb, 3, 7, false));
    ct_error err = {0};
    ck_assert_msg(ct_data_import_idx(images, labels, out, "train", &err) == 0, "%s", err.msg);
    check_idx_output(out, "train", 10, 7);

    /* gzip, into a second group of the same file, then replacing the first one */
    snprintf(images, sizeof images, "%s", write_idx("img.idx.gz", 0x08, 3, im, 12, 100, true));
    snprintf(labels, sizeof labels, "%s", write_idx("lab.idx.gz", 0x08, 1, lb, 3, 1, true));
    ck_assert_msg(ct_data_import_idx(images, labels, out, "test/a", &err) == 0, "%s", err.msg);
    check_idx_output(out, "test/a", 100, 1);
    ck_assert_msg(ct_data_import_idx(images, labels, out, "train", &err) == 0, "%s", err.msg);
    check_idx_output(out, "train", 100, 1);

    /* rank 2 images stay as they are, labels optional */
    uint32_t flat[2] = {3, 4};
    snprintf(images, sizeof images, "%s", write_idx("flat.idx", 0x08, 2, flat, 12, 0, false));
    ck_assert_msg(ct_data_import_idx(images, NULL, out, "flat", &err) == 0, "%s", err.msg);
    ct_dataset *ds = ct_dataset_open(out, "flat/images", NULL, 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_x_shape(ds).ndim, 1);
    ck_assert_int_eq(ct_dataset_x_shape(ds).dim[0], 4);
    ct_dataset_close(ds);
}
END_TEST

static void expect_idx_error(const char *images, const char *labels, ct_error_code code,
                             const char *expected)
{
    ct_error err = {0};
    ck_assert_int_eq(ct_data_import_idx(images, labels, path_in("bad.h5"), "g", &err), -1);
    ck_assert_int_eq(err.code, code);
    ck_assert_str_eq(err.msg, expected);
}

START_TEST(test_import_idx_errors)
{
    uint32_t im[3] = {3, 2, 2}, lb[1] = {4}, huge[3] = {0xFFFFFF, 0xFFFF, 0xFFFF};
    char want[9000], images[4200], p[4200];
    snprintf(images, sizeof images, "%s", write_idx("ok.idx", 0x08, 3, im, 12, 0, false));

    snprintf(p, sizeof p, "%s", write_idx("lab4.idx", 0x08, 1, lb, 4, 0, true));
    snprintf(want, sizeof want, "%s has 3 items but %s has 4", images, p);
    expect_idx_error(images, p, CT_ERR_DATA, want);

    snprintf(p, sizeof p, "%s", write_idx("short.idx", 0x08, 3, im, 5, 0, false));
    snprintf(want, sizeof want,
             "%s: IDX header claims 12 bytes of data but the file holds only 5", p);
    expect_idx_error(p, NULL, CT_ERR_DATA, want);

    snprintf(p, sizeof p, "%s", write_idx("huge.idx.gz", 0x08, 3, huge, 100, 0, true));
    snprintf(want, sizeof want,
             "%s: IDX header claims 72055390736613375 bytes of data but the file holds only "
             "100", p);
    expect_idx_error(p, NULL, CT_ERR_DATA, want);

    snprintf(p, sizeof p, "%s", write_idx("long.idx", 0x08, 3, im, 13, 0, false));
    snprintf(want, sizeof want, "%s: the file holds more data than its IDX header describes", p);
    expect_idx_error(p, NULL, CT_ERR_DATA, want);

    snprintf(p, sizeof p, "%s", write_idx("float.idx", 0x0D, 3, im, 48, 0, false));
    snprintf(want, sizeof want,
             "%s: IDX data type 0x0d (float) is not supported; only unsigned bytes (0x08) are", p);
    expect_idx_error(p, NULL, CT_ERR_DATA, want);

    snprintf(p, sizeof p, "%s", tu_write(dir, "magic.idx", "PK\003\004 not idx"));
    snprintf(want, sizeof want, "%s is not an IDX file (it starts with 0x504b, not 0x0000)", p);
    expect_idx_error(p, NULL, CT_ERR_DATA, want);

    snprintf(p, sizeof p, "%s", tu_write(dir, "tiny.idx", "\0"));
    snprintf(want, sizeof want, "%s is not an IDX file (too short)", p);
    expect_idx_error(p, NULL, CT_ERR_DATA, want);

    snprintf(p, sizeof p, "%s", path_in("absent.idx"));
    snprintf(want, sizeof want, "cannot open %s: No such file or directory", p);
    expect_idx_error(p, NULL, CT_ERR_IO, want);

    snprintf(p, sizeof p, "%s", write_idx("lab2d.idx", 0x08, 2, (uint32_t[]){3, 1}, 3, 0, false));
    snprintf(want, sizeof want, "%s: labels must have 1 dimension, found 2", p);
    expect_idx_error(images, p, CT_ERR_DATA, want);

    /* An existing output that is not HDF5 is refused, not overwritten. */
    ct_error err = {0};
    const char *text = tu_write(dir, "notes.h5", "keep me\n");
    char textp[4200];
    snprintf(textp, sizeof textp, "%s", text);
    ck_assert_int_eq(ct_data_import_idx(images, NULL, textp, "g", &err), -1);
    snprintf(want, sizeof want, "%s is not an HDF5 file or is damaged", textp);
    ck_assert_str_eq(err.msg, want);
    char nodir[4300];
    snprintf(nodir, sizeof nodir, "%s/absent/out.h5", dir);
    ck_assert_int_eq(ct_data_import_idx(images, NULL, nodir, "g", &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_IO);
    snprintf(want, sizeof want, "cannot write %s: cannot create a temporary file beside it: "
             "No such file or directory", nodir);
    ck_assert_str_eq(err.msg, want);
}
END_TEST

/* ---- CSV import ---- */

START_TEST(test_import_csv)
{
    const char *csv = tu_write(dir, "iris.csv",
                               "a,b,label\n"
                               "1.5, 2,0\r\n"
                               "\n"
                               "-3,4e1,2\n"
                               "5,6,1\n");
    char path[4200];
    snprintf(path, sizeof path, "%s", csv);
    const char *out = path_in("csv.h5");
    ct_error err = {0};
    ck_assert_msg(ct_data_import_csv(path, out, "iris", -1, true, CT_CSV_NUMBERS, &err) == 0, "%s", err.msg);
    ct_dataset *ds = ct_dataset_open(out, "iris/x", "iris/y", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_rows(ds), 3);
    ck_assert_int_eq(ct_dataset_x_shape(ds).dim[0], 2);
    ck_assert(ct_dataset_y_is_integer(ds));
    float x[6], y[3];
    ck_assert_int_eq(ct_dataset_read(ds, 0, 3, x, y, &err), 0);
    const float wx[6] = {1.5f, 2, -3, 40, 5, 6}, wy[3] = {0, 2, 1};
    ck_assert(memcmp(x, wx, sizeof x) == 0 && memcmp(y, wy, sizeof y) == 0);
    ct_dataset_close(ds);

    /* Label first, float labels, no header; replaces the group's datasets. */
    csv = tu_write(dir, "reg.csv", "0.5,1,2\n1,3,4\n");
    snprintf(path, sizeof path, "%s", csv);
    ck_assert_msg(ct_data_import_csv(path, out, "iris", 0, false, CT_CSV_NUMBERS, &err) == 0, "%s", err.msg);
    ds = ct_dataset_open(out, "iris/x", "iris/y", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert(!ct_dataset_y_is_integer(ds));
    ck_assert_int_eq(ct_dataset_rows(ds), 2);
    ck_assert_int_eq(ct_dataset_read(ds, 0, 2, x, y, &err), 0);
    ck_assert(x[0] == 1 && x[1] == 2 && x[2] == 3 && x[3] == 4 && y[0] == 0.5f && y[1] == 1);
    ct_dataset_close(ds);
}
END_TEST


/* The strings of dataset name in file path. */
static int read_names(const char *path, const char *name, char out[][16], int max)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
        H5Fclose(f);
        return -1;
    }
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), space = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, NULL);
    ck_assert_int_le((int)n, max);
    char *s[16];
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    ck_assert(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) >= 0);
    for (hsize_t i = 0; i < n; i++) {
        snprintf(out[i], 16, "%s", s[i]);
        free(s[i]);
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    return (int)n;
}

/* Categorical columns on request: a column with any text is coded by its sorted
 * categories (numbers in it by value), as codes or one-hot; a text label column gives
 * class ids with their names; a later plain import drops the names it no longer has. */
START_TEST(test_import_csv_categorical)
{
    const char *csv = tu_write(dir, "pets.csv",
                               "size,colour,w,label\n"
                               "1,red,0.5,cat\n"
                               "2,blue,1.5,dog\n"
                               "XL,red ,2.5,cat\n"
                               "2.0,green,3.5,bird\n");
    char path[4200], names[16][16];
    snprintf(path, sizeof path, "%s", csv);
    const char *out = path_in("pets.h5");
    ct_error err = {0};
    ck_assert_int_eq(ct_data_import_csv(path, out, "g", -1, true, CT_CSV_NUMBERS, &err), -1);
    ck_assert_msg(strstr(err.msg, "pets.csv:3:1: 'XL'") || strstr(err.msg, ":2:3: 'red'"), "%s",
                  err.msg);
    ck_assert_msg(ct_data_import_csv(path, out, "g", -1, true, CT_CSV_ONEHOT, &err) == 0, "%s",
                  err.msg);
    ct_dataset *ds = ct_dataset_open(out, "g/x", "g/y", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_x_shape(ds).dim[0], 7); /* 3 sizes, 3 colours, w */
    ck_assert(ct_dataset_y_is_integer(ds));
    float x[28], y[4];
    ck_assert_int_eq(ct_dataset_read(ds, 0, 4, x, y, &err), 0);
    /* sizes sorted: "1" "2" "XL" (2.0 is the value 2); colours: blue green red */
    const float wx[28] = {1, 0, 0, 0, 0, 1, 0.5f, 0, 1, 0, 1, 0, 0, 1.5f,
                          0, 0, 1, 0, 0, 1, 2.5f, 0, 1, 0, 0, 1, 0, 3.5f};
    const float wy[4] = {1, 2, 1, 0}; /* bird cat dog */
    for (int i = 0; i < 28; i++)
        ck_assert_msg(x[i] == wx[i], "x[%d] = %g, expected %g", i, x[i], wx[i]);
    ck_assert(memcmp(y, wy, sizeof y) == 0);
    ct_dataset_close(ds);
    ck_assert_int_eq(read_names(out, "g/classes", names, 16), 3);
    ck_assert(!strcmp(names[0], "bird") && !strcmp(names[1], "cat") && !strcmp(names[2], "dog"));
    ck_assert_int_eq(read_names(out, "g/categories_0", names, 16), 3);
    ck_assert(!strcmp(names[0], "1") && !strcmp(names[1], "2") && !strcmp(names[2], "XL"));
    ck_assert_int_eq(read_names(out, "g/categories_1", names, 16), 3);
    ck_assert(!strcmp(names[0], "blue") && !strcmp(names[2], "red"));

    /* Codes: one column per categorical feature. */
    ck_assert_msg(ct_data_import_csv(path, out, "g", -1, true, CT_CSV_INTEGER, &err) == 0, "%s",
                  err.msg);
    ds = ct_dataset_open(out, "g/x", "g/y", 1.0, &err);
    ck_assert_int_eq(ct_dataset_x_shape(ds).dim[0], 3);
    ck_assert_int_eq(ct_dataset_read(ds, 0, 4, x, y, &err), 0);
    const float wc[12] = {0, 2, 0.5f, 1, 0, 1.5f, 2, 2, 2.5f, 1, 1, 3.5f};
    for (int i = 0; i < 12; i++)
        ck_assert_msg(x[i] == wc[i], "x[%d] = %g, expected %g", i, x[i], wc[i]);
    ct_dataset_close(ds);

    /* A plain import into the same group leaves no stale names behind. */
    csv = tu_write(dir, "plain.csv", "1,2,0\n3,4,1\n");
    snprintf(path, sizeof path, "%s", csv);
    ck_assert_msg(ct_data_import_csv(path, out, "g", -1, false, CT_CSV_INTEGER, &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(read_names(out, "g/classes", names, 16), -1);
    ck_assert_int_eq(read_names(out, "g/categories_0", names, 16), -1);
}
END_TEST

/* ---- image folders ---- */

/* A PNG of h x w x c (1 or 3) bytes at dir/rel, through libpng's simplified writer. */
static void write_png(const char *rel, int h, int w, int c, const uint8_t *px)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    p.width = (png_uint_32)w;
    p.height = (png_uint_32)h;
    p.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    ck_assert(png_image_write_to_file(&p, path_in(rel), 0, px, 0, NULL));
}

/* A grey JPEG of one value at dir/rel (quality 100: a flat image decodes exactly). */
static void write_jpeg(const char *rel, int h, int w, uint8_t v)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *f = fopen(path_in(rel), "wb");
    ck_assert_ptr_nonnull(f);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    uint8_t row[64];
    memset(row, v, sizeof row);
    JSAMPROW r = row;
    while (c.next_scanline < c.image_height)
        jpeg_write_scanlines(&c, &r, 1);
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static void read_u8(const char *file, const char *name, uint8_t *out, size_t n)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(d);
    ck_assert_int_eq((int)H5Sget_simple_extent_npoints(sp), (int)n);
    ck_assert(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
}

/* Classes in sorted order, files in sorted order within them (--no-shuffle), grey images
 * made rgb, other files skipped; JPEGs read; bilinear resizing with TensorFlow's
 * half-pixel centres. */
START_TEST(test_import_images)
{
    mkdir(path_in("imgs"), 0755);
    mkdir(path_in("imgs/zebra"), 0755);
    mkdir(path_in("imgs/ant"), 0755);
    const uint8_t rgb[6] = {1, 2, 3, 4, 5, 6}, grey[2] = {7, 8};
    write_png("imgs/zebra/b.png", 1, 2, 3, rgb);
    write_png("imgs/zebra/a.png", 1, 2, 1, grey);
    write_jpeg("imgs/ant/c.JPG", 1, 2, 90);
    tu_write(path_in("imgs/ant"), "README", "not an image");
    ct_image_options o;
    ct_image_options_default(&o);
    o.shuffle = false;
    ct_image_report r;
    ct_error err = {0};
    char out[4200];
    snprintf(out, sizeof out, "%s", path_in("imgs.h5")); /* path_in's buffers are reused */
    ck_assert_msg(ct_data_import_images(path_in("imgs"), out, &o, &r, &err) == 3, "%s", err.msg);
    ck_assert(r.classes == 2 && r.skipped == 1 && r.height == 1 && r.width == 2 &&
              r.channels == 3);
    uint8_t px[18], labels[3];
    read_u8(out, "train/images", px, 18);
    const uint8_t want[18] = {90, 90, 90, 90, 90, 90, 7, 7, 7, 8, 8, 8, 1, 2, 3, 4, 5, 6};
    for (int i = 0; i < 18; i++)
        ck_assert_msg(px[i] == want[i], "pixel %d: %d, expected %d", i, px[i], want[i]);
    read_u8(out, "train/labels", labels, 3);
    ck_assert(labels[0] == 0 && labels[1] == 1 && labels[2] == 1);

    /* 2x2 grey to 4x4: tf.image.resize(..., "bilinear") gives these (rounded). */
    mkdir(path_in("small"), 0755);
    mkdir(path_in("small/one"), 0755);
    const uint8_t sq[4] = {0, 100, 200, 255};
    write_png("small/one/s.png", 2, 2, 1, sq);
    o.height = o.width = 4;
    o.channels = 1;
    ck_assert_msg(ct_data_import_images(path_in("small"), out, &o, &r, &err) == 1, "%s", err.msg);
    uint8_t big[16];
    read_u8(out, "train/images", big, 16);
    const uint8_t tf[16] = {0, 25, 75, 100, 50, 72, 117, 139, 150, 167, 200, 216, 200, 214, 241, 255};
    ck_assert(memcmp(big, tf, 16) == 0);
}
END_TEST

static void expect_images_error(const char *root, const ct_image_options *o, const char *want)
{
    ct_error err = {0};
    char out[4200];
    snprintf(out, sizeof out, "%s", path_in("bad_imgs.h5"));
    ck_assert_int_eq(ct_data_import_images(path_in(root), out, o, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, want), "'%s' not in: %s", want, err.msg);
}

/* Bad trees: no class folders, an empty class, sizes that differ without --size, a GIF,
 * a damaged PNG, a truncated JPEG; the same seed gives the same order. */
START_TEST(test_import_images_errors)
{
    ct_image_options o;
    ct_image_options_default(&o);
    mkdir(path_in("e0"), 0755);
    expect_images_error("e0", &o, "has no sub-folders: import-images reads one sub-folder per "
                                  "class");
    mkdir(path_in("e0/empty"), 0755);
    expect_images_error("e0", &o, "e0/empty holds no PNG or JPEG images");
    mkdir(path_in("e1"), 0755);
    mkdir(path_in("e1/k"), 0755);
    const uint8_t px[12] = {0};
    write_png("e1/k/a.png", 1, 2, 1, px);
    write_png("e1/k/b.png", 2, 2, 1, px);
    o.shuffle = false;
    expect_images_error("e1", &o, "e1/k/b.png is 2x2 pixels (height x width), but the first "
                                  "image is 1x2; give --size H W");
    tu_write(path_in("e1/k"), "c.gif", "GIF89a");
    expect_images_error("e1", &o, "e1/k/c.gif: BMP and GIF images are not read");
    mkdir(path_in("e2"), 0755);
    mkdir(path_in("e2/k"), 0755);
    tu_write(path_in("e2/k"), "a.png", "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR");
    expect_images_error("e2", &o, "e2/k/a.png: not a readable PNG image");
    mkdir(path_in("e3"), 0755);
    mkdir(path_in("e3/k"), 0755);
    tu_write(path_in("e3/k"), "a.jpg", "\xff\xd8\xff\xe0");
    expect_images_error("e3", &o, "e3/k/a.jpg: not a readable JPEG image");

    /* The same seed, the same rows. */
    mkdir(path_in("e4"), 0755);
    for (int c = 0; c < 2; c++) {
        char name[64];
        snprintf(name, sizeof name, "e4/c%d", c);
        mkdir(path_in(name), 0755);
        for (int i = 0; i < 8; i++) {
            uint8_t v = (uint8_t)(16 * c + i);
            snprintf(name, sizeof name, "e4/c%d/%d.png", c, i);
            write_png(name, 1, 1, 1, &v);
        }
    }
    ct_image_options_default(&o);
    o.channels = 1;
    uint8_t a[16], b[16];
    ct_error err = {0};
    char s1[4200], s2[4200];
    snprintf(s1, sizeof s1, "%s", path_in("s1.h5"));
    snprintf(s2, sizeof s2, "%s", path_in("s2.h5"));
    ck_assert_int_eq(ct_data_import_images(path_in("e4"), s1, &o, NULL, &err), 16);
    ck_assert_int_eq(ct_data_import_images(path_in("e4"), s2, &o, NULL, &err), 16);
    read_u8(s1, "train/images", a, 16);
    read_u8(s2, "train/images", b, 16);
    ck_assert(memcmp(a, b, 16) == 0);
    o.shuffle = false;
    ck_assert_int_eq(ct_data_import_images(path_in("e4"), s2, &o, NULL, &err), 16);
    read_u8(s2, "train/images", b, 16);
    ck_assert_msg(memcmp(a, b, 16) != 0, "the rows were not shuffled");
}
END_TEST

static void expect_csv_error(const char *name, const char *text, int label, bool header,
                             ct_error_code code, const char *fmt)
{
    char path[4200], want[8400];
    snprintf(path, sizeof path, "%s", tu_write(dir, name, text));
    snprintf(want, sizeof want, fmt, path);
    ct_error err = {0};
    ck_assert_int_eq(ct_data_import_csv(path, path_in("csvbad.h5"), "g", label, header, CT_CSV_NUMBERS, &err), -1);
    ck_assert_int_eq(err.code, code);
    ck_assert_str_eq(err.msg, want);
}

START_TEST(test_import_csv_errors)
{
    expect_csv_error("ragged.csv", "h1,h2,h3\n1,2,3\n4,5\n", -1, true, CT_ERR_DATA,
                     "%s:3: expected 3 columns, found 2");
    expect_csv_error("long.csv", "1,2,3\n4,5,6,7\n", -1, false, CT_ERR_DATA,
                     "%s:2: expected 3 columns, found 4");
    expect_csv_error("word.csv", "1,2,3\n4, abc,6\n", -1, false, CT_ERR_DATA,
                     "%s:2:4: 'abc' is not a number (for a column of categories, give "
                     "--categorical integer or onehot)");
    expect_csv_error("hdr.csv", "x,y\n1,2\n", -1, false, CT_ERR_DATA,
                     "%s:1:1: 'x' is not a number (if the first line names the columns, give "
                     "--header to skip it)");
    expect_csv_error("cell.csv", "1,,3\n", -1, false, CT_ERR_DATA,
                     "%s:1:3: empty cell; expected a number");
    expect_csv_error("nan.csv", "1,nan\n", -1, false, CT_ERR_DATA,
                     "%s:1:3: 'nan' is not a number");
    expect_csv_error("one.csv", "1\n2\n", -1, false, CT_ERR_DATA,
                     "%s has 1 column; it needs at least 2 (features and a label)");
    expect_csv_error("none.csv", "a,b\n", -1, true, CT_ERR_DATA, "%s holds no data rows");
    expect_csv_error("col.csv", "1,2\n", 2, false, CT_ERR_USAGE,
                     "label column 2 is out of range: %s has 2 columns");
    expect_csv_error("neg.csv", "1,2\n", -3, false, CT_ERR_USAGE,
                     "label column -3 is out of range: %s has 2 columns");
}
END_TEST

/* ---- weights ---- */

static const ct_layer_kind fake_dense = {.name = "dense", .class_name = "Dense"};
static const ct_layer_kind fake_flatten = {.name = "flatten", .class_name = "Flatten"};
static const ct_layer_kind fake_norm = {.name = "batch_normalization",
                                        .class_name = "BatchNormalization"};

typedef struct fake_model {
    ct_model m;
    ct_layer layers[3];
    float values[32];
} fake_model;

static void add_param(ct_layer *l, const char *name, int ndim, int64_t d0, int64_t d1,
                      float **at)
{
    ct_param *p = &l->params[l->nparams++];
    snprintf(p->name, sizeof p->name, "%s", name);
    int64_t dims[2] = {d0, d1};
    p->shape = ct_shape_make(ndim, dims);
    p->value = *at;
    *at += ct_shape_size(&p->shape);
}

/* dense (2 -> 3: kernel (2, 3), bias (3,)), flatten, dense_1 or batch_normalization. */
static void fake_build(fake_model *f, int64_t out2, bool norm, float base)
{
    memset(f, 0, sizeof *f);
    snprintf(f->m.name, sizeof f->m.name, "sequential");
    int64_t in[1] = {2};
    f->m.input_shape = ct_shape_make(1, in);
    f->m.ninputs = 1;
    f->m.input_shapes[0] = f->m.input_shape;
    snprintf(f->m.input_names[0], sizeof f->m.input_names[0], "input_layer");
    f->m.layers = f->layers;
    f->m.nlayers = 3;
    float *at = f->values;
    ct_layer *l = f->layers;
    l[0].kind = &fake_dense;
    snprintf(l[0].name, sizeof l[0].name, "dense");
    add_param(&l[0], "kernel", 2, 2, 3, &at);
    add_param(&l[0], "bias", 1, 3, 0, &at);
    l[1].kind = &fake_flatten;
    snprintf(l[1].name, sizeof l[1].name, "flatten");
    if (norm) {
        l[2].kind = &fake_norm;
        snprintf(l[2].name, sizeof l[2].name, "batch_normalization");
        add_param(&l[2], "gamma", 1, 3, 0, &at);
    } else {
        l[2].kind = &fake_dense;
        snprintf(l[2].name, sizeof l[2].name, "dense_1");
        add_param(&l[2], "kernel", 2, 3, out2, &at);
        add_param(&l[2], "bias", 1, out2, 0, &at);
    }
    for (int i = 0; i < at - f->values; i++)
        f->values[i] = base + (float)i;
}

/* Reads a string attribute (fixed or variable length) as h5py would. */
static int read_str_attr(hid_t loc, const char *obj, const char *name, char out[][128], int max)
{
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(a >= 0, "attribute %s of %s", name, obj);
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    ck_assert_int_eq(H5Tget_class(t), H5T_STRING);
    ck_assert_int_eq(H5Tis_variable_str(t), 0);
    int n = (int)H5Sget_simple_extent_npoints(s);
    ck_assert(n <= max);
    size_t w = H5Tget_size(t);
    char *buf = calloc((size_t)(n ? n : 1), w);
    if (n)
        ck_assert(H5Aread(a, t, buf) >= 0);
    for (int i = 0; i < n; i++) {
        ck_assert(w < 128);
        memcpy(out[i], buf + (size_t)i * w, w);
        out[i][w] = '\0';
    }
    free(buf);
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    return n;
}

static char *read_scalar_str(hid_t loc, const char *name)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    ck_assert(a >= 0);
    hid_t t = H5Aget_type(a);
    size_t w = H5Tget_size(t);
    char *s = calloc(1, w + 1);
    ck_assert(H5Aread(a, t, s) >= 0);
    ck_assert_int_eq(strlen(s) + 1, w);   /* exact size, NUL-terminated */
    H5Tclose(t);
    H5Aclose(a);
    return s;
}

static void check_dataset(hid_t f, const char *path, int ndim, hsize_t d0, hsize_t d1,
                          const float *expect)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "no dataset %s", path);
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    ck_assert_int_eq(H5Sget_simple_extent_ndims(s), ndim);
    hsize_t dims[2];
    H5Sget_simple_extent_dims(s, dims, NULL);
    ck_assert(dims[0] == d0 && (ndim == 1 || dims[1] == d1));
    ck_assert(H5Tequal(t, H5T_IEEE_F32LE) > 0);
    float v[16];
    ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    ck_assert(memcmp(v, expect, sizeof(float) * d0 * (ndim == 1 ? 1 : d1)) == 0);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
}

START_TEST(test_weights_layout)
{
    fake_model fm;
    fake_build(&fm, 2, false, 1);
    const char *w = path_in("w.h5");
    ct_error err = {0};
    ck_assert_msg(ct_weights_save(&fm.m, w, NULL, "{\"loss\": \"mse\"}", &err) == 0, "%s",
                  err.msg);
    hid_t f = H5Fopen(w, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    char *kv = read_scalar_str(f, "keras_version"), *be = read_scalar_str(f, "backend");
    char version[128];
    snprintf(version, sizeof version, "ctrain-%s", ct_version());
    ck_assert_str_eq(kv, version);
    ck_assert_str_eq(be, "ctrain");
    char *tc = read_scalar_str(f, "training_config");
    ck_assert_str_eq(tc, "{\"loss\": \"mse\"}");
    char *mc = read_scalar_str(f, "model_config");
    cJSON *j = cJSON_Parse(mc);
    ck_assert(j != NULL);
    cJSON *layers = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "config"), "layers");
    ck_assert_int_eq(cJSON_GetArraySize(layers), 4);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(layers, 3), "class_name")->valuestring,
                     "Dense");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(layers, 3),
                                                             "config"), "name")->valuestring,
                     "dense_1");
    cJSON_Delete(j);
    free(kv);
    free(be);
    free(tc);
    free(mc);

    char names[8][128];
    ck_assert_int_eq(read_str_attr(f, "model_weights", "layer_names", names, 8), 3);
    ck_assert_str_eq(names[0], "dense");
    ck_assert_str_eq(names[1], "flatten");
    ck_assert_str_eq(names[2], "dense_1");
    ck_assert_int_eq(read_str_attr(f, "model_weights/dense", "weight_names", names, 8), 2);
    ck_assert_str_eq(names[0], "dense/kernel:0");
    ck_assert_str_eq(names[1], "dense/bias:0");
    ck_assert_int_eq(read_str_attr(f, "model_weights/flatten", "weight_names", names, 8), 0);
    ck_assert_int_eq(read_str_attr(f, "model_weights/dense_1", "weight_names", names, 8), 2);
    ck_assert_str_eq(names[0], "dense_1/kernel:0");
    ck_assert_int_eq(read_str_attr(f, "model_weights", "backend", names, 8), 1);
    ck_assert_str_eq(names[0], "ctrain");
    check_dataset(f, "model_weights/dense/dense/kernel:0", 2, 2, 3, fm.values);
    check_dataset(f, "model_weights/dense/dense/bias:0", 1, 3, 0, fm.values + 6);
    check_dataset(f, "model_weights/dense_1/dense_1/kernel:0", 2, 3, 2, fm.values + 9);
    check_dataset(f, "model_weights/dense_1/dense_1/bias:0", 1, 2, 0, fm.values + 15);
    H5Fclose(f);

    struct stat st;
    ck_assert(stat(w, &st) == 0);
    mode_t mask = umask(0);
    umask(mask);
    ck_assert_int_eq(st.st_mode & 0777, 0666 & ~mask);
}
END_TEST

START_TEST(test_weights_round_trip)
{
    fake_model a, b;
    fake_build(&a, 2, false, 0.25f);
    fake_build(&b, 2, false, -7);
    const char *w = path_in("rt.h5");
    ct_error err = {0};
    ck_assert_msg(ct_weights_save(&a.m, w, "{\"class_name\": \"Sequential\"}", NULL, &err) == 0,
                  "%s", err.msg);
    ck_assert_msg(ct_weights_load(&b.m, w, &err) == 0, "%s", err.msg);
    ck_assert(memcmp(a.values, b.values, sizeof a.values) == 0);
    /* Overwriting an existing file works and leaves no temporary behind. */
    a.values[0] = 99;
    ck_assert_int_eq(ct_weights_save(&a.m, w, NULL, NULL, &err), 0);
    ck_assert_int_eq(ct_weights_load(&b.m, w, &err), 0);
    ck_assert(b.values[0] == 99);

    /* A model_config over 64 KiB still fits. */
    size_t big = 100000;
    char *cfg = malloc(big + 1);
    memset(cfg, 'a', big);
    cfg[0] = '"';
    cfg[big - 1] = '"';
    cfg[big] = '\0';
    ck_assert_msg(ct_weights_save(&a.m, w, cfg, NULL, &err) == 0, "%s", err.msg);
    free(cfg);
    ck_assert_int_eq(ct_weights_load(&b.m, w, &err), 0);
}
END_TEST

START_TEST(test_weights_load_errors)
{
    fake_model a, b;
    fake_build(&a, 2, false, 1);
    const char *w = path_in("e.h5");
    char wp[4200], want[8600];
    snprintf(wp, sizeof wp, "%s", w);
    ct_error err = {0};
    ck_assert_int_eq(ct_weights_save(&a.m, wp, NULL, NULL, &err), 0);

    fake_build(&b, 4, false, 0);
    ck_assert_int_eq(ct_weights_load(&b.m, wp, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_DATA);
    snprintf(want, sizeof want,
             "layer 'dense_1' (Dense): weight 'kernel' in %s has shape (3, 2) but the model "
             "expects (3, 4)", wp);
    ck_assert_str_eq(err.msg, want);
    for (int i = 0; i < 6 + 3 + 12 + 4; i++)
        ck_assert_msg(b.values[i] == (float)i, "a failed load changed the model");

    fake_build(&b, 2, true, 0);
    ck_assert_int_eq(ct_weights_load(&b.m, wp, &err), -1);
    snprintf(want, sizeof want,
             "layer 'batch_normalization' (BatchNormalization): %s holds 2 weights for it "
             "(layer 'dense_1') but the model expects 1", wp);
    ck_assert_str_eq(err.msg, want);

    b.m.nlayers = 2;   /* dense and flatten only */
    ck_assert_int_eq(ct_weights_load(&b.m, wp, &err), -1);
    snprintf(want, sizeof want, "weights file %s has 2 layers with weights but the model has 1",
             wp);
    ck_assert_str_eq(err.msg, want);

    ck_assert_int_eq(ct_weights_load(&a.m, main_h5, &err), -1);
    snprintf(want, sizeof want,
             "%s holds no Keras weights (no /model_weights group with a layer_names attribute)",
             main_h5);
    ck_assert_str_eq(err.msg, want);

    const char *text = path_in("text.h5");
    ck_assert_int_eq(ct_weights_load(&a.m, text, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_DATA);
    snprintf(want, sizeof want, "%s is not an HDF5 file or is damaged", text);
    ck_assert_str_eq(err.msg, want);
    const char *gone = path_in("gone.h5");
    ck_assert_int_eq(ct_weights_load(&a.m, gone, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_IO);
    snprintf(want, sizeof want, "cannot open %s: No such file or directory", gone);
    ck_assert_str_eq(err.msg, want);
}
END_TEST

/* A variable-length string array attribute, as h5py writes lists of str (UTF-8), or with
 * ASCII strings (other writers). */
static void vlen_attr_cset(hid_t loc, const char *name, const char **s, hsize_t n,
                           H5T_cset_t cset)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, cset);
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0);
    if (n)
        ck_assert(H5Awrite(a, t, s) >= 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(t);
}

static void vlen_attr(hid_t loc, const char *name, const char **s, hsize_t n)
{
    vlen_attr_cset(loc, name, s, n, H5T_CSET_UTF8);
}

START_TEST(test_weights_load_variants)
{
    /* model.save_weights() layout written by another tool: layer_names at the root, as
     * variable-length strings (UTF-8 as h5py writes them, and ASCII) split Keras-style over
     * layer_names0/1, other layer names, float64 data. Layers match by order. */
    const char *w = path_in("other_tool.h5");
    hid_t f = H5Fcreate(w, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *first[] = {"d1", "flat"}, *second[] = {"d2"};
    vlen_attr(f, "layer_names0", first, 2);
    vlen_attr_cset(f, "layer_names1", second, 1, H5T_CSET_ASCII);
    const char *w1[] = {"d1/k:0", "d1/b:0"}, *w2[] = {"x/kernel", "x/bias"};
    const char *groups[3] = {"d1", "flat", "d2"};
    const char **wn[3] = {w1, NULL, w2};
    double k1[6], b1[3], k2[6], b2[2];
    for (int i = 0; i < 6; i++)
        k1[i] = 0.5 * i, k2[i] = -1.0 * i;
    for (int i = 0; i < 3; i++)
        b1[i] = 10 + i;
    b2[0] = 7;
    b2[1] = 8;
    for (int i = 0; i < 3; i++) {
        hid_t g = H5Gcreate2(f, groups[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        vlen_attr(g, "weight_names", wn[i], wn[i] ? 2 : 0);
        H5Gclose(g);
    }
    hsize_t dk1[2] = {2, 3}, db1[1] = {3}, dk2[2] = {3, 2}, db2[1] = {2};
    fx_array(f, "d1/d1/k:0", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dk1, k1);
    fx_array(f, "d1/d1/b:0", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, db1, b1);
    fx_array(f, "d2/x/kernel", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dk2, k2);
    fx_array(f, "d2/x/bias", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, db2, b2);
    ck_assert(H5Fclose(f) >= 0);

    fake_model b;
    fake_build(&b, 2, false, 100);
    ct_error err = {0};
    ck_assert_msg(ct_weights_load(&b.m, w, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 6; i++) {
        ck_assert(b.values[i] == (float)k1[i]);
        ck_assert(b.values[9 + i] == (float)k2[i]);
    }
    ck_assert(b.values[6] == 10 && b.values[8] == 12 && b.values[15] == 7 && b.values[16] == 8);
}
END_TEST

START_TEST(test_weights_truncated)
{
    fake_model a;
    fake_build(&a, 2, false, 1);
    char w[4300], cut[4300], want[8800];
    snprintf(w, sizeof w, "%s", path_in("whole.h5"));
    snprintf(cut, sizeof cut, "%s", path_in("cut.h5"));
    ct_error err = {0};
    ck_assert_int_eq(ct_weights_save(&a.m, w, NULL, NULL, &err), 0);
    for (int i = 1; i < 10; i++) {
        copy_prefix(w, cut, i / 10.0);
        ck_assert_int_eq(ct_weights_load(&a.m, cut, &err), -1);
        ck_assert_int_eq(err.code, CT_ERR_DATA);
        snprintf(want, sizeof want, "%s is not an HDF5 file or is damaged", cut);
        ck_assert_str_eq(err.msg, want);
    }
}
END_TEST

/* A copy of weights file `from` with `edit` applied through the HDF5 API. */
static const char *edited_copy(const char *from, const char *name, void (*edit)(hid_t f))
{
    static char path[4300];
    snprintf(path, sizeof path, "%s", path_in(name));
    copy_prefix(from, path, 1.0);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    edit(f);
    ck_assert(H5Fclose(f) >= 0);
    return path;
}

#define KERNEL "model_weights/dense/dense/kernel:0"

static void kernel_as_strings(hid_t f)
{
    ck_assert(H5Ldelete(f, KERNEL, H5P_DEFAULT) >= 0);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 4);
    hsize_t d[2] = {2, 3};
    fx_array(f, KERNEL, st, st, 2, d, "abc\0def\0ghi\0jkl\0mno\0pqr\0");
    H5Tclose(st);
}

static void drop_bias(hid_t f)
{
    ck_assert(H5Ldelete(f, "model_weights/dense_1/dense_1/bias:0", H5P_DEFAULT) >= 0);
}

static void drop_layer_group(hid_t f)
{
    ck_assert(H5Ldelete(f, "model_weights/dense_1", H5P_DEFAULT) >= 0);
}

static void kernel_as_external_link(hid_t f)
{
    ck_assert(H5Ldelete(f, KERNEL, H5P_DEFAULT) >= 0);
    ck_assert(H5Lcreate_external("other.h5", "/data", f, KERNEL, H5P_DEFAULT, H5P_DEFAULT) >= 0);
}

static void kernel_in_raw_file(hid_t f)
{
    ck_assert(H5Ldelete(f, KERNEL, H5P_DEFAULT) >= 0);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_external(dcpl, "raw.bin", 0, 6 * sizeof(float)) >= 0);
    hsize_t d[2] = {2, 3};
    hid_t space = H5Screate_simple(2, d, NULL);
    fx_put(f, KERNEL, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, dcpl, NULL);
    H5Sclose(space);
    H5Pclose(dcpl);
}

/* The kernel moved elsewhere in the file, reached through a soft link: fine. */
static void kernel_as_soft_link(hid_t f)
{
    ck_assert(H5Lmove(f, KERNEL, f, "moved_kernel", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    ck_assert(H5Lcreate_soft("/moved_kernel", f, KERNEL, H5P_DEFAULT, H5P_DEFAULT) >= 0);
}

static void expect_weights_error(const char *path, ct_error_code code, const char *fmt)
{
    fake_model b;
    fake_build(&b, 2, false, 0);
    ct_error err = {0};
    char want[8800];
    snprintf(want, sizeof want, fmt, path);
    ck_assert_int_eq(ct_weights_load(&b.m, path, &err), -1);
    ck_assert_int_eq(err.code, code);
    ck_assert_str_eq(err.msg, want);
    for (int i = 0; i < 6 + 3 + 6 + 2; i++)
        ck_assert_msg(b.values[i] == (float)i, "a failed load changed the model");
}

START_TEST(test_weights_hostile_files)
{
    fake_model a, b;
    fake_build(&a, 2, false, 1);
    char w[4300];
    snprintf(w, sizeof w, "%s", path_in("hostile.h5"));
    ct_error err = {0};
    ck_assert_int_eq(ct_weights_save(&a.m, w, NULL, NULL, &err), 0);
    write_links_fixture();   /* raw.bin */

    expect_weights_error(edited_copy(w, "w_str.h5", kernel_as_strings), CT_ERR_DATA,
                         "layer 'dense' (Dense): weight 'kernel' in %s is not numeric");
    expect_weights_error(edited_copy(w, "w_nobias.h5", drop_bias), CT_ERR_DATA,
                         "layer 'dense_1' (Dense): %s has no dataset 'dense_1/bias:0' in "
                         "layer group 'dense_1'");
    expect_weights_error(edited_copy(w, "w_nolayer.h5", drop_layer_group), CT_ERR_DATA,
                         "%s: layer_names lists 'dense_1' but it has no group");
    expect_weights_error(edited_copy(w, "w_elink.h5", kernel_as_external_link), CT_ERR_DATA,
                         "layer 'dense' (Dense): %s: 'dense/kernel:0' is an external link to "
                         "other.h5:/data; ctrain reads only data stored inside the file");
    expect_weights_error(edited_copy(w, "w_raw.h5", kernel_in_raw_file), CT_ERR_DATA,
                         "layer 'dense' (Dense): weight 'kernel' in %s keeps its data in the "
                         "external file 'raw.bin'; ctrain reads only data stored inside the "
                         "HDF5 file");
    fake_build(&b, 2, false, 0);
    const char *soft = edited_copy(w, "w_soft.h5", kernel_as_soft_link);
    ck_assert_msg(ct_weights_load(&b.m, soft, &err) == 0, "%s", err.msg);
    ck_assert(memcmp(a.values, b.values, sizeof a.values) == 0);
}
END_TEST

static int count_temps(const char *d)
{
    DIR *dh = opendir(d);
    ck_assert(dh != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(dh));)
        n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(dh);
    return n;
}

static long file_bytes(const char *p)
{
    struct stat st;
    ck_assert(stat(p, &st) == 0);
    return (long)st.st_size;
}

START_TEST(test_weights_failed_save)
{
    char sub[4200], w[4300], want[8800];
    snprintf(sub, sizeof sub, "%s/keep", dir);
    ck_assert(mkdir(sub, 0755) == 0 || errno == EEXIST);
    snprintf(w, sizeof w, "%s/weights.h5", sub);
    fake_model a, b;
    fake_build(&a, 2, false, 1);
    ct_error err = {0};
    ck_assert_int_eq(ct_weights_save(&a.m, w, NULL, NULL, &err), 0);
    long size = file_bytes(w);

    /* A failure half way through writing: the old file stays, the temporary goes. */
    fake_build(&b, 2, false, 50);
    /* (a weight nested under another weight: the first is a dataset, not a group) */
    char nested[sizeof b.layers[2].params[1].name];
    snprintf(nested, sizeof nested, "%.20s:0/x", b.layers[2].params[0].name);
    memcpy(b.layers[2].params[1].name, nested, sizeof nested);
    ck_assert_int_eq(ct_weights_save(&b.m, w, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_IO);
    snprintf(want, sizeof want,
             "saving weights to %s: writing the weights of layer 'dense_1' failed: message type "
             "not found", w);
    ck_assert_str_eq(err.msg, want);
    ck_assert_int_eq(count_temps(sub), 0);
    ck_assert_int_eq(file_bytes(w), size);
    fake_build(&b, 2, false, 50);
    ck_assert_int_eq(ct_weights_load(&b.m, w, &err), 0);
    ck_assert(memcmp(a.values, b.values, sizeof a.values) == 0);

    /* No temporary file can be made: a directory that does not exist. */
    char nodir[4400];
    snprintf(nodir, sizeof nodir, "%s/absent/w.h5", dir);
    ck_assert_int_eq(ct_weights_save(&a.m, nodir, NULL, NULL, &err), -1);
    snprintf(want, sizeof want,
             "cannot write %s: cannot create a temporary file beside it: No such file or "
             "directory", nodir);
    ck_assert_str_eq(err.msg, want);

    /* A read-only directory (only meaningful when permissions apply to us). */
    if (geteuid() != 0) {
        ck_assert(chmod(sub, 0555) == 0);
        ck_assert_int_eq(ct_weights_save(&b.m, w, NULL, NULL, &err), -1);
        ck_assert_int_eq(err.code, CT_ERR_IO);
        snprintf(want, sizeof want,
                 "cannot write %s: cannot create a temporary file beside it: Permission denied",
                 w);
        ck_assert_str_eq(err.msg, want);
        ck_assert(chmod(sub, 0755) == 0);
        ck_assert_int_eq(file_bytes(w), size);
    }

    /* Names HDF5 cannot hold are refused before anything is written. */
    fake_build(&b, 2, false, 0);
    snprintf(b.layers[1].name, sizeof b.layers[1].name, "a/b");
    ck_assert_int_eq(ct_weights_save(&b.m, w, NULL, NULL, &err), -1);
    ck_assert_str_eq(err.msg, "layer name 'a/b' cannot be stored in HDF5 (empty, '.' or holds '/')");
    ck_assert_int_eq(file_bytes(w), size);
}
END_TEST


/* ---- hostile files, second round ---- */

static const char *virtual_msg = " is a virtual dataset (its data is mapped from other "
                                 "datasets or files); ctrain reads only data stored inside "
                                 "the HDF5 file";

/* A virtual float dataset `name` of n x 3 mapping src_name in src_file ("." this file). */
static void fx_virtual(hid_t f, const char *name, const char *src_file, const char *src_name,
                       hsize_t n)
{
    hsize_t dims[2] = {n, 3};
    hid_t space = H5Screate_simple(2, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_virtual(dcpl, space, src_file, src_name, space) >= 0);
    fx_put(f, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, dcpl, NULL);
    H5Pclose(dcpl);
    H5Sclose(space);
}

START_TEST(test_open_virtual)
{
    const char *path = path_in("virtual.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    fx_virtual(f, "self", ".", "self", 6);
    fx_virtual(f, "missing", "absent.h5", "x", 6);
    fx_virtual(f, "zero", "/dev/zero", "x", 6);
    int32_t y[6] = {0, 1, 2, 0, 1, 2};
    hsize_t n = 6;
    fx_array(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, y);
    ck_assert(H5Fclose(f) >= 0);
    const char *names[] = {"self", "missing", "zero"};
    for (int i = 0; i < 3; i++) {
        char want[8192];
        snprintf(want, sizeof want, "%s:/%s%s", path, names[i], virtual_msg);
        expect_open_error(path, names[i], "y", CT_ERR_DATA, want);
    }
}
END_TEST

/* 2^40 rows declared, none written (contiguous), and one chunk of 2^30 written. */
START_TEST(test_open_unwritten)
{
    const char *path = path_in("unwritten.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {(hsize_t)1 << 40, 1}, chunk[2] = {1024, 1};
    hid_t space = H5Screate_simple(2, dims, NULL);
    fx_put(f, "flat", H5T_STD_U8LE, H5T_NATIVE_UCHAR, space, H5P_DEFAULT, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_chunk(dcpl, 2, chunk) >= 0);
    fx_put(f, "chunked", H5T_STD_U8LE, H5T_NATIVE_UCHAR, space, dcpl, NULL);
    H5Pclose(dcpl);
    hid_t d = H5Dopen2(f, "chunked", H5P_DEFAULT), fs = H5Dget_space(d);
    hsize_t off[2] = {0, 0}, cnt[2] = {1024, 1};
    unsigned char one[1024] = {0};
    hid_t ms = H5Screate_simple(2, cnt, NULL);
    ck_assert(H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL) >= 0);
    ck_assert(H5Dwrite(d, H5T_NATIVE_UCHAR, ms, fs, H5P_DEFAULT, one) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Sclose(space);
    ck_assert(H5Fclose(f) >= 0);
    char want[8192];
    snprintf(want, sizeof want, "%s:/flat: the file stores 0 bytes of its data but its shape "
             "needs 1099511627776; the rest was never written (only fill values)", path);
    expect_open_error(path, "flat", NULL, CT_ERR_DATA, want);
    snprintf(want, sizeof want, "%s:/chunked: the file stores 1 of its 1073741824 chunks; the "
             "rest were never written (only fill values)", path);
    expect_open_error(path, "chunked", NULL, CT_ERR_DATA, want);
}
END_TEST

START_TEST(test_open_fifo)
{
    const char *path = path_in("fifo.h5");
    unlink(path);
    ck_assert(mkfifo(path, 0600) == 0);
    char want[8192];
    snprintf(want, sizeof want, "cannot open %s: it is a FIFO, not a regular file", path);
    expect_open_error(path, "x", NULL, CT_ERR_IO, want);
    expect_open_error("/dev/zero", "x", NULL, CT_ERR_IO,
                      "cannot open /dev/zero: it is a character device, not a regular file");
}
END_TEST

/* A stop request ends validation, loading and import; a short phase gets no grace. */
START_TEST(test_stop_request)
{
    ct_stop_set_grace(0);
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(rows_h5, "x", "y", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ct_request_stop();
    ck_assert_int_eq(ct_dataset_validate(ds, 0, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_INTERRUPT);
    char want[8192];
    snprintf(want, sizeof want, "stopped by a signal while validating %s:/x (row 0 of %d)",
             rows_h5, ROWS);
    ck_assert_str_eq(err.msg, want);
    ck_assert_ptr_null(ct_loader_new(ds, NULL, 0, 10, false, 1, (size_t)1 << 30, &err));
    snprintf(want, sizeof want, "stopped by a signal while loading %s:/x", rows_h5);
    ck_assert_str_eq(err.msg, want);
    const char *csv = tu_write(dir, "stop.csv", "1,2\n3,4\n");
    char out[4300];
    snprintf(out, sizeof out, "%s/stop.h5", dir);
    ct_stop_clear();
    ck_assert_int_eq(ct_dataset_validate(ds, 0, &err), 0);
    ck_assert_int_eq(ct_data_import_csv(csv, out, "g", -1, false, CT_CSV_NUMBERS, &err), 0);
    ct_dataset_close(ds);
    ct_stop_set_grace(0.25);
}
END_TEST

/* ---- isolate.h: steps run in a child process ---- */

static int child_writes(void *ctx, int fd) { return ct_isolated_write(fd, ctx, strlen(ctx)); }
static int child_crashes(void *ctx, int fd)
{
    (void)ctx, (void)fd;
    raise(SIGSEGV);
    return 0;
}
static int child_loops(void *ctx, int fd)
{
    (void)ctx, (void)fd;
    for (;;)
        pause();
    return 0;
}
static int child_fails(void *ctx, int fd)
{
    ct_isolated_write(fd, ctx, 3); /* some output, then failure: none of it counts */
    return 1;
}

/* What the child writes comes back; a crash, a failure, too much output or a hang is an
 * answer, not the parent's end. */
START_TEST(test_isolated_run)
{
    char *out = NULL;
    size_t len = 0;
    char text[] = "layer_names";
    ck_assert_int_eq(ct_isolated_run(child_writes, text, 5.0, 64, &out, &len), CT_ISOLATED_OK);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert(memcmp(out, text, len) == 0);
    free(out);
    ck_assert_int_eq(ct_isolated_run(child_writes, text, 5.0, 4, &out, &len),
                     CT_ISOLATED_FAILED);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(ct_isolated_run(child_crashes, NULL, 5.0, 64, &out, &len),
                     CT_ISOLATED_FAILED);
    ck_assert_int_eq(ct_isolated_run(child_fails, text, 5.0, 64, &out, &len),
                     CT_ISOLATED_FAILED);
    ck_assert_uint_eq(len, 0);
    time_t t0 = time(NULL);
    ck_assert_int_eq(ct_isolated_run(child_loops, NULL, 0.3, 64, &out, &len),
                     CT_ISOLATED_TIMEOUT);
    ck_assert_int_le(time(NULL) - t0, 3);
    /* A file whose child hung is known at once; changed, it is asked about again. */
    const char *f = tu_write(dir, "hangs.h5", "not really HDF5");
    ct_isolated_status how = CT_ISOLATED_OK;
    ck_assert(!ct_isolated_known_bad(f, &how));
    ct_isolated_mark_bad(f, CT_ISOLATED_TIMEOUT);
    ck_assert(ct_isolated_known_bad(f, &how));
    ck_assert_int_eq(how, CT_ISOLATED_TIMEOUT);
    tu_write(dir, "hangs.h5", "now something else, longer");
    ck_assert(!ct_isolated_known_bad(f, &how));
}
END_TEST

/* What the phase reporter was told. */
typedef struct phase_log {
    int calls, bad;
    int64_t last_done, last_total;
    char what[256], unit[16];
} phase_log;

static void record_phase(void *ctx, const char *what, int64_t done, int64_t total,
                         const char *unit, double elapsed)
{
    phase_log *log = ctx;
    /* Each call of one phase is further on, never past the end, at a time since its start. */
    if (log->calls && !strcmp(log->what, what) && done < log->last_done)
        log->bad++;
    if (done > total || elapsed < 0)
        log->bad++;
    log->calls++;
    log->last_done = done;
    log->last_total = total;
    snprintf(log->what, sizeof log->what, "%s", what);
    snprintf(log->unit, sizeof log->unit, "%s", unit);
}

/* Validation and loading into memory report their progress, ending with every row. */
START_TEST(test_phase_progress)
{
    phase_log log = {0};
    ct_set_phase_reporter(record_phase, &log);
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(rows_h5, "x", "y", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_validate(ds, 0, &err), 0);
    char want[4300];
    snprintf(want, sizeof want, "validating %s:/x", rows_h5);
    ck_assert_str_eq(log.what, want);
    ck_assert_str_eq(log.unit, "rows");
    ck_assert_int_eq(log.last_done, ROWS);
    ck_assert_int_eq(log.last_total, ROWS);
    int validating = log.calls;
    ck_assert_int_ge(validating, 1);
    ct_loader *ld = ct_loader_new(ds, NULL, 0, 10, false, 1, (size_t)1 << 30, &err);
    ck_assert_msg(ld != NULL, "%s", err.msg);
    snprintf(want, sizeof want, "loading %s:/x", rows_h5);
    ck_assert_str_eq(log.what, want);
    ck_assert_int_eq(log.last_done, ROWS);
    ck_assert_int_gt(log.calls, validating);
    ck_assert_int_eq(log.bad, 0);
    /* Without a reporter nothing is called. */
    ct_set_phase_reporter(NULL, NULL);
    int before = log.calls;
    ck_assert_int_eq(ct_dataset_validate(ds, 0, &err), 0);
    ck_assert_int_eq(log.calls, before);
    ct_loader_free(ld);
    ct_dataset_close(ds);
}
END_TEST

/* Counts how often HDF5 decompresses a chunk of the test filter (it stores bytes as they
 * are). */
#define COUNT_FILTER 300
static int inflations;

static size_t count_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                           size_t nbytes, size_t *buf_size, void **buf)
{
    (void)cd_nelmts, (void)cd_values, (void)buf_size, (void)buf;
    if (flags & H5Z_FLAG_REVERSE)
        inflations++;
    return nbytes;
}

/* One 4 MiB chunk (16384 rows of 256 bytes): validating and loading it in memory used to
 * read it in pieces of 1 MiB or less, each decompressing the whole chunk again. */
START_TEST(test_big_chunk_read_once)
{
    const H5Z_class2_t cls = {H5Z_CLASS_T_VERS, COUNT_FILTER, 1, 1, "count", NULL, NULL,
                              count_filter};
    ck_assert(H5Zregister(&cls) >= 0);
    const char *path = path_in("bigchunk.h5");
    enum { R = 16384, C = 256 };
    unsigned char *x = malloc(R * C);
    int32_t *y = malloc(R * sizeof *y);
    for (int r = 0; r < R; r++) {
        y[r] = r % 3;
        for (int c = 0; c < C; c++)
            x[r * C + c] = (unsigned char)(r + c);
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {R, C}, n = R;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_chunk(dcpl, 2, dims) >= 0);
    ck_assert(H5Pset_filter(dcpl, COUNT_FILTER, H5Z_FLAG_MANDATORY, 0, NULL) >= 0);
    hid_t space = H5Screate_simple(2, dims, NULL);
    fx_put(f, "x", H5T_STD_U8LE, H5T_NATIVE_UCHAR, space, dcpl, x);
    H5Sclose(space);
    H5Pclose(dcpl);
    fx_array(f, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, y);
    ck_assert(H5Fclose(f) >= 0);

    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(path, "x", "y", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    char want[8192];
    snprintf(want, sizeof want, "%s:/x: the chunks holding one row expand to 4 MiB, more than "
             "the memory limit of 2 MiB (data.memory_limit_mb); store it in smaller chunks",
             path);
    ck_assert_int_eq(ct_dataset_check_chunks(ds, (size_t)2 << 20, &err), -1);
    ck_assert_str_eq(err.msg, want);
    ck_assert_int_eq(ct_dataset_check_chunks(ds, (size_t)4 << 20, &err), 0);
    inflations = 0;
    ck_assert_int_eq(ct_dataset_validate(ds, 3, &err), 0);
    ct_loader *ld = ct_loader_new(ds, NULL, 0, 64, true, 1, (size_t)1 << 30, &err);
    ck_assert_msg(ld != NULL, "%s", err.msg);
    ck_assert_msg(inflations == 1, "the chunk was decompressed %d times", inflations);
    ct_loader_free(ld);
    ct_dataset_close(ds);
    free(x);
    free(y);
}
END_TEST

/* layer_names attributes a damaged or hostile file may hold. */
static void names_of_ints(hid_t f)
{
    ck_assert(H5Adelete(f, "model_weights/layer_names") >= 0 ||
              H5Adelete_by_name(f, "model_weights", "layer_names", H5P_DEFAULT) >= 0);
    hid_t g = H5Gopen2(f, "model_weights", H5P_DEFAULT), s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, "layer_names", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT);
    int v = 7;
    ck_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &v) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Gclose(g);
}

static void names_2d(hid_t f)
{
    H5Adelete_by_name(f, "model_weights", "layer_names", H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "model_weights", H5P_DEFAULT);
    hsize_t d[2] = {2, 2};
    hid_t s = H5Screate_simple(2, d, NULL), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    const char *v[4] = {"a", "b", "c", "d"};
    hid_t a = H5Acreate2(g, "layer_names", t, s, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0 && H5Awrite(a, t, v) >= 0);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    H5Gclose(g);
}

static void names_too_many(hid_t f)
{
    H5Adelete_by_name(f, "model_weights", "layer_names", H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "model_weights", H5P_DEFAULT);
    hsize_t n = 100001;
    hid_t s = H5Screate_simple(1, &n, NULL), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 1);
    hid_t a = H5Acreate2(g, "layer_names", t, s, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    H5Gclose(g);
}

static void names_too_wide(hid_t f)
{
    H5Adelete_by_name(f, "model_weights", "layer_names", H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "model_weights", H5P_DEFAULT);
    hid_t s = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 70000);
    hid_t a = H5Acreate2(g, "layer_names", t, s, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    H5Gclose(g);
}

static void kernel_virtual(hid_t f)
{
    ck_assert(H5Ldelete(f, KERNEL, H5P_DEFAULT) >= 0);
    hsize_t d[2] = {2, 3};
    hid_t space = H5Screate_simple(2, d, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_virtual(dcpl, space, ".", "/" KERNEL, space) >= 0);
    fx_put(f, KERNEL, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, space, dcpl, NULL);
    H5Pclose(dcpl);
    H5Sclose(space);
}

START_TEST(test_weights_hostile_names)
{
    fake_model a;
    fake_build(&a, 2, false, 1);
    char w[4300];
    snprintf(w, sizeof w, "%s", path_in("names.h5"));
    ct_error err = {0};
    ck_assert_int_eq(ct_weights_save(&a.m, w, NULL, NULL, &err), 0);
    const char *tail = "; the file is damaged or was not written by Keras";
    char fmt[512];
    snprintf(fmt, sizeof fmt, "%%s: attribute 'layer_names' does not hold strings%s", tail);
    expect_weights_error(edited_copy(w, "n_int.h5", names_of_ints), CT_ERR_DATA, fmt);
    snprintf(fmt, sizeof fmt, "%%s: attribute 'layer_names' is not a list of names (a scalar "
             "or one axis)%s", tail);
    expect_weights_error(edited_copy(w, "n_2d.h5", names_2d), CT_ERR_DATA, fmt);
    snprintf(fmt, sizeof fmt, "%%s: attribute 'layer_names' declares 100001 names; at most "
             "100000 are read%s", tail);
    expect_weights_error(edited_copy(w, "n_many.h5", names_too_many), CT_ERR_DATA, fmt);
    snprintf(fmt, sizeof fmt, "%%s: attribute 'layer_names' has strings of more than 65536 "
             "bytes%s", tail);
    expect_weights_error(edited_copy(w, "n_wide.h5", names_too_wide), CT_ERR_DATA, fmt);
    snprintf(fmt, sizeof fmt, "layer 'dense' (Dense): weight 'kernel' in %%s%s", virtual_msg);
    expect_weights_error(edited_copy(w, "w_virtual.h5", kernel_virtual), CT_ERR_DATA, fmt);
    /* A FIFO in place of the file. */
    const char *fifo = path_in("w_fifo.h5");
    unlink(fifo);
    ck_assert(mkfifo(fifo, 0600) == 0);
    expect_weights_error(fifo, CT_ERR_IO, "cannot open %s: it is a FIFO, not a regular file");
}
END_TEST

/* ---- model_config JSON ---- */

static ct_node *scalar(const char *text, bool quoted)
{
    ct_node *n = calloc(1, sizeof *n);
    n->type = CT_NODE_SCALAR;
    n->scalar = strdup(text);
    n->quoted = quoted;
    return n;
}

static ct_node *container(ct_node_type type)
{
    ct_node *n = calloc(1, sizeof *n);
    n->type = type;
    n->keys = calloc(16, sizeof *n->keys);
    n->items = calloc(16, sizeof *n->items);
    return n;
}

static void put(ct_node *map, const char *key, ct_node *v)
{
    ck_assert(map->len < 16);
    if (map->type == CT_NODE_MAP)
        map->keys[map->len] = strdup(key);
    map->items[map->len++] = v;
}

static void node_free(ct_node *n)
{
    for (size_t i = 0; i < n->len; i++) {
        if (n->type == CT_NODE_MAP)
            free(n->keys[i]);
        node_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->scalar);
    free(n);
}

START_TEST(test_model_config_json)
{
    fake_model fm;
    fake_build(&fm, 2, false, 0);
    ct_node *cfg = container(CT_NODE_MAP);
    put(cfg, "type", scalar("dense", false));
    put(cfg, "name", scalar("ignored", false));
    put(cfg, "units", scalar("3", false));
    put(cfg, "activation", scalar("relu", false));
    put(cfg, "use_bias", scalar("true", false));
    put(cfg, "rate", scalar("0.25", false));
    put(cfg, "code", scalar("5", true));
    put(cfg, "nothing", scalar("null", false));
    ct_node *init = container(CT_NODE_MAP);
    put(init, "type", scalar("random_normal", false));
    put(init, "stddev", scalar("0.05", false));
    put(cfg, "kernel_initializer", init);
    ct_node *seq = container(CT_NODE_SEQ);
    put(seq, NULL, scalar("1", false));
    put(seq, NULL, scalar("x", false));
    put(cfg, "target_shape", seq);
    fm.layers[0].cfg = cfg;

    char *text = ct_model_config_json(&fm.m);
    ck_assert(text != NULL);
    cJSON *j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "%s", text);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "class_name")->valuestring, "Sequential");
    cJSON *c = cJSON_GetObjectItem(j, "config");
    ck_assert_str_eq(cJSON_GetObjectItem(c, "name")->valuestring, "sequential");
    cJSON *layers = cJSON_GetObjectItem(c, "layers");
    ck_assert_int_eq(cJSON_GetArraySize(layers), 4);
    cJSON *in = cJSON_GetArrayItem(layers, 0);
    ck_assert_str_eq(cJSON_GetObjectItem(in, "class_name")->valuestring, "InputLayer");
    char *shape = cJSON_PrintUnformatted(
        cJSON_GetObjectItem(cJSON_GetObjectItem(in, "config"), "batch_input_shape"));
    ck_assert_str_eq(shape, "[null,2]");
    free(shape);
    const char *names[4] = {"input_layer", "dense", "flatten", "dense_1"};
    const char *classes[4] = {"InputLayer", "Dense", "Flatten", "Dense"};
    for (int i = 0; i < 4; i++) {
        cJSON *l = cJSON_GetArrayItem(layers, i);
        ck_assert_str_eq(cJSON_GetObjectItem(l, "class_name")->valuestring, classes[i]);
        ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(l, "config"), "name")->valuestring,
                         names[i]);
    }
    char *dense = cJSON_PrintUnformatted(
        cJSON_GetObjectItem(cJSON_GetArrayItem(layers, 1), "config"));
    ck_assert_str_eq(dense,
                     "{\"name\":\"dense\",\"trainable\":true,\"dtype\":\"float32\",\"units\":3,"
                     "\"activation\":\"relu\",\"use_bias\":true,\"rate\":0.25,\"code\":\"5\","
                     "\"nothing\":null,\"kernel_initializer\":{\"class_name\":\"random_normal\","
                     "\"config\":{\"stddev\":0.05}},\"target_shape\":[1,\"x\"]}");
    free(dense);
    cJSON_Delete(j);
    free(text);
    node_free(cfg);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("dataset");
    tcase_add_unchecked_fixture(tc, setup_fixtures, NULL);
    tcase_add_checked_fixture(tc, ids_setup, ids_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_open_file_errors);
    tcase_add_test(tc, test_open_missing_dataset);
    tcase_add_test(tc, test_open_bad_datasets);
    tcase_add_test(tc, test_read_conversion);
    tcase_add_test(tc, test_validate);
    tcase_add_test(tc, test_open_multi);
    tcase_add_test(tc, test_open_multi_errors);
    tcase_add_test(tc, test_validate_multi);
    tcase_add_test(tc, test_open_links_and_layouts);
    tcase_add_test(tc, test_check_storage);
    tcase_add_loop_test(tc, test_chunked_gzip_same_as_contiguous, 0, 2);
    tcase_add_test(tc, test_write_matrix);
    tcase_add_test(tc, test_open_virtual);
    tcase_add_test(tc, test_open_unwritten);
    tcase_add_test(tc, test_open_fifo);
    tcase_add_test(tc, test_stop_request);
    tcase_add_test(tc, test_phase_progress);
    tcase_add_test(tc, test_isolated_run);
    tcase_add_test(tc, test_big_chunk_read_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("loader");
    tcase_add_unchecked_fixture(tc, setup_fixtures, NULL);
    tcase_add_checked_fixture(tc, ids_setup, ids_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_loader_in_order);
    tcase_add_test(tc, test_loader_shuffle_memory);
    tcase_add_test(tc, test_loader_shuffle_streaming);
    tcase_add_test(tc, test_loader_subset);
    tcase_add_test(tc, test_loader_wide_rows);
    tcase_add_test(tc, test_loader_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("import");
    tcase_add_unchecked_fixture(tc, setup_fixtures, NULL);
    tcase_add_checked_fixture(tc, ids_setup, ids_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_import_idx);
    tcase_add_test(tc, test_import_idx_errors);
    tcase_add_test(tc, test_import_csv);
    tcase_add_test(tc, test_import_csv_categorical);
    tcase_add_test(tc, test_import_images);
    tcase_add_test(tc, test_import_images_errors);
    tcase_add_test(tc, test_import_csv_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("weights");
    tcase_add_unchecked_fixture(tc, setup_fixtures, NULL);
    tcase_add_checked_fixture(tc, ids_setup, ids_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_weights_layout);
    tcase_add_test(tc, test_weights_round_trip);
    tcase_add_test(tc, test_weights_load_errors);
    tcase_add_test(tc, test_weights_failed_save);
    tcase_add_test(tc, test_weights_load_variants);
    tcase_add_test(tc, test_weights_truncated);
    tcase_add_test(tc, test_weights_hostile_files);
    tcase_add_test(tc, test_weights_hostile_names);
    tcase_add_test(tc, test_model_config_json);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Fixture writers in the tests report through ck_assert, not HDF5's printing. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    SRunner *sr = srunner_create(data_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
