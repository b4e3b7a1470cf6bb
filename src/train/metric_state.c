/* metric_state.c - Keras 3's metrics that keep an epoch's state: the result is computed
 * from counts gathered over every batch since the reset (precision is TP / (TP + FP) over
 * the epoch, not a mean of batch values). States are sums in double.
 *
 * Targets: y != 0 is a positive label (Keras casts labels to bool). The confusion-matrix
 * metrics, f1/fbeta and r2 need one target per output column, so a sparse loss's class
 * indices are refused for a wider output (Keras would broadcast them meaninglessly). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metric_state.h"

#define EPS 1e-7 /* Keras's backend.epsilon() */

/* Keras's divide_no_nan. */
static double dnn(double a, double b)
{
    return b != 0.0 ? a / b : 0.0;
}

/* numpy argmax: the first maximum wins. */
static int64_t argmax_row(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* ---- precision and recall: state [true positives, false positives | false negatives] -- */

/* Keras's _filter_top_k: the k largest of a row stay (the earlier of equal values first),
 * the others read as -inf, so never as positive. */
static bool kept_by_top_k(const float *p, int64_t cols, int64_t c, int k)
{
    int64_t rank = 0;
    for (int64_t j = 0; j < cols && rank < k; j++)
        rank += p[j] > p[c] || (p[j] == p[c] && j < c);
    return rank < k;
}

static void confusion_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                             int64_t cols, bool recall)
{
    const ct_metric_opts *o = &m->opt;
    int64_t c0 = o->class_id >= 0 ? o->class_id : 0;
    int64_t c1 = o->class_id >= 0 ? o->class_id + 1 : cols;
    float thr = (float)o->threshold; /* Keras compares in float32 */
    for (int64_t r = 0; r < rows; r++) {
        const float *p = pred + r * cols;
        for (int64_t c = c0; c < c1; c++) {
            bool said = p[c] > thr && (!o->top_k || kept_by_top_k(p, cols, c, o->top_k));
            bool is = y[r * cols + c] != 0.0f;
            if (said && is)
                m->state[0] += 1.0;
            else if (recall ? is : said)
                m->state[1] += 1.0;
        }
    }
}

static void precision_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                             int64_t cols)
{
    confusion_update(m, pred, y, rows, cols, false);
}

static void recall_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                          int64_t cols)
{
    confusion_update(m, pred, y, rows, cols, true);
}

static double confusion_result(const ct_metric *m)
{
    return dnn(m->state[0], m->state[0] + m->state[1]);
}

/* ---- auc: state [positives by bucket (T), negatives by bucket (T)] -------------------- */

/* Keras's evenly spaced thresholds (-eps, 1/(T-1), ..., (T-2)/(T-1), 1 + eps) counted as
 * it does: the prediction clipped to [0, 1] falls in bucket max(ceil(p (T - 1)) - 1, 0)
 * (float32), and is above threshold i exactly when its bucket is >= i. */
static void auc_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                       int64_t cols)
{
    int t = m->opt.num_thresholds;
    for (int64_t i = 0; i < rows * cols; i++) {
        float p = pred[i];
        if (m->opt.from_logits)
            p = (float)(1.0 / (1.0 + exp(-(double)p)));
        p = p < 0.0f ? 0.0f : (p > 1.0f ? 1.0f : p);
        float b = ceilf(p * (float)(t - 1)) - 1.0f;
        int64_t bucket = b > 0.0f ? (int64_t)b : 0; /* NaN: 0 */
        m->state[(y[i] != 0.0f ? 0 : t) + bucket] += 1.0;
    }
}

typedef struct conf {
    double tp, fp, tn, fn;
} conf;

/* Keras's interpolate_pr_auc term between threshold i (a) and i + 1 (b). */
static double pr_interp_term(const conf *a, const conf *b)
{
    double dtp = a->tp - b->tp, pa = a->tp + a->fp, pb = b->tp + b->fp;
    double slope = dnn(dtp, fmax(pa - pb, 0.0));
    double intercept = b->tp - slope * pb;
    double ratio = pa > 0 && pb > 0 ? dnn(pa, fmax(pb, 0.0)) : 1.0;
    return dnn(slope * (dtp + intercept * log(ratio)), fmax(b->tp + b->fn, 0.0));
}

/* The Riemann term between thresholds i (a) and i + 1 (b): ROC (x fp rate, y recall) or
 * PR (x recall, y precision), the height by the summation method. */
static double riemann_term(const ct_metric_opts *o, const conf *a, const conf *b)
{
    double xa, xb, ya, yb;
    if (o->pr) {
        xa = dnn(a->tp, a->tp + a->fn), xb = dnn(b->tp, b->tp + b->fn);
        ya = dnn(a->tp, a->tp + a->fp), yb = dnn(b->tp, b->tp + b->fp);
    } else {
        xa = dnn(a->fp, a->fp + a->tn), xb = dnn(b->fp, b->fp + b->tn);
        ya = dnn(a->tp, a->tp + a->fn), yb = dnn(b->tp, b->tp + b->fn);
    }
    double h = o->summation == 1 ? fmin(ya, yb) : o->summation == 2 ? fmax(ya, yb)
                                                                     : (ya + yb) / 2.0;
    return (xa - xb) * h;
}

static double auc_result(const ct_metric *m)
{
    int t = m->opt.num_thresholds;
    const double *pos = m->state, *neg = m->state + t;
    double np = 0.0, nn = 0.0;
    for (int i = 0; i < t; i++) {
        np += pos[i];
        nn += neg[i];
    }
    /* from the top threshold down, each step's counts from the buckets at or above it */
    conf b = {0.0, 0.0, nn, np}, a;
    double area = 0.0;
    for (int i = t - 1; i >= 0; i--) {
        a.tp = b.tp + pos[i];
        a.fp = b.fp + neg[i];
        a.tn = nn - a.fp;
        a.fn = np - a.tp;
        if (i < t - 1)
            area += m->opt.pr && m->opt.summation == 0 ? pr_interp_term(&a, &b)
                                                        : riemann_term(&m->opt, &a, &b);
        b = a;
    }
    return area;
}

/* ---- f1_score and fbeta_score: state per class [tp, fp, fn, sum of y] ------------------ */

static void fbeta_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                         int64_t cols)
{
    double *s = m->state;
    for (int64_t r = 0; r < rows; r++) {
        const float *p = pred + r * cols;
        float mx = p[0];
        for (int64_t c = 1; c < cols; c++)
            mx = p[c] > mx || isnan(p[c]) ? p[c] : mx;
        for (int64_t c = 0; c < cols; c++) {
            /* no threshold: the row's maxima, but an all-zero row predicts nothing */
            bool said = m->opt.has_threshold ? p[c] > (float)m->opt.threshold
                                             : p[c] >= mx && fabsf(p[c]) > 1e-9f;
            double t = y[r * cols + c], d = said ? 1.0 : 0.0;
            s[4 * c] += d * t;
            s[4 * c + 1] += d * (1.0 - t);
            s[4 * c + 2] += (1.0 - d) * t;
            s[4 * c + 3] += t;
        }
    }
}

static double fbeta_of(const double *s, double b2)
{
    double prec = s[0] / (s[0] + s[1] + EPS), rec = s[0] / (s[0] + s[2] + EPS);
    return prec * rec / (b2 * prec + rec + EPS) * (1.0 + b2);
}

static double fbeta_result(const ct_metric *m)
{
    int64_t n = m->opt.cols;
    double b2 = m->opt.beta * m->opt.beta, total[4] = {0, 0, 0, 0}, sum = 0.0, wsum = 0.0;
    for (int64_t c = 0; c < n; c++)
        for (int j = 0; j < 4; j++)
            total[j] += m->state[4 * c + j];
    if (m->opt.average == 1) /* micro: the counts of all classes together */
        return fbeta_of(total, b2);
    for (int64_t c = 0; c < n; c++) {
        double f = fbeta_of(m->state + 4 * c, b2);
        sum += f;
        wsum += f * m->state[4 * c + 3] / (total[3] + EPS);
    }
    return m->opt.average == 3 ? wsum : sum / (double)n; /* none: one class, its score */
}

/* ---- mean_iou: state the num_classes^2 confusion matrix [true][predicted] ------------- */

/* A class read as Keras casts it to an integer (truncation); -1 when not a class. */
static int64_t class_of(float v, int n)
{
    if (!(v > -1.0f && v < (float)n))
        return -1;
    return (int64_t)v;
}

static void mean_iou_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                            int64_t cols)
{
    const ct_metric_opts *o = &m->opt;
    int64_t ycols = o->sparse_labels ? 1 : cols;
    /* per row: the labels (sparse: every value) and the predictions paired in order */
    int64_t per = o->sparse_y_true ? ycols : 1;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < per; j++) {
            const float *yr = y + r * ycols, *pr = pred + r * cols;
            int64_t t = o->sparse_y_true ? class_of(yr[j], o->num_classes)
                                         : argmax_row(yr, ycols);
            int64_t p = o->sparse_y_pred ? class_of(pr[j], o->num_classes)
                                         : argmax_row(pr, cols);
            if (t < 0 || p < 0 || t >= o->num_classes || p >= o->num_classes ||
                t == o->ignore_class)
                continue;
            m->state[t * o->num_classes + p] += 1.0;
        }
}

static double mean_iou_result(const ct_metric *m)
{
    int n = m->opt.num_classes;
    double sum = 0.0, valid = 0.0;
    for (int c = 0; c < n; c++) {
        double row = 0.0, col = 0.0, tp = m->state[c * n + c];
        for (int j = 0; j < n; j++) {
            row += m->state[c * n + j];
            col += m->state[j * n + c];
        }
        double den = row + col - tp;
        valid += den != 0.0;
        sum += dnn(tp, den);
    }
    return dnn(sum, valid);
}

/* ---- r2_score: state per column [sum y, sum y^2, sum (y - p)^2], then the count ------- */

static void r2_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                      int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double t = y[r * cols + c], e = t - (double)pred[r * cols + c];
            m->state[3 * c] += t;
            m->state[3 * c + 1] += t * t;
            m->state[3 * c + 2] += e * e;
        }
    m->state[3 * cols] += (double)rows;
}

static double r2_result(const ct_metric *m)
{
    int64_t n = m->opt.cols;
    double count = m->state[3 * n], raw_sum = 0.0, wsum = 0.0, tsum = 0.0;
    for (int64_t c = 0; c < n; c++) {
        const double *s = m->state + 3 * c;
        double total = s[1] - s[0] * (s[0] / count);
        double raw = 1.0 - s[2] / total;
        raw = isinf(raw) ? 0.0 : raw; /* Keras: a constant target scores 0 */
        raw_sum += raw;
        wsum += total * raw;
        tsum += total;
    }
    double r2 = m->opt.aggregation == 2 ? wsum / tsum : raw_sum / (double)n;
    /* Keras's adjustment counts every value (num_samples += size(y)), not rows; it falls
     * back to plain r2 when there are too few */
    double p = m->opt.num_regressors, size = count * (double)n;
    if (p != 0 && p < size - 1)
        r2 = 1.0 - (1.0 - r2) * (size - 1.0) / (size - p - 1.0);
    return r2;
}

/* ---- cosine_similarity: state [sum over rows, rows] ------------------------------------ */

/* sum(y / |y| * p / |p|) per row, each norm at least eps (Keras's normalize). */
static void cosine_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                          int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        double pp = 0.0, yy = 0.0, py = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            double p = pred[r * cols + c], t = y[r * cols + c];
            pp += p * p;
            yy += t * t;
            py += p * t;
        }
        double np = sqrt(pp), ny = sqrt(yy);
        m->state[0] += py / ((np > EPS || isnan(np) ? np : EPS) * (ny > EPS ? ny : EPS));
    }
    m->state[1] += (double)rows;
}

static double cosine_result(const ct_metric *m)
{
    return dnn(m->state[0], m->state[1]);
}

void ct_class_scores(double tp, double fp, double fn, double *precision, double *recall,
                     double *f1)
{
    const double counts[4] = {tp, fp, fn, tp + fn};
    *precision = dnn(tp, tp + fp);
    *recall = dnn(tp, tp + fn);
    *f1 = fbeta_of(counts, 1.0);
}

const ct_metric_kind ct_host_metric_kinds[CT_HM_COUNT] = {
    [CT_HM_PRECISION] = {"precision", precision_update, confusion_result},
    [CT_HM_RECALL] = {"recall", recall_update, confusion_result},
    [CT_HM_AUC] = {"auc", auc_update, auc_result},
    [CT_HM_F1] = {"f1_score", fbeta_update, fbeta_result},
    [CT_HM_FBETA] = {"fbeta_score", fbeta_update, fbeta_result},
    [CT_HM_MEAN_IOU] = {"mean_iou", mean_iou_update, mean_iou_result},
    [CT_HM_R2] = {"r2_score", r2_update, r2_result},
    [CT_HM_COSINE] = {"cosine_similarity", cosine_update, cosine_result},
};

/* ---- Keras's arguments --------------------------------------------------------------- */

/* map[key] when given and not null. */
static const ct_node *arg(const ct_node *node, const char *key)
{
    if (!node || node->type != CT_NODE_MAP)
        return NULL;
    const ct_node *v = ct_map_get(node, key);
    return ct_node_is_null(v) ? NULL : v;
}

/* Each reader leaves *out alone when the key is absent or null. */
static int arg_int(const ct_metric *m, const ct_node *node, const char *key, int64_t lo,
                   int64_t hi, int *out, ct_error *err)
{
    const ct_node *v = arg(node, key);
    int64_t x;
    if (!v)
        return 0;
    if (ct_node_int(v, &x, err) < 0)
        return -1;
    if (x < lo || x > hi)
        return ct_node_err(err, v, "metric '%s': %s must be an integer from %lld to %lld, got %lld",
                           m->kind->name, key, (long long)lo, (long long)hi, (long long)x);
    *out = (int)x;
    return 0;
}

static int arg_float(const ct_metric *m, const ct_node *node, const char *key, double lo,
                     double hi, double *out, ct_error *err)
{
    const ct_node *v = arg(node, key);
    double x;
    if (!v)
        return 0;
    if (v->type != CT_NODE_SCALAR)
        return ct_node_err(err, v, "metric '%s': %s must be one number", m->kind->name, key);
    if (ct_node_float(v, &x, err) < 0)
        return -1;
    if (!(x >= lo && x <= hi))
        return ct_node_err(err, v, "metric '%s': %s must be from %g to %g, got %g",
                           m->kind->name, key, lo, hi, x);
    *out = x;
    return 0;
}

static int arg_bool(const ct_node *node, const char *key, bool *out, ct_error *err)
{
    const ct_node *v = arg(node, key);
    return v ? ct_node_bool(v, out, err) : 0;
}

/* One of choices (NULL-terminated), its index in *out. */
static int arg_choice(const ct_metric *m, const ct_node *node, const char *key,
                      const char *const *choices, int *out, ct_error *err)
{
    const ct_node *v = arg(node, key);
    if (!v)
        return 0;
    for (int i = 0; v->type == CT_NODE_SCALAR && choices[i]; i++)
        if (!strcmp(v->scalar, choices[i])) {
            *out = i;
            return 0;
        }
    char list[160] = "";
    for (int i = 0, used = 0; choices[i] && used < (int)sizeof list; i++)
        used += snprintf(list + used, sizeof list - (size_t)used, "%s%s", i ? ", " : "",
                         choices[i]);
    return ct_node_err(err, v, "metric '%s': %s must be one of %s", m->kind->name, key, list);
}

/* Keras's axis argument, of which ctrain has the last axis only. */
static int arg_axis(const ct_metric *m, const ct_node *node, ct_error *err)
{
    int axis = -1;
    if (arg_int(m, node, "axis", -1000, 1000, &axis, err) < 0)
        return -1;
    if (axis != -1)
        return ct_node_err(err, arg(node, "axis"), "metric '%s': only axis -1 (the last) is "
                           "supported, got %d", m->kind->name, axis);
    return 0;
}

/* Metrics that read one target per output column. */
static int dense_targets(const ct_metric *m, const ct_node *node, ct_error *err)
{
    if (!m->opt.sparse_labels || m->opt.cols == 1)
        return 0;
    return ct_node_err(err, node, "metric '%s' needs one target per output column (one-hot "
                       "labels), but the loss takes class indices", m->kind->name);
}

static int setup_confusion(ct_metric *m, const ct_node *node, ct_error *err)
{
    int64_t cols = m->opt.cols;
    m->opt.class_id = -1;
    if (arg_int(m, node, "top_k", 1, cols, &m->opt.top_k, err) < 0 ||
        arg_int(m, node, "class_id", 0, cols - 1, &m->opt.class_id, err) < 0)
        return -1;
    /* Keras: 0.5, or -inf (every kept value) with top_k */
    m->opt.threshold = m->opt.top_k ? -HUGE_VAL : 0.5;
    if (arg_float(m, node, "thresholds", 0.0, 1.0, &m->opt.threshold, err) < 0)
        return -1;
    m->nstate = 2;
    return dense_targets(m, node, err);
}

static int setup_auc(ct_metric *m, const ct_node *node, ct_error *err)
{
    static const char *const curves[] = {"ROC", "PR", NULL};
    static const char *const sums[] = {"interpolation", "minoring", "majoring", NULL};
    int curve = 0;
    m->opt.num_thresholds = 200;
    if (arg_int(m, node, "num_thresholds", 2, 1000000, &m->opt.num_thresholds, err) < 0 ||
        arg_choice(m, node, "curve", curves, &curve, err) < 0 ||
        arg_choice(m, node, "summation_method", sums, &m->opt.summation, err) < 0 ||
        arg_bool(node, "from_logits", &m->opt.from_logits, err) < 0)
        return -1;
    m->opt.pr = curve == 1;
    m->nstate = 2 * (int64_t)m->opt.num_thresholds;
    return dense_targets(m, node, err);
}

/* A choice whose null (Keras's None) is 0 and whose names count from 1. */
static int arg_choice_or_null(const ct_metric *m, const ct_node *node, const char *key,
                              const char *const *choices, int *out, ct_error *err)
{
    int i = -1;
    if (node->type == CT_NODE_MAP && ct_map_get(node, key) && !arg(node, key))
        *out = 0;
    if (arg_choice(m, node, key, choices, &i, err) < 0)
        return -1;
    if (i >= 0)
        *out = i + 1;
    return 0;
}

static int setup_fbeta(ct_metric *m, const ct_node *node, ct_error *err)
{
    static const char *const averages[] = {"micro", "macro", "weighted", NULL};
    m->opt.beta = 1.0;
    if (arg_choice_or_null(m, node, "average", averages, &m->opt.average, err) < 0 ||
        arg_float(m, node, "beta", 1e-300, HUGE_VAL, &m->opt.beta, err) < 0 ||
        arg_float(m, node, "threshold", 0.0, 1.0, &m->opt.threshold, err) < 0)
        return -1;
    m->opt.has_threshold = arg(node, "threshold") != NULL;
    if (m->opt.average == 0 && m->opt.cols > 1)
        return ct_node_err(err, node, "metric '%s': average null (the default) gives one "
                           "score per class, and a metric reports one number; set average: "
                           "micro, macro or weighted", m->kind->name);
    m->nstate = 4 * m->opt.cols;
    return dense_targets(m, node, err);
}

static int setup_mean_iou(ct_metric *m, const ct_node *node, ct_error *err)
{
    ct_metric_opts *o = &m->opt;
    o->ignore_class = -1;
    o->sparse_y_true = o->sparse_y_pred = true;
    if (!arg(node, "num_classes"))
        return ct_node_err(err, node, "metric 'mean_iou' needs num_classes");
    if (arg_int(m, node, "num_classes", 1, 65536, &o->num_classes, err) < 0 ||
        arg_int(m, node, "ignore_class", -1000000, 1000000, &o->ignore_class, err) < 0 ||
        arg_bool(node, "sparse_y_true", &o->sparse_y_true, err) < 0 ||
        arg_bool(node, "sparse_y_pred", &o->sparse_y_pred, err) < 0 || arg_axis(m, node, err))
        return -1;
    /* labels and predictions pair up one to one, as Keras flattens both */
    int64_t ny = o->sparse_y_true ? (o->sparse_labels ? 1 : o->cols) : 1;
    int64_t np = o->sparse_y_pred ? o->cols : 1;
    if (ny != np)
        return ct_node_err(err, node, "metric 'mean_iou': %lld label(s) but %lld "
                           "prediction(s) per sample; for an output of class probabilities "
                           "set sparse_y_pred: false (and sparse_y_true: false for one-hot "
                           "labels)", (long long)ny, (long long)np);
    m->nstate = (int64_t)o->num_classes * o->num_classes;
    return 0;
}

static int setup_r2(ct_metric *m, const ct_node *node, ct_error *err)
{
    static const char *const aggs[] = {"uniform_average", "variance_weighted_average", NULL};
    m->opt.aggregation = 1;
    if (arg_choice_or_null(m, node, "class_aggregation", aggs, &m->opt.aggregation, err) < 0 ||
        arg_int(m, node, "num_regressors", 0, 1000000000, &m->opt.num_regressors, err) < 0)
        return -1;
    if (m->opt.aggregation == 0 && m->opt.cols > 1)
        return ct_node_err(err, node, "metric 'r2_score': class_aggregation null gives one "
                           "score per column, and a metric reports one number");
    m->nstate = 3 * m->opt.cols + 1;
    return dense_targets(m, node, err);
}

static int setup_cosine(ct_metric *m, const ct_node *node, ct_error *err)
{
    m->nstate = 2;
    if (arg_axis(m, node, err) < 0)
        return -1;
    return dense_targets(m, node, err);
}

static const char *const keys_confusion[] = {"type", "name", "thresholds", "top_k", "class_id",
                                             NULL};
static const char *const keys_auc[] = {"type", "name", "num_thresholds", "curve",
                                       "summation_method", "from_logits", NULL};
static const char *const keys_f1[] = {"type", "name", "average", "threshold", NULL};
static const char *const keys_fbeta[] = {"type", "name", "average", "beta", "threshold", NULL};
static const char *const keys_iou[] = {"type", "name", "num_classes", "ignore_class",
                                       "sparse_y_true", "sparse_y_pred", "axis", NULL};
static const char *const keys_r2[] = {"type", "name", "class_aggregation", "num_regressors",
                                      NULL};
static const char *const keys_cosine[] = {"type", "name", "axis", NULL};

static const struct {
    const char *const *keys;
    int (*setup)(ct_metric *m, const ct_node *node, ct_error *err);
} setups[CT_HM_COUNT] = {
    [CT_HM_PRECISION] = {keys_confusion, setup_confusion},
    [CT_HM_RECALL] = {keys_confusion, setup_confusion},
    [CT_HM_AUC] = {keys_auc, setup_auc},
    [CT_HM_F1] = {keys_f1, setup_fbeta},
    [CT_HM_FBETA] = {keys_fbeta, setup_fbeta},
    [CT_HM_MEAN_IOU] = {keys_iou, setup_mean_iou},
    [CT_HM_R2] = {keys_r2, setup_r2},
    [CT_HM_COSINE] = {keys_cosine, setup_cosine},
};

int ct_host_metric_setup(ct_metric *m, int which, const ct_node *node, ct_error *err)
{
    char what[96];
    m->kind = &ct_host_metric_kinds[which];
    m->host = true;
    snprintf(what, sizeof what, "metric '%s'", m->kind->name);
    if (node->type == CT_NODE_MAP && ct_cfg_check_keys(node, setups[which].keys, what, err))
        return -1;
    if (setups[which].setup(m, node, err) < 0)
        return -1;
    if (!(m->state = calloc((size_t)m->nstate, sizeof *m->state)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    return 0;
}

int ct_confusion_setup(ct_metric *m, int num_classes, bool sparse_labels, ct_error *err)
{
    *m = (ct_metric){.kind = &ct_host_metric_kinds[CT_HM_MEAN_IOU], .host = true};
    snprintf(m->name, sizeof m->name, "confusion_matrix");
    m->opt.num_classes = num_classes;
    m->opt.ignore_class = -1;
    m->opt.sparse_y_true = sparse_labels;
    m->opt.sparse_labels = sparse_labels;
    m->opt.cols = num_classes;
    m->nstate = (int64_t)num_classes * num_classes;
    if (!(m->state = calloc((size_t)m->nstate, sizeof *m->state)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory for a %d-class confusion matrix",
                      num_classes);
    return 0;
}
