/* checkpoint.c - saving and loading complete training checkpoints (see checkpoint.h). */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "callbacks.h"
#include "checkpoint.h"
#include "guard.h"
#include "h5util.h"
#include "weights.h"

void ct_train_state_clear(ct_train_state *st)
{
    free(st->history);
    memset(st, 0, sizeof *st);
}

int ct_train_state_add_row(ct_train_state *st, const double *values, ct_error *err)
{
    double *h = realloc(st->history, (size_t)(st->rows + 1) * (size_t)st->ncols * sizeof *h);
    if (!h)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    memcpy(h + st->rows * st->ncols, values, (size_t)st->ncols * sizeof *h);
    st->history = h;
    st->rows++;
    return 0;
}

/* ---- writing ------------------------------------------------------------------------ */

static int attr_write(hid_t loc, const char *name, hid_t type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space < 0 ? -1 : H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, type, value) >= 0 ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

static int attr_text(hid_t loc, const char *name, const char *text)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, strlen(text) + 1) < 0) {
        if (type >= 0)
            H5Tclose(type);
        return -1;
    }
    int rc = attr_write(loc, name, type, text);
    H5Tclose(type);
    return rc;
}

static int dataset_write(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims,
                         const void *data)
{
    hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t d = space < 0 ? -1 : H5Dcreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                          H5P_DEFAULT);
    int rc = d >= 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0 ? 0 : -1;
    if (d >= 0)
        H5Dclose(d);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

typedef struct save_ctx {
    const ct_experiment *ex;
    const ct_train_state *st;
    const char *config;
} save_ctx;

/* The optimizer's state as host memory: itself on the CPU, else a copy (NULL: no memory).
 * Free with host_state_done. */
static float *host_state(const ct_optimizer *o, bool fetch)
{
    if (!o->be || o->be->device == CT_DEVICE_CPU)
        return o->state;
    size_t bytes = (size_t)(ct_optimizer_slots(o) * o->n) * sizeof(float);
    float *h = malloc(bytes ? bytes : 1);
    if (h && fetch)
        o->be->download(h, o->state, bytes);
    return h;
}

static void host_state_done(const ct_optimizer *o, float *h, bool store)
{
    if (h == o->state)
        return;
    if (store)
        o->be->upload(o->state, h, (size_t)(ct_optimizer_slots(o) * o->n) * sizeof(float));
    free(h);
}

static int write_optimizer(hid_t file, const ct_optimizer *o)
{
    hid_t g = H5Gcreate2(file, "optimizer_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return -1;
    int rc = attr_text(g, "optimizer", o->kind->name) == 0 &&
                     dataset_write(g, "iterations", H5T_NATIVE_INT64, 0, NULL, &o->iterations) == 0
                 ? 0 : -1;
    hsize_t n = (hsize_t)o->n;
    int slots = ct_optimizer_slots(o);
    float *state = slots ? host_state(o, true) : NULL;
    if (slots && !state)
        rc = -1;
    for (int k = 0; rc == 0 && k < slots; k++) {
        char name[96];
        snprintf(name, sizeof name, "%d_%s", k, ct_optimizer_slot_name(o, k));
        rc = dataset_write(g, name, H5T_NATIVE_FLOAT, 1, &n, state + (int64_t)k * o->n);
    }
    if (state)
        host_state_done(o, state, false);
    H5Gclose(g);
    return rc;
}

/* A host metric's epoch state (precision's counts, auc's buckets), so a run resumed in the
 * middle of an epoch reports what an unbroken one does. */
static int write_metric_state(hid_t g, const ct_metric *m, int i)
{
    if (!m->host || m->nstate == 0)
        return 0;
    char name[48];
    snprintf(name, sizeof name, "metric_state_%d", i);
    hsize_t n = (hsize_t)m->nstate;
    return dataset_write(g, name, H5T_NATIVE_DOUBLE, 1, &n, m->state);
}

static int write_state(hid_t file, const ct_experiment *ex, const ct_train_state *st)
{
    hid_t g = H5Gcreate2(file, "training_state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return -1;
    double metrics[2 * CT_MAX_METRICS];
    for (int i = 0; i < ex->nmetrics; i++) {
        metrics[2 * i] = st->metric_sum[i];
        metrics[2 * i + 1] = st->metric_count[i];
    }
    hsize_t mdims[2] = {(hsize_t)ex->nmetrics, 2}, hdims[2] = {(hsize_t)st->rows, (hsize_t)st->ncols};
    hsize_t cn = (hsize_t)ct_callbacks_state_size(ex->callbacks, ex->model->size);
    double *cbs = malloc((cn ? cn : 1) * sizeof *cbs);
    if (!cbs) {
        H5Gclose(g);
        return -1;
    }
    ct_callbacks_get_state(ex->callbacks, cbs, ex->model->size);
    int rc = attr_write(g, "epoch", H5T_NATIVE_INT64, &st->epoch) == 0 &&
                     attr_write(g, "step", H5T_NATIVE_INT64, &st->step) == 0 &&
                     attr_write(g, "batch", H5T_NATIVE_INT64, &st->batch) == 0 &&
                     attr_write(g, "seen", H5T_NATIVE_INT64, &st->seen) == 0 &&
                     attr_write(g, "loss_sum", H5T_NATIVE_DOUBLE, &st->loss_sum) == 0 &&
                     attr_write(g, "loss_sum_losses", H5T_NATIVE_DOUBLE, &st->loss_parts[0]) == 0 &&
                     attr_write(g, "loss_sum_penalty", H5T_NATIVE_DOUBLE, &st->loss_parts[1]) == 0 &&
                     dataset_write(g, "metrics", H5T_NATIVE_DOUBLE, 2, mdims, metrics) == 0 &&
                     dataset_write(g, "history", H5T_NATIVE_DOUBLE, 2, hdims,
                                   st->history ? st->history : metrics) == 0 &&
                     dataset_write(g, "callbacks", H5T_NATIVE_DOUBLE, 1, &cn, cbs) == 0 &&
                     (ex->model->noutputs < 2 ||
                      dataset_write(g, "output_losses", H5T_NATIVE_DOUBLE, 1,
                                    (hsize_t[]){(hsize_t)ex->model->noutputs - 1}, st->loss_more) == 0)
                 ? 0 : -1;
    for (int i = 0; rc == 0 && i < ex->nmetrics; i++)
        rc = write_metric_state(g, &ex->metrics[i], i);
    free(cbs);
    H5Gclose(g);
    return rc;
}

static int write_extra(int64_t file, void *ctx, ct_error *err)
{
    const save_ctx *c = ctx;
    int version = CT_CHECKPOINT_VERSION;
    if (attr_write((hid_t)file, "ctrain_checkpoint", H5T_NATIVE_INT, &version) < 0 ||
        attr_text((hid_t)file, "ctrain_config", c->config) < 0 ||
        write_optimizer((hid_t)file, c->ex->optimizer) < 0 ||
        write_state((hid_t)file, c->ex, c->st) < 0) {
        char why[CT_H5_REASON_MAX];
        ct_h5_failure(why);
        return ct_err(err, CT_ERR_IO, "writing the training state failed%s%s",
                      why[0] ? ": " : "", why);
    }
    return 0;
}

int ct_checkpoint_save(const ct_experiment *ex, const ct_train_state *st, const char *path,
                       ct_error *err)
{
    char *config = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&config, &len);
    if (!mem)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    int rc = ct_experiment_write_config(ex, mem, err);
    fclose(mem);
    if (rc == 0) {
        save_ctx c = {ex, st, config};
        char *json = ct_model_config_json(ex->model);
        rc = ct_weights_save_with(ex->model, path, json, NULL, write_extra, &c, err);
        free(json);
    }
    free(config);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------ */

static int attr_read(hid_t loc, const char *name, hid_t type, void *out)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    int rc = a >= 0 && H5Aread(a, type, out) >= 0 ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* "file.h5:/group/name" for messages about a dataset of loc. */
static void dataset_label(hid_t loc, const char *name, const char *path, char *out, size_t n)
{
    char group[512] = "";
    if (H5Iget_name(loc, group, sizeof group) < 0)
        group[0] = '\0';
    snprintf(out, n, "%s:%s/%s", path, strcmp(group, "/") == 0 ? "" : group, name);
}

/* Opens dataset name of loc, refusing one whose data is not stored inside the file
 * (virtual, external, never written): err is set only then, naming path and the dataset.
 * H5I_INVALID_HID when it is missing or refused (then *refused is set). */
static hid_t dataset_open(hid_t loc, const char *name, hid_t dapl, const char *path,
                          bool *refused, ct_error *err)
{
    hid_t d = H5Dopen2(loc, name, dapl);
    if (d < 0)
        return d;
    char label[1100];
    dataset_label(loc, name, path, label, sizeof label);
    if (ct_h5_check_storage(d, label, err) < 0) {
        *refused = true;
        H5Dclose(d);
        return H5I_INVALID_HID;
    }
    return d;
}

/* Reads a dataset that must hold exactly `count` values, stored inside the file. Returns 0;
 * -2 with err set when the dataset is refused (see dataset_open); -1 with err untouched
 * when it is missing or holds another number of values. */
static int dataset_read(hid_t loc, const char *name, hid_t dapl, hid_t type, int64_t count,
                        void *out, const char *path, ct_error *err)
{
    bool refused = false;
    hid_t d = dataset_open(loc, name, dapl, path, &refused, err);
    if (d < 0)
        return refused ? -2 : -1;
    hid_t space = H5Dget_space(d);
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    int rc = n == count
                     && (count == 0 || H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0)
                 ? 0 : -1;
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(d);
    return rc;
}

static int read_optimizer(hid_t file, hid_t gapl, hid_t dapl, ct_optimizer *o,
                          const char *path, ct_error *err)
{
    hid_t g = H5Gopen2(file, "optimizer_weights", gapl);
    if (g < 0)
        return ct_err(err, CT_ERR_DATA, "%s holds weights but no optimizer state; it is not a "
                      "checkpoint", path);
    char kind[64] = "";
    hid_t a = H5Aopen(g, "optimizer", H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1;
    /* A variable-length string would be read as a pointer HDF5 allocates. */
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0
        && H5Tget_size(t) < sizeof kind)
        H5Aread(a, t, kind);
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    int rc = 0;
    if (strcmp(kind, o->kind->name) != 0)
        rc = ct_err(err, CT_ERR_DATA, "%s was written by the optimizer '%s', but the experiment "
                    "uses '%s'", path, kind, o->kind->name);
    int64_t iterations = 0;
    int r = rc == 0 ? dataset_read(g, "iterations", dapl, H5T_NATIVE_INT64, 1, &iterations,
                                   path, err) : 0;
    if (r == -2)
        rc = -1;
    else if (r < 0)
        rc = ct_err(err, CT_ERR_DATA, "%s: no readable optimizer_weights/iterations", path);
    if (rc == 0 && iterations < 0)
        rc = ct_err(err, CT_ERR_DATA, "%s: optimizer_weights/iterations is %lld; a "
                    "checkpoint's counters are never negative", path, (long long)iterations);
    int slots = ct_optimizer_slots(o);
    float *state = slots && rc == 0 ? host_state(o, false) : NULL;
    if (slots && rc == 0 && !state)
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory for the optimizer's state");
    for (int k = 0; rc == 0 && k < slots; k++) {
        char name[96];
        snprintf(name, sizeof name, "%d_%s", k, ct_optimizer_slot_name(o, k));
        r = dataset_read(g, name, dapl, H5T_NATIVE_FLOAT, o->n, state + (int64_t)k * o->n, path,
                         err);
        if (r == -2)
            rc = -1;
        else if (r < 0)
            rc = ct_err(err, CT_ERR_DATA, "%s: optimizer_weights/%s is missing or does not hold "
                        "%lld values", path, name, (long long)o->n);
    }
    if (state)
        host_state_done(o, state, rc == 0);
    if (rc == 0)
        o->iterations = iterations;
    H5Gclose(g);
    return rc;
}

static int read_metric_state(hid_t g, hid_t dapl, const ct_metric *m, int i, const char *path,
                             ct_error *err)
{
    if (!m->host || m->nstate == 0)
        return 0;
    char name[48];
    snprintf(name, sizeof name, "metric_state_%d", i);
    int r = dataset_read(g, name, dapl, H5T_NATIVE_DOUBLE, m->nstate, m->state, path, err);
    if (r == -2)
        return -1;
    return r == 0 ? 0 : ct_err(err, CT_ERR_DATA, "%s: the training state has no state for "
                               "metric '%s', or state for another one", path, m->name);
}

static int read_state(hid_t file, hid_t gapl, hid_t dapl, const ct_experiment *ex,
                      ct_train_state *st, const char *path, ct_error *err)
{
    hid_t g = H5Gopen2(file, "training_state", gapl);
    if (g < 0)
        return ct_err(err, CT_ERR_DATA, "%s has no training_state; it is not a checkpoint", path);
    double metrics[2 * CT_MAX_METRICS];
    int r = 0;
    int rc = attr_read(g, "epoch", H5T_NATIVE_INT64, &st->epoch) == 0 &&
                     attr_read(g, "step", H5T_NATIVE_INT64, &st->step) == 0 &&
                     attr_read(g, "batch", H5T_NATIVE_INT64, &st->batch) == 0 &&
                     attr_read(g, "seen", H5T_NATIVE_INT64, &st->seen) == 0 &&
                     attr_read(g, "loss_sum", H5T_NATIVE_DOUBLE, &st->loss_sum) == 0 &&
                     (r = dataset_read(g, "metrics", dapl, H5T_NATIVE_DOUBLE, 2 * ex->nmetrics,
                                       metrics, path, err)) == 0
                 ? 0 : r == -2 ? -1 : ct_err(err, CT_ERR_DATA, "%s: the training state is damaged or was "
                              "written for other metrics", path);
    /* The counters come from the file: a negative one would index before the start. */
    const char *const counters[] = {"epoch", "step", "batch", "seen"};
    const int64_t values[] = {st->epoch, st->step, st->batch, st->seen};
    for (int i = 0; rc == 0 && i < 4; i++)
        if (values[i] < 0)
            rc = ct_err(err, CT_ERR_DATA, "%s: the attribute training_state/%s is %lld; a "
                        "checkpoint's counters are never negative", path, counters[i],
                        (long long)values[i]);
    /* Checkpoints of earlier versions hold only the combined sum: NAN tells the driver. */
    if (rc == 0 && (H5Aexists(g, "loss_sum_losses") <= 0 ||
                    attr_read(g, "loss_sum_losses", H5T_NATIVE_DOUBLE, &st->loss_parts[0]) < 0 ||
                    attr_read(g, "loss_sum_penalty", H5T_NATIVE_DOUBLE, &st->loss_parts[1]) < 0))
        st->loss_parts[0] = st->loss_parts[1] = NAN;
    if (rc == 0 && ex->model->noutputs > 1 &&
        (r = dataset_read(g, "output_losses", dapl, H5T_NATIVE_DOUBLE, ex->model->noutputs - 1,
                          st->loss_more, path, err)) < 0)
        rc = r == -2 ? -1 : ct_err(err, CT_ERR_DATA, "%s: the training state has no loss sums for the model's "
                    "%d outputs", path, ex->model->noutputs);
    /* The history's shape is checked first: a damaged one may claim 2^61 epochs. */
    char label[1100];
    dataset_label(g, "history", path, label, sizeof label);
    hid_t d = rc == 0 ? H5Dopen2(g, "history", dapl) : -1;
    if (d >= 0 && ct_h5_check_layout(d, label, err) < 0)
        rc = -1;
    hid_t space = d >= 0 && rc == 0 ? H5Dget_space(d) : -1;
    hsize_t dims[2] = {0, 0};
    if (rc == 0 && (space < 0 || H5Sget_simple_extent_ndims(space) != 2 ||
                    H5Sget_simple_extent_dims(space, dims, NULL) < 0 ||
                    dims[1] != (hsize_t)st->ncols || (int64_t)dims[0] != st->epoch))
        rc = ct_err(err, CT_ERR_DATA, "%s: the history does not match the experiment's metrics",
                    path);
    /* epoch (and so dims[0]) comes from the file: the byte count must not wrap around. */
    if (rc == 0 && dims[0] > SIZE_MAX / sizeof *st->history / (dims[1] ? dims[1] : 1))
        rc = ct_err(err, CT_ERR_DATA, "%s: the history claims %llu epochs; the file is damaged",
                    path, (unsigned long long)dims[0]);
    if (rc == 0 && dims[0] && ct_h5_check_storage(d, label, err) < 0)
        rc = -1;
    if (rc == 0 && dims[0]) {
        st->history = malloc(dims[0] * dims[1] * sizeof *st->history);
        if (!st->history || H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, st->history) < 0)
            rc = ct_err(err, CT_ERR_DATA, "%s: cannot read the history", path);
        st->rows = (int64_t)dims[0];
    }
    if (space >= 0)
        H5Sclose(space);
    if (d >= 0)
        H5Dclose(d);
    for (int i = 0; rc == 0 && i < ex->nmetrics; i++) {
        st->metric_sum[i] = metrics[2 * i];
        st->metric_count[i] = metrics[2 * i + 1];
    }
    int64_t cn = ct_callbacks_state_size(ex->callbacks, ex->model->size);
    double *cbs = rc == 0 ? malloc((size_t)(cn ? cn : 1) * sizeof *cbs) : NULL;
    if (rc == 0 && (!cbs || (r = dataset_read(g, "callbacks", dapl, H5T_NATIVE_DOUBLE, cn, cbs,
                                              path, err)) < 0))
        rc = r == -2 ? -1 : ct_err(err, CT_ERR_DATA, "%s: the callbacks' state is missing or was written for "
                    "other callbacks", path);
    if (rc == 0)
        ct_callbacks_set_state(ex->callbacks, cbs, ex->model->size, ex->optimizer);
    for (int i = 0; rc == 0 && i < ex->nmetrics; i++)
        rc = read_metric_state(g, dapl, &ex->metrics[i], i, path, err);
    free(cbs);
    H5Gclose(g);
    return rc;
}

int ct_checkpoint_load(ct_experiment *ex, const char *path, ct_train_state *st, ct_error *err)
{
    int ncols = st->ncols;
    ct_train_state_clear(st);
    st->ncols = ncols;
    if (ct_weights_load(ex->model, path, err) < 0)
        return -1;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    ct_unpolled_begin();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    /* Like the weights, the state must come from this file, not through external links. */
    hid_t gapl = ct_h5_local_access(H5P_GROUP_ACCESS);
    hid_t dapl = ct_h5_local_access(H5P_DATASET_ACCESS);
    int version = 0, rc = 0;
    if (file < 0)
        rc = ct_h5_open_error(path, err);
    else if (gapl < 0 || dapl < 0)
        rc = ct_err(err, CT_ERR_INTERNAL, "%s: cannot set up link access", path);
    else if (attr_read(file, "ctrain_checkpoint", H5T_NATIVE_INT, &version) < 0)
        rc = ct_err(err, CT_ERR_DATA, "%s holds weights only, not a checkpoint to resume from",
                    path);
    else if (version != CT_CHECKPOINT_VERSION)
        rc = ct_err(err, CT_ERR_DATA, "%s is a checkpoint of format %d; this ctrain reads "
                    "format %d", path, version, CT_CHECKPOINT_VERSION);
    if (rc == 0)
        rc = read_optimizer(file, gapl, dapl, ex->optimizer, path, err);
    if (rc == 0)
        rc = read_state(file, gapl, dapl, ex, st, path, err);
    if (gapl >= 0)
        H5Pclose(gapl);
    if (dapl >= 0)
        H5Pclose(dapl);
    if (file >= 0)
        H5Fclose(file);
    ct_unpolled_end();
    ct_h5_quiet_off(&q);
    return rc;
}
