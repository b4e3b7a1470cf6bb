/* text.h - name suggestions and number formatting, shared by the library and the command
 * line (which builds its own copy of text.c: these are not part of libctrain's API).
 * Nothing here allocates; results point into the caller's arguments or buffers. */
#ifndef CT_TEXT_H
#define CT_TEXT_H

#include <stddef.h>

/* The closest of candidates (NULL-terminated) to s by edit distance, if close enough. */
const char *ct_suggest(const char *s, const char *const *candidates);

/* Keras's number format into buf (n bytes): %.4e below 1e-3 in magnitude (but not 0),
 * else %.4f. */
void ct_format_value(double v, char *buf, size_t n);

#endif
