/* phase_report.c - how the command line shows the progress of long phases (validating,
 * loading and importing data): nothing for a phase that ends within two seconds; on a
 * terminal one line on stderr rewritten in place; elsewhere (a log file) a line every ten
 * seconds and one when the phase ends, so a log shows what a slow start was doing. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define QUIET_SECONDS 2.0  /* phases shorter than this show nothing */
#define TTY_EVERY 0.2      /* seconds between redraws on a terminal */
#define LOG_EVERY 10.0     /* seconds between lines in a log */

typedef struct phase_state {
    char what[512];   /* the phase being shown */
    bool shown;       /* something of it has been printed */
    double last;      /* elapsed time of the last print */
    int tty;          /* -1 not asked yet */
} phase_state;

static void print_line(phase_state *s, int64_t done, int64_t total, const char *unit,
                       double elapsed, bool end)
{
    double pct = total > 0 ? 100.0 * (double)done / (double)total : 100.0;
    fprintf(stderr, "%s%s: %3.0f%% (%lld of %lld %s), %.1f s%s", s->tty ? "\r" : "", s->what,
            pct, (long long)done, (long long)total, unit, elapsed,
            s->tty ? (end ? "\033[K\n" : "\033[K") : "\n");
    fflush(stderr);
}

static void report(void *ctx, const char *what, int64_t done, int64_t total, const char *unit,
                   double elapsed)
{
    phase_state *s = ctx;
    if (s->tty < 0)
        s->tty = isatty(STDERR_FILENO);
    if (strncmp(s->what, what, sizeof s->what - 1) != 0) {
        if (s->shown && s->tty) /* the last phase failed while shown: end its line */
            fputc('\n', stderr);
        snprintf(s->what, sizeof s->what, "%s", what);
        s->shown = false;
        s->last = 0;
    }
    bool end = done >= total;
    if (end) {
        if (s->shown || elapsed >= QUIET_SECONDS)
            print_line(s, done, total, unit, elapsed, true);
        s->what[0] = 0;
        s->shown = false;
        return;
    }
    if (elapsed < QUIET_SECONDS || elapsed - s->last < (s->tty ? TTY_EVERY : LOG_EVERY))
        return;
    print_line(s, done, total, unit, elapsed, false);
    s->shown = true;
    s->last = elapsed;
}

static phase_state state = {.tty = -1};

void cli_show_phases(bool on)
{
    ct_set_phase_reporter(on ? report : NULL, on ? &state : NULL);
}

void cli_end_phase_line(void)
{
    if (state.shown && state.tty > 0)
        fputc('\n', stderr);
    state.shown = false;
    state.what[0] = 0;
}
