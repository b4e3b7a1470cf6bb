/* backend_cuda_load.c - finds and loads the CUDA backend module (ctrain-cuda.so) the first
 * time a run asks for device: cuda. The module holds the kernels and links the CUDA
 * libraries, which take about 0.1 s to load; CPU runs never load them.
 *
 * Where it looks: $CTRAIN_CUDA_MODULE; beside libctrain (a build tree's .libs); in
 * ctrain/ beside libctrain; the installed $(pkglibdir). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#ifndef CT_CUDA_MODULE_DIR
#define CT_CUDA_MODULE_DIR "/usr/local/lib/ctrain"
#endif

typedef const ct_backend *(*entry_fn)(ct_error *err);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const ct_backend *loaded;
static ct_error load_error; /* why the last attempt failed */

#ifdef CT_HAVE_CUDA
/* The folder holding libctrain (or the program, when linked statically). */
static void library_dir(char *buf, size_t n)
{
    Dl_info info;
    buf[0] = 0;
    if (dladdr((void *)ct_backend_cuda, &info) && info.dli_fname) {
        snprintf(buf, n, "%s", info.dli_fname);
        char *slash = strrchr(buf, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(buf, n, ".");
    }
}

static void *open_module(char *tried, size_t n)
{
    char dir[4096], path[4200];
    const char *env = getenv("CTRAIN_CUDA_MODULE");
    tried[0] = 0;
    if (env && *env) {
        void *h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            snprintf(tried, n, "%s", dlerror());
        return h;
    }
    library_dir(dir, sizeof dir);
    const char *const forms[] = {"%s/ctrain-cuda.so", "%s/ctrain/ctrain-cuda.so"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0] && dir[0]; i++) {
        snprintf(path, sizeof path, forms[i], dir);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
        if (!tried[0] || strstr(tried, "No such file"))
            snprintf(tried, n, "%s", dlerror());
    }
    snprintf(path, sizeof path, "%s/ctrain-cuda.so", CT_CUDA_MODULE_DIR);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h && (!tried[0] || strstr(tried, "No such file")))
        snprintf(tried, n, "%s", dlerror());
    return h;
}

static const ct_backend *load(ct_error *err)
{
    char tried[1024];
    void *h = open_module(tried, sizeof tried);
    if (!h) {
        ct_err(err, CT_ERR_CONFIG, "cannot load the CUDA backend module ctrain-cuda.so (%s); "
               "set CTRAIN_CUDA_MODULE to its path", tried);
        return NULL;
    }
    entry_fn entry;
    *(void **)&entry = dlsym(h, "ct_cuda_module_backend");
    if (!entry) {
        ct_err(err, CT_ERR_CONFIG, "the CUDA backend module has no entry point: %s", dlerror());
        dlclose(h);
        return NULL;
    }
    /* The module stays loaded: its backend is static and lives until the process ends. */
    return entry(err);
}
#endif

const ct_backend *ct_backend_cuda(ct_error *err)
{
#ifdef CT_HAVE_CUDA
    pthread_mutex_lock(&lock);
    if (!loaded) {
        loaded = load(&load_error);
    }
    const ct_backend *be = loaded;
    if (!be && err)
        *err = load_error;
    pthread_mutex_unlock(&lock);
    return be;
#else
    (void)lock;
    (void)loaded;
    (void)load_error;
    ct_err(err, CT_ERR_CONFIG, "this build of ctrain has no CUDA backend (configure found no "
           "CUDA toolkit or was given --without-cuda); use device: cpu, or rebuild with "
           "./configure --with-cuda");
    return NULL;
#endif
}

bool ct_cuda_available(void)
{
    ct_error err;
    return ct_backend_cuda(&err) != NULL;
}
