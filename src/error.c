/* error.c - error values carried up to the CLI. */
#include <stdarg.h>
#include <string.h>

#include "ctrain.h"

int ct_err(ct_error *err, ct_error_code code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int ct_err_prefix(ct_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t p = strlen(prefix), room = sizeof err->msg - 1;
    if (p + 2 >= room)
        return -1;
    /* Shift the message right and put "prefix: " in front; a too-long tail is cut. */
    size_t keep = strnlen(err->msg, room);
    if (keep > room - p - 2)
        keep = room - p - 2;
    memmove(err->msg + p + 2, err->msg, keep);
    err->msg[p + 2 + keep] = 0;
    memcpy(err->msg, prefix, p);
    err->msg[p] = ':';
    err->msg[p + 1] = ' ';
    return -1;
}

const char *ct_version(void) { return PACKAGE_VERSION; }
