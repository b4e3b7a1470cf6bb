/* h5util.c - HDF5 error handling and handle closing shared by the HDF5 code. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guard.h"
#include "h5util.h"

/* The first failure of the current quiet stretch; see ct_h5_failure. */
static _Thread_local char first_failure[CT_H5_REASON_MAX];

/* Keeps the system's message out of a description such as HDF5's "file write failed: ...,
 * errno = 28, error message = 'No space left on device', ...". */
static bool system_message(const char *desc, char *out, size_t n)
{
    static const char key[] = "error message = '";
    const char *m = strstr(desc, key);
    if (!m)
        return false;
    m += strlen(key);
    size_t len = strcspn(m, "'");
    snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), m);
    return true;
}

typedef struct failure_walk {
    char inner[CT_H5_REASON_MAX], sys[CT_H5_REASON_MAX];
} failure_walk;

static herr_t failure_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    failure_walk *w = data;
    if (!e->desc || !e->desc[0])
        return 0;
    snprintf(w->inner, sizeof w->inner, "%s", e->desc);
    if (!w->sys[0])
        system_message(e->desc, w->sys, sizeof w->sys);
    return 0;
}

/* Installed instead of HDF5's printer: remembers why the first failing call failed. */
static herr_t record_failure(hid_t stack, void *data)
{
    (void)data;
    if (first_failure[0])
        return 0;
    failure_walk w;
    w.inner[0] = w.sys[0] = '\0';
    H5Ewalk2(stack, H5E_WALK_DOWNWARD, failure_cb, &w);
    snprintf(first_failure, sizeof first_failure, "%s", w.sys[0] ? w.sys : w.inner);
    return 0;
}

void ct_h5_quiet_on(ct_h5_quiet *q)
{
    if (H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data) < 0) {
        q->fn = NULL;
        q->data = NULL;
    }
    if (q->fn != record_failure)
        first_failure[0] = '\0';
    H5Eset_auto2(H5E_DEFAULT, record_failure, NULL);
}

void ct_h5_quiet_off(const ct_h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

const char *ct_h5_failure(char buf[CT_H5_REASON_MAX])
{
    snprintf(buf, CT_H5_REASON_MAX, "%s", first_failure);
    return buf;
}

/* Walking downward, the last description written is the innermost one. */
static herr_t last_error_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    if (e->desc && e->desc[0])
        snprintf((char *)data, CT_H5_REASON_MAX, "%s", e->desc);
    return 0;
}

const char *ct_h5_reason(char buf[CT_H5_REASON_MAX])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, last_error_cb, buf);
    return buf;
}

const char *ct_h5_create_reason(char buf[CT_H5_REASON_MAX])
{
    char sys[CT_H5_REASON_MAX];
    if (system_message(ct_h5_reason(buf), sys, sizeof sys))
        snprintf(buf, CT_H5_REASON_MAX, "%s", sys);
    return buf;
}

int ct_h5_check_path(const char *path, ct_error *err)
{
    return ct_check_regular(path, "open", err);
}

/* A lock held by another program is not damage, so the message says which it is. */
int ct_h5_open_error(const char *path, ct_error *err)
{
    char why[CT_H5_REASON_MAX];
    ct_h5_reason(why);
    if (strstr(why, "unable to lock"))
        return ct_err(err, CT_ERR_IO,
                      "cannot open %s: HDF5 could not lock it (%s); another program may be "
                      "writing it, or the file system has no locking (then set "
                      "HDF5_USE_FILE_LOCKING=FALSE)", path, why);
    /* A Keras 3 .keras file is a zip; saying "damaged" would send the user looking for a
     * broken download instead of the command that reads it. */
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
    if (f)
        fclose(f);
    if (got == 4 && memcmp(magic, "PK\x03\x04", 4) == 0)
        return ct_err(err, CT_ERR_DATA, "%s is a zip archive (a Keras 3 .keras file?), not an "
                      "HDF5 file; import a .keras model with `ctrain import %s -o DIR`", path,
                      path);
    return ct_err(err, CT_ERR_DATA, "%s is not an HDF5 file or is damaged", path);
}

/* HDF5 1.10 copies a compact dataset's bytes out of the object header without checking
 * that they cover the shape and type, so a damaged file would overrun its buffer. */
static int check_compact(hid_t dataset, const char *label, ct_error *err)
{
    hid_t type = H5Dget_type(dataset), space = H5Dget_space(dataset);
    size_t width = type >= 0 ? H5Tget_size(type) : 0;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    hsize_t have = H5Dget_storage_size(dataset);
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    if (width == 0 || n < 0 || (hsize_t)n > have / width)
        return ct_err(err, CT_ERR_DATA, "%s: its compact storage holds %llu bytes, fewer than "
                      "its shape and type need; the file is damaged", label,
                      (unsigned long long)have);
    return 0;
}

/* HDF5 1.10 trusts a number type's layout when converting: a 2-byte integer with 1023
 * bits of precision smashes H5T__bit_get_d's stack, and a 4-byte float grown to 2490372
 * bytes makes H5Dread copy that much out of the 4-byte fill value. So only the layouts
 * real files use pass: 1, 2, 4 or 8-byte integers and 2, 4 or 8-byte floats using every
 * bit, or 16-byte (long double) floats; a float's fields must lie inside its precision. */
static bool number_type_ok(hid_t type)
{
    H5T_class_t c = H5Tget_class(type);
    if (c != H5T_INTEGER && c != H5T_FLOAT)
        return true;
    size_t size = H5Tget_size(type), prec = H5Tget_precision(type);
    int off = H5Tget_offset(type);
    bool plain = off == 0 && prec == 8 * size;
    if (c == H5T_INTEGER)
        return plain && (size == 1 || size == 2 || size == 4 || size == 8);
    bool sized = plain && (size == 2 || size == 4 || size == 8);
    bool wide = size == 16 && off == 0 && prec <= 128;
    size_t spos, epos, esize, mpos, msize;
    return (sized || wide) && H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) >= 0
           && spos < prec && esize >= 1 && esize <= 64 && epos + esize <= prec
           && mpos + msize <= prec;
}

int ct_h5_check_layout(hid_t dataset, const char *label, ct_error *err)
{
    hid_t dcpl = H5Dget_create_plist(dataset);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (layout == H5D_VIRTUAL)
        return ct_err(err, CT_ERR_DATA, "%s is a virtual dataset (its data is mapped from other "
                      "datasets or files); ctrain reads only data stored inside the HDF5 file",
                      label);
    if (layout < 0 || layout >= H5D_NLAYOUTS)
        return ct_err(err, CT_ERR_DATA, "%s: cannot read how its data is stored", label);
    return 0;
}

/* The dataset's shape and largest shape, its values, and bytes of one value; false when
 * unreadable. */
static bool extent_of(hid_t dataset, int *rank, hsize_t *dims, hsize_t *maxdims,
                      hsize_t *npoints, size_t *width)
{
    hid_t type = H5Dget_type(dataset), space = H5Dget_space(dataset);
    *width = type >= 0 ? H5Tget_size(type) : 0;
    *rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    bool ok = *width > 0 && *rank >= 0 && *rank <= H5S_MAX_RANK
              && H5Sget_simple_extent_dims(space, dims, maxdims) == *rank;
    hssize_t n = ok ? H5Sget_simple_extent_npoints(space) : -1;
    *npoints = n >= 0 ? (hsize_t)n : 0;
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    return ok && n >= 0;
}

/* A contiguous dataset whose bytes were never written, or a chunked one missing chunks,
 * holds only fill values where the data should be: a file that declares 2^40 rows in a few
 * kilobytes would be read (and checked) for hours. */
static int check_allocated(hid_t dataset, hid_t dcpl, H5D_layout_t layout, const char *label,
                           ct_error *err)
{
    int rank;
    hsize_t dims[H5S_MAX_RANK], maxdims[H5S_MAX_RANK], npoints;
    size_t width;
    if (!extent_of(dataset, &rank, dims, maxdims, &npoints, &width))
        return ct_err(err, CT_ERR_DATA, "%s: cannot read its shape and type", label);
    if (npoints == 0)
        return 0;
    if (layout == H5D_CONTIGUOUS) {
        hsize_t have = H5Dget_storage_size(dataset);
        if (npoints > have / width)
            return ct_err(err, CT_ERR_DATA, "%s: the file stores %llu bytes of its data but its "
                          "shape needs %.0f; the rest was never written (only fill values)",
                          label, (unsigned long long)have, (double)npoints * (double)width);
        return 0;
    }
    if (layout != H5D_CHUNKED)
        return 0;
    hsize_t chunk[H5S_MAX_RANK];
    if (H5Pget_chunk(dcpl, rank, chunk) != rank)
        return ct_err(err, CT_ERR_DATA, "%s: cannot read its chunk shape", label);
    double want = 1;
    for (int i = 0; i < rank; i++) {
        if (chunk[i] == 0)
            return ct_err(err, CT_ERR_DATA, "%s: its chunk shape has a zero axis; the file is "
                          "damaged", label);
        /* HDF5 never writes a chunk longer than a fixed axis; reading one overruns */
        if (maxdims[i] != H5S_UNLIMITED && chunk[i] > maxdims[i])
            return ct_err(err, CT_ERR_DATA, "%s: its chunks are %llu long on axis %d, which "
                          "holds at most %llu; the file is damaged", label,
                          (unsigned long long)chunk[i], i, (unsigned long long)maxdims[i]);
        want *= (double)((dims[i] + chunk[i] - 1) / chunk[i]);
    }
#if H5_VERSION_GE(1, 10, 5)
    hsize_t have = 0;
    hid_t space = H5Dget_space(dataset);
    herr_t counted = space >= 0 ? H5Dget_num_chunks(dataset, space, &have) : -1;
    if (space >= 0)
        H5Sclose(space);
    if (counted < 0)
        return ct_err(err, CT_ERR_DATA, "%s: cannot count its stored chunks", label);
    if ((double)have < want)
        return ct_err(err, CT_ERR_DATA, "%s: the file stores %llu of its %.0f chunks; the rest "
                      "were never written (only fill values)", label, (unsigned long long)have,
                      want);
#else
    H5D_space_status_t status;
    if (H5Dget_space_status(dataset, &status) < 0 || status == H5D_SPACE_STATUS_NOT_ALLOCATED)
        return ct_err(err, CT_ERR_DATA, "%s: its data was never written (only fill values)",
                      label);
#endif
    return 0;
}

int ct_h5_check_storage(hid_t dataset, const char *label, ct_error *err)
{
    if (ct_h5_check_layout(dataset, label, err) < 0)
        return -1;
    hid_t type = H5Dget_type(dataset);
    bool type_ok = type >= 0 && number_type_ok(type);
    if (type >= 0)
        H5Tclose(type);
    if (!type_ok)
        return ct_err(err, CT_ERR_DATA, "%s: its number type has a layout no real file uses "
                      "(bits past its size, or an odd size); the file is damaged", label);
    hid_t dcpl = H5Dget_create_plist(dataset);
    if (dcpl < 0)
        return ct_err(err, CT_ERR_DATA, "%s: cannot read how its data is stored", label);
    int count = H5Pget_external_count(dcpl);
    char name[CT_H5_REASON_MAX] = "";
    off_t offset;
    hsize_t size;
    if (count > 0 && H5Pget_external(dcpl, 0, sizeof name, name, &offset, &size) < 0)
        name[0] = '\0';
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int rc = 0;
    if (count < 0)
        rc = ct_err(err, CT_ERR_DATA, "%s: cannot read how its data is stored", label);
    else if (count > 0)
        rc = ct_err(err, CT_ERR_DATA, "%s keeps its data in the external file '%s'%s; ctrain "
                    "reads only data stored inside the HDF5 file", label, name,
                    count > 1 ? " and others" : "");
    else if (layout == H5D_COMPACT)
        rc = check_compact(dataset, label, err);
    else
        rc = check_allocated(dataset, dcpl, layout, label, err);
    H5Pclose(dcpl);
    return rc;
}

/* "target.h5:/object" of an external link, for messages. */
static void elink_target(hid_t loc, const char *link, size_t size, char *out, size_t n)
{
    snprintf(out, n, "another file");
    char *val = size ? malloc(size) : NULL;
    const char *file = NULL, *obj = NULL;
    unsigned flags;
    if (val && H5Lget_val(loc, link, val, size, H5P_DEFAULT) >= 0
        && H5Lunpack_elink_val(val, size, &flags, &file, &obj) >= 0 && file && obj)
        snprintf(out, n, "%s:%s", file, obj);
    free(val);
}

/* External link traversal callback that always refuses. */
static herr_t deny_elink(const char *parent_file, const char *parent_group,
                         const char *child_file, const char *child_object, unsigned *acc_flags,
                         hid_t fapl, void *data)
{
    (void)parent_file, (void)parent_group, (void)child_file, (void)child_object;
    (void)acc_flags, (void)fapl, (void)data;
    return -1;
}

hid_t ct_h5_local_access(hid_t cls)
{
    hid_t lapl = H5Pcreate(cls);
    if (lapl >= 0 && H5Pset_elink_cb(lapl, deny_elink, NULL) < 0) {
        H5Pclose(lapl);
        return H5I_INVALID_HID;
    }
    return lapl;
}

bool ct_h5_has_object(const char *path, const char *name)
{
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    bool missing = true;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
        ct_error ignored = {0};
        if (ct_h5_check_links(f, name, path, &missing, &ignored) < 0)
            missing = true;
        H5Fclose(f);
    }
    ct_h5_quiet_off(&q);
    return !missing;
}

int ct_h5_check_links(hid_t loc, const char *name, const char *path, bool *missing,
                      ct_error *err)
{
    char prefix[1024];
    size_t len = strlen(name);
    if (missing)
        *missing = false;
    if (len >= sizeof prefix)
        return ct_err(err, CT_ERR_DATA, "%s: the name '%.64s...' is too long", path, name);
    for (size_t i = 1; i <= len; i++) {
        if (i < len && name[i] != '/')
            continue;
        memcpy(prefix, name, i);
        prefix[i] = '\0';
        if (prefix[i - 1] == '/')
            continue;
        ct_h5_linfo info;
        if (H5Lexists(loc, prefix, H5P_DEFAULT) <= 0
            || CT_H5_LGET_INFO(loc, prefix, &info, H5P_DEFAULT) < 0) {
            if (missing)
                *missing = true;
            return 0;
        }
        if (info.type == H5L_TYPE_EXTERNAL) {
            char target[1200];
            elink_target(loc, prefix, info.u.val_size, target, sizeof target);
            return ct_err(err, CT_ERR_DATA, "%s: '%s' is an external link to %s; ctrain reads "
                          "only data stored inside the file", path, prefix, target);
        }
    }
    return 0;
}

void ct_h5_close_dataset(hid_t *id)
{
    if (*id >= 0)
        H5Dclose(*id);
    *id = H5I_INVALID_HID;
}

void ct_h5_close_space(hid_t *id)
{
    if (*id >= 0)
        H5Sclose(*id);
    *id = H5I_INVALID_HID;
}

void ct_h5_close_group(hid_t *id)
{
    if (*id >= 0)
        H5Gclose(*id);
    *id = H5I_INVALID_HID;
}

static pthread_mutex_t h5_lock = PTHREAD_MUTEX_INITIALIZER;

void ct_h5_lock(void) { pthread_mutex_lock(&h5_lock); }
void ct_h5_unlock(void) { pthread_mutex_unlock(&h5_lock); }
void ct_h5_lock_reset(void) { pthread_mutex_init(&h5_lock, NULL); }
