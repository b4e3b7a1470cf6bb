/* cuda_train.cu - the training step's ops on the GPU: losses, metrics, regularization,
 * gradient clipping and the optimizer updates. The CPU references are src/train/loss.c,
 * src/train/metric.c and src/backend/backend_cpu_train.c (the formulas: optimizers/); the formulas and
 * edge cases here follow them line by line.
 *
 * Sums are taken in double, as on the CPU, but in a fixed tree order instead of the CPU's
 * left-to-right one: each block of a reducing kernel writes one partial into scratch
 * memory and a single-block kernel adds the partials in index order. The grid size is a
 * function of the problem size only, so the same inputs always give the same bits.
 *
 * Element-wise results (gradients, updated weights and state) use round-to-nearest
 * intrinsics wherever a multiply feeds an add: nvcc would otherwise fuse them into one
 * multiply-add, which the CPU build (ISO C, no contraction) never does. Without a
 * transcendental function in the formula they then match the CPU bit for bit. */
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "cuda_internal.h"

namespace {

/* Every kernel here runs blocks of this size; the reductions below assume it. */
constexpr int kThreads = CT_CUDA_THREADS;
/* Blocks of a reducing kernel at most (about one full wave on an H100), so the final
 * single-block pass has at most this many partials to add. */
constexpr int kMaxBlocks = 1024;
/* Keras's probability clip. */
constexpr float kEps = 1e-7f;

static_assert(kThreads == 256, "the group reductions assume 256-thread blocks");

/* ---- arithmetic without contraction ------------------------------------------------- */

__device__ __forceinline__ double dmul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double dadd(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double dsub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double ddiv(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float fmul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float fadd(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float fsub(float a, float b) { return __fsub_rn(a, b); }

__device__ __forceinline__ double sign(double x) { return (double)((x > 0) - (x < 0)); }

/* log(1 + exp(z)) without overflow. */
__device__ __forceinline__ double softplus(double z)
{
    return fmax(z, 0.0) + log1p(exp(-fabs(z)));
}

__device__ __forceinline__ double sigmoid(double z)
{
    if (z >= 0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* Keras's clip to [eps, 1 - eps], in float so the bounds are Keras's. NaN passes through
 * and counts as clipped. */
__device__ __forceinline__ float clip_prob(float p, bool *inside)
{
    const float lo = kEps, hi = 1.0f - kEps;
    *inside = p >= lo && p <= hi;
    return p < lo ? lo : (p > hi ? hi : p);
}

/* ---- reductions over a group of G threads (1, a warp, or the whole block) -------------
 * The warp part is a butterfly: each step adds a value and its partner's in either order,
 * which gives the same bits, so every lane ends with the same result. The block part has
 * every thread combine the warps' results in warp order. */

struct ArgMax {
    float v;
    long long i;
};

struct SumOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const
    {
        return a + b;
    }
};

/* fmax ignores NaN, as the CPU's running fmax does. */
struct MaxOp {
    __device__ __forceinline__ double operator()(double a, double b) const { return fmax(a, b); }
};

/* numpy's argmax order: a larger value wins, then the lower index; NaN loses to any
 * number (the CPU's scan never moves to a NaN; a leading NaN is handled by the caller). */
__device__ __forceinline__ bool beats(ArgMax a, ArgMax b)
{
    bool an = isnan(a.v), bn = isnan(b.v);
    if (an != bn)
        return bn;
    if (!an && a.v != b.v)
        return a.v > b.v;
    return a.i < b.i;
}

struct ArgMaxOp {
    __device__ __forceinline__ ArgMax operator()(ArgMax a, ArgMax b) const
    {
        return beats(a, b) ? a : b;
    }
};

__device__ __forceinline__ double shfl(double v, int m)
{
    return __shfl_xor_sync(0xffffffffu, v, m);
}

__device__ __forceinline__ long long shfl(long long v, int m)
{
    return __shfl_xor_sync(0xffffffffu, v, m);
}

__device__ __forceinline__ ArgMax shfl(ArgMax a, int m)
{
    ArgMax r;
    r.v = __shfl_xor_sync(0xffffffffu, a.v, m);
    r.i = __shfl_xor_sync(0xffffffffu, a.i, m);
    return r;
}

/* Combines v over the G threads of a group; every thread of the group gets the result.
 * G = 256 must be reached by the whole block. */
template <int G, typename T, typename Op>
__device__ __forceinline__ T group_reduce(T v, Op op)
{
    static_assert(G == 1 || G == 32 || G == kThreads, "group: a thread, a warp or a block");
    if constexpr (G > 1) {
        for (int m = 16; m > 0; m >>= 1)
            v = op(v, shfl(v, m));
    }
    if constexpr (G > 32) {
        __shared__ T part[G / 32];
        __syncthreads(); /* the previous call's readers are done with part */
        if ((threadIdx.x & 31) == 0)
            part[threadIdx.x >> 5] = v;
        __syncthreads();
        v = part[0];
        for (int w = 1; w < G / 32; w++)
            v = op(v, part[w]);
    }
    return v;
}

/* First index of the maximum of x[0..n), as the CPU's argmax (a NaN at 0 stays). */
template <int G>
__device__ __forceinline__ int64_t group_argmax(const float *x, int64_t n, int lane)
{
    ArgMax best = {__int_as_float(0x7fc00000), (long long)INT64_MAX};
    for (int64_t c = lane; c < n; c += G) {
        ArgMax cand = {x[c], (long long)c};
        if (beats(cand, best))
            best = cand;
    }
    best = group_reduce<G>(best, ArgMaxOp());
    return isnan(x[0]) ? 0 : (int64_t)best.i;
}

/* ---- the row driver: per-row values summed into a double ----------------------------- */

/* One group of G threads per row (grid-stride over rows). F::row<G>(r, lane) returns the
 * row's value in every lane; lane 0 keeps a running sum, and the block's sum goes to
 * partial[blockIdx.x]. */
template <int G, typename F>
__global__ void __launch_bounds__(kThreads) rows_kernel(F f, int64_t rows, double *partial)
{
    const int per_block = kThreads / G;
    const int lane = (int)(threadIdx.x % G);
    const int64_t stride = (int64_t)gridDim.x * per_block;
    double acc = 0.0;
    for (int64_t r = (int64_t)blockIdx.x * per_block + threadIdx.x / G; r < rows; r += stride) {
        double v = f.template row<G>(r, lane);
        if (lane == 0)
            acc += v;
    }
    acc = group_reduce<kThreads>(acc, SumOp());
    if (threadIdx.x == 0)
        partial[blockIdx.x] = acc;
}

/* One block: *out (+)= the sum of partial[0..n) in a fixed order. */
__global__ void __launch_bounds__(kThreads)
    finish_kernel(const double *partial, int n, double *out, bool accumulate)
{
    double acc = 0.0;
    for (int i = (int)threadIdx.x; i < n; i += kThreads)
        acc += partial[i];
    acc = group_reduce<kThreads>(acc, SumOp());
    if (threadIdx.x == 0)
        *out = accumulate ? *out + acc : acc;
}

unsigned reduce_grid(int64_t n, int per_block)
{
    unsigned b = ct_cuda_grid(n, per_block);
    return b > (unsigned)kMaxBlocks ? (unsigned)kMaxBlocks : b;
}

/* Per-row partials need scratch slot 0: kMaxBlocks doubles, then a few words of room. */
double *partials(void)
{
    return (double *)ct_cuda_scratch(0, (kMaxBlocks + 4) * sizeof(double));
}

/* Runs F over rows with a group size suited to cols: a thread per short row, a warp per
 * row up to 2048 columns, a block per longer row. Then adds the total into *sum. */
template <typename F>
void run_rows(const char *what, const F &f, int64_t rows, int64_t cols, double *partial,
              double *sum)
{
    cudaStream_t s = ct_cuda_stream();
    unsigned blocks;
    if (cols <= 16) {
        blocks = reduce_grid(rows, kThreads);
        rows_kernel<1><<<blocks, kThreads, 0, s>>>(f, rows, partial);
    } else if (cols <= 2048) {
        blocks = reduce_grid(rows, kThreads / 32);
        rows_kernel<32><<<blocks, kThreads, 0, s>>>(f, rows, partial);
    } else {
        blocks = reduce_grid(rows, 1);
        rows_kernel<kThreads><<<blocks, kThreads, 0, s>>>(f, rows, partial);
    }
    ct_cuda_check_launch(what);
    finish_kernel<<<1, kThreads, 0, s>>>(partial, (int)blocks, sum, true);
    ct_cuda_check_launch(what);
}

/* ---- losses ------------------------------------------------------------------------------ */

struct LossParams {
    double g;     /* scale / cols: the elementwise losses' gradient factor */
    double scale;
    double delta; /* huber */
    bool from_logits, fused;
    double ls, alpha, gamma; /* label smoothing; the focal losses' alpha and gamma */
    bool balancing;          /* binary focal: apply_class_balancing */
};

/* fmax that keeps a NaN first argument (fmax would return the bound), as loss.c's. */
__device__ __forceinline__ double max_nan(double a, double b)
{
    return isnan(a) ? a : fmax(a, b);
}

/* Keras's label smoothing for binary targets (loss.c's smooth_binary). */
__device__ __forceinline__ double smooth_binary(double y, double ls)
{
    return ls != 0.0 ? dadd(dmul(y, 1.0 - ls), dmul(0.5, ls)) : y;
}

/* Binary focal crossentropy of one element (loss.c's binary_focal_elem). */
__device__ __forceinline__ double binary_focal(double x, double y, const LossParams &k,
                                               double *dx)
{
    y = smooth_binary(y, k.ls);
    double p = k.from_logits ? sigmoid(x) : x;
    bool inside;
    float pc = clip_prob((float)p, &inside);
    double q = pc, q1 = fsub(1.0f, pc);
    double bce = -dadd(dmul(y, log(q)), dmul(1.0 - y, log(q1)));
    double dbce = inside ? dadd(-y / q, (1.0 - y) / q1) : 0.0;
    double u = 1.0 - dadd(dmul(y, p), dmul(1.0 - y, 1.0 - p)), g = k.gamma;
    double ff = pow(u, g);
    double dff = u != 0.0 ? dmul(dmul(-g, pow(u, g - 1.0)), dsub(dmul(2.0, y), 1.0)) : 0.0;
    double w = 1.0;
    if (k.balancing)
        w = dadd(dmul(y, k.alpha), dmul(1.0 - y, 1.0 - k.alpha));
    double dp = dmul(w, dadd(dmul(dff, bce), dmul(ff, dbce)));
    *dx = k.from_logits ? dmul(dmul(dp, p), 1.0 - p) : dp;
    return dmul(dmul(w, ff), bce);
}

/* One element of an elementwise loss: returns its value, sets *grad to the finished
 * gradient. conv: hinge's {0, 1} -> {-1, 1} conversion. */
template <ct_loss_id ID>
__device__ __forceinline__ double loss_elem(float pf, float yf, const LossParams &k, bool conv,
                                            float *grad)
{
    if constexpr (ID == CT_LOSS_MSE) {
        double e = (double)pf - (double)yf;
        *grad = (float)dmul(k.g, 2.0 * e);
        return e * e;
    } else if constexpr (ID == CT_LOSS_MAE) {
        double e = (double)pf - (double)yf;
        *grad = (float)dmul(k.g, sign(e));
        return fabs(e);
    } else if constexpr (ID == CT_LOSS_HUBER) {
        double e = (double)pf - (double)yf, a = fabs(e), d = k.delta;
        if (a <= d) {
            *grad = (float)dmul(k.g, e);
            return dmul(dmul(0.5, e), e);
        }
        *grad = (float)dmul(k.g, dmul(d, sign(e)));
        return dsub(dmul(d, a), dmul(dmul(0.5, d), d));
    } else if constexpr (ID == CT_LOSS_LOG_COSH) {
        /* log(cosh(e)) = e + softplus(-2e) - log(2): finite for any e (Keras's form). */
        double e = (double)pf - (double)yf;
        *grad = (float)dmul(k.g, tanh(e));
        return e + softplus(-2.0 * e) - log(2.0);
    } else if constexpr (ID == CT_LOSS_BCE) {
        double y = smooth_binary(yf, k.ls), d;
        if (k.from_logits) {
            double x = pf;
            d = sigmoid(x) - y;
            *grad = (float)dmul(k.g, d);
            return dadd(dmul(y, softplus(-x)), dmul(1.0 - y, softplus(x)));
        }
        bool inside;
        float pc = clip_prob(pf, &inside);
        double q = pc, q1 = fsub(1.0f, pc); /* 1 - pc is exact in float */
        if (k.fused)
            d = (double)pf - y;
        else
            d = inside ? -y / q + (1.0 - y) / q1 : 0.0;
        *grad = (float)dmul(k.g, d);
        return -dadd(dmul(y, log(q)), dmul(1.0 - y, log(q1)));
    } else if constexpr (ID == CT_LOSS_KLD) {
        /* sum_c y log(y / p), both clipped to [eps, 1]; per sample a sum, not a mean. */
        double yc = fmin(fmax((double)yf, (double)kEps), 1.0);
        double pc = isnan(pf) ? (double)NAN : fmin(fmax((double)pf, (double)kEps), 1.0);
        bool inside = pf >= kEps && pf <= 1.0f;
        *grad = inside ? (float)ddiv(dmul(-k.scale, yc), pc) : 0.0f;
        return dmul(yc, log(yc / pc));
    } else if constexpr (ID == CT_LOSS_MSLE) {
        double p = pf, pc = max_nan(p, (double)kEps);
        double d = log(pc + 1.0) - log(max_nan((double)yf, (double)kEps) + 1.0);
        *grad = p > kEps ? (float)dmul(k.g, dmul(2.0, d) / (pc + 1.0)) : 0.0f;
        return dmul(d, d);
    } else if constexpr (ID == CT_LOSS_MAPE) {
        double p = pf, y = yf, a = max_nan(fabs(y), (double)kEps);
        *grad = (float)dmul(k.g, dmul(100.0, sign(p - y)) / a);
        return dmul(100.0, fabs(y - p)) / a;
    } else if constexpr (ID == CT_LOSS_POISSON) {
        double p = pf, y = yf;
        *grad = (float)dmul(k.g, 1.0 - y / (p + (double)kEps));
        return dsub(p, dmul(y, log(p + (double)kEps)));
    } else if constexpr (ID == CT_LOSS_BINARY_FOCAL) {
        double d, v = binary_focal(pf, yf, k, &d);
        *grad = (float)dmul(k.g, d);
        return v;
    } else {
        static_assert(ID == CT_LOSS_HINGE || ID == CT_LOSS_SQUARED_HINGE, "an elementwise loss");
        const bool sq = ID == CT_LOSS_SQUARED_HINGE;
        double yc = conv ? dsub(dmul(2.0, (double)yf), 1.0) : (double)yf;
        double m = dsub(1.0, dmul(yc, (double)pf));
        *grad = m > 0 ? (float)dmul(dmul(-k.g, yc), sq ? dmul(2.0, m) : 1.0) : 0.0f;
        double h = m > 0 || isnan(m) ? m : 0.0;
        return sq ? dmul(h, h) : h;
    }
}

/* Elementwise losses: the per-sample value is the mean over the row (kl_divergence: the
 * sum). nonbinary: hinge's batch-wide label check (nonzero: some label is not 0 or 1). */
template <ct_loss_id ID>
struct ElemLoss {
    const float *pred, *y;
    float *dpred;
    int64_t cols;
    LossParams k;
    const int *nonbinary;

    template <int G> __device__ __forceinline__ double row(int64_t r, int lane) const
    {
        bool conv = (ID == CT_LOSS_HINGE || ID == CT_LOSS_SQUARED_HINGE) && *nonbinary == 0;
        const int64_t base = r * cols;
        double s = 0.0;
        for (int64_t c = lane; c < cols; c += G) {
            float grad;
            s += loss_elem<ID>(pred[base + c], y[base + c], k, conv, &grad);
            if (dpred)
                dpred[base + c] = grad;
        }
        s = group_reduce<G>(s, SumOp());
        return ID == CT_LOSS_KLD ? s : s / (double)cols;
    }
};

/* Sets *flag when some label is neither 0 nor 1 (NaN included). Every writer stores the
 * same value, so the result does not depend on which one lands. */
__global__ void __launch_bounds__(kThreads) nonbinary_kernel(const float *y, int64_t n, int *flag)
{
    int64_t stride = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += stride) {
        float v = y[i];
        if (v != 0.0f && v != 1.0f) {
            *flag = 1;
            return;
        }
    }
}

struct MinOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const
    {
        return a < b ? a : b;
    }
};

/* The losses with a value per row (loss.c's cosine_row, cat_hinge_row, cat_focal_row). */
template <ct_loss_id ID>
struct RowLoss {
    const float *pred, *y;
    float *dpred;
    int64_t cols;
    LossParams k;

    template <int G> __device__ __forceinline__ double row(int64_t r, int lane) const
    {
        const float *p = pred + r * cols, *yr = y + r * cols;
        float *d = dpred ? dpred + r * cols : nullptr;
        if constexpr (ID == CT_LOSS_COSINE)
            return cosine<G>(p, yr, d, lane);
        else if constexpr (ID == CT_LOSS_CAT_HINGE)
            return cat_hinge<G>(p, yr, d, lane);
        else
            return cat_focal<G>(p, yr, d, lane);
    }

    /* -sum(y / |y| * p / |p|), each norm at least eps. */
    template <int G>
    __device__ __forceinline__ double cosine(const float *p, const float *yr, float *d,
                                             int lane) const
    {
        double pp = 0.0, yy = 0.0, py = 0.0;
        for (int64_t c = lane; c < cols; c += G) {
            pp += (double)p[c] * p[c];
            yy += (double)yr[c] * yr[c];
            py += (double)p[c] * yr[c];
        }
        pp = group_reduce<G>(pp, SumOp());
        yy = group_reduce<G>(yy, SumOp());
        py = group_reduce<G>(py, SumOp());
        double np = max_nan(sqrt(pp), (double)kEps), ny = max_nan(sqrt(yy), (double)kEps);
        double kk = sqrt(pp) > kEps ? py / dmul(dmul(dmul(np, np), np), ny) : 0.0;
        for (int64_t c = lane; d && c < cols; c += G)
            d[c] = (float)dmul(k.scale, dadd(-(double)yr[c] / dmul(ny, np), dmul(kk, p[c])));
        return -py / dmul(np, ny);
    }

    /* max(max_c((1 - y_c) p_c) - sum_c y_c p_c + 1, 0); the maximum's gradient goes to its
     * first position (a NaN makes the value NaN and the gradient zero). */
    template <int G>
    __device__ __forceinline__ double cat_hinge(const float *p, const float *yr, float *d,
                                                int lane) const
    {
        double pos = 0.0, neg = -HUGE_VAL;
        long long nans = 0;
        for (int64_t c = lane; c < cols; c += G) {
            double v = dmul(1.0 - yr[c], (double)p[c]);
            pos += (double)yr[c] * p[c];
            neg = fmax(neg, v);
            nans += isnan(v);
        }
        pos = group_reduce<G>(pos, SumOp());
        neg = group_reduce<G>(neg, MaxOp());
        nans = group_reduce<G>(nans, SumOp());
        long long at = LLONG_MAX;
        for (int64_t c = lane; c < cols; c += G)
            if (dmul(1.0 - yr[c], (double)p[c]) == neg && c < at)
                at = c;
        at = group_reduce<G>(at, MinOp());
        double m = nans ? (double)NAN : neg - pos + 1.0;
        for (int64_t c = lane; d && c < cols; c += G)
            d[c] = m > 0 ? (float)dmul(k.scale, (c == at ? 1.0 - yr[c] : 0.0) - yr[c]) : 0.0f;
        return m > 0 || isnan(m) ? m : 0.0;
    }

    __device__ __forceinline__ double prob(const float *x, int64_t c, double lse) const
    {
        return k.from_logits ? exp((double)x[c] - lse) : (double)x[c];
    }

    /* -alpha sum_c y_c (1 - q_c)^gamma log q_c, q = clip(p / sum(p)); the gradient as in
     * loss.c: (G_j - sum_c G_c q_c) / S, times p_j from logits. */
    template <int G>
    __device__ __forceinline__ double cat_focal(const float *x, const float *yr, float *d,
                                                int lane) const
    {
        double lse = 0.0, s = 0.0, a = 0.0, value = 0.0, g = k.gamma;
        if (k.from_logits) {
            double mx = -HUGE_VAL, se = 0.0;
            long long nans = 0;
            for (int64_t c = lane; c < cols; c += G) {
                mx = fmax(mx, (double)x[c]);
                nans += isnan(x[c]);
            }
            mx = group_reduce<G>(mx, MaxOp());
            mx = group_reduce<G>(nans, SumOp()) ? (double)NAN : mx;
            for (int64_t c = lane; c < cols; c += G)
                se += exp((double)x[c] - mx);
            lse = mx + log(group_reduce<G>(se, SumOp()));
        }
        for (int64_t c = lane; c < cols; c += G)
            s += prob(x, c, lse);
        s = group_reduce<G>(s, SumOp());
        for (int64_t c = lane; c < cols; c += G) {
            bool inside;
            float q = clip_prob(!(s <= 0) ? (float)(prob(x, c, lse) / s) : 0.0f, &inside);
            double yc = target(yr, c), lq = log((double)q), u = 1.0 - (double)q;
            value -= dmul(dmul(dmul(k.alpha, yc), pow(u, g)), lq);
            if (inside)
                a += dmul(focal_grad(yc, q), (double)q);
        }
        value = group_reduce<G>(value, SumOp());
        if (!d)
            return value;
        a = group_reduce<G>(a, SumOp());
        for (int64_t c = lane; c < cols; c += G) {
            bool inside;
            float q = clip_prob(!(s <= 0) ? (float)(prob(x, c, lse) / s) : 0.0f, &inside);
            /* G_c rounded to float first, as the CPU keeps it in dpred */
            float gc = inside ? (float)focal_grad(target(yr, c), q) : 0.0f;
            double h = !(s <= 0) ? ((double)gc - a) / s : 0.0;
            d[c] = (float)dmul(dmul(k.scale, h), k.from_logits ? prob(x, c, lse) : 1.0);
        }
        return value;
    }

    __device__ __forceinline__ double target(const float *yr, int64_t c) const
    {
        double y = yr[c];
        return k.ls != 0.0 ? dadd(dmul(y, 1.0 - k.ls), k.ls / (double)cols) : y;
    }

    /* d/dq of -alpha y (1 - q)^gamma log q. */
    __device__ __forceinline__ double focal_grad(double yc, float qf) const
    {
        double q = qf, u = 1.0 - q, g = k.gamma;
        return dmul(-dmul(k.alpha, yc), dsub(pow(u, g) / q, dmul(dmul(g, pow(u, g - 1.0)),
                                                                 log(q))));
    }
};

/* Categorical crossentropy, dense (y: rows x cols) or sparse (y: one class index a row;
 * a label outside [0, cols) or NaN: the row adds nothing and gets a zero gradient). One
 * kernel for logits and one for probabilities keeps each within its registers. */
template <bool LOGITS>
struct CceLoss {
    const float *pred, *y;
    float *dpred;
    int64_t cols;
    double scale;
    bool fused, sparse;
    double ls; /* label smoothing (dense targets only) */

    /* Keras's smoothing for categorical targets: y (1 - ls) + ls / classes. */
    __device__ __forceinline__ double target(const float *yr, int64_t hot, int64_t c) const
    {
        double y = yr ? (double)yr[c] : (double)(c == hot);
        return ls != 0.0 ? dadd(dmul(y, 1.0 - ls), ls / (double)cols) : y;
    }

    template <int G> __device__ __forceinline__ double row(int64_t r, int lane) const
    {
        const float *x = pred + r * cols;
        float *d = dpred ? dpred + r * cols : nullptr;
        const float *yr = nullptr;
        int64_t hot = -1;
        if (sparse) {
            float label = y[r];
            if (!(label >= 0.0f && label < (float)cols)) {
                for (int64_t c = lane; d && c < cols; c += G)
                    d[c] = 0.0f;
                return 0.0;
            }
            hot = (int64_t)label;
        } else {
            yr = y + r * cols;
        }
        if constexpr (LOGITS)
            return logits<G>(x, yr, hot, d, lane);
        else
            return probs<G>(x, yr, hot, d, lane);
    }

    /* -sum_c y_c log_softmax(x)_c; gradient softmax(x) * sum(y) - y. */
    template <int G>
    __device__ __forceinline__ double logits(const float *x, const float *yr, int64_t hot,
                                             float *d, int lane) const
    {
        double mx = __longlong_as_double(0x7ff8000000000000ll), ysum = 0.0;
        for (int64_t c = lane; c < cols; c += G) {
            mx = fmax(mx, (double)x[c]);
            ysum += target(yr, hot, c);
        }
        mx = group_reduce<G>(mx, MaxOp());
        ysum = group_reduce<G>(ysum, SumOp());
        double se = 0.0;
        for (int64_t c = lane; c < cols; c += G)
            se += exp((double)x[c] - mx);
        se = group_reduce<G>(se, SumOp());
        double lse = mx + log(se), loss = 0.0;
        for (int64_t c = lane; c < cols; c += G) {
            double xc = x[c], yc = target(yr, hot, c);
            loss -= yc * (xc - lse);
            if (d)
                d[c] = (float)dmul(scale, dsub(dmul(exp(xc - lse), ysum), yc));
        }
        return group_reduce<G>(loss, SumOp());
    }

    /* Keras on probabilities: q = clip(p / sum(p)), loss -sum_c y_c log q_c; the gradient
     * goes through the normalisation (see src/train/loss.c); fused: p * sum(y) - y. */
    template <int G>
    __device__ __forceinline__ double probs(const float *p, const float *yr, int64_t hot,
                                            float *d, int lane) const
    {
        double s = 0.0;
        for (int64_t c = lane; c < cols; c += G)
            s += p[c];
        s = group_reduce<G>(s, SumOp());
        double value = 0.0, ysum = 0.0, yin = 0.0;
        for (int64_t c = lane; c < cols; c += G) {
            bool inside;
            float q = clip_prob(!(s <= 0) ? (float)(p[c] / s) : 0.0f, &inside);
            double yc = target(yr, hot, c);
            value -= yc * log((double)q);
            ysum += yc;
            if (inside)
                yin += yc;
        }
        value = group_reduce<G>(value, SumOp());
        if (!d)
            return value;
        ysum = group_reduce<G>(ysum, SumOp());
        yin = group_reduce<G>(yin, SumOp());
        for (int64_t c = lane; c < cols; c += G) {
            double yc = target(yr, hot, c);
            if (fused) {
                d[c] = (float)dmul(scale, dsub(dmul((double)p[c], ysum), yc));
                continue;
            }
            bool inside;
            float q = clip_prob(!(s <= 0) ? (float)(p[c] / s) : 0.0f, &inside);
            /* g_c = -y_c / q_c is rounded to float first, as the CPU stores it in dpred. */
            float gc = inside ? (float)(-yc / (double)q) : 0.0f;
            d[c] = !(s <= 0) ? (float)(dmul(scale, (double)gc + yin) / s) : 0.0f;
        }
        return value;
    }
};

static LossParams loss_params(const ct_loss_op *op, float scale, int64_t cols)
{
    LossParams k;
    k.g = (double)scale / (double)cols;
    k.scale = scale;
    k.delta = op->delta;
    k.from_logits = op->from_logits;
    k.fused = op->fused;
    k.ls = op->label_smoothing;
    k.alpha = op->alpha;
    k.gamma = op->gamma;
    k.balancing = op->apply_class_balancing;
    return k;
}

template <ct_loss_id ID>
void elem_loss(const ct_loss_op *op, const float *pred, const float *y, float *dpred,
               int64_t rows, int64_t cols, float scale, double *partial, const int *flag,
               double *sum)
{
    ElemLoss<ID> f;
    f.pred = pred;
    f.y = y;
    f.dpred = dpred;
    f.cols = cols;
    f.k = loss_params(op, scale, cols);
    f.nonbinary = flag;
    run_rows("loss", f, rows, cols, partial, sum);
}

template <ct_loss_id ID>
void row_loss(const ct_loss_op *op, const float *pred, const float *y, float *dpred,
              int64_t rows, int64_t cols, float scale, double *partial, double *sum)
{
    RowLoss<ID> f;
    f.pred = pred;
    f.y = y;
    f.dpred = dpred;
    f.cols = cols;
    f.k = loss_params(op, scale, cols);
    run_rows("loss", f, rows, cols, partial, sum);
}

template <bool LOGITS>
void cce_loss(const ct_loss_op *op, const float *pred, const float *y, float *dpred,
              int64_t rows, int64_t cols, float scale, double *partial, double *sum)
{
    CceLoss<LOGITS> f;
    f.pred = pred;
    f.y = y;
    f.dpred = dpred;
    f.cols = cols;
    f.scale = scale;
    f.fused = op->fused;
    f.sparse = op->id == CT_LOSS_SPARSE_CCE;
    f.ls = f.sparse ? 0.0 : op->label_smoothing;
    run_rows("loss", f, rows, cols, partial, sum);
}

/* ---- metrics ----------------------------------------------------------------------------- */

/* Keras's in_top_k: the target's rank is 1 + the number of strictly larger predictions. */
template <int G>
__device__ __forceinline__ bool group_in_top_k(const float *p, int64_t cols, int64_t t, int k,
                                               int lane)
{
    if (t < 0 || t >= cols || isnan(p[t]))
        return false;
    float pt = p[t];
    long long larger = 0;
    for (int64_t c = lane; c < cols; c += G)
        larger += p[c] > pt;
    return group_reduce<G>(larger, SumOp()) < k;
}

struct MetricRows {
    ct_metric_id id;
    int k;
    const float *pred, *y;
    int64_t cols;

    template <int G> __device__ __forceinline__ double row(int64_t r, int lane) const
    {
        const float *p = pred + r * cols;
        const bool sparse = id == CT_METRIC_SPARSE_ACC || id == CT_METRIC_SPARSE_TOP_K;
        const float *yr = sparse ? y : y + r * cols; /* sparse: y[r] is the label */
        switch (id) {
        case CT_METRIC_BINARY_ACC: {
            long long hits = 0;
            for (int64_t c = lane; c < cols; c += G)
                hits += (p[c] > 0.5f ? 1.0f : 0.0f) == yr[c];
            return (double)group_reduce<G>(hits, SumOp()) / (double)cols;
        }
        case CT_METRIC_CAT_ACC: {
            int64_t a = group_argmax<G>(p, cols, lane);
            int64_t b = group_argmax<G>(yr, cols, lane);
            return a == b ? 1.0 : 0.0;
        }
        case CT_METRIC_SPARSE_ACC:
            /* compared as floats, as Keras does: a label that is no class index never
             * matches */
            return (float)group_argmax<G>(p, cols, lane) == y[r] ? 1.0 : 0.0;
        case CT_METRIC_TOP_K:
            return group_in_top_k<G>(p, cols, group_argmax<G>(yr, cols, lane), k, lane) ? 1.0
                                                                                        : 0.0;
        case CT_METRIC_SPARSE_TOP_K: {
            float label = y[r];
            int64_t t = label >= 0.0f && label < (float)cols ? (int64_t)label : -1;
            if (t >= 0 && (float)t != label)
                t = -1;
            return group_in_top_k<G>(p, cols, t, k, lane) ? 1.0 : 0.0;
        }
        default: { /* mse, mae: the mean over the row of e^2 or |e| */
            bool squared = id == CT_METRIC_MSE;
            double s = 0.0;
            for (int64_t c = lane; c < cols; c += G) {
                double e = (double)p[c] - (double)yr[c];
                s += squared ? e * e : fabs(e);
            }
            return group_reduce<G>(s, SumOp()) / (double)cols;
        }
        }
    }
};

/* ---- regularization and clipping --------------------------------------------------------- */

/* sum|w| and sum w^2 into partial[b] and partial[kMaxBlocks + b]; g += l1 sign(w) + 2 l2 w. */
__global__ void __launch_bounds__(kThreads)
    regularize_kernel(const float *w, float *g, int64_t n, double l1, double l2, double *partial)
{
    const double l2x2 = 2 * l2;
    double s1 = 0.0, s2 = 0.0;
    int64_t stride = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += stride) {
        float wi = w[i];
        s1 += fabsf(wi);
        s2 += (double)wi * wi;
        if (g)
            g[i] = fadd(g[i], (float)dadd(dmul(l1, (double)((wi > 0) - (wi < 0))),
                                          dmul(l2x2, (double)wi)));
    }
    s1 = group_reduce<kThreads>(s1, SumOp());
    s2 = group_reduce<kThreads>(s2, SumOp());
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = s1;
        partial[kMaxBlocks + blockIdx.x] = s2;
    }
}

__global__ void __launch_bounds__(kThreads)
    regularize_finish(const double *partial, int n, double l1, double l2, double weight,
                      double *penalty)
{
    double s1 = 0.0, s2 = 0.0;
    for (int i = (int)threadIdx.x; i < n; i += kThreads) {
        s1 += partial[i];
        s2 += partial[kMaxBlocks + i];
    }
    s1 = group_reduce<kThreads>(s1, SumOp());
    s2 = group_reduce<kThreads>(s2, SumOp());
    if (threadIdx.x == 0)
        *penalty += weight * (l1 * s1 + l2 * s2);
}

/* NaN stays NaN, as on the CPU. */
__global__ void __launch_bounds__(kThreads) clip_value_kernel(float *x, int64_t n, float c)
{
    int64_t stride = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += stride) {
        float v = x[i];
        x[i] = v > c ? c : (v < -c ? -c : v);
    }
}

__global__ void __launch_bounds__(kThreads)
    sum_squares_kernel(const float *x, int64_t n, double *partial)
{
    double s = 0.0;
    int64_t stride = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += stride) {
        double v = x[i];
        s += v * v;
    }
    s = group_reduce<kThreads>(s, SumOp());
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

/* x *= c / ||x|| unless ||x|| <= c (a NaN norm scales, as on the CPU). */
__global__ void __launch_bounds__(kThreads)
    clip_norm_kernel(float *x, int64_t n, double c, const double *sumsq)
{
    double norm = sqrt(*sumsq);
    if (norm <= c)
        return;
    float f = (float)(c / norm);
    int64_t stride = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += stride)
        x[i] = fmul(x[i], f);
}

/* ---- optimizer updates ------------------------------------------------------------------
 * The kinds from nadam on work in float32 as Keras does, in the CPU's order
 * (backend_cpu_optim.c); each returns the element's new weight. */
__device__ __forceinline__ float fdiv(float a, float b) { return __fdiv_rn(a, b); }

__device__ float nadam_step(const ct_update &u, float wi, float g, float *state, int64_t i,
                            int64_t n)
{
    float *m = state, *v = state + n;
    float mi = fadd(m[i], fmul(fsub(g, m[i]), (float)u.h[3]));
    float vi = fadd(v[i], fmul(fsub(fmul(g, g), v[i]), (float)u.h[4]));
    m[i] = mi;
    v[i] = vi;
    float mhat = fadd(fmul((float)u.h[0], mi), fmul((float)u.h[1], g));
    float den = fadd(__fsqrt_rn(fdiv(vi, (float)u.h[2])), (float)u.h[5]);
    return fsub(wi, fdiv(fmul(mhat, u.lr), den));
}

__device__ float adamax_step(const ct_update &u, float wi, float g, float *state, int64_t i,
                             int64_t n)
{
    float *m = state, *norm = state + n;
    float mi = fadd(m[i], fmul(fsub(g, m[i]), (float)u.h[0]));
    float ui = fmaxf(fmul((float)u.h[1], norm[i]), fabsf(g));
    m[i] = mi;
    norm[i] = ui;
    return fsub(wi, fdiv(fmul(u.lr, mi), fmul((float)u.h[2], fadd(ui, (float)u.h[3]))));
}

__device__ float adadelta_step(const ct_update &u, float wi, float g, float *state, int64_t i,
                               int64_t n)
{
    const float rho = (float)u.h[0], c = (float)u.h[1], eps = (float)u.h[2];
    float *ag = state, *ad = state + n;
    float a = fadd(fmul(rho, ag[i]), fmul(c, fmul(g, g)));
    float delta = -fdiv(fmul(__fsqrt_rn(fadd(ad[i], eps)), g), __fsqrt_rn(fadd(a, eps)));
    ag[i] = a;
    ad[i] = fadd(fmul(rho, ad[i]), fmul(c, fmul(delta, delta)));
    return fadd(wi, fmul(u.lr, delta));
}

__device__ float lion_step(const ct_update &u, float wi, float g, float *m, int64_t i)
{
    float c = fadd(fmul(m[i], (float)u.h[0]), fmul(g, (float)u.h[1]));
    float sg = c > 0.0f ? 1.0f : (c < 0.0f ? -1.0f : c);
    m[i] = fadd(fmul(m[i], (float)u.h[2]), fmul(g, (float)u.h[3]));
    return fsub(wi, fmul(u.lr, sg));
}

__device__ __forceinline__ float ftrl_pow(float x, double p)
{
    return p == 0.5 ? __fsqrt_rn(x) : (float)pow((double)x, p);
}

__device__ float ftrl_step(const ct_update &u, float wi, float g, float *state, int64_t i,
                           int64_t n)
{
    const double p = u.h[0];
    const float l1 = (float)u.h[1], q2 = (float)u.h[2], s2 = (float)u.h[3];
    float *acc = state, *lin = state + n;
    float grad = fadd(g, fmul(s2, wi));
    float na = fadd(acc[i], fmul(g, g));
    float pn = ftrl_pow(na, p), po = ftrl_pow(acc[i], p);
    float li = fadd(lin[i], fsub(grad, fmul(fdiv(fsub(pn, po), u.lr), wi)));
    float quad = fadd(fdiv(pn, u.lr), q2);
    float clipped = li > l1 ? l1 : (li < -l1 ? -l1 : li);
    lin[i] = li;
    acc[i] = na;
    return fdiv(fsub(clipped, li), quad);
}

/* The moving average's step (use_ema) after the weight's, as ct_cpu_ema. */
__device__ __forceinline__ float ema_step(const ct_update &u, float wi, float *state, int64_t i,
                                          int64_t n)
{
    float *avg = state + (int64_t)u.ema_slot * n;
    float a = fadd(fmul(u.ema_momentum, avg[i]), fmul(fsub(1.0f, u.ema_momentum), wi));
    avg[i] = a;
    return u.ema_overwrite ? a : wi;
}

/* ---- optimizer updates ------------------------------------------------------------------
 * One kernel per kind over the whole block: the decoupled weight decay, then the step.
 * Adam works in float, the others in double, as their CPU loops. */
template <ct_update_kind K>
__global__ void __launch_bounds__(kThreads)
    update_kernel(ct_update u, float *w, const float *g, float *state, int64_t n)
{
    int64_t stride = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += stride) {
        float wi = w[i];
        if (u.decay != 0.0f)
            wi = fsub(wi, fmul(wi, u.decay));
        const float gf = g[i];
        const double lr = u.lr, gi = gf;
        if constexpr (K == CT_UPDATE_SGD) {
            double mom = u.h[0];
            if (mom == 0.0) {
                wi = (float)dsub(wi, dmul(lr, gi));
            } else {
                double v = dsub(dmul(mom, (double)state[i]), dmul(lr, gi));
                state[i] = (float)v;
                wi = (float)dadd(wi, u.flag[0] ? dsub(dmul(mom, v), dmul(lr, gi)) : v);
            }
        } else if constexpr (K == CT_UPDATE_ADAM) {
            const float alpha = (float)u.h[0], c1 = (float)u.h[1], c2 = (float)u.h[2];
            const float eps = (float)u.h[3];
            float *m = state, *v = state + n, *vh = state + 2 * n;
            float mi = fadd(m[i], fmul(fsub(gf, m[i]), c1));
            float vi = fadd(v[i], fmul(fsub(fmul(gf, gf), v[i]), c2));
            m[i] = mi;
            v[i] = vi;
            if (u.flag[0]) {
                vi = fmaxf(vh[i], vi);
                vh[i] = vi;
            }
            wi = fsub(wi, __fdiv_rn(fmul(alpha, mi), fadd(__fsqrt_rn(vi), eps)));
        } else if constexpr (K == CT_UPDATE_RMSPROP) {
            const double rho = u.h[0], mom = u.h[1], eps = u.h[2];
            const bool centered = u.flag[0];
            float *vel = state, *ag = state + n, *m = state + (centered ? 2 : 1) * n;
            double v = dadd(dmul(rho, (double)vel[i]), dmul(dmul(1.0 - rho, gi), gi));
            vel[i] = (float)v;
            double den = dadd(v, eps);
            if (centered) {
                double a = dadd(dmul(rho, (double)ag[i]), dmul(1.0 - rho, gi));
                ag[i] = (float)a;
                den = dadd(dsub(v, dmul(a, a)), eps);
            }
            double inc = ddiv(dmul(lr, gi), __dsqrt_rn(den));
            if (mom > 0.0) {
                inc = dadd(dmul(mom, (double)m[i]), inc);
                m[i] = (float)inc;
            }
            wi = (float)dsub(wi, inc);
        } else if constexpr (K == CT_UPDATE_ADAGRAD) {
            const double eps = u.h[0];
            double a = dadd((double)state[i], dmul(gi, gi));
            state[i] = (float)a;
            wi = (float)dsub(wi, ddiv(dmul(lr, gi), __dsqrt_rn(dadd(a, eps))));
        } else if constexpr (K == CT_UPDATE_NADAM) {
            wi = nadam_step(u, wi, gf, state, i, n);
        } else if constexpr (K == CT_UPDATE_ADAMAX) {
            wi = adamax_step(u, wi, gf, state, i, n);
        } else if constexpr (K == CT_UPDATE_ADADELTA) {
            wi = adadelta_step(u, wi, gf, state, i, n);
        } else if constexpr (K == CT_UPDATE_LION) {
            wi = lion_step(u, wi, gf, state, i);
        } else {
            static_assert(K == CT_UPDATE_FTRL, "an optimizer kind");
            wi = ftrl_step(u, wi, gf, state, i, n);
        }
        if (u.ema)
            wi = ema_step(u, wi, state, i, n);
        w[i] = wi;
    }
}

} /* namespace */

/* ---- launchers ------------------------------------------------------------------------------ */

/* *sum += scale * *x, on the device. */
__global__ void add_scaled_kernel(const double *x, double scale, double *sum)
{
    *sum += scale * *x;
}

extern "C" void ct_cuda_loss(const ct_loss_op *op, const float *pred, const float *y,
                             float *dpred, int64_t rows, int64_t cols, float scale, double *sum)
{
    if (rows <= 0 || cols <= 0)
        return;
    double *partial = partials();
    if (!partial)
        return;
    int *flag = (int *)(partial + kMaxBlocks);
    /* a sum_scale other than 1: the batch's sum goes to a staging double first */
    double *out = sum;
    if (op->sum_scale != 0.0 && op->sum_scale != 1.0) {
        out = partial + kMaxBlocks + 2;
        cudaMemsetAsync(out, 0, sizeof *out, ct_cuda_stream());
    }
    switch (op->id) {
    case CT_LOSS_MSE:
        elem_loss<CT_LOSS_MSE>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_MAE:
        elem_loss<CT_LOSS_MAE>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_HUBER:
        elem_loss<CT_LOSS_HUBER>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_LOG_COSH:
        elem_loss<CT_LOSS_LOG_COSH>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_BCE:
        elem_loss<CT_LOSS_BCE>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_KLD:
        elem_loss<CT_LOSS_KLD>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_MSLE:
        elem_loss<CT_LOSS_MSLE>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_MAPE:
        elem_loss<CT_LOSS_MAPE>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_POISSON:
        elem_loss<CT_LOSS_POISSON>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        break;
    case CT_LOSS_BINARY_FOCAL:
        elem_loss<CT_LOSS_BINARY_FOCAL>(op, pred, y, dpred, rows, cols, scale, partial, flag,
                                        out);
        break;
    case CT_LOSS_COSINE:
        row_loss<CT_LOSS_COSINE>(op, pred, y, dpred, rows, cols, scale, partial, out);
        break;
    case CT_LOSS_CAT_HINGE:
        row_loss<CT_LOSS_CAT_HINGE>(op, pred, y, dpred, rows, cols, scale, partial, out);
        break;
    case CT_LOSS_CAT_FOCAL:
        row_loss<CT_LOSS_CAT_FOCAL>(op, pred, y, dpred, rows, cols, scale, partial, out);
        break;
    case CT_LOSS_HINGE:
    case CT_LOSS_SQUARED_HINGE: {
        /* Keras converts {0, 1} labels to {-1, 1} only when the whole batch is 0 or 1. */
        cudaError_t e = cudaMemsetAsync(flag, 0, sizeof *flag, ct_cuda_stream());
        if (e != cudaSuccess) {
            ct_cuda_fail("loss", cudaGetErrorString(e));
            return;
        }
        nonbinary_kernel<<<ct_cuda_grid(rows * cols, kThreads), kThreads, 0,
                           ct_cuda_stream()>>>(y, rows * cols, flag);
        ct_cuda_check_launch("loss");
        if (op->id == CT_LOSS_HINGE)
            elem_loss<CT_LOSS_HINGE>(op, pred, y, dpred, rows, cols, scale, partial, flag, out);
        else
            elem_loss<CT_LOSS_SQUARED_HINGE>(op, pred, y, dpred, rows, cols, scale, partial,
                                             flag, out);
        break;
    }
    case CT_LOSS_CCE:
    case CT_LOSS_SPARSE_CCE:
        if (op->from_logits)
            cce_loss<true>(op, pred, y, dpred, rows, cols, scale, partial, out);
        else
            cce_loss<false>(op, pred, y, dpred, rows, cols, scale, partial, out);
        break;
    default:
        ct_cuda_fail("loss", "unknown loss id");
        break;
    }
    if (out != sum) {
        add_scaled_kernel<<<1, 1, 0, ct_cuda_stream()>>>(out, op->sum_scale, sum);
        ct_cuda_check_launch("loss");
    }
}

extern "C" void ct_cuda_metric(ct_metric_id id, int k, const float *pred, const float *y,
                               int64_t rows, int64_t cols, double *sum)
{
    if (rows <= 0 || cols <= 0)
        return;
    if ((int)id < 0 || id >= CT_METRIC_COUNT) {
        ct_cuda_fail("metric", "unknown metric id");
        return;
    }
    double *partial = partials();
    if (!partial)
        return;
    MetricRows f;
    f.id = id;
    f.k = k;
    f.pred = pred;
    f.y = y;
    f.cols = cols;
    run_rows("metric", f, rows, cols, partial, sum);
}

extern "C" void ct_cuda_regularize(const float *w, float *g, int64_t n, double l1, double l2,
                                   double weight, double *penalty)
{
    if (n <= 0)
        return;
    double *partial = (double *)ct_cuda_scratch(0, 2 * kMaxBlocks * sizeof(double));
    if (!partial)
        return;
    cudaStream_t s = ct_cuda_stream();
    unsigned blocks = reduce_grid(n, kThreads);
    regularize_kernel<<<blocks, kThreads, 0, s>>>(w, g, n, l1, l2, partial);
    ct_cuda_check_launch("regularize");
    regularize_finish<<<1, kThreads, 0, s>>>(partial, (int)blocks, l1, l2, weight, penalty);
    ct_cuda_check_launch("regularize");
}

extern "C" void ct_cuda_clip_value(float *x, int64_t n, float c)
{
    if (n <= 0)
        return;
    clip_value_kernel<<<ct_cuda_grid(n, kThreads), kThreads, 0, ct_cuda_stream()>>>(x, n, c);
    ct_cuda_check_launch("clip_value");
}

extern "C" void ct_cuda_clip_norm(float *x, int64_t n, double c)
{
    if (n <= 0)
        return;
    double *partial = partials();
    if (!partial)
        return;
    double *sumsq = partial + kMaxBlocks;
    cudaStream_t s = ct_cuda_stream();
    unsigned blocks = reduce_grid(n, kThreads);
    sum_squares_kernel<<<blocks, kThreads, 0, s>>>(x, n, partial);
    ct_cuda_check_launch("clip_norm");
    finish_kernel<<<1, kThreads, 0, s>>>(partial, (int)blocks, sumsq, false);
    ct_cuda_check_launch("clip_norm");
    clip_norm_kernel<<<ct_cuda_grid(n, kThreads), kThreads, 0, s>>>(x, n, c, sumsq);
    ct_cuda_check_launch("clip_norm");
}

extern "C" void ct_cuda_update(const ct_update *u, float *w, const float *g, float *state,
                               int64_t n)
{
    if (n <= 0)
        return;
    unsigned blocks = ct_cuda_grid(n, kThreads);
    cudaStream_t s = ct_cuda_stream();
    switch (u->kind) {
    case CT_UPDATE_SGD:
        update_kernel<CT_UPDATE_SGD><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    case CT_UPDATE_ADAM:
        update_kernel<CT_UPDATE_ADAM><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    case CT_UPDATE_RMSPROP:
        update_kernel<CT_UPDATE_RMSPROP><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    case CT_UPDATE_ADAGRAD:
        update_kernel<CT_UPDATE_ADAGRAD><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    case CT_UPDATE_NADAM:
        update_kernel<CT_UPDATE_NADAM><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    case CT_UPDATE_ADAMAX:
        update_kernel<CT_UPDATE_ADAMAX><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    case CT_UPDATE_ADADELTA:
        update_kernel<CT_UPDATE_ADADELTA><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    case CT_UPDATE_LION:
        update_kernel<CT_UPDATE_LION><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    case CT_UPDATE_FTRL:
        update_kernel<CT_UPDATE_FTRL><<<blocks, kThreads, 0, s>>>(*u, w, g, state, n);
        break;
    default:
        ct_cuda_fail("update", "unknown optimizer kind");
        return;
    }
    ct_cuda_check_launch("update");
}
