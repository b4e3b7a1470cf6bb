/* h5util.c - HDF5 error handling and handle closing shared by the HDF5 code. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "h5util.h"

void ct_h5_quiet_on(ct_h5_quiet *q)
{
    if (H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data) < 0) {
        q->fn = NULL;
        q->data = NULL;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void ct_h5_quiet_off(const ct_h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

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
    ct_h5_reason(buf);
    const char *m = strstr(buf, "error message = '");
    if (m) {
        m += strlen("error message = '");
        size_t n = strcspn(m, "'");
        memmove(buf, m, n);
        buf[n] = '\0';
    }
    return buf;
}

int ct_h5_check_path(const char *path, ct_error *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return ct_err(err, CT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return ct_err(err, CT_ERR_IO, "cannot open %s: it is a directory", path);
    return 0;
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
    return ct_err(err, CT_ERR_DATA, "%s is not an HDF5 file or is damaged", path);
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
