/* generate.c - `ctrain generate`: text sampled from a language model, one token at a time,
 * decoded with the vocabulary that `ctrain data import-text` stored beside the data. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiment.h"
#include "guard.h"
#include "parallel.h"
#include "h5util.h"
#include "h5strings.h"
#include "rng.h"

#define MAX_VOCAB (INT64_C(1) << 21)
#define WORD_MAX 100          /* bytes of a word; longer ones are unknown (as import-text) */
#define CT_RNG_GENERATE 6     /* the random stream of sampling (rng.h's are 1 to 5) */

typedef struct vocab {
    char **tok;       /* n tokens, index = id */
    int64_t n;
    bool word;        /* level "word": tokens are joined with spaces */
    int64_t *sorted;  /* ids by token, for lookups */
} vocab;

static void vocab_free(vocab *v)
{
    for (int64_t i = 0; i < v->n; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->sorted);
}

/* ---- reading the vocabulary (in a child process: see h5strings.h) ---- */

static int by_token(const void *a, const void *b, void *v)
{
    const vocab *voc = v;
    return strcmp(voc->tok[*(const int64_t *)a], voc->tok[*(const int64_t *)b]);
}

static int read_vocab(const char *path, const char *name, vocab *v, ct_error *err)
{
    ct_strings got;
    if (ct_h5_read_strings(path, name, "level", 2, MAX_VOCAB, "the vocabulary", &got, err) < 0)
        return ct_err(err, CT_ERR_DATA, "%s: cannot read the vocabulary '%s' (a 1-D dataset of "
                      "at least 2 strings, as `ctrain data import-text` writes)", path, name);
    v->tok = got.s;
    v->n = got.n;
    v->word = strcmp(got.attr, "word") == 0;
    if (!(v->sorted = malloc((size_t)v->n * sizeof *v->sorted)))
        return ct_err(err, CT_ERR_NOMEM, "out of memory for the vocabulary of %s", path);
    for (int64_t i = 0; i < v->n; i++)
        v->sorted[i] = i;
    qsort_r(v->sorted, (size_t)v->n, sizeof *v->sorted, by_token, v);
    return 0;
}

/* The id of token s (len bytes), or 1 (unknown). */
static int64_t lookup(const vocab *v, const char *s, size_t len)
{
    int64_t lo = 0, hi = v->n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const char *t = v->tok[v->sorted[mid]];
        int c = strncmp(t, s, len);
        if (c == 0 && t[len])
            c = 1;
        if (c == 0)
            return v->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 1;
}

/* ---- the prompt ---- */

/* Bytes of the UTF-8 character at s (n bytes left); 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t k = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3
                                : (s[0] >> 3) == 30 ? 4 : 0;
    if (k == 0 || k > n)
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return k;
}

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'';
}

/* The prompt's ids, split as import-text splits the text. */
static int encode(const vocab *v, const char *prompt, int64_t **ids, int64_t *n, ct_error *err)
{
    size_t len = strlen(prompt);
    *ids = malloc((len + 1) * sizeof **ids);
    *n = 0;
    if (!*ids)
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < len;) {
        size_t k = utf8_len((const unsigned char *)prompt + i, len - i);
        if (k == 0)
            return ct_err(err, CT_ERR_USAGE, "the prompt is not valid UTF-8 (byte %zu)", i + 1);
        if (v->word && (prompt[i] == ' ' || prompt[i] == '\t' || prompt[i] == '\n')) {
            i++;
            continue;
        }
        if (v->word && word_char(prompt[i])) {
            char w[WORD_MAX + 1];
            size_t m = 0;
            for (; i < len && word_char(prompt[i]); i++)
                if (m < sizeof w)
                    w[m++] = (char)(prompt[i] >= 'A' && prompt[i] <= 'Z' ? prompt[i] + 32
                                                                         : prompt[i]);
            (*ids)[(*n)++] = m > WORD_MAX ? 1 : lookup(v, w, m);
            continue;
        }
        (*ids)[(*n)++] = lookup(v, prompt + i, k);
        i += k;
    }
    return 0;
}

/* ---- sampling ---- */

/* Picks the next id from the model's row of scores (probabilities, or logits when
 * from_logits), over ids 2..usable-1: never the padding id 0 nor the unknown token 1,
 * which stand for no text. */
static int64_t sample(const float *row, int64_t usable, bool logits, const ct_generate_options *o,
                      uint64_t key, int64_t step, double *work, int64_t *order)
{
    int64_t m = 0;
    for (int64_t i = 2; i < usable; i++) {
        double s = logits ? row[i] : log(fmax(row[i], 1e-30));
        if (isfinite(s)) {
            work[m] = s;
            order[m++] = i;
        }
    }
    if (m == 0)
        return 1;
    int64_t best = 0;
    for (int64_t i = 1; i < m; i++)
        best = work[i] > work[best] ? i : best;
    if (o->temperature <= 0)
        return order[best];
    /* top-k: the k highest scores, by selection (k is small) */
    int64_t k = o->top_k > 0 && o->top_k < m ? o->top_k : m;
    for (int64_t i = 0; i < k && k < m; i++) {
        int64_t hi = i;
        for (int64_t j = i + 1; j < m; j++)
            hi = work[j] > work[hi] ? j : hi;
        double tw = work[i];
        int64_t to = order[i];
        work[i] = work[hi], order[i] = order[hi];
        work[hi] = tw, order[hi] = to;
    }
    double top = work[0], sum = 0;
    for (int64_t i = 1; i < k; i++)
        top = fmax(top, work[i]);
    for (int64_t i = 0; i < k; i++)
        sum += (work[i] = exp((work[i] - top) / o->temperature));
    double u = (double)ct_rng_uniform(key, (uint64_t)step) * sum;
    for (int64_t i = 0; i < k; i++)
        if ((u -= work[i]) < 0)
            return order[i];
    return order[k - 1];
}

/* ---- the model ---- */

typedef struct lm {
    ct_model *m;
    int64_t t, v;        /* input positions, scores per position */
    bool per_position;   /* output (T, V): read the row of the last token; else (V) */
    float *x, *row;      /* host buffers: the input window, one row of scores */
} lm;

static int check_model(ct_experiment *ex, lm *g, ct_error *err)
{
    ct_model *m = ex->model;
    const ct_shape *in = &m->input_shapes[0], *out = ct_model_output_shape_at(m, 0);
    char a[96], b[96];
    if (m->ninputs != 1 || m->noutputs != 1 || in->ndim != 1 || out->ndim < 1 ||
        out->ndim > 2 || (out->ndim == 2 && out->dim[0] != in->dim[0]))
        return ct_err(err, CT_ERR_USAGE, "%s: generate needs a language model: one input of "
                      "token ids (T) and one output of scores over the vocabulary, (T, V) or "
                      "(V); this model takes %s and gives %s", ex->path,
                      ct_shape_format_sample(in, a, sizeof a), ct_shape_format_sample(out, b,
                                                                                       sizeof b));
    g->m = m;
    g->t = in->dim[0];
    g->per_position = out->ndim == 2;
    g->v = out->dim[out->ndim - 1];
    g->x = calloc((size_t)g->t, sizeof *g->x);
    g->row = malloc((size_t)g->v * sizeof *g->row);
    return g->x && g->row ? 0 : ct_err(err, CT_ERR_NOMEM, "out of memory");
}

/* The scores for the token after ids[0..n): a causal model reads the last T tokens from
 * position 0 (the rest padding) and its row at the last of them; a model with one output
 * per sequence reads them right-aligned. */
static void next_scores(lm *g, const int64_t *ids, int64_t n)
{
    int64_t k = n < g->t ? n : g->t, first = n - k;
    int64_t at = g->per_position ? 0 : g->t - k;
    memset(g->x, 0, (size_t)g->t * sizeof *g->x);
    for (int64_t i = 0; i < k; i++)
        g->x[at + i] = (float)ids[first + i];
    const ct_backend *be = g->m->be;
    be->upload(g->m->inputs[0].data, g->x, (size_t)g->t * sizeof *g->x);
    ct_pass pass = {.training = false};
    const ct_tensor *y = ct_model_forward(g->m, &pass, 1);
    int64_t row = g->per_position ? (k > 0 ? k - 1 : 0) : 0;
    be->download(g->row, y->data + row * g->v, (size_t)g->v * sizeof *g->row);
}

static void emit(const vocab *v, int64_t id, bool first, FILE *out)
{
    if (v->word && !first)
        fputc(' ', out);
    fputs(id < v->n ? v->tok[id] : "", out);
}

void ct_generate_options_default(ct_generate_options *o)
{
    memset(o, 0, sizeof *o);
    o->prompt = "";
    o->length = 200;
    o->temperature = 1.0;
}

/* Where the vocabulary is: o->vocab_path, else data.train's file; the dataset "vocab" in
 * the group above data.train.x's ("train/x" -> "vocab", "text/train/x" -> "text/vocab"). */
static void vocab_place(const ct_experiment *ex, const ct_generate_options *o, const char **path,
                        char *name, size_t n)
{
    *path = o->vocab_path ? o->vocab_path : ex->train.path;
    const char *x = ex->train.x[0] ? ex->train.x[0] : "";
    const char *end = strrchr(x, '/');
    size_t keep = end ? (size_t)(end - x) : 0;
    while (keep > 0 && x[keep - 1] != '/')
        keep--;
    snprintf(name, n, "%.*svocab", (int)keep, x);
}

static int generate(ct_experiment *ex, const ct_generate_options *o, FILE *out, ct_error *err)
{
    if (o->length < 0 || o->length > 1000000 || !(o->temperature >= 0) || o->top_k < 0)
        return ct_err(err, CT_ERR_USAGE, "--length is 0 to 1000000, --temperature 0 or more, "
                      "--top-k 0 or more");
    const char *path;
    char name[4200];
    vocab_place(ex, o, &path, name, sizeof name);
    if (!path)
        return ct_err(err, CT_ERR_USAGE, "%s: no data.train names the file with the "
                      "vocabulary; give it with --vocab FILE.h5", ex->path);
    lm g = {0};
    vocab v = {0};
    int64_t *ids = NULL, n = 0;
    double *work = NULL;
    int64_t *order = NULL;
    int rc = check_model(ex, &g, err);
    if (rc == 0)
        rc = read_vocab(path, name, &v, err);
    if (rc == 0)
        rc = encode(&v, o->prompt, &ids, &n, err);
    int64_t *all = rc == 0 ? realloc(ids, (size_t)(n + o->length + 1) * sizeof *ids) : NULL;
    if (all)
        ids = all;
    work = malloc((size_t)g.v * sizeof *work);
    order = malloc((size_t)g.v * sizeof *order);
    if (rc == 0 && (!all || !work || !order))
        rc = ct_err(err, CT_ERR_NOMEM, "out of memory");
    ct_set_threads(ex->threads);
    if (rc == 0)
        rc = ct_model_plan_inference(ex->model, 1, err);
    if (rc == 0) {
        bool logits = ex->loss[0].from_logits;
        int64_t usable = g.v < v.n ? g.v : v.n;
        uint64_t key = ct_rng_key(o->seed_given ? o->seed : ex->seed, CT_RNG_GENERATE, 0, 0);
        fputs(o->prompt, out);
        for (int64_t s = 0; s < o->length && rc == 0; s++) {
            next_scores(&g, ids, n);
            if ((rc = ex->model->be->check(err)) == 0) {
                ids[n] = sample(g.row, usable, logits, o, key, s, work, order);
                emit(&v, ids[n], n == 0, out);
                n++;
            }
        }
        fputc('\n', out);
    }
    free(work);
    free(order);
    free(ids);
    free(g.x);
    free(g.row);
    vocab_free(&v);
    return rc;
}

/* Run with denormals flushed; the caller's floating-point state is back on return. */
int ct_experiment_generate(ct_experiment *ex, const ct_generate_options *o, FILE *out,
                           ct_error *err)
{
    ct_fp_state fp = ct_fp_enter();
    int rc = generate(ex, o, out, err);
    ct_fp_leave(fp);
    return rc;
}
