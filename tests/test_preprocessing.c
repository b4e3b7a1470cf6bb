/* test_preprocessing.c - Rescaling and the augmentation layers (layers/preprocessing.c):
 * outputs against hand-computed values (a flip, a translation and a crop with the draw
 * fixed, rescaling, contrast), the identity in inference, the same draws for the same seed
 * and step and others for another step, finite-difference gradients of the transforms, the
 * fill modes, and config errors with their positions. */
#include "backend_cpu.h"
#include "blobs.h"
#include "experiment.h"
#include "image_aug.h"
#include "layertest.h"
#include "rng.h"

extern const ct_layer_kind ct_layer_rescaling, ct_layer_random_flip, ct_layer_random_translation,
    ct_layer_random_zoom, ct_layer_random_rotation, ct_layer_random_crop,
    ct_layer_random_contrast, ct_layer_normalization;

static void lt_bind(ct_layer *l, const char *type)
{
    const ct_layer_kind *kinds[] = {&ct_layer_rescaling,       &ct_layer_random_flip,
                                    &ct_layer_random_translation, &ct_layer_random_zoom,
                                    &ct_layer_random_rotation, &ct_layer_random_crop,
                                    &ct_layer_random_contrast, &ct_layer_normalization};
    l->kind = NULL;
    for (int i = 0; i < 8 && !l->kind; i++)
        if (!strcmp(kinds[i]->name, type) || !strcmp(kinds[i]->class_name, type))
            l->kind = kinds[i];
}

static void lt_fill(ct_param *p, int i, int64_t n)
{
    lt_fill_uniform(p, i, n);
}

static const ct_pass train_pass = {.training = true, .seed = 42, .step = 3};
static const ct_pass infer_pass = {.training = false, .seed = 42, .step = 3};

/* x[r][i][j][0] = 100 r + 10 i + j: every value names its pixel. */
static float *numbered(int64_t rows, int64_t h, int64_t w)
{
    float *x = fvec(rows * h * w);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++)
                x[(r * h + i) * w + j] = (float)(100 * r + 10 * i + j);
    return x;
}

/* Runs t's layer forward on x (rows images of its input shape) into a fresh output. */
static float *run(lt *t, const ct_pass *pass, const float *x, int64_t rows)
{
    float *y = fvec(rows * ct_shape_size(&t->l.out_shape));
    ct_tensor tx = tensor((float *)x, rows, t->l.in_shape);
    ct_tensor ty = tensor(y, rows, t->l.out_shape);
    lt_forward(&t->l, pass, &tx, &ty);
    return y;
}

START_TEST(test_rescaling_values)
{
    lt t;
    int64_t dims[] = {3};
    lt_ok(&t, "{type: rescaling, scale: 0.5, offset: -1}", "r", 1, dims, 2);
    float x[6] = {0, 1, 2, 4, -2, 255};
    float want[6] = {-1, -0.5f, 0, 1, -2, 126.5f};
    for (int p = 0; p < 2; p++) { /* the same in training and inference */
        float *y = run(&t, p ? &train_pass : &infer_pass, x, 2);
        for (int i = 0; i < 6; i++)
            ck_assert_float_eq(y[i], want[i]);
        free(y);
    }
    lt_gradcheck(&t, 2, &train_pass, 1e-3, 1e-3);
    lt_free(&t);
}
END_TEST

/* Flip: with mode horizontal, each image comes back either unchanged or with its columns
 * reversed, as its own draw (uniform <= 0.5) says. */
START_TEST(test_flip_values)
{
    lt t;
    int64_t dims[] = {3, 4, 1};
    lt_ok(&t, "{type: random_flip, mode: horizontal}", "f", 3, dims, 16);
    int64_t rows = 16;
    float *x = numbered(rows, 3, 4), *y = run(&t, &train_pass, x, rows);
    uint64_t key = ct_rng_key(42, CT_RNG_AUGMENT, 0, 3);
    int flipped = 0;
    for (int64_t r = 0; r < rows; r++) {
        bool flip = ct_rng_uniform(key, (uint64_t)r * 8) <= 0.5f;
        flipped += flip;
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 4; j++)
                ck_assert_float_eq(y[(r * 3 + i) * 4 + j],
                                   (float)(100 * r + 10 * i + (flip ? 3 - j : j)));
    }
    ck_assert_int_gt(flipped, 0); /* both cases seen */
    ck_assert_int_lt(flipped, rows);
    free(y);
    y = run(&t, &infer_pass, x, rows);
    for (int64_t i = 0; i < rows * 12; i++)
        ck_assert_float_eq(y[i], x[i]);
    lt_gradcheck(&t, 4, &train_pass, 1e-3, 1e-3);
    free(x), free(y);
    lt_free(&t);
}
END_TEST

/* horizontal_and_vertical (the default): one draw flips both axes, as Keras 3. */
START_TEST(test_flip_vertical_both)
{
    lt t;
    int64_t dims[] = {3, 2, 1};
    lt_ok(&t, "{type: random_flip}", "f", 3, dims, 16);
    int64_t rows = 16;
    float *x = numbered(rows, 3, 2), *y = run(&t, &train_pass, x, rows);
    uint64_t key = ct_rng_key(42, CT_RNG_AUGMENT, 0, 3);
    for (int64_t r = 0; r < rows; r++) {
        bool fh = ct_rng_uniform(key, (uint64_t)r * 8) <= 0.5f, fv = fh; /* one draw */
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 2; j++)
                ck_assert_float_eq(y[(r * 3 + i) * 2 + j],
                                   (float)(100 * r + 10 * (fv ? 2 - i : i) + (fh ? 1 - j : j)));
    }
    free(x), free(y);
    lt_free(&t);
}
END_TEST

/* A translation fixed by equal bounds: down 1/4 of 4 rows = 1 row, left 1/4 of 4 columns
 * = 1 column; the uncovered row and column follow the fill mode. */
START_TEST(test_translation_fixed)
{
    const char *yaml[] = {
        "{type: random_translation, height_factor: [0.25, 0.25], width_factor: [-0.25, -0.25],"
        " fill_mode: constant, fill_value: -1}",
        "{type: random_translation, height_factor: [0.25, 0.25], width_factor: [-0.25, -0.25],"
        " fill_mode: nearest}",
        "{type: random_translation, height_factor: [0.25, 0.25], width_factor: [-0.25, -0.25],"
        " fill_mode: wrap}",
        "{type: random_translation, height_factor: [0.25, 0.25], width_factor: [-0.25, -0.25]}",
    };
    for (int m = 0; m < 4; m++) {
        lt t;
        int64_t dims[] = {4, 4, 1};
        lt_ok(&t, yaml[m], "t", 3, dims, 2);
        float *x = numbered(2, 4, 4), *y = run(&t, &train_pass, x, 2);
        for (int64_t r = 0; r < 2; r++)
            for (int64_t i = 0; i < 4; i++)
                for (int64_t j = 0; j < 4; j++) {
                    int64_t si = i - 1, sj = j + 1; /* the source pixel */
                    float want;
                    if (m == 0)
                        want = si < 0 || sj > 3 ? -1.0f : (float)(100 * r + 10 * si + sj);
                    else if (m == 1)
                        want = (float)(100 * r + 10 * (si < 0 ? 0 : si) + (sj > 3 ? 3 : sj));
                    else if (m == 2)
                        want = (float)(100 * r + 10 * ((si + 4) % 4) + sj % 4);
                    else /* reflect: -1 -> 0, 4 -> 3 */
                        want = (float)(100 * r + 10 * (si < 0 ? 0 : si) + (sj > 3 ? 3 : sj));
                    float got = y[(r * 4 + i) * 4 + j];
                    ck_assert_msg(got == want, "mode %d r%d (%d,%d): %g, want %g", m, (int)r,
                                  (int)i, (int)j, got, want);
                }
        free(y);
        y = run(&t, &infer_pass, x, 2); /* inference: the identity */
        for (int64_t i = 0; i < 32; i++)
            ck_assert_float_eq(y[i], x[i]);
        free(x), free(y);
        lt_free(&t);
    }
}
END_TEST

/* Reflection beyond one pixel: d c b a | a b c d | d c b a, and wrap beyond the period. */
START_TEST(test_fill_index)
{
    int64_t want_reflect[] = {3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0};
    int64_t want_wrap[] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0};
    for (int64_t i = -4; i <= 8; i++) {
        ck_assert_int_eq(ct_aug_index(CT_FILL_REFLECT, i, 4), want_reflect[i + 4]);
        ck_assert_int_eq(ct_aug_index(CT_FILL_WRAP, i, 4), want_wrap[i + 4]);
        ck_assert_int_eq(ct_aug_index(CT_FILL_NEAREST, i, 4), i < 0 ? 0 : i > 3 ? 3 : i);
        ck_assert_int_eq(ct_aug_index(CT_FILL_CONSTANT, i, 4), i < 0 || i > 3 ? -1 : i);
    }
}
END_TEST

/* A half-pixel shift with bilinear interpolation averages neighbours. */
START_TEST(test_translation_bilinear)
{
    lt t;
    int64_t dims[] = {1, 4, 2};
    lt_ok(&t, "{type: random_translation, height_factor: 0, width_factor: [0.125, 0.125],"
              " fill_mode: constant}", "t", 3, dims, 1);
    float x[8] = {1, 10, 2, 20, 3, 30, 4, 40};
    float want[8] = {0.5f, 5, 1.5f, 15, 2.5f, 25, 3.5f, 35}; /* read from j - 0.5 */
    float *y = run(&t, &train_pass, x, 1);
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq_tol(y[i], want[i], 1e-6);
    free(y);
    lt_free(&t);
}
END_TEST

/* The CPU's shortcut for axis-aligned transforms gives the bits of the general resampling
 * (ct_aug_taps per pixel), for every such kind, fill mode and interpolation. */
START_TEST(test_separable_path)
{
    const int64_t rows = 4, h = 7, w = 6, c = 2;
    float *x = fvec(rows * h * w * c), *y = fvec(rows * h * w * c);
    tu_fill(x, rows * h * w * c, 11, -1.0f, 1.0f);
    int kinds[] = {CT_AUG_FLIP, CT_AUG_TRANSLATE, CT_AUG_ZOOM, CT_AUG_CROP, CT_AUG_RESIZE};
    for (int i = 0; i < 5; i++)
        for (int fill = CT_FILL_REFLECT; fill <= CT_FILL_NEAREST; fill++)
            for (int nearest = 0; nearest < 2; nearest++) {
                ct_image_aug a = {.kind = kinds[i], .h = h, .w = w, .c = c, .oh = h, .ow = w,
                                  .flip_h = true, .flip_v = true, .lo = {-0.4f, -0.3f},
                                  .hi = {0.3f, 0.5f}, .nearest = nearest, .fill = fill,
                                  .fill_value = 0.25f};
                if (kinds[i] >= CT_AUG_CROP)
                    a.oh = 4, a.ow = 5;
                ct_cpu_image_aug(&a, x, y, rows, 99);
                for (int64_t r = 0; r < rows; r++) {
                    float m[6], wt[4];
                    int64_t off[4];
                    ct_aug_matrix(&a, 99, r, m);
                    ck_assert(m[1] == 0.0f && m[3] == 0.0f);
                    for (int64_t oy = 0; oy < a.oh; oy++)
                        for (int64_t ox = 0; ox < a.ow; ox++) {
                            int n = ct_aug_taps(&a, m, ox, oy, off, wt);
                            for (int64_t k = 0; k < c; k++) {
                                float v = 0.0f;
                                for (int t = 0; t < n; t++)
                                    v += wt[t] * (off[t] < 0 ? a.fill_value
                                                             : x[r * h * w * c + off[t] + k]);
                                float got = y[((r * a.oh + oy) * a.ow + ox) * c + k];
                                ck_assert_msg(got == v, "kind %d fill %d nearest %d: %g vs %g",
                                              kinds[i], fill, nearest, got, v);
                            }
                        }
                }
            }
    free(x), free(y);
}
END_TEST

/* The same seed and step draw the same; another step or a layer seed draws otherwise. */
START_TEST(test_determinism)
{
    lt a, b, c;
    int64_t dims[] = {6, 6, 2};
    lt_ok(&a, "{type: random_rotation, factor: 0.2}", "a", 3, dims, 8);
    lt_ok(&b, "{type: random_rotation, factor: 0.2}", "b", 3, dims, 8);
    lt_ok(&c, "{type: random_rotation, factor: 0.2, seed: 7}", "c", 3, dims, 8);
    float *x = fvec(8 * 72);
    tu_fill(x, 8 * 72, 3, 0.0f, 1.0f);
    ct_pass later = train_pass;
    later.step = 4;
    float *ya = run(&a, &train_pass, x, 8), *yb = run(&b, &train_pass, x, 8);
    float *yl = run(&a, &later, x, 8), *yc = run(&c, &train_pass, x, 8);
    ck_assert_int_eq(memcmp(ya, yb, 8 * 72 * sizeof(float)), 0);
    ck_assert_int_ne(memcmp(ya, yl, 8 * 72 * sizeof(float)), 0);
    ck_assert_int_ne(memcmp(ya, yc, 8 * 72 * sizeof(float)), 0);
    free(x), free(ya), free(yb), free(yl), free(yc);
    lt_free(&a), lt_free(&b), lt_free(&c);
}
END_TEST

/* Every geometric layer, every fill mode and both interpolations: dx is the transpose of
 * the resampling (exact for a linear map, so finite differences agree closely). */
START_TEST(test_gradients)
{
    const char *yaml[] = {
        "{type: random_translation, height_factor: 0.3, width_factor: [-0.2, 0.4]}",
        "{type: random_translation, height_factor: 0.3, width_factor: 0.3, fill_mode: wrap}",
        "{type: random_translation, height_factor: 0.3, width_factor: 0.3, fill_mode: constant,"
        " fill_value: 2}",
        "{type: random_translation, height_factor: 0.3, width_factor: 0.3, fill_mode: nearest,"
        " interpolation: nearest}",
        "{type: random_zoom, height_factor: [-0.3, 0.4]}",
        "{type: random_zoom, height_factor: 0.3, width_factor: 0.2, fill_mode: constant}",
        "{type: random_rotation, factor: 0.1}",
        "{type: random_rotation, factor: 0.5, interpolation: nearest, fill_mode: wrap}",
        "{type: random_crop, height: 3, width: 4}",
        "{type: random_flip}",
    };
    for (size_t k = 0; k < sizeof yaml / sizeof *yaml; k++) {
        lt t;
        int64_t dims[] = {5, 6, 2};
        lt_ok(&t, yaml[k], "g", 3, dims, 3);
        lt_gradcheck(&t, 3, &train_pass, 2e-3, 2e-3);
        lt_gradcheck(&t, 3, &infer_pass, 2e-3, 2e-3);
        lt_free(&t);
    }
}
END_TEST

/* Training crops a window at a drawn offset; inference resizes the largest centred window
 * of the crop's aspect ratio (here the whole image, halved: averages of 2x2 blocks). */
START_TEST(test_crop)
{
    lt t;
    int64_t dims[] = {4, 4, 1};
    lt_ok(&t, "{type: random_crop, height: 2, width: 2}", "c", 3, dims, 4);
    ck_assert_int_eq(t.l.out_shape.dim[0], 2);
    ck_assert_int_eq(t.l.out_shape.dim[1], 2);
    float *x = numbered(4, 4, 4), *y = run(&t, &train_pass, x, 4);
    uint64_t key = ct_rng_key(42, CT_RNG_AUGMENT, 0, 3);
    for (int64_t r = 0; r < 4; r++) {
        int64_t oy = (int64_t)floorf(3.0f * ct_rng_uniform(key, (uint64_t)r * 8));
        int64_t ox = (int64_t)floorf(3.0f * ct_rng_uniform(key, (uint64_t)r * 8 + 1));
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < 2; j++)
                ck_assert_float_eq(y[(r * 2 + i) * 2 + j],
                                   (float)(100 * r + 10 * (oy + i) + ox + j));
    }
    free(y);
    y = run(&t, &infer_pass, x, 4);
    for (int64_t r = 0; r < 4; r++)
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < 2; j++)
                ck_assert_float_eq_tol(y[(r * 2 + i) * 2 + j],
                                       (float)(100 * r + 10 * (2 * i + 0.5) + 2 * j + 0.5),
                                       1e-4);
    free(x), free(y);
    lt_free(&t);
}
END_TEST

/* Zoom by a fixed factor 2 (zooming out) about the centre of a 1x5 row: column j reads
 * 2 + 2 (j - 2) = -2, 0, 2, 4, 6, reflected (d c b a | a b c d | d c b a) to 1, 0, 2, 4, 3. */
START_TEST(test_zoom_fixed)
{
    lt t;
    int64_t dims[] = {1, 5, 1};
    lt_ok(&t, "{type: random_zoom, height_factor: 0, width_factor: [1, 1]}", "z", 3, dims, 1);
    float x[5] = {0, 1, 2, 3, 4}, want[5] = {1, 0, 2, 4, 3};
    float *y = run(&t, &train_pass, x, 1);
    for (int i = 0; i < 5; i++)
        ck_assert_float_eq_tol(y[i], want[i], 1e-5);
    free(y);
    lt_free(&t);
}
END_TEST

/* A rotation by half a turn reverses both axes. */
START_TEST(test_rotation_half_turn)
{
    lt t;
    int64_t dims[] = {3, 4, 1};
    lt_ok(&t, "{type: random_rotation, factor: [0.5, 0.5]}", "r", 3, dims, 2);
    float *x = numbered(2, 3, 4), *y = run(&t, &train_pass, x, 2);
    for (int64_t r = 0; r < 2; r++)
        for (int64_t i = 0; i < 3; i++)
            for (int64_t j = 0; j < 4; j++)
                ck_assert_float_eq_tol(y[(r * 3 + i) * 4 + j],
                                       (float)(100 * r + 10 * (2 - i) + 3 - j), 1e-3);
    free(x), free(y);
    lt_free(&t);
}
END_TEST

/* Contrast: (x - mean) f + mean per image and channel, clipped to value_range. */
START_TEST(test_contrast)
{
    lt t;
    int64_t dims[] = {2, 2, 2};
    lt_ok(&t, "{type: random_contrast, factor: [0.5, 0.5], value_range: [0, 10]}", "c", 3,
          dims, 2);
    float x[16] = {1, 0, 3, 4, 5, 8, 7, 0, 1, 1, 1, 1, 1, 1, 9, 1};
    float *y = run(&t, &train_pass, x, 2);
    uint64_t key = ct_rng_key(42, CT_RNG_AUGMENT, 0, 3);
    for (int64_t r = 0; r < 2; r++) {
        float f = 0.5f + ct_rng_uniform(key, (uint64_t)r * 8); /* in [0.5, 1.5) */
        for (int64_t k = 0; k < 2; k++) {
            double mean = 0;
            for (int p = 0; p < 4; p++)
                mean += x[r * 8 + p * 2 + k] / 4.0;
            for (int p = 0; p < 4; p++) {
                double v = (x[r * 8 + p * 2 + k] - mean) * f + mean;
                v = v < 0 ? 0 : v > 10 ? 10 : v;
                ck_assert_float_eq_tol(y[r * 8 + p * 2 + k], v, 1e-5);
            }
        }
    }
    free(y);
    y = run(&t, &infer_pass, x, 2);
    for (int i = 0; i < 16; i++)
        ck_assert_float_eq(y[i], x[i]);
    free(y);
    lt_free(&t);
    /* Gradients away from the clip. */
    lt_ok(&t, "{type: random_contrast, factor: 0.4, value_range: [-10, 10]}", "c", 3, dims, 3);
    lt_gradcheck(&t, 3, &train_pass, 2e-3, 2e-3);
    lt_free(&t);
}
END_TEST

START_TEST(test_config_errors)
{
    int64_t img[] = {4, 4, 1}, flat[] = {16};
    lt_fails("{type: random_flip, mode: diagonal}", 3, img, "f",
             "layer.yaml:1:27: unknown value 'diagonal' for 'mode'; choices: "
             "horizontal_and_vertical, horizontal, vertical");
    lt_fails("{type: random_translation, height_factor: 0.1}", 3, img, "t",
             "layer.yaml:1:1: layer 't' (RandomTranslation) needs the key 'width_factor'");
    lt_fails("{type: random_translation, height_factor: 1.5, width_factor: 0.1}", 3, img, "t",
             "layer.yaml:1:43: layer 't' (RandomTranslation): height_factor must lie in "
             "[-1, 1], got [-1.5, 1.5]");
    lt_fails("{type: random_zoom, height_factor: [-1, 0.2]}", 3, img, "z",
             "layer.yaml:1:36: layer 'z' (RandomZoom): height_factor must lie in (-1, 1], "
             "got [-1, 0.2]");
    lt_fails("{type: random_rotation, factor: 0.1, fill_mode: mirror}", 3, img, "r",
             "layer.yaml:1:49: unknown value 'mirror' for 'fill_mode'; choices: reflect, wrap, "
             "constant, nearest");
    lt_fails("{type: random_flip}", 1, flat, "f",
             "layer.yaml:1:1: layer 'f' (RandomFlip): expected images of rank 4 (batch, "
             "height, width, channels), got (None, 16)");
    lt_fails("{type: normalization, mean: [1, 2]}", 1, flat, "n",
             "layer.yaml:1:1: layer 'n' (Normalization): mean and variance must be given "
             "together (or neither, to compute them from the training data)");
    lt_fails("{type: normalization, mean: [1, 2], variance: [1, 1]}", 1, flat, "n",
             "layer.yaml:1:1: layer 'n' (Normalization): mean and variance have 2 values; the "
             "last axis has 16");
    lt_fails("{type: normalization, axis: 1}", 1, flat, "n",
             "layer.yaml:1:29: layer 'n' (Normalization): only axis -1 (the last) is "
             "supported, got 1");
    lt_fails("{type: rescaling}", 1, flat, "r",
             "layer.yaml:1:1: layer 'r' (Rescaling) needs the key 'scale'");
    lt_fails("{type: random_contrast, factor: [0.1, 0.2], value_range: [5, 1]}", 3, img, "c",
             "layer.yaml:1:58: layer 'c' (RandomContrast): value_range must be [low, high] "
             "with low < high");
}
END_TEST

/* Normalization with the config's statistics: one value for every channel, or one each;
 * invert undoes it. */
START_TEST(test_normalization_fixed)
{
    lt t;
    int64_t dims[] = {2, 3};
    float x[12] = {1, 2, 3, 4, 5, 6, -1, 0, 1, 7, 8, 9};
    lt_ok(&t, "{type: normalization, mean: [1, 2, 3], variance: [4, 1, 0.25]}", "n", 2, dims, 2);
    ck_assert_int_eq(t.l.nparams, 0);
    float *y = run(&t, &train_pass, x, 2);
    float sd[3] = {2, 1, 0.5f}, mu[3] = {1, 2, 3};
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq_tol(y[i], (x[i] - mu[i % 3]) / sd[i % 3], 1e-6);
    free(y);
    lt_gradcheck(&t, 2, &train_pass, 1e-3, 1e-3);
    lt_free(&t);
    lt_ok(&t, "{type: normalization, mean: 2, variance: 9, invert: true}", "n", 2, dims, 2);
    y = run(&t, &infer_pass, x, 2);
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq_tol(y[i], 2 + 3 * x[i], 1e-5);
    free(y);
    lt_gradcheck(&t, 2, &train_pass, 1e-3, 1e-3);
    lt_free(&t);
}
END_TEST

/* A zero variance divides by Keras's epsilon, 1e-7, not by 0. */
START_TEST(test_normalization_epsilon)
{
    lt t;
    int64_t dims[] = {1};
    lt_ok(&t, "{type: normalization, mean: 1, variance: 0}", "n", 1, dims, 1);
    float x[1] = {1.5f}, *y = run(&t, &infer_pass, x, 1);
    ck_assert_float_eq_tol(y[0], 0.5e7f, 1.0f);
    free(y);
    lt_free(&t);
}
END_TEST

/* ---- whole runs ------------------------------------------------------------------------ */

/* The blobs (tests/blobs.h) as 2 x 4 images through every random layer. */
static const char *aug_config =
    "name: aug\nseed: 5\n"
    "data:\n  train: {path: train.h5}\n  test: {path: test.h5}\n  validation_split: 0.2\n"
    "model:\n  input_shape: [8]\n  layers:\n"
    "    - {type: reshape, target_shape: [2, 4, 1]}\n"
    "    - {type: rescaling, scale: 0.5, offset: 0.25}\n"
    "    - {type: random_flip}\n"
    "    - {type: random_translation, height_factor: 0.3, width_factor: 0.3}\n"
    "    - {type: random_zoom, height_factor: 0.2}\n"
    "    - {type: random_rotation, factor: 0.05}\n"
    "    - {type: random_contrast, factor: 0.2, value_range: [-10, 10]}\n"
    "    - {type: random_crop, height: 2, width: 3}\n"
    "    - {type: flatten}\n    - {type: dense, units: 4, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "fit: {epochs: 4, batch_size: 32, verbose: 0}\n";

/* Fits dir/aug.yaml for `epochs` into dir/run (or resuming from `resume`); returns a copy
 * of the weights. */
static float *fit_weights_first(const char *dir, const char *run, int epochs,
                                const char *resume, int64_t *n, float *first);

static float *fit_weights(const char *dir, const char *run, int epochs, const char *resume,
                          int64_t *n)
{
    return fit_weights_first(dir, run, epochs, resume, n, NULL);
}

/* fit_weights, also copying the first layer's first three parameters (17 floats: a
 * normalization's mean, variance and count over 8 features) into first. */
static float *fit_weights_first(const char *dir, const char *run, int epochs,
                                const char *resume, int64_t *n, float *first)
{
    char p[4096], r[4200], e[64];
    snprintf(p, sizeof p, "%s/aug.yaml", dir);
    snprintf(r, sizeof r, "%s/%s", dir, run);
    snprintf(e, sizeof e, "fit.epochs=%d", epochs);
    const char *set[] = {e};
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(p, set, 1, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ct_fit_options o = {.run_dir = resume ? NULL : r, .verbose = 0, .resume = resume};
    ck_assert_msg(ct_experiment_fit(ex, &o, &err) == 0, "%s", err.msg);
    *n = ex->model->size;
    float *w = malloc(sizeof(float) * (size_t)*n);
    memcpy(w, ex->model->values, sizeof(float) * (size_t)*n);
    for (int i = 0; first && i < 3; i++)
        memcpy(first + 8 * i, ex->model->layers[0].params[i].value,
               sizeof(float) * (i < 2 ? 8 : 1));
    ct_experiment_free(ex);
    return w;
}

/* Normalization adapts at fit start: its weights mean, variance (population) and count are
 * the training rows' statistics; initial weights that hold them, and a resume, keep them. */
START_TEST(test_normalization_adapt)
{
    char *dir = tu_tmpdir();
    char p[4096], rd[4200];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    write_blobs(p, 300, 1, false, 0);
    snprintf(p, sizeof p, "%s/test.h5", dir);
    write_blobs(p, 100, 2, false, 0);
    tu_write(dir, "aug.yaml",
             "name: norm\nseed: 2\ndata:\n  train: {path: train.h5}\n  test: {path: test.h5}\n"
             "model:\n  input_shape: [8]\n  layers:\n    - {type: normalization}\n"
             "    - {type: dense, units: 4, activation: softmax}\n"
             "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
             "fit: {epochs: 2, batch_size: 32, verbose: 0}\n");
    /* The blobs as write_blobs makes them. */
    float *x = fvec(300 * 8);
    tu_fill(x, 300 * 8, 1, -1.0f, 1.0f);
    for (int i = 0; i < 300; i++) {
        x[i * 8 + i % 4] += 3.0f;
        x[i * 8 + 4 + i % 4] -= 2.0f;
    }
    int64_t n[2];
    float st[17];
    float *w = fit_weights_first(dir, "full", 2, NULL, &n[0], st);
    ck_assert_int_eq(n[0], 8 + 8 + 1 + 8 * 4 + 4); /* mean, variance, count, kernel, bias */
    for (int k = 0; k < 8; k++) {
        double m = 0, v = 0;
        for (int i = 0; i < 300; i++)
            m += x[i * 8 + k] / 300.0;
        for (int i = 0; i < 300; i++)
            v += (x[i * 8 + k] - m) * (x[i * 8 + k] - m) / 300.0;
        ck_assert_float_eq_tol(st[k], m, 1e-5);
        ck_assert_float_eq_tol(st[8 + k], v, 1e-5 * v);
    }
    ck_assert_float_eq(st[16], 300.0f);
    /* Initial weights that hold the statistics (count above 0) keep them: a fit on other
     * data (the test file) starting from the first run's weights does not adapt. */
    char yp[4096], wp[4200], rr[4200];
    snprintf(yp, sizeof yp, "%s/aug.yaml", dir);
    snprintf(wp, sizeof wp, "%s/full/weights.h5", dir);
    snprintf(rr, sizeof rr, "%s/other", dir);
    const char *set[] = {"data.train.path=test.h5", "fit.epochs=1"};
    ct_error err = {0};
    ct_experiment *ex = ct_experiment_load(yp, set, 2, &err);
    ck_assert_msg(ex != NULL, "%s", err.msg);
    ct_fit_options o = {.run_dir = rr, .verbose = 0, .initial_weights = wp};
    ck_assert_msg(ct_experiment_fit(ex, &o, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(memcmp(st + 8 * i, ex->model->layers[0].params[i].value,
                                sizeof(float) * (i < 2 ? 8 : 1)), 0);
    ct_experiment_free(ex);
    free(fit_weights(dir, "half", 1, NULL, &n[1]));
    snprintf(rd, sizeof rd, "%s/half", dir);
    float *r = fit_weights(dir, "half", 2, rd, &n[1]);
    ck_assert_msg(memcmp(w, r, sizeof(float) * (size_t)n[0]) == 0,
                  "a resumed run differs from the uninterrupted one");
    free(x), free(w), free(r), free(dir);
}
END_TEST

/* The same seed gives the same run; 2 epochs + --resume + 2 give 4 epochs' weights bit for
 * bit (the augmentations draw from the step, not from a state). */
START_TEST(test_run_resume_exact)
{
    char *dir = tu_tmpdir();
    char p[4096], rd[4200];
    snprintf(p, sizeof p, "%s/train.h5", dir);
    write_blobs(p, 400, 1, false, 0);
    snprintf(p, sizeof p, "%s/test.h5", dir);
    write_blobs(p, 100, 2, false, 0);
    tu_write(dir, "aug.yaml", aug_config);
    int64_t n[3];
    float *full = fit_weights(dir, "full", 4, NULL, &n[0]);
    float *again = fit_weights(dir, "again", 4, NULL, &n[1]);
    free(fit_weights(dir, "half", 2, NULL, &n[2]));
    snprintf(rd, sizeof rd, "%s/half", dir);
    float *resumed = fit_weights(dir, "half", 4, rd, &n[2]);
    ck_assert_int_eq(n[0], n[1]);
    ck_assert_int_eq(n[0], n[2]);
    ck_assert_msg(memcmp(full, again, sizeof(float) * (size_t)n[0]) == 0,
                  "two runs with the same seed differ");
    ck_assert_msg(memcmp(full, resumed, sizeof(float) * (size_t)n[0]) == 0,
                  "a resumed run differs from the uninterrupted one");
    free(full), free(again), free(resumed), free(dir);
}
END_TEST

static Suite *preprocessing_suite(void)
{
    Suite *s = suite_create("preprocessing");
    TCase *tc = tcase_create("layers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rescaling_values);
    tcase_add_test(tc, test_flip_values);
    tcase_add_test(tc, test_flip_vertical_both);
    tcase_add_test(tc, test_translation_fixed);
    tcase_add_test(tc, test_fill_index);
    tcase_add_test(tc, test_translation_bilinear);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_separable_path);
    tcase_add_test(tc, test_gradients);
    tcase_add_test(tc, test_crop);
    tcase_add_test(tc, test_zoom_fixed);
    tcase_add_test(tc, test_rotation_half_turn);
    tcase_add_test(tc, test_contrast);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_run_resume_exact);
    tcase_add_test(tc, test_normalization_fixed);
    tcase_add_test(tc, test_normalization_epsilon);
    tcase_add_test(tc, test_normalization_adapt);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(preprocessing_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
