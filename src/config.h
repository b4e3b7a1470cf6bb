/* config.h - experiment files as a tree of nodes that remember where they came from.
 *
 * ct_config_load parses YAML with libyaml into a tree (maps, sequences, scalars). Every
 * node keeps file:line:column (1-based) so checks can point at it. Anchors and aliases,
 * tags, duplicate keys, non-UTF-8 input and nesting deeper than CT_CONFIG_MAX_DEPTH are
 * rejected: a config is data, never code.
 *
 * The typed getters below both read and record: a key the schema reads is marked used,
 * and a key that is absent gets its default inserted, so ct_config_emit writes the fully
 * resolved config.
 *
 * Ownership: the root returned by ct_config_load / ct_config_parse owns the whole tree
 * (nodes, strings, the file name); free it with ct_node_free(root). Pointers into the tree
 * stay valid until then. */
#ifndef CT_CONFIG_H
#define CT_CONFIG_H

#include "ctrain.h"
#include "text.h"

#define CT_CONFIG_MAX_DEPTH 64

typedef enum { CT_NODE_SCALAR, CT_NODE_MAP, CT_NODE_SEQ } ct_node_type;

typedef struct ct_node ct_node;
struct ct_node {
    ct_node_type type;
    const char *file;  /* shared by the tree; "--set" for values given on the command line */
    int line, col;     /* 1-based position of the node's first character */
    char *scalar;      /* SCALAR: the text (never NULL for a scalar) */
    bool quoted;       /* SCALAR: was quoted, so it is a string even if it looks like 3 */
    size_t len;        /* MAP/SEQ: number of entries */
    char **keys;       /* MAP: keys[i] names items[i] */
    ct_node **key_nodes; /* MAP: the key scalars themselves (for their positions) */
    ct_node **items;   /* MAP values / SEQ elements */
    ct_node *parent;
    bool used;         /* set when the schema read this node */
};

/* Parses a file / a string. `name` labels positions in errors. NULL on error. */
ct_node *ct_config_load(const char *path, ct_error *err);
ct_node *ct_config_parse(const char *text, size_t len, const char *name, ct_error *err);
void ct_node_free(ct_node *root);

/* Applies "a.b.c=value" (sequence elements by index: model.layers.1.units=64). The value
 * is parsed as YAML, so `--set compile.optimizer={type: sgd}` works. Missing map keys are
 * created; a path through a scalar or a bad index is an error. */
int ct_config_set(ct_node *root, const char *assignment, ct_error *err);

/* Writes the tree as block-style YAML. */
int ct_config_emit(const ct_node *root, FILE *out, ct_error *err);

/* Formats "file:line:col: <message>" into err. Returns -1. */
int ct_node_err(ct_error *err, const ct_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The value for key in a map, or NULL (also when map is NULL or not a map). Marks it used. */
ct_node *ct_map_get(const ct_node *map, const char *key);
/* Position of a key itself (for "unknown key" errors); NULL if absent. */
const ct_node *ct_map_key_node(const ct_node *map, const char *key);
/* Sets key to a new scalar (replacing any value). The node is returned, owned by the map. */
ct_node *ct_map_set_scalar(ct_node *map, const char *key, const char *text);
/* Adds an empty map / sequence under key (replacing any value). */
ct_node *ct_map_set_map(ct_node *map, const char *key);
ct_node *ct_map_set_seq(ct_node *map, const char *key);
/* Appends a scalar to a sequence; returns it. */
ct_node *ct_seq_append_scalar(ct_node *seq, const char *text);
/* Replaces a node's content by a map with the single entry {key: <old scalar>}; used to
 * expand shorthand such as `optimizer: adam` into `{type: adam}`. */
int ct_node_expand_scalar(ct_node *n, const char *key, ct_error *err);

/* Fails with "unknown key 'x' in <what> (did you mean 'y'?); known keys: a, b, c" at the
 * key's position when map holds a key not in `allowed` (NULL-terminated). */
int ct_cfg_check_keys(const ct_node *map, const char *const *allowed, const char *what,
                      ct_error *err);
/* Fails with "<what> needs the key 'key'" at the map's position if absent. */
int ct_cfg_require(const ct_node *map, const char *key, const char *what, ct_error *err);

/* ct_suggest, the closest name to a misspelt one, is in text.h. */

/* Typed getters on map[key]. When the key is absent the default is written into the map
 * and returned. Wrong type or out of range: an error at the value's position saying what
 * was expected. Ranges are inclusive. */
int ct_cfg_int(ct_node *map, const char *key, int64_t def, int64_t min, int64_t max,
               int64_t *out, ct_error *err);
int ct_cfg_float(ct_node *map, const char *key, double def, double min, double max,
                 double *out, ct_error *err);
int ct_cfg_bool(ct_node *map, const char *key, bool def, bool *out, ct_error *err);
/* def NULL: the key is required. *out points into the tree. */
int ct_cfg_string(ct_node *map, const char *key, const char *def, const char **out,
                  ct_error *err);
/* One of choices (NULL-terminated); *out is its index. def NULL: required. */
int ct_cfg_enum(ct_node *map, const char *key, const char *def, const char *const *choices,
                int *out, ct_error *err);
/* A sequence of positive integers (1..max_len entries) such as input_shape: [28, 28, 1]. */
int ct_cfg_int_list(ct_node *map, const char *key, int64_t *out, int max_len, int *len,
                    ct_error *err);

/* YAML's "no value" (the 1.2 core schema's null): true for an absent node (NULL) and for an
 * unquoted scalar that is empty, ~, null, Null or NULL. A quoted "null" is a string, and a
 * map or a sequence is never null. The one test every reader uses, so they agree. */
bool ct_node_is_null(const ct_node *n);

/* Scalar conversions of one node (errors point at it). */
int ct_node_int(const ct_node *n, int64_t *out, ct_error *err);
int ct_node_float(const ct_node *n, double *out, ct_error *err);
int ct_node_bool(const ct_node *n, bool *out, ct_error *err);

#endif
