/* weights.h - model weights in HDF5, in Keras's legacy layout (model.save("m.h5")):
 *   /                      attrs keras_version, backend, model_config (JSON),
 *                          training_config (JSON, when given)
 *   /model_weights         attr layer_names: every layer's name, weightless ones too
 *   /model_weights/<layer> attr weight_names: ["<layer>/kernel:0", "<layer>/bias:0"]
 *   /model_weights/<layer>/<layer>/kernel:0   float32 dataset in the parameter's shape
 * Dense kernels are (in, out) as in Keras. layer_names lists the layers in Keras's order
 * (ct_keras_layer_order). Loading pairs the file's layers with the model's by name when
 * every name is there, else (a file of other names) by that order, as Keras does, and
 * checks every count and shape, naming the layer and both shapes on a mismatch. */
#ifndef CT_WEIGHTS_H
#define CT_WEIGHTS_H

#include "model.h"

/* model_config / training_config: JSON text or NULL. Writes to a temporary file in the
 * same folder, then renames it over path, so a crash never leaves a half-written file. */
int ct_weights_save(const ct_model *m, const char *path, const char *model_config,
                    const char *training_config, ct_error *err);
int ct_weights_load(ct_model *m, const char *path, ct_error *err);
/* Fine-tuning's start: the weights of path's layers that have a layer of the model's name,
 * with the same count and shapes of weights, replace that layer's; the model's other
 * layers keep their values. *report (the caller frees it) gets one line per layer:
 * loaded, skipped (with the first difference), not in the file, in the file only. Returns
 * the number of layers loaded; a file that has none for the model is an error (listing
 * the same). */
int ct_weights_load_matching(ct_model *m, const char *path, char **report, ct_error *err);

/* As ct_weights_save, and before the file is closed and renamed into place, extra(file,
 * ctx, err) may add more to it (file is the open HDF5 file's hid_t). */
typedef int (*ct_weights_extra)(int64_t file, void *ctx, ct_error *err);
int ct_weights_save_with(const ct_model *m, const char *path, const char *model_config,
                         const char *training_config, ct_weights_extra extra, void *ctx,
                         ct_error *err);
/* The model's layers that own weights (no shared applications) in the order Keras 3 lists
 * them (keras_order.c): config order for a Sequential model and one with masks; for a Functional
 * one by depth from the outputs, as Keras's loader pairs a legacy file's layers with the
 * model's. Fills
 * order (nlayers ints) and returns the count, or -1 when out of memory. */
int ct_keras_layer_order(const ct_model *m, int *order);
/* Keras model_config JSON for the model: class_name Sequential for a chain, Functional
 * (layers with inbound_nodes, input_layers, output_layers) for a graph. Caller frees. */
char *ct_model_config_json(const ct_model *m);
/* The same as a cJSON tree (the caller frees it with cJSON_Delete); NULL when out of
 * memory. The .keras writer adds Keras 3's module names to it. */
struct cJSON;
struct cJSON *ct_model_config_tree(const ct_model *m);

#endif
