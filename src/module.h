/* module.h - opens a module of libctrain: a shared object loaded the first time a run needs
 * it (ctrain-cuda.so for device: cuda, ctrain-mpi.so under an MPI launcher), so that the
 * libraries it links (CUDA's, Open MPI's) are not loaded by every command.
 *
 * Where it looks: the path in the environment variable `env` when that is set (there
 * alone); beside libctrain (a build tree's .libs); in ctrain/ beside libctrain; the
 * installed directory (configure's pkglibdir). */
#ifndef CT_MODULE_H
#define CT_MODULE_H

#include <stddef.h>

/* The module's dlopen handle, never closed (what it returns lives until the process ends),
 * or NULL with why in tried (n bytes, the caller's). */
void *ct_module_open(const char *file, const char *env, char *tried, size_t n);

#endif
