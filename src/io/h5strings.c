/* h5strings.c - string datasets read in a child process (see h5strings.h). The child sends
 * the attribute and then each string, every one as a 32-bit length and its bytes. */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "h5strings.h"
#include "isolate.h"

#define STRINGS_MAX_BYTES (256u << 20) /* what the child may send */

typedef struct strings_job {
    const char *path, *name, *attr;
    int64_t min, max;
} strings_job;

static int send_str(int fd, const char *s, size_t len)
{
    uint32_t n = (uint32_t)len;
    return ct_isolated_write(fd, &n, sizeof n) || ct_isolated_write(fd, s, len) ? -1 : 0;
}

static int send_attr(hid_t d, const char *name, int fd)
{
    char value[64] = "";
    if (name && H5Aexists(d, name) > 0) {
        hid_t a = H5Aopen(d, name, H5P_DEFAULT), t = H5Tcopy(H5T_C_S1);
        if (a < 0 || H5Tset_size(t, sizeof value) < 0 || H5Aread(a, t, value) < 0)
            return -1;
        value[sizeof value - 1] = '\0';
    }
    return send_str(fd, value, strlen(value));
}

/* The child's work; its exit status 1 (bad dataset) or 2 (none) is read as a failure. */
static int send_strings(hid_t d, const strings_job *j, int fd)
{
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_ndims(space) != 1 ||
        n < j->min || n > j->max || send_attr(d, j->attr, fd) < 0)
        return 1;
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mem, H5Tget_cset(type));
    if (H5Tis_variable_str(type) > 0) {
        char **s = calloc((size_t)n, sizeof *s);
        if (!s || H5Tset_size(mem, H5T_VARIABLE) < 0 ||
            H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) < 0)
            return 1;
        for (hssize_t i = 0; i < n; i++)
            if (send_str(fd, s[i] ? s[i] : "", s[i] ? strnlen(s[i], CT_STRING_MAX) : 0) < 0)
                return 1;
        return 0; /* the process ends: nothing to reclaim */
    }
    size_t w = H5Tget_size(type);
    char *buf = w > 0 && w <= CT_STRING_MAX ? malloc((size_t)n * w) : NULL;
    /* null-padded in memory: a string as long as the width keeps its last byte */
    if (!buf || H5Tset_size(mem, w) < 0 || H5Tset_strpad(mem, H5T_STR_NULLPAD) < 0 ||
        H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        return 1;
    for (hssize_t i = 0; i < n; i++)
        if (send_str(fd, buf + i * (hssize_t)w, strnlen(buf + i * (hssize_t)w, w)) < 0)
            return 1;
    return 0;
}

static int strings_child(void *ctx, int fd)
{
    const strings_job *j = ctx;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(j->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, j->name, H5P_DEFAULT) : H5I_INVALID_HID;
    return d < 0 ? 2 : send_strings(d, j, fd);
}

/* Splits the child's answer into out; 0 or -1 (short, damaged, or out of memory). */
static int parse(const char *p, size_t len, ct_strings *out)
{
    size_t pos = 0, cap = 0;
    for (int64_t i = -1; pos < len; i++) {
        uint32_t k;
        if (len - pos < sizeof k)
            return -1;
        memcpy(&k, p + pos, sizeof k);
        pos += sizeof k;
        if (len - pos < k)
            return -1;
        if (i < 0) {
            snprintf(out->attr, sizeof out->attr, "%.*s", (int)k, p + pos);
        } else {
            if ((size_t)out->n == cap) {
                cap = cap ? 2 * cap : 256;
                char **t = realloc(out->s, cap * sizeof *t);
                if (!t)
                    return -1;
                out->s = t;
            }
            if (!(out->s[out->n] = strndup(p + pos, k)))
                return -1;
            out->n++;
        }
        pos += k;
    }
    return 0;
}

int ct_h5_read_strings(const char *path, const char *name, const char *attr, int64_t min,
                       int64_t max, const char *what, ct_strings *out, ct_error *err)
{
    *out = (ct_strings){0};
    if (ct_check_regular(path, "open", err) < 0)
        return -1;
    strings_job job = {path, name, attr, min, max};
    char *got = NULL;
    size_t len = 0;
    ct_isolated_status st = ct_isolated_run(strings_child, &job, 30.0, STRINGS_MAX_BYTES, &got,
                                            &len);
    int rc = st == CT_ISOLATED_OK && parse(got, len, out) == 0 && out->n >= min ? 0 : -1;
    free(got);
    if (rc < 0) {
        ct_strings_free(out);
        return ct_err(err, CT_ERR_DATA, "%s: cannot read %s '%s' (a 1-D dataset of %lld to "
                      "%lld strings)", path, what, name, (long long)min, (long long)max);
    }
    return 0;
}

void ct_strings_free(ct_strings *s)
{
    for (int64_t i = 0; i < s->n; i++)
        free(s->s[i]);
    free(s->s);
    *s = (ct_strings){0};
}
