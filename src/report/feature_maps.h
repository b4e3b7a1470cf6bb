/* feature_maps.h - one PNG picture of a convolution layer: grids of small image tiles
 * (filters, the input, the feature maps), each grid under a caption, a title above all.
 * Tiles are scaled up (or down) nearest-neighbour so a 3x3 kernel is as visible as a 26x26
 * map. Drawn with cairo. Nothing here knows about models: the caller hands over arrays.
 *
 * Ownership: every pointer in the structs is the caller's and only read. */
#ifndef CT_FEATURE_MAPS_H
#define CT_FEATURE_MAPS_H

#include <stdbool.h>
#include <stdint.h>

#include "ctrain.h"

/* How a tile's values become colours. */
typedef enum ct_tile_colour {
    CT_TILE_GREY,       /* grey, black at the tile's own minimum, white at its maximum */
    CT_TILE_DIVERGING,  /* blue below 0, white at 0, red above, one scale (the largest
                         * magnitude) for every tile of the grid, so filters compare */
    CT_TILE_RGB,        /* three tiles (channels) make one colour image, over their
                         * common range */
} ct_tile_colour;

/* A grid of tiles from one array of h x w x n values, channels last: tile k's pixel
 * (y, x) is v[(y * w + x) * n + k] (a sample's feature maps, a kernel's taps per filter).
 * The first `shown` tiles are drawn (CT_TILE_RGB: one image from channels 0 to 2). */
typedef struct ct_tile_grid {
    const char *caption;
    const float *v;
    int64_t h, w, n, shown;
    ct_tile_colour colour;
    bool labels;        /* the channel index under each tile */
    int target;         /* pixels the longer side of a tile is scaled up to, about */
} ct_tile_grid;

/* The picture: a title and a second line, then `side` grids in a row (the input and the
 * filters), then `below` grids one under another (the feature maps). */
#define CT_FIGURE_GRIDS 4
typedef struct ct_figure {
    const char *title, *subtitle;
    int nside, nbelow;
    ct_tile_grid side[CT_FIGURE_GRIDS], below[CT_FIGURE_GRIDS];
} ct_figure;

/* Draws f into the PNG file path (written beside it and renamed into place). Returns 0,
 * or -1 with err naming the file. */
int ct_figure_write_png(const ct_figure *f, const char *path, ct_error *err);

#endif
