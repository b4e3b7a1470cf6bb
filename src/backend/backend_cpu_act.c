/* backend_cpu_act.c - y = f(x) over n values for the activations fastmath.h computes, each
 * in a function of its own with restrict pointers (and an in-place twin, as x == y is
 * allowed), which backend_cpu.c's activation ops call. GCC vectorises these loops of
 * selects only without partial redundancy elimination and jump threading (they turn the
 * selects into branches), so this file turns both off; the pragma must repeat the build's
 * -fno-trapping-math and -fno-math-errno, which it would otherwise reset. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-pre", "no-thread-jumps", "no-trapping-math", "no-math-errno")
#endif

#include "backend_cpu.h"
#include "fastmath.h"
#include "simd.h"

#define CT_MAP(name, f)                                                                     \
    CT_CPU_CLONES static void name##_apart(const float *restrict x,        \
                                                           float *restrict y, int64_t n)   \
    {                                                                                       \
        for (int64_t i = 0; i < n; i++)                                                     \
            y[i] = f(x[i]);                                                                 \
    }                                                                                       \
    CT_CPU_CLONES static void name##_inplace(float *restrict y, int64_t n)  \
    {                                                                                       \
        for (int64_t i = 0; i < n; i++)                                                     \
            y[i] = f(y[i]);                                                                 \
    }                                                                                       \
    void name(const float *x, float *y, int64_t n)                                          \
    {                                                                                       \
        if (x == y)                                                                         \
            name##_inplace(y, n);                                                           \
        else                                                                                \
            name##_apart(x, y, n);                                                          \
    }

CT_MAP(ct_cpu_map_sigmoid, ct_sigmoidf)
CT_MAP(ct_cpu_map_tanh, ct_tanhf)
CT_MAP(ct_cpu_map_gelu, ct_geluf)

/* dx = dy gelu'(x) from x and y = gelu(x) (dx == dy allowed). */
CT_CPU_CLONES static void gelu_back_apart(const float *restrict x, const float *restrict y,
                                          const float *restrict dy, float *restrict dx,
                                          int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * ct_gelu_grad_from_yf(x[i], y[i]);
}

CT_CPU_CLONES static void gelu_back_inplace(const float *restrict x, const float *restrict y,
                                            float *restrict d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[i] = d[i] * ct_gelu_grad_from_yf(x[i], y[i]);
}

void ct_cpu_gelu_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n)
{
    if (dx == dy)
        gelu_back_inplace(x, y, dx, n);
    else
        gelu_back_apart(x, y, dy, dx, n);
}
