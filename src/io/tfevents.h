/* tfevents.h - TensorFlow event files, the files TensorBoard reads.
 *
 * A file is a sequence of TFRecords: the data's length (uint64, little-endian), the
 * masked CRC32C of those 8 bytes (uint32, little-endian), the data, and the masked CRC32C
 * of the data. Each record's data is a serialized Event (src/io/tensorboard.proto); the
 * first holds only the wall time and the file version "brain.Event:2", each later one one
 * summary value (a scalar, a histogram or a string tensor) with its step.
 *
 * Ownership: ct_tfevents_open allocates a writer; ct_tfevents_close flushes, closes and
 * frees it (also after an error). Nothing else allocates what the caller must free. */
#ifndef CT_TFEVENTS_H
#define CT_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "ctrain.h"

/* CRC32C (Castagnoli, the reflected polynomial 0x82F63B78) of n bytes. */
uint32_t ct_crc32c(const void *data, size_t n);
/* TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8, in 32 bits. */
uint32_t ct_crc32c_mask(uint32_t crc);

/* Buckets of a histogram, equal in width between its smallest and largest value. */
#define CT_TFEVENTS_BUCKETS 30

typedef struct ct_tfevents ct_tfevents;

/* Creates dir (with missing parents) and in it a new file
 * events.out.tfevents.<unix seconds>.<host name>.<pid>.v2, as TensorFlow names them; when
 * that name is taken (a second writer of this process in the same second), the next
 * second's, so the files sort in the order they were made, as TensorBoard reads them.
 * Never opens an existing file or follows a symbolic link in its place.
 * Writes the file-version event. NULL with err set ("cannot write PATH: why"). */
ct_tfevents *ct_tfevents_open(const char *dir, ct_error *err);
/* The file's path (owned by the writer). */
const char *ct_tfevents_path(const ct_tfevents *w);

/* One event with one summary value each, at step. A scalar is stored as a float
 * (simple_value). A histogram counts the n finite values of x (its num) in
 * CT_TFEVENTS_BUCKETS buckets (one centred bucket one unit wide when all are equal). A
 * string is a DT_STRING tensor of shape [] whose metadata names the plugin that shows it
 * ("text" for TensorBoard's Text tab) with plugin_content (may be NULL: none). Written
 * into the file's buffer: ct_tfevents_flush makes them visible. Return 0 or -1. */
int ct_tfevents_scalar(ct_tfevents *w, const char *tag, int64_t step, double value,
                       ct_error *err);
int ct_tfevents_histogram(ct_tfevents *w, const char *tag, int64_t step, const float *x,
                          int64_t n, ct_error *err);
int ct_tfevents_string(ct_tfevents *w, const char *tag, int64_t step, const char *plugin,
                       const char *plugin_content, const char *text, ct_error *err);
/* Writes what is buffered to the file; a write that failed (a full disk) is reported
 * here if not before. 0 or -1. */
int ct_tfevents_flush(ct_tfevents *w, ct_error *err);
/* Flushes, closes and frees w (NULL: nothing). 0, or -1 when the last writes failed. */
int ct_tfevents_close(ct_tfevents *w, ct_error *err);

#endif
