/* module.c - module.h's search. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"

#ifndef CT_MODULE_DIR
#define CT_MODULE_DIR "/usr/local/lib/ctrain"
#endif

/* The folder holding libctrain (or the program, when linked statically). */
static void library_dir(char *buf, size_t n)
{
    Dl_info info;
    buf[0] = 0;
    if (dladdr((void *)ct_module_open, &info) && info.dli_fname) {
        snprintf(buf, n, "%s", info.dli_fname);
        char *slash = strrchr(buf, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(buf, n, ".");
    }
}

/* Keeps the first reason, unless it only says a file was not there. */
static void note(char *tried, size_t n)
{
    if (!tried[0] || strstr(tried, "No such file"))
        snprintf(tried, n, "%s", dlerror());
}

void *ct_module_open(const char *file, const char *env, char *tried, size_t n)
{
    char dir[4096], path[4400];
    const char *given = getenv(env);
    tried[0] = 0;
    if (given && *given) {
        void *h = dlopen(given, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            snprintf(tried, n, "%s", dlerror());
        return h;
    }
    library_dir(dir, sizeof dir);
    const char *const forms[] = {"%s/%s", "%s/ctrain/%s"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0] && dir[0]; i++) {
        snprintf(path, sizeof path, forms[i], dir, file);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
        note(tried, n);
    }
    snprintf(path, sizeof path, "%s/%s", CT_MODULE_DIR, file);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        note(tried, n);
    return h;
}
