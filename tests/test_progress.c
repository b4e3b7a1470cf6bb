/* test_progress.c - the progress output as a terminal and a log file receive it: the bar
 * rewritten in place fits the terminal's width (also after a resize), the epoch's last
 * line is whole, and a file gets plain lines. */
#include <check.h>
#include <pty.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "progress.h"

static const char *const names[] = {"accuracy", "loss", "sparse_top_k_categorical_accuracy"};
static const double values[] = {0.5, 1.25, 0.75};

/* A pseudo-terminal of `cols` columns: the progress writes to *slave, the test reads the
 * master's end. */
static void open_terminal(int cols, int *master, FILE **slave)
{
    int s;
    struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)cols};
    ck_assert_int_eq(openpty(master, &s, NULL, NULL, &ws), 0);
    *slave = fdopen(s, "w");
    ck_assert_ptr_nonnull(*slave);
}

static void resize(int master, int cols)
{
    struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)cols};
    ck_assert_int_eq(ioctl(master, TIOCSWINSZ, &ws), 0);
}

/* What the terminal received so far (the slave end was flushed). */
static char *drain(int master)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (;;) {
        fd_set r;
        FD_ZERO(&r);
        FD_SET(master, &r);
        struct timeval tv = {0, 100000};
        if (select(master + 1, &r, NULL, NULL, &tv) <= 0)
            break;
        ssize_t got = read(master, buf + n, cap - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    return buf;
}

/* Columns of the UTF-8 text between p and end, escape sequences (ESC [ ... letter) and
 * the terminal's added carriage returns left out. */
static int columns(const char *p, const char *end)
{
    int cols = 0;
    while (p < end) {
        if (*p == '\x1b') {
            while (p < end && !(*p >= 'A' && *p <= 'Z') && !(*p >= 'a' && *p <= 'z'))
                p++;
            p++;
            continue;
        }
        if (((unsigned char)*p & 0xc0) != 0x80)
            cols++;
        p++;
    }
    return cols;
}

/* The widest piece between \r and \n in text, and the last one's width. */
static int widest(const char *text, int *last)
{
    int most = 0;
    const char *start = text;
    for (const char *p = text;; p++) {
        if (*p == '\r' || *p == '\n' || *p == '\0') {
            int w = columns(start, p);
            if (w > most)
                most = w;
            if (w > 0 && last)
                *last = w;
            start = p + 1;
            if (!*p)
                break;
        }
    }
    return most;
}

START_TEST(test_bar_fits_terminal)
{
    int master;
    FILE *term;
    open_terminal(40, &master, &term);
    ct_progress *p = ct_progress_new(term, CT_PROGRESS_BAR, 3);
    ct_progress_epoch_begin(p, 0, 30);
    ct_progress_step(p, 1, 3, names, values);
    fflush(term);
    char *out = drain(master);
    ck_assert_msg(strstr(out, "Epoch 1/3"), "%s", out);
    ck_assert_msg(widest(out, NULL) <= 39, "a line wider than the 40-column terminal: %s", out);
    ck_assert_msg(strstr(out, " 1/30 "), "no counter: %s", out);
    free(out);

    /* Narrower after a resize: the next draw follows. */
    resize(master, 25);
    ct_progress_step(p, 30, 3, names, values); /* the last step always draws */
    fflush(term);
    out = drain(master);
    ck_assert_msg(widest(out, NULL) <= 24, "a line wider than the 25-column terminal: %s", out);
    free(out);

    /* The epoch's final line is whole, metric names and values included. */
    ct_progress_epoch_end(p, 3, names, values);
    fflush(term);
    out = drain(master);
    int last = 0;
    widest(out, &last);
    ck_assert_msg(strstr(out, "sparse_top_k_categorical_accuracy: 0.75"), "%s", out);
    ck_assert_msg(last > 39, "the final line was cut: %s", out);
    free(out);
    ct_progress_free(p);
    fclose(term);
    close(master);
}
END_TEST

/* A log file gets one plain line per epoch, never cut, with no escapes or \r. */
START_TEST(test_lines_for_files)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ck_assert_ptr_nonnull(f);
    ct_progress *p = ct_progress_new(f, CT_PROGRESS_LINES, 2);
    ct_progress_epoch_begin(p, 0, 30);
    for (int s = 1; s <= 30; s++)
        ct_progress_step(p, s, 3, names, values);
    ct_progress_epoch_end(p, 3, names, values);
    ct_progress_free(p);
    fclose(f);
    ck_assert_msg(!strchr(buf, '\r') && !strchr(buf, '\x1b'), "%s", buf);
    ck_assert_msg(strstr(buf, "Epoch 1/2 - 30/30 - "), "%s", buf);
    ck_assert_msg(strstr(buf, " - loss: 1.2500 - sparse_top_k_categorical_accuracy: 0.7500\n"), "%s",
                  buf);
    free(buf);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("progress");
    TCase *c = tcase_create("output");
    tcase_add_test(c, test_bar_fits_terminal);
    tcase_add_test(c, test_lines_for_files);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
