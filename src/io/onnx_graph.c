/* onnx_graph.c - ONNX graph building blocks (see onnx_graph.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_graph.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX stores raw tensor data little-endian; this writer copies memory as it is"
#endif

struct ct_onnx_chunk {
    ct_onnx_chunk *next;
    max_align_t data[];
};

static void *alloc(ct_onnx_graph *g, size_t n)
{
    if (g->failed)
        return NULL;
    ct_onnx_chunk *c = calloc(1, sizeof *c + n);
    if (!c) {
        g->failed = true;
        return NULL;
    }
    c->next = g->chunks;
    g->chunks = c;
    return c->data;
}

void ct_onnx_graph_free(ct_onnx_graph *g)
{
    while (g->chunks) {
        ct_onnx_chunk *next = g->chunks->next;
        free(g->chunks);
        g->chunks = next;
    }
    free(g->nodes);
    free(g->inits);
    *g = (ct_onnx_graph){0};
}

char *ct_onnx_strdup(ct_onnx_graph *g, const char *text)
{
    size_t n = strlen(text) + 1;
    char *s = alloc(g, n);
    if (s)
        memcpy(s, text, n);
    return s;
}

char *ct_onnx_name(ct_onnx_graph *g, const char *base, const char *what)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s/%s_%d", base, what, g->next_id++);
    return ct_onnx_strdup(g, buf);
}

/* Appends p to a growing array of pointers. */
static bool push(ct_onnx_graph *g, void ***items, size_t *n, size_t *cap, void *p)
{
    if (!p || g->failed)
        return false;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        void **grown = realloc(*items, c * sizeof *grown);
        if (!grown) {
            g->failed = true;
            return false;
        }
        *items = grown;
        *cap = c;
    }
    (*items)[(*n)++] = p;
    return true;
}

Onnx__NodeProto *ct_onnx_node_n(ct_onnx_graph *g, const char *op, const char *name, int nin,
                                const char *const *in, int nout, const char *const *out)
{
    Onnx__NodeProto *n = alloc(g, sizeof *n);
    char **ins = alloc(g, (size_t)(nin > 0 ? nin : 1) * sizeof *ins);
    char **outs = alloc(g, (size_t)(nout > 0 ? nout : 1) * sizeof *outs);
    if (!n || !ins || !outs)
        return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++)
        if (!(ins[i] = ct_onnx_strdup(g, in[i] ? in[i] : "")))
            return NULL;
    n->n_input = (size_t)nin;
    n->input = ins;
    for (int i = 0; i < nout; i++)
        if (!out[i] || !(outs[i] = ct_onnx_strdup(g, out[i])))
            return NULL;
    n->n_output = (size_t)nout;
    n->output = outs;
    n->op_type = ct_onnx_strdup(g, op);
    n->name = ct_onnx_name(g, name, op);
    return push(g, (void ***)&g->nodes, &g->nnodes, &g->cap_nodes, n) && !g->failed ? n : NULL;
}

Onnx__NodeProto *ct_onnx_node(ct_onnx_graph *g, const char *op, const char *name, int nin,
                              const char *const *in, const char *out)
{
    return ct_onnx_node_n(g, op, name, nin, in, 1, &out);
}

static Onnx__AttributeProto *attr(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name,
                                  Onnx__AttributeProto__AttributeType type)
{
    if (!n)
        return NULL;
    Onnx__AttributeProto *a = alloc(g, sizeof *a);
    Onnx__AttributeProto **all = alloc(g, (n->n_attribute + 1) * sizeof *all);
    if (!a || !all)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = ct_onnx_strdup(g, name);
    a->has_type = 1;
    a->type = type;
    if (n->n_attribute)
        memcpy(all, n->attribute, n->n_attribute * sizeof *all);
    all[n->n_attribute++] = a;
    n->attribute = all; /* the old array stays in the arena */
    return a;
}

void ct_onnx_attr_int(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = 1;
        a->i = v;
    }
}

void ct_onnx_attr_float(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
}

void ct_onnx_attr_ints(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, int count,
                       const int64_t *v)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *copy = a ? alloc(g, (size_t)count * sizeof *copy) : NULL;
    if (copy) {
        memcpy(copy, v, (size_t)count * sizeof *copy);
        a->n_ints = (size_t)count;
        a->ints = copy;
    }
}

void ct_onnx_attr_floats(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, int count,
                         const float *v)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
    float *copy = a ? alloc(g, (size_t)count * sizeof *copy) : NULL;
    if (copy) {
        memcpy(copy, v, (size_t)count * sizeof *copy);
        a->n_floats = (size_t)count;
        a->floats = copy;
    }
}

void ct_onnx_attr_strings(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, int count,
                          const char *const *v)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS);
    ProtobufCBinaryData *all = a ? alloc(g, (size_t)count * sizeof *all) : NULL;
    if (!all)
        return;
    for (int i = 0; i < count; i++) {
        all[i].data = (uint8_t *)ct_onnx_strdup(g, v[i]);
        all[i].len = strlen(v[i]);
    }
    a->n_strings = (size_t)count;
    a->strings = all;
}

void ct_onnx_sub_begin(ct_onnx_graph *g, ct_onnx_sub *outer)
{
    *outer = (ct_onnx_sub){g->nodes, g->nnodes, g->cap_nodes};
    g->nodes = NULL;
    g->nnodes = g->cap_nodes = 0;
}

/* An arena copy of n pointers. */
static void **arena_list(ct_onnx_graph *g, size_t n, void *const *items)
{
    void **list = alloc(g, (n ? n : 1) * sizeof *list);
    if (list && n)
        memcpy(list, items, n * sizeof *list);
    return list;
}

Onnx__GraphProto *ct_onnx_sub_end(ct_onnx_graph *g, ct_onnx_sub *outer, const char *name,
                                  int nin, Onnx__ValueInfoProto *const *in, int nout,
                                  Onnx__ValueInfoProto *const *out)
{
    Onnx__GraphProto *body = alloc(g, sizeof *body);
    void **nodes = arena_list(g, g->nnodes, (void *const *)g->nodes);
    void **ins = arena_list(g, (size_t)nin, (void *const *)in);
    void **outs = arena_list(g, (size_t)nout, (void *const *)out);
    size_t n = g->nnodes;
    free(g->nodes);
    g->nodes = outer->nodes;
    g->nnodes = outer->nnodes;
    g->cap_nodes = outer->cap_nodes;
    if (!body || !nodes || !ins || !outs)
        return NULL;
    onnx__graph_proto__init(body);
    body->name = ct_onnx_strdup(g, name);
    body->n_node = n;
    body->node = (Onnx__NodeProto **)nodes;
    body->n_input = (size_t)nin;
    body->input = (Onnx__ValueInfoProto **)ins;
    body->n_output = (size_t)nout;
    body->output = (Onnx__ValueInfoProto **)outs;
    return g->failed ? NULL : body;
}

void ct_onnx_attr_graph(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name,
                        Onnx__GraphProto *body)
{
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
    if (a)
        a->g = body;
}

/* The initializer of that name, or NULL; *same: whether it holds this tensor. */
static const Onnx__TensorProto *named_initializer(const ct_onnx_graph *g, const char *name,
                                                  int type, int ndim, const int64_t *dims,
                                                  const void *v, size_t bytes, bool *same)
{
    for (size_t i = 0; i < g->ninits; i++) {
        const Onnx__TensorProto *t = g->inits[i];
        if (strcmp(t->name, name))
            continue;
        *same = t->data_type == type && t->n_dims == (size_t)ndim &&
                (ndim == 0 || !memcmp(t->dims, dims, (size_t)ndim * sizeof *dims)) &&
                t->raw_data.len == bytes && !memcmp(t->raw_data.data, v, bytes);
        return t;
    }
    return NULL;
}

static const char *initializer(ct_onnx_graph *g, const char *name, int type, int ndim,
                               const int64_t *dims, const void *v, size_t bytes)
{
    /* a shared layer's weights once; a name taken by other values gets a fresh one */
    bool same = false;
    const Onnx__TensorProto *known =
        g->failed ? NULL : named_initializer(g, name, type, ndim, dims, v, bytes, &same);
    if (known && same)
        return known->name;
    if (known && !(name = ct_onnx_name(g, name, "v")))
        return NULL;
    Onnx__TensorProto *t = alloc(g, sizeof *t);
    int64_t *d = alloc(g, (size_t)(ndim > 0 ? ndim : 1) * sizeof *d);
    uint8_t *data = alloc(g, bytes ? bytes : 1);
    if (!t || !d || !data)
        return NULL;
    onnx__tensor_proto__init(t);
    if (ndim > 0) /* a scalar's dims may be NULL */
        memcpy(d, dims, (size_t)ndim * sizeof *d);
    memcpy(data, v, bytes);
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = type;
    t->name = ct_onnx_strdup(g, name);
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = data;
    return push(g, (void ***)&g->inits, &g->ninits, &g->cap_inits, t) ? t->name : NULL;
}

const char *ct_onnx_floats(ct_onnx_graph *g, const char *name, int ndim, const int64_t *dims,
                           const float *v)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)dims[i];
    return initializer(g, name, CT_ONNX_FLOAT, ndim, dims, v, n * sizeof *v);
}

const char *ct_onnx_int64s(ct_onnx_graph *g, const char *name, int ndim, const int64_t *dims,
                           const int64_t *v)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)dims[i];
    return initializer(g, name, CT_ONNX_INT64, ndim, dims, v, n * sizeof *v);
}

Onnx__ValueInfoProto *ct_onnx_value(ct_onnx_graph *g, const char *name, int elem, int ndim,
                                    const int64_t *dims)
{
    Onnx__ValueInfoProto *v = alloc(g, sizeof *v);
    Onnx__TypeProto *type = alloc(g, sizeof *type);
    Onnx__TypeProto__Tensor *tt = alloc(g, sizeof *tt);
    Onnx__TensorShapeProto *shape = alloc(g, sizeof *shape);
    Onnx__TensorShapeProto__Dimension *dim = alloc(g, (size_t)(ndim + 1) * sizeof *dim);
    Onnx__TensorShapeProto__Dimension **dimp = alloc(g, (size_t)(ndim + 1) * sizeof *dimp);
    if (!v || !type || !tt || !shape || !dim || !dimp)
        return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(type);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(shape);
    for (int i = 0; i <= ndim; i++) {
        onnx__tensor_shape_proto__dimension__init(&dim[i]);
        if (i == 0) {
            dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim[i].dim_param = ct_onnx_strdup(g, "N");
        } else {
            dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim[i].dim_value = dims[i - 1];
        }
        dimp[i] = &dim[i];
    }
    shape->n_dim = (size_t)ndim + 1;
    shape->dim = dimp;
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    tt->shape = shape;
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tt;
    v->name = ct_onnx_strdup(g, name);
    v->type = type;
    return g->failed ? NULL : v;
}
