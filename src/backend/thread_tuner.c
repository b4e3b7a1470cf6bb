/* thread_tuner.c - the step-time policy of thread_tuner.h. */
#include <string.h>

#include "thread_tuner.h"

/* A smaller count must beat a larger one by this much to be chosen: noise alone should not
 * take threads away. */
#define MARGIN 0.97
/* The step time, over the chosen count's, that starts a new probe at once. */
#define GROWTH 1.33
/* Probing may cost this share of the time between probes... */
#define PROBE_SHARE 0.01
/* ...but the hold stays within these bounds (seconds). */
#define HOLD_MIN 2.0
#define HOLD_MAX 60.0
/* A candidate whose first EARLY steps are all slower than the fastest median so far by
 * this much has lost: the rest of its window is not run (a probe of one thread on a quiet
 * machine cost most of what probing cost). */
#define EARLY 3
#define LOSING 1.10

void ct_tuner_init(ct_tuner *t, int max_threads, bool adapt)
{
    memset(t, 0, sizeof *t);
    t->max = t->current = max_threads < 1 ? 1 : max_threads;
    t->probing = -1;
    t->probe_started = -1;
    if (!adapt || t->current == 1)
        return;
    const int want[CT_TUNER_CANDIDATES] = {t->current, t->current - 1, t->current / 2, 1};
    for (int i = 0; i < CT_TUNER_CANDIDATES; i++)
        if (want[i] >= 1 && (t->ncand == 0 || want[i] < t->cand[t->ncand - 1]))
            t->cand[t->ncand++] = want[i];
    t->probing = 0; /* measure from the first step */
}

static double median(const double *v, int n)
{
    double s[CT_TUNER_WINDOW];
    memcpy(s, v, (size_t)n * sizeof *s);
    for (int i = 1; i < n; i++) /* insertion sort: n is 9 */
        for (int j = i; j > 0 && s[j] < s[j - 1]; j--) {
            double x = s[j];
            s[j] = s[j - 1];
            s[j - 1] = x;
        }
    return s[n / 2];
}

static void use(ct_tuner *t, int threads)
{
    if (threads != t->current)
        t->switches++;
    t->current = threads;
    t->filled = 0;
    t->warm = false;
}

static void start_probe(ct_tuner *t, double now)
{
    t->probing = 0;
    t->probe_started = now;
    use(t, t->cand[0]);
}

/* All candidates measured: keep the fastest, and wait before measuring again in
 * proportion to what measuring cost. */
static void finish_probe(ct_tuner *t, double now)
{
    int best = 0;
    for (int i = 1; i < t->ncand; i++)
        if (t->median[i] < t->median[best] * MARGIN)
            best = i;
    t->probing = -1;
    t->chosen = t->median[best];
    double hold = (now - t->probe_started) / PROBE_SHARE;
    hold = hold < HOLD_MIN ? HOLD_MIN : hold > HOLD_MAX ? HOLD_MAX : hold;
    t->probe_at = now + hold;
    use(t, t->cand[best]);
}

/* The candidate being probed has clearly lost after its first EARLY steps. */
static bool losing(const ct_tuner *t)
{
    double best = t->median[0];
    for (int i = 1; i < t->probing; i++)
        best = t->median[i] < best ? t->median[i] : best;
    for (int i = 0; i < t->filled; i++)
        if (t->window[i] <= best * LOSING)
            return false;
    return true;
}

/* A window of `filled` step times is complete (or cut short by losing). */
static void window_done(ct_tuner *t, double now)
{
    double m = median(t->window, t->filled);
    t->filled = 0;
    if (t->probing >= 0) {
        t->median[t->probing] = m;
        if (++t->probing < t->ncand)
            use(t, t->cand[t->probing]);
        else
            finish_probe(t, now);
    } else if (now >= t->probe_at || m > t->chosen * GROWTH) {
        start_probe(t, now);
    }
}

int ct_tuner_step(ct_tuner *t, double now, double seconds)
{
    t->steps[t->current == t->max ? 0 : 1]++;
    if (t->ncand <= 1)
        return t->current;
    if (t->probe_started < 0)
        t->probe_started = now - seconds;
    if (!t->warm) { /* the first step after a change pays for it */
        t->warm = true;
        return t->current;
    }
    t->window[t->filled++] = seconds;
    if (t->filled == CT_TUNER_WINDOW || (t->probing > 0 && t->filled == EARLY && losing(t)))
        window_done(t, now);
    return t->current;
}
