/* fuzz_util.h - pieces shared by the libFuzzer targets (header-only).
 *
 * The loaders under test take file names, so every input is written to one file in a
 * per-process folder under /tmp (several fuzzing jobs can run at once); the folder is
 * removed at exit. Targets that read HDF5 define FZ_HDF5 before including this. */
#ifndef CT_FUZZ_UTIL_H
#define CT_FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Allocations over 256 MiB fail (return NULL) instead of aborting, so the library's
 * out-of-memory paths are exercised rather than reported as crashes. Leak detection stays
 * on. */
#define FZ_ASAN_OPTIONS "allocator_may_return_null=1:max_allocation_size_mb=256:detect_leaks=1"

#ifdef FZ_HDF5
/* The slow unwinder gives full stacks through libhdf5 (built without frame pointers),
 * which the suppression below needs. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return FZ_ASAN_OPTIONS ":fast_unwind_on_malloc=0:malloc_context_size=12";
}

/* HDF5 1.10 leaks its own structures (metadata-cache entries, layout messages) when it
 * fails to load them from a damaged file: plain H5Fopen / H5Gopen2 / H5Oopen / H5Fclose on
 * such a file leak the same way. Those come from HDF5's free lists (H5FL_*), its metadata
 * cache, or a dataset's layout message read while H5Dopen fails (H5D__layout_oh_read, also
 * for virtual layouts), and never reach ctrain; anything else, vlen data HDF5 hands to
 * ctrain included (plain malloc inside H5T conversions), is still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:H5FL_\nleak:H5C_protect\nleak:H5D__layout_oh_read\n";
}

/* Without this every leak check lists the suppressions it used. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "print_suppressions=0"; }
#else
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return FZ_ASAN_OPTIONS; }
#endif

/* UBSan reports abort (the build uses -fno-sanitize-recover) and show where they happened. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "print_stacktrace=1"; }

static char fz_dir[64], fz_file[128];

static void fz_cleanup(void)
{
    if (fz_file[0])
        unlink(fz_file);
    if (fz_dir[0])
        rmdir(fz_dir);
}

/* Removes the folders of earlier processes that died without their atexit (a crash, a
 * timeout): /tmp/ctrain-fuzz-<tag>-<pid> whose pid is gone. */
static void fz_sweep(const char *tag, const char *name)
{
    char prefix[64], path[512];
    int n = snprintf(prefix, sizeof prefix, "ctrain-fuzz-%s-", tag);
    DIR *d = opendir("/tmp");
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        char *end;
        if (strncmp(e->d_name, prefix, (size_t)n) != 0)
            continue;
        long pid = strtol(e->d_name + n, &end, 10);
        if (*end || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        snprintf(path, sizeof path, "/tmp/%s/%s", e->d_name, name);
        unlink(path);
        snprintf(path, sizeof path, "/tmp/%s", e->d_name);
        rmdir(path);
    }
    closedir(d);
}

/* The per-process input path: /tmp/ctrain-fuzz-<tag>-<pid>/<name>. */
static const char *fz_path(const char *tag, const char *name)
{
    if (!fz_file[0]) {
        fz_sweep(tag, name);
        snprintf(fz_dir, sizeof fz_dir, "/tmp/ctrain-fuzz-%s-%ld", tag, (long)getpid());
        mkdir(fz_dir, 0700);
        snprintf(fz_file, sizeof fz_file, "%s/%s", fz_dir, name);
        atexit(fz_cleanup);
    }
    return fz_file;
}

/* Writes the input to path; aborts if it cannot (the harness is broken, not the input). */
static void fz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        abort();
    }
}

/* A failing call must leave a message; an empty one is a bug of its own. */
static void fz_check_msg(const char *what, const char *msg)
{
    /* FZ_VERBOSE=1 shows every error, to see how far seeds get. */
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "%s: %s\n", what, msg);
    if (!msg[0]) {
        fprintf(stderr, "fuzz: %s failed without a message\n", what);
        abort();
    }
}

#endif
