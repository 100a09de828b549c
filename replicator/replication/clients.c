#include "replication/clients.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "registry/credentials.h"
#include "registry/dockerconfig.h"

/*
 * Where the registry's credentials come from: its credential_helper, its
 * password_file (read again as it changes), its username and password, or
 * else the Docker config.json (auths, credHelpers, credsStore) as Docker
 * itself would read it.
 */
static struct credentials *clients_credentials(const struct config_registry *cfg)
{
    struct credentials_spec spec = {.host = cfg->host, .timeout_ms = cfg->command_timeout_ms};
    char *label = NULL;
    char *path = NULL;
    if (cfg->credential_helper != NULL) {
        spec.kind = CREDENTIALS_HELPER;
        spec.helper = cfg->credential_helper;
    } else if (cfg->password_file != NULL) {
        spec.kind = CREDENTIALS_FILE;
        spec.username = cfg->username;
        spec.password = cfg->password;
        spec.path = cfg->password_file;
    } else if (cfg->username != NULL) {
        spec.kind = CREDENTIALS_STATIC;
        spec.username = cfg->username;
        spec.password = cfg->password;
        spec.label = label = xasprintf("config (registries.%s)", cfg->name);
    } else {
        spec.kind = CREDENTIALS_DOCKER_CONFIG;
        path =
            cfg->docker_config != NULL ? xstrdup(cfg->docker_config) : dockerconfig_default_path();
        spec.path = path;
    }
    struct credentials *creds = credentials_new(&spec);
    free(label);
    free(path);
    return creds;
}

int clients_concurrency(const struct config_registry *cfg)
{
    return cfg->max_concurrency > 0 ? cfg->max_concurrency : CONFIG_DEFAULT_REGISTRY_CONCURRENCY;
}

void clients_open(uv_loop_t *loop, const struct config_registry *cfg,
                  const struct clients_options *opts, struct clients *out)
{
    memset(out, 0, sizeof(*out));
    out->concurrency = clients_concurrency(cfg);
    struct http_client_options hopts = {
        .insecure = cfg->insecure,
        .ca_file = cfg->ca_file,
        .cert_file = cfg->cert_file,
        .key_file = cfg->key_file,
        /* Every job may hold a download and an upload, each with a blob or two in flight. */
        .max_host_connections = out->concurrency * 4 + 4,
        /* A blackholed registry fails its transfers this soon, so the circuit can open. */
        .stall_timeout_s = (long)((cfg->stall_timeout_ms + 999) / 1000),
        .rate_limit = cfg->rate_limit,
    };
    out->http = http_client_new(loop, &hopts);
    struct registry_options ropts = {
        .plain_http = cfg->plain_http,
        .force_tls = !cfg->plain_http,
        .credentials = clients_credentials(cfg),
        .cache_bytes = opts->pull_cache_bytes,
    };
    out->pull = registry_new(loop, out->http, cfg->host, &ropts);
    if (opts->push) {
        ropts.cache_bytes = 0;
        ropts.push = true;
        out->push = registry_new(loop, out->http, cfg->host, &ropts);
    }
    credentials_unref(ropts.credentials); /* each client holds its own reference */
}

static void clients_one_closed(void *arg)
{
    struct clients *cl = arg;
    if (--cl->closing > 0)
        return;
    void (*cb)(void *) = cl->closed_cb;
    void *cb_arg = cl->closed_arg;
    cl->http = NULL;
    cl->pull = NULL;
    cl->push = NULL;
    if (cb != NULL)
        cb(cb_arg);
}

void clients_close(struct clients *cl, void (*cb)(void *arg), void *arg)
{
    cl->closed_cb = cb;
    cl->closed_arg = arg;
    cl->closing = 1; /* held until every close below is started */
    if (cl->pull != NULL) {
        cl->closing++;
        registry_close(cl->pull, clients_one_closed, cl);
    }
    if (cl->push != NULL) {
        cl->closing++;
        registry_close(cl->push, clients_one_closed, cl);
    }
    if (cl->http != NULL) {
        cl->closing++;
        http_client_close(cl->http, clients_one_closed, cl);
    }
    clients_one_closed(cl);
}
