#include "daemon/api.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/dashboard/assets.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/errors.h"
#include "registry/http.h"
#include "common/log.h"
#include "common/reference.h"
#include "registry/registry.h"
#include "common/secret.h"
#include "common/xalloc.h"

#define API_LIST_MAX    1000 /* rows per answer of /v1/failures and /v1/journal */
#define API_METRICS_MAX (4 * 1024 * 1024)

/* RFC 3339 UTC with milliseconds, or JSON null for 0. */
static cJSON *json_time(int64_t unix_ms)
{
    if (unix_ms <= 0)
        return cJSON_CreateNull();
    time_t sec = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char text[40];
    size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text + n, sizeof(text) - n, ".%03dZ", (int)(unix_ms % 1000));
    return cJSON_CreateString(text);
}

static cJSON *json_string_or_null(const char *s)
{
    return s != NULL ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static void respond_json(struct server_request *req, unsigned status, cJSON *body)
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

/* True when some rule sends to registry `name`. */
static bool is_destination(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_rules; i++)
        for (size_t d = 0; d < c->rules[i].n_destinations; d++)
            if (strcmp(c->rules[i].destinations[d].registry, name) == 0)
                return true;
    return false;
}

static bool is_source(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_rules; i++)
        if (strcmp(c->rules[i].source, name) == 0)
            return true;
    return false;
}

/* ---- throughput samples ---- */

static void api_sample(uv_timer_t *timer)
{
    struct api *a = timer->data;
    if (a->engine == NULL)
        return;
    int64_t now = clock_unix_ms() / 1000;
    struct engine_destination_stats st;
    for (size_t i = 0; engine_destination_stats(a->engine, i, &st); i++) {
        /* Bytes sent to it as they pass, not when a job ends: a long upload
         * shows as a steady rate, not as one spike at its end. */
        struct api_rate *r = &a->rates[i];
        uint64_t delta = st.http.bytes_sent - r->last_bytes;
        r->last_bytes = st.http.bytes_sent;
        r->times[r->next] = now;
        r->rates[r->next] = (double)delta / API_RATE_PERIOD_S;
        r->next = (r->next + 1) % API_RATE_SAMPLES;
        if (r->count < API_RATE_SAMPLES)
            r->count++;
    }
}

/* Bytes per second over the last minute (fewer samples early on). */
static double rate_last_minute(const struct api_rate *r)
{
    size_t n = r->count < 6 ? r->count : 6;
    if (n == 0)
        return 0;
    double sum = 0;
    for (size_t k = 1; k <= n; k++)
        sum += r->rates[(r->next + API_RATE_SAMPLES - k) % API_RATE_SAMPLES];
    return sum / (double)n;
}

void api_init(struct api *a, uv_loop_t *loop, const struct config *config, struct journal *journal,
              struct ingest *ingest, const bool *stopping)
{
    memset(a, 0, sizeof(*a));
    a->loop = loop;
    a->config = config;
    a->journal = journal;
    a->ingest = ingest;
    a->stopping = stopping;
    a->start_unix_ms = clock_unix_ms();
    a->sources = xcalloc(config->n_registries + 1, sizeof(*a->sources));
    a->rates = xcalloc(config->n_registries + 1, sizeof(*a->rates));
    for (size_t i = 0; i < config->n_registries; i++)
        a->sources[i].name = config->registries[i].name;
    uv_timer_init(loop, &a->sampler);
    a->sampler.data = a;
    uv_timer_start(&a->sampler, api_sample, API_RATE_PERIOD_S * 1000, API_RATE_PERIOD_S * 1000);
}

void api_reconfigure(struct api *a, const struct config *config)
{
    struct api_source *sources = xcalloc(config->n_registries + 1, sizeof(*sources));
    struct api_rate *rates = xcalloc(config->n_registries + 1, sizeof(*rates));
    for (size_t i = 0; i < config->n_registries; i++) {
        sources[i].name = config->registries[i].name;
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

static void api_sampler_closed(uv_handle_t *handle)
{
    struct api *a = handle->data;
    free(a->sources);
    free(a->rates);
    a->sources = NULL;
    a->rates = NULL;
}

void api_close(struct api *a)
{
    uv_timer_stop(&a->sampler);
    uv_close((uv_handle_t *)&a->sampler, api_sampler_closed);
}

/* ---- GET /v1/status ---- */

static void api_status(struct api *a, struct server_request *req)
{
    int64_t now = clock_unix_ms();
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "time", json_time(now));
    cJSON_AddNumberToObject(root, "uptime_seconds", (double)(now - a->start_unix_ms) / 1000.0);
    cJSON *journal = cJSON_AddObjectToObject(root, "journal");
    cJSON_AddNumberToObject(journal, "last_seq", (double)journal_last_seq(a->journal));
    struct engine_stats es = {0};
    if (a->engine != NULL)
        engine_get_stats(a->engine, &es);
    cJSON_AddNumberToObject(journal, "cursor", (double)es.cursor);

    cJSON *dests = cJSON_AddArrayToObject(root, "destinations");
    struct engine_destination_stats st;
    for (size_t i = 0; a->engine != NULL && engine_destination_stats(a->engine, i, &st); i++) {
        if (!is_destination(a->config, st.name))
            continue;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", st.name);
        cJSON_AddStringToObject(d, "registry", st.host);
        cJSON_AddNumberToObject(d, "backlog", (double)st.backlog);
        double lag = st.oldest_unix_ms > 0 && now > st.oldest_unix_ms
                         ? (double)(now - st.oldest_unix_ms) / 1000.0
                         : 0;
        cJSON_AddNumberToObject(d, "lag_seconds", lag);
        cJSON_AddNumberToObject(d, "in_flight", (double)st.running);
        cJSON_AddNumberToObject(d, "completed", (double)st.complete);
        cJSON_AddNumberToObject(d, "failed", (double)st.failing);
        cJSON_AddNumberToObject(d, "failed_total", (double)st.failed);
        cJSON_AddNumberToObject(d, "superseded", (double)st.superseded);
        cJSON_AddNumberToObject(d, "retries", (double)st.retries);
        cJSON_AddNumberToObject(d, "bytes", (double)st.bytes);
        cJSON_AddNumberToObject(d, "bytes_per_second", rate_last_minute(&a->rates[i]));
        cJSON_AddStringToObject(d, "circuit", circuit_name(st.circuit));
        cJSON_AddItemToObject(d, "last_error", json_string_or_null(st.last_error));
        cJSON_AddItemToObject(d, "last_error_time", json_time(st.last_error_unix_ms));
        cJSON *tp = cJSON_AddArrayToObject(d, "throughput");
        const struct api_rate *r = &a->rates[i];
        for (size_t k = r->count; k > 0; k--) {
            size_t at = (r->next + API_RATE_SAMPLES - k) % API_RATE_SAMPLES;
            cJSON *pt = cJSON_CreateArray();
            cJSON_AddItemToArray(pt, cJSON_CreateNumber((double)r->times[at]));
            cJSON_AddItemToArray(pt, cJSON_CreateNumber(r->rates[at]));
            cJSON_AddItemToArray(tp, pt);
        }
        cJSON_AddItemToArray(dests, d);
    }

    cJSON *sources = cJSON_AddArrayToObject(root, "sources");
    struct poller_stats ps = {0};
    if (a->poller != NULL)
        poller_get_stats(a->poller, &ps);
    for (size_t i = 0; i < a->config->n_registries; i++) {
        const struct config_registry *reg = &a->config->registries[i];
        if (!is_source(a->config, reg->name))
            continue;
        const struct api_source *s = &a->sources[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", reg->name);
        cJSON_AddStringToObject(o, "registry", reg->host);
        cJSON_AddNumberToObject(o, "last_seq", (double)s->last_seq);
        cJSON_AddItemToObject(o, "last_event_time", json_time(s->last_event_unix_ms));
        const char *poller = "disabled";
        if (reg->poll && a->poller != NULL)
            poller = poller_source_active(a->poller, reg->name)  ? "polling"
                     : ps.last_error[0] != '\0' && ps.errors > 0 ? "error"
                                                                 : "idle";
        cJSON_AddStringToObject(o, "poller", poller);
        cJSON_AddNumberToObject(o, "entries", (double)s->entries);
        cJSON_AddItemToArray(sources, o);
    }
    respond_json(req, 200, root);
}

/* ---- GET /v1/images ---- */

struct tag_pick {
    const char *tag;
    struct journal_job best;
    bool found;
};

static int pick_tag(const struct journal_job *job, void *arg)
{
    struct tag_pick *p = arg;
    for (size_t i = 0; i < job->n_tags; i++) {
        if (strcmp(job->tags[i], p->tag) != 0)
            continue;
        if (p->found && job->seq <= p->best.seq)
            return 0;
        if (p->found)
            journal_job_release(&p->best);
        memset(&p->best, 0, sizeof(p->best));
        p->best.destination = xstrdup(job->destination);
        p->best.repository = xstrdup(job->repository);
        p->best.digest = xstrdup(job->digest);
        p->best.state = job->state;
        p->best.attempts = job->attempts;
        p->best.last_error = job->last_error != NULL ? xstrdup(job->last_error) : NULL;
        p->best.bytes = job->bytes;
        p->best.seq = job->seq;
        p->best.created_unix_ms = job->created_unix_ms;
        p->best.updated_unix_ms = job->updated_unix_ms;
        p->best.completed_unix_ms = job->completed_unix_ms;
        p->found = true;
        return 0;
    }
    return 0;
}

static cJSON *image_dest_json(const char *name, const char *repo, const struct journal_job *job)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", name);
    cJSON_AddStringToObject(d, "repository", repo);
    cJSON_AddStringToObject(d, "state",
                            job != NULL ? journal_job_state_name(job->state) : "UNKNOWN");
    cJSON_AddItemToObject(d, "digest", json_string_or_null(job != NULL ? job->digest : NULL));
    cJSON_AddNumberToObject(d, "attempts", job != NULL ? job->attempts : 0);
    cJSON_AddItemToObject(
        d, "last_error",
        json_string_or_null(job != NULL && job->last_error != NULL && job->last_error[0] != '\0'
                                ? job->last_error
                                : NULL));
    cJSON_AddNumberToObject(d, "bytes", job != NULL ? (double)job->bytes : 0);
    cJSON_AddItemToObject(d, "created", json_time(job != NULL ? job->created_unix_ms : 0));
    cJSON_AddItemToObject(d, "updated", json_time(job != NULL ? job->updated_unix_ms : 0));
    cJSON_AddItemToObject(d, "completed", json_time(job != NULL ? job->completed_unix_ms : 0));
    return d;
}

/*
 * The image as the journal's job records see it: for a tag, the newest job
 * (by seq) that moves it in each destination. Without an engine there is no
 * registry to ask; this is what the records say, not what the registries
 * hold.
 */
static void api_images_journal(struct api *a, struct server_request *req, const char *repo,
                               const char *tag, const char *digest)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "repository", repo);
    cJSON_AddItemToObject(root, "tag", json_string_or_null(tag));
    cJSON *dests = cJSON_CreateArray();
    const char *image_digest = digest;
    uint64_t newest = 0;
    char *picked_digest = NULL;
    size_t known = 0;
    for (size_t r = 0; r < a->config->n_rules; r++) {
        const struct config_rule *rule = &a->config->rules[r];
        if (!config_rule_selects(rule, repo, tag))
            continue;
        for (size_t d = 0; d < rule->n_destinations; d++) {
            const struct config_destination *dest = &rule->destinations[d];
            char *dst_repo = config_destination_repository(dest, repo);
            if (dst_repo == NULL)
                continue;
            struct journal_job job;
            bool have = false;
            if (digest != NULL) {
                have = journal_job_get(a->journal, dest->registry, dst_repo, digest, &job) == 0;
            } else {
                struct tag_pick pick = {.tag = tag};
                journal_job_scan_in(a->journal, dest->registry, dst_repo, pick_tag, &pick);
                if (pick.found) {
                    job = pick.best;
                    have = true;
                }
            }
            if (have) {
                known++;
                if (job.seq >= newest && job.digest != NULL) {
                    newest = job.seq;
                    free(picked_digest);
                    picked_digest = xstrdup(job.digest);
                }
            }
            cJSON_AddItemToArray(dests,
                                 image_dest_json(dest->registry, dst_repo, have ? &job : NULL));
            if (have)
                journal_job_release(&job);
            free(dst_repo);
        }
    }
    if (image_digest == NULL)
        image_digest = picked_digest;
    cJSON_AddItemToObject(root, "digest", json_string_or_null(image_digest));
    cJSON_AddItemToObject(root, "destinations", dests);
    free(picked_digest);
    if (known == 0) {
        cJSON_Delete(root);
        server_respond_error(req, 404, "no replication of this image is known");
        return;
    }
    respond_json(req, 200, root);
}

/* ---- GET /v1/images, asked at the registries ---- */

/*
 * Messages are hints; the source is the truth (DESIGN.md §3): the newest job
 * for a tag may name a digest the source no longer holds (a late or forged
 * event). So a lookup asks the rule's source what the tag names now, and each
 * destination what its tag names there, all at once; a destination is
 * COMPLETE only when the two agree.
 */

struct image_lookup;

/* What one registry says a reference names now, for one lookup. */
struct image_check {
    struct image_lookup *lookup;
    struct registry *reg; /* the engine's client; NULL when it has none */
    bool push;            /* reg is the pushing client */
    char *registry;       /* its name in the config */
    char *host;
    char *repository;
    bool running;
    int rc;       /* 0: found; FERRY_ENOTFOUND: absent; else it could not say */
    char *digest; /* when found */
    char *error;  /* one line, when it could not say */
};

/*
 * One question in flight at a registry, shared by every lookup asking the
 * same (client, repository, reference) meanwhile: a gate polling once a
 * second at a registry that answers slowly adds no request while one waits.
 */
struct api_probe {
    struct api_probe *next;
    struct api *api;
    struct registry *reg;
    char *key;
    char *repository;
    char *reference;
    struct image_check **waiters;
    size_t n_waiters;
};

/* One destination of one rule that selects the image. */
struct image_row {
    size_t source; /* index into the lookup's sources */
    struct image_check check;
};

struct image_lookup {
    struct api *api;
    struct server_request *req; /* NULL once answered */
    char *repository;
    char *tag; /* exactly one of tag and digest */
    char *digest;
    struct image_check *sources; /* one per distinct source registry of the rules */
    size_t n_sources;
    struct image_row *rows;
    size_t n_rows;
    size_t running; /* checks not back yet, plus one while they are started */
    uv_timer_t deadline;
};

static const char *lookup_reference(const struct image_lookup *l)
{
    return l->tag != NULL ? l->tag : l->digest;
}

static void check_init(struct image_check *c, struct image_lookup *l, const char *registry,
                       bool push, const char *repository)
{
    memset(c, 0, sizeof(*c));
    c->lookup = l;
    c->reg = engine_registry_client(l->api->engine, registry, push);
    c->push = push;
    c->registry = xstrdup(registry);
    c->host = xstrdup(c->reg != NULL ? registry_host(c->reg) : registry);
    c->repository = xstrdup(repository);
}

static void check_release(struct image_check *c)
{
    free(c->registry);
    free(c->host);
    free(c->repository);
    free(c->digest);
    free(c->error);
}

static void lookup_settle(struct image_lookup *l);

static void check_finish(struct image_check *c, int rc, const char *digest, const char *error)
{
    struct image_lookup *l = c->lookup;
    c->rc = rc;
    if (rc == 0)
        c->digest = xstrdup(digest);
    else if (rc != FERRY_ENOTFOUND)
        c->error = xstrdup(error);
    c->running = false;
    l->running--;
    lookup_settle(l);
}

static void probe_done(int rc, const char *error, const char *bytes, size_t len,
                       const char *media_type, const char *digest, void *arg)
{
    struct api_probe *p = arg;
    (void)bytes;
    (void)len;
    (void)media_type;
    /* rc 0 comes with a valid digest: registry_manifest_resolve() checked it. */
    char *text = NULL;
    if (rc != 0 && rc != FERRY_ENOTFOUND)
        text = error != NULL ? xstrdup(error)
                             : xasprintf("%s/%s:%s: %s", registry_host(p->reg), p->repository,
                                         p->reference, ferry_strerror(rc));
    struct api_probe **at = &p->api->probes;
    while (*at != p)
        at = &(*at)->next;
    *at = p->next;
    for (size_t i = 0; i < p->n_waiters; i++)
        check_finish(p->waiters[i], rc, digest, text);
    free(text);
    free(p->waiters);
    free(p->key);
    free(p->repository);
    free(p->reference);
    free(p);
}

/*
 * Ask `c`'s registry what the lookup's reference names, joining a probe in
 * flight for the same question. A call that cannot start is an answer. The
 * registry may answer before its call returns: the probe is listed and `c`
 * waits on it first.
 */
static void check_start(struct image_check *c)
{
    struct image_lookup *l = c->lookup;
    struct api *a = l->api;
    char *key = NULL;
    int rc = FERRY_EINVAL;
    if (c->reg == NULL)
        goto out;
    key = xasprintf("%s\n%d\n%s\n%s", c->registry, c->push, c->repository, lookup_reference(l));
    struct api_probe *p = a->probes;
    while (p != NULL && strcmp(p->key, key) != 0)
        p = p->next;
    bool fresh = p == NULL;
    if (fresh) {
        p = xcalloc(1, sizeof(*p));
        p->api = a;
        p->reg = c->reg;
        p->key = key;
        key = NULL;
        p->repository = xstrdup(c->repository);
        p->reference = xstrdup(lookup_reference(l));
        p->next = a->probes;
        a->probes = p;
    }
    p->waiters = xrealloc(p->waiters, (p->n_waiters + 1) * sizeof(*p->waiters));
    p->waiters[p->n_waiters++] = c;
    c->running = true;
    l->running++;
    rc = 0;
    if (!fresh)
        goto out;
    /* A HEAD, and a GET where the HEAD names no valid digest. */
    rc = registry_manifest_resolve(p->reg, p->repository, p->reference, NULL, 0, probe_done, p);
    if (rc < 0) {
        /* Its callback never fires: `c` is its only waiter. */
        a->probes = p->next;
        c->running = false;
        l->running--;
        free(p->waiters);
        free(p->key);
        free(p->repository);
        free(p->reference);
        free(p);
    }
out:
    if (rc < 0) {
        c->rc = rc;
        c->error = xasprintf("%s/%s:%s: %s", c->host, c->repository, lookup_reference(l),
                             c->reg != NULL ? ferry_strerror(rc) : "no client for this registry");
    }
    free(key);
}

/* 502 when the registry answered wrongly, 503 when it could not be reached in time. */
static unsigned check_http_status(const struct image_check *c)
{
    if (c->running)
        return 503;
    switch (c->rc) {
    case FERRY_ESERVER:
    case FERRY_EHTTP:
    case FERRY_EPROTO:
    case FERRY_EAUTH:
    case FERRY_EDIGEST:
    case FERRY_ETOOBIG:
        return 502;
    default:
        return 503;
    }
}

/* Answer with the source's failure: it did not say what the reference names. */
static void lookup_respond_source_error(struct image_lookup *l, const struct image_check *src)
{
    char *msg;
    if (src->running)
        msg = xasprintf("the source registry %s (%s) did not answer within %d ms", src->registry,
                        src->host, API_LOOKUP_DEADLINE_MS);
    else
        msg = xasprintf("the source registry %s could not say what %s:%s names: %s", src->registry,
                        l->repository, lookup_reference(l), src->error);
    log_debug("image lookup failed repo=%s ref=%s registry=%s error=\"%s\"", l->repository,
              lookup_reference(l), src->registry, msg);
    server_respond_error(l->req, check_http_status(src), msg);
    free(msg);
}

/* Whether the row's check saw `want` there now. */
static bool row_holds(const struct image_row *row, const char *want)
{
    return !row->check.running && row->check.rc == 0 && want != NULL &&
           strcmp(row->check.digest, want) == 0;
}

/*
 * One destination: COMPLETE when it holds `want` now, else the state of the
 * job record for `want` there, which never says COMPLETE (the registry
 * disagrees, or could not be asked), or PENDING without a record.
 */
static cJSON *lookup_row_json(struct image_lookup *l, const struct image_row *row, const char *want,
                              bool *known)
{
    const struct image_check *c = &row->check;
    struct journal_job job;
    bool have = want != NULL &&
                journal_job_get(l->api->journal, c->registry, c->repository, want, &job) == 0;
    const char *state = "PENDING";
    if (row_holds(row, want))
        state = "COMPLETE";
    else if (have && job.state == JOURNAL_JOB_COMPLETE)
        state = c->running || (c->rc != 0 && c->rc != FERRY_ENOTFOUND) ? "UNKNOWN" : "PENDING";
    else if (have)
        state = journal_job_state_name(job.state);
    if (have || row_holds(row, want))
        *known = true;

    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", c->registry);
    cJSON_AddStringToObject(d, "repository", c->repository);
    cJSON_AddStringToObject(d, "state", state);
    cJSON_AddItemToObject(d, "digest", json_string_or_null(want));
    cJSON_AddItemToObject(d, "current_digest",
                          json_string_or_null(!c->running && c->rc == 0 ? c->digest : NULL));
    char *check_error = NULL;
    if (c->running)
        check_error = xasprintf("%s did not answer within %d ms", c->host, API_LOOKUP_DEADLINE_MS);
    else if (c->rc != 0 && c->rc != FERRY_ENOTFOUND)
        check_error = xstrdup(c->error);
    cJSON_AddItemToObject(d, "check_error", json_string_or_null(check_error));
    free(check_error);
    cJSON_AddNumberToObject(d, "attempts", have ? job.attempts : 0);
    cJSON_AddItemToObject(
        d, "last_error",
        json_string_or_null(
            have && job.last_error != NULL && job.last_error[0] != '\0' ? job.last_error : NULL));
    cJSON_AddNumberToObject(d, "bytes", have ? (double)job.bytes : 0);
    cJSON_AddItemToObject(d, "created", json_time(have ? job.created_unix_ms : 0));
    cJSON_AddItemToObject(d, "updated", json_time(have ? job.updated_unix_ms : 0));
    cJSON_AddItemToObject(d, "completed", json_time(have ? job.completed_unix_ms : 0));
    if (have)
        journal_job_release(&job);
    return d;
}

/*
 * Answer with what the registries said so far (checks still running could
 * not say). For a tag the source decides: gone is 404, unknown is 502/503.
 * For a digest the source matters only when nothing else knows the image.
 */
static void lookup_answer(struct image_lookup *l)
{
    if (l->tag != NULL) {
        for (size_t i = 0; i < l->n_sources; i++) {
            const struct image_check *src = &l->sources[i];
            if (!src->running && src->rc == FERRY_ENOTFOUND) {
                char msg[512];
                snprintf(msg, sizeof(msg),
                         "%s:%s is not at the source %s (%s); a push may be on its way",
                         l->repository, l->tag, src->registry, src->host);
                server_respond_error(l->req, 404, msg);
                goto out;
            }
            if (src->running || src->rc != 0) {
                lookup_respond_source_error(l, src);
                goto out;
            }
        }
    }
    const struct image_check *first = &l->sources[0];
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "repository", l->repository);
    cJSON_AddItemToObject(root, "tag", json_string_or_null(l->tag));
    cJSON_AddItemToObject(root, "digest",
                          json_string_or_null(l->tag != NULL ? first->digest : l->digest));
    cJSON *source = cJSON_AddObjectToObject(root, "source");
    cJSON_AddStringToObject(source, "name", first->registry);
    cJSON_AddStringToObject(source, "registry", first->host);
    cJSON_AddItemToObject(
        source, "digest",
        json_string_or_null(!first->running && first->rc == 0 ? first->digest : NULL));
    cJSON *dests = cJSON_AddArrayToObject(root, "destinations");
    bool known = false;
    for (size_t i = 0; i < l->n_rows; i++) {
        const struct image_row *row = &l->rows[i];
        /* Each destination against its own rule's source. */
        const char *want = l->tag != NULL ? l->sources[row->source].digest : l->digest;
        cJSON_AddItemToArray(dests, lookup_row_json(l, row, want, &known));
    }
    if (l->digest != NULL && !known) {
        /* Nothing holds it and no job was ever made for it: does the source have it? */
        const struct image_check *lacking = NULL;
        for (size_t i = 0; i < l->n_sources && lacking == NULL; i++)
            if (l->sources[i].running || l->sources[i].rc != 0)
                lacking = &l->sources[i];
        if (lacking != NULL && !lacking->running && lacking->rc == FERRY_ENOTFOUND) {
            char msg[512];
            snprintf(msg, sizeof(msg),
                     "%s@%s is not at the source %s (%s) and no destination holds it",
                     l->repository, l->digest, lacking->registry, lacking->host);
            server_respond_error(l->req, 404, msg);
            cJSON_Delete(root);
            goto out;
        }
        if (lacking != NULL) {
            lookup_respond_source_error(l, lacking);
            cJSON_Delete(root);
            goto out;
        }
    }
    respond_json(l->req, 200, root);
out:
    l->req = NULL;
}

static void lookup_free(struct image_lookup *l)
{
    for (size_t i = 0; i < l->n_sources; i++)
        check_release(&l->sources[i]);
    for (size_t i = 0; i < l->n_rows; i++)
        check_release(&l->rows[i].check);
    free(l->sources);
    free(l->rows);
    free(l->repository);
    free(l->tag);
    free(l->digest);
    free(l);
}

static void lookup_closed(uv_handle_t *handle)
{
    struct image_lookup *l = handle->data;
    struct api *a = l->api;
    lookup_free(l);
    if (--a->lookups == 0 && a->drained_cb != NULL) {
        void (*cb)(void *) = a->drained_cb;
        a->drained_cb = NULL;
        cb(a->drained_arg);
    }
}

/* Once every check is back: answer (unless the deadline did) and free through the loop. */
static void lookup_settle(struct image_lookup *l)
{
    if (l->running > 0)
        return;
    if (l->req != NULL)
        lookup_answer(l);
    uv_timer_stop(&l->deadline);
    uv_close((uv_handle_t *)&l->deadline, lookup_closed);
}

/* The deadline: answer now. Checks still running end on their own, bounded by their retries. */
static void lookup_deadline(uv_timer_t *timer)
{
    struct image_lookup *l = timer->data;
    if (l->req != NULL) {
        log_debug("image lookup answered at its deadline repo=%s ref=%s running=%zu", l->repository,
                  lookup_reference(l), l->running);
        lookup_answer(l);
    }
}

/* The source registry's index in l->sources, added when new. */
static size_t lookup_source(struct image_lookup *l, const char *name)
{
    for (size_t i = 0; i < l->n_sources; i++)
        if (strcmp(l->sources[i].registry, name) == 0)
            return i;
    l->sources = xrealloc(l->sources, (l->n_sources + 1) * sizeof(*l->sources));
    check_init(&l->sources[l->n_sources], l, name, false, l->repository);
    return l->n_sources++;
}

static void api_images(struct api *a, struct server_request *req)
{
    const char *repo = server_request_query(req, "repository");
    const char *tag = server_request_query(req, "tag");
    const char *digest = server_request_query(req, "digest");
    if (repo == NULL || !reference_repository_valid(repo)) {
        server_respond_error(req, 400, "want a valid repository=");
        return;
    }
    if ((tag == NULL) == (digest == NULL) || (tag != NULL && !reference_tag_valid(tag)) ||
        (digest != NULL && !digest_valid(digest))) {
        server_respond_error(req, 400, "want one valid tag= or digest=");
        return;
    }
    if (a->engine == NULL || a->draining) {
        api_images_journal(a, req, repo, tag, digest);
        return;
    }
    if (a->lookups >= API_LOOKUPS_MAX) {
        server_respond_error(req, 503, "too many image lookups at once; retry");
        return;
    }

    struct image_lookup *l = xcalloc(1, sizeof(*l));
    l->api = a;
    l->req = req;
    l->repository = xstrdup(repo);
    l->tag = tag != NULL ? xstrdup(tag) : NULL;
    l->digest = digest != NULL ? xstrdup(digest) : NULL;
    for (size_t r = 0; r < a->config->n_rules; r++) {
        const struct config_rule *rule = &a->config->rules[r];
        if (!config_rule_selects(rule, repo, tag))
            continue;
        for (size_t d = 0; d < rule->n_destinations; d++) {
            const struct config_destination *dest = &rule->destinations[d];
            char *dst_repo = config_destination_repository(dest, repo);
            if (dst_repo == NULL)
                continue;
            size_t source = lookup_source(l, rule->source);
            l->rows = xrealloc(l->rows, (l->n_rows + 1) * sizeof(*l->rows));
            struct image_row *row = &l->rows[l->n_rows++];
            row->source = source;
            /* The pushing client: its tokens (pull,push) are the ones its jobs hold. */
            check_init(&row->check, l, dest->registry, true, dst_repo);
            free(dst_repo);
        }
    }
    if (l->n_rows == 0) {
        server_respond_error(req, 404, "no rule replicates this image");
        lookup_free(l);
        return;
    }
    a->lookups++;
    uv_timer_init(a->loop, &l->deadline);
    l->deadline.data = l;
    uv_timer_start(&l->deadline, lookup_deadline, API_LOOKUP_DEADLINE_MS, 0);
    /* Held at one while the checks start, so that none settles the lookup early. */
    l->running = 1;
    for (size_t i = 0; i < l->n_sources; i++)
        check_start(&l->sources[i]);
    for (size_t i = 0; i < l->n_rows; i++)
        check_start(&l->rows[i].check);
    l->running--;
    lookup_settle(l);
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
    if (job->seq != 0 && journal_get(f->a->journal, job->seq, &en) == 0) {
        cJSON_AddStringToObject(o, "source_repository", en.repository);
        journal_entry_release(&en);
    } else {
        cJSON_AddNullToObject(o, "source_repository");
    }
    cJSON_AddItemToObject(o, "digest", json_string_or_null(job->digest));
    cJSON *tags = cJSON_AddArrayToObject(o, "tags");
    for (size_t i = 0; i < job->n_tags; i++)
        cJSON_AddItemToArray(tags, cJSON_CreateString(job->tags[i]));
    cJSON_AddNumberToObject(o, "attempts", job->attempts);
    cJSON_AddItemToObject(o, "last_error", json_string_or_null(job->last_error));
    cJSON_AddItemToObject(o, "updated", json_time(job->updated_unix_ms));
    cJSON_AddItemToArray(f->list, o);
    f->n++;
    return 0;
}

static void api_failures(struct api *a, struct server_request *req)
{
    cJSON *root = cJSON_CreateObject();
    struct failure_list f = {.a = a, .list = cJSON_AddArrayToObject(root, "failures")};
    journal_job_scan(a->journal, collect_failure, &f);
    cJSON_AddBoolToObject(root, "truncated", f.truncated);
    respond_json(req, 200, root);
}

/* ---- POST /v1/retry ---- */

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

static void api_retry(struct api *a, struct server_request *req)
{
    size_t len = 0;
    const char *body = server_request_body(req, &len);
    cJSON *o = cJSON_ParseWithLength(body, len);
    bool bad = o == NULL || !cJSON_IsObject(o);
    const char *dest = bad ? NULL : json_field(o, "destination", &bad);
    const char *repo = bad ? NULL : json_field(o, "repository", &bad);
    const char *digest = bad ? NULL : json_field(o, "digest", &bad);
    if (bad || (dest == NULL && (repo == NULL || digest == NULL)) ||
        (digest != NULL && !digest_valid(digest))) {
        cJSON_Delete(o);
        server_respond_error(req, 400,
                             "want {\"destination\": D} or {\"repository\": R, \"digest\": D}");
        return;
    }
    if (dest != NULL &&
        (config_registry_find(a->config, dest) == NULL || !is_destination(a->config, dest))) {
        cJSON_Delete(o);
        server_respond_error(req, 404, "no such destination");
        return;
    }
    if (a->engine == NULL || *a->stopping) {
        cJSON_Delete(o);
        server_respond_error(req, 503, "stopping");
        return;
    }
    size_t n = engine_retry(a->engine, dest, repo, digest);
    cJSON_Delete(o);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "requeued", (double)n);
    respond_json(req, 200, root);
}

/* ---- GET /v1/journal ---- */

struct journal_list {
    cJSON *list;
};

static int collect_entry(const struct journal_entry *e, void *arg)
{
    struct journal_list *l = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seq", (double)e->seq);
    cJSON_AddStringToObject(o, "source", e->source);
    cJSON_AddStringToObject(o, "repository", e->repository);
    cJSON_AddItemToObject(o, "tag", json_string_or_null(e->tag));
    cJSON_AddItemToObject(o, "digest", json_string_or_null(e->digest));
    cJSON_AddStringToObject(o, "action", e->action == JOURNAL_DELETE ? "delete" : "push");
    cJSON_AddItemToObject(o, "received", json_time(e->received_unix_ms));
    const char *origin = "webhook";
    if (e->event_id != NULL && strncmp(e->event_id, "poll", 4) == 0)
        origin = "poll";
    else if (e->event_id != NULL && strncmp(e->event_id, "source:", 7) == 0)
        origin = "source";
    cJSON_AddStringToObject(o, "origin", origin);
    cJSON_AddItemToObject(o, "ignored", json_string_or_null(e->ignored));
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

static void api_journal(struct api *a, struct server_request *req)
{
    uint64_t after = 0, limit = 100;
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
    if (limit > 0)
        journal_scan(a->journal, after, (size_t)limit, collect_entry, &l);
    respond_json(req, 200, root);
}

/* ---- GET /metrics ---- */

/* A label value with \, " and newlines escaped, as the text format wants. */
static void label(struct buf *b, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            buf_append(b, "\\", 1), buf_append(b, p, 1);
        else if (*p == '\n')
            buf_append(b, "\\n", 2);
        else
            buf_append(b, p, 1);
    }
}

static void printf_buf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_buf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void metric_head(struct buf *b, const char *name, const char *type, const char *help)
{
    printf_buf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* NAME{KEY="VALUE"} with one label. */
static void metric_1(struct buf *b, const char *name, const char *key, const char *value)
{
    printf_buf(b, "%s{%s=\"", name, key);
    label(b, value);
    buf_append_str(b, "\"} ");
}

static void api_metrics(struct api *a, struct server_request *req)
{
    struct buf b;
    buf_init(&b, API_METRICS_MAX);
    const struct config *c = a->config;
    int64_t now = clock_unix_ms();

    metric_head(&b, "ferry_journal_entries_total", "counter",
                "Journal entries appended since start, by source registry.");
    for (size_t i = 0; i < c->n_registries; i++) {
        if (!is_source(c, c->registries[i].name))
            continue;
        metric_1(&b, "ferry_journal_entries_total", "source", c->registries[i].name);
        printf_buf(&b, "%" PRIu64 "\n", a->sources[i].entries);
    }
    metric_head(&b, "ferry_journal_last_seq", "gauge", "The newest journal sequence number.");
    printf_buf(&b, "ferry_journal_last_seq %" PRIu64 "\n", journal_last_seq(a->journal));

    size_t n = 0;
    struct engine_destination_stats *st = xcalloc(c->n_registries + 1, sizeof(*st));
    while (a->engine != NULL && n < c->n_registries &&
           engine_destination_stats(a->engine, n, &st[n]))
        n++;
    static const char *const states[] = {"pending", "in_progress", "complete", "failed",
                                         "superseded"};
    metric_head(&b, "ferry_jobs", "gauge",
                "Jobs by destination and state: pending, in_progress and failed now; complete "
                "and superseded since start.");
    for (size_t i = 0; i < n; i++) {
        if (!is_destination(c, st[i].name))
            continue;
        const uint64_t values[] = {st[i].backlog - st[i].running, st[i].running, st[i].complete,
                                   st[i].failing, st[i].superseded};
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
            printf_buf(&b, "ferry_jobs{destination=\"");
            label(&b, st[i].name);
            printf_buf(&b, "\",state=\"%s\"} %" PRIu64 "\n", states[k], values[k]);
        }
    }
    metric_head(&b, "ferry_replication_lag_seconds", "gauge",
                "Age of the oldest unfinished journal entry per destination; 0 when idle.");
    for (size_t i = 0; i < n; i++) {
        if (!is_destination(c, st[i].name))
            continue;
        double lag = st[i].oldest_unix_ms > 0 && now > st[i].oldest_unix_ms
                         ? (double)(now - st[i].oldest_unix_ms) / 1000.0
                         : 0;
        metric_1(&b, "ferry_replication_lag_seconds", "destination", st[i].name);
        printf_buf(&b, "%.3f\n", lag);
    }
    metric_head(&b, "ferry_backlog", "gauge", "Unfinished jobs per destination.");
    for (size_t i = 0; i < n; i++) {
        if (!is_destination(c, st[i].name))
            continue;
        metric_1(&b, "ferry_backlog", "destination", st[i].name);
        printf_buf(&b, "%" PRIu64 "\n", st[i].backlog);
    }
    metric_head(&b, "ferry_bytes_total", "counter",
                "HTTP bytes by registry and direction (sent: requests, received: responses).");
    for (size_t i = 0; i < n; i++) {
        for (int dir = 0; dir < 2; dir++) {
            printf_buf(&b, "ferry_bytes_total{registry=\"");
            label(&b, st[i].name);
            printf_buf(&b, "\",direction=\"%s\"} %" PRIu64 "\n", dir == 0 ? "sent" : "received",
                       dir == 0 ? st[i].http.bytes_sent : st[i].http.bytes_received);
        }
    }
    metric_head(&b, "ferry_http_requests_total", "counter",
                "Finished HTTP requests by registry, method and status (0: no response).");
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < st[i].http.n_codes; k++) {
            const struct http_code_count *cc = &st[i].http.codes[k];
            printf_buf(&b, "ferry_http_requests_total{registry=\"");
            label(&b, st[i].name);
            printf_buf(&b, "\",method=\"%s\",code=\"%u\"} %" PRIu64 "\n",
                       http_method_names[cc->method], (unsigned)cc->code, cc->count);
        }
    }
    metric_head(&b, "ferry_registry_invalid_names_total", "counter",
                "Repository names and tags from a registry's listings that failed validation and "
                "were skipped.");
    for (size_t i = 0; i < n; i++) {
        uint64_t invalid = st[i].invalid_names;
        if (a->poller != NULL)
            invalid += poller_invalid_names(a->poller, st[i].name);
        metric_1(&b, "ferry_registry_invalid_names_total", "registry", st[i].name);
        printf_buf(&b, "%" PRIu64 "\n", invalid);
    }
    metric_head(&b, "ferry_retries_total", "counter", "Job attempts that failed and were retried.");
    for (size_t i = 0; i < n; i++) {
        if (!is_destination(c, st[i].name))
            continue;
        metric_1(&b, "ferry_retries_total", "destination", st[i].name);
        printf_buf(&b, "%" PRIu64 "\n", st[i].retries);
    }
    metric_head(&b, "ferry_circuit_open", "gauge",
                "1 while a destination's circuit breaker is open or half-open.");
    for (size_t i = 0; i < n; i++) {
        if (!is_destination(c, st[i].name))
            continue;
        metric_1(&b, "ferry_circuit_open", "destination", st[i].name);
        printf_buf(&b, "%d\n", st[i].circuit != ENGINE_CIRCUIT_CLOSED);
    }
    metric_head(&b, "ferry_push_to_replicated_seconds", "histogram",
                "From an entry reaching the journal to its job being COMPLETE.");
    for (size_t i = 0; i < n; i++) {
        if (!is_destination(c, st[i].name))
            continue;
        uint64_t cum = 0;
        for (size_t k = 0; k <= ENGINE_LATENCY_BUCKETS; k++) {
            cum += st[i].latency_buckets[k];
            printf_buf(&b, "ferry_push_to_replicated_seconds_bucket{destination=\"");
            label(&b, st[i].name);
            if (k < ENGINE_LATENCY_BUCKETS)
                printf_buf(&b, "\",le=\"%g\"} %" PRIu64 "\n", engine_latency_bounds[k], cum);
            else
                printf_buf(&b, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
        }
        metric_1(&b, "ferry_push_to_replicated_seconds_sum", "destination", st[i].name);
        printf_buf(&b, "%.3f\n", st[i].latency_sum);
        metric_1(&b, "ferry_push_to_replicated_seconds_count", "destination", st[i].name);
        printf_buf(&b, "%" PRIu64 "\n", st[i].latency_count);
    }
    if (a->ingest != NULL) {
        metric_head(&b, "ferry_webhook_events_total", "counter",
                    "Webhook events by outcome (accepted, duplicate, ignored).");
        printf_buf(&b,
                   "ferry_webhook_events_total{outcome=\"accepted\"} %" PRIu64 "\n"
                   "ferry_webhook_events_total{outcome=\"duplicate\"} %" PRIu64 "\n"
                   "ferry_webhook_events_total{outcome=\"ignored\"} %" PRIu64 "\n",
                   a->ingest->events_accepted, a->ingest->events_duplicate,
                   a->ingest->events_ignored);
    }
    server_respond(req, 200, "text/plain; version=0.0.4", b.data != NULL ? b.data : "", b.len);
    buf_release(&b);
    free(st);
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
    bool v1 = strncmp(path, "/v1/", 4) == 0;

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

bool api_handle(struct api *a, struct server_request *req)
{
    const char *path = server_request_path(req);
    const char *method = server_request_method(req);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    if (strcmp(path, "/healthz") == 0 && get) {
        server_respond(req, 200, "application/json", "{\"status\":\"ok\"}\n", 16);
        return true;
    }
    if (strcmp(path, "/readyz") == 0 && get) {
        char body[128];
        bool ready = !*a->stopping && a->engine != NULL;
        int len = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"last_seq\":%" PRIu64 "}\n",
                           ready ? "ready" : "stopping", journal_last_seq(a->journal));
        server_respond(req, ready ? 200 : 503, "application/json", body, (size_t)len);
        return true;
    }
    if (get && api_asset(req, path))
        return true;
    if (strcmp(path, "/metrics") == 0 && get)
        api_metrics(a, req);
    else if (strcmp(path, "/v1/status") == 0 && get)
        api_status(a, req);
    else if (strcmp(path, "/v1/images") == 0 && get)
        api_images(a, req);
    else if (strcmp(path, "/v1/failures") == 0 && get)
        api_failures(a, req);
    else if (strcmp(path, "/v1/journal") == 0 && get)
        api_journal(a, req);
    else if (strcmp(path, "/v1/retry") == 0 && strcmp(method, "POST") == 0)
        api_retry(a, req);
    else
        return false;
    return true;
}
