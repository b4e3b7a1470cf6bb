/* keras_import.c - a ctrain experiment and weights file from a Keras model file: a Keras 3
 * .keras archive (config.json and model.weights.h5 in a zip) or a legacy full-model HDF5
 * file (the model_config attribute and /model_weights).
 *
 * Keras's layer configs are ctrain's own keys for the most part (ctrain's layers take
 * Keras's names), so each layer's config is carried over as it is, less what ctrain has
 * no use for (initializers: the weights are read; dtype policies). Which keys a kind
 * takes is the kind's own business: the experiment is loaded, and a key it refuses is
 * dropped when it holds Keras's default value and reported otherwise, then the next
 * load goes on, so that every unsupported layer and option is listed at once. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <hdf5.h>

#include "experiment.h"
#include "h5util.h"
#include "isolate.h"
#include "keras_io.h"
#include "weights.h"
#include "zip.h"

#define MAX_PASSES 400        /* experiment loads while dropping refused keys */

/* ---- reading the model file ---- */

typedef struct source {
    const char *path;
    bool archive;
    char *config;         /* the model's config JSON */
    char *training;       /* a legacy file's training_config JSON, or NULL */
    char *weights;        /* an archive's model.weights.h5 */
    size_t wlen;
    cJSON *root;
    cJSON *compile;       /* training_config parsed, or NULL */
} source;

/* An HDF5 file held in memory, opened read-only. */
static hid_t open_image(void *bytes, size_t len)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = H5I_INVALID_HID;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0 &&
        H5Pset_file_image(fapl, bytes, len) >= 0)
        f = H5Fopen("model.weights.h5", H5F_ACC_RDONLY, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    return f;
}

static int read_archive(source *s, ct_error *err)
{
    ct_zip *z = ct_zip_open(s->path, err);
    if (!z)
        return -1;
    int c = ct_zip_find(z, "config.json"), w = ct_zip_find(z, "model.weights.h5");
    int rc = 0;
    size_t len;
    if (c < 0 || w < 0)
        rc = ct_err(err, CT_ERR_DATA, "%s: a zip without %s: not a Keras 3 .keras archive",
                    s->path, c < 0 ? "config.json" : "model.weights.h5");
    else if (ct_zip_extract(z, c, &s->config, &len, err) < 0 ||
             ct_zip_extract(z, w, &s->weights, &s->wlen, err) < 0)
        rc = -1;
    else if (strlen(s->config) != len)
        rc = ct_err(err, CT_ERR_DATA, "%s: config.json holds a NUL byte", s->path);
    ct_zip_close(z);
    return rc;
}

/* A legacy file's model_config attribute (a string, fixed or variable length). */
/* A string attribute of the file's root into *out (the caller frees): 0, 1 when absent,
 * -1 (err set) when it is not one readable string. */
static int read_text_attr(hid_t f, const char *name, const char *path, char **out,
                          ct_error *err)
{
    *out = NULL;
    if (H5Aexists(f, name) <= 0)
        return 1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    hid_t space = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    int rc = 0;
    if (t < 0 || H5Tget_class(t) != H5T_STRING || space < 0 ||
        H5Sget_simple_extent_npoints(space) != 1) {
        rc = ct_err(err, CT_ERR_DATA, "%s: attribute %s is not one string", path, name);
    } else if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        char *text = NULL;
        if (mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 &&
            H5Tset_cset(mt, H5Tget_cset(t)) >= 0 && H5Aread(a, mt, &text) >= 0 && text)
            *out = strdup(text);
        else
            rc = ct_err(err, CT_ERR_DATA, "%s: attribute %s cannot be read", path, name);
        if (text)
            H5free_memory(text);
        if (mt >= 0)
            H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        hid_t mt = H5Tcopy(t);
        *out = n < ((size_t)64 << 20) ? calloc(n + 1, 1) : NULL;
        if (*out && (mt < 0 || H5Aread(a, mt, *out) < 0)) {
            free(*out);
            *out = NULL;
            rc = ct_err(err, CT_ERR_DATA, "%s: attribute %s cannot be read", path, name);
        }
        if (mt >= 0)
            H5Tclose(mt);
    }
    if (rc == 0 && !*out)
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (space >= 0)
        H5Sclose(space);
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* A legacy file's model_config and, when it is there and readable, its training_config
 * (the compile settings). */
static int read_legacy(source *s, ct_error *err)
{
    if (ct_h5_check_path(s->path, err) < 0)
        return -1;
    hid_t f = H5Fopen(s->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return ct_h5_open_error(s->path, err);
    int rc = read_text_attr(f, "model_config", s->path, &s->config, err);
    if (rc == 1)
        rc = ct_err(err, CT_ERR_DATA, "%s has no model_config attribute: not a Keras model "
                    "file (a weights-only file holds no model to import)", s->path);
    ct_error ignored = {0};
    if (rc == 0 && read_text_attr(f, "training_config", s->path, &s->training, &ignored) < 0)
        s->training = NULL;   /* the compile settings are a convenience: go without */
    H5Fclose(f);
    return rc;
}

/* HDF5 1.10 may crash or hang on a damaged file before anything can be checked (see
 * isolate.h): a step that opens one runs in a child first, which answers its status and
 * error, and then (when it went well) in this process. */
typedef struct trial {
    int (*step)(void *ctx, ct_error *err);
    void *ctx;
} trial;

static int trial_child(void *ctx, int fd)
{
    const trial *t = ctx;
    struct {
        int rc;
        ct_error err;
    } a = {0, {0}};
    a.rc = t->step(t->ctx, &a.err);
    return ct_isolated_write(fd, &a, sizeof a);
}

static int try_isolated(int (*step)(void *, ct_error *), void *ctx, const char *path,
                        ct_error *err)
{
    trial t = {step, ctx};
    struct {
        int rc;
        ct_error err;
    } a;
    char *got = NULL;
    size_t len = 0;
    ct_isolated_status st = ct_isolated_run(trial_child, &t, 60.0, sizeof a, &got, &len);
    bool answered = st == CT_ISOLATED_OK && len == sizeof a;
    if (answered)
        memcpy(&a, got, sizeof a);
    free(got);
    if (st == CT_ISOLATED_NO_CHILD)
        return step(ctx, err);
    if (!answered)
        return ct_err(err, CT_ERR_DATA, "%s: HDF5 %s while reading it; the file is damaged",
                      path, st == CT_ISOLATED_TIMEOUT ? "did not finish" : "crashed");
    if (a.rc < 0) {
        a.err.msg[sizeof a.err.msg - 1] = '\0';
        *err = a.err;
        return -1;
    }
    return step(ctx, err);
}

static int legacy_step(void *ctx, ct_error *err)
{
    source *s = ctx;
    free(s->config);
    free(s->training);
    s->config = s->training = NULL;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    int rc = read_legacy(s, err);
    ct_h5_quiet_off(&q);
    return rc;
}

static int read_source(source *s, ct_error *err)
{
    unsigned char magic[8] = {0};
    FILE *f = fopen(s->path, "rb");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot open %s: %s", s->path, strerror(errno));
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got >= 4 && !memcmp(magic, "PK\x03\x04", 4)) {
        s->archive = true;
        if (read_archive(s, err) < 0)
            return -1;
    } else if (got == 8 && !memcmp(magic, "\211HDF\r\n\032\n", 8)) {
        if (try_isolated(legacy_step, s, s->path, err) < 0)
            return -1;
    } else {
        return ct_err(err, CT_ERR_DATA, "%s is neither a Keras 3 .keras archive (a zip) nor a "
                      "Keras HDF5 file", s->path);
    }
    s->compile = s->training ? cJSON_Parse(s->training) : NULL;
    s->root = cJSON_Parse(s->config);
    if (!s->root || !cJSON_IsObject(s->root))
        return ct_err(err, CT_ERR_DATA, "%s: the model's config is not a JSON object%s", s->path,
                      s->archive ? " (config.json)" : " (attribute model_config)");
    return 0;
}

/* ---- YAML text ---- */

typedef struct text {
    char *s;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    for (int tries = 0; tries < 2 && !t->failed; tries++) {
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->failed = true;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
}

/* A string YAML reads back as that string without quotes. */
static bool plain_ok(const char *s)
{
    static const char *const words[] = {"true", "false", "null", "yes", "no", "on", "off",
                                        "y", "n", "~", NULL};
    if (!*s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
            return false;
    for (int i = 0; words[i]; i++)
        if (!strcasecmp(s, words[i]))
            return false;
    return true;
}

/* JSON's flow syntax is YAML's; keys and simple strings go without quotes. */
static void put_value(text *t, const cJSON *v)
{
    if (cJSON_IsString(v) && plain_ok(v->valuestring)) {
        put(t, "%s", v->valuestring);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        put(t, obj ? "{" : "[");
        const cJSON *c;
        bool first = true;
        cJSON_ArrayForEach(c, v) {
            put(t, first ? "" : ", ");
            first = false;
            if (obj) {
                if (plain_ok(c->string))
                    put(t, "%s: ", c->string);
                else {
                    cJSON *k = cJSON_CreateString(c->string);
                    char *q = k ? cJSON_PrintUnformatted(k) : NULL;
                    put(t, "%s: ", q ? q : "\"\"");
                    free(q);
                    cJSON_Delete(k);
                }
            }
            put_value(t, c);
        }
        put(t, obj ? "}" : "]");
    } else {
        char *q = cJSON_PrintUnformatted(v);
        if (!q)
            t->failed = true;
        else
            put(t, "%s", q);
        free(q);
    }
}

/* ---- translating the config ---- */

typedef struct layer {
    char name[CT_NAME_MAX];
    char cls[96];
    bool input;           /* an InputLayer (Functional) */
    cJSON *keys;          /* the ctrain keys written for it, in order (owned) */
    cJSON *inputs;        /* names of its inputs (Functional), owned; NULL for a chain */
    cJSON *more;          /* a shared layer's further applications: their inputs (owned) */
} layer;

typedef struct importer {
    source src;
    layer *layers;
    int nlayers;
    bool functional;
    cJSON *input_shape;   /* Sequential: the shape without the batch axis (owned) */
    cJSON *outputs;       /* Functional: the output names (owned) */
    text bad;             /* unsupported layers and options, one per line */
    int nbad;
} importer;

static void note_bad(importer *im, const char *name, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void note_bad(importer *im, const char *name, const char *cls, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    put(&im->bad, "  layer '%s' (%s): %s\n", name, cls, why);
    im->nbad++;
}

static bool str_is(const cJSON *v, const char *s)
{
    return cJSON_IsString(v) && !strcmp(v->valuestring, s);
}

static bool all_ones(const cJSON *v)
{
    if (cJSON_IsNumber(v))
        return v->valuedouble == 1;
    if (!cJSON_IsArray(v))
        return false;
    const cJSON *c;
    cJSON_ArrayForEach(c, v) if (!cJSON_IsNumber(c) || c->valuedouble != 1) return false;
    return true;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

/* Keys ctrain never writes: they do not change what the model computes from its
 * weights, or Keras fills them itself. */
static bool dropped_always(const char *key)
{
    static const char *const keys[] = {"name", "trainable", "dtype", "seed", "implementation",
                                       "use_cudnn", "input_length",
                                       "batch_input_shape", NULL};
    for (int i = 0; keys[i]; i++)
        if (!strcmp(key, keys[i]))
            return true;
    return ends_with(key, "_initializer");
}

/* A key ctrain refuses may still be dropped when it holds the value Keras assumes
 * without it: nothing is lost. */
static bool keras_default(const char *key, const cJSON *v)
{
    static const char *const off[] = {"synchronized", "renorm", "stateful", "unroll",
                                      "time_major", "sparse", "ragged", "lora_enabled",
                                      "keepdims", "optional", "go_backwards", "return_state",
                                      "return_sequences", "zero_output_for_mask", "use_gate", NULL};
    if (!v || cJSON_IsNull(v))
        return true;
    if (!strcmp(key, "data_format"))
        return str_is(v, "channels_last");
    if (!strcmp(key, "dilation_rate") || !strcmp(key, "groups") ||
        !strcmp(key, "depth_multiplier"))
        return all_ones(v);
    if (!strcmp(key, "axis"))
        return (cJSON_IsNumber(v) && v->valuedouble == -1) ||
               (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 &&
                cJSON_GetArrayItem(v, 0)->valuedouble == -1);
    if (!strcmp(key, "renorm_momentum") || !strcmp(key, "renorm_clipping"))
        return true;   /* only read with renorm, itself refused unless false */
    if (!strcmp(key, "reset_after"))
        return cJSON_IsTrue(v);
    if (strstr(key, "dropout") && cJSON_IsNumber(v))
        return v->valuedouble == 0;
    for (int i = 0; off[i]; i++)
        if (!strcmp(key, off[i]))
            return cJSON_IsFalse(v);
    return false;
}

/* The class of a serialized object: Keras 3's {module, class_name, config} or a legacy
 * {class_name, config}. */
static const char *class_of(const cJSON *o)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "class_name");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static cJSON *translate_keys(importer *im, const char *lname, const char *cls,
                             const cJSON *cfg, const ct_layer_kind *kind);

/* A Keras weight regularizer as ctrain's: "l2", or {type: l1_l2, l1: .., l2: ..} from
 * Keras 3's {class_name: L1L2, config: {l1: .., l2: ..}}; NULL for any other kind. */
static cJSON *regularizer(const cJSON *v)
{
    static const char *const kinds[][2] = {{"L1", "l1"}, {"L2", "l2"}, {"L1L2", "l1_l2"},
                                           {"l1", "l1"}, {"l2", "l2"}, {"l1_l2", "l1_l2"}};
    const char *cls = cJSON_IsString(v) ? v->valuestring : class_of(v);
    const char *type = NULL;
    for (size_t i = 0; cls && i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(cls, kinds[i][0]))
            type = kinds[i][1];
    if (!type)
        return NULL;
    if (cJSON_IsString(v))
        return cJSON_CreateString(type);
    cJSON *r = cJSON_CreateObject();
    const cJSON *c, *cfg = cJSON_GetObjectItemCaseSensitive(v, "config");
    bool ok = r && cJSON_AddStringToObject(r, "type", type);
    cJSON_ArrayForEach(c, cfg) {
        if (!cJSON_IsNumber(c) || (strcmp(c->string, "l1") && strcmp(c->string, "l2"))) {
            ok = false;   /* a factor of another name: not a plain l1/l2 penalty */
            break;
        }
        char shortest[32];   /* Keras keeps the factor as a float32: 0.01, not 0.00999999977 */
        snprintf(shortest, sizeof shortest, "%.7g", c->valuedouble);
        ok = ok && cJSON_AddNumberToObject(r, c->string, strtod(shortest, NULL));
    }
    if (ok)
        return r;
    cJSON_Delete(r);
    return NULL;
}

/* Keras 3 writes a Bidirectional's backward layer out even when it is the forward one
 * run backwards (all ctrain builds): the same class and config, but for the name and
 * go_backwards. */
static bool mirrors(const cJSON *fwd, const cJSON *bwd)
{
    const char *a = class_of(fwd), *b = class_of(bwd);
    if (!a || !b || strcmp(a, b) != 0)
        return false;
    cJSON *fc = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(fwd, "config"), true);
    cJSON *bc = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(bwd, "config"), true);
    cJSON *both[2] = {fc, bc};
    for (int k = 0; k < 2 && fc && bc; k++)
        for (cJSON *c = both[k]->child, *next; c; c = next) {
            next = c->next;   /* initializers differ (in their object ids) and are unused */
            if (!strcmp(c->string, "name") || !strcmp(c->string, "go_backwards") ||
                ends_with(c->string, "_initializer"))
                cJSON_Delete(cJSON_DetachItemViaPointer(both[k], c));
        }
    bool same = fc && bc && cJSON_Compare(fc, bc, true);
    cJSON_Delete(fc);
    cJSON_Delete(bc);
    return same;
}

/* A wrapper's wrapped layer: {type: kind, the same translation}. */
static cJSON *translate_wrapped(importer *im, const char *lname, const char *cls,
                                const cJSON *inner)
{
    const char *icls = class_of(inner);
    const ct_layer_kind *k = icls ? ct_layer_kind_find(icls) : NULL;
    if (!k) {
        note_bad(im, lname, cls, "wraps a layer of class %s, which ctrain does not have",
                 icls ? icls : "(none)");
        return NULL;
    }
    return translate_keys(im, lname, cls, cJSON_GetObjectItemCaseSensitive(inner, "config"), k);
}

/* The ctrain keys of a layer of kind `kind` from its Keras config: type first, then every
 * key kept, values as Keras has them. */
static cJSON *translate_keys(importer *im, const char *lname, const char *cls,
                             const cJSON *cfg, const ct_layer_kind *kind)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "type", kind->name))
        goto oom;
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(cfg, "trainable");
    if (cJSON_IsFalse(tr) && !cJSON_AddFalseToObject(o, "trainable"))
        goto oom;
    const cJSON *c;
    cJSON_ArrayForEach(c, cfg) {
        const char *key = c->string;
        if (dropped_always(key))
            continue;
        if (!strcmp(key, "layer") && cJSON_IsObject(c)) {
            cJSON *w = translate_wrapped(im, lname, cls, c);
            if (w && !cJSON_AddItemToObject(o, "layer", w))
                goto oom;
            continue;
        }
        if (!strcmp(key, "backward_layer") && cJSON_IsObject(c)) {
            if (!mirrors(cJSON_GetObjectItemCaseSensitive(cfg, "layer"), c))
                note_bad(im, lname, cls, "a backward_layer of its own is not supported");
            continue;
        }
        if (!strcmp(key, "attention_axes") && !strcmp(kind->name, "multi_head_attention") &&
            cJSON_IsArray(c) && cJSON_GetArraySize(c) == 1 &&
            cJSON_IsNumber(cJSON_GetArrayItem(c, 0)) && cJSON_GetArrayItem(c, 0)->valuedouble == 1)
            continue;   /* Keras 3 writes the default out: ctrain's attention takes (T, D)
                         * inputs, whose sequence axis is axis 1 */
        if (!strcmp(key, "axis") && cJSON_IsArray(c) && cJSON_GetArraySize(c) == 1 &&
            cJSON_IsNumber(cJSON_GetArrayItem(c, 0))) {
            /* Keras 3 lists a normalization's one axis; ctrain takes the number */
            if (!cJSON_AddNumberToObject(o, key, cJSON_GetArrayItem(c, 0)->valuedouble))
                goto oom;
            continue;
        }
        if (cJSON_IsNull(c) || (ends_with(key, "_regularizer") && cJSON_IsNull(c)) ||
            (ends_with(key, "_constraint") && cJSON_IsNull(c)))
            continue;
        if (ends_with(key, "_regularizer") && (cJSON_IsString(c) || class_of(c))) {
            cJSON *r = regularizer(c);
            if (r) {
                if (!cJSON_AddItemToObject(o, key, r))
                    goto oom;
                continue;
            }
        }
        if (ends_with(key, "_regularizer") || ends_with(key, "_constraint")) {
            note_bad(im, lname, cls, "option %s (%s) is not supported", key,
                     class_of(c) ? class_of(c) : "given");
            continue;
        }
        if (cJSON_IsObject(c) && class_of(c)) {
            note_bad(im, lname, cls, "option %s is a serialized %s object, which is not "
                     "translated", key, class_of(c));
            continue;
        }
        cJSON *dup = cJSON_Duplicate(c, true);
        if (!dup || !cJSON_AddItemToObject(o, key, dup))
            goto oom;
    }
    return o;
oom:
    cJSON_Delete(o);
    im->bad.failed = true;
    return NULL;
}

/* The name of the tensor [layer, node, index] refers to, in ctrain's terms: "NAME" or
 * "NAME:k"; a shared layer's application n >= 1 is the shared entry "NAME_nodeN". */
static bool history_name(importer *im, const layer *L, const cJSON *h, char *out, size_t n)
{
    const cJSON *name = cJSON_GetArrayItem(h, 0), *node = cJSON_GetArrayItem(h, 1),
                *idx = cJSON_GetArrayItem(h, 2);
    if (!cJSON_IsString(name) || !cJSON_IsNumber(node) || !cJSON_IsNumber(idx)) {
        note_bad(im, L->name, L->cls, "an inbound node that is not [layer, node, tensor]");
        return false;
    }
    if (node->valuedouble < 0 || node->valuedouble > 10000 || idx->valuedouble < 0 ||
        idx->valuedouble > 100) {
        note_bad(im, L->name, L->cls, "an inbound node's reference out of range");
        return false;
    }
    char base[CT_NAME_MAX + 32];
    int w = node->valuedouble == 0
                ? snprintf(base, sizeof base, "%s", name->valuestring)
                : snprintf(base, sizeof base, "%s_node%d", name->valuestring,
                           (int)node->valuedouble);
    if (w >= 0 && (size_t)w < sizeof base)
        w = idx->valuedouble == 0 ? snprintf(out, n, "%s", base)
                                  : snprintf(out, n, "%s:%d", base, (int)idx->valuedouble);
    if (w < 0 || (size_t)w >= n || (size_t)w >= sizeof base) {
        note_bad(im, L->name, L->cls, "an input's name is too long");
        return false;
    }
    return true;
}

/* Adds the tensors an argument refers to (a Keras 3 __keras_tensor__, or a list of them). */
static bool add_tensor_args(importer *im, const layer *L, const cJSON *arg, cJSON *names)
{
    if (cJSON_IsArray(arg)) {
        const cJSON *c;
        cJSON_ArrayForEach(c, arg) if (!add_tensor_args(im, L, c, names)) return false;
        return true;
    }
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(arg, "config");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(cfg, "keras_history");
    char name[CT_NAME_MAX + 16];
    if (!str_is(cJSON_GetObjectItemCaseSensitive(arg, "class_name"), "__keras_tensor__") ||
        !cJSON_IsArray(h)) {
        note_bad(im, L->name, L->cls, "a call argument that is not a tensor");
        return false;
    }
    return history_name(im, L, h, name, sizeof name) &&
           cJSON_AddItemToArray(names, cJSON_CreateString(name));
}

/* A Functional layer's inputs from its one inbound node: Keras 3's {args, kwargs} or the
 * legacy [[name, node, index, kwargs], ...]. */
/* Keyword arguments of a call that are tensors ctrain takes as further inputs, in the
 * order of its inputs: an attention's query, value and key, a recurrent layer's
 * initial_state. */
static const char *const tensor_kwargs[] = {"query", "value", "key", "initial_state", NULL};

/* The inputs of one application (inbound node) of layer L. first: its first, whose call
 * options become the layer's. */
static cJSON *node_inputs(importer *im, layer *L, const cJSON *node, bool first)
{
    cJSON *names = cJSON_CreateArray();
    if (!names)
        return NULL;
    if (cJSON_IsObject(node)) {
        const cJSON *kw = cJSON_GetObjectItemCaseSensitive(node, "kwargs"), *c;
        if (!add_tensor_args(im, L, cJSON_GetObjectItemCaseSensitive(node, "args"), names))
            goto bad;
        for (int k = 0; tensor_kwargs[k]; k++) {
            c = cJSON_GetObjectItemCaseSensitive(kw, tensor_kwargs[k]);
            if (c && !cJSON_IsNull(c) && !add_tensor_args(im, L, c, names))
                goto bad;
        }
        cJSON_ArrayForEach(c, kw) {
            bool tensor = false;
            for (int k = 0; tensor_kwargs[k]; k++)
                tensor |= !strcmp(c->string, tensor_kwargs[k]);
            if (tensor || cJSON_IsNull(c) || !strcmp(c->string, "training") ||
                !strcmp(c->string, "mask") ||
                (!strcmp(c->string, "return_attention_scores") && cJSON_IsFalse(c)))
                continue;
            if (!strcmp(c->string, "use_causal_mask") && cJSON_IsBool(c)) {
                /* a call argument in Keras 3, an option of the layer in ctrain: every
                 * application of a shared one must agree with the first */
                const cJSON *had = L->keys ? cJSON_GetObjectItemCaseSensitive(L->keys, c->string)
                                           : NULL;
                if (first && cJSON_IsTrue(c) && L->keys &&
                    !cJSON_AddTrueToObject(L->keys, c->string))
                    goto bad;
                if (first || cJSON_IsTrue(had) == cJSON_IsTrue(c))
                    continue;
            }
            note_bad(im, L->name, L->cls, "call argument %s is not imported", c->string);
            goto bad;
        }
        return names;
    }
    const cJSON *ref;
    cJSON_ArrayForEach(ref, node) {
        char name[CT_NAME_MAX + 16];
        if (!cJSON_IsArray(ref) || !history_name(im, L, ref, name, sizeof name) ||
            !cJSON_AddItemToArray(names, cJSON_CreateString(name)))
            goto bad;
    }
    return names;
bad:
    cJSON_Delete(names);
    return NULL;
}

/* A Functional layer's inputs from its first inbound node, and those of its further
 * applications (a shared layer) into L->more. */
static cJSON *inbound_inputs(importer *im, layer *L, const cJSON *nodes)
{
    int n = cJSON_GetArraySize(nodes);
    if (n == 0)
        return cJSON_CreateArray();
    cJSON *names = node_inputs(im, L, cJSON_GetArrayItem(nodes, 0), true);
    if (names && n > 1 && !(L->more = cJSON_CreateArray()))
        im->bad.failed = true;
    for (int k = 1; names && L->more && k < n; k++) {
        cJSON *more = node_inputs(im, L, cJSON_GetArrayItem(nodes, k), false);
        if (more && !cJSON_AddItemToArray(L->more, more))
            cJSON_Delete(more), im->bad.failed = true;
    }
    return names;
}

/* An InputLayer's shape without the batch axis. */
static cJSON *input_shape(const cJSON *cfg)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(cfg, "batch_shape");
    if (!cJSON_IsArray(b))
        b = cJSON_GetObjectItemCaseSensitive(cfg, "batch_input_shape");
    if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) < 2)
        return NULL;
    cJSON *s = cJSON_CreateArray();
    for (int i = 1; s && i < cJSON_GetArraySize(b); i++) {
        const cJSON *d = cJSON_GetArrayItem(b, i);
        if (!cJSON_IsNumber(d)) {
            cJSON_Delete(s);
            return NULL;
        }
        cJSON_AddItemToArray(s, cJSON_CreateNumber(d->valuedouble));
    }
    return s;
}

static int translate(importer *im, ct_error *err)
{
    const cJSON *root = im->src.root, *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    const char *top = class_of(root);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cfg, "layers");
    if (!top || !cJSON_IsArray(list))
        return ct_err(err, CT_ERR_DATA, "%s: the config is not a Keras model's (no class_name "
                      "and config.layers)", im->src.path);
    if (!strcmp(top, "Functional") || !strcmp(top, "Model"))
        im->functional = true;
    else if (strcmp(top, "Sequential") != 0)
        return ct_err(err, CT_ERR_DATA, "%s: the model is a %s; Sequential and Functional "
                      "models are imported", im->src.path, top);
    int n = cJSON_GetArraySize(list);
    im->layers = calloc((size_t)n + 1, sizeof *im->layers);
    if (!im->layers)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        layer *L = &im->layers[im->nlayers++];
        const char *cls = class_of(item);
        const cJSON *lc = cJSON_GetObjectItemCaseSensitive(item, "config");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(lc, "name");
        snprintf(L->cls, sizeof L->cls, "%s", cls ? cls : "?");
        if (!cJSON_IsString(nm) || strlen(nm->valuestring) >= CT_NAME_MAX ||
            strchr(nm->valuestring, '/')) {
            note_bad(im, cJSON_IsString(nm) ? nm->valuestring : "?", L->cls,
                     "its name is missing, too long or holds '/'");
            continue;
        }
        snprintf(L->name, sizeof L->name, "%s", nm->valuestring);
        if (!im->functional && !im->input_shape && im->nlayers == 1 && cls &&
            strcmp(cls, "InputLayer") != 0)
            im->input_shape = input_shape(lc);   /* Keras 2: the first layer's own */
        if (cls && !strcmp(cls, "InputLayer")) {
            L->input = true;
            cJSON *shape = input_shape(lc);
            if (!shape)
                note_bad(im, L->name, L->cls, "no batch_shape of known sizes");
            else if (!im->functional && !im->input_shape)
                im->input_shape = shape;
            else
                L->keys = shape;   /* a graph input's shape */
            continue;
        }
        const ct_layer_kind *kind = cls ? ct_layer_kind_find(cls) : NULL;
        if (!kind || strcmp(kind->class_name, cls) != 0) {
            note_bad(im, L->name, L->cls, "ctrain has no layer of this class");
            continue;
        }
        L->keys = translate_keys(im, L->name, L->cls, lc, kind);
        if (im->functional)
            L->inputs = inbound_inputs(im, L,
                                       cJSON_GetObjectItemCaseSensitive(item, "inbound_nodes"));
    }
    if (!im->functional && !im->input_shape) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(cfg, "build_input_shape");
        if (cJSON_IsArray(b)) {
            cJSON *tmp = cJSON_CreateObject();
            cJSON_AddItemToObject(tmp, "batch_shape", cJSON_Duplicate(b, true));
            im->input_shape = input_shape(tmp);
            cJSON_Delete(tmp);
        }
        if (!im->input_shape)
            return ct_err(err, CT_ERR_DATA, "%s: the Sequential model has no InputLayer and no "
                          "build_input_shape: its input shape is not known", im->src.path);
    }
    if (im->functional) {
        const cJSON *outs = cJSON_GetObjectItemCaseSensitive(cfg, "output_layers"), *o;
        im->outputs = cJSON_CreateArray();
        /* one output: a bare [name, node, index]; several: a list of them */
        if (cJSON_IsArray(outs) && cJSON_IsString(cJSON_GetArrayItem(outs, 0))) {
            char name[CT_NAME_MAX + 16];
            layer fake = {.name = "(outputs)", .cls = "Functional"};
            if (history_name(im, &fake, outs, name, sizeof name))
                cJSON_AddItemToArray(im->outputs, cJSON_CreateString(name));
        } else {
            cJSON_ArrayForEach(o, outs) {
                char name[CT_NAME_MAX + 16];
                layer fake = {.name = "(outputs)", .cls = "Functional"};
                if (history_name(im, &fake, o, name, sizeof name))
                    cJSON_AddItemToArray(im->outputs, cJSON_CreateString(name));
            }
        }
    }
    return im->bad.failed ? ct_err(err, CT_ERR_NOMEM, "out of memory") : 0;
}

/* compile: Keras's compile settings (a .keras archive's compile_config, a legacy file's
 * training_config) where they are plain (a loss and metrics named by strings, the
 * optimizer's class and learning rate), else a placeholder the user replaces. */
static void put_compile(importer *im, text *t, bool placeholder)
{
    const cJSON *cc = cJSON_GetObjectItemCaseSensitive(im->src.root, "compile_config");
    if (!cJSON_IsObject(cc))
        cc = im->src.compile;
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(cc, "loss");
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(cc, "optimizer");
    if (!opt)
        opt = cJSON_GetObjectItemCaseSensitive(cc, "optimizer_config");
    const cJSON *ocfg = cJSON_GetObjectItemCaseSensitive(opt, "config");
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(ocfg, "learning_rate");
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(cc, "metrics"), *m;
    char oname[96] = "adam";
    if (!placeholder && cJSON_IsString(loss) && plain_ok(loss->valuestring)) {
        if (cJSON_IsString(opt) && plain_ok(opt->valuestring))
            snprintf(oname, sizeof oname, "%s", opt->valuestring);
        else if (class_of(opt))
            ct_keras_snake_case(class_of(opt), oname, sizeof oname);
        put(t, "compile:\n  optimizer: {type: %s", oname);
        if (cJSON_IsNumber(lr))   /* Keras keeps it as a float32 */
            put(t, ", learning_rate: %.7g", lr->valuedouble);
        put(t, "}\n  loss: %s\n", loss->valuestring);
        bool plain = cJSON_IsArray(metrics) && cJSON_GetArraySize(metrics) > 0;
        cJSON_ArrayForEach(m, metrics) plain = plain && cJSON_IsString(m) && plain_ok(m->valuestring);
        if (plain) {
            put(t, "  metrics: ");
            put_value(t, metrics);
            put(t, "\n");
        }
        return;
    }
    put(t, "# The Keras file's compile settings were not carried over: set the loss (and the\n"
           "# optimizer) the model is to be trained with.\n"
           "compile: {optimizer: adam, loss: mean_squared_error}\n");
}

static char *yaml_text(importer *im, bool placeholder_compile)
{
    text t = {0};
    put(&t, "# Imported by ctrain import from %s.\n", im->src.path);
    put(&t, "# data: the training data is not part of a Keras model file; fill in, e.g.\n"
            "#   train: {path: data.h5, x: x, y: y}\n"
            "#   test:  {path: data.h5, x: x_test, y: y_test}\n");
    put(&t, "model:\n");
    if (!im->functional) {
        put(&t, "  input_shape: ");
        put_value(&t, im->input_shape);
        put(&t, "\n");
    } else {
        /* in input_layers' order, which is the order of Keras's model inputs */
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(im->src.root, "config");
        const cJSON *ins = cJSON_GetObjectItemCaseSensitive(cfg, "input_layers"), *in;
        bool *done = calloc((size_t)im->nlayers + 1, sizeof *done);
        if (!done)
            t.failed = true;
        if (cJSON_IsArray(ins) && cJSON_IsString(cJSON_GetArrayItem(ins, 0)))
            ins = NULL;   /* one input, written as a bare [name, 0, 0]: any order does */
        put(&t, "  inputs:\n");
        for (int pass = 0; done && pass < 2; pass++) {
            const cJSON *first = pass == 0 && cJSON_IsArray(ins) ? ins->child : NULL;
            for (in = first; pass == 0 && in; in = in->next) {
                const cJSON *nm = cJSON_GetArrayItem(in, 0);
                for (int i = 0; cJSON_IsString(nm) && i < im->nlayers; i++)
                    if (im->layers[i].input && im->layers[i].keys && !done[i] &&
                        !strcmp(im->layers[i].name, nm->valuestring)) {
                        put(&t, "    %s: {shape: ", im->layers[i].name);
                        put_value(&t, im->layers[i].keys);
                        put(&t, "}\n");
                        done[i] = true;
                    }
            }
            for (int i = 0; pass == 1 && i < im->nlayers; i++)
                if (im->layers[i].input && im->layers[i].keys && !done[i]) {
                    put(&t, "    %s: {shape: ", im->layers[i].name);
                    put_value(&t, im->layers[i].keys);
                    put(&t, "}\n");
                }
        }
        free(done);
    }
    put(&t, "  layers:\n");
    for (int i = 0; i < im->nlayers; i++) {
        const layer *L = &im->layers[i];
        if (L->input || !L->keys)
            continue;
        put(&t, "    - {name: %s", L->name);
        const cJSON *c;
        cJSON_ArrayForEach(c, L->keys) {
            put(&t, ", %s: ", c->string);
            put_value(&t, c);
        }
        if (L->inputs) {
            put(&t, ", inputs: ");
            put_value(&t, L->inputs);
        }
        put(&t, "}\n");
    }
    /* a shared layer's further applications (ctrain orders a graph's entries itself) */
    for (int i = 0; i < im->nlayers; i++) {
        const layer *L = &im->layers[i];
        const cJSON *in;
        int k = 1;
        for (in = L->more ? L->more->child : NULL; in && L->keys; in = in->next, k++) {
            put(&t, "    - {name: %s_node%d, type: shared, layer: %s, inputs: ", L->name, k,
                L->name);
            put_value(&t, in);
            put(&t, "}\n");
        }
    }
    if (im->functional) {
        put(&t, "  outputs: ");
        put_value(&t, im->outputs);
        put(&t, "\n");
    }
    put_compile(im, &t, placeholder_compile);
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

static int write_text(const char *path, const char *s, ct_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return ct_err(err, CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    bool ok = fputs(s, f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : ct_err(err, CT_ERR_IO, "writing %s failed", path);
}

/* From a refused key's message ("... unknown key 'K' in layer 'L' (C)...; known keys:
 * ..."), the key and the layer (a wrapped one's "outer/inner" reads as outer's layer). */
static bool refused_key(const char *msg, char *key, size_t nk, char *lname, size_t nl,
                        bool *wrapped)
{
    const char *k = strstr(msg, "unknown key '");
    const char *l = k ? strstr(k, " in layer '") : NULL;
    if (!k || !l)
        return false;
    k += strlen("unknown key '");
    l += strlen(" in layer '");
    const char *ke = strchr(k, '\''), *le = strstr(l, "' (");
    if (!ke || !le || (size_t)(ke - k) >= nk || (size_t)(le - l) >= nl)
        return false;
    snprintf(key, nk, "%.*s", (int)(ke - k), k);
    snprintf(lname, nl, "%.*s", (int)(le - l), l);
    char *slash = strchr(lname, '/');
    *wrapped = slash != NULL;
    if (slash)
        *slash = '\0';
    return true;
}

/* Loads the experiment, dropping or reporting each key a kind refuses, until it loads or
 * fails for another reason. */
static ct_experiment *settle(importer *im, const char *yaml_path, ct_error *err)
{
    bool placeholder = false;
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        char *y = yaml_text(im, placeholder);
        if (!y) {
            ct_err(err, CT_ERR_NOMEM, "out of memory");
            return NULL;
        }
        int rc = write_text(yaml_path, y, err);
        free(y);
        if (rc < 0)
            return NULL;
        /* lazily: a pass may be one of many, and the weights are read over them all */
        ct_experiment *ex = ct_experiment_load_lazily(yaml_path, NULL, 0, err);
        if (ex)
            return ex;
        char key[128], lname[CT_NAME_MAX];
        bool wrapped;
        layer *L = NULL;
        if (refused_key(err->msg, key, sizeof key, lname, sizeof lname, &wrapped))
            for (int i = 0; i < im->nlayers && !L; i++)
                if (!strcmp(im->layers[i].name, lname) && im->layers[i].keys)
                    L = &im->layers[i];
        if (!L) {
            if (!placeholder && strstr(err->msg, "compile")) {
                placeholder = true;  /* Keras's compile settings are not ctrain's: drop them */
                continue;
            }
            return NULL;
        }
        cJSON *map = wrapped ? cJSON_GetObjectItemCaseSensitive(L->keys, "layer") : L->keys;
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(map, key);
        if (!v)
            return NULL;
        if (!keras_default(key, v)) {
            char *q = cJSON_PrintUnformatted(v);
            note_bad(im, L->name, L->cls, "option %s%s = %s is not supported by ctrain",
                     wrapped ? "layer." : "", key, q ? q : "?");
            free(q);
        }
        cJSON_Delete(v);
    }
    ct_err(err, CT_ERR_INTERNAL, "%s: the experiment did not settle", yaml_path);
    return NULL;
}

static int make_dir(const char *dir, ct_error *err)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0
                                   : ct_err(err, CT_ERR_USAGE, "%s is not a folder", dir);
    if (mkdir(dir, 0777) < 0)
        return ct_err(err, CT_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    return 0;
}

void ct_keras_import_report_free(ct_keras_import_report *r)
{
    if (!r)
        return;
    free(r->unsupported);
    r->unsupported = NULL;
}

static void importer_free(importer *im)
{
    for (int i = 0; i < im->nlayers; i++) {
        cJSON_Delete(im->layers[i].keys);
        cJSON_Delete(im->layers[i].inputs);
        cJSON_Delete(im->layers[i].more);
    }
    free(im->layers);
    cJSON_Delete(im->input_shape);
    cJSON_Delete(im->outputs);
    cJSON_Delete(im->src.root);
    cJSON_Delete(im->src.compile);
    free(im->src.config);
    free(im->src.training);
    free(im->src.weights);
    free(im->bad.s);
}

/* The weights: an archive's model.weights.h5 (Keras 3's layout), or the legacy file's
 * /model_weights, which ctrain's own loader reads. */
typedef struct weights_job {
    importer *im;
    ct_model *m;
} weights_job;

static int archive_weights(void *ctx, ct_error *err)
{
    weights_job *j = ctx;
    importer *im = j->im;
    ct_h5_quiet q;
    ct_h5_quiet_on(&q);
    hid_t f = open_image(im->src.weights, im->src.wlen);
    int rc;
    if (f < 0) {
        rc = ct_err(err, CT_ERR_DATA, "%s: model.weights.h5 is not an HDF5 file or is damaged",
                    im->src.path);
    } else {
        char label[4200];
        snprintf(label, sizeof label, "%s:model.weights.h5", im->src.path);
        rc = ct_keras3_weights_read(j->m, f, label, err);
        H5Fclose(f);
    }
    ct_h5_quiet_off(&q);
    return rc;
}

static int load_weights(importer *im, ct_model *m, ct_error *err)
{
    if (!im->src.archive)
        return ct_weights_load(m, im->src.path, err);
    weights_job j = {im, m};
    char label[4200];
    snprintf(label, sizeof label, "%s:model.weights.h5", im->src.path);
    return try_isolated(archive_weights, &j, label, err);
}

int ct_keras_import(const char *path, const char *out_dir, ct_keras_import_report *report,
                    ct_error *err)
{
    if (report)
        *report = (ct_keras_import_report){0};
    importer im = {.src = {.path = path}};
    char yaml[4200], wpath[4200];
    snprintf(yaml, sizeof yaml, "%s/experiment.yaml", out_dir);
    snprintf(wpath, sizeof wpath, "%s/weights.h5", out_dir);
    ct_experiment *ex = NULL;
    int rc = read_source(&im.src, err);
    if (rc == 0)
        rc = translate(&im, err);
    if (rc == 0 && im.nbad == 0)
        rc = make_dir(out_dir, err);
    if (rc == 0 && im.nbad == 0) {
        ex = settle(&im, yaml, err);
        if (!ex && im.nbad == 0) {
            rc = ct_err_prefix(err, "%s: the translated experiment does not load", path);
            unlink(yaml);
        }
    }
    if (rc == 0 && im.nbad > 0) {
        rc = ct_err(err, CT_ERR_DATA, "%s: %d layer%s or option%s ctrain cannot take (listed "
                    "above); nothing was written", path, im.nbad, im.nbad == 1 ? "" : "s",
                    im.nbad == 1 ? "" : "s");
        unlink(yaml);
    }
    if (rc == 0 && ex) {
        char *json = ct_model_config_json(ex->model);
        rc = load_weights(&im, ex->model, err);
        if (rc == 0)
            rc = ct_weights_save(ex->model, wpath, json, NULL, err);
        free(json);
        if (rc == 0 && report) {
            for (int i = 0; i < ex->model->nlayers; i++) {
                const ct_layer *l = &ex->model->layers[i];
                report->layers++;
                for (int j = 0; !l->shared && j < l->nparams; j++)
                    report->params += ct_shape_size(&l->params[j].shape);
            }
        }
        if (rc < 0)
            unlink(yaml);
    }
    if (report && im.bad.s)
        report->unsupported = strdup(im.bad.s);
    ct_experiment_free(ex);
    importer_free(&im);
    return rc;
}
