/* cmd_fit.c - `ctrain fit`. */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>

#include "cli.h"

/* The first SIGINT or SIGTERM asks fit to stop after the current batch and write a
 * checkpoint; a second one ends the process at once. */
static void on_signal(int sig)
{
    static volatile sig_atomic_t seen;
    if (seen++) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    ct_request_stop();
}

int cmd_fit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"overwrite", no_argument, NULL, 'O'},
        {"set", required_argument, NULL, 's'},    {"verbose", required_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
        {"profile", no_argument, NULL, 'p'},      {"resume", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0}};
    ct_fit_options fo = {.verbose = -1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:v:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': fo.run_dir = optarg; break;
        case 'O': fo.overwrite = true; break;
        case 's':
            if (cli_add_override(optarg) < 0)
                return cli_usage("fit", "too many --set options");
            break;
        case 'v': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > 2)
                return cli_usage("fit", "--verbose takes 0, 1 or 2, not '%s'", optarg);
            fo.verbose = (int)v;
            break;
        }
        case 'q': fo.verbose = 0; break;
        case 'p': fo.profile = true; break;
        case 'r': fo.resume = optarg; break;
        case 'h': return cli_command_help("fit");
        default: return cli_usage("fit", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("fit", "fit takes one experiment file");
    int status = CLI_OK;
    ct_experiment *ex = cli_load(argv[optind], &status);
    if (!ex)
        return status;
    ct_error err = {0};
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (ct_experiment_fit(ex, &fo, &err) < 0)
        status = cli_fail(&err);
    ct_experiment_free(ex);
    return status;
}
