/* test_config.c - the YAML config tree: parsing with positions, rejection of unsafe or
 * malformed input, --set overrides, emitting, key checks and the typed getters. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                            */

static ct_node *parse_ok(const char *text)
{
    ct_error err = {0};
    ct_node *root = ct_config_parse(text, strlen(text), "t.yaml", &err);
    ck_assert_msg(root != NULL, "parse failed: %s", err.msg);
    return root;
}

/* Parses text (len bytes) and asserts the exact error message and code. */
static void expect_parse_err_len(const char *text, size_t len, const char *msg)
{
    ct_error err = {0};
    ct_node *root = ct_config_parse(text, len, "t.yaml", &err);
    if (root)
        ct_node_free(root);
    ck_assert_msg(root == NULL, "parse unexpectedly succeeded, expected: %s", msg);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, msg);
}

static void expect_parse_err(const char *text, const char *msg)
{
    expect_parse_err_len(text, strlen(text), msg);
}

static void expect_set_err(ct_node *root, const char *assignment, const char *msg)
{
    ct_error err = {0};
    ck_assert_int_eq(ct_config_set(root, assignment, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, msg);
}

static void set_ok(ct_node *root, const char *assignment)
{
    ct_error err = {0};
    ck_assert_msg(ct_config_set(root, assignment, &err) == 0, "%s: %s", assignment, err.msg);
}

/* Follows "a.b.0.c" through maps and sequences; NULL when absent. Does not mark. */
static const ct_node *at(const ct_node *n, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *p = strtok_r(buf, ".", &save); p && n;
         p = strtok_r(NULL, ".", &save)) {
        if (n->type == CT_NODE_SEQ) {
            size_t i = (size_t)atoi(p);
            n = i < n->len ? n->items[i] : NULL;
        } else if (n->type == CT_NODE_MAP) {
            const ct_node *next = NULL;
            for (size_t i = 0; i < n->len; i++)
                if (!strcmp(n->keys[i], p))
                    next = n->items[i];
            n = next;
        } else {
            n = NULL;
        }
    }
    return n;
}

static void assert_pos(const ct_node *n, const char *file, int line, int col)
{
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(n->file, file);
    ck_assert_int_eq(n->line, line);
    ck_assert_int_eq(n->col, col);
}

static void assert_scalar(const ct_node *n, const char *text, bool quoted)
{
    ck_assert_ptr_nonnull(n);
    ck_assert_int_eq(n->type, CT_NODE_SCALAR);
    ck_assert_str_eq(n->scalar, text);
    ck_assert_int_eq(n->quoted, quoted);
}

/* Structural equality: types, texts, quoting, keys (with their quoting) and order. */
static bool tree_equal(const ct_node *a, const ct_node *b)
{
    if (a->type != b->type || a->len != b->len)
        return false;
    if (a->type == CT_NODE_SCALAR)
        return !strcmp(a->scalar, b->scalar) && a->quoted == b->quoted;
    for (size_t i = 0; i < a->len; i++) {
        if (a->type == CT_NODE_MAP &&
            (strcmp(a->keys[i], b->keys[i]) || a->key_nodes[i]->quoted != b->key_nodes[i]->quoted))
            return false;
        if (!tree_equal(a->items[i], b->items[i]))
            return false;
    }
    return true;
}

/* Emits root into a string the caller frees. */
static char *emit_str(const ct_node *root)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    ct_error err = {0};
    ck_assert_msg(ct_config_emit(root, f, &err) == 0, "%s", err.msg);
    fclose(f);
    return buf;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------------------- */
/* Parsing                                                                            */

START_TEST(test_positions_from_file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_src("tests/configs/parse/positions.yaml"));
    ct_error err = {0};
    ct_node *root = ct_config_load(path, &err);
    ck_assert_msg(root != NULL, "%s", err.msg);
    ck_assert_int_eq(root->type, CT_NODE_MAP);
    assert_pos(root, path, 2, 1);
    ck_assert_int_eq(root->len, 4);
    ck_assert_str_eq(root->keys[0], "name");
    ck_assert_str_eq(root->keys[3], "quoted");
    assert_pos(root->key_nodes[1], path, 3, 1);
    assert_scalar(at(root, "name"), "demo", false);
    assert_pos(at(root, "name"), path, 2, 7);
    assert_pos(at(root, "model"), path, 4, 3);
    const ct_node *layers = at(root, "model.layers");
    ck_assert_int_eq(layers->type, CT_NODE_SEQ);
    ck_assert_int_eq(layers->len, 2);
    assert_pos(layers, path, 5, 5);
    assert_pos(at(root, "model.layers.0"), path, 5, 7);
    assert_pos(at(root, "model.layers.0.type"), path, 5, 13);
    assert_pos(at(root, "model.layers.0")->key_nodes[1], path, 6, 7);
    assert_scalar(at(root, "model.layers.0.units"), "64", false);
    assert_pos(at(root, "model.layers.0.units"), path, 6, 14);
    assert_pos(at(root, "model.layers.1"), path, 7, 7);
    assert_pos(at(root, "model.layers.1")->key_nodes[1], path, 7, 23);
    assert_pos(at(root, "model.layers.1.rate"), path, 7, 29);
    assert_pos(at(root, "model.input_shape"), path, 8, 16);
    assert_pos(at(root, "model.input_shape.1"), path, 8, 21);
    ck_assert_ptr_eq(at(root, "model.input_shape.1")->parent, at(root, "model.input_shape"));
    assert_scalar(at(root, "empty"), "", false);
    assert_scalar(at(root, "quoted"), "3", true);
    assert_pos(at(root, "quoted"), path, 10, 9);
    ck_assert(!at(root, "name")->used);
    ct_node_free(root);
}
END_TEST

START_TEST(test_parse_scalars_and_nulls)
{
    ct_node *root = parse_ok("a:\nb: ~\nc: null\nd: \"\"\ne: 'x y'\nf: |\n  l1\n  l2\n"
                             "g: plain text here\nh: >-\n  folded\n  text\n");
    assert_scalar(at(root, "a"), "", false);
    assert_scalar(at(root, "b"), "~", false);
    assert_scalar(at(root, "c"), "null", false);
    assert_scalar(at(root, "d"), "", true);
    assert_scalar(at(root, "e"), "x y", true);
    assert_scalar(at(root, "f"), "l1\nl2\n", true);
    assert_scalar(at(root, "g"), "plain text here", false);
    assert_scalar(at(root, "h"), "folded text", true);
    ck_assert_str_eq(root->file, "t.yaml");
    assert_pos(at(root, "e"), "t.yaml", 5, 4);
    ct_node_free(root);
}
END_TEST

/* One answer to "is this a null": YAML 1.2's core schema, unquoted only. */
START_TEST(test_node_is_null)
{
    ct_node *root = parse_ok("empty:\ntilde: ~\nlower: null\ntitle: Null\nupper: NULL\n"
                             "qnull: \"null\"\nsqnull: 'null'\nqtilde: \"~\"\nqempty: \"\"\n"
                             "mixed: nULL\nnone: None\nzero: 0\nmap: {}\nseq: []\n");
    const char *nulls[] = {"empty", "tilde", "lower", "title", "upper"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        ck_assert_msg(ct_node_is_null(at(root, nulls[i])), "%s should be null", nulls[i]);
    const char *values[] = {"qnull", "sqnull", "qtilde", "qempty", "mixed", "none", "zero",
                            "map", "seq"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        ck_assert_msg(!ct_node_is_null(at(root, values[i])), "%s should not be null",
                      values[i]);
    /* Absent: a key that is not there, and no node at all. */
    ck_assert(ct_node_is_null(ct_map_get(root, "absent")));
    ck_assert(ct_node_is_null(NULL));

    /* The getters follow it: null takes the default, a quoted "null" is a string. */
    ct_error err = {0};
    const char *str;
    ck_assert_int_eq(ct_cfg_string(root, "qnull", "dflt", &str, &err), 0);
    ck_assert_str_eq(str, "null");
    ck_assert_int_eq(ct_cfg_string(root, "title", "dflt", &str, &err), 0);
    ck_assert_str_eq(str, "dflt");
    int64_t v;
    ck_assert_int_eq(ct_cfg_int(root, "tilde", 7, 0, 10, &v, &err), 0);
    ck_assert_int_eq(v, 7);
    ck_assert_int_eq(ct_cfg_int(root, "empty", 8, 0, 10, &v, &err), 0);
    ck_assert_int_eq(v, 8);
    ck_assert_int_eq(ct_cfg_int(root, "qempty", 8, 0, 10, &v, &err), -1);
    ct_node_free(root);
}
END_TEST

START_TEST(test_parse_bom)
{
    ct_node *root = parse_ok("\xEF\xBB\xBF" "a: 1\nb: 2\n");
    assert_pos(root->key_nodes[0], "t.yaml", 1, 1);
    assert_pos(at(root, "a"), "t.yaml", 1, 4);
    assert_pos(at(root, "b"), "t.yaml", 2, 4);
    ct_node_free(root);
}
END_TEST

START_TEST(test_load_missing_file)
{
    ct_error err = {0};
    ck_assert_ptr_null(ct_config_load("/nonexistent/dir/x.yaml", &err));
    ck_assert_int_eq(err.code, CT_ERR_IO);
    ck_assert_str_eq(err.msg, "cannot read /nonexistent/dir/x.yaml: No such file or directory");
    char *dir = tu_tmpdir();
    ck_assert_ptr_null(ct_config_load(dir, &err));
    ck_assert_int_eq(err.code, CT_ERR_IO);
    char want[4200];
    snprintf(want, sizeof want, "cannot read %s: it is a directory", dir);
    ck_assert_str_eq(err.msg, want);
    /* A FIFO nothing writes to: refused before the open, which would block. */
    char fifo[4096];
    snprintf(fifo, sizeof fifo, "%.4000s/fifo.yaml", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_ptr_null(ct_config_load(fifo, &err));
    snprintf(want, sizeof want, "cannot read %.4096s: it is a FIFO, not a regular file", fifo);
    ck_assert_str_eq(err.msg, want);
    unlink(fifo);
    rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_syntax_error)
{
    char path[4096], want[4300];
    snprintf(path, sizeof path, "%s", tu_src("tests/configs/parse/syntax_error.yaml"));
    ct_error err = {0};
    ck_assert_ptr_null(ct_config_load(path, &err));
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    snprintf(want, sizeof want,
             "%s:4:6: did not find expected '-' indicator (while parsing a block "
             "collection at 3:5)", path);
    ck_assert_str_eq(err.msg, want);
    expect_parse_err("a: [1, 2\nb: 3\n",
                     "t.yaml:2:2: did not find expected ',' or ']' (while parsing a flow "
                     "sequence at 1:4)");
    expect_parse_err("a: 1\n b: 2\n", "t.yaml:2:3: mapping values are not allowed in this context");
    expect_parse_err("a: \"open\n",
                     "t.yaml:2:1: found unexpected end of stream (while scanning a quoted "
                     "scalar at 1:4)");
}
END_TEST

START_TEST(test_anchors_and_aliases)
{
    expect_parse_err("base: &b {units: 3}\nother: *b\n",
                     "t.yaml:1:7: anchors and aliases are not allowed");
    expect_parse_err("a: 1\nb: *nowhere\n", "t.yaml:2:4: anchors and aliases are not allowed");
    expect_parse_err("a:\n  - &x 1\n", "t.yaml:2:5: anchors and aliases are not allowed");
    /* A merge key is an alias too. */
    expect_parse_err("a: {x: 1}\nb:\n  <<: *a\n", "t.yaml:3:7: anchors and aliases are not allowed");
}
END_TEST

START_TEST(test_billion_laughs)
{
    char path[4096], want[4300];
    snprintf(path, sizeof path, "%s", tu_src("tests/configs/parse/billion_laughs.yaml"));
    ct_error err = {0};
    double t0 = now_s();
    ck_assert_ptr_null(ct_config_load(path, &err));
    double dt = now_s() - t0;
    snprintf(want, sizeof want, "%s:2:4: anchors and aliases are not allowed", path);
    ck_assert_str_eq(err.msg, want);
    ck_assert_msg(dt < 0.5, "took %.3f s", dt);
}
END_TEST

START_TEST(test_tags_rejected)
{
    expect_parse_err("cmd: !!python/object/apply:os.system [\"rm -rf /\"]\n",
                     "t.yaml:1:6: tags are not allowed");
    expect_parse_err("a: !!str 3\n", "t.yaml:1:4: tags are not allowed");
    expect_parse_err("a: !custom {b: 1}\n", "t.yaml:1:4: tags are not allowed");
    expect_parse_err("a:\n  - !!map {}\n", "t.yaml:2:5: tags are not allowed");
    expect_parse_err("%TAG !e! tag:example.com,2000:\n---\na: 1\n",
                     "t.yaml:1:1: tags are not allowed");
}
END_TEST

START_TEST(test_duplicate_keys)
{
    expect_parse_err("model:\n  units: 3\n  act: relu\n  units: 4\n",
                     "t.yaml:4:3: duplicate key 'units' (first defined at 2:3)");
    expect_parse_err("a: {x: 1, y: 2, x: 3}\n",
                     "t.yaml:1:17: duplicate key 'x' (first defined at 1:5)");
    /* Equal after quoting is still the same key. */
    expect_parse_err("a: 1\n\"a\": 2\n", "t.yaml:2:1: duplicate key 'a' (first defined at 1:1)");
    /* The same key in different maps is fine. */
    ct_node *root = parse_ok("a: {x: 1}\nb: {x: 2}\n");
    ct_node_free(root);
}
END_TEST

START_TEST(test_duplicate_keys_large_map)
{
    /* Large maps use a hash index: it must find duplicates and stay fast. */
    size_t n = 100000, cap = n * 16 + 64, len = 0;
    char *text = malloc(cap);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "k%zu: %zu\n", i, i);
    double t0 = now_s();
    ct_node *root = parse_ok(text);
    double dt = now_s() - t0;
    ck_assert_int_eq(root->len, n);
    ck_assert_str_eq(root->keys[12345], "k12345");
    ct_node_free(root);
    ck_assert_msg(dt < 10.0, "parsing %zu keys took %.2f s", n, dt);
    len = 0;
    for (size_t i = 0; i < 1000; i++)
        len += (size_t)snprintf(text + len, cap - len, "k%zu: %zu\n", i, i);
    snprintf(text + len, cap - len, "k500: again\n");
    expect_parse_err(text, "t.yaml:1001:1: duplicate key 'k500' (first defined at 501:1)");
    free(text);
}
END_TEST

START_TEST(test_non_scalar_keys)
{
    expect_parse_err("? [a, b]\n: 1\n", "t.yaml:1:3: map keys must be plain text, not a list");
    expect_parse_err("a: {{x: 1}: 2}\n", "t.yaml:1:5: map keys must be plain text, not a map");
}
END_TEST

/* n nested maps, one per line: "a:\n  a:\n ... a: 1". */
static char *nested_maps(int n)
{
    size_t cap = (size_t)n * ((size_t)n * 2 + 8), len = 0;
    char *text = malloc(cap);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%*s%s\n", 2 * i, "",
                                i == n - 1 ? "a: 1" : "a:");
    return text;
}

START_TEST(test_depth_limit)
{
    char *deep = nested_maps(100);
    expect_parse_err(deep, "t.yaml:65:129: nesting deeper than 64 levels");
    free(deep);
    char *ok = nested_maps(CT_CONFIG_MAX_DEPTH);
    ct_node *root = parse_ok(ok);
    const ct_node *n = root;
    int depth = 1;
    while (n->items[0]->type == CT_NODE_MAP) {
        n = n->items[0];
        depth++;
    }
    ck_assert_int_eq(depth, CT_CONFIG_MAX_DEPTH);
    assert_pos(n, "t.yaml", 64, 127);
    ct_node_free(root);
    free(ok);
    /* Flow style: the 64th bracket is the 65th level (the top map is the first). */
    char flow[300] = "a: ";
    for (int i = 0; i < 100; i++)
        strcat(flow, "[");
    for (int i = 0; i < 100; i++)
        strcat(flow, "]");
    strcat(flow, "\n");
    expect_parse_err(flow, "t.yaml:1:67: nesting deeper than 64 levels");
}
END_TEST

START_TEST(test_scalar_length_limit)
{
    size_t n = 65536;
    char *text = malloc(n + 16);
    memcpy(text, "a: ", 3);
    memset(text + 3, 'x', n);
    strcpy(text + 3 + n, "\n");
    ct_node *root = parse_ok(text);
    ck_assert_int_eq(strlen(at(root, "a")->scalar), n);
    ct_node_free(root);
    memset(text + 3, 'x', n + 1);
    strcpy(text + 4 + n, "\n");
    expect_parse_err(text, "t.yaml:1:4: a text value is longer than 65536 bytes");
    free(text);
}
END_TEST

START_TEST(test_file_size_limit)
{
    size_t limit = (size_t)16 << 20;
    char *text = malloc(limit + 1);
    /* Exactly 16 MiB: one long comment line, then a key. */
    memset(text, '#', limit);
    memcpy(text + limit - 6, "\na: 1\n", 6);
    ct_error err = {0};
    ct_node *root = ct_config_parse(text, limit, "big.yaml", &err);
    ck_assert_msg(root != NULL, "%s", err.msg);
    assert_pos(at(root, "a"), "big.yaml", 2, 4);
    ct_node_free(root);
    text[limit] = '\n';
    expect_parse_err_len(text, limit + 1, "t.yaml:1:1: the file is larger than 16 MiB");
    char *dir = tu_tmpdir();
    char path[4200], want[4300];
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_int_eq(fwrite(text, 1, limit + 1, f), limit + 1);
    fclose(f);
    ck_assert_ptr_null(ct_config_load(path, &err));
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    snprintf(want, sizeof want, "%s:1:1: the file is larger than 16 MiB", path);
    ck_assert_str_eq(err.msg, want);
    unlink(path);
    rmdir(dir);
    free(dir);
    free(text);
}
END_TEST

START_TEST(test_non_utf8)
{
    expect_parse_err("a: 1\nb: caf\xE9\n", "t.yaml:2:7: incomplete UTF-8 octet sequence");
    expect_parse_err("a: \xFF\n", "t.yaml:1:4: invalid leading UTF-8 octet (#xFF)");
    expect_parse_err("a: \xC3(\n", "t.yaml:1:4: invalid trailing UTF-8 octet (#x28)");
    /* Valid multi-byte text is fine and columns count characters. */
    ct_node *root = parse_ok("\xC3\xA9t\xC3\xA9: \xE2\x82\xAC\n");
    assert_scalar(at(root, "\xC3\xA9t\xC3\xA9"), "\xE2\x82\xAC", false);
    assert_pos(at(root, "\xC3\xA9t\xC3\xA9"), "t.yaml", 1, 6);
    ct_node_free(root);
    /* Through a file too. */
    char *dir = tu_tmpdir();
    const char *p = tu_write(dir, "latin1.yaml", "name: r\xE9sum\xE9\n");
    char path[4200], want[4300];
    snprintf(path, sizeof path, "%s", p);
    ct_error err = {0};
    ck_assert_ptr_null(ct_config_load(path, &err));
    snprintf(want, sizeof want, "%s:1:8: invalid trailing UTF-8 octet (#x73)", path);
    ck_assert_str_eq(err.msg, want);
    unlink(path);
    rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_control_characters)
{
    expect_parse_err("a: \"x\\0y\"\n", "t.yaml:1:4: a NUL character is not allowed in text");
    expect_parse_err("a: x\x07y\n", "t.yaml:1:5: control characters are not allowed (#x7)");
}
END_TEST

START_TEST(test_empty_and_non_map_documents)
{
    expect_parse_err("", "t.yaml:1:1: the experiment file is empty");
    expect_parse_err("# just a comment\n\n", "t.yaml:1:1: the experiment file is empty");
    expect_parse_err("---\n", "t.yaml:2:1: the experiment file is empty");
    expect_parse_err("~\n", "t.yaml:1:1: the experiment file is empty");
    expect_parse_err("- a\n- b\n", "t.yaml:1:1: the top level must be a map of keys");
    expect_parse_err("just text\n", "t.yaml:1:1: the top level must be a map of keys");
    expect_parse_err("\"\"\n", "t.yaml:1:1: the top level must be a map of keys");
    ct_error err = {0};
    ck_assert_ptr_null(ct_config_parse(NULL, 0, "n.yaml", &err));
    ck_assert_str_eq(err.msg, "n.yaml:1:1: the experiment file is empty");
    /* An empty flow map is a valid (empty) config. */
    ct_node *root = parse_ok("{}\n");
    ck_assert_int_eq(root->len, 0);
    ct_node_free(root);
}
END_TEST

START_TEST(test_multiple_documents)
{
    expect_parse_err("a: 1\n---\nb: 2\n",
                     "t.yaml:2:1: only one document is allowed (a second one starts here)");
    expect_parse_err("---\na: 1\n...\n---\nb: 2\n",
                     "t.yaml:4:1: only one document is allowed (a second one starts here)");
    ct_node *root = parse_ok("---\na: 1\n...\n");
    assert_scalar(at(root, "a"), "1", false);
    ct_node_free(root);
}
END_TEST

/* ---------------------------------------------------------------------------------- */
/* Tree editing                                                                       */

START_TEST(test_map_get_marks_used)
{
    ct_node *root = parse_ok("a: 1\nb: {c: 2}\n");
    ck_assert_ptr_null(ct_map_get(root, "zz"));
    ck_assert_ptr_null(ct_map_get(NULL, "a"));
    ck_assert_ptr_null(ct_map_get(at(root, "a"), "a"));
    ct_node *a = ct_map_get(root, "a");
    ck_assert(a->used);
    ck_assert(!at(root, "b")->used);
    ck_assert(!at(root, "b.c")->used);
    const ct_node *k = ct_map_key_node(root, "b");
    assert_pos(k, "t.yaml", 2, 1);
    ck_assert(!at(root, "b")->used);
    ck_assert_ptr_null(ct_map_key_node(root, "nope"));
    ct_node_free(root);
}
END_TEST

START_TEST(test_map_set_order_and_positions)
{
    ct_node *root = parse_ok("x: 1\nm:\n  a: 1\n  b: 2\n");
    ct_node *m = ct_map_get(root, "m");
    ct_node *c = ct_map_set_scalar(m, "c", "3");
    assert_scalar(c, "3", false);
    assert_pos(c, "t.yaml", 3, 3);
    assert_pos(m->key_nodes[2], "t.yaml", 3, 3);
    ck_assert_ptr_eq(c->parent, m);
    /* Replacing keeps the key where it was. */
    ct_node *a = ct_map_set_scalar(m, "a", "10");
    ck_assert_int_eq(m->len, 3);
    ck_assert_str_eq(m->keys[0], "a");
    ck_assert_ptr_eq(m->items[0], a);
    ck_assert_str_eq(m->keys[2], "c");
    ct_node *sub = ct_map_set_map(m, "d");
    ck_assert_int_eq(sub->type, CT_NODE_MAP);
    ck_assert_ptr_nonnull(ct_map_set_scalar(sub, "deep", "yes"));
    ct_node *seq = ct_map_set_seq(m, "e");
    ck_assert_int_eq(seq->type, CT_NODE_SEQ);
    for (int i = 0; i < 10; i++) {
        char t[8];
        snprintf(t, sizeof t, "%d", i);
        ct_node *s = ct_seq_append_scalar(seq, t);
        assert_pos(s, "t.yaml", 3, 3);
    }
    ck_assert_int_eq(seq->len, 10);
    ck_assert_str_eq(seq->items[9]->scalar, "9");
    ck_assert_ptr_null(ct_seq_append_scalar(m, "x"));
    ck_assert_ptr_null(ct_map_set_scalar(seq, "k", "v"));
    char *out = emit_str(root);
    ck_assert_str_eq(out, "x: 1\nm:\n  a: 10\n  b: 2\n  c: 3\n  d:\n    deep: yes\n  e:\n"
                          "    - 0\n    - 1\n    - 2\n    - 3\n    - 4\n    - 5\n    - 6\n"
                          "    - 7\n    - 8\n    - 9\n");
    free(out);
    ct_node_free(root);
}
END_TEST

START_TEST(test_expand_scalar)
{
    ct_node *root = parse_ok("compile:\n  optimizer: adam\n  loss: mse\n");
    ct_node *opt = ct_map_get(at(root, "compile"), "optimizer");
    ct_error err = {0};
    ck_assert_int_eq(ct_node_expand_scalar(opt, "type", &err), 0);
    ck_assert_ptr_eq(at(root, "compile.optimizer"), opt);
    ck_assert_int_eq(opt->type, CT_NODE_MAP);
    ck_assert_ptr_null(opt->scalar);
    ck_assert_int_eq(opt->len, 1);
    ck_assert_str_eq(opt->keys[0], "type");
    assert_scalar(opt->items[0], "adam", false);
    assert_pos(opt->items[0], "t.yaml", 2, 14);
    assert_pos(opt->key_nodes[0], "t.yaml", 2, 14);
    ck_assert_ptr_eq(opt->items[0]->parent, opt);
    ck_assert_str_eq(at(root, "compile")->keys[1], "loss");
    ck_assert_int_eq(ct_node_expand_scalar(opt, "type", &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:14: expected a single value for 'optimizer', got a map");
    char *out = emit_str(root);
    ck_assert_str_eq(out, "compile:\n  optimizer:\n    type: adam\n  loss: mse\n");
    free(out);
    ct_node_free(root);
}
END_TEST

/* ---------------------------------------------------------------------------------- */
/* --set                                                                              */

static const char *SET_BASE = "model:\n  layers:\n    - type: dense\n      units: 64\n"
                              "    - type: dropout\n  name: net\ncompile:\n  optimizer:\n";

START_TEST(test_set_scalars)
{
    ct_node *root = parse_ok(SET_BASE);
    set_ok(root, "model.layers.0.units=32");
    const ct_node *u = at(root, "model.layers.0.units");
    assert_scalar(u, "32", false);
    assert_pos(u, "--set", 1, 22);
    ck_assert_ptr_eq(u->parent, at(root, "model.layers.0"));
    /* The key keeps its place in the file. */
    assert_pos(at(root, "model.layers.0")->key_nodes[1], "t.yaml", 4, 7);
    set_ok(root, "model.name=\"quoted name\"");
    assert_scalar(at(root, "model.name"), "quoted name", true);
    set_ok(root, "model.name='3'");
    assert_scalar(at(root, "model.name"), "3", true);
    set_ok(root, "seed=");
    assert_scalar(at(root, "seed"), "", false);
    set_ok(root, "lr=0.5");
    assert_scalar(at(root, "lr"), "0.5", false);
    assert_pos(at(root, "lr"), "--set", 1, 4);
    assert_pos(ct_map_key_node(root, "lr"), "--set", 1, 1);
    set_ok(root, "  spaced.key = adam");
    assert_scalar(at(root, "spaced.key"), "adam", false);
    assert_pos(at(root, "spaced.key"), "--set", 1, 16);
    /* A sequence element can be replaced whole. */
    set_ok(root, "model.layers.1=flatten");
    assert_scalar(at(root, "model.layers.1"), "flatten", false);
    ct_node_free(root);
}
END_TEST

START_TEST(test_set_flow_values)
{
    ct_node *root = parse_ok(SET_BASE);
    set_ok(root, "compile.optimizer={type: sgd, momentum: 0.9}");
    const ct_node *opt = at(root, "compile.optimizer");
    ck_assert_int_eq(opt->type, CT_NODE_MAP);
    assert_pos(opt, "--set", 1, 19);
    assert_pos(opt->key_nodes[0], "--set", 1, 20);
    assert_scalar(at(root, "compile.optimizer.type"), "sgd", false);
    assert_pos(at(root, "compile.optimizer.type"), "--set", 1, 26);
    assert_scalar(at(root, "compile.optimizer.momentum"), "0.9", false);
    set_ok(root, "model.input_shape=[28, 28, 1]");
    const ct_node *shape = at(root, "model.input_shape");
    ck_assert_int_eq(shape->type, CT_NODE_SEQ);
    ck_assert_int_eq(shape->len, 3);
    assert_pos(shape->items[2], "--set", 1, 28);
    set_ok(root, "model.layers.0={type: dense, units: 8}");
    assert_scalar(at(root, "model.layers.0.units"), "8", false);
    ck_assert_int_eq(at(root, "model.layers")->len, 2);
    /* Deep creation: intermediate maps are created where keys are missing. */
    set_ok(root, "fit.callbacks.early.patience=3");
    assert_scalar(at(root, "fit.callbacks.early.patience"), "3", false);
    assert_pos(at(root, "fit"), "--set", 1, 1);
    assert_pos(ct_map_key_node(root, "fit"), "--set", 1, 1);
    assert_pos(ct_map_key_node(at(root, "fit.callbacks"), "early"), "--set", 1, 15);
    char *out = emit_str(root);
    ck_assert_str_eq(out, "model:\n  layers:\n    - type: dense\n      units: 8\n"
                          "    - type: dropout\n  name: net\n  input_shape:\n    - 28\n"
                          "    - 28\n    - 1\ncompile:\n  optimizer:\n    type: sgd\n"
                          "    momentum: 0.9\nfit:\n  callbacks:\n    early:\n"
                          "      patience: 3\n");
    free(out);
    ct_node_free(root);
}
END_TEST

START_TEST(test_set_through_null)
{
    /* `optimizer:` has no value, so a path through it creates the map. */
    ct_node *root = parse_ok(SET_BASE);
    set_ok(root, "compile.optimizer.type=adam");
    assert_scalar(at(root, "compile.optimizer.type"), "adam", false);
    ck_assert_int_eq(at(root, "compile")->len, 1);
    ct_node_free(root);
    /* The same for a list element without a value. */
    root = parse_ok("l:\n  -\n  - 1\n");
    set_ok(root, "l.0.units=3");
    assert_scalar(at(root, "l.0.units"), "3", false);
    assert_pos(at(root, "l.0"), "--set", 1, 3);
    expect_set_err(root, "l.1.units=3", "--set l.1.units: l.1 is a single value ('1'), it has no "
                                        "key 'units'");
    ct_node_free(root);
}
END_TEST

START_TEST(test_set_errors)
{
    ct_node *root = parse_ok(SET_BASE);
    expect_set_err(root, "model.layers.7.units=3",
                   "--set model.layers.7.units: model.layers has 2 entries; index 7 is out of "
                   "range");
    expect_set_err(root, "model.layers.2=3",
                   "--set model.layers.2: model.layers has 2 entries; index 2 is out of range");
    expect_set_err(root, "model.layers.first.units=3",
                   "--set model.layers.first.units: model.layers is a list; 'first' is not an "
                   "index");
    expect_set_err(root, "model.0=1", "--set model.0: model is a map and has no key '0'");
    expect_set_err(root, "0=1", "--set 0: the top level is a map and has no key '0'");
    expect_set_err(root, "model.name.x=1",
                   "--set model.name.x: model.name is a single value ('net'), it has no key "
                   "'x'");
    expect_set_err(root, "model.layers.0.type.deep.er=1",
                   "--set model.layers.0.type.deep.er: model.layers.0.type is a single value "
                   "('dense'), it has no key 'deep'");
    expect_set_err(root, "model.units", "--set model.units: expected KEY.PATH=VALUE");
    expect_set_err(root, "=5", "--set =5: the key path is empty");
    expect_set_err(root, "a..b=1", "--set a..b: empty key name in the path");
    expect_set_err(root, ".a=1", "--set .a: empty key name in the path");
    expect_set_err(root, "a.=1", "--set a.: empty key name in the path");
    /* One line without control characters: YAML would drop what follows a newline. */
    expect_set_err(root, "model.name=x\nname: y",
                   "--set model.name: the value holds a newline at column 13; a --set value "
                   "is one line without control characters");
    expect_set_err(root, "model.name=a\rb", "--set model.name: the value holds the control "
                   "character 0x0d at column 13; a --set value is one line without "
                   "control characters");
    expect_set_err(root, "model.name=\"a\tb\"", "--set model.name: the value holds the "
                   "control character 0x09 at column 14; a --set value is one line "
                   "without control characters");
    expect_set_err(root, "model.na\x1bme=1", "--set: the key path holds the control character "
                   "0x1b at column 9; a --set option is one line without control characters");
    /* Failed assignments leave the tree alone. */
    char *out = emit_str(root);
    ck_assert_str_eq(out, "model:\n  layers:\n    - type: dense\n      units: 64\n"
                          "    - type: dropout\n  name: net\ncompile:\n  optimizer:\n");
    free(out);
    ct_node_free(root);
}
END_TEST

START_TEST(test_set_bad_values)
{
    ct_node *root = parse_ok(SET_BASE);
    expect_set_err(root, "x=[1, 2",
                   "--set x: column 8: did not find expected ',' or ']' (while parsing a flow "
                   "sequence at 1:3)");
    expect_set_err(root, "x=&a 1", "--set x: column 3: anchors and aliases are not allowed");
    expect_set_err(root, "x=!!python/object:os.system 1", "--set x: column 3: tags are not allowed");
    expect_set_err(root, "opt={a: 1, a: 2}",
                   "--set opt: column 12: duplicate key 'a' (first defined at 1:6)");
    expect_set_err(root, "x=a: b", "--set x: column 4: mapping values are not allowed in this "
                                   "context");
    /* 63 nested brackets fit one level below the top map; a path makes it too deep. */
    char deep[200] = "x=";
    for (int i = 0; i < 63; i++)
        strcat(deep, "[");
    for (int i = 0; i < 63; i++)
        strcat(deep, "]");
    set_ok(root, deep);
    deep[0] = 'y';
    memmove(deep + 2, deep, strlen(deep) + 1);
    memcpy(deep, "z.", 2);
    expect_set_err(root, deep, "--set z.y: nesting deeper than 64 levels");
    ck_assert_ptr_null(at(root, "z"));
    ct_node_free(root);
}
END_TEST

/* ---------------------------------------------------------------------------------- */
/* Emitting                                                                           */

START_TEST(test_emit_round_trip)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_src("tests/configs/parse/roundtrip.yaml"));
    ct_error err = {0};
    ct_node *a = ct_config_load(path, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    char *text = emit_str(a);
    ct_node *b = ct_config_parse(text, strlen(text), "emitted", &err);
    ck_assert_msg(b != NULL, "%s\n%s", err.msg, text);
    ck_assert_msg(tree_equal(a, b), "round trip changed the tree:\n%s", text);
    char *again = emit_str(b);
    ck_assert_str_eq(text, again);
    /* Spot checks of the block layout. */
    ck_assert_ptr_nonnull(strstr(text, "\nmodel:\n  input_shape:\n    - 28\n"));
    ck_assert_ptr_nonnull(strstr(text, "  layers:\n    - type: flatten\n    - type: dense\n"
                                       "      units: 128\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n  nested:\n    - - 1\n      - 2\n    - []\n"
                                       "    - - - 3\n    - {}\n"));
    ck_assert_ptr_nonnull(strstr(text, "name: \"mnist: run #1\"\n"));
    ck_assert_ptr_nonnull(strstr(text, "  nothing:\n  tilde: ~\n"));
    ck_assert_ptr_nonnull(strstr(text, "  escapes: \"tab\\there\\nnewline \\\"q\\\" back\\\\slash\"\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n\"\": empty key\n\"123\": numeric key\n"));
    free(text);
    free(again);
    ct_node_free(a);
    ct_node_free(b);
}
END_TEST

START_TEST(test_emit_quotes_what_would_be_misread)
{
    static const char *const texts[] = {
        "a: b", "#x", "- x", "-", "---", "...x", "*ref", "&anc", "!tag", "[x", "{x", "x:",
        "a #b", "'q'", "\"dq\"", " lead", "trail ", "two\nlines", "tab\tend\t", "bell\x07",
        "%dir", "@at", "`bt", "|lit", ">fold", "?", ": x", ",c", "nel\xC2\x85", "ls\xE2\x80\xA8",
        "del\x7F", NULL};
    ct_node *root = parse_ok("keep: 1\n");
    for (int i = 0; texts[i]; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        ct_map_set_scalar(root, key, texts[i]);
    }
    char *out = emit_str(root);
    ct_error err = {0};
    ct_node *back = ct_config_parse(out, strlen(out), "emitted", &err);
    ck_assert_msg(back != NULL, "%s\n%s", err.msg, out);
    for (int i = 0; texts[i]; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        const ct_node *n = at(back, key);
        ck_assert_msg(n && n->type == CT_NODE_SCALAR && !strcmp(n->scalar, texts[i]),
                      "'%s' did not survive:\n%s", texts[i], out);
        ck_assert_msg(n->quoted, "'%s' was not quoted", texts[i]);
    }
    ck_assert_ptr_nonnull(strstr(out, "k0: \"a: b\"\n"));
    ck_assert_ptr_nonnull(strstr(out, "k17: \"two\\nlines\"\n"));
    ck_assert_ptr_nonnull(strstr(out, "k19: \"bell\\x07\"\n"));
    ck_assert_ptr_nonnull(strstr(out, "k28: \"nel\\u0085\"\n"));
    ck_assert_ptr_nonnull(strstr(out, "k29: \"ls\\L\"\n"));
    ct_node_free(back);
    free(out);
    ct_node_free(root);
    /* Ordinary text stays plain. */
    root = parse_ok("a: relu\nb: -1\nc: 1e-3\nd: data/x.h5\ne: a:b\nf: x-y z\ng: yes\nh: back\\slash\ni: a\tb\nj: ?x\nk: :y\nl: -z\n");
    out = emit_str(root);
    ck_assert_str_eq(out, "a: relu\nb: -1\nc: 1e-3\nd: data/x.h5\ne: a:b\nf: x-y z\ng: yes\nh: back\\slash\ni: a\tb\nj: ?x\nk: :y\nl: -z\n");
    free(out);
    ct_node_free(root);
}
END_TEST

START_TEST(test_emit_empty_and_errors)
{
    ct_node *root = parse_ok("{}\n");
    char *out = emit_str(root);
    ck_assert_str_eq(out, "{}\n");
    free(out);
    ct_node_free(root);
    root = parse_ok("a: 1\n");
    FILE *f = fopen("/dev/full", "w");
    if (f) {
        setvbuf(f, NULL, _IONBF, 0);
        ct_error err = {0};
        ck_assert_int_eq(ct_config_emit(root, f, &err), -1);
        ck_assert_int_eq(err.code, CT_ERR_IO);
        ck_assert_str_eq(err.msg, "cannot write the configuration: No space left on device");
        fclose(f);
    }
    ct_node_free(root);
}
END_TEST

/* ---------------------------------------------------------------------------------- */
/* Key checks and suggestions                                                         */

static const char *const DENSE_KEYS[] = {"type", "units", "activation", "use_bias", NULL};

/* The number format of progress lines and evaluate: NaN is "nan" whatever its sign bit
 * (printf writes "-nan" for some), so a NaN loss never reads as a number. */
START_TEST(test_format_value)
{
    char buf[32];
    ct_format_value(0.5, buf, sizeof buf);
    ck_assert_str_eq(buf, "0.5000");
    ct_format_value(2e-5, buf, sizeof buf);
    ck_assert_str_eq(buf, "2.0000e-05");
    ct_format_value(NAN, buf, sizeof buf);
    ck_assert_str_eq(buf, "nan");
    ct_format_value(-NAN, buf, sizeof buf);
    ck_assert_str_eq(buf, "nan");
    ct_format_value(-INFINITY, buf, sizeof buf);
    ck_assert_str_eq(buf, "-inf");
}
END_TEST

START_TEST(test_suggest)
{
    static const char *const opt[] = {"type", "learning_rate", "momentum", "nesterov", NULL};
    ck_assert_str_eq(ct_suggest("unts", DENSE_KEYS), "units");
    ck_assert_str_eq(ct_suggest("untis", DENSE_KEYS), "units"); /* swapped letters */
    ck_assert_str_eq(ct_suggest("Units", DENSE_KEYS), "units");
    ck_assert_str_eq(ct_suggest("activaton", DENSE_KEYS), "activation");
    ck_assert_str_eq(ct_suggest("learning_rat", opt), "learning_rate");
    ck_assert_str_eq(ct_suggest("lerning_rate", opt), "learning_rate");
    ck_assert_str_eq(ct_suggest("learn", opt), "learning_rate"); /* prefix */
    ck_assert_str_eq(ct_suggest("momentum_decay", opt), "momentum"); /* prefix the other way */
    ck_assert_ptr_null(ct_suggest("zzzz", DENSE_KEYS));
    ck_assert_ptr_null(ct_suggest("zzzz", opt));
    ck_assert_ptr_null(ct_suggest("", opt));
    ck_assert_ptr_null(ct_suggest("x", DENSE_KEYS));
    ck_assert_str_eq(ct_suggest("tipe", DENSE_KEYS), "type");
}
END_TEST

START_TEST(test_check_keys)
{
    ct_node *root = parse_ok("layer:\n  type: dense\n  unts: 3\n  zzzz: 1\n");
    ct_error err = {0};
    ct_node *layer = ct_map_get(root, "layer");
    ck_assert_int_eq(ct_cfg_check_keys(layer, DENSE_KEYS, "a dense layer", &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "t.yaml:3:3: unknown key 'unts' in a dense layer (did you mean "
                              "'units'?); known keys: type, units, activation, use_bias");
    static const char *const more[] = {"type", "units", "unts", NULL};
    ck_assert_int_eq(ct_cfg_check_keys(layer, more, "a dense layer", &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:4:3: unknown key 'zzzz' in a dense layer; known keys: "
                              "type, units, unts");
    static const char *const all[] = {"type", "units", "unts", "zzzz", NULL};
    ck_assert_int_eq(ct_cfg_check_keys(layer, all, "a dense layer", &err), 0);
    ck_assert_int_eq(ct_cfg_check_keys(NULL, all, "nothing", &err), 0);
    ck_assert_int_eq(ct_cfg_check_keys(at(root, "layer.type"), all, "a layer", &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:9: a layer must be a map of keys, got 'dense'");
    ct_node_free(root);
}
END_TEST

START_TEST(test_require)
{
    ct_node *root = parse_ok("model:\n  layers: []\ncompile:\n  loss:\n");
    ct_error err = {0};
    ck_assert_int_eq(ct_cfg_require(at(root, "model"), "layers", "the model", &err), 0);
    ck_assert_int_eq(ct_cfg_require(at(root, "model"), "units", "a dense layer", &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "t.yaml:2:3: a dense layer needs the key 'units'");
    /* A key without a value is missing. */
    ck_assert_int_eq(ct_cfg_require(at(root, "compile"), "loss", "compile", &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:4:3: compile needs the key 'loss'");
    ck_assert_int_eq(ct_cfg_require(root, "fit", "the experiment", &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:1:1: the experiment needs the key 'fit'");
    ct_node_free(root);
}
END_TEST

START_TEST(test_node_err)
{
    ct_node *root = parse_ok("a:\n  b: 1\n");
    ct_error err = {0};
    ck_assert_int_eq(ct_node_err(&err, at(root, "a.b"), "bad %s %d", "thing", 7), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "t.yaml:2:6: bad thing 7");
    ck_assert_int_eq(ct_node_err(&err, NULL, "no place"), -1);
    ck_assert_str_eq(err.msg, "no place");
    ck_assert_int_eq(ct_node_err(NULL, root, "ignored"), -1);
    ct_node_free(root);
}
END_TEST

/* ---------------------------------------------------------------------------------- */
/* Getters                                                                            */

static const char *GETTERS = "l:\n  units: 128\n  neg: -5\n  sci: 1e3\n  sci2: 1.5e3\n"
                             "  plus: +7\n  half: 3.5\n  word: abc\n  qint: \"3\"\n"
                             "  map: {a: 1}\n  seq: [1]\n  zero: 0\n  huge: 99999999999999999999\n"
                             "  bigsci: 1e30\n  empty:\n  tilde: ~\n  nul: null\n  three: 3.0\n";

static void expect_int_err(ct_node *map, const char *key, int64_t min, int64_t max,
                           const char *msg)
{
    ct_error err = {0};
    int64_t v = 12345;
    ck_assert_int_eq(ct_cfg_int(map, key, 1, min, max, &v, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, msg);
    ck_assert_int_eq(v, 12345);
}

START_TEST(test_int_getter)
{
    ct_node *root = parse_ok(GETTERS);
    ct_node *l = ct_map_get(root, "l");
    ct_error err = {0};
    int64_t v;
    ck_assert_int_eq(ct_cfg_int(l, "units", 1, 1, 1000000000, &v, &err), 0);
    ck_assert_int_eq(v, 128);
    ck_assert(at(root, "l.units")->used);
    ck_assert_int_eq(ct_cfg_int(l, "neg", 0, INT64_MIN, INT64_MAX, &v, &err), 0);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(ct_cfg_int(l, "sci", 0, 0, INT64_MAX, &v, &err), 0);
    ck_assert_int_eq(v, 1000);
    ck_assert_int_eq(ct_cfg_int(l, "sci2", 0, 0, INT64_MAX, &v, &err), 0);
    ck_assert_int_eq(v, 1500);
    ck_assert_int_eq(ct_cfg_int(l, "plus", 0, 0, INT64_MAX, &v, &err), 0);
    ck_assert_int_eq(v, 7);
    ct_node_free(root);
}
END_TEST

START_TEST(test_int_getter_errors)
{
    ct_node *root = parse_ok(GETTERS);
    ct_node *l = ct_map_get(root, "l");
    expect_int_err(l, "half", 1, 10, "t.yaml:7:9: expected an integer for 'half', got '3.5'");
    expect_int_err(l, "three", 1, 10, "t.yaml:18:10: expected an integer for 'three', got '3.0'");
    expect_int_err(l, "word", 1, 10, "t.yaml:8:9: expected an integer for 'word', got 'abc'");
    expect_int_err(l, "qint", 1, 10,
                   "t.yaml:9:9: expected an integer for 'qint', got the string \"3\"");
    expect_int_err(l, "map", 1, 10, "t.yaml:10:8: expected an integer for 'map', got a map");
    expect_int_err(l, "seq", 1, 10, "t.yaml:11:8: expected an integer for 'seq', got a list");
    expect_int_err(l, "zero", 1, 1000000000,
                   "t.yaml:12:9: 'zero' must be between 1 and 1000000000, got 0");
    expect_int_err(l, "zero", 1, INT64_MAX, "t.yaml:12:9: 'zero' must be at least 1, got 0");
    expect_int_err(l, "units", INT64_MIN, 100, "t.yaml:2:10: 'units' must be at most 100, got 128");
    expect_int_err(l, "sci", 1, 999, "t.yaml:4:8: 'sci' must be between 1 and 999, got 1e3");
    expect_int_err(l, "huge", 1, INT64_MAX,
                   "t.yaml:13:9: expected a 64-bit integer for 'huge', got "
                   "'99999999999999999999'");
    expect_int_err(l, "bigsci", 1, INT64_MAX,
                   "t.yaml:14:11: expected a 64-bit integer for 'bigsci', got '1e30'");
    ct_node *s = ct_map_get(l, "seq");
    ct_error err = {0};
    int64_t v;
    ck_assert_int_eq(ct_cfg_int(s, "x", 1, 1, 2, &v, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:11:8: expected a map of keys for 'seq' (with the key 'x'), "
                              "got a list");
    ct_node_free(root);
}
END_TEST

START_TEST(test_int_defaults)
{
    ct_node *root = parse_ok(GETTERS);
    ct_node *l = ct_map_get(root, "l");
    ct_error err = {0};
    int64_t v = 0;
    size_t before = l->len;
    ck_assert_int_eq(ct_cfg_int(l, "absent", 32, 1, 100, &v, &err), 0);
    ck_assert_int_eq(v, 32);
    ck_assert_int_eq(l->len, before + 1);
    ck_assert_str_eq(l->keys[before], "absent");
    assert_scalar(l->items[before], "32", false);
    assert_pos(l->items[before], "t.yaml", 2, 3);
    ck_assert(l->items[before]->used);
    /* A key written without a value takes the default in place. */
    ck_assert_int_eq(ct_cfg_int(l, "empty", -7, INT64_MIN, INT64_MAX, &v, &err), 0);
    ck_assert_int_eq(v, -7);
    assert_scalar(at(root, "l.empty"), "-7", false);
    assert_pos(at(root, "l.empty"), "t.yaml", 15, 9);
    ck_assert_int_eq(ct_cfg_int(l, "tilde", 5, 1, 10, &v, &err), 0);
    ck_assert_int_eq(v, 5);
    ck_assert_int_eq(ct_cfg_int(l, "nul", 6, 1, 10, &v, &err), 0);
    ck_assert_int_eq(v, 6);
    ck_assert_int_eq(l->len, before + 1);
    /* Reading again finds the inserted value. */
    ck_assert_int_eq(ct_cfg_int(l, "absent", 99, 1, 100, &v, &err), 0);
    ck_assert_int_eq(v, 32);
    char *out = emit_str(root);
    ck_assert_ptr_nonnull(strstr(out, "  empty: -7\n  tilde: 5\n  nul: 6\n  three: 3.0\n"
                                      "  absent: 32\n"));
    free(out);
    ct_node_free(root);
}
END_TEST

static void expect_float_err(ct_node *map, const char *key, double min, double max,
                             const char *msg)
{
    ct_error err = {0};
    double v = 42;
    ck_assert_int_eq(ct_cfg_float(map, key, 1, min, max, &v, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, msg);
    ck_assert(v == 42);
}

START_TEST(test_float_getter)
{
    ct_node *root = parse_ok("o:\n  lr: 0.1\n  small: 1e-3\n  dot: .5\n  int: 2\n  neg: -2.5e-1\n"
                             "  q: \"0.1\"\n  nan: nan\n  inf: .inf\n  inf2: inf\n  over: 1e999\n"
                             "  word: fast\n  m: {}\n  big: 2\n  hex: 0x10\n");
    ct_node *o = ct_map_get(root, "o");
    ct_error err = {0};
    double v;
    ck_assert_int_eq(ct_cfg_float(o, "lr", 0.01, 0, 1, &v, &err), 0);
    ck_assert(v == 0.1);
    ck_assert_int_eq(ct_cfg_float(o, "small", 0, 0, 1, &v, &err), 0);
    ck_assert(v == 1e-3);
    ck_assert_int_eq(ct_cfg_float(o, "dot", 0, 0, 1, &v, &err), 0);
    ck_assert(v == 0.5);
    ck_assert_int_eq(ct_cfg_float(o, "int", 0, 0, 10, &v, &err), 0);
    ck_assert(v == 2.0);
    ck_assert_int_eq(ct_cfg_float(o, "neg", 0, -1, 1, &v, &err), 0);
    ck_assert(v == -0.25);
    expect_float_err(o, "q", 0, 1,
                     "t.yaml:7:6: expected a number for 'q', got the string \"0.1\"");
    expect_float_err(o, "nan", 0, 1, "t.yaml:8:8: expected a number for 'nan', got 'nan'");
    expect_float_err(o, "inf", 0, 1, "t.yaml:9:8: expected a number for 'inf', got '.inf'");
    expect_float_err(o, "inf2", 0, 1, "t.yaml:10:9: expected a number for 'inf2', got 'inf'");
    expect_float_err(o, "over", 0, HUGE_VAL,
                     "t.yaml:11:9: expected a finite number for 'over', got '1e999'");
    expect_float_err(o, "word", 0, 1, "t.yaml:12:9: expected a number for 'word', got 'fast'");
    expect_float_err(o, "m", 0, 1, "t.yaml:13:6: expected a number for 'm', got a map");
    expect_float_err(o, "hex", 0, 100, "t.yaml:15:8: expected a number for 'hex', got '0x10'");
    expect_float_err(o, "big", 0, 1, "t.yaml:14:8: 'big' must be between 0 and 1, got 2");
    expect_float_err(o, "big", 2.5, HUGE_VAL, "t.yaml:14:8: 'big' must be at least 2.5, got 2");
    expect_float_err(o, "big", -HUGE_VAL, 1e-3,
                     "t.yaml:14:8: 'big' must be at most 0.001, got 2");
    ct_node_free(root);
}
END_TEST

START_TEST(test_float_defaults)
{
    ct_node *root = parse_ok("o:\n  type: adam\n  eps:\n");
    ct_node *o = ct_map_get(root, "o");
    ct_error err = {0};
    double v;
    ck_assert_int_eq(ct_cfg_float(o, "learning_rate", 0.001, 0, HUGE_VAL, &v, &err), 0);
    ck_assert(v == 0.001);
    ck_assert_int_eq(ct_cfg_float(o, "eps", 1e-7, 0, 1, &v, &err), 0);
    ck_assert(v == 1e-7);
    ck_assert_int_eq(ct_cfg_float(o, "beta_1", 0.9, 0, 1, &v, &err), 0);
    ck_assert_int_eq(ct_cfg_float(o, "third", 1.0 / 3.0, 0, 1, &v, &err), 0);
    ck_assert_int_eq(ct_cfg_float(o, "one", 1.0, 0, 1, &v, &err), 0);
    assert_scalar(at(root, "o.learning_rate"), "0.001", false);
    assert_scalar(at(root, "o.eps"), "1e-07", false);
    assert_scalar(at(root, "o.beta_1"), "0.9", false);
    assert_scalar(at(root, "o.third"), "0.3333333333333333", false);
    assert_scalar(at(root, "o.one"), "1", false);
    /* What was inserted reads back as exactly the same number. */
    ck_assert_int_eq(ct_cfg_float(o, "third", 0, 0, 1, &v, &err), 0);
    ck_assert(v == 1.0 / 3.0);
    char *out = emit_str(root);
    ck_assert_str_eq(out, "o:\n  type: adam\n  eps: 1e-07\n  learning_rate: 0.001\n"
                          "  beta_1: 0.9\n  third: 0.3333333333333333\n  one: 1\n");
    free(out);
    ct_node_free(root);
}
END_TEST

START_TEST(test_bool_getter)
{
    ct_node *root = parse_ok("f:\n  a: true\n  b: False\n  c: YES\n  d: no\n  e: On\n  g: off\n"
                             "  h: maybe\n  i: \"true\"\n  j: 1\n  k:\n");
    ct_node *f = ct_map_get(root, "f");
    ct_error err = {0};
    static const char *const keys[] = {"a", "b", "c", "d", "e", "g"};
    static const bool want[] = {true, false, true, false, true, false};
    for (int i = 0; i < 6; i++) {
        bool v = !want[i];
        ck_assert_int_eq(ct_cfg_bool(f, keys[i], !want[i], &v, &err), 0);
        ck_assert_int_eq(v, want[i]);
    }
    bool v = false;
    ck_assert_int_eq(ct_cfg_bool(f, "h", false, &v, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:8:6: expected true or false for 'h', got 'maybe'");
    ck_assert_int_eq(ct_cfg_bool(f, "i", false, &v, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:9:6: expected true or false for 'i', got the string \"true\"");
    ck_assert_int_eq(ct_cfg_bool(f, "j", false, &v, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:10:6: expected true or false for 'j', got '1'");
    ck_assert_int_eq(ct_cfg_bool(f, "k", true, &v, &err), 0);
    ck_assert(v);
    ck_assert_int_eq(ct_cfg_bool(f, "shuffle", false, &v, &err), 0);
    ck_assert(!v);
    assert_scalar(at(root, "f.k"), "true", false);
    assert_scalar(at(root, "f.shuffle"), "false", false);
    ct_node_free(root);
}
END_TEST

START_TEST(test_string_getter)
{
    ct_node *root = parse_ok("d:\n  path: data/x.h5\n  q: \"3\"\n  m: {a: 1}\n  s: [a]\n  n:\n"
                             "  e: \"\"\n");
    ct_node *d = ct_map_get(root, "d");
    ct_error err = {0};
    const char *s = NULL;
    ck_assert_int_eq(ct_cfg_string(d, "path", NULL, &s, &err), 0);
    ck_assert_str_eq(s, "data/x.h5");
    ck_assert_ptr_eq(s, at(root, "d.path")->scalar);
    ck_assert_int_eq(ct_cfg_string(d, "q", NULL, &s, &err), 0);
    ck_assert_str_eq(s, "3");
    ck_assert_int_eq(ct_cfg_string(d, "e", "dflt", &s, &err), 0);
    ck_assert_str_eq(s, "");
    ck_assert_int_eq(ct_cfg_string(d, "m", NULL, &s, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:4:6: expected a string for 'm', got a map");
    ck_assert_int_eq(ct_cfg_string(d, "s", "x", &s, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:5:6: expected a string for 's', got a list");
    ck_assert_int_eq(ct_cfg_string(d, "missing", NULL, &s, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "t.yaml:2:3: 'd' needs the key 'missing'");
    ck_assert_int_eq(ct_cfg_string(d, "n", NULL, &s, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:3: 'd' needs the key 'n'");
    ck_assert_int_eq(ct_cfg_string(root, "top", NULL, &s, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:1:1: the top level needs the key 'top'");
    ck_assert_int_eq(ct_cfg_string(d, "n", "filled", &s, &err), 0);
    ck_assert_str_eq(s, "filled");
    ck_assert_int_eq(ct_cfg_string(d, "name", "", &s, &err), 0);
    ck_assert_str_eq(s, "");
    /* An empty default is written quoted so it is not read back as "no value". */
    assert_scalar(at(root, "d.name"), "", true);
    char *out = emit_str(root);
    ck_assert_ptr_nonnull(strstr(out, "  n: filled\n  e: \"\"\n  name: \"\"\n"));
    free(out);
    ct_node_free(root);
}
END_TEST

START_TEST(test_enum_getter)
{
    static const char *const pads[] = {"valid", "same", NULL};
    ct_node *root = parse_ok("c:\n  padding: same\n  bad: sam\n  worse: zzzz\n  q: \"valid\"\n");
    ct_node *c = ct_map_get(root, "c");
    ct_error err = {0};
    int idx = -1;
    ck_assert_int_eq(ct_cfg_enum(c, "padding", "valid", pads, &idx, &err), 0);
    ck_assert_int_eq(idx, 1);
    ck_assert_int_eq(ct_cfg_enum(c, "q", NULL, pads, &idx, &err), 0);
    ck_assert_int_eq(idx, 0);
    ck_assert_int_eq(ct_cfg_enum(c, "bad", "valid", pads, &idx, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "t.yaml:3:8: unknown value 'sam' for 'bad' (did you mean "
                              "'same'?); choices: valid, same");
    ck_assert_int_eq(ct_cfg_enum(c, "worse", "valid", pads, &idx, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:4:10: unknown value 'zzzz' for 'worse'; choices: valid, same");
    ck_assert_int_eq(ct_cfg_enum(c, "mode", "same", pads, &idx, &err), 0);
    ck_assert_int_eq(idx, 1);
    assert_scalar(at(root, "c.mode"), "same", false);
    ck_assert_int_eq(ct_cfg_enum(c, "other", NULL, pads, &idx, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:3: 'c' needs the key 'other'");
    ck_assert_int_eq(ct_cfg_enum(c, "x", "bogus", pads, &idx, &err), -1);
    ck_assert_int_eq(err.code, CT_ERR_INTERNAL);
    ck_assert_ptr_null(at(root, "c.x"));
    ct_node_free(root);
}
END_TEST

START_TEST(test_int_list_getter)
{
    ct_node *root = parse_ok("m:\n  shape: [28, 28, 1]\n  one: 784\n  empty: []\n"
                             "  long: [1, 2, 3, 4, 5]\n  zero: [4, 0]\n  word: [4, x]\n"
                             "  map: {a: 1}\n  nothing:\n  layers:\n    - shape: [2, 3.5]\n");
    ct_node *m = ct_map_get(root, "m");
    ct_error err = {0};
    int64_t v[4] = {0};
    int n = 0;
    ck_assert_int_eq(ct_cfg_int_list(m, "shape", v, 4, &n, &err), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(v[0], 28);
    ck_assert_int_eq(v[1], 28);
    ck_assert_int_eq(v[2], 1);
    ck_assert(at(root, "m.shape.2")->used);
    ck_assert_int_eq(ct_cfg_int_list(m, "one", v, 4, &n, &err), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(v[0], 784);
    ck_assert_int_eq(ct_cfg_int_list(m, "empty", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:4:10: 'empty' needs at least one entry");
    ck_assert_int_eq(ct_cfg_int_list(m, "long", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:5:9: 'long' has 5 entries; at most 4 are allowed");
    ck_assert_int_eq(ct_cfg_int_list(m, "zero", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:6:13: 'zero[1]' must be at least 1, got 0");
    ck_assert_int_eq(ct_cfg_int_list(m, "word", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:7:13: expected an integer for 'word[1]', got 'x'");
    ck_assert_int_eq(ct_cfg_int_list(m, "map", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:8:8: expected a list of integers for 'map', got a map");
    ck_assert_int_eq(ct_cfg_int_list(m, "nothing", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:3: 'm' needs the key 'nothing'");
    ck_assert_int_eq(ct_cfg_int_list(m, "absent", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:2:3: 'm' needs the key 'absent'");
    ct_node *layer = (ct_node *)at(root, "m.layers.0");
    ck_assert_int_eq(ct_cfg_int_list(layer, "shape", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:11:18: expected an integer for 'shape[1]', got '3.5'");
    ck_assert_int_eq(ct_cfg_int_list(layer, "units", v, 4, &n, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:11:7: 'layers[0]' needs the key 'units'");
    ct_node_free(root);
}
END_TEST

START_TEST(test_node_conversions)
{
    ct_node *root = parse_ok("s: [7, 0.25, on, x]\n");
    const ct_node *s = at(root, "s");
    ct_error err = {0};
    int64_t i;
    double d;
    bool b;
    ck_assert_int_eq(ct_node_int(s->items[0], &i, &err), 0);
    ck_assert_int_eq(i, 7);
    ck_assert_int_eq(ct_node_float(s->items[1], &d, &err), 0);
    ck_assert(d == 0.25);
    ck_assert_int_eq(ct_node_bool(s->items[2], &b, &err), 0);
    ck_assert(b);
    ck_assert_int_eq(ct_node_int(s->items[3], &i, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:1:18: expected an integer for 's[3]', got 'x'");
    ck_assert_int_eq(ct_node_float(s, &d, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:1:4: expected a number for 's', got a list");
    ck_assert_int_eq(ct_node_bool(root, &b, &err), -1);
    ck_assert_str_eq(err.msg, "t.yaml:1:1: expected true or false, got a map");
    ct_node_free(root);
}
END_TEST

START_TEST(test_resolved_config_round_trip)
{
    /* The flow a schema follows: read with defaults, then the emitted config reads back
     * to the same values without inserting anything new. */
    ct_node *root = parse_ok("fit:\n  epochs: 3\n");
    ct_node *fit = ct_map_get(root, "fit");
    ct_error err = {0};
    int64_t e, bs;
    double split;
    bool shuffle;
    const char *log;
    ck_assert_int_eq(ct_cfg_int(fit, "epochs", 1, 1, INT64_MAX, &e, &err), 0);
    ck_assert_int_eq(ct_cfg_int(fit, "batch_size", 32, 1, INT64_MAX, &bs, &err), 0);
    ck_assert_int_eq(ct_cfg_float(fit, "validation_split", 0.1, 0, 1, &split, &err), 0);
    ck_assert_int_eq(ct_cfg_bool(fit, "shuffle", true, &shuffle, &err), 0);
    ck_assert_int_eq(ct_cfg_string(fit, "log", "", &log, &err), 0);
    char *out = emit_str(root);
    ck_assert_str_eq(out, "fit:\n  epochs: 3\n  batch_size: 32\n  validation_split: 0.1\n"
                          "  shuffle: true\n  log: \"\"\n");
    ct_node *back = ct_config_parse(out, strlen(out), "resolved", &err);
    ck_assert_ptr_nonnull(back);
    ck_assert(tree_equal(root, back));
    ct_node *fit2 = ct_map_get(back, "fit");
    ck_assert_int_eq(ct_cfg_int(fit2, "batch_size", 1, 1, INT64_MAX, &bs, &err), 0);
    ck_assert_int_eq(bs, 32);
    ck_assert_int_eq(ct_cfg_string(fit2, "log", "other", &log, &err), 0);
    ck_assert_str_eq(log, "");
    ck_assert_int_eq(fit2->len, 5);
    free(out);
    ct_node_free(back);
    ct_node_free(root);
}
END_TEST

/* ---------------------------------------------------------------------------------- */

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    struct {
        const char *name;
        const TTest *tests[24];
    } groups[] = {
        {"parse",
         {test_positions_from_file, test_parse_scalars_and_nulls, test_node_is_null,
          test_parse_bom, test_load_missing_file, test_syntax_error, test_anchors_and_aliases,
          test_billion_laughs, test_tags_rejected, test_duplicate_keys,
          test_duplicate_keys_large_map, test_non_scalar_keys, test_depth_limit,
          test_scalar_length_limit, test_file_size_limit, test_non_utf8,
          test_control_characters, test_empty_and_non_map_documents, test_multiple_documents,
          NULL}},
        {"edit",
         {test_map_get_marks_used, test_map_set_order_and_positions, test_expand_scalar,
          NULL}},
        {"set",
         {test_set_scalars, test_set_flow_values, test_set_through_null, test_set_errors,
          test_set_bad_values, NULL}},
        {"emit",
         {test_emit_round_trip, test_emit_quotes_what_would_be_misread,
          test_emit_empty_and_errors, NULL}},
        {"keys", {test_format_value, test_suggest, test_check_keys, test_require, test_node_err, NULL}},
        {"getters",
         {test_int_getter, test_int_getter_errors, test_int_defaults, test_float_getter,
          test_float_defaults, test_bool_getter, test_string_getter, test_enum_getter,
          test_int_list_getter, test_node_conversions, test_resolved_config_round_trip,
          NULL}},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        TCase *tc = tcase_create(groups[g].name);
        tcase_set_timeout(tc, 120);
        for (int i = 0; groups[g].tests[i]; i++)
            tcase_add_test(tc, groups[g].tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
