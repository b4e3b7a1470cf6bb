/* serve_json.h - TensorFlow Serving's REST predict bodies: a request's instances (row
 * format, {"instances": [...]}) or inputs (columnar format, {"inputs": ...}) read into
 * float arrays, and the outputs written back as {"predictions": [...]} or {"outputs": ...}.
 * Internal to the server.
 *
 * Ownership: ct_serve_parse allocates the request's arrays (ct_serve_request_free releases
 * them); ct_serve_format returns a malloc'd JSON text the caller frees. */
#ifndef CT_SERVE_JSON_H
#define CT_SERVE_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include "ctrain.h"
#include "tensor.h"

/* What the model takes and gives: names and per-sample shapes. */
typedef struct ct_serve_sig {
    int ninputs, noutputs;
    const char *input_names[CT_MAX_IO], *output_names[CT_MAX_IO];
    ct_shape input_shapes[CT_MAX_IO], output_shapes[CT_MAX_IO];
    double scale[CT_MAX_IO]; /* data.scale per input, applied to what a client sends */
} ct_serve_sig;

typedef struct ct_serve_request {
    bool columnar;            /* "inputs" (answered with "outputs"), else "instances" */
    int64_t rows;
    float *x[CT_MAX_IO];      /* rows x input size each */
} ct_serve_request;

/* Parses body (len bytes). An error (err's message says what and where: "instance 3:
 * expected 28 values on axis 1, got 27") is the client's: a 400 answer. */
int ct_serve_parse(const ct_serve_sig *sig, const char *body, size_t len,
                   ct_serve_request *req, ct_error *err);
void ct_serve_request_free(ct_serve_request *req);
/* The answer for rows of outputs y[k] (rows x output size). NULL when out of memory. */
char *ct_serve_format(const ct_serve_sig *sig, bool columnar, int64_t rows,
                      const float *const *y);

#endif
