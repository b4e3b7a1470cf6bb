/* rng.h - counter-based random numbers. A value depends only on (key, counter), so
 * initializers, dropout masks and shuffles are reproducible from the seed alone and can be
 * drawn identically on any backend or after a resume. No state to allocate or free. */
#ifndef CT_RNG_H
#define CT_RNG_H

#include <math.h>
#include <stdint.h>

/* The inline generators compile for a GPU too (src/backend/cuda/), so both backends draw the same
 * bits from one definition. */
#ifdef __CUDACC__
#define CT_RNG_INLINE static __host__ __device__ __forceinline__
#else
#define CT_RNG_INLINE static inline
#endif

/* Mixes a seed and up to three stream identifiers (e.g. purpose, epoch, layer) into a key. */
uint64_t ct_rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
/* splitmix64's output function: a bijection in which every input bit affects every
 * output bit. Inline, with the two below, so per-element loops (dropout masks) need no
 * call per value. */
CT_RNG_INLINE uint64_t ct_rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* 64 random bits for (key, counter). */
CT_RNG_INLINE uint64_t ct_rng_u64(uint64_t key, uint64_t counter)
{
    uint64_t x = ct_rng_mix64(key ^ ct_rng_mix64(counter * 0x9e3779b97f4a7c15ull +
                                                 0x6a09e667f3bcc909ull));
    return ct_rng_mix64(x + key);
}
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
CT_RNG_INLINE float ct_rng_uniform(uint64_t key, uint64_t counter)
{
    return (float)(ct_rng_u64(key, counter) >> 40) * (1.0f / 16777216.0f);
}
/* Standard normal (Box-Muller over counters 2*counter and 2*counter+1). */
CT_RNG_INLINE float ct_rng_normal(uint64_t key, uint64_t counter)
{
    /* 53-bit uniforms keep the tails: u1 in (0, 1] so log never sees 0. */
    double u1 = (double)((ct_rng_u64(key, 2 * counter) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double u2 = (double)(ct_rng_u64(key, 2 * counter + 1) >> 11) * (1.0 / 9007199254740992.0);
    double r = sqrt(-2.0 * log(u1));
    return (float)(r * cos(6.283185307179586476925 * u2));
}
/* Uniform integer in [0, n) without modulo bias. n > 0. */
uint64_t ct_rng_below(uint64_t key, uint64_t counter, uint64_t n);
/* Fisher-Yates permutation of perm[0..n) (perm is filled with 0..n-1 first). */
void ct_rng_permutation(uint64_t key, int64_t *perm, int64_t n);

/* Stream identifiers for ct_rng_key's first argument after the seed. */
enum { CT_RNG_INIT = 1, CT_RNG_DROPOUT = 2, CT_RNG_SHUFFLE = 3, CT_RNG_SPLIT = 4, CT_RNG_NOISE = 5,
       CT_RNG_AUGMENT = 6 };

#endif
