/* backend.h - the table of math operations. Layers call only these, so a CUDA backend
 * can replace the CPU one behind the same table. Buffers passed in are the backend's
 * (allocated with its alloc); the backend never keeps pointers after a call returns.
 * All matrices are row-major. */
#ifndef CT_BACKEND_H
#define CT_BACKEND_H

#include "tensor.h"

typedef enum {
    CT_ACT_LINEAR = 0,
    CT_ACT_RELU,
    CT_ACT_RELU6,
    CT_ACT_LEAKY_RELU,   /* alpha: negative slope */
    CT_ACT_ELU,          /* alpha */
    CT_ACT_SELU,
    CT_ACT_GELU,         /* alpha != 0: tanh approximation; 0: exact erf form (Keras default) */
    CT_ACT_SILU,
    CT_ACT_SIGMOID,
    CT_ACT_HARD_SIGMOID, /* Keras 3: relu6(x + 3) / 6 */
    CT_ACT_TANH,
    CT_ACT_SOFTPLUS,
    CT_ACT_SOFTSIGN,
    CT_ACT_SOFTMAX,      /* over the last axis: each row of `cols` */
    CT_ACT_LOG_SOFTMAX,
    CT_ACT_COUNT
} ct_activation;

/* An activation with its parameter (see above; ignored by the others). */
typedef struct ct_act {
    ct_activation kind;
    float alpha;
} ct_act;

/* Parses a Keras activation name ("relu", "swish" = silu, "linear", CamelCase too).
 * Fills the default alpha (leaky_relu 0.2, elu 1.0, gelu 0 = exact). Returns 0 or -1. */
int ct_act_parse(const char *name, ct_act *out);
const char *ct_act_name(ct_activation kind);
/* Comma-separated list of every accepted name, for error messages. */
const char *ct_act_names(void);

typedef struct ct_backend {
    const char *name;
    ct_device device;

    /* Memory: alloc returns zeroed, 64-byte aligned memory or NULL; free takes NULL. */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    /* Host <-> backend copies (plain memcpy on the CPU). */
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);

    /* C = alpha * op(A) op(B) + beta * C, op(A) m x k, op(B) k x n, C m x n. */
    void (*gemm)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                 float *c, int64_t ldc);

    void (*fill)(float *x, int64_t n, float value);
    void (*copy)(float *dst, const float *src, int64_t n);
    void (*axpy)(int64_t n, float alpha, const float *x, float *y);      /* y += alpha x */
    void (*scale)(int64_t n, float alpha, float *x);                    /* x *= alpha */
    void (*mul)(int64_t n, const float *a, const float *b, float *out); /* out = a * b */

    /* y[r][c] += b[c] for rows x cols. */
    void (*add_row_vector)(float *y, const float *b, int64_t rows, int64_t cols);
    /* out[c] = beta * out[c] + sum_r x[r][c]. */
    void (*sum_rows)(const float *x, float *out, int64_t rows, int64_t cols, float beta);

    /* y = act(x) row-wise (rows x cols; softmax and log_softmax normalise each row).
     * x == y is allowed. */
    void (*act_forward)(ct_act act, const float *x, float *y, int64_t rows, int64_t cols);
    /* dx = dy * act'(x), given x (pre-activation) and y (its output). dx may equal dy. */
    void (*act_backward)(ct_act act, const float *x, const float *y, const float *dy,
                         float *dx, int64_t rows, int64_t cols);

    /* mask[i] = (uniform(key, counter0 + i) >= rate) / (1 - rate): inverted dropout. */
    void (*dropout_mask)(float *mask, int64_t n, float rate, uint64_t key, uint64_t counter0);
} ct_backend;

/* The CPU reference backend (OpenBLAS). Static; never freed. */
const ct_backend *ct_backend_cpu(void);

#endif
