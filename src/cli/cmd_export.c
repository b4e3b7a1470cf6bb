/* cmd_export.c - `ctrain export`: a model and its weights in another framework's format
 * (Keras 3's .keras archive or .weights.h5 file, or an ONNX model). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static bool ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"weights", required_argument, NULL, 'w'},
        {"format", required_argument, NULL, 'f'}, {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *out = NULL, *weights = NULL, *format = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:w:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'w': weights = optarg; break;
        case 'f': format = optarg; break;
        case 's':
            if (cli_add_override(optarg) < 0)
                return cli_usage("export", "too many --set options");
            break;
        case 'h': return cli_command_help("export");
        default: return cli_usage("export", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("export", "export takes one experiment file or run directory");
    if (!out)
        return cli_usage("export", "name the output with -o OUT.keras, OUT.weights.h5 or "
                         "OUT.onnx");
    if (!format)
        format = ends_with(out, ".onnx") ? "onnx" : "keras";
    bool onnx = !strcmp(format, "onnx");
    if (!onnx && strcmp(format, "keras") != 0)
        return cli_usage("export", "unknown --format '%s' (keras or onnx)", format);
    if (!onnx && !ends_with(out, ".keras") && !ends_with(out, ".weights.h5"))
        return cli_usage("export", "the output must end in .keras (a Keras 3 archive) or "
                         ".weights.h5 (Keras 3 weights), not '%s'", out);
    const char *src = argv[optind];
    char config[4200], wpath[4200];
    struct stat st;
    ct_error err = {0};
    bool run = stat(src, &st) == 0 && S_ISDIR(st.st_mode);
    if (run) {
        snprintf(config, sizeof config, "%s/config.yaml", src);
        snprintf(wpath, sizeof wpath, "%s/weights.h5", src);
        if (stat(config, &st) < 0) {
            ct_err(&err, CT_ERR_USAGE, "%s has no config.yaml: not a run directory (the "
                   "folder fit wrote)", src);
            return cli_fail(&err);
        }
        if (!weights && stat(wpath, &st) < 0) {
            ct_err(&err, CT_ERR_USAGE, "%s has no weights.h5: the run has not finished "
                   "(name weights with --weights)", src);
            return cli_fail(&err);
        }
        if (!weights)
            weights = wpath;
    } else {
        snprintf(config, sizeof config, "%s", src);
    }
    int status = CLI_OK;
    ct_experiment *ex = cli_load(config, &status);
    if (!ex)
        return status;
    if (!weights)
        fprintf(stderr, "ctrain: note: no --weights: exporting the model's initial weights\n");
    if ((weights && ct_experiment_load_weights(ex, weights, &err) < 0) ||
        (onnx ? ct_experiment_export_onnx(ex, out, &err)
              : ct_experiment_export_keras(ex, out, &err)) < 0)
        status = cli_fail(&err);
    else
        printf("Wrote %s\n", out);
    ct_experiment_free(ex);
    return status;
}
