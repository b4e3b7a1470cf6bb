/* init.h - Keras initializers and regularizers, parsed from config nodes. Plain values:
 * nothing to free. */
#ifndef CT_INIT_H
#define CT_INIT_H

#include "config.h"
#include "tensor.h"

typedef enum {
    CT_INIT_ZEROS, CT_INIT_ONES, CT_INIT_CONSTANT,
    CT_INIT_RANDOM_NORMAL, CT_INIT_RANDOM_UNIFORM, CT_INIT_TRUNCATED_NORMAL,
    CT_INIT_GLOROT_UNIFORM, CT_INIT_GLOROT_NORMAL,
    CT_INIT_HE_UNIFORM, CT_INIT_HE_NORMAL,
    CT_INIT_LECUN_UNIFORM, CT_INIT_LECUN_NORMAL,
    CT_INIT_ORTHOGONAL,
    CT_INIT_COUNT
} ct_init_kind;

/* a, b: constant -> value; random_normal / truncated_normal -> mean, stddev;
 * random_uniform -> minval, maxval; orthogonal -> gain. Elements [ones_begin, ones_end)
 * are then set to 1 (LSTM's unit_forget_bias; empty when equal, as parsed). */
typedef struct ct_init {
    ct_init_kind kind;
    double a, b;
    int64_t ones_begin, ones_end;
} ct_init;

/* Reads map[key]: absent -> def_name (written into the map); a name ("glorot_uniform",
 * "GlorotUniform") or a map {type: random_normal, mean: 0, stddev: 0.05}. Errors point at
 * the node and list known initializers. */
int ct_init_parse(ct_node *map, const char *key, const char *def_name, ct_init *out,
                  ct_error *err);
const char *ct_init_name(ct_init_kind kind);

/* Fills w (host memory, ct_shape_size(shape) floats) from random stream `key`. Fans as
 * Keras: 2-D (in, out); N-D kernels (..., in, out) multiply by the receptive field; 1-D
 * and 0-D use the size for both. Normal variants are truncated at 2 stddev. */
void ct_init_fill(const ct_init *init, float *w, const ct_shape *shape, uint64_t key);

/* l1 * sum|w| + l2 * sum w^2. */
typedef struct ct_regularizer {
    double l1, l2;
} ct_regularizer;

/* Reads map[key]: absent or null -> none; "l1"/"l2" (factor 0.01 as Keras), "l1_l2"
 * (0, 0), or {type: l2, l2: 0.001} / {type: l1_l2, l1: .., l2: ..}. */
int ct_regularizer_parse(ct_node *map, const char *key, ct_regularizer *out, ct_error *err);

#endif
