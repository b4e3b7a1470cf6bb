/* picture.c - the memory buffer renderers write into, file formats by extension, and
 * writing a finished picture out. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard.h"
#include "picture.h"

int ct_picture_append(ct_picture *p, const void *bytes, size_t n)
{
    if (p->failed)
        return -1;
    if (n > p->cap - p->size) {
        size_t cap = p->cap ? p->cap : 16384;
        while (cap - p->size < n) {
            if (cap > ((size_t)-1) / 2) {
                p->failed = true;
                return -1;
            }
            cap *= 2;
        }
        unsigned char *more = realloc(p->data, cap);
        if (!more) {
            p->failed = true;
            return -1;
        }
        p->data = more;
        p->cap = cap;
    }
    memcpy(p->data + p->size, bytes, n);
    p->size += n;
    return 0;
}

void ct_picture_free(ct_picture *p)
{
    free(p->data);
    memset(p, 0, sizeof *p);
}

/* "svg, png or pdf" */
static void list_formats(const char *const *allowed, char *buf, size_t n)
{
    size_t at = 0, count = 0;
    while (allowed[count])
        count++;
    buf[0] = 0;
    for (size_t i = 0; i < count && at < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
        at += (size_t)snprintf(buf + at, n - at, "%s.%s", sep, allowed[i]);
    }
}

int ct_picture_check_format(const char *fmt, const char *const *allowed, ct_error *err)
{
    for (int i = 0; allowed[i]; i++)
        if (fmt && strcmp(fmt, allowed[i]) == 0)
            return 0;
    char list[128];
    list_formats(allowed, list, sizeof list);
    return ct_err(err, CT_ERR_USAGE, "unknown picture format '%.40s' (use %s)",
                  fmt ? fmt : "(none)", list);
}

int ct_picture_format_of(const char *path, const char *const *allowed, char *fmt, size_t n,
                         ct_error *err)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    char list[128];
    list_formats(allowed, list, sizeof list);
    if (!dot || !dot[1] || strlen(dot + 1) >= n)
        return ct_err(err, CT_ERR_USAGE, "%s: the file name must end in %s to say the "
                      "picture's format", path, list);
    size_t i = 0;
    for (const char *c = dot + 1; *c; c++)
        fmt[i++] = (char)tolower((unsigned char)*c);
    fmt[i] = 0;
    for (int k = 0; allowed[k]; k++)
        if (strcmp(fmt, allowed[k]) == 0)
            return 0;
    return ct_err(err, CT_ERR_USAGE, "%s: unknown picture format '%s' (use %s)", path, dot,
                  list);
}

int ct_picture_write(const char *path, const unsigned char *data, size_t size, ct_error *err)
{
    if (ct_check_replaceable(path, err) < 0)
        return -1;
    char *tmp = ct_temp_beside(path, err);
    if (!tmp)
        return -1;
    FILE *f = fopen(tmp, "wb");
    int bad = !f, saved = errno;
    if (f) {
        bad = fwrite(data, 1, size, f) != size;
        saved = errno;
        if (fclose(f) != 0 && !bad) {
            bad = 1;
            saved = errno;
        }
    }
    int status = bad ? ct_err(err, CT_ERR_IO, "writing %s failed: %s", path, strerror(saved))
                     : ct_commit_temp(tmp, path, err);
    if (status < 0)
        unlink(tmp);
    free(tmp);
    return status;
}
