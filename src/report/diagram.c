/* diagram.c - the model as a graph picture, through graphviz's own library: cgraph holds
 * the graph (one node per model input and per layer, one edge per connection), gvc lays
 * it out with dot and renders it. The boxes follow keras.utils.plot_model(show_shapes=
 * True, show_layer_names=True): name and class, input and output shapes. */
#include <gvc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiment.h"
#include "graph.h"
#include "picture.h"

static const char *const diagram_formats[] = {"svg", "png", "pdf", "dot", NULL};

/* Header colours: model inputs green, layers blue, model outputs red. */
#define INPUT_COLOUR "#d5e8d4"
#define LAYER_COLOUR "#dae8fc"
#define OUTPUT_COLOUR "#f8cecc"

/* ---- graphviz's messages --------------------------------------------------------------- */

/* graphviz is not thread-safe (its error function is global), so diagrams are made one
 * at a time, under this lock. */
static pthread_mutex_t gv_lock = PTHREAD_MUTEX_INITIALIZER;
/* One context for the process, never freed: graphviz 2.42's text layout (the pango
 * plugin) remembers the last font name it measured, a string the context owns, and
 * compares the next one with it, so a freed context would be read again later. */
static GVC_t *gv_context;

/* cgraph and gvc report through agerr, which prints to stderr unless a function is set.
 * While a diagram is made, that function keeps the last message here for the ct_error. */
static char gv_message[512];

static int keep_message(char *msg)
{
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    if (n) /* continuation lines come without text of their own */
        snprintf(gv_message, sizeof gv_message, "%.*s", (int)n, msg);
    return 0;
}

static int gv_fail(ct_error *err, const char *what)
{
    if (gv_message[0])
        return ct_err(err, CT_ERR_INTERNAL, "%s: %s", what, gv_message);
    return ct_err(err, CT_ERR_INTERNAL, "%s", what);
}

/* ---- labels ---------------------------------------------------------------------------- */

/* Room for the longest label: escaping at most sextuples the input shapes (2048), the
 * output shapes (1024) and the names and class (3 x CT_NAME_MAX), plus the table's tags. */
typedef struct text {
    char buf[6 * (2048 + 1024 + 3 * CT_NAME_MAX) + 1024];
    size_t at;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...)
{
    if (t->at >= sizeof t->buf)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->at, sizeof t->buf - t->at, fmt, ap);
    va_end(ap);
    t->at += n > 0 ? (size_t)n : 0;
}

/* s with the characters HTML-like labels reserve escaped. */
static void add_escaped(text *t, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': add(t, "&amp;"); break;
        case '<': add(t, "&lt;"); break;
        case '>': add(t, "&gt;"); break;
        case '"': add(t, "&quot;"); break;
        default: add(t, "%c", *s);
        }
    }
}

/* One box: a header "name (Class)" over the input and output shapes. */
static void box_label(text *t, const char *name, const char *class_name, const char *owner,
                      const char *colour, const char *in_shape, const char *out_shape)
{
    t->at = 0;
    t->buf[0] = 0;
    add(t, "<table border=\"0\" cellborder=\"1\" cellspacing=\"0\" cellpadding=\"4\">"
           "<tr><td colspan=\"2\" bgcolor=\"%s\"><b>", colour);
    add_escaped(t, name);
    add(t, "</b> (");
    add_escaped(t, class_name);
    if (owner) {
        add(t, ", shared with ");
        add_escaped(t, owner);
    }
    add(t, ")</td></tr><tr><td>Input shape: ");
    add_escaped(t, in_shape);
    add(t, "</td><td>Output shape: ");
    add_escaped(t, out_shape);
    add(t, "</td></tr></table>");
}

/* "[(None, 4), (None, 4)]" for a layer with several inputs, as Keras writes a list. */
static void input_shapes(const ct_model *m, int i, char *buf, size_t n)
{
    const ct_layer *l = &m->layers[i];
    size_t at = 0;
    buf[0] = 0;
    for (int k = 0; k < l->ninputs && at < n; k++) {
        char one[128];
        ct_shape_format(ct_tensor_shape(m, m->sources[i][k]), one, sizeof one);
        at += (size_t)snprintf(buf + at, n - at, "%s%s%s%s", k == 0 && l->ninputs > 1 ? "[" : "",
                               k ? ", " : "", one,
                               k == l->ninputs - 1 && l->ninputs > 1 ? "]" : "");
    }
}

static bool is_output(const ct_model *m, int layer)
{
    for (int k = 0; k < m->noutputs; k++)
        if (m->outputs[k] >= 0 && ct_tensor_layer(m, m->outputs[k]) == layer)
            return true;
    return false;
}

static void set_html(void *obj, Agsym_t *sym, Agraph_t *g, const char *html)
{
    /* agstrdup_html marks the string as HTML; agxset then shares that marked copy. */
    char *h = agstrdup_html(g, (char *)html);
    agxset(obj, sym, h);
    agstrfree(g, h);
}

/* The model as a cgraph graph; NULL when graphviz runs out of memory. */
static Agraph_t *build_graph(const ct_model *m)
{
    Agraph_t *g = agopen((char *)m->name, Agdirected, NULL);
    if (!g)
        return NULL;
    agattr(g, AGRAPH, "rankdir", "TB");
    agattr(g, AGRAPH, "nodesep", "0.3");
    agattr(g, AGRAPH, "ranksep", "0.3");
    /* PNG at 80 dpi: 10-point text is 11 pixels high, readable, and the picture of a deep
     * model stays small enough to put in a page. */
    agattr(g, AGRAPH, "dpi", "80");
    agattr(g, AGNODE, "shape", "plain");
    agattr(g, AGNODE, "fontname", "Helvetica");
    agattr(g, AGNODE, "fontsize", "10");
    agattr(g, AGEDGE, "fontname", "Helvetica");
    agattr(g, AGEDGE, "fontsize", "9");
    Agsym_t *label = agattr(g, AGNODE, "label", "\\N");
    Agsym_t *elabel = agattr(g, AGEDGE, "label", "");
    text t;
    char shape[1024], in[2048];
    Agnode_t **inputs = calloc((size_t)m->ninputs + 1, sizeof *inputs);
    Agnode_t **nodes = calloc((size_t)m->nlayers + 1, sizeof *nodes);
    bool ok = inputs && nodes;
    for (int k = 0; ok && k < m->ninputs; k++) {
        ct_shape_format(&m->input_shapes[k], shape, sizeof shape);
        box_label(&t, m->input_names[k], "InputLayer", NULL, INPUT_COLOUR, shape, shape);
        ok = (inputs[k] = agnode(g, (char *)m->input_names[k], 1)) != NULL;
        if (ok)
            set_html(inputs[k], label, g, t.buf);
    }
    for (int i = 0; ok && i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        input_shapes(m, i, in, sizeof in);
        ct_layer_output_shapes(l, shape, sizeof shape);
        box_label(&t, l->name, l->kind->class_name, l->shared ? l->shared->name : NULL,
                  is_output(m, i) ? OUTPUT_COLOUR : LAYER_COLOUR, in, shape);
        ok = (nodes[i] = agnode(g, (char *)l->name, 1)) != NULL;
        if (ok)
            set_html(nodes[i], label, g, t.buf);
    }
    /* One edge per connection: a layer taking a tensor twice gets two. */
    for (int i = 0; ok && i < m->nlayers; i++)
        for (int k = 0; ok && k < m->layers[i].ninputs; k++) {
            ct_source_id s = m->sources[i][k];
            Agnode_t *from = s < 0 ? inputs[-1 - s] : nodes[ct_tensor_layer(m, s)];
            Agedge_t *e = agedge(g, from, nodes[i], NULL, 1);
            ok = e != NULL;
            if (ok && s >= 0 && ct_tensor_index(m, s) > 0) {
                char which[32];
                snprintf(which, sizeof which, "output %d", ct_tensor_index(m, s));
                agxset(e, elabel, which);
            }
        }
    free(inputs);
    free(nodes);
    if (!ok) {
        agclose(g);
        return NULL;
    }
    return g;
}

/* The DOT text of g, as graphviz writes it. */
static int write_dot(Agraph_t *g, ct_picture *out, ct_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return ct_err(err, CT_ERR_NOMEM, "out of memory writing the model's diagram");
    int bad = agwrite(g, f) != 0;
    bad |= fclose(f) != 0;
    if (!bad)
        bad = ct_picture_append(out, buf, len);
    free(buf);
    if (bad)
        return gv_fail(err, "writing the model's diagram as DOT failed");
    return 0;
}

static int render(Agraph_t *g, const char *fmt, ct_picture *out, ct_error *err)
{
    if (!gv_context && !(gv_context = gvContext()))
        return gv_fail(err, "graphviz could not start");
    GVC_t *gvc = gv_context;
    int status = 0;
    if (gvLayout(gvc, g, "dot") != 0) {
        status = gv_fail(err, "graphviz's dot layout failed (are graphviz's plugins, "
                              "libgvc6, installed?)");
    } else {
        char *data = NULL;
        unsigned int len = 0;
        if (gvRenderData(gvc, g, fmt, &data, &len) != 0 || !data) {
            char what[160];
            snprintf(what, sizeof what, "graphviz cannot render %s (is its plugin for %s "
                     "installed?)", fmt, fmt);
            status = gv_fail(err, what);
        } else if (ct_picture_append(out, data, len) < 0) {
            status = ct_err(err, CT_ERR_NOMEM, "out of memory rendering the model's diagram");
        }
        if (data)
            gvFreeRenderData(data);
        gvFreeLayout(gvc, g);
    }
    return status;
}

static int diagram_into(const ct_experiment *ex, const char *fmt, ct_picture *out,
                        ct_error *err)
{
    if (!ex || !ex->model)
        return ct_err(err, CT_ERR_USAGE, "no model to draw");
    if (ct_picture_check_format(fmt, diagram_formats, err) < 0)
        return -1;
    pthread_mutex_lock(&gv_lock);
    gv_message[0] = 0;
    agusererrf before = agseterrf(keep_message);
    int status;
    Agraph_t *g = build_graph(ex->model);
    if (!g)
        status = gv_fail(err, "graphviz could not build the model's graph");
    else if (strcmp(fmt, "dot") == 0)
        status = write_dot(g, out, err);
    else
        status = render(g, fmt, out, err);
    if (g)
        agclose(g);
    agseterrf(before);
    pthread_mutex_unlock(&gv_lock);
    return status;
}

int ct_experiment_diagram_mem(const ct_experiment *ex, const char *format, unsigned char **data,
                              size_t *size, ct_error *err)
{
    ct_picture pic = {0};
    *data = NULL;
    *size = 0;
    if (diagram_into(ex, format, &pic, err) < 0) {
        ct_picture_free(&pic);
        return -1;
    }
    *data = pic.data;
    *size = pic.size;
    return 0;
}

int ct_experiment_diagram(const ct_experiment *ex, const char *out_path, ct_error *err)
{
    char fmt[8];
    if (!out_path)
        return ct_err(err, CT_ERR_USAGE, "no file to write the diagram to");
    if (ct_picture_format_of(out_path, diagram_formats, fmt, sizeof fmt, err) < 0)
        return -1;
    ct_picture pic = {0};
    int status = diagram_into(ex, fmt, &pic, err);
    if (status == 0)
        status = ct_picture_write(out_path, pic.data, pic.size, err);
    ct_picture_free(&pic);
    return status;
}
