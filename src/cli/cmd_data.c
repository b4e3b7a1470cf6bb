/* cmd_data.c - `ctrain data import-idx`, `import-csv`, `import-text` and `import-images`. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
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
        {"categorical", required_argument, NULL, 'C'},  {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *out = NULL, *group = "train";
    int label = -1, c;
    bool header = false;
    ct_csv_categorical cat = CT_CSV_NUMBERS;
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
        case 'C':
            if (!strcmp(optarg, "integer"))
                cat = CT_CSV_INTEGER;
            else if (!strcmp(optarg, "onehot"))
                cat = CT_CSV_ONEHOT;
            else
                return cli_usage("data", "--categorical takes integer or onehot, not '%s'",
                                 optarg);
            break;
        case 'h': return cli_command_help("data");
        default: return cli_usage("data", "bad option");
        }
    }
    if (!out || optind != argc - 1)
        return cli_usage("data", "import-csv needs one FILE.csv and -o OUT.h5");
    ct_error err = {0};
    if (ct_data_import_csv(argv[optind], out, group, label, header, cat, &err) < 0)
        return cli_fail(&err);
    printf("Wrote %s/x and %s/y to %s\n", group, group, out);
    return CLI_OK;
}

/* A whole number for option name, in [lo, hi]; -1 after printing the usage error. */
static int parse_count(const char *name, const char *arg, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (*end || !*arg || errno || v < lo || v > hi) {
        cli_usage("data", "--%s takes a number from %" PRId64 " to %" PRId64 ", not '%s'", name,
                  lo, hi, arg);
        return -1;
    }
    *out = v;
    return 0;
}

static int text_option(int c, ct_text_options *o)
{
    switch (c) {
    case 'L':
        if (strcmp(optarg, "char") && strcmp(optarg, "word"))
            return cli_usage("data", "--level takes char or word, not '%s'", optarg), -1;
        o->level = strcmp(optarg, "word") ? CT_TEXT_CHAR : CT_TEXT_WORD;
        return 0;
    case 'n': return parse_count("seq-len", optarg, 1, 1000000, &o->seq_len);
    case 's': return parse_count("stride", optarg, 1, 1000000, &o->stride);
    case 'v': return parse_count("vocab-size", optarg, 3, INT32_MAX, &o->vocab_size);
    case 'p': {
        char *end;
        o->split = strtod(optarg, &end);
        if (*end || !*optarg || !(o->split > 0 && o->split <= 1))
            return cli_usage("data", "--split takes a share in (0, 1], not '%s'", optarg), -1;
        return 0;
    }
    case 'b': o->labels = true; return 0;
    case 'H': o->header = true; return 0;
    default: return cli_usage("data", "bad option"), -1;
    }
}

static int import_text(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},   {"group", required_argument, NULL, 'g'},
        {"level", required_argument, NULL, 'L'},    {"seq-len", required_argument, NULL, 'n'},
        {"stride", required_argument, NULL, 's'},   {"vocab-size", required_argument, NULL, 'v'},
        {"split", required_argument, NULL, 'p'},    {"labels", no_argument, NULL, 'b'},
        {"header", no_argument, NULL, 'H'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *out = NULL, *group = "";
    ct_text_options o;
    ct_text_options_default(&o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else if (c == 'g')
            group = optarg;
        else if (c == 'h')
            return cli_command_help("data");
        else if (text_option(c, &o) < 0)
            return CLI_USAGE;
    }
    if (!out || optind != argc - 1)
        return cli_usage("data", "import-text needs one FILE and -o OUT.h5");
    ct_error err = {0};
    ct_text_summary s;
    if (ct_data_import_text(argv[optind], out, group, &o, &s, &err) < 0)
        return cli_fail(&err);
    const char *g = group, *sep = group[0] && strcmp(group, "/") ? "/" : "";
    if (!sep[0])
        g = "";
    printf("Wrote %s%strain (%" PRId64 " rows)", g, sep, s.train_rows);
    if (s.validation_rows)
        printf(", %s%svalidation (%" PRId64 " rows)", g, sep, s.validation_rows);
    printf(", %s%svocab (%" PRId64 " ids)", g, sep, s.vocab);
    if (s.classes)
        printf(", %s%sclasses (%" PRId64 ")", g, sep, s.classes);
    printf(" to %s\n", out);
    return CLI_OK;
}

/* --size H W: two whole numbers in [1, 16384]. */
static int parse_size(int argc, char **argv, ct_image_options *o)
{
    if (optind >= argc)
        return cli_usage("data", "--size takes a height and a width, such as --size 64 64");
    int64_t h, w;
    if (parse_count("size", optarg, 1, 16384, &h) < 0 ||
        parse_count("size", argv[optind], 1, 16384, &w) < 0)
        return CLI_USAGE;
    optind++;
    o->height = h;
    o->width = w;
    return CLI_OK;
}

static int image_option(int c, int argc, char **argv, ct_image_options *o)
{
    int64_t v;
    switch (c) {
    case 'S': return parse_size(argc, argv, o);
    case 'C':
        if (!strcmp(optarg, "grayscale") || !strcmp(optarg, "rgb") || !strcmp(optarg, "rgba")) {
            o->channels = optarg[0] == 'g' ? 1 : optarg[3] ? 4 : 3;
            return CLI_OK;
        }
        return cli_usage("data", "--color takes grayscale, rgb or rgba, not '%s'", optarg);
    case 'e':
        if (parse_count("seed", optarg, 0, INT64_MAX, &v) < 0)
            return CLI_USAGE;
        o->seed = (uint64_t)v;
        return CLI_OK;
    case 'N': o->shuffle = false; return CLI_OK;
    case 'g': o->group = optarg; return CLI_OK;
    default: return cli_usage("data", "bad option");
    }
}

static int import_images(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"group", required_argument, NULL, 'g'},
        {"size", required_argument, NULL, 'S'},   {"color", required_argument, NULL, 'C'},
        {"seed", required_argument, NULL, 'e'},   {"no-shuffle", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *out = NULL;
    ct_image_options o;
    ct_image_options_default(&o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else if (c == 'h')
            return cli_command_help("data");
        else if (image_option(c, argc, argv, &o) != CLI_OK)
            return CLI_USAGE;
    }
    if (!out || optind != argc - 1)
        return cli_usage("data", "import-images needs one folder DIR and -o OUT.h5");
    ct_error err = {0};
    ct_image_report r;
    int64_t n = ct_data_import_images(argv[optind], out, &o, &r, &err);
    if (n < 0)
        return cli_fail(&err);
    printf("Wrote %s/images (%" PRId64 " x %" PRId64 " x %" PRId64 " x %d), %s/labels and "
           "%s/classes (%d) to %s", o.group, n, r.height, r.width, r.channels, o.group,
           o.group, r.classes, out);
    if (r.skipped)
        printf("; skipped %" PRId64 " file%s that %s not PNG or JPEG", r.skipped,
               r.skipped == 1 ? "" : "s", r.skipped == 1 ? "is" : "are");
    printf("\n");
    return CLI_OK;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage("data", "data needs a subcommand: import-idx, import-csv, import-text "
                         "or import-images");
    if (strcmp(argv[1], "import-idx") == 0)
        return import_idx(argc - 1, argv + 1);
    if (strcmp(argv[1], "import-csv") == 0)
        return import_csv(argc - 1, argv + 1);
    if (strcmp(argv[1], "import-text") == 0)
        return import_text(argc - 1, argv + 1);
    if (strcmp(argv[1], "import-images") == 0)
        return import_images(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cli_command_help("data");
    return cli_usage("data", "unknown data subcommand '%s' (import-idx, import-csv, import-text, "
                     "import-images)", argv[1]);
}
