/* tensor.h - shapes and tensors. A tensor is a view: it never owns its data; whoever
 * allocated the buffer (the model's planner, a test) frees it. */
#ifndef CT_TENSOR_H
#define CT_TENSOR_H

#include "ctrain.h"

#define CT_MAX_DIMS 8
/* Most inputs, and most outputs, a model or a dataset may have. */
#define CT_MAX_IO 16

/* The shape of one sample, without the batch axis. ndim 0 is a scalar per sample. */
typedef struct ct_shape {
    int ndim;
    int64_t dim[CT_MAX_DIMS];
} ct_shape;

typedef enum { CT_DEVICE_CPU = 0, CT_DEVICE_CUDA = 1 } ct_device;

/* rows samples of shape `shape`, row-major and contiguous: element (r, i) is
 * data[r * ct_shape_size(&shape) + i]. */
typedef struct ct_tensor {
    float *data;
    int64_t rows;
    ct_shape shape;
    ct_device device;
    /* Keras's mask over the first axis (the timesteps): rows x shape.dim[0] floats, 1 at a
     * step that holds data and 0 at padding; NULL when the tensor carries none. It points
     * into the model's planned buffers (see layer.h's mask rules); the tensor never owns it. */
    float *mask;
} ct_tensor;

/* Product of the dims (1 for ndim 0). */
int64_t ct_shape_size(const ct_shape *s);
/* Keras-style text with a leading batch axis: "(None, 28, 28, 1)". Returns buf. */
char *ct_shape_format(const ct_shape *s, char *buf, size_t n);
/* Plain tuple without the batch axis: "(28, 28, 1)". Returns buf. */
char *ct_shape_format_sample(const ct_shape *s, char *buf, size_t n);
bool ct_shape_equal(const ct_shape *a, const ct_shape *b);
ct_shape ct_shape_make(int ndim, const int64_t *dim);

static inline int64_t ct_tensor_size(const ct_tensor *t) { return t->rows * ct_shape_size(&t->shape); }
/* Features per row: ct_shape_size(&t->shape). */
static inline int64_t ct_tensor_cols(const ct_tensor *t) { return ct_shape_size(&t->shape); }

#endif
