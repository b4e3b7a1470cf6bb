/* cuda_act.cuh - the element-wise activations on the GPU, with the formulas of
 * src/backend/backend_cpu.c: value, derivative at x (given y where the CPU uses it), and the
 * derivative from the output alone. Templates on the kind for kernels that specialise, and
 * ct_dev_act / ct_dev_grad_from_y for kernels that take the kind at run time. */
#ifndef CT_CUDA_ACT_CUH
#define CT_CUDA_ACT_CUH

#include "cuda_internal.h"

#define SELU_ALPHA 1.67326324235437728f
#define SELU_SCALE 1.05070098735548049f
#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_CUBIC 0.044715f

namespace {

/* Never evaluates exp of a large positive number, so no inf/inf. */
__device__ __forceinline__ float dev_sigmoid(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

__device__ __forceinline__ float dev_softplus(float x)
{
    return log1pf(expf(-fabsf(x))) + fmaxf(x, 0.0f);
}

/* 0.5 * (1 + tanh(u)) as sigmoid(2u): no cancellation for negative x. */
__device__ __forceinline__ float gelu_tanh_gate(float x)
{
    return dev_sigmoid(2.0f * SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x));
}

/* 0.5 * (1 + erf(x / sqrt 2)) through erfc, accurate in the negative tail. */
__device__ __forceinline__ float gelu_erf_gate(float x) { return 0.5f * erfcf(-x * INV_SQRT2); }

/* K is a ct_activation; the switch folds away in each instantiation. Kinds without an
 * element-wise form (softmax) are the identity, as act_scalar's default. */
template <int K> __device__ __forceinline__ float act_value(float x, float alpha)
{
    switch (K) {
    case CT_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case CT_ACT_RELU6:
        return fminf(fmaxf(x, 0.0f), 6.0f);
    case CT_ACT_LEAKY_RELU:
        return x > 0.0f ? x : alpha * x;
    case CT_ACT_ELU:
        return x > 0.0f ? x : alpha * expm1f(x);
    case CT_ACT_SELU:
        return SELU_SCALE * (x > 0.0f ? x : SELU_ALPHA * expm1f(x));
    case CT_ACT_GELU:
        return x * (alpha != 0.0f ? gelu_tanh_gate(x) : gelu_erf_gate(x));
    case CT_ACT_SILU:
        return x * dev_sigmoid(x);
    case CT_ACT_SIGMOID:
        return dev_sigmoid(x);
    case CT_ACT_HARD_SIGMOID:
        return fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    case CT_ACT_TANH:
        return tanhf(x);
    case CT_ACT_SOFTPLUS:
        return dev_softplus(x);
    case CT_ACT_SOFTSIGN:
        return x / (1.0f + fabsf(x));
    default:
        return x;
    }
}

/* d act / dx at x, with y = act(x) where the CPU uses it (sigmoid, tanh). */
template <int K> __device__ __forceinline__ float act_grad(float x, float y, float alpha)
{
    switch (K) {
    case CT_ACT_RELU:
        return x > 0.0f ? 1.0f : 0.0f;
    case CT_ACT_RELU6:
        return (x > 0.0f && x < 6.0f) ? 1.0f : 0.0f;
    case CT_ACT_LEAKY_RELU:
        return x > 0.0f ? 1.0f : alpha;
    case CT_ACT_ELU:
        return x > 0.0f ? 1.0f : alpha * expf(x);
    case CT_ACT_SELU:
        return SELU_SCALE * (x > 0.0f ? 1.0f : SELU_ALPHA * expf(x));
    case CT_ACT_GELU:
        if (alpha != 0.0f) {
            float s = gelu_tanh_gate(x);
            float du = 2.0f * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_CUBIC * x * x);
            return s + x * s * (1.0f - s) * du;
        }
        return gelu_erf_gate(x) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    case CT_ACT_SILU: {
        float s = dev_sigmoid(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case CT_ACT_SIGMOID:
        return y * (1.0f - y);
    case CT_ACT_HARD_SIGMOID:
        return (x > -3.0f && x < 3.0f) ? 1.0f / 6.0f : 0.0f;
    case CT_ACT_TANH:
        return 1.0f - y * y;
    case CT_ACT_SOFTPLUS:
        return dev_sigmoid(x);
    case CT_ACT_SOFTSIGN: {
        float d = 1.0f + fabsf(x);
        return 1.0f / (d * d);
    }
    default:
        return 1.0f;
    }
}

/* dy * act'(y) from the output alone (the kinds ct_act_from_output accepts). ReLU selects
 * rather than multiplies, as the CPU does, so a NaN gradient where y <= 0 becomes 0. */
template <int K> __device__ __forceinline__ float grad_from_y(float y, float dy, float alpha)
{
    switch (K) {
    case CT_ACT_RELU:
        return y > 0.0f ? dy : 0.0f;
    case CT_ACT_RELU6:
        return dy * ((y > 0.0f && y < 6.0f) ? 1.0f : 0.0f);
    case CT_ACT_LEAKY_RELU:
        return dy * (y > 0.0f ? 1.0f : alpha);
    case CT_ACT_SIGMOID:
        return dy * (y * (1.0f - y));
    case CT_ACT_HARD_SIGMOID:
        return dy * ((y > 0.0f && y < 1.0f) ? 1.0f / 6.0f : 0.0f);
    case CT_ACT_TANH:
        return dy * (1.0f - y * y);
    default:
        return dy;
    }
}

/* The same for a kind known only at run time. */
__device__ __forceinline__ float ct_dev_act(ct_act act, float x)
{
    switch (act.kind) {
    case CT_ACT_RELU: return act_value<CT_ACT_RELU>(x, act.alpha);
    case CT_ACT_RELU6: return act_value<CT_ACT_RELU6>(x, act.alpha);
    case CT_ACT_LEAKY_RELU: return act_value<CT_ACT_LEAKY_RELU>(x, act.alpha);
    case CT_ACT_ELU: return act_value<CT_ACT_ELU>(x, act.alpha);
    case CT_ACT_SELU: return act_value<CT_ACT_SELU>(x, act.alpha);
    case CT_ACT_GELU: return act_value<CT_ACT_GELU>(x, act.alpha);
    case CT_ACT_SILU: return act_value<CT_ACT_SILU>(x, act.alpha);
    case CT_ACT_SIGMOID: return act_value<CT_ACT_SIGMOID>(x, act.alpha);
    case CT_ACT_HARD_SIGMOID: return act_value<CT_ACT_HARD_SIGMOID>(x, act.alpha);
    case CT_ACT_TANH: return act_value<CT_ACT_TANH>(x, act.alpha);
    case CT_ACT_SOFTPLUS: return act_value<CT_ACT_SOFTPLUS>(x, act.alpha);
    case CT_ACT_SOFTSIGN: return act_value<CT_ACT_SOFTSIGN>(x, act.alpha);
    default: return x;
    }
}

__device__ __forceinline__ float ct_dev_grad_from_y(ct_act act, float y, float dy)
{
    switch (act.kind) {
    case CT_ACT_RELU: return grad_from_y<CT_ACT_RELU>(y, dy, act.alpha);
    case CT_ACT_RELU6: return grad_from_y<CT_ACT_RELU6>(y, dy, act.alpha);
    case CT_ACT_LEAKY_RELU: return grad_from_y<CT_ACT_LEAKY_RELU>(y, dy, act.alpha);
    case CT_ACT_SIGMOID: return grad_from_y<CT_ACT_SIGMOID>(y, dy, act.alpha);
    case CT_ACT_HARD_SIGMOID: return grad_from_y<CT_ACT_HARD_SIGMOID>(y, dy, act.alpha);
    case CT_ACT_TANH: return grad_from_y<CT_ACT_TANH>(y, dy, act.alpha);
    default: return dy;
    }
}

} /* namespace */

#endif
