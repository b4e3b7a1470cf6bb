/* backend_cpu_attn.c - attention's own kernels: the softmax over the key positions,
 * forward and backward, causal or not (backend.h's attention_softmax), and the per-head
 * products with a causal matrix (gemm_batched_causal, further below). Unlike the generic
 * softmax (whose bits the MLP's and CNN's results depend on), the softmax takes exp from
 * fastmath.h and sums in float over eight lanes, so every loop vectorises; with a causal
 * mask it touches only a row's first i + 1 entries (rounded up to whole vectors), writes
 * exact zeros past them and never reads the scores there.
 *
 * The lanes are explicit, so every CT_CPU_CLONES version sums in the same order and gives
 * the same bits; threads split whole rows, so the split changes nothing either. The
 * pragma is backend_cpu_act.c's (GCC turns the selects of ct_expf into branches
 * otherwise). Buffers are the caller's; nothing is kept after a call. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-pre", "no-thread-jumps", "no-trapping-math", "no-math-errno")
#endif

#include <math.h>
#include <string.h>

#include "backend_cpu.h"
#include "fastmath.h"
#include "parallel.h"
#include "simd.h"

#define LANES 8
#define GRAIN_ROW_FLOATS 16384 /* softmax work per thread, at least */

/* The largest of x[0..n), n >= 1. */
static inline float row_max_lanes(const float *restrict x, int64_t n)
{
    float m[LANES];
    for (int l = 0; l < LANES; l++)
        m[l] = x[0];
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int l = 0; l < LANES; l++)
            m[l] = x[c + l] > m[l] ? x[c + l] : m[l];
    float best = m[0];
    for (int l = 1; l < LANES; l++)
        best = m[l] > best ? m[l] : best;
    for (; c < n; c++)
        best = x[c] > best ? x[c] : best;
    return best;
}

/* x[c] = e^(x[c] - m) for c < n, in place (a loop of its own: GCC vectorises ct_expf
 * only there). */
static inline void row_exp(float *restrict x, int64_t n, float m)
{
    for (int64_t c = 0; c < n; c++)
        x[c] = ct_expf(x[c] - m);
}

/* sum x[c] over c < n: eight lanes, then the tail. */
static inline float row_sum(const float *restrict x, int64_t n)
{
    float s[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int l = 0; l < LANES; l++)
            s[l] += x[c + l];
    float sum = 0.0f;
    for (int l = 0; l < LANES; l++)
        sum += s[l];
    for (; c < n; c++)
        sum += x[c];
    return sum;
}

static inline void row_scale(float *restrict y, int64_t n, float f)
{
    for (int64_t c = 0; c < n; c++)
        y[c] *= f;
}

/* sum p[c] d[c] over c < n, in lanes. */
static inline float row_dot(const float *restrict p, const float *restrict d, int64_t n)
{
    float s[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int l = 0; l < LANES; l++)
            s[l] += p[c + l] * d[c + l];
    float sum = 0.0f;
    for (int l = 0; l < LANES; l++)
        sum += s[l];
    for (; c < n; c++)
        sum += p[c] * d[c];
    return sum;
}

/* d[c] = p[c] (d[c] - dot) for c < n. */
static inline void row_softmax_grad(const float *restrict p, float *restrict d, int64_t n,
                                    float dot)
{
    for (int64_t c = 0; c < n; c++)
        d[c] = p[c] * (d[c] - dot);
}

typedef struct attn_job {
    const float *p;
    float *s;
    int64_t tq, tv;
    bool causal;
} attn_job;

/* Entries of row r (of all blocks' rows) that take part: the causal mask keeps j <= i. */
static int64_t row_len(const attn_job *j, int64_t r)
{
    int64_t i = r % j->tq;
    return j->causal && i + 1 < j->tv ? i + 1 : j->tv;
}

static inline void fill_zero(float *x, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        x[c] = 0.0f;
}

/* A causal row's length rounded up to whole vectors (within the row): the loops then
 * end without a scalar tail, which would cost as much as the rest of a short row. */
static int64_t vector_len(const attn_job *j, int64_t n)
{
    int64_t n8 = (n + LANES - 1) / LANES * LANES;
    return n8 < j->tv ? n8 : j->tv;
}

/* The rows' loops, inlined into each clone of these two (one dispatch per chunk, not
 * five per row). Entries [n, n8) take part as exact zeros: their exps are of -inf, and
 * zeros add nothing to the lanes' sums. */
CT_CPU_CLONES
static void softmax_task(void *ctx, int64_t b, int64_t e)
{
    const attn_job *j = ctx;
    for (int64_t r = b; r < e; r++) {
        float *x = j->s + r * j->tv;
        int64_t n = row_len(j, r), n8 = vector_len(j, n);
        float m = row_max_lanes(x, n);
        for (int64_t c = n; c < n8; c++)
            x[c] = -INFINITY;
        row_exp(x, n8, m);
        float sum = row_sum(x, n8);
        row_scale(x, n8, 1.0f / sum);
        fill_zero(x + n8, j->tv - n8);
    }
}

CT_CPU_CLONES
static void softmax_backward_task(void *ctx, int64_t b, int64_t e)
{
    const attn_job *j = ctx;
    for (int64_t r = b; r < e; r++) {
        const float *p = j->p + r * j->tv;
        float *d = j->s + r * j->tv;
        int64_t n = row_len(j, r), n8 = vector_len(j, n);
        fill_zero(d + n, n8 - n); /* p is 0 there, d may be anything */
        row_softmax_grad(p, d, n8, row_dot(p, d, n8));
        fill_zero(d + n, j->tv - n);
    }
}

void ct_cpu_attention_softmax(float *s, int64_t blocks, int64_t tq, int64_t tv, bool causal)
{
    if (tv <= 0)
        return;
    attn_job j = {NULL, s, tq, tv, causal};
    ct_parallel_for(blocks * tq, GRAIN_ROW_FLOATS / tv + 1, softmax_task, &j);
}

void ct_cpu_attention_softmax_backward(const float *p, float *d, int64_t blocks, int64_t tq,
                                       int64_t tv, bool causal)
{
    if (tv <= 0)
        return;
    attn_job j = {p, d, tq, tv, causal};
    ct_parallel_for(blocks * tq, GRAIN_ROW_FLOATS / tv + 1, softmax_backward_task, &j);
}

/* ---- products with a causal matrix (gemm_batched_causal) --------------------------------
 * Register tiles of 4 rows by 16 columns (two 8-float vectors, GCC's vector extension,
 * which every CT_CPU_CLONES version lowers to its own width with the same operations in
 * the same order). Each output is one sum in increasing order over the shared axis, as
 * a plain loop would take it, skipping the terms that the causal mask makes zero. The
 * other cases, and compilers without the extension, take gemm_batched. */

#if defined(__GNUC__)
#define CT_HAVE_V8 1
typedef float v8f __attribute__((vector_size(32)));

/* Macros rather than functions: a vector passed by value or returned changes the ABI
 * between the clones (GCC warns), even where it would be inlined. */
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(v8f))
#define STORE8(p, v) memcpy((p), &(v), sizeof(v8f))
#define SPLAT8(x) ((v8f){(x), (x), (x), (x), (x), (x), (x), (x)})

#define TILE_R 4
#define TILE_C 16
#define PACK_FLOATS 8192 /* B^T packed for the scores' kernel: 32 KB on the stack */

typedef struct causal_job {
    bool ta, tb;
    int64_t m, n, k, lda, ldb, ldc, sa, sb, sc;
    float alpha;
    const float *a, *b;
    float *c;
} causal_job;

/* The tile's accumulators: rows 0-3, columns 0-7 and 8-15, in registers (named, as GCC
 * keeps an array of them in memory). */
#define ACC_ZERO                                                                              \
    v8f c00 = SPLAT8(0.0f), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, \
        c31 = c00

/* acc_r += x_r * [b0 | b1] for the four rows. */
#define ACC_STEP(x0, x1, x2, x3)                                                              \
    do {                                                                                      \
        v8f x_ = SPLAT8(x0);                                                                  \
        c00 += x_ * b0, c01 += x_ * b1;                                                       \
        x_ = SPLAT8(x1);                                                                      \
        c10 += x_ * b0, c11 += x_ * b1;                                                       \
        x_ = SPLAT8(x2);                                                                      \
        c20 += x_ * b0, c21 += x_ * b1;                                                       \
        x_ = SPLAT8(x3);                                                                      \
        c30 += x_ * b0, c31 += x_ * b1;                                                       \
    } while (0)

/* Rows [i0, i0 + rows) of the tile's columns [c0, c0 + cols), times alpha, into c; a
 * whole tile straight from the registers (through the stack it cost a third of a short
 * tile's products). */
#define ACC_PUT(c, ldc, i0, rows, c0, cols, alpha)                                            \
    do {                                                                                      \
        v8f al_ = SPLAT8(alpha);                                                              \
        if ((rows) == TILE_R && (cols) == TILE_C) {                                           \
            float *p_ = (c) + (i0) * (ldc) + (c0);                                            \
            v8f o_ = c00 * al_;                                                               \
            STORE8(p_, o_);                                                                   \
            o_ = c01 * al_;                                                                   \
            STORE8(p_ + 8, o_);                                                               \
            o_ = c10 * al_;                                                                   \
            STORE8(p_ + (ldc), o_);                                                           \
            o_ = c11 * al_;                                                                   \
            STORE8(p_ + (ldc) + 8, o_);                                                       \
            o_ = c20 * al_;                                                                   \
            STORE8(p_ + 2 * (ldc), o_);                                                       \
            o_ = c21 * al_;                                                                   \
            STORE8(p_ + 2 * (ldc) + 8, o_);                                                   \
            o_ = c30 * al_;                                                                   \
            STORE8(p_ + 3 * (ldc), o_);                                                       \
            o_ = c31 * al_;                                                                   \
            STORE8(p_ + 3 * (ldc) + 8, o_);                                                   \
        } else {                                                                              \
            v8f t_[TILE_R][2] = {{c00 * al_, c01 * al_}, {c10 * al_, c11 * al_},              \
                                 {c20 * al_, c21 * al_}, {c30 * al_, c31 * al_}};             \
            put_tile((c), (ldc), (i0), (rows), (c0), (cols), t_);                             \
        }                                                                                     \
    } while (0)

/* A whole row of a tile: a copy of constant size, two vector stores (a variable size
 * calls memcpy, which cost as much as a short row's products). */
static inline void put_row16(float *dst, const v8f *src, int64_t cols)
{
    if (cols == TILE_C)
        memcpy(dst, src, TILE_C * sizeof(float));
    else
        memcpy(dst, src, (size_t)cols * sizeof(float));
}

static inline void put_tile(float *c, int64_t ldc, int64_t i0, int rows, int64_t c0,
                            int64_t cols, v8f t[TILE_R][2])
{
    for (int r = 0; r < rows; r++)
        put_row16(c + (i0 + r) * ldc + c0, t[r], cols);
}

/* B's rows [j0, j0 + 16) (zeros past n) as 16-float columns, one per step of the shared
 * axis: pack[d * 16 + c] = b[(j0 + c) * ldb + d]. */

/* Columns d0..d0 + 7 of B's eight rows r[0..7] (pointers at column d0) into pack: an 8x8
 * transpose in shuffles, each column one store (the scalar loop stored a float at a time,
 * at a stride). */
static inline __attribute__((always_inline)) void pack_block8(const float *const *r, float *pack)
{
    v8f x0, x1, x2, x3, x4, x5, x6, x7;
    LOAD8(x0, r[0]), LOAD8(x1, r[1]), LOAD8(x2, r[2]), LOAD8(x3, r[3]);
    LOAD8(x4, r[4]), LOAD8(x5, r[5]), LOAD8(x6, r[6]), LOAD8(x7, r[7]);
    /* __builtin_shufflevector (GCC 12 and clang): lanes 0-7 of the first, 8-15 of the
     * second */
#define LO(a, b) __builtin_shufflevector(a, b, 0, 8, 1, 9, 4, 12, 5, 13)
#define HI(a, b) __builtin_shufflevector(a, b, 2, 10, 3, 11, 6, 14, 7, 15)
#define PLO(a, b) __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13)
#define PHI(a, b) __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15)
#define QLO(a, b) __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11)
#define QHI(a, b) __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15)
    v8f t0 = LO(x0, x1), t1 = HI(x0, x1), t2 = LO(x2, x3), t3 = HI(x2, x3);
    v8f t4 = LO(x4, x5), t5 = HI(x4, x5), t6 = LO(x6, x7), t7 = HI(x6, x7);
    v8f u0 = PLO(t0, t2), u1 = PHI(t0, t2), u2 = PLO(t1, t3), u3 = PHI(t1, t3);
    v8f u4 = PLO(t4, t6), u5 = PHI(t4, t6), u6 = PLO(t5, t7), u7 = PHI(t5, t7);
    v8f o0 = QLO(u0, u4), o4 = QHI(u0, u4), o1 = QLO(u1, u5), o5 = QHI(u1, u5);
    v8f o2 = QLO(u2, u6), o6 = QHI(u2, u6), o3 = QLO(u3, u7), o7 = QHI(u3, u7);
#undef LO
#undef HI
#undef PLO
#undef PHI
#undef QLO
#undef QHI
    STORE8(pack + 0 * TILE_C, o0), STORE8(pack + 1 * TILE_C, o1);
    STORE8(pack + 2 * TILE_C, o2), STORE8(pack + 3 * TILE_C, o3);
    STORE8(pack + 4 * TILE_C, o4), STORE8(pack + 5 * TILE_C, o5);
    STORE8(pack + 6 * TILE_C, o6), STORE8(pack + 7 * TILE_C, o7);
}

/* Inlined into causal_nt's clones: the baseline's shuffles of 8-float vectors go through
 * memory one float at a time. */
static inline __attribute__((always_inline)) void pack_cols(const float *b, int64_t ldb,
                                                            int64_t j0, int64_t n, int64_t k,
                                                            float *pack)
{
    int64_t rows = n - j0 < TILE_C ? n - j0 : TILE_C;
    if (rows == TILE_C && k % 8 == 0) { /* whole 8x8 blocks */
        for (int64_t d0 = 0; d0 < k; d0 += 8)
            for (int64_t c0 = 0; c0 < TILE_C; c0 += 8) {
                const float *r[8];
                for (int q = 0; q < 8; q++)
                    r[q] = b + (j0 + c0 + q) * ldb + d0;
                pack_block8(r, pack + d0 * TILE_C + c0);
            }
        return;
    }
    for (int64_t c = 0; c < rows; c++) { /* along B's rows: no test per value */
        const float *row = b + (j0 + c) * ldb;
        for (int64_t d = 0; d < k; d++)
            pack[d * TILE_C + c] = row[d];
    }
    for (int64_t c = rows; c < TILE_C; c++)
        for (int64_t d = 0; d < k; d++)
            pack[d * TILE_C + c] = 0.0f;
}

/* C = alpha A B^T, only the lower triangle (j <= i) wanted: tiles up to the diagonal. */
CT_CPU_CLONES
static void causal_nt(const causal_job *j, const float *a, const float *b, float *c)
{
    float pack[PACK_FLOATS];
    int64_t tiles = (j->n + TILE_C - 1) / TILE_C;
    for (int64_t t = 0; t < tiles; t++)
        pack_cols(b, j->ldb, t * TILE_C, j->n, j->k, pack + t * TILE_C * j->k);
    int64_t k = j->k;
    for (int64_t i0 = 0; i0 < j->m; i0 += TILE_R) {
        int rows = j->m - i0 < TILE_R ? (int)(j->m - i0) : TILE_R;
        /* the rows in variables of their own, which stay in registers (an array of them
         * was reloaded from the stack at every step); past m: repeat the last row, never
         * stored */
        const float *a0 = a + i0 * j->lda;
        const float *a1 = a + (i0 + (1 < rows ? 1 : rows - 1)) * j->lda;
        const float *a2 = a + (i0 + (2 < rows ? 2 : rows - 1)) * j->lda;
        const float *a3 = a + (i0 + (3 < rows ? 3 : rows - 1)) * j->lda;
        int64_t last = i0 + rows - 1 < j->n - 1 ? i0 + rows - 1 : j->n - 1;
        for (int64_t t = 0; t * TILE_C <= last; t++) {
            const float *p = pack + t * TILE_C * k;
            ACC_ZERO;
            for (int64_t d = 0; d < k; d++, p += TILE_C) {
                v8f b0, b1;
                LOAD8(b0, p);
                LOAD8(b1, p + 8);
                ACC_STEP(a0[d], a1[d], a2[d], a3[d]);
            }
            int64_t c0 = t * TILE_C, cols = j->n - c0 < TILE_C ? j->n - c0 : TILE_C;
            ACC_PUT(c, j->ldc, i0, rows, c0, cols, j->alpha);
        }
    }
}

/* C = alpha A B with A (m x k) lower triangular: row i sums over l <= i. */
CT_CPU_CLONES
static void causal_nn(const causal_job *j, const float *a, const float *b, float *c)
{
    int64_t ldb = j->ldb;
    for (int64_t i0 = 0; i0 < j->m; i0 += TILE_R) {
        int rows = j->m - i0 < TILE_R ? (int)(j->m - i0) : TILE_R;
        /* as in causal_nt: the rows in registers */
        const float *a0 = a + i0 * j->lda;
        const float *a1 = a + (i0 + (1 < rows ? 1 : rows - 1)) * j->lda;
        const float *a2 = a + (i0 + (2 < rows ? 2 : rows - 1)) * j->lda;
        const float *a3 = a + (i0 + (3 < rows ? 3 : rows - 1)) * j->lda;
        int64_t last = i0 + rows - 1 < j->k - 1 ? i0 + rows - 1 : j->k - 1;
        for (int64_t c0 = 0; c0 < j->n; c0 += TILE_C) {
            int64_t cols = j->n - c0 < TILE_C ? j->n - c0 : TILE_C;
            const float *br = b + c0;
            ACC_ZERO;
            /* zeros past the diagonal; a whole tile's loop without the test per step */
            if (cols == TILE_C)
                for (int64_t l = 0; l <= last; l++, br += ldb) {
                    v8f b0, b1;
                    LOAD8(b0, br);
                    LOAD8(b1, br + 8);
                    ACC_STEP(a0[l], a1[l], a2[l], a3[l]);
                }
            else
                for (int64_t l = 0; l <= last; l++, br += ldb) {
                    v8f b0, b1;
                    float t[TILE_C] = {0};
                    memcpy(t, br, (size_t)cols * sizeof *t);
                    LOAD8(b0, t);
                    LOAD8(b1, t + 8);
                    ACC_STEP(a0[l], a1[l], a2[l], a3[l]);
                }
            ACC_PUT(c, j->ldc, i0, rows, c0, cols, j->alpha);
        }
    }
}

/* 16 floats of a row of B (zeros past cols) as two vectors, through pointers: a vector
 * returned by value would change the ABI between the clones. */
static inline void load_row16(const float *br, int64_t cols, v8f *lo, v8f *hi)
{
    if (cols == TILE_C) {
        LOAD8(*lo, br);
        LOAD8(*hi, br + 8);
        return;
    }
    float t[TILE_C] = {0};
    memcpy(t, br, (size_t)cols * sizeof *t);
    LOAD8(*lo, t);
    LOAD8(*hi, t + 8);
}

/* C = alpha A^T B with A (k x m) lower triangular: row i of C sums A[l][i] B[l] over
 * l >= i. A is read along its rows (a column walk would miss the cache at every step),
 * so the sums of 16 columns of C stay in an L1 buffer while l goes down A, each still
 * taken in increasing l. */
CT_CPU_CLONES
static void causal_tn(const causal_job *j, const float *a, const float *b, float *c)
{
    v8f acc[PACK_FLOATS / 8];
    for (int64_t c0 = 0; c0 < j->n; c0 += TILE_C) {
        int64_t cols = j->n - c0 < TILE_C ? j->n - c0 : TILE_C;
        for (int64_t i = 0; i < 2 * j->m; i++)
            acc[i] = SPLAT8(0.0f);
        /* four rows of A and B per pass over the sums, each sum still taking row l's term
         * before row l + 1's: a quarter of the loads and stores of the L1 buffer */
        int64_t l = 0;
        for (; l + 3 < j->k; l += 4) {
            v8f b0, b1, b2, b3, b4, b5, b6, b7;
            load_row16(b + l * j->ldb + c0, cols, &b0, &b1);
            load_row16(b + (l + 1) * j->ldb + c0, cols, &b2, &b3);
            load_row16(b + (l + 2) * j->ldb + c0, cols, &b4, &b5);
            load_row16(b + (l + 3) * j->ldb + c0, cols, &b6, &b7);
            const float *a0 = a + l * j->lda, *a1 = a0 + j->lda, *a2 = a1 + j->lda,
                        *a3 = a2 + j->lda;
            int64_t last = l < j->m - 1 ? l : j->m - 1; /* past l: above the diagonal */
            for (int64_t i = 0; i <= last; i++) {
                v8f x = SPLAT8(a0[i]);
                v8f lo = acc[2 * i] + x * b0, hi = acc[2 * i + 1] + x * b1;
                x = SPLAT8(a1[i]);
                lo = lo + x * b2, hi = hi + x * b3;
                x = SPLAT8(a2[i]);
                lo = lo + x * b4, hi = hi + x * b5;
                x = SPLAT8(a3[i]);
                acc[2 * i] = lo + x * b6;
                acc[2 * i + 1] = hi + x * b7;
            }
            /* the rows' diagonal terms: sum i takes rows l + 1.. l + 3 from i on */
            int64_t i = l + 1;
            if (i < j->m) {
                v8f x = SPLAT8(a1[i]);
                v8f lo = acc[2 * i] + x * b2, hi = acc[2 * i + 1] + x * b3;
                x = SPLAT8(a2[i]);
                lo = lo + x * b4, hi = hi + x * b5;
                x = SPLAT8(a3[i]);
                acc[2 * i] = lo + x * b6;
                acc[2 * i + 1] = hi + x * b7;
            }
            if (++i < j->m) {
                v8f x = SPLAT8(a2[i]);
                v8f lo = acc[2 * i] + x * b4, hi = acc[2 * i + 1] + x * b5;
                x = SPLAT8(a3[i]);
                acc[2 * i] = lo + x * b6;
                acc[2 * i + 1] = hi + x * b7;
            }
            if (++i < j->m) {
                v8f x = SPLAT8(a3[i]);
                acc[2 * i] += x * b6;
                acc[2 * i + 1] += x * b7;
            }
        }
        for (; l + 1 < j->k; l += 2) {
            v8f b0, b1, b2, b3;
            load_row16(b + l * j->ldb + c0, cols, &b0, &b1);
            load_row16(b + (l + 1) * j->ldb + c0, cols, &b2, &b3);
            const float *a0 = a + l * j->lda, *a1 = a0 + j->lda;
            int64_t last = l < j->m - 1 ? l : j->m - 1; /* past l: above the diagonal */
            for (int64_t i = 0; i <= last; i++) {
                v8f x = SPLAT8(a0[i]), y = SPLAT8(a1[i]);
                v8f lo = acc[2 * i] + x * b0, hi = acc[2 * i + 1] + x * b1;
                acc[2 * i] = lo + y * b2;
                acc[2 * i + 1] = hi + y * b3;
            }
            if (l + 1 < j->m) { /* row l + 1's diagonal term */
                v8f y = SPLAT8(a1[l + 1]);
                acc[2 * (l + 1)] += y * b2;
                acc[2 * (l + 1) + 1] += y * b3;
            }
        }
        for (; l < j->k; l++) {
            v8f b0, b1;
            load_row16(b + l * j->ldb + c0, cols, &b0, &b1);
            const float *a0 = a + l * j->lda;
            int64_t last = l < j->m - 1 ? l : j->m - 1;
            for (int64_t i = 0; i <= last; i++) {
                v8f x = SPLAT8(a0[i]);
                acc[2 * i] += x * b0;
                acc[2 * i + 1] += x * b1;
            }
        }
        v8f al = SPLAT8(j->alpha);
        for (int64_t i = 0; i < j->m; i++) {
            v8f t[2] = {acc[2 * i] * al, acc[2 * i + 1] * al};
            put_row16(c + i * j->ldc + c0, t, cols);
        }
    }
}

static void causal_task(void *ctx, int64_t first, int64_t last)
{
    const causal_job *j = ctx;
    for (int64_t i = first; i < last; i++) {
        const float *a = j->a + i * j->sa, *b = j->b + i * j->sb;
        float *c = j->c + i * j->sc;
        if (!j->ta && j->tb)
            causal_nt(j, a, b, c);
        else if (!j->ta)
            causal_nn(j, a, b, c);
        else
            causal_tn(j, a, b, c);
    }
}
#endif

void ct_cpu_gemm_batched_causal(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                float alpha, const float *a, int64_t lda, int64_t stride_a,
                                const float *b, int64_t ldb, int64_t stride_b, float *c,
                                int64_t ldc, int64_t stride_c, int64_t batch)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return;
#ifdef CT_HAVE_V8
    /* the scores' packed B, or the L1 sums of A^T B, must fit their stack buffer */
    int64_t need = !trans_a && trans_b ? (n + TILE_C - 1) / TILE_C * TILE_C * k
                   : trans_a           ? m * TILE_C
                                       : 0;
    if (k > 0 && !(trans_a && trans_b) && need <= PACK_FLOATS) {
        causal_job j = {trans_a, trans_b, m, n, k, lda, ldb, ldc, stride_a, stride_b, stride_c,
                        alpha, a, b, c};
        /* about half a full product's work per item */
        int64_t flops = m * n * k + 1;
        ct_parallel_for(batch, (INT64_C(1) << 21) / flops + 1, causal_task, &j);
        return;
    }
#endif
    ct_cpu_gemm_batched(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
                        0.0f, c, ldc, stride_c, batch);
}
