/* csv_import.c - a CSV file into `group`/x (float32, rows x features) and `group`/y.
 *
 * Cells are numbers; with a categorical encoding asked for, a column that holds any cell
 * that is not a number is categorical: its distinct texts (numbers in it by their value,
 * "%.15g") are sorted bytewise and coded 0, 1, ... in that order, so two files holding the
 * same categories get the same codes whatever their rows' order. A categorical feature
 * becomes one column of codes (integer) or one 0/1 column per category (onehot), and its
 * categories are stored as `group`/categories_J (J: the CSV column, from 0); a categorical
 * label column becomes int32 class ids with the names in `group`/classes, as import-text
 * --labels stores them. The whole file is held in memory (8 bytes a cell, 4 more with an
 * encoding). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctrain.h"
#include "guard.h"
#include "h5util.h"
#include "import.h"
#include "vocab.h"

/* Lines between looks at the stop flag. */
#define CSV_STOP_LINES 4096

typedef struct csv {
    const char *path;
    ct_csv_categorical cat;
    int64_t line;
    int64_t ncols, nrows;
    double *cells;           /* nrows * ncols, row-major */
    int32_t *texts;          /* with an encoding: a text cell's entry in its column's table,
                              * -1 for a number; else NULL */
    int64_t len, cap;        /* cells stored / allocated */
    ct_vocab **tables;       /* with an encoding: per column, its texts (NULL: none yet) */
    int64_t ntables;
} csv;

static void csv_free(csv *c)
{
    free(c->cells);
    free(c->texts);
    for (int64_t j = 0; j < c->ntables; j++)
        ct_vocab_free(c->tables[j]);
    free(c->tables);
}

static int csv_push(csv *c, double v, int32_t text, ct_error *err)
{
    if (c->len == c->cap) {
        int64_t cap = c->cap ? c->cap * 2 : 4096;
        double *p = realloc(c->cells, (size_t)cap * sizeof *p);
        if (p)
            c->cells = p;
        int32_t *t = c->cat && p ? realloc(c->texts, (size_t)cap * sizeof *t) : NULL;
        if (t)
            c->texts = t;
        if (!p || (c->cat && !t))
            return ct_err(err, CT_ERR_NOMEM, "%s: out of memory", c->path);
        c->cap = cap;
    }
    if (c->cat)
        c->texts[c->len] = text;
    c->cells[c->len++] = v;
    return 0;
}

/* The table of texts of column j (0-based), made on first use. */
static ct_vocab *table_of(csv *c, int64_t j, ct_error *err)
{
    if (j >= c->ntables) {
        ct_vocab **t = realloc(c->tables, (size_t)(j + 1) * sizeof *t);
        if (!t) {
            ct_err(err, CT_ERR_NOMEM, "%s: out of memory", c->path);
            return NULL;
        }
        for (int64_t k = c->ntables; k <= j; k++)
            t[k] = NULL;
        c->tables = t;
        c->ntables = j + 1;
    }
    if (!c->tables[j] && !(c->tables[j] = ct_vocab_new()))
        ct_err(err, CT_ERR_NOMEM, "%s: out of memory", c->path);
    return c->tables[j];
}

static int add_text(csv *c, int64_t j, const char *s, size_t len, int32_t *entry, ct_error *err)
{
    ct_vocab *t = table_of(c, j, err);
    if (!t)
        return -1;
    int64_t e = ct_vocab_add(t, s, len);
    if (e == -2)
        return ct_err(err, CT_ERR_DATA, "%s:%" PRId64 ": column %" PRId64 " holds more than %d "
                      "distinct texts; is it really categorical?", c->path, c->line, j,
                      CT_VOCAB_MAX_ENTRIES);
    if (e < 0)
        return ct_err(err, CT_ERR_NOMEM, "%s: out of memory", c->path);
    *entry = (int32_t)e;
    return 0;
}

static bool is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* Parses cell [s, e) of column j (0-based) at 1-based character position pos: a number
 * into *out, or with an encoding a text into *text (its entry). */
static int csv_cell(csv *c, const char *s, const char *e, int64_t j, int64_t pos, double *out,
                    int32_t *text, ct_error *err)
{
    while (s < e && is_blank(*s))
        s++, pos++;
    while (e > s && is_blank(e[-1]))
        e--;
    char buf[128];
    size_t len = (size_t)(e - s);
    *text = -1;
    *out = 0;
    if (len == 0)
        return ct_err(err, CT_ERR_DATA, "%s:%" PRId64 ":%" PRId64 ": empty cell; expected a %s",
                      c->path, c->line, pos, c->cat ? "number or a category" : "number");
    double v = NAN;
    char *end = NULL;
    if (len < sizeof buf) {
        memcpy(buf, s, len);
        buf[len] = '\0';
        errno = 0;
        v = strtod(buf, &end);
    }
    bool number = end && *end == '\0' && end != buf && isfinite(v);
    if (number) {
        *out = v;
        return 0;
    }
    if (c->cat)
        return add_text(c, j, s, len, text, err);
    if (len >= sizeof buf)
        return ct_err(err, CT_ERR_DATA, "%s:%" PRId64 ":%" PRId64 ": '%.32s...' is not a number",
                      c->path, c->line, pos, s);
    bool word = *end != '\0' || end == buf;
    return ct_err(err, CT_ERR_DATA, "%s:%" PRId64 ":%" PRId64 ": '%s' is not a number%s",
                  c->path, c->line, pos, buf,
                  c->line == 1 && word
                      ? " (if the first line names the columns, give --header to skip it)"
                  : word ? " (for a column of categories, give --categorical integer or onehot)"
                         : "");
}

static int csv_line(csv *c, const char *text, ct_error *err)
{
    const char *p = text;
    while (*p && is_blank(*p))
        p++;
    if (!*p)
        return 0;   /* blank lines carry no row */
    int64_t n = 0;
    for (const char *s = text;;) {
        const char *e = strchr(s, ',');
        if (!e)
            e = s + strlen(s);
        double v = 0;
        int32_t t = -1;
        if (csv_cell(c, s, e, n, (int64_t)(s - text) + 1, &v, &t, err) < 0 ||
            csv_push(c, v, t, err) < 0)
            return -1;
        n++;
        if (!*e)
            break;
        s = e + 1;
    }
    if (c->nrows == 0)
        c->ncols = n;
    else if (n != c->ncols)
        return ct_err(err, CT_ERR_DATA,
                      "%s:%" PRId64 ": expected %" PRId64 " columns, found %" PRId64, c->path,
                      c->line, c->ncols, n);
    c->nrows++;
    return 0;
}

/* One line into *buf (without its end), at most CT_CSV_LINE_MAX bytes: 1 a line, 0 at the
 * end of the file, -1 a line too long, -2 a NUL byte (not text). */
static int csv_getline(FILE *f, char **buf, size_t *cap)
{
    size_t len = 0;
    int ch;
    bool any = false;
    while ((ch = getc_unlocked(f)) != EOF) {
        any = true;
        if (ch == '\n')
            break;
        if (ch == '\0')
            return -2;
        if (len >= CT_CSV_LINE_MAX)
            return -1;
        if (len + 2 > *cap) {
            size_t want = *cap ? *cap * 2 : 4096;
            char *p = realloc(*buf, want);
            if (!p)
                return -3;
            *buf = p;
            *cap = want;
        }
        (*buf)[len++] = (char)ch;
    }
    if (!any)
        return 0;
    if (!*buf && !(*buf = malloc(*cap = 16)))
        return -3;
    (*buf)[len] = '\0';
    return 1;
}

/* One line's outcome: a line-level error, the stop flag, or progress. */
static int csv_step(csv *c, FILE *f, int got, off_t size, double started, const char *what,
                    ct_error *err)
{
    if (got == -1)
        return ct_err(err, CT_ERR_DATA, "%s:%" PRId64 ": the line is longer than %u bytes; is "
                      "this a CSV file?", c->path, c->line, CT_CSV_LINE_MAX);
    if (got == -2)
        return ct_err(err, CT_ERR_DATA, "%s:%" PRId64 ": a NUL byte; this is not a CSV (text) "
                      "file", c->path, c->line);
    if (got < 0)
        return ct_err(err, CT_ERR_NOMEM, "%s: out of memory", c->path);
    if (c->line % CSV_STOP_LINES != 0)
        return 0;
    if (ct_stop_due(started)) {
        char at[4200];
        snprintf(at, sizeof at, "importing %s (line %" PRId64 ")", c->path, c->line);
        return ct_stop_error(err, at);
    }
    off_t pos = size > 0 ? ftello(f) : 0;
    if (pos > 0)
        ct_phase_progress(started, what, pos < size ? pos : size, size, "bytes");
    return 0;
}

static int csv_read(csv *c, bool header, ct_error *err)
{
    if (ct_check_regular(c->path, "open", err) < 0)
        return -1;
    FILE *f = fopen(c->path, "r");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot open %s: %s", c->path, strerror(errno));
    char *buf = NULL, what[4200];
    size_t cap = 0;
    int rc = 0, got;
    struct stat st;
    off_t size = fstat(fileno(f), &st) == 0 ? st.st_size : 0;
    snprintf(what, sizeof what, "importing %s", c->path);
    double started = ct_stop_clock();
    while (rc == 0 && (got = csv_getline(f, &buf, &cap)) != 0) {
        c->line++;
        rc = csv_step(c, f, got, size, started, what, err);
        if (rc == 0 && got > 0 && !(header && c->line == 1))
            rc = csv_line(c, buf, err);
    }
    if (rc == 0 && ferror(f))
        rc = ct_err(err, CT_ERR_IO, "reading %s failed: %s", c->path, strerror(errno));
    if (rc == 0)
        ct_phase_progress(started, what, size, size, "bytes");
    free(buf);
    fclose(f);
    if (rc == 0 && c->nrows == 0)
        rc = ct_err(err, CT_ERR_DATA, "%s holds no data rows", c->path);
    if (rc == 0 && c->ncols < 2)
        rc = ct_err(err, CT_ERR_DATA,
                    "%s has 1 column; it needs at least 2 (features and a label)", c->path);
    return rc;
}

/* ---- categories ---- */

/* A categorical column's codes: the numbers in it join its texts, then the distinct texts
 * are sorted and each entry gets its rank. */
typedef struct category {
    ct_vocab *table;         /* borrowed from the csv */
    int32_t *code;           /* per entry: its rank */
    const char **sorted;     /* by rank: the texts (pointing into the table) */
    int64_t n;
} category;

static const ct_vocab *sort_table;
static int by_text(const void *a, const void *b)
{
    return strcmp(ct_vocab_token(sort_table, *(const int64_t *)a),
                  ct_vocab_token(sort_table, *(const int64_t *)b));
}

static int category_make(csv *c, int64_t j, category *k, ct_error *err)
{
    memset(k, 0, sizeof *k);
    for (int64_t r = 0; r < c->nrows; r++) {
        int64_t at = r * c->ncols + j;
        if (c->texts[at] >= 0)
            continue;
        char num[40];
        int len = snprintf(num, sizeof num, "%.15g", c->cells[at]);
        if (add_text(c, j, num, (size_t)len, &c->texts[at], err) < 0)
            return -1;
    }
    k->table = c->tables[j];
    k->n = ct_vocab_entries(k->table);
    int64_t *order = malloc((size_t)k->n * sizeof *order);
    k->code = malloc((size_t)k->n * sizeof *k->code);
    k->sorted = malloc((size_t)k->n * sizeof *k->sorted);
    if (!order || !k->code || !k->sorted) {
        free(order);
        return ct_err(err, CT_ERR_NOMEM, "%s: out of memory", c->path);
    }
    for (int64_t e = 0; e < k->n; e++)
        order[e] = e;
    sort_table = k->table;
    qsort(order, (size_t)k->n, sizeof *order, by_text);
    for (int64_t r = 0; r < k->n; r++) {
        k->code[order[r]] = (int32_t)r;
        k->sorted[r] = ct_vocab_token(k->table, order[r]);
    }
    free(order);
    return 0;
}

static void category_free(category *k)
{
    free(k->code);
    free(k->sorted);
}

/* ---- output ---- */

typedef struct layout {
    category *cats;          /* per column; n 0 where the column holds numbers */
    int64_t *first;          /* per column: its first x column (-1: the label) */
    int64_t nx;              /* x columns */
} layout;

static int layout_make(csv *c, int64_t label, layout *l, ct_error *err)
{
    l->cats = calloc((size_t)c->ncols, sizeof *l->cats);
    l->first = malloc((size_t)c->ncols * sizeof *l->first);
    if (!l->cats || !l->first)
        return ct_err(err, CT_ERR_NOMEM, "%s: out of memory", c->path);
    l->nx = 0;
    for (int64_t j = 0; j < c->ncols; j++) {
        if (j < c->ntables && c->tables[j] && category_make(c, j, &l->cats[j], err) < 0)
            return -1;
        l->first[j] = j == label ? -1 : l->nx;
        if (j != label)
            l->nx += l->cats[j].n && c->cat == CT_CSV_ONEHOT ? l->cats[j].n : 1;
    }
    return 0;
}

static void layout_free(const csv *c, layout *l)
{
    for (int64_t j = 0; l->cats && j < c->ncols; j++)
        category_free(&l->cats[j]);
    free(l->cats);
    free(l->first);
}

/* Row r's x values (nx of them) and its label's value. */
static double fill_row(const csv *c, const layout *l, int64_t r, float *x)
{
    double label = 0;
    for (int64_t j = 0; j < c->ncols; j++) {
        int64_t at = r * c->ncols + j;
        const category *k = &l->cats[j];
        double v = k->n ? (double)k->code[c->texts[at]] : c->cells[at];
        if (l->first[j] < 0)
            label = v;
        else if (k->n && c->cat == CT_CSV_ONEHOT)
            for (int64_t q = 0; q < k->n; q++)
                x[l->first[j] + q] = q == (int64_t)v ? 1.0f : 0.0f;
        else
            x[l->first[j]] = (float)v;
    }
    return label;
}

static int write_strings(ct_out_file *o, const char *name, const char *const *s, int64_t n,
                         ct_error *err)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    int rc = type >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
                     H5Tset_cset(type, H5T_CSET_UTF8) >= 0
                 ? 0
                 : ct_err(err, CT_ERR_IO, "%s: cannot make a string type", o->path);
    hsize_t dims[1] = {(hsize_t)n};
    if (rc == 0)
        rc = ct_out_write(o, name, type, type, 1, dims, s, err);
    if (type >= 0)
        H5Tclose(type);
    return rc;
}

static bool stale(const char *name)
{
    return !strcmp(name, "classes") || !strncmp(name, "categories_", 11);
}

/* classes and categories_J from an earlier import into the group would describe columns
 * this one does not have: they go (names first, then the deletions, as deleting while
 * listing would shift the indices). */
static void drop_stale(ct_out_file *o)
{
    H5G_info_t info;
    if (H5Gget_info(o->loc, &info) < 0 || info.nlinks == 0)
        return;
    char **names = calloc((size_t)info.nlinks, sizeof *names);
    hsize_t n = 0;
    for (hsize_t i = 0; names && i < info.nlinks; i++) {
        char name[64];
        ssize_t len = H5Lget_name_by_idx(o->loc, ".", H5_INDEX_NAME, H5_ITER_INC, i, name,
                                         sizeof name, H5P_DEFAULT);
        if (len > 0 && (size_t)len < sizeof name && stale(name))
            names[n++] = strdup(name);
    }
    for (hsize_t i = 0; i < n; i++) {
        if (names[i])
            H5Ldelete(o->loc, names[i], H5P_DEFAULT);
        free(names[i]);
    }
    free(names);
}

static int write_categories(ct_out_file *o, const csv *c, const layout *l, int64_t label,
                            ct_error *err)
{
    drop_stale(o);
    int rc = 0;
    for (int64_t j = 0; rc == 0 && j < c->ncols; j++) {
        if (!l->cats[j].n)
            continue;
        char name[48];
        if (j == label)
            snprintf(name, sizeof name, "classes");
        else
            snprintf(name, sizeof name, "categories_%" PRId64, j);
        rc = write_strings(o, name, l->cats[j].sorted, l->cats[j].n, err);
    }
    return rc;
}

static int write_xy(ct_out_file *o, const csv *c, const layout *l, const float *x,
                    const float *yf, const int32_t *yi, bool integer, ct_error *err)
{
    hsize_t dims[2] = {(hsize_t)c->nrows, (hsize_t)l->nx};
    int rc = ct_out_write(o, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims, x, err);
    if (rc == 0)
        rc = integer ? ct_out_write(o, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims, yi, err)
                     : ct_out_write(o, "y", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, dims, yf, err);
    return rc;
}

/* Splits the cells into x (float32) and y (int32 when every label is an integer). */
static int csv_write(const csv *c, const layout *l, int64_t label, const char *out,
                     const char *group, ct_error *err)
{
    float *x = malloc((size_t)(c->nrows * l->nx) * sizeof *x);
    float *yf = malloc((size_t)c->nrows * sizeof *yf);
    int32_t *yi = malloc((size_t)c->nrows * sizeof *yi);
    bool integer = true;
    int rc = 0;
    if (!x || !yf || !yi)
        rc = ct_err(err, CT_ERR_NOMEM, "%s: out of memory", c->path);
    for (int64_t r = 0; rc == 0 && r < c->nrows; r++) {
        double v = fill_row(c, l, r, x + r * l->nx);
        yf[r] = (float)v;
        yi[r] = (int32_t)(v == floor(v) && fabs(v) < 2147483647.0 ? v : 0);
        if (v != floor(v) || fabs(v) >= 2147483647.0)
            integer = false;
    }
    if (rc == 0) {
        ct_out_file o;
        ct_h5_quiet q;
        ct_h5_quiet_on(&q);
        rc = ct_out_open(&o, out, group, err);
        if (rc == 0)
            rc = write_xy(&o, c, l, x, yf, yi, integer, err);
        if (rc == 0)
            rc = write_categories(&o, c, l, label, err);
        if (rc == 0)
            rc = ct_out_finish(&o, err);
        ct_out_close(&o);
        ct_h5_quiet_off(&q);
    }
    free(x);
    free(yf);
    free(yi);
    return rc;
}

int ct_data_import_csv(const char *path, const char *out, const char *group, int label_column,
                       bool header, ct_csv_categorical categorical, ct_error *err)
{
    csv c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.cat = categorical;
    layout l = {0};
    int rc = csv_read(&c, header, err);
    int64_t label = label_column < 0 ? c.ncols + label_column : label_column;
    if (rc == 0 && (label < 0 || label >= c.ncols))
        rc = ct_err(err, CT_ERR_USAGE,
                    "label column %d is out of range: %s has %" PRId64 " columns", label_column,
                    path, c.ncols);
    if (rc == 0)
        rc = layout_make(&c, label, &l, err);
    if (rc == 0)
        rc = csv_write(&c, &l, label, out, group, err);
    layout_free(&c, &l);
    csv_free(&c);
    return rc;
}
