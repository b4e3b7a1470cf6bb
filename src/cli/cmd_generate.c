/* cmd_generate.c - `ctrain generate`. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

/* A whole number in [min, max] from the whole of text; false otherwise. */
static bool parse_int(const char *text, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_option(int c, ct_generate_options *o, const char **weights)
{
    long long v;
    char *end;
    switch (c) {
    case 'w': *weights = optarg; return CLI_OK;
    case 'p': o->prompt = optarg; return CLI_OK;
    case 'V': o->vocab_path = optarg; return CLI_OK;
    case 'n':
        if (!parse_int(optarg, 0, 1000000, &v))
            return cli_usage("generate", "--length takes 0 to 1000000 tokens, not '%s'", optarg);
        o->length = v;
        return CLI_OK;
    case 'k':
        if (!parse_int(optarg, 0, 1LL << 31, &v))
            return cli_usage("generate", "--top-k takes a whole number 0 or more, not '%s'",
                             optarg);
        o->top_k = v;
        return CLI_OK;
    case 'S':
        if (!parse_int(optarg, 0, 1LL << 53, &v))
            return cli_usage("generate", "--seed takes a whole number 0 or more, not '%s'",
                             optarg);
        o->seed = (uint64_t)v;
        o->seed_given = true;
        return CLI_OK;
    case 't':
        errno = 0;
        o->temperature = strtod(optarg, &end);
        if (errno || end == optarg || *end || !(o->temperature >= 0 && o->temperature <= 1e6))
            return cli_usage("generate", "--temperature takes a number from 0 to 1e6, not '%s'",
                             optarg);
        return CLI_OK;
    case 'D':
        return cli_add_device(optarg) < 0 ? cli_usage("generate", "--device takes cpu or cuda")
                                          : CLI_OK;
    case 's':
        return cli_add_override(optarg) < 0 ? cli_usage("generate", "too many --set options")
                                            : CLI_OK;
    case 'h': return -1;
    default: return cli_usage("generate", "bad option");
    }
}

int cmd_generate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weights", required_argument, NULL, 'w'},     {"prompt", required_argument, NULL, 'p'},
        {"length", required_argument, NULL, 'n'},      {"temperature", required_argument, NULL, 't'},
        {"top-k", required_argument, NULL, 'k'},       {"seed", required_argument, NULL, 'S'},
        {"vocab", required_argument, NULL, 'V'},       {"set", required_argument, NULL, 's'},
        {"device", required_argument, NULL, 'D'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    ct_generate_options o;
    ct_generate_options_default(&o);
    const char *weights = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "w:p:n:t:k:h", opts, NULL)) != -1) {
        int st = parse_option(c, &o, &weights);
        if (st < 0)
            return cli_command_help("generate");
        if (st != CLI_OK)
            return st;
    }
    if (optind != argc - 1)
        return cli_usage("generate", "generate takes one experiment file");
    if (!weights)
        return cli_usage("generate", "generate needs --weights FILE");
    int status = CLI_OK;
    ct_experiment *ex = cli_load(argv[optind], &status);
    if (!ex)
        return status;
    ct_error err = {0};
    if (ct_experiment_load_weights(ex, weights, &err) < 0 ||
        ct_experiment_generate(ex, &o, stdout, &err) < 0)
        status = cli_fail(&err);
    ct_experiment_free(ex);
    return status;
}
