/* onnx_sequence.c - the ONNX translations of the sequence layers (onnx_translate.h):
 * embeddings (Gather on int64 ids), SimpleRNN, LSTM and GRU (ONNX's RNN, LSTM and GRU
 * operators, or Scan), Bidirectional and TimeDistributed, MultiHeadAttention (composed of
 * MatMul, Reshape, Transpose and Softmax), layer normalization and masking.
 *
 * ONNX's recurrent operators read (T, N, F) and give (T, directions, N, units), with the
 * weights per gate as rows: a Keras kernel (F, gates x units) becomes W (1, gates x units,
 * F), the gates in ONNX's order (LSTM i, o, f, c where Keras has i, f, c, o; GRU z, r, h
 * as Keras), and the bias B (1, 2 x gates x units) the input part then the recurrent part
 * (Keras's GRU with reset_after keeps both, linear_before_reset in ONNX; the others one,
 * the recurrent part zeros). go_backwards reverses the input and runs forward, so the
 * sequence comes out in processing order, as Keras's does. A layer whose input carries a
 * mask, or with an activation those operators lack, runs in ONNX's Scan instead, one
 * step of Keras's cell (its own weight layout) per iteration. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_translate.h"

typedef ct_onnx_exporter exporter;
typedef ct_onnx_val value;

/* ---- embeddings ---- */

/* x's token ids as int64: a token input's own, else its numbers cast (truncated; the
 * experiment's data checks keep them integers). */
static const char *ids_of(exporter *e, value *x, const char *base)
{
    if (x->ids)
        return x->ids;
    char *y = ct_onnx_name(&e->g, base, "ids");
    const char *f = ct_onnx_layout(e, x, false, base);
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Cast", base, 1, &f, y), "to", CT_ONNX_INT64);
    return y;
}

/* A 0/1 float32 mask from a bool tensor. */
static const char *as_floats(exporter *e, const char *base, const char *b)
{
    char *f = ct_onnx_name(&e->g, base, "mask");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Cast", base, 1, &b, f), "to", CT_ONNX_FLOAT);
    return f;
}

const char *ct_onnx_mask_zero(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *ids)
{
    int64_t zero = 0;
    const char *z = ct_onnx_int64s(&e->g, ct_onnx_name(&e->g, l->name, "zero"), 0, NULL, &zero);
    const char *eq = ct_onnx_binary(e, "Equal", l->name, ids_of(e, ids, l->name), z);
    return as_floats(e, l->name, ct_onnx_unary(e, "Not", l->name, eq));
}

/* The first `steps` rows of l's position table `name` (seq_len x dim) as an initializer. */
static const char *positions(exporter *e, const ct_layer *l, const char *name, int64_t steps)
{
    const float *v;
    const ct_param *p = ct_onnx_param(e, l, name, &v);
    if (!p)
        return NULL;
    int64_t dims[2] = {steps, p->shape.dim[1]};
    return ct_onnx_param_init(e, l, name, 2, dims);
}

/* Embedding: table rows by id; TokenAndPositionEmbedding: plus the position rows. */
int ct_onnx_embedding(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x, ct_onnx_val *out)
{
    bool tap = strcmp(l->kind->name, "embedding") != 0;
    const char *in[2] = {ct_onnx_param_init(e, l, tap ? "token_embedding/embeddings"
                                                      : "embeddings", 0, NULL),
                         ids_of(e, x, l->name)};
    if (!in[0])
        return -1;
    const char *y = ct_onnx_name(&e->g, l->name, "gather");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Gather", l->name, 2, in, y), "axis", 0);
    int64_t steps = l->in_shape.dim[0];
    if (tap)
        y = ct_onnx_binary(e, "Add", l->name, y,
                           positions(e, l, "position_embedding/embeddings", steps));
    out->nhwc = y;
    return y ? 0 : -1;
}

/* PositionEmbedding: x (N, ..., T, dim) plus the first T rows of the table. */
int ct_onnx_position_embedding(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x,
                               ct_onnx_val *out)
{
    const ct_shape *s = &l->in_shape;
    out->nhwc = ct_onnx_binary(e, "Add", l->name, ct_onnx_layout(e, x, false, l->name),
                               positions(e, l, "embeddings", s->dim[s->ndim - 2]));
    return out->nhwc ? 0 : -1;
}

/* ---- recurrent layers ---- */

enum { CELL_SIMPLE, CELL_LSTM, CELL_GRU };

/* What a recurrent layer (or a Bidirectional copy) computes. */
typedef struct rnn_spec {
    int cell, gates;
    int64_t units, in;
    bool backwards, sequences, states, reset_after;
    bool zero_masked;   /* zero_output_for_mask: a padded step's output is zeros */
} rnn_spec;

/* l's spec; flip: a Bidirectional's backward copy, whose go_backwards is its config's
 * flipped. */
static rnn_spec spec_of(const ct_layer *l, bool flip)
{
    const char *k = l->kind->name;
    rnn_spec r = {.cell = !strcmp(k, "lstm") ? CELL_LSTM : !strcmp(k, "gru") ? CELL_GRU
                                                                            : CELL_SIMPLE};
    r.gates = r.cell == CELL_LSTM ? 4 : r.cell == CELL_GRU ? 3 : 1;
    r.units = (int64_t)ct_onnx_cfg_num(l, "units", 1);
    r.in = l->in_shape.dim[1];
    r.backwards = ct_onnx_cfg_bool(l, "go_backwards", false) != flip;
    r.sequences = ct_onnx_cfg_bool(l, "return_sequences", false);
    r.states = ct_onnx_cfg_bool(l, "return_state", false);
    r.reset_after = r.cell == CELL_GRU && ct_onnx_cfg_bool(l, "reset_after", true);
    r.zero_masked = ct_onnx_cfg_bool(l, "zero_output_for_mask", false);
    return r;
}

/* An activation of a recurrent operator: ONNX's name and its alpha and beta (0: none). */
typedef struct rnn_act {
    const char *onnx;
    float alpha, beta;
} rnn_act;

/* The activation that l's config names under key, in the terms of ONNX's recurrent
 * operators; false where they have no such function. */
static bool act_of(const ct_layer *l, const char *key, const char *def, rnn_act *out)
{
    static const struct { const char *keras; rnn_act onnx; } acts[] = {
        {"tanh", {"Tanh", 0, 0}},         {"sigmoid", {"Sigmoid", 0, 0}},
        {"relu", {"Relu", 0, 0}},         {"linear", {"Affine", 1.0f, 0}},
        {"softsign", {"Softsign", 0, 0}}, {"softplus", {"Softplus", 0, 0}},
        {"elu", {"Elu", 1.0f, 0}},        {"leaky_relu", {"LeakyRelu", 0.2f, 0}},
        /* Keras 3: relu6(x + 3) / 6 */
        {"hard_sigmoid", {"HardSigmoid", 1.0f / 6.0f, 0.5f}},
    };
    const char *name = ct_onnx_cfg_str(l, key, def);
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (!strcmp(name, acts[i].keras)) {
            *out = acts[i].onnx;
            return true;
        }
    return false;
}

/* Whether ONNX's recurrent operators have l's activations. */
static bool native_acts(const ct_layer *l, const rnn_spec *r)
{
    rnn_act a;
    return act_of(l, "activation", "tanh", &a) &&
           (r->cell == CELL_SIMPLE || act_of(l, "recurrent_activation", "sigmoid", &a));
}

/* The activations attribute (and the alphas and betas of those that take them, in order,
 * as ONNX Runtime reads them): the LSTM's f, g, h; the GRU's f, g; the RNN's f. */
static void rnn_activations(exporter *e, const ct_layer *l, const rnn_spec *r,
                            Onnx__NodeProto *n)
{
    rnn_act f = {"Sigmoid", 0, 0}, g = {"Tanh", 0, 0};
    act_of(l, "activation", "tanh", &g);
    if (r->cell != CELL_SIMPLE)
        act_of(l, "recurrent_activation", "sigmoid", &f);
    rnn_act all[3] = {f, g, g};
    if (r->cell == CELL_SIMPLE)
        all[0] = g;
    int count = r->cell == CELL_LSTM ? 3 : r->cell == CELL_GRU ? 2 : 1, na = 0, nb = 0;
    const char *names[3];
    float alpha[3], beta[3];
    for (int i = 0; i < count; i++) {
        names[i] = all[i].onnx;
        if (all[i].alpha != 0)
            alpha[na++] = all[i].alpha;
        if (all[i].beta != 0 || !strcmp(all[i].onnx, "Affine") ||
            !strcmp(all[i].onnx, "HardSigmoid"))
            beta[nb++] = all[i].beta;
    }
    ct_onnx_attr_strings(&e->g, n, "activations", count, names);
    if (na)
        ct_onnx_attr_floats(&e->g, n, "activation_alpha", na, alpha);
    if (nb)
        ct_onnx_attr_floats(&e->g, n, "activation_beta", nb, beta);
}

/* Keras's (rows, gates x units) matrix of parameter `name` as ONNX's (1, gates x units,
 * rows), gates in ONNX's order. */
static const char *gate_rows(exporter *e, const ct_layer *l, const rnn_spec *r,
                             const char *name, const char *what)
{
    static const int lstm[4] = {0, 3, 1, 2}, same[3] = {0, 1, 2};
    const int *order = r->cell == CELL_LSTM ? lstm : same;
    const float *v;
    const ct_param *p = ct_onnx_param(e, l, name, &v);
    if (!p)
        return NULL;
    int64_t rows = p->shape.dim[0], u = r->units, gu = r->gates * u;
    float *w = malloc((size_t)(gu * rows) * sizeof *w);
    if (!w) {
        e->g.failed = true;
        return NULL;
    }
    for (int g = 0; g < r->gates; g++)
        for (int64_t j = 0; j < u; j++)
            for (int64_t i = 0; i < rows; i++)
                w[(g * u + j) * rows + i] = v[i * gu + order[g] * u + j];
    char full[CT_NAME_MAX * 3 + 64];
    ct_onnx_weight_name(e, l, what, full, sizeof full);
    int64_t dims[3] = {1, gu, rows};
    const char *out = ct_onnx_floats(&e->g, full, 3, dims, w);
    free(w);
    return out;
}

/* B (1, 2 x gates x units): the input biases then the recurrent ones (zeros but for a
 * reset_after GRU's), gates in ONNX's order; zeros without use_bias. */
static const char *rnn_bias(exporter *e, const ct_layer *l, const rnn_spec *r)
{
    static const int lstm[4] = {0, 3, 1, 2}, same[3] = {0, 1, 2};
    const int *order = r->cell == CELL_LSTM ? lstm : same;
    int64_t u = r->units, gu = r->gates * u, dims[2] = {1, 2 * gu};
    float *b = calloc((size_t)(2 * gu), sizeof *b);
    if (!b) {
        e->g.failed = true;
        return NULL;
    }
    const float *v;
    const ct_param *p = ct_onnx_param(e, l, "bias", &v);
    int parts = p && p->shape.ndim == 2 ? 2 : 1; /* a reset_after GRU's (2, 3u) */
    for (int k = 0; p && k < parts; k++)
        for (int g = 0; g < r->gates; g++)
            memcpy(b + k * gu + g * u, v + k * gu + order[g] * u, (size_t)u * sizeof *b);
    char full[CT_NAME_MAX * 3 + 64];
    ct_onnx_weight_name(e, l, "B", full, sizeof full);
    const char *out = ct_onnx_floats(&e->g, full, 2, dims, b);
    free(b);
    return out;
}

/* ---- masked recurrent layers: ONNX's Scan over the steps ---- */

/* Columns [c0, c1) of l's parameter `name` (rows x cols, or one row of cols): of every
 * row (row < 0), or of row `row` alone as a vector; an initializer "<layer>/<what>". */
static const char *param_part(exporter *e, const ct_layer *l, const char *name, int row,
                              int64_t c0, int64_t c1, const char *what)
{
    const float *v;
    const ct_param *p = ct_onnx_param(e, l, name, &v);
    if (!p)
        return NULL;
    int64_t rows = p->shape.ndim == 2 ? p->shape.dim[0] : 1;
    int64_t cols = p->shape.dim[p->shape.ndim - 1];
    int64_t r0 = row < 0 ? 0 : row, r1 = row < 0 ? rows : row + 1, w = c1 - c0;
    float *part = malloc((size_t)((r1 - r0) * w) * sizeof *part);
    if (!part) {
        e->g.failed = true;
        return NULL;
    }
    for (int64_t k = r0; k < r1; k++)
        memcpy(part + (k - r0) * w, v + k * cols + c0, (size_t)w * sizeof *part);
    char full[CT_NAME_MAX * 3 + 64];
    ct_onnx_weight_name(e, l, what, full, sizeof full);
    int64_t dims[2] = {r1 - r0, w};
    bool matrix = row < 0 && p->shape.ndim == 2;
    const char *out =
        ct_onnx_floats(&e->g, full, matrix ? 2 : 1, matrix ? dims : dims + 1, part);
    free(part);
    return out;
}

/* x (N, n u) split into n blocks of u columns, into parts. */
static void split(exporter *e, const char *base, const char *x, int n, int64_t u,
                  const char **parts)
{
    int64_t sizes[4] = {u, u, u, u};
    const char *in[2] = {x, ct_onnx_const_ints(e, base, n, sizes)};
    for (int k = 0; k < n; k++)
        parts[k] = ct_onnx_name(&e->g, base, "gate");
    ct_onnx_attr_int(&e->g, ct_onnx_node_n(&e->g, "Split", base, 2, in, n, parts), "axis", 1);
}

/* act(x) by the activation l's config names under key. */
static const char *act(exporter *e, const ct_layer *l, const char *key, const char *def,
                       const char *x, ct_error *err)
{
    const char *name = ct_onnx_cfg_str(l, key, def);
    return ct_onnx_activation(e, l->name, name, ct_onnx_default_alpha(name), x, err);
}

/* The GRU's step: p (N, 3u) holds x W + the input bias; Keras's gates z, r, h. */
static const char *gru_step(exporter *e, const ct_layer *l, const rnn_spec *r, const char *h,
                            const char *p, ct_error *err)
{
    const char *b = l->name, *ps[3], *hs[3];
    int64_t u = r->units;
    split(e, b, p, 3, u, ps);
    const char *hu = ct_onnx_binary(e, "MatMul", b, h,
                                    param_part(e, l, "recurrent_kernel", -1, 0,
                                               r->reset_after ? 3 * u : 2 * u, "U_step"));
    const char *rb = r->reset_after ? param_part(e, l, "bias", 1, 0, 3 * u, "recurrent_bias")
                                    : NULL;
    if (rb)
        hu = ct_onnx_binary(e, "Add", b, hu, rb);
    split(e, b, hu, r->reset_after ? 3 : 2, u, hs);
    const char *z = act(e, l, "recurrent_activation", "sigmoid",
                        ct_onnx_binary(e, "Add", b, ps[0], hs[0]), err);
    const char *rr = act(e, l, "recurrent_activation", "sigmoid",
                         ct_onnx_binary(e, "Add", b, ps[1], hs[1]), err);
    const char *cand;
    if (r->reset_after) /* r (h U_h + b_h) */
        cand = ct_onnx_binary(e, "Mul", b, rr, hs[2]);
    else /* (r h) U_h */
        cand = ct_onnx_binary(e, "MatMul", b, ct_onnx_binary(e, "Mul", b, rr, h),
                              param_part(e, l, "recurrent_kernel", -1, 2 * u, 3 * u,
                                         "U_candidate"));
    const char *hh = act(e, l, "activation", "tanh", ct_onnx_binary(e, "Add", b, ps[2], cand),
                         err);
    if (!z || !rr || !hh)
        return NULL;
    /* hh + z (h - hh), as ctrain computes it */
    return ct_onnx_binary(e, "Add", b, hh,
                          ct_onnx_binary(e, "Mul", b, z, ct_onnx_binary(e, "Sub", b, h, hh)));
}

/* The cell's step from state h (and c) and the step's input projection p to h2 (and c2). */
static int cell_step(exporter *e, const ct_layer *l, const rnn_spec *r, const char *h,
                     const char *c, const char *p, const char **h2, const char **c2,
                     ct_error *err)
{
    const char *b = l->name;
    if (r->cell == CELL_GRU)
        return (*h2 = gru_step(e, l, r, h, p, err)) ? 0 : -1;
    const char *z = ct_onnx_binary(e, "Add", b, p,
                                   ct_onnx_binary(e, "MatMul", b, h,
                                                  ct_onnx_param_init(e, l, "recurrent_kernel",
                                                                     0, NULL)));
    if (r->cell == CELL_SIMPLE)
        return (*h2 = act(e, l, "activation", "tanh", z, err)) ? 0 : -1;
    const char *g[4]; /* Keras's i, f, c, o */
    split(e, b, z, 4, r->units, g);
    const char *i = act(e, l, "recurrent_activation", "sigmoid", g[0], err);
    const char *f = act(e, l, "recurrent_activation", "sigmoid", g[1], err);
    const char *cc = act(e, l, "activation", "tanh", g[2], err);
    const char *o = act(e, l, "recurrent_activation", "sigmoid", g[3], err);
    if (!i || !f || !cc || !o)
        return -1;
    *c2 = ct_onnx_binary(e, "Add", b, ct_onnx_binary(e, "Mul", b, f, c),
                         ct_onnx_binary(e, "Mul", b, i, cc));
    const char *tc = act(e, l, "activation", "tanh", *c2, err);
    return tc && (*h2 = ct_onnx_binary(e, "Mul", b, o, tc)) ? 0 : -1;
}

/* A padded step keeps the state: from + m (to - from), as ctrain computes it. */
static const char *keep(exporter *e, const char *base, const char *m, const char *from,
                        const char *to)
{
    return ct_onnx_binary(e, "Add", base, from,
                          ct_onnx_binary(e, "Mul", base, m,
                                         ct_onnx_binary(e, "Sub", base, to, from)));
}

/* The Scan's body: state h (and c), the step's projection p and (when masked) mask m in;
 * the new state and the step's output out. */
static Onnx__GraphProto *scan_body(exporter *e, const ct_layer *l, const rnn_spec *r,
                                   bool masked, ct_error *err)
{
    const char *b = l->name;
    int64_t u = r->units, gu = r->gates * u;
    bool lstm = r->cell == CELL_LSTM;
    ct_onnx_sub outer;
    ct_onnx_sub_begin(&e->g, &outer);
    const char *h = ct_onnx_name(&e->g, b, "h"), *c = ct_onnx_name(&e->g, b, "c");
    const char *p = ct_onnx_name(&e->g, b, "p"), *mt = ct_onnx_name(&e->g, b, "m");
    const char *h2 = NULL, *c2 = NULL;
    int rc = cell_step(e, l, r, h, c, p, &h2, &c2, err);
    const char *m = masked ? ct_onnx_squeeze(e, "Unsqueeze", b, mt, 1) : NULL; /* (N, 1) */
    const char *hn = rc || !m ? h2 : keep(e, b, m, h, h2);
    const char *cn = lstm && !rc && m ? keep(e, b, m, c, c2) : c2;
    const char *y = hn ? (m && r->zero_masked ? ct_onnx_binary(e, "Mul", b, hn, m)
                                              : ct_onnx_unary(e, "Identity", b, hn))
                       : NULL;
    Onnx__ValueInfoProto *in[4], *out[3];
    int nin = 0, nout = 0;
    in[nin++] = ct_onnx_value(&e->g, h, CT_ONNX_FLOAT, 1, &u);
    if (lstm)
        in[nin++] = ct_onnx_value(&e->g, c, CT_ONNX_FLOAT, 1, &u);
    in[nin++] = ct_onnx_value(&e->g, p, CT_ONNX_FLOAT, 1, &gu);
    if (masked)
        in[nin++] = ct_onnx_value(&e->g, mt, CT_ONNX_FLOAT, 0, NULL);
    out[nout++] = hn ? ct_onnx_value(&e->g, hn, CT_ONNX_FLOAT, 1, &u) : NULL;
    if (lstm)
        out[nout++] = cn ? ct_onnx_value(&e->g, cn, CT_ONNX_FLOAT, 1, &u) : NULL;
    out[nout++] = y ? ct_onnx_value(&e->g, y, CT_ONNX_FLOAT, 1, &u) : NULL;
    Onnx__GraphProto *body = ct_onnx_sub_end(&e->g, &outer, b, nin, in, nout, out);
    return rc ? NULL : body;
}

/* Zeros (N, u) for the first state, N taken from x (N, T, F). */
static const char *zero_state(exporter *e, const char *base, const char *x, int64_t u)
{
    int64_t zero = 0, one = 1;
    const char *in[3] = {ct_onnx_unary(e, "Shape", base, x),
                         ct_onnx_const_ints(e, base, 1, &zero),
                         ct_onnx_const_ints(e, base, 1, &one)};
    char *n = ct_onnx_name(&e->g, base, "batch");
    ct_onnx_node(&e->g, "Slice", base, 3, in, n);
    const char *cat[2] = {n, ct_onnx_const_ints(e, base, 1, &u)};
    char *shape = ct_onnx_name(&e->g, base, "state_shape");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Concat", base, 2, cat, shape), "axis", 0);
    return ct_onnx_binary(e, "Expand", base, ct_onnx_const_float(e, base, 0.0f), shape);
}

/* A recurrent layer step by step: over a masked sequence as Keras (at a padded step the
 * state, h and c, is kept and the output is it, or zeros with zero_output_for_mask), or
 * with activations ONNX's recurrent operators lack. The input projection of every step,
 * x W + the input bias, is one MatMul before the Scan. */
static int rnn_scan(exporter *e, const ct_layer *l, const rnn_spec *r, value *x,
                    const char *mask, const char *h0, const char *c0, const char **res,
                    ct_error *err)
{
    const char *b = l->name, *xl = ct_onnx_layout(e, x, false, b);
    int64_t u = r->units, gu = r->gates * u;
    const char *p = ct_onnx_binary(e, "MatMul", b, xl,
                                   ct_onnx_param_init(e, l, "kernel", 0, NULL));
    const float *bias;
    if (ct_onnx_param(e, l, "bias", &bias))
        p = ct_onnx_binary(e, "Add", b, p, param_part(e, l, "bias", 0, 0, gu, "input_bias"));
    Onnx__GraphProto *body = scan_body(e, l, r, mask != NULL, err);
    if (!body)
        return -1;
    bool lstm = r->cell == CELL_LSTM;
    const char *zeros = !h0 || (lstm && !c0) ? zero_state(e, b, xl, u) : NULL;
    /* in: the states, then the scanned inputs; out: the states, then the scanned output */
    const char *in[4] = {h0 ? h0 : zeros, c0 ? c0 : zeros, p, mask};
    if (!lstm)
        in[1] = in[0];
    const char *out[3] = {ct_onnx_name(&e->g, b, "h_last"), ct_onnx_name(&e->g, b, "c_last"),
                          ct_onnx_name(&e->g, b, "sequence")};
    const char *outs[3] = {out[0], lstm ? out[1] : out[2], out[2]};
    int nin = (lstm ? 3 : 2) + (mask != NULL);
    Onnx__NodeProto *n = ct_onnx_node_n(&e->g, "Scan", b, nin, lstm ? in : in + 1,
                                        lstm ? 3 : 2, outs);
    int scanned = mask ? 2 : 1;
    int64_t axes[2] = {1, 1}, dirs[2] = {r->backwards, r->backwards}, out_axis = 1;
    ct_onnx_attr_graph(&e->g, n, "body", body);
    ct_onnx_attr_int(&e->g, n, "num_scan_inputs", scanned);
    ct_onnx_attr_ints(&e->g, n, "scan_input_axes", scanned, axes);
    ct_onnx_attr_ints(&e->g, n, "scan_input_directions", scanned, dirs);
    ct_onnx_attr_ints(&e->g, n, "scan_output_axes", 1, &out_axis);
    res[1] = out[0];
    res[2] = lstm ? out[1] : NULL;
    res[0] = r->sequences ? out[2] : out[0];
    return e->g.failed ? -1 : 0;
}

/* Runs l's cell over x: res[0] the sequence (N, T, u) in processing order or the last
 * state (N, u), res[1] the state h, res[2] the LSTM's c. h0 and c0: initial states (N, u)
 * or NULL. Through ONNX's recurrent operator, or through Scan where x carries a mask
 * (which Keras passes only without initial states) or the operator lacks an activation. */
static int rnn_run(exporter *e, const ct_layer *l, const rnn_spec *r, value *x,
                   const char *h0, const char *c0, const char **res, ct_error *err)
{
    if ((x->mask && !h0) || !native_acts(l, r))
        return rnn_scan(e, l, r, x, h0 ? NULL : x->mask, h0, c0, res, err);
    static const char *const ops[] = {"RNN", "LSTM", "GRU"};
    static const int64_t tnf[3] = {1, 0, 2};
    const char *base = l->name;
    const char *xt = ct_onnx_transpose(e, base, ct_onnx_layout(e, x, false, base), 3, tnf);
    if (r->backwards)
        xt = ct_onnx_reverse(e, base, xt, 0);
    const char *in[7] = {xt, gate_rows(e, l, r, "kernel", "W"),
                         gate_rows(e, l, r, "recurrent_kernel", "R"), rnn_bias(e, l, r), NULL,
                         h0 ? ct_onnx_squeeze(e, "Unsqueeze", base, h0, 0) : NULL,
                         c0 ? ct_onnx_squeeze(e, "Unsqueeze", base, c0, 0) : NULL};
    if (!in[1] || !in[2] || !in[3])
        return -1;
    int nin = c0 ? 7 : h0 ? 6 : 4, nout = r->cell == CELL_LSTM ? 3 : 2;
    const char *outs[3] = {ct_onnx_name(&e->g, base, "Y"), ct_onnx_name(&e->g, base, "Y_h"),
                           ct_onnx_name(&e->g, base, "Y_c")};
    Onnx__NodeProto *n = ct_onnx_node_n(&e->g, ops[r->cell], base, nin, in, nout, outs);
    ct_onnx_attr_int(&e->g, n, "hidden_size", r->units);
    if (r->reset_after)
        ct_onnx_attr_int(&e->g, n, "linear_before_reset", 1);
    rnn_activations(e, l, r, n);
    res[1] = ct_onnx_squeeze(e, "Squeeze", base, outs[1], 0);
    res[2] = r->cell == CELL_LSTM ? ct_onnx_squeeze(e, "Squeeze", base, outs[2], 0) : NULL;
    res[0] = r->sequences ? ct_onnx_transpose(e, base,
                                              ct_onnx_squeeze(e, "Squeeze", base, outs[0], 1),
                                              3, tnf)
                          : res[1];
    return e->g.failed ? -1 : 0;
}

/* The name of in[k] (channels last), or NULL past the inputs. */
static const char *input(exporter *e, const ct_layer *l, value *const *in, int k)
{
    return k < l->ninputs ? ct_onnx_layout(e, in[k], false, l->name) : NULL;
}

int ct_onnx_recurrent(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                      ct_onnx_val *const *out, ct_error *err)
{
    rnn_spec r = spec_of(l, false);
    const char *res[3];
    if (rnn_run(e, l, &r, in[0], input(e, l, in, 1), input(e, l, in, 2), res, err))
        return -1;
    for (int k = 0; k < l->noutputs; k++)
        out[k]->nhwc = res[k];
    return 0;
}

/* The two copies' outputs merged as merge_mode says. */
static const char *bidi_merge(exporter *e, const ct_layer *l, const char *f, const char *b)
{
    const char *mode = ct_onnx_cfg_str(l, "merge_mode", "concat");
    if (!strcmp(mode, "concat")) {
        const char *in[2] = {f, b};
        char *y = ct_onnx_name(&e->g, l->name, "concat");
        ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Concat", l->name, 2, in, y), "axis", -1);
        return y;
    }
    if (!strcmp(mode, "mul"))
        return ct_onnx_binary(e, "Mul", l->name, f, b);
    const char *y = ct_onnx_binary(e, "Add", l->name, f, b);
    if (!strcmp(mode, "ave"))
        y = ct_onnx_binary(e, "Mul", l->name, y, ct_onnx_const_float(e, l->name, 0.5f));
    return y;
}

/* Bidirectional: each copy on its own operator, the backward copy's sequence put back in
 * input time order (as Keras), then merged; the states are the forward copy's, then the
 * backward copy's, as the initial states given. */
int ct_onnx_bidirectional(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                          ct_onnx_val *const *out, ct_error *err)
{
    int per = (l->ninputs - 1) / 2; /* initial states given to each copy */
    const char *res[2][3];
    for (int k = 0; k < 2; k++) {
        const char *wname;
        const ct_layer *copy = ct_wrapper_inner(l, k, &wname);
        rnn_spec r = spec_of(copy, k == 1);
        r.zero_masked = r.sequences; /* as Keras, whatever the wrapped layer's config says */
        const ct_layer *holder = e->holder;
        const char *prefix = e->prefix;
        e->holder = l;
        e->prefix = wname;
        int rc = rnn_run(e, copy, &r, in[0], per ? input(e, l, in, 1 + k * per) : NULL,
                         per > 1 ? input(e, l, in, 2 + k * per) : NULL, res[k], err);
        e->holder = holder;
        e->prefix = prefix;
        if (rc)
            return -1;
        if (k == 1 && r.sequences)
            res[1][0] = ct_onnx_reverse(e, l->name, res[1][0], 1);
    }
    out[0]->nhwc = bidi_merge(e, l, res[0][0], res[1][0]);
    int states = (l->noutputs - 1) / 2;
    for (int k = 0; k < 2 * states; k++)
        out[1 + k]->nhwc = res[k / states][1 + k % states];
    return e->g.failed ? -1 : 0;
}

/* TimeDistributed: the steps folded into the batch, (N x T, ...), the copy's translation,
 * and the steps back out. */
int ct_onnx_time_distributed(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x,
                             ct_onnx_val *out, ct_error *err)
{
    const char *wname;
    const ct_layer *copy = ct_wrapper_inner(l, 0, &wname);
    int64_t shape[CT_MAX_DIMS + 2] = {-1};
    const ct_shape *is = &copy->in_shape, *os = &copy->out_shape;
    memcpy(shape + 1, is->dim, (size_t)is->ndim * sizeof *shape);
    value v = {.nhwc = ct_onnx_reshape(e, l->name, ct_onnx_layout(e, x, false, l->name),
                                       is->ndim + 1, shape),
               .rank = is->ndim},
          r = {0};
    value *vp = &v, *rp = &r;
    /* a wrapper within a wrapper: the weights' names nest */
    char prefix[CT_NAME_MAX * 4];
    snprintf(prefix, sizeof prefix, "%s%s%s", e->holder ? e->prefix : "",
             e->holder ? "/" : "", wname);
    const ct_layer *holder = e->holder;
    const char *was = e->prefix;
    e->holder = holder ? holder : l;
    e->prefix = prefix;
    int rc = ct_onnx_translate(e, copy, &vp, &rp, err);
    e->holder = holder;
    e->prefix = was;
    if (rc)
        return -1;
    shape[1] = l->in_shape.dim[0];
    memcpy(shape + 2, os->dim, (size_t)os->ndim * sizeof *shape);
    out->nhwc = ct_onnx_reshape(e, l->name, ct_onnx_layout(e, &r, false, l->name),
                                os->ndim + 2, shape);
    return out->nhwc ? 0 : -1;
}

/* ---- attention ---- */

/* x (N, T, d) through projection `name` ((d, heads, dim) kernel, (heads, dim) bias) into
 * (N, heads, T, dim), or (N, heads, dim, T) with keys_t. */
static const char *project(exporter *e, const ct_layer *l, const char *name, const char *x,
                           bool keys_t)
{
    char kname[32], bname[32];
    snprintf(kname, sizeof kname, "%s/kernel", name);
    snprintf(bname, sizeof bname, "%s/bias", name);
    const float *v;
    const ct_param *p = ct_onnx_param(e, l, kname, &v);
    if (!p)
        return NULL;
    int64_t d = p->shape.dim[0], h = p->shape.dim[1], dim = p->shape.dim[2];
    int64_t kd[2] = {d, h * dim}, bd = h * dim, split[4] = {0, 0, h, dim};
    const char *y = ct_onnx_binary(e, "MatMul", l->name, x,
                                   ct_onnx_param_init(e, l, kname, 2, kd));
    const char *b = ct_onnx_param_init(e, l, bname, 1, &bd);
    if (b)
        y = ct_onnx_binary(e, "Add", l->name, y, b);
    static const int64_t heads[4] = {0, 2, 1, 3}, heads_t[4] = {0, 2, 3, 1};
    return ct_onnx_transpose(e, l->name, ct_onnx_reshape(e, l->name, y, 4, split), 4,
                             keys_t ? heads_t : heads);
}

/* Added to the scores of masked pairs: far enough below any score that softmax gives
 * exactly 0 there, as ctrain's does. */
#define MASKED_SCORE (-1e30f)

/* The causal mask (tq, tv) for key j and query i: where j <= i `in`, else `out`. */
static const char *causal_mask(exporter *e, const ct_layer *l, int64_t tq, int64_t tv,
                               float in, float out)
{
    float *m = malloc((size_t)(tq * tv) * sizeof *m);
    if (!m) {
        e->g.failed = true;
        return NULL;
    }
    for (int64_t i = 0; i < tq; i++)
        for (int64_t j = 0; j < tv; j++)
            m[i * tv + j] = j <= i ? in : out;
    int64_t dims[2] = {tq, tv};
    const char *name =
        ct_onnx_floats(&e->g, ct_onnx_name(&e->g, l->name, "causal"), 2, dims, m);
    free(m);
    return name;
}

/* The pairs (query i, key j) that the inputs' masks (and the causal mask) allow, 0 or 1,
 * shaped to broadcast over the scores (N, heads, tq, tv); NULL when no input has a mask. */
static const char *allowed(exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                           int64_t tq, int64_t tv)
{
    const char *base = l->name, *qm = in[0]->mask, *vm = in[1]->mask;
    const char *km = l->ninputs == 3 ? in[2]->mask : NULL;
    if (!qm && !vm && !km)
        return NULL;
    const char *kv = vm && km ? ct_onnx_binary(e, "Mul", base, vm, km) : vm ? vm : km;
    const char *q = qm ? ct_onnx_squeeze(e, "Unsqueeze", base, qm, 2) : NULL; /* (N, tq, 1) */
    const char *k = kv ? ct_onnx_squeeze(e, "Unsqueeze", base, kv, 1) : NULL; /* (N, 1, tv) */
    const char *a = q && k ? ct_onnx_binary(e, "Mul", base, q, k) : q ? q : k;
    if (ct_onnx_cfg_bool(l, "use_causal_mask", false))
        a = ct_onnx_binary(e, "Mul", base, a, causal_mask(e, l, tq, tv, 1.0f, 0.0f));
    return ct_onnx_squeeze(e, "Unsqueeze", base, a, 1);
}

/* Softmax over the keys of the scores s: masked pairs lowered by -MASKED_SCORE and, as
 * ctrain does, the probabilities of a query that may attend to none made zeros. */
static const char *probabilities(exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                                 const char *s)
{
    int64_t tq = l->in_shapes[0].dim[0], tv = l->in_shapes[1].dim[0];
    const char *a = allowed(e, l, in, tq, tv);
    if (a) {
        const char *low =
            ct_onnx_binary(e, "Sub", l->name, a, ct_onnx_const_float(e, l->name, 1));
        s = ct_onnx_binary(e, "Add", l->name, s,
                           ct_onnx_binary(e, "Mul", l->name, low,
                                          ct_onnx_const_float(e, l->name, -MASKED_SCORE)));
    } else if (ct_onnx_cfg_bool(l, "use_causal_mask", false)) {
        s = ct_onnx_binary(e, "Add", l->name, s, causal_mask(e, l, tq, tv, 0.0f, MASKED_SCORE));
    }
    char *p = ct_onnx_name(&e->g, l->name, "probs");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "Softmax", l->name, 1, &s, p), "axis", -1);
    return a ? ct_onnx_binary(e, "Mul", l->name, p, a) : p;
}

/* MultiHeadAttention: per head softmax(Q K^T / sqrt(key_dim) [+ masks]) V, the heads side
 * by side through the output projection. */
int ct_onnx_attention(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *const *in,
                      ct_onnx_val *out)
{
    const char *q = input(e, l, in, 0), *v = input(e, l, in, 1);
    const char *k = l->ninputs == 3 ? input(e, l, in, 2) : v;
    const char *s = ct_onnx_binary(e, "MatMul", l->name, project(e, l, "query", q, false),
                                   project(e, l, "key", k, true));
    double key_dim = ct_onnx_cfg_num(l, "key_dim", 1);
    s = ct_onnx_binary(e, "Mul", l->name, s,
                       ct_onnx_const_float(e, l->name, (float)(1.0 / sqrt(key_dim))));
    const char *p = probabilities(e, l, in, s);
    static const int64_t back[4] = {0, 2, 1, 3};
    const char *pv = ct_onnx_binary(e, "MatMul", l->name, p, project(e, l, "value", v, false));
    const char *c = ct_onnx_transpose(e, l->name, pv, 4, back);
    const float *w;
    const ct_param *o = ct_onnx_param(e, l, "attention_output/kernel", &w);
    if (!o)
        return -1;
    int64_t hv = o->shape.dim[0] * o->shape.dim[1], od[2] = {hv, o->shape.dim[2]};
    int64_t flat[3] = {0, 0, hv};
    const char *y = ct_onnx_binary(e, "MatMul", l->name,
                                   ct_onnx_reshape(e, l->name, c, 3, flat),
                                   ct_onnx_param_init(e, l, "attention_output/kernel", 2, od));
    const char *b = ct_onnx_param_init(e, l, "attention_output/bias", 0, NULL);
    out->nhwc = b ? ct_onnx_binary(e, "Add", l->name, y, b) : y;
    return e->g.failed ? -1 : 0;
}

/* ---- normalization and masking ---- */

/* LayerNormalization over the last axis (the only one ctrain normalizes). */
int ct_onnx_layer_norm(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x,
                       ct_onnx_val *out)
{
    int64_t c = l->in_shape.dim[l->in_shape.ndim - 1];
    const char *gamma = ct_onnx_param_init(e, l, "gamma", 0, NULL);
    if (!gamma) { /* scale: false */
        float *ones = malloc((size_t)c * sizeof *ones);
        if (!ones) {
            e->g.failed = true;
            return -1;
        }
        for (int64_t i = 0; i < c; i++)
            ones[i] = 1.0f;
        gamma = ct_onnx_floats(&e->g, ct_onnx_name(&e->g, l->name, "gamma"), 1, &c, ones);
        free(ones);
    }
    const char *in[3] = {ct_onnx_layout(e, x, false, l->name), gamma,
                         ct_onnx_param_init(e, l, "beta", 0, NULL)};
    char *y = ct_onnx_name(&e->g, l->name, "ln");
    Onnx__NodeProto *n =
        ct_onnx_node(&e->g, "LayerNormalization", l->name, in[2] ? 3 : 2, in, y);
    ct_onnx_attr_int(&e->g, n, "axis", -1);
    ct_onnx_attr_float(&e->g, n, "epsilon", (float)ct_onnx_cfg_num(l, "epsilon", 1e-3));
    out->nhwc = y;
    return e->g.failed ? -1 : 0;
}

/* Masking: the steps whose features all equal mask_value become zeros (the mask itself
 * is what later layers would honour; see the driver's check). */
int ct_onnx_masking(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x, ct_onnx_val *out)
{
    const char *xl = ct_onnx_layout(e, x, false, l->name);
    float value = (float)ct_onnx_cfg_num(l, "mask_value", 0);
    const char *eq = ct_onnx_binary(e, "Equal", l->name, xl,
                                    ct_onnx_const_float(e, l->name, value));
    const char *f = as_floats(e, l->name, ct_onnx_unary(e, "Not", l->name, eq));
    char *any = ct_onnx_name(&e->g, l->name, "any");
    Onnx__NodeProto *n = ct_onnx_node(&e->g, "ReduceMax", l->name, 1, &f, any);
    int64_t last = -1;
    ct_onnx_attr_ints(&e->g, n, "axes", 1, &last);
    ct_onnx_attr_int(&e->g, n, "keepdims", 1);
    out->nhwc = ct_onnx_binary(e, "Mul", l->name, xl, any);
    out->mask = ct_onnx_squeeze(e, "Squeeze", l->name, any, -1); /* what it writes */
    return e->g.failed ? -1 : 0;
}

int ct_onnx_masked_mean(ct_onnx_exporter *e, const ct_layer *l, ct_onnx_val *x,
                        ct_onnx_val *out)
{
    const char *base = l->name;
    const char *m = ct_onnx_squeeze(e, "Unsqueeze", base, x->mask, -1); /* (N, T, 1) */
    const char *sum = ct_onnx_binary(e, "Mul", base, ct_onnx_layout(e, x, false, base), m);
    int64_t steps = 1;
    const char *axes = ct_onnx_const_ints(e, base, 1, &steps);
    bool keep = ct_onnx_cfg_bool(l, "keepdims", false);
    const char *in[2] = {sum, axes};
    char *s = ct_onnx_name(&e->g, base, "sum"), *c = ct_onnx_name(&e->g, base, "count");
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "ReduceSum", base, 2, in, s), "keepdims", keep);
    in[0] = m;
    ct_onnx_attr_int(&e->g, ct_onnx_node(&e->g, "ReduceSum", base, 2, in, c), "keepdims", keep);
    /* a sample of padding only: 0 / 1, zeros as ctrain gives */
    const char *count = ct_onnx_binary(e, "Max", base, c, ct_onnx_const_float(e, base, 1.0f));
    out->nhwc = ct_onnx_binary(e, "Div", base, s, count);
    return e->g.failed ? -1 : 0;
}
