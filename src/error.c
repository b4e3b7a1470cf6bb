/* error.c - error values carried up to the CLI. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctrain.h"
#include "guard.h"

int ct_err(ct_error *err, ct_error_code code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int ct_err_prefix(ct_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t p = strlen(prefix), room = sizeof err->msg - 1;
    if (p + 2 >= room)
        return -1;
    /* Shift the message right and put "prefix: " in front; a too-long tail is cut. */
    size_t keep = strnlen(err->msg, room);
    if (keep > room - p - 2)
        keep = room - p - 2;
    memmove(err->msg + p + 2, err->msg, keep);
    err->msg[p + 2 + keep] = 0;
    memcpy(err->msg, prefix, p);
    err->msg[p] = ':';
    err->msg[p + 1] = ' ';
    return -1;
}

const char *ct_version(void) { return PACKAGE_VERSION; }

static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "it is a directory";
    if (S_ISFIFO(mode))
        return "it is a FIFO, not a regular file";
    if (S_ISCHR(mode))
        return "it is a character device, not a regular file";
    if (S_ISBLK(mode))
        return "it is a block device, not a regular file";
    if (S_ISSOCK(mode))
        return "it is a socket, not a regular file";
    return "it is not a regular file";
}

int ct_check_regular(const char *path, const char *verb, ct_error *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return ct_err(err, CT_ERR_IO, "cannot %s %s: %s", verb, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ct_err(err, CT_ERR_IO, "cannot %s %s: %s", verb, path, file_kind(st.st_mode));
    return 0;
}

int ct_check_replaceable(const char *path, ct_error *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : ct_err(err, CT_ERR_IO, "cannot write %s: %s", path,
                                            strerror(errno));
    if (S_ISREG(st.st_mode))
        return 0;
    return ct_err(err, CT_ERR_IO, "cannot write %s: %s; refusing to replace it", path,
                  S_ISLNK(st.st_mode) ? "it is a symbolic link, not a regular file"
                                      : file_kind(st.st_mode));
}

int ct_fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    if (close(fd) < 0)
        rc = -1;
    return rc;
}

char *ct_temp_beside(const char *path, ct_error *err)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(tmp, n, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        ct_err(err, CT_ERR_IO, "cannot write %s: cannot create a temporary file beside it: %s",
               path, strerror(errno));
        free(tmp);
        return NULL;
    }
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    close(fd);
    return tmp;
}

int ct_commit_temp(const char *tmp, const char *path, ct_error *err)
{
    if (ct_fsync_path(tmp, O_RDONLY) < 0)
        return ct_err(err, CT_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (ct_check_replaceable(path, err) < 0)
        return -1;
    if (rename(tmp, path) < 0)
        return ct_err(err, CT_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    char *dir = strdup(path);
    if (!dir)
        return 0;
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
    /* Not every file system can sync a directory; the rename has happened either way. */
    ct_fsync_path(d, O_RDONLY | O_DIRECTORY);
    free(dir);
    return 0;
}

FILE *ct_open_regular(const char *path, bool append, ct_error *err)
{
    if (ct_check_replaceable(path, err) < 0)
        return NULL;
    int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_NOFOLLOW |
                            O_CLOEXEC | O_NONBLOCK, 0666);
    if (fd < 0) {
        ct_err(err, CT_ERR_IO, "cannot write %s: %s", path,
               errno == ELOOP ? "it is a symbolic link; refusing to follow it" : strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        ct_err(err, CT_ERR_IO, "cannot write %s: it is not a regular file", path);
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = fdopen(fd, append ? "a" : "w");
    if (!f) {
        close(fd);
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (append)
        fseek(f, 0, SEEK_END); /* so that ftell tells whether the file is new */
    return f;
}

/* Set by ct_request_stop (a signal handler); cleared by the run that acted on it. */
static volatile sig_atomic_t stop_requested;

void ct_request_stop(void) { stop_requested = 1; }
bool ct_stop_pending(void) { return stop_requested != 0; }

static volatile sig_atomic_t unpolled;

void ct_unpolled_begin(void) { unpolled = unpolled + 1; }
void ct_unpolled_end(void) { unpolled = unpolled - 1; }
bool ct_stop_is_prompt(void) { return unpolled == 0; }

static double stop_grace = 0.25;

double ct_stop_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ct_stop_set_grace(double seconds) { stop_grace = seconds; }

bool ct_stop_due(double started)
{
    return stop_requested && ct_stop_clock() - started >= stop_grace;
}
void ct_stop_clear(void) { stop_requested = 0; }

static ct_phase_fn phase_fn;
static void *phase_ctx;

void ct_set_phase_reporter(ct_phase_fn fn, void *ctx)
{
    phase_fn = fn;
    phase_ctx = ctx;
}

void ct_phase_progress(double started, const char *what, int64_t done, int64_t total,
                       const char *unit)
{
    if (phase_fn)
        phase_fn(phase_ctx, what, done, total, unit, ct_stop_clock() - started);
}

int ct_stop_error(ct_error *err, const char *what)
{
    return ct_err(err, CT_ERR_INTERRUPT, "stopped by a signal while %s", what);
}
