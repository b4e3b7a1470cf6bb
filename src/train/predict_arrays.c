/* predict_arrays.c - predictions from arrays in memory into arrays in memory (the C API's
 * and the server's), any number of rows, in batches of the planned size. */
#include "ctrain.h"
#include "experiment.h"
#include "model.h"
#include "parallel.h"

/* The plan for inference batches of fit.batch_size rows, made once and kept while nothing
 * else plans the model (a later fit or evaluate replans; the next call plans again). */
static int plan(ct_experiment *ex, ct_error *err)
{
    ct_model *m = ex->model;
    if (m->plan && !m->planned_training && m->max_batch >= ex->batch_size && !m->nkept)
        return 0;
    ct_set_threads(ex->threads);
    return ct_model_plan_inference(m, ex->batch_size, err);
}

static int predict(ct_experiment *ex, int64_t rows, const float *const *inputs,
                   float *const *outputs, ct_error *err)
{
    if (rows < 0 || !inputs || !outputs)
        return ct_err(err, CT_ERR_USAGE, "predict: %lld rows, inputs %s, outputs %s",
                      (long long)rows, inputs ? "given" : "NULL", outputs ? "given" : "NULL");
    if (plan(ex, err) < 0)
        return -1;
    ct_model *m = ex->model;
    ct_pass pass = {.training = false, .seed = ex->seed};
    for (int64_t at = 0; at < rows; at += m->max_batch) {
        int64_t n = rows - at < m->max_batch ? rows - at : m->max_batch;
        for (int k = 0; k < m->ninputs; k++) {
            int64_t cols = ct_tensor_cols(&m->inputs[k]);
            m->be->upload(m->inputs[k].data, inputs[k] + at * cols,
                          (size_t)(n * cols) * sizeof(float));
        }
        ct_model_forward(m, &pass, n);
        for (int k = 0; k < m->noutputs; k++) {
            int64_t cols = ct_shape_size(ct_model_output_shape_at(m, k));
            m->be->download(outputs[k] + at * cols, ct_model_output(m, k)->data,
                            (size_t)(n * cols) * sizeof(float));
        }
    }
    return m->be->check(err);
}

int ct_experiment_predict_arrays(ct_experiment *ex, int64_t rows, const float *const *inputs,
                                 float *const *outputs, ct_error *err)
{
    ct_fp_state fp = ct_fp_enter();
    int rc = predict(ex, rows, inputs, outputs, err);
    ct_fp_leave(fp);
    return rc;
}
