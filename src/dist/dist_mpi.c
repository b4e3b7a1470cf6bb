/* dist_mpi.c - the data-parallel interface (dist.h) over MPI, built as the module
 * ctrain-mpi.so, which dist.c loads under a launcher. Only the main thread calls MPI
 * (MPI_THREAD_FUNNELED); the backend's workers and the loader's reader never do. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "ctrain.h"
#include "dist.h"

static int g_rank, g_size = 1;
static bool g_started; /* this library called MPI_Init */

static int mpi_sum(double *v, int n, bool failed, int *flags, ct_error *err);
static void mpi_reducer_free(ct_dist_reducer *r);

static int mpi_fail(int rc, const char *what, ct_error *err)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return ct_err(err, CT_ERR_IO, "rank %d of %d: %s failed: %s", g_rank, g_size, what, msg);
}

static int mpi_start(ct_error *err)
{
    int done = 0;
    MPI_Initialized(&done);
    if (!done) {
        int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Init_thread", err);
        g_started = true;
    }
    /* Errors come back as codes and become ct_errors, never an abort inside MPI. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    return g_size;
}

static void mpi_finish(void)
{
    int fin = 0;
    if (g_started && (MPI_Finalized(&fin), !fin))
        MPI_Finalize();
    g_started = false;
}

static void mpi_abandon(const ct_error *err)
{
    if (g_size == 1)
        return;
    ct_error mine = *err;
    int flags = 0;
    mpi_sum(NULL, 0, true, &flags, &mine);
}

static int mpi_rank(void) { return g_rank; }
static int mpi_size(void) { return g_size; }

/* The status after the values: stop and skip counts, then one failure slot per rank. */
static void pack_status(double *s, bool failed, int flags)
{
    s[0] = (flags & CT_DIST_STOP) != 0;
    s[1] = (flags & CT_DIST_SKIP) != 0;
    for (int r = 0; r < g_size; r++)
        s[2 + r] = r == g_rank && failed;
}

/* Reads the summed status: the flags, or the lowest failed rank's error (sent from it). */
static int settle(const double *s, int *flags, ct_error *err)
{
    *flags = (s[0] > 0 ? CT_DIST_STOP : 0) | (s[1] > 0 ? CT_DIST_SKIP : 0);
    int bad = -1;
    for (int r = 0; r < g_size && bad < 0; r++)
        if (s[2 + r] > 0)
            bad = r;
    if (bad < 0)
        return 0;
    ct_error e = {0};
    if (err && g_rank == bad)
        e = *err;
    if (!err && g_rank == bad)
        snprintf(e.msg, sizeof e.msg, "(no message)");
    MPI_Bcast(&e, (int)sizeof e, MPI_BYTE, bad, MPI_COMM_WORLD);
    return ct_err(err, e.code ? e.code : CT_ERR_INTERNAL, "rank %d of %d failed: %s", bad,
                  g_size, e.msg);
}

static double *status_buffer(int n)
{
    return malloc((size_t)(n + 2 + g_size) * sizeof(double));
}

static int mpi_sum(double *v, int n, bool failed, int *flags, ct_error *err)
{
    if (g_size == 1)
        return failed ? -1 : 0;
    double *buf = status_buffer(n);
    if (!buf)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (n)
        memcpy(buf, v, (size_t)n * sizeof *v);
    pack_status(buf + n, failed, *flags);
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n + 2 + g_size, MPI_DOUBLE, MPI_SUM,
                           MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS) {
        if (n)
            memcpy(v, buf, (size_t)n * sizeof *v);
        rc = settle(buf + n, flags, err) < 0 ? -1 : 0;
    } else {
        rc = mpi_fail(rc, "the allreduce of the step's status", err);
    }
    free(buf);
    return rc;
}

static int mpi_average(float *v, int64_t n, ct_error *err)
{
    for (int64_t at = 0; at < n && g_size > 1; at += INT_MAX / 2) {
        int k = (int)(n - at < INT_MAX / 2 ? n - at : INT_MAX / 2);
        int rc = MPI_Allreduce(MPI_IN_PLACE, v + at, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "averaging the moving statistics", err);
        for (int i = 0; i < k; i++)
            v[at + i] /= (float)g_size;
    }
    return 0;
}

static bool mpi_same_bits(const void *p, size_t n)
{
    if (g_size == 1)
        return true;
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    /* max of h and of ~h: the largest and (inverted) the smallest hash */
    unsigned long long both[2] = {h, ~h};
    MPI_Allreduce(MPI_IN_PLACE, both, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return both[0] == ~both[1];
}

static void mpi_broadcast(void *p, size_t n)
{
    if (g_size > 1)
        MPI_Bcast(p, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
}

struct ct_dist_reducer {
    float *g;
    int nb;          /* buckets; bucket b covers [at[b], at[b + 1]) */
    int64_t *at;
    MPI_Request *req; /* nb + 1: the buckets', then the status's */
    int next;        /* the next bucket to start (they start from nb - 1 down to 0) */
    int rc;          /* the first failed MPI call's code */
    double *buf;     /* the values and status of the step */
    int cap;
};

static ct_dist_reducer *mpi_reducer_new(const ct_backend *be, float *g, int64_t n,
                                     size_t bucket_bytes, ct_error *err)
{
    if (be->device != CT_DEVICE_CPU) {
        ct_err(err, CT_ERR_CONFIG, "training on several processes reduces gradients in host "
               "memory: device %s is not supported yet; use device cpu", be->name);
        return NULL;
    }
    int64_t per = (int64_t)(bucket_bytes / sizeof(float));
    per = per < 1 ? 1 : per > INT_MAX / 2 ? INT_MAX / 2 : per;
    ct_dist_reducer *r = calloc(1, sizeof *r);
    int nb = n ? (int)((n + per - 1) / per) : 0;
    if (r) {
        r->at = malloc((size_t)(nb + 1) * sizeof *r->at);
        r->req = malloc((size_t)(nb + 1) * sizeof *r->req);
    }
    if (!r || !r->at || !r->req) {
        mpi_reducer_free(r);
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->g = g;
    r->nb = nb;
    /* Cut from the end: the last bucket is full, the first takes what is left. */
    r->at[0] = 0;
    for (int b = 1; b <= nb; b++)
        r->at[b] = n - (int64_t)(nb - b) * per;
    for (int b = 0; b <= nb; b++)
        r->req[b] = MPI_REQUEST_NULL;
    r->next = nb - 1;
    return r;
}

static void mpi_reducer_free(ct_dist_reducer *r)
{
    if (!r)
        return;
    free(r->at);
    free(r->req);
    free(r->buf);
    free(r);
}

static int mpi_reducer_buckets(const ct_dist_reducer *r) { return r->nb; }

static void mpi_reducer_ready(ct_dist_reducer *r, int64_t from)
{
    for (; r->next >= 0 && r->at[r->next] >= from; r->next--) {
        int b = r->next, rc = MPI_Iallreduce(MPI_IN_PLACE, r->g + r->at[b],
                                             (int)(r->at[b + 1] - r->at[b]), MPI_FLOAT, MPI_SUM,
                                             MPI_COMM_WORLD, &r->req[b]);
        if (rc != MPI_SUCCESS && !r->rc)
            r->rc = rc;
    }
    /* MPI moves a non-blocking collective on only inside its calls: a test lets the
     * buckets started so far advance while the next layers compute. */
    int started = r->nb - 1 - r->next, flag;
    if (started > 0)
        MPI_Testall(started, r->req + r->next + 1, &flag, MPI_STATUSES_IGNORE);
}

static int mpi_reducer_finish(ct_dist_reducer *r, double *v, int n, bool failed, int *flags,
                           double *wait, ct_error *err)
{
    mpi_reducer_ready(r, 0);
    if (n + 2 + g_size > r->cap) {
        free(r->buf);
        r->cap = 0;
        if (!(r->buf = status_buffer(n)))
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        r->cap = n + 2 + g_size;
    }
    memcpy(r->buf, v, (size_t)n * sizeof *v);
    pack_status(r->buf + n, failed, *flags);
    double t0 = MPI_Wtime();
    int rc = MPI_Iallreduce(MPI_IN_PLACE, r->buf, n + 2 + g_size, MPI_DOUBLE, MPI_SUM,
                            MPI_COMM_WORLD, &r->req[r->nb]);
    int wrc = MPI_Waitall(r->nb + 1, r->req, MPI_STATUSES_IGNORE);
    if (wait)
        *wait = MPI_Wtime() - t0;
    r->next = r->nb - 1;
    rc = r->rc ? r->rc : rc != MPI_SUCCESS ? rc : wrc;
    r->rc = 0;
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, "the gradients' allreduce", err);
    memcpy(v, r->buf, (size_t)n * sizeof *v);
    return settle(r->buf + n, flags, err);
}

static const ct_dist_ops ops = {
    mpi_start,        mpi_finish,       mpi_abandon,     mpi_rank,          mpi_size,
    mpi_sum,          mpi_average,      mpi_same_bits,   mpi_broadcast,     mpi_reducer_new,
    mpi_reducer_free, mpi_reducer_buckets, mpi_reducer_ready, mpi_reducer_finish,
};

/* The module's entry point (dist.c). */
const ct_dist_ops *ct_mpi_module_ops(void);
const ct_dist_ops *ct_mpi_module_ops(void) { return &ops; }
