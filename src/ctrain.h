/* ctrain.h - the one public header of libctrain.
 *
 * Ownership: every ct_*_load/new function returns an object the caller frees with the
 * matching ct_*_free. Functions that can fail return 0 on success and -1 on failure,
 * filling the caller-provided ct_error; library code never prints errors or exits. */
#ifndef CTRAIN_H
#define CTRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error categories; the CLI maps them to exit statuses. */
typedef enum {
    CT_OK = 0,
    CT_ERR_USAGE,    /* bad command line */
    CT_ERR_CONFIG,   /* bad experiment file or override */
    CT_ERR_DATA,     /* bad or missing data file */
    CT_ERR_IO,       /* reading or writing a file failed */
    CT_ERR_NOMEM,    /* an allocation failed or would be absurdly large */
    CT_ERR_INTERRUPT,/* stopped by a signal */
    CT_ERR_INTERNAL
} ct_error_code;

/* Filled by the callee, owned (usually on the stack) by the caller. */
typedef struct ct_error {
    ct_error_code code;
    char msg[2048];
} ct_error;

/* Sets err (when not NULL) and returns -1, so callers can `return ct_err(...)`. */
int ct_err(ct_error *err, ct_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "context: " to an error already set. Returns -1. */
int ct_err_prefix(ct_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *ct_version(void);

/* An experiment: the parsed config, the model built from it, and its data. */
typedef struct ct_experiment ct_experiment;

/* Loads and checks an experiment file. overrides are "key.path=value" strings applied
 * before checking (may be NULL when n_overrides is 0). Builds the model (shapes inferred
 * and checked) but opens no data. Returns NULL on error. Free with ct_experiment_free. */
ct_experiment *ct_experiment_load(const char *path, const char *const *overrides,
                                  int n_overrides, ct_error *err);
/* As ct_experiment_load, with n_allow folders (fit's --allow-outside) under which the
 * experiment file's output paths (model_checkpoint filepath, csv_logger filename,
 * backup_and_restore backup_dir) may write besides the run directory. */
ct_experiment *ct_experiment_load_allowing(const char *path, const char *const *overrides,
                                           int n_overrides, const char *const *allow_outside,
                                           int n_allow, ct_error *err);
/* As ct_experiment_load, but the parameters are filled only when first needed (by fit,
 * evaluate or predict, unless weights are loaded first): for looking at the model alone
 * (summary, check), which then never pays for initialisation. */
ct_experiment *ct_experiment_load_lazily(const char *path, const char *const *overrides,
                                         int n_overrides, ct_error *err);
/* As ct_experiment_load, from the len bytes of YAML in text instead of a file, which
 * stands for the file DIR/NAME: errors name positions as "DIR/NAME:line:col", and
 * relative paths in it are read from DIR (name NULL: "experiment.yaml"; dir NULL: the
 * current folder, "."). The text is the caller's. */
ct_experiment *ct_experiment_load_text(const char *text, size_t len, const char *name,
                                       const char *dir, const char *const *overrides,
                                       int n_overrides, ct_error *err);
void ct_experiment_free(ct_experiment *ex);

/* Warnings found while loading (a layer or input that reaches no output), one per line
 * with its file:line:col; "" when none. Owned by the experiment. */
const char *ct_experiment_warnings(const ct_experiment *ex);
/* fit.verbose: -1 auto, 0 silent, 1 progress bar, 2 one line per epoch. */
int ct_experiment_verbose(const ct_experiment *ex);

/* Writes the resolved config (every default filled in) as YAML. */
int ct_experiment_write_config(const ct_experiment *ex, FILE *out, ct_error *err);

/* Prints Keras's model summary table. */
void ct_experiment_summary(const ct_experiment *ex, FILE *out);

/* Opens and checks every data file the experiment names (shapes, rows, labels, finite
 * values) without training. */
int ct_experiment_check_data(ct_experiment *ex, ct_error *err);

typedef struct ct_fit_options {
    const char *run_dir;   /* NULL: runs/<name>, numbered if it exists */
    bool overwrite;        /* allow reusing a run_dir that holds a finished run */
    int verbose;           /* -1 auto (bar on a terminal, lines otherwise), 0 silent, 1 bar, 2 lines */
    FILE *out;             /* progress output; NULL means stdout */
    bool profile;          /* print time per layer, data loading and optimizer after the run */
    const char *resume;    /* a run directory or checkpoint file to continue from, or NULL */
    /* A weights file to start from (fine-tuning), or NULL: model.weights. Layers are
     * matched by name and shape; a resumed run ignores it. */
    const char *initial_weights;
    /* Write the run report (ct_experiment_report) into the run directory after training;
     * a report that cannot be written is a warning on `out`, not a failed fit. */
    bool report;
    /* The caller's own stop flag (NULL: none): when *stop becomes non-zero (from any
     * thread), fit stops after its current batch as ct_request_stop makes it, writing a
     * checkpoint and returning CT_ERR_INTERRUPT. It stops only this fit; the caller
     * clears it. */
    const volatile int *stop;
} ct_fit_options;

/* Asks a running ct_experiment_fit to stop after its current batch: it writes a
 * checkpoint and returns CT_ERR_INTERRUPT. Safe to call from a signal handler. */
void ct_request_stop(void);
/* False while the library is inside a call that cannot look at a stop request: HDF5
 * opening a data, weights or checkpoint file (which a damaged file can keep busy for
 * ever). A signal handler may then end the process instead. Safe in a signal handler. */
bool ct_stop_is_prompt(void);

/* Long phases (validating or loading a dataset, importing a file) say how far they are
 * through the function set here; none is set at first, and NULL removes it. what names the
 * phase and its data ("validating d.h5:/train/images"), done of total counts unit ("rows",
 * "bytes"), and elapsed is the seconds since the phase began. It is called after each
 * block (well under a second apart) and once with done == total when the phase ends, not
 * when it fails. The function decides what to show (the command line: nothing for phases
 * under two seconds). Process-wide, like ct_request_stop. */
typedef void (*ct_phase_fn)(void *ctx, const char *what, int64_t done, int64_t total,
                            const char *unit, double elapsed);
void ct_set_phase_reporter(ct_phase_fn fn, void *ctx);

/* Debian's OpenBLAS 0.3.21 runs its slowest generic kernels on processors newer than it
 * knows. When it has chosen such a core and the processor has AVX2 and FMA (or AVX-512),
 * this switches it to its Haswell (or SkylakeX) kernels, in place, once per process.
 * Setting OPENBLAS_CORETYPE or CTRAIN_KEEP_BLAS_CORE keeps OpenBLAS's choice. Returns 1
 * when the kernels were switched, with *why (when why is not NULL) pointing at a static
 * sentence saying from what to what, else 0 with *why NULL. Loading an experiment calls
 * it; a program calls it itself only to learn the note. No other thread may be in BLAS
 * while the first call runs. */
int ct_blas_choose_kernels(const char **why);

/* Trains, writes history.csv, config.yaml, checkpoint.h5 (after every epoch) and
 * weights.h5 into the run directory, then evaluates on data.test when given. */
int ct_experiment_fit(ct_experiment *ex, const ct_fit_options *opt, ct_error *err);

/* Data-parallel training (doc/distributed.md). Started by an MPI launcher (mpirun, srun:
 * the environment names a rank), ct_dist_start initialises MPI and returns the number of
 * processes of the job; every later ct_experiment_fit in the process then trains one model
 * with all of them, each on its shard of every batch, and only rank 0 writes the run
 * directory and prints. Without a launcher, or in a build without MPI, it initialises
 * nothing and returns 1. -1 on error. Call it once, before the first fit; ct_dist_finish
 * ends MPI (on every rank, after the last fit; nothing when MPI was not started here). */
int ct_dist_start(ct_error *err);
void ct_dist_finish(void);
/* This process's rank (0 when alone) and the job's size (1 when alone). */
int ct_dist_rank(void);
int ct_dist_size(void);
/* For a rank that cannot call ct_experiment_fit (its experiment failed to load, err says
 * why): the other ranks, waiting for every rank's setup in their fit, fail with
 * "rank R of N failed: MESSAGE" instead of waiting for ever. Collective with those fits;
 * nothing when alone. */
void ct_dist_abandon(const ct_error *err);

/* Loads weights from an HDF5 file written by fit (Keras's legacy layout). */
int ct_experiment_load_weights(ct_experiment *ex, const char *path, ct_error *err);

/* Evaluates on data.test (or the dataset given by path/x/y when path is not NULL).
 * names/values receive up to max results (loss first, then each metric); returns the
 * number of results or -1. Names point into the experiment and live as long as it. */
int ct_experiment_evaluate(ct_experiment *ex, const char *path, const char *x, const char *y,
                           const char **names, double *values, int max, ct_error *err);

/* Runs the model on dataset `x` of the HDF5 file `input` and writes predictions to
 * `output` (.h5/.hdf5: dataset "predictions"; .csv: one row per sample). */
int ct_experiment_predict(ct_experiment *ex, const char *input, const char *x,
                          const char *output, ct_error *err);

/* Writes the run report: one self-contained HTML page (no network, no script) with the
 * run's history, data.test's loss and metrics (for a classifier also its confusion
 * matrix, per-class precision, recall and F1, and the first misclassified test images),
 * the model summary and the experiment file. ex holds the weights to test. out_path NULL:
 * run_dir/report.html. The page is written aside and renamed into place. */
int ct_experiment_report(ct_experiment *ex, const char *run_dir, const char *out_path,
                         ct_error *err);

/* Runs the model (in inference) on `rows` samples in memory: inputs[k] holds rows x the
 * size of input k (floats, as the model reads them: after data.scale), outputs[k] receives
 * rows x the size of output k; both the caller's. Any number of rows, in batches of
 * fit.batch_size. Not to be called from two threads at once on one experiment. */
int ct_experiment_predict_arrays(ct_experiment *ex, int64_t rows, const float *const *inputs,
                                 float *const *outputs, ct_error *err);

/* TensorFlow Serving's REST API for the model (see ctrain serve in ctrain(1)). */
typedef struct ct_serve_options {
    const char *host;      /* IPv4 address to listen on; NULL: 127.0.0.1 */
    int port;              /* 0: any free port (ready says which) */
    const char *name;      /* the model's name in URLs; NULL: the experiment's name */
    int64_t max_batch;     /* rows one model run takes from queued requests; 0: batch_size */
    size_t max_body;       /* bytes of a request body; 0: 64 MiB */
    FILE *log;             /* one line per request, or NULL */
    /* A weights file to reload the model from when it changes (NULL: never). It is looked
     * at every second; changed weights load into a copy of the experiment beside the
     * running model and replace it between two batches, and the version (1 at first) goes
     * up by one. A file that does not load leaves the running model serving. ex itself
     * keeps the weights it was given. */
    const char *reload;
    FILE *reload_log;      /* one line per reload, done or failed, or NULL */
    /* Called once listening, with the port and the model's name (may be NULL). */
    void (*ready)(int port, const char *name, void *ctx);
    void *ready_ctx;
} ct_serve_options;

/* Serves until ct_serve_stop, then stops taking connections, answers the requests already
 * received (up to 10 s) and returns 0; -1 when it cannot start (a port in use). The model
 * runs on the calling thread; requests that wait together are run as one batch. */
int ct_serve(ct_experiment *ex, const ct_serve_options *opt, ct_error *err);
/* Asks a running ct_serve to stop. Safe to call from a signal handler. */
void ct_serve_stop(void);

/* Writes the model with its current weights as an ONNX file (opset 17) that ONNX Runtime
 * runs: inputs and outputs keep the model's names and layout (images (N, H, W, C),
 * sequences (N, T, C)), the batch axis is "N"; an input an embedding reads takes int64
 * token ids. Dense, the 1-D and 2-D convolutions and pools, batch and layer
 * normalization, flatten, reshape, rescaling, the activation and merge layers, embeddings,
 * recurrent layers and their wrappers, attention and masking translate (masks honoured
 * as ctrain does), and the layers that do nothing at inference (dropout, noise,
 * augmentation) vanish; another layer is an error naming it, and nothing is written. The
 * file is written aside and renamed into place. */
int ct_experiment_export_onnx(ct_experiment *ex, const char *path, ct_error *err);

/* Runs the model on dataset `x` of the HDF5 file `input` (data.test when input is NULL)
 * and writes the outputs of the nlayers named layers to `output`, as Keras's sub-model
 * keras.Model(inputs, [layer.output, ...]) gives them: .h5/.hdf5: one float32 dataset per
 * name, called by it and shaped (N, the layer's output shape...); .csv (only when every
 * named output has one axis per sample): their values side by side, one row per sample.
 * A name is a layer's (its output 0), "NAME:k" for output k of a layer with several (a
 * recurrent layer's states with return_state: true), or a model input's. The model keeps
 * those outputs to the end of its pass for this (they are not overwritten by later
 * layers); an unknown name is an error listing the model's layers. The strings are the
 * caller's. */
int ct_experiment_predict_layers(ct_experiment *ex, const char *input, const char *x,
                                 int nlayers, const char *const *layers, const char *output,
                                 ct_error *err);

/* Draws the 2-D convolution `layer` (conv2d, depthwise_conv2d or separable_conv2d) into
 * the PNG file out_png: its filters as tiles (blue below 0, red above, one scale for all;
 * a filter over several input channels as their mean), the model input of row `sample` of
 * dataset x of the HDF5 file `input` (of data.test when input is NULL), and the layer's
 * feature maps for that row, one tile per channel, each scaled to its own range. Other
 * layer kinds, and a sample past the data's rows, are errors. The strings are the
 * caller's. */
int ct_experiment_show_layer(ct_experiment *ex, const char *layer, const char *input,
                             const char *x, int64_t sample, const char *out_png,
                             ct_error *err);


/* Writes the experiment's model with its current weights (load them first, e.g. with
 * ct_experiment_load_weights) for Keras 3: to a path ending in .keras, an archive that
 * keras.saving.load_model opens (config.json, metadata.json, model.weights.h5); to one
 * ending in .weights.h5, the weights alone, for model.load_weights. A layer whose
 * weights' place in Keras's files is not known is refused, named with its class. The
 * file is written beside path and renamed into place. data.scale is not part of the
 * model: Keras's inputs must be scaled as ctrain's are. */
int ct_experiment_export_keras(ct_experiment *ex, const char *path, ct_error *err);
/* What ct_keras_import wrote or could not translate. */
typedef struct ct_keras_import_report {
    int layers;            /* layers of the model written */
    int64_t params;        /* their weights, in numbers */
    /* Keras layers or options ctrain cannot take, one per line: "layer 'x' (Class): ...";
     * "" when none. Owned by the report: free it with ct_keras_import_report_free. */
    char *unsupported;
} ct_keras_import_report;
void ct_keras_import_report_free(ct_keras_import_report *r);
/* Reads a Keras model file, a Keras 3 .keras archive or a legacy full-model HDF5 file
 * (model.save("m.h5")), and writes out_dir/experiment.yaml (the model, a compile section
 * and a data section for the user to fill in) and out_dir/weights.h5 (ctrain's weights
 * file; out_dir is created if missing). When the model holds layers or options ctrain
 * cannot take, nothing is written and report->unsupported lists them all. report may be
 * NULL; its text is the caller's to free with ct_keras_import_report_free. */
int ct_keras_import(const char *path, const char *out_dir, ct_keras_import_report *report,
                    ct_error *err);
/* Converts IDX files (optionally gzipped) into group `group` of the HDF5 file `out`
 * (created if missing): `group`/images as uint8 (N, H, W, 1) for rank-3 images, and
 * `group`/labels as uint8 (N). */
int ct_data_import_idx(const char *images, const char *labels, const char *out,
                       const char *group, ct_error *err);

/* What import-csv does with a cell that is not a number: refuse it (an error naming the
 * line and column), or make its column categorical: one column of codes (integer) or one
 * 0/1 column per category (onehot). Categories are coded in sorted (byte) order. */
typedef enum { CT_CSV_NUMBERS = 0, CT_CSV_INTEGER = 1, CT_CSV_ONEHOT = 2 } ct_csv_categorical;

/* Converts a CSV file into `group`/x (float32, N x F) and `group`/y in `out`.
 * label_column: the column index of the label (negative counts from the end); header:
 * skip the first line. Integer-valued labels are stored as int32, others as float32; a
 * categorical label column as int32 class ids, with their names in `group`/classes, and a
 * categorical feature column J's categories in `group`/categories_J (strings by code). */
int ct_data_import_csv(const char *csv, const char *out, const char *group, int label_column,
                       bool header, ct_csv_categorical categorical, ct_error *err);

/* Options of ct_data_import_images, filled by the caller; ct_image_options_default sets
 * them: channels 3 (rgb; 1 grayscale, 4 rgba), no resizing (height = width = 0: every
 * image must have the first one's size), the rows shuffled with seed 1337, group "train". */
typedef struct ct_image_options {
    int64_t height, width;
    int channels;
    uint64_t seed;
    bool shuffle;
    const char *group;
} ct_image_options;
void ct_image_options_default(ct_image_options *o);

/* What an image import found: classes, files skipped (not images), the rows' shape. */
typedef struct ct_image_report {
    int classes;
    int64_t skipped;
    int64_t height, width;
    int channels;
} ct_image_report;

/* Converts the PNG and JPEG images under dir, one sub-folder per class (classes in sorted
 * order, ids from 0), into `group`/images (uint8, N x H x W x C), `group`/labels (int32)
 * and `group`/classes (the folder names by id) in `out`, decoding one image at a time and
 * writing blocks of rows. Resizing is bilinear (half-pixel centres, as TensorFlow's
 * tf.image.resize), rounded to uint8. Returns the number of images (report, when not NULL,
 * says more), or -1 with err naming the folder or file at fault. */
int64_t ct_data_import_images(const char *dir, const char *out, const ct_image_options *o,
                              ct_image_report *report, ct_error *err);

/* Tokens of ct_data_import_text: Unicode characters (code points) or words. */
typedef enum { CT_TEXT_CHAR = 0, CT_TEXT_WORD = 1 } ct_text_level;

/* Options of ct_data_import_text, filled by the caller (on its stack);
 * ct_text_options_default sets the defaults. Messages about them name the command
 * line's options (--seq-len...). */
typedef struct ct_text_options {
    ct_text_level level;   /* default CT_TEXT_CHAR */
    int64_t seq_len;       /* tokens per window, or per row with labels; 1 to 1000000; 100 */
    int64_t stride;        /* tokens from one window's start to the next; 0: seq_len */
    int64_t vocab_size;    /* ids in the vocabulary, 0 and 1 included; at least 3;
                            * 0: every token (characters) or 20000 (words) */
    double split;          /* the share of the text (of the rows) for training, in (0, 1];
                            * the rest, at the end, is validation data; 0.9 */
    bool labels;           /* the file holds lines of text,label; one row per line */
    bool header;           /* with labels: skip the first line */
} ct_text_options;

/* What ct_data_import_text wrote, for the caller's message. */
typedef struct ct_text_summary {
    int64_t train_rows, validation_rows;
    int64_t vocab;         /* ids in the vocabulary, 0 and 1 included */
    int64_t classes;       /* class names stored (0 with integer labels or without labels) */
} ct_text_summary;

void ct_text_options_default(ct_text_options *opt);

/* Converts a UTF-8 text file into token ids in group `group` of `out` (created if missing;
 * NULL or "" is the root): `group`/train/x and train/y (int32, N x seq_len) and, when split
 * < 1, validation/x and validation/y from the end of the text. Without labels y is x
 * shifted by one token (the next token at each step); with labels x is each line's text
 * padded with 0 or cut to seq_len, y (N) its label. `group`/vocab holds the tokens as
 * UTF-8 strings, index = id: "" (padding, 0), "[UNK]" (1), then by count, ties by first
 * appearance; attributes level and seq_len. With class names as labels `group`/classes
 * holds them, index = label. The file is read twice, in blocks, and never held in
 * memory. summary may be NULL. */
int ct_data_import_text(const char *path, const char *out, const char *group,
                        const ct_text_options *opt, ct_text_summary *summary, ct_error *err);

/* Options of ct_experiment_generate, filled by the caller (on its stack);
 * ct_generate_options_default sets the defaults. */
typedef struct ct_generate_options {
    const char *prompt;      /* text the sample continues; "" (default) starts from nothing */
    int64_t length;          /* tokens to generate, 0 to 1000000; 200 */
    double temperature;      /* scores divided by it before sampling; 0: the most likely
                              * token every time; 1.0 */
    int64_t top_k;           /* sample among the k most likely tokens; 0 (default): all */
    uint64_t seed;           /* used when seed_given; else the experiment's seed */
    bool seed_given;
    const char *vocab_path;  /* the file with the vocabulary; NULL: data.train's */
} ct_generate_options;

void ct_generate_options_default(ct_generate_options *o);

/* Samples text from the experiment's language model (load its weights first): one input
 * of token ids (T) and one output of scores over the vocabulary, per position (T, V) or
 * for the next token (V). The vocabulary is the dataset "vocab" that `ctrain data
 * import-text` stored in the group above data.train.x (in o->vocab_path's file if given).
 * Writes the prompt and the generated text to out, then a newline. The same seed gives
 * the same text. */
int ct_experiment_generate(ct_experiment *ex, const ct_generate_options *o, FILE *out,
                           ct_error *err);

/* Pictures of a run and of a model, for people and for reports.
 *
 * Formats: "png", "svg" and "pdf" for learning curves; "svg", "png", "pdf" and "dot"
 * (graphviz's text) for diagrams. The file functions take the format from out_path's
 * extension (case ignored) and refuse others. The *_mem functions render into a buffer
 * they malloc: on success *data (the caller frees it with free()) holds *size bytes; on
 * failure *data is NULL and *size 0. */

/* Learning curves from run_dir/history.csv (as fit writes it): one panel per metric, its
 * training and validation (val_) series together, epochs on the x axis counted from 1.
 * metrics: comma-separated names, e.g. "loss,accuracy", chosen and ordered; NULL for every
 * metric except the learning rate, the loss first. Panels are 520 x 380 (pixels for PNG,
 * points for SVG and PDF), two per row. out_path NULL: run_dir/history.png. Errors name
 * the file and, for a damaged history.csv, its line and column; an unknown metric's lists
 * the metrics the file has. */
int ct_plot_history(const char *run_dir, const char *metrics, const char *out_path,
                    ct_error *err);
int ct_plot_history_mem(const char *run_dir, const char *metrics, const char *format,
                        unsigned char **data, size_t *size, ct_error *err);

/* The experiment's model as a diagram, as Keras's plot_model(show_shapes=True,
 * show_layer_names=True) draws it: a box per model input and per layer with its name,
 * class and input and output shapes, and an edge per connection; laid out and rendered by
 * graphviz (dot). */
int ct_experiment_diagram(const ct_experiment *ex, const char *out_path, ct_error *err);
int ct_experiment_diagram_mem(const ct_experiment *ex, const char *format, unsigned char **data,
                              size_t *size, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
