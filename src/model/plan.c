/* plan.c - the model's buffers for batches of up to max_batch rows, allocated once.
 *
 * Every computed layer keeps its output for the backward pass (layers read x and y there).
 * Gradients are planned by lifetime: the gradient of a tensor is written first by its last
 * consumer in backward order (or by the loss, for an output) and read last by the layer
 * that produced it; tensors whose gradients are never alive at once share a buffer, so a
 * chain needs two. Where a tensor has several consumers (fan-out, an output that also
 * feeds a layer, a layer taking the same tensor twice), the first writes the gradient and
 * each later one writes a temporary that is then added in, in a fixed order. Views
 * (flatten, reshape) alias their input's buffers, so their consumers count as consumers
 * of the tensor they view.
 *
 * A plan for inference alone (evaluate, predict) keeps no gradients and shares the
 * activations by lifetime as well; the tensors in m->kept live to the end, as outputs. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

/* Each buffer starts 64 bytes after a multiple of 64, so vector loads (and a GPU's
 * 16-byte ones) never depend on where the previous buffer ended. */
static int64_t aligned(int64_t n)
{
    return n > INT64_MAX - 15 ? INT64_MAX : (n + 15) & ~(int64_t)15;
}

/* A gradient buffer's lifetime in backward steps: the losses are step -1, layer i's
 * backward is step nlayers - 1 - i. */
typedef struct span {
    int start, end;
    int64_t floats;       /* per row */
    int slot;
} span;

typedef struct planner {
    ct_model *m;
    int *root;            /* per tensor: the tensor whose buffers it uses, or -1 - input */
    bool *written;        /* per tensor (root): its gradient has a first writer already */
    int *gspan;           /* per tensor (root): its gradient's span, or -1 */
    span *spans;
    int nspans;
    int *tmp_span;        /* per temporary: its span */
    int *aspan;           /* inference: per tensor, its span (forward steps), or -1 */
    bool *wants;          /* training: per tensor, whether its gradient is needed */
} planner;

static int step_of(const ct_model *m, int layer) { return m->nlayers - 1 - layer; }

/* The backward step of the layer that computes tensor t. */
static int tensor_step(const ct_model *m, ct_source_id t)
{
    return step_of(m, ct_tensor_layer(m, t));
}

static int64_t tensor_floats(const ct_model *m, ct_source_id t)
{
    return ct_shape_size(ct_tensor_shape(m, t));
}

/* Tensor of output o of layer i. */
static ct_source_id output_tensor(const ct_model *m, int i, int o)
{
    return o ? m->more_at[i] + o - 1 : i;
}

/* The layer's output mask is a buffer of its own (not an input's). */
static bool owns_mask(const ct_layer *l)
{
    return l->mask_out == CT_MASK_WRITES || l->mask_out == CT_MASK_UNION;
}

/* Floats per row of an output mask of its own: a union's is followed by its work space. */
static int64_t mask_floats(const ct_layer *l)
{
    return (l->mask_out == CT_MASK_UNION ? 2 : 1) * l->out_shape.dim[0];
}

static bool computed(const ct_model *m, int i)
{
    return m->live[i] && !ct_layer_is_view(&m->layers[i]);
}

/* Assigns each span a slot: a slot is reused by a span that starts after the slot's last
 * span ended; the closest size that fits is preferred. Returns the slot count; sizes out. */
static int assign_slots(span *s, int n, int64_t *slot_size, int *slot_end, bool keep)
{
    int nslots = 0;
    for (int i = 0; i < n; i++) {
        int best = -1;
        for (int k = 0; k < nslots && !keep; k++) {
            if (slot_end[k] >= s[i].start)
                continue;
            bool fits = slot_size[k] >= s[i].floats, best_fits = best >= 0 && slot_size[best] >= s[i].floats;
            if (best < 0 || (fits && (!best_fits || slot_size[k] < slot_size[best])) ||
                (!fits && !best_fits && slot_size[k] > slot_size[best]))
                best = k;
        }
        if (best < 0) {
            best = nslots++;
            slot_size[best] = 0;
        }
        if (slot_size[best] < s[i].floats)
            slot_size[best] = s[i].floats;
        slot_end[best] = s[i].end;
        s[i].slot = best;
    }
    return nslots;
}

static int add_span(planner *p, int start, int end, int64_t floats)
{
    span *s = &p->spans[p->nspans];
    *s = (span){start, end, floats, -1};
    return p->nspans++;
}

/* Records that edge (layer j, input k) or the loss of an output (j = -1) writes the
 * gradient of tensor `src` at step t. Returns the temporary's index, or -1 for a direct
 * write. */
static int writer(planner *p, ct_source_id src, int t, int *ntmp)
{
    int r = p->root[src];
    const ct_model *m = p->m;
    int64_t floats = tensor_floats(m, src);
    if (!p->written[r]) {
        p->written[r] = true;
        p->gspan[r] = add_span(p, t, tensor_step(m, r), tensor_floats(m, r));
        return -1;
    }
    p->tmp_span[*ntmp] = add_span(p, t, t, floats);
    return (*ntmp)++;
}

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->start != y->start ? (x->start > y->start) - (x->start < y->start)
                                : (x->end > y->end) - (x->end < y->end);
}

/* Which writes go where. Fills plan->x, dx targets (as temp indices in dx_tmp) and the
 * spans. */
typedef struct edges {
    int *dx_tmp;          /* per edge: -2 none, -1 direct, else temporary index */
    int loss_tmp[CT_MAX_IO];
    int *tmp_into;        /* per temporary: the root tensor it is added into */
    int *tmp_src;         /* per temporary: the tensor whose shape it has */
    int *tmp_after;       /* per temporary: the layer whose backward writes it (-1: loss) */
} edges;

static void plan_writes(planner *p, edges *e, int *ntmp)
{
    ct_model *m = p->m;
    for (int k = 0; k < m->noutputs; k++) {
        int o = m->outputs[k];
        e->loss_tmp[k] = -2;
        if (p->root[o] >= 0) {
            e->loss_tmp[k] = writer(p, o, -1, ntmp);
            if (e->loss_tmp[k] >= 0) {
                e->tmp_into[e->loss_tmp[k]] = p->root[o];
                e->tmp_src[e->loss_tmp[k]] = o;
                e->tmp_after[e->loss_tmp[k]] = -1;
            }
        }
    }
    for (int i = m->nlayers - 1; i >= 0; i--) {
        if (!computed(m, i))
            continue;
        int at = m->plan->xat[i];
        for (int k = 0; k < m->layers[i].ninputs; k++) {
            ct_source_id s = m->sources[i][k];
            e->dx_tmp[at + k] = -2;
            if (s < 0 || p->root[s] < 0 || !p->wants[s])
                continue;
            int t = writer(p, s, step_of(m, i), ntmp);
            e->dx_tmp[at + k] = t;
            if (t >= 0) {
                e->tmp_into[t] = p->root[s];
                e->tmp_src[t] = s;
                e->tmp_after[t] = i;
            }
        }
    }
}

static int plan_alloc_lists(ct_model *m, ct_error *err)
{
    struct ct_plan *pl = calloc(1, sizeof *pl);
    m->plan = pl;
    if (!pl)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    pl->xat = calloc((size_t)m->nlayers + 1, sizeof *pl->xat);
    if (!pl->xat)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->nlayers; i++)
        pl->xat[i + 1] = pl->xat[i] + m->layers[i].ninputs;
    int nedges = pl->xat[m->nlayers];
    pl->x = calloc((size_t)nedges + 1, sizeof *pl->x);
    pl->dx = calloc((size_t)nedges + 1, sizeof *pl->dx);
    pl->backprop = calloc((size_t)m->nlayers + 1, sizeof *pl->backprop);
    if (!pl->x || !pl->dx || !pl->backprop)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    return 0;
}

void ct_plan_free(ct_model *m)
{
    struct ct_plan *pl = m->plan;
    if (!pl)
        return;
    free(pl->x);
    free(pl->dx);
    free(pl->backprop);
    free(pl->xat);
    free(pl->sums);
    free(pl->tmp);
    free(pl);
    m->plan = NULL;
}

/* Floats of everything but the gradient slots, per the sizes; false on overflow. */
static bool add_floats(int64_t *total, int64_t rows, int64_t per_row)
{
    int64_t n;
    return !__builtin_mul_overflow(rows, per_row, &n) && n <= INT64_MAX / 4 &&
           !__builtin_add_overflow(*total, aligned(n), total);
}

typedef struct layout {
    int nslots;
    int64_t *slot_size;
    int *slot_end;
} layout;

static int too_big(int64_t max_batch, int64_t total, bool overflow, ct_error *err)
{
    if (overflow)
        return ct_err(err, CT_ERR_NOMEM, "batches of %" PRId64 " rows need more memory than "
                      "ctrain can count; use a smaller batch_size", max_batch);
    if (total > (INT64_C(1) << 34))
        return ct_err(err, CT_ERR_NOMEM, "batches of %" PRId64 " rows need %.1f GiB of "
                      "activations; use a smaller batch_size", max_batch,
                      (double)total * 4 / (1 << 30));
    return 0;
}

static int64_t plan_total(const ct_model *m, int64_t max_batch, const layout *lay,
                          bool training, bool *overflow)
{
    int64_t total = 0;
    bool bad = max_batch < 1 || max_batch > INT64_MAX / 2;
    for (int k = 0; k < m->ninputs && !bad; k++)
        bad |= !add_floats(&total, max_batch, ct_shape_size(&m->input_shapes[k]));
    for (int i = 0; i < m->nlayers && !bad; i++) {
        const ct_layer *l = &m->layers[i];
        if (!computed(m, i))
            continue;
        for (int o = 0; training && o < l->noutputs; o++)
            bad |= !add_floats(&total, max_batch, tensor_floats(m, output_tensor(m, i, o)));
        if (l->kind->scratch_floats)
            bad |= !add_floats(&total, 1, l->kind->scratch_floats(l, max_batch));
        if (owns_mask(l))
            bad |= !add_floats(&total, max_batch, mask_floats(l));
    }
    for (int k = 0; k < lay->nslots && !bad; k++)
        bad |= !add_floats(&total, max_batch, lay->slot_size[k]);
    *overflow = bad;
    return total;
}

/* Output masks: a buffer of max_batch x steps for those the layer makes, else the mask of
 * the input it passes on (inputs come first in topological order; a view, such as a
 * fused-away ReLU, passes its input's on too). */
static float *lay_out_masks(ct_model *m, int64_t max_batch, float *at)
{
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        if (!m->live[i] || l->mask_out == CT_MASK_NONE)
            continue;
        if (owns_mask(l)) {
            m->out[i].mask = at;
            at += aligned(max_batch * mask_floats(l));
        } else {
            ct_source_id s = m->sources[i][l->mask_out];
            m->out[i].mask = s >= 0 ? m->out[s].mask : NULL;
        }
    }
    return at;
}

/* Points every tensor at its place in m->buffers. */
static void lay_out(ct_model *m, int64_t max_batch, const planner *p, const layout *lay,
                    const edges *e, float **slot_at)
{
    const ct_device dev = m->be->device;
    float *at = m->buffers;
    for (int k = 0; k < m->ninputs; k++) {
        m->inputs[k] = (ct_tensor){at, max_batch, m->input_shapes[k], dev, NULL};
        at += aligned(max_batch * ct_shape_size(&m->input_shapes[k]));
    }
    for (int t = 0; t < m->ntensors; t++) {
        m->out[t] = (ct_tensor){NULL, max_batch, *ct_tensor_shape(m, t), dev, NULL};
        m->dout[t] = m->out[t];
    }
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        if (!computed(m, i))
            continue;
        for (int o = 0; o < l->noutputs; o++) {
            ct_source_id t = output_tensor(m, i, o);
            if (p->aspan[t] < 0) { /* training: every output kept */
                m->out[t].data = at;
                at += aligned(max_batch * tensor_floats(m, t));
            }
        }
        if (l->kind->scratch_floats) {
            l->scratch = at;
            at += aligned(l->kind->scratch_floats(l, max_batch));
        }
    }
    at = lay_out_masks(m, max_batch, at);
    for (int k = 0; k < lay->nslots; k++) {
        slot_at[k] = at;
        at += aligned(max_batch * lay->slot_size[k]);
    }
    for (int t = 0; t < m->ntensors; t++)
        if (p->aspan[t] >= 0)
            m->out[t].data = slot_at[p->spans[p->aspan[t]].slot];
    for (int t = 0; t < m->ntensors; t++) {
        int r = p->root[t];
        if (r >= 0 && p->gspan[r] >= 0)
            m->dout[t].data = slot_at[p->spans[p->gspan[r]].slot];
        if (t < m->nlayers && ct_layer_is_view(&m->layers[t])) /* re-pointed at each batch */
            m->out[t].data = r >= 0 ? m->out[r].data : m->inputs[-1 - r].data;
    }
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        l->more_y = l->noutputs > 1 ? &m->out[m->more_at[i]] : NULL;
        l->more_dy = l->noutputs > 1 ? &m->dout[m->more_at[i]] : NULL;
    }
    struct ct_plan *pl = m->plan;
    for (int t = 0; t < pl->ntmp; t++) {
        pl->tmp[t] = (ct_tensor){slot_at[p->spans[p->tmp_span[t]].slot], max_batch,
                                 *ct_tensor_shape(m, e->tmp_src[t]), dev, NULL};
    }
}

/* The input pointers, gradient targets and sums. Temporaries were created in backward
 * order (the losses' first), which is the order their sums run in. */
static void wire(ct_model *m, const edges *e)
{
    struct ct_plan *pl = m->plan;
    for (int i = 0; i < m->nlayers; i++)
        for (int k = 0; k < m->layers[i].ninputs; k++) {
            ct_source_id s = m->sources[i][k];
            int at = pl->xat[i] + k;
            pl->x[at] = s < 0 ? &m->inputs[-1 - s] : &m->out[s];
            int t = computed(m, i) ? e->dx_tmp[at] : -2;
            pl->dx[at] = t == -2 ? NULL : t == -1 ? &m->dout[s] : &pl->tmp[t];
        }
    for (int t = 0; t < pl->ntmp; t++)
        pl->sums[t] = (ct_grad_sum){pl->tmp[t].data, m->dout[e->tmp_into[t]].data,
                                    ct_shape_size(&pl->tmp[t].shape),
                                    e->tmp_after[t] < 0 ? m->nlayers : e->tmp_after[t]};
    for (int k = 0; k < m->noutputs; k++) {
        int t = e->loss_tmp[k];
        pl->loss_grad[k] = t == -2 ? (ct_tensor){0} : t == -1 ? m->dout[m->outputs[k]] : pl->tmp[t];
    }
}

typedef struct plan_work {
    planner p;
    edges e;
    layout lay;
    float **slot_at;
} plan_work;

static void work_free(plan_work *w)
{
    free(w->p.root);
    free(w->p.written);
    free(w->p.gspan);
    free(w->p.spans);
    free(w->p.tmp_span);
    free(w->p.aspan);
    free(w->p.wants);
    free(w->e.dx_tmp);
    free(w->e.tmp_into);
    free(w->e.tmp_src);
    free(w->e.tmp_after);
    free(w->lay.slot_size);
    free(w->lay.slot_end);
    free(w->slot_at);
}

static int work_alloc(plan_work *w, const ct_model *m, ct_error *err)
{
    size_t n = (size_t)m->ntensors, edges = (size_t)m->plan->xat[m->nlayers];
    size_t spans = edges + (size_t)m->noutputs + n + 1;
    w->p.root = calloc(n, sizeof *w->p.root);
    w->p.written = calloc(n, sizeof *w->p.written);
    w->p.gspan = malloc(n * sizeof *w->p.gspan);
    w->p.spans = calloc(spans, sizeof *w->p.spans);
    w->p.tmp_span = calloc(spans, sizeof *w->p.tmp_span);
    w->p.aspan = malloc(n * sizeof *w->p.aspan);
    w->p.wants = calloc(n, sizeof *w->p.wants);
    w->e.dx_tmp = calloc(edges + 1, sizeof *w->e.dx_tmp);
    w->e.tmp_into = calloc(spans, sizeof *w->e.tmp_into);
    w->e.tmp_src = calloc(spans, sizeof *w->e.tmp_src);
    w->e.tmp_after = calloc(spans, sizeof *w->e.tmp_after);
    w->lay.slot_size = calloc(spans, sizeof *w->lay.slot_size);
    w->lay.slot_end = calloc(spans, sizeof *w->lay.slot_end);
    w->slot_at = calloc(spans, sizeof *w->slot_at);
    if (!w->p.root || !w->p.written || !w->p.gspan || !w->p.spans || !w->p.tmp_span ||
        !w->e.dx_tmp || !w->e.tmp_into || !w->e.tmp_src || !w->e.tmp_after ||
        !w->lay.slot_size || !w->lay.slot_end || !w->slot_at || !w->p.aspan || !w->p.wants)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        w->p.gspan[i] = w->p.aspan[i] = -1;
    return 0;
}

/* Inference: no gradients; each computed layer's outputs live from its layer's step to the
 * last step that reads them (through views too), a model output's to the end, so a chain
 * needs two buffers. */
static void plan_activations(planner *p, edges *e)
{
    ct_model *m = p->m;
    int *last = p->gspan; /* borrowed: no gradient spans in this mode */
    for (int t = 0; t < m->ntensors; t++)
        last[t] = ct_tensor_layer(m, t);
    for (int j = 0; j < m->nlayers; j++)
        for (int k = 0; m->live[j] && k < m->layers[j].ninputs; k++) {
            ct_source_id s = m->sources[j][k];
            if (s >= 0 && p->root[s] >= 0 && last[p->root[s]] < j)
                last[p->root[s]] = j;
        }
    for (int k = 0; k < m->noutputs; k++)
        if (p->root[m->outputs[k]] >= 0)
            last[p->root[m->outputs[k]]] = m->nlayers;
    for (int k = 0; k < m->nkept; k++) /* read after the pass, as outputs are */
        if (p->root[m->kept[k]] >= 0)
            last[p->root[m->kept[k]]] = m->nlayers;
    for (int t = 0; t < m->ntensors; t++)
        if (computed(m, ct_tensor_layer(m, t)))
            p->aspan[t] = add_span(p, ct_tensor_layer(m, t), last[t], tensor_floats(m, t));
    for (int t = 0; t < m->ntensors; t++)
        p->gspan[t] = -1;
    for (int t = 0; t < m->plan->xat[m->nlayers]; t++)
        e->dx_tmp[t] = -2;
    for (int k = 0; k < m->noutputs; k++)
        e->loss_tmp[k] = -2;
}

static bool has_trainable(const ct_layer *l)
{
    for (int j = 0; j < l->nparams; j++)
        if (l->params[j].trainable)
            return true;
    return false;
}

/* A tensor's gradient is needed where a trainable parameter lies at or before its layer:
 * the layers of a frozen base that starts the model run no backward and get no gradient
 * buffers. Model outputs always get their loss's gradient. Layers come in graph order. */
static void find_wanted(const ct_model *m, bool *wants, bool *backprop)
{
    for (int i = 0; i < m->nlayers; i++) {
        const ct_layer *l = &m->layers[i];
        bool w = has_trainable(l) || (l->shared && has_trainable(l->shared));
        for (int k = 0; k < l->ninputs && !w; k++)
            w = m->sources[i][k] >= 0 && wants[m->sources[i][k]];
        backprop[i] = w;
        wants[i] = w;
        for (int o = 1; o < l->noutputs; o++)
            wants[m->more_at[i] + o - 1] = w;
    }
}

static void find_roots(const ct_model *m, int *root)
{
    for (int t = m->nlayers; t < m->ntensors; t++)
        root[t] = t; /* outputs 1 and up: never views */
    for (int i = 0; i < m->nlayers; i++) {
        ct_source_id s = m->sources[i][0];
        root[i] = !ct_layer_is_view(&m->layers[i]) ? i : s < 0 ? s : root[s];
    }
}

int ct_plan_make(ct_model *m, int64_t max_batch, bool training, ct_error *err)
{
    plan_work w;
    memset(&w, 0, sizeof w);
    w.p.m = m;
    int rc = -1, ntmp = 0;
    if (plan_alloc_lists(m, err) < 0 || work_alloc(&w, m, err) < 0)
        goto done;
    find_roots(m, w.p.root);
    if (training) {
        find_wanted(m, w.p.wants, m->plan->backprop);
        plan_writes(&w.p, &w.e, &ntmp);
    }
    else
        plan_activations(&w.p, &w.e);
    struct ct_plan *pl = m->plan;
    pl->ntmp = ntmp;
    pl->tmp = calloc((size_t)ntmp + 1, sizeof *pl->tmp);
    pl->sums = calloc((size_t)ntmp + 1, sizeof *pl->sums);
    if (!pl->tmp || !pl->sums) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* Slots are assigned in order of first use; the spans keep their identity through
     * the indices stored in gspan / tmp_span, so sort a copy's order instead. */
    int *by_start = calloc((size_t)w.p.nspans + 1, sizeof *by_start);
    span *sorted = calloc((size_t)w.p.nspans + 1, sizeof *sorted);
    if (!by_start || !sorted) {
        free(by_start);
        free(sorted);
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < w.p.nspans; i++) {
        sorted[i] = w.p.spans[i];
        sorted[i].slot = i; /* remembers the original index */
    }
    qsort(sorted, (size_t)w.p.nspans, sizeof *sorted, span_cmp);
    for (int i = 0; i < w.p.nspans; i++)
        by_start[i] = sorted[i].slot;
    w.lay.nslots = assign_slots(sorted, w.p.nspans, w.lay.slot_size, w.lay.slot_end,
                                training && m->keep_gradients);
    for (int i = 0; i < w.p.nspans; i++)
        w.p.spans[by_start[i]].slot = sorted[i].slot;
    free(by_start);
    free(sorted);
    bool overflow;
    int64_t total = plan_total(m, max_batch, &w.lay, training, &overflow);
    if (too_big(max_batch, total, overflow, err) < 0)
        goto done;
    m->buffers = m->be->alloc((size_t)(total ? total : 1) * sizeof(float));
    if (!m->buffers) {
        ct_err(err, CT_ERR_NOMEM, "cannot allocate %.1f MiB of activations for batches of %"
               PRId64 " rows", (double)total * 4 / (1 << 20), max_batch);
        goto done;
    }
    lay_out(m, max_batch, &w.p, &w.lay, &w.e, w.slot_at);
    wire(m, &w.e);
    rc = 0;
done:
    work_free(&w);
    return rc;
}
