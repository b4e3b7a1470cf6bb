/* metric.h - streaming metrics: the value reported is the mean over all samples seen
 * since the last reset, as Keras shows it, or for the confusion-matrix and score metrics
 * (precision, recall, auc, f1_score, fbeta_score, mean_iou, r2_score, cosine_similarity)
 * Keras's result over the whole epoch's state. Those keep their state on the host
 * (ct_metric.host): ct_metric_free releases it. */
#ifndef CT_METRIC_H
#define CT_METRIC_H

#include "loss.h"

typedef struct ct_metric ct_metric;

typedef struct ct_metric_kind {
    const char *name;   /* "sparse_categorical_accuracy" */
    /* Adds the batch's rows to the running sums. pred: rows x cols; y: rows x cols or
     * rows indices (sparse). */
    void (*update)(ct_metric *m, const float *pred, const float *y, int64_t rows, int64_t cols);
    double (*result)(const ct_metric *m);
} ct_metric_kind;

/* The Keras constructor arguments of the host metrics (metric_state.c reads them). */
typedef struct ct_metric_opts {
    double threshold;      /* precision, recall; f1/fbeta when has_threshold */
    bool has_threshold;
    int class_id, top_k;   /* precision, recall: -1 / 0 when not given */
    int num_thresholds;    /* auc */
    bool pr, from_logits;  /* auc: curve PR (else ROC), sigmoid first */
    int summation;         /* auc: 0 interpolation, 1 minoring, 2 majoring */
    int average;           /* f1/fbeta: 0 none, 1 micro, 2 macro, 3 weighted */
    double beta;           /* fbeta */
    int num_classes, ignore_class;       /* mean_iou (ignore_class -1: none) */
    bool sparse_y_true, sparse_y_pred;   /* mean_iou */
    int aggregation;       /* r2: 0 none, 1 uniform_average, 2 variance_weighted_average */
    int num_regressors;    /* r2 */
    bool sparse_labels;    /* y holds one class index per row (the loss's labels) */
    int64_t cols;          /* the output's width */
} ct_metric_opts;

struct ct_metric {
    const ct_metric_kind *kind;
    char name[48];      /* the name shown and used in history: "accuracy", "mae" */
    int k;              /* top_k */
    int output;         /* the model output it scores */
    double sum, count;
    /* Host metrics: the backend has no op for them; the trainer reads the batch back and
     * calls kind->update with host arrays. state: nstate doubles, owned. */
    bool host;
    ct_metric_opts opt;
    double *state;
    int64_t nstate;
};

/* Resolves a metric name given the loss (so "accuracy" becomes sparse_categorical /
 * categorical / binary accuracy as in Keras) and the model's output width. node is for
 * error positions. */
int ct_metric_init(ct_metric *m, const ct_node *node, const ct_loss *loss, int64_t out_cols,
                   ct_error *err);
void ct_metric_reset(ct_metric *m);
/* Releases a host metric's state (nothing for the others); m may be reset and reused
 * only after another ct_metric_init. */
void ct_metric_free(ct_metric *m);
/* The backend's id for m's per-batch sums (ct_backend's metric op); not for host
 * metrics. */
ct_metric_id ct_metric_op_of(const ct_metric *m);

#endif
