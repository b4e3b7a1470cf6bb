/* test_schedules.c - learning-rate schedules: values at chosen steps against arithmetic done
 * by hand from Keras 3's formulas, defaults written into the config, error messages with
 * their positions, and sgd stepping with a schedule (rates taken before the step count). */
#include <stdint.h>

#include "optimizer.h"
#include "testutil.h"

#define TOL 1e-12

/* ---- helpers ------------------------------------------------------------------------------ */

static ct_node *parse(const char *text)
{
    ct_error err = {0};
    ct_node *root = ct_config_parse(text, strlen(text), "t.yaml", &err);
    ck_assert_msg(root != NULL, "parse failed: %s", err.msg);
    return root;
}

/* Parses a schedule given as a flow map; *root receives the tree. */
static ct_schedule sched_from(const char *text, ct_node **root)
{
    ct_schedule s;
    ct_error err = {0};
    *root = parse(text);
    ck_assert_msg(ct_schedule_parse(*root, &s, &err) == 0, "%s: %s", text, err.msg);
    return s;
}

static ct_schedule sched(const char *text)
{
    ct_node *root;
    ct_schedule s = sched_from(text, &root);
    ct_node_free(root);
    return s;
}

/* want[i] is the rate at steps[i]. */
static void check_values(const ct_schedule *s, const int64_t *steps, const double *want, int n)
{
    for (int i = 0; i < n; i++) {
        double got = ct_schedule_value(s, steps[i]);
        ck_assert_msg(tu_relerr(got, want[i]) <= TOL || fabs(got - want[i]) <= 1e-15,
                      "%s at step %lld: %.17g, want %.17g", ct_schedule_name(s->type),
                      (long long)steps[i], got, want[i]);
    }
}

#define CHECK(s, steps, want)                                                               \
    do {                                                                                    \
        ck_assert_int_eq(sizeof(steps) / sizeof(steps[0]), sizeof(want) / sizeof(want[0])); \
        check_values(&(s), steps, want, (int)(sizeof(steps) / sizeof(steps[0])));           \
    } while (0)

/* ---- values ------------------------------------------------------------------------------- */

START_TEST(test_exponential)
{
    ct_schedule s = sched("{type: exponential_decay, initial_learning_rate: 0.1, "
                          "decay_steps: 10, decay_rate: 0.5}");
    ck_assert_int_eq(s.type, CT_SCHEDULE_EXPONENTIAL_DECAY);
    static const int64_t steps[] = {0, 1, 5, 10, 1000};
    static const double want[] = {
        0.1,                   /* 0.1 * 0.5^0 */
        0.09330329915368074,   /* 0.1 * 0.5^0.1 = 0.1 * 2^-0.1 = 0.1 * 0.9330329915368074 */
        0.07071067811865477,   /* 0.1 * 0.5^0.5 = 0.1 / sqrt(2) */
        0.05,                  /* 0.1 * 0.5^1 */
        7.888609052210118e-32, /* 0.1 * 0.5^100 = 0.1 * 7.888609052210118e-31 */
    };
    CHECK(s, steps, want);

    s = sched("{type: ExponentialDecay, initial_learning_rate: 0.1, decay_steps: 10, "
              "decay_rate: 0.5, staircase: true}");
    static const int64_t stair_steps[] = {0, 1, 9, 10, 19, 25, 1000};
    static const double stair_want[] = {
        0.1,   /* floor(0/10) = 0 */
        0.1,   /* floor(0.1) = 0 */
        0.1,   /* floor(0.9) = 0 */
        0.05,  /* floor(1) = 1: 0.1 * 0.5 */
        0.05,  /* floor(1.9) = 1 */
        0.025, /* floor(2.5) = 2: 0.1 * 0.25 */
        7.888609052210118e-32, /* floor(100) = 100 */
    };
    CHECK(s, stair_steps, stair_want);
}
END_TEST

START_TEST(test_piecewise)
{
    ct_schedule s = sched("{type: piecewise_constant_decay, boundaries: [10, 20], "
                          "values: [1.0, 0.5, 0.1]}");
    ck_assert_int_eq(s.n_boundaries, 2);
    /* step <= 10 -> 1.0; 10 < step <= 20 -> 0.5; step > 20 -> 0.1 */
    static const int64_t steps[] = {0, 1, 10, 11, 15, 20, 21, 1000000};
    static const double want[] = {1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1};
    CHECK(s, steps, want);

    s = sched("{type: PiecewiseConstantDecay, boundaries: [0], values: [0.3, 0.2]}");
    static const int64_t one_steps[] = {0, 1, 50};
    static const double one_want[] = {0.3, 0.2, 0.2}; /* step 0 <= 0 -> 0.3, then 0.2 */
    CHECK(s, one_steps, one_want);
}
END_TEST

START_TEST(test_polynomial)
{
    /* end_learning_rate 1e-4, power 1 by default: lr = 0.0999 * (1 - min(step, 10) / 10)
     * + 0.0001 */
    ct_schedule s = sched("{type: polynomial_decay, initial_learning_rate: 0.1, decay_steps: 10}");
    static const int64_t steps[] = {0, 1, 5, 10, 100};
    static const double want[] = {
        0.1,     /* 0.0999 * 1 + 0.0001 */
        0.09001, /* 0.0999 * 0.9 + 0.0001 = 0.08991 + 0.0001 */
        0.05005, /* 0.0999 * 0.5 + 0.0001 = 0.04995 + 0.0001 */
        0.0001,  /* 0.0999 * 0 + 0.0001 */
        0.0001,  /* step clamped to 10 */
    };
    CHECK(s, steps, want);

    /* cycle: d = 10 * ceil(step / 10) (1 at step 0); lr = 0.09 * (1 - step / d)^2 + 0.01 */
    s = sched("{type: PolynomialDecay, initial_learning_rate: 0.1, decay_steps: 10, "
              "end_learning_rate: 0.01, power: 2, cycle: true}");
    static const int64_t cyc_steps[] = {0, 5, 10, 11, 30, 35};
    static const double cyc_want[] = {
        0.1,        /* d = 10, p = 0: 0.09 + 0.01 */
        0.0325,     /* d = 10, p = 0.5: 0.09 * 0.25 + 0.01 */
        0.01,       /* d = 10 * ceil(1) = 10, p = 1: 0 + 0.01 */
        0.028225,   /* d = 10 * ceil(1.1) = 20, p = 0.55: 0.09 * 0.45^2 + 0.01 = 0.018225 + 0.01 */
        0.01,       /* d = 30, p = 1 */
        0.01140625, /* d = 40, p = 0.875: 0.09 * 0.125^2 + 0.01 = 0.00140625 + 0.01 */
    };
    CHECK(s, cyc_steps, cyc_want);
}
END_TEST

START_TEST(test_inverse_time)
{
    /* lr = 0.1 / (1 + 0.5 * step / 10) */
    ct_schedule s = sched("{type: inverse_time_decay, initial_learning_rate: 0.1, "
                          "decay_steps: 10, decay_rate: 0.5}");
    static const int64_t steps[] = {0, 1, 10, 1000};
    static const double want[] = {
        0.1,                  /* 0.1 / 1 */
        0.09523809523809523,  /* 0.1 / 1.05 */
        0.06666666666666667,  /* 0.1 / 1.5 */
        0.00196078431372549,  /* 0.1 / (1 + 0.5 * 100) = 0.1 / 51 */
    };
    CHECK(s, steps, want);

    s = sched("{type: InverseTimeDecay, initial_learning_rate: 0.1, decay_steps: 10, "
              "decay_rate: 0.5, staircase: true}");
    static const int64_t stair_steps[] = {0, 9, 10, 25};
    static const double stair_want[] = {
        0.1,                 /* floor(0) = 0 */
        0.1,                 /* floor(0.9) = 0 */
        0.06666666666666667, /* floor(1) = 1: 0.1 / 1.5 */
        0.05,                /* floor(2.5) = 2: 0.1 / 2 */
    };
    CHECK(s, stair_steps, stair_want);
}
END_TEST

START_TEST(test_cosine)
{
    /* no warmup: lr = 0.1 * (0.9 * 0.5 * (1 + cos(pi * min(step, 10) / 10)) + 0.1) */
    ct_schedule s = sched("{type: cosine_decay, initial_learning_rate: 0.1, decay_steps: 10, "
                          "alpha: 0.1}");
    ck_assert(!s.has_warmup_target);
    static const int64_t steps[] = {0, 1, 5, 10, 100};
    static const double want[] = {
        0.1,                 /* cos 0 = 1: 0.1 * (0.9 + 0.1) */
        0.09779754323328192, /* cos(pi/10) = 0.9510565162951535: 0.5 * 1.9510565162951535 =
                                0.97552825814757675; * 0.9 + 0.1 = 0.97797543233281908 */
        0.055,               /* cos(pi/2) = 0: 0.1 * (0.9 * 0.5 + 0.1) */
        0.01,                /* cos(pi) = -1: 0.1 * 0.1 */
        0.01,                /* step clamped to 10 */
    };
    CHECK(s, steps, want);

    /* warmup from 0 to 0.2 over 4 steps, then 0.2 * 0.5 * (1 + cos(pi * (step - 4) / 8)) with
     * the step clamped to 4 + 8 */
    s = sched("{type: CosineDecay, initial_learning_rate: 0, decay_steps: 8, "
              "warmup_target: 0.2, warmup_steps: 4}");
    ck_assert(s.has_warmup_target);
    static const int64_t warm_steps[] = {0, 1, 2, 3, 4, 8, 12, 1000};
    static const double warm_want[] = {
        0.0,  /* (0.2 - 0) * 0/4 + 0 */
        0.05, /* 0.2 * 1/4 */
        0.1,  /* 0.2 * 2/4 */
        0.15, /* 0.2 * 3/4 */
        0.2,  /* decay at 0: 0.2 * 0.5 * (1 + 1) */
        0.1,  /* decay at 4/8: 0.2 * 0.5 * (1 + cos(pi/2)) */
        0.0,  /* decay at 8/8: 0.2 * 0.5 * (1 + cos(pi)) */
        0.0,  /* clamped to 12 */
    };
    CHECK(s, warm_steps, warm_want);

    /* warmup_steps without warmup_target is ignored, as in Keras (no target, no warmup) */
    s = sched("{type: cosine_decay, initial_learning_rate: 0.1, decay_steps: 10, "
              "warmup_steps: 5}");
    static const int64_t nt_steps[] = {0, 5, 10};
    static const double nt_want[] = {0.1, 0.05, 0.0}; /* 0.1 * 0.5 * (1 + cos(pi * step/10)) */
    CHECK(s, nt_steps, nt_want);
}
END_TEST

START_TEST(test_cosine_restarts)
{
    /* periods of 10, 20, 40, ... steps starting at 0, 10, 30, 70, ...; peak 1.0 * 0.5^i:
     * lr = 0.5^i * 0.5 * (1 + cos(pi * fraction of period i)) */
    ct_schedule s = sched("{type: cosine_decay_restarts, initial_learning_rate: 1.0, "
                          "first_decay_steps: 10, m_mul: 0.5}");
    static const int64_t steps[] = {0, 5, 10, 20, 29, 30, 70};
    static const double want[] = {
        1.0,                  /* i = 0, fraction 0 */
        0.5,                  /* i = 0, fraction 0.5: 0.5 * (1 + 0) */
        0.5,                  /* i = 1 starts: 0.5 * 0.5 * 2 */
        0.25,                 /* i = 1, fraction (20 - 10) / 20 = 0.5: 0.5 * 0.5 * 1 */
        0.003077914851215585, /* i = 1, fraction 19/20 = 0.95: 0.25 * (1 + cos(0.95 pi)) =
                                 0.25 * (1 - 0.9876883405951378) */
        0.25,                 /* i = 2 starts: 0.25 * 0.5 * 2 */
        0.125,                /* i = 3 starts */
    };
    CHECK(s, steps, want);
    /* Every restart, far out too, starts at the full peak: step 10 * (2^i - 1) -> 0.5^i. */
    for (int i = 0; i <= 40; i++) {
        int64_t step = 10 * (((int64_t)1 << i) - 1);
        double got = ct_schedule_value(&s, step), peak = ldexp(1.0, -i);
        ck_assert_msg(tu_relerr(got / peak, 1.0) <= 1e-9, "restart %d at step %lld: %.17g", i,
                      (long long)step, got);
    }

    /* t_mul 3, periods 1, 3, 9, ...: restart i starts at step (3^i - 1) / 2 with peak 0.5^i.
     * At step 121 (i = 5) log(243) / log(3) comes out just below 5, so the restart index
     * must not be taken from the log alone. */
    s = sched("{type: cosine_decay_restarts, initial_learning_rate: 1.0, "
              "first_decay_steps: 1, t_mul: 3, m_mul: 0.5}");
    int64_t pow3 = 1;
    for (int i = 0; i <= 30; i++, pow3 *= 3) {
        int64_t step = (pow3 - 1) / 2;
        double got = ct_schedule_value(&s, step), peak = ldexp(1.0, -i);
        ck_assert_msg(tu_relerr(got / peak, 1.0) <= 1e-9, "t_mul 3 restart %d at step %lld: "
                      "%.17g", i, (long long)step, got);
    }
    /* periods start at steps 0, 1, 4, 13: step 7 is 3 of period 2's 9 steps in, so
     * 0.5^2 * 0.5 * (1 + cos(pi / 3)) = 0.25 * 0.5 * 1.5 = 0.1875 */
    static const int64_t t3_steps[] = {7};
    static const double t3_want[] = {0.1875};
    CHECK(s, t3_steps, t3_want);

    /* t_mul 1: equal periods of 10; lr = 0.1 * (0.8 * 0.5 * (1 + cos(pi * frac)) + 0.2) */
    s = sched("{type: CosineDecayRestarts, initial_learning_rate: 0.1, first_decay_steps: 10, "
              "t_mul: 1, alpha: 0.2}");
    static const int64_t eq_steps[] = {0, 9, 10, 15, 20};
    static const double eq_want[] = {
        0.1,                  /* 0.1 * (0.8 + 0.2) */
        0.021957739348193863, /* frac 0.9: cos(0.9 pi) = -0.9510565162951535; 0.5 * 0.0489434837
                                 = 0.0244717418524; * 0.8 + 0.2 = 0.2195773934819 */
        0.1,                  /* restart: frac 0 */
        0.06,                 /* frac 0.5: 0.1 * (0.8 * 0.5 + 0.2) */
        0.1,                  /* restart */
    };
    CHECK(s, eq_steps, eq_want);
}
END_TEST

/* ---- parsing ------------------------------------------------------------------------------ */

static double map_float(ct_node *map, const char *key)
{
    ct_node *n = ct_map_get(map, key);
    ck_assert_msg(n != NULL, "key %s was not inserted", key);
    double v;
    ct_error err = {0};
    ck_assert_msg(ct_node_float(n, &v, &err) == 0, "%s", err.msg);
    return v;
}

static const char *map_text(ct_node *map, const char *key)
{
    ct_node *n = ct_map_get(map, key);
    ck_assert_msg(n != NULL && n->type == CT_NODE_SCALAR, "key %s was not inserted", key);
    return n->scalar;
}

START_TEST(test_defaults_inserted)
{
    ct_node *root;
    ct_schedule s = sched_from("{type: exponential_decay, initial_learning_rate: 0.1, "
                               "decay_steps: 10, decay_rate: 0.5}",
                               &root);
    ck_assert(!s.staircase);
    ck_assert_str_eq(map_text(root, "staircase"), "false");
    ct_node_free(root);

    s = sched_from("{type: polynomial_decay, initial_learning_rate: 0.1, decay_steps: 10}", &root);
    ck_assert_double_eq(s.end_learning_rate, 1e-4);
    ck_assert_double_eq(s.power, 1.0);
    ck_assert(!s.cycle);
    ck_assert_double_eq(map_float(root, "end_learning_rate"), 1e-4);
    ck_assert_double_eq(map_float(root, "power"), 1.0);
    ck_assert_str_eq(map_text(root, "cycle"), "false");
    ct_node_free(root);

    s = sched_from("{type: cosine_decay, initial_learning_rate: 0.1, decay_steps: 10}", &root);
    ck_assert_double_eq(s.alpha, 0.0);
    ck_assert(!s.has_warmup_target);
    ck_assert_double_eq(s.warmup_steps, 0.0);
    ck_assert_double_eq(map_float(root, "alpha"), 0.0);
    ck_assert_str_eq(map_text(root, "warmup_target"), "null");
    ck_assert_double_eq(map_float(root, "warmup_steps"), 0.0);
    ct_node_free(root);

    s = sched_from("{type: cosine_decay_restarts, initial_learning_rate: 0.1, "
                   "first_decay_steps: 10}",
                   &root);
    ck_assert_double_eq(s.t_mul, 2.0);
    ck_assert_double_eq(s.m_mul, 1.0);
    ck_assert_double_eq(s.alpha, 0.0);
    ck_assert_double_eq(map_float(root, "t_mul"), 2.0);
    ck_assert_double_eq(map_float(root, "m_mul"), 1.0);
    ck_assert_double_eq(map_float(root, "alpha"), 0.0);
    ct_node_free(root);

    ck_assert_str_eq(ct_schedule_names(), "exponential_decay, piecewise_constant_decay, "
                                          "polynomial_decay, inverse_time_decay, cosine_decay, "
                                          "cosine_decay_restarts");
}
END_TEST

/* Builds compile.optimizer for n floats; *root receives the tree. */
static ct_optimizer *new_opt(const char *text, int64_t n, ct_node **root, ct_error *err)
{
    *root = parse(text);
    return ct_optimizer_new(ct_map_get(*root, "compile"), "optimizer", n, err);
}

START_TEST(test_optimizer_config)
{
    ct_node *root;
    ct_error err = {0};
    ct_optimizer *o = new_opt("compile:\n  optimizer:\n    type: adam\n"
                              "    learning_rate: {type: piecewise_constant_decay, "
                              "boundaries: [100], values: [0.01, 0.001]}\n",
                              3, &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_int_eq(o->schedule.type, CT_SCHEDULE_PIECEWISE_CONSTANT_DECAY);
    ck_assert_double_eq(o->learning_rate, 0.01); /* the rate at step 0 */
    ck_assert_double_eq(ct_optimizer_learning_rate(o, 100), 0.01);
    ck_assert_double_eq(ct_optimizer_learning_rate(o, 101), 0.001);
    /* the resolved config reads back to the same schedule */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(ct_config_emit(root, f, &err), 0);
    fclose(f);
    ct_node *again = parse(buf);
    ct_optimizer *o2 = ct_optimizer_new(ct_map_get(again, "compile"), "optimizer", 3, &err);
    ck_assert_msg(o2 != NULL, "%s\n%s", err.msg, buf);
    ck_assert_int_eq(o2->schedule.n_boundaries, 1);
    ck_assert_int_eq(o2->schedule.boundaries[0], 100);
    ck_assert_double_eq(o2->schedule.values[1], 0.001);
    ct_optimizer_free(o2);
    ct_node_free(again);
    free(buf);
    ct_optimizer_free(o);
    ct_node_free(root);

    /* cosine_decay's null warmup_target survives the round trip as null */
    o = new_opt("compile:\n  optimizer: {type: sgd, learning_rate: {type: cosine_decay, "
                "initial_learning_rate: 0.5, decay_steps: 4}}\n",
                3, &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    buf = NULL;
    f = open_memstream(&buf, &len);
    ck_assert_int_eq(ct_config_emit(root, f, &err), 0);
    fclose(f);
    ck_assert_msg(strstr(buf, "      warmup_target: null\n") != NULL, "%s", buf);
    again = parse(buf);
    o2 = ct_optimizer_new(ct_map_get(again, "compile"), "optimizer", 3, &err);
    ck_assert_msg(o2 != NULL, "%s\n%s", err.msg, buf);
    ck_assert(!o2->schedule.has_warmup_target);
    ck_assert_double_eq(ct_optimizer_learning_rate(o2, 2), 0.25); /* 0.5 * 0.5 * (1 + 0) */
    ct_optimizer_free(o2);
    ct_node_free(again);
    free(buf);
    ct_optimizer_free(o);
    ct_node_free(root);

    /* a plain number stays constant at every step */
    o = new_opt("compile:\n  optimizer: {type: sgd, learning_rate: 0.2}\n", 3, &root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    ck_assert_int_eq(o->schedule.type, CT_SCHEDULE_CONSTANT);
    ck_assert_double_eq(ct_optimizer_learning_rate(o, 0), 0.2);
    ck_assert_double_eq(ct_optimizer_learning_rate(o, 123456), 0.2);
    ct_optimizer_free(o);
    ct_node_free(root);
}
END_TEST

/* Builds the optimizer from text, expecting failure; returns the message. */
static const char *opt_error(const char *text)
{
    static ct_error err;
    ct_node *root;
    memset(&err, 0, sizeof err);
    ct_optimizer *o = new_opt(text, 3, &root, &err);
    ck_assert_msg(o == NULL, "expected an error for: %s", text);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ct_node_free(root);
    return err.msg;
}

/* Every case puts the schedule on line 4 after "    learning_rate: " (19 characters), so
 * the map's `{` is at column 20. */
#define HEAD "compile:\n  optimizer:\n    type: sgd\n    learning_rate: "

START_TEST(test_errors)
{
    /* "{type: " is 7 characters: the name starts at column 27 */
    ck_assert_str_eq(opt_error(HEAD "{type: exponential_decy, initial_learning_rate: 0.1, "
                                    "decay_steps: 10, decay_rate: 0.5}\n"),
                     "t.yaml:4:27: unknown learning_rate schedule 'exponential_decy' (did you "
                     "mean 'exponential_decay'?); known schedules: exponential_decay, "
                     "piecewise_constant_decay, polynomial_decay, inverse_time_decay, "
                     "cosine_decay, cosine_decay_restarts");
    ck_assert_str_eq(opt_error(HEAD "{type: CosineDecayRestart, initial_learning_rate: 0.1, "
                                    "first_decay_steps: 10}\n"),
                     "t.yaml:4:27: unknown learning_rate schedule 'CosineDecayRestart' (did "
                     "you mean 'CosineDecayRestarts'?); known schedules: exponential_decay, "
                     "piecewise_constant_decay, polynomial_decay, inverse_time_decay, "
                     "cosine_decay, cosine_decay_restarts");
    /* "{type: exponential_decay, initial_learning_rate: 0.1, decay_steps: " is 67 characters */
    ck_assert_str_eq(opt_error(HEAD "{type: exponential_decay, initial_learning_rate: 0.1, "
                                    "decay_steps: 0, decay_rate: 0.5}\n"),
                     "t.yaml:4:87: learning_rate schedule 'exponential_decay': decay_steps must "
                     "be a positive number, got 0");
    /* "{type: cosine_decay_restarts, initial_learning_rate: 1, first_decay_steps: " is 75 */
    ck_assert_str_eq(opt_error(HEAD "{type: cosine_decay_restarts, initial_learning_rate: 1, "
                                    "first_decay_steps: -3}\n"),
                     "t.yaml:4:95: learning_rate schedule 'cosine_decay_restarts': "
                     "first_decay_steps must be a positive number, got -3");
    /* "{type: piecewise_constant_decay, boundaries: [10, " is 50 characters */
    ck_assert_str_eq(opt_error(HEAD "{type: piecewise_constant_decay, boundaries: [10, 10], "
                                    "values: [1, 2, 3]}\n"),
                     "t.yaml:4:70: learning_rate schedule 'piecewise_constant_decay': "
                     "boundaries must be strictly increasing, got 10 after 10");
    /* "{type: piecewise_constant_decay, boundaries: [10, 20], values: " is 63 characters */
    ck_assert_str_eq(opt_error(HEAD "{type: piecewise_constant_decay, boundaries: [10, 20], "
                                    "values: [1, 2]}\n"),
                     "t.yaml:4:83: learning_rate schedule 'piecewise_constant_decay': values "
                     "needs 3 entries (one more than boundaries), got 2");
    /* "{type: piecewise_constant_decay, boundaries: " is 45 characters */
    ck_assert_str_eq(opt_error(HEAD "{type: piecewise_constant_decay, boundaries: 10, "
                                    "values: [1, 2]}\n"),
                     "t.yaml:4:65: learning_rate schedule 'piecewise_constant_decay': "
                     "boundaries must be a list of 1 to 32 integers");
    /* a missing required key points at the map */
    ck_assert_str_eq(opt_error(HEAD "{type: inverse_time_decay, initial_learning_rate: 0.1, "
                                    "decay_steps: 10}\n"),
                     "t.yaml:4:20: learning_rate schedule 'inverse_time_decay' needs the key "
                     "'decay_rate'");
    /* a misspelt key is named as such; "{type: exponential_decay, initial_learning_rate: 0.1, "
     * is 54 characters */
    ck_assert_str_eq(opt_error(HEAD "{type: exponential_decay, initial_learning_rate: 0.1, "
                                    "decay_step: 10, decay_rate: 0.5}\n"),
                     "t.yaml:4:74: unknown key 'decay_step' in learning_rate schedule "
                     "'exponential_decay' (did you mean 'decay_steps'?); known keys: type, "
                     "initial_learning_rate, decay_steps, decay_rate, staircase");
    /* Keras's `name` is not a key here; "{type: cosine_decay, initial_learning_rate: 0.1, "
     * "decay_steps: 5, " is 65 characters */
    ck_assert_str_eq(opt_error(HEAD "{type: cosine_decay, initial_learning_rate: 0.1, "
                                    "decay_steps: 5, name: x}\n"),
                     "t.yaml:4:85: unknown key 'name' in learning_rate schedule 'cosine_decay'; "
                     "known keys: type, initial_learning_rate, decay_steps, alpha, "
                     "warmup_target, warmup_steps");
    /* "{type: cosine_decay, initial_learning_rate: 0.1, decay_steps: 5, alpha: " is 72 */
    ck_assert_str_eq(opt_error(HEAD "{type: cosine_decay, initial_learning_rate: 0.1, "
                                    "decay_steps: 5, alpha: 2}\n"),
                     "t.yaml:4:92: 'alpha' must be between 0 and 1, got 2");
    ck_assert_str_eq(opt_error(HEAD "{decay_steps: 5}\n"),
                     "t.yaml:4:20: learning_rate schedule needs the key 'type'");
    ck_assert_str_eq(opt_error(HEAD "cosine_decay\n"),
                     "t.yaml:4:20: optimizer 'sgd': learning_rate must be a number or a schedule "
                     "such as {type: exponential_decay, initial_learning_rate: 0.1, decay_steps: "
                     "1000, decay_rate: 0.96}; schedules: exponential_decay, "
                     "piecewise_constant_decay, polynomial_decay, inverse_time_decay, "
                     "cosine_decay, cosine_decay_restarts");
}
END_TEST

/* ---- stepping ----------------------------------------------------------------------------- */

/* sgd on one float from w0 = 1 with gradients 0.5, -1, 2; returns the weight after each
 * step in w_after. */
static void run_sgd(const char *text, float w_after[3], ct_optimizer **out, ct_node **root)
{
    ct_error err = {0};
    ct_optimizer *o = new_opt(text, 1, root, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    static const float grads[3] = {0.5f, -1.0f, 2.0f};
    float w = 1.0f, g;
    ct_param p;
    memset(&p, 0, sizeof p);
    strcpy(p.name, "kernel");
    p.shape.ndim = 1;
    p.shape.dim[0] = 1;
    p.trainable = true;
    p.value = &w;
    p.grad = &g;
    ct_param *params[] = {&p};
    for (int t = 0; t < 3; t++) {
        g = grads[t];
        ct_optimizer_apply(o, params, 1, &w, &g);
        w_after[t] = w;
    }
    ck_assert_int_eq(o->iterations, 3);
    *out = o;
}

START_TEST(test_sgd_staircase)
{
    /* rates 0.1 * 0.5^floor(step / 2) at steps 0, 1, 2: 0.1, 0.1, 0.05 (counting from 1
     * instead would give 0.1, 0.05, 0.05) */
    ct_node *root;
    ct_optimizer *o;
    float w[3];
    run_sgd("compile:\n  optimizer: {type: sgd, learning_rate: {type: exponential_decay, "
            "initial_learning_rate: 0.1, decay_steps: 2, decay_rate: 0.5, staircase: true}}\n",
            w, &o, &root);
    ck_assert_double_eq(o->learning_rate, 0.1);
    ck_assert_double_eq(ct_optimizer_learning_rate(o, 1), 0.1);
    ck_assert_double_eq(ct_optimizer_learning_rate(o, 2), 0.05);
    ck_assert_double_eq(ct_optimizer_learning_rate(o, 3), 0.05);
    ck_assert_double_eq(ct_optimizer_learning_rate(o, 4), 0.025);
    tu_assert_close(w[0], 0.95, 1e-6);  /* 1 - 0.1 * 0.5 */
    tu_assert_close(w[1], 1.05, 1e-6);  /* 0.95 - 0.1 * -1 */
    tu_assert_close(w[2], 0.95, 1e-6);  /* 1.05 - 0.05 * 2 */
    ct_optimizer_free(o);
    ct_node_free(root);

    /* weight decay 0.1 uses the scheduled rate too: w -= lr * 0.1 * w, then w -= lr * g */
    run_sgd("compile:\n  optimizer: {type: sgd, weight_decay: 0.1, learning_rate: {type: "
            "exponential_decay, initial_learning_rate: 0.1, decay_steps: 2, decay_rate: 0.5, "
            "staircase: true}}\n",
            w, &o, &root);
    tu_assert_close(w[0], 0.94, 1e-6);     /* 1 * (1 - 0.01) = 0.99; - 0.1 * 0.5 */
    tu_assert_close(w[1], 1.0306, 1e-6);   /* 0.94 * 0.99 = 0.9306; + 0.1 */
    tu_assert_close(w[2], 0.925447, 1e-6); /* 1.0306 * (1 - 0.005) = 1.025447; - 0.05 * 2 */
    ct_optimizer_free(o);
    ct_node_free(root);
}
END_TEST

static Suite *schedules_suite(void)
{
    Suite *s = suite_create("schedules");
    TCase *v = tcase_create("values");
    tcase_set_timeout(v, 60);
    tcase_add_test(v, test_exponential);
    tcase_add_test(v, test_piecewise);
    tcase_add_test(v, test_polynomial);
    tcase_add_test(v, test_inverse_time);
    tcase_add_test(v, test_cosine);
    tcase_add_test(v, test_cosine_restarts);
    suite_add_tcase(s, v);
    TCase *p = tcase_create("parse");
    tcase_set_timeout(p, 60);
    tcase_add_test(p, test_defaults_inserted);
    tcase_add_test(p, test_optimizer_config);
    tcase_add_test(p, test_errors);
    suite_add_tcase(s, p);
    TCase *o = tcase_create("optimizer");
    tcase_set_timeout(o, 60);
    tcase_add_test(o, test_sgd_staircase);
    suite_add_tcase(s, o);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(schedules_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
