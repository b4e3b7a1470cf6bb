/* onnx_translate.h - what the ONNX export's translations share: onnx_export.c (the driver,
 * the graph's ends, dense and the image layers) and onnx_sequence.c (embeddings, recurrent
 * layers and their wrappers, attention, layer normalization, masking). Internal to the ONNX
 * export.
 *
 * Ownership: names returned here live in the exporter's graph arena (ct_onnx_graph), which
 * ct_model_export_onnx frees; a translation allocates nothing else that outlives it. A
 * function that fails to allocate sets e->g.failed and returns NULL (or -1); the driver
 * reports that once. */
#ifndef CT_ONNX_TRANSLATE_H
#define CT_ONNX_TRANSLATE_H

#include "model.h"
#include "onnx_graph.h"

/* A value of the graph: its name in each layout it has been made in. A layer's tensor of
 * rank 2 or 3 without the batch axis (a sequence (T, C) or an image (H, W, C)) is kept
 * channels last, ctrain's layout, or channels first, (N, C, T) or (N, C, H, W), where ONNX's
 * convolutions, pools and batch normalization need it. A token input also has its ids as
 * int64, for Gather. */
typedef struct ct_onnx_val {
    const char *nhwc, *nchw; /* channels last / first; NULL: not made in that layout */
    const char *ids;         /* a token input's int64 ids, or NULL */
    /* The mask the tensor carries (layer.h), (N, T) of 0 and 1, where a layer that honours
     * it reads it (made then, once); NULL: none, or not made. */
    const char *mask;
    int rank;                /* without the batch axis */
} ct_onnx_val;

typedef struct ct_onnx_exporter {
    const ct_model *m;
    ct_onnx_graph g;
    ct_onnx_val *values;     /* per model input (the first ninputs), then per tensor */
    float *host;             /* a parameter read back from the backend */
    /* While a wrapper's copy is translated: the wrapper, whose parameters hold the copy's
     * weights under "<prefix>/<name>" (see ct_wrapper_inner); NULL otherwise. */
    const ct_layer *holder;
    const char *prefix;
} ct_onnx_exporter;

/* The value of tensor s (a model input for s < 0). */
ct_onnx_val *ct_onnx_value_of(ct_onnx_exporter *e, ct_source_id s);
/* The value channels first (nchw) or last, transposed once where it is not yet so; a
 * token input's ids are cast to float32 once where a layer reads them as numbers. */
const char *ct_onnx_layout(ct_onnx_exporter *e, ct_onnx_val *v, bool nchw, const char *base);
/* The value in whichever layout it has (elementwise operators). */
const char *ct_onnx_any(ct_onnx_exporter *e, ct_onnx_val *v, const char *base);

/* The layer's config (a shared application's is its owner's): a scalar, a number, an int
 * or list of n ints (def each where missing), a bool. */
const char *ct_onnx_cfg_str(const ct_layer *l, const char *key, const char *def);
double ct_onnx_cfg_num(const ct_layer *l, const char *key, double def);
void ct_onnx_cfg_ints(const ct_layer *l, const char *key, int n, int64_t def, int64_t *out);
bool ct_onnx_cfg_bool(const ct_layer *l, const char *key, bool def);

/* Parameter `name` of l in host memory (valid until the next call), or NULL when l has
 * none of that name. A shared application's come from its owner, a wrapper's copy's from
 * e->holder. */
const ct_param *ct_onnx_param(ct_onnx_exporter *e, const ct_layer *l, const char *name,
                              const float **v);
/* An initializer "<layer>/<name>" of parameter `name`: in its own shape (ndim 0), else in
 * the given one of as many values. NULL when l has no such parameter. */
const char *ct_onnx_param_init(ct_onnx_exporter *e, const ct_layer *l, const char *name,
                               int ndim, const int64_t *dims);
/* The initializer name of l's weights made up in the exporter: "<layer>/<what>". */
void ct_onnx_weight_name(ct_onnx_exporter *e, const ct_layer *l, const char *what, char *buf,
                         size_t n);
/* Constants: a float32 scalar, an int64 vector. */
const char *ct_onnx_const_float(ct_onnx_exporter *e, const char *base, float v);
const char *ct_onnx_const_ints(ct_onnx_exporter *e, const char *base, int n, const int64_t *v);

/* One-input nodes whose output is a fresh name: op(x), Transpose(x, perm), Reshape(x, shape
 * (0: the input's size there, -1: the rest)), Squeeze / Unsqueeze(x, axes). */
const char *ct_onnx_unary(ct_onnx_exporter *e, const char *op, const char *base, const char *x);
const char *ct_onnx_transpose(ct_onnx_exporter *e, const char *base, const char *x, int n,
                              const int64_t *perm);
const char *ct_onnx_reshape(ct_onnx_exporter *e, const char *base, const char *x, int n,
                            const int64_t *shape);
const char *ct_onnx_squeeze(ct_onnx_exporter *e, const char *op, const char *base,
                            const char *x, int64_t axis);
/* Two-input nodes: op(a, b). */
const char *ct_onnx_binary(ct_onnx_exporter *e, const char *op, const char *base,
                           const char *a, const char *b);
/* x with axis `axis` (counting the batch axis) reversed. */
const char *ct_onnx_reverse(ct_onnx_exporter *e, const char *base, const char *x, int64_t axis);

/* y = act(x) by its Keras name (NULL or "linear": x itself); alpha for leaky_relu and elu.
 * An activation without a translation is an error naming the layer `base`. */
const char *ct_onnx_activation(ct_onnx_exporter *e, const char *base, const char *act,
                               float alpha, const char *x, ct_error *err);
/* Keras's alpha of an activation named in a layer's config (leaky_relu 0.2, elu 1). */
float ct_onnx_default_alpha(const char *act);

/* Translates layer l reading in[0..l->ninputs-1] into out[0..l->noutputs-1] (the driver's
 * dispatch, called again by TimeDistributed on its copy); -1 with err set where l has no
 * translation. */
int ct_onnx_translate(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                      ct_onnx_val *const *out, ct_error *err);

/* onnx_sequence.c: the translations of the sequence layers. Each writes l's outputs into
 * out (channels last) and returns 0, or -1 with err set (or e->g.failed). */
int ct_onnx_embedding(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x, ct_onnx_val *out);
int ct_onnx_position_embedding(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x,
                               ct_onnx_val *out);
int ct_onnx_recurrent(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                      ct_onnx_val *const *out, ct_error *err);
int ct_onnx_bidirectional(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                          ct_onnx_val *const *out, ct_error *err);
int ct_onnx_time_distributed(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x,
                             ct_onnx_val *out, ct_error *err);
/* The inputs' masks (ct_onnx_val.mask) are honoured as ctrain does. */
int ct_onnx_attention(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                      ct_onnx_val *out);
int ct_onnx_layer_norm(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x,
                       ct_onnx_val *out);
int ct_onnx_masking(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x, ct_onnx_val *out);
/* GlobalAveragePooling1D over x's mask: the mean of the steps that hold data. */
int ct_onnx_masked_mean(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x,
                        ct_onnx_val *out);
/* The mask that embedding (or token_and_position_embedding) l with mask_zero writes: 1
 * where the id in ids is not 0. */
const char *ct_onnx_mask_zero(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *ids);

#endif
