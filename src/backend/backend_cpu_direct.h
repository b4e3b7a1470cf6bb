/* backend_cpu_direct.h - direct convolution kernels of the CPU backend, one sample or a few
 * at a time, called by backend_cpu_conv.c. Channels last; kernel (kh, kw, c, f), Keras's
 * layout; dilation 1, one group. Every buffer is the caller's; nothing is allocated. */
#ifndef CT_BACKEND_CPU_DIRECT_H
#define CT_BACKEND_CPU_DIRECT_H

#include <stdint.h>

/* One sample's geometry: input h x w x c, output oh x ow x f; output (p, q) reads input
 * rows p*sh - pt + i and columns q*sw - pl + j, zeros outside. */
typedef struct cd_geom {
    int64_t h, w, c;
    int64_t oh, ow, f;
    int64_t kh, kw, sh, sw, pt, pl;
    int64_t wm; /* Winograd's output tile side, 2 or 4 (F(2x2, 3x3) or F(4x4, 3x3)) */
} cd_geom;

/* Floats per vector of the kernels this CPU runs (16: AVX-512, 8: AVX2 with FMA), or 0
 * where there are none. The filters of a direct convolution are a multiple of it. */
int ct_cpu_direct_width(void);
/* For tests: use the kernels of `width` floats (16, 8, or 0 for none) where the CPU runs
 * them; returns the width now in use. Layers built before keep the algorithm they chose,
 * so call it before building any. */
int ct_cpu_direct_use_width(int width);

/* The kernels read a sample padded with zeros to ((oh-1)*sh + kh) x ((ow-1)*sw + kw) x c
 * (input row 0 at padded row pt, column 0 at pl), every window inside it:
 * ct_cpu_direct_pad_floats floats, written by ct_cpu_direct_pad from one sample x. */
int64_t ct_cpu_direct_pad_floats(const cd_geom *g);
void ct_cpu_direct_pad(const cd_geom *g, const float *x, float *xpad);

/* y (oh x ow x f, overwritten) = the convolution of one padded sample xpad with k. */
void ct_cpu_direct_forward(const cd_geom *g, const float *xpad, const float *k, float *y);

/* dk (kh x kw x c x f, overwritten) = the kernel gradient summed over `rows` consecutive
 * padded samples (ct_cpu_direct_pad_floats apart) and dy (oh x ow x f each). */
void ct_cpu_direct_kernel_grad(const cd_geom *g, const float *xpad, const float *dy,
                               int64_t rows, float *dk);

/* Winograd F(m x m, 3x3) with m = g->wm (2 or 4), for 3x3 kernels with stride 1 whose
 * channels and filters are whole vectors; a = m + 2, and a tile has a*a positions
 * (ct_cpu_wino_positions). The input is padded to (m*ceil(oh/m) + 2) x (m*ceil(ow/m) + 2)
 * x c: ct_cpu_wino_pad_floats floats, written by ct_cpu_wino_pad. u holds the transformed
 * kernel, a*a x c x f floats (ct_cpu_wino_kernel from a 3 x 3 x c x f kernel); work,
 * ct_cpu_wino_work_floats floats, the transformed tiles of one sample. */
int64_t ct_cpu_wino_positions(const cd_geom *g);
int64_t ct_cpu_wino_pad_floats(const cd_geom *g);
void ct_cpu_wino_pad(const cd_geom *g, const float *x, float *xpad);
int64_t ct_cpu_wino_work_floats(const cd_geom *g);
void ct_cpu_wino_kernel(const cd_geom *g, const float *k, float *u);
/* y (oh x ow x f, overwritten) of one padded sample. */
void ct_cpu_wino_forward(const cd_geom *g, const float *xpad, const float *u, float *y,
                         float *work);
/* The kernel gradient in two steps: du (a*a x c x f, zeroed by the caller) += one padded
 * sample's share, sample after sample; then dk (3 x 3 x c x f, overwritten) from du. */
void ct_cpu_wino_kernel_grad_add(const cd_geom *g, const float *xpad, const float *dy,
                                 float *du, float *work);
void ct_cpu_wino_kernel_grad_finish(const cd_geom *g, const float *du, float *dk);

#endif
