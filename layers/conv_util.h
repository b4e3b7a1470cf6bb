/* conv_util.h - helpers shared by the convolution layers (conv.c, conv_transpose.c,
 * depthwise.c), defined in conv.c: reading kernel_size/strides/dilation_rate/padding,
 * window geometry and output shapes. Nothing here allocates. */
#ifndef CT_CONV_UTIL_H
#define CT_CONV_UTIL_H

#include "layer.h"

enum { CT_CONV_VALID = 0, CT_CONV_SAME = 1, CT_CONV_CAUSAL = 2 };

int ct_conv_node_err(const ct_layer *l, ct_node *cfg, const char *key, ct_error *err,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int ct_conv_tuple(const ct_layer *l, ct_node *cfg, const char *key, int rank, int64_t def,
                  int64_t out[2], ct_error *err);
int ct_conv_padding(ct_node *cfg, bool causal, int *out, ct_error *err);
int ct_conv_data_format(const ct_layer *l, ct_node *cfg, ct_error *err);
int ct_conv_check_dilation(const ct_layer *l, ct_node *cfg, const int64_t strides[2],
                           const int64_t dil[2], ct_error *err);
int ct_conv_axis(int padding, int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t *out,
                 int64_t *pad);
int ct_conv_input(const ct_layer *l, int rank, int64_t *h, int64_t *w, int64_t *c,
                  ct_error *err);
int ct_conv_window(const ct_layer *l, int rank, int padding, const int64_t k[2],
                   const int64_t strides[2], const int64_t dil[2], ct_window *win,
                   ct_error *err);
ct_shape ct_conv_out_shape(int rank, int64_t h, int64_t w, int64_t c);
int64_t ct_conv_chunk(int64_t floats_per_sample, int64_t max_batch);

#endif
