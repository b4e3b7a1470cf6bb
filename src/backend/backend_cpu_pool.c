/* backend_cpu_pool.c - CPU pooling, padding, upsampling, noise and per-channel scaling.
 * Every innermost loop runs over the contiguous channels of one position, so it is a
 * plain vector loop; window bounds are worked out once per output position. */
/* Some GCC builds leave the vectoriser off at -O2; these loops are the hot path. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize")
#endif

#include <string.h>

#include "backend_cpu.h"
#include "rng.h"
#include "simd.h"

/* Channels handled per block in max-pooling backward: the "not yet routed" flags live on
 * the stack, so no scratch is needed. */
#define CHAN_BLOCK 256

/* ---- small vector loops ---------------------------------------------------------- */

static void vec_zero(float *restrict y, int64_t n)
{
    memset(y, 0, (size_t)n * sizeof(float));
}

static void vec_copy(float *restrict y, const float *restrict x, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void vec_add(float *restrict y, const float *restrict x, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        y[c] += x[c];
}

static void vec_max(float *restrict y, const float *restrict x, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        y[c] = x[c] > y[c] ? x[c] : y[c];
}

static void vec_scale(float *restrict y, float s, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        y[c] *= s;
}

static void vec_axpy(float *restrict y, float a, const float *restrict x, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        y[c] += a * x[c];
}

/* First-maximum routing: where x is bit-identical to the maximum y (which is a copy of
 * one x) and the channel is still open, dx takes dy and the channel closes. Done on bit
 * masks so the loop has no float selects and vectorizes; comparing bits also matches
 * NaN and tells -0 from +0 exactly as the forward chose. open[c] is all ones or 0. */
static void vec_route_max(float *restrict dx, const float *restrict x, const float *restrict y,
                          const float *restrict dy, uint32_t *restrict open, int64_t n)
{
    for (int64_t c = 0; c < n; c++) {
        uint32_t xb, yb, gb;
        float add;
        memcpy(&xb, x + c, sizeof xb);
        memcpy(&yb, y + c, sizeof yb);
        memcpy(&gb, dy + c, sizeof gb);
        uint32_t hit = (uint32_t) - (int32_t)(xb == yb) & open[c];
        gb &= hit;
        memcpy(&add, &gb, sizeof add);
        dx[c] += add;
        open[c] &= ~hit;
    }
}

static void open_all(uint32_t *open, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        open[c] = UINT32_MAX;
}

/* ---- window bounds --------------------------------------------------------------- */

/* Range [lo, hi) of kernel taps whose input index base + t*dil lies in [0, in). */
static void tap_range(int64_t base, int64_t dil, int64_t k, int64_t in, int64_t *lo,
                      int64_t *hi)
{
    int64_t first, last;
    if (dil == 1) { /* pooling's case: no divisions per output position */
        first = base >= 0 ? 0 : -base;
        last = in - base;
    } else {
        first = base >= 0 ? 0 : (-base + dil - 1) / dil;
        last = in - base > 0 ? (in - base + dil - 1) / dil : 0;
    }
    *lo = first;
    *hi = last < k ? last : k;
    if (*hi < *lo)
        *hi = *lo;
}

typedef struct bounds {
    int64_t i_lo, i_hi, j_lo, j_hi;
    int64_t h0, w0; /* input row/column of tap (0, 0), possibly outside */
} bounds;

static bounds window_bounds(const ct_window *w, int64_t oh, int64_t ow)
{
    bounds b;
    b.h0 = oh * w->stride_h - w->pad_top;
    b.w0 = ow * w->stride_w - w->pad_left;
    tap_range(b.h0, w->dil_h, w->k_h, w->in_h, &b.i_lo, &b.i_hi);
    tap_range(b.w0, w->dil_w, w->k_w, w->in_w, &b.j_lo, &b.j_hi);
    return b;
}

/* Offset in a sample of the input position under tap (i, j). */
static int64_t tap_off(const ct_window *w, const bounds *b, int64_t i, int64_t j)
{
    int64_t ih = b->h0 + i * w->dil_h, iw = b->w0 + j * w->dil_w;
    return (ih * w->in_w + iw) * w->in_c;
}

/* ---- windowed pooling ------------------------------------------------------------ */

/* One output position of one sample. An empty window (impossible with valid/same
 * geometry) yields 0. */
static void pool_position(ct_pool kind, const ct_window *w, const float *x, const bounds *b,
                          float *y)
{
    int64_t c = w->in_c;
    int64_t count = (b->i_hi - b->i_lo) * (b->j_hi - b->j_lo);
    if (count == 0) {
        vec_zero(y, c);
        return;
    }
    vec_copy(y, x + tap_off(w, b, b->i_lo, b->j_lo), c);
    for (int64_t i = b->i_lo; i < b->i_hi; i++) {
        for (int64_t j = b->j_lo; j < b->j_hi; j++) {
            if (i == b->i_lo && j == b->j_lo)
                continue;
            if (kind == CT_POOL_MAX)
                vec_max(y, x + tap_off(w, b, i, j), c);
            else
                vec_add(y, x + tap_off(w, b, i, j), c);
        }
    }
    if (kind == CT_POOL_AVG && count > 1)
        vec_scale(y, 1.0f / (float)count, c);
}

/* ---- tiled max pooling ------------------------------------------------------------
 * The common case, windows that tile the input without overlap or padding (2x2 stride 2,
 * valid), gets loops without per-position bounds. Backward then writes every element of
 * dx exactly once instead of clearing and accumulating. */

static bool tiled(const ct_window *w)
{
    return w->pad_top == 0 && w->pad_left == 0 && w->dil_h == 1 && w->dil_w == 1 &&
           w->stride_h == w->k_h && w->stride_w == w->k_w &&
           w->out_h * w->k_h <= w->in_h && w->out_w * w->k_w <= w->in_w;
}

static void max_tiled_forward(const ct_window *w, const float *x, float *y)
{
    const int64_t c = w->in_c, in_row = w->in_w * c;
    for (int64_t oh = 0; oh < w->out_h; oh++) {
        const float *xr = x + oh * w->k_h * in_row;
        for (int64_t ow = 0; ow < w->out_w; ow++, y += c) {
            const float *xp = xr + ow * w->k_w * c;
            vec_copy(y, xp, c);
            for (int64_t i = 0; i < w->k_h; i++)
                for (int64_t j = 0; j < w->k_w; j++)
                    if (i | j)
                        vec_max(y, xp + i * in_row + j * c, c);
        }
    }
}

/* vec_route_max writing dx instead of adding to it. */
static void vec_route_max_set(float *restrict dx, const float *restrict x,
                              const float *restrict y, const float *restrict dy,
                              uint32_t *restrict open, int64_t n)
{
    for (int64_t c = 0; c < n; c++) {
        uint32_t xb, yb, gb;
        memcpy(&xb, x + c, sizeof xb);
        memcpy(&yb, y + c, sizeof yb);
        memcpy(&gb, dy + c, sizeof gb);
        uint32_t hit = (uint32_t) - (int32_t)(xb == yb) & open[c];
        gb &= hit;
        memcpy(dx + c, &gb, sizeof gb);
        open[c] &= ~hit;
    }
}

/* The 2x2 window, the common one, with its four taps in registers: the first tap whose
 * bits equal the maximum's takes dy, the others 0 (as vec_route_max_set in order). */
static inline uint32_t bits_of(float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static inline float float_of(uint32_t b)
{
    float v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static void max_back_2x2(const float *restrict x0, const float *restrict x1,
                         const float *restrict y, const float *restrict dy, float *restrict d0,
                         float *restrict d1, int64_t c)
{
    for (int64_t q = 0; q < c; q++) {
        uint32_t m = bits_of(y[q]), g = bits_of(dy[q]);
        uint32_t h00 = (uint32_t) - (int32_t)(bits_of(x0[q]) == m);
        uint32_t h01 = (uint32_t) - (int32_t)(bits_of(x0[q + c]) == m) & ~h00;
        uint32_t h10 = (uint32_t) - (int32_t)(bits_of(x1[q]) == m) & ~(h00 | h01);
        uint32_t h11 = (uint32_t) - (int32_t)(bits_of(x1[q + c]) == m) & ~(h00 | h01 | h10);
        d0[q] = float_of(g & h00);
        d0[q + c] = float_of(g & h01);
        d1[q] = float_of(g & h10);
        d1[q + c] = float_of(g & h11);
    }
}

static void max_tiled_backward(const ct_window *w, const float *x, const float *y,
                               const float *dy, float *dx)
{
    const int64_t c = w->in_c, in_row = w->in_w * c;
    uint32_t open[CHAN_BLOCK];
    for (int64_t oh = 0; oh < w->out_h; oh++) {
        const int64_t row0 = oh * w->k_h * in_row;
        for (int64_t ow = 0; ow < w->out_w; ow++, y += c, dy += c) {
            const int64_t p0 = row0 + ow * w->k_w * c;
            if (w->k_h == 2 && w->k_w == 2) {
                max_back_2x2(x + p0, x + p0 + in_row, y, dy, dx + p0, dx + p0 + in_row, c);
                continue;
            }
            for (int64_t c0 = 0; c0 < c; c0 += CHAN_BLOCK) {
                int64_t n = c - c0 < CHAN_BLOCK ? c - c0 : CHAN_BLOCK;
                open_all(open, n);
                for (int64_t i = 0; i < w->k_h; i++)
                    for (int64_t j = 0; j < w->k_w; j++) {
                        int64_t o = p0 + i * in_row + j * c + c0;
                        vec_route_max_set(dx + o, x + o, y + c0, dy + c0, open, n);
                    }
            }
        }
        /* columns right of the last window */
        for (int64_t i = 0; i < w->k_h; i++)
            vec_zero(dx + row0 + i * in_row + w->out_w * w->k_w * c,
                     (w->in_w - w->out_w * w->k_w) * c);
    }
    /* rows below the last window */
    vec_zero(dx + w->out_h * w->k_h * in_row, (w->in_h - w->out_h * w->k_h) * in_row);
}

CT_CPU_CLONES
void ct_cpu_pool_forward(ct_pool kind, const ct_window *w, const float *x, float *y,
                         int64_t rows)
{
    int64_t in_size = w->in_h * w->in_w * w->in_c;
    int64_t out_size = w->out_h * w->out_w * w->in_c;
    if (kind == CT_POOL_MAX && tiled(w)) {
        for (int64_t r = 0; r < rows; r++)
            max_tiled_forward(w, x + r * in_size, y + r * out_size);
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * in_size;
        float *yr = y + r * out_size;
        for (int64_t oh = 0; oh < w->out_h; oh++) {
            for (int64_t ow = 0; ow < w->out_w; ow++) {
                bounds b = window_bounds(w, oh, ow);
                pool_position(kind, w, xr, &b, yr + (oh * w->out_w + ow) * w->in_c);
            }
        }
    }
}

/* Spreads dy of one position evenly over its in-bounds inputs. */
static void avg_back_position(const ct_window *w, const bounds *b, const float *dy, float *dx)
{
    int64_t count = (b->i_hi - b->i_lo) * (b->j_hi - b->j_lo);
    if (count == 0)
        return;
    float inv = 1.0f / (float)count;
    for (int64_t i = b->i_lo; i < b->i_hi; i++)
        for (int64_t j = b->j_lo; j < b->j_hi; j++)
            vec_axpy(dx + tap_off(w, b, i, j), inv, dy, w->in_c);
}

/* Routes dy of one position to the first maximum of its window, channels [c0, c0+n). */
static void max_back_position(const ct_window *w, const bounds *b, const float *x,
                              const float *y, const float *dy, float *dx, int64_t c0,
                              int64_t n)
{
    uint32_t open[CHAN_BLOCK];
    open_all(open, n);
    for (int64_t i = b->i_lo; i < b->i_hi; i++)
        for (int64_t j = b->j_lo; j < b->j_hi; j++)
            vec_route_max(dx + tap_off(w, b, i, j) + c0,
                          x + tap_off(w, b, i, j) + c0, y + c0, dy + c0, open, n);
}

static void max_back_all(const ct_window *w, const bounds *b, const float *x, const float *y,
                         const float *dy, float *dx)
{
    for (int64_t c0 = 0; c0 < w->in_c; c0 += CHAN_BLOCK) {
        int64_t n = w->in_c - c0 < CHAN_BLOCK ? w->in_c - c0 : CHAN_BLOCK;
        max_back_position(w, b, x, y, dy, dx, c0, n);
    }
}

CT_CPU_CLONES
void ct_cpu_pool_backward(ct_pool kind, const ct_window *w, const float *x, const float *y,
                          const float *dy, float *dx, int64_t rows)
{
    int64_t in_size = w->in_h * w->in_w * w->in_c;
    int64_t out_size = w->out_h * w->out_w * w->in_c;
    if (kind == CT_POOL_MAX && tiled(w)) {
        for (int64_t r = 0; r < rows; r++)
            max_tiled_backward(w, x + r * in_size, y + r * out_size, dy + r * out_size,
                               dx + r * in_size);
        return;
    }
    vec_zero(dx, rows * in_size);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * in_size;
        float *dxr = dx + r * in_size;
        for (int64_t oh = 0; oh < w->out_h; oh++) {
            for (int64_t ow = 0; ow < w->out_w; ow++) {
                bounds b = window_bounds(w, oh, ow);
                int64_t off = r * out_size + (oh * w->out_w + ow) * w->in_c;
                if (kind == CT_POOL_MAX)
                    max_back_all(w, &b, xr, y + off, dy + off, dxr);
                else
                    avg_back_position(w, &b, dy + off, dxr);
            }
        }
    }
}

/* ---- global pooling -------------------------------------------------------------- */

void ct_cpu_global_pool_forward(ct_pool kind, const float *x, float *y, int64_t rows,
                                int64_t spatial, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * spatial * c;
        float *yr = y + r * c;
        if (spatial <= 0) {
            vec_zero(yr, c);
            continue;
        }
        vec_copy(yr, xr, c);
        for (int64_t p = 1; p < spatial; p++) {
            if (kind == CT_POOL_MAX)
                vec_max(yr, xr + p * c, c);
            else
                vec_add(yr, xr + p * c, c);
        }
        if (kind == CT_POOL_AVG && spatial > 1)
            vec_scale(yr, 1.0f / (float)spatial, c);
    }
}

static void global_max_back_row(const float *x, const float *y, const float *dy, float *dx,
                                int64_t spatial, int64_t c)
{
    uint32_t open[CHAN_BLOCK];
    for (int64_t c0 = 0; c0 < c; c0 += CHAN_BLOCK) {
        int64_t n = c - c0 < CHAN_BLOCK ? c - c0 : CHAN_BLOCK;
        open_all(open, n);
        for (int64_t p = 0; p < spatial; p++)
            vec_route_max(dx + p * c + c0, x + p * c + c0, y + c0, dy + c0, open, n);
    }
}

void ct_cpu_global_pool_backward(ct_pool kind, const float *x, const float *y, const float *dy,
                                 float *dx, int64_t rows, int64_t spatial, int64_t c)
{
    vec_zero(dx, rows * spatial * c);
    if (spatial <= 0)
        return;
    float inv = 1.0f / (float)spatial;
    for (int64_t r = 0; r < rows; r++) {
        float *dxr = dx + r * spatial * c;
        if (kind == CT_POOL_MAX) {
            global_max_back_row(x + r * spatial * c, y + r * c, dy + r * c, dxr, spatial, c);
            continue;
        }
        for (int64_t p = 0; p < spatial; p++)
            vec_axpy(dxr + p * c, inv, dy + r * c, c);
    }
}

/* ---- padding and cropping -------------------------------------------------------- */

/* Copies the h x w x c interior between a padded sample (pw columns wide, interior at
 * (top, left)) and a plain one; to_padded picks the direction. */
static void copy_interior(const float *src, float *dst, int64_t h, int64_t w, int64_t c,
                          int64_t pw, int64_t top, int64_t left, bool to_padded)
{
    int64_t line = w * c;
    for (int64_t i = 0; i < h; i++) {
        int64_t padded_off = ((i + top) * pw + left) * c;
        if (to_padded)
            vec_copy(dst + padded_off, src + i * line, line);
        else
            vec_copy(dst + i * line, src + padded_off, line);
    }
}

void ct_cpu_pad2d(const float *x, float *y, int64_t rows, int64_t h, int64_t w, int64_t c,
                  int64_t top, int64_t bottom, int64_t left, int64_t right, bool crop)
{
    int64_t ph = h + top + bottom, pw = w + left + right;
    int64_t small = h * w * c, big = ph * pw * c;
    for (int64_t r = 0; r < rows; r++) {
        if (crop) {
            copy_interior(x + r * big, y + r * small, h, w, c, pw, top, left, false);
        } else {
            /* Zero everything once, then the interior overwrites; borders are thin. */
            vec_zero(y + r * big, big);
            copy_interior(x + r * small, y + r * big, h, w, c, pw, top, left, true);
        }
    }
}

/* ---- nearest-neighbour upsampling ------------------------------------------------ */

/* One input line (w x c) to sh output lines of w*sw x c. */
static void upsample_line(const float *x, float *y, int64_t w, int64_t c, int64_t sh,
                          int64_t sw)
{
    int64_t out_line = w * sw * c;
    for (int64_t j = 0; j < w; j++)
        for (int64_t b = 0; b < sw; b++)
            vec_copy(y + (j * sw + b) * c, x + j * c, c);
    for (int64_t a = 1; a < sh; a++)
        vec_copy(y + a * out_line, y, out_line);
}

/* The adjoint for one line: y (w x c) = sums over the sh x sw blocks of x. */
static void sum_back_line(const float *x, float *y, int64_t w, int64_t c, int64_t sh,
                          int64_t sw)
{
    int64_t in_line = w * sw * c;
    vec_zero(y, w * c);
    for (int64_t a = 0; a < sh; a++)
        for (int64_t j = 0; j < w; j++)
            for (int64_t b = 0; b < sw; b++)
                vec_add(y + j * c, x + a * in_line + (j * sw + b) * c, c);
}

void ct_cpu_upsample2d(const float *x, float *y, int64_t rows, int64_t h, int64_t w, int64_t c,
                       int64_t sh, int64_t sw, bool sum_back)
{
    int64_t small_line = w * c, big_line = w * sw * c;
    int64_t small = h * small_line, big = h * sh * big_line;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < h; i++) {
            if (sum_back)
                sum_back_line(x + r * big + i * sh * big_line, y + r * small + i * small_line,
                              w, c, sh, sw);
            else
                upsample_line(x + r * small + i * small_line, y + r * big + i * sh * big_line,
                              w, c, sh, sw);
        }
    }
}

/* ---- noise and channel scaling --------------------------------------------------- */

void ct_cpu_add_noise(float *x, int64_t n, float stddev, uint64_t key, uint64_t counter0)
{
    if (stddev == 0.0f)
        return;
    for (int64_t i = 0; i < n; i++)
        x[i] += stddev * ct_rng_normal(key, counter0 + (uint64_t)i);
}

void ct_cpu_scale_channels(const float *x, const float *s, float *y, int64_t rows,
                           int64_t spatial, int64_t c)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *sr = s + r * c;
        for (int64_t p = 0; p < spatial; p++) {
            const float *xp = x + (r * spatial + p) * c;
            float *yp = y + (r * spatial + p) * c;
            /* x == y is allowed, so no restrict here. */
            for (int64_t k = 0; k < c; k++)
                yp[k] = xp[k] * sr[k];
        }
    }
}
