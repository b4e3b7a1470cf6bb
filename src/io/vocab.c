/* vocab.c - a hash table of byte strings counting tokens (open addressing). */
#include <stdlib.h>
#include <string.h>

#include "vocab.h"

typedef struct entry {
    uint64_t hash;
    int64_t count;
    size_t off, len;   /* the token's bytes in the arena, NUL-terminated there */
    int32_t id;
} entry;

struct ct_vocab {
    entry *e;
    int64_t n, cap;
    int32_t *slot;      /* entry index or -1; a power of two, at most half full */
    int64_t nslot;
    char *arena;
    size_t used, room;
    int64_t *order;     /* after ranking: entries by rank */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

ct_vocab *ct_vocab_new(void)
{
    ct_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->nslot = 1024;
    v->slot = malloc((size_t)v->nslot * sizeof *v->slot);
    if (!v->slot) {
        free(v);
        return NULL;
    }
    memset(v->slot, 0xff, (size_t)v->nslot * sizeof *v->slot);
    return v;
}

void ct_vocab_free(ct_vocab *v)
{
    if (!v)
        return;
    free(v->e);
    free(v->slot);
    free(v->arena);
    free(v->order);
    free(v);
}

static int64_t probe(const ct_vocab *v, uint64_t h, const char *tok, size_t n)
{
    int64_t mask = v->nslot - 1, i = (int64_t)(h & (uint64_t)mask);
    for (;; i = (i + 1) & mask) {
        int32_t k = v->slot[i];
        if (k < 0)
            return i;
        const entry *e = &v->e[k];
        if (e->hash == h && e->len == n && memcmp(v->arena + e->off, tok, n) == 0)
            return i;
    }
}

static int grow_slots(ct_vocab *v)
{
    int64_t nslot = v->nslot * 2;
    int32_t *slot = malloc((size_t)nslot * sizeof *slot);
    if (!slot)
        return -1;
    memset(slot, 0xff, (size_t)nslot * sizeof *slot);
    for (int64_t k = 0; k < v->n; k++) {
        int64_t i = (int64_t)(v->e[k].hash & (uint64_t)(nslot - 1));
        while (slot[i] >= 0)
            i = (i + 1) & (nslot - 1);
        slot[i] = (int32_t)k;
    }
    free(v->slot);
    v->slot = slot;
    v->nslot = nslot;
    return 0;
}

/* Room for one more entry of n bytes. */
static int reserve(ct_vocab *v, size_t n)
{
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 256;
        entry *e = realloc(v->e, (size_t)cap * sizeof *e);
        if (!e)
            return -1;
        v->e = e;
        v->cap = cap;
    }
    if (v->used + n + 1 > v->room) {
        size_t room = v->room ? v->room * 2 : 4096;
        while (room < v->used + n + 1)
            room *= 2;
        char *a = realloc(v->arena, room);
        if (!a)
            return -1;
        v->arena = a;
        v->room = room;
    }
    return 0;
}

int64_t ct_vocab_add(ct_vocab *v, const char *tok, size_t n)
{
    uint64_t h = hash_bytes(tok, n);
    int64_t i = probe(v, h, tok, n);
    if (v->slot[i] >= 0) {
        v->e[v->slot[i]].count++;
        return v->slot[i];
    }
    if (v->n >= CT_VOCAB_MAX_ENTRIES)
        return -2;
    if (reserve(v, n) < 0)
        return -1;
    entry *e = &v->e[v->n];
    *e = (entry){.hash = h, .count = 1, .off = v->used, .len = n, .id = 1};
    memcpy(v->arena + v->used, tok, n);
    v->arena[v->used + n] = '\0';
    v->used += n + 1;
    v->slot[i] = (int32_t)v->n++;
    if (v->n * 2 > v->nslot && grow_slots(v) < 0)
        return -1;
    return v->n - 1;
}

int64_t ct_vocab_find(const ct_vocab *v, const char *tok, size_t n)
{
    return v->slot[probe(v, hash_bytes(tok, n), tok, n)];
}

int64_t ct_vocab_entries(const ct_vocab *v) { return v->n; }

const char *ct_vocab_token(const ct_vocab *v, int64_t entry)
{
    return v->arena + v->e[entry].off;
}

typedef struct ranked {
    int64_t count, entry;
} ranked;

static int by_rank(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

int64_t ct_vocab_rank(ct_vocab *v, int64_t size)
{
    free(v->order);
    size_t n = (size_t)(v->n ? v->n : 1);
    v->order = malloc(n * sizeof *v->order);
    ranked *r = malloc(n * sizeof *r);
    if (!v->order || !r) {
        free(r);
        return -1;
    }
    for (int64_t k = 0; k < v->n; k++)
        r[k] = (ranked){v->e[k].count, k};
    qsort(r, (size_t)v->n, sizeof *r, by_rank);
    int64_t keep = v->n < size - 2 ? v->n : size - 2;
    for (int64_t k = 0; k < v->n; k++) {
        v->order[k] = r[k].entry;
        v->e[r[k].entry].id = k < keep ? (int32_t)(k + 2) : 1;
    }
    free(r);
    return keep + 2;
}

int32_t ct_vocab_id(const ct_vocab *v, int64_t entry) { return v->e[entry].id; }

int64_t ct_vocab_entry_of(const ct_vocab *v, int32_t id) { return v->order[id - 2]; }
