/* test_results.h - what the run report shows of the test set: a classifier's confusion
 * matrix and the first misclassified samples, found by running the model over data.test.
 * Internal to the library.
 *
 * Ownership: ct_test_results_run fills a caller's struct and allocates its buffers;
 * ct_test_results_free releases them (safe on a zeroed struct). */
#ifndef CT_TEST_RESULTS_H
#define CT_TEST_RESULTS_H

#include "experiment.h"
#include "metric.h"

#define CT_REPORT_WRONG 40 /* misclassified samples kept for the picture grid */

typedef struct ct_test_results {
    int64_t rows;        /* test samples */
    int classes;         /* 0: the model is not a classifier (no matrix, no grid) */
    ct_metric confusion; /* classes^2 counts, [true][predicted] */
    /* Images: input 0 of shape (h, w) or (h, w, c) with c 1 or 3; h 0 otherwise. */
    int64_t h, w, c;
    int nwrong;
    int64_t wrong_row[CT_REPORT_WRONG];
    int wrong_true[CT_REPORT_WRONG], wrong_pred[CT_REPORT_WRONG];
    float wrong_conf[CT_REPORT_WRONG]; /* the predicted class's output */
    float *wrong_x;      /* nwrong images of h * w * c floats, as the model read them */
} ct_test_results;

/* Runs ex's model (weights loaded) over data.test. A model with one output of two or more
 * classes under a categorical crossentropy (sparse or not), or one sigmoid unit under
 * binary crossentropy, is a classifier. Returns 0 or -1. */
int ct_test_results_run(ct_experiment *ex, ct_test_results *r, ct_error *err);
void ct_test_results_free(ct_test_results *r);

#endif
