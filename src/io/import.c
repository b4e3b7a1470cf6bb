/* import.c - IDX (MNIST-style, optionally gzipped) files into HDF5 datasets, and the
 * output file that every importer writes through (csv_import.c, text_import.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "ctrain.h"
#include "guard.h"
#include "h5util.h"
#include "import.h"

#define IDX_CHUNK (1u << 20)
#define IDX_MAX_DIMS 8
/* IDX data is read in pieces of this many bytes (decompressed). */
#define IDX_PIECE (4u << 20)

/* ---- HDF5 output ---- */


void ct_out_close(ct_out_file *o)
{
    if (o->loc >= 0 && o->loc != o->file)
        H5Gclose(o->loc);
    if (o->file >= 0)
        H5Fclose(o->file);
    o->loc = o->file = H5I_INVALID_HID;
    if (o->tmp) {
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
    }
}

/* Copies the open file `from` into the open file `to`; 0, or -1 with errno set. */
static int copy_fd(int from, int to)
{
    static char buf[1 << 16];
    for (;;) {
        ssize_t n = read(from, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(to, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -1;
            done += w;
        }
    }
}

/* Creates o->tmp beside path: a copy of path when it exists (same permissions), else an
 * empty file. */
static int make_temp(ct_out_file *o, bool exists, mode_t mode, ct_error *err)
{
    if (!(o->tmp = ct_temp_beside(o->path, err)))
        return -1;
    if (!exists)
        return 0;
    int rc = 0, out = open(o->tmp, O_WRONLY | O_TRUNC), in = open(o->path, O_RDONLY | O_NONBLOCK);
    if (out < 0 || in < 0 || fchmod(out, mode & 07777) < 0 || copy_fd(in, out) < 0)
        rc = ct_err(err, CT_ERR_IO, "cannot write %s: copying it to %s failed: %s", o->path,
                    o->tmp, strerror(errno));
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0 && rc == 0)
        rc = ct_err(err, CT_ERR_IO, "cannot write %s: %s", o->tmp, strerror(errno));
    return rc;
}

/* Makes the temporary file durable and puts it in place of the output. */
static int out_commit(ct_out_file *o, ct_error *err)
{
    if (ct_commit_temp(o->tmp, o->path, err) < 0)
        return -1;
    free(o->tmp);
    o->tmp = NULL;
    return 0;
}

static int open_group(ct_out_file *o, ct_error *err)
{
    const char *g = o->group;
    if (!g || !g[0] || strcmp(g, "/") == 0) {
        o->loc = o->file;
        return 0;
    }
    htri_t exists = H5Lexists(o->file, g, H5P_DEFAULT);
    if (exists > 0) {
        hid_t obj = H5Oopen(o->file, g, H5P_DEFAULT);
        if (obj >= 0 && H5Iget_type(obj) == H5I_GROUP) {
            o->loc = obj;
            return 0;
        }
        if (obj >= 0)
            H5Oclose(obj);
        return ct_err(err, CT_ERR_DATA, "%s: '%s' exists and is not a group", o->path, g);
    }
    /* Intermediate groups too, so "mnist/train" works in a fresh file. */
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        o->loc = H5Gcreate2(o->file, g, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (o->loc < 0)
        return ct_err(err, CT_ERR_DATA, "%s: cannot create group '%s'", o->path, g);
    return 0;
}

int ct_out_open(ct_out_file *o, const char *path, const char *group, ct_error *err)
{
    o->path = path;
    o->group = group;
    o->tmp = NULL;
    o->file = o->loc = H5I_INVALID_HID;
    struct stat st;
    if (ct_check_replaceable(path, err) < 0)
        return -1;
    bool exists = stat(path, &st) == 0;
    if (exists) {
        if (!S_ISREG(st.st_mode))
            return ct_check_regular(path, "write", err);
        if (access(path, R_OK | W_OK) < 0)
            return ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        if (H5Fis_hdf5(path) <= 0)
            return ct_h5_open_error(path, err);
    }
    if (make_temp(o, exists, exists ? st.st_mode : 0, err) < 0)
        return -1;
    /* Closing the file closes whatever is still open in it, so a failure cannot leave it
     * half open for HDF5's exit handler. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0)
        o->file = exists ? H5Fopen(o->tmp, H5F_ACC_RDWR, fapl)
                         : H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    char why[CT_H5_REASON_MAX];
    if (o->file < 0 && exists)
        return ct_h5_open_error(path, err);
    if (o->file < 0)
        return ct_err(err, CT_ERR_IO, "cannot create %s: %s", o->tmp, ct_h5_create_reason(why));
    return open_group(o, err);
}

int ct_out_write(ct_out_file *o, const char *name, hid_t file_type, hid_t mem_type, int rank,
                     const hsize_t *dims, const void *data, ct_error *err)
{
    if (H5Lexists(o->loc, name, H5P_DEFAULT) > 0 && H5Ldelete(o->loc, name, H5P_DEFAULT) < 0)
        return ct_err(err, CT_ERR_IO, "%s: cannot replace '%s' in '%s'", o->path, name,
                      o->group ? o->group : "/");
    hid_t space = H5Screate_simple(rank, dims, NULL), d = H5I_INVALID_HID;
    herr_t rc = -1;
    if (space >= 0)
        d = H5Dcreate2(o->loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0)
        rc = H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (d >= 0 && H5Dclose(d) < 0)
        rc = -1;
    if (space >= 0)
        H5Sclose(space);
    if (rc < 0) {
        char why[CT_H5_REASON_MAX];
        ct_h5_failure(why);
        return ct_err(err, CT_ERR_IO, "%s: writing '%s' in '%s' failed%s%s", o->path, name,
                      o->group ? o->group : "/", why[0] ? ": " : "", why);
    }
    return 0;
}

int ct_out_finish(ct_out_file *o, ct_error *err)
{
    int rc = 0;
    if (o->loc >= 0 && o->loc != o->file && H5Gclose(o->loc) < 0)
        rc = -1;
    o->loc = H5I_INVALID_HID;
    if (o->file >= 0 && H5Fclose(o->file) < 0)
        rc = -1;
    o->file = H5I_INVALID_HID;
    if (rc < 0) {
        char why[CT_H5_REASON_MAX];
        ct_h5_failure(why);
        return ct_err(err, CT_ERR_IO, "writing %s failed%s%s", o->path, why[0] ? ": " : "", why);
    }
    return out_commit(o, err);
}

/* ---- IDX ---- */

typedef struct idx {
    int ndims;
    uint32_t dims[IDX_MAX_DIMS];
    uint64_t count;      /* bytes of data: the product of the dims */
    unsigned char *data;
} idx;

static const char *idx_type_name(int t)
{
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown";
    }
}

/* Reads exactly n bytes unless the file ends; returns the count or -1 on a read error. */
static int64_t gz_read_all(gzFile f, void *buf, uint64_t n)
{
    uint64_t got = 0;
    while (got < n) {
        unsigned want = n - got > IDX_CHUNK ? IDX_CHUNK : (unsigned)(n - got);
        int r = gzread(f, (char *)buf + got, want);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (uint64_t)r;
    }
    return (int64_t)got;
}

static int gz_fail(gzFile f, const char *path, ct_error *err)
{
    int code;
    const char *msg = gzerror(f, &code);
    return ct_err(err, CT_ERR_DATA, "%s: %s", path, code == Z_ERRNO ? strerror(errno) : msg);
}

static int idx_header(gzFile f, const char *path, idx *out, ct_error *err)
{
    unsigned char h[4], d[4 * IDX_MAX_DIMS];
    int64_t got = gz_read_all(f, h, 4);
    if (got < 0)
        return gz_fail(f, path, err);
    if (got < 4)
        return ct_err(err, CT_ERR_DATA, "%s is not an IDX file (too short)", path);
    if (h[0] != 0 || h[1] != 0)
        return ct_err(err, CT_ERR_DATA,
                      "%s is not an IDX file (it starts with 0x%02x%02x, not 0x0000)", path,
                      h[0], h[1]);
    if (h[2] != 0x08)
        return ct_err(err, CT_ERR_DATA,
                      "%s: IDX data type 0x%02x (%s) is not supported; only unsigned bytes "
                      "(0x08) are",
                      path, h[2], idx_type_name(h[2]));
    if (h[3] < 1 || h[3] > IDX_MAX_DIMS)
        return ct_err(err, CT_ERR_DATA, "%s: IDX header has %d dimensions; expected 1 to %d",
                      path, h[3], IDX_MAX_DIMS);
    out->ndims = h[3];
    got = gz_read_all(f, d, 4u * (unsigned)out->ndims);
    if (got < 0)
        return gz_fail(f, path, err);
    if (got < 4 * out->ndims)
        return ct_err(err, CT_ERR_DATA, "%s: IDX header is truncated", path);
    out->count = 1;
    for (int i = 0; i < out->ndims; i++) {
        const unsigned char *p = d + 4 * i;
        out->dims[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (out->dims[i] == 0)
            return ct_err(err, CT_ERR_DATA, "%s: IDX dimension %d is 0", path, i);
        if (out->count > UINT64_MAX / 2 / out->dims[i])
            return ct_err(err, CT_ERR_DATA, "%s: IDX header claims an absurd size", path);
        out->count *= out->dims[i];
    }
    return 0;
}

/* Reads the data in chunks, growing the buffer only as bytes actually arrive, so a
 * header that lies about the size never causes a huge allocation. */
static int idx_body(gzFile f, const char *path, idx *out, ct_error *err)
{
    uint64_t cap = 0, got = 0;
    double started = ct_stop_clock();
    char what[4200];
    snprintf(what, sizeof what, "importing %s", path);
    while (got < out->count) {
        if (ct_stop_due(started))
            return ct_stop_error(err, what);
        if (got == cap) {
            uint64_t want = cap ? cap * 2 : IDX_CHUNK;
            if (want > out->count)
                want = out->count;
            unsigned char *p = realloc(out->data, (size_t)want);
            if (!p)
                return ct_err(err, CT_ERR_NOMEM, "%s: out of memory", path);
            out->data = p;
            cap = want;
        }
        /* pieces of at most IDX_PIECE, so a stop and the progress come often */
        uint64_t piece = cap - got < IDX_PIECE ? cap - got : IDX_PIECE;
        int64_t r = gz_read_all(f, out->data + got, piece);
        if (r < 0)
            return gz_fail(f, path, err);
        got += (uint64_t)r;
        if ((uint64_t)r < piece)
            break;
        ct_phase_progress(started, what, (int64_t)got, (int64_t)out->count, "bytes");
    }
    if (got < out->count)
        return ct_err(err, CT_ERR_DATA,
                      "%s: IDX header claims %" PRIu64 " bytes of data but the file holds only "
                      "%" PRIu64,
                      path, out->count, got);
    unsigned char extra;
    int64_t r = gz_read_all(f, &extra, 1);
    if (r < 0)
        return gz_fail(f, path, err);
    if (r > 0)
        return ct_err(err, CT_ERR_DATA,
                      "%s: the file holds more data than its IDX header describes", path);
    return 0;
}

static int idx_read(const char *path, idx *out, ct_error *err)
{
    memset(out, 0, sizeof *out);
    if (ct_check_regular(path, "open", err) < 0)
        return -1;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot open %s: %s", path,
                      errno ? strerror(errno) : "out of memory");
    int rc = idx_header(f, path, out, err);
    if (rc == 0)
        rc = idx_body(f, path, out, err);
    gzclose(f);
    return rc;
}

static int idx_write(const char *labels, const idx *im, const idx *lb,
                     const char *out, const char *group, ct_error *err)
{
    hsize_t dims[IDX_MAX_DIMS + 1];
    int rank = im->ndims;
    for (int i = 0; i < rank; i++)
        dims[i] = im->dims[i];
    if (rank == 3)
        dims[rank++] = 1;   /* (N, H, W) -> (N, H, W, 1): one channel, as Keras expects */
    ct_out_file o;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = ct_out_open(&o, out, group, err);
    if (rc == 0)
        rc = ct_out_write(&o, "images", H5T_STD_U8LE, H5T_NATIVE_UCHAR, rank, dims, im->data,
                          err);
    if (rc == 0 && labels) {
        hsize_t n = lb->dims[0];
        rc = ct_out_write(&o, "labels", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, &n, lb->data, err);
    }
    if (rc == 0)
        rc = ct_out_finish(&o, err);
    ct_out_close(&o);
    ct_h5_quiet_off(&q);
    return rc;
}

int ct_data_import_idx(const char *images, const char *labels, const char *out,
                       const char *group, ct_error *err)
{
    idx im, lb;
    memset(&lb, 0, sizeof lb);
    int rc = idx_read(images, &im, err);
    if (rc == 0 && labels) {
        rc = idx_read(labels, &lb, err);
        if (rc == 0 && lb.ndims != 1)
            rc = ct_err(err, CT_ERR_DATA, "%s: labels must have 1 dimension, found %d", labels,
                        lb.ndims);
        if (rc == 0 && lb.dims[0] != im.dims[0])
            rc = ct_err(err, CT_ERR_DATA, "%s has %" PRIu32 " items but %s has %" PRIu32,
                        images, im.dims[0], labels, lb.dims[0]);
    }
    if (rc == 0)
        rc = idx_write(labels, &im, &lb, out, group, err);
    free(im.data);
    free(lb.data);
    return rc;
}
