/* exp_libm.c - expf of many values with the bits of the C library's own expf, four at a
 * time. The generic softmax (dense layers' output activation) calls libm's expf once per
 * value, which keeps it scalar; its results are what the MLP's and CNN's trained weights
 * are pinned to (tests/golden), so a faster exp must give exactly the same floats.
 *
 * GNU libc's expf (since 2.28; the FMA build that its dispatcher picks on a CPU with AVX2
 * and FMA) takes x in double, splits x / ln 2 into k / 32 + r with a fused multiply-add
 * against 1.5 * 2^52, reads 2^(k mod 32 / 32) from a table of 32 doubles, and evaluates a
 * cubic in r with three fused multiply-adds, then rounds the double to float. The same
 * operations on four doubles in AVX2 registers give the same bits. Values below -87 (whose
 * results are 0 or denormal, where libm takes other paths), and NaN, go to expf itself.
 *
 * Whether the vector path is used is decided once: on a CPU with AVX2 and FMA, and only if
 * it agrees with expf, bit for bit, on a spread of values from -87 to 0 (another C library,
 * or another version of this one, then keeps the plain calls). Nothing is allocated. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "backend_cpu.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define EXP_X86 1
#include <immintrin.h>
#endif

/* expf(d) for d <= 0; below -104 the result rounds to 0, returned without the call (libm
 * takes a slow path to underflow). */
static inline float exp_nonpositive(float d)
{
    return d < -104.0f ? 0.0f : expf(d);
}

#ifdef EXP_X86
/* 2^(i / 32) rounded to double, less i << 47 (the index's bits, which the exponent's
 * shift adds back), as the bit patterns of doubles. */
static const long long exp_table[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

/* 32 / ln 2; 1.5 * 2^52 (adding it rounds to an integer); the cubic's coefficients of
 * r^3, r^2 and r (2^(r / 32) - 1 with r in [-1/2, 1/2]). */
#define INV_LN2_32 0x1.71547652b82fep+5
#define ROUND_SHIFT 0x1.8p+52
#define EXP_C0 0x1.c6af84b912394p-20
#define EXP_C1 0x1.ebfce50fac4f3p-13
#define EXP_C2 0x1.62e42ff0c52d6p-6

/* exp of four values in [-87, 0]. */
__attribute__((target("avx2,fma"))) static inline __m128 exp4(__m128 d)
{
    __m256d xd = _mm256_cvtps_pd(d), inv = _mm256_set1_pd(INV_LN2_32);
    __m256d shift = _mm256_set1_pd(ROUND_SHIFT);
    __m256d kd = _mm256_fmadd_pd(inv, xd, shift);
    __m256i ki = _mm256_castpd_si256(kd);
    kd = _mm256_sub_pd(kd, shift);
    __m256d r = _mm256_fmsub_pd(inv, xd, kd);
    __m256i idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    __m256i t = _mm256_i64gather_epi64(exp_table, idx, 8);
    t = _mm256_add_epi64(t, _mm256_slli_epi64(ki, 47));
    __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(EXP_C0), _mm256_set1_pd(EXP_C1));
    __m256d r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(EXP_C2), _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(z, r2, y);
    y = _mm256_mul_pd(y, _mm256_castsi256_pd(t));
    return _mm256_cvtpd_ps(y);
}

__attribute__((target("avx2,fma"))) static void exp_shifted_avx2(const float *x, float m,
                                                                   float *y, int64_t n)
{
    __m128 mv = _mm_set1_ps(m), lo = _mm_set1_ps(-87.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m128 d = _mm_sub_ps(_mm_loadu_ps(x + i), mv);
        int low = _mm_movemask_ps(_mm_cmp_ps(d, lo, _CMP_NGE_UQ)); /* below -87, or NaN */
        _mm_storeu_ps(y + i, exp4(_mm_max_ps(d, lo)));
        if (low) { /* redone by expf, from d (y may be x) */
            float dl[4];
            _mm_storeu_ps(dl, d);
            for (int k = 0; k < 4; k++)
                if (low >> k & 1)
                    y[i + k] = exp_nonpositive(dl[k]);
        }
    }
    for (; i < n; i++)
        y[i] = exp_nonpositive(x[i] - m);
}

/* The check: values from -87 to 0 in steps that reach every binade and many mantissas. */
__attribute__((target("avx2,fma"))) static bool agrees_with_libm(void)
{
    float x[4], y[4];
    for (unsigned bits = 0x80000000u; bits <= 0xc2ae0000u; bits += 0x10001u) {
        for (int k = 0; k < 4; k++) {
            unsigned b = bits + (unsigned)k;
            memcpy(&x[k], &b, sizeof b);
        }
        _mm_storeu_ps(y, exp4(_mm_loadu_ps(x)));
        for (int k = 0; k < 4; k++) {
            float want = expf(x[k]);
            if (memcmp(&y[k], &want, sizeof want) != 0)
                return false;
        }
    }
    return true;
}

static bool use_vector;
static pthread_once_t decided = PTHREAD_ONCE_INIT;

static void decide(void)
{
    __builtin_cpu_init();
    use_vector = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 agrees_with_libm();
}
#endif

bool ct_cpu_exp_vector(void)
{
#ifdef EXP_X86
    pthread_once(&decided, decide);
    return use_vector;
#else
    return false;
#endif
}

void ct_cpu_exp_shifted(const float *x, float m, float *y, int64_t n)
{
#ifdef EXP_X86
    if (ct_cpu_exp_vector()) {
        exp_shifted_avx2(x, m, y, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        y[i] = exp_nonpositive(x[i] - m);
}
