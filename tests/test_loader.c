/* test_loader.c - how the loader stores and serves rows: integer images kept in their
 * stored type give the same floats as float data; the reader thread serves the same
 * batches as assembling them in place, across epochs, restarts and streaming; a dataset of
 * several members serves the same rows in the same order to each. */
#include <check.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "batches.h"
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
    static double ids[N * 2];
    for (int i = 0; i < N * H * W; i++) {
        u8[i] = (unsigned char)((i * 37 + 11) % 256);
        i8[i] = (signed char)(u8[i] - 128);
        u16[i] = (unsigned short)(u8[i] * 257);
        i16[i] = (short)(u8[i] - 128);
        f32[i] = (float)u8[i];
        f32s[i] = (float)(u8[i] - 128);
        f32w[i] = (float)u16[i];
    }
    for (int i = 0; i < N; i++) {
        labels[i] = i % 7;
        ids[i * 2] = i;
        ids[i * 2 + 1] = -i;
    }
    snprintf(h5, sizeof h5, "%s/imgs.h5", dir);
    hid_t f = H5Fcreate(h5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    hsize_t dims[4] = {N, H, W, 1}, ldims[1] = {N}, idims[2] = {N, 2};
    put(f, "u8", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 4, dims, u8);
    put(f, "i8", H5T_STD_I8LE, H5T_NATIVE_SCHAR, 4, dims, i8);
    put(f, "u16", H5T_STD_U16BE, H5T_NATIVE_USHORT, 4, dims, u16); /* big-endian on disk */
    put(f, "i16", H5T_STD_I16LE, H5T_NATIVE_SHORT, 4, dims, i16);
    put(f, "f32", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, f32);
    put(f, "f32s", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, f32s);
    put(f, "f32w", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, f32w);
    put(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT, 1, ldims, labels);
    put(f, "ids", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, idims, ids);
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

/* ---- several members ----
 * x: u8 (scaled to [0, 1]), f32 (doubled) and i16 (halved); y: labels and ids, the row
 * number as float64 pairs (r, -r), so every served row says which row it is. */

#define NX_MAX 3
#define MX (H * W)

static const char *const mx[NX_MAX] = {"u8", "f32", "i16"}, *const my[2] = {"labels", "ids"};
static const double mscale[NX_MAX] = {SCALE, 2.0, 0.5};
static const int64_t mycols[2] = {1, 2};

typedef struct served_multi {
    float *x[NX_MAX], *y[2];
    int64_t rows;
} served_multi;

static ct_dataset *open_members(int nx)
{
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open_multi(h5, nx, mx, mscale, 2, my, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    return ds;
}

static void append(float *to, const float *from, int64_t at, int64_t rows, int64_t cols)
{
    memcpy(to + at * cols, from, sizeof(float) * (size_t)(rows * cols));
}

static served_multi serve_multi(int nx, bool prefetch, size_t memory_limit, int epochs)
{
    ct_error err = {0};
    ct_dataset *ds = open_members(nx);
    ct_loader *ld = ct_loader_new(ds, NULL, 0, BATCH, true, 42, memory_limit, &err);
    ck_assert_msg(ld != NULL, "%s", err.msg);
    if (prefetch)
        ck_assert_int_eq(ct_loader_prefetch(ld, &err), 0);
    served_multi s = {{0}, {0}, 0};
    float bx[NX_MAX][BATCH * MX], by[2][BATCH * 2];
    float *xs[NX_MAX] = {bx[0], bx[1], bx[2]}, *ys[2] = {by[0], by[1]};
    for (int i = 0; i < nx; i++)
        s.x[i] = malloc(sizeof(float) * N * MX * epochs);
    for (int j = 0; j < 2; j++)
        s.y[j] = malloc(sizeof(float) * N * (size_t)mycols[j] * epochs);
    for (int e = 0; e < epochs; e++) {
        ck_assert_int_eq(ct_loader_begin_epoch(ld, e, &err), 0);
        int64_t k;
        while ((k = ct_loader_next_multi(ld, xs, ys, &err)) > 0) {
            for (int i = 0; i < nx; i++)
                append(s.x[i], bx[i], s.rows, k, MX);
            for (int j = 0; j < 2; j++)
                append(s.y[j], by[j], s.rows, k, mycols[j]);
            s.rows += k;
        }
        ck_assert_msg(k == 0, "%s", err.msg);
    }
    ct_loader_free(ld);
    ct_dataset_close(ds);
    return s;
}

static void free_multi(served_multi *s)
{
    for (int i = 0; i < NX_MAX; i++)
        free(s->x[i]);
    free(s->y[0]);
    free(s->y[1]);
}

/* Row `at` of every member holds the same dataset row, and each epoch serves each once. */
static void check_rows_agree(const served_multi *s, int nx, int epochs)
{
    int seen[N] = {0};
    ck_assert_int_eq(s->rows, (int64_t)N * epochs);
    for (int64_t at = 0; at < s->rows; at++) {
        int id = (int)s->y[1][at * 2];
        ck_assert(id >= 0 && id < N && s->y[1][at * 2 + 1] == (float)-id);
        ck_assert(s->y[0][at] == (float)(id % 7));
        seen[id]++;
        for (int k = 0; k < MX; k++) {
            int v = ((id * MX + k) * 37 + 11) % 256;
            ck_assert(s->x[0][at * MX + k] == (float)v * (float)SCALE);
            ck_assert(s->x[1][at * MX + k] == (float)v * 2.0f);
            if (nx > 2)
                ck_assert(s->x[2][at * MX + k] == (float)(v - 128) * 0.5f);
        }
    }
    for (int r = 0; r < N; r++)
        ck_assert_int_eq(seen[r], epochs);
}

static void assert_same_multi(served_multi a, served_multi b, int nx)
{
    ck_assert_int_eq(a.rows, b.rows);
    for (int i = 0; i < nx; i++)
        ck_assert_int_eq(memcmp(a.x[i], b.x[i], sizeof(float) * (size_t)(a.rows * MX)), 0);
    for (int j = 0; j < 2; j++)
        ck_assert_int_eq(memcmp(a.y[j], b.y[j], sizeof(float) * (size_t)(a.rows * mycols[j])),
                         0);
    free_multi(&a);
    free_multi(&b);
}

START_TEST(test_multi_same_rows)
{
    const size_t big = 1u << 30;
    /* stored bytes per row: 15 + 60 + 30 (x) + 4 + 8 (y); streaming blocks of 40 rows */
    const size_t small = 40 * (MX * 7 + 12);
    for (int nx = 2; nx <= 3; nx++) {
        served_multi m = serve_multi(nx, false, big, 2), s = serve_multi(nx, false, small, 2);
        check_rows_agree(&m, nx, 2);
        check_rows_agree(&s, nx, 2);
        /* the reader thread serves the same batches (in memory it starts none) */
        assert_same_multi(m, serve_multi(nx, true, big, 2), nx);
        assert_same_multi(s, serve_multi(nx, true, small, 2), nx);
    }
    /* in memory, member 0 comes in the order a single-member loader gives it */
    served_multi m = serve_multi(3, false, big, 2);
    served one = serve("u8", SCALE, false, big, 2);
    ck_assert_int_eq(memcmp(m.x[0], one.x, sizeof(float) * (size_t)(one.rows * MX)), 0);
    ck_assert_int_eq(memcmp(m.y[0], one.y, sizeof(float) * (size_t)one.rows), 0);
    free_multi(&m);
    free(one.x), free(one.y);
}
END_TEST

START_TEST(test_multi_memory)
{
    ct_error err = {0};
    ct_dataset *ds = open_members(3);
    ct_loader *ld = ct_loader_new(ds, NULL, 0, BATCH, false, 1, 1u << 30, &err);
    ck_assert_ptr_nonnull(ld);
    /* each member in its own stored type: 1 + 4 + 2 bytes per pixel; y as float */
    ck_assert_uint_eq(ct_loader_memory(ld), (size_t)N * (MX * 7 + 4 + 8));
    /* the single-member call serves x and y member 0 of the same rows */
    float x0[BATCH * MX], y0[BATCH];
    ck_assert_int_eq(ct_loader_next(ld, x0, y0, &err), BATCH);
    for (int r = 0; r < BATCH; r++) {
        ck_assert(y0[r] == (float)(r % 7));
        ck_assert(x0[r * MX] == (float)((r * MX * 37 + 11) % 256) * (float)SCALE);
    }
    ct_loader_free(ld);
    ct_dataset_close(ds);
}
END_TEST

/* Data-parallel parts: 3 loaders each serving one part of every batch (203 rows in
 * batches of 16 leave a last batch of 11, split 3/4/4) return the whole batch's rows, and
 * their parts side by side are the whole batch, in memory and streaming with a reader
 * thread alike. */
START_TEST(test_shard_parts)
{
    ct_error err = {0};
    ct_dataset *ds = open_members(1);
    const size_t limits[2] = {(size_t)1 << 30, 40 * (MX + 12)};
    for (int mode = 0; mode < 2; mode++) {
        ct_loader *whole = ct_loader_new(ds, NULL, 0, BATCH, true, 5, limits[mode], &err);
        ct_loader *part[3];
        for (int p = 0; p < 3; p++) {
            part[p] = ct_loader_new(ds, NULL, 0, BATCH, true, 5, limits[mode], &err);
            ck_assert_msg(part[p] != NULL, "%s", err.msg);
            ct_loader_shard(part[p], p, 3);
            ck_assert_int_eq(ct_loader_prefetch(part[p], &err), 0);
            ck_assert_int_eq(ct_loader_begin_epoch(part[p], 2, &err), 0);
        }
        ck_assert_int_eq(ct_loader_begin_epoch(whole, 2, &err), 0);
        float wx[BATCH * MX], wy[BATCH * 2], px[BATCH * MX], py[BATCH * 2];
        int64_t k, batches = 0;
        while ((k = ct_loader_next(whole, wx, wy, &err)) > 0) {
            int64_t at = 0;
            for (int p = 0; p < 3; p++) {
                ck_assert_int_eq(ct_loader_next(part[p], px, py, &err), k);
                int64_t got = ct_loader_part_rows(part[p]);
                ck_assert_int_eq(got, k * (p + 1) / 3 - k * p / 3);
                ck_assert_int_eq(memcmp(px, wx + at * MX, sizeof(float) * (size_t)(got * MX)), 0);
                ck_assert_int_eq(memcmp(py, wy + at, sizeof(float) * (size_t)got), 0);
                at += got;
            }
            ck_assert_int_eq(at, k);
            batches++;
        }
        ck_assert_int_eq(batches, (N + BATCH - 1) / BATCH);
        for (int p = 0; p < 3; p++) {
            ck_assert_int_eq(ct_loader_next(part[p], px, py, &err), 0);
            ct_loader_free(part[p]);
        }
        ct_loader_free(whole);
    }
    ct_dataset_close(ds);
}
END_TEST

/* Two inputs through ct_batches on the CPU: written straight into the input tensors, the
 * labels in b.y, just as the loader serves them; the tensors keep their buffers. */
START_TEST(test_batches_two_inputs)
{
    ct_error err = {0};
    ct_dataset *ds = open_members(2);
    const size_t small = 40 * (MX * 5 + 12);
    ct_loader *la = ct_loader_new(ds, NULL, 0, BATCH, true, 3, small, &err);
    ct_loader *lb = ct_loader_new(ds, NULL, 0, BATCH, true, 3, small, &err);
    ck_assert(la && lb);
    ck_assert_uint_eq(ct_loader_memory(la), small); /* streaming */
    ct_shape shape = ct_shape_make(3, (int64_t[]){H, W, 1});
    float bufs[2][BATCH * MX];
    ct_tensor in[2] = {{.data = bufs[0], .rows = BATCH, .shape = shape},
                       {.data = bufs[1], .rows = BATCH, .shape = shape}};
    ct_batches b = {0};
    ck_assert_int_eq(ct_batches_init(&b, ct_backend_cpu(), 2, in, BATCH, 2, mycols, &err), 0);
    float rx[2][BATCH * MX], ry[2][BATCH * 2];
    float *xs[2] = {rx[0], rx[1]}, *ys[2] = {ry[0], ry[1]};
    int64_t k, total = 0;
    while ((k = ct_batches_next(&b, la, true, &err)) > 0) {
        ck_assert_int_eq(ct_loader_next_multi(lb, xs, ys, &err), k);
        for (int i = 0; i < 2; i++)
            ck_assert_int_eq(memcmp(in[i].data, rx[i], sizeof(float) * (size_t)(k * MX)), 0);
        for (int j = 0; j < 2; j++)
            ck_assert_int_eq(memcmp(b.y[j], ry[j], sizeof(float) * (size_t)(k * mycols[j])), 0);
        ct_batches_done(&b);
        total += k;
    }
    ck_assert_msg(k == 0, "%s", err.msg);
    ck_assert_int_eq(total, N);
    /* without labels b.y is empty */
    ck_assert_int_eq(ct_loader_begin_epoch(la, 1, &err), 0);
    ck_assert_int_eq(ct_batches_next(&b, la, false, &err), BATCH);
    ck_assert(b.y[0] == NULL && b.y[1] == NULL);
    ct_batches_done(&b);
    ct_batches_free(&b);
    ck_assert(in[0].data == bufs[0] && in[1].data == bufs[1]);

    /* more inputs than the data has x members is an error, not a stale buffer */
    ct_tensor three[3] = {in[0], in[1], in[1]};
    ck_assert_int_eq(ct_batches_init(&b, ct_backend_cpu(), 3, three, BATCH, 0, NULL, &err), 0);
    ck_assert_int_eq(ct_batches_next(&b, la, false, &err), -1);
    const char *want = "the data has 2 x and 2 y datasets; the batches need 3 and 0";
    ck_assert_msg(strstr(err.msg, want) != NULL, "%s", err.msg);
    ct_batches_free(&b);
    ct_loader_free(la);
    ct_loader_free(lb);
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
    tcase_add_test(tc, test_multi_same_rows);
    tcase_add_test(tc, test_multi_memory);
    tcase_add_test(tc, test_batches_two_inputs);
    tcase_add_test(tc, test_shard_parts);
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
