/* loss.c - Keras 3 losses and their gradients.
 *
 * Each compute function returns the sum over rows of the per-sample loss and, when dpred
 * is given, writes scale * d(sum)/d(pred). Per-sample losses follow Keras 3: a mean over
 * the last axis for the elementwise losses (mse, mae, huber, log_cosh, binary
 * crossentropy, hinge) and a sum over it for categorical / sparse crossentropy and
 * kl_divergence. Sums are accumulated in double.
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

/* Value and derivative of one element's loss given e = pred - y. */
typedef double (*elem_fn)(const ct_loss *loss, double e, double *de);

static double mse_elem(const ct_loss *loss, double e, double *de)
{
    (void)loss;
    *de = 2.0 * e;
    return e * e;
}

static double mae_elem(const ct_loss *loss, double e, double *de)
{
    (void)loss;
    *de = sign(e);
    return fabs(e);
}

static double huber_elem(const ct_loss *loss, double e, double *de)
{
    double a = fabs(e), d = loss->delta;
    if (a <= d) {
        *de = e;
        return 0.5 * e * e;
    }
    *de = d * sign(e);
    return d * a - 0.5 * d * d;
}

/* log(cosh(x)) = x + softplus(-2x) - log(2): finite for any x (Keras's form). */
static double log_cosh_elem(const ct_loss *loss, double e, double *de)
{
    (void)loss;
    *de = tanh(e);
    return e + softplus(-2.0 * e) - log(2.0);
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
            row += f(loss, (double)pred[i] - (double)y[i], &de);
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
            row += bce_elem(loss, pred[i], y[i], &d);
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
} row_target;

static double target_at(const row_target *t, int64_t c)
{
    return t->y ? (double)t->y[c] : (double)(c == t->hot);
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
        row_target t = {y + r * cols, -1};
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
        row_target t = {NULL, sparse_index(y[r], cols)};
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

static double hinge_compute(const ct_loss *loss, const float *pred, const float *y,
                            float *dpred, int64_t rows, int64_t cols, float scale)
{
    (void)loss;
    bool conv = labels_binary(y, rows * cols);
    double total = 0.0, g = (double)scale / (double)cols;
    for (int64_t r = 0; r < rows; r++) {
        double row = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            double yc = conv ? 2.0 * y[i] - 1.0 : (double)y[i];
            double m = 1.0 - yc * (double)pred[i];
            row += m > 0 || isnan(m) ? m : 0.0;
            if (dpred)
                dpred[i] = m > 0 ? (float)(-g * yc) : 0.0f;
        }
        total += row / (double)cols;
    }
    return total;
}

/* ---- registry and parsing ------------------------------------------------------------ */

static const ct_loss_kind kinds[] = {
    {"mean_squared_error", "mse", "MeanSquaredError", false, false, mse_compute},
    {"mean_absolute_error", "mae", "MeanAbsoluteError", false, false, mae_compute},
    {"huber", NULL, "Huber", false, false, huber_compute},
    {"log_cosh", "logcosh", "LogCosh", false, false, log_cosh_compute},
    {"binary_crossentropy", "bce", "BinaryCrossentropy", false, true, bce_compute},
    {"categorical_crossentropy", NULL, "CategoricalCrossentropy", false, true, cce_compute},
    {"sparse_categorical_crossentropy", NULL, "SparseCategoricalCrossentropy", true, true,
     sparse_cce_compute},
    {"kl_divergence", "kld", "KLDivergence", false, false, kld_compute},
    {"hinge", NULL, "Hinge", false, false, hinge_compute},
};

#define N_KINDS (sizeof kinds / sizeof kinds[0])
_Static_assert(N_KINDS == CT_LOSS_COUNT, "kinds[] follows ct_loss_id");

ct_loss_op ct_loss_op_of(const ct_loss *loss)
{
    return (ct_loss_op){(ct_loss_id)(loss->kind - kinds), loss->from_logits, loss->fused,
                        loss->delta, 1.0};
}

void ct_cpu_loss(const ct_loss_op *op, const float *pred, const float *y, float *dpred,
                 int64_t rows, int64_t cols, float scale, double *sum)
{
    ct_loss l = {&kinds[op->id], op->from_logits, op->delta, op->fused};
    double w = op->sum_scale != 0.0 ? op->sum_scale : 1.0;
    *sum += w * kinds[op->id].compute(&l, pred, y, dpred, rows, cols, scale);
}

const ct_loss_kind *ct_loss_kind_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < N_KINDS; i++) {
        const ct_loss_kind *k = &kinds[i];
        /* Keras also registers upper-case aliases (MSE, MAE, KLD, BCE). */
        if (!strcmp(name, k->name) || !strcmp(name, k->class_name) ||
            (k->alias && !strcasecmp(name, k->alias)))
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
    char known[512], hint[96] = "";
    const char *s = ct_suggest(name, cands);
    if (s)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
    known_losses(known, sizeof known);
    return ct_node_err(err, at, "unknown loss '%s'%s; known losses: %s", name, hint, known);
}

/* The map form's own keys: from_logits for crossentropies, delta for huber. */
static int parse_loss_map(ct_node *n, ct_loss *out, ct_error *err)
{
    const ct_loss_kind *k = out->kind;
    const char *keys[3] = {"type", NULL, NULL};
    if (k->has_from_logits) {
        keys[1] = "from_logits";
        if (ct_cfg_bool(n, "from_logits", false, &out->from_logits, err) < 0)
            return -1;
    } else if (!strcmp(k->name, "huber")) {
        keys[1] = "delta";
        if (ct_cfg_float(n, "delta", 1.0, -HUGE_VAL, HUGE_VAL, &out->delta, err) < 0)
            return -1;
        if (!(out->delta > 0) || !isfinite(out->delta))
            return ct_node_err(err, ct_map_get(n, "delta"),
                               "loss 'huber': delta must be a positive number, got %g",
                               out->delta);
    }
    char what[96];
    snprintf(what, sizeof what, "loss '%s'", k->name);
    return ct_cfg_check_keys(n, keys, what, err);
}

int ct_loss_parse(ct_node *compile, const char *key, ct_loss *out, ct_error *err)
{
    memset(out, 0, sizeof *out);
    out->delta = 1.0;
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
