/* image_aug.h - the geometry of the image augmentation layers (layers/preprocessing.c),
 * shared by the CPU and CUDA backends so both draw the same transform for a sample.
 *
 * Every geometric augmentation (flip, translation, zoom, rotation, crop) is Keras's affine
 * transform: output pixel (col x, row y) samples the input at
 *     (a0 x + a1 y + a2, b0 x + b1 y + b2)
 * with bilinear or nearest interpolation; a neighbour outside the image is read through the
 * fill mode. Sample r's matrix is drawn from counter-based uniforms (key, 8 r + k), so it
 * depends on the key (experiment seed, layer, step) and the sample alone: the backward pass
 * recomputes it rather than storing it, and a resumed run repeats it bit for bit. */
#ifndef CT_IMAGE_AUG_H
#define CT_IMAGE_AUG_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "rng.h"

typedef enum ct_fill_mode {
    CT_FILL_REFLECT = 0, /* d c b a | a b c d | d c b a (Keras's default) */
    CT_FILL_WRAP,        /* a b c d | a b c d | a b c d */
    CT_FILL_CONSTANT,    /* fill_value outside */
    CT_FILL_NEAREST,     /* a a a a | a b c d | d d d d */
} ct_fill_mode;

typedef enum ct_aug_kind {
    CT_AUG_FLIP = 0,
    CT_AUG_TRANSLATE,
    CT_AUG_ZOOM,
    CT_AUG_ROTATE,
    CT_AUG_CROP,       /* a random window of oh x ow (training) */
    CT_AUG_RESIZE,     /* the largest centred window of the output's aspect, resized (a
                        * random crop at inference, as Keras) */
} ct_aug_kind;

typedef struct ct_image_aug {
    int kind;                 /* ct_aug_kind */
    int64_t h, w, c;          /* input image */
    int64_t oh, ow;           /* output image: h, w except for a crop */
    bool flip_h, flip_v;      /* flip: which axes may flip (each with probability 1/2) */
    /* translate: fractions of height (0) and width (1); zoom: factors (1 + draw) of height
     * and width; rotate: fractions of a full turn in lo[0], hi[0]. */
    float lo[2], hi[2];
    bool zoom_same;           /* zoom: no width_factor, the width zooms as the height */
    bool nearest;             /* nearest-neighbour interpolation, else bilinear */
    int fill;                 /* ct_fill_mode */
    float fill_value;         /* for CT_FILL_CONSTANT */
} ct_image_aug;

/* Uniform in [lo, hi) for sample r's k-th draw. */
CT_RNG_INLINE float ct_aug_uniform(uint64_t key, int64_t r, int k, float lo, float hi)
{
    return lo + (hi - lo) * ct_rng_uniform(key, (uint64_t)r * 8u + (uint64_t)k);
}

/* Sample r's matrix m = {a0, a1, a2, b0, b1, b2}. */
CT_RNG_INLINE void ct_aug_matrix(const ct_image_aug *a, uint64_t key, int64_t r, float m[6])
{
    float w = (float)a->w, h = (float)a->h, cx = (w - 1.0f) * 0.5f, cy = (h - 1.0f) * 0.5f;
    m[0] = 1.0f, m[1] = 0.0f, m[2] = 0.0f, m[3] = 0.0f, m[4] = 1.0f, m[5] = 0.0f;
    switch (a->kind) {
    case CT_AUG_FLIP:
        /* Keras 3 flips where uniform <= 0.5, one draw for both axes: horizontal_and_vertical
         * leaves an image as it is or flips it both ways. */
        if (ct_aug_uniform(key, r, 0, 0.0f, 1.0f) <= 0.5f) {
            if (a->flip_h)
                m[0] = -1.0f, m[2] = w - 1.0f;
            if (a->flip_v)
                m[4] = -1.0f, m[5] = h - 1.0f;
        }
        break;
    case CT_AUG_TRANSLATE: /* shift by (dx, dy): read from (x - dx, y - dy) */
        m[5] = -ct_aug_uniform(key, r, 0, a->lo[0], a->hi[0]) * h;
        m[2] = -ct_aug_uniform(key, r, 1, a->lo[1], a->hi[1]) * w;
        break;
    case CT_AUG_ZOOM: { /* about the centre; a factor above 1 zooms out */
        float zy = 1.0f + ct_aug_uniform(key, r, 0, a->lo[0], a->hi[0]);
        float zx = a->zoom_same ? zy : 1.0f + ct_aug_uniform(key, r, 1, a->lo[1], a->hi[1]);
        m[0] = zx, m[2] = cx * (1.0f - zx);
        m[4] = zy, m[5] = cy * (1.0f - zy);
        break;
    }
    case CT_AUG_ROTATE: { /* about the centre, counter-clockwise for a positive draw */
        float t = ct_aug_uniform(key, r, 0, a->lo[0], a->hi[0]) * 6.283185307179586f;
        float cs = cosf(t), sn = sinf(t);
        m[0] = cs, m[1] = -sn, m[2] = cx - cx * cs + cy * sn;
        m[3] = sn, m[4] = cs, m[5] = cy - cx * sn - cy * cs;
        break;
    }
    case CT_AUG_CROP: { /* a whole-pixel offset in [0, h - oh] x [0, w - ow] */
        float oy = floorf(ct_aug_uniform(key, r, 0, 0.0f, (float)(a->h - a->oh + 1)));
        float ox = floorf(ct_aug_uniform(key, r, 1, 0.0f, (float)(a->w - a->ow + 1)));
        m[2] = ox, m[5] = oy;
        break;
    }
    case CT_AUG_RESIZE: { /* half-pixel centres, as an image resize */
        float ar = (float)a->oh / (float)a->ow;
        float ch = fminf(h, w * ar), cw = fminf(w, h / ar);
        float sy = ch / (float)a->oh, sx = cw / (float)a->ow;
        m[0] = sx, m[2] = 0.5f * sx - 0.5f + 0.5f * (w - cw);
        m[4] = sy, m[5] = 0.5f * sy - 0.5f + 0.5f * (h - ch);
        break;
    }
    }
}

/* An index into [0, n) through the fill mode; -1 for constant fill outside. */
CT_RNG_INLINE int64_t ct_aug_index(int fill, int64_t i, int64_t n)
{
    if (i >= 0 && i < n)
        return i;
    switch (fill) {
    case CT_FILL_REFLECT: {
        int64_t p = 2 * n, k = i % p;
        if (k < 0)
            k += p;
        return k < n ? k : p - 1 - k;
    }
    case CT_FILL_WRAP: {
        int64_t k = i % n;
        return k < 0 ? k + n : k;
    }
    case CT_FILL_NEAREST:
        return i < 0 ? 0 : n - 1;
    default:
        return -1;
    }
}

/* The (up to) four input pixels output pixel (ox, oy) of a sample with matrix m reads:
 * offsets into the image (pixel index times c; -1 for the fill value) and their weights.
 * Returns how many. */
CT_RNG_INLINE int ct_aug_taps(const ct_image_aug *a, const float m[6], int64_t ox, int64_t oy,
                              int64_t off[4], float wt[4])
{
    float sx = m[0] * (float)ox + m[1] * (float)oy + m[2];
    float sy = m[3] * (float)ox + m[4] * (float)oy + m[5];
    if (a->nearest) {
        int64_t ix = ct_aug_index(a->fill, (int64_t)floorf(sx + 0.5f), a->w);
        int64_t iy = ct_aug_index(a->fill, (int64_t)floorf(sy + 0.5f), a->h);
        off[0] = ix < 0 || iy < 0 ? -1 : (iy * a->w + ix) * a->c;
        wt[0] = 1.0f;
        return 1;
    }
    float fx = floorf(sx), fy = floorf(sy), tx = sx - fx, ty = sy - fy;
    int n = 0;
    for (int dy = 0; dy < 2; dy++) {
        for (int dx = 0; dx < 2; dx++) {
            float wv = (dx ? tx : 1.0f - tx) * (dy ? ty : 1.0f - ty);
            if (wv == 0.0f) /* exact integer coordinates: one tap, and no stray fill */
                continue;
            int64_t ix = ct_aug_index(a->fill, (int64_t)fx + dx, a->w);
            int64_t iy = ct_aug_index(a->fill, (int64_t)fy + dy, a->h);
            off[n] = ix < 0 || iy < 0 ? -1 : (iy * a->w + ix) * a->c;
            wt[n++] = wv;
        }
    }
    return n;
}

#endif
