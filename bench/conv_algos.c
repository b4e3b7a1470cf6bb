/* conv_algos.c - the CPU backend's convolution algorithms side by side: for each layer
 * shape below (the example models' and a few wider ones), the median time of a training
 * step's convolution (forward, then backward with dx and the kernel gradient) with im2col
 * + GEMM, with the direct kernels, and with Winograd F(2x2, 3x3) and F(4x4, 3x3) where they
 * apply, and the rate in GFLOP/s (the multiply-adds of a direct convolution, for all). It is how
 * backend.conv_algorithm: auto chooses (backend_cpu_conv.c), measured again.
 *
 *   make bench/conv_algos && bench/conv_algos [THREADS] [BATCH]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_cpu.h"
#include "backend_cpu_direct.h"
#include "parallel.h"

typedef struct shape {
    const char *where;
    int64_t h, w, c, f, k, stride;
    int same;
} shape;

static const shape shapes[] = {
    {"resnet stem", 28, 28, 1, 16, 3, 1, 1},
    {"resnet stage 1", 28, 28, 16, 16, 3, 1, 1},
    {"resnet stage 2 in", 28, 28, 16, 32, 3, 2, 1},
    {"resnet stage 2", 14, 14, 32, 32, 3, 1, 1},
    {"resnet stage 3", 7, 7, 64, 64, 3, 1, 1},
    {"cnn conv 1", 28, 28, 1, 32, 3, 1, 0},
    {"cnn conv 2", 13, 13, 32, 64, 3, 1, 0},
    {"cnn-bn block 1", 28, 28, 32, 32, 3, 1, 1},
    {"cnn-bn block 2", 14, 14, 64, 64, 3, 1, 1},
    {"wider", 14, 14, 128, 128, 3, 1, 1},
    {"wider", 7, 7, 256, 256, 3, 1, 1},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill(float *x, int64_t n, unsigned seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
}

/* Median seconds of one forward + backward over `reps` repetitions. */
static double time_step(const ct_window *w, int64_t f, int64_t rows, int reps)
{
    int64_t nx = rows * w->in_h * w->in_w * w->in_c, ny = rows * w->out_h * w->out_w * f;
    int64_t nk = w->k_h * w->k_w * w->in_c * f;
    int64_t nw = ct_cpu_conv_workspace(w, 1, f, rows);
    float *x = malloc(nx * sizeof(float)), *dx = malloc(nx * sizeof(float));
    float *y = malloc(ny * sizeof(float)), *dy = malloc(ny * sizeof(float));
    float *k = malloc(nk * sizeof(float)), *dk = malloc(nk * sizeof(float));
    float *work = malloc(nw * sizeof(float));
    double t[64];
    fill(x, nx, 1), fill(k, nk, 2);
    ct_act linear = {.kind = CT_ACT_LINEAR};
    for (int r = 0; r < reps + 1; r++) {
        fill(dy, ny, 3);
        double t0 = now();
        ct_cpu_conv_forward(w, 1, f, x, k, NULL, linear, y, rows, work);
        ct_cpu_conv_backward(w, 1, f, x, k, y, linear, dy, dx, dk, NULL, rows, work);
        if (r > 0) /* the first run warms caches and the thread pool */
            t[r - 1] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    free(x), free(dx), free(y), free(dy), free(k), free(dk), free(work);
    return t[reps / 2];
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int64_t rows = argc > 2 ? atoll(argv[2]) : 128;
    if (threads < 1 || rows < 1) {
        fprintf(stderr, "usage: conv_algos [THREADS] [BATCH]\n");
        return 2;
    }
    ct_threads_set(threads);
    printf("%d thread%s, batch %lld, direct kernels of %d floats%s\n", threads,
           threads == 1 ? "" : "s", (long long)rows, ct_cpu_direct_width(),
           ct_cpu_direct_width() ? "" : " (none on this CPU: im2col only)");
    printf("%-18s %-22s %10s %8s %10s %8s %10s %8s %10s %8s %s\n", "layer", "shape",
           "im2col ms", "GFLOP/s", "direct ms", "GFLOP/s", "wino 2x2", "GFLOP/s", "wino 4x4",
           "GFLOP/s", "auto");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        int64_t pad = s->same ? (s->k - 1) / 2 : 0;
        int64_t oh = s->same ? (s->h + s->stride - 1) / s->stride : (s->h - s->k) / s->stride + 1;
        int64_t ow = s->same ? (s->w + s->stride - 1) / s->stride : (s->w - s->k) / s->stride + 1;
        ct_window w = {.in_h = s->h, .in_w = s->w, .in_c = s->c, .out_h = oh, .out_w = ow,
                       .k_h = s->k, .k_w = s->k, .stride_h = s->stride, .stride_w = s->stride,
                       .dil_h = 1, .dil_w = 1, .pad_top = pad, .pad_left = pad};
        /* 3 products (y, dx, dk) of 2 * positions * kdim * filters each */
        double flop = 6.0 * (double)rows * oh * ow * s->k * s->k * s->c * s->f;
        int reps = flop * 20 > 5e10 ? 7 : 21;
        w.algo = CT_CONV_IM2COL;
        double ti = time_step(&w, s->f, rows, reps), td = 0, tw = 0, tw4 = 0;
        w.algo = ct_cpu_conv_algorithm(&w, 1, s->f, CT_CONV_DIRECT);
        if (w.algo == CT_CONV_DIRECT)
            td = time_step(&w, s->f, rows, reps);
        w.algo = ct_cpu_conv_algorithm(&w, 1, s->f, CT_CONV_WINOGRAD);
        if (w.algo == CT_CONV_WINOGRAD)
            tw = time_step(&w, s->f, rows, reps);
        w.algo = ct_cpu_conv_algorithm(&w, 1, s->f, CT_CONV_WINOGRAD4);
        if (w.algo == CT_CONV_WINOGRAD4)
            tw4 = time_step(&w, s->f, rows, reps);
        char geo[64], dms[16] = "-", dr[16] = "-", wms[16] = "-", wr[16] = "-";
        char w4ms[16] = "-", w4r[16] = "-";
        snprintf(geo, sizeof geo, "%lldx%lldx%lld %lldx%lld/%lld -> %lld", (long long)s->h,
                 (long long)s->w, (long long)s->c, (long long)s->k, (long long)s->k,
                 (long long)s->stride, (long long)s->f);
        if (td > 0)
            snprintf(dms, sizeof dms, "%.2f", 1e3 * td), snprintf(dr, sizeof dr, "%.1f", flop / td / 1e9);
        /* Winograd's rate counts the products a direct convolution would take. */
        if (tw > 0)
            snprintf(wms, sizeof wms, "%.2f", 1e3 * tw), snprintf(wr, sizeof wr, "%.1f", flop / tw / 1e9);
        if (tw4 > 0)
            snprintf(w4ms, sizeof w4ms, "%.2f", 1e3 * tw4),
                snprintf(w4r, sizeof w4r, "%.1f", flop / tw4 / 1e9);
        const char *chosen = ct_conv_algo_name(ct_cpu_conv_algorithm(&w, 1, s->f, CT_CONV_AUTO));
        printf("%-18s %-22s %10.2f %8.1f %10s %8s %10s %8s %10s %8s %s\n", s->where, geo,
               1e3 * ti, flop / ti / 1e9, dms, dr, wms, wr, w4ms, w4r, chosen);
    }
    return 0;
}
