/* text.c - name suggestions and number formatting: pure functions with no state, so the
 * command line, which may call only libctrain's public API, builds its own copy. */
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "text.h"

/* Names longer than this are only matched by prefix (the distance table is on the stack). */
#define SUGGEST_MAX_LEN 128

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int min3(int a, int b, int c)
{
    int m = a < b ? a : b;
    return m < c ? m : c;
}

/* Optimal string alignment distance (Levenshtein plus adjacent swaps), ignoring case. */
static int edit_distance(const char *a, const char *b)
{
    int n = (int)strlen(a), m = (int)strlen(b);
    int rows[3][SUGGEST_MAX_LEN + 1];
    int *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (int j = 0; j <= m; j++)
        prev[j] = j;
    for (int i = 1; i <= n; i++) {
        cur[0] = i;
        for (int j = 1; j <= m; j++) {
            int cost = lower(a[i - 1]) != lower(b[j - 1]);
            cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && pp[j - 2] + 1 < cur[j])
                cur[j] = pp[j - 2] + 1;
        }
        int *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[m];
}

static bool is_prefix_ci(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    size_t n = na < nb ? na : nb;
    return n >= 2 && strncasecmp(a, b, n) == 0;
}

const char *ct_suggest(const char *s, const char *const *candidates)
{
    if (!s || !*s || !candidates)
        return NULL;
    size_t len = strlen(s);
    int limit = len / 3 > 1 ? (int)(len / 3) : 1;
    const char *best = NULL;
    int best_score = limit + 2;
    for (const char *const *c = candidates; *c; c++) {
        int score = limit + 2;
        if (len <= SUGGEST_MAX_LEN && strlen(*c) <= SUGGEST_MAX_LEN) {
            int d = edit_distance(s, *c);
            if (d <= limit)
                score = d;
        }
        if (score > limit && is_prefix_ci(s, *c))
            score = limit + 1;
        if (score < best_score) {
            best = *c;
            best_score = score;
        }
    }
    return best;
}

void ct_format_value(double v, char *buf, size_t n)
{
    if (isnan(v)) /* "nan" whatever its sign bit: printf may write "-nan" */
        snprintf(buf, n, "nan");
    else if (v != 0 && fabs(v) < 1e-3)
        snprintf(buf, n, "%.4e", v);
    else
        snprintf(buf, n, "%.4f", v);
}

/* Lower case without underscores into out (n bytes); false when s does not fit. */
static bool fold(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s; s++) {
        if (*s == '_')
            continue;
        if (k + 1 >= n)
            return false;
        out[k++] = (char)tolower((unsigned char)*s);
    }
    out[k] = '\0';
    return true;
}

bool ct_name_matches(const char *given, const char *name)
{
    char a[128], b[128];
    return given && name && fold(given, a, sizeof a) && fold(name, b, sizeof b) && !strcmp(a, b);
}
