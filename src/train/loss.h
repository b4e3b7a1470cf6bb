/* loss.h - losses as Keras computes them: the per-sample loss is the mean over the last
 * axis, and the batch loss is the mean over samples (sum_over_batch_size). Plain values:
 * nothing to free. */
#ifndef CT_LOSS_H
#define CT_LOSS_H

#include "backend.h"
#include "config.h"

typedef struct ct_loss ct_loss;

typedef struct ct_loss_kind {
    const char *name;          /* "sparse_categorical_crossentropy" */
    const char *alias;         /* "mse" for mean_squared_error, or NULL */
    const char *class_name;    /* "SparseCategoricalCrossentropy" */
    bool sparse_labels;        /* y holds one class index per sample */
    bool has_from_logits;
    /* Returns the sum over rows of the per-sample losses. When dpred is not NULL, also
     * writes dpred = scale * d(sum)/d(pred) (the driver passes scale = 1 / rows).
     * pred: rows x cols. y: rows x cols, or rows class indices when sparse_labels. */
    double (*compute)(const ct_loss *loss, const float *pred, const float *y, float *dpred,
                      int64_t rows, int64_t cols, float scale);
    unsigned keys;             /* the map form's keys besides type and from_logits (CT_LOSS_KEY_*) */
} ct_loss_kind;

enum {
    CT_LOSS_KEY_DELTA = 1,     /* huber */
    CT_LOSS_KEY_SMOOTHING = 2, /* label_smoothing */
    CT_LOSS_KEY_FOCAL = 4,     /* alpha, gamma */
    CT_LOSS_KEY_BALANCING = 8, /* apply_class_balancing */
    CT_LOSS_KEY_AXIS = 16,     /* axis (-1 only) */
};

struct ct_loss {
    const ct_loss_kind *kind;
    bool from_logits;
    double delta;      /* huber */
    /* Set by the model: pred holds softmax (categorical) or sigmoid (binary) probabilities
     * and dpred must be taken with respect to the logits before that activation. */
    bool fused;
    double label_smoothing; /* Keras: y (1 - ls) + ls / classes; binary: + 0.5 ls */
    double alpha, gamma;    /* focal crossentropies */
    bool apply_class_balancing;
};

/* Reads compile.loss: a name or {type: name, from_logits: .., delta: .., ...} with the
 * loss's Keras constructor arguments. Errors point at the node and list the known losses. */
int ct_loss_parse(ct_node *compile, const char *key, ct_loss *out, ct_error *err);
const ct_loss_kind *ct_loss_kind_find(const char *name);
/* The backend's description of loss (ct_backend's loss op). */
ct_loss_op ct_loss_op_of(const ct_loss *loss);
/* Whether a loss can be fused with output activation a (and will be if the model says so). */
bool ct_loss_can_fuse(const ct_loss *loss, ct_activation a);

#endif
