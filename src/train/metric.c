/* metric.c - Keras metrics as running sums: sum holds the per-sample values added so far
 * and count the samples, so the result is the mean over every sample seen (rows weigh
 * equally whatever the batch sizes). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "metric.h"
#include "text.h"
#include "metric_state.h"

/* numpy argmax: the first maximum wins. */
static int64_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static double mean_result(const ct_metric *m)
{
    return m->count > 0 ? m->sum / m->count : 0.0;
}

static double rmse_result(const ct_metric *m)
{
    return sqrt(mean_result(m));
}

/* Keras: (pred > 0.5) == y, averaged over the last axis. */
static void binary_acc_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                              int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        int64_t hits = 0;
        for (int64_t c = 0; c < cols; c++) {
            float p = pred[r * cols + c] > 0.5f ? 1.0f : 0.0f;
            hits += p == y[r * cols + c];
        }
        m->sum += (double)hits / (double)cols;
    }
    m->count += (double)rows;
}

static void cat_acc_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                           int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        m->sum += argmax(pred + r * cols, cols) == argmax(y + r * cols, cols);
    m->count += (double)rows;
}

/* The label (a float holding an integer) against argmax(pred), compared as floats as
 * Keras does; a label that is no class index never matches. */
static void sparse_acc_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                              int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        m->sum += (float)argmax(pred + r * cols, cols) == y[r];
    m->count += (double)rows;
}

/* Keras's in_top_k: the target's rank is 1 + the number of strictly larger predictions,
 * so ties at the boundary count as inside. */
static bool in_top_k(const float *p, int64_t cols, int64_t target, int k)
{
    if (target < 0 || target >= cols || isnan(p[target]))
        return false;
    int64_t larger = 0;
    for (int64_t c = 0; c < cols; c++)
        larger += p[c] > p[target];
    return larger < k;
}

static void top_k_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                         int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        m->sum += in_top_k(pred + r * cols, cols, argmax(y + r * cols, cols), m->k);
    m->count += (double)rows;
}

static void sparse_top_k_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                                int64_t cols)
{
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = y[r] >= 0.0f && y[r] < (float)cols ? (int64_t)y[r] : -1;
        if (t >= 0 && (float)t != y[r])
            t = -1;
        m->sum += in_top_k(pred + r * cols, cols, t, m->k);
    }
    m->count += (double)rows;
}

/* Per sample: the mean over the last axis of |e| or e^2. */
static void error_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                         int64_t cols, bool squared)
{
    for (int64_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            double e = (double)pred[r * cols + c] - (double)y[r * cols + c];
            s += squared ? e * e : fabs(e);
        }
        m->sum += s / (double)cols;
    }
    m->count += (double)rows;
}

static void mse_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                       int64_t cols)
{
    error_update(m, pred, y, rows, cols, true);
}

static void mae_update(ct_metric *m, const float *pred, const float *y, int64_t rows,
                       int64_t cols)
{
    error_update(m, pred, y, rows, cols, false);
}

enum {
    K_BINARY, K_CATEGORICAL, K_SPARSE, K_TOP_K, K_SPARSE_TOP_K, K_MSE, K_MAE, K_RMSE, K_COUNT
};

static const ct_metric_kind kinds[K_COUNT] = {
    [K_BINARY] = {"binary_accuracy", binary_acc_update, mean_result},
    [K_CATEGORICAL] = {"categorical_accuracy", cat_acc_update, mean_result},
    [K_SPARSE] = {"sparse_categorical_accuracy", sparse_acc_update, mean_result},
    [K_TOP_K] = {"top_k_categorical_accuracy", top_k_update, mean_result},
    [K_SPARSE_TOP_K] = {"sparse_top_k_categorical_accuracy", sparse_top_k_update, mean_result},
    [K_MSE] = {"mean_squared_error", mse_update, mean_result},
    [K_MAE] = {"mean_absolute_error", mae_update, mean_result},
    [K_RMSE] = {"root_mean_squared_error", mse_update, rmse_result},
};

/* ct_metric_id for each kind (rmse sums squared errors, as mse). */
static const ct_metric_id ops[K_COUNT] = {
    [K_BINARY] = CT_METRIC_BINARY_ACC, [K_CATEGORICAL] = CT_METRIC_CAT_ACC,
    [K_SPARSE] = CT_METRIC_SPARSE_ACC, [K_TOP_K] = CT_METRIC_TOP_K,
    [K_SPARSE_TOP_K] = CT_METRIC_SPARSE_TOP_K, [K_MSE] = CT_METRIC_MSE, [K_MAE] = CT_METRIC_MAE,
    [K_RMSE] = CT_METRIC_MSE,
};

ct_metric_id ct_metric_op_of(const ct_metric *m)
{
    return ops[m->kind - kinds];
}

void ct_cpu_metric(ct_metric_id id, int k, const float *pred, const float *y, int64_t rows,
                   int64_t cols, double *sum)
{
    static const int kind_of[CT_METRIC_COUNT] = {
        [CT_METRIC_BINARY_ACC] = K_BINARY, [CT_METRIC_CAT_ACC] = K_CATEGORICAL,
        [CT_METRIC_SPARSE_ACC] = K_SPARSE, [CT_METRIC_TOP_K] = K_TOP_K,
        [CT_METRIC_SPARSE_TOP_K] = K_SPARSE_TOP_K, [CT_METRIC_MSE] = K_MSE,
        [CT_METRIC_MAE] = K_MAE,
    };
    ct_metric m = {.kind = &kinds[kind_of[id]], .k = k};
    m.kind->update(&m, pred, y, rows, cols);
    *sum += m.sum;
}

#define ACCURACY (-1) /* resolved from the loss and the output width */
#define HOST(i) (K_COUNT + (i)) /* metric_state.c's kind i */

/* Accepted spellings. Snake-case names and aliases are shown as written (Keras names a
 * metric after its identifier); Keras class names are shown as the snake-case name. */
typedef struct metric_name {
    const char *text;
    int kind;
    bool is_class;
} metric_name;

static const metric_name names[] = {
    {"accuracy", ACCURACY, false},
    {"acc", ACCURACY, false},
    {"binary_accuracy", K_BINARY, false},
    {"categorical_accuracy", K_CATEGORICAL, false},
    {"sparse_categorical_accuracy", K_SPARSE, false},
    {"top_k_categorical_accuracy", K_TOP_K, false},
    {"sparse_top_k_categorical_accuracy", K_SPARSE_TOP_K, false},
    {"mean_squared_error", K_MSE, false},
    {"mse", K_MSE, false},
    {"mean_absolute_error", K_MAE, false},
    {"mae", K_MAE, false},
    {"root_mean_squared_error", K_RMSE, false},
    {"rmse", K_RMSE, false},
    {"precision", HOST(CT_HM_PRECISION), false},
    {"recall", HOST(CT_HM_RECALL), false},
    {"auc", HOST(CT_HM_AUC), false},
    {"f1_score", HOST(CT_HM_F1), false},
    {"fbeta_score", HOST(CT_HM_FBETA), false},
    {"mean_iou", HOST(CT_HM_MEAN_IOU), false},
    {"r2_score", HOST(CT_HM_R2), false},
    {"cosine_similarity", HOST(CT_HM_COSINE), false},
    {"BinaryAccuracy", K_BINARY, true},
    {"CategoricalAccuracy", K_CATEGORICAL, true},
    {"SparseCategoricalAccuracy", K_SPARSE, true},
    {"TopKCategoricalAccuracy", K_TOP_K, true},
    {"SparseTopKCategoricalAccuracy", K_SPARSE_TOP_K, true},
    {"MeanSquaredError", K_MSE, true},
    {"MeanAbsoluteError", K_MAE, true},
    {"RootMeanSquaredError", K_RMSE, true},
    {"Precision", HOST(CT_HM_PRECISION), true},
    {"Recall", HOST(CT_HM_RECALL), true},
    {"AUC", HOST(CT_HM_AUC), true},
    {"F1Score", HOST(CT_HM_F1), true},
    {"FBetaScore", HOST(CT_HM_FBETA), true},
    {"MeanIoU", HOST(CT_HM_MEAN_IOU), true},
    {"R2Score", HOST(CT_HM_R2), true},
    {"CosineSimilarity", HOST(CT_HM_COSINE), true},
};

#define N_NAMES (sizeof names / sizeof names[0])
#define N_SNAKE 21 /* the snake-case entries lead the table */

/* The name as written, else as layer types are matched (without regard to case or
 * underscores: "MSE", "Binary_Accuracy"), which *folded says; such a metric is shown under
 * its snake-case name. */
static const metric_name *find_name(const char *s, bool *folded)
{
    *folded = false;
    for (size_t i = 0; i < N_NAMES; i++)
        if (!strcmp(s, names[i].text))
            return &names[i];
    *folded = true;
    for (size_t i = 0; i < N_NAMES; i++)
        if (ct_name_matches(s, names[i].text))
            return &names[i];
    return NULL;
}

static int unknown_metric(const ct_node *at, const char *s, ct_error *err)
{
    const char *cands[N_SNAKE + 1];
    char known[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < N_SNAKE; i++) {
        cands[i] = names[i].text;
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                 names[i].text);
    }
    cands[N_SNAKE] = NULL;
    char hint[96] = "";
    const char *sug = ct_suggest(s, cands);
    if (sug)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", sug);
    return ct_node_err(err, at, "unknown metric '%s'%s; known metrics: %s", s, hint, known);
}

/* Keras's choice for "accuracy": by the loss first, then by the output width. */
static int resolve_accuracy(const ct_loss *loss, int64_t out_cols)
{
    const char *ln = loss && loss->kind ? loss->kind->name : "";
    if (!strcmp(ln, "sparse_categorical_crossentropy"))
        return K_SPARSE;
    if (!strcmp(ln, "categorical_crossentropy"))
        return K_CATEGORICAL;
    if (!strcmp(ln, "binary_crossentropy") || out_cols == 1)
        return K_BINARY;
    return K_CATEGORICAL;
}

/* "type" (required) and "k" from the map form. The node is const in this interface, so
 * k's default is not written back into the config. */
static int read_metric_map(const ct_node *node, const char **type, const ct_node **type_node,
                           const ct_node **k_node, ct_error *err)
{
    if (ct_cfg_require(node, "type", "metric", err) < 0)
        return -1;
    *type_node = ct_map_get(node, "type");
    if ((*type_node)->type != CT_NODE_SCALAR)
        return ct_node_err(err, *type_node, "metric type must be a name such as accuracy");
    *type = (*type_node)->scalar;
    *k_node = ct_map_get(node, "k");
    return 0;
}

/* Keras's name argument: the history column's name (val_ prefixed for validation). */
static int read_name(ct_metric *m, const ct_node *node, ct_error *err)
{
    const ct_node *v = node->type == CT_NODE_MAP ? ct_map_get(node, "name") : NULL;
    if (!v || ct_node_is_null(v))
        return 0;
    if (v->type != CT_NODE_SCALAR || !v->scalar[0])
        return ct_node_err(err, v, "a metric's name must be a non-empty text");
    if (strlen(v->scalar) >= sizeof m->name)
        return ct_node_err(err, v, "metric name '%s' is too long; at most %zu characters",
                           v->scalar, sizeof m->name - 1);
    snprintf(m->name, sizeof m->name, "%s", v->scalar);
    return 0;
}

static int read_k(ct_metric *m, const ct_node *node, const ct_node *k_node, ct_error *err)
{
    bool top_k = m->kind == &kinds[K_TOP_K] || m->kind == &kinds[K_SPARSE_TOP_K];
    static const char *const plain[] = {"type", "name", NULL},
                             *const with_k[] = {"type", "name", "k", NULL};
    char what[96];
    snprintf(what, sizeof what, "metric '%s'", m->kind->name);
    if (node->type == CT_NODE_MAP && ct_cfg_check_keys(node, top_k ? with_k : plain, what, err))
        return -1;
    m->k = top_k ? 5 : 0;
    if (!k_node)
        return 0;
    int64_t k;
    if (ct_node_int(k_node, &k, err) < 0)
        return -1;
    if (k < 1 || k > 1000000)
        return ct_node_err(err, k_node, "metric '%s': k must be a positive integer, got %lld",
                           m->kind->name, (long long)k);
    m->k = (int)k;
    return 0;
}

int ct_metric_init(ct_metric *m, const ct_node *node, const ct_loss *loss, int64_t out_cols,
                   ct_error *err)
{
    memset(m, 0, sizeof *m);
    if (!node)
        return ct_err(err, CT_ERR_CONFIG, "metric: missing name");
    const char *type = NULL;
    const ct_node *type_node = node, *k_node = NULL;
    if (node->type == CT_NODE_SCALAR)
        type = node->scalar;
    else if (node->type == CT_NODE_MAP) {
        if (read_metric_map(node, &type, &type_node, &k_node, err) < 0)
            return -1;
    } else
        return ct_node_err(err, node, "a metric is a name such as accuracy or a map such as "
                                      "{type: top_k_categorical_accuracy, k: 3}");
    /* Keras's Accuracy class counts outputs exactly equal to their targets, which is not
     * what "accuracy" means (and folding would make it that). */
    if (!strcmp(type, "Accuracy"))
        return ct_node_err(err, type_node, "unknown metric 'Accuracy': Keras's Accuracy class "
                           "counts outputs exactly equal to their targets, which ctrain does "
                           "not offer; for the share of correct classes write 'accuracy'");
    bool folded;
    const metric_name *nm = find_name(type, &folded);
    if (!nm)
        return unknown_metric(type_node, type, err);
    int kind = nm->kind == ACCURACY ? resolve_accuracy(loss, out_cols) : nm->kind;
    const ct_metric_kind *k = kind >= K_COUNT ? &ct_host_metric_kinds[kind - K_COUNT]
                                              : &kinds[kind];
    snprintf(m->name, sizeof m->name, "%s", nm->is_class || folded ? k->name : nm->text);
    if (read_name(m, node, err) < 0)
        return -1;
    if (kind < K_COUNT) {
        m->kind = k;
        return read_k(m, node, k_node, err);
    }
    m->opt.cols = out_cols;
    m->opt.sparse_labels = loss && loss->kind && loss->kind->sparse_labels;
    return ct_host_metric_setup(m, kind - K_COUNT, node, err);
}

void ct_metric_reset(ct_metric *m)
{
    m->sum = 0.0;
    m->count = 0.0;
    if (m->state)
        memset(m->state, 0, (size_t)m->nstate * sizeof *m->state);
}

void ct_metric_free(ct_metric *m)
{
    free(m->state);
    m->state = NULL;
    m->nstate = 0;
}
