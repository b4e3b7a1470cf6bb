/* main.c - the ctrain command line: dispatch, help, shared option handling, and the
 * OpenBLAS kernel choice said before a command runs. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "text.h"

#ifdef CT_HAVE_OPENBLAS
#include <cblas.h>
#endif

#define MAX_OVERRIDES 256

static const char *overrides[MAX_OVERRIDES];
static int n_overrides;
#define MAX_ALLOWED 16
static const char *allowed[MAX_ALLOWED];
static int n_allowed;

static const cli_command commands[] = {
    {"fit", cmd_fit,
     "fit FILE [-o RUN_DIR] [--overwrite] [--resume RUN_DIR|CHECKPOINT] [--set KEY=VALUE]...\n"
     "       [--initial-weights W] [--allow-outside DIR]... [-v N | -q] [--profile]\n"
     "       [--device cpu|cuda] [--no-report]",
     "Trains the experiment in FILE, writing config.yaml, history.csv, checkpoint.h5 (after\n"
     "every epoch) and weights.h5 into RUN_DIR (default runs/NAME, numbered when it exists),\n"
     "then evaluates on data.test. SIGINT or SIGTERM stops after the current batch and\n"
     "writes a checkpoint (exit status 130); a second one stops at once.\n"
     "  -o, --output DIR   run directory\n"
     "      --overwrite    reuse a run directory that holds a finished run\n"
     "      --resume R     continue the run whose checkpoint is R (a run directory or a\n"
     "                     checkpoint file), bit for bit as if it had never stopped; raise\n"
     "                     fit.epochs (--set fit.epochs=N) to train longer\n"
     "      --initial-weights W  start from the weights of W's layers that match the\n"
     "                     model's by name and shape (fine-tuning; overrides\n"
     "                     model.weights); the others keep their initial values\n"
     "      --allow-outside DIR  let the experiment file's output paths (model_checkpoint\n"
     "                     filepath, csv_logger filename, backup_and_restore backup_dir,\n"
     "                     tensorboard log_dir)\n"
     "                     write under DIR too; otherwise they must stay inside RUN_DIR,\n"
     "                     unless given with --set; repeatable\n"
     "  -v, --verbose N    0 silent, 1 progress bar, 2 one line per epoch\n"
     "  -q, --quiet        same as --verbose 0\n"
     "      --profile      after the run, print the time per layer (forward and backward),\n"
     "                     data loading, loss and optimizer per training step\n"
     "      --device DEV   cpu or cuda (same as --set backend.device=DEV)\n"
     "      --no-report    do not write RUN_DIR/report.html (see ctrain report)\n"},
    {"evaluate", cmd_evaluate,
     "evaluate FILE --weights W [--data F.h5 [--x DS] [--y DS]] [--json] [--set KEY=VALUE]...",
     "Prints the loss and every metric of the model with weights W on data.test, or on the\n"
     "datasets given with --data/--x/--y.\n"
     "  -w, --weights W    weights file written by fit\n"
     "      --data F.h5    HDF5 file to evaluate on instead of data.test\n"
     "      --x DS, --y DS dataset names in that file (default: data.test's, else x and y)\n"
     "      --json         print one JSON object\n"
     "      --device DEV   cpu or cuda (same as --set backend.device=DEV)\n"},
    {"predict", cmd_predict,
     "predict FILE --weights W --input X.h5 [--x DS] [--outputs L1,L2...] -o OUT\n"
     "       [--set KEY=VALUE]...",
     "Writes the model's outputs for dataset DS of X.h5 to OUT: HDF5 (dataset\n"
     "\"predictions\") for .h5/.hdf5, CSV for .csv.\n"
     "  -w, --weights W    weights file written by fit\n"
     "  -i, --input X.h5   HDF5 file with the inputs\n"
     "      --x DS         dataset name (default: data.test's x, else x)\n"
     "      --outputs L1,L2...  write these layers' outputs instead, one HDF5 dataset per\n"
     "                     layer named after it, shaped (N, the layer's output shape);\n"
     "                     NAME:K is output K of a layer with several (a recurrent layer's\n"
     "                     states), a model input's name its input. CSV only when every\n"
     "                     one has one axis per sample. Repeatable\n"
     "  -o, --output OUT   output file\n"
     "      --device DEV   cpu or cuda (same as --set backend.device=DEV)\n"},
    {"show", cmd_show,
     "show FILE --weights W --layer L [--sample N] [--input X.h5 [--x DS]] -o OUT.png\n"
     "       [--set KEY=VALUE]...",
     "Draws the 2-D convolution layer L (conv2d, depthwise_conv2d, separable_conv2d) into\n"
     "a PNG: its filters as small tiles (blue below 0, red above; a filter over several\n"
     "input channels as their mean), input sample N, and the layer's feature maps for it,\n"
     "each scaled to its own range and labelled with its channel.\n"
     "  -w, --weights W    weights file written by fit\n"
     "  -l, --layer L      the layer's name (see ctrain summary)\n"
     "  -n, --sample N     row of the data (default 0)\n"
     "  -i, --input X.h5   HDF5 file with the inputs (default: data.test's)\n"
     "      --x DS         dataset name (default: data.test's x, else x)\n"
     "  -o, --output OUT   the PNG file\n"
     "      --device DEV   cpu or cuda (same as --set backend.device=DEV)\n"},
    {"generate", cmd_generate,
     "generate FILE --weights W [--prompt TEXT] [--length N] [--temperature T] [--top-k K]\n"
     "       [--seed S] [--vocab F.h5] [--set KEY=VALUE]...",
     "Samples text from a language model (token ids in, scores over the vocabulary out),\n"
     "one token at a time, decoded with the vocabulary `ctrain data import-text` stored\n"
     "beside data.train's windows. The same seed gives the same text.\n"
     "  -w, --weights W    weights file written by fit\n"
     "  -p, --prompt TEXT  text to continue (default: none)\n"
     "  -n, --length N     tokens to generate (default 200)\n"
     "  -t, --temperature T  divides the scores before sampling; 0 takes the most likely\n"
     "                     token every time (default 1)\n"
     "  -k, --top-k K      sample among the K most likely tokens (default 0: all)\n"
     "      --seed S       random seed (default: the experiment's seed)\n"
     "      --vocab F.h5   the file holding the vocabulary (default: data.train's)\n"
     "      --device DEV   cpu or cuda (same as --set backend.device=DEV)\n"},
    {"export", cmd_export,
     "export FILE|RUN_DIR [--weights W] [--format keras|onnx] -o OUT [--set KEY=VALUE]...",
     "Writes the model of the experiment FILE (or of the run in RUN_DIR, with its\n"
     "weights.h5) in another framework's format, named by --format or by OUT's ending:\n"
     "keras (OUT.keras, OUT.weights.h5): for Keras 3: OUT.keras is an archive\n"
     "keras.saving.load_model opens, OUT.weights.h5 the weights alone, for\n"
     "model.load_weights. A layer whose weights Keras keeps in a way ctrain does not know\n"
     "is refused by name.\n"
     "onnx (OUT.onnx): an ONNX model, opset 17, that ONNX Runtime runs; inputs and\n"
     "outputs keep the model's names and layout (images N x H x W x C, sequences\n"
     "N x T x C); an input an embedding reads takes int64 token ids. Layers without an\n"
     "ONNX translation are refused by name (see man ctrain for the list).\n"
     "data.scale is not part of the model: scale the inputs the same way.\n"
     "  -w, --weights W    weights file (default: RUN_DIR/weights.h5; for FILE, the\n"
     "                     model's initial weights)\n"
     "  -f, --format F     keras or onnx\n"
     "  -o, --output OUT   output file, ending in .keras, .weights.h5 or .onnx\n"},
    {"serve", cmd_serve,
     "serve RUN_DIR|WEIGHTS.h5|FILE [--weights W] [--port 8501] [--host 127.0.0.1]\n"
     "       [--name NAME] [--max-batch N] [--max-body BYTES] [--no-reload] [-q]\n"
     "       [--set KEY=VALUE]...",
     "Answers TensorFlow Serving's REST API for the model: POST /v1/models/NAME:predict\n"
     "with {\"instances\": [...]} (answered {\"predictions\": [...]}) or {\"inputs\": ...}\n"
     "(answered {\"outputs\": ...}); GET /v1/models/NAME (status) and\n"
     "/v1/models/NAME/metadata (the signature). Samples are the data's values, as the\n"
     "HDF5 file holds them (data.scale is applied). Requests that wait together run as one\n"
     "batch of up to --max-batch rows. Bad requests get a 4xx answer with {\"error\": ...}.\n"
     "SIGTERM or Ctrl-C stops taking connections, answers the requests received and exits.\n"
     "When the weights file changes (looked at every second; replace it by a rename), the\n"
     "new weights load beside the running model and take over between batches, and the\n"
     "version in GET /v1/models/NAME goes up by one; a file that does not load leaves the\n"
     "old model serving, with one line on stderr naming the file and the error.\n"
     "  -p, --port N       TCP port (default 8501; 0: any free one, printed)\n"
     "      --host ADDR    IPv4 address to listen on (default 127.0.0.1: this machine only)\n"
     "      --name NAME    the model's name in URLs (default: the experiment's name)\n"
     "  -w, --weights W    weights (with an experiment file)\n"
     "      --max-batch N  rows one model run takes from waiting requests (default\n"
     "                     fit.batch_size)\n"
     "      --max-body B   largest request body in bytes (default 64 MiB; larger: 413)\n"
     "      --no-reload    never reload the weights\n"
     "  -q, --quiet        no line per request on stderr\n"},
    {"report", cmd_report, "report RUN_DIR [-o FILE.html] [--weights W] [--set KEY=VALUE]...",
     "Writes RUN_DIR/report.html (fit writes it too, unless --no-report): one page that\n"
     "needs no network, with the training history, the test set's loss and metrics (for a\n"
     "classifier also its confusion matrix, per-class precision, recall and F1, and the\n"
     "first misclassified test images), the model summary and the experiment file.\n"
     "  -o, --output FILE  write the page here instead\n"
     "  -w, --weights W    weights to test (default: RUN_DIR/weights.h5)\n"
     "      --device DEV   cpu or cuda (same as --set backend.device=DEV)\n"},
    {"import", cmd_import, "import MODEL.keras|MODEL.h5 -o DIR",
     "Reads a Keras model (a Keras 3 .keras archive or a legacy model.save(\"m.h5\") file)\n"
     "and writes DIR/experiment.yaml (the model, with a data section to fill in) and\n"
     "DIR/weights.h5. Layers or options ctrain cannot take are listed, with their Keras\n"
     "classes, and nothing is written.\n"
     "  -o, --output DIR   output folder (created if missing)\n"},
    {"summary", cmd_summary, "summary FILE [--diagram OUT] [--set KEY=VALUE]...",
     "Prints the model's layers, output shapes and parameter counts.\n"
     "      --diagram OUT  also draw the model to OUT (.svg, .png, .pdf, or .dot for\n"
     "                     graphviz's text): a box per input and layer with its name,\n"
     "                     class and shapes, an arrow per connection\n"},
    {"check", cmd_check, "check FILE [--no-data] [--print] [--set KEY=VALUE]...",
     "Checks the experiment file and, unless --no-data, every data file it names.\n"
     "  --print            also print the resolved config (every default filled in)\n"},
    {"plot", cmd_plot, "plot RUN_DIR [-o OUT] [--metrics M1,M2,...]",
     "Draws the learning curves of RUN_DIR/history.csv: a panel per metric with its\n"
     "training and validation values by epoch. The format follows OUT's extension.\n"
     "  -o, --output OUT   .png, .svg or .pdf (default RUN_DIR/history.png)\n"
     "  -m, --metrics M    the metrics to draw, in this order, e.g. loss,accuracy\n"
     "                     (default: every one but learning_rate, the loss first)\n"},
    {"data", cmd_data,
     "data import-idx --images F --labels F -o OUT.h5 [--group G]\n"
     "  ctrain data import-csv FILE.csv -o OUT.h5 [--group G] [--label-column N] [--header]\n"
     "         [--categorical integer|onehot]\n"
     "  ctrain data import-text FILE -o OUT.h5 [--level char|word] [--seq-len N] [--stride S]\n"
     "         [--vocab-size V] [--split F] [--labels [--header]] [--group G]\n"
     "  ctrain data import-images DIR -o OUT.h5 [--size H W] [--color grayscale|rgb|rgba]\n"
     "         [--seed S] [--no-shuffle] [--group G]",
     "Converts IDX (optionally gzipped), CSV or UTF-8 text files into the HDF5 layout ctrain\n"
     "reads.\n"
     "import-idx writes G/images (uint8, N x H x W x 1) and G/labels (uint8).\n"
     "import-csv writes G/x (float32) and G/y (int32 labels, or float32 targets);\n"
     "--label-column counts from 0, negative from the end (default -1). Cells must be\n"
     "numbers, unless --categorical is given: then a column holding any other text is\n"
     "categorical, its categories coded 0, 1, ... in sorted order, as one column of codes\n"
     "(integer) or one 0/1 column per category (onehot); a categorical label column gives\n"
     "class ids. G/classes and G/categories_J (J: the CSV column) name the categories.\n"
     "import-text writes G/train/x, G/train/y and, from the end of the text,\n"
     "G/validation/x, G/validation/y (int32 token ids, rows of N): windows of the text and\n"
     "the next token at each step, or with --labels one row per line of text,label and\n"
     "its label; G/vocab holds the tokens by id (0 padding, 1 unknown).\n"
     "import-images reads DIR's sub-folders, one per class (ids in sorted order), of PNG\n"
     "and JPEG files into G/images (uint8, N x H x W x C), G/labels and G/classes, the rows\n"
     "shuffled with a fixed seed.\n"
     "  --group G          group in the output file (default: train; import-text: the root)\n"
     "  --level char|word  import-text's tokens: characters (default) or words and\n"
     "                     punctuation\n"
     "  --seq-len N        tokens per row (default 100)\n"
     "  --stride S         tokens between windows' starts (default: N)\n"
     "  --vocab-size V     ids kept, 0 and 1 included (default: every character, or 20000)\n"
     "  --split F          share of the text (rows) for training (default 0.9)\n"
     "  --labels           lines of text,label (an integer or a class name)\n"
     "  --size H W         import-images: resize every image (bilinear); without it every\n"
     "                     image must have the first one's size\n"
     "  --color C          import-images: grayscale, rgb (default) or rgba\n"
     "  --seed S           import-images: the rows' order (default 1337); --no-shuffle\n"
     "                     keeps class then file order\n"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

int cli_fail(const ct_error *err)
{
    cli_end_phase_line();
    fprintf(stderr, "ctrain: error: %s\n", err->msg);
    return cli_status(err);
}

int cli_status(const ct_error *err)
{
    switch (err->code) {
    case CT_ERR_USAGE:
    case CT_ERR_CONFIG:
        return CLI_USAGE;
    case CT_ERR_INTERRUPT:
        return CLI_INTERRUPTED;
    default:
        return CLI_FAILED;
    }
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ctrain: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'ctrain help %s'.\n", cmd);
    return CLI_USAGE;
}

int cli_add_override(const char *value)
{
    if (n_overrides >= MAX_OVERRIDES)
        return -1;
    overrides[n_overrides++] = value;
    return 0;
}

int cli_add_device(const char *device)
{
    static char text[96];
    if (strlen(device) > 64)
        return -1;
    snprintf(text, sizeof text, "backend.device=%s", device);
    return cli_add_override(text);
}

int cli_add_allowed(const char *dir)
{
    if (n_allowed >= MAX_ALLOWED)
        return -1;
    allowed[n_allowed++] = dir;
    return 0;
}

/* keep: where the error goes instead of stderr (NULL: printed). */
static ct_experiment *load_as(const char *path, int *status, bool lazily, ct_error *keep)
{
    ct_error err = {0};
    ct_experiment *ex =
        lazily ? ct_experiment_load_lazily(path, overrides, n_overrides, &err)
               : ct_experiment_load_allowing(path, overrides, n_overrides, allowed, n_allowed,
                                             &err);
    if (!ex) {
        *status = keep ? cli_status(&err) : cli_fail(&err);
        if (keep)
            *keep = err;
        return NULL;
    }
    /* Warnings go to stderr once, line by line, as errors do (once for a whole job). */
    for (const char *w = ct_experiment_warnings(ex); w && *w && ct_dist_rank() == 0;) {
        const char *nl = strchr(w, '\n');
        int len = nl ? (int)(nl - w) : (int)strlen(w);
        fprintf(stderr, "ctrain: warning: %.*s\n", len, w);
        w += len + (nl != NULL);
    }
    return ex;
}

ct_experiment *cli_load(const char *path, int *status)
{
    return load_as(path, status, false, NULL);
}

ct_experiment *cli_load_quietly(const char *path, int *status, ct_error *err)
{
    return load_as(path, status, false, err);
}

ct_experiment *cli_load_model_only(const char *path, int *status)
{
    return load_as(path, status, true, NULL);
}

static int cmd_help(int argc, char **argv);

static void print_usage(FILE *out)
{
    fprintf(out, "Usage:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  ctrain %s\n", commands[i].synopsis);
    fprintf(out, "  ctrain help [COMMAND]\n  ctrain --version\n\n"
                 "See ctrain(1) and ctrain.yaml(5).\n");
}

int cli_command_help(const char *name)
{
    char *argv[] = {"help", (char *)name, NULL};
    return cmd_help(2, argv);
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            printf("Usage: ctrain %s\n\n%s", commands[i].synopsis, commands[i].help);
            if (strcmp(argv[1], "data") != 0 && strcmp(argv[1], "plot") != 0 &&
                strcmp(argv[1], "import") != 0)
                printf("      --set KEY=VALUE  override a config value (e.g. fit.epochs=2); repeatable\n");
            return CLI_OK;
        }
    fprintf(stderr, "ctrain: error: no command '%s'\n", argv[1]);
    print_usage(stderr);
    return CLI_USAGE;
}

/* OpenBLAS's generic kernels on a processor it does not know: the library chooses better
 * ones in place (ct_blas_choose_kernels); the command line says so once, on stderr. */
static void choose_blas_kernels(void)
{
    const char *note;
    if (ct_blas_choose_kernels(&note))
        fprintf(stderr, "ctrain: %s\n", note);
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CT_ASAN 1
#endif
#ifdef CT_ASAN
/* A sanitizer build's LeakSanitizer asks for this. The libraries behind the pictures
 * (plot, summary --diagram, the run report) keep caches until the process ends:
 * fontconfig and glib under cairo's and pango's text, graphviz and its pango plugin, which
 * also loses each HTML label's parse. Open MPI and its runtime (fit under mpirun) keep
 * what MPI_Init set up past MPI_Finalize. None of it is memory ctrain could free. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfontconfig.so\nleak:libglib-2.0.so\nleak:libgvc.so\n"
           "leak:libgvplugin_pango.so\nleak:libpango-1.0.so\nleak:libpangoft2-1.0.so\n"
           "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libpmix.so\n"
           "leak:libhwloc.so\nleak:libevent\nleak:mca_\n";
}
/* ... and says nothing about them: a quiet command stays quiet. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "print_suppressions=0"; }
#endif

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        choose_blas_kernels();
        printf("ctrain %s\n", ct_version());
#ifdef CT_HAVE_OPENBLAS
        printf("%s; kernels %s\n", openblas_get_config(), openblas_get_corename());
#endif
        return CLI_OK;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return cmd_help(argc - 1, argv + 1);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0) {
            choose_blas_kernels();
            cli_show_phases(true);
            return commands[i].run(argc - 1, argv + 1);
        }
    const char *names[N_COMMANDS + 2];
    for (size_t i = 0; i < N_COMMANDS; i++)
        names[i] = commands[i].name;
    names[N_COMMANDS] = "help";
    names[N_COMMANDS + 1] = NULL;
    const char *s = ct_suggest(cmd, names);
    fprintf(stderr, "ctrain: error: unknown command '%s'%s%s%s\n", cmd, s ? " (did you mean '" : "",
            s ? s : "", s ? "'?)" : "");
    print_usage(stderr);
    return CLI_USAGE;
}
