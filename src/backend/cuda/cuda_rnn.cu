/* cuda_rnn.cu - the LSTM cell's element-wise part, one thread per value of rows x units,
 * forward and backward; the layout (gate rows [i | f | c | o]), the formulas and their
 * order are the CPU's (src/backend/backend_cpu_rnn.c). */
#include <math.h>
#include <stdint.h>

#include "cuda_act.cuh"
#include "cuda_internal.h"

namespace {

/* d act / dx for a kind known only at run time. */
__device__ float dev_deriv(ct_act act, float x, float y)
{
    switch (act.kind) {
    case CT_ACT_RELU: return act_grad<CT_ACT_RELU>(x, y, act.alpha);
    case CT_ACT_RELU6: return act_grad<CT_ACT_RELU6>(x, y, act.alpha);
    case CT_ACT_LEAKY_RELU: return act_grad<CT_ACT_LEAKY_RELU>(x, y, act.alpha);
    case CT_ACT_ELU: return act_grad<CT_ACT_ELU>(x, y, act.alpha);
    case CT_ACT_SELU: return act_grad<CT_ACT_SELU>(x, y, act.alpha);
    case CT_ACT_GELU: return act_grad<CT_ACT_GELU>(x, y, act.alpha);
    case CT_ACT_SILU: return act_grad<CT_ACT_SILU>(x, y, act.alpha);
    case CT_ACT_SIGMOID: return act_grad<CT_ACT_SIGMOID>(x, y, act.alpha);
    case CT_ACT_HARD_SIGMOID: return act_grad<CT_ACT_HARD_SIGMOID>(x, y, act.alpha);
    case CT_ACT_TANH: return act_grad<CT_ACT_TANH>(x, y, act.alpha);
    case CT_ACT_SOFTPLUS: return act_grad<CT_ACT_SOFTPLUS>(x, y, act.alpha);
    case CT_ACT_SOFTSIGN: return act_grad<CT_ACT_SOFTSIGN>(x, y, act.alpha);
    default: return 1.0f;
    }
}

__global__ void lstm_kernel(ct_act act, ct_act rec_act, const float *a, float *y,
                            const float *c0, float *c1, float *tc, float *h, int64_t nu,
                            int64_t u)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < nu; k += stride) {
        int64_t r = k / u, g0 = r * 4 * u + (k - r * u); /* the value's i in a and y */
        float i = ct_dev_act(rec_act, a[g0]), f = ct_dev_act(rec_act, a[g0 + u]);
        float g = ct_dev_act(act, a[g0 + 2 * u]), o = ct_dev_act(rec_act, a[g0 + 3 * u]);
        y[g0] = i;
        y[g0 + u] = f;
        y[g0 + 2 * u] = g;
        y[g0 + 3 * u] = o;
        float c = __fmul_rn(f, c0[k]);
        c = __fadd_rn(c, __fmul_rn(i, g));
        c1[k] = c;
        float t = ct_dev_act(act, c);
        tc[k] = t;
        h[k] = __fmul_rn(o, t);
    }
}

__global__ void lstm_back_kernel(ct_act act, ct_act rec_act, const float *a, const float *y,
                                 const float *c0, const float *c1, const float *tc,
                                 const float *dh, float *dc, float *da, int64_t nu, int64_t u)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < nu; k += stride) {
        int64_t r = k / u, g0 = r * 4 * u + (k - r * u);
        float i = y[g0], f = y[g0 + u], g = y[g0 + 2 * u], o = y[g0 + 3 * u], t = tc[k];
        float d_o = __fmul_rn(dh[k], t);
        da[g0 + 3 * u] = __fmul_rn(d_o, dev_deriv(rec_act, a[g0 + 3 * u], o));
        float dt = __fmul_rn(__fmul_rn(dh[k], o), dev_deriv(act, c1[k], t));
        float c = __fadd_rn(dc[k], dt);
        da[g0] = __fmul_rn(__fmul_rn(c, g), dev_deriv(rec_act, a[g0], i));
        da[g0 + 2 * u] = __fmul_rn(__fmul_rn(c, i), dev_deriv(act, a[g0 + 2 * u], g));
        da[g0 + u] = __fmul_rn(__fmul_rn(c, c0[k]), dev_deriv(rec_act, a[g0 + u], f));
        dc[k] = __fmul_rn(c, f);
    }
}

unsigned grid_for(int64_t n)
{
    unsigned g = ct_cuda_grid(n, CT_CUDA_THREADS);
    return g < 4096 ? g : 4096;
}

} /* namespace */

extern "C" {

void ct_cuda_lstm_step(ct_act act, ct_act rec_act, const float *a, float *y, const float *c0,
                       float *c1, float *tc, float *h, int64_t rows, int64_t units)
{
    int64_t nu = rows * units;
    if (nu <= 0)
        return;
    lstm_kernel<<<grid_for(nu), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(act, rec_act, a, y, c0,
                                                                        c1, tc, h, nu, units);
    ct_cuda_check_launch("lstm_step");
}

/* cuBLAS for the product, then the cell: the fusion pays on the CPU's caches. */
void ct_cuda_lstm_step_packed(ct_act act, ct_act rec_act, const float *z, int64_t ldz,
                              int64_t k, const float *packed, float *a, float *y,
                              const float *c0, float *c1, float *tc, float *h, int64_t rows,
                              int64_t units)
{
    ct_cuda_gemm_packed(rows, 4 * units, k, z, ldz, packed, NULL, 0, a, 4 * units);
    ct_cuda_lstm_step(act, rec_act, a, y, c0, c1, tc, h, rows, units);
}

void ct_cuda_lstm_step_backward(ct_act act, ct_act rec_act, const float *a, const float *y,
                                const float *c0, const float *c1, const float *tc,
                                const float *dh, float *dc, float *da, int64_t rows,
                                int64_t units)
{
    int64_t nu = rows * units;
    if (nu <= 0)
        return;
    lstm_back_kernel<<<grid_for(nu), CT_CUDA_THREADS, 0, ct_cuda_stream()>>>(
        act, rec_act, a, y, c0, c1, tc, dh, dc, da, nu, units);
    ct_cuda_check_launch("lstm_step_backward");
}

void ct_cuda_lstm_step_backward_packed(ct_act act, ct_act rec_act, const float *r, int64_t ldr,
                                       int64_t k, const float *packed, const float *d,
                                       int64_t ldd, const float *a, const float *y,
                                       const float *c0, const float *c1, const float *tc,
                                       float *dh, float *dc, float *da, int64_t rows,
                                       int64_t units)
{
    ct_cuda_gemm_packed(rows, units, k, r, ldr, packed, d, ldd, dh, units);
    ct_cuda_lstm_step_backward(act, rec_act, a, y, c0, c1, tc, dh, dc, da, rows, units);
}

} /* extern "C" */
