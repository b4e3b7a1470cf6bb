/* text_scan.c - one reading of a text file for ct_data_import_text: blocks, UTF-8,
 * characters or words, and lines of text,label. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard.h"
#include "text_import.h"

static int bad_utf8(ct_text_job *j, int64_t at, const char *why)
{
    return ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": invalid UTF-8 at byte offset %" PRId64
                  "%s; is this a UTF-8 text file?", j->path, j->line, at, why);
}

static bool is_word_char(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '\'';
}

/* ASCII white space and Unicode's space separators. */
static bool is_space(uint32_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static int flush_word(ct_text_job *j)
{
    if (!j->wlen && !j->wlong)
        return 0;
    int rc = ct_text_token(j, j->wlong ? NULL : j->word, j->wlen);
    j->wlen = 0;
    j->wlong = false;
    return rc;
}

/* One character of text: a token itself, or part of a word. */
static int tokenize(ct_text_job *j, uint32_t cp, const char *bytes, size_t n)
{
    if (j->opt->level == CT_TEXT_CHAR)
        return ct_text_token(j, bytes, n);
    if (is_word_char(cp)) {
        if (j->wlen == CT_TEXT_WORD_MAX)
            j->wlong = true;
        else
            j->word[j->wlen++] = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        return 0;
    }
    if (flush_word(j) < 0)
        return -1;
    return is_space(cp) ? 0 : ct_text_token(j, bytes, n);
}

/* The length and code point of the (already checked) UTF-8 character at s. */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    uint32_t c = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++)
        c = c << 6 | (s[i] & 0x3F);
    *cp = c;
    return n;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_space((unsigned char)s[i]))
            return false;
    return true;
}

/* The label after the last comma, trimmed, into [*label, *label + *n). */
static int split_line(ct_text_job *j, const char *s, size_t n, const char **label, size_t *len)
{
    const char *comma = memrchr(s, ',', n), *e = s + n;
    if (!comma)
        return ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": expected text,label: the line has "
                      "no comma", j->path, j->line);
    const char *b = comma + 1;
    while (b < e && is_space((unsigned char)*b))
        b++;
    while (e > b && is_space((unsigned char)e[-1]))
        e--;
    if (b == e)
        return ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": the label after the last comma is "
                      "empty", j->path, j->line);
    if (e - b > CT_TEXT_LABEL_MAX)
        return ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": the label is longer than %d bytes",
                      j->path, j->line, CT_TEXT_LABEL_MAX);
    *label = b;
    *len = (size_t)(e - b);
    return (int)(comma - s);
}

/* A whole line of text,label. */
static int end_line(ct_text_job *j)
{
    const char *s = j->lbuf, *label = NULL;
    size_t n = j->llen, len = 0;
    j->llen = 0;
    if (n && s[n - 1] == '\r')
        n--;
    if ((j->opt->header && j->line == 1) || blank(s, n))
        return 0;
    int text = split_line(j, s, n, &label, &len);
    int32_t id = 0;
    if (text < 0 || ct_text_label(j, label, len, &id) < 0 || ct_text_row_begin(j) < 0)
        return -1;
    for (int at = 0; at < text;) {
        uint32_t cp;
        size_t k = utf8_next((const unsigned char *)s + at, &cp);
        if (tokenize(j, cp, s + at, k) < 0)
            return -1;
        at += (int)k;
    }
    if (flush_word(j) < 0 || ct_text_row_end(j, id) < 0)
        return -1;
    j->rows++;
    return 0;
}

/* A decoded character, in the text or in a line to be split. */
static int put_char(ct_text_job *j, uint32_t cp, const char *bytes, size_t n)
{
    if (cp == 0xFEFF && j->seq_off == 0)
        return 0;   /* a byte-order mark says nothing */
    int rc = 0;
    if (!j->opt->labels)
        rc = tokenize(j, cp, bytes, n);
    else if (cp == '\n')
        rc = end_line(j);
    else if (j->llen + n > CT_CSV_LINE_MAX)
        rc = ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": the line is longer than %u bytes; "
                    "is this a CSV file?", j->path, j->line, CT_CSV_LINE_MAX);
    else {
        if (j->llen + n > j->lcap) {
            size_t cap = j->lcap ? j->lcap * 2 : 4096;
            char *p = realloc(j->lbuf, cap);
            if (!p)
                return ct_err(j->err, CT_ERR_NOMEM, "%s: out of memory", j->path);
            j->lbuf = p;
            j->lcap = cap;
        }
        memcpy(j->lbuf + j->llen, bytes, n);
        j->llen += n;
    }
    if (cp == '\n')
        j->line++;
    return rc;
}

/* The length of a character from its first byte (0: not a first byte), and the least
 * code point of that length (shorter forms of the same point are invalid). */
static int utf8_lead(unsigned char b, uint32_t *least)
{
    int n = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    *least = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    return n;
}

static int put_byte(ct_text_job *j, unsigned char b)
{
    if (b == 0)
        return ct_err(j->err, CT_ERR_DATA, "%s:%" PRId64 ": a NUL byte at byte offset %" PRId64
                      "; this is not a text file", j->path, j->line, j->offset);
    if (j->need == 0 && b < 0x80) {
        j->seq_off = j->offset;
        char c = (char)b;
        return put_char(j, b, &c, 1);
    }
    if (j->need == 0) {
        uint32_t least;
        if (!(j->need = utf8_lead(b, &least)))
            return bad_utf8(j, j->offset, "");
        j->have = 1;
        j->seq_off = j->offset;
        j->seq_bytes[0] = (char)b;
        j->cp = b & (0x7Fu >> j->need);
        return 0;
    }
    if ((b & 0xC0) != 0x80)
        return bad_utf8(j, j->seq_off, "");
    j->seq_bytes[j->have++] = (char)b;
    j->cp = j->cp << 6 | (b & 0x3F);
    if (j->have < j->need)
        return 0;
    uint32_t least;
    utf8_lead((unsigned char)j->seq_bytes[0], &least);
    int n = j->need;
    j->need = 0;
    if (j->cp < least || (j->cp >= 0xD800 && j->cp <= 0xDFFF) || j->cp > 0x10FFFF)
        return bad_utf8(j, j->seq_off, "");
    return put_char(j, j->cp, j->seq_bytes, (size_t)n);
}

static int read_block(ct_text_job *j, ssize_t *got)
{
    do
        *got = read(j->fd, j->block, CT_TEXT_BLOCK);
    while (*got < 0 && errno == EINTR);
    if (*got < 0)
        return ct_err(j->err, CT_ERR_IO, "reading %s failed: %s", j->path, strerror(errno));
    return 0;
}

/* The end of the file: a character cut short, the last word or line. */
static int scan_end(ct_text_job *j)
{
    if (j->need)
        return bad_utf8(j, j->seq_off, " (the file ends inside a character)");
    if (!j->opt->labels)
        return flush_word(j);
    return j->llen ? end_line(j) : 0;
}

int ct_text_scan(ct_text_job *j)
{
    j->offset = j->tokens = j->rows = j->llen = j->wlen = 0;
    j->line = 1;
    j->need = 0;
    j->wlong = false;
    if (lseek(j->fd, 0, SEEK_SET) < 0)
        return ct_err(j->err, CT_ERR_IO, "reading %s failed: %s", j->path, strerror(errno));
    /* The two readings make up the phase: the second counts from the middle on. */
    int64_t base = j->counting ? 0 : j->size, total = 2 * j->size;
    for (;;) {
        if (ct_stop_due(j->started)) {
            char what[4300];
            snprintf(what, sizeof what, "importing %s (line %" PRId64 ")", j->path, j->line);
            return ct_stop_error(j->err, what);
        }
        ssize_t got;
        if (read_block(j, &got) < 0)
            return -1;
        if (got == 0)
            break;
        for (ssize_t i = 0; i < got; i++, j->offset++)
            if (put_byte(j, j->block[i]) < 0)
                return -1;
        /* done == total is said once, by the caller, when the import has succeeded */
        int64_t done = base + j->offset;
        ct_phase_progress(j->started, j->what, done < total ? done : total - 1, total, "bytes");
    }
    return scan_end(j);
}
