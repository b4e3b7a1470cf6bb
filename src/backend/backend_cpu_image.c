/* backend_cpu_image.c - the CPU backend's preprocessing and augmentation ops: rescaling,
 * normalization, the affine image transforms of image_aug.h and random contrast. Images
 * are independent, so the transforms run one image per task on the worker threads. */
#include <math.h>
#include <string.h>

#include "backend_cpu.h"
#include "image_aug.h"
#include "parallel.h"

void ct_cpu_scale_shift(const float *x, float *y, int64_t n, float scale, float offset)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * scale + offset;
}

typedef struct aug_job {
    const ct_image_aug *a;
    const float *in;
    float *out;
    uint64_t key;
} aug_job;

/* The taps along one axis of an axis-aligned transform: source indices (-1: the fill
 * value) and weights, as ct_aug_taps computes them. */
#define AUG_MAX_COLS 512

typedef struct axis_taps {
    int64_t idx[2];
    float wt[2];
} axis_taps;

static void axis_taps_of(const ct_image_aug *a, float scale, float shift, int64_t o, int64_t n,
                         axis_taps *t)
{
    float s = scale * (float)o + shift;
    if (a->nearest) {
        t->idx[0] = ct_aug_index(a->fill, (int64_t)floorf(s + 0.5f), n);
        t->wt[0] = 1.0f;
        t->idx[1] = -1, t->wt[1] = 0.0f;
        return;
    }
    float f = floorf(s), frac = s - f;
    for (int d = 0; d < 2; d++) {
        t->idx[d] = ct_aug_index(a->fill, (int64_t)f + d, n);
        t->wt[d] = d ? frac : 1.0f - frac;
    }
}

/* Flips, translations, zooms and crops keep the axes apart (a1 = b0 = 0): a source column
 * depends on the output column only and a source row on the output row, so the taps are
 * found once per row and column rather than once per pixel. The weights, their products
 * and the order of the sum are ct_aug_taps's, so the result is the general path's. */
static void aug_image_separable(const ct_image_aug *a, const float m[6], const float *x,
                                float *y, axis_taps *cols)
{
    int64_t c = a->c;
    for (int64_t ox = 0; ox < a->ow; ox++)
        axis_taps_of(a, m[0], m[2], ox, a->w, &cols[ox]);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        axis_taps rt;
        axis_taps_of(a, m[4], m[5], oy, a->h, &rt);
        for (int64_t ox = 0; ox < a->ow; ox++) {
            const axis_taps *ct = &cols[ox];
            float *yp = y + (oy * a->ow + ox) * c;
            for (int64_t k = 0; k < c; k++)
                yp[k] = 0.0f;
            for (int dy = 0; dy < (a->nearest ? 1 : 2); dy++)
                for (int dx = 0; dx < (a->nearest ? 1 : 2); dx++) {
                    float wv = a->nearest ? 1.0f : ct->wt[dx] * rt.wt[dy];
                    if (wv == 0.0f)
                        continue;
                    const float *xp = ct->idx[dx] < 0 || rt.idx[dy] < 0
                                          ? NULL
                                          : x + (rt.idx[dy] * a->w + ct->idx[dx]) * c;
                    for (int64_t k = 0; k < c; k++)
                        yp[k] += wv * (xp ? xp[k] : a->fill_value);
                }
        }
    }
}

/* One image forward: each output pixel gathers its taps. cols: a->ow entries of room. */
static void aug_image(const ct_image_aug *a, const float *x, float *y, uint64_t key, int64_t r,
                      axis_taps *cols)
{
    float m[6], wt[4];
    int64_t off[4], c = a->c;
    ct_aug_matrix(a, key, r, m);
    if (m[1] == 0.0f && m[3] == 0.0f && cols) {
        aug_image_separable(a, m, x, y, cols);
        return;
    }
    for (int64_t oy = 0; oy < a->oh; oy++) {
        for (int64_t ox = 0; ox < a->ow; ox++) {
            float *yp = y + (oy * a->ow + ox) * c;
            int n = ct_aug_taps(a, m, ox, oy, off, wt);
            for (int64_t k = 0; k < c; k++)
                yp[k] = 0.0f;
            for (int t = 0; t < n; t++) {
                const float *xp = off[t] < 0 ? NULL : x + off[t];
                for (int64_t k = 0; k < c; k++)
                    yp[k] += wt[t] * (xp ? xp[k] : a->fill_value);
            }
        }
    }
}

/* One image backward: each output pixel's gradient goes back to its taps (the fill value
 * is a constant, so its share goes nowhere). */
static void aug_image_backward(const ct_image_aug *a, const float *dy, float *dx, uint64_t key,
                               int64_t r)
{
    float m[6], wt[4];
    int64_t off[4], c = a->c;
    ct_aug_matrix(a, key, r, m);
    memset(dx, 0, (size_t)(a->h * a->w * c) * sizeof *dx);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        for (int64_t ox = 0; ox < a->ow; ox++) {
            const float *gp = dy + (oy * a->ow + ox) * c;
            int n = ct_aug_taps(a, m, ox, oy, off, wt);
            for (int t = 0; t < n; t++) {
                if (off[t] < 0)
                    continue;
                float *dp = dx + off[t];
                for (int64_t k = 0; k < c; k++)
                    dp[k] += wt[t] * gp[k];
            }
        }
    }
}

static void aug_task(void *ctx, int64_t begin, int64_t end)
{
    const aug_job *j = ctx;
    int64_t in = j->a->h * j->a->w * j->a->c, out = j->a->oh * j->a->ow * j->a->c;
    /* Column taps for the separable path, on the stack (a step allocates nothing); wider
     * images take the general path, with the same results. */
    axis_taps cols[AUG_MAX_COLS];
    for (int64_t r = begin; r < end; r++)
        aug_image(j->a, j->in + r * in, j->out + r * out, j->key, r,
                  j->a->ow <= AUG_MAX_COLS ? cols : NULL);
}

static void aug_backward_task(void *ctx, int64_t begin, int64_t end)
{
    const aug_job *j = ctx;
    int64_t in = j->a->h * j->a->w * j->a->c, out = j->a->oh * j->a->ow * j->a->c;
    for (int64_t r = begin; r < end; r++)
        aug_image_backward(j->a, j->in + r * out, j->out + r * in, j->key, r);
}

void ct_cpu_image_aug(const ct_image_aug *a, const float *x, float *y, int64_t rows,
                      uint64_t key)
{
    aug_job j = {a, x, y, key};
    ct_parallel_for(rows, 8, aug_task, &j);
}

void ct_cpu_image_aug_backward(const ct_image_aug *a, const float *dy, float *dx, int64_t rows,
                               uint64_t key)
{
    aug_job j = {a, dy, dx, key};
    ct_parallel_for(rows, 8, aug_backward_task, &j);
}

/* ---- random contrast ---------------------------------------------------------------- */

static float contrast_factor(uint64_t key, int64_t r, float lo, float hi)
{
    return ct_aug_uniform(key, r, 0, 1.0f - lo, 1.0f + hi);
}

void ct_cpu_contrast(const float *x, float *y, int64_t rows, int64_t spatial, int64_t c,
                     float lo, float hi, float vmin, float vmax, uint64_t key)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * spatial * c;
        float *yr = y + r * spatial * c, f = contrast_factor(key, r, lo, hi);
        for (int64_t k = 0; k < c; k++) {
            double sum = 0.0;
            for (int64_t p = 0; p < spatial; p++)
                sum += xr[p * c + k];
            float mean = (float)(sum / (double)spatial);
            for (int64_t p = 0; p < spatial; p++) {
                float v = (xr[p * c + k] - mean) * f + mean;
                yr[p * c + k] = v < vmin ? vmin : v > vmax ? vmax : v;
            }
        }
    }
}

/* d/dx of (x - mean) f + mean: f on the value itself, (1 - f) / spatial through the mean;
 * where the clip bites the gradient is zero. */
void ct_cpu_contrast_backward(const float *y, const float *dy, float *dx, int64_t rows,
                              int64_t spatial, int64_t c, float lo, float hi, float vmin,
                              float vmax, uint64_t key)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * spatial * c, *gr = dy + r * spatial * c;
        float *dr = dx + r * spatial * c, f = contrast_factor(key, r, lo, hi);
        for (int64_t k = 0; k < c; k++) {
            double sum = 0.0;
            for (int64_t p = 0; p < spatial; p++) {
                float v = yr[p * c + k];
                sum += v > vmin && v < vmax ? gr[p * c + k] : 0.0f;
            }
            float shared = (1.0f - f) * (float)(sum / (double)spatial);
            for (int64_t p = 0; p < spatial; p++) {
                float v = yr[p * c + k];
                float g = v > vmin && v < vmax ? gr[p * c + k] : 0.0f;
                dr[p * c + k] = f * g + shared;
            }
        }
    }
}

/* ---- normalization -------------------------------------------------------------------- */

/* Two passes (mean, then squared deviations) in double: data far from zero (raw pixel
 * values, prices) keep their variance. */
void ct_cpu_channel_moments(const float *x, int64_t rows, int64_t c, float *mean, float *m2)
{
    for (int64_t k = 0; k < c; k++) {
        double s = 0.0, q = 0.0;
        for (int64_t r = 0; r < rows; r++)
            s += x[r * c + k];
        double m = rows > 0 ? s / (double)rows : 0.0;
        for (int64_t r = 0; r < rows; r++) {
            double d = x[r * c + k] - m;
            q += d * d;
        }
        mean[k] = (float)m;
        m2[k] = (float)q;
    }
}

/* Keras divides by max(sqrt(variance), epsilon) with epsilon 1e-7. */
static float norm_scale(float var)
{
    float sd = sqrtf(var);
    return sd > 1e-7f ? sd : 1e-7f;
}

void ct_cpu_normalize_channels(const float *x, float *y, int64_t rows, int64_t c,
                               const float *mean, const float *var, bool invert)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < c; k++) {
            float v = x[r * c + k], sd = norm_scale(var[k]);
            y[r * c + k] = invert ? mean[k] + v * sd : (v - mean[k]) / sd;
        }
}

void ct_cpu_normalize_channels_backward(const float *dy, float *dx, int64_t rows, int64_t c,
                                        const float *var, bool invert)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < c; k++) {
            float sd = norm_scale(var[k]);
            dx[r * c + k] = invert ? dy[r * c + k] * sd : dy[r * c + k] / sd;
        }
}
