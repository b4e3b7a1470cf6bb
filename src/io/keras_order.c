/* keras_order.c - the order in which Keras 3 lists a Functional model's layers
 * (keras.src.ops.function.map_graph), by which its loader pairs a legacy weights file's
 * layer groups with the model's layers: by decreasing depth (the longest path from the
 * layer to an output), ties by first visit in a depth-first walk from the outputs (in
 * their order) through each node's inputs (in theirs). A layer applied several times is
 * one entry, at the greatest depth of its applications.
 *
 * Where masks travel, Keras computes them with operations of their own (not_equal,
 * logical_or, ...) that take part in the depths; such a model keeps its config order,
 * which is then the one to write its layers in for Keras. */
#include <stdlib.h>

#include "weights.h"

typedef struct walk {
    const ct_model *m;
    int *index;        /* per operation: first-visit index, -1 unvisited */
    int next;
    bool *finished;    /* per node */
    int *post;         /* nodes in the order the walk finished them */
    int npost;
} walk;

/* Nodes: layer applications 0 .. nlayers - 1, then the model inputs. Operations: the
 * layer that owns an application's weights, and the inputs. */
static int op_of(const ct_model *m, int node)
{
    return node < m->nlayers ? ct_layer_owner(&m->layers[node])->index : node;
}

static int node_of(const ct_model *m, ct_source_id s)
{
    return s < 0 ? m->nlayers + (-1 - s) : ct_tensor_layer(m, s);
}

static void visit(walk *w, int node)
{
    const ct_model *m = w->m;
    if (w->finished[node])
        return;
    int op = op_of(m, node);
    if (w->index[op] < 0)
        w->index[op] = w->next++;
    for (int k = 0; node < m->nlayers && k < m->layers[node].ninputs; k++)
        visit(w, node_of(m, m->sources[node][k]));
    w->finished[node] = true;
    w->post[w->npost++] = node;
}

typedef struct ranked {
    int layer, depth, index;
} ranked;

static int by_depth(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->depth != y->depth)
        return x->depth < y->depth ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Depths as map_graph sets them: consumers before their inputs (the reverse of the
 * finishing order), a node at least one deeper than each consumer, an operation as deep
 * as its deepest node. */
static void depths(const walk *w, int *ndepth, int *odepth)
{
    const ct_model *m = w->m;
    for (int i = w->npost - 1; i >= 0; i--) {
        int node = w->post[i], op = op_of(m, node);
        int d = ndepth[node] > odepth[op] ? ndepth[node] : odepth[op];
        odepth[op] = ndepth[node] = d;
        for (int k = 0; node < m->nlayers && k < m->layers[node].ninputs; k++) {
            int p = node_of(m, m->sources[node][k]);
            if (ndepth[p] < d + 1)
                ndepth[p] = d + 1;
        }
    }
}

int ct_keras_layer_order(const ct_model *m, int *order)
{
    int n = 0, nodes = m->nlayers + m->ninputs;
    bool masked = false; /* Keras adds its mask computations to the graph as operations */
    for (int i = 0; i < m->nlayers; i++)
        masked |= m->layers[i].mask_out != CT_MASK_NONE;
    if (!m->functional || masked) {
        for (int i = 0; i < m->nlayers; i++)
            if (!m->layers[i].shared)
                order[n++] = i;
        return n;
    }
    walk w = {m, calloc((size_t)nodes, sizeof(int)), 0, calloc((size_t)nodes, sizeof(bool)),
              calloc((size_t)nodes, sizeof(int)), 0};
    int *ndepth = calloc((size_t)nodes, sizeof *ndepth), *odepth = calloc((size_t)nodes, sizeof *odepth);
    ranked *r = calloc((size_t)m->nlayers + 1, sizeof *r);
    if (!w.index || !w.finished || !w.post || !ndepth || !odepth || !r) {
        n = -1;
        goto done;
    }
    for (int i = 0; i < nodes; i++)
        w.index[i] = -1;
    for (int k = 0; k < m->noutputs; k++)
        visit(&w, node_of(m, m->outputs[k]));
    depths(&w, ndepth, odepth);
    int nr = 0;
    for (int i = 0; i < m->nlayers; i++) /* layers that reach no output come last */
        if (!m->layers[i].shared)
            r[nr++] = (ranked){i, w.index[i] >= 0 ? odepth[i] : -1,
                               w.index[i] >= 0 ? w.index[i] : nodes + i};
    qsort(r, (size_t)nr, sizeof *r, by_depth);
    for (int i = 0; i < nr; i++)
        order[n++] = r[i].layer;
done:
    free(w.index);
    free(w.finished);
    free(w.post);
    free(ndepth);
    free(odepth);
    free(r);
    return n;
}
