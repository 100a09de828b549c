/*
 * api.c: the api's lifecycle (new, reconfigure, drain, close), its routing
 * and token checks, the dashboard's files, and the JSON helpers the other
 * files of the module share (api_int.h).
 */
#include "daemon/api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "daemon/api_int.h"
#include "daemon/dashboard/assets.h"

/* ---- shared helpers ---- */

cJSON *api_json_time(int64_t unix_ms)
{
    if (unix_ms <= 0)
        return cJSON_CreateNull();
    char text[CLOCK_RFC3339_MAX];
    clock_format_rfc3339(unix_ms, text);
    return cJSON_CreateString(text);
}

cJSON *api_json_string_or_null(const char *s)
{
    return s != NULL ? cJSON_CreateString(s) : cJSON_CreateNull();
}

void api_respond_json(struct server_request *req, unsigned status, cJSON *body)
{
    char *text = xjson_print(body, false);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    server_respond(req, status, "application/json", text, len + 1);
    free(text);
    cJSON_Delete(body);
}

bool api_is_destination(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_rules; i++)
        for (size_t d = 0; d < c->rules[i].n_destinations; d++)
            if (strcmp(c->rules[i].destinations[d].registry, name) == 0)
                return true;
    return false;
}

bool api_is_source(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_rules; i++)
        if (strcmp(c->rules[i].source, name) == 0)
            return true;
    return false;
}

double api_lag_seconds(const struct engine_destination_stats *st, int64_t now_unix_ms)
{
    if (st->oldest_unix_ms <= 0 || now_unix_ms <= st->oldest_unix_ms)
        return 0;
    return (double)(now_unix_ms - st->oldest_unix_ms) / 1000.0;
}

bool api_job_get(struct api *a, const char *destination, const char *repository, const char *digest,
                 struct journal_job *job)
{
    int rc = journal_job_get(a->journal, destination, repository, digest, job);
    if (rc < 0 && rc != FERRY_ENOTFOUND)
        log_warn("job record unreadable dest=%s repo=%s digest=%s error=\"%s\"", destination,
                 repository, digest, ferry_strerror(rc));
    return rc == 0;
}

/* ---- lifecycle ---- */

/* The figures of every registry of `config`, by index, named after it. */
static void api_figures_new(const struct config *config, struct api_source **sources,
                            struct api_rate **rates)
{
    *sources = xcalloc(config->n_registries + 1, sizeof(**sources));
    *rates = xcalloc(config->n_registries + 1, sizeof(**rates));
    for (size_t i = 0; i < config->n_registries; i++)
        (*sources)[i].name = config->registries[i].name;
}

int api_new(uv_loop_t *loop, const struct config *config, struct journal *journal,
            struct ingest *ingest, const bool *stopping, struct api **out)
{
    struct api *a = xcalloc(1, sizeof(*a));
    int rc;

    *out = NULL;
    a->loop = loop;
    a->config = config;
    a->journal = journal;
    a->ingest = ingest;
    a->stopping = stopping;
    a->start_unix_ms = clock_unix_ms();
    api_figures_new(config, &a->sources, &a->rates);
    rc = uv_timer_init(loop, &a->sampler);
    if (rc < 0) {
        free(a->sources);
        free(a->rates);
        free(a);
        return rc;
    }
    a->sampler.data = a;
    a->sampler_open = true;
    rc = uv_timer_start(&a->sampler, api_rates_sample, API_RATE_PERIOD_S * 1000,
                        API_RATE_PERIOD_S * 1000);
    if (rc < 0) {
        /* The timer is a handle now: the api frees itself once it has closed. */
        api_close(a, NULL, NULL);
        return rc;
    }
    *out = a;
    return 0;
}

void api_reconfigure(struct api *a, const struct config *config)
{
    struct api_source *sources;
    struct api_rate *rates;
    api_figures_new(config, &sources, &rates);
    for (size_t i = 0; i < config->n_registries; i++) {
        /* A registry kept by name keeps its figures (its byte count restarts with the engine). */
        for (size_t k = 0; k < a->config->n_registries; k++) {
            if (strcmp(a->sources[k].name, config->registries[i].name) == 0) {
                sources[i] = a->sources[k];
                sources[i].name = config->registries[i].name;
                rates[i] = a->rates[k];
                rates[i].last_bytes = 0;
                break;
            }
        }
    }
    free(a->sources);
    free(a->rates);
    a->sources = sources;
    a->rates = rates;
    a->config = config;
}

void api_note_entry(struct api *a, const struct journal_entry *e)
{
    for (size_t i = 0; i < a->config->n_registries; i++) {
        struct api_source *s = &a->sources[i];
        if (strcmp(s->name, e->source) == 0) {
            s->entries++;
            if (e->seq > s->last_seq)
                s->last_seq = e->seq;
            s->last_event_unix_ms = e->received_unix_ms;
            return;
        }
    }
}

void api_set_cluster(struct api *a, struct cluster *cluster)
{
    a->cluster = cluster;
}

void api_set_engine(struct api *a, struct engine *engine, struct poller *poller)
{
    a->engine = engine;
    a->poller = poller;
    a->draining = false;
}

void api_drain(struct api *a, void (*cb)(void *arg), void *arg)
{
    a->draining = true;
    if (a->lookups == 0) {
        cb(arg);
        return;
    }
    a->drained_cb = cb;
    a->drained_arg = arg;
}

/* Free the api once api_close() was called, its sampler closed and no lookup is left. */
static void api_finish_close(struct api *a)
{
    if (!a->closing || a->sampler_open || a->lookups > 0)
        return;
    void (*cb)(void *) = a->close_cb;
    void *arg = a->close_arg;
    free(a->sources);
    free(a->rates);
    free(a);
    if (cb != NULL)
        cb(arg);
}

void api_lookup_ended(struct api *a)
{
    if (--a->lookups > 0)
        return;
    if (a->drained_cb != NULL) {
        void (*cb)(void *) = a->drained_cb;
        a->drained_cb = NULL;
        cb(a->drained_arg);
    }
    api_finish_close(a);
}

static void api_sampler_closed(uv_handle_t *handle)
{
    struct api *a = handle->data;
    a->sampler_open = false;
    api_finish_close(a);
}

void api_close(struct api *a, void (*cb)(void *arg), void *arg)
{
    a->closing = true;
    a->draining = true;
    a->close_cb = cb;
    a->close_arg = arg;
    if (uv_timer_stop(&a->sampler) < 0)
        log_warn("api sampler did not stop");
    uv_close((uv_handle_t *)&a->sampler, api_sampler_closed);
}

/* ---- the dashboard's files ---- */

static bool api_asset(struct server_request *req, const char *path)
{
    for (const struct dashboard_asset *d = dashboard_assets; d->path != NULL; d++) {
        if (strcmp(d->path, path) == 0) {
            server_respond(req, 200, d->content_type, (const char *)d->data, d->len);
            return true;
        }
    }
    return false;
}

/* ---- routing ---- */

/* The request's bearer token is `want` (compared in constant time); false when `want` is NULL. */
static bool api_token_given(struct server_request *req, const char *want)
{
    const char *given = server_request_bearer(req);
    return want != NULL && given != NULL && secret_equal(given, want);
}

static void api_unauthorized(struct server_request *req, const char *message)
{
    server_respond_error(req, 401, message);
    server_respond_header(req, "WWW-Authenticate", "Bearer realm=\"ferry\"");
}

void api_admit(struct api *a, struct server_request *req)
{
    const struct config *c = a->config;
    const char *path = server_request_path(req);
    bool v1 = strncmp(path, "/v1/", strlen("/v1/")) == 0;

    if (strcmp(path, "/metrics") == 0 && (c->metrics_token != NULL || c->api_token != NULL)) {
        /* Both are compared, whichever is set, so the time says nothing of which. */
        bool metrics = api_token_given(req, c->metrics_token);
        bool api = api_token_given(req, c->api_token);
        if (!metrics && !api) {
            api_unauthorized(req, "/metrics needs Authorization: Bearer <metrics_token or "
                                  "api_token>");
            return;
        }
    } else if (v1 && c->api_token != NULL) {
        if (!api_token_given(req, c->api_token)) {
            api_unauthorized(req, "this API needs Authorization: Bearer <api_token>");
            return;
        }
    } else if (c->api_token == NULL &&
               !server_request_host_allowed(req, c->server_names, c->n_server_names)) {
        server_respond_error(req, 421,
                             "the Host header does not name this server (see server_names)");
        return;
    }
    /* A page cannot send a token across origins, so without one a form could post. */
    if (v1 && c->api_token == NULL && strcmp(server_request_method(req), "POST") == 0 &&
        !server_media_type_json(server_request_header(req, "Content-Type"))) {
        server_respond_error(req, 415, "want Content-Type: application/json");
        return;
    }
}

/* GET /readyz: ready while the daemon runs with an engine, 503 while it stops. */
static void api_get_readyz(struct api *a, struct server_request *req)
{
    char body[128];
    bool ready = !*a->stopping && a->engine != NULL;
    int len = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"last_seq\":%" PRIu64 "}\n",
                       ready ? "ready" : "stopping", journal_last_seq(a->journal));
    server_respond(req, ready ? 200 : 503, "application/json", body, (size_t)len);
}

bool api_handle(struct api *a, struct server_request *req)
{
    static const char healthy[] = "{\"status\":\"ok\"}\n";
    const char *path = server_request_path(req);
    const char *method = server_request_method(req);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    if (strcmp(path, "/healthz") == 0 && get)
        server_respond(req, 200, "application/json", healthy, sizeof(healthy) - 1);
    else if (strcmp(path, "/readyz") == 0 && get)
        api_get_readyz(a, req);
    else if (get && api_asset(req, path))
        return true;
    else if (strcmp(path, "/metrics") == 0 && get)
        api_get_metrics(a, req);
    else if (strcmp(path, "/v1/status") == 0 && get)
        api_get_status(a, req);
    else if (strcmp(path, "/v1/images") == 0 && get)
        api_get_images(a, req);
    else if (strcmp(path, "/v1/failures") == 0 && get)
        api_get_failures(a, req);
    else if (strcmp(path, "/v1/journal") == 0 && get)
        api_get_journal(a, req);
    else if (strcmp(path, "/v1/retry") == 0 && strcmp(method, "POST") == 0)
        api_post_retry(a, req);
    else
        return false;
    return true;
}
