/* tensor.c - shape helpers. */
#include <inttypes.h>
#include <string.h>

#include "tensor.h"

int64_t ct_shape_size(const ct_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= s->dim[i];
    return n;
}

static char *format_dims(const ct_shape *s, bool batch, char *buf, size_t n)
{
    size_t at = 0;
    at += (size_t)snprintf(buf, n, "(%s", batch ? "None" : "");
    for (int i = 0; i < s->ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%" PRId64, (batch || i) ? ", " : "", s->dim[i]);
    if (at < n)
        snprintf(buf + at, n - at, "%s)", (s->ndim == 1 && !batch) || (s->ndim == 0 && batch) ? "," : "");
    return buf;
}

char *ct_shape_format(const ct_shape *s, char *buf, size_t n) { return format_dims(s, true, buf, n); }
char *ct_shape_format_sample(const ct_shape *s, char *buf, size_t n) { return format_dims(s, false, buf, n); }

bool ct_shape_equal(const ct_shape *a, const ct_shape *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

ct_shape ct_shape_make(int ndim, const int64_t *dim)
{
    ct_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        s.dim[i] = dim[i];
    return s;
}
