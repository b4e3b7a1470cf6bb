/* cuda_merge.cu - the ops of merge layers on the GPU: strided copies, broadcasting and its
 * adjoint, running extrema, batched GEMM and L2 normalization. Formulas follow
 * src/backend/backend_cpu_merge.c; each output value is computed by one thread, summing in
 * the CPU's order (so expand_backward and l2_normalize give the CPU's bits), with no atomics.
 * Plain float products that feed a subtraction use __fmul_rn / __fsub_rn so no multiply-add
 * is fused. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "cuda_internal.h"

/* Grid-stride loops run on at most this many blocks. */
#define MAX_BLOCKS 4096

namespace {

static unsigned capped_grid(int64_t items)
{
    unsigned g = ct_cuda_grid(items, CT_CUDA_THREADS);
    return g < MAX_BLOCKS ? g : MAX_BLOCKS;
}

/* ---- broadcasting ------------------------------------------------------------------- */

/* Operand offset of output element o of a sample (backend.h's ct_bcast). */
__device__ int64_t bcast_offset(const ct_bcast &g, int64_t o)
{
    int64_t off = 0;
    for (int a = g.ndim - 1; a >= 0; a--) {
        int64_t q = o / g.dim[a];
        off += (o - q * g.dim[a]) * g.stride[a];
        o = q;
    }
    return off;
}

__global__ void expand_kernel(ct_bcast g, const float *x, float *y, int64_t total)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int64_t r = i / g.out_size, o = i - r * g.out_size;
        y[i] = x[r * g.in_size + bcast_offset(g, o)];
    }
}

/* Output position of operand element j with every broadcast axis at 0. */
__device__ int64_t bcast_base(const ct_bcast &g, const int64_t *ostride, int64_t j)
{
    int64_t base = 0;
    for (int a = 0; a < g.ndim; a++)
        if (g.stride[a] != 0)
            base += ((j / g.stride[a]) % g.dim[a]) * ostride[a];
    return base;
}

/* One thread per operand element: the sum of dy over the positions that read it, walked
 * in increasing output position (the broadcast axes as an odometer, last axis fastest),
 * which is the CPU's order. */
__global__ void expand_backward_kernel(ct_bcast g, const float *dy, float *dx, int64_t total)
{
    int64_t ostride[CT_MAX_DIMS], s = 1;
    for (int a = g.ndim - 1; a >= 0; a--) {
        ostride[a] = s;
        s *= g.dim[a];
    }
    int64_t count = g.out_size / g.in_size, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int64_t r = i / g.in_size, o = bcast_base(g, ostride, i - r * g.in_size);
        const float *d = dy + r * g.out_size;
        int64_t idx[CT_MAX_DIMS] = {0};
        float acc = 0.0f;
        for (int64_t c = 0; c < count; c++) {
            acc += d[o];
            for (int a = g.ndim - 1; a >= 0; a--) {
                if (g.stride[a] != 0)
                    continue;
                o += ostride[a];
                if (++idx[a] < g.dim[a])
                    break;
                o -= ostride[a] * g.dim[a];
                idx[a] = 0;
            }
        }
        dx[i] = acc;
    }
}

/* ---- extrema ------------------------------------------------------------------------ */

__global__ void extremum_kernel(bool minimum, const float *x, float *y, float *arg, float k,
                                int64_t n)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = x[i];
        if (k == 0.0f) {
            y[i] = v;
            arg[i] = 0.0f;
        } else if (minimum ? v < y[i] : v > y[i]) {
            y[i] = v;
            arg[i] = k;
        }
    }
}

__global__ void take_where_kernel(const float *arg, float k, const float *dy, float *dx,
                                  int64_t n)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dx[i] = arg[i] == k ? dy[i] : 0.0f;
}

/* ---- L2 normalization ----------------------------------------------------------------- */

/* The sum of squares along the axis for one (outer, inner) position, in double and in
 * increasing order: float products are exact in double, so a fused multiply-add changes
 * nothing and the CPU's bits come out. */
__device__ double square_sum(const float *x, int64_t n, int64_t inner)
{
    double s = 0.0;
    for (int64_t t = 0; t < n; t++) {
        double v = (double)x[t * inner];
        s += v * v;
    }
    return s;
}

__global__ void l2_kernel(const float *x, float *y, float *inv, int64_t outer, int64_t n,
                          int64_t inner, float eps)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < outer * inner;
         p += stride) {
        int64_t o = p / inner, i = p - o * inner, base = o * n * inner + i;
        double s = square_sum(x + base, n, inner);
        float f = (float)(1.0 / sqrt(s > (double)eps ? s : (double)eps));
        inv[p] = f;
        for (int64_t t = 0; t < n; t++)
            y[base + t * inner] = x[base + t * inner] * f;
    }
}

__global__ void l2_backward_kernel(const float *x, const float *y, const float *inv,
                                   const float *dy, float *dx, int64_t outer, int64_t n,
                                   int64_t inner, float eps)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < outer * inner;
         p += stride) {
        int64_t o = p / inner, i = p - o * inner, base = o * n * inner + i;
        double s = square_sum(x + base, n, inner), d = 0.0;
        for (int64_t t = 0; t < n; t++)
            d += (double)y[base + t * inner] * (double)dy[base + t * inner];
        float dd = s < (double)eps ? 0.0f : (float)d, f = inv[p];
        for (int64_t t = 0; t < n; t++) {
            int64_t at = base + t * inner;
            dx[at] = __fmul_rn(f, __fsub_rn(dy[at], __fmul_rn(y[at], dd)));
        }
    }
}

/* One thread per element of y. */
__global__ void transpose_kernel(const float *x, int64_t rows, int64_t cols, float *y)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < rows * cols;
         k += stride) {
        int64_t c = k / rows, r = k - c * rows;
        y[k] = x[r * cols + c];
    }
}

} /* namespace */

/* ---- launchers --------------------------------------------------------------------------- */

extern "C" {

void ct_cuda_copy_strided(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                          int64_t cols)
{
    if (rows <= 0 || cols <= 0)
        return;
    cudaError_t e = cudaMemcpy2DAsync(y, (size_t)ldy * sizeof(float), x,
                                      (size_t)ldx * sizeof(float), (size_t)cols * sizeof(float),
                                      (size_t)rows, cudaMemcpyDeviceToDevice, ct_cuda_stream());
    if (e != cudaSuccess)
        ct_cuda_fail("copy_strided", cudaGetErrorString(e));
}

void ct_cuda_transpose(const float *x, int64_t rows, int64_t cols, float *y)
{
    int64_t n = rows * cols;
    if (n <= 0)
        return;
    unsigned g = ct_cuda_grid(n, CT_CUDA_THREADS);
    transpose_kernel<<<g < 4096 ? g : 4096, CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(x, rows, cols,
                                                                                   y);
    ct_cuda_check_launch("transpose");
}

void ct_cuda_expand(const ct_bcast *g, const float *x, float *y, int64_t rows)
{
    int64_t total = rows * g->out_size;
    if (total <= 0)
        return;
    expand_kernel<<<capped_grid(total), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(*g, x, y, total);
    ct_cuda_check_launch("expand");
}

void ct_cuda_expand_backward(const ct_bcast *g, const float *dy, float *dx, int64_t rows)
{
    int64_t total = rows * g->in_size;
    if (total <= 0)
        return;
    expand_backward_kernel<<<capped_grid(total), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        *g, dy, dx, total);
    ct_cuda_check_launch("expand_backward");
}

void ct_cuda_extremum(bool minimum, const float *x, float *y, float *arg, float k, int64_t n)
{
    if (n <= 0)
        return;
    extremum_kernel<<<capped_grid(n), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(minimum, x, y,
                                                                              arg, k, n);
    ct_cuda_check_launch("extremum");
}

void ct_cuda_take_where(const float *arg, float k, const float *dy, float *dx, int64_t n)
{
    if (n <= 0)
        return;
    take_where_kernel<<<capped_grid(n), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(arg, k, dy, dx,
                                                                                n);
    ct_cuda_check_launch("take_where");
}

/* Row-major items as column-major ones with the operands swapped, as ct_cuda_gemm does. */
void ct_cuda_gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, int64_t stride_a,
                          const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                          int64_t ldc, int64_t stride_c, int64_t batch)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return;
    const int64_t big = 2147483647;
    if (m > big || n > big || k > big || lda > big || ldb > big || ldc > big || batch > big) {
        ct_cuda_fail("gemm_batched", "a matrix dimension exceeds 2^31 - 1");
        return;
    }
    cublasStatus_t s = cublasSgemmStridedBatched(
        ct_cuda_blas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        (int)n, (int)m, (int)k, &alpha, b, (int)ldb, (long long)stride_b, a, (int)lda,
        (long long)stride_a, &beta, c, (int)ldc, (long long)stride_c, (int)batch);
    if (s != CUBLAS_STATUS_SUCCESS) {
        char why[64];
        snprintf(why, sizeof why, "cuBLAS status %d", (int)s);
        ct_cuda_fail("gemm_batched", why);
    }
}

/* The causal products as full ones: cuBLAS's batched GEMM on the whole square matrix is
 * faster here than skipping its zeros, and computes the lower triangle that is wanted
 * (backend.h allows anything above it). */
void ct_cuda_gemm_batched_causal(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                 float alpha, const float *a, int64_t lda, int64_t stride_a,
                                 const float *b, int64_t ldb, int64_t stride_b, float *c,
                                 int64_t ldc, int64_t stride_c, int64_t batch)
{
    ct_cuda_gemm_batched(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
                         0.0f, c, ldc, stride_c, batch);
}

void ct_cuda_l2_normalize(const float *x, float *y, float *inv, int64_t outer, int64_t n,
                          int64_t inner, float eps)
{
    if (outer <= 0 || n <= 0 || inner <= 0)
        return;
    l2_kernel<<<capped_grid(outer * inner), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        x, y, inv, outer, n, inner, eps);
    ct_cuda_check_launch("l2_normalize");
}

void ct_cuda_l2_normalize_backward(const float *x, const float *y, const float *inv,
                                   const float *dy, float *dx, int64_t outer, int64_t n,
                                   int64_t inner, float eps)
{
    if (outer <= 0 || n <= 0 || inner <= 0)
        return;
    l2_backward_kernel<<<capped_grid(outer * inner), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        x, y, inv, dy, dx, outer, n, inner, eps);
    ct_cuda_check_launch("l2_normalize_backward");
}

} /* extern "C" */
