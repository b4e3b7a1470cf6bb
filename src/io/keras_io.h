/* keras_io.h - Keras 3's own file formats (internal): the .keras archive and the
 * .weights.h5 file, written by keras_archive.c and read by keras_import.c. */
#ifndef CT_KERAS_IO_H
#define CT_KERAS_IO_H

#include <stddef.h>

#include "model.h"

/* Keras's naming.to_snake_case of a class name: "BatchNormalization" ->
 * "batch_normalization", "Conv2D" -> "conv2d". Writes at most n bytes into out. */
void ct_keras_snake_case(const char *cls, char *out, size_t n);
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
