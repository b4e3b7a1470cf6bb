/* test_text.c - `data import-text`: vocabulary, token ids, windows and their next-token
 * targets, the split, words, labelled lines, streaming, and every refused input. */
#include <hdf5.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "ctrain.h"
#include "data.h"
#include "guard.h"
#include "h5util.h"
#include "import.h"
#include "testutil.h"
#include "text_import.h"

static char *dir;

static const char *path_in(const char *name)
{
    static char buf[4][4200];
    static int at;
    at = (at + 1) % 4;
    snprintf(buf[at], sizeof buf[at], "%s/%s", dir, name);
    return buf[at];
}

/* Writes n bytes (NULs allowed) to dir/name; returns the path (static storage). */
static const char *write_bytes(const char *name, const char *bytes, size_t n)
{
    const char *path = path_in(name);
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert_int_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return path;
}

static ct_text_options opts(ct_text_level level, int64_t seq, int64_t stride, double split)
{
    ct_text_options o;
    ct_text_options_default(&o);
    o.level = level;
    o.seq_len = seq;
    o.stride = stride;
    o.split = split;
    return o;
}

/* Imports text into dir/out.h5 (a fresh file) and returns what was written. */
static ct_text_summary import(const char *name, const char *text, const ct_text_options *o)
{
    char in[4200];
    snprintf(in, sizeof in, "%s", write_bytes(name, text, strlen(text)));
    unlink(path_in("out.h5"));
    ct_error err = {0};
    ct_text_summary s;
    ck_assert_msg(ct_data_import_text(in, path_in("out.h5"), NULL, o, &s, &err) == 0, "%s",
                  err.msg);
    return s;
}

/* The int32 dataset name of out.h5, checked to have shape (d0) or (d0, d1), equal to want. */
static void expect_ids(const char *name, hsize_t d0, hsize_t d1, const int32_t *want)
{
    hid_t f = H5Fopen(path_in("out.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "no dataset %s", name);
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    ck_assert(H5Tequal(t, H5T_STD_I32LE) > 0);
    hsize_t dims[2] = {0, 0};
    int rank = H5Sget_simple_extent_dims(s, dims, NULL);
    ck_assert_int_eq(rank, d1 ? 2 : 1);
    ck_assert_msg(dims[0] == d0 && dims[1] == d1, "%s is %llu x %llu", name,
                  (unsigned long long)dims[0], (unsigned long long)dims[1]);
    size_t n = (size_t)(d0 * (d1 ? d1 : 1));
    int32_t *got = malloc(n * sizeof *got);
    ck_assert(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s[%zu] = %d, expected %d", name, i, got[i], want[i]);
    free(got);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
}

/* The strings of dataset name ("vocab", "classes"), joined by '|'. */
static void expect_strings(const char *name, const char *want)
{
    hid_t f = H5Fopen(path_in("out.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "no dataset %s", name);
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    ck_assert(H5Tis_variable_str(t) > 0);
    ck_assert_int_eq(H5Tget_cset(t), H5T_CSET_UTF8);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    char **v = calloc((size_t)n, sizeof *v), joined[4096] = "";
    ck_assert(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    for (hssize_t i = 0; i < n; i++)
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", i ? "|" : "",
                 v[i]);
    ck_assert_str_eq(joined, want);
    CT_H5_VLEN_RECLAIM(t, s, v);
    free(v);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
}

static bool exists(const char *name)
{
    hid_t f = H5Fopen(path_in("out.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    htri_t e = H5Lexists(f, name, H5P_DEFAULT);
    H5Fclose(f);
    return e > 0;
}

/* "abracadabra": a 5, b 2, r 2, c 1, d 1; ties go to the first seen: ids a 2, b 3, r 4,
 * c 5, d 6, so the text is 2 3 4 2 5 2 6 2 3 4 2. */
START_TEST(test_char_windows)
{
    ct_text_options o = opts(CT_TEXT_CHAR, 3, 0, 1);
    ct_text_summary s = import("abra.txt", "abracadabra", &o);
    ck_assert_int_eq(s.train_rows, 3);
    ck_assert_int_eq(s.validation_rows, 0);
    ck_assert_int_eq(s.vocab, 7);
    expect_strings("vocab", "|[UNK]|a|b|r|c|d");
    expect_ids("train/x", 3, 3, (int32_t[]){2, 3, 4, 2, 5, 2, 6, 2, 3});
    expect_ids("train/y", 3, 3, (int32_t[]){3, 4, 2, 5, 2, 6, 2, 3, 4});
    ck_assert(!exists("validation"));

    /* Overlapping windows: one per token that has seq_len tokens after it. */
    o.stride = 1;
    s = import("abra.txt", "abracadabra", &o);
    ck_assert_int_eq(s.train_rows, 8);
    expect_ids("train/x", 8, 3, (int32_t[]){2, 3, 4, 3, 4, 2, 4, 2, 5, 2, 5, 2, 5, 2, 6,
                                            2, 6, 2, 6, 2, 3, 2, 3, 4});
    expect_ids("train/y", 8, 3, (int32_t[]){3, 4, 2, 4, 2, 5, 2, 5, 2, 5, 2, 6, 2, 6, 2,
                                            6, 2, 3, 2, 3, 4, 3, 4, 2});
    /* A stride past the window skips tokens: starts 0 and 5. */
    o.stride = 5;
    s = import("abra.txt", "abracadabra", &o);
    ck_assert_int_eq(s.train_rows, 2);
    expect_ids("train/x", 2, 3, (int32_t[]){2, 3, 4, 2, 6, 2});
    expect_ids("train/y", 2, 3, (int32_t[]){3, 4, 2, 6, 2, 3});
}
END_TEST

/* The split is along the text: training gets the first floor(11 * 0.5) = 5 tokens,
 * validation the other 6, and no window reaches across. */
START_TEST(test_char_split)
{
    ct_text_options o = opts(CT_TEXT_CHAR, 3, 0, 0.5);
    ct_text_summary s = import("abra.txt", "abracadabra", &o);
    ck_assert_int_eq(s.train_rows, 1);
    ck_assert_int_eq(s.validation_rows, 1);
    expect_ids("train/x", 1, 3, (int32_t[]){2, 3, 4});
    expect_ids("train/y", 1, 3, (int32_t[]){3, 4, 2});
    expect_ids("validation/x", 1, 3, (int32_t[]){2, 6, 2});
    expect_ids("validation/y", 1, 3, (int32_t[]){6, 2, 3});

    /* Importing again with --split 1 into the same file leaves no stale validation data. */
    char in[4200];
    snprintf(in, sizeof in, "%s", path_in("abra.txt"));
    o.split = 1;
    ct_error err = {0};
    ck_assert_msg(ct_data_import_text(in, path_in("out.h5"), NULL, &o, &s, &err) == 0, "%s",
                  err.msg);
    ck_assert(!exists("validation/x") && !exists("validation/y"));
    ck_assert_int_eq(s.train_rows, 3);
}
END_TEST

/* The vocabulary's size counts the two reserved ids; the rest are unknown (1). */
START_TEST(test_char_vocab_size)
{
    ct_text_options o = opts(CT_TEXT_CHAR, 10, 0, 1);
    o.vocab_size = 4;
    ct_text_summary s = import("abra.txt", "abracadabra", &o);
    ck_assert_int_eq(s.vocab, 4);
    expect_strings("vocab", "|[UNK]|a|b");
    expect_ids("train/x", 1, 10, (int32_t[]){2, 3, 1, 2, 1, 2, 1, 2, 3, 1});
    expect_ids("train/y", 1, 10, (int32_t[]){3, 1, 2, 1, 2, 1, 2, 3, 1, 2});
    /* The level and the window length go with the vocabulary. */
    hid_t f = H5Fopen(path_in("out.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "vocab", H5P_DEFAULT);
    hid_t a = H5Aopen(d, "seq_len", H5P_DEFAULT);
    int64_t seq = 0;
    ck_assert(H5Aread(a, H5T_NATIVE_INT64, &seq) >= 0);
    ck_assert_int_eq(seq, 10);
    H5Aclose(a);
    a = H5Aopen(d, "level", H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    char level[16] = "";
    ck_assert(H5Tget_size(t) < sizeof level && H5Aread(a, t, level) >= 0);
    ck_assert_str_eq(level, "char");
    H5Tclose(t);
    H5Aclose(a);
    H5Dclose(d);
    H5Fclose(f);
}
END_TEST

/* Characters are code points: 2, 3 and 4 bytes of UTF-8 are one token each; a byte-order
 * mark at the start is no character. */
START_TEST(test_char_utf8)
{
    ct_text_options o = opts(CT_TEXT_CHAR, 4, 0, 1);
    ct_text_summary s = import("utf8.txt", "\xEF\xBB\xBFh\xC3\xA9\xC3\xA9\n\xE2\x82\xAC\xF0\x9D\x84\x9E", &o);
    ck_assert_int_eq(s.vocab, 7);
    expect_strings("vocab", "|[UNK]|\xC3\xA9|h|\n|\xE2\x82\xAC|\xF0\x9D\x84\x9E");
    expect_ids("train/x", 1, 4, (int32_t[]){3, 2, 2, 4});
    expect_ids("train/y", 1, 4, (int32_t[]){2, 2, 4, 5});
}
END_TEST

/* Words: lower-cased runs of ASCII letters, digits and apostrophes; every other character
 * but white space is a token of its own. */
START_TEST(test_word_level)
{
    ct_text_options o = opts(CT_TEXT_WORD, 3, 0, 1);
    ct_text_summary s = import("words.txt", "The cat's hat.\nThe  CAT sat!", &o);
    ck_assert_int_eq(s.vocab, 9);
    expect_strings("vocab", "|[UNK]|the|cat's|hat|.|cat|sat|!");
    /* the cat's hat . the cat sat ! = 2 3 4 5 2 6 7 8 */
    expect_ids("train/x", 2, 3, (int32_t[]){2, 3, 4, 5, 2, 6});
    expect_ids("train/y", 2, 3, (int32_t[]){3, 4, 5, 2, 6, 7});

    /* --vocab-size 4 keeps the 2 most frequent; a word over 100 bytes is unknown. */
    o.vocab_size = 4;
    char text[300] = "b a a ";
    memset(text + 6, 'x', 150);
    strcpy(text + 156, " a b c");
    o.seq_len = 5;
    s = import("long.txt", text, &o);
    expect_strings("vocab", "|[UNK]|a|b");
    expect_ids("train/x", 1, 5, (int32_t[]){3, 2, 2, 1, 2});
    expect_ids("train/y", 1, 5, (int32_t[]){2, 2, 1, 2, 3});
    hid_t f = H5Fopen(path_in("out.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "vocab", H5P_DEFAULT);
    hid_t a = H5Aopen(d, "level", H5P_DEFAULT), t = H5Aget_type(a);
    char level[16] = "";
    ck_assert(H5Aread(a, t, level) >= 0);
    ck_assert_str_eq(level, "word");
    H5Tclose(t);
    H5Aclose(a);
    H5Dclose(d);
    H5Fclose(f);
}
END_TEST

/* One row per line of text,label: x padded with 0 or cut, y the label; class names get
 * ids in order of first appearance and are stored. */
START_TEST(test_labels)
{
    ct_text_options o = opts(CT_TEXT_WORD, 4, 0, 0.75);
    o.labels = o.header = true;
    ct_text_summary s = import("reviews.csv",
                               "text,label\n"
                               "I liked it,pos\r\n"
                               "awful, truly , neg \n"
                               "\n"
                               "ok,pos\n"
                               "meh,neutral",
                               &o);
    ck_assert_int_eq(s.train_rows, 3);
    ck_assert_int_eq(s.validation_rows, 1);
    ck_assert_int_eq(s.classes, 3);
    expect_strings("vocab", "|[UNK]|i|liked|it|awful|,|truly|ok|meh");
    expect_strings("classes", "pos|neg|neutral");
    expect_ids("train/x", 3, 4, (int32_t[]){2, 3, 4, 0, 5, 6, 7, 0, 8, 0, 0, 0});
    expect_ids("train/y", 3, 0, (int32_t[]){0, 1, 0});
    expect_ids("validation/x", 1, 4, (int32_t[]){9, 0, 0, 0});
    expect_ids("validation/y", 1, 0, (int32_t[]){2});
    /* ctrain reads it as integer labels. */
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(path_in("out.h5"), "train/x", "train/y", 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert(ct_dataset_y_is_integer(ds));
    ck_assert_int_eq(ct_dataset_rows(ds), 3);
    ct_dataset_close(ds);

    /* Integer labels are kept as they are (no classes); long texts are cut, characters. */
    o = opts(CT_TEXT_CHAR, 2, 0, 1);
    o.labels = true;
    s = import("ints.csv", "abc,3\nb,0\n", &o);
    ck_assert_int_eq(s.classes, 0);
    ck_assert(!exists("classes"));
    expect_ids("train/x", 2, 2, (int32_t[]){3, 2, 2, 0});
    expect_ids("train/y", 2, 0, (int32_t[]){3, 0});
    /* A name among integers makes them all names. */
    s = import("mixed.csv", "a,1\nb,x\n", &o);
    expect_strings("classes", "1|x");
    expect_ids("train/y", 2, 0, (int32_t[]){0, 1});
}
END_TEST

/* A text of several blocks, with a character across the first block's end. */
START_TEST(test_streamed)
{
    size_t n = 3 * CT_TEXT_BLOCK + 123;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + i % 7);
    memcpy(text + CT_TEXT_BLOCK - 1, "\xC3\xA9", 2);
    text[n] = '\0';
    ct_text_options o = opts(CT_TEXT_CHAR, 100, 0, 0.9);
    ct_text_summary s = import("big.txt", text, &o);
    int64_t tokens = (int64_t)n - 1, train = (int64_t)(tokens * 0.9);
    ck_assert_int_eq(s.train_rows, (train - 101) / 100 + 1);
    ck_assert_int_eq(s.validation_rows, (tokens - train - 101) / 100 + 1);
    ck_assert_int_eq(s.vocab, 2 + 8);
    free(text);
    ct_error err = {0};
    ct_dataset *ds = ct_dataset_open(path_in("out.h5"), "validation/x", NULL, 1.0, &err);
    ck_assert_msg(ds != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_dataset_rows(ds), s.validation_rows);
    ct_dataset_close(ds);
}
END_TEST

static void expect_error(const char *in, const ct_text_options *o, ct_error_code code,
                         const char *fmt)
{
    char want[9000];
    snprintf(want, sizeof want, fmt, in);
    ct_error err = {0};
    ck_assert_int_eq(ct_data_import_text(in, path_in("bad.h5"), NULL, o, NULL, &err), -1);
    ck_assert_str_eq(err.msg, want);
    ck_assert_int_eq(err.code, code);
    struct stat st;
    ck_assert_msg(stat(path_in("bad.h5"), &st) < 0, "a failed import left its output");
}

static void expect_text_error(const char *text, size_t n, const ct_text_options *o,
                              const char *fmt)
{
    char in[4200];
    snprintf(in, sizeof in, "%s", write_bytes("bad.txt", text, n));
    expect_error(in, o, CT_ERR_DATA, fmt);
}

#define BAD(text, o, fmt) expect_text_error(text, sizeof text - 1, o, fmt)

START_TEST(test_bad_text)
{
    ct_text_options o = opts(CT_TEXT_CHAR, 3, 0, 1);
    BAD("", &o, "%s is empty");
    BAD("ab\0cd", &o, "%s:1: a NUL byte at byte offset 2; this is not a text file");
    BAD("ok\nb\xFF" "c", &o, "%s:2: invalid UTF-8 at byte offset 4; is this a UTF-8 text file?");
    BAD("ok\n\xC0\x80", &o, "%s:2: invalid UTF-8 at byte offset 3; is this a UTF-8 text file?");
    BAD("\xE2\x82" "abc", &o, "%s:1: invalid UTF-8 at byte offset 0; is this a UTF-8 text file?");
    BAD("abc\xED\xA0\x80", &o,
        "%s:1: invalid UTF-8 at byte offset 3; is this a UTF-8 text file?");
    BAD("abcd\xF0\x9D\x84", &o, "%s:1: invalid UTF-8 at byte offset 4 (the file ends inside a "
        "character); is this a UTF-8 text file?");
    BAD("abc", &o, "%s holds 3 tokens; --seq-len 3 needs at least 4 (a window and the token "
        "after it)");
    ct_text_options d;
    ct_text_options_default(&d);
    BAD("x", &d, "%s holds 1 token; --seq-len 100 needs at least 101 (a window and the token "
        "after it)");
    o.level = CT_TEXT_WORD;
    BAD(" \n\t ", &o, "%s holds 0 tokens; --seq-len 3 needs at least 4 (a window and the token "
        "after it)");
    o = opts(CT_TEXT_CHAR, 3, 0, 0.9);
    BAD("abracadabra", &o, "%s: the validation share, 2 of its 11 tokens (--split 0.9), is "
        "shorter than --seq-len + 1 (4); --split 1 makes no validation data");
    o.split = 0.2;
    BAD("abracadabra", &o, "%s: the training share, 2 of its 11 tokens (--split 0.2), is "
        "shorter than --seq-len + 1 (4)");
    /* 200000 overlapping windows of a million tokens: 1.6 TB of x and y. */
    size_t n = 1200000;
    char *big = malloc(n), in[4200];
    memset(big, 'a', n);
    snprintf(in, sizeof in, "%s", write_bytes("big.txt", big, n));
    free(big);
    o = opts(CT_TEXT_CHAR, 1000000, 1, 1);
    expect_error(in, &o, CT_ERR_USAGE, "%s: 200000 rows of 1000000 tokens would take 1490 GiB, "
                 "more than 1024; choose a larger --stride or a smaller --seq-len");
}
END_TEST

START_TEST(test_bad_files_and_options)
{
    ct_text_options o;
    ct_text_options_default(&o);
    const char *fifo = path_in("fifo.txt");
    unlink(fifo);
    ck_assert(mkfifo(fifo, 0600) == 0);
    char p[4200];
    snprintf(p, sizeof p, "%s", fifo);
    expect_error(p, &o, CT_ERR_IO, "cannot open %s: it is a FIFO, not a regular file");
    expect_error("/dev/zero", &o, CT_ERR_IO,
                 "cannot open %s: it is a character device, not a regular file");
    snprintf(p, sizeof p, "%s", path_in("absent.txt"));
    expect_error(p, &o, CT_ERR_IO, "cannot open %s: No such file or directory");

    snprintf(p, sizeof p, "%s", write_bytes("ok.txt", "abracadabra", 11));
    o.seq_len = 0;
    expect_error(p, &o, CT_ERR_USAGE, "--seq-len 0 is out of range (1 to 1000000)");
    o.seq_len = 1000001;
    expect_error(p, &o, CT_ERR_USAGE, "--seq-len 1000001 is out of range (1 to 1000000)");
    ct_text_options_default(&o);
    o.vocab_size = 2;
    expect_error(p, &o, CT_ERR_USAGE, "--vocab-size 2 is out of range: ids 0 and 1 are padding "
                 "and unknown tokens, so it takes 3 to 2147483647");
    ct_text_options_default(&o);
    const double splits[] = {0, -0.5, 1.5, NAN};
    const char *words[] = {"0", "-0.5", "1.5", "nan"};
    for (int i = 0; i < 4; i++) {
        char want[64];
        o.split = splits[i];
        snprintf(want, sizeof want, "--split %s is outside (0, 1]", words[i]);
        expect_error(p, &o, CT_ERR_USAGE, want);
    }
    ct_text_options_default(&o);
    o.labels = true;
    o.stride = 2;
    expect_error(p, &o, CT_ERR_USAGE, "--stride applies to windows of text, not to --labels");
}
END_TEST

START_TEST(test_bad_labels)
{
    ct_text_options o = opts(CT_TEXT_WORD, 4, 0, 1);
    o.labels = true;
    BAD("a,1\nno comma here\n", &o, "%s:2: expected text,label: the line has no comma");
    BAD("a,1\nb, \n", &o, "%s:2: the label after the last comma is empty");
    BAD("a,1\nb,-1\n", &o, "%s:2: label -1 is out of range (0 to 2147483647)");
    BAD("a,1\nb,99999999999\n", &o, "%s:2: label 99999999999 is out of range (0 to 2147483647)");
    o.header = true;
    BAD("text,label\n\n", &o, "%s holds no lines of text,label");
    o.header = false;
    o.split = 0.5;
    BAD("a,1\n", &o, "%s: --split 0.5 leaves none of its 1 rows for training");
    o.split = 1;
    /* A line over the CSV bound, and one within it. */
    size_t n = CT_CSV_LINE_MAX + 10;
    char *line = malloc(n);
    memset(line, 'a', n);
    memcpy(line + n - 3, ",1\n", 3);
    char in[4200];
    snprintf(in, sizeof in, "%s", write_bytes("long.csv", line, n));
    expect_error(in, &o, CT_ERR_DATA,
                 "%s:1: the line is longer than 1048576 bytes; is this a CSV file?");
    snprintf(in, sizeof in, "%s", write_bytes("fits.csv", line + 20, n - 20));
    ct_error err = {0};
    ct_text_summary s;
    ck_assert_msg(ct_data_import_text(in, path_in("out.h5"), "long", &o, &s, &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(s.train_rows, 1);
    ck_assert(exists("long/train/x") && exists("long/vocab"));
    free(line);
}
END_TEST

/* What the phase reporter last heard. */
typedef struct heard {
    int calls;
    int64_t done, total;
    char what[4300], unit[16];
} heard;

static void hear(void *ctx, const char *what, int64_t done, int64_t total, const char *unit,
                 double elapsed)
{
    heard *h = ctx;
    ck_assert(done <= total && done >= h->done && elapsed >= 0);
    h->calls++;
    h->done = done;
    h->total = total;
    snprintf(h->what, sizeof h->what, "%s", what);
    snprintf(h->unit, sizeof h->unit, "%s", unit);
}

/* Progress counts the bytes of both readings; a stop ends the import with no output. */
START_TEST(test_progress_and_stop)
{
    heard h = {0};
    ct_set_phase_reporter(hear, &h);
    ct_text_options o = opts(CT_TEXT_CHAR, 3, 0, 1);
    import("abra.txt", "abracadabra", &o);
    ct_set_phase_reporter(NULL, NULL);
    char want[4300];
    snprintf(want, sizeof want, "importing %s", path_in("abra.txt"));
    ck_assert_str_eq(h.what, want);
    ck_assert_str_eq(h.unit, "bytes");
    ck_assert_int_eq(h.total, 22);
    ck_assert_int_eq(h.done, 22);
    ck_assert_int_ge(h.calls, 3);

    ct_stop_set_grace(0);
    ct_request_stop();
    snprintf(want, sizeof want, "%s", path_in("abra.txt"));
    expect_error(want, &o, CT_ERR_INTERRUPT, "stopped by a signal while importing %s (line 1)");
    ct_stop_clear();
    ct_stop_set_grace(0.25);
}
END_TEST

/* Grows the file once the second reading has begun (the reporter hears done > size after
 * its first block), so that it finds more than the first. */
typedef struct grower {
    const char *path, *more;
    int64_t size;
} grower;

static void grow(void *ctx, const char *what, int64_t done, int64_t total, const char *unit,
                 double elapsed)
{
    (void)what, (void)total, (void)unit, (void)elapsed;
    grower *g = ctx;
    if (done <= g->size || !g->more)
        return;
    FILE *f = fopen(g->path, "a");
    ck_assert(f != NULL);
    fputs(g->more, f);
    fclose(f);
    g->more = NULL;
}

/* A file that changes between the two readings is refused, not half written. */
START_TEST(test_changed_between_readings)
{
    char in[4200];
    snprintf(in, sizeof in, "%s", write_bytes("grows.txt", "abracadabra", 11));
    grower g = {in, "abracadabra", 11};
    ct_set_phase_reporter(grow, &g);
    ct_text_options o = opts(CT_TEXT_CHAR, 3, 0, 1);
    expect_error(in, &o, CT_ERR_DATA, "%s changed while it was imported (it is read twice); "
                 "import a copy that stays as it is");
    /* A new token, and with labels a new class name. */
    snprintf(in, sizeof in, "%s", write_bytes("grows.txt", "abracadabra", 11));
    g = (grower){in, "z", 11};
    expect_error(in, &o, CT_ERR_DATA, "%s changed while it was imported (it is read twice); "
                 "import a copy that stays as it is");
    snprintf(in, sizeof in, "%s", write_bytes("grows.csv", "a,x\n", 4));
    g = (grower){in, "a,y\n", 4};
    o.labels = true;
    expect_error(in, &o, CT_ERR_DATA, "%s changed while it was imported (it is read twice); "
                 "import a copy that stays as it is");
    ct_set_phase_reporter(NULL, NULL);
}
END_TEST

static Suite *text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *tc = tcase_create("import");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_char_windows);
    tcase_add_test(tc, test_char_split);
    tcase_add_test(tc, test_char_vocab_size);
    tcase_add_test(tc, test_char_utf8);
    tcase_add_test(tc, test_word_level);
    tcase_add_test(tc, test_labels);
    tcase_add_test(tc, test_streamed);
    tcase_add_test(tc, test_bad_text);
    tcase_add_test(tc, test_bad_files_and_options);
    tcase_add_test(tc, test_bad_labels);
    tcase_add_test(tc, test_progress_and_stop);
    tcase_add_test(tc, test_changed_between_readings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    dir = tu_tmpdir();
    if (!dir)
        return EXIT_FAILURE;
    SRunner *sr = srunner_create(text_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
