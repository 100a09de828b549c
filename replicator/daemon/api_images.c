/*
 * api_images.c: GET /v1/images, an image's state in every destination. With
 * an engine it asks the registries, through the engine's clients, what the
 * image's reference names now (image lookups, sharing their registry calls
 * as probes); without one, or while the api drains, it answers from the
 * journal's job records alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "daemon/api_int.h"
#include "registry/registry.h"

/* ---- the job records' part of an answer ---- */

/*
 * A destination's job fields, from its record `job` (NULL: none): attempts,
 * last_error, bytes, created, updated, completed.
 */
static void job_fields_json(cJSON *d, const struct journal_job *job)
{
    cJSON_AddNumberToObject(d, "attempts", job != NULL ? job->attempts : 0);
    cJSON_AddItemToObject(
        d, "last_error",
        api_json_string_or_null(job != NULL && job->last_error != NULL && job->last_error[0] != '\0'
                                    ? job->last_error
                                    : NULL));
    cJSON_AddNumberToObject(d, "bytes", job != NULL ? (double)job->bytes : 0);
    cJSON_AddItemToObject(d, "created", api_json_time(job != NULL ? job->created_unix_ms : 0));
    cJSON_AddItemToObject(d, "updated", api_json_time(job != NULL ? job->updated_unix_ms : 0));
    cJSON_AddItemToObject(d, "completed", api_json_time(job != NULL ? job->completed_unix_ms : 0));
}

/* ---- GET /v1/images from the journal ---- */

struct tag_pick {
    const char *tag;
    struct journal_job best;
    bool found;
};

/* Keep a copy of the newest job (by seq) that moves the tag. */
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
    cJSON_AddItemToObject(d, "digest", api_json_string_or_null(job != NULL ? job->digest : NULL));
    job_fields_json(d, job);
    return d;
}

/*
 * The job record of one destination repository: for a digest its own, for
 * a tag the newest that moves it. Returns 1 with *job set, 0 when there is
 * none, or a negative code when the journal could not be read.
 */
static int image_job_find(struct api *a, const char *registry, const char *dst_repo,
                          const char *tag, const char *digest, struct journal_job *job)
{
    if (digest != NULL)
        return api_job_get(a, registry, dst_repo, digest, job) ? 1 : 0;
    struct tag_pick pick = {.tag = tag};
    int rc = journal_job_scan_in(a->journal, registry, dst_repo, pick_tag, &pick);
    if (rc < 0) {
        if (pick.found)
            journal_job_release(&pick.best);
        return rc;
    }
    if (!pick.found)
        return 0;
    *job = pick.best;
    return 1;
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
    cJSON_AddItemToObject(root, "tag", api_json_string_or_null(tag));
    cJSON *dests = cJSON_CreateArray();
    uint64_t newest = 0;
    char *picked_digest = NULL;
    size_t known = 0;
    int rc = 0;
    for (size_t r = 0; r < a->config->n_rules && rc >= 0; r++) {
        const struct config_rule *rule = &a->config->rules[r];
        if (!config_rule_selects(rule, repo, tag))
            continue;
        for (size_t d = 0; d < rule->n_destinations && rc >= 0; d++) {
            const struct config_destination *dest = &rule->destinations[d];
            char *dst_repo = config_destination_repository(dest, repo);
            if (dst_repo == NULL)
                continue;
            struct journal_job job;
            rc = image_job_find(a, dest->registry, dst_repo, tag, digest, &job);
            bool have = rc == 1;
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
    cJSON_AddItemToObject(root, "digest",
                          api_json_string_or_null(digest != NULL ? digest : picked_digest));
    cJSON_AddItemToObject(root, "destinations", dests);
    free(picked_digest);
    if (rc < 0) {
        cJSON_Delete(root);
        log_warn("job records unreadable repo=%s error=\"%s\"", repo, ferry_strerror(rc));
        server_respond_error(req, 500, "the journal could not read the job records");
    } else if (known == 0) {
        cJSON_Delete(root);
        server_respond_error(req, 404, "no replication of this image is known");
    } else {
        api_respond_json(req, 200, root);
    }
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

/* Take `p` off the api's list of probes and free it. */
static void probe_free(struct api_probe *p)
{
    struct api_probe **at = &p->api->probes;
    while (*at != p)
        at = &(*at)->next;
    *at = p->next;
    free(p->waiters);
    free(p->key);
    free(p->repository);
    free(p->reference);
    free(p);
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
    /* The probe leaves the list before its waiters hear the answer, as before it is freed. */
    struct image_check **waiters = p->waiters;
    size_t n_waiters = p->n_waiters;
    p->waiters = NULL;
    probe_free(p);
    for (size_t i = 0; i < n_waiters; i++)
        check_finish(waiters[i], rc, digest, text);
    free(text);
    free(waiters);
}

/* The probe in flight for `key`, or a new one listed (and *fresh set) for the caller to start. */
static struct api_probe *probe_find_or_add(struct api *a, struct image_check *c, char *key,
                                           bool *fresh)
{
    struct api_probe *p = a->probes;
    while (p != NULL && strcmp(p->key, key) != 0)
        p = p->next;
    *fresh = p == NULL;
    if (p != NULL) {
        free(key);
        return p;
    }
    p = xcalloc(1, sizeof(*p));
    p->api = a;
    p->reg = c->reg;
    p->key = key;
    p->repository = xstrdup(c->repository);
    p->reference = xstrdup(lookup_reference(c->lookup));
    p->next = a->probes;
    a->probes = p;
    return p;
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
    int rc = FERRY_EINVAL;
    if (c->reg == NULL)
        goto out;
    bool fresh;
    char *key =
        xasprintf("%s\n%d\n%s\n%s", c->registry, c->push, c->repository, lookup_reference(l));
    struct api_probe *p = probe_find_or_add(l->api, c, key, &fresh);
    p->waiters = xrealloc(p->waiters, (p->n_waiters + 1) * sizeof(*p->waiters));
    p->waiters[p->n_waiters++] = c;
    c->running = true;
    l->running++;
    rc = 0;
    if (!fresh)
        goto out;
    /* A HEAD, and a GET where the HEAD names no valid digest. */
    registry_manifest_resolve(p->reg, p->repository, p->reference, NULL, 0, probe_done, p);
out:
    if (rc < 0) {
        c->rc = rc;
        c->error = xasprintf("%s/%s:%s: %s", c->host, c->repository, lookup_reference(l),
                             c->reg != NULL ? ferry_strerror(rc) : "no client for this registry");
    }
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
    bool have = want != NULL && api_job_get(l->api, c->registry, c->repository, want, &job);
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
    cJSON_AddItemToObject(d, "digest", api_json_string_or_null(want));
    cJSON_AddItemToObject(d, "current_digest",
                          api_json_string_or_null(!c->running && c->rc == 0 ? c->digest : NULL));
    char *check_error = NULL;
    if (c->running)
        check_error = xasprintf("%s did not answer within %d ms", c->host, API_LOOKUP_DEADLINE_MS);
    else if (c->rc != 0 && c->rc != FERRY_ENOTFOUND)
        check_error = xstrdup(c->error);
    cJSON_AddItemToObject(d, "check_error", api_json_string_or_null(check_error));
    free(check_error);
    job_fields_json(d, have ? &job : NULL);
    if (have)
        journal_job_release(&job);
    return d;
}

/*
 * For a tag the source decides: gone is 404, unknown is 502/503. True when
 * it answered so (the sources of every rule are asked).
 */
static bool lookup_answer_tag_gone(struct image_lookup *l)
{
    for (size_t i = 0; i < l->n_sources; i++) {
        const struct image_check *src = &l->sources[i];
        if (!src->running && src->rc == FERRY_ENOTFOUND) {
            char msg[512];
            snprintf(msg, sizeof(msg),
                     "%s:%s is not at the source %s (%s); a push may be on its way", l->repository,
                     l->tag, src->registry, src->host);
            server_respond_error(l->req, 404, msg);
            return true;
        }
        if (src->running || src->rc != 0) {
            lookup_respond_source_error(l, src);
            return true;
        }
    }
    return false;
}

/*
 * For a digest the source matters only when nothing else knows the image:
 * then a source without it is 404, one that could not say 502/503. True
 * when it answered so.
 */
static bool lookup_answer_digest_unknown(struct image_lookup *l)
{
    const struct image_check *lacking = NULL;
    for (size_t i = 0; i < l->n_sources && lacking == NULL; i++)
        if (l->sources[i].running || l->sources[i].rc != 0)
            lacking = &l->sources[i];
    if (lacking == NULL)
        return false;
    if (!lacking->running && lacking->rc == FERRY_ENOTFOUND) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s@%s is not at the source %s (%s) and no destination holds it",
                 l->repository, l->digest, lacking->registry, lacking->host);
        server_respond_error(l->req, 404, msg);
    } else {
        lookup_respond_source_error(l, lacking);
    }
    return true;
}

/* Answer with what the registries said so far (checks still running could not say). */
static void lookup_answer(struct image_lookup *l)
{
    if (l->tag != NULL && lookup_answer_tag_gone(l)) {
        l->req = NULL;
        return;
    }
    const struct image_check *first = &l->sources[0];
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "repository", l->repository);
    cJSON_AddItemToObject(root, "tag", api_json_string_or_null(l->tag));
    cJSON_AddItemToObject(root, "digest",
                          api_json_string_or_null(l->tag != NULL ? first->digest : l->digest));
    cJSON *source = cJSON_AddObjectToObject(root, "source");
    cJSON_AddStringToObject(source, "name", first->registry);
    cJSON_AddStringToObject(source, "registry", first->host);
    cJSON_AddItemToObject(
        source, "digest",
        api_json_string_or_null(!first->running && first->rc == 0 ? first->digest : NULL));
    cJSON *dests = cJSON_AddArrayToObject(root, "destinations");
    bool known = false;
    for (size_t i = 0; i < l->n_rows; i++) {
        const struct image_row *row = &l->rows[i];
        /* Each destination against its own rule's source. */
        const char *want = l->tag != NULL ? l->sources[row->source].digest : l->digest;
        cJSON_AddItemToArray(dests, lookup_row_json(l, row, want, &known));
    }
    if (l->digest != NULL && !known && lookup_answer_digest_unknown(l))
        cJSON_Delete(root);
    else
        api_respond_json(l->req, 200, root);
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
    api_lookup_ended(a);
}

/* Once every check is back: answer (unless the deadline did) and free through the loop. */
static void lookup_settle(struct image_lookup *l)
{
    if (l->running > 0)
        return;
    if (l->req != NULL)
        lookup_answer(l);
    if (uv_timer_stop(&l->deadline) < 0)
        log_warn("image lookup deadline did not stop");
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

/*
 * A lookup of the image with a row for each destination of each rule that
 * selects it, and its rules' sources; NULL (after answering 404) when no
 * rule replicates it.
 */
static struct image_lookup *lookup_new(struct api *a, struct server_request *req, const char *repo,
                                       const char *tag, const char *digest)
{
    struct image_lookup *l = xcalloc(1, sizeof(*l));
    l->api = a;
    l->req = req;
    l->repository = xstrdup(repo);
    l->tag = xstrdup(tag);
    l->digest = xstrdup(digest);
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
        return NULL;
    }
    return l;
}

/* Arm the lookup's deadline and ask every registry; it answers and frees itself. */
static void lookup_run(struct image_lookup *l)
{
    struct api *a = l->api;
    int rc = uv_timer_init(a->loop, &l->deadline);
    if (rc < 0) {
        log_warn("image lookup could not start error=\"%s\"", ferry_strerror(rc));
        server_respond_error(l->req, 503, "the image lookup could not start; retry");
        lookup_free(l);
        return;
    }
    a->lookups++;
    l->deadline.data = l;
    /* Held at one while the checks start, so that none settles the lookup early. */
    l->running = 1;
    rc = uv_timer_start(&l->deadline, lookup_deadline, API_LOOKUP_DEADLINE_MS, 0);
    if (rc < 0) {
        log_warn("image lookup could not start error=\"%s\"", ferry_strerror(rc));
        server_respond_error(l->req, 503, "the image lookup could not start; retry");
        l->req = NULL;
    } else {
        for (size_t i = 0; i < l->n_sources; i++)
            check_start(&l->sources[i]);
        for (size_t i = 0; i < l->n_rows; i++)
            check_start(&l->rows[i].check);
    }
    l->running--;
    lookup_settle(l);
}

void api_get_images(struct api *a, struct server_request *req)
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
    struct image_lookup *l = lookup_new(a, req, repo, tag, digest);
    if (l != NULL)
        lookup_run(l);
}
