/* batches.c - loader batches into backend memory (see batches.h). */
#include "batches.h"

int ct_batches_init(ct_batches *b, ct_model *m, int64_t ycols, ct_error *err)
{
    *b = (ct_batches){.m = m, .be = m->be, .ycols = ycols, .max_rows = m->max_batch};
    b->xcols = ct_shape_size(&m->input_shape);
    b->planned_input = m->inputs[0].data;
    b->direct = m->be->device == CT_DEVICE_CPU;
    size_t xbytes = (size_t)(b->max_rows * b->xcols) * sizeof(float);
    size_t ybytes = (size_t)(b->max_rows * (ycols ? ycols : 1)) * sizeof(float);
    int slots = b->direct ? 1 : CT_STAGE_SLOTS;
    for (int s = 0; s < slots; s++) {
        /* The CPU's labels go straight to the loss; its input straight to the model. */
        b->host_y[s] = ycols ? b->be->host_alloc(ybytes) : NULL;
        if (ycols && !b->host_y[s])
            goto nomem;
        if (b->direct)
            continue;
        b->host_x[s] = b->be->host_alloc(xbytes);
        b->dev_x[s] = b->be->alloc(xbytes);
        b->dev_y[s] = ycols ? b->be->alloc(ybytes) : NULL;
        if (!b->host_x[s] || !b->dev_x[s] || (ycols && !b->dev_y[s]))
            goto nomem;
    }
    return 0;
nomem:
    ct_batches_free(b);
    return ct_err(err, CT_ERR_NOMEM, "out of memory for batches of %lld rows",
                  (long long)m->max_batch);
}

void ct_batches_free(ct_batches *b)
{
    if (!b->be)
        return;
    b->be->sync(); /* no copy may still read or write these */
    for (int s = 0; s < CT_STAGE_SLOTS; s++) {
        b->be->host_free(b->host_x[s]);
        b->be->host_free(b->host_y[s]);
        b->be->free(b->dev_x[s]);
        b->be->free(b->dev_y[s]);
    }
    if (b->m && !b->direct)
        b->m->inputs[0].data = b->planned_input; /* it pointed into dev_x */
    *b = (ct_batches){0};
}

int64_t ct_batches_next(ct_batches *b, ct_loader *ld, bool labels, ct_error *err)
{
    float *hy = labels ? b->host_y[b->direct ? 0 : b->slot] : NULL;
    if (b->direct) {
        b->y = hy;
        return ct_loader_next(ld, b->m->inputs[0].data, hy, err);
    }
    int s = b->slot;
    const ct_backend *be = b->be;
    be->stage_wait_host(s);
    int64_t rows = ct_loader_next(ld, b->host_x[s], hy, err);
    if (rows <= 0)
        return rows;
    be->stage_upload(s, b->dev_x[s], b->host_x[s], (size_t)(rows * b->xcols) * sizeof(float));
    if (hy)
        be->stage_upload(s, b->dev_y[s], hy, (size_t)(rows * b->ycols) * sizeof(float));
    be->stage_use(s);
    b->m->inputs[0].data = b->dev_x[s];
    b->y = hy ? b->dev_y[s] : NULL;
    return rows;
}

void ct_batches_done(ct_batches *b)
{
    if (b->direct)
        return;
    b->be->stage_release(b->slot);
    b->slot = (b->slot + 1) % CT_STAGE_SLOTS;
}
