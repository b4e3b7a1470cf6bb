/* test_results.c - the test-set pass of the run report (see test_results.h). */
#include <stdlib.h>
#include <string.h>

#include "batches.h"
#include "data.h"
#include "metric_state.h"
#include "model.h"
#include "test_results.h"

/* The classes of ex's output 0 when it is a classifier, else 0; *binary for one sigmoid
 * unit (two classes, 0 and 1). */
static int classes_of(const ct_experiment *ex, bool *binary)
{
    const ct_model *m = ex->model;
    const ct_shape *out = ct_model_output_shape_at(m, 0);
    const char *loss = ex->loss[0].kind->name;
    *binary = false;
    if (m->noutputs != 1 || out->ndim != 1)
        return 0;
    if (!strcmp(loss, "binary_crossentropy") || !strcmp(loss, "binary_focal_crossentropy")) {
        *binary = out->dim[0] == 1;
        return *binary ? 2 : 0;
    }
    bool categorical = strstr(loss, "categorical_crossentropy") != NULL ||
                       !strcmp(loss, "categorical_focal_crossentropy");
    return categorical && out->dim[0] >= 2 && out->dim[0] <= 1000 ? (int)out->dim[0] : 0;
}

/* Input 0 as an image: (h, w) or (h, w, 1 or 3). */
static void image_shape(const ct_model *m, ct_test_results *r)
{
    const ct_shape *s = &m->input_shapes[0];
    r->h = 0;
    if (m->ninputs != 1 || s->ndim < 2 || s->ndim > 3 || s->dim[0] < 2 || s->dim[1] < 2)
        return;
    int64_t c = s->ndim == 3 ? s->dim[2] : 1;
    if (c != 1 && c != 3)
        return;
    r->h = s->dim[0];
    r->w = s->dim[1];
    r->c = c;
}

/* pred and y of n rows as two-class rows and class indices (one sigmoid unit). */
static void as_two_classes(float *pred2, float *y1, const float *pred, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        pred2[2 * i] = 1.0f - pred[i];
        pred2[2 * i + 1] = pred[i];
        y1[i] = y[i] >= 0.5f ? 1.0f : 0.0f;
    }
}

static int64_t argmax(const float *v, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        best = v[i] > v[best] ? i : best;
    return best;
}

/* Keeps the batch's misclassified rows (first come) for the picture grid. */
static void keep_wrong(ct_test_results *r, const float *pred, const float *y, const float *x,
                       int64_t n, int64_t start, bool sparse)
{
    int64_t cols = r->classes, size = r->h * r->w * r->c;
    for (int64_t i = 0; i < n && r->nwrong < CT_REPORT_WRONG; i++) {
        int64_t p = argmax(pred + i * cols, cols);
        int64_t t = sparse ? (int64_t)y[i] : argmax(y + i * cols, cols);
        if (p == t)
            continue;
        int k = r->nwrong++;
        r->wrong_row[k] = start + i;
        r->wrong_true[k] = (int)t;
        r->wrong_pred[k] = (int)p;
        r->wrong_conf[k] = pred[i * cols + p];
        if (r->wrong_x)
            memcpy(r->wrong_x + k * size, x + i * size, (size_t)size * sizeof *x);
    }
}

typedef struct pass_buffers {
    float *pred, *y, *x, *pred2, *y2;
} pass_buffers;

static void buffers_free(pass_buffers *p)
{
    free(p->pred);
    free(p->y);
    free(p->x);
    free(p->pred2);
    free(p->y2);
}

/* One pass over the loader: every batch's output and labels read back and counted. */
static int run_batches(ct_experiment *ex, ct_test_results *r, ct_batches *b, ct_loader *ld,
                       pass_buffers *p, bool binary, ct_error *err)
{
    ct_model *m = ex->model;
    int64_t cols = ct_shape_size(ct_model_output_shape_at(m, 0));
    int64_t ycols = b->ycols[0], xcols = ct_tensor_cols(&m->inputs[0]);
    bool sparse = ex->loss[0].kind->sparse_labels || binary;
    ct_pass pass = {.training = false, .seed = ex->seed};
    if (ct_loader_begin_epoch(ld, 0, err) < 0)
        return -1;
    int64_t n, done = 0;
    while ((n = ct_batches_next(b, ld, true, err)) > 0) {
        ct_model_forward(m, &pass, n);
        m->be->download(p->pred, ct_model_output(m, 0)->data, (size_t)(n * cols) * sizeof(float));
        m->be->download(p->y, b->y[0], (size_t)(n * ycols) * sizeof(float));
        if (p->x)
            m->be->download(p->x, m->inputs[0].data, (size_t)(n * xcols) * sizeof(float));
        ct_batches_done(b);
        const float *pred = p->pred, *y = p->y;
        if (binary) {
            as_two_classes(p->pred2, p->y2, p->pred, p->y, n);
            pred = p->pred2;
            y = p->y2;
        }
        r->confusion.kind->update(&r->confusion, pred, y, n, r->classes);
        keep_wrong(r, pred, y, p->x, n, done, sparse);
        done += n;
    }
    return n < 0 ? -1 : m->be->check(err);
}

int ct_test_results_run(ct_experiment *ex, ct_test_results *r, ct_error *err)
{
    *r = (ct_test_results){0};
    bool binary;
    ct_model *m = ex->model;
    r->classes = classes_of(ex, &binary);
    if (!r->classes || !ex->test.given)
        return 0;
    image_shape(m, r);
    bool sparse = ex->loss[0].kind->sparse_labels || binary;
    if (ct_confusion_setup(&r->confusion, r->classes, sparse, err) < 0 ||
        ct_model_plan_inference(m, ex->batch_size, err) < 0)
        return -1;
    ct_dataset *ds = ct_experiment_open_source(ex, &ex->test, "data.test", true, err);
    if (!ds)
        return -1;
    r->rows = ct_dataset_rows(ds);
    int64_t batch = m->max_batch, cols = ct_shape_size(ct_model_output_shape_at(m, 0));
    int64_t ycols = ex->loss[0].kind->sparse_labels ? 1 : cols;
    int64_t size = r->h * r->w * r->c;
    pass_buffers p = {0};
    bool ok = (p.pred = malloc((size_t)(batch * cols) * sizeof(float))) &&
              (p.y = malloc((size_t)(batch * ycols) * sizeof(float))) &&
              (!size || (p.x = malloc((size_t)(batch * size) * sizeof(float)))) &&
              (!size || (r->wrong_x = malloc((size_t)(CT_REPORT_WRONG * size) * sizeof(float)))) &&
              (!binary || ((p.pred2 = malloc((size_t)batch * 2 * sizeof(float))) &&
                           (p.y2 = malloc((size_t)batch * sizeof(float)))));
    int rc = -1;
    ct_batches b = {0};
    ct_loader *ld = NULL;
    if (!ok)
        ct_err(err, CT_ERR_NOMEM, "out of memory for the report's test pass");
    else if (ct_batches_init(&b, m->be, m->ninputs, m->inputs, batch, 1, &ycols, err) == 0 &&
             (ld = ct_loader_new(ds, NULL, r->rows, ex->batch_size, false, ex->seed,
                                 ex->memory_limit, err)))
        rc = run_batches(ex, r, &b, ld, &p, binary, err);
    ct_loader_free(ld);
    ct_batches_free(&b);
    buffers_free(&p);
    ct_dataset_close(ds);
    return rc;
}

void ct_test_results_free(ct_test_results *r)
{
    ct_metric_free(&r->confusion);
    free(r->wrong_x);
    r->wrong_x = NULL;
}
