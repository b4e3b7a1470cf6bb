/* tfevents.c - TensorFlow event files (see tfevents.h). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tensorboard.pb-c.h"
#include "tfevents.h"

/* crc_table[b]: the CRC32C of byte b, for the byte-at-a-time loop. */
static const uint32_t crc_table[256] = {
    0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c,
    0x26a1e7e8, 0xd4ca64eb, 0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b,
    0x4d43cfd0, 0xbf284cd3, 0xac78bf27, 0x5e133c24, 0x105ec76f, 0xe235446c,
    0xf165b798, 0x030e349b, 0xd7c45070, 0x25afd373, 0x36ff2087, 0xc494a384,
    0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54, 0x5d1d08bf, 0xaf768bbc,
    0xbc267848, 0x4e4dfb4b, 0x20bd8ede, 0xd2d60ddd, 0xc186fe29, 0x33ed7d2a,
    0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35, 0xaa64d611, 0x580f5512,
    0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa,
    0x30e349b1, 0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad,
    0x1642ae59, 0xe4292d5a, 0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a,
    0x7da08661, 0x8fcb0562, 0x9c9bf696, 0x6ef07595, 0x417b1dbc, 0xb3109ebf,
    0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0, 0x67dafa54, 0x95b17957,
    0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c, 0xfe53516f,
    0xed03a29b, 0x1f682198, 0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927,
    0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38, 0xdbfc821c, 0x2997011f,
    0x3ac7f2eb, 0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7,
    0x61c69362, 0x93ad1061, 0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e,
    0x4767748a, 0xb50cf789, 0xeb1fcbad, 0x197448ae, 0x0a24bb5a, 0xf84f3859,
    0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46, 0x7198540d, 0x83f3d70e,
    0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5, 0xa55230e6,
    0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de,
    0xdde0eb2a, 0x2f8b6829, 0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c,
    0x456cac67, 0xb7072f64, 0xa457dc90, 0x563c5f93, 0x082f63b7, 0xfa44e0b4,
    0xe9141340, 0x1b7f9043, 0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c,
    0x92a8fc17, 0x60c37f14, 0x73938ce0, 0x81f80fe3, 0x55326b08, 0xa759e80b,
    0xb4091bff, 0x466298fc, 0x1871a4d8, 0xea1a27db, 0xf94ad42f, 0x0b21572c,
    0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033, 0xa24bb5a6, 0x502036a5,
    0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
    0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975,
    0x0e330a81, 0xfc588982, 0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d,
    0x758fe5d6, 0x87e466d5, 0x94b49521, 0x66df1622, 0x38cc2a06, 0xcaa7a905,
    0xd9f75af1, 0x2b9cd9f2, 0xff56bd19, 0x0d3d3e1a, 0x1e6dcdee, 0xec064eed,
    0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530, 0x0417b1db, 0xf67c32d8,
    0xe52cc12c, 0x1747422f, 0x49547e0b, 0xbb3ffd08, 0xa86f0efc, 0x5a048dff,
    0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0, 0xd3d3e1ab, 0x21b862a8,
    0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540,
    0x590ab964, 0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78,
    0x7fab5e8c, 0x8dc0dd8f, 0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee,
    0x24aa3f05, 0xd6c1bc06, 0xc5914ff2, 0x37faccf1, 0x69e9f0d5, 0x9b8273d6,
    0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9, 0x4f48173d, 0xbd23943e,
    0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a, 0xc69f7b69,
    0xd5cf889d, 0x27a40b9e, 0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e,
    0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

uint32_t ct_crc32c(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

uint32_t ct_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

struct ct_tfevents {
    FILE *f;
    char *path;
};

static void put_le(unsigned char *out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

static int write_failed(const ct_tfevents *w, ct_error *err)
{
    return ct_err(err, CT_ERR_IO, "cannot write %s: %s", w->path,
                  errno ? strerror(errno) : "write error");
}

/* One TFRecord around the packed event. */
static int write_event(ct_tfevents *w, const Tensorboard__Event *ev, ct_error *err)
{
    size_t n = tensorboard__event__get_packed_size(ev);
    unsigned char *data = malloc(n ? n : 1), head[12], tail[4];
    if (!data)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    tensorboard__event__pack(ev, data);
    put_le(head, n, 8);
    put_le(head + 8, ct_crc32c_mask(ct_crc32c(head, 8)), 4);
    put_le(tail, ct_crc32c_mask(ct_crc32c(data, n)), 4);
    errno = 0;
    bool ok = fwrite(head, 1, sizeof head, w->f) == sizeof head &&
              fwrite(data, 1, n, w->f) == n && fwrite(tail, 1, sizeof tail, w->f) == sizeof tail;
    free(data);
    return ok ? 0 : write_failed(w, err);
}

static double wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* mkdir -p: every missing folder of dir. */
static int make_dirs(const char *dir, ct_error *err)
{
    if (!dir[0])
        return ct_err(err, CT_ERR_IO, "cannot create a folder with an empty name");
    char *buf = strdup(dir);
    if (!buf)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) < 0 && errno != EEXIST) {
            rc = ct_err(err, CT_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
            break;
        }
        if (!c)
            break;
        *p = c;
    }
    free(buf);
    return rc;
}

ct_tfevents *ct_tfevents_open(const char *dir, ct_error *err)
{
    if (make_dirs(dir, err) < 0)
        return NULL;
    ct_tfevents *w = calloc(1, sizeof *w);
    char host[256];
    if (!w)
        goto nomem;
    if (gethostname(host, sizeof host) < 0 || !host[0])
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *p = host; *p; p++) /* a name, never a path */
        if (*p == '/')
            *p = '_';
    long long secs = (long long)time(NULL);
    size_t len = strlen(dir) + strlen(host) + 96;
    if (!(w->path = malloc(len)))
        goto nomem;
    int fd = -1;
    /* O_EXCL: a new file, never one that exists or a symbolic link put in its place. A name
     * taken by an earlier writer gives way to the next second's, not to a suffix, since
     * TensorBoard reads a folder's files in name order and would drop, as orphaned, the
     * steps of a file it reads after one with later steps. */
    for (int k = 0; fd < 0 && k < 1000; k++) {
        snprintf(w->path, len, "%s/events.out.tfevents.%lld.%s.%ld.v2", dir, secs + k, host,
                 (long)getpid());
        fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) {
            ct_err(err, CT_ERR_IO, "cannot write %s: %s", w->path, strerror(errno));
            goto fail;
        }
    }
    if (fd < 0) {
        ct_err(err, CT_ERR_IO, "cannot write %s: the name is taken", w->path);
        goto fail;
    }
    if (!(w->f = fdopen(fd, "wb"))) {
        close(fd);
        goto nomem;
    }
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = wall_time();
    ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
    ev.file_version = (char *)"brain.Event:2";
    if (write_event(w, &ev, err) < 0 || ct_tfevents_flush(w, err) < 0)
        goto fail;
    return w;
nomem:
    ct_err(err, CT_ERR_NOMEM, "out of memory");
fail:
    ct_tfevents_close(w, NULL);
    return NULL;
}

const char *ct_tfevents_path(const ct_tfevents *w) { return w->path; }

/* An event at step with the one value v (its tag set by the caller). */
static int write_value(ct_tfevents *w, int64_t step, Tensorboard__Summary__Value *v,
                       ct_error *err)
{
    Tensorboard__Summary sum = TENSORBOARD__SUMMARY__INIT;
    sum.n_value = 1;
    sum.value = &v;
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = wall_time();
    ev.step = step;
    ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return write_event(w, &ev, err);
}

int ct_tfevents_scalar(ct_tfevents *w, const char *tag, int64_t step, double value,
                       ct_error *err)
{
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    v.simple_value = (float)value;
    return write_value(w, step, &v, err);
}

int ct_tfevents_histogram(ct_tfevents *w, const char *tag, int64_t step, const float *x,
                          int64_t n, ct_error *err)
{
    Tensorboard__HistogramProto h = TENSORBOARD__HISTOGRAM_PROTO__INIT;
    double limits[CT_TFEVENTS_BUCKETS], counts[CT_TFEVENTS_BUCKETS] = {0};
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v))
            continue;
        lo = fmin(lo, v);
        hi = fmax(hi, v);
        h.num += 1;
        h.sum += v;
        h.sum_squares += v * v;
    }
    if (h.num > 0) {
        h.min = lo;
        h.max = hi;
        int nb = CT_TFEVENTS_BUCKETS;
        if (lo == hi) { /* a zero-width bucket would not show */
            nb = 1;
            lo -= 0.5;
            hi += 0.5;
        }
        double width = (hi - lo) / nb;
        for (int b = 0; b < nb; b++)
            limits[b] = b == nb - 1 ? hi : lo + width * (b + 1);
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(x[i]))
                continue;
            /* (at 1e20, lo - 0.5 is lo: one bucket, and no division by a width of 0) */
            double at = nb > 1 ? ((double)x[i] - lo) / width : 0;
            int b = !(at > 0) ? 0 : at >= nb ? nb - 1 : (int)at;
            counts[b] += 1;
        }
        h.n_bucket_limit = h.n_bucket = (size_t)nb;
        h.bucket_limit = limits;
        h.bucket = counts;
    }
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_HISTO;
    v.histo = &h;
    return write_value(w, step, &v, err);
}

int ct_tfevents_string(ct_tfevents *w, const char *tag, int64_t step, const char *plugin,
                       const char *plugin_content, const char *text, ct_error *err)
{
    Tensorboard__SummaryMetadata__PluginData pd = TENSORBOARD__SUMMARY_METADATA__PLUGIN_DATA__INIT;
    pd.plugin_name = (char *)plugin;
    if (plugin_content) {
        pd.content.data = (uint8_t *)plugin_content;
        pd.content.len = strlen(plugin_content);
    }
    Tensorboard__SummaryMetadata md = TENSORBOARD__SUMMARY_METADATA__INIT;
    md.plugin_data = &pd;
    Tensorboard__TensorShapeProto shape = TENSORBOARD__TENSOR_SHAPE_PROTO__INIT;
    ProtobufCBinaryData s = {strlen(text), (uint8_t *)text};
    Tensorboard__TensorProto t = TENSORBOARD__TENSOR_PROTO__INIT;
    t.dtype = TENSORBOARD__DATA_TYPE__DT_STRING;
    t.tensor_shape = &shape; /* no dimensions: a scalar */
    t.n_string_val = 1;
    t.string_val = &s;
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.metadata = &md;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR;
    v.tensor = &t;
    return write_value(w, step, &v, err);
}

int ct_tfevents_flush(ct_tfevents *w, ct_error *err)
{
    errno = 0;
    if (fflush(w->f) != 0 || ferror(w->f))
        return write_failed(w, err);
    return 0;
}

int ct_tfevents_close(ct_tfevents *w, ct_error *err)
{
    if (!w)
        return 0;
    int rc = 0;
    if (w->f) {
        errno = 0;
        bool bad = fflush(w->f) != 0 || ferror(w->f);
        int e = errno;
        if (fclose(w->f) != 0 && !bad) {
            bad = true;
            e = errno;
        }
        errno = e;
        if (bad)
            rc = write_failed(w, err);
    }
    free(w->path);
    free(w);
    return rc;
}
