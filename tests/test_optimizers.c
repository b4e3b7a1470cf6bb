/* test_optimizers.c - optimizer updates against hand values and an independent double
 * reimplementation, gradient clipping, weight decay, and compile.optimizer parsing. */
#include <stdint.h>

#include "optimizer.h"
#include "testutil.h"

#define N 3
#define STEPS 3

static const double W0[N] = {1.0, -2.0, 0.5};
static const double G[STEPS][N] = {{0.1, -0.2, 0.3}, {0.4, 0.1, -0.5}, {-0.3, 0.25, 0.05}};

/* An optimizer built by hand, as ct_optimizer_new would leave it (hyper slots as each
 * kind's configure fills them). */
static ct_optimizer *mk_opt(const char *kind, double lr, int64_t n)
{
    ct_optimizer *o = calloc(1, sizeof *o);
    ck_assert_ptr_nonnull(o);
    o->kind = ct_optimizer_kind_find(kind);
    ck_assert_msg(o->kind != NULL, "no optimizer %s", kind);
    o->learning_rate = lr;
    o->n = n;
    return o;
}

static void mk_state(ct_optimizer *o)
{
    int spp = o->kind->state_per_param(o);
    o->state = spp ? calloc((size_t)(spp * o->n), sizeof(float)) : NULL;
    for (int64_t i = 0; o->kind->initial_state && i < spp * o->n; i++)
        o->state[i] = o->kind->initial_state(o);
}

/* One trainable tensor of N floats at offset 0. */
static ct_param vec_param(float *w, float *g)
{
    ct_param p;
    memset(&p, 0, sizeof p);
    strcpy(p.name, "kernel");
    p.shape.ndim = 1;
    p.shape.dim[0] = N;
    p.trainable = true;
    p.value = w;
    p.grad = g;
    return p;
}

/* Runs STEPS updates from W0 with gradients G and compares every step with want. */
static void run_steps(ct_optimizer *o, double want[STEPS][N], double tol)
{
    float w[N], g[N];
    for (int i = 0; i < N; i++)
        w[i] = (float)W0[i];
    ct_param p = vec_param(w, g);
    ct_param *params[] = {&p};
    for (int t = 0; t < STEPS; t++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)G[t][i];
        ct_optimizer_apply(o, params, 1, w, g);
        ck_assert_int_eq(o->iterations, t + 1);
        for (int i = 0; i < N; i++)
            ck_assert_msg(tu_relerr(w[i], want[t][i]) <= tol,
                          "%s step %d w[%d] = %.9g, want %.9g", o->kind->name, t + 1, i, w[i],
                          want[t][i]);
    }
}

/* ---- independent double-precision references (Keras 3's rules, written plainly) ---- */

typedef struct ref_opts {
    double lr, wd;
    double momentum;  /* sgd, rmsprop */
    bool nesterov;    /* sgd */
    double b1, b2, eps;
    bool amsgrad;     /* adam */
    double rho;       /* rmsprop */
    bool centered;
    double init_acc;  /* adagrad */
} ref_opts;

static void decay(double *w, const ref_opts *r)
{
    for (int i = 0; i < N; i++)
        w[i] = w[i] - w[i] * r->wd * r->lr;
}

static void ref_sgd(const ref_opts *r, double out[STEPS][N])
{
    double w[N], v[N] = {0};
    memcpy(w, W0, sizeof w);
    for (int t = 0; t < STEPS; t++) {
        decay(w, r);
        for (int i = 0; i < N; i++) {
            v[i] = r->momentum * v[i] - r->lr * G[t][i];
            w[i] += r->nesterov ? r->momentum * v[i] - r->lr * G[t][i] : v[i];
        }
        memcpy(out[t], w, sizeof w);
    }
}

static void ref_adam(const ref_opts *r, double out[STEPS][N])
{
    double w[N], m[N] = {0}, v[N] = {0}, vh[N] = {0};
    memcpy(w, W0, sizeof w);
    for (int t = 1; t <= STEPS; t++) {
        decay(w, r);
        double alpha = r->lr * sqrt(1 - pow(r->b2, t)) / (1 - pow(r->b1, t));
        for (int i = 0; i < N; i++) {
            double g = G[t - 1][i];
            m[i] = r->b1 * m[i] + (1 - r->b1) * g;
            v[i] = r->b2 * v[i] + (1 - r->b2) * g * g;
            vh[i] = v[i] > vh[i] ? v[i] : vh[i];
            w[i] -= alpha * m[i] / (sqrt(r->amsgrad ? vh[i] : v[i]) + r->eps);
        }
        memcpy(out[t - 1], w, sizeof w);
    }
}

static void ref_rmsprop(const ref_opts *r, double out[STEPS][N])
{
    double w[N], v[N] = {0}, a[N] = {0}, m[N] = {0};
    memcpy(w, W0, sizeof w);
    for (int t = 0; t < STEPS; t++) {
        decay(w, r);
        for (int i = 0; i < N; i++) {
            double g = G[t][i];
            v[i] = r->rho * v[i] + (1 - r->rho) * g * g;
            a[i] = r->rho * a[i] + (1 - r->rho) * g;
            double den = r->centered ? v[i] - a[i] * a[i] + r->eps : v[i] + r->eps;
            double inc = r->lr * g / sqrt(den);
            m[i] = r->momentum * m[i] + inc;
            w[i] -= r->momentum > 0 ? m[i] : inc;
        }
        memcpy(out[t], w, sizeof w);
    }
}

static void ref_adagrad(const ref_opts *r, double out[STEPS][N])
{
    double w[N], a[N];
    memcpy(w, W0, sizeof w);
    for (int i = 0; i < N; i++)
        a[i] = r->init_acc;
    for (int t = 0; t < STEPS; t++) {
        decay(w, r);
        for (int i = 0; i < N; i++) {
            a[i] += G[t][i] * G[t][i];
            w[i] -= r->lr * G[t][i] / sqrt(a[i] + r->eps);
        }
        memcpy(out[t], w, sizeof w);
    }
}

/* ---- updates --------------------------------------------------------------------------- */

START_TEST(test_sgd_plain)
{
    ct_optimizer *o = mk_opt("sgd", 0.1, N);
    mk_state(o);
    ck_assert_int_eq(o->kind->state_per_param(o), 0);
    /* w - 0.1 g: 1 - 0.01, -2 + 0.02, 0.5 - 0.03; then - 0.1 * (0.4, 0.1, -0.5); then
     * - 0.1 * (-0.3, 0.25, 0.05) */
    double want[STEPS][N] = {{0.99, -1.98, 0.47}, {0.95, -1.99, 0.52}, {0.98, -2.015, 0.515}};
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

START_TEST(test_sgd_momentum)
{
    ct_optimizer *o = mk_opt("sgd", 0.1, N);
    o->hyper[0] = 0.9; /* momentum */
    mk_state(o);
    ck_assert_int_eq(o->kind->state_per_param(o), 1);
    ck_assert_str_eq(o->kind->state_name(o, 0), "momentum");
    double want[STEPS][N];
    ref_opts r = {.lr = 0.1, .momentum = 0.9};
    ref_sgd(&r, want);
    /* by hand: v1 = -0.1 g1 = (-0.01, 0.02, -0.03); v2 = 0.9 v1 - 0.1 g2 = (-0.049, 0.008,
     * 0.023); w2 = w1 + v2 = (0.941, -1.972, 0.493) */
    ck_assert_double_eq_tol(want[1][0], 0.941, 1e-12);
    ck_assert_double_eq_tol(want[1][1], -1.972, 1e-12);
    ck_assert_double_eq_tol(want[1][2], 0.493, 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);

    o = mk_opt("sgd", 0.1, N);
    o->hyper[0] = 0.9;
    o->flag[0] = true; /* nesterov */
    mk_state(o);
    r.nesterov = true;
    ref_sgd(&r, want);
    /* by hand, step 1: w += 0.9 v1 - 0.1 g1 = (-0.019, 0.038, -0.057) */
    ck_assert_double_eq_tol(want[0][0], 0.981, 1e-12);
    ck_assert_double_eq_tol(want[0][1], -1.962, 1e-12);
    ck_assert_double_eq_tol(want[0][2], 0.443, 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

static ct_optimizer *mk_adam(const char *kind, double lr, bool amsgrad)
{
    ct_optimizer *o = mk_opt(kind, lr, N);
    o->hyper[0] = 0.9;   /* beta_1 */
    o->hyper[1] = 0.999; /* beta_2 */
    o->hyper[2] = 1e-7;  /* epsilon */
    o->flag[0] = amsgrad;
    mk_state(o);
    return o;
}

START_TEST(test_adam)
{
    ct_optimizer *o = mk_adam("adam", 0.01, false);
    ck_assert_int_eq(o->kind->state_per_param(o), 2);
    ck_assert_str_eq(o->kind->state_name(o, 0), "m");
    ck_assert_str_eq(o->kind->state_name(o, 1), "v");
    double want[STEPS][N];
    ref_opts r = {.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 1e-7};
    ref_adam(&r, want);
    /* by hand, step 1: alpha = 0.01 sqrt(0.001) / 0.1; m = 0.1 g; v = 0.001 g^2, so
     * w -= 0.01 g / (|g| + 1e-7 / sqrt(0.001)) ~ 0.01 sign(g) */
    ck_assert_double_eq_tol(want[0][0], 0.9900003162177663, 1e-12);
    ck_assert_double_eq_tol(want[0][1], -1.990000158111383, 1e-12);
    ck_assert_double_eq_tol(want[0][2], 0.49000010540814426, 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

START_TEST(test_adam_amsgrad)
{
    ct_optimizer *o = mk_adam("Adam", 0.01, true);
    o->hyper[1] = 0.5; /* beta_2 low enough for v to fall within three steps */
    ck_assert_int_eq(o->kind->state_per_param(o), 3);
    ck_assert_str_eq(o->kind->state_name(o, 2), "v_hat");
    double want[STEPS][N], plain[STEPS][N];
    ref_opts r = {.lr = 0.01, .b1 = 0.9, .b2 = 0.5, .eps = 1e-7, .amsgrad = true};
    ref_adam(&r, want);
    r.amsgrad = false;
    ref_adam(&r, plain);
    /* element 2: v = 0.045, 0.1475, then 0.075 < v_hat = 0.1475, so the results differ */
    ck_assert(fabs(want[2][2] - plain[2][2]) > 1e-4);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

START_TEST(test_adamw_decay)
{
    ct_optimizer *o = mk_adam("adamw", 0.01, false);
    o->weight_decay = 0.004;
    double want[STEPS][N];
    ref_opts r = {.lr = 0.01, .wd = 0.004, .b1 = 0.9, .b2 = 0.999, .eps = 1e-7};
    ref_adam(&r, want);
    /* step 1: w0 (1 - 0.01 * 0.004) then the adam step: 0.99996 - 0.0099996838 */
    ck_assert_double_eq_tol(want[0][0], 1.0 - 0.00004 - (1 - 0.9900003162177663), 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

START_TEST(test_rmsprop)
{
    ct_optimizer *o = mk_opt("rmsprop", 0.01, N);
    o->hyper[0] = 0.9;  /* rho */
    o->hyper[2] = 1e-7; /* epsilon */
    mk_state(o);
    ck_assert_int_eq(o->kind->state_per_param(o), 1);
    ck_assert_str_eq(o->kind->state_name(o, 0), "velocity");
    double want[STEPS][N];
    ref_opts r = {.lr = 0.01, .rho = 0.9, .eps = 1e-7};
    ref_rmsprop(&r, want);
    /* by hand, step 1: v = 0.1 g^2, w -= 0.01 g / sqrt(0.1 g^2 + 1e-7) (epsilon inside the
     * square root, as Keras 3) */
    ck_assert_double_eq_tol(want[0][0], 0.9683788044185707, 1e-12);
    ck_assert_double_eq_tol(want[0][1], -1.9683776186756123, 1e-12);
    ck_assert_double_eq_tol(want[0][2], 0.46837739907894443, 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

START_TEST(test_rmsprop_centered_momentum)
{
    ct_optimizer *o = mk_opt("RMSprop", 0.01, N);
    o->hyper[0] = 0.9;  /* rho */
    o->hyper[1] = 0.5;  /* momentum */
    o->hyper[2] = 1e-7; /* epsilon */
    o->flag[0] = true;  /* centered */
    mk_state(o);
    ck_assert_int_eq(o->kind->state_per_param(o), 3);
    ck_assert_str_eq(o->kind->state_name(o, 0), "velocity");
    ck_assert_str_eq(o->kind->state_name(o, 1), "average_gradient");
    ck_assert_str_eq(o->kind->state_name(o, 2), "momentum");
    double want[STEPS][N];
    ref_opts r = {.lr = 0.01, .rho = 0.9, .momentum = 0.5, .centered = true, .eps = 1e-7};
    ref_rmsprop(&r, want);
    /* by hand, step 1: v = 0.1 g^2, ag = 0.1 g, den = 0.1 g^2 - 0.01 g^2 + eps = 0.09 g^2 +
     * eps, so w -= 0.01 g / sqrt(0.09 g^2 + 1e-7): for g = 0.1, 0.001 / sqrt(0.0009001) */
    ck_assert_double_eq_tol(want[0][0], 1.0 - 0.001 / sqrt(0.0009001), 1e-12);
    run_steps(o, want, 1e-5);
    ct_optimizer_free(o);

    o = mk_opt("rmsprop", 0.01, N); /* momentum without centering: slots velocity, momentum */
    o->hyper[0] = 0.9;
    o->hyper[1] = 0.5;
    o->hyper[2] = 1e-7;
    mk_state(o);
    ck_assert_int_eq(o->kind->state_per_param(o), 2);
    ck_assert_str_eq(o->kind->state_name(o, 1), "momentum");
    r.centered = false;
    ref_rmsprop(&r, want);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

START_TEST(test_adagrad)
{
    ct_optimizer *o = mk_opt("adagrad", 0.1, N);
    o->hyper[0] = 0.1;  /* initial_accumulator_value */
    o->hyper[1] = 1e-7; /* epsilon */
    mk_state(o);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(o->state[i], 0.1f);
    ck_assert_str_eq(o->kind->state_name(o, 0), "accumulator");
    double want[STEPS][N];
    ref_opts r = {.lr = 0.1, .init_acc = 0.1, .eps = 1e-7};
    ref_adagrad(&r, want);
    /* by hand, step 1: a = 0.1 + g^2 = (0.11, 0.14, 0.19); w -= 0.1 g / sqrt(a + 1e-7) */
    ck_assert_double_eq_tol(want[0][0], 0.9698488792472754, 1e-12);
    ck_assert_double_eq_tol(want[0][1], -1.9465477707075935, 1e-12);
    ck_assert_double_eq_tol(want[0][2], 0.4311752979505928, 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

/* A large epsilon makes its placement visible: inside the square root for rmsprop and
 * adagrad (Keras 3), outside for adam. */
START_TEST(test_epsilon_placement)
{
    double want[STEPS][N];
    ct_optimizer *o = mk_opt("adagrad", 0.1, N);
    o->hyper[0] = 0.1;  /* initial_accumulator_value */
    o->hyper[1] = 0.01; /* epsilon */
    mk_state(o);
    ref_opts r = {.lr = 0.1, .init_acc = 0.1, .eps = 0.01};
    ref_adagrad(&r, want);
    /* 1 - 0.1 * 0.1 / sqrt(0.11 + 0.01); sqrt(0.11) + 0.01 would give 0.9707323 */
    ck_assert_double_eq_tol(want[0][0], 1.0 - 0.01 / sqrt(0.12), 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);

    o = mk_opt("rmsprop", 0.01, N);
    o->hyper[0] = 0.9;
    o->hyper[2] = 0.01;
    mk_state(o);
    r = (ref_opts){.lr = 0.01, .rho = 0.9, .eps = 0.01};
    ref_rmsprop(&r, want);
    /* 1 - 0.01 * 0.1 / sqrt(0.001 + 0.01) */
    ck_assert_double_eq_tol(want[0][0], 1.0 - 0.001 / sqrt(0.011), 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);

    o = mk_adam("adam", 0.01, false);
    o->hyper[2] = 0.01;
    r = (ref_opts){.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 0.01};
    ref_adam(&r, want);
    /* alpha = 0.01 sqrt(0.001) / 0.1; 1 - alpha * 0.01 / (sqrt(0.001) * 0.1 + 0.01) */
    double alpha = 0.01 * sqrt(0.001) / 0.1;
    ck_assert_double_eq_tol(want[0][0], 1.0 - alpha * 0.01 / (sqrt(0.001) * 0.1 + 0.01), 1e-12);
    run_steps(o, want, 1e-6);
    ct_optimizer_free(o);
}
END_TEST

START_TEST(test_weight_decay_plain_sgd)
{
    ct_optimizer *o = mk_opt("sgd", 0.1, N);
    o->weight_decay = 0.1;
    mk_state(o);
    float w[N] = {1, -2, 0.5f}, g[N] = {0, 0, 0};
    ct_param p = vec_param(w, g);
    ct_param *params[] = {&p};
    ct_optimizer_apply(o, params, 1, w, g);
    /* w - 0.1 * 0.1 * w = 0.99 w */
    ck_assert_float_eq_tol(w[0], 0.99f, 1e-7f);
    ck_assert_float_eq_tol(w[1], -1.98f, 1e-7f);
    ck_assert_float_eq_tol(w[2], 0.495f, 1e-7f);
    ct_optimizer_free(o);
}
END_TEST

/* ---- clipping and non-trainable parameters ----------------------------------------------- */

/* kernel (2 floats, offset 0) and bias (1, offset 2) trainable; moving_mean (2, offset 3)
 * not. With sgd, lr 1 and w = 0 the update leaves w = -(clipped g). */
typedef struct block {
    float w[5], g[5];
    ct_param p[3];
    ct_param *ptr[3];
} block;

static void block_init(block *b, const float *g)
{
    memset(b, 0, sizeof *b);
    const char *names[] = {"kernel", "bias", "moving_mean"};
    const int64_t size[] = {2, 1, 2}, off[] = {0, 2, 3};
    for (int i = 0; i < 3; i++) {
        strcpy(b->p[i].name, names[i]);
        b->p[i].shape.ndim = 1;
        b->p[i].shape.dim[0] = size[i];
        b->p[i].offset = off[i];
        b->p[i].trainable = i < 2;
        b->p[i].value = b->w + off[i];
        b->p[i].grad = i < 2 ? b->g + off[i] : NULL;
        b->ptr[i] = &b->p[i];
    }
    memcpy(b->g, g, 3 * sizeof *g);
    b->g[3] = b->g[4] = 100.0f; /* beyond the trainable block: never read */
    b->w[3] = 7.0f;
    b->w[4] = 8.0f;
}

static void clip_case(double clipvalue, double clipnorm, double global, const float *g,
                      const double *want)
{
    ct_optimizer *o = mk_opt("sgd", 1.0, 3);
    o->clipvalue = clipvalue;
    o->clipnorm = clipnorm;
    o->global_clipnorm = global;
    o->weight_decay = 0.5; /* scales only the trainable block */
    mk_state(o);
    block b;
    block_init(&b, g);
    ct_optimizer_apply(o, b.ptr, 3, b.w, b.g);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(fabs(b.w[i] + want[i]) < 1e-6, "w[%d] = %.9g, want %.9g", i, b.w[i],
                      -want[i]);
    ck_assert_float_eq(b.w[3], 7.0f);
    ck_assert_float_eq(b.w[4], 8.0f);
    ck_assert_float_eq(b.g[3], 100.0f);
    ct_optimizer_free(o);
}

START_TEST(test_clipvalue)
{
    const float g[] = {0.2f, -3.0f, 1.0f};
    const double want[] = {0.2, -0.5, 0.5};
    clip_case(0.5, 0, 0, g, want);
}
END_TEST

START_TEST(test_clipnorm_per_tensor)
{
    /* kernel (3, 4) has norm 5 -> (0.6, 0.8); bias 0.5 is under 1 and stays */
    const float g[] = {3.0f, 4.0f, 0.5f};
    const double want[] = {0.6, 0.8, 0.5};
    clip_case(0, 1.0, 0, g, want);
}
END_TEST

START_TEST(test_global_clipnorm)
{
    /* norm of (2, 2, 1) is 3 -> scaled by 1/3 */
    const float g[] = {2.0f, 2.0f, 1.0f};
    const double want[] = {2.0 / 3, 2.0 / 3, 1.0 / 3};
    clip_case(0, 0, 1.0, g, want);
    /* under the limit: unchanged */
    const double same[] = {2, 2, 1};
    clip_case(0, 0, 3.5, g, same);
}
END_TEST

START_TEST(test_clipvalue_then_clipnorm)
{
    /* clipvalue 3.5: kernel (3, 4) -> (3, 3.5), bias -2 stays; clipnorm 2: kernel norm
     * sqrt(9 + 12.25) -> (3, 3.5) * 2 / 4.6097722 = (1.3015827, 1.5185132); bias norm 2 */
    const float g[] = {3.0f, 4.0f, -2.0f};
    const double want[] = {1.301582746911937, 1.5185132047305931, -2.0};
    clip_case(3.5, 2.0, 0, g, want);
}
END_TEST

/* ---- parsing ------------------------------------------------------------------------------ */

static ct_node *parse(const char *text)
{
    ct_error err = {0};
    ct_node *root = ct_config_parse(text, strlen(text), "t.yaml", &err);
    ck_assert_msg(root != NULL, "parse failed: %s", err.msg);
    return root;
}

static double map_float(ct_node *map, const char *key)
{
    ct_node *n = ct_map_get(map, key);
    ck_assert_msg(n != NULL, "key %s was not inserted", key);
    double v;
    ct_error err = {0};
    ck_assert_msg(ct_node_float(n, &v, &err) == 0, "%s", err.msg);
    return v;
}

static bool map_bool(ct_node *map, const char *key)
{
    ct_node *n = ct_map_get(map, key);
    ck_assert_msg(n != NULL, "key %s was not inserted", key);
    bool v;
    ct_error err = {0};
    ck_assert_msg(ct_node_bool(n, &v, &err) == 0, "%s", err.msg);
    return v;
}

/* Parses text and builds compile.optimizer for n floats; *root receives the tree. */
static ct_optimizer *new_opt(const char *text, ct_node **root, ct_error *err)
{
    *root = parse(text);
    return ct_optimizer_new(ct_map_get(*root, "compile"), "optimizer", N, err);
}

START_TEST(test_parse_adam_defaults)
{
    ct_node *root;
    ct_error err = {0};
    ct_optimizer *o = new_opt("compile:\n  loss: mse\n  optimizer: adam\n", &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_str_eq(o->kind->name, "adam");
    ck_assert_double_eq(o->learning_rate, 0.001);
    ck_assert_double_eq(o->hyper[0], 0.9);
    ck_assert_double_eq(o->hyper[1], 0.999);
    ck_assert_double_eq(o->hyper[2], 1e-7);
    ck_assert(!o->flag[0]);
    ck_assert_double_eq(o->weight_decay, 0);
    ck_assert(o->clipnorm == 0 && o->clipvalue == 0 && o->global_clipnorm == 0);
    ck_assert_ptr_nonnull(o->state);
    ck_assert_int_eq(o->iterations, 0);
    /* the shorthand became a map with every default written in */
    ct_node *cfg = ct_map_get(ct_map_get(root, "compile"), "optimizer");
    ck_assert_int_eq(cfg->type, CT_NODE_MAP);
    ck_assert_str_eq(ct_map_get(cfg, "type")->scalar, "adam");
    ck_assert_double_eq(map_float(cfg, "learning_rate"), 0.001);
    ck_assert_double_eq(map_float(cfg, "beta_1"), 0.9);
    ck_assert_double_eq(map_float(cfg, "beta_2"), 0.999);
    ck_assert_double_eq(map_float(cfg, "epsilon"), 1e-7);
    ck_assert_double_eq(map_float(cfg, "weight_decay"), 0.0);
    ck_assert(!map_bool(cfg, "amsgrad"));
    /* the clipping keys too, as Keras's None, so check --print shows every key */
    static const char *const clips[] = {"clipnorm", "clipvalue", "global_clipnorm"};
    for (int i = 0; i < 3; i++) {
        const ct_node *c = ct_map_get(cfg, clips[i]);
        ck_assert_ptr_nonnull(c);
        ck_assert(ct_node_is_null(c));
    }
    ct_optimizer_free(o);
    ct_node_free(root);
}
END_TEST

START_TEST(test_parse_default_rmsprop)
{
    ct_node *root;
    ct_error err = {0};
    ct_optimizer *o = new_opt("compile:\n  loss: mse\n", &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_str_eq(o->kind->name, "rmsprop");
    ct_node *cfg = ct_map_get(ct_map_get(root, "compile"), "optimizer");
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(ct_map_get(cfg, "type")->scalar, "rmsprop");
    ck_assert_double_eq(map_float(cfg, "learning_rate"), 0.001);
    ck_assert_double_eq(map_float(cfg, "rho"), 0.9);
    ck_assert_double_eq(map_float(cfg, "momentum"), 0.0);
    ck_assert(!map_bool(cfg, "centered"));
    ck_assert_int_eq(o->kind->state_per_param(o), 1);
    /* the resolved config, written out, reads back to the same optimizer */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(ct_config_emit(root, f, &err), 0);
    fclose(f);
    ct_node *again = parse(buf);
    ct_optimizer *o2 = ct_optimizer_new(ct_map_get(again, "compile"), "optimizer", N, &err);
    ck_assert_msg(o2 != NULL, "%s\n%s", err.msg, buf);
    ck_assert_str_eq(o2->kind->name, "rmsprop");
    ck_assert_double_eq(o2->learning_rate, 0.001);
    ct_optimizer_free(o2);
    ct_node_free(again);
    free(buf);
    ct_optimizer_free(o);
    ct_node_free(root);
}
END_TEST

START_TEST(test_parse_kinds)
{
    ct_node *root;
    ct_error err = {0};
    ct_optimizer *o = new_opt("compile:\n  optimizer: SGD\n", &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_str_eq(o->kind->name, "sgd");
    ck_assert_double_eq(o->learning_rate, 0.01);
    ck_assert_ptr_null(o->state); /* no momentum, no state */
    ct_optimizer_free(o);
    ct_node_free(root);

    o = new_opt("compile:\n  optimizer: {type: sgd, momentum: 0.9, nesterov: true, "
                "learning_rate: 0.05, clipnorm: 1.5, clipvalue: null}\n",
                &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_double_eq(o->hyper[0], 0.9);
    ck_assert(o->flag[0]);
    ck_assert_double_eq(o->learning_rate, 0.05);
    ck_assert_double_eq(o->clipnorm, 1.5);
    ck_assert_double_eq(o->clipvalue, 0);
    ck_assert_ptr_nonnull(o->state);
    ct_optimizer_free(o);
    ct_node_free(root);

    o = new_opt("compile:\n  optimizer: AdamW\n", &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_str_eq(o->kind->name, "adamw");
    ck_assert_double_eq(o->weight_decay, 0.004);
    ck_assert_double_eq(
        map_float(ct_map_get(ct_map_get(root, "compile"), "optimizer"), "weight_decay"), 0.004);
    ct_optimizer_free(o);
    ct_node_free(root);

    o = new_opt("compile:\n  optimizer: {type: adagrad, initial_accumulator_value: 0.25}\n",
                &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_double_eq(o->learning_rate, 0.001);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(o->state[i], 0.25f);
    ct_optimizer_free(o);
    ct_node_free(root);

    o = new_opt("compile:\n  optimizer: {type: rmsprop, centered: true, momentum: 0.5, "
                "global_clipnorm: 2}\n",
                &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_int_eq(o->kind->state_per_param(o), 3);
    ck_assert_double_eq(o->global_clipnorm, 2);
    ct_optimizer_free(o);
    ct_node_free(root);

    ck_assert_str_eq(ct_optimizer_kind_names(), "sgd, adam, adamw, rmsprop, adagrad");
    ck_assert_ptr_eq(ct_optimizer_kind_find("RMSprop"), ct_optimizer_kind_find("rmsprop"));
    ck_assert_ptr_null(ct_optimizer_kind_find("lion"));
}
END_TEST

/* Builds the optimizer from text, expecting failure; returns the message. */
static const char *opt_error(const char *text)
{
    static ct_error err;
    ct_node *root;
    memset(&err, 0, sizeof err);
    ct_optimizer *o = new_opt(text, &root, &err);
    ck_assert_msg(o == NULL, "expected an error for: %s", text);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ct_node_free(root);
    return err.msg;
}

START_TEST(test_parse_errors)
{
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: adam, learning_rate: -0.1}\n"),
                     "t.yaml:2:42: optimizer 'adam': learning_rate must be a positive number, "
                     "got -0.1");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: sgd, learning_rate: 0}\n"),
                     "t.yaml:2:41: optimizer 'sgd': learning_rate must be a positive number, "
                     "got 0");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: adma\n"),
                     "t.yaml:2:14: unknown optimizer 'adma' (did you mean 'adam'?); known "
                     "optimizers: sgd, adam, adamw, rmsprop, adagrad");
    const char *m = opt_error("compile:\n  optimizer: {type: adam, momentum: 0.9}\n");
    ck_assert_str_eq(m, "t.yaml:2:27: unknown key 'momentum' in optimizer 'adam'; known keys: "
                        "type, learning_rate, clipnorm, clipvalue, global_clipnorm, "
                        "weight_decay, beta_1, beta_2, epsilon, amsgrad");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: sgd, momentum: 1.5}\n"),
                     "t.yaml:2:36: 'momentum' must be between 0 and 1, got 1.5");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: sgd, clipnorm: 1, "
                               "global_clipnorm: 1}\n"),
                     "t.yaml:2:56: optimizer 'sgd': only one of clipnorm and global_clipnorm "
                     "can be set");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: sgd, clipvalue: 0}\n"),
                     "t.yaml:2:37: optimizer 'sgd': clipvalue must be a positive number, got 0");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: adam, beta_1: 1}\n"),
                     "t.yaml:2:35: optimizer 'adam': beta_1 must be below 1, got 1");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: adamw, weight_decay: -1}\n"),
                     "t.yaml:2:42: optimizer 'adamw': weight_decay must be 0 or more, got -1");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: [adam]\n"),
                     "t.yaml:2:14: optimizer must be a name such as adam or a map such as "
                     "{type: adam, learning_rate: 0.001}");
    m = opt_error("compile:\n  optimizer: {learning_rate: 0.1}\n");
    ck_assert_str_eq(m, "t.yaml:2:14: optimizer needs the key 'type'");
}
END_TEST

static Suite *updates_suite(void)
{
    Suite *s = suite_create("optimizer_updates");
    TCase *t = tcase_create("updates");
    tcase_add_test(t, test_sgd_plain);
    tcase_add_test(t, test_sgd_momentum);
    tcase_add_test(t, test_adam);
    tcase_add_test(t, test_adam_amsgrad);
    tcase_add_test(t, test_adamw_decay);
    tcase_add_test(t, test_rmsprop);
    tcase_add_test(t, test_rmsprop_centered_momentum);
    tcase_add_test(t, test_adagrad);
    tcase_add_test(t, test_epsilon_placement);
    tcase_add_test(t, test_weight_decay_plain_sgd);
    suite_add_tcase(s, t);
    TCase *c = tcase_create("clipping");
    tcase_add_test(c, test_clipvalue);
    tcase_add_test(c, test_clipnorm_per_tensor);
    tcase_add_test(c, test_global_clipnorm);
    tcase_add_test(c, test_clipvalue_then_clipnorm);
    suite_add_tcase(s, c);
    return s;
}

static Suite *parse_suite(void)
{
    Suite *s = suite_create("optimizer_parse");
    TCase *t = tcase_create("parse");
    tcase_set_timeout(t, 30);
    tcase_add_test(t, test_parse_adam_defaults);
    tcase_add_test(t, test_parse_default_rmsprop);
    tcase_add_test(t, test_parse_kinds);
    tcase_add_test(t, test_parse_errors);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(updates_suite());
    srunner_add_suite(sr, parse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
