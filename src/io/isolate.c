/* isolate.c - a step that may crash or hang, run in a forked child (see isolate.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guard.h"
#include "h5util.h"
#include "isolate.h"

/* Under a sanitizer the child's expected crash must not run the death callbacks the
 * program installed (a fuzzer saving its input as a finding): the parent handles it. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

int ct_isolated_write(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void run_child(ct_isolated_fn fn, void *ctx, int fd)
{
    /* a child left behind by a parent that was killed would go on looping */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* what a crash prints (glibc's checks, a sanitizer's report) is not the user's news:
     * the parent says what happened */
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, STDERR_FILENO);
        close(null);
    }
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        signal(faults[i], SIG_DFL);
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback(NULL);
    /* _exit: no atexit handlers (HDF5's own shutdown, leak checks) in the copy */
    _exit(fn(ctx, fd) == 0 ? 0 : 1);
}

/* Reads the child's output until it closes the pipe, the deadline or max_bytes. */
static ct_isolated_status collect(int fd, double deadline, size_t max_bytes, char **out,
                                  size_t *len)
{
    size_t cap = 0;
    for (;;) {
        double left = deadline - ct_stop_clock();
        if (left <= 0)
            return CT_ISOLATED_TIMEOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, (int)(left * 1000) + 1);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            continue; /* the deadline check above ends it */
        if (*len == cap) {
            /* one byte past the limit tells output that is too long */
            size_t want = cap ? 2 * cap : 4096;
            if (want > max_bytes + 1)
                want = max_bytes + 1;
            char *grown = want > cap ? realloc(*out, want) : NULL;
            if (!grown)
                return CT_ISOLATED_FAILED;
            *out = grown;
            cap = want;
        }
        ssize_t got = read(fd, *out + *len, cap - *len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got == 0 ? CT_ISOLATED_OK : CT_ISOLATED_FAILED;
        *len += (size_t)got;
        if (*len > max_bytes)
            return CT_ISOLATED_FAILED;
    }
}

ct_isolated_status ct_isolated_run(ct_isolated_fn fn, void *ctx, double seconds,
                                   size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fds[2];
    if (pipe(fds) < 0)
        return CT_ISOLATED_NO_CHILD;
    /* not while another thread is inside HDF5: the child would inherit it half-way */
    ct_h5_lock();
    pid_t pid = fork();
    if (pid == 0)
        ct_h5_lock_reset();
    else
        ct_h5_unlock();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return CT_ISOLATED_NO_CHILD;
    }
    if (pid == 0) {
        close(fds[0]);
        run_child(fn, ctx, fds[1]);
    }
    close(fds[1]);
    ct_isolated_status st = collect(fds[0], ct_stop_clock() + seconds, max_bytes, out, len);
    close(fds[0]);
    if (st != CT_ISOLATED_OK)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (st == CT_ISOLATED_OK && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        st = CT_ISOLATED_FAILED;
    if (st != CT_ISOLATED_OK) {
        free(*out);
        *out = NULL;
        *len = 0;
    }
    return st;
}

#define BAD_FILES 16

typedef struct bad_file {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    ct_isolated_status how;
} bad_file;

static bad_file bad[BAD_FILES];
static int nbad, next_bad;

static bool same_file(const bad_file *b, const struct stat *st)
{
    return b->dev == st->st_dev && b->ino == st->st_ino && b->size == st->st_size &&
           b->mtime.tv_sec == st->st_mtim.tv_sec && b->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

bool ct_isolated_known_bad(const char *path, ct_isolated_status *how)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return false;
    for (int i = 0; i < nbad; i++)
        if (same_file(&bad[i], &st)) {
            *how = bad[i].how;
            return true;
        }
    return false;
}

void ct_isolated_mark_bad(const char *path, ct_isolated_status how)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return;
    bad[next_bad] = (bad_file){st.st_dev, st.st_ino, st.st_size, st.st_mtim, how};
    next_bad = (next_bad + 1) % BAD_FILES;
    if (nbad < BAD_FILES)
        nbad++;
}
