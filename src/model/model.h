/* model.h - a model: a graph of layers in topological order, its parameter blocks and
 * its planned buffers.
 *
 * ct_model_build reads the `model` map: named inputs (`inputs: {image: {shape: [...]}}`,
 * or `input_shape: [...]` for one input), layers that name their inputs (`inputs: [a, b]`;
 * without it a layer takes the one listed before it), shared applications of a layer
 * (`{type: shared, layer: NAME, inputs: ...}`) and `outputs` (default: the last layer).
 * It sorts the layers topologically, infers and checks every shape, and lays every
 * parameter out in one block (trainable ones first, in layer order) with a gradient block
 * beside it. A model whose graph is a chain from its one input, written with
 * `input_shape`, is Sequential (as Keras's); any other is Functional.
 *
 * ct_model_plan allocates the activation, gradient and scratch buffers for batches of up
 * to max_batch rows, once: the training loop allocates nothing. Every layer's output is
 * kept for the backward pass; gradient buffers are shared between tensors whose gradients
 * are never alive at the same time (a chain needs two). Where one tensor feeds several
 * layers (or is an output and feeds a layer), backward adds their gradients.
 *
 * Ownership: the model owns its layers, blocks and buffers; ct_model_free releases all. */
#ifndef CT_MODEL_H
#define CT_MODEL_H

#include "layer.h"

#ifndef CT_MAX_IO
#define CT_MAX_IO 16          /* model inputs and outputs, each */
#endif

/* A tensor of the graph, where a layer's input comes from: model input -1 - k, or a layer
 * output t >= 0. Output 0 of layer i is tensor i; the other outputs of layers with several
 * (ct_layer.noutputs) are the tensors from nlayers up (ct_tensor_layer, ct_tensor_index). */
typedef int ct_source_id;

struct ct_plan;

typedef struct ct_model {
    char name[CT_NAME_MAX];
    const ct_backend *be;
    bool functional;           /* Keras's Functional model; false: Sequential */
    int ninputs;
    char input_names[CT_MAX_IO][CT_NAME_MAX];
    ct_shape input_shapes[CT_MAX_IO];
    const ct_node *input_nodes[CT_MAX_IO]; /* where each input is declared (may be NULL) */
    ct_shape input_shape;      /* input_shapes[0] */
    int nlayers;
    ct_layer *layers;          /* nlayers, in topological order */
    ct_source_id **sources;    /* sources[i]: layers[i].ninputs ids */
    bool *live;                /* live[i]: layer i contributes to an output */
    int ntensors;              /* layer outputs: nlayers, and the extra outputs after them */
    int *more_at;              /* per layer: the tensor id of its output 1 (or -1) */
    int *tensor_layer, *tensor_index; /* per tensor: its layer, which of its outputs */
    int noutputs;
    ct_source_id outputs[CT_MAX_IO]; /* tensors (a layer's index for its output 0) */
    char output_names[CT_MAX_IO][CT_NAME_MAX + 8]; /* "NAME", or "NAME:k" for output k */
    int nparams;               /* parameter tensors of the layers that own them */
    ct_param **params;         /* nparams pointers into the layers, block order */
    int64_t size, trainable;   /* floats in the block; the first `trainable` are trainable */
    int64_t shadow;            /* gradient floats of shared applications, after trainable */
    int64_t frozen_grads;      /* gradient floats of frozen parameters, after shadow */
    float *values, *grads;     /* size / trainable + shadow floats, backend memory */
    /* Planned buffers: inputs[k] is input k's batch (set by the caller), out[t] tensor t
     * (ntensors of them), dout[t] its gradient (NULL data when none is needed). */
    int64_t max_batch;
    bool planned_training;     /* the current plan has gradient buffers */
    ct_tensor inputs[CT_MAX_IO];
    ct_tensor *out, *dout;
    struct ct_plan *plan;      /* per-layer input lists and gradient sums (plan.c) */
    float *buffers;            /* one allocation behind out/dout/scratch */
    /* When not NULL (2 * nlayers seconds, owned by the caller): forward and backward time
     * of each layer is added here. */
    double *profile;
    /* Data-parallel training (NULL otherwise): called after each layer's backward with its
     * index, and with -1 at the end of the pass once shared applications' gradients have
     * joined their owners'; the regularizers' gradients are then left out of the pass, for
     * ct_model_regularizer_grads to add after the gradients are summed over the ranks. */
    void (*grads_done)(void *ctx, int layer);
    void *grads_done_ctx;
    /* Set before ct_model_plan: every gradient gets a buffer of its own, so all stay
     * readable after the backward pass (tests compare them); else they share by lifetime. */
    bool keep_gradients;
    /* The convolution algorithm asked for (backend.conv_algorithm), read by every layer
     * when it is built; CT_CONV_AUTO unless ct_model_build_within was given another. */
    ct_conv_algo conv_algo;
    /* Parameters not filled yet (ct_model_defer_init): the first plan fills them from
     * pending_seed, unless weights were loaded into them first. */
    bool params_pending;
    uint64_t pending_seed;
    /* Warnings found while building (unused layers and inputs), one per line; owned. */
    char *warnings;
    /* Tensors the current inference plan keeps readable after the forward pass besides
     * the outputs (ct_model_plan_inference_keeping), nkept of them; and the ReLU layers
     * unfolded from the batch normalization before them for it (a kept layer's output
     * must be its own, not already through the relu), nunfolded. Both owned. */
    ct_source_id *kept;
    int nkept;
    int *unfolded;
    int nunfolded;
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
/* The same with the given budget instead, and conv_algo asked of every convolution. */
ct_model *ct_model_build_within(ct_node *model_cfg, const ct_backend *be,
                                const ct_model_budget *budget, ct_conv_algo conv_algo,
                                ct_error *err);
/* The same check on a built model, once the batch size and optimizer are known. */
int ct_model_check_budget(const ct_model *m, const ct_model_budget *budget, ct_error *err);
void ct_model_free(ct_model *m);
/* Fills every parameter from its initializer; stream keys derive from seed, layer and
 * parameter index only. */
void ct_model_init_params(ct_model *m, uint64_t seed);
/* Leaves the parameters unfilled until they are needed: the first ct_model_plan or
 * ct_model_plan_inference fills them as ct_model_init_params(m, seed) would, unless
 * weights were loaded first (ct_weights_load). For commands that only look at the model
 * (summary, check), which then never pay for initialisation. */
void ct_model_defer_init(ct_model *m, uint64_t seed);
int ct_model_plan(ct_model *m, int64_t max_batch, ct_error *err);
/* A plan for ct_model_forward alone (evaluate, predict): no gradient buffers, and outputs
 * that are no longer read share their memory, so a chain keeps two. Calling
 * ct_model_plan later plans for training again. */
int ct_model_plan_inference(ct_model *m, int64_t max_batch, ct_error *err);
/* The same, and tensors keep[0..nkeep-1] (layer outputs, t >= 0; model inputs and outputs
 * are readable anyway) keep their values after the forward pass, as outputs do, so a
 * caller can read intermediate results (Keras's sub-model on layer outputs). A kept layer
 * whose ReLU was folded into it runs without it, the ReLU layer on its own, for as long as
 * this plan holds; the next plan of another kind folds it again. keep is copied. */
int ct_model_plan_inference_keeping(ct_model *m, int64_t max_batch, int nkeep,
                                    const ct_source_id *keep, ct_error *err);
/* Whether tensor t stays readable after a forward pass of any inference plan: a model
 * input (t < 0) or output. */
bool ct_model_keeps_anyway(const ct_model *m, ct_source_id t);
/* Forward over rows of m->inputs[k].data (already filled); returns the first output
 * (ct_model_output for the others). */
const ct_tensor *ct_model_forward(ct_model *m, const ct_pass *pass, int64_t rows);
/* Output k's tensor and the buffer its loss writes the gradient into (after a forward). */
const ct_tensor *ct_model_output(const ct_model *m, int k);
float *ct_model_output_grad(ct_model *m, int k);
/* Backward from the outputs' gradients (written by the losses) into m->grads; adds the
 * regularizers' gradients, and weight times their penalty to *penalty (one double of
 * backend memory). */
void ct_model_backward(ct_model *m, const ct_pass *pass, double weight, double *penalty);
/* Adds the regularizers' gradients alone (what a backward pass with grads_done set left
 * out). CPU backend. */
void ct_model_regularizer_grads(ct_model *m);
/* *penalty += weight times the regularizers' penalty, without gradients (evaluation). */
void ct_model_penalty(const ct_model *m, double weight, double *penalty);
/* Whether any parameter has a regularizer. */
bool ct_model_regularized(const ct_model *m);
/* The layer that computes tensor t >= 0, and which of its outputs t is. */
static inline int ct_tensor_layer(const ct_model *m, ct_source_id t)
{
    return m->tensor_layer[t];
}
static inline int ct_tensor_index(const ct_model *m, ct_source_id t)
{
    return m->tensor_index[t];
}
/* The shape of tensor t (a model input's for t < 0). */
const ct_shape *ct_tensor_shape(const ct_model *m, ct_source_id t);
/* Shape of the first output / of output k. */
const ct_shape *ct_model_output_shape(const ct_model *m);
const ct_shape *ct_model_output_shape_at(const ct_model *m, int k);
/* The layer that owns l's parameters (l itself unless it is a shared application). */
const ct_layer *ct_layer_owner(const ct_layer *l);
/* Adds a line "FILE:LINE:COL: <message>" (at may be NULL) to m->warnings; -1 when out of
 * memory. */
int ct_model_warn(ct_model *m, const ct_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Keras summary table (with "Connected to" for a Functional model). */
void ct_model_summary(const ct_model *m, FILE *out);

#endif
