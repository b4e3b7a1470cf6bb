/* callbacks.c - the fit callbacks (see callbacks.h), with Keras 3's keys, defaults and
 * decisions. One difference on purpose: early_stopping's restore_best_weights restores
 * at the end of every run, not only when it stopped the run. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "callbacks.h"
#include "guard.h"
#include "tensorboard.h"

#define CT_MAX_CALLBACKS 16
#define CT_MAX_ALLOWED 16

typedef enum {
    CB_EARLY, CB_REDUCE, CB_CHECKPOINT, CB_CSV, CB_NAN, CB_BACKUP, CB_TENSORBOARD
} cb_kind;

static const char *const kind_names[] = {"early_stopping", "reduce_lr_on_plateau",
                                         "model_checkpoint", "csv_logger", "terminate_on_nan",
                                         "backup_and_restore", "tensorboard", NULL};
static const char *const class_names[] = {"EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint",
                                          "CSVLogger", "TerminateOnNaN", "BackupAndRestore",
                                          "TensorBoard", NULL};
static const char *const modes[] = {"auto", "min", "max", NULL};

typedef struct callback {
    cb_kind kind;
    const ct_node *node;
    const char *monitor, *path, *separator;
    int mode; /* resolved: 1 min, 2 max */
    double min_delta, factor, min_lr, baseline;
    bool has_baseline, restore_best, best_only, weights_only, append, delete_backup;
    bool trusted; /* the path was given on the command line (--set) */
    int64_t patience, start_from_epoch, cooldown;
    int64_t update_freq, histogram_freq; /* tensorboard: update_freq 0 is "epoch" */
    bool write_graph;
    ct_tensorboard *tb; /* tensorboard's open files, between train_begin and free */
    /* state */
    double best, wait, best_epoch, cooldown_left, stopped_epoch, has_weights, lr;
    float *best_weights; /* early_stopping with restore_best_weights */
} callback;

struct ct_callbacks {
    int n;
    callback cb[CT_MAX_CALLBACKS];
    int64_t model_size;
    int nallowed;
    char *allowed[CT_MAX_ALLOWED]; /* --allow-outside folders, resolved (resolve_where) */
};

/* "auto": max for the metrics Keras marks as going up (accuracies, auc, precision,
 * recall, the f-scores, mean_iou, r2_score, cosine_similarity), found by their default
 * names; min for everything else. */
static int resolve_mode(int mode, const char *monitor)
{
    static const char *const up[] = {"acc", "auc", "precision", "recall", "f1_score",
                                      "fbeta_score", "iou", "r2_score", "cosine_similarity"};
    if (mode)
        return mode;
    for (size_t i = 0; i < sizeof up / sizeof up[0]; i++)
        if (strstr(monitor, up[i]))
            return 2;
    return 1;
}

static int read_monitor(callback *c, ct_node *map, ct_error *err)
{
    int mode;
    if (ct_cfg_string(map, "monitor", "val_loss", &c->monitor, err) < 0 ||
        ct_cfg_enum(map, "mode", "auto", modes, &mode, err) < 0)
        return -1;
    c->mode = resolve_mode(mode, c->monitor);
    c->best = c->mode == 1 ? INFINITY : -INFINITY;
    return 0;
}

/* ---- filepath placeholders ------------------------------------------------------------ */

/* Width and precision of a placeholder's format are at most this. */
#define CT_SPEC_MAX 64

/* A placeholder's format, Python's [[fill]align][sign][#][0][width][,][.precision][type]
 * with the types d (epoch only), e, f, g, % and none. It is parsed here and the printf
 * format is built from these fields alone, so nothing of the config reaches printf. */
typedef struct fmt_spec {
    char fill, align, sign, type; /* align, sign, type 0 when not given */
    bool alt, zero, group;
    int width, precision;         /* precision -1 when not given */
} fmt_spec;

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads up to CT_SPEC_MAX; false when larger. */
static bool spec_number(const char *s, size_t len, size_t *i, int *out)
{
    int v = 0;
    for (; *i < len && is_digit(s[*i]); (*i)++) {
        v = v * 10 + (s[*i] - '0');
        if (v > CT_SPEC_MAX)
            return false;
    }
    *out = v;
    return true;
}

/* Parses spec (len bytes) for an integer value (epoch) or a float; NULL when it is valid,
 * else why not. */
static const char *parse_spec(const char *s, size_t len, bool integer, fmt_spec *f)
{
    static char why[128];
    memset(f, 0, sizeof *f);
    f->fill = ' ';
    f->precision = -1;
    size_t i = 0;
    bool fill_given = false;
    if (len >= 2 && strchr("<>=^", s[1])) {
        if (s[0] < 0x20 || s[0] > 0x7e || s[0] == '{' || s[0] == '/')
            return "the fill character must be a printable ASCII character other than '{' and "
                   "'/'";
        f->fill = s[0];
        f->align = s[1];
        fill_given = true;
        i = 2;
    } else if (len >= 1 && strchr("<>=^", s[0])) {
        f->align = s[0];
        i = 1;
    }
    if (i < len && (s[i] == '+' || s[i] == '-' || s[i] == ' '))
        f->sign = s[i++];
    if (i < len && s[i] == '#') {
        f->alt = true;
        i++;
    }
    if (i < len && s[i] == '0') {
        f->zero = true;
        i++;
    }
    if (!spec_number(s, len, &i, &f->width)) {
        snprintf(why, sizeof why, "the width must be at most %d", CT_SPEC_MAX);
        return why;
    }
    if (i < len && s[i] == ',') {
        f->group = true;
        i++;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i == len || !is_digit(s[i]))
            return "'.' must be followed by the precision";
        if (!spec_number(s, len, &i, &f->precision)) {
            snprintf(why, sizeof why, "the precision must be at most %d", CT_SPEC_MAX);
            return why;
        }
    }
    if (i < len && strchr("defg%", s[i]))
        f->type = s[i++];
    if (i < len) {
        snprintf(why, sizeof why, "'%c' is not understood here; the format is "
                 "[[fill]align][sign][#][0][width][,][.precision][type] with the type d, e, "
                 "f, g or %%", s[i]);
        return why;
    }
    if (f->type == 'd' && !integer)
        return "the type d formats {epoch} only; use e, f, g or %";
    if (integer && (f->type == 'd' || !f->type) && f->precision >= 0)
        return "an integer takes no precision";
    if (f->zero && f->group)
        return "',' cannot be combined with zero padding";
    if (f->zero) {
        if (!fill_given)
            f->fill = '0';
        if (!f->align)
            f->align = '=';
    }
    return NULL;
}

/* Writes v as f says into out (n bytes); the length it needs (as snprintf). */
static int format_value(const fmt_spec *f, double v, bool integer, char *out, size_t n)
{
    char body[512], fmt[16], num[600];
    bool neg = signbit(v) && !isnan(v);
    double a = fabs(v);
    if (integer && (f->type == 'd' || !f->type)) {
        snprintf(body, sizeof body, "%.0f", a);
    } else {
        char type = f->type == '%' ? 'f' : f->type ? f->type : f->precision >= 0 ? 'g' : 'f';
        int prec = f->precision >= 0 ? f->precision : f->type ? 6 : 4;
        snprintf(fmt, sizeof fmt, "%%%s.%d%c", f->alt ? "#" : "", prec, type);
        size_t k = (size_t)snprintf(body, sizeof body - 1, fmt, f->type == '%' ? a * 100 : a);
        if (k > sizeof body - 2)
            k = sizeof body - 2;
        if (f->type == '%') {
            body[k] = '%';
            body[k + 1] = 0;
        }
    }
    /* ',' groups the integer part's digits by three */
    size_t digits = strspn(body, "0123456789"), at = 0;
    for (size_t i = 0; i < digits; i++) {
        if (f->group && i && (digits - i) % 3 == 0)
            num[at++] = ',';
        num[at++] = body[i];
    }
    snprintf(num + at, sizeof num - at, "%s", body + digits);
    char sign[2] = {neg ? '-' : f->sign == '+' ? '+' : f->sign == ' ' ? ' ' : 0, 0};
    size_t len = strlen(num) + strlen(sign);
    size_t pad = (size_t)f->width > len ? (size_t)f->width - len : 0, left = 0, mid = 0;
    switch (f->align) {
    case '<': break;
    case '^': left = pad / 2; break;
    case '=': mid = pad; break;
    default: left = pad; break;
    }
    size_t right = pad - left - mid;
    char padding[CT_SPEC_MAX + 1];
    memset(padding, f->fill, sizeof padding - 1);
    padding[CT_SPEC_MAX] = 0;
    return snprintf(out, n, "%.*s%s%.*s%s%.*s", (int)left, padding, sign, (int)mid, padding,
                    num, (int)right, padding);
}

/* Checks a filepath's placeholders when the experiment is loaded. */
static int check_filepath(const callback *c, ct_error *err)
{
    const ct_node *at = ct_map_get(c->node, "filepath");
    for (const char *p = c->path; *p; p++) {
        if (*p != '{')
            continue;
        const char *close = strchr(p + 1, '}');
        if (!close)
            return ct_node_err(err, at, "unclosed '{' in filepath");
        size_t len = (size_t)(close - p - 1);
        const char *colon = memchr(p + 1, ':', len);
        size_t name_len = colon ? (size_t)(colon - p - 1) : len;
        if (name_len == 0 || memchr(p + 1, '{', len))
            return ct_node_err(err, at, "filepath holds '%.*s': a placeholder is {epoch} or "
                               "{name} of a reported value, with an optional format such as "
                               "{epoch:02d} or {val_loss:.4f}", (int)(len + 2), p);
        fmt_spec f;
        bool integer = name_len == 5 && !memcmp(p + 1, "epoch", 5);
        const char *why = colon ? parse_spec(colon + 1, (size_t)(close - colon - 1), integer, &f)
                                : NULL;
        if (why)
            return ct_node_err(err, at, "filepath placeholder '%.*s': %s", (int)(len + 2), p,
                               why);
        p = close;
    }
    return 0;
}

/* The files a run writes into its directory itself (train.c). */
static const char *const own_files[] = {"history.csv", "config.yaml", "weights.h5",
                                        "checkpoint.h5", ".ctrain.lock", NULL};

/* The run's own file that a relative path names in the run directory, or NULL. */
static const char *own_file(const char *path)
{
    if (path[0] == '/')
        return NULL;
    const char *parts[64];
    size_t lens[64];
    int n = 0;
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && !strncmp(p, "..", 2)) {
            if (n == 0)
                return NULL; /* outside the run directory */
            n--;
        } else if (len && !(len == 1 && p[0] == '.')) {
            if (n == 64)
                return NULL;
            parts[n] = p;
            lens[n++] = len;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    for (int i = 0; n == 1 && own_files[i]; i++)
        if (lens[0] == strlen(own_files[i]) && !strncmp(parts[0], own_files[i], lens[0]))
            return own_files[i];
    return NULL;
}

static int check_not_own(const callback *c, const char *key, ct_error *err)
{
    const char *own = own_file(c->path);
    if (own)
        return ct_node_err(err, ct_map_get(c->node, key), "%s: %s names the run's own %s, "
                           "which the run writes itself; choose another file name",
                           kind_names[c->kind], key, own);
    return 0;
}

/* ---- where a path writes -------------------------------------------------------------- */

/* path made absolute (a relative one taken in base, or in the current directory when base
 * is NULL; a relative base in the current directory), with "." and ".." taken out and the
 * symbolic links of every existing folder on the way resolved (realpath), so two paths
 * compare by where a write lands. The last component is resolved too only when
 * resolve_last (a folder written into); one that does not exist yet is kept as written.
 * -1 (errno set) when an existing component cannot be resolved, such as a dangling link. */
static int resolve_where(const char *base, const char *path, bool resolve_last, char *out,
                         size_t n)
{
    char cwd[PATH_MAX], full[3 * PATH_MAX], cur[PATH_MAX], cand[PATH_MAX];
    if (path[0] != '/' && (!base || base[0] != '/') && !getcwd(cwd, sizeof cwd))
        return -1;
    if (path[0] == '/')
        snprintf(full, sizeof full, "%s", path);
    else if (base && base[0] == '/')
        snprintf(full, sizeof full, "%s/%s", base, path);
    else
        snprintf(full, sizeof full, "%s/%s%s%s", cwd, base ? base : "", base ? "/" : "", path);
    cur[0] = 0; /* "" is the root */
    for (const char *p = full; *p;) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (!len)
            break;
        bool last = !p[len + strspn(p + len, "/")];
        if (len == 1 && p[0] == '.') {
        } else if (len == 2 && !strncmp(p, "..", 2)) {
            char *slash = strrchr(cur, '/');
            if (slash)
                *slash = 0;
        } else {
            size_t at = strlen(cur);
            if (at + 1 + len >= sizeof cur) {
                errno = ENAMETOOLONG;
                return -1;
            }
            memcpy(cand, cur, at);
            cand[at] = '/';
            memcpy(cand + at + 1, p, len);
            cand[at + 1 + len] = 0;
            struct stat st;
            char real[PATH_MAX];
            if ((last && !resolve_last) || lstat(cand, &st) < 0)
                memcpy(cur, cand, at + len + 2);
            else if (realpath(cand, real))
                snprintf(cur, sizeof cur, "%s", strcmp(real, "/") ? real : "");
            else
                return -1;
        }
        p += len;
    }
    snprintf(out, n, "%s", cur[0] ? cur : "/");
    return 0;
}

/* Whether resolved path p is folder dir (resolved) or lies under it. */
static bool under(const char *p, const char *dir)
{
    size_t len = strlen(dir);
    if (!strcmp(dir, "/"))
        return true;
    return !strncmp(p, dir, len) && (p[len] == 0 || p[len] == '/');
}

/* Whether a relative path climbs out of the folder it is taken in ("../x", "a/../../x"). */
static bool climbs_out(const char *path)
{
    int depth = 0;
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && !strncmp(p, "..", 2)) {
            if (--depth < 0)
                return true;
        } else if (len && !(len == 1 && p[0] == '.')) {
            depth++;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    return false;
}

static const char *path_key(const callback *c)
{
    return c->kind == CB_CHECKPOINT  ? "filepath"
           : c->kind == CB_CSV         ? "filename"
           : c->kind == CB_TENSORBOARD ? "log_dir"
                                       : "backup_dir";
}

#define ALLOW_HINT "an experiment file may only write inside the run directory; allow the " \
                   "folder with `ctrain fit --allow-outside DIR`, or give the value on the " \
                   "command line with --set"

/* Refuses path (c's path, or what it expanded to) when it writes outside run_dir and every
 * allowed folder, at the config value. model_checkpoint's, csv_logger's and tensorboard's
 * relative paths are taken in run_dir; backup_dir is absolute by now (experiment.c). The
 * folders (backup_dir, log_dir) are resolved to the end, as their files land inside. */
static int check_where(const ct_callbacks *cbs, const callback *c, const char *path,
                       const char *run_dir, ct_error *err)
{
    if (c->trusted)
        return 0;
    const char *key = path_key(c);
    const ct_node *at = ct_map_get(c->node, key);
    char dir[PATH_MAX], where[PATH_MAX];
    if (resolve_where(NULL, run_dir, true, dir, sizeof dir) < 0)
        return ct_err(err, CT_ERR_IO, "cannot resolve the run directory %s: %s", run_dir,
                      strerror(errno));
    bool folder = c->kind == CB_BACKUP || c->kind == CB_TENSORBOARD;
    if (resolve_where(c->kind == CB_BACKUP ? NULL : run_dir, path, folder, where,
                      sizeof where) < 0)
        return ct_node_err(err, at, "%s: %s '%s' cannot be resolved (%s); " ALLOW_HINT,
                           kind_names[c->kind], key, path, strerror(errno));
    if (under(where, dir))
        return 0;
    for (int i = 0; i < cbs->nallowed; i++)
        if (under(where, cbs->allowed[i]))
            return 0;
    return ct_node_err(err, at, "%s: %s '%s' writes to %s, outside the run directory %s; "
                       ALLOW_HINT, kind_names[c->kind], key, path, where, run_dir);
}

int ct_callbacks_check_paths(const ct_callbacks *cbs, const char *run_dir, ct_error *err)
{
    for (int i = 0; i < cbs->n; i++) {
        const callback *c = &cbs->cb[i];
        if ((c->kind == CB_CHECKPOINT || c->kind == CB_CSV || c->kind == CB_BACKUP ||
             c->kind == CB_TENSORBOARD) &&
            check_where(cbs, c, c->path, run_dir, err) < 0)
            return -1;
    }
    return 0;
}

/* When the experiment is loaded: a path given in the file that climbs out of the run
 * directory is refused at once (`ctrain check` too), unless --allow-outside folders may
 * hold it (decided when fit knows the run directory). */
static int check_climb(callback *c, int nallowed, ct_error *err)
{
    const char *key = path_key(c);
    const ct_node *at = ct_map_get(c->node, key);
    if (at && at->file && !strcmp(at->file, "--set"))
        c->trusted = true;
    if (c->trusted || nallowed || c->path[0] == '/' || !climbs_out(c->path))
        return 0;
    return ct_node_err(err, at, "%s: %s '%s' leaves the run directory; " ALLOW_HINT,
                       kind_names[c->kind], key, c->path);
}

/* tensorboard's update_freq: "epoch" (0), "batch" (every batch, 1) or a number of batches,
 * as Keras takes it. */
static int read_update_freq(callback *c, ct_node *map, ct_error *err)
{
    ct_node *v = ct_map_get(map, "update_freq");
    if (ct_node_is_null(v)) {
        ct_map_set_scalar(map, "update_freq", "epoch");
        c->update_freq = 0;
        return 0;
    }
    if (v->type == CT_NODE_SCALAR && !strcmp(v->scalar, "epoch")) {
        c->update_freq = 0;
        return 0;
    }
    if (v->type == CT_NODE_SCALAR && !strcmp(v->scalar, "batch")) {
        c->update_freq = 1;
        return 0;
    }
    ct_error ignored;
    if (v->type != CT_NODE_SCALAR || ct_node_int(v, &c->update_freq, &ignored) < 0 ||
        c->update_freq < 1)
        return ct_node_err(err, v, "update_freq must be epoch, batch or a number of batches "
                                   "(at least 1), got %s",
                           v->type == CT_NODE_SCALAR ? v->scalar : "a list or a map");
    return 0;
}

static int parse_one(callback *c, ct_node *n, const ct_optimizer *opt, int nallowed,
                     ct_error *err)
{
    static const char *const early_keys[] = {"type", "monitor", "min_delta", "patience", "mode",
                                             "baseline", "restore_best_weights",
                                             "start_from_epoch", NULL};
    static const char *const reduce_keys[] = {"type", "monitor", "factor", "patience", "mode",
                                              "min_delta", "cooldown", "min_lr", NULL};
    static const char *const ckpt_keys[] = {"type", "filepath", "monitor", "mode",
                                            "save_best_only", "save_weights_only", "save_freq",
                                            NULL};
    static const char *const csv_keys[] = {"type", "filename", "separator", "append", NULL};
    static const char *const nan_keys[] = {"type", NULL};
    static const char *const backup_keys[] = {"type", "backup_dir", "save_freq",
                                              "delete_checkpoint", NULL};
    static const char *const tb_keys[] = {"type", "log_dir", "histogram_freq", "write_graph",
                                          "update_freq", NULL};
    static const char *const *const keys[] = {early_keys, reduce_keys, ckpt_keys, csv_keys,
                                              nan_keys, backup_keys, tb_keys};
    if (n->type == CT_NODE_SCALAR && ct_node_expand_scalar(n, "type", err) < 0)
        return -1;
    if (n->type != CT_NODE_MAP)
        return ct_node_err(err, n, "a callback is a name or a map such as "
                                   "{type: early_stopping, patience: 3}");
    const char *type;
    if (ct_cfg_string(n, "type", NULL, &type, err) < 0)
        return -1;
    int k = -1;
    for (int i = 0; kind_names[i]; i++)
        if (!strcmp(type, kind_names[i]) || !strcmp(type, class_names[i]))
            k = i;
    if (k < 0) {
        const char *s = ct_suggest(type, kind_names);
        return ct_node_err(err, ct_map_get(n, "type"), "unknown callback '%s'%s%s%s; known: "
                           "early_stopping, reduce_lr_on_plateau, model_checkpoint, csv_logger, "
                           "terminate_on_nan, backup_and_restore, tensorboard", type,
                           s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
    }
    c->kind = (cb_kind)k;
    c->node = n;
    char what[64];
    snprintf(what, sizeof what, "callback '%s'", kind_names[k]);
    if (ct_cfg_check_keys(n, keys[k], what, err) < 0)
        return -1;
    static const char *const freqs[] = {"epoch", NULL};
    int freq;
    switch (c->kind) {
    case CB_EARLY: {
        ct_node *b = ct_map_get(n, "baseline");
        if (read_monitor(c, n, err) < 0 ||
            ct_cfg_float(n, "min_delta", 0.0, 0.0, 1e300, &c->min_delta, err) < 0 ||
            ct_cfg_int(n, "patience", 0, 0, INT64_MAX, &c->patience, err) < 0 ||
            ct_cfg_bool(n, "restore_best_weights", false, &c->restore_best, err) < 0 ||
            ct_cfg_int(n, "start_from_epoch", 0, 0, INT64_MAX, &c->start_from_epoch, err) < 0)
            return -1;
        if (ct_node_is_null(b)) {
            ct_map_set_scalar(n, "baseline", "null");
        } else {
            if (ct_node_float(b, &c->baseline, err) < 0)
                return -1;
            c->has_baseline = true;
        }
        return 0;
    }
    case CB_REDUCE:
        if (opt->schedule.type != CT_SCHEDULE_CONSTANT)
            return ct_node_err(err, n, "reduce_lr_on_plateau changes a constant learning rate; "
                                       "it cannot be combined with a learning-rate schedule");
        c->lr = opt->learning_rate;
        return read_monitor(c, n, err) < 0 ||
                       ct_cfg_float(n, "factor", 0.1, 0.0, nextafter(1.0, 0.0), &c->factor, err) < 0 ||
                       ct_cfg_int(n, "patience", 10, 0, INT64_MAX, &c->patience, err) < 0 ||
                       ct_cfg_float(n, "min_delta", 1e-4, 0.0, 1e300, &c->min_delta, err) < 0 ||
                       ct_cfg_int(n, "cooldown", 0, 0, INT64_MAX, &c->cooldown, err) < 0 ||
                       ct_cfg_float(n, "min_lr", 0.0, 0.0, 1e300, &c->min_lr, err) < 0
                   ? -1 : 0;
    case CB_CHECKPOINT:
        return ct_cfg_string(n, "filepath", NULL, &c->path, err) < 0 ||
                       check_filepath(c, err) < 0 || check_not_own(c, "filepath", err) < 0 ||
                       check_climb(c, nallowed, err) < 0 ||
                       read_monitor(c, n, err) < 0 ||
                       ct_cfg_bool(n, "save_best_only", false, &c->best_only, err) < 0 ||
                       ct_cfg_bool(n, "save_weights_only", false, &c->weights_only, err) < 0 ||
                       ct_cfg_enum(n, "save_freq", "epoch", freqs, &freq, err) < 0
                   ? -1 : 0;
    case CB_CSV:
        return ct_cfg_string(n, "filename", NULL, &c->path, err) < 0 ||
                       check_not_own(c, "filename", err) < 0 ||
                       check_climb(c, nallowed, err) < 0 ||
                       ct_cfg_string(n, "separator", ",", &c->separator, err) < 0 ||
                       ct_cfg_bool(n, "append", false, &c->append, err) < 0
                   ? -1 : 0;
    case CB_NAN:
        return 0;
    case CB_BACKUP:
        return ct_cfg_string(n, "backup_dir", NULL, &c->path, err) < 0 ||
                       check_climb(c, nallowed, err) < 0 ||
                       ct_cfg_enum(n, "save_freq", "epoch", freqs, &freq, err) < 0 ||
                       ct_cfg_bool(n, "delete_checkpoint", true, &c->delete_backup, err) < 0
                   ? -1 : 0;
    case CB_TENSORBOARD:
        return ct_cfg_string(n, "log_dir", "logs", &c->path, err) < 0 ||
                       check_not_own(c, "log_dir", err) < 0 ||
                       check_climb(c, nallowed, err) < 0 ||
                       ct_cfg_int(n, "histogram_freq", 0, 0, INT64_MAX, &c->histogram_freq,
                                  err) < 0 ||
                       ct_cfg_bool(n, "write_graph", true, &c->write_graph, err) < 0 ||
                       read_update_freq(c, n, err) < 0
                   ? -1 : 0;
    }
    return 0;
}

ct_callbacks *ct_callbacks_new(ct_node *fit, const ct_optimizer *opt,
                               const char *const *allow_outside, int n_allow, ct_error *err)
{
    ct_callbacks *c = calloc(1, sizeof *c);
    if (!c) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (n_allow > CT_MAX_ALLOWED) {
        ct_err(err, CT_ERR_USAGE, "at most %d --allow-outside folders are supported",
               CT_MAX_ALLOWED);
        goto fail;
    }
    for (int i = 0; i < n_allow; i++) {
        char where[PATH_MAX];
        if (resolve_where(NULL, allow_outside[i], true, where, sizeof where) < 0) {
            ct_err(err, CT_ERR_USAGE, "--allow-outside %s cannot be resolved: %s",
                   allow_outside[i], strerror(errno));
            goto fail;
        }
        if (!(c->allowed[i] = strdup(where))) {
            ct_err(err, CT_ERR_NOMEM, "out of memory");
            goto fail;
        }
        c->nallowed = i + 1;
    }
    ct_node *list = ct_map_get(fit, "callbacks");
    if (ct_node_is_null(list)) {
        ct_map_set_seq(fit, "callbacks");
        return c;
    }
    if (list->type != CT_NODE_SEQ) {
        ct_node_err(err, list, "fit.callbacks must be a list such as [terminate_on_nan, "
                               "{type: early_stopping, patience: 3}]");
        goto fail;
    }
    if (list->len > CT_MAX_CALLBACKS) {
        ct_node_err(err, list, "at most %d callbacks are supported", CT_MAX_CALLBACKS);
        goto fail;
    }
    for (size_t i = 0; i < list->len; i++) {
        if (parse_one(&c->cb[i], list->items[i], opt, c->nallowed, err) < 0)
            goto fail;
        c->n = (int)i + 1;
        for (size_t j = 0; j < i; j++)
            if ((c->cb[i].kind == CB_BACKUP || c->cb[i].kind == CB_NAN) &&
                c->cb[j].kind == c->cb[i].kind) {
                ct_node_err(err, list->items[i], "%s is listed twice", kind_names[c->cb[i].kind]);
                goto fail;
            }
    }
    return c;
fail:
    ct_callbacks_free(c);
    return NULL;
}

void ct_callbacks_free(ct_callbacks *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++) {
        free(c->cb[i].best_weights);
        ct_tensorboard_close(c->cb[i].tb, NULL);
    }
    for (int i = 0; i < c->nallowed; i++)
        free(c->allowed[i]);
    free(c);
}

static int find_value(const callback *c, const ct_epoch_logs *logs, double *out, ct_error *err)
{
    for (int i = 0; i < logs->n; i++)
        if (!strcmp(logs->names[i], c->monitor)) {
            *out = logs->values ? logs->values[i] : 0;
            return 0;
        }
    char known[512] = "";
    size_t at = 0;
    for (int i = 0; i < logs->n && at < sizeof known; i++)
        at += (size_t)snprintf(known + at, sizeof known - at, "%s%s", i ? ", " : "",
                               logs->names[i]);
    const char *cands[64];
    int nc = logs->n < 63 ? logs->n : 63;
    for (int i = 0; i < nc; i++)
        cands[i] = logs->names[i];
    cands[nc] = NULL;
    const char *s = ct_suggest(c->monitor, cands);
    char hint[96] = "";
    if (s)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
    return ct_node_err(err, ct_map_get(c->node, "monitor"), "callback '%s' monitors '%s', which "
                       "this run does not report%s; it reports: %s", kind_names[c->kind],
                       c->monitor, hint, known);
}

int ct_callbacks_check_monitors(const ct_callbacks *cbs, int n, const char *const *names,
                                ct_error *err)
{
    ct_epoch_logs logs = {0, n, names, NULL}; /* names only: find_value reads no value */
    double unused;
    for (int i = 0; cbs && i < cbs->n; i++) {
        const callback *c = &cbs->cb[i];
        bool uses = c->kind == CB_EARLY || c->kind == CB_REDUCE ||
                    (c->kind == CB_CHECKPOINT && c->best_only);
        if (uses && find_value(c, &logs, &unused, err) < 0)
            return -1;
    }
    return 0;
}

/* Keras's test: better by more than min_delta in the monitored direction. */
static bool improves(const callback *c, double current, double reference)
{
    return c->mode == 1 ? current + c->min_delta < reference : current - c->min_delta > reference;
}

static void copy_weights(const ct_model *m, float *dst)
{
    m->be->download(dst, m->values, (size_t)m->size * sizeof(float));
}

static int early_stopping(callback *c, ct_model *m, const ct_epoch_logs *logs, bool *stop,
                          ct_error *err)
{
    double current;
    if (logs->epoch < c->start_from_epoch)
        return 0;
    if (find_value(c, logs, &current, err) < 0)
        return -1;
    if (c->restore_best && !c->best_weights) {
        c->best_weights = malloc((size_t)(m->size ? m->size : 1) * sizeof(float));
        if (!c->best_weights)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    if (c->restore_best && !c->has_weights) {
        copy_weights(m, c->best_weights);
        c->has_weights = 1;
    }
    c->wait += 1;
    if (isfinite(current) && improves(c, current, c->best)) {
        c->best = current;
        c->best_epoch = (double)logs->epoch;
        if (c->restore_best)
            copy_weights(m, c->best_weights);
        if (!c->has_baseline || improves(c, current, c->baseline))
            c->wait = 0;
        return 0;
    }
    if (c->wait >= (double)c->patience && logs->epoch > 0) {
        c->stopped_epoch = (double)logs->epoch;
        *stop = true;
    }
    return 0;
}

static int reduce_lr(callback *c, ct_optimizer *opt, const ct_epoch_logs *logs, ct_error *err)
{
    double current;
    if (find_value(c, logs, &current, err) < 0)
        return -1;
    if (c->cooldown_left > 0) {
        c->cooldown_left -= 1;
        c->wait = 0;
    }
    if (improves(c, current, c->best)) {
        c->best = current;
        c->wait = 0;
    } else if (c->cooldown_left <= 0) {
        c->wait += 1;
        if (c->wait >= (double)c->patience) {
            if (c->lr > c->min_lr) {
                c->lr = fmax(c->lr * c->factor, c->min_lr);
                opt->learning_rate = c->lr;
                c->cooldown_left = (double)c->cooldown;
            }
            c->wait = 0;
        }
    }
    return 0;
}

/* run_dir/path, or path when absolute. */
static void in_run_dir(const char *run_dir, const char *path, char *out, size_t n)
{
    if (path[0] == '/')
        snprintf(out, n, "%s", path);
    else
        snprintf(out, n, "%s/%s", run_dir, path);
}

/* Expands {epoch} (1-based, as Keras) and {name} of the epoch's values, each with its
 * format (checked by check_filepath when the experiment was loaded). */
static int expand_path(const callback *c, const ct_epoch_logs *logs, char *out, size_t n,
                       ct_error *err)
{
    size_t at = 0;
    for (const char *p = c->path; *p && at + 1 < n; p++) {
        if (*p != '{') {
            out[at++] = *p;
            continue;
        }
        const char *close = strchr(p, '}');
        if (!close)
            return ct_node_err(err, ct_map_get(c->node, "filepath"), "unclosed '{' in filepath");
        char name[96];
        const char *colon = memchr(p + 1, ':', (size_t)(close - p - 1));
        size_t len = (size_t)((colon ? colon : close) - p - 1);
        if (len >= sizeof name)
            len = sizeof name - 1;
        memcpy(name, p + 1, len);
        name[len] = 0;
        double v = NAN;
        bool integer = !strcmp(name, "epoch"), found = integer;
        if (found)
            v = (double)(logs->epoch + 1);
        for (int i = 0; !found && i < logs->n; i++)
            if (!strcmp(logs->names[i], name)) {
                v = logs->values[i];
                found = true;
            }
        if (!found)
            return ct_node_err(err, ct_map_get(c->node, "filepath"), "filepath names '{%s}', "
                               "which is neither epoch nor a value this run reports", name);
        fmt_spec f;
        if (parse_spec(colon ? colon + 1 : close, colon ? (size_t)(close - colon - 1) : 0,
                       integer, &f))
            return ct_node_err(err, ct_map_get(c->node, "filepath"), "bad placeholder in "
                               "filepath");
        size_t left = n - at;
        int w = format_value(&f, v, integer, out + at, left);
        if (w < 0 || (size_t)w >= left)
            return ct_node_err(err, ct_map_get(c->node, "filepath"), "filepath is too long");
        at += (size_t)w;
        p = close;
    }
    out[at] = 0;
    return 0;
}

static int model_checkpoint(const ct_callbacks *cbs, callback *c, const ct_epoch_logs *logs,
                            const char *run_dir, ct_save_fn save, void *ctx, ct_error *err)
{
    if (c->best_only) {
        double current;
        if (find_value(c, logs, &current, err) < 0)
            return -1;
        if (!(isfinite(current) && (c->mode == 1 ? current < c->best : current > c->best)))
            return 0;
        c->best = current;
    }
    char name[4096], path[8300];
    if (expand_path(c, logs, name, sizeof name, err) < 0 ||
        check_where(cbs, c, name, run_dir, err) < 0)
        return -1;
    in_run_dir(run_dir, name, path, sizeof path);
    return save(ctx, path, c->weights_only, err);
}

static int csv_logger(const ct_callbacks *cbs, callback *c, const ct_epoch_logs *logs,
                      const char *run_dir, ct_error *err)
{
    char path[8300];
    if (check_where(cbs, c, c->path, run_dir, err) < 0)
        return -1;
    in_run_dir(run_dir, c->path, path, sizeof path);
    /* A fresh run starts the file unless append; a resumed run adds to it. Never through a
     * symbolic link, nor into something that is not a regular file. */
    bool fresh = logs->epoch == 0 && !c->append && c->wait == 0;
    FILE *f = ct_open_regular(path, !fresh, err);
    if (!f) {
        ct_err_prefix(err, "csv_logger");
        return -1;
    }
    if (fresh || ftell(f) == 0) {
        fputs("epoch", f);
        for (int i = 0; i < logs->n; i++)
            fprintf(f, "%s%s", c->separator, logs->names[i]);
        fputc('\n', f);
    }
    fprintf(f, "%lld", (long long)logs->epoch);
    for (int i = 0; i < logs->n; i++)
        fprintf(f, "%s%.9g", c->separator, logs->values[i]);
    fputc('\n', f);
    c->wait = 1; /* the file has been started by this run */
    if (fclose(f) != 0)
        return ct_err(err, CT_ERR_IO, "csv_logger cannot write %s: %s", path, strerror(errno));
    return 0;
}

int ct_callbacks_train_begin(ct_callbacks *cbs, const ct_model *m, const char *run_dir,
                             bool validation, ct_error *err)
{
    for (int i = 0; i < cbs->n; i++) {
        callback *c = &cbs->cb[i];
        if (c->kind != CB_TENSORBOARD)
            continue;
        char dir[8300];
        ct_tensorboard_close(c->tb, NULL); /* a second fit with these callbacks */
        c->tb = NULL;
        if (check_where(cbs, c, c->path, run_dir, err) < 0)
            return -1;
        in_run_dir(run_dir, c->path, dir, sizeof dir);
        if (!(c->tb = ct_tensorboard_open(dir, validation, err)) ||
            (c->write_graph && ct_tensorboard_graph(c->tb, m, err) < 0)) {
            ct_err_prefix(err, "tensorboard");
            return -1;
        }
    }
    return 0;
}

bool ct_callbacks_batch_due(const ct_callbacks *cbs, int64_t step)
{
    for (int i = 0; i < cbs->n; i++) {
        const callback *c = &cbs->cb[i];
        if (c->kind == CB_TENSORBOARD && c->tb && c->update_freq && step % c->update_freq == 0)
            return true;
    }
    return false;
}

int ct_callbacks_batch_end(ct_callbacks *cbs, int64_t step, int n, const char *const *names,
                           const double *values, ct_error *err)
{
    for (int i = 0; i < cbs->n; i++) {
        callback *c = &cbs->cb[i];
        if (c->kind == CB_TENSORBOARD && c->tb && c->update_freq &&
            step % c->update_freq == 0 &&
            ct_tensorboard_batch(c->tb, step, n, names, values, err) < 0)
            return ct_err_prefix(err, "tensorboard");
    }
    return 0;
}

static int tensorboard_epoch(callback *c, const ct_model *m, const ct_optimizer *opt,
                             const ct_epoch_logs *logs, ct_error *err)
{
    if (!c->tb) /* not opened by ct_callbacks_train_begin: nothing to write to */
        return 0;
    if (ct_tensorboard_epoch(c->tb, logs, opt->iterations, err) < 0 ||
        (c->histogram_freq && logs->epoch % c->histogram_freq == 0 &&
         ct_tensorboard_histograms(c->tb, m, logs->epoch, err) < 0))
        return ct_err_prefix(err, "tensorboard");
    return 0;
}

int ct_callbacks_epoch_end(ct_callbacks *cbs, ct_model *m, ct_optimizer *opt,
                           const ct_epoch_logs *logs, const char *run_dir, ct_save_fn save,
                           void *save_ctx, bool *stop, ct_error *err)
{
    for (int i = 0; i < cbs->n; i++) {
        callback *c = &cbs->cb[i];
        int rc = 0;
        switch (c->kind) {
        case CB_EARLY: rc = early_stopping(c, m, logs, stop, err); break;
        case CB_REDUCE: rc = reduce_lr(c, opt, logs, err); break;
        case CB_CHECKPOINT: rc = model_checkpoint(cbs, c, logs, run_dir, save, save_ctx, err); break;
        case CB_CSV: rc = csv_logger(cbs, c, logs, run_dir, err); break;
        case CB_TENSORBOARD: rc = tensorboard_epoch(c, m, opt, logs, err); break;
        case CB_NAN:
        case CB_BACKUP: break;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

void ct_callbacks_train_end(ct_callbacks *cbs, ct_model *m, FILE *out)
{
    for (int i = 0; i < cbs->n; i++) {
        callback *c = &cbs->cb[i];
        /* every epoch's end flushed the event files: nothing is left to fail here */
        ct_tensorboard_close(c->tb, NULL);
        c->tb = NULL;
        if (c->kind != CB_EARLY || !c->restore_best || !c->has_weights)
            continue;
        m->be->upload(m->values, c->best_weights, (size_t)m->size * sizeof(float));
        if (out) /* Keras's line (epochs from 1): the first epoch's when none improved */
            fprintf(out, "Restoring model weights from the end of the best epoch: %.0f.\n",
                    c->best_epoch + 1);
    }
}

bool ct_callbacks_terminate_on_nan(const ct_callbacks *cbs)
{
    for (int i = 0; i < cbs->n; i++)
        if (cbs->cb[i].kind == CB_NAN)
            return true;
    return false;
}

static const callback *find_kind(const ct_callbacks *cbs, cb_kind k)
{
    for (int i = 0; i < cbs->n; i++)
        if (cbs->cb[i].kind == k)
            return &cbs->cb[i];
    return NULL;
}

const char *ct_callbacks_backup_dir(const ct_callbacks *cbs)
{
    const callback *c = find_kind(cbs, CB_BACKUP);
    return c ? c->path : NULL;
}

int ct_callbacks_backup_err(const ct_callbacks *cbs, ct_error *err, const char *fmt, ...)
{
    const callback *c = find_kind(cbs, CB_BACKUP);
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    /* (a null fmt, which no caller passes, reads as an empty message; the sanitizer
     * build's compiler cannot see that) */
    vsnprintf(msg, sizeof msg, fmt ? fmt : "", ap);
    va_end(ap);
    return ct_node_err(err, c ? ct_map_get(c->node, "backup_dir") : NULL, "%s", msg);
}

bool ct_callbacks_backup_delete(const ct_callbacks *cbs)
{
    const callback *c = find_kind(cbs, CB_BACKUP);
    return c && c->delete_backup;
}

/* Per callback: best, wait, best_epoch, cooldown_left, stopped_epoch, has_weights, lr, then
 * the best weights for early_stopping with restore_best_weights. tensorboard decides
 * nothing and has none, so it may be added to or left out of a resumed run. */
#define SCALARS 7

static bool stateless(const callback *c) { return c->kind == CB_TENSORBOARD; }

int64_t ct_callbacks_state_size(const ct_callbacks *cbs, int64_t model_size)
{
    int64_t n = 0;
    for (int i = 0; i < cbs->n; i++)
        if (!stateless(&cbs->cb[i]))
            n += SCALARS +
                 (cbs->cb[i].kind == CB_EARLY && cbs->cb[i].restore_best ? model_size : 0);
    return n;
}

void ct_callbacks_get_state(const ct_callbacks *cbs, double *out, int64_t model_size)
{
    for (int i = 0; i < cbs->n; i++) {
        const callback *c = &cbs->cb[i];
        if (stateless(c))
            continue;
        const double s[SCALARS] = {c->best, c->wait, c->best_epoch, c->cooldown_left,
                                   c->stopped_epoch, c->has_weights, c->lr};
        memcpy(out, s, sizeof s);
        out += SCALARS;
        if (c->kind == CB_EARLY && c->restore_best) {
            for (int64_t k = 0; k < model_size; k++)
                out[k] = c->has_weights ? c->best_weights[k] : 0.0;
            out += model_size;
        }
    }
}

void ct_callbacks_set_state(ct_callbacks *cbs, const double *in, int64_t model_size,
                            ct_optimizer *opt)
{
    for (int i = 0; i < cbs->n; i++) {
        callback *c = &cbs->cb[i];
        if (stateless(c))
            continue;
        c->best = in[0];
        c->wait = in[1];
        c->best_epoch = in[2];
        c->cooldown_left = in[3];
        c->stopped_epoch = in[4];
        c->has_weights = in[5];
        c->lr = in[6];
        in += SCALARS;
        if (c->kind == CB_REDUCE)
            opt->learning_rate = c->lr;
        if (c->kind == CB_EARLY && c->restore_best) {
            if (!c->best_weights)
                c->best_weights = malloc((size_t)(model_size ? model_size : 1) * sizeof(float));
            for (int64_t k = 0; c->best_weights && k < model_size; k++)
                c->best_weights[k] = (float)in[k];
            if (!c->best_weights)
                c->has_weights = 0;
            in += model_size;
        }
    }
}
