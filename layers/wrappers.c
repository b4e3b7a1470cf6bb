/* wrappers.c - Bidirectional and TimeDistributed: layers that run other layers.
 *
 * A wrapper builds its inner layers from its `layer` map through the registry and delegates
 * configure, build, scratch, forward and backward to them. The inner layers' parameters are
 * declared again as the wrapper's own, so they live in the model's blocks like any layer's;
 * before each pass the inner layers are pointed at those (and at their part of the
 * wrapper's scratch), so shared applications and re-planned buffers need nothing special.
 *
 * Weight names nest the wrapped layer's name as Keras 3 does: Bidirectional's are
 * "forward_<inner>/<weight>" then "backward_<inner>/<weight>", TimeDistributed's
 * "<inner>/<weight>" (<inner>: the wrapped layer's name, by default its type). Keras's
 * cell level ("lstm_cell") is left out, as the recurrent layers' own names leave it out.
 *
 * Bidirectional with return_state has Keras's outputs (the merged output, the forward
 * copy's states, the backward copy's), the copies writing theirs straight into the
 * wrapper's; given initial states, the first half start the forward copy, the rest the
 * backward one. */
#include <stdlib.h>
#include <string.h>

#include "layer.h"

extern const ct_layer_kind ct_layer_lstm, ct_layer_gru, ct_layer_simple_rnn;
extern const ct_layer_kind ct_layer_bidirectional, ct_layer_time_distributed;

enum { MERGE_CONCAT, MERGE_SUM, MERGE_MUL, MERGE_AVE };

typedef struct wrap_state {
    int ninner;               /* 2: forward and backward copies; 1: the time-distributed one */
    ct_layer inner[2];
    ct_shape in_shape[2];     /* what each inner layer reads */
    ct_shape inner_shapes[2][3]; /* bidirectional: each copy's sequence and initial states */
    int nstates;              /* bidirectional: initial states given to each copy */
    int first[2];             /* index of inner k's first parameter in the wrapper's */
    char wname[2][CT_NAME_MAX]; /* "forward_lstm": inner k's name inside the wrapper */
    int merge;
    bool sequences;           /* bidirectional: the copies return whole sequences */
    int64_t steps;            /* input timesteps */
} wrap_state;

/* Scratch floats of inner k for `rows` rows, rounded up so every region stays aligned. */
static int64_t inner_scratch(const ct_layer *in, int64_t rows)
{
    int64_t n = in->kind->scratch_floats ? in->kind->scratch_floats(in, rows) : 0;
    return (n + 15) & ~(int64_t)15;
}

/* ---- configuration ---------------------------------------------------------------- */

static wrap_state *state_of(ct_layer *l, ct_error *err)
{
    wrap_state *s = l->state;
    if (s) {
        for (int k = 0; k < s->ninner; k++)
            if (s->inner[k].kind && s->inner[k].kind->free_state)
                s->inner[k].kind->free_state(&s->inner[k]);
        memset(s, 0, sizeof *s);
        return s;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    return s;
}

/* The wrapped layer's map and kind from cfg["layer"]. */
static int inner_config(const ct_layer *l, ct_node *cfg, ct_node **out,
                        const ct_layer_kind **kind, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (ct_cfg_require(cfg, "layer", what, err))
        return -1;
    ct_node *v = ct_map_get(cfg, "layer");
    v->used = true;
    const ct_node *type = v->type == CT_NODE_MAP ? ct_map_get(v, "type") : NULL;
    if (!type || type->type != CT_NODE_SCALAR)
        return ct_layer_err_at(err, l, v, "layer must be a map with the wrapped layer's type "
                               "and keys, such as {type: lstm, units: 32}");
    *kind = ct_layer_kind_find(type->scalar);
    if (!*kind) {
        const char *near = ct_suggest(type->scalar, ct_layer_kind_list());
        char hint[128] = "";
        if (near)
            snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
        return ct_layer_err_at(err, l, type, "unknown layer type '%s'%s; known types: %s",
                               type->scalar, hint, ct_layer_kind_names());
    }
    if (ct_map_get(v, "inputs"))
        return ct_layer_err_at(err, l, ct_map_get(v, "inputs"),
                               "the wrapped layer takes the wrapper's input; give inputs "
                               "to the wrapper");
    if (ct_map_get(v, "trainable"))
        return ct_layer_err_at(err, l, ct_map_get(v, "trainable"),
                               "the wrapped layer's weights are the wrapper's; give trainable "
                               "to the wrapper");
    bool states = *kind == &ct_layer_lstm || *kind == &ct_layer_gru ||
                  *kind == &ct_layer_simple_rnn; /* its other inputs: initial states */
    if (((*kind)->min_inputs || (*kind)->max_inputs) && !states)
        return ct_layer_err_at(err, l, type, "wraps layers of one input, not %s",
                               (*kind)->class_name);
    *out = v;
    return 0;
}

/* Inner k: kind, name (prefix + the wrapped layer's name or type), config, backend. */
static int inner_init(ct_layer *l, int k, const char *prefix, const ct_layer_kind *kind,
                      ct_node *cfg, ct_error *err)
{
    wrap_state *s = l->state;
    ct_layer *in = &s->inner[k];
    const char *base;
    if (ct_cfg_string(cfg, "name", kind->name, &base, err))
        return -1;
    if (strchr(base, '/')) /* it becomes a group of the weights file */
        return ct_layer_err_at(err, l, ct_map_get(cfg, "name"), "the wrapped layer's name "
                               "'%s' holds '/'", base);
    int len = snprintf(s->wname[k], sizeof s->wname[k], "%s%s", prefix, base);
    if (len < 0 || len >= (int)sizeof s->wname[k])
        return ct_layer_err_at(err, l, ct_map_get(cfg, "name"), "the wrapped layer's name "
                               "'%s%s' is longer than %d characters", prefix, base,
                               CT_NAME_MAX - 1);
    /* its messages show where it sits: "layer 'bidirectional/forward_lstm' (LSTM)" */
    char full[3 * CT_NAME_MAX];
    len = snprintf(full, sizeof full, "%s/%s", l->name, s->wname[k]);
    len = len < CT_NAME_MAX ? len : CT_NAME_MAX - 1;
    memcpy(in->name, full, (size_t)len);
    in->name[len] = '\0';
    in->kind = kind;
    in->cfg = cfg;
    in->be = l->be;
    in->conv_algo = l->conv_algo;
    /* dropout streams are keyed by the layer index: each copy draws its own masks */
    in->index = l->index + k * (1 << 20);
    in->ninputs = 1;
    in->in_shapes = &s->in_shape[k];
    s->ninner = k + 1;
    return kind->configure ? kind->configure(in, cfg, err) : 0;
}

static bool recurrent(const ct_layer_kind *k)
{
    return k == &ct_layer_lstm || k == &ct_layer_gru || k == &ct_layer_simple_rnn;
}

static int read_merge(const ct_layer *l, ct_node *cfg, wrap_state *s, ct_error *err)
{
    static const char *const modes[] = {"concat", "sum", "mul", "ave", NULL};
    ct_node *v = ct_map_get(cfg, "merge_mode");
    if (v && ct_node_is_null(v))
        return ct_layer_err_at(err, l, v, "merge_mode null (the two outputs apart) is not "
                               "supported: a layer has one output; use concat, sum, mul or "
                               "ave");
    return ct_cfg_enum(cfg, "merge_mode", "concat", modes, &s->merge, err);
}

/* The backward copy is configured from the same map with go_backwards flipped for the
 * moment, so both read every other key alike. */
static int configure_backward(ct_layer *l, const ct_layer_kind *kind, ct_node *inner,
                              ct_error *err)
{
    ct_node *gb = ct_map_get(inner, "go_backwards");
    bool fwd;
    if (!gb || ct_node_bool(gb, &fwd, err))
        return ct_layer_err(err, l, "the wrapped layer has no go_backwards");
    char flipped[8];
    snprintf(flipped, sizeof flipped, "%s", fwd ? "false" : "true");
    char *was = gb->scalar;
    gb->scalar = flipped;
    int rc = inner_init(l, 1, "backward_", kind, inner, err);
    gb->scalar = was;
    return rc;
}

static int bidi_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"layer", "merge_mode", "backward_layer", NULL};
    if (ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    if (ct_map_get(cfg, "backward_layer"))
        return ct_layer_err_at(err, l, ct_map_get(cfg, "backward_layer"),
                               "backward_layer is not supported yet: the backward copy is "
                               "the wrapped layer with go_backwards flipped");
    ct_node *inner;
    const ct_layer_kind *kind;
    wrap_state *s = state_of(l, err);
    if (!s || inner_config(l, cfg, &inner, &kind, err) || read_merge(l, cfg, s, err))
        return -1;
    if (!recurrent(kind))
        return ct_layer_err_at(err, l, ct_map_get(inner, "type"), "wraps a recurrent layer "
                               "(lstm, gru or simple_rnn), not %s", kind->class_name);
    if (inner_init(l, 0, "forward_", kind, inner, err) ||
        configure_backward(l, kind, inner, err) ||
        ct_cfg_bool(inner, "return_sequences", false, &s->sequences, err))
        return -1;
    /* Keras: a padded step's output is zeros in both copies when sequences are returned */
    ct_recurrent_zero_masked_output(&s->inner[0], s->sequences);
    ct_recurrent_zero_masked_output(&s->inner[1], s->sequences);
    return 0;
}

static int td_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    static const char *const keys[] = {"layer", NULL};
    ct_node *inner;
    const ct_layer_kind *kind;
    wrap_state *s;
    if (ct_layer_check_keys(l, cfg, keys, err) || !(s = state_of(l, err)) ||
        inner_config(l, cfg, &inner, &kind, err))
        return -1;
    return inner_init(l, 0, "", kind, inner, err);
}

/* ---- build ------------------------------------------------------------------------ */

/* Builds inner k on s->in_shape[k] and declares its parameters as the wrapper's. */
static int inner_build(ct_layer *l, int k, ct_error *err)
{
    wrap_state *s = l->state;
    ct_layer *in = &s->inner[k];
    in->in_shape = s->in_shape[k];
    in->nparams = 0;
    if (in->kind->build(in, err))
        return -1;
    s->first[k] = l->nparams;
    for (int j = 0; j < in->nparams; j++) {
        const ct_param *p = &in->params[j];
        char name[96];
        snprintf(name, sizeof name, "%s/%s", s->wname[k], p->name);
        if (ct_layer_add_param(l, name, p->shape, p->init, p->reg, p->trainable, err) < 0)
            return -1;
    }
    l->algo = in->algo;
    return 0;
}

/* Inputs past the sequence are initial states as Keras takes them: the forward copy's,
 * then the backward copy's, half each. */
static int bidi_states(ct_layer *l, ct_error *err)
{
    wrap_state *s = l->state;
    if ((l->ninputs - 1) % 2)
        return ct_layer_err_at(err, l, ct_map_get(l->cfg, "inputs"), "takes its sequence, "
                               "or its sequence and the initial states of both copies (the "
                               "forward copy's, then the backward copy's): got %d inputs",
                               l->ninputs);
    s->nstates = (l->ninputs - 1) / 2;
    for (int k = 0; k < 2; k++) {
        s->inner_shapes[k][0] = l->in_shape;
        for (int j = 0; j < s->nstates; j++)
            s->inner_shapes[k][1 + j] = l->in_shapes[1 + k * s->nstates + j];
        s->inner[k].ninputs = 1 + s->nstates;
        s->inner[k].in_shapes = s->inner_shapes[k];
    }
    return 0;
}

static int bidi_build(ct_layer *l, ct_error *err)
{
    wrap_state *s = l->state;
    l->nparams = 0;
    s->in_shape[0] = s->in_shape[1] = l->in_shape;
    if (bidi_states(l, err) || inner_build(l, 0, err) || inner_build(l, 1, err))
        return -1;
    s->steps = l->in_shape.dim[0];
    l->out_shape = s->inner[0].out_shape;
    if (s->merge == MERGE_CONCAT)
        l->out_shape.dim[l->out_shape.ndim - 1] *= 2;
    /* return_state: the output, then each copy's states (Keras's order) */
    int per = s->inner[0].noutputs - 1;
    l->noutputs = 1 + 2 * per;
    for (int k = 0; k < 2 * per; k++)
        l->more_shapes[k] = s->inner[k / per].more_shapes[k % per];
    return 0;
}

static int td_build(ct_layer *l, ct_error *err)
{
    wrap_state *s = l->state;
    char buf[256];
    if (l->in_shape.ndim < 2)
        return ct_layer_err(err, l, "expects an input with a time axis (timesteps, ...), got "
                            "%s", ct_shape_format(&l->in_shape, buf, sizeof buf));
    l->nparams = 0;
    s->steps = l->in_shape.dim[0];
    s->in_shape[0] = ct_shape_make(l->in_shape.ndim - 1, l->in_shape.dim + 1);
    if (inner_build(l, 0, err))
        return -1;
    if (s->inner[0].noutputs > 1)
        return ct_layer_err(err, l, "wraps layers of one output; the wrapped %s has %d "
                            "(return_state)", s->inner[0].kind->class_name,
                            s->inner[0].noutputs);
    const ct_shape *o = &s->inner[0].out_shape;
    if (o->ndim + 1 > CT_MAX_DIMS)
        return ct_layer_err(err, l, "the wrapped layer's output %s has too many axes to add "
                            "time to", ct_shape_format(o, buf, sizeof buf));
    l->out_shape.ndim = o->ndim + 1;
    l->out_shape.dim[0] = s->steps;
    memcpy(l->out_shape.dim + 1, o->dim, (size_t)o->ndim * sizeof o->dim[0]);
    return 0;
}

/* ---- scratch and delegation ------------------------------------------------------- */

/* Bidirectional's own regions after the inner layers' scratch, each rows x o floats (o:
 * one copy's output per row): the two outputs, the backward one in input time order (in
 * backward: its gradient), and the gradients handed to each copy; then dx of the backward
 * copy (rows x input). */
typedef struct bidi_buf {
    float *yf, *yb, *rb, *dyf, *dyb, *dxb;
} bidi_buf;

static int64_t bidi_layout(const ct_layer *l, int64_t rows, float *base, bidi_buf *b)
{
    const wrap_state *s = l->state;
    int64_t off = inner_scratch(&s->inner[0], rows) + inner_scratch(&s->inner[1], rows);
    int64_t o = rows * ct_shape_size(&s->inner[0].out_shape);
    float **regions[5] = {&b->yf, &b->yb, &b->rb, &b->dyf, &b->dyb};
    for (int k = 0; k < 5; k++) {
        *regions[k] = base ? base + off : NULL;
        off += (o + 15) & ~(int64_t)15;
    }
    b->dxb = base ? base + off : NULL;
    return off + rows * ct_shape_size(&l->in_shape);
}

static int64_t bidi_scratch(const ct_layer *l, int64_t max_batch)
{
    bidi_buf b;
    return bidi_layout(l, max_batch, NULL, &b);
}

static int64_t td_scratch(const ct_layer *l, int64_t max_batch)
{
    const wrap_state *s = l->state;
    return inner_scratch(&s->inner[0], max_batch * s->steps);
}

/* Points the inner layers at the wrapper's parameters and their part of its scratch, laid
 * out for this pass's `rows` rows of the inner layers (forward and backward of a batch see
 * the same count, and a smaller batch needs no more than the planned one). */
static void attach(ct_layer *l, int64_t rows)
{
    wrap_state *s = l->state;
    float *at = l->scratch;
    for (int k = 0; k < s->ninner; k++) {
        ct_layer *in = &s->inner[k];
        for (int j = 0; j < in->nparams; j++) {
            const ct_param *p = &l->params[s->first[k] + j];
            in->params[j].value = p->value;
            in->params[j].grad = p->grad;
            in->params[j].offset = p->offset;
        }
        in->scratch = at;
        in->act_fused = l->act_fused;
        at = at ? at + inner_scratch(in, rows) : NULL;
    }
}

/* ---- bidirectional passes --------------------------------------------------------- */

/* dst (rows x T x c) = src with its time axis reversed. */
static void reverse_time(const ct_backend *be, const float *src, float *dst, int64_t rows,
                         int64_t T, int64_t c)
{
    for (int64_t t = 0; t < T; t++)
        be->copy_strided(src + (T - 1 - t) * c, T * c, dst + t * c, T * c, rows, c);
}

/* Each copy's inputs (the sequence and its initial states) into xk, and its returned
 * states pointed at the wrapper's. */
static void point_states(ct_layer *l, const ct_tensor *const *xs, const ct_tensor *xk[2][3])
{
    wrap_state *s = l->state;
    int per = s->inner[0].noutputs - 1;
    for (int k = 0; k < 2; k++) {
        xk[k][0] = xs[0];
        for (int j = 0; j < s->nstates; j++)
            xk[k][1 + j] = xs[1 + k * s->nstates + j];
        s->inner[k].more_y = per ? l->more_y + k * per : NULL;
        s->inner[k].more_dy = per ? l->more_dy + k * per : NULL;
    }
}

static void bidi_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                         ct_tensor *y)
{
    (void)nx;
    wrap_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t n = xs[0]->rows, T = s->sequences ? s->steps : 1;
    int64_t c = ct_shape_size(&s->inner[0].out_shape) / T, size = n * T * c;
    bidi_buf b;
    attach(l, n);
    bidi_layout(l, n, l->scratch, &b);
    ct_tensor yf = {b.yf, n, s->inner[0].out_shape, y->device, NULL}, yb = yf;
    yb.data = b.yb;
    const ct_tensor *xk[2][3];
    point_states(l, xs, xk);
    s->inner[0].kind->forward(&s->inner[0], pass, xk[0], 1 + s->nstates, &yf);
    s->inner[1].kind->forward(&s->inner[1], pass, xk[1], 1 + s->nstates, &yb);
    /* as Keras: the backward copy's sequence is put back in input time order */
    if (s->sequences)
        reverse_time(be, b.yb, b.rb, n, T, c);
    else
        be->copy(b.rb, b.yb, size);
    if (s->merge == MERGE_CONCAT) {
        be->copy_strided(b.yf, c, y->data, 2 * c, n * T, c);
        be->copy_strided(b.rb, c, y->data + c, 2 * c, n * T, c);
    } else if (s->merge == MERGE_MUL) {
        be->mul(size, b.yf, b.rb, y->data);
    } else {
        be->copy(y->data, b.yf, size);
        be->axpy(size, 1.0f, b.rb, y->data);
        if (s->merge == MERGE_AVE)
            be->scale(size, 0.5f, y->data);
    }
}

/* dyf and dyb: the gradients of each copy's output, from dy (the backward copy's in its
 * own processing order). */
static void bidi_split(const ct_layer *l, const float *dy, const bidi_buf *b, int64_t n)
{
    const wrap_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t T = s->sequences ? s->steps : 1;
    int64_t c = ct_shape_size(&s->inner[0].out_shape) / T, size = n * T * c;
    float *drb = b->rb; /* read by the mul case before it is overwritten */
    if (s->merge == MERGE_CONCAT) {
        be->copy_strided(dy, 2 * c, b->dyf, c, n * T, c);
        be->copy_strided(dy + c, 2 * c, drb, c, n * T, c);
    } else if (s->merge == MERGE_MUL) {
        be->mul(size, dy, b->rb, b->dyf);
        be->mul(size, dy, b->yf, drb);
    } else {
        be->copy(b->dyf, dy, size);
        if (s->merge == MERGE_AVE)
            be->scale(size, 0.5f, b->dyf);
        be->copy(drb, b->dyf, size);
    }
    if (s->sequences)
        reverse_time(be, drb, b->dyb, n, T, c);
    else
        be->copy(b->dyb, drb, size);
}

static void bidi_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                          const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    (void)y;
    wrap_state *s = l->state;
    int64_t n = xs[0]->rows;
    bidi_buf b;
    attach(l, n);
    bidi_layout(l, n, l->scratch, &b);
    if (dy->data) {
        bidi_split(l, dy->data, &b, n);
    } else { /* only the returned states are read */
        int64_t o = n * ct_shape_size(&s->inner[0].out_shape);
        l->be->fill(b.dyf, o, 0.0f);
        l->be->fill(b.dyb, o, 0.0f);
    }
    ct_tensor yf = {b.yf, n, s->inner[0].out_shape, dy->device, NULL}, yb = yf, dyf = yf,
              dyb = yf;
    yb.data = b.yb;
    dyf.data = b.dyf;
    dyb.data = b.dyb;
    ct_tensor dxb = {b.dxb, n, l->in_shape, dy->device, NULL};
    ct_tensor *dx = dxs[0];
    const ct_tensor *xk[2][3];
    ct_tensor *dk[2][3] = {{dx}, {dx ? &dxb : NULL}};
    point_states(l, xs, xk);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < s->nstates; j++)
            dk[k][1 + j] = dxs[1 + k * s->nstates + j];
    s->inner[0].kind->backward(&s->inner[0], pass, xk[0], 1 + s->nstates, &yf, &dyf, dk[0]);
    s->inner[1].kind->backward(&s->inner[1], pass, xk[1], 1 + s->nstates, &yb, &dyb, dk[1]);
    if (dx)
        l->be->axpy(ct_tensor_size(dx), 1.0f, b.dxb, dx->data);
}

/* ---- time-distributed passes ------------------------------------------------------ */

/* The same buffer seen as rows x T samples of the inner layer's shape. */
static ct_tensor per_step(const ct_tensor *t, int64_t steps, const ct_shape *inner)
{
    ct_tensor v = {t->data, t->rows * steps, *inner, t->device, NULL};
    return v;
}

static void td_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                       ct_tensor *y)
{
    (void)nx;
    wrap_state *s = l->state;
    ct_layer *in = &s->inner[0];
    attach(l, xs[0]->rows * s->steps);
    ct_tensor x = per_step(xs[0], s->steps, &in->in_shape), yi = per_step(y, s->steps, &in->out_shape);
    const ct_tensor *xp = &x;
    in->kind->forward(in, pass, &xp, 1, &yi);
}

static void td_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                        const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)nx;
    wrap_state *s = l->state;
    ct_layer *in = &s->inner[0];
    attach(l, xs[0]->rows * s->steps);
    ct_tensor x = per_step(xs[0], s->steps, &in->in_shape), yi = per_step(y, s->steps, &in->out_shape);
    ct_tensor dyi = per_step(dy, s->steps, &in->out_shape), dxi;
    ct_tensor *dxp = NULL;
    if (dxs[0]) {
        dxi = per_step(dxs[0], s->steps, &in->in_shape);
        dxp = &dxi;
    }
    const ct_tensor *xp = &x;
    in->kind->backward(in, pass, &xp, 1, &yi, &dyi, &dxp);
}

static ct_activation td_output_activation(const ct_layer *l)
{
    const wrap_state *s = l->state;
    const ct_layer *in = &s->inner[0];
    return in->kind->output_activation ? in->kind->output_activation(in) : CT_ACT_LINEAR;
}

static void wrap_free(ct_layer *l)
{
    wrap_state *s = l->state;
    for (int k = 0; s && k < s->ninner; k++)
        if (s->inner[k].kind && s->inner[k].kind->free_state)
            s->inner[k].kind->free_state(&s->inner[k]);
    free(s);
    l->state = NULL;
}

const ct_layer *ct_wrapper_inner(const ct_layer *l, int k, const char **wname)
{
    const wrap_state *s = l->state;
    if ((l->kind != &ct_layer_bidirectional && l->kind != &ct_layer_time_distributed) || !s ||
        k < 0 || k >= s->ninner)
        return NULL;
    if (wname)
        *wname = s->wname[k];
    return &s->inner[k];
}

/* Both copies honour the input's mask; returned sequences carry it on. */
static int bidi_mask_out(const ct_layer *l, const bool *in_masked)
{
    (void)in_masked;
    const wrap_state *s = l->state;
    return s->sequences ? 0 : CT_MASK_NONE;
}

const ct_layer_kind ct_layer_bidirectional = {
    .name = "bidirectional",
    .class_name = "Bidirectional",
    .configure = bidi_configure,
    .build = bidi_build,
    .scratch_floats = bidi_scratch,
    .forward = bidi_forward,
    .backward = bidi_backward,
    .free_state = wrap_free,
    .min_inputs = 1,
    .max_inputs = 5, /* the sequence and both copies' initial states; build checks */
    .mask_one_input = true, /* the copies given states ignore it (recurrent.c) */
    .masks = CT_MASK_BY_KIND,
    .mask_out = bidi_mask_out,
};

const ct_layer_kind ct_layer_time_distributed = {
    .name = "time_distributed",
    .class_name = "TimeDistributed",
    .configure = td_configure,
    .build = td_build,
    .scratch_floats = td_scratch,
    .forward = td_forward,
    .backward = td_backward,
    .free_state = wrap_free,
    .output_activation = td_output_activation,
    .masks = CT_MASK_PASSES, /* the inner layer runs on each step alone */
};
