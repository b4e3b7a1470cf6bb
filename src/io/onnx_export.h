/* onnx_export.h - a model as an ONNX file (see onnx_export.c for what translates). */
#ifndef CT_ONNX_EXPORT_H
#define CT_ONNX_EXPORT_H

#include "model.h"

/* Writes m with its current weights to path (a temporary file renamed into place). A
 * layer without a translation is an error naming it and its Keras class; nothing is
 * written then. */
int ct_model_export_onnx(const ct_model *m, const char *path, ct_error *err);

#endif
