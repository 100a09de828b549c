/*
 * config_cluster.c: the `cluster:` section (config.h, struct config_cluster).
 *
 *   cluster:
 *     servers: [nats://10.0.0.1:4222, nats://10.0.0.2:4222, nats://10.0.0.3:4222]
 *     name: ferry-a                 # default: the host's name
 *     user: ferry                   # with password, password_env or password_file
 *     password_env: NATS_PASSWORD
 *     token_env: NATS_TOKEN         # or a token (token, token_file), or
 *     creds_file: /etc/ferry/nats.creds   # a NATS credentials file
 *     tls: true                     # implied by ca_file, cert_file, key_file
 *     ca_file: /etc/ferry/nats-ca.pem
 *     stream: FERRY_JOURNAL
 *     bucket_prefix: ferry
 *     replicas: 3
 *     duplicate_window: 2m
 *     ack_wait: 30s
 *     timeout: 5s
 */
#include "config/config_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/secret.h"
#include "common/xalloc.h"

/* What the section's keys fill: the cluster, and where its secrets come from. */
struct config_cluster_spec {
    struct config_cluster cluster;
    char *password_env, *password_file;
    char *token_env, *token_file;
};

void config_cluster_free(struct config_cluster *c)
{
    if (c == NULL)
        return;
    config_strings_free(c->servers, c->n_servers);
    free(c->name);
    free(c->user);
    secret_free(c->password);
    secret_free(c->token);
    free(c->creds_file);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->stream);
    free(c->bucket_prefix);
    free(c);
}

/* nats://host:port or tls://host:port; credentials in a URL would be logged, so not there. */
static int config_check_nats_url(struct config_parser *p, const yaml_node_t *node, const char *key,
                                 const char *value)
{
    const char *rest = NULL;
    if (strncmp(value, "nats://", 7) == 0)
        rest = value + 7;
    else if (strncmp(value, "tls://", 6) == 0)
        rest = value + 6;
    if (rest == NULL || rest[0] == '\0' || strlen(value) > 512 || strpbrk(value, " \t\r\n") != NULL)
        return config_fail(p, node, key, "'%.*s' is not a nats://host:port or tls://host:port URL",
                           CONFIG_QUOTE_MAX, value);
    if (strchr(rest, '@') != NULL)
        return config_fail(p, node, key,
                           "a server URL must not hold credentials: use user and password_env, "
                           "token_env or creds_file");
    return 0;
}

/* Letters, digits and `extra`, at most `max` of them. */
static bool config_name_chars(const char *value, const char *extra, size_t max)
{
    size_t n = strlen(value);
    if (n == 0 || n > max)
        return false;
    for (const char *c = value; *c != '\0'; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || strchr(extra, *c) != NULL;
        if (!ok)
            return false;
    }
    return true;
}

static int config_check_stream(struct config_parser *p, const yaml_node_t *node, const char *key,
                               const char *value)
{
    if (!config_name_chars(value, "_-", 64))
        return config_fail(p, node, key, "'%.*s': letters, digits, '_' and '-', at most 64",
                           CONFIG_QUOTE_MAX, value);
    return 0;
}

static int config_check_node_name(struct config_parser *p, const yaml_node_t *node, const char *key,
                                  const char *value)
{
    /* A key in the cluster's buckets: no '.' first, last or twice in a row (journal.h). */
    size_t n = strlen(value);
    if (!config_name_chars(value, "_-.", 64) || value[0] == '.' || value[n - 1] == '.' ||
        strstr(value, "..") != NULL)
        return config_fail(p, node, key,
                           "'%.*s': letters, digits, '_', '-' and '.' (not first, last or twice "
                           "in a row), at most 64",
                           CONFIG_QUOTE_MAX, value);
    return 0;
}

static const struct config_field config_cluster_fields[] = {
    {.name = "servers",
     .kind = CONFIG_STRINGS,
     .offset = offsetof(struct config_cluster_spec, cluster.servers),
     .count_offset = offsetof(struct config_cluster_spec, cluster.n_servers),
     .required = true,
     .check = config_check_nats_url},
    {.name = "name",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_cluster_spec, cluster.name),
     .check = config_check_node_name},
    {.name = "user",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_cluster_spec, cluster.user)},
    {.name = "password",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_cluster_spec, cluster.password)},
    {.name = "password_env",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_cluster_spec, password_env),
     .check = config_check_env_name},
    {.name = "password_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_cluster_spec, password_file)},
    {.name = "token",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_cluster_spec, cluster.token)},
    {.name = "token_env",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_cluster_spec, token_env),
     .check = config_check_env_name},
    {.name = "token_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_cluster_spec, token_file)},
    {.name = "creds_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_cluster_spec, cluster.creds_file)},
    {.name = "tls",
     .kind = CONFIG_BOOL,
     .offset = offsetof(struct config_cluster_spec, cluster.tls)},
    {.name = "ca_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_cluster_spec, cluster.ca_file)},
    {.name = "cert_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_cluster_spec, cluster.cert_file)},
    {.name = "key_file",
     .kind = CONFIG_PATH,
     .offset = offsetof(struct config_cluster_spec, cluster.key_file)},
    {.name = "stream",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_cluster_spec, cluster.stream),
     .check = config_check_stream},
    {.name = "bucket_prefix",
     .kind = CONFIG_STRING,
     .offset = offsetof(struct config_cluster_spec, cluster.bucket_prefix),
     .check = config_check_stream},
    {.name = "replicas",
     .kind = CONFIG_INT,
     .offset = offsetof(struct config_cluster_spec, cluster.replicas),
     .min = 1,
     .max = CONFIG_MAX_CLUSTER_REPLICAS},
    {.name = "duplicate_window",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_cluster_spec, cluster.duplicate_window_ms),
     .min = 1000,
     .max = CONFIG_MAX_CLUSTER_DUPLICATES_MS},
    {.name = "ack_wait",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_cluster_spec, cluster.ack_wait_ms),
     .min = CONFIG_MIN_CLUSTER_ACK_WAIT_MS,
     .max = CONFIG_MAX_CLUSTER_ACK_WAIT_MS},
    {.name = "timeout",
     .kind = CONFIG_DURATION,
     .offset = offsetof(struct config_cluster_spec, cluster.timeout_ms),
     .min = 100,
     .max = CONFIG_MAX_CLUSTER_TIMEOUT_MS},
};

/* How the node logs in: a user and password, a token, or a credentials file; at most one. */
static int config_cluster_login(struct config_parser *p, const yaml_node_t *node, const char *key,
                                struct config_cluster_spec *spec)
{
    struct config_cluster *c = &spec->cluster;
    /* Errors name the key inside the section, at its line. */
    int rc = config_secret_resolve(p, node, "password", true, spec->password_env,
                                   spec->password_file, &c->password);
    if (rc == 0)
        rc = config_secret_resolve(p, node, "token", true, spec->token_env, spec->token_file,
                                   &c->token);
    if (rc < 0)
        return rc;
    if ((c->user != NULL) != (c->password != NULL))
        return config_fail_at(p, node, key, c->user != NULL ? "user" : "password",
                              "user and a password go together");
    if ((c->user != NULL) + (c->token != NULL) + (c->creds_file != NULL) > 1)
        return config_fail_at(p, node, key, c->token != NULL ? "token" : "creds_file",
                              "user and password, a token and creds_file are exclusive");
    if ((c->cert_file == NULL) != (c->key_file == NULL))
        return config_fail_at(p, node, key, c->cert_file != NULL ? "cert_file" : "key_file",
                              "cert_file and key_file go together");
    return 0;
}

int config_parse_cluster(struct config_parser *p, const yaml_node_t *node, const char *key,
                         void *object)
{
    struct config *top = &((struct config_top *)object)->config;
    struct config_cluster_spec spec = {
        .cluster =
            {
                .replicas = CONFIG_DEFAULT_CLUSTER_REPLICAS,
                .duplicate_window_ms = CONFIG_DEFAULT_CLUSTER_DUPLICATES_MS,
                .ack_wait_ms = CONFIG_DEFAULT_CLUSTER_ACK_WAIT_MS,
                .timeout_ms = CONFIG_DEFAULT_CLUSTER_TIMEOUT_MS,
            },
    };
    int rc = config_mapping(p, node, key, CONFIG_FIELDS(config_cluster_fields), &spec);
    if (rc == 0 && spec.cluster.n_servers > CONFIG_MAX_CLUSTER_SERVERS)
        rc = config_fail_at(p, node, key, "servers", "at most %d servers",
                            CONFIG_MAX_CLUSTER_SERVERS);
    if (rc == 0)
        rc = config_cluster_login(p, node, key, &spec);
    struct config_cluster *c = xmalloc(sizeof(*c));
    *c = spec.cluster;
    free(spec.password_env);
    free(spec.password_file);
    free(spec.token_env);
    free(spec.token_file);
    if (rc < 0) {
        config_cluster_free(c);
        return rc;
    }
    if (c->stream == NULL)
        c->stream = xstrdup(CONFIG_DEFAULT_CLUSTER_STREAM);
    if (c->bucket_prefix == NULL)
        c->bucket_prefix = xstrdup(CONFIG_DEFAULT_CLUSTER_PREFIX);
    if (c->ca_file != NULL || c->cert_file != NULL)
        c->tls = true;
    if (c->name == NULL) {
        /* The host's short name (a pod's name under Kubernetes): the same at every restart, so
         * that a node takes up its own parked jobs. */
        char host[256] = "";
        if (gethostname(host, sizeof(host) - 1) == 0)
            host[strcspn(host, ".")] = '\0';
        if (!config_name_chars(host, "_-", 64))
            snprintf(host, sizeof(host), "ferry-%ld", (long)getpid());
        c->name = xstrdup(host);
    }
    top->cluster = c;
    return 0;
}
