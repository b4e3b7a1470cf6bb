/* enospc_shim.c - an LD_PRELOAD library for the command-line tests: makes one folder
 * behave like a full disk, a read-only one or slow storage, without root, a small file
 * system or a loop device.
 *
 *   CT_SHIM_DIR    absolute folder; only files below it are affected (nothing when unset)
 *   CT_SHIM_MODE   "full" (default): those files may grow by CT_SHIM_BYTES bytes in all;
 *                  a write that would grow them further is cut short, the next one fails
 *                  with ENOSPC, as on a real disk; fsync and fdatasync fail too once the
 *                  budget is gone.
 *                  "readonly": creating or opening files there for writing fails with
 *                  EACCES, as in a directory without write permission (which root ignores).
 *   CT_SHIM_BYTES  the byte budget of "full" (default 0)
 *
 * HDF5 writes with pwrite and opens with open; ctrain opens text files with fopen, makes
 * temporary files with mkstemp and syncs with fsync: all are caught here. glibc's own
 * internal calls (fwrite's flush) are not, so "full" counts only unbuffered writes.
 *
 * Ownership: nothing is allocated; the real functions are looked up once with dlsym. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The real function behind `name`, found on first use. */
#define REAL(type, name, args) \
    static type(*real) args;   \
    if (!real)                 \
        real = (type(*) args)dlsym(RTLD_NEXT, name)

static long long used;     /* bytes the files below the folder have grown by */

static const char *shim_dir(void)
{
    const char *d = getenv("CT_SHIM_DIR");
    return d && d[0] == '/' ? d : NULL;
}

static bool readonly_mode(void)
{
    const char *m = getenv("CT_SHIM_MODE");
    return m && strcmp(m, "readonly") == 0;
}

static bool slow_mode(void)
{
    const char *m = getenv("CT_SHIM_MODE");
    return m && strcmp(m, "slow") == 0;
}

static long long budget(void)
{
    const char *b = getenv("CT_SHIM_BYTES");
    return b ? atoll(b) : 0;
}

/* Whether an absolute path lies below the folder. */
static bool below(const char *path)
{
    const char *d = shim_dir();
    size_t n = d ? strlen(d) : 0;
    return d && strncmp(path, d, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Relative paths are taken from the current directory (without resolving "..": the tests
 * give plain paths). */
static bool path_below(const char *path)
{
    if (!path || !shim_dir())
        return false;
    if (path[0] == '/')
        return below(path);
    char cwd[PATH_MAX], full[2 * PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return false;
    snprintf(full, sizeof full, "%s/%s", cwd, path);
    return below(full);
}

static bool fd_below(int fd)
{
    if (!shim_dir())
        return false;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return false;
    path[n] = '\0';
    return below(path);
}

/* Like a real disk, only bytes that grow a file use up space: rewriting what a file
 * already holds (HDF5 rewrites its superblock when closing) always succeeds. */
typedef struct grant {
    ssize_t count;      /* bytes that may be written, -1 when none may (errno set) */
    off_t size;         /* the file's size before the write, -1 when it is not affected */
    off_t off;          /* where the write goes */
} grant;

/* off < 0: the write goes to the current position. */
static grant allowance(int fd, off_t off, size_t count)
{
    grant g = {(ssize_t)count, -1, off};
    struct stat st;
    if (readonly_mode() || slow_mode() || !fd_below(fd) || fstat(fd, &st) < 0)
        return g;
    if (off < 0)
        off = (fcntl(fd, F_GETFL) & O_APPEND) ? st.st_size : lseek(fd, 0, SEEK_CUR);
    if (off < 0)
        return g;
    g.size = st.st_size;
    g.off = off;
    long long left = budget() - used, end = (long long)off + (long long)count;
    if (end <= (long long)st.st_size || end - st.st_size <= left)
        return g;
    long long fits = (long long)st.st_size + (left > 0 ? left : 0) - (long long)off;
    if (fits <= 0) {
        errno = ENOSPC;
        g.count = -1;
    } else {
        g.count = (ssize_t)fits;
    }
    return g;
}

static void spend(const grant *g, ssize_t done)
{
    if (g->size < 0 || done <= 0)
        return;
    long long end = (long long)g->off + done;
    if (end > (long long)g->size)
        used += end - g->size;
}

ssize_t write(int fd, const void *buf, size_t count)
{
    REAL(ssize_t, "write", (int, const void *, size_t));
    grant g = allowance(fd, -1, count);
    if (g.count < 0)
        return -1;
    ssize_t done = real(fd, buf, (size_t)g.count);
    spend(&g, done);
    return done;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
    REAL(ssize_t, "pwrite", (int, const void *, size_t, off_t));
    grant g = allowance(fd, off, count);
    if (g.count < 0)
        return -1;
    ssize_t done = real(fd, buf, (size_t)g.count, off);
    spend(&g, done);
    return done;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off)
{
    REAL(ssize_t, "pwrite64", (int, const void *, size_t, off_t));
    grant g = allowance(fd, off, count);
    if (g.count < 0)
        return -1;
    ssize_t done = real(fd, buf, (size_t)g.count, off);
    spend(&g, done);
    return done;
}

/* Vector writes are refused whole when they would cross the budget (simpler than
 * splitting the vector; nothing here uses them for large data). */
ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(ssize_t, "writev", (int, const struct iovec *, int));
    size_t total = 0;
    for (int i = 0; i < cnt; i++)
        total += iov[i].iov_len;
    grant g = allowance(fd, -1, total);
    if (g.count >= 0 && (size_t)g.count < total) {
        errno = ENOSPC;
        g.count = -1;
    }
    if (g.count < 0)
        return -1;
    ssize_t done = real(fd, iov, cnt);
    spend(&g, done);
    return done;
}

static int sync_check(int fd)
{
    if (!readonly_mode() && !slow_mode() && fd_below(fd) && budget() - used <= 0) {
        errno = ENOSPC;
        return -1;
    }
    return 0;
}

int fsync(int fd)
{
    REAL(int, "fsync", (int));
    return sync_check(fd) < 0 ? -1 : real(fd);
}

int fdatasync(int fd)
{
    REAL(int, "fdatasync", (int));
    return sync_check(fd) < 0 ? -1 : real(fd);
}

/* ---- slow mode ---- */

static void delay_read(int fd, size_t count)
{
    if (!slow_mode() || !fd_below(fd))
        return;
    const char *r = getenv("CT_SHIM_RATE_KB");
    double rate = (r ? atof(r) : 4096.0) * 1024.0;
    if (rate <= 0)
        return;
    double seconds = (double)count / rate;
    struct timespec left = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    /* A signal wakes nanosleep early; the rest is slept out, as a disk read goes on. */
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}

ssize_t read(int fd, void *buf, size_t count)
{
    REAL(ssize_t, "read", (int, void *, size_t));
    delay_read(fd, count);
    return real(fd, buf, count);
}

ssize_t pread(int fd, void *buf, size_t count, off_t off)
{
    REAL(ssize_t, "pread", (int, void *, size_t, off_t));
    delay_read(fd, count);
    return real(fd, buf, count, off);
}

ssize_t pread64(int fd, void *buf, size_t count, off_t off)
{
    REAL(ssize_t, "pread64", (int, void *, size_t, off_t));
    delay_read(fd, count);
    return real(fd, buf, count, off);
}

/* ---- readonly mode ---- */

static bool denied(const char *path, bool for_writing)
{
    if (!for_writing || !readonly_mode() || !path_below(path))
        return false;
    errno = EACCES;
    return true;
}

static bool flags_write(int flags) { return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0; }

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    REAL(int, "open", (const char *, int, ...));
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return denied(path, flags_write(flags)) ? -1 : real(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    REAL(int, "open64", (const char *, int, ...));
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return denied(path, flags_write(flags)) ? -1 : real(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    REAL(int, "openat", (int, const char *, int, ...));
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    /* Only plain paths are checked; the tests do not open relative to a directory fd. */
    bool check = dirfd == AT_FDCWD || path[0] == '/';
    return check && denied(path, flags_write(flags)) ? -1 : real(dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
    REAL(int, "creat", (const char *, mode_t));
    return denied(path, true) ? -1 : real(path, mode);
}

FILE *fopen(const char *path, const char *mode)
{
    REAL(FILE *, "fopen", (const char *, const char *));
    return denied(path, mode[0] != 'r' || strchr(mode, '+')) ? NULL : real(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    REAL(FILE *, "fopen64", (const char *, const char *));
    return denied(path, mode[0] != 'r' || strchr(mode, '+')) ? NULL : real(path, mode);
}

int mkstemp(char *tmpl)
{
    REAL(int, "mkstemp", (char *));
    return denied(tmpl, true) ? -1 : real(tmpl);
}

int mkostemp(char *tmpl, int flags)
{
    REAL(int, "mkostemp", (char *, int));
    return denied(tmpl, true) ? -1 : real(tmpl, flags);
}

int mkdir(const char *path, mode_t mode)
{
    REAL(int, "mkdir", (const char *, mode_t));
    /* The folder itself may be made; only what would be made inside it is refused. */
    const char *d = shim_dir();
    if (readonly_mode() && path_below(path) && strcmp(path, d) != 0) {
        errno = EACCES;
        return -1;
    }
    return real(path, mode);
}
