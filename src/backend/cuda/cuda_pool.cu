/* cuda_pool.cu - pooling, global pooling, zero padding / cropping and nearest-neighbour
 * upsampling on the GPU, with the semantics of backend_cpu_pool.c.
 *
 * Data are channels-last, so the thread of an element sits next to those of the
 * neighbouring channels and loads and stores coalesce. Element-wise kernels index in 32
 * bits when the tensors allow it (64-bit division costs several times more) and the pure
 * copies move float4s when the channel count is a multiple of 4.
 *
 * Backward passes gather: every input element sums, in output order, the windows that
 * cover it. That is the order in which the CPU scatters into dx, so the float sums are the
 * same, and no atomics are needed. Sums use __fadd_rn/__fmul_rn where the CPU multiplies
 * and adds, so nothing is contracted into a fused multiply-add the CPU does not do. */
#include <stdint.h>

#include "cuda_internal.h"

/* ---- shared pieces ------------------------------------------------------------------- */

#define FITS_32(n) ((n) <= (int64_t)INT32_MAX)

__device__ __forceinline__ uint32_t bits_of(float v) { return __float_as_uint(v); }

__device__ __forceinline__ float sum_of(float a, float b) { return __fadd_rn(a, b); }

__device__ __forceinline__ float4 sum_of(float4 a, float4 b)
{
    return make_float4(__fadd_rn(a.x, b.x), __fadd_rn(a.y, b.y), __fadd_rn(a.z, b.z),
                       __fadd_rn(a.w, b.w));
}

template <typename T> __device__ __forceinline__ T zero_of();
template <> __device__ __forceinline__ float zero_of<float>() { return 0.0f; }
template <> __device__ __forceinline__ float4 zero_of<float4>()
{
    return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Range [lo, hi) of taps t < k whose input index base + t*dil lies in [0, in). */
__device__ __forceinline__ void tap_range(int64_t base, int64_t dil, int64_t k, int64_t in,
                                          int64_t *lo, int64_t *hi)
{
    int64_t first, last;
    if (dil == 1) {
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

struct win_bounds {
    int64_t i_lo, i_hi, j_lo, j_hi;
    int64_t h0, w0; /* input row/column of tap (0, 0), possibly outside */
};

__device__ __forceinline__ win_bounds window_at(const ct_window &w, int64_t oh, int64_t ow)
{
    win_bounds b;
    b.h0 = oh * w.stride_h - w.pad_top;
    b.w0 = ow * w.stride_w - w.pad_left;
    tap_range(b.h0, w.dil_h, w.k_h, w.in_h, &b.i_lo, &b.i_hi);
    tap_range(b.w0, w.dil_w, w.k_w, w.in_w, &b.j_lo, &b.j_hi);
    return b;
}

/* Windows [lo, hi) along one axis whose taps reach input index q (padded: q + pad). One
 * axis of a sample is far below 2^31, so 32-bit division serves. */
__device__ __forceinline__ void covering(int64_t qp, int64_t k, int64_t dil, int64_t stride,
                                         int64_t out, int64_t *lo, int64_t *hi)
{
    int64_t reach = qp - (k - 1) * dil; /* the lowest window start that still reaches q */
    *lo = reach <= 0 ? 0 : (int64_t)((uint32_t)(reach + stride - 1) / (uint32_t)stride);
    int64_t h = (int64_t)((uint32_t)qp / (uint32_t)stride) + 1;
    *hi = h < out ? h : out;
}

/* Tap index along one axis of a window whose taps start `off` before q, or -1 when q falls
 * between dilated taps. */
__device__ __forceinline__ int64_t tap_of(int64_t off, int64_t dil)
{
    if (dil == 1)
        return off;
    return off % dil ? -1 : off / dil;
}

/* Splits an output element index into (sample, oh, ow, channel). */
template <typename I>
__device__ __forceinline__ void split_out(const ct_window &w, I idx, I *r, I *oh, I *ow, I *ch)
{
    I c = (I)w.in_c, t = idx / c;
    *ch = idx - t * c;
    I u = t / (I)w.out_w;
    *ow = t - u * (I)w.out_w;
    *r = u / (I)w.out_h;
    *oh = u - *r * (I)w.out_h;
}

/* ---- windowed pooling ------------------------------------------------------------- */

/* One thread per output element; taps in the CPU's scan order, so the first of equal
 * maxima and NaN behave the same (a NaN wins only as the window's first value). */
template <typename I>
__global__ void pool_forward_kernel(ct_pool kind, ct_window w, const float *__restrict__ x,
                                    float *__restrict__ y, I total)
{
    const int64_t in_size = w.in_h * w.in_w * w.in_c, line = w.in_w * w.in_c;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I r, oh, ow, ch;
        split_out(w, idx, &r, &oh, &ow, &ch);
        win_bounds b = window_at(w, (int64_t)oh, (int64_t)ow);
        float acc = 0.0f; /* an empty window yields 0 */
        if (b.i_hi > b.i_lo && b.j_hi > b.j_lo) {
            const float *xs = x + (int64_t)r * in_size + (int64_t)ch;
            bool first = true;
            for (int64_t i = b.i_lo; i < b.i_hi; i++) {
                const float *xr = xs + (b.h0 + i * w.dil_h) * line;
                for (int64_t j = b.j_lo; j < b.j_hi; j++) {
                    float v = xr[(b.w0 + j * w.dil_w) * w.in_c];
                    if (first)
                        acc = v, first = false;
                    else if (kind == CT_POOL_MAX)
                        acc = v > acc ? v : acc;
                    else
                        acc = __fadd_rn(acc, v);
                }
            }
            int64_t count = (b.i_hi - b.i_lo) * (b.j_hi - b.j_lo);
            if (kind == CT_POOL_AVG && count > 1)
                acc = __fmul_rn(acc, __frcp_rn((float)count));
        }
        y[idx] = acc;
    }
}

/* The tap (i * k_w + j) of each output element's window that takes its gradient: the
 * first, in scan order, whose bits equal the output's (which matches NaN and tells -0 from
 * +0 as the forward chose); -1 when none does. */
template <typename I>
__global__ void pool_argmax_kernel(ct_window w, const float *__restrict__ x,
                                   const float *__restrict__ y, int32_t *__restrict__ at,
                                   I total)
{
    const int64_t in_size = w.in_h * w.in_w * w.in_c, line = w.in_w * w.in_c;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I r, oh, ow, ch;
        split_out(w, idx, &r, &oh, &ow, &ch);
        win_bounds b = window_at(w, (int64_t)oh, (int64_t)ow);
        const float *xs = x + (int64_t)r * in_size + (int64_t)ch;
        uint32_t m = bits_of(y[idx]);
        int32_t hit = -1;
        for (int64_t i = b.i_lo; i < b.i_hi && hit < 0; i++) {
            const float *xr = xs + (b.h0 + i * w.dil_h) * line;
            for (int64_t j = b.j_lo; j < b.j_hi; j++)
                if (bits_of(xr[(b.w0 + j * w.dil_w) * w.in_c]) == m) {
                    hit = (int32_t)(i * w.k_w + j);
                    break;
                }
        }
        at[idx] = hit;
    }
}

/* One thread per input element: the sum over the windows that cover it, in output order,
 * of dy routed to it (max: when it is the window's chosen tap; average: dy / count). */
template <typename I>
__global__ void pool_gather_kernel(ct_pool kind, ct_window w, const int32_t *__restrict__ at,
                                   const float *__restrict__ dy, float *__restrict__ dx,
                                   I total)
{
    const I c = (I)w.in_c, in_w = (I)w.in_w, in_h = (I)w.in_h;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I t = idx / c, ch = idx - t * c;
        I u = t / in_w, iw = t - u * in_w;
        I r = u / in_h, ih = u - r * in_h;
        int64_t hp = (int64_t)ih + w.pad_top, wp = (int64_t)iw + w.pad_left;
        int64_t oh_lo, oh_hi, ow_lo, ow_hi;
        covering(hp, w.k_h, w.dil_h, w.stride_h, w.out_h, &oh_lo, &oh_hi);
        covering(wp, w.k_w, w.dil_w, w.stride_w, w.out_w, &ow_lo, &ow_hi);
        const int64_t obase = (int64_t)r * w.out_h * w.out_w;
        float acc = 0.0f;
        for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
            int64_t i = tap_of(hp - oh * w.stride_h, w.dil_h), rows_in = 0;
            if (i < 0)
                continue;
            if (kind == CT_POOL_AVG) {
                int64_t lo, hi;
                tap_range(oh * w.stride_h - w.pad_top, w.dil_h, w.k_h, w.in_h, &lo, &hi);
                rows_in = hi - lo;
            }
            for (int64_t ow = ow_lo; ow < ow_hi; ow++) {
                int64_t j = tap_of(wp - ow * w.stride_w, w.dil_w);
                if (j < 0)
                    continue;
                int64_t o = (obase + oh * w.out_w + ow) * w.in_c + (int64_t)ch;
                if (kind == CT_POOL_MAX) {
                    /* windows that route elsewhere add +0, which changes no sum that
                     * starts at +0 */
                    if (at[o] == (int32_t)(i * w.k_w + j))
                        acc = __fadd_rn(acc, dy[o]);
                } else {
                    int64_t lo, hi;
                    tap_range(ow * w.stride_w - w.pad_left, w.dil_w, w.k_w, w.in_w, &lo, &hi);
                    float inv = __frcp_rn((float)(rows_in * (hi - lo)));
                    acc = __fadd_rn(acc, __fmul_rn(inv, dy[o]));
                }
            }
        }
        dx[idx] = acc;
    }
}

/* Max pooling whose windows tile the input (no overlap, padding or dilation): each output
 * element writes its whole window, dy at the first maximum and 0 elsewhere, so every
 * covered element of dx is written once, as the CPU's tiled path does. */
template <typename I>
__global__ void max_tiled_backward_kernel(ct_window w, const float *__restrict__ x,
                                          const float *__restrict__ y,
                                          const float *__restrict__ dy, float *__restrict__ dx,
                                          I total)
{
    const int64_t in_size = w.in_h * w.in_w * w.in_c, line = w.in_w * w.in_c;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I r, oh, ow, ch;
        split_out(w, idx, &r, &oh, &ow, &ch);
        int64_t base = (int64_t)r * in_size + (int64_t)oh * w.k_h * line +
                       (int64_t)ow * w.k_w * w.in_c + (int64_t)ch;
        uint32_t m = bits_of(y[idx]);
        float g = dy[idx];
        bool open = true;
        for (int64_t i = 0; i < w.k_h; i++)
            for (int64_t j = 0; j < w.k_w; j++) {
                int64_t o = base + i * line + j * w.in_c;
                bool hit = open && bits_of(x[o]) == m;
                dx[o] = hit ? g : 0.0f;
                open = open && !hit;
            }
    }
}

/* Zeroes `runs` runs of len floats; run q starts at base + (q / per) * outer +
 * (q % per) * inner. */
template <typename I>
__global__ void zero_runs_kernel(float *__restrict__ p, I total, I len, I per, int64_t outer,
                                 int64_t inner, int64_t base)
{
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I q = idx / len, o = idx - q * len;
        I a = q / per, b = q - a * per;
        p[base + (int64_t)a * outer + (int64_t)b * inner + (int64_t)o] = 0.0f;
    }
}

static bool tiled(const ct_window *w)
{
    return w->pad_top == 0 && w->pad_left == 0 && w->dil_h == 1 && w->dil_w == 1 &&
           w->stride_h == w->k_h && w->stride_w == w->k_w &&
           w->out_h * w->k_h <= w->in_h && w->out_w * w->k_w <= w->in_w;
}

extern "C" void ct_cuda_pool_forward(ct_pool kind, const ct_window *w, const float *x,
                                     float *y, int64_t rows)
{
    int64_t in_n = rows * w->in_h * w->in_w * w->in_c;
    int64_t out_n = rows * w->out_h * w->out_w * w->in_c;
    if (out_n <= 0)
        return;
    unsigned grid = ct_cuda_grid(out_n, CT_CUDA_THREADS);
    if (FITS_32(in_n) && FITS_32(out_n))
        pool_forward_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            kind, *w, x, y, (uint32_t)out_n);
    else
        pool_forward_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            kind, *w, x, y, (uint64_t)out_n);
    ct_cuda_check_launch("pool_forward");
}

/* Zeroes what lies right of and below the last tiled window. */
static void zero_untiled(const ct_window *w, float *dx, int64_t rows, bool small)
{
    int64_t c = w->in_c, hc = w->out_h * w->k_h, wc = w->out_w * w->k_w;
    int64_t in_size = w->in_h * w->in_w * c, line = w->in_w * c;
    /* columns right of the last window, on the covered rows; then whole rows below */
    int64_t len[2] = {(w->in_w - wc) * c, (w->in_h - hc) * line};
    int64_t per[2] = {hc, 1}, base[2] = {wc * c, hc * line};
    for (int k = 0; k < 2; k++) {
        int64_t total = rows * per[k] * len[k];
        if (total <= 0)
            continue;
        unsigned grid = ct_cuda_grid(total, CT_CUDA_THREADS);
        if (small)
            zero_runs_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
                dx, (uint32_t)total, (uint32_t)len[k], (uint32_t)per[k], in_size, line,
                base[k]);
        else
            zero_runs_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
                dx, (uint64_t)total, (uint64_t)len[k], (uint64_t)per[k], in_size, line,
                base[k]);
        ct_cuda_check_launch("pool_backward");
    }
}

extern "C" void ct_cuda_pool_backward(ct_pool kind, const ct_window *w, const float *x,
                                      const float *y, const float *dy, float *dx, int64_t rows)
{
    int64_t in_n = rows * w->in_h * w->in_w * w->in_c;
    int64_t out_n = rows * w->out_h * w->out_w * w->in_c;
    if (in_n <= 0)
        return;
    bool small = FITS_32(in_n) && FITS_32(out_n);
    cudaStream_t s = ct_cuda_stream();
    if (kind == CT_POOL_MAX && tiled(w)) {
        if (out_n > 0) {
            unsigned grid = ct_cuda_grid(out_n, CT_CUDA_THREADS);
            if (small)
                max_tiled_backward_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, s>>>(
                    *w, x, y, dy, dx, (uint32_t)out_n);
            else
                max_tiled_backward_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, s>>>(
                    *w, x, y, dy, dx, (uint64_t)out_n);
            ct_cuda_check_launch("pool_backward");
        }
        zero_untiled(w, dx, rows, small);
        return;
    }
    int32_t *at = NULL;
    if (kind == CT_POOL_MAX && out_n > 0) {
        at = (int32_t *)ct_cuda_scratch(0, (size_t)out_n * sizeof(int32_t));
        if (!at)
            return;
        unsigned grid = ct_cuda_grid(out_n, CT_CUDA_THREADS);
        if (small)
            pool_argmax_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, s>>>(*w, x, y, at,
                                                                          (uint32_t)out_n);
        else
            pool_argmax_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, s>>>(*w, x, y, at,
                                                                          (uint64_t)out_n);
        ct_cuda_check_launch("pool_backward");
    }
    unsigned grid = ct_cuda_grid(in_n, CT_CUDA_THREADS);
    if (small)
        pool_gather_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, s>>>(kind, *w, at, dy, dx,
                                                                      (uint32_t)in_n);
    else
        pool_gather_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, s>>>(kind, *w, at, dy, dx,
                                                                      (uint64_t)in_n);
    ct_cuda_check_launch("pool_backward");
}

/* ---- global pooling --------------------------------------------------------------
 * A block is samples x lanes x cw threads: cw channels of each of its samples, each lane
 * running over every lanes-th position, the lanes then combined by a fixed shared-memory
 * tree. With one lane (the usual case: many samples and channels, few positions) a thread
 * runs the positions in order, exactly as the CPU does. */

#define GP_THREADS 256

/* How a block is laid out for a shape (the shape alone decides). */
struct gp_plan {
    int lanes, cw;
    int64_t items; /* (sample group, channel tile) pairs */
};

/* More lanes when samples x channels alone would leave the GPU idle and there are enough
 * positions to share; channels up to what is left of the block; samples fill the rest. */
static gp_plan plan_global(int64_t rows, int64_t spatial, int64_t c)
{
    gp_plan p;
    p.lanes = 1;
    while (p.lanes < 64 && rows * c * p.lanes < 65536 && spatial >= 32 * p.lanes)
        p.lanes *= 2;
    p.cw = 1;
    while (p.cw < GP_THREADS / p.lanes && p.cw < c)
        p.cw *= 2;
    int64_t per = GP_THREADS / (p.lanes * p.cw);
    p.items = (rows + per - 1) / per * ((c + p.cw - 1) / p.cw);
    return p;
}

/* Where a thread sits: sample r, channel ch (valid when on), lane; t0 is the thread of
 * lane 0 for the same sample and channel. */
struct gp_pos {
    int64_t r, ch;
    int lane, t0;
    bool on;
};

__device__ __forceinline__ gp_pos gp_where(int64_t item, int64_t rows, int64_t c, int lanes,
                                           int cw)
{
    const int group = lanes * cw, sub = threadIdx.x / group;
    const int64_t tiles = (c + cw - 1) / cw, per = GP_THREADS / group;
    gp_pos q;
    int64_t rb = item / tiles;
    q.lane = (int)(threadIdx.x % group) / cw;
    q.t0 = sub * group + (int)(threadIdx.x % cw);
    q.r = rb * per + sub;
    q.ch = (item - rb * tiles) * cw + threadIdx.x % cw;
    q.on = q.r < rows && q.ch < c;
    return q;
}

/* Max over positions, as the CPU's sequence "y = x0; y = x > y ? x : y": NaN only when
 * the first value is NaN, otherwise the maximum of the other values with the earliest of
 * equals (-0 == +0). Each lane keeps its best (value, position), NaN skipped; the lanes
 * then merge by that order, which gives the same answer in any grouping. Average: float
 * sums per lane, merged by the tree; multiplied by 1/spatial as the CPU does. */
__global__ void global_pool_forward_kernel(ct_pool kind, const float *__restrict__ x,
                                           float *__restrict__ y, int64_t rows,
                                           int64_t spatial, int64_t c, int lanes, int cw,
                                           int64_t items)
{
    __shared__ float sv[GP_THREADS];
    __shared__ int64_t sp[GP_THREADS];
    for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
        gp_pos q = gp_where(item, rows, c, lanes, cw);
        const float *xs = x + q.r * spatial * c + q.ch;
        float v = 0.0f;
        int64_t at = -1; /* position of v; -1: the lane has none yet */
        if (q.on)
            for (int64_t p = q.lane; p < spatial; p += lanes) {
                float xv = xs[p * c];
                if (kind == CT_POOL_MAX) {
                    if (xv == xv && (at < 0 || xv > v))
                        v = xv, at = p;
                } else {
                    v = at < 0 ? xv : __fadd_rn(v, xv);
                    at = p;
                }
            }
        sv[threadIdx.x] = v;
        sp[threadIdx.x] = at;
        __syncthreads();
        for (int half = lanes / 2; half > 0; half /= 2) {
            if (q.lane < half) {
                int o = threadIdx.x + half * cw;
                float ov = sv[o];
                int64_t op = sp[o];
                if (op >= 0) {
                    int64_t mp = sp[threadIdx.x];
                    float mv = sv[threadIdx.x];
                    if (kind == CT_POOL_MAX) {
                        if (mp < 0 || ov > mv || (ov == mv && op < mp))
                            sv[threadIdx.x] = ov, sp[threadIdx.x] = op;
                    } else {
                        sv[threadIdx.x] = mp < 0 ? ov : __fadd_rn(mv, ov);
                        sp[threadIdx.x] = mp < 0 ? op : mp;
                    }
                }
            }
            __syncthreads();
        }
        if (q.lane == 0 && q.on) {
            float out = 0.0f;
            if (spatial > 0) {
                float x0 = xs[0];
                if (kind == CT_POOL_MAX)
                    out = x0 != x0 ? x0 : sv[threadIdx.x];
                else
                    out = spatial > 1 ? __fmul_rn(sv[threadIdx.x], __frcp_rn((float)spatial))
                                      : sv[threadIdx.x];
            }
            y[q.r * c + q.ch] = out;
        }
        __syncthreads(); /* the shared arrays are reused by the next item */
    }
}

/* Max: dy goes to the first position whose bits equal y's (the minimum over the lanes'
 * first matches), 0 + dy as the CPU adds into a zeroed dx; the others get 0. */
__global__ void global_max_backward_kernel(const float *__restrict__ x,
                                           const float *__restrict__ y,
                                           const float *__restrict__ dy,
                                           float *__restrict__ dx, int64_t rows,
                                           int64_t spatial, int64_t c, int lanes, int cw,
                                           int64_t items)
{
    __shared__ int64_t sp[GP_THREADS];
    for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
        gp_pos q = gp_where(item, rows, c, lanes, cw);
        const float *xs = x + q.r * spatial * c + q.ch;
        int64_t at = -1;
        if (q.on) {
            uint32_t m = bits_of(y[q.r * c + q.ch]);
            for (int64_t p = q.lane; p < spatial; p += lanes)
                if (bits_of(xs[p * c]) == m) {
                    at = p;
                    break;
                }
        }
        sp[threadIdx.x] = at;
        __syncthreads();
        for (int half = lanes / 2; half > 0; half /= 2) {
            if (q.lane < half) {
                int64_t a = sp[threadIdx.x], b = sp[threadIdx.x + half * cw];
                if (b >= 0 && (a < 0 || b < a))
                    sp[threadIdx.x] = b;
            }
            __syncthreads();
        }
        if (q.on) {
            int64_t first = sp[q.t0];
            float g = __fadd_rn(0.0f, dy[q.r * c + q.ch]);
            float *ds = dx + q.r * spatial * c + q.ch;
            for (int64_t p = q.lane; p < spatial; p += lanes)
                ds[p * c] = p == first ? g : 0.0f;
        }
        __syncthreads();
    }
}

/* Average: every position gets 0 + dy / spatial (the CPU's axpy into a zeroed dx). */
template <typename I>
__global__ void global_avg_backward_kernel(const float *__restrict__ dy,
                                           float *__restrict__ dx, I total, I spatial, I c,
                                           float inv)
{
    const I sample = spatial * c;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I r = idx / sample, ch = idx % c;
        dx[idx] = __fadd_rn(0.0f, __fmul_rn(inv, dy[r * c + ch]));
    }
}

extern "C" void ct_cuda_global_pool_forward(ct_pool kind, const float *x, float *y,
                                            int64_t rows, int64_t spatial, int64_t c)
{
    if (rows <= 0 || c <= 0)
        return;
    gp_plan p = plan_global(rows, spatial, c);
    unsigned grid = p.items < 65535 * 16 ? (unsigned)p.items : 65535 * 16;
    global_pool_forward_kernel<<<grid, GP_THREADS, 0, ct_cuda_stream()>>>(
        kind, x, y, rows, spatial, c, p.lanes, p.cw, p.items);
    ct_cuda_check_launch("global_pool_forward");
}

extern "C" void ct_cuda_global_pool_backward(ct_pool kind, const float *x, const float *y,
                                             const float *dy, float *dx, int64_t rows,
                                             int64_t spatial, int64_t c)
{
    int64_t total = rows * spatial * c;
    if (total <= 0)
        return;
    if (kind == CT_POOL_MAX) {
        gp_plan p = plan_global(rows, spatial, c);
        unsigned grid = p.items < 65535 * 16 ? (unsigned)p.items : 65535 * 16;
        global_max_backward_kernel<<<grid, GP_THREADS, 0, ct_cuda_stream()>>>(
            x, y, dy, dx, rows, spatial, c, p.lanes, p.cw, p.items);
    } else {
        float inv = 1.0f / (float)spatial;
        unsigned grid = ct_cuda_grid(total, CT_CUDA_THREADS);
        if (FITS_32(total))
            global_avg_backward_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
                dy, dx, (uint32_t)total, (uint32_t)spatial, (uint32_t)c, inv);
        else
            global_avg_backward_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
                dy, dx, (uint64_t)total, (uint64_t)spatial, (uint64_t)c, inv);
    }
    ct_cuda_check_launch("global_pool_backward");
}

/* ---- padding and cropping ----------------------------------------------------------
 * Sizes in units of T (float, or float4 when c is a multiple of 4): c is the channel count
 * in units. pad: y (rows x ph x pw x c) from x (rows x h x w x c), zero outside; crop: y
 * (rows x h x w x c) the interior of x (rows x ph x pw x c). */

template <typename I, typename T>
__global__ void pad_kernel(const T *__restrict__ x, T *__restrict__ y, I total, I h, I w, I c,
                           I ph, I pw, I top, I left)
{
    const I out_line = pw * c, in_line = w * c, lc = left * c;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I t = idx / out_line, col = idx - t * out_line;
        I r = t / ph, i = t - r * ph;
        T v = zero_of<T>();
        if (i >= top && i < top + h && col >= lc && col < lc + in_line)
            v = x[(r * h + (i - top)) * in_line + (col - lc)];
        y[idx] = v;
    }
}

template <typename I, typename T>
__global__ void crop_kernel(const T *__restrict__ x, T *__restrict__ y, I total, I h, I w, I c,
                            I ph, I pw, I top, I left)
{
    const I out_line = w * c, in_line = pw * c;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I t = idx / out_line, col = idx - t * out_line;
        I r = t / h, i = t - r * h;
        y[idx] = x[(r * ph + i + top) * in_line + left * c + col];
    }
}

template <typename I, typename T>
static void launch_pad(const float *x, float *y, int64_t rows, int64_t h, int64_t w,
                       int64_t c, int64_t top, int64_t bottom, int64_t left, int64_t right,
                       bool crop, int64_t units)
{
    int64_t ph = h + top + bottom, pw = w + left + right;
    int64_t cu = c / units;
    int64_t total = crop ? rows * h * w * cu : rows * ph * pw * cu;
    unsigned grid = ct_cuda_grid(total, CT_CUDA_THREADS);
    if (crop)
        crop_kernel<I, T><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            (const T *)x, (T *)y, (I)total, (I)h, (I)w, (I)cu, (I)ph, (I)pw, (I)top, (I)left);
    else
        pad_kernel<I, T><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            (const T *)x, (T *)y, (I)total, (I)h, (I)w, (I)cu, (I)ph, (I)pw, (I)top, (I)left);
    ct_cuda_check_launch(crop ? "crop2d" : "pad2d");
}

extern "C" void ct_cuda_pad2d(const float *x, float *y, int64_t rows, int64_t h, int64_t w,
                              int64_t c, int64_t top, int64_t bottom, int64_t left,
                              int64_t right, bool crop)
{
    int64_t big = rows * (h + top + bottom) * (w + left + right) * c;
    if (rows <= 0 || h <= 0 || w <= 0 || c <= 0 || big <= 0)
        return;
    bool vec = c % 4 == 0 && aligned16(x) && aligned16(y);
    if (FITS_32(big)) {
        if (vec)
            launch_pad<uint32_t, float4>(x, y, rows, h, w, c, top, bottom, left, right, crop, 4);
        else
            launch_pad<uint32_t, float>(x, y, rows, h, w, c, top, bottom, left, right, crop, 1);
    } else {
        if (vec)
            launch_pad<uint64_t, float4>(x, y, rows, h, w, c, top, bottom, left, right, crop, 4);
        else
            launch_pad<uint64_t, float>(x, y, rows, h, w, c, top, bottom, left, right, crop, 1);
    }
}

/* ---- nearest-neighbour upsampling ------------------------------------------------ */

/* y (rows x h*sh x w*sw x c units) from x (rows x h x w x c). */
template <typename I, typename T>
__global__ void upsample_kernel(const T *__restrict__ x, T *__restrict__ y, I total, I h, I w,
                                I c, I sh, I sw)
{
    const I bw = w * sw, bh = h * sh;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I t = idx / c, ch = idx - t * c;
        I u = t / bw, jj = t - u * bw;
        I r = u / bh, ii = u - r * bh;
        y[idx] = x[((r * h + ii / sh) * w + jj / sw) * c + ch];
    }
}

/* The adjoint: y (rows x h x w x c) sums its sh x sw block of x, rows of the block outer
 * and columns inner, from 0, as the CPU adds them. */
template <typename I, typename T>
__global__ void upsample_sum_kernel(const T *__restrict__ x, T *__restrict__ y, I total, I h,
                                    I w, I c, I sh, I sw)
{
    const I bw = w * sw;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I t = idx / c, ch = idx - t * c;
        I u = t / w, j = t - u * w;
        I r = u / h, i = u - r * h;
        const T *xs = x + ((r * h + i) * sh * bw + j * sw) * c + ch;
        T acc = zero_of<T>();
        for (I a = 0; a < sh; a++)
            for (I b = 0; b < sw; b++)
                acc = sum_of(acc, xs[(a * bw + b) * c]);
        y[idx] = acc;
    }
}

template <typename I, typename T>
static void launch_upsample(const float *x, float *y, int64_t rows, int64_t h, int64_t w,
                            int64_t c, int64_t sh, int64_t sw, bool sum_back, int64_t units)
{
    int64_t cu = c / units;
    int64_t total = sum_back ? rows * h * w * cu : rows * h * sh * w * sw * cu;
    unsigned grid = ct_cuda_grid(total, CT_CUDA_THREADS);
    if (sum_back)
        upsample_sum_kernel<I, T><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            (const T *)x, (T *)y, (I)total, (I)h, (I)w, (I)cu, (I)sh, (I)sw);
    else
        upsample_kernel<I, T><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            (const T *)x, (T *)y, (I)total, (I)h, (I)w, (I)cu, (I)sh, (I)sw);
    ct_cuda_check_launch("upsample2d");
}

extern "C" void ct_cuda_upsample2d(const float *x, float *y, int64_t rows, int64_t h, int64_t w,
                                   int64_t c, int64_t sh, int64_t sw, bool sum_back)
{
    if (rows <= 0 || h <= 0 || w <= 0 || c <= 0)
        return;
    if (sh <= 0 || sw <= 0) {
        /* no block to sum: the adjoint is 0, the forward has nothing to write */
        if (sum_back) {
            cudaError_t e = cudaMemsetAsync(y, 0, (size_t)(rows * h * w * c) * sizeof(float),
                                            ct_cuda_stream());
            if (e != cudaSuccess)
                ct_cuda_fail("upsample2d", cudaGetErrorString(e));
        }
        return;
    }
    int64_t big = rows * h * sh * w * sw * c;
    bool vec = c % 4 == 0 && aligned16(x) && aligned16(y);
    if (FITS_32(big)) {
        if (vec)
            launch_upsample<uint32_t, float4>(x, y, rows, h, w, c, sh, sw, sum_back, 4);
        else
            launch_upsample<uint32_t, float>(x, y, rows, h, w, c, sh, sw, sum_back, 1);
    } else {
        if (vec)
            launch_upsample<uint64_t, float4>(x, y, rows, h, w, c, sh, sw, sum_back, 4);
        else
            launch_upsample<uint64_t, float>(x, y, rows, h, w, c, sh, sw, sum_back, 1);
    }
}
