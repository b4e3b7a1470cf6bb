/* metric.h - streaming metrics: the value reported is the mean over all samples seen
 * since the last reset, as Keras shows it. Plain values: nothing to free. */
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

struct ct_metric {
    const ct_metric_kind *kind;
    char name[48];      /* the name shown and used in history: "accuracy", "mae" */
    int k;              /* top_k */
    int output;         /* the model output it scores */
    double sum, count;
};

/* Resolves a metric name given the loss (so "accuracy" becomes sparse_categorical /
 * categorical / binary accuracy as in Keras) and the model's output width. node is for
 * error positions. */
int ct_metric_init(ct_metric *m, const ct_node *node, const ct_loss *loss, int64_t out_cols,
                   ct_error *err);
void ct_metric_reset(ct_metric *m);
/* The backend's id for m's per-batch sums (ct_backend's metric op). */
ct_metric_id ct_metric_op_of(const ct_metric *m);

#endif
