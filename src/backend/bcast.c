/* bcast.c - the layout of one operand broadcast to an output sample shape (backend.h),
 * shared by the CPU and CUDA backends. */
#include <string.h>

#include "backend.h"

/* Joins output axis (od, s) onto the last axis of g when the pair walks memory as one axis:
 * both broadcast, or the previous stride is s * od. */
static bool merge_axis(ct_bcast *g, int64_t od, int64_t s)
{
    if (g->ndim == 0)
        return false;
    int p = g->ndim - 1;
    if (!((s == 0 && g->stride[p] == 0) || (s != 0 && g->stride[p] == s * od)))
        return false;
    g->dim[p] *= od;
    g->stride[p] = s;
    return true;
}

int ct_bcast_make(const ct_shape *in, const ct_shape *out, ct_bcast *g)
{
    memset(g, 0, sizeof *g);
    if (in->ndim > out->ndim)
        return -1;
    int lead = out->ndim - in->ndim; /* axes the operand lacks: broadcast */
    int64_t istride[CT_MAX_DIMS], size = 1;
    for (int a = in->ndim - 1; a >= 0; a--) {
        istride[a] = size;
        size *= in->dim[a];
    }
    g->in_size = size;
    g->out_size = ct_shape_size(out);
    for (int a = 0; a < out->ndim; a++) {
        int64_t od = out->dim[a], id = a < lead ? 1 : in->dim[a - lead];
        if (id != od && id != 1)
            return -1;
        if (od == 1) /* a size-1 axis moves nowhere */
            continue;
        int64_t s = id == 1 ? 0 : istride[a - lead];
        if (merge_axis(g, od, s))
            continue;
        g->dim[g->ndim] = od;
        g->stride[g->ndim] = s;
        g->ndim++;
    }
    return 0;
}
