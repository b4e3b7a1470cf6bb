/* malloc_count.c - an LD_PRELOAD shim counting heap allocations, for the test that the
 * training loop allocates nothing per step. It counts the allocations called from ctrain's
 * own code (the ctrain program and libctrain) and, separately, all of them (libraries such
 * as OpenBLAS and HDF5 allocate on their own). At exit it writes "own all" to the file
 * named by CT_MALLOC_COUNT_OUT. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

static atomic_long own_calls, all_calls;
static _Thread_local bool inside; /* dladdr may allocate: do not count those */

static bool is_ctrain(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strncmp(base, "libctrain", 9) == 0 || strcmp(base, "ctrain") == 0;
}

static void count(void *caller)
{
    atomic_fetch_add_explicit(&all_calls, 1, memory_order_relaxed);
    if (inside)
        return;
    inside = true;
    Dl_info info;
    if (dladdr(caller, &info) && info.dli_fname && is_ctrain(info.dli_fname))
        atomic_fetch_add_explicit(&own_calls, 1, memory_order_relaxed);
    inside = false;
}

void *malloc(size_t size)
{
    count(__builtin_return_address(0));
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    count(__builtin_return_address(0));
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    count(__builtin_return_address(0));
    return __libc_realloc(p, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    count(__builtin_return_address(0));
    return __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    count(__builtin_return_address(0));
    void *p = __libc_memalign(align, size);
    if (!p && size)
        return ENOMEM;
    *out = p;
    return 0;
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("CT_MALLOC_COUNT_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f)
        return;
    fprintf(f, "%ld %ld\n", (long)atomic_load(&own_calls), (long)atomic_load(&all_calls));
    fclose(f);
}
