/* history_csv.h - a run's history.csv read into memory, for plotting.
 *
 * The file is the one fit writes (and Keras's CSVLogger): a header "epoch,NAME,..." and
 * one row of numbers per epoch, epochs counted from 0. "nan" (a validation metric on an
 * epoch that did not validate) and "inf" are kept as such.
 *
 * Ownership: ct_history_read fills a caller-provided struct whose arrays it allocates;
 * ct_history_free releases them (and is safe on a zeroed or already freed struct). */
#ifndef CT_HISTORY_CSV_H
#define CT_HISTORY_CSV_H

#include "ctrain.h"

typedef struct ct_history {
    int ncols;        /* metric columns, the epoch column not counted */
    char **names;     /* ncols names, in the file's order */
    int nrows;        /* epochs, at least 1 */
    double *epochs;   /* nrows values of the epoch column */
    double *values;   /* nrows x ncols, row-major */
} ct_history;

/* Reads path. Errors name the file and, for its content, "path:LINE:COL". */
int ct_history_read(const char *path, ct_history *h, ct_error *err);
void ct_history_free(ct_history *h);
/* The index of column `name`, or -1. */
int ct_history_column(const ct_history *h, const char *name);

#endif
