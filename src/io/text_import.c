/* text_import.c - a UTF-8 text into token ids in HDF5 (ct_data_import_text): the
 * vocabulary from a first reading, then windows of ids (a language model's inputs and
 * next-token targets) or labelled rows from a second. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard.h"
#include "h5util.h"
#include "text_import.h"

#define SEQ_MAX 1000000
#define WORD_VOCAB 20000
/* Refuse to write more than this (a tiny stride over a long text). */
#define OUT_MAX ((int64_t)1 << 40)
/* Rows are written in pieces of about this many bytes. */
#define PIECE_BYTES (1 << 20)

void ct_text_options_default(ct_text_options *opt)
{
    *opt = (ct_text_options){.level = CT_TEXT_CHAR, .seq_len = 100, .split = 0.9};
}

static int check_options(const ct_text_options *o, ct_error *err)
{
    if (o->seq_len < 1 || o->seq_len > SEQ_MAX)
        return ct_err(err, CT_ERR_USAGE, "--seq-len %" PRId64 " is out of range (1 to %d)",
                      o->seq_len, SEQ_MAX);
    if (o->stride < 0 || o->stride > SEQ_MAX)
        return ct_err(err, CT_ERR_USAGE, "--stride %" PRId64 " is out of range (1 to %d)",
                      o->stride, SEQ_MAX);
    if (o->stride && o->labels)
        return ct_err(err, CT_ERR_USAGE, "--stride applies to windows of text, not to --labels");
    if (o->header && !o->labels)
        return ct_err(err, CT_ERR_USAGE, "--header applies to --labels only");
    if (o->vocab_size != 0 && (o->vocab_size < 3 || o->vocab_size > INT32_MAX))
        return ct_err(err, CT_ERR_USAGE, "--vocab-size %" PRId64 " is out of range: ids 0 and 1 "
                      "are padding and unknown tokens, so it takes 3 to %d", o->vocab_size,
                      INT32_MAX);
    if (!(o->split > 0 && o->split <= 1))
        return ct_err(err, CT_ERR_USAGE, "--split %g is outside (0, 1]", o->split);
    if (o->level != CT_TEXT_CHAR && o->level != CT_TEXT_WORD)
        return ct_err(err, CT_ERR_USAGE, "unknown text level %d", (int)o->level);
    return 0;
}

int ct_text_changed(ct_text_job *j)
{
    return ct_err(j->err, CT_ERR_DATA, "%s changed while it was imported (it is read twice); "
                  "import a copy that stays as it is", j->path);
}

/* ---- labels ---- */

static bool is_integer(const char *s, size_t n)
{
    size_t i = n && s[0] == '-';
    if (i == n)
        return false;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* First reading: every label is counted as a class name, and remembered as integer or
 * not; the second gives its id. */
int ct_text_label(ct_text_job *j, const char *label, size_t n, int32_t *id)
{
    char buf[CT_TEXT_LABEL_MAX + 1];
    memcpy(buf, label, n);
    buf[n] = '\0';
    bool integer = is_integer(buf, n);
    long long v = integer ? strtoll(buf, NULL, 10) : -1;
    if (!j->counting) {
        int64_t e = ct_vocab_find(j->classes, buf, n);
        if (e < 0)
            return ct_text_changed(j);
        *id = (int32_t)(j->int_labels ? v : e);
        return 0;
    }
    if (!integer)
        j->int_labels = false;
    else if ((v < 0 || v > INT32_MAX) && !j->bad_label_line) {
        j->bad_label_line = j->line;
        memcpy(j->bad_label, buf, n + 1);
    }
    int64_t e = ct_vocab_add(j->classes, buf, n);
    if (e == -2)
        return ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": more than %d distinct labels",
                      j->path, j->line, CT_VOCAB_MAX_ENTRIES);
    if (e < 0)
        return ct_err(j->err, CT_ERR_NOMEM, "%s: out of memory", j->path);
    return 0;
}

/* ---- rows ---- */

static int write_ids(ct_text_job *j, hid_t d, int rank, int64_t at, int64_t n,
                     const int32_t *ids)
{
    hsize_t start[2] = {(hsize_t)at, 0}, count[2] = {(hsize_t)n, (hsize_t)j->seq};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    herr_t rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count,
                                                  NULL) >= 0)
        rc = H5Dwrite(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, ids);
    ct_h5_close_space(&fs);
    ct_h5_close_space(&ms);
    if (rc < 0) {
        char why[CT_H5_REASON_MAX];
        ct_h5_failure(why);
        return ct_err(j->err, CT_ERR_IO, "writing %s failed%s%s", j->out.path,
                      why[0] ? ": " : "", why);
    }
    return 0;
}

static int flush_rows(ct_text_job *j)
{
    ct_text_part *p = &j->part[j->cur];
    int yrank = j->opt->labels ? 1 : 2;
    if (j->held && (write_ids(j, p->x, 2, p->written, j->held, j->bx) < 0 ||
                    write_ids(j, p->y, yrank, p->written, j->held, j->by) < 0))
        return -1;
    p->written += j->held;
    j->held = 0;
    return 0;
}

/* Moves on to the validation rows once the training share is read. */
static int next_part(ct_text_job *j, int64_t at)
{
    if (j->cur == 1 || at < j->split_at)
        return 0;
    if (flush_rows(j) < 0)
        return -1;
    j->cur = 1;
    j->wfill = j->skip = 0;
    return 0;
}

static int room_for_row(ct_text_job *j)
{
    const ct_text_part *p = &j->part[j->cur];
    return p->written + j->held < p->rows ? 0 : ct_text_changed(j);
}

int ct_text_row_begin(ct_text_job *j)
{
    if (j->counting)
        return 0;
    j->rowfill = 0;
    return next_part(j, j->rows) < 0 ? -1 : room_for_row(j);
}

int ct_text_row_end(ct_text_job *j, int32_t label)
{
    if (j->counting)
        return 0;
    int32_t *x = j->bx + j->held * j->seq;
    for (int64_t i = j->rowfill; i < j->seq; i++)
        x[i] = 0;
    j->by[j->held++] = label;
    return j->held == j->hold ? flush_rows(j) : 0;
}

/* A token of the text into the window; a full window is a row (x its first seq tokens, y
 * its last), and the next window starts stride tokens on. */
static int window_token(ct_text_job *j, int32_t id)
{
    if (j->skip) {
        j->skip--;
        return 0;
    }
    j->win[j->wfill++] = id;
    if (j->wfill <= j->seq)
        return 0;
    if (room_for_row(j) < 0)
        return -1;
    size_t row = (size_t)j->seq * sizeof *j->win;
    memcpy(j->bx + j->held * j->seq, j->win, row);
    memcpy(j->by + j->held * j->seq, j->win + 1, row);
    j->held++;
    int64_t keep = j->seq + 1 - j->stride;
    if (keep > 0)
        memmove(j->win, j->win + j->stride, (size_t)keep * sizeof *j->win);
    j->wfill = keep > 0 ? keep : 0;
    j->skip = keep < 0 ? -keep : 0;
    return j->held == j->hold ? flush_rows(j) : 0;
}

int ct_text_token(ct_text_job *j, const char *tok, size_t n)
{
    int64_t at = j->tokens++;
    if (j->counting) {
        int64_t e = tok ? ct_vocab_add(j->vocab, tok, n) : 0;
        if (e == -2)
            return ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": more than %d distinct tokens; "
                          "is this a text?", j->path, j->line, CT_VOCAB_MAX_ENTRIES);
        if (e < 0)
            return ct_err(j->err, CT_ERR_NOMEM, "%s: out of memory", j->path);
        return 0;
    }
    int64_t e = tok ? ct_vocab_find(j->vocab, tok, n) : 0;
    if (e < 0)
        return ct_text_changed(j);
    int32_t id = tok ? ct_vocab_id(j->vocab, e) : 1;
    if (j->opt->labels) {
        if (j->rowfill < j->seq)
            j->bx[j->held * j->seq + j->rowfill++] = id;
        return 0;
    }
    return next_part(j, at) < 0 ? -1 : window_token(j, id);
}

/* ---- shares ---- */

static int64_t windows(int64_t tokens, int64_t seq, int64_t stride)
{
    return tokens > seq ? (tokens - seq - 1) / stride + 1 : 0;
}

/* Splits the counted tokens (or rows) into training and validation rows. */
static int plan_parts(ct_text_job *j)
{
    const ct_text_options *o = j->opt;
    int64_t n = o->labels ? j->rows : j->tokens;
    j->total = n;
    j->split_at = o->split >= 1 ? n : (int64_t)floor((double)n * o->split);
    if (o->split < 1 && n > 0 && j->split_at >= n)
        j->split_at = n - 1;   /* rounding: a share under 1 leaves validation a token */
    if (o->labels) {
        if (n == 0)
            return ct_err(j->err, CT_ERR_DATA, "%s holds no lines of text,label", j->path);
        j->part[0].rows = j->split_at;
        j->part[1].rows = n - j->split_at;
        if (j->split_at == 0)
            return ct_err(j->err, CT_ERR_DATA, "%s: --split %g leaves none of its %" PRId64
                          " rows for training", j->path, o->split, n);
        return 0;
    }
    if (n <= j->seq)
        return ct_err(j->err, CT_ERR_DATA, "%s holds %" PRId64 " token%s; --seq-len %" PRId64
                      " needs at least %" PRId64 " (a window and the token after it)", j->path,
                      n, n == 1 ? "" : "s", j->seq, j->seq + 1);
    j->part[0].rows = windows(j->split_at, j->seq, j->stride);
    j->part[1].rows = windows(n - j->split_at, j->seq, j->stride);
    if (j->part[0].rows == 0 || (o->split < 1 && j->part[1].rows == 0)) {
        bool train = j->part[0].rows == 0;
        return ct_err(j->err, CT_ERR_DATA, "%s: the %s share, %" PRId64 " of its %" PRId64
                      " tokens (--split %g), is shorter than --seq-len + 1 (%" PRId64 ")%s",
                      j->path, train ? "training" : "validation",
                      train ? j->split_at : n - j->split_at, n, o->split, j->seq + 1,
                      train ? "" : "; --split 1 makes no validation data");
    }
    return 0;
}

/* x (and, for windows, y) would fill a disk: a tiny stride over a long text. */
static int check_size(ct_text_job *j)
{
    double rows = (double)(j->part[0].rows + j->part[1].rows);
    double bytes = (j->opt->labels ? 4.0 : 8.0) * rows * (double)j->seq;
    if (bytes <= (double)OUT_MAX)
        return 0;
    return ct_err(j->err, CT_ERR_USAGE, "%s: %.0f rows of %" PRId64 " tokens would take %.0f "
                  "GiB, more than 1024; choose a larger --stride or a smaller --seq-len",
                  j->path, rows, j->seq, bytes / (1 << 30));
}

/* ---- the HDF5 file ---- */

static int h5_failed(ct_text_job *j, const char *name)
{
    char why[CT_H5_REASON_MAX];
    ct_h5_failure(why);
    return ct_err(j->err, CT_ERR_IO, "%s: writing '%s' in '%s' failed%s%s", j->out.path, name,
                  j->out.group && j->out.group[0] ? j->out.group : "/", why[0] ? ": " : "", why);
}

/* Removes the dataset at name ("validation/x") if it is there, so that a new one can take
 * its place or none is left from an earlier import. */
static int drop(ct_text_job *j, const char *name)
{
    char part[64];
    for (const char *s = strchr(name, '/'); s; s = strchr(s + 1, '/')) {
        snprintf(part, sizeof part, "%.*s", (int)(s - name), name);
        if (H5Lexists(j->out.loc, part, H5P_DEFAULT) <= 0)
            return 0;
    }
    if (H5Lexists(j->out.loc, name, H5P_DEFAULT) > 0 &&
        H5Ldelete(j->out.loc, name, H5P_DEFAULT) < 0)
        return h5_failed(j, name);
    return 0;
}

/* A new dataset (with its parent groups) of type, rank and dims in the group. */
static hid_t create(ct_text_job *j, const char *name, hid_t type, int rank, const hsize_t *dims)
{
    if (drop(j, name) < 0)
        return H5I_INVALID_HID;
    hid_t space = H5Screate_simple(rank, dims, NULL), lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t d = H5I_INVALID_HID;
    if (space >= 0 && lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        d = H5Dcreate2(j->out.loc, name, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    ct_h5_close_space(&space);
    if (d < 0)
        h5_failed(j, name);
    return d;
}

static int create_parts(ct_text_job *j)
{
    static const char *names[2][2] = {{"train/x", "train/y"},
                                      {"validation/x", "validation/y"}};
    for (int p = 0; p < 2; p++) {
        if (j->part[p].rows == 0) {
            if (drop(j, names[p][0]) < 0 || drop(j, names[p][1]) < 0)
                return -1;
            continue;
        }
        hsize_t dims[2] = {(hsize_t)j->part[p].rows, (hsize_t)j->seq};
        j->part[p].x = create(j, names[p][0], H5T_STD_I32LE, 2, dims);
        if (j->part[p].x < 0)
            return -1;
        j->part[p].y = create(j, names[p][1], H5T_STD_I32LE, j->opt->labels ? 1 : 2, dims);
        if (j->part[p].y < 0)
            return -1;
    }
    return 0;
}

/* A fixed-length string attribute, as Keras writes its own. */
static herr_t put_attr_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    herr_t rc = -1;
    if (t >= 0 && s >= 0 && H5Tset_size(t, strlen(value) + 1) >= 0)
        a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0)
        rc = H5Awrite(a, t, value);
    if (a >= 0)
        H5Aclose(a);
    if (t >= 0)
        H5Tclose(t);
    ct_h5_close_space(&s);
    return rc;
}

static herr_t put_attr_i64(hid_t obj, const char *name, int64_t value)
{
    hid_t s = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    herr_t rc = -1;
    if (s >= 0)
        a = H5Acreate2(obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0)
        rc = H5Awrite(a, H5T_NATIVE_INT64, &value);
    if (a >= 0)
        H5Aclose(a);
    ct_h5_close_space(&s);
    return rc;
}

/* Strings of table t by id: the vocabulary ("", "[UNK]", then its kept tokens by rank)
 * or the class names (in order of first appearance). */
static int write_strings(ct_text_job *j, const char *name, const ct_vocab *t, int64_t n)
{
    const char **s = malloc((size_t)n * sizeof *s);
    if (!s)
        return ct_err(j->err, CT_ERR_NOMEM, "%s: out of memory", j->path);
    bool vocab = t == j->vocab;
    for (int64_t i = 0; i < n; i++)
        s[i] = !vocab ? ct_vocab_token(t, i)
               : i < 2 ? (i ? "[UNK]" : "")
                       : ct_vocab_token(t, ct_vocab_entry_of(t, (int32_t)i));
    hid_t type = H5Tcopy(H5T_C_S1), d = H5I_INVALID_HID;
    hsize_t dims[1] = {(hsize_t)n};
    if (type >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(type, H5T_CSET_UTF8) >= 0)
        d = create(j, name, type, 1, dims);
    herr_t rc = d >= 0 ? H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) : -1;
    if (rc >= 0 && vocab)
        rc = put_attr_str(d, "level", j->opt->level == CT_TEXT_WORD ? "word" : "char");
    if (rc >= 0 && vocab)
        rc = put_attr_i64(d, "seq_len", j->seq);
    ct_h5_close_dataset(&d);
    if (type >= 0)
        H5Tclose(type);
    free(s);
    return rc < 0 ? h5_failed(j, name) : 0;
}

static void close_parts(ct_text_job *j)
{
    for (int p = 0; p < 2; p++) {
        ct_h5_close_dataset(&j->part[p].x);
        ct_h5_close_dataset(&j->part[p].y);
    }
}

/* ---- the two readings ---- */

static int first_pass(ct_text_job *j)
{
    j->counting = true;
    if (ct_text_scan(j) < 0)
        return -1;
    if (j->offset == 0)
        return ct_err(j->err, CT_ERR_DATA, "%s is empty", j->path);
    if (j->opt->labels && j->int_labels && j->bad_label_line)
        return ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": label %s is out of range (0 to %d)",
                      j->path, j->bad_label_line, j->bad_label, INT32_MAX);
    if (plan_parts(j) < 0 || check_size(j) < 0)
        return -1;
    int64_t size = j->opt->vocab_size;
    if (!size)
        size = j->opt->level == CT_TEXT_WORD ? WORD_VOCAB : ct_vocab_entries(j->vocab) + 2;
    int64_t used = ct_vocab_rank(j->vocab, size);
    if (used < 0)
        return ct_err(j->err, CT_ERR_NOMEM, "%s: out of memory", j->path);
    j->vocab_used = used;
    return 0;
}

static int alloc_rows(ct_text_job *j)
{
    j->hold = PIECE_BYTES / (j->seq * 4);
    if (j->hold < 1)
        j->hold = 1;
    size_t ids = (size_t)(j->hold * j->seq);
    j->bx = malloc(ids * sizeof *j->bx);
    j->by = malloc((j->opt->labels ? (size_t)j->hold : ids) * sizeof *j->by);
    j->win = malloc((size_t)(j->seq + 1) * sizeof *j->win);
    if (!j->bx || !j->by || !j->win)
        return ct_err(j->err, CT_ERR_NOMEM, "%s: out of memory", j->path);
    return 0;
}

/* Everything the second reading must have found as the first did. */
static int check_second(ct_text_job *j)
{
    int64_t n = j->opt->labels ? j->rows : j->tokens;
    if (n != j->total || j->part[0].written != j->part[0].rows ||
        j->part[1].written != j->part[1].rows)
        return ct_text_changed(j);
    return 0;
}

static int second_pass(ct_text_job *j, const char *out, const char *group)
{
    if (alloc_rows(j) < 0)
        return -1;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = ct_out_open(&j->out, out, group, j->err);
    if (rc == 0)
        rc = create_parts(j);
    j->counting = false;
    if (rc == 0)
        rc = ct_text_scan(j);
    if (rc == 0)
        rc = flush_rows(j);
    if (rc == 0)
        rc = check_second(j);
    close_parts(j);
    if (rc == 0)
        rc = write_strings(j, "vocab", j->vocab, j->vocab_used);
    bool names = j->opt->labels && !j->int_labels;
    if (rc == 0)
        rc = names ? write_strings(j, "classes", j->classes, ct_vocab_entries(j->classes))
                   : drop(j, "classes");
    if (rc == 0)
        rc = ct_out_finish(&j->out, j->err);
    ct_out_close(&j->out);
    ct_h5_quiet_off(&q);
    return rc;
}

static int open_text(ct_text_job *j)
{
    if (ct_check_regular(j->path, "open", j->err) < 0)
        return -1;
    j->fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (j->fd < 0 || fstat(j->fd, &st) < 0)
        return ct_err(j->err, CT_ERR_IO, "cannot open %s: %s", j->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ct_check_regular(j->path, "open", j->err);
    j->size = st.st_size;
    j->block = malloc(CT_TEXT_BLOCK);
    j->vocab = ct_vocab_new();
    j->classes = ct_vocab_new();
    if (!j->block || !j->vocab || !j->classes)
        return ct_err(j->err, CT_ERR_NOMEM, "%s: out of memory", j->path);
    return 0;
}

static void job_free(ct_text_job *j)
{
    if (j->fd >= 0)
        close(j->fd);
    free(j->block);
    free(j->lbuf);
    free(j->bx);
    free(j->by);
    free(j->win);
    ct_vocab_free(j->vocab);
    ct_vocab_free(j->classes);
}

int ct_data_import_text(const char *path, const char *out, const char *group,
                        const ct_text_options *opt, ct_text_summary *summary, ct_error *err)
{
    if (check_options(opt, err) < 0)
        return -1;
    ct_text_job j;
    memset(&j, 0, sizeof j);
    j.path = path;
    j.opt = opt;
    j.err = err;
    j.seq = opt->seq_len;
    j.stride = opt->stride ? opt->stride : opt->seq_len;
    j.int_labels = true;
    j.fd = -1;
    j.out.file = j.out.loc = H5I_INVALID_HID;
    for (int p = 0; p < 2; p++)
        j.part[p].x = j.part[p].y = H5I_INVALID_HID;
    snprintf(j.what, sizeof j.what, "importing %s", path);
    j.started = ct_stop_clock();
    int rc = open_text(&j);
    if (rc == 0)
        rc = first_pass(&j);
    if (rc == 0)
        rc = second_pass(&j, out, group);
    if (rc == 0) {
        ct_phase_progress(j.started, j.what, 2 * j.size, 2 * j.size, "bytes");
        if (summary)
            *summary = (ct_text_summary){
                j.part[0].rows, j.part[1].rows, j.vocab_used,
                opt->labels && !j.int_labels ? ct_vocab_entries(j.classes) : 0};
    }
    job_free(&j);
    return rc;
}
