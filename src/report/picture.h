/* picture.h - what the plot and the diagram share: a growing memory buffer pictures are
 * rendered into, the format a file name asks for, and writing the result to a file.
 *
 * Ownership: a ct_picture's data is malloc'd; whoever holds the struct frees data (or
 * hands it on, as the public *_mem functions do to their caller). */
#ifndef CT_PICTURE_H
#define CT_PICTURE_H

#include "ctrain.h"

typedef struct ct_picture {
    unsigned char *data;
    size_t size, cap;
    bool failed;      /* an append ran out of memory; data holds what came before */
} ct_picture;

/* Appends n bytes; returns -1 (and sets failed) when memory runs out. */
int ct_picture_append(ct_picture *p, const void *bytes, size_t n);
void ct_picture_free(ct_picture *p);

/* The format path's extension names ("svg" for "a/b.SVG"), copied lower-case into fmt,
 * when it is one of allowed (NULL-terminated); else an error naming the path and the
 * formats allowed. */
int ct_picture_format_of(const char *path, const char *const *allowed, char *fmt, size_t n,
                         ct_error *err);
/* Whether fmt is one of allowed; else an error naming the formats allowed. */
int ct_picture_check_format(const char *fmt, const char *const *allowed, ct_error *err);
/* Writes the bytes to a temporary file beside path and renames it over path, so a failure
 * leaves path as it was; a path that is a symbolic link, a directory, a FIFO or a device
 * is refused (guard.h). */
int ct_picture_write(const char *path, const unsigned char *data, size_t size, ct_error *err);

#endif
