/* cmd_model.c - `ctrain summary` and `ctrain check`: commands that look at an experiment
 * without training it. */
#include <getopt.h>

#include "cli.h"

/* no_data and print are check's, diagram summary's; NULL where the command has none. */
static int parse_common(const char *cmd, int argc, char **argv, bool *no_data, bool *print,
                        const char **diagram)
{
    static const struct option opts[] = {
        {"set", required_argument, NULL, 's'}, {"no-data", no_argument, NULL, 'n'},
        {"print", no_argument, NULL, 'p'},     {"diagram", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (cli_add_override(optarg) < 0)
                return cli_usage(cmd, "too many --set options");
            break;
        case 'n':
        case 'p':
            if (!no_data)
                return cli_usage(cmd, "%s takes no --%s", cmd, c == 'n' ? "no-data" : "print");
            *(c == 'n' ? no_data : print) = true;
            break;
        case 'd':
            if (!diagram)
                return cli_usage(cmd, "%s takes no --diagram", cmd);
            *diagram = optarg;
            break;
        case 'h': return cli_command_help(cmd) - 1;
        default: return cli_usage(cmd, "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage(cmd, "%s takes one experiment file", cmd);
    return CLI_OK;
}

int cmd_summary(int argc, char **argv)
{
    const char *diagram = NULL;
    int status = parse_common("summary", argc, argv, NULL, NULL, &diagram);
    if (status != CLI_OK)
        return status < 0 ? CLI_OK : status;
    ct_experiment *ex = cli_load_model_only(argv[optind], &status);
    if (!ex)
        return status;
    ct_experiment_summary(ex, stdout);
    ct_error err = {0};
    status = CLI_OK;
    if (diagram) {
        if (ct_experiment_diagram(ex, diagram, &err) < 0)
            status = cli_fail(&err);
        else
            printf("Wrote %s\n", diagram);
    }
    ct_experiment_free(ex);
    return status;
}

int cmd_check(int argc, char **argv)
{
    bool no_data = false, print = false;
    int status = parse_common("check", argc, argv, &no_data, &print, NULL);
    if (status != CLI_OK)
        return status < 0 ? CLI_OK : status;
    const char *path = argv[optind];
    ct_experiment *ex = cli_load_model_only(path, &status);
    if (!ex)
        return status;
    ct_error err = {0};
    if (!no_data && ct_experiment_check_data(ex, &err) < 0) {
        status = cli_fail(&err);
    } else if (print) {
        if (ct_experiment_write_config(ex, stdout, &err) < 0)
            status = cli_fail(&err);
    } else {
        printf("%s: OK%s\n", path, no_data ? " (data files not checked)" : "");
    }
    ct_experiment_free(ex);
    return status;
}
