/* h5image.c - HDF5 files built in memory and written out in one go (see h5image.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5image.h"
#include "h5util.h"

/* The memory is kept when the file closes (HDF5 frees it otherwise), so the closed file's
 * bytes, superblock final, can be written out. */
static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op, (void)udata;
    return malloc(size ? size : 1);
}

static void *image_memcpy(void *dest, const void *src, size_t size, H5FD_file_image_op_t op,
                          void *udata)
{
    (void)op, (void)udata;
    return memcpy(dest, src, size);
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op, (void)udata;
    return realloc(ptr, size ? size : 1);
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    ct_h5_image *img = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && img && !img->kept)
        img->kept = ptr;
    else
        free(ptr);
    return 0;
}

static void *image_udata_copy(void *udata) { return udata; }
static herr_t image_udata_free(void *udata) { (void)udata; return 0; }

hid_t ct_h5_image_create(ct_h5_image *img, const char *name)
{
    img->kept = NULL;
    img->cb = (H5FD_file_image_callbacks_t){image_malloc, image_memcpy, image_realloc,
                                            image_free, image_udata_copy, image_udata_free,
                                            img};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file = H5I_INVALID_HID;
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) >= 0
        && H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) >= 0
        && H5Pset_file_image_callbacks(fapl, &img->cb) >= 0
        && H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0)
        file = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    return file;
}

/* The end of the file an HDF5 image holds, from its superblock (versions 2 and 3: the
 * signature, 4 bytes, then base, extension, end-of-file and root addresses); 0 if not. */
static size_t image_size(const unsigned char *p, size_t alloc)
{
    if (alloc < 48 || memcmp(p, "\211HDF\r\n\032\n", 8) != 0 || (p[8] != 2 && p[8] != 3))
        return 0;
    size_t o = p[9];
    if (o != 8 && o != 4)
        return 0;
    uint64_t eof = 0;
    for (size_t i = 0; i < o; i++)
        eof |= (uint64_t)p[12 + 2 * o + i] << (8 * i);
    return eof <= alloc ? (size_t)eof : 0;
}

/* Writes n bytes to path (which exists), replacing its contents. */
static int write_bytes(const char *path, const void *data, size_t n, ct_error *err)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return ct_err(err, CT_ERR_IO, "writing %s: %s", path, strerror(errno));
    const char *p = data;
    int rc = 0;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = ct_err(err, CT_ERR_IO, "writing %s: %s", path,
                        strerror(w < 0 ? errno : ENOSPC));
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    if (close(fd) < 0 && rc == 0)
        rc = ct_err(err, CT_ERR_IO, "writing %s: %s", path, strerror(errno));
    return rc;
}

static int image_err(ct_error *err, const char *path)
{
    char why[CT_H5_REASON_MAX];
    ct_h5_failure(why);
    return ct_err(err, CT_ERR_IO, "writing %s%s%s", path, why[0] ? ": " : "", why);
}

int ct_h5_image_take(ct_h5_image *img, hid_t file, const char *path, void **bytes,
                     size_t *len, ct_error *err)
{
    hsize_t alloc = 0;
    int rc = 0;
    *bytes = NULL;
    *len = 0;
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 || H5Fget_filesize(file, &alloc) < 0)
        rc = image_err(err, path);
    if (H5Fclose(file) < 0 && rc == 0)
        rc = image_err(err, path);
    void *image = img->kept;
    img->kept = NULL;
    size_t size = image ? image_size(image, (size_t)alloc) : 0;
    if (rc == 0 && size == 0)
        rc = ct_err(err, CT_ERR_INTERNAL, "writing %s: HDF5 built no file image", path);
    if (rc < 0) {
        free(image);
        return rc;
    }
    *bytes = image;
    *len = size;
    return 0;
}

int ct_h5_image_write(ct_h5_image *img, hid_t file, const char *path, ct_error *err)
{
    hsize_t alloc = 0;
    int rc = 0;
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 || H5Fget_filesize(file, &alloc) < 0)
        rc = image_err(err, path);
    if (H5Fclose(file) < 0 && rc == 0)
        rc = image_err(err, path);
    void *image = img->kept;
    img->kept = NULL;
    size_t size = image ? image_size(image, (size_t)alloc) : 0;
    if (rc == 0 && size == 0)
        rc = ct_err(err, CT_ERR_INTERNAL, "writing %s: HDF5 built no file image", path);
    /* Most bytes reach the disk here, so this is where a full disk usually shows. */
    if (rc == 0)
        rc = write_bytes(path, image, size, err);
    free(image);
    return rc;
}
