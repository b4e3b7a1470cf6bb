/* batches.c - loader batches into backend memory (see batches.h). */
#include <inttypes.h>
#include <stdlib.h>

#include "batches.h"

/* Slot s's buffers for every member; false when out of memory. */
static bool alloc_slot(ct_batches *b, int s)
{
    const ct_backend *be = b->be;
    bool ok = true;
    for (int j = 0; j < b->ny; j++) {
        /* The CPU's labels go straight to the loss; its inputs straight to the model. */
        size_t bytes = (size_t)(b->max_rows * b->ycols[j]) * sizeof(float);
        ok &= (b->host_y[s][j] = be->host_alloc(bytes)) != NULL;
        if (!b->direct)
            ok &= (b->dev_y[s][j] = be->alloc(bytes)) != NULL;
    }
    for (int i = 0; !b->direct && i < b->nx; i++) {
        size_t bytes = (size_t)(b->max_rows * b->xcols[i]) * sizeof(float);
        ok &= (b->host_x[s][i] = be->host_alloc(bytes)) != NULL;
        ok &= (b->dev_x[s][i] = be->alloc(bytes)) != NULL;
    }
    ok &= (b->host_w[s] = malloc((size_t)(b->max_rows > 0 ? b->max_rows : 1) * sizeof(float))) != NULL;
    return ok;
}

int ct_batches_init(ct_batches *b, const ct_backend *be, int nx, ct_tensor *inputs,
                    int64_t max_rows, int ny, const int64_t *ycols, ct_error *err)
{
    *b = (ct_batches){0};
    if (nx < 1 || nx > CT_MAX_IO || ny < 0 || ny > CT_MAX_IO)
        return ct_err(err, CT_ERR_INTERNAL,
                      "batches of %d inputs and %d label sets; 1 to %d and 0 to %d are supported",
                      nx, ny, CT_MAX_IO, CT_MAX_IO);
    *b = (ct_batches){.be = be, .nx = nx, .ny = ny, .inputs = inputs, .max_rows = max_rows,
                      .direct = be->device == CT_DEVICE_CPU};
    for (int i = 0; i < nx; i++) {
        b->xcols[i] = ct_tensor_cols(&inputs[i]);
        b->planned[i] = inputs[i].data;
    }
    for (int j = 0; j < ny; j++)
        b->ycols[j] = ycols[j];
    int slots = b->direct ? 1 : CT_STAGE_SLOTS;
    for (int s = 0; s < slots; s++)
        if (!alloc_slot(b, s)) {
            ct_batches_free(b);
            return ct_err(err, CT_ERR_NOMEM, "out of memory for batches of %" PRId64 " rows",
                          max_rows);
        }
    return 0;
}

void ct_batches_free(ct_batches *b)
{
    if (!b->be)
        return;
    b->be->sync(); /* no copy may still read or write these */
    for (int s = 0; s < CT_STAGE_SLOTS; s++) {
        free(b->host_w[s]);
        for (int i = 0; i < CT_MAX_IO; i++) {
            b->be->host_free(b->host_x[s][i]);
            b->be->host_free(b->host_y[s][i]);
            b->be->free(b->dev_x[s][i]);
            b->be->free(b->dev_y[s][i]);
        }
    }
    for (int i = 0; !b->direct && i < b->nx; i++)
        b->inputs[i].data = b->planned[i]; /* it pointed into dev_x */
    *b = (ct_batches){0};
}

/* The loader must have a member for every buffer it is to fill. */
static int check_members(const ct_batches *b, const ct_loader *ld, bool labels, ct_error *err)
{
    const ct_dataset *ds = ct_loader_dataset(ld);
    int wm = ct_dataset_weight_member(ds);
    if (ct_dataset_nx(ds) >= b->nx && (!labels || ct_dataset_ny(ds) >= b->ny) &&
        (wm < 0 || wm >= b->ny))
        return 0;
    return ct_err(err, CT_ERR_INTERNAL,
                  "%s: the data has %d x and %d y datasets; the batches need %d and %d",
                  ct_dataset_x_name(ds), ct_dataset_nx(ds), ct_dataset_ny(ds), b->nx,
                  labels ? b->ny : 0);
}

/* Copies slot s's host buffers to its device buffers and points the inputs at them. */
static void upload(ct_batches *b, int s, int64_t rows, bool labels)
{
    const ct_backend *be = b->be;
    for (int i = 0; i < b->nx; i++) {
        be->stage_upload(s, b->dev_x[s][i], b->host_x[s][i],
                         (size_t)(rows * b->xcols[i]) * sizeof(float));
        b->inputs[i].data = b->dev_x[s][i];
    }
    for (int j = 0; labels && j < b->ny; j++)
        be->stage_upload(s, b->dev_y[s][j], b->host_y[s][j],
                         (size_t)(rows * b->ycols[j]) * sizeof(float));
    be->stage_use(s);
    for (int j = 0; j < b->ny; j++)
        b->y[j] = labels ? b->dev_y[s][j] : NULL;
}

int64_t ct_batches_next(ct_batches *b, ct_loader *ld, bool labels, ct_error *err)
{
    if (check_members(b, ld, labels, err) < 0)
        return -1;
    int s = b->direct ? 0 : b->slot;
    labels = labels && b->ny > 0;
    /* NULL beyond nx / ny: members the batches do not take are skipped. */
    float *x[CT_MAX_IO] = {0}, *y[CT_MAX_IO] = {0};
    for (int i = 0; i < b->nx; i++)
        x[i] = b->direct ? b->inputs[i].data : b->host_x[s][i];
    for (int j = 0; j < b->ny; j++)
        y[j] = b->host_y[s][j];
    int wm = ct_dataset_weight_member(ct_loader_dataset(ld));
    if (labels && wm >= 0)
        y[wm] = b->host_w[s];
    b->w = labels && wm >= 0 ? b->host_w[s] : NULL;
    if (b->direct) {
        for (int j = 0; j < b->ny; j++)
            b->y[j] = labels ? y[j] : NULL;
        int64_t rows = ct_loader_next_multi(ld, x, labels ? y : NULL, err);
        b->rows = ct_loader_part_rows(ld);
        return rows;
    }
    b->be->stage_wait_host(s);
    int64_t rows = ct_loader_next_multi(ld, x, labels ? y : NULL, err);
    b->rows = ct_loader_part_rows(ld);
    if (rows > 0)
        upload(b, s, b->rows, labels);
    return rows;
}

void ct_batches_done(ct_batches *b)
{
    if (b->direct)
        return;
    b->be->stage_release(b->slot);
    b->slot = (b->slot + 1) % CT_STAGE_SLOTS;
}
