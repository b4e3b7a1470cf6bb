/* cmd_predict.c - `ctrain predict`. */
#include <getopt.h>

#include "cli.h"

int cmd_predict(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weights", required_argument, NULL, 'w'}, {"input", required_argument, NULL, 'i'},
        {"x", required_argument, NULL, 'x'},       {"output", required_argument, NULL, 'o'},
        {"set", required_argument, NULL, 's'},
        {"device", required_argument, NULL, 'D'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *weights = NULL, *input = NULL, *x = NULL, *output = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "w:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w': weights = optarg; break;
        case 'i': input = optarg; break;
        case 'x': x = optarg; break;
        case 'o': output = optarg; break;
        case 'D':
            if (cli_add_device(optarg) < 0)
                return cli_usage("predict", "--device takes cpu or cuda");
            break;
        case 's':
            if (cli_add_override(optarg) < 0)
                return cli_usage("predict", "too many --set options");
            break;
        case 'h': return cli_command_help("predict");
        default: return cli_usage("predict", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("predict", "predict takes one experiment file");
    if (!weights || !input || !output)
        return cli_usage("predict", "predict needs --weights FILE, --input FILE.h5 and -o OUT");
    int status = CLI_OK;
    ct_experiment *ex = cli_load(argv[optind], &status);
    if (!ex)
        return status;
    ct_error err = {0};
    if (ct_experiment_load_weights(ex, weights, &err) < 0 ||
        ct_experiment_predict(ex, input, x, output, &err) < 0)
        status = cli_fail(&err);
    ct_experiment_free(ex);
    return status;
}
