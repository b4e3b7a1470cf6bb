/* backend_cpu.h - the CPU backend's kernels by op family, as plain functions:
 * backend_cpu.c assembles them into ct_backend_cpu()'s table, and tests call them directly
 * to check one kernel. Layers never call them (they go through the table), which is why
 * they are not in backend.h.
 *
 * Ownership: every buffer is the caller's (host memory); the kernels allocate nothing and
 * keep no pointer after they return. */
#ifndef CT_BACKEND_CPU_H
#define CT_BACKEND_CPU_H

#include "backend.h"

void ct_cpu_im2col(const ct_window *w, const float *x, int64_t rows, int64_t c0, int64_t cn,
                   float *cols);
void ct_cpu_col2im(const ct_window *w, const float *cols, int64_t rows, int64_t c0, int64_t cn,
                   float *dx);
ct_conv_algo ct_cpu_conv_algorithm(const ct_window *w, int64_t groups, int64_t filters,
                                   ct_conv_algo wanted);
int64_t ct_cpu_conv_workspace(const ct_window *w, int64_t groups, int64_t filters, int64_t rows);
void ct_cpu_conv_forward(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                         const float *kernel, const float *bias, ct_act act, float *y,
                         int64_t rows, float *work);
void ct_cpu_conv_backward(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                          const float *kernel, const float *y, ct_act act, float *dy,
                          float *dx, float *dkernel, float *dbias, int64_t rows, float *work);
/* Serial kernels of bias_act / bias_act_backward; the latter adds the column sums into db
 * (not overwritten; NULL: skipped). */
void ct_cpu_bias_act(ct_act act, const float *b, float *y, int64_t rows, int64_t cols);
void ct_cpu_bias_act_grad(ct_act act, const float *y, float *dy, float *db, int64_t rows,
                          int64_t cols);
void ct_cpu_depthwise_forward(const ct_window *w, int64_t m, const float *x, const float *kernel,
                              float *y, int64_t rows);
void ct_cpu_depthwise_backward(const ct_window *w, int64_t m, const float *x,
                               const float *kernel, const float *dy, float *dx, float *dkernel,
                               int64_t rows);
void ct_cpu_pool_forward(ct_pool kind, const ct_window *w, const float *x, float *y,
                         int64_t rows);
void ct_cpu_pool_backward(ct_pool kind, const ct_window *w, const float *x, const float *y,
                          const float *dy, float *dx, int64_t rows);
void ct_cpu_global_pool_forward(ct_pool kind, const float *x, float *y, int64_t rows,
                                int64_t spatial, int64_t c);
void ct_cpu_global_pool_backward(ct_pool kind, const float *x, const float *y, const float *dy,
                                 float *dx, int64_t rows, int64_t spatial, int64_t c);
void ct_cpu_pad2d(const float *x, float *y, int64_t rows, int64_t h, int64_t w, int64_t c,
                  int64_t top, int64_t bottom, int64_t left, int64_t right, bool crop);
void ct_cpu_upsample2d(const float *x, float *y, int64_t rows, int64_t h, int64_t w, int64_t c,
                       int64_t sh, int64_t sw, bool sum_back);
void ct_cpu_add_noise(float *x, int64_t n, float stddev, uint64_t key, uint64_t counter0);
void ct_cpu_scale_channels(const float *x, const float *s, float *y, int64_t rows,
                           int64_t spatial, int64_t c);
void ct_cpu_batchnorm_train(const float *x, float *y, int64_t n, int64_t c, const float *gamma,
                            const float *beta, float eps, float *mean, float *var, float *invstd,
                            bool relu);
void ct_cpu_batchnorm_infer(const float *x, float *y, int64_t n, int64_t c, const float *gamma,
                            const float *beta, float eps, const float *mean, const float *var,
                            bool relu);
void ct_cpu_batchnorm_backward(const float *x, const float *y, float *dy, float *dx, int64_t n,
                               int64_t c, const float *gamma, const float *mean,
                               const float *invstd, float *dgamma, float *dbeta);
/* y[i] = expf(x[i] - m) for i < n, every x[i] - m <= 0 (y may be x), with the bits of the C
 * library's expf, four at a time where exp_libm.c's vector path agrees with it
 * (ct_cpu_exp_vector says whether it does). */
void ct_cpu_exp_shifted(const float *x, float m, float *y, int64_t n);
bool ct_cpu_exp_vector(void);
/* Layer normalization's rows (the groupnorm op with one position and one group), for rows
 * of at most CT_LN_MAX values; ct_cpu_groupnorm_* call these for that layout. */
#define CT_LN_MAX 1024
void ct_cpu_layernorm_forward(const float *x, float *y, int64_t rows, int64_t c,
                              const float *gamma, const float *beta, float eps, float *mean,
                              float *invstd);
void ct_cpu_layernorm_backward(const float *x, const float *dy, float *dx, int64_t rows,
                               int64_t c, const float *gamma, const float *mean,
                               const float *invstd, float *dgamma, float *dbeta);
void ct_cpu_groupnorm_forward(const float *x, float *y, int64_t rows, int64_t spatial, int64_t c,
                              int64_t groups, const float *gamma, const float *beta, float eps,
                              float *mean, float *invstd);
void ct_cpu_groupnorm_backward(const float *x, const float *dy, float *dx, int64_t rows,
                               int64_t spatial, int64_t c, int64_t groups, const float *gamma,
                               const float *mean, const float *invstd, float *dgamma,
                               float *dbeta);

/* CPU kernels of the training step's ops (loss.c, metric.c, backend_cpu_train.c). */
void ct_cpu_loss(const ct_loss_op *op, const float *pred, const float *y, float *dpred,
                 int64_t rows, int64_t cols, float scale, double *sum);
void ct_cpu_metric(ct_metric_id id, int k, const float *pred, const float *y, int64_t rows,
                   int64_t cols, double *sum);
void ct_cpu_regularize(const float *w, float *g, int64_t n, double l1, double l2, double weight,
                       double *penalty);
void ct_cpu_clip_value(float *x, int64_t n, float c);
void ct_cpu_clip_norm(float *x, int64_t n, double c);
void ct_cpu_update(const ct_update *u, float *w, const float *g, float *state, int64_t n);
/* backend_cpu_optim.c: a slice of n elements of the kinds from nadam on (slot k at
 * state[k * stride + i]), and the moving average's step on avg (use_ema). */
void ct_cpu_update_more(const ct_update *u, float *w, const float *g, float *state,
                        int64_t stride, int64_t n);
void ct_cpu_ema(const ct_update *u, float *w, float *avg, int64_t n);

/* CPU kernels of the merging ops (backend_cpu_merge.c). */
void ct_cpu_copy_strided(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                         int64_t cols);
void ct_cpu_expand(const ct_bcast *g, const float *x, float *y, int64_t rows);
void ct_cpu_expand_backward(const ct_bcast *g, const float *dy, float *dx, int64_t rows);
void ct_cpu_extremum(bool minimum, const float *x, float *y, float *arg, float k, int64_t n);
void ct_cpu_take_where(const float *arg, float k, const float *dy, float *dx, int64_t n);
void ct_cpu_gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, int64_t stride_a,
                         const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                         int64_t ldc, int64_t stride_c, int64_t batch);
/* Products by a packed matrix (backend_cpu_gemm.c). */
void ct_cpu_gemm_pack_b(bool trans_b, int64_t k, int64_t n, const float *b, int64_t ldb,
                        float *packed);
void ct_cpu_gemm_packed(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                        const float *packed, const float *d, int64_t ldd, float *c, int64_t ldc);
/* For tests: want 0 turns the register tiles off (the plain layout and gemm), 1 back on
 * where the CPU has AVX2 and FMA, -1 only asks. Returns whether they are in use. Pack and
 * multiply under the same setting. */
bool ct_cpu_gemm_packed_tiles(int want);
/* Attention's softmax, forward and backward (backend_cpu_attn.c). */
void ct_cpu_attention_softmax(float *s, int64_t blocks, int64_t tq, int64_t tv, bool causal);
void ct_cpu_attention_softmax_backward(const float *p, float *d, int64_t blocks, int64_t tq,
                                       int64_t tv, bool causal);
void ct_cpu_gemm_batched_causal(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                float alpha, const float *a, int64_t lda, int64_t stride_a,
                                const float *b, int64_t ldb, int64_t stride_b, float *c,
                                int64_t ldc, int64_t stride_c, int64_t batch);
void ct_cpu_l2_normalize(const float *x, float *y, float *inv, int64_t outer, int64_t n,
                         int64_t inner, float eps);
void ct_cpu_l2_normalize_backward(const float *x, const float *y, const float *inv,
                                  const float *dy, float *dx, int64_t outer, int64_t n,
                                  int64_t inner, float eps);

/* CPU kernels of the embedding ops (backend_cpu_merge.c). */
void ct_cpu_gather_rows(const float *table, int64_t nrows, int64_t dim, const float *ids,
                        int64_t n, float *y);
void ct_cpu_lstm_step(ct_act act, ct_act rec_act, const float *a, float *y, const float *c0,
                      float *c1, float *tc, float *h, int64_t rows, int64_t units);
void ct_cpu_lstm_step_backward(ct_act act, ct_act rec_act, const float *a, const float *y,
                               const float *c0, const float *c1, const float *tc,
                               const float *dh, float *dc, float *da, int64_t rows,
                               int64_t units);
/* lstm_step's cell over all rows but only units [k0, k1), on the calling thread. */
void ct_cpu_lstm_cells(ct_act act, ct_act rec_act, const float *a, float *y, const float *c0,
                       float *c1, float *tc, float *h, int64_t rows, int64_t units, int64_t k0,
                       int64_t k1);
void ct_cpu_lstm_back_cells(ct_act act, ct_act rec_act, const float *a, const float *y,
                            const float *c0, const float *c1, const float *tc, const float *dh,
                            float *dc, float *da, int64_t rows, int64_t units, int64_t k0,
                            int64_t k1);
void ct_cpu_lstm_step_backward_packed(ct_act act, ct_act rec_act, const float *r, int64_t ldr,
                                      int64_t k, const float *packed, const float *d,
                                      int64_t ldd, const float *a, const float *y,
                                      const float *c0, const float *c1, const float *tc,
                                      float *dh, float *dc, float *da, int64_t rows,
                                      int64_t units);
void ct_cpu_lstm_step_packed(ct_act act, ct_act rec_act, const float *z, int64_t ldz,
                             int64_t k, const float *packed, float *a, float *y,
                             const float *c0, float *c1, float *tc, float *h, int64_t rows,
                             int64_t units);
/* y = f(x) over n values, vectorised (backend_cpu_act.c); x == y is allowed. */
void ct_cpu_map_sigmoid(const float *x, float *y, int64_t n);
void ct_cpu_map_tanh(const float *x, float *y, int64_t n);
void ct_cpu_map_gelu(const float *x, float *y, int64_t n);
/* dx = dy gelu'(x), given y = gelu(x) as ct_cpu_map_gelu computed it; dx == dy is
 * allowed. */
void ct_cpu_gelu_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n);
/* One activation value, and its derivative given x and y = act(x) (backend_cpu.c). */
float ct_cpu_act_value(ct_act act, float x);
float ct_cpu_act_deriv(ct_act act, float x, float y);
void ct_cpu_mask_weights(const float *mask, int64_t rows, int64_t steps, float *w);
void ct_cpu_transpose(const float *x, int64_t rows, int64_t cols, float *y);
void ct_cpu_step_mask(const float *x, int64_t n, int64_t feat, float value, float *mask);
void ct_cpu_scatter_add_rows(const float *dy, const float *ids, int64_t n, int64_t dim,
                             float *grad, int64_t nrows);

/* backend_cpu_image.c */
void ct_cpu_channel_moments(const float *x, int64_t rows, int64_t c, float *mean, float *m2);
void ct_cpu_normalize_channels(const float *x, float *y, int64_t rows, int64_t c,
                               const float *mean, const float *var, bool invert);
void ct_cpu_normalize_channels_backward(const float *dy, float *dx, int64_t rows, int64_t c,
                                        const float *var, bool invert);
void ct_cpu_scale_shift(const float *x, float *y, int64_t n, float scale, float offset);
void ct_cpu_image_aug(const ct_image_aug *a, const float *x, float *y, int64_t rows,
                      uint64_t key);
void ct_cpu_image_aug_backward(const ct_image_aug *a, const float *dy, float *dx, int64_t rows,
                               uint64_t key);
void ct_cpu_contrast(const float *x, float *y, int64_t rows, int64_t spatial, int64_t c,
                     float lo, float hi, float vmin, float vmax, uint64_t key);
void ct_cpu_contrast_backward(const float *y, const float *dy, float *dx, int64_t rows,
                              int64_t spatial, int64_t c, float lo, float hi, float vmin,
                              float vmax, uint64_t key);

#endif
