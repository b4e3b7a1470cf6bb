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
        o->state[i] = o->kind->initial_state(o, (int)(i / o->n));
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

    ck_assert_str_eq(ct_optimizer_kind_names(),
                     "sgd, adam, adamw, rmsprop, adagrad, nadam, adamax, adadelta, lion, ftrl");
    ck_assert_ptr_eq(ct_optimizer_kind_find("RMSprop"), ct_optimizer_kind_find("rmsprop"));
    ck_assert_ptr_eq(ct_optimizer_kind_find("Ftrl"), ct_optimizer_kind_find("ftrl"));
    ck_assert_ptr_null(ct_optimizer_kind_find("lamb"));
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
                     "optimizers: sgd, adam, adamw, rmsprop, adagrad, nadam, adamax, adadelta, lion, ftrl");
    const char *m = opt_error("compile:\n  optimizer: {type: adam, momentum: 0.9}\n");
    /* Names match as layer types do, without regard to case or underscores (Keras 3 too
     * reads "ADAM" as adam). */
    ck_assert_ptr_eq(ct_optimizer_kind_find("ADAM"), ct_optimizer_kind_find("adam"));
    ck_assert_ptr_eq(ct_optimizer_kind_find("Ada_Max"), ct_optimizer_kind_find("adamax"));
    ck_assert_ptr_eq(ct_optimizer_kind_find("RMSProp"), ct_optimizer_kind_find("rmsprop"));
    ck_assert_ptr_null(ct_optimizer_kind_find("adamm"));
    ck_assert_str_eq(m, "t.yaml:2:27: unknown key 'momentum' in optimizer 'adam'; known keys: "
                        "type, learning_rate, clipnorm, clipvalue, global_clipnorm, "
                        "weight_decay, use_ema, ema_momentum, ema_overwrite_frequency, beta_1, "
                        "beta_2, epsilon, amsgrad");
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

/* ---- nadam, adamax, adadelta, lion, ftrl and use_ema against Keras ------------------
 * The want[] values are Keras 3.15's own (TensorFlow backend, float32): a Variable at W0
 * stepped by keras.optimizers.<Kind>(...).apply([G[t]], [v]) for t = 0, 1, 2, printed
 * with repr. ctrain's per-step constants are doubles rounded once, Keras's float32, so
 * the weights agree to a few float32 ulps. Step 1 of each is also checked by hand in the
 * comments. */

#define KERAS_TOL 2e-6

static void keras_steps(const char *yaml, const double want[STEPS][N])
{
    ct_node *root;
    ct_error err = {0};
    ct_optimizer *o = new_opt(yaml, &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    double w[STEPS][N];
    memcpy(w, want, sizeof w);
    run_steps(o, w, KERAS_TOL);
    ct_optimizer_free(o);
    ct_node_free(root);
}

START_TEST(test_nadam)
{
    /* step 1 by hand (lr 0.1): u_1 = 0.9 (1 - 0.48) = 0.468, u_2 = 0.9 (1 - 0.5 * 0.9216)
     * = 0.48528; m = 0.1 g, v = 0.001 g^2, m_hat = 0.48528 * 0.1 g / (1 - 0.468 * 0.48528)
     * + 0.532 g / 0.532 = 1.06279 g, v_hat = g^2, so w -= 0.106279 sign(g) (less eps) */
    static const double want[STEPS][N] = {
        {0.893721342086792, -1.8937212228775024, 0.39372122287750244},
        {0.7928538918495178, -1.9329805374145508, 0.4776313602924347},
        {0.8475022912025452, -2.0106122493743896, 0.4718678891658783}};
    keras_steps("compile:\n  optimizer: {type: nadam, learning_rate: 0.1}\n", want);
    static const double other[STEPS][N] = {
        {0.9433187246322632, -1.9430367946624756, 0.44294214248657227},
        {0.8801308870315552, -1.9681156873703003, 0.49582332372665405},
        {0.9187309741973877, -2.024021625518799, 0.4930238127708435}};
    keras_steps("compile:\n  optimizer: {type: Nadam, learning_rate: 0.05, beta_1: 0.5, "
                "beta_2: 0.9, epsilon: 0.001}\n", other);
    /* Keras's weight decay comes first: w -= lr wd w, then the step */
    static const double decayed[STEPS][N] = {
        {0.8837213516235352, -1.8737212419509888, 0.388721227645874},
        {0.7740166783332825, -1.8942433595657349, 0.468744158744812},
        {0.8209249377250671, -1.952932596206665, 0.45829325914382935}};
    keras_steps("compile:\n  optimizer: {type: nadam, learning_rate: 0.1, weight_decay: 0.1}\n",
                decayed);
}
END_TEST

/* Nadam's product of u(k) over a long run: the step after 5000 (where ctrain's product
 * skips the factors that equal beta_1 in double) against the plain product, in double. */
START_TEST(test_nadam_late_step)
{
    ct_node *root;
    ct_error err = {0};
    ct_optimizer *o = new_opt("compile:\n  optimizer: {type: nadam, learning_rate: 0.1, "
                              "beta_1: 0.999}\n", &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    const int64_t t = 5001;
    o->iterations = t - 1;
    double p = 1.0, b1 = 0.999, b2 = 0.999;
    for (int64_t k = 1; k <= t; k++)
        p *= b1 * (1.0 - 0.5 * pow(0.96, (double)k));
    double u_t = b1 * (1.0 - 0.5 * pow(0.96, (double)t));
    double u_next = b1 * (1.0 - 0.5 * pow(0.96, (double)(t + 1)));
    float w[N], g[N];
    for (int i = 0; i < N; i++)
        w[i] = (float)W0[i], g[i] = (float)G[0][i];
    ct_param prm = vec_param(w, g);
    ct_param *params[] = {&prm};
    ct_optimizer_apply(o, params, 1, w, g);
    for (int i = 0; i < N; i++) { /* from zero state: m = (1 - b1) g, v = (1 - b2) g^2 */
        double gi = G[0][i], m = (1 - b1) * gi, v = (1 - b2) * gi * gi;
        double mhat = u_next * m / (1 - p * u_next) + (1 - u_t) * gi / (1 - p);
        double want = W0[i] - mhat * 0.1 / (sqrt(v / (1 - pow(b2, (double)t))) + 1e-7);
        tu_assert_close(w[i], want, 1e-6);
    }
    ct_optimizer_free(o);
    ct_node_free(root);
}
END_TEST

START_TEST(test_adamax)
{
    /* step 1 by hand: m = 0.1 g, u = |g|, w -= 0.1 * 0.1 g / (0.1 (|g| + eps)) ~ 0.1 sign(g) */
    static const double want[STEPS][N] = {
        {0.9000000953674316, -1.9000000953674316, 0.40000003576278687},
        {0.8355264663696289, -1.878926396369934, 0.4242105484008789},
        {0.8225060701370239, -1.905199408531189, 0.43580886721611023}};
    keras_steps("compile:\n  optimizer: {type: adamax, learning_rate: 0.1}\n", want);
    static const double other[STEPS][N] = {
        {0.9504950642585754, -1.9502487182617188, 0.45016610622406006},
        {0.9130885601043701, -1.9502487182617188, 0.4734528660774231},
        {0.9197641015052795, -1.9787063598632812, 0.4823591709136963}};
    keras_steps("compile:\n  optimizer: {type: Adamax, learning_rate: 0.05, beta_1: 0.5, "
                "beta_2: 0.8, epsilon: 0.001}\n", other);
}
END_TEST

START_TEST(test_adadelta)
{
    /* step 1 by hand (lr 1, g = 0.1): acc_g = 0.05 * 0.01 = 5e-4; delta = -sqrt(1e-7) 0.1 /
     * sqrt(5e-4 + 1e-7) = -1.41407e-3, so w = 0.998586 */
    static const double want[STEPS][N] = {
        {0.9985859394073486, -1.998585820198059, 0.4985857903957367},
        {0.9966428875923157, -1.9994986057281494, 0.5003122091293335},
        {0.9983016848564148, -2.001152753829956, 0.5000808238983154}};
    keras_steps("compile:\n  optimizer: {type: adadelta, learning_rate: 1.0}\n", want);
    static const double other[STEPS][N] = {
        {0.9984196424484253, -1.9984190464019775, 0.4984189569950104},
        {0.9962445497512817, -1.9994614124298096, 0.5003621578216553},
        {0.9981216788291931, -2.0013349056243896, 0.500095784664154}};
    keras_steps("compile:\n  optimizer: {type: Adadelta, learning_rate: 0.5, rho: 0.9, "
                "epsilon: 1e-6}\n", other);
}
END_TEST

START_TEST(test_lion)
{
    /* step 1 by hand: m = 0, so w -= 0.1 sign(0.1 g) */
    static const double want[STEPS][N] = {
        {0.8999999761581421, -1.899999976158142, 0.4000000059604645},
        {0.7999999523162842, -2.0, 0.5},
        {0.8999999761581421, -2.0999999046325684, 0.4000000059604645}};
    keras_steps("compile:\n  optimizer: {type: lion, learning_rate: 0.1}\n", want);
    /* beta_1 0.99: step 2's direction is the momentum's (0.1 g_1), not g_2's */
    static const double other[STEPS][N] = {
        {0.8999999761581421, -1.899999976158142, 0.4000000059604645},
        {0.7999999523162842, -1.7999999523162842, 0.30000001192092896},
        {0.6999999284744263, -1.6999999284744263, 0.4000000059604645}};
    keras_steps("compile:\n  optimizer: {type: Lion, learning_rate: 0.1, beta_1: 0.99, "
                "beta_2: 0.9}\n", other);
}
END_TEST

START_TEST(test_ftrl)
{
    /* step 1 by hand (lr 0.1, g = 0.1, w = 1): new_acc = 0.11; linear = 0.1 - (sqrt(0.11) -
     * sqrt(0.1)) / 0.1 = -0.054347; quadratic = sqrt(0.11) / 0.1 = 3.31662; w = 0.054347 /
     * 3.31662 = 0.016386 */
    static const double want[STEPS][N] = {
        {0.016386274248361588, -0.25623926520347595, 0.06843715161085129},
        {-0.06059376150369644, -0.2820591628551483, 0.14381499588489532},
        {-0.010593761689960957, -0.33629176020622253, 0.1362985372543335}};
    keras_steps("compile:\n  optimizer: {type: ftrl, learning_rate: 0.1}\n", want);
    /* every key; l1 sets w[0] to exactly 0 at step 1 (|linear| <= l1) */
    static const double other[STEPS][N] = {
        {0.0, -0.20585891604423523, 0.04723115265369415},
        {-0.07020098716020584, -0.23086243867874146, 0.12214838713407516},
        {-0.01897446997463703, -0.28555917739868164, 0.11392107605934143}};
    keras_steps("compile:\n  optimizer: {type: Ftrl, learning_rate: 0.1, "
                "l1_regularization_strength: 0.05, l2_regularization_strength: 0.01, "
                "l2_shrinkage_regularization_strength: 0.02, beta: 0.1, "
                "learning_rate_power: -0.7}\n", other);
}
END_TEST

/* use_ema: the weights after each step, the average (the last state slot) and the weights
 * after ct_optimizer_finalize, which Keras's fit calls finalize_variable_values. */
static void ema_steps(const char *yaml, const double w_want[STEPS][N],
                      const double avg_want[STEPS][N], double tol)
{
    ct_node *root;
    ct_error err = {0};
    ct_optimizer *o = new_opt(yaml, &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    int slot = ct_optimizer_slots(o) - 1;
    ck_assert_str_eq(ct_optimizer_slot_name(o, slot), "average");
    ck_assert_ptr_null(ct_optimizer_slot_name(o, slot + 1));
    float w[N], g[N];
    for (int i = 0; i < N; i++)
        w[i] = (float)W0[i];
    ct_param p = vec_param(w, g);
    ct_param *params[] = {&p};
    for (int t = 0; t < STEPS; t++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)G[t][i];
        ct_optimizer_apply(o, params, 1, w, g);
        for (int i = 0; i < N; i++) {
            tu_assert_close(w[i], w_want[t][i], tol);
            tu_assert_close(o->state[slot * N + i], avg_want[t][i], tol);
        }
    }
    ct_optimizer_finalize(o, w);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(w[i], o->state[slot * N + i]);
    ct_optimizer_free(o);
    ct_node_free(root);
}

START_TEST(test_ema)
{
    /* by hand (sgd, lr 0.1): step 1's average is the weights (momentum 0 on the first
     * step); step 2's is 0.9 * 0.99 + 0.1 * 0.95 = 0.986 */
    static const double w1[STEPS][N] = {
        {0.9900000095367432, -1.9800000190734863, 0.4699999988079071},
        {0.949999988079071, -1.9900000095367432, 0.5199999809265137},
        {0.9800000190734863, -2.015000104904175, 0.5149999856948853}};
    static const double a1[STEPS][N] = {
        {0.9900000095367432, -1.9800000190734863, 0.4699999988079071},
        {0.9860000014305115, -1.9809999465942383, 0.4749999940395355},
        {0.9854000210762024, -1.9843999147415161, 0.4790000021457672}};
    ema_steps("compile:\n  optimizer: {type: sgd, learning_rate: 0.1, use_ema: true, "
              "ema_momentum: 0.9}\n", w1, a1, KERAS_TOL);
    /* ema_overwrite_frequency 2: the weights become the average after step 2 */
    static const double w2[STEPS][N] = {
        {0.9900000095367432, -1.9800000190734863, 0.4699999988079071},
        {0.9860000014305115, -1.9809999465942383, 0.4749999940395355},
        {1.0160000324249268, -2.00600004196167, 0.4699999988079071}};
    static const double a2[STEPS][N] = {
        {0.9900000095367432, -1.9800000190734863, 0.4699999988079071},
        {0.9860000014305115, -1.9809999465942383, 0.4749999940395355},
        {0.9890000224113464, -1.9834998846054077, 0.47450000047683716}};
    ema_steps("compile:\n  optimizer: {type: sgd, learning_rate: 0.1, use_ema: true, "
              "ema_momentum: 0.9, ema_overwrite_frequency: 2}\n", w2, a2, KERAS_TOL);
    /* the default momentum (0.99), after Adam's own two slots; Adam's alpha, a double
     * rounded once, puts its weights ~13 float32 ulps from Keras's by step 3 */
    static const double w3[STEPS][N] = {
        {0.9000037908554077, -1.9000022411346436, 0.4000017046928406},
        {0.8115677237510681, -1.8733692169189453, 0.4293573498725891},
        {0.7938970923423767, -1.9072837829589844, 0.4465053081512451}};
    static const double a3[STEPS][N] = {
        {0.9000037908554077, -1.9000022411346436, 0.4000017046928406},
        {0.8991194367408752, -1.8997358083724976, 0.4002952575683594},
        {0.8980672359466553, -1.8998112678527832, 0.4007573425769806}};
    ema_steps("compile:\n  optimizer: {type: adam, learning_rate: 0.1, use_ema: true}\n", w3,
              a3, 5e-6);
}
END_TEST

/* Without use_ema there is no average and finalize leaves the weights alone. */
START_TEST(test_ema_off)
{
    ct_node *root;
    ct_error err = {0};
    ct_optimizer *o = new_opt("compile:\n  optimizer: ftrl\n", &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_int_eq(ct_optimizer_slots(o), 2);
    ck_assert_str_eq(ct_optimizer_slot_name(o, 0), "accumulator");
    ck_assert_str_eq(ct_optimizer_slot_name(o, 1), "linear");
    for (int i = 0; i < N; i++) {
        ck_assert_float_eq(o->state[i], 0.1f); /* initial_accumulator_value */
        ck_assert_float_eq(o->state[N + i], 0.0f);
    }
    float w[N] = {1, 2, 3};
    ct_optimizer_finalize(o, w);
    ck_assert(w[0] == 1 && w[1] == 2 && w[2] == 3);
    ct_node *cfg = ct_map_get(ct_map_get(root, "compile"), "optimizer");
    ck_assert(!map_bool(cfg, "use_ema"));
    ck_assert_double_eq(map_float(cfg, "ema_momentum"), 0.99);
    ck_assert(ct_node_is_null(ct_map_get(cfg, "ema_overwrite_frequency")));
    ct_optimizer_free(o);
    ct_node_free(root);
}
END_TEST

/* Keras 3's defaults, written into the resolved config. */
START_TEST(test_parse_new_defaults)
{
    static const struct {
        const char *name, *key;
        double value;
    } defaults[] = {
        {"nadam", "beta_1", 0.9}, {"nadam", "beta_2", 0.999}, {"nadam", "epsilon", 1e-7},
        {"adamax", "beta_1", 0.9}, {"adamax", "beta_2", 0.999}, {"adamax", "epsilon", 1e-7},
        {"adadelta", "rho", 0.95}, {"adadelta", "epsilon", 1e-7},
        {"lion", "beta_1", 0.9}, {"lion", "beta_2", 0.99},
        {"ftrl", "learning_rate_power", -0.5}, {"ftrl", "initial_accumulator_value", 0.1},
        {"ftrl", "l1_regularization_strength", 0}, {"ftrl", "l2_regularization_strength", 0},
        {"ftrl", "l2_shrinkage_regularization_strength", 0}, {"ftrl", "beta", 0},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        char text[96];
        snprintf(text, sizeof text, "compile:\n  optimizer: %s\n", defaults[i].name);
        ct_node *root;
        ct_error err = {0};
        ct_optimizer *o = new_opt(text, &root, &err);
        ck_assert_msg(o != NULL, "%s", err.msg);
        ck_assert_double_eq(o->learning_rate, 0.001);
        ck_assert_double_eq(o->weight_decay, 0);
        ct_node *cfg = ct_map_get(ct_map_get(root, "compile"), "optimizer");
        ck_assert_double_eq(map_float(cfg, defaults[i].key), defaults[i].value);
        ct_optimizer_free(o);
        ct_node_free(root);
    }
}
END_TEST

START_TEST(test_parse_new_errors)
{
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: lion, beta_1: 0}\n"),
                     "t.yaml:2:35: optimizer 'lion': beta_1 must be above 0 (otherwise Lion is "
                     "sign SGD), got 0");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: lion, beta_2: 1.5}\n"),
                     "t.yaml:2:35: 'beta_2' must be between 0 and 1, got 1.5");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: nadam, beta_2: 1}\n"),
                     "t.yaml:2:36: optimizer 'nadam': beta_2 must be below 1, got 1");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: adamax, beta_1: 1}\n"),
                     "t.yaml:2:37: optimizer 'adamax': beta_1 must be below 1, got 1");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: adadelta, rho: -0.5}\n"),
                     "t.yaml:2:36: 'rho' must be between 0 and 1, got -0.5");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: ftrl, learning_rate_power: 0.5}\n"),
                     "t.yaml:2:48: 'learning_rate_power' must be at most 0, got 0.5");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: ftrl, "
                               "l1_regularization_strength: -1}\n"),
                     "t.yaml:2:55: 'l1_regularization_strength' must be at least 0, got -1");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: sgd, use_ema: true, "
                               "ema_momentum: 1.5}\n"),
                     "t.yaml:2:55: 'ema_momentum' must be between 0 and 1, got 1.5");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: sgd, use_ema: true, "
                               "ema_overwrite_frequency: 0}\n"),
                     "t.yaml:2:66: optimizer 'sgd': ema_overwrite_frequency must be a number "
                     "of steps (1 or more), or null for never, got 0");
    ck_assert_str_eq(opt_error("compile:\n  optimizer: {type: adam, use_ema: maybe}\n"),
                     "t.yaml:2:36: expected true or false for 'use_ema', got 'maybe'");
    const char *m = opt_error("compile:\n  optimizer: {type: lion, epsilon: 1e-7}\n");
    ck_assert_str_eq(m, "t.yaml:2:27: unknown key 'epsilon' in optimizer 'lion'; known keys: "
                        "type, learning_rate, clipnorm, clipvalue, global_clipnorm, "
                        "weight_decay, use_ema, ema_momentum, ema_overwrite_frequency, beta_1, "
                        "beta_2");
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
    tcase_add_test(t, test_nadam);
    tcase_add_test(t, test_nadam_late_step);
    tcase_add_test(t, test_adamax);
    tcase_add_test(t, test_adadelta);
    tcase_add_test(t, test_lion);
    tcase_add_test(t, test_ftrl);
    tcase_add_test(t, test_ema);
    tcase_add_test(t, test_ema_off);
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
    tcase_add_test(t, test_parse_new_defaults);
    tcase_add_test(t, test_parse_new_errors);
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
