/* cli.h - the ctrain command: one file per subcommand. Each cmd_* parses its own options
 * and returns the process exit status; errors are printed once, by cli_fail. */
#ifndef CT_CLI_H
#define CT_CLI_H

#include "ctrain.h"

/* Exit statuses. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;
    const char *help;
} cli_command;

/* Prints "ctrain: error: <msg>" to stderr and returns the exit status for the code. */
int cli_fail(const ct_error *err);
/* The exit status for err, printing nothing. */
int cli_status(const ct_error *err);
/* Prints a usage error for command `cmd` and returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the help of command `name`; returns CLI_OK. */
int cli_command_help(const char *name);
/* Collects a --set value; returns -1 when too many. */
int cli_add_override(const char *value);
/* Collects a --allow-outside folder; returns -1 when too many. */
int cli_add_allowed(const char *dir);
/* --device DEV: the override backend.device=DEV. */
int cli_add_device(const char *device);
/* Loads the experiment with the collected overrides; prints the error itself. */
ct_experiment *cli_load(const char *path, int *status);
/* The same, with a failure's error in *err instead of on stderr. */
ct_experiment *cli_load_quietly(const char *path, int *status, ct_error *err);
/* The same, leaving the parameters unfilled (summary and check never read them). */
ct_experiment *cli_load_model_only(const char *path, int *status);

/* Shows the progress of long phases (validation, loading, import) on stderr, or stops. */
void cli_show_phases(bool on);
/* Ends a progress line left open on a terminal by a phase that failed, before a message. */
void cli_end_phase_line(void);

int cmd_fit(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_import(int argc, char **argv);

#endif
