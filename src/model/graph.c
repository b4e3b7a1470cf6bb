/* graph.c - reading a model's graph from its config: inputs, layers with the names they
 * take their inputs from, shared applications, outputs; topological order, cycles,
 * unused layers, and building each layer on its inputs' shapes. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#define MAX_NAMES_LISTED 1536

/* One entry of model.layers, in config order, before sorting. */
typedef struct gnode {
    ct_node *cfg;
    const ct_layer_kind *kind;
    char name[CT_NAME_MAX];
    int owner;                 /* config index of the layer a `shared` entry applies, or -1 */
    int nin;
    ct_source_id *src;         /* sources; a layer id here is a config index until sorted */
    int *src_out;              /* per source: which output of that layer ("NAME:k") */
    const ct_node **src_at;    /* per source: its name in the config (NULL: implied) */
    const ct_node *in_node;    /* the `inputs` value, for positions (may be NULL) */
    int order;                 /* position in the topological order */
    int part, parts;           /* a `shared` entry applying a chain: this node's place in it */
} gnode;

typedef struct graph {
    ct_model *m;
    ct_node *cfg;
    int n;
    gnode *g;
    bool given_input_shape;
    int out_index[CT_MAX_IO];  /* model.outputs: which output of each named layer */
    const ct_node *out_at[CT_MAX_IO];
} graph;

/* Names become HDF5 group names in weights files: "." and ".." would name the group
 * itself or its parent. */
static bool valid_name(const char *s)
{
    return *s && strlen(s) < CT_NAME_MAX && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static int name_err(ct_error *err, const ct_node *at, const char *what)
{
    return ct_node_err(err, at, "%s names must be 1 to %d characters without '/', and not "
                       "'.' or '..'", what, CT_NAME_MAX - 1);
}

/* ---- inputs ---- */

/* An absurd shape is an error at its position, not an overflow later. */
static int check_input_size(const ct_shape *s, const ct_node *at, const char *what,
                            ct_error *err)
{
    int64_t size = 1;
    for (int i = 0; i < s->ndim; i++)
        if (__builtin_mul_overflow(size, s->dim[i], &size))
            return ct_node_err(err, at, "%s holds more than 2^63 values per sample; that is "
                               "more than ctrain can allocate", what);
    if (size > CT_MAX_FLOATS)
        return ct_node_err(err, at, "%s holds %" PRId64 " values per sample; that is more "
                           "than ctrain can allocate", what, size);
    return 0;
}

static int read_shape(ct_model *m, int k, ct_node *n, ct_error *err)
{
    if (n->type != CT_NODE_MAP)
        return ct_node_err(err, n, "model input '%s' must be a map such as {shape: [28, 28, 1]}",
                           m->input_names[k]);
    static const char *const keys[] = {"shape", NULL};
    char what[CT_NAME_MAX + 32];
    snprintf(what, sizeof what, "model input '%s'", m->input_names[k]);
    int64_t dims[CT_MAX_DIMS];
    int ndim = 0;
    if (ct_cfg_check_keys(n, keys, what, err) < 0 ||
        ct_cfg_int_list(n, "shape", dims, CT_MAX_DIMS - 1, &ndim, err) < 0)
        return -1;
    m->input_shapes[k] = ct_shape_make(ndim, dims);
    snprintf(what, sizeof what, "input '%s'", m->input_names[k]);
    return check_input_size(&m->input_shapes[k], ct_map_get(n, "shape"), what, err);
}

static int read_inputs(graph *gr, ct_error *err)
{
    ct_model *m = gr->m;
    ct_node *cfg = gr->cfg, *named = ct_map_get(cfg, "inputs");
    if (named && ct_map_get(cfg, "input_shape"))
        return ct_node_err(err, named, "give either model.inputs or model.input_shape, not both");
    if (!named) {
        gr->given_input_shape = true;
        int64_t dims[CT_MAX_DIMS];
        int ndim;
        const ct_node *given = ct_map_get(cfg, "input_shape");
        if (given && given->type == CT_NODE_SCALAR && given->scalar[0] == '(')
            return ct_node_err(err, given, "input_shape is a list such as [28, 28, 1]: "
                               "Keras's tuple %s is written with brackets", given->scalar);
        if (ct_cfg_int_list(cfg, "input_shape", dims, CT_MAX_DIMS - 1, &ndim, err) < 0)
            return -1;
        m->ninputs = 1;
        snprintf(m->input_names[0], CT_NAME_MAX, "input_layer");
        m->input_shapes[0] = ct_shape_make(ndim, dims);
        m->input_nodes[0] = ct_map_get(cfg, "input_shape");
        return check_input_size(&m->input_shapes[0], m->input_nodes[0], "input_shape", err);
    }
    if (named->type != CT_NODE_MAP || named->len == 0)
        return ct_node_err(err, named, "model.inputs must be a map of named inputs such as "
                           "{image: {shape: [28, 28, 1]}}");
    if (named->len > CT_MAX_IO)
        return ct_node_err(err, named, "a model takes at most %d inputs", CT_MAX_IO);
    for (size_t k = 0; k < named->len; k++) {
        if (!valid_name(named->keys[k]))
            return name_err(err, named->key_nodes[k], "input");
        snprintf(m->input_names[k], CT_NAME_MAX, "%s", named->keys[k]);
        m->input_nodes[k] = named->key_nodes[k];
        m->ninputs = (int)k + 1;
        if (read_shape(m, (int)k, named->items[k], err) < 0)
            return -1;
    }
    return 0;
}

/* ---- names ---- */

/* Index of name among the inputs (as -1 - k) or the config entries; NOT_FOUND when
 * unknown. */
#define NOT_FOUND 0x7fffffff
static int find_name(const graph *gr, const char *name)
{
    for (int k = 0; k < gr->m->ninputs; k++)
        if (!strcmp(gr->m->input_names[k], name))
            return -1 - k;
    for (int i = 0; i < gr->n; i++)
        if (!strcmp(gr->g[i].name, name))
            return i;
    return NOT_FOUND;
}

/* What find_ref returns for "INPUT:k": a model input is one tensor. */
#define INPUT_PART (NOT_FOUND - 1)

/* find_name for a reference "NAME" or "NAME:k" (output k of a layer with several): k goes
 * to *k (0 for "NAME"). A name that itself holds ':' is found whole first. */
static int find_ref(const graph *gr, const char *ref, int *k)
{
    *k = 0;
    int id = find_name(gr, ref);
    const char *colon = strrchr(ref, ':');
    size_t digits = colon ? strlen(colon + 1) : 0;
    if (id != NOT_FOUND || !colon || digits == 0 || digits > 2 ||
        strspn(colon + 1, "0123456789") != digits || (size_t)(colon - ref) >= CT_NAME_MAX)
        return id;
    char base[CT_NAME_MAX];
    memcpy(base, ref, (size_t)(colon - ref));
    base[colon - ref] = 0;
    id = find_name(gr, base);
    if (id != NOT_FOUND)
        *k = atoi(colon + 1);
    if (id < 0 && *k > 0)
        return INPUT_PART;
    return id;
}

static int input_part_err(const ct_node *at, ct_error *err)
{
    return ct_node_err(err, at, "'%s' names a part of a model input, which is one tensor; "
                       "\"NAME:k\" names output k of a layer with several (return_state)",
                       at->scalar);
}

/* "image, meta, c1, ..." for messages, and the candidates for suggestions. */
static void known_names(const graph *gr, char *buf, size_t n, const char **cands, int max)
{
    size_t at = 0;
    int k = 0;
    buf[0] = 0;
    for (int i = -gr->m->ninputs; i < gr->n; i++) {
        const char *s = i < 0 ? gr->m->input_names[gr->m->ninputs + i] : gr->g[i].name;
        if (k < max - 1)
            cands[k++] = s;
        if (at < n)
            at += (size_t)snprintf(buf + at, n - at, "%s%s", at ? ", " : "", s);
    }
    cands[k] = NULL;
}

static int unknown_name(const graph *gr, const ct_node *at, const char *name, const char *what,
                        ct_error *err)
{
    char list[MAX_NAMES_LISTED], hint[CT_NAME_MAX + 32] = "";
    const char **cands = calloc((size_t)(gr->n + gr->m->ninputs + 1), sizeof *cands);
    if (!cands)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    known_names(gr, list, sizeof list, cands, gr->n + gr->m->ninputs + 1);
    const char *s = ct_suggest(name, cands);
    if (s)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
    free(cands);
    return ct_node_err(err, at, "%s '%s' is neither a model input nor a layer%s; known: %s",
                       what, name, hint, list);
}

/* Keras's automatic names: dense, dense_1, dense_2, ... numbered by the entries of the same
 * kind before this one (kind NULL: the `shared` entries, not resolved yet). */
static void auto_name(const graph *gr, int i, const ct_layer_kind *kind, const char *kind_name)
{
    gnode *g = &gr->g[i];
    int count = 0;
    for (int j = 0; j < i; j++) /* a chain's entry counts once */
        count += gr->g[j].kind == kind && gr->g[j].part == gr->g[j].parts - 1;
    for (;; count++) {
        if (count == 0)
            snprintf(g->name, sizeof g->name, "%s", kind_name);
        else
            snprintf(g->name, sizeof g->name, "%s_%d", kind_name, count);
        bool taken = false;
        for (int j = 0; j < i; j++)
            taken |= !strcmp(gr->g[j].name, g->name);
        if (!taken)
            break;
    }
}

static int entry_name(graph *gr, int i, const char *kind_name, ct_error *err)
{
    gnode *g = &gr->g[i];
    ct_node *cfg = g->cfg;
    if (ct_map_get(cfg, "name")) {
        const char *given;
        if (ct_cfg_string(cfg, "name", NULL, &given, err) < 0)
            return -1;
        if (!valid_name(given))
            return name_err(err, ct_map_get(cfg, "name"), "layer");
        snprintf(g->name, sizeof g->name, "%s", given);
    } else {
        auto_name(gr, i, g->kind, kind_name);
    }
    for (int j = 0; j < i; j++)
        if (!strcmp(gr->g[j].name, g->name))
            return ct_node_err(err, ct_map_get(cfg, "name"), "layer name '%s' is already used "
                               "by the layer at line %d", g->name, gr->g[j].cfg->line);
    for (int k = 0; k < gr->m->ninputs; k++)
        if (!strcmp(gr->m->input_names[k], g->name))
            return ct_node_err(err, ct_map_get(cfg, "name"),
                               "layer name '%s' is already the name of a model input", g->name);
    return 0;
}

static int entry_kind(graph *gr, int i, const char **kind_name, ct_error *err)
{
    gnode *g = &gr->g[i];
    if (g->cfg->type != CT_NODE_MAP)
        return ct_node_err(err, g->cfg, "each entry of model.layers must be a map such as "
                                        "{type: dense, units: 10}");
    const char *type;
    if (ct_cfg_string(g->cfg, "type", NULL, &type, err) < 0)
        return -1;
    g->owner = -1;
    if (!strcmp(type, "input") || !strcmp(type, "Input") || !strcmp(type, "InputLayer") ||
        !strcmp(type, "input_layer"))
        return ct_node_err(err, ct_map_get(g->cfg, "type"), "model inputs are not layers "
                           "here: declare them with model.input_shape: [...] (one input) or "
                           "model.inputs: {NAME: {shape: [...]}}, and list only the layers "
                           "after them");
    if (!strcmp(type, "shared") || !strcmp(type, "Shared")) {
        *kind_name = "shared";
        return 0;
    }
    g->kind = ct_layer_kind_find(type);
    if (!g->kind) {
        const char *s = ct_suggest(type, ct_layer_kind_list());
        char hint[128] = "";
        if (s)
            snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
        return ct_node_err(err, ct_map_get(g->cfg, "type"), "unknown layer type '%s'%s; "
                           "known types: shared, %s", type, hint, ct_layer_kind_names());
    }
    *kind_name = g->kind->name;
    return 0;
}

/* *vp, a name or a list of names: its entries (vp itself for one name) and their count
 * (0 for anything else). */
static size_t name_list(const ct_node *const *vp, const ct_node *const **items)
{
    const ct_node *v = *vp;
    *items = vp;
    if (v->type == CT_NODE_SEQ) {
        *items = (const ct_node *const *)v->items;
        return v->len;
    }
    return v->type == CT_NODE_SCALAR ? 1 : 0;
}

/* ---- edges ---- */

static int read_sources(graph *gr, int i, ct_error *err)
{
    gnode *g = &gr->g[i];
    const ct_node *in = g->part ? NULL : ct_map_get(g->cfg, "inputs");
    g->in_node = in;
    if (!in) { /* the layer listed before (a chain's part before), or the model's input */
        if (i == 0 && gr->m->ninputs != 1) {
            char list[MAX_NAMES_LISTED];
            const char *cands[CT_MAX_IO + 1];
            graph only_inputs = *gr;
            only_inputs.n = 0;
            known_names(&only_inputs, list, sizeof list, cands, CT_MAX_IO + 1);
            return ct_node_err(err, g->cfg, "layer '%s' is the first layer of a model with %d "
                               "inputs: name its inputs (inputs: one of %s)", g->name,
                               gr->m->ninputs, list);
        }
        g->nin = 1;
        g->src = malloc(sizeof *g->src);
        g->src_out = calloc(1, sizeof *g->src_out);
        g->src_at = calloc(1, sizeof *g->src_at);
        if (!g->src || !g->src_out || !g->src_at)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        g->src[0] = i > 0 ? i - 1 : -1;
        return 0;
    }
    const ct_node *const *items;
    size_t n = name_list(&in, &items);
    if (n == 0)
        return ct_node_err(err, in, "inputs must name a model input or layer, or list them "
                           "such as [c1, c2]");
    g->src = malloc(n * sizeof *g->src);
    g->src_out = calloc(n, sizeof *g->src_out);
    g->src_at = calloc(n, sizeof *g->src_at);
    if (!g->src || !g->src_out || !g->src_at)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    g->nin = (int)n;
    for (size_t k = 0; k < n; k++) {
        if (items[k]->type != CT_NODE_SCALAR)
            return ct_node_err(err, items[k], "inputs must be names of model inputs or layers");
        g->src_at[k] = items[k];
        int id = find_ref(gr, items[k]->scalar, &g->src_out[k]);
        if (id == INPUT_PART)
            return input_part_err(items[k], err);
        if (id == NOT_FOUND)
            return unknown_name(gr, items[k], items[k]->scalar, "input", err);
        if (id == i)
            return ct_node_err(err, items[k], "layer '%s' cannot take its own output",
                               g->name);
        g->src[k] = id;
    }
    return 0;
}

/* The `layer` a shared node applies: the entry's name, or the chain's part-th. */
static const ct_node *shared_target(const gnode *g)
{
    const ct_node *v = ct_map_get(g->cfg, "layer");
    return v && v->type == CT_NODE_SEQ ? v->items[g->part] : v;
}

static int read_owner(graph *gr, int i, ct_error *err)
{
    gnode *g = &gr->g[i];
    static const char *const keys[] = {"type", "name", "layer", "inputs", NULL};
    char what[CT_NAME_MAX + 32];
    snprintf(what, sizeof what, "shared layer '%s'", g->name);
    if (ct_cfg_check_keys(g->cfg, keys, what, err) < 0 ||
        ct_cfg_require(g->cfg, "layer", what, err) < 0)
        return -1;
    const ct_node *at = shared_target(g);
    if (at->type != CT_NODE_SCALAR)
        return ct_node_err(err, at, "%s: `layer` names the layer to apply again, or lists a "
                           "chain of them such as [enc1, enc2]", what);
    const char *target = at->scalar;
    int id = find_name(gr, target);
    if (id == NOT_FOUND)
        return unknown_name(gr, at, target, "shared layer", err);
    if (id < 0)
        return ct_node_err(err, at, "'%s' is a model input; `shared` applies a layer again",
                           target);
    if (id == i)
        return ct_node_err(err, at, "shared layer '%s' names itself", g->name);
    while (gr->g[id].owner >= 0) /* a shared entry of a shared entry: the same weights */
        id = gr->g[id].owner;
    if (!gr->g[id].kind)
        return ct_node_err(err, at, "'%s' is not resolved yet: list the layer it shares "
                           "before it", target);
    g->owner = id;
    g->kind = gr->g[id].kind;
    return 0;
}

/* ---- order ---- */

/* Writes "a -> b -> a" (a feeds b, b feeds a) for a cycle among the unplaced nodes
 * reachable upstream from `at`. */
static bool find_cycle(const graph *gr, int at, const bool *placed, int *path, int depth,
                       bool *on_path, char *buf, size_t n)
{
    path[depth] = at;
    on_path[at] = true;
    const gnode *g = &gr->g[at];
    int deps = g->nin + (g->owner >= 0);
    for (int k = 0; k < deps; k++) {
        int s = k < g->nin ? g->src[k] : g->owner;
        if (s < 0 || placed[s])
            continue;
        if (on_path[s]) {
            /* path[] follows inputs upstream; print it the way data flows */
            size_t len = 0;
            int from = 0;
            while (path[from] != s)
                from++;
            len += (size_t)snprintf(buf, n, "%s", gr->g[s].name);
            for (int j = depth; j >= from && len < n; j--)
                len += (size_t)snprintf(buf + len, n - len, " -> %s", gr->g[path[j]].name);
            return true;
        }
        if (find_cycle(gr, s, placed, path, depth + 1, on_path, buf, n))
            return true;
    }
    on_path[at] = false;
    return false;
}

static int cycle_err(const graph *gr, const bool *placed, ct_error *err)
{
    int first = 0;
    while (placed[first])
        first++;
    int *path = calloc((size_t)gr->n, sizeof *path);
    bool *on_path = calloc((size_t)gr->n, sizeof *on_path);
    char text[1024] = "";
    if (path && on_path) {
        for (int i = first; i < gr->n && !text[0]; i++)
            if (!placed[i])
                find_cycle(gr, i, placed, path, 0, on_path, text, sizeof text);
    }
    free(path);
    free(on_path);
    const gnode *g = &gr->g[first];
    return ct_node_err(err, g->in_node ? g->in_node : g->cfg, "the layers form a cycle "
                       "(%s): a model's graph must lead from its inputs to its outputs",
                       text[0] ? text : g->name);
}

/* Topological order, keeping config order wherever the edges allow it. */
static int sort_nodes(graph *gr, int *order, ct_error *err)
{
    bool *placed = calloc((size_t)(unsigned)gr->n + 1, sizeof *placed);
    if (!placed)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < gr->n; k++) {
        int pick = -1;
        for (int i = 0; i < gr->n && pick < 0; i++) {
            if (placed[i])
                continue;
            const gnode *g = &gr->g[i];
            bool ready = g->owner < 0 || placed[g->owner];
            for (int j = 0; j < g->nin && ready; j++)
                ready = g->src[j] < 0 || placed[g->src[j]];
            if (ready)
                pick = i;
        }
        if (pick < 0) {
            int rc = cycle_err(gr, placed, err);
            free(placed);
            return rc;
        }
        placed[pick] = true;
        order[k] = pick;
        gr->g[pick].order = k;
    }
    free(placed);
    return 0;
}

/* ---- outputs ---- */

static int read_outputs(graph *gr, ct_error *err)
{
    ct_model *m = gr->m;
    const ct_node *out = ct_map_get(gr->cfg, "outputs");
    if (!out) {
        m->noutputs = 1;
        m->outputs[0] = gr->g[gr->n - 1].order;
        gr->out_index[0] = 0;
        gr->out_at[0] = NULL;
        return 0;
    }
    const ct_node *const *items;
    size_t n = name_list(&out, &items);
    if (n == 0)
        return ct_node_err(err, out, "model.outputs must name a layer or list layers such as "
                           "[label, footwear]");
    if (n > CT_MAX_IO)
        return ct_node_err(err, out, "a model has at most %d outputs", CT_MAX_IO);
    for (size_t k = 0; k < n; k++) {
        if (items[k]->type != CT_NODE_SCALAR)
            return ct_node_err(err, items[k], "model.outputs must be layer names");
        int id = find_ref(gr, items[k]->scalar, &gr->out_index[k]);
        if (id == INPUT_PART)
            return input_part_err(items[k], err);
        if (id == NOT_FOUND)
            return unknown_name(gr, items[k], items[k]->scalar, "output", err);
        if (id < 0)
            return ct_node_err(err, items[k], "output '%s' is a model input, not a layer",
                               items[k]->scalar);
        m->outputs[k] = gr->g[id].order; /* a layer until resolve_outputs */
        gr->out_at[k] = items[k];
        m->noutputs = (int)k + 1;
    }
    return 0;
}

/* Tensor of output k of layer i (0 <= i < m->nlayers, built), or -1 with an error at `at`
 * when it has no such output. */
static int tensor_of(const ct_model *m, int i, int k, const ct_node *at, ct_error *err)
{
    const ct_layer *l = &m->layers[i];
    if (k == 0)
        return i;
    if (k < l->noutputs)
        return m->more_at[i] + k - 1;
    if (l->noutputs > 1)
        return ct_node_err(err, at, "layer '%s' (%s) has outputs 0 to %d; '%s' names output %d",
                           l->name, l->kind->class_name, l->noutputs - 1, at->scalar, k);
    return ct_node_err(err, at, "layer '%s' (%s) has one output; '%s' names output %d (a "
                       "recurrent layer has its states as outputs 1 and up with "
                       "return_state: true)", l->name, l->kind->class_name, at->scalar, k);
}

/* model.outputs as tensors, once the layers are built; each listed once. */
static int resolve_outputs(graph *gr, ct_error *err)
{
    ct_model *m = gr->m;
    for (int k = 0; k < m->noutputs; k++) {
        int i = m->outputs[k], t = tensor_of(m, i, gr->out_index[k], gr->out_at[k], err);
        if (t < 0)
            return -1;
        for (int j = 0; j < k; j++)
            if (m->outputs[j] == t)
                return ct_node_err(err, gr->out_at[k], "output '%s' is listed twice",
                                   gr->out_at[k]->scalar);
        m->outputs[k] = t;
        if (gr->out_index[k])
            snprintf(m->output_names[k], sizeof m->output_names[k], "%s:%d", m->layers[i].name,
                     gr->out_index[k]);
        else
            snprintf(m->output_names[k], sizeof m->output_names[k], "%s", m->layers[i].name);
    }
    return 0;
}

/* ---- building layers in order ---- */

static void describe_source(const ct_model *m, ct_source_id s, char *buf, size_t n)
{
    char shape[128];
    if (s < 0) {
        ct_shape_format(&m->input_shapes[-1 - s], shape, sizeof shape);
        if (m->functional)
            snprintf(buf, n, "model input '%s', shape %s", m->input_names[-1 - s], shape);
        else
            snprintf(buf, n, "the model input, shape %s", shape);
    } else {
        const ct_layer *p = &m->layers[ct_tensor_layer(m, s)];
        ct_shape_format(ct_tensor_shape(m, s), shape, sizeof shape);
        if (ct_tensor_index(m, s))
            snprintf(buf, n, "output %d of layer '%s' (%s), shape %s", ct_tensor_index(m, s),
                     p->name, p->kind->class_name, shape);
        else
            snprintf(buf, n, "layer '%s' (%s), shape %s", p->name, p->kind->class_name, shape);
    }
}

/* Appends where the inputs come from, unless a single input's shape is already said. */
static void explain_inputs(const ct_model *m, const ct_layer *l, const ct_source_id *src,
                           ct_error *err)
{
    size_t at = strlen(err->msg);
    char what[256];
    if (l->ninputs == 1) {
        describe_source(m, src[0], what, sizeof what);
        char shape[128];
        ct_shape_format(&l->in_shape, shape, sizeof shape);
        char *comma = strstr(what, ", shape ");
        if (strstr(err->msg, shape) && comma)
            *comma = 0; /* the message already shows the shape (which has commas itself) */
        snprintf(err->msg + at, sizeof err->msg - at, " (the input comes from %s)", what);
        return;
    }
    snprintf(err->msg + at, sizeof err->msg - at, " (the inputs come from ");
    for (int k = 0; k < l->ninputs; k++) {
        at = strlen(err->msg);
        describe_source(m, src[k], what, sizeof what);
        snprintf(err->msg + at, sizeof err->msg - at, "%s%s", k ? "; " : "", what);
    }
    at = strlen(err->msg);
    snprintf(err->msg + at, sizeof err->msg - at, ")");
}

static int check_arity(const ct_layer *l, ct_error *err)
{
    int lo = l->kind->min_inputs ? l->kind->min_inputs : 1;
    int hi = l->kind->min_inputs || l->kind->max_inputs ? l->kind->max_inputs : 1;
    if (l->ninputs >= lo && (hi < 0 || l->ninputs <= hi))
        return 0;
    char want[64];
    if (lo == hi)
        snprintf(want, sizeof want, lo == 1 ? "one input" : "exactly %d inputs", lo);
    else if (hi < 0)
        snprintf(want, sizeof want, "at least %d inputs", lo);
    else
        snprintf(want, sizeof want, "%d to %d inputs", lo, hi);
    const ct_node *at = ct_map_get(l->cfg, "inputs");
    return ct_layer_err_at(err, l, at ? at : l->cfg, "takes %s, got %d", want, l->ninputs);
}

/* A shared application must declare the same parameters as the layer it applies. */
static int check_shared(const ct_layer *l, ct_error *err)
{
    const ct_layer *o = l->shared;
    char a[128], b[128], c[128], d[128];
    for (int j = 0; j < l->nparams || j < o->nparams; j++) {
        if (j < l->nparams && j < o->nparams && ct_shape_equal(&l->params[j].shape, &o->params[j].shape))
            continue;
        if (j >= l->nparams || j >= o->nparams)
            return ct_layer_err(err, l, "applies layer '%s' to an input on which it has other "
                                "parameters", o->name);
        return ct_layer_err(err, l, "applies layer '%s' to shape %s, where its %s would have "
                            "shape %s, but it has shape %s (built on shape %s)", o->name,
                            ct_shape_format(&l->in_shape, a, sizeof a), l->params[j].name,
                            ct_shape_format_sample(&l->params[j].shape, b, sizeof b),
                            ct_shape_format_sample(&o->params[j].shape, c, sizeof c),
                            ct_shape_format(&o->in_shape, d, sizeof d));
    }
    return 0;
}

/* trainable: false (a shared application follows its owner): the layer's parameters are
 * frozen. Read only where given, so configs keep their shape in check --print. */
static int read_trainable(ct_layer *l, ct_node *own_cfg, ct_error *err)
{
    bool trainable = true;
    if (ct_map_get(own_cfg, "trainable") &&
        ct_cfg_bool(own_cfg, "trainable", true, &trainable, err) < 0)
        return -1;
    l->frozen = !trainable;
    for (int j = 0; l->frozen && j < l->nparams; j++)
        if (l->params[j].trainable) {
            l->params[j].trainable = false;
            l->params[j].frozen = true;
        }
    return 0;
}

static int place_layer(graph *gr, int k, int gi, ct_error *err)
{
    ct_model *m = gr->m;
    const gnode *g = &gr->g[gi];
    ct_layer *l = &m->layers[k];
    l->index = k;
    l->kind = g->kind;
    l->cfg = g->cfg;
    l->be = m->be;
    l->conv_algo = m->conv_algo;
    snprintf(l->name, sizeof l->name, "%s", g->name);
    l->shared = g->owner >= 0 ? &m->layers[gr->g[g->owner].order] : NULL;
    l->ninputs = g->nin;
    ct_source_id *src = malloc((size_t)g->nin * sizeof *src);
    ct_shape *shapes = malloc((size_t)g->nin * sizeof *shapes);
    m->sources[k] = src;
    l->in_shapes = shapes;
    if (!src || !shapes)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int j = 0; j < g->nin; j++) {
        src[j] = g->src[j] < 0 ? g->src[j]
                               : tensor_of(m, gr->g[g->src[j]].order, g->src_out[j],
                                           g->src_at[j], err);
        if (src[j] < 0 && g->src[j] >= 0)
            return -1;
        shapes[j] = *ct_tensor_shape(m, src[j]);
    }
    l->in_shape = shapes[0];
    l->noutputs = 1;
    ct_node *own_cfg = l->shared ? l->shared->cfg : l->cfg;
    if ((l->kind->configure && l->kind->configure(l, own_cfg, err) < 0) || check_arity(l, err) < 0)
        return -1;
    if (l->kind->build(l, err) < 0) {
        explain_inputs(m, l, src, err);
        return -1;
    }
    if ((l->shared ? check_shared(l, err) : 0) || ct_model_check_layer_sizes(l, err) ||
        read_trainable(l, own_cfg, err) < 0)
        return -1;
    m->more_at[k] = l->noutputs > 1 ? m->ntensors : -1;
    for (int o = 1; o < l->noutputs; o++) {
        m->tensor_layer[m->ntensors] = k;
        m->tensor_index[m->ntensors++] = o;
    }
    return 0;
}

/* A Sequential model: written with input_shape, one output, the layers a chain. */
static bool is_chain(const graph *gr, const int *order)
{
    const ct_model *m = gr->m;
    if (!gr->given_input_shape || m->noutputs != 1 || m->outputs[0] != m->nlayers - 1 ||
        ct_map_get(gr->cfg, "outputs"))
        return false;
    for (int k = 0; k < m->nlayers; k++)
        if (order[k] != k || m->layers[k].ninputs != 1 || m->layers[k].shared ||
            m->sources[k][0] != k - 1 || m->layers[k].noutputs > 1)
            return false;
    return true;
}

int ct_model_warn(ct_model *m, const ct_node *at, const char *fmt, ...)
{
    char line[512];
    int n = at ? snprintf(line, sizeof line, "%s:%d:%d: ", at->file, at->line, at->col) : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t old = m->warnings ? strlen(m->warnings) : 0, len = strlen(line);
    char *w = realloc(m->warnings, old + len + 2);
    if (!w)
        return -1;
    memcpy(w + old, line, len);
    memcpy(w + old + len, "\n", 2);
    m->warnings = w;
    return 0;
}

/* The first live shared application of layer i, or NULL. */
static const ct_layer *live_application(const ct_model *m, int i)
{
    for (int j = i + 1; j < m->nlayers; j++)
        if (m->layers[j].shared == &m->layers[i] && m->live[j])
            return &m->layers[j];
    return NULL;
}

/* live[i]: layer i's output reaches an output; unused layers and inputs are warned about
 * and never computed. */
static int mark_live(ct_model *m, ct_error *err)
{
    bool input_used[CT_MAX_IO] = {false};
    for (int k = 0; k < m->noutputs; k++)
        m->live[ct_tensor_layer(m, m->outputs[k])] = true;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        for (int j = 0; m->live[i] && j < m->layers[i].ninputs; j++) {
            ct_source_id s = m->sources[i][j];
            if (s < 0)
                input_used[-1 - s] = true;
            else
                m->live[ct_tensor_layer(m, s)] = true;
        }
    }
    int bad = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i], *app = live_application(m, i);
        if (m->live[i])
            continue;
        if (app)
            bad |= ct_model_warn(m, l->cfg, "layer '%s' (%s): its own output reaches no model output, "
                        "so it is not computed (its weights are trained through '%s')",
                        l->name, l->kind->class_name, app->name);
        else
            bad |= ct_model_warn(m, l->cfg, "layer '%s' (%s): its output reaches no model output, so "
                        "it is not computed", l->name, l->kind->class_name);
    }
    for (int k = 0; k < m->ninputs; k++)
        if (!input_used[k])
            bad |= ct_model_warn(m, m->input_nodes[k], "model input '%s' is not used by any layer that "
                        "reaches an output", m->input_names[k]);
    return bad ? ct_err(err, CT_ERR_NOMEM, "out of memory") : 0;
}

/* Uses of layer s's output: by live layers (a layer taking it twice counts twice) and as a
 * model output. */
static int uses_of(const ct_model *m, int s)
{
    int n = 0;
    for (int i = s + 1; i < m->nlayers; i++)
        for (int j = 0; m->live[i] && j < m->layers[i].ninputs; j++)
            n += m->sources[i][j] == s;
    for (int k = 0; k < m->noutputs; k++)
        n += m->outputs[k] == s;
    return n;
}

/* A ReLU layer whose input is used by it alone, and comes from a layer that can end in a
 * relu itself (batch normalization, add), is folded into that layer: the relu is applied
 * where the layer writes its output, instead of in a pass of its own. */
static void fuse_relus(ct_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        if (!m->live[i] || !l->kind->is_activation || l->ninputs != 1 || l->shared ||
            l->kind->output_activation(l) != CT_ACT_RELU)
            continue;
        ct_source_id s = m->sources[i][0];
        if (s < 0 || s >= m->nlayers) /* a model input, or a layer's output 1 and up */
            continue;
        ct_layer *p = &m->layers[s];
        if (!p->kind->takes_relu || p->fused_relu || ct_layer_is_view(p) || uses_of(m, s) != 1)
            continue;
        p->fused_relu = true;
        l->fused_away = true;
    }
}

static int place(graph *gr, const int *order, ct_error *err)
{
    ct_model *m = gr->m;
    size_t most = (size_t)gr->n * CT_MAX_OUTPUTS;
    m->layers = calloc((size_t)gr->n, sizeof *m->layers);
    m->sources = calloc((size_t)gr->n, sizeof *m->sources);
    m->live = calloc((size_t)gr->n, sizeof *m->live);
    m->more_at = calloc((size_t)gr->n, sizeof *m->more_at);
    m->tensor_layer = calloc(most, sizeof *m->tensor_layer);
    m->tensor_index = calloc(most, sizeof *m->tensor_index);
    if (!m->layers || !m->sources || !m->live || !m->more_at || !m->tensor_layer ||
        !m->tensor_index)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < gr->n; k++)
        m->tensor_layer[k] = k; /* output 0 of each layer; the others follow */
    m->ntensors = gr->n;
    m->functional = !gr->given_input_shape; /* until the chain test below */
    for (int k = 0; k < gr->n; k++) {
        m->nlayers = k + 1;
        if (place_layer(gr, k, order[k], err) < 0)
            return -1;
    }
    if (resolve_outputs(gr, err) < 0)
        return -1;
    m->functional = !is_chain(gr, order);
    return mark_live(m, err);
}

/* Nodes an entry of model.layers makes: one, or one per layer of a shared chain. */
static int chain_length(const ct_node *entry)
{
    const ct_node *type = ct_map_get(entry, "type"), *layer = ct_map_get(entry, "layer");
    bool shared = type && type->type == CT_NODE_SCALAR &&
                  (!strcmp(type->scalar, "shared") || !strcmp(type->scalar, "Shared"));
    return shared && layer && layer->type == CT_NODE_SEQ && layer->len > 0 ? (int)layer->len : 1;
}

/* Nodes i .. i + parts - 1 from one entry. A chain's last node takes the entry's name; the
 * others "<name>_<layer>", so later entries can name them too. */
static int read_entry(graph *gr, int i, int parts, ct_node *entry, ct_error *err)
{
    const char *kind_name = "";
    int last = i + parts - 1;
    for (int p = 0; p < parts; p++) {
        gnode *g = &gr->g[i + p];
        g->cfg = entry;
        g->part = p;
        g->parts = parts;
        if (entry_kind(gr, i + p, &kind_name, err) < 0)
            return -1;
    }
    if (entry_name(gr, last, kind_name, err) < 0)
        return -1;
    for (int p = 0; p < parts - 1; p++) {
        gnode *g = &gr->g[i + p];
        const ct_node *t = shared_target(g);
        char name[2 * CT_NAME_MAX];
        snprintf(name, sizeof name, "%s_%s", gr->g[last].name,
                 t->type == CT_NODE_SCALAR ? t->scalar : "part");
        if (!valid_name(name))
            return ct_node_err(err, t, "the chain's layer '%s' would be named '%s': give the "
                               "entry a shorter name", t->type == CT_NODE_SCALAR ? t->scalar : "",
                               name);
        if (find_name(gr, name) != NOT_FOUND)
            return ct_node_err(err, t, "the chain's layer would be named '%s', which is "
                               "already used", name);
        memcpy(g->name, name, strlen(name) + 1); /* valid_name: shorter than CT_NAME_MAX */
    }
    return 0;
}

int ct_graph_build(ct_model *m, ct_node *cfg, ct_error *err)
{
    graph gr = {.m = m, .cfg = cfg};
    int rc = -1, *order = NULL;
    if (read_inputs(&gr, err) < 0 || ct_cfg_require(cfg, "layers", "model", err) < 0)
        return -1;
    ct_node *layers = ct_map_get(cfg, "layers");
    if (layers->type != CT_NODE_SEQ || layers->len == 0)
        return ct_node_err(err, layers, "model.layers must be a non-empty list of layers");
    gr.n = 0;
    for (size_t e = 0; e < layers->len; e++)
        gr.n += chain_length(layers->items[e]);
    gr.g = calloc((size_t)gr.n, sizeof *gr.g);
    order = calloc((size_t)gr.n, sizeof *order);
    if (!gr.g || !order) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int e = 0, i = 0; e < (int)layers->len; e++) {
        int parts = chain_length(layers->items[e]);
        if (read_entry(&gr, i, parts, layers->items[e], err) < 0)
            goto done;
        i += parts;
    }
    for (int i = 0; i < gr.n; i++)
        if ((!gr.g[i].kind && read_owner(&gr, i, err) < 0) || read_sources(&gr, i, err) < 0)
            goto done;
    if (sort_nodes(&gr, order, err) < 0 || read_outputs(&gr, err) < 0)
        goto done;
    rc = place(&gr, order, err);
    if (rc == 0) {
        fuse_relus(m);
        rc = ct_graph_masks(m, err);
    }
done:
    for (int i = 0; gr.g && i < gr.n; i++) {
        free(gr.g[i].src);
        free(gr.g[i].src_out);
        free(gr.g[i].src_at);
    }
    free(gr.g);
    free(order);
    return rc;
}
