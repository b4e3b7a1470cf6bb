/* rng.c - counter-based random numbers.
 *
 * Every value is a pure function of (key, counter) (ct_rng_u64, inline in rng.h): rounds
 * of the splitmix64 finalizer (a bijection on 64 bits with full avalanche) over the key and the mixed
 * counter. Only integer arithmetic decides the bits, so the streams are the same on every
 * platform and can be reproduced on another backend. */
#include <math.h>

#include "rng.h"

#define GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t mix64(uint64_t z) { return ct_rng_mix64(z); }

uint64_t ct_rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    /* Chaining through the bijection with a distinct offset per position keeps
     * (a, b, c) and any permutation of it apart. */
    uint64_t h = mix64(seed + GOLDEN);
    h = mix64(h ^ (a + 0x3c6ef372fe94f82bull));
    h = mix64(h ^ (b + 0xa54ff53a5f1d36f1ull));
    h = mix64(h ^ (c + 0x510e527fade682d1ull));
    return h;
}

uint64_t ct_rng_below(uint64_t key, uint64_t counter, uint64_t n)
{
    /* Accept x only above 2^64 mod n so every residue is equally likely. Retries draw
     * from derived keys at the same counter, so counters stay one per call. */
    uint64_t threshold = (0 - n) % n;
    uint64_t k = key;
    for (;;) {
        uint64_t x = ct_rng_u64(k, counter);
        if (x >= threshold)
            return x % n;
        k = mix64(k + GOLDEN);
    }
}

void ct_rng_permutation(uint64_t key, int64_t *perm, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t step = (uint64_t)(n - 1 - i); /* counters 0 .. n-2 */
        int64_t j = (int64_t)ct_rng_below(key, step, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
