/* h5strings.h - a 1-D dataset of strings read from an HDF5 file in a child process (see
 * isolate.h), so a damaged file cannot hang or crash the caller: a vocabulary, the class
 * names an import stored.
 *
 * Ownership: ct_h5_read_strings fills a caller's ct_strings with malloc'd strings in a
 * malloc'd array; ct_strings_free releases them (safe on a zeroed struct). */
#ifndef CT_H5STRINGS_H
#define CT_H5STRINGS_H

#include <stdint.h>

#include "ctrain.h"

#define CT_STRING_MAX 1024 /* bytes of one string; longer ones are cut */

typedef struct ct_strings {
    char **s;
    int64_t n;
    char attr[64]; /* the string attribute asked for ("" when absent) */
} ct_strings;

/* Reads dataset `name` of the file at path: 1-D, strings (fixed or variable length), at
 * least min and at most max of them. attr (may be NULL): a string attribute of the dataset
 * to read into out->attr as well. Returns 0; or -1 with err saying `what` (such as "the
 * vocabulary") cannot be read, and why where the child could tell. */
int ct_h5_read_strings(const char *path, const char *name, const char *attr, int64_t min,
                       int64_t max, const char *what, ct_strings *out, ct_error *err);
void ct_strings_free(ct_strings *s);

#endif
