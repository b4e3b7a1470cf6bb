/* inspect.h - looking inside a model: the outputs of named layers for some data, as Keras's
 * sub-model keras.Model(inputs, [layer.output, ...]) gives them.
 *
 * A name is a layer's ("conv2d": its output 0), "NAME:k" for output k of a layer with
 * several (a recurrent layer's states with return_state: "lstm:1"), or a model input's
 * (the batch as the model reads it, scaled). A layer that reaches no model output is never
 * computed, and is refused. */
#ifndef CT_INSPECT_H
#define CT_INSPECT_H

#include "experiment.h"

/* The tensor `name` names in m, into *t; -1 with an error listing the model's layer (and
 * input) names when there is none. */
int ct_inspect_find(const ct_model *m, const char *name, ct_source_id *t, ct_error *err);

/* The tensors to copy out and, after ct_inspect_run, their values: per name, its tensor,
 * shape per sample and values (rows x that shape, row-major, allocated by ct_inspect_run).
 * The struct is the caller's (on its stack); ct_inspect_free frees the values. */
typedef struct ct_inspect_result {
    int n;
    int64_t rows;
    ct_source_id tensor[CT_MAX_COLLECT];
    ct_shape shape[CT_MAX_COLLECT];
    float *values[CT_MAX_COLLECT];
} ct_inspect_result;

/* Fills r (values NULL) with the tensors the n names name: 1 to CT_MAX_COLLECT names, each
 * once, of layers the model computes. */
int ct_inspect_resolve(const ct_model *m, int n, const char *const *names,
                       ct_inspect_result *r, ct_error *err);

/* Runs the model over dataset x of the HDF5 file input (data.test when input is NULL)
 * and copies r's tensors for every row or, with sample >= 0, for that row alone, into
 * r->values. The weights are the experiment's (load them first). On error r->values are
 * NULL. */
int ct_inspect_run(ct_experiment *ex, const char *input, const char *x, int64_t sample,
                   ct_inspect_result *r, ct_error *err);
void ct_inspect_free(ct_inspect_result *r);

#endif
