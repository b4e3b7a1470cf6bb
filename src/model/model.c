/* model.c - models: building (the graph: graph.c; buffers: plan.c), parameter layout,
 * forward and backward passes, and the summary table. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "graph.h"
#include "progress.h"
#include "rng.h"

/* Trainable parameters first, so optimizers step one contiguous prefix of the block. */
static int layout_params(ct_model *m, ct_error *err)
{
    m->nparams = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (!m->layers[i].shared)
            m->nparams += m->layers[i].nparams;
    m->params = calloc((size_t)m->nparams + 1, sizeof *m->params);
    if (!m->params)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    int k = 0;
    int64_t off = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < m->nlayers; i++) {
            ct_layer *l = &m->layers[i];
            for (int j = 0; j < l->nparams && !l->shared; j++) {
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
    /* A shared application's gradients go to its own floats after the trainable ones and
     * are added into its owner's after the backward pass. */
    m->shadow = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; m->layers[i].shared && j < m->layers[i].nparams; j++)
            if (m->layers[i].params[j].trainable)
                m->shadow += ct_shape_size(&m->layers[i].params[j].shape);
    /* Frozen parameters' gradients (written by their layers, read by no one) last. */
    int64_t frozen = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i].nparams; j++)
            if (m->layers[i].params[j].frozen)
                frozen += ct_shape_size(&m->layers[i].params[j].shape);
    int64_t ngrads = m->trainable + m->shadow + frozen;
    m->values = m->be->alloc((size_t)(m->size ? m->size : 1) * sizeof(float));
    m->grads = m->be->alloc((size_t)(ngrads ? ngrads : 1) * sizeof(float));
    if (!m->values || !m->grads)
        return ct_err(err, CT_ERR_NOMEM, "cannot allocate %.1f MiB of parameters",
                      (double)(m->size + ngrads) * 4 / (1 << 20));
    for (int i = 0; i < m->nparams; i++) {
        ct_param *p = m->params[i];
        p->value = m->values + p->offset;
        p->grad = p->trainable ? m->grads + p->offset : NULL;
    }
    int64_t at = m->trainable;
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        for (int j = 0; l->shared && j < l->nparams; j++) {
            ct_param *p = &l->params[j];
            p->offset = l->shared->params[j].offset;
            p->value = l->shared->params[j].value;
            p->grad = p->trainable ? m->grads + at : NULL;
            at += p->trainable ? ct_shape_size(&p->shape) : 0;
        }
    }
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i].nparams; j++) {
            ct_param *p = &m->layers[i].params[j];
            if (p->frozen) {
                p->grad = m->grads + at;
                at += ct_shape_size(&p->shape);
            }
        }
    m->frozen_grads = frozen;
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



/* Each layer is checked as it is built, so the next one never works from a size that
 * overflowed or that no machine could hold. */
int ct_model_check_layer_sizes(const ct_layer *l, ct_error *err)
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
    for (int j = 0; j < l->nparams && !l->shared; j++) {
        const ct_param *p = &l->params[j];
        double size = (double)ct_shape_size(&p->shape);
        n.count += ct_shape_size(&p->shape);
        n.params += 4 * size * (p->trainable || p->frozen ? 2 : 1);
        n.state += p->trainable ? 4 * size * b->opt_slots : 0;
    }
    if (!ct_layer_is_view(l))
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
    double total = 4.0 * (double)b->extra;
    for (int k = 0; k < m->ninputs; k++)
        total += 4.0 * (double)b->batch * (double)ct_shape_size(&m->input_shapes[k]);
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
    ct_group_digits(n.count, count, sizeof count);
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
    return ct_model_build_within(cfg, be, NULL, CT_CONV_AUTO, err);
}

ct_model *ct_model_build_within(ct_node *cfg, const ct_backend *be,
                                const ct_model_budget *budget, ct_conv_algo conv_algo,
                                ct_error *err)
{
    static const char *const keys[] = {"name",    "input_shape", "inputs", "layers",
                                       "outputs", "weights", /* the experiment's */ NULL};
    if (!cfg || cfg->type != CT_NODE_MAP) {
        if (cfg)
            ct_node_err(err, cfg, "'model' must be a map with input_shape (or inputs) and layers");
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
    m->conv_algo = conv_algo;
    const char *name;
    if (ct_graph_build(m, cfg, err) < 0)
        goto fail;
    m->input_shape = m->input_shapes[0];
    if (ct_cfg_string(cfg, "name", m->functional ? "functional" : "sequential", &name, err) < 0)
        goto fail;
    if (strlen(name) >= sizeof m->name) {
        ct_node_err(err, ct_map_get(cfg, "name"), "model.name is %zu characters long; at most "
                    "%d are allowed", strlen(name), CT_NAME_MAX - 1);
        goto fail;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
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
    for (int i = 0; i < m->nlayers; i++) {
        if (m->layers[i].kind && m->layers[i].kind->free_state)
            m->layers[i].kind->free_state(&m->layers[i]);
        free((void *)m->layers[i].in_shapes);
        if (m->sources)
            free(m->sources[i]);
    }
    free(m->layers);
    free(m->sources);
    free(m->live);
    free(m->more_at);
    free(m->tensor_layer);
    free(m->tensor_index);
    free(m->params);
    free(m->warnings);
    free(m->kept);
    free(m->unfolded);
    if (m->be) {
        m->be->free(m->values);
        m->be->free(m->grads);
        m->be->free(m->buffers);
    }
    ct_plan_free(m);
    free(m->out);
    free(m->dout);
    free(m);
}

void ct_model_defer_init(ct_model *m, uint64_t seed)
{
    m->params_pending = true;
    m->pending_seed = seed;
}

void ct_model_init_params(ct_model *m, uint64_t seed)
{
    m->params_pending = false;
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        for (int j = 0; j < l->nparams && !l->shared; j++) {
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

/* Whether keep (nkeep tensors, as passed to plan) asks for the tensors kept now. */
static bool same_kept(const ct_model *m, int nkeep, const ct_source_id *keep)
{
    int n = 0;
    for (int j = 0; j < nkeep; j++) {
        if (!ct_model_keeps_anyway(m, keep[j]))
            if (n >= m->nkept || m->kept[n++] != keep[j])
                return false;
    }
    return n == m->nkept;
}

/* Folds the ReLUs unfolded for the last plan back into their layers (as built). */
static void refold(ct_model *m)
{
    for (int j = 0; j < m->nunfolded; j++) {
        int r = m->unfolded[j];
        m->layers[r].fused_away = true;
        m->layers[m->sources[r][0]].fused_relu = true;
    }
    m->nunfolded = 0;
}

/* Records keep (minus the tensors kept anyway) and unfolds the ReLU of every kept layer
 * that applies one folded into it: its output must be its own. */
static int set_kept(ct_model *m, int nkeep, const ct_source_id *keep, ct_error *err)
{
    refold(m);
    free(m->kept);
    free(m->unfolded);
    m->kept = NULL;
    m->unfolded = NULL;
    m->nkept = 0;
    if (nkeep == 0)
        return 0;
    m->kept = malloc((size_t)nkeep * sizeof *m->kept);
    m->unfolded = malloc((size_t)nkeep * sizeof *m->unfolded);
    if (!m->kept || !m->unfolded)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int j = 0; j < nkeep; j++) {
        ct_source_id t = keep[j];
        if (ct_model_keeps_anyway(m, t))
            continue;
        m->kept[m->nkept++] = t;
        if (t >= m->nlayers || !m->layers[t].fused_relu)
            continue;
        for (int r = t + 1; r < m->nlayers; r++)
            if (m->layers[r].fused_away && m->sources[r][0] == t) {
                m->layers[r].fused_away = false;
                m->layers[t].fused_relu = false;
                m->unfolded[m->nunfolded++] = r;
                break;
            }
    }
    return 0;
}

bool ct_model_keeps_anyway(const ct_model *m, ct_source_id t)
{
    if (t < 0)
        return true;
    for (int k = 0; k < m->noutputs; k++)
        if (m->outputs[k] == t)
            return true;
    return false;
}

static int plan(ct_model *m, int64_t max_batch, bool training, int nkeep,
                const ct_source_id *keep, ct_error *err)
{
    if (m->params_pending)
        ct_model_init_params(m, m->pending_seed);
    if (training)
        nkeep = 0;
    if (m->max_batch == max_batch && m->buffers && m->planned_training == training &&
        same_kept(m, nkeep, keep))
        return 0;
    m->be->free(m->buffers);
    m->buffers = NULL;
    m->max_batch = 0;
    ct_plan_free(m);
    free(m->out);
    free(m->dout);
    m->out = calloc((size_t)m->ntensors, sizeof *m->out);
    m->dout = calloc((size_t)m->ntensors, sizeof *m->dout);
    if (!m->out || !m->dout || set_kept(m, nkeep, keep, err) < 0)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    if (ct_plan_make(m, max_batch, training, err) < 0)
        return -1;
    /* Layers that reach no output are never computed; their gradients stay zero. */
    m->be->fill(m->grads, m->trainable + m->shadow + m->frozen_grads, 0.0f);
    m->max_batch = max_batch;
    m->planned_training = training;
    return 0;
}

int ct_model_plan(ct_model *m, int64_t max_batch, ct_error *err)
{
    return plan(m, max_batch, true, 0, NULL, err);
}

int ct_model_plan_inference(ct_model *m, int64_t max_batch, ct_error *err)
{
    return plan(m, max_batch, false, 0, NULL, err);
}

int ct_model_plan_inference_keeping(ct_model *m, int64_t max_batch, int nkeep,
                                    const ct_source_id *keep, ct_error *err)
{
    return plan(m, max_batch, false, nkeep, keep, err);
}

static void set_rows(ct_model *m, int64_t rows)
{
    for (int k = 0; k < m->ninputs; k++)
        m->inputs[k].rows = rows;
    for (int t = 0; t < m->ntensors; t++) {
        m->out[t].rows = rows;
        m->dout[t].rows = rows;
    }
    for (int t = 0; t < m->plan->ntmp; t++)
        m->plan->tmp[t].rows = rows;
    for (int k = 0; k < m->noutputs; k++)
        m->plan->loss_grad[k].rows = rows;
}

/* The union of layer i's input masks, for a merge joining different masks (Keras 3's
 * merge layers OR them): u = u + x - u x over the inputs, in the work space planned after
 * the mask. */
static void mask_union(ct_model *m, int i, const ct_tensor *const *x, int64_t rows)
{
    const ct_layer *l = &m->layers[i];
    int64_t n = rows * l->out_shape.dim[0];
    float *u = m->out[i].mask, *t = u + m->max_batch * l->out_shape.dim[0];
    m->be->copy(u, x[0]->mask, n);
    for (int j = 1; j < l->ninputs; j++) {
        m->be->mul(n, u, x[j]->mask, t);
        m->be->axpy(n, 1.0f, x[j]->mask, u);
        m->be->axpy(n, -1.0f, t, u);
    }
}

const ct_tensor *ct_model_forward(ct_model *m, const ct_pass *pass, int64_t rows)
{
    set_rows(m, rows);
    const struct ct_plan *pl = m->plan;
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        const ct_tensor *const *x = pl->x + pl->xat[i];
        if (ct_layer_is_view(l)) { /* the input may have moved (a GPU's batches take turns) */
            m->out[i].data = x[0]->data;
            continue;
        }
        if (!m->live[i])
            continue;
        double t0 = m->profile ? ct_now() : 0;
        if (l->mask_out == CT_MASK_UNION)
            mask_union(m, i, x, rows);
        l->kind->forward(l, pass, x, l->ninputs, &m->out[i]);
        if (m->profile) {
            m->be->sync(); /* a GPU's layer time is known only once it finished */
            m->profile[2 * i] += ct_now() - t0;
        }
    }
    return &m->out[m->outputs[0]];
}

const ct_tensor *ct_model_output(const ct_model *m, int k) { return &m->out[m->outputs[k]]; }

float *ct_model_output_grad(ct_model *m, int k) { return m->plan->loss_grad[k].data; }

static void run_sums(ct_model *m, int *next, int after)
{
    const struct ct_plan *pl = m->plan;
    for (; *next < pl->ntmp && pl->sums[*next].after == after; (*next)++) {
        const ct_grad_sum *s = &pl->sums[*next];
        m->be->axpy(m->inputs[0].rows * s->per_row, 1.0f, s->from, s->into);
    }
}

/* A shared application's parameter gradients join its owner's, in layer order. An owner
 * that is not computed itself (its own output reaches no output) wrote no gradient in this
 * backward pass: its gradient starts from zero, not from the last step's. */
static void join_shared_grads(ct_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        for (int j = 0; l->shared && m->live[i] && !m->live[l->shared->index] && j < l->nparams; j++)
            if (l->shared->params[j].grad)
                m->be->fill(l->shared->params[j].grad, ct_shape_size(&l->params[j].shape), 0.0f);
    }
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        for (int j = 0; l->shared && m->live[i] && j < l->nparams; j++)
            if (l->params[j].grad && l->shared->params[j].grad)
                m->be->axpy(ct_shape_size(&l->params[j].shape), 1.0f, l->params[j].grad,
                            l->shared->params[j].grad);
    }
}

/* *penalty += weight * (l1 * sum|w| + l2 * sum w^2) over the regularized parameters; adds
 * their gradient to the gradient block when with_grad. */
static void regularize(const ct_model *m, bool with_grad, double weight, double *penalty)
{
    for (int k = 0; k < m->nparams; k++) {
        const ct_param *p = m->params[k];
        /* Keras counts the regularizers of trainable weights only */
        if ((p->reg.l1 == 0 && p->reg.l2 == 0) || p->frozen)
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
    const struct ct_plan *pl = m->plan;
    int next = 0;
    run_sums(m, &next, m->nlayers); /* an output whose gradient two losses write */
    for (int i = m->nlayers - 1; i >= 0; i--) {
        ct_layer *l = &m->layers[i];
        if (ct_layer_is_view(l) || !m->live[i] || !pl->backprop[i])
            continue;
        double t0 = m->profile ? ct_now() : 0;
        l->kind->backward(l, pass, pl->x + pl->xat[i], l->ninputs, &m->out[i], &m->dout[i],
                          pl->dx + pl->xat[i]);
        run_sums(m, &next, i);
        if (m->profile) {
            m->be->sync();
            m->profile[2 * i + 1] += ct_now() - t0;
        }
        if (m->grads_done)
            m->grads_done(m->grads_done_ctx, i);
    }
    join_shared_grads(m);
    regularize(m, !m->grads_done, weight, penalty);
    if (m->grads_done)
        m->grads_done(m->grads_done_ctx, -1);
}

void ct_model_regularizer_grads(ct_model *m)
{
    double unused = 0; /* host memory: the CPU backend's */
    regularize(m, true, 0.0, &unused);
}

void ct_model_penalty(const ct_model *m, double weight, double *penalty)
{
    regularize(m, false, weight, penalty);
}

const ct_shape *ct_tensor_shape(const ct_model *m, ct_source_id t)
{
    if (t < 0)
        return &m->input_shapes[-1 - t];
    const ct_layer *l = &m->layers[ct_tensor_layer(m, t)];
    int k = ct_tensor_index(m, t);
    return k ? &l->more_shapes[k - 1] : &l->out_shape;
}

const ct_shape *ct_model_output_shape(const ct_model *m)
{
    return ct_tensor_shape(m, m->outputs[0]);
}

const ct_shape *ct_model_output_shape_at(const ct_model *m, int k)
{
    return ct_tensor_shape(m, m->outputs[k]);
}

const ct_layer *ct_layer_owner(const ct_layer *l) { return l->shared ? l->shared : l; }

