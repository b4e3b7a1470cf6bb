/* conv_direct_impl.h - the direct convolution kernels, written once for a vector of VW
 * floats and included by backend_cpu_direct.c once per instruction set, with VW, ISA (a
 * name suffix), ISA_TARGET (GCC's target string) and ISA_SET1 (the intrinsic that
 * broadcasts a float) defined. Not a header of its own.
 *
 * The input is zero-padded first (cd_pad), so every window lies inside it: along a kernel
 * row, the kw taps times c channels of a window are kw*c consecutive floats of the padded
 * input, and kw*c consecutive rows of the kernel. Each output value is a sum over kernel
 * rows in order, then those kw*c values in order, kept in a register from start to end: the
 * order depends on the geometry alone, never on the thread count or the tiling. */

#define CD_DO_PRAGMA(x) _Pragma(#x)
#define CD_TARGET(t) CD_DO_PRAGMA(GCC target(t))
#pragma GCC push_options
CD_TARGET(ISA_TARGET)
/* Multiply-adds become fused ones here (the rest of the build keeps ISO C's no-contraction
 * rule): each tile runs at the machine's fused multiply-add rate. */
#pragma GCC optimize("fp-contract=fast")

#define CD_CAT_(a, b) a##b
#define CD_CAT(a, b) CD_CAT_(a, b)
#define VEC CD_CAT(cd_vec_, ISA)
#define FN(name) CD_CAT(name##_, ISA)

/* Unaligned, may alias the float arrays it is read from. */
typedef float VEC __attribute__((vector_size(VW * 4), aligned(4), may_alias));

#define CD_INLINE static inline __attribute__((always_inline))
/* The register tiles are arrays indexed by loops of constant length: unrolled whole, they
 * become registers. */
#define CD_UNROLL _Pragma("GCC unroll 16")

CD_INLINE VEC FN(vload)(const float *p) { return *(const VEC *)p; }
CD_INLINE void FN(vstore)(float *p, VEC v) { *(VEC *)p = v; }
CD_INLINE VEC FN(vbcast)(float s) { return (VEC)ISA_SET1(s); }

/* R consecutive outputs of one row, NV vectors of filters: xrow is the padded input at the
 * tile's first window (kernel row 0), k the kernel at the tile's first filter, y the output
 * of the tile's first pixel and filter. */
CD_INLINE void FN(fwd_tile)(const float *xrow, int64_t row_stride, int64_t pix_stride,
                            int64_t kh, int64_t m_len, const float *k, int64_t f, float *y,
                            const int R, const int NV)
{
    VEC acc[12][4];
    CD_UNROLL
    for (int r = 0; r < R; r++)
        CD_UNROLL
        for (int v = 0; v < NV; v++)
            acc[r][v] = (VEC){0};
    for (int64_t i = 0; i < kh; i++) {
        const float *xi = xrow + i * row_stride, *kp = k + i * m_len * f;
        for (int64_t m = 0; m < m_len; m++, kp += f) {
            VEC kv[4];
            CD_UNROLL
            for (int v = 0; v < NV; v++)
                kv[v] = FN(vload)(kp + v * VW);
            CD_UNROLL
            for (int r = 0; r < R; r++) {
                const VEC b = FN(vbcast)(xi[r * pix_stride + m]);
                CD_UNROLL
                for (int v = 0; v < NV; v++)
                    acc[r][v] += b * kv[v];
            }
        }
    }
    CD_UNROLL
    for (int r = 0; r < R; r++)
        CD_UNROLL
        for (int v = 0; v < NV; v++)
            FN(vstore)(y + r * f + v * VW, acc[r][v]);
}

#define CD_FWD_CASE(r)                                                                      \
    case r:                                                                                 \
        FN(fwd_tile)(xrow, row_stride, pix_stride, kh, m_len, k, f, y, r, NV);               \
        return;

CD_INLINE void FN(fwd_tile_nv)(const float *xrow, int64_t row_stride, int64_t pix_stride,
                               int64_t kh, int64_t m_len, const float *k, int64_t f, float *y,
                               int R, const int NV)
{
    switch (R) {
        CD_FWD_CASE(1) CD_FWD_CASE(2) CD_FWD_CASE(3) CD_FWD_CASE(4) CD_FWD_CASE(5)
        CD_FWD_CASE(6) CD_FWD_CASE(7) CD_FWD_CASE(8)
#if VW == 16
        CD_FWD_CASE(9) CD_FWD_CASE(10) CD_FWD_CASE(11) CD_FWD_CASE(12)
#endif
    default:
        return;
    }
}

/* Pixels per tile for NV vectors of filters: as many accumulators as leave registers for
 * the kernel vectors and the broadcast (32 registers with AVX-512, 16 with AVX2). */
static int FN(fwd_rmax)(int nv)
{
#if VW == 16
    return nv == 1 ? 12 : nv == 2 ? 8 : 5;
#else
    return nv == 1 ? 8 : 6;
#endif
}

/* One sample: y (oh x ow x f) from its padded input xpad (cd_pad). */
static void FN(cd_forward)(const cd_geom *g, const float *xpad, const float *k, float *y)
{
    const int64_t wp = (g->ow - 1) * g->sw + g->kw, row_stride = wp * g->c;
    const int64_t pix_stride = g->sw * g->c, m_len = g->kw * g->c, f = g->f;
    for (int64_t f0 = 0; f0 < f;) {
        const int nv = cd_vectors(f - f0, VW, VW == 16 ? 4 : 2);
        /* Tiles of even size: a short last tile would run at the latency of too few
         * accumulators. */
        const int64_t rmax = FN(fwd_rmax)(nv), tiles = (g->ow + rmax - 1) / rmax;
        for (int64_t oh = 0; oh < g->oh; oh++) {
            const float *xrow = xpad + oh * g->sh * row_stride;
            for (int64_t t = 0, ow = 0; t < tiles; t++) {
                const int64_t end = g->ow * (t + 1) / tiles;
                const float *xt = xrow + ow * pix_stride;
                float *yt = y + (oh * g->ow + ow) * f + f0;
                if (nv == 4)
                    FN(fwd_tile_nv)(xt, row_stride, pix_stride, g->kh, m_len, k + f0, f, yt,
                                    (int)(end - ow), 4);
                else if (nv == 2)
                    FN(fwd_tile_nv)(xt, row_stride, pix_stride, g->kh, m_len, k + f0, f, yt,
                                    (int)(end - ow), 2);
                else
                    FN(fwd_tile_nv)(xt, row_stride, pix_stride, g->kh, m_len, k + f0, f, yt,
                                    (int)(end - ow), 1);
                ow = end;
            }
        }
        f0 += nv * VW;
    }
}

/* The kernel gradient of kernel row i, values m0 .. m0 + CB - 1 of the row's kw*c, filters
 * f0 .. f0 + NV*VW - 1, summed over `rows` padded samples and their dy: written, not added.
 * With few accumulators (CB*NV small), PH sets of them take turns over the pixels and are
 * added at the end in order, so the adds do not wait on each other. */
CD_INLINE void FN(dk_tile)(const cd_geom *g, const float *xpad, const float *dy, int64_t rows,
                           int64_t i, int64_t m0, int64_t f0, float *dk, const int CB,
                           const int NV, const int PH)
{
    const int64_t wp = (g->ow - 1) * g->sw + g->kw, hp = (g->oh - 1) * g->sh + g->kh;
    const int64_t c = g->c, f = g->f, pix_stride = g->sw * c, m_len = g->kw * c;
    VEC acc[4][12][4];
    CD_UNROLL
    for (int p = 0; p < PH; p++)
        CD_UNROLL
        for (int q = 0; q < CB; q++)
            CD_UNROLL
            for (int v = 0; v < NV; v++)
                acc[p][q][v] = (VEC){0};
    for (int64_t s = 0; s < rows; s++) {
        const float *xs = xpad + s * hp * wp * c, *ds = dy + s * g->oh * g->ow * f;
        for (int64_t oh = 0; oh < g->oh; oh++) {
            const float *xp = xs + (oh * g->sh + i) * wp * c + m0;
            const float *dp = ds + oh * g->ow * f + f0;
            int64_t ow = 0;
            for (; ow + PH <= g->ow; ow += PH, xp += PH * pix_stride, dp += PH * f) {
                CD_UNROLL
                for (int p = 0; p < PH; p++) {
                    VEC d[4];
                    CD_UNROLL
                    for (int v = 0; v < NV; v++)
                        d[v] = FN(vload)(dp + p * f + v * VW);
                    CD_UNROLL
                    for (int q = 0; q < CB; q++) {
                        const VEC b = FN(vbcast)(xp[p * pix_stride + q]);
                        CD_UNROLL
                        for (int v = 0; v < NV; v++)
                            acc[p][q][v] += b * d[v];
                    }
                }
            }
            for (; ow < g->ow; ow++, xp += pix_stride, dp += f) {
                VEC d[4];
                CD_UNROLL
                for (int v = 0; v < NV; v++)
                    d[v] = FN(vload)(dp + v * VW);
                CD_UNROLL
                for (int q = 0; q < CB; q++) {
                    const VEC b = FN(vbcast)(xp[q]);
                    CD_UNROLL
                    for (int v = 0; v < NV; v++)
                        acc[0][q][v] += b * d[v];
                }
            }
        }
    }
    float *kp = dk + (i * m_len + m0) * f + f0;
    CD_UNROLL
    for (int q = 0; q < CB; q++)
        CD_UNROLL
        for (int v = 0; v < NV; v++) {
            VEC sum = acc[0][q][v];
            CD_UNROLL
            for (int p = 1; p < PH; p++)
                sum += acc[p][q][v];
            FN(vstore)(kp + q * f + v * VW, sum);
        }
}

/* CB from 1 to 12; PH from the accumulators per phase: at least 8 in flight. */
#define CD_DK_CASE(cb)                                                                      \
    case cb:                                                                                \
        if ((cb) * NV >= 8)                                                                 \
            FN(dk_tile)(g, xpad, dy, rows, i, m0, f0, dk, cb, NV, 1);                       \
        else if ((cb) * NV >= 4)                                                            \
            FN(dk_tile)(g, xpad, dy, rows, i, m0, f0, dk, cb, NV, 2);                       \
        else                                                                                \
            FN(dk_tile)(g, xpad, dy, rows, i, m0, f0, dk, cb, NV, 4);                       \
        return;

CD_INLINE void FN(dk_tile_nv)(const cd_geom *g, const float *xpad, const float *dy,
                              int64_t rows, int64_t i, int64_t m0, int64_t f0, float *dk,
                              int CB, const int NV)
{
    switch (CB) {
        CD_DK_CASE(1) CD_DK_CASE(2) CD_DK_CASE(3) CD_DK_CASE(4) CD_DK_CASE(5) CD_DK_CASE(6)
        CD_DK_CASE(7) CD_DK_CASE(8) CD_DK_CASE(9) CD_DK_CASE(10) CD_DK_CASE(11)
        CD_DK_CASE(12)
    default:
        return;
    }
}

/* Values of a kernel row per tile for NV vectors of filters, as fwd_rmax. */
static int FN(dk_cbmax)(int nv)
{
#if VW == 16
    return nv == 1 ? 12 : nv == 2 ? 12 : 5;
#else
    return nv == 1 ? 12 : 6;
#endif
}

/* The whole kernel gradient of `rows` padded samples, written to dk. */
static void FN(cd_kernel_grad)(const cd_geom *g, const float *xpad, const float *dy,
                               int64_t rows, float *dk)
{
    const int64_t m_len = g->kw * g->c;
    for (int64_t f0 = 0; f0 < g->f;) {
        const int nv = cd_vectors(g->f - f0, VW, VW == 16 ? 4 : 2), cbmax = FN(dk_cbmax)(nv);
        /* Blocks of even size, as the forward's tiles. */
        const int64_t blocks = (m_len + cbmax - 1) / cbmax;
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t b = 0, m0 = 0; b < blocks; b++) {
                const int64_t end = m_len * (b + 1) / blocks;
                if (nv == 4)
                    FN(dk_tile_nv)(g, xpad, dy, rows, i, m0, f0, dk, (int)(end - m0), 4);
                else if (nv == 2)
                    FN(dk_tile_nv)(g, xpad, dy, rows, i, m0, f0, dk, (int)(end - m0), 2);
                else
                    FN(dk_tile_nv)(g, xpad, dy, rows, i, m0, f0, dk, (int)(end - m0), 1);
                m0 = end;
            }
        f0 += nv * VW;
    }
}

#include "conv_winograd_impl.h"

#undef CD_FWD_CASE
#undef CD_DK_CASE
#undef CD_INLINE
#undef CD_UNROLL
#undef FN
#undef VEC
#undef CD_CAT
#undef CD_CAT_
#undef CD_TARGET
#undef CD_DO_PRAGMA

#pragma GCC pop_options
