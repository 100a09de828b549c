/*
 * api_status.c: the answers read from the engine's figures and the journal:
 * GET /v1/status, GET /v1/failures, POST /v1/retry and GET /v1/journal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/log.h"
#include "daemon/api_int.h"
#include "registry/credentials.h"
#include "registry/registry.h"

/* Entries of /v1/journal without a limit= */
#define API_JOURNAL_DEFAULT_LIMIT 100

/* Answer 500 naming what the journal could not read. */
static void api_respond_journal_error(struct server_request *req, const char *what, int rc)
{
    char msg[160];
    log_warn("journal read failed what=%s error=\"%s\"", what, ferry_strerror(rc));
    snprintf(msg, sizeof(msg), "the journal could not read %s: %s", what, ferry_strerror(rc));
    server_respond_error(req, 500, msg);
}

/* ---- GET /v1/status ---- */

static const char *circuit_name(enum engine_circuit c)
{
    switch (c) {
    case ENGINE_CIRCUIT_OPEN:
        return "open";
    case ENGINE_CIRCUIT_HALF_OPEN:
        return "half-open";
    case ENGINE_CIRCUIT_CLOSED:
        break;
    }
    return "closed";
}

static cJSON *status_destination_json(const struct engine_destination_stats *st,
                                      const struct api_rate *rate, int64_t now)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", st->name);
    cJSON_AddStringToObject(d, "registry", st->host);
    cJSON_AddNumberToObject(d, "backlog", (double)st->backlog);
    cJSON_AddNumberToObject(d, "shelved", (double)st->shelved);
    cJSON_AddNumberToObject(d, "lag_seconds", api_lag_seconds(st, now));
    cJSON_AddNumberToObject(d, "in_flight", (double)st->running);
    cJSON_AddNumberToObject(d, "completed", (double)st->complete);
    cJSON_AddNumberToObject(d, "failed", (double)st->failing);
    cJSON_AddNumberToObject(d, "failed_total", (double)st->failed);
    cJSON_AddNumberToObject(d, "superseded", (double)st->superseded);
    cJSON_AddNumberToObject(d, "retries", (double)st->retries);
    cJSON_AddNumberToObject(d, "bytes", (double)st->bytes);
    cJSON_AddNumberToObject(d, "foreign_layers_skipped", (double)st->foreign_layers_skipped);
    cJSON_AddNumberToObject(d, "bytes_per_second", api_rate_last_minute(rate));
    cJSON_AddStringToObject(d, "circuit", circuit_name(st->circuit));
    cJSON_AddItemToObject(d, "last_error", api_json_string_or_null(st->last_error));
    cJSON_AddItemToObject(d, "last_error_time", api_json_time(st->last_error_unix_ms));
    cJSON_AddItemToObject(d, "throughput", api_rate_samples_json(rate));
    return d;
}

/* "polling", "error", "idle", or "disabled" for a source the poller does not list. */
static const char *status_poller_state(const struct api *a, const struct config_registry *reg,
                                       const struct poller_stats *ps)
{
    if (!reg->poll || a->poller == NULL)
        return "disabled";
    if (poller_source_active(a->poller, reg->name))
        return "polling";
    return ps->last_error[0] != '\0' && ps->errors > 0 ? "error" : "idle";
}

/*
 * What the poller knows of one source: a standing error (its catalog
 * refused), and the request budget its registry announced, as
 * "ratelimit": {"limit", "remaining", "window_s", "deferred"} or null.
 */
static void status_source_poll_json(const struct api *a, const struct config_registry *reg,
                                    cJSON *o)
{
    struct poller_source_status st;
    bool polled = a->poller != NULL && poller_source_status(a->poller, reg->name, &st);
    cJSON_AddItemToObject(o, "poller_error",
                          api_json_string_or_null(polled && st.error[0] != '\0' ? st.error : NULL));
    /* A webhooks source's rounds HEAD only new names; the reconcile sweep
     * has looked at every tag up to swept_to (null: not yet). */
    cJSON_AddBoolToObject(o, "webhooks", reg->webhooks);
    cJSON_AddItemToObject(o, "swept_to",
                          polled && st.swept_to_unix_ms > 0 ? api_json_time(st.swept_to_unix_ms)
                                                            : cJSON_CreateNull());
    if (!polled || (st.ratelimit_limit < 0 && st.ratelimit_remaining < 0)) {
        cJSON_AddNullToObject(o, "ratelimit");
        return;
    }
    cJSON *rl = cJSON_AddObjectToObject(o, "ratelimit");
    if (st.ratelimit_limit >= 0)
        cJSON_AddNumberToObject(rl, "limit", (double)st.ratelimit_limit);
    else
        cJSON_AddNullToObject(rl, "limit");
    if (st.ratelimit_remaining >= 0)
        cJSON_AddNumberToObject(rl, "remaining", (double)st.ratelimit_remaining);
    else
        cJSON_AddNullToObject(rl, "remaining");
    if (st.ratelimit_window_s > 0)
        cJSON_AddNumberToObject(rl, "window_s", (double)st.ratelimit_window_s);
    else
        cJSON_AddNullToObject(rl, "window_s");
    cJSON_AddNumberToObject(rl, "deferred", (double)st.deferred);
}

static cJSON *status_sources_json(const struct api *a)
{
    cJSON *sources = cJSON_CreateArray();
    struct poller_stats ps = {0};
    if (a->poller != NULL)
        poller_get_stats(a->poller, &ps);
    for (size_t i = 0; i < a->config->n_registries; i++) {
        const struct config_registry *reg = &a->config->registries[i];
        if (!api_is_source(a->config, reg->name))
            continue;
        const struct api_source *s = &a->sources[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", reg->name);
        cJSON_AddStringToObject(o, "registry", reg->host);
        cJSON_AddNumberToObject(o, "last_seq", (double)s->last_seq);
        cJSON_AddItemToObject(o, "last_event_time", api_json_time(s->last_event_unix_ms));
        cJSON_AddStringToObject(o, "poller", status_poller_state(a, reg, &ps));
        cJSON_AddNumberToObject(o, "entries", (double)s->entries);
        status_source_poll_json(a, reg, o);
        cJSON_AddItemToArray(sources, o);
    }
    return sources;
}

/*
 * Per registry of the config: where its credentials come from and when they
 * were last renewed (the engine's clients hold them). Never the secret.
 */
static cJSON *status_registries_json(const struct api *a)
{
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < a->config->n_registries; i++) {
        const struct config_registry *cfg = &a->config->registries[i];
        struct registry *reg =
            a->engine != NULL ? engine_registry_client(a->engine, cfg->name, false) : NULL;
        struct credentials *creds = reg != NULL ? registry_credentials(reg) : NULL;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", cfg->name);
        cJSON_AddStringToObject(o, "registry", cfg->host);
        if (creds == NULL) {
            cJSON_AddNullToObject(o, "credentials");
        } else {
            struct credentials_info info;
            credentials_get_info(creds, &info);
            cJSON *c = cJSON_AddObjectToObject(o, "credentials");
            cJSON_AddStringToObject(c, "source", info.source);
            cJSON_AddItemToObject(c, "renewed_at", api_json_time((int64_t)info.renewed_unix_ms));
            cJSON_AddItemToObject(c, "expires_at", api_json_time((int64_t)info.expires_unix_ms));
            cJSON_AddNumberToObject(c, "renewals", (double)info.renewals);
            cJSON_AddNumberToObject(c, "failures", (double)info.failures);
            cJSON_AddItemToObject(c, "last_error", api_json_string_or_null(info.last_error));
        }
        cJSON_AddItemToArray(list, o);
    }
    return list;
}

/* The largest figure taken from a node's heartbeat: 2^53, exact in a double. */
#define STATUS_FIGURE_MAX 9007199254740992.0

/* The figures a node's heartbeat carries. The totals add them up, but for
 * STATUS_FIGURE_MOST, a high-water mark: its total is the largest. */
static const char *const status_node_figures[] = {
    "dispatched", "pending", "running",     "complete",   "failed", "superseded",
    "bytes",      "polling", "hint_mounts", "hint_waits", "held",   "held_most"};
#define STATUS_FIGURE_MOST "held_most"

/*
 * The cluster as this node's last heartbeat read it: every node, alive or
 * not, with what it said of itself, and the totals of the live ones. JSON
 * null on one node.
 */
static cJSON *status_cluster_json(const struct api *a)
{
    if (a->cluster == NULL)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "node", cluster_node_name(a->cluster));
    cJSON_AddStringToObject(o, "journal", journal_backend_name(a->journal));
    const struct cluster_node *nodes;
    size_t n = cluster_nodes(a->cluster, &nodes);
    cJSON *list = cJSON_AddArrayToObject(o, "nodes");
    size_t n_figures = sizeof(status_node_figures) / sizeof(status_node_figures[0]);
    double totals[sizeof(status_node_figures) / sizeof(status_node_figures[0])] = {0};
    size_t alive = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *node = cJSON_CreateObject();
        cJSON_AddStringToObject(node, "name", nodes[i].name);
        cJSON_AddBoolToObject(node, "alive", nodes[i].alive);
        cJSON_AddBoolToObject(node, "self", nodes[i].self);
        cJSON_AddItemToObject(node, "last_heartbeat", api_json_time(nodes[i].beat_unix_ms));
        /* What another node said of itself: only its numbers are kept. */
        cJSON *info = cJSON_Parse(nodes[i].info);
        cJSON *figures = cJSON_AddObjectToObject(node, "figures");
        for (size_t k = 0; k < n_figures; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(info, status_node_figures[k]);
            /* Another node's word: a count, or nothing (not NaN, not -1e300). */
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= STATUS_FIGURE_MAX))
                continue;
            cJSON_AddNumberToObject(figures, status_node_figures[k], v->valuedouble);
            if (!nodes[i].alive)
                continue;
            if (strcmp(status_node_figures[k], STATUS_FIGURE_MOST) != 0)
                totals[k] += v->valuedouble;
            else if (v->valuedouble > totals[k])
                totals[k] = v->valuedouble;
        }
        cJSON_Delete(info);
        alive += nodes[i].alive;
        cJSON_AddItemToArray(list, node);
    }
    cJSON_AddNumberToObject(o, "alive", (double)alive);
    cJSON *sum = cJSON_AddObjectToObject(o, "totals");
    for (size_t k = 0; k < n_figures; k++)
        cJSON_AddNumberToObject(sum, status_node_figures[k], totals[k]);
    return o;
}

void api_get_status(struct api *a, struct server_request *req)
{
    int64_t now = clock_unix_ms();
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "time", api_json_time(now));
    cJSON_AddNumberToObject(root, "uptime_seconds", (double)(now - a->start_unix_ms) / 1000.0);
    cJSON *journal = cJSON_AddObjectToObject(root, "journal");
    cJSON_AddNumberToObject(journal, "last_seq", (double)journal_last_seq(a->journal));
    struct engine_stats es = {0};
    if (a->engine != NULL)
        engine_get_stats(a->engine, &es);
    cJSON_AddNumberToObject(journal, "cursor", (double)es.cursor);

    cJSON *dests = cJSON_AddArrayToObject(root, "destinations");
    struct engine_destination_stats st;
    for (size_t i = 0; a->engine != NULL && engine_destination_stats(a->engine, i, &st); i++)
        if (api_is_destination(a->config, st.name))
            cJSON_AddItemToArray(dests, status_destination_json(&st, &a->rates[i], now));
    cJSON_AddItemToObject(root, "sources", status_sources_json(a));
    cJSON_AddItemToObject(root, "registries", status_registries_json(a));
    cJSON_AddItemToObject(root, "cluster", status_cluster_json(a));
    api_respond_json(req, 200, root);
}

/* ---- GET /v1/failures ---- */

struct failure_list {
    struct api *a;
    cJSON *list;
    size_t n;
    bool truncated;
};

static int collect_failure(const struct journal_job *job, void *arg)
{
    struct failure_list *f = arg;
    if (job->state != JOURNAL_JOB_FAILED)
        return 0;
    if (f->n >= API_LIST_MAX) {
        f->truncated = true;
        return 1;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "destination", job->destination);
    cJSON_AddStringToObject(o, "repository", job->repository);
    struct journal_entry en;
    int rc = job->seq != 0 ? journal_get(f->a->journal, job->seq, &en) : FERRY_ENOTFOUND;
    if (rc == 0) {
        cJSON_AddStringToObject(o, "source_repository", en.repository);
        journal_entry_release(&en);
    } else {
        /* Retention may have taken the entry; anything else is worth a line. */
        if (rc != FERRY_ENOTFOUND)
            log_warn("journal entry unreadable seq=%llu error=\"%s\"", (unsigned long long)job->seq,
                     ferry_strerror(rc));
        cJSON_AddNullToObject(o, "source_repository");
    }
    cJSON_AddItemToObject(o, "digest", api_json_string_or_null(job->digest));
    cJSON *tags = cJSON_AddArrayToObject(o, "tags");
    for (size_t i = 0; i < job->n_tags; i++)
        cJSON_AddItemToArray(tags, cJSON_CreateString(job->tags[i]));
    cJSON_AddNumberToObject(o, "attempts", job->attempts);
    cJSON_AddItemToObject(o, "last_error", api_json_string_or_null(job->last_error));
    cJSON_AddItemToObject(o, "updated", api_json_time(job->updated_unix_ms));
    cJSON_AddItemToArray(f->list, o);
    f->n++;
    return 0;
}

void api_get_failures(struct api *a, struct server_request *req)
{
    cJSON *root = cJSON_CreateObject();
    struct failure_list f = {.a = a, .list = cJSON_AddArrayToObject(root, "failures")};
    int rc = journal_job_scan_open(a->journal, collect_failure, &f);
    if (rc < 0) {
        cJSON_Delete(root);
        api_respond_journal_error(req, "the job records", rc);
        return;
    }
    cJSON_AddBoolToObject(root, "truncated", f.truncated);
    api_respond_json(req, 200, root);
}

/* ---- POST /v1/retry ---- */

/* A string field of `o`, NULL when absent or null; *bad when it is anything but a non-empty string.
 */
static const char *json_field(const cJSON *o, const char *name, bool *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (v == NULL || cJSON_IsNull(v))
        return NULL;
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        *bad = true;
        return NULL;
    }
    return v->valuestring;
}

/*
 * "all_failed": true, the explicit selection of every FAILED job: *all set.
 * Absent leaves *all false; anything but true (false included: it selects
 * nothing) sets *bad.
 */
static void json_all_failed(const cJSON *o, bool *all, bool *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "all_failed");
    *all = false;
    if (v == NULL)
        return;
    if (cJSON_IsTrue(v))
        *all = true;
    else
        *bad = true;
}

/*
 * The selection is explicit: a destination, an image, both, or every FAILED
 * job by {"all_failed": true} alone. An empty body or {} selects nothing and
 * is refused, so that a client's mistake never requeues everything.
 */
void api_post_retry(struct api *a, struct server_request *req)
{
    size_t len = 0;
    const char *body = server_request_body(req, &len);
    cJSON *o = cJSON_ParseWithLength(body, len);
    bool bad = o == NULL || !cJSON_IsObject(o);
    bool all = false;
    const char *dest = bad ? NULL : json_field(o, "destination", &bad);
    const char *repo = bad ? NULL : json_field(o, "repository", &bad);
    const char *digest = bad ? NULL : json_field(o, "digest", &bad);
    if (!bad)
        json_all_failed(o, &all, &bad);

    if (bad || (all && (dest != NULL || repo != NULL || digest != NULL)) ||
        (!all && dest == NULL && (repo == NULL || digest == NULL)) ||
        (digest != NULL && !digest_valid(digest)))
        server_respond_error(req, 400,
                             "want {\"destination\": D}, {\"repository\": R, \"digest\": D} "
                             "or {\"all_failed\": true}");
    else if (dest != NULL && (config_registry_find(a->config, dest) == NULL ||
                              !api_is_destination(a->config, dest)))
        server_respond_error(req, 404, "no such destination");
    else if (a->engine == NULL || *a->stopping)
        server_respond_error(req, 503, "stopping");
    else {
        cJSON *root = cJSON_CreateObject();
        size_t n = engine_retry(a->engine, dest, repo, digest);
        cJSON_AddNumberToObject(root, "requeued", (double)n);
        api_respond_json(req, 200, root);
    }
    cJSON_Delete(o);
}

/* ---- GET /v1/journal ---- */

struct journal_list {
    cJSON *list;
};

/* Where an entry came from, by its event id: a poll, the engine at a source, or a webhook. */
static const char *entry_origin(const struct journal_entry *e)
{
    if (e->event_id != NULL && strncmp(e->event_id, "poll", strlen("poll")) == 0)
        return "poll";
    if (e->event_id != NULL && strncmp(e->event_id, "source:", strlen("source:")) == 0)
        return "source";
    return "webhook";
}

static int collect_entry(const struct journal_entry *e, void *arg)
{
    struct journal_list *l = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seq", (double)e->seq);
    cJSON_AddStringToObject(o, "source", e->source);
    cJSON_AddStringToObject(o, "repository", e->repository);
    cJSON_AddItemToObject(o, "tag", api_json_string_or_null(e->tag));
    cJSON_AddItemToObject(o, "digest", api_json_string_or_null(e->digest));
    cJSON_AddStringToObject(o, "action", e->action == JOURNAL_DELETE ? "delete" : "push");
    cJSON_AddItemToObject(o, "received", api_json_time(e->received_unix_ms));
    cJSON_AddStringToObject(o, "origin", entry_origin(e));
    cJSON_AddItemToObject(o, "ignored", api_json_string_or_null(e->ignored));
    cJSON_AddItemToArray(l->list, o);
    return 0;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || s[0] == '-')
        return false;
    *out = v;
    return true;
}

void api_get_journal(struct api *a, struct server_request *req)
{
    uint64_t after = 0, limit = API_JOURNAL_DEFAULT_LIMIT;
    const char *qa = server_request_query(req, "after");
    const char *ql = server_request_query(req, "limit");
    if ((qa != NULL && !parse_u64(qa, &after)) || (ql != NULL && !parse_u64(ql, &limit))) {
        server_respond_error(req, 400, "after and limit are non-negative integers");
        return;
    }
    if (limit > API_LIST_MAX)
        limit = API_LIST_MAX;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "last_seq", (double)journal_last_seq(a->journal));
    struct journal_list l = {.list = cJSON_AddArrayToObject(root, "entries")};
    int rc = limit > 0 ? journal_scan(a->journal, after, (size_t)limit, collect_entry, &l) : 0;
    if (rc < 0) {
        cJSON_Delete(root);
        api_respond_journal_error(req, "its entries", rc);
        return;
    }
    api_respond_json(req, 200, root);
}
