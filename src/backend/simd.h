/* simd.h - CT_CPU_CLONES marks a hot CPU loop to be compiled for AVX2 and AVX-512 as well as
 * the baseline, the version picked once at load time for the CPU at hand (GCC function
 * multiversioning). The build is ISO C (-std=c11: no contraction into fused multiply-add)
 * and never reassociates float sums, so every version computes the same bits. */
#ifndef CT_SIMD_H
#define CT_SIMD_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(CT_NO_CLONES)
#define CT_CPU_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define CT_CPU_CLONES
#endif

#endif
