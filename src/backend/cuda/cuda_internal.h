/* cuda_internal.h - what the CUDA backend's files share: the compute stream, the cuBLAS
 * handle, scratch memory, error recording, launch sizes, and the launcher of every op
 * (same signature as its slot in ct_backend). The random streams come from src/rng.h,
 * whose inline generators compile for the device too.
 *
 * Every op runs asynchronously on the one compute stream, in issue order; no op
 * synchronises the host except download, sync and the reads the driver asks for. Reductions
 * use a fixed tree order and no floating-point atomics, so a run is reproducible. */
#ifndef CT_CUDA_INTERNAL_H
#define CT_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h"
#include "rng.h"

/* The compute stream every op is issued on. */
cudaStream_t ct_cuda_stream(void);
cublasHandle_t ct_cuda_blas(void);
/* Device memory for an op's temporaries: slot 0..CT_CUDA_SCRATCH_SLOTS-1, at least
 * `bytes`, valid until the next call for the same slot. Growing it waits for queued work.
 * NULL (with the error recorded) when the device is out of memory. */
#define CT_CUDA_SCRATCH_SLOTS 4
void *ct_cuda_scratch(int slot, size_t bytes);
/* Records the first failure (what: the op; code: a cudaError_t or cublasStatus_t, as
 * text); later ones are dropped until the driver reads it with check. */
void ct_cuda_fail(const char *what, const char *detail);
/* After a launch: records cudaGetLastError() when it is not cudaSuccess. */
void ct_cuda_check_launch(const char *what);

#ifdef __cplusplus
}
#endif

/* Grid size for a grid-stride loop over n items with `threads` threads per block. */
static inline unsigned ct_cuda_grid(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b < 1)
        b = 1;
    return (unsigned)(b > 65535 * 16 ? 65535 * 16 : b);
}

#define CT_CUDA_THREADS 256

#ifdef __cplusplus
extern "C" {
#endif

/* ---- launchers: same meaning as the ct_backend slot of the same name ---------------- */

/* backend_cuda.cu (core) */
void ct_cuda_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                  float *c, int64_t ldc);
void ct_cuda_gemm_pack_b(bool trans_b, int64_t k, int64_t n, const float *b, int64_t ldb,
                         float *packed);
void ct_cuda_gemm_packed(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const float *packed, const float *d, int64_t ldd, float *c,
                         int64_t ldc);

/* cuda_elementwise.cu */
void ct_cuda_fill(float *x, int64_t n, float value);
void ct_cuda_copy(float *dst, const float *src, int64_t n);
void ct_cuda_axpy(int64_t n, float alpha, const float *x, float *y);
void ct_cuda_add_scaled(int64_t n, const float *a, float alpha, const float *b, float *out);
void ct_cuda_scale(int64_t n, float alpha, float *x);
void ct_cuda_mul(int64_t n, const float *a, const float *b, float *out);
void ct_cuda_add_row_vector(float *y, const float *b, int64_t rows, int64_t cols);
void ct_cuda_sum_rows(const float *x, float *out, int64_t rows, int64_t cols, float beta);
void ct_cuda_bias_act(ct_act act, const float *b, float *y, int64_t rows, int64_t cols);
void ct_cuda_bias_act_backward(ct_act act, const float *y, float *dy, float *db, int64_t rows,
                               int64_t cols);
void ct_cuda_bias_act_to(ct_act act, const float *b, float *z, float *y, int64_t rows,
                         int64_t cols);
void ct_cuda_act_forward(ct_act act, const float *x, float *y, int64_t rows, int64_t cols);
void ct_cuda_act_backward(ct_act act, const float *x, const float *y, const float *dy,
                          float *dx, int64_t rows, int64_t cols);
void ct_cuda_attention_softmax(float *s, int64_t blocks, int64_t tq, int64_t tv, bool causal);
void ct_cuda_attention_softmax_backward(const float *p, float *d, int64_t blocks, int64_t tq,
                                        int64_t tv, bool causal);
void ct_cuda_dropout_mask(float *mask, int64_t n, float rate, uint64_t key, uint64_t counter0);
void ct_cuda_add_noise(float *x, int64_t n, float stddev, uint64_t key, uint64_t counter0);
void ct_cuda_scale_channels(const float *x, const float *s, float *y, int64_t rows,
                            int64_t spatial, int64_t c);

/* cuda_image.cu */
void ct_cuda_channel_moments(const float *x, int64_t rows, int64_t c, float *mean, float *m2);
void ct_cuda_normalize_channels(const float *x, float *y, int64_t rows, int64_t c,
                                const float *mean, const float *var, bool invert);
void ct_cuda_normalize_channels_backward(const float *dy, float *dx, int64_t rows, int64_t c,
                                         const float *var, bool invert);
void ct_cuda_scale_shift(const float *x, float *y, int64_t n, float scale, float offset);
void ct_cuda_image_aug(const ct_image_aug *a, const float *x, float *y, int64_t rows,
                       uint64_t key);
void ct_cuda_image_aug_backward(const ct_image_aug *a, const float *dy, float *dx, int64_t rows,
                                uint64_t key);
void ct_cuda_contrast(const float *x, float *y, int64_t rows, int64_t spatial, int64_t c,
                      float lo, float hi, float vmin, float vmax, uint64_t key);
void ct_cuda_contrast_backward(const float *y, const float *dy, float *dx, int64_t rows,
                               int64_t spatial, int64_t c, float lo, float hi, float vmin,
                               float vmax, uint64_t key);

/* cuda_conv.cu */
void ct_cuda_im2col(const ct_window *w, const float *x, int64_t rows, int64_t c0, int64_t cn,
                    float *cols);
void ct_cuda_col2im(const ct_window *w, const float *cols, int64_t rows, int64_t c0,
                    int64_t cn, float *dx);
int64_t ct_cuda_conv_workspace(const ct_window *w, int64_t groups, int64_t filters,
                               int64_t rows);
void ct_cuda_conv_forward(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                          const float *kernel, const float *bias, ct_act act, float *y,
                          int64_t rows, float *work);
void ct_cuda_conv_backward(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                           const float *kernel, const float *y, ct_act act, float *dy,
                           float *dx, float *dkernel, float *dbias, int64_t rows, float *work);
void ct_cuda_depthwise_forward(const ct_window *w, int64_t m, const float *x,
                               const float *kernel, float *y, int64_t rows);
void ct_cuda_depthwise_backward(const ct_window *w, int64_t m, const float *x,
                                const float *kernel, const float *dy, float *dx,
                                float *dkernel, int64_t rows);

/* cuda_pool.cu */
void ct_cuda_pool_forward(ct_pool kind, const ct_window *w, const float *x, float *y,
                          int64_t rows);
void ct_cuda_pool_backward(ct_pool kind, const ct_window *w, const float *x, const float *y,
                           const float *dy, float *dx, int64_t rows);
void ct_cuda_global_pool_forward(ct_pool kind, const float *x, float *y, int64_t rows,
                                 int64_t spatial, int64_t c);
void ct_cuda_global_pool_backward(ct_pool kind, const float *x, const float *y,
                                  const float *dy, float *dx, int64_t rows, int64_t spatial,
                                  int64_t c);
void ct_cuda_pad2d(const float *x, float *y, int64_t rows, int64_t h, int64_t w, int64_t c,
                   int64_t top, int64_t bottom, int64_t left, int64_t right, bool crop);
void ct_cuda_upsample2d(const float *x, float *y, int64_t rows, int64_t h, int64_t w,
                        int64_t c, int64_t sh, int64_t sw, bool sum_back);

/* cuda_norm.cu */
void ct_cuda_batchnorm_train(const float *x, float *y, int64_t n, int64_t c,
                             const float *gamma, const float *beta, float eps, float *mean,
                             float *var, float *invstd, bool relu);
void ct_cuda_batchnorm_infer(const float *x, float *y, int64_t n, int64_t c,
                             const float *gamma, const float *beta, float eps,
                             const float *mean, const float *var, bool relu);
void ct_cuda_batchnorm_backward(const float *x, const float *y, float *dy, float *dx,
                                int64_t n, int64_t c, const float *gamma, const float *mean,
                                const float *invstd, float *dgamma, float *dbeta);
void ct_cuda_groupnorm_forward(const float *x, float *y, int64_t rows, int64_t spatial,
                               int64_t c, int64_t groups, const float *gamma,
                               const float *beta, float eps, float *mean, float *invstd);
void ct_cuda_groupnorm_backward(const float *x, const float *dy, float *dx, int64_t rows,
                                int64_t spatial, int64_t c, int64_t groups,
                                const float *gamma, const float *mean, const float *invstd,
                                float *dgamma, float *dbeta);

/* cuda_train.cu */
void ct_cuda_loss(const ct_loss_op *op, const float *pred, const float *y, float *dpred,
                  int64_t rows, int64_t cols, float scale, double *sum);
void ct_cuda_metric(ct_metric_id id, int k, const float *pred, const float *y, int64_t rows,
                    int64_t cols, double *sum);
void ct_cuda_regularize(const float *w, float *g, int64_t n, double l1, double l2,
                        double weight, double *penalty);
void ct_cuda_clip_value(float *x, int64_t n, float c);
void ct_cuda_clip_norm(float *x, int64_t n, double c);
void ct_cuda_update(const ct_update *u, float *w, const float *g, float *state, int64_t n);

/* cuda_merge.cu */
void ct_cuda_copy_strided(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                          int64_t cols);
void ct_cuda_expand(const ct_bcast *g, const float *x, float *y, int64_t rows);
void ct_cuda_expand_backward(const ct_bcast *g, const float *dy, float *dx, int64_t rows);
void ct_cuda_extremum(bool minimum, const float *x, float *y, float *arg, float k, int64_t n);
void ct_cuda_take_where(const float *arg, float k, const float *dy, float *dx, int64_t n);
void ct_cuda_gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, int64_t stride_a,
                          const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                          int64_t ldc, int64_t stride_c, int64_t batch);
void ct_cuda_gemm_batched_causal(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                 float alpha, const float *a, int64_t lda, int64_t stride_a,
                                 const float *b, int64_t ldb, int64_t stride_b, float *c,
                                 int64_t ldc, int64_t stride_c, int64_t batch);
void ct_cuda_l2_normalize(const float *x, float *y, float *inv, int64_t outer, int64_t n,
                          int64_t inner, float eps);
void ct_cuda_l2_normalize_backward(const float *x, const float *y, const float *inv,
                                   const float *dy, float *dx, int64_t outer, int64_t n,
                                   int64_t inner, float eps);

/* cuda_embed.cu */
void ct_cuda_gather_rows(const float *table, int64_t nrows, int64_t dim, const float *ids,
                         int64_t n, float *y);
void ct_cuda_lstm_step(ct_act act, ct_act rec_act, const float *a, float *y, const float *c0,
                       float *c1, float *tc, float *h, int64_t rows, int64_t units);
void ct_cuda_lstm_step_packed(ct_act act, ct_act rec_act, const float *z, int64_t ldz,
                              int64_t k, const float *packed, float *a, float *y,
                              const float *c0, float *c1, float *tc, float *h, int64_t rows,
                              int64_t units);
void ct_cuda_lstm_step_backward_packed(ct_act act, ct_act rec_act, const float *r, int64_t ldr,
                                       int64_t k, const float *packed, const float *d,
                                       int64_t ldd, const float *a, const float *y,
                                       const float *c0, const float *c1, const float *tc,
                                       float *dh, float *dc, float *da, int64_t rows,
                                       int64_t units);
void ct_cuda_lstm_step_backward(ct_act act, ct_act rec_act, const float *a, const float *y,
                                const float *c0, const float *c1, const float *tc,
                                const float *dh, float *dc, float *da, int64_t rows,
                               int64_t units);
void ct_cuda_mask_weights(const float *mask, int64_t rows, int64_t steps, float *w);
void ct_cuda_transpose(const float *x, int64_t rows, int64_t cols, float *y);
void ct_cuda_step_mask(const float *x, int64_t n, int64_t feat, float value, float *mask);
void ct_cuda_scatter_add_rows(const float *dy, const float *ids, int64_t n, int64_t dim,
                              float *grad, int64_t nrows);

#ifdef __cplusplus
}
#endif

#endif
