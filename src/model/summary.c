/* summary.c - Keras's model summary: the Sequential table, and the Functional one with
 * input rows and a "Connected to" column. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

void ct_group_digits(int64_t v, char *buf, size_t n)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%" PRId64, v);
    size_t len = strlen(raw), at = 0;
    for (size_t i = 0; i < len && at + 1 < n; i++) {
        if (i && (len - i) % 3 == 0 && at + 2 < n)
            buf[at++] = ',';
        buf[at++] = raw[i];
    }
    buf[at] = 0;
}

void ct_layer_output_shapes(const ct_layer *l, char *shape, size_t sn)
{
    ct_shape_format(&l->out_shape, shape, sn);
    for (int o = 1; o < l->noutputs; o++) { /* as Keras: a list of the outputs' shapes */
        size_t at = strlen(shape);
        char one[128];
        ct_shape_format(&l->more_shapes[o - 1], one, sizeof one);
        if (o == 1 && at + 1 < sn) {
            memmove(shape + 1, shape, at + 1);
            shape[0] = '[';
            at++;
        }
        if (at < sn)
            snprintf(shape + at, sn - at, ", %s%s", one, o == l->noutputs - 1 ? "]" : "");
    }
}

/* Prints `count` copies of a (multi-byte) box-drawing character. */
static void repeat(FILE *out, const char *s, int count)
{
    for (int i = 0; i < count; i++)
        fputs(s, out);
}

/* Column widths (text, without the padding); a table has 3 or 4 columns. */
typedef struct table {
    int ncols;
    int w[4];
} table;

static void rule(FILE *out, const table *t, const char *l, const char *fill, const char *mid,
                 const char *r)
{
    fputs(l, out);
    for (int c = 0; c < t->ncols; c++) {
        repeat(out, fill, t->w[c] + 2);
        fputs(c + 1 < t->ncols ? mid : r, out);
    }
    fputc('\n', out);
}

/* One row; cell 3 (Connected to) may hold several lines separated by '\n'. */
static void row(FILE *out, const table *t, const char *const *cells, bool right_count)
{
    const char *conn = t->ncols == 4 ? cells[3] : "";
    bool first = true;
    do {
        const char *nl = strchr(conn, '\n');
        int len = nl ? (int)(nl - conn) : (int)strlen(conn);
        const char *a = first ? cells[0] : "", *b = first ? cells[1] : "", *c = first ? cells[2] : "";
        if (right_count)
            fprintf(out, "│ %-*s │ %-*s │ %*s │", t->w[0], a, t->w[1], b, t->w[2], c);
        else
            fprintf(out, "┃ %-*s ┃ %-*s ┃ %*s ┃", t->w[0], a, t->w[1], b, t->w[2], c);
        if (t->ncols == 4)
            fprintf(out, right_count ? " %-*.*s │" : " %-*.*s ┃", t->w[3], len, conn);
        fputc('\n', out);
        conn = nl ? nl + 1 : conn + len;
        first = false;
    } while (*conn);
}

static void human_bytes(double b, char *buf, size_t n)
{
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, n, "%.2f %s", b, units[u]);
}

static void totals(FILE *out, int64_t total, int64_t trainable)
{
    char c[32], b[32];
    ct_group_digits(total, c, sizeof c);
    human_bytes((double)total * 4, b, sizeof b);
    fprintf(out, " Total params: %s (%s)\n", c, b);
    ct_group_digits(trainable, c, sizeof c);
    human_bytes((double)trainable * 4, b, sizeof b);
    fprintf(out, " Trainable params: %s (%s)\n", c, b);
    ct_group_digits(total - trainable, c, sizeof c);
    human_bytes((double)(total - trainable) * 4, b, sizeof b);
    fprintf(out, " Non-trainable params: %s (%s)\n", c, b);
}

/* The layer's cells: "name (Class)" (a shared application: "name (Class of owner)"), its
 * shape, and its own parameter count (0 for a shared application). */
static int64_t layer_cells(const ct_layer *l, char *name, size_t nn, char *shape, size_t sn,
                           char *count, size_t cn, int64_t *trainable)
{
    int64_t n = 0;
    for (int j = 0; j < l->nparams && !l->shared; j++) {
        int64_t s = ct_shape_size(&l->params[j].shape);
        n += s;
        if (l->params[j].trainable)
            *trainable += s;
    }
    if (l->shared)
        snprintf(name, nn, "%s (%s of %s)", l->name, l->kind->class_name, l->shared->name);
    else
        snprintf(name, nn, "%s (%s)", l->name, l->kind->class_name);
    ct_layer_output_shapes(l, shape, sn);
    ct_group_digits(n, count, cn);
    return n;
}

/* "a[0][0]\nb[0][0]": where layer i's inputs come from. */
static void connections(const ct_model *m, int i, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int k = 0; k < m->layers[i].ninputs && at < n; k++) {
        ct_source_id s = m->sources[i][k];
        at += (size_t)snprintf(buf + at, n - at, "%s%s[0][%d]", k ? "\n" : "",
                               s < 0 ? m->input_names[-1 - s]
                                     : m->layers[ct_tensor_layer(m, s)].name,
                               s < 0 ? 0 : ct_tensor_index(m, s));
    }
}

static int widest_line(const char *s)
{
    int best = 0;
    while (*s) {
        const char *nl = strchr(s, '\n');
        int len = nl ? (int)(nl - s) : (int)strlen(s);
        best = len > best ? len : best;
        s += len + (nl != NULL);
    }
    return best;
}

static void fit_widths(const ct_model *m, table *t)
{
    char name[200], shape[128], count[32], conn[1024];
    int64_t unused = 0;
    for (int k = 0; k < m->ninputs; k++) {
        int w = (int)strlen(m->input_names[k]) + 13;
        t->w[0] = w > t->w[0] ? w : t->w[0];
    }
    for (int i = 0; i < m->nlayers; i++) {
        layer_cells(&m->layers[i], name, sizeof name, shape, sizeof shape, count, sizeof count,
                    &unused);
        int w = (int)strlen(name);
        t->w[0] = w > t->w[0] ? w : t->w[0];
        w = (int)strlen(shape);
        t->w[1] = w > t->w[1] ? w : t->w[1];
        if (t->ncols == 4) {
            connections(m, i, conn, sizeof conn);
            w = widest_line(conn);
            t->w[3] = w > t->w[3] ? w : t->w[3];
        }
    }
}

void ct_model_summary(const ct_model *m, FILE *out)
{
    /* Keras's widths, widened for long names. */
    table t = {m->functional ? 4 : 3, {31, 22, 13, 17}};
    fit_widths(m, &t);
    static const char *const head[] = {"Layer (type)", "Output Shape", "Param #", "Connected to"};
    fprintf(out, "Model: \"%s\"\n", m->name);
    rule(out, &t, "┏", "━", "┳", "┓");
    row(out, &t, head, false);
    rule(out, &t, "┡", "━", "╇", "┩");
    int64_t total = 0, trainable = 0;
    char name[200], shape[128], count[32], conn[1024];
    bool sep = false;
    for (int k = 0; m->functional && k < m->ninputs; k++, sep = true) {
        if (sep)
            rule(out, &t, "├", "─", "┼", "┤");
        snprintf(name, sizeof name, "%s (InputLayer)", m->input_names[k]);
        ct_shape_format(&m->input_shapes[k], shape, sizeof shape);
        const char *cells[] = {name, shape, "0", "-"};
        row(out, &t, cells, true);
    }
    for (int i = 0; i < m->nlayers; i++, sep = true) {
        if (sep && m->functional) /* Keras rules off each row of a Functional table */
            rule(out, &t, "├", "─", "┼", "┤");
        total += layer_cells(&m->layers[i], name, sizeof name, shape, sizeof shape, count,
                             sizeof count, &trainable);
        connections(m, i, conn, sizeof conn);
        const char *cells[] = {name, shape, count, conn};
        row(out, &t, cells, true);
    }
    rule(out, &t, "└", "─", "┴", "┘");
    totals(out, total, trainable);
}
