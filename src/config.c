/* config.c - YAML experiment files as a tree of positioned nodes, plus the typed getters
 * the schema uses to read them.
 *
 * Parsing uses libyaml's event API and builds the tree with an explicit stack, so input
 * depth never turns into C recursion. Everything that could make a config more than
 * plain data (anchors, aliases, tags) is refused, and sizes are bounded so a hostile
 * file cannot exhaust memory or time. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "config.h"
#include "guard.h"

#define MAX_FILE_BYTES ((size_t)16 << 20)
#define MAX_SCALAR_BYTES ((size_t)64 << 10)
/* Maps larger than this get a hash index while parsing so duplicate detection stays
 * linear even for huge maps. */
#define INDEX_MIN_LEN 32

static const char SET_FILE[] = "--set";

/* ------------------------------------------------------------------------------------ */
/* Nodes                                                                                */

static ct_node *node_new(ct_node_type type, const char *file, int line, int col)
{
    ct_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->type = type;
    n->file = file;
    n->line = line;
    n->col = col;
    return n;
}

static ct_node *scalar_new(const char *text, size_t len, bool quoted, const char *file,
                           int line, int col)
{
    ct_node *n = node_new(CT_NODE_SCALAR, file, line, col);
    if (!n)
        return NULL;
    n->scalar = malloc(len + 1);
    if (!n->scalar) {
        free(n);
        return NULL;
    }
    memcpy(n->scalar, text, len);
    n->scalar[len] = '\0';
    n->quoted = quoted;
    return n;
}

/* Frees a subtree; the file name belongs to the root and is freed by ct_node_free. */
static void subtree_free(ct_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->len; i++) {
        if (n->key_nodes)
            subtree_free(n->key_nodes[i]); /* keys[i] is the key node's text */
        subtree_free(n->items[i]);
    }
    free(n->keys);
    free(n->key_nodes);
    free(n->items);
    free(n->scalar);
    free(n);
}

void ct_node_free(ct_node *root)
{
    if (!root)
        return;
    char *file = (char *)root->file;
    bool owns_file = root->parent == NULL && file != SET_FILE;
    subtree_free(root);
    if (owns_file)
        free(file);
}

/* Capacity implied by a length: 0, then powers of two from 4. Growing exactly when len
 * reaches it keeps appends amortized O(1) without storing a capacity field. */
static size_t cap_for(size_t len)
{
    if (len == 0)
        return 0;
    size_t c = 4;
    while (c < len)
        c *= 2;
    return c;
}

static int grow_entries(ct_node *n)
{
    if (n->len != cap_for(n->len))
        return 0;
    size_t cap = cap_for(n->len + 1);
    ct_node **items = realloc(n->items, cap * sizeof *items);
    if (!items)
        return -1;
    n->items = items;
    if (n->type != CT_NODE_MAP)
        return 0;
    char **keys = realloc(n->keys, cap * sizeof *keys);
    if (!keys)
        return -1;
    n->keys = keys;
    ct_node **kn = realloc(n->key_nodes, cap * sizeof *kn);
    if (!kn)
        return -1;
    n->key_nodes = kn;
    return 0;
}

static int map_append(ct_node *map, ct_node *key, ct_node *value)
{
    if (grow_entries(map) < 0)
        return -1;
    map->keys[map->len] = key->scalar;
    map->key_nodes[map->len] = key;
    map->items[map->len] = value;
    key->parent = map;
    value->parent = map;
    map->len++;
    return 0;
}

static int seq_append(ct_node *seq, ct_node *item)
{
    if (grow_entries(seq) < 0)
        return -1;
    seq->items[seq->len++] = item;
    item->parent = seq;
    return 0;
}

static long map_find(const ct_node *map, const char *key)
{
    if (!map || map->type != CT_NODE_MAP)
        return -1;
    for (size_t i = 0; i < map->len; i++)
        if (strcmp(map->keys[i], key) == 0)
            return (long)i;
    return -1;
}

bool ct_node_is_null(const ct_node *n)
{
    if (!n)
        return true;
    if (n->type != CT_NODE_SCALAR || n->quoted)
        return false;
    const char *s = n->scalar;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static void replace_item(ct_node *parent, size_t i, ct_node *value)
{
    subtree_free(parent->items[i]);
    parent->items[i] = value;
    value->parent = parent;
}

/* ------------------------------------------------------------------------------------ */
/* Error text                                                                           */

int ct_node_err(ct_error *err, const ct_node *n, const char *fmt, ...)
{
    if (!err)
        return -1;
    err->code = CT_ERR_CONFIG;
    int k = 0;
    if (n)
        k = snprintf(err->msg, sizeof err->msg, "%s:%d:%d: ", n->file ? n->file : "?",
                     n->line, n->col);
    if (k < 0 || (size_t)k >= sizeof err->msg)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg + k, sizeof err->msg - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

/* Copies at most `max` bytes of s, cut at a UTF-8 boundary, with "..." when cut. */
static void excerpt(const char *s, char *buf, size_t size, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) {
        snprintf(buf, size, "%s", s);
        return;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    snprintf(buf, size, "%.*s...", (int)max, s);
}

/* The name a node is known by: its key, or key[i] for sequence elements. */
static bool node_name(const ct_node *n, char *buf, size_t size)
{
    const ct_node *p = n ? n->parent : NULL;
    if (!p)
        return false;
    for (size_t i = 0; i < p->len; i++) {
        if (p->items[i] != n)
            continue;
        if (p->type == CT_NODE_MAP) {
            excerpt(p->keys[i], buf, size, 200);
            return true;
        }
        if (!node_name(p, buf, size))
            return false;
        size_t used = strlen(buf);
        if (used + 1 < size)
            snprintf(buf + used, size - used, "[%zu]", i);
        return true;
    }
    return false;
}

/* " for 'units'" or "" when the node has no name. */
static void for_name(const ct_node *n, char *buf, size_t size)
{
    char name[256];
    if (node_name(n, name, sizeof name))
        snprintf(buf, size, " for '%s'", name);
    else
        buf[0] = '\0';
}

/* "'units'" or "the value": the subject of range errors. */
static void subject(const ct_node *n, char *buf, size_t size)
{
    char name[256];
    if (node_name(n, name, sizeof name))
        snprintf(buf, size, "'%s'", name);
    else
        snprintf(buf, size, "the value");
}

/* How a node looks to the user: a map, a list, the string "x", 'x'. */
static void describe(const ct_node *n, char *buf, size_t size)
{
    char text[128];
    if (n->type == CT_NODE_MAP) {
        snprintf(buf, size, "a map");
        return;
    }
    if (n->type == CT_NODE_SEQ) {
        snprintf(buf, size, "a list");
        return;
    }
    excerpt(n->scalar, text, sizeof text, 80);
    if (n->quoted)
        snprintf(buf, size, "the string \"%s\"", text);
    else if (!n->scalar[0])
        snprintf(buf, size, "an empty value");
    else
        snprintf(buf, size, "'%s'", text);
}

static int expected(ct_error *err, const ct_node *n, const char *what)
{
    char name[300], got[200];
    for_name(n, name, sizeof name);
    describe(n, got, sizeof got);
    return ct_node_err(err, n, "expected %s%s, got %s", what, name, got);
}

/* ------------------------------------------------------------------------------------ */
/* Parsing                                                                              */

typedef struct {
    ct_node *node;
    ct_node *key;       /* MAP: key read, value pending */
    uint32_t *index;    /* MAP: open-addressing hash of entry positions (+1), or NULL */
    size_t index_cap;
} frame;

typedef struct {
    const char *file;   /* the string every node points at */
    const char *text;   /* the input, to turn reader byte offsets into line:col */
    size_t len;
    int col_shift;      /* added to first-line columns (values given with --set) */
    frame stack[CT_CONFIG_MAX_DEPTH];
    int depth;
    ct_node *root;
    int docs;
    bool failed;
    ct_error_code code;
    int line, col;
    char msg[1536];
} pctx;

static int perr(pctx *c, int line, int col, ct_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int perr(pctx *c, int line, int col, ct_error_code code, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    c->failed = true;
    c->code = code;
    c->line = line;
    c->col = col;
    return -1;
}

static int mark_line(const yaml_mark_t *m) { return (int)m->line + 1; }

static int mark_col(const pctx *c, const yaml_mark_t *m)
{
    return (int)m->column + 1 + (m->line == 0 ? c->col_shift : 0);
}

static int perr_at(pctx *c, const yaml_mark_t *m, const char *msg)
{
    return perr(c, mark_line(m), mark_col(c, m), CT_ERR_CONFIG, "%s", msg);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void index_insert(frame *f, size_t pos)
{
    size_t mask = f->index_cap - 1;
    size_t i = hash_str(f->node->keys[pos]) & mask;
    while (f->index[i])
        i = (i + 1) & mask;
    f->index[i] = (uint32_t)(pos + 1);
}

static int index_build(frame *f)
{
    size_t cap = 64;
    while (cap < 4 * f->node->len)
        cap *= 2;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return -1;
    free(f->index);
    f->index = idx;
    f->index_cap = cap;
    for (size_t i = 0; i < f->node->len; i++)
        index_insert(f, i);
    return 0;
}

/* Records the entry just appended to the frame's map. */
static int index_note(frame *f)
{
    size_t len = f->node->len;
    if (len < INDEX_MIN_LEN)
        return 0;
    if (!f->index || 2 * len > f->index_cap)
        return index_build(f);
    index_insert(f, len - 1);
    return 0;
}

static long frame_find(const frame *f, const char *key)
{
    if (!f->index)
        return map_find(f->node, key);
    size_t mask = f->index_cap - 1;
    for (size_t i = hash_str(key) & mask; f->index[i]; i = (i + 1) & mask)
        if (!strcmp(f->node->keys[f->index[i] - 1], key))
            return (long)f->index[i] - 1;
    return -1;
}

static int check_props(pctx *c, const yaml_event_t *ev, const yaml_char_t *anchor,
                       const yaml_char_t *tag)
{
    if (anchor)
        return perr_at(c, &ev->start_mark, "anchors and aliases are not allowed");
    if (tag)
        return perr_at(c, &ev->start_mark, "tags are not allowed");
    return 0;
}

static int set_root(pctx *c, ct_node *n)
{
    if (n->type == CT_NODE_MAP) {
        c->root = n;
        return 0;
    }
    int rc = ct_node_is_null(n)
                 ? perr(c, n->line, n->col, CT_ERR_CONFIG, "the experiment file is empty")
                 : perr(c, n->line, n->col, CT_ERR_CONFIG, "the top level must be a map of keys");
    subtree_free(n);
    return rc;
}

static int add_key(pctx *c, frame *f, ct_node *n)
{
    if (n->type != CT_NODE_SCALAR) {
        perr(c, n->line, n->col, CT_ERR_CONFIG, "map keys must be plain text, not %s",
             n->type == CT_NODE_MAP ? "a map" : "a list");
        subtree_free(n);
        return -1;
    }
    long dup = frame_find(f, n->scalar);
    if (dup >= 0) {
        const ct_node *first = f->node->key_nodes[dup];
        char k[128];
        excerpt(n->scalar, k, sizeof k, 80);
        perr(c, n->line, n->col, CT_ERR_CONFIG, "duplicate key '%s' (first defined at %d:%d)",
             k, first->line, first->col);
        subtree_free(n);
        return -1;
    }
    f->key = n;
    return 0;
}

/* Hangs a new node under the open collection (or makes it the document root). On
 * failure the node is freed. */
static int attach(pctx *c, ct_node *n)
{
    if (c->depth == 0)
        return set_root(c, n);
    frame *f = &c->stack[c->depth - 1];
    if (f->node->type == CT_NODE_MAP && !f->key)
        return add_key(c, f, n);
    int rc;
    if (f->node->type == CT_NODE_SEQ) {
        rc = seq_append(f->node, n);
    } else {
        rc = map_append(f->node, f->key, n);
        if (rc == 0) {
            f->key = NULL;
            /* The entry now belongs to the map, so n must not be freed below. */
            return index_note(f) < 0 ? perr(c, 0, 0, CT_ERR_NOMEM, "out of memory") : 0;
        }
    }
    if (rc < 0) {
        subtree_free(n);
        return perr(c, 0, 0, CT_ERR_NOMEM, "out of memory");
    }
    return 0;
}

static int on_scalar(pctx *c, const yaml_event_t *ev)
{
    const yaml_char_t *anchor = ev->data.scalar.anchor;
    if (check_props(c, ev, anchor, ev->data.scalar.tag) < 0)
        return -1;
    size_t len = ev->data.scalar.length;
    const char *text = (const char *)ev->data.scalar.value;
    if (len > MAX_SCALAR_BYTES)
        return perr_at(c, &ev->start_mark, "a text value is longer than 65536 bytes");
    if (memchr(text, '\0', len))
        return perr_at(c, &ev->start_mark, "a NUL character is not allowed in text");
    bool quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    ct_node *n = scalar_new(text, len, quoted, c->file, mark_line(&ev->start_mark),
                            mark_col(c, &ev->start_mark));
    if (!n)
        return perr(c, 0, 0, CT_ERR_NOMEM, "out of memory");
    return attach(c, n);
}

static int on_start(pctx *c, const yaml_event_t *ev, ct_node_type type)
{
    const yaml_char_t *anchor, *tag;
    if (type == CT_NODE_MAP) {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    } else {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    }
    if (check_props(c, ev, anchor, tag) < 0)
        return -1;
    if (c->depth >= CT_CONFIG_MAX_DEPTH)
        return perr(c, mark_line(&ev->start_mark), mark_col(c, &ev->start_mark),
                    CT_ERR_CONFIG, "nesting deeper than %d levels", CT_CONFIG_MAX_DEPTH);
    ct_node *n = node_new(type, c->file, mark_line(&ev->start_mark),
                          mark_col(c, &ev->start_mark));
    if (!n)
        return perr(c, 0, 0, CT_ERR_NOMEM, "out of memory");
    if (attach(c, n) < 0)
        return -1;
    c->stack[c->depth++] = (frame){.node = n};
    return 0;
}

static void frame_clear(frame *f)
{
    subtree_free(f->key);
    free(f->index);
    *f = (frame){0};
}

static int on_document(pctx *c, const yaml_event_t *ev)
{
    if (++c->docs > 1)
        return perr_at(c, &ev->start_mark,
                       "only one document is allowed (a second one starts here)");
    if (ev->data.document_start.tag_directives.start !=
        ev->data.document_start.tag_directives.end)
        return perr_at(c, &ev->start_mark, "tags are not allowed");
    return 0;
}

static int on_event(pctx *c, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        return on_document(c, ev);
    case YAML_ALIAS_EVENT:
        return perr_at(c, &ev->start_mark, "anchors and aliases are not allowed");
    case YAML_SCALAR_EVENT:
        return on_scalar(c, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(c, ev, CT_NODE_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_start(c, ev, CT_NODE_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (c->depth > 0)
            frame_clear(&c->stack[--c->depth]);
        return 0;
    default:
        return 0;
    }
}

/* Line and column (in characters) of a byte offset, for reader errors. */
static void offset_pos(const pctx *c, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    size_t i = c->len >= 3 && !memcmp(c->text, "\xEF\xBB\xBF", 3) ? 3 : 0;
    for (; i < off && i < c->len; i++) {
        unsigned char b = (unsigned char)c->text[i];
        if (b == '\n') {
            (*line)++;
            *col = 1;
        } else if ((b & 0xC0) != 0x80) {
            (*col)++;
        }
    }
    if (*line == 1)
        *col += c->col_shift;
}

/* libyaml reports a bad trailing byte at its own offset; point at the character it
 * was meant to continue instead. */
static size_t sequence_start(const pctx *c, size_t off)
{
    if (off > c->len)
        return off;
    while (off > 0 && ((unsigned char)c->text[off - 1] & 0xC0) == 0x80)
        off--;
    if (off > 0 && (unsigned char)c->text[off - 1] >= 0xC0)
        off--;
    return off;
}

static int yaml_failure(pctx *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return perr(c, 0, 0, CT_ERR_NOMEM, "out of memory while parsing");
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_READER_ERROR) {
        int line, col;
        size_t off = p->problem_offset;
        if (!strcmp(problem, "invalid trailing UTF-8 octet"))
            off = sequence_start(c, off);
        offset_pos(c, off, &line, &col);
        if (p->problem_value >= 0)
            return perr(c, line, col, CT_ERR_CONFIG, "%s (#x%X)", problem,
                        (unsigned)p->problem_value);
        return perr(c, line, col, CT_ERR_CONFIG, "%s", problem);
    }
    int line = mark_line(&p->problem_mark), col = mark_col(c, &p->problem_mark);
    if (p->context)
        return perr(c, line, col, CT_ERR_CONFIG, "%s (%s at %d:%d)", problem, p->context,
                    mark_line(&p->context_mark), mark_col(c, &p->context_mark));
    return perr(c, line, col, CT_ERR_CONFIG, "%s", problem);
}

static void run_parser(pctx *c)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        perr(c, 0, 0, CT_ERR_NOMEM, "out of memory");
        return;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)c->text, c->len);
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            yaml_failure(c, &p);
            break;
        }
        int rc = on_event(c, &ev);
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc < 0 || end)
            break;
    }
    yaml_parser_delete(&p);
}

/* Parses text into c->root; on failure c->failed is set and nothing is left allocated
 * (the file string is the caller's). */
static ct_node *parse_tree(pctx *c)
{
    if (c->len > MAX_FILE_BYTES) {
        perr(c, 1, 1, CT_ERR_CONFIG, "the file is larger than 16 MiB");
        return NULL;
    }
    run_parser(c);
    while (c->depth > 0)
        frame_clear(&c->stack[--c->depth]);
    if (!c->failed && !c->root)
        perr(c, 1, 1, CT_ERR_CONFIG, "the experiment file is empty");
    if (c->failed) {
        subtree_free(c->root);
        c->root = NULL;
    }
    return c->root;
}

ct_node *ct_config_parse(const char *text, size_t len, const char *name, ct_error *err)
{
    if (!name)
        name = "<string>";
    char *file = strdup(name);
    if (!file) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pctx c = {.file = file, .text = text ? text : "", .len = text ? len : 0};
    ct_node *root = parse_tree(&c);
    if (!root) {
        if (c.code == CT_ERR_NOMEM)
            ct_err(err, c.code, "%s: %s", file, c.msg);
        else
            ct_err(err, c.code, "%s:%d:%d: %s", file, c.line, c.col, c.msg);
        free(file);
    }
    return root;
}

/* Reads at most MAX_FILE_BYTES + 1 bytes, enough to tell that a file is too large. */
static char *read_file(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t want = cap - n;
        size_t got = fread(buf + n, 1, want, f);
        n += got;
        if (got < want || n > MAX_FILE_BYTES)
            break;
        size_t bigger_cap = cap * 2 > MAX_FILE_BYTES + 1 ? MAX_FILE_BYTES + 1 : cap * 2;
        char *bigger = realloc(buf, bigger_cap);
        if (!bigger) {
            free(buf);
            return NULL;
        }
        buf = bigger;
        cap = bigger_cap;
    }
    *len = n;
    return buf;
}

ct_node *ct_config_load(const char *path, ct_error *err)
{
    if (ct_check_regular(path, "read", err) < 0)
        return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        ct_err(err, CT_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t len = 0;
    errno = 0;
    char *text = read_file(f, &len);
    int saved = errno;
    bool bad = !text || ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        if (!text)
            ct_err(err, CT_ERR_NOMEM, "cannot read %s: out of memory", path);
        else
            ct_err(err, CT_ERR_IO, "cannot read %s: %s", path,
                   strerror(saved ? saved : EIO));
        return NULL;
    }
    ct_node *root = ct_config_parse(text, len, path, err);
    free(text);
    return root;
}

/* ------------------------------------------------------------------------------------ */
/* Map and sequence editing                                                             */

ct_node *ct_map_get(const ct_node *map, const char *key)
{
    long i = map_find(map, key);
    if (i < 0)
        return NULL;
    map->items[i]->used = true;
    return map->items[i];
}

const ct_node *ct_map_key_node(const ct_node *map, const char *key)
{
    long i = map_find(map, key);
    return i < 0 ? NULL : map->key_nodes[i];
}

/* Puts value under key, replacing an existing value; new keys go at the end. Takes
 * ownership of value (freed on failure). */
static ct_node *map_put(ct_node *map, const char *key, ct_node *value)
{
    if (!value)
        return NULL;
    if (!map || map->type != CT_NODE_MAP || !key) {
        subtree_free(value);
        return NULL;
    }
    long i = map_find(map, key);
    if (i >= 0) {
        replace_item(map, (size_t)i, value);
        return value;
    }
    ct_node *k = scalar_new(key, strlen(key), false, map->file, map->line, map->col);
    if (!k || map_append(map, k, value) < 0) {
        subtree_free(k);
        subtree_free(value);
        return NULL;
    }
    return value;
}

ct_node *ct_map_set_scalar(ct_node *map, const char *key, const char *text)
{
    if (!map || !text)
        return NULL;
    return map_put(map, key,
                   scalar_new(text, strlen(text), false, map->file, map->line, map->col));
}

ct_node *ct_map_set_map(ct_node *map, const char *key)
{
    if (!map)
        return NULL;
    return map_put(map, key, node_new(CT_NODE_MAP, map->file, map->line, map->col));
}

ct_node *ct_map_set_seq(ct_node *map, const char *key)
{
    if (!map)
        return NULL;
    return map_put(map, key, node_new(CT_NODE_SEQ, map->file, map->line, map->col));
}

ct_node *ct_seq_append_scalar(ct_node *seq, const char *text)
{
    if (!seq || seq->type != CT_NODE_SEQ || !text)
        return NULL;
    ct_node *n = scalar_new(text, strlen(text), false, seq->file, seq->line, seq->col);
    if (!n || seq_append(seq, n) < 0) {
        subtree_free(n);
        return NULL;
    }
    return n;
}

int ct_node_expand_scalar(ct_node *n, const char *key, ct_error *err)
{
    if (!n || n->type != CT_NODE_SCALAR)
        return n ? expected(err, n, "a single value") : ct_err(err, CT_ERR_INTERNAL, "no node");
    ct_node *k = scalar_new(key, strlen(key), false, n->file, n->line, n->col);
    ct_node *v = node_new(CT_NODE_SCALAR, n->file, n->line, n->col);
    if (!k || !v) {
        subtree_free(k);
        subtree_free(v);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    v->scalar = n->scalar;
    v->quoted = n->quoted;
    v->used = n->used;
    n->scalar = NULL;
    n->quoted = false;
    n->type = CT_NODE_MAP;
    if (map_append(n, k, v) < 0) {
        /* Undo so the tree stays as it was. */
        n->type = CT_NODE_SCALAR;
        n->scalar = v->scalar;
        n->quoted = v->quoted;
        v->scalar = NULL;
        subtree_free(k);
        subtree_free(v);
        return ct_err(err, CT_ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* --set overrides                                                                      */

typedef struct {
    const char *assign;  /* the whole "path=value" */
    const char *path;    /* start of the key path */
    size_t path_len;
    ct_error *err;
} setctx;

static int set_err(const setctx *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int set_err(const setctx *s, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ct_err(s->err, CT_ERR_CONFIG, "--set %.*s: %s", (int)s->path_len, s->path, msg);
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int tree_depth(const ct_node *n)
{
    int d = 0;
    for (size_t i = 0; n->type != CT_NODE_SCALAR && i < n->len; i++) {
        int c = tree_depth(n->items[i]);
        if (c > d)
            d = c;
    }
    return n->type == CT_NODE_SCALAR ? 0 : d + 1;
}

/* Parses the value of an assignment as YAML; `at` is its 0-based offset in it. */
static ct_node *parse_value(const setctx *s, const char *value, size_t at)
{
    size_t vlen = strlen(value);
    char *wrapped = malloc(vlen + 4);
    if (!wrapped) {
        ct_err(s->err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(wrapped, "v: ", 3);
    memcpy(wrapped + 3, value, vlen + 1);
    pctx c = {.file = SET_FILE, .text = wrapped, .len = vlen + 3, .col_shift = (int)at - 3};
    ct_node *root = parse_tree(&c);
    free(wrapped);
    if (!root) {
        /* Errors found at the end of the input are marked on the line after it. */
        int col = c.line > 1 && !strchr(value, '\n') ? (int)(at + vlen) + 1 : c.col;
        if (c.code == CT_ERR_NOMEM)
            ct_err(s->err, CT_ERR_NOMEM, "out of memory");
        else
            set_err(s, "column %d: %s", col, c.msg);
        return NULL;
    }
    ct_node *v = root->items[0];
    root->items[0] = NULL; /* detached; subtree_free skips it */
    subtree_free(root);
    v->parent = NULL;
    return v;
}

/* One path component: [s, s+len) of the assignment, at 1-based column col. */
typedef struct {
    const char *s;
    size_t len;
    int col;
} component;

/* The path up to (not including) component k, for messages: "model.layers". */
static void path_before(const setctx *s, component k, char *buf, size_t size)
{
    size_t done = (size_t)(k.s - s->path);
    if (done == 0)
        snprintf(buf, size, "the top level");
    else
        snprintf(buf, size, "%.*s", (int)(done - 1), s->path);
}

static int seq_index(const setctx *s, const ct_node *seq, component k, size_t *idx)
{
    char here[1024];
    path_before(s, k, here, sizeof here);
    if (!all_digits(k.s, k.len))
        return set_err(s, "%s is a list; '%.*s' is not an index", here, (int)k.len, k.s);
    errno = 0;
    unsigned long long i = strtoull(k.s, NULL, 10);
    if (errno == ERANGE || i >= seq->len)
        return set_err(s, "%s has %zu entries; index %.*s is out of range", here, seq->len,
                       (int)k.len, k.s);
    *idx = (size_t)i;
    return 0;
}

/* Puts value under component k of map (a new key is positioned in the assignment).
 * Does not take ownership of value on failure. */
static int map_place(const setctx *s, ct_node *map, component k, ct_node *value)
{
    char here[1024];
    path_before(s, k, here, sizeof here);
    char *key = strndup(k.s, k.len);
    if (!key)
        return ct_err(s->err, CT_ERR_NOMEM, "out of memory");
    long i = map_find(map, key);
    int rc = 0;
    if (i >= 0) {
        replace_item(map, (size_t)i, value);
    } else if (all_digits(k.s, k.len)) {
        rc = set_err(s, "%s is a map and has no key '%s'", here, key);
    } else {
        ct_node *kn = scalar_new(key, k.len, false, SET_FILE, 1, k.col);
        if (!kn || map_append(map, kn, value) < 0) {
            subtree_free(kn);
            rc = ct_err(s->err, CT_ERR_NOMEM, "out of memory");
        }
    }
    free(key);
    return rc;
}

static ct_node *scalar_step_err(const setctx *s, const ct_node *cur, component k)
{
    char here[1024], t[128];
    path_before(s, k, here, sizeof here);
    excerpt(cur->scalar, t, sizeof t, 60);
    set_err(s, "%s is a single value ('%s'), it has no key '%.*s'", here, t, (int)k.len, k.s);
    return NULL;
}

/* Steps from cur into component k, creating a map there when the key is missing or has
 * no value. */
static ct_node *step(const setctx *s, ct_node *cur, component k)
{
    if (cur->type == CT_NODE_SCALAR)
        return scalar_step_err(s, cur, k);
    size_t idx;
    if (cur->type == CT_NODE_SEQ) {
        if (seq_index(s, cur, k, &idx) < 0)
            return NULL;
        if (!ct_node_is_null(cur->items[idx]))
            return cur->items[idx];
        ct_node *m = node_new(CT_NODE_MAP, SET_FILE, 1, k.col);
        if (!m)
            ct_err(s->err, CT_ERR_NOMEM, "out of memory");
        else
            replace_item(cur, idx, m);
        return m;
    }
    char key[1024];
    snprintf(key, sizeof key, "%.*s", (int)k.len, k.s);
    long i = map_find(cur, key);
    if (i >= 0 && !ct_node_is_null(cur->items[i]))
        return cur->items[i];
    ct_node *m = node_new(CT_NODE_MAP, SET_FILE, 1, k.col);
    if (!m) {
        ct_err(s->err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (map_place(s, cur, k, m) < 0) {
        subtree_free(m);
        return NULL;
    }
    return m;
}

/* Stores value at the last component; the caller keeps value on failure. */
static int place(const setctx *s, ct_node *cur, component k, ct_node *value)
{
    if (cur->type == CT_NODE_SCALAR)
        return scalar_step_err(s, cur, k) ? 0 : -1;
    if (cur->type == CT_NODE_MAP)
        return map_place(s, cur, k, value);
    size_t idx;
    if (seq_index(s, cur, k, &idx) < 0)
        return -1;
    replace_item(cur, idx, value);
    return 0;
}

static int split_path(const setctx *s, component *parts, int max, int *n)
{
    *n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= s->path_len; i++) {
        if (i < s->path_len && s->path[i] != '.')
            continue;
        if (i == start)
            return set_err(s, "empty key name in the path");
        if (*n == max)
            return set_err(s, "nesting deeper than %d levels", CT_CONFIG_MAX_DEPTH);
        parts[(*n)++] = (component){s->path + start, i - start,
                                    (int)(s->path + start - s->assign) + 1};
        start = i + 1;
    }
    return 0;
}

int ct_config_set(ct_node *root, const char *assignment, ct_error *err)
{
    setctx s = {.assign = assignment, .path = assignment, .err = err};
    const char *eq = strchr(assignment, '=');
    while (*s.path == ' ')
        s.path++;
    if (!eq) {
        s.path_len = strlen(s.path);
        return set_err(&s, "expected KEY.PATH=VALUE");
    }
    s.path_len = eq > s.path ? (size_t)(eq - s.path) : 0;
    while (s.path_len > 0 && s.path[s.path_len - 1] == ' ')
        s.path_len--;
    if (s.path_len == 0) {
        s.path = assignment;
        s.path_len = strlen(assignment);
        return set_err(&s, "the key path is empty");
    }
    /* A value is one line: YAML would drop what follows a newline without a word. */
    for (const char *c = assignment; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u >= 0x20 && u != 0x7f)
            continue;
        char what[32];
        if (u == '\n')
            snprintf(what, sizeof what, "a newline");
        else
            snprintf(what, sizeof what, "the control character 0x%02x", u);
        if (c < eq)
            return ct_err(err, CT_ERR_CONFIG, "--set: the key path holds %s at column %d; "
                          "a --set option is one line without control characters", what,
                          (int)(c - assignment) + 1);
        return set_err(&s, "the value holds %s at column %d; a --set value is one line "
                           "without control characters", what, (int)(c - assignment) + 1);
    }
    if (!root || root->type != CT_NODE_MAP)
        return set_err(&s, "the configuration is not a map");
    component parts[CT_CONFIG_MAX_DEPTH];
    int n;
    if (split_path(&s, parts, CT_CONFIG_MAX_DEPTH, &n) < 0)
        return -1;
    ct_node *value = parse_value(&s, eq + 1, (size_t)(eq + 1 - assignment));
    if (!value)
        return -1;
    /* The root is level 1 and every component but the last descends one level. */
    if (n + tree_depth(value) > CT_CONFIG_MAX_DEPTH) {
        subtree_free(value);
        return set_err(&s, "nesting deeper than %d levels", CT_CONFIG_MAX_DEPTH);
    }
    ct_node *cur = root;
    for (int i = 0; i < n - 1 && cur; i++)
        cur = step(&s, cur, parts[i]);
    if (!cur || place(&s, cur, parts[n - 1], value) < 0) {
        subtree_free(value);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Emitting                                                                             */

/* Whether s would read back as the same plain scalar in block context. Conservative:
 * anything doubtful is quoted. */
static bool plain_safe(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == ' ' || s[n - 1] == ' ' || s[n - 1] == ':')
        return false;
    if (strchr(",[]{}#&*!|>'\"%@`\t", s[0]) || s[n - 1] == '\t')
        return false;
    /* '-', '?' and ':' start a plain scalar only when text follows them directly. */
    if (strchr("-?:", s[0]) && (s[1] == ' ' || s[1] == '\t' || s[1] == '\0'))
        return false;
    if (!strncmp(s, "---", 3))
        return false;
    if (!strncmp(s, "...", 3))
        return false;
    if (strstr(s, ": ") || strstr(s, " #") || strstr(s, ":\t") || strstr(s, "\t#"))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 && *p != '\t')
            return false;
        if (*p == 0x7F || (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F))
            return false;
        if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9))
            return false;
        if (p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
            return false;
    }
    return true;
}

static void put_quoted(const char *s, FILE *out)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); continue;
        case '\\': fputs("\\\\", out); continue;
        case '\n': fputs("\\n", out); continue;
        case '\t': fputs("\\t", out); continue;
        case '\r': fputs("\\r", out); continue;
        default: break;
        }
        if (*p < 0x20 || *p == 0x7F) {
            fprintf(out, "\\x%02X", *p);
        } else if (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) {
            fprintf(out, "\\u00%02X", p[1]);
            p++;
        } else if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) {
            fputs(p[2] == 0xA8 ? "\\L" : "\\P", out);
            p += 2;
        } else {
            fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* Writes a scalar's text; an empty plain scalar (null) writes nothing. */
static void put_scalar(const ct_node *n, FILE *out)
{
    if (!n->quoted && !n->scalar[0])
        return;
    if (n->quoted || !plain_safe(n->scalar))
        put_quoted(n->scalar, out);
    else
        fputs(n->scalar, out);
}

static void put_indent(int indent, FILE *out)
{
    for (int i = 0; i < indent; i++)
        fputc(' ', out);
}

static void emit_node(const ct_node *n, int indent, bool inline_first, FILE *out);

/* The value after "key:" or "-": inline for scalars and empty collections, else on the
 * following lines (a map in a sequence starts on the dash's line). */
static void emit_value(const ct_node *v, int indent, bool in_seq, FILE *out)
{
    if (v->type == CT_NODE_SCALAR) {
        if (v->quoted || v->scalar[0])
            fputc(' ', out);
        put_scalar(v, out);
        fputc('\n', out);
    } else if (v->len == 0) {
        fputs(v->type == CT_NODE_MAP ? " {}\n" : " []\n", out);
    } else if (in_seq) {
        fputc(' ', out);
        emit_node(v, indent + 2, true, out);
    } else {
        fputc('\n', out);
        emit_node(v, indent + 2, false, out);
    }
}

static void emit_node(const ct_node *n, int indent, bool inline_first, FILE *out)
{
    for (size_t i = 0; i < n->len; i++) {
        if (i > 0 || !inline_first)
            put_indent(indent, out);
        if (n->type == CT_NODE_SEQ) {
            fputc('-', out);
        } else {
            const ct_node *k = n->key_nodes[i];
            if (!k->quoted && !k->scalar[0])
                fputs("\"\"", out);
            else
                put_scalar(k, out);
            fputc(':', out);
        }
        emit_value(n->items[i], indent, n->type == CT_NODE_SEQ, out);
    }
}

int ct_config_emit(const ct_node *root, FILE *out, ct_error *err)
{
    if (!root || root->type != CT_NODE_MAP)
        return ct_err(err, CT_ERR_INTERNAL, "the configuration is not a map");
    if (root->len == 0)
        fputs("{}\n", out);
    else
        emit_node(root, 0, false, out);
    if (fflush(out) != 0 || ferror(out))
        return ct_err(err, CT_ERR_IO, "cannot write the configuration: %s", strerror(errno));
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Suggestions and key checks                                                           */

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(s, *list))
            return true;
    return false;
}

/* "a, b, c" into buf (truncated if it must be). */
static void join(const char *const *list, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *p = list; *p && used < size; p++) {
        int w = snprintf(buf + used, size - used, "%s%s", p == list ? "" : ", ", *p);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

int ct_cfg_check_keys(const ct_node *map, const char *const *allowed, const char *what,
                      ct_error *err)
{
    if (!map)
        return 0;
    if (map->type != CT_NODE_MAP) {
        char got[200];
        describe(map, got, sizeof got);
        return ct_node_err(err, map, "%s must be a map of keys, got %s", what, got);
    }
    for (size_t i = 0; i < map->len; i++) {
        if (in_list(map->keys[i], allowed))
            continue;
        char known[1024], hint[300] = "", key[128];
        join(allowed, known, sizeof known);
        excerpt(map->keys[i], key, sizeof key, 80);
        const char *s = ct_suggest(map->keys[i], allowed);
        if (s)
            snprintf(hint, sizeof hint, " (did you mean '%s'?)", s);
        return ct_node_err(err, map->key_nodes[i], "unknown key '%s' in %s%s; known keys: %s",
                           key, what, hint, known);
    }
    return 0;
}

int ct_cfg_require(const ct_node *map, const char *key, const char *what, ct_error *err)
{
    long i = map_find(map, key);
    if (i >= 0 && !ct_node_is_null(map->items[i]))
        return 0;
    if (!map)
        return ct_err(err, CT_ERR_CONFIG, "%s needs the key '%s'", what, key);
    return ct_node_err(err, map, "%s needs the key '%s'", what, key);
}

/* ------------------------------------------------------------------------------------ */
/* Scalar conversions                                                                   */

static bool digits(const char **p)
{
    const char *s = *p;
    while (**p >= '0' && **p <= '9')
        (*p)++;
    return *p > s;
}

/* Decimal number syntax: [+-] (d+[.d*] | .d+) [(e|E)[+-]d+]; sets *exp when an exponent
 * is present and *frac when a fraction point is. */
static bool number_syntax(const char *s, bool *frac, bool *exp)
{
    *frac = *exp = false;
    if (*s == '+' || *s == '-')
        s++;
    bool whole = digits(&s);
    if (*s == '.') {
        *frac = true;
        s++;
        bool part = digits(&s);
        if (!whole && !part)
            return false;
    } else if (!whole) {
        return false;
    }
    if (*s == 'e' || *s == 'E') {
        *exp = true;
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!digits(&s))
            return false;
    }
    return *s == '\0';
}

int ct_node_int(const ct_node *n, int64_t *out, ct_error *err)
{
    bool frac, exp;
    if (n->type != CT_NODE_SCALAR || n->quoted || !number_syntax(n->scalar, &frac, &exp) ||
        (frac && !exp))
        return expected(err, n, "an integer");
    errno = 0;
    if (!frac && !exp) {
        long long v = strtoll(n->scalar, NULL, 10);
        if (errno == ERANGE)
            return expected(err, n, "a 64-bit integer");
        *out = v;
        return 0;
    }
    double d = strtod(n->scalar, NULL);
    if (!isfinite(d) || d != trunc(d))
        return expected(err, n, "an integer");
    if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
        return expected(err, n, "a 64-bit integer");
    *out = (int64_t)d;
    return 0;
}

int ct_node_float(const ct_node *n, double *out, ct_error *err)
{
    bool frac, exp;
    if (n->type != CT_NODE_SCALAR || n->quoted || !number_syntax(n->scalar, &frac, &exp))
        return expected(err, n, "a number");
    double d = strtod(n->scalar, NULL);
    if (!isfinite(d))
        return expected(err, n, "a finite number");
    *out = d;
    return 0;
}

int ct_node_bool(const ct_node *n, bool *out, ct_error *err)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    if (n->type == CT_NODE_SCALAR && !n->quoted) {
        for (int i = 0; i < 3; i++) {
            if (!strcasecmp(n->scalar, yes[i]) || !strcasecmp(n->scalar, no[i])) {
                *out = !strcasecmp(n->scalar, yes[i]);
                return 0;
            }
        }
    }
    return expected(err, n, "true or false");
}

/* ------------------------------------------------------------------------------------ */
/* Typed getters                                                                        */

/* Finds map[key]; *v is NULL when absent, or the node (possibly a null scalar). */
static int lookup(ct_node *map, const char *key, ct_node **v, ct_error *err)
{
    *v = NULL;
    if (!map)
        return ct_err(err, CT_ERR_INTERNAL, "no map to read '%s' from", key);
    if (map->type != CT_NODE_MAP) {
        char got[200], what[300];
        describe(map, got, sizeof got);
        for_name(map, what, sizeof what);
        return ct_node_err(err, map, "expected a map of keys%s (with the key '%s'), got %s",
                           what, key, got);
    }
    *v = ct_map_get(map, key);
    return 0;
}

/* Writes the default: into the null node in place (keeping its position), or as a new
 * entry at the end of the map. */
static ct_node *put_default(ct_node *map, const char *key, ct_node *null_node,
                            const char *text, ct_error *err)
{
    ct_node *n = null_node;
    if (n) {
        char *copy = strdup(text);
        if (copy) {
            free(n->scalar);
            n->scalar = copy;
            n->quoted = false;
        } else {
            n = NULL;
        }
    } else {
        n = ct_map_set_scalar(map, key, text);
    }
    if (!n) {
        ct_err(err, CT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    n->used = true;
    return n;
}

/* The map's name for "needs the key" errors. */
static int require_err(ct_node *map, const char *key, ct_error *err)
{
    char name[256], what[300];
    if (node_name(map, name, sizeof name))
        snprintf(what, sizeof what, "'%s'", name);
    else
        snprintf(what, sizeof what, "the top level");
    return ct_node_err(err, map, "%s needs the key '%s'", what, key);
}

int ct_cfg_int(ct_node *map, const char *key, int64_t def, int64_t min, int64_t max,
               int64_t *out, ct_error *err)
{
    ct_node *v;
    if (lookup(map, key, &v, err) < 0)
        return -1;
    if (ct_node_is_null(v)) {
        char text[32];
        snprintf(text, sizeof text, "%" PRId64, def);
        if (!put_default(map, key, v, text, err))
            return -1;
        *out = def;
        return 0;
    }
    int64_t x = 0;
    if (ct_node_int(v, &x, err) < 0)
        return -1;
    if (x >= min && x <= max) {
        *out = x;
        return 0;
    }
    char who[300];
    subject(v, who, sizeof who);
    if (max == INT64_MAX)
        return ct_node_err(err, v, "%s must be at least %" PRId64 ", got %s", who, min,
                           v->scalar);
    if (min == INT64_MIN)
        return ct_node_err(err, v, "%s must be at most %" PRId64 ", got %s", who, max,
                           v->scalar);
    return ct_node_err(err, v, "%s must be between %" PRId64 " and %" PRId64 ", got %s", who,
                       min, max, v->scalar);
}

/* Shortest %g text that reads back as exactly x. */
static void format_double(double x, char *buf, size_t size)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            return;
    }
}

static int float_range_err(const ct_node *v, double min, double max, ct_error *err)
{
    char who[300], lo[40], hi[40];
    subject(v, who, sizeof who);
    format_double(min, lo, sizeof lo);
    format_double(max, hi, sizeof hi);
    if (max >= HUGE_VAL)
        return ct_node_err(err, v, "%s must be at least %s, got %s", who, lo, v->scalar);
    if (min <= -HUGE_VAL)
        return ct_node_err(err, v, "%s must be at most %s, got %s", who, hi, v->scalar);
    return ct_node_err(err, v, "%s must be between %s and %s, got %s", who, lo, hi,
                       v->scalar);
}

int ct_cfg_float(ct_node *map, const char *key, double def, double min, double max,
                 double *out, ct_error *err)
{
    ct_node *v;
    if (lookup(map, key, &v, err) < 0)
        return -1;
    if (ct_node_is_null(v)) {
        char text[40];
        format_double(def, text, sizeof text);
        if (!put_default(map, key, v, text, err))
            return -1;
        *out = def;
        return 0;
    }
    double x = 0;
    if (ct_node_float(v, &x, err) < 0)
        return -1;
    if (!(x >= min && x <= max))
        return float_range_err(v, min, max, err);
    *out = x;
    return 0;
}

int ct_cfg_bool(ct_node *map, const char *key, bool def, bool *out, ct_error *err)
{
    ct_node *v;
    if (lookup(map, key, &v, err) < 0)
        return -1;
    if (ct_node_is_null(v)) {
        if (!put_default(map, key, v, def ? "true" : "false", err))
            return -1;
        *out = def;
        return 0;
    }
    return ct_node_bool(v, out, err);
}

int ct_cfg_string(ct_node *map, const char *key, const char *def, const char **out,
                  ct_error *err)
{
    ct_node *v;
    if (lookup(map, key, &v, err) < 0)
        return -1;
    if (ct_node_is_null(v)) {
        if (!def)
            return require_err(map, key, err);
        v = put_default(map, key, v, def, err);
        if (!v)
            return -1;
        v->quoted = !def[0]; /* so an empty default is not read back as "no value" */
        *out = v->scalar;
        return 0;
    }
    if (v->type != CT_NODE_SCALAR)
        return expected(err, v, "a string");
    *out = v->scalar;
    return 0;
}

static int enum_index(const char *s, const char *const *choices)
{
    for (int i = 0; choices[i]; i++)
        if (!strcmp(s, choices[i]))
            return i;
    return -1;
}

int ct_cfg_enum(ct_node *map, const char *key, const char *def, const char *const *choices,
                int *out, ct_error *err)
{
    if (def && enum_index(def, choices) < 0)
        return ct_err(err, CT_ERR_INTERNAL, "the default '%s' for '%s' is not a choice", def,
                      key);
    const char *s;
    if (ct_cfg_string(map, key, def, &s, err) < 0)
        return -1;
    *out = enum_index(s, choices);
    if (*out >= 0)
        return 0;
    const ct_node *v = ct_map_get(map, key);
    char list[1024], hint[300] = "", who[300], text[128];
    join(choices, list, sizeof list);
    subject(v, who, sizeof who);
    excerpt(s, text, sizeof text, 80);
    const char *sug = ct_suggest(s, choices);
    if (sug)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", sug);
    return ct_node_err(err, v, "unknown value '%s' for %s%s; choices: %s", text, who, hint,
                       list);
}

static int int_item(const ct_node *n, int64_t *out, ct_error *err)
{
    if (ct_node_int(n, out, err) < 0)
        return -1;
    if (*out >= 1)
        return 0;
    char who[300];
    subject(n, who, sizeof who);
    return ct_node_err(err, n, "%s must be at least 1, got %s", who, n->scalar);
}

int ct_cfg_int_list(ct_node *map, const char *key, int64_t *out, int max_len, int *len,
                    ct_error *err)
{
    ct_node *v;
    if (lookup(map, key, &v, err) < 0)
        return -1;
    if (ct_node_is_null(v))
        return require_err(map, key, err);
    if (max_len < 1)
        return ct_err(err, CT_ERR_INTERNAL, "no room for the entries of '%s'", key);
    if (v->type == CT_NODE_SCALAR) {
        if (int_item(v, &out[0], err) < 0)
            return -1;
        *len = 1;
        return 0;
    }
    if (v->type != CT_NODE_SEQ)
        return expected(err, v, "a list of integers");
    if (v->len == 0)
        return ct_node_err(err, v, "'%s' needs at least one entry", key);
    if (v->len > (size_t)max_len)
        return ct_node_err(err, v, "'%s' has %zu entries; at most %d are allowed", key, v->len,
                           max_len);
    for (size_t i = 0; i < v->len; i++) {
        v->items[i]->used = true;
        if (int_item(v->items[i], &out[i], err) < 0)
            return -1;
    }
    *len = (int)v->len;
    return 0;
}
