/* dist.c - the data-parallel interface (dist.h). A process that no MPI launcher started is
 * the whole job: every collective is the identity. Under a launcher (mpirun, srun: it names
 * the rank in the environment), ct_dist_start loads the MPI module ctrain-mpi.so (module.h
 * says where it looks; $CTRAIN_MPI_MODULE first) and every call goes to it from then on.
 * A build without MPI has no module: a job of several processes is refused on each of
 * them, one process runs as usual. */
#include <dlfcn.h>
#include <stdlib.h>

#include "ctrain.h"
#include "dist.h"
#include "module.h"

static const ct_dist_ops *ops; /* the module's, once ct_dist_start loaded it */

/* Launchers name the rank in the environment: Open MPI's mpirun, PMIx (Open MPI 5, srun
 * --mpi=pmix) and PMI-1/2 (MPICH's hydra, srun --mpi=pmi2). A plain process has none. */
static bool launched(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                                        "PMI_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (getenv(names[i]))
            return true;
    return false;
}

#ifdef CT_HAVE_MPI
static const ct_dist_ops *load(ct_error *err)
{
    char tried[1024];
    void *h = ct_module_open("ctrain-mpi.so", "CTRAIN_MPI_MODULE", tried, sizeof tried);
    if (!h) {
        ct_err(err, CT_ERR_CONFIG, "started by an MPI launcher, but cannot load the MPI module "
               "ctrain-mpi.so (%s); set CTRAIN_MPI_MODULE to its path", tried);
        return NULL;
    }
    const ct_dist_ops *(*entry)(void);
    *(void **)&entry = dlsym(h, "ct_mpi_module_ops");
    if (!entry) {
        ct_err(err, CT_ERR_CONFIG, "the MPI module has no entry point: %s", dlerror());
        return NULL;
    }
    return entry();
}
#endif

#ifndef CT_HAVE_MPI
/* The job's size as the launcher names it (1 where it names none). */
static long launched_size(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *v = getenv(names[i]);
        if (v && atol(v) > 1)
            return atol(v);
    }
    return 1;
}
#endif

int ct_dist_start(ct_error *err)
{
    if (!ops && launched()) {
#ifdef CT_HAVE_MPI
        ops = load(err);
        if (!ops)
            return -1;
#else
        /* every rank would train alone into the same run directory */
        long n = launched_size();
        if (n > 1)
            return ct_err(err, CT_ERR_CONFIG, "started as one of %ld processes by an MPI "
                          "launcher, but this ctrain was built without MPI (configure found "
                          "no libopenmpi-dev, or was given --without-mpi); run one process, "
                          "or rebuild with MPI", n);
#endif
    }
    return ops ? ops->start(err) : 1;
}

void ct_dist_finish(void)
{
    if (ops)
        ops->finish();
}

void ct_dist_abandon(const ct_error *err)
{
    if (ops)
        ops->abandon(err);
}

int ct_dist_rank(void) { return ops ? ops->rank() : 0; }
int ct_dist_size(void) { return ops ? ops->size() : 1; }
bool ct_dist_active(void) { return ct_dist_size() > 1; }

int ct_dist_sum(double *v, int n, bool failed, int *flags, ct_error *err)
{
    if (ops)
        return ops->sum(v, n, failed, flags, err);
    return failed ? -1 : 0;
}

int ct_dist_average(float *v, int64_t n, ct_error *err)
{
    return ops ? ops->average(v, n, err) : 0;
}

bool ct_dist_same_bits(const void *p, size_t n)
{
    return ops ? ops->same_bits(p, n) : true;
}

void ct_dist_broadcast(void *p, size_t n)
{
    if (ops)
        ops->broadcast(p, n);
}

/* One process has nothing to reduce: its reducer only counts no buckets. */
struct ct_dist_reducer {
    int nb;
};

ct_dist_reducer *ct_dist_reducer_new(const ct_backend *be, float *g, int64_t n,
                                     size_t bucket_bytes, ct_error *err)
{
    if (ops)
        return ops->reducer_new(be, g, n, bucket_bytes, err);
    ct_dist_reducer *r = calloc(1, sizeof *r);
    if (!r)
        ct_err(err, CT_ERR_NOMEM, "out of memory");
    return r;
}

void ct_dist_reducer_free(ct_dist_reducer *r)
{
    if (ops && r)
        ops->reducer_free(r);
    else
        free(r);
}

int ct_dist_reducer_buckets(const ct_dist_reducer *r)
{
    return ops ? ops->reducer_buckets(r) : r->nb;
}

void ct_dist_reducer_ready(ct_dist_reducer *r, int64_t from)
{
    if (ops)
        ops->reducer_ready(r, from);
}

int ct_dist_reducer_finish(ct_dist_reducer *r, double *v, int n, bool failed, int *flags,
                           double *wait, ct_error *err)
{
    if (ops)
        return ops->reducer_finish(r, v, n, failed, flags, wait, err);
    if (wait)
        *wait = 0;
    return failed ? -1 : 0;
}
