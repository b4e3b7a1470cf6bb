/* cuda_embed.cu - the embedding ops on the GPU: the row gather and its scatter-add.
 * Formulas follow src/backend/backend_cpu_merge.c. The scatter-add uses no atomics: each
 * gradient value is written by one thread that adds its contributions in increasing id
 * position, the CPU's order, so the results are the CPU's bits. That thread is found one
 * of two ways, whichever scans less: one thread per table value scanning every id (cost
 * nrows * n * dim), or one per id position that owns the value when it holds the first
 * occurrence of its id (cost n * n * dim). Threads of a warp share the id position or
 * table row, so the scans read the ids as broadcasts. */
#include <math.h>
#include <stdint.h>

#include "cuda_internal.h"

#define MAX_BLOCKS 4096

namespace {

static unsigned capped_grid(int64_t items)
{
    unsigned g = ct_cuda_grid(items, CT_CUDA_THREADS);
    return g < MAX_BLOCKS ? g : MAX_BLOCKS;
}

/* The table row of id v, or -1 when v is not an integer in [0, nrows). */
__device__ int64_t table_row(float v, int64_t nrows)
{
    if (!(v >= 0.0f && v < (float)nrows) || v != floorf(v))
        return -1;
    return (int64_t)v;
}

__global__ void gather_kernel(const float *table, int64_t nrows, int64_t dim, const float *ids,
                              int64_t total, float *y)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += stride) {
        int64_t i = k / dim, c = k - i * dim, r = table_row(ids[i], nrows);
        y[k] = r < 0 ? 0.0f : table[r * dim + c];
    }
}

/* Adds dy's rows j >= from whose id is row r into grad[r][c], in increasing j. */
__device__ void add_row_sum(const float *dy, const float *ids, int64_t from, int64_t n,
                            int64_t dim, float *grad, int64_t nrows, int64_t r, int64_t c)
{
    float acc = grad[r * dim + c];
    for (int64_t j = from; j < n; j++)
        if (table_row(ids[j], nrows) == r)
            acc += dy[j * dim + c];
    grad[r * dim + c] = acc;
}

/* One thread per table value. */
__global__ void scatter_by_row_kernel(const float *dy, const float *ids, int64_t n, int64_t dim,
                                      float *grad, int64_t nrows)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < nrows * dim;
         k += stride) {
        int64_t r = k / dim;
        add_row_sum(dy, ids, 0, n, dim, grad, nrows, r, k - r * dim);
    }
}

/* One thread per id position and column; the first occurrence of each id does its row. */
__global__ void scatter_by_id_kernel(const float *dy, const float *ids, int64_t n, int64_t dim,
                                     float *grad, int64_t nrows)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n * dim; k += stride) {
        int64_t i = k / dim, r = table_row(ids[i], nrows);
        if (r < 0)
            continue;
        bool first = true;
        for (int64_t j = 0; first && j < i; j++)
            first = table_row(ids[j], nrows) != r;
        if (first)
            add_row_sum(dy, ids, i, n, dim, grad, nrows, r, k - i * dim);
    }
}

/* One thread per step. */
__global__ void step_mask_kernel(const float *x, int64_t n, int64_t feat, float value,
                                 float *mask)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float *v = x + i * feat;
        int64_t j = 0;
        while (j < feat && v[j] == value)
            j++;
        mask[i] = j < feat ? 1.0f : 0.0f;
    }
}

/* One thread per row: the sum in step order, as the CPU's. */
__global__ void mask_weights_kernel(const float *mask, int64_t rows, int64_t steps, float *w)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += stride) {
        const float *m = mask + r * steps;
        float sum = 0.0f;
        for (int64_t t = 0; t < steps; t++)
            sum += m[t];
        for (int64_t t = 0; t < steps; t++)
            w[r * steps + t] = sum > 0.0f ? m[t] / sum : 0.0f;
    }
}

} /* namespace */

extern "C" {

void ct_cuda_gather_rows(const float *table, int64_t nrows, int64_t dim, const float *ids,
                         int64_t n, float *y)
{
    int64_t total = n * dim;
    if (n <= 0 || dim <= 0)
        return;
    gather_kernel<<<capped_grid(total), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        table, nrows, dim, ids, total, y);
    ct_cuda_check_launch("gather_rows");
}

void ct_cuda_scatter_add_rows(const float *dy, const float *ids, int64_t n, int64_t dim,
                              float *grad, int64_t nrows)
{
    if (n <= 0 || dim <= 0 || nrows <= 0)
        return;
    if (nrows <= n)
        scatter_by_row_kernel<<<capped_grid(nrows * dim), CT_CUDA_THREADS, 0,
                                ct_cuda_stream()>>>(dy, ids, n, dim, grad, nrows);
    else
        scatter_by_id_kernel<<<capped_grid(n * dim), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
            dy, ids, n, dim, grad, nrows);
    ct_cuda_check_launch("scatter_add_rows");
}

void ct_cuda_step_mask(const float *x, int64_t n, int64_t feat, float value, float *mask)
{
    if (n <= 0)
        return;
    step_mask_kernel<<<capped_grid(n), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(x, n, feat, value,
                                                                              mask);
    ct_cuda_check_launch("step_mask");
}

void ct_cuda_mask_weights(const float *mask, int64_t rows, int64_t steps, float *w)
{
    if (rows <= 0 || steps <= 0)
        return;
    mask_weights_kernel<<<capped_grid(rows), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        mask, rows, steps, w);
    ct_cuda_check_launch("mask_weights");
}

} /* extern "C" */
