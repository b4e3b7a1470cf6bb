/* test_zip.c - the zip writer and reader behind .keras archives: round trips of stored
 * and deflated entries, an archive Python's zipfile wrote, Keras's class names in snake
 * case, and damaged archives (cut at every length, a flipped byte, an unknown method, a
 * bad directory), each refused with a message naming the file, never a crash. */
#include <sys/stat.h>

#include "ctrain.h"
#include "keras_io.h"
#include "testutil.h"
#include "zip.h"

static char *dir;

static const char *path_in(const char *name)
{
    static char buf[4][4200];
    static int at;
    at = (at + 1) % 4;
    snprintf(buf[at], sizeof buf[at], "%s/%s", dir, name);
    return buf[at];
}

static const char *write_bytes(const char *name, const void *bytes, size_t n)
{
    const char *path = path_in(name);
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert_int_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return path;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert(f != NULL);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*len + 1);
    ck_assert(b != NULL);
    ck_assert_int_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* Opens path and extracts every entry; 0 when all of it reads, else -1 with err set. */
static int read_through(const char *path, ct_error *err)
{
    ct_zip *z = ct_zip_open(path, err);
    if (!z)
        return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < ct_zip_count(z); i++) {
        char *data;
        size_t len;
        rc = ct_zip_extract(z, i, &data, &len, err);
        if (rc == 0)
            free(data);
    }
    ct_zip_close(z);
    return rc;
}

/* An archive written by Python's zipfile: a.txt stored, dir/b.json deflated. */
static const char python_zip[] =
    "\x50\x4b\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x21\x00\x48\xc9"
    "\x11\x48\x0a\x00\x00\x00\x0a\x00\x00\x00\x05\x00\x00\x00\x61\x2e"
    "\x74\x78\x74\x68\x65\x6c\x6c\x6f\x20\x7a\x69\x70\x0a\x50\x4b\x03"
    "\x04\x14\x00\x00\x00\x08\x00\x00\x00\x21\x00\x63\x11\x6d\x91\x10"
    "\x00\x00\x00\x7f\x00\x00\x00\x0a\x00\x00\x00\x64\x69\x72\x2f\x62"
    "\x2e\x6a\x73\x6f\x6e\xab\x56\xca\x56\xb2\x52\x88\x36\xd4\x51\x18"
    "\x00\x14\x5b\x0b\x00\x50\x4b\x01\x02\x14\x03\x14\x00\x00\x00\x00"
    "\x00\x00\x00\x21\x00\x48\xc9\x11\x48\x0a\x00\x00\x00\x0a\x00\x00"
    "\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01\x00"
    "\x00\x00\x00\x61\x2e\x74\x78\x74\x50\x4b\x01\x02\x14\x03\x14\x00"
    "\x00\x00\x08\x00\x00\x00\x21\x00\x63\x11\x6d\x91\x10\x00\x00\x00"
    "\x7f\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x80\x01\x2d\x00\x00\x00\x64\x69\x72\x2f\x62\x2e\x6a\x73\x6f\x6e"
    "\x50\x4b\x05\x06\x00\x00\x00\x00\x02\x00\x02\x00\x6b\x00\x00\x00"
    "\x65\x00\x00\x00\x00\x00";

static char big[100000];

static void write_sample(const char *name)
{
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)("abcab"[i % 5] + (i % 997 == 0));
    ct_zip_entry e[] = {{"config.json", "{\"a\": 1}", 8, false},
                        {"empty", "", 0, true},
                        {"model.weights.h5", big, sizeof big, true}};
    ct_error err = {0};
    ck_assert_msg(ct_zip_write(path_in(name), e, 3, &err) == 0, "%s", err.msg);
}

START_TEST(test_round_trip)
{
    write_sample("s.zip");
    ct_error err = {0};
    ct_zip *z = ct_zip_open(path_in("s.zip"), &err);
    ck_assert_msg(z != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_zip_count(z), 3);
    ck_assert_str_eq(ct_zip_name(z, 0), "config.json");
    ck_assert_int_eq(ct_zip_find(z, "model.weights.h5"), 2);
    ck_assert_int_eq(ct_zip_find(z, "nothing"), -1);
    ck_assert_ptr_null(ct_zip_name(z, 3));
    char *data;
    size_t len;
    ck_assert_int_eq(ct_zip_extract(z, 0, &data, &len, &err), 0);
    ck_assert_uint_eq(len, 8);
    ck_assert_str_eq(data, "{\"a\": 1}");   /* NUL-terminated */
    free(data);
    ck_assert_int_eq(ct_zip_extract(z, 1, &data, &len, &err), 0);
    ck_assert_uint_eq(len, 0);
    free(data);
    ck_assert_int_eq(ct_zip_extract(z, 2, &data, &len, &err), 0);
    ck_assert_uint_eq(len, sizeof big);
    ck_assert(memcmp(data, big, sizeof big) == 0);
    free(data);
    ct_zip_close(z);
    /* the deflated entry really is compressed */
    struct stat st;
    ck_assert_int_eq(stat(path_in("s.zip"), &st), 0);
    ck_assert_int_lt(st.st_size, (off_t)sizeof big / 4);
}
END_TEST

START_TEST(test_foreign_archive)
{
    const char *p = write_bytes("py.zip", python_zip, sizeof python_zip - 1);
    ct_error err = {0};
    ct_zip *z = ct_zip_open(p, &err);
    ck_assert_msg(z != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_zip_count(z), 2);
    char *data;
    size_t len;
    ck_assert_int_eq(ct_zip_extract(z, ct_zip_find(z, "a.txt"), &data, &len, &err), 0);
    ck_assert_str_eq(data, "hello zip\n");
    free(data);
    ck_assert_int_eq(ct_zip_extract(z, ct_zip_find(z, "dir/b.json"), &data, &len, &err), 0);
    ck_assert_uint_eq(len, 127);
    ck_assert(strncmp(data, "{\"k\": [1, 1, ", 13) == 0);
    ck_assert_str_eq(data + len - 3, "1]}");
    free(data);
    ct_zip_close(z);
}
END_TEST

START_TEST(test_truncated_everywhere)
{
    write_sample("t.zip");
    size_t len;
    char *b = read_all(path_in("t.zip"), &len);
    for (size_t cut = 0; cut < len; cut += cut < 200 || len - cut < 400 ? 1 : 97) {
        const char *p = write_bytes("cut.zip", b, cut);
        ct_error err = {0};
        ck_assert_msg(read_through(p, &err) < 0, "cut at %zu read", cut);
        ck_assert_msg(strstr(err.msg, "cut.zip") != NULL, "cut at %zu: %s", cut, err.msg);
    }
    free(b);
}
END_TEST

START_TEST(test_damaged)
{
    write_sample("d.zip");
    size_t len;
    char *b = read_all(path_in("d.zip"), &len);
    ct_error err = {0};
    /* a flipped byte inside the stored config.json: its CRC-32 fails */
    char *c = malloc(len);
    memcpy(c, b, len);
    c[30 + strlen("config.json") + 2] ^= 0x20;
    ck_assert_int_lt(read_through(write_bytes("flip.zip", c, len), &err), 0);
    ck_assert_msg(strstr(err.msg, "entry 'config.json' fails its CRC-32") != NULL, "%s", err.msg);
    /* every byte of the archive flipped in turn: refused or read, never a crash */
    for (size_t i = 0; i < len; i += i < 200 || len - i < 300 ? 1 : 211) {
        memcpy(c, b, len);
        c[i] ^= 0x5a;
        ct_error e2 = {0};
        (void)read_through(write_bytes("any.zip", c, len), &e2);
    }
    /* an unknown compression method, in the central directory */
    memcpy(c, b, len);
    size_t cd = 0;
    for (size_t i = 0; i + 4 <= len; i++)
        if (!memcmp(c + i, "PK\x01\x02", 4)) {
            cd = i;
            break;
        }
    ck_assert(cd > 0);
    c[cd + 10] = 12;   /* bzip2 */
    ck_assert_int_lt(read_through(write_bytes("m.zip", c, len), &err), 0);
    ck_assert_msg(strstr(err.msg, "entry 'config.json' uses compression method 12") != NULL,
                  "%s", err.msg);
    /* a directory pointing past the data */
    memcpy(c, b, len);
    c[len - 22 + 16] = (char)0xff;
    c[len - 22 + 17] = (char)0xff;
    ck_assert_int_lt(read_through(write_bytes("cd.zip", c, len), &err), 0);
    ck_assert_msg(strstr(err.msg, "damaged zip archive") != NULL, "%s", err.msg);
    /* not a zip at all */
    ck_assert_int_lt(read_through(write_bytes("no.zip", "hello", 5), &err), 0);
    ck_assert_msg(strstr(err.msg, "no.zip is not a zip archive") != NULL, "%s", err.msg);
    ck_assert_int_lt(read_through(path_in("missing.zip"), &err), 0);
    ck_assert_msg(strstr(err.msg, "missing.zip") != NULL, "%s", err.msg);
    ck_assert_int_lt(read_through(dir, &err), 0);
    free(c);
    free(b);
}
END_TEST

START_TEST(test_write_errors)
{
    ct_zip_entry e[] = {{"x", "1", 1, false}};
    ct_error err = {0};
    ck_assert_int_lt(ct_zip_write(path_in("no/such/dir/x.zip"), e, 1, &err), 0);
    ck_assert_msg(strstr(err.msg, "no/such/dir") != NULL, "%s", err.msg);
    ct_zip_entry unnamed[] = {{"", "1", 1, false}};
    ck_assert_int_lt(ct_zip_write(path_in("u.zip"), unnamed, 1, &err), 0);
}
END_TEST

START_TEST(test_snake_case)
{
    static const char *const pairs[][2] = {
        {"Conv2D", "conv2d"}, {"BatchNormalization", "batch_normalization"},
        {"GlobalAveragePooling2D", "global_average_pooling2d"}, {"LSTM", "lstm"},
        {"SimpleRNN", "simple_rnn"}, {"PReLU", "p_re_lu"}, {"Conv2DTranspose", "conv2d_transpose"},
        {"InputLayer", "input_layer"}, {"GRU", "gru"}, {"Dense", "dense"},
        {"MultiHeadAttention", "multi_head_attention"}, {"TimeDistributed", "time_distributed"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char out[128];
        ct_keras_snake_case(pairs[i][0], out, sizeof out);
        ck_assert_str_eq(out, pairs[i][1]);
    }
}
END_TEST

static Suite *zip_suite(void)
{
    Suite *s = suite_create("zip");
    TCase *tc = tcase_create("zip");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_foreign_archive);
    tcase_add_test(tc, test_truncated_everywhere);
    tcase_add_test(tc, test_damaged);
    tcase_add_test(tc, test_write_errors);
    tcase_add_test(tc, test_snake_case);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    dir = tu_tmpdir();
    if (!dir)
        return EXIT_FAILURE;
    SRunner *sr = srunner_create(zip_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
