#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/fsutil.h"
#include "config/glob.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/secret.h"
#include "common/xalloc.h"

/* Longest registry or rule name. */
#define CONFIG_MAX_NAME 64
/* Most fields one mapping of the file may have; the tables below stay under it. */
#define CONFIG_MAX_FIELDS 32
/* Longest piece of a value repeated in an error message. */
#define CONFIG_QUOTE_MAX 80

/*
 * The loader walks libyaml's document tree against tables of fields, one
 * table per kind of mapping (the top level, retry, circuit, a registry, its
 * upload, a rule, a destination). A field names its key, how to read the
 * value and where in the object being filled the result goes, so that a new
 * key is one line in a table plus, at most, a check function. Values that
 * need more than a table entry (secrets, cross references) are settled once
 * the whole mapping has been read. A nested mapping (retry, upload) fills
 * the same object as the one it sits in, through a table of its own.
 */

struct config_parser {
    const char *path;          /* the file, for messages */
    yaml_document_t *document; /* the tree being walked */
    unsigned char *visited;    /* one flag per node; a second visit means an alias */
    struct config *config;     /* being filled */
    char *err;                 /* the first error */
    bool inline_password;      /* some registry has a password in the file itself */
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

/* A registry as written: the registry plus where its password comes from. */
struct config_registry_spec {
    struct config_registry registry;
    char *password_env;
    char *password_file;
};

static void config_strings_free(char **strings, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(strings[i]);
    free(strings);
}

static void config_registry_release(struct config_registry *r)
{
    free(r->name);
    free(r->url);
    free(r->host);
    free(r->username);
    secret_free(r->password);
    free(r->ca_file);
    free(r->cert_file);
    free(r->key_file);
    config_strings_free(r->repositories, r->n_repositories);
    memset(r, 0, sizeof(*r));
}

static void config_rule_release(struct config_rule *rule)
{
    free(rule->name);
    free(rule->source);
    config_strings_free(rule->repositories, rule->n_repositories);
    config_strings_free(rule->tags, rule->n_tags);
    config_strings_free(rule->platforms, rule->n_platforms);
    for (size_t i = 0; i < rule->n_destinations; i++) {
        free(rule->destinations[i].registry);
        free(rule->destinations[i].repository);
    }
    free(rule->destinations);
    memset(rule, 0, sizeof(*rule));
}

static void config_release(struct config *c)
{
    free(c->path);
    free(c->dir);
    free(c->data_dir);
    free(c->listen);
    secret_free(c->webhook_token);
    secret_free(c->api_token);
    secret_free(c->metrics_token);
    config_strings_free(c->server_names, c->n_server_names);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->tls_cert_pem);
    secret_free(c->tls_key_pem);
    for (size_t i = 0; i < c->n_registries; i++)
        config_registry_release(&c->registries[i]);
    free(c->registries);
    for (size_t i = 0; i < c->n_rules; i++)
        config_rule_release(&c->rules[i]);
    free(c->rules);
    memset(c, 0, sizeof(*c));
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    config_release(c);
    free(c);
}

/* Messages are one printable line whatever the file holds. */
static void config_sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
    }
}

/*
 * Record "FILE:LINE: KEY: problem" for `node` unless an error is already
 * recorded, and return FERRY_EINVAL. Callers never pass a secret value in
 * the format arguments; values they do repeat are cut at CONFIG_QUOTE_MAX.
 */
static int config_fail(struct config_parser *p, const yaml_node_t *node, const char *key,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int config_fail(struct config_parser *p, const yaml_node_t *node, const char *key,
                       const char *fmt, ...)
{
    if (p->err != NULL)
        return FERRY_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    char *problem = xvasprintf(fmt, ap);
    va_end(ap);
    size_t line = node != NULL ? node->start_mark.line + 1 : 1;
    if (key != NULL && key[0] != '\0')
        p->err = xasprintf("%s:%zu: %s: %s", p->path, line, key, problem);
    else
        p->err = xasprintf("%s:%zu: %s", p->path, line, problem);
    config_sanitize(p->err);
    free(problem);
    return FERRY_EINVAL;
}

/* The path of key `name` under `parent`; a name out of a file may be long, so it is cut. */
static char *config_key_join(const char *parent, const char *name)
{
    if (parent[0] == '\0')
        return xasprintf("%.*s", CONFIG_QUOTE_MAX, name);
    return xasprintf("%s.%.*s", parent, CONFIG_QUOTE_MAX, name);
}

/*
 * The node `id` refers to, counting the visit. libyaml resolves an alias to
 * the node its anchor names, so a node reached twice was reached through an
 * alias; refusing those keeps a small file from expanding into a huge
 * configuration ("billion laughs").
 */
static int config_node(struct config_parser *p, int id, const char *key, const yaml_node_t **out)
{
    yaml_node_t *node = yaml_document_get_node(p->document, id);
    if (node == NULL)
        return config_fail(p, NULL, key, "missing value");
    size_t index = (size_t)(id - 1);
    if (p->visited[index])
        return config_fail(p, node, key, "anchors and aliases are not supported");
    p->visited[index] = 1;
    *out = node;
    return 0;
}

static bool config_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)node->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* A scalar's text, borrowed from the document; never empty, never with a NUL inside. */
static int config_string(struct config_parser *p, const yaml_node_t *node, const char *key,
                         const char **out)
{
    if (config_is_null(node))
        return config_fail(p, node, key, "has no value");
    if (node->type != YAML_SCALAR_NODE)
        return config_fail(p, node, key, "must be a string");
    const char *value = (const char *)node->data.scalar.value;
    if (strlen(value) != node->data.scalar.length)
        return config_fail(p, node, key, "must not contain a NUL byte");
    if (value[0] == '\0')
        return config_fail(p, node, key, "must not be empty");
    *out = value;
    return 0;
}

/* A plain (unquoted) scalar's text, for booleans and numbers. */
static const char *config_plain(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return NULL;
    return (const char *)node->data.scalar.value;
}

static int config_bool(struct config_parser *p, const yaml_node_t *node, const char *key, bool *out)
{
    const char *v = config_plain(node);
    if (v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "TRUE") == 0))
        *out = true;
    else if (v != NULL &&
             (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 || strcmp(v, "FALSE") == 0))
        *out = false;
    else
        return config_fail(p, node, key, "must be true or false");
    return 0;
}

static int config_int(struct config_parser *p, const yaml_node_t *node, const char *key,
                      uint64_t min, uint64_t max, int *out)
{
    const char *v = config_plain(node);
    bool negative = false;
    uint64_t value = 0;

    if (v != NULL && *v == '-') {
        negative = true;
        v++;
    }
    if (v == NULL || *v == '\0')
        return config_fail(p, node, key, "must be a whole number");
    for (; *v != '\0'; v++) {
        if (*v < '0' || *v > '9')
            return config_fail(p, node, key, "must be a whole number");
        if (value <= max)
            value = value * 10 + (uint64_t)(*v - '0');
    }
    if (negative || value < min || value > max)
        return config_fail(p, node, key, "must be between %" PRIu64 " and %" PRIu64, min, max);
    *out = (int)value;
    return 0;
}

/* Resolve a relative path against the config file's directory. */
static char *config_path_join(const char *dir, const char *path)
{
    if (path[0] == '/' || strcmp(dir, ".") == 0)
        return xstrdup(path);
    while (path[0] == '.' && path[1] == '/') {
        path += 2;
        while (path[0] == '/')
            path++;
    }
    if (path[0] == '\0' || strcmp(path, ".") == 0)
        return xstrdup(dir);
    size_t len = strlen(dir);
    return xasprintf("%s%s%s", dir, len > 0 && dir[len - 1] == '/' ? "" : "/", path);
}

static int config_strings(struct config_parser *p, const yaml_node_t *node, const char *key,
                          config_check_fn check, bool empty_ok, char ***out, size_t *n_out)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail(p, node, key, "must be a list");
    yaml_node_item_t *start = node->data.sequence.items.start;
    size_t n = (size_t)(node->data.sequence.items.top - start);
    if (n == 0 && !empty_ok)
        return config_fail(p, node, key, "must not be empty");
    if (n == 0) {
        config_strings_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
        return 0;
    }

    char **strings = xcalloc(n, sizeof(*strings));
    size_t filled = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char *item_key = xasprintf("%s[%zu]", key, i);
        const yaml_node_t *item = NULL;
        const char *value = NULL;
        rc = config_node(p, start[i], item_key, &item);
        if (rc == 0)
            rc = config_string(p, item, item_key, &value);
        if (rc == 0 && check != NULL)
            rc = check(p, item, item_key, value);
        free(item_key);
        if (rc < 0)
            break;
        strings[filled++] = xstrdup(value);
    }
    if (rc < 0) {
        config_strings_free(strings, filled);
        return rc;
    }
    config_strings_free(*out, *n_out);
    *out = strings;
    *n_out = n;
    return 0;
}

static int config_value(struct config_parser *p, const struct config_field *f,
                        const yaml_node_t *node, const char *key, void *object)
{
    char *base = object;
    const char *text = NULL;
    int rc;

    switch (f->kind) {
    case CONFIG_STRING:
    case CONFIG_PATH: {
        rc = config_string(p, node, key, &text);
        if (rc == 0 && f->check != NULL)
            rc = f->check(p, node, key, text);
        if (rc < 0)
            return rc;
        char **slot = (char **)(base + f->offset);
        secret_free(*slot);
        *slot = f->kind == CONFIG_PATH ? config_path_join(p->config->dir, text) : xstrdup(text);
        return 0;
    }
    case CONFIG_BOOL:
        return config_bool(p, node, key, (bool *)(base + f->offset));
    case CONFIG_INT:
        return config_int(p, node, key, f->min, f->max, (int *)(base + f->offset));
    case CONFIG_DURATION: {
        uint64_t ms = 0;
        rc = config_string(p, node, key, &text);
        if (rc < 0)
            return rc;
        if (config_parse_duration(text, &ms) < 0)
            return config_fail(p, node, key,
                               "'%.*s' is not a duration (a whole number followed by ms, s, m, h "
                               "or d, or 0)",
                               CONFIG_QUOTE_MAX, text);
        if (ms < f->min)
            return config_fail(p, node, key, "must be at least %" PRIu64 "ms", f->min);
        if (f->max != 0 && ms > f->max)
            return config_fail(p, node, key, "must be at most %" PRIu64 "ms", f->max);
        *(uint64_t *)(base + f->offset) = ms;
        return 0;
    }
    case CONFIG_SIZE:
    case CONFIG_SIZE64: {
        size_t bytes = 0;
        rc = config_string(p, node, key, &text);
        if (rc < 0)
            return rc;
        if (config_parse_size(text, &bytes) < 0)
            return config_fail(p, node, key,
                               "'%.*s' is not a size (a whole number of bytes, optionally "
                               "followed by B, K, KiB, M, MiB, G or GiB)",
                               CONFIG_QUOTE_MAX, text);
        if (bytes < f->min || (f->max != 0 && bytes > f->max))
            return config_fail(p, node, key, "must be between %" PRIu64 " and %" PRIu64 " bytes",
                               f->min, f->max);
        if (f->kind == CONFIG_SIZE64)
            *(uint64_t *)(base + f->offset) = bytes;
        else
            *(size_t *)(base + f->offset) = bytes;
        return 0;
    }
    case CONFIG_STRINGS:
        return config_strings(p, node, key, f->check, f->empty_ok, (char ***)(base + f->offset),
                              (size_t *)(base + f->count_offset));
    case CONFIG_CUSTOM:
        return f->parse(p, node, key, object);
    }
    return config_fail(p, node, key, "cannot be read");
}

/*
 * Fill `object` from the mapping `node` whose path is `key`, following
 * `fields`. Every key of the mapping must be a field, no field may appear
 * twice and every required field must be there. Values are read in table
 * order, not file order, so a field can rely on those listed before it
 * (rules on registries, a rule's destinations on its source).
 */
static int config_mapping(struct config_parser *p, const yaml_node_t *node, const char *key,
                          const struct config_field *fields, size_t n_fields, void *object)
{
    const yaml_node_t *values[CONFIG_MAX_FIELDS] = {0};
    int rc = 0;

    if (node->type != YAML_MAPPING_NODE)
        return config_fail(p, node, key,
                           key[0] == '\0' ? "the configuration must be a mapping"
                                          : "must be a mapping");
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const yaml_node_t *name_node = NULL;
        const char *name = NULL;
        rc = config_node(p, pair->key, key, &name_node);
        if (rc < 0)
            return rc;
        if (name_node->type != YAML_SCALAR_NODE)
            return config_fail(p, name_node, key, "keys must be strings");
        name = (const char *)name_node->data.scalar.value;
        size_t i = 0;
        while (i < n_fields && strcmp(fields[i].name, name) != 0)
            i++;
        char *child = config_key_join(key, name);
        if (i == n_fields)
            rc = config_fail(p, name_node, child, "unknown key");
        else if (values[i] != NULL)
            rc = config_fail(p, name_node, child, "duplicate key");
        else
            rc = config_node(p, pair->value, child, &values[i]);
        free(child);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < n_fields; i++) {
        if (fields[i].required && values[i] == NULL)
            return config_fail(p, node, key, "missing '%s'", fields[i].name);
    }
    for (size_t i = 0; i < n_fields && rc == 0; i++) {
        if (values[i] == NULL)
            continue;
        char *child = config_key_join(key, fields[i].name);
        rc = config_value(p, &fields[i], values[i], child, object);
        free(child);
    }
    return rc;
}

/*
 * The value of key `name` in the mapping `node`, or NULL; for placing an
 * error about a value that config_mapping() has already read.
 */
static const yaml_node_t *config_lookup(struct config_parser *p, const yaml_node_t *node,
                                        const char *name)
{
    if (node == NULL || node->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(p->document, pair->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, name) == 0)
            return yaml_document_get_node(p->document, pair->value);
    }
    return NULL;
}

/* As config_lookup(), falling back to the mapping itself. */
static const yaml_node_t *config_place(struct config_parser *p, const yaml_node_t *node,
                                       const char *name)
{
    const yaml_node_t *value = config_lookup(p, node, name);
    return value != NULL ? value : node;
}

/* ---- Checks of single values ---- */

static bool config_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > CONFIG_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

static int config_check_env_name(struct config_parser *p, const yaml_node_t *node, const char *key,
                                 const char *value)
{
    for (const char *c = value; *c != '\0'; c++) {
        bool ok = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || *c == '_' ||
                  (c != value && *c >= '0' && *c <= '9');
        if (!ok)
            return config_fail(
                p, node, key,
                "must be the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*)");
    }
    return 0;
}

static int config_check_listen(struct config_parser *p, const yaml_node_t *node, const char *key,
                               const char *value)
{
    if (config_split_listen(value, NULL, NULL) < 0)
        return config_fail(p, node, key,
                           "'%.*s' is not host:port or [v6]:port with a port from 1 to 65535",
                           CONFIG_QUOTE_MAX, value);
    return 0;
}

/* Only notes that the file holds a password; the value itself is never looked at. */
static int config_check_inline_password(struct config_parser *p, const yaml_node_t *node,
                                        const char *key, const char *value)
{
    (void)node;
    (void)key;
    (void)value;
    p->inline_password = true;
    return 0;
}

static int config_check_repository(struct config_parser *p, const yaml_node_t *node,
                                   const char *key, const char *value)
{
    if (!reference_repository_valid(value))
        return config_fail(p, node, key, "'%.*s' is not a valid repository name", CONFIG_QUOTE_MAX,
                           value);
    return 0;
}

static int config_check_pattern(struct config_parser *p, const yaml_node_t *node, const char *key,
                                const char *value)
{
    const char *pattern = value[0] == '!' ? value + 1 : value;
    if (pattern[0] == '\0')
        return config_fail(p, node, key, "'!' needs a pattern after it");
    if (strlen(pattern) > GLOB_MAX_PATTERN)
        return config_fail(p, node, key, "pattern is longer than %d bytes", GLOB_MAX_PATTERN);
    return 0;
}

/* An OCI platform as "os/arch" or "os/arch/variant", the form copy.h takes. */
static int config_check_platform(struct config_parser *p, const yaml_node_t *node, const char *key,
                                 const char *value)
{
    size_t parts = 1;
    bool ok = true;
    char previous = '/';

    for (const char *c = value; *c != '\0'; previous = *c++) {
        if (*c == '/') {
            ok = ok && previous != '/';
            parts++;
        } else {
            ok = ok && ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' ||
                        *c == '_' || *c == '-');
        }
    }
    if (!ok || previous == '/' || parts < 2 || parts > 3)
        return config_fail(p, node, key,
                           "'%.*s' is not a platform (os/arch or os/arch/variant, each of a-z "
                           "0-9 . _ -)",
                           CONFIG_QUOTE_MAX, value);
    return 0;
}

static int config_check_rule_name(struct config_parser *p, const yaml_node_t *node, const char *key,
                                  const char *value)
{
    if (!config_name_valid(value))
        return config_fail(p, node, key,
                           "'%.*s' is not a name (1 to %d of A-Z a-z 0-9 . _ -, starting with a "
                           "letter or digit)",
                           CONFIG_QUOTE_MAX, value, CONFIG_MAX_NAME);
    for (size_t i = 0; i < p->config->n_rules; i++) {
        if (strcmp(p->config->rules[i].name, value) == 0)
            return config_fail(p, node, key, "duplicate rule name '%s'", value);
    }
    return 0;
}

static int config_check_registry_ref(struct config_parser *p, const yaml_node_t *node,
                                     const char *key, const char *value)
{
    if (config_registry_find(p->config, value) == NULL)
        return config_fail(p, node, key, "unknown registry '%.*s'", CONFIG_QUOTE_MAX, value);
    return 0;
}

/* Checks a destination template on a sample name, which finds every placeholder problem. */
static int config_check_template(struct config_parser *p, const yaml_node_t *node, const char *key,
                                 const char *value)
{
    for (const char *brace = strchr(value, '{'); brace != NULL; brace = strchr(brace + 1, '{')) {
        if (strncmp(brace, "{repo}", 6) != 0 && strncmp(brace, "{name}", 6) != 0)
            return config_fail(p, node, key, "unknown placeholder; use {repo} or {name}");
    }
    struct config_destination sample = {.repository = (char *)value};
    char *expanded = config_destination_repository(&sample, "team/app");
    if (expanded == NULL)
        return config_fail(p, node, key,
                           "'%.*s' does not make valid repository names (lowercase letters, "
                           "digits, separators, '/')",
                           CONFIG_QUOTE_MAX, value);
    free(expanded);
    return 0;
}

/*
 * Split an http(s) URL into the registry's host and scheme. Only a bare
 * origin is accepted: Ferry talks to /v2/ at the root, and credentials
 * belong in username and password, not in a URL that ends up in logs.
 */
static int config_parse_url(struct config_parser *p, const yaml_node_t *node, const char *key,
                            void *object)
{
    struct config_registry *r = &((struct config_registry_spec *)object)->registry;
    const char *url = NULL;
    int rc = config_string(p, node, key, &url);
    if (rc < 0)
        return rc;

    /* The URL is not repeated in these messages: it could hold a password. */
    const char *authority;
    bool plain_http;
    if (strncmp(url, "https://", 8) == 0) {
        authority = url + 8;
        plain_http = false;
    } else if (strncmp(url, "http://", 7) == 0) {
        authority = url + 7;
        plain_http = true;
    } else {
        return config_fail(p, node, key, "must start with http:// or https://");
    }
    size_t len = strcspn(authority, "/?#");
    if (memchr(authority, '@', len) != NULL)
        return config_fail(p, node, key,
                           "must not hold credentials; use username and password_env or "
                           "password_file");
    const char *rest = authority + len;
    if (rest[0] != '\0' && strcmp(rest, "/") != 0)
        return config_fail(p, node, key, "must not have a path, query or fragment");

    /* The authority is checked as a listen address is, with the port optional. */
    char *host = xstrndup(authority, len);
    bool ok;
    if (len > 0 && (host[len - 1] == ']' || strchr(host, ':') == NULL)) {
        char *with_port = xasprintf("%s:1", host);
        ok = config_split_listen(with_port, NULL, NULL) == 0;
        free(with_port);
    } else {
        ok = config_split_listen(host, NULL, NULL) == 0;
    }
    if (!ok) {
        free(host);
        return config_fail(p, node, key,
                           "has no valid host[:port] (a name, an IPv4 address or [IPv6], and "
                           "a port from 1 to 65535)");
    }
    free(r->url);
    free(r->host);
    r->url = xstrndup(url, (size_t)(rest - url));
    r->host = host;
    r->plain_http = plain_http;
    return 0;
}

static bool config_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * The secrets deploy/k8s ships start with this. A deployment that kept one is
 * refused rather than run with a password anyone can read in the repository.
 */
#define CONFIG_PLACEHOLDER "change-me"

int config_secret_read_file(const char *path, char **secret, char **err)
{
    char chunk[4096];
    struct buf contents;
    struct stat st;
    int rc = 0;
    bool line_done = false;

    *secret = NULL;
    *err = NULL;
    buf_init(&contents, CONFIG_MAX_SECRET_BYTES);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        *err = xasprintf("cannot read %s: %s", path, strerror(-rc));
        return rc;
    }
    /* The same rule as for a config file holding an inline secret. */
    if (fstat(fd, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0)
        log_warn("secret file is readable by group or others; chmod 600 it path=%s", path);
    while (!line_done) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            *err = xasprintf("cannot read %s: %s", path, strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        char *newline = memchr(chunk, '\n', (size_t)n);
        if (newline != NULL) {
            n = newline - chunk;
            line_done = true;
        }
        if (buf_append(&contents, chunk, (size_t)n) < 0) {
            *err = xasprintf("the first line of %s is longer than %d bytes", path,
                             CONFIG_MAX_SECRET_BYTES);
            rc = FERRY_ETOOBIG;
            goto out;
        }
    }
    const char *start = contents.data != NULL ? contents.data : "";
    const char *end = start + contents.len;
    while (start < end && config_is_space(*start))
        start++;
    while (end > start && config_is_space(end[-1]))
        end--;
    if (end == start) {
        *err = xasprintf("the first line of %s is empty", path);
        rc = FERRY_EINVAL;
        goto out;
    }
    if (memchr(start, '\0', (size_t)(end - start)) != NULL) {
        *err = xasprintf("%s holds a NUL byte", path);
        rc = FERRY_EINVAL;
        goto out;
    }
    *secret = xstrndup(start, (size_t)(end - start));

out:
    secret_wipe(chunk, sizeof(chunk));
    if (contents.data != NULL)
        secret_wipe(contents.data, contents.alloc);
    buf_release(&contents);
    close(fd);
    return rc;
}

/*
 * Secrets taken out of the environment, by variable name, kept for the life
 * of the process: a reload (SIGHUP) reads the config again after the
 * variables are gone. Only the thread that loads configs touches it.
 */
struct config_env_secret {
    char *name;
    char *value;
};
static struct config_env_secret *config_env_secrets;
static size_t config_n_env_secrets;

char *config_secret_take_env(const char *name)
{
    struct config_env_secret *kept = NULL;
    for (size_t i = 0; i < config_n_env_secrets; i++) {
        if (strcmp(config_env_secrets[i].name, name) == 0)
            kept = &config_env_secrets[i];
    }
    char *value = getenv(name);
    if (value == NULL)
        return kept != NULL ? xstrdup(kept->value) : NULL;
    if (kept == NULL) {
        config_env_secrets =
            xrealloc(config_env_secrets, (config_n_env_secrets + 1) * sizeof(*config_env_secrets));
        kept = &config_env_secrets[config_n_env_secrets++];
        kept->name = xstrdup(name);
    } else {
        secret_free(kept->value);
    }
    kept->value = xstrdup(value);
    /*
     * unsetenv() only drops the pointer: the bytes stay in the block the
     * kernel shows as /proc/PID/environ, so they are overwritten first.
     * The string is "NAME=value" in that block or in setenv()'s copy; both
     * are ours to write, and what is left reads as an empty value.
     */
    secret_wipe_str(value);
    unsetenv(name);
    return xstrdup(kept->value);
}

/* Refuse a secret still holding deploy/k8s's placeholder; `what` says where it came from. */
static int config_check_placeholder(struct config_parser *p, const yaml_node_t *node,
                                    const char *key, const char *what, const char *secret)
{
    if (secret == NULL || strncmp(secret, CONFIG_PLACEHOLDER, strlen(CONFIG_PLACEHOLDER)) != 0)
        return 0;
    return config_fail(p, node, key, "%s is the shipped placeholder; set a real secret", what);
}

static int config_read_secret(struct config_parser *p, const yaml_node_t *node, const char *key,
                              const char *path, char **secret)
{
    char *why = NULL;
    int rc = config_secret_read_file(path, secret, &why);
    if (rc < 0) {
        rc = config_fail(p, node, key, "%s", why);
        free(why);
        return rc;
    }
    return config_check_placeholder(p, node, key, path, *secret);
}

static int config_read_env(struct config_parser *p, const yaml_node_t *node, const char *key,
                           const char *name, char **secret)
{
    char *value = config_secret_take_env(name);
    if (value == NULL)
        return config_fail(p, node, key, "%s is not set", name);
    if (value[0] == '\0') {
        free(value);
        return config_fail(p, node, key, "%s is empty", name);
    }
    *secret = value;
    return config_check_placeholder(p, node, key, name, *secret);
}

static int config_check_readable(struct config_parser *p, const yaml_node_t *mapping,
                                 const char *key, const char *name, const char *path)
{
    if (path == NULL || access(path, R_OK) == 0)
        return 0;
    int error = errno;
    char *child = config_key_join(key, name);
    int rc = config_fail(p, config_place(p, mapping, name), child, "cannot read %s: %s", path,
                         strerror(error));
    free(child);
    return rc;
}

/* ---- Registries ---- */

static int config_parse_upload_mode(struct config_parser *p, const yaml_node_t *node,
                                    const char *key, void *object)
{
    static const char *const names[] = {
        [CONFIG_UPLOAD_AUTO] = "auto",
        [CONFIG_UPLOAD_MONOLITHIC] = "monolithic",
        [CONFIG_UPLOAD_CHUNKED] = "chunked",
    };
    struct config_registry *r = &((struct config_registry_spec *)object)->registry;
    const char *mode = NULL;
    int rc = config_string(p, node, key, &mode);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(mode, names[i]) == 0) {
            r->upload_mode = (int)i;
            return 0;
        }
    }
    return config_fail(p, node, key, "'%.*s' is not auto, monolithic or chunked", CONFIG_QUOTE_MAX,
                       mode);
}

static const struct config_field config_upload_fields[] = {
    {.name = "mode", .kind = CONFIG_CUSTOM, .parse = config_parse_upload_mode},
    {.name = "chunk_min",
     .kind = CONFIG_SIZE64,
     .offset = offsetof(struct config_registry_spec, registry.upload_chunk_min),
     .max = CONFIG_MAX_UPLOAD_CHUNK},
    {.name = "chunk_max",
     .kind = CONFIG_SIZE64,
     .offset = offsetof(struct config_registry_spec, registry.upload_chunk_max),
     .max = CONFIG_MAX_UPLOAD_CHUNK},
};

/* The upload mapping fills fields of the registry itself; 0 for a chunk size means "not set". */
static int config_parse_upload(struct config_parser *p, const yaml_node_t *node, const char *key,
                               void *object)
{
    struct config_registry *r = &((struct config_registry_spec *)object)->registry;
    int rc = config_mapping(p, node, key, config_upload_fields,
                            sizeof(config_upload_fields) / sizeof(config_upload_fields[0]), object);
    if (rc < 0)
        return rc;
    if (r->upload_chunk_min != 0 && r->upload_chunk_max != 0 &&
        r->upload_chunk_max < r->upload_chunk_min) {
        char *child = config_key_join(key, "chunk_max");
        rc = config_fail(p, config_place(p, node, "chunk_max"), child,
                         "must be at least chunk_min (%" PRIu64 " bytes)", r->upload_chunk_min);
        free(child);
    }
    return rc;
}

static const struct config_field config_registry_fields[] = {
    {.name = "url", .kind = CONFIG_CUSTOM, .required = true, .parse = config_parse_url},
    {.name = "username",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_registry_spec, registry.username)},
    {.name = "password",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_registry_spec, registry.password),
     .check = config_check_inline_password},
    {.name = "password_env",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_registry_spec, password_env),
     .check = config_check_env_name},
    {.name = "password_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_registry_spec, password_file)},
    {.name = "insecure",
     .kind = CONFIG_BOOL,
     .offset = offsetof(struct config_registry_spec, registry.insecure)},
    {.name = "ca_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_registry_spec, registry.ca_file)},
    {.name = "cert_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_registry_spec, registry.cert_file)},
    {.name = "key_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_registry_spec, registry.key_file)},
    {.name = "max_concurrency",
     .kind = CONFIG_INT,
     .offset = offsetof(struct config_registry_spec, registry.max_concurrency),
     .min = 0,
     .max = CONFIG_MAX_REGISTRY_CONCURRENCY},
    {.name = "poll",
     .kind = CONFIG_BOOL,
     .offset = offsetof(struct config_registry_spec, registry.poll)},
    {.name = "repositories",
     .kind = CONFIG_STRINGS,
     .offset = offsetof(struct config_registry_spec, registry.repositories),
     .count_offset = offsetof(struct config_registry_spec, registry.n_repositories),
     .check = config_check_repository},
    {.name = "upload", .kind = CONFIG_CUSTOM, .parse = config_parse_upload},
    {.name = "rate_limit",
     .kind = CONFIG_SIZE64,
     .offset = offsetof(struct config_registry_spec, registry.rate_limit)},
    {.name = "stall_timeout",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_registry_spec, registry.stall_timeout_ms),
     .min = 1000,
     .max = 3600 * 1000},
};

/* Settle what one key alone cannot: credentials, and files that go together. */
static int config_registry_finish(struct config_parser *p, const yaml_node_t *node, const char *key,
                                  struct config_registry_spec *spec)
{
    struct config_registry *r = &spec->registry;
    const char *source = spec->password_file  ? "password_file"
                         : spec->password_env ? "password_env"
                         : r->password        ? "password"
                                              : NULL;
    char *child = source != NULL ? config_key_join(key, source) : NULL;
    const yaml_node_t *place = config_place(p, node, source != NULL ? source : "username");
    int rc = 0;

    if ((r->password != NULL) + (spec->password_env != NULL) + (spec->password_file != NULL) > 1)
        rc = config_fail(p, place, key, "password, password_env and password_file are exclusive");
    else if (source != NULL && r->username == NULL)
        rc = config_fail(p, place, child, "needs a username");
    else if (source == NULL && r->username != NULL)
        rc = config_fail(p, place, key, "username needs password_env, password_file or password");
    else if (spec->password_env != NULL)
        rc = config_read_env(p, place, child, spec->password_env, &r->password);
    else if (spec->password_file != NULL)
        rc = config_read_secret(p, place, child, spec->password_file, &r->password);
    else if (r->password != NULL)
        rc = config_check_placeholder(p, place, child, "the password", r->password);
    free(child);
    if (rc < 0)
        return rc;

    if ((r->cert_file == NULL) != (r->key_file == NULL))
        return config_fail(p, config_place(p, node, r->cert_file ? "cert_file" : "key_file"), key,
                           "cert_file and key_file go together");
    rc = config_check_readable(p, node, key, "ca_file", r->ca_file);
    if (rc == 0)
        rc = config_check_readable(p, node, key, "cert_file", r->cert_file);
    if (rc == 0)
        rc = config_check_readable(p, node, key, "key_file", r->key_file);
    return rc;
}

static int config_parse_registries(struct config_parser *p, const yaml_node_t *node,
                                   const char *key, void *object)
{
    struct config *c = &((struct config_top *)object)->config;
    int rc = 0;

    if (node->type != YAML_MAPPING_NODE)
        return config_fail(p, node, key, "must be a mapping of names to registries");
    size_t n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    c->registries = xcalloc(n > 0 ? n : 1, sizeof(*c->registries));
    for (size_t i = 0; i < n && rc == 0; i++) {
        yaml_node_pair_t *pair = &node->data.mapping.pairs.start[i];
        const yaml_node_t *name_node = NULL;
        const yaml_node_t *value = NULL;
        const char *name = NULL;
        rc = config_node(p, pair->key, key, &name_node);
        if (rc == 0)
            rc = config_string(p, name_node, key, &name);
        if (rc < 0)
            break;
        char *child = config_key_join(key, name);
        struct config_registry_spec spec = {
            .registry = {.poll = true, .stall_timeout_ms = CONFIG_DEFAULT_STALL_TIMEOUT_MS}};
        if (!config_name_valid(name))
            rc = config_fail(p, name_node, child,
                             "not a name (1 to %d of A-Z a-z 0-9 . _ -, starting with a letter "
                             "or digit)",
                             CONFIG_MAX_NAME);
        else if (config_registry_find(c, name) != NULL)
            rc = config_fail(p, name_node, child, "duplicate registry name");
        if (rc == 0)
            rc = config_node(p, pair->value, child, &value);
        if (rc == 0) {
            spec.registry.name = xstrdup(name);
            rc = config_mapping(p, value, child, config_registry_fields,
                                sizeof(config_registry_fields) / sizeof(config_registry_fields[0]),
                                &spec);
        }
        if (rc == 0)
            rc = config_registry_finish(p, value, child, &spec);
        free(spec.password_env);
        free(spec.password_file);
        free(child);
        if (rc == 0)
            c->registries[c->n_registries++] = spec.registry;
        else
            config_registry_release(&spec.registry);
    }
    return rc;
}

/* ---- Rules ---- */

static const struct config_field config_destination_fields[] = {
    {.name = "registry",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_destination, registry),
     .required = true,
     .check = config_check_registry_ref},
    {.name = "repository",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_destination, repository),
     .check = config_check_template},
};

/* The source registry and the destination are the same place when they share a host. */
static bool config_same_registry(const struct config *c, const char *a, const char *b)
{
    const struct config_registry *ra = config_registry_find(c, a);
    const struct config_registry *rb = config_registry_find(c, b);
    return ra == rb || (ra != NULL && rb != NULL && strcasecmp(ra->host, rb->host) == 0);
}

static int config_parse_destinations(struct config_parser *p, const yaml_node_t *node,
                                     const char *key, void *object)
{
    struct config_rule *rule = object;
    int rc = 0;

    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail(p, node, key, "must be a list");
    yaml_node_item_t *items = node->data.sequence.items.start;
    size_t n = (size_t)(node->data.sequence.items.top - items);
    if (n == 0)
        return config_fail(p, node, key, "must not be empty");
    rule->destinations = xcalloc(n, sizeof(*rule->destinations));
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *child = xasprintf("%s[%zu]", key, i);
        struct config_destination d = {0};
        const yaml_node_t *item = NULL;
        rc = config_node(p, items[i], child, &item);
        if (rc == 0)
            rc = config_mapping(
                p, item, child, config_destination_fields,
                sizeof(config_destination_fields) / sizeof(config_destination_fields[0]), &d);
        if (rc == 0 && d.repository == NULL)
            d.repository = xstrdup("{repo}");
        if (rc == 0 && strcmp(d.repository, "{repo}") == 0 &&
            config_same_registry(p->config, rule->source, d.registry))
            rc = config_fail(p, item, child,
                             "replicates every repository onto itself (same registry as the "
                             "source, repository \"{repo}\")");
        for (size_t j = 0; rc == 0 && j < rule->n_destinations; j++) {
            if (strcmp(rule->destinations[j].registry, d.registry) == 0 &&
                strcmp(rule->destinations[j].repository, d.repository) == 0)
                rc = config_fail(p, item, child, "duplicate of destinations[%zu]", j);
        }
        free(child);
        if (rc == 0) {
            rule->destinations[rule->n_destinations++] = d;
        } else {
            free(d.registry);
            free(d.repository);
        }
    }
    return rc;
}

static const struct config_field config_rule_fields[] = {
    {.name = "name",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_rule, name),
     .required = true,
     .check = config_check_rule_name},
    {.name = "source",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_rule, source),
     .required = true,
     .check = config_check_registry_ref},
    {.name = "repositories",
     .kind = CONFIG_STRINGS,
     .offset = offsetof(struct config_rule, repositories),
     .count_offset = offsetof(struct config_rule, n_repositories),
     .check = config_check_pattern},
    {.name = "tags",
     .kind = CONFIG_STRINGS,
     .offset = offsetof(struct config_rule, tags),
     .count_offset = offsetof(struct config_rule, n_tags),
     .check = config_check_pattern},
    {.name = "deletes", .kind = CONFIG_BOOL, .offset = offsetof(struct config_rule, deletes)},
    {.name = "referrers", .kind = CONFIG_BOOL, .offset = offsetof(struct config_rule, referrers)},
    {.name = "overwrite", .kind = CONFIG_BOOL, .offset = offsetof(struct config_rule, overwrite)},
    {.name = "platforms",
     .kind = CONFIG_STRINGS,
     .offset = offsetof(struct config_rule, platforms),
     .count_offset = offsetof(struct config_rule, n_platforms),
     .empty_ok = true,
     .check = config_check_platform},
    /* After source, which the destinations are checked against. */
    {.name = "destinations",
     .kind = CONFIG_CUSTOM,
     .required = true,
     .parse = config_parse_destinations},
};

/* A list of only exclusions would select nothing, which is never what was meant. */
static int config_check_includes(struct config_parser *p, const yaml_node_t *node, const char *key,
                                 const char *name, char **patterns, size_t n,
                                 const char *everything)
{
    for (size_t i = 0; i < n; i++) {
        if (patterns[i][0] != '!')
            return 0;
    }
    char *child = config_key_join(key, name);
    int rc = config_fail(p, config_place(p, node, name), child,
                         "selects nothing: add a pattern without '!' (\"%s\" for all the rest)",
                         everything);
    free(child);
    return rc;
}

static int config_parse_rules(struct config_parser *p, const yaml_node_t *node, const char *key,
                              void *object)
{
    struct config *c = &((struct config_top *)object)->config;
    int rc = 0;

    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail(p, node, key, "must be a list");
    yaml_node_item_t *items = node->data.sequence.items.start;
    size_t n = (size_t)(node->data.sequence.items.top - items);
    c->rules = xcalloc(n > 0 ? n : 1, sizeof(*c->rules));
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *child = xasprintf("%s[%zu]", key, i);
        struct config_rule rule = {.referrers = true, .overwrite = true};
        const yaml_node_t *item = NULL;
        rc = config_node(p, items[i], child, &item);
        if (rc == 0)
            rc = config_mapping(p, item, child, config_rule_fields,
                                sizeof(config_rule_fields) / sizeof(config_rule_fields[0]), &rule);
        if (rc == 0 && rule.repositories == NULL) {
            rule.repositories = xcalloc(1, sizeof(char *));
            rule.repositories[0] = xstrdup("**");
            rule.n_repositories = 1;
        }
        if (rc == 0 && rule.tags == NULL) {
            rule.tags = xcalloc(1, sizeof(char *));
            rule.tags[0] = xstrdup("*");
            rule.n_tags = 1;
        }
        if (rc == 0)
            rc = config_check_includes(p, item, child, "repositories", rule.repositories,
                                       rule.n_repositories, "**");
        if (rc == 0)
            rc = config_check_includes(p, item, child, "tags", rule.tags, rule.n_tags, "*");
        free(child);
        if (rc == 0)
            c->rules[c->n_rules++] = rule;
        else
            config_rule_release(&rule);
    }
    return rc;
}

/* ---- The top level ---- */

static const struct config_field config_retry_fields[] = {
    {.name = "attempts",
     .kind = CONFIG_INT,
     .offset = offsetof(struct config_top, config.retry_attempts),
     .min = 1,
     .max = CONFIG_MAX_RETRY_ATTEMPTS},
    {.name = "base",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_top, config.retry_base_ms),
     .min = 1},
    {.name = "max",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_top, config.retry_max_ms),
     .min = 1},
};

/*
 * Each side of the check may be a default, so the message names the key
 * that is in the file: max when it is, else base.
 */
static int config_parse_retry(struct config_parser *p, const yaml_node_t *node, const char *key,
                              void *object)
{
    struct config *c = &((struct config_top *)object)->config;
    int rc = config_mapping(p, node, key, config_retry_fields,
                            sizeof(config_retry_fields) / sizeof(config_retry_fields[0]), object);
    if (rc < 0 || c->retry_max_ms >= c->retry_base_ms)
        return rc;
    const yaml_node_t *max = config_lookup(p, node, "max");
    char *child = config_key_join(key, max != NULL ? "max" : "base");
    if (max != NULL)
        rc = config_fail(p, max, child, "must be at least base (%" PRIu64 "ms)", c->retry_base_ms);
    else
        rc = config_fail(p, config_place(p, node, "base"), child,
                         "must be at most max (%" PRIu64 "ms, the default)", c->retry_max_ms);
    free(child);
    return rc;
}

static const struct config_field config_circuit_fields[] = {
    {.name = "failures",
     .kind = CONFIG_INT,
     .offset = offsetof(struct config_top, config.circuit_failures),
     .min = 1,
     .max = CONFIG_MAX_CIRCUIT_FAILURES},
    {.name = "open_for",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_top, config.circuit_open_ms),
     .min = 1},
};

static int config_parse_circuit(struct config_parser *p, const yaml_node_t *node, const char *key,
                                void *object)
{
    return config_mapping(p, node, key, config_circuit_fields,
                          sizeof(config_circuit_fields) / sizeof(config_circuit_fields[0]), object);
}

/* A Host name of server_names: a name or an address ([v6] in brackets), without a port. */
static int config_check_server_name(struct config_parser *p, const yaml_node_t *node,
                                    const char *key, const char *value)
{
    char *with_port = xasprintf("%s:1", value);
    bool ok = config_split_listen(with_port, NULL, NULL) == 0;
    free(with_port);
    if (!ok)
        return config_fail(p, node, key,
                           "'%.*s' is not a host name or address ([v6] in brackets) without a port",
                           CONFIG_QUOTE_MAX, value);
    return 0;
}

/* OpenSSL asks for the passphrase of an encrypted key here: there is none. */
static int config_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return -1;
}

/*
 * The whole of a PEM file into *out, at most CONFIG_MAX_PEM_BYTES. A private
 * key (`secret`) that group or others may read is warned about, as a secret
 * file is, and every copy of its bytes is wiped.
 */
static int config_read_pem(struct config_parser *p, const yaml_node_t *node, const char *key,
                           const char *path, bool secret, char **out)
{
    char chunk[4096];
    struct buf contents;
    struct stat st;
    int rc = 0;

    buf_init(&contents, CONFIG_MAX_PEM_BYTES);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return config_fail(p, node, key, "cannot read %s: %s", path, strerror(errno));
    if (secret && fstat(fd, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0)
        log_warn("secret file is readable by group or others; chmod 600 it path=%s", path);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = config_fail(p, node, key, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if (buf_append(&contents, chunk, (size_t)n) < 0) {
            rc =
                config_fail(p, node, key, "%s is larger than %d bytes", path, CONFIG_MAX_PEM_BYTES);
            goto out;
        }
    }
    if (contents.len == 0 || memchr(contents.data, '\0', contents.len) != NULL) {
        rc = config_fail(p, node, key, "%s is not a PEM file", path);
        goto out;
    }
    *out = xstrndup(contents.data, contents.len);

out:
    secret_wipe(chunk, sizeof(chunk));
    if (contents.data != NULL && secret)
        secret_wipe(contents.data, contents.alloc);
    buf_release(&contents);
    close(fd);
    return rc;
}

static const struct config_field config_tls_fields[] = {
    {.name = "cert_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, config.tls_cert_file),
     .required = true},
    {.name = "key_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, config.tls_key_file),
     .required = true},
};

/*
 * tls: both files are read and checked here (OpenSSL parses them the way the
 * listener's GnuTLS will), so that a bad certificate is a config error, also
 * for --check-config, rather than a listener that does not start.
 */
static int config_parse_tls(struct config_parser *p, const yaml_node_t *node, const char *key,
                            void *object)
{
    struct config *c = &((struct config_top *)object)->config;
    X509 *cert = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    char *cert_key = config_key_join(key, "cert_file");
    char *key_key = config_key_join(key, "key_file");
    const yaml_node_t *cert_node = NULL;
    const yaml_node_t *key_node = NULL;

    int rc = config_mapping(p, node, key, config_tls_fields,
                            sizeof(config_tls_fields) / sizeof(config_tls_fields[0]), object);
    if (rc < 0)
        goto out;
    cert_node = config_place(p, node, "cert_file");
    key_node = config_place(p, node, "key_file");
    rc = config_read_pem(p, cert_node, cert_key, c->tls_cert_file, false, &c->tls_cert_pem);
    if (rc == 0)
        rc = config_read_pem(p, key_node, key_key, c->tls_key_file, true, &c->tls_key_pem);
    if (rc < 0)
        goto out;
    bio = BIO_new_mem_buf(c->tls_cert_pem, -1);
    cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, config_no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (cert == NULL) {
        rc = config_fail(p, cert_node, cert_key, "%s holds no PEM certificate", c->tls_cert_file);
        goto out;
    }
    bio = BIO_new_mem_buf(c->tls_key_pem, -1);
    pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, config_no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (pkey == NULL) {
        rc = config_fail(p, key_node, key_key,
                         "%s holds no PEM private key (an encrypted key is not supported)",
                         c->tls_key_file);
        goto out;
    }
    if (X509_check_private_key(cert, pkey) != 1) {
        rc = config_fail(p, key_node, key_key, "%s is not the key of %s", c->tls_key_file,
                         c->tls_cert_file);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
        log_warn("the tls certificate has expired path=%s", c->tls_cert_file);

out:
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(pkey);
    free(cert_key);
    free(key_key);
    return rc;
}

static const struct config_field config_top_fields[] = {
    {.name = "data_dir",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, config.data_dir)},
    {.name = "listen",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_top, config.listen),
     .check = config_check_listen},
    {.name = "webhook_token_env",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_top, webhook_token_env),
     .check = config_check_env_name},
    {.name = "webhook_token_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, webhook_token_file)},
    {.name = "api_token_env",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_top, api_token_env),
     .check = config_check_env_name},
    {.name = "api_token_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, api_token_file)},
    {.name = "api_token",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_top, config.api_token)},
    {.name = "metrics_token_env",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_top, metrics_token_env),
     .check = config_check_env_name},
    {.name = "metrics_token_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, metrics_token_file)},
    {.name = "metrics_token",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_top, config.metrics_token)},
    {.name = "server_names",
     .kind = CONFIG_STRINGS,
     .offset = offsetof(struct config_top, config.server_names),
     .count_offset = offsetof(struct config_top, config.n_server_names),
     .empty_ok = true,
     .check = config_check_server_name},
    {.name = "tls", .kind = CONFIG_CUSTOM, .parse = config_parse_tls},
    {.name = "max_connections_per_ip",
     .kind = CONFIG_INT,
     .offset = offsetof(struct config_top, config.max_connections_per_ip),
     .min = 1,
     .max = CONFIG_MAX_PER_IP},
    {.name = "request_body_budget",
     .kind = CONFIG_SIZE,
     .offset = offsetof(struct config_top, config.request_body_budget),
     .min = 1,
     .max = CONFIG_MAX_BODY_BUDGET},
    {.name = "webhook_max_body",
     .kind = CONFIG_SIZE,
     .offset = offsetof(struct config_top, config.webhook_max_body),
     .min = 1,
     .max = CONFIG_MAX_WEBHOOK_MAX_BODY},
    {.name = "poll_interval",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_top, config.poll_interval_ms)},
    {.name = "poll_concurrency",
     .kind = CONFIG_INT,
     .offset = offsetof(struct config_top, config.poll_concurrency),
     .min = 1,
     .max = CONFIG_MAX_POLL_CONCURRENCY},
    {.name = "retention",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_top, config.retention_ms),
     .min = 1},
    {.name = "spool_max",
     .kind = CONFIG_SIZE64,
     .offset = offsetof(struct config_top, config.spool_max_bytes),
     .min = (uint64_t)64 * 1024 * 1024,
     .max = (uint64_t)16 * 1024 * 1024 * 1024 * 1024},
    {.name = "engine_window",
     .kind = CONFIG_INT,
     .offset = offsetof(struct config_top, config.engine_window),
     .min = 1,
     .max = CONFIG_MAX_ENGINE_WINDOW},
    {.name = "retry", .kind = CONFIG_CUSTOM, .parse = config_parse_retry},
    {.name = "circuit", .kind = CONFIG_CUSTOM, .parse = config_parse_circuit},
    /* Before rules, which name registries. */
    {.name = "registries", .kind = CONFIG_CUSTOM, .parse = config_parse_registries},
    {.name = "rules", .kind = CONFIG_CUSTOM, .parse = config_parse_rules},
};

/*
 * A token of the top level, `key` ("api_token"): inline (*token, read by the
 * table), from the environment (`env`, the value of KEY_env) or from a file
 * (`file`, of KEY_file); at most one of the three.
 */
static int config_resolve_token(struct config_parser *p, const yaml_node_t *root, const char *key,
                                const char *env, const char *file, char **token)
{
    char *env_key = xasprintf("%s_env", key);
    char *file_key = xasprintf("%s_file", key);
    int rc = 0;

    if ((env != NULL) + (file != NULL) + (*token != NULL) > 1)
        rc = config_fail(p, config_place(p, root, key), key, "%s, %s and %s are exclusive", key,
                         env_key, file_key);
    else if (env != NULL)
        rc = config_read_env(p, config_place(p, root, env_key), env_key, env, token);
    else if (file != NULL)
        rc = config_read_secret(p, config_place(p, root, file_key), file_key, file, token);
    else if (*token != NULL && (*token)[0] == '\0')
        rc = config_fail(p, config_place(p, root, key), key, "empty token");
    else if (*token != NULL)
        rc = config_check_placeholder(p, config_place(p, root, key), key, "the token", *token);
    if (env == NULL && file == NULL && *token != NULL)
        p->inline_password = true;
    free(env_key);
    free(file_key);
    return rc;
}

static int config_top_finish(struct config_parser *p, const yaml_node_t *root,
                             struct config_top *top, const struct stat *st)
{
    struct config *c = &top->config;
    int rc = 0;

    if (top->webhook_token_env != NULL && top->webhook_token_file != NULL)
        return config_fail(p, config_place(p, root, "webhook_token_file"), "webhook_token_file",
                           "webhook_token_env and webhook_token_file are exclusive");
    if (top->webhook_token_env != NULL)
        rc = config_read_env(p, config_place(p, root, "webhook_token_env"), "webhook_token_env",
                             top->webhook_token_env, &c->webhook_token);
    else if (top->webhook_token_file != NULL)
        rc = config_read_secret(p, config_place(p, root, "webhook_token_file"),
                                "webhook_token_file", top->webhook_token_file, &c->webhook_token);
    if (rc < 0)
        return rc;
    rc = config_resolve_token(p, root, "api_token", top->api_token_env, top->api_token_file,
                              &c->api_token);
    if (rc == 0)
        rc = config_resolve_token(p, root, "metrics_token", top->metrics_token_env,
                                  top->metrics_token_file, &c->metrics_token);
    if (rc < 0)
        return rc;
    if (c->request_body_budget < c->webhook_max_body)
        return config_fail(p, config_place(p, root, "request_body_budget"), "request_body_budget",
                           "must be at least webhook_max_body (%zu bytes)", c->webhook_max_body);
    if (c->data_dir == NULL)
        c->data_dir = config_path_join(c->dir, CONFIG_DEFAULT_DATA_DIR);
    if (p->inline_password && (st->st_mode & (S_IRGRP | S_IROTH)) != 0)
        log_warn(
            "config file holds an inline password or token and is readable by group or others; "
            "use the _env or _file keys, or chmod 600 it path=%s",
            c->path);
    return 0;
}

/* ---- Loading ---- */

static char *config_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return xstrdup(".");
    while (slash > path && slash[-1] == '/')
        slash--;
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

static int config_read_file(const char *path, struct buf *contents, struct stat *st, char **err)
{
    char chunk[16384];
    int rc = 0;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        *err = xasprintf("%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, st) < 0) {
        rc = -errno;
    } else if (S_ISDIR(st->st_mode)) {
        rc = -EISDIR;
    } else {
        for (;;) {
            ssize_t n = read(fd, chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = -errno;
                break;
            }
            if (n == 0)
                break;
            if (buf_append(contents, chunk, (size_t)n) < 0) {
                *err = xasprintf("%s: larger than %d bytes", path, CONFIG_MAX_BYTES);
                rc = FERRY_ETOOBIG;
                break;
            }
        }
    }
    if (rc < 0 && *err == NULL)
        *err = xasprintf("%s: cannot read: %s", path, strerror(-rc));
    secret_wipe(chunk, sizeof(chunk));
    close(fd);
    return rc;
}

/* libyaml's reader reports a byte offset; turn it into a line for the message. */
static size_t config_line_at(const struct buf *contents, size_t offset)
{
    size_t line = 1;
    for (size_t i = 0; i < offset && i < contents->len; i++) {
        if (contents->data[i] == '\n')
            line++;
    }
    return line;
}

static char *config_syntax_error(const char *path, const yaml_parser_t *parser,
                                 const struct buf *contents)
{
    char *err;
    if (parser->error == YAML_MEMORY_ERROR)
        err = xasprintf("%s: out of memory while parsing", path);
    else if (parser->error == YAML_READER_ERROR)
        err = xasprintf("%s:%zu: %s", path, config_line_at(contents, parser->problem_offset),
                        parser->problem ? parser->problem : "cannot read the text");
    else if (parser->context != NULL)
        err = xasprintf("%s:%zu: %s (%s)", path, parser->problem_mark.line + 1,
                        parser->problem ? parser->problem : "syntax error", parser->context);
    else
        err = xasprintf("%s:%zu: %s", path, parser->problem_mark.line + 1,
                        parser->problem ? parser->problem : "syntax error");
    config_sanitize(err);
    return err;
}

/* The document holds copies of every value, passwords included. */
static void config_document_wipe(yaml_document_t *document)
{
    for (yaml_node_t *node = document->nodes.start; node < document->nodes.top; node++) {
        if (node->type == YAML_SCALAR_NODE)
            secret_wipe(node->data.scalar.value, node->data.scalar.length);
    }
}

/* And so do the parser's input buffers. */
static void config_parser_wipe(yaml_parser_t *parser)
{
    if (parser->buffer.start != NULL)
        secret_wipe(parser->buffer.start, (size_t)(parser->buffer.end - parser->buffer.start));
    if (parser->raw_buffer.start != NULL)
        secret_wipe(parser->raw_buffer.start,
                    (size_t)(parser->raw_buffer.end - parser->raw_buffer.start));
}

int config_load(const char *path, struct config **out, char **err)
{
    struct config_parser p = {.path = path};
    struct config_top top = {0};
    struct buf contents;
    struct stat st;
    yaml_parser_t parser;
    yaml_document_t document;
    yaml_document_t extra;
    bool parser_ready = false;
    bool document_ready = false;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (err != NULL)
        *err = NULL;
    buf_init(&contents, CONFIG_MAX_BYTES);
    if (path == NULL || out == NULL) {
        p.err = xstrdup("config_load: path and out must not be NULL");
        rc = FERRY_EINVAL;
        goto out;
    }
    rc = config_read_file(path, &contents, &st, &p.err);
    if (rc < 0)
        goto out;

    if (!yaml_parser_initialize(&parser)) {
        p.err = xasprintf("%s: out of memory while parsing", path);
        rc = FERRY_EPARSE;
        goto out;
    }
    parser_ready = true;
    yaml_parser_set_input_string(
        &parser, (const unsigned char *)(contents.data ? contents.data : ""), contents.len);
    if (!yaml_parser_load(&parser, &document)) {
        p.err = config_syntax_error(path, &parser, &contents);
        rc = FERRY_EPARSE;
        goto out;
    }
    document_ready = true;
    if (!yaml_parser_load(&parser, &extra)) {
        p.err = config_syntax_error(path, &parser, &contents);
        rc = FERRY_EPARSE;
        goto out;
    }
    yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
    if (extra_root != NULL)
        p.err = xasprintf("%s:%zu: only one YAML document is allowed", path,
                          extra_root->start_mark.line + 1);
    config_document_wipe(&extra);
    yaml_document_delete(&extra);
    if (p.err != NULL) {
        rc = FERRY_EINVAL;
        goto out;
    }

    p.document = &document;
    p.config = &top.config;
    p.visited = xcalloc((size_t)(document.nodes.top - document.nodes.start) + 1, 1);
    top.config.path = xstrdup(path);
    top.config.dir = config_dirname(path);
    top.config.listen = xstrdup(CONFIG_DEFAULT_LISTEN);
    top.config.webhook_max_body = CONFIG_DEFAULT_WEBHOOK_MAX_BODY;
    top.config.max_connections_per_ip = CONFIG_DEFAULT_PER_IP;
    top.config.request_body_budget = CONFIG_DEFAULT_BODY_BUDGET;
    top.config.poll_interval_ms = CONFIG_DEFAULT_POLL_INTERVAL_MS;
    top.config.poll_concurrency = CONFIG_DEFAULT_POLL_CONCURRENCY;
    top.config.retention_ms = CONFIG_DEFAULT_RETENTION_MS;
    top.config.spool_max_bytes = CONFIG_DEFAULT_SPOOL_MAX;
    top.config.engine_window = CONFIG_DEFAULT_ENGINE_WINDOW;
    top.config.retry_attempts = CONFIG_DEFAULT_RETRY_ATTEMPTS;
    top.config.retry_base_ms = CONFIG_DEFAULT_RETRY_BASE_MS;
    top.config.retry_max_ms = CONFIG_DEFAULT_RETRY_MAX_MS;
    top.config.circuit_failures = CONFIG_DEFAULT_CIRCUIT_FAILURES;
    top.config.circuit_open_ms = CONFIG_DEFAULT_CIRCUIT_OPEN_MS;

    /* An empty file (or document) is an empty mapping: every default. */
    yaml_node_t *root = yaml_document_get_root_node(&document);
    if (root != NULL && !config_is_null(root)) {
        const yaml_node_t *visited_root = NULL;
        rc = config_node(&p, 1, "", &visited_root);
        if (rc == 0)
            rc = config_mapping(&p, root, "", config_top_fields,
                                sizeof(config_top_fields) / sizeof(config_top_fields[0]), &top);
        if (rc < 0)
            goto out;
    }
    rc = config_top_finish(&p, root, &top, &st);
    if (rc < 0)
        goto out;

    *out = xmalloc(sizeof(**out));
    **out = top.config;
    memset(&top.config, 0, sizeof(top.config));

out:
    if (rc < 0) {
        config_release(&top.config);
        if (err != NULL) {
            *err = p.err;
            p.err = NULL;
        }
    }
    free(p.err);
    free(top.webhook_token_env);
    free(top.webhook_token_file);
    free(top.api_token_env);
    free(top.api_token_file);
    free(top.metrics_token_env);
    free(top.metrics_token_file);
    free(p.visited);
    if (document_ready) {
        config_document_wipe(&document);
        yaml_document_delete(&document);
    }
    if (parser_ready) {
        config_parser_wipe(&parser);
        yaml_parser_delete(&parser);
    }
    if (contents.data != NULL)
        secret_wipe(contents.data, contents.alloc);
    buf_release(&contents);
    return rc;
}

int config_data_dir_prepare(const struct config *c)
{
    struct stat st;
    int rc = fs_mkdir_p(c->data_dir, 0700);
    if (rc < 0)
        return rc;
    if (stat(c->data_dir, &st) < 0)
        return -errno;
    if ((st.st_mode & 077) == 0)
        return 0;
    /* Not fatal: the journal below it is made private on its own. */
    if (chmod(c->data_dir, 0700) < 0)
        log_warn("data_dir is open to group or others and cannot be changed: %s path=%s",
                 strerror(errno), c->data_dir);
    else
        log_warn("data_dir was open to group or others; made it 0700 path=%s was=%03o", c->data_dir,
                 (unsigned)(st.st_mode & 0777));
    return 0;
}

/* ---- Queries ---- */

const struct config_registry *config_registry_find(const struct config *c, const char *name)
{
    if (c == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < c->n_registries; i++) {
        if (strcmp(c->registries[i].name, name) == 0)
            return &c->registries[i];
    }
    return NULL;
}

bool config_rule_selects(const struct config_rule *rule, const char *repository, const char *tag)
{
    if (rule == NULL || repository == NULL)
        return false;
    if (!glob_select(rule->repositories, rule->n_repositories, repository))
        return false;
    return tag == NULL || glob_select(rule->tags, rule->n_tags, tag);
}

bool config_repository_selected(const struct config *c, const char *source, const char *repository)
{
    if (c == NULL || source == NULL)
        return false;
    for (size_t i = 0; i < c->n_rules; i++) {
        if (strcmp(c->rules[i].source, source) == 0 &&
            config_rule_selects(&c->rules[i], repository, NULL))
            return true;
    }
    return false;
}

bool config_tag_selected(const struct config *c, const char *source, const char *repository,
                         const char *tag)
{
    if (c == NULL || source == NULL || tag == NULL)
        return false;
    for (size_t i = 0; i < c->n_rules; i++) {
        if (strcmp(c->rules[i].source, source) == 0 &&
            config_rule_selects(&c->rules[i], repository, tag))
            return true;
    }
    return false;
}

bool config_sends(const struct config *c, const char *source, const char *repository,
                  const char *tag, bool is_delete, const char *dest, const char *dst_repo)
{
    if (c == NULL || source == NULL || dest == NULL || dst_repo == NULL)
        return false;
    for (size_t r = 0; r < c->n_rules; r++) {
        const struct config_rule *rule = &c->rules[r];
        if (strcmp(rule->source, source) != 0 || !config_rule_selects(rule, repository, tag) ||
            (is_delete && !rule->deletes))
            continue;
        for (size_t d = 0; d < rule->n_destinations; d++) {
            if (strcmp(rule->destinations[d].registry, dest) != 0)
                continue;
            char *repo = config_destination_repository(&rule->destinations[d], repository);
            bool same = repo != NULL && strcmp(repo, dst_repo) == 0;
            free(repo);
            if (same)
                return true;
        }
    }
    return false;
}

/* ---- Values ---- */

/*
 * A whole decimal number at the start of `text`. Sets *end past its digits
 * and returns 0 with *value, or FERRY_ETOOBIG when it passes UINT64_MAX (the
 * caller still looks at what follows); FERRY_EPARSE when there is no digit.
 */
static int config_parse_number(const char *text, uint64_t *value, const char **end)
{
    uint64_t n = 0;
    bool overflow = false;
    const char *c = text;
    for (; *c >= '0' && *c <= '9'; c++) {
        uint64_t digit = (uint64_t)(*c - '0');
        if (n > (UINT64_MAX - digit) / 10)
            overflow = true;
        else
            n = n * 10 + digit;
    }
    if (c == text)
        return FERRY_EPARSE;
    *value = n;
    *end = c;
    return overflow ? FERRY_ETOOBIG : 0;
}

int config_parse_duration(const char *text, uint64_t *ms)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000}};
    uint64_t n = 0;
    const char *suffix = NULL;

    if (text == NULL || ms == NULL)
        return FERRY_EINVAL;
    if (strcmp(text, "0") == 0) {
        *ms = 0;
        return 0;
    }
    int rc = config_parse_number(text, &n, &suffix);
    if (rc == FERRY_EPARSE)
        return rc;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(suffix, units[i].suffix) != 0)
            continue;
        if (rc < 0 || n > UINT64_MAX / units[i].ms)
            return FERRY_ETOOBIG;
        *ms = n * units[i].ms;
        return 0;
    }
    return FERRY_EPARSE;
}

int config_parse_size(const char *text, size_t *bytes)
{
    static const struct {
        const char *suffix;
        uint64_t bytes;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"K", (uint64_t)1 << 10},
        {"KiB", (uint64_t)1 << 10},
        {"M", (uint64_t)1 << 20},
        {"MiB", (uint64_t)1 << 20},
        {"G", (uint64_t)1 << 30},
        {"GiB", (uint64_t)1 << 30},
    };
    uint64_t n = 0;
    const char *suffix = NULL;

    if (text == NULL || bytes == NULL)
        return FERRY_EINVAL;
    int rc = config_parse_number(text, &n, &suffix);
    if (rc == FERRY_EPARSE)
        return rc;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(suffix, units[i].suffix) != 0)
            continue;
        if (rc < 0 || n > SIZE_MAX / units[i].bytes)
            return FERRY_ETOOBIG;
        *bytes = (size_t)(n * units[i].bytes);
        return 0;
    }
    return FERRY_EPARSE;
}

static bool config_host_char(char c, bool bracketed)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.')
        return true;
    if (bracketed)
        return c == ':';
    return (c >= 'g' && c <= 'z') || (c >= 'G' && c <= 'Z') || c == '-';
}

int config_split_listen(const char *text, char **host, int *port)
{
    const char *host_start = text;
    const char *host_end;
    const char *port_text;
    bool bracketed = false;

    if (text == NULL)
        return FERRY_EINVAL;
    if (text[0] == '[') {
        bracketed = true;
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (host_end == NULL || host_end[1] != ':')
            return FERRY_EPARSE;
        port_text = host_end + 2;
    } else {
        host_end = strrchr(text, ':');
        if (host_end == NULL)
            return FERRY_EPARSE;
        port_text = host_end + 1;
    }
    if (host_end == host_start)
        return FERRY_EPARSE;
    for (const char *c = host_start; c < host_end; c++) {
        if (!config_host_char(*c, bracketed))
            return FERRY_EPARSE;
    }
    long value = 0;
    size_t digits = strlen(port_text);
    if (digits == 0 || digits > 5)
        return FERRY_EPARSE;
    for (const char *c = port_text; *c != '\0'; c++) {
        if (*c < '0' || *c > '9')
            return FERRY_EPARSE;
        value = value * 10 + (*c - '0');
    }
    if (value < 1 || value > 65535)
        return FERRY_EPARSE;
    if (host != NULL)
        *host = xstrndup(host_start, (size_t)(host_end - host_start));
    if (port != NULL)
        *port = (int)value;
    return 0;
}

char *config_destination_repository(const struct config_destination *d, const char *repository)
{
    struct buf out;

    if (d == NULL || d->repository == NULL || !reference_repository_valid(repository))
        return NULL;
    const char *slash = strrchr(repository, '/');
    const char *name = slash != NULL ? slash + 1 : repository;
    buf_init(&out, REFERENCE_MAX_NAME);
    int rc = 0;
    for (const char *t = d->repository; *t != '\0' && rc == 0;) {
        if (strncmp(t, "{repo}", 6) == 0) {
            rc = buf_append_str(&out, repository);
            t += 6;
        } else if (strncmp(t, "{name}", 6) == 0) {
            rc = buf_append_str(&out, name);
            t += 6;
        } else {
            rc = buf_append(&out, t, 1);
            t++;
        }
    }
    char *result = buf_detach(&out, NULL);
    if (rc < 0 || !reference_repository_valid(result)) {
        free(result);
        return NULL;
    }
    return result;
}
