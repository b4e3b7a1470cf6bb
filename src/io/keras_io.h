/* keras_io.h - Keras 3's own file formats (internal): the .keras archive and the
 * .weights.h5 file, written by keras_archive.c and read by keras_import.c. */
#ifndef CT_KERAS_IO_H
#define CT_KERAS_IO_H

#include <stddef.h>

#include "model.h"

/* Keras's naming.to_snake_case of a class name: "BatchNormalization" ->
 * "batch_normalization", "Conv2D" -> "conv2d". Writes at most n bytes into out. */
void ct_keras_snake_case(const char *cls, char *out, size_t n);
/* Where parameter i of layer l goes below the layer's group in a Keras 3 weights file
 * ("vars", "cell/vars", "forward_layer/cell/vars", ...), with *index its dataset's number
 * there; NULL when Keras's layout for l's kind is not known here. */
const char *ct_keras_var_place(const ct_layer *l, int i, int *index);
/* The group of each layer of m in a Keras 3 weights file ("layers/conv2d_1"), indexed as
 * m->layers (empty for shared applications): an array of m->nlayers the caller frees;
 * NULL when out of memory. */
#define CT_KERAS_GROUP_MAX 160
char (*ct_keras_layer_groups(const ct_model *m))[CT_KERAS_GROUP_MAX];
/* Reads a Keras 3 weights file (model.save_weights's .weights.h5, or a .keras archive's
 * model.weights.h5), already open as file, into m's parameters, checking every shape.
 * label names the file in errors. Nothing is changed unless every weight reads. */
int ct_keras3_weights_read(ct_model *m, int64_t file, const char *label, ct_error *err);
/* Fine-tuning's reading: layer l's weights from its Keras 3 group (ct_keras_layer_groups)
 * into dst when the file has every one in l's shapes: 1; 0 with why (what differs) when
 * not; -1 with err when reading fails. */
int ct_keras3_layer_read(const ct_model *m, int64_t file, const char *group, const ct_layer *l,
                         float *dst, const char *label, ct_error *why, ct_error *err);
/* Fails, listing them by name and Keras class, when the model has layers whose weights'
 * place in a Keras 3 weights file is not known. */
int ct_keras_check_exportable(const ct_model *m, ct_error *err);
/* The model's weights as Keras 3's .weights.h5 file, built in memory: *bytes (the caller
 * frees) of *len. label names the file in errors. 0 or -1. */
int ct_keras_weights_image(const ct_model *m, const char *label, void **bytes, size_t *len,
                           ct_error *err);
/* Keras 3's config.json for the model (the caller frees); NULL when out of memory. */
char *ct_keras_config_json(const ct_model *m);
/* Writes path: a .keras archive, or a .weights.h5 file; other names are refused. */
int ct_keras_export_model(const ct_model *m, const char *path, ct_error *err);

#endif
