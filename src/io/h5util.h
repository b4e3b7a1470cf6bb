/* h5util.h - HDF5 plumbing shared by the dataset, import and weights code (internal).
 *
 * HDF5 prints its error stack to stderr by default; library code must not print, so every
 * stretch of HDF5 calls is bracketed by ct_h5_quiet_on / ct_h5_quiet_off, and the
 * innermost HDF5 reason is read back into our own messages instead.
 *
 * While quiet, the first failing HDF5 call's reason is also remembered, because closing
 * handles after a failure clears HDF5's error stack before the caller can word its message.
 *
 * Ownership: reasons are written into the caller's CT_H5_REASON_MAX-byte buffer;
 * ct_h5_local_access returns a property list the caller closes with H5Pclose; the close
 * helpers release HDF5 handles only. Nothing else allocates. */
#ifndef CT_H5UTIL_H
#define CT_H5UTIL_H

#include <hdf5.h>

#include "ctrain.h"

/* HDF5 1.12 renamed the object/link info calls; these name whichever this HDF5 has. */
#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t ct_h5_oinfo;
typedef H5L_info2_t ct_h5_linfo;
#define CT_H5_OVISIT(id, cb, data) \
    H5Ovisit3(id, H5_INDEX_NAME, H5_ITER_INC, cb, data, H5O_INFO_BASIC)
#define CT_H5_LGET_INFO(loc, name, info, lapl) H5Lget_info2(loc, name, info, lapl)
#define CT_H5_VLEN_RECLAIM(type, space, buf) H5Treclaim(type, space, H5P_DEFAULT, buf)
#else
typedef H5O_info_t ct_h5_oinfo;
typedef H5L_info_t ct_h5_linfo;
#define CT_H5_OVISIT(id, cb, data) \
    H5Ovisit2(id, H5_INDEX_NAME, H5_ITER_INC, cb, data, H5O_INFO_BASIC)
#define CT_H5_LGET_INFO(loc, name, info, lapl) H5Lget_info(loc, name, info, lapl)
#define CT_H5_VLEN_RECLAIM(type, space, buf) H5Dvlen_reclaim(type, space, H5P_DEFAULT, buf)
#endif

/* HDF5 (Debian's build) is not thread-safe: every read from a thread other than the
 * training thread (a loader's reader thread) holds this lock, and so does the training
 * thread's reading and a fork (isolate.h), so that no copy of the process starts while
 * another thread is inside HDF5. */
void ct_h5_lock(void);
void ct_h5_unlock(void);
/* In a child just forked (the lock was held at the fork): a fresh, unlocked lock. */
void ct_h5_lock_reset(void);

/* Size of the buffers that ct_h5_reason and ct_h5_create_reason fill. */
#define CT_H5_REASON_MAX 256

/* The automatic error printer that was installed before ct_h5_quiet_on. */
typedef struct ct_h5_quiet {
    H5E_auto2_t fn;
    void *data;
} ct_h5_quiet;

/* Turns off HDF5's automatic error printing, remembering the previous handler in q. The
 * outermost call also forgets the failure reason remembered before. */
void ct_h5_quiet_on(ct_h5_quiet *q);
/* Restores the handler saved by ct_h5_quiet_on. */
void ct_h5_quiet_off(const ct_h5_quiet *q);
/* The reason of the first HDF5 call that failed since the outermost ct_h5_quiet_on: the
 * system's message when HDF5 gives one ("No space left on device"), else HDF5's innermost
 * description; "" if nothing failed. Returns buf. */
const char *ct_h5_failure(char buf[CT_H5_REASON_MAX]);

/* The innermost message on HDF5's error stack ("" if none); call right after a failure.
 * Returns buf. */
const char *ct_h5_reason(char buf[CT_H5_REASON_MAX]);
/* HDF5's reason for a failed create, cut down to the system's message when it has one.
 * Returns buf. */
const char *ct_h5_create_reason(char buf[CT_H5_REASON_MAX]);
/* Before H5Fopen: fails with the system's reason when path is missing, and refuses a path
 * that is not a regular file (a directory, which HDF5 would report as a damaged file; a
 * FIFO, on which the open would block; a device or a socket). Returns 0 or -1. */
int ct_h5_check_path(const char *path, ct_error *err);
/* Sets err for a failed H5Fopen of path (a lock conflict or a bad file); returns -1. */
int ct_h5_open_error(const char *path, ct_error *err);

/* Refuses a virtual dataset (H5D_VIRTUAL): its data is mapped from other datasets, maybe in
 * other files, maybe from itself (HDF5 then recurses until the stack overflows), and a
 * missing source reads as fill values. Call right after opening, before anything reads
 * its extent or data; ct_h5_check_storage calls it too. Returns 0 or -1. */
int ct_h5_check_layout(hid_t dataset, const char *label, ct_error *err);
/* Refuses a dataset whose raw data lives in external files (HDF5 "external storage"):
 * reading it would read whatever file it names. label names the dataset in the message
 * ("file.h5:/x"). Also refuses what HDF5 would overrun its buffers on: a compact dataset
 * whose stored bytes are fewer than its shape and type need, and a number type of a
 * layout no real file uses (bits past its size, 3 or 1025 bytes...): a damaged file. And
 * a dataset whose data was never (fully) written: contiguous storage shorter than its
 * shape needs, or chunks missing, which would read as fill values. Returns 0 or -1. */
int ct_h5_check_storage(hid_t dataset, const char *label, ct_error *err);
/* Walks each component of the link path `name` in `loc` and refuses an external link to
 * another file, naming path, the link and its target; soft links are followed as usual.
 * A component that does not exist sets *missing (when not NULL) and returns 0 without
 * setting err, so the caller can word its own "not found". Returns 0 or -1. */
int ct_h5_check_links(hid_t loc, const char *name, const char *path, bool *missing,
                      ct_error *err);
/* Whether the HDF5 file at path holds an object `name` reached through links inside the
 * file; false also when the file cannot be opened (its reader says why). */
bool ct_h5_has_object(const char *path, const char *name);
/* An access property list of class cls (H5P_LINK_ACCESS, H5P_GROUP_ACCESS for H5Gopen2,
 * H5P_DATASET_ACCESS for H5Dopen2) that refuses to follow external links, also when a soft
 * link leads through one; H5I_INVALID_HID on failure. The caller closes it with H5Pclose. */
hid_t ct_h5_local_access(hid_t cls);

/* Close the handle if it is open and mark it closed (H5I_INVALID_HID). */
void ct_h5_close_dataset(hid_t *id);
void ct_h5_close_space(hid_t *id);
void ct_h5_close_group(hid_t *id);

#endif
