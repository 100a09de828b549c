/*
 * config.c: Ferry's configuration file, the top level. The defaults, the
 * tables of the top-level keys (and retry:, circuit:), what is settled once
 * the whole file has been read (tokens, the data directory), config_load()
 * itself, and the queries the replicator asks of a loaded config. The YAML
 * walker is config_walk.c; registries and rules are config_schema.c.
 */
#include "config/config_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/errors.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "config/glob.h"

static void config_release(struct config *c)
{
    free(c->path);
    free(c->dir);
    free(c->data_dir);
    free(c->docker_config);
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
    config_cluster_free(c->cluster);
    memset(c, 0, sizeof(*c));
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    config_release(c);
    free(c);
}

/* ---- The top level ---- */

static int config_check_listen(struct config_parser *p, const yaml_node_t *node, const char *key,
                               const char *value)
{
    if (config_split_listen(value, NULL, NULL) < 0)
        return config_fail(p, node, key,
                           "'%.*s' is not host:port or [v6]:port with a port from 1 to 65535",
                           CONFIG_QUOTE_MAX, value);
    return 0;
}

/* A Host name of server_names: a name or an address ([v6] in brackets), without a port. */
static int config_check_server_name(struct config_parser *p, const yaml_node_t *node,
                                    const char *key, const char *value)
{
    if (!config_host_valid(value))
        return config_fail(p, node, key,
                           "'%.*s' is not a host name or address ([v6] in brackets) without a port",
                           CONFIG_QUOTE_MAX, value);
    return 0;
}

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
    int rc = config_mapping(p, node, key, CONFIG_FIELDS(config_retry_fields), object);
    if (rc < 0 || c->retry_max_ms >= c->retry_base_ms)
        return rc;
    if (config_lookup(p, node, "max") != NULL)
        return config_fail_at(p, node, key, "max", "must be at least base (%" PRIu64 "ms)",
                              c->retry_base_ms);
    return config_fail_at(p, node, key, "base", "must be at most max (%" PRIu64 "ms, the default)",
                          c->retry_max_ms);
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
    return config_mapping(p, node, key, CONFIG_FIELDS(config_circuit_fields), object);
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
    {.name = "reconcile_interval",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_top, config.reconcile_ms),
     .min = CONFIG_MIN_RECONCILE_MS,
     .max = CONFIG_MAX_RECONCILE_MS},
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
     .min = CONFIG_MIN_SPOOL_MAX,
     .max = CONFIG_MAX_SPOOL_MAX},
    {.name = "engine_window",
     .kind = CONFIG_INT,
     .offset = offsetof(struct config_top, config.engine_window),
     .min = 1,
     .max = CONFIG_MAX_ENGINE_WINDOW},
    {.name = "docker_config",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_top, config.docker_config)},
    {.name = "retry", .kind = CONFIG_CUSTOM, .parse = config_parse_retry},
    {.name = "circuit", .kind = CONFIG_CUSTOM, .parse = config_parse_circuit},
    /* Before rules, which name registries. */
    {.name = "registries", .kind = CONFIG_CUSTOM, .parse = config_parse_registries},
    {.name = "rules", .kind = CONFIG_CUSTOM, .parse = config_parse_rules},
    {.name = "cluster", .kind = CONFIG_CUSTOM, .parse = config_parse_cluster},
};

/* The tokens, the defaults that depend on other keys, and the warning about inline secrets. */
static int config_top_finish(struct config_parser *p, const yaml_node_t *root,
                             struct config_top *top, const struct stat *st)
{
    struct config *c = &top->config;
    int rc = config_secret_resolve(p, root, "webhook_token", false, top->webhook_token_env,
                                   top->webhook_token_file, &c->webhook_token);
    if (rc == 0)
        rc = config_secret_resolve(p, root, "api_token", true, top->api_token_env,
                                   top->api_token_file, &c->api_token);
    if (rc == 0)
        rc = config_secret_resolve(p, root, "metrics_token", true, top->metrics_token_env,
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

/* Every key's default (config.h's reference), before the file says otherwise. */
static void config_defaults(struct config *c, const char *path)
{
    c->path = xstrdup(path);
    c->dir = config_dirname(path);
    c->listen = xstrdup(CONFIG_DEFAULT_LISTEN);
    c->webhook_max_body = CONFIG_DEFAULT_WEBHOOK_MAX_BODY;
    c->max_connections_per_ip = CONFIG_DEFAULT_PER_IP;
    c->request_body_budget = CONFIG_DEFAULT_BODY_BUDGET;
    c->poll_interval_ms = CONFIG_DEFAULT_POLL_INTERVAL_MS;
    c->poll_concurrency = CONFIG_DEFAULT_POLL_CONCURRENCY;
    c->reconcile_ms = CONFIG_DEFAULT_RECONCILE_MS;
    c->retention_ms = CONFIG_DEFAULT_RETENTION_MS;
    c->spool_max_bytes = CONFIG_DEFAULT_SPOOL_MAX;
    c->engine_window = CONFIG_DEFAULT_ENGINE_WINDOW;
    c->retry_attempts = CONFIG_DEFAULT_RETRY_ATTEMPTS;
    c->retry_base_ms = CONFIG_DEFAULT_RETRY_BASE_MS;
    c->retry_max_ms = CONFIG_DEFAULT_RETRY_MAX_MS;
    c->circuit_failures = CONFIG_DEFAULT_CIRCUIT_FAILURES;
    c->circuit_open_ms = CONFIG_DEFAULT_CIRCUIT_OPEN_MS;
}

static void config_top_release(struct config_top *top)
{
    config_release(&top->config);
    free(top->webhook_token_env);
    free(top->webhook_token_file);
    free(top->api_token_env);
    free(top->api_token_file);
    free(top->metrics_token_env);
    free(top->metrics_token_file);
}

int config_load(const char *path, struct config **out, char **err)
{
    struct config_parser p = {.path = path};
    struct config_top top = {0};
    struct config_yaml yaml = {0};
    const yaml_node_t *root = NULL;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (err != NULL)
        *err = NULL;
    if (path == NULL || out == NULL) {
        p.err = xstrdup("config_load: path and out must not be NULL");
        rc = FERRY_EINVAL;
        goto out;
    }
    rc = config_yaml_load(&yaml, path, &p.err);
    if (rc < 0)
        goto out;
    config_defaults(&top.config, path);
    config_parser_init(&p, &yaml, path, top.config.dir);
    p.config = &top.config;
    rc = config_walk_root(&p, CONFIG_FIELDS(config_top_fields), &top, &root);
    if (rc == 0)
        rc = config_top_finish(&p, root, &top, &yaml.st);
    if (rc < 0)
        goto out;
    *out = xmalloc(sizeof(**out));
    **out = top.config;
    memset(&top.config, 0, sizeof(top.config));

out:
    if (rc < 0 && err != NULL) {
        *err = p.err;
        p.err = NULL;
    }
    free(p.err);
    free(p.visited);
    config_top_release(&top);
    config_yaml_release(&yaml);
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

/* True when some rule whose source is `source` selects `repository` and (unless NULL) `tag`. */
static bool config_selected(const struct config *c, const char *source, const char *repository,
                            const char *tag)
{
    for (size_t i = 0; i < c->n_rules; i++) {
        if (strcmp(c->rules[i].source, source) == 0 &&
            config_rule_selects(&c->rules[i], repository, tag))
            return true;
    }
    return false;
}

bool config_repository_selected(const struct config *c, const char *source, const char *repository)
{
    return c != NULL && source != NULL && config_selected(c, source, repository, NULL);
}

bool config_tag_selected(const struct config *c, const char *source, const char *repository,
                         const char *tag)
{
    return c != NULL && source != NULL && tag != NULL &&
           config_selected(c, source, repository, tag);
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
