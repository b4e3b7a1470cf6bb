/* sgemm.c - the machine's single-precision GEMM rate through OpenBLAS, the ceiling that
 * ctrain's dense and convolution layers (which lower to SGEMM) are measured against.
 *
 *   cc -O2 bench/sgemm.c -o sgemm -lopenblas && ./sgemm [N] [THREADS]
 *
 * Prints the OpenBLAS core, then GFLOP/s (2*N^3 per product, best of several) at 1 thread
 * and at THREADS (default: the number of online processors). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best rate over a few products: the first warms caches and starts the thread pool. */
static double rate(int n, int threads, const float *a, const float *b, float *c)
{
    openblas_set_num_threads(threads);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
                    0.0f, c, n);
        t = now() - t;
        double gflops = 2.0 * n * n * (double)n / t * 1e-9;
        if (gflops > best)
            best = gflops;
    }
    return best;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2048;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = argc > 2 ? atoi(argv[2]) : (cores > 0 ? (int)cores : 1);
    if (n <= 0 || threads <= 0) {
        fprintf(stderr, "usage: %s [N] [THREADS]\n", argv[0]);
        return 2;
    }
    size_t count = (size_t)n * (size_t)n;
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
    float *c = malloc(count * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < count; i++) {
        a[i] = (float)((i * 7 + 3) % 13) / 13.0f - 0.5f;
        b[i] = (float)((i * 5 + 1) % 11) / 11.0f - 0.5f;
    }
    printf("openblas core %s\n", openblas_get_corename());
    printf("sgemm %d^3 threads 1: %.1f GFLOP/s\n", n, rate(n, 1, a, b, c));
    printf("sgemm %d^3 threads %d: %.1f GFLOP/s\n", n, threads, rate(n, threads, a, b, c));
    free(a);
    free(b);
    free(c);
    return 0;
}
