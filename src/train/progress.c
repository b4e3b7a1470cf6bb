/* progress.c - progress bar and per-epoch lines. */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

#define BAR_WIDTH 20
#define REFRESH_SECONDS 0.1

struct ct_progress {
    FILE *out;
    ct_progress_mode mode;
    int64_t epochs, steps, done;
    double start, last_draw;
};

double ct_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ct_progress *ct_progress_new(FILE *out, ct_progress_mode mode, int64_t epochs)
{
    ct_progress *p = calloc(1, sizeof *p);
    if (p) {
        p->out = out;
        p->mode = mode;
        p->epochs = epochs;
    }
    return p;
}

void ct_progress_free(ct_progress *p) { free(p); }

void ct_progress_epoch_begin(ct_progress *p, int64_t epoch, int64_t steps)
{
    p->steps = steps;
    p->done = 0;
    p->start = ct_now();
    p->last_draw = 0;
    if (p->mode == CT_PROGRESS_BAR)
        fprintf(p->out, "Epoch %lld/%lld\n", (long long)epoch + 1, (long long)p->epochs);
    else if (p->mode == CT_PROGRESS_LINES)
        fprintf(p->out, "Epoch %lld/%lld", (long long)epoch + 1, (long long)p->epochs);
}

static void format_duration(double s, char *buf, size_t n)
{
    if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static void format_per_step(double s, char *buf, size_t n)
{
    if (s >= 1)
        snprintf(buf, n, "%.0fs/step", s);
    else if (s >= 1e-3)
        snprintf(buf, n, "%.0fms/step", s * 1e3);
    else
        snprintf(buf, n, "%.0fus/step", s * 1e6);
}

static void print_values(FILE *out, int n, const char *const *names, const double *values)
{
    for (int i = 0; i < n; i++) {
        char v[32];
        ct_format_value(values[i], v, sizeof v);
        fprintf(out, " - %s: %s", names[i], v);
    }
}

/* The terminal's width in columns, read at every draw so a resize takes effect at the
 * next one; 0 when out is not a terminal (or says nothing). */
static int terminal_columns(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) != 0)
        return 0;
    return ws.ws_col;
}

/* Writes the UTF-8 text s, cut after `columns` characters when columns > 0 (each bar
 * character is one column wide). */
static void put_cut(FILE *out, const char *s, int columns)
{
    if (columns <= 0) {
        fputs(s, out);
        return;
    }
    size_t i = 0;
    for (int seen = 0; s[i]; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80 && seen++ == columns)
            break;
    fwrite(s, 1, i, out);
}

/* The bar's line, rewritten in place. While the epoch runs it is cut one column short of
 * the terminal's width: a line the terminal wraps leaves its first rows behind when \r
 * returns to the start of the last. The final line is written whole (nothing rewrites it). */
static void draw_bar(ct_progress *p, bool final, const char *t, const char *ps, int n,
                     const char *const *names, const double *values)
{
    char line[2048];
    FILE *mem = fmemopen(line, sizeof line, "w");
    if (!mem)
        return;
    int width = (int)snprintf(NULL, 0, "%lld", (long long)p->steps);
    int filled = p->steps ? (int)(BAR_WIDTH * p->done / p->steps) : BAR_WIDTH;
    fprintf(mem, "%*lld/%lld ", width, (long long)p->done, (long long)p->steps);
    for (int i = 0; i < BAR_WIDTH; i++)
        fputs(i < filled ? "━" : "─", mem);
    fprintf(mem, " %s %s", t, ps);
    print_values(mem, n, names, values);
    fputc('\0', mem);
    fclose(mem);
    line[sizeof line - 1] = '\0';
    fputc('\r', p->out);
    put_cut(p->out, line, final ? 0 : terminal_columns(p->out) - 1);
    fputs("\x1b[K", p->out); /* clear what a longer previous line left */
    if (final)
        fputc('\n', p->out);
}

static void draw(ct_progress *p, bool final, int n, const char *const *names, const double *values)
{
    double elapsed = ct_now() - p->start;
    double per_step = p->done ? elapsed / (double)p->done : 0;
    char t[32], ps[32];
    format_duration(final ? elapsed : per_step * (double)(p->steps - p->done), t, sizeof t);
    format_per_step(per_step, ps, sizeof ps);
    if (p->mode == CT_PROGRESS_BAR) {
        draw_bar(p, final, t, ps, n, names, values);
    } else {
        fprintf(p->out, " - %lld/%lld - %s %s", (long long)p->done, (long long)p->steps, t, ps);
        print_values(p->out, n, names, values);
        fputc('\n', p->out);
    }
    fflush(p->out);
}

void ct_progress_advance(ct_progress *p, int64_t done) { p->done = done; }

bool ct_progress_due(const ct_progress *p, int64_t done)
{
    return p && p->mode == CT_PROGRESS_BAR &&
           (ct_now() - p->last_draw >= REFRESH_SECONDS || done >= p->steps);
}

void ct_progress_step(ct_progress *p, int64_t done, int n, const char *const *names,
                      const double *values)
{
    p->done = done;
    if (p->mode != CT_PROGRESS_BAR)
        return;
    double now = ct_now();
    if (now - p->last_draw < REFRESH_SECONDS && done < p->steps)
        return;
    p->last_draw = now;
    draw(p, false, n, names, values);
}

void ct_progress_epoch_end(ct_progress *p, int n, const char *const *names, const double *values)
{
    if (p->mode != CT_PROGRESS_NONE)
        draw(p, true, n, names, values);
}

void ct_progress_abort(ct_progress *p)
{
    if (p->mode != CT_PROGRESS_NONE) {
        fputc('\n', p->out);
        fflush(p->out);
    }
}
