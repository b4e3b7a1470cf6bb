/* show_layer.c - `ctrain show`: a 2-D convolution's filters, an input sample and the
 * layer's feature maps for it, drawn into one PNG (ct_experiment_show_layer). The layer's
 * output comes from the same kept-output run as `predict --outputs` (inspect.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_maps.h"
#include "inspect.h"
#include "parallel.h"

/* Tiles drawn at most per grid: a picture of 512 maps would be too big to read. */
#define MAX_TILES 256
#define CT_STR_(x) #x
#define CT_STR(x) CT_STR_(x)

typedef enum { CONV, DEPTHWISE, SEPARABLE } conv_kind;

static int conv_kind_of(const ct_layer *l, conv_kind *k, ct_error *err)
{
    const char *name = l->kind->name;
    if (!strcmp(name, "conv2d"))
        *k = CONV;
    else if (!strcmp(name, "depthwise_conv2d"))
        *k = DEPTHWISE;
    else if (!strcmp(name, "separable_conv2d"))
        *k = SEPARABLE;
    else
        return ct_err(err, CT_ERR_USAGE, "layer '%s' is a %s layer; show draws 2-D convolution "
                      "layers (Conv2D, DepthwiseConv2D, SeparableConv2D)", l->name,
                      l->kind->class_name);
    return 0;
}

/* The first model input the layer's value depends on (searching its sources depth first),
 * as -1 - k; 0 when none (a model of layers that take no input cannot be). */
static ct_source_id input_of(const ct_model *m, ct_source_id t, int depth)
{
    if (t < 0)
        return t;
    int i = ct_tensor_layer(m, t);
    for (int k = 0; k < m->layers[i].ninputs && depth < 10000; k++) {
        ct_source_id s = input_of(m, m->sources[i][k], depth + 1);
        if (s < 0)
            return s;
    }
    return 0;
}

/* The input sample as an image: (H, W, C) or (H, W); more than three channels, or two,
 * become their mean. Writes the grid over `img` (h x w x 1 or 3 floats, the caller's). */
static bool input_grid(const ct_shape *s, const float *v, float **img, ct_tile_grid *g)
{
    if (s->ndim != 2 && s->ndim != 3)
        return false;
    int64_t h = s->dim[0], w = s->dim[1], c = s->ndim == 3 ? s->dim[2] : 1;
    int64_t n = c == 3 ? 3 : 1;
    *img = malloc((size_t)(h * w * n) * sizeof **img);
    if (!*img)
        return false;
    for (int64_t p = 0; p < h * w; p++) {
        if (n == 3 || c == 1) {
            memcpy(*img + p * n, v + p * c, (size_t)n * sizeof **img);
            continue;
        }
        double sum = 0;
        for (int64_t k = 0; k < c; k++)
            sum += v[p * c + k];
        (*img)[p] = (float)(sum / (double)c);
    }
    *g = (ct_tile_grid){.v = *img, .h = h, .w = w, .n = n, .shown = n,
                        .colour = n == 3 ? CT_TILE_RGB : CT_TILE_GREY, .target = 112};
    return true;
}

/* Filter tiles (KH, KW, tiles) from the kernel on the host: a Conv2D's (KH, KW, CG, F)
 * averaged over its CG input channels, a depthwise kernel (KH, KW, C, M) as it is (tile
 * c * M + m: channel c's m-th kernel). Returns the tile count, or -1 when out of memory. */
static int64_t filter_tiles(conv_kind kind, const ct_shape *ks, const float *kernel,
                            float **tiles)
{
    int64_t taps = ks->dim[0] * ks->dim[1], cg = ks->dim[2], f = ks->dim[3];
    int64_t n = kind == CONV ? f : cg * f;
    *tiles = malloc((size_t)(taps * n) * sizeof **tiles);
    if (!*tiles)
        return -1;
    if (kind != CONV) {
        memcpy(*tiles, kernel, (size_t)(taps * n) * sizeof **tiles);
        return n;
    }
    for (int64_t p = 0; p < taps; p++)
        for (int64_t j = 0; j < f; j++) {
            double sum = 0;
            for (int64_t c = 0; c < cg; c++)
                sum += kernel[(p * cg + c) * f + j];
            (*tiles)[p * f + j] = (float)(sum / (double)cg);
        }
    return n;
}

static double largest_magnitude(const float *v, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] > m || -v[i] > m)
            m = v[i] > 0 ? v[i] : -v[i];
    return m;
}

static const char *kernel_caption(conv_kind kind, const ct_shape *ks, int64_t tiles,
                                  int64_t shown, double scale, char *buf, size_t len)
{
    char first[64] = "";
    if (shown < tiles)
        snprintf(first, sizeof first, " (the first %lld)", (long long)shown);
    int64_t kh = ks->dim[0], kw = ks->dim[1], cg = ks->dim[2];
    if (kind == CONV && cg > 1)
        snprintf(buf, len, "%lld filters %lldx%lld%s, each the mean over its %lld input "
                 "channels; blue < 0 < red, |w| up to %.3g", (long long)tiles, (long long)kh,
                 (long long)kw, first, (long long)cg, scale);
    else if (kind == CONV)
        snprintf(buf, len, "%lld filters %lldx%lld%s; blue < 0 < red, |w| up to %.3g",
                 (long long)tiles, (long long)kh, (long long)kw, first, scale);
    else
        snprintf(buf, len, "%lld depthwise kernels %lldx%lld%s (input channel c, multiplier "
                 "m: tile c*%lld+m)%s; blue < 0 < red, |w| up to %.3g", (long long)tiles,
                 (long long)kh, (long long)kw, first, (long long)ks->dim[3],
                 kind == SEPARABLE ? ", before the 1x1 pointwise mixing" : "", scale);
    return buf;
}

typedef struct texts {
    char title[512], subtitle[1024], input[256], kernel[384], maps[256];
} texts;

static void describe(const ct_experiment *ex, const ct_layer *l, const ct_shape *ks,
                     const ct_inspect_result *r, bool drawn_input, const char *input,
                     const char *x, int64_t sample, texts *t)
{
    const ct_model *m = ex->model;
    char in[128], out[128], kern[128];
    ct_shape_format_sample(&l->in_shape, in, sizeof in);
    ct_shape_format_sample(&r->shape[0], out, sizeof out);
    ct_shape_format_sample(ks, kern, sizeof kern);
    snprintf(t->title, sizeof t->title, "%s (%s): %s -> %s, %skernel %s", l->name,
             l->kind->class_name, in, out,
             strcmp(ct_layer_owner(l)->params[0].name, "depthwise_kernel") ? "" : "depthwise ",
             kern);
    /* The file's name alone: the folders say nothing about the picture. */
    const char *file = input ? input : ex->test.path;
    const char *slash = file ? strrchr(file, '/') : NULL;
    file = slash && slash[1] ? slash + 1 : file;
    const char *set = x ? x : !input && ex->test.x[0] ? ex->test.x[0] : NULL;
    ct_source_id s = r->n > 1 ? r->tensor[1] : 0;
    char what[256] = "";
    if (m->ninputs > 1 && s < 0)
        snprintf(what, sizeof what, ", input '%s'", m->input_names[-1 - s]);
    snprintf(t->subtitle, sizeof t->subtitle, "sample %lld of %s%s%s%s", (long long)sample,
             file ? file : "", set ? " (" : "", set ? set : "", set ? ")" : "");
    if (s < 0) {
        char shape[128];
        ct_shape_format_sample(&r->shape[1], shape, sizeof shape);
        if (drawn_input)
            snprintf(t->input, sizeof t->input, "the input%s %s, as the model reads it",
                     what, shape);
        else {
            size_t len = strlen(t->subtitle);
            snprintf(t->subtitle + len, sizeof t->subtitle - len, "; the model input%s %s "
                     "is not an image and is not drawn", what, shape);
        }
    }
    int64_t c = r->shape[0].dim[2];
    snprintf(t->maps, sizeof t->maps, "%lld feature maps %lldx%lld%s, each scaled to its "
             "own range (black: its least value, white: its largest)", (long long)c,
             (long long)r->shape[0].dim[0], (long long)r->shape[0].dim[1],
             c > MAX_TILES ? " (the first " CT_STR(MAX_TILES) " drawn)" : "");
}

static int show(ct_experiment *ex, const char *layer, const char *input, const char *x,
                int64_t sample, const char *out_png, ct_error *err)
{
    ct_model *m = ex->model;
    if (sample < 0)
        return ct_err(err, CT_ERR_USAGE, "the sample is a row number, 0 or more, not %lld",
                      (long long)sample);
    ct_source_id t;
    if (ct_inspect_find(m, layer, &t, err) < 0)
        return -1;
    if (t < 0 || ct_tensor_index(m, t) != 0)
        return ct_err(err, CT_ERR_USAGE, "'%s' is not a layer's output: show draws a "
                      "convolution layer, named as in the model", layer);
    const ct_layer *l = &m->layers[t], *owner = ct_layer_owner(l);
    conv_kind kind = CONV;
    ct_inspect_result r;
    if (conv_kind_of(l, &kind, err) < 0 || ct_inspect_resolve(m, 1, &layer, &r, err) < 0)
        return -1;
    ct_source_id in = input_of(m, t, 0);
    if (in < 0) { /* the input sample, from the same run */
        r.tensor[1] = in;
        r.shape[1] = *ct_tensor_shape(m, in);
        r.n = 2;
    }
    if (ct_inspect_run(ex, input, x, sample, &r, err) < 0)
        return -1;
    const ct_param *kp = &owner->params[0];
    int64_t ksize = ct_shape_size(&kp->shape);
    float *kernel = malloc((size_t)ksize * sizeof *kernel), *tiles = NULL, *img = NULL;
    int64_t ntiles = kernel ? 0 : -1;
    if (kernel) {
        m->be->download(kernel, kp->value, (size_t)ksize * sizeof *kernel);
        ntiles = filter_tiles(kind, &kp->shape, kernel, &tiles);
    }
    int rc = -1;
    ct_figure f = {0};
    texts tx;
    if (ntiles < 0) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        goto done;
    }
    bool drawn = r.n > 1 && input_grid(&r.shape[1], r.values[1], &img, &f.side[0]);
    describe(ex, l, &kp->shape, &r, drawn, input, x, sample, &tx);
    f.title = tx.title;
    f.subtitle = tx.subtitle;
    if (drawn)
        f.side[f.nside++].caption = tx.input;
    int64_t shown = ntiles < MAX_TILES ? ntiles : MAX_TILES;
    double scale = largest_magnitude(tiles, kp->shape.dim[0] * kp->shape.dim[1] * ntiles);
    f.side[f.nside++] = (ct_tile_grid){
        .caption = kernel_caption(kind, &kp->shape, ntiles, shown, scale, tx.kernel,
                                  sizeof tx.kernel),
        .v = tiles, .h = kp->shape.dim[0], .w = kp->shape.dim[1], .n = ntiles, .shown = shown,
        .colour = CT_TILE_DIVERGING, .labels = true, .target = 48};
    const ct_shape *ms = &r.shape[0];
    f.below[f.nbelow++] = (ct_tile_grid){
        .caption = tx.maps, .v = r.values[0], .h = ms->dim[0], .w = ms->dim[1], .n = ms->dim[2],
        .shown = ms->dim[2] < MAX_TILES ? ms->dim[2] : MAX_TILES, .colour = CT_TILE_GREY,
        .labels = true, .target = 80};
    rc = ct_figure_write_png(&f, out_png, err);
done:
    free(kernel);
    free(tiles);
    free(img);
    ct_inspect_free(&r);
    return rc;
}

int ct_experiment_show_layer(ct_experiment *ex, const char *layer, const char *input,
                             const char *x, int64_t sample, const char *out_png,
                             ct_error *err)
{
    ct_fp_state fp = ct_fp_enter();
    int rc = show(ex, layer, input, x, sample, out_png, err);
    ct_fp_leave(fp);
    return rc;
}
