/*
 * config_int.h: what the files of the config module share; not part of its
 * interface (config.h is).
 *
 *   config_walk.c    reads the file (capped), parses its one YAML document
 *                    and walks libyaml's tree against tables of fields
 *   config_value.c   the grammars of single values: durations, sizes,
 *                    listen addresses, destination templates
 *   config_secret.c  secrets: tokens and passwords from _env, _file or
 *                    inline, and the PEM files of tls:
 *   config_schema.c  Ferry's tables for registries and rules
 *   config.c         the top level, defaults, config_load() and the queries
 *
 * The loader walks the document against tables of fields, one table per
 * kind of mapping (the top level, retry, circuit, a registry, its upload, a
 * rule, a destination). A field names its key, how to read the value and
 * where in the object being filled the result goes, so that a new key is one
 * line in a table plus, at most, a check function. Values that need more
 * than a table entry (secrets, cross references) are settled once the whole
 * mapping has been read. A nested mapping (retry, upload) fills the same
 * object as the one it sits in, through a table of its own.
 */
#ifndef FERRY_CONFIG_INT_H
#define FERRY_CONFIG_INT_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <yaml.h>

#include "common/buf.h"
#include "config/config.h"

/* Longest registry or rule name. */
#define CONFIG_MAX_NAME 64
/* Most fields one mapping of the file may have; the tables stay under it. */
#define CONFIG_MAX_FIELDS 32
/* Longest piece of a value repeated in an error message. */
#define CONFIG_QUOTE_MAX 80

/* A table of fields and its length, as config_mapping() takes them. */
#define CONFIG_FIELDS(table) (table), (sizeof(table) / sizeof((table)[0]))

/* ---- The walker (config_walk.c) ---- */

struct config_parser {
    const char *path;          /* the file, for messages */
    const char *dir;           /* its directory, for CONFIG_PATH values */
    yaml_document_t *document; /* the tree being walked */
    unsigned char *visited;    /* one flag per node; a second visit means an alias */
    char *err;                 /* the first error */
    /* The schema's own state, which the walker does not touch. */
    struct config *config; /* being filled */
    bool inline_password;  /* some registry has a password in the file itself */
};

enum config_kind {
    CONFIG_STRING,   /* char *: a non-empty string */
    CONFIG_PATH,     /* char *: a string, relative to the config file's directory */
    CONFIG_BOOL,     /* bool: true or false */
    CONFIG_INT,      /* int: a whole number in [min, max] */
    CONFIG_DURATION, /* uint64_t: milliseconds in [min, max] */
    CONFIG_SIZE,     /* size_t: bytes in [min, max] */
    CONFIG_SIZE64,   /* uint64_t: bytes in [min, max] */
    CONFIG_STRINGS,  /* char ** and size_t at count_offset: a list of strings */
    CONFIG_CUSTOM,   /* whatever `parse` makes of the node */
};

/* Checks one string value before it is stored; 0 or an error from config_fail(). */
typedef int (*config_check_fn)(struct config_parser *p, const yaml_node_t *node, const char *key,
                               const char *value);

/* Reads a CONFIG_CUSTOM value into `object`; 0 or an error from config_fail(). */
typedef int (*config_parse_fn)(struct config_parser *p, const yaml_node_t *node, const char *key,
                               void *object);

struct config_field {
    const char *name;
    enum config_kind kind;
    size_t offset;         /* of the value in the object being filled */
    size_t count_offset;   /* CONFIG_STRINGS: of its size_t count */
    bool required;         /* a missing key is an error */
    bool empty_ok;         /* CONFIG_STRINGS: [] is allowed and leaves NULL and 0 */
    uint64_t min, max;     /* CONFIG_INT, CONFIG_DURATION, CONFIG_SIZE(64); max 0: none */
    config_check_fn check; /* CONFIG_STRING, CONFIG_PATH, each item of CONFIG_STRINGS */
    config_parse_fn parse; /* CONFIG_CUSTOM */
};

/* The file as read and parsed: its bytes and libyaml's tree of its one document. */
struct config_yaml {
    struct buf contents;
    struct stat st; /* of the file, for the inline-secret warning */
    yaml_parser_t parser;
    yaml_document_t document;
    bool parser_ready;
    bool document_ready;
};

/**
 * Read the file at `path` into `contents`, whose limit caps it: all of it,
 * or with `first_line` up to its first newline. Every chunk read is wiped
 * once copied. *st (may be NULL) gets the file's status. Returns 0, or with
 * *opened (may be NULL) saying whether the file could be opened: a negative
 * errno (-EISDIR for a directory), or FERRY_ETOOBIG past the limit. What was
 * read stays in `contents` for the caller to wipe and release.
 */
FERRY_MUST_CHECK int config_file_read(const char *path, bool first_line, struct buf *contents,
                                      struct stat *st, bool *opened);

/**
 * Read the config file at `path` (at most CONFIG_MAX_BYTES) and parse its
 * one YAML document into `y`, which the caller releases with
 * config_yaml_release() whatever this returns. Returns 0, or with *err a
 * line the caller frees: config_file_read()'s error, FERRY_EPARSE for a
 * syntax error, FERRY_EINVAL for a second document.
 */
FERRY_MUST_CHECK int config_yaml_load(struct config_yaml *y, const char *path, char **err);

/** Wipe (the document holds every secret of the file) and free what `y` holds. */
void config_yaml_release(struct config_yaml *y);

/**
 * Start walking `y`'s document for the file `path` in directory `dir`; the
 * caller frees p->visited and p->err.
 */
void config_parser_init(struct config_parser *p, struct config_yaml *y, const char *path,
                        const char *dir);

/**
 * Fill `object` from the document's root with `fields`. An empty document
 * (or a null root) fills nothing: every default stays. Sets *root to the
 * root node, or NULL for an empty document.
 */
FERRY_MUST_CHECK int config_walk_root(struct config_parser *p, const struct config_field *fields,
                                      size_t n_fields, void *object, const yaml_node_t **root);

/**
 * Record "FILE:LINE: KEY: problem" for `node` unless an error is already
 * recorded, and return FERRY_EINVAL. Callers never pass a secret value in
 * the format arguments; values they do repeat are cut at CONFIG_QUOTE_MAX.
 */
FERRY_MUST_CHECK int config_fail(struct config_parser *p, const yaml_node_t *node, const char *key,
                                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/** The path of key `name` under `parent`, cut to CONFIG_QUOTE_MAX; the caller frees it. */
char *config_key_join(const char *parent, const char *name);

/** As config_fail(), for key `name` under `key`, placed at its value in `mapping` if there. */
FERRY_MUST_CHECK int config_fail_at(struct config_parser *p, const yaml_node_t *mapping,
                                    const char *key, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/**
 * The node `id` refers to, counting the visit: a node reached twice was
 * reached through an alias, which is refused ("billion laughs").
 */
FERRY_MUST_CHECK int config_node(struct config_parser *p, int id, const char *key,
                                 const yaml_node_t **out);

/** A scalar's text, borrowed from the document; never empty, never with a NUL inside. */
FERRY_MUST_CHECK int config_string(struct config_parser *p, const yaml_node_t *node,
                                   const char *key, const char **out);

/** Resolve a relative path against the config file's directory; the caller frees it. */
char *config_path_join(const char *dir, const char *path);

/**
 * Fill `object` from the mapping `node` whose path is `key`, following
 * `fields`. Every key of the mapping must be a field, no field may appear
 * twice and every required field must be there. Values are read in table
 * order, not file order, so a field can rely on those listed before it
 * (rules on registries, a rule's destinations on its source).
 */
FERRY_MUST_CHECK int config_mapping(struct config_parser *p, const yaml_node_t *node,
                                    const char *key, const struct config_field *fields,
                                    size_t n_fields, void *object);

/** Free a list of `n` strings; NULL is fine. */
void config_strings_free(char **strings, size_t n);

/**
 * The items of the sequence `node` (a list at `key`): 0 with *items and *n,
 * or an error when it is not a list, or is empty unless `empty_ok`.
 */
FERRY_MUST_CHECK int config_sequence(struct config_parser *p, const yaml_node_t *node,
                                     const char *key, bool empty_ok, yaml_node_item_t **items,
                                     size_t *n);

/**
 * The value of key `name` in the mapping `node`, or NULL; for placing an
 * error about a value that config_mapping() has already read.
 */
const yaml_node_t *config_lookup(struct config_parser *p, const yaml_node_t *node,
                                 const char *name);

/** As config_lookup(), falling back to the mapping itself. */
const yaml_node_t *config_place(struct config_parser *p, const yaml_node_t *node, const char *name);

/* ---- Single values (config_value.c) ---- */

/** True for a registry or rule name: 1 to CONFIG_MAX_NAME of [A-Za-z0-9._-], alphanumeric first. */
bool config_name_valid(const char *name);

/** True for a host name or address ([v6] in brackets) without a port. */
bool config_host_valid(const char *host);

/* ---- Secrets (config_secret.c) ---- */

/**
 * Resolve the secret of key `key` (as "api_token"): inline in *secret
 * (already read by a table), from the environment variable `env` (the value
 * of KEY_env) or from the file `file` (of KEY_file); at most one of them.
 * With `inline_ok` false the key has no inline form. An inline secret marks
 * the file as holding one. Places errors at the keys in `mapping`.
 */
FERRY_MUST_CHECK int config_secret_resolve(struct config_parser *p, const yaml_node_t *mapping,
                                           const char *key, bool inline_ok, const char *env,
                                           const char *file, char **secret);

/** Read the secret on the first line of `path` into *secret; errors placed at `node`, `key`. */
FERRY_MUST_CHECK int config_secret_from_file(struct config_parser *p, const yaml_node_t *node,
                                             const char *key, const char *path, char **secret);

/** Take the secret in environment variable `name` into *secret; errors placed at `node`, `key`. */
FERRY_MUST_CHECK int config_secret_from_env(struct config_parser *p, const yaml_node_t *node,
                                            const char *key, const char *name, char **secret);

/** Refuse a secret still holding deploy/k8s's placeholder; `what` says where it came from. */
FERRY_MUST_CHECK int config_secret_check_placeholder(struct config_parser *p,
                                                     const yaml_node_t *node, const char *key,
                                                     const char *what, const char *secret);

/** tls: (CONFIG_CUSTOM of the top level): both files read and checked to match. */
FERRY_MUST_CHECK int config_parse_tls(struct config_parser *p, const yaml_node_t *node,
                                      const char *key, void *object);

/* ---- The schema (config.c, config_schema.c) ---- */

/* The top level as written: the config plus the keys that only lead to it. */
struct config_top {
    struct config config;
    char *webhook_token_env;
    char *webhook_token_file;
    char *api_token_env;
    char *api_token_file;
    char *metrics_token_env;
    char *metrics_token_file;
};

/** Free what a registry holds, wiping its password, and zero it. */
void config_registry_release(struct config_registry *r);

/** Free what a rule holds and zero it. */
void config_rule_release(struct config_rule *rule);

/** Check an environment variable's name ([A-Za-z_][A-Za-z0-9_]*); a config_check_fn. */
FERRY_MUST_CHECK int config_check_env_name(struct config_parser *p, const yaml_node_t *node,
                                           const char *key, const char *value);

/** registries: (CONFIG_CUSTOM of the top level, into a struct config_top). */
FERRY_MUST_CHECK int config_parse_registries(struct config_parser *p, const yaml_node_t *node,
                                             const char *key, void *object);

/** rules: (CONFIG_CUSTOM of the top level, into a struct config_top; after registries). */
FERRY_MUST_CHECK int config_parse_rules(struct config_parser *p, const yaml_node_t *node,
                                        const char *key, void *object);

/** cluster: (CONFIG_CUSTOM of the top level, into a struct config_top). */
FERRY_MUST_CHECK int config_parse_cluster(struct config_parser *p, const yaml_node_t *node,
                                          const char *key, void *object);

/** Free a cluster section, wiping its secrets; NULL is fine. */
void config_cluster_free(struct config_cluster *c);

#endif
