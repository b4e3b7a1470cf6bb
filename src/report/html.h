/* html.h - writing a self-contained HTML page: escaped text, and pictures inlined as
 * base64 data URIs (no file beside the page, nothing fetched from a network).
 * Internal to the library. Every function writes to a caller's stream and owns nothing. */
#ifndef CT_HTML_H
#define CT_HTML_H

#include <stdint.h>
#include <stdio.h>

#include "ctrain.h"

/* text with &, <, >, " and ' written as entities. */
void ct_html_text(FILE *out, const char *text);
/* n bytes of data as base64. */
void ct_html_base64(FILE *out, const unsigned char *data, size_t n);
/* An <img> of an h x w image with c channels (1 grey, 3 rgb), floats stretched from their
 * own minimum and maximum to black and white, each pixel drawn as zoom x zoom. alt is
 * its text for readers that show none. Returns 0, or -1 when cairo fails. */
int ct_html_image(FILE *out, const float *pixels, int64_t h, int64_t w, int64_t c, int zoom,
                  const char *alt, ct_error *err);

#endif
