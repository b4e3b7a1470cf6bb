/* test_pool.c - pooling, padding/cropping/upsampling and the noise layers: forward values
 * against plain double-precision references, backward against references and central
 * differences, adjointness of the reshaping ops, the random layers' masks and statistics,
 * global average pooling over a masked sequence, output shapes, and config errors with
 * their positions. */
#include "layertest.h"
#include "rng.h"

extern const ct_layer_kind ct_layer_max_pooling1d, ct_layer_max_pooling2d,
    ct_layer_average_pooling1d, ct_layer_average_pooling2d, ct_layer_global_max_pooling1d,
    ct_layer_global_max_pooling2d, ct_layer_global_average_pooling1d,
    ct_layer_global_average_pooling2d, ct_layer_zero_padding1d, ct_layer_zero_padding2d,
    ct_layer_cropping1d, ct_layer_cropping2d, ct_layer_up_sampling1d, ct_layer_up_sampling2d,
    ct_layer_spatial_dropout1d, ct_layer_spatial_dropout2d, ct_layer_gaussian_noise;
extern const ct_layer_kind ct_layer_global_max_pooling3d, ct_layer_global_average_pooling3d,
    ct_layer_max_pooling3d, ct_layer_average_pooling3d;

static const ct_layer_kind *const kinds[] = {
    &ct_layer_max_pooling1d,          &ct_layer_max_pooling2d,
    &ct_layer_average_pooling1d,      &ct_layer_average_pooling2d,
    &ct_layer_global_max_pooling1d,   &ct_layer_global_max_pooling2d,
    &ct_layer_global_average_pooling1d, &ct_layer_global_average_pooling2d,
    &ct_layer_zero_padding1d,         &ct_layer_zero_padding2d,
    &ct_layer_cropping1d,             &ct_layer_cropping2d,
    &ct_layer_up_sampling1d,          &ct_layer_up_sampling2d,
    &ct_layer_spatial_dropout1d,      &ct_layer_spatial_dropout2d,
    &ct_layer_gaussian_noise,
    &ct_layer_global_max_pooling3d,   &ct_layer_global_average_pooling3d,
    &ct_layer_max_pooling3d,          &ct_layer_average_pooling3d, NULL,
};

static const ct_layer_kind *find_kind(const char *name)
{
    for (int i = 0; kinds[i]; i++)
        if (!strcmp(kinds[i]->name, name) || !strcmp(kinds[i]->class_name, name))
            return kinds[i];
    return NULL;
}

/* ---- harness ---------------------------------------------------------------------- */

static void lt_bind(ct_layer *l, const char *type)
{
    l->kind = find_kind(type);
    l->index = 3;
}

/* None of these layers has parameters. */
static void lt_fill(ct_param *p, int i, int64_t n)
{
    (void)n;
    ck_abort_msg("unexpected parameter %d (%s)", i, p->name);
}

static void assert_shape(const ct_shape *s, int ndim, int64_t d0, int64_t d1, int64_t d2)
{
    int64_t want[3] = {d0, d1, d2};
    ck_assert_int_eq(s->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_int_eq(s->dim[i], want[i]);
}

/* Distinct values 0.01 apart in a shuffled order, so a max is unique and stays the max
 * under a finite-difference step. */
static void fill_distinct(float *x, int64_t n, uint64_t seed)
{
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    ct_rng_permutation(ct_rng_key(seed, 9, 9, 9), perm, n);
    for (int64_t i = 0; i < n; i++)
        x[i] = 0.01f * (float)(perm[i] - n / 2);
    free(perm);
}

static const ct_pass infer_pass = {.training = false, .seed = 1, .step = 0};
static const ct_pass train_pass = {.training = true, .seed = 11, .step = 5};

/* ---- finite differences ------------------------------------------------------------- */

static double weighted_out(lt *t, const ct_pass *pass, const ct_tensor *x, ct_tensor *y,
                           const float *r)
{
    lt_forward(&t->l, pass, x, y);
    double s = 0;
    for (int64_t i = 0; i < ct_tensor_size(y); i++)
        s += (double)r[i] * (double)y->data[i];
    return s;
}

/* dx of L = sum r * y by backward against central differences, on the given input. */
static void gradcheck_x(lt *t, int64_t rows, const ct_pass *pass, float *x)
{
    ct_layer *l = &t->l;
    int64_t nin = rows * ct_shape_size(&l->in_shape), nout = rows * ct_shape_size(&l->out_shape);
    float *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin), *r = fvec(nout);
    tu_fill(r, nout, 9, -1.0f, 1.0f);
    ct_tensor tx = tensor(x, rows, l->in_shape), ty = tensor(y, rows, l->out_shape);
    ct_tensor tdy = tensor(dy, rows, l->out_shape), tdx = tensor(dx, rows, l->in_shape);
    lt_forward(l, pass, &tx, &ty);
    memcpy(dy, r, (size_t)nout * sizeof(float));
    for (int64_t i = 0; i < nin; i++)
        dx[i] = 12345.0f; /* backward must overwrite */
    lt_backward(l, pass, &tx, &ty, &tdy, &tdx);
    for (int64_t i = 0; i < nin; i++) {
        float old = x[i], up = old + 1e-3f, down = old - 1e-3f;
        x[i] = up;
        double lp = weighted_out(t, pass, &tx, &ty, r);
        x[i] = down;
        double lm = weighted_out(t, pass, &tx, &ty, r);
        x[i] = old;
        double num = (lp - lm) / ((double)up - (double)down);
        ck_assert_msg(fabs(num - dx[i]) <= 2e-3 + 1e-2 * fabs(num), "%s dx[%lld]: %.7g vs %.7g",
                      l->kind->name, (long long)i, dx[i], num);
    }
    free(y), free(dy), free(dx), free(r);
}

static void gradcheck(lt *t, int64_t rows, const ct_pass *pass)
{
    int64_t n = rows * ct_shape_size(&t->l.in_shape);
    float *x = fvec(n);
    fill_distinct(x, n, 77);
    gradcheck_x(t, rows, pass, x);
    free(x);
}

/* ---- reference pooling ------------------------------------------------------------- */

typedef struct geo {
    int64_t ih, iw, c, kh, kw, sh, sw, oh, ow, pt, pl;
} geo;

static int64_t ref_out(int64_t in, int64_t k, int64_t s, bool same, int64_t *pad)
{
    if (!same) {
        *pad = 0;
        return (in - k) / s + 1;
    }
    int64_t out = (in + s - 1) / s;
    int64_t total = (out - 1) * s + k - in;
    *pad = total > 0 ? total / 2 : 0;
    return out;
}

static geo geo_make(int64_t ih, int64_t iw, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                    int64_t sw, bool same)
{
    geo g = {.ih = ih, .iw = iw, .c = c, .kh = kh, .kw = kw, .sh = sh, .sw = sw};
    g.oh = ref_out(ih, kh, sh, same, &g.pt);
    g.ow = ref_out(iw, kw, sw, same, &g.pl);
    return g;
}

/* Index of input (h, w, ch) of sample r, or -1 outside. */
static int64_t ref_at(const geo *g, int64_t r, int64_t h, int64_t w, int64_t ch)
{
    if (h < 0 || h >= g->ih || w < 0 || w >= g->iw)
        return -1;
    return ((r * g->ih + h) * g->iw + w) * g->c + ch;
}

/* Forward (y) and, when dy is given, backward (dx, accumulated) of one pooling, in double.
 * Max routes to the first maximum in window order. */
static void ref_pool(bool is_max, const geo *g, const float *x, int64_t rows, double *y,
                     const float *dy, double *dx)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t oh = 0; oh < g->oh; oh++)
            for (int64_t ow = 0; ow < g->ow; ow++)
                for (int64_t ch = 0; ch < g->c; ch++) {
                    double acc = is_max ? -INFINITY : 0;
                    int64_t count = 0, arg = -1;
                    for (int64_t i = 0; i < g->kh; i++)
                        for (int64_t j = 0; j < g->kw; j++) {
                            int64_t at = ref_at(g, r, oh * g->sh - g->pt + i,
                                                ow * g->sw - g->pl + j, ch);
                            if (at < 0)
                                continue;
                            count++;
                            if (is_max && x[at] > acc)
                                acc = x[at], arg = at;
                            else if (!is_max)
                                acc += x[at];
                        }
                    int64_t o = ((r * g->oh + oh) * g->ow + ow) * g->c + ch;
                    y[o] = is_max ? acc : acc / (double)count;
                    if (!dy)
                        continue;
                    if (is_max) {
                        dx[arg] += dy[o];
                        continue;
                    }
                    for (int64_t i = 0; i < g->kh; i++)
                        for (int64_t j = 0; j < g->kw; j++) {
                            int64_t at = ref_at(g, r, oh * g->sh - g->pt + i,
                                                ow * g->sw - g->pl + j, ch);
                            if (at >= 0)
                                dx[at] += dy[o] / (double)count;
                        }
                }
}

/* Runs the layer built from yaml against the reference: shape, forward, backward, and a
 * finite-difference check of dx. rank 1 uses ih = 1. */
static void check_pool_layer(const char *yaml, bool is_max, int rank, const geo *g,
                             int64_t rows)
{
    lt t;
    int64_t in2[3] = {g->ih, g->iw, g->c}, in1[2] = {g->iw, g->c};
    lt_ok(&t, yaml, "pool", rank + 1, rank == 2 ? in2 : in1, rows);
    if (rank == 2)
        assert_shape(&t.l.out_shape, 3, g->oh, g->ow, g->c);
    else
        assert_shape(&t.l.out_shape, 2, g->ow, g->c, 0);
    int64_t nin = rows * g->ih * g->iw * g->c, nout = rows * g->oh * g->ow * g->c;
    float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin);
    double *ry = dvec(nout), *rdx = dvec(nin);
    tu_fill(x, nin, 5, -2.0f, 2.0f);
    tu_fill(dy, nout, 6, -1.0f, 1.0f);
    for (int64_t i = 0; i < nin; i++)
        dx[i] = NAN; /* backward must write every element, not add to it */
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    ref_pool(is_max, g, x, rows, ry, dy, rdx);
    for (int64_t i = 0; i < nout; i++)
        tu_assert_close(y[i], ry[i], 1e-6);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    for (int64_t i = 0; i < nin; i++)
        tu_assert_close(dx[i], rdx[i], 1e-5);
    gradcheck(&t, rows, &infer_pass);
    free(x), free(y), free(dy), free(dx), free(ry), free(rdx);
    lt_free(&t);
}

/* ---- windowed pooling --------------------------------------------------------------- */

START_TEST(test_pool2d_reference)
{
    geo odd_valid = geo_make(7, 5, 3, 3, 2, 2, 2, false);
    ck_assert_int_eq(odd_valid.oh, 3);
    ck_assert_int_eq(odd_valid.ow, 2);
    geo odd_same = geo_make(7, 5, 3, 3, 2, 2, 2, true);
    ck_assert_int_eq(odd_same.oh, 4);
    ck_assert_int_eq(odd_same.ow, 3);
    const char *valid = "{type: max_pooling2d, pool_size: [3, 2], strides: 2}";
    const char *same = "{type: MaxPooling2D, pool_size: [3, 2], strides: [2, 2], padding: same}";
    check_pool_layer(valid, true, 2, &odd_valid, 2);
    check_pool_layer(same, true, 2, &odd_same, 2);
    check_pool_layer("{type: average_pooling2d, pool_size: [3, 2], strides: 2}", false, 2,
                     &odd_valid, 2);
    check_pool_layer("{type: AveragePooling2D, pool_size: [3, 2], strides: 2, padding: same}",
                     false, 2, &odd_same, 2);
    /* defaults: pool 2, strides = pool; overlapping windows padded on both sides */
    geo dflt = geo_make(6, 5, 2, 2, 2, 2, 2, false);
    check_pool_layer("{type: max_pooling2d}", true, 2, &dflt, 3);
    check_pool_layer("{type: average_pooling2d, strides: null}", false, 2, &dflt, 3);
    geo overlap = geo_make(5, 6, 2, 3, 3, 1, 2, true);
    ck_assert_int_eq(overlap.pt, 1);
    check_pool_layer("{type: max_pooling2d, pool_size: 3, strides: [1, 2], padding: same}", true,
                     2, &overlap, 2);
    check_pool_layer("{type: average_pooling2d, pool_size: 3, strides: [1, 2], padding: same}",
                     false, 2, &overlap, 2);
    /* more channels than one block of the max backward */
    geo wide = geo_make(3, 3, 300, 2, 2, 1, 1, false);
    check_pool_layer("{type: max_pooling2d, strides: 1}", true, 2, &wide, 1);
    /* windows that tile the input (the loops without bounds): odd sizes leave the last
     * row and column outside every window, whose gradient must still be written as 0;
     * and more channels than one block */
    geo tiled_odd = geo_make(7, 5, 3, 2, 2, 2, 2, false);
    check_pool_layer("{type: max_pooling2d}", true, 2, &tiled_odd, 3);
    geo tiled_wide = geo_make(4, 5, 300, 2, 2, 2, 2, false);
    check_pool_layer("{type: max_pooling2d}", true, 2, &tiled_wide, 1);
}
END_TEST

START_TEST(test_pool1d_reference)
{
    geo valid = geo_make(1, 9, 4, 1, 3, 1, 2, false);
    geo same = geo_make(1, 9, 4, 1, 3, 1, 2, true);
    ck_assert_int_eq(valid.ow, 4);
    ck_assert_int_eq(same.ow, 5);
    check_pool_layer("{type: max_pooling1d, pool_size: 3, strides: 2}", true, 1, &valid, 2);
    check_pool_layer("{type: MaxPooling1D, pool_size: [3], strides: [2], padding: same}", true,
                     1, &same, 2);
    check_pool_layer("{type: average_pooling1d, pool_size: 3, strides: 2}", false, 1, &valid, 2);
    check_pool_layer("{type: AveragePooling1D, pool_size: 3, strides: 2, padding: same}", false,
                     1, &same, 2);
    geo dflt = geo_make(1, 7, 3, 1, 2, 1, 2, false);
    check_pool_layer("{type: max_pooling1d}", true, 1, &dflt, 2);
    check_pool_layer("{type: average_pooling1d}", false, 1, &dflt, 2);
}
END_TEST

/* Same padding averages over the in-bounds positions only, as Keras does. */
START_TEST(test_avg_pool_same_by_hand)
{
    lt t;
    int64_t in[2] = {3, 1};
    lt_ok(&t, "{type: average_pooling1d, pool_size: 2, strides: 2, padding: same}", "ap", 2, in,
          1);
    assert_shape(&t.l.out_shape, 2, 2, 1, 0);
    float x[3] = {1, 2, 6}, y[2], dy[2] = {1, 1}, dx[3];
    ct_tensor tx = tensor(x, 1, t.l.in_shape), ty = tensor(y, 1, t.l.out_shape);
    ct_tensor tdy = tensor(dy, 1, t.l.out_shape), tdx = tensor(dx, 1, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    ck_assert_float_eq(y[0], 1.5f);
    ck_assert_float_eq(y[1], 6.0f);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    ck_assert_float_eq(dx[0], 0.5f);
    ck_assert_float_eq(dx[1], 0.5f);
    ck_assert_float_eq(dx[2], 1.0f);
    lt_free(&t);
}
END_TEST

/* Ties: the gradient goes to the first maximum in window order only. */
START_TEST(test_max_pool_ties)
{
    const ct_backend *be = ct_backend_cpu();
    ct_window w = {.in_h = 2, .in_w = 2, .in_c = 1, .out_h = 1, .out_w = 1, .k_h = 2, .k_w = 2,
                   .stride_h = 2, .stride_w = 2, .dil_h = 1, .dil_w = 1};
    float x[4] = {1, 3, 3, 3}, y[1], dy[1] = {2}, dx[4];
    be->pool_forward(CT_POOL_MAX, &w, x, y, 1);
    ck_assert_float_eq(y[0], 3.0f);
    be->pool_backward(CT_POOL_MAX, &w, x, y, dy, dx, 1);
    ck_assert_float_eq(dx[0], 0.0f);
    ck_assert_float_eq(dx[1], 2.0f);
    ck_assert_float_eq(dx[2], 0.0f);
    ck_assert_float_eq(dx[3], 0.0f);
    /* overlapping windows (stride 1 over 1x3) accumulate into a shared maximum */
    ct_window w2 = {.in_h = 1, .in_w = 3, .in_c = 1, .out_h = 1, .out_w = 2, .k_h = 1,
                    .k_w = 2, .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1};
    float x2[3] = {0, 5, 1}, y2[2], dy2[2] = {1, 10}, dx2[3];
    be->pool_forward(CT_POOL_MAX, &w2, x2, y2, 1);
    be->pool_backward(CT_POOL_MAX, &w2, x2, y2, dy2, dx2, 1);
    ck_assert_float_eq(dx2[0], 0.0f);
    ck_assert_float_eq(dx2[1], 11.0f);
    ck_assert_float_eq(dx2[2], 0.0f);
    /* global max: first of equal maxima, per channel */
    float gx[6] = {4, 1, 4, 2, 0, 2}, gy[2], gdy[2] = {1, 7}, gdx[6];
    be->global_pool_forward(CT_POOL_MAX, gx, gy, 1, 3, 2);
    ck_assert_float_eq(gy[0], 4.0f);
    ck_assert_float_eq(gy[1], 2.0f);
    be->global_pool_backward(CT_POOL_MAX, gx, gy, gdy, gdx, 1, 3, 2);
    float want[6] = {1, 0, 0, 7, 0, 0};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(gdx[i], want[i]);
}
END_TEST

/* ---- 3-D pooling -------------------------------------------------------------------- */

/* One axis of a reference 3-D pool: the first input index of output o's window (before
 * padding) and the output length, as Keras: valid floor((n - k) / s) + 1, same
 * ceil(n / s) with the padding split as evenly as can be, the extra after. */
static int64_t ref_axis(int64_t n, int64_t k, int64_t st, bool same, int64_t *pad)
{
    int64_t out = same ? (n + st - 1) / st : (n - k) / st + 1;
    int64_t total = (out - 1) * st + k - n;
    *pad = same && total > 0 ? total / 2 : 0;
    return out;
}

/* The max or the mean of each window over the input positions inside it, in double. */
static void ref_pool3d(bool is_max, const int64_t in[4], const int64_t k[3], const int64_t st[3],
                       bool same, const float *x, int64_t rows, double *y, int64_t out[3])
{
    int64_t pad[3];
    for (int a = 0; a < 3; a++)
        out[a] = ref_axis(in[a], k[a], st[a], same, &pad[a]);
    int64_t c = in[3], o = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t od = 0; od < out[0]; od++)
            for (int64_t oh = 0; oh < out[1]; oh++)
                for (int64_t ow = 0; ow < out[2]; ow++)
                    for (int64_t ch = 0; ch < c; ch++, o++) {
                        double acc = is_max ? -INFINITY : 0;
                        int64_t cnt = 0;
                        for (int64_t i = 0; i < k[0] * k[1] * k[2]; i++) {
                            int64_t d = od * st[0] - pad[0] + i / (k[1] * k[2]);
                            int64_t h = oh * st[1] - pad[1] + i / k[2] % k[1];
                            int64_t w = ow * st[2] - pad[2] + i % k[2];
                            if (d < 0 || d >= in[0] || h < 0 || h >= in[1] || w < 0 || w >= in[2])
                                continue;
                            double v = x[(((r * in[0] + d) * in[1] + h) * in[2] + w) * c + ch];
                            acc = is_max ? fmax(acc, v) : acc + v;
                            cnt++;
                        }
                        y[o] = is_max ? acc : acc / (double)cnt;
                    }
}

static void check_pool3d(const char *yaml, bool is_max, const int64_t k[3], const int64_t st[3],
                         bool same)
{
    lt t;
    int64_t in[4] = {5, 4, 6, 2}, rows = 2, out[3];
    lt_ok(&t, yaml, "p3", 4, in, rows);
    int64_t nin = rows * ct_shape_size(&t.l.in_shape), nout = rows * ct_shape_size(&t.l.out_shape);
    float *x = fvec(nin), *y = fvec(nout);
    double *want = dvec(nout);
    fill_distinct(x, nin, 5);
    ref_pool3d(is_max, in, k, st, same, x, rows, want, out);
    ck_assert_int_eq(t.l.out_shape.ndim, 4);
    for (int a = 0; a < 3; a++)
        ck_assert_int_eq(t.l.out_shape.dim[a], out[a]);
    ck_assert_int_eq(t.l.out_shape.dim[3], 2);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t i = 0; i < nout; i++)
        ck_assert_msg(fabs(y[i] - want[i]) <= 1e-6, "%s: y[%lld] = %.8g, want %.8g", yaml,
                      (long long)i, y[i], want[i]);
    gradcheck(&t, rows, &infer_pass);
    free(x), free(y), free(want);
    lt_free(&t);
}

START_TEST(test_pool3d)
{
    const int64_t two[3] = {2, 2, 2}, k[3] = {3, 2, 4}, st[3] = {2, 1, 3}, one[3] = {1, 1, 1};
    check_pool3d("{type: max_pooling3d}", true, two, two, false);
    check_pool3d("{type: average_pooling3d}", false, two, two, false);
    check_pool3d("{type: MaxPooling3D, pool_size: [3, 2, 4], strides: [2, 1, 3]}", true, k, st,
                 false);
    check_pool3d("{type: AveragePooling3D, pool_size: [3, 2, 4], strides: [2, 1, 3], "
                 "padding: same}", false, k, st, true);
    check_pool3d("{type: max_pooling3d, pool_size: [3, 2, 4], strides: [2, 1, 3], "
                 "padding: same}", true, k, st, true);
    check_pool3d("{type: average_pooling3d, pool_size: [3, 2, 4], strides: 1}", false, k, one,
                 false);
    int64_t in[4] = {2, 4, 6, 2}, in3[3] = {4, 6, 2};
    lt_fails("{type: max_pooling3d, pool_size: 3}", 4, in, "p3",
             "layer.yaml:1:1: layer 'p3' (MaxPooling3D): a 3x3x3 pool with padding 'valid' does not fit the "
             "input (None, 2, 4, 6, 2)");
    lt_fails("{type: average_pooling3d}", 3, in3, "p3",
             "layer.yaml:1:1: layer 'p3' (AveragePooling3D): expected input of rank 5 (batch, depth, height, "
             "width, channels), got (None, 4, 6, 2)");
    lt_fails("{type: max_pooling3d, pool_size: [2, 2]}", 4, in, "p3",
             "layer.yaml:1:34: layer 'p3' (MaxPooling3D): pool_size must be an integer or a "
             "list of 3 integers");
}
END_TEST

/* ---- global pooling ----------------------------------------------------------------- */

static void check_global(const char *yaml, bool is_max, int rank, bool keepdims)
{
    lt t;
    int64_t in3[4] = {2, 3, 2, 5}, in2[3] = {4, 3, 5}, in1[2] = {6, 5}, rows = 3, c = 5;
    lt_ok(&t, yaml, "gp", rank + 1, rank == 3 ? in3 : rank == 2 ? in2 : in1, rows);
    if (!keepdims)
        assert_shape(&t.l.out_shape, 1, c, 0, 0);
    else if (rank == 3)
        ck_assert(t.l.out_shape.ndim == 4 && t.l.out_shape.dim[0] == 1 &&
                  t.l.out_shape.dim[1] == 1 && t.l.out_shape.dim[2] == 1 &&
                  t.l.out_shape.dim[3] == c);
    else if (rank == 2)
        assert_shape(&t.l.out_shape, 3, 1, 1, c);
    else
        assert_shape(&t.l.out_shape, 2, 1, c, 0);
    int64_t spatial = rank >= 2 ? 12 : 6, nin = rows * spatial * c, nout = rows * c;
    float *x = fvec(nin), *y = fvec(nout);
    tu_fill(x, nin, 3, -1.0f, 1.0f);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t ch = 0; ch < c; ch++) {
            double acc = is_max ? -INFINITY : 0;
            for (int64_t p = 0; p < spatial; p++) {
                double v = x[(r * spatial + p) * c + ch];
                acc = is_max ? fmax(acc, v) : acc + v;
            }
            tu_assert_close(y[r * c + ch], is_max ? acc : acc / (double)spatial, 1e-6);
        }
    gradcheck(&t, rows, &infer_pass);
    free(x), free(y);
    lt_free(&t);
}

START_TEST(test_global_pools)
{
    check_global("{type: global_max_pooling2d}", true, 2, false);
    check_global("{type: GlobalMaxPooling2D, keepdims: true}", true, 2, true);
    check_global("{type: global_average_pooling2d}", false, 2, false);
    check_global("{type: GlobalAveragePooling2D, keepdims: true, data_format: channels_last}",
                 false, 2, true);
    check_global("{type: global_max_pooling1d}", true, 1, false);
    check_global("{type: global_max_pooling1d, keepdims: true}", true, 1, true);
    check_global("{type: global_average_pooling1d}", false, 1, false);
    check_global("{type: GlobalAveragePooling1D, keepdims: true}", false, 1, true);
    check_global("{type: global_max_pooling3d}", true, 3, false);
    check_global("{type: GlobalMaxPooling3D, keepdims: true}", true, 3, true);
    check_global("{type: global_average_pooling3d}", false, 3, false);
    check_global("{type: GlobalAveragePooling3D, keepdims: true}", false, 3, true);
    int64_t in[3] = {4, 3, 5};
    lt_fails("{type: global_max_pooling3d}", 3, in, "gp",
             "layer.yaml:1:1: layer 'gp' (GlobalMaxPooling3D): expected input of rank 5 (batch, depth, "
             "height, width, channels), got (None, 4, 3, 5)");
}
END_TEST

/* ---- global average pooling over a masked sequence ------------------------------------- */

/* Four samples of 6 steps: trailing padding, interleaved padding, padding only, no
 * padding. */
static const float pool_mask[24] = {1, 1, 1, 1, 0, 0,
                                    0, 1, 0, 0, 1, 1,
                                    0, 0, 0, 0, 0, 0,
                                    1, 1, 1, 1, 1, 1};

/* y = sum_t m_t x_t / sum_t m_t per sample and channel, in double, zeros for a sample of
 * padding only; and backward: dx_t = m_t dy / sum_t m_t, all zeros for that sample. */
static void check_masked_mean(const char *yaml)
{
    lt t;
    int64_t in[2] = {6, 5}, rows = 4, T = 6, c = 5, nin = rows * T * c, nout = rows * c;
    lt_ok(&t, yaml, "gap", 2, in, rows);
    float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin);
    tu_fill(x, nin, 13, -1.0f, 1.0f);
    tu_fill(dy, nout, 14, -1.0f, 1.0f);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    tx.mask = (float *)pool_mask;
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t i = 0; i < nin; i++)
        dx[i] = 12345.0f; /* backward must overwrite */
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    for (int64_t r = 0; r < rows; r++) {
        double count = 0;
        for (int64_t s = 0; s < T; s++)
            count += pool_mask[r * T + s];
        for (int64_t ch = 0; ch < c; ch++) {
            double acc = 0;
            for (int64_t s = 0; s < T; s++)
                acc += pool_mask[r * T + s] * x[(r * T + s) * c + ch];
            tu_assert_close(y[r * c + ch], count > 0 ? acc / count : 0.0, 1e-6);
            for (int64_t s = 0; s < T; s++) {
                double want = count > 0 ? pool_mask[r * T + s] * dy[r * c + ch] / count : 0.0;
                tu_assert_close(dx[(r * T + s) * c + ch], want, 1e-6);
            }
        }
    }
    /* the sample of padding only: exactly zero, and no gradient to any of its steps */
    for (int64_t ch = 0; ch < c; ch++)
        ck_assert_float_eq(y[2 * c + ch], 0.0f);
    for (int64_t i = 2 * T * c; i < 3 * T * c; i++)
        ck_assert_float_eq(dx[i], 0.0f);
    free(x), free(y), free(dy), free(dx);
    lt_free(&t);
}

START_TEST(test_global_average_masked)
{
    check_masked_mean("{type: global_average_pooling1d}");
    check_masked_mean("{type: global_average_pooling1d, keepdims: true}");
}
END_TEST

/* The masked mean's dx against central differences; the layer uses the mask, so its
 * output carries none. */
START_TEST(test_global_average_masked_gradients)
{
    lt t;
    int64_t in[2] = {6, 3};
    lt_ok(&t, "{type: global_average_pooling1d}", "gap", 2, in, 5);
    bool masked = true;
    ck_assert_int_eq(t.l.kind->mask_out(&t.l, &masked), CT_MASK_NONE);
    lt_gradcheck_masked(&t, 4, &infer_pass, pool_mask, 1e-3, 1e-2);
    lt_free(&t);
}
END_TEST

/* Without a mask it stays the plain mean over every step, padding values included. */
START_TEST(test_global_average_unmasked_counts_all)
{
    lt t;
    int64_t in[2] = {6, 2}, rows = 2;
    lt_ok(&t, "{type: global_average_pooling1d}", "gap", 2, in, rows);
    float x[24], y[4], ym[4];
    tu_fill(x, 24, 15, -1.0f, 1.0f);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    tx.mask = (float *)pool_mask;
    ty.data = ym;
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int ch = 0; ch < 2; ch++) {
        double all = 0, kept = 0;
        for (int s = 0; s < 6; s++) {
            all += x[s * 2 + ch];
            kept += s < 4 ? x[s * 2 + ch] : 0.0;
        }
        tu_assert_close(y[ch], all / 6, 1e-6);
        tu_assert_close(ym[ch], kept / 4, 1e-6);
    }
    lt_free(&t);
}
END_TEST

/* More channels than one block of the global max backward, against the reference. */
START_TEST(test_global_max_wide)
{
    const ct_backend *be = ct_backend_cpu();
    int64_t rows = 2, spatial = 5, c = 600, nin = rows * spatial * c;
    float *x = fvec(nin), *y = fvec(rows * c), *dy = fvec(rows * c), *dx = fvec(nin);
    fill_distinct(x, nin, 5);
    tu_fill(dy, rows * c, 4, -1.0f, 1.0f);
    be->global_pool_forward(CT_POOL_MAX, x, y, rows, spatial, c);
    be->global_pool_backward(CT_POOL_MAX, x, y, dy, dx, rows, spatial, c);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t arg = 0;
            for (int64_t p = 1; p < spatial; p++)
                if (x[(r * spatial + p) * c + ch] > x[(r * spatial + arg) * c + ch])
                    arg = p;
            ck_assert_float_eq(y[r * c + ch], x[(r * spatial + arg) * c + ch]);
            for (int64_t p = 0; p < spatial; p++)
                ck_assert_float_eq(dx[(r * spatial + p) * c + ch], p == arg ? dy[r * c + ch] : 0);
        }
    free(x), free(y), free(dy), free(dx);
}
END_TEST

/* ---- padding, cropping, upsampling -------------------------------------------------- */

static double dot(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

START_TEST(test_pad_crop_by_hand)
{
    const ct_backend *be = ct_backend_cpu();
    float x[4] = {1, 2, 3, 4}, y[12], back[4];
    be->pad2d(x, y, 1, 2, 2, 1, 1, 0, 0, 2, false);
    float want[12] = {0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0};
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(y[i], want[i]);
    be->pad2d(y, back, 1, 2, 2, 1, 1, 0, 0, 2, true);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(back[i], x[i]);

    float u[4] = {1, 2, 3, 4}, big[16], sum[4];
    be->upsample2d(u, big, 1, 1, 2, 2, 2, 2, false); /* 1x2x2 -> 2x4x2 */
    float uwant[16] = {1, 2, 1, 2, 3, 4, 3, 4, 1, 2, 1, 2, 3, 4, 3, 4};
    for (int i = 0; i < 16; i++)
        ck_assert_float_eq(big[i], uwant[i]);
    be->upsample2d(big, sum, 1, 1, 2, 2, 2, 2, true);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(sum[i], 4 * u[i]);
}
END_TEST

/* pad/crop and upsample/sum are adjoint pairs, and crop(pad(x)) = x, for several rows. */
START_TEST(test_reshape_ops_adjoint)
{
    const ct_backend *be = ct_backend_cpu();
    int64_t rows = 3, h = 4, w = 3, c = 5, t = 2, b = 1, l = 0, r = 3;
    int64_t small = rows * h * w * c, big = rows * (h + t + b) * (w + l + r) * c;
    float *x = fvec(small), *z = fvec(big), *px = fvec(big), *cz = fvec(small), *rt = fvec(small);
    tu_fill(x, small, 1, -1, 1);
    tu_fill(z, big, 2, -1, 1);
    for (int64_t i = 0; i < big; i++)
        px[i] = NAN; /* pad2d must write every output value */
    be->pad2d(x, px, rows, h, w, c, t, b, l, r, false);
    be->pad2d(z, cz, rows, h, w, c, t, b, l, r, true);
    be->pad2d(px, rt, rows, h, w, c, t, b, l, r, true);
    tu_assert_close(dot(px, z, big), dot(x, cz, small), 1e-6);
    for (int64_t i = 0; i < small; i++)
        ck_assert_float_eq(rt[i], x[i]);
    free(z), free(px), free(cz), free(rt);

    int64_t sh = 3, sw = 2, up = small * sh * sw;
    float *ux = fvec(up), *uz = fvec(up), *sz = fvec(small);
    tu_fill(uz, up, 3, -1, 1);
    be->upsample2d(x, ux, rows, h, w, c, sh, sw, false);
    be->upsample2d(uz, sz, rows, h, w, c, sh, sw, true);
    tu_assert_close(dot(ux, uz, up), dot(x, sz, small), 1e-6);
    free(x), free(ux), free(uz), free(sz);
}
END_TEST

/* Layer forward against an index-mapping reference: out(i, j) = in(map_i, map_j) or 0. */
static void check_reshape_layer(const char *yaml, int rank, const int64_t *in_dims,
                                int64_t oh, int64_t ow, int64_t top, int64_t left, int64_t sh,
                                int64_t sw)
{
    lt t;
    int64_t rows = 2, c = in_dims[rank];
    int64_t ih = rank == 2 ? in_dims[0] : 1, iw = in_dims[rank - 1];
    lt_ok(&t, yaml, "rs", rank + 1, in_dims, rows);
    if (rank == 2)
        assert_shape(&t.l.out_shape, 3, oh, ow, c);
    else
        assert_shape(&t.l.out_shape, 2, ow, c, 0);
    int64_t nin = rows * ih * iw * c, nout = rows * oh * ow * c;
    float *x = fvec(nin), *y = fvec(nout);
    tu_fill(x, nin, 8, -1, 1);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++)
                for (int64_t ch = 0; ch < c; ch++) {
                    /* (i - top) / sh with floor: top is 0 when sh > 1 */
                    int64_t si = i - top, sj = j - left;
                    si = si < 0 ? -1 : si / sh, sj = sj < 0 ? -1 : sj / sw;
                    bool in = si >= 0 && si < ih && sj >= 0 && sj < iw;
                    float want = in ? x[((r * ih + si) * iw + sj) * c + ch] : 0.0f;
                    ck_assert_float_eq(y[((r * oh + i) * ow + j) * c + ch], want);
                }
    gradcheck(&t, rows, &infer_pass);
    free(x), free(y);
    lt_free(&t);
}

START_TEST(test_padding_layers)
{
    int64_t in2[3] = {3, 4, 2}, in1[2] = {5, 3};
    check_reshape_layer("{type: zero_padding2d}", 2, in2, 5, 6, 1, 1, 1, 1);
    check_reshape_layer("{type: ZeroPadding2D, padding: [2, 0]}", 2, in2, 7, 4, 2, 0, 1, 1);
    check_reshape_layer("{type: zero_padding2d, padding: [[1, 2], [0, 3]]}", 2, in2, 6, 7, 1,
                        0, 1, 1);
    check_reshape_layer("{type: zero_padding1d}", 1, in1, 1, 7, 0, 1, 1, 1);
    check_reshape_layer("{type: ZeroPadding1D, padding: [0, 2]}", 1, in1, 1, 7, 0, 0, 1, 1);
    /* cropping: negative offsets read the interior */
    check_reshape_layer("{type: cropping2d}", 2, in2, 3, 4, 0, 0, 1, 1);
    check_reshape_layer("{type: Cropping2D, cropping: 1}", 2, in2, 1, 2, -1, -1, 1, 1);
    check_reshape_layer("{type: cropping2d, cropping: [1, 0]}", 2, in2, 1, 4, -1, 0, 1, 1);
    check_reshape_layer("{type: cropping2d, cropping: [[0, 2], [1, 2]]}", 2, in2, 1, 1, 0, -1, 1,
                        1);
    check_reshape_layer("{type: cropping1d}", 1, in1, 1, 3, 0, -1, 1, 1);
    check_reshape_layer("{type: Cropping1D, cropping: [2, 0]}", 1, in1, 1, 3, 0, -2, 1, 1);
    check_reshape_layer("{type: up_sampling2d}", 2, in2, 6, 8, 0, 0, 2, 2);
    check_reshape_layer("{type: UpSampling2D, size: [3, 1], interpolation: nearest}", 2, in2, 9,
                        4, 0, 0, 3, 1);
    check_reshape_layer("{type: up_sampling1d}", 1, in1, 1, 10, 0, 0, 1, 2);
    check_reshape_layer("{type: UpSampling1D, size: 3}", 1, in1, 1, 15, 0, 0, 1, 3);
}
END_TEST

/* Defaults are written back so the emitted config shows them. */
START_TEST(test_defaults_written)
{
    lt t;
    int64_t in2[3] = {6, 6, 1}, in1[2] = {6, 2};
    lt_ok(&t, "{type: max_pooling2d, pool_size: [3, 2]}", "p", 3, in2, 1);
    ct_node *s = ct_map_get(t.root, "strides");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->type, CT_NODE_SEQ);
    ck_assert_int_eq((int)s->len, 2);
    ck_assert_str_eq(s->items[0]->scalar, "3");
    ck_assert_str_eq(s->items[1]->scalar, "2");
    ck_assert_str_eq(ct_map_get(t.root, "padding")->scalar, "valid");
    ck_assert_str_eq(ct_map_get(t.root, "data_format")->scalar, "channels_last");
    lt_free(&t);
    lt_ok(&t, "{type: average_pooling1d, strides: null}", "p", 2, in1, 1);
    ck_assert_str_eq(ct_map_get(t.root, "pool_size")->scalar, "2");
    ck_assert_str_eq(ct_map_get(t.root, "strides")->scalar, "2");
    lt_free(&t);
    lt_ok(&t, "{type: global_average_pooling2d}", "p", 3, in2, 1);
    ck_assert_str_eq(ct_map_get(t.root, "keepdims")->scalar, "false");
    lt_free(&t);
    lt_ok(&t, "{type: cropping1d}", "c", 2, in1, 1);
    ck_assert_int_eq((int)ct_map_get(t.root, "cropping")->len, 2);
    lt_free(&t);
    lt_ok(&t, "{type: up_sampling2d}", "u", 3, in2, 1);
    ck_assert_int_eq((int)ct_map_get(t.root, "size")->len, 2);
    ck_assert_str_eq(ct_map_get(t.root, "interpolation")->scalar, "nearest");
    lt_free(&t);
}
END_TEST

/* ---- spatial dropout ---------------------------------------------------------------- */

static void run_forward(lt *t, const ct_pass *pass, float *x, float *y, int64_t rows)
{
    ct_tensor tx = tensor(x, rows, t->l.in_shape), ty = tensor(y, rows, t->l.out_shape);
    lt_forward(&t->l, pass, &tx, &ty);
}

static void check_spatial_dropout(const char *yaml, int ndim, const int64_t *dims,
                                  int64_t spatial, int64_t c)
{
    lt t;
    int64_t rows = 40, n = rows * spatial * c;
    lt_ok(&t, yaml, "sd", ndim, dims, rows);
    ck_assert(ct_shape_equal(&t.l.out_shape, &t.l.in_shape));
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, rows), rows * c);
    float *x = fvec(n), *y = fvec(n), *y2 = fvec(n);
    tu_fill(x, n, 4, 0.5f, 1.5f); /* no zeros, so a dropped value is recognisable */
    run_forward(&t, &train_pass, x, y, rows);
    /* whole channels: every position of (sample, channel) is dropped or kept together,
     * kept ones scaled by 1/(1 - 0.25); the draw is exactly the documented stream */
    uint64_t key = ct_rng_key(train_pass.seed, CT_RNG_DROPOUT, 3, (uint64_t)train_pass.step);
    int64_t kept = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t ch = 0; ch < c; ch++) {
            bool keep = ct_rng_uniform(key, (uint64_t)(r * c + ch)) >= 0.25f;
            kept += keep;
            for (int64_t p = 0; p < spatial; p++) {
                int64_t i = (r * spatial + p) * c + ch;
                tu_assert_close(y[i], keep ? x[i] / 0.75 : 0.0, 1e-6);
            }
        }
    ck_assert_int_gt(kept, rows * c / 2);
    ck_assert_int_lt(kept, rows * c);
    /* deterministic by (seed, step, layer) */
    run_forward(&t, &train_pass, x, y2, rows);
    ck_assert_int_eq(memcmp(y, y2, (size_t)n * sizeof(float)), 0);
    ct_pass next = train_pass;
    next.step++;
    run_forward(&t, &next, x, y2, rows);
    ck_assert_int_ne(memcmp(y, y2, (size_t)n * sizeof(float)), 0);
    t.l.index = 4;
    run_forward(&t, &train_pass, x, y2, rows);
    ck_assert_int_ne(memcmp(y, y2, (size_t)n * sizeof(float)), 0);
    t.l.index = 3;
    /* backward uses the same mask; inference is the identity both ways */
    gradcheck(&t, 3, &train_pass);
    run_forward(&t, &infer_pass, x, y2, rows);
    ck_assert_int_eq(memcmp(x, y2, (size_t)n * sizeof(float)), 0);
    gradcheck(&t, 3, &infer_pass);
    free(x), free(y), free(y2);
    lt_free(&t);
}

START_TEST(test_spatial_dropout)
{
    int64_t in2[3] = {3, 4, 6}, in1[2] = {5, 7};
    check_spatial_dropout("{type: spatial_dropout2d, rate: 0.25}", 3, in2, 12, 6);
    check_spatial_dropout("{type: SpatialDropout1D, rate: 0.25}", 2, in1, 5, 7);
    /* rate 0: no scratch, identity in training too */
    lt t;
    lt_ok(&t, "{type: spatial_dropout2d, rate: 0}", "sd", 3, in2, 4);
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 4), 0);
    float x[72], y[72];
    tu_fill(x, 72, 1, -1, 1);
    run_forward(&t, &train_pass, x, y, 1);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
    lt_free(&t);
}
END_TEST

/* ---- gaussian noise ----------------------------------------------------------------- */

START_TEST(test_gaussian_noise)
{
    lt t;
    int64_t in[2] = {50, 40}, rows = 20, n = rows * 2000;
    lt_ok(&t, "{type: gaussian_noise, stddev: 0.5}", "gn", 2, in, rows);
    ck_assert(ct_shape_equal(&t.l.out_shape, &t.l.in_shape));
    float *x = fvec(n), *y = fvec(n);
    tu_fill(x, n, 2, -1, 1);
    run_forward(&t, &train_pass, x, y, rows);
    uint64_t key = ct_rng_key(train_pass.seed, CT_RNG_NOISE, 3, (uint64_t)train_pass.step);
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)x[i];
        s1 += d, s2 += d * d;
        tu_assert_close(y[i], x[i] + 0.5f * ct_rng_normal(key, (uint64_t)i), 1e-6);
    }
    double mean = s1 / (double)n, sd = sqrt(s2 / (double)n - mean * mean);
    ck_assert_msg(fabs(mean) < 0.01, "mean %g", mean);
    ck_assert_msg(fabs(sd - 0.5) < 0.01, "stddev %g", sd);
    /* another step draws other noise; inference is the identity */
    ct_pass next = train_pass;
    next.step++;
    float *y2 = fvec(n);
    run_forward(&t, &next, x, y2, rows);
    ck_assert_int_ne(memcmp(y, y2, (size_t)n * sizeof(float)), 0);
    run_forward(&t, &infer_pass, x, y2, rows);
    ck_assert_int_eq(memcmp(x, y2, (size_t)n * sizeof(float)), 0);
    free(x), free(y), free(y2);
    lt_free(&t);
    /* dx = dy in training and inference */
    int64_t small[3] = {2, 3, 2};
    lt_ok(&t, "{type: GaussianNoise, stddev: 0.3}", "gn", 3, small, 2);
    gradcheck(&t, 2, &train_pass);
    gradcheck(&t, 2, &infer_pass);
    lt_free(&t);
}
END_TEST

/* ---- kinds, shapes, errors ---------------------------------------------------------- */

START_TEST(test_kind_names)
{
    static const char *const names[][2] = {
        {"max_pooling1d", "MaxPooling1D"},
        {"max_pooling2d", "MaxPooling2D"},
        {"average_pooling1d", "AveragePooling1D"},
        {"average_pooling2d", "AveragePooling2D"},
        {"global_max_pooling1d", "GlobalMaxPooling1D"},
        {"global_max_pooling2d", "GlobalMaxPooling2D"},
        {"global_average_pooling1d", "GlobalAveragePooling1D"},
        {"global_average_pooling2d", "GlobalAveragePooling2D"},
        {"zero_padding1d", "ZeroPadding1D"},
        {"zero_padding2d", "ZeroPadding2D"},
        {"cropping1d", "Cropping1D"},
        {"cropping2d", "Cropping2D"},
        {"up_sampling1d", "UpSampling1D"},
        {"up_sampling2d", "UpSampling2D"},
        {"spatial_dropout1d", "SpatialDropout1D"},
        {"spatial_dropout2d", "SpatialDropout2D"},
        {"gaussian_noise", "GaussianNoise"},
        {"global_max_pooling3d", "GlobalMaxPooling3D"},
        {"global_average_pooling3d", "GlobalAveragePooling3D"},
        {"max_pooling3d", "MaxPooling3D"},
        {"average_pooling3d", "AveragePooling3D"},
    };
    int n = (int)(sizeof names / sizeof names[0]);
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(kinds[i]);
        ck_assert_str_eq(kinds[i]->name, names[i][0]);
        ck_assert_str_eq(kinds[i]->class_name, names[i][1]);
        ck_assert(!kinds[i]->is_view && kinds[i]->forward && kinds[i]->backward);
    }
    ck_assert_ptr_null(kinds[n]);
}
END_TEST

START_TEST(test_output_shapes)
{
    lt t;
    int64_t mnist[3] = {28, 28, 1}, odd[3] = {7, 5, 3}, seq[2] = {10, 4};
    lt_ok(&t, "{type: max_pooling2d}", "p", 3, mnist, 1);
    assert_shape(&t.l.out_shape, 3, 14, 14, 1);
    lt_free(&t);
    lt_ok(&t, "{type: max_pooling2d, pool_size: 3}", "p", 3, mnist, 1);
    assert_shape(&t.l.out_shape, 3, 9, 9, 1);
    lt_free(&t);
    lt_ok(&t, "{type: average_pooling2d, pool_size: 3, strides: 1, padding: same}", "p", 3, odd,
          1);
    assert_shape(&t.l.out_shape, 3, 7, 5, 3);
    lt_free(&t);
    lt_ok(&t, "{type: max_pooling2d, pool_size: [7, 5], padding: same}", "p", 3, odd, 1);
    assert_shape(&t.l.out_shape, 3, 1, 1, 3);
    lt_free(&t);
    lt_ok(&t, "{type: max_pooling1d, pool_size: 4, strides: 3}", "p", 2, seq, 1);
    assert_shape(&t.l.out_shape, 2, 3, 4, 0);
    lt_free(&t);
    lt_ok(&t, "{type: max_pooling1d, pool_size: 4, strides: 3, padding: same}", "p", 2, seq, 1);
    assert_shape(&t.l.out_shape, 2, 4, 4, 0);
    lt_free(&t);
    lt_ok(&t, "{type: zero_padding2d, padding: [[0, 1], [2, 3]]}", "z", 3, odd, 1);
    assert_shape(&t.l.out_shape, 3, 8, 10, 3);
    lt_free(&t);
    lt_ok(&t, "{type: cropping2d, cropping: [[3, 3], [2, 2]]}", "c", 3, odd, 1);
    assert_shape(&t.l.out_shape, 3, 1, 1, 3);
    lt_free(&t);
    lt_ok(&t, "{type: up_sampling2d, size: 3}", "u", 3, odd, 1);
    assert_shape(&t.l.out_shape, 3, 21, 15, 3);
    lt_free(&t);
    lt_ok(&t, "{type: cropping1d, cropping: 4}", "c", 2, seq, 1);
    assert_shape(&t.l.out_shape, 2, 2, 4, 0);
    lt_free(&t);
}
END_TEST

START_TEST(test_config_errors)
{
    int64_t small[3] = {2, 2, 1}, img[3] = {8, 8, 3}, seq[2] = {2, 4}, flat[1] = {4};
    lt_fails("{type: max_pooling2d, pool_size: 3}", 3, small, "max_pooling2d",
             "layer.yaml:1:1: layer 'max_pooling2d' (MaxPooling2D): a 3x3 pool with padding "
             "'valid' does not fit the input (None, 2, 2, 1)");
    lt_fails("type: average_pooling1d\npool_size: 3\n", 2, seq, "ap",
             "layer.yaml:1:1: layer 'ap' (AveragePooling1D): a pool of size 3 with padding "
             "'valid' does not fit the input (None, 2, 4)");
    lt_fails("{type: max_pooling2d}", 1, flat, "mp",
             "layer.yaml:1:1: layer 'mp' (MaxPooling2D): expected input of rank 4 (batch, "
             "height, width, channels), got (None, 4)");
    lt_fails("{type: global_average_pooling1d}", 3, img, "g",
             "layer.yaml:1:1: layer 'g' (GlobalAveragePooling1D): expected input of rank 3 "
             "(batch, steps, channels), got (None, 8, 8, 3)");
    lt_fails("type: max_pooling2d\npool_size: [2, 2, 2]\n", 3, img, "mp",
             "layer.yaml:2:12: layer 'mp' (MaxPooling2D): pool_size must be an integer or a "
             "list of 2 integers");
    lt_fails("type: max_pooling2d\nstrides: [2, 0]\n", 3, img, "mp",
             "layer.yaml:2:14: layer 'mp' (MaxPooling2D): strides values must be between 1 "
             "and 2147483647, got 0");
    lt_fails("type: max_pooling2d\npadding: full\n", 3, img, "mp",
             "layer.yaml:2:10: unknown value 'full' for 'padding'; choices: valid, same");
    lt_fails("type: max_pooling2d\ndata_format: channels_first\n", 3, img, "mp",
             "layer.yaml:2:14: layer 'mp' (MaxPooling2D): data_format 'channels_first' is not "
             "supported; only channels_last is");
    lt_fails("type: up_sampling2d\ninterpolation: bilinear\n", 3, img, "up_sampling2d",
             "layer.yaml:2:16: layer 'up_sampling2d' (UpSampling2D): interpolation 'bilinear' "
             "is not supported; only 'nearest' is supported");
    lt_fails("type: cropping2d\ncropping: [[1, 1], [4, 4]]\n", 3, img, "cropping2d",
             "layer.yaml:1:1: layer 'cropping2d' (Cropping2D): cropping ((1, 1), (4, 4)) leaves "
             "nothing of the input (None, 8, 8, 3)");
    lt_fails("{type: cropping1d, cropping: [1, 1]}", 2, seq, "c",
             "layer.yaml:1:1: layer 'c' (Cropping1D): cropping (1, 1) leaves nothing of the "
             "input (None, 2, 4)");
    lt_fails("type: zero_padding2d\npadding: [1, 2, 3]\n", 3, img, "zp",
             "layer.yaml:2:10: layer 'zp' (ZeroPadding2D): padding must be an integer, a list "
             "of 2 integers [height, width] or a list of 2 pairs [[top, bottom], [left, "
             "right]]");
    lt_fails("type: zero_padding2d\npadding: [[1, 2], [3]]\n", 3, img, "zp",
             "layer.yaml:2:10: layer 'zp' (ZeroPadding2D): padding must be an integer, a list "
             "of 2 integers [height, width] or a list of 2 pairs [[top, bottom], [left, "
             "right]]");
    lt_fails("type: zero_padding1d\npadding: [[1, 2], [3, 4]]\n", 2, seq, "zp",
             "layer.yaml:2:10: layer 'zp' (ZeroPadding1D): padding must be an integer or a "
             "list of 2 integers [left, right]");
    lt_fails("type: zero_padding2d\npadding: [[1, -2], [3, 4]]\n", 3, img, "zp",
             "layer.yaml:2:15: layer 'zp' (ZeroPadding2D): padding values must be between 0 "
             "and 2147483647, got -2");
    lt_fails("type: up_sampling1d\nsize: [2, 2]\n", 2, seq, "u",
             "layer.yaml:2:7: layer 'u' (UpSampling1D): size must be an integer or a list of 1 "
             "integer");
    /* sizes that overflow 64 bits are refused at build, not wrapped */
    int64_t long_seq[2] = {INT64_C(1) << 40, 1};
    lt_fails("type: up_sampling1d\nsize: 2147483647\n", 2, long_seq, "u",
             "layer.yaml:1:1: layer 'u' (UpSampling1D): the upsampled size does not fit in "
             "64-bit sizes");
    lt_fails("{type: spatial_dropout2d}", 3, img, "sd",
             "layer.yaml:1:1: layer 'sd' (SpatialDropout2D) needs the key 'rate'");
    lt_fails("type: spatial_dropout1d\nrate: 1\n", 2, seq, "sd",
             "layer.yaml:2:7: layer 'sd' (SpatialDropout1D): rate must be at least 0 and below "
             "1, got 1");
    lt_fails("{type: spatial_dropout2d, rate: 0.1}", 2, seq, "sd",
             "layer.yaml:1:1: layer 'sd' (SpatialDropout2D): expected input of rank 4 (batch, "
             "height, width, channels), got (None, 2, 4)");
    lt_fails("type: spatial_dropout2d\nrate: 0.1\nseed: 3\n", 3, img, "sd",
             "layer.yaml:3:1: layer 'sd' (SpatialDropout2D): 'seed' is not accepted; random "
             "draws follow the experiment's seed");
    lt_fails("type: gaussian_noise\nstddev: -1\n", 3, img, "gn",
             "layer.yaml:2:9: layer 'gn' (GaussianNoise): stddev must be a finite number of at "
             "least 0, got -1");
    lt_fails("{type: gaussian_noise}", 3, img, "gn",
             "layer.yaml:1:1: layer 'gn' (GaussianNoise) needs the key 'stddev'");
    lt_fails("type: gaussian_noise\nstddev: 0.1\nseed: 1\n", 3, img, "gn",
             "layer.yaml:3:1: layer 'gn' (GaussianNoise): 'seed' is not accepted; random draws "
             "follow the experiment's seed");
    lt_fails("type: max_pooling2d\npool_sise: 2\n", 3, img, "mp",
             "layer.yaml:2:1: unknown key 'pool_sise' in layer 'mp' (MaxPooling2D) (did you "
             "mean 'pool_size'?); known keys: pool_size, strides, padding, data_format, type, "
             "name, inputs, trainable");
}
END_TEST

/* ---- main --------------------------------------------------------------------------- */

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pool2d_reference);
    tcase_add_test(tc, test_pool1d_reference);
    tcase_add_test(tc, test_avg_pool_same_by_hand);
    tcase_add_test(tc, test_max_pool_ties);
    tcase_add_test(tc, test_global_pools);
    tcase_add_test(tc, test_pool3d);
    tcase_add_test(tc, test_global_max_wide);
    tcase_add_test(tc, test_global_average_masked);
    tcase_add_test(tc, test_global_average_masked_gradients);
    tcase_add_test(tc, test_global_average_unmasked_counts_all);
    tcase_add_test(tc, test_pad_crop_by_hand);
    tcase_add_test(tc, test_reshape_ops_adjoint);
    tcase_add_test(tc, test_padding_layers);
    tcase_add_test(tc, test_defaults_written);
    tcase_add_test(tc, test_spatial_dropout);
    tcase_add_test(tc, test_gaussian_noise);
    tcase_add_test(tc, test_kind_names);
    tcase_add_test(tc, test_output_shapes);
    tcase_add_test(tc, test_config_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pool_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
