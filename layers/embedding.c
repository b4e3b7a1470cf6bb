/* embedding.c - Embedding (Keras), PositionEmbedding and TokenAndPositionEmbedding
 * (keras_hub).
 *
 * Token ids arrive as floats holding integers. The forward is a row gather from the table
 * and the backward a scatter-add into its gradient (backend gather_rows /
 * scatter_add_rows); ids get no gradient. An id that is not an integer in
 * [0, input_dim) reads a row of zeros and adds nothing to the gradient: Keras raises
 * there, but here the data are checked before training (a model input read by these
 * layers is a token input, see token_ids), so the guard only keeps a bad id from reading
 * outside the table.
 *
 * mask_zero: true (Embedding, TokenAndPositionEmbedding) makes id 0 padding: the output
 * carries a mask, 0 where the id is 0, which the layers after it honour (layer.h). */
#include <stdlib.h>

#include "layer.h"

typedef struct embed_state {
    int64_t vocab, dim;    /* token table: vocab x dim (0: none) */
    int64_t seq_len;       /* position table: seq_len x dim (0: none) */
    int64_t steps;         /* positions per sample in use (build) */
    ct_init init, pos_init;
    ct_regularizer reg;
    bool mask_zero;
} embed_state;

static embed_state *state_of(ct_layer *l, ct_error *err)
{
    embed_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    return s;
}

/* Token ids travel as float32, which holds every integer up to 2^24 exactly. */
#define MAX_IDS (INT64_C(1) << 24)

/* cfg[key]: a required integer in [1, max]. */
static int read_size(ct_layer *l, ct_node *cfg, const char *key, int64_t max, int64_t *out,
                     ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (ct_cfg_require(cfg, key, what, err))
        return -1;
    return ct_cfg_int(cfg, key, 1, 1, max, out, err);
}

/* The mask is over the sequence axis: a token input of one axis. */
static int check_mask_input(ct_layer *l, const embed_state *s, ct_error *err)
{
    char buf[256];
    if (!s->mask_zero || l->in_shape.ndim == 1)
        return 0;
    return ct_layer_err_at(err, l, ct_map_get(l->cfg, "mask_zero"),
                           "mask_zero needs an input of one axis (sequence) of token ids, got %s",
                           ct_shape_format(&l->in_shape, buf, sizeof buf));
}

static int mask_zero_out(const ct_layer *l, const bool *in_masked)
{
    (void)in_masked;
    const embed_state *s = l->state;
    return s->mask_zero ? CT_MASK_WRITES : CT_MASK_NONE;
}

/* The output's mask: 0 where the id is 0. */
static void write_mask(const ct_layer *l, const ct_tensor *x, ct_tensor *y)
{
    const embed_state *s = l->state;
    if (s->mask_zero && y->mask)
        l->be->step_mask(x->data, x->rows * ct_shape_size(&x->shape), 1, 0.0f, y->mask);
}

static void embed_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

static int64_t embed_token_ids(const ct_layer *l)
{
    const embed_state *s = l->state;
    return s->vocab;
}

static int too_many_axes(ct_layer *l, ct_error *err)
{
    char buf[256];
    return ct_layer_err(err, l, "cannot add an axis to input %s (at most %d axes)",
                        ct_shape_format(&l->in_shape, buf, sizeof buf), CT_MAX_DIMS);
}

/* Gradient of a table read by n ids: zeroed, then their rows of dy added. */
static void table_grad(const ct_layer *l, const ct_param *p, const float *dy, const float *ids,
                       int64_t n, int64_t vocab, int64_t dim)
{
    if (!p->grad)
        return;
    l->be->fill(p->grad, vocab * dim, 0.0f);
    l->be->scatter_add_rows(dy, ids, n, dim, p->grad, vocab);
}

/* Ids carry no gradient. */
static void no_id_grad(const ct_layer *l, ct_tensor *dx)
{
    if (dx)
        l->be->fill(dx->data, dx->rows * ct_shape_size(&dx->shape), 0.0f);
}

/* Gradient of a position table of which the first steps rows were added to every one of
 * n blocks of dy: their sums, and zeros for the rows not used. */
static void position_grad(const ct_layer *l, const ct_param *p, const float *dy, int64_t n,
                          int64_t steps, int64_t seq_len, int64_t dim)
{
    if (!p->grad)
        return;
    l->be->sum_rows(dy, p->grad, n, steps * dim, 0.0f);
    if (seq_len > steps)
        l->be->fill(p->grad + steps * dim, (seq_len - steps) * dim, 0.0f);
}

/* ---- Embedding ----------------------------------------------------------------------- */

static const char *const embedding_keys[] = {
    "input_dim", "output_dim", "embeddings_initializer", "embeddings_regularizer",
    "mask_zero", "input_length", NULL,
};

static int embedding_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    embed_state *s = state_of(l, err);
    if (!s || ct_layer_check_keys(l, cfg, embedding_keys, err) ||
        read_size(l, cfg, "input_dim", MAX_IDS, &s->vocab, err) ||
        read_size(l, cfg, "output_dim", INT32_MAX, &s->dim, err) ||
        ct_init_parse(cfg, "embeddings_initializer", "uniform", &s->init, err) ||
        ct_regularizer_parse(cfg, "embeddings_regularizer", &s->reg, err))
        return -1;
    /* input_length: ignored, as in Keras 3 */
    return ct_cfg_bool(cfg, "mask_zero", false, &s->mask_zero, err);
}

static int embedding_build(ct_layer *l, ct_error *err)
{
    embed_state *s = l->state;
    if (l->in_shape.ndim >= CT_MAX_DIMS)
        return too_many_axes(l, err);
    if (check_mask_input(l, s, err))
        return -1;
    l->nparams = 0;
    l->out_shape = l->in_shape;
    l->out_shape.dim[l->out_shape.ndim++] = s->dim;
    int64_t tdim[2] = {s->vocab, s->dim};
    return ct_layer_add_param(l, "embeddings", ct_shape_make(2, tdim), s->init, s->reg, true,
                              err) < 0 ? -1 : 0;
}

static void embedding_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                              int nx, ct_tensor *y)
{
    (void)pass;
    (void)nx;
    const embed_state *s = l->state;
    const ct_tensor *x = xs[0];
    l->be->gather_rows(l->params[0].value, s->vocab, s->dim, x->data,
                       x->rows * ct_shape_size(&x->shape), y->data);
    write_mask(l, x, y);
}

static void embedding_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                               int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass;
    (void)nx;
    (void)y;
    const embed_state *s = l->state;
    const ct_tensor *x = xs[0];
    table_grad(l, &l->params[0], dy->data, x->data, x->rows * ct_shape_size(&x->shape),
               s->vocab, s->dim);
    no_id_grad(l, dxs[0]);
}

const ct_layer_kind ct_layer_embedding = {
    .name = "embedding",
    .class_name = "Embedding",
    .configure = embedding_configure,
    .build = embedding_build,
    .forward = embedding_forward,
    .backward = embedding_backward,
    .free_state = embed_free,
    .token_ids = embed_token_ids,
    .masks = CT_MASK_BY_KIND,
    .mask_out = mask_zero_out,
};

/* ---- PositionEmbedding: x + table[:T] over inputs (..., T, dim) ---------------------- */

static const char *const position_keys[] = {"sequence_length", "initializer", NULL};

static int position_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    embed_state *s = state_of(l, err);
    if (!s || ct_layer_check_keys(l, cfg, position_keys, err) ||
        read_size(l, cfg, "sequence_length", INT32_MAX, &s->seq_len, err))
        return -1;
    return ct_init_parse(cfg, "initializer", "glorot_uniform", &s->pos_init, err);
}

/* The sequence axis of `steps` positions must fit the table. */
static int check_steps(ct_layer *l, const embed_state *s, int64_t steps, ct_error *err)
{
    char buf[256];
    if (steps <= s->seq_len)
        return 0;
    return ct_layer_err(err, l, "input %s has %lld positions, more than sequence_length %lld",
                        ct_shape_format(&l->in_shape, buf, sizeof buf), (long long)steps,
                        (long long)s->seq_len);
}

static int position_build(ct_layer *l, ct_error *err)
{
    embed_state *s = l->state;
    const ct_shape *in = &l->in_shape;
    if (in->ndim < 2) {
        char buf[256];
        return ct_layer_err(err, l, "expects an input (sequence, features), got %s",
                            ct_shape_format(in, buf, sizeof buf));
    }
    s->steps = in->dim[in->ndim - 2];
    s->dim = in->dim[in->ndim - 1];
    if (check_steps(l, s, s->steps, err))
        return -1;
    l->nparams = 0;
    l->out_shape = *in;
    int64_t tdim[2] = {s->seq_len, s->dim};
    return ct_layer_add_param(l, "embeddings", ct_shape_make(2, tdim), s->pos_init,
                              (ct_regularizer){0, 0}, true, err) < 0 ? -1 : 0;
}

/* Blocks of steps x dim floats in a batch: samples times any leading axes. */
static int64_t position_blocks(const embed_state *s, const ct_tensor *x)
{
    return x->rows * (ct_shape_size(&x->shape) / (s->steps * s->dim));
}

static void position_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                             int nx, ct_tensor *y)
{
    (void)pass;
    (void)nx;
    const embed_state *s = l->state;
    const ct_tensor *x = xs[0];
    int64_t n = position_blocks(s, x);
    l->be->copy(y->data, x->data, n * s->steps * s->dim);
    l->be->add_row_vector(y->data, l->params[0].value, n, s->steps * s->dim);
}

static void position_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs,
                              int nx, const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass;
    (void)nx;
    (void)y;
    const embed_state *s = l->state;
    int64_t n = position_blocks(s, xs[0]);
    position_grad(l, &l->params[0], dy->data, n, s->steps, s->seq_len, s->dim);
    if (dxs[0])
        l->be->copy(dxs[0]->data, dy->data, n * s->steps * s->dim);
}

const ct_layer_kind ct_layer_position_embedding = {
    .name = "position_embedding",
    .class_name = "PositionEmbedding",
    .configure = position_configure,
    .build = position_build,
    .forward = position_forward,
    .backward = position_backward,
    .free_state = embed_free,
    .masks = CT_MASK_PASSES,
};

/* ---- TokenAndPositionEmbedding: token rows plus position rows, input (T) ------------- */

static const char *const tap_keys[] = {
    "vocabulary_size", "sequence_length", "embedding_dim", "embeddings_initializer",
    "mask_zero", "tie_weights", NULL,
};

static int tap_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    embed_state *s = state_of(l, err);
    bool tie; /* only matters for keras_hub's reverse projection, which is not here */
    if (!s || ct_layer_check_keys(l, cfg, tap_keys, err) ||
        read_size(l, cfg, "vocabulary_size", MAX_IDS, &s->vocab, err) ||
        read_size(l, cfg, "sequence_length", INT32_MAX, &s->seq_len, err) ||
        read_size(l, cfg, "embedding_dim", INT32_MAX, &s->dim, err) ||
        ct_init_parse(cfg, "embeddings_initializer", "uniform", &s->init, err) ||
        ct_cfg_bool(cfg, "tie_weights", true, &tie, err) ||
        ct_cfg_bool(cfg, "mask_zero", false, &s->mask_zero, err))
        return -1;
    s->pos_init = s->init; /* keras_hub gives both tables this initializer */
    return 0;
}

static int tap_build(ct_layer *l, ct_error *err)
{
    embed_state *s = l->state;
    const ct_shape *in = &l->in_shape;
    if (in->ndim != 1) {
        char buf[256];
        return ct_layer_err(err, l, "expects an input (sequence) of token ids, got %s",
                            ct_shape_format(in, buf, sizeof buf));
    }
    s->steps = in->dim[0];
    if (check_steps(l, s, s->steps, err))
        return -1;
    l->nparams = 0;
    l->out_shape = ct_shape_make(2, (int64_t[]){s->steps, s->dim});
    int64_t tdim[2] = {s->vocab, s->dim}, pdim[2] = {s->seq_len, s->dim};
    if (ct_layer_add_param(l, "token_embedding/embeddings", ct_shape_make(2, tdim), s->init,
                           (ct_regularizer){0, 0}, true, err) < 0 ||
        ct_layer_add_param(l, "position_embedding/embeddings", ct_shape_make(2, pdim),
                           s->pos_init, (ct_regularizer){0, 0}, true, err) < 0)
        return -1;
    return 0;
}

static void tap_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                        ct_tensor *y)
{
    (void)pass;
    (void)nx;
    const embed_state *s = l->state;
    const ct_tensor *x = xs[0];
    l->be->gather_rows(l->params[0].value, s->vocab, s->dim, x->data, x->rows * s->steps,
                       y->data);
    l->be->add_row_vector(y->data, l->params[1].value, x->rows, s->steps * s->dim);
    write_mask(l, x, y);
}

static void tap_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                         const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)pass;
    (void)nx;
    (void)y;
    const embed_state *s = l->state;
    const ct_tensor *x = xs[0];
    table_grad(l, &l->params[0], dy->data, x->data, x->rows * s->steps, s->vocab, s->dim);
    position_grad(l, &l->params[1], dy->data, x->rows, s->steps, s->seq_len, s->dim);
    no_id_grad(l, dxs[0]);
}

const ct_layer_kind ct_layer_token_and_position_embedding = {
    .name = "token_and_position_embedding",
    .class_name = "TokenAndPositionEmbedding",
    .configure = tap_configure,
    .build = tap_build,
    .forward = tap_forward,
    .backward = tap_backward,
    .free_state = embed_free,
    .token_ids = embed_token_ids,
    .masks = CT_MASK_BY_KIND,
    .mask_out = mask_zero_out,
};
