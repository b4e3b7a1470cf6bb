/* cmd_data.c - `ctrain data import-idx` and `ctrain data import-csv`. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int import_idx(int argc, char **argv)
{
    static const struct option opts[] = {
        {"images", required_argument, NULL, 'i'}, {"labels", required_argument, NULL, 'l'},
        {"output", required_argument, NULL, 'o'}, {"group", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *images = NULL, *labels = NULL, *out = NULL, *group = "train";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': images = optarg; break;
        case 'l': labels = optarg; break;
        case 'o': out = optarg; break;
        case 'g': group = optarg; break;
        case 'h': return cli_command_help("data");
        default: return cli_usage("data", "bad option");
        }
    }
    if (!images || !labels || !out || optind != argc)
        return cli_usage("data", "import-idx needs --images FILE --labels FILE -o OUT.h5");
    ct_error err = {0};
    if (ct_data_import_idx(images, labels, out, group, &err) < 0)
        return cli_fail(&err);
    printf("Wrote %s/images and %s/labels to %s\n", group, group, out);
    return CLI_OK;
}

static int import_csv(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},       {"group", required_argument, NULL, 'g'},
        {"label-column", required_argument, NULL, 'l'}, {"header", no_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0}};
    const char *out = NULL, *group = "train";
    int label = -1, c;
    bool header = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'g': group = optarg; break;
        case 'l': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || !*optarg || v < -100000 || v > 100000)
                return cli_usage("data", "--label-column takes a column number, not '%s'", optarg);
            label = (int)v;
            break;
        }
        case 'H': header = true; break;
        case 'h': return cli_command_help("data");
        default: return cli_usage("data", "bad option");
        }
    }
    if (!out || optind != argc - 1)
        return cli_usage("data", "import-csv needs one FILE.csv and -o OUT.h5");
    ct_error err = {0};
    if (ct_data_import_csv(argv[optind], out, group, label, header, &err) < 0)
        return cli_fail(&err);
    printf("Wrote %s/x and %s/y to %s\n", group, group, out);
    return CLI_OK;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("data", "data needs a subcommand: import-idx or import-csv");
    if (strcmp(argv[1], "import-idx") == 0)
        return import_idx(argc - 1, argv + 1);
    if (strcmp(argv[1], "import-csv") == 0)
        return import_csv(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cli_command_help("data");
    return cli_usage("data", "unknown data subcommand '%s' (import-idx, import-csv)", argv[1]);
}
