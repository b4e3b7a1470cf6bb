/* embed.c - ctrain inside a C program: an experiment from a string, training that the
 * program can stop with its own flag (Ctrl-C here), and predictions from arrays in memory.
 *
 *   cc embed.c $(pkg-config --cflags --libs ctrain) -o embed
 *   ./embed DATA.h5 RUN_DIR
 *
 * DATA.h5 holds x (N, 4) float features and y (N,) labels 0, 1 or 2, as x and y or as
 * train/x and train/y (what `ctrain data import-csv` writes). */
#include <ctrain.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile int stop; /* set by Ctrl-C: training ends after its current batch */

static void on_sigint(int sig)
{
    (void)sig;
    stop = 1;
}

static const char experiment[] =
    "name: embedded\n"
    "seed: 7\n"
    "data: {train: {path: data.h5}, validation_split: 0.2}\n"
    "model:\n"
    "  input_shape: [4]\n"
    "  layers:\n"
    "    - {type: dense, units: 16, activation: relu}\n"
    "    - {type: dense, units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "fit: {epochs: 20, batch_size: 16}\n";

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DATA.h5 RUN_DIR\n", argv[0]);
        return 2;
    }
    char data[4200];
    snprintf(data, sizeof data, "data.train.path=%s", argv[1]);
    const char *overrides[] = {data};
    ct_error err = {0};
    /* The experiment and its model: the program owns it until ct_experiment_free. */
    ct_experiment *ex = ct_experiment_load_text(experiment, strlen(experiment), "embedded.yaml",
                                                NULL, overrides, 1, &err);
    if (!ex) {
        fprintf(stderr, "embed: %s\n", err.msg);
        return 1;
    }
    signal(SIGINT, on_sigint);
    ct_fit_options opt = {.run_dir = argv[2], .verbose = 0, .stop = &stop};
    int rc = ct_experiment_fit(ex, &opt, &err);
    if (rc < 0 && err.code != CT_ERR_INTERRUPT) {
        fprintf(stderr, "embed: %s\n", err.msg);
        ct_experiment_free(ex);
        return 1;
    }
    printf("%s\n", rc < 0 ? "stopped; the checkpoint can be resumed" : "trained");
    /* Three samples in, three rows of class scores out: the program's own arrays. */
    const float x[3 * 4] = {2.5f, 0, 0, 0, 0, 2.5f, 0, 0, 0, 0, 2.5f, 0};
    float scores[3 * 3];
    const float *inputs[1] = {x};
    float *outputs[1] = {scores};
    if (ct_experiment_predict_arrays(ex, 3, inputs, outputs, &err) < 0) {
        fprintf(stderr, "embed: %s\n", err.msg);
        ct_experiment_free(ex);
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        int best = 0;
        for (int c = 1; c < 3; c++)
            best = scores[i * 3 + c] > scores[i * 3 + best] ? c : best;
        printf("sample %d: class %d (%.3f %.3f %.3f)\n", i, best, scores[i * 3],
               scores[i * 3 + 1], scores[i * 3 + 2]);
    }
    ct_experiment_free(ex);
    return 0;
}
