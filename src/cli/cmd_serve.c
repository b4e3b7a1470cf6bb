/* cmd_serve.c - `ctrain serve`: TensorFlow Serving's REST API for a trained model. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void on_signal(int sig)
{
    (void)sig;
    ct_serve_stop();
}

typedef struct where {
    const char *host, *reload;
} where;

static void ready(int port, const char *name, void *ctx)
{
    const where *w = ctx;
    printf("Serving '%s' on http://%s:%d/v1/models/%s (POST :predict; Ctrl-C or SIGTERM "
           "stops)\n", name, w->host, port, name);
    if (w->reload)
        printf("Reloading when %s changes\n", w->reload);
    fflush(stdout);
}

/* A whole number in [lo, hi] from an option's text; -1 when it is not one. */
static long long number(const char *text, long long lo, long long hi)
{
    char *end;
    long long v = strtoll(text, &end, 10);
    return *text && !*end && v >= lo && v <= hi ? v : -1;
}

/* The experiment and weights of what was named: a run directory, a run's weights.h5 (its
 * folder's config.yaml), or an experiment file with --weights. */
static int locate(const char *what, const char **weights, char *config, char *wpath, size_t n)
{
    struct stat st;
    if (stat(what, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(config, n, "%s/config.yaml", what);
        snprintf(wpath, n, "%s/weights.h5", what);
        *weights = *weights ? *weights : wpath;
        return 0;
    }
    const char *ext = strrchr(what, '.');
    if (ext && (!strcmp(ext, ".h5") || !strcmp(ext, ".hdf5"))) {
        const char *slash = strrchr(what, '/');
        snprintf(config, n, "%.*sconfig.yaml", slash ? (int)(slash - what + 1) : 0, what);
        *weights = what;
        return 0;
    }
    snprintf(config, n, "%s", what);
    return *weights ? 0 : -1;
}

int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},      {"host", required_argument, NULL, 'H'},
        {"name", required_argument, NULL, 'n'},      {"weights", required_argument, NULL, 'w'},
        {"max-batch", required_argument, NULL, 'b'}, {"max-body", required_argument, NULL, 'B'},
        {"set", required_argument, NULL, 's'},       {"quiet", no_argument, NULL, 'q'},
        {"no-reload", no_argument, NULL, 'R'},       {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    ct_serve_options o = {.port = 8501, .host = "127.0.0.1", .log = stderr};
    const char *weights = NULL;
    bool reload = true;
    long long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:w:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if ((v = number(optarg, 0, 65535)) < 0)
                return cli_usage("serve", "--port takes 0 to 65535 (0: any free port), not '%s'",
                                 optarg);
            o.port = (int)v;
            break;
        case 'H': o.host = optarg; break;
        case 'n': o.name = optarg; break;
        case 'w': weights = optarg; break;
        case 'q': o.log = NULL; break;
        case 'R': reload = false; break;
        case 'b':
            if ((v = number(optarg, 1, 1 << 20)) < 0)
                return cli_usage("serve", "--max-batch takes 1 to 1048576 rows, not '%s'", optarg);
            o.max_batch = v;
            break;
        case 'B':
            if ((v = number(optarg, 1024, 1LL << 34)) < 0)
                return cli_usage("serve", "--max-body takes 1024 to 17179869184 bytes, not '%s'",
                                 optarg);
            o.max_body = (size_t)v;
            break;
        case 's':
            if (cli_add_override(optarg) < 0)
                return cli_usage("serve", "too many --set options");
            break;
        case 'h': return cli_command_help("serve");
        default: return cli_usage("serve", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("serve", "serve takes one run directory, weights file or experiment file");
    if (o.name && (!*o.name || strpbrk(o.name, "/:?# ")))
        return cli_usage("serve", "--name takes a name without '/', ':', '?', '#' or spaces");
    char config[4200], wpath[4200];
    if (locate(argv[optind], &weights, config, wpath, sizeof config) < 0)
        return cli_usage("serve", "serving an experiment file needs --weights W");
    int status = CLI_OK;
    ct_experiment *ex = cli_load(config, &status);
    if (!ex)
        return status;
    ct_error err = {0};
    if (reload) {
        o.reload = weights;
        o.reload_log = stderr;
    }
    where w = {o.host, o.reload};
    o.ready = ready;
    o.ready_ctx = &w;
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (ct_experiment_load_weights(ex, weights, &err) < 0 || ct_serve(ex, &o, &err) < 0)
        status = cli_fail(&err);
    else
        printf("Stopped\n");
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    ct_experiment_free(ex);
    return status;
}
