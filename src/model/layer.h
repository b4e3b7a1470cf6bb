/* layer.h - the layer interface. A layer kind is a const table of functions plus
 * private state (l->state, allocated in configure and freed in free_state). Parameters
 * are declared in build and live in the model's contiguous blocks: l->params[i].value and
 * .grad point into them once the model is planned; layers never allocate them.
 *
 * A layer takes an array of inputs (most kinds exactly one, merges several) and gives one
 * output, or several (a recurrent layer's return_state: see ct_layer.noutputs); the model
 * is a graph of such layers in topological order.
 *
 * Adding a layer: one file in layers/ defining `const ct_layer_kind ct_layer_<name>` (and
 * listed in Makefile.am's libctrain sources), and one CT_LAYER(<name>) line in
 * layers/kinds.def, which feeds the registry and the tests' checks that every kind is
 * covered (tests/test_cuda.c then wants the kind in one of its models). */
#ifndef CT_LAYER_H
#define CT_LAYER_H

#include "backend.h"
#include "config.h"
#include "init.h"

#define CT_MAX_PARAMS 8
#define CT_NAME_MAX 64
#define CT_MAX_OUTPUTS 5      /* a layer's outputs: a Bidirectional LSTM's with its states */

typedef struct ct_param {
    char name[48];        /* "kernel", "bias", ..., "forward_lstm/kernel" in a wrapper */
    ct_shape shape;
    ct_init init;
    ct_regularizer reg;
    bool trainable;
    bool frozen;          /* of a layer with trainable: false: not trainable, but its layer
                           * still writes a gradient (to scratch the optimizer never reads) */
    int64_t offset;       /* floats from the start of the model's block */
    float *value, *grad;  /* set by the planner; grad is NULL for the other non-trainable
                           * params (a batch normalization's moving statistics) */
} ct_param;

/* What the current pass is. */
typedef struct ct_pass {
    bool training;        /* dropout active, batch statistics used */
    uint64_t seed;        /* the experiment's seed */
    int64_t step;         /* global optimizer step, for per-step random streams */
    /* Where layers with an activity regularizer add their loss (one double of backend
     * memory, the driver's penalty sum, which holds rows times each batch's penalty);
     * NULL: not counted (predict, tests). */
    double *penalty;
    /* fit's adapt pass over the training data (an inference pass): this layer gathers the
     * statistics of its input (see ct_layer_kind.adapt_begin); NULL otherwise. */
    const struct ct_layer *adapting;
} ct_pass;

typedef struct ct_layer ct_layer;

/* What a kind does with masks (Keras's supports_masking and compute_mask). A mask is set
 * by embedding (mask_zero) and masking, and travels on ct_tensor.mask from layer to layer;
 * layers that honour it read x[k]->mask (NULL: none) in forward and backward. */
typedef enum ct_mask_rule {
    /* The default: the layer does not use masks. A mask on its input ends there, with a
     * warning when the model is built (as Keras warns). */
    CT_MASK_ENDS = 0,
    /* A per-step layer: its output carries its input's mask. A merge (several inputs)
     * carries their union when every input has one, and none when one has none (Keras 3's
     * merges OR their masks, and drop them where an input has none). */
    CT_MASK_PASSES,
    /* The kind's mask_out decides. */
    CT_MASK_BY_KIND,
} ct_mask_rule;

/* What mask_out returns, and ct_layer.mask_out: besides k >= 0 (input k's mask). */
enum {
    CT_MASK_NONE = -1,    /* the output carries no mask */
    CT_MASK_WRITES = -2,  /* forward writes y->mask (a planned buffer of its own) */
    CT_MASK_UNION = -3,   /* 1 where any input's mask is 1, which the model computes */
};

typedef struct ct_layer_kind {
    const char *name;        /* config name, snake_case: "dense" */
    const char *class_name;  /* Keras class: "Dense" */
    /* Reads the layer's own keys from cfg (a map; "type" and "name" are the model's) and
     * checks unknown keys with ct_layer_check_keys. May allocate l->state. */
    int (*configure)(ct_layer *l, ct_node *cfg, ct_error *err);
    /* Given l->in_shapes (l->in_shape for one input): sets l->out_shape and declares
     * parameters with ct_layer_add_param.
     * A shape it cannot take is an error naming the layer and the shape. */
    int (*build)(ct_layer *l, ct_error *err);
    /* Optional: floats of scratch (l->scratch) needed for a batch of max_batch rows. */
    int64_t (*scratch_floats)(const ct_layer *l, int64_t max_batch);
    /* Inputs a layer takes: 0 and 0 mean exactly one. Merge layers take several (a
     * negative max_inputs: no upper bound). */
    int min_inputs, max_inputs;
    /* y = f(x[0], ..., x[nx-1]). Every x[i]->rows == y->rows. */
    void (*forward)(ct_layer *l, const ct_pass *pass, const ct_tensor *const *x, int nx,
                    ct_tensor *y);
    /* Given dy = dL/dy (the layer may overwrite it), writes (not accumulates) the parameter
     * gradients and, for each i whose dx[i] is not NULL, dx[i] = dL/dx[i]. x and y are the
     * forward's. Where one tensor feeds several layers, the model adds their gradients. */
    void (*backward)(ct_layer *l, const ct_pass *pass, const ct_tensor *const *x, int nx,
                     const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dx);
    /* Optional: frees l->state. */
    void (*free_state)(ct_layer *l);
    /* Output aliases the input buffer (flatten, reshape): forward/backward are not called,
     * the planner points y at x and dx at dy (see ct_layer_is_view). */
    bool is_view;
    /* Optional: the output activation, if this layer ends in one (dense's activation, an
     * activation layer). Lets the model fuse softmax/sigmoid with crossentropy. */
    ct_activation (*output_activation)(const ct_layer *l);
    /* An element-wise activation layer (ReLU, Activation, ...): nothing but
     * output_activation applied to its one input. */
    bool is_activation;
    /* The kind can end in a relu of its own when l->fused_relu is set (forward applies it
     * to y, backward takes dy through it first, given y). */
    bool takes_relu;
    /* Optional: for a kind whose input holds token ids (embeddings), how many ids it takes.
     * A model input read by such a layer is a token input: its data must be integers in
     * [0, that number) and are never scaled (see the experiment's data checks). */
    int64_t (*token_ids)(const ct_layer *l);
    /* Masks: see ct_mask_rule. For CT_MASK_BY_KIND, mask_out says what the output carries
     * given which inputs carry a mask (in_masked[k]): CT_MASK_NONE, CT_MASK_WRITES or k.
     * Called once the layer is built. */
    ct_mask_rule masks;
    int (*mask_out)(const ct_layer *l, const bool *in_masked);
    /* Keras 3 hands a layer its input's mask only when it is called on one tensor: a kind
     * that also takes other inputs (a recurrent layer's initial states) computes as if
     * unmasked when given them, while its output mask follows mask_out; the model warns. */
    bool mask_one_input;
    /* Optional: a kind with state computed from the training data (Keras's adapt, as in
     * Normalization). At the start of a fresh fit, adapt_begin says whether the layer
     * wants it (and resets its sums); fit then runs the training data through the model
     * in inference mode with pass->adapting set to the layer, whose forward gathers its
     * input's statistics, and adapt_end stores the result in its weights. */
    bool (*adapt_begin)(ct_layer *l);
    int (*adapt_end)(ct_layer *l, ct_error *err);
} ct_layer_kind;

struct ct_layer {
    const ct_layer_kind *kind;
    char name[CT_NAME_MAX];   /* unique in the model: "dense", "dense_1", ... */
    int index;                /* position in the model's topological order */
    ct_node *cfg;             /* the layer's config map (positions for errors) */
    const ct_backend *be;
    int ninputs;
    const ct_shape *in_shapes; /* ninputs shapes (the model's memory), set before build */
    ct_shape in_shape;        /* in_shapes[0]: what single-input kinds read */
    ct_shape out_shape;       /* output 0's */
    /* Outputs: 1, set before build; a kind with more (return_state) sets noutputs and
     * more_shapes[k - 1], the shape of output k >= 1, in build. Forward writes output k
     * into more_y[k - 1]; backward reads its gradient from more_dy[k - 1], whose data is
     * NULL when no gradient reaches it (read as zeros). The model owns those tensors and
     * points more_y and more_dy at them when it plans. Later layers name output k of layer
     * NAME as "NAME:k" (output 0: "NAME"). */
    int noutputs;
    ct_shape more_shapes[CT_MAX_OUTPUTS - 1];
    ct_tensor *more_y, *more_dy;
    int nparams;
    ct_param params[CT_MAX_PARAMS];
    float *scratch;           /* scratch_floats(max_batch) floats, owned by the model */
    /* Set by the model when a softmax/sigmoid output is fused with crossentropy: backward
     * then receives dy already taken with respect to the pre-activation values. */
    bool act_fused;
    /* A second application of another layer (Keras calls a layer twice): its parameters'
     * values are that layer's, and its gradients are added into that layer's. NULL for a
     * layer of its own. */
    const ct_layer *shared;
    /* trainable: false in the config (Keras's layer.trainable = False): the parameters are
     * not trained, and a batch normalization runs in inference mode, as in Keras. */
    bool frozen;
    /* The convolution algorithm the experiment asks for (backend.conv_algorithm), set
     * before build; and how the layer computes, named by build for --profile (a static
     * string such as "direct", or NULL). */
    ct_conv_algo conv_algo;
    const char *algo;
    /* Set by the model (ct_graph_build) where a ReLU layer is this layer's only consumer:
     * this layer applies the relu itself (its kind takes_relu), and that ReLU layer is
     * fused_away, a view of this layer's output that is never run. The result is the same;
     * the relu's pass over memory is saved. */
    bool fused_relu, fused_away;
    /* Set by the model once the graph is built: the mask the output carries (CT_MASK_NONE,
     * CT_MASK_WRITES, CT_MASK_UNION, or k: input k's). */
    int mask_out;
    void *state;
};

/* The layer's output is its input's buffer (a view kind, or a fused-away relu): the
 * planner points y at x and dx at dy, and forward/backward are not called. */
static inline bool ct_layer_is_view(const ct_layer *l)
{
    return l->kind->is_view || l->fused_away;
}

/* Checks cfg's keys against the kind's own (NULL-terminated) plus "type", "name" and
 * "inputs" (the model's). */
int ct_layer_check_keys(const ct_layer *l, const ct_node *cfg, const char *const *keys,
                        ct_error *err);
/* Declares a parameter during build. Returns its index or -1 (too many). */
int ct_layer_add_param(ct_layer *l, const char *name, ct_shape shape, ct_init init,
                       ct_regularizer reg, bool trainable, ct_error *err);
/* Formats an error "layer 'dense_1' (Dense): <msg>" with the layer config's position. */
int ct_layer_err(ct_error *err, const ct_layer *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reads an activation name from cfg[key] (def NULL: required); unknown names are an error
 * at the value listing the known ones with a suggestion. */
int ct_layer_parse_act(const ct_layer *l, ct_node *cfg, const char *key, const char *def,
                       ct_act *out, ct_error *err);

/* ---- The bias + activation tail of dense and convolution layers ------------------- *
 * An activation whose derivative follows from its output (ct_act_from_output) is applied
 * in place: the linear part writes y, the tail turns it into act(y + bias) in one pass and
 * backward reads only y. Any other activation keeps the pre-activation values in the
 * layer's scratch (the first out_floats of it). */

/* Scratch floats the tail needs for out_floats outputs: 0 or out_floats. */
int64_t ct_tail_scratch(ct_act act, int64_t out_floats);
/* Where the linear part writes its n x cols result: y, or the start of l->scratch. */
float *ct_tail_target(const ct_layer *l, ct_act act, float *y);
/* z: what ct_tail_target returned, holding the linear part; writes y = act(z + bias)
 * (bias NULL: none). */
void ct_tail_forward(const ct_layer *l, ct_act act, const float *bias, float *z, float *y,
                     int64_t n, int64_t cols);
/* dy = dy * act'(.) in place (skipped when the loss took the activation's derivative,
 * l->act_fused), then db = column sums (db NULL: skipped). z, y: the forward's. */
void ct_tail_backward(const ct_layer *l, ct_act act, const float *z, const float *y, float *dy,
                      float *db, int64_t n, int64_t cols);
/* The activation a fused op (conv_forward / conv_backward) can take itself: act when it
 * follows from the output and is not fused into the loss, else linear. */
ct_act ct_tail_inner_act(const ct_layer *l, ct_act act, bool backward);

/* Recurrent layers (layers/recurrent.c): zero_output_for_mask, which Bidirectional sets on
 * the copies it wraps when they return sequences (as Keras). */
void ct_recurrent_zero_masked_output(ct_layer *l, bool on);

/* Wrappers (layers/wrappers.c): the layer Bidirectional or TimeDistributed l runs as its
 * copy k (Bidirectional: 0 the forward copy, 1 the backward one, whose go_backwards is its
 * config's flipped; TimeDistributed: 0), and in *wname (NULL: not wanted) the name that
 * copy's weights carry inside l's ("forward_lstm": l's parameter "forward_lstm/kernel").
 * The copy's parameters are attached only during a pass: read them from l. NULL when l
 * is no wrapper or has no copy k. The layer stays l's. */
const ct_layer *ct_wrapper_inner(const ct_layer *l, int k, const char **wname);

/* Registry: kind by config name or Keras class name; NULL if unknown. */
const ct_layer_kind *ct_layer_kind_find(const char *name);
/* Comma-separated config names of every kind, for error messages. */
const char *ct_layer_kind_names(void);
/* NULL-terminated list of config names, for suggestions. */
const char *const *ct_layer_kind_list(void);

/* ---- Config helpers shared by layer kinds ---------------------------------------- */
#include <stdarg.h>

/* Writes "layer 'NAME' (Class)" into buf, the prefix of every layer message. */
void ct_layer_describe(const ct_layer *l, char *buf, size_t n);
/* ct_layer_err with the position of `at` (no position when NULL), for errors at one
 * value of the config rather than at the layer's map. */
int ct_layer_verr_at(ct_error *err, const ct_layer *l, const ct_node *at, const char *fmt,
                     va_list ap) __attribute__((format(printf, 4, 0)));
/* ct_layer_err at the position of `at` (the layer's map when NULL). */
int ct_layer_err_at(ct_error *err, const ct_layer *l, const ct_node *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Reads n as an integer in [min, INT32_MAX]; out of range is an error at n
 * "<layer>: <key> values must be between <min> and <INT32_MAX>, got <v>". */
int ct_layer_int_entry(const ct_layer *l, const ct_node *n, const char *key, int64_t min,
                       int64_t *out, ct_error *err);
/* Sets cfg[key] to an integer (n == 1) or a list of n integers, so the emitted config
 * shows the value used. */
int ct_layer_put_ints(ct_node *cfg, const char *key, const int64_t *v, int n, ct_error *err);
/* cfg[key]: an integer (every one of n axes) or a list of n integers, each read with
 * ct_layer_int_entry. Absent or null: fallback (n values), written back. */
int ct_layer_read_ints(const ct_layer *l, ct_node *cfg, const char *key, int n, int64_t min,
                       const int64_t *fallback, int64_t *out, ct_error *err);
/* cfg["data_format"]: only "channels_last" (the default) is supported. */
int ct_layer_data_format(const ct_layer *l, ct_node *cfg, ct_error *err);

#endif
