/* text.h - name suggestions and number formatting, shared by the library and the command
 * line (which builds its own copy of text.c: these are not part of libctrain's API).
 * Nothing here allocates; results point into the caller's arguments or buffers. */
#ifndef CT_TEXT_H
#define CT_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The closest of candidates (NULL-terminated) to s by edit distance, if close enough. */
const char *ct_suggest(const char *s, const char *const *candidates);

/* Whether two names meet when letter case and underscores are left out, so that
 * "leaky_relu", "LeakyReLU" and "ADAM" / "adam" match: how config names of layer types,
 * optimizers, losses and metrics are compared. */
bool ct_name_matches(const char *given, const char *name);

/* Keras's number format into buf (n bytes): %.4e below 1e-3 in magnitude (but not 0),
 * else %.4f. */
void ct_format_value(double v, char *buf, size_t n);

#endif
