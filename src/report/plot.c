/* plot.c - learning curves from history.csv drawn with cairo: one panel per metric with
 * its training and validation series, as Keras's and Ludwig's plots show them. */
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "history_csv.h"
#include "picture.h"
#include "plot.h"

/* Panel size in pixels (PNG) or points (SVG, PDF); two panels per row. */
#define PANEL_W CT_PLOT_PANEL_W
#define PANEL_H CT_PLOT_PANEL_H
#define MAX_PANELS 64
#define LEFT CT_PLOT_LEFT
#define RIGHT CT_PLOT_RIGHT
#define TOP CT_PLOT_TOP
#define BOTTOM CT_PLOT_BOTTOM
/* Below this many epochs every point gets a marker; a lone point always does. */
#define MARKER_ROWS 30

typedef struct rgb { double r, g, b; } rgb;
static const rgb train_colour = {CT_PLOT_TRAIN_R / 255.0, CT_PLOT_TRAIN_G / 255.0,
                                 CT_PLOT_TRAIN_B / 255.0};
static const rgb val_colour = {CT_PLOT_VAL_R / 255.0, CT_PLOT_VAL_G / 255.0,
                               CT_PLOT_VAL_B / 255.0};

/* A metric's panel: the training column and its val_ twin (-1 where absent). */
typedef struct panel {
    const char *name;
    int train, val;
} panel;

static const char *const plot_formats[] = {"png", "svg", "pdf", NULL};

/* Every metric the history can show, in column order: X pairs with val_X; a val_X without
 * X is a panel of its own, named X. */
static int list_panels(const ct_history *h, panel *out)
{
    int n = 0;
    for (int c = 0; c < h->ncols && n < MAX_PANELS; c++) {
        const char *name = h->names[c];
        bool is_val = strncmp(name, "val_", 4) == 0 && name[4];
        if (is_val && ct_history_column(h, name + 4) >= 0)
            continue; /* drawn with its training twin */
        panel p = {is_val ? name + 4 : name, is_val ? -1 : c, is_val ? c : -1};
        if (!is_val) {
            char val[300];
            snprintf(val, sizeof val, "val_%s", name);
            p.val = ct_history_column(h, val);
        }
        out[n++] = p;
    }
    return n;
}

static bool is_learning_rate(const char *name)
{
    return strcmp(name, "learning_rate") == 0 || strcmp(name, "lr") == 0;
}

/* The panels to draw: those named in `metrics` (comma-separated, in that order), or by
 * default every metric but the learning rate, the loss first. */
static int choose_panels(const ct_history *h, const char *csv_path, const char *metrics,
                         panel *chosen, ct_error *err)
{
    panel all[MAX_PANELS];
    int nall = list_panels(h, all), n = 0;
    if (!metrics) {
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < nall; i++) {
                bool loss = strcmp(all[i].name, "loss") == 0;
                if ((pass == 0) == loss && !is_learning_rate(all[i].name))
                    chosen[n++] = all[i];
            }
        if (n == 0) /* a history of the learning rate alone still shows something */
            for (int i = 0; i < nall; i++)
                chosen[n++] = all[i];
        return n;
    }
    const char *p = metrics;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        while (len && p[len - 1] == ' ')
            len--;
        int found = -1;
        for (int i = 0; i < nall && len; i++)
            if (strlen(all[i].name) == len && strncmp(all[i].name, p, len) == 0)
                found = i;
        if (found < 0) {
            char have[1024];
            size_t at = 0;
            have[0] = 0;
            for (int i = 0; i < nall && at < sizeof have; i++)
                at += (size_t)snprintf(have + at, sizeof have - at, "%s%s", i ? ", " : "",
                                       all[i].name);
            if (!len)
                return ct_err(err, CT_ERR_USAGE, "an empty metric name in '%.200s'; %s has: %s",
                              metrics, csv_path, have);
            return ct_err(err, CT_ERR_USAGE, "unknown metric '%.*s'; %s has: %s",
                          (int)(len > 100 ? 100 : len), p, csv_path, have);
        }
        for (int j = 0; j < n; j++)
            if (strcmp(chosen[j].name, all[found].name) == 0)
                return ct_err(err, CT_ERR_USAGE, "metric '%s' is named twice in '%.200s'",
                              all[found].name, metrics);
        if (n == MAX_PANELS)
            return ct_err(err, CT_ERR_USAGE, "more than %d metrics to plot", MAX_PANELS);
        chosen[n++] = all[found];
        if (!comma)
            return n;
        p = comma + 1;
    }
}

/* ---- axes ------------------------------------------------------------------------------ */

/* Values this far out cannot be placed on a sensible axis; they are left out as NaN is. */
static bool drawable(double v) { return isfinite(v) && fabs(v) < 1e300; }

/* 1, 2 or 5 times a power of ten, near range / target. */
static double nice_step(double range, int target)
{
    double raw = range / target;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

typedef struct axis {
    double lo, hi;       /* the span drawn */
    double first, step;  /* ticks: first, first + step, ... up to hi */
    int nticks;
} axis;

static void value_axis(double min, double max, axis *a)
{
    if (!(min <= max)) { /* nothing drawable: an empty [0, 1] */
        min = 0;
        max = 1;
    }
    if (max - min < 1e-12 * fmax(1, fabs(max))) {
        /* A constant: a span around it, wide enough for ticks of normal (not denormal)
         * numbers. */
        double d = fmax(fabs(min) * 0.05, 1e-9);
        min -= d;
        max += d;
    }
    /* A margin as matplotlib's, so no point sits on the frame. */
    double margin = (max - min) * 0.05;
    min -= margin;
    max += margin;
    a->step = nice_step(max - min, 5);
    a->lo = floor(min / a->step) * a->step;
    a->hi = ceil(max / a->step) * a->step;
    a->first = a->lo;
    a->nticks = (int)fmin(lround((a->hi - a->lo) / a->step) + 1, 20);
}

/* Epochs as the user counts them (from 1); ticks on whole epochs only. */
static void epoch_axis(double min, double max, axis *a)
{
    double pad = max > min ? (max - min) * 0.03 : 0.5;
    a->lo = min - pad;
    a->hi = max + pad;
    a->step = max > min ? fmax(1, nice_step(max - min, 8)) : 1;
    a->first = ceil(min / a->step) * a->step;
    a->nticks = (int)floor((max - a->first) / a->step + 1e-9) + 1;
}

/* A tick's text with as many decimals as the step needs. */
static void tick_label(double v, double step, char *buf, size_t n)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) >= 1e6 || decimals > 6)
        snprintf(buf, n, "%.3g", v);
    else
        snprintf(buf, n, "%.*f", decimals, v);
}

/* ---- drawing --------------------------------------------------------------------------- */

typedef struct frame {
    double x, y, w, h; /* the plot area */
    axis ax, ay;
} frame;

/* Data to picture coordinates: x grows rightwards, y upwards from the plot area's foot. */
static double px(const frame *f, double x)
{
    return f->x + (x - f->ax.lo) / (f->ax.hi - f->ax.lo) * f->w;
}

static double py(const frame *f, double y)
{
    return f->y + f->h - (y - f->ay.lo) / (f->ay.hi - f->ay.lo) * f->h;
}

static void set_font(cairo_t *cr, double size, bool bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* Text placed by its anchor: ax 0 left, 0.5 centre, 1 right; ay 0 top, 0.5 middle, 1
 * bottom of the font's line (not of the ink, so texts side by side share a baseline). */
static void text_at(cairo_t *cr, double x, double y, double ax, double ay, const char *s)
{
    cairo_text_extents_t e;
    cairo_font_extents_t fe;
    cairo_text_extents(cr, s, &e);
    cairo_font_extents(cr, &fe);
    double ascent = fe.ascent * 0.8; /* toy fonts' ascent includes the line's leading */
    cairo_move_to(cr, x - e.x_bearing - e.width * ax, y + ascent - ay * (ascent + fe.descent));
    cairo_show_text(cr, s);
}

static void draw_axes(cairo_t *cr, const frame *f, const char *name)
{
    char label[64];
    cairo_set_line_width(cr, 1);
    set_font(cr, 11, false);
    for (int i = 0; i < f->ay.nticks; i++) {
        double v = f->ay.first + i * f->ay.step, y = round(py(f, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f->x, y);
        cairo_line_to(cr, f->x + f->w, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, f->x - 5, y);
        cairo_line_to(cr, f->x, y);
        cairo_stroke(cr);
        tick_label(v, f->ay.step, label, sizeof label);
        text_at(cr, f->x - 8, y, 1, 0.5, label);
    }
    for (int i = 0; i < f->ax.nticks; i++) {
        double v = f->ax.first + i * f->ax.step, x = round(px(f, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, x, f->y);
        cairo_line_to(cr, x, f->y + f->h);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, x, f->y + f->h);
        cairo_line_to(cr, x, f->y + f->h + 5);
        cairo_stroke(cr);
        tick_label(v, 1, label, sizeof label);
        text_at(cr, x, f->y + f->h + 8, 0.5, 0, label);
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, round(f->x) + 0.5, round(f->y) + 0.5, round(f->w), round(f->h));
    cairo_stroke(cr);
    set_font(cr, 12, false);
    text_at(cr, f->x + f->w / 2, f->y + f->h + 30, 0.5, 0, "Epoch");
    cairo_save(cr);
    cairo_translate(cr, f->x - LEFT + 8, f->y + f->h / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, 0.5, 0, name);
    cairo_restore(cr);
    set_font(cr, 14, true);
    text_at(cr, f->x + f->w / 2, f->y - 14, 0.5, 1, name);
}

static void draw_series(cairo_t *cr, const frame *f, const ct_history *h, int col, rgb c)
{
    int points = 0;
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_set_line_width(cr, 2);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_new_path(cr);
    /* Epochs that did not validate hold NaN: the line joins the epochs on either side. */
    for (int r = 0; r < h->nrows; r++) {
        double v = h->values[(size_t)r * (size_t)h->ncols + (size_t)col];
        if (!drawable(v))
            continue;
        double x = px(f, h->epochs[r] + 1), y = py(f, v);
        if (points++)
            cairo_line_to(cr, x, y);
        else
            cairo_move_to(cr, x, y);
    }
    cairo_stroke(cr);
    if (points > MARKER_ROWS && points > 1)
        return;
    for (int r = 0; r < h->nrows; r++) {
        double v = h->values[(size_t)r * (size_t)h->ncols + (size_t)col];
        if (!drawable(v))
            continue;
        cairo_new_sub_path(cr);
        cairo_arc(cr, px(f, h->epochs[r] + 1), py(f, v), 3.5, 0, 2 * M_PI);
    }
    cairo_fill(cr);
}

/* Points of the panel's series inside a box, to keep the legend off the curves. */
static int points_in(const frame *f, const ct_history *h, const panel *p, double x0, double y0,
                     double w, double hgt)
{
    int n = 0;
    int cols[2] = {p->train, p->val};
    for (int s = 0; s < 2; s++)
        for (int r = 0; r < h->nrows && cols[s] >= 0; r++) {
            double v = h->values[(size_t)r * (size_t)h->ncols + (size_t)cols[s]];
            if (!drawable(v))
                continue;
            double x = px(f, h->epochs[r] + 1), y = py(f, v);
            n += x >= x0 - 4 && x <= x0 + w + 4 && y >= y0 - 4 && y <= y0 + hgt + 4;
        }
    return n;
}

static void draw_legend(cairo_t *cr, const frame *f, const ct_history *h, const panel *p)
{
    const char *labels[2];
    rgb colours[2];
    int n = 0;
    if (p->train >= 0)
        labels[n] = "train", colours[n++] = train_colour;
    if (p->val >= 0)
        labels[n] = "validation", colours[n++] = val_colour;
    set_font(cr, 11, false);
    cairo_text_extents_t e;
    cairo_text_extents(cr, "validation", &e);
    double w = e.x_advance + 46, hgt = n * 18 + 10, pad = 8;
    /* The corner with the fewest points; upper right first, as matplotlib's "best". */
    double xs[4] = {f->x + f->w - w - pad, f->x + pad, f->x + f->w - w - pad, f->x + pad};
    double ys[4] = {f->y + pad, f->y + pad, f->y + f->h - hgt - pad, f->y + f->h - hgt - pad};
    int best = 0, fewest = -1;
    for (int k = 0; k < 4; k++) {
        int c = points_in(f, h, p, xs[k], ys[k], w, hgt);
        if (fewest < 0 || c < fewest)
            best = k, fewest = c;
    }
    double x = round(xs[best]) + 0.5, y = round(ys[best]) + 0.5;
    cairo_rectangle(cr, x, y, w, hgt);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        double ly = y + 14 + i * 18;
        cairo_set_source_rgb(cr, colours[i].r, colours[i].g, colours[i].b);
        cairo_set_line_width(cr, 2);
        cairo_move_to(cr, x + 8, ly);
        cairo_line_to(cr, x + 30, ly);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, x + 36, ly, 0, 0.5, labels[i]);
    }
}

static void draw_panel(cairo_t *cr, double x0, double y0, const ct_history *h, const panel *p)
{
    frame f = {.x = x0 + LEFT, .y = y0 + TOP, .w = PANEL_W - LEFT - RIGHT,
               .h = PANEL_H - TOP - BOTTOM};
    double ymin = INFINITY, ymax = -INFINITY;
    double emin = h->epochs[0] + 1, emax = emin;
    int cols[2] = {p->train, p->val};
    for (int r = 0; r < h->nrows; r++) {
        emin = fmin(emin, h->epochs[r] + 1);
        emax = fmax(emax, h->epochs[r] + 1);
        for (int s = 0; s < 2; s++) {
            double v = cols[s] < 0 ? NAN
                                   : h->values[(size_t)r * (size_t)h->ncols + (size_t)cols[s]];
            if (drawable(v))
                ymin = fmin(ymin, v), ymax = fmax(ymax, v);
        }
    }
    value_axis(ymin, ymax, &f.ay);
    epoch_axis(emin, emax, &f.ax);
    draw_axes(cr, &f, p->name);
    cairo_save(cr);
    cairo_rectangle(cr, f.x - 4, f.y - 4, f.w + 8, f.h + 8);
    cairo_clip(cr);
    if (p->train >= 0)
        draw_series(cr, &f, h, p->train, train_colour);
    if (p->val >= 0)
        draw_series(cr, &f, h, p->val, val_colour);
    cairo_restore(cr);
    draw_legend(cr, &f, h, p);
}

static cairo_status_t to_picture(void *closure, const unsigned char *data, unsigned int length)
{
    return ct_picture_append(closure, data, length) == 0 ? CAIRO_STATUS_SUCCESS
                                                         : CAIRO_STATUS_WRITE_ERROR;
}

void ct_plot_size(int npanels, int *width, int *height)
{
    int cols = npanels > 1 ? 2 : 1, rows = (npanels + cols - 1) / cols;
    *width = cols * PANEL_W;
    *height = (rows > 0 ? rows : 1) * PANEL_H;
}

static int render(const ct_history *h, const panel *panels, int n, const char *fmt,
                  ct_picture *out, ct_error *err)
{
    int width, height;
    ct_plot_size(n, &width, &height);
    cairo_surface_t *s;
    if (strcmp(fmt, "svg") == 0)
        s = cairo_svg_surface_create_for_stream(to_picture, out, width, height);
    else if (strcmp(fmt, "pdf") == 0)
        s = cairo_pdf_surface_create_for_stream(to_picture, out, width, height);
    else
        s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    for (int i = 0; i < n; i++)
        draw_panel(cr, (i % 2) * PANEL_W * (n > 1), (i / (n > 1 ? 2 : 1)) * PANEL_H, h,
                   &panels[i]);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS && strcmp(fmt, "png") == 0)
        st = cairo_surface_write_to_png_stream(s, to_picture, out);
    cairo_surface_finish(s); /* SVG and PDF write their last bytes here */
    if (st == CAIRO_STATUS_SUCCESS)
        st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (out->failed)
        return ct_err(err, CT_ERR_NOMEM, "out of memory drawing the learning curves");
    if (st != CAIRO_STATUS_SUCCESS)
        return ct_err(err, CT_ERR_INTERNAL, "drawing the learning curves failed: %s",
                      cairo_status_to_string(st));
    return 0;
}

/* RUN_DIR/name, without doubling a slash the user typed; -1 when too long. */
static int in_run(const char *run_dir, const char *name, char *buf, size_t n)
{
    size_t len = strlen(run_dir);
    const char *sep = len && run_dir[len - 1] == '/' ? "" : "/";
    return (size_t)snprintf(buf, n, "%s%s%s", run_dir, sep, name) < n ? 0 : -1;
}

/* Reads RUN_DIR/history.csv and renders it as fmt into out. */
static int plot_into(const char *run_dir, const char *metrics, const char *fmt,
                     ct_picture *out, ct_error *err)
{
    if (!run_dir)
        return ct_err(err, CT_ERR_USAGE, "no run directory given");
    if (ct_picture_check_format(fmt, plot_formats, err) < 0)
        return -1;
    char path[4096];
    if (in_run(run_dir, "history.csv", path, sizeof path) < 0)
        return ct_err(err, CT_ERR_USAGE, "the run directory's name is too long");
    ct_history h;
    if (ct_history_read(path, &h, err) < 0)
        return -1;
    panel panels[MAX_PANELS];
    int n = choose_panels(&h, path, metrics, panels, err);
    int status = n < 0 ? -1 : render(&h, panels, n, fmt, out, err);
    ct_history_free(&h);
    return status;
}

int ct_plot_history_mem(const char *run_dir, const char *metrics, const char *format,
                        unsigned char **data, size_t *size, ct_error *err)
{
    ct_picture pic = {0};
    *data = NULL;
    *size = 0;
    if (plot_into(run_dir, metrics, format, &pic, err) < 0) {
        ct_picture_free(&pic);
        return -1;
    }
    *data = pic.data;
    *size = pic.size;
    return 0;
}

int ct_plot_history(const char *run_dir, const char *metrics, const char *out_path,
                    ct_error *err)
{
    char fmt[8], def[4096];
    if (!out_path) {
        if (!run_dir)
            return ct_err(err, CT_ERR_USAGE, "no run directory given");
        if (in_run(run_dir, "history.png", def, sizeof def) < 0)
            return ct_err(err, CT_ERR_USAGE, "the run directory's name is too long");
        out_path = def;
    }
    if (ct_picture_format_of(out_path, plot_formats, fmt, sizeof fmt, err) < 0)
        return -1;
    ct_picture pic = {0};
    int status = plot_into(run_dir, metrics, fmt, &pic, err);
    if (status == 0)
        status = ct_picture_write(out_path, pic.data, pic.size, err);
    ct_picture_free(&pic);
    return status;
}
