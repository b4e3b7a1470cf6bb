/* fuzz_config.c - libFuzzer target: the YAML config loader and the experiment builder.
 *
 * Each input is parsed with ct_config_parse, then written to a file and loaded with
 * ct_experiment_load (schema, model, loss, metrics, optimizer, callbacks; no data is
 * opened and nothing is trained). Lines "#set KEY=VALUE" (YAML comments) are passed as
 * overrides, so ct_config_set is fuzzed too. A loaded experiment's resolved config is
 * emitted and must parse and load again; its summary and model_config JSON are produced.
 *
 * The callbacks then see two epochs' values taken from the input's bytes (NaN, infinities,
 * huge and tiny numbers among them), so the filepath templates are expanded and
 * formatted; every file a callback would write must lie inside the (absent) run folder.
 * Inputs with #set overrides skip this step: a path given with --set is trusted and may
 * point anywhere, and the harness must not write there.
 *
 * Models above FZ_MAX_FLOATS parameters, or whose orthogonal initializers would take
 * over FZ_MAX_ORTHOGONAL steps, are skipped before ct_experiment_load: filling them
 * (orthogonal initialization is cubic) is legitimate work that would only slow the search
 * down. */
#include "fuzz_util.h"

#include <math.h>

#include "config.h"
#include "callbacks.h"
#include "experiment.h"
#include "weights.h"

#define FZ_MAX_OVERRIDES 4
#define FZ_MAX_FLOATS (INT64_C(1) << 20)
#define FZ_MAX_ORTHOGONAL 1e7

typedef struct overrides {
    char *text[FZ_MAX_OVERRIDES];
    int n;
} overrides;

/* Collects "#set KEY=VALUE" lines (at most FZ_MAX_OVERRIDES). */
static void find_overrides(const uint8_t *data, size_t size, overrides *o)
{
    o->n = 0;
    size_t i = 0;
    while (i < size && o->n < FZ_MAX_OVERRIDES) {
        size_t end = i;
        while (end < size && data[end] != '\n')
            end++;
        if (end - i > 5 && memcmp(data + i, "#set ", 5) == 0 && !memchr(data + i, 0, end - i))
            o->text[o->n++] = strndup((const char *)data + i + 5, end - i - 5);
        i = end + 1;
    }
}

static void free_overrides(overrides *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->text[i]);
    o->n = 0;
}

/* Steps of orthogonal initialization (Gram-Schmidt: shorter side^2 x longer side per
 * weight), which a recurrent kernel of a few hundred units makes take seconds under the
 * sanitizers. */
static double orthogonal_work(const ct_model *m)
{
    double work = 0;
    for (int i = 0; i < m->nparams; i++) {
        const ct_param *p = m->params[i];
        if (p->init.kind != CT_INIT_ORTHOGONAL)
            continue;
        double n = (double)ct_shape_size(&p->shape);
        double cols = p->shape.ndim >= 2 ? (double)p->shape.dim[p->shape.ndim - 1] : n;
        double rows = cols > 0 ? n / cols : 0, lo = fmin(rows, cols), hi = fmax(rows, cols);
        work += lo * lo * hi;
    }
    return work;
}

/* Whether the model the input describes is small enough to initialise quickly. A model
 * that does not build passes: ct_experiment_load reports why. */
static bool small_model(const uint8_t *data, size_t size, const overrides *o)
{
    ct_error err = {0};
    ct_node *root = ct_config_parse((const char *)data, size, "fuzz.yaml", &err);
    if (!root)
        return true;
    bool small = true;
    int i = 0;
    while (i < o->n && ct_config_set(root, o->text[i], &err) == 0)
        i++;
    if (i == o->n && root->type == CT_NODE_MAP) {
        ct_model *m = ct_model_build(ct_map_get(root, "model"), ct_backend_cpu(), &err);
        small = !m || (m->size <= FZ_MAX_FLOATS && orthogonal_work(m) <= FZ_MAX_ORTHOGONAL);
        ct_model_free(m);
    }
    ct_node_free(root);
    return small;
}

/* The resolved config must read back: parse it, then load it as an experiment. */
static void check_roundtrip(const ct_experiment *ex, const char *path)
{
    ct_error err = {0};
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return;
    int rc = ct_experiment_write_config(ex, mem, &err);
    fclose(mem);
    if (rc < 0) {
        fz_check_msg("ct_experiment_write_config", err.msg);
        free(text);
        return;
    }
    ct_node *again = ct_config_parse(text, len, "resolved.yaml", &err);
    if (!again) {
        fprintf(stderr, "fuzz: the resolved config does not parse: %s\n%s", err.msg, text);
        abort();
    }
    ct_node_free(again);
    fz_write(path, (const uint8_t *)text, len);
    free(text);
    ct_experiment *ex2 = ct_experiment_load(path, NULL, 0, &err);
    if (!ex2) {
        fprintf(stderr, "fuzz: the resolved config does not load: %s\n", err.msg);
        abort();
    }
    ct_experiment_free(ex2);
}

static const char *fz_run_dir;

/* Whether path stays inside dir when read lexically ("a/../b" does, "a/../../b" not). */
static bool inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0 || path[n] != '/')
        return false;
    int depth = 0;
    for (const char *p = path + n + 1; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.')
            depth--;
        else if (len && !(len == 1 && p[0] == '.'))
            depth++;
        if (depth < 0)
            return false;
        p += len + (p[len] == '/');
    }
    return true;
}

/* model_checkpoint's writer: checks where it would write, writes nothing. */
static int fake_save(void *ctx, const char *path, bool weights_only, ct_error *err)
{
    (void)ctx, (void)weights_only, (void)err;
    if (!inside(path, fz_run_dir)) {
        fprintf(stderr, "fuzz: a callback would write %s, outside %s\n", path, fz_run_dir);
        abort();
    }
    return 0;
}

/* A value for a log column from the input's bytes. */
static double pick_value(const uint8_t *data, size_t size, size_t i)
{
    static const double odd[] = {NAN, INFINITY, -INFINITY, -0.0, 1e308, -1e308, 5e-324,
                                 1e15, 123456789.125, -0.5};
    uint8_t b = size ? data[(i * 131) % size] : 0;
    if (b < 2 * sizeof odd / sizeof odd[0])
        return odd[b % (sizeof odd / sizeof odd[0])];
    return ((double)b - 128.0) * (i % 2 ? 1e-3 : 37.5);
}

/* Two epochs through the callbacks: thresholds, schedules, and the filepath templates
 * expanded with the input's values. */
static void run_callbacks(ct_experiment *ex, const uint8_t *data, size_t size)
{
    static char run_dir[160];
    snprintf(run_dir, sizeof run_dir, "%s/run-absent", fz_dir);
    fz_run_dir = run_dir;
    const char *names[2 * CT_MAX_REPORTED + 1];
    char store[2 * CT_MAX_REPORTED][64];
    int n = ct_experiment_value_names(ex, names, "", store);
    n += ct_experiment_value_names(ex, names + n, "val_", store + n);
    names[n++] = "learning_rate";
    double values[2 * CT_MAX_REPORTED + 1];
    ct_error err = {0};
    if (ct_callbacks_check_monitors(ex->callbacks, n, names, &err) < 0) {
        fz_check_msg("ct_callbacks_check_monitors", err.msg);
        return;
    }
    if (ct_callbacks_check_paths(ex->callbacks, run_dir, &err) < 0)
        fz_check_msg("ct_callbacks_check_paths", err.msg);
    for (int64_t epoch = 0; epoch < 2; epoch++) {
        for (int i = 0; i < n; i++)
            values[i] = pick_value(data, size, (size_t)(epoch * n + i));
        ct_epoch_logs logs = {epoch, n, names, values};
        bool stop = false;
        err.msg[0] = 0;
        if (ct_callbacks_epoch_end(ex->callbacks, ex->model, ex->optimizer, &logs, run_dir,
                                   fake_save, NULL, &stop, &err) < 0) {
            fz_check_msg("ct_callbacks_epoch_end", err.msg);
            break;
        }
    }
    ct_callbacks_train_end(ex->callbacks, ex->model, NULL);
}

static void exercise(ct_experiment *ex, const char *path)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    if (devnull)
        ct_experiment_summary(ex, devnull);
    free(ct_model_config_json(ex->model));
    check_roundtrip(ex, path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ct_error err = {0};
    ct_node *root = ct_config_parse((const char *)data, size, "fuzz.yaml", &err);
    if (!root) {
        fz_check_msg("ct_config_parse", err.msg);
        return 0;
    }
    ct_node_free(root);

    overrides o;
    find_overrides(data, size, &o);
    if (small_model(data, size, &o)) {
        const char *path = fz_path("config", "fuzz.yaml");
        fz_write(path, data, size);
        err.msg[0] = 0;
        ct_experiment *ex = ct_experiment_load(path, (const char *const *)o.text, o.n, &err);
        if (ex) {
            exercise(ex, path);
            if (o.n == 0)
                run_callbacks(ex, data, size);
        }
        else
            fz_check_msg("ct_experiment_load", err.msg);
        ct_experiment_free(ex);
    }
    free_overrides(&o);
    return 0;
}
