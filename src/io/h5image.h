/* h5image.h - HDF5 files built in memory (the core driver, no backing store) and written
 * to disk in one go (internal). HDF5 1.10 never meets a full disk this way, which it
 * survives badly: a create or close that fails half way leaves the file half open, and
 * its exit handler then loops or crashes. Writers put the bytes in a temporary file
 * (ct_temp_beside) and rename it into place.
 *
 * Ownership: the image's memory belongs to HDF5 until ct_h5_image_write, which closes the
 * file and frees it; the ct_h5_image itself is the caller's (usually on its stack) and
 * must stay where it is while the file is open. */
#ifndef CT_H5IMAGE_H
#define CT_H5IMAGE_H

#include <hdf5.h>

#include "ctrain.h"

typedef struct ct_h5_image {
    void *kept;                      /* the closed file's bytes */
    H5FD_file_image_callbacks_t cb;
} ct_h5_image;

/* Creates an empty in-memory file in the 1.8 format (which stores attributes over 64 KiB
 * densely); closing it closes whatever is still open in it. name is for HDF5's messages.
 * Returns the file or a negative id. */
hid_t ct_h5_image_create(ct_h5_image *img, const char *name);

/* Flushes and closes file (always), then writes its bytes to path (an existing file,
 * truncated). Errors name path. Returns 0 or -1. */
int ct_h5_image_write(ct_h5_image *img, hid_t file, const char *path, ct_error *err);
/* As ct_h5_image_write, but hands the file's bytes to the caller (*bytes, freed with
 * free) instead of writing them; path only names the file in errors. */
int ct_h5_image_take(ct_h5_image *img, hid_t file, const char *path, void **bytes,
                     size_t *len, ct_error *err);

#endif
