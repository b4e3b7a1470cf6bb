/* dist.h - data-parallel training over several processes (doc/distributed.md).
 *
 * Under an MPI launcher every process of the job trains the same model on its own shard
 * of each global batch. This interface is all the trainer sees of the transport. dist.c
 * implements it: for one process every call is a no-op, and under a launcher ct_dist_start
 * loads the MPI module (ctrain-mpi.so, built from dist_mpi.c, which links Open MPI) and
 * every call goes to its ct_dist_ops, so that commands run without a launcher never load
 * MPI's libraries. ct_dist_start / ct_dist_finish / ct_dist_rank / ct_dist_size are public
 * (ctrain.h).
 *
 * Every collective carries a status word: each rank says whether it failed (its ct_error
 * holds why), asks to stop, or could not finish its part of the step, and every rank gets
 * the same answer from the same call, so the ranks stop or fail at the same step without a
 * message of their own. A failure becomes, on every rank, an error "rank R of N failed:
 * MESSAGE" with the lowest failed rank's own message and code.
 *
 * The reducer sums a float block (the gradients) over the ranks in buckets, each started
 * as a non-blocking allreduce as soon as the backward pass has finished every float in it,
 * and all waited for before the optimizer step. It takes host memory (the CPU backend);
 * a device reducer (NCCL on CUDA streams) would implement the same four calls over device
 * pointers, started on the backend's compute stream after the layer that finishes a
 * bucket: ct_dist_reducer_new is where it would be chosen (by the backend's device).
 *
 * Ownership: ct_dist_reducer_new returns a reducer freed by ct_dist_reducer_free; the block
 * is the caller's and must outlive it. */
#ifndef CT_DIST_H
#define CT_DIST_H

#include "backend.h"

/* Status flags a rank brings to a collective, OR-ed over all ranks on return. */
enum {
    CT_DIST_STOP = 1, /* stop after this step (a signal, the caller's flag) */
    CT_DIST_SKIP = 2  /* this step is incomplete here: no rank applies it */
};

/* Whether this process is one of several of an MPI job (ct_dist_start found a launcher
 * and more than one process). */
bool ct_dist_active(void);

/* Sums v[0..n) over the ranks in place (every rank gets the same bits) and agrees on the
 * status: failed says this rank failed (err holds why); *flags (CT_DIST_*) is this rank's
 * on entry and the OR over the ranks on return. Returns -1 on every rank when one failed
 * (err then names the lowest failed rank and its message), else 0. Collective. */
int ct_dist_sum(double *v, int n, bool failed, int *flags, ct_error *err);

/* Averages a float block over the ranks in place (batch normalization's moving
 * statistics). Collective; -1 only where MPI itself fails. */
int ct_dist_average(float *v, int64_t n, ct_error *err);

/* Whether n bytes at p are the same on every rank (a hash compared). Collective. */
bool ct_dist_same_bits(const void *p, size_t n);

/* Rank 0's n bytes at p are copied to every rank. Collective. */
void ct_dist_broadcast(void *p, size_t n);

typedef struct ct_dist_reducer ct_dist_reducer;

/* A reducer of g[0..n) (host memory of be, which must be the CPU backend's) in buckets of
 * about bucket_bytes, cut from the end of the block, where the backward pass finishes
 * first. NULL on error. */
ct_dist_reducer *ct_dist_reducer_new(const ct_backend *be, float *g, int64_t n,
                                     size_t bucket_bytes, ct_error *err);
void ct_dist_reducer_free(ct_dist_reducer *r);
int ct_dist_reducer_buckets(const ct_dist_reducer *r);

/* Every float of the block from offset `from` on is final for this step: the buckets that
 * lie within it start (always in the same order, the last bucket first), and those
 * started before make progress. */
void ct_dist_reducer_ready(ct_dist_reducer *r, int64_t from);

/* Ends the step: starts the buckets not yet started, sums v[0..n) with the status as
 * ct_dist_sum does, and waits for everything; the block then holds the sum over the
 * ranks. *wait (may be NULL) gets the seconds spent waiting here. Collective. */
int ct_dist_reducer_finish(ct_dist_reducer *r, double *v, int n, bool failed, int *flags,
                           double *wait, ct_error *err);

/* The MPI module's implementation of the calls above (its entry point ct_mpi_module_ops
 * returns it; static, living as long as the process). */
typedef struct ct_dist_ops {
    int (*start)(ct_error *err);
    void (*finish)(void);
    void (*abandon)(const ct_error *err);
    int (*rank)(void);
    int (*size)(void);
    int (*sum)(double *v, int n, bool failed, int *flags, ct_error *err);
    int (*average)(float *v, int64_t n, ct_error *err);
    bool (*same_bits)(const void *p, size_t n);
    void (*broadcast)(void *p, size_t n);
    ct_dist_reducer *(*reducer_new)(const ct_backend *be, float *g, int64_t n,
                                    size_t bucket_bytes, ct_error *err);
    void (*reducer_free)(ct_dist_reducer *r);
    int (*reducer_buckets)(const ct_dist_reducer *r);
    void (*reducer_ready)(ct_dist_reducer *r, int64_t from);
    int (*reducer_finish)(ct_dist_reducer *r, double *v, int n, bool failed, int *flags,
                          double *wait, ct_error *err);
} ct_dist_ops;

#endif
