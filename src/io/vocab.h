/* vocab.h - the distinct tokens of a text with their counts, ranked into a vocabulary
 * (internal; text_import.c). Entries are numbered in order of first appearance.
 *
 * Ownership: ct_vocab_new allocates the table, ct_vocab_free frees it and its copies of
 * the tokens; pointers ct_vocab_token returns live as long as the table. */
#ifndef CT_VOCAB_H
#define CT_VOCAB_H

#include <stddef.h>
#include <stdint.h>

/* Most distinct tokens a table holds, so that a huge text of unrepeated words fails with
 * a message instead of taking all memory. */
#define CT_VOCAB_MAX_ENTRIES (1 << 21)

typedef struct ct_vocab ct_vocab;

ct_vocab *ct_vocab_new(void);   /* NULL when out of memory */
void ct_vocab_free(ct_vocab *v);

/* Adds one occurrence of the n bytes at tok. Returns the entry, -1 when out of memory,
 * -2 when the table already holds CT_VOCAB_MAX_ENTRIES others. */
int64_t ct_vocab_add(ct_vocab *v, const char *tok, size_t n);
/* The entry of a token, or -1 when it was never added. */
int64_t ct_vocab_find(const ct_vocab *v, const char *tok, size_t n);
int64_t ct_vocab_entries(const ct_vocab *v);
/* The token of an entry, NUL-terminated. */
const char *ct_vocab_token(const ct_vocab *v, int64_t entry);

/* Ranks the entries by count, ties by first appearance, and gives the first size - 2 the
 * ids 2, 3, ... (0 and 1 are padding and unknown); the others get 1. Returns the number
 * of ids used (2 + the tokens kept), or -1 when out of memory. */
int64_t ct_vocab_rank(ct_vocab *v, int64_t size);
/* After ct_vocab_rank: the id of an entry, and the entry holding id (2 or more). */
int32_t ct_vocab_id(const ct_vocab *v, int64_t entry);
int64_t ct_vocab_entry_of(const ct_vocab *v, int32_t id);

#endif
