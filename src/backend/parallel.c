/* parallel.c - a small spin-then-sleep worker pool. Between the back-to-back operations of
 * a training step the workers spin briefly, so handing out work costs well under a
 * microsecond; longer waits yield the core (another process may need it), and idle
 * workers sleep on a condition variable. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "parallel.h"

#ifdef CT_HAVE_OPENBLAS
#include <cblas.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#define CT_MAX_THREADS 256
#define SPIN_ROUNDS 200000 /* rounds of waiting before a worker sleeps */
#define PAUSE_ROUNDS 2000  /* rounds of pure spinning before waiting yields the core */
/* Chunks a job is cut into per thread (at most; never below `grain` items each): enough
 * that a thread on a busy core leaves its share to the others. */
#define CHUNKS_PER_THREAD 4

typedef struct pool {
    int threads;                 /* including the caller */
    pthread_t tid[CT_MAX_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint_fast64_t generation; /* bumped for each job (and to stop) */
    atomic_int pending;          /* workers still running the current job */
    atomic_int sleeping;
    atomic_bool stop;
    uint_fast64_t start_generation; /* the generation new workers start from */
    /* the current job: n items in `chunks` contiguous chunks, taken in turn by whichever
     * thread is free (next: the first chunk not yet taken) */
    ct_task task;
    void *ctx;
    int64_t n, chunks;
    atomic_int_fast64_t next;
} pool;

static pool the_pool = {.threads = 1,
                        .lock = PTHREAD_MUTEX_INITIALIZER,
                        .wake = PTHREAD_COND_INITIALIZER};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Takes chunks until none is left. A thread slowed by another process takes fewer, so
 * nobody waits for it; which thread runs a chunk never changes what the chunk computes. */
static void run_chunks(pool *p)
{
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (c >= p->chunks)
            return;
        int64_t begin = p->n * c / p->chunks, end = p->n * (c + 1) / p->chunks;
        if (begin < end)
            p->task(p->ctx, begin, end);
    }
}

void ct_flush_denormals(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* flush-to-zero (bit 15) and denormals-are-zero (bit 6) */
    _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
}

ct_fp_state ct_fp_enter(void)
{
    ct_fp_state s = {0};
#if defined(__x86_64__) || defined(__i386__)
    s.csr = _mm_getcsr();
#endif
    ct_flush_denormals();
    return s;
}

void ct_fp_leave(ct_fp_state saved)
{
#if defined(__x86_64__) || defined(__i386__)
    const unsigned flags = 0x3f; /* the six sticky exception flags */
    _mm_setcsr((saved.csr & ~flags) | ((saved.csr | _mm_getcsr()) & flags));
#else
    (void)saved;
#endif
}

static void *worker(void *arg)
{
    pool *p = &the_pool;
    ct_flush_denormals();
    (void)arg;
    /* Not the current generation: a job may already have been handed out before this
     * thread got to run. */
    uint_fast64_t seen = p->start_generation;
    for (;;) {
        uint_fast64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ROUNDS) {
                /* Yield once the wait grows: on a busy machine the thread we wait for
                 * may need this core. */
                if (spins < PAUSE_ROUNDS)
                    cpu_relax();
                else
                    sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleeping, 1);
            while (atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->lock);
        }
        seen = g;
        if (atomic_load(&p->stop))
            return NULL;
        run_chunks(p);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

static void stop_workers(pool *p)
{
    atomic_store(&p->stop, true);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->threads; i++)
        pthread_join(p->tid[i], NULL);
    atomic_store(&p->stop, false);
    p->threads = 1;
}

void ct_threads_set(int n)
{
    pool *p = &the_pool;
    ct_flush_denormals();
#ifdef CT_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
    if (n < 1)
        n = 1;
    if (n > CT_MAX_THREADS)
        n = CT_MAX_THREADS;
    if (n == p->threads)
        return;
    stop_workers(p);
    p->start_generation = atomic_load(&p->generation);
    for (int i = 1; i < n; i++) {
        if (pthread_create(&p->tid[i], NULL, worker, NULL) != 0)
            break; /* fewer threads than asked: still correct */
        p->threads = i + 1;
    }
}

int ct_threads_get(void) { return the_pool.threads; }

void ct_parallel_for(int64_t n, int64_t grain, ct_task task, void *ctx)
{
    pool *p = &the_pool;
    int64_t chunks = grain > 0 ? n / grain : n;
    if (chunks > CHUNKS_PER_THREAD * p->threads)
        chunks = CHUNKS_PER_THREAD * p->threads;
    if (chunks <= 1 || p->threads == 1) {
        if (n > 0)
            task(ctx, 0, n);
        return;
    }
    p->task = task;
    p->ctx = ctx;
    p->n = n;
    p->chunks = chunks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    /* Sequentially consistent, so a worker going to sleep either sees the new generation
     * or is counted in `sleeping` and woken. */
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleeping)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    run_chunks(p);
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < PAUSE_ROUNDS)
            cpu_relax();
        else
            sched_yield();
    }
}
