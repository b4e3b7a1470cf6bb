/* zip.h - the small part of the zip format a Keras 3 .keras archive needs: writing
 * entries (stored or deflated) with local headers and a central directory, and reading
 * one back through its central directory. No ZIP64, encryption, multi-disk archives or
 * methods other than stored (0) and deflate (8): such archives are refused by name. */
#ifndef CT_ZIP_H
#define CT_ZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctrain.h"

/* One entry to write; the caller owns name and data. */
typedef struct ct_zip_entry {
    const char *name;
    const void *data;
    size_t len;
    bool deflate;        /* compress with zlib's deflate, else store */
} ct_zip_entry;

/* Writes the n entries into a zip at path, through a temporary file in the same folder
 * renamed into place. Entries (and the archive) must stay under 4 GiB. 0 or -1. */
int ct_zip_write(const char *path, const ct_zip_entry *entries, int n, ct_error *err);

/* An archive read into memory, its central directory checked. Opaque; ct_zip_close frees. */
typedef struct ct_zip ct_zip;
/* Reads and checks path (at most 2 GiB). NULL on error, err naming the file and the fault. */
ct_zip *ct_zip_open(const char *path, ct_error *err);
void ct_zip_close(ct_zip *z);
/* Entries in directory order. The names live as long as z. */
int ct_zip_count(const ct_zip *z);
const char *ct_zip_name(const ct_zip *z, int i);
/* Index of the entry called name, or -1. */
int ct_zip_find(const ct_zip *z, const char *name);
/* Extracts entry i into *data (malloc'd, the caller frees; a NUL follows the *len bytes
 * so text can be read as a string), checking its size and CRC-32. 0 or -1. */
int ct_zip_extract(const ct_zip *z, int i, char **data, size_t *len, ct_error *err);

#endif
