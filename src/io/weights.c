/* weights.c - model weights in Keras's legacy HDF5 layout, and the model_config JSON. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "guard.h"
#include "h5image.h"
#include "h5util.h"
#include "isolate.h"
#include "keras_io.h"
#include "weights.h"

/* Keras splits attributes over 64 KiB into name0, name1, ...; we read up to this many. */
#define MAX_ATTR_PARTS 1000

/* Host copies of parameters on a non-CPU backend; NULL be means host memory. */
static bool on_host(const ct_model *m) { return !m->be || m->be->device == CT_DEVICE_CPU; }

/* An input/output error ending in HDF5's reason for the first failure, when it gave one
 * ("No space left on device"). */
static int h5_io_err(ct_error *err, const char *what, const char *file)
{
    char why[CT_H5_REASON_MAX];
    ct_h5_failure(why);
    return ct_err(err, CT_ERR_IO, "%s%s%s%s%s", what, file ? " " : "", file ? file : "",
                  why[0] ? ": " : "", why);
}

/* ---- string attributes ---- */

/* A fixed-length, NUL-terminated UTF-8 string type of `size` bytes. */
static hid_t str_type(size_t size)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return t;
    if (H5Tset_size(t, size) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0
        || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* Writes n strings as a fixed-length string array attribute (n == 0: an empty array). */
static int write_strings(hid_t loc, const char *name, const char *const *s, size_t n)
{
    size_t width = 1;
    for (size_t i = 0; i < n; i++)
        if (strlen(s[i]) + 1 > width)
            width = strlen(s[i]) + 1;
    char *buf = calloc(n ? n : 1, width);
    if (!buf)
        return -1;
    for (size_t i = 0; i < n; i++)
        memcpy(buf + i * width, s[i], strlen(s[i]));
    hsize_t dims[1] = {n};
    hid_t t = str_type(width), space = H5Screate_simple(1, dims, NULL), a = H5I_INVALID_HID;
    int rc = -1;
    if (t >= 0 && space >= 0)
        a = H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0)
        rc = n == 0 || H5Awrite(a, t, buf) >= 0 ? 0 : -1;
    if (a >= 0 && H5Aclose(a) < 0)
        rc = -1;
    if (space >= 0)
        H5Sclose(space);
    if (t >= 0)
        H5Tclose(t);
    free(buf);
    return rc;
}

/* A scalar fixed-length string attribute of exactly strlen + 1 bytes. */
static int write_string(hid_t loc, const char *name, const char *text)
{
    hid_t t = str_type(strlen(text) + 1), space = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    int rc = -1;
    if (t >= 0 && space >= 0)
        a = H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0)
        rc = H5Awrite(a, t, text) >= 0 ? 0 : -1;
    if (a >= 0 && H5Aclose(a) < 0)
        rc = -1;
    if (space >= 0)
        H5Sclose(space);
    if (t >= 0)
        H5Tclose(t);
    return rc;
}

typedef struct strlist {
    char **s;
    size_t n;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    l->s = NULL;
    l->n = 0;
}

static int strlist_add(strlist *l, const char *s, size_t len)
{
    char **p = realloc(l->s, (l->n + 1) * sizeof *p);
    if (!p)
        return -1;
    l->s = p;
    if (!(p[l->n] = strndup(s, len)))
        return -1;
    l->n++;
    return 0;
}

/* Bounds on name attributes: a damaged file may declare billions of names, or names of
 * any length, and HDF5 reads whatever the attribute declares. */
#define MAX_NAMES 100000         /* strings in one attribute and in all its parts together */
#define MAX_NAME_BYTES 65536     /* bytes of one name (a fixed-length string's width) */
#define VLEN_SECONDS 5.0         /* for reading one variable-length name attribute */
#define OPEN_SECONDS 5.0         /* for opening the file and reading its names */
#define VLEN_MAX_BYTES (64u << 20) /* its names together, with their lengths */

/* Where a name attribute is, for messages: "file.h5: attribute 'layer_names'" or "...
 * attribute 'weight_names' of layer 'dense'". */
typedef struct attr_place {
    const char *path;
    const char *layer;           /* NULL for layer_names */
} attr_place;

static int attr_refuse(const attr_place *at, const char *attr, ct_error *err, const char *why)
{
    if (at->layer)
        return ct_err(err, CT_ERR_DATA, "%s: attribute '%s' of layer '%s' %s; the file is "
                      "damaged or was not written by Keras", at->path, attr, at->layer, why);
    return ct_err(err, CT_ERR_DATA, "%s: attribute '%s' %s; the file is damaged or was not "
                  "written by Keras", at->path, attr, why);
}

/* Bytes of one variable-length descriptor in the file: a 4-byte length, the heap address
 * (the file's address size) and a 4-byte heap index. 0 when unknown. */
static size_t vlen_disk_size(hid_t a)
{
    hid_t file = H5Iget_file_id(a);
    hid_t fcpl = file >= 0 ? H5Fget_create_plist(file) : H5I_INVALID_HID;
    size_t addr = 0, size = 0;
    if (fcpl < 0 || H5Pget_sizes(fcpl, &addr, &size) < 0)
        addr = 0;
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (file >= 0)
        H5Fclose(file);
    return addr ? 4 + addr + 4 : 0;
}

/* What the child reading a variable-length attribute needs. */
typedef struct vlen_job {
    hid_t a;
    H5T_cset_t cset;
    size_t n;
} vlen_job;

/* In the child (isolate.h): reads the strings and writes each as a 4-byte length and at
 * most MAX_NAME_BYTES + 1 of its bytes. */
static int vlen_child(void *ctx, int fd)
{
    const vlen_job *j = ctx;
    char **buf = calloc(j->n ? j->n : 1, sizeof *buf);
    hid_t t = H5Tcopy(H5T_C_S1);
    if (!buf || t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, j->cset) < 0 ||
        (j->n > 0 && H5Aread(j->a, t, buf) < 0))
        return 1;
    for (size_t i = 0; i < j->n; i++) {
        uint32_t len = buf[i] ? (uint32_t)strnlen(buf[i], MAX_NAME_BYTES + 1) : 0;
        if (ct_isolated_write(fd, &len, sizeof len) < 0 || ct_isolated_write(fd, buf[i], len) < 0)
            return 1;
    }
    return 0; /* the process ends: nothing to reclaim */
}

/* Splits the child's output into n names. */
static int vlen_parse(const char *p, size_t len, size_t n, strlist *out, const attr_place *at,
                      const char *attr, ct_error *err)
{
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k;
        if (len - pos < sizeof k)
            return attr_refuse(at, attr, err, "cannot be read");
        memcpy(&k, p + pos, sizeof k);
        pos += sizeof k;
        if (k > MAX_NAME_BYTES)
            return attr_refuse(at, attr, err, "holds a name longer than 65536 bytes");
        if (len - pos < k)
            return attr_refuse(at, attr, err, "cannot be read");
        if (strlist_add(out, p + pos, k) < 0)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        pos += k;
    }
    return 0;
}

/* Reads n variable-length strings. The attribute's stored size must be n descriptors
 * exactly (a damaged one makes HDF5 1.10's conversion copy between overlapping buffers),
 * and every string must end within MAX_NAME_BYTES. cset: the attribute's own (h5py writes
 * UTF-8), kept since HDF5 does not convert between ASCII and UTF-8 strings. HDF5 reads
 * the strings from a global heap it does not check (a damaged one crashes or hangs it), so
 * the read runs in a child process (isolate.h). */
static int read_vlen_strings(hid_t a, hid_t space, H5T_cset_t cset, size_t n, strlist *out,
                             const attr_place *at, const char *attr, ct_error *err)
{
    (void)space;
    size_t disk = vlen_disk_size(a);
    hsize_t stored = H5Aget_storage_size(a);
    if (disk == 0 || stored != (hsize_t)n * disk) {
        char why[160];
        snprintf(why, sizeof why, "declares %zu variable-length strings but stores %llu bytes "
                 "for them", n, (unsigned long long)stored);
        return attr_refuse(at, attr, err, why);
    }
    vlen_job job = {a, cset, n};
    char *got = NULL;
    size_t len = 0;
    switch (ct_isolated_run(vlen_child, &job, VLEN_SECONDS, VLEN_MAX_BYTES, &got, &len)) {
    case CT_ISOLATED_OK: break;
    case CT_ISOLATED_TIMEOUT: {
        char why[64];
        snprintf(why, sizeof why, "took HDF5 over %.0f s to read", VLEN_SECONDS);
        return attr_refuse(at, attr, err, why);
    }
    case CT_ISOLATED_NO_CHILD:
        return ct_err(err, CT_ERR_IO, "%s: cannot start a process to read attribute '%s': %s",
                      at->path, attr, strerror(errno));
    default:
        return attr_refuse(at, attr, err, "cannot be read (HDF5 failed on its data)");
    }
    int rc = vlen_parse(got, len, n, out, at, attr, err);
    free(got);
    return rc;
}

/* Reads n fixed-length strings of `width` bytes, through a string type built here (not the
 * file's own), after checking that the attribute stores exactly n * width bytes. */
static int read_fixed_strings(hid_t a, H5T_cset_t cset, H5T_str_t pad, size_t width, size_t n,
                              strlist *out, const attr_place *at, const char *attr,
                              ct_error *err)
{
    hsize_t stored = H5Aget_storage_size(a);
    if (stored != (hsize_t)n * width) {
        char why[160];
        snprintf(why, sizeof why, "declares %zu strings of %zu bytes but stores %llu bytes", n,
                 width, (unsigned long long)stored);
        return attr_refuse(at, attr, err, why);
    }
    hid_t t = H5Tcopy(H5T_C_S1);
    char *buf = calloc(n ? n : 1, width);
    bool read = false;
    if (buf && t >= 0 && H5Tset_size(t, width) >= 0 && H5Tset_cset(t, cset) >= 0
        && H5Tset_strpad(t, pad) >= 0)
        read = n == 0 || H5Aread(a, t, buf) >= 0;
    int rc = read ? 0 : buf && t >= 0 ? attr_refuse(at, attr, err, "cannot be read")
                                      : ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t len = strnlen(buf + i * width, width);
        while (pad == H5T_STR_SPACEPAD && len > 0 && buf[i * width + len - 1] == ' ')
            len--;
        if (strlist_add(out, buf + i * width, len) < 0)
            rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    if (t >= 0)
        H5Tclose(t);
    free(buf);
    return rc;
}

/* Appends the strings of attribute `name`: a scalar or a 1-D array of fixed or variable
 * length ASCII or UTF-8 strings, at most MAX_NAMES in all (out holds those read before).
 * Everything is checked before HDF5 reads a byte; anything else is refused, naming path
 * and the attribute. Returns 0 or -1. */
static int read_strings_attr(hid_t loc, const char *name, strlist *out, const attr_place *at,
                             ct_error *err)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return attr_refuse(at, name, err, "cannot be opened");
    hid_t t = H5Aget_type(a), space = H5Aget_space(a);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    H5S_class_t kind = space >= 0 ? H5Sget_simple_extent_type(space) : H5S_NO_CLASS;
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    htri_t vl = cls == H5T_STRING ? H5Tis_variable_str(t) : -1;
    H5T_cset_t cset = cls == H5T_STRING ? H5Tget_cset(t) : H5T_CSET_ERROR;
    H5T_str_t pad = cls == H5T_STRING ? H5Tget_strpad(t) : H5T_STR_ERROR;
    size_t width = cls == H5T_STRING && vl == 0 ? H5Tget_size(t) : 0;
    char why[160];
    int rc = -1;
    if (cls != H5T_NO_CLASS && (kind == H5S_NULL || (kind == H5S_SIMPLE && n == 0)))
        rc = 0; /* an empty list of any type: Keras 3 writes a weightless layer's weight_names
                 * as an empty float64 array */
    else if (cls != H5T_STRING)
        rc = attr_refuse(at, name, err, "does not hold strings");
    else if (vl < 0 || (cset != H5T_CSET_ASCII && cset != H5T_CSET_UTF8)
             || (pad != H5T_STR_NULLTERM && pad != H5T_STR_NULLPAD && pad != H5T_STR_SPACEPAD))
        rc = attr_refuse(at, name, err, "has a string type of an unknown kind");
    else if (vl == 0 && (width == 0 || width > MAX_NAME_BYTES))
        rc = attr_refuse(at, name, err, "has strings of more than 65536 bytes");
    else if ((kind != H5S_SCALAR && kind != H5S_SIMPLE) || rank < 0 || rank > 1 || n < 0)
        rc = attr_refuse(at, name, err, "is not a list of names (a scalar or one axis)");
    else if ((size_t)n > MAX_NAMES - out->n) {
        snprintf(why, sizeof why, "declares %lld names; at most %d are read", (long long)n,
                 MAX_NAMES);
        rc = attr_refuse(at, name, err, why);
    } else if (vl > 0)
        rc = read_vlen_strings(a, space, cset, (size_t)n, out, at, name, err);
    else
        rc = read_fixed_strings(a, cset, pad, width, (size_t)n, out, at, name, err);
    if (space >= 0)
        H5Sclose(space);
    if (t >= 0)
        H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* Reads `name`, or Keras's chunked name0, name1, ... Returns 0, -1 on error (err set), 1
 * if absent. */
static int read_strings(hid_t loc, const char *name, strlist *out, const attr_place *at,
                        ct_error *err)
{
    if (H5Aexists(loc, name) > 0)
        return read_strings_attr(loc, name, out, at, err);
    char part[128];
    int i = 0;
    for (; i < MAX_ATTR_PARTS; i++) {
        snprintf(part, sizeof part, "%s%d", name, i);
        if (H5Aexists(loc, part) <= 0)
            break;
        if (read_strings_attr(loc, part, out, at, err) < 0)
            return -1;
    }
    return i > 0 ? 0 : 1;
}

/* ---- saving ---- */

static int write_param(hid_t g, const ct_model *m, const ct_param *p)
{
    hsize_t dims[CT_MAX_DIMS];
    for (int i = 0; i < p->shape.ndim; i++)
        dims[i] = (hsize_t)p->shape.dim[i];
    int64_t n = ct_shape_size(&p->shape);
    const float *data = p->value;
    float *host = NULL;
    if (!on_host(m)) {
        if (!(host = malloc((size_t)(n ? n : 1) * sizeof *host)))
            return -1;
        m->be->download(host, p->value, (size_t)n * sizeof *host);
        data = host;
    }
    char dname[64];
    snprintf(dname, sizeof dname, "%s:0", p->name);
    hid_t space = p->shape.ndim ? H5Screate_simple(p->shape.ndim, dims, NULL)
                                : H5Screate(H5S_SCALAR);
    hid_t d = H5I_INVALID_HID;
    int rc = -1;
    /* A sublayer's weight ("token_embedding/embeddings") lives in a group of its own, as
     * Keras nests it. */
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (space >= 0 && lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        d = H5Dcreate2(g, dname, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (d >= 0)
        rc = n == 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0
                 ? 0 : -1;
    if (d >= 0 && H5Dclose(d) < 0)
        rc = -1;
    if (space >= 0)
        H5Sclose(space);
    free(host);
    return rc;
}

static int write_layer(hid_t mw, const ct_model *m, const ct_layer *l, ct_error *err)
{
    char names[CT_MAX_PARAMS][CT_NAME_MAX + 56];
    const char *ptrs[CT_MAX_PARAMS];
    for (int i = 0; i < l->nparams; i++) {
        snprintf(names[i], sizeof names[i], "%s/%s:0", l->name, l->params[i].name);
        ptrs[i] = names[i];
    }
    hid_t g = H5Gcreate2(mw, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t inner = H5I_INVALID_HID;
    int rc = g >= 0 && write_strings(g, "weight_names", ptrs, (size_t)l->nparams) == 0 ? 0 : -1;
    if (rc == 0 && l->nparams > 0) {
        inner = H5Gcreate2(g, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = inner >= 0 ? 0 : -1;
    }
    for (int i = 0; rc == 0 && i < l->nparams; i++)
        rc = write_param(inner, m, &l->params[i]);
    ct_h5_close_group(&inner);
    ct_h5_close_group(&g);
    if (rc < 0) {
        char what[CT_NAME_MAX + 64];
        snprintf(what, sizeof what, "writing the weights of layer '%s' failed", l->name);
        return h5_io_err(err, what, NULL);
    }
    return 0;
}

static int write_model_weights(hid_t file, const ct_model *m, const char *version,
                               ct_error *err)
{
    size_t most = m->nlayers > 0 ? (size_t)m->nlayers : 1;
    const char **names = calloc(most, sizeof *names);
    int *order = calloc(most, sizeof *order);
    int count = names && order ? ct_keras_layer_order(m, order) : -1;
    if (count < 0) {
        free(names);
        free(order);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    size_t n = 0;
    for (int i = 0; i < count; i++) /* a shared application owns no weights */
        names[n++] = m->layers[order[i]].name;
    free(order);
    hid_t mw = H5Gcreate2(file, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = mw >= 0 && write_strings(mw, "layer_names", names, n) == 0
                     && write_string(mw, "backend", "ctrain") == 0
                     && write_string(mw, "keras_version", version) == 0
                 ? 0 : h5_io_err(err, "writing /model_weights failed", NULL);
    for (int i = 0; rc == 0 && i < m->nlayers; i++)
        if (!m->layers[i].shared)
            rc = write_layer(mw, m, &m->layers[i], err);
    ct_h5_close_group(&mw);
    free(names);
    return rc;
}

static int check_names(const ct_model *m, ct_error *err)
{
    for (int i = 0; i < m->nlayers; i++) {
        const char *n = m->layers[i].name;
        if (!n[0] || strchr(n, '/') || strcmp(n, ".") == 0)
            return ct_err(err, CT_ERR_INTERNAL,
                          "layer name '%s' cannot be stored in HDF5 (empty, '.' or holds '/')", n);
        for (int j = 0; j < i; j++)
            if (strcmp(n, m->layers[j].name) == 0)
                return ct_err(err, CT_ERR_INTERNAL, "two layers are named '%s'", n);
    }
    return 0;
}

/* The file is built in memory (h5image.h) and written to tmp. */
static int write_file(const ct_model *m, const char *tmp, const char *model_config,
                      const char *training_config, ct_weights_extra extra, void *ctx,
                      ct_error *err)
{
    char version[128];
    snprintf(version, sizeof version, "ctrain-%s", ct_version());
    ct_h5_image img;
    hid_t file = ct_h5_image_create(&img, tmp);
    if (file < 0)
        return h5_io_err(err, "cannot create", tmp);
    int rc = write_string(file, "keras_version", version) == 0
                     && write_string(file, "backend", "ctrain") == 0
                     && (!model_config || write_string(file, "model_config", model_config) == 0)
                     && (!training_config
                         || write_string(file, "training_config", training_config) == 0)
                 ? 0 : h5_io_err(err, "writing the attributes failed", NULL);
    if (rc == 0)
        rc = write_model_weights(file, m, version, err);
    if (rc == 0 && extra)
        rc = extra((int64_t)file, ctx, err);
    if (rc < 0) {
        H5Fclose(file);
        free(img.kept);
        return rc;
    }
    return ct_h5_image_write(&img, file, tmp, err);
}

int ct_weights_save(const ct_model *m, const char *path, const char *model_config,
                    const char *training_config, ct_error *err)
{
    return ct_weights_save_with(m, path, model_config, training_config, NULL, NULL, err);
}

int ct_weights_save_with(const ct_model *m, const char *path, const char *model_config,
                         const char *training_config, ct_weights_extra extra, void *ctx,
                         ct_error *err)
{
    if (check_names(m, err) < 0 || ct_check_replaceable(path, err) < 0)
        return -1;
    char *generated = model_config ? NULL : ct_model_config_json(m);
    char *tmp = ct_temp_beside(path, err);
    if (!tmp) {
        free(generated);
        return -1;
    }
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = write_file(m, tmp, model_config ? model_config : generated, training_config, extra,
                        ctx, err);
    ct_h5_quiet_off(&q);
    if (rc == 0)
        rc = ct_commit_temp(tmp, path, err);
    if (rc < 0) {
        unlink(tmp);
        ct_err_prefix(err, "saving weights to %s", path);
    }
    free(tmp);
    free(generated);
    return rc;
}

/* ---- loading ---- */

typedef struct file_layer {
    char *name;
    strlist weights;
} file_layer;

typedef struct loader {
    const char *path;
    hid_t file, root;          /* root: /model_weights, or / for save_weights files */
    hid_t gapl, dapl;          /* group and dataset access refusing external links */
    file_layer *layers;        /* layers with weights, in file order */
    int nlayers;
    float *stage;              /* every parameter, read before any is replaced */
    bool keras3;               /* a Keras 3 .weights.h5 file (keras_import.c reads it) */
} loader;

static void loader_close(loader *ld)
{
    for (int i = 0; i < ld->nlayers; i++) {
        free(ld->layers[i].name);
        strlist_free(&ld->layers[i].weights);
    }
    free(ld->layers);
    free(ld->stage);
    if (ld->root >= 0 && ld->root != ld->file)
        H5Gclose(ld->root);
    if (ld->gapl >= 0)
        H5Pclose(ld->gapl);
    if (ld->dapl >= 0)
        H5Pclose(ld->dapl);
    if (ld->file >= 0)
        H5Fclose(ld->file);
}

static int open_root(loader *ld, ct_error *err)
{
    if (ct_h5_check_path(ld->path, err) < 0)
        return -1;
    ld->file = H5Fopen(ld->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ld->file < 0)
        return ct_h5_open_error(ld->path, err);
    ld->gapl = ct_h5_local_access(H5P_GROUP_ACCESS);
    ld->dapl = ct_h5_local_access(H5P_DATASET_ACCESS);
    bool missing;
    if (ld->gapl < 0 || ld->dapl < 0)
        return ct_err(err, CT_ERR_INTERNAL, "%s: cannot set up link access", ld->path);
    if (ct_h5_check_links(ld->file, "model_weights", ld->path, &missing, err) < 0)
        return -1;
    if (!missing)
        ld->root = H5Gopen2(ld->file, "model_weights", ld->gapl);
    else
        ld->root = ld->file;   /* model.save_weights() files keep layer_names at the root */
    if (ld->root < 0)
        return ct_err(err, CT_ERR_DATA, "%s: cannot open /model_weights as a group", ld->path);
    return 0;
}

/* Lists the file's layers that hold weights, with their weight names. */
static int read_layers(loader *ld, ct_error *err)
{
    strlist names = {0};
    attr_place at = {ld->path, NULL};
    int rc = read_strings(ld->root, "layer_names", &names, &at, err);
    if (rc == 1 && ld->root == ld->file && H5Lexists(ld->file, "layers", H5P_DEFAULT) > 0 &&
        H5Lexists(ld->file, "vars", H5P_DEFAULT) > 0) {
        /* model.save_weights() of Keras 3: layers/<class>/vars/0, 1, ... */
        ld->keras3 = true;
        return 0;
    }
    if (rc != 0) {
        strlist_free(&names);
        return rc < 0 ? -1
                      : ct_err(err, CT_ERR_DATA,
                               "%s holds no Keras weights (no /model_weights group with a "
                               "layer_names attribute)", ld->path);
    }
    ld->layers = calloc(names.n ? names.n : 1, sizeof *ld->layers);
    if (!ld->layers)
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < names.n; i++) {
        bool missing;
        if (ct_h5_check_links(ld->root, names.s[i], ld->path, &missing, err) < 0) {
            rc = -1;
            break;
        }
        hid_t g = missing ? H5I_INVALID_HID : H5Gopen2(ld->root, names.s[i], ld->gapl);
        file_layer *fl = &ld->layers[ld->nlayers];
        if (g < 0) {
            rc = ct_err(err, CT_ERR_DATA, "%s: layer_names lists '%s' but it has no group",
                        ld->path, names.s[i]);
            break;
        }
        at.layer = names.s[i];
        int r = read_strings(g, "weight_names", &fl->weights, &at, err);
        H5Gclose(g);
        if (r < 0)
            rc = -1;
        else if (fl->weights.n == 0)
            strlist_free(&fl->weights);
        else if (!(fl->name = strdup(names.s[i])))
            rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
        else
            ld->nlayers++;
    }
    strlist_free(&names);
    return rc;
}

static int count_weighted(const ct_model *m)
{
    int n = 0;
    for (int i = 0; i < m->nlayers; i++)
        n += m->layers[i].nparams > 0 && !m->layers[i].shared;
    return n;
}

/* Opens one weight and checks its type and shape against the parameter. */
static hid_t open_weight(const loader *ld, const file_layer *fl, const char *wname,
                         const ct_layer *l, const ct_param *p, ct_error *err)
{
    char what[CT_NAME_MAX + 64];
    snprintf(what, sizeof what, "layer '%s' (%s)", l->name, l->kind->class_name);
    hid_t g = H5Gopen2(ld->root, fl->name, ld->gapl);
    bool missing = true;
    if (g >= 0 && ct_h5_check_links(g, wname, ld->path, &missing, err) < 0) {
        ct_h5_close_group(&g);
        ct_err_prefix(err, "%s", what);
        return H5I_INVALID_HID;
    }
    hid_t d = g >= 0 && !missing ? H5Dopen2(g, wname, ld->dapl) : H5I_INVALID_HID;
    ct_h5_close_group(&g);
    if (d < 0) {
        ct_err(err, CT_ERR_DATA, "%s: %s has no dataset '%s' in layer group '%s'", what,
               ld->path, wname, fl->name);
        return H5I_INVALID_HID;
    }
    char label[4200];
    snprintf(label, sizeof label, "%s: weight '%s' in %s", what, p->name, ld->path);
    if (ct_h5_check_layout(d, label, err) < 0) {
        H5Dclose(d);
        return H5I_INVALID_HID;
    }
    hid_t t = H5Dget_type(d), space = H5Dget_space(d);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[H5S_MAX_RANK];
    bool ok = rank >= 0 && rank <= CT_MAX_DIMS && H5Sget_simple_extent_dims(space, dims, NULL) == rank;
    if (t >= 0)
        H5Tclose(t);
    if (space >= 0)
        H5Sclose(space);
    ct_shape fs = {0};
    fs.ndim = ok ? rank : 0;
    for (int i = 0; ok && i < rank; i++)
        fs.dim[i] = (int64_t)dims[i];
    char a[256], b[256];
    if (c != H5T_FLOAT && c != H5T_INTEGER)
        ct_err(err, CT_ERR_DATA, "layer '%s' (%s): weight '%s' in %s is not numeric", l->name,
               l->kind->class_name, p->name, ld->path);
    else if (!ok)
        ct_err(err, CT_ERR_DATA, "layer '%s' (%s): weight '%s' in %s has rank %d, but the "
               "model expects shape %s", l->name, l->kind->class_name, p->name, ld->path, rank,
               ct_shape_format_sample(&p->shape, b, sizeof b));
    else if (!ct_shape_equal(&fs, &p->shape))
        ct_err(err, CT_ERR_DATA, "layer '%s' (%s): weight '%s' in %s has shape %s but the model "
               "expects %s", l->name, l->kind->class_name, p->name, ld->path,
               ct_shape_format_sample(&fs, a, sizeof a),
               ct_shape_format_sample(&p->shape, b, sizeof b));
    else if (ct_h5_check_storage(d, label, err) == 0)
        return d;
    H5Dclose(d);
    return H5I_INVALID_HID;
}

/* Reads layer l's weights from fl into dst (l's parameters back to back). */
static int read_layer(const loader *ld, const file_layer *fl, const ct_layer *l, float *dst,
                      ct_error *err)
{
    if ((int)fl->weights.n != l->nparams)
        return ct_err(err, CT_ERR_DATA,
                      "layer '%s' (%s): %s holds %zu weights for it (layer '%s') but the model "
                      "expects %d", l->name, l->kind->class_name, ld->path, fl->weights.n,
                      fl->name, l->nparams);
    for (int i = 0; i < l->nparams; i++) {
        const ct_param *p = &l->params[i];
        hid_t d = open_weight(ld, fl, fl->weights.s[i], l, p, err);
        if (d < 0)
            return -1;
        herr_t rc = ct_shape_size(&p->shape) == 0
                        ? 0 : H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
        H5Dclose(d);
        if (rc < 0)
            return ct_err(err, CT_ERR_IO, "layer '%s' (%s): reading weight '%s' from %s failed",
                          l->name, l->kind->class_name, p->name, ld->path);
        dst += ct_shape_size(&p->shape);
    }
    return 0;
}

/* pair[i]: the file layer holding model layer i's weights (-1: layer i has none). By name
 * when the file has every name, else in Keras's order. Fails only out of memory. */
static int pair_layers(const loader *ld, const ct_model *m, int *pair)
{
    bool named = true;
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        pair[i] = -1;
        for (int k = 0; l->nparams && !l->shared && k < ld->nlayers && pair[i] < 0; k++)
            if (!strcmp(ld->layers[k].name, l->name))
                pair[i] = k;
        named &= pair[i] >= 0 || !l->nparams || l->shared;
    }
    if (named)
        return 0;
    int *order = calloc(m->nlayers > 0 ? (size_t)m->nlayers : 1, sizeof *order);
    int n = order ? ct_keras_layer_order(m, order) : -1;
    for (int i = 0, k = 0; i < n; i++) {
        const ct_layer *l = &m->layers[order[i]];
        pair[order[i]] = l->nparams ? k++ : -1;
    }
    free(order);
    return n < 0 ? -1 : 0;
}

static int read_all(loader *ld, const ct_model *m, ct_error *err)
{
    int have = count_weighted(m);
    if (ld->nlayers != have)
        return ct_err(err, CT_ERR_DATA,
                      "weights file %s has %d layers with weights but the model has %d",
                      ld->path, ld->nlayers, have);
    int *pair = calloc(m->nlayers > 0 ? (size_t)m->nlayers : 1, sizeof *pair);
    if (!pair || pair_layers(ld, m, pair) < 0) {
        free(pair);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    int64_t total = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i].nparams && !m->layers[i].shared; j++)
            total += ct_shape_size(&m->layers[i].params[j].shape);
    ld->stage = malloc((size_t)(total ? total : 1) * sizeof *ld->stage);
    if (!ld->stage) {
        free(pair);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    float *at = ld->stage;
    int rc = 0;
    for (int i = 0; i < m->nlayers && rc == 0; i++) {
        const ct_layer *l = &m->layers[i];
        if (l->nparams == 0 || l->shared)
            continue;
        rc = read_layer(ld, &ld->layers[pair[i]], l, at, err);
        for (int j = 0; j < l->nparams; j++)
            at += ct_shape_size(&l->params[j].shape);
    }
    free(pair);
    return rc;
}

/* Copies the staged values into the parameters, only after everything was read. */
static void install(const loader *ld, ct_model *m)
{
    const float *at = ld->stage;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i].nparams && !m->layers[i].shared; j++) {
            ct_param *p = &m->layers[i].params[j];
            size_t bytes = (size_t)ct_shape_size(&p->shape) * sizeof *at;
            if (on_host(m))
                memcpy(p->value, at, bytes);
            else
                m->be->upload(p->value, at, bytes);
            at += ct_shape_size(&p->shape);
        }
    m->params_pending = false; /* every parameter now holds the file's value */
}

/* Values that are not finite load (a model may be inspected as it is), but such a model
 * computes NaN: a warning on stderr names the file, the first layer and weight holding one,
 * and how many there are in all. */
static void warn_non_finite(const loader *ld, const ct_model *m)
{
    const float *at = ld->stage;
    const ct_layer *first = NULL;
    const ct_param *fp = NULL;
    int64_t first_at = 0, count = 0;
    float first_value = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i].nparams && !m->layers[i].shared; j++) {
            const ct_param *p = &m->layers[i].params[j];
            int64_t n = ct_shape_size(&p->shape);
            for (int64_t k = 0; k < n; k++)
                if (!isfinite(at[k]) && count++ == 0) {
                    first = &m->layers[i];
                    fp = p;
                    first_at = k;
                    first_value = at[k];
                }
            at += n;
        }
    if (!count)
        return;
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(first, what, sizeof what);
    fprintf(stderr, "ctrain: warning: %s: %s: weight '%s' holds %g at index %lld (%lld value%s "
            "in the file %s not finite); what the model computes with them is not finite\n",
            ld->path, what, fp->name, (double)first_value, (long long)first_at,
            (long long)count, count == 1 ? "" : "s", count == 1 ? "is" : "are");
}

/* In a child process: opens the file and reads its layer names, answering the status
 * and the error. */
static int probe_child(void *ctx, int fd)
{
    loader *ld = ctx;
    struct {
        int rc;
        ct_error err;
    } a = {0, {0}};
    a.rc = open_root(ld, &a.err);
    if (a.rc == 0)
        a.rc = read_layers(ld, &a.err);
    return ct_isolated_write(fd, &a, sizeof a);
}

/* HDF5 1.10 crashes or loops inside H5Fopen on some damaged files, before anything can be
 * checked: the opening is tried in a child process first (see data.c's probe_open).
 * 1: go on. */
static int probe_weights(loader *ld, ct_error *err)
{
    char *got = NULL;
    size_t len = 0;
    struct {
        int rc;
        ct_error err;
    } a;
    ct_isolated_status st;
    if (!ct_isolated_known_bad(ld->path, &st))
        st = ct_isolated_run(probe_child, ld, OPEN_SECONDS, sizeof a, &got, &len);
    bool answered = st == CT_ISOLATED_OK && len == sizeof a;
    if (st == CT_ISOLATED_FAILED || st == CT_ISOLATED_TIMEOUT)
        ct_isolated_mark_bad(ld->path, st);
    if (answered)
        memcpy(&a, got, sizeof a);
    free(got);
    if (st == CT_ISOLATED_NO_CHILD)
        return 1;
    if (!answered)
        return ct_err(err, CT_ERR_DATA, "%s: HDF5 %s while opening it; the file is damaged",
                      ld->path, st == CT_ISOLATED_TIMEOUT ? "did not finish" : "crashed");
    if (a.rc < 0) {
        a.err.msg[sizeof a.err.msg - 1] = '\0';
        *err = a.err;
        return -1;
    }
    return 1;
}

int ct_weights_load(ct_model *m, const char *path, ct_error *err)
{
    loader ld = {.path = path, .file = H5I_INVALID_HID, .root = H5I_INVALID_HID,
                 .gapl = H5I_INVALID_HID, .dapl = H5I_INVALID_HID};
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    ct_unpolled_begin();
    int rc = probe_weights(&ld, err);
    if (rc > 0)
        rc = open_root(&ld, err);
    if (rc == 0)
        rc = read_layers(&ld, err);
    if (rc == 0 && ld.keras3) {
        rc = ct_keras3_weights_read(m, ld.file, path, err);
    } else if (rc == 0)
        rc = read_all(&ld, m, err);
    if (rc == 0 && !ld.keras3) {
        warn_non_finite(&ld, m);
        install(&ld, m);
    }
    loader_close(&ld);
    ct_unpolled_end();
    ct_h5_quiet_off(&q);
    return rc;
}

/* ---- starting from another model's weights ---- */

/* A growing text (the report). */
typedef struct text_buf {
    char *s;
    size_t len, cap;
    bool failed;
} text_buf;

static void tprintf(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tprintf(text_buf *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || t->failed)
        return;
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->len + (size_t)n + 1) * 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->failed = true;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* The file layer named as l, or -1. */
static int file_layer_named(const loader *ld, const char *name)
{
    for (int k = 0; k < ld->nlayers; k++)
        if (!strcmp(ld->layers[k].name, name))
            return k;
    return -1;
}

/* Layer l's weights from file layer fl into dst when every count and shape agrees: 1;
 * 0 with why (the first difference) when one does not; -1 when reading fails. */
static int read_if_matching(const loader *ld, const file_layer *fl, const ct_layer *l,
                            float *dst, ct_error *why, ct_error *err)
{
    if ((int)fl->weights.n != l->nparams) {
        ct_err(why, CT_ERR_DATA, "%zu weights in the file, %d here", fl->weights.n,
               l->nparams);
        return 0;
    }
    for (int i = 0; i < l->nparams; i++) {
        hid_t d = open_weight(ld, fl, fl->weights.s[i], l, &l->params[i], why);
        if (d < 0)
            return 0;
        H5Dclose(d);
    }
    return read_layer(ld, fl, l, dst, err) < 0 ? -1 : 1;
}

/* Copies layer l's staged values into its parameters. */
static void install_layer(ct_model *m, const ct_layer *l, const float *at)
{
    for (int j = 0; j < l->nparams; j++) {
        const ct_param *p = &l->params[j];
        size_t bytes = (size_t)ct_shape_size(&p->shape) * sizeof *at;
        if (on_host(m))
            memcpy(p->value, at, bytes);
        else
            m->be->upload(p->value, at, bytes);
        at += ct_shape_size(&p->shape);
    }
}

/* Pairs by name, reads the layers that match into the stage and reports each layer. */
static int read_matching(loader *ld, ct_model *m, bool *loaded, text_buf *rep, int *nloaded,
                         ct_error *err)
{
    int64_t total = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i].nparams && !m->layers[i].shared; j++)
            total += ct_shape_size(&m->layers[i].params[j].shape);
    if (!(ld->stage = malloc((size_t)(total ? total : 1) * sizeof *ld->stage)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    float *at = ld->stage;
    *nloaded = 0;
    /* A Keras 3 file has no names: a layer's group is its class and rank among the
     * model's layers of that class, in Keras's order. */
    char (*groups)[CT_KERAS_GROUP_MAX] = ld->keras3 ? ct_keras_layer_groups(m) : NULL;
    if (ld->keras3 && !groups)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (ld->keras3)
        tprintf(rep, "  (a Keras 3 file names no layers: each is found by its class and "
                "its place among the model's layers of that class)\n");
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        if (!l->nparams || l->shared)
            continue;
        int k = ld->keras3 ? 0 : file_layer_named(ld, l->name);
        ct_error why = {0};
        int rc = ld->keras3 ? ct_keras3_layer_read(m, ld->file, groups[i], l, at, ld->path, &why, err)
                 : k < 0 ? 0 : read_if_matching(ld, &ld->layers[k], l, at, &why, err);
        if (rc < 0) {
            free(groups);
            return -1;
        }
        if (ld->keras3) {
            loaded[i] = rc > 0;
            *nloaded += rc > 0;
            if (rc > 0)
                tprintf(rep, "  %-20s loaded from %s\n", l->name, groups[i]);
            else
                tprintf(rep, "  %-20s skipped, keeps its initial values: %s\n", l->name, why.msg);
            for (int j = 0; j < l->nparams; j++)
                at += ct_shape_size(&l->params[j].shape);
            continue;
        }
        if (rc < 0)
            return -1;
        loaded[i] = rc > 0;
        *nloaded += rc > 0;
        if (rc > 0)
            tprintf(rep, "  %-20s loaded\n", l->name);
        else if (k < 0)
            tprintf(rep, "  %-20s not in the file: keeps its initial values\n", l->name);
        else
            tprintf(rep, "  %-20s skipped, keeps its initial values: %s\n", l->name, why.msg);
        for (int j = 0; j < l->nparams; j++)
            at += ct_shape_size(&l->params[j].shape);
    }
    free(groups);
    for (int k = 0; k < ld->nlayers; k++) {
        int i = 0;
        while (i < m->nlayers && (strcmp(m->layers[i].name, ld->layers[k].name) ||
                                  !m->layers[i].nparams || m->layers[i].shared))
            i++;
        if (i == m->nlayers)
            tprintf(rep, "  %-20s in the file only: not used\n", ld->layers[k].name);
    }
    return 0;
}

int ct_weights_load_matching(ct_model *m, const char *path, char **report, ct_error *err)
{
    loader ld = {.path = path, .file = H5I_INVALID_HID, .root = H5I_INVALID_HID,
                 .gapl = H5I_INVALID_HID, .dapl = H5I_INVALID_HID};
    text_buf rep = {0};
    bool *loaded = calloc(m->nlayers > 0 ? (size_t)m->nlayers : 1, sizeof *loaded);
    int nloaded = 0;
    *report = NULL;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    ct_unpolled_begin();
    int rc = loaded ? probe_weights(&ld, err) : ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (rc > 0)
        rc = open_root(&ld, err);
    if (rc == 0)
        rc = read_layers(&ld, err);
    if (rc == 0)
        rc = read_matching(&ld, m, loaded, &rep, &nloaded, err);
    if (rc == 0 && rep.failed)
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (rc == 0 && nloaded == 0)
        rc = ct_err(err, CT_ERR_DATA, "%s has no weights for any layer of the model, by name "
                    "and shape:\n%s", path, rep.s ? rep.s : "");
    const float *at = ld.stage;
    for (int i = 0; rc == 0 && i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        if (loaded[i])
            install_layer(m, l, at);
        for (int j = 0; j < l->nparams && !l->shared; j++)
            at += ct_shape_size(&l->params[j].shape);
    }
    loader_close(&ld);
    ct_unpolled_end();
    ct_h5_quiet_off(&q);
    free(loaded);
    if (rc < 0) {
        free(rep.s);
        return -1;
    }
    *report = rep.s;
    return nloaded;
}

/* ---- model_config JSON ---- */

static bool is_plain_number(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr("0123456789+-.eE", *s))
            return false;
    return true;
}

/* A YAML scalar as JSON: numbers, booleans and null when unquoted, else a string. */
static cJSON *scalar_json(const ct_node *n)
{
    const char *s = n->scalar;
    if (ct_node_is_null(n))
        return cJSON_CreateNull();
    if (n->quoted)
        return cJSON_CreateString(s);
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return cJSON_CreateTrue();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return cJSON_CreateFalse();
    if (is_plain_number(s)) {
        char *end;
        errno = 0;
        long long i = strtoll(s, &end, 10);
        if (!*end && errno == 0)
            return cJSON_CreateNumber((double)i);
        double d = strtod(s, &end);
        if (!*end && isfinite(d))
            return cJSON_CreateNumber(d);
    }
    return cJSON_CreateString(s);
}

static cJSON *node_json(const ct_node *n, int depth);

/* Map entries into obj, leaving out `skip` keys (NULL-terminated, may be NULL). */
static bool add_entries(cJSON *obj, const ct_node *n, const char *const *skip, int depth)
{
    for (size_t i = 0; i < n->len; i++) {
        bool skipped = false;
        for (const char *const *k = skip; k && *k; k++)
            skipped |= strcmp(n->keys[i], *k) == 0;
        if (skipped)
            continue;
        cJSON *v = node_json(n->items[i], depth + 1);
        if (!v || !cJSON_AddItemToObject(obj, n->keys[i], v)) {
            cJSON_Delete(v);
            return false;
        }
    }
    return true;
}

/* A nested {type: x, ...} map becomes Keras's {"class_name": x, "config": {...}}. */
static cJSON *typed_map_json(const ct_node *n, const ct_node *type, int depth)
{
    static const char *const skip[] = {"type", NULL};
    cJSON *o = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    bool ok = o && cfg && cJSON_AddStringToObject(o, "class_name", type->scalar)
              && add_entries(cfg, n, skip, depth);
    if (ok && cJSON_AddItemToObject(o, "config", cfg))
        return o;
    cJSON_Delete(cfg);
    cJSON_Delete(o);
    return NULL;
}

static cJSON *node_json(const ct_node *n, int depth)
{
    if (!n || depth > CT_CONFIG_MAX_DEPTH)
        return cJSON_CreateNull();
    if (n->type == CT_NODE_SCALAR)
        return scalar_json(n);
    if (n->type == CT_NODE_MAP) {
        for (size_t i = 0; i < n->len; i++)
            if (!strcmp(n->keys[i], "type") && n->items[i]->type == CT_NODE_SCALAR)
                return typed_map_json(n, n->items[i], depth);
        cJSON *o = cJSON_CreateObject();
        if (o && add_entries(o, n, NULL, depth))
            return o;
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n->len; i++) {
        cJSON *v = node_json(n->items[i], depth + 1);
        if (!v || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static cJSON *class_config(const char *class_name, cJSON **cfg)
{
    cJSON *o = cJSON_CreateObject();
    *cfg = cJSON_CreateObject();
    if (o && *cfg && cJSON_AddStringToObject(o, "class_name", class_name)
        && cJSON_AddItemToObject(o, "config", *cfg))
        return o;
    cJSON_Delete(*cfg);
    cJSON_Delete(o);
    return NULL;
}

static cJSON *input_layer_json(const ct_model *m, int k)
{
    cJSON *cfg, *o = class_config("InputLayer", &cfg);
    cJSON *shape = o ? cJSON_AddArrayToObject(cfg, "batch_input_shape") : NULL;
    bool ok = shape && cJSON_AddItemToArray(shape, cJSON_CreateNull());
    for (int i = 0; ok && i < m->input_shapes[k].ndim; i++)
        ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)m->input_shapes[k].dim[i]));
    ok = ok && cJSON_AddStringToObject(cfg, "dtype", "float32")
         && cJSON_AddStringToObject(cfg, "name", m->input_names[k]);
    if (ok && m->functional) /* a graph's entries also carry their name and links */
        ok = cJSON_AddStringToObject(o, "name", m->input_names[k])
             && cJSON_AddArrayToObject(o, "inbound_nodes");
    if (ok)
        return o;
    cJSON_Delete(o);
    return NULL;
}

/* A wrapper's `layer` (and a wrapped wrapper's) gets the Keras class of its kind and the
 * module Keras 3 looks it up in: the config may say "lstm" where Keras reads "LSTM". */
static void wrapped_class_names(cJSON *cfg)
{
    for (cJSON *in = cJSON_GetObjectItemCaseSensitive(cfg, "layer"); cJSON_IsObject(in);
         in = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "config"),
                                               "layer")) {
        cJSON *cls = cJSON_GetObjectItemCaseSensitive(in, "class_name");
        const ct_layer_kind *k = cJSON_IsString(cls) ? ct_layer_kind_find(cls->valuestring) : NULL;
        if (k && cJSON_SetValuestring(cls, k->class_name) &&
            !cJSON_HasObjectItem(in, "module"))
            cJSON_AddStringToObject(in, "module", "keras.layers");
    }
}

/* MultiHeadAttention's use_causal_mask is an argument of its call in Keras 3, not of its
 * constructor: it goes into the inbound node (attention_node). */
static bool is_attention(const ct_layer *l)
{
    return !strcmp(l->kind->name, "multi_head_attention");
}

static bool is_recurrent(const ct_layer *l)
{
    static const char *const kinds[] = {"simple_rnn", "lstm", "gru", "bidirectional", NULL};
    for (int k = 0; kinds[k]; k++)
        if (!strcmp(l->kind->name, kinds[k]))
            return true;
    return false;
}

static cJSON *layer_json(const ct_layer *l)
{
    static const char *const plain[] = {"type", "name", "inputs", "trainable", NULL};
    static const char *const attention[] = {"type", "name", "inputs", "trainable",
                                            "use_causal_mask", NULL};
    const char *const *skip = is_attention(l) ? attention : plain;
    /* Keras's SpatialDropout constructors take no `trainable` (nor any other keyword the
     * base layer would): load_model fails on it. They have no weights to freeze. */
    bool spatial = !strncmp(l->kind->name, "spatial_dropout", 15);
    cJSON *cfg, *o = class_config(l->kind->class_name, &cfg);
    bool ok = o && cJSON_AddStringToObject(cfg, "name", l->name)
              && (spatial || cJSON_AddBoolToObject(cfg, "trainable", !l->frozen))
              && cJSON_AddStringToObject(cfg, "dtype", "float32")
              && (!l->cfg || l->cfg->type != CT_NODE_MAP || add_entries(cfg, l->cfg, skip, 1));
    if (ok) {
        wrapped_class_names(cfg);
        return o;
    }
    cJSON_Delete(o);
    return NULL;
}

/* Keras's reference to a tensor: [layer, node, tensor]. A shared application's output is
 * its owner's node 1, 2, ... in the order the applications are computed. */
static cJSON *tensor_ref(const ct_model *m, ct_source_id s, bool with_kwargs)
{
    const char *name;
    int node = 0, index = 0;
    if (s < 0) {
        name = m->input_names[-1 - s];
    } else {
        int li = ct_tensor_layer(m, s);
        const ct_layer *l = &m->layers[li], *owner = l->shared ? l->shared : l;
        name = owner->name;
        index = ct_tensor_index(m, s);
        for (int i = 0; l->shared && i <= li; i++)
            node += m->layers[i].shared == owner;
    }
    cJSON *a = cJSON_CreateArray();
    bool ok = a && cJSON_AddItemToArray(a, cJSON_CreateString(name)) &&
              cJSON_AddItemToArray(a, cJSON_CreateNumber(node)) &&
              cJSON_AddItemToArray(a, cJSON_CreateNumber(index)) &&
              (!with_kwargs || cJSON_AddItemToArray(a, cJSON_CreateObject()));
    if (ok)
        return a;
    cJSON_Delete(a);
    return NULL;
}

/* Keras 3's serialized tensor: its shape with the batch axis, and [layer, node, tensor]. */
static cJSON *keras_tensor(const ct_model *m, ct_source_id s)
{
    const ct_shape *shape = ct_tensor_shape(m, s);
    cJSON *cfg, *o = class_config("__keras_tensor__", &cfg);
    cJSON *dims = o ? cJSON_AddArrayToObject(cfg, "shape") : NULL;
    bool ok = dims && cJSON_AddItemToArray(dims, cJSON_CreateNull());
    for (int d = 0; ok && d < shape->ndim; d++)
        ok = cJSON_AddItemToArray(dims, cJSON_CreateNumber((double)shape->dim[d]));
    cJSON *ref = ok && cJSON_AddStringToObject(cfg, "dtype", "float32")
                     ? tensor_ref(m, s, false) : NULL;
    if (ref && cJSON_AddItemToObject(cfg, "keras_history", ref))
        return o;
    cJSON_Delete(ref);
    cJSON_Delete(o);
    return NULL;
}

/* An inbound node in Keras 3's call form: {args: [input 0 of layer j], kwargs: {}}, the
 * keywords for the caller to add into *kw. NULL when out of memory. */
static cJSON *call_node(const ct_model *m, int j, cJSON **kw)
{
    cJSON *node = cJSON_CreateObject();
    cJSON *args = node ? cJSON_AddArrayToObject(node, "args") : NULL;
    *kw = args ? cJSON_AddObjectToObject(node, "kwargs") : NULL;
    if (*kw && cJSON_AddItemToArray(args, keras_tensor(m, m->sources[j][0])))
        return node;
    cJSON_Delete(node);
    return NULL;
}

/* An attention application's node in Keras 3's form: the query as the argument, the
 * value (and key) and use_causal_mask as keywords, as Keras calls it. */
static cJSON *attention_node(const ct_model *m, int j)
{
    const ct_layer *l = &m->layers[j];
    const ct_node *causal = l->cfg ? ct_map_get(l->cfg, "use_causal_mask") : NULL;
    bool on = false;
    if (causal && causal->type == CT_NODE_SCALAR)
        on = !strcmp(causal->scalar, "true") || !strcmp(causal->scalar, "True");
    cJSON *kw, *node = call_node(m, j, &kw);
    bool ok = node && cJSON_AddItemToObject(kw, "value", keras_tensor(m, m->sources[j][1])) &&
              (l->ninputs < 3 ||
               cJSON_AddItemToObject(kw, "key", keras_tensor(m, m->sources[j][2]))) &&
              cJSON_AddBoolToObject(kw, "use_causal_mask", on);
    if (ok)
        return node;
    cJSON_Delete(node);
    return NULL;
}

/* A recurrent layer's node given initial states (inputs 1 and up): the sequence as the
 * argument and the states as the initial_state keyword, as Keras calls it. */
static cJSON *initial_state_node(const ct_model *m, int j)
{
    const ct_layer *l = &m->layers[j];
    cJSON *kw, *node = call_node(m, j, &kw);
    cJSON *states = node ? cJSON_AddArrayToObject(kw, "initial_state") : NULL;
    bool ok = states != NULL;
    for (int k = 1; ok && k < l->ninputs; k++)
        ok = cJSON_AddItemToArray(states, keras_tensor(m, m->sources[j][k]));
    if (ok)
        return node;
    cJSON_Delete(node);
    return NULL;
}

/* A layer of a Functional config: its config, and one inbound node per application (its
 * own first, then each shared application's). */
static cJSON *graph_layer_json(const ct_model *m, int i)
{
    const ct_layer *l = &m->layers[i];
    cJSON *o = layer_json(l);
    cJSON *nodes = o && cJSON_AddStringToObject(o, "name", l->name)
                       ? cJSON_AddArrayToObject(o, "inbound_nodes") : NULL;
    bool ok = nodes != NULL;
    for (int j = i; ok && j < m->nlayers; j++) {
        if (j != i && m->layers[j].shared != l)
            continue;
        if (is_attention(l)) {
            ok = cJSON_AddItemToArray(nodes, attention_node(m, j));
            continue;
        }
        if (is_recurrent(l) && m->layers[j].ninputs > 1) {
            ok = cJSON_AddItemToArray(nodes, initial_state_node(m, j));
            continue;
        }
        cJSON *node = cJSON_CreateArray();
        ok = node && cJSON_AddItemToArray(nodes, node);
        for (int k = 0; ok && k < m->layers[j].ninputs; k++)
            ok = cJSON_AddItemToArray(node, tensor_ref(m, m->sources[j][k], true));
    }
    if (ok)
        return o;
    cJSON_Delete(o);
    return NULL;
}

static bool add_refs(cJSON *cfg, const char *key, const ct_model *m, const ct_source_id *ids,
                     int n)
{
    cJSON *a = cJSON_AddArrayToObject(cfg, key);
    bool ok = a != NULL;
    for (int k = 0; ok && k < n; k++)
        ok = cJSON_AddItemToArray(a, tensor_ref(m, ids[k], false));
    return ok;
}

/* Keras's Functional model_config: InputLayer entries, every layer with its inbound
 * nodes (shared applications are further nodes of their layer), input and output layers. */
static cJSON *functional_json(const ct_model *m)
{
    cJSON *cfg, *root = class_config("Functional", &cfg);
    cJSON *layers = root && cJSON_AddStringToObject(cfg, "name", m->name)
                        ? cJSON_AddArrayToObject(cfg, "layers") : NULL;
    bool ok = layers != NULL;
    for (int k = 0; ok && k < m->ninputs; k++)
        ok = cJSON_AddItemToArray(layers, input_layer_json(m, k));
    for (int i = 0; ok && i < m->nlayers; i++)
        if (!m->layers[i].shared)
            ok = cJSON_AddItemToArray(layers, graph_layer_json(m, i));
    ct_source_id ins[CT_MAX_IO];
    for (int k = 0; k < m->ninputs; k++)
        ins[k] = -1 - k;
    ok = ok && add_refs(cfg, "input_layers", m, ins, m->ninputs) &&
         add_refs(cfg, "output_layers", m, m->outputs, m->noutputs);
    if (ok)
        return root;
    cJSON_Delete(root);
    return NULL;
}

cJSON *ct_model_config_tree(const ct_model *m)
{
    cJSON *root;
    if (m->functional) {
        root = functional_json(m);
    } else {
        cJSON *cfg;
        root = class_config("Sequential", &cfg);
        cJSON *layers = root && cJSON_AddStringToObject(cfg, "name", m->name)
                            ? cJSON_AddArrayToObject(cfg, "layers") : NULL;
        bool ok = layers && cJSON_AddItemToArray(layers, input_layer_json(m, 0));
        for (int i = 0; ok && i < m->nlayers; i++)
            ok = cJSON_AddItemToArray(layers, layer_json(&m->layers[i]));
        if (!ok) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    return root;
}

char *ct_model_config_json(const ct_model *m)
{
    cJSON *root = ct_model_config_tree(m);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}
