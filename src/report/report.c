/* report.c - report.html: one self-contained page per run (the experiment file, the model,
 * the learning curves, the test-set results), readable with no network and no script. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctrain.h"
#include "experiment.h"
#include "h5strings.h"
#include "history_csv.h"
#include "h5util.h"
#include "html.h"
#include "metric_state.h"
#include "model.h"
#include "test_results.h"
#include "parallel.h"

static const char style[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f4f5f7;"
    "color:#1d2330}"
    "main{max-width:1120px;margin:0 auto;padding:24px}"
    "h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:0 0 12px}"
    ".sub{color:#5b6270;margin-bottom:18px}"
    "section{background:#fff;border:1px solid #dde0e6;border-radius:8px;padding:18px 20px;"
    "margin:0 0 18px}"
    "pre{background:#f7f8fa;border:1px solid #e3e6eb;border-radius:6px;padding:10px 12px;"
    "overflow:auto;font-size:12.5px;line-height:1.4}"
    "table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}"
    "td,th{border:1px solid #e3e6eb;padding:4px 8px;text-align:right}"
    "th{background:#f7f8fa;font-weight:600}"
    ".cm td{min-width:34px;text-align:center}"
    ".scores{display:flex;gap:14px;flex-wrap:wrap;margin-bottom:14px}"
    ".score{background:#f7f8fa;border:1px solid #e3e6eb;border-radius:6px;padding:8px 14px}"
    ".score b{display:block;font-size:20px}"
    ".grid{display:flex;flex-wrap:wrap;gap:10px}"
    "figure{margin:0;text-align:center;font-size:12px}figure img{image-rendering:pixelated;"
    "border:1px solid #ccd}"
    ".bad{color:#b3261e}.note{color:#5b6270;font-size:13px}"
    ".picture{max-width:100%;height:auto}";

/* A file's whole text (NULL and errno set when it cannot be read). Caller frees. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&text, &n);
    char buf[8192];
    size_t got;
    while (m && (got = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, got, m);
    int bad = ferror(f);
    fclose(f);
    if (m)
        fclose(m);
    if (bad) {
        free(text);
        errno = EIO;
        return NULL;
    }
    return text;
}

typedef int (*picture_fn)(const void *ctx, const char *format, unsigned char **data, size_t *size,
                          ct_error *err);

static int history_picture(const void *ctx, const char *format, unsigned char **data, size_t *size,
                           ct_error *err)
{
    return ct_plot_history_mem(ctx, NULL, format, data, size, err);
}

static int diagram_picture(const void *ctx, const char *format, unsigned char **data, size_t *size,
                           ct_error *err)
{
    return ct_experiment_diagram_mem(ctx, format, data, size, err);
}

/* A picture drawn into memory, inlined as an <img> with a data URI (its own document, so
 * the ids inside two SVG pictures never meet). */
static int embed_picture(FILE *out, const char *format, const char *alt, picture_fn draw,
                         const void *ctx, ct_error *err)
{
    unsigned char *data = NULL;
    size_t size = 0;
    if (draw(ctx, format, &data, &size, err) < 0)
        return -1;
    fprintf(out, "<p><img class=\"picture\" alt=\"%s\" src=\"data:image/%s;base64,", alt,
            strcmp(format, "svg") ? format : "svg+xml");
    ct_html_base64(out, data, size);
    fputs("\"></p>", out);
    free(data);
    return 0;
}

/* The learning curves and history.csv as a table (read by the plots' reader, which names
 * the line and column of anything wrong). */
static int history_section(FILE *out, const char *run_dir, ct_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/history.csv", run_dir);
    ct_history h;
    if (ct_history_read(path, &h, err) < 0)
        return -1;
    fputs("<section><h2>Training history</h2>", out);
    int rc = embed_picture(out, "svg", "learning curves", history_picture, run_dir, err);
    fputs("\n<table><tr><th>epoch</th>", out);
    for (int j = 0; j < h.ncols; j++) {
        fputs("<th>", out);
        ct_html_text(out, h.names[j]);
        fputs("</th>", out);
    }
    fputs("</tr>\n", out);
    for (int i = 0; i < h.nrows; i++) {
        fprintf(out, "<tr><td>%.0f</td>", h.epochs[i]);
        for (int j = 0; j < h.ncols; j++)
            fprintf(out, "<td>%.6g</td>", h.values[i * h.ncols + j]);
        fputs("</tr>\n", out);
    }
    fputs("</table></section>\n", out);
    ct_history_free(&h);
    return rc;
}

static void text_section(FILE *out, const char *title, const char *text)
{
    fprintf(out, "<section><h2>%s</h2><pre>", title);
    ct_html_text(out, text);
    fputs("</pre></section>\n", out);
}

/* The experiment as it ran (the run's config.yaml), else as loaded. */
static int experiment_section(FILE *out, ct_experiment *ex, const char *run_dir, ct_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", run_dir);
    char *text = slurp(path);
    if (!text) {
        size_t n = 0;
        FILE *m = open_memstream(&text, &n);
        if (!m)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        int rc = ct_experiment_write_config(ex, m, err);
        fclose(m);
        if (rc < 0) {
            free(text);
            return -1;
        }
    }
    text_section(out, "Experiment", text);
    free(text);
    return 0;
}

static int model_section(FILE *out, const ct_experiment *ex)
{
    char *text = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&text, &n);
    if (!m)
        return -1;
    ct_experiment_summary(ex, m);
    fclose(m);
    fputs("<section><h2>Model</h2>", out);
    ct_error err = {0};
    if (embed_picture(out, "svg", "the model's layers and connections", diagram_picture,
                      ex, &err) < 0)
        fprintf(out, "<p class=\"note\">No diagram: %s</p>", err.msg);
    fputs("<pre>", out);
    ct_html_text(out, text);
    fputs("</pre></section>\n", out);
    free(text);
    return 0;
}

/* Class c as shown: its number, and its name where the data file stores names. */
static void class_label(FILE *out, const ct_strings *names, int c)
{
    fprintf(out, "%d", c);
    if (names->n > c) {
        fputc(' ', out);
        ct_html_text(out, names->s[c]);
    }
}

/* The class names stored beside data.test's labels (G/classes for labels G/labels, as
 * `ctrain data import-images` writes them), when there is one per class; else none. */
static void class_names(const ct_experiment *ex, int classes, ct_strings *names)
{
    *names = (ct_strings){0};
    const char *y = ex->test.y[0], *slash = y ? strrchr(y, '/') : NULL;
    char where[CT_NAME_MAX + 16];
    snprintf(where, sizeof where, "%.*sclasses", slash ? (int)(slash - y + 1) : 0, y ? y : "");
    ct_error ignored = {0};
    if (y && ct_h5_has_object(ex->test.path, where))
        ct_h5_read_strings(ex->test.path, where, NULL, classes, classes, "the class names",
                           names, &ignored);
}

/* The confusion matrix, each cell shaded by its share of its true class. */
static void confusion_table(FILE *out, const ct_test_results *r, const ct_strings *names)
{
    int n = r->classes;
    const double *cm = r->confusion.state;
    fputs("<h3>Confusion matrix</h3><p class=\"note\">Rows: true class; columns: predicted "
          "class.</p><table class=\"cm\"><tr><th></th>", out);
    for (int j = 0; j < n; j++)
        fprintf(out, "<th>%d</th>", j);
    fputs("</tr>\n", out);
    for (int i = 0; i < n; i++) {
        double row = 0;
        for (int j = 0; j < n; j++)
            row += cm[i * n + j];
        fputs("<tr><th>", out);
        class_label(out, names, i);
        fputs("</th>", out);
        for (int j = 0; j < n; j++) {
            double share = row > 0 ? cm[i * n + j] / row : 0;
            fprintf(out, "<td style=\"background:rgba(%s,%.3f)\">%.0f</td>",
                    i == j ? "31,119,180" : "214,39,40", share, cm[i * n + j]);
        }
        fputs("</tr>\n", out);
    }
    fputs("</table>\n", out);
}

/* Precision, recall and F1 per class (the metrics' own formulas), and their macro mean. */
static void class_table(FILE *out, const ct_test_results *r, const ct_strings *names)
{
    int n = r->classes;
    const double *cm = r->confusion.state;
    fputs("<h3>Per class</h3><table><tr><th>class</th><th>precision</th><th>recall</th>"
          "<th>F1</th><th>support</th></tr>\n", out);
    double mp = 0, mr = 0, mf = 0, total = 0;
    for (int c = 0; c < n; c++) {
        double tp = cm[c * n + c], row = 0, col = 0;
        for (int j = 0; j < n; j++) {
            row += cm[c * n + j];
            col += cm[j * n + c];
        }
        double p, rec, f1;
        ct_class_scores(tp, col - tp, row - tp, &p, &rec, &f1);
        fputs("<tr><th>", out);
        class_label(out, names, c);
        fprintf(out, "</th><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%.0f</td></tr>\n", p,
                rec, f1, row);
        mp += p / n;
        mr += rec / n;
        mf += f1 / n;
        total += row;
    }
    fprintf(out, "<tr><th>macro mean</th><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%.0f</td>"
            "</tr></table>\n", mp, mr, mf, total);
}

static int wrong_grid(FILE *out, const ct_test_results *r, const ct_strings *names,
                      ct_error *err)
{
    if (!r->wrong_x || !r->nwrong)
        return 0;
    int64_t size = r->h * r->w * r->c;
    int zoom = r->h <= 32 ? 3 : r->h <= 64 ? 2 : 1;
    fprintf(out, "<h3>Misclassified test images</h3><p class=\"note\">The first %d in the "
            "test set's order.</p><div class=\"grid\">\n", r->nwrong);
    for (int k = 0; k < r->nwrong; k++) {
        char alt[96];
        snprintf(alt, sizeof alt, "test row %lld: true %d, predicted %d",
                 (long long)r->wrong_row[k], r->wrong_true[k], r->wrong_pred[k]);
        fputs("<figure>", out);
        if (ct_html_image(out, r->wrong_x + k * size, r->h, r->w, r->c, zoom, alt, err) < 0)
            return -1;
        fprintf(out, "<figcaption>#%lld<br>true ", (long long)r->wrong_row[k]);
        class_label(out, names, r->wrong_true[k]);
        fputs("<br><span class=\"bad\">predicted ", out);
        class_label(out, names, r->wrong_pred[k]);
        fprintf(out, " (%.2f)</span></figcaption></figure>\n", (double)r->wrong_conf[k]);
    }
    fputs("</div>\n", out);
    return 0;
}

/* data.test's loss and metrics, and for a classifier its matrix, per-class scores and
 * misclassified images. */
static int test_section(FILE *out, ct_experiment *ex, ct_error *err)
{
    fputs("<section><h2>Test set</h2>", out);
    if (!ex->test.given) {
        fputs("<p class=\"note\">The experiment has no data.test.</p></section>\n", out);
        return 0;
    }
    const char *names[CT_MAX_REPORTED];
    double values[CT_MAX_REPORTED];
    int n = ct_experiment_evaluate(ex, NULL, NULL, NULL, names, values, CT_MAX_REPORTED, err);
    if (n < 0)
        return -1;
    ct_test_results r;
    int rc = ct_test_results_run(ex, &r, err);
    if (rc == 0) {
        fputs("<div class=\"scores\">", out);
        for (int i = 0; i < n; i++) {
            fputs("<div class=\"score\">", out);
            ct_html_text(out, names[i]);
            fprintf(out, "<b>%.4f</b></div>", values[i]);
        }
        fputs("</div>\n", out);
        const char *file = strrchr(ex->test.path, '/');
        fputs("<p class=\"note\">data.test: ", out);
        ct_html_text(out, file ? file + 1 : ex->test.path);
        fputs(" (", out);
        ct_html_text(out, ex->test.x[0] ? ex->test.x[0] : "x");
        if (ex->test.y[0]) {
            fputs(", ", out);
            ct_html_text(out, ex->test.y[0]);
        }
        fputs(")", out);
        if (r.rows)
            fprintf(out, ", %lld samples", (long long)r.rows);
        fputs("</p>\n", out);
        if (r.classes) {
            ct_strings names;
            class_names(ex, r.classes, &names);
            confusion_table(out, &r, &names);
            class_table(out, &r, &names);
            rc = wrong_grid(out, &r, &names, err);
            ct_strings_free(&names);
        }
    }
    ct_test_results_free(&r);
    fputs("</section>\n", out);
    return rc;
}

static int write_page(FILE *out, ct_experiment *ex, const char *run_dir, ct_error *err)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>", out);
    ct_html_text(out, ex->name);
    fprintf(out, " - ctrain report</title><style>%s</style></head><body><main>\n<h1>", style);
    ct_html_text(out, ex->name);
    fputs("</h1><div class=\"sub\">Run ", out);
    ct_html_text(out, run_dir);
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime(&now));
    fprintf(out, ", reported %s</div>\n", when);
    if (history_section(out, run_dir, err) < 0 || test_section(out, ex, err) < 0 ||
        model_section(out, ex) < 0 || experiment_section(out, ex, run_dir, err) < 0)
        return -1;
    fputs("</main></body></html>\n", out);
    return 0;
}

int ct_experiment_report(ct_experiment *ex, const char *run_dir, const char *out_path,
                         ct_error *err)
{
    char path[4200], part[4300];
    if (out_path)
        snprintf(path, sizeof path, "%s", out_path);
    else
        snprintf(path, sizeof path, "%s/report.html", run_dir);
    struct stat st;
    if (stat(run_dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return ct_err(err, CT_ERR_IO, "%s: no such run directory", run_dir);
    /* Written aside and renamed, so a failure leaves no half page. */
    snprintf(part, sizeof part, "%s.part", path);
    FILE *out = fopen(part, "w");
    if (!out)
        return ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    ct_fp_state fp = ct_fp_enter();
    int rc = write_page(out, ex, run_dir, err);
    ct_fp_leave(fp);
    if (fclose(out) != 0 && rc == 0)
        rc = ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (rc == 0 && rename(part, path) < 0)
        rc = ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (rc < 0)
        unlink(part);
    return rc;
}
