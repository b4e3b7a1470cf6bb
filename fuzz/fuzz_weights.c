/* fuzz_weights.c - libFuzzer target: the weights and checkpoint loaders.
 *
 * Two fixed experiments are loaded once from fuzz/models (FZ_MODEL_DIR): a dense model
 * with Adam (AMSGrad) and early stopping that keeps the best weights, and a small conv net
 * with batch normalization, SGD with momentum and two metrics. Each input is written to a
 * file and loaded into both with ct_weights_load and ct_checkpoint_load. */
#define FZ_HDF5
#include "fuzz_util.h"

#include <hdf5.h>

#include "checkpoint.h"
#include "weights.h"

#ifndef FZ_MODEL_DIR
#define FZ_MODEL_DIR "fuzz/models"
#endif

#define FZ_NMODELS 2

static ct_experiment *models[FZ_NMODELS];

static void free_models(void)
{
    for (int i = 0; i < FZ_NMODELS; i++)
        ct_experiment_free(models[i]);
}

static ct_experiment *load_model(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", FZ_MODEL_DIR, name);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(path, NULL, 0, &err);
    if (!ex) {
        fprintf(stderr, "fuzz: cannot load the fixed model: %s\n", err.msg);
        abort();
    }
    return ex;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    models[0] = load_model("mlp.yaml");
    models[1] = load_model("cnn.yaml");
    atexit(free_models);
    return 0;
}

/* History columns of a run without validation: loss, each metric, the learning rate. */
static int history_columns(const ct_experiment *ex) { return ex->nmetrics + 2; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_path("weights", "weights.h5");
    fz_write(path, data, size);
    for (int i = 0; i < FZ_NMODELS; i++) {
        ct_experiment *ex = models[i];
        ct_error err = {0};
        if (ct_weights_load(ex->model, path, &err) < 0)
            fz_check_msg("ct_weights_load", err.msg);
        err.msg[0] = 0;
        ct_train_state st = {0};
        st.ncols = history_columns(ex);
        if (ct_checkpoint_load(ex, path, &st, &err) < 0)
            fz_check_msg("ct_checkpoint_load", err.msg);
        ct_train_state_clear(&st);
    }
    return 0;
}
