/* data.c - HDF5 datasets in, batches out.
 *
 * HDF5's own error printing is switched off around every call into the library so that
 * users see only our messages; the innermost HDF5 reason is appended where it helps. */
#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data.h"
#include "h5util.h"
#include "parallel.h"
#include "rng.h"

#define MAX_LISTED 20
/* Bounds of a listing: a damaged file can link its groups into a cycle, and HDF5 walks
 * each visited path from the top again, so deep paths cost quadratic time. */
#define MAX_VISITED 1000
#define MAX_DEPTH 32
#define VALIDATE_BYTES (16u << 20)
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
    char *label;       /* "file.h5:/train/images" */
} member;

struct ct_dataset {
    char *path;
    hid_t file, lapl;
    member x, y;
    bool has_y;
    int64_t rows;
    double scale;
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

/* "(datasets in the file: a, b, c)" for "no dataset" errors. */
static void list_datasets(hid_t file, char *out, size_t n)
{
    listing l;
    l.text[0] = '\0';
    l.count = l.visited = 0;
    l.truncated = false;
    if (CT_H5_OVISIT(file, list_cb, &l) < 0 && l.count == 0) {
        snprintf(out, n, "(the file's contents cannot be listed)");
        return;
    }
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
    if (check_type(mb, err) < 0 || check_shape(mb, err) < 0 ||
        ct_h5_check_storage(mb->id, mb->label, err) < 0)
        return -1;
    return 0;
}

static void close_member(member *mb)
{
    ct_h5_close_dataset(&mb->id);
    free(mb->label);
    mb->label = NULL;
}

void ct_dataset_close(ct_dataset *ds)
{
    if (!ds)
        return;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    close_member(&ds->x);
    close_member(&ds->y);
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

static int open_all(ct_dataset *ds, const char *x, const char *y, ct_error *err)
{
    if (open_file(ds, err) < 0 || open_member(ds, &ds->x, x, err) < 0)
        return -1;
    ds->rows = (int64_t)ds->x.dims[0];
    if (!y)
        return 0;
    ds->has_y = true;
    if (open_member(ds, &ds->y, y, err) < 0)
        return -1;
    if ((int64_t)ds->y.dims[0] != ds->rows)
        return ct_err(err, CT_ERR_DATA,
                      "%s: x '%s' has %" PRId64 " rows but y '%s' has %" PRId64, ds->path, x,
                      ds->rows, y, (int64_t)ds->y.dims[0]);
    return 0;
}

ct_dataset *ct_dataset_open(const char *path, const char *x, const char *y, double scale,
                            ct_error *err)
{
    ct_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->path = strdup(path))) {
        free(ds);
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ds->file = ds->lapl = ds->x.id = ds->y.id = H5I_INVALID_HID;
    ds->scale = scale;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = open_all(ds, x, y, err);
    ct_h5_quiet_off(&q);
    if (rc < 0) {
        ct_dataset_close(ds);
        return NULL;
    }
    return ds;
}

int64_t ct_dataset_rows(const ct_dataset *ds) { return ds->rows; }

static ct_shape member_shape(const member *mb)
{
    int64_t dim[CT_MAX_DIMS];
    for (int i = 1; i < mb->rank; i++)
        dim[i - 1] = (int64_t)mb->dims[i];
    return ct_shape_make(mb->rank > 0 ? mb->rank - 1 : 0, dim);
}

ct_shape ct_dataset_x_shape(const ct_dataset *ds) { return member_shape(&ds->x); }
ct_shape ct_dataset_y_shape(const ct_dataset *ds) { return member_shape(&ds->y); }
bool ct_dataset_has_y(const ct_dataset *ds) { return ds->has_y; }
bool ct_dataset_y_is_integer(const ct_dataset *ds) { return ds->has_y && ds->y.integer; }
const char *ct_dataset_x_name(const ct_dataset *ds) { return ds->x.label; }
const char *ct_dataset_y_name(const ct_dataset *ds) { return ds->has_y ? ds->y.label : ""; }

/* ---- reading ---- */

/* HDF5 (Debian's build) is not thread-safe: every read, from whichever thread (a
 * loader's reader thread among them), holds this lock. */
static pthread_mutex_t h5_read_lock = PTHREAD_MUTEX_INITIALIZER;

/* Rows [start, start + count) of mb converted by HDF5 to mem_type into out. */
static int read_member(const member *mb, int64_t start, int64_t count, void *out,
                       hid_t mem_type, ct_error *err)
{
    hsize_t off[CT_MAX_DIMS + 1] = {0}, cnt[CT_MAX_DIMS + 1];
    off[0] = (hsize_t)start;
    cnt[0] = (hsize_t)count;
    for (int i = 1; i < mb->rank; i++)
        cnt[i] = mb->dims[i];
    hsize_t n = (hsize_t)(count * mb->size);
    hid_t fs = H5Dget_space(mb->id);
    hid_t ms = H5Screate_simple(1, &n, NULL);
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

int ct_dataset_read(ct_dataset *ds, int64_t start, int64_t count, float *x, float *y,
                    ct_error *err)
{
    if (start < 0 || count < 0 || start > ds->rows - count)
        return ct_err(err, CT_ERR_INTERNAL,
                      "%s: rows %" PRId64 "..%" PRId64 " are out of range (%" PRId64 " rows)",
                      ds->x.label, start, start + count - 1, ds->rows);
    if (count == 0)
        return 0;
    pthread_mutex_lock(&h5_read_lock);
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = read_member(&ds->x, start, count, x, H5T_NATIVE_FLOAT, err);
    if (rc == 0 && y && ds->has_y)
        rc = read_member(&ds->y, start, count, y, H5T_NATIVE_FLOAT, err);
    ct_h5_quiet_off(&q);
    pthread_mutex_unlock(&h5_read_lock);
    if (rc == 0 && ds->scale != 1.0) {
        float s = (float)ds->scale;
        int64_t n = count * ds->x.size;
        for (int64_t i = 0; i < n; i++)
            x[i] *= s;
    }
    return rc;
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

static int check_labels(const ct_dataset *ds, const float *y, int64_t start, int64_t count,
                        int64_t nclasses, ct_error *err)
{
    for (int64_t r = 0; r < count; r++) {
        float v = y[r];
        if (v == floorf(v) && v >= 0 && v < (float)nclasses)
            continue;
        if (v != floorf(v))
            return ct_err(err, CT_ERR_DATA,
                          "%s: row %" PRId64 " has label %g, but class labels must be integers",
                          ds->y.label, start + r, (double)v);
        return ct_err(err, CT_ERR_DATA,
                      "%s: row %" PRId64 " has label %g, but the model's output has %" PRId64
                      " classes (labels must be 0..%" PRId64 ")",
                      ds->y.label, start + r, (double)v, nclasses, nclasses - 1);
    }
    return 0;
}

static int check_block(const ct_dataset *ds, const float *x, const float *y, int64_t start,
                       int64_t count, int64_t nclasses, ct_error *err)
{
    int64_t bad = first_nonfinite(x, count, ds->x.size);
    if (bad >= 0)
        return ct_err(err, CT_ERR_DATA, "%s: row %" PRId64 " holds NaN or Inf", ds->x.label,
                      start + bad);
    if (!y)
        return 0;
    bad = first_nonfinite(y, count, ds->y.size);
    if (bad >= 0)
        return ct_err(err, CT_ERR_DATA, "%s: row %" PRId64 " holds NaN or Inf", ds->y.label,
                      start + bad);
    return nclasses > 0 ? check_labels(ds, y, start, count, nclasses, err) : 0;
}

int ct_dataset_validate(ct_dataset *ds, int64_t nclasses, ct_error *err)
{
    bool use_y = ds->has_y;
    if (use_y && nclasses > 0 && ds->y.size != 1) {
        char buf[256];
        ct_shape s = member_shape(&ds->y);
        return ct_err(err, CT_ERR_DATA,
                      "%s has shape %s per row; class labels need one integer per row",
                      ds->y.label, ct_shape_format_sample(&s, buf, sizeof buf));
    }
    int64_t row_floats = ds->x.size + (use_y ? ds->y.size : 0);
    int64_t block = (int64_t)VALIDATE_BYTES / (row_floats * (int64_t)sizeof(float));
    if (block < 1)
        block = 1;
    if (block > ds->rows)
        block = ds->rows;
    float *x = malloc((size_t)(block * ds->x.size) * sizeof *x);
    float *y = use_y ? malloc((size_t)(block * ds->y.size) * sizeof *y) : NULL;
    int rc = 0;
    if (!x || (use_y && !y))
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory validating %s", ds->x.label);
    for (int64_t at = 0; rc == 0 && at < ds->rows; at += block) {
        int64_t count = ds->rows - at < block ? ds->rows - at : block;
        rc = ct_dataset_read(ds, at, count, x, y, err);
        if (rc == 0)
            rc = check_block(ds, x, y, at, count, nclasses, err);
    }
    free(x);
    free(y);
    return rc;
}

/* ---- loader ---- */

/* How a loader keeps x in memory. Integer data of one or two bytes (images, mostly) stays
 * in its stored type, a quarter or half of float32, and is converted to float (times the
 * scale) only as each batch is assembled: (float)v * scale is exactly what reading it as
 * float and scaling gives, so results do not depend on the storage. */
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

/* The reader thread's hand-over: idle, a batch wanted (the thread owns the loader's
 * cursor), or a batch ready in px/py. */
typedef enum { PF_IDLE, PF_WANTED, PF_READY } pf_state;

typedef struct prefetch {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pf_state state;
    bool quit;
    float *px, *py;
    int64_t rows;
    ct_error err;
} prefetch;

typedef struct pick {
    int64_t row, slot;
} pick;

struct ct_loader {
    ct_dataset *ds;
    int64_t *rows, n, batch;
    bool shuffle, streaming;
    uint64_t seed;
    int64_t epoch;
    int64_t xsize, ysize;       /* ysize 0 without y */
    store_kind xstore;          /* x's in-memory type */
    size_t xrow;                /* bytes of one stored x row */
    int64_t *order;             /* memory mode: list positions in epoch order (n) */
    unsigned char *cx;          /* memory mode: the subset's x, in list order */
    float *cy;                  /* memory mode: the subset's y */
    int64_t pos;                /* next position in epoch order */
    int64_t block, nblocks;     /* streaming: list entries per block */
    int64_t *border, *bperm;    /* streaming: block order, order within the loaded block */
    int64_t cur, blen, bpos;    /* index into border of the loaded block (-1 none) */
    unsigned char *bx;          /* streaming: the loaded block */
    float *by;
    pick *picks;                /* scratch for sorted reads */
    int64_t run_rows;           /* scratch rows for one contiguous read */
    unsigned char *sx;
    float *sy;
    prefetch *pf;               /* NULL: batches are assembled on the caller's thread */
};

/* Rows [start, start + count) in the loader's storage: x raw (no scale), y as float. */
static int read_stored(ct_loader *ld, int64_t start, int64_t count, unsigned char *x, float *y,
                       ct_error *err)
{
    ct_dataset *ds = ld->ds;
    pthread_mutex_lock(&h5_read_lock);
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = read_member(&ds->x, start, count, x, store_type(ld->xstore), err);
    if (rc == 0 && y)
        rc = read_member(&ds->y, start, count, y, H5T_NATIVE_FLOAT, err);
    ct_h5_quiet_off(&q);
    pthread_mutex_unlock(&h5_read_lock);
    return rc;
}

static int pick_cmp(const void *a, const void *b)
{
    const pick *p = a, *q = b;
    if (p->row != q->row)
        return p->row < q->row ? -1 : 1;
    return (p->slot > q->slot) - (p->slot < q->slot);
}

static int64_t stored_row_bytes(const ct_loader *ld)
{
    return (int64_t)ld->xrow + ld->ysize * (int64_t)sizeof(float);
}

/* End (exclusive) of the run of picks starting at i that one contiguous read serves:
 * small gaps are read through rather than paying for another H5Dread. */
static int64_t run_end(const ct_loader *ld, int64_t i, int64_t m)
{
    int64_t gap = (int64_t)GAP_BYTES / stored_row_bytes(ld);
    int64_t first = ld->picks[i].row, last = first, j = i + 1;
    while (j < m && ld->picks[j].row - last - 1 <= gap
           && ld->picks[j].row - first + 1 <= ld->run_rows) {
        last = ld->picks[j].row;
        j++;
    }
    return j;
}

/* Reads dataset rows rows[0..m) into slots 0..m) of dx/dy, sorted into contiguous runs. */
static int gather_rows(ct_loader *ld, const int64_t *rows, int64_t m, unsigned char *dx,
                       float *dy, ct_error *err)
{
    for (int64_t i = 0; i < m; i++) {
        ld->picks[i].row = rows[i];
        ld->picks[i].slot = i;
    }
    qsort(ld->picks, (size_t)m, sizeof *ld->picks, pick_cmp);
    for (int64_t i = 0; i < m;) {
        int64_t j = run_end(ld, i, m);
        int64_t first = ld->picks[i].row, count = ld->picks[j - 1].row - first + 1;
        if (read_stored(ld, first, count, ld->sx, ld->ysize ? ld->sy : NULL, err) < 0)
            return -1;
        for (; i < j; i++) {
            int64_t off = ld->picks[i].row - first, slot = ld->picks[i].slot;
            memcpy(dx + (size_t)slot * ld->xrow, ld->sx + (size_t)off * ld->xrow, ld->xrow);
            if (ld->ysize)
                memcpy(dy + slot * ld->ysize, ld->sy + off * ld->ysize,
                       (size_t)ld->ysize * sizeof *dy);
        }
    }
    return 0;
}

static void stop_prefetch(ct_loader *ld);

void ct_loader_free(ct_loader *ld)
{
    if (!ld)
        return;
    stop_prefetch(ld);
    free(ld->rows);
    free(ld->order);
    free(ld->cx);
    free(ld->cy);
    free(ld->border);
    free(ld->bperm);
    free(ld->bx);
    free(ld->by);
    free(ld->picks);
    free(ld->sx);
    free(ld->sy);
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
    if (size == 0)
        return NULL;
    return malloc((size_t)(rows > 0 ? rows : 1) * (size_t)size * sizeof(float));
}

static unsigned char *alloc_x(const ct_loader *ld, int64_t rows)
{
    return malloc((size_t)(rows > 0 ? rows : 1) * (ld->xrow > 0 ? ld->xrow : 1));
}

/* Allocates the sorted-read scratch for up to m rows per gather. */
static int alloc_scratch(ct_loader *ld, int64_t m, ct_error *err)
{
    ld->run_rows = (int64_t)RUN_BYTES / stored_row_bytes(ld);
    if (ld->run_rows < 1)
        ld->run_rows = 1;
    ld->picks = malloc((size_t)(m > 0 ? m : 1) * sizeof *ld->picks);
    ld->sx = alloc_x(ld, ld->run_rows);
    ld->sy = alloc_floats(ld->run_rows, ld->ysize);
    if (!ld->picks || !ld->sx || (ld->ysize && !ld->sy))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    return 0;
}

static int setup_memory(ct_loader *ld, ct_error *err)
{
    ld->order = malloc((size_t)(ld->n > 0 ? ld->n : 1) * sizeof *ld->order);
    ld->cx = alloc_x(ld, ld->n);
    ld->cy = alloc_floats(ld->n, ld->ysize);
    if (!ld->order || !ld->cx || (ld->ysize && !ld->cy))
        return ct_err(err, CT_ERR_NOMEM, "out of memory loading %s (%" PRId64 " rows)",
                      ct_dataset_x_name(ld->ds), ld->n);
    if (alloc_scratch(ld, ld->n, err) < 0
        || gather_rows(ld, ld->rows, ld->n, ld->cx, ld->cy, err) < 0)
        return -1;
    /* The sorted-read scratch is only needed once in this mode. */
    free(ld->picks);
    free(ld->sx);
    free(ld->sy);
    ld->picks = NULL;
    ld->sx = NULL;
    ld->sy = NULL;
    return 0;
}

static int setup_streaming(ct_loader *ld, size_t memory_limit, ct_error *err)
{
    size_t budget = memory_limit < STREAM_BYTES ? memory_limit : STREAM_BYTES;
    ld->block = (int64_t)(budget / (size_t)stored_row_bytes(ld));
    if (ld->block < ld->batch)
        ld->block = ld->batch;
    if (ld->block > ld->n)
        ld->block = ld->n;
    ld->nblocks = (ld->n + ld->block - 1) / ld->block;
    ld->border = malloc((size_t)ld->nblocks * sizeof *ld->border);
    ld->bperm = malloc((size_t)ld->block * sizeof *ld->bperm);
    ld->bx = alloc_x(ld, ld->block);
    ld->by = alloc_floats(ld->block, ld->ysize);
    if (!ld->border || !ld->bperm || !ld->bx || (ld->ysize && !ld->by))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    return alloc_scratch(ld, ld->block, err);
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
    ld->shuffle = shuffle;
    ld->seed = seed;
    ld->xsize = ds->x.size;
    ld->ysize = ds->has_y ? ds->y.size : 0;
    ld->xstore = store_for(&ds->x);
    ld->xrow = (size_t)ld->xsize * store_bytes(ld->xstore);
    int rc = batch > 0 ? copy_rows(ld, rows, n, err)
                       : ct_err(err, CT_ERR_INTERNAL, "batch size %" PRId64 " must be positive",
                                batch);
    if (rc == 0) {
        double bytes = (double)ld->n * (double)stored_row_bytes(ld);
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

int64_t ct_loader_rows(const ct_loader *ld) { return ld->n; }
int64_t ct_loader_batches(const ct_loader *ld) { return (ld->n + ld->batch - 1) / ld->batch; }

size_t ct_loader_memory(const ct_loader *ld)
{
    int64_t rows = ld->streaming ? ld->block : ld->n;
    return (size_t)rows * (size_t)stored_row_bytes(ld);
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
    return gather_rows(ld, ld->rows + start, ld->blen, ld->bx, ld->by, err);
}

/* x row `at` of the batch = stored row `slot` converted to float and scaled. */
static void convert_row(const ct_loader *ld, const unsigned char *sx, int64_t slot, float *x,
                        int64_t at)
{
    const int64_t n = ld->xsize;
    const float s = (float)ld->ds->scale;
    const void *src = sx + (size_t)slot * ld->xrow;
    float *restrict d = x + at * n;
    switch (ld->xstore) {
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
    if (ld->ds->scale != 1.0)
        for (int64_t i = 0; i < n; i++)
            d[i] *= s;
}

static void copy_row(const ct_loader *ld, const unsigned char *sx, const float *sy, int64_t slot,
                     float *x, float *y, int64_t at)
{
    convert_row(ld, sx, slot, x, at);
    if (y && ld->ysize)
        memcpy(y + at * ld->ysize, sy + slot * ld->ysize, (size_t)ld->ysize * sizeof *y);
}

static int64_t next_streaming(ct_loader *ld, float *x, float *y, ct_error *err)
{
    int64_t filled = 0;
    while (filled < ld->batch && ld->pos < ld->n) {
        if (ld->bpos == ld->blen && load_block(ld, err) < 0)
            return -1;
        for (; filled < ld->batch && ld->bpos < ld->blen; filled++, ld->bpos++, ld->pos++)
            copy_row(ld, ld->bx, ld->by, ld->bperm[ld->bpos], x, y, filled);
    }
    return filled;
}

/* The next batch, assembled on the calling thread. */
typedef struct gather_job {
    const ct_loader *ld;
    float *x, *y;
} gather_job;

static void gather_task(void *ctx, int64_t b, int64_t e)
{
    const gather_job *j = ctx;
    for (int64_t i = b; i < e; i++)
        copy_row(j->ld, j->ld->cx, j->ld->cy, j->ld->order[j->ld->pos + i], j->x, j->y, i);
}

/* The next batch, assembled on the calling thread; in memory mode the rows are converted
 * on the worker threads when the caller may use them (not from the reader thread). */
static int64_t fill_batch(ct_loader *ld, float *x, float *y, bool threads, ct_error *err)
{
    if (ld->streaming)
        return next_streaming(ld, x, y, err);
    int64_t k = ld->n - ld->pos < ld->batch ? ld->n - ld->pos : ld->batch;
    gather_job j = {ld, x, y};
    if (threads)
        ct_parallel_for(k, 16, gather_task, &j);
    else
        gather_task(&j, 0, k);
    ld->pos += k;
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
        int64_t rows = fill_batch(ld, pf->px, pf->py, false, &e);
        pthread_mutex_lock(&pf->mu);
        pf->rows = rows;
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
    free(pf->px);
    free(pf->py);
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
    pf->px = alloc_floats(ld->batch, ld->xsize);
    pf->py = alloc_floats(ld->batch, ld->ysize);
    if (!pf->px || (ld->ysize && !pf->py)) {
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

int64_t ct_loader_next(ct_loader *ld, float *x, float *y, ct_error *err)
{
    prefetch *pf = ld->pf;
    if (!pf)
        return fill_batch(ld, x, y, true, err);
    pthread_mutex_lock(&pf->mu);
    wait_settled(pf);
    int64_t rows = 0;
    if (pf->state == PF_READY) {
        rows = pf->rows;
        if (rows < 0)
            *err = pf->err;
        if (rows > 0) {
            memcpy(x, pf->px, (size_t)(rows * ld->xsize) * sizeof *x);
            if (y && ld->ysize)
                memcpy(y, pf->py, (size_t)(rows * ld->ysize) * sizeof *y);
        }
    }
    if (rows > 0)
        want_next(ld);
    else
        pf->state = PF_IDLE;
    pthread_mutex_unlock(&pf->mu);
    return rows;
}

/* ---- writing predictions ---- */

static int write_h5_matrix(const char *path, const float *m, int64_t rows, int64_t cols,
                           ct_error *err)
{
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        char why[CT_H5_REASON_MAX];
        ct_h5_create_reason(why);
        return ct_err(err, CT_ERR_IO, "cannot create %s%s%s", path, why[0] ? ": " : "", why);
    }
    hid_t space = H5Screate_simple(2, dims, NULL), d = H5I_INVALID_HID;
    herr_t rc = -1;
    if (space >= 0)
        d = H5Dcreate2(file, "predictions", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT);
    if (d >= 0)
        rc = rows * cols == 0 ? 0 : H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m);
    ct_h5_close_dataset(&d);
    ct_h5_close_space(&space);
    if (H5Fclose(file) < 0)
        rc = -1;
    return rc < 0 ? ct_err(err, CT_ERR_IO, "writing %s failed", path) : 0;
}

static int write_csv_matrix(const char *path, const float *m, int64_t rows, int64_t cols,
                            ct_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            fprintf(f, "%.9g%c", (double)m[r * cols + c], c + 1 < cols ? ',' : '\n');
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

int ct_write_matrix(const char *path, const float *m, int64_t rows, int64_t cols,
                    ct_error *err)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    if (dot && (strcasecmp(dot, ".h5") == 0 || strcasecmp(dot, ".hdf5") == 0)) {
        ct_h5_quiet q;
        ct_h5_quiet_on(&q);
        int rc = write_h5_matrix(path, m, rows, cols, err);
        ct_h5_quiet_off(&q);
        return rc;
    }
    if (dot && strcasecmp(dot, ".csv") == 0)
        return write_csv_matrix(path, m, rows, cols, err);
    if (!dot)
        return ct_err(err, CT_ERR_USAGE,
                      "%s has no file extension; supported ones are .h5, .hdf5 and .csv", path);
    return ct_err(err, CT_ERR_USAGE,
                  "%s: unsupported extension '%s'; supported ones are .h5, .hdf5 and .csv",
                  path, dot);
}
