/* cmd_plot.c - `ctrain plot`: a run's learning curves as a picture. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

int cmd_plot(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"metrics", required_argument, NULL, 'm'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL, *metrics = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'm': metrics = optarg; break;
        case 'h': return cli_command_help("plot");
        default: return cli_usage("plot", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("plot", "plot takes one run directory");
    const char *run = argv[optind];
    ct_error err = {0};
    if (ct_plot_history(run, metrics, out, &err) < 0)
        return cli_fail(&err);
    size_t len = strlen(run);
    if (out)
        printf("Wrote %s\n", out);
    else
        printf("Wrote %s%shistory.png\n", run, len && run[len - 1] == '/' ? "" : "/");
    return CLI_OK;
}
