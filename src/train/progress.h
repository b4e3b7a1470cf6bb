/* progress.h - Keras-style progress output. On a terminal: one line per epoch rewritten
 * in place with a bar; otherwise one plain line per epoch, so log files stay readable.
 * ct_progress_new allocates; ct_progress_free releases. The output FILE is borrowed. */
#ifndef CT_PROGRESS_H
#define CT_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "text.h" /* ct_format_value, the numbers' format */

typedef struct ct_progress ct_progress;

typedef enum { CT_PROGRESS_NONE = 0, CT_PROGRESS_BAR = 1, CT_PROGRESS_LINES = 2 } ct_progress_mode;

ct_progress *ct_progress_new(FILE *out, ct_progress_mode mode, int64_t epochs);
void ct_progress_free(ct_progress *p);
void ct_progress_epoch_begin(ct_progress *p, int64_t epoch, int64_t steps);
/* After step `done` (1-based) of the epoch; values are the running means. */
void ct_progress_step(ct_progress *p, int64_t done, int n, const char *const *names,
                      const double *values);
/* Counts step `done` without drawing (its values were not read back). */
void ct_progress_advance(ct_progress *p, int64_t done);
/* Whether ct_progress_step(p, done, ...) would draw now: values need to be read back from
 * a device only then. */
bool ct_progress_due(const ct_progress *p, int64_t done);
/* At the end of an epoch, with the final values (validation ones included). */
void ct_progress_epoch_end(ct_progress *p, int n, const char *const *names, const double *values);
/* Ends an epoch's line early (the run stops in the middle of it). */
void ct_progress_abort(ct_progress *p);
/* Seconds since an arbitrary fixed point (monotonic clock). */
double ct_now(void);

#endif
