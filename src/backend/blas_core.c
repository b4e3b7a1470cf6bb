/* blas_core.c - OpenBLAS's kernel choice, corrected in the running process.
 *
 * Debian's OpenBLAS 0.3.21 is built for every x86 core it knows (DYNAMIC_ARCH) and picks
 * one when it loads; on processors newer than it knows it picks a generic core (Prescott
 * and the like), whose kernels are several times slower. That build exports the pair that
 * makes the choice (gotoblas_dynamic_quit forgets it, gotoblas_dynamic_init makes it
 * again from OPENBLAS_CORETYPE), so the library can choose again in place: the CLI and
 * programs that embed the library get the same kernels, with no restart. The pair is
 * looked up at run time; a BLAS built otherwise lacks it and is left alone. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_DEFAULT */
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctrain.h"

#ifdef CT_HAVE_OPENBLAS
#include <cblas.h>

/* The cores OpenBLAS reports when it does not recognise the processor. */
static bool generic_core(const char *core)
{
    static const char *const generic[] = {"Prescott", "Katmai", "Coppermine", "Northwood",
                                          "Banias", "Core2", "Penryn", "Dunnington", "Nehalem",
                                          "Atom", NULL};
    for (int i = 0; core && generic[i]; i++)
        if (strcasecmp(core, generic[i]) == 0)
            return true;
    return false;
}

/* The best core of this build that the processor can run, or NULL. */
static const char *better_core(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    return NULL;
}

/* OPENBLAS_CORETYPE is set only while OpenBLAS reads it, then put back as it was. */
static bool rechoose(const char *core)
{
    void (*quit)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    void (*init)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    if (!quit || !init)
        return false;
    if (setenv("OPENBLAS_CORETYPE", core, 1) != 0)
        return false;
    quit();
    init();
    unsetenv("OPENBLAS_CORETYPE");
    return strcasecmp(openblas_get_corename(), core) == 0;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char note[320];
static int switched;

static void choose(void)
{
    if (getenv("OPENBLAS_CORETYPE") || getenv("CTRAIN_KEEP_BLAS_CORE"))
        return;
    /* CTRAIN_ASSUME_BLAS_CORE stands in for what OpenBLAS reports, so the choice can be
     * tested on a processor that OpenBLAS knows. */
    const char *core = getenv("CTRAIN_ASSUME_BLAS_CORE");
    if (!core || !*core)
        core = openblas_get_corename();
    const char *better = generic_core(core) ? better_core() : NULL;
    char was[40];
    snprintf(was, sizeof was, "%s", core);
    if (!better || !rechoose(better))
        return;
    snprintf(note, sizeof note,
             "OpenBLAS does not recognise this CPU and chose its generic %s kernels; using "
             "its %s kernels instead (CTRAIN_KEEP_BLAS_CORE=1 keeps %s)",
             was, better, was);
    switched = 1;
}

int ct_blas_choose_kernels(const char **why)
{
    pthread_once(&once, choose);
    if (why)
        *why = switched ? note : NULL;
    return switched;
}

#else

int ct_blas_choose_kernels(const char **why)
{
    if (why)
        *why = NULL;
    return 0;
}

#endif
