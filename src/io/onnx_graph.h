/* onnx_graph.h - building an ONNX graph (onnx.proto's messages, through protobuf-c): nodes,
 * their attributes and float32 / int64 initializers, all allocated from one arena that
 * ct_onnx_graph_free releases. Internal to the ONNX export.
 *
 * Ownership: a ct_onnx_graph owns every message, string and array reachable from it. An
 * allocation that fails sets g->failed and returns NULL; the functions accept that NULL
 * and do nothing, so a builder checks g->failed once at the end. */
#ifndef CT_ONNX_GRAPH_H
#define CT_ONNX_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "onnx.pb-c.h"

typedef struct ct_onnx_chunk ct_onnx_chunk;

typedef struct ct_onnx_graph {
    ct_onnx_chunk *chunks;       /* the arena */
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t ninits, cap_inits;
    int next_id;                 /* for fresh value names */
    bool failed;
} ct_onnx_graph;

void ct_onnx_graph_free(ct_onnx_graph *g);
/* A copy of text in the arena. */
char *ct_onnx_strdup(ct_onnx_graph *g, const char *text);
/* A fresh value name: "<base>/<what>_<n>". */
char *ct_onnx_name(ct_onnx_graph *g, const char *base, const char *what);
/* A node op(inputs) -> out, appended in order (the caller keeps the order topological).
 * An input NULL is an optional input left out (""). */
Onnx__NodeProto *ct_onnx_node(ct_onnx_graph *g, const char *op, const char *name, int nin,
                              const char *const *in, const char *out);
/* The same with nout outputs (a recurrent op's sequence and states). */
Onnx__NodeProto *ct_onnx_node_n(ct_onnx_graph *g, const char *op, const char *name, int nin,
                                const char *const *in, int nout, const char *const *out);
void ct_onnx_attr_int(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, int64_t v);
void ct_onnx_attr_float(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, float v);
void ct_onnx_attr_ints(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, int count,
                       const int64_t *v);
void ct_onnx_attr_floats(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, int count,
                         const float *v);
void ct_onnx_attr_strings(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name, int count,
                          const char *const *v);
/* Initializers: `name` with the given dims, the values copied. Returns the name: the one
 * given, shared with an initializer of that name that holds the same tensor (a shared
 * layer's weights are written once), or a fresh one where it holds another. */
const char *ct_onnx_floats(ct_onnx_graph *g, const char *name, int ndim, const int64_t *dims,
                           const float *v);
const char *ct_onnx_int64s(ct_onnx_graph *g, const char *name, int ndim, const int64_t *dims,
                           const int64_t *v);
/* A graph within the graph (a Scan's body): between ct_onnx_sub_begin and ct_onnx_sub_end
 * the nodes made go to the body; initializers stay the outer graph's, which the body reads
 * from its outer scope. ct_onnx_sub_end returns the body (in the arena) with the given
 * inputs and outputs, or NULL when out of memory. */
typedef struct ct_onnx_sub {
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
} ct_onnx_sub;
void ct_onnx_sub_begin(ct_onnx_graph *g, ct_onnx_sub *outer);
Onnx__GraphProto *ct_onnx_sub_end(ct_onnx_graph *g, ct_onnx_sub *outer, const char *name,
                                  int nin, Onnx__ValueInfoProto *const *in, int nout,
                                  Onnx__ValueInfoProto *const *out);
void ct_onnx_attr_graph(ct_onnx_graph *g, Onnx__NodeProto *n, const char *name,
                        Onnx__GraphProto *body);
/* ONNX's element types that the export writes. */
enum { CT_ONNX_FLOAT = 1, CT_ONNX_INT64 = 7 };
/* A graph input or output: elements of `elem` (CT_ONNX_FLOAT, CT_ONNX_INT64), shape
 * (N, dims...) with a symbolic batch "N". */
Onnx__ValueInfoProto *ct_onnx_value(ct_onnx_graph *g, const char *name, int elem, int ndim,
                                    const int64_t *dims);

#endif
