/* cuda_conv.cu - the convolution ops on the GPU: im2col / col2im, whole convolutions as
 * patches times kernel through cuBLAS (or cuDNN where the build has it), and the direct
 * depthwise convolution.
 *
 * Layout follows backend_cpu_conv.c: channels_last data, patches ordered (i, j, channel),
 * Keras's kernel (k_h, k_w, in_c/groups, filters) read as a (k_h*k_w*in_c/groups) x filters
 * row-major matrix. Every sum has a fixed order that depends only on the shapes: col2im
 * and the depthwise input gradient gather (each input element adds the values that read
 * it, in the order the CPU adds them); the bias and depthwise kernel gradients sum fixed
 * segments of rows into partials (a fixed tree per block, in double), then add the
 * partials in segment order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef CT_HAVE_CUDNN
#include <cudnn.h>
#endif

#include "cuda_act.cuh"

/* Patches of at most this many floats (64 MiB) per chunk of samples: each GEMM is still
 * large enough to run at full speed, and the buffer stays a small part of a layer's
 * scratch. A single sample's patches are built whole even when larger. */
#define CT_CONV_CHUNK_FLOATS ((int64_t)16 << 20)

/* Reductions: blocks of RED_X columns x RED_Y rows; a segment of rows per block, at most
 * RED_SEGS segments, so partial sums take little memory and the final pass is short. */
#define RED_X 32
#define RED_Y 8
#define RED_SEGS 256
#define RED_MIN_SEG 64

/* Index arithmetic in 32 bits (much cheaper on the GPU) when every index of a launch,
 * plus a grid-stride step, stays below 2^31. */
static bool fits32(int64_t n) { return n <= ((int64_t)1 << 30); }

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* y = act(y + b) over rows x cols (b may be NULL). */
template <typename I>
static __global__ void bias_act_kernel(ct_act act, const float *__restrict__ b,
                                       float *__restrict__ y, I rows, I cols)
{
    const I n = rows * cols;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        float v = y[e];
        if (b)
            v += b[e % cols];
        y[e] = ct_dev_act(act, v);
    }
}

static void bias_act(ct_act act, const float *b, float *y, int64_t rows, int64_t cols)
{
    const int64_t n = rows * cols;
    if (n <= 0 || (!b && act.kind == CT_ACT_LINEAR))
        return;
    const unsigned grid = ct_cuda_grid(n, CT_CUDA_THREADS);
    if (fits32(n))
        bias_act_kernel<int><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(act, b, y, (int)rows,
                                                                              (int)cols);
    else
        bias_act_kernel<int64_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(act, b, y, rows,
                                                                                  cols);
    ct_cuda_check_launch("conv_forward (bias and activation)");
}

/* dy = dy * act'(y) in place, without sums. */
template <typename I>
static __global__ void act_grad_kernel(ct_act act, const float *__restrict__ y,
                                       float *__restrict__ dy, I n)
{
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x)
        dy[e] = ct_dev_grad_from_y(act, y[e], dy[e]);
}

/* ---- deterministic reductions --------------------------------------------------- */

/* Rows per segment: a function of the row count only, never of the device. */
static int64_t red_segment(int64_t rows)
{
    int64_t seg = (rows + RED_SEGS - 1) / RED_SEGS;
    return seg < RED_MIN_SEG ? RED_MIN_SEG : seg;
}

/* Adds the RED_Y partial sums of each column of a block (fixed tree); the result lands in
 * s[0][threadIdx.x]. */
static __device__ __forceinline__ void block_column_tree(double (*s)[RED_X])
{
    __syncthreads();
    for (int h = RED_Y / 2; h > 0; h /= 2) {
        if ((int)threadIdx.y < h)
            s[threadIdx.y][threadIdx.x] += s[threadIdx.y + h][threadIdx.x];
        __syncthreads();
    }
}

/* Pass 1 of dy = dy * act'(y) with db = column sums: block (x, seg) sums the rows of
 * segment seg for RED_X columns; part[seg * cols + c]. */
template <typename I>
static __global__ void grad_colsum_kernel(ct_act act, const float *__restrict__ y,
                                          float *__restrict__ dy, I rows, I cols, I seg,
                                          double *__restrict__ part)
{
    __shared__ double s[RED_Y][RED_X];
    const I c = (I)blockIdx.x * RED_X + threadIdx.x;
    const I r0 = (I)blockIdx.y * seg;
    const I r1 = rows - r0 < seg ? rows : r0 + seg;
    double acc = 0.0;
    if (c < cols) {
        for (I r = r0 + threadIdx.y; r < r1; r += RED_Y) {
            const I e = r * cols + c;
            float d = dy[e];
            if (act.kind != CT_ACT_LINEAR) {
                d = ct_dev_grad_from_y(act, y[e], d);
                dy[e] = d;
            }
            acc += (double)d;
        }
    }
    s[threadIdx.y][threadIdx.x] = acc;
    block_column_tree(s);
    if (threadIdx.y == 0 && c < cols)
        part[(int64_t)blockIdx.y * cols + c] = s[0][threadIdx.x];
}

/* Pass 2: out[e] = the sum over segments of part[seg * n + e], in segment order. */
static __global__ void sum_partials_kernel(const double *__restrict__ part, int64_t segs,
                                           int64_t n, float *__restrict__ out)
{
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        double acc = 0.0;
        for (int64_t k = 0; k < segs; k++)
            acc += part[k * n + e];
        out[e] = (float)acc;
    }
}

static void sum_partials(const double *part, int64_t segs, int64_t n, float *out,
                         const char *what)
{
    sum_partials_kernel<<<ct_cuda_grid(n, CT_CUDA_THREADS), CT_CUDA_THREADS, 0,
                          ct_cuda_stream()>>>(part, segs, n, out);
    ct_cuda_check_launch(what);
}

static void zero(float *p, int64_t n, const char *what)
{
    if (!p || n <= 0)
        return;
    cudaError_t rc = cudaMemsetAsync(p, 0, (size_t)n * sizeof(float), ct_cuda_stream());
    if (rc != cudaSuccess)
        ct_cuda_fail(what, cudaGetErrorString(rc));
}

/* The backward of the fused bias and activation over rows x cols: dy = dy * act'(y) in
 * place, then db = its column sums (overwritten; NULL: skipped). Sums in double. */
static void grad_colsum(ct_act act, const float *y, float *dy, float *db, int64_t rows,
                        int64_t cols)
{
    const char *what = "conv_backward (activation and bias)";
    const int64_t n = rows * cols;
    if (!db) {
        if (act.kind == CT_ACT_LINEAR || n <= 0)
            return;
        const unsigned grid = ct_cuda_grid(n, CT_CUDA_THREADS);
        if (fits32(n))
            act_grad_kernel<int><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(act, y, dy,
                                                                                  (int)n);
        else
            act_grad_kernel<int64_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(act, y, dy,
                                                                                      n);
        ct_cuda_check_launch(what);
        return;
    }
    if (n <= 0) {
        zero(db, cols, what);
        return;
    }
    const int64_t seg = red_segment(rows), segs = (rows + seg - 1) / seg;
    double *part = (double *)ct_cuda_scratch(0, (size_t)(segs * cols) * sizeof(double));
    if (!part)
        return;
    const dim3 grid((unsigned)((cols + RED_X - 1) / RED_X), (unsigned)segs);
    const dim3 block(RED_X, RED_Y);
    if (fits32(n + seg * cols))
        grad_colsum_kernel<int><<<grid, block, 0, ct_cuda_stream()>>>(act, y, dy, (int)rows,
                                                                       (int)cols, (int)seg, part);
    else
        grad_colsum_kernel<int64_t><<<grid, block, 0, ct_cuda_stream()>>>(act, y, dy, rows, cols,
                                                                           seg, part);
    ct_cuda_check_launch(what);
    sum_partials(part, segs, cols, db, what);
}

/* ---- im2col / col2im -------------------------------------------------------------- */

/* V floats moved at once: 4 when every run of channels is 16-byte aligned. */
namespace {
template <int V> struct vec_of { typedef float type; };
template <> struct vec_of<4> { typedef float4 type; };
} // namespace

static __device__ __forceinline__ void vadd(float &a, float b) { a += b; }
static __device__ __forceinline__ void vadd(float4 &a, float4 b)
{
    a.x += b.x;
    a.y += b.y;
    a.z += b.z;
    a.w += b.w;
}

/* One thread per V patch values: cols[p][i][j][ch] = x at (r, oh*sh - pt + i*dh,
 * ow*sw - pl + j*dw, c0 + ch), zero outside. Writes are contiguous across threads. */
template <typename I, int V>
static __global__ void im2col_kernel(ct_window w, const float *__restrict__ x, I rows, I c0,
                                     I cn, float *__restrict__ cols)
{
    typedef typename vec_of<V>::type T;
    const I cv = cn / V, kh = (I)w.k_h, kw = (I)w.k_w, oh_n = (I)w.out_h, ow_n = (I)w.out_w;
    const I ih_n = (I)w.in_h, iw_n = (I)w.in_w, ic = (I)w.in_c;
    const I n = rows * oh_n * ow_n * kh * kw * cv;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        I t = e;
        const I ch = t % cv;
        t /= cv;
        const I j = t % kw;
        t /= kw;
        const I i = t % kh;
        t /= kh;
        const I ow = t % ow_n;
        t /= ow_n;
        const I oh = t % oh_n;
        const I r = t / oh_n;
        const I ih = oh * (I)w.stride_h - (I)w.pad_top + i * (I)w.dil_h;
        const I iw = ow * (I)w.stride_w - (I)w.pad_left + j * (I)w.dil_w;
        T v = T();
        if (ih >= 0 && ih < ih_n && iw >= 0 && iw < iw_n)
            v = *reinterpret_cast<const T *>(x + ((r * ih_n + ih) * iw_n + iw) * ic + c0 + ch * V);
        reinterpret_cast<T *>(cols)[e] = v;
    }
}

/* One thread per V input values of channels [c0, c0 + cn): the sum of the patch values
 * that read them, added to dx (accumulate) or replacing it. The CPU adds patches in
 * position order; for one input element a later position means a smaller kernel offset,
 * so i and j run downwards here to add in that same order. */
template <typename I, int V>
static __global__ void col2im_kernel(ct_window w, const float *__restrict__ cols, I rows, I c0,
                                     I cn, float *__restrict__ dx, bool accumulate)
{
    typedef typename vec_of<V>::type T;
    const I cv = cn / V, kh = (I)w.k_h, kw = (I)w.k_w, oh_n = (I)w.out_h, ow_n = (I)w.out_w;
    const I ih_n = (I)w.in_h, iw_n = (I)w.in_w, ic = (I)w.in_c;
    const I sh = (I)w.stride_h, sw = (I)w.stride_w, dh = (I)w.dil_h, dw = (I)w.dil_w;
    const I n = rows * ih_n * iw_n * cv;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        I t = e;
        const I ch = t % cv;
        t /= cv;
        const I iw = t % iw_n;
        t /= iw_n;
        const I ih = t % ih_n;
        const I r = t / ih_n;
        float *dst = dx + ((r * ih_n + ih) * iw_n + iw) * ic + c0 + ch * V;
        T acc = accumulate ? *reinterpret_cast<const T *>(dst) : T();
        for (I i = kh - 1; i >= 0; i--) {
            const I th = ih + (I)w.pad_top - i * dh;
            if (th < 0)
                continue;
            if (sh != 1 && th % sh != 0)
                continue;
            const I oh = th / sh;
            if (oh >= oh_n)
                break; /* smaller i only moves further down */
            for (I j = kw - 1; j >= 0; j--) {
                const I tw = iw + (I)w.pad_left - j * dw;
                if (tw < 0)
                    continue;
                if (sw != 1 && tw % sw != 0)
                    continue;
                const I ow = tw / sw;
                if (ow >= ow_n)
                    break;
                const I p = (r * oh_n + oh) * ow_n + ow;
                vadd(acc, *reinterpret_cast<const T *>(cols + ((p * kh + i) * kw + j) * cn +
                                                       ch * V));
            }
        }
        *reinterpret_cast<T *>(dst) = acc;
    }
}

static void im2col_launch(const ct_window *w, const float *x, int64_t rows, int64_t c0,
                          int64_t cn, float *cols)
{
    const int64_t n = rows * w->out_h * w->out_w * w->k_h * w->k_w * cn;
    if (n <= 0)
        return;
    const int64_t xn = rows * w->in_h * w->in_w * w->in_c;
    const bool vec = cn % 4 == 0 && c0 % 4 == 0 && w->in_c % 4 == 0 && aligned16(x) &&
                     aligned16(cols);
    const unsigned grid = ct_cuda_grid(vec ? n / 4 : n, CT_CUDA_THREADS);
    cudaStream_t st = ct_cuda_stream();
    if (fits32(n) && fits32(xn)) {
        if (vec)
            im2col_kernel<int, 4><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, x, (int)rows, (int)c0,
                                                                    (int)cn, cols);
        else
            im2col_kernel<int, 1><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, x, (int)rows, (int)c0,
                                                                    (int)cn, cols);
    } else {
        if (vec)
            im2col_kernel<int64_t, 4><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, x, rows, c0, cn, cols);
        else
            im2col_kernel<int64_t, 1><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, x, rows, c0, cn, cols);
    }
    ct_cuda_check_launch("im2col");
}

static void col2im_launch(const ct_window *w, const float *cols, int64_t rows, int64_t c0,
                          int64_t cn, float *dx, bool accumulate)
{
    const int64_t n = rows * w->in_h * w->in_w * cn;
    if (n <= 0)
        return;
    const int64_t xn = rows * w->in_h * w->in_w * w->in_c;
    const int64_t cn_all = rows * w->out_h * w->out_w * w->k_h * w->k_w * cn;
    const bool vec = cn % 4 == 0 && c0 % 4 == 0 && w->in_c % 4 == 0 && aligned16(dx) &&
                     aligned16(cols);
    const unsigned grid = ct_cuda_grid(vec ? n / 4 : n, CT_CUDA_THREADS);
    cudaStream_t st = ct_cuda_stream();
    if (fits32(xn) && fits32(cn_all)) {
        if (vec)
            col2im_kernel<int, 4><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, cols, (int)rows, (int)c0,
                                                                    (int)cn, dx, accumulate);
        else
            col2im_kernel<int, 1><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, cols, (int)rows, (int)c0,
                                                                    (int)cn, dx, accumulate);
    } else {
        if (vec)
            col2im_kernel<int64_t, 4><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, cols, rows, c0, cn, dx,
                                                                        accumulate);
        else
            col2im_kernel<int64_t, 1><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, cols, rows, c0, cn, dx,
                                                                        accumulate);
    }
    ct_cuda_check_launch("col2im");
}

extern "C" void ct_cuda_im2col(const ct_window *w, const float *x, int64_t rows, int64_t c0,
                               int64_t cn, float *cols)
{
    im2col_launch(w, x, rows, c0, cn, cols);
}

extern "C" void ct_cuda_col2im(const ct_window *w, const float *cols, int64_t rows, int64_t c0,
                               int64_t cn, float *dx)
{
    col2im_launch(w, cols, rows, c0, cn, dx, true);
}

/* ---- whole convolutions -------------------------------------------------------------- */

namespace {
typedef struct conv_geo {
    int64_t cg, fg, kdim, npos, in_size, out_size;
    int64_t chunk;  /* samples per patch buffer */
    bool pointwise; /* 1x1, stride 1, no padding: x is its own patch matrix */
} conv_geo;
} // namespace

static bool is_pointwise(const ct_window *w)
{
    return w->k_h == 1 && w->k_w == 1 && w->stride_h == 1 && w->stride_w == 1 &&
           w->pad_top == 0 && w->pad_left == 0;
}

/* One sample's patches for one group. */
static int64_t patch_floats(const ct_window *w, int64_t groups)
{
    return w->out_h * w->out_w * w->k_h * w->k_w * (w->in_c / groups);
}

/* Samples per chunk: as many as fit CT_CONV_CHUNK_FLOATS, at least one, at most rows. It
 * grows with rows up to a bound fixed by the geometry, so a batch smaller than the one
 * the workspace was sized for never needs more. */
static int64_t chunk_samples(const ct_window *w, int64_t groups, int64_t rows)
{
    const int64_t p = patch_floats(w, groups);
    int64_t n = p > 0 ? CT_CONV_CHUNK_FLOATS / p : rows;
    if (n > rows)
        n = rows;
    return n < 1 ? 1 : n;
}

/* Floats of the patch buffer for a batch of rows. */
static int64_t cols_floats(const ct_window *w, int64_t groups, int64_t rows)
{
    if (is_pointwise(w) || rows <= 0)
        return 0;
    return chunk_samples(w, groups, rows) * patch_floats(w, groups);
}

static conv_geo conv_geometry(const ct_window *w, int64_t groups, int64_t filters, int64_t rows)
{
    conv_geo g;
    g.cg = w->in_c / groups;
    g.fg = filters / groups;
    g.kdim = w->k_h * w->k_w * g.cg;
    g.npos = w->out_h * w->out_w;
    g.in_size = w->in_h * w->in_w * w->in_c;
    g.out_size = g.npos * filters;
    g.pointwise = is_pointwise(w);
    g.chunk = g.pointwise ? (rows > 0 ? rows : 1) : chunk_samples(w, groups, rows);
    return g;
}

#ifdef CT_HAVE_CUDNN
/* The cuDNN path needs the kernel in cuDNN's (filters, k_h, k_w, in_c/groups) order,
 * plus alignment slack for it and for cuDNN's own workspace, which must fit in the room
 * the patch buffer would take. */
#define DNN_SLACK 128
static int64_t dnn_extra_floats(const ct_window *w, int64_t groups, int64_t filters)
{
    if (is_pointwise(w))
        return 0;
    return w->k_h * w->k_w * (w->in_c / groups) * filters + DNN_SLACK;
}
#endif

/* The patch buffer starts 16-byte aligned (4 floats of slack), so it can be written 4
 * floats at a time; the total is rounded up to 256 bytes to keep whatever the caller puts
 * after it aligned too. */
extern "C" int64_t ct_cuda_conv_workspace(const ct_window *w, int64_t groups, int64_t filters,
                                          int64_t rows)
{
    int64_t n = cols_floats(w, groups, rows);
    if (n > 0)
        n += 4;
#ifdef CT_HAVE_CUDNN
    n += dnn_extra_floats(w, groups, filters);
#else
    (void)filters;
#endif
    return (n + 63) / 64 * 64;
}

/* The GEMM form: per chunk of samples and per group, y = patches x kernel, then the bias
 * and activation while the chunk's output is likely still in L2. */
static void gemm_forward(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                         const float *kernel, const float *bias, ct_act act, float *y,
                         int64_t rows, float *cols)
{
    const conv_geo g = conv_geometry(w, groups, filters, rows);
    for (int64_t s = 0; s < rows; s += g.chunk) {
        const int64_t n = rows - s < g.chunk ? rows - s : g.chunk, m = n * g.npos;
        const float *xs = x + s * g.in_size;
        float *ys = y + s * g.out_size;
        for (int64_t k = 0; k < groups; k++) {
            const float *a = xs + k * g.cg;
            int64_t lda = w->in_c;
            if (!g.pointwise) {
                im2col_launch(w, xs, n, k * g.cg, g.cg, cols);
                a = cols;
                lda = g.kdim;
            }
            ct_cuda_gemm(false, false, m, g.fg, g.kdim, 1.0f, a, lda, kernel + k * g.fg, filters,
                         0.0f, ys + k * g.fg, filters);
        }
        bias_act(act, bias, ys, m, filters);
    }
}

/* dkernel = patches^T dy, the chunks accumulated in order (beta 1 after the first). */
static void gemm_dkernel(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                         const float *dy, float *dkernel, int64_t rows, float *cols)
{
    const conv_geo g = conv_geometry(w, groups, filters, rows);
    for (int64_t s = 0; s < rows; s += g.chunk) {
        const int64_t n = rows - s < g.chunk ? rows - s : g.chunk, m = n * g.npos;
        const float *xs = x + s * g.in_size, *dys = dy + s * g.out_size;
        for (int64_t k = 0; k < groups; k++) {
            const float *a = xs + k * g.cg;
            int64_t lda = w->in_c;
            if (!g.pointwise) {
                im2col_launch(w, xs, n, k * g.cg, g.cg, cols);
                a = cols;
                lda = g.kdim;
            }
            ct_cuda_gemm(true, false, g.kdim, g.fg, m, 1.0f, a, lda, dys + k * g.fg, filters,
                         s == 0 ? 0.0f : 1.0f, dkernel + k * g.fg, filters);
        }
    }
}

/* dx = col2im(dy kernel^T), each group's channels overwritten. */
static void gemm_dx(const ct_window *w, int64_t groups, int64_t filters, const float *kernel,
                    const float *dy, float *dx, int64_t rows, float *cols)
{
    const conv_geo g = conv_geometry(w, groups, filters, rows);
    for (int64_t s = 0; s < rows; s += g.chunk) {
        const int64_t n = rows - s < g.chunk ? rows - s : g.chunk, m = n * g.npos;
        const float *dys = dy + s * g.out_size;
        float *dxs = dx + s * g.in_size;
        for (int64_t k = 0; k < groups; k++) {
            if (g.pointwise) {
                ct_cuda_gemm(false, true, m, g.cg, g.fg, 1.0f, dys + k * g.fg, filters,
                             kernel + k * g.fg, filters, 0.0f, dxs + k * g.cg, w->in_c);
                continue;
            }
            ct_cuda_gemm(false, true, m, g.kdim, g.fg, 1.0f, dys + k * g.fg, filters,
                         kernel + k * g.fg, filters, 0.0f, cols, g.kdim);
            col2im_launch(w, cols, n, k * g.cg, g.cg, dxs, false);
        }
    }
}

/* ---- cuDNN ------------------------------------------------------------------------- */
#ifdef CT_HAVE_CUDNN

/* in (r x c, row-major) -> out (c x r): the kernel between Keras's order and cuDNN's. */
static __global__ void transpose_kernel(const float *__restrict__ in, int64_t r, int64_t c,
                                        float *__restrict__ out)
{
    __shared__ float tile[32][33];
    const int64_t tiles_c = (c + 31) / 32, tiles = tiles_c * ((r + 31) / 32);
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        const int64_t r0 = (t / tiles_c) * 32, c0 = (t % tiles_c) * 32;
        for (int k = threadIdx.y; k < 32; k += 8)
            if (r0 + k < r && c0 + threadIdx.x < c)
                tile[k][threadIdx.x] = in[(r0 + k) * c + c0 + threadIdx.x];
        __syncthreads();
        for (int k = threadIdx.y; k < 32; k += 8)
            if (c0 + k < c && r0 + threadIdx.x < r)
                out[(c0 + k) * r + r0 + threadIdx.x] = tile[threadIdx.x][k];
        __syncthreads();
    }
}

static void transpose(const float *in, int64_t r, int64_t c, float *out, const char *what)
{
    const int64_t tiles = ((r + 31) / 32) * ((c + 31) / 32);
    const unsigned grid = (unsigned)(tiles < 65535 * 16 ? tiles : 65535 * 16);
    transpose_kernel<<<grid, dim3(32, 8), 0, ct_cuda_stream()>>>(in, r, c, out);
    ct_cuda_check_launch(what);
}

/* One geometry's descriptors and what cuDNN can do for it within the workspace. */
namespace {
typedef struct dnn_key {
    ct_window w;
    int64_t groups, filters, rows;
} dnn_key;

typedef struct dnn_plan {
    dnn_key key;
    bool used, made;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t f;
    cudnnConvolutionDescriptor_t conv;
    bool fwd_ok, bwd_data_ok, bwd_filter_ok;
    cudnnConvolutionFwdAlgo_t fwd_algo;
    size_t fwd_ws, bwd_data_ws, bwd_filter_ws;
} dnn_plan;
} // namespace

#define DNN_PLANS 64

static struct {
    bool tried, on;
    cudnnHandle_t h;
    dnn_plan plans[DNN_PLANS];
    int next;
} dnn;

static bool dnn_enabled(void)
{
    if (!dnn.tried) {
        dnn.tried = true;
        const char *env = getenv("CTRAIN_CUDNN");
        dnn.on = !(env && strcmp(env, "0") == 0);
        if (dnn.on) {
            (void)ct_cuda_stream(); /* the device context exists first */
            dnn.on = cudnnCreate(&dnn.h) == CUDNN_STATUS_SUCCESS;
        }
    }
    return dnn.on;
}

static void dnn_release(dnn_plan *p)
{
    if (p->made) {
        cudnnDestroyTensorDescriptor(p->x);
        cudnnDestroyTensorDescriptor(p->y);
        cudnnDestroyFilterDescriptor(p->f);
        cudnnDestroyConvolutionDescriptor(p->conv);
    }
    memset(p, 0, sizeof *p);
}

static bool dnn_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

/* Forward algorithms whose arithmetic is a plain sum of products (no FFT or Winograd
 * transforms), so results stay close to the GEMM form's. */
static bool dnn_plain_algo(cudnnConvolutionFwdAlgo_t a)
{
    return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

/* Descriptors, output check and algorithm choice; false when cuDNN cannot do this
 * convolution exactly as specified (asymmetric padding, sizes beyond int, ...). */
static bool dnn_make(dnn_plan *p, size_t budget)
{
    const ct_window *w = &p->key.w;
    const int64_t groups = p->key.groups, filters = p->key.filters, rows = p->key.rows;
    const int64_t cg = w->in_c / groups;
    if (!dnn_int(rows) || !dnn_int(w->in_c) || !dnn_int(w->in_h) || !dnn_int(w->in_w) ||
        !dnn_int(filters) || !dnn_int(w->k_h) || !dnn_int(w->k_w) || !dnn_int(groups) ||
        !dnn_int(w->pad_top) || !dnn_int(w->pad_left) || !dnn_int(w->stride_h) ||
        !dnn_int(w->stride_w) || !dnn_int(w->dil_h) || !dnn_int(w->dil_w) ||
        rows * w->in_h * w->in_w * w->in_c > INT32_MAX ||
        rows * w->out_h * w->out_w * filters > INT32_MAX)
        return false;
    if (cudnnCreateTensorDescriptor(&p->x) != CUDNN_STATUS_SUCCESS)
        return false;
    if (cudnnCreateTensorDescriptor(&p->y) != CUDNN_STATUS_SUCCESS) {
        cudnnDestroyTensorDescriptor(p->x);
        return false;
    }
    if (cudnnCreateFilterDescriptor(&p->f) != CUDNN_STATUS_SUCCESS) {
        cudnnDestroyTensorDescriptor(p->x);
        cudnnDestroyTensorDescriptor(p->y);
        return false;
    }
    if (cudnnCreateConvolutionDescriptor(&p->conv) != CUDNN_STATUS_SUCCESS) {
        cudnnDestroyTensorDescriptor(p->x);
        cudnnDestroyTensorDescriptor(p->y);
        cudnnDestroyFilterDescriptor(p->f);
        return false;
    }
    p->made = true;
    if (cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)rows,
                                   (int)w->in_c, (int)w->in_h, (int)w->in_w) ||
        cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)rows,
                                   (int)filters, (int)w->out_h, (int)w->out_w) ||
        cudnnSetFilter4dDescriptor(p->f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, (int)filters,
                                   (int)cg, (int)w->k_h, (int)w->k_w) ||
        cudnnSetConvolution2dDescriptor(p->conv, (int)w->pad_top, (int)w->pad_left,
                                        (int)w->stride_h, (int)w->stride_w, (int)w->dil_h,
                                        (int)w->dil_w, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT) ||
        cudnnSetConvolutionGroupCount(p->conv, (int)groups) ||
        /* plain FP32 arithmetic, as on the CPU: no TF32 tensor cores */
        cudnnSetConvolutionMathType(p->conv, CUDNN_FMA_MATH))
        return false;
    /* cuDNN pads both sides equally; the window is exact only when that gives the same
     * output grid ("same" with an odd total, and "causal", pad only one side). */
    int on, oc, oh, ow;
    if (cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->f, &on, &oc, &oh, &ow) ||
        on != rows || oc != filters || oh != w->out_h || ow != w->out_w)
        return false;
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    if (cudnnGetConvolutionForwardAlgorithm_v7(dnn.h, p->x, p->f, p->conv, p->y,
                                               CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                               perf) == CUDNN_STATUS_SUCCESS) {
        for (int k = 0; k < got; k++) {
            if (perf[k].status != CUDNN_STATUS_SUCCESS ||
                perf[k].determinism != CUDNN_DETERMINISTIC || !dnn_plain_algo(perf[k].algo) ||
                (perf[k].mathType != CUDNN_FMA_MATH && perf[k].mathType != CUDNN_DEFAULT_MATH))
                continue;
            size_t ws = 0;
            if (cudnnGetConvolutionForwardWorkspaceSize(dnn.h, p->x, p->f, p->conv, p->y,
                                                        perf[k].algo, &ws) ||
                ws > budget)
                continue;
            p->fwd_ok = true;
            p->fwd_algo = perf[k].algo;
            p->fwd_ws = ws;
            break;
        }
    }
    size_t ws = 0;
    p->bwd_data_ok = cudnnGetConvolutionBackwardDataWorkspaceSize(
                         dnn.h, p->f, p->y, p->conv, p->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                         &ws) == CUDNN_STATUS_SUCCESS &&
                     ws <= budget;
    p->bwd_data_ws = ws;
    ws = 0;
    p->bwd_filter_ok = cudnnGetConvolutionBackwardFilterWorkspaceSize(
                           dnn.h, p->x, p->y, p->conv, p->f,
                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, &ws) == CUDNN_STATUS_SUCCESS &&
                       ws <= budget;
    p->bwd_filter_ws = ws;
    return true;
}

/* The plan for this convolution (made on first use, kept in a small ring), or NULL when
 * cuDNN is off or cannot run it. */
static dnn_plan *dnn_plan_for(const ct_window *w, int64_t groups, int64_t filters, int64_t rows)
{
    if (is_pointwise(w) || rows <= 0 || !dnn_enabled())
        return NULL;
    dnn_key key;
    memset(&key, 0, sizeof key);
    key.w = *w;
    key.groups = groups;
    key.filters = filters;
    key.rows = rows;
    for (int k = 0; k < DNN_PLANS; k++) {
        dnn_plan *p = &dnn.plans[k];
        if (p->used && memcmp(&p->key, &key, sizeof key) == 0)
            return p->made ? p : NULL;
    }
    dnn_plan *p = &dnn.plans[dnn.next];
    dnn.next = (dnn.next + 1) % DNN_PLANS;
    dnn_release(p);
    p->used = true;
    p->key = key;
    /* cuDNN's workspace goes where the patch buffer would be (the room the caller is
     * sure to have for this batch), after the transposed kernel. */
    const size_t budget = (size_t)cols_floats(w, groups, rows) * sizeof(float);
    if (!dnn_make(p, budget)) {
        dnn_release(p);
        p->used = true;
        p->key = key; /* remembered as unusable */
        return NULL;
    }
    return p;
}

/* work's two areas: the kernel in cuDNN's order and cuDNN's workspace, 256-byte aligned. */
static float *align256(float *p)
{
    return (float *)(((uintptr_t)p + 255) & ~(uintptr_t)255);
}

static void dnn_areas(const ct_window *w, int64_t groups, int64_t filters, float *work,
                      float **kt, void **ws)
{
    const int64_t kfloats = w->k_h * w->k_w * (w->in_c / groups) * filters;
    *kt = align256(work);
    *ws = align256(*kt + kfloats);
}

static bool dnn_stream(void)
{
    return cudnnSetStream(dnn.h, ct_cuda_stream()) == CUDNN_STATUS_SUCCESS;
}

static bool dnn_forward(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                        const float *kernel, float *y, int64_t rows, float *work)
{
    dnn_plan *p = dnn_plan_for(w, groups, filters, rows);
    if (!p || !p->fwd_ok || !aligned16(x) || !aligned16(y) || !dnn_stream())
        return false;
    float *kt;
    void *ws;
    dnn_areas(w, groups, filters, work, &kt, &ws);
    const int64_t kdim = w->k_h * w->k_w * (w->in_c / groups);
    transpose(kernel, kdim, filters, kt, "conv_forward (kernel layout)");
    const float one = 1.0f, zero_f = 0.0f;
    if (cudnnConvolutionForward(dnn.h, &one, p->x, x, p->f, kt, p->conv, p->fwd_algo, ws,
                                p->fwd_ws, &zero_f, p->y, y) != CUDNN_STATUS_SUCCESS) {
        p->fwd_ok = false; /* the GEMM form from now on */
        return false;
    }
    return true;
}

static bool dnn_dkernel(const ct_window *w, int64_t groups, int64_t filters, const float *x,
                        const float *dy, float *dkernel, int64_t rows, float *work)
{
    dnn_plan *p = dnn_plan_for(w, groups, filters, rows);
    if (!p || !p->bwd_filter_ok || !aligned16(x) || !aligned16(dy) || !dnn_stream())
        return false;
    float *kt;
    void *ws;
    dnn_areas(w, groups, filters, work, &kt, &ws);
    const float one = 1.0f, zero_f = 0.0f;
    if (cudnnConvolutionBackwardFilter(dnn.h, &one, p->x, x, p->y, dy, p->conv,
                                       CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ws, p->bwd_filter_ws,
                                       &zero_f, p->f, kt) != CUDNN_STATUS_SUCCESS) {
        p->bwd_filter_ok = false;
        return false;
    }
    const int64_t kdim = w->k_h * w->k_w * (w->in_c / groups);
    transpose(kt, filters, kdim, dkernel, "conv_backward (kernel layout)");
    return true;
}

static bool dnn_dx(const ct_window *w, int64_t groups, int64_t filters, const float *kernel,
                   const float *dy, float *dx, int64_t rows, float *work)
{
    dnn_plan *p = dnn_plan_for(w, groups, filters, rows);
    if (!p || !p->bwd_data_ok || !aligned16(dx) || !aligned16(dy) || !dnn_stream())
        return false;
    float *kt;
    void *ws;
    dnn_areas(w, groups, filters, work, &kt, &ws);
    const int64_t kdim = w->k_h * w->k_w * (w->in_c / groups);
    transpose(kernel, kdim, filters, kt, "conv_backward (kernel layout)");
    const float one = 1.0f, zero_f = 0.0f;
    if (cudnnConvolutionBackwardData(dnn.h, &one, p->f, kt, p->y, dy, p->conv,
                                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ws, p->bwd_data_ws,
                                     &zero_f, p->x, dx) != CUDNN_STATUS_SUCCESS) {
        p->bwd_data_ok = false;
        return false;
    }
    return true;
}

#endif

/* The patch buffer, 16-byte aligned, after cuDNN's areas where there are any (the two
 * paths take turns in one workspace). */
static float *gemm_cols(const ct_window *w, int64_t groups, int64_t filters, float *work)
{
#ifdef CT_HAVE_CUDNN
    work += dnn_extra_floats(w, groups, filters);
#else
    (void)w;
    (void)groups;
    (void)filters;
#endif
    return (float *)(((uintptr_t)work + 15) & ~(uintptr_t)15);
}

extern "C" void ct_cuda_conv_forward(const ct_window *w, int64_t groups, int64_t filters,
                                     const float *x, const float *kernel, const float *bias,
                                     ct_act act, float *y, int64_t rows, float *work)
{
    if (rows <= 0)
        return;
#ifdef CT_HAVE_CUDNN
    if (dnn_forward(w, groups, filters, x, kernel, y, rows, work)) {
        bias_act(act, bias, y, rows * w->out_h * w->out_w, filters);
        return;
    }
#endif
    gemm_forward(w, groups, filters, x, kernel, bias, act, y, rows,
                 gemm_cols(w, groups, filters, work));
}

extern "C" void ct_cuda_conv_backward(const ct_window *w, int64_t groups, int64_t filters,
                                      const float *x, const float *kernel, const float *y,
                                      ct_act act, float *dy, float *dx, float *dkernel,
                                      float *dbias, int64_t rows, float *work)
{
    const char *what = "conv_backward";
    const int64_t m = rows * w->out_h * w->out_w;
    if (m <= 0) {
        zero(dkernel, w->k_h * w->k_w * (w->in_c / groups) * filters, what);
        zero(dbias, filters, what);
        return;
    }
    if (act.kind != CT_ACT_LINEAR || dbias)
        grad_colsum(act, y, dy, dbias, m, filters);
    float *cols = gemm_cols(w, groups, filters, work);
    if (dkernel) {
#ifdef CT_HAVE_CUDNN
        if (!dnn_dkernel(w, groups, filters, x, dy, dkernel, rows, work))
#endif
            gemm_dkernel(w, groups, filters, x, dy, dkernel, rows, cols);
    }
    if (dx) {
#ifdef CT_HAVE_CUDNN
        if (!dnn_dx(w, groups, filters, kernel, dy, dx, rows, work))
#endif
            gemm_dx(w, groups, filters, kernel, dy, dx, rows, cols);
    }
}

/* ---- depthwise ------------------------------------------------------------------------ */

/* One thread per output value (r, oh, ow, q = c*m + k): the sum over in-range taps in
 * (i, j) order, as the CPU. */
template <typename I>
static __global__ void dw_forward_kernel(ct_window w, I m, const float *__restrict__ x,
                                         const float *__restrict__ kernel,
                                         float *__restrict__ y, I rows)
{
    const I ic = (I)w.in_c, cm = ic * m, ih_n = (I)w.in_h, iw_n = (I)w.in_w;
    const I oh_n = (I)w.out_h, ow_n = (I)w.out_w, kh = (I)w.k_h, kw = (I)w.k_w;
    const I n = rows * oh_n * ow_n * cm;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        I t = e;
        const I q = t % cm;
        t /= cm;
        const I ow = t % ow_n;
        t /= ow_n;
        const I oh = t % oh_n;
        const I r = t / oh_n;
        const I c = q / m;
        const float *xs = x + r * ih_n * iw_n * ic + c;
        float acc = 0.0f;
        for (I i = 0; i < kh; i++) {
            const I ih = oh * (I)w.stride_h - (I)w.pad_top + i * (I)w.dil_h;
            if (ih < 0 || ih >= ih_n)
                continue;
            for (I j = 0; j < kw; j++) {
                const I iw = ow * (I)w.stride_w - (I)w.pad_left + j * (I)w.dil_w;
                if (iw < 0 || iw >= iw_n)
                    continue;
                acc += xs[(ih * iw_n + iw) * ic] * kernel[(i * kw + j) * cm + q];
            }
        }
        y[e] = acc;
    }
}

/* One thread per input value (r, ih, iw, c): the sum over the taps that read it of
 * sum_k kernel[tap][c*m+k] dy[pos][c*m+k], positions in the CPU's order (i, j downwards,
 * see col2im_kernel). Overwrites dx. */
template <typename I>
static __global__ void dw_dx_kernel(ct_window w, I m, const float *__restrict__ kernel,
                                    const float *__restrict__ dy, float *__restrict__ dx, I rows)
{
    const I ic = (I)w.in_c, cm = ic * m, ih_n = (I)w.in_h, iw_n = (I)w.in_w;
    const I oh_n = (I)w.out_h, ow_n = (I)w.out_w, kh = (I)w.k_h, kw = (I)w.k_w;
    const I sh = (I)w.stride_h, sw = (I)w.stride_w, dh = (I)w.dil_h, dw = (I)w.dil_w;
    const I n = rows * ih_n * iw_n * ic;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (I)gridDim.x * blockDim.x) {
        I t = e;
        const I c = t % ic;
        t /= ic;
        const I iw = t % iw_n;
        t /= iw_n;
        const I ih = t % ih_n;
        const I r = t / ih_n;
        float acc = 0.0f;
        for (I i = kh - 1; i >= 0; i--) {
            const I th = ih + (I)w.pad_top - i * dh;
            if (th < 0)
                continue;
            if (sh != 1 && th % sh != 0)
                continue;
            const I oh = th / sh;
            if (oh >= oh_n)
                break;
            for (I j = kw - 1; j >= 0; j--) {
                const I tw = iw + (I)w.pad_left - j * dw;
                if (tw < 0)
                    continue;
                if (sw != 1 && tw % sw != 0)
                    continue;
                const I ow = tw / sw;
                if (ow >= ow_n)
                    break;
                const float *kp = kernel + (i * kw + j) * cm + c * m;
                const float *dp = dy + ((r * oh_n + oh) * ow_n + ow) * cm + c * m;
                if (m == 1) {
                    acc += kp[0] * dp[0];
                } else {
                    float s = 0.0f;
                    for (I k = 0; k < m; k++)
                        s += kp[k] * dp[k];
                    acc += s;
                }
            }
        }
        dx[e] = acc;
    }
}

/* Pass 1 of the kernel gradient: block (tap * qtiles + qt, seg) sums x * dy over the
 * positions (r, oh, ow) of segment seg for RED_X output channels of one tap; partials in
 * part[(seg * taps + tap) * cm + q]. Blocks of one segment run together, so its dy is
 * read from DRAM about once for all taps. */
template <typename I>
static __global__ void dw_dkernel_kernel(ct_window w, I m, const float *__restrict__ x,
                                         const float *__restrict__ dy, I rows, I seg, I qtiles,
                                         double *__restrict__ part)
{
    __shared__ double s[RED_Y][RED_X];
    const I ic = (I)w.in_c, cm = ic * m, ih_n = (I)w.in_h, iw_n = (I)w.in_w;
    const I oh_n = (I)w.out_h, ow_n = (I)w.out_w, kw = (I)w.k_w;
    const I taps = (I)w.k_h * kw;
    const I tap = (I)blockIdx.x / qtiles, qt = (I)blockIdx.x % qtiles;
    const I i = tap / kw, j = tap % kw;
    const I q = qt * RED_X + threadIdx.x, c = q / m;
    const I len = rows * oh_n * ow_n;
    const I p0 = (I)blockIdx.y * seg, p1 = len - p0 < seg ? len : p0 + seg;
    float acc = 0.0f; /* at most seg / RED_Y terms per thread */
    if (q < cm) {
        for (I p = p0 + threadIdx.y; p < p1; p += RED_Y) {
            const I ow = p % ow_n, t = p / ow_n;
            const I oh = t % oh_n, r = t / oh_n;
            const I ih = oh * (I)w.stride_h - (I)w.pad_top + i * (I)w.dil_h;
            const I iw = ow * (I)w.stride_w - (I)w.pad_left + j * (I)w.dil_w;
            if (ih >= 0 && ih < ih_n && iw >= 0 && iw < iw_n)
                acc += x[((r * ih_n + ih) * iw_n + iw) * ic + c] * dy[p * cm + q];
        }
    }
    s[threadIdx.y][threadIdx.x] = (double)acc;
    block_column_tree(s);
    if (threadIdx.y == 0 && q < cm)
        part[((int64_t)blockIdx.y * taps + tap) * cm + q] = s[0][threadIdx.x];
}

extern "C" void ct_cuda_depthwise_forward(const ct_window *w, int64_t m, const float *x,
                                          const float *kernel, float *y, int64_t rows)
{
    const int64_t n = rows * w->out_h * w->out_w * w->in_c * m;
    if (n <= 0)
        return;
    const int64_t xn = rows * w->in_h * w->in_w * w->in_c;
    const unsigned grid = ct_cuda_grid(n, CT_CUDA_THREADS);
    if (fits32(n) && fits32(xn) && fits32(w->k_h * w->k_w * w->in_c * m))
        dw_forward_kernel<int><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            *w, (int)m, x, kernel, y, (int)rows);
    else
        dw_forward_kernel<int64_t><<<grid, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            *w, m, x, kernel, y, rows);
    ct_cuda_check_launch("depthwise_forward");
}

extern "C" void ct_cuda_depthwise_backward(const ct_window *w, int64_t m, const float *x,
                                           const float *kernel, const float *dy, float *dx,
                                           float *dkernel, int64_t rows)
{
    const char *what = "depthwise_backward";
    const int64_t cm = w->in_c * m, taps = w->k_h * w->k_w, ksize = taps * cm;
    const int64_t len = rows * w->out_h * w->out_w;
    const int64_t xn = rows * w->in_h * w->in_w * w->in_c, yn = len * cm;
    const bool small = fits32(xn) && fits32(yn) && fits32(ksize);
    cudaStream_t st = ct_cuda_stream();
    if (dx && xn > 0) {
        const unsigned grid = ct_cuda_grid(xn, CT_CUDA_THREADS);
        if (small)
            dw_dx_kernel<int><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, (int)m, kernel, dy, dx,
                                                                (int)rows);
        else
            dw_dx_kernel<int64_t><<<grid, CT_CUDA_THREADS, 0, st>>>(*w, m, kernel, dy, dx, rows);
        ct_cuda_check_launch(what);
    }
    if (!dkernel)
        return;
    if (len <= 0 || ksize <= 0) {
        zero(dkernel, ksize, what);
        return;
    }
    const int64_t seg = red_segment(len), segs = (len + seg - 1) / seg;
    const int64_t qtiles = (cm + RED_X - 1) / RED_X;
    double *part = (double *)ct_cuda_scratch(0, (size_t)(segs * ksize) * sizeof(double));
    if (!part)
        return;
    const dim3 grid((unsigned)(taps * qtiles), (unsigned)segs), block(RED_X, RED_Y);
    if (small && fits32(len + seg) && fits32(taps * qtiles))
        dw_dkernel_kernel<int><<<grid, block, 0, st>>>(*w, (int)m, x, dy, (int)rows, (int)seg,
                                                       (int)qtiles, part);
    else
        dw_dkernel_kernel<int64_t><<<grid, block, 0, st>>>(*w, m, x, dy, rows, seg, qtiles, part);
    ct_cuda_check_launch(what);
    sum_partials(part, segs, ksize, dkernel, what);
}
