/* fastmath.h - exp, sigmoid and tanh in plain float arithmetic, for the CPU's activation
 * loops: libm's calls keep a loop scalar, while these compile into the vector versions
 * that CT_CPU_CLONES makes. Every version runs the same operations in the same order (no
 * contraction into fused multiply-add, see simd.h), so all give the same bits. Accuracy:
 * within 2 ulp of the exact value over the float range (Cephes's range reduction and
 * polynomials). Loops of them vectorise with -fno-trapping-math (Makefile.am), which
 * changes no result, and see backend_cpu_act.c. Header-only. */
#ifndef CT_FASTMATH_H
#define CT_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* 2^n for n in [-126, 127]. */
static inline float ct_pow2i(int32_t n)
{
    int32_t bits = (n + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* e^x for x <= 88.7 (the caller keeps it there), down to the denormals; 0 below -104. */
static inline float ct_expf(float x)
{
    float xc = x < -104.0f ? -104.0f : x;
    float fn = floorf(xc * 1.44269504088896341f + 0.5f); /* exact; vectorises (roundps) */
    int32_t n = (int32_t)fn;
    float r = xc - fn * 0.693359375f; /* ln 2 in two parts: this one exact times n */
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t n1 = n >> 1; /* 2^n in two normal factors, so denormal results round once */
    float y = p * ct_pow2i(n1) * ct_pow2i(n - n1);
    return x < -104.0f ? 0.0f : y;
}

/* 1 / (1 + e^-x), never exp of a large positive number. */
static inline float ct_sigmoidf(float x)
{
    float e = ct_expf(-fabsf(x));
    float s = 1.0f / (1.0f + e);
    return x < 0.0f ? e * s : s;
}

/* An odd polynomial near 0 (no cancellation), 1 - 2 / (e^2|x| + 1) beyond. */
static inline float ct_tanhf(float x)
{
    float a = fabsf(x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float a9 = a > 10.0f ? 10.0f : a; /* tanh(10) rounds to 1; keeps exp in range */
    float big = 1.0f - 2.0f / (ct_expf(2.0f * a9) + 1.0f);
    big = copysignf(big, x);
    return a < 0.625f ? small : big;
}

/* erfc(x) by the Chebyshev fit of Numerical Recipes (erfcc: fractional error below 1.2e-7
 * in exact arithmetic). e^-z^2 is taken as e^-h^2 e^(h^2 - z^2) with h = z cut to 8
 * fraction bits, h^2 exact, as Cephes does: one rounding of z^2 alone would cost 1e-5 in
 * the tail. Within 4e-7 of the exact value, relative, above the denormals. */
static inline float ct_erfcf(float x)
{
    float z = fabsf(x);
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    z = z > 10.5f ? 10.5f : z; /* erfc(10.5) is below the denormals */
    float h = (float)(int32_t)(z * 256.0f) * (1.0f / 256.0f);
    float rest = (h - z) * (h + z) + p;
    float r = t * ct_expf(-h * h) * ct_expf(rest);
    return x < 0.0f ? 2.0f - r : r;
}

/* GELU as Keras's default (approximate: false): x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2,
 * and its derivative Phi(x) + x e^(-x^2 / 2) / sqrt(2 pi). */
static inline float ct_gelu_gatef(float x) { return 0.5f * ct_erfcf(-x * 0.70710678118654752440f); }

static inline float ct_geluf(float x) { return x * ct_gelu_gatef(x); }

static inline float ct_gelu_gradf(float x)
{
    return ct_gelu_gatef(x) + x * 0.39894228040143267794f * ct_expf(-0.5f * x * x);
}

/* The same derivative given y = ct_geluf(x) as well: the gate is y / x (within 2 ulp of
 * Phi(x), as y is x Phi(x) rounded once), so only one exp remains. Near 0, where y / x
 * would lose digits to a flushed or denormal y, Phi(x) = 1/2 + x / sqrt(2 pi) to far below
 * an ulp (the next term is x^3 / (6 sqrt(2 pi)) < 7e-11). */
static inline float ct_gelu_grad_from_yf(float x, float y)
{
    float gate = fabsf(x) < 1e-3f ? 0.5f + 0.39894228040143267794f * x : y / x;
    return gate + x * 0.39894228040143267794f * ct_expf(-0.5f * x * x);
}

#endif
