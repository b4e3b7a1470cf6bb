/* test_loader.c - how the loader stores and serves rows: integer images kept in their
 * stored type give the same floats as float data; the reader thread serves the same
 * batches as assembling them in place, across epochs, restarts and streaming. */
#include <check.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "testutil.h"

#define N 203
#define H 3
#define W 5
#define BATCH 16
#define SCALE (1.0 / 255.0)

static char *dir;
static char h5[4200];

static void put(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                const void *data)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(d >= 0);
    ck_assert(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(space);
}

/* The same pixel values stored as uint8, int8 (shifted), uint16 (times 257), int16, and
 * each also as float32. */
static void write_fixture(void)
{
    static unsigned char u8[N * H * W];
    static signed char i8[N * H * W];
    static unsigned short u16[N * H * W];
    static short i16[N * H * W];
    static float f32[N * H * W], f32s[N * H * W], f32w[N * H * W];
    static int labels[N];
    for (int i = 0; i < N * H * W; i++) {
        u8[i] = (unsigned char)((i * 37 + 11) % 256);
        i8[i] = (signed char)(u8[i] - 128);
        u16[i] = (unsigned short)(u8[i] * 257);
        i16[i] = (short)(u8[i] - 128);
        f32[i] = (float)u8[i];
        f32s[i] = (float)(u8[i] - 128);
        f32w[i] = (float)u16[i];
    }
    for (int i = 0; i < N; i++)
        labels[i] = i % 7;
    snprintf(h5, sizeof h5, "%s/imgs.h5", dir);
    hid_t f = H5Fcreate(h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    hsize_t dims[4] = {N, H, W, 1}, ldims[1] = {N};
    put(f, "u8", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 4, dims, u8);
    put(f, "i8", H5T_STD_I8LE, H5T_NATIVE_SCHAR, 4, dims, i8);
    put(f, "u16", H5T_STD_U16BE, H5T_NATIVE_USHORT, 4, dims, u16); /* big-endian on disk */
    put(f, "i16", H5T_STD_I16LE, H5T_NATIVE_SHORT, 4, dims, i16);
    put(f, "f32", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, f32);
    put(f, "f32s", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, f32s);
    put(f, "f32w", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, f32w);
    put(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT, 1, ldims, labels);
    H5Fclose(f);
}

static void setup(void)
{
    dir = tu_tmpdir();
    write_fixture();
}

static void teardown(void)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}

/* Every batch of `epochs` epochs, concatenated: x then y per batch. */
typedef struct served {
    float *x, *y;
    int64_t rows;
} served;

static served serve(const char *x, double scale, bool prefetch, size_t memory_limit, int epochs)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(h5, x, "labels", scale, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ct_loader *ld = ct_loader_new(ds, NULL, 0, BATCH, true, 42, memory_limit, &err);
    ck_assert_msg(ld != NULL, "%s", err.msg);
    if (prefetch)
        ck_assert_int_eq(ct_loader_prefetch(ld, &err), 0);
    served s = {malloc(sizeof(float) * N * H * W * epochs), malloc(sizeof(float) * N * epochs), 0};
    float bx[BATCH * H * W], by[BATCH];
    for (int e = 0; e < epochs; e++) {
        ck_assert_int_eq(ct_loader_begin_epoch(ld, e, &err), 0);
        int64_t k;
        while ((k = ct_loader_next(ld, bx, by, &err)) > 0) {
            memcpy(s.x + s.rows * H * W, bx, sizeof(float) * (size_t)(k * H * W));
            memcpy(s.y + s.rows, by, sizeof(float) * (size_t)k);
            s.rows += k;
        }
        ck_assert_int_eq(k, 0);
    }
    ct_loader_free(ld);
    ct_dataset_close(ds);
    return s;
}

static void assert_same(served a, served b)
{
    ck_assert_int_eq(a.rows, b.rows);
    ck_assert_int_eq(memcmp(a.x, b.x, sizeof(float) * (size_t)(a.rows * H * W)), 0);
    ck_assert_int_eq(memcmp(a.y, b.y, sizeof(float) * (size_t)a.rows), 0);
    free(a.x), free(a.y), free(b.x), free(b.y);
}

START_TEST(test_compact_storage_same_floats)
{
    const size_t big = 1u << 30;
    /* uint8 kept as bytes vs the same values stored as float: bit for bit */
    assert_same(serve("u8", SCALE, false, big, 2), serve("f32", SCALE, false, big, 2));
    /* 16-bit and signed types, big-endian on disk */
    assert_same(serve("u16", SCALE / 257.0, false, big, 1),
                serve("f32w", SCALE / 257.0, false, big, 1));
    assert_same(serve("i8", 0.5, false, big, 1), serve("f32s", 0.5, false, big, 1));
    assert_same(serve("i16", 0.5, false, big, 1), serve("f32s", 0.5, false, big, 1));
    /* the scale is applied: pixel 255 becomes 1 */
    served s = serve("u8", SCALE, false, big, 1);
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < s.rows * H * W; i++) {
        lo = s.x[i] < lo ? s.x[i] : lo;
        hi = s.x[i] > hi ? s.x[i] : hi;
    }
    ck_assert_float_eq(lo, 0.0f);
    ck_assert_float_eq(hi, 1.0f);
    free(s.x), free(s.y);
}
END_TEST

START_TEST(test_compact_memory)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(h5, "u8", "labels", SCALE, &err);
    ck_assert_ptr_nonnull(ds);
    ct_loader *ld = ct_loader_new(ds, NULL, 0, BATCH, false, 1, 1u << 30, &err);
    ck_assert_ptr_nonnull(ld);
    /* one byte per pixel, four per label */
    ck_assert_uint_eq(ct_loader_memory(ld), (size_t)N * (H * W + 4));
    ct_loader_free(ld);
    ct_dataset_close(ds);
    ds = ct_dataset_open(h5, "f32", "labels", SCALE, &err);
    ld = ct_loader_new(ds, NULL, 0, BATCH, false, 1, 1u << 30, &err);
    ck_assert_uint_eq(ct_loader_memory(ld), (size_t)N * (H * W * 4 + 4));
    ct_loader_free(ld);
    ct_dataset_close(ds);
}
END_TEST

START_TEST(test_prefetch_same_batches)
{
    const size_t big = 1u << 30, small = 40 * (H * W + 4); /* streaming blocks of 40 rows */
    assert_same(serve("u8", SCALE, true, big, 3), serve("u8", SCALE, false, big, 3)); /* no thread */
    assert_same(serve("f32", SCALE, true, small, 3), serve("f32", SCALE, false, small, 3));
    assert_same(serve("u8", SCALE, true, small, 2), serve("u8", SCALE, false, small, 2));
}
END_TEST

/* Restarting an epoch while the reader thread holds a batch of the old order, and
 * freeing the loader mid-epoch, are both clean; the restarted epoch is served whole.
 * (In memory mode ct_loader_prefetch starts no thread; the same calls must still work.) */
START_TEST(test_prefetch_restart)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(h5, "u8", "labels", SCALE, &err);
    /* streaming (blocks of 40 rows): the mode that has a reader thread */
    const size_t small = 40 * (H * W + 4);
    ct_loader *a = ct_loader_new(ds, NULL, 0, BATCH, true, 9, small, &err);
    ct_loader *b = ct_loader_new(ds, NULL, 0, BATCH, true, 9, small, &err);
    ck_assert(a && b);
    ck_assert_int_eq(ct_loader_prefetch(a, &err), 0);
    float ax[BATCH * H * W], ay[BATCH], bx[BATCH * H * W], by[BATCH];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ct_loader_next(a, ax, ay, &err), BATCH);
    ct_loader_settle(a);
    ck_assert_int_eq(ct_loader_begin_epoch(a, 5, &err), 0);
    ck_assert_int_eq(ct_loader_begin_epoch(b, 5, &err), 0);
    int64_t ka, kb, total = 0;
    do {
        ka = ct_loader_next(a, ax, ay, &err);
        kb = ct_loader_next(b, bx, by, &err);
        ck_assert_int_eq(ka, kb);
        ck_assert_int_eq(memcmp(ax, bx, sizeof(float) * (size_t)(ka * H * W)), 0);
        ck_assert_int_eq(memcmp(ay, by, sizeof(float) * (size_t)ka), 0);
        total += ka;
    } while (ka > 0);
    ck_assert_int_eq(total, N);
    ck_assert_int_eq(ct_loader_begin_epoch(a, 6, &err), 0);
    ck_assert_int_eq(ct_loader_next(a, ax, ay, &err), BATCH);
    ct_loader_free(a); /* a batch is in flight */
    ct_loader_free(b);
    ct_dataset_close(ds);
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_compact_storage_same_floats);
    tcase_add_test(tc, test_compact_memory);
    tcase_add_test(tc, test_prefetch_same_batches);
    tcase_add_test(tc, test_prefetch_restart);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loader_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
