/* backend_cpu_conv.c - the CPU convolution ops: im2col / col2im (patches for the gemm
 * form of a convolution) and the direct depthwise convolution.
 *
 * Channels are the innermost, contiguous axis, so every loop here works on runs of
 * channels: one bounds check per (position, kernel offset), then a plain loop over the
 * run that the compiler vectorises. Padding costs a zero fill, never a per-element test.
 * The whole-convolution ops at the end call BLAS directly, one sample at a time, and the
 * fused bias / activation kernels of backend_cpu.c. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize")
#endif

#include <cblas.h>
#include <string.h>

#include "backend_cpu.h"
#include "backend_cpu_direct.h"
#include "parallel.h"
#include "simd.h"

/* Runs of a few channels (a first layer's 1 or 3) are common: a plain loop beats a call
 * to memset / memcpy there. */
#define SHORT_RUN 16

static inline void run_zero(float *d, int64_t n)
{
    if (n <= SHORT_RUN) {
        for (int64_t i = 0; i < n; i++)
            d[i] = 0.0f;
    } else {
        memset(d, 0, (size_t)n * sizeof(float));
    }
}

static inline void run_copy(float *restrict d, const float *restrict s, int64_t n)
{
    if (n <= SHORT_RUN) {
        for (int64_t i = 0; i < n; i++)
            d[i] = s[i];
    } else {
        memcpy(d, s, (size_t)n * sizeof(float));
    }
}

static inline void run_add(float *restrict d, const float *restrict s, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        d[c] += s[c];
}

/* The kernel columns j in [*j0, *j1) whose input column iw0 + j lies inside [0, in_w),
 * for a window with dilation 1 along w. */
static inline void valid_cols(int64_t iw0, int64_t k_w, int64_t in_w, int64_t *j0, int64_t *j1)
{
    int64_t a = iw0 < 0 ? -iw0 : 0;
    int64_t b = in_w - iw0 < k_w ? in_w - iw0 : k_w;
    if (b < a)
        b = a;
    *j0 = a;
    *j1 = b;
}

/* ---- im2col ------------------------------------------------------------------------ */

/* One kernel row of one patch: k_w runs of cn channels from the input row src
 * (already offset to channel c0), zeros outside. With dilation 1 along w and every
 * channel taken, the valid part is one contiguous block of the input. */
static void im2col_row(const ct_window *w, const float *src, int64_t iw0, int64_t cn,
                       float *d)
{
    if (w->dil_w == 1 && cn == w->in_c) {
        int64_t j0, j1;
        valid_cols(iw0, w->k_w, w->in_w, &j0, &j1);
        run_zero(d, j0 * cn);
        run_copy(d + j0 * cn, src + (iw0 + j0) * w->in_c, (j1 - j0) * cn);
        run_zero(d + j1 * cn, (w->k_w - j1) * cn);
        return;
    }
    for (int64_t j = 0, iw = iw0; j < w->k_w; j++, iw += w->dil_w, d += cn) {
        if (iw < 0 || iw >= w->in_w)
            run_zero(d, cn);
        else
            run_copy(d, src + iw * w->in_c, cn);
    }
}

CT_CPU_CLONES
void ct_cpu_im2col(const ct_window *w, const float *x, int64_t rows, int64_t c0, int64_t cn,
                   float *cols)
{
    const int64_t row_len = w->k_w * cn, patch = w->k_h * row_len;
    const int64_t in_row = w->in_w * w->in_c, sample = w->in_h * in_row;
    float *d = cols;
    for (int64_t r = 0; r < rows; r++) {
        const float *xs = x + r * sample + c0;
        for (int64_t oh = 0; oh < w->out_h; oh++) {
            const int64_t ih0 = oh * w->stride_h - w->pad_top;
            for (int64_t ow = 0; ow < w->out_w; ow++, d += patch) {
                const int64_t iw0 = ow * w->stride_w - w->pad_left;
                /* Most windows lie inside the row: each kernel row is then one run. */
                const bool run = w->dil_w == 1 && cn == w->in_c && iw0 >= 0 &&
                                 iw0 + w->k_w <= w->in_w;
                int64_t ih = ih0;
                for (int64_t i = 0; i < w->k_h; i++, ih += w->dil_h) {
                    if (ih < 0 || ih >= w->in_h)
                        run_zero(d + i * row_len, row_len);
                    else if (run)
                        run_copy(d + i * row_len, xs + ih * in_row + iw0 * cn, row_len);
                    else
                        im2col_row(w, xs + ih * in_row, iw0, cn, d + i * row_len);
                }
            }
        }
    }
}

/* ---- col2im ------------------------------------------------------------------------ */

/* The adjoint of im2col_row: adds the valid runs of s back into the input row dst. */
static void col2im_row(const ct_window *w, const float *s, int64_t iw0, int64_t cn, float *dst)
{
    if (w->dil_w == 1 && cn == w->in_c) {
        int64_t j0, j1;
        valid_cols(iw0, w->k_w, w->in_w, &j0, &j1);
        run_add(dst + (iw0 + j0) * w->in_c, s + j0 * cn, (j1 - j0) * cn);
        return;
    }
    for (int64_t j = 0, iw = iw0; j < w->k_w; j++, iw += w->dil_w, s += cn) {
        if (iw >= 0 && iw < w->in_w)
            run_add(dst + iw * w->in_c, s, cn);
    }
}

CT_CPU_CLONES
void ct_cpu_col2im(const ct_window *w, const float *cols, int64_t rows, int64_t c0, int64_t cn,
                   float *dx)
{
    const int64_t row_len = w->k_w * cn, patch = w->k_h * row_len;
    const int64_t in_row = w->in_w * w->in_c, sample = w->in_h * in_row;
    const float *s = cols;
    for (int64_t r = 0; r < rows; r++) {
        float *xs = dx + r * sample + c0;
        for (int64_t oh = 0; oh < w->out_h; oh++) {
            const int64_t ih0 = oh * w->stride_h - w->pad_top;
            for (int64_t ow = 0; ow < w->out_w; ow++, s += patch) {
                const int64_t iw0 = ow * w->stride_w - w->pad_left;
                int64_t ih = ih0;
                for (int64_t i = 0; i < w->k_h; i++, ih += w->dil_h) {
                    if (ih >= 0 && ih < w->in_h)
                        col2im_row(w, s + i * row_len, iw0, cn, xs + ih * in_row);
                }
            }
        }
    }
}

/* ---- depthwise --------------------------------------------------------------------- */

#if defined(__GNUC__)
#define CT_INLINE static inline __attribute__((always_inline))
#else
#define CT_INLINE static inline
#endif

/* y[c*m + k] += x[c] * k[c*m + k] over c channels. Inlined with a constant m below, so
 * the compiler can vectorise the interleaved multipliers. */
CT_INLINE void dw_madd_m(const float *restrict xp, const float *restrict kp,
                         float *restrict yo, int64_t c, int64_t m)
{
    for (int64_t q = 0; q < c; q++) {
        const float v = xp[q];
        for (int64_t k = 0; k < m; k++)
            yo[q * m + k] += v * kp[q * m + k];
    }
}

static void dw_madd(const float *restrict xp, const float *restrict kp, float *restrict yo,
                    int64_t c, int64_t m)
{
    switch (m) {
    case 1:
        for (int64_t q = 0; q < c; q++)
            yo[q] += xp[q] * kp[q];
        return;
    case 2:
        dw_madd_m(xp, kp, yo, c, 2);
        return;
    case 4:
        dw_madd_m(xp, kp, yo, c, 4);
        return;
    default:
        dw_madd_m(xp, kp, yo, c, m);
        return;
    }
}

/* One output position: the sum over the window's in-range taps. */
static void dw_position(const ct_window *w, int64_t m, const float *xs, const float *kernel,
                        int64_t ih0, int64_t iw0, float *yo)
{
    const int64_t c = w->in_c, cm = c * m;
    run_zero(yo, cm);
    for (int64_t i = 0, ih = ih0; i < w->k_h; i++, ih += w->dil_h) {
        if (ih < 0 || ih >= w->in_h)
            continue;
        for (int64_t j = 0, iw = iw0; j < w->k_w; j++, iw += w->dil_w) {
            if (iw < 0 || iw >= w->in_w)
                continue;
            dw_madd(xs + (ih * w->in_w + iw) * c, kernel + (i * w->k_w + j) * cm, yo, c, m);
        }
    }
}

void ct_cpu_depthwise_forward(const ct_window *w, int64_t m, const float *x, const float *kernel,
                              float *y, int64_t rows)
{
    const int64_t sample = w->in_h * w->in_w * w->in_c, cm = w->in_c * m;
    float *yo = y;
    for (int64_t r = 0; r < rows; r++) {
        const float *xs = x + r * sample;
        for (int64_t oh = 0; oh < w->out_h; oh++)
            for (int64_t ow = 0; ow < w->out_w; ow++, yo += cm)
                dw_position(w, m, xs, kernel, oh * w->stride_h - w->pad_top,
                            ow * w->stride_w - w->pad_left, yo);
    }
}

/* One tap of the backward: dkernel[c*m+k] += x[c] dy[c*m+k]; dx[c] += sum_k k dy.
 * Inlined with a constant m below, as dw_madd_m. */
CT_INLINE void dw_tap_backward_m(const float *restrict xp, const float *restrict kp,
                                 const float *restrict dyo, float *restrict dkp,
                                 float *restrict dxp, int64_t c, int64_t m)
{
    for (int64_t q = 0; q < c; q++) {
        const float v = xp[q];
        for (int64_t k = 0; k < m; k++)
            dkp[q * m + k] += v * dyo[q * m + k];
    }
    if (!dxp)
        return;
    for (int64_t q = 0; q < c; q++) {
        float s = 0.0f;
        for (int64_t k = 0; k < m; k++)
            s += kp[q * m + k] * dyo[q * m + k];
        dxp[q] += s;
    }
}

static void dw_tap_backward(const float *restrict xp, const float *restrict kp,
                            const float *restrict dyo, float *restrict dkp,
                            float *restrict dxp, int64_t c, int64_t m)
{
    switch (m) {
    case 1:
        for (int64_t q = 0; q < c; q++)
            dkp[q] += xp[q] * dyo[q];
        if (dxp)
            for (int64_t q = 0; q < c; q++)
                dxp[q] += kp[q] * dyo[q];
        return;
    case 2:
        dw_tap_backward_m(xp, kp, dyo, dkp, dxp, c, 2);
        return;
    case 4:
        dw_tap_backward_m(xp, kp, dyo, dkp, dxp, c, 4);
        return;
    default:
        dw_tap_backward_m(xp, kp, dyo, dkp, dxp, c, m);
        return;
    }
}

static void dw_position_backward(const ct_window *w, int64_t m, const float *xs,
                                 const float *kernel, const float *dyo, float *dxs,
                                 float *dkernel, int64_t ih0, int64_t iw0)
{
    const int64_t c = w->in_c, cm = c * m;
    for (int64_t i = 0, ih = ih0; i < w->k_h; i++, ih += w->dil_h) {
        if (ih < 0 || ih >= w->in_h)
            continue;
        for (int64_t j = 0, iw = iw0; j < w->k_w; j++, iw += w->dil_w) {
            if (iw < 0 || iw >= w->in_w)
                continue;
            const int64_t xo = (ih * w->in_w + iw) * c, ko = (i * w->k_w + j) * cm;
            dw_tap_backward(xs + xo, kernel + ko, dyo, dkernel + ko, dxs ? dxs + xo : NULL, c,
                            m);
        }
    }
}

void ct_cpu_depthwise_backward(const ct_window *w, int64_t m, const float *x,
                               const float *kernel, const float *dy, float *dx, float *dkernel,
                               int64_t rows)
{
    const int64_t sample = w->in_h * w->in_w * w->in_c, cm = w->in_c * m;
    run_zero(dkernel, w->k_h * w->k_w * cm);
    if (dx)
        run_zero(dx, rows * sample);
    const float *dyo = dy;
    for (int64_t r = 0; r < rows; r++) {
        const float *xs = x + r * sample;
        float *dxs = dx ? dx + r * sample : NULL;
        for (int64_t oh = 0; oh < w->out_h; oh++)
            for (int64_t ow = 0; ow < w->out_w; ow++, dyo += cm)
                dw_position_backward(w, m, xs, kernel, dyo, dxs, dkernel,
                                     oh * w->stride_h - w->pad_top,
                                     ow * w->stride_w - w->pad_left);
    }
}

/* ---- whole convolutions, a few samples' patches at a time ---------------------------
 * The patches of a whole batch are several times larger than its images and do not fit
 * in any cache; one sample's do. So a chunk of samples (one or two, see CHUNK_MAX) gets
 * its patches built, multiplied and dropped while still in cache, and its output gets its bias and activation (or, backward, its activation
 * derivative and bias sums) while it is in cache too. The batch is cut into a fixed number
 * of partitions (never the thread count), each run by one thread in sample order with its
 * own patch buffer and its own kernel- and bias-gradient partial sums; the partials are
 * added in partition order. The chunk size depends only on the geometry. Results are
 * therefore the same for any number of threads. */

#define CONV_PARTS 16
/* Two samples per GEMM when their patches fit well inside L2: measured 5-8 % faster than
 * one on the example CNN's layers; four or eight were slower (the patches leave L2, and
 * tall GEMMs with a short inner dimension lose speed). */
#define CHUNK_FLOATS (80 * 1024)
#define CHUNK_MAX 2

static int64_t conv_parts(int64_t rows) { return rows < CONV_PARTS ? (rows > 0 ? rows : 1) : CONV_PARTS; }

/* One sample's patches for one group. */
static int64_t patch_floats(const ct_window *w, int64_t groups)
{
    return w->out_h * w->out_w * w->k_h * w->k_w * (w->in_c / groups);
}

/* Samples per chunk: as many as fit CHUNK_FLOATS, at most a partition's share. */
static int64_t chunk_samples(const ct_window *w, int64_t groups, int64_t rows)
{
    int64_t p = patch_floats(w, groups), n = p > 0 ? CHUNK_FLOATS / p : 1;
    int64_t parts = conv_parts(rows), share = (rows + parts - 1) / parts;
    if (n > CHUNK_MAX)
        n = CHUNK_MAX;
    if (n > share)
        n = share;
    return n < 1 ? 1 : n;
}

/* Per partition: a chunk's patches, then the kernel gradient, then the bias gradient. */
static int64_t part_floats(const ct_window *w, int64_t groups, int64_t filters, int64_t rows)
{
    int64_t kdim = w->k_h * w->k_w * (w->in_c / groups);
    return chunk_samples(w, groups, rows) * patch_floats(w, groups) + kdim * filters + filters;
}

/* The direct algorithm computes dx as convolutions of dy with the kernel turned around
 * (whole vectors of input channels only; else through patches). */
static bool direct_dx(const ct_window *w)
{
    int vw = ct_cpu_direct_width();
    return w->algo == CT_CONV_DIRECT && vw > 0 && w->in_c % vw == 0;
}

/* dx by phases. Input row ih is reached by the kernel rows i = ih + pad - s*oh, all in
 * one class modulo the stride s: the phase a = (ih + pad) mod s. The rows of phase a,
 * ih = ih0 + s*u, take the taps i = a + m*s (mi of them), and
 *   dx[ih0 + s*u] = sum over m of dy[u + uu0 - m] k[a + m*s],
 * a stride-1 convolution of dy with those taps reversed and padding mi - 1 - uu0. Each
 * pair of row and column phases is one such convolution (stride 1: one phase, dx itself). */
typedef struct dx_phase {
    cd_geom g;          /* dy (oh x ow x filters) -> the phase's dx (u x v x in_c) */
    int64_t ih0, iw0;   /* the phase's first input row and column */
} dx_phase;

/* One axis of a phase: taps (*m), first input index (*i0), outputs (*n), padding (*pad). */
static void phase_axis(int64_t a, int64_t k, int64_t s, int64_t p, int64_t in, int64_t *m,
                       int64_t *i0, int64_t *n, int64_t *pad)
{
    *m = a < k ? (k - a + s - 1) / s : 0;
    *i0 = ((a - p) % s + s) % s;
    *n = *i0 < in ? (in - 1 - *i0) / s + 1 : 0;
    *pad = *m - 1 - (*i0 + p - a) / s;
}

/* Phase (a, b) of w; false when it has no taps or no outputs (those dx stay zero). */
static bool dx_phase_of(const ct_window *w, int64_t filters, int64_t a, int64_t b,
                        dx_phase *ph)
{
    int64_t mi, mj, u, v, pt, pl;
    phase_axis(a, w->k_h, w->stride_h, w->pad_top, w->in_h, &mi, &ph->ih0, &u, &pt);
    phase_axis(b, w->k_w, w->stride_w, w->pad_left, w->in_w, &mj, &ph->iw0, &v, &pl);
    ph->g = (cd_geom){.h = w->out_h, .w = w->out_w, .c = filters, .oh = u, .ow = v,
                      .f = w->in_c, .kh = mi, .kw = mj, .sh = 1, .sw = 1, .pt = pt, .pl = pl};
    return mi > 0 && mj > 0 && u > 0 && v > 0;
}

/* The largest padded dy of a phase, and (strided) room for a phase's output. */
static int64_t dx_phase_floats(const ct_window *w, int64_t filters)
{
    int64_t pad = 0, out = 0;
    for (int64_t a = 0; a < w->stride_h; a++)
        for (int64_t b = 0; b < w->stride_w; b++) {
            dx_phase ph;
            if (!dx_phase_of(w, filters, a, b, &ph))
                continue;
            int64_t n = ct_cpu_direct_pad_floats(&ph.g), o = ph.g.oh * ph.g.ow * ph.g.f;
            pad = n > pad ? n : pad;
            out = o > out ? o : out;
        }
    return pad + (w->stride_h > 1 || w->stride_w > 1 ? out : 0);
}

/* Every phase's kernel, one after another in phase order: taps reversed, channels and
 * filters swapped (phase kernel [m'][n'][f][c] = kernel[a + (mi-1-m')s][b + (mj-1-n')s]
 * [c][f]); kh*kw*in_c*filters floats in all. */
static void dx_phase_kernels(const ct_window *w, int64_t filters, const float *kernel,
                             float *out)
{
    const int64_t c = w->in_c;
    for (int64_t a = 0; a < w->stride_h; a++)
        for (int64_t b = 0; b < w->stride_w; b++) {
            dx_phase ph;
            if (!dx_phase_of(w, filters, a, b, &ph))
                continue;
            for (int64_t m = 0; m < ph.g.kh; m++)
                for (int64_t n = 0; n < ph.g.kw; n++, out += filters * c) {
                    int64_t i = a + (ph.g.kh - 1 - m) * w->stride_h;
                    int64_t jj = b + (ph.g.kw - 1 - n) * w->stride_w;
                    const float *src = kernel + (i * w->k_w + jj) * c * filters;
                    for (int64_t q = 0; q < c; q++)
                        for (int64_t f = 0; f < filters; f++)
                            out[f * c + q] = src[q * filters + f];
                }
        }
}

static bool is_winograd(const ct_window *w)
{
    return w->algo == CT_CONV_WINOGRAD || w->algo == CT_CONV_WINOGRAD4;
}

static cd_geom direct_geom(const ct_window *w, int64_t filters)
{
    return (cd_geom){.h = w->in_h, .w = w->in_w, .c = w->in_c, .oh = w->out_h, .ow = w->out_w,
                     .f = filters, .kh = w->k_h, .kw = w->k_w, .sh = w->stride_h,
                     .sw = w->stride_w, .pt = w->pad_top, .pl = w->pad_left,
                     .wm = w->algo == CT_CONV_WINOGRAD4 ? 4 : 2};
}

/* dx[p] = sum over taps of dy[p + pad - tap] k[tap]: with the taps reversed, a stride-1
 * convolution of dy with padding k - 1 - pad. */
static cd_geom direct_geom_dx(const ct_window *w, int64_t filters)
{
    return (cd_geom){.h = w->out_h, .w = w->out_w, .c = filters, .oh = w->in_h, .ow = w->in_w,
                     .f = w->in_c, .kh = w->k_h, .kw = w->k_w, .sh = 1, .sw = 1,
                     .pt = w->k_h - 1 - w->pad_top, .pl = w->k_w - 1 - w->pad_left,
                     .wm = w->algo == CT_CONV_WINOGRAD4 ? 4 : 2};
}

/* Direct, per partition: the padded copies of its samples (the kernel gradient reads them
 * all), the kernel and bias gradient partials, then a padded dy (dx by convolution) or one
 * sample's patches (dx through patches). */
static int64_t direct_part_floats(const ct_window *w, int64_t filters, int64_t rows)
{
    int64_t parts = conv_parts(rows), share = (rows + parts - 1) / parts;
    cd_geom g = direct_geom(w, filters);
    int64_t n = share * ct_cpu_direct_pad_floats(&g) + w->k_h * w->k_w * w->in_c * filters +
                filters;
    return n + (direct_dx(w) ? dx_phase_floats(w, filters) : patch_floats(w, 1));
}

/* Winograd, per partition: one padded sample (x, or dy for dx), its transformed tiles,
 * the transformed kernel gradient, then the kernel and bias gradient partials. */
static int64_t wino_pad_max(const ct_window *w, int64_t filters)
{
    cd_geom g = direct_geom(w, filters), gt = direct_geom_dx(w, filters);
    int64_t a = ct_cpu_wino_pad_floats(&g), b = ct_cpu_wino_pad_floats(&gt);
    return a > b ? a : b;
}

static int64_t wino_work_max(const ct_window *w, int64_t filters)
{
    cd_geom g = direct_geom(w, filters), gt = direct_geom_dx(w, filters);
    int64_t a = ct_cpu_wino_work_floats(&g), b = ct_cpu_wino_work_floats(&gt);
    return a > b ? a : b;
}

/* Positions per Winograd tile (16 or 36). */
static int64_t wino_positions(const ct_window *w, int64_t filters)
{
    cd_geom g = direct_geom(w, filters);
    return ct_cpu_wino_positions(&g);
}

static int64_t wino_part_floats(const ct_window *w, int64_t filters)
{
    return wino_pad_max(w, filters) + wino_work_max(w, filters) +
           (wino_positions(w, filters) + 9) * w->in_c * filters + filters;
}

int64_t ct_cpu_conv_workspace(const ct_window *w, int64_t groups, int64_t filters, int64_t rows)
{
    if (is_winograd(w)) /* and the transformed kernels, once */
        return conv_parts(rows) * wino_part_floats(w, filters) +
               (2 * wino_positions(w, filters) + 9) * w->in_c * filters;
    if (w->algo != CT_CONV_DIRECT)
        return conv_parts(rows) * part_floats(w, groups, filters, rows);
    /* and the turned-around kernel, once */
    return conv_parts(rows) * direct_part_floats(w, filters, rows) +
           (direct_dx(w) ? w->k_h * w->k_w * w->in_c * filters : 0);
}

/* auto takes Winograd's larger tile up to this many input channels (and twice as many
 * filters). */
#define WINO4_MAX_CHANNELS 32
/* auto takes direct for windows of at most this many values (kh * kw * in_c). */
#define DIRECT_MAX_WINDOW 1152

const char *ct_conv_algo_name(ct_conv_algo a)
{
    static const char *const names[] = {"auto", "im2col", "direct", "winograd",
                                        "winograd F(4x4)"};
    return a >= CT_CONV_AUTO && a <= CT_CONV_WINOGRAD4 ? names[a] : "im2col";
}

/* auto's tile for Winograd: F(4x4, 3x3) where bench/conv_algos measured it faster, with
 * few channels (1.2x to 1.35x F(2x2)'s speed at 16 and 32 on 28x28 and 13x13). With more,
 * F(2x2) wins: its larger share of tiles per sample keeps the kernel gradient's
 * accumulators busy, where F(4x4)'s 36 x channels x filters of them stream through memory
 * for few tiles (at 256 channels on 7x7, F(4x4) took twice as long). */
static bool wino4_pays(const ct_window *w, int64_t filters)
{
    return w->in_c <= WINO4_MAX_CHANNELS && filters <= 2 * WINO4_MAX_CHANNELS;
}

ct_conv_algo ct_cpu_conv_algorithm(const ct_window *w, int64_t groups, int64_t filters,
                                   ct_conv_algo wanted)
{
    int vw = ct_cpu_direct_width();
    bool direct = vw > 0 && groups == 1 && w->dil_h == 1 && w->dil_w == 1 && filters % vw == 0;
    bool winograd = direct && w->k_h == 3 && w->k_w == 3 && w->stride_h == 1 &&
                    w->stride_w == 1 && w->in_c % vw == 0;
    if (wanted == CT_CONV_IM2COL || !direct)
        return CT_CONV_IM2COL;
    if (wanted == CT_CONV_DIRECT)
        return CT_CONV_DIRECT;
    /* winograd asked for, or auto: bench/conv_algos measured it fastest wherever it
     * applies (1.25x direct's speed at 16 channels, 1.8x at 64 and more) */
    if (winograd)
        return wanted == CT_CONV_WINOGRAD4 || (wanted != CT_CONV_WINOGRAD && wino4_pays(w, filters))
                   ? CT_CONV_WINOGRAD4
                   : CT_CONV_WINOGRAD;
    /* bench/conv_algos: direct ran 1.1x to 2x as fast as im2col + GEMM with windows of up
     * to 128 channels x 3x3, and slower with 256 x 3x3, where the GEMMs are large enough
     * for OpenBLAS to reach its full rate. */
    return w->k_h * w->k_w * w->in_c <= DIRECT_MAX_WINDOW ? CT_CONV_DIRECT : CT_CONV_IM2COL;
}

typedef struct conv_job {
    const ct_window *w;
    int64_t groups, filters, rows, parts;
    int64_t cg, fg, kdim, npos, in_size, chunk;
    const float *x, *kernel, *bias, *y;
    ct_act act;
    float *out, *dy, *dx, *dkernel, *dbias, *work;
    cd_geom g, gt;        /* direct: the forward's geometry and dx's (dy with kflip) */
    int64_t dpart;        /* direct: floats per partition (direct_part_floats) */
    int64_t wpart;        /* winograd: floats per partition (wino_part_floats) */
    const float *u;       /* winograd: the transformed kernel (forward) or kflip's (dx) */
    const float *kflip;   /* direct dx: the kernel turned around, or NULL */
} conv_job;

static void job_geometry(conv_job *j)
{
    const ct_window *w = j->w;
    j->parts = conv_parts(j->rows);
    j->cg = w->in_c / j->groups;
    j->fg = j->filters / j->groups;
    j->kdim = w->k_h * w->k_w * j->cg;
    j->npos = w->out_h * w->out_w;
    j->in_size = w->in_h * w->in_w * w->in_c;
    j->chunk = chunk_samples(w, j->groups, j->rows);
    j->g = direct_geom(w, j->filters);
    j->dpart = direct_part_floats(w, j->filters, j->rows);
    j->wpart = wino_part_floats(w, j->filters);
    j->gt = direct_geom_dx(w, j->filters);
}

static void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* Samples [s, s + n) of the partition p's range. */
static void part_range(const conv_job *j, int64_t p, int64_t *s0, int64_t *s1)
{
    *s0 = j->rows * p / j->parts;
    *s1 = j->rows * (p + 1) / j->parts;
}

static void conv_forward_chunk(const conv_job *j, int64_t s, int64_t n, float *cols)
{
    const ct_window *w = j->w;
    float *ys = j->out + s * j->npos * j->filters;
    for (int64_t g = 0; g < j->groups; g++) {
        ct_cpu_im2col(w, j->x + s * j->in_size, n, g * j->cg, j->cg, cols);
        sgemm(false, false, n * j->npos, j->fg, j->kdim, cols, j->kdim, j->kernel + g * j->fg,
              j->filters, 0.0f, ys + g * j->fg, j->filters);
    }
    if (j->bias || j->act.kind != CT_ACT_LINEAR)
        ct_cpu_bias_act(j->act, j->bias, ys, n * j->npos, j->filters);
}

static void conv_forward_task(void *ctx, int64_t p0, int64_t p1)
{
    const conv_job *j = ctx;
    for (int64_t p = p0; p < p1; p++) {
        float *cols = j->work + p * part_floats(j->w, j->groups, j->filters, j->rows);
        int64_t s0, s1;
        part_range(j, p, &s0, &s1);
        for (int64_t s = s0; s < s1; s += j->chunk)
            conv_forward_chunk(j, s, s1 - s < j->chunk ? s1 - s : j->chunk, cols);
    }
}

/* Direct: sample by sample, padded, then convolved, then given its bias and activation
 * while in cache. */
static void conv_forward_direct_task(void *ctx, int64_t p0, int64_t p1)
{
    const conv_job *j = ctx;
    for (int64_t p = p0; p < p1; p++) {
        float *xpad = j->work + p * j->dpart;
        int64_t s0, s1;
        part_range(j, p, &s0, &s1);
        for (int64_t s = s0; s < s1; s++) {
            float *ys = j->out + s * j->npos * j->filters;
            ct_cpu_direct_pad(&j->g, j->x + s * j->in_size, xpad);
            ct_cpu_direct_forward(&j->g, xpad, j->kernel, ys);
            if (j->bias || j->act.kind != CT_ACT_LINEAR)
                ct_cpu_bias_act(j->act, j->bias, ys, j->npos, j->filters);
        }
    }
}

/* Winograd: as direct, sample by sample. */
static void conv_forward_wino_task(void *ctx, int64_t p0, int64_t p1)
{
    const conv_job *j = ctx;
    for (int64_t p = p0; p < p1; p++) {
        float *xpad = j->work + p * j->wpart, *tiles = xpad + wino_pad_max(j->w, j->filters);
        int64_t s0, s1;
        part_range(j, p, &s0, &s1);
        for (int64_t s = s0; s < s1; s++) {
            float *ys = j->out + s * j->npos * j->filters;
            ct_cpu_wino_pad(&j->g, j->x + s * j->in_size, xpad);
            ct_cpu_wino_forward(&j->g, xpad, j->u, ys, tiles);
            if (j->bias || j->act.kind != CT_ACT_LINEAR)
                ct_cpu_bias_act(j->act, j->bias, ys, j->npos, j->filters);
        }
    }
}

void ct_cpu_conv_forward(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                         const float *kernel, const float *bias, ct_act act, float *y,
                         int64_t rows, float *work)
{
    conv_job j = {.w = w, .groups = groups, .filters = filters, .rows = rows, .x = x,
                  .kernel = kernel, .bias = bias, .act = act, .out = y, .work = work};
    job_geometry(&j);
    ct_task task = conv_forward_task;
    if (w->algo == CT_CONV_DIRECT) {
        task = conv_forward_direct_task;
    } else if (is_winograd(w)) {
        float *u = work + j.parts * j.wpart;
        ct_cpu_wino_kernel(&j.g, kernel, u);
        j.u = u;
        task = conv_forward_wino_task;
    }
    ct_parallel_for(j.parts, 1, task, &j);
}

static void dx_chunk(const conv_job *j, int64_t s, int64_t n, int64_t g, float *cols);

/* One chunk of the backward: dz in place of dy, its bias sums into db, then the kernel
 * gradient (accumulated into dk unless first) and dx. */
static void conv_backward_chunk(const conv_job *j, int64_t s, int64_t n, float *cols, float *dk,
                                float *db, bool first)
{
    const ct_window *w = j->w;
    const int64_t m = n * j->npos;
    float *dys = j->dy + s * j->npos * j->filters;
    if (j->act.kind != CT_ACT_LINEAR || db)
        ct_cpu_bias_act_grad(j->act, j->y ? j->y + s * j->npos * j->filters : NULL, dys, db, m,
                             j->filters);
    if (j->dx)
        run_zero(j->dx + s * j->in_size, n * j->in_size);
    for (int64_t g = 0; g < j->groups; g++) {
        if (j->dkernel) {
            ct_cpu_im2col(w, j->x + s * j->in_size, n, g * j->cg, j->cg, cols);
            sgemm(true, false, j->kdim, j->fg, m, cols, j->kdim, dys + g * j->fg, j->filters,
                  first ? 0.0f : 1.0f, dk + g * j->fg, j->filters);
        }
        if (j->dx)
            dx_chunk(j, s, n, g, cols);
    }
}

/* dx of samples [s, s + n), group g, through patches: dy times the kernel's transpose,
 * added back where each patch came from. dx must be zero there. */
static void dx_chunk(const conv_job *j, int64_t s, int64_t n, int64_t g, float *cols)
{
    const float *dys = j->dy + s * j->npos * j->filters;
    sgemm(false, true, n * j->npos, j->kdim, j->fg, dys + g * j->fg, j->filters,
          j->kernel + g * j->fg, j->filters, 0.0f, cols, j->kdim);
    ct_cpu_col2im(j->w, cols, n, g * j->cg, j->cg, j->dx + s * j->in_size);
}

static void conv_backward_task(void *ctx, int64_t p0, int64_t p1)
{
    const conv_job *j = ctx;
    int64_t ksize = j->kdim * j->filters;
    for (int64_t p = p0; p < p1; p++) {
        float *cols = j->work + p * part_floats(j->w, j->groups, j->filters, j->rows);
        float *dk = cols + j->chunk * patch_floats(j->w, j->groups), *db = dk + ksize;
        int64_t s0, s1;
        part_range(j, p, &s0, &s1);
        run_zero(db, j->filters);
        for (int64_t s = s0; s < s1; s += j->chunk)
            conv_backward_chunk(j, s, s1 - s < j->chunk ? s1 - s : j->chunk, cols, dk,
                                j->dbias ? db : NULL, s == s0);
        if (s0 == s1 && j->dkernel) /* a partition without samples */
            run_zero(dk, ksize);
    }
}

/* dx of one sample by phases (dx_phase): each phase's convolution of dz, written straight
 * into dx with stride 1, else into `work` and from there to its rows and columns. */
static void direct_dx_sample(const conv_job *j, const float *dz, float *dx, float *work)
{
    const ct_window *w = j->w;
    const int64_t c = w->in_c, sh = w->stride_h, sw = w->stride_w;
    const bool strided = sh > 1 || sw > 1;
    const float *k = j->kflip;
    if (strided)
        run_zero(dx, j->in_size);
    for (int64_t a = 0; a < sh; a++)
        for (int64_t b = 0; b < sw; b++) {
            dx_phase ph;
            if (!dx_phase_of(w, j->filters, a, b, &ph))
                continue;
            float *out = strided ? work + ct_cpu_direct_pad_floats(&ph.g) : dx;
            ct_cpu_direct_pad(&ph.g, dz, work);
            ct_cpu_direct_forward(&ph.g, work, k, out);
            k += ph.g.kh * ph.g.kw * j->filters * c;
            if (!strided)
                continue;
            for (int64_t u = 0; u < ph.g.oh; u++)
                for (int64_t v = 0; v < ph.g.ow; v++)
                    run_copy(dx + ((ph.ih0 + u * sh) * w->in_w + ph.iw0 + v * sw) * c,
                             out + (u * ph.g.ow + v) * c, c);
        }
}

/* Direct, one partition: the padded samples; dz and the bias sums sample by sample, and
 * dx of each sample while its dz is in cache; then the kernel gradient over the
 * partition's samples. */
static void conv_backward_direct_part(const conv_job *j, int64_t p, int64_t s0, int64_t s1)
{
    const int64_t out_size = j->npos * j->filters, pad = ct_cpu_direct_pad_floats(&j->g);
    const int64_t share = (j->rows + j->parts - 1) / j->parts;
    float *xpad = j->work + p * j->dpart, *dk = xpad + share * pad;
    float *db = dk + j->kdim * j->filters, *tail = db + j->filters;
    run_zero(db, j->filters);
    for (int64_t s = s0; s < s1; s++) {
        float *dys = j->dy + s * out_size;
        if (j->dkernel)
            ct_cpu_direct_pad(&j->g, j->x + s * j->in_size, xpad + (s - s0) * pad);
        if (j->act.kind != CT_ACT_LINEAR || j->dbias)
            ct_cpu_bias_act_grad(j->act, j->y ? j->y + s * out_size : NULL, dys,
                                 j->dbias ? db : NULL, j->npos, j->filters);
        if (!j->dx)
            continue;
        if (j->kflip) {
            direct_dx_sample(j, dys, j->dx + s * j->in_size, tail);
        } else {
            run_zero(j->dx + s * j->in_size, j->in_size);
            dx_chunk(j, s, 1, 0, tail);
        }
    }
    if (j->dkernel)
        ct_cpu_direct_kernel_grad(&j->g, xpad, j->dy + s0 * out_size, s1 - s0, dk);
}

static void conv_backward_direct_task(void *ctx, int64_t p0, int64_t p1)
{
    const conv_job *j = ctx;
    for (int64_t p = p0; p < p1; p++) {
        int64_t s0, s1;
        part_range(j, p, &s0, &s1);
        conv_backward_direct_part(j, p, s0, s1);
    }
}

/* Winograd, one partition: sample by sample, dz and the bias sums, dx as the convolution
 * of dz with the turned-around kernel, and the sample's share of the transformed kernel
 * gradient; then the partition's kernel gradient from it. */
static void conv_backward_wino_part(const conv_job *j, int64_t p, int64_t s0, int64_t s1)
{
    const int64_t out_size = j->npos * j->filters, cf = j->w->in_c * j->filters;
    float *xpad = j->work + p * j->wpart, *tiles = xpad + wino_pad_max(j->w, j->filters);
    const int64_t pos = ct_cpu_wino_positions(&j->g);
    float *du = tiles + wino_work_max(j->w, j->filters), *dk = du + pos * cf, *db = dk + 9 * cf;
    run_zero(db, j->filters);
    if (j->dkernel)
        memset(du, 0, (size_t)(pos * cf) * sizeof(float));
    for (int64_t s = s0; s < s1; s++) {
        float *dys = j->dy + s * out_size;
        if (j->act.kind != CT_ACT_LINEAR || j->dbias)
            ct_cpu_bias_act_grad(j->act, j->y ? j->y + s * out_size : NULL, dys,
                                 j->dbias ? db : NULL, j->npos, j->filters);
        if (j->dx) {
            ct_cpu_wino_pad(&j->gt, dys, xpad);
            ct_cpu_wino_forward(&j->gt, xpad, j->u, j->dx + s * j->in_size, tiles);
        }
        if (j->dkernel) {
            ct_cpu_wino_pad(&j->g, j->x + s * j->in_size, xpad);
            ct_cpu_wino_kernel_grad_add(&j->g, xpad, dys, du, tiles);
        }
    }
    if (j->dkernel)
        ct_cpu_wino_kernel_grad_finish(&j->g, du, dk);
}

static void conv_backward_wino_task(void *ctx, int64_t p0, int64_t p1)
{
    const conv_job *j = ctx;
    for (int64_t p = p0; p < p1; p++) {
        int64_t s0, s1;
        part_range(j, p, &s0, &s1);
        conv_backward_wino_part(j, p, s0, s1);
    }
}

/* dst = the sum over partitions of the partial at `offset` in each, in partition order. */
static void add_partials(float *dst, const float *work, int64_t stride, int64_t offset,
                         int64_t n, int64_t parts)
{
    memcpy(dst, work + offset, (size_t)n * sizeof(float));
    for (int64_t p = 1; p < parts; p++)
        run_add(dst, work + p * stride + offset, n);
}

void ct_cpu_conv_backward(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                          const float *kernel, const float *y, ct_act act, float *dy,
                          float *dx, float *dkernel, float *dbias, int64_t rows, float *work)
{
    conv_job j = {.w = w, .groups = groups, .filters = filters, .rows = rows, .x = x,
                  .kernel = kernel, .y = y, .act = act, .dy = dy, .dx = dx, .dkernel = dkernel,
                  .dbias = dbias, .work = work};
    job_geometry(&j);
    int64_t stride = part_floats(w, groups, filters, rows);
    int64_t patch = j.chunk * patch_floats(w, groups), ksize = j.kdim * filters;
    if (w->algo == CT_CONV_DIRECT) {
        if (dx && direct_dx(w)) {
            float *kflip = work + j.parts * j.dpart;
            dx_phase_kernels(w, filters, kernel, kflip);
            j.kflip = kflip;
        }
        ct_parallel_for(j.parts, 1, conv_backward_direct_task, &j);
        /* the partials sit after the padded samples */
        stride = j.dpart;
        patch = (rows + j.parts - 1) / j.parts * ct_cpu_direct_pad_floats(&j.g);
    } else if (is_winograd(w)) {
        const int64_t cf = w->in_c * filters, pos = ct_cpu_wino_positions(&j.g);
        float *u = work + j.parts * j.wpart, *kflip = u + pos * cf;
        if (dx) {
            dx_phase_kernels(w, filters, kernel, kflip); /* stride 1: one phase */
            ct_cpu_wino_kernel(&j.gt, kflip, u);
            j.u = u;
        }
        ct_parallel_for(j.parts, 1, conv_backward_wino_task, &j);
        stride = j.wpart;
        patch = wino_pad_max(w, filters) + wino_work_max(w, filters) + pos * cf;
    } else {
        ct_parallel_for(j.parts, 1, conv_backward_task, &j);
    }
    if (dkernel)
        add_partials(dkernel, work, stride, patch, ksize, j.parts);
    if (dbias)
        add_partials(dbias, work, stride, patch + ksize, filters, j.parts);
}
