/* masks.c - which layer outputs carry a mask, decided once the graph is built (Keras's
 * mask propagation): every layer's mask_out, and a warning where a mask reaches a layer
 * that does not use it. The buffers are the planner's (plan.c). */
#include <stdlib.h>

#include "graph.h"

/* Only a layer's output 0 (tensor s < nlayers) carries a mask: a recurrent layer's states,
 * its outputs 1 and up, have no timestep axis (as Keras: their masks are None). */
static bool source_masked(const ct_model *m, ct_source_id s)
{
    return s >= 0 && s < m->nlayers && m->layers[s].mask_out != CT_MASK_NONE;
}

/* The layer whose buffer holds the mask that source s carries (NULL: none). */
static const ct_layer *mask_owner(const ct_model *m, ct_source_id s)
{
    while (s >= 0 && s < m->nlayers) {
        const ct_layer *l = &m->layers[s];
        if (l->mask_out == CT_MASK_NONE)
            return NULL;
        if (l->mask_out < 0)
            return l;
        s = m->sources[s][l->mask_out];
    }
    return NULL;
}

/* Steps of the mask a tensor of shape s carries: its first axis. */
static int64_t steps(const ct_shape *s)
{
    return s->ndim >= 1 ? s->dim[0] : 0;
}

/* A per-step layer's output mask: its input's, or a merge's inputs' (their union when
 * they are different masks); none when the output has no such time axis. */
static int passed_mask(ct_model *m, ct_layer *l, const bool *in_masked, int *first)
{
    const ct_layer *owner = NULL;
    bool several = false;
    *first = -1;
    for (int j = 0; j < l->ninputs; j++) {
        if (!in_masked[j])
            continue;
        const ct_layer *o = mask_owner(m, m->sources[l->index][j]);
        if (*first < 0) {
            *first = j;
            owner = o;
        } else if (o != owner) {
            several = true;
        }
    }
    if (*first < 0)
        return CT_MASK_NONE;
    if (steps(&l->out_shape) != steps(&l->in_shapes[*first]) || l->out_shape.ndim < 1)
        return CT_MASK_NONE;
    return several ? CT_MASK_UNION : *first;
}

/* A merge with an input that carries no mask (Keras 3: the output carries none). */
static bool merges_unmasked(const ct_layer *l, const bool *in_masked)
{
    for (int j = 0; l->ninputs > 1 && j < l->ninputs; j++)
        if (!in_masked[j])
            return true;
    return false;
}

/* Where the mask set by the masked input of l ends. */
static int warn_ended(ct_model *m, const ct_layer *l, const bool *in_masked, const char *why)
{
    for (int j = 0; j < l->ninputs; j++)
        if (in_masked[j]) {
            const ct_layer *o = mask_owner(m, m->sources[l->index][j]);
            return ct_model_warn(m, l->cfg, "layer '%s' (%s) %s: the mask set by '%s' ends here",
                                 l->name, l->kind->class_name, why, o ? o->name : "?");
        }
    return 0;
}

/* A layer given more inputs than its sequence (initial states) and a masked sequence. */
static int warn_unapplied(ct_model *m, const ct_layer *l)
{
    const ct_layer *o = mask_owner(m, m->sources[l->index][0]);
    return ct_model_warn(m, l->cfg, "layer '%s' (%s) is given initial states, so the mask set "
                         "by '%s' does not reach its steps, as in Keras 3 (which passes a mask "
                         "only to a layer called on one tensor); its output carries the mask on",
                         l->name, l->kind->class_name, o ? o->name : "?");
}

/* *out: what l's output carries. Fails only when a warning cannot be stored. */
static int decide(ct_model *m, ct_layer *l, const bool *in_masked, int nmasked, int *out)
{
    int first = -1;
    bool warn = nmasked && m->live[l->index];
    switch (l->kind->masks) {
    case CT_MASK_PASSES:
        if (nmasked && merges_unmasked(l, in_masked)) {
            *out = CT_MASK_NONE;
            return warn ? warn_ended(m, l, in_masked, "merges an input without a mask") : 0;
        }
        *out = passed_mask(m, l, in_masked, &first);
        if (*out == CT_MASK_NONE && warn)
            return warn_ended(m, l, in_masked, "gives no timestep axis of the mask's length");
        return 0;
    case CT_MASK_BY_KIND:
        *out = l->kind->mask_out(l, in_masked);
        if (*out >= 0 && (*out >= l->ninputs || !in_masked[*out]))
            *out = CT_MASK_NONE;
        if (*out == CT_MASK_WRITES && l->out_shape.ndim < 1)
            *out = CT_MASK_NONE;
        return 0;
    case CT_MASK_ENDS:
    default:
        *out = CT_MASK_NONE;
        return warn ? warn_ended(m, l, in_masked, "does not use masks") : 0;
    }
}

int ct_graph_masks(ct_model *m, ct_error *err)
{
    for (int i = 0; i < m->nlayers; i++) {
        ct_layer *l = &m->layers[i];
        bool *in_masked = calloc((size_t)l->ninputs + 1, sizeof *in_masked);
        if (!in_masked)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
        int nmasked = 0;
        for (int j = 0; j < l->ninputs; j++)
            nmasked += in_masked[j] = source_masked(m, m->sources[i][j]);
        int rc = decide(m, l, in_masked, nmasked, &l->mask_out);
        if (rc == 0 && l->kind->mask_one_input && l->ninputs > 1 && in_masked[0] && m->live[i])
            rc = warn_unapplied(m, l);
        free(in_masked);
        if (rc < 0)
            return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    return 0;
}
