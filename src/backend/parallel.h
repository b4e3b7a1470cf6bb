/* parallel.h - the CPU backend's worker threads. The calling thread works too, so with
 * ct_threads_set(n) there are n - 1 workers. A job is cut into chunks fixed by its size
 * and the thread count, which the threads take in turn as they come free (a thread on a
 * core shared with another process takes fewer); what a chunk computes never depends on
 * the thread that runs it, so results do not depend on timing. The pool is process-wide,
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
/* The calling thread's floating-point control (MXCSR on x86). ct_fp_enter saves it and
 * sets flush-to-zero as above; ct_fp_leave puts the saved control back, keeping the
 * exception flags raised in between (as feupdateenv does). The library's public calls
 * that compute wrap themselves in the pair, so a program's own arithmetic is unchanged
 * after them. */
typedef struct ct_fp_state {
    unsigned csr;
} ct_fp_state;
ct_fp_state ct_fp_enter(void);
void ct_fp_leave(ct_fp_state saved);
int ct_threads_get(void);
/* The cores this process may run on: its affinity mask (taskset, a cpuset), capped by
 * its cgroup's CPU quota (rounded up); at least 1. The default of backend.threads. */
int ct_usable_cores(void);

typedef void (*ct_task)(void *ctx, int64_t begin, int64_t end);

/* Runs task over [0, n) in contiguous chunks (up to 4 per thread), each at least `grain`
 * items (so small jobs run inline on the calling thread). The task must compute the same
 * whatever the chunks: every ct_task here writes per item, or per fixed partition. */
void ct_parallel_for(int64_t n, int64_t grain, ct_task task, void *ctx);

#endif
