/* cmd_show.c - `ctrain show`: a convolution layer's filters and feature maps as a PNG. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>

#include "cli.h"

int cmd_show(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weights", required_argument, NULL, 'w'}, {"layer", required_argument, NULL, 'l'},
        {"sample", required_argument, NULL, 'n'},  {"input", required_argument, NULL, 'i'},
        {"x", required_argument, NULL, 'x'},       {"output", required_argument, NULL, 'o'},
        {"set", required_argument, NULL, 's'},     {"device", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *weights = NULL, *layer = NULL, *input = NULL, *x = NULL, *output = NULL;
    int64_t sample = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "w:l:n:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w': weights = optarg; break;
        case 'l': layer = optarg; break;
        case 'i': input = optarg; break;
        case 'x': x = optarg; break;
        case 'o': output = optarg; break;
        case 'n': {
            char *end;
            errno = 0;
            sample = strtoll(optarg, &end, 10);
            if (errno || end == optarg || *end || sample < 0)
                return cli_usage("show", "--sample takes a row number, 0 or more, not '%s'",
                                 optarg);
            break;
        }
        case 'D':
            if (cli_add_device(optarg) < 0)
                return cli_usage("show", "--device takes cpu or cuda");
            break;
        case 's':
            if (cli_add_override(optarg) < 0)
                return cli_usage("show", "too many --set options");
            break;
        case 'h': return cli_command_help("show");
        default: return cli_usage("show", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("show", "show takes one experiment file");
    if (!weights || !layer || !output)
        return cli_usage("show", "show needs --weights FILE, --layer NAME and -o OUT.png");
    if (x && !input)
        return cli_usage("show", "--x names a dataset of the file given with --input");
    int status = CLI_OK;
    ct_experiment *ex = cli_load(argv[optind], &status);
    if (!ex)
        return status;
    ct_error err = {0};
    if (ct_experiment_load_weights(ex, weights, &err) < 0 ||
        ct_experiment_show_layer(ex, layer, input, x, sample, output, &err) < 0)
        status = cli_fail(&err);
    ct_experiment_free(ex);
    return status;
}
