/* parallel.h - the CPU backend's worker threads. The calling thread works too, so with
 * ct_threads_set(n) there are n - 1 workers. Work is split statically (the same split for
 * the same thread count), so results do not depend on timing. The pool is process-wide,
 * created on first use and resized by ct_threads_set; ct_parallel_for must be called from
 * one thread at a time (the training thread) and not from inside a task. */
#ifndef CT_PARALLEL_H
#define CT_PARALLEL_H

#include <stdint.h>

/* Sets the number of threads (>= 1) and makes OpenBLAS single-threaded, so the two never
 * compete for cores. */
void ct_threads_set(int n);
/* Sets the calling thread to flush denormal floats to zero (FTZ and DAZ), as TensorFlow
 * does on the CPU: values below 1.2e-38 become 0 instead of taking a slow microcode path
 * (Adam's decaying moments pass through that range). ct_threads_set sets it for the caller
 * and every worker. */
void ct_flush_denormals(void);
int ct_threads_get(void);

typedef void (*ct_task)(void *ctx, int64_t begin, int64_t end);

/* Runs task over [0, n) in contiguous parts, one per thread, each part at least `grain`
 * items (so small jobs run inline on the calling thread). */
void ct_parallel_for(int64_t n, int64_t grain, ct_task task, void *ctx);

#endif
