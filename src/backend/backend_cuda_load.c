/* backend_cuda_load.c - finds and loads the CUDA backend module (ctrain-cuda.so) the first
 * time a run asks for device: cuda. The module holds the kernels and links the CUDA
 * libraries, which take about 0.1 s to load; CPU runs never load them.
 *
 * Where it looks: $CTRAIN_CUDA_MODULE, then as module.h says. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "module.h"

typedef const ct_backend *(*entry_fn)(ct_error *err);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const ct_backend *loaded;
static ct_error load_error; /* why the last attempt failed */

#ifdef CT_HAVE_CUDA
static const ct_backend *load(ct_error *err)
{
    char tried[1024];
    void *h = ct_module_open("ctrain-cuda.so", "CTRAIN_CUDA_MODULE", tried, sizeof tried);
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
