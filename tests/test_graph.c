/* test_graph.c - models as graphs through the model and experiment APIs: finite-difference
 * gradients of whole graphs (fan-out, a tensor taken twice, outputs that feed layers,
 * views, concatenation, shared layers, dot), the gradient buffers the planner lays out,
 * per-output losses and their weights against values computed here, every graph error
 * with its position, exact resume of a functional model, and masks (which layers carry,
 * pass or end them, the warnings, the forward's masks, gradients of masked models). */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>

#include "experiment.h"
#include "graph.h"
#include "model.h"
#include "testutil.h"
#include "weights.h"

static const ct_pass train_pass = {.training = true, .seed = 1, .step = 0};

/* ---- a model built from a YAML string --------------------------------------------------- */

typedef struct gm {
    ct_node *root;
    ct_model *m;
    ct_error err;
} gm;

/* Parses yaml (a document with a `model` map), builds the model, fills its parameters from
 * seed and plans batches of rows. */
static void gm_open(gm *g, const char *yaml, uint64_t seed, int64_t rows)
{
    memset(g, 0, sizeof *g);
    g->root = ct_config_parse(yaml, strlen(yaml), "graph.yaml", &g->err);
    ck_assert_msg(g->root != NULL, "%s", g->err.msg);
    g->m = ct_model_build(ct_map_get(g->root, "model"), ct_backend_cpu(), &g->err);
    ck_assert_msg(g->m != NULL, "%s", g->err.msg);
    ct_model_init_params(g->m, seed);
    ck_assert_msg(ct_model_plan(g->m, rows, &g->err) == 0, "%s", g->err.msg);
}

static void gm_close(gm *g)
{
    ct_model_free(g->m);
    ct_node_free(g->root);
}

/* Inputs in [-1, 1), distinct per input. */
static void fill_inputs(ct_model *m, int64_t rows)
{
    for (int k = 0; k < m->ninputs; k++)
        tu_fill(m->inputs[k].data, rows * ct_shape_size(&m->input_shapes[k]), 10u + (unsigned)k,
                -1.0f, 1.0f);
}

/* Fixed random weights R_k of the test loss L = sum_k sum(out_k * R_k), one per output. */
static float **make_r(const ct_model *m, int64_t rows)
{
    float **r = calloc((size_t)m->noutputs, sizeof *r);
    for (int k = 0; k < m->noutputs; k++) {
        int64_t n = rows * ct_shape_size(ct_model_output_shape_at(m, k));
        r[k] = malloc((size_t)n * sizeof **r);
        tu_fill(r[k], n, 50u + (unsigned)k, -1.0f, 1.0f);
    }
    return r;
}

static void free_r(const ct_model *m, float **r)
{
    for (int k = 0; k < m->noutputs; k++)
        free(r[k]);
    free(r);
}

/* L in double, after a forward pass. */
static double test_loss(ct_model *m, float *const *r, int64_t rows)
{
    ct_model_forward(m, &train_pass, rows);
    double s = 0;
    for (int k = 0; k < m->noutputs; k++) {
        const ct_tensor *o = ct_model_output(m, k);
        for (int64_t i = 0; i < rows * ct_shape_size(&o->shape); i++)
            s += (double)o->data[i] * (double)r[k][i];
    }
    return s;
}

/* Forward, dL/dout_k = R_k into each output's gradient buffer, backward. */
static void analytic_grads(ct_model *m, float *const *r, int64_t rows)
{
    ct_model_forward(m, &train_pass, rows);
    for (int k = 0; k < m->noutputs; k++) {
        int64_t n = rows * ct_shape_size(ct_model_output_shape_at(m, k));
        float *d = ct_model_output_grad(m, k);
        ck_assert_ptr_nonnull(d);
        memcpy(d, r[k], (size_t)n * sizeof *d);
    }
    double penalty = 0;
    ct_model_backward(m, &train_pass, 0.0, &penalty);
}

/* Checks every trainable parameter's gradient (the owners', which hold the shared
 * applications' too) against central differences of L, on inputs from fill. Returns the
 * values checked. */
static int64_t gradcheck_filled(const char *name, const char *yaml, int64_t rows,
                                void (*fill)(ct_model *, int64_t))
{
    gm g;
    gm_open(&g, yaml, 3, rows);
    ct_model *m = g.m;
    fill(m, rows);
    float **r = make_r(m, rows);
    /* A first step with other weights R: nothing of it may remain in the second's. */
    float **r0 = make_r(m, rows);
    for (int k = 0; k < m->noutputs; k++)
        for (int64_t i = 0; i < rows * ct_shape_size(ct_model_output_shape_at(m, k)); i++)
            r0[k][i] = 2.0f - 3.0f * r0[k][i] * r0[k][i];
    analytic_grads(m, r0, rows);
    free_r(m, r0);
    analytic_grads(m, r, rows);
    /* Keep the gradients: the probes below run forward only, but be independent of it. */
    float *grads = malloc((size_t)(m->trainable ? m->trainable : 1) * sizeof *grads);
    memcpy(grads, m->grads, (size_t)m->trainable * sizeof *grads);
    const double h = 4e-3;
    int64_t checked = 0;
    for (int p = 0; p < m->nparams; p++) {
        ct_param *prm = m->params[p];
        if (!prm->trainable)
            continue;
        for (int64_t e = 0; e < ct_shape_size(&prm->shape); e++) {
            float old = prm->value[e], up = (float)(old + h), down = (float)(old - h);
            prm->value[e] = up;
            double lp = test_loss(m, r, rows);
            prm->value[e] = down;
            double lm = test_loss(m, r, rows);
            prm->value[e] = old;
            double num = (lp - lm) / ((double)up - (double)down);
            double ana = grads[prm->offset + e];
            double bad = fabs(num - ana) - (2e-3 + 1e-2 * fmax(fabs(num), fabs(ana)));
            ck_assert_msg(bad <= 0, "%s: gradient of parameter %d (%s)[%lld]: analytic %.7g, "
                          "numeric %.7g", name, p, prm->name, (long long)e, ana, num);
            checked++;
        }
    }
    ck_assert_int_gt(checked, 0);
    free(grads);
    free_r(m, r);
    gm_close(&g);
    return checked;
}

static int64_t gradcheck_model(const char *name, const char *yaml, int64_t rows)
{
    return gradcheck_filled(name, yaml, rows, fill_inputs);
}

/* ---- 1. finite-difference gradients of whole graphs ----------------------------------- */

typedef struct graph_case {
    const char *name;
    const char *yaml;
} graph_case;

static const graph_case graph_cases[] = {
    /* one tensor feeding a layer and an add: its gradient is the sum of both paths */
    {"residual",
     "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
     "    - {name: d1, type: dense, units: 5, activation: tanh, inputs: x}\n"
     "    - {name: d2, type: dense, units: 5, activation: tanh, inputs: d1}\n"
     "    - {name: res, type: add, inputs: [d1, d2]}\n"
     "    - {name: out, type: dense, units: 3, inputs: res}\n"},
    /* a ReLU after batch normalization, folded into it (see test_relu_fusion) */
    {"batch norm and relu, fused",
     "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
     "    - {name: d1, type: dense, units: 6, inputs: x}\n"
     "    - {name: bn, type: batch_normalization}\n"
     "    - {name: r, type: relu}\n"
     "    - {name: out, type: dense, units: 3}\n"},
    /* the same, but the batch norm's output also feeds an add: not fused */
    {"batch norm feeding a relu and an add",
     "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
     "    - {name: d1, type: dense, units: 6, inputs: x}\n"
     "    - {name: bn, type: batch_normalization}\n"
     "    - {name: r, type: relu}\n"
     "    - {name: s, type: add, inputs: [r, bn]}\n"
     "    - {name: out, type: dense, units: 3}\n"},
    /* one layer taking the same tensor twice */
    {"add twice",
     "model:\n  inputs: {x: {shape: [3]}}\n  layers:\n"
     "    - {name: d, type: dense, units: 4, activation: tanh, inputs: x}\n"
     "    - {name: twice, type: add, inputs: [d, d]}\n"
     "    - {name: m, type: multiply, inputs: [twice, d]}\n"
     "    - {name: out, type: dense, units: 2, inputs: m}\n"},
    /* an output that also feeds another layer (two outputs) */
    {"output feeds a layer",
     "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
     "    - {name: h, type: dense, units: 4, activation: tanh, inputs: x}\n"
     "    - {name: a, type: dense, units: 3, activation: sigmoid, inputs: h}\n"
     "    - {name: b, type: dense, units: 2, activation: tanh, inputs: a}\n"
     "  outputs: [a, b]\n"},
    /* the same, outputs listed the other way round */
    {"output feeds a layer, reversed",
     "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
     "    - {name: h, type: dense, units: 4, activation: tanh, inputs: x}\n"
     "    - {name: a, type: dense, units: 3, activation: sigmoid, inputs: h}\n"
     "    - {name: b, type: dense, units: 2, activation: tanh, inputs: a}\n"
     "  outputs: [b, a]\n"},
    /* views (reshape, then flatten) whose source also feeds a dense and an add */
    {"views",
     "model:\n  inputs: {x: {shape: [3]}}\n  layers:\n"
     "    - {name: d, type: dense, units: 6, activation: tanh, inputs: x}\n"
     "    - {name: r, type: reshape, target_shape: [2, 3], inputs: d}\n"
     "    - {name: f, type: flatten, inputs: r}\n"
     "    - {name: e, type: dense, units: 6, activation: tanh, inputs: d}\n"
     "    - {name: s, type: add, inputs: [f, e, d]}\n"
     "    - {name: out, type: dense, units: 2, inputs: s}\n"},
    /* a view that is an output while its source feeds another output */
    {"view output",
     "model:\n  inputs: {x: {shape: [3]}}\n  layers:\n"
     "    - {name: d, type: dense, units: 4, activation: tanh, inputs: x}\n"
     "    - {name: r, type: reshape, target_shape: [2, 2], inputs: d}\n"
     "    - {name: e, type: dense, units: 2, inputs: d}\n"
     "  outputs: [r, e]\n"},
    /* a layer and a view of it, both outputs, and the view feeding a layer */
    {"output and its view",
     "model:\n  inputs: {x: {shape: [3]}}\n  layers:\n"
     "    - {name: d, type: dense, units: 4, activation: tanh, inputs: x}\n"
     "    - {name: r, type: reshape, target_shape: [2, 2], inputs: d}\n"
     "    - {name: e, type: dense, units: 3, inputs: r}\n"
     "  outputs: [d, r, e]\n"},
    /* concatenate of several branches and the model input */
    {"concatenate",
     "model:\n  inputs: {x: {shape: [3]}}\n  layers:\n"
     "    - {name: b1, type: dense, units: 2, inputs: x}\n"
     "    - {name: b2, type: dense, units: 3, activation: tanh, inputs: x}\n"
     "    - {name: b3, type: dense, units: 1, activation: sigmoid, inputs: b2}\n"
     "    - {name: cat, type: concatenate, inputs: [b1, b2, b3, x]}\n"
     "    - {name: out, type: dense, units: 2, inputs: cat}\n"},
    /* a Siamese pair: one dense applied to two inputs */
    {"shared dense",
     "model:\n  inputs: {left: {shape: [5]}, right: {shape: [5]}}\n  layers:\n"
     "    - {name: enc, type: dense, units: 4, activation: tanh, inputs: left}\n"
     "    - {name: enc_r, type: shared, layer: enc, inputs: right}\n"
     "    - {name: diff, type: subtract, inputs: [enc, enc_r]}\n"
     "    - {name: prod, type: multiply, inputs: [enc, enc_r]}\n"
     "    - {name: both, type: concatenate, inputs: [diff, prod]}\n"
     "    - {name: out, type: dense, units: 2, inputs: both}\n"},
    /* a shared layer applied three times, once to its own output */
    {"shared dense, three times",
     "model:\n  inputs: {x: {shape: [3]}, y: {shape: [3]}}\n  layers:\n"
     "    - {name: t, type: dense, units: 3, activation: tanh, inputs: x}\n"
     "    - {name: t2, type: shared, layer: t, inputs: y}\n"
     "    - {name: t3, type: shared, layer: t2, inputs: t}\n"
     "    - {name: s, type: add, inputs: [t2, t3]}\n"
     "  outputs: [s, t]\n"},
    /* a shared conv2d */
    {"shared conv2d",
     "model:\n  inputs: {a: {shape: [5, 5, 2]}, b: {shape: [5, 5, 2]}}\n  layers:\n"
     "    - {name: c, type: conv2d, filters: 3, kernel_size: 3, activation: tanh, inputs: a}\n"
     "    - {name: c_b, type: shared, layer: c, inputs: b}\n"
     "    - {name: s, type: add, inputs: [c, c_b]}\n"
     "    - {name: f, type: flatten, inputs: s}\n"
     "    - {name: out, type: dense, units: 2, inputs: f}\n"},
    /* a chain of layers applied again in one shared entry */
    {"shared chain",
     "model:\n  inputs: {a: {shape: [4]}, b: {shape: [4]}}\n  layers:\n"
     "    - {name: e1, type: dense, units: 3, activation: tanh, inputs: a}\n"
     "    - {name: e2, type: reshape, target_shape: [3, 1]}\n"
     "    - {name: e3, type: flatten}\n"
     "    - {name: e4, type: dense, units: 2, activation: tanh}\n"
     "    - {name: eb, type: shared, layer: [e1, e2, e3, e4], inputs: b}\n"
     "    - {name: s, type: multiply, inputs: [e4, eb]}\n"
     "  outputs: [s, eb_e1]\n"},
    /* cosine similarity of two encodings */
    {"dot normalize",
     "model:\n  inputs: {p: {shape: [4]}, q: {shape: [4]}}\n  layers:\n"
     "    - {name: ep, type: dense, units: 3, activation: tanh, inputs: p}\n"
     "    - {name: eq, type: dense, units: 3, activation: tanh, inputs: q}\n"
     "    - {name: cos, type: dot, axes: 1, normalize: true, inputs: [ep, eq]}\n"
     "    - {name: out, type: dense, units: 2, inputs: cos}\n"
     "  outputs: [out, cos]\n"},
    /* Bidirectional's states: both copies started from given states, returning theirs;
     * only the states are read (output 0's gradient is never written) */
    {"bidirectional states",
     "model:\n  inputs: {x: {shape: [4, 2]}, z: {shape: [3]}}\n  layers:\n"
     "    - {name: h0, type: dense, units: 2, activation: tanh, inputs: z}\n"
     "    - {name: c0, type: dense, units: 2, inputs: z}\n"
     "    - {name: b, type: bidirectional, layer: {type: lstm, units: 2, return_state: true},"
     " inputs: [x, h0, c0, c0, h0]}\n"
     "    - {name: g, type: bidirectional, merge_mode: sum, layer: {type: gru, units: 2,"
     " return_sequences: true, return_state: true}, inputs: [x, b:1, b:4]}\n"
     "    - {name: s, type: concatenate, inputs: [b:2, b:3, g:2]}\n"
     "  outputs: [s, g]\n"},
    /* causal self-attention on one tensor given twice (its two gradients add), then
     * cross-attention with a key of its own */
    /* an LSTM's states as outputs of their own beside its sequence (return_state) */
    {"lstm states as outputs",
     "model:\n  inputs: {x: {shape: [4, 3]}}\n  layers:\n"
     "    - {name: l, type: lstm, units: 3, return_sequences: true, return_state: true,"
     " inputs: x}\n"
     "    - {name: h2, type: dense, units: 2, inputs: \"l:1\"}\n"
     "  outputs: [l, h2, \"l:2\"]\n"},
    /* an encoder whose output 0 nothing reads (its gradient never written): its states
     * start a decoder (initial_state), which also returns its own */
    {"encoder and decoder",
     "model:\n  inputs: {src: {shape: [4, 3]}, tgt: {shape: [3, 2]}}\n  layers:\n"
     "    - {name: enc, type: lstm, units: 3, return_state: true, inputs: src}\n"
     "    - {name: dec, type: lstm, units: 3, return_sequences: true, return_state: true,"
     " inputs: [tgt, enc:1, enc:2]}\n"
     "    - {name: out, type: dense, units: 2, inputs: dec}\n"
     "  outputs: [out, dec:2]\n"},
    /* a GRU and a SimpleRNN started from computed states, backwards; the GRU's state feeds
     * a layer and is an output too (two gradients joined) */
    {"gru and simple_rnn initial states",
     "model:\n  inputs: {x: {shape: [4, 2]}, z: {shape: [3]}}\n  layers:\n"
     "    - {name: h0, type: dense, units: 3, activation: tanh, inputs: z}\n"
     "    - {name: g, type: gru, units: 3, go_backwards: true, return_state: true,"
     " inputs: [x, h0]}\n"
     "    - {name: s, type: simple_rnn, units: 3, return_state: true, inputs: [x, g:1]}\n"
     "    - {name: g2, type: gru, units: 3, reset_after: false, inputs: [x, s:1]}\n"
     "    - {name: sum, type: add, inputs: [g, g:1, g2]}\n"
     "  outputs: [sum, g:1]\n"},
    {"attention",
     "model:\n  inputs: {x: {shape: [4, 3]}}\n  layers:\n"
     "    - {name: d, type: dense, units: 4, activation: tanh, inputs: x}\n"
     "    - {name: sa, type: multi_head_attention, num_heads: 2, key_dim: 2,"
     " use_causal_mask: true, inputs: [d, d]}\n"
     "    - {name: r, type: add, inputs: [sa, d]}\n"
     "    - {name: k, type: dense, units: 2, inputs: x}\n"
     "    - {name: ca, type: multi_head_attention, num_heads: 1, key_dim: 3, inputs: [r, d, k]}\n"
     "    - {name: p, type: global_average_pooling1d}\n"
     "    - {name: out, type: dense, units: 2, inputs: p}\n"},
};

#define N_GRAPH (int)(sizeof graph_cases / sizeof graph_cases[0])

START_TEST(test_graph_gradients)
{
    const graph_case *c = &graph_cases[_i];
    gradcheck_model(c->name, c->yaml, 3);
}
END_TEST

/* Which ReLU layers are folded into the batch normalization before them: only a plain
 * relu (not relu6, not leaky) that is the batch norm's one use, when the batch norm is
 * not a model output. */
START_TEST(test_relu_fusion)
{
    gm g;
    gm_open(&g,
            "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
            "    - {name: b1, type: batch_normalization, inputs: x}\n"
            "    - {name: r1, type: relu}\n"
            "    - {name: b2, type: batch_normalization}\n"
            "    - {name: r2, type: activation, activation: relu}\n"
            "    - {name: b3, type: batch_normalization}\n"
            "    - {name: r3, type: relu, max_value: 6}\n"
            "    - {name: b4, type: batch_normalization}\n"
            "    - {name: r4, type: relu}\n"
            "    - {name: sum, type: add, inputs: [r4, b4]}\n"
            "    - {name: b5, type: batch_normalization}\n"
            "    - {name: r5, type: relu}\n"
            "  outputs: [r5, b5]\n",
            3, 4);
    static const struct {
        const char *name;
        bool fused_relu, fused_away;
    } want[] = {
        {"b1", true, false},  {"r1", false, true},  {"b2", true, false},
        {"r2", false, true},  {"b3", false, false}, {"r3", false, false},
        {"b4", false, false}, {"r4", false, false}, {"b5", false, false},
        {"r5", false, false},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        const ct_layer *l = NULL;
        for (int i = 0; i < g.m->nlayers; i++)
            if (!strcmp(g.m->layers[i].name, want[k].name))
                l = &g.m->layers[i];
        ck_assert_ptr_nonnull(l);
        ck_assert_msg(l->fused_relu == want[k].fused_relu && l->fused_away == want[k].fused_away,
                      "%s: fused_relu %d, fused_away %d", l->name, l->fused_relu, l->fused_away);
    }
    gm_close(&g);
}
END_TEST

/* A shared layer has no parameters of its own in the block; its application's gradient
 * is a separate buffer, joined into the owner's: the owner's gradient is the sum of the
 * two applications' (each checked alone by running the model with one of them cut). */
START_TEST(test_shared_sum)
{
    const char *yaml =
        "model:\n  inputs: {left: {shape: [5]}, right: {shape: [5]}}\n  layers:\n"
        "    - {name: enc, type: dense, units: 4, activation: tanh, inputs: left}\n"
        "    - {name: enc_r, type: shared, layer: enc, inputs: right}\n"
        "  outputs: [enc, enc_r]\n";
    gm g;
    gm_open(&g, yaml, 3, 2);
    ct_model *m = g.m;
    ck_assert_int_eq(m->nparams, 2); /* kernel and bias of enc only */
    ck_assert_ptr_eq(m->layers[1].shared, &m->layers[0]);
    ck_assert_ptr_eq(ct_layer_owner(&m->layers[1]), &m->layers[0]);
    ck_assert_ptr_eq(m->layers[1].params[0].value, m->layers[0].params[0].value);
    ck_assert_ptr_ne(m->layers[1].params[0].grad, m->layers[0].params[0].grad);
    fill_inputs(m, 2);
    float **r = make_r(m, 2);
    int64_t n = m->trainable;
    float *both = malloc((size_t)n * sizeof *both), *one[2];
    analytic_grads(m, r, 2);
    memcpy(both, m->grads, (size_t)n * sizeof *both);
    /* With R of one output zero, only the other application contributes. */
    for (int k = 0; k < 2; k++) {
        float **rk = make_r(m, 2);
        memset(rk[1 - k], 0, 2 * 4 * sizeof(float));
        analytic_grads(m, rk, 2);
        one[k] = malloc((size_t)n * sizeof *one[k]);
        memcpy(one[k], m->grads, (size_t)n * sizeof *one[k]);
        free_r(m, rk);
    }
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(one[0][i] != 0 && one[1][i] != 0, "an application gave no gradient");
        ck_assert_msg(fabsf(both[i] - (one[0][i] + one[1][i])) <= 1e-6f, "grad[%lld]: %g != %g + %g",
                      (long long)i, both[i], one[0][i], one[1][i]);
    }
    free(both), free(one[0]), free(one[1]);
    free_r(m, r);
    gm_close(&g);
}
END_TEST

/* A layer applied only through `shared` (its own application reaches no output): its
 * gradient is the application's, the same at every step, not a running sum. */
START_TEST(test_shared_owner_unused)
{
    const char *yaml =
        "model:\n  inputs: {left: {shape: [3]}, right: {shape: [3]}}\n  layers:\n"
        "    - {name: enc, type: dense, units: 2, activation: tanh, inputs: left}\n"
        "    - {name: enc_r, type: shared, layer: enc, inputs: right}\n"
        "    - {name: out, type: dense, units: 2, inputs: enc_r}\n"
        "  outputs: out\n";
    gm g;
    gm_open(&g, yaml, 3, 2);
    ct_model *m = g.m;
    ck_assert(!m->live[0] && m->live[1]);
    fill_inputs(m, 2);
    float **r = make_r(m, 2);
    int64_t n = m->trainable;
    float *first = malloc((size_t)n * sizeof *first);
    analytic_grads(m, r, 2);
    memcpy(first, m->grads, (size_t)n * sizeof *first);
    for (int step = 0; step < 2; step++) {
        analytic_grads(m, r, 2);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(m->grads[i] == first[i], "backward %d: grad[%lld] = %g, first %g",
                          step + 2, (long long)i, m->grads[i], first[i]);
    }
    free(first);
    free_r(m, r);
    gm_close(&g);
    gradcheck_model("shared, owner unused", yaml, 2);
}
END_TEST

/* ---- 2. the planner ------------------------------------------------------------------- */

#define CHAIN_UNITS {7, 4, 6, 3, 5, 8, 2, 6, 3, 2}
#define CHAIN_N 10

/* A chain of CHAIN_N dense layers: Sequential (input_shape, no names) or the same graph
 * written with a named input, each layer naming its input, listed in reverse order. */
static char *chain_yaml(bool functional)
{
    static const int units[] = CHAIN_UNITS;
    char *buf = calloc(1, 8192);
    size_t at = (size_t)sprintf(buf, "model:\n  %s\n  layers:\n",
                                functional ? "inputs: {x: {shape: [5]}}" : "input_shape: [5]");
    for (int k = 0; k < CHAIN_N; k++) {
        int i = functional ? CHAIN_N - 1 - k : k;
        char in[32];
        if (i == 0)
            snprintf(in, sizeof in, "x");
        else
            snprintf(in, sizeof in, "l%d", i - 1);
        if (functional)
            at += (size_t)sprintf(buf + at, "    - {name: l%d, type: dense, units: %d, "
                                  "activation: tanh, inputs: %s}\n", i, units[i], in);
        else
            at += (size_t)sprintf(buf + at, "    - {name: l%d, type: dense, units: %d, "
                                  "activation: tanh}\n", i, units[i]);
    }
    if (functional)
        sprintf(buf + at, "  outputs: l%d\n", CHAIN_N - 1);
    return buf;
}

START_TEST(test_chain_two_buffers)
{
    char *yaml = chain_yaml(false);
    gm g;
    gm_open(&g, yaml, 3, 4);
    ct_model *m = g.m;
    ck_assert(!m->functional);
    ck_assert_int_eq(m->nlayers, CHAIN_N);
    ck_assert_int_eq(m->plan->ntmp, 0);
    float *a = m->dout[0].data, *b = m->dout[1].data;
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_ne(a, b);
    for (int i = 0; i < CHAIN_N; i++)
        ck_assert_msg(m->dout[i].data == (i % 2 ? b : a), "dout[%d] is a third buffer", i);
    /* Both buffers hold the largest gradient of the layers they serve. */
    static const int units[] = CHAIN_UNITS;
    int64_t max = 0;
    for (int i = 0; i < CHAIN_N; i++)
        max = units[i] > max ? units[i] : max;
    ck_assert_int_ge(labs((long)(b - a)), 4 * max);
    ck_assert_ptr_eq(ct_model_output_grad(m, 0), m->dout[CHAIN_N - 1].data);
    gm_close(&g);
    free(yaml);
}
END_TEST

START_TEST(test_chain_functional_same)
{
    char *yaml[2] = {chain_yaml(false), chain_yaml(true)};
    gm g[2];
    const int64_t rows = 4;
    for (int v = 0; v < 2; v++) {
        gm_open(&g[v], yaml[v], 9, rows);
        ck_assert_int_eq(g[v].m->functional, v == 1);
        ck_assert_int_eq(g[v].m->nlayers, CHAIN_N);
        for (int i = 0; i < CHAIN_N; i++) {
            char want[16];
            snprintf(want, sizeof want, "l%d", i);
            ck_assert_str_eq(g[v].m->layers[i].name, want); /* sorted from the reversed list */
        }
        fill_inputs(g[v].m, rows);
    }
    ct_model *s = g[0].m, *f = g[1].m;
    ck_assert_int_eq(s->size, f->size);
    ck_assert_msg(memcmp(s->values, f->values, (size_t)s->size * sizeof(float)) == 0,
                  "the two models start from different weights");
    /* The functional chain also plans to two alternating gradient buffers. */
    ck_assert_int_eq(f->plan->ntmp, 0);
    for (int i = 2; i < CHAIN_N; i++)
        ck_assert_ptr_eq(f->dout[i].data, f->dout[i - 2].data);
    ck_assert_ptr_ne(f->dout[0].data, f->dout[1].data);
    float **r = make_r(s, rows);
    analytic_grads(s, r, rows);
    analytic_grads(f, r, rows);
    const ct_tensor *os = ct_model_output(s, 0), *of = ct_model_output(f, 0);
    ck_assert_msg(memcmp(os->data, of->data, (size_t)ct_tensor_size(os) * sizeof(float)) == 0,
                  "outputs differ");
    ck_assert_msg(memcmp(s->grads, f->grads, (size_t)s->trainable * sizeof(float)) == 0,
                  "gradients differ");
    free_r(s, r);
    for (int v = 0; v < 2; v++) {
        gm_close(&g[v]);
        free(yaml[v]);
    }
}
END_TEST

/* Bidirectional's outputs 1 to 4 are its copies' states in Keras's order (forward h, c,
 * backward h, c): the same as two LSTMs with the same weights, one going backwards, each
 * started from its half of the initial states. */
START_TEST(test_bidirectional_states)
{
    static const char *const bidi =
        "model:\n  inputs: {x: {shape: [4, 3]}, a: {shape: [2]}, b: {shape: [2]}}\n"
        "  layers:\n"
        "    - {name: r, type: bidirectional, layer: {type: lstm, units: 2, return_state: true},"
        " inputs: [x, a, b, b, a]}\n"
        "  outputs: [r, r:1, r:2, r:3, r:4]\n";
    static const char *const two =
        "model:\n  inputs: {x: {shape: [4, 3]}, a: {shape: [2]}, b: {shape: [2]}}\n"
        "  layers:\n"
        "    - {name: f, type: lstm, units: 2, return_state: true, inputs: [x, a, b]}\n"
        "    - {name: g, type: lstm, units: 2, return_state: true, go_backwards: true,"
        " inputs: [x, b, a]}\n"
        "    - {name: both, type: concatenate, inputs: [f, g]}\n"
        "  outputs: [both, f:1, f:2, g:1, g:2]\n";
    const int64_t rows = 3;
    gm gb, gt;
    gm_open(&gb, bidi, 5, rows);
    gm_open(&gt, two, 6, rows);
    ck_assert_int_eq(gb.m->size, gt.m->size);
    memcpy(gt.m->values, gb.m->values, (size_t)gb.m->size * sizeof(float));
    fill_inputs(gb.m, rows);
    fill_inputs(gt.m, rows);
    ct_model_forward(gb.m, &train_pass, rows);
    ct_model_forward(gt.m, &train_pass, rows);
    for (int k = 0; k < 5; k++) {
        const ct_tensor *a = ct_model_output(gb.m, k), *b = ct_model_output(gt.m, k);
        ck_assert_int_eq(ct_tensor_size(a), ct_tensor_size(b));
        for (int64_t i = 0; i < ct_tensor_size(a); i++)
            ck_assert_msg(fabsf(a->data[i] - b->data[i]) <= 1e-6f, "output %d [%lld]: %g, "
                          "the two LSTMs' %g", k, (long long)i, a->data[i], b->data[i]);
    }
    gm_close(&gb);
    gm_close(&gt);
}
END_TEST

/* Weights files list a Functional model's layers in Keras 3's order (by depth from the
 * outputs, not the config's), which Keras's loader pairs with its layers; ctrain pairs by
 * name when the file has every name, else by that order. All dense layers here have the
 * same shapes, so only the values tell a wrong pairing. */
static const char *const order_yaml =
    "model:\n  inputs: {x: {shape: [3]}}\n  layers:\n"
    "    - {name: %sshallow, type: dense, units: 3, inputs: x}\n"
    "    - {name: %sdeep1, type: dense, units: 3, inputs: x}\n"
    "    - {name: %sdeep2, type: dense, units: 3}\n"
    "    - {name: %ss, type: add, inputs: [%sdeep2, %sshallow]}\n";

static void order_model(gm *g, const char *prefix, uint64_t seed)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, order_yaml, prefix, prefix, prefix, prefix, prefix, prefix);
    gm_open(g, yaml, seed, 2);
}

START_TEST(test_weights_keras_order)
{
    gm a, b, c;
    order_model(&a, "", 1);
    order_model(&b, "b_", 2);
    int order[8];
    ck_assert_int_eq(ct_keras_layer_order(a.m, order), 4);
    const char *want[4] = {"deep1", "deep2", "shallow", "s"};
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(a.m->layers[order[i]].name, want[i]);
    char *dir = tu_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/w.h5", dir);
    ct_error err = {0};
    ck_assert_msg(ct_weights_save(a.m, path, NULL, NULL, &err) == 0, "%s", err.msg);
    /* other names: by Keras's order, each layer gets its namesake's values */
    ck_assert_msg(ct_weights_load(b.m, path, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(a.m->size, b.m->size);
    ck_assert(memcmp(a.m->values, b.m->values, (size_t)a.m->size * sizeof(float)) == 0);
    /* the same names in another config order: by name */
    static const char *const shuffled =
        "model:\n  inputs: {x: {shape: [3]}}\n  layers:\n"
        "    - {name: deep1, type: dense, units: 3, inputs: x}\n"
        "    - {name: shallow, type: dense, units: 3, inputs: x}\n"
        "    - {name: deep2, type: dense, units: 3, inputs: deep1}\n"
        "    - {name: s, type: add, inputs: [deep2, shallow]}\n";
    gm_open(&c, shuffled, 3, 2);
    ck_assert_msg(ct_weights_load(c.m, path, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        const ct_layer *la = &a.m->layers[i], *lc = NULL;
        for (int j = 0; j < c.m->nlayers; j++)
            if (!strcmp(c.m->layers[j].name, la->name))
                lc = &c.m->layers[j];
        ck_assert_ptr_nonnull(lc);
        ck_assert(memcmp(la->params[0].value, lc->params[0].value, 9 * sizeof(float)) == 0);
    }
    gm_close(&a);
    gm_close(&b);
    gm_close(&c);
    free(dir);
}
END_TEST

/* An inference plan (evaluate, predict) gives the training plan's outputs bit for bit; a
 * chain's activations then alternate between two buffers, and no gradient has one. */
START_TEST(test_inference_plan)
{
    for (int c = 0; c <= N_GRAPH; c++) {
        char *chain = c == N_GRAPH ? chain_yaml(false) : NULL;
        gm g;
        const int64_t rows = 3;
        gm_open(&g, chain ? chain : graph_cases[c].yaml, 4, rows);
        ct_model *m = g.m;
        ct_pass pass = {.training = false, .seed = 1, .step = 0};
        fill_inputs(m, rows);
        ct_model_forward(m, &pass, rows);
        float *want[CT_MAX_IO];
        for (int k = 0; k < m->noutputs; k++) {
            const ct_tensor *o = ct_model_output(m, k);
            want[k] = malloc((size_t)ct_tensor_size(o) * sizeof(float));
            memcpy(want[k], o->data, (size_t)ct_tensor_size(o) * sizeof(float));
        }
        ck_assert_int_eq(ct_model_plan_inference(m, rows, &g.err), 0);
        fill_inputs(m, rows);
        ct_model_forward(m, &pass, rows);
        for (int k = 0; k < m->noutputs; k++) {
            const ct_tensor *o = ct_model_output(m, k);
            ck_assert_msg(memcmp(want[k], o->data, (size_t)ct_tensor_size(o) * sizeof(float)) == 0,
                          "case %d output %d differs", c, k);
            free(want[k]);
        }
        for (int t = 0; t < m->ntensors; t++)
            ck_assert_ptr_null(m->dout[t].data);
        for (int i = 2; chain && i < m->nlayers; i++)
            ck_assert_ptr_eq(m->out[i].data, m->out[i - 2].data);
        if (chain)
            ck_assert_ptr_ne(m->out[0].data, m->out[1].data);
        /* Training again plans gradients again. */
        ck_assert_int_eq(ct_model_plan(m, rows, &g.err), 0);
        ck_assert_ptr_nonnull(m->dout[m->outputs[0]].data);
        gm_close(&g);
        free(chain);
    }
}
END_TEST

/* A shared chain is the same model as one shared entry per layer: the same nodes, names
 * and bits. */
START_TEST(test_shared_chain_same)
{
    static const char *const head =
        "model:\n  inputs: {a: {shape: [5]}, b: {shape: [5]}}\n  layers:\n"
        "    - {name: e1, type: dense, units: 4, activation: relu, inputs: a}\n"
        "    - {name: e2, type: dense, units: 3, activation: tanh}\n";
    static const char *const tail = "    - {name: d, type: subtract, inputs: [e2, r]}\n";
    char yaml[2][1024];
    snprintf(yaml[0], sizeof yaml[0], "%s    - {name: r, type: shared, layer: [e1, e2], "
             "inputs: b}\n%s", head, tail);
    snprintf(yaml[1], sizeof yaml[1], "%s    - {name: r_e1, type: shared, layer: e1, "
             "inputs: b}\n    - {name: r, type: shared, layer: e2}\n%s", head, tail);
    gm g[2];
    const int64_t rows = 3;
    for (int v = 0; v < 2; v++) {
        gm_open(&g[v], yaml[v], 5, rows);
        ck_assert_int_eq(g[v].m->nlayers, 5);
        ck_assert_str_eq(g[v].m->layers[2].name, "r_e1");
        ck_assert_str_eq(g[v].m->layers[3].name, "r");
        ck_assert_ptr_eq(g[v].m->layers[3].shared, &g[v].m->layers[1]);
        fill_inputs(g[v].m, rows);
    }
    float **r = make_r(g[0].m, rows);
    analytic_grads(g[0].m, r, rows);
    analytic_grads(g[1].m, r, rows);
    const ct_tensor *o0 = ct_model_output(g[0].m, 0), *o1 = ct_model_output(g[1].m, 0);
    ck_assert(memcmp(o0->data, o1->data, (size_t)ct_tensor_size(o0) * sizeof(float)) == 0);
    ck_assert(memcmp(g[0].m->grads, g[1].m->grads,
                     (size_t)g[0].m->trainable * sizeof(float)) == 0);
    free_r(g[0].m, r);
    for (int v = 0; v < 2; v++)
        gm_close(&g[v]);
}
END_TEST

/* A residual block: the fan-out's second gradient goes through one temporary, added once. */
START_TEST(test_fanout_plan)
{
    gm g;
    gm_open(&g, graph_cases[0].yaml, 3, 2);
    ct_model *m = g.m;
    ck_assert(m->functional);
    ck_assert_int_eq(m->plan->ntmp, 1);
    ck_assert_ptr_eq(m->plan->sums[0].into, m->dout[0].data); /* d1's gradient */
    gm_close(&g);
}
END_TEST

/* ---- HDF5 data written by the tests ------------------------------------------------------ */

static void h5_put(hid_t f, const char *name, hid_t type, int rank, hsize_t d0, hsize_t d1,
                   const void *data)
{
    hsize_t dims[2] = {d0, d1};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(ds >= 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
}

static ct_experiment *load_file(const char *dir, const char *file, const char *const *set,
                                int nset)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, set, nset, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    return ex;
}

static char *read_text(const char *dir, const char *run, const char *file)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s/%s", dir, run, file);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "%s", p);
    char *b = calloc(1, 16384);
    size_t len = fread(b, 1, 16383, f);
    b[len] = 0;
    fclose(f);
    return b;
}

/* ---- 3. loss weights against values computed here ---------------------------------- */

#define LW_ROWS 4

static const float lw_x[LW_ROWS][2] = {{0.5f, -1.0f}, {1.5f, 0.25f}, {-0.75f, 0.8f},
                                       {0.1f, 0.3f}};
static const float lw_ka[2][3] = {{0.4f, -0.3f, 0.9f}, {-0.6f, 0.2f, 0.5f}};
static const float lw_ba[3] = {0.1f, -0.2f, 0.05f};
static const float lw_kb[2] = {0.7f, -1.1f};
static const float lw_bb = 0.3f;
static const float lw_yb[LW_ROWS] = {0.2f, 1.0f, -0.5f, 0.75f};

static const char *lw_config =
    "name: weighted\n"
    "data:\n"
    "  train: {path: lw.h5, x: {x: xs}, y: {a: ya, b: yb}}\n"
    "  test: {path: lw.h5, x: {x: xs}, y: {a: ya, b: yb}}\n"
    "model:\n"
    "  inputs: {x: {shape: [2]}}\n"
    "  layers:\n"
    "    - {name: a, type: dense, units: 3, activation: softmax, inputs: x}\n"
    "    - {name: b, type: dense, units: 1, inputs: x}\n"
    "  outputs: [a, b]\n"
    "compile:\n"
    "  optimizer: {type: sgd, learning_rate: 0.5}\n"
    "  loss: {a: sparse_categorical_crossentropy, b: mse}\n"
    "  loss_weights: {a: 1.0, b: 0.25}\n"
    "  metrics: {a: [accuracy], b: [mae]}\n"
    "fit: {epochs: 1, batch_size: 8, shuffle: false, verbose: 0}\n";

/* The model's values by hand, in double: z = x W + b. */
typedef struct lw_expect {
    double a_loss, b_loss, loss, accuracy, mae;
} lw_expect;

static lw_expect lw_by_hand(const int32_t *ya)
{
    lw_expect e = {0, 0, 0, 0, 0};
    for (int r = 0; r < LW_ROWS; r++) {
        double z[3], zmax = -1e30, sum = 0;
        int best = 0;
        for (int j = 0; j < 3; j++) {
            z[j] = (double)lw_x[r][0] * lw_ka[0][j] + (double)lw_x[r][1] * lw_ka[1][j] + lw_ba[j];
            if (z[j] > zmax) {
                zmax = z[j];
                best = j;
            }
        }
        for (int j = 0; j < 3; j++)
            sum += exp(z[j] - zmax);
        e.a_loss += -(z[ya[r]] - zmax - log(sum));
        e.accuracy += best == ya[r];
        double yb = (double)lw_x[r][0] * lw_kb[0] + (double)lw_x[r][1] * lw_kb[1] + lw_bb;
        e.b_loss += (yb - lw_yb[r]) * (yb - lw_yb[r]);
        e.mae += fabs(yb - lw_yb[r]);
    }
    e.a_loss /= LW_ROWS;
    e.b_loss /= LW_ROWS;
    e.accuracy /= LW_ROWS;
    e.mae /= LW_ROWS;
    e.loss = 1.0 * e.a_loss + 0.25 * e.b_loss;
    return e;
}

/* The labels: the predicted class for all rows but the last, which gets another class. */
static void lw_labels(int32_t *ya)
{
    for (int r = 0; r < LW_ROWS; r++) {
        int best = 0;
        double zb = -1e30;
        for (int j = 0; j < 3; j++) {
            double z = (double)lw_x[r][0] * lw_ka[0][j] + (double)lw_x[r][1] * lw_ka[1][j] + lw_ba[j];
            if (z > zb) {
                zb = z;
                best = j;
            }
        }
        ya[r] = r == LW_ROWS - 1 ? (best + 1) % 3 : best;
    }
}

static void lw_set_weights(ct_experiment *ex)
{
    ct_model *m = ex->model;
    ck_assert_int_eq(m->nlayers, 2);
    ct_layer *a = &m->layers[0], *b = &m->layers[1];
    ck_assert_str_eq(a->name, "a");
    ck_assert_str_eq(b->name, "b");
    ck_assert_int_eq(a->params[0].shape.dim[0], 2);
    ck_assert_int_eq(a->params[0].shape.dim[1], 3);
    memcpy(a->params[0].value, lw_ka, sizeof lw_ka);
    memcpy(a->params[1].value, lw_ba, sizeof lw_ba);
    memcpy(b->params[0].value, lw_kb, sizeof lw_kb);
    b->params[1].value[0] = lw_bb;
}

static double csv_field(const char *header, const char *row, const char *name)
{
    char h[1024], r[1024];
    snprintf(h, sizeof h, "%s", header);
    snprintf(r, sizeof r, "%s", row);
    char *hs, *rs, *ht = strtok_r(h, ",\n", &hs), *rt = strtok_r(r, ",\n", &rs);
    while (ht && rt) {
        if (!strcmp(ht, name))
            return strtod(rt, NULL);
        ht = strtok_r(NULL, ",\n", &hs);
        rt = strtok_r(NULL, ",\n", &rs);
    }
    ck_abort_msg("no column '%s' in %s", name, header);
    return 0;
}

START_TEST(test_loss_weights)
{
    char *dir = tu_tmpdir();
    int32_t ya[LW_ROWS];
    lw_labels(ya);
    char p[4200];
    snprintf(p, sizeof p, "%s/lw.h5", dir);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    h5_put(f, "xs", H5T_NATIVE_FLOAT, 2, LW_ROWS, 2, lw_x);
    h5_put(f, "ya", H5T_NATIVE_INT32, 1, LW_ROWS, 0, ya);
    h5_put(f, "yb", H5T_NATIVE_FLOAT, 2, LW_ROWS, 1, lw_yb);
    H5Fclose(f);
    tu_write(dir, "weighted.yaml", lw_config);
    lw_expect e = lw_by_hand(ya);
    ck_assert_double_eq(e.accuracy, 0.75);

    /* evaluate */
    ct_experiment *ex = load_file(dir, "weighted.yaml", NULL, 0);
    lw_set_weights(ex);
    const char *names[8];
    double v[8];
    ct_error err = {0};
    int n = ct_experiment_evaluate(ex, NULL, NULL, NULL, names, v, 8, &err);
    ck_assert_msg(n == 5, "%d values: %s", n, err.msg);
    const char *want[] = {"loss", "a_accuracy", "b_mae", "a_loss", "b_loss"};
    const double val[] = {e.loss, e.accuracy, e.mae, e.a_loss, e.b_loss};
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(names[i], want[i]);
        ck_assert_msg(tu_relerr(v[i], val[i]) <= 1e-5, "%s = %.9g, by hand %.9g", want[i], v[i],
                      val[i]);
    }
    /* The weights matter: equal weights give another loss. */
    ct_experiment_free(ex);
    const char *equal[] = {"compile.loss_weights.b=1.0"};
    ex = load_file(dir, "weighted.yaml", equal, 1);
    lw_set_weights(ex);
    ck_assert_int_eq(ct_experiment_evaluate(ex, NULL, NULL, NULL, names, v, 8, &err), 5);
    ck_assert_msg(tu_relerr(v[0], e.a_loss + e.b_loss) <= 1e-5, "loss %.9g, by hand %.9g", v[0],
                  e.a_loss + e.b_loss);
    ct_experiment_free(ex);

    /* one epoch of one batch: history holds the values before the update */
    ex = load_file(dir, "weighted.yaml", NULL, 0);
    lw_set_weights(ex);
    char run[4200];
    snprintf(run, sizeof run, "%s/run", dir);
    FILE *devnull = fopen("/dev/null", "w");
    ct_fit_options o = {.run_dir = run, .verbose = 0, .out = devnull};
    int rc = ct_experiment_fit(ex, &o, &err);
    fclose(devnull);
    ck_assert_msg(rc == 0, "%s", err.msg);
    char *hist = read_text(dir, "run", "history.csv");
    char *row = strchr(hist, '\n');
    ck_assert_ptr_nonnull(row);
    *row++ = 0;
    ck_assert_str_eq(hist, "epoch,a_accuracy,b_mae,a_loss,b_loss,loss,learning_rate");
    const char *cols[] = {"loss", "a_accuracy", "b_mae", "a_loss", "b_loss"};
    for (int i = 0; i < 5; i++) {
        double got = csv_field(hist, row, cols[i]);
        ck_assert_msg(tu_relerr(got, val[i]) <= 1e-5, "history %s = %.9g, by hand %.9g", cols[i],
                      got, val[i]);
    }
    /* The update used the weighted loss's gradient: b's bias moved by
     * -lr * 0.25 * mean(2 (yhat - t)). */
    double g = 0;
    for (int r = 0; r < LW_ROWS; r++)
        g += 2 * ((double)lw_x[r][0] * lw_kb[0] + (double)lw_x[r][1] * lw_kb[1] + lw_bb - lw_yb[r]);
    g = 0.25 * g / LW_ROWS;
    double moved = (double)ex->model->layers[1].params[1].value[0] - lw_bb;
    ck_assert_msg(fabs(moved - (-0.5 * g)) <= 1e-6, "b's bias moved %.9g, want %.9g", moved,
                  -0.5 * g);
    free(hist);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* ---- 4. graph errors ----------------------------------------------------------------- */

/* Two inputs, two outputs; each case replaces part of it. */
static const char *const two_io =
    "model:\n"                                                             /* 1 */
    "  inputs: {left: {shape: [8]}, right: {shape: [8]}}\n"                /* 2 */
    "  layers:\n"                                                          /* 3 */
    "    - {name: enc, type: dense, units: 16, activation: tanh, inputs: left}\n" /* 4 */
    "    - {name: enc_r, type: shared, layer: enc, inputs: right}\n"       /* 5 */
    "    - {name: cls, type: dense, units: 2, activation: softmax, inputs: enc}\n" /* 6 */
    "    - {name: reg, type: dense, units: 3, inputs: enc_r}\n"            /* 7 */
    "  outputs: [cls, reg]\n"                                              /* 8 */
    "compile:\n"                                                           /* 9 */
    "  optimizer: adam\n"                                                  /* 10 */
    "  loss: {cls: sparse_categorical_crossentropy, reg: mse}\n"           /* 11 */
    "  loss_weights: {cls: 1.0, reg: 0.5}\n"                               /* 12 */
    "  metrics: {cls: [accuracy], reg: [mae]}\n"                           /* 13 */
    "data:\n"                                                              /* 14 */
    "  train: {path: two.h5, x: {left: a, right: b}, y: {cls: y1, reg: y2}}\n"; /* 15 */

typedef struct graph_err {
    const char *from, *to; /* replaced in two_io (to NULL: yaml is the whole config) */
    const char *yaml;
    const char *want[3];   /* substrings; the first follows "PATH:" */
} graph_err;

static const graph_err graph_errs[] = {
    /* 0 an unknown input name */
    {"inputs: left}", "inputs: lfet}", NULL,
     {"4:69: input 'lfet' is neither a model input nor a layer (did you mean 'left'?); "
      "known: left, right, enc, enc_r, cls, reg"}},
    /* 1 a cycle */
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
     "    - {name: a, type: dense, units: 4, inputs: b}\n"
     "    - {name: b, type: dense, units: 4, inputs: a}\n"
     "    - {name: c, type: dense, units: 2, inputs: x}\n"
     "compile: {loss: mse}\n",
     {"4:48: the layers form a cycle (a -> b -> a): a model's graph must lead from its "
      "inputs to its outputs"}},
    /* 2 a longer cycle, entered from outside it */
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
     "    - {name: in, type: dense, units: 4, inputs: x}\n"
     "    - {name: p, type: add, inputs: [in, r]}\n"
     "    - {name: q, type: dense, units: 4, inputs: p}\n"
     "    - {name: r, type: dense, units: 4, inputs: q}\n"
     "compile: {loss: mse}\n",
     {"5:36: the layers form a cycle (p -> q -> r -> p)"}},
    /* 3 an output that is a model input */
    {"outputs: [cls, reg]", "outputs: [cls, right]", NULL,
     {"8:18: output 'right' is a model input, not a layer"}},
    /* 4 an unknown output */
    {"outputs: [cls, reg]", "outputs: [cls, rge]", NULL,
     {"8:18: output 'rge' is neither a model input nor a layer (did you mean 'reg'?)"}},
    /* 5 a merge whose inputs do not combine: both layers, both shapes */
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [4]}}\n  layers:\n"
     "    - {name: p, type: dense, units: 4, inputs: x}\n"
     "    - {name: q, type: dense, units: 3, inputs: x}\n"
     "    - {name: s, type: add, inputs: [p, q]}\n"
     "compile: {loss: mse}\n",
     {"6:7: layer 's' (Add): inputs 1 and 2 have shapes (None, 4) and (None, 3), which do not "
      "broadcast", "(the inputs come from layer 'p' (Dense), shape (None, 4); layer 'q' (Dense), "
      "shape (None, 3))"}},
    /* 6 a concatenation of a model input and a layer of other ranks */
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [4]}, img: {shape: [2, 2]}}\n  layers:\n"
     "    - {name: p, type: dense, units: 4, inputs: x}\n"
     "    - {name: c, type: concatenate, inputs: [img, p]}\n"
     "compile: {loss: mse}\n",
     {"5:7: layer 'c' (Concatenate): inputs 1 and 2 have shapes (None, 2, 2) and (None, 4), "
      "of different ranks", "(the inputs come from model input 'img', shape (None, 2, 2); "
      "layer 'p' (Dense), shape (None, 4))"}},
    /* 7 a dense given two inputs */
    {"units: 3, inputs: enc_r}", "units: 3, inputs: [enc_r, enc]}", NULL,
     {"7:50: layer 'reg' (Dense): takes one input, got 2"}},
    /* 8 a shared entry naming an unknown layer */
    {"layer: enc,", "layer: ecn,", NULL,
     {"5:42: shared layer 'ecn' is neither a model input nor a layer (did you mean 'enc'?)"}},
    /* 9 a shared entry naming a model input */
    {"layer: enc,", "layer: left,", NULL,
     {"5:42: 'left' is a model input; `shared` applies a layer again"}},
    /* 10 shared applied to an input of another shape */
    {"right: {shape: [8]}", "right: {shape: [6]}", NULL,
     {"5:7: layer 'enc_r' (Dense): applies layer 'enc' to shape (None, 6), where its kernel "
      "would have shape (6, 16), but it has shape (8, 16) (built on shape (None, 8))"}},
    /* 11 data.train.x missing an input */
    {"x: {left: a, right: b}", "x: {left: a}", NULL,
     {"15:28: data.train.x has no dataset for the model's input 'right'"}},
    /* 12 data.train.x with an unknown key */
    {"x: {left: a, right: b}", "x: {left: a, rihgt: b}", NULL,
     {"15:38: unknown key 'rihgt' in data.train.x (did you mean 'right'?)"}},
    /* 13 data.train.y with an unknown key */
    {"y: {cls: y1, reg: y2}", "y: {cls: y1, regg: y2}", NULL,
     {"15:62: unknown key 'regg' in data.train.y (did you mean 'reg'?)"}},
    /* 14 data.train.x one name for two inputs */
    {"x: {left: a, right: b}", "x: a", NULL,
     {"15:28: data.train.x must map each of the model's 2 inputs to a dataset, such as "
      "{left: DATASET, right: DATASET}"}},
    /* 15 compile.loss missing an output */
    {"loss: {cls: sparse_categorical_crossentropy, reg: mse}",
     "loss: {cls: sparse_categorical_crossentropy}", NULL,
     {"11:9: compile.loss has no loss for output 'reg'"}},
    /* 16 compile.loss naming an unknown output */
    {"reg: mse}", "rg: mse}", NULL,
     {"11:48: unknown key 'rg' in compile.loss (did you mean 'reg'?)"}},
    /* 17 loss_weights naming an unknown output */
    {"reg: 0.5}", "regs: 0.5}", NULL,
     {"12:28: unknown key 'regs' in compile.loss_weights (did you mean 'reg'?)"}},
    /* 18 the first layer of a model with several inputs lacking `inputs` */
    {", inputs: left}", "}", NULL,
     {"4:7: layer 'enc' is the first layer of a model with 2 inputs: name its inputs "
      "(inputs: one of left, right)"}},
    /* 19 a layer taking its own output */
    {"units: 3, inputs: enc_r}", "units: 3, inputs: reg}", NULL,
     {"7:50: layer 'reg' cannot take its own output"}},
    /* 20 metrics naming an unknown output */
    {"reg: [mae]}", "rgg: [mae]}", NULL,
     {"13:30: unknown key 'rgg' in compile.metrics (did you mean 'reg'?)"}},
    /* 21 a shared chain naming an unknown layer */
    {"layer: enc,", "layer: [enc, ecn],", NULL,
     {"5:48: shared layer 'ecn' is neither a model input nor a layer (did you mean 'enc'?)"}},
    /* 22 a shared chain holding something other than a name */
    {"layer: enc,", "layer: [enc, [enc]],", NULL,
     {"5:48: shared layer 'enc_r': `layer` names the layer to apply again, or lists a chain "
      "of them such as [enc1, enc2]"}},
    /* 23 a chain whose node would take a name already used */
    {NULL, NULL,
     "model:\n  inputs: {a: {shape: [4]}}\n  layers:\n"
     "    - {name: d, type: dense, units: 4, inputs: a}\n"
     "    - {name: s_d, type: dense, units: 4, inputs: a}\n"
     "    - {name: s, type: shared, layer: [d, d], inputs: s_d}\n"
     "compile: {loss: mse}\n",
     {"6:39: the chain's layer would be named 's_d', which is already used"}},
    /* a one-input layer's error that shows the shape: the source is named without it */
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [3, 4]}}\n  layers:\n"
     "    - {name: p, type: flatten, inputs: x}\n"
     "    - {name: r, type: lstm, units: 2}\n"
     "compile: {loss: mse}\n",
     {"5:7: layer 'r' (LSTM): expects an input of shape (timesteps, features), got (None, 12) "
      "(the input comes from layer 'p' (Flatten))"}},
    /* an output a layer does not have */
    {"inputs: enc}", "inputs: \"enc:1\"}", NULL,
     {"6:71: layer 'enc' (Dense) has one output; 'enc:1' names output 1 (a recurrent layer "
      "has its states as outputs 1 and up with return_state: true)"}},
    /* a part of a model input */
    {"inputs: left}", "inputs: left:1}", NULL,
     {"4:69: 'left:1' names a part of a model input, which is one tensor; \"NAME:k\" names "
      "output k of a layer with several (return_state)"}},
    /* states past the last, as an input and as a model output */
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [3, 4]}}\n  layers:\n"
     "    - {name: r, type: gru, units: 2, return_state: true, inputs: x}\n"
     "    - {name: d, type: dense, units: 2, inputs: r:2}\n"
     "compile: {loss: mse}\n",
     {"5:48: layer 'r' (GRU) has outputs 0 to 1; 'r:2' names output 2"}},
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [3, 4]}}\n  layers:\n"
     "    - {name: r, type: gru, units: 2, return_state: true, inputs: x}\n"
     "  outputs: [r, r:1, r:1]\n"
     "compile: {loss: mse}\n",
     {"5:21: output 'r:1' is listed twice"}},
    /* time_distributed wraps layers of one output */
    {NULL, NULL,
     "model:\n  input_shape: [5, 4, 3]\n  layers:\n"
     "    - {type: time_distributed, layer: {type: lstm, units: 2, return_state: true}}\n"
     "compile: {loss: mse}\n",
     {"4:7: layer 'time_distributed' (TimeDistributed): wraps layers of one output; the "
      "wrapped LSTM has 3 (return_state)"}},
    /* bidirectional's initial states: both copies' */
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [3, 4]}, h: {shape: [2]}}\n  layers:\n"
     "    - {name: b, type: bidirectional, layer: {type: gru, units: 2}, inputs: [x, h]}\n"
     "compile: {loss: mse}\n",
     {"4:76: layer 'b' (Bidirectional): takes its sequence, or its sequence and the initial "
      "states of both copies (the forward copy's, then the backward copy's): got 2 inputs"}},
    /* initial states: how many, and their shapes */
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [3, 4]}, h: {shape: [2]}}\n  layers:\n"
     "    - {name: r, type: lstm, units: 2, inputs: [x, h]}\n"
     "compile: {loss: mse}\n",
     {"4:47: layer 'r' (LSTM): takes its sequence, or its sequence and its initial states h "
      "and c: 3 inputs, got 2"}},
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [3, 4]}, h: {shape: [3]}}\n  layers:\n"
     "    - {name: r, type: gru, units: 2, inputs: [x, h]}\n"
     "compile: {loss: mse}\n",
     {"4:46: layer 'r' (GRU): its initial state h (input 1) must have shape (2,), its units, "
      "got (None, 3)"}},
    {NULL, NULL,
     "model:\n  inputs: {x: {shape: [3, 4]}, h: {shape: [2]}}\n  layers:\n"
     "    - {name: r, type: simple_rnn, units: 2, inputs: [x, h, h]}\n"
     "compile: {loss: mse}\n",
     {"4:53: layer 'r' (SimpleRNN): takes its sequence, or its sequence and its initial state "
      "h: 2 inputs, got 3"}},
};

#define N_GRAPH_ERR (int)(sizeof graph_errs / sizeof graph_errs[0])

START_TEST(test_graph_errors)
{
    const graph_err *c = &graph_errs[_i];
    char text[4096];
    if (c->from) {
        const char *at = strstr(two_io, c->from);
        ck_assert_msg(at != NULL, "case %d: '%s' not in the config", _i, c->from);
        snprintf(text, sizeof text, "%.*s%s%s", (int)(at - two_io), two_io, c->to,
                 at + strlen(c->from));
    } else {
        snprintf(text, sizeof text, "%s", c->yaml);
    }
    char *dir = tu_tmpdir();
    const char *path = tu_write(dir, "graph.yaml", text);
    char full[4600];
    snprintf(full, sizeof full, "%s:%s", path, c->want[0]);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(path, NULL, 0, &err);
    ck_assert_msg(ex == NULL, "case %d loaded", _i);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_msg(strncmp(err.msg, full, strlen(full)) == 0, "case %d: expected\n%s\nat the "
                  "start of\n%s", _i, full, err.msg);
    for (int k = 1; k < 3 && c->want[k]; k++)
        ck_assert_msg(strstr(err.msg, c->want[k]) != NULL, "case %d: expected '%s' in '%s'", _i,
                      c->want[k], err.msg);
    free(dir);
}
END_TEST

/* The unmodified config loads (so each case above fails for its own change). */
START_TEST(test_graph_errors_base)
{
    char *dir = tu_tmpdir();
    const char *path = tu_write(dir, "graph.yaml", two_io);
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(path, NULL, 0, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ck_assert(ex->model->functional);
    ck_assert_int_eq(ex->model->ninputs, 2);
    ck_assert_int_eq(ex->model->noutputs, 2);
    ck_assert_ptr_null(ex->model->warnings);
    ct_experiment_free(ex);
    free(dir);
}
END_TEST

/* A layer whose output reaches no output is warned about and never computed; so is an
 * input nothing uses. */
START_TEST(test_unused_layer)
{
    const char *yaml =
        "model:\n  inputs: {x: {shape: [4]}, spare: {shape: [2]}}\n  layers:\n"
        "    - {name: h, type: dense, units: 4, activation: tanh, inputs: x}\n"
        "    - {name: side, type: dense, units: 3, inputs: h}\n"
        "    - {name: side2, type: dense, units: 3, inputs: side}\n"
        "    - {name: out, type: dense, units: 2, inputs: h}\n"
        "  outputs: out\n";
    gm g;
    gm_open(&g, yaml, 3, 2);
    ct_model *m = g.m;
    ck_assert_ptr_nonnull(m->warnings);
    ck_assert_str_eq(m->warnings,
                     "graph.yaml:5:7: layer 'side' (Dense): its output reaches no model output, "
                     "so it is not computed\n"
                     "graph.yaml:6:7: layer 'side2' (Dense): its output reaches no model output, "
                     "so it is not computed\n"
                     "graph.yaml:2:29: model input 'spare' is not used by any layer that reaches "
                     "an output\n");
    ck_assert_int_eq(m->nlayers, 4);
    for (int i = 0; i < m->nlayers; i++) {
        bool used = strcmp(m->layers[i].name, "side") && strcmp(m->layers[i].name, "side2");
        ck_assert_int_eq(m->live[i], used);
        /* not computed: no output buffer, no gradient buffer */
        ck_assert_int_eq(m->out[i].data != NULL, used);
        ck_assert_int_eq(m->dout[i].data != NULL, used);
    }
    /* Forward and backward run without it, and its parameters get zero gradients; the
     * rest still checks against finite differences. */
    fill_inputs(m, 2);
    float **r = make_r(m, 2);
    analytic_grads(m, r, 2);
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; !m->live[i] && j < m->layers[i].nparams; j++)
            for (int64_t e = 0; e < ct_shape_size(&m->layers[i].params[j].shape); e++)
                ck_assert_float_eq(m->layers[i].params[j].grad[e], 0.0f);
    free_r(m, r);
    gm_close(&g);
    gradcheck_model("unused layer", yaml, 2);
}
END_TEST

/* ---- 5. exact resume of a functional model ------------------------------------------- */

#define RS_ROWS 96

static const char *rs_config =
    "name: siamese\nseed: 5\n"
    "data:\n"
    "  train: {path: two.h5, x: {left: a, right: b}, y: {cls: y1, reg: y2}}\n"
    "  validation_split: 0.25\n"
    "model:\n"
    "  inputs: {left: {shape: [4]}, right: {shape: [4]}}\n"
    "  layers:\n"
    "    - {name: enc, type: dense, units: 8, activation: tanh, inputs: left}\n"
    "    - {name: enc_r, type: shared, layer: enc, inputs: right}\n"
    "    - {name: drop, type: dropout, rate: 0.25, inputs: enc}\n"
    "    - {name: both, type: concatenate, inputs: [drop, enc_r]}\n"
    "    - {name: cls, type: dense, units: 3, activation: softmax, inputs: both}\n"
    "    - {name: reg, type: dense, units: 2, inputs: enc_r}\n"
    "  outputs: [cls, reg]\n"
    "compile:\n"
    "  optimizer: adam\n"
    "  loss: {cls: sparse_categorical_crossentropy, reg: mse}\n"
    "  loss_weights: {cls: 1.0, reg: 0.5}\n"
    "  metrics: {cls: [accuracy], reg: [mae]}\n"
    "fit: {epochs: 2, batch_size: 16, verbose: 0}\n";

static char *rs_dir(void)
{
    char *dir = tu_tmpdir();
    float a[RS_ROWS * 4], b[RS_ROWS * 4], y2[RS_ROWS * 2];
    int32_t y1[RS_ROWS];
    tu_fill(a, RS_ROWS * 4, 71, -1, 1);
    tu_fill(b, RS_ROWS * 4, 72, -1, 1);
    for (int i = 0; i < RS_ROWS; i++) {
        y1[i] = (a[4 * i] + b[4 * i + 1] > 0) + (a[4 * i + 2] > 0.5f);
        y2[2 * i] = a[4 * i] - b[4 * i + 3];
        y2[2 * i + 1] = 0.5f * b[4 * i + 2];
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/two.h5", dir);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    h5_put(f, "a", H5T_NATIVE_FLOAT, 2, RS_ROWS, 4, a);
    h5_put(f, "b", H5T_NATIVE_FLOAT, 2, RS_ROWS, 4, b);
    h5_put(f, "y1", H5T_NATIVE_INT32, 1, RS_ROWS, 0, y1);
    h5_put(f, "y2", H5T_NATIVE_FLOAT, 2, RS_ROWS, 2, y2);
    H5Fclose(f);
    tu_write(dir, "siamese.yaml", rs_config);
    return dir;
}

/* Runs fit with `epochs`; stop_first: stop after the first batch; resume: from there. */
static void rs_run(const char *dir, const char *run, int epochs, bool stop_first,
                   const char *resume, float **w, int64_t *n, float **state, int64_t *ns)
{
    char e[64];
    snprintf(e, sizeof e, "fit.epochs=%d", epochs);
    const char *set[] = {e};
    ct_experiment *ex = load_file(dir, "siamese.yaml", set, 1);
    ck_assert(ex->model->functional);
    char r[4200];
    snprintf(r, sizeof r, "%s/%s", dir, run);
    ct_fit_options o = {.run_dir = resume ? NULL : r, .verbose = 0, .resume = resume};
    if (stop_first)
        ct_request_stop();
    ct_error err = {0};
    int rc = ct_experiment_fit(ex, &o, &err);
    if (stop_first) {
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(err.code, CT_ERR_INTERRUPT);
        ck_assert_msg(strstr(err.msg, "stopped after step 1 (epoch 1, batch 1)"), "%s", err.msg);
    } else {
        ck_assert_msg(rc == 0, "%s", err.msg);
    }
    *n = ex->model->size;
    *w = malloc((size_t)*n * sizeof **w);
    memcpy(*w, ex->model->values, (size_t)*n * sizeof **w);
    *ns = ex->optimizer->n * ct_optimizer_slots(ex->optimizer);
    *state = malloc((size_t)(*ns ? *ns : 1) * sizeof **state);
    memcpy(*state, ex->optimizer->state, (size_t)*ns * sizeof **state);
    ct_experiment_free(ex);
}

START_TEST(test_resume_functional)
{
    char *dir = rs_dir();
    float *w[3], *st[3];
    int64_t n[3], ns[3];
    char resume[4200];
    rs_run(dir, "full", 2, false, NULL, &w[0], &n[0], &st[0], &ns[0]);
    rs_run(dir, "half", 1, false, NULL, &w[1], &n[1], &st[1], &ns[1]);
    ck_assert_msg(memcmp(w[0], w[1], (size_t)n[0] * sizeof(float)) != 0,
                  "one epoch and two gave the same weights");
    free(w[1]);
    free(st[1]);
    snprintf(resume, sizeof resume, "%s/half", dir);
    rs_run(dir, "half", 2, false, resume, &w[1], &n[1], &st[1], &ns[1]);
    rs_run(dir, "cut", 2, true, NULL, &w[2], &n[2], &st[2], &ns[2]);
    free(w[2]);
    free(st[2]);
    snprintf(resume, sizeof resume, "%s/cut/checkpoint.h5", dir);
    rs_run(dir, "cut", 2, false, resume, &w[2], &n[2], &st[2], &ns[2]);
    for (int i = 1; i < 3; i++) {
        ck_assert_int_eq(n[i], n[0]);
        ck_assert_int_eq(ns[i], ns[0]);
        ck_assert_msg(memcmp(w[0], w[i], (size_t)n[0] * sizeof(float)) == 0, "weights %d", i);
        ck_assert_msg(memcmp(st[0], st[i], (size_t)ns[0] * sizeof(float)) == 0, "state %d", i);
    }
    char *h[3] = {read_text(dir, "full", "history.csv"), read_text(dir, "half", "history.csv"),
                  read_text(dir, "cut", "history.csv")};
    ck_assert_msg(strstr(h[0], "epoch,cls_accuracy,reg_mae,cls_loss,reg_loss,loss,"
                               "val_cls_accuracy,val_reg_mae,val_cls_loss,val_reg_loss,val_loss,"
                               "learning_rate\n") == h[0], "%s", h[0]);
    ck_assert_str_eq(h[1], h[0]);
    ck_assert_str_eq(h[2], h[0]);
    for (int i = 0; i < 3; i++)
        free(w[i]), free(st[i]), free(h[i]);
    free(dir);
}
END_TEST

/* ---- 6. masks ------------------------------------------------------------------------ */

/* What a layer's output carries (ct_layer.mask_out): besides these, k >= 0 is input k's. */
#define M_NONE CT_MASK_NONE
#define M_WRITES CT_MASK_WRITES
#define M_UNION CT_MASK_UNION

typedef struct mask_want {
    const char *layer;
    int mask_out;
} mask_want;

typedef struct mask_case {
    const char *name, *yaml;
    mask_want want[8];     /* ended by a NULL layer */
    const char *warnings;  /* m->warnings exactly; NULL: none */
} mask_case;

static const mask_case mask_cases[] = {
    /* 0 the mask reaches the output through a recurrent layer that returns sequences */
    {"embedding, lstm (return_sequences), dense",
     "model:\n  input_shape: [5]\n  layers:\n"
     "    - {type: embedding, input_dim: 7, output_dim: 3, mask_zero: true}\n"
     "    - {type: lstm, units: 4, return_sequences: true}\n"
     "    - {type: dense, units: 3, activation: softmax}\n",
     {{"embedding", M_WRITES}, {"lstm", 0}, {"dense", 0}, {NULL, 0}}, NULL},
    /* 1 a last state carries none, and that is no reason to warn */
    {"lstm without return_sequences",
     "model:\n  input_shape: [5]\n  layers:\n"
     "    - {type: embedding, input_dim: 7, output_dim: 3, mask_zero: true}\n"
     "    - {type: lstm, units: 4}\n"
     "    - {type: dense, units: 3, activation: softmax}\n",
     {{"embedding", M_WRITES}, {"lstm", M_NONE}, {"dense", M_NONE}, {NULL, 0}}, NULL},
    /* 2 a layer that does not use masks ends it, with a warning at that layer */
    {"conv1d ends it",
     "model:\n  input_shape: [5]\n  layers:\n"
     "    - {type: embedding, input_dim: 7, output_dim: 3, mask_zero: true}\n"
     "    - {type: conv1d, filters: 2, kernel_size: 2}\n"
     "    - {type: flatten}\n"
     "    - {type: dense, units: 3, activation: softmax}\n",
     {{"embedding", M_WRITES}, {"conv1d", M_NONE}, {"flatten", M_NONE}, {"dense", M_NONE},
      {NULL, 0}},
     "graph.yaml:5:7: layer 'conv1d' (Conv1D) does not use masks: the mask set by 'embedding' "
     "ends here\n"},
    /* 3 merges: two masks meet (their union, as Keras 3), one mask met twice (itself) */
    {"merges",
     "model:\n  inputs: {a: {shape: [5]}, b: {shape: [5]}}\n  layers:\n"
     "    - {name: ea, type: embedding, input_dim: 7, output_dim: 3, mask_zero: true, "
     "inputs: a}\n"
     "    - {name: eb, type: embedding, input_dim: 7, output_dim: 3, mask_zero: true, "
     "inputs: b}\n"
     "    - {name: s, type: add, inputs: [ea, eb]}\n"
     "    - {name: d, type: dense, units: 2, inputs: s}\n"
     "    - {name: da, type: dense, units: 3, inputs: ea}\n"
     "    - {name: t, type: multiply, inputs: [da, ea]}\n"
     "    - {name: c, type: concatenate, inputs: [eb, s]}\n"
     "  outputs: [d, t, c]\n",
     {{"ea", M_WRITES}, {"eb", M_WRITES}, {"s", M_UNION}, {"d", 0}, {"da", 0}, {"t", 0},
      {"c", M_UNION}, {NULL, 0}},
     NULL},
    /* 4 attention passes the query's mask (none when only the value has one); a merge
     * with an input that has none ends it (Keras 3 drops it there) */
    {"attention",
     "model:\n  inputs: {q: {shape: [4]}, v: {shape: [5]}}\n  layers:\n"
     "    - {name: eq, type: embedding, input_dim: 7, output_dim: 4, mask_zero: true, "
     "inputs: q}\n"
     "    - {name: ev, type: embedding, input_dim: 7, output_dim: 4, mask_zero: true, "
     "inputs: v}\n"
     "    - {name: eu, type: embedding, input_dim: 7, output_dim: 4, inputs: q}\n"
     "    - {name: att, type: multi_head_attention, num_heads: 2, key_dim: 2, "
     "inputs: [eq, ev]}\n"
     "    - {name: cross, type: multi_head_attention, num_heads: 1, key_dim: 2, "
     "inputs: [eu, ev]}\n"
     "    - {name: out, type: add, inputs: [att, cross]}\n"
     "  outputs: out\n",
     {{"eq", M_WRITES}, {"ev", M_WRITES}, {"eu", M_NONE}, {"att", 0}, {"cross", M_NONE},
      {"out", M_NONE}, {NULL, 0}},
     "graph.yaml:9:7: layer 'out' (Add) merges an input without a mask: the mask set by 'eq' "
     "ends here\n"},
    /* 5 masking writes one; wrappers pass it, global average pooling uses it */
    {"masking, wrappers, pooling",
     "model:\n  input_shape: [4, 3]\n  layers:\n"
     "    - {type: masking, mask_value: 0.5}\n"
     "    - {type: bidirectional, layer: {type: lstm, units: 2, return_sequences: true}}\n"
     "    - {type: time_distributed, layer: {type: dense, units: 3}}\n"
     "    - {type: global_average_pooling1d}\n"
     "    - {type: dense, units: 2}\n",
     {{"masking", M_WRITES}, {"bidirectional", 0}, {"time_distributed", 0},
      {"global_average_pooling1d", M_NONE}, {"dense", M_NONE}, {NULL, 0}},
     NULL},
    /* 6 per-step kinds pass it; a bidirectional last state and dot end it */
    {"per-step kinds, dot",
     "model:\n  input_shape: [6]\n  layers:\n"
     "    - {type: embedding, input_dim: 9, output_dim: 4, mask_zero: true}\n"
     "    - {type: dropout, rate: 0.1}\n"
     "    - {type: layer_normalization}\n"
     "    - {type: activation, activation: tanh}\n"
     "    - {type: gaussian_noise, stddev: 0.1}\n"
     "    - {type: position_embedding, sequence_length: 6}\n"
     "    - {name: b, type: bidirectional, layer: {type: gru, units: 2}}\n"
     "    - {name: d, type: dot, axes: 2, inputs: [position_embedding, position_embedding]}\n"
     "    - {name: f, type: flatten, inputs: d}\n"
     "    - {name: out, type: concatenate, inputs: [b, f]}\n"
     "  outputs: out\n",
     {{"dropout", 0}, {"layer_normalization", 0}, {"activation", 0}, {"gaussian_noise", 0},
      {"position_embedding", 0}, {"b", M_NONE}, {"d", M_NONE}, {NULL, 0}},
     "graph.yaml:11:7: layer 'd' (Dot) does not use masks: the mask set by 'embedding' ends "
     "here\n"},
    /* 7 a per-step kind whose output has another time axis; a layer not computed does not
     * warn */
    {"no timestep axis, unused layer",
     "model:\n  inputs: {x: {shape: [5]}}\n  layers:\n"
     "    - {name: e, type: embedding, input_dim: 7, output_dim: 3, mask_zero: true, "
     "inputs: x}\n"
     "    - {name: twice, type: concatenate, axis: 1, inputs: [e, e]}\n"
     "    - {name: side, type: conv1d, filters: 2, kernel_size: 2, inputs: e}\n"
     "    - {name: out, type: dense, units: 2, inputs: twice}\n"
     "  outputs: out\n",
     {{"e", M_WRITES}, {"twice", M_NONE}, {"side", M_NONE}, {"out", M_NONE}, {NULL, 0}},
     "graph.yaml:6:7: layer 'side' (Conv1D): its output reaches no model output, so it is not "
     "computed\n"
     "graph.yaml:5:7: layer 'twice' (Concatenate) gives no timestep axis of the mask's length: "
     "the mask set by 'e' ends here\n"},
    /* a recurrent layer given initial states: its steps ignore the mask (Keras 3), its
     * output carries it on, its states carry none */
    {"lstm given initial states",
     "model:\n  inputs: {t: {shape: [5]}, h: {shape: [4]}}\n  layers:\n"
     "    - {name: e, type: embedding, input_dim: 7, output_dim: 3, mask_zero: true, inputs: t}\n"
     "    - {name: r, type: lstm, units: 4, return_sequences: true, return_state: true,"
     " inputs: [e, h, h]}\n"
     "    - {name: d, type: dense, units: 4, inputs: r:1}\n"
     "  outputs: [r, d]\n",
     {{"e", M_WRITES}, {"r", 0}, {"d", M_NONE}, {NULL, 0}},
     "graph.yaml:5:7: layer 'r' (LSTM) is given initial states, so the mask set by 'e' does "
     "not reach its steps, as in Keras 3 (which passes a mask only to a layer called on one "
     "tensor); its output carries the mask on\n"},
};

#define N_MASK (int)(sizeof mask_cases / sizeof mask_cases[0])

static ct_layer *layer_named(ct_model *m, const char *name)
{
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, name))
            return &m->layers[i];
    ck_abort_msg("no layer '%s'", name);
    return NULL;
}

/* Each layer's decision, the warnings, and the planned tensors: a mask buffer where one is
 * carried, the input's own where it is passed on, none elsewhere. */
START_TEST(test_mask_rules)
{
    const mask_case *c = &mask_cases[_i];
    gm g;
    gm_open(&g, c->yaml, 3, 2);
    ct_model *m = g.m;
    for (const mask_want *w = c->want; w->layer; w++) {
        const ct_layer *l = layer_named(m, w->layer);
        ck_assert_msg(l->mask_out == w->mask_out, "%s: layer '%s': mask_out %d, want %d",
                      c->name, l->name, l->mask_out, w->mask_out);
        const ct_tensor *o = &m->out[l->index];
        if (!m->live[l->index] || l->mask_out == CT_MASK_NONE) {
            ck_assert_msg(o->mask == NULL, "%s: '%s' has a mask buffer", c->name, l->name);
        } else if (l->mask_out >= 0) {
            ct_source_id s = m->sources[l->index][l->mask_out];
            ck_assert_msg(s >= 0 && o->mask == m->out[s].mask && o->mask, "%s: '%s' does not "
                          "carry its input's mask", c->name, l->name);
        } else {
            ck_assert_msg(o->mask != NULL, "%s: '%s' has no mask buffer", c->name, l->name);
            for (int j = 0; j < l->ninputs; j++) {
                ct_source_id s = m->sources[l->index][j];
                if (s >= 0) /* a model input carries no mask */
                    ck_assert_ptr_ne(o->mask, m->out[s].mask);
            }
        }
    }
    if (c->warnings) {
        ck_assert_msg(m->warnings != NULL, "%s: no warning", c->name);
        ck_assert_str_eq(m->warnings, c->warnings);
    } else {
        ck_assert_msg(m->warnings == NULL, "%s: warned %s", c->name, m->warnings);
    }
    gm_close(&g);
}
END_TEST

/* Token ids in [1, vocab) with padding (0): the last `tail` steps of row r % 3 == 0, one
 * step in the middle of row r % 3 == 1, none in the others; seed varies the ids and where
 * the middle padding falls. */
static void padded_ids(float *x, int64_t rows, int64_t steps, int64_t vocab, int64_t tail,
                       unsigned seed)
{
    tu_fill(x, rows * steps, seed, 1.0f, (float)vocab);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < steps; t++) {
            float *v = &x[r * steps + t];
            *v = floorf(*v);
            if ((r % 3 == 0 && t >= steps - tail) ||
                (r % 3 == 1 && t == 1 + (int64_t)(seed + (unsigned)r) % (steps - 2)))
                *v = 0.0f;
        }
}

static void expect_mask_of_ids(const char *what, const float *mask, const float *ids, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(mask[i] == (ids[i] != 0.0f ? 1.0f : 0.0f), "%s: mask[%lld] = %g, id %g",
                      what, (long long)i, mask[i], ids[i]);
}

/* Embedding, LSTM (return_sequences), dense: the output's mask is the ids' and the LSTM
 * carries its state over a padded step, so the per-step dense gives there what it gave
 * one step before (softmax(bias) on a sample's leading padding, where the state is 0). */
START_TEST(test_mask_through_lstm)
{
    const int64_t rows = 6, T = 5, C = 3;
    gm g;
    gm_open(&g, mask_cases[0].yaml, 3, rows);
    ct_model *m = g.m;
    padded_ids(m->inputs[0].data, rows, T, 7, 2, 1);
    m->inputs[0].data[5 * T] = 0.0f; /* a sample starting with padding */
    const ct_tensor *out = ct_model_forward(m, &train_pass, rows);
    ck_assert_ptr_eq(out->mask, m->out[0].mask);
    expect_mask_of_ids("output", out->mask, m->inputs[0].data, rows * T);
    const float *bias = layer_named(m, "dense")->params[1].value;
    double z = 0;
    for (int64_t k = 0; k < C; k++)
        z += exp((double)bias[k]);
    int carried = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < T; t++) {
            if (out->mask[r * T + t] != 0.0f)
                continue;
            const float *y = out->data + (r * T + t) * C;
            for (int64_t k = 0; k < C; k++) {
                double want = t ? y[k - C] : exp((double)bias[k]) / z;
                ck_assert_msg(fabs(y[k] - want) <= 1e-6, "row %lld step %lld: %g, want %g",
                              (long long)r, (long long)t, y[k], want);
            }
            carried++;
        }
    ck_assert_int_ge(carried, 5);
    gm_close(&g);
}
END_TEST

/* Different masks meeting at a merge: the model computes their union (Keras 3). */
START_TEST(test_mask_union)
{
    const int64_t rows = 6, T = 5;
    gm g;
    gm_open(&g, mask_cases[3].yaml, 3, rows);
    ct_model *m = g.m;
    padded_ids(m->inputs[0].data, rows, T, 7, 2, 1);
    padded_ids(m->inputs[1].data, rows, T, 7, 1, 2);
    ct_model_forward(m, &train_pass, rows);
    const float *a = m->inputs[0].data, *b = m->inputs[1].data;
    expect_mask_of_ids("ea", m->out[layer_named(m, "ea")->index].mask, a, rows * T);
    expect_mask_of_ids("eb", m->out[layer_named(m, "eb")->index].mask, b, rows * T);
    const float *s = m->out[layer_named(m, "s")->index].mask;
    const float *c = m->out[layer_named(m, "c")->index].mask;
    int zero_a = 0, zero_b = 0;
    for (int64_t i = 0; i < rows * T; i++) {
        float want = a[i] != 0.0f || b[i] != 0.0f ? 1.0f : 0.0f;
        ck_assert_msg(s[i] == want && c[i] == want, "step %lld: s %g, c %g, ids %g and %g",
                      (long long)i, s[i], c[i], a[i], b[i]);
        zero_a += a[i] == 0.0f && b[i] != 0.0f;
        zero_b += b[i] == 0.0f && a[i] != 0.0f;
    }
    ck_assert(zero_a > 0 && zero_b > 0); /* each mask alone pads steps the other does not */
    ck_assert_ptr_eq(ct_model_output(m, 0)->mask, s);
    ck_assert_ptr_eq(ct_model_output(m, 1)->mask, m->out[layer_named(m, "ea")->index].mask);
    gm_close(&g);
}
END_TEST

/* Attention: the output carries the query's mask, and a padded value step is never
 * attended to: changing what the padding id embeds to changes no output at a query step
 * that holds data, while changing a real id's row does. */
START_TEST(test_mask_attention)
{
    const int64_t rows = 6, Tq = 4, Tv = 5, D = 4;
    gm g;
    gm_open(&g, mask_cases[4].yaml, 3, rows);
    ct_model *m = g.m;
    padded_ids(m->inputs[0].data, rows, Tq, 7, 1, 2);
    padded_ids(m->inputs[1].data, rows, Tv, 7, 2, 3);
    const ct_layer *att = layer_named(m, "att");
    const ct_tensor *y = &m->out[att->index];
    ct_model_forward(m, &train_pass, rows);
    ck_assert_ptr_eq(y->mask, m->out[layer_named(m, "eq")->index].mask);
    expect_mask_of_ids("att", y->mask, m->inputs[0].data, rows * Tq);
    int64_t n = rows * Tq * D;
    float *before = malloc((size_t)n * sizeof *before);
    memcpy(before, y->data, (size_t)n * sizeof *before);
    float *table = layer_named(m, "ev")->params[0].value;
    for (int k = 0; k < 2; k++) {
        for (int64_t j = 0; j < D; j++)
            table[k * D + j] += 5.0f; /* row 0: the padding; row 1: an id */
        ct_model_forward(m, &train_pass, rows);
        int64_t changed = 0;
        for (int64_t i = 0; i < rows * Tq; i++)
            for (int64_t j = 0; y->mask[i] != 0.0f && j < D; j++)
                changed += y->data[i * D + j] != before[i * D + j];
        if (k == 0)
            ck_assert_msg(changed == 0, "padding changed %lld outputs", (long long)changed);
        else
            ck_assert_int_gt(changed, 0);
    }
    free(before);
    gm_close(&g);
}
END_TEST

/* Masking: a step whose features all equal mask_value is padding; the layer zeroes it and
 * the mask travels on; Bidirectional's sequences are zero there; the pooling is the mean
 * over the other steps. */
START_TEST(test_masking_layer)
{
    const int64_t rows = 4, T = 4, F = 3;
    gm g;
    gm_open(&g, mask_cases[5].yaml, 3, rows);
    ct_model *m = g.m;
    float *x = m->inputs[0].data;
    tu_fill(x, rows * T * F, 7, -1, 1);
    const int64_t pad[][2] = {{0, 3}, {1, 1}, {2, 0}, {2, 2}};
    for (size_t k = 0; k < sizeof pad / sizeof pad[0]; k++)
        for (int64_t j = 0; j < F; j++)
            x[(pad[k][0] * T + pad[k][1]) * F + j] = 0.5f;
    x[(3 * T + 2) * F + 1] = 0.5f; /* one feature alone is no padding */
    ct_model_forward(m, &train_pass, rows);
    const ct_tensor *mk = &m->out[layer_named(m, "masking")->index];
    const ct_tensor *bi = &m->out[layer_named(m, "bidirectional")->index];
    const ct_tensor *td = &m->out[layer_named(m, "time_distributed")->index];
    const ct_tensor *gp = &m->out[layer_named(m, "global_average_pooling1d")->index];
    for (int64_t r = 0; r < rows; r++) {
        double mean[3] = {0, 0, 0}, steps = 0;
        for (int64_t t = 0; t < T; t++) {
            int64_t s = r * T + t;
            bool padded = false;
            for (size_t k = 0; k < sizeof pad / sizeof pad[0]; k++)
                padded |= pad[k][0] == r && pad[k][1] == t;
            ck_assert_msg(mk->mask[s] == (padded ? 0.0f : 1.0f), "mask at %lld", (long long)s);
            for (int64_t j = 0; j < F; j++)
                ck_assert(mk->data[s * F + j] == (padded ? 0.0f : x[s * F + j]));
            for (int64_t j = 0; j < 4 && padded; j++)
                ck_assert_msg(bi->data[s * 4 + j] == 0.0f, "bidirectional at a padded step");
            for (int64_t j = 0; j < 3 && !padded; j++)
                mean[j] += td->data[s * 3 + j];
            steps += !padded;
        }
        for (int64_t j = 0; j < 3; j++)
            ck_assert_msg(fabs(gp->data[r * 3 + j] - mean[j] / steps) <= 1e-6,
                          "row %lld: pooled %g, mean over data %g", (long long)r,
                          gp->data[r * 3 + j], mean[j] / steps);
    }
    gm_close(&g);
}
END_TEST

/* Inputs with padding: token ids below 7 (ndim 1) or features (ndim 2) whose padded steps
 * are all 0 (Masking's default mask_value). */
static void fill_padded(ct_model *m, int64_t rows)
{
    for (int k = 0; k < m->ninputs; k++) {
        const ct_shape *s = &m->input_shapes[k];
        float *x = m->inputs[k].data;
        if (s->ndim == 1) {
            padded_ids(x, rows, s->dim[0], 7, 2, 5u + (unsigned)k);
            continue;
        }
        int64_t T = s->dim[0], F = s->dim[1];
        tu_fill(x, rows * T * F, 20u + (unsigned)k, -1.0f, 1.0f);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < F && r % 3 != 2; j++)
                x[(r * T + (r % 3 ? 1 : T - 1)) * F + j] = 0.0f;
    }
}

/* Finite-difference gradients of masked models: recurrent layers carrying their state
 * over padding (both ways, both GRU biases), Bidirectional zeroing its sequences, a
 * masked mean, attention, and a union of masks. */
static const graph_case mask_grad_cases[] = {
    {"masked recurrent layers",
     "model:\n  input_shape: [5, 3]\n  layers:\n"
     "    - {type: masking}\n"
     "    - {type: lstm, units: 3, return_sequences: true}\n"
     "    - {type: gru, units: 3, return_sequences: true, go_backwards: true}\n"
     "    - {type: gru, units: 2, return_sequences: true, reset_after: false}\n"
     "    - {type: simple_rnn, units: 2}\n"
     "    - {type: dense, units: 2}\n"},
    {"masked bidirectional and pooling",
     "model:\n  input_shape: [5]\n  layers:\n"
     "    - {type: embedding, input_dim: 7, output_dim: 3, mask_zero: true}\n"
     "    - {type: bidirectional, layer: {type: lstm, units: 2, return_sequences: true}}\n"
     "    - {type: time_distributed, layer: {type: dense, units: 3, activation: tanh}}\n"
     "    - {name: gap, type: global_average_pooling1d}\n"
     "    - {name: last, type: bidirectional, merge_mode: sum, layer: {type: gru, units: 2},"
     " inputs: time_distributed}\n"
     "    - {type: concatenate, inputs: [gap, last]}\n"},
    /* masked states: carried over padding into return_state, and into a second layer's
     * initial state */
    {"masked states",
     "model:\n  inputs: {x: {shape: [5, 3]}}\n  layers:\n"
     "    - {name: m, type: masking, inputs: x}\n"
     "    - {name: enc, type: lstm, units: 3, return_state: true, go_backwards: true}\n"
     "    - {name: dec, type: lstm, units: 3, return_sequences: true, "
     "inputs: [m, enc:1, enc:2]}\n"
     "    - {name: p, type: global_average_pooling1d}\n"
     "  outputs: [p, enc:2]\n"},
    {"masked bidirectional states",
     "model:\n  inputs: {x: {shape: [5, 3]}}\n  layers:\n"
     "    - {name: m, type: masking, inputs: x}\n"
     "    - {name: b, type: bidirectional, layer: {type: gru, units: 2, return_sequences: true,"
     " return_state: true}}\n"
     "    - {name: p, type: global_average_pooling1d, inputs: b}\n"
     "    - {name: s, type: concatenate, inputs: [p, b:1, b:2]}\n"},
    {"masked attention and a union of masks",
     "model:\n  inputs: {q: {shape: [5]}, v: {shape: [5]}}\n  layers:\n"
     "    - {name: eq, type: embedding, input_dim: 7, output_dim: 4, mask_zero: true, "
     "inputs: q}\n"
     "    - {name: ev, type: embedding, input_dim: 7, output_dim: 4, mask_zero: true, "
     "inputs: v}\n"
     "    - {name: att, type: multi_head_attention, num_heads: 2, key_dim: 2, "
     "inputs: [eq, ev]}\n"
     "    - {name: both, type: add, inputs: [att, ev]}\n"
     "    - {name: rnn, type: simple_rnn, units: 3, return_sequences: true}\n"
     "    - {name: out, type: dense, units: 2}\n"
     "  outputs: out\n"},
};

#define N_MASK_GRAD (int)(sizeof mask_grad_cases / sizeof mask_grad_cases[0])

START_TEST(test_mask_gradients)
{
    const graph_case *c = &mask_grad_cases[_i];
    gradcheck_filled(c->name, c->yaml, 3, fill_padded);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("graph");
    TCase *g = tcase_create("gradients");
    tcase_set_timeout(g, 120);
    tcase_add_loop_test(g, test_graph_gradients, 0, N_GRAPH);
    tcase_add_test(g, test_relu_fusion);
    tcase_add_test(g, test_shared_sum);
    tcase_add_test(g, test_shared_owner_unused);
    tcase_add_test(g, test_bidirectional_states);
    suite_add_tcase(s, g);
    TCase *p = tcase_create("plan");
    tcase_add_test(p, test_chain_two_buffers);
    tcase_add_test(p, test_chain_functional_same);
    tcase_add_test(p, test_shared_chain_same);
    tcase_add_test(p, test_inference_plan);
    tcase_add_test(p, test_fanout_plan);
    tcase_add_test(p, test_weights_keras_order);
    suite_add_tcase(s, p);
    TCase *e = tcase_create("errors");
    tcase_add_loop_test(e, test_graph_errors, 0, N_GRAPH_ERR);
    tcase_add_test(e, test_graph_errors_base);
    tcase_add_test(e, test_unused_layer);
    suite_add_tcase(s, e);
    TCase *t = tcase_create("training");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_loss_weights);
    tcase_add_test(t, test_resume_functional);
    suite_add_tcase(s, t);
    TCase *mk = tcase_create("masks");
    tcase_set_timeout(mk, 120);
    tcase_add_loop_test(mk, test_mask_rules, 0, N_MASK);
    tcase_add_test(mk, test_mask_through_lstm);
    tcase_add_test(mk, test_mask_union);
    tcase_add_test(mk, test_mask_attention);
    tcase_add_test(mk, test_masking_layer);
    tcase_add_loop_test(mk, test_mask_gradients, 0, N_MASK_GRAD);
    suite_add_tcase(s, mk);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
