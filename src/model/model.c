/* model.c - Sequential models: building from config, parameter layout, buffer planning,
 * forward and backward passes, and the summary table. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "progress.h"
#include "rng.h"

/* Refuse models whose buffers would exceed this many floats before allocating anything. */
#define CT_MAX_FLOATS (INT64_C(1) << 34)

static int unique_name(ct_model *m, ct_layer *l, ct_node *cfg, ct_error *err)
{
    const char *given = NULL;
    if (ct_map_get(cfg, "name")) {
        if (ct_cfg_string(cfg, "name", NULL, &given, err) < 0)
            return -1;
        if (!*given || strlen(given) >= CT_NAME_MAX || strchr(given, '/'))
            return ct_node_err(err, ct_map_get(cfg, "name"),
                               "layer names must be 1 to %d characters without '/'", CT_NAME_MAX - 1);
        snprintf(l->name, sizeof l->name, "%s", given);
    } else {
        /* Keras's automatic names: dense, dense_1, dense_2, ... */
        int count = 0;
        for (int i = 0; i < l->index; i++)
            if (m->layers[i].kind == l->kind)
                count++;
        for (;; count++) {
            if (count == 0)
                snprintf(l->name, sizeof l->name, "%s", l->kind->name);
            else
                snprintf(l->name, sizeof l->name, "%s_%d", l->kind->name, count);
            bool taken = false;
            for (int i = 0; i < l->index; i++)
                taken |= strcmp(m->layers[i].name, l->name) == 0;
            if (!taken)
                break;
        }
    }
    for (int i = 0; i < l->index; i++)
        if (strcmp(m->layers[i].name, l->name) == 0)
            return ct_node_err(err, ct_map_get(cfg, "name"),
                               "layer name '%s' is already used by layer %d", l->name, i + 1);
    return 0;
}

static int configure_layer(ct_model *m, ct_layer *l, ct_node *cfg, ct_error *err)
{
    if (cfg->type != CT_NODE_MAP)
        return ct_node_err(err, cfg, "each entry of model.layers must be a map such as "
                                     "{type: dense, units: 10}");
    const char *type;
    if (ct_cfg_string(cfg, "type", NULL, &type, err) < 0)
        return -1;
    l->kind = ct_layer_kind_find(type);
    if (!l->kind) {
        const char *s = ct_suggest(type, ct_layer_kind_list());
        char hint[128] = "";
        if (s)
            snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
        return ct_node_err(err, ct_map_get(cfg, "type"), "unknown layer type '%s'%s; known types: %s",
                           type, hint, ct_layer_kind_names());
    }
    l->cfg = cfg;
    l->be = m->be;
    if (unique_name(m, l, cfg, err) < 0)
        return -1;
    return l->kind->configure ? l->kind->configure(l, cfg, err) : 0;
}

static int build_layer(ct_model *m, ct_layer *l, ct_error *err)
{
    l->in_shape = l->index ? m->layers[l->index - 1].out_shape : m->input_shape;
    l->ninputs = 1;
    l->in_shapes = &l->in_shape;
    if (l->kind->build(l, err) == 0)
        return 0;
    /* Say where the input comes from, and its shape unless the message already did. */
    char shape[128], where[256];
    const ct_layer *prev = l->index ? &m->layers[l->index - 1] : NULL;
    ct_shape_format(prev ? &prev->out_shape : &m->input_shape, shape, sizeof shape);
    if (prev)
        snprintf(where, sizeof where, "layer '%s' (%s)", prev->name, prev->kind->class_name);
    else
        snprintf(where, sizeof where, "the model input");
    size_t at = strlen(err->msg);
    if (strstr(err->msg, shape))
        snprintf(err->msg + at, sizeof err->msg - at, " (the input comes from %s)", where);
    else
        snprintf(err->msg + at, sizeof err->msg - at, " (the input comes from %s, shape %s)",
                 where, shape);
    return -1;
}

/* Trainable parameters first, so optimizers step one contiguous prefix of the block. */
static int layout_params(ct_model *m, ct_error *err)
{
    m->nparams = 0;
    for (int i = 0; i < m->nlayers; i++)
        m->nparams += m->layers[i].nparams;
    m->params = calloc((size_t)m->nparams + 1, sizeof *m->params);
    if (!m->params)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    int k = 0;
    int64_t off = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < m->nlayers; i++) {
            ct_layer *l = &m->layers[i];
            for (int j = 0; j < l->nparams; j++) {
                ct_param *p = &l->params[j];
                if (p->trainable != (pass == 0))
                    continue;
                p->offset = off;
                off += ct_shape_size(&p->shape);
                if (off > CT_MAX_FLOATS)
                    return ct_err(err, CT_ERR_NOMEM, "the model has more than %" PRId64
                                  " parameters (%.1f GiB); refusing to allocate it",
                                  CT_MAX_FLOATS, (double)off * 4 / (1 << 30));
                m->params[k++] = p;
            }
        }
        if (pass == 0)
            m->trainable = off;
    }
    m->size = off;
    m->values = m->be->alloc((size_t)(m->size ? m->size : 1) * sizeof(float));
    m->grads = m->be->alloc((size_t)(m->trainable ? m->trainable : 1) * sizeof(float));
    if (!m->values || !m->grads)
        return ct_err(err, CT_ERR_NOMEM, "cannot allocate %.1f MiB of parameters",
                      (double)(m->size + m->trainable) * 4 / (1 << 20));
    for (int i = 0; i < m->nparams; i++) {
        ct_param *p = m->params[i];
        p->value = m->values + p->offset;
        p->grad = p->trainable ? m->grads + p->offset : NULL;
    }
    return 0;
}

/* ---- sizes and memory ---- */

/* Product of the dims, or -1 when it does not fit in int64: an absurd shape must be an
 * error, not signed overflow. */
static int64_t checked_size(const ct_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        if (s->dim[i] < 0 || __builtin_mul_overflow(n, s->dim[i], &n))
            return -1;
    return n;
}

/* "512 B", "3.5 KiB", ... "3.7 TiB". */
static void fmt_bytes(double b, char *buf, size_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (b >= 1024 && u < 6) {
        b /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%.0f B", b);
    else
        snprintf(buf, n, "%.1f %s", b, units[u]);
}

static void group_digits(int64_t v, char *buf, size_t n);

/* Each layer is checked as it is built, so the next one never works from a size that
 * overflowed or that no machine could hold. */
static int check_layer_sizes(const ct_layer *l, ct_error *err)
{
    char shape[160], a[32], b[32];
    int64_t out = checked_size(&l->out_shape), params = 0;
    if (out < 0)
        return ct_layer_err(err, l, "its output shape %s does not fit in 64-bit sizes",
                            ct_shape_format(&l->out_shape, shape, sizeof shape));
    for (int j = 0; j < l->nparams; j++) {
        const ct_param *p = &l->params[j];
        int64_t n = checked_size(&p->shape);
        if (n < 0 || __builtin_add_overflow(params, n, &params))
            return ct_layer_err(err, l, "its parameters (%s of shape %s) do not fit in 64-bit "
                                "sizes", p->name,
                                ct_shape_format_sample(&p->shape, shape, sizeof shape));
    }
    if (out > CT_MAX_FLOATS || params > CT_MAX_FLOATS) {
        fmt_bytes((double)params * 4, a, sizeof a);
        fmt_bytes((double)out * 4, b, sizeof b);
        return ct_layer_err(err, l, "needs %s for its parameters and %s per sample for its "
                            "output; refusing to allocate that", a, b);
    }
    return 0;
}

double ct_physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && size > 0 ? (double)pages * (double)size : 0;
}

/* Bytes one layer needs under a budget. */
typedef struct layer_need {
    double params;     /* values and gradients */
    double state;      /* optimizer state */
    double act;        /* outputs, their gradients and scratch for one batch */
    int64_t count;     /* parameters */
} layer_need;

static layer_need need_of(const ct_layer *l, const ct_model_budget *b)
{
    layer_need n = {0, 0, 0, 0};
    for (int j = 0; j < l->nparams; j++) {
        const ct_param *p = &l->params[j];
        double size = (double)ct_shape_size(&p->shape);
        n.count += ct_shape_size(&p->shape);
        n.params += 4 * size * (p->trainable ? 2 : 1);
        n.state += p->trainable ? 4 * size * b->opt_slots : 0;
    }
    if (!l->kind->is_view)
        n.act += 8.0 * (double)b->batch * (double)ct_shape_size(&l->out_shape);
    if (l->kind->scratch_floats)
        n.act += 4.0 * (double)l->kind->scratch_floats(l, b->batch);
    return n;
}

static void describe_limit(const ct_model_budget *b, char *buf, size_t n)
{
    char lim[32];
    fmt_bytes(b->limit, lim, sizeof lim);
    if (b->physical)
        snprintf(buf, n, "the physical memory (%s; backend.memory_limit_mb sets another limit)",
                 lim);
    else
        snprintf(buf, n, "backend.memory_limit_mb (%.0f MiB)", b->limit / (1 << 20));
}

int ct_model_check_budget(const ct_model *m, const ct_model_budget *b, ct_error *err)
{
    if (b->limit <= 0)
        return 0;
    double total = 4.0 * (double)b->batch * (double)ct_shape_size(&m->input_shape)
                   + 4.0 * (double)b->extra;
    int worst = 0;
    double worst_bytes = -1;
    for (int i = 0; i < m->nlayers; i++) {
        layer_need n = need_of(&m->layers[i], b);
        double bytes = n.params + n.state + n.act;
        total += bytes;
        if (bytes > worst_bytes) {
            worst_bytes = bytes;
            worst = i;
        }
    }
    if (total <= b->limit)
        return 0;
    const ct_layer *l = &m->layers[worst];
    layer_need n = need_of(l, b);
    char need[32], p[32], act[32], all[32], count[32], limit[160];
    fmt_bytes(worst_bytes, need, sizeof need);
    fmt_bytes(n.params + n.state, p, sizeof p);
    fmt_bytes(n.act, act, sizeof act);
    fmt_bytes(total, all, sizeof all);
    group_digits(n.count, count, sizeof count);
    describe_limit(b, limit, sizeof limit);
    ct_layer_err(err, l, "needs %s: %s parameters take %s with their gradients and optimizer "
                 "state, and its activations for batches of %" PRId64 " row%s take %s; the "
                 "model needs %s in all, more than %s", need, count, p, b->batch,
                 b->batch == 1 ? "" : "s", act, all, limit);
    if (err)
        err->code = CT_ERR_NOMEM;   /* the machine's limit, not a mistake in the file */
    return -1;
}

ct_model *ct_model_build(ct_node *cfg, const ct_backend *be, ct_error *err)
{
    return ct_model_build_within(cfg, be, NULL, err);
}

static int read_input_shape(ct_model *m, ct_node *cfg, ct_error *err)
{
    int64_t dims[CT_MAX_DIMS];
    int ndim;
    if (ct_cfg_int_list(cfg, "input_shape", dims, CT_MAX_DIMS - 1, &ndim, err) < 0)
        return -1;
    m->input_shape = ct_shape_make(ndim, dims);
    int64_t size = checked_size(&m->input_shape);
    if (size < 0)
        return ct_node_err(err, ct_map_get(cfg, "input_shape"), "input_shape holds more than "
                           "2^63 values per sample; that is more than ctrain can allocate");
    if (size > CT_MAX_FLOATS)
        return ct_node_err(err, ct_map_get(cfg, "input_shape"), "input_shape holds %" PRId64
                           " values per sample; that is more than ctrain can allocate", size);
    return 0;
}

ct_model *ct_model_build_within(ct_node *cfg, const ct_backend *be,
                                const ct_model_budget *budget, ct_error *err)
{
    static const char *const keys[] = {"name", "input_shape", "layers", NULL};
    if (!cfg || cfg->type != CT_NODE_MAP) {
        if (cfg)
            ct_node_err(err, cfg, "'model' must be a map with input_shape and layers");
        else
            ct_err(err, CT_ERR_CONFIG, "the experiment needs a 'model' section");
        return NULL;
    }
    if (ct_cfg_check_keys(cfg, keys, "model", err) < 0)
        return NULL;
    ct_model *m = calloc(1, sizeof *m);
    if (!m) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->be = be;
    const char *name;
    if (ct_cfg_string(cfg, "name", "sequential", &name, err) < 0 ||
        read_input_shape(m, cfg, err) < 0 || ct_cfg_require(cfg, "layers", "model", err) < 0)
        goto fail;
    snprintf(m->name, sizeof m->name, "%s", name);
    ct_node *layers = ct_map_get(cfg, "layers");
    if (layers->type != CT_NODE_SEQ || layers->len == 0) {
        ct_node_err(err, layers, "model.layers must be a non-empty list of layers");
        goto fail;
    }
    m->layers = calloc(layers->len, sizeof *m->layers);
    if (!m->layers) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < layers->len; i++) {
        ct_layer *l = &m->layers[i];
        l->index = (int)i;
        m->nlayers = (int)i + 1;
        if (configure_layer(m, l, layers->items[i], err) < 0 || build_layer(m, l, err) < 0 ||
            check_layer_sizes(l, err) < 0)
            goto fail;
    }
    /* The parameter blocks are allocated (and zeroed) next: check what they cost first. */
    ct_model_budget physical = {ct_physical_memory(), true, 1, 0, 0};
    if (ct_model_check_budget(m, budget ? budget : &physical, err) < 0 ||
        layout_params(m, err) < 0)
        goto fail;
    return m;
fail:
    ct_model_free(m);
    return NULL;
}

void ct_model_free(ct_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind && m->layers[i].kind->free_state)
            m->layers[i].kind->free_state(&m->layers[i]);
    free(m->layers);
    free(m->params);
    if (m->be) {
        m->be->free(m->values);
        m->be->free(m->grads);
        m->be->free(m->buffers);
    }
    free(m->out);
    free(m->dout);
    free(m);
}

void ct_model_init_params(ct_model *m, uint64_t seed)
{
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            ct_param *p = &l->params[j];
            int64_t n = ct_shape_size(&p->shape);
            float *host = m->be->device == CT_DEVICE_CPU ? p->value : malloc((size_t)n * sizeof *host);
            if (!host)
                continue;
            ct_init_fill(&p->init, host, &p->shape, ct_rng_key(seed, CT_RNG_INIT, (uint64_t)i, (uint64_t)j));
            if (host != p->value) {
                m->be->upload(p->value, host, (size_t)n * sizeof *host);
                free(host);
            }
        }
    }
}

/* Each planned buffer starts 64 bytes after a multiple of 64, so vector loads (and a GPU's
 * 16-byte ones) never depend on where the previous buffer ended. */
static int64_t aligned(int64_t n)
{
    return n > INT64_MAX - 15 ? INT64_MAX : (n + 15) & ~(int64_t)15;
}

int ct_model_plan(ct_model *m, int64_t max_batch, ct_error *err)
{
    if (m->max_batch == max_batch && m->buffers)
        return 0;
    m->be->free(m->buffers);
    m->buffers = NULL;
    free(m->out);
    free(m->dout);
    m->out = calloc((size_t)m->nlayers, sizeof *m->out);
    m->dout = calloc((size_t)m->nlayers, sizeof *m->dout);
    if (!m->out || !m->dout)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    /* Sizes first: input, then per layer output + gradient + scratch (views need none).
     * Checked arithmetic: an absurd batch must be an error, not a wrapped-around size. */
    int64_t in, total;
    bool overflow = max_batch < 1 || max_batch > INT64_MAX / 2 ||
                    __builtin_mul_overflow(max_batch, ct_shape_size(&m->input_shape), &in);
    total = overflow ? 0 : aligned(in);
    for (int i = 0; i < m->nlayers && !overflow; i++) {
        ct_layer *l = &m->layers[i];
        int64_t n = 0;
        if (!l->kind->is_view)
            overflow |= __builtin_mul_overflow(max_batch, ct_shape_size(&l->out_shape), &n) ||
                        n > INT64_MAX / 4 || __builtin_add_overflow(total, 2 * aligned(n), &total);
        if (l->kind->scratch_floats)
            overflow |= __builtin_add_overflow(total, aligned(l->kind->scratch_floats(l, max_batch)),
                                               &total);
    }
    if (overflow)
        return ct_err(err, CT_ERR_NOMEM, "batches of %" PRId64 " rows need more memory than "
                      "ctrain can count; use a smaller batch_size", max_batch);
    if (total > CT_MAX_FLOATS)
        return ct_err(err, CT_ERR_NOMEM, "batches of %" PRId64 " rows need %.1f GiB of "
                      "activations; use a smaller batch_size", max_batch, (double)total * 4 / (1 << 30));
    m->buffers = m->be->alloc((size_t)total * sizeof(float));
    if (!m->buffers)
        return ct_err(err, CT_ERR_NOMEM, "cannot allocate %.1f MiB of activations for batches "
                      "of %" PRId64 " rows", (double)total * 4 / (1 << 20), max_batch);
    float *at = m->buffers;
    m->input = (ct_tensor){at, max_batch, m->input_shape, m->be->device};
    at += aligned(in);
    float *prev_out = m->input.data, *prev_dout = NULL;
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        int64_t n = max_batch * ct_shape_size(&l->out_shape);
        m->out[i] = (ct_tensor){prev_out, max_batch, l->out_shape, m->be->device};
        m->dout[i] = (ct_tensor){prev_dout, max_batch, l->out_shape, m->be->device};
        if (!l->kind->is_view) {
            m->out[i].data = at;
            m->dout[i].data = at + aligned(n);
            at += 2 * aligned(n);
        }
        if (l->kind->scratch_floats) {
            l->scratch = at;
            at += aligned(l->kind->scratch_floats(l, max_batch));
        }
        prev_out = m->out[i].data;
        prev_dout = m->dout[i].data;
    }
    m->max_batch = max_batch;
    return 0;
}

const ct_tensor *ct_model_forward(ct_model *m, const ct_pass *pass, int64_t rows)
{
    m->input.rows = rows;
    const ct_tensor *x = &m->input;
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        m->out[i].rows = rows;
        m->dout[i].rows = rows;
        if (l->kind->is_view) /* the input may have moved (a GPU's batches take turns) */
            m->out[i].data = x->data;
        if (!l->kind->is_view) {
            double t0 = m->profile ? ct_now() : 0;
            l->kind->forward(l, pass, &x, 1, &m->out[i]);
            if (m->profile) {
                m->be->sync(); /* a GPU's layer time is known only once it finished */
                m->profile[2 * i] += ct_now() - t0;
            }
        }
        x = &m->out[i];
    }
    return x;
}

/* *penalty += weight * (l1 * sum|w| + l2 * sum w^2) over the regularized parameters; adds
 * their gradient to the gradient block when with_grad. */
static void regularize(const ct_model *m, bool with_grad, double weight, double *penalty)
{
    for (int k = 0; k < m->nparams; k++) {
        const ct_param *p = m->params[k];
        if (p->reg.l1 == 0 && p->reg.l2 == 0)
            continue;
        m->be->regularize(p->value, with_grad ? p->grad : NULL, ct_shape_size(&p->shape),
                          p->reg.l1, p->reg.l2, weight, penalty);
    }
}

bool ct_model_regularized(const ct_model *m)
{
    for (int k = 0; k < m->nparams; k++)
        if (m->params[k]->reg.l1 != 0 || m->params[k]->reg.l2 != 0)
            return true;
    return false;
}

void ct_model_backward(ct_model *m, const ct_pass *pass, double weight, double *penalty)
{
    for (int i = m->nlayers - 1; i >= 0; i--) {
        ct_layer *l = &m->layers[i];
        if (l->kind->is_view)
            continue;
        const ct_tensor *x = i ? &m->out[i - 1] : &m->input;
        /* No gradient is wanted for the input batch (nor through leading views of it). */
        ct_tensor *dx = (i > 0 && m->dout[i - 1].data) ? &m->dout[i - 1] : NULL;
        double t0 = m->profile ? ct_now() : 0;
        l->kind->backward(l, pass, &x, 1, &m->out[i], &m->dout[i], &dx);
        if (m->profile) {
            m->be->sync();
            m->profile[2 * i + 1] += ct_now() - t0;
        }
    }
    regularize(m, true, weight, penalty);
}

void ct_model_penalty(const ct_model *m, double weight, double *penalty)
{
    regularize(m, false, weight, penalty);
}

const ct_shape *ct_model_output_shape(const ct_model *m)
{
    return m->nlayers ? &m->layers[m->nlayers - 1].out_shape : &m->input_shape;
}

static void group_digits(int64_t v, char *buf, size_t n)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%" PRId64, v);
    size_t len = strlen(raw), at = 0;
    for (size_t i = 0; i < len && at + 1 < n; i++) {
        if (i && (len - i) % 3 == 0 && at + 2 < n)
            buf[at++] = ',';
        buf[at++] = raw[i];
    }
    buf[at] = 0;
}

static void human_bytes(double b, char *buf, size_t n)
{
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, n, "%.2f %s", b, units[u]);
}

/* Prints `count` copies of a (multi-byte) box-drawing character. */
static void repeat(FILE *out, const char *s, int count)
{
    for (int i = 0; i < count; i++)
        fputs(s, out);
}

static void rule(FILE *out, int name_w, const char *l, const char *fill, const char *mid,
                 const char *r)
{
    fputs(l, out);
    repeat(out, fill, name_w + 2);
    fputs(mid, out);
    repeat(out, fill, 24);
    fputs(mid, out);
    repeat(out, fill, 15);
    fprintf(out, "%s\n", r);
}

void ct_model_summary(const ct_model *m, FILE *out)
{
    /* Keras's widths, widened for long layer names. */
    int name_w = 31;
    for (int i = 0; i < m->nlayers; i++) {
        int w = (int)(strlen(m->layers[i].name) + strlen(m->layers[i].kind->class_name) + 3);
        name_w = w > name_w ? w : name_w;
    }
    fprintf(out, "Model: \"%s\"\n", m->name);
    rule(out, name_w, "┏", "━", "┳", "┓");
    fprintf(out, "┃ %-*s ┃ %-22s ┃ %13s ┃\n", name_w, "Layer (type)", "Output Shape", "Param #");
    rule(out, name_w, "┡", "━", "╇", "┩");
    int64_t total = 0, trainable = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        int64_t n = 0;
        for (int j = 0; j < l->nparams; j++) {
            int64_t s = ct_shape_size(&l->params[j].shape);
            n += s;
            if (l->params[j].trainable)
                trainable += s;
        }
        total += n;
        char name[160], shape[128], count[32];
        snprintf(name, sizeof name, "%s (%s)", l->name, l->kind->class_name);
        ct_shape_format(&l->out_shape, shape, sizeof shape);
        group_digits(n, count, sizeof count);
        fprintf(out, "│ %-*s │ %-22s │ %13s │\n", name_w, name, shape, count);
    }
    rule(out, name_w, "└", "─", "┴", "┘");
    char c[32], b[32];
    group_digits(total, c, sizeof c);
    human_bytes((double)total * 4, b, sizeof b);
    fprintf(out, " Total params: %s (%s)\n", c, b);
    group_digits(trainable, c, sizeof c);
    human_bytes((double)trainable * 4, b, sizeof b);
    fprintf(out, " Trainable params: %s (%s)\n", c, b);
    group_digits(total - trainable, c, sizeof c);
    human_bytes((double)(total - trainable) * 4, b, sizeof b);
    fprintf(out, " Non-trainable params: %s (%s)\n", c, b);
}
