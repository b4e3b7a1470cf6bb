/* test_report.c - the pictures of a run and of a model: learning curves from history.csv
 * (SVG structure and its curves' colours, PNG size and pixels decoded with cairo, PDF,
 * which panels are drawn, a single epoch as points) and every error of the history and
 * the output path; model diagrams (the DOT text's boxes, shapes and one edge per
 * connection for a functional model with merges, a shared layer and two outputs, and a
 * sequential chain; SVG, PNG and PDF rendered by graphviz) and their errors. */
#include <cairo.h>
#include <stdint.h>
#include <sys/stat.h>

#include "ctrain.h"
#include "plot.h"
#include "testutil.h"

/* In the sanitizer build, LeakSanitizer calls this for its suppressions. fontconfig (under
 * cairo's and pango's text), glib (under pango) and graphviz's libgvc and its pango plugin
 * keep caches for the process's life, and graphviz 2.42 loses the parse of each HTML
 * label; none of it is memory ctrain could free. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfontconfig.so\nleak:libglib-2.0.so\nleak:libgvc.so\n"
           "leak:libgvplugin_pango.so\n";
}
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "print_suppressions=0"; }

/* ---- helpers --------------------------------------------------------------------------- */

/* A run directory holding history.csv with the given text. The caller frees it. */
static char *run_with(const char *csv)
{
    char *dir = tu_tmpdir();
    ck_assert(dir != NULL);
    tu_write(dir, "history.csv", csv);
    return dir;
}

/* A history as fit writes it: 5 epochs, loss falling, accuracy rising. */
static const char *const five_epochs =
    "epoch,accuracy,loss,val_accuracy,val_loss,learning_rate\n"
    "0,0.71,0.9,0.7,0.95,0.001\n"
    "1,0.8,0.62,0.78,0.7,0.001\n"
    "2,0.84,0.5,0.8,0.6,0.001\n"
    "3,0.86,0.44,0.81,0.58,0.0005\n"
    "4,0.875,0.4,0.815,0.57,0.0005\n";

static size_t count(const unsigned char *data, size_t size, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (size_t i = 0; i + len <= size; i++)
        n += memcmp(data + i, needle, len) == 0;
    return n;
}

static bool has(const unsigned char *data, size_t size, const char *needle)
{
    return count(data, size, needle) > 0;
}

/* cairo's SVG stroke colour of an 8-bit r, g, b: "stroke:rgb(12.156863%,...)", the
 * percentages with six decimals and no trailing zeros. */
static void svg_stroke(int r, int g, int b, char *buf, size_t n)
{
    int v[3] = {r, g, b};
    char part[3][32];
    for (int i = 0; i < 3; i++) {
        snprintf(part[i], sizeof part[i], "%f", v[i] * 100.0 / 255.0);
        char *end = part[i] + strlen(part[i]) - 1;
        while (*end == '0')
            *end-- = 0;
        if (*end == '.')
            *end = 0;
    }
    snprintf(buf, n, "stroke:rgb(%s%%,%s%%,%s%%)", part[0], part[1], part[2]);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A PNG's signature and IHDR, with its width and height. */
static void check_png_header(const unsigned char *data, size_t size, uint32_t w, uint32_t h)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ck_assert_uint_gt(size, 33);
    ck_assert_msg(memcmp(data, sig, 8) == 0, "no PNG signature");
    ck_assert_msg(memcmp(data + 12, "IHDR", 4) == 0, "the first chunk is not IHDR");
    ck_assert_uint_eq(be32(data + 16), w);
    ck_assert_uint_eq(be32(data + 20), h);
}

typedef struct reader {
    const unsigned char *data;
    size_t size, at;
} reader;

static cairo_status_t read_mem(void *closure, unsigned char *out, unsigned int n)
{
    reader *r = closure;
    if (r->size - r->at < n)
        return CAIRO_STATUS_READ_ERROR;
    memcpy(out, r->data + r->at, n);
    r->at += n;
    return CAIRO_STATUS_SUCCESS;
}

/* The PNG decoded by cairo; the caller destroys it. */
static cairo_surface_t *decode_png(const unsigned char *data, size_t size)
{
    reader r = {data, size, 0};
    cairo_surface_t *s = cairo_image_surface_create_from_png_stream(read_mem, &r);
    ck_assert_msg(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS, "cairo cannot decode: %s",
                  cairo_status_to_string(cairo_surface_status(s)));
    cairo_surface_flush(s);
    return s;
}

static uint32_t pixel(cairo_surface_t *s, int x, int y)
{
    const unsigned char *row = cairo_image_surface_get_data(s) +
                               (size_t)y * (size_t)cairo_image_surface_get_stride(s);
    return ((const uint32_t *)row)[x] & 0xffffff;
}

/* Pixels of exactly colour rgb in the rectangle [x0, x1) x [y0, y1). */
static int pixels_of(cairo_surface_t *s, uint32_t rgb, int x0, int y0, int x1, int y1)
{
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            n += pixel(s, x, y) == rgb;
    return n;
}

#define TRAIN_RGB ((uint32_t)CT_PLOT_TRAIN_R << 16 | CT_PLOT_TRAIN_G << 8 | CT_PLOT_TRAIN_B)
#define VAL_RGB ((uint32_t)CT_PLOT_VAL_R << 16 | CT_PLOT_VAL_G << 8 | CT_PLOT_VAL_B)

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    unsigned char *buf = NULL;
    size_t cap = 0;
    *size = 0;
    for (;;) {
        if (*size == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            ck_assert(buf != NULL);
        }
        size_t got = fread(buf + *size, 1, cap - *size, f);
        if (!got)
            break;
        *size += got;
    }
    fclose(f);
    return buf;
}

/* ---- learning curves ------------------------------------------------------------------- */

START_TEST(test_plot_svg)
{
    char *dir = run_with(five_epochs);
    ct_error err = {0};
    unsigned char *svg;
    size_t n;
    ck_assert_msg(ct_plot_history_mem(dir, NULL, "svg", &svg, &n, &err) == 0, "%s", err.msg);
    ck_assert_msg(n > 100 && memcmp(svg, "<?xml", 5) == 0, "no XML declaration");
    ck_assert(has(svg, n, "<svg"));
    size_t end = n;
    while (end && (svg[end - 1] == '\n' || svg[end - 1] == ' '))
        end--;
    ck_assert_msg(end > 6 && memcmp(svg + end - 6, "</svg>", 6) == 0,
                  "the SVG does not end in </svg>");
    /* Two panels (loss and accuracy; the learning rate is left out): in each a training
     * and a validation curve, and their legend keys, in the two colours. */
    char train[128], val[128];
    svg_stroke(CT_PLOT_TRAIN_R, CT_PLOT_TRAIN_G, CT_PLOT_TRAIN_B, train, sizeof train);
    svg_stroke(CT_PLOT_VAL_R, CT_PLOT_VAL_G, CT_PLOT_VAL_B, val, sizeof val);
    ck_assert_uint_eq(count(svg, n, train), 4);
    ck_assert_uint_eq(count(svg, n, val), 4);
    ck_assert(has(svg, n, "width=\"1040"));
    ck_assert(has(svg, n, "height=\"380"));
    free(svg);

    /* One panel of one series: one curve and one key. */
    ck_assert_msg(ct_plot_history_mem(dir, "learning_rate", "svg", &svg, &n, &err) == 0, "%s",
                  err.msg);
    ck_assert_uint_eq(count(svg, n, train), 2);
    ck_assert_uint_eq(count(svg, n, val), 0);
    ck_assert(has(svg, n, "width=\"520"));

    /* The file holds the same picture (not byte for byte: cairo's glyph positions depend
     * on its font cache). */
    char path[4096];
    snprintf(path, sizeof path, "%s/lr.SVG", dir);
    ck_assert_msg(ct_plot_history(dir, "learning_rate", path, &err) == 0, "%s", err.msg);
    size_t fn;
    unsigned char *file = slurp(path, &fn);
    ck_assert(memcmp(file, "<?xml", 5) == 0);
    ck_assert_uint_eq(count(file, fn, train), 2);
    ck_assert(fn > n - 100 && fn < n + 100);
    free(file);
    free(svg);
    free(dir);
}
END_TEST

START_TEST(test_plot_png)
{
    char *dir = run_with(five_epochs);
    ct_error err = {0};
    unsigned char *png;
    size_t n;
    int w, h;
    ct_plot_size(2, &w, &h);
    ck_assert_int_eq(w, 2 * CT_PLOT_PANEL_W);
    ck_assert_int_eq(h, CT_PLOT_PANEL_H);
    ck_assert_msg(ct_plot_history_mem(dir, NULL, "png", &png, &n, &err) == 0, "%s", err.msg);
    check_png_header(png, n, (uint32_t)w, (uint32_t)h);
    cairo_surface_t *s = decode_png(png, n);
    ck_assert_int_eq(cairo_image_surface_get_width(s), w);
    /* Both curves in both panels' plot areas (the legends are small beside them). */
    for (int p = 0; p < 2; p++) {
        int x0 = p * CT_PLOT_PANEL_W + (int)CT_PLOT_LEFT, y0 = (int)CT_PLOT_TOP;
        int x1 = (p + 1) * CT_PLOT_PANEL_W - (int)CT_PLOT_RIGHT, y1 = h - (int)CT_PLOT_BOTTOM;
        ck_assert_int_gt(pixels_of(s, TRAIN_RGB, x0, y0, x1, y1), 200);
        ck_assert_int_gt(pixels_of(s, VAL_RGB, x0, y0, x1, y1), 200);
    }
    /* White around the panels, nothing of the curves' colours outside the plot areas. */
    ck_assert_uint_eq(pixel(s, 2, 2), 0xffffff);
    ck_assert_int_eq(pixels_of(s, TRAIN_RGB, 0, h - (int)CT_PLOT_BOTTOM + 6, w, h), 0);
    cairo_surface_destroy(s);
    free(png);

    /* Without an output path: RUN_DIR/history.png, the same picture. */
    ck_assert_msg(ct_plot_history(dir, NULL, NULL, &err) == 0, "%s", err.msg);
    char path[4096];
    snprintf(path, sizeof path, "%s/history.png", dir);
    unsigned char *file = slurp(path, &n);
    check_png_header(file, n, (uint32_t)w, (uint32_t)h);
    free(file);

    /* Three metrics chosen: two rows of panels. */
    ck_assert_msg(ct_plot_history_mem(dir, "accuracy, loss,learning_rate", "png", &png, &n,
                                      &err) == 0, "%s", err.msg);
    check_png_header(png, n, 2 * CT_PLOT_PANEL_W, 2 * CT_PLOT_PANEL_H);
    free(png);
    free(dir);
}
END_TEST

START_TEST(test_plot_pdf)
{
    char *dir = run_with(five_epochs);
    ct_error err = {0};
    unsigned char *pdf;
    size_t n;
    ck_assert_msg(ct_plot_history_mem(dir, "loss", "pdf", &pdf, &n, &err) == 0, "%s", err.msg);
    ck_assert_msg(n > 100 && memcmp(pdf, "%PDF-", 5) == 0, "no %%PDF header");
    ck_assert(has(pdf + n - 16, 16, "%%EOF"));
    free(pdf);
    char path[4096];
    snprintf(path, sizeof path, "%s/curves.pdf", dir);
    ck_assert_msg(ct_plot_history(dir, NULL, path, &err) == 0, "%s", err.msg);
    pdf = slurp(path, &n);
    ck_assert(memcmp(pdf, "%PDF-", 5) == 0);
    free(pdf);
    free(dir);
}
END_TEST

/* One epoch has no line to draw: its values are points. One value (0.5) gives an axis from
 * 0.47 to 0.53, and one epoch one centred on it: the point is in the middle of the panel. */
START_TEST(test_plot_one_epoch)
{
    char *dir = run_with("epoch,loss,learning_rate\n0,0.5,0.01\n");
    ct_error err = {0};
    unsigned char *png;
    size_t n;
    ck_assert_msg(ct_plot_history_mem(dir, NULL, "png", &png, &n, &err) == 0, "%s", err.msg);
    check_png_header(png, n, CT_PLOT_PANEL_W, CT_PLOT_PANEL_H);
    cairo_surface_t *s = decode_png(png, n);
    int cx = (int)(CT_PLOT_LEFT + (CT_PLOT_PANEL_W - CT_PLOT_LEFT - CT_PLOT_RIGHT) / 2);
    int cy = (int)(CT_PLOT_TOP + (CT_PLOT_PANEL_H - CT_PLOT_TOP - CT_PLOT_BOTTOM) / 2);
    ck_assert_int_ge(pixels_of(s, TRAIN_RGB, cx - 2, cy - 2, cx + 3, cy + 3), 9);
    cairo_surface_destroy(s);
    free(png);
    free(dir);
}
END_TEST

/* Multi-output histories: a panel per output's loss, each with its val_ twin; the loss
 * first; a val_ column without its twin is a panel of its own. */
START_TEST(test_plot_panels)
{
    char *dir = run_with("epoch,a_loss,b_loss,loss,val_a_loss,val_b_loss,val_loss,val_auc,"
                         "learning_rate\n"
                         "0,1,2,3,1.5,2.5,3.5,0.6,0.1\n1,0.8,1.5,2.3,1.2,2,3.1,0.7,0.1\n");
    ct_error err = {0};
    unsigned char *svg;
    size_t n;
    char train[128], val[128];
    svg_stroke(CT_PLOT_TRAIN_R, CT_PLOT_TRAIN_G, CT_PLOT_TRAIN_B, train, sizeof train);
    svg_stroke(CT_PLOT_VAL_R, CT_PLOT_VAL_G, CT_PLOT_VAL_B, val, sizeof val);
    ck_assert_msg(ct_plot_history_mem(dir, NULL, "svg", &svg, &n, &err) == 0, "%s", err.msg);
    /* loss, a_loss, b_loss (train and val) and auc (val only): two rows. */
    ck_assert(has(svg, n, "height=\"760"));
    ck_assert_uint_eq(count(svg, n, train), 6);
    ck_assert_uint_eq(count(svg, n, val), 8);
    free(svg);
    ck_assert_msg(ct_plot_history_mem(dir, "auc", "svg", &svg, &n, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(count(svg, n, train), 0);
    ck_assert_uint_eq(count(svg, n, val), 2);
    free(svg);
    free(dir);
    /* Values at the ends of double's range, constant or not, still get axes. */
    static const char *const extreme[] = {
        "epoch,loss\n0,1e-320\n1,1e-320\n", "epoch,loss\n0,1e-300\n1,3e-300\n",
        "epoch,loss\n0,-1e299\n1,1e299\n", "epoch,loss\n0,0\n1,0\n2,inf\n",
        "epoch,loss\n0,nan\n1,nan\n"};
    for (size_t i = 0; i < sizeof extreme / sizeof extreme[0]; i++) {
        dir = run_with(extreme[i]);
        ck_assert_msg(ct_plot_history_mem(dir, NULL, "svg", &svg, &n, &err) == 0, "%s: %s",
                      extreme[i], err.msg);
        ck_assert(has(svg, n, "</svg>"));
        free(svg);
        free(dir);
    }
}
END_TEST

/* Fails with a message holding want (a printf format with one %s: the run directory). */
static void plot_fails(const char *dir, const char *metrics, const char *out, const char *fmt,
                       ct_error_code code, const char *want)
{
    char expect[4096];
    snprintf(expect, sizeof expect, want, dir);
    ct_error err = {0};
    int r;
    if (fmt) {
        unsigned char *data = (unsigned char *)"x";
        size_t n = 7;
        r = ct_plot_history_mem(dir, metrics, fmt, &data, &n, &err);
        ck_assert_msg(data == NULL && n == 0, "a failed call left a buffer");
    } else {
        r = ct_plot_history(dir, metrics, out, &err);
    }
    ck_assert_int_eq(r, -1);
    ck_assert_msg(strstr(err.msg, expect) != NULL, "expected '%s' in: %s", expect, err.msg);
    ck_assert_int_eq(err.code, code);
}

static void history_fails(const char *csv, ct_error_code code, const char *want)
{
    char *dir = run_with(csv);
    plot_fails(dir, NULL, NULL, "png", code, want);
    free(dir);
}

START_TEST(test_plot_history_errors)
{
    char *dir = tu_tmpdir();
    plot_fails(dir, NULL, NULL, "png", CT_ERR_IO,
               "cannot read %s/history.csv: No such file or directory");
    char slashed[4096];
    snprintf(slashed, sizeof slashed, "%s/", dir); /* as a shell completes a folder */
    plot_fails(slashed, NULL, NULL, NULL, CT_ERR_IO,
               "cannot read %shistory.csv: No such file or directory");
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/history.csv", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    plot_fails(dir, NULL, NULL, "png", CT_ERR_IO,
               "cannot read %s/history.csv: it is a directory");
    ck_assert_int_eq(rmdir(sub), 0);
    ck_assert_int_eq(mkfifo(sub, 0644), 0); /* would block a plain read for ever */
    plot_fails(dir, NULL, NULL, "png", CT_ERR_IO,
               "cannot read %s/history.csv: it is a FIFO, not a regular file");
    free(dir);

    history_fails("", CT_ERR_DATA, "%s/history.csv is empty");
    history_fails("epoch,loss\n", CT_ERR_DATA, "%s/history.csv holds a header but no epochs");
    history_fails("step,loss\n0,1\n", CT_ERR_DATA,
                  "%s/history.csv:1:1: not a training history: the header must start with "
                  "'epoch', not 'step'");
    history_fails("epoch\n0\n", CT_ERR_DATA, "%s/history.csv:1: the header names no metric");
    history_fails("epoch,loss,,acc\n0,1,2,3\n", CT_ERR_DATA,
                  "%s/history.csv:1:12: column 3 of the header has no name");
    history_fails("epoch,loss,acc,loss\n0,1,2,3\n", CT_ERR_DATA,
                  "%s/history.csv:1:16: column 'loss' is named twice");
    history_fails("epoch,loss,acc\n0,0.5,0.7\n1,abc,0.8\n", CT_ERR_DATA,
                  "%s/history.csv:3:3: 'abc' in column 'loss' is not a number");
    history_fails("epoch,loss,acc\n0,0.5,0.7\n1,0.4,\n", CT_ERR_DATA,
                  "%s/history.csv:3:7: '' in column 'acc' is not a number");
    history_fails("epoch,loss,acc\n0,0.5,0.7x\n", CT_ERR_DATA,
                  "%s/history.csv:2:7: '0.7x' in column 'acc' is not a number");
    history_fails("epoch,loss,acc\n0,0.5\n", CT_ERR_DATA,
                  "%s/history.csv:2:6: 2 values where the header names 3 columns");
    history_fails("epoch,loss,acc\n0,0.5,0.7,9\n", CT_ERR_DATA,
                  "%s/history.csv:2:11: 4 values where the header names 3 columns");
    history_fails("epoch,loss\n0,1\n\n1,2\n", CT_ERR_DATA,
                  "%s/history.csv:3:1: an empty line among the rows");
    history_fails("epoch,loss\n-1,1\n", CT_ERR_DATA,
                  "%s/history.csv:2:1: the epoch '-1' is not a whole number from 0");
    dir = run_with("");
    char csv[4096];
    snprintf(csv, sizeof csv, "%s/history.csv", dir);
    FILE *f = fopen(csv, "wb");
    ck_assert(f != NULL);
    fwrite("epoch,loss\n0,1\0\n", 1, 16, f);
    fclose(f);
    plot_fails(dir, NULL, NULL, "svg", CT_ERR_DATA,
               "%s/history.csv is not a text file (it holds NUL bytes)");
    free(dir);

    /* What is sound still plots: CRLF line ends, nan (an epoch without validation). */
    dir = run_with("epoch,loss,val_loss\r\n0,1,nan\r\n1,0.5,0.7\r\n2,0.4,nan\r\n");
    ct_error err = {0};
    unsigned char *png;
    size_t n;
    ck_assert_msg(ct_plot_history_mem(dir, NULL, "png", &png, &n, &err) == 0, "%s", err.msg);
    free(png);
    free(dir);
}
END_TEST

START_TEST(test_plot_usage_errors)
{
    char *dir = run_with(five_epochs);
    plot_fails(dir, "loss,bogus", NULL, "png", CT_ERR_USAGE,
               "unknown metric 'bogus'; %s/history.csv has: accuracy, loss, learning_rate");
    plot_fails(dir, "val_loss", NULL, NULL, CT_ERR_USAGE, "unknown metric 'val_loss'");
    plot_fails(dir, "loss,,accuracy", NULL, "png", CT_ERR_USAGE, "an empty metric name");
    plot_fails(dir, "loss,loss", NULL, "png", CT_ERR_USAGE, "metric 'loss' is named twice");
    plot_fails(dir, NULL, NULL, "gif", CT_ERR_USAGE,
               "unknown picture format 'gif' (use .png, .svg or .pdf)");

    char out[4096];
    snprintf(out, sizeof out, "%s/curves.jpg", dir);
    plot_fails(dir, NULL, out, NULL, CT_ERR_USAGE,
               "%s/curves.jpg: unknown picture format '.jpg' (use .png, .svg or .pdf)");
    snprintf(out, sizeof out, "%s/curves", dir);
    plot_fails(dir, NULL, out, NULL, CT_ERR_USAGE,
               "%s/curves: the file name must end in .png, .svg or .pdf");
    snprintf(out, sizeof out, "%s/no/such/folder/curves.png", dir);
    plot_fails(dir, NULL, out, NULL, CT_ERR_IO,
               "cannot write %s/no/such/folder/curves.png: cannot create a temporary file "
               "beside it: No such file or directory");
    snprintf(out, sizeof out, "%s/taken.svg", dir);
    ck_assert_int_eq(mkdir(out, 0755), 0);
    plot_fails(dir, NULL, out, NULL, CT_ERR_IO,
               "cannot write %s/taken.svg: it is a directory; refusing to replace it");
    /* A symbolic link is refused, its target left as it was; nothing is left beside. */
    char target[4096];
    snprintf(target, sizeof target, "%s/target.png", dir);
    tu_write(dir, "target.png", "keep");
    snprintf(out, sizeof out, "%s/link.png", dir);
    ck_assert_int_eq(symlink(target, out), 0);
    plot_fails(dir, NULL, out, NULL, CT_ERR_IO,
               "cannot write %s/link.png: it is a symbolic link, not a regular file");
    size_t n;
    unsigned char *kept = slurp(target, &n);
    ck_assert(n == 4 && memcmp(kept, "keep", 4) == 0);
    free(kept);
    /* A picture replaces an older file of the same name, through a temporary beside it. */
    snprintf(out, sizeof out, "%s/target.png", dir);
    ct_error err = {0};
    ck_assert_msg(ct_plot_history(dir, NULL, out, &err) == 0, "%s", err.msg);
    kept = slurp(out, &n);
    ck_assert(n > 8 && memcmp(kept + 1, "PNG", 3) == 0);
    free(kept);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp-", dir);
    ck_assert_msg(system(cmd) != 0, "a temporary file was left in %s", dir);
    free(dir);
}
END_TEST

/* ---- diagrams -------------------------------------------------------------------------- */

/* Two inputs through a shared encoder, merged twice (subtract, concatenate), two outputs,
 * and a layer that takes one tensor twice: 11 connections. */
static const char *const functional_yaml =
    "name: pair\n"
    "data:\n  train: {path: none.h5, x: {left: a, right: b}, y: {head: c, score: d}}\n"
    "model:\n"
    "  inputs: {left: {shape: [5]}, right: {shape: [5]}}\n"
    "  layers:\n"
    "    - {name: enc, type: dense, units: 4, activation: tanh, inputs: left}\n"
    "    - {name: enc_r, type: shared, layer: enc, inputs: right}\n"
    "    - {name: diff, type: subtract, inputs: [enc, enc_r]}\n"
    "    - {name: square, type: multiply, inputs: [diff, diff]}\n"
    "    - {name: both, type: concatenate, inputs: [square, enc, right]}\n"
    "    - {name: head, type: dense, units: 3, activation: softmax, inputs: both}\n"
    "    - {name: score, type: dense, units: 1, inputs: enc_r}\n"
    "  outputs: [head, score]\n"
    "compile: {optimizer: adam, loss: {head: sparse_categorical_crossentropy, score: mse}}\n";

static ct_experiment *load_yaml(const char *dir, const char *yaml)
{
    ct_error err = {0};
    const char *path = tu_write(dir, "model.yaml", yaml);
    ct_experiment *ex = ct_experiment_load_lazily(path, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    return ex;
}

/* How often the DOT text holds the edge "from -> to" (agwrite puts each on its own line). */
static size_t edges(const unsigned char *dot, size_t n, const char *from, const char *to)
{
    char e[256], labelled[256];
    snprintf(e, sizeof e, "\t%s -> %s;", from, to);
    snprintf(labelled, sizeof labelled, "\t%s -> %s\t[", from, to);
    return count(dot, n, e) + count(dot, n, labelled);
}

START_TEST(test_diagram_dot)
{
    char *dir = tu_tmpdir();
    ct_experiment *ex = load_yaml(dir, functional_yaml);
    ct_error err = {0};
    unsigned char *dot;
    size_t n;
    ck_assert_msg(ct_experiment_diagram_mem(ex, "dot", &dot, &n, &err) == 0, "%s", err.msg);
    ck_assert_msg(has(dot, n, "digraph functional {"), "%.*s", (int)n, dot);
    /* Every box: its name, its class, its shapes. */
    static const char *const boxes[][4] = {
        {"left", "InputLayer", "(None, 5)", "(None, 5)"},
        {"right", "InputLayer", "(None, 5)", "(None, 5)"},
        {"enc", "Dense", "(None, 5)", "(None, 4)"},
        {"enc_r", "Dense, shared with enc", "(None, 5)", "(None, 4)"},
        {"diff", "Subtract", "[(None, 4), (None, 4)]", "(None, 4)"},
        {"square", "Multiply", "[(None, 4), (None, 4)]", "(None, 4)"},
        {"both", "Concatenate", "[(None, 4), (None, 4), (None, 5)]", "(None, 13)"},
        {"head", "Dense", "(None, 13)", "(None, 3)"},
        {"score", "Dense", "(None, 4)", "(None, 1)"},
    };
    for (size_t i = 0; i < sizeof boxes / sizeof boxes[0]; i++) {
        char want[512];
        snprintf(want, sizeof want, "<b>%s</b> (%s)</td>", boxes[i][0], boxes[i][1]);
        ck_assert_msg(has(dot, n, want), "no '%s' in:\n%.*s", want, (int)n, dot);
        snprintf(want, sizeof want, "<b>%s</b> (%s)</td></tr><tr><td>Input shape: %s</td>"
                 "<td>Output shape: %s</td>", boxes[i][0], boxes[i][1], boxes[i][2],
                 boxes[i][3]);
        ck_assert_msg(has(dot, n, want), "no '%s' in:\n%.*s", want, (int)n, dot);
    }
    /* One edge per connection, a tensor taken twice twice. */
    static const char *const conn[][3] = {
        {"left", "enc", "1"},    {"right", "enc_r", "1"}, {"enc", "diff", "1"},
        {"enc_r", "diff", "1"},  {"diff", "square", "2"}, {"square", "both", "1"},
        {"enc", "both", "1"},    {"right", "both", "1"},  {"both", "head", "1"},
        {"enc_r", "score", "1"},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof conn / sizeof conn[0]; i++) {
        size_t e = edges(dot, n, conn[i][0], conn[i][1]);
        ck_assert_msg(e == (size_t)atoi(conn[i][2]), "%zu edges %s -> %s in:\n%.*s", e,
                      conn[i][0], conn[i][1], (int)n, dot);
        total += e;
    }
    ck_assert_uint_eq(total, 11);
    ck_assert_uint_eq(count(dot, n, " -> "), 11);
    /* The outputs stand out from the other layers. */
    ck_assert_uint_eq(count(dot, n, "#f8cecc"), 2);

    /* The file variant writes the same text. */
    char path[4096];
    snprintf(path, sizeof path, "%s/model.dot", dir);
    ck_assert_msg(ct_experiment_diagram(ex, path, &err) == 0, "%s", err.msg);
    size_t fn;
    unsigned char *file = slurp(path, &fn);
    ck_assert_uint_eq(fn, n);
    ck_assert(memcmp(file, dot, n) == 0);
    free(file);
    free(dot);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

START_TEST(test_diagram_sequential)
{
    char *dir = tu_tmpdir();
    ct_experiment *ex = load_yaml(dir,
        "name: chain\n"
        "data:\n  train: {path: none.h5, x: x, y: y}\n"
        "model:\n  input_shape: [28, 28, 1]\n  layers:\n"
        "    - {type: flatten}\n"
        "    - {type: dense, units: 16, activation: relu}\n"
        "    - {type: dense, units: 10, activation: softmax}\n"
        "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n");
    ct_error err = {0};
    unsigned char *dot;
    size_t n;
    ck_assert_msg(ct_experiment_diagram_mem(ex, "dot", &dot, &n, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(count(dot, n, " -> "), 3);
    ck_assert(has(dot, n, "(InputLayer)</td></tr><tr><td>Input shape: (None, 28, 28, 1)"));
    ck_assert(has(dot, n, "<b>flatten</b> (Flatten)</td></tr><tr><td>Input shape: (None, "
                          "28, 28, 1)</td><td>Output shape: (None, 784)</td>"));
    ck_assert(has(dot, n, "<b>dense</b> (Dense)</td></tr><tr><td>Input shape: (None, 784)"));
    ck_assert(edges(dot, n, "flatten", "dense") == 1);
    ck_assert(has(dot, n, "Output shape: (None, 10)"));
    free(dot);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* A layer of several outputs: its box lists their shapes, and the arrow from its output 1
 * says so. */
START_TEST(test_diagram_layer_outputs)
{
    char *dir = tu_tmpdir();
    ct_experiment *ex = load_yaml(dir,
        "name: states\n"
        "data:\n  train: {path: none.h5, x: x, y: {r: a, state: b}}\n"
        "model:\n  inputs: {x: {shape: [4, 3]}}\n  layers:\n"
        "    - {name: r, type: gru, units: 2, return_sequences: true, return_state: true, "
        "inputs: x}\n"
        "    - {name: state, type: dense, units: 1, inputs: r:1}\n"
        "  outputs: [r, state]\n"
        "compile: {optimizer: adam, loss: mse}\n");
    ct_error err = {0};
    unsigned char *dot;
    size_t n;
    ck_assert_msg(ct_experiment_diagram_mem(ex, "dot", &dot, &n, &err) == 0, "%s", err.msg);
    ck_assert_msg(has(dot, n, "<b>r</b> (GRU)</td></tr><tr><td>Input shape: (None, 4, 3)</td>"
                              "<td>Output shape: [(None, 4, 2), (None, 2)]</td>"),
                  "%.*s", (int)n, dot);
    ck_assert_msg(has(dot, n, "\tr -> state\t[label=\"output 1\"];"), "%.*s", (int)n, dot);
    ck_assert(has(dot, n, "\tx -> r;"));
    ck_assert_uint_eq(count(dot, n, " -> "), 2);
    free(dot);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

START_TEST(test_diagram_render)
{
    char *dir = tu_tmpdir();
    ct_experiment *ex = load_yaml(dir, functional_yaml);
    ct_error err = {0};
    unsigned char *data;
    size_t n;
    ck_assert_msg(ct_experiment_diagram_mem(ex, "svg", &data, &n, &err) == 0, "%s", err.msg);
    ck_assert(n > 100 && memcmp(data, "<?xml", 5) == 0);
    ck_assert(has(data, n, "<svg"));
    ck_assert(has(data, n, "</svg>"));
    /* graphviz's SVG: a group per node and per edge, the texts as text. */
    ck_assert_uint_eq(count(data, n, "class=\"node\""), 9);
    ck_assert_uint_eq(count(data, n, "class=\"edge\""), 11);
    ck_assert(has(data, n, ">enc_r</text>"));
    ck_assert(has(data, n, "Concatenate"));
    free(data);

    char path[4096];
    snprintf(path, sizeof path, "%s/model.png", dir);
    ck_assert_msg(ct_experiment_diagram(ex, path, &err) == 0, "%s", err.msg);
    data = slurp(path, &n);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ck_assert(n > 33 && memcmp(data, sig, 8) == 0 && memcmp(data + 12, "IHDR", 4) == 0);
    cairo_surface_t *s = decode_png(data, n);
    /* Taller than wide: a graph drawn top to bottom, boxes of readable size. */
    ck_assert_int_gt(cairo_image_surface_get_width(s), 300);
    ck_assert_int_gt(cairo_image_surface_get_height(s), cairo_image_surface_get_width(s) / 2);
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    ck_assert_int_gt(pixels_of(s, 0xf8cecc, 0, 0, w, h), 100); /* the outputs' headers */
    cairo_surface_destroy(s);
    free(data);

    ck_assert_msg(ct_experiment_diagram_mem(ex, "pdf", &data, &n, &err) == 0, "%s", err.msg);
    ck_assert(n > 100 && memcmp(data, "%PDF-", 5) == 0);
    free(data);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

START_TEST(test_diagram_errors)
{
    char *dir = tu_tmpdir();
    ct_experiment *ex = load_yaml(dir, functional_yaml);
    ct_error err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/model.jpg", dir);
    ck_assert_int_eq(ct_experiment_diagram(ex, path, &err), -1);
    char want[4200];
    snprintf(want, sizeof want, "%s: unknown picture format '.jpg' (use .svg, .png, .pdf or .dot)",
             path);
    ck_assert_str_eq(err.msg, want);
    ck_assert_int_eq(err.code, CT_ERR_USAGE);
    snprintf(path, sizeof path, "%s/missing/model.svg", dir);
    ck_assert_int_eq(ct_experiment_diagram(ex, path, &err), -1);
    snprintf(want, sizeof want,
             "cannot write %s: cannot create a temporary file beside it: No such file or "
             "directory", path);
    ck_assert_str_eq(err.msg, want);
    ck_assert_int_eq(err.code, CT_ERR_IO);
    unsigned char *data = (unsigned char *)"x";
    size_t n = 3;
    ck_assert_int_eq(ct_experiment_diagram_mem(ex, "bmp", &data, &n, &err), -1);
    ck_assert(data == NULL && n == 0);
    ck_assert_str_eq(err.msg, "unknown picture format 'bmp' (use .svg, .png, .pdf or .dot)");
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("report");
    TCase *t = tcase_create("curves");
    tcase_add_test(t, test_plot_svg);
    tcase_add_test(t, test_plot_png);
    tcase_add_test(t, test_plot_pdf);
    tcase_add_test(t, test_plot_one_epoch);
    tcase_add_test(t, test_plot_panels);
    tcase_add_test(t, test_plot_history_errors);
    tcase_add_test(t, test_plot_usage_errors);
    suite_add_tcase(s, t);
    TCase *d = tcase_create("diagrams");
    tcase_add_test(d, test_diagram_dot);
    tcase_add_test(d, test_diagram_sequential);
    tcase_add_test(d, test_diagram_layer_outputs);
    tcase_add_test(d, test_diagram_render);
    tcase_add_test(d, test_diagram_errors);
    suite_add_tcase(s, d);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
