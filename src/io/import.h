/* import.h - the output side shared by the importers (internal; import.c): an HDF5 file
 * written through a temporary file beside it, and the bound on a line of text.
 *
 * Ownership: ct_out_open fills the caller's ct_out_file (usually on its stack), which
 * owns the open HDF5 handles and the temporary's name until ct_out_close, called on
 * every path, success or not. */
#ifndef CT_IMPORT_H
#define CT_IMPORT_H

#include <hdf5.h>

#include "ctrain.h"

/* The longest line the CSV readers take (man/ctrain.1 documents it): a file without line
 * ends, or /dev/zero, would otherwise be read into memory as one line. */
#define CT_CSV_LINE_MAX (1u << 20)

/* An open output file and the group datasets go into. Everything is written to a
 * temporary file beside the output (a copy of it when it exists), which replaces the
 * output only once complete: a full disk or an error half way leaves the output as it
 * was. */
typedef struct ct_out_file {
    const char *path;
    const char *group;   /* as given, for messages */
    char *tmp;           /* "<path>.tmp-XXXXXX", removed unless renamed over path */
    hid_t file, loc;     /* loc: the group (the file itself for the root) */
} ct_out_file;

/* Opens path read-write through its temporary, creating it if missing, and the group
 * (with its parents; NULL, "" or "/" is the root). Call inside ct_h5_quiet_on. */
int ct_out_open(ct_out_file *o, const char *path, const char *group, ct_error *err);
/* Writes a contiguous dataset `name` in the group, replacing any existing one. */
int ct_out_write(ct_out_file *o, const char *name, hid_t file_type, hid_t mem_type, int rank,
                 const hsize_t *dims, const void *data, ct_error *err);
/* Closes the file and puts the temporary in place of the output. */
int ct_out_finish(ct_out_file *o, ct_error *err);
/* Releases whatever is still open and removes an uncommitted temporary. */
void ct_out_close(ct_out_file *o);

#endif
