/* metric_state.h - the metrics whose epoch state is more than a sum (metric.c's host
 * metrics): precision, recall, auc, f1_score, fbeta_score, mean_iou, r2_score and
 * cosine_similarity, as Keras 3 defines them. Internal to src/train. */
#ifndef CT_METRIC_STATE_H
#define CT_METRIC_STATE_H

#include "metric.h"

enum {
    CT_HM_PRECISION, CT_HM_RECALL, CT_HM_AUC, CT_HM_F1, CT_HM_FBETA, CT_HM_MEAN_IOU, CT_HM_R2,
    CT_HM_COSINE, CT_HM_COUNT
};

extern const ct_metric_kind ct_host_metric_kinds[CT_HM_COUNT];

/* Reads kind `which`'s Keras arguments from node (a map, or a plain name: the defaults),
 * checks its keys (type and name besides) and allocates m->state. m->opt.cols and
 * m->opt.sparse_labels are set by the caller. */
int ct_host_metric_setup(ct_metric *m, int which, const ct_node *node, ct_error *err);

/* A confusion matrix counted as mean_iou counts it: m->state (num_classes^2 doubles,
 * [true][predicted], allocated here, freed by ct_metric_free) for num_classes classes,
 * labels sparse (class indices) or one-hot, predictions scored by their largest entry. */
int ct_confusion_setup(ct_metric *m, int num_classes, bool sparse_labels, ct_error *err);
/* One class's precision, recall and F1 from its true and false positives and false
 * negatives, as precision, recall and f1_score compute them. */
void ct_class_scores(double tp, double fp, double fn, double *precision, double *recall,
                     double *f1);

#endif
