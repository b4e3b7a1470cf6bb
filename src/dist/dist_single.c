/* dist_single.c - the data-parallel interface (dist.h) in a build without MPI: the job is
 * this one process, so every collective is the identity. */
#include <stdlib.h>

#include "ctrain.h"
#include "dist.h"

int ct_dist_start(ct_error *err)
{
    (void)err;
    return 1;
}

void ct_dist_finish(void) {}
void ct_dist_abandon(const ct_error *err) { (void)err; }
int ct_dist_rank(void) { return 0; }
int ct_dist_size(void) { return 1; }
bool ct_dist_active(void) { return false; }

int ct_dist_sum(double *v, int n, bool failed, int *flags, ct_error *err)
{
    (void)v, (void)n, (void)flags, (void)err;
    return failed ? -1 : 0;
}

int ct_dist_average(float *v, int64_t n, ct_error *err)
{
    (void)v, (void)n, (void)err;
    return 0;
}

bool ct_dist_same_bits(const void *p, size_t n)
{
    (void)p, (void)n;
    return true;
}

void ct_dist_broadcast(void *p, size_t n) { (void)p, (void)n; }

/* One process has nothing to reduce: the reducer only remembers the block. */
struct ct_dist_reducer {
    int nb;
};

ct_dist_reducer *ct_dist_reducer_new(const ct_backend *be, float *g, int64_t n,
                                     size_t bucket_bytes, ct_error *err)
{
    (void)be, (void)g, (void)n, (void)bucket_bytes;
    ct_dist_reducer *r = calloc(1, sizeof *r);
    if (!r)
        ct_err(err, CT_ERR_NOMEM, "out of memory");
    return r;
}

void ct_dist_reducer_free(ct_dist_reducer *r) { free(r); }
int ct_dist_reducer_buckets(const ct_dist_reducer *r) { return r->nb; }
void ct_dist_reducer_ready(ct_dist_reducer *r, int64_t from) { (void)r, (void)from; }

int ct_dist_reducer_finish(ct_dist_reducer *r, double *v, int n, bool failed, int *flags,
                           double *wait, ct_error *err)
{
    (void)r, (void)v, (void)n, (void)flags, (void)err;
    if (wait)
        *wait = 0;
    return failed ? -1 : 0;
}
