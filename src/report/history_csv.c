/* history_csv.c - reads history.csv strictly: every row as long as the header, every cell
 * a number, so a damaged file is reported where it is damaged instead of drawn wrong. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "history_csv.h"

/* A history is a few numbers per epoch; anything bigger is not one. */
#define MAX_HISTORY_BYTES (64L << 20)
#define MAX_COLUMNS 4096

void ct_history_free(ct_history *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->ncols && h->names; i++)
        free(h->names[i]);
    free(h->names);
    free(h->epochs);
    free(h->values);
    memset(h, 0, sizeof *h);
}

int ct_history_column(const ct_history *h, const char *name)
{
    for (int i = 0; i < h->ncols; i++)
        if (strcmp(h->names[i], name) == 0)
            return i;
    return -1;
}

/* The whole file, NUL-terminated; the caller frees it. */
static char *slurp(const char *path, size_t *len, ct_error *err)
{
    /* A FIFO would block the read for ever, a device never end. */
    if (ct_check_regular(path, "read", err) < 0)
        return NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot read %s: %s", path, strerror(errno)), NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            if (cap > (size_t)MAX_HISTORY_BYTES) {
                fclose(f);
                free(buf);
                return ct_err(err, CT_ERR_DATA, "%s is over %ld MB: not a history", path,
                              MAX_HISTORY_BYTES >> 20), NULL;
            }
            char *more = realloc(buf, cap * 2);
            if (!more)
                break;
            buf = more;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (!buf) {
        fclose(f);
        return ct_err(err, CT_ERR_NOMEM, "out of memory reading %s", path), NULL;
    }
    int bad = ferror(f);
    int saved = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return ct_err(err, CT_ERR_IO, "cannot read %s: %s", path, strerror(saved)), NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* One line split in place at its commas; starts[k] is field k's first byte. */
typedef struct fields {
    int n;
    char *starts[MAX_COLUMNS + 2];
} fields;

static void split(char *line, fields *f)
{
    f->n = 0;
    char *p = line;
    for (;;) {
        if (f->n < MAX_COLUMNS + 2)
            f->starts[f->n] = p;
        f->n++;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = 0;
        p = c + 1;
    }
}

static int parse_header(const char *path, char *line, ct_history *h, ct_error *err)
{
    fields f;
    split(line, &f);
    if (f.n > MAX_COLUMNS + 1)
        return ct_err(err, CT_ERR_DATA, "%s:1: %d columns; at most %d are read", path, f.n,
                      MAX_COLUMNS + 1);
    if (strcmp(f.starts[0], "epoch") != 0)
        return ct_err(err, CT_ERR_DATA,
                      "%s:1:1: not a training history: the header must start with 'epoch', "
                      "not '%.60s'", path, f.starts[0]);
    if (f.n < 2)
        return ct_err(err, CT_ERR_DATA, "%s:1: the header names no metric after 'epoch'", path);
    h->names = calloc((size_t)f.n - 1, sizeof *h->names);
    if (!h->names)
        return ct_err(err, CT_ERR_NOMEM, "out of memory reading %s", path);
    for (int k = 1; k < f.n; k++) {
        const char *s = f.starts[k];
        long col = (long)(s - line) + 1;
        if (!*s)
            return ct_err(err, CT_ERR_DATA, "%s:1:%ld: column %d of the header has no name",
                          path, col, k + 1);
        for (const char *c = s; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == '"')
                return ct_err(err, CT_ERR_DATA,
                              "%s:1:%ld: the column name '%.60s' holds a quote or control "
                              "character", path, col + (long)(c - s), s);
        for (int j = 1; j < k; j++)
            if (strcmp(f.starts[j], s) == 0)
                return ct_err(err, CT_ERR_DATA, "%s:1:%ld: column '%.60s' is named twice",
                              path, col, s);
        if (!(h->names[k - 1] = strdup(s)))
            return ct_err(err, CT_ERR_NOMEM, "out of memory reading %s", path);
        h->ncols = k;
    }
    return 0;
}

/* A cell: a whole number as strtod reads it (nan and inf included), nothing around it. */
static int parse_cell(const char *s, double *v)
{
    if (!*s || *s == ' ' || *s == '\t')
        return -1;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *end == 0 ? 0 : -1;
}

static int parse_row(const char *path, int lineno, char *line, ct_history *h, ct_error *err)
{
    fields f;
    split(line, &f);
    int want = h->ncols + 1;
    if (f.n != want) {
        long col = f.n > want ? (long)(f.starts[want] - line) + 1 : (long)strlen(line) + 1;
        if (f.n < want) /* the split cut the line at its commas: count to the real end */
            col = (long)(f.starts[f.n - 1] - line) + (long)strlen(f.starts[f.n - 1]) + 1;
        return ct_err(err, CT_ERR_DATA, "%s:%d:%ld: %d values where the header names %d "
                      "columns", path, lineno, col, f.n, want);
    }
    double *row = h->values + (size_t)h->nrows * (size_t)h->ncols;
    for (int k = 0; k < f.n; k++) {
        double v;
        long col = (long)(f.starts[k] - line) + 1;
        const char *name = k ? h->names[k - 1] : "epoch";
        if (parse_cell(f.starts[k], &v) < 0)
            return ct_err(err, CT_ERR_DATA, "%s:%d:%ld: '%.40s' in column '%s' is not a number",
                          path, lineno, col, f.starts[k], name);
        if (k == 0 && (!isfinite(v) || v < 0 || v > 1e9 || v != floor(v)))
            return ct_err(err, CT_ERR_DATA, "%s:%d:%ld: the epoch '%.40s' is not a whole "
                          "number from 0", path, lineno, col, f.starts[k]);
        if (k == 0)
            h->epochs[h->nrows] = v;
        else
            row[k - 1] = v;
    }
    h->nrows++;
    return 0;
}

int ct_history_read(const char *path, ct_history *h, ct_error *err)
{
    memset(h, 0, sizeof *h);
    size_t len;
    char *text = slurp(path, &len, err);
    if (!text)
        return -1;
    if (memchr(text, 0, len)) {
        free(text);
        return ct_err(err, CT_ERR_DATA, "%s is not a text file (it holds NUL bytes)", path);
    }
    /* Rows are lines, so there are at most as many as newlines + 1. */
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    int status = 0, lineno = 0;
    char *p = text;
    while (status == 0 && *p) {
        char *nl = strchr(p, '\n');
        char *next = nl ? nl + 1 : p + strlen(p);
        if (nl)
            *nl = 0;
        size_t n = strlen(p);
        if (n && p[n - 1] == '\r') /* a file that went through Windows */
            p[--n] = 0;
        lineno++;
        if (lineno == 1) {
            status = parse_header(path, p, h, err);
            if (status == 0) {
                h->epochs = malloc(lines * sizeof *h->epochs);
                h->values = malloc(lines * (size_t)h->ncols * sizeof *h->values);
                if (!h->epochs || !h->values)
                    status = ct_err(err, CT_ERR_NOMEM, "out of memory reading %s", path);
            }
        } else if (n == 0 && !*next) {
            /* a blank last line: the file ends there */
        } else if (n == 0) {
            status = ct_err(err, CT_ERR_DATA, "%s:%d:1: an empty line among the rows", path,
                            lineno);
        } else {
            status = parse_row(path, lineno, p, h, err);
        }
        p = next;
    }
    free(text);
    if (status == 0 && lineno == 0)
        status = ct_err(err, CT_ERR_DATA, "%s is empty: no header, no epochs", path);
    else if (status == 0 && h->nrows == 0)
        status = ct_err(err, CT_ERR_DATA, "%s holds a header but no epochs yet", path);
    if (status < 0)
        ct_history_free(h);
    return status;
}
