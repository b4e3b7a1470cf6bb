/* testutil.h - helpers shared by the Check suites (header-only). */
#ifndef CT_TESTUTIL_H
#define CT_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Absolute path of a file in the source tree (tests/configs/..., configs/...). The
 * returned string is static storage, overwritten by the next call. */
static inline const char *tu_src(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("CT_SRCDIR");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}

/* A fresh temporary directory (mkdtemp). The caller frees the string; the directory is
 * left for inspection under /tmp. */
static inline char *tu_tmpdir(void)
{
    char *t = strdup("/tmp/ctrain-test-XXXXXX");
    if (!mkdtemp(t)) {
        free(t);
        return NULL;
    }
    return t;
}

/* Writes text to dir/name and returns the path (static storage). */
static inline const char *tu_write(const char *dir, const char *name, const char *text)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Deterministic pseudo-random floats in [lo, hi) for test inputs. */
static inline void tu_fill(float *x, long n, unsigned seed, float lo, float hi)
{
    unsigned long s = seed * 2654435761ul + 12345;
    for (long i = 0; i < n; i++) {
        s = s * 6364136223846793005ul + 1442695040888963407ul;
        x[i] = lo + (hi - lo) * (float)((s >> 40) & 0xFFFFFF) / 16777216.0f;
    }
}

/* Relative error that stays meaningful near zero. */
static inline double tu_relerr(double a, double b)
{
    return fabs(a - b) / fmax(1e-3, fmax(fabs(a), fabs(b)));
}

#define tu_assert_close(a, b, tol)                                                        \
    ck_assert_msg(tu_relerr((a), (b)) <= (tol), "%s = %.9g, %s = %.9g (rel err %.3g > %g)", \
                  #a, (double)(a), #b, (double)(b), tu_relerr((a), (b)), (double)(tol))

#endif
