/* experiment.h - the checked experiment spec behind the public ct_experiment handle.
 * ct_experiment_load parses the YAML tree, applies --set overrides, reads every section
 * with the typed getters (filling defaults in the tree) and builds the model. The
 * experiment owns the tree, the model and the optimizer; ct_experiment_free frees them. */
#ifndef CT_EXPERIMENT_H
#define CT_EXPERIMENT_H

#include "loss.h"
#include "metric.h"
#include "model.h"
#include "optimizer.h"

struct ct_dataset;
struct ct_loader;

#define CT_MAX_METRICS 16
#define CT_ACC_MORE (2 + CT_MAX_METRICS)
#define CT_ACC_SIZE (CT_ACC_MORE + CT_MAX_IO - 1)
/* Values an epoch reports: metrics, per-output losses, the loss. */
#define CT_MAX_REPORTED (CT_MAX_METRICS + CT_MAX_IO + 1)

typedef struct ct_source {
    bool given;
    char *path;        /* resolved against the config's folder; owned */
    /* Dataset names in the model's input / output order (point into the tree); y[0] NULL:
     * no targets. */
    const char *x[CT_MAX_IO], *y[CT_MAX_IO];
    /* sample_weight: a dataset of one weight per row (NULL: none), Keras's sample_weight */
    const char *sample_weight;
    const ct_node *node;
    /* x / y not given (models with one input / output): "x" / "y" is read, or, where the
     * file has no such dataset, these: the source's own group (train/x for data.train), the
     * layout ctrain data import-csv and import-text write. */
    char group_x[CT_NAME_MAX], group_y[CT_NAME_MAX];
} ct_source;

typedef enum { CT_SPLIT_LAST = 0, CT_SPLIT_SHUFFLED = 1 } ct_split_mode;

struct ct_experiment {
    ct_node *root;
    char *path;              /* the config file as given; owned */
    const char *name;
    uint64_t seed;
    /* data */
    ct_source train, test, validation;
    double validation_split;
    ct_split_mode split_mode;
    double scale[CT_MAX_IO]; /* per model input */
    double target_scale[CT_MAX_IO]; /* per model output (data.target_scale) */
    char *initial_weights;   /* model.weights, resolved against the file's folder; owned */
    /* fit.class_weight: the training loss's weight per class id (nclass_weight of them,
     * 1 where the config names none); NULL when not given. Owned. */
    float *class_weight;
    int64_t nclass_weight;
    size_t memory_limit;     /* bytes */
    /* model and compile */
    ct_model *model;
    ct_loss loss[CT_MAX_IO];       /* per model output */
    double loss_weight[CT_MAX_IO];
    int nmetrics;
    ct_metric metrics[CT_MAX_METRICS]; /* each names its output (ct_metric.output) */
    ct_optimizer *optimizer;
    struct ct_callbacks *callbacks;
    const char *const *allow_outside; /* while loading: ct_experiment_load_allowing's */
    int n_allow;
    /* fit */
    int64_t epochs, batch_size, validation_freq;
    bool shuffle;
    int verbose;             /* -1 auto, 0 silent, 1 bar, 2 one line per epoch */
    /* backend */
    int threads;
    bool adapt_threads;       /* backend.adapt_threads: fewer threads when faster */
    ct_conv_algo conv_algo;   /* backend.conv_algorithm */
    /* Running sums of the current epoch or evaluation, in backend memory so a GPU adds to
     * them without a host round trip: [0] loss (per-sample losses over all positions),
     * [1] regularization penalty (times the rows of each batch), [2 + i] metric i,
     * [CT_ACC_MORE + k - 1] the loss of output k >= 1. */
    double *acc;
    double acc_host[CT_ACC_SIZE]; /* the last copy read back */
    /* A batch's output mask read back (score_masked in train.c): mask_cap floats, owned,
     * allocated when the model is planned if an output carries a mask. */
    float *mask_host;
    int64_t mask_cap;
    /* A batch's output and targets read back for the host metrics (metric.h), host_cap
     * floats each, owned, allocated with mask_host when some metric is a host metric. */
    float *host_pred, *host_y;
    int64_t host_cap;
    char name_store[CT_MAX_REPORTED][64]; /* names ct_experiment_evaluate hands out */
};

/* Opens a data source and checks it against the model: sample shape, target shape,
 * finite x, labels in range. will_load: a loader reads the data next (see
 * ct_dataset_will_load). Returns NULL on error. role: "data.train", ... */
struct ct_dataset *ct_experiment_open_source(ct_experiment *ex, const ct_source *src,
                                             const char *role, bool will_load, ct_error *err);

/* Runs the model over a loader in inference mode; fills `values` with the loss (first)
 * and each metric. */
struct ct_batches;
int ct_experiment_run_eval(ct_experiment *ex, struct ct_loader *ld, double *values,
                           struct ct_batches *b, ct_error *err);

/* Index of acc's loss sum for output k. */
static inline int ct_acc_loss(int k) { return k == 0 ? 0 : CT_ACC_MORE + k - 1; }
/* Names of the values an epoch reports, in order: metrics as listed, the per-output
 * losses (several outputs), then loss; each prefixed. store holds the text. */
int ct_experiment_value_names(const ct_experiment *ex, const char **names, const char *prefix,
                              char (*store)[64]);

/* The source predict reads: dataset x (or data.test's names) of the HDF5 file input, or
 * data.test itself when input is NULL; without targets. x is refused for a model with
 * several inputs. Fills *src (its strings point into ex and the arguments). */
int ct_experiment_source(ct_experiment *ex, const char *input, const char *x, ct_source *src,
                         ct_error *err);

/* Tensors one inference run can copy out: the model's outputs, inputs and kept layers. */
#define CT_MAX_COLLECT 64

/* Runs the model in inference over src (role names it in messages) and copies tensors
 * t[0..n-1] (n <= CT_MAX_COLLECT; a model input for t < 0) of every row into out[j],
 * which it allocates (rows x the tensor's size, row-major) and the caller frees, even on
 * error (then NULL). The plan keeps the tensors alive to the end of the pass
 * (ct_model_plan_inference_keeping). sample >= 0 runs that row alone (an error naming the
 * row count when the data has no such row). Returns the rows run, or -1. */
int64_t ct_experiment_collect(ct_experiment *ex, const ct_source *src, const char *role,
                              int64_t sample, int n, const ct_source_id *t, float **out,
                              ct_error *err);

/* A new experiment of ex's config as ex holds it (overrides applied, defaults filled) and
 * in ex's folder, its parameters left to the weights loaded next (as
 * ct_experiment_load_lazily): serve loads changed weights into one beside the running
 * model. Only reads ex, which may run meanwhile on another thread. The caller frees it. */
ct_experiment *ct_experiment_copy(const ct_experiment *ex, ct_error *err);

/* Sets the number of threads the backend's BLAS uses. */
void ct_set_threads(int threads);

#endif
