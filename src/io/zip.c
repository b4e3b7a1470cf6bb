/* zip.c - writing and reading the zip archives of Keras 3 (.keras files): see zip.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "guard.h"
#include "zip.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define LOCAL_SIZE 30
#define CENTRAL_SIZE 46
#define END_SIZE 22
#define MAX_ARCHIVE ((size_t)2 << 30)   /* bytes read into memory */
#define MAX_ENTRY ((size_t)2 << 30)     /* bytes of one extracted entry */
/* 1980-01-01 00:00, as Python's zipfile dates entries written from memory: the same
 * model gives the same archive. */
#define DOS_DATE 0x21
#define DOS_TIME 0

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static unsigned get16(const unsigned char *p) { return p[0] | (unsigned)p[1] << 8; }

static uint32_t get32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- writing ---- */

typedef struct packed {
    const unsigned char *data;   /* what goes into the archive */
    unsigned char *owned;        /* deflated bytes, freed after writing */
    uint32_t csize, crc;
    unsigned method;
    uint32_t offset;
} packed;

/* Raw deflate (no zlib header), as zip's method 8 wants. */
static int deflate_entry(const ct_zip_entry *e, packed *p, ct_error *err)
{
    uLong cap = compressBound((uLong)e->len) + 64;
    z_stream s = {0};
    p->owned = malloc(cap);
    if (!p->owned)
        return ct_err(err, CT_ERR_NOMEM, "out of memory compressing '%s'", e->name);
    if (deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return ct_err(err, CT_ERR_INTERNAL, "zlib's deflate could not start");
    s.next_in = (Bytef *)e->data;
    s.avail_in = (uInt)e->len;
    s.next_out = p->owned;
    s.avail_out = (uInt)cap;
    int rc = deflate(&s, Z_FINISH);
    p->csize = (uint32_t)s.total_out;
    deflateEnd(&s);
    if (rc != Z_STREAM_END)
        return ct_err(err, CT_ERR_INTERNAL, "zlib's deflate failed on '%s'", e->name);
    p->data = p->owned;
    p->method = 8;
    return 0;
}

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

static int write_entries(FILE *f, const ct_zip_entry *entries, packed *pk, int n)
{
    uint32_t at = 0;
    for (int i = 0; i < n; i++) {
        unsigned char h[LOCAL_SIZE];
        size_t nlen = strlen(entries[i].name);
        put32(h, SIG_LOCAL);
        put16(h + 4, 20);
        put16(h + 6, 0x0800);      /* names are UTF-8 */
        put16(h + 8, pk[i].method);
        put16(h + 10, DOS_TIME);
        put16(h + 12, DOS_DATE);
        put32(h + 14, pk[i].crc);
        put32(h + 18, pk[i].csize);
        put32(h + 22, (uint32_t)entries[i].len);
        put16(h + 26, (unsigned)nlen);
        put16(h + 28, 0);
        pk[i].offset = at;
        if (write_all(f, h, sizeof h) < 0 || write_all(f, entries[i].name, nlen) < 0 ||
            write_all(f, pk[i].data, pk[i].csize) < 0)
            return -1;
        at += (uint32_t)(LOCAL_SIZE + nlen + pk[i].csize);
    }
    uint32_t cd_start = at;
    for (int i = 0; i < n; i++) {
        unsigned char h[CENTRAL_SIZE];
        size_t nlen = strlen(entries[i].name);
        put32(h, SIG_CENTRAL);
        put16(h + 4, 0x0314);      /* made by: Unix, zip 2.0 */
        put16(h + 6, 20);
        put16(h + 8, 0x0800);
        put16(h + 10, pk[i].method);
        put16(h + 12, DOS_TIME);
        put16(h + 14, DOS_DATE);
        put32(h + 16, pk[i].crc);
        put32(h + 20, pk[i].csize);
        put32(h + 24, (uint32_t)entries[i].len);
        put16(h + 28, (unsigned)nlen);
        put16(h + 30, 0);
        put16(h + 32, 0);
        put16(h + 34, 0);
        put16(h + 36, 0);
        put32(h + 38, (uint32_t)0100644 << 16); /* a regular file, rw-r--r-- */
        put32(h + 42, pk[i].offset);
        if (write_all(f, h, sizeof h) < 0 || write_all(f, entries[i].name, nlen) < 0)
            return -1;
        at += (uint32_t)(CENTRAL_SIZE + nlen);
    }
    unsigned char e[END_SIZE] = {0};
    put32(e, SIG_END);
    put16(e + 8, (unsigned)n);
    put16(e + 10, (unsigned)n);
    put32(e + 12, at - cd_start);
    put32(e + 16, cd_start);
    return write_all(f, e, sizeof e);
}

int ct_zip_write(const char *path, const ct_zip_entry *entries, int n, ct_error *err)
{
    if (n < 0 || n > 0xffff)
        return ct_err(err, CT_ERR_INTERNAL, "%s: %d zip entries", path, n);
    uint64_t total = END_SIZE;
    for (int i = 0; i < n; i++) {
        size_t nlen = strlen(entries[i].name);
        if (nlen == 0 || nlen > 0xffff || entries[i].len > 0xfffffff0u)
            return ct_err(err, CT_ERR_DATA, "%s: zip entry '%s' is too large (ZIP64 is not "
                          "written)", path, entries[i].name);
        total += LOCAL_SIZE + CENTRAL_SIZE + 2 * nlen + entries[i].len + entries[i].len / 1000 + 64;
    }
    if (total > 0xfffffff0u)
        return ct_err(err, CT_ERR_DATA, "%s: the archive would pass 4 GiB (ZIP64 is not "
                      "written)", path);
    packed *pk = calloc((size_t)n + 1, sizeof *pk);
    if (!pk)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        const ct_zip_entry *e = &entries[i];
        pk[i].crc = (uint32_t)crc32(crc32(0, Z_NULL, 0), e->data, (uInt)e->len);
        if (e->deflate && e->len > 0) {
            rc = deflate_entry(e, &pk[i], err);
        } else {
            pk[i].data = e->data;
            pk[i].csize = (uint32_t)e->len;
        }
    }
    char *tmp = rc == 0 ? ct_temp_beside(path, err) : NULL;
    FILE *f = NULL;
    if (rc == 0 && !tmp)
        rc = -1;
    if (rc == 0 && !(f = fopen(tmp, "wb")))
        rc = ct_err(err, CT_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (rc == 0) {
        errno = 0;
        bool ok = write_entries(f, entries, pk, n) == 0;
        int saved = errno;
        if (fclose(f) != 0 && ok) {
            ok = false;
            saved = errno;
        }
        rc = ok ? ct_commit_temp(tmp, path, err)
                : ct_err(err, CT_ERR_IO, "writing %s failed: %s", path,
                         strerror(saved ? saved : EIO));
    }
    if (rc < 0 && tmp)
        unlink(tmp);
    for (int i = 0; i < n; i++)
        free(pk[i].owned);
    free(pk);
    free(tmp);
    return rc;
}

/* ---- reading ---- */

typedef struct zentry {
    char *name;
    unsigned method;
    uint32_t crc, csize, usize;
    size_t data;                 /* offset of the entry's bytes */
} zentry;

struct ct_zip {
    char *path;
    unsigned char *buf;
    size_t len;
    zentry *e;
    int n;
};

void ct_zip_close(ct_zip *z)
{
    if (!z)
        return;
    for (int i = 0; i < z->n; i++)
        free(z->e[i].name);
    free(z->e);
    free(z->buf);
    free(z->path);
    free(z);
}

static int read_file(ct_zip *z, ct_error *err)
{
    struct stat st;
    FILE *f = fopen(z->path, "rb");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot open %s: %s", z->path, strerror(errno));
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ct_err(err, CT_ERR_DATA, "%s is not a regular file", z->path);
    }
    if ((uint64_t)st.st_size > MAX_ARCHIVE) {
        fclose(f);
        return ct_err(err, CT_ERR_DATA, "%s: zip archives over 2 GiB are not read", z->path);
    }
    z->len = (size_t)st.st_size;
    z->buf = malloc(z->len ? z->len : 1);
    bool ok = z->buf && fread(z->buf, 1, z->len, f) == z->len;
    fclose(f);
    if (!z->buf)
        return ct_err(err, CT_ERR_NOMEM, "out of memory reading %s", z->path);
    return ok ? 0 : ct_err(err, CT_ERR_IO, "reading %s failed", z->path);
}

/* The end-of-central-directory record: the last one in the file's final 64 KiB + 22. */
static long find_end(const ct_zip *z)
{
    if (z->len < END_SIZE)
        return -1;
    size_t lowest = z->len > END_SIZE + 0xffff ? z->len - END_SIZE - 0xffff : 0;
    for (size_t at = z->len - END_SIZE + 1; at-- > lowest;)
        if (get32(z->buf + at) == SIG_END && at + END_SIZE + get16(z->buf + at + 20) == z->len)
            return (long)at;
    return -1;
}

static int damaged(const ct_zip *z, ct_error *err, const char *what)
{
    return ct_err(err, CT_ERR_DATA, "%s: damaged zip archive: %s", z->path, what);
}

static int read_directory(ct_zip *z, ct_error *err)
{
    long end = find_end(z);
    if (end < 0) {
        if (z->len >= 4 && get32(z->buf) == SIG_LOCAL)
            return damaged(z, err, "no end-of-central-directory record (the file is cut short)");
        return ct_err(err, CT_ERR_DATA, "%s is not a zip archive", z->path);
    }
    const unsigned char *e = z->buf + end;
    unsigned disk = get16(e + 4), cd_disk = get16(e + 6), here = get16(e + 8), n = get16(e + 10);
    uint32_t cd_size = get32(e + 12), cd_off = get32(e + 16);
    if (n == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu)
        return ct_err(err, CT_ERR_DATA, "%s: ZIP64 archives are not read", z->path);
    if (disk != 0 || cd_disk != 0 || here != n)
        return ct_err(err, CT_ERR_DATA, "%s: multi-disk zip archives are not read", z->path);
    if ((uint64_t)cd_off + cd_size > (uint64_t)end)
        return damaged(z, err, "the central directory lies outside the file");
    z->e = calloc(n ? n : 1, sizeof *z->e);
    if (!z->e)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    size_t at = cd_off, stop = (size_t)cd_off + cd_size;
    for (unsigned i = 0; i < n; i++) {
        char what[400];
        if (stop - at < CENTRAL_SIZE || get32(z->buf + at) != SIG_CENTRAL) {
            snprintf(what, sizeof what, "central directory entry %u of %u is cut short or "
                     "has a bad signature", i + 1, n);
            return damaged(z, err, what);
        }
        const unsigned char *h = z->buf + at;
        unsigned flags = get16(h + 8), method = get16(h + 10);
        size_t nlen = get16(h + 28), xlen = get16(h + 30), clen = get16(h + 32);
        if (stop - at - CENTRAL_SIZE < nlen + xlen + clen) {
            snprintf(what, sizeof what, "central directory entry %u of %u runs past the "
                     "directory", i + 1, n);
            return damaged(z, err, what);
        }
        zentry *ze = &z->e[z->n];
        if (!(ze->name = malloc(nlen + 1)))
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        memcpy(ze->name, h + CENTRAL_SIZE, nlen);
        ze->name[nlen] = '\0';
        z->n++;
        if (strlen(ze->name) != nlen) {
            snprintf(what, sizeof what, "entry %u's name holds a NUL byte", i + 1);
            return damaged(z, err, what);
        }
        ze->method = method;
        ze->crc = get32(h + 16);
        ze->csize = get32(h + 20);
        ze->usize = get32(h + 24);
        uint32_t local = get32(h + 42);
        if (flags & 1)
            return ct_err(err, CT_ERR_DATA, "%s: entry '%s' is encrypted", z->path, ze->name);
        if (method != 0 && method != 8)
            return ct_err(err, CT_ERR_DATA, "%s: entry '%s' uses compression method %u; only "
                          "stored (0) and deflated (8) entries are read", z->path, ze->name,
                          method);
        if (ze->csize == 0xffffffffu || ze->usize == 0xffffffffu || local == 0xffffffffu)
            return ct_err(err, CT_ERR_DATA, "%s: entry '%s' needs ZIP64, which is not read",
                          z->path, ze->name);
        /* The local header repeats the name and may carry an extra field of its own. */
        if ((uint64_t)local + LOCAL_SIZE > cd_off || get32(z->buf + local) != SIG_LOCAL) {
            snprintf(what, sizeof what, "entry '%.200s' has no local header where the "
                     "directory says", ze->name);
            return damaged(z, err, what);
        }
        size_t data = (size_t)local + LOCAL_SIZE + get16(z->buf + local + 26) +
                      get16(z->buf + local + 28);
        if (data > cd_off || cd_off - data < ze->csize) {
            snprintf(what, sizeof what, "entry '%.200s' runs past the start of the central "
                     "directory", ze->name);
            return damaged(z, err, what);
        }
        ze->data = data;
        at += CENTRAL_SIZE + nlen + xlen + clen;
    }
    return 0;
}

ct_zip *ct_zip_open(const char *path, ct_error *err)
{
    ct_zip *z = calloc(1, sizeof *z);
    if (!z || !(z->path = strdup(path))) {
        free(z);
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (read_file(z, err) < 0 || read_directory(z, err) < 0) {
        ct_zip_close(z);
        return NULL;
    }
    return z;
}

int ct_zip_count(const ct_zip *z) { return z->n; }

const char *ct_zip_name(const ct_zip *z, int i) { return i >= 0 && i < z->n ? z->e[i].name : NULL; }

int ct_zip_find(const ct_zip *z, const char *name)
{
    for (int i = 0; i < z->n; i++)
        if (!strcmp(z->e[i].name, name))
            return i;
    return -1;
}

int ct_zip_extract(const ct_zip *z, int i, char **data, size_t *len, ct_error *err)
{
    *data = NULL;
    *len = 0;
    if (i < 0 || i >= z->n)
        return ct_err(err, CT_ERR_INTERNAL, "%s: no zip entry %d", z->path, i);
    const zentry *e = &z->e[i];
    if (e->usize > MAX_ENTRY)
        return ct_err(err, CT_ERR_DATA, "%s: entry '%s' is over 2 GiB", z->path, e->name);
    if (e->method == 0 && e->csize != e->usize)
        return ct_err(err, CT_ERR_DATA, "%s: damaged zip archive: stored entry '%s' declares "
                      "%u bytes but holds %u", z->path, e->name, e->usize, e->csize);
    char *out = malloc((size_t)e->usize + 1);
    if (!out)
        return ct_err(err, CT_ERR_NOMEM, "out of memory extracting '%s' from %s", e->name,
                      z->path);
    const unsigned char *in = z->buf + e->data;
    if (e->method == 0) {
        memcpy(out, in, e->usize);
    } else {
        z_stream s = {0};
        if (inflateInit2(&s, -15) != Z_OK) {
            free(out);
            return ct_err(err, CT_ERR_INTERNAL, "zlib's inflate could not start");
        }
        s.next_in = (Bytef *)in;
        s.avail_in = e->csize;
        s.next_out = (Bytef *)out;
        s.avail_out = e->usize;
        int rc = inflate(&s, Z_FINISH);
        uLong got = s.total_out;
        inflateEnd(&s);
        if (rc != Z_STREAM_END || got != e->usize) {
            free(out);
            return ct_err(err, CT_ERR_DATA, "%s: damaged zip archive: entry '%s' does not "
                          "inflate to the %u bytes it declares", z->path, e->name, e->usize);
        }
    }
    if ((uint32_t)crc32(crc32(0, Z_NULL, 0), (const Bytef *)out, e->usize) != e->crc) {
        free(out);
        return ct_err(err, CT_ERR_DATA, "%s: damaged zip archive: entry '%s' fails its CRC-32 "
                      "check", z->path, e->name);
    }
    out[e->usize] = '\0';
    *data = out;
    *len = e->usize;
    return 0;
}
