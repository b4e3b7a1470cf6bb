/* graph.h - the model's graph as its config describes it (graph.c) and the buffers planned
 * for it (plan.c); internal to the model. */
#ifndef CT_GRAPH_H
#define CT_GRAPH_H

#include "model.h"

/* Floats past which a sample, a layer's parameters or the parameter block are refused
 * before anything is sized. */
#define CT_MAX_FLOATS (INT64_C(1) << 34)

/* Reads model.inputs / input_shape, model.layers and model.outputs into m (layers in
 * topological order, configured and built, m->sources, m->live, m->functional,
 * m->warnings). Errors point into cfg. */
int ct_graph_build(ct_model *m, ct_node *cfg, ct_error *err);
/* Decides every layer's mask_out (masks.c), in topological order; a mask that reaches a
 * layer which does not use it is warned about. */
int ct_graph_masks(ct_model *m, ct_error *err);
/* "1,234,567" into buf (summary.c). */
void ct_group_digits(int64_t v, char *buf, size_t n);
/* A layer's output shape as the summary shows it: "(None, 10)", or a list of them for a
 * layer with several outputs (summary.c). */
void ct_layer_output_shapes(const ct_layer *l, char *buf, size_t n);
/* Checks one built layer's output and parameter sizes (model.c). */
int ct_model_check_layer_sizes(const ct_layer *l, ct_error *err);

/* The planned step (plan.c): per layer, its inputs and their gradient targets, and the
 * sums that join gradients where a tensor feeds several layers. */
typedef struct ct_grad_sum {
    float *from, *into;        /* into += from: rows * per_row floats */
    int64_t per_row;
    int after;                 /* runs after layer `after`'s backward (nlayers: before all) */
} ct_grad_sum;

struct ct_plan {
    const ct_tensor **x;       /* x + xat[i]: layer i's inputs */
    ct_tensor **dx;            /* dx + xat[i]: where layer i writes their gradients */
    int *xat;                  /* nlayers + 1 offsets */
    ct_tensor *tmp;            /* temporary gradients, ntmp */
    int ntmp;
    ct_grad_sum *sums;         /* ntmp sums, in the order they run */
    ct_tensor loss_grad[CT_MAX_IO]; /* where output k's loss writes (data NULL: nowhere) */
    /* per layer: its backward runs (it has trainable parameters, or an input whose
     * gradient some trainable layer needs); a frozen base's layers have none to run */
    bool *backprop;
};

/* training false: forward only (no gradient buffers; activations shared by lifetime). */
int ct_plan_make(ct_model *m, int64_t max_batch, bool training, ct_error *err);
void ct_plan_free(ct_model *m);

#endif
