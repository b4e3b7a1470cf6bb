/* test_conv.c - the convolution ops (im2col/col2im, depthwise) and layers (Conv1D,
 * Conv2D, Conv3D, Conv1DTranspose, Conv2DTranspose, DepthwiseConv1D/2D,
 * SeparableConv1D/2D): values against direct
 * loops in double, output shapes, finite-difference gradients, config errors. */
#include <time.h>

#include "backend_cpu_direct.h"
#include "layertest.h"
#include "parallel.h"

extern const ct_layer_kind ct_layer_conv1d, ct_layer_conv2d, ct_layer_conv2d_transpose,
    ct_layer_depthwise_conv2d, ct_layer_separable_conv2d;
extern const ct_layer_kind ct_layer_conv1d_transpose, ct_layer_depthwise_conv1d,
    ct_layer_separable_conv1d, ct_layer_conv3d;

static const ct_layer_kind *const conv_kinds[] = {
    &ct_layer_conv1d, &ct_layer_conv2d, &ct_layer_conv2d_transpose,
    &ct_layer_depthwise_conv2d, &ct_layer_separable_conv2d,
    &ct_layer_conv1d_transpose, &ct_layer_depthwise_conv1d, &ct_layer_separable_conv1d,
    &ct_layer_conv3d, NULL,
};

static const ct_layer_kind *kind_find(const char *name)
{
    for (int i = 0; conv_kinds[i]; i++)
        if (!strcmp(name, conv_kinds[i]->name) || !strcmp(name, conv_kinds[i]->class_name))
            return conv_kinds[i];
    return NULL;
}

/* ---- harness ---------------------------------------------------------------------- */

/* The convolution algorithm the next layer set up asks for. */
static ct_conv_algo lt_algo = CT_CONV_AUTO;

static void lt_bind(ct_layer *l, const char *type)
{
    l->kind = kind_find(type);
    l->conv_algo = lt_algo;
}

static void lt_fill(ct_param *p, int i, int64_t n) { lt_fill_uniform(p, i, n); }

static void conv_ok(lt *t, const char *yaml, int ndim, const int64_t *dims, int64_t max_batch)
{
    lt_ok(t, yaml, "conv", ndim, dims, max_batch);
}

static const ct_pass infer_pass = {.training = false, .seed = 1, .step = 0};

static void check_shape(const ct_shape *s, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t want[4] = {a, b, c, d};
    ck_assert_int_eq(s->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(s->dim[i] == want[i], "dim %d is %lld, want %lld", i,
                      (long long)s->dim[i], (long long)want[i]);
}

/* ---- finite differences (L = sum r * y) ------------------------------------------- */

typedef struct gc {
    lt *t;
    ct_tensor x, y;
    const float *r;
    double h, rtol, atol;
} gc;

static double gc_loss(gc *g)
{
    lt_forward(&g->t->l, &infer_pass, &g->x, &g->y);
    double s = 0;
    for (int64_t i = 0; i < ct_tensor_size(&g->y); i++)
        s += (double)g->r[i] * (double)g->y.data[i];
    return s;
}

static void gc_compare(gc *g, const char *what, int64_t i, const float *ana, float *v)
{
    float old = *v, up = (float)(old + g->h), down = (float)(old - g->h);
    *v = up;
    double lp = gc_loss(g);
    *v = down;
    double lm = gc_loss(g);
    *v = old;
    double num = (lp - lm) / ((double)up - (double)down);
    double diff = fabs(num - ana[i]);
    ck_assert_msg(diff <= g->atol + g->rtol * fmax(fabs(num), fabs(ana[i])),
                  "%s: d%s[%lld]: analytic %.7g, numeric %.7g", g->t->l.kind->name, what,
                  (long long)i, ana[i], num);
}

/* The step of the central differences. */
static double gradcheck_h = 1e-3;

/* Checks dx and every parameter gradient against central differences. */
static void gradcheck(lt *t, int64_t rows)
{
    ct_layer *l = &t->l;
    int64_t nin = rows * ct_shape_size(&l->in_shape), nout = rows * ct_shape_size(&l->out_shape);
    float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin), *r = fvec(nout);
    tu_fill(x, nin, 7, -1.0f, 1.0f);
    tu_fill(r, nout, 9, -1.0f, 1.0f);
    gc g = {.t = t, .x = tensor(x, rows, l->in_shape), .y = tensor(y, rows, l->out_shape),
            .r = r, .h = gradcheck_h, .rtol = 2e-2, .atol = 2e-3};
    ct_tensor tdy = tensor(dy, rows, l->out_shape), tdx = tensor(dx, rows, l->in_shape);
    for (int p = 0; p < l->nparams; p++)  /* gradients are written, not accumulated */
        for (int64_t i = 0; i < ct_shape_size(&l->params[p].shape); i++)
            l->params[p].grad[i] = 1e6f;
    for (int64_t i = 0; i < nin; i++)
        dx[i] = 1e6f;
    lt_forward(l, &infer_pass, &g.x, &g.y);
    memcpy(dy, r, (size_t)nout * sizeof(float));
    lt_backward(l, &infer_pass, &g.x, &g.y, &tdy, &tdx);
    for (int64_t i = 0; i < nin; i++)
        gc_compare(&g, "x", i, dx, &x[i]);
    for (int p = 0; p < l->nparams; p++) {
        ct_param *pa = &l->params[p];
        int64_t n = ct_shape_size(&pa->shape);
        float *ana = fvec(n);
        memcpy(ana, pa->grad, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            gc_compare(&g, pa->name, i, ana, &pa->value[i]);
        free(ana);
    }
    free(x), free(y), free(dy), free(dx), free(r);
}

/* ---- direct references in double ---------------------------------------------------- */

/* The geometry of a reference convolution, written out by each test. */
typedef struct geo {
    int64_t h, w, c;        /* input sample */
    int64_t kh, kw, f;      /* kernel and output channels */
    int64_t sh, sw, dh, dw; /* strides, dilations */
    int64_t pt, pl;         /* padding before */
    int64_t oh, ow;         /* output grid */
    int64_t groups, mult;
} geo;

static int64_t xidx(const geo *g, int64_t r, int64_t i, int64_t j, int64_t c)
{
    return ((r * g->h + i) * g->w + j) * g->c + c;
}

/* y[r, oh, ow, f] = b[f] + sum x[r, oh*sh - pt + i*dh, ow*sw - pl + j*dw, c] K[i, j, c', f]
 * over the channels c of f's group (c' = c within the group). */
static void ref_conv(const geo *g, const float *x, const float *k, const float *b, int64_t rows,
                     double *y)
{
    int64_t cg = g->c / g->groups, fg = g->f / g->groups;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t oh = 0; oh < g->oh; oh++)
            for (int64_t ow = 0; ow < g->ow; ow++)
                for (int64_t f = 0; f < g->f; f++) {
                    double s = b ? b[f] : 0.0;
                    for (int64_t i = 0; i < g->kh; i++)
                        for (int64_t j = 0; j < g->kw; j++) {
                            int64_t ih = oh * g->sh - g->pt + i * g->dh;
                            int64_t iw = ow * g->sw - g->pl + j * g->dw;
                            if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w)
                                continue;
                            for (int64_t c = 0; c < cg; c++)
                                s += (double)x[xidx(g, r, ih, iw, (f / fg) * cg + c)] *
                                     k[((i * g->kw + j) * cg + c) * g->f + f];
                        }
                    y[((r * g->oh + oh) * g->ow + ow) * g->f + f] = s;
                }
}

/* Depthwise: y[..., c*m + q] = b + sum x[..., c] K[i, j, c, q]. */
static void ref_depthwise(const geo *g, const float *x, const float *k, const float *b,
                          int64_t rows, double *y)
{
    int64_t m = g->mult, cm = g->c * m;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t oh = 0; oh < g->oh; oh++)
            for (int64_t ow = 0; ow < g->ow; ow++)
                for (int64_t o = 0; o < cm; o++) {
                    int64_t c = o / m;
                    double s = b ? b[o] : 0.0;
                    for (int64_t i = 0; i < g->kh; i++)
                        for (int64_t j = 0; j < g->kw; j++) {
                            int64_t ih = oh * g->sh - g->pt + i * g->dh;
                            int64_t iw = ow * g->sw - g->pl + j * g->dw;
                            if (ih >= 0 && ih < g->h && iw >= 0 && iw < g->w)
                                s += (double)x[xidx(g, r, ih, iw, c)] * k[(i * g->kw + j) * cm + o];
                        }
                    y[((r * g->oh + oh) * g->ow + ow) * cm + o] = s;
                }
}

/* Transposed convolution in scatter form: each input value x[r, p, q, c] adds
 * x K[i, j, f, c] to y[r, p*sh - pt + i*dh, q*sw - pl + j*dw, f]. Here (h, w) is the
 * input grid and (oh, ow) the output image. */
static void ref_conv_transpose(const geo *g, const float *x, const float *k, const float *b,
                               int64_t rows, double *y)
{
    for (int64_t n = 0; n < rows * g->oh * g->ow; n++)
        for (int64_t f = 0; f < g->f; f++)
            y[n * g->f + f] = b ? b[f] : 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t p = 0; p < g->h; p++)
            for (int64_t q = 0; q < g->w; q++)
                for (int64_t i = 0; i < g->kh; i++)
                    for (int64_t j = 0; j < g->kw; j++) {
                        int64_t yh = p * g->sh - g->pt + i * g->dh;
                        int64_t yw = q * g->sw - g->pl + j * g->dw;
                        if (yh < 0 || yh >= g->oh || yw < 0 || yw >= g->ow)
                            continue;
                        for (int64_t f = 0; f < g->f; f++) {
                            double s = 0;
                            for (int64_t c = 0; c < g->c; c++)
                                s += (double)x[xidx(g, r, p, q, c)] *
                                     k[((i * g->kw + j) * g->f + f) * g->c + c];
                            y[((r * g->oh + yh) * g->ow + yw) * g->f + f] += s;
                        }
                    }
}

typedef void (*ref_fn)(const geo *, const float *, const float *, const float *, int64_t,
                       double *);

/* Runs the layer forward on fixed inputs and compares every output with ref (activation
 * relu applied to the reference when relu is set). */
/* check_forward's tolerance, relative to max(1, |value|). */
static double forward_tol = 1e-5;

static void check_forward(lt *t, const geo *g, ref_fn ref, int64_t rows, bool relu)
{
    ct_layer *l = &t->l;
    int64_t nin = rows * ct_shape_size(&l->in_shape), nout = rows * ct_shape_size(&l->out_shape);
    float *x = fvec(nin), *y = fvec(nout);
    double *want = dvec(nout);
    tu_fill(x, nin, 21, -1.0f, 1.0f);
    ct_tensor tx = tensor(x, rows, l->in_shape), ty = tensor(y, rows, l->out_shape);
    lt_forward(l, &infer_pass, &tx, &ty);
    const float *b = NULL;
    for (int p = 0; p < l->nparams; p++)
        if (!strcmp(l->params[p].name, "bias"))
            b = l->params[p].value;
    ref(g, x, l->params[0].value, b, rows, want);
    for (int64_t i = 0; i < nout; i++) {
        double w = relu && want[i] < 0 ? 0.0 : want[i];
        ck_assert_msg(fabs(y[i] - w) <= forward_tol * fmax(1.0, fabs(w)), "%s: y[%lld] = %.8g, want %.8g",
                      l->kind->name, (long long)i, y[i], w);
    }
    free(x), free(y), free(want);
}

/* ---- backend ops ------------------------------------------------------------------- */

static ct_window window(int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                        int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t oh,
                        int64_t ow)
{
    ct_window win = {.in_h = h, .in_w = w, .in_c = c, .out_h = oh, .out_w = ow, .k_h = kh,
                     .k_w = kw, .stride_h = sh, .stride_w = sw, .dil_h = dh, .dil_w = dw,
                     .pad_top = pt, .pad_left = pl};
    return win;
}

/* The naive value of cols[p][(i, j, c)] for channel range [c0, c0 + cn). */
static float naive_patch(const ct_window *w, const float *x, int64_t r, int64_t oh, int64_t ow,
                         int64_t i, int64_t j, int64_t c)
{
    int64_t ih = oh * w->stride_h - w->pad_top + i * w->dil_h;
    int64_t iw = ow * w->stride_w - w->pad_left + j * w->dil_w;
    if (ih < 0 || ih >= w->in_h || iw < 0 || iw >= w->in_w)
        return 0.0f;
    return x[((r * w->in_h + ih) * w->in_w + iw) * w->in_c + c];
}

static void check_im2col(const ct_window *w, int64_t rows, int64_t c0, int64_t cn)
{
    const ct_backend *be = ct_backend_cpu();
    int64_t nx = rows * w->in_h * w->in_w * w->in_c;
    int64_t patch = w->k_h * w->k_w * cn, ncols = rows * w->out_h * w->out_w * patch;
    float *x = fvec(nx), *cols = fvec(ncols), *a = fvec(ncols), *back = fvec(nx);
    tu_fill(x, nx, 3, -1, 1);
    for (int64_t i = 0; i < ncols; i++)
        cols[i] = NAN;  /* every entry must be written, padding included */
    be->im2col(w, x, rows, c0, cn, cols);
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t oh = 0; oh < w->out_h; oh++)
            for (int64_t ow = 0; ow < w->out_w; ow++)
                for (int64_t i = 0; i < w->k_h; i++)
                    for (int64_t j = 0; j < w->k_w; j++)
                        for (int64_t c = 0; c < cn; c++, n++)
                            ck_assert_msg(cols[n] == naive_patch(w, x, r, oh, ow, i, j, c0 + c),
                                          "cols[%lld]", (long long)n);
    /* adjoint: <col2im(a), x> == <a, im2col(x)>; col2im adds into what is there */
    tu_fill(a, ncols, 4, -1, 1);
    tu_fill(back, nx, 5, -1, 1);
    double base = 0, lhs = 0, rhs = 0;
    for (int64_t i = 0; i < nx; i++)
        base += (double)back[i] * x[i];
    be->col2im(w, a, rows, c0, cn, back);
    for (int64_t i = 0; i < nx; i++)
        lhs += (double)back[i] * x[i];
    for (int64_t i = 0; i < ncols; i++)
        rhs += (double)a[i] * cols[i];
    ck_assert_msg(fabs(lhs - base - rhs) <= 1e-4 * fmax(1, fabs(rhs)), "adjoint %.9g vs %.9g",
                  lhs - base, rhs);
    free(x), free(cols), free(a), free(back);
}

START_TEST(test_im2col_col2im)
{
    /* 7x5x3, 3x2 kernel, stride 2, same padding: out 4x3, pads (1, 0) */
    ct_window w = window(7, 5, 3, 3, 2, 2, 2, 1, 1, 1, 0, 4, 3);
    check_im2col(&w, 2, 0, 3);  /* contiguous rows */
    check_im2col(&w, 2, 1, 2);  /* a channel slice (a group) */
    /* dilation 2 along both axes, padding on both sides */
    w = window(6, 7, 2, 3, 3, 1, 1, 2, 2, 2, 2, 6, 7);
    check_im2col(&w, 2, 0, 2);
    check_im2col(&w, 1, 1, 1);
    /* 1-D: causal padding of 4 (k 3, dilation 2) */
    w = window(1, 9, 4, 1, 3, 1, 3, 1, 2, 0, 4, 1, 3);
    check_im2col(&w, 3, 0, 4);
    /* kernel wider than the padded-out input at the edges, stride larger than the kernel */
    w = window(5, 4, 1, 2, 5, 3, 3, 1, 1, 0, 2, 2, 2);
    check_im2col(&w, 2, 0, 1);
}
END_TEST

START_TEST(test_depthwise_ops)
{
    const ct_backend *be = ct_backend_cpu();
    /* 6x5x3, kernel 3x2, multiplier 2, stride 2, pads (1, 0): out 3x3 */
    geo g = {.h = 6, .w = 5, .c = 3, .kh = 3, .kw = 2, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
             .pt = 1, .pl = 0, .oh = 3, .ow = 3, .mult = 2};
    ct_window w = window(6, 5, 3, 3, 2, 2, 2, 1, 1, 1, 0, 3, 3);
    const int64_t rows = 2, nx = rows * 90, nk = 3 * 2 * 3 * 2, ny = rows * 9 * 6;
    float *x = fvec(nx), *k = fvec(nk), *y = fvec(ny), *dy = fvec(ny), *dx = fvec(nx);
    float *dk = fvec(nk);
    double *want = dvec(ny);
    tu_fill(x, nx, 1, -1, 1);
    tu_fill(k, nk, 2, -1, 1);
    tu_fill(dy, ny, 3, -1, 1);
    be->depthwise_forward(&w, 2, x, k, y, rows);
    ref_depthwise(&g, x, k, NULL, rows, want);
    for (int64_t i = 0; i < ny; i++)
        tu_assert_close(y[i], want[i], 1e-5);
    /* backward: dx and dk are the exact adjoints, by linearity in x and in k */
    for (int64_t i = 0; i < nx; i++)
        dx[i] = 1e6f;
    for (int64_t i = 0; i < nk; i++)
        dk[i] = 1e6f;
    be->depthwise_backward(&w, 2, x, k, dy, dx, dk, rows);
    double ydy = 0, xdx = 0, kdk = 0;
    for (int64_t i = 0; i < ny; i++)
        ydy += want[i] * dy[i];
    for (int64_t i = 0; i < nx; i++)
        xdx += (double)x[i] * dx[i];
    for (int64_t i = 0; i < nk; i++)
        kdk += (double)k[i] * dk[i];
    tu_assert_close(xdx, ydy, 1e-5);
    tu_assert_close(kdk, ydy, 1e-5);
    /* dx may be NULL: dk alone, same values */
    float *dk2 = fvec(nk);
    be->depthwise_backward(&w, 2, x, k, dy, NULL, dk2, rows);
    ck_assert_int_eq(memcmp(dk, dk2, (size_t)nk * sizeof(float)), 0);
    free(x), free(k), free(y), free(dy), free(dx), free(dk), free(dk2), free(want);
}
END_TEST

/* ---- Conv2D / Conv1D ---------------------------------------------------------------- */

START_TEST(test_conv2d_shapes)
{
    lt t;
    int64_t in[3] = {7, 5, 4};
    conv_ok(&t, "{type: conv2d, filters: 6, kernel_size: [3, 2]}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 5, 4, 6, 0);
    ck_assert_int_eq(t.l.nparams, 2);
    ck_assert_str_eq(t.l.params[0].name, "kernel");
    check_shape(&t.l.params[0].shape, 4, 3, 2, 4, 6);
    ck_assert_int_eq(t.l.params[0].init.kind, CT_INIT_GLOROT_UNIFORM);
    ck_assert_str_eq(t.l.params[1].name, "bias");
    check_shape(&t.l.params[1].shape, 1, 6, 0, 0, 0);
    ck_assert_int_eq(t.l.params[1].init.kind, CT_INIT_ZEROS);
    ck_assert_int_eq(t.l.kind->output_activation(&t.l), CT_ACT_LINEAR);
    /* defaults are written back into the config */
    const char *keys[] = {"strides", "padding", "dilation_rate", "groups", "activation",
                          "use_bias", "data_format", "kernel_initializer", NULL};
    for (int i = 0; keys[i]; i++)
        ck_assert_msg(ct_map_get(t.cfg, keys[i]) != NULL, "%s", keys[i]);
    ck_assert_str_eq(ct_map_get(t.cfg, "padding")->scalar, "valid");
    /* scratch: per partition (one per sample here) one sample's patches, a kernel
     * gradient and a bias gradient (no activation: no pre-activation kept) */
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 2),
                     2 * (5 * 4 * 3 * 2 * 4 + 3 * 2 * 4 * 6 + 6));
    lt_free(&t);

    conv_ok(&t, "{type: Conv2D, filters: 6, kernel_size: [3, 2], strides: 2}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 3, 2, 6, 0);
    lt_free(&t);
    conv_ok(&t, "{type: conv2d, filters: 6, kernel_size: [3, 2], strides: [2, 2], padding: same}",
          3, in, 2);
    check_shape(&t.l.out_shape, 3, 4, 3, 6, 0);
    lt_free(&t);
    conv_ok(&t, "{type: conv2d, filters: 6, kernel_size: [3, 2], strides: [1, 2], padding: same}",
          3, in, 2);
    check_shape(&t.l.out_shape, 3, 7, 3, 6, 0);
    lt_free(&t);
    conv_ok(&t, "{type: conv2d, filters: 6, kernel_size: [3, 2], dilation_rate: 2}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 3, 3, 6, 0);
    lt_free(&t);
    conv_ok(&t, "{type: conv2d, filters: 6, kernel_size: 3, dilation_rate: [2, 1], padding: same}",
          3, in, 2);
    check_shape(&t.l.out_shape, 3, 7, 5, 6, 0);
    lt_free(&t);
    conv_ok(&t, "{type: conv2d, filters: 6, kernel_size: [3, 2], groups: 2, use_bias: false, "
              "activation: relu}", 3, in, 2);
    ck_assert_int_eq(t.l.nparams, 1);
    check_shape(&t.l.params[0].shape, 4, 3, 2, 2, 6);
    ck_assert_int_eq(t.l.kind->output_activation(&t.l), CT_ACT_RELU);
    /* relu is applied in place (no pre-activation kept); per partition one sample's
     * patches for one group (3*2*2 per position), a kernel gradient (3*2*2 x 6) and a
     * bias gradient (6, present though unused) */
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 2),
                     2 * (5 * 4 * 3 * 2 * 2 + 3 * 2 * 2 * 6 + 6));
    lt_free(&t);
    /* gelu needs its input for the derivative: the pre-activation comes first */
    conv_ok(&t, "{type: conv2d, filters: 6, kernel_size: [3, 2], groups: 2, use_bias: false, "
              "activation: gelu}", 3, in, 2);
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 2),
                     2 * 5 * 4 * 6 + 2 * (5 * 4 * 3 * 2 * 2 + 3 * 2 * 2 * 6 + 6));
    lt_free(&t);
    conv_ok(&t, "{type: conv2d, filters: 2, kernel_size: 3, kernel_initializer: he_normal, "
              "bias_initializer: ones, kernel_regularizer: {type: l2, l2: 0.25}, "
              "bias_regularizer: l1}", 3, in, 2);
    ck_assert_int_eq(t.l.params[0].init.kind, CT_INIT_HE_NORMAL);
    ck_assert_int_eq(t.l.params[1].init.kind, CT_INIT_ONES);
    ck_assert(t.l.params[0].reg.l2 == 0.25 && t.l.params[0].reg.l1 == 0);
    ck_assert(t.l.params[1].reg.l1 == 0.01 && t.l.params[1].reg.l2 == 0);
    lt_free(&t);
    /* 1x1 stride 1: no patches at all */
    conv_ok(&t, "{type: conv2d, filters: 3, kernel_size: 1}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 7, 5, 3, 0);
    ck_assert_int_eq(t.l.kind->scratch_floats(&t.l, 2), 0);
    lt_free(&t);
}
END_TEST

START_TEST(test_conv1d_shapes)
{
    lt t;
    int64_t in[2] = {7, 3};
    conv_ok(&t, "{type: conv1d, filters: 4, kernel_size: 3}", 2, in, 2);
    check_shape(&t.l.out_shape, 2, 5, 4, 0, 0);
    check_shape(&t.l.params[0].shape, 3, 3, 3, 4, 0);
    lt_free(&t);
    conv_ok(&t, "{type: Conv1D, filters: 4, kernel_size: [3], padding: causal, dilation_rate: 2}",
          2, in, 2);
    check_shape(&t.l.out_shape, 2, 7, 4, 0, 0);
    lt_free(&t);
    conv_ok(&t, "{type: conv1d, filters: 4, kernel_size: 3, padding: causal, strides: 2}", 2, in,
          2);
    check_shape(&t.l.out_shape, 2, 4, 4, 0, 0);
    lt_free(&t);
    conv_ok(&t, "{type: conv1d, filters: 4, kernel_size: 2, padding: same, strides: 3}", 2, in, 2);
    check_shape(&t.l.out_shape, 2, 3, 4, 0, 0);
    lt_free(&t);
    conv_ok(&t, "{type: conv1d, filters: 4, kernel_size: 7}", 2, in, 2);
    check_shape(&t.l.out_shape, 2, 1, 4, 0, 0);
    lt_free(&t);
}
END_TEST

/* Builds, runs the forward against the direct reference, and checks the gradients. */
static void conv_case(const char *yaml, int ndim, const int64_t *dims, const geo *g,
                      int64_t rows, bool relu)
{
    lt t;
    conv_ok(&t, yaml, ndim, dims, rows + 3);  /* a batch smaller than the planned one */
    check_forward(&t, g, ref_conv, rows, relu);
    gradcheck(&t, rows);
    lt_free(&t);
}

START_TEST(test_conv2d_forward_and_gradients)
{
    int64_t in[3] = {7, 5, 4};
    /* valid, 3x2 kernel */
    geo g = {.h = 7, .w = 5, .c = 4, .kh = 3, .kw = 2, .f = 3, .sh = 1, .sw = 1, .dh = 1,
             .dw = 1, .pt = 0, .pl = 0, .oh = 5, .ow = 4, .groups = 1};
    conv_case("{type: conv2d, filters: 3, kernel_size: [3, 2]}", 3, in, &g, 2, false);
    /* same padding with stride 2: out 4x3, pads top 1 (total 2), left 0 (total 1) */
    g.sh = g.sw = 2, g.pt = 1, g.pl = 0, g.oh = 4, g.ow = 3;
    conv_case("{type: conv2d, filters: 3, kernel_size: [3, 2], strides: 2, padding: same}", 3,
              in, &g, 2, false);
    /* valid stride 2: out 3x2 */
    g.pt = 0, g.oh = 3, g.ow = 2;
    conv_case("{type: conv2d, filters: 3, kernel_size: [3, 2], strides: 2}", 3, in, &g, 2,
              false);
    /* dilation 2, same: pads (2, 1) */
    g.sh = g.sw = 1, g.dh = g.dw = 2, g.pt = 2, g.pl = 1, g.oh = 7, g.ow = 5;
    conv_case("{type: conv2d, filters: 3, kernel_size: [3, 2], dilation_rate: 2, padding: same}",
              3, in, &g, 2, false);
    /* dilation 2, valid: spans 5x3 */
    g.pt = g.pl = 0, g.oh = 3, g.ow = 3;
    conv_case("{type: conv2d, filters: 3, kernel_size: [3, 2], dilation_rate: [2, 2]}", 3, in,
              &g, 2, false);
    /* groups 2: 4 channels and 6 filters in 2 groups */
    geo gg = {.h = 7, .w = 5, .c = 4, .kh = 3, .kw = 2, .f = 6, .sh = 2, .sw = 2, .dh = 1,
              .dw = 1, .pt = 1, .pl = 0, .oh = 4, .ow = 3, .groups = 2};
    conv_case("{type: conv2d, filters: 6, kernel_size: [3, 2], strides: 2, padding: same, "
              "groups: 2}", 3, in, &gg, 2, false);
    /* 1x1 fast path */
    geo g1 = {.h = 7, .w = 5, .c = 4, .kh = 1, .kw = 1, .f = 3, .sh = 1, .sw = 1, .dh = 1,
              .dw = 1, .oh = 7, .ow = 5, .groups = 1};
    conv_case("{type: conv2d, filters: 3, kernel_size: 1}", 3, in, &g1, 2, false);
    /* 1x1 with stride 2 takes the patch path */
    g1.sh = g1.sw = 2, g1.oh = 4, g1.ow = 3;
    conv_case("{type: conv2d, filters: 3, kernel_size: 1, strides: 2}", 3, in, &g1, 2, false);
    /* relu fused into the layer, no bias */
    g.dh = g.dw = 1, g.oh = 5, g.ow = 4;
    conv_case("{type: conv2d, filters: 3, kernel_size: [3, 2], activation: relu, "
              "use_bias: false}", 3, in, &g, 2, true);
    /* tanh with bias */
    lt t;
    conv_ok(&t, "{type: conv2d, filters: 2, kernel_size: 2, activation: tanh, padding: same}", 3,
          in, 2);
    gradcheck(&t, 2);
    lt_free(&t);
    /* gelu keeps its pre-activation outside the fused op; the bias is added inside */
    conv_ok(&t, "{type: conv2d, filters: 3, kernel_size: 2, activation: gelu, "
              "bias_initializer: {type: random_uniform, minval: -0.5, maxval: 0.5}}",
            3, in, 2);
    gradcheck(&t, 2);
    lt_free(&t);
}
END_TEST

START_TEST(test_conv1d_forward_and_gradients)
{
    int64_t in[2] = {9, 3};
    /* causal, kernel 3, dilation 2: left padding 4 */
    geo g = {.h = 1, .w = 9, .c = 3, .kh = 1, .kw = 3, .f = 2, .sh = 1, .sw = 1, .dh = 1,
             .dw = 2, .pt = 0, .pl = 4, .oh = 1, .ow = 9, .groups = 1};
    conv_case("{type: conv1d, filters: 2, kernel_size: 3, padding: causal, dilation_rate: 2}", 2,
              in, &g, 3, false);
    /* the first output sees only the first step: y[0] = b + x[0] K[2] */
    /* valid with stride 2: out 4 */
    g.dw = 1, g.sw = 2, g.pl = 0, g.ow = 4;
    conv_case("{type: conv1d, filters: 2, kernel_size: [3], strides: [2]}", 2, in, &g, 3, false);
    /* same, kernel 4: total 3, left 1 */
    g.kw = 4, g.sw = 1, g.pl = 1, g.ow = 9;
    conv_case("{type: conv1d, filters: 2, kernel_size: 4, padding: same}", 2, in, &g, 2, false);
    /* groups 3 with relu */
    geo gg = {.h = 1, .w = 9, .c = 3, .kh = 1, .kw = 2, .f = 6, .sh = 1, .sw = 1, .dh = 1,
              .dw = 1, .oh = 1, .ow = 8, .groups = 3};
    conv_case("{type: conv1d, filters: 6, kernel_size: 2, groups: 3, activation: relu}", 2, in,
              &gg, 2, true);
}
END_TEST

/* Causality: changing a later step never changes an earlier output. */
START_TEST(test_conv1d_causal)
{
    lt t;
    int64_t in[2] = {6, 1};
    conv_ok(&t, "{type: conv1d, filters: 1, kernel_size: 3, padding: causal}", 2, in, 1);
    float x[6] = {1, 2, 3, 4, 5, 6}, y[6], y2[6];
    float *k = t.l.params[0].value, *b = t.l.params[1].value;
    k[0] = 1, k[1] = 10, k[2] = 100, b[0] = 0.5f;
    ct_tensor tx = tensor(x, 1, t.l.in_shape), ty = tensor(y, 1, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    /* y[t] = x[t-2] + 10 x[t-1] + 100 x[t] + 0.5 */
    const float want[6] = {100.5f, 210.5f, 321.5f, 432.5f, 543.5f, 654.5f};
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(y[i], want[i]);
    x[4] = -7;
    ty.data = y2;
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(y2[i], y[i]);
    ck_assert(y2[4] != y[4]);
    lt_free(&t);
}
END_TEST

/* Work is cut into partitions that do not depend on the thread count, so y, dx and the
 * kernel gradient of the layer in yaml (input in[3], `rows` samples, algorithm algo) are
 * the same bits with 1, 2 or 3 threads. */
static void threads_same_bits(const char *yaml, const int64_t in[3], int64_t rows,
                              ct_conv_algo algo)
{
    lt t;
    lt_algo = algo;
    conv_ok(&t, yaml, 3, in, rows);
    lt_algo = CT_CONV_AUTO;
    int64_t nin = rows * in[0] * in[1] * in[2], nout = rows * ct_shape_size(&t.l.out_shape);
    int64_t nk = ct_shape_size(&t.l.params[0].shape);
    float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dyc = fvec(nout);
    float *dx[3], *dk[3], *ys[3];
    tu_fill(x, nin, 31, -1, 1);
    tu_fill(dyc, nout, 32, -1, 1);
    for (int i = 0; i < 3; i++) {
        ct_threads_set(i + 1);
        dx[i] = fvec(nin), dk[i] = fvec(nk), ys[i] = fvec(nout);
        ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
        ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx[i], rows, t.l.in_shape);
        memcpy(dy, dyc, (size_t)nout * sizeof(float));
        lt_forward(&t.l, &infer_pass, &tx, &ty);
        memcpy(ys[i], y, (size_t)nout * sizeof(float));
        lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
        memcpy(dk[i], t.l.params[0].grad, (size_t)nk * sizeof(float));
    }
    ct_threads_set(1);
    for (int i = 1; i < 3; i++) {
        ck_assert(memcmp(ys[0], ys[i], (size_t)nout * sizeof(float)) == 0);
        ck_assert(memcmp(dk[0], dk[i], (size_t)nk * sizeof(float)) == 0);
        ck_assert(memcmp(dx[0], dx[i], (size_t)nin * sizeof(float)) == 0);
    }
    for (int i = 0; i < 3; i++)
        free(dx[i]), free(dk[i]), free(ys[i]);
    free(x), free(y), free(dy), free(dyc);
    lt_free(&t);
}

START_TEST(test_conv2d_threads_same_bits)
{
    int64_t in[3] = {9, 8, 6};
    threads_same_bits("{type: conv2d, filters: 4, kernel_size: 3, strides: 2, padding: same, "
                      "groups: 2, activation: relu}", in, 37, CT_CONV_IM2COL);
}
END_TEST

/* ---- the direct algorithm ------------------------------------------------------------ */

/* Every got[i] within tol * max(1, the largest |want|) of want[i]. */
static void arrays_close(const float *got, const float *want, int64_t n, double tol,
                         const char *what)
{
    double scale = 1.0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * scale, "%s[%lld]: %.8g, im2col %.8g",
                      what, (long long)i, got[i], want[i]);
}

/* One layer built twice, with im2col and with another algorithm, on the same parameters. */
typedef struct algo_pair {
    lt t[2];
} algo_pair;

static void pair_setup(algo_pair *p, ct_conv_algo other, const char *yaml, int ndim,
                       const int64_t *dims, int64_t rows)
{
    const ct_conv_algo algos[2] = {CT_CONV_IM2COL, other};
    for (int a = 0; a < 2; a++) {
        lt_algo = algos[a];
        conv_ok(&p->t[a], yaml, ndim, dims, rows);
    }
    lt_algo = CT_CONV_AUTO;
    ck_assert_str_eq(p->t[0].l.algo, "im2col");
}

/* Forward and backward of both on the same data: the outputs and every gradient agree to
 * tol of the largest value of each. */
static void compare_backward(algo_pair *p, int64_t rows, double tol)
{
    ct_layer *l0 = &p->t[0].l, *l1 = &p->t[1].l;
    int64_t nin = rows * ct_shape_size(&l0->in_shape), nout = rows * ct_shape_size(&l0->out_shape);
    float *x = fvec(nin), *y[2], *dy[2], *dx[2], *dyc = fvec(nout);
    tu_fill(x, nin, 41, -1.0f, 1.0f);
    tu_fill(dyc, nout, 42, -1.0f, 1.0f);
    for (int a = 0; a < 2; a++) {
        ct_layer *l = &p->t[a].l;
        y[a] = fvec(nout), dy[a] = fvec(nout), dx[a] = fvec(nin);
        memcpy(dy[a], dyc, (size_t)nout * sizeof(float));
        ct_tensor tx = tensor(x, rows, l->in_shape), ty = tensor(y[a], rows, l->out_shape);
        ct_tensor tdy = tensor(dy[a], rows, l->out_shape), tdx = tensor(dx[a], rows, l->in_shape);
        lt_forward(l, &infer_pass, &tx, &ty);
        lt_backward(l, &infer_pass, &tx, &ty, &tdy, &tdx);
    }
    arrays_close(y[1], y[0], nout, tol, "y");
    arrays_close(dx[1], dx[0], nin, tol, "dx");
    for (int q = 0; q < l0->nparams; q++)
        arrays_close(l1->params[q].grad, l0->params[q].grad, ct_shape_size(&l0->params[q].shape),
                     tol, l0->params[q].name);
    for (int a = 0; a < 2; a++)
        free(y[a]), free(dy[a]), free(dx[a]);
    free(x), free(dyc);
}

/* `algo` against the double reference (forward) and against im2col (forward and every
 * gradient) to tol, and against finite differences where grads is set. want: the
 * algorithm the layer must end up with where the CPU has the kernels. */
static void algo_case(ct_conv_algo algo, const char *want, double tol, const char *yaml,
                      int ndim, const int64_t *dims, const geo *g, int64_t rows, bool relu,
                      bool grads)
{
    algo_pair p;
    pair_setup(&p, algo, yaml, ndim, dims, rows + 2);
    if (ct_cpu_direct_width() == 0)
        want = "im2col";
    ck_assert_msg(!strcmp(p.t[1].l.algo, want), "%s: algorithm %s, want %s", yaml,
                  p.t[1].l.algo, want);
    forward_tol = tol;
    check_forward(&p.t[1], g, ref_conv, rows, relu);
    forward_tol = 1e-5;
    compare_backward(&p, rows, tol);
    if (grads)
        gradcheck(&p.t[1], rows);
    lt_free(&p.t[0]);
    lt_free(&p.t[1]);
}

static void direct_case(const char *yaml, int ndim, const int64_t *dims, const geo *g,
                        int64_t rows, bool relu, bool grads)
{
    int vw = ct_cpu_direct_width();
    algo_case(CT_CONV_DIRECT, vw > 0 && g->f % vw == 0 ? "direct" : "im2col", 1e-5, yaml, ndim,
              dims, g, rows, relu, grads);
}

/* Winograd's transforms add and halve values before the products: its results are held
 * to 1e-4 of the largest value (direct and im2col to 1e-5). A change of one kernel value
 * moves every transformed value, and so the rounding of every output: finite differences
 * take a step of 0.03 (exact for a layer without activation, which is linear in each
 * value) so that the change they measure stands above that rounding. */
static void winograd_case(const char *yaml, int ndim, const int64_t *dims, const geo *g,
                          int64_t rows, bool relu, bool grads, const char *want)
{
    gradcheck_h = 3e-2;
    algo_case(CT_CONV_WINOGRAD, want, 1e-4, yaml, ndim, dims, g, rows, relu, grads);
    gradcheck_h = 1e-3;
}

/* F(4x4, 3x3) scales values by up to 8 and 1/24 in its transforms: held to 1e-4 too. */
static void winograd4_case(const char *yaml, int ndim, const int64_t *dims, const geo *g,
                           int64_t rows, bool relu, bool grads)
{
    gradcheck_h = 3e-2;
    algo_case(CT_CONV_WINOGRAD4, "winograd F(4x4)", 1e-4, yaml, ndim, dims, g, rows, relu,
              grads);
    gradcheck_h = 1e-3;
}

/* Direct convolution on the shapes it takes (filters a multiple of the vector width):
 * values against the double reference, every gradient against im2col's and, on a few,
 * against finite differences. Where the CPU has no kernels (width 0), it must fall back
 * to im2col, which the same checks then cover. */
static void direct_cases(void);
static void winograd_cases(void);

/* One width per run of the loop (each with its own time limit: under the sanitizers a
 * width takes a minute): every width the CPU runs, then none (the fallback). */
START_TEST(test_conv2d_direct)
{
    static const int widths[] = {16, 8, 0};
    int cpu = ct_cpu_direct_width();
    if (cpu == 0 && _i == 2)
        fprintf(stderr, "test_conv2d_direct: this CPU has no direct kernels (no AVX2+FMA); "
                        "checking the fallback to im2col only\n");
    if (widths[_i] > cpu)
        return;
    ck_assert_int_eq(ct_cpu_direct_use_width(widths[_i]), widths[_i]);
    direct_cases();
    winograd_cases();
    ct_cpu_direct_use_width(cpu);
}
END_TEST

static void direct_cases(void)
{
    /* the first layer of an image model: one channel, same padding */
    int64_t in1[3] = {9, 11, 1};
    geo g = {.h = 9, .w = 11, .c = 1, .kh = 3, .kw = 3, .f = 16, .sh = 1, .sw = 1, .dh = 1,
             .dw = 1, .pt = 1, .pl = 1, .oh = 9, .ow = 11, .groups = 1};
    direct_case("{type: conv2d, filters: 16, kernel_size: 3, padding: same}", 3, in1, &g, 3,
                false, true);
    /* 16 -> 16, stride 1: dx is the convolution of dy with the kernel turned around */
    int64_t in16[3] = {9, 11, 16};
    g.c = 16;
    direct_case("{type: conv2d, filters: 16, kernel_size: 3, padding: same, use_bias: false}",
                3, in16, &g, 3, false, true);
    /* stride 2 (dx through patches), 32 filters */
    g.f = 32, g.sh = g.sw = 2, g.oh = 5, g.ow = 6, g.pt = 1, g.pl = 1;
    direct_case("{type: conv2d, filters: 32, kernel_size: 3, strides: 2, padding: same}", 3,
                in16, &g, 3, false, false);
    /* 64 filters with bias and relu on 7x7x8 */
    int64_t in7[3] = {7, 7, 8};
    geo g7 = {.h = 7, .w = 7, .c = 8, .kh = 3, .kw = 3, .f = 64, .sh = 1, .sw = 1, .dh = 1,
              .dw = 1, .pt = 1, .pl = 1, .oh = 7, .ow = 7, .groups = 1};
    direct_case("{type: conv2d, filters: 64, kernel_size: 3, padding: same, activation: relu, "
                "bias_initializer: {type: random_uniform, minval: -0.5, maxval: 0.5}}",
                3, in7, &g7, 2, true, false);
    /* 48 filters (vectors of 32 and 16), a 3x2 kernel, valid, 3 channels */
    int64_t in3[3] = {6, 13, 3};
    geo g3 = {.h = 6, .w = 13, .c = 3, .kh = 3, .kw = 2, .f = 48, .sh = 1, .sw = 1, .dh = 1,
              .dw = 1, .pt = 0, .pl = 0, .oh = 4, .ow = 12, .groups = 1};
    direct_case("{type: conv2d, filters: 48, kernel_size: [3, 2]}", 3, in3, &g3, 2, false,
                true);
    /* a row of 30: full tiles, a short one, and a border column at each end; 24 channels
     * (channel blocks of the kernel gradient with a remainder) */
    int64_t in30[3] = {4, 30, 24};
    geo g30 = {.h = 4, .w = 30, .c = 24, .kh = 3, .kw = 3, .f = 16, .sh = 1, .sw = 1,
               .dh = 1, .dw = 1, .pt = 1, .pl = 1, .oh = 4, .ow = 30, .groups = 1};
    direct_case("{type: conv2d, filters: 16, kernel_size: 3, padding: same}", 3, in30, &g30, 2,
                false, false);
    /* 5x5 valid with stride 2 on 9x11 */
    geo g5 = {.h = 9, .w = 11, .c = 16, .kh = 5, .kw = 5, .f = 16, .sh = 2, .sw = 2, .dh = 1,
              .dw = 1, .pt = 0, .pl = 0, .oh = 3, .ow = 4, .groups = 1};
    direct_case("{type: conv2d, filters: 16, kernel_size: 5, strides: 2}", 3, in16, &g5, 2,
                false, false);
    /* Conv1D, causal (all the padding on the left) */
    int64_t in1d[2] = {10, 16};
    geo gc1 = {.h = 1, .w = 10, .c = 16, .kh = 1, .kw = 3, .f = 16, .sh = 1, .sw = 1, .dh = 1,
               .dw = 1, .pt = 0, .pl = 2, .oh = 1, .ow = 10, .groups = 1};
    direct_case("{type: conv1d, filters: 16, kernel_size: 3, padding: causal}", 2, in1d, &gc1,
                2, false, true);
}

/* Winograd F(2x2, 3x3) on 3x3 stride-1 layers whose channels and filters are whole
 * vectors (16 works for both widths); others take what auto would. */
static void winograd_cases(void)
{
    int vw = ct_cpu_direct_width();
    /* odd output sides: the last tiles of each row and column are half outside */
    int64_t in16[3] = {9, 11, 16};
    geo g = {.h = 9, .w = 11, .c = 16, .kh = 3, .kw = 3, .f = 16, .sh = 1, .sw = 1, .dh = 1,
             .dw = 1, .pt = 1, .pl = 1, .oh = 9, .ow = 11, .groups = 1};
    winograd_case("{type: conv2d, filters: 16, kernel_size: 3, padding: same}", 3, in16, &g, 3,
                  false, true, "winograd");
    /* 48 filters (vectors of 32 and 16) with bias and relu on an even side */
    int64_t in8[3] = {8, 8, 16};
    geo g8 = {.h = 8, .w = 8, .c = 16, .kh = 3, .kw = 3, .f = 48, .sh = 1, .sw = 1, .dh = 1,
              .dw = 1, .pt = 1, .pl = 1, .oh = 8, .ow = 8, .groups = 1};
    winograd_case("{type: conv2d, filters: 48, kernel_size: 3, padding: same, activation: relu, "
                  "bias_initializer: {type: random_uniform, minval: -0.5, maxval: 0.5}}",
                  3, in8, &g8, 2, true, false, "winograd");
    /* valid: dx covers more tiles than y */
    int64_t in7[3] = {7, 6, 32};
    geo g7 = {.h = 7, .w = 6, .c = 32, .kh = 3, .kw = 3, .f = 64, .sh = 1, .sw = 1, .dh = 1,
              .dw = 1, .pt = 0, .pl = 0, .oh = 5, .ow = 4, .groups = 1};
    winograd_case("{type: conv2d, filters: 64, kernel_size: 3}", 3, in7, &g7, 2, false, true,
                  "winograd");
    /* F(4x4, 3x3): sides that leave 1, 2 and 3 outputs in the last tiles */
    winograd4_case("{type: conv2d, filters: 16, kernel_size: 3, padding: same}", 3, in16, &g, 3,
                   false, true);
    winograd4_case("{type: conv2d, filters: 48, kernel_size: 3, padding: same, activation: relu, "
                   "bias_initializer: {type: random_uniform, minval: -0.5, maxval: 0.5}}",
                   3, in8, &g8, 2, true, false);
    winograd4_case("{type: conv2d, filters: 64, kernel_size: 3}", 3, in7, &g7, 2, false, true);
    int64_t in14[3] = {14, 14, 32};
    geo g14 = {.h = 14, .w = 14, .c = 32, .kh = 3, .kw = 3, .f = 32, .sh = 1, .sw = 1,
               .dh = 1, .dw = 1, .pt = 1, .pl = 1, .oh = 14, .ow = 14, .groups = 1};
    winograd4_case("{type: conv2d, filters: 32, kernel_size: 3, padding: same, use_bias: false}",
                   3, in14, &g14, 2, false, false);
    /* not 3x3 with stride 1, or channels not whole vectors: auto's choice (direct) */
    int64_t in1[3] = {9, 11, 1};
    geo g1 = g;
    g1.c = 1;
    winograd_case("{type: conv2d, filters: 16, kernel_size: 3, padding: same}", 3, in1, &g1, 2,
                  false, false, "direct");
    geo g2 = g;
    g2.sh = g2.sw = 2, g2.oh = 5, g2.ow = 6;
    winograd_case("{type: conv2d, filters: 16, kernel_size: 3, strides: 2, padding: same}", 3,
                  in16, &g2, 2, false, false, "direct");
    (void)vw;
}

/* Direct (plain and strided) and both Winograd tile sizes give the same bits for 1, 2 and
 * 3 threads (37 samples: uneven partitions). */
START_TEST(test_conv2d_direct_threads_same_bits)
{
    int64_t in[3] = {8, 9, 16};
    static const char *const yaml =
        "{type: conv2d, filters: 32, kernel_size: 3, padding: same, activation: relu}";
    static const char *const strided =
        "{type: conv2d, filters: 32, kernel_size: 3, strides: 2, padding: same}";
    threads_same_bits(yaml, in, 37, CT_CONV_DIRECT);
    threads_same_bits(strided, in, 37, CT_CONV_DIRECT);
    threads_same_bits(yaml, in, 37, CT_CONV_WINOGRAD);
    threads_same_bits(yaml, in, 37, CT_CONV_WINOGRAD4);
}
END_TEST

/* Several samples share one GEMM (a chunk) when their patches are small; the result must
 * be what each sample alone gives: y and dx per sample, the kernel and bias gradients
 * summed over samples. 37 rows: 16 partitions of 2-3 samples, uneven chunks. */
START_TEST(test_conv2d_chunked_equals_per_sample)
{
    lt t, one;
    int64_t in[3] = {7, 6, 5};
    const int64_t rows = 37;
    const char *cfg = "{type: conv2d, filters: 3, kernel_size: 3, padding: same, "
                      "activation: relu, bias_initializer: {type: random_uniform}}";
    conv_ok(&t, cfg, 3, in, rows);
    conv_ok(&one, cfg, 3, in, 1);
    int64_t np = ct_shape_size(&t.l.params[0].shape), nb = 3;
    memcpy(one.l.params[0].value, t.l.params[0].value, (size_t)np * sizeof(float));
    memcpy(one.l.params[1].value, t.l.params[1].value, (size_t)nb * sizeof(float));
    int64_t sin = ct_shape_size(&t.l.in_shape), sout = ct_shape_size(&t.l.out_shape);
    float *x = fvec(rows * sin), *y = fvec(rows * sout), *dy = fvec(rows * sout);
    float *dx = fvec(rows * sin), *dyc = fvec(rows * sout);
    tu_fill(x, rows * sin, 41, -1, 1);
    tu_fill(dyc, rows * sout, 42, -1, 1);
    memcpy(dy, dyc, (size_t)(rows * sout) * sizeof(float));
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    double dk[3 * 3 * 5 * 3] = {0}, db[3] = {0};
    float y1[7 * 6 * 3], dy1[7 * 6 * 3], dx1[7 * 6 * 5];
    for (int64_t r = 0; r < rows; r++) {
        memcpy(dy1, dyc + r * sout, sizeof dy1);
        ct_tensor ox = tensor(x + r * sin, 1, one.l.in_shape), oy = tensor(y1, 1, one.l.out_shape);
        ct_tensor ody = tensor(dy1, 1, one.l.out_shape), odx = tensor(dx1, 1, one.l.in_shape);
        lt_forward(&one.l, &infer_pass, &ox, &oy);
        lt_backward(&one.l, &infer_pass, &ox, &oy, &ody, &odx);
        for (int64_t i = 0; i < sout; i++)
            tu_assert_close(y[r * sout + i], y1[i], 1e-5);
        for (int64_t i = 0; i < sin; i++)
            tu_assert_close(dx[r * sin + i], dx1[i], 1e-5);
        for (int64_t i = 0; i < np; i++)
            dk[i] += one.l.params[0].grad[i];
        for (int64_t i = 0; i < nb; i++)
            db[i] += one.l.params[1].grad[i];
    }
    for (int64_t i = 0; i < np; i++)
        tu_assert_close(t.l.params[0].grad[i], dk[i], 1e-4);
    for (int64_t i = 0; i < nb; i++)
        tu_assert_close(t.l.params[1].grad[i], db[i], 1e-4);
    free(x), free(y), free(dy), free(dx), free(dyc);
    lt_free(&t);
    lt_free(&one);
}
END_TEST

/* Samples whose patches exceed the chunk bound (8M floats: 3 of these per chunk) go in
 * several chunks; the kernel gradient must still sum over all of them. */
START_TEST(test_conv2d_chunks)
{
    lt t;
    int64_t in[3] = {64, 64, 64};
    const int64_t rows = 4, f = 2;
    conv_ok(&t, "{type: conv2d, filters: 2, kernel_size: 3, padding: same}", 3, in, rows);
    geo g = {.h = 64, .w = 64, .c = 64, .kh = 3, .kw = 3, .f = f, .sh = 1, .sw = 1, .dh = 1,
             .dw = 1, .pt = 1, .pl = 1, .oh = 64, .ow = 64, .groups = 1};
    check_forward(&t, &g, ref_conv, rows, false);
    int64_t nin = rows * 64 * 64 * 64, nout = rows * 64 * 64 * f;
    float *x = fvec(nin), *y = fvec(nout), *dy = fvec(nout), *dx = fvec(nin);
    tu_fill(x, nin, 21, -1, 1);
    tu_fill(dy, nout, 22, -1, 1);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    ct_tensor tdy = tensor(dy, rows, t.l.out_shape), tdx = tensor(dx, rows, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    float *dyc = fvec(nout);
    memcpy(dyc, dy, (size_t)nout * sizeof(float));
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    const float *dk = t.l.params[0].grad;
    for (int64_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < 3; j++)
            for (int64_t c = 0; c < 64; c += 21)
                for (int64_t o = 0; o < f; o++) {
                    double s = 0;
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t p = 0; p < 64; p++)
                            for (int64_t q = 0; q < 64; q++) {
                                int64_t ih = p - 1 + i, iw = q - 1 + j;
                                if (ih >= 0 && ih < 64 && iw >= 0 && iw < 64)
                                    s += (double)x[xidx(&g, r, ih, iw, c)] *
                                         dyc[((r * 64 + p) * 64 + q) * f + o];
                            }
                    tu_assert_close(dk[((i * 3 + j) * 64 + c) * f + o], s, 5e-4);
                }
    /* dx of the last sample's corner: sum over the taps that reach it */
    const float *k = t.l.params[0].value;
    for (int64_t c = 0; c < 64; c += 9) {
        double s = 0;
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < 2; j++)
                for (int64_t o = 0; o < f; o++)
                    s += (double)k[((i * 3 + j) * 64 + c) * f + o] *
                         dyc[((2 * 64 + 1 - i) * 64 + 1 - j) * f + o];
        tu_assert_close(dx[xidx(&g, 2, 0, 0, c)], s, 1e-4);
    }
    free(x), free(y), free(dy), free(dx), free(dyc);
    lt_free(&t);
}
END_TEST

/* With act_fused, dy is already taken at the pre-activation: backward equals the linear
 * layer's. */
START_TEST(test_conv2d_fused_activation)
{
    int64_t in[3] = {5, 4, 2};
    const int64_t rows = 2, nin = rows * 40;
    lt a, b;
    conv_ok(&a, "{type: conv2d, filters: 3, kernel_size: 2, activation: softmax}", 3, in, rows);
    conv_ok(&b, "{type: conv2d, filters: 3, kernel_size: 2}", 3, in, rows);
    ck_assert_int_eq(a.l.kind->output_activation(&a.l), CT_ACT_SOFTMAX);
    a.l.act_fused = true;
    int64_t nout = rows * ct_shape_size(&a.l.out_shape);
    float *x = fvec(nin), *y = fvec(nout), *dya = fvec(nout), *dyb = fvec(nout);
    float *dxa = fvec(nin), *dxb = fvec(nin);
    tu_fill(x, nin, 1, -1, 1);
    tu_fill(dya, nout, 2, -1, 1);
    memcpy(dyb, dya, (size_t)nout * sizeof(float));
    ct_tensor tx = tensor(x, rows, a.l.in_shape), ty = tensor(y, rows, a.l.out_shape);
    lt_forward(&a.l, &infer_pass, &tx, &ty);
    for (int64_t p = 0; p < nout / 3; p++)
        tu_assert_close(y[p * 3] + y[p * 3 + 1] + y[p * 3 + 2], 1.0, 1e-6);
    ct_tensor tdy = tensor(dya, rows, a.l.out_shape), tdx = tensor(dxa, rows, a.l.in_shape);
    lt_backward(&a.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    lt_forward(&b.l, &infer_pass, &tx, &ty);
    tdy.data = dyb, tdx.data = dxb;
    lt_backward(&b.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    for (int64_t i = 0; i < nin; i++)
        ck_assert_float_eq(dxa[i], dxb[i]);
    for (int p = 0; p < 2; p++)
        for (int64_t i = 0; i < ct_shape_size(&a.l.params[p].shape); i++)
            ck_assert_float_eq(a.l.params[p].grad[i], b.l.params[p].grad[i]);
    free(x), free(y), free(dya), free(dyb), free(dxa), free(dxb);
    lt_free(&a);
    lt_free(&b);
}
END_TEST

/* The first layer gets dx NULL; the kernel gradient is still written. */
START_TEST(test_conv2d_no_dx)
{
    int64_t in[3] = {5, 4, 2};
    lt t;
    conv_ok(&t, "{type: conv2d, filters: 2, kernel_size: 3, groups: 2, padding: same}", 3, in, 1);
    float x[40], y[40], dy[40], dy2[40], dx[40];
    tu_fill(x, 40, 1, -1, 1);
    tu_fill(dy, 40, 2, -1, 1);
    memcpy(dy2, dy, sizeof dy);
    ct_tensor tx = tensor(x, 1, t.l.in_shape), ty = tensor(y, 1, t.l.out_shape);
    ct_tensor tdy = tensor(dy, 1, t.l.out_shape), tdx = tensor(dx, 1, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    float dk[18];
    memcpy(dk, t.l.params[0].grad, sizeof dk);
    tdy.data = dy2;
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, NULL);
    for (int i = 0; i < 18; i++)
        ck_assert_float_eq(t.l.params[0].grad[i], dk[i]);
    lt_free(&t);
}
END_TEST

START_TEST(test_conv_errors)
{
    int64_t in2[3] = {2, 2, 1}, in[3] = {7, 5, 4}, in1[2] = {7, 3};
    lt_fails("layer:\n  type: conv2d\n  filters: 4\n  kernel_size: 3\n", 3, in2, "conv2d",
             "layer.yaml:2:3: layer 'conv2d' (Conv2D): a 3x3 kernel with padding 'valid' does "
             "not fit the input (None, 2, 2, 1)");
    lt_fails("layer:\n  type: conv2d\n  filters: 4\n  kernel_size: 2\n  dilation_rate: 2\n", 3,
             in2, "conv2d_1",
             "layer.yaml:2:3: layer 'conv2d_1' (Conv2D): a 2x2 kernel (spanning 3x3 with "
             "dilation) with padding 'valid' does not fit the input (None, 2, 2, 1)");
    lt_fails("layer:\n  type: conv1d\n  filters: 4\n  kernel_size: 8\n", 2, in1, "conv1d",
             "layer.yaml:2:3: layer 'conv1d' (Conv1D): a kernel of size 8 with padding "
             "'valid' does not fit the input (None, 7, 3)");
    lt_fails("layer:\n  type: conv1d\n  filters: 4\n  kernel_size: 3\n  dilation_rate: 4\n", 2,
             in1, "conv1d",
             "layer.yaml:2:3: layer 'conv1d' (Conv1D): a kernel of size 3 (spanning 9 with "
             "dilation) with padding 'valid' does not fit the input (None, 7, 3)");
    lt_fails("layer:\n  type: conv2d\n  filters: 6\n  kernel_size: 3\n  groups: 3\n", 3, in,
             "conv2d",
             "layer.yaml:2:3: layer 'conv2d' (Conv2D): the input channels (4) of "
             "(None, 7, 5, 4) must be divisible by groups (3)");
    lt_fails("layer:\n  type: conv2d\n  filters: 5\n  kernel_size: 3\n  groups: 2\n", 3, in,
             "conv2d",
             "layer.yaml:5:11: layer 'conv2d' (Conv2D): filters (5) must be divisible by "
             "groups (2)");
    lt_fails("layer:\n  type: conv2d\n  filters: 5\n  kernel_size: 3\n  strides: 2\n"
             "  dilation_rate: [1, 2]\n", 3, in, "conv2d",
             "layer.yaml:6:18: layer 'conv2d' (Conv2D): strides > 1 cannot be combined with "
             "dilation_rate > 1");
    lt_fails("layer:\n  type: conv2d\n  filters: 5\n  kernel_size: 3\n  padding: sme\n", 3, in,
             "conv2d",
             "layer.yaml:5:12: unknown value 'sme' for 'padding' (did you mean 'same'?); "
             "choices: valid, same");
    lt_fails("layer:\n  type: conv2d\n  filters: 5\n  kernel_size: 3\n  padding: causal\n", 3,
             in, "conv2d",
             "layer.yaml:5:12: unknown value 'causal' for 'padding'; choices: valid, same");
    lt_fails("layer:\n  type: conv1d\n  filters: 5\n  kernel_size: 3\n  padding: casual\n", 2,
             in1, "conv1d",
             "layer.yaml:5:12: unknown value 'casual' for 'padding' (did you mean 'causal'?); "
             "choices: valid, same, causal");
    lt_fails("layer:\n  type: conv2d\n  kernel_size: 3\n", 3, in, "conv2d",
             "layer.yaml:2:3: layer 'conv2d' (Conv2D) needs the key 'filters'");
    lt_fails("layer:\n  type: conv2d\n  filters: 3\n", 3, in, "conv2d",
             "layer.yaml:2:3: layer 'conv2d' (Conv2D) needs the key 'kernel_size'");
    lt_fails("layer:\n  type: conv2d\n  filters: 3\n  kernel_size: [3, 3, 3]\n", 3, in,
             "conv2d",
             "layer.yaml:4:16: layer 'conv2d' (Conv2D): kernel_size must be an integer or a "
             "list of 2 integers");
    lt_fails("layer:\n  type: conv1d\n  filters: 3\n  kernel_size: [3, 3]\n", 2, in1, "conv1d",
             "layer.yaml:4:16: layer 'conv1d' (Conv1D): kernel_size must be an integer or a "
             "list of 1 integer");
    lt_fails("layer:\n  type: conv2d\n  filters: 3\n  kernel_size: [3, 0]\n", 3, in, "conv2d",
             "layer.yaml:4:20: 'kernel_size[1]' must be at least 1, got 0");
    lt_fails("layer:\n  type: conv2d\n  filters: 3\n  kernel_size: 3\n  strides: 0\n", 3, in,
             "conv2d", "layer.yaml:5:12: 'strides' must be between 1 and 1048576, got 0");
    lt_fails("layer:\n  type: conv2d\n  filters: 3\n  kernel_size: 3\n"
             "  data_format: channels_first\n", 3, in, "conv2d",
             "layer.yaml:5:16: layer 'conv2d' (Conv2D): data_format 'channels_first' is not "
             "supported; only channels_last is");
    lt_fails("layer:\n  type: conv2d\n  filters: 3\n  kernel_size: 3\n  kernel_size_: 3\n", 3,
             in, "conv2d",
             "layer.yaml:5:3: unknown key 'kernel_size_' in layer 'conv2d' (Conv2D) (did you "
             "mean 'kernel_size'?); known keys: filters, kernel_size, strides, padding, "
             "data_format, dilation_rate, groups, activation, use_bias, kernel_initializer, "
             "bias_initializer, kernel_regularizer, bias_regularizer, type, name, inputs, trainable");
    lt_fails("{type: conv2d, filters: 3, kernel_size: 3}", 2, in1, "conv2d",
             "layer.yaml:1:1: layer 'conv2d' (Conv2D): expects a 4-D input (batch, height, "
             "width, channels), got (None, 7, 3)");
    lt_fails("{type: conv1d, filters: 3, kernel_size: 3}", 3, in, "conv1d",
             "layer.yaml:1:1: layer 'conv1d' (Conv1D): expects a 3-D input (batch, steps, "
             "channels), got (None, 7, 5, 4)");
}
END_TEST

/* ---- Conv2DTranspose ---------------------------------------------------------------- */

START_TEST(test_conv_transpose)
{
    lt t;
    int64_t in[3] = {4, 3, 2};
    /* valid, stride 2, kernel 3x4: (4-1)*2 + 3 = 9, (3-1)*2 + 4 = 8 */
    conv_ok(&t, "{type: conv2d_transpose, filters: 3, kernel_size: [3, 4], strides: 2}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 9, 8, 3, 0);
    check_shape(&t.l.params[0].shape, 4, 3, 4, 3, 2);
    check_shape(&t.l.params[1].shape, 1, 3, 0, 0, 0);
    geo g = {.h = 4, .w = 3, .c = 2, .kh = 3, .kw = 4, .f = 3, .sh = 2, .sw = 2, .dh = 1,
             .dw = 1, .pt = 0, .pl = 0, .oh = 9, .ow = 8};
    check_forward(&t, &g, ref_conv_transpose, 2, false);
    gradcheck(&t, 2);
    lt_free(&t);
    /* same, stride 2: 8x6; the forward conv 8x6 -> 4x3 pads h (1 total) 0, w (2 total) 1 */
    conv_ok(&t, "{type: Conv2DTranspose, filters: 3, kernel_size: [3, 4], strides: 2, "
              "padding: same, activation: relu}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 8, 6, 3, 0);
    g.oh = 8, g.ow = 6, g.pl = 1;
    check_forward(&t, &g, ref_conv_transpose, 2, true);
    gradcheck(&t, 2);
    lt_free(&t);
    /* a stride longer than the kernel leaves gaps: 4*3 x 3*3, zero (bias) between */
    conv_ok(&t, "{type: conv2d_transpose, filters: 2, kernel_size: 2, strides: 3}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 12, 9, 2, 0);
    geo g3 = {.h = 4, .w = 3, .c = 2, .kh = 2, .kw = 2, .f = 2, .sh = 3, .sw = 3, .dh = 1,
              .dw = 1, .oh = 12, .ow = 9};
    check_forward(&t, &g3, ref_conv_transpose, 2, false);
    gradcheck(&t, 2);
    lt_free(&t);
    /* dilation 2, stride 1, same: 4x3, span 5x3 pads (2, 1) */
    conv_ok(&t, "{type: conv2d_transpose, filters: 2, kernel_size: [3, 2], dilation_rate: 2, "
              "padding: same, use_bias: false}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 4, 3, 2, 0);
    ck_assert_int_eq(t.l.nparams, 1);
    geo gd = {.h = 4, .w = 3, .c = 2, .kh = 3, .kw = 2, .f = 2, .sh = 1, .sw = 1, .dh = 2,
              .dw = 2, .pt = 2, .pl = 1, .oh = 4, .ow = 3};
    check_forward(&t, &gd, ref_conv_transpose, 2, false);
    gradcheck(&t, 2);
    lt_free(&t);

    lt_fails("layer:\n  type: conv2d_transpose\n  filters: 2\n  kernel_size: 3\n"
             "  output_padding: 1\n", 3, in, "conv2d_transpose",
             "layer.yaml:5:19: layer 'conv2d_transpose' (Conv2DTranspose): output_padding is "
             "not supported; leave it out (null)");
    lt_fails("layer:\n  type: conv2d_transpose\n  kernel_size: 3\n", 3, in, "conv2d_transpose",
             "layer.yaml:2:3: layer 'conv2d_transpose' (Conv2DTranspose) needs the key "
             "'filters'");
    conv_ok(&t, "{type: conv2d_transpose, filters: 2, kernel_size: 3, output_padding: null}", 3,
          in, 2);
    check_shape(&t.l.out_shape, 3, 6, 5, 2, 0);
    lt_free(&t);
}
END_TEST

/* ---- DepthwiseConv2D and SeparableConv2D ---------------------------------------------- */

START_TEST(test_depthwise_layer)
{
    lt t;
    int64_t in[3] = {7, 5, 3};
    conv_ok(&t, "{type: depthwise_conv2d, kernel_size: [3, 2], depth_multiplier: 2, strides: 2, "
              "padding: same}", 3, in, 2);
    check_shape(&t.l.out_shape, 3, 4, 3, 6, 0);
    ck_assert_str_eq(t.l.params[0].name, "kernel");
    check_shape(&t.l.params[0].shape, 4, 3, 2, 3, 2);
    check_shape(&t.l.params[1].shape, 1, 6, 0, 0, 0);
    geo g = {.h = 7, .w = 5, .c = 3, .kh = 3, .kw = 2, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
             .pt = 1, .pl = 0, .oh = 4, .ow = 3, .mult = 2};
    check_forward(&t, &g, ref_depthwise, 2, false);
    gradcheck(&t, 2);
    lt_free(&t);
    /* multiplier 1, dilation 2, relu */
    conv_ok(&t, "{type: DepthwiseConv2D, kernel_size: 2, dilation_rate: 2, activation: relu}", 3,
          in, 2);
    check_shape(&t.l.out_shape, 3, 5, 3, 3, 0);
    geo g1 = {.h = 7, .w = 5, .c = 3, .kh = 2, .kw = 2, .sh = 1, .sw = 1, .dh = 2, .dw = 2,
              .oh = 5, .ow = 3, .mult = 1};
    check_forward(&t, &g1, ref_depthwise, 2, true);
    gradcheck(&t, 2);
    lt_free(&t);
    /* a frozen kernel still lets dx and the bias through */
    conv_ok(&t, "{type: depthwise_conv2d, kernel_size: 3}", 3, in, 1);
    free(t.l.params[0].grad);
    t.l.params[0].grad = NULL;
    float x[105], y[45], dy[45], dx[105];
    tu_fill(x, 105, 1, -1, 1);
    tu_fill(dy, 45, 2, -1, 1);
    ct_tensor tx = tensor(x, 1, t.l.in_shape), ty = tensor(y, 1, t.l.out_shape);
    ct_tensor tdy = tensor(dy, 1, t.l.out_shape), tdx = tensor(dx, 1, t.l.in_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    lt_backward(&t.l, &infer_pass, &tx, &ty, &tdy, &tdx);
    double sb = 0;
    for (int i = 0; i < 15; i++)
        sb += dy[i * 3 + 1];
    tu_assert_close(t.l.params[1].grad[1], sb, 1e-5);
    lt_free(&t);

    lt_fails("layer:\n  type: depthwise_conv2d\n  kernel_size: 3\n  filters: 3\n", 3, in,
             "depthwise_conv2d",
             "layer.yaml:4:3: unknown key 'filters' in layer 'depthwise_conv2d' "
             "(DepthwiseConv2D); known keys: kernel_size, strides, padding, depth_multiplier, "
             "data_format, dilation_rate, activation, use_bias, depthwise_initializer, "
             "bias_initializer, depthwise_regularizer, bias_regularizer, type, name, inputs, trainable");
    lt_fails("layer:\n  type: depthwise_conv2d\n  kernel_size: 9\n", 3, in, "dw",
             "layer.yaml:2:3: layer 'dw' (DepthwiseConv2D): a 9x9 kernel with padding 'valid' "
             "does not fit the input (None, 7, 5, 3)");
}
END_TEST

/* Separable: depthwise (no bias) then a 1x1 convolution with bias. */
START_TEST(test_separable_layer)
{
    lt t;
    int64_t in[3] = {7, 5, 3};
    const int64_t rows = 2;
    conv_ok(&t, "{type: separable_conv2d, filters: 4, kernel_size: [3, 2], depth_multiplier: 2, "
              "strides: 2, padding: same, activation: tanh}", 3, in, rows);
    check_shape(&t.l.out_shape, 3, 4, 3, 4, 0);
    ck_assert_int_eq(t.l.nparams, 3);
    ck_assert_str_eq(t.l.params[0].name, "depthwise_kernel");
    check_shape(&t.l.params[0].shape, 4, 3, 2, 3, 2);
    ck_assert_str_eq(t.l.params[1].name, "pointwise_kernel");
    check_shape(&t.l.params[1].shape, 4, 1, 1, 6, 4);
    ck_assert_str_eq(t.l.params[2].name, "bias");
    check_shape(&t.l.params[2].shape, 1, 4, 0, 0, 0);
    ck_assert_int_eq(t.l.params[1].init.kind, CT_INIT_GLOROT_UNIFORM);
    /* forward against depthwise then pointwise in double */
    geo g = {.h = 7, .w = 5, .c = 3, .kh = 3, .kw = 2, .sh = 2, .sw = 2, .dh = 1, .dw = 1,
             .pt = 1, .pl = 0, .oh = 4, .ow = 3, .mult = 2};
    int64_t nin = rows * 105, npos = rows * 12;
    float *x = fvec(nin), *y = fvec(npos * 4);
    double *mid = dvec(npos * 6);
    tu_fill(x, nin, 21, -1, 1);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    ref_depthwise(&g, x, t.l.params[0].value, NULL, rows, mid);
    const float *pw = t.l.params[1].value, *b = t.l.params[2].value;
    for (int64_t p = 0; p < npos; p++)
        for (int64_t f = 0; f < 4; f++) {
            double s = b[f];
            for (int64_t c = 0; c < 6; c++)
                s += mid[p * 6 + c] * pw[c * 4 + f];
            ck_assert_msg(fabs(y[p * 4 + f] - tanh(s)) <= 1e-6, "y[%lld] = %.8g, want %.8g",
                          (long long)(p * 4 + f), y[p * 4 + f], tanh(s));
        }
    free(x), free(y), free(mid);
    gradcheck(&t, rows);
    lt_free(&t);

    conv_ok(&t, "{type: SeparableConv2D, filters: 2, kernel_size: 2, dilation_rate: 2, "
              "use_bias: false}", 3, in, rows);
    check_shape(&t.l.out_shape, 3, 5, 3, 2, 0);
    ck_assert_int_eq(t.l.nparams, 2);
    gradcheck(&t, rows);
    lt_free(&t);

    lt_fails("layer:\n  type: separable_conv2d\n  kernel_size: 3\n", 3, in, "sep",
             "layer.yaml:2:3: layer 'sep' (SeparableConv2D) needs the key 'filters'");
    lt_fails("layer:\n  type: separable_conv2d\n  filters: 2\n  kernel_size: 3\n  strides: 2\n"
             "  dilation_rate: 2\n", 3, in, "sep",
             "layer.yaml:6:18: layer 'sep' (SeparableConv2D): strides > 1 cannot be combined "
             "with dilation_rate > 1");
}
END_TEST

/* ---- the 1-D forms: the 2-D layers on an image of height 1, Keras's 1-D weights -------- */

START_TEST(test_conv1d_transpose_layer)
{
    lt t;
    int64_t in[2] = {4, 2};
    /* valid, stride 2, kernel 3: (4-1)*2 + 3 = 9 */
    conv_ok(&t, "{type: conv1d_transpose, filters: 3, kernel_size: 3, strides: 2}", 2, in, 2);
    check_shape(&t.l.out_shape, 2, 9, 3, 0, 0);
    check_shape(&t.l.params[0].shape, 3, 3, 3, 2, 0); /* (k, filters, in_channels) */
    check_shape(&t.l.params[1].shape, 1, 3, 0, 0, 0);
    geo g = {.h = 1, .w = 4, .c = 2, .kh = 1, .kw = 3, .f = 3, .sh = 1, .sw = 2, .dh = 1,
             .dw = 1, .oh = 1, .ow = 9};
    check_forward(&t, &g, ref_conv_transpose, 2, false);
    gradcheck(&t, 2);
    lt_free(&t);
    /* same, stride 2: 8; the forward conv 8 -> 4 pads 1 in all, 0 before */
    conv_ok(&t, "{type: Conv1DTranspose, filters: 2, kernel_size: [3], strides: 2, "
              "padding: same, activation: relu}", 2, in, 2);
    check_shape(&t.l.out_shape, 2, 8, 2, 0, 0);
    g.f = 2, g.ow = 8;
    check_forward(&t, &g, ref_conv_transpose, 2, true);
    gradcheck(&t, 2);
    lt_free(&t);
    lt_fails("layer:\n  type: conv1d_transpose\n  filters: 2\n  kernel_size: [3, 3]\n", 2, in,
             "ct", "layer.yaml:4:16: layer 'ct' (Conv1DTranspose): kernel_size must be an "
             "integer or a list of 1 integer");
    int64_t in3[3] = {4, 4, 2};
    lt_fails("layer:\n  type: conv1d_transpose\n  filters: 2\n  kernel_size: 3\n", 3, in3,
             "ct", "layer.yaml:2:3: layer 'ct' (Conv1DTranspose): expects a 3-D input (batch, steps, channels), "
             "got (None, 4, 4, 2)");
}
END_TEST

START_TEST(test_depthwise_separable_conv1d)
{
    lt t;
    int64_t in[2] = {7, 3};
    /* same, stride 2: out 4, the window padded by 2 in all, 1 before */
    conv_ok(&t, "{type: depthwise_conv1d, kernel_size: 3, depth_multiplier: 2, strides: 2, "
              "padding: same}", 2, in, 2);
    check_shape(&t.l.out_shape, 2, 4, 6, 0, 0);
    ck_assert_str_eq(t.l.params[0].name, "kernel");
    check_shape(&t.l.params[0].shape, 3, 3, 3, 2, 0); /* (k, in_channels, multiplier) */
    check_shape(&t.l.params[1].shape, 1, 6, 0, 0, 0);
    geo g = {.h = 1, .w = 7, .c = 3, .kh = 1, .kw = 3, .sh = 1, .sw = 2, .dh = 1, .dw = 1,
             .pt = 0, .pl = 1, .oh = 1, .ow = 4, .mult = 2};
    check_forward(&t, &g, ref_depthwise, 2, false);
    gradcheck(&t, 2);
    lt_free(&t);

    conv_ok(&t, "{type: SeparableConv1D, filters: 4, kernel_size: 2, depth_multiplier: 2, "
              "dilation_rate: 2, activation: tanh}", 2, in, 2);
    check_shape(&t.l.out_shape, 2, 5, 4, 0, 0);
    ck_assert_int_eq(t.l.nparams, 3);
    ck_assert_str_eq(t.l.params[0].name, "depthwise_kernel");
    check_shape(&t.l.params[0].shape, 3, 2, 3, 2, 0);
    ck_assert_str_eq(t.l.params[1].name, "pointwise_kernel");
    check_shape(&t.l.params[1].shape, 3, 1, 6, 4, 0); /* (1, in_channels * multiplier, filters) */
    check_shape(&t.l.params[2].shape, 1, 4, 0, 0, 0);
    gradcheck(&t, 2);
    lt_free(&t);

    lt_fails("layer:\n  type: separable_conv1d\n  kernel_size: 3\n", 2, in, "sep",
             "layer.yaml:2:3: layer 'sep' (SeparableConv1D) needs the key 'filters'");
    lt_fails("layer:\n  type: depthwise_conv1d\n  kernel_size: 9\n", 2, in, "dw",
             "layer.yaml:2:3: layer 'dw' (DepthwiseConv1D): a kernel of size 9 with padding "
             "'valid' does not fit the input (None, 7, 3)");
    lt_fails("layer:\n  type: depthwise_conv1d\n  kernel_size: 3\n  padding: causal\n", 2, in,
             "dw", "layer.yaml:4:12: unknown value 'causal' for 'padding'; choices: valid, same");
}
END_TEST

/* ---- Conv3D ------------------------------------------------------------------------- */

/* One axis as Keras: the output length and the padding before it. */
static int64_t axis3(int64_t n, int64_t k, int64_t st, int64_t dil, bool same, int64_t *pad)
{
    int64_t span = (k - 1) * dil + 1;
    int64_t out = same ? (n + st - 1) / st : (n - span) / st + 1;
    int64_t total = (out - 1) * st + span - n;
    *pad = same && total > 0 ? total / 2 : 0;
    return out;
}

/* y[r, od, oh, ow, f] = b[f] + sum x[r, d, h, w, c] K[i, j, q, c, f] over the kernel, in
 * double, with d = od*st - pad + i*dil (likewise h, w), zeros outside the input. */
static void ref_conv3d(const int64_t in[4], const int64_t k[3], const int64_t st[3],
                       const int64_t dil[3], bool same, int64_t f, const float *x,
                       const float *kern, const float *b, int64_t rows, double *y,
                       int64_t out[3])
{
    int64_t pad[3], c = in[3], o = 0;
    for (int a = 0; a < 3; a++)
        out[a] = axis3(in[a], k[a], st[a], dil[a], same, &pad[a]);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t od = 0; od < out[0]; od++)
            for (int64_t oh = 0; oh < out[1]; oh++)
                for (int64_t ow = 0; ow < out[2]; ow++)
                    for (int64_t fo = 0; fo < f; fo++, o++) {
                        double acc = b ? b[fo] : 0;
                        for (int64_t i = 0; i < k[0] * k[1] * k[2]; i++) {
                            int64_t kd = i / (k[1] * k[2]), kh = i / k[2] % k[1], kw = i % k[2];
                            int64_t d = od * st[0] - pad[0] + kd * dil[0];
                            int64_t h = oh * st[1] - pad[1] + kh * dil[1];
                            int64_t w = ow * st[2] - pad[2] + kw * dil[2];
                            if (d < 0 || d >= in[0] || h < 0 || h >= in[1] || w < 0 || w >= in[2])
                                continue;
                            for (int64_t ch = 0; ch < c; ch++)
                                acc += (double)x[(((r * in[0] + d) * in[1] + h) * in[2] + w) * c + ch] *
                                       kern[(i * c + ch) * f + fo];
                        }
                        y[o] = acc;
                    }
}

static double relu_d(double v) { return v > 0 ? v : 0; }

/* ELU needs its input kept for the backward (the layer's pre-activation scratch). */
static double elu_d(double v) { return v > 0 ? v : expm1(v); }

/* act: the layer's activation in double, NULL for linear. */
static void conv3d_case(const char *yaml, const int64_t k[3], const int64_t st[3],
                        const int64_t dil[3], bool same, double (*act)(double))
{
    lt t;
    int64_t in[4] = {4, 5, 4, 2}, rows = 2, out[3], f = 3;
    conv_ok(&t, yaml, 4, in, rows);
    /* Keras's (k_d, k_h, k_w, in_channels, filters) */
    const int64_t kshape[5] = {k[0], k[1], k[2], 2, f};
    ck_assert_int_eq(t.l.params[0].shape.ndim, 5);
    for (int a = 0; a < 5; a++)
        ck_assert_int_eq(t.l.params[0].shape.dim[a], kshape[a]);
    int64_t nin = rows * ct_shape_size(&t.l.in_shape), nout = rows * ct_shape_size(&t.l.out_shape);
    float *x = fvec(nin), *y = fvec(nout);
    double *want = dvec(nout);
    tu_fill(x, nin, 21, -1.0f, 1.0f);
    ref_conv3d(in, k, st, dil, same, f, x, t.l.params[0].value,
               t.l.nparams > 1 ? t.l.params[1].value : NULL, rows, want, out);
    check_shape(&t.l.out_shape, 4, out[0], out[1], out[2], f);
    ct_tensor tx = tensor(x, rows, t.l.in_shape), ty = tensor(y, rows, t.l.out_shape);
    lt_forward(&t.l, &infer_pass, &tx, &ty);
    for (int64_t i = 0; i < nout; i++) {
        double w = act ? act(want[i]) : want[i];
        ck_assert_msg(fabs(y[i] - w) <= 1e-5 * fmax(1.0, fabs(w)), "%s: y[%lld] = %.8g, want %.8g",
                      yaml, (long long)i, y[i], w);
    }
    gradcheck(&t, rows);
    free(x), free(y), free(want);
    lt_free(&t);
}

START_TEST(test_conv3d_layer)
{
    const int64_t one[3] = {1, 1, 1}, k[3] = {2, 3, 2}, st[3] = {2, 1, 2}, dl[3] = {2, 1, 1};
    conv3d_case("{type: conv3d, filters: 3, kernel_size: [2, 3, 2]}", k, one, one, false, NULL);
    conv3d_case("{type: Conv3D, filters: 3, kernel_size: [2, 3, 2], strides: [2, 1, 2], "
                "padding: same, activation: relu}", k, st, one, true, relu_d);
    conv3d_case("{type: conv3d, filters: 3, kernel_size: [2, 3, 2], dilation_rate: [2, 1, 1], "
                "activation: tanh, use_bias: false}", k, one, dl, false, tanh);
    const int64_t k3[3] = {3, 3, 3};
    conv3d_case("{type: conv3d, filters: 3, kernel_size: 3, padding: same, activation: elu}", k3,
                one, one, true, elu_d);
    int64_t in[4] = {2, 5, 4, 2}, in2[3] = {5, 4, 2};
    lt_fails("{type: conv3d, filters: 2, kernel_size: 3}", 4, in, "c3",
             "layer.yaml:1:1: layer 'c3' (Conv3D): a 3x3x3 kernel with padding 'valid' does "
             "not fit the input (None, 2, 5, 4, 2)");
    lt_fails("{type: conv3d, filters: 2, kernel_size: 3}", 3, in2, "c3",
             "layer.yaml:1:1: layer 'c3' (Conv3D): expects a 5-D input (batch, depth, height, "
             "width, channels), got (None, 5, 4, 2)");
    lt_fails("{type: conv3d, filters: 2, kernel_size: 3, groups: 2}", 4, in, "c3",
             "layer.yaml:1:52: layer 'c3' (Conv3D): only groups: 1 is supported");
    lt_fails("{type: conv3d, filters: 2}", 4, in, "c3",
             "layer.yaml:1:1: layer 'c3' (Conv3D) needs the key 'kernel_size'");
    lt_fails("{type: conv3d, filters: 2, kernel_size: 2, strides: 2, dilation_rate: [1, 2, 1]}",
             4, in, "c3",
             "layer.yaml:1:71: layer 'c3' (Conv3D): strides > 1 cannot be combined with "
             "dilation_rate > 1");
}
END_TEST

/* ---- speed (printed, not asserted) ---------------------------------------------------- */


static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_im2col_col2im);
    tcase_add_test(tc, test_depthwise_ops);
    tcase_add_test(tc, test_conv2d_shapes);
    tcase_add_test(tc, test_conv1d_shapes);
    tcase_add_test(tc, test_conv2d_forward_and_gradients);
    tcase_add_test(tc, test_conv1d_forward_and_gradients);
    tcase_add_test(tc, test_conv1d_causal);
    tcase_add_test(tc, test_conv2d_chunks);
    tcase_add_test(tc, test_conv2d_chunked_equals_per_sample);
    tcase_add_test(tc, test_conv2d_threads_same_bits);
    tcase_add_loop_test(tc, test_conv2d_direct, 0, 3);
    tcase_add_test(tc, test_conv2d_direct_threads_same_bits);
    tcase_add_test(tc, test_conv2d_fused_activation);
    tcase_add_test(tc, test_conv2d_no_dx);
    tcase_add_test(tc, test_conv_errors);
    tcase_add_test(tc, test_conv_transpose);
    tcase_add_test(tc, test_depthwise_layer);
    tcase_add_test(tc, test_separable_layer);
    tcase_add_test(tc, test_conv1d_transpose_layer);
    tcase_add_test(tc, test_depthwise_separable_conv1d);
    tcase_add_test(tc, test_conv3d_layer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
