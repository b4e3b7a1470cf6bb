/* cmd_predict.c - `ctrain predict`. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_LAYERS 64

/* The names of --outputs (comma-separated, repeatable), split in place in `text` (a copy
 * the caller frees). Returns the new count, or -1 on an empty name or too many. */
static int add_layers(char *text, const char **names, int n)
{
    size_t len = strlen(text);
    if (!len || text[0] == ',' || text[len - 1] == ',' || strstr(text, ",,"))
        return -1;
    for (char *save = NULL, *name = text;; name = NULL) {
        char *tok = strtok_r(name, ",", &save);
        if (!tok)
            break;
        if (n == MAX_LAYERS)
            return -1;
        names[n++] = tok;
    }
    return n;
}

int cmd_predict(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weights", required_argument, NULL, 'w'}, {"input", required_argument, NULL, 'i'},
        {"x", required_argument, NULL, 'x'},       {"output", required_argument, NULL, 'o'},
        {"set", required_argument, NULL, 's'},     {"outputs", required_argument, NULL, 'L'},
        {"device", required_argument, NULL, 'D'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *weights = NULL, *input = NULL, *x = NULL, *output = NULL;
    const char *layers[MAX_LAYERS];
    char *lists[MAX_LAYERS];
    int nlayers = 0, nlists = 0, status = CLI_OK;
    int c;
    optind = 1;
    while (status == CLI_OK && (c = getopt_long(argc, argv, "w:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w': weights = optarg; break;
        case 'i': input = optarg; break;
        case 'x': x = optarg; break;
        case 'o': output = optarg; break;
        case 'L':
            /* strtok_r writes into it: a copy, not argv */
            if (nlists == MAX_LAYERS)
                status = cli_usage("predict", "too many --outputs options");
            else if (!(lists[nlists] = strdup(optarg)))
                status = cli_usage("predict", "out of memory");
            else if ((nlayers = add_layers(lists[nlists++], layers, nlayers)) < 0)
                status = cli_usage("predict", "--outputs takes up to %d layer names separated "
                                   "by commas, none empty: '%s'", MAX_LAYERS, optarg);
            break;
        case 'D':
            if (cli_add_device(optarg) < 0)
                status = cli_usage("predict", "--device takes cpu or cuda");
            break;
        case 's':
            if (cli_add_override(optarg) < 0)
                status = cli_usage("predict", "too many --set options");
            break;
        case 'h': status = cli_command_help("predict"); goto done;
        default: status = cli_usage("predict", "bad option"); break;
        }
    }
    if (status != CLI_OK)
        goto done;
    if (optind != argc - 1) {
        status = cli_usage("predict", "predict takes one experiment file");
        goto done;
    }
    if (!weights || !input || !output) {
        status = cli_usage("predict", "predict needs --weights FILE, --input FILE.h5 and -o OUT");
        goto done;
    }
    ct_experiment *ex = cli_load(argv[optind], &status);
    if (!ex)
        goto done;
    ct_error err = {0};
    if (ct_experiment_load_weights(ex, weights, &err) < 0 ||
        (nlayers ? ct_experiment_predict_layers(ex, input, x, nlayers, layers, output, &err)
                 : ct_experiment_predict(ex, input, x, output, &err)) < 0)
        status = cli_fail(&err);
    ct_experiment_free(ex);
done:
    for (int i = 0; i < nlists; i++)
        free(lists[i]);
    return status;
}
