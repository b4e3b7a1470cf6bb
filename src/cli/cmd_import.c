/* cmd_import.c - `ctrain import`: an experiment and its weights from a Keras model file. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

int cmd_import(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': return cli_command_help("import");
        default: return cli_usage("import", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("import", "import takes one Keras model file");
    if (!out)
        return cli_usage("import", "name the output folder with -o DIR");
    ct_error err = {0};
    ct_keras_import_report rep = {0};
    int status = CLI_OK;
    if (ct_keras_import(argv[optind], out, &rep, &err) < 0) {
        if (rep.unsupported && rep.unsupported[0])
            fprintf(stderr, "%s", rep.unsupported);
        status = cli_fail(&err);
    } else {
        printf("Wrote %s/experiment.yaml and %s/weights.h5 (%d layer%s, %lld weights)\n",
               out, out, rep.layers, rep.layers == 1 ? "" : "s", (long long)rep.params);
    }
    ct_keras_import_report_free(&rep);
    return status;
}
