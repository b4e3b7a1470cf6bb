/* data.c - HDF5 datasets in, batches out.
 *
 * HDF5's own error printing is switched off around every call into the library so that
 * users see only our messages; the innermost HDF5 reason is appended where it helps. */
#include <errno.h>
#include <pthread.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#include "data.h"
#include "guard.h"
#include "h5image.h"
#include "h5util.h"
#include "isolate.h"
#include "parallel.h"
#include "rng.h"

#define MAX_LISTED 20
/* Bounds of a listing: a damaged file can link its groups into a cycle, and HDF5 walks
 * each visited path from the top again, so deep paths cost quadratic time. */
#define MAX_VISITED 1000
#define MAX_DEPTH 32
/* Validation reads blocks of this many bytes (as float), so a stop comes soon even on slow
 * storage. */
#define VALIDATE_BYTES (4u << 20)
/* Seconds HDF5 gets to open a data file (metadata only) before it counts as looping. */
#define OPEN_SECONDS 10.0
#define STREAM_BYTES (64u << 20)
#define RUN_BYTES (1u << 20)
#define GAP_BYTES (64u << 10)

/* ---- opening ---- */

typedef struct member {
    hid_t id;
    int rank;
    hsize_t dims[CT_MAX_DIMS + 1];
    int64_t size;      /* floats per row */
    bool integer;
    bool is_signed;    /* integer types */
    size_t bytes;      /* stored element size */
    double scale;      /* applied when read: x's own, y's target scale (1 for class
                        * labels), 1 for token ids */
    bool read_later;   /* a loader reads every value after validation (see data.h) */
    int64_t token_ids; /* > 0: token ids, integers in [0, token_ids) */
    char *token_user;  /* the layer that reads them, for messages */
    int64_t chunk_rows;   /* rows of one chunk (0: not chunked) */
    double chunk_span;    /* bytes of the chunks that hold one row, decompressed */
    char *name;        /* as given, for row-count messages */
    char *label;       /* "file.h5:/train/images" */
} member;

#define MAX_MEMBERS (2 * CT_MAX_IO)

struct ct_dataset {
    char *path;
    hid_t file, lapl;
    int nx, ny;
    int weight_member; /* the y member holding sample weights, or -1 */
    member m[MAX_MEMBERS]; /* the x members, then the y members */
    int64_t rows;
};

typedef struct listing {
    char text[1536];
    int count, visited;
    bool truncated;
} listing;

static herr_t list_cb(hid_t obj, const char *name, const ct_h5_oinfo *info, void *data)
{
    (void)obj;
    listing *l = data;
    int depth = 0;
    for (const char *c = name; *c; c++)
        depth += *c == '/';
    if (++l->visited > MAX_VISITED || depth >= MAX_DEPTH) {
        l->truncated = true;
        return 1;
    }
    if (info->type != H5O_TYPE_DATASET)
        return 0;
    if (l->count < MAX_LISTED) {
        size_t at = strlen(l->text);
        snprintf(l->text + at, sizeof l->text - at, "%s%s", l->count ? ", " : "", name);
    }
    l->count++;
    return 0;
}

/* In a child process (isolate.h): the listing, or nothing when it fails. */
static int list_child(void *ctx, int fd)
{
    listing l;
    l.text[0] = '\0';
    l.count = l.visited = 0;
    l.truncated = false;
    if (CT_H5_OVISIT(*(hid_t *)ctx, list_cb, &l) < 0 && l.count == 0)
        return 1;
    return ct_isolated_write(fd, &l, sizeof l);
}

/* "(datasets in the file: a, b, c)" for "no dataset" errors. The file's objects are
 * visited in a child process: on a damaged file HDF5 1.10 can free a pointer it never set
 * while visiting (found by fuzzing), and a message must not cost the process. */
static void list_datasets(hid_t file, char *out, size_t n)
{
    listing l;
    char *got = NULL;
    size_t len = 0;
    if (ct_isolated_run(list_child, &file, 10.0, sizeof l, &got, &len) != CT_ISOLATED_OK ||
        len != sizeof l) {
        free(got);
        snprintf(out, n, "(the file's contents cannot be listed)");
        return;
    }
    memcpy(&l, got, sizeof l);
    free(got);
    l.text[sizeof l.text - 1] = '\0';
    if (l.truncated && l.count == 0)
        snprintf(out, n, "(no datasets among the first %d objects listed)", l.visited - 1);
    else if (l.truncated)
        snprintf(out, n, "(datasets in the file: %s, and more)", l.text);
    else if (l.count == 0)
        snprintf(out, n, "(the file holds no datasets)");
    else if (l.count > MAX_LISTED)
        snprintf(out, n, "(datasets in the file: %s, and %d more)", l.text, l.count - MAX_LISTED);
    else
        snprintf(out, n, "(datasets in the file: %s)", l.text);
}

static int no_dataset(const ct_dataset *ds, const char *name, ct_error *err)
{
    char list[2048];
    list_datasets(ds->file, list, sizeof list);
    return ct_err(err, CT_ERR_DATA, "%s: no dataset '%s' %s", ds->path, name, list);
}

static int not_dataset(const ct_dataset *ds, const char *name, ct_error *err)
{
    char list[2048];
    list_datasets(ds->file, list, sizeof list);
    return ct_err(err, CT_ERR_DATA, "%s: '%s' is a group, not a dataset %s", ds->path, name,
                  list);
}

/* Walks name's components so an external link anywhere on the way gets its own message. */
static int check_links(const ct_dataset *ds, const char *name, ct_error *err)
{
    char prefix[1024];
    size_t len = strlen(name);
    if (len >= sizeof prefix)
        return ct_err(err, CT_ERR_DATA, "%s: dataset name '%.64s...' is too long", ds->path, name);
    for (size_t i = 1; i <= len; i++) {
        if (i < len && name[i] != '/')
            continue;
        memcpy(prefix, name, i);
        prefix[i] = '\0';
        if (prefix[i - 1] == '/' || strcmp(prefix, "/") == 0)
            continue;
        if (H5Lexists(ds->file, prefix, ds->lapl) <= 0)
            return no_dataset(ds, name, err);
        ct_h5_linfo info;
        if (CT_H5_LGET_INFO(ds->file, prefix, &info, ds->lapl) < 0)
            return no_dataset(ds, name, err);
        if (info.type == H5L_TYPE_EXTERNAL)
            return ct_err(err, CT_ERR_DATA,
                          "%s: '%s' is an external link; copy the data into the file",
                          ds->path, prefix);
    }
    return 0;
}

static const char *type_class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length";
    case H5T_OPAQUE: return "opaque";
    case H5T_BITFIELD: return "bitfield";
    case H5T_REFERENCE: return "reference";
    case H5T_TIME: return "time";
    default: return "unknown";
    }
}

static int check_type(member *mb, ct_error *err)
{
    hid_t t = H5Dget_type(mb->id);
    if (t < 0)
        return ct_err(err, CT_ERR_DATA, "%s: cannot read its type", mb->label);
    H5T_class_t c = H5Tget_class(t);
    mb->bytes = H5Tget_size(t);
    mb->is_signed = c == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_2;
    H5Tclose(t);
    if (c == H5T_INTEGER || c == H5T_FLOAT) {
        mb->integer = c == H5T_INTEGER;
        return 0;
    }
    return ct_err(err, CT_ERR_DATA, "%s has type %s; expected numbers", mb->label,
                  type_class_name(c));
}

static int check_shape(member *mb, ct_error *err)
{
    hid_t space = H5Dget_space(mb->id);
    if (space < 0)
        return ct_err(err, CT_ERR_DATA, "%s: cannot read its shape", mb->label);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    int ok = rank > 0 && rank <= CT_MAX_DIMS + 1
             && H5Sget_simple_extent_dims(space, dims, NULL) == rank;
    H5Sclose(space);
    if (rank == 0)
        return ct_err(err, CT_ERR_DATA,
                      "%s is a scalar (rank 0); expected samples along axis 0", mb->label);
    if (rank > CT_MAX_DIMS + 1)
        return ct_err(err, CT_ERR_DATA, "%s has rank %d; at most %d is supported", mb->label,
                      rank, CT_MAX_DIMS + 1);
    if (!ok)
        return ct_err(err, CT_ERR_DATA, "%s: cannot read its shape", mb->label);
    if (dims[0] == 0)
        return ct_err(err, CT_ERR_DATA, "%s has zero rows", mb->label);
    /* Row sizes divide block sizes, and a zero axis would hide overflowing ones. */
    for (int i = 1; i < rank; i++)
        if (dims[i] == 0)
            return ct_err(err, CT_ERR_DATA,
                          "%s: axis %d has length 0; every sample needs at least one value",
                          mb->label, i);
    mb->rank = rank;
    double size = 1;
    for (int i = 0; i < rank; i++) {
        mb->dims[i] = dims[i];
        if (i > 0)
            size *= (double)dims[i];
    }
    if (size > 1e12 || (double)dims[0] > 1e15)
        return ct_err(err, CT_ERR_DATA, "%s is absurdly large", mb->label);
    mb->size = (int64_t)size;
    return 0;
}

/* A chunked member is read through a chunk cache that holds the chunks of one row, so that
 * reading it in pieces smaller than a chunk decompresses each chunk once, not once per
 * piece (HDF5's default cache is 1 MiB: a 256 MiB chunk read in 1 MiB pieces would be
 * inflated 256 times). The cache is only filled as chunks are read; their size is checked
 * against the memory limit by ct_dataset_check_chunks. */
#define CHUNK_CACHE_MAX ((size_t)1 << 40)

static int chunk_setup(ct_dataset *ds, member *mb, const char *name, ct_error *err)
{
    hid_t dcpl = H5Dget_create_plist(mb->id);
    hsize_t chunk[CT_MAX_DIMS + 1];
    bool chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED;
    int rank = chunked ? H5Pget_chunk(dcpl, mb->rank, chunk) : 0;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (!chunked)
        return 0;
    if (rank != mb->rank)
        return ct_err(err, CT_ERR_DATA, "%s: cannot read its chunk shape", mb->label);
    double span = (double)mb->bytes * (double)chunk[0];
    for (int i = 1; i < rank; i++) /* the chunks across one row, each whole */
        span *= (double)chunk[i] * (double)((mb->dims[i] + chunk[i] - 1) / chunk[i]);
    mb->chunk_rows = (int64_t)chunk[0];
    mb->chunk_span = span;
    size_t nbytes = span > (double)CHUNK_CACHE_MAX ? CHUNK_CACHE_MAX : (size_t)span;
    if (nbytes <= ((size_t)1 << 20))
        return 0; /* HDF5's default cache holds them */
    hid_t dapl = ct_h5_local_access(H5P_DATASET_ACCESS);
    if (dapl < 0 || H5Pset_chunk_cache(dapl, 12421, nbytes + ((size_t)1 << 20), 1.0) < 0) {
        if (dapl >= 0)
            H5Pclose(dapl);
        return ct_err(err, CT_ERR_INTERNAL, "%s: cannot set up its chunk cache", mb->label);
    }
    /* Closed first: HDF5 shares an open dataset, access properties included. */
    ct_h5_close_dataset(&mb->id);
    mb->id = H5Dopen2(ds->file, name, dapl);
    H5Pclose(dapl);
    if (mb->id < 0)
        return ct_err(err, CT_ERR_DATA, "%s: cannot open it again with a chunk cache", mb->label);
    return 0;
}

static int open_member(ct_dataset *ds, member *mb, const char *name, ct_error *err)
{
    mb->label = malloc(strlen(ds->path) + strlen(name) + 3);
    if (!mb->label)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    sprintf(mb->label, "%s:%s%s", ds->path, name[0] == '/' ? "" : "/", name);
    if (!name[0] || strcmp(name, "/") == 0)
        return no_dataset(ds, name, err);
    if (check_links(ds, name, err) < 0)
        return -1;
    hid_t obj = H5Oopen(ds->file, name, ds->lapl);
    if (obj < 0)
        return no_dataset(ds, name, err);
    if (H5Iget_type(obj) != H5I_DATASET) {
        H5Oclose(obj);
        return not_dataset(ds, name, err);
    }
    mb->id = obj;
    if (ct_h5_check_layout(mb->id, mb->label, err) < 0 || check_type(mb, err) < 0 ||
        check_shape(mb, err) < 0 ||
        ct_h5_check_storage(mb->id, mb->label, err) < 0 || chunk_setup(ds, mb, name, err) < 0)
        return -1;
    return 0;
}

static void close_member(member *mb)
{
    ct_h5_close_dataset(&mb->id);
    free(mb->label);
    free(mb->token_user);
    free(mb->name);
    mb->label = mb->name = mb->token_user = NULL;
}

void ct_dataset_close(ct_dataset *ds)
{
    if (!ds)
        return;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    for (int i = 0; i < MAX_MEMBERS; i++)
        close_member(&ds->m[i]);
    if (ds->lapl >= 0)
        H5Pclose(ds->lapl);
    if (ds->file >= 0)
        H5Fclose(ds->file);
    ct_h5_quiet_off(&q);
    free(ds->path);
    free(ds);
}

static int open_file(ct_dataset *ds, ct_error *err)
{
    if (ct_h5_check_path(ds->path, err) < 0)
        return -1;
    FILE *f = fopen(ds->path, "rb");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot open %s: %s", ds->path, strerror(errno));
    fclose(f);
    ds->file = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ds->file < 0)
        return ct_h5_open_error(ds->path, err);
    ds->lapl = ct_h5_local_access(H5P_LINK_ACCESS); /* never follows external links */
    if (ds->lapl < 0)
        return ct_err(err, CT_ERR_INTERNAL, "%s: cannot set up link access", ds->path);
    return 0;
}

static const char *role(const ct_dataset *ds, int i)
{
    return i < ds->nx ? "x" : i - ds->nx == ds->weight_member ? "sample_weight" : "y";
}

/* Members are rows of one table: each must have as many as x member 0. */
static int check_rows(const ct_dataset *ds, int i, ct_error *err)
{
    const member *a = &ds->m[0], *b = &ds->m[i];
    if ((int64_t)b->dims[0] == ds->rows)
        return 0;
    return ct_err(err, CT_ERR_DATA,
                  "%s: x '%s' has %" PRId64 " rows but %s '%s' has %" PRId64, ds->path, a->name,
                  ds->rows, role(ds, i), b->name, (int64_t)b->dims[0]);
}

static int open_all(ct_dataset *ds, const char *const *x, const double *xscale,
                    const char *const *y, ct_error *err)
{
    if (open_file(ds, err) < 0)
        return -1;
    for (int i = 0; i < ds->nx + ds->ny; i++) {
        member *mb = &ds->m[i];
        const char *name = i < ds->nx ? x[i] : y[i - ds->nx];
        mb->scale = i < ds->nx && xscale ? xscale[i] : 1.0;
        if (!(mb->name = strdup(name)))
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        if (open_member(ds, mb, name, err) < 0)
            return -1;
        if (i == 0)
            ds->rows = (int64_t)mb->dims[0];
        else if (check_rows(ds, i, err) < 0)
            return -1;
    }
    return 0;
}

/* What the opening tried in a child process needs, and what it answers. */
typedef struct open_job {
    ct_dataset *ds;
    const char *const *x, *const *y;
    const double *xscale;
} open_job;

typedef struct open_answer {
    int rc;
    ct_error err;
} open_answer;

static int open_child(void *ctx, int fd)
{
    const open_job *j = ctx;
    open_answer a = {0};
    a.rc = open_all(j->ds, j->x, j->xscale, j->y, &a.err);
    return ct_isolated_write(fd, &a, sizeof a);
}

/* HDF5 1.10 crashes or loops inside H5Fopen and H5Oopen on some damaged files, before
 * anything can be checked (fuzz/README.md). The opening is therefore tried first in a
 * child process: its error, if any, is the answer; a child that dies or hangs means the
 * file is refused; only a file the child opened is opened here. 1: go on and open. */
static int probe_open(const open_job *job, ct_error *err)
{
    char *got = NULL;
    size_t len = 0;
    ct_isolated_status st;
    if (!ct_isolated_known_bad(job->ds->path, &st))
        st = ct_isolated_run(open_child, (void *)job, OPEN_SECONDS, sizeof(open_answer), &got,
                             &len);
    open_answer a;
    bool answered = st == CT_ISOLATED_OK && len == sizeof a;
    if (st == CT_ISOLATED_FAILED || st == CT_ISOLATED_TIMEOUT)
        ct_isolated_mark_bad(job->ds->path, st);
    if (answered)
        memcpy(&a, got, sizeof a);
    free(got);
    if (st == CT_ISOLATED_NO_CHILD)
        return 1; /* no process to spare: open it here, as without the probe */
    if (!answered)
        return ct_err(err, CT_ERR_DATA, "%s: HDF5 %s while opening it; the file is damaged",
                      job->ds->path, st == CT_ISOLATED_TIMEOUT ? "did not finish" : "crashed");
    if (a.rc < 0) {
        a.err.msg[sizeof a.err.msg - 1] = '\0';
        *err = a.err;
        return -1;
    }
    return 1;
}

static int check_counts(const char *path, int nx, const char *const *x, int ny,
                        const char *const *y, ct_error *err)
{
    if (nx < 1 || nx > CT_MAX_IO || ny < 0 || ny > CT_MAX_IO)
        return ct_err(err, CT_ERR_INTERNAL,
                      "%s: %d x and %d y datasets; 1 to %d x and 0 to %d y are supported", path,
                      nx, ny, CT_MAX_IO, CT_MAX_IO);
    for (int i = 0; i < nx + ny; i++)
        if (!(i < nx ? x[i] : y[i - nx]))
            return ct_err(err, CT_ERR_INTERNAL, "%s: %s dataset %d has no name", path,
                          i < nx ? "x" : "y", i < nx ? i : i - nx);
    return 0;
}

static ct_dataset *open_members(const char *path, int nx, const char *const *x,
                                const double *xscale, int ny, const char *const *y,
                                int weight_member, ct_error *err)
{
    if (check_counts(path, nx, x, ny, y, err) < 0)
        return NULL;
    ct_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->path = strdup(path))) {
        free(ds);
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ds->file = ds->lapl = H5I_INVALID_HID;
    for (int i = 0; i < MAX_MEMBERS; i++)
        ds->m[i].id = H5I_INVALID_HID;
    ds->nx = nx;
    ds->ny = ny;
    ds->weight_member = weight_member;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    ct_unpolled_begin();
    open_job job = {ds, x, y, xscale};
    int rc = probe_open(&job, err);
    if (rc > 0)
        rc = open_all(ds, x, xscale, y, err);
    ct_unpolled_end();
    ct_h5_quiet_off(&q);
    if (rc < 0) {
        ct_dataset_close(ds);
        return NULL;
    }
    return ds;
}

ct_dataset *ct_dataset_open_multi(const char *path, int nx, const char *const *x,
                                  const double *xscale, int ny, const char *const *y,
                                  ct_error *err)
{
    return open_members(path, nx, x, xscale, ny, y, -1, err);
}

ct_dataset *ct_dataset_open_weighted(const char *path, int nx, const char *const *x,
                                     const double *xscale, int ny, const char *const *y,
                                     const char *weights, ct_error *err)
{
    if (!weights)
        return open_members(path, nx, x, xscale, ny, y, -1, err);
    if (ny < 1 || ny >= CT_MAX_IO) {
        ct_err(err, CT_ERR_INTERNAL, "%s: sample weights beside %d y datasets", path, ny);
        return NULL;
    }
    const char *all[CT_MAX_IO];
    for (int j = 0; j < ny; j++)
        all[j] = y[j];
    all[ny] = weights;
    return open_members(path, nx, x, xscale, ny + 1, all, ny, err);
}

ct_dataset *ct_dataset_open(const char *path, const char *x, const char *y, double scale,
                            ct_error *err)
{
    return ct_dataset_open_multi(path, 1, &x, &scale, y ? 1 : 0, &y, err);
}

int64_t ct_dataset_rows(const ct_dataset *ds) { return ds->rows; }

int ct_dataset_check_chunks(const ct_dataset *ds, size_t memory_limit, ct_error *err)
{
    for (int i = 0; i < ds->nx + ds->ny; i++) {
        const member *mb = &ds->m[i];
        if (mb->chunk_rows > 0 && mb->chunk_span > (double)memory_limit)
            return ct_err(err, CT_ERR_DATA,
                          "%s: the chunks holding one row expand to %.0f MiB, more than the "
                          "memory limit of %zu MiB (data.memory_limit_mb); store it in smaller "
                          "chunks", mb->label, ceil(mb->chunk_span / 1048576.0),
                          memory_limit >> 20);
    }
    return 0;
}

static ct_shape member_shape(const member *mb)
{
    int64_t dim[CT_MAX_DIMS];
    for (int i = 1; i < mb->rank; i++)
        dim[i - 1] = (int64_t)mb->dims[i];
    return ct_shape_make(mb->rank > 0 ? mb->rank - 1 : 0, dim);
}

/* Member i of x (y: j + nx), or an empty one out of range, so the getters need no checks. */
static const member *x_at(const ct_dataset *ds, int i)
{
    static const member none = {.id = H5I_INVALID_HID};
    return i >= 0 && i < ds->nx ? &ds->m[i] : &none;
}

static const member *y_at(const ct_dataset *ds, int j)
{
    return j >= 0 && j < ds->ny ? &ds->m[ds->nx + j] : x_at(ds, -1);
}

int ct_dataset_nx(const ct_dataset *ds) { return ds->nx; }
int ct_dataset_ny(const ct_dataset *ds) { return ds->ny; }
ct_shape ct_dataset_x_shape_at(const ct_dataset *ds, int i) { return member_shape(x_at(ds, i)); }
ct_shape ct_dataset_y_shape_at(const ct_dataset *ds, int j) { return member_shape(y_at(ds, j)); }
bool ct_dataset_y_is_integer_at(const ct_dataset *ds, int j) { return y_at(ds, j)->integer; }

int ct_dataset_set_token_ids(ct_dataset *ds, int i, int64_t ids, const char *user,
                             ct_error *err)
{
    if (i < 0 || i >= ds->nx || ids < 1)
        return ct_err(err, CT_ERR_INTERNAL, "%s: no x member %d for token ids", ds->path, i);
    member *mb = &ds->m[i];
    if (!mb->integer)
        return ct_err(err, CT_ERR_DATA, "%s holds floating-point values, but it feeds %s, "
                      "which takes integer token ids: store them as an integer type",
                      mb->label, user);
    free(mb->token_user);
    if (!(mb->token_user = strdup(user)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    mb->token_ids = ids;
    mb->scale = 1.0;
    return 0;
}

int ct_dataset_weight_member(const ct_dataset *ds) { return ds->weight_member; }

void ct_dataset_set_y_scale(ct_dataset *ds, int j, double scale)
{
    if (j >= 0 && j < ds->ny)
        ds->m[ds->nx + j].scale = scale;
}

const char *ct_dataset_x_name_at(const ct_dataset *ds, int i)
{
    const member *mb = x_at(ds, i);
    return mb->label ? mb->label : "";
}

const char *ct_dataset_y_name_at(const ct_dataset *ds, int j)
{
    const member *mb = y_at(ds, j);
    return mb->label ? mb->label : "";
}

ct_shape ct_dataset_x_shape(const ct_dataset *ds) { return ct_dataset_x_shape_at(ds, 0); }
ct_shape ct_dataset_y_shape(const ct_dataset *ds) { return ct_dataset_y_shape_at(ds, 0); }
bool ct_dataset_has_y(const ct_dataset *ds) { return ds->ny > 0; }
bool ct_dataset_y_is_integer(const ct_dataset *ds) { return ct_dataset_y_is_integer_at(ds, 0); }
const char *ct_dataset_x_name(const ct_dataset *ds) { return ct_dataset_x_name_at(ds, 0); }
const char *ct_dataset_y_name(const ct_dataset *ds) { return ct_dataset_y_name_at(ds, 0); }

/* ---- reading ---- */


/* Rows [start, start + count) of mb converted by HDF5 to mem_type into out. */
static int read_member(const member *mb, int64_t start, int64_t count, void *out,
                       hid_t mem_type, ct_error *err)
{
    hsize_t off[CT_MAX_DIMS + 1] = {0}, cnt[CT_MAX_DIMS + 1];
    off[0] = (hsize_t)start;
    cnt[0] = (hsize_t)count;
    for (int i = 1; i < mb->rank; i++)
        cnt[i] = mb->dims[i];
    /* The memory space has the selection's own shape: with another rank HDF5 maps a
     * chunked read element by element (H5S_select_iterate), ten times h5py's time. */
    hid_t fs = H5Dget_space(mb->id);
    hid_t ms = H5Screate_simple(mb->rank, cnt, NULL);
    herr_t rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL) >= 0)
        rc = H5Dread(mb->id, mem_type, ms, fs, H5P_DEFAULT, out);
    char why[CT_H5_REASON_MAX];
    if (rc < 0)
        ct_h5_reason(why);
    ct_h5_close_space(&fs);
    ct_h5_close_space(&ms);
    if (rc < 0)
        return ct_err(err, CT_ERR_IO, "%s: reading rows %" PRId64 "..%" PRId64 " failed%s%s",
                      mb->label, start, start + count - 1, why[0] ? ": " : "", why);
    return 0;
}

static void scale_floats(float *v, int64_t n, double scale)
{
    if (scale == 1.0)
        return;
    float s = (float)scale;
    for (int64_t i = 0; i < n; i++)
        v[i] *= s;
}

static int check_range(const ct_dataset *ds, int64_t start, int64_t count, ct_error *err)
{
    if (start < 0 || count < 0 || start > ds->rows - count)
        return ct_err(err, CT_ERR_INTERNAL,
                      "%s: rows %" PRId64 "..%" PRId64 " are out of range (%" PRId64 " rows)",
                      ds->m[0].label, start, start + count - 1, ds->rows);
    return 0;
}

/* Rows [start, start + count) of member mb as scaled floats. */
static int read_floats(const member *mb, int64_t start, int64_t count, float *out, ct_error *err)
{
    ct_h5_lock();
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = read_member(mb, start, count, out, H5T_NATIVE_FLOAT, err);
    ct_h5_quiet_off(&q);
    ct_h5_unlock();
    if (rc == 0)
        scale_floats(out, count * mb->size, mb->scale);
    return rc;
}

int ct_dataset_read(ct_dataset *ds, int64_t start, int64_t count, float *x, float *y,
                    ct_error *err)
{
    if (check_range(ds, start, count, err) < 0)
        return -1;
    if (count == 0)
        return 0;
    int rc = read_floats(&ds->m[0], start, count, x, err);
    if (rc == 0 && y && ds->ny > 0)
        rc = read_floats(&ds->m[ds->nx], start, count, y, err);
    return rc;
}

/* How a loader keeps a member in memory. Integer data of one or two bytes (images, mostly)
 * stays in its stored type, a quarter or half of float32, and is converted to float (times
 * the scale) only as each batch is assembled: (float)v * scale is exactly what reading it
 * as float and scaling gives, so results do not depend on the storage. */
typedef enum { STORE_F32, STORE_U8, STORE_I8, STORE_U16, STORE_I16 } store_kind;

static store_kind store_for(const member *mb)
{
    if (!mb->integer || mb->bytes > 2)
        return STORE_F32;
    if (mb->bytes == 1)
        return mb->is_signed ? STORE_I8 : STORE_U8;
    return mb->is_signed ? STORE_I16 : STORE_U16;
}

static size_t store_bytes(store_kind k)
{
    return k == STORE_F32 ? 4 : (k == STORE_U8 || k == STORE_I8) ? 1 : 2;
}

static hid_t store_type(store_kind k)
{
    switch (k) {
    case STORE_U8: return H5T_NATIVE_UCHAR;
    case STORE_I8: return H5T_NATIVE_SCHAR;
    case STORE_U16: return H5T_NATIVE_USHORT;
    case STORE_I16: return H5T_NATIVE_SHORT;
    default: return H5T_NATIVE_FLOAT;
    }
}

/* ---- validation ---- */

static int64_t first_nonfinite(const float *v, int64_t rows, int64_t size)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < size; i++)
            if (!isfinite(v[r * size + i]))
                return r;
    return -1;
}

/* The first value of v (count rows of mb->size) that is not an integer in [0, limit), as
 * an index, or -1. */
static int64_t first_outside(const member *mb, const float *v, int64_t count, int64_t limit)
{
    for (int64_t i = 0; i < count * mb->size; i++)
        if (!(v[i] == floorf(v[i]) && v[i] >= 0 && v[i] < (float)limit))
            return i;
    return -1;
}

/* " at position P" for rows of several values (labels over a time axis, token ids). */
static void position_of(const member *mb, int64_t i, char *buf, size_t n)
{
    buf[0] = '\0';
    if (mb->size > 1)
        snprintf(buf, n, " at position %" PRId64, i % mb->size);
}

static int check_labels(const member *mb, const float *y, int64_t start, int64_t count,
                        int64_t nclasses, ct_error *err)
{
    int64_t i = first_outside(mb, y, count, nclasses);
    if (i < 0)
        return 0;
    char at[48];
    position_of(mb, i, at, sizeof at);
    float v = y[i];
    if (v != floorf(v))
        return ct_err(err, CT_ERR_DATA,
                      "%s: row %" PRId64 " has label %g%s, but class labels must be integers",
                      mb->label, start + i / mb->size, (double)v, at);
    return ct_err(err, CT_ERR_DATA,
                  "%s: row %" PRId64 " has label %g%s, but the model's output has %" PRId64
                  " classes (labels must be 0..%" PRId64 ")",
                  mb->label, start + i / mb->size, (double)v, at, nclasses, nclasses - 1);
}

/* Targets of a crossentropy on probabilities: between 0 and 1. */
static int check_unit_targets(const member *mb, const float *y, int64_t start, int64_t count,
                              ct_error *err)
{
    for (int64_t i = 0; i < count * mb->size; i++) {
        if (y[i] >= 0.0f && y[i] <= 1.0f)
            continue;
        char at[48];
        position_of(mb, i, at, sizeof at);
        return ct_err(err, CT_ERR_DATA,
                      "%s: row %" PRId64 " has target %g%s, but the loss's targets lie between "
                      "0 and 1 (class labels 0, 1, 2, ... need sparse_categorical_crossentropy "
                      "and an output of one unit per class)",
                      mb->label, start + i / mb->size, (double)y[i], at);
    }
    return 0;
}

/* Sample weights: at least 0 (finite already checked). */
static int check_weights(const member *mb, const float *w, int64_t start, int64_t count,
                         ct_error *err)
{
    for (int64_t i = 0; i < count * mb->size; i++)
        if (!(w[i] >= 0.0f))
            return ct_err(err, CT_ERR_DATA, "%s: row %" PRId64 " has sample weight %g, but "
                          "sample weights must be 0 or more", mb->label, start + i / mb->size,
                          (double)w[i]);
    return 0;
}

static int check_token_ids(const member *mb, const float *x, int64_t start, int64_t count,
                           ct_error *err)
{
    int64_t i = first_outside(mb, x, count, mb->token_ids);
    if (i < 0)
        return 0;
    char at[48];
    position_of(mb, i, at, sizeof at);
    return ct_err(err, CT_ERR_DATA,
                  "%s: row %" PRId64 " has token id %g%s, but %s takes ids 0..%" PRId64,
                  mb->label, start + i / mb->size, (double)x[i], at, mb->token_user,
                  mb->token_ids - 1);
}

/* Whether every value of integer member mb, times its scale, is a finite float, so
 * there is nothing to check (a uint8 image scaled by 1/255). */
static bool always_finite(const member *mb)
{
    double largest = ldexp(1.0, 8 * mb->bytes); /* above the type's largest magnitude */
    return mb->integer && largest * fabs(mb->scale) < (double)FLT_MAX;
}

/* Member mb's rows [start, start + count), read into v: finite, and class labels when
 * nclasses > 0. */
static int check_block(const member *mb, float *v, int64_t start, int64_t count,
                       int64_t nclasses, ct_error *err)
{
    if (nclasses == 0 && mb->token_ids <= 0 && always_finite(mb)) {
        if (mb->read_later)
            return 0;
        /* nothing to check but that the data read: no conversion to float needed */
        store_kind k = store_for(mb);
        if (k != STORE_F32) {
            ct_h5_lock();
            ct_h5_quiet q;
            ct_h5_quiet_on(&q);
            int rc = read_member(mb, start, count, v, store_type(k), err);
            ct_h5_quiet_off(&q);
            ct_h5_unlock();
            return rc;
        }
    }
    if (read_floats(mb, start, count, v, err) < 0)
        return -1;
    int64_t bad = first_nonfinite(v, count, mb->size);
    if (bad >= 0)
        return ct_err(err, CT_ERR_DATA, "%s: row %" PRId64 " holds NaN or Inf", mb->label,
                      start + bad);
    if (mb->token_ids > 0)
        return check_token_ids(mb, v, start, count, err);
    if (nclasses == CT_TARGETS_UNIT)
        return check_unit_targets(mb, v, start, count, err);
    if (nclasses == CT_TARGETS_WEIGHT)
        return check_weights(mb, v, start, count, err);
    return nclasses > 0 ? check_labels(mb, v, start, count, nclasses, err) : 0;
}

static int64_t classes_of(const ct_dataset *ds, const int64_t *nclasses, int i)
{
    return nclasses && i >= ds->nx ? nclasses[i - ds->nx] : 0;
}

int ct_dataset_validate_multi(ct_dataset *ds, const int64_t *nclasses, ct_error *err)
{
    /* Blocks of rows across all members, so a bad row is found near where it lies. */
    int nm = ds->nx + ds->ny;
    int64_t row_floats = 0, widest = 0;
    for (int i = 0; i < nm; i++) {
        row_floats += ds->m[i].size;
        widest = ds->m[i].size > widest ? ds->m[i].size : widest;
    }
    int64_t block = (int64_t)VALIDATE_BYTES / (row_floats * (int64_t)sizeof(float));
    if (block < 1)
        block = 1;
    /* Whole chunks per read where a block holds several (a smaller one reads through the
     * chunk cache, see chunk_setup). */
    int64_t chunk_rows = 0;
    for (int i = 0; i < nm; i++)
        chunk_rows = ds->m[i].chunk_rows > chunk_rows ? ds->m[i].chunk_rows : chunk_rows;
    if (chunk_rows > 0 && block > chunk_rows)
        block -= block % chunk_rows;
    if (block > ds->rows)
        block = ds->rows;
    float *v = malloc((size_t)(block * widest) * sizeof *v);
    if (!v)
        return ct_err(err, CT_ERR_NOMEM, "out of memory validating %s", ds->m[0].label);
    int rc = 0;
    double started = ct_stop_clock();
    char what[4200];
    snprintf(what, sizeof what, "validating %s", ds->m[0].label);
    for (int64_t at = 0; rc == 0 && at < ds->rows; at += block) {
        int64_t count = ds->rows - at < block ? ds->rows - at : block;
        if (ct_stop_due(started)) {
            char where[4300];
            snprintf(where, sizeof where, "%s (row %" PRId64 " of %" PRId64 ")", what, at,
                     ds->rows);
            rc = ct_stop_error(err, where);
            break;
        }
        for (int i = 0; rc == 0 && i < nm; i++)
            rc = check_block(&ds->m[i], v, at, count, classes_of(ds, nclasses, i), err);
        if (rc == 0)
            ct_phase_progress(started, what, at + count, ds->rows, "rows");
    }
    free(v);
    return rc;
}

void ct_dataset_will_load(ct_dataset *ds)
{
    for (int i = 0; i < ds->nx + ds->ny; i++)
        ds->m[i].read_later = true;
}

int ct_dataset_validate(ct_dataset *ds, int64_t nclasses, ct_error *err)
{
    int64_t nc[CT_MAX_IO] = {nclasses}; /* labels are checked in y member 0 only */
    return ct_dataset_validate_multi(ds, nc, err);
}

/* ---- loader ---- */


/* The reader thread's hand-over: idle, a batch wanted (the thread owns the loader's
 * cursor), or a batch ready in p (one buffer per member). */
typedef enum { PF_IDLE, PF_WANTED, PF_READY } pf_state;

typedef struct prefetch {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pf_state state;
    bool quit;
    float *p[MAX_MEMBERS];
    int64_t rows, part_rows;
    ct_error err;
} prefetch;

typedef struct pick {
    int64_t row, slot;
} pick;

/* One member as the loader holds it. */
typedef struct column {
    const member *mb;
    store_kind store;           /* in-memory type */
    size_t row;                 /* bytes of one stored row */
    unsigned char *data;        /* memory mode: the subset in list order; streaming: the block */
    unsigned char *run;         /* scratch for one contiguous read */
} column;

struct ct_loader {
    ct_dataset *ds;
    int64_t *rows, n, batch;
    bool shuffle, streaming;
    uint64_t seed;
    int64_t epoch;
    int nm;                     /* members: the dataset's x, then its y */
    column col[MAX_MEMBERS];
    int64_t row_bytes;          /* stored bytes of one row over all members */
    int64_t *order;             /* memory mode: list positions in epoch order (n) */
    int64_t pos;                /* next position in epoch order */
    int64_t block, nblocks;     /* streaming: list entries per block */
    int64_t *border, *bperm;    /* streaming: block order, order within the loaded block */
    int64_t cur, blen, bpos;    /* index into border of the loaded block (-1 none) */
    pick *picks;                /* scratch for sorted reads */
    int64_t run_rows;           /* scratch rows for one contiguous read */
    prefetch *pf;               /* NULL: batches are assembled on the caller's thread */
    int part, parts;            /* the shard of every batch served (ct_loader_shard) */
    int64_t part_rows;          /* rows of the last batch in this part */
};

/* Rows [start, start + count) of every member into its run scratch, in stored type. */
static int read_stored(ct_loader *ld, int64_t start, int64_t count, ct_error *err)
{
    ct_h5_lock();
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = 0;
    for (int i = 0; rc == 0 && i < ld->nm; i++) {
        const column *c = &ld->col[i];
        rc = read_member(c->mb, start, count, c->run, store_type(c->store), err);
    }
    ct_h5_quiet_off(&q);
    ct_h5_unlock();
    return rc;
}

static int pick_cmp(const void *a, const void *b)
{
    const pick *p = a, *q = b;
    if (p->row != q->row)
        return p->row < q->row ? -1 : 1;
    return (p->slot > q->slot) - (p->slot < q->slot);
}

/* End (exclusive) of the run of picks starting at i that one contiguous read serves:
 * small gaps are read through rather than paying for another H5Dread. */
static int64_t run_end(const ct_loader *ld, int64_t i, int64_t m)
{
    int64_t gap = (int64_t)GAP_BYTES / ld->row_bytes;
    int64_t first = ld->picks[i].row, last = first, j = i + 1;
    while (j < m && ld->picks[j].row - last - 1 <= gap
           && ld->picks[j].row - first + 1 <= ld->run_rows) {
        last = ld->picks[j].row;
        j++;
    }
    return j;
}

/* Reads dataset rows rows[0..m) into slots 0..m) of every member's data, sorted into
 * contiguous runs. report: tell the phase reporter (loading into memory, on the calling
 * thread; a streamed block may be read by the prefetch thread and is not reported). */
static int gather_rows(ct_loader *ld, const int64_t *rows, int64_t m, bool report,
                       ct_error *err)
{
    for (int64_t i = 0; i < m; i++) {
        ld->picks[i].row = rows[i];
        ld->picks[i].slot = i;
    }
    qsort(ld->picks, (size_t)m, sizeof *ld->picks, pick_cmp);
    double started = ct_stop_clock();
    char what[4200];
    snprintf(what, sizeof what, "%s %s", report ? "loading" : "reading", ld->col[0].mb->label);
    for (int64_t i = 0; i < m;) {
        if (ct_stop_due(started))
            return ct_stop_error(err, what);
        int64_t j = run_end(ld, i, m);
        int64_t first = ld->picks[i].row, count = ld->picks[j - 1].row - first + 1;
        if (read_stored(ld, first, count, err) < 0)
            return -1;
        for (; i < j; i++) {
            size_t off = (size_t)(ld->picks[i].row - first), slot = (size_t)ld->picks[i].slot;
            for (int k = 0; k < ld->nm; k++) {
                column *c = &ld->col[k];
                memcpy(c->data + slot * c->row, c->run + off * c->row, c->row);
            }
        }
        if (report)
            ct_phase_progress(started, what, i, m, "rows");
    }
    return 0;
}

static void stop_prefetch(ct_loader *ld);

static void free_runs(ct_loader *ld)
{
    free(ld->picks);
    ld->picks = NULL;
    for (int i = 0; i < ld->nm; i++) {
        free(ld->col[i].run);
        ld->col[i].run = NULL;
    }
}

void ct_loader_free(ct_loader *ld)
{
    if (!ld)
        return;
    stop_prefetch(ld);
    free_runs(ld);
    for (int i = 0; i < ld->nm; i++)
        free(ld->col[i].data);
    free(ld->rows);
    free(ld->order);
    free(ld->border);
    free(ld->bperm);
    free(ld);
}

static int copy_rows(ct_loader *ld, const int64_t *rows, int64_t n, ct_error *err)
{
    int64_t total = ct_dataset_rows(ld->ds);
    if (!rows && n <= 0)
        n = total;
    if (n < 0 || (!rows && n > total))
        return ct_err(err, CT_ERR_INTERNAL, "%s: cannot serve %" PRId64 " of %" PRId64 " rows",
                      ct_dataset_x_name(ld->ds), n, total);
    ld->n = n;
    ld->rows = malloc((size_t)(n > 0 ? n : 1) * sizeof *ld->rows);
    if (!ld->rows)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        ld->rows[i] = rows ? rows[i] : i;
        if (ld->rows[i] < 0 || ld->rows[i] >= total)
            return ct_err(err, CT_ERR_INTERNAL,
                          "%s: row %" PRId64 " is out of range (%" PRId64 " rows)",
                          ct_dataset_x_name(ld->ds), ld->rows[i], total);
    }
    return 0;
}

static float *alloc_floats(int64_t rows, int64_t size)
{
    return malloc((size_t)(rows > 0 ? rows : 1) * (size_t)size * sizeof(float));
}

static unsigned char *alloc_stored(const column *c, int64_t rows)
{
    return malloc((size_t)(rows > 0 ? rows : 1) * c->row);
}

/* Each member's data for `rows` rows; false when out of memory. */
static bool alloc_data(ct_loader *ld, int64_t rows)
{
    bool ok = true;
    for (int i = 0; i < ld->nm; i++)
        ok &= (ld->col[i].data = alloc_stored(&ld->col[i], rows)) != NULL;
    return ok;
}

/* Allocates the sorted-read scratch for up to m rows per gather. */
static int alloc_scratch(ct_loader *ld, int64_t m, ct_error *err)
{
    ld->run_rows = (int64_t)RUN_BYTES / ld->row_bytes;
    if (ld->run_rows < 1)
        ld->run_rows = 1;
    /* Whole chunks per read where the data are chunked: runs then start and end on chunk
     * boundaries (while rows follow each other), and HDF5 decodes each chunk once. */
    int64_t chunk = 0;
    for (int i = 0; i < ld->nm; i++)
        chunk = ld->col[i].mb->chunk_rows > chunk ? ld->col[i].mb->chunk_rows : chunk;
    if (chunk > 0)
        ld->run_rows = ld->run_rows > chunk ? ld->run_rows - ld->run_rows % chunk : chunk;
    ld->picks = malloc((size_t)(m > 0 ? m : 1) * sizeof *ld->picks);
    bool ok = ld->picks != NULL;
    for (int i = 0; i < ld->nm; i++)
        ok &= (ld->col[i].run = alloc_stored(&ld->col[i], ld->run_rows)) != NULL;
    return ok ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
}

static int setup_memory(ct_loader *ld, ct_error *err)
{
    ld->order = malloc((size_t)(ld->n > 0 ? ld->n : 1) * sizeof *ld->order);
    if (!alloc_data(ld, ld->n) || !ld->order)
        return ct_err(err, CT_ERR_NOMEM, "out of memory loading %s (%" PRId64 " rows)",
                      ct_dataset_x_name(ld->ds), ld->n);
    if (alloc_scratch(ld, ld->n, err) < 0 || gather_rows(ld, ld->rows, ld->n, true, err) < 0)
        return -1;
    free_runs(ld); /* the sorted-read scratch is only needed once in this mode */
    return 0;
}

static int setup_streaming(ct_loader *ld, size_t memory_limit, ct_error *err)
{
    size_t budget = memory_limit < STREAM_BYTES ? memory_limit : STREAM_BYTES;
    ld->block = (int64_t)(budget / (size_t)ld->row_bytes);
    if (ld->block < ld->batch)
        ld->block = ld->batch;
    if (ld->block > ld->n)
        ld->block = ld->n;
    ld->nblocks = (ld->n + ld->block - 1) / ld->block;
    ld->border = malloc((size_t)ld->nblocks * sizeof *ld->border);
    ld->bperm = malloc((size_t)ld->block * sizeof *ld->bperm);
    if (!alloc_data(ld, ld->block) || !ld->border || !ld->bperm)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    return alloc_scratch(ld, ld->block, err);
}

/* Every member of the dataset, x then y, each in its own storage type. */
static void setup_columns(ct_loader *ld)
{
    ct_dataset *ds = ld->ds;
    ld->nm = ds->nx + ds->ny;
    ld->row_bytes = 0;
    for (int i = 0; i < ld->nm; i++) {
        column *c = &ld->col[i];
        c->mb = &ds->m[i];
        c->store = store_for(c->mb);
        c->row = (size_t)c->mb->size * store_bytes(c->store);
        ld->row_bytes += (int64_t)c->row;
    }
}

ct_loader *ct_loader_new(ct_dataset *ds, const int64_t *rows, int64_t n, int64_t batch,
                         bool shuffle, uint64_t seed, size_t memory_limit, ct_error *err)
{
    ct_loader *ld = calloc(1, sizeof *ld);
    if (!ld) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ld->ds = ds;
    ld->batch = batch;
    ld->parts = 1;
    ld->shuffle = shuffle;
    ld->seed = seed;
    setup_columns(ld);
    int rc = batch > 0 ? copy_rows(ld, rows, n, err)
                       : ct_err(err, CT_ERR_INTERNAL, "batch size %" PRId64 " must be positive",
                                batch);
    if (rc == 0) {
        double bytes = (double)ld->n * (double)ld->row_bytes;
        ld->streaming = bytes > (double)memory_limit && ld->n > 0;
        rc = ld->streaming ? setup_streaming(ld, memory_limit, err) : setup_memory(ld, err);
    }
    if (rc == 0)
        rc = ct_loader_begin_epoch(ld, 0, err);
    if (rc < 0) {
        ct_loader_free(ld);
        return NULL;
    }
    return ld;
}

const ct_dataset *ct_loader_dataset(const ct_loader *ld) { return ld->ds; }
int64_t ct_loader_rows(const ct_loader *ld) { return ld->n; }
int64_t ct_loader_batches(const ct_loader *ld) { return (ld->n + ld->batch - 1) / ld->batch; }

void ct_loader_shard(ct_loader *ld, int part, int parts)
{
    ld->part = part;
    ld->parts = parts > 0 ? parts : 1;
}

int ct_loader_parts(const ct_loader *ld) { return ld->parts; }
int64_t ct_loader_part_rows(const ct_loader *ld) { return ld->part_rows; }

/* This part's stretch [*lo, *hi) of a batch of k rows. */
static void part_of(const ct_loader *ld, int64_t k, int64_t *lo, int64_t *hi)
{
    *lo = k * ld->part / ld->parts;
    *hi = k * (ld->part + 1) / ld->parts;
}

size_t ct_loader_memory(const ct_loader *ld)
{
    int64_t rows = ld->streaming ? ld->block : ld->n;
    return (size_t)rows * (size_t)ld->row_bytes;
}

static void identity(int64_t *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
}

static void reset_order(ct_loader *ld, int64_t epoch)
{
    ld->epoch = epoch;
    ld->pos = 0;
    uint64_t key = ct_rng_key(ld->seed, CT_RNG_SHUFFLE, (uint64_t)epoch, 0);
    if (!ld->streaming) {
        if (ld->shuffle)
            ct_rng_permutation(key, ld->order, ld->n);
        else
            identity(ld->order, ld->n);
        return;
    }
    if (ld->shuffle)
        ct_rng_permutation(key, ld->border, ld->nblocks);
    else
        identity(ld->border, ld->nblocks);
    ld->cur = -1;
    ld->blen = ld->bpos = 0;
}

/* Streaming: reads the next block of the epoch and orders its rows. */
static int load_block(ct_loader *ld, ct_error *err)
{
    ld->cur++;
    int64_t b = ld->border[ld->cur], start = b * ld->block;
    ld->blen = ld->n - start < ld->block ? ld->n - start : ld->block;
    ld->bpos = 0;
    if (ld->shuffle)
        ct_rng_permutation(ct_rng_key(ld->seed, CT_RNG_SHUFFLE, (uint64_t)ld->epoch,
                                      (uint64_t)b + 1),
                           ld->bperm, ld->blen);
    else
        identity(ld->bperm, ld->blen);
    return gather_rows(ld, ld->rows + start, ld->blen, false, err);
}

/* Row `at` of the batch buffer out = c's stored row `slot` converted to float and scaled. */
static void convert_row(const column *c, int64_t slot, float *out, int64_t at)
{
    const int64_t n = c->mb->size;
    const double scale = c->mb->scale;
    const void *src = c->data + (size_t)slot * c->row;
    float *restrict d = out + at * n;
    switch (c->store) {
    case STORE_U8:
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)((const unsigned char *)src)[i];
        break;
    case STORE_I8:
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)((const signed char *)src)[i];
        break;
    case STORE_U16:
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)((const uint16_t *)src)[i];
        break;
    case STORE_I16:
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)((const int16_t *)src)[i];
        break;
    default:
        memcpy(d, src, (size_t)n * sizeof(float));
        break;
    }
    scale_floats(d, n, scale);
}

/* One row into every member's batch buffer (out[i] NULL: member i is not wanted). */
static void copy_row(const ct_loader *ld, int64_t slot, float *const *out, int64_t at)
{
    for (int i = 0; i < ld->nm; i++)
        if (out[i])
            convert_row(&ld->col[i], slot, out[i], at);
}

static int64_t next_streaming(ct_loader *ld, float *const *out, int64_t *part, ct_error *err)
{
    int64_t k = ld->n - ld->pos < ld->batch ? ld->n - ld->pos : ld->batch, lo, hi, filled = 0;
    part_of(ld, k, &lo, &hi);
    *part = hi - lo;
    while (filled < k) {
        if (ld->bpos == ld->blen && load_block(ld, err) < 0)
            return -1;
        for (; filled < k && ld->bpos < ld->blen; filled++, ld->bpos++, ld->pos++)
            if (filled >= lo && filled < hi) /* the other parts' rows are read, not kept */
                copy_row(ld, ld->bperm[ld->bpos], out, filled - lo);
    }
    return filled;
}

typedef struct gather_job {
    const ct_loader *ld;
    float *const *out;
    int64_t first; /* the batch's first position in epoch order */
} gather_job;

static void gather_task(void *ctx, int64_t b, int64_t e)
{
    const gather_job *j = ctx;
    for (int64_t i = b; i < e; i++)
        copy_row(j->ld, j->ld->order[j->first + i], j->out, i);
}

/* The next batch into out (one buffer per member, NULL to skip), assembled on the calling
 * thread; in memory mode the rows are converted on the worker threads when the caller may
 * use them (not from the reader thread). */
static int64_t fill_batch(ct_loader *ld, float *const *out, bool threads, int64_t *part,
                          ct_error *err)
{
    if (ld->streaming)
        return next_streaming(ld, out, part, err);
    int64_t k = ld->n - ld->pos < ld->batch ? ld->n - ld->pos : ld->batch, lo, hi;
    part_of(ld, k, &lo, &hi);
    gather_job j = {ld, out, ld->pos + lo};
    if (threads)
        ct_parallel_for(hi - lo, 16, gather_task, &j);
    else
        gather_task(&j, 0, hi - lo);
    ld->pos += k;
    *part = hi - lo;
    return k;
}

/* ---- the reader thread ----
 * It assembles batch k + 1 (reading and shuffling, in streaming mode) while the caller
 * trains on batch k. The order is still a function of (seed, epoch) alone, so results are
 * the same with or without it. */

static void *reader_main(void *arg)
{
    ct_loader *ld = arg;
    prefetch *pf = ld->pf;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (pf->state != PF_WANTED && !pf->quit)
            pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->quit)
            break;
        pthread_mutex_unlock(&pf->mu);
        ct_error e = {0};
        int64_t part = 0, rows = fill_batch(ld, pf->p, false, &part, &e);
        pthread_mutex_lock(&pf->mu);
        pf->rows = rows;
        pf->part_rows = part;
        pf->err = e;
        pf->state = PF_READY;
        pthread_cond_broadcast(&pf->cv);
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

/* Waits until no batch is being assembled; the caller holds pf->mu. */
static void wait_settled(prefetch *pf)
{
    while (pf->state == PF_WANTED)
        pthread_cond_wait(&pf->cv, &pf->mu);
}

static void want_next(ct_loader *ld)
{
    prefetch *pf = ld->pf;
    if (ld->pos < ld->n) {
        pf->state = PF_WANTED;
        pthread_cond_broadcast(&pf->cv);
    } else {
        pf->state = PF_IDLE;
    }
}

static void free_prefetch(prefetch *pf)
{
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->cv);
    for (int i = 0; i < MAX_MEMBERS; i++)
        free(pf->p[i]);
    free(pf);
}

static void stop_prefetch(ct_loader *ld)
{
    prefetch *pf = ld->pf;
    if (!pf)
        return;
    pthread_mutex_lock(&pf->mu);
    pf->quit = true;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->tid, NULL);
    free_prefetch(pf);
    ld->pf = NULL;
}

int ct_loader_prefetch(ct_loader *ld, ct_error *err)
{
    /* In memory, a batch is a gather and a conversion, well under a tenth of a
     * millisecond: a thread would only compete with the training threads for the cores.
     * Reading from the file is what is worth overlapping. */
    if (ld->pf || !ld->streaming)
        return 0;
    prefetch *pf = calloc(1, sizeof *pf);
    if (!pf)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    bool ok = true;
    for (int i = 0; i < ld->nm; i++)
        ok &= (pf->p[i] = alloc_floats(ld->batch, ld->col[i].mb->size)) != NULL;
    if (!ok) {
        free_prefetch(pf);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    pf->state = PF_IDLE;
    ld->pf = pf;
    if (pthread_create(&pf->tid, NULL, reader_main, ld) != 0) {
        free_prefetch(pf);
        ld->pf = NULL;
        return 0; /* no thread: batches are assembled on the caller's thread, as before */
    }
    pthread_mutex_lock(&pf->mu);
    want_next(ld);
    pthread_mutex_unlock(&pf->mu);
    return 0;
}

void ct_loader_settle(ct_loader *ld)
{
    if (!ld || !ld->pf)
        return;
    pthread_mutex_lock(&ld->pf->mu);
    wait_settled(ld->pf);
    pthread_mutex_unlock(&ld->pf->mu);
}

int ct_loader_begin_epoch(ct_loader *ld, int64_t epoch, ct_error *err)
{
    (void)err;
    prefetch *pf = ld->pf;
    if (!pf) {
        reset_order(ld, epoch);
        return 0;
    }
    pthread_mutex_lock(&pf->mu);
    wait_settled(pf); /* a batch of the old order is dropped */
    reset_order(ld, epoch);
    want_next(ld);
    pthread_mutex_unlock(&pf->mu);
    return 0;
}

/* Hands over the reader thread's batch, copying the wanted members into out. */
static int64_t take_prefetched(ct_loader *ld, float *const *out, ct_error *err)
{
    prefetch *pf = ld->pf;
    pthread_mutex_lock(&pf->mu);
    wait_settled(pf);
    int64_t rows = 0;
    if (pf->state == PF_READY) {
        rows = pf->rows;
        ld->part_rows = rows > 0 ? pf->part_rows : 0;
        if (rows < 0)
            *err = pf->err;
        for (int i = 0; rows > 0 && i < ld->nm; i++)
            if (out[i])
                memcpy(out[i], pf->p[i],
                       (size_t)(ld->part_rows * ld->col[i].mb->size) * sizeof(float));
    }
    if (rows > 0)
        want_next(ld);
    else
        pf->state = PF_IDLE;
    pthread_mutex_unlock(&pf->mu);
    return rows;
}

static int64_t next_batch(ct_loader *ld, float *const *out, ct_error *err)
{
    if (ld->pf)
        return take_prefetched(ld, out, err);
    int64_t part = 0, rows = fill_batch(ld, out, true, &part, err);
    ld->part_rows = rows > 0 ? part : 0;
    return rows;
}

int64_t ct_loader_next_multi(ct_loader *ld, float *const *x, float *const *y, ct_error *err)
{
    float *out[MAX_MEMBERS] = {0};
    int nx = ld->ds->nx;
    for (int i = 0; i < ld->nm; i++)
        out[i] = i < nx ? x[i] : y ? y[i - nx] : NULL;
    return next_batch(ld, out, err);
}

int64_t ct_loader_next(ct_loader *ld, float *x, float *y, ct_error *err)
{
    float *out[MAX_MEMBERS] = {0};
    out[0] = x;
    if (ld->ds->ny > 0)
        out[ld->ds->nx] = y;
    return next_batch(ld, out, err);
}

/* ---- writing predictions ---- */

/* One float32 dataset per matrix, named names[k] (rows x cols[k], or rows x shapes[k]
 * when shapes is not NULL), built in memory (h5image.h) and written to path. */
static int write_h5_matrices(const char *path, int n, const char *const *names,
                             const float *const *m, int64_t rows, const int64_t *cols,
                             const ct_shape *shapes, ct_error *err)
{
    ct_h5_image img;
    hid_t file = ct_h5_image_create(&img, path);
    if (file < 0) {
        char why[CT_H5_REASON_MAX];
        ct_h5_create_reason(why);
        return ct_err(err, CT_ERR_IO, "cannot create %s%s%s", path, why[0] ? ": " : "", why);
    }
    herr_t rc = 0;
    for (int k = 0; k < n && rc >= 0; k++) {
        hsize_t dims[CT_MAX_DIMS + 1] = {(hsize_t)rows, (hsize_t)cols[k]};
        int rank = 2;
        if (shapes) {
            rank = 1 + shapes[k].ndim;
            for (int a = 0; a < shapes[k].ndim; a++)
                dims[1 + a] = (hsize_t)shapes[k].dim[a];
        }
        hid_t space = H5Screate_simple(rank, dims, NULL), d = H5I_INVALID_HID;
        rc = -1;
        if (space >= 0)
            d = H5Dcreate2(file, names[k], H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                           H5P_DEFAULT);
        if (d >= 0)
            rc = rows * cols[k] == 0 ? 0
                                     : H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m[k]);
        ct_h5_close_dataset(&d);
        ct_h5_close_space(&space);
    }
    if (rc < 0) {
        H5Fclose(file);
        free(img.kept);
        return ct_err(err, CT_ERR_IO, "writing %s failed", path);
    }
    return ct_h5_image_write(&img, file, path, err);
}

/* The matrices side by side: row r holds each one's row r in turn. */
static int write_csv_matrices(const char *path, int n, const float *const *m, int64_t rows,
                              const int64_t *cols, ct_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    for (int64_t r = 0; r < rows; r++)
        for (int k = 0; k < n; k++)
            for (int64_t c = 0; c < cols[k]; c++)
                fprintf(f, "%.9g%c", (double)m[k][r * cols[k] + c],
                        k + 1 < n || c + 1 < cols[k] ? ',' : '\n');
    int bad = ferror(f);
    int saved = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        saved = errno;
    }
    if (bad)
        return ct_err(err, CT_ERR_IO, "writing %s failed: %s", path, strerror(saved));
    return 0;
}

/* ct_write_matrices and ct_write_arrays; what names the contents in messages. */
static int write_arrays(const char *path, int n, const char *const *names,
                        const float *const *m, int64_t rows, const int64_t *cols,
                        const ct_shape *shapes, const char *what, ct_error *err)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    bool h5 = dot && (strcasecmp(dot, ".h5") == 0 || strcasecmp(dot, ".hdf5") == 0);
    if (!dot)
        return ct_err(err, CT_ERR_USAGE,
                      "%s has no file extension; supported ones are .h5, .hdf5 and .csv", path);
    if (!h5 && strcasecmp(dot, ".csv") != 0)
        return ct_err(err, CT_ERR_USAGE,
                      "%s: unsupported extension '%s'; supported ones are .h5, .hdf5 and .csv",
                      path, dot);
    /* Written beside path and renamed over it: never through a link, never half written. */
    if (ct_check_replaceable(path, err) < 0)
        return -1;
    char *tmp = ct_temp_beside(path, err);
    if (!tmp)
        return -1;
    int rc;
    if (h5) {
        ct_h5_quiet q;
        ct_h5_quiet_on(&q);
        rc = write_h5_matrices(tmp, n, names, m, rows, cols, shapes, err);
        ct_h5_quiet_off(&q);
    } else {
        rc = write_csv_matrices(tmp, n, m, rows, cols, err);
    }
    if (rc == 0)
        rc = ct_commit_temp(tmp, path, err);
    if (rc < 0) {
        unlink(tmp);
        ct_err_prefix(err, "saving %s to %s", what, path);
    }
    free(tmp);
    return rc;
}

int ct_write_matrices(const char *path, int n, const char *const *names,
                      const float *const *m, int64_t rows, const int64_t *cols, ct_error *err)
{
    return write_arrays(path, n, names, m, rows, cols, NULL, "predictions", err);
}

int ct_write_arrays(const char *path, int n, const char *const *names, const float *const *m,
                    int64_t rows, const ct_shape *shapes, const char *what, ct_error *err)
{
    int64_t cols[CT_MAX_ARRAYS];
    if (n > CT_MAX_ARRAYS)
        return ct_err(err, CT_ERR_USAGE, "%s: at most %d arrays go in one file, not %d", path,
                      CT_MAX_ARRAYS, n);
    for (int k = 0; k < n; k++)
        cols[k] = ct_shape_size(&shapes[k]);
    return write_arrays(path, n, names, m, rows, cols, shapes, what, err);
}

int ct_write_matrix(const char *path, const float *m, int64_t rows, int64_t cols,
                    ct_error *err)
{
    const char *name = "predictions";
    return ct_write_matrices(path, 1, &name, &m, rows, &cols, err);
}
