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

/* For the larger bodies, which GCC would otherwise leave as calls: a call keeps the loop
 * around it scalar. */
#if defined(__GNUC__)
#define CT_FM_INLINE static inline __attribute__((always_inline))
#else
#define CT_FM_INLINE static inline
#endif

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

/* scale e^(-a^2 / 2 + extra) for 0 <= a <= 14.5 and |extra| < 2, extra a small correction
 * to the exponent. a^2 / 2 is split as ah^2 / 2 (ah: a rounded to 12 bits by Veltkamp's
 * split, so its square is exact) plus a small rest, and both go into ct_expf's range
 * reduction: one rounding of a^2 would cost up to a^2 / 2 ulp (1e-5 at a = 13). The
 * polynomial runs in Estrin's order, a short dependency chain (the loops around this are
 * bound by latency, not by the number of operations). scale is applied before the power
 * of 2, so a denormal result rounds once. */
CT_FM_INLINE float ct_exp_neg_half_sq(float a, float extra, float scale)
{
    float split = a * 4097.0f, ah = split - (split - a);
    float hi = -0.5f * (ah * ah);                    /* exact */
    float lo = extra - 0.5f * ((a - ah) * (a + ah)); /* a^2 - ah^2, small */
    float fn = floorf((hi + lo) * 1.44269504088896341f + 0.5f);
    int32_t n = (int32_t)fn;
    float r = hi - fn * 0.693359375f; /* ln 2 in two parts, lo added after hi's exact part */
    r = (r - fn * -2.12194440e-4f) + lo;
    float r2 = r * r;
    float e = (1.9875691500e-4f * r + 1.3981999507e-3f) * (r2 * r2) +
              ((8.3334519073e-3f * r + 4.1665795894e-2f) * r2 +
               (1.6666665459e-1f * r + 5.0000001201e-1f));
    e = (e * r2 + r) + 1.0f;
    int32_t n1 = n >> 1; /* 2^n in two normal factors, so denormal results round once */
    return (scale * e) * ct_pow2i(n1) * ct_pow2i(n - n1);
}

/* GELU as Keras's default (approximate: false): x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2.
 * With a = |x|, Phi(-a) = t e^(-a^2 / 2 + P(t)) / 2, t = 1 / (1 + z / 2), z = a / sqrt 2:
 * erfc by the Chebyshev fit of Numerical Recipes (erfcc: fractional error below 1.2e-7
 * in exact arithmetic), its exponent through ct_exp_neg_half_sq (one exp, where Cephes's
 * e^-h^2 e^(h^2 - z^2) takes two); z's rounding only reaches the smooth t e^P(t). Within
 * 1e-6 of the exact value, relative, above the denormals (tests/test_backend.c measures
 * it over a dense grid). */
CT_FM_INLINE float ct_gelu_gatef(float x)
{
    float a = fabsf(x);
    a = a > 14.5f ? 14.5f : a; /* Phi(-14.5) x is below the denormals */
    float z = a * 0.70710678118654752440f;
    float t = 1.0f / (1.0f + 0.5f * z);
    /* c0 + c1 t + ... + c9 t^9 in Estrin's order */
    float t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
    float q01 = -1.26551223f + 1.00002368f * t, q23 = 0.37409196f + 0.09678418f * t;
    float q45 = -0.18628806f + 0.27886807f * t, q67 = -1.13520398f + 1.48851587f * t;
    float q89 = -0.82215223f + 0.17087277f * t;
    float p = (q01 + t2 * q23) + t4 * (q45 + t2 * q67) + t8 * q89;
    float half_erfc = ct_exp_neg_half_sq(a, p, 0.5f * t);
    return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

CT_FM_INLINE float ct_geluf(float x) { return x * ct_gelu_gatef(x); }

/* x e^(-x^2 / 2) / sqrt(2 pi), the second term of GELU's derivative (0 past |x| = 14.5,
 * where it is below the denormals). */
CT_FM_INLINE float ct_gelu_bumpf(float x)
{
    float a = fabsf(x);
    float e = ct_exp_neg_half_sq(a > 14.5f ? 14.5f : a, 0.0f, x * 0.39894228040143267794f);
    return a > 14.5f ? 0.0f : e;
}

/* Its derivative, Phi(x) + x e^(-x^2 / 2) / sqrt(2 pi). */
CT_FM_INLINE float ct_gelu_gradf(float x) { return ct_gelu_gatef(x) + ct_gelu_bumpf(x); }

/* The same derivative given y = ct_geluf(x) as well: the gate is y / x (within 2 ulp of
 * Phi(x), as y is x Phi(x) rounded once), so only one exp remains. Near 0, where y / x
 * would lose digits to a flushed or denormal y, Phi(x) = 1/2 + x / sqrt(2 pi) to far below
 * an ulp (the next term is x^3 / (6 sqrt(2 pi)) < 7e-11). */
CT_FM_INLINE float ct_gelu_grad_from_yf(float x, float y)
{
    float gate = fabsf(x) < 1e-3f ? 0.5f + 0.39894228040143267794f * x : y / x;
    return gate + ct_gelu_bumpf(x);
}

#endif
