/* cuda_norm.cu - batch and group normalization on the GPU, with the formulas of
 * backend_cpu_norm.c: statistics are double sums of x - shift (shift: a value of the same
 * channel or group), the variance is biased, the output subtracts the mean as a float pair
 * (hi + lo), and the backward re-centres x - mean by what the float mean missed.
 *
 * Reductions are deterministic and in double:
 * - per channel over n rows (batch norm, and the dgamma/dbeta of group norm): a grid of
 *   (channel tile, row part) blocks, each summing its rows in lanes that a fixed
 *   shared-memory tree combines into one partial per part; then one warp per channel adds
 *   the parts by a fixed shuffle tree. The split depends on the shape only.
 * - per group (group and layer norm): one block per group, sums folded by shuffle and
 *   shared-memory trees, then the same block applies the result (its re-read of the group
 *   mostly hits the cache); when there are few large groups, each group is cut into
 *   chunks summed by separate blocks and combined per group by one warp.
 * Element-wise passes use __fadd_rn/__fsub_rn/__fmul_rn, which the compiler never fuses,
 * so with equal per-channel constants they give the CPU's bits. */
#include <stdint.h>

#include "cuda_internal.h"

#define NORM_THREADS 256
#define FITS_32(n) ((n) <= (int64_t)INT32_MAX)

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static unsigned grid_for_items(int64_t items)
{
    return items < 65535 * 16 ? (unsigned)(items > 0 ? items : 1) : 65535 * 16;
}

/* Lane 0 receives the warp's sum, always paired the same way. */
__device__ __forceinline__ double warp_sum(double v)
{
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

/* Sums K values over the block (blockDim.x a multiple of 32, at most 1024): the totals
 * land in thread 0's v. sh: K x 32 doubles of shared memory. */
template <int K> __device__ __forceinline__ void block_sum(double (&v)[K], double (*sh)[32])
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int k = 0; k < K; k++)
        v[k] = warp_sum(v[k]);
    if (lane == 0)
        for (int k = 0; k < K; k++)
            sh[k][warp] = v[k];
    __syncthreads();
    if (threadIdx.x == 0)
        for (int k = 0; k < K; k++) {
            double t = sh[k][0];
            for (int w = 1; w < warps; w++)
                t += sh[k][w];
            v[k] = t;
        }
}

/* ---- per-channel sums over rows ---------------------------------------------------- */

/* A block is cw channels x lanes rows (cw * lanes = NORM_THREADS); the grid is tiles x
 * parts blocks, part p summing rows [n*p/parts, n*(p+1)/parts). */
struct col_plan {
    int cw;
    int64_t tiles, parts;
};

static col_plan plan_columns(int64_t n, int64_t c)
{
    col_plan p;
    p.cw = 1;
    while (p.cw < 32 && p.cw < c)
        p.cw *= 2;
    int64_t lanes = NORM_THREADS / p.cw;
    p.tiles = (c + p.cw - 1) / p.cw;
    /* at least 32 rows a thread, about 2048 blocks in all, at most 1024 parts a channel */
    int64_t by_rows = (n + lanes * 32 - 1) / (lanes * 32);
    int64_t by_blocks = (2048 + p.tiles - 1) / p.tiles;
    p.parts = by_rows < by_blocks ? by_rows : by_blocks;
    if (p.parts > 1024)
        p.parts = 1024;
    if (p.parts < 1)
        p.parts = 1;
    if (n <= 0)
        p.parts = 0;
    return p;
}

/* Op: begin(ch) once per thread, load(row) -> item, add(item, acc[K]). The sums of part p
 * go to out[(k * c + ch) * parts + p]. */
template <int K, class Op>
__global__ void __launch_bounds__(NORM_THREADS)
    col_partials_kernel(Op op, int64_t n, int64_t c, int cw, int64_t tiles, int64_t parts,
                        double *__restrict__ out)
{
    __shared__ double sh[K][NORM_THREADS];
    const int lanes = NORM_THREADS / cw, chl = threadIdx.x % cw, lane = threadIdx.x / cw;
    const int64_t tile = blockIdx.x % tiles, part = blockIdx.x / tiles;
    const int64_t ch = tile * cw + chl;
    const int64_t r0 = n * part / parts, r1 = n * (part + 1) / parts;
    double acc[K];
    for (int k = 0; k < K; k++)
        acc[k] = 0.0;
    if (ch < c) {
        Op o = op;
        o.begin(ch);
        int64_t row = r0 + lane;
        /* four rows' loads in flight before their sums */
        for (; row + 3 * lanes < r1; row += 4 * lanes) {
            typename Op::item v0 = o.load(row), v1 = o.load(row + lanes);
            typename Op::item v2 = o.load(row + 2 * lanes), v3 = o.load(row + 3 * lanes);
            o.add(v0, acc);
            o.add(v1, acc);
            o.add(v2, acc);
            o.add(v3, acc);
        }
        for (; row < r1; row += lanes)
            o.add(o.load(row), acc);
    }
    for (int k = 0; k < K; k++)
        sh[k][threadIdx.x] = acc[k];
    __syncthreads();
    for (int half = lanes / 2; half > 0; half /= 2) {
        if (lane < half)
            for (int k = 0; k < K; k++)
                sh[k][threadIdx.x] += sh[k][threadIdx.x + half * cw];
        __syncthreads();
    }
    if (lane == 0 && ch < c)
        for (int k = 0; k < K; k++)
            out[(k * c + ch) * parts + part] = sh[k][threadIdx.x];
}

/* One warp per channel adds its parts and hands the K totals to fin(ch, totals). */
template <int K, class Fin>
__global__ void col_finish_kernel(Fin fin, const double *__restrict__ part, int64_t c,
                                  int64_t parts)
{
    const int lane = threadIdx.x & 31;
    const int64_t ch = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (ch >= c) /* the whole warp leaves together */
        return;
    double s[K];
    for (int k = 0; k < K; k++) {
        double v = 0.0;
        for (int64_t p = lane; p < parts; p += 32)
            v += part[(k * c + ch) * parts + p];
        s[k] = warp_sum(v);
    }
    if (lane == 0)
        fin(ch, s);
}

/* Runs the two kernels above; false when scratch ran out (recorded). */
template <int K, class Op, class Fin>
static bool column_sums(const Op &op, const Fin &fin, int64_t n, int64_t c, int slot,
                        const char *what)
{
    col_plan p = plan_columns(n, c);
    double *part = NULL;
    if (p.parts > 0) {
        part = (double *)ct_cuda_scratch(slot, (size_t)(K * c * p.parts) * sizeof(double));
        if (!part)
            return false;
        col_partials_kernel<K, Op><<<(unsigned)(p.tiles * p.parts), NORM_THREADS, 0,
                                     ct_cuda_stream()>>>(op, n, c, p.cw, p.tiles, p.parts,
                                                         part);
        ct_cuda_check_launch(what);
    }
    unsigned grid = (unsigned)((c * 32 + NORM_THREADS - 1) / NORM_THREADS);
    col_finish_kernel<K, Fin><<<grid, NORM_THREADS, 0, ct_cuda_stream()>>>(fin, part, c,
                                                                          p.parts);
    ct_cuda_check_launch(what);
    return true;
}

/* ---- per-channel element-wise passes ------------------------------------------------ */

/* y = ((x - hi) - lo) * sc + bt; k holds the four arrays of c values: hi, lo, sc, bt. */
__device__ __forceinline__ float affine(float x, float hi, float lo, float sc, float bt)
{
    return __fadd_rn(__fmul_rn(__fsub_rn(__fsub_rn(x, hi), lo), sc), bt);
}

template <typename I>
__global__ void affine_kernel(const float *__restrict__ x, float *__restrict__ y, I total, I c,
                              const float *__restrict__ k)
{
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I ch = idx % c;
        y[idx] = affine(x[idx], k[ch], k[c + ch], k[2 * c + ch], k[3 * c + ch]);
    }
}

/* The same on float4s: c4 = c / 4. */
template <typename I>
__global__ void affine4_kernel(const float4 *__restrict__ x, float4 *__restrict__ y, I total,
                               I c4, const float4 *__restrict__ k)
{
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I ch = idx % c4;
        float4 v = x[idx], hi = k[ch], lo = k[c4 + ch], sc = k[2 * c4 + ch], bt = k[3 * c4 + ch];
        y[idx] = make_float4(affine(v.x, hi.x, lo.x, sc.x, bt.x),
                             affine(v.y, hi.y, lo.y, sc.y, bt.y),
                             affine(v.z, hi.z, lo.z, sc.z, bt.z),
                             affine(v.w, hi.w, lo.w, sc.w, bt.w));
    }
}

static void launch_affine(const float *x, float *y, int64_t n, int64_t c, const float *k,
                          const char *what)
{
    int64_t total = n * c;
    if (total <= 0)
        return;
    cudaStream_t s = ct_cuda_stream();
    if (c % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(k)) {
        int64_t t4 = total / 4;
        unsigned grid = ct_cuda_grid(t4, CT_CUDA_THREADS);
        if (FITS_32(total))
            affine4_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, s>>>(
                (const float4 *)x, (float4 *)y, (uint32_t)t4, (uint32_t)(c / 4),
                (const float4 *)k);
        else
            affine4_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, s>>>(
                (const float4 *)x, (float4 *)y, (uint64_t)t4, (uint64_t)(c / 4),
                (const float4 *)k);
    } else {
        unsigned grid = ct_cuda_grid(total, CT_CUDA_THREADS);
        if (FITS_32(total))
            affine_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, s>>>(x, y, (uint32_t)total,
                                                                     (uint32_t)c, k);
        else
            affine_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, s>>>(x, y, (uint64_t)total,
                                                                     (uint64_t)c, k);
    }
    ct_cuda_check_launch(what);
}

/* dx = a * dy - b - ((x - m) - dl) * e, the CPU's grad_apply. */
__device__ __forceinline__ float grad_value(float x, float g, float m, float dl, float a,
                                            float b, float e)
{
    return __fsub_rn(__fsub_rn(__fmul_rn(a, g), b), __fmul_rn(__fsub_rn(__fsub_rn(x, m), dl), e));
}

/* m: the per-channel mean; k: the arrays dl, a, b, e of c values each. */
template <typename I>
__global__ void grad_kernel(const float *__restrict__ x, const float *__restrict__ dy,
                            float *__restrict__ dx, I total, I c, const float *__restrict__ m,
                            const float *__restrict__ k)
{
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I ch = idx % c;
        dx[idx] = grad_value(x[idx], dy[idx], m[ch], k[ch], k[c + ch], k[2 * c + ch],
                             k[3 * c + ch]);
    }
}

template <typename I>
__global__ void grad4_kernel(const float4 *__restrict__ x, const float4 *__restrict__ dy,
                             float4 *__restrict__ dx, I total, I c4,
                             const float4 *__restrict__ m, const float4 *__restrict__ k)
{
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (I)gridDim.x * blockDim.x) {
        I ch = idx % c4;
        float4 v = x[idx], g = dy[idx], mm = m[ch];
        float4 dl = k[ch], a = k[c4 + ch], b = k[2 * c4 + ch], e = k[3 * c4 + ch];
        dx[idx] = make_float4(grad_value(v.x, g.x, mm.x, dl.x, a.x, b.x, e.x),
                              grad_value(v.y, g.y, mm.y, dl.y, a.y, b.y, e.y),
                              grad_value(v.z, g.z, mm.z, dl.z, a.z, b.z, e.z),
                              grad_value(v.w, g.w, mm.w, dl.w, a.w, b.w, e.w));
    }
}

/* ---- batch normalization ------------------------------------------------------------ */

/* Sums of d = x - shift and d^2, shift = the channel's value in row 0. */
struct bn_stats_op {
    const float *x;
    int64_t c, ch;
    double shift;
    typedef float item;
    __device__ void begin(int64_t channel)
    {
        ch = channel;
        shift = (double)x[channel];
    }
    __device__ item load(int64_t row) const { return x[row * c + ch]; }
    __device__ void add(item v, double *acc) const
    {
        double d = (double)v - shift;
        acc[0] += d;
        acc[1] += d * d;
    }
};

/* Statistics and the constants of the normalizing pass (hi, lo, sc, bt in k). */
struct bn_train_fin {
    const float *x, *gamma, *beta;
    int64_t n, c;
    float eps;
    float *mean, *var, *invstd, *k;
    __device__ void operator()(int64_t ch, const double *s) const
    {
        double shift = n > 0 ? (double)x[ch] : 0.0;
        double dm = n > 0 ? s[0] / (double)n : 0.0;
        double v = n > 0 ? __dsub_rn(s[1] / (double)n, __dmul_rn(dm, dm)) : 0.0;
        if (v < 0.0)
            v = 0.0;
        double m = shift + dm, is = 1.0 / sqrt(v + (double)eps);
        mean[ch] = (float)m;
        var[ch] = (float)v;
        invstd[ch] = (float)is;
        float hi = (float)m;
        k[ch] = hi;
        k[c + ch] = (float)(m - (double)hi);
        k[2 * c + ch] = (float)(is * (gamma ? (double)gamma[ch] : 1.0));
        k[3 * c + ch] = beta ? beta[ch] : 0.0f;
    }
};

/* A fused relu: applied to y in place after the affine pass (on the GPU the pass over
 * memory matters less than on the CPU, where it is fused into the affine loop). */
static void relu_in_place(float *y, int64_t n, int64_t c)
{
    ct_cuda_bias_act(ct_act{CT_ACT_RELU, 0.0f}, NULL, y, n, c);
}

extern "C" void ct_cuda_batchnorm_train(const float *x, float *y, int64_t n, int64_t c,
                                        const float *gamma, const float *beta, float eps,
                                        float *mean, float *var, float *invstd, bool relu)
{
    if (c <= 0)
        return;
    float *k = (float *)ct_cuda_scratch(1, (size_t)(4 * c) * sizeof(float));
    if (!k)
        return;
    bn_stats_op op = {x, c, 0, 0.0};
    bn_train_fin fin = {x, gamma, beta, n, c, eps, mean, var, invstd, k};
    if (!column_sums<2>(op, fin, n, c, 0, "batchnorm_train"))
        return;
    launch_affine(x, y, n, c, k, "batchnorm_train");
    if (relu)
        relu_in_place(y, n, c);
}

/* The constants of inference: hi = mean, lo = 0, sc = gamma / sqrt(var + eps), bt. */
__global__ void bn_infer_consts_kernel(const float *__restrict__ gamma,
                                       const float *__restrict__ beta,
                                       const float *__restrict__ mean,
                                       const float *__restrict__ var, float eps, int64_t c,
                                       float *__restrict__ k)
{
    for (int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ch < c;
         ch += (int64_t)gridDim.x * blockDim.x) {
        double is = 1.0 / sqrt((double)var[ch] + (double)eps);
        k[ch] = mean[ch];
        k[c + ch] = 0.0f;
        k[2 * c + ch] = (float)(is * (gamma ? (double)gamma[ch] : 1.0));
        k[3 * c + ch] = beta ? beta[ch] : 0.0f;
    }
}

extern "C" void ct_cuda_batchnorm_infer(const float *x, float *y, int64_t n, int64_t c,
                                        const float *gamma, const float *beta, float eps,
                                        const float *mean, const float *var, bool relu)
{
    if (c <= 0 || n <= 0)
        return;
    float *k = (float *)ct_cuda_scratch(1, (size_t)(4 * c) * sizeof(float));
    if (!k)
        return;
    bn_infer_consts_kernel<<<ct_cuda_grid(c, CT_CUDA_THREADS), CT_CUDA_THREADS, 0,
                             ct_cuda_stream()>>>(gamma, beta, mean, var, eps, c, k);
    ct_cuda_check_launch("batchnorm_infer");
    launch_affine(x, y, n, c, k, "batchnorm_infer");
    if (relu)
        relu_in_place(y, n, c);
}

/* Sums of d = x - mean, dy and dy * d. */
struct bn_grad_op {
    const float *x, *dy, *mean;
    int64_t c, ch;
    double m;
    struct item {
        float x, g;
    };
    __device__ void begin(int64_t channel)
    {
        ch = channel;
        m = (double)mean[channel];
    }
    __device__ item load(int64_t row) const
    {
        item v = {x[row * c + ch], dy[row * c + ch]};
        return v;
    }
    __device__ void add(item v, double *acc) const
    {
        double d = (double)v.x - m, g = (double)v.g;
        acc[0] += d;
        acc[1] += g;
        acc[2] += g * d;
    }
};

/* dgamma = sum(dy * xhat), dbeta = sum(dy), and the constants of dx (dl, a, b, e in k). */
struct bn_grad_fin {
    const float *gamma, *invstd;
    int64_t n, c;
    float *dgamma, *dbeta, *k;
    __device__ void operator()(int64_t ch, const double *s) const
    {
        double inv_n = n > 0 ? 1.0 / (double)n : 0.0;
        double is = (double)invstd[ch], delta = s[0] * inv_n;
        double sdyx = is * __dsub_rn(s[2], __dmul_rn(delta, s[1]));
        double kk = is * (gamma ? (double)gamma[ch] : 1.0);
        if (dgamma)
            dgamma[ch] = (float)sdyx;
        if (dbeta)
            dbeta[ch] = (float)s[1];
        if (k) {
            k[ch] = (float)delta;
            k[c + ch] = (float)kk;
            k[2 * c + ch] = (float)(kk * s[1] * inv_n);
            k[3 * c + ch] = (float)(kk * is * sdyx * inv_n);
        }
    }
};

extern "C" void ct_cuda_batchnorm_backward(const float *x, const float *y, float *dy,
                                           float *dx, int64_t n, int64_t c, const float *gamma,
                                           const float *mean, const float *invstd,
                                           float *dgamma, float *dbeta)
{
    if (c <= 0)
        return;
    if (y) /* dy through the fused relu, in place */
        ct_cuda_bias_act_backward(ct_act{CT_ACT_RELU, 0.0f}, y, dy, NULL, n, c);
    float *k = NULL;
    if (dx && n > 0) {
        k = (float *)ct_cuda_scratch(1, (size_t)(4 * c) * sizeof(float));
        if (!k)
            return;
    }
    bn_grad_op op = {x, dy, mean, c, 0, 0.0};
    bn_grad_fin fin = {gamma, invstd, n, c, dgamma, dbeta, k};
    if (!column_sums<3>(op, fin, n, c, 0, "batchnorm_backward") || !k)
        return;
    int64_t total = n * c;
    cudaStream_t s = ct_cuda_stream();
    if (c % 4 == 0 && aligned16(x) && aligned16(dy) && aligned16(dx) && aligned16(mean) &&
        aligned16(k)) {
        int64_t t4 = total / 4;
        unsigned grid = ct_cuda_grid(t4, CT_CUDA_THREADS);
        if (FITS_32(total))
            grad4_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, s>>>(
                (const float4 *)x, (const float4 *)dy, (float4 *)dx, (uint32_t)t4,
                (uint32_t)(c / 4), (const float4 *)mean, (const float4 *)k);
        else
            grad4_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, s>>>(
                (const float4 *)x, (const float4 *)dy, (float4 *)dx, (uint64_t)t4,
                (uint64_t)(c / 4), (const float4 *)mean, (const float4 *)k);
    } else {
        unsigned grid = ct_cuda_grid(total, CT_CUDA_THREADS);
        if (FITS_32(total))
            grad_kernel<uint32_t><<<grid, CT_CUDA_THREADS, 0, s>>>(
                x, dy, dx, (uint32_t)total, (uint32_t)c, mean, k);
        else
            grad_kernel<uint64_t><<<grid, CT_CUDA_THREADS, 0, s>>>(
                x, dy, dx, (uint64_t)total, (uint64_t)c, mean, k);
    }
    ct_cuda_check_launch("batchnorm_backward");
}

/* ---- group normalization ------------------------------------------------------------ */

/* Group grp = r * groups + g of a rows x spatial x c tensor holds len = spatial * cg
 * values, element e at position e / cg, channel g * cg + e % cg. */
struct gn_geo {
    int64_t spatial, c, cg, groups, len;
};

__device__ __forceinline__ int64_t gn_base(const gn_geo &q, int64_t grp)
{
    int64_t r = grp / q.groups, g = grp - r * q.groups;
    return r * q.spatial * q.c + g * q.cg;
}

/* Offset of element e from the group's base; *j: its channel within the group. */
__device__ __forceinline__ int64_t gn_at(const gn_geo &q, int64_t e, int64_t *j)
{
    if (q.spatial == 1) {
        *j = e;
        return e;
    }
    int64_t p;
    if (q.len <= (int64_t)UINT32_MAX)
        p = (int64_t)((uint32_t)e / (uint32_t)q.cg);
    else
        p = e / q.cg;
    *j = e - p * q.cg;
    return p * q.c + *j;
}

/* How groups are summed: one block per group (chunks == 1), or, for few large groups,
 * chunks blocks per group. threads: the block size (a power of two, 32 to 256). Depends on
 * the shape only. */
struct gn_plan {
    int threads;
    int64_t chunks;
};

static gn_plan plan_groups(int64_t ngroups, int64_t len)
{
    gn_plan p;
    p.threads = 32;
    while (p.threads < NORM_THREADS && p.threads * 4 < len)
        p.threads *= 2;
    p.chunks = 1;
    if (ngroups < 512 && len > 16384) {
        int64_t by_size = (len + 8191) / 8192, by_blocks = (2048 + ngroups - 1) / ngroups;
        p.chunks = by_size < by_blocks ? by_size : by_blocks;
        if (p.chunks < 1)
            p.chunks = 1;
    }
    return p;
}

/* Chunk k of `chunks` of a group: elements [e0, e1). */
__device__ __forceinline__ void gn_chunk(int64_t len, int64_t chunks, int64_t k, int64_t *e0,
                                         int64_t *e1)
{
    *e0 = len * k / chunks;
    *e1 = len * (k + 1) / chunks;
}

/* -- forward -- */

/* The group's statistics from the sums of d = x - shift and d^2 over m_n values. */
struct gn_stats {
    float hi, lo, isf;
    double is;
};

__device__ __forceinline__ gn_stats gn_forward_stats(double s1, double s2, double m_n,
                                                     float shift, float eps, float *mean,
                                                     float *invstd)
{
    double dm = s1 / m_n, v = __dsub_rn(s2 / m_n, __dmul_rn(dm, dm));
    if (v < 0.0)
        v = 0.0;
    double m = (double)shift + dm, is = 1.0 / sqrt(v + (double)eps);
    *mean = (float)m;
    *invstd = (float)is;
    gn_stats st;
    st.hi = (float)m;
    st.lo = (float)(m - (double)st.hi);
    st.is = is;
    st.isf = (float)is;
    return st;
}

/* The normalized value of channel ch. The CPU has two forms: small groups over several
 * positions ("blocked") scale by (float)(is * gamma) and always add beta (0 when NULL);
 * the others scale by the float is, then by gamma, then add beta when present. */
__device__ __forceinline__ float gn_value(float v, const gn_stats &st, bool blocked,
                                          const float *gamma, const float *beta, int64_t ch)
{
    float t = __fsub_rn(__fsub_rn(v, st.hi), st.lo);
    if (blocked) {
        float sc = gamma ? (float)(st.is * (double)gamma[ch]) : st.isf;
        return __fadd_rn(__fmul_rn(t, sc), beta ? beta[ch] : 0.0f);
    }
    t = __fmul_rn(t, st.isf);
    if (gamma)
        t = __fmul_rn(t, gamma[ch]);
    if (beta)
        t = __fadd_rn(t, beta[ch]);
    return t;
}

/* Sums of d = x - shift and d^2 over elements [e0, e1) of a group; this thread's share. */
__device__ __forceinline__ void gn_forward_sums(const gn_geo &q, const float *xg, float shift,
                                                int64_t e0, int64_t e1, double (&v)[2])
{
    v[0] = v[1] = 0.0;
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        int64_t j;
        double d = (double)xg[gn_at(q, e, &j)] - (double)shift;
        v[0] += d;
        v[1] += d * d;
    }
}

__device__ __forceinline__ void gn_forward_apply(const gn_geo &q, const float *xg, float *yg,
                                                 int64_t ch0, int64_t e0, int64_t e1,
                                                 const gn_stats &st, bool blocked,
                                                 const float *gamma, const float *beta)
{
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        int64_t j, o = gn_at(q, e, &j);
        yg[o] = gn_value(xg[o], st, blocked, gamma, beta, ch0 + j);
    }
}

/* One block per group: statistics, then the normalized output. */
__global__ void gn_forward_fused_kernel(const float *__restrict__ x, float *__restrict__ y,
                                        gn_geo q, int64_t ngroups,
                                        const float *__restrict__ gamma,
                                        const float *__restrict__ beta, float eps, bool blocked,
                                        float *__restrict__ mean, float *__restrict__ invstd)
{
    __shared__ double sh[2][32];
    __shared__ gn_stats s_st;
    for (int64_t grp = blockIdx.x; grp < ngroups; grp += gridDim.x) {
        int64_t base = gn_base(q, grp), ch0 = (grp % q.groups) * q.cg;
        float shift = x[base]; /* the group's first value */
        double v[2];
        gn_forward_sums(q, x + base, shift, 0, q.len, v);
        block_sum<2>(v, sh);
        if (threadIdx.x == 0)
            s_st = gn_forward_stats(v[0], v[1], (double)q.len, shift, eps, &mean[grp],
                                    &invstd[grp]);
        __syncthreads();
        gn_stats st = s_st;
        gn_forward_apply(q, x + base, y + base, ch0, 0, q.len, st, blocked, gamma, beta);
        __syncthreads(); /* s_st and sh are rewritten for the next group */
    }
}

/* Chunked: the sums of one (group, chunk) into part[(grp * chunks + k) * 2 + i]. */
__global__ void gn_forward_part_kernel(const float *__restrict__ x, gn_geo q, int64_t ngroups,
                                       int64_t chunks, double *__restrict__ part)
{
    __shared__ double sh[2][32];
    for (int64_t item = blockIdx.x; item < ngroups * chunks; item += gridDim.x) {
        int64_t grp = item / chunks, k = item - grp * chunks, e0, e1;
        gn_chunk(q.len, chunks, k, &e0, &e1);
        int64_t base = gn_base(q, grp);
        double v[2];
        gn_forward_sums(q, x + base, x[base], e0, e1, v);
        block_sum<2>(v, sh);
        if (threadIdx.x == 0) {
            part[item * 2] = v[0];
            part[item * 2 + 1] = v[1];
        }
        __syncthreads();
    }
}

/* Chunked: one warp per group adds its chunks' sums; statistics into mean/invstd and st. */
__global__ void gn_forward_finish_kernel(const float *__restrict__ x, gn_geo q,
                                         int64_t ngroups, int64_t chunks, float eps,
                                         const double *__restrict__ part,
                                         float *__restrict__ mean, float *__restrict__ invstd,
                                         gn_stats *__restrict__ st)
{
    const int lane = threadIdx.x & 31;
    const int64_t grp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (grp >= ngroups)
        return;
    double s1 = 0.0, s2 = 0.0;
    for (int64_t k = lane; k < chunks; k += 32) {
        s1 += part[(grp * chunks + k) * 2];
        s2 += part[(grp * chunks + k) * 2 + 1];
    }
    s1 = warp_sum(s1);
    s2 = warp_sum(s2);
    if (lane == 0)
        st[grp] = gn_forward_stats(s1, s2, (double)q.len, x[gn_base(q, grp)], eps, &mean[grp],
                                   &invstd[grp]);
}

__global__ void gn_forward_apply_kernel(const float *__restrict__ x, float *__restrict__ y,
                                        gn_geo q, int64_t ngroups, int64_t chunks,
                                        const gn_stats *__restrict__ st,
                                        const float *__restrict__ gamma,
                                        const float *__restrict__ beta, bool blocked)
{
    for (int64_t item = blockIdx.x; item < ngroups * chunks; item += gridDim.x) {
        int64_t grp = item / chunks, k = item - grp * chunks, e0, e1;
        gn_chunk(q.len, chunks, k, &e0, &e1);
        int64_t base = gn_base(q, grp), ch0 = (grp % q.groups) * q.cg;
        gn_forward_apply(q, x + base, y + base, ch0, e0, e1, st[grp], blocked, gamma, beta);
    }
}

extern "C" void ct_cuda_groupnorm_forward(const float *x, float *y, int64_t rows,
                                          int64_t spatial, int64_t c, int64_t groups,
                                          const float *gamma, const float *beta, float eps,
                                          float *mean, float *invstd)
{
    if (spatial <= 0 || c <= 0 || groups <= 0 || rows <= 0)
        return;
    gn_geo q = {spatial, c, c / groups, groups, spatial * (c / groups)};
    int64_t ngroups = rows * groups;
    if (q.len <= 0)
        return;
    bool blocked = spatial > 1 && q.cg < 64; /* the CPU's choice of form, see gn_value */
    gn_plan p = plan_groups(ngroups, q.len);
    cudaStream_t s = ct_cuda_stream();
    if (p.chunks == 1) {
        gn_forward_fused_kernel<<<grid_for_items(ngroups), p.threads, 0, s>>>(
            x, y, q, ngroups, gamma, beta, eps, blocked, mean, invstd);
        ct_cuda_check_launch("groupnorm_forward");
        return;
    }
    double *part = (double *)ct_cuda_scratch(0, (size_t)(ngroups * p.chunks * 2) * sizeof(double));
    if (!part)
        return;
    gn_stats *st = (gn_stats *)ct_cuda_scratch(1, (size_t)ngroups * sizeof(gn_stats));
    if (!st)
        return;
    unsigned grid = grid_for_items(ngroups * p.chunks);
    gn_forward_part_kernel<<<grid, p.threads, 0, s>>>(x, q, ngroups, p.chunks, part);
    ct_cuda_check_launch("groupnorm_forward");
    gn_forward_finish_kernel<<<(unsigned)((ngroups * 32 + NORM_THREADS - 1) / NORM_THREADS),
                               NORM_THREADS, 0, s>>>(x, q, ngroups, p.chunks, eps, part, mean,
                                                     invstd, st);
    ct_cuda_check_launch("groupnorm_forward");
    gn_forward_apply_kernel<<<grid, p.threads, 0, s>>>(x, y, q, ngroups, p.chunks, st, gamma,
                                                       beta, blocked);
    ct_cuda_check_launch("groupnorm_forward");
}

/* -- backward -- */

/* A group's constants of dx. With delta = mean(x - mean) (what the float mean missed) and
 * xhat = ((x - mean) - delta) * is: dx = is * gamma * dy - b - ((x - mean) - dl) * e,
 * dl = delta, b = is * mean(dy * gamma), e = is^2 * mean(dy * gamma * xhat). delta, in
 * double, also serves dgamma. */
struct gn_grad {
    double delta;
    float dl, b, e;
};

__device__ __forceinline__ gn_grad gn_backward_consts(double t0, double t1, double t2,
                                                      double inv_n, float invstd)
{
    double is = (double)invstd, delta = t0 * inv_n;
    double sx = is * __dsub_rn(t2, __dmul_rn(delta, t1)); /* sum(dy * gamma * xhat) */
    gn_grad k;
    k.delta = delta;
    k.dl = (float)delta;
    k.b = (float)(is * t1 * inv_n);
    k.e = (float)(is * is * sx * inv_n);
    return k;
}

/* Whether dy * gamma is a float product, as the CPU forms it for single positions (layer
 * norm) and for groups wider than its 256-channel blocks; elsewhere it folds gamma into
 * double per-channel sums, which is the exact product. */
static bool gn_float_product(int64_t spatial, int64_t cg)
{
    return spatial == 1 || cg > 256;
}

/* Sums of d = x - m, g = dy * gamma and g * d over elements [e0, e1) of a group. */
__device__ __forceinline__ void gn_backward_sums(const gn_geo &q, const float *xg,
                                                 const float *dyg, const float *gamma,
                                                 bool fprod, int64_t ch0, float m, int64_t e0,
                                                 int64_t e1, double (&v)[3])
{
    v[0] = v[1] = v[2] = 0.0;
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        int64_t j, o = gn_at(q, e, &j);
        double d = (double)xg[o] - (double)m, g = (double)dyg[o];
        if (gamma)
            g = fprod ? (double)__fmul_rn(dyg[o], gamma[ch0 + j]) : g * (double)gamma[ch0 + j];
        v[0] += d;
        v[1] += g;
        v[2] += g * d;
    }
}

/* a = is * gamma rounded to float, as both CPU forms have it. */
__device__ __forceinline__ void gn_backward_apply(const gn_geo &q, const float *xg,
                                                  const float *dyg, float *dxg,
                                                  const float *gamma, int64_t ch0, float m,
                                                  float isf, const gn_grad &k, int64_t e0,
                                                  int64_t e1)
{
    for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        int64_t j, o = gn_at(q, e, &j);
        float a = gamma ? __fmul_rn(isf, gamma[ch0 + j]) : isf;
        dxg[o] = grad_value(xg[o], dyg[o], m, k.dl, a, k.b, k.e);
    }
}

/* One block per group: its sums and constants (delta into gdelta), then dx when wanted. */
__global__ void gn_backward_fused_kernel(const float *__restrict__ x,
                                         const float *__restrict__ dy, float *__restrict__ dx,
                                         gn_geo q, int64_t ngroups,
                                         const float *__restrict__ gamma, bool fprod,
                                         const float *__restrict__ mean,
                                         const float *__restrict__ invstd,
                                         double *__restrict__ gdelta)
{
    __shared__ double sh[3][32];
    __shared__ gn_grad s_k;
    const double inv_n = 1.0 / (double)q.len;
    for (int64_t grp = blockIdx.x; grp < ngroups; grp += gridDim.x) {
        int64_t base = gn_base(q, grp), ch0 = (grp % q.groups) * q.cg;
        float m = mean[grp];
        double v[3];
        gn_backward_sums(q, x + base, dy + base, gamma, fprod, ch0, m, 0, q.len, v);
        block_sum<3>(v, sh);
        if (threadIdx.x == 0) {
            s_k = gn_backward_consts(v[0], v[1], v[2], inv_n, invstd[grp]);
            gdelta[grp] = s_k.delta;
        }
        __syncthreads();
        if (dx) {
            gn_grad k = s_k;
            gn_backward_apply(q, x + base, dy + base, dx + base, gamma, ch0, m, invstd[grp], k,
                              0, q.len);
        }
        __syncthreads();
    }
}

__global__ void gn_backward_part_kernel(const float *__restrict__ x,
                                        const float *__restrict__ dy, gn_geo q,
                                        int64_t ngroups, int64_t chunks,
                                        const float *__restrict__ gamma, bool fprod,
                                        const float *__restrict__ mean,
                                        double *__restrict__ part)
{
    __shared__ double sh[3][32];
    for (int64_t item = blockIdx.x; item < ngroups * chunks; item += gridDim.x) {
        int64_t grp = item / chunks, k = item - grp * chunks, e0, e1;
        gn_chunk(q.len, chunks, k, &e0, &e1);
        int64_t base = gn_base(q, grp), ch0 = (grp % q.groups) * q.cg;
        double v[3];
        gn_backward_sums(q, x + base, dy + base, gamma, fprod, ch0, mean[grp], e0, e1, v);
        block_sum<3>(v, sh);
        if (threadIdx.x == 0)
            for (int i = 0; i < 3; i++)
                part[item * 3 + i] = v[i];
        __syncthreads();
    }
}

__global__ void gn_backward_finish_kernel(gn_geo q, int64_t ngroups, int64_t chunks,
                                          const double *__restrict__ part,
                                          const float *__restrict__ invstd,
                                          gn_grad *__restrict__ consts,
                                          double *__restrict__ gdelta)
{
    const int lane = threadIdx.x & 31;
    const int64_t grp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (grp >= ngroups)
        return;
    double t[3];
    for (int i = 0; i < 3; i++) {
        double v = 0.0;
        for (int64_t k = lane; k < chunks; k += 32)
            v += part[(grp * chunks + k) * 3 + i];
        t[i] = warp_sum(v);
    }
    if (lane == 0) {
        gn_grad k = gn_backward_consts(t[0], t[1], t[2], 1.0 / (double)q.len, invstd[grp]);
        consts[grp] = k;
        gdelta[grp] = k.delta;
    }
}

__global__ void gn_backward_apply_kernel(const float *__restrict__ x,
                                         const float *__restrict__ dy, float *__restrict__ dx,
                                         gn_geo q, int64_t ngroups, int64_t chunks,
                                         const float *__restrict__ gamma,
                                         const float *__restrict__ mean,
                                         const float *__restrict__ invstd,
                                         const gn_grad *__restrict__ consts)
{
    for (int64_t item = blockIdx.x; item < ngroups * chunks; item += gridDim.x) {
        int64_t grp = item / chunks, k = item - grp * chunks, e0, e1;
        gn_chunk(q.len, chunks, k, &e0, &e1);
        int64_t base = gn_base(q, grp), ch0 = (grp % q.groups) * q.cg;
        gn_backward_apply(q, x + base, dy + base, dx + base, gamma, ch0, mean[grp],
                          invstd[grp], consts[grp], e0, e1);
    }
}

/* dgamma and dbeta: per-channel sums over the rows x spatial positions of dy * xhat and
 * dy, xhat from the position's group constants. For single positions (layer norm) the CPU
 * forms dy * xhat in float, ((x - m) - (float)delta) * is * dy, and so does this. */
struct gn_param_op {
    const float *x, *dy, *mean, *invstd;
    const double *gdelta;
    int64_t c, spatial, groups, cg, n, ch, g;
    bool in_float;
    struct item {
        float x, dy, m, is;
        double delta;
    };
    __device__ void begin(int64_t channel)
    {
        ch = channel;
        g = channel / cg;
    }
    __device__ item load(int64_t row) const
    {
        int64_t r;
        if (spatial == 1)
            r = row;
        else if (n <= (int64_t)UINT32_MAX)
            r = (int64_t)((uint32_t)row / (uint32_t)spatial);
        else
            r = row / spatial;
        int64_t grp = r * groups + g;
        item v = {x[row * c + ch], dy[row * c + ch], mean[grp], invstd[grp], gdelta[grp]};
        return v;
    }
    __device__ void add(const item &v, double *acc) const
    {
        double g = (double)v.dy;
        if (in_float)
            acc[0] += (double)__fmul_rn(
                v.dy, __fmul_rn(__fsub_rn(__fsub_rn(v.x, v.m), (float)v.delta), v.is));
        else
            acc[0] += g * ((((double)v.x - (double)v.m) - v.delta) * (double)v.is);
        acc[1] += g;
    }
};

struct gn_param_fin {
    float *dgamma, *dbeta;
    __device__ void operator()(int64_t ch, const double *s) const
    {
        if (dgamma)
            dgamma[ch] = (float)s[0];
        if (dbeta)
            dbeta[ch] = (float)s[1];
    }
};

extern "C" void ct_cuda_groupnorm_backward(const float *x, const float *dy, float *dx,
                                           int64_t rows, int64_t spatial, int64_t c,
                                           int64_t groups, const float *gamma,
                                           const float *mean, const float *invstd,
                                           float *dgamma, float *dbeta)
{
    if (spatial <= 0 || c <= 0 || groups <= 0 || rows < 0 || c / groups <= 0)
        return;
    gn_geo q = {spatial, c, c / groups, groups, spatial * (c / groups)};
    int64_t ngroups = rows * groups;
    cudaStream_t s = ct_cuda_stream();
    bool fprod = gn_float_product(spatial, q.cg);
    double *gdelta = NULL;
    if (ngroups > 0 && q.len > 0) {
        gn_plan p = plan_groups(ngroups, q.len);
        /* delta per group, then (chunked) the groups' constants */
        size_t bytes = (size_t)ngroups * sizeof(double);
        if (p.chunks > 1)
            bytes += (size_t)ngroups * sizeof(gn_grad);
        gdelta = (double *)ct_cuda_scratch(1, bytes);
        if (!gdelta)
            return;
        if (p.chunks == 1) {
            gn_backward_fused_kernel<<<grid_for_items(ngroups), p.threads, 0, s>>>(
                x, dy, dx, q, ngroups, gamma, fprod, mean, invstd, gdelta);
            ct_cuda_check_launch("groupnorm_backward");
        } else {
            gn_grad *consts = (gn_grad *)(gdelta + ngroups);
            double *part = (double *)ct_cuda_scratch(
                0, (size_t)(ngroups * p.chunks * 3) * sizeof(double));
            if (!part)
                return;
            unsigned grid = grid_for_items(ngroups * p.chunks);
            gn_backward_part_kernel<<<grid, p.threads, 0, s>>>(x, dy, q, ngroups, p.chunks,
                                                               gamma, fprod, mean, part);
            ct_cuda_check_launch("groupnorm_backward");
            gn_backward_finish_kernel<<<(unsigned)((ngroups * 32 + NORM_THREADS - 1) /
                                                   NORM_THREADS),
                                        NORM_THREADS, 0, s>>>(q, ngroups, p.chunks, part,
                                                              invstd, consts, gdelta);
            ct_cuda_check_launch("groupnorm_backward");
            if (dx) {
                gn_backward_apply_kernel<<<grid, p.threads, 0, s>>>(
                    x, dy, dx, q, ngroups, p.chunks, gamma, mean, invstd, consts);
                ct_cuda_check_launch("groupnorm_backward");
            }
        }
    }
    if (!dgamma && !dbeta)
        return;
    int64_t n = rows * spatial;
    gn_param_op op = {x, dy, mean, invstd, gdelta, c, spatial, groups, q.cg, n, 0, 0, spatial == 1};
    gn_param_fin fin = {dgamma, dbeta};
    column_sums<2>(op, fin, n, c, 2, "groupnorm_backward");
}
