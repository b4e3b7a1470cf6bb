/* loss.c - Keras 3 losses and their gradients.
 *
 * Each compute function returns the sum over rows of the per-sample loss and, when dpred
 * is given, writes scale * d(sum)/d(pred). Per-sample losses follow Keras 3: a mean over
 * the last axis for the elementwise losses (mse, mae, huber, log_cosh, msle, mape,
 * poisson, binary and binary focal crossentropy, hinge, squared_hinge) and a sum over it
 * (or a value per row) for categorical / sparse / categorical focal crossentropy,
 * kl_divergence, cosine_similarity and categorical_hinge. Sums are accumulated in double.
 *
 * Probabilities are clipped to [1e-7, 1 - 1e-7] in float32, as Keras does, so saturated
 * outputs give Keras's numbers (e.g. -log(1 - (1 - 1e-7f)) = 15.942385). Where a value
 * was clipped, its gradient is zero, as for a clip op in Keras.
 *
 * A NaN prediction gives a NaN loss (clips and maxima here never turn it into a number),
 * so a model with NaN weights is not scored as if it predicted something.
 *
 * Sparse labels outside [0, cols) (or NaN) are skipped: the row adds nothing to the loss
 * and gets a zero gradient. The data layer rejects such labels before training; this only
 * keeps a bad label from reading out of bounds. */
#include <float.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "backend_cpu.h"
#include "loss.h"
#include "text.h"

#define CT_LOSS_EPS 1e-7f

/* log(1 + exp(z)) without overflow. */
static double softplus(double z)
{
    return fmax(z, 0.0) + log1p(exp(-fabs(z)));
}

static double sigmoid(double z)
{
    if (z >= 0)
        return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

static double sign(double x)
{
    return (x > 0) - (x < 0);
}

/* Keras's clip to [eps, 1 - eps], done in float32 so the bounds match Keras's exactly. */
static float clip_prob(float p, bool *inside)
{
    const float lo = CT_LOSS_EPS, hi = 1.0f - CT_LOSS_EPS;
    *inside = p >= lo && p <= hi;
    return p < lo ? lo : (p > hi ? hi : p);
}

/* A sparse label as a class index, or -1 when it is not one of [0, cols). */
static int64_t sparse_index(float label, int64_t cols)
{
    if (!(label >= 0.0f && label < (float)cols))
        return -1;
    return (int64_t)label;
}

/* ---- elementwise losses: per sample, the mean over the last axis ------------------- */

/* Value and derivative (with respect to p) of one element's loss. */
typedef double (*elem_fn)(const ct_loss *loss, double p, double y, double *dp);

/* fmax that keeps a NaN first argument (fmax would return the bound). */
static double max_nan(double a, double b)
{
    return isnan(a) ? a : fmax(a, b);
}

static double mse_elem(const ct_loss *loss, double p, double y, double *de)
{
    (void)loss;
    double e = p - y;
    *de = 2.0 * e;
    return e * e;
}

static double mae_elem(const ct_loss *loss, double p, double y, double *de)
{
    (void)loss;
    double e = p - y;
    *de = sign(e);
    return fabs(e);
}

static double huber_elem(const ct_loss *loss, double p, double y, double *de)
{
    double e = p - y, a = fabs(e), d = loss->delta;
    if (a <= d) {
        *de = e;
        return 0.5 * e * e;
    }
    *de = d * sign(e);
    return d * a - 0.5 * d * d;
}

/* log(cosh(x)) = x + softplus(-2x) - log(2): finite for any x (Keras's form). */
static double log_cosh_elem(const ct_loss *loss, double p, double y, double *de)
{
    (void)loss;
    double e = p - y;
    *de = tanh(e);
    return e + softplus(-2.0 * e) - log(2.0);
}

/* (log(max(p, eps) + 1) - log(max(y, eps) + 1))^2; no gradient where p is at the bound. */
static double msle_elem(const ct_loss *loss, double p, double y, double *dp)
{
    (void)loss;
    double pc = max_nan(p, CT_LOSS_EPS);
    double d = log(pc + 1.0) - log(max_nan(y, CT_LOSS_EPS) + 1.0);
    *dp = p > CT_LOSS_EPS ? 2.0 * d / (pc + 1.0) : 0.0;
    return d * d;
}

/* 100 |y - p| / max(|y|, eps). */
static double mape_elem(const ct_loss *loss, double p, double y, double *dp)
{
    (void)loss;
    double a = max_nan(fabs(y), CT_LOSS_EPS);
    *dp = 100.0 * sign(p - y) / a;
    return 100.0 * fabs(y - p) / a;
}

/* p - y log(p + eps). */
static double poisson_elem(const ct_loss *loss, double p, double y, double *dp)
{
    (void)loss;
    *dp = 1.0 - y / (p + CT_LOSS_EPS);
    return p - y * log(p + CT_LOSS_EPS);
}

/* Keras's label smoothing for binary targets. */
static double smooth_binary(const ct_loss *loss, double y)
{
    return loss->label_smoothing != 0.0
               ? y * (1.0 - loss->label_smoothing) + 0.5 * loss->label_smoothing
               : y;
}

/* Keras 3: bce of the (sigmoid of the) prediction, clipped, times (1 - p_t)^gamma with
 * p_t = y p + (1 - y)(1 - p) unclipped, times y alpha + (1 - y)(1 - alpha) when balancing. */
static double binary_focal_elem(const ct_loss *loss, double x, double y, double *dx)
{
    y = smooth_binary(loss, y);
    double p = loss->from_logits ? sigmoid(x) : x;
    bool inside;
    float pc = clip_prob((float)p, &inside);
    double q = pc, q1 = 1.0f - pc;
    double bce = -(y * log(q) + (1.0 - y) * log(q1));
    double dbce = inside ? -y / q + (1.0 - y) / q1 : 0.0;
    double u = 1.0 - (y * p + (1.0 - y) * (1.0 - p)), g = loss->gamma;
    double ff = pow(u, g);
    double dff = u != 0.0 ? -g * pow(u, g - 1.0) * (2.0 * y - 1.0) : 0.0;
    double w = 1.0;
    if (loss->apply_class_balancing)
        w = y * loss->alpha + (1.0 - y) * (1.0 - loss->alpha);
    double dp = w * (dff * bce + ff * dbce);
    *dx = loss->from_logits ? dp * p * (1.0 - p) : dp;
    return w * ff * bce;
}

static double elementwise(const ct_loss *loss, const float *pred, const float *y, float *dpred,
                          int64_t rows, int64_t cols, float scale, elem_fn f)
{
    double total = 0.0, g = (double)scale / (double)cols;
    for (int64_t r = 0; r < rows; r++) {
        double row = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            double de;
            row += f(loss, (double)pred[i], (double)y[i], &de);
            if (dpred)
                dpred[i] = (float)(g * de);
        }
        total += row / (double)cols;
    }
    return total;
}

static double mse_compute(const ct_loss *loss, const float *pred, const float *y, float *dpred,
                          int64_t rows, int64_t cols, float scale)
{
    return elementwise(loss, pred, y, dpred, rows, cols, scale, mse_elem);
}

static double mae_compute(const ct_loss *loss, const float *pred, const float *y, float *dpred,
                          int64_t rows, int64_t cols, float scale)
{
    return elementwise(loss, pred, y, dpred, rows, cols, scale, mae_elem);
}

static double huber_compute(const ct_loss *loss, const float *pred, const float *y,
                            float *dpred, int64_t rows, int64_t cols, float scale)
{
    return elementwise(loss, pred, y, dpred, rows, cols, scale, huber_elem);
}

static double log_cosh_compute(const ct_loss *loss, const float *pred, const float *y,
                               float *dpred, int64_t rows, int64_t cols, float scale)
{
    return elementwise(loss, pred, y, dpred, rows, cols, scale, log_cosh_elem);
}

static double msle_compute(const ct_loss *loss, const float *pred, const float *y,
                           float *dpred, int64_t rows, int64_t cols, float scale)
{
    return elementwise(loss, pred, y, dpred, rows, cols, scale, msle_elem);
}

static double mape_compute(const ct_loss *loss, const float *pred, const float *y,
                           float *dpred, int64_t rows, int64_t cols, float scale)
{
    return elementwise(loss, pred, y, dpred, rows, cols, scale, mape_elem);
}

static double poisson_compute(const ct_loss *loss, const float *pred, const float *y,
                              float *dpred, int64_t rows, int64_t cols, float scale)
{
    return elementwise(loss, pred, y, dpred, rows, cols, scale, poisson_elem);
}

static double binary_focal_compute(const ct_loss *loss, const float *pred, const float *y,
                                   float *dpred, int64_t rows, int64_t cols, float scale)
{
    return elementwise(loss, pred, y, dpred, rows, cols, scale, binary_focal_elem);
}

/* ---- binary crossentropy ------------------------------------------------------------ */

/* One element: value, and d/d(input) where input is the logit (from_logits or fused) or
 * the probability. */
static double bce_elem(const ct_loss *loss, float p, double y, double *d)
{
    if (loss->from_logits) {
        /* -y log sigmoid(x) - (1 - y) log sigmoid(-x), via softplus: stable for any x. */
        double x = p;
        *d = sigmoid(x) - y;
        return y * softplus(-x) + (1.0 - y) * softplus(x);
    }
    bool inside;
    float pc = clip_prob(p, &inside);
    double q = pc, q1 = 1.0f - pc; /* 1 - pc is exact in float */
    if (loss->fused)
        *d = (double)p - y;
    else
        *d = inside ? -y / q + (1.0 - y) / q1 : 0.0;
    return -(y * log(q) + (1.0 - y) * log(q1));
}

static double bce_compute(const ct_loss *loss, const float *pred, const float *y, float *dpred,
                          int64_t rows, int64_t cols, float scale)
{
    double total = 0.0, g = (double)scale / (double)cols;
    for (int64_t r = 0; r < rows; r++) {
        double row = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            double d;
            row += bce_elem(loss, pred[i], smooth_binary(loss, y[i]), &d);
            if (dpred)
                dpred[i] = (float)(g * d);
        }
        total += row / (double)cols;
    }
    return total;
}

/* ---- categorical crossentropy (dense or sparse targets) ----------------------------- */

/* One row's target: dense (y, one per class) or sparse (class index `hot`, y NULL). */
typedef struct row_target {
    const float *y;
    int64_t hot;
    double ls, classes; /* label smoothing (dense targets only) and the row's width */
} row_target;

/* Keras's smoothing for categorical targets: y (1 - ls) + ls / classes. */
static double target_at(const row_target *t, int64_t c)
{
    double y = t->y ? (double)t->y[c] : (double)(c == t->hot);
    return t->ls != 0.0 ? y * (1.0 - t->ls) + t->ls / t->classes : y;
}

/* -sum_c y_c log_softmax(x)_c; gradient softmax(x) * sum(y) - y. */
static double cce_row_logits(const float *x, const row_target *t, float *d, int64_t cols,
                             double scale)
{
    double mx = x[0], se = 0.0, loss = 0.0, ysum = 0.0;
    for (int64_t c = 1; c < cols; c++)
        mx = fmax(mx, (double)x[c]);
    for (int64_t c = 0; c < cols; c++)
        se += exp((double)x[c] - mx);
    double lse = mx + log(se);
    for (int64_t c = 0; c < cols; c++) {
        double yc = target_at(t, c);
        loss -= yc * ((double)x[c] - lse);
        ysum += yc;
    }
    for (int64_t c = 0; d && c < cols; c++)
        d[c] = (float)(scale * (exp((double)x[c] - lse) * ysum - target_at(t, c)));
    return loss;
}

/* Keras on probabilities: q = clip(p / sum(p)), loss -sum_c y_c log q_c. Gradient through
 * the normalisation: dL/dp_j = (g_j + sum over unclipped c of y_c) / S, g_j = -y_j / q_j
 * (0 where clipped). Fused (p = softmax(x)): dL/dx = p * sum(y) - y. */
static double cce_row_probs(const ct_loss *loss, const float *p, const row_target *t, float *d,
                            int64_t cols, double scale)
{
    double s = 0.0, value = 0.0, yin = 0.0, ysum = 0.0;
    for (int64_t c = 0; c < cols; c++)
        s += p[c];
    for (int64_t c = 0; c < cols; c++) {
        bool inside;
        float q = clip_prob(!(s <= 0) ? (float)(p[c] / s) : 0.0f, &inside); /* NaN stays */
        double yc = target_at(t, c);
        if (yc != 0.0 || q != q) /* 0 log q adds nothing unless q is NaN: skip the log */
            value -= yc * log((double)q);
        ysum += yc;
        if (inside)
            yin += yc;
        if (d && !loss->fused)
            d[c] = inside ? (float)(-yc / (double)q) : 0.0f; /* g_c, finished below */
    }
    for (int64_t c = 0; d && c < cols; c++) {
        if (loss->fused)
            d[c] = (float)(scale * ((double)p[c] * ysum - target_at(t, c)));
        else
            d[c] = !(s <= 0) ? (float)(scale * ((double)d[c] + yin) / s) : 0.0f;
    }
    return value;
}

static double cce_row(const ct_loss *loss, const float *p, const row_target *t, float *d,
                      int64_t cols, float scale)
{
    if (loss->from_logits)
        return cce_row_logits(p, t, d, cols, scale);
    return cce_row_probs(loss, p, t, d, cols, scale);
}

static double cce_compute(const ct_loss *loss, const float *pred, const float *y, float *dpred,
                          int64_t rows, int64_t cols, float scale)
{
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        row_target t = {y + r * cols, -1, loss->label_smoothing, (double)cols};
        total += cce_row(loss, pred + r * cols, &t, dpred ? dpred + r * cols : NULL, cols, scale);
    }
    return total;
}

/* cce_row_probs for a sparse label `hot` with the fused softmax (a classifier's usual
 * case), in fewer operations but the same values: with sum(y) = 1 exactly, the gradient is
 * scale * (p - onehot) and only the hot class's q enters the loss. Its sum of p is the
 * same too; a row whose sum is not positive and finite (where NaN must propagate as
 * there) returns false for that path instead. */
static bool sparse_fused_row(const float *p, int64_t hot, float *d, int64_t cols, double scale,
                             double *value)
{
    double s = 0.0;
    for (int64_t c = 0; c < cols; c++)
        s += p[c];
    if (!(s > 0.0 && s <= DBL_MAX))
        return false;
    bool inside;
    float q = clip_prob((float)(p[hot] / s), &inside);
    *value = 0.0 - 1.0 * log((double)q); /* value -= y_hot log q from 0, as there */
    if (d) {
        for (int64_t c = 0; c < cols; c++) /* p * 1 - 0 is p exactly */
            d[c] = (float)(scale * (double)p[c]);
        d[hot] = (float)(scale * ((double)p[hot] - 1.0));
    }
    return true;
}

static double sparse_cce_compute(const ct_loss *loss, const float *pred, const float *y,
                                 float *dpred, int64_t rows, int64_t cols, float scale)
{
    double total = 0.0;
    bool fast = loss->fused && !loss->from_logits;
    for (int64_t r = 0; r < rows; r++) {
        float *d = dpred ? dpred + r * cols : NULL;
        row_target t = {NULL, sparse_index(y[r], cols), 0.0, (double)cols};
        if (t.hot < 0) {
            if (d)
                memset(d, 0, (size_t)cols * sizeof *d);
            continue;
        }
        double v;
        if (fast && sparse_fused_row(pred + r * cols, t.hot, d, cols, scale, &v))
            total += v;
        else
            total += cce_row(loss, pred + r * cols, &t, d, cols, scale);
    }
    return total;
}

/* ---- kl_divergence and hinge --------------------------------------------------------- */

/* sum_c y log(y / p) with both clipped to [eps, 1] as Keras 3. */
static double kld_compute(const ct_loss *loss, const float *pred, const float *y, float *dpred,
                          int64_t rows, int64_t cols, float scale)
{
    (void)loss;
    double total = 0.0;
    for (int64_t i = 0; i < rows * cols; i++) {
        double yc = fmin(fmax((double)y[i], CT_LOSS_EPS), 1.0);
        double pc = isnan(pred[i]) ? NAN : fmin(fmax((double)pred[i], CT_LOSS_EPS), 1.0);
        bool inside = pred[i] >= CT_LOSS_EPS && pred[i] <= 1.0f;
        total += yc * log(yc / pc);
        if (dpred)
            dpred[i] = inside ? (float)(-(double)scale * yc / pc) : 0.0f;
    }
    return total;
}

/* Keras turns {0, 1} labels into {-1, 1} when every label of the batch is 0 or 1. */
static bool labels_binary(const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (y[i] != 0.0f && y[i] != 1.0f)
            return false;
    return true;
}

/* hinge, or squared_hinge when `squared`: per element max(1 - y p, 0) (squared). */
static double hinge_rows(const float *pred, const float *y, float *dpred, int64_t rows,
                         int64_t cols, float scale, bool squared)
{
    bool conv = labels_binary(y, rows * cols);
    double total = 0.0, g = (double)scale / (double)cols;
    for (int64_t r = 0; r < rows; r++) {
        double row = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            double yc = conv ? 2.0 * y[i] - 1.0 : (double)y[i];
            double m = 1.0 - yc * (double)pred[i];
            double h = m > 0 || isnan(m) ? m : 0.0;
            row += squared ? h * h : h;
            if (dpred)
                dpred[i] = m > 0 ? (float)(-g * yc * (squared ? 2.0 * m : 1.0)) : 0.0f;
        }
        total += row / (double)cols;
    }
    return total;
}

static double hinge_compute(const ct_loss *loss, const float *pred, const float *y,
                            float *dpred, int64_t rows, int64_t cols, float scale)
{
    (void)loss;
    return hinge_rows(pred, y, dpred, rows, cols, scale, false);
}

static double squared_hinge_compute(const ct_loss *loss, const float *pred, const float *y,
                                    float *dpred, int64_t rows, int64_t cols, float scale)
{
    (void)loss;
    return hinge_rows(pred, y, dpred, rows, cols, scale, true);
}

/* ---- row losses: cosine_similarity, categorical_hinge, categorical_focal ------------ */

typedef double (*row_fn)(const ct_loss *loss, const float *p, const float *y, float *d,
                         int64_t cols, double scale);

static double by_rows(const ct_loss *loss, const float *pred, const float *y, float *dpred,
                      int64_t rows, int64_t cols, float scale, row_fn f)
{
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++)
        total += f(loss, pred + r * cols, y + r * cols, dpred ? dpred + r * cols : NULL, cols,
                   scale);
    return total;
}

/* -sum(y / |y| * p / |p|), each norm at least eps (Keras's normalize: x * min(rsqrt(sum
 * x^2), 1 / eps)); where |p| is at that bound it is a constant for the gradient. */
static double cosine_row(const ct_loss *loss, const float *p, const float *y, float *d,
                         int64_t cols, double scale)
{
    (void)loss;
    double pp = 0.0, yy = 0.0, py = 0.0;
    for (int64_t c = 0; c < cols; c++) {
        pp += (double)p[c] * p[c];
        yy += (double)y[c] * y[c];
        py += (double)p[c] * y[c];
    }
    double np = max_nan(sqrt(pp), CT_LOSS_EPS), ny = max_nan(sqrt(yy), CT_LOSS_EPS);
    double k = sqrt(pp) > CT_LOSS_EPS ? py / (np * np * np * ny) : 0.0;
    for (int64_t c = 0; d && c < cols; c++)
        d[c] = (float)(scale * (-(double)y[c] / (ny * np) + k * p[c]));
    return -py / (np * ny);
}

/* max(max_c((1 - y_c) p_c) - sum_c y_c p_c + 1, 0); the maximum's gradient goes to its
 * first position. */
static double cat_hinge_row(const ct_loss *loss, const float *p, const float *y, float *d,
                            int64_t cols, double scale)
{
    (void)loss;
    double pos = 0.0, neg = -HUGE_VAL;
    int64_t at = 0;
    for (int64_t c = 0; c < cols; c++) {
        double v = (1.0 - y[c]) * (double)p[c];
        pos += (double)y[c] * p[c];
        if (v > neg || isnan(v)) {
            neg = v;
            at = c;
        }
        if (isnan(v))
            break;
    }
    double m = neg - pos + 1.0;
    for (int64_t c = 0; d && c < cols; c++)
        d[c] = m > 0 ? (float)(scale * ((c == at ? 1.0 - y[c] : 0.0) - y[c])) : 0.0f;
    return m > 0 || isnan(m) ? m : 0.0;
}

/* Keras 3: q = clip(p / sum(p)) (p = softmax(x) from logits), loss
 * -alpha sum_c y_c (1 - q_c)^gamma log q_c over smoothed targets. With G_c = dL/dq_c (0
 * where clipped) and A = sum_c G_c q_c, dL/dp_j = (G_j - A) / S, and from logits
 * dL/dx_j = p_j (G_j - A) / S (the softmax term sum_c p_c dL/dp_c is zero). */
static double cat_focal_row(const ct_loss *loss, const float *x, const float *y, float *d,
                            int64_t cols, double scale)
{
    double lse = 0.0, s = 0.0, a = 0.0, value = 0.0, g = loss->gamma;
    if (loss->from_logits) {
        double mx = x[0], se = 0.0;
        for (int64_t c = 1; c < cols; c++)
            mx = x[c] > mx || isnan(x[c]) ? (double)x[c] : mx;
        for (int64_t c = 0; c < cols; c++)
            se += exp((double)x[c] - mx);
        lse = mx + log(se);
    }
    row_target t = {y, -1, loss->label_smoothing, (double)cols};
#define PROB(c) (loss->from_logits ? exp((double)x[(c)] - lse) : (double)x[(c)])
    for (int64_t c = 0; c < cols; c++)
        s += PROB(c);
    for (int64_t c = 0; c < cols; c++) {
        bool inside;
        float q = clip_prob(!(s <= 0) ? (float)(PROB(c) / s) : 0.0f, &inside);
        double yc = target_at(&t, c), lq = log((double)q), u = 1.0 - (double)q;
        value -= loss->alpha * yc * pow(u, g) * lq;
        double gc = inside ? -loss->alpha * yc * (pow(u, g) / q - g * pow(u, g - 1.0) * lq)
                           : 0.0;
        a += gc * (double)q;
        if (d)
            d[c] = (float)gc;
    }
    for (int64_t c = 0; d && c < cols; c++) {
        double h = !(s <= 0) ? ((double)d[c] - a) / s : 0.0;
        d[c] = (float)(scale * h * (loss->from_logits ? PROB(c) : 1.0));
    }
#undef PROB
    return value;
}

static double cosine_compute(const ct_loss *loss, const float *pred, const float *y,
                             float *dpred, int64_t rows, int64_t cols, float scale)
{
    return by_rows(loss, pred, y, dpred, rows, cols, scale, cosine_row);
}

static double cat_hinge_compute(const ct_loss *loss, const float *pred, const float *y,
                                float *dpred, int64_t rows, int64_t cols, float scale)
{
    return by_rows(loss, pred, y, dpred, rows, cols, scale, cat_hinge_row);
}

static double cat_focal_compute(const ct_loss *loss, const float *pred, const float *y,
                                float *dpred, int64_t rows, int64_t cols, float scale)
{
    return by_rows(loss, pred, y, dpred, rows, cols, scale, cat_focal_row);
}

/* ---- registry and parsing ------------------------------------------------------------ */

enum {
    K_LS = CT_LOSS_KEY_SMOOTHING,
    K_FOCAL = CT_LOSS_KEY_FOCAL | CT_LOSS_KEY_SMOOTHING,
};

static const ct_loss_kind kinds[] = {
    {"mean_squared_error", "mse", "MeanSquaredError", false, false, mse_compute, 0},
    {"mean_absolute_error", "mae", "MeanAbsoluteError", false, false, mae_compute, 0},
    {"huber", NULL, "Huber", false, false, huber_compute, CT_LOSS_KEY_DELTA},
    {"log_cosh", "logcosh", "LogCosh", false, false, log_cosh_compute, 0},
    {"binary_crossentropy", "bce", "BinaryCrossentropy", false, true, bce_compute, K_LS},
    {"categorical_crossentropy", NULL, "CategoricalCrossentropy", false, true, cce_compute, K_LS},
    {"sparse_categorical_crossentropy", NULL, "SparseCategoricalCrossentropy", true, true,
     sparse_cce_compute, 0},
    {"kl_divergence", "kld", "KLDivergence", false, false, kld_compute, 0},
    {"hinge", NULL, "Hinge", false, false, hinge_compute, 0},
    {"mean_squared_logarithmic_error", "msle", "MeanSquaredLogarithmicError", false, false,
     msle_compute, 0},
    {"mean_absolute_percentage_error", "mape", "MeanAbsolutePercentageError", false, false,
     mape_compute, 0},
    {"poisson", NULL, "Poisson", false, false, poisson_compute, 0},
    {"cosine_similarity", NULL, "CosineSimilarity", false, false, cosine_compute,
     CT_LOSS_KEY_AXIS},
    {"squared_hinge", NULL, "SquaredHinge", false, false, squared_hinge_compute, 0},
    {"categorical_hinge", NULL, "CategoricalHinge", false, false, cat_hinge_compute, 0},
    {"binary_focal_crossentropy", NULL, "BinaryFocalCrossentropy", false, true,
     binary_focal_compute, K_FOCAL | CT_LOSS_KEY_BALANCING},
    {"categorical_focal_crossentropy", NULL, "CategoricalFocalCrossentropy", false, true,
     cat_focal_compute, K_FOCAL},
};

#define N_KINDS (sizeof kinds / sizeof kinds[0])
_Static_assert(N_KINDS == CT_LOSS_COUNT, "kinds[] follows ct_loss_id");

ct_loss_op ct_loss_op_of(const ct_loss *loss)
{
    return (ct_loss_op){.id = (ct_loss_id)(loss->kind - kinds),
                        .from_logits = loss->from_logits,
                        .fused = loss->fused,
                        .delta = loss->delta,
                        .sum_scale = 1.0,
                        .label_smoothing = loss->label_smoothing,
                        .alpha = loss->alpha,
                        .gamma = loss->gamma,
                        .apply_class_balancing = loss->apply_class_balancing};
}

void ct_cpu_loss(const ct_loss_op *op, const float *pred, const float *y, float *dpred,
                 int64_t rows, int64_t cols, float scale, double *sum)
{
    ct_loss l = {&kinds[op->id], op->from_logits, op->delta, op->fused, op->label_smoothing,
                 op->alpha, op->gamma, op->apply_class_balancing};
    double w = op->sum_scale != 0.0 ? op->sum_scale : 1.0;
    *sum += w * kinds[op->id].compute(&l, pred, y, dpred, rows, cols, scale);
}

const ct_loss_kind *ct_loss_kind_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < N_KINDS; i++) {
        const ct_loss_kind *k = &kinds[i];
        if (!strcmp(name, k->name) || !strcmp(name, k->class_name))
            return k;
    }
    /* then as layer types are matched, without regard to case or underscores: Keras's
     * upper-case aliases (MSE, MAE, KLD, BCE) among them */
    for (size_t i = 0; i < N_KINDS; i++) {
        const ct_loss_kind *k = &kinds[i];
        if (ct_name_matches(name, k->name) || ct_name_matches(name, k->class_name) ||
            (k->alias && ct_name_matches(name, k->alias)))
            return k;
    }
    return NULL;
}

static void known_losses(char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_KINDS && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", kinds[i].name);
        if (kinds[i].alias && w > 0 && used + (size_t)w < n)
            w += snprintf(buf + used + w, n - used - (size_t)w, " (%s)", kinds[i].alias);
        used += w > 0 ? (size_t)w : 0;
    }
}

static int unknown_loss(const ct_node *at, const char *name, ct_error *err)
{
    const char *cands[2 * N_KINDS + 1];
    size_t k = 0;
    for (size_t i = 0; i < N_KINDS; i++) {
        cands[k++] = kinds[i].name;
        if (kinds[i].alias)
            cands[k++] = kinds[i].alias;
    }
    cands[k] = NULL;
    char known[1024], hint[96] = "";
    const char *s = ct_suggest(name, cands);
    if (s)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
    known_losses(known, sizeof known);
    return ct_node_err(err, at, "unknown loss '%s'%s; known losses: %s", name, hint, known);
}

/* huber's delta: a positive number. */
static int parse_delta(ct_node *n, ct_loss *out, ct_error *err)
{
    if (ct_cfg_float(n, "delta", 1.0, -HUGE_VAL, HUGE_VAL, &out->delta, err) < 0)
        return -1;
    if (!(out->delta > 0) || !isfinite(out->delta))
        return ct_node_err(err, ct_map_get(n, "delta"),
                           "loss 'huber': delta must be a positive number, got %g", out->delta);
    return 0;
}

/* alpha (Keras takes any float; a weight outside [0, 1] is most likely a slip but Keras
 * accepts it, so only non-finite values are refused) and gamma >= 0. */
static int parse_focal(ct_node *n, ct_loss *out, ct_error *err)
{
    if (ct_cfg_float(n, "alpha", 0.25, -HUGE_VAL, HUGE_VAL, &out->alpha, err) < 0 ||
        ct_cfg_float(n, "gamma", 2.0, 0.0, HUGE_VAL, &out->gamma, err) < 0)
        return -1;
    if (!isfinite(out->alpha) || !isfinite(out->gamma))
        return ct_node_err(err, ct_map_get(n, isfinite(out->alpha) ? "gamma" : "alpha"),
                           "loss '%s': alpha and gamma must be finite numbers",
                           out->kind->name);
    return 0;
}

/* axis: Keras's argument, of which ctrain has the last axis only. */
static int parse_axis(ct_node *n, ct_error *err)
{
    double axis;
    if (ct_cfg_float(n, "axis", -1.0, -HUGE_VAL, HUGE_VAL, &axis, err) < 0)
        return -1;
    if (axis != -1.0)
        return ct_node_err(err, ct_map_get(n, "axis"),
                           "loss 'cosine_similarity': only axis -1 (the last) is supported, "
                           "got %g", axis);
    return 0;
}

/* The keys the kind's flags name, in Keras's constructor order, and their values. */
static int parse_kind_keys(ct_node *n, ct_loss *out, const char **keys, ct_error *err)
{
    const ct_loss_kind *k = out->kind;
    int nk = 1;
    if (k->keys & CT_LOSS_KEY_BALANCING) {
        keys[nk++] = "apply_class_balancing";
        if (ct_cfg_bool(n, "apply_class_balancing", false, &out->apply_class_balancing, err))
            return -1;
    }
    if (k->keys & CT_LOSS_KEY_FOCAL) {
        keys[nk++] = "alpha";
        keys[nk++] = "gamma";
        if (parse_focal(n, out, err) < 0)
            return -1;
    }
    if (k->has_from_logits) {
        keys[nk++] = "from_logits";
        if (ct_cfg_bool(n, "from_logits", false, &out->from_logits, err) < 0)
            return -1;
    }
    if (k->keys & CT_LOSS_KEY_SMOOTHING) {
        keys[nk++] = "label_smoothing";
        if (ct_cfg_float(n, "label_smoothing", 0.0, 0.0, 1.0, &out->label_smoothing, err) < 0)
            return -1;
    }
    if (k->keys & CT_LOSS_KEY_DELTA) {
        keys[nk++] = "delta";
        if (parse_delta(n, out, err) < 0)
            return -1;
    }
    if (k->keys & CT_LOSS_KEY_AXIS) {
        keys[nk++] = "axis";
        if (parse_axis(n, err) < 0)
            return -1;
    }
    keys[nk] = NULL;
    return 0;
}

/* The map form: type and the loss's own keys; any other key is an error. */
static int parse_loss_map(ct_node *n, ct_loss *out, ct_error *err)
{
    const char *keys[8] = {"type"};
    if (parse_kind_keys(n, out, keys, err) < 0)
        return -1;
    char what[96];
    snprintf(what, sizeof what, "loss '%s'", out->kind->name);
    return ct_cfg_check_keys(n, keys, what, err);
}

int ct_loss_parse(ct_node *compile, const char *key, ct_loss *out, ct_error *err)
{
    memset(out, 0, sizeof *out);
    out->delta = 1.0;
    out->alpha = 0.25;
    out->gamma = 2.0;
    if (ct_cfg_require(compile, key, "compile", err) < 0)
        return -1;
    ct_node *n = ct_map_get(compile, key);
    const ct_node *name_node = n;
    const char *name = NULL;
    if (n->type == CT_NODE_SCALAR) {
        name = n->scalar;
    } else if (n->type == CT_NODE_MAP) {
        if (ct_cfg_require(n, "type", "loss", err) < 0 ||
            ct_cfg_string(n, "type", NULL, &name, err) < 0)
            return -1;
        name_node = ct_map_get(n, "type");
    } else {
        return ct_node_err(err, n, "loss must be a name such as mse or a map such as "
                                   "{type: categorical_crossentropy, from_logits: true}");
    }
    out->kind = ct_loss_kind_find(name);
    if (!out->kind)
        return unknown_loss(name_node, name, err);
    return n->type == CT_NODE_MAP ? parse_loss_map(n, out, err) : 0;
}

bool ct_loss_can_fuse(const ct_loss *loss, ct_activation a)
{
    if (!loss || !loss->kind || loss->from_logits)
        return false;
    const char *name = loss->kind->name;
    if (a == CT_ACT_SOFTMAX)
        return !strcmp(name, "categorical_crossentropy") ||
               !strcmp(name, "sparse_categorical_crossentropy");
    if (a == CT_ACT_SIGMOID)
        return !strcmp(name, "binary_crossentropy");
    return false;
}
