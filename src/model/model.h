/* model.h - a Sequential stack of layers, its parameter blocks and activation buffers.
 *
 * ct_model_build reads model.layers, infers and checks every shape, and lays every
 * parameter out in one block (trainable ones first, in layer order) with a gradient block
 * beside it. ct_model_plan allocates activation, gradient and scratch buffers for batches
 * of up to max_batch rows, once: the training loop allocates nothing.
 *
 * Ownership: the model owns its layers, blocks and buffers; ct_model_free releases all. */
#ifndef CT_MODEL_H
#define CT_MODEL_H

#include "layer.h"

typedef struct ct_model {
    char name[CT_NAME_MAX];
    const ct_backend *be;
    ct_shape input_shape;
    int nlayers;
    ct_layer *layers;          /* nlayers, in order */
    int nparams;               /* parameter tensors over all layers */
    ct_param **params;         /* nparams pointers into the layers, block order */
    int64_t size, trainable;   /* floats in the block; the first `trainable` are trainable */
    float *values, *grads;     /* size / trainable floats, backend memory */
    /* Planned buffers: out[i] is layer i's output, dout[i] its gradient (out[-1] is the
     * input batch, set by the caller). */
    int64_t max_batch;
    ct_tensor input;
    ct_tensor *out, *dout;
    float *buffers;            /* one allocation behind out/dout/scratch */
    /* When not NULL (2 * nlayers seconds, owned by the caller): forward and backward time
     * of each layer is added here. */
    double *profile;
} ct_model;

/* What a model may use. The estimate counts parameters, their gradients, opt_slots floats
 * of optimizer state per trainable parameter, `extra` floats held beside the model, and the
 * activations, their gradients and the layers' scratch for batches of `batch` rows. */
typedef struct ct_model_budget {
    double limit;      /* bytes */
    bool physical;     /* limit is the machine's physical memory (worded so in errors) */
    int64_t batch;     /* rows per batch, at least 1 */
    int opt_slots;
    int64_t extra;
} ct_model_budget;

/* The machine's physical memory in bytes (sysconf); 0 when unknown. */
double ct_physical_memory(void);

/* Builds from the experiment's `model` map. Shape errors name both layers and shapes. A
 * model that needs more than the physical memory (batches of one row, no optimizer state)
 * is refused, naming its largest layer, before anything big is allocated. */
ct_model *ct_model_build(ct_node *model_cfg, const ct_backend *be, ct_error *err);
/* The same with the given budget instead. */
ct_model *ct_model_build_within(ct_node *model_cfg, const ct_backend *be,
                                const ct_model_budget *budget, ct_error *err);
/* The same check on a built model, once the batch size and optimizer are known. */
int ct_model_check_budget(const ct_model *m, const ct_model_budget *budget, ct_error *err);
void ct_model_free(ct_model *m);
/* Fills every parameter from its initializer; stream keys derive from seed, layer and
 * parameter index only. */
void ct_model_init_params(ct_model *m, uint64_t seed);
int ct_model_plan(ct_model *m, int64_t max_batch, ct_error *err);
/* Forward over rows of m->input.data (already filled); returns the output tensor. */
const ct_tensor *ct_model_forward(ct_model *m, const ct_pass *pass, int64_t rows);
/* Backward from m->dout[nlayers-1] (filled by the loss) into m->grads; adds the
 * regularizers' gradients, and weight times their penalty to *penalty (one double of
 * backend memory). */
void ct_model_backward(ct_model *m, const ct_pass *pass, double weight, double *penalty);
/* *penalty += weight times the regularizers' penalty, without gradients (evaluation). */
void ct_model_penalty(const ct_model *m, double weight, double *penalty);
/* Whether any parameter has a regularizer. */
bool ct_model_regularized(const ct_model *m);
const ct_shape *ct_model_output_shape(const ct_model *m);
/* Keras summary table. */
void ct_model_summary(const ct_model *m, FILE *out);

#endif
