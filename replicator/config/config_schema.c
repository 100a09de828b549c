/*
 * config_schema.c: Ferry's tables for the registries: and rules: of the
 * config file, the checks of their values, and what is settled once a whole
 * registry or rule has been read (credentials, files that go together,
 * destinations that would copy a registry onto itself). config.c holds the
 * top level that leads here.
 */
#include "config/config_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/reference.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "config/glob.h"

/* A registry as written: the registry plus where its password comes from. */
struct config_registry_spec {
    struct config_registry registry;
    char *password_env;
    char *password_file;
};

void config_registry_release(struct config_registry *r)
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
    free(r->password_file);
    free(r->credential_helper);
    free(r->docker_config);
    config_strings_free(r->create_repository, r->n_create_repository);
    memset(r, 0, sizeof(*r));
}

void config_rule_release(struct config_rule *rule)
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

/* ---- Checks of single values ---- */

/* A credential helper's name: the end of a program name, docker-credential-NAME. */
static int config_check_helper(struct config_parser *p, const yaml_node_t *node, const char *key,
                               const char *value)
{
    bool ok = value[0] != '\0' && strlen(value) <= CONFIG_MAX_NAME;
    for (const char *c = value; ok && *c != '\0'; c++)
        ok = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
             *c == '-' || *c == '_' || *c == '.';
    if (!ok)
        return config_fail(p, node, key,
                           "not a helper name (1 to %d of A-Z a-z 0-9 . _ -; Ferry runs "
                           "docker-credential-NAME from PATH)",
                           CONFIG_MAX_NAME);
    return 0;
}

int config_check_env_name(struct config_parser *p, const yaml_node_t *node, const char *key,
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
    bool no_port = len > 0 && (host[len - 1] == ']' || strchr(host, ':') == NULL);
    bool ok = no_port ? config_host_valid(host) : config_split_listen(host, NULL, NULL) == 0;
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
    int rc = config_mapping(p, node, key, CONFIG_FIELDS(config_upload_fields), object);
    if (rc < 0)
        return rc;
    if (r->upload_chunk_min != 0 && r->upload_chunk_max != 0 &&
        r->upload_chunk_max < r->upload_chunk_min)
        return config_fail_at(p, node, key, "chunk_max",
                              "must be at least chunk_min (%" PRIu64 " bytes)",
                              r->upload_chunk_min);
    return 0;
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
    {.name = "webhooks",
     .kind = CONFIG_BOOL,
     .offset = offsetof(struct config_registry_spec, registry.webhooks)},
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
     .min = CONFIG_MIN_STALL_TIMEOUT_MS,
     .max = CONFIG_MAX_STALL_TIMEOUT_MS},
    {.name = "credential_helper",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_registry_spec, registry.credential_helper),
     .check = config_check_helper},
    {.name = "create_repository",
     .kind = CONFIG_STRINGS,
     .offset = offsetof(struct config_registry_spec, registry.create_repository),
     .count_offset = offsetof(struct config_registry_spec, registry.n_create_repository)},
    {.name = "command_timeout",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_registry_spec, registry.command_timeout_ms),
     .min = CONFIG_MIN_COMMAND_TIMEOUT_MS,
     .max = CONFIG_MAX_COMMAND_TIMEOUT_MS},
};

/* The registry's password, from the one of password, password_env and password_file given. */
static int config_registry_password(struct config_parser *p, const yaml_node_t *node,
                                    const char *key, struct config_registry_spec *spec)
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
    else if (r->credential_helper != NULL && (source != NULL || r->username != NULL))
        rc = config_fail(p, config_place(p, node, "credential_helper"), key,
                         "credential_helper and username/password are exclusive");
    else if (source == NULL && r->username != NULL)
        rc = config_fail(p, place, key, "username needs password_env, password_file or password");
    else if (spec->password_env != NULL)
        rc = config_secret_from_env(p, place, child, spec->password_env, &r->password);
    else if (spec->password_file != NULL)
        rc = config_secret_from_file(p, place, child, spec->password_file, &r->password);
    else if (r->password != NULL)
        rc = config_secret_check_placeholder(p, place, child, "the password", r->password);
    if (rc == 0 && spec->password_file != NULL)
        r->password_file = xstrdup(spec->password_file);
    free(child);
    return rc;
}

static int config_check_readable(struct config_parser *p, const yaml_node_t *mapping,
                                 const char *key, const char *name, const char *path)
{
    if (path == NULL || access(path, R_OK) == 0)
        return 0;
    int error = errno;
    return config_fail_at(p, mapping, key, name, "cannot read %s: %s", path, strerror(error));
}

/* Settle what one key alone cannot: credentials, and files that go together. */
static int config_registry_finish(struct config_parser *p, const yaml_node_t *node, const char *key,
                                  struct config_registry_spec *spec)
{
    struct config_registry *r = &spec->registry;
    int rc = config_registry_password(p, node, key, spec);
    if (rc < 0)
        return rc;
    if (r->n_create_repository > CONFIG_MAX_HOOK_ARGS)
        return config_fail(p, config_place(p, node, "create_repository"), key,
                           "create_repository: at most %d arguments", CONFIG_MAX_HOOK_ARGS);
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

/* One registry: its name out of `pair`, then its mapping. Fills *spec (the caller frees it). */
static int config_parse_registry(struct config_parser *p, const yaml_node_pair_t *pair,
                                 const char *key, struct config_registry_spec *spec)
{
    const yaml_node_t *name_node = NULL;
    const yaml_node_t *value = NULL;
    const char *name = NULL;
    int rc = config_node(p, pair->key, key, &name_node);
    if (rc == 0)
        rc = config_string(p, name_node, key, &name);
    if (rc < 0)
        return rc;
    char *child = config_key_join(key, name);
    if (!config_name_valid(name))
        rc = config_fail(p, name_node, child,
                         "not a name (1 to %d of A-Z a-z 0-9 . _ -, starting with a letter "
                         "or digit)",
                         CONFIG_MAX_NAME);
    else if (config_registry_find(p->config, name) != NULL)
        rc = config_fail(p, name_node, child, "duplicate registry name");
    if (rc == 0)
        rc = config_node(p, pair->value, child, &value);
    if (rc == 0) {
        spec->registry.name = xstrdup(name);
        rc = config_mapping(p, value, child, CONFIG_FIELDS(config_registry_fields), spec);
    }
    if (rc == 0)
        rc = config_registry_finish(p, value, child, spec);
    free(child);
    return rc;
}

int config_parse_registries(struct config_parser *p, const yaml_node_t *node, const char *key,
                            void *object)
{
    struct config *c = &((struct config_top *)object)->config;
    int rc = 0;

    if (node->type != YAML_MAPPING_NODE)
        return config_fail(p, node, key, "must be a mapping of names to registries");
    size_t n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    c->registries = xcalloc(n > 0 ? n : 1, sizeof(*c->registries));
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct config_registry_spec spec = {
            .registry = {.poll = CONFIG_DEFAULT_REGISTRY_POLL,
                         .upload_mode = CONFIG_DEFAULT_UPLOAD_MODE,
                         .stall_timeout_ms = CONFIG_DEFAULT_STALL_TIMEOUT_MS,
                         .command_timeout_ms = CONFIG_DEFAULT_COMMAND_TIMEOUT_MS}};
        rc = config_parse_registry(p, &node->data.mapping.pairs.start[i], key, &spec);
        free(spec.password_env);
        free(spec.password_file);
        if (rc == 0 && c->docker_config != NULL)
            spec.registry.docker_config = xstrdup(c->docker_config);
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

/* One destination of `rule` into *d (the caller frees it), checked against those before it. */
static int config_parse_destination(struct config_parser *p, int id, const char *key,
                                    const struct config_rule *rule, struct config_destination *d)
{
    const yaml_node_t *item = NULL;
    int rc = config_node(p, id, key, &item);
    if (rc == 0)
        rc = config_mapping(p, item, key, CONFIG_FIELDS(config_destination_fields), d);
    if (rc < 0)
        return rc;
    if (d->repository == NULL)
        d->repository = xstrdup(CONFIG_DEFAULT_DESTINATION_REPOSITORY);
    if (strcmp(d->repository, "{repo}") == 0 &&
        config_same_registry(p->config, rule->source, d->registry))
        return config_fail(p, item, key,
                           "replicates every repository onto itself (same registry as the "
                           "source, repository \"{repo}\")");
    for (size_t j = 0; j < rule->n_destinations; j++) {
        if (strcmp(rule->destinations[j].registry, d->registry) == 0 &&
            strcmp(rule->destinations[j].repository, d->repository) == 0)
            return config_fail(p, item, key, "duplicate of destinations[%zu]", j);
    }
    return 0;
}

static int config_parse_destinations(struct config_parser *p, const yaml_node_t *node,
                                     const char *key, void *object)
{
    struct config_rule *rule = object;
    yaml_node_item_t *items = NULL;
    size_t n = 0;
    int rc = config_sequence(p, node, key, false, &items, &n);
    if (rc < 0)
        return rc;
    rule->destinations = xcalloc(n, sizeof(*rule->destinations));
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *child = xasprintf("%s[%zu]", key, i);
        struct config_destination d = {0};
        rc = config_parse_destination(p, items[i], child, rule, &d);
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

/* foreign_layers: skip (the default, as skopeo and crane) or copy. */
static int config_parse_foreign_layers(struct config_parser *p, const yaml_node_t *node,
                                       const char *key, void *object)
{
    struct config_rule *rule = object;
    const char *how = NULL;
    int rc = config_string(p, node, key, &how);
    if (rc < 0)
        return rc;
    if (strcmp(how, "skip") == 0 || strcmp(how, "copy") == 0) {
        rule->foreign_layers = strcmp(how, "copy") == 0;
        return 0;
    }
    return config_fail(p, node, key, "'%.*s' is not skip or copy", CONFIG_QUOTE_MAX, how);
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
    {.name = "foreign_layers", .kind = CONFIG_CUSTOM, .parse = config_parse_foreign_layers},
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

/*
 * A list of patterns the file left out becomes the default, `everything`;
 * one of only exclusions would select nothing, which is never what was meant.
 */
static int config_rule_patterns(struct config_parser *p, const yaml_node_t *node, const char *key,
                                const char *name, char ***patterns, size_t *n,
                                const char *everything)
{
    if (*patterns == NULL) {
        *patterns = xcalloc(1, sizeof(char *));
        (*patterns)[0] = xstrdup(everything);
        *n = 1;
    }
    for (size_t i = 0; i < *n; i++) {
        if ((*patterns)[i][0] != '!')
            return 0;
    }
    return config_fail_at(p, node, key, name,
                          "selects nothing: add a pattern without '!' (\"%s\" for all the rest)",
                          everything);
}

static int config_parse_rule(struct config_parser *p, int id, const char *key,
                             struct config_rule *rule)
{
    const yaml_node_t *item = NULL;
    int rc = config_node(p, id, key, &item);
    if (rc == 0)
        rc = config_mapping(p, item, key, CONFIG_FIELDS(config_rule_fields), rule);
    if (rc == 0)
        rc = config_rule_patterns(p, item, key, "repositories", &rule->repositories,
                                  &rule->n_repositories, CONFIG_DEFAULT_RULE_REPOSITORIES);
    if (rc == 0)
        rc = config_rule_patterns(p, item, key, "tags", &rule->tags, &rule->n_tags,
                                  CONFIG_DEFAULT_RULE_TAGS);
    return rc;
}

int config_parse_rules(struct config_parser *p, const yaml_node_t *node, const char *key,
                       void *object)
{
    struct config *c = &((struct config_top *)object)->config;
    yaml_node_item_t *items = NULL;
    size_t n = 0;
    int rc = config_sequence(p, node, key, true, &items, &n);
    if (rc < 0)
        return rc;
    c->rules = xcalloc(n > 0 ? n : 1, sizeof(*c->rules));
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *child = xasprintf("%s[%zu]", key, i);
        struct config_rule rule = {.deletes = CONFIG_DEFAULT_RULE_DELETES,
                                   .referrers = CONFIG_DEFAULT_RULE_REFERRERS,
                                   .overwrite = CONFIG_DEFAULT_RULE_OVERWRITE};
        rc = config_parse_rule(p, items[i], child, &rule);
        free(child);
        if (rc == 0)
            c->rules[c->n_rules++] = rule;
        else
            config_rule_release(&rule);
    }
    return rc;
}
