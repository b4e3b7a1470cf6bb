/* train.c - the training driver: fit, evaluate and predict over HDF5 data. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batches.h"
#include "callbacks.h"
#include "checkpoint.h"
#include "data.h"
#include "dist.h"
#include "experiment.h"
#include "guard.h"
#include "parallel.h"
#include "progress.h"
#include "rng.h"
#include "thread_tuner.h"
#include "weights.h"

#define CT_MAX_VALUES (2 * CT_MAX_REPORTED + 1)

/* Losses and metrics act on the last axis; any axes before it are positions, each scored
 * like a sample (Keras averages over them). */
static int64_t classes(const ct_experiment *ex, int k)
{
    const ct_shape *out = ct_model_output_shape_at(ex->model, k);
    return out->ndim ? out->dim[out->ndim - 1] : 1;
}

static int64_t positions(const ct_experiment *ex, int k)
{
    return ct_shape_size(ct_model_output_shape_at(ex->model, k)) / classes(ex, k);
}

/* Label floats per sample of each output. */
static int y_cols(const ct_experiment *ex, int64_t *cols)
{
    for (int k = 0; k < ex->model->noutputs; k++)
        cols[k] = ex->loss[k].kind->sparse_labels ? positions(ex, k)
                                                  : ct_shape_size(ct_model_output_shape_at(ex->model, k));
    return ex->model->noutputs;
}

/* The host buffers score_host reads an output and its targets into, for the planned
 * batch: as large as the largest output that a host metric scores. */
static int host_buffers(ct_experiment *ex, ct_error *err)
{
    const ct_model *m = ex->model;
    int64_t need = 0;
    for (int i = 0; i < ex->nmetrics; i++) {
        int64_t n = m->max_batch * ct_shape_size(ct_model_output_shape_at(m, ex->metrics[i].output));
        if (ex->metrics[i].host && n > need)
            need = n;
    }
    if (need <= ex->host_cap)
        return 0;
    float *p = realloc(ex->host_pred, (size_t)need * sizeof *p);
    if (p)
        ex->host_pred = p;
    float *q = p ? realloc(ex->host_y, (size_t)need * sizeof *q) : NULL;
    if (!q)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ex->host_y = q;
    ex->host_cap = need;
    return 0;
}

/* A host metric's update: the rows of an output and their targets read back (the one
 * round trip a GPU makes for these metrics), then added to its state on the host. */
static void score_host(ct_experiment *ex, ct_metric *mt, const float *pred, const float *y,
                       int64_t rows, int64_t cols, int64_t ycols)
{
    const ct_backend *be = ex->model->be;
    be->download(ex->host_pred, pred, (size_t)(rows * cols) * sizeof *ex->host_pred);
    be->download(ex->host_y, y, (size_t)(rows * ycols) * sizeof *ex->host_y);
    mt->kind->update(mt, ex->host_pred, ex->host_y, rows, cols);
}

/* The host buffer score_masked reads an output's mask into, for the planned batch (and
 * host_buffers' with it). */
static int mask_buffer(ct_experiment *ex, ct_error *err)
{
    if (host_buffers(ex, err) < 0)
        return -1;
    const ct_model *m = ex->model;
    int64_t need = 0;
    for (int k = 0; k < m->noutputs; k++) {
        const ct_tensor *out = ct_model_output(m, k);
        if (out->mask && m->max_batch * out->shape.dim[0] > need)
            need = m->max_batch * out->shape.dim[0];
    }
    /* score_weighted's rows' weights and labels read back */
    bool weighted = ex->class_weight || ex->train.sample_weight || ex->validation.sample_weight ||
                    ex->test.sample_weight;
    for (int k = 0; weighted && k < m->noutputs; k++) {
        int64_t ycols = ex->loss[k].kind->sparse_labels ? 1 : classes(ex, k);
        int64_t n = m->max_batch * positions(ex, k) * (1 + ycols);
        need = n > need ? n : need;
    }
    if (need <= ex->mask_cap)
        return 0;
    float *p = realloc(ex->mask_host, (size_t)need * sizeof *p);
    if (!p)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ex->mask_host = p;
    ex->mask_cap = need;
    return 0;
}

/* A masked output (Keras): the batch's loss is the mean over its unmasked positions, and
 * its gradient is zero at the others; metrics count unmasked positions only. The mask is
 * read back (a GPU's one round trip here) and the loss and metrics run over each stretch
 * of unmasked positions. Returns the unmasked positions of the batch. */
static int64_t score_masked(ct_experiment *ex, int k, int64_t batch_rows, float *const *y,
                            bool grad)
{
    ct_model *m = ex->model;
    const ct_tensor *pred = ct_model_output(m, k);
    int64_t steps = pred->shape.dim[0], n = batch_rows * steps;
    int64_t rows = batch_rows * positions(ex, k), cols = classes(ex, k), per = rows / n;
    int64_t ycols = ex->loss[k].kind->sparse_labels ? 1 : cols;
    float *mask = ex->mask_host;
    m->be->download(mask, pred->mask, (size_t)n * sizeof *mask);
    int64_t valid = 0;
    for (int64_t i = 0; i < n; i++)
        valid += mask[i] != 0.0f;
    float *dpred = grad ? ct_model_output_grad(m, k) : NULL;
    if (dpred)
        m->be->fill(dpred, rows * cols, 0.0f);
    ct_loss_op op = ct_loss_op_of(&ex->loss[k]);
    op.sum_scale = valid ? (double)n / (double)valid : 1.0;
    float scale = valid ? (float)ex->loss_weight[k] / (float)(valid * per) : 0.0f;
    for (int64_t a = 0, b; a < n; a = b) {
        for (b = a; b < n && (mask[b] != 0.0f) == (mask[a] != 0.0f); b++)
            ;
        if (mask[a] == 0.0f)
            continue;
        int64_t r0 = a * per, nr = (b - a) * per;
        m->be->loss(&op, pred->data + r0 * cols, y[k] + r0 * ycols, dpred ? dpred + r0 * cols : NULL,
                    nr, cols, scale, &ex->acc[ct_acc_loss(k)]);
        for (int i = 0; i < ex->nmetrics; i++) {
            ct_metric *mt = &ex->metrics[i];
            if (mt->output == k && mt->host)
                score_host(ex, mt, pred->data + r0 * cols, y[k] + r0 * ycols, nr, cols, ycols);
            else if (mt->output == k)
                m->be->metric(ct_metric_op_of(mt), mt->k, pred->data + r0 * cols,
                              y[k] + r0 * ycols, nr, cols, &ex->acc[2 + i]);
        }
    }
    return valid * per;
}

/* Output k weighted as Keras's sum_over_batch_size does: each sample's loss is scaled by
 * its weight, its sample weight (sw, NULL: none) times, in training (dpred set), its
 * class's fit.class_weight, so the batch's loss is sum_i w_i l_i / rows and its gradient
 * the same. Each run of rows of equal weight is scored in one call; a run of weight 0 adds
 * nothing and gets a zero gradient. A sample's class is read back from its labels (argmax
 * of a one-hot row). */
static void score_weighted(ct_experiment *ex, int k, int64_t batch_rows, int64_t all_rows,
                           float *const *y, const float *sw, float *dpred)
{
    ct_model *m = ex->model;
    const ct_tensor *pred = ct_model_output(m, k);
    int64_t per = positions(ex, k), rows = batch_rows * per, cols = classes(ex, k);
    float mean_over = (float)(all_rows * per);
    int64_t ycols = ex->loss[k].kind->sparse_labels ? 1 : cols;
    float *w = ex->mask_host, *lab = w + rows; /* sized by mask_buffer */
    bool by_class = dpred && ex->class_weight;
    if (by_class)
        m->be->download(lab, y[k], (size_t)(rows * ycols) * sizeof *lab);
    for (int64_t r = 0; r < rows; r++) {
        w[r] = sw ? sw[r / per] : 1.0f;
        if (!by_class)
            continue;
        const float *row = lab + r * ycols;
        int64_t c = 0;
        if (ycols == 1)
            c = cols == 1 ? (row[0] >= 0.5f) : (int64_t)row[0];
        else
            for (int64_t j = 1; j < ycols; j++)
                c = row[j] > row[c] ? j : c;
        w[r] *= c >= 0 && c < ex->nclass_weight ? ex->class_weight[c] : 1.0f;
    }
    ct_loss_op op = ct_loss_op_of(&ex->loss[k]);
    for (int64_t a = 0, b; a < rows; a = b) {
        for (b = a; b < rows && w[b] == w[a]; b++)
            ;
        if (w[a] == 0.0f) {
            if (dpred)
                m->be->fill(dpred + a * cols, (b - a) * cols, 0.0f);
            continue;
        }
        op.sum_scale = (double)w[a];
        m->be->loss(&op, pred->data + a * cols, y[k] + a * ycols, dpred ? dpred + a * cols : NULL,
                    b - a, cols, (float)ex->loss_weight[k] * w[a] / mean_over,
                    &ex->acc[ct_acc_loss(k)]);
    }
}

/* Adds one forward pass's loss and metric sums to ex->acc (on the backend, no read back)
 * and writes the gradient of the batch's weighted mean loss into each output's gradient
 * buffer when grad is set. all_rows: the rows of the whole batch, of which batch_rows are
 * here (data-parallel training: the mean is over the whole batch, so the ranks' gradients
 * add up to the one-process gradient, and metrics count the whole batch's rows). */
static void score_batch(ct_experiment *ex, int64_t batch_rows, int64_t all_rows,
                        float *const *y, const float *sw, bool grad)
{
    ct_model *m = ex->model;
    int64_t counted[CT_MAX_IO];
    for (int k = 0; k < m->noutputs; k++) {
        counted[k] = -1;
        if (ct_model_output(m, k)->mask) {
            counted[k] = score_masked(ex, k, batch_rows, y, grad);
            continue;
        }
        const ct_tensor *pred = ct_model_output(m, k);
        int64_t rows = batch_rows * positions(ex, k), cols = classes(ex, k);
        float *dpred = grad ? ct_model_output_grad(m, k) : NULL;
        if (sw || (dpred && ex->class_weight)) {
            score_weighted(ex, k, batch_rows, all_rows, y, sw, dpred);
            continue;
        }
        ct_loss_op op = ct_loss_op_of(&ex->loss[k]);
        m->be->loss(&op, pred->data, y[k], dpred, rows, cols,
                    (float)ex->loss_weight[k] / (float)(all_rows * positions(ex, k)),
                    &ex->acc[ct_acc_loss(k)]);
    }
    for (int i = 0; i < ex->nmetrics; i++) {
        ct_metric *mt = &ex->metrics[i];
        int k = mt->output;
        int64_t rows = batch_rows * positions(ex, k), cols = classes(ex, k);
        if (counted[k] >= 0) { /* scored over the unmasked positions above */
            mt->count += (double)counted[k];
            continue;
        }
        if (mt->host)
            score_host(ex, mt, ct_model_output(m, k)->data, y[k], rows, cols,
                       ex->loss[k].kind->sparse_labels ? 1 : cols);
        else
            m->be->metric(ct_metric_op_of(mt), mt->k, ct_model_output(m, k)->data, y[k], rows,
                          cols, &ex->acc[2 + i]);
        mt->count += (double)(all_rows * positions(ex, k));
    }
}

/* A rank whose part of a batch is empty scores nothing, but its metrics count the whole
 * batch's rows as every rank's do (counts are not summed over the ranks). */
static void count_only(ct_experiment *ex, int64_t all_rows)
{
    for (int i = 0; i < ex->nmetrics; i++)
        ex->metrics[i].count += (double)(all_rows * positions(ex, ex->metrics[i].output));
}

/* Sets the running sums: zero, or where a resumed epoch left them. */
static void set_sums(ct_experiment *ex, double loss, double penalty, const double *metrics,
                     const double *counts, const double *more)
{
    ex->acc_host[0] = loss;
    ex->acc_host[1] = penalty;
    for (int k = 1; k < ex->model->noutputs; k++)
        ex->acc_host[ct_acc_loss(k)] = more ? more[k - 1] : 0;
    for (int i = 0; i < ex->nmetrics; i++) {
        ex->acc_host[2 + i] = metrics ? metrics[i] : 0;
        ex->metrics[i].sum = ex->acc_host[2 + i];
        ex->metrics[i].count = counts ? counts[i] : 0;
        /* A resumed epoch's host metric state came from the checkpoint. */
        if (ex->metrics[i].host && !metrics)
            ct_metric_reset(&ex->metrics[i]);
    }
    ex->model->be->upload(ex->acc, ex->acc_host, sizeof ex->acc_host);
}

/* Reads the running sums back (the one host round trip of a logging step). */
static int read_sums(ct_experiment *ex, ct_error *err)
{
    const ct_backend *be = ex->model->be;
    be->download(ex->acc_host, ex->acc, sizeof ex->acc_host);
    for (int i = 0; i < ex->nmetrics; i++)
        ex->metrics[i].sum = ex->acc_host[2 + i];
    return be->check(err);
}

/* Output k's running loss sum: its per-sample losses averaged over positions. */
static double output_loss_sum(const ct_experiment *ex, int k)
{
    return ex->acc_host[ct_acc_loss(k)] / (double)positions(ex, k);
}

/* The running loss sum: the outputs' losses, weighted, plus the penalty. */
static double loss_sum(const ct_experiment *ex)
{
    double sum = ex->loss_weight[0] * output_loss_sum(ex, 0);
    for (int k = 1; k < ex->model->noutputs; k++)
        sum += ex->loss_weight[k] * output_loss_sum(ex, k);
    return sum + ex->acc_host[1];
}

/* Running values from the last read: metrics, each output's loss (several outputs), then
 * the mean loss per sample so far. */
static void current_values(const ct_experiment *ex, int64_t seen, double *values)
{
    int n = 0;
    for (int i = 0; i < ex->nmetrics; i++)
        values[n++] = ex->metrics[i].kind->result(&ex->metrics[i]);
    for (int k = 0; ex->model->noutputs > 1 && k < ex->model->noutputs; k++)
        values[n++] = seen ? output_loss_sum(ex, k) / (double)seen : 0;
    values[n] = seen ? loss_sum(ex) / (double)seen : 0;
}

/* The running sums summed over the ranks into acc_host (and back into acc with upload:
 * an evaluation adds its penalty after), the ranks agreeing on whether one failed. */
static int sum_over_ranks(ct_experiment *ex, bool failed, bool upload, ct_error *err)
{
    int flags = 0;
    ex->model->be->download(ex->acc_host, ex->acc, sizeof ex->acc_host);
    if (ct_dist_sum(ex->acc_host, CT_ACC_SIZE, failed, &flags, err) < 0)
        return -1;
    for (int i = 0; i < ex->nmetrics; i++)
        ex->metrics[i].sum = ex->acc_host[2 + i];
    if (upload)
        ex->model->be->upload(ex->acc, ex->acc_host, sizeof ex->acc_host);
    return 0;
}

int ct_experiment_run_eval(ct_experiment *ex, ct_loader *ld, double *values, ct_batches *b,
                           ct_error *err)
{
    ct_model *m = ex->model;
    ct_pass pass = {.training = false, .seed = ex->seed, .step = 0, .penalty = &ex->acc[1]};
    set_sums(ex, 0, 0, NULL, NULL, NULL);
    if (ct_loader_begin_epoch(ld, 0, err) < 0)
        return -1;
    int64_t seen = 0, rows;
    while ((rows = ct_batches_next(b, ld, true, err)) > 0) {
        if (b->rows > 0) { /* a part of a last batch smaller than the ranks may be empty */
            ct_model_forward(m, &pass, b->rows);
            score_batch(ex, b->rows, rows, b->y, b->w, false);
        } else {
            count_only(ex, rows);
        }
        ct_batches_done(b);
        seen += rows;
    }
    if (ct_loader_parts(ld) > 1 && sum_over_ranks(ex, rows < 0, true, err) < 0)
        return -1;
    if (rows < 0)
        return -1;
    /* The regularization penalty is the same for every batch of an evaluation. */
    ct_model_penalty(m, (double)seen, &ex->acc[1]);
    if (read_sums(ex, err) < 0)
        return -1;
    current_values(ex, seen, values);
    return 0;
}

/* The rows of data.train used for training and for validation. */
static int split_rows(ct_experiment *ex, int64_t n, int64_t **train, int64_t *ntrain,
                      int64_t **val, int64_t *nval, ct_error *err)
{
    int64_t *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    if (!all)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++)
        all[i] = i;
    if (ex->split_mode == CT_SPLIT_SHUFFLED && ex->validation_split > 0)
        ct_rng_permutation(ct_rng_key(ex->seed, CT_RNG_SPLIT, 0, 0), all, n);
    /* Keras: the last fraction, split_at = floor(N * (1 - split)). */
    int64_t at = ex->validation_split > 0 ? (int64_t)floor((double)n * (1 - ex->validation_split)) : n;
    if (at <= 0 || (ex->validation_split > 0 && at >= n)) {
        free(all);
        return ct_err(err, CT_ERR_DATA, "data.validation_split %g of %" PRId64 " samples leaves "
                      "an empty training or validation set", ex->validation_split, n);
    }
    *train = all;
    *ntrain = at;
    *val = all + at;
    *nval = n - at;
    return 0;
}

static int make_dirs(const char *path, ct_error *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0777) < 0 && errno != EEXIST)
            return ct_err(err, CT_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) < 0 && errno != EEXIST)
        return ct_err(err, CT_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    return 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Chooses and creates the run directory: runs/<name>, runs/<name>-2, ... by default;
 * an explicit one that holds a finished run is refused unless overwrite is set. */
/* A resumed run continues in the checkpoint's folder (or -o DIR); ckpt receives the
 * checkpoint's path. */
/* Whether folder dir is the one holding file (both existing paths compare by inode). */
static bool same_folder(const char *dir, const char *file)
{
    char *copy = strdup(file);
    struct stat a, b;
    bool same = copy && stat(dir, &a) == 0 && stat(dirname(copy), &b) == 0 &&
                a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    free(copy);
    return same;
}

static int resume_paths(const ct_fit_options *opt, char *dir, size_t n, char *ckpt, size_t cn,
                        ct_error *err)
{
    struct stat st;
    if (stat(opt->resume, &st) < 0)
        return ct_err(err, CT_ERR_IO, "cannot resume from %s: %s", opt->resume, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(ckpt, cn, "%s/checkpoint.h5", opt->resume);
        snprintf(dir, n, "%s", opt->run_dir ? opt->run_dir : opt->resume);
        if (!exists(ckpt))
            return ct_err(err, CT_ERR_IO, "cannot resume: %s holds no checkpoint.h5", opt->resume);
    } else {
        snprintf(ckpt, cn, "%s", opt->resume);
        char *copy = strdup(opt->resume);
        if (!copy)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        snprintf(dir, n, "%s", opt->run_dir ? opt->run_dir : dirname(copy));
        free(copy);
    }
    /* Resuming into another folder must not replace a run finished there. */
    if (opt->run_dir && !opt->overwrite && !same_folder(dir, ckpt)) {
        char w[4200];
        snprintf(w, sizeof w, "%s/weights.h5", dir);
        if (exists(w))
            return ct_err(err, CT_ERR_USAGE, "%s already holds a finished run; choose another "
                          "-o directory or pass --overwrite", dir);
    }
    return 0;
}

/* A resumed run goes on: its final weights are written again at its end. */
static int drop_final_weights(const char *dir, ct_error *err)
{
    char w[4200];
    snprintf(w, sizeof w, "%s/weights.h5", dir);
    if (exists(w) && unlink(w) < 0)
        return ct_err(err, CT_ERR_IO, "cannot remove %s: %s", w, strerror(errno));
    return 0;
}

/* Chooses the run directory; an explicit one that holds a finished run is refused unless
 * overwrite is set. Nothing is created or removed yet: see claim_run_dir. */
static int choose_run_dir(const ct_experiment *ex, const ct_fit_options *opt, char *dir,
                          size_t n, ct_error *err)
{
    if (opt->run_dir) {
        snprintf(dir, n, "%s", opt->run_dir);
        char w[4200];
        snprintf(w, sizeof w, "%s/weights.h5", dir);
        if (exists(w) && !opt->overwrite)
            return ct_err(err, CT_ERR_USAGE, "%s already holds a finished run; choose another "
                          "-o directory or pass --overwrite", dir);
    } else {
        snprintf(dir, n, "runs/%s", ex->name);
    }
    return 0;
}

/* Creates the run directory: an explicit one may exist; runs/<name>, runs/<name>-2, ...
 * takes the first that this process creates itself, so two runs never share one. */
static int claim_run_dir(const ct_experiment *ex, const ct_fit_options *opt, char *dir,
                         size_t n, ct_error *err)
{
    if (opt->run_dir || opt->resume)
        return make_dirs(dir, err);
    if (make_dirs("runs", err) < 0)
        return -1;
    for (int i = 2;; i++) {
        if (mkdir(dir, 0777) == 0)
            return 0;
        if (errno != EEXIST)
            return ct_err(err, CT_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
        snprintf(dir, n, "runs/%s-%d", ex->name, i);
    }
}

/* The lock file each run directory (and backup_and_restore's folder) holds while a fit
 * runs there: flock'ed for the whole run, with the process id inside. */
#define LOCK_NAME ".ctrain.lock"

/* Locks folder dir for this process; the descriptor (kept open for the run) goes to *fd. */
static int lock_dir(const char *dir, int *fd, ct_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" LOCK_NAME, dir);
    int f = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (f < 0)
        return ct_err(err, CT_ERR_IO, "cannot create the lock file %s: %s", path,
                      strerror(errno));
    struct stat st;
    if (fstat(f, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return ct_err(err, CT_ERR_IO, "%s is not a regular file; remove it", path);
    }
    if (flock(f, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t got = pread(f, pid, sizeof pid - 1, 0);
        pid[got > 0 ? got : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(f);
        if (e == EWOULDBLOCK)
            return ct_err(err, CT_ERR_IO, "%s is in use by another ctrain fit%s%s%s; wait "
                          "for it to end or choose another directory", dir,
                          pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
        return ct_err(err, CT_ERR_IO, "cannot lock %s: %s", path, strerror(e));
    }
    /* The process id only helps the message another run gets: the lock is the flock, so a
     * full disk here is left for the run's first real write to report. */
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) == 0 && pwrite(f, pid, (size_t)len, 0) != len)
        (void)ftruncate(f, 0);
    *fd = f;
    return 0;
}

/* Whether name is "<base>.tmp-XXXXXX", a temporary that saving base creates (mkstemp). */
static bool is_temporary_of(const char *name, const char *base)
{
    size_t b = strlen(base);
    if (strncmp(name, base, b) || strncmp(name + b, ".tmp-", 5))
        return false;
    const char *x = name + b + 5;
    return strlen(x) == 6 && strspn(x, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789") == 6;
}

/* Removes what a killed run left of its saves in dir: regular files named as the
 * temporaries of weights.h5 and checkpoint.h5, nothing else. Only under the lock. */
static int remove_stale_temporaries(const char *dir, ct_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return ct_err(err, CT_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (!is_temporary_of(e->d_name, "checkpoint.h5") &&
            !is_temporary_of(e->d_name, "weights.h5"))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
            rc = ct_err(err, CT_ERR_IO, "cannot remove %s/%s: %s", dir, e->d_name,
                        strerror(errno));
    }
    closedir(d);
    return rc;
}

/* Whether two existing folders are the same one. */
static bool same_dir(const char *a, const char *b)
{
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* Opens one of the run's own files (config.yaml, history.csv) for writing: never through
 * a symbolic link, and only over a regular file. */
static FILE *open_own(const char *path, ct_error *err) { return ct_open_regular(path, false, err); }

/* Seconds spent per part of the training steps, for --profile. */
typedef struct fit_profile {
    double data, loss, optimizer, total;
    double comm; /* data-parallel: waiting for the gradients' allreduce */
    double data_check, data_load; /* seconds before training: open and check, load */
    int64_t steps;
    double *layers; /* 2 * nlayers: forward, backward */
} fit_profile;

typedef struct fit_state {
    ct_dataset *train_ds, *val_ds, *test_ds;
    ct_loader *train, *val;
    int64_t *rows;
    ct_batches batches;
    FILE *history;
    ct_progress *progress;
    FILE *progress_out;   /* where messages go, NULL when quiet */
    fit_profile prof;
    ct_tuner tuner;       /* the thread count per step (backend.adapt_threads) */
    bool nan_stop;        /* terminate_on_nan ended the run; nan_err holds why */
    ct_error nan_err;
    int locks[2];         /* the run directory's and the backup folder's lock files, or -1 */
    char *start_report;   /* what the initial weights set, per layer (owned), or NULL */
    /* Data-parallel training (ct_dist_active): the gradients' reducer, per layer the
     * offset from which the gradient block is final after its backward pass, whether a
     * point where the ranks agree that setup succeeded is still ahead, and whether they
     * agreed to stop. */
    bool dist, setup_left, dist_stop;
    ct_dist_reducer *reducer;
    int64_t *ready_from;
} fit_state;

/* Whether this process writes the run directory and prints: rank 0, or the only one. */
static bool lead(const fit_state *s) { return !s->dist || ct_dist_rank() == 0; }

static void fit_state_free(fit_state *s)
{
    ct_loader_free(s->train);
    ct_loader_free(s->val);
    if (s->val_ds != s->train_ds)
        ct_dataset_close(s->val_ds);
    ct_dataset_close(s->train_ds);
    ct_dataset_close(s->test_ds);
    free(s->rows);
    ct_batches_free(&s->batches);
    if (s->history)
        fclose(s->history);
    ct_progress_free(s->progress);
    free(s->prof.layers);
    free(s->start_report);
    ct_dist_reducer_free(s->reducer);
    free(s->ready_from);
    for (int i = 0; i < 2; i++)
        if (s->locks[i] >= 0)
            close(s->locks[i]);
}

static int open_fit_data(ct_experiment *ex, fit_state *s, ct_error *err)
{
    if (!ex->train.given)
        return ct_err(err, CT_ERR_CONFIG, "%s: fit needs data.train {path: FILE.h5, x: DATASET, "
                      "y: DATASET}", ex->path);
    double t0 = ct_stop_clock();
    s->train_ds = ct_experiment_open_source(ex, &ex->train, "data.train", true, err);
    if (!s->train_ds)
        return -1;
    double t1 = ct_stop_clock();
    int64_t n = ct_dataset_rows(s->train_ds), *trows = NULL, ntrain = 0, *vrows = NULL, nval = 0;
    if (split_rows(ex, n, &trows, &ntrain, &vrows, &nval, err) < 0)
        return -1;
    s->rows = trows;
    s->train = ct_loader_new(s->train_ds, trows, ntrain, ex->batch_size, ex->shuffle, ex->seed,
                             ex->memory_limit, err);
    if (!s->train || ct_loader_prefetch(s->train, err) < 0)
        return -1;
    s->prof.data_check = t1 - t0;
    s->prof.data_load = ct_stop_clock() - t1;
    if (nval) {
        s->val_ds = s->train_ds;
        s->val = ct_loader_new(s->train_ds, vrows, nval, ex->batch_size, false, ex->seed,
                               ex->memory_limit, err);
    } else if (ex->validation.given) {
        s->val_ds = ct_experiment_open_source(ex, &ex->validation, "data.validation", true, err);
        if (!s->val_ds)
            return -1;
        s->val = ct_loader_new(s->val_ds, NULL, ct_dataset_rows(s->val_ds), ex->batch_size, false,
                               ex->seed, ex->memory_limit, err);
    }
    if ((nval || ex->validation.given) && !s->val)
        return -1;
    /* Open the test set now so a bad one fails before any training time is spent. */
    if (ex->test.given && !(s->test_ds = ct_experiment_open_source(ex, &ex->test, "data.test", false, err)))
        return -1;
    return 0;
}

/* A row that cannot be written (a full disk) is an error naming the file: the history
 * must not lose rows silently. */
static int write_history_row(FILE *f, const char *dir, int64_t epoch, int n,
                             const double *values, ct_error *err)
{
    int bad = fprintf(f, "%lld", (long long)epoch) < 0;
    for (int i = 0; i < n; i++)
        bad |= fprintf(f, ",%.9g", values[i]) < 0;
    bad |= fputc('\n', f) == EOF;
    bad |= fflush(f) != 0;
    if (bad)
        return ct_err(err, CT_ERR_IO, "writing %s/history.csv failed: %s", dir, strerror(errno));
    return 0;
}

/* ", first not finite in the output of layer 'x' (X)" for the error message, or "". */
static const char *first_non_finite(const ct_model *m)
{
    static char where[200];
    where[0] = 0;
    bool host = m->be->device == CT_DEVICE_CPU;
    for (int i = 0; i < m->nlayers && !where[0]; i++) {
        const ct_tensor *t = &m->out[i];
        int64_t n = ct_tensor_size(t);
        const float *x = t->data;
        float *copy = NULL;
        if (!host) { /* an error path: a copy of each output is affordable */
            if (!(copy = malloc((size_t)(n ? n : 1) * sizeof *copy)))
                break;
            m->be->download(copy, t->data, (size_t)n * sizeof *copy);
            x = copy;
        }
        for (int64_t k = 0; k < n; k++)
            if (!isfinite(x[k])) {
                snprintf(where, sizeof where, ", first not finite in the output of layer '%s' (%s)",
                         m->layers[i].name, m->layers[i].kind->class_name);
                break;
            }
        free(copy);
    }
    return where;
}

/* ct_request_stop's flag (guard.h), set by a signal handler and consumed by the fit that
 * acts on it; or the caller's own flag (ct_fit_options.stop) of the fit on this thread,
 * which the caller clears. */
static _Thread_local const volatile int *own_stop;
#define stop_requested (ct_stop_pending() || (own_stop && *own_stop))

/* Whether the run stops after this batch: this process's request, or, on several
 * processes, what the ranks agreed at the last step. */
static bool stopping(const fit_state *s) { return s->dist ? s->dist_stop : stop_requested; }

/* Data-parallel: the ranks agree on whether work that only some of them did (rank 0's
 * writes, one rank's setup) failed; -1 on every rank when one did. */
static int agree(const fit_state *s, bool failed, ct_error *err)
{
    int flags = 0;
    return s->dist ? ct_dist_sum(NULL, 0, failed, &flags, err) : failed ? -1 : 0;
}

/* A resumed epoch's sums are the whole job's: rank 0 carries them on, the others start
 * from zero (the counts, of every rank's rows, stay). */
static void sums_on_lead(ct_experiment *ex, const fit_state *s)
{
    if (lead(s))
        return;
    for (int i = 0; i < CT_ACC_SIZE; i++)
        ex->acc_host[i] = 0;
    for (int i = 0; i < ex->nmetrics; i++)
        ex->metrics[i].sum = 0;
    ex->model->be->upload(ex->acc, ex->acc_host, sizeof ex->acc_host);
}

/* Data-parallel: the end of a step's backward pass. The gradient buckets still in flight,
 * the step's running sums and every rank's status are waited for; the gradient block then
 * holds the whole batch's gradient, and acc_host the sums over the ranks (acc keeps this
 * rank's). failed: this rank's batch could not be read (err says why); cut: a stop cut its
 * read short, and then no rank applies the step (*apply false). */
static int dist_step(ct_experiment *ex, fit_state *s, bool failed, bool cut, bool *apply,
                     ct_error *err)
{
    int flags = (stop_requested ? CT_DIST_STOP : 0) | (cut ? CT_DIST_STOP | CT_DIST_SKIP : 0);
    ex->model->be->download(ex->acc_host, ex->acc, sizeof ex->acc_host);
    double wait = 0;
    if (ct_dist_reducer_finish(s->reducer, ex->acc_host, CT_ACC_SIZE, failed, &flags, &wait,
                               err) < 0)
        return -1;
    s->prof.comm += wait;
    s->dist_stop = flags & CT_DIST_STOP;
    *apply = !(flags & CT_DIST_SKIP);
    for (int i = 0; i < ex->nmetrics; i++)
        ex->metrics[i].sum = ex->acc_host[2 + i];
    /* the regularizers' gradient, of the same weights on every rank, is added once */
    if (*apply && ct_model_regularized(ex->model))
        ct_model_regularizer_grads(ex->model);
    return 0;
}

/* This rank's running sums and counts before a step, to take it back when the ranks skip
 * it. */
typedef struct step_undo {
    double acc[CT_ACC_SIZE], count[CT_MAX_METRICS];
} step_undo;

static void undo_save(const ct_experiment *ex, step_undo *u)
{
    ex->model->be->download(u->acc, ex->acc, sizeof u->acc);
    for (int i = 0; i < ex->nmetrics; i++)
        u->count[i] = ex->metrics[i].count;
}

static void undo_restore(ct_experiment *ex, const step_undo *u)
{
    ex->model->be->upload(ex->acc, u->acc, sizeof u->acc);
    for (int i = 0; i < ex->nmetrics; i++)
        ex->metrics[i].count = u->count[i];
}

/* Forward, loss and backward of one batch: `here` of its `rows` rows are this process's
 * (all of them unless data-parallel; none for a rank whose part of a small last batch is
 * empty, or whose read failed: it adds a zero gradient). t2/t3 mark the loss's span. */
static void compute_step(ct_experiment *ex, fit_state *s, const ct_pass *pass, int64_t here,
                         int64_t rows, double *t2, double *t3)
{
    ct_model *m = ex->model;
    ct_batches *b = &s->batches;
    if (here <= 0) {
        m->be->fill(m->grads, m->trainable, 0.0f);
        count_only(ex, rows > 0 ? rows : 0);
        *t2 = *t3 = ct_now();
        return;
    }
    ct_model_forward(m, pass, here);
    *t2 = ct_now();
    score_batch(ex, here, rows, b->y, b->w, true);
    if (s->prof.layers)
        m->be->sync();
    *t3 = ct_now();
    /* As in Keras, each batch's loss includes the penalty at the weights it used. */
    ct_model_backward(m, pass, (double)here, &ex->acc[1]);
}

/* Skips the batches a resumed epoch has done, and sets the running sums where it left
 * them (or to zero). Returns the batches skipped, or -1. */
static int64_t resume_epoch(ct_experiment *ex, fit_state *s, int64_t epoch,
                            const ct_train_state *st, ct_error *err)
{
    int64_t rows, done = 0;
    for (; done < st->batch; done++) {
        if ((rows = ct_batches_next(&s->batches, s->train, true, err)) <= 0)
            return rows < 0 ? -1 : ct_err(err, CT_ERR_DATA, "the checkpoint is %lld batches into "
                                          "epoch %lld, but the epoch has fewer",
                                          (long long)st->batch, (long long)epoch + 1);
        ct_batches_done(&s->batches);
    }
    if (done && isnan(st->loss_parts[0]))
        set_sums(ex, st->loss_sum * (double)positions(ex, 0), 0, st->metric_sum,
                 st->metric_count, NULL);
    else if (done)
        set_sums(ex, st->loss_parts[0], st->loss_parts[1], st->metric_sum, st->metric_count,
                 st->loss_more);
    else
        set_sums(ex, 0, 0, NULL, NULL, NULL);
    if (done)
        sums_on_lead(ex, s);
    return done;
}

/* Where the epoch stands after its loop, for a checkpoint written now. */
static void epoch_position(const ct_experiment *ex, const fit_state *s, ct_train_state *st,
                           int64_t done, int64_t seen)
{
    st->batch = stopping(s) ? done : 0;
    st->loss_sum = loss_sum(ex);
    st->loss_parts[0] = ex->acc_host[0];
    st->loss_parts[1] = ex->acc_host[1];
    for (int k = 1; k < ex->model->noutputs; k++)
        st->loss_more[k - 1] = ex->acc_host[ct_acc_loss(k)];
    st->seen = seen;
    for (int i = 0; i < ex->nmetrics; i++) {
        st->metric_sum[i] = ex->metrics[i].sum;
        st->metric_count[i] = ex->metrics[i].count;
    }
}

/* Runs (the rest of) one epoch. st holds the position: on entry st->batch batches of this
 * epoch may already be done (a resumed run), whose running sums st also holds; the
 * loader's order is a function of (seed, epoch), so those batches are skipped unread.
 * Data-parallel, every rank runs every step on its part of the batch; a rank that fails
 * to read its part still takes part in the step's allreduce, which tells every rank. */
static int train_epoch(ct_experiment *ex, fit_state *s, int64_t epoch, ct_train_state *st,
                       double *values, int nnames, const char *const *names, ct_error *err)
{
    ct_model *m = ex->model;
    const ct_backend *be = m->be;
    ct_batches *b = &s->batches;
    ct_pass pass = {.training = true, .seed = ex->seed, .penalty = &ex->acc[1]};
    /* dropout and augmentation draw per rank: rank 0's as a single process's */
    if (s->dist && ct_dist_rank() > 0)
        pass.seed = ct_rng_key(ex->seed, CT_RNG_DROPOUT, 0, (uint64_t)ct_dist_rank());
    if (ct_loader_begin_epoch(s->train, epoch, err) < 0)
        return -1;
    ct_progress_epoch_begin(s->progress, epoch, ct_loader_batches(s->train));
    int64_t rows, done = resume_epoch(ex, s, epoch, st, err);
    if (done < 0)
        return -1;
    /* A GPU's sums are read back only when something shows or checks them: on the CPU,
     * and for terminate_on_nan or --profile, after every step. */
    bool every_step = be->device == CT_DEVICE_CPU || s->prof.layers ||
                      ct_callbacks_terminate_on_nan(ex->callbacks);
    double t0 = ct_now(), t1, t2, t3, t4;
    int64_t seen = done ? st->seen : 0;
    fit_profile *p = &s->prof;
    m->profile = p->layers; /* training steps only, not validation */
    bool late_fail = false; /* rank 0's callback failed: told at the next allreduce */
    ct_error late_err = {0};
    while ((rows = ct_batches_next(b, s->train, true, err)) != 0) {
        bool cut = rows < 0 && err && err->code == CT_ERR_INTERRUPT && stop_requested;
        if (rows < 0 && !s->dist)
            break;
        t1 = ct_now();
        pass.step = st->step++;
        step_undo undo;
        if (s->dist)
            undo_save(ex, &undo);
        compute_step(ex, s, &pass, rows > 0 ? b->rows : 0, rows, &t2, &t3);
        bool apply = true;
        if (late_fail && err)
            *err = late_err;
        if (s->dist && dist_step(ex, s, late_fail || (rows < 0 && !cut), cut, &apply, err) < 0) {
            rows = -1;
            break;
        }
        if (!apply) { /* a stop cut a rank's read short: the step is taken back everywhere */
            undo_restore(ex, &undo);
            st->step--;
            ct_batches_done(b);
            rows = 0;
            break;
        }
        seen += rows;
        done++;
        bool read = every_step || ct_progress_due(s->progress, done) || stop_requested ||
                    ct_callbacks_batch_due(ex->callbacks, st->step);
        if (read && !s->dist && read_sums(ex, err) < 0) {
            rows = -1;
            break;
        }
        if (read && !isfinite(loss_sum(ex))) {
            /* On a GPU without terminate_on_nan the sums are read at logging steps only, so
             * the step named is the first read that saw it. */
            ct_err(err, CT_ERR_DATA, "the loss became %g at epoch %lld, step %lld%s; lower the "
                   "learning rate or check the data", loss_sum(ex), (long long)epoch + 1,
                   (long long)done, first_non_finite(m));
            rows = -1;
            if (ct_callbacks_terminate_on_nan(ex->callbacks)) {
                s->nan_stop = true; /* terminate_on_nan: stop with the weights before this step */
                s->nan_err = *err;
                rows = 0;
            }
            ct_batches_done(b);
            break;
        }
        t4 = ct_now();
        ct_optimizer_apply(ex->optimizer, m->params, m->nparams, m->values, m->grads);
        ct_batches_done(b);
        if (p->layers)
            be->sync();
        double t5 = ct_now();
        int threads = ct_tuner_step(&s->tuner, t5, t5 - t1);
        if (threads != ct_threads_get())
            ct_threads_set(threads);
        p->data += t1 - t0; /* reading the batch (and the previous step's progress line) */
        p->loss += t3 - t2;
        p->optimizer += t5 - t4;
        p->total += t5 - t0;
        p->steps++;
        if (read) {
            current_values(ex, seen, values);
            ct_progress_step(s->progress, done, nnames, names, values);
            if (lead(s) && ct_callbacks_batch_end(ex->callbacks, st->step, nnames, names,
                                                  values, &late_err) < 0) {
                if (!s->dist) {
                    *err = late_err;
                    rows = -1;
                    break;
                }
                late_fail = true;
            }
        } else {
            ct_progress_advance(s->progress, done);
        }
        t0 = ct_now();
        if (stopping(s)) /* the batch is done; stop before the next */
            break;
    }
    m->profile = NULL;
    /* A stop mid-epoch leaves the reader thread on the next batch; the checkpoint written
     * next must not meet it inside HDF5. */
    ct_loader_settle(s->train);
    /* A stop that reached the loader while it read the next batch: the batches done so far
     * stand, and the checkpoint is written as for a stop between batches. */
    if (rows < 0 && err && err->code == CT_ERR_INTERRUPT && stop_requested && !s->dist)
        rows = 0;
    if (rows < 0)
        return -1;
    if (late_fail && err)
        *err = late_err;
    if (s->dist ? sum_over_ranks(ex, late_fail, false, err) < 0 : read_sums(ex, err) < 0)
        return -1;
    if (!isfinite(loss_sum(ex)) && !s->nan_stop)
        return ct_err(err, CT_ERR_DATA, "the loss became %g in epoch %lld%s; lower the learning "
                      "rate or check the data", loss_sum(ex), (long long)epoch + 1,
                      first_non_finite(m));
    current_values(ex, seen, values);
    epoch_position(ex, s, st, done, seen);
    return 0;
}

/* What backend.adapt_threads chose, so a slow run on a busy machine can be understood. */
static void print_threads(const ct_tuner *t, FILE *out)
{
    int64_t all = t->steps[0] + t->steps[1];
    if (!t->ncand) {
        fprintf(out, "Threads: %d\n", t->max);
        return;
    }
    fprintf(out, "Threads: %d for %.0f%% of the steps, fewer for the rest (adapt_threads: the "
            "count changed %lld times; %d at the end)\n", t->max,
            all ? 100.0 * (double)t->steps[0] / (double)all : 100.0, (long long)t->switches,
            t->current);
}

static void print_profile(const ct_model *m, const fit_profile *p, const ct_tuner *t,
                          FILE *out)
{
    if (!p->steps)
        return;
    double n = (double)p->steps, total = p->total > 0 ? p->total : 1;
    fprintf(out, "\nProfile: milliseconds per training step (mean over %lld steps)\n",
            (long long)p->steps);
    fprintf(out, "  %-48s %9s %9s %6s\n", "", "forward", "backward", "share");
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        char name[160];
        if (l->algo)
            snprintf(name, sizeof name, "%s (%s, %s)", l->name, l->kind->class_name, l->algo);
        else
            snprintf(name, sizeof name, "%s (%s)", l->name, l->kind->class_name);
        double f = p->layers[2 * i], b = p->layers[2 * i + 1];
        fprintf(out, "  %-48s %9.3f %9.3f %5.1f%%\n", name, 1e3 * f / n, 1e3 * b / n,
                100 * (f + b) / total);
    }
    fprintf(out, "  %-48s %9.3f %9s %5.1f%%\n", "data loading", 1e3 * p->data / n, "",
            100 * p->data / total);
    fprintf(out, "  %-48s %9.3f %9s %5.1f%%\n", "loss and metrics", 1e3 * p->loss / n, "",
            100 * p->loss / total);
    fprintf(out, "  %-48s %9.3f %9s %5.1f%%\n", "optimizer", 1e3 * p->optimizer / n, "",
            100 * p->optimizer / total);
    if (ct_dist_active()) { /* the time the step waited for the gradients of all ranks */
        char what[64];
        snprintf(what, sizeof what, "allreduce wait (%d ranks)", ct_dist_size());
        fprintf(out, "  %-48s %9.3f %9s %5.1f%%\n", what, 1e3 * p->comm / n, "",
                100 * p->comm / total);
    }
    fprintf(out, "  %-48s %9.3f\n", "whole step", 1e3 * p->total / n);
    print_threads(t, out);
    fprintf(out, "Before the first step, data.train took %.3f s to open and check and %.3f s to "
            "load\n", p->data_check, p->data_load);
}

static int evaluate_test(ct_experiment *ex, fit_state *s, FILE *out, ct_error *err)
{
    ct_loader *ld = ct_loader_new(s->test_ds, NULL, ct_dataset_rows(s->test_ds), ex->batch_size,
                                  false, ex->seed, ex->memory_limit, err);
    if (!ld) /* the others are in their evaluation's sum */
        return s->dist ? sum_over_ranks(ex, true, false, err) : -1;
    if (s->dist) /* each rank evaluates its part of every batch; the sums are added up */
        ct_loader_shard(ld, ct_dist_rank(), ct_dist_size());
    double values[CT_MAX_VALUES];
    int rc = ct_experiment_run_eval(ex, ld, values, &s->batches, err);
    ct_loader_free(ld);
    if (rc < 0)
        return -1;
    if (!out)
        return 0;
    const char *names[CT_MAX_VALUES];
    char store[CT_MAX_VALUES][64];
    int n = ct_experiment_value_names(ex, names, "", store);
    fprintf(out, "Test (%lld samples):", (long long)ct_dataset_rows(s->test_ds));
    for (int i = 0; i < n; i++) {
        char v[32];
        ct_format_value(values[i], v, sizeof v);
        fprintf(out, "%s %s: %s", i ? " -" : "", names[i], v);
    }
    fputc('\n', out);
    return 0;
}

/* The run report after training: the run has succeeded whatever happens here, so a page
 * that cannot be written is a warning. The data files are closed first (the report opens
 * data.test itself). */
static void write_report(ct_experiment *ex, fit_state *s, const char *dir, FILE *out)
{
    ct_loader_settle(s->train);
    ct_batches_free(&s->batches); /* its staging points at the training plan's inputs */
    ct_error rerr = {0};
    if (ct_experiment_report(ex, dir, NULL, &rerr) < 0)
        fprintf(out ? out : stderr, "warning: no report: %s\n", rerr.msg);
    else if (out)
        fprintf(out, "Report: %s/report.html\n", dir);
}

static int write_outputs(ct_experiment *ex, const char *dir, ct_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    FILE *f = open_own(path, err);
    if (!f)
        return -1;
    int rc = ct_experiment_write_config(ex, f, err);
    if (fclose(f) != 0 && rc == 0)
        rc = ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return rc;
}

static int save_weights(ct_experiment *ex, const char *dir, ct_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/weights.h5", dir);
    char *json = ct_model_config_json(ex->model);
    int rc = ct_weights_save(ex->model, path, json, NULL, err);
    free(json);
    return rc;
}

static int open_history(fit_state *s, const char *dir, int n, const char *const *names,
                        const ct_train_state *st, ct_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/history.csv", dir);
    if (!(s->history = open_own(path, err)))
        return -1;
    fprintf(s->history, "epoch");
    for (int i = 0; i < n; i++)
        fprintf(s->history, ",%s", names[i]);
    fputc('\n', s->history);
    for (int64_t r = 0; r < st->rows; r++) /* the epochs a resumed run already has */
        if (write_history_row(s->history, dir, r, n, st->history + r * n, err) < 0)
            return -1;
    return 0;
}

static int save_checkpoint(ct_experiment *ex, const ct_train_state *st, const char *dir,
                           ct_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.h5", dir);
    return ct_checkpoint_save(ex, st, path, err);
}

typedef struct save_job {
    ct_experiment *ex;
    const ct_train_state *st;
} save_job;

/* model_checkpoint's writer: the weights file, or a whole checkpoint. */
static int save_for_callback(void *ctx, const char *path, bool weights_only, ct_error *err)
{
    const save_job *j = ctx;
    if (!weights_only)
        return ct_checkpoint_save(j->ex, j->st, path, err);
    char *json = ct_model_config_json(j->ex->model);
    int rc = ct_weights_save(j->ex->model, path, json, NULL, err);
    free(json);
    return rc;
}

/* Data-parallel, after each epoch's training: the moving statistics (batch
 * normalization's), each rank's own, become their mean over the ranks, as a mirrored
 * strategy reads them; and the weights, which every rank updated alike, are checked to be
 * the same bits everywhere. */
static int ranks_after_epoch(ct_experiment *ex, int64_t epoch, ct_error *err)
{
    const ct_model *m = ex->model;
    for (int k = 0; k < m->nparams; k++) {
        const ct_param *p = m->params[k];
        int64_t n = ct_shape_size(&p->shape);
        /* what every rank holds alike (normalization's adapted statistics) stays as it is */
        if (!p->trainable && !p->frozen && !ct_dist_same_bits(p->value, (size_t)n * sizeof(float)) &&
            ct_dist_average(p->value, n, err) < 0)
            return -1;
    }
    if (!ct_dist_same_bits(m->values, (size_t)m->trainable * sizeof(float)))
        return ct_err(err, CT_ERR_INTERNAL, "rank %d of %d: the ranks' weights differ after "
                      "epoch %lld although every rank applied the same updates (the MPI "
                      "library's allreduce gave different sums)", ct_dist_rank(), ct_dist_size(),
                      (long long)epoch + 1);
    return 0;
}

/* Data-parallel, at an epoch's end: the other ranks learn whether rank 0's writes and
 * callbacks failed, whether they stop the run, and the learning rate they set. */
static int follow_lead(ct_experiment *ex, const fit_state *s, bool failed, bool *stop,
                       ct_error *err)
{
    if (!s->dist)
        return failed ? -1 : 0;
    bool first = lead(s);
    double v[2] = {first && *stop, first ? ex->optimizer->learning_rate : 0};
    int flags = 0;
    if (ct_dist_sum(v, 2, failed, &flags, err) < 0)
        return -1;
    *stop = v[0] > 0;
    ex->optimizer->learning_rate = v[1];
    return 0;
}

static int fit_loop(ct_experiment *ex, fit_state *s, ct_train_state *st, const char *dir,
                    const char *config_path, ct_error *err)
{
    const char *backup = ct_callbacks_backup_dir(ex->callbacks);
    const char *names[CT_MAX_VALUES];
    char store[CT_MAX_VALUES][64];
    int ntrain = ct_experiment_value_names(ex, names, "", store);
    int nval = s->val ? ct_experiment_value_names(ex, names + ntrain, "val_", store + ntrain) : 0;
    /* history.csv also records the learning rate at each epoch's end, as Keras logs it */
    int ncols = ntrain + nval + 1;
    names[ncols - 1] = "learning_rate";
    if (st->ncols != ncols)
        return ct_err(err, CT_ERR_DATA, "the checkpoint's history has %d columns but this "
                      "experiment reports %d", st->ncols, ncols);
    if (agree(s, lead(s) && open_history(s, dir, ncols, names, st, err) < 0, err) < 0)
        return -1;
    double values[CT_MAX_VALUES];
    for (int64_t epoch = st->epoch; epoch < ex->epochs; epoch++) {
        if (train_epoch(ex, s, epoch, st, values, ntrain, names, err) < 0 ||
            (s->dist && ranks_after_epoch(ex, epoch, err) < 0))
            return -1;
        if (s->nan_stop) {
            ct_progress_abort(s->progress);
            if (s->progress_out)
                fprintf(s->progress_out, "terminate_on_nan stopped the run: %s\n", s->nan_err.msg);
            return 0;
        }
        if (stopping(s)) {
            ct_stop_clear(); /* handled: the next fit runs normally */
            ct_progress_abort(s->progress);
            if (agree(s, lead(s) && save_checkpoint(ex, st, dir, err) < 0, err) < 0)
                return -1;
            return ct_err(err, CT_ERR_INTERRUPT, "stopped after step %lld (epoch %lld, batch "
                          "%lld); the checkpoint %s/checkpoint.h5 holds everything: continue "
                          "with  ctrain fit %s --resume %s", (long long)st->step,
                          (long long)epoch + 1, (long long)st->batch, dir, config_path, dir);
        }
        int n = ntrain;
        if (s->val && (epoch + 1) % ex->validation_freq == 0) {
            if (ct_experiment_run_eval(ex, s->val, values + ntrain, &s->batches, err) < 0)
                return -1;
            n += nval;
        } else {
            for (int i = 0; i < nval; i++)
                values[ntrain + i] = NAN;
        }
        ct_progress_epoch_end(s->progress, n, names, values);
        values[ncols - 1] = ct_optimizer_learning_rate(ex->optimizer, ex->optimizer->iterations);
        if (ct_train_state_add_row(st, values, err) < 0)
            return -1;
        st->epoch = epoch + 1;
        /* Callbacks decide before the checkpoint, which then holds their state too; on
         * several processes rank 0 runs them and writes, and the others follow. */
        bool stop = false;
        ct_epoch_logs logs = {epoch, ncols, names, values};
        save_job job = {ex, st};
        bool failed = lead(s) &&
                      (write_history_row(s->history, dir, epoch, ncols, values, err) < 0 ||
                       ct_callbacks_epoch_end(ex->callbacks, ex->model, ex->optimizer, &logs, dir,
                                              save_for_callback, &job, &stop, err) < 0 ||
                       save_checkpoint(ex, st, dir, err) < 0 ||
                       (backup && save_checkpoint(ex, st, backup, err) < 0));
        if (follow_lead(ex, s, failed, &stop, err) < 0)
            return -1;
        if (stop) {
            if (s->progress_out)
                fprintf(s->progress_out, "early_stopping stopped the run after epoch %lld\n",
                        (long long)epoch + 1);
            break;
        }
    }
    return 0;
}

/* What a run checks before it touches its directory: the monitors the callbacks read, and
 * for a resumed run (ckpt not NULL) that the checkpoint's place fits this epoch. */
static int check_before_start(ct_experiment *ex, const fit_state *s, const ct_train_state *st,
                              const char *ckpt, ct_error *err)
{
    const char *names[CT_MAX_VALUES];
    char store[CT_MAX_VALUES][64];
    int ntrain = ct_experiment_value_names(ex, names, "", store);
    int nval = s->val ? ct_experiment_value_names(ex, names + ntrain, "val_", store + ntrain) : 0;
    names[ntrain + nval] = "learning_rate";
    if (ct_callbacks_check_monitors(ex->callbacks, ntrain + nval + 1, names, err) < 0)
        return -1;
    if (!ckpt)
        return 0;
    int64_t batches = ct_loader_batches(s->train), rows = ct_loader_rows(s->train);
    if (st->batch > batches)
        return ct_err(err, CT_ERR_DATA, "%s: the checkpoint is %lld batches into epoch %lld, but "
                      "the epoch has %lld", ckpt, (long long)st->batch, (long long)st->epoch + 1,
                      (long long)batches);
    if (st->batch > 0 && st->seen > rows) /* seen counts only inside an epoch begun */
        return ct_err(err, CT_ERR_DATA, "%s: the checkpoint has seen %lld samples of epoch %lld, "
                      "but the epoch has %lld", ckpt, (long long)st->seen,
                      (long long)st->epoch + 1, (long long)rows);
    return 0;
}

/* Keras's adapt: a layer whose state comes from the training data (normalization) gathers
 * it in an inference pass over the training rows before the first step of a fresh run (a
 * resumed run has it in its checkpoint). One pass per such layer, in model order, so a
 * later one sees an earlier one's result. */
static int adapt_layers(ct_experiment *ex, fit_state *s, ct_error *err)
{
    ct_model *m = ex->model;
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        if (l->shared || !l->kind->adapt_begin || !l->kind->adapt_begin(l))
            continue;
        ct_loader *ld = ct_loader_new(s->train_ds, s->rows, ct_loader_rows(s->train),
                                      ex->batch_size, false, ex->seed, ex->memory_limit, err);
        if (!ld)
            return -1;
        ct_pass pass = {.training = false, .seed = ex->seed, .adapting = l};
        int64_t rows = ct_loader_begin_epoch(ld, 0, err);
        while (rows == 0 && (rows = ct_batches_next(&s->batches, ld, false, err)) > 0) {
            ct_model_forward(m, &pass, rows);
            ct_batches_done(&s->batches);
            rows = 0;
        }
        ct_loader_free(ld);
        if (rows < 0 || l->kind->adapt_end(l, err) < 0)
            return -1;
    }
    return 0;
}

/* The model's backward pass tells the reducer how far the gradient block is final. */
static void grads_done(void *ctx, int layer)
{
    fit_state *s = ctx;
    ct_dist_reducer_ready(s->reducer, layer < 0 ? 0 : s->ready_from[layer]);
}

/* Per layer, the offset from which every trainable gradient is final once its backward
 * pass ran: the block holds them in layer order, and the pass runs from the last layer.
 * Shared applications join their owners' gradients only at the end of the pass. */
static void ready_offsets(const ct_model *m, int64_t *from)
{
    int64_t lowest = m->trainable;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const ct_layer *l = &m->layers[i];
        for (int j = 0; !l->shared && j < l->nparams; j++) {
            const float *g = l->params[j].grad;
            if (g && g >= m->grads && g < m->grads + m->trainable && g - m->grads < lowest)
                lowest = g - m->grads;
        }
        from[i] = m->shadow ? m->trainable : lowest;
    }
}

/* Bytes per gradient bucket: CTRAIN_BUCKET_KB, else 256 KiB (a few buckets for the
 * example models, so the first are on their way while the backward pass goes on). */
static size_t bucket_bytes(void)
{
    const char *v = getenv("CTRAIN_BUCKET_KB");
    long kb = v ? strtol(v, NULL, 10) : 0;
    return (size_t)(kb > 0 ? kb : 256) * 1024;
}

/* Data-parallel setup: what several processes cannot train yet is refused by name; the
 * loaders serve this rank's part of every batch, and the backward pass hands its finished
 * gradients to the reducer. */
static int dist_setup(ct_experiment *ex, fit_state *s, ct_error *err)
{
    ct_model *m = ex->model;
    for (int k = 0; k < m->noutputs; k++)
        if (ct_model_output(m, k)->mask)
            return ct_err(err, CT_ERR_CONFIG, "output '%s' carries a mask: on several processes "
                          "a batch's loss would need its count of unmasked positions over all "
                          "ranks first, which is not implemented; train it in one process",
                          m->output_names[k]);
    for (int i = 0; i < ex->nmetrics; i++)
        if (ex->metrics[i].host)
            return ct_err(err, CT_ERR_CONFIG, "metric '%s' keeps a state over the epoch that "
                          "the ranks do not combine yet; leave it out or train in one process",
                          ex->metrics[i].name);
    s->reducer = ct_dist_reducer_new(m->be, m->grads, m->trainable, bucket_bytes(), err);
    if (!s->reducer)
        return -1;
    if (!(s->ready_from = malloc((size_t)(m->nlayers ? m->nlayers : 1) * sizeof *s->ready_from)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    ready_offsets(m, s->ready_from);
    m->grads_done = grads_done;
    m->grads_done_ctx = s;
    ct_loader_shard(s->train, ct_dist_rank(), ct_dist_size());
    if (s->val)
        ct_loader_shard(s->val, ct_dist_rank(), ct_dist_size());
    return 0;
}

/* Data-parallel: a point of the setup where the ranks agree that it succeeded so far
 * (last: the final one). A rank that fails between two of them goes to the next from its
 * error path (see fit), so every rank meets every point. */
static int setup_point(fit_state *s, bool last, ct_error *err)
{
    int rc = agree(s, false, err);
    if (rc < 0 || last)
        s->setup_left = false;
    return rc;
}

/* The end of a fit on several processes: the model's weights (early_stopping may have
 * restored its best on rank 0) are rank 0's everywhere, the final weights are written, and
 * the ranks agree on whether that worked. */
static int finish_weights(ct_experiment *ex, const fit_state *s, const char *dir, ct_error *err)
{
    if (s->dist)
        ct_dist_broadcast(ex->model->values, (size_t)ex->model->size * sizeof(float));
    return agree(s, lead(s) && save_weights(ex, dir, err) < 0, err);
}

static int fit(ct_experiment *ex, const ct_fit_options *opt, ct_error *err)
{
    FILE *out = opt->out ? opt->out : stdout;
    int verbose = opt->verbose >= 0 ? opt->verbose : ex->verbose;
    ct_progress_mode mode = verbose == 0   ? CT_PROGRESS_NONE
                            : verbose == 1 ? CT_PROGRESS_BAR
                            : verbose == 2 ? CT_PROGRESS_LINES
                            : isatty(fileno(out)) ? CT_PROGRESS_BAR : CT_PROGRESS_LINES;
    fit_state s;
    memset(&s, 0, sizeof s);
    s.locks[0] = s.locks[1] = -1;
    s.dist = s.setup_left = ct_dist_active();
    if (!lead(&s)) /* rank 0 alone prints */
        mode = CT_PROGRESS_NONE;
    own_stop = opt->stop;
    ct_train_state st;
    memset(&st, 0, sizeof st);
    char dir[4096], ckpt[4200];
    ct_set_threads(ex->threads);
    ct_tuner_init(&s.tuner, ex->threads,
                  ex->adapt_threads && ex->model->be->device == CT_DEVICE_CPU);
    int rc = -1;
    int64_t ycols[CT_MAX_IO];
    int ny = y_cols(ex, ycols);
    if (open_fit_data(ex, &s, err) < 0 || ct_model_plan(ex->model, ex->batch_size, err) < 0 ||
        mask_buffer(ex, err) < 0 ||
        ct_batches_init(&s.batches, ex->model->be, ex->model->ninputs, ex->model->inputs,
                        ex->model->max_batch, ny, ycols, err) < 0 ||
        (s.dist && dist_setup(ex, &s, err) < 0))
        goto done;
    const char *names[CT_MAX_VALUES];
    char store[CT_MAX_VALUES][64];
    /* the values each epoch reports (twice with validation), and the learning rate */
    st.ncols = ct_experiment_value_names(ex, names, "", store) * (s.val ? 2 : 1) + 1;
    /* Everything is read and checked before anything in the run directory is created,
     * locked, removed or written: a run that fails its checks leaves the folder as it was. */
    /* backup_and_restore: a checkpoint left in its folder by an unfinished run is resumed. */
    const char *backup = ct_callbacks_backup_dir(ex->callbacks);
    char backup_ckpt[4200] = "";
    if (backup)
        snprintf(backup_ckpt, sizeof backup_ckpt, "%s/checkpoint.h5", backup);
    bool from_backup = !opt->resume && backup && exists(backup_ckpt);
    if (opt->resume ? resume_paths(opt, dir, sizeof dir, ckpt, sizeof ckpt, err) < 0 ||
                          ct_checkpoint_load(ex, ckpt, &st, err) < 0
                    : choose_run_dir(ex, opt, dir, sizeof dir, err) < 0)
        goto done;
    /* The experiment file's output paths stay in the run directory (or an allowed folder):
     * checked before anything is created, and again once the folder is claimed. */
    if (ct_callbacks_check_paths(ex->callbacks, dir, err) < 0)
        goto done;
    if (from_backup) {
        snprintf(ckpt, sizeof ckpt, "%s", backup_ckpt);
        if (ct_checkpoint_load(ex, ckpt, &st, err) < 0)
            goto done;
    }
    const char *start_from = opt->initial_weights ? opt->initial_weights : ex->initial_weights;
    if (start_from && !opt->resume && !from_backup &&
        ct_weights_load_matching(ex->model, start_from, &s.start_report, err) < 0) {
        ct_err_prefix(err, "initial weights");
        goto done;
    }
    if (!opt->resume && !from_backup && adapt_layers(ex, &s, err) < 0)
        goto done;
    /* Every rank has read and checked everything before rank 0 touches the run directory. */
    if (check_before_start(ex, &s, &st, opt->resume || from_backup ? ckpt : NULL, err) < 0 ||
        setup_point(&s, false, err) < 0)
        goto done;
    if (!lead(&s)) /* the run directory is rank 0's */
        goto setup_done;
    if (claim_run_dir(ex, opt, dir, sizeof dir, err) < 0 ||
        ct_callbacks_check_paths(ex->callbacks, dir, err) < 0 ||
        (backup && make_dirs(backup, err) < 0))
        goto done;
    if (backup && same_dir(backup, dir)) {
        ct_callbacks_backup_err(ex->callbacks, err, "backup_dir %s is the run directory, whose "
                                "checkpoint the backup would delete at the end; choose another "
                                "folder", backup);
        goto done;
    }
    /* The folders are this process's from here: what a killed run left half written goes. */
    if (lock_dir(dir, &s.locks[0], err) < 0 || (backup && lock_dir(backup, &s.locks[1], err) < 0) ||
        remove_stale_temporaries(dir, err) < 0 ||
        (backup && remove_stale_temporaries(backup, err) < 0))
        goto done;
    /* tensorboard's files, opened before anything of an earlier run is dropped: a log_dir
     * that cannot be written stops the run here, not after an epoch. */
    if (ct_callbacks_train_begin(ex->callbacks, ex->model, dir, s.val != NULL, err) < 0)
        goto done;
    /* A resumed run goes on, and a rerun with --overwrite starts again: either way the
     * final weights are written anew at the end, and a failure must not leave the old ones
     * beside the new history. */
    if (drop_final_weights(dir, err) < 0 || write_outputs(ex, dir, err) < 0)
        goto done;
setup_done:
    if (opt->profile && !(s.prof.layers = calloc(2 * (size_t)ex->model->nlayers, sizeof(double)))) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!(s.progress = ct_progress_new(out, mode, ex->epochs))) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (mode != CT_PROGRESS_NONE) {
        fprintf(out, "%s: seed %" PRIu64 ", %d thread%s, run directory %s\n", ex->name, ex->seed,
                ex->threads, ex->threads == 1 ? "" : "s", dir);
        if (ex->model->be->device != CT_DEVICE_CPU)
            fprintf(out, "Device: %s\n", ex->model->be->name);
        if (opt->resume || from_backup)
            fprintf(out, "Resuming from %s: %lld epochs and %lld batches done, step %lld\n", ckpt,
                    (long long)st.epoch, (long long)st.batch, (long long)st.step);
        if (s.start_report)
            fprintf(out, "Initial weights from %s, by layer name:\n%s", start_from,
                    s.start_report);
        fprintf(out, "Training on %lld samples", (long long)ct_loader_rows(s.train));
        if (s.val)
            fprintf(out, ", validating on %lld", (long long)ct_loader_rows(s.val));
        fprintf(out, "\n");
    }
    s.progress_out = mode == CT_PROGRESS_NONE ? NULL : out;
    /* Every rank has set up, or all stop here with the reason of the first that failed. */
    if (setup_point(&s, true, err) < 0 || fit_loop(ex, &s, &st, dir, ex->path, err) < 0)
        goto done;
    /* As Keras's fit: the EMA weights replace the model's after the last epoch (the
     * checkpoints keep the raw ones and the average), before early_stopping may restore
     * its best weights. */
    ct_optimizer_finalize(ex->optimizer, ex->model->values);
    if (lead(&s))
        ct_callbacks_train_end(ex->callbacks, ex->model, s.progress_out);
    if (finish_weights(ex, &s, dir, err) < 0)
        goto done;
    if (lead(&s) && backup && ct_callbacks_backup_delete(ex->callbacks) && exists(backup_ckpt) &&
        unlink(backup_ckpt) < 0) {
        ct_err(err, CT_ERR_IO, "cannot remove %s: %s", backup_ckpt, strerror(errno));
        goto done;
    }
    if (mode != CT_PROGRESS_NONE)
        fprintf(out, "Saved %s/weights.h5\n", dir);
    if (opt->profile && lead(&s))
        print_profile(ex->model, &s.prof, &s.tuner, out);
    if (s.test_ds && evaluate_test(ex, &s, mode == CT_PROGRESS_NONE ? NULL : out, err) < 0)
        goto done;
    rc = 0;
    if (opt->report && lead(&s))
        write_report(ex, &s, dir, mode == CT_PROGRESS_NONE ? NULL : out);
done:
    /* A rank that failed in its setup tells the others at their next setup point. */
    if (rc < 0 && s.setup_left) {
        ct_error mine = err ? *err : (ct_error){0};
        if (agree(&s, true, &mine) < 0 && err)
            *err = mine;
    }
    ex->model->grads_done = NULL;
    /* A stop while the data was read or checked ends the run here: it has acted on it. */
    if (rc < 0 && err && err->code == CT_ERR_INTERRUPT)
        ct_stop_clear();
    ct_train_state_clear(&st);
    fit_state_free(&s);
    own_stop = NULL;
    return rc;
}

/* A source for --data FILE: the given x / y datasets (models with one input / output), or
 * the dataset names of data.test (else data.train, else x and y). */
static void source_for(const ct_experiment *ex, ct_source *src, const char *path, const char *x,
                       const char *y)
{
    *src = ex->test.given ? ex->test : ex->train;
    if (!src->given)
        for (int k = 0; k < CT_MAX_IO; k++) {
            src->x[k] = k < ex->model->ninputs ? "x" : NULL;
            src->y[k] = k < ex->model->noutputs ? "y" : NULL;
        }
    src->given = true;
    src->path = (char *)path;
    src->node = NULL;
    if (x)
        src->x[0] = x;
    if (y)
        src->y[0] = y;
}

static int evaluate(ct_experiment *ex, const char *path, const char *x, const char *y,
                    const char **names, double *values, int max, ct_error *err)
{
    ct_source src = ex->test;
    const ct_model *m = ex->model;
    if ((x && m->ninputs > 1) || (y && m->noutputs > 1))
        return ct_err(err, CT_ERR_USAGE, "the model has %d inputs and %d outputs: --x and --y "
                      "name datasets of a model with one of each; data.test's names are used "
                      "with --data", m->ninputs, m->noutputs);
    if (path)
        source_for(ex, &src, path, x, y);
    else if (!ex->test.given)
        return ct_err(err, CT_ERR_USAGE, "%s has no data.test; name a file with --data", ex->path);
    ct_set_threads(ex->threads);
    if (ct_model_plan_inference(ex->model, ex->batch_size, err) < 0 || mask_buffer(ex, err) < 0)
        return -1;
    ct_dataset *ds = ct_experiment_open_source(ex, &src, path ? path : "data.test", true, err);
    if (!ds)
        return -1;
    ct_batches b = {0};
    int64_t ycols[CT_MAX_IO];
    int ny = y_cols(ex, ycols);
    ct_loader *ld = ct_batches_init(&b, m->be, m->ninputs, ex->model->inputs, m->max_batch, ny,
                                    ycols, err) == 0
                        ? ct_loader_new(ds, NULL, ct_dataset_rows(ds), ex->batch_size, false,
                                        ex->seed, ex->memory_limit, err)
                        : NULL;
    double all[CT_MAX_VALUES];
    int rc = ld ? ct_experiment_run_eval(ex, ld, all, &b, err) : -1;
    ct_loader_free(ld);
    ct_batches_free(&b);
    ct_dataset_close(ds);
    if (rc < 0)
        return -1;
    /* Loss first for callers, then the metrics and per-output losses as reported; the
     * names live as long as the experiment. */
    const char *reported[CT_MAX_VALUES];
    int nv = ct_experiment_value_names(ex, reported, "", ex->name_store);
    int n = 0;
    if (n < max) {
        names[n] = reported[nv - 1];
        values[n++] = all[nv - 1];
    }
    for (int i = 0; i < nv - 1 && n < max; i++) {
        names[n] = reported[i];
        values[n++] = all[i];
    }
    return n;
}

int ct_experiment_source(ct_experiment *ex, const char *input, const char *x, ct_source *src,
                         ct_error *err)
{
    const ct_model *m = ex->model;
    if (x && m->ninputs > 1)
        return ct_err(err, CT_ERR_USAGE, "the model has %d inputs: --x names the dataset of a "
                      "model with one; data.test's names are used", m->ninputs);
    if (input)
        source_for(ex, src, input, x, NULL);
    else if (ex->test.given)
        *src = ex->test;
    else
        return ct_err(err, CT_ERR_USAGE, "%s has no data.test; name an input file", ex->path);
    src->y[0] = NULL;
    return 0;
}

int64_t ct_experiment_collect(ct_experiment *ex, const ct_source *src, const char *role,
                              int64_t sample, int n, const ct_source_id *t, float **out,
                              ct_error *err)
{
    ct_model *m = ex->model;
    if (n < 0 || n > CT_MAX_COLLECT)
        return ct_err(err, CT_ERR_INTERNAL, "%d tensors asked for; at most %d", n,
                      CT_MAX_COLLECT);
    for (int j = 0; j < n; j++)
        out[j] = NULL;
    ct_set_threads(ex->threads);
    if (ct_model_plan_inference_keeping(m, ex->batch_size, n, t, err) < 0)
        return -1;
    ct_dataset *ds = ct_experiment_open_source(ex, src, role, true, err);
    if (!ds)
        return -1;
    int64_t rows = ct_dataset_rows(ds), cols[CT_MAX_COLLECT];
    if (sample >= rows) {
        ct_dataset_close(ds);
        return ct_err(err, CT_ERR_USAGE, "sample %lld is outside %s, which has %lld rows "
                      "(samples 0 to %lld)", (long long)sample, src->path, (long long)rows,
                      (long long)rows - 1);
    }
    if (sample >= 0)
        rows = 1;
    bool ok = true;
    for (int j = 0; j < n; j++) {
        cols[j] = ct_shape_size(ct_tensor_shape(m, t[j]));
        int64_t k = rows * cols[j] > 0 ? rows * cols[j] : 1;
        ok &= (out[j] = malloc((size_t)k * sizeof(float))) != NULL;
    }
    ct_batches b = {0};
    ct_loader *ld = ok && ct_batches_init(&b, m->be, m->ninputs, m->inputs, m->max_batch, 0, NULL,
                                          err) == 0
                        ? ct_loader_new(ds, sample >= 0 ? &sample : NULL, rows, ex->batch_size,
                                        false, ex->seed, ex->memory_limit, err)
                        : NULL;
    int64_t rc = -1;
    if (!ok)
        ct_err(err, CT_ERR_NOMEM, "cannot hold %lld rows of predictions in memory",
               (long long)rows);
    if (ld && ct_loader_begin_epoch(ld, 0, err) == 0) {
        ct_pass pass = {.training = false, .seed = ex->seed};
        int64_t done = 0, got;
        while ((got = ct_batches_next(&b, ld, false, err)) > 0) {
            ct_model_forward(m, &pass, got);
            for (int j = 0; j < n; j++) {
                const ct_tensor *y = t[j] < 0 ? &m->inputs[-1 - t[j]] : &m->out[t[j]];
                m->be->download(out[j] + done * cols[j], y->data,
                                (size_t)(got * cols[j]) * sizeof(float));
            }
            ct_batches_done(&b);
            done += got;
        }
        if (got == 0 && m->be->check(err) == 0)
            rc = rows;
    }
    ct_loader_free(ld);
    ct_batches_free(&b);
    ct_dataset_close(ds);
    for (int j = 0; rc < 0 && j < n; j++) {
        free(out[j]);
        out[j] = NULL;
    }
    return rc;
}

static int predict(ct_experiment *ex, const char *input, const char *x, const char *output,
                   ct_error *err)
{
    const char *ext = strrchr(output, '.');
    if (!ext || (strcmp(ext, ".h5") && strcmp(ext, ".hdf5") && strcmp(ext, ".csv")))
        return ct_err(err, CT_ERR_USAGE, "%s: predictions are written as .h5, .hdf5 or .csv, "
                      "not '%s'", output, ext ? ext : "");
    ct_model *m = ex->model;
    ct_source src;
    if (ct_experiment_source(ex, input, x, &src, err) < 0)
        return -1;
    int64_t cols[CT_MAX_IO];
    float *pred[CT_MAX_IO] = {NULL};
    const char *names[CT_MAX_IO];
    for (int k = 0; k < m->noutputs; k++) {
        cols[k] = ct_shape_size(ct_model_output_shape_at(m, k));
        names[k] = m->noutputs == 1 ? "predictions" : m->output_names[k];
    }
    int64_t rows = ct_experiment_collect(ex, &src, input ? input : "data.test", -1, m->noutputs,
                                         m->outputs, pred, err);
    int rc = rows < 0 ? -1
                      : ct_write_matrices(output, m->noutputs, names, (const float *const *)pred,
                                          rows, cols, err);
    for (int k = 0; k < m->noutputs; k++)
        free(pred[k]);
    return rc;
}

/* The public calls: the computation runs with denormals flushed (ct_fp_enter), and the
 * caller's floating-point state is back when they return. */
int ct_experiment_fit(ct_experiment *ex, const ct_fit_options *opt, ct_error *err)
{
    ct_fp_state fp = ct_fp_enter();
    int rc = fit(ex, opt, err);
    ct_fp_leave(fp);
    return rc;
}

int ct_experiment_evaluate(ct_experiment *ex, const char *path, const char *x, const char *y,
                           const char **names, double *values, int max, ct_error *err)
{
    ct_fp_state fp = ct_fp_enter();
    int rc = evaluate(ex, path, x, y, names, values, max, err);
    ct_fp_leave(fp);
    return rc;
}

int ct_experiment_predict(ct_experiment *ex, const char *input, const char *x,
                          const char *output, ct_error *err)
{
    ct_fp_state fp = ct_fp_enter();
    int rc = predict(ex, input, x, output, err);
    ct_fp_leave(fp);
    return rc;
}
