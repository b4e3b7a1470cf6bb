/* cmd_fit.c - `ctrain fit`. */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* The first SIGINT or SIGTERM asks fit to stop after the current batch and write a
 * checkpoint; a second one ends the process at once, as does the first while the library
 * cannot act on it soon (HDF5 opening a file: nothing to save yet). */
static void on_signal(int sig)
{
    static volatile sig_atomic_t seen;
    if (seen++ || !ct_stop_is_prompt()) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    ct_request_stop();
}

/* The folder a --resume argument continues in: the directory itself, or a checkpoint
 * file's folder. Fills out (PATH_MAX bytes) with its real path; false if it cannot. */
static bool resume_folder(const char *resume, char *out)
{
    struct stat st;
    if (stat(resume, &st) < 0)
        return false;
    char *copy = strdup(resume);
    if (!copy)
        return false;
    bool ok = realpath(S_ISDIR(st.st_mode) ? copy : dirname(copy), out) != NULL;
    free(copy);
    return ok;
}

/* --resume with -o writes into another folder: one that holds a finished run of its own
 * is refused without --overwrite, as a plain -o is. */
static int check_resume_target(const ct_fit_options *fo)
{
    char weights[PATH_MAX + 16], from[PATH_MAX], to[PATH_MAX];
    struct stat st;
    snprintf(weights, sizeof weights, "%s/weights.h5", fo->run_dir);
    if (fo->overwrite || stat(weights, &st) < 0 || !realpath(fo->run_dir, to))
        return CLI_OK;
    if (resume_folder(fo->resume, from) && strcmp(from, to) == 0)
        return CLI_OK;
    fprintf(stderr, "ctrain: error: %s already holds a finished run; choose another -o "
                    "directory or pass --overwrite\n", fo->run_dir);
    return CLI_USAGE;
}

static int dist_fit(const char *path, ct_fit_options *fo, ct_error *err);

int cmd_fit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"overwrite", no_argument, NULL, 'O'},
        {"set", required_argument, NULL, 's'},
        {"device", required_argument, NULL, 'D'}, {"verbose", required_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
        {"profile", no_argument, NULL, 'p'},      {"resume", required_argument, NULL, 'r'},
        {"allow-outside", required_argument, NULL, 'A'},
        {"initial-weights", required_argument, NULL, 'W'},
        {"no-report", no_argument, NULL, 'R'}, {NULL, 0, NULL, 0}};
    ct_fit_options fo = {.verbose = -1, .report = true};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:v:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': fo.run_dir = optarg; break;
        case 'O': fo.overwrite = true; break;
        case 'D':
            if (cli_add_device(optarg) < 0)
                return cli_usage("fit", "--device takes cpu or cuda");
            break;
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
        case 'W': fo.initial_weights = optarg; break;
        case 'R': fo.report = false; break;
        case 'A':
            if (cli_add_allowed(optarg) < 0)
                return cli_usage("fit", "too many --allow-outside options");
            break;
        case 'h': return cli_command_help("fit");
        default: return cli_usage("fit", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("fit", "fit takes one experiment file");
    int status = fo.resume && fo.run_dir ? check_resume_target(&fo) : CLI_OK;
    if (status != CLI_OK)
        return status;
    ct_error err = {0};
    /* Under mpirun or srun every rank runs this; rank 0 alone prints (dist_fit). */
    if (ct_dist_start(&err) < 0)
        return cli_fail(&err);
    status = dist_fit(argv[optind], &fo, &err);
    ct_dist_finish();
    return status;
}

/* Loads the experiment and fits it. On several processes only rank 0 prints the error
 * (every rank gets the same one); a rank whose experiment does not load tells the others,
 * which are setting up their fit. */
static int dist_fit(const char *path, ct_fit_options *fo, ct_error *err)
{
    bool first = ct_dist_rank() == 0;
    int status = CLI_OK;
    ct_experiment *ex = cli_load_quietly(path, &status, err);
    if (!ex) {
        if (first)
            cli_fail(err);
        ct_dist_abandon(err);
        return status;
    }
    /* -q, -v 0 or fit.verbose: 0 silence the data phases' progress too */
    if (!first || fo->verbose == 0 || (fo->verbose < 0 && ct_experiment_verbose(ex) == 0))
        cli_show_phases(false);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (ct_experiment_fit(ex, fo, err) < 0)
        status = first ? cli_fail(err) : cli_status(err);
    ct_experiment_free(ex);
    return status;
}
