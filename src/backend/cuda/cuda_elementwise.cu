/* cuda_elementwise.cu - element-wise ops, activations, column sums and randomness on the
 * GPU. Formulas follow src/backend/backend_cpu.c term by term. Plain arithmetic (axpy, bias add,
 * noise) uses __fmul_rn / __fadd_rn so no multiply-add is fused and the bits equal the
 * CPU's (built as ISO C, without contraction); the transcendental functions (expf, erfcf,
 * tanhf, ...) are CUDA's and may differ from glibc's in the last bits. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cuda_act.cuh"


/* Element-wise kernels are grid-stride loops on at most this many blocks (several waves on
 * any current GPU); those that need a row or column index divide once per thread and then
 * step it, so 64-bit division is paid per thread rather than per element. */
#define MAX_BLOCKS 4096

/* Column sums: block size, and how many blocks a sum is spread over at most. */
#define SUM_THREADS 256
#define SUM_TARGET_BLOCKS 2048
#define SUM_MIN_ROWS_PER_THREAD 8

/* Everything up to the launchers has internal linkage, so kernels and operator types here
 * never merge with same-named templates of the other CUDA files. */
namespace {

static unsigned capped_grid(int64_t items)
{
    unsigned g = ct_cuda_grid(items, CT_CUDA_THREADS);
    return g < MAX_BLOCKS ? g : MAX_BLOCKS;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Which of x and y act_grad<K> reads, so the kernel loads only those. */
static bool grad_uses_y(int k) { return k == CT_ACT_SIGMOID || k == CT_ACT_TANH; }

/* Every element-wise kind, for dispatching a runtime ct_activation to a template. */
#define EW_ACT_KINDS(X)                                                                       \
    X(CT_ACT_RELU)                                                                            \
    X(CT_ACT_RELU6)                                                                           \
    X(CT_ACT_LEAKY_RELU)                                                                      \
    X(CT_ACT_ELU)                                                                             \
    X(CT_ACT_SELU)                                                                            \
    X(CT_ACT_GELU)                                                                            \
    X(CT_ACT_SILU)                                                                            \
    X(CT_ACT_SIGMOID)                                                                         \
    X(CT_ACT_HARD_SIGMOID)                                                                    \
    X(CT_ACT_TANH)                                                                            \
    X(CT_ACT_SOFTPLUS)                                                                        \
    X(CT_ACT_SOFTSIGN)

/* The kinds grad_from_y handles; any other one leaves dy as it is. */
#define FROM_Y_KINDS(X)                                                                       \
    X(CT_ACT_RELU)                                                                            \
    X(CT_ACT_RELU6)                                                                           \
    X(CT_ACT_LEAKY_RELU)                                                                      \
    X(CT_ACT_SIGMOID)                                                                         \
    X(CT_ACT_HARD_SIGMOID)                                                                    \
    X(CT_ACT_TANH)

static bool is_from_y_kind(ct_activation k)
{
    switch (k) {
#define CASE(K) case K:
        FROM_Y_KINDS(CASE)
#undef CASE
        return true;
    default:
        return false;
    }
}

/* ---- one output per element ------------------------------------------------------------ */

/* out[i] = f(a[i], b[i], c[i], i); a NULL input reads as 0. When `vec`, every pointer
 * given is 16-byte aligned and the bulk moves as float4. out may equal an input. */
template <class F>
__global__ void map_kernel(F f, const float *a, const float *b, const float *c, float *out,
                           int64_t n, bool vec)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t n4 = vec ? n / 4 : 0;
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int64_t i = t; i < n4; i += stride) {
        float4 va = a ? reinterpret_cast<const float4 *>(a)[i] : zero;
        float4 vb = b ? reinterpret_cast<const float4 *>(b)[i] : zero;
        float4 vc = c ? reinterpret_cast<const float4 *>(c)[i] : zero;
        int64_t e = 4 * i;
        float4 r;
        r.x = f(va.x, vb.x, vc.x, e);
        r.y = f(va.y, vb.y, vc.y, e + 1);
        r.z = f(va.z, vb.z, vc.z, e + 2);
        r.w = f(va.w, vb.w, vc.w, e + 3);
        reinterpret_cast<float4 *>(out)[i] = r;
    }
    for (int64_t i = 4 * n4 + t; i < n; i += stride)
        out[i] = f(a ? a[i] : 0.0f, b ? b[i] : 0.0f, c ? c[i] : 0.0f, i);
}

template <class F>
static void launch_map(const char *what, F f, const float *a, const float *b, const float *c,
                       float *out, int64_t n)
{
    if (n <= 0)
        return;
    bool vec = aligned16(out) && (!a || aligned16(a)) && (!b || aligned16(b)) &&
               (!c || aligned16(c)) && n >= 4;
    map_kernel<<<capped_grid(vec ? n / 4 : n), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        f, a, b, c, out, n, vec);
    ct_cuda_check_launch(what);
}

struct fill_op {
    float v;
    __device__ float operator()(float, float, float, int64_t) const { return v; }
};

struct axpy_op { /* a: x, b: y */
    float alpha;
    __device__ float operator()(float x, float y, float, int64_t) const
    {
        return __fadd_rn(y, __fmul_rn(alpha, x));
    }
};

struct scale_op {
    float alpha;
    __device__ float operator()(float x, float, float, int64_t) const { return x * alpha; }
};

struct mul_op {
    __device__ float operator()(float a, float b, float, int64_t) const { return a * b; }
};

template <int K> struct act_fwd_op {
    float alpha;
    __device__ float operator()(float x, float, float, int64_t) const
    {
        return act_value<K>(x, alpha);
    }
};

template <int K> struct act_bwd_op { /* a: x, b: y, c: dy */
    float alpha;
    __device__ float operator()(float x, float y, float dy, int64_t) const
    {
        if (K == CT_ACT_RELU) /* selects, as the CPU's ReLU loop: NaN dy at x <= 0 gives 0 */
            return x > 0.0f ? dy : 0.0f;
        return dy * act_grad<K>(x, y, alpha);
    }
};

template <int K> struct grad_y_op { /* a: y, b: dy */
    float alpha;
    __device__ float operator()(float y, float dy, float, int64_t) const
    {
        return grad_from_y<K>(y, dy, alpha);
    }
};

struct dropout_op {
    float rate, keep_scale;
    uint64_t key, counter0;
    __device__ float operator()(float, float, float, int64_t i) const
    {
        return ct_rng_uniform(key, counter0 + (uint64_t)i) >= rate ? keep_scale : 0.0f;
    }
};

struct noise_op {
    float stddev;
    uint64_t key, counter0;
    __device__ float operator()(float x, float, float, int64_t i) const
    {
        return __fadd_rn(x, __fmul_rn(stddev, ct_rng_normal(key, counter0 + (uint64_t)i)));
    }
};

/* ---- per-column and per-channel factors ---------------------------------------------- */

/* Walks q = i / d and r = i % d along a grid-stride loop with one division per thread. */
struct divmod_walk {
    int64_t q, r, dq, dr, d;
    __device__ void init(int64_t i, int64_t stride, int64_t div)
    {
        d = div;
        q = i / d;
        r = i - q * d;
        dq = stride / d;
        dr = stride - dq * d;
    }
    __device__ void next()
    {
        q += dq;
        r += dr;
        if (r >= d) {
            r -= d;
            q++;
        }
    }
};

/* y[r][c] = f(y[r][c], b[c]) over n = rows * cols elements. When `vec`, cols % 4 == 0 and
 * y, b are 16-byte aligned: everything moves as float4 (n and cols counted in floats). */
template <class F>
__global__ void row_vector_kernel(F f, const float *b, float *y, int64_t n, int64_t cols,
                                  bool vec)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    divmod_walk w;
    if (vec) {
        int64_t n4 = n / 4;
        if (i >= n4)
            return;
        float4 *y4 = reinterpret_cast<float4 *>(y);
        const float4 *b4 = reinterpret_cast<const float4 *>(b);
        for (w.init(i, stride, cols / 4); i < n4; i += stride, w.next()) {
            float4 v = y4[i], bv = b4[w.r];
            v.x = f(v.x, bv.x);
            v.y = f(v.y, bv.y);
            v.z = f(v.z, bv.z);
            v.w = f(v.w, bv.w);
            y4[i] = v;
        }
        return;
    }
    if (i >= n)
        return;
    for (w.init(i, stride, cols); i < n; i += stride, w.next())
        y[i] = f(y[i], b[w.r]);
}

template <class F>
static void launch_row_vector(const char *what, F f, const float *b, float *y, int64_t rows,
                              int64_t cols)
{
    if (rows <= 0 || cols <= 0)
        return;
    int64_t n = rows * cols;
    bool vec = cols % 4 == 0 && aligned16(y) && aligned16(b);
    row_vector_kernel<<<capped_grid(vec ? n / 4 : n), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        f, b, y, n, cols, vec);
    ct_cuda_check_launch(what);
}

/* The bias is added first and rounded, then the activation applied: the CPU's two steps. */
template <int K> struct bias_act_op {
    float alpha;
    __device__ float operator()(float y, float b) const
    {
        return act_value<K>(__fadd_rn(y, b), alpha);
    }
};

/* y[r][p][k] = x[r][p][k] * s[r][k]; with `vec`, c % 4 == 0 and all pointers aligned. */
__global__ void scale_channels_kernel(const float *x, const float *s, float *y, int64_t n,
                                      int64_t spatial, int64_t c, bool vec)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    divmod_walk ch, sample; /* ch.r: channel; sample.q: sample */
    if (vec) {
        int64_t n4 = n / 4, c4 = c / 4;
        if (i >= n4)
            return;
        const float4 *x4 = reinterpret_cast<const float4 *>(x);
        const float4 *s4 = reinterpret_cast<const float4 *>(s);
        float4 *y4 = reinterpret_cast<float4 *>(y);
        ch.init(i, stride, c4);
        sample.init(i, stride, spatial * c4);
        for (; i < n4; i += stride, ch.next(), sample.next()) {
            float4 v = x4[i], f = s4[sample.q * c4 + ch.r];
            v.x *= f.x;
            v.y *= f.y;
            v.z *= f.z;
            v.w *= f.w;
            y4[i] = v;
        }
        return;
    }
    if (i >= n)
        return;
    ch.init(i, stride, c);
    sample.init(i, stride, spatial * c);
    for (; i < n; i += stride, ch.next(), sample.next())
        y[i] = x[i] * s[sample.q * c + ch.r];
}

/* ---- column sums ------------------------------------------------------------------------
 * A block covers W adjacent columns with R = SUM_THREADS / W row lanes: thread t takes
 * column t % W and rows t / W, t / W + R, ... of its block's chunk of rows, summing them
 * in order in double; the R lane sums then meet in a shared-memory tree of fixed shape.
 * Narrow matrices (cols <= 64) use W = cols, so a block reads whole consecutive rows;
 * wider ones W = 32 (one 128-byte line per warp and row). Tall matrices are cut into
 * chunks of rows whose partial sums (double) are added by a second pass of the same kernel,
 * again in a fixed order. The shape depends on rows and cols alone, so the bits do too.
 * The partial sums number at most SUM_TARGET_BLOCKS * 64 (chunks * tiles is bounded and a
 * tile is at most 64 columns wide), so they live in a fixed device array: the stream orders
 * its uses, and no scratch slot is held while a caller may be using one. */
#define SUM_MAX_PARTIALS (SUM_TARGET_BLOCKS * 64)
static __device__ double sum_partials[SUM_MAX_PARTIALS];

struct sum_shape {
    int w, r, p;           /* columns per block, row lanes, r rounded up to a power of two */
    int64_t tiles, chunks; /* blocks across the columns and down the rows */
    int64_t rows_per_chunk;
};

static sum_shape plan_sum(int64_t rows, int64_t cols, bool split)
{
    sum_shape s;
    s.w = cols <= 64 ? (int)cols : 32;
    s.r = SUM_THREADS / s.w;
    s.p = 1;
    while (s.p < s.r)
        s.p *= 2;
    s.tiles = (cols + s.w - 1) / s.w;
    int64_t chunks = SUM_TARGET_BLOCKS / s.tiles; /* tiles * chunks <= SUM_TARGET_BLOCKS */
    int64_t by_rows = (rows + (int64_t)s.r * SUM_MIN_ROWS_PER_THREAD - 1) /
                      ((int64_t)s.r * SUM_MIN_ROWS_PER_THREAD);
    if (chunks > by_rows)
        chunks = by_rows;
    if (!split || chunks < 1)
        chunks = 1;
    s.rows_per_chunk = (rows + chunks - 1) / chunks;
    s.chunks = s.rows_per_chunk > 0 ? (rows + s.rows_per_chunk - 1) / s.rows_per_chunk : 1;
    return s;
}

/* K == CT_ACT_LINEAR: sums x. Otherwise first dy = grad_from_y<K>(y, dy) in place and sums
 * that (x unused). gridDim.y > 1: writes partial[chunk][col]; else
 * out[col] = (beta == 0 ? 0 : beta * out[col]) + sum, rounded once. */
template <typename T, int K>
__global__ void __launch_bounds__(SUM_THREADS)
    col_sum_kernel(const T *x, float *dy, const float *y, float alpha, int64_t rows,
                   int64_t cols, sum_shape s, double *partial, float *out, float beta)
{
    __shared__ double sh[SUM_THREADS];
    int t = threadIdx.x;
    int lane = t % s.w, rr = t / s.w;
    int64_t col = (int64_t)blockIdx.x * s.w + lane;
    int64_t r0 = (int64_t)blockIdx.y * s.rows_per_chunk;
    int64_t r1 = r0 + s.rows_per_chunk < rows ? r0 + s.rows_per_chunk : rows;
    bool active = rr < s.r && col < cols;
    double acc = 0.0;
    if (active) {
#pragma unroll 4
        for (int64_t r = r0 + rr; r < r1; r += s.r) {
            int64_t idx = r * cols + col;
            if (K == CT_ACT_LINEAR) {
                acc += (double)x[idx];
            } else {
                float g = grad_from_y<K>(y[idx], dy[idx], alpha);
                dy[idx] = g;
                acc += (double)g;
            }
        }
    }
    sh[t] = acc;
    __syncthreads();
    for (int h = s.p / 2; h > 0; h /= 2) {
        if (rr < h && rr + h < s.r)
            sh[t] += sh[t + h * s.w];
        __syncthreads();
    }
    if (!active || rr != 0)
        return;
    double v = sh[t];
    if (gridDim.y > 1) {
        partial[(int64_t)blockIdx.y * cols + col] = v;
    } else {
        float base = beta == 0.0f ? 0.0f : beta * out[col];
        out[col] = (float)((double)base + v);
    }
}

/* Column sums of x (K linear) or of dy after the in-place gradient (K another kind). */
template <int K>
static void column_sums(const char *what, const float *x, float *dy, const float *y,
                        float alpha, float *out, int64_t rows, int64_t cols, float beta)
{
    if (cols <= 0)
        return;
    if (rows < 0)
        rows = 0;
    sum_shape s = plan_sum(rows, cols, true);
    double *partial = NULL;
    if (s.chunks > 1) {
        if (s.chunks * cols > SUM_MAX_PARTIALS) { /* excluded by plan_sum */
            ct_cuda_fail(what, "column sum partials exceed their buffer");
            return;
        }
        cudaError_t e = cudaGetSymbolAddress((void **)&partial, sum_partials);
        if (e != cudaSuccess) {
            ct_cuda_fail(what, cudaGetErrorString(e));
            return;
        }
    }
    dim3 grid((unsigned)s.tiles, (unsigned)s.chunks);
    col_sum_kernel<float, K><<<grid, SUM_THREADS, 0, ct_cuda_stream()>>>(
        x, dy, y, alpha, rows, cols, s, partial, out, beta);
    ct_cuda_check_launch(what);
    if (s.chunks == 1)
        return;
    sum_shape s2 = plan_sum(s.chunks, cols, false);
    col_sum_kernel<double, CT_ACT_LINEAR><<<dim3((unsigned)s2.tiles, 1), SUM_THREADS, 0,
                                            ct_cuda_stream()>>>(
        partial, NULL, NULL, 0.0f, s.chunks, cols, s2, NULL, out, beta);
    ct_cuda_check_launch(what);
}

/* ---- softmax over rows ------------------------------------------------------------------
 * Rows up to WARP_ROW_MAX columns take one warp each, longer ones a block each. Sums are in
 * double, as the CPU's, reduced by xor butterflies (every lane ends with the same bits)
 * and, across a block's warps, through shared memory in warp order. */
#define WARP_ROW_MAX 1024
#define LONG_ROW 16384

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o /= 2)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum(double v)
{
    for (int o = 16; o > 0; o /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* The first barrier lets every thread finish reading sh from the previous call. */
__device__ float block_max(float v, float *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    return warp_max(lane < nw ? sh[lane] : -INFINITY);
}

__device__ double block_sum(double v, double *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    return warp_sum(lane < nw ? sh[lane] : 0.0);
}

/* One row per warp (WARP) or per block; rows by grid stride. The group's loop bounds are
 * uniform, so every lane reaches each reduction. */
#define ROW_GROUP_SETUP                                                                       \
    int lanes = WARP ? 32 : (int)blockDim.x;                                                  \
    int lane = WARP ? (int)(threadIdx.x & 31) : (int)threadIdx.x;                             \
    int64_t per_block = WARP ? blockDim.x / 32 : 1;                                           \
    int64_t row = (int64_t)blockIdx.x * per_block + (WARP ? threadIdx.x / 32 : 0);            \
    int64_t row_stride = (int64_t)gridDim.x * per_block

/* y = softmax(x) or log_softmax(x) per row; the row max keeps exp from overflowing. Each
 * thread rewrites only the elements it read, so x == y is fine. */
template <bool LOG, bool WARP>
__global__ void softmax_forward_kernel(const float *x, float *y, int64_t rows, int64_t cols)
{
    __shared__ float shf[32];
    __shared__ double shd[32];
    ROW_GROUP_SETUP;
    for (; row < rows; row += row_stride) {
        const float *xr = x + row * cols;
        float *yr = y + row * cols;
        float m = -INFINITY;
        for (int64_t c = lane; c < cols; c += lanes)
            m = fmaxf(m, xr[c]);
        m = WARP ? warp_max(m) : block_max(m, shf);
        double sum = 0.0;
        for (int64_t c = lane; c < cols; c += lanes)
            sum += (double)expf(xr[c] - m);
        sum = WARP ? warp_sum(sum) : block_sum(sum, shd);
        if (LOG) {
            /* (x - m) first: exact, and keeps digits x - (m + log sum) would lose */
            float log_sum = (float)log(sum);
            for (int64_t c = lane; c < cols; c += lanes)
                yr[c] = (xr[c] - m) - log_sum;
        } else {
            float inv = (float)(1.0 / sum);
            for (int64_t c = lane; c < cols; c += lanes)
                yr[c] = expf(xr[c] - m) * inv;
        }
    }
}

/* softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy). The sum
 * is complete before any dx is written, so dx == dy is fine. */
template <bool LOG, bool WARP>
__global__ void softmax_backward_kernel(const float *y, const float *dy, float *dx,
                                        int64_t rows, int64_t cols)
{
    __shared__ double shd[32];
    ROW_GROUP_SETUP;
    for (; row < rows; row += row_stride) {
        const float *yr = y + row * cols, *dyr = dy + row * cols;
        float *dxr = dx + row * cols;
        double sum = 0.0;
        for (int64_t c = lane; c < cols; c += lanes)
            sum += LOG ? (double)dyr[c] : (double)dyr[c] * (double)yr[c];
        sum = WARP ? warp_sum(sum) : block_sum(sum, shd);
        float d = (float)sum;
        for (int64_t c = lane; c < cols; c += lanes) {
            if (LOG)
                dxr[c] = __fsub_rn(dyr[c], __fmul_rn(expf(yr[c]), d));
            else
                dxr[c] = yr[c] * (dyr[c] - d);
        }
    }
}

/* Grid for row-wise kernels: WARP rows per 8-warp block, else one row per block. */
static unsigned row_grid(int64_t rows, bool warp)
{
    int64_t b = warp ? (rows + CT_CUDA_THREADS / 32 - 1) / (CT_CUDA_THREADS / 32) : rows;
    if (b < 1)
        b = 1;
    return (unsigned)(b > (1 << 20) ? (1 << 20) : b);
}

static void softmax_forward(bool log_form, const float *x, float *y, int64_t rows,
                            int64_t cols)
{
    cudaStream_t st = ct_cuda_stream();
    if (cols <= WARP_ROW_MAX) {
        unsigned g = row_grid(rows, true);
        if (log_form)
            softmax_forward_kernel<true, true><<<g, CT_CUDA_THREADS, 0, st>>>(x, y, rows, cols);
        else
            softmax_forward_kernel<false, true><<<g, CT_CUDA_THREADS, 0, st>>>(x, y, rows, cols);
    } else {
        unsigned g = row_grid(rows, false);
        int threads = cols >= LONG_ROW ? 1024 : CT_CUDA_THREADS;
        if (log_form)
            softmax_forward_kernel<true, false><<<g, threads, 0, st>>>(x, y, rows, cols);
        else
            softmax_forward_kernel<false, false><<<g, threads, 0, st>>>(x, y, rows, cols);
    }
    ct_cuda_check_launch("act_forward");
}

static void softmax_backward(bool log_form, const float *y, const float *dy, float *dx,
                             int64_t rows, int64_t cols)
{
    cudaStream_t st = ct_cuda_stream();
    if (cols <= WARP_ROW_MAX) {
        unsigned g = row_grid(rows, true);
        if (log_form)
            softmax_backward_kernel<true, true><<<g, CT_CUDA_THREADS, 0, st>>>(y, dy, dx, rows,
                                                                                cols);
        else
            softmax_backward_kernel<false, true><<<g, CT_CUDA_THREADS, 0, st>>>(y, dy, dx, rows,
                                                                                 cols);
    } else {
        unsigned g = row_grid(rows, false);
        int threads = cols >= LONG_ROW ? 1024 : CT_CUDA_THREADS;
        if (log_form)
            softmax_backward_kernel<true, false><<<g, threads, 0, st>>>(y, dy, dx, rows, cols);
        else
            softmax_backward_kernel<false, false><<<g, threads, 0, st>>>(y, dy, dx, rows, cols);
    }
    ct_cuda_check_launch("act_backward");
}

/* Attention's softmax: one warp per row of tq x tv blocks; causal rows take their first
 * i + 1 entries and write zeros past them (the CPU's semantics; sums in float there too). */
__global__ void attention_softmax_kernel(float *s, int64_t rows, int64_t tq, int64_t tv,
                                         bool causal)
{
    const bool WARP = true;
    ROW_GROUP_SETUP;
    for (; row < rows; row += row_stride) {
        float *x = s + row * tv;
        int64_t i = row % tq, n = causal && i + 1 < tv ? i + 1 : tv;
        float m = -INFINITY;
        for (int64_t c = lane; c < n; c += lanes)
            m = fmaxf(m, x[c]);
        m = warp_max(m);
        float sum = 0.0f;
        for (int64_t c = lane; c < n; c += lanes)
            sum += expf(x[c] - m);
        sum = (float)warp_sum((double)sum);
        float inv = 1.0f / sum;
        __syncwarp();
        for (int64_t c = lane; c < tv; c += lanes)
            x[c] = c < n ? expf(x[c] - m) * inv : 0.0f;
    }
}

__global__ void attention_softmax_backward_kernel(const float *p, float *d, int64_t rows,
                                                  int64_t tq, int64_t tv, bool causal)
{
    const bool WARP = true;
    ROW_GROUP_SETUP;
    for (; row < rows; row += row_stride) {
        const float *pr = p + row * tv;
        float *dr = d + row * tv;
        int64_t i = row % tq, n = causal && i + 1 < tv ? i + 1 : tv;
        float dot = 0.0f;
        for (int64_t c = lane; c < n; c += lanes)
            dot += pr[c] * dr[c];
        dot = (float)warp_sum((double)dot);
        __syncwarp();
        for (int64_t c = lane; c < tv; c += lanes)
            dr[c] = c < n ? pr[c] * (dr[c] - dot) : 0.0f;
    }
}

} /* namespace */

/* ---- launchers ------------------------------------------------------------------------- */

extern "C" {

void ct_cuda_fill(float *x, int64_t n, float value)
{
    if (n <= 0)
        return;
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if (bits == 0) { /* +0.0f is all zero bytes */
        cudaError_t e = cudaMemsetAsync(x, 0, (size_t)n * sizeof(float), ct_cuda_stream());
        if (e != cudaSuccess)
            ct_cuda_fail("fill", cudaGetErrorString(e));
        return;
    }
    launch_map("fill", fill_op{value}, NULL, NULL, NULL, x, n);
}

void ct_cuda_copy(float *dst, const float *src, int64_t n)
{
    if (n <= 0 || dst == src)
        return;
    cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float),
                                    cudaMemcpyDeviceToDevice, ct_cuda_stream());
    if (e != cudaSuccess)
        ct_cuda_fail("copy", cudaGetErrorString(e));
}

void ct_cuda_axpy(int64_t n, float alpha, const float *x, float *y)
{
    launch_map("axpy", axpy_op{alpha}, x, y, NULL, y, n);
}

/* axpy_op gives y + alpha x: here y is a and x is b, so the sum rounds as axpy's */
void ct_cuda_add_scaled(int64_t n, const float *a, float alpha, const float *b, float *out)
{
    launch_map("add_scaled", axpy_op{alpha}, b, a, NULL, out, n);
}

void ct_cuda_scale(int64_t n, float alpha, float *x)
{
    launch_map("scale", scale_op{alpha}, x, NULL, NULL, x, n);
}

void ct_cuda_mul(int64_t n, const float *a, const float *b, float *out)
{
    launch_map("mul", mul_op{}, a, b, NULL, out, n);
}

void ct_cuda_add_row_vector(float *y, const float *b, int64_t rows, int64_t cols)
{
    launch_row_vector("add_row_vector", bias_act_op<CT_ACT_LINEAR>{0.0f}, b, y, rows, cols);
}

void ct_cuda_sum_rows(const float *x, float *out, int64_t rows, int64_t cols, float beta)
{
    column_sums<CT_ACT_LINEAR>("sum_rows", x, NULL, NULL, 0.0f, out, rows, cols, beta);
}

void ct_cuda_bias_act(ct_act act, const float *b, float *y, int64_t rows, int64_t cols)
{
    if (rows <= 0 || cols <= 0)
        return;
    switch (act.kind) {
#define CASE(K)                                                                               \
    case K:                                                                                   \
        if (b)                                                                                \
            launch_row_vector("bias_act", bias_act_op<K>{act.alpha}, b, y, rows, cols);       \
        else                                                                                  \
            launch_map("bias_act", act_fwd_op<K>{act.alpha}, y, NULL, NULL, y, rows * cols);  \
        return;
        EW_ACT_KINDS(CASE)
#undef CASE
    default: /* linear (and the row-wise kinds, which act_scalar leaves unchanged) */
        if (b)
            launch_row_vector("bias_act", bias_act_op<CT_ACT_LINEAR>{0.0f}, b, y, rows, cols);
        return;
    }
}

/* The table slot's semantics (backend_cpu.c's par_bias_act_backward): db is overwritten
 * with the column sums, unlike the serial ct_cpu_bias_act_grad, which adds to it. The
 * gradient and the sums go in one pass over dy. */
void ct_cuda_bias_act_backward(ct_act act, const float *y, float *dy, float *db, int64_t rows,
                               int64_t cols)
{
    if (rows <= 0 || cols <= 0) {
        if (db && cols > 0)
            ct_cuda_fill(db, cols, 0.0f);
        return;
    }
    ct_activation kind = is_from_y_kind(act.kind) ? act.kind : CT_ACT_LINEAR;
    if (!db) {
        switch (kind) {
#define CASE(K)                                                                               \
    case K:                                                                                   \
        launch_map("bias_act_backward", grad_y_op<K>{act.alpha}, y, dy, NULL, dy,             \
                   rows * cols);                                                              \
        return;
            FROM_Y_KINDS(CASE)
#undef CASE
        default:
            return;
        }
    }
    switch (kind) {
#define CASE(K)                                                                               \
    case K:                                                                                   \
        column_sums<K>("bias_act_backward", dy, dy, y, act.alpha, db, rows, cols, 0.0f);      \
        return;
        FROM_Y_KINDS(CASE)
#undef CASE
    default:
        column_sums<CT_ACT_LINEAR>("bias_act_backward", dy, NULL, NULL, 0.0f, db, rows, cols,
                                   0.0f);
        return;
    }
}

/* Two launches, the bias and then the activation from z: the same values as the CPU's one
 * pass (a fused kernel would save reading z again; not yet measured on a GPU). */
void ct_cuda_bias_act_to(ct_act act, const float *b, float *z, float *y, int64_t rows,
                         int64_t cols)
{
    if (b)
        ct_cuda_add_row_vector(z, b, rows, cols);
    ct_cuda_act_forward(act, z, y, rows, cols);
}

void ct_cuda_act_forward(ct_act act, const float *x, float *y, int64_t rows, int64_t cols)
{
    if (rows <= 0 || cols <= 0)
        return;
    int64_t n = rows * cols;
    switch (act.kind) {
    case CT_ACT_SOFTMAX:
    case CT_ACT_LOG_SOFTMAX:
        softmax_forward(act.kind == CT_ACT_LOG_SOFTMAX, x, y, rows, cols);
        return;
#define CASE(K)                                                                               \
    case K:                                                                                   \
        launch_map("act_forward", act_fwd_op<K>{act.alpha}, x, NULL, NULL, y, n);             \
        return;
        EW_ACT_KINDS(CASE)
#undef CASE
    default:
        ct_cuda_copy(y, x, n);
        return;
    }
}

void ct_cuda_act_backward(ct_act act, const float *x, const float *y, const float *dy,
                          float *dx, int64_t rows, int64_t cols)
{
    if (rows <= 0 || cols <= 0)
        return;
    int64_t n = rows * cols;
    switch (act.kind) {
    case CT_ACT_SOFTMAX:
    case CT_ACT_LOG_SOFTMAX:
        softmax_backward(act.kind == CT_ACT_LOG_SOFTMAX, y, dy, dx, rows, cols);
        return;
#define CASE(K)                                                                               \
    case K:                                                                                   \
        launch_map("act_backward", act_bwd_op<K>{act.alpha}, grad_uses_y(K) ? NULL : x,       \
                   grad_uses_y(K) ? y : NULL, dy, dx, n);                                     \
        return;
        EW_ACT_KINDS(CASE)
#undef CASE
    default:
        ct_cuda_copy(dx, dy, n);
        return;
    }
}

void ct_cuda_attention_softmax(float *s, int64_t blocks, int64_t tq, int64_t tv, bool causal)
{
    if (blocks <= 0 || tq <= 0 || tv <= 0)
        return;
    attention_softmax_kernel<<<row_grid(blocks * tq, true), CT_CUDA_THREADS, 0,
                               ct_cuda_stream()>>>(s, blocks * tq, tq, tv, causal);
    ct_cuda_check_launch("attention_softmax");
}

void ct_cuda_attention_softmax_backward(const float *p, float *d, int64_t blocks, int64_t tq,
                                        int64_t tv, bool causal)
{
    if (blocks <= 0 || tq <= 0 || tv <= 0)
        return;
    attention_softmax_backward_kernel<<<row_grid(blocks * tq, true), CT_CUDA_THREADS, 0,
                                        ct_cuda_stream()>>>(p, d, blocks * tq, tq, tv, causal);
    ct_cuda_check_launch("attention_softmax_backward");
}

void ct_cuda_dropout_mask(float *mask, int64_t n, float rate, uint64_t key, uint64_t counter0)
{
    if (n <= 0)
        return;
    if (rate <= 0.0f) {
        ct_cuda_fill(mask, n, 1.0f);
        return;
    }
    if (rate >= 1.0f) { /* everything dropped; 1/(1-rate) would be inf */
        ct_cuda_fill(mask, n, 0.0f);
        return;
    }
    float keep_scale = 1.0f / (1.0f - rate);
    launch_map("dropout_mask", dropout_op{rate, keep_scale, key, counter0}, NULL, NULL, NULL,
               mask, n);
}

void ct_cuda_add_noise(float *x, int64_t n, float stddev, uint64_t key, uint64_t counter0)
{
    if (n <= 0 || stddev == 0.0f)
        return;
    launch_map("add_noise", noise_op{stddev, key, counter0}, x, NULL, NULL, x, n);
}

void ct_cuda_scale_channels(const float *x, const float *s, float *y, int64_t rows,
                            int64_t spatial, int64_t c)
{
    if (rows <= 0 || spatial <= 0 || c <= 0)
        return;
    int64_t n = rows * spatial * c;
    bool vec = c % 4 == 0 && aligned16(x) && aligned16(s) && aligned16(y);
    scale_channels_kernel<<<capped_grid(vec ? n / 4 : n), CT_CUDA_THREADS, 0,
                            ct_cuda_stream()>>>(x, s, y, n, spatial, c, vec);
    ct_cuda_check_launch("scale_channels");
}

} /* extern "C" */
