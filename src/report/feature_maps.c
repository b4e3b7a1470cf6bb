/* feature_maps.c - drawing ct_figure (feature_maps.h) with cairo. */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "feature_maps.h"
#include "guard.h"

#define MARGIN 16.0
#define GAP 6.0          /* between tiles */
#define LABEL_H 13.0     /* room for a channel index under a tile */
#define CAPTION_H 20.0   /* room for a grid's caption above it */
#define TITLE_SIZE 16.0
#define TEXT_SIZE 12.0
#define LABEL_SIZE 10.0
#define MAX_WIDTH 1400.0 /* a grid wraps to rows before it is wider than this */

typedef struct geometry {
    double scale;        /* screen pixels per value */
    double tw, th;       /* a tile */
    int64_t tiles, cols, rows;
    double width, height; /* the grid with its caption */
} geometry;

/* A tile's scale: a whole number when enlarging, so every value becomes a square of the
 * same size; a fraction when the map is too big to enlarge. */
static double tile_scale(int64_t h, int64_t w, int target)
{
    double side = (double)(h > w ? h : w), s = target / side;
    return s >= 1 ? floor(s) : s;
}

static double text_width(cairo_t *cr, const char *text, double size)
{
    cairo_text_extents_t e;
    cairo_set_font_size(cr, size);
    cairo_text_extents(cr, text, &e);
    return e.x_advance;
}

static geometry measure(cairo_t *cr, const ct_tile_grid *g)
{
    geometry m;
    m.scale = tile_scale(g->h, g->w, g->target);
    m.tw = ceil((double)g->w * m.scale);
    m.th = ceil((double)g->h * m.scale);
    m.tiles = g->colour == CT_TILE_RGB ? 1 : g->shown;
    /* About square, but at least eight across, and never wider than MAX_WIDTH. */
    int64_t cols = (int64_t)ceil(sqrt((double)m.tiles));
    if (cols < 8)
        cols = 8;
    int64_t fit = (int64_t)((MAX_WIDTH + GAP) / (m.tw + GAP));
    if (cols > fit)
        cols = fit > 0 ? fit : 1;
    if (cols > m.tiles)
        cols = m.tiles > 0 ? m.tiles : 1;
    m.cols = cols;
    m.rows = (m.tiles + cols - 1) / cols;
    double grid_w = (double)cols * (m.tw + GAP) - GAP;
    double caption_w = g->caption ? text_width(cr, g->caption, TEXT_SIZE) : 0;
    m.width = grid_w > caption_w ? grid_w : caption_w;
    m.height = CAPTION_H + (double)m.rows * (m.th + GAP + (g->labels ? LABEL_H : 0));
    return m;
}

static uint32_t rgb(double r, double g, double b)
{
    return (uint32_t)lround(r * 255) << 16 | (uint32_t)lround(g * 255) << 8 |
           (uint32_t)lround(b * 255);
}

/* Blue (negative) through white to red (positive), t in [-1, 1]. */
static uint32_t diverging(double t)
{
    static const double neg[3] = {0.129, 0.400, 0.675}, pos[3] = {0.698, 0.094, 0.169};
    const double *e = t < 0 ? neg : pos;
    double a = fabs(t) > 1 ? 1 : fabs(t);
    return rgb(1 - a + a * e[0], 1 - a + a * e[1], 1 - a + a * e[2]);
}

/* The finite range of channels [k0, k1) of g; lo = hi = 0 when none is finite. */
static void range_of(const ct_tile_grid *g, int64_t k0, int64_t k1, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int64_t p = 0; p < g->h * g->w; p++)
        for (int64_t k = k0; k < k1; k++) {
            double v = g->v[p * g->n + k];
            if (isfinite(v)) {
                *lo = v < *lo ? v : *lo;
                *hi = v > *hi ? v : *hi;
            }
        }
    if (*lo > *hi)
        *lo = *hi = 0;
}

/* 0..1 within [lo, hi]; a constant tile (a channel a ReLU keeps at 0) is black. */
static double unit(double v, double lo, double hi)
{
    if (!isfinite(v) || hi <= lo)
        return 0;
    double u = (v - lo) / (hi - lo);
    return u < 0 ? 0 : u > 1 ? 1 : u;
}

/* Tile k of g at its own resolution, into an RGB24 image surface. */
static cairo_surface_t *tile_image(const ct_tile_grid *g, int64_t k, double shared)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)g->w, (int)g->h);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS)
        return s;
    cairo_surface_flush(s);
    unsigned char *data = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    double lo = 0, hi = 0;
    if (g->colour == CT_TILE_GREY)
        range_of(g, k, k + 1, &lo, &hi);
    else if (g->colour == CT_TILE_RGB)
        range_of(g, 0, 3, &lo, &hi);
    for (int64_t y = 0; y < g->h; y++) {
        uint32_t *row = (uint32_t *)(data + y * stride);
        for (int64_t x = 0; x < g->w; x++) {
            const float *p = g->v + (y * g->w + x) * g->n;
            if (g->colour == CT_TILE_GREY) {
                double u = unit(p[k], lo, hi);
                row[x] = rgb(u, u, u);
            } else if (g->colour == CT_TILE_RGB) {
                row[x] = rgb(unit(p[0], lo, hi), unit(p[1], lo, hi), unit(p[2], lo, hi));
            } else {
                row[x] = diverging(shared > 0 && isfinite(p[k]) ? p[k] / shared : 0);
            }
        }
    }
    cairo_surface_mark_dirty(s);
    return s;
}

static void draw_text(cairo_t *cr, double x, double y, double size, const char *text,
                      bool centred)
{
    cairo_set_font_size(cr, size);
    if (centred)
        x -= text_width(cr, text, size) / 2;
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, text);
}

/* Draws g with its top left corner at (x0, y0). Returns cairo's status. */
static cairo_status_t draw_grid(cairo_t *cr, const ct_tile_grid *g, const geometry *m,
                                double x0, double y0)
{
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    if (g->caption)
        draw_text(cr, x0, y0 + TEXT_SIZE + 2, TEXT_SIZE, g->caption, false);
    double shared = 0, lo, hi;
    if (g->colour == CT_TILE_DIVERGING) {
        range_of(g, 0, g->shown, &lo, &hi);
        shared = fmax(fabs(lo), fabs(hi));
    }
    double cell_h = m->th + GAP + (g->labels ? LABEL_H : 0);
    for (int64_t k = 0; k < m->tiles; k++) {
        double x = x0 + (double)(k % m->cols) * (m->tw + GAP);
        double y = y0 + CAPTION_H + (double)(k / m->cols) * cell_h;
        cairo_surface_t *img = tile_image(g, k, shared);
        cairo_status_t st = cairo_surface_status(img);
        if (st != CAIRO_STATUS_SUCCESS) {
            cairo_surface_destroy(img);
            return st;
        }
        cairo_save(cr);
        cairo_rectangle(cr, x, y, m->tw, m->th);
        cairo_clip(cr);
        cairo_translate(cr, x, y);
        cairo_scale(cr, m->scale, m->scale);
        cairo_set_source_surface(cr, img, 0, 0);
        cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
        cairo_paint(cr);
        cairo_restore(cr);
        cairo_surface_destroy(img);
        cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
        cairo_set_line_width(cr, 1);
        cairo_rectangle(cr, x - 0.5, y - 0.5, m->tw + 1, m->th + 1);
        cairo_stroke(cr);
        if (g->labels) {
            char label[24];
            snprintf(label, sizeof label, "%lld", (long long)k);
            cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
            draw_text(cr, x + m->tw / 2, y + m->th + LABEL_H - 2, LABEL_SIZE, label, true);
        }
    }
    return cairo_status(cr);
}

/* The layout: title lines, the side grids in a row, the grids below in a column. */
typedef struct layout {
    geometry side[CT_FIGURE_GRIDS], below[CT_FIGURE_GRIDS];
    double width, height, side_h;
} layout;

static void lay_out(cairo_t *cr, const ct_figure *f, layout *l)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    double w = f->title ? text_width(cr, f->title, TITLE_SIZE) : 0;
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    if (f->subtitle && text_width(cr, f->subtitle, TEXT_SIZE) > w)
        w = text_width(cr, f->subtitle, TEXT_SIZE);
    double row_w = 0;
    l->side_h = 0;
    for (int i = 0; i < f->nside; i++) {
        l->side[i] = measure(cr, &f->side[i]);
        row_w += l->side[i].width + (i ? 3 * GAP : 0);
        l->side_h = fmax(l->side_h, l->side[i].height);
    }
    w = fmax(w, row_w);
    double h = MARGIN + TITLE_SIZE + 6 + TEXT_SIZE + 10 + l->side_h;
    for (int i = 0; i < f->nbelow; i++) {
        l->below[i] = measure(cr, &f->below[i]);
        w = fmax(w, l->below[i].width);
        h += 8 + l->below[i].height;
    }
    l->width = ceil(w + 2 * MARGIN);
    l->height = ceil(h + MARGIN);
}

static cairo_status_t draw(cairo_t *cr, const ct_figure *f, const layout *l)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    double y = MARGIN + TITLE_SIZE;
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    if (f->title)
        draw_text(cr, MARGIN, y, TITLE_SIZE, f->title, false);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    y += 6 + TEXT_SIZE;
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    if (f->subtitle)
        draw_text(cr, MARGIN, y, TEXT_SIZE, f->subtitle, false);
    y += 10;
    cairo_status_t st = CAIRO_STATUS_SUCCESS;
    double x = MARGIN;
    for (int i = 0; i < f->nside && st == CAIRO_STATUS_SUCCESS; i++) {
        st = draw_grid(cr, &f->side[i], &l->side[i], x, y);
        x += l->side[i].width + 3 * GAP;
    }
    y += l->side_h;
    for (int i = 0; i < f->nbelow && st == CAIRO_STATUS_SUCCESS; i++) {
        y += 8;
        st = draw_grid(cr, &f->below[i], &l->below[i], MARGIN, y);
        y += l->below[i].height;
    }
    return st;
}

/* Cairo's surfaces stop at 32767 pixels a side. */
#define MAX_SIDE 32767.0

int ct_figure_write_png(const ct_figure *f, const char *path, ct_error *err)
{
    cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *cr = cairo_create(probe);
    layout l;
    lay_out(cr, f, &l);
    cairo_destroy(cr);
    cairo_surface_destroy(probe);
    if (l.width > MAX_SIDE || l.height > MAX_SIDE)
        return ct_err(err, CT_ERR_USAGE, "%s: the picture would be %.0f x %.0f pixels, more "
                      "than a PNG drawn here can hold", path, l.width, l.height);
    if (ct_check_replaceable(path, err) < 0)
        return -1;
    cairo_surface_t *s =
        cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)l.width, (int)l.height);
    cr = cairo_create(s);
    cairo_status_t st = cairo_status(cr);
    if (st == CAIRO_STATUS_SUCCESS)
        st = draw(cr, f, &l);
    cairo_destroy(cr);
    if (st != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return ct_err(err, st == CAIRO_STATUS_NO_MEMORY ? CT_ERR_NOMEM : CT_ERR_INTERNAL,
                      "drawing %s failed: %s", path, cairo_status_to_string(st));
    }
    char *tmp = ct_temp_beside(path, err);
    int rc = -1;
    if (tmp) {
        st = cairo_surface_write_to_png(s, tmp);
        if (st != CAIRO_STATUS_SUCCESS)
            ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, cairo_status_to_string(st));
        else
            rc = ct_commit_temp(tmp, path, err);
        if (rc < 0)
            unlink(tmp);
        free(tmp);
    }
    cairo_surface_destroy(s);
    return rc;
}
