/* backend_cpu_direct.c - direct convolution: each output tile is a set of vector registers
 * that the taps and channels are multiplied into, with no patch matrix in between. A
 * convolution with few channels spends most of an im2col + GEMM step copying patches and
 * in GEMMs too thin to run at speed; here the input is read in place. The kernels exist for
 * AVX2 with FMA and for AVX-512 (conv_direct_impl.h, compiled once for each); on other CPUs
 * ct_cpu_direct_width() is 0 and convolutions take im2col + GEMM. */
#include <stdbool.h>
#include <string.h>

#include "backend_cpu_direct.h"

/* Winograd's tiles of one sample, and positions per tile. */
static inline int64_t cd_wino_tiles(const cd_geom *g)
{
    return ((g->oh + g->wm - 1) / g->wm) * ((g->ow + g->wm - 1) / g->wm);
}
static inline int cd_wino_positions(const cd_geom *g) { return (int)((g->wm + 2) * (g->wm + 2)); }

/* Vectors of filters per tile: the largest power of two up to maxnv that fits rem. */
static inline __attribute__((unused)) int cd_vectors(int64_t rem, int vw, int maxnv)
{
    int nv = 1;
    while (nv * 2 <= maxnv && (nv * 2) * vw <= rem)
        nv *= 2;
    return nv;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CD_X86 1
#include <immintrin.h>

#define VW 8
#define ISA avx2
#define ISA_TARGET "avx2,fma"
#define ISA_SET1 _mm256_set1_ps
#include "conv_direct_impl.h"
#undef VW
#undef ISA
#undef ISA_TARGET
#undef ISA_SET1

#define VW 16
#define ISA avx512
#define ISA_TARGET "avx512f"
#define ISA_SET1 _mm512_set1_ps
#include "conv_direct_impl.h"
#undef VW
#undef ISA
#undef ISA_TARGET
#undef ISA_SET1
#endif

/* What the CPU runs (-1: not asked yet), and the width in use (tests may lower it). */
#ifdef CD_X86
static int supported = -1;
#endif
static int in_use = -1;

static int cpu_width(void)
{
#ifdef CD_X86
    if (supported < 0) {
        __builtin_cpu_init();
        supported = __builtin_cpu_supports("avx512f")                                     ? 16
                    : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 8
                                                                                          : 0;
    }
    return supported;
#else
    return 0;
#endif
}

int ct_cpu_direct_width(void)
{
    if (in_use < 0)
        in_use = cpu_width();
    return in_use;
}

int ct_cpu_direct_use_width(int width)
{
    int cpu = cpu_width();
    if (width == 0 || width == cpu || (width == 8 && cpu == 16))
        in_use = width;
    return ct_cpu_direct_width();
}

int64_t ct_cpu_direct_pad_floats(const cd_geom *g)
{
    return ((g->oh - 1) * g->sh + g->kh) * ((g->ow - 1) * g->sw + g->kw) * g->c;
}

/* x into a zero buffer of hp x wp x c, input row 0 at row pt and column 0 at pl (either
 * may be negative: the input's first rows or columns are then left out, as are any past
 * the buffer's end). */
static void pad_to(const cd_geom *g, int64_t hp, int64_t wp, const float *x, float *xpad)
{
    const int64_t c = g->c;
    int64_t d0 = g->pl > 0 ? g->pl : 0, d1 = g->pl + g->w < wp ? g->pl + g->w : wp;
    if (d1 < d0)
        d1 = d0;
    for (int64_t r = 0; r < hp; r++, xpad += wp * c) {
        const int64_t src = r - g->pt;
        if (src < 0 || src >= g->h) {
            memset(xpad, 0, (size_t)(wp * c) * sizeof(float));
            continue;
        }
        memset(xpad, 0, (size_t)(d0 * c) * sizeof(float));
        memcpy(xpad + d0 * c, x + (src * g->w + d0 - g->pl) * c, (size_t)((d1 - d0) * c) * sizeof(float));
        memset(xpad + d1 * c, 0, (size_t)((wp - d1) * c) * sizeof(float));
    }
}

void ct_cpu_direct_pad(const cd_geom *g, const float *x, float *xpad)
{
    pad_to(g, (g->oh - 1) * g->sh + g->kh, (g->ow - 1) * g->sw + g->kw, x, xpad);
}

/* ---- Winograd F(2x2, 3x3) ---- */

int64_t ct_cpu_wino_positions(const cd_geom *g) { return cd_wino_positions(g); }

static int64_t wino_side(int64_t out, int64_t m) { return m * ((out + m - 1) / m) + 2; }

int64_t ct_cpu_wino_pad_floats(const cd_geom *g)
{
    return wino_side(g->oh, g->wm) * wino_side(g->ow, g->wm) * g->c;
}

void ct_cpu_wino_pad(const cd_geom *g, const float *x, float *xpad)
{
    pad_to(g, wino_side(g->oh, g->wm), wino_side(g->ow, g->wm), x, xpad);
}

int64_t ct_cpu_wino_work_floats(const cd_geom *g)
{
    return cd_wino_positions(g) * cd_wino_tiles(g) * (g->c + g->f);
}

#ifdef CD_X86
#define CD_DISPATCH(name, ...)                                                              \
    do {                                                                                    \
        if (ct_cpu_direct_width() == 16)                                                    \
            name##_avx512(__VA_ARGS__);                                                     \
        else if (ct_cpu_direct_width() == 8)                                                \
            name##_avx2(__VA_ARGS__);                                                       \
    } while (0)
#else
/* Without the kernels nothing runs (ct_cpu_direct_width() is 0); the arguments are still
 * used, so each entry point compiles cleanly. */
static inline void cd_none(int unused, ...) { (void)unused; }
#define CD_DISPATCH(name, ...) cd_none(0, __VA_ARGS__)
#endif

void ct_cpu_wino_kernel(const cd_geom *g, const float *k, float *u)
{
    CD_DISPATCH(wino_kernel, g, k, u);
}

void ct_cpu_wino_forward(const cd_geom *g, const float *xpad, const float *u, float *y,
                         float *work)
{
    CD_DISPATCH(cd_wino_forward, g, xpad, u, y, work);
}

void ct_cpu_wino_kernel_grad_add(const cd_geom *g, const float *xpad, const float *dy,
                                 float *du, float *work)
{
    CD_DISPATCH(cd_wino_kernel_grad_add, g, xpad, dy, du, work);
}

void ct_cpu_wino_kernel_grad_finish(const cd_geom *g, const float *du, float *dk)
{
    CD_DISPATCH(cd_wino_kernel_grad_finish, g, du, dk);
}

/* ---- direct ---- */

void ct_cpu_direct_forward(const cd_geom *g, const float *xpad, const float *k, float *y)
{
    CD_DISPATCH(cd_forward, g, xpad, k, y);
}

void ct_cpu_direct_kernel_grad(const cd_geom *g, const float *xpad, const float *dy,
                               int64_t rows, float *dk)
{
    CD_DISPATCH(cd_kernel_grad, g, xpad, dy, rows, dk);
}
