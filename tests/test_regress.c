/* test_regress.c - inputs that crashed, leaked or hung the readers, found by fuzzing
 * (fuzz/README.md) or while reviewing what the fuzzers reach. Each goes through the same
 * entry point as the fuzz target and must now fail with a clean message.
 *
 * The HDF5 files under tests/regress/ are the fuzzers' inputs as found; the damaged
 * checkpoints are made here from a saved one with the HDF5 API. */
#include <hdf5.h>
#include <time.h>

#include "checkpoint.h"
#include "data.h"
#include "testutil.h"

/* Opens tests/regress/<name> as x = train/images with y = train/labels, then (as the fuzz
 * target does when that fails) with x alone; both must fail with exactly "<path><tail>". */
static void expect_dataset_error(const char *name, const char *tail)
{
    char rel[256], path[4200], want[4600];
    snprintf(rel, sizeof rel, "tests/regress/%s", name);
    snprintf(path, sizeof path, "%s", tu_src(rel));
    snprintf(want, sizeof want, "%s%s", path, tail);
    for (int with_y = 1; with_y >= 0; with_y--) {
        ct_error err = {0};
        ct_dataset *ds = ct_dataset_open(path, "train/images", with_y ? "train/labels" : NULL,
                                         1.0, &err);
        ck_assert_ptr_null(ds);
        ck_assert_int_eq(err.code, CT_ERR_DATA);
        ck_assert_str_eq(err.msg, want);
    }
}

/* x of shape (3, 2, 0, 1): validation divided its block size by a row size of 0. */
START_TEST(test_dataset_empty_axis_validate)
{
    expect_dataset_error("dataset-empty-axis-validate.h5",
                         ":/train/images: axis 2 has length 0; every sample needs at least one "
                         "value");
}
END_TEST

/* x of shape (3, 144115188109410306, 72057594037927936, 0): 0 values per row, but the
 * shape's size overflowed int64 on the way there. */
START_TEST(test_dataset_empty_axis_overflow)
{
    expect_dataset_error("dataset-empty-axis-overflow.h5",
                         ":/train/images: axis 3 has length 0; every sample needs at least one "
                         "value");
}
END_TEST

/* Compact datasets whose 12 stored bytes are fewer than the shape (23299, 2, 2, 1) of
 * uint8, or the 12 values of a 12779521-byte integer type, need: HDF5 copied past the end
 * of its buffer (heap-buffer-overflow in H5Dread). The second is now refused for its type
 * before its storage is looked at. */
START_TEST(test_dataset_compact_short)
{
    expect_dataset_error("dataset-compact-short.h5",
                         ":/train/images: its compact storage holds 12 bytes, fewer than its "
                         "shape and type need; the file is damaged");
    expect_dataset_error("dataset-compact-wide-type.h5",
                         ":/train/images: its number type has a layout no real file uses (bits "
                         "past its size, or an odd size); the file is damaged");
}
END_TEST

/* x stored as a 2-byte integer with 1023 bits of precision: converting it to float smashed
 * the stack inside HDF5 (H5T__bit_get_d). */
/* fuzz_dataset: chunks of 6 x 33554431 x 4 x 1 in a 6 x 4 x 4 x 1 dataset (HDF5 never
 * writes a chunk longer than a fixed axis): H5Dread overran its buffer (SEGV in
 * H5VM_memcpyvv) while validating. */
START_TEST(test_dataset_chunk_past_axis)
{
    expect_dataset_error("dataset-chunk-past-axis.h5",
                         ":/train/images: its chunks are 33554431 long on axis 1, which holds at "
                         "most 4; the file is damaged");
}
END_TEST

/* Files on which HDF5 1.10.8 itself crashes while opening them (h5dump -H crashes too;
 * fuzz/README.md): a memcpy from NULL in H5F__accum_read, a buffer overflow in
 * H5S_select_deserialize. The opening is tried in a child process first, and the file is
 * refused. */
START_TEST(test_dataset_hdf5_crashes)
{
    const char *tail = ": HDF5 crashed while opening it; the file is damaged";
    expect_dataset_error("hdf5-accum-read-null.h5", tail);
    expect_dataset_error("hdf5-select-deserialize.h5", tail);
}
END_TEST

/* A file on which HDF5 frees a pointer it never set while visiting its objects, which the
 * "no dataset" message lists: the listing runs in a child process. */
START_TEST(test_dataset_visit_bad_free)
{
    /* Whether the bad free kills the child depends on the allocator (it does under
     * AddressSanitizer, where the listing then "cannot be listed"); either way this process
     * carries on and names the missing dataset. */
    char path[4200], want[4600];
    snprintf(path, sizeof path, "%s", tu_src("tests/regress/hdf5-visit-bad-free.h5"));
    snprintf(want, sizeof want, "%s: no dataset 'train/images' (", path);
    for (int i = 0; i < 2; i++) {
        ct_error err = {0};
        ck_assert_ptr_null(ct_dataset_open(path, "train/images", "train/labels", 1.0, &err));
        ck_assert_int_eq(err.code, CT_ERR_DATA);
        ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
    }
}
END_TEST

START_TEST(test_dataset_int_precision)
{
    expect_dataset_error("dataset-int-precision.h5",
                         ":/train/images: its number type has a layout no real file uses (bits "
                         "past its size, or an odd size); the file is damaged");
}
END_TEST

/* Chunked datasets with nothing written, whose number type grew (a float of 2490372 bytes,
 * 32 bits of precision; an integer of 1025 bytes, 8 bits) while the fill value kept its 4
 * or 1 bytes: H5Dread copied a whole element out of the fill value. */
START_TEST(test_dataset_odd_type_size)
{
    const char *tail = ": its number type has a layout no real file uses (bits past its size, "
                       "or an odd size); the file is damaged";
    char x_tail[256], y_tail[256];
    snprintf(x_tail, sizeof x_tail, ":/train/images%s", tail);
    snprintf(y_tail, sizeof y_tail, ":/train/labels%s", tail);
    expect_dataset_error("dataset-float-size.h5", x_tail);

    /* Here y's type is damaged; x's is fine, but neither was ever written, which is
     * refused on its own (only fill values). */
    const char *path = tu_src("tests/regress/dataset-int-size.h5");
    char want[4600];
    snprintf(want, sizeof want, "%s%s", path, y_tail);
    ct_error err = {0};
    ck_assert_ptr_null(ct_dataset_open(path, "train/labels", NULL, 1.0, &err));
    ck_assert_str_eq(err.msg, want);
    snprintf(want, sizeof want, "%s:/train/images: the file stores 0 of its 8 chunks; the rest "
             "were never written (only fill values)", path);
    ck_assert_ptr_null(ct_dataset_open(path, "train/images", "train/labels", 1.0, &err));
    ck_assert_str_eq(err.msg, want);
}
END_TEST

/* train/images is a group holding a hard link to itself: listing the file's datasets for
 * the error message walked /train/images/images/... for minutes. */
START_TEST(test_dataset_group_cycle)
{
    time_t t0 = time(NULL);
    expect_dataset_error("dataset-group-cycle.h5",
                         ": 'train/images' is a group, not a dataset (no datasets among the "
                         "first 33 objects listed)");
    ck_assert_int_le(time(NULL) - t0, 10);
}
END_TEST

/* fuzz_weights: a weight_names attribute of variable-length strings whose global heap is
 * damaged. HDF5's H5Aread crashed inside H5HG_read (others of these inputs copy between
 * overlapping buffers, leak, or loop); the read now runs in a child process, and the
 * parent refuses the attribute. */
START_TEST(test_weights_vlen_heap)
{
    char path[4200], want[4600];
    snprintf(path, sizeof path, "%s", tu_src("tests/regress/weights-vlen-heap.h5"));
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(tu_src("fuzz/models/mlp.yaml"), NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    for (int i = 0; i < 2; i++) { /* the same answer every time: the parent is unharmed */
        ck_assert_int_eq(ct_experiment_load_weights(ex, path, &err), -1);
        snprintf(want, sizeof want, "%s: attribute 'weight_names' of layer 'dense' cannot be "
                 "read (HDF5 failed on its data); the file is damaged or was not written by "
                 "Keras", path);
        ck_assert_str_eq(err.msg, want);
    }
    ct_experiment_free(ex);
}
END_TEST

/* ---- damaged checkpoints ------------------------------------------------------------- */

static const char *const experiment_yaml =
    "name: regress\n"
    "model: {input_shape: [4], layers: [{type: dense, units: 3, activation: softmax}]}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "backend: {threads: 1}\n";

typedef struct ckpt {
    char *dir;
    char path[4200];
    ct_experiment *ex;
    ct_train_state st;
} ckpt;

/* Loads the experiment and saves a checkpoint of it before any training. */
static void ckpt_open(ckpt *c)
{
    ct_error err = {0};
    c->dir = tu_tmpdir();
    ck_assert_ptr_nonnull(c->dir);
    c->ex = ct_experiment_load(tu_write(c->dir, "regress.yaml", experiment_yaml), NULL, 0, &err);
    ck_assert_msg(c->ex != NULL, "%s", err.msg);
    memset(&c->st, 0, sizeof c->st);
    c->st.ncols = c->ex->nmetrics + 2; /* loss, accuracy, learning rate */
    snprintf(c->path, sizeof c->path, "%s/checkpoint.h5", c->dir);
    ck_assert_msg(ct_checkpoint_save(c->ex, &c->st, c->path, &err) == 0, "%s", err.msg);
}

static void ckpt_close(ckpt *c)
{
    ct_train_state_clear(&c->st);
    ct_experiment_free(c->ex);
    unlink(c->path);
    rmdir(c->dir);
    free(c->dir);
}

/* Loading the checkpoint fails with exactly "<path><tail>". */
static void expect_load_error(ckpt *c, const char *tail)
{
    char want[4600];
    snprintf(want, sizeof want, "%s%s", c->path, tail);
    ct_error err = {0};
    int ncols = c->st.ncols;
    ck_assert_int_eq(ct_checkpoint_load(c->ex, c->path, &c->st, &err), -1);
    c->st.ncols = ncols;
    ck_assert_int_eq(err.code, CT_ERR_DATA);
    ck_assert_str_eq(err.msg, want);
}

/* optimizer_weights' "optimizer" attribute as a variable-length string: it was read into
 * a 64-byte buffer as a pointer HDF5 allocated (leaked, and printed as garbage). */
START_TEST(test_checkpoint_vlen_optimizer_name)
{
    ckpt c;
    ckpt_open(&c);
    hid_t f = H5Fopen(c.path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    ck_assert(H5Adelete_by_name(f, "optimizer_weights", "optimizer", H5P_DEFAULT) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
    ck_assert(H5Tset_size(t, H5T_VARIABLE) >= 0);
    hid_t a = H5Acreate_by_name(f, "optimizer_weights", "optimizer", t, space, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT);
    const char *name = "adam";
    ck_assert(a >= 0 && H5Awrite(a, t, &name) >= 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(t);
    H5Fclose(f);
    expect_load_error(&c, " was written by the optimizer '', but the experiment uses 'adam'");
    ckpt_close(&c);
}
END_TEST

/* training_state claims 2^61 epochs and holds a (2^61, 3) history (chunked, nothing
 * written): 2^61 * 3 * 8 bytes wrapped around to a 0-byte buffer that H5Dread filled. */
START_TEST(test_checkpoint_history_overflow)
{
    ckpt c;
    ckpt_open(&c);
    hid_t f = H5Fopen(c.path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    hsize_t dims[2] = {(hsize_t)1 << 61, (hsize_t)c.st.ncols}, chunk[2] = {1, dims[1]};
    int64_t epochs = (int64_t)dims[0];
    /* HDF5 1.10 cannot write an attribute opened with H5Aopen_by_name. */
    hid_t g = H5Gopen2(f, "training_state", H5P_DEFAULT), a = H5Aopen(g, "epoch", H5P_DEFAULT);
    ck_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &epochs) >= 0);
    H5Aclose(a);
    H5Gclose(g);
    ck_assert(H5Ldelete(f, "training_state/history", H5P_DEFAULT) >= 0);
    hid_t space = H5Screate_simple(2, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert(H5Pset_chunk(dcpl, 2, chunk) >= 0);
    hid_t d = H5Dcreate2(f, "training_state/history", H5T_NATIVE_DOUBLE, space, H5P_DEFAULT,
                         dcpl, H5P_DEFAULT);
    ck_assert(d >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Fclose(f);
    expect_load_error(&c, ": the history claims 2305843009213693952 epochs; the file is "
                          "damaged");
    ckpt_close(&c);
}
END_TEST

static Suite *regress_suite(void)
{
    Suite *s = suite_create("regress");
    TCase *tc = tcase_create("dataset");
    tcase_add_test(tc, test_dataset_empty_axis_validate);
    tcase_add_test(tc, test_dataset_empty_axis_overflow);
    tcase_add_test(tc, test_dataset_compact_short);
    tcase_add_test(tc, test_dataset_chunk_past_axis);
    tcase_add_test(tc, test_weights_vlen_heap);
    tcase_add_test(tc, test_dataset_hdf5_crashes);
    tcase_add_test(tc, test_dataset_visit_bad_free);
    tcase_add_test(tc, test_dataset_int_precision);
    tcase_add_test(tc, test_dataset_odd_type_size);
    tcase_add_test(tc, test_dataset_group_cycle);
    suite_add_tcase(s, tc);
    tc = tcase_create("checkpoint");
    tcase_add_test(tc, test_checkpoint_vlen_optimizer_name);
    tcase_add_test(tc, test_checkpoint_history_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* The tests' own HDF5 calls report through ck_assert, not HDF5's printing. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    SRunner *sr = srunner_create(regress_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
