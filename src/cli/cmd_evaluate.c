/* cmd_evaluate.c - `ctrain evaluate`. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>

#include "cli.h"
#include "text.h"

#define MAX_RESULTS 64

static void print_json(const char **names, const double *values, int n)
{
    putchar('{');
    for (int i = 0; i < n; i++)
        if (isfinite(values[i]))
            printf("%s\"%s\": %.9g", i ? ", " : "", names[i], values[i]);
        else
            printf("%s\"%s\": null", i ? ", " : "", names[i]);
    printf("}\n");
}

int cmd_evaluate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weights", required_argument, NULL, 'w'}, {"data", required_argument, NULL, 'd'},
        {"x", required_argument, NULL, 'x'},       {"y", required_argument, NULL, 'y'},
        {"json", no_argument, NULL, 'j'},          {"set", required_argument, NULL, 's'},
        {"device", required_argument, NULL, 'D'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *weights = NULL, *data = NULL, *x = NULL, *y = NULL;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "w:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w': weights = optarg; break;
        case 'd': data = optarg; break;
        case 'x': x = optarg; break;
        case 'y': y = optarg; break;
        case 'j': json = true; break;
        case 'D':
            if (cli_add_device(optarg) < 0)
                return cli_usage("evaluate", "--device takes cpu or cuda");
            break;
        case 's':
            if (cli_add_override(optarg) < 0)
                return cli_usage("evaluate", "too many --set options");
            break;
        case 'h': return cli_command_help("evaluate");
        default: return cli_usage("evaluate", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("evaluate", "evaluate takes one experiment file");
    if (!weights)
        return cli_usage("evaluate", "evaluate needs --weights FILE (the weights.h5 fit wrote)");
    if ((x || y) && !data)
        return cli_usage("evaluate", "--x and --y name datasets of the file given with --data");
    int status = CLI_OK;
    ct_experiment *ex = cli_load(argv[optind], &status);
    if (!ex)
        return status;
    ct_error err = {0};
    const char *names[MAX_RESULTS];
    double values[MAX_RESULTS];
    int n = -1;
    if (ct_experiment_load_weights(ex, weights, &err) == 0)
        n = ct_experiment_evaluate(ex, data, x, y, names, values, MAX_RESULTS, &err);
    if (n < 0) {
        status = cli_fail(&err);
    } else if (json) {
        print_json(names, values, n);
    } else {
        /* As fit's lines: metrics first, then the loss, in Keras's number format. */
        for (int i = 1; i <= n; i++) {
            char v[32];
            ct_format_value(values[i % n], v, sizeof v);
            printf("%s%s: %s", i > 1 ? " - " : "", names[i % n], v);
        }
        putchar('\n');
    }
    ct_experiment_free(ex);
    return status;
}
