/* cuda_image.cu - the preprocessing and augmentation ops on the GPU: rescaling,
 * normalization, the affine image transforms and random contrast. The transform of each
 * sample comes from image_aug.h, the CPU's definition, so both backends draw the same.
 * Formulas and summation orders follow src/backend/backend_cpu_image.c; the backward passes
 * use no atomics: one thread owns an (image, channel) and adds its contributions in the
 * CPU's order, which is slow for large images but these layers start a model, where the
 * backward pass is rarely asked for. */
#include <math.h>
#include <stdint.h>

#include "cuda_internal.h"
#include "image_aug.h"

#define MAX_BLOCKS 4096

namespace {

static unsigned capped_grid(int64_t items)
{
    unsigned g = ct_cuda_grid(items, CT_CUDA_THREADS);
    return g < MAX_BLOCKS ? g : MAX_BLOCKS;
}

__global__ void scale_shift_kernel(const float *x, float *y, int64_t n, float scale,
                                   float offset)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = x[i] * scale + offset;
}

/* One thread per output value (image, row, col, channel). */
__global__ void aug_kernel(ct_image_aug a, const float *x, float *y, int64_t rows, uint64_t key)
{
    int64_t total = rows * a.oh * a.ow * a.c, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int64_t k = i % a.c, p = i / a.c, ox = p % a.ow, q = p / a.ow, oy = q % a.oh,
                r = q / a.oh;
        float m[6], wt[4], v = 0.0f;
        int64_t off[4];
        ct_aug_matrix(&a, key, r, m);
        int n = ct_aug_taps(&a, m, ox, oy, off, wt);
        const float *xr = x + r * a.h * a.w * a.c;
        for (int t = 0; t < n; t++)
            v += wt[t] * (off[t] < 0 ? a.fill_value : xr[off[t] + k]);
        y[i] = v;
    }
}

/* One thread per (image, channel): zero its dx, then scatter every output pixel's gradient
 * in order. */
__global__ void aug_backward_kernel(ct_image_aug a, const float *dy, float *dx, int64_t rows,
                                    uint64_t key)
{
    int64_t total = rows * a.c, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int64_t r = i / a.c, k = i % a.c;
        float m[6], wt[4];
        int64_t off[4];
        float *dr = dx + r * a.h * a.w * a.c + k;
        const float *gr = dy + r * a.oh * a.ow * a.c + k;
        for (int64_t p = 0; p < a.h * a.w; p++)
            dr[p * a.c] = 0.0f;
        ct_aug_matrix(&a, key, r, m);
        for (int64_t oy = 0; oy < a.oh; oy++)
            for (int64_t ox = 0; ox < a.ow; ox++) {
                float g = gr[(oy * a.ow + ox) * a.c];
                int n = ct_aug_taps(&a, m, ox, oy, off, wt);
                for (int t = 0; t < n; t++)
                    if (off[t] >= 0)
                        dr[off[t]] += wt[t] * g;
            }
    }
}

__device__ float contrast_factor(uint64_t key, int64_t r, float lo, float hi)
{
    return ct_aug_uniform(key, r, 0, 1.0f - lo, 1.0f + hi);
}

/* One thread per (image, channel), summing in the CPU's order. */
__global__ void contrast_kernel(const float *x, float *y, int64_t rows, int64_t spatial,
                                int64_t c, float lo, float hi, float vmin, float vmax,
                                uint64_t key)
{
    int64_t total = rows * c, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int64_t r = i / c, k = i % c;
        const float *xr = x + r * spatial * c + k;
        float *yr = y + r * spatial * c + k, f = contrast_factor(key, r, lo, hi);
        double sum = 0.0;
        for (int64_t p = 0; p < spatial; p++)
            sum += xr[p * c];
        float mean = (float)(sum / (double)spatial);
        for (int64_t p = 0; p < spatial; p++) {
            float v = (xr[p * c] - mean) * f + mean;
            yr[p * c] = v < vmin ? vmin : v > vmax ? vmax : v;
        }
    }
}

__global__ void contrast_backward_kernel(const float *y, const float *dy, float *dx,
                                         int64_t rows, int64_t spatial, int64_t c, float lo,
                                         float hi, float vmin, float vmax, uint64_t key)
{
    int64_t total = rows * c, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int64_t r = i / c, k = i % c, base = r * spatial * c + k;
        float f = contrast_factor(key, r, lo, hi);
        double sum = 0.0;
        for (int64_t p = 0; p < spatial; p++) {
            float v = y[base + p * c];
            sum += v > vmin && v < vmax ? dy[base + p * c] : 0.0f;
        }
        float shared = (1.0f - f) * (float)(sum / (double)spatial);
        for (int64_t p = 0; p < spatial; p++) {
            float v = y[base + p * c];
            float g = v > vmin && v < vmax ? dy[base + p * c] : 0.0f;
            dx[base + p * c] = f * g + shared;
        }
    }
}

/* One thread per channel, in the CPU's order and precision (adapt only: not hot). */
__global__ void moments_kernel(const float *x, int64_t rows, int64_t c, float *mean, float *m2)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < c; k += stride) {
        double s = 0.0, q = 0.0;
        for (int64_t r = 0; r < rows; r++)
            s += x[r * c + k];
        double m = rows > 0 ? s / (double)rows : 0.0;
        for (int64_t r = 0; r < rows; r++) {
            double d = x[r * c + k] - m;
            q += d * d;
        }
        mean[k] = (float)m;
        m2[k] = (float)q;
    }
}

__device__ float norm_scale(float var)
{
    float sd = sqrtf(var);
    return sd > 1e-7f ? sd : 1e-7f;
}

__global__ void normalize_kernel(const float *x, float *y, int64_t n, int64_t c,
                                 const float *mean, const float *var, bool invert)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        int64_t k = i % c;
        float v = x[i], sd = norm_scale(var[k]);
        y[i] = invert ? mean[k] + v * sd : (v - mean[k]) / sd;
    }
}

__global__ void normalize_backward_kernel(const float *dy, float *dx, int64_t n, int64_t c,
                                          const float *var, bool invert)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float sd = norm_scale(var[i % c]);
        dx[i] = invert ? dy[i] * sd : dy[i] / sd;
    }
}

} // namespace

extern "C" {

void ct_cuda_scale_shift(const float *x, float *y, int64_t n, float scale, float offset)
{
    if (n <= 0)
        return;
    scale_shift_kernel<<<capped_grid(n), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(x, y, n, scale,
                                                                                 offset);
    ct_cuda_check_launch("scale_shift");
}

void ct_cuda_image_aug(const ct_image_aug *a, const float *x, float *y, int64_t rows,
                       uint64_t key)
{
    int64_t n = rows * a->oh * a->ow * a->c;
    if (n <= 0)
        return;
    aug_kernel<<<capped_grid(n), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(*a, x, y, rows, key);
    ct_cuda_check_launch("image_aug");
}

void ct_cuda_image_aug_backward(const ct_image_aug *a, const float *dy, float *dx, int64_t rows,
                                uint64_t key)
{
    if (rows <= 0 || a->c <= 0)
        return;
    aug_backward_kernel<<<capped_grid(rows * a->c), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        *a, dy, dx, rows, key);
    ct_cuda_check_launch("image_aug_backward");
}

void ct_cuda_contrast(const float *x, float *y, int64_t rows, int64_t spatial, int64_t c,
                      float lo, float hi, float vmin, float vmax, uint64_t key)
{
    if (rows <= 0 || spatial <= 0 || c <= 0)
        return;
    contrast_kernel<<<capped_grid(rows * c), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        x, y, rows, spatial, c, lo, hi, vmin, vmax, key);
    ct_cuda_check_launch("contrast");
}

void ct_cuda_contrast_backward(const float *y, const float *dy, float *dx, int64_t rows,
                               int64_t spatial, int64_t c, float lo, float hi, float vmin,
                               float vmax, uint64_t key)
{
    if (rows <= 0 || spatial <= 0 || c <= 0)
        return;
    contrast_backward_kernel<<<capped_grid(rows * c), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        y, dy, dx, rows, spatial, c, lo, hi, vmin, vmax, key);
    ct_cuda_check_launch("contrast_backward");
}

void ct_cuda_channel_moments(const float *x, int64_t rows, int64_t c, float *mean, float *m2)
{
    if (c <= 0)
        return;
    moments_kernel<<<capped_grid(c), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(x, rows, c, mean,
                                                                             m2);
    ct_cuda_check_launch("channel_moments");
}

void ct_cuda_normalize_channels(const float *x, float *y, int64_t rows, int64_t c,
                                const float *mean, const float *var, bool invert)
{
    if (rows <= 0 || c <= 0)
        return;
    normalize_kernel<<<capped_grid(rows * c), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        x, y, rows * c, c, mean, var, invert);
    ct_cuda_check_launch("normalize_channels");
}

void ct_cuda_normalize_channels_backward(const float *dy, float *dx, int64_t rows, int64_t c,
                                         const float *var, bool invert)
{
    if (rows <= 0 || c <= 0)
        return;
    normalize_backward_kernel<<<capped_grid(rows * c), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        dy, dx, rows * c, c, var, invert);
    ct_cuda_check_launch("normalize_channels_backward");
}

} // extern "C"
