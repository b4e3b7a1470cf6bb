/* html.c - escaped text and inlined pictures (see html.h). */
#include <cairo.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"

void ct_html_text(FILE *out, const char *text)
{
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&#39;", out); break;
        default: fputc(*c, out);
        }
    }
}

void ct_html_base64(FILE *out, const unsigned char *data, size_t n)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < n)
            v |= data[i + 2];
        fputc(digits[v >> 18 & 63], out);
        fputc(digits[v >> 12 & 63], out);
        fputc(i + 1 < n ? digits[v >> 6 & 63] : '=', out);
        fputc(i + 2 < n ? digits[v & 63] : '=', out);
    }
}

typedef struct png_buffer {
    unsigned char *data;
    size_t size, cap;
} png_buffer;

static cairo_status_t append(void *closure, const unsigned char *data, unsigned int n)
{
    png_buffer *b = closure;
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        while (cap < b->size + n)
            cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p)
            return CAIRO_STATUS_NO_MEMORY;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->size, data, n);
    b->size += n;
    return CAIRO_STATUS_SUCCESS;
}

/* The image's pixels into surface s, zoomed, stretched to lo..hi. */
static void paint(cairo_surface_t *s, const float *px, int64_t h, int64_t w, int64_t c,
                  int zoom)
{
    float lo = px[0], hi = px[0];
    for (int64_t i = 1; i < h * w * c; i++) {
        lo = px[i] < lo ? px[i] : lo;
        hi = px[i] > hi ? px[i] : hi;
    }
    float span = hi > lo ? hi - lo : 1.0f;
    unsigned char *row0 = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    for (int64_t y = 0; y < h * zoom; y++) {
        uint32_t *row = (uint32_t *)(row0 + y * stride);
        for (int64_t x = 0; x < w * zoom; x++) {
            const float *p = px + ((y / zoom) * w + x / zoom) * c;
            uint32_t v[3];
            for (int k = 0; k < 3; k++)
                v[k] = (uint32_t)(255.0f * (p[c == 3 ? k : 0] - lo) / span + 0.5f);
            row[x] = 0xff000000u | v[0] << 16 | v[1] << 8 | v[2];
        }
    }
    cairo_surface_mark_dirty(s);
}

int ct_html_image(FILE *out, const float *pixels, int64_t h, int64_t w, int64_t c, int zoom,
                  const char *alt, ct_error *err)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)(w * zoom),
                                                    (int)(h * zoom));
    png_buffer b = {0};
    cairo_status_t st = cairo_surface_status(s);
    if (st == CAIRO_STATUS_SUCCESS) {
        cairo_surface_flush(s);
        paint(s, pixels, h, w, c, zoom);
        st = cairo_surface_write_to_png_stream(s, append, &b);
    }
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS) {
        free(b.data);
        return ct_err(err, CT_ERR_IO, "cannot draw a %lldx%lld image: %s", (long long)h,
                      (long long)w, cairo_status_to_string(st));
    }
    fprintf(out, "<img width=\"%lld\" height=\"%lld\" alt=\"", (long long)(w * zoom),
            (long long)(h * zoom));
    ct_html_text(out, alt);
    fputs("\" src=\"data:image/png;base64,", out);
    ct_html_base64(out, b.data, b.size);
    fputs("\">", out);
    free(b.data);
    return 0;
}
