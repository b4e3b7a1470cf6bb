/* guard.h - checks shared by every reader of user-named files, and the stop flag that
 * long phases poll (internal; not part of libctrain's API).
 *
 * Nothing here allocates. */
#ifndef CT_GUARD_H
#define CT_GUARD_H

#include <stdbool.h>
#include <stdio.h>

#include "ctrain.h"

/* Refuses a path that is not a regular file before anything opens it: a FIFO would block
 * the open (or the read) forever, a device such as /dev/zero never ends, a directory or
 * a socket cannot be read. The message is "cannot <verb> <path>: <reason>", with the
 * system's reason when stat fails ("No such file or directory"). Returns 0 or -1. */
int ct_check_regular(const char *path, const char *verb, ct_error *err);

/* For a writer that puts a new file in place of path (a temporary renamed over it) or
 * opens it for writing: path is absent or a regular file, never a symbolic link, a
 * directory, a FIFO or a device, which is refused with "cannot write <path>: it is ...;
 * refusing to replace it". Returns 0 or -1. */
int ct_check_replaceable(const char *path, ct_error *err);
/* Opens path for writing (truncated, or appended to) after ct_check_replaceable: never
 * through a symbolic link (O_NOFOLLOW), never blocking on a FIFO. NULL on error. */
FILE *ct_open_regular(const char *path, bool append, ct_error *err);
/* fsync of path opened with flags (O_RDONLY for a file, O_RDONLY | O_DIRECTORY for the
 * folder that holds a renamed file). Returns 0, or -1 with errno set. */
int ct_fsync_path(const char *path, int flags);

/* A new file is written as "<path>.tmp-XXXXXX" beside path and renamed over it once
 * complete, so a full disk or an error half way leaves path as it was.
 * ct_temp_beside creates the temporary (empty, with the permissions a new file gets) and
 * returns its name, which the caller frees (and unlinks unless committed); NULL with err
 * set when it cannot. ct_commit_temp makes it durable and renames it over path, which
 * must be replaceable (ct_check_replaceable); 0 or -1 (the temporary is left). */
char *ct_temp_beside(const char *path, ct_error *err);
int ct_commit_temp(const char *tmp, const char *path, ct_error *err);

/* True once ct_request_stop has been called (SIGINT or SIGTERM during fit) and until
 * ct_stop_clear. The training loop checks it after each batch. */
bool ct_stop_pending(void);
/* For long phases (validation, loading, streaming, import), which poll it between blocks
 * (well under a second apart) and stop with CT_ERR_INTERRUPT: true when a stop is pending
 * and the phase, begun at `started` (ct_stop_clock), has run for the grace time (0.25 s
 * unless ct_stop_set_grace changed it). A phase that ends sooner finishes, and the stop
 * takes effect where fit checks next, after the first batch at the latest. */
bool ct_stop_due(double started);
/* Seconds on a monotonic clock, for ct_stop_due. */
double ct_stop_clock(void);
/* Sets the grace time of ct_stop_due (tests use 0). */
void ct_stop_set_grace(double seconds);
/* Brackets a stretch that cannot poll the stop flag (ct_stop_is_prompt is false inside);
 * they nest. */
void ct_unpolled_begin(void);
void ct_unpolled_end(void);
/* Forgets a stop request once the run that acted on it is over. */
void ct_stop_clear(void);
/* Tells the reporter set with ct_set_phase_reporter (if any) how far a phase begun at
 * `started` is. */
void ct_phase_progress(double started, const char *what, int64_t done, int64_t total,
                       const char *unit);
/* Sets err to CT_ERR_INTERRUPT: "stopped by a signal while <what>". Returns -1. */
int ct_stop_error(ct_error *err, const char *what);

#endif
