/* cmd_report.c - `ctrain report`: the run report of a finished run. */
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cli.h"

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"weights", required_argument, NULL, 'w'},
        {"set", required_argument, NULL, 's'},    {"device", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *out = NULL, *weights = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:w:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'w': weights = optarg; break;
        case 'D':
            if (cli_add_device(optarg) < 0)
                return cli_usage("report", "--device takes cpu or cuda");
            break;
        case 's':
            if (cli_add_override(optarg) < 0)
                return cli_usage("report", "too many --set options");
            break;
        case 'h': return cli_command_help("report");
        default: return cli_usage("report", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("report", "report takes one run directory");
    const char *run = argv[optind];
    char config[4200], wpath[4200];
    struct stat st;
    ct_error err = {0};
    if (stat(run, &st) < 0 || !S_ISDIR(st.st_mode)) {
        ct_err(&err, CT_ERR_USAGE, "%s is not a run directory (the folder fit wrote)", run);
        return cli_fail(&err);
    }
    snprintf(config, sizeof config, "%s/config.yaml", run);
    if (stat(config, &st) < 0) {
        ct_err(&err, CT_ERR_USAGE, "%s has no config.yaml: not a run directory (the folder fit "
               "wrote)", run);
        return cli_fail(&err);
    }
    snprintf(wpath, sizeof wpath, "%s/weights.h5", run);
    if (!weights && stat(wpath, &st) < 0) {
        ct_err(&err, CT_ERR_USAGE, "%s has no weights.h5: the run has not finished (resume it "
               "with ctrain fit --resume %s, or name weights with --weights)", run, run);
        return cli_fail(&err);
    }
    int status = CLI_OK;
    ct_experiment *ex = cli_load(config, &status);
    if (!ex)
        return status;
    if (ct_experiment_load_weights(ex, weights ? weights : wpath, &err) < 0 ||
        ct_experiment_report(ex, run, out, &err) < 0)
        status = cli_fail(&err);
    else if (out)
        printf("Wrote %s\n", out);
    else
        printf("Wrote %s/report.html\n", run);
    ct_experiment_free(ex);
    return status;
}
