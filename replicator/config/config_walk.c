/*
 * config_walk.c: the generic half of the config loader. Reads the file under
 * its cap, parses its one YAML document with libyaml and walks the tree
 * against tables of fields (config_int.h): scalars of every kind, lists,
 * nested mappings, unknown and duplicate keys, aliases. Knows nothing of
 * Ferry's keys; config.c and config_schema.c hold those. Every buffer that
 * held the file (the read chunks, the document, libyaml's input buffers) is
 * wiped before it is freed: the file may hold passwords.
 */
#include "config/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errors.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"

/* ---- Reading the file ---- */

int config_file_read(const char *path, bool first_line, struct buf *contents, struct stat *st,
                     bool *opened)
{
    struct stat own;
    int rc = 0;

    if (st == NULL)
        st = &own;
    if (opened != NULL)
        *opened = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (opened != NULL)
        *opened = true;
    if (fstat(fd, st) < 0)
        rc = -errno;
    else if (S_ISDIR(st->st_mode))
        rc = -EISDIR;
    else
        rc = fs_read_fd(fd, first_line, contents);
    /* Only read from: a failed close loses nothing. */
    if (close(fd) < 0)
        log_debug("config cannot close path=%s: %s", path, strerror(errno));
    return rc;
}

/* Messages are one printable line whatever the file holds. */
static void config_sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
    }
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

static int config_yaml_read(struct config_yaml *y, const char *path, char **err)
{
    bool opened = false;
    int rc = config_file_read(path, false, &y->contents, &y->st, &opened);
    if (rc == FERRY_ETOOBIG)
        *err = xasprintf("%s: larger than %d bytes", path, CONFIG_MAX_BYTES);
    else if (rc < 0)
        *err = xasprintf("%s: cannot %s: %s", path, opened ? "read" : "open", strerror(-rc));
    return rc;
}

/* The document after the first must be empty: there is only one configuration. */
static int config_yaml_no_second(struct config_yaml *y, const char *path, char **err)
{
    yaml_document_t extra;
    if (!yaml_parser_load(&y->parser, &extra)) {
        *err = config_syntax_error(path, &y->parser, &y->contents);
        return FERRY_EPARSE;
    }
    int rc = 0;
    yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
    if (extra_root != NULL) {
        *err = xasprintf("%s:%zu: only one YAML document is allowed", path,
                         extra_root->start_mark.line + 1);
        rc = FERRY_EINVAL;
    }
    config_document_wipe(&extra);
    yaml_document_delete(&extra);
    return rc;
}

int config_yaml_load(struct config_yaml *y, const char *path, char **err)
{
    memset(y, 0, sizeof(*y));
    buf_init(&y->contents, CONFIG_MAX_BYTES);
    int rc = config_yaml_read(y, path, err);
    if (rc < 0)
        return rc;
    if (!yaml_parser_initialize(&y->parser)) {
        *err = xasprintf("%s: out of memory while parsing", path);
        return FERRY_EPARSE;
    }
    y->parser_ready = true;
    yaml_parser_set_input_string(&y->parser,
                                 (const unsigned char *)(y->contents.data ? y->contents.data : ""),
                                 y->contents.len);
    if (!yaml_parser_load(&y->parser, &y->document)) {
        *err = config_syntax_error(path, &y->parser, &y->contents);
        return FERRY_EPARSE;
    }
    y->document_ready = true;
    return config_yaml_no_second(y, path, err);
}

void config_yaml_release(struct config_yaml *y)
{
    if (y->document_ready) {
        config_document_wipe(&y->document);
        yaml_document_delete(&y->document);
    }
    if (y->parser_ready) {
        config_parser_wipe(&y->parser);
        yaml_parser_delete(&y->parser);
    }
    if (y->contents.data != NULL)
        secret_wipe(y->contents.data, y->contents.alloc);
    buf_release(&y->contents);
    y->document_ready = false;
    y->parser_ready = false;
}

/* ---- Errors ---- */

static int config_vfail(struct config_parser *p, const yaml_node_t *node, const char *key,
                        const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static int config_vfail(struct config_parser *p, const yaml_node_t *node, const char *key,
                        const char *fmt, va_list ap)
{
    if (p->err != NULL)
        return FERRY_EINVAL;
    char *problem = xvasprintf(fmt, ap);
    size_t line = node != NULL ? node->start_mark.line + 1 : 1;
    if (key != NULL && key[0] != '\0')
        p->err = xasprintf("%s:%zu: %s: %s", p->path, line, key, problem);
    else
        p->err = xasprintf("%s:%zu: %s", p->path, line, problem);
    config_sanitize(p->err);
    free(problem);
    return FERRY_EINVAL;
}

int config_fail(struct config_parser *p, const yaml_node_t *node, const char *key, const char *fmt,
                ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = config_vfail(p, node, key, fmt, ap);
    va_end(ap);
    return rc;
}

char *config_key_join(const char *parent, const char *name)
{
    if (parent[0] == '\0')
        return xasprintf("%.*s", CONFIG_QUOTE_MAX, name);
    return xasprintf("%s.%.*s", parent, CONFIG_QUOTE_MAX, name);
}

int config_fail_at(struct config_parser *p, const yaml_node_t *mapping, const char *key,
                   const char *name, const char *fmt, ...)
{
    char *child = config_key_join(key, name);
    va_list ap;
    va_start(ap, fmt);
    int rc = config_vfail(p, config_place(p, mapping, name), child, fmt, ap);
    va_end(ap);
    free(child);
    return rc;
}

/* ---- Walking the document ---- */

void config_parser_init(struct config_parser *p, struct config_yaml *y, const char *path,
                        const char *dir)
{
    p->path = path;
    p->dir = dir;
    p->document = &y->document;
    p->visited = xcalloc((size_t)(y->document.nodes.top - y->document.nodes.start) + 1, 1);
}

/*
 * libyaml resolves an alias to the node its anchor names, so a node reached
 * twice was reached through an alias; refusing those keeps a small file from
 * expanding into a huge configuration ("billion laughs").
 */
int config_node(struct config_parser *p, int id, const char *key, const yaml_node_t **out)
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

int config_string(struct config_parser *p, const yaml_node_t *node, const char *key,
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

/*
 * A CONFIG_DURATION (milliseconds) or CONFIG_SIZE(64) (bytes) value: a
 * string of config_parse_duration()'s or config_parse_size()'s grammar, in
 * the field's range.
 */
static int config_quantity(struct config_parser *p, const struct config_field *f,
                           const yaml_node_t *node, const char *key, uint64_t *out)
{
    bool duration = f->kind == CONFIG_DURATION;
    const char *text = NULL;
    uint64_t value = 0;
    size_t bytes = 0;
    int rc = config_string(p, node, key, &text);
    if (rc < 0)
        return rc;
    if (duration)
        rc = config_parse_duration(text, &value);
    else if ((rc = config_parse_size(text, &bytes)) == 0)
        value = bytes;
    if (rc < 0)
        return config_fail(p, node, key, "'%.*s' is not %s", CONFIG_QUOTE_MAX, text,
                           duration ? "a duration (a whole number followed by ms, s, m, h or d, "
                                      "or 0)"
                                    : "a size (a whole number of bytes, optionally followed by "
                                      "B, K, KiB, M, MiB, G or GiB)");
    if (duration && value < f->min)
        return config_fail(p, node, key, "must be at least %" PRIu64 "ms", f->min);
    if (duration && f->max != 0 && value > f->max)
        return config_fail(p, node, key, "must be at most %" PRIu64 "ms", f->max);
    if (!duration && (value < f->min || (f->max != 0 && value > f->max)))
        return config_fail(p, node, key, "must be between %" PRIu64 " and %" PRIu64 " bytes",
                           f->min, f->max);
    *out = value;
    return 0;
}

char *config_path_join(const char *dir, const char *path)
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

void config_strings_free(char **strings, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(strings[i]);
    free(strings);
}

int config_sequence(struct config_parser *p, const yaml_node_t *node, const char *key,
                    bool empty_ok, yaml_node_item_t **items, size_t *n)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail(p, node, key, "must be a list");
    *items = node->data.sequence.items.start;
    *n = (size_t)(node->data.sequence.items.top - *items);
    if (*n == 0 && !empty_ok)
        return config_fail(p, node, key, "must not be empty");
    return 0;
}

static int config_strings(struct config_parser *p, const yaml_node_t *node, const char *key,
                          config_check_fn check, bool empty_ok, char ***out, size_t *n_out)
{
    yaml_node_item_t *start = NULL;
    size_t n = 0;
    int rc = config_sequence(p, node, key, empty_ok, &start, &n);
    if (rc < 0)
        return rc;

    char **strings = n > 0 ? xcalloc(n, sizeof(*strings)) : NULL;
    size_t filled = 0;
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
    uint64_t quantity = 0;
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
        *slot = f->kind == CONFIG_PATH ? config_path_join(p->dir, text) : xstrdup(text);
        return 0;
    }
    case CONFIG_BOOL:
        return config_bool(p, node, key, (bool *)(base + f->offset));
    case CONFIG_INT:
        return config_int(p, node, key, f->min, f->max, (int *)(base + f->offset));
    case CONFIG_DURATION:
    case CONFIG_SIZE64:
    case CONFIG_SIZE:
        rc = config_quantity(p, f, node, key, &quantity);
        if (rc == 0 && f->kind == CONFIG_SIZE)
            *(size_t *)(base + f->offset) = (size_t)quantity;
        else if (rc == 0)
            *(uint64_t *)(base + f->offset) = quantity;
        return rc;
    case CONFIG_STRINGS:
        return config_strings(p, node, key, f->check, f->empty_ok, (char ***)(base + f->offset),
                              (size_t *)(base + f->count_offset));
    case CONFIG_CUSTOM:
        return f->parse(p, node, key, object);
    }
    return config_fail(p, node, key, "cannot be read");
}

/* The value of each key of mapping `node` into values[], by the field it names. */
static int config_mapping_collect(struct config_parser *p, const yaml_node_t *node, const char *key,
                                  const struct config_field *fields, size_t n_fields,
                                  const yaml_node_t **values)
{
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const yaml_node_t *name_node = NULL;
        int rc = config_node(p, pair->key, key, &name_node);
        if (rc < 0)
            return rc;
        if (name_node->type != YAML_SCALAR_NODE)
            return config_fail(p, name_node, key, "keys must be strings");
        const char *name = (const char *)name_node->data.scalar.value;
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
    return 0;
}

int config_mapping(struct config_parser *p, const yaml_node_t *node, const char *key,
                   const struct config_field *fields, size_t n_fields, void *object)
{
    const yaml_node_t *values[CONFIG_MAX_FIELDS] = {0};

    if (node->type != YAML_MAPPING_NODE)
        return config_fail(p, node, key,
                           key[0] == '\0' ? "the configuration must be a mapping"
                                          : "must be a mapping");
    int rc = config_mapping_collect(p, node, key, fields, n_fields, values);
    if (rc < 0)
        return rc;
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

int config_walk_root(struct config_parser *p, const struct config_field *fields, size_t n_fields,
                     void *object, const yaml_node_t **root)
{
    /* An empty file (or document) is an empty mapping: every default. */
    *root = yaml_document_get_root_node(p->document);
    if (*root == NULL || config_is_null(*root))
        return 0;
    const yaml_node_t *visited_root = NULL;
    int rc = config_node(p, 1, "", &visited_root);
    if (rc < 0)
        return rc;
    return config_mapping(p, *root, "", fields, n_fields, object);
}

const yaml_node_t *config_lookup(struct config_parser *p, const yaml_node_t *node, const char *name)
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

const yaml_node_t *config_place(struct config_parser *p, const yaml_node_t *node, const char *name)
{
    const yaml_node_t *value = config_lookup(p, node, name);
    return value != NULL ? value : node;
}
