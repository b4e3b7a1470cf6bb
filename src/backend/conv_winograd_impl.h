/* conv_winograd_impl.h - Winograd F(m x m, 3x3), m = 2 or 4 (cd_geom.wm), for 3x3
 * stride-1 convolutions, included by conv_direct_impl.h for each instruction set (its VEC,
 * FN, vload, vstore and fwd_tile).
 *
 * The output is cut into m x m tiles, each read from an a x a tile of the padded input
 * (a = m + 2). With the transforms B (input), G (kernel) and A (output) of F(m, 3),
 *   y_tile = A^T [ sum over channels (G k G^T) (.) (B^T x_tile B) ] A,
 * a*a products per channel and filter give m*m outputs where a direct convolution takes
 * 9*m*m: 16 for 4 outputs (F(2, 3)), 36 for 16 (F(4, 3)). The sum over channels is, for
 * each of the a*a positions of a tile, a matrix product of (tiles x channels) by
 * (channels x filters), run by fwd_tile. Every transform works on a vector of VW channels
 * or filters at a time; channels and filters are whole vectors. F(4, 3)'s points (0, +-1,
 * +-2) make its transforms scale values by up to 8 and 1/24, so its results round more
 * than F(2, 3)'s. */

/* The 1-D transforms, applied along columns and then rows. M: 2 or 4. */
CD_INLINE void FN(w_in1)(const VEC *d, VEC *t, const int M)
{
    if (M == 2) {
        t[0] = d[0] - d[2];
        t[1] = d[1] + d[2];
        t[2] = d[2] - d[1];
        t[3] = d[1] - d[3];
        return;
    }
    const VEC c2 = FN(vbcast)(2.0f), c4 = FN(vbcast)(4.0f), c5 = FN(vbcast)(5.0f);
    t[0] = c4 * d[0] - c5 * d[2] + d[4];
    t[1] = (d[3] + d[4]) - c4 * (d[1] + d[2]);
    t[2] = (d[4] - d[3]) + c4 * (d[1] - d[2]);
    t[3] = (d[4] - d[2]) + c2 * (d[3] - d[1]);
    t[4] = (d[4] - d[2]) - c2 * (d[3] - d[1]);
    t[5] = c4 * d[1] - c5 * d[3] + d[5];
}

CD_INLINE void FN(w_out1)(const VEC *q, VEC *y, const int M)
{
    if (M == 2) {
        y[0] = q[0] + q[1] + q[2];
        y[1] = q[1] - q[2] - q[3];
        return;
    }
    const VEC c2 = FN(vbcast)(2.0f), c4 = FN(vbcast)(4.0f), c8 = FN(vbcast)(8.0f);
    const VEC sp = q[1] + q[2], sm = q[1] - q[2], tp = q[3] + q[4], tm = q[3] - q[4];
    y[0] = q[0] + sp + tp;
    y[1] = sm + c2 * tm;
    y[2] = sp + c4 * tp;
    y[3] = sm + c8 * tm + q[5];
}

CD_INLINE void FN(w_ker1)(const VEC *w, VEC *h, const int M)
{
    if (M == 2) {
        const VEC half = FN(vbcast)(0.5f);
        h[0] = w[0];
        h[1] = half * (w[0] + w[1] + w[2]);
        h[2] = half * (w[0] - w[1] + w[2]);
        h[3] = w[2];
        return;
    }
    const VEC q = FN(vbcast)(0.25f), s6 = FN(vbcast)(1.0f / 6.0f);
    const VEC s12 = FN(vbcast)(1.0f / 12.0f), s24 = FN(vbcast)(1.0f / 24.0f);
    h[0] = q * w[0];
    h[1] = (VEC){0} - s6 * (w[0] + w[1] + w[2]);
    h[2] = (VEC){0} - s6 * (w[0] - w[1] + w[2]);
    h[3] = s24 * w[0] + s12 * w[1] + s6 * w[2];
    h[4] = s24 * w[0] - s12 * w[1] + s6 * w[2];
    h[5] = w[2];
}

/* The adjoint of w_out1: m values in, a out. */
CD_INLINE void FN(w_out1_adj)(const VEC *r, VEC *e, const int M)
{
    if (M == 2) {
        e[0] = r[0];
        e[1] = r[0] + r[1];
        e[2] = r[0] - r[1];
        e[3] = (VEC){0} - r[1];
        return;
    }
    const VEC c2 = FN(vbcast)(2.0f), c4 = FN(vbcast)(4.0f), c8 = FN(vbcast)(8.0f);
    const VEC ev = r[0] + c4 * r[2], od = r[1] + r[3];
    const VEC ev2 = r[0] + r[2], od2 = c2 * r[1] + c8 * r[3];
    e[0] = r[0];
    e[1] = ev2 + od;
    e[2] = ev2 - od;
    e[3] = ev + od2;
    e[4] = ev - od2;
    e[5] = r[3];
}

/* The adjoint of w_ker1: a values in, 3 out. */
CD_INLINE void FN(w_ker1_adj)(const VEC *q, VEC *h, const int M)
{
    if (M == 2) {
        const VEC half = FN(vbcast)(0.5f);
        h[0] = q[0] + half * (q[1] + q[2]);
        h[1] = half * (q[1] - q[2]);
        h[2] = half * (q[1] + q[2]) + q[3];
        return;
    }
    const VEC q4 = FN(vbcast)(0.25f), s6 = FN(vbcast)(1.0f / 6.0f);
    const VEC s12 = FN(vbcast)(1.0f / 12.0f), s24 = FN(vbcast)(1.0f / 24.0f);
    h[0] = q4 * q[0] - s6 * (q[1] + q[2]) + s24 * (q[3] + q[4]);
    h[1] = s6 * (q[2] - q[1]) + s12 * (q[3] - q[4]);
    h[2] = s6 * (q[3] + q[4] - q[1] - q[2]) + q[5];
}

/* V[pos][t][c] = (B^T d B)[pos] for every tile t of one padded sample. */
CD_INLINE void FN(wino_input_m)(const cd_geom *g, const float *xpad, float *v, const int M)
{
    const int A = M + 2;
    const int64_t th = (g->oh + M - 1) / M, tw = (g->ow + M - 1) / M, t_all = th * tw;
    const int64_t c = g->c, wp = M * tw + 2, plane = t_all * c;
    for (int64_t a0 = 0, t = 0; a0 < th; a0++)
        for (int64_t b0 = 0; b0 < tw; b0++, t++) {
            const float *x0 = xpad + (M * a0 * wp + M * b0) * c;
            for (int64_t c0 = 0; c0 < c; c0 += VW) {
                VEC d[6][6], u[6][6], col[6], out[6];
                CD_UNROLL
                for (int a = 0; a < A; a++)
                    CD_UNROLL
                    for (int b = 0; b < A; b++)
                        d[a][b] = FN(vload)(x0 + (a * wp + b) * c + c0);
                CD_UNROLL
                for (int b = 0; b < A; b++) {
                    CD_UNROLL
                    for (int a = 0; a < A; a++)
                        col[a] = d[a][b];
                    FN(w_in1)(col, out, M);
                    CD_UNROLL
                    for (int a = 0; a < A; a++)
                        u[a][b] = out[a];
                }
                float *o = v + t * c + c0;
                CD_UNROLL
                for (int a = 0; a < A; a++) {
                    FN(w_in1)(u[a], out, M);
                    CD_UNROLL
                    for (int b = 0; b < A; b++)
                        FN(vstore)(o + (A * a + b) * plane, out[b]);
                }
            }
        }
}

/* y (oh x ow x f) from M[pos][t][f]: A^T M A per tile, the parts past the edge dropped. */
CD_INLINE void FN(wino_output_m)(const cd_geom *g, const float *m, float *y, const int M)
{
    const int A = M + 2;
    const int64_t th = (g->oh + M - 1) / M, tw = (g->ow + M - 1) / M, t_all = th * tw;
    const int64_t f = g->f, plane = t_all * f;
    for (int64_t a0 = 0, t = 0; a0 < th; a0++)
        for (int64_t b0 = 0; b0 < tw; b0++, t++) {
            const int64_t rows = g->oh - M * a0 < M ? g->oh - M * a0 : M;
            const int64_t cols = g->ow - M * b0 < M ? g->ow - M * b0 : M;
            float *y0 = y + (M * a0 * g->ow + M * b0) * f;
            for (int64_t f0 = 0; f0 < f; f0 += VW) {
                VEC q[6][6], s[4][6], col[6], out[4];
                CD_UNROLL
                for (int p = 0; p < A * A; p++)
                    q[p / A][p % A] = FN(vload)(m + p * plane + t * f + f0);
                CD_UNROLL
                for (int b = 0; b < A; b++) {
                    CD_UNROLL
                    for (int a = 0; a < A; a++)
                        col[a] = q[a][b];
                    FN(w_out1)(col, out, M);
                    CD_UNROLL
                    for (int a = 0; a < M; a++)
                        s[a][b] = out[a];
                }
                for (int a = 0; a < rows; a++) {
                    FN(w_out1)(s[a], out, M);
                    float *ya = y0 + a * g->ow * f + f0;
                    for (int b = 0; b < cols; b++)
                        FN(vstore)(ya + b * f, out[b]);
                }
            }
        }
}

/* U[pos][c][f] = (G k G^T)[pos] for the kernel k (3 x 3 x c x f). */
CD_INLINE void FN(wino_kernel_m)(const cd_geom *g, const float *k, float *u, const int M)
{
    const int A = M + 2;
    const int64_t c = g->c, f = g->f, cf = c * f;
    for (int64_t e = 0; e < cf; e += VW) {
        VEC w[3][3], h[6][3], col[3], out[6];
        CD_UNROLL
        for (int i = 0; i < 3; i++)
            CD_UNROLL
            for (int j = 0; j < 3; j++)
                w[i][j] = FN(vload)(k + (i * 3 + j) * cf + e);
        CD_UNROLL
        for (int j = 0; j < 3; j++) {
            CD_UNROLL
            for (int i = 0; i < 3; i++)
                col[i] = w[i][j];
            FN(w_ker1)(col, out, M);
            CD_UNROLL
            for (int a = 0; a < A; a++)
                h[a][j] = out[a];
        }
        CD_UNROLL
        for (int a = 0; a < A; a++) {
            FN(w_ker1)(h[a], out, M);
            CD_UNROLL
            for (int b = 0; b < A; b++)
                FN(vstore)(u + (A * a + b) * cf + e, out[b]);
        }
    }
}

static void FN(wino_input)(const cd_geom *g, const float *xpad, float *v)
{
    if (g->wm == 4)
        FN(wino_input_m)(g, xpad, v, 4);
    else
        FN(wino_input_m)(g, xpad, v, 2);
}

static void FN(wino_output)(const cd_geom *g, const float *m, float *y)
{
    if (g->wm == 4)
        FN(wino_output_m)(g, m, y, 4);
    else
        FN(wino_output_m)(g, m, y, 2);
}

static void FN(wino_kernel)(const cd_geom *g, const float *k, float *u)
{
    if (g->wm == 4)
        FN(wino_kernel_m)(g, k, u, 4);
    else
        FN(wino_kernel_m)(g, k, u, 2);
}

/* The a*a products of one sample: M[pos] = V[pos] U[pos], tiles of R tiles x NV vectors. */
static void FN(wino_products)(const cd_geom *g, const float *v, const float *u, float *m)
{
    const int64_t t_all = cd_wino_tiles(g), c = g->c, f = g->f;
    for (int p = 0; p < cd_wino_positions(g); p++) {
        const float *vp = v + p * t_all * c, *up = u + p * c * f;
        float *mp = m + p * t_all * f;
        for (int64_t f0 = 0; f0 < f;) {
            const int nv = cd_vectors(f - f0, VW, VW == 16 ? 4 : 2);
            const int64_t rmax = FN(fwd_rmax)(nv), tiles = (t_all + rmax - 1) / rmax;
            for (int64_t b = 0, t = 0; b < tiles; b++) {
                const int64_t end = t_all * (b + 1) / tiles;
                if (nv == 4)
                    FN(fwd_tile_nv)(vp + t * c, 0, c, 1, c, up + f0, f, mp + t * f + f0,
                                    (int)(end - t), 4);
                else if (nv == 2)
                    FN(fwd_tile_nv)(vp + t * c, 0, c, 1, c, up + f0, f, mp + t * f + f0,
                                    (int)(end - t), 2);
                else
                    FN(fwd_tile_nv)(vp + t * c, 0, c, 1, c, up + f0, f, mp + t * f + f0,
                                    (int)(end - t), 1);
                t = end;
            }
            f0 += nv * VW;
        }
    }
}

/* One padded sample's output: y from xpad and the transformed kernel u; work holds
 * a*a * tiles * (c + f) floats. */
static void FN(cd_wino_forward)(const cd_geom *g, const float *xpad, const float *u, float *y,
                                float *work)
{
    float *v = work, *m = work + cd_wino_positions(g) * cd_wino_tiles(g) * g->c;
    FN(wino_input)(g, xpad, v);
    FN(wino_products)(g, v, u, m);
    FN(wino_output)(g, m, y);
}

/* dM[pos][t][f] = (A dy_tile A^T)[pos], the adjoint of wino_output, zeros past the edge. */
CD_INLINE void FN(wino_output_adjoint_m)(const cd_geom *g, const float *dy, float *dm,
                                         const int M)
{
    const int A = M + 2;
    const int64_t th = (g->oh + M - 1) / M, tw = (g->ow + M - 1) / M, t_all = th * tw;
    const int64_t f = g->f, plane = t_all * f;
    for (int64_t a0 = 0, t = 0; a0 < th; a0++)
        for (int64_t b0 = 0; b0 < tw; b0++, t++) {
            const int64_t rows = g->oh - M * a0 < M ? g->oh - M * a0 : M;
            const int64_t cols = g->ow - M * b0 < M ? g->ow - M * b0 : M;
            const float *d0 = dy + (M * a0 * g->ow + M * b0) * f;
            for (int64_t f0 = 0; f0 < f; f0 += VW) {
                VEC r[4][4], e[6][4], col[4], out[6];
                CD_UNROLL
                for (int a = 0; a < M; a++)
                    CD_UNROLL
                    for (int b = 0; b < M; b++)
                        r[a][b] = a < rows && b < cols ? FN(vload)(d0 + (a * g->ow + b) * f + f0)
                                                       : (VEC){0};
                CD_UNROLL
                for (int b = 0; b < M; b++) {
                    CD_UNROLL
                    for (int a = 0; a < M; a++)
                        col[a] = r[a][b];
                    FN(w_out1_adj)(col, out, M);
                    CD_UNROLL
                    for (int a = 0; a < A; a++)
                        e[a][b] = out[a];
                }
                float *o = dm + t * f + f0;
                CD_UNROLL
                for (int a = 0; a < A; a++) {
                    FN(w_out1_adj)(e[a], out, M);
                    CD_UNROLL
                    for (int b = 0; b < A; b++)
                        FN(vstore)(o + (A * a + b) * plane, out[b]);
                }
            }
        }
}

static void FN(wino_output_adjoint)(const cd_geom *g, const float *dy, float *dm)
{
    if (g->wm == 4)
        FN(wino_output_adjoint_m)(g, dy, dm, 4);
    else
        FN(wino_output_adjoint_m)(g, dy, dm, 2);
}

/* du[c0 .. c0+CB)[f0 .. f0+NV*VW) += sum over tiles of v[t][c] dm[t][f], for one position. */
CD_INLINE void FN(du_tile)(const float *v, const float *dm, int64_t t_all, int64_t c, int64_t f,
                           int64_t c0, int64_t f0, float *du, const int CB, const int NV)
{
    VEC acc[12][4];
    CD_UNROLL
    for (int q = 0; q < CB; q++)
        CD_UNROLL
        for (int w = 0; w < NV; w++)
            acc[q][w] = FN(vload)(du + (c0 + q) * f + f0 + w * VW);
    const float *vp = v + c0, *dp = dm + f0;
    for (int64_t t = 0; t < t_all; t++, vp += c, dp += f) {
        VEC d[4];
        CD_UNROLL
        for (int w = 0; w < NV; w++)
            d[w] = FN(vload)(dp + w * VW);
        CD_UNROLL
        for (int q = 0; q < CB; q++) {
            const VEC b = FN(vbcast)(vp[q]);
            CD_UNROLL
            for (int w = 0; w < NV; w++)
                acc[q][w] += b * d[w];
        }
    }
    CD_UNROLL
    for (int q = 0; q < CB; q++)
        CD_UNROLL
        for (int w = 0; w < NV; w++)
            FN(vstore)(du + (c0 + q) * f + f0 + w * VW, acc[q][w]);
}

#define CD_DU_CASE(cb)                                                                      \
    case cb:                                                                                \
        FN(du_tile)(v, dm, t_all, c, f, c0, f0, du, cb, NV);                                \
        return;

CD_INLINE void FN(du_tile_nv)(const float *v, const float *dm, int64_t t_all, int64_t c,
                              int64_t f, int64_t c0, int64_t f0, float *du, int CB,
                              const int NV)
{
    switch (CB) {
        CD_DU_CASE(1) CD_DU_CASE(2) CD_DU_CASE(3) CD_DU_CASE(4) CD_DU_CASE(5) CD_DU_CASE(6)
        CD_DU_CASE(7) CD_DU_CASE(8) CD_DU_CASE(9) CD_DU_CASE(10) CD_DU_CASE(11)
        CD_DU_CASE(12)
    default:
        return;
    }
}
#undef CD_DU_CASE

/* One padded sample's share of the transformed kernel gradient: du[pos][c][f] += V^T dM.
 * work as for cd_wino_forward. */
static void FN(cd_wino_kernel_grad_add)(const cd_geom *g, const float *xpad, const float *dy,
                                        float *du, float *work)
{
    const int64_t t_all = cd_wino_tiles(g), c = g->c, f = g->f;
    float *v = work, *dm = work + cd_wino_positions(g) * t_all * c;
    FN(wino_input)(g, xpad, v);
    FN(wino_output_adjoint)(g, dy, dm);
    for (int p = 0; p < cd_wino_positions(g); p++) {
        const float *vp = v + p * t_all * c, *dp = dm + p * t_all * f;
        float *dup = du + p * c * f;
        for (int64_t f0 = 0; f0 < f;) {
            const int nv = cd_vectors(f - f0, VW, VW == 16 ? 4 : 2), cbmax = FN(dk_cbmax)(nv);
            const int64_t blocks = (c + cbmax - 1) / cbmax;
            for (int64_t b = 0, c0 = 0; b < blocks; b++) {
                const int64_t end = c * (b + 1) / blocks;
                if (nv == 4)
                    FN(du_tile_nv)(vp, dp, t_all, c, f, c0, f0, dup, (int)(end - c0), 4);
                else if (nv == 2)
                    FN(du_tile_nv)(vp, dp, t_all, c, f, c0, f0, dup, (int)(end - c0), 2);
                else
                    FN(du_tile_nv)(vp, dp, t_all, c, f, c0, f0, dup, (int)(end - c0), 1);
                c0 = end;
            }
            f0 += nv * VW;
        }
    }
}

/* dk (3 x 3 x c x f, written) = G^T du G, the adjoint of wino_kernel. */
CD_INLINE void FN(wino_kernel_grad_finish_m)(const cd_geom *g, const float *du, float *dk,
                                             const int M)
{
    const int A = M + 2;
    const int64_t cf = g->c * g->f;
    for (int64_t e = 0; e < cf; e += VW) {
        VEC q[6][6], h[3][6], col[6], out[3];
        CD_UNROLL
        for (int p = 0; p < A * A; p++)
            q[p / A][p % A] = FN(vload)(du + p * cf + e);
        CD_UNROLL
        for (int b = 0; b < A; b++) {
            CD_UNROLL
            for (int a = 0; a < A; a++)
                col[a] = q[a][b];
            FN(w_ker1_adj)(col, out, M);
            CD_UNROLL
            for (int i = 0; i < 3; i++)
                h[i][b] = out[i];
        }
        CD_UNROLL
        for (int i = 0; i < 3; i++) {
            FN(w_ker1_adj)(h[i], out, M);
            CD_UNROLL
            for (int j = 0; j < 3; j++)
                FN(vstore)(dk + (i * 3 + j) * cf + e, out[j]);
        }
    }
}

static void FN(cd_wino_kernel_grad_finish)(const cd_geom *g, const float *du, float *dk)
{
    if (g->wm == 4)
        FN(wino_kernel_grad_finish_m)(g, du, dk, 4);
    else
        FN(wino_kernel_grad_finish_m)(g, du, dk, 2);
}
