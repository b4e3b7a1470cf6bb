/* text_import.h - the state of ct_data_import_text, shared by the file's reader
 * (text_scan.c: blocks, UTF-8, tokens, labelled lines) and its writer (text_import.c:
 * vocabulary, windows, HDF5). Internal.
 *
 * Ownership: the job lives on ct_data_import_text's stack; the buffers and tables it
 * points to are allocated there and freed before it returns. */
#ifndef CT_TEXT_IMPORT_H
#define CT_TEXT_IMPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "ctrain.h"
#include "import.h"
#include "vocab.h"

/* Longer words are out of the vocabulary (id 1), so a word's buffer stays small. */
#define CT_TEXT_WORD_MAX 100
/* The file is read in blocks of this many bytes (a stop comes between two). */
#define CT_TEXT_BLOCK (1u << 20)
/* The longest class name. */
#define CT_TEXT_LABEL_MAX 256

/* Rows of one share of the text: train or validation. */
typedef struct ct_text_part {
    hid_t x, y;
    int64_t rows, written;   /* rows it gets, rows written so far */
} ct_text_part;

typedef struct ct_text_job {
    const char *path;
    const ct_text_options *opt;
    int64_t seq, stride;
    bool counting;             /* the first pass: counts; the second writes */
    ct_error *err;
    ct_vocab *vocab, *classes;

    /* reading */
    int fd;
    int64_t offset, line, size;
    double started;
    char what[4200];
    unsigned char *block;
    /* UTF-8: the character being decoded */
    uint32_t cp;
    int need, have;
    char seq_bytes[4];
    int64_t seq_off;
    /* the word being read */
    char word[CT_TEXT_WORD_MAX];
    size_t wlen;
    bool wlong;
    /* labelled lines */
    char *lbuf;
    size_t llen, lcap;
    bool int_labels;
    int64_t bad_label_line;
    char bad_label[CT_TEXT_LABEL_MAX + 1];

    /* counts: tokens (or rows) in this pass, the first pass's total, validation's start */
    int64_t tokens, rows, total, split_at;
    int64_t vocab_used;        /* ids in the vocabulary, 0 and 1 included */

    /* writing */
    ct_out_file out;
    ct_text_part part[2];
    int cur;
    int32_t *win;              /* the window being filled: seq + 1 tokens */
    int64_t wfill, skip;
    int32_t *bx, *by;          /* rows waiting to be written */
    int64_t held, hold, rowfill;
} ct_text_job;

/* Reads the file once, start to end, handing tokens to ct_text_token (and labels to
 * ct_text_label, rows' ends to ct_text_row_end). Returns 0 or -1 with j->err set. */
int ct_text_scan(ct_text_job *j);

/* Called by the reader: one token (tok NULL: an over-long word, out of the vocabulary);
 * a line's label (its id into *id on the second reading); a labelled row's start and end. */
int ct_text_token(ct_text_job *j, const char *tok, size_t n);
int ct_text_label(ct_text_job *j, const char *label, size_t n, int32_t *id);
int ct_text_row_begin(ct_text_job *j);
int ct_text_row_end(ct_text_job *j, int32_t label);
/* The error for a file whose second reading differs from the first. */
int ct_text_changed(ct_text_job *j);

#endif
