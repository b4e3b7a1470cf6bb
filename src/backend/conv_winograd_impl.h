/* conv_winograd_impl.h - Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions, included by
 * conv_direct_impl.h for each instruction set (its VEC, FN, vload, vstore and fwd_tile).
 *
 * The output is cut into 2x2 tiles, each read from a 4x4 tile of the padded input. With
 * the transforms B (input), G (kernel) and A (output) of F(2, 3),
 *   y_tile = A^T [ sum over channels (G k G^T) (.) (B^T x_tile B) ] A,
 * 16 products per channel and filter give 4 outputs where a direct convolution takes 36.
 * The sum over channels is, for each of the 16 positions of a tile, a matrix product of
 * (tiles x channels) by (channels x filters), run by fwd_tile. Every transform works on a
 * vector of VW channels or filters at a time; channels and filters are whole vectors. */

/* V[pos][t][c] = (B^T d B)[pos] for every tile t of one padded sample. */
static void FN(wino_input)(const cd_geom *g, const float *xpad, float *v)
{
    const int64_t th = (g->oh + 1) / 2, tw = (g->ow + 1) / 2, t_all = th * tw;
    const int64_t c = g->c, wp = 2 * tw + 2, plane = t_all * c;
    for (int64_t a0 = 0, t = 0; a0 < th; a0++)
        for (int64_t b0 = 0; b0 < tw; b0++, t++) {
            const float *x0 = xpad + (2 * a0 * wp + 2 * b0) * c;
            for (int64_t c0 = 0; c0 < c; c0 += VW) {
                VEC d[4][4], u[4][4];
                CD_UNROLL
                for (int a = 0; a < 4; a++)
                    CD_UNROLL
                    for (int b = 0; b < 4; b++)
                        d[a][b] = FN(vload)(x0 + (a * wp + b) * c + c0);
                CD_UNROLL
                for (int b = 0; b < 4; b++) {
                    u[0][b] = d[0][b] - d[2][b];
                    u[1][b] = d[1][b] + d[2][b];
                    u[2][b] = d[2][b] - d[1][b];
                    u[3][b] = d[1][b] - d[3][b];
                }
                float *o = v + t * c + c0;
                CD_UNROLL
                for (int a = 0; a < 4; a++) {
                    FN(vstore)(o + (4 * a + 0) * plane, u[a][0] - u[a][2]);
                    FN(vstore)(o + (4 * a + 1) * plane, u[a][1] + u[a][2]);
                    FN(vstore)(o + (4 * a + 2) * plane, u[a][2] - u[a][1]);
                    FN(vstore)(o + (4 * a + 3) * plane, u[a][1] - u[a][3]);
                }
            }
        }
}

/* y (oh x ow x f) from M[pos][t][f]: A^T M A per tile, the parts past the edge dropped. */
static void FN(wino_output)(const cd_geom *g, const float *m, float *y)
{
    const int64_t th = (g->oh + 1) / 2, tw = (g->ow + 1) / 2, t_all = th * tw;
    const int64_t f = g->f, plane = t_all * f;
    for (int64_t a0 = 0, t = 0; a0 < th; a0++)
        for (int64_t b0 = 0; b0 < tw; b0++, t++) {
            const bool down = 2 * a0 + 1 < g->oh, right = 2 * b0 + 1 < g->ow;
            float *y0 = y + (2 * a0 * g->ow + 2 * b0) * f;
            for (int64_t f0 = 0; f0 < f; f0 += VW) {
                VEC q[4][4], s[2][4];
                CD_UNROLL
                for (int p = 0; p < 16; p++)
                    q[p / 4][p % 4] = FN(vload)(m + p * plane + t * f + f0);
                CD_UNROLL
                for (int b = 0; b < 4; b++) {
                    s[0][b] = q[0][b] + q[1][b] + q[2][b];
                    s[1][b] = q[1][b] - q[2][b] - q[3][b];
                }
                CD_UNROLL
                for (int a = 0; a < 2; a++) {
                    if (a == 1 && !down)
                        break;
                    float *ya = y0 + a * g->ow * f + f0;
                    FN(vstore)(ya, s[a][0] + s[a][1] + s[a][2]);
                    if (right)
                        FN(vstore)(ya + f, s[a][1] - s[a][2] - s[a][3]);
                }
            }
        }
}

/* U[pos][c][f] = (G k G^T)[pos] for the kernel k (3 x 3 x c x f). */
static void FN(wino_kernel)(const cd_geom *g, const float *k, float *u)
{
    const int64_t c = g->c, f = g->f, cf = c * f;
    const VEC half = FN(vbcast)(0.5f);
    for (int64_t e = 0; e < cf; e += VW) {
        VEC w[3][3], h[4][3];
        CD_UNROLL
        for (int i = 0; i < 3; i++)
            CD_UNROLL
            for (int j = 0; j < 3; j++)
                w[i][j] = FN(vload)(k + (i * 3 + j) * cf + e);
        CD_UNROLL
        for (int j = 0; j < 3; j++) {
            h[0][j] = w[0][j];
            h[1][j] = half * (w[0][j] + w[1][j] + w[2][j]);
            h[2][j] = half * (w[0][j] - w[1][j] + w[2][j]);
            h[3][j] = w[2][j];
        }
        CD_UNROLL
        for (int a = 0; a < 4; a++) {
            FN(vstore)(u + (4 * a + 0) * cf + e, h[a][0]);
            FN(vstore)(u + (4 * a + 1) * cf + e, half * (h[a][0] + h[a][1] + h[a][2]));
            FN(vstore)(u + (4 * a + 2) * cf + e, half * (h[a][0] - h[a][1] + h[a][2]));
            FN(vstore)(u + (4 * a + 3) * cf + e, h[a][2]);
        }
    }
}

/* The 16 products of one sample: M[pos] = V[pos] U[pos], tiles of R tiles x NV vectors. */
static void FN(wino_products)(const cd_geom *g, const float *v, const float *u, float *m)
{
    const int64_t t_all = ((g->oh + 1) / 2) * ((g->ow + 1) / 2), c = g->c, f = g->f;
    CD_UNROLL
    for (int p = 0; p < 16; p++) {
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
 * 16 * tiles * (c + f) floats. */
static void FN(cd_wino_forward)(const cd_geom *g, const float *xpad, const float *u, float *y,
                                float *work)
{
    const int64_t t_all = ((g->oh + 1) / 2) * ((g->ow + 1) / 2);
    float *v = work, *m = work + 16 * t_all * g->c;
    FN(wino_input)(g, xpad, v);
    FN(wino_products)(g, v, u, m);
    FN(wino_output)(g, m, y);
}

/* dM[pos][t][f] = (A dy_tile A^T)[pos], the adjoint of wino_output, zeros past the edge. */
static void FN(wino_output_adjoint)(const cd_geom *g, const float *dy, float *dm)
{
    const int64_t th = (g->oh + 1) / 2, tw = (g->ow + 1) / 2, t_all = th * tw;
    const int64_t f = g->f, plane = t_all * f;
    for (int64_t a0 = 0, t = 0; a0 < th; a0++)
        for (int64_t b0 = 0; b0 < tw; b0++, t++) {
            const bool down = 2 * a0 + 1 < g->oh, right = 2 * b0 + 1 < g->ow;
            const float *d0 = dy + (2 * a0 * g->ow + 2 * b0) * f;
            for (int64_t f0 = 0; f0 < f; f0 += VW) {
                VEC z = (VEC){0}, e[4][2], r[2][2];
                r[0][0] = FN(vload)(d0 + f0);
                r[0][1] = right ? FN(vload)(d0 + f + f0) : z;
                r[1][0] = down ? FN(vload)(d0 + g->ow * f + f0) : z;
                r[1][1] = down && right ? FN(vload)(d0 + (g->ow + 1) * f + f0) : z;
                CD_UNROLL
                for (int b = 0; b < 2; b++) {
                    e[0][b] = r[0][b];
                    e[1][b] = r[0][b] + r[1][b];
                    e[2][b] = r[0][b] - r[1][b];
                    e[3][b] = z - r[1][b];
                }
                float *o = dm + t * f + f0;
                CD_UNROLL
                for (int a = 0; a < 4; a++) {
                    FN(vstore)(o + (4 * a + 0) * plane, e[a][0]);
                    FN(vstore)(o + (4 * a + 1) * plane, e[a][0] + e[a][1]);
                    FN(vstore)(o + (4 * a + 2) * plane, e[a][0] - e[a][1]);
                    FN(vstore)(o + (4 * a + 3) * plane, z - e[a][1]);
                }
            }
        }
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
    const int64_t t_all = ((g->oh + 1) / 2) * ((g->ow + 1) / 2), c = g->c, f = g->f;
    float *v = work, *dm = work + 16 * t_all * c;
    FN(wino_input)(g, xpad, v);
    FN(wino_output_adjoint)(g, dy, dm);
    CD_UNROLL
    for (int p = 0; p < 16; p++) {
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
static void FN(cd_wino_kernel_grad_finish)(const cd_geom *g, const float *du, float *dk)
{
    const int64_t cf = g->c * g->f;
    const VEC half = FN(vbcast)(0.5f);
    for (int64_t e = 0; e < cf; e += VW) {
        VEC q[4][4], h[3][4];
        CD_UNROLL
        for (int p = 0; p < 16; p++)
            q[p / 4][p % 4] = FN(vload)(du + p * cf + e);
        CD_UNROLL
        for (int b = 0; b < 4; b++) {
            h[0][b] = q[0][b] + half * (q[1][b] + q[2][b]);
            h[1][b] = half * (q[1][b] - q[2][b]);
            h[2][b] = half * (q[1][b] + q[2][b]) + q[3][b];
        }
        CD_UNROLL
        for (int i = 0; i < 3; i++) {
            FN(vstore)(dk + (i * 3 + 0) * cf + e, h[i][0] + half * (h[i][1] + h[i][2]));
            FN(vstore)(dk + (i * 3 + 1) * cf + e, half * (h[i][1] - h[i][2]));
            FN(vstore)(dk + (i * 3 + 2) * cf + e, half * (h[i][1] + h[i][2]) + h[i][3]);
        }
    }
}
