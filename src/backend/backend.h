/* backend.h - the table of math operations. Layers call only these, so a CUDA backend
 * can replace the CPU one behind the same table. Buffers passed in are the backend's
 * (allocated with its alloc); the backend never keeps pointers after a call returns.
 * All matrices are row-major. */
#ifndef CT_BACKEND_H
#define CT_BACKEND_H

#include "tensor.h"

/* Image augmentation parameters: see image_aug.h. */
typedef struct ct_image_aug ct_image_aug;

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
/* True when act's derivative follows from its output alone and as accurately (linear,
 * relu, relu6, leaky_relu with alpha > 0, sigmoid, hard_sigmoid, tanh; not elu, whose
 * y + alpha cancels far below zero). Such an
 * activation is applied in place after a layer's linear part and its backward needs only
 * y, so the pre-activation values are never stored. */
bool ct_act_from_output(ct_act act);

/* Geometry of a 1-D or 2-D window operation (convolution, pooling) on channels_last data:
 * a sample is in_h x in_w x in_c (1-D: in_h = 1, k_h = 1, stride_h = dil_h = 1,
 * pad_top = 0). Output position (oh, ow) reads input rows oh*stride_h - pad_top + i*dil_h
 * and columns ow*stride_w - pad_left + j*dil_w for i < k_h, j < k_w; positions outside the
 * input read as zero (convolution) or are skipped (pooling). */
typedef struct ct_window {
    int64_t in_h, in_w, in_c;
    int64_t out_h, out_w;
    int64_t k_h, k_w;
    int64_t stride_h, stride_w;
    int64_t dil_h, dil_w;
    int64_t pad_top, pad_left;
    int algo; /* convolutions: the ct_conv_algo that conv_algorithm chose (0: im2col) */
} ct_window;

/* How a convolution is computed. AUTO is a request only: conv_algorithm turns it into one
 * of the others from the layer's shape. */
typedef enum {
    CT_CONV_AUTO = 0,
    CT_CONV_IM2COL = 1, /* patches (im2col) times the kernel, one GEMM per chunk of samples */
    CT_CONV_DIRECT = 2, /* the input read in place by register-tiled kernels */
    CT_CONV_WINOGRAD = 3,  /* Winograd F(2x2, 3x3): 3x3 kernels with stride 1 */
    CT_CONV_WINOGRAD4 = 4, /* Winograd F(4x4, 3x3), chosen for winograd by shape */
} ct_conv_algo;
/* "auto", "im2col", "direct", "winograd", "winograd F(4x4)". */
const char *ct_conv_algo_name(ct_conv_algo a);

typedef enum { CT_POOL_MAX = 0, CT_POOL_AVG = 1 } ct_pool;

/* Broadcasting of one operand to an output sample shape (numpy rules on the sample shape:
 * shapes aligned at their last axis, every operand axis equal to the output's or 1; the
 * batch axis is never broadcast). Output element i of a sample, at index (i_0, ..., i_d)
 * over dim[], reads operand element sum_a i_a * stride[a] of the same sample. Axes are
 * merged where possible (size-1 axes dropped, neighbours with the same broadcast status
 * joined), so dim[] is not the output shape itself, only its layout. */
typedef struct ct_bcast {
    int ndim;
    int64_t dim[CT_MAX_DIMS];    /* output extent per (merged) axis */
    int64_t stride[CT_MAX_DIMS]; /* operand floats per step along the axis; 0: broadcast */
    int64_t in_size, out_size;   /* floats per sample of the operand and of the output */
} ct_bcast;

/* Fills g for operand shape `in` broadcast to shape `out`. Returns 0, or -1 when in does
 * not broadcast to out (more axes than out, or an axis neither equal nor 1). */
int ct_bcast_make(const ct_shape *in, const ct_shape *out, ct_bcast *g);

/* ---- the training step's own ops: losses, metrics, regularizers, clipping, updates ---- */

typedef enum {
    CT_LOSS_MSE = 0, CT_LOSS_MAE, CT_LOSS_HUBER, CT_LOSS_LOG_COSH, CT_LOSS_BCE, CT_LOSS_CCE,
    CT_LOSS_SPARSE_CCE, CT_LOSS_KLD, CT_LOSS_HINGE, CT_LOSS_MSLE, CT_LOSS_MAPE, CT_LOSS_POISSON,
    CT_LOSS_COSINE, CT_LOSS_SQUARED_HINGE, CT_LOSS_CAT_HINGE, CT_LOSS_BINARY_FOCAL,
    CT_LOSS_CAT_FOCAL, CT_LOSS_COUNT
} ct_loss_id;

/* A loss as the backend computes it (src/train/loss.c holds the CPU reference and the
 * formulas): from_logits and fused as in struct ct_loss, delta for huber, label_smoothing
 * for the crossentropies, alpha, gamma and apply_class_balancing for the focal ones. */
typedef struct ct_loss_op {
    ct_loss_id id;
    bool from_logits, fused;
    double delta;
    /* What is added to *sum is the per-sample losses' sum times this: set for a masked
     * output, whose batch mean is over its unmasked positions. 0 (as in an op written
     * without it) is read as 1. */
    double sum_scale;
    double label_smoothing, alpha, gamma;
    bool apply_class_balancing;
} ct_loss_op;

typedef enum {
    CT_METRIC_BINARY_ACC = 0, CT_METRIC_CAT_ACC, CT_METRIC_SPARSE_ACC, CT_METRIC_TOP_K,
    CT_METRIC_SPARSE_TOP_K, CT_METRIC_MSE, CT_METRIC_MAE, CT_METRIC_COUNT
} ct_metric_id;

/* One optimizer step (each file in optimizers/ fills it and states the formula):
 *   SGD:     h[0] momentum (0: none, no state), flag[0] nesterov. State: momentum.
 *   ADAM:    h[0] alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t), h[1] 1 - beta_1,
 *            h[2] 1 - beta_2, h[3] epsilon, all used as float; flag[0] amsgrad.
 *            State: m, v (, v_hat).
 *   RMSPROP: h[0] rho, h[1] momentum, h[2] epsilon; flag[0] centered.
 *            State: velocity (, average_gradient) (, momentum when h[1] > 0).
 *   ADAGRAD: h[0] epsilon. State: accumulator.
 * The rest work in float32, as Keras does (optimizers/<name>.c gives each formula):
 *   NADAM:   h[0] u_{t+1} / (1 - prod u_1..u_{t+1}), h[1] (1 - u_t) / (1 - prod u_1..u_t),
 *            h[2] 1 - beta_2^t, h[3] 1 - beta_1, h[4] 1 - beta_2, h[5] epsilon.
 *            State: momentum, velocity.
 *   ADAMAX:  h[0] 1 - beta_1, h[1] beta_2, h[2] 1 - beta_1^t, h[3] epsilon.
 *            State: momentum, norm.
 *   ADADELTA: h[0] rho, h[1] 1 - rho, h[2] epsilon.
 *            State: accumulated_grad, accumulated_delta_var.
 *   LION:    h[0] beta_1, h[1] 1 - beta_1, h[2] beta_2, h[3] 1 - beta_2. State: momentum.
 *   FTRL:    h[0] -learning_rate_power, h[1] l1, h[2] 2 (l2 + beta / (2 lr)),
 *            h[3] 2 l2_shrinkage. State: accumulator, linear.
 * decay: the decoupled weight decay factor lr * weight_decay; w -= w * decay comes first.
 * ema: after the step, state slot ema_slot (the average) = ema_momentum average +
 * (1 - ema_momentum) w, in float; then, when ema_overwrite, w = average. */
typedef enum {
    CT_UPDATE_SGD = 0, CT_UPDATE_ADAM, CT_UPDATE_RMSPROP, CT_UPDATE_ADAGRAD, CT_UPDATE_NADAM,
    CT_UPDATE_ADAMAX, CT_UPDATE_ADADELTA, CT_UPDATE_LION, CT_UPDATE_FTRL
} ct_update_kind;

typedef struct ct_update {
    ct_update_kind kind;
    float lr;
    float decay;
    double h[6];
    bool flag[2];
    bool ema, ema_overwrite;
    int ema_slot;
    float ema_momentum;
} ct_update;

#define CT_STAGE_SLOTS 2

/* Floats that any backend's packed form of a k x n matrix fits in (gemm_pack_b): whole
 * panels of 16 columns. */
#define CT_GEMM_PACKED_FLOATS(k, n) ((k) * (((n) + 15) / 16 * 16))

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

    /* Products by a matrix used many times over (a recurrent kernel, once per step):
     * gemm_pack_b lays op(B) (k x n; B is k x n, or n x k with trans_b) out once in the
     * backend's own form, into `packed` (CT_GEMM_PACKED_FLOATS(k, n) floats of backend
     * memory, the caller's, read by gemm_packed alone); gemm_packed then computes
     * C = A op(B) + D, A m x k, D and C m x n (D NULL: no addend; D == C with ldd == ldc
     * is allowed). Packing again is needed whenever B changes. Each result is computed
     * the same way run after run and for any thread count, but may differ in the last
     * bits from gemm's. */
    void (*gemm_pack_b)(bool trans_b, int64_t k, int64_t n, const float *b, int64_t ldb,
                        float *packed);
    void (*gemm_packed)(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                        const float *packed, const float *d, int64_t ldd, float *c,
                        int64_t ldc);

    void (*fill)(float *x, int64_t n, float value);
    void (*copy)(float *dst, const float *src, int64_t n);
    void (*axpy)(int64_t n, float alpha, const float *x, float *y);      /* y += alpha x */
    /* out = a + alpha b over n values, the sum rounded as axpy's (out may be a or b): one
     * pass where a copy and axpy take two. */
    void (*add_scaled)(int64_t n, const float *a, float alpha, const float *b, float *out);
    void (*scale)(int64_t n, float alpha, float *x);                    /* x *= alpha */
    void (*mul)(int64_t n, const float *a, const float *b, float *out); /* out = a * b */

    /* y[r][c] += b[c] for rows x cols. */
    void (*add_row_vector)(float *y, const float *b, int64_t rows, int64_t cols);
    /* out[c] = beta * out[c] + sum_r x[r][c]. */
    void (*sum_rows)(const float *x, float *out, int64_t rows, int64_t cols, float beta);

    /* y = act(y + b) in place over rows x cols, in one pass (b NULL: no bias). act is any
     * element-wise activation (not softmax / log_softmax). */
    void (*bias_act)(ct_act act, const float *b, float *y, int64_t rows, int64_t cols);
    /* The backward of bias_act, given its output y: dy = dy * act'(y) in place (act: one
     * with ct_act_from_output), then db = column sums of that (db NULL: skipped). */
    void (*bias_act_backward)(ct_act act, const float *y, float *dy, float *db, int64_t rows,
                              int64_t cols);
    /* bias_act with its pre-activation kept: z += b (b NULL: none), then y = act(z), in one
     * pass; the same values as bias_act on z followed by act_forward into y (z != y). */
    void (*bias_act_to)(ct_act act, const float *b, float *z, float *y, int64_t rows,
                        int64_t cols);

    /* y = act(x) row-wise (rows x cols; softmax and log_softmax normalise each row).
     * x == y is allowed. */
    void (*act_forward)(ct_act act, const float *x, float *y, int64_t rows, int64_t cols);
    /* dx = dy * act'(x), given x (pre-activation) and y (its output). dx may equal dy. */
    void (*act_backward)(ct_act act, const float *x, const float *y, const float *dy,
                         float *dx, int64_t rows, int64_t cols);

    /* mask[i] = (uniform(key, counter0 + i) >= rate) / (1 - rate): inverted dropout. */
    void (*dropout_mask)(float *mask, int64_t n, float rate, uint64_t key, uint64_t counter0);
    /* x[i] += stddev * normal(key, counter0 + i). */
    void (*add_noise)(float *x, int64_t n, float stddev, uint64_t key, uint64_t counter0);
    /* y[r][p][c] = x[r][p][c] * s[r][c] for rows x spatial x c (spatial dropout). x == y ok. */
    void (*scale_channels)(const float *x, const float *s, float *y, int64_t rows,
                           int64_t spatial, int64_t c);

    /* --- preprocessing and augmentation (backend_cpu_image.c; image_aug.h) --- */
    /* y = x * scale + offset over n values (rescaling). x == y ok. */
    void (*scale_shift)(const float *x, float *y, int64_t n, float scale, float offset);
    /* y = each of rows images x (a->h x a->w x a->c) through its affine transform, drawn
     * from key (see ct_aug_matrix); y is rows x a->oh x a->ow x a->c. */
    void (*image_aug)(const ct_image_aug *a, const float *x, float *y, int64_t rows,
                      uint64_t key);
    /* dx = the transpose of that transform applied to dy (overwrites dx). */
    void (*image_aug_backward)(const ct_image_aug *a, const float *dy, float *dx, int64_t rows,
                               uint64_t key);
    /* Random contrast: per sample a factor f = uniform(1 - lo, 1 + hi) (draw key, 8 r), then
     * y = clip((x - mean) f + mean, vmin, vmax), the mean per channel over `spatial`. */
    void (*contrast)(const float *x, float *y, int64_t rows, int64_t spatial, int64_t c,
                     float lo, float hi, float vmin, float vmax, uint64_t key);
    /* dx = the Jacobian of that, given the forward's y (clipped values pass no gradient). */
    void (*contrast_backward)(const float *y, const float *dy, float *dx, int64_t rows,
                              int64_t spatial, int64_t c, float lo, float hi, float vmin,
                              float vmax, uint64_t key);
    /* Per channel (the last of c) over rows: mean[k], and m2[k] = sum of (x - mean[k])^2
     * (normalization's adapt). */
    void (*channel_moments)(const float *x, int64_t rows, int64_t c, float *mean, float *m2);
    /* y = (x - mean) / max(sqrt(var), 1e-7) per channel; invert: y = mean + x max(...). */
    void (*normalize_channels)(const float *x, float *y, int64_t rows, int64_t c,
                               const float *mean, const float *var, bool invert);
    /* dx = dy / max(sqrt(var), 1e-7) (invert: times it). dx == dy ok. */
    void (*normalize_channels_backward)(const float *dy, float *dx, int64_t rows, int64_t c,
                                        const float *var, bool invert);

    /* --- convolution (backend_cpu_conv.c) --- */
    /* Patches of channels [c0, c0 + cn) of `rows` samples: cols gets rows*out_h*out_w
     * rows of k_h*k_w*cn values, ordered (i, j, channel), zeros outside the input. */
    void (*im2col)(const ct_window *w, const float *x, int64_t rows, int64_t c0, int64_t cn,
                   float *cols);
    /* The adjoint: adds each patch value back into dx (channels [c0, c0 + cn)). The caller
     * zeroes dx first when it wants a plain result. */
    void (*col2im)(const ct_window *w, const float *cols, int64_t rows, int64_t c0, int64_t cn,
                   float *dx);
    /* A whole convolution (groups; kernel (k_h*k_w*in_c/groups) x filters, Keras's layout;
     * y: out_h*out_w*filters per sample, overwritten) followed by y = act(y + bias) (bias
     * may be NULL; act as for bias_act), built from one sample's patches at a time so
     * they and the sample's output stay in cache. work: conv_workspace floats. */
    /* The algorithm conv_forward / conv_backward will use for this convolution, given the
     * one asked for (w->algo is ignored): the one asked for where it can compute this
     * shape on this machine, a choice by shape for AUTO (and for WINOGRAD where it does
     * not apply), im2col where direct does not apply either. NULL:
     * the backend has one algorithm (reported as im2col). Chosen once, stored in w->algo
     * before conv_workspace is asked. */
    ct_conv_algo (*conv_algorithm)(const ct_window *w, int64_t groups, int64_t filters,
                                   ct_conv_algo wanted);
    int64_t (*conv_workspace)(const ct_window *w, int64_t groups, int64_t filters, int64_t rows);
    void (*conv_forward)(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                         const float *kernel, const float *bias, ct_act act, float *y,
                         int64_t rows, float *work);
    /* The backward, given conv_forward's output y: first dy = dy * act'(y) in place (act:
     * linear or one with ct_act_from_output; y may be NULL for linear), then dx, dkernel
     * and dbias, each overwritten and each may be NULL. Same for any thread count. */
    void (*conv_backward)(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                          const float *kernel, const float *y, ct_act act, float *dy,
                          float *dx, float *dkernel, float *dbias, int64_t rows, float *work);
    /* Depthwise convolution with depth multiplier m: kernel (k_h, k_w, in_c, m), output
     * channel c*m + k. y has out_h x out_w x in_c*m per sample (no bias). */
    void (*depthwise_forward)(const ct_window *w, int64_t m, const float *x, const float *kernel,
                              float *y, int64_t rows);
    /* dx (overwritten, may be NULL) and dkernel (overwritten) from dy. */
    void (*depthwise_backward)(const ct_window *w, int64_t m, const float *x,
                               const float *kernel, const float *dy, float *dx, float *dkernel,
                               int64_t rows);

    /* --- pooling and reshaping (backend_cpu_pool.c) --- */
    /* y: out_h x out_w x in_c per sample. Average pooling divides by the number of input
     * positions inside the window (padding excluded), as Keras does. */
    void (*pool_forward)(ct_pool kind, const ct_window *w, const float *x, float *y,
                         int64_t rows);
    /* dx overwritten. Max pooling routes each dy to the first maximum of its window. */
    void (*pool_backward)(ct_pool kind, const ct_window *w, const float *x, const float *y,
                          const float *dy, float *dx, int64_t rows);
    /* Over the spatial axis of rows x spatial x c: y is rows x c. */
    void (*global_pool_forward)(ct_pool kind, const float *x, float *y, int64_t rows,
                                int64_t spatial, int64_t c);
    void (*global_pool_backward)(ct_pool kind, const float *x, const float *y, const float *dy,
                                 float *dx, int64_t rows, int64_t spatial, int64_t c);
    /* Zero padding of h x w x c samples to (h+top+bottom) x (w+left+right) x c. With
     * crop set it runs the other way: x is the padded sample, y its interior h x w x c. */
    void (*pad2d)(const float *x, float *y, int64_t rows, int64_t h, int64_t w, int64_t c,
                  int64_t top, int64_t bottom, int64_t left, int64_t right, bool crop);
    /* Nearest-neighbour upsampling of h x w x c by (sh, sw); with sum_back set, the
     * adjoint: y (h x w x c) = sums of x's (h*sh x w*sw x c) blocks. */
    void (*upsample2d)(const float *x, float *y, int64_t rows, int64_t h, int64_t w, int64_t c,
                       int64_t sh, int64_t sw, bool sum_back);

    /* --- normalization (backend_cpu_norm.c) --- */
    /* Batch normalization over n positions (all rows and spatial positions) of c channels.
     * Training: mean/var (biased) of the batch into mean, var; invstd = 1/sqrt(var + eps);
     * y = (x - mean) * invstd * gamma + beta, then y = max(y, 0) where relu is set (a
     * fused ReLU layer). gamma/beta NULL mean 1/0. */
    void (*batchnorm_train)(const float *x, float *y, int64_t n, int64_t c, const float *gamma,
                            const float *beta, float eps, float *mean, float *var,
                            float *invstd, bool relu);
    /* Inference with given (moving) mean and var. */
    void (*batchnorm_infer)(const float *x, float *y, int64_t n, int64_t c, const float *gamma,
                            const float *beta, float eps, const float *mean, const float *var,
                            bool relu);
    /* Backward of batchnorm_train: dx (overwritten; NULL: only the parameter gradients),
     * dgamma, dbeta (overwritten; may be NULL when gamma/beta are absent). y: the forward's
     * output when it applied relu (dy is then taken where y > 0), else NULL. dy may be
     * overwritten. */
    void (*batchnorm_backward)(const float *x, const float *y, float *dy, float *dx, int64_t n,
                               int64_t c, const float *gamma, const float *mean,
                               const float *invstd, float *dgamma, float *dbeta);
    /* Group normalization per sample over `groups` groups of c/groups channels and all
     * spatial positions (layer normalization over the last axis is spatial*rows samples
     * with groups = 1 and spatial = 1). gamma/beta per channel (NULL: 1/0). mean and invstd
     * receive rows*groups values for the backward, whose dx may be NULL. */
    void (*groupnorm_forward)(const float *x, float *y, int64_t rows, int64_t spatial, int64_t c,
                              int64_t groups, const float *gamma, const float *beta, float eps,
                              float *mean, float *invstd);
    void (*groupnorm_backward)(const float *x, const float *dy, float *dx, int64_t rows,
                               int64_t spatial, int64_t c, int64_t groups, const float *gamma,
                               const float *mean, const float *invstd, float *dgamma,
                               float *dbeta);

    /* --- the training step (losses: src/train/loss.c; metrics: src/train/metric.c) --- */
    /* *sum += the sum over rows of the per-sample loss (loss.h); dpred (may be NULL) =
     * scale * d(sum)/d(pred). pred rows x cols; y rows x cols, or rows class indices for
     * the sparse loss. sum: one double of backend memory. */
    void (*loss)(const ct_loss_op *op, const float *pred, const float *y, float *dpred,
                 int64_t rows, int64_t cols, float scale, double *sum);
    /* *sum += the batch's sum of per-sample values: hits for the accuracies (binary: the
     * share of hits over cols), the mean over cols of e^2 or |e| for mse / mae. k: top-k. */
    void (*metric)(ct_metric_id id, int k, const float *pred, const float *y, int64_t rows,
                   int64_t cols, double *sum);
    /* *penalty += weight * (l1 sum|w| + l2 sum w^2), sums in double; g (may be NULL)
     * += l1 sign(w) + 2 l2 w. penalty: one double of backend memory. */
    void (*regularize)(const float *w, float *g, int64_t n, double l1, double l2,
                       double weight, double *penalty);
    /* x = clamp(x, -c, c). */
    void (*clip_value)(float *x, int64_t n, float c);
    /* x *= c / ||x|| when ||x|| > c (Keras's clip_by_norm; the norm in double). */
    void (*clip_norm)(float *x, int64_t n, double c);
    /* One optimizer step over n parameters: w, their gradients g, and the state (slot k of
     * element i at state[k * n + i]). Element-wise, so any split gives the same bits. */
    void (*update)(const ct_update *u, float *w, const float *g, float *state, int64_t n);

    /* --- merging and broadcasting (backend_cpu_merge.c) --- */
    /* y[r*ldy + j] = x[r*ldx + j] for r < rows, j < cols: concatenation (a block of
     * columns of y per input) and its backward (the same block read back). x and y must
     * not overlap. */
    void (*copy_strided)(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                         int64_t cols);
    /* y (cols x rows) = x (rows x cols) transposed; x and y must not overlap. */
    void (*transpose)(const float *x, int64_t rows, int64_t cols, float *y);
    /* rows samples of an operand broadcast to the output shape (ct_bcast): y[r][i] =
     * x[r][offset(i)]; y holds g->out_size floats per sample, x g->in_size. */
    void (*expand)(const ct_bcast *g, const float *x, float *y, int64_t rows);
    /* The adjoint: dx (overwritten, g->in_size per sample) = the sums of dy over the output
     * positions that read each operand element, added in increasing output position. */
    void (*expand_backward)(const ct_bcast *g, const float *dy, float *dx, int64_t rows);
    /* One step of a running maximum (minimum when `minimum`) over several inputs, input k
     * of them: k == 0 sets y = x, arg = 0; otherwise where x > y (x < y) y = x and arg = k.
     * Ties keep the earlier input, which then takes the whole gradient (as TensorFlow's
     * gradient of maximum does). n floats each. */
    void (*extremum)(bool minimum, const float *x, float *y, float *arg, float k, int64_t n);
    /* dx = (arg == k) ? dy : 0 over n floats: the gradient of input k of the extremum. */
    void (*take_where)(const float *arg, float k, const float *dy, float *dx, int64_t n);
    /* batch independent GEMMs, item b as gemm on a + b*stride_a, b + b*stride_b and
     * c + b*stride_c (the batch_dot of Dot and attention scores). */
    void (*gemm_batched)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, int64_t stride_a,
                         const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                         int64_t ldc, int64_t stride_c, int64_t batch);
    /* Attention's softmax (layers/attention.c), in place over `blocks` blocks of tq x tv
     * scores: each row becomes softmax(row). causal (tq == tv): row i of a block takes
     * only its first i + 1 scores (the others are not read) and gets exact zeros past
     * them. */
    void (*attention_softmax)(float *s, int64_t blocks, int64_t tq, int64_t tv, bool causal);
    /* Its backward given the probabilities p: d = p * (d - sum(p * d)) row by row, in
     * place; causal: d past the diagonal is not read and becomes 0. */
    void (*attention_softmax_backward)(const float *p, float *d, int64_t blocks, int64_t tq,
                                       int64_t tv, bool causal);
    /* gemm_batched with beta 0 (C = alpha op(A) op(B)) where one matrix is causal: square
     * and lower triangular (attention's probabilities and their gradients). trans_a false
     * and trans_b true: that matrix is C, of which only the lower triangle (j <= i) is
     * wanted; what lies above it is left unspecified. Otherwise it is A (m x k, or k x m
     * transposed), whose entries above the diagonal must be zeros, which may be skipped. */
    void (*gemm_batched_causal)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                float alpha, const float *a, int64_t lda, int64_t stride_a,
                                const float *b, int64_t ldb, int64_t stride_b, float *c,
                                int64_t ldc, int64_t stride_c, int64_t batch);
    /* L2 normalization along the middle axis of x viewed as [outer][n][inner] (Keras's
     * l2_normalize): y = x * inv with inv = 1/sqrt(max(sum x^2, eps)); inv receives the
     * outer*inner factors for the backward. x == y is allowed. */
    void (*l2_normalize)(const float *x, float *y, float *inv, int64_t outer, int64_t n,
                         int64_t inner, float eps);
    /* dx (overwritten) from dy given the forward's x, y and inv: inv * (dy - y (y . dy))
     * along the axis, or dy * inv where sum x^2 < eps (the factor is then a constant). */
    void (*l2_normalize_backward)(const float *x, const float *y, const float *inv,
                                  const float *dy, float *dx, int64_t outer, int64_t n,
                                  int64_t inner, float eps);

    /* --- embeddings: rows of a table picked by token ids (backend_cpu_merge.c) --- */
    /* y[i] = table[ids[i]] for n ids, dim floats each. ids are floats holding integers; an
     * id that is not an integer in [0, nrows) gives a row of zeros, so a bad id never reads
     * outside the table (the data are checked before training, so this is a last guard). */
    void (*gather_rows)(const float *table, int64_t nrows, int64_t dim, const float *ids,
                        int64_t n, float *y);
    /* The adjoint: grad[ids[i]] += dy[i] for n ids (grad: nrows x dim, accumulated, not
     * overwritten; ids outside the table add nothing). Each grad value takes its adds in
     * increasing i, so results are the same bits for any thread count and on every
     * backend. */
    void (*scatter_add_rows)(const float *dy, const float *ids, int64_t n, int64_t dim,
                             float *grad, int64_t nrows);
    /* --- recurrent cells (backend_cpu_rnn.c) --- */
    /* One LSTM step of rows x units: a holds the pre-activations, rows of 4 units values
     * [i | f | c | o] (Keras's gate order, as a GEMM by the kernels writes them); writes
     * y (the same layout) = (rec_act(i), rec_act(f), act(c), rec_act(o)) and, rows x
     * units each, c1 = f c0 + i act(c), tc = act(c1), h = rec_act(o) tc. */
    void (*lstm_step)(ct_act act, ct_act rec_act, const float *a, float *y, const float *c0,
                      float *c1, float *tc, float *h, int64_t rows, int64_t units);
    /* Its backward from dh (the gradient of h) and dc (of c1, replaced by that of c0):
     * da (a's layout), the pre-activations' gradients. a, y, c0, c1, tc: the forward's. */
    void (*lstm_step_backward)(ct_act act, ct_act rec_act, const float *a, const float *y,
                               const float *c0, const float *c1, const float *tc,
                               const float *dh, float *dc, float *da, int64_t rows,
                               int64_t units);
    /* lstm_step on pre-activations computed first: a (rows x 4 units, overwritten) =
     * z op(B), z rows x k (leading dimension ldz) and op(B) k x 4 units packed by
     * gemm_pack_b; then lstm_step on a. One op, so that a backend may run the cell on a
     * block of units while that block's gates are in cache. The same bits as gemm_packed
     * followed by lstm_step. */
    void (*lstm_step_packed)(ct_act act, ct_act rec_act, const float *z, int64_t ldz,
                             int64_t k, const float *packed, float *a, float *y,
                             const float *c0, float *c1, float *tc, float *h, int64_t rows,
                             int64_t units);
    /* lstm_step_backward with the state gradient computed first: dh (rows x units,
     * overwritten) = r op(B) + d, r rows x k (leading dimension ldr; the later step's gate
     * gradients), op(B) k x units packed by gemm_pack_b, d rows x units (leading dimension
     * ldd; NULL: none); then lstm_step_backward from that dh. da must not overlap r. The
     * same bits as gemm_packed followed by lstm_step_backward. */
    void (*lstm_step_backward_packed)(ct_act act, ct_act rec_act, const float *r, int64_t ldr,
                                      int64_t k, const float *packed, const float *d,
                                      int64_t ldd, const float *a, const float *y,
                                      const float *c0, const float *c1, const float *tc,
                                      float *dh, float *dc, float *da, int64_t rows,
                                      int64_t units);
    /* Masks: mask[i] = 1 where any of the feat floats from x + i*feat differs from value,
     * else 0, for n steps (Embedding's mask_zero is feat 1, value 0; Masking's mask_value). */
    void (*step_mask)(const float *x, int64_t n, int64_t feat, float value, float *mask);
    /* w[r][t] = mask[r][t] / sum_t mask[r][t] for rows x steps (a masked mean's weights);
     * a row of padding only gets zeros. */
    void (*mask_weights)(const float *mask, int64_t rows, int64_t steps, float *w);

    /* --- queues, errors and batch staging (no-ops / plain memory on the CPU) --- */
    /* Waits until all queued work is done. */
    void (*sync)(void);
    /* Ops return nothing; a device that fails (out of memory, a kernel fault) remembers
     * its first error. check returns -1 and fills err with it (then forgets it), else 0.
     * The driver calls it whenever it reads results back. */
    int (*check)(ct_error *err);
    /* Host memory the backend copies from fastest (page-locked on a GPU); zeroed. */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    /* Batches pass through CT_STAGE_SLOTS slots so the copy of the next one overlaps the
     * compute of this one. For each batch: stage_wait_host(s) before the host writes slot
     * s's host buffer; stage_upload(s, ...) for each of its buffers; stage_use(s) before
     * issuing the compute that reads them; stage_release(s) after it. */
    void (*stage_wait_host)(int slot);
    void (*stage_upload)(int slot, void *dst, const void *host_src, size_t bytes);
    void (*stage_use)(int slot);
    void (*stage_release)(int slot);
} ct_backend;

/* The CPU reference backend (OpenBLAS). Static; never freed. */
const ct_backend *ct_backend_cpu(void);

/* The CUDA backend on the current GPU (device 0, or CUDA_VISIBLE_DEVICES's first), set up
 * on first use; static, never freed. NULL with err set when this build has no CUDA backend
 * or no GPU can be used; the message says which. */
const ct_backend *ct_backend_cuda(ct_error *err);
/* Whether the CUDA backend can run here (built in and a GPU present), without an error. */
bool ct_cuda_available(void);

#endif
