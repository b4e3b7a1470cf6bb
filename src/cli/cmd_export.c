/* cmd_export.c - `ctrain export`: a trained model in another framework's format. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* The format named by --format, else by OUT's extension; NULL when neither says. */
static const char *format_of(const char *given, const char *out)
{
    if (given)
        return given;
    const char *ext = strrchr(out, '.');
    return ext && !strcmp(ext, ".onnx") ? "onnx" : NULL;
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
        return cli_usage("export", "export needs -o OUT");
    format = format_of(format, out);
    if (!format || strcmp(format, "onnx"))
        return cli_usage("export", "--format takes onnx%s%s%s", format ? ", not '" : "",
                         format ? format : " (or name OUT .onnx)", format ? "'" : "");
    /* A run directory: its config and weights. */
    const char *src = argv[optind];
    char config[4200], wpath[4200];
    struct stat st;
    if (stat(src, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(config, sizeof config, "%s/config.yaml", src);
        snprintf(wpath, sizeof wpath, "%s/weights.h5", src);
        src = config;
        if (!weights)
            weights = wpath;
    }
    if (!weights)
        return cli_usage("export", "export needs --weights W (the weights.h5 fit wrote), or a "
                         "run directory");
    int status = CLI_OK;
    ct_experiment *ex = cli_load(src, &status);
    if (!ex)
        return status;
    ct_error err = {0};
    if (ct_experiment_load_weights(ex, weights, &err) < 0 ||
        ct_experiment_export_onnx(ex, out, &err) < 0)
        status = cli_fail(&err);
    else
        printf("Wrote %s\n", out);
    ct_experiment_free(ex);
    return status;
}
