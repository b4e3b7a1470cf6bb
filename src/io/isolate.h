/* isolate.h - runs a step that may crash or hang in a child process (internal).
 *
 * HDF5 1.10 trusts some structures of a file it reads: a damaged global heap makes it read
 * out of bounds (crash), loop, or leak while converting variable-length data, inside one
 * H5Aread, with nothing the caller can check first. Such a read runs in a forked child
 * that sends what it read through a pipe; the parent sees a crash or a timeout as an
 * error, never as its own death.
 *
 * Ownership: *out is allocated here (malloc) and freed by the caller. */
#ifndef CT_ISOLATE_H
#define CT_ISOLATE_H

#include <stdbool.h>
#include <stddef.h>

/* The child's work: writes its result to fd (ct_isolated_write) and returns 0, or
 * nonzero when it failed. */
typedef int (*ct_isolated_fn)(void *ctx, int fd);

typedef enum {
    CT_ISOLATED_OK = 0,      /* the child returned 0; *out holds what it wrote */
    CT_ISOLATED_FAILED,      /* it returned nonzero, died (a crash) or wrote over the limit */
    CT_ISOLATED_TIMEOUT,     /* it ran past the time limit and was killed */
    CT_ISOLATED_NO_CHILD,    /* no child could be started (errno says why) */
} ct_isolated_status;

/* Runs fn(ctx, fd) in a child for at most `seconds`, collecting up to max_bytes of its
 * output into *out (*len bytes). */
ct_isolated_status ct_isolated_run(ct_isolated_fn fn, void *ctx, double seconds,
                                   size_t max_bytes, char **out, size_t *len);

/* Files on which a child died or hung are remembered for the process's life (device,
 * inode, size and modification time), so that the same file is refused at once the next
 * time instead of after another time limit. ct_isolated_known_bad: whether path is one,
 * and how its child ended. */
bool ct_isolated_known_bad(const char *path, ct_isolated_status *how);
void ct_isolated_mark_bad(const char *path, ct_isolated_status how);

/* Writes n bytes to fd whole; 0 or -1. For the child. */
int ct_isolated_write(int fd, const void *data, size_t n);

#endif
