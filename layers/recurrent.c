/* recurrent.c - SimpleRNN, LSTM and GRU over (timesteps, features) inputs, with Keras's
 * weight layouts and gate orders (LSTM i, f, c, o; GRU z, r, h).
 *
 * The input projection of every timestep is one GEMM into P (rows x T x G*units, the
 * input's own order); the LSTM instead multiplies [x_t | h_prev | 1] by its kernels, stacked
 * and packed once per batch (gemm_packed), at each step into its gate pre-activations
 * (rows of [i | f | c | o]), and runs the cell as one backend op (lstm_step).
 * SimpleRNN and GRU steps gather their slice gate by gate into a gate-major block (G
 * blocks of rows x units), add the recurrent projection and do the gate math on whole
 * blocks with the backend's element-wise ops. Pre-activations, gate values and states of
 * every step stay in scratch for backpropagation through time, which keeps the steps'
 * gate gradients in step order: the recurrent kernel's gradient is one GEMM of them, and
 * the input kernel's gradient and dx one GEMM each, of them (LSTM, against the input laid
 * out in step order) or of their input-side part written back into P (the others).
 *
 * Dropout as Keras: one mask per sample and feature for the whole sequence on the inputs,
 * one per sample and unit on the state fed to the recurrent kernel, in training only.
 *
 * A masked input (layer.h) as Keras: at a padded step a sample's state (h, and c) is
 * carried over unchanged, and its output there is the carried state (zeros when
 * zero_output_for_mask, which Bidirectional sets with return_sequences). The output of
 * return_sequences carries the mask on.
 *
 * States as Keras: with return_state the final state h (and the LSTM's cell c) are
 * outputs 1 (and 2), the carried state where the sequence ends in padding; a layer given
 * more inputs than its sequence starts from them (Keras's initial_state: h, or h and c),
 * and backward hands them their gradients. Keras 3 then passes the sequence's mask to the
 * layer no more (it passes one only to a layer called on one tensor): its steps ignore the
 * mask, while the output carries it on (the model warns). */
#include <math.h>
#include <stdlib.h>

#include "layer.h"
#include "rng.h"

typedef enum { CELL_SIMPLE, CELL_LSTM, CELL_GRU } rnn_cell;

typedef struct rnn_state {
    rnn_cell cell;
    int64_t units, in, steps, gates;
    ct_act act, rec_act;
    bool use_bias, return_sequences, return_state, go_backwards, unit_forget_bias, reset_after;
    bool zero_masked;   /* zero_output_for_mask */
    double dropout, rec_dropout;
    ct_init kernel_init, rec_init, bias_init;
    ct_regularizer kernel_reg, rec_reg, bias_reg;
} rnn_state;

/* Scratch regions for a batch of n rows (NULL where the configuration needs none). */
typedef struct rnn_buf {
    float *p;       /* SimpleRNN, GRU: n x T x G*u input projections; in backward their
                     * gradients */
    float *z, *wu;  /* LSTM: n x K, the step's [x_t | h_prev | 1], and K x 4u, the kernels
                     * stacked [W; U; bias] (K = F + u (+ 1 with a bias)) */
    float *xs;      /* LSTM, backward: T x n x F, the input (and then dx) in step order */
    float *a, *y;   /* T x G x n x u: gate pre-activations and values, per step */
    float *h;       /* (T+1) x n x u: states, h[0] = 0 */
    float *c, *tc;  /* LSTM: (T+1) x n x u cells (c[0] = 0), T x n x u act(c) */
    float *rh;      /* GRU, T x n x u: reset_after h_prev U_h + b; else r * h_prev */
    float *hm, *mh; /* recurrent dropout: T x n x u masked states, the n x u mask */
    float *xd, *mx; /* dropout: n x T x F masked inputs and the mask spread over time */
    float *dh, *dc, *dn, *da, *t1, *t2; /* backward and step work */
    float *r;       /* backward, T x n x G*u: the gate gradients of each step, row order */
    float *mk;      /* masked input: T x n, the mask of each processing step */
    float *bh, *bc; /* masked input: n x u, the state gradients that bypass a padded step */
    float *pk;      /* kernels packed (gemm_pack_b): the LSTM's forward multiplies by
                     * [W; U; bias], every backward by U^T */
} rnn_buf;

/* The LSTM step's shared axis: input features, units, and a 1 for the bias. */
static int64_t lstm_k(const rnn_state *s)
{
    return s->in + s->units + (s->use_bias ? 1 : 0);
}

static int64_t take(float *base, int64_t *off, int64_t n, float **out)
{
    *out = base ? base + *off : NULL;
    *off += n;
    return *off;
}

/* Lays out the scratch of n rows from base (NULL: only counts). Returns the floats used. */
static int64_t rnn_layout(const rnn_state *s, int64_t n, float *base, rnn_buf *b)
{
    int64_t off = 0, T = s->steps, nu = n * s->units, gu = s->gates * s->units;
    rnn_buf z = {0};
    if (s->cell == CELL_LSTM) {
        take(base, &off, n * lstm_k(s), &z.z);
        take(base, &off, lstm_k(s) * gu, &z.wu);
        take(base, &off, T * n * s->in, &z.xs);
    } else {
        take(base, &off, n * T * gu, &z.p);
    }
    take(base, &off, T * gu * n, &z.a);
    take(base, &off, T * gu * n, &z.y);
    take(base, &off, (T + 1) * nu, &z.h);
    if (s->cell == CELL_LSTM) {
        take(base, &off, (T + 1) * nu, &z.c);
        take(base, &off, T * nu, &z.tc);
    }
    if (s->cell == CELL_GRU)
        take(base, &off, T * nu, &z.rh);
    if (s->rec_dropout > 0) {
        take(base, &off, T * nu, &z.hm);
        take(base, &off, nu, &z.mh);
    }
    if (s->dropout > 0) {
        take(base, &off, n * T * s->in, &z.xd);
        take(base, &off, n * T * s->in, &z.mx);
    }
    take(base, &off, nu, &z.dh);
    take(base, &off, nu, &z.dc);
    take(base, &off, nu, &z.dn);
    take(base, &off, gu * n, &z.da);
    take(base, &off, T * gu * n, &z.r);
    take(base, &off, gu * n, &z.t1);
    take(base, &off, nu, &z.t2);
    take(base, &off, T * n, &z.mk);
    take(base, &off, nu, &z.bh);
    if (s->cell == CELL_LSTM)
        take(base, &off, nu, &z.bc);
    int64_t fwd = s->cell == CELL_LSTM ? CT_GEMM_PACKED_FLOATS(lstm_k(s), gu) : 0;
    int64_t bwd = CT_GEMM_PACKED_FLOATS(gu, s->units);
    take(base, &off, fwd > bwd ? fwd : bwd, &z.pk);
    if (b)
        *b = z;
    return off;
}

/* ---- configuration ---------------------------------------------------------------- */

static const char *const simple_keys[] = {
    "units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer",
    "bias_initializer", "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
    "dropout", "recurrent_dropout", "return_sequences", "return_state", "go_backwards",
    "zero_output_for_mask", NULL,
};
static const char *const lstm_keys[] = {
    "units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
    "recurrent_initializer", "bias_initializer", "unit_forget_bias", "kernel_regularizer",
    "recurrent_regularizer", "bias_regularizer", "dropout", "recurrent_dropout",
    "return_sequences", "return_state", "go_backwards", "zero_output_for_mask", NULL,
};
static const char *const gru_keys[] = {
    "units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
    "recurrent_initializer", "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
    "bias_regularizer", "dropout", "recurrent_dropout", "return_sequences", "return_state",
    "go_backwards", "reset_after", "zero_output_for_mask", NULL,
};

static int read_rate(const ct_layer *l, ct_node *cfg, const char *key, double *out,
                     ct_error *err)
{
    if (ct_cfg_float(cfg, key, 0.0, -HUGE_VAL, HUGE_VAL, out, err))
        return -1;
    if (*out >= 0.0 && *out < 1.0)
        return 0;
    const ct_node *v = ct_map_get(cfg, key);
    return ct_layer_err_at(err, l, v, "%s must be at least 0 and below 1, got %s", key,
                           v->scalar);
}

static int read_units(const ct_layer *l, ct_node *cfg, rnn_state *s, ct_error *err)
{
    char what[CT_NAME_MAX + 80];
    ct_layer_describe(l, what, sizeof what);
    if (ct_cfg_require(cfg, "units", what, err) ||
        ct_cfg_int(cfg, "units", 1, INT64_MIN, INT64_MAX, &s->units, err))
        return -1;
    int64_t most = INT32_MAX / s->gates; /* the backend's gemm takes int dimensions */
    if (s->units < 1 || s->units > most)
        return ct_layer_err_at(err, l, ct_map_get(cfg, "units"),
                               "units must be between 1 and %lld, got %lld", (long long)most,
                               (long long)s->units);
    return 0;
}

static int read_flags(ct_node *cfg, rnn_state *s, ct_error *err)
{
    if (ct_cfg_bool(cfg, "use_bias", true, &s->use_bias, err) ||
        ct_cfg_bool(cfg, "return_sequences", false, &s->return_sequences, err) ||
        ct_cfg_bool(cfg, "go_backwards", false, &s->go_backwards, err) ||
        ct_cfg_bool(cfg, "return_state", false, &s->return_state, err) ||
        ct_cfg_bool(cfg, "zero_output_for_mask", false, &s->zero_masked, err))
        return -1;
    /* each kind's own keys only: defaults are written back into the config */
    s->unit_forget_bias = s->reset_after = false;
    if (s->cell == CELL_LSTM)
        return ct_cfg_bool(cfg, "unit_forget_bias", true, &s->unit_forget_bias, err);
    if (s->cell == CELL_GRU)
        return ct_cfg_bool(cfg, "reset_after", true, &s->reset_after, err);
    return 0;
}

static int rnn_read(ct_layer *l, ct_node *cfg, rnn_state *s, ct_error *err)
{
    if (read_units(l, cfg, s, err) ||
        ct_layer_parse_act(l, cfg, "activation", "tanh", &s->act, err) ||
        (s->cell != CELL_SIMPLE &&
         ct_layer_parse_act(l, cfg, "recurrent_activation", "sigmoid", &s->rec_act, err)) ||
        read_flags(cfg, s, err) ||
        ct_init_parse(cfg, "kernel_initializer", "glorot_uniform", &s->kernel_init, err) ||
        ct_init_parse(cfg, "recurrent_initializer", "orthogonal", &s->rec_init, err) ||
        ct_init_parse(cfg, "bias_initializer", "zeros", &s->bias_init, err) ||
        ct_regularizer_parse(cfg, "kernel_regularizer", &s->kernel_reg, err) ||
        ct_regularizer_parse(cfg, "recurrent_regularizer", &s->rec_reg, err) ||
        ct_regularizer_parse(cfg, "bias_regularizer", &s->bias_reg, err) ||
        read_rate(l, cfg, "dropout", &s->dropout, err) ||
        read_rate(l, cfg, "recurrent_dropout", &s->rec_dropout, err))
        return -1;
    return 0;
}

static int rnn_configure(ct_layer *l, ct_node *cfg, rnn_cell cell, const char *const *keys,
                         ct_error *err)
{
    if (ct_layer_check_keys(l, cfg, keys, err))
        return -1;
    rnn_state *s = l->state ? l->state : calloc(1, sizeof *s);
    if (!s)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    l->state = s;
    s->cell = cell;
    s->gates = cell == CELL_LSTM ? 4 : cell == CELL_GRU ? 3 : 1;
    return rnn_read(l, cfg, s, err);
}

static int simple_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return rnn_configure(l, cfg, CELL_SIMPLE, simple_keys, err);
}

static int lstm_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return rnn_configure(l, cfg, CELL_LSTM, lstm_keys, err);
}

static int gru_configure(ct_layer *l, ct_node *cfg, ct_error *err)
{
    return rnn_configure(l, cfg, CELL_GRU, gru_keys, err);
}

/* GRU with reset_after keeps separate input and recurrent biases. */
static bool two_biases(const rnn_state *s)
{
    return s->cell == CELL_GRU && s->reset_after;
}

/* States a cell carries: h, and the LSTM's c. */
static int nstates(const rnn_state *s)
{
    return s->cell == CELL_LSTM ? 2 : 1;
}

/* Inputs past the sequence are the initial states, each (units). */
static int check_initial_states(const ct_layer *l, ct_error *err)
{
    const rnn_state *s = l->state;
    char a[128];
    if (l->ninputs != 1 && l->ninputs != 1 + nstates(s))
        return ct_layer_err_at(err, l, ct_map_get(l->cfg, "inputs"), "takes its sequence, "
                               "or its sequence and its initial %s: %d inputs, got %d",
                               s->cell == CELL_LSTM ? "states h and c" : "state h",
                               1 + nstates(s), l->ninputs);
    for (int k = 1; k < l->ninputs; k++)
        if (l->in_shapes[k].ndim != 1 || l->in_shapes[k].dim[0] != s->units)
            return ct_layer_err_at(err, l, ct_map_get(l->cfg, "inputs"), "its initial state "
                                   "%s (input %d) must have shape (%lld,), its units, got %s",
                                   k == 1 ? "h" : "c", k, (long long)s->units,
                                   ct_shape_format(&l->in_shapes[k], a, sizeof a));
    return 0;
}

static int rnn_build(ct_layer *l, ct_error *err)
{
    rnn_state *s = l->state;
    if (l->in_shape.ndim != 2) {
        char buf[256];
        return ct_layer_err(err, l, "expects an input of shape (timesteps, features), got %s",
                            ct_shape_format(&l->in_shape, buf, sizeof buf));
    }
    if (check_initial_states(l, err))
        return -1;
    l->nparams = 0;
    s->steps = l->in_shape.dim[0];
    s->in = l->in_shape.dim[1];
    int64_t u = s->units, gu = s->gates * u;
    int64_t out[2] = {s->steps, u}, kdim[2] = {s->in, gu}, rdim[2] = {u, gu}, bdim[2] = {2, gu};
    l->out_shape = s->return_sequences ? ct_shape_make(2, out) : ct_shape_make(1, &u);
    l->noutputs = s->return_state ? 1 + nstates(s) : 1;
    for (int k = 1; k < l->noutputs; k++)
        l->more_shapes[k - 1] = ct_shape_make(1, &u);
    if (ct_layer_add_param(l, "kernel", ct_shape_make(2, kdim), s->kernel_init, s->kernel_reg,
                           true, err) < 0 ||
        ct_layer_add_param(l, "recurrent_kernel", ct_shape_make(2, rdim), s->rec_init,
                           s->rec_reg, true, err) < 0)
        return -1;
    if (!s->use_bias)
        return 0;
    ct_init bi = s->bias_init;
    if (s->unit_forget_bias) { /* Keras: the forget gate's slice starts at one */
        bi.ones_begin = u;
        bi.ones_end = 2 * u;
    }
    ct_shape bs = two_biases(s) ? ct_shape_make(2, bdim) : ct_shape_make(1, &gu);
    return ct_layer_add_param(l, "bias", bs, bi, s->bias_reg, true, err) < 0 ? -1 : 0;
}

static int64_t rnn_scratch(const ct_layer *l, int64_t max_batch)
{
    return rnn_layout(l->state, max_batch, NULL, NULL);
}

/* ---- forward ---------------------------------------------------------------------- */

/* Input time of processing step k. */
static int64_t time_of(const rnn_state *s, int64_t k)
{
    return s->go_backwards ? s->steps - 1 - k : k;
}

static bool dropping(double rate, const ct_pass *pass)
{
    return pass && pass->training && rate > 0;
}

/* Draws the masks of this pass and returns the input the projection reads. */
static const float *apply_masks(const ct_layer *l, const ct_pass *pass, const float *x,
                                int64_t n, rnn_buf *b)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    bool in_drop = dropping(s->dropout, pass), rec_drop = dropping(s->rec_dropout, pass);
    if (!in_drop && !rec_drop)
        return x;
    uint64_t key = ct_rng_key(pass->seed, CT_RNG_DROPOUT, (uint64_t)l->index,
                              (uint64_t)pass->step);
    if (rec_drop) /* counters far from the input mask's */
        be->dropout_mask(b->mh, n * s->units, (float)s->rec_dropout, key, (uint64_t)1 << 40);
    if (!in_drop)
        return x;
    int64_t f = s->in, T = s->steps;
    be->dropout_mask(b->xd, n * f, (float)s->dropout, key, 0);
    for (int64_t t = 0; t < T; t++) /* the same mask at every timestep */
        be->copy_strided(b->xd, f, b->mx + t * f, T * f, n, f);
    be->mul(n * T * f, x, b->mx, b->xd);
    return b->xd;
}

/* The state the recurrent kernel reads at step k: h[k], masked under recurrent dropout. */
static const float *rec_input(const rnn_buf *b, bool rec_drop, int64_t k, int64_t nu,
                              const ct_backend *be)
{
    if (!rec_drop)
        return b->h + k * nu;
    be->mul(nu, b->h + k * nu, b->mh, b->hm + k * nu);
    return b->hm + k * nu;
}

/* Gate-major recurrent projection of gates [g0, g0 + cnt): out[g] (n x u) = hin U_g + beta
 * out[g]. */
static void rec_gemm(const ct_layer *l, const float *hin, int64_t n, int g0, int cnt,
                     float beta, float *out)
{
    const rnn_state *s = l->state;
    int64_t u = s->units, gu = s->gates * u;
    l->be->gemm_batched(false, false, n, u, u, 1.0f, hin, u, 0, l->params[1].value + g0 * u,
                        gu, u, beta, out, u, n * u, cnt);
}

static void step_simple(const ct_layer *l, const rnn_buf *b, const float *hin, int64_t k,
                        int64_t n)
{
    const rnn_state *s = l->state;
    int64_t nu = n * s->units;
    float *a = b->a + k * nu, *y = b->y + k * nu;
    rec_gemm(l, hin, n, 0, 1, 1.0f, a);
    l->be->act_forward(s->act, a, y, n, s->units);
    l->be->copy(b->h + (k + 1) * nu, y, nu);
}

/* The LSTM's kernels stacked as [W; U; bias] and packed once for all steps, and the
 * ones column that picks the bias. */
static void lstm_pack(const ct_layer *l, const rnn_buf *b, int64_t n)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t f = s->in, u = s->units, gu = 4 * u, kz = lstm_k(s);
    be->copy(b->wu, l->params[0].value, f * gu);
    be->copy(b->wu + f * gu, l->params[1].value, u * gu);
    if (s->use_bias) {
        be->copy(b->wu + (f + u) * gu, l->params[2].value, gu);
        be->fill(b->t2, n, 1.0f);
        be->copy_strided(b->t2, 1, b->z + f + u, kz, n, 1);
    }
    be->gemm_pack_b(false, kz, gu, b->wu, gu, b->pk);
}

/* LSTM keeps its gate values row-major (n rows of [i | f | c | o]): the step's input
 * projection, recurrent projection and bias are one product of [x_t | h_prev | 1] by the
 * packed kernels (so no projection of all steps is written and read back), and the cell
 * one backend op. */
static void step_lstm(const ct_layer *l, const rnn_buf *b, const float *x, const float *hin,
                      int64_t k, int64_t n)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t u = s->units, nu = n * u, f = s->in, kz = lstm_k(s);
    float *a = b->a + k * 4 * nu, *y = b->y + k * 4 * nu;
    float *c0 = b->c + k * nu, *c1 = c0 + nu, *tc = b->tc + k * nu;
    be->copy_strided(x + time_of(s, k) * f, s->steps * f, b->z, kz, n, f);
    be->copy_strided(hin, u, b->z + f, kz, n, u);
    be->lstm_step_packed(s->act, s->rec_act, b->z, kz, kz, b->pk, a, y, c0, c1, tc,
                         b->h + (k + 1) * nu, n, u);
}

/* The GRU's recurrent part: z and r pre-activations completed in a, rh filled. */
static void gru_recurrent(const ct_layer *l, const rnn_buf *b, const float *hin, int64_t k,
                          int64_t n)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t u = s->units, nu = n * u;
    float *a = b->a + k * 3 * nu, *y = b->y + k * 3 * nu, *rh = b->rh + k * nu;
    if (s->reset_after) {
        rec_gemm(l, hin, n, 0, 3, 0.0f, b->t1);
        if (s->use_bias)
            for (int g = 0; g < 3; g++)
                be->add_row_vector(b->t1 + g * nu, l->params[2].value + (3 + g) * u, n, u);
        be->axpy(2 * nu, 1.0f, b->t1, a);
        be->act_forward(s->rec_act, a, y, 2 * n, u);
        be->copy(rh, b->t1 + 2 * nu, nu);
        be->mul(nu, y + nu, rh, b->t2);                            /* r * (h U_h + b) */
    } else {
        rec_gemm(l, hin, n, 0, 2, 1.0f, a);
        be->act_forward(s->rec_act, a, y, 2 * n, u);
        be->mul(nu, y + nu, hin, rh);                              /* r * h_prev */
        be->gemm(false, false, n, u, u, 1.0f, rh, u, l->params[1].value + 2 * u, 3 * u, 0.0f,
                 b->t2, u);
    }
}

static void step_gru(const ct_layer *l, const rnn_buf *b, const float *hin, int64_t k,
                     int64_t n)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t u = s->units, nu = n * u;
    float *a = b->a + k * 3 * nu, *y = b->y + k * 3 * nu;
    const float *h0 = b->h + k * nu;
    float *h1 = b->h + (k + 1) * nu;
    gru_recurrent(l, b, hin, k, n);
    be->axpy(nu, 1.0f, b->t2, a + 2 * nu);
    be->act_forward(s->act, a + 2 * nu, y + 2 * nu, n, u);
    /* h = hh + z * (h_prev - hh) */
    be->copy(b->t2, h0, nu);
    be->axpy(nu, -1.0f, y + 2 * nu, b->t2);
    be->mul(nu, y, b->t2, h1);
    be->axpy(nu, 1.0f, y + 2 * nu, h1);
}

/* P = x W + b over all rows and timesteps. */
static void project_inputs(const ct_layer *l, const float *x, int64_t n, float *p)
{
    const rnn_state *s = l->state;
    int64_t gu = s->gates * s->units, rows = n * s->steps;
    l->be->gemm(false, false, rows, gu, s->in, 1.0f, x, s->in, l->params[0].value, gu, 0.0f, p,
                gu);
    if (s->use_bias)
        l->be->add_row_vector(p, l->params[2].value, rows, gu);
}

/* a (gate-major) = P's slice of input time t. */
static void gather_step(const rnn_state *s, const ct_backend *be, const float *p, int64_t t,
                        int64_t n, float *a)
{
    int64_t u = s->units, gu = s->gates * u;
    for (int64_t g = 0; g < s->gates; g++)
        be->copy_strided(p + t * gu + g * u, s->steps * gu, a + g * n * u, u, n, u);
}

/* The mask of every processing step, T x n, from the input's n x T. */
static void step_masks(const rnn_state *s, const ct_backend *be, const float *mask, int64_t n,
                       float *mk)
{
    for (int64_t k = 0; k < s->steps; k++)
        be->copy_strided(mask + time_of(s, k), s->steps, mk + k * n, 1, n, 1);
}

/* A padded step keeps the state: to = from + m (to - from), each row scaled by its m. */
static void keep_state(const ct_backend *be, const float *m, const float *from, float *to,
                       float *t, int64_t n, int64_t u)
{
    be->copy(t, to, n * u);
    be->axpy(n * u, -1.0f, from, t);
    be->scale_channels(t, m, t, n, u, 1);
    be->copy(to, from, n * u);
    be->axpy(n * u, 1.0f, t, to);
}

/* Output step k of return_sequences: the state, zeroed at padding when asked. */
static void write_step(const rnn_state *s, const ct_backend *be, const rnn_buf *b,
                       const float *mask, int64_t k, int64_t n, float *y)
{
    int64_t u = s->units, T = s->steps, nu = n * u;
    const float *h = b->h + (k + 1) * nu;
    if (mask && s->zero_masked) {
        be->scale_channels(h, b->mk + k * n, b->t2, n, u, 1);
        h = b->t2;
    }
    be->copy_strided(h, u, y + k * u, T * u, n, u);
}

/* The mask the steps honour: none when initial states are given, as in Keras 3, which
 * passes a mask only to a layer called on one tensor (the output still carries it on). */
static const float *steps_mask(const ct_tensor *const *xs, int nx)
{
    return nx > 1 ? NULL : xs[0]->mask;
}

static void rnn_forward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                        ct_tensor *y)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t n = xs[0]->rows, T = s->steps, u = s->units, nu = n * u, gnu = s->gates * nu;
    rnn_buf b;
    rnn_layout(s, n, l->scratch, &b);
    const float *x = apply_masks(l, pass, xs[0]->data, n, &b);
    if (s->cell == CELL_LSTM)
        lstm_pack(l, &b, n);
    else
        project_inputs(l, x, n, b.p);
    if (nx > 1) /* initial_state */
        be->copy(b.h, xs[1]->data, nu);
    else
        be->fill(b.h, nu, 0.0f);
    if (b.c && nx > 2)
        be->copy(b.c, xs[2]->data, nu);
    else if (b.c)
        be->fill(b.c, nu, 0.0f);
    bool rec_drop = dropping(s->rec_dropout, pass);
    const float *mask = steps_mask(xs, nx);
    if (mask)
        step_masks(s, be, mask, n, b.mk);
    for (int64_t k = 0; k < T; k++) {
        const float *hin = rec_input(&b, rec_drop, k, nu, be);
        if (s->cell == CELL_LSTM) {
            step_lstm(l, &b, x, hin, k, n);
        } else {
            gather_step(s, be, b.p, time_of(s, k), n, b.a + k * gnu);
            if (s->cell == CELL_GRU)
                step_gru(l, &b, hin, k, n);
            else
                step_simple(l, &b, hin, k, n);
        }
        if (mask) {
            keep_state(be, b.mk + k * n, b.h + k * nu, b.h + (k + 1) * nu, b.t2, n, u);
            if (b.c)
                keep_state(be, b.mk + k * n, b.c + k * nu, b.c + (k + 1) * nu, b.t2, n, u);
        }
        if (s->return_sequences)
            write_step(s, be, &b, mask, k, n, y->data);
    }
    if (!s->return_sequences)
        be->copy(y->data, b.h + T * nu, nu);
    if (s->return_state) {
        be->copy(l->more_y[0].data, b.h + T * nu, nu);
        if (b.c)
            be->copy(l->more_y[1].data, b.c + T * nu, nu);
    }
}

/* return_sequences passes the input's mask on; a last state carries none. */
static int rnn_mask_out(const ct_layer *l, const bool *in_masked)
{
    (void)in_masked;
    const rnn_state *s = l->state;
    return s->return_sequences ? 0 : CT_MASK_NONE;
}

void ct_recurrent_zero_masked_output(ct_layer *l, bool on)
{
    rnn_state *s = l->state;
    s->zero_masked = on;
}

/* ---- backward --------------------------------------------------------------------- */

/* The bias's gradient, or NULL (no bias, or none wanted). */
static float *bias_grad(const ct_layer *l)
{
    const rnn_state *s = l->state;
    return s->use_bias ? l->params[2].grad : NULL;
}

/* Gate gradients of step k into b->da (gate-major) from dh (and dc); dn gets the part of
 * dh_prev that bypasses the recurrent kernel (GRU), dc becomes dc_prev (LSTM). */
static void back_simple(const ct_layer *l, const rnn_buf *b, int64_t k, int64_t n)
{
    const rnn_state *s = l->state;
    int64_t nu = n * s->units;
    l->be->act_backward(s->act, b->a + k * nu, b->y + k * nu, b->dh, b->da, n, s->units);
}

/* Into r (row-major gate gradients, see step_lstm). */
static void back_lstm(const ct_layer *l, const rnn_buf *b, float *r, int64_t k, int64_t n)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t u = s->units, nu = n * u;
    const float *a = b->a + k * 4 * nu, *y = b->y + k * 4 * nu, *tc = b->tc + k * nu;
    const float *c0 = b->c + k * nu, *c1 = c0 + nu;
    be->lstm_step_backward(s->act, s->rec_act, a, y, c0, c1, tc, b->dh, b->dc, r, n, u);
}

/* back_lstm for a step before the last, with dh first: the later step's gate gradients
 * times U^T, plus dy's step d (NULL: none). One op, so a backend may do both per block of
 * units. */
static void back_lstm_fused(const ct_layer *l, const rnn_buf *b, const float *later, float *r,
                            const float *d, int64_t k, int64_t n)
{
    const rnn_state *s = l->state;
    int64_t u = s->units, nu = n * u, gu = 4 * u;
    const float *a = b->a + k * 4 * nu, *y = b->y + k * 4 * nu, *tc = b->tc + k * nu;
    const float *c0 = b->c + k * nu, *c1 = c0 + nu;
    l->be->lstm_step_backward_packed(s->act, s->rec_act, later, gu, gu, b->pk, d, s->steps * u,
                                     a, y, c0, c1, tc, b->dh, b->dc, r, n, u);
}

static void back_gru(const ct_layer *l, const rnn_buf *b, int64_t k, int64_t n)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t u = s->units, nu = n * u;
    const float *a = b->a + k * 3 * nu, *y = b->y + k * 3 * nu, *h0 = b->h + k * nu;
    float *da = b->da, *t = b->t2;
    be->copy(t, h0, nu);                                               /* dz = dh (h_prev - hh) */
    be->axpy(nu, -1.0f, y + 2 * nu, t);
    be->mul(nu, b->dh, t, t);
    be->act_backward(s->rec_act, a, y, t, da, n, u);
    be->mul(nu, b->dh, y, b->dn);                                      /* dh z */
    be->copy(t, b->dh, nu);                                            /* dhh = dh (1 - z) */
    be->axpy(nu, -1.0f, b->dn, t);
    be->act_backward(s->act, a + 2 * nu, y + 2 * nu, t, da + 2 * nu, n, u);
    if (s->reset_after) {
        be->mul(nu, da + 2 * nu, b->rh + k * nu, t);                   /* dr */
    } else {                                                           /* d(r h) = dah U_h^T */
        be->gemm(false, true, n, u, u, 1.0f, da + 2 * nu, u, l->params[1].value + 2 * u, 3 * u,
                 0.0f, b->t1, u);
        const float *hin = b->hm ? b->hm + k * nu : h0;
        be->mul(nu, b->t1, hin, t);
    }
    be->act_backward(s->rec_act, a + nu, y + nu, t, da + nu, n, u);
}

/* r (n x G*u) = da in the input's row order; also written into P's slice of time t. */
static void scatter_step(const rnn_state *s, const ct_backend *be, const rnn_buf *b, float *r,
                         int64_t t, int64_t n)
{
    int64_t u = s->units, gu = s->gates * u;
    for (int64_t g = 0; g < s->gates; g++)
        be->copy_strided(b->da + g * n * u, u, r + g * u, gu, n, u);
    be->copy_strided(r, gu, b->p + t * gu, s->steps * gu, n, gu);
}

/* Columns of the recurrent kernel that read the state itself (a reset_before GRU's
 * candidate reads r * h_prev instead). */
static int64_t state_cols(const rnn_state *s)
{
    return s->cell == CELL_GRU && !s->reset_after ? 2 * s->units : s->gates * s->units;
}

/* The recurrent kernel's share of step k, whose gate gradients are in r: dh = d(state fed
 * to it), masked, plus what bypasses it. The kernel's gradient over the state columns is
 * one GEMM over all steps after the loop (kernel_grad); a reset_before GRU's candidate
 * columns are added here (first: the first step processed). */
static void back_recurrent(const ct_layer *l, const rnn_buf *b, float *r, int64_t k, int64_t n,
                           bool first)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t u = s->units, nu = n * u, gu = s->gates * u;
    const ct_param *rk = &l->params[1];
    float beta = first ? 0.0f : 1.0f;
    int64_t cols = state_cols(s);
    if (s->cell == CELL_GRU && s->reset_after) { /* the candidate's recurrent part has r */
        be->mul(nu, b->da + 2 * nu, b->y + k * 3 * nu + nu, b->t2);
        be->copy_strided(b->t2, u, r + 2 * u, gu, n, u);
    }
    if (rk->grad && cols < gu)
        be->gemm(true, false, u, u, n, 1.0f, b->rh + k * nu, u, b->da + 2 * nu, u, beta,
                 rk->grad + 2 * u, gu);
    be->gemm_packed(n, u, cols, r, gu, b->pk, NULL, 0, b->dh, u);
    if (cols < gu) { /* d(r h) r, from back_gru's t1 */
        be->mul(nu, b->t1, b->y + k * 3 * nu + nu, b->t2);
        be->axpy(nu, 1.0f, b->t2, b->dh);
    }
    if (b->hm)
        be->mul(nu, b->dh, b->mh, b->dh);
    if (s->cell == CELL_GRU)
        be->axpy(nu, 1.0f, b->dn, b->dh);
}

/* After the steps: the recurrent kernel's gradient over its state columns, the states fed
 * to it (T x n rows, step order) times the steps' gate gradients, as one GEMM; and a
 * reset_after GRU's recurrent bias. */
static void kernel_grad(const ct_layer *l, const rnn_buf *b, int64_t n)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t u = s->units, gu = s->gates * u, rows = s->steps * n;
    const ct_param *rk = &l->params[1];
    const float *hin = b->hm ? b->hm : b->h;
    if (rk->grad)
        be->gemm(true, false, u, state_cols(s), rows, 1.0f, hin, u, b->r, gu, 0.0f, rk->grad, gu);
    if (two_biases(s) && bias_grad(l))
        be->sum_rows(b->r, bias_grad(l) + gu, rows, gu, 0.0f);
}

/* rows x T x F (the input's order) to or from T x rows x F (processing-step order). */
static void steps_order(const rnn_state *s, const ct_backend *be, const float *from, float *to,
                        int64_t n, bool to_steps)
{
    int64_t f = s->in, T = s->steps;
    for (int64_t k = 0; k < T; k++) {
        int64_t t = time_of(s, k);
        if (to_steps)
            be->copy_strided(from + t * f, T * f, to + k * n * f, f, n, f);
        else
            be->copy_strided(from + k * n * f, f, to + t * f, T * f, n, f);
    }
}

/* dW, db and dx from the input-side gradients: in P (input order), or for the LSTM the
 * steps' gate gradients in r themselves (step order), against the input laid out in step
 * order (a few floats per row, where r has 4u). */
static void back_inputs(const ct_layer *l, const float *x, const rnn_buf *b, int64_t n,
                        ct_tensor *dx)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t gu = s->gates * s->units, rows = n * s->steps, f = s->in;
    const ct_param *w = &l->params[0];
    bool steps = s->cell == CELL_LSTM;
    const float *g = steps ? b->r : b->p;
    if (steps && w->grad) {
        steps_order(s, be, x, b->xs, n, true);
        x = b->xs;
    }
    if (w->grad)
        be->gemm(true, false, f, gu, rows, 1.0f, x, f, g, gu, 0.0f, w->grad, gu);
    if (bias_grad(l))
        be->sum_rows(g, bias_grad(l), rows, gu, 0.0f);
    if (!dx)
        return;
    be->gemm(false, true, rows, f, gu, 1.0f, g, gu, w->value, gu, 0.0f,
             steps ? b->xs : dx->data, f);
    if (steps)
        steps_order(s, be, b->xs, dx->data, n, false);
    if (b->xd)
        be->mul(rows * f, dx->data, b->mx, dx->data);
}

/* At a padded step the state gradient bypasses the cell: g (dh or dc) splits into the
 * cell's share m g, kept in g, and the bypass (1 - m) g, kept in by. */
static void split_grad(const ct_backend *be, const float *m, float *g, float *by, int64_t n,
                       int64_t u)
{
    be->copy(by, g, n * u);
    be->scale_channels(g, m, g, n, u, 1);
    be->axpy(n * u, -1.0f, g, by);
}

/* dy's step k of return_sequences added into dh (zeroed at padding when asked). */
static void add_step_grad(const rnn_state *s, const ct_backend *be, const rnn_buf *b,
                          const float *dy, bool masked, int64_t k, int64_t n)
{
    int64_t u = s->units, T = s->steps, nu = n * u;
    be->copy_strided(dy + k * u, T * u, b->t2, u, n, u);
    if (masked && s->zero_masked)
        be->scale_channels(b->t2, b->mk + k * n, b->t2, n, u, 1);
    be->axpy(nu, 1.0f, b->t2, b->dh);
}

/* The state gradients at the last step: dy's (without return_sequences) plus those of the
 * returned states. A gradient whose data is NULL reaches nothing: zeros. */
static void start_grads(const ct_layer *l, const float *dy, const rnn_buf *b, int64_t nu)
{
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    if (!s->return_sequences && dy)
        be->copy(b->dh, dy, nu);
    else
        be->fill(b->dh, nu, 0.0f);
    be->fill(b->dc, nu, 0.0f);
    for (int k = 1; s->return_state && k <= nstates(s); k++)
        if (l->more_dy[k - 1].data)
            be->axpy(nu, 1.0f, l->more_dy[k - 1].data, k == 1 ? b->dh : b->dc);
}

static void rnn_backward(ct_layer *l, const ct_pass *pass, const ct_tensor *const *xs, int nx,
                         const ct_tensor *y, ct_tensor *dy, ct_tensor *const *dxs)
{
    (void)y;
    const rnn_state *s = l->state;
    const ct_backend *be = l->be;
    int64_t n = xs[0]->rows, T = s->steps, u = s->units, nu = n * u;
    rnn_buf b;
    rnn_layout(s, n, l->scratch, &b);
    bool in_drop = dropping(s->dropout, pass);
    if (!dropping(s->rec_dropout, pass))
        b.hm = NULL;
    if (!in_drop)
        b.xd = NULL;
    start_grads(l, dy->data, &b, nu);
    /* dh = r U^T every step (over the state columns): U^T packed once */
    be->gemm_pack_b(true, state_cols(s), u, l->params[1].value, s->gates * u, b.pk);
    bool masked = steps_mask(xs, nx) != NULL; /* b.mk holds the forward's step masks */
    /* An LSTM without masks or recurrent dropout computes each step's dh within the step
     * before it (back_lstm_fused), and the last dh only for initial states. */
    bool fused = s->cell == CELL_LSTM && !masked && !b.hm;
    int64_t gnu = n * s->gates * u;
    for (int64_t k = T - 1; k >= 0; k--) {
        if (fused && k < T - 1) {
            const float *d = s->return_sequences && dy->data ? dy->data + k * u : NULL;
            back_lstm_fused(l, &b, b.r + (k + 1) * gnu, b.r + k * gnu, d, k, n);
            continue;
        }
        if (s->return_sequences && dy->data)
            add_step_grad(s, be, &b, dy->data, masked, k, n);
        if (masked) {
            split_grad(be, b.mk + k * n, b.dh, b.bh, n, u);
            if (b.c)
                split_grad(be, b.mk + k * n, b.dc, b.bc, n, u);
        }
        float *r = b.r + k * n * s->gates * u;
        if (s->cell == CELL_LSTM) {
            back_lstm(l, &b, r, k, n);
        } else {
            if (s->cell == CELL_GRU)
                back_gru(l, &b, k, n);
            else
                back_simple(l, &b, k, n);
            scatter_step(s, be, &b, r, time_of(s, k), n);
        }
        if (!fused)
            back_recurrent(l, &b, r, k, n, k == T - 1);
        if (masked) {
            be->axpy(nu, 1.0f, b.bh, b.dh);
            if (b.c)
                be->axpy(nu, 1.0f, b.bc, b.dc);
        }
    }
    if (fused && nx > 1) /* what reaches the initial state h */
        be->gemm_packed(n, u, 4 * u, b.r, 4 * u, b.pk, NULL, 0, b.dh, u);
    kernel_grad(l, &b, n);
    back_inputs(l, in_drop ? b.xd : xs[0]->data, &b, n, dxs[0]);
    for (int k = 1; k < nx; k++) /* initial_state: what reached step 0's state */
        if (dxs[k])
            be->copy(dxs[k]->data, k == 1 ? b.dh : b.dc, nu);
}

static void rnn_free(ct_layer *l)
{
    free(l->state);
    l->state = NULL;
}

const ct_layer_kind ct_layer_simple_rnn = {
    .name = "simple_rnn",
    .class_name = "SimpleRNN",
    .configure = simple_configure,
    .build = rnn_build,
    .scratch_floats = rnn_scratch,
    .forward = rnn_forward,
    .backward = rnn_backward,
    .free_state = rnn_free,
    .min_inputs = 1,
    .max_inputs = 3, /* the sequence and initial states; build checks how many */
    .mask_one_input = true,
    .masks = CT_MASK_BY_KIND,
    .mask_out = rnn_mask_out,
};

const ct_layer_kind ct_layer_lstm = {
    .name = "lstm",
    .class_name = "LSTM",
    .configure = lstm_configure,
    .build = rnn_build,
    .scratch_floats = rnn_scratch,
    .forward = rnn_forward,
    .backward = rnn_backward,
    .free_state = rnn_free,
    .min_inputs = 1,
    .max_inputs = 3, /* the sequence and initial states; build checks how many */
    .mask_one_input = true,
    .masks = CT_MASK_BY_KIND,
    .mask_out = rnn_mask_out,
};

const ct_layer_kind ct_layer_gru = {
    .name = "gru",
    .class_name = "GRU",
    .configure = gru_configure,
    .build = rnn_build,
    .scratch_floats = rnn_scratch,
    .forward = rnn_forward,
    .backward = rnn_backward,
    .free_state = rnn_free,
    .min_inputs = 1,
    .max_inputs = 3, /* the sequence and initial states; build checks how many */
    .mask_one_input = true,
    .masks = CT_MASK_BY_KIND,
    .mask_out = rnn_mask_out,
};
