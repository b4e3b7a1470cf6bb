/* thread_tuner.h - chooses how many of the configured threads a training run uses, from
 * the step times it measures. With another process on one of the cores, a parallel step
 * waits for the thread that shares that core (descheduled for a whole time slice while it
 * holds a chunk), and fewer threads can be faster than all. Every CPU op computes the same
 * bits on any thread count (parallel.h), so the choice changes speed only, never results.
 *
 * The tuner measures each candidate count (all, all - 1, half, one) over a short window of
 * steps (cut to 3 when each of them is 10 % slower than the fastest so far), keeps the
 * fastest, and measures again after a hold long enough that probing costs under about 1 %
 * of the run, or at once when the step time grows by a third (another process started).
 * The caller owns the struct (no allocation); ct_tuner_step only returns the thread count
 * to use next, and the caller applies it (ct_threads_set), so the policy is tested without
 * threads or clocks. */
#ifndef CT_THREAD_TUNER_H
#define CT_THREAD_TUNER_H

#include <stdbool.h>
#include <stdint.h>

#define CT_TUNER_CANDIDATES 4
#define CT_TUNER_WINDOW 9 /* steps measured per candidate (after one warm-up step) */

typedef struct ct_tuner {
    int cand[CT_TUNER_CANDIDATES]; /* distinct counts, largest first */
    int ncand;                     /* 0 or 1: nothing to choose */
    int probing;                   /* index of the candidate measured now, or -1 */
    int max;                       /* the configured count */
    int current;                   /* the thread count in use */
    int filled;                    /* step times in window[] (the warm-up not counted) */
    bool warm;                     /* the step after a change was skipped */
    double window[CT_TUNER_WINDOW];
    double median[CT_TUNER_CANDIDATES];
    double chosen;        /* the chosen count's median step time */
    double probe_at;      /* when (ct_now's clock) the next probe starts */
    double probe_started; /* when the current probe began; < 0 before the first step */
    int64_t switches;     /* how many times the count changed */
    int64_t steps[2];     /* steps run with all threads, and with fewer */
} ct_tuner;

/* Sets up a tuner for up to max_threads threads; with adapt false (or one thread) it
 * always answers max_threads. */
void ct_tuner_init(ct_tuner *t, int max_threads, bool adapt);
/* Records one training step that took `seconds` (compute only, not waiting for data),
 * ending at time `now` (seconds, any monotonic origin). Returns the thread count for the
 * next step. */
int ct_tuner_step(ct_tuner *t, double now, double seconds);

#endif
