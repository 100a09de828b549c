/*
 * verify.c: the run of `ferry verify` (see verify.h): every registry a rule
 * names is pinged, then each rule's source is listed, and each selected tag
 * has its closure resolved at the source (resolve.h, leniently) before
 * every destination is checked (verify_check.c).
 */
#include "replication/verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "replication/rule_platform.h"
#include "replication/verify_int.h"

static void verify_pump_tags(struct verify *v);
static void verify_pump_listings(struct verify *v);

/* ---- failures ---- */

/* The client of a registry the config names (config_load() checked every name). */
struct verify_registry *verify_registry_of(struct verify *v, const char *name)
{
    const struct config_registry *cfg = config_registry_find(v->config, name);
    return &v->regs[cfg - v->config->registries];
}

bool verify_failed(const struct verify *v)
{
    return v->rc < 0;
}

char *verify_failure_line(const struct verify_registry *r, int rc, const char *error)
{
    const char *what = error != NULL ? error : ferry_strerror(rc);
    if (rc == FERRY_ECONNECT || rc == FERRY_ETIMEOUT)
        return xasprintf("registry '%s' (%s) is unreachable: %s", r->cfg->name, r->cfg->host, what);
    if (rc == FERRY_EAUTH && r->cfg->username == NULL)
        return xasprintf("registry '%s' (%s): %s (the config gives it no username)", r->cfg->name,
                         r->cfg->host, what);
    return xasprintf("registry '%s' (%s): %s", r->cfg->name, r->cfg->host, what);
}

/*
 * Remember the first failure; everything still queued is then canceled and
 * nothing new is started. FERRY_EINVAL is kept for config errors, so a
 * registry's is reported as a protocol error.
 */
void verify_fail(struct verify *v, struct verify_registry *r, int rc, const char *error)
{
    if (verify_failed(v) || rc == FERRY_ECANCELED)
        return;
    v->rc = rc == FERRY_EINVAL ? FERRY_EPROTO : rc;
    v->error = verify_failure_line(r, rc, error);
}

/* ---- one source tag ---- */

static void tag_free(struct verify_tag *t)
{
    free(t->repository);
    free(t->tag);
    free(t->digest);
    free(t->expected);
    resolve_free(t->closure);
    for (size_t i = 0; i < t->n_items; i++) {
        free(t->items[i].digest);
        free(t->items[i].parent);
        free(t->items[i].platform);
    }
    free(t->items);
    for (size_t i = 0; i < t->n_referrers; i++)
        free(t->referrers[i]);
    free(t->referrers);
    free(t);
}

void verify_tag_finish(struct verify_tag *t, bool verified)
{
    struct verify *v = t->v;
    if (verified && !verify_failed(v))
        v->tags_verified++;
    tag_free(t);
    v->active_tags--;
    verify_pump_tags(v);
}

/* What the source could not give of the closure is left out of the check, and logged. */
static void tag_log_gaps(const struct verify_tag *t)
{
    const char *source = t->src->cfg->name;
    const struct resolve_node *root = resolve_root(t->closure);
    for (size_t i = 0; i < resolve_count(t->closure); i++) {
        const struct resolve_node *n = resolve_node_at(t->closure, i);
        if (n->error != NULL && n == root)
            log_warn("unreadable manifest, checking the tag only registry=%s repo=%s tag=%s "
                     "error=\"%s\"",
                     source, t->repository, t->tag, n->error);
        else if (n->rc == FERRY_ENOTFOUND)
            log_warn("source lacks a child manifest registry=%s repo=%s tag=%s digest=%s", source,
                     t->repository, t->tag, n->digest);
        else if (n->error != NULL)
            log_warn("unreadable child manifest registry=%s repo=%s digest=%s error=\"%s\"", source,
                     t->repository, n->digest, n->error);
        if (n->referrers_error != NULL)
            log_warn("unreadable referrers index registry=%s repo=%s digest=%s error=\"%s\"",
                     source, t->repository, n->digest, n->referrers_error);
    }
}

static void tag_resolved(struct resolve *closure, int rc, const char *error, void *arg)
{
    struct verify_tag *t = arg;
    (void)closure;
    const struct resolve_node *root = resolve_root(closure);
    if (rc == FERRY_ENOTFOUND && t->platform != NULL && root != NULL &&
        root->m.kind == MANIFEST_INDEX) {
        /* What the rule copies is not at the source: the engine's job fails
         * on the source, and every destination lacks the tag, as `ferry
         * sync` and `ferry status` say too. */
        if (t->digest == NULL)
            t->digest = xstrdup(root->digest);
        t->expected = xstrdup(t->digest); /* the drift names the index the tag names */
        verify_tag_unavailable(
            t, xasprintf("source %s has no manifest for %s", root->digest, t->platform));
        verify_tag_finish(t, true);
        return;
    }
    if (rc == FERRY_ENOTFOUND) {
        log_info("tag vanished at the source rule=%s repo=%s tag=%s", t->rule->name, t->repository,
                 t->tag);
        verify_tag_finish(t, false);
        return;
    }
    if (rc < 0 || verify_failed(t->v)) {
        verify_fail(t->v, t->src, rc, error);
        verify_tag_finish(t, false);
        return;
    }
    /* With a platform picked out of an index, the destination holds that
     * platform's manifest (rule_platform.h), and the index is not part of it. */
    const struct resolve_node *index = resolve_platform_index(closure);
    if (t->digest == NULL)
        t->digest = xstrdup(index != NULL ? index->digest : root->digest);
    t->expected = xstrdup(root->digest);
    t->picked = index != NULL;
    tag_log_gaps(t);
    verify_tag_check(t);
}

/*
 * The closure of the tag's digest (of the tag itself when the source named
 * no digest: the GET computes it from the bytes), leniently: a source that
 * cannot give all of it still has its tag and what it can give checked.
 */
static void tag_resolve(struct verify_tag *t)
{
    struct resolve_spec spec = {
        .src = t->src->cl.pull,
        .repo = t->repository,
        .reference = t->digest != NULL ? t->digest : t->tag,
        .platform = t->platform,
        .referrers = t->rule->referrers ? RESOLVE_REFERRERS_ROOT : RESOLVE_REFERRERS_NONE,
        .lenient = true,
        .fetch = &t->src->fetch,
    };
    resolve_start(&spec, tag_resolved, t, &t->closure);
}

static void tag_head_done(struct verify_request *req)
{
    struct verify_tag *t = req->arg;
    if (req->rc < 0) {
        verify_fail(t->v, req->r, req->rc, req->error);
        verify_tag_finish(t, false);
    } else if (!req->exists) {
        log_info("tag vanished at the source rule=%s repo=%s tag=%s", t->rule->name, t->repository,
                 t->tag);
        verify_tag_finish(t, false);
    } else {
        t->digest = req->digest != NULL ? xstrdup(req->digest) : NULL;
        tag_resolve(t);
    }
}

static void verify_pump_tags(struct verify *v)
{
    while (v->pending_head != NULL &&
           (verify_failed(v) || v->active_tags < VERIFY_TAGS_IN_FLIGHT)) {
        struct verify_tag *t = v->pending_head;
        v->pending_head = t->next;
        if (v->pending_head == NULL)
            v->pending_tail = NULL;
        t->next = NULL;
        v->n_pending--;
        if (verify_failed(v)) {
            tag_free(t);
            continue;
        }
        v->active_tags++;
        verify_request_submit(t->src, REQ_MANIFEST_HEAD, t->repository, t->tag, tag_head_done, t,
                              0);
    }
    verify_pump_listings(v);
}

/* ---- listings ---- */

static void verify_tags_done(struct verify_request *req)
{
    struct verify *v = req->r->v;
    const struct config_rule *rule = req->rule;
    v->active_listings--;
    if (req->rc == FERRY_ENOTFOUND) {
        /* Blobs and no manifest (an aborted push): nothing to compare. */
        log_info("repository has no tags registry=%s repo=%s", req->r->cfg->name, req->repository);
        verify_pump_listings(v);
        return;
    }
    if (req->rc < 0) {
        verify_fail(v, req->r, req->rc, req->error);
        verify_pump_listings(v);
        return;
    }
    for (size_t i = 0; i < req->n_items && !verify_failed(v); i++) {
        const char *tag = req->items[i];
        if (reference_is_referrers_tag(tag) || !config_rule_selects(rule, req->repository, tag))
            continue;
        struct verify_tag *t = xcalloc(1, sizeof(*t));
        t->v = v;
        t->rule = rule;
        t->src = req->r;
        t->repository = xstrdup(req->repository);
        t->tag = xstrdup(tag);
        t->platform = rule_platform_pick(rule);
        if (v->pending_tail != NULL)
            v->pending_tail->next = t;
        else
            v->pending_head = t;
        v->pending_tail = t;
        v->n_pending++;
    }
    verify_pump_tags(v);
}

/*
 * List the next repositories while the tags waiting for a place are few:
 * a catalog of 10,000 repositories is listed as its tags are checked, not
 * all at once into memory.
 */
static void verify_pump_listings(struct verify *v)
{
    while (v->listings_head != NULL &&
           (verify_failed(v) || (v->n_pending < VERIFY_TAGS_WAITING &&
                                 v->active_listings < VERIFY_LISTINGS_IN_FLIGHT))) {
        struct verify_listing *l = v->listings_head;
        v->listings_head = l->next;
        if (v->listings_head == NULL)
            v->listings_tail = NULL;
        if (!verify_failed(v)) {
            struct verify_request *req = verify_request_new(l->src, REQ_TAGS, l->repository, NULL,
                                                            verify_tags_done, NULL, 0);
            req->rule = l->rule;
            v->active_listings++;
            verify_request_queue(req);
        }
        free(l->repository);
        free(l);
    }
}

static void verify_list_tags(struct verify_registry *src, const struct config_rule *rule,
                             const char *repository)
{
    struct verify *v = src->v;
    if (!config_rule_selects(rule, repository, NULL))
        return;
    struct verify_listing *l = xcalloc(1, sizeof(*l));
    l->src = src;
    l->rule = rule;
    l->repository = xstrdup(repository);
    if (v->listings_tail != NULL)
        v->listings_tail->next = l;
    else
        v->listings_head = l;
    v->listings_tail = l;
}

static void verify_catalog_done(struct verify_request *req)
{
    struct verify *v = req->r->v;
    if (req->rc < 0) {
        char *error = xasprintf("%s (a registry without _catalog needs its repositories listed "
                                "under registries.%s.repositories)",
                                req->error, req->r->cfg->name);
        verify_fail(v, req->r, req->rc, error);
        free(error);
        return;
    }
    for (size_t i = 0; i < req->n_items && !verify_failed(v); i++)
        verify_list_tags(req->r, req->rule, req->items[i]);
    verify_pump_listings(v);
}

static void verify_start(struct verify *v)
{
    for (size_t i = 0; i < v->config->n_rules && !verify_failed(v); i++) {
        const struct config_rule *rule = &v->config->rules[i];
        struct verify_registry *src = verify_registry_of(v, rule->source);
        if (src->cfg->n_repositories > 0) {
            for (size_t k = 0; k < src->cfg->n_repositories; k++)
                verify_list_tags(src, rule, src->cfg->repositories[k]);
            verify_pump_listings(v);
        } else {
            struct verify_request *req =
                verify_request_new(src, REQ_CATALOG, NULL, NULL, verify_catalog_done, NULL, 0);
            req->rule = rule;
            verify_request_queue(req);
        }
    }
}

/* ---- registries ---- */

static void verify_ping_step(struct verify *v)
{
    if (--v->pings_pending > 0)
        return;
    /* Report every registry that failed, in config order; the first decides the code. */
    for (size_t i = 0; i < v->config->n_registries; i++) {
        struct verify_registry *r = &v->regs[i];
        if (r->ping_rc < 0)
            verify_fail(v, r, r->ping_rc, r->ping_error);
    }
    if (!verify_failed(v))
        verify_start(v);
}

static void verify_ping_done(struct verify_request *req)
{
    struct verify_registry *r = req->r;
    if (req->rc < 0 && req->rc != FERRY_ECANCELED) {
        r->ping_rc = req->rc;
        r->ping_error = xstrdup(req->error);
    }
    verify_ping_step(r->v);
}

static void verify_registry_open(struct verify *v, struct verify_registry *r)
{
    struct clients_options copts = {0};
    clients_open(&v->loop, r->cfg, &copts, &r->cl);
    r->limit = r->cl.concurrency;
    verify_request_fetch_init(r);
}

/* A client for every registry some rule reads from or writes to, and nothing else. */
static void verify_registries_open(struct verify *v)
{
    const struct config *c = v->config;
    bool *used = xcalloc(c->n_registries ? c->n_registries : 1, sizeof(*used));
    v->regs = xcalloc(c->n_registries ? c->n_registries : 1, sizeof(*v->regs));
    for (size_t i = 0; i < c->n_registries; i++) {
        v->regs[i].v = v;
        v->regs[i].cfg = &c->registries[i];
    }
    for (size_t i = 0; i < c->n_rules; i++) {
        const struct config_rule *rule = &c->rules[i];
        used[verify_registry_of(v, rule->source) - v->regs] = true;
        for (size_t k = 0; k < rule->n_destinations; k++) {
            struct verify_registry *r = verify_registry_of(v, rule->destinations[k].registry);
            used[r - v->regs] = true;
            r->destination = true;
        }
    }
    for (size_t i = 0; i < c->n_registries && !verify_failed(v); i++)
        if (used[i])
            verify_registry_open(v, &v->regs[i]);
    free(used);
}

static void verify_registries_close(struct verify *v)
{
    /* The loop runs once more after this, and frees what closes. */
    for (size_t i = 0; i < v->config->n_registries; i++)
        clients_close(&v->regs[i].cl, NULL, NULL);
}

/* ---- the run ---- */

int verify_run(const char *config_path, bool json)
{
    struct verify v;
    char *err = NULL;
    int rc;

    memset(&v, 0, sizeof(v));
    rc = config_load(config_path, &v.config, &err);
    if (rc < 0) {
        fprintf(stderr, "ferry verify: %s\n", err != NULL ? err : ferry_strerror(rc));
        free(err);
        return FERRY_EINVAL;
    }
    rc = uv_loop_init(&v.loop);
    if (rc < 0) {
        fprintf(stderr, "ferry verify: cannot start an event loop: %s\n", uv_strerror(rc));
        config_free(v.config);
        return rc;
    }
    uint64_t start_ms = uv_now(&v.loop);
    verify_registries_open(&v);
    if (!verify_failed(&v)) {
        /* A ping of every registry first: an unreachable one is named before any listing. */
        v.pings_pending = 1;
        for (size_t i = 0; i < v.config->n_registries; i++) {
            if (v.regs[i].cl.pull == NULL)
                continue;
            v.pings_pending++;
            verify_request_submit(&v.regs[i], REQ_PING, NULL, NULL, verify_ping_done, NULL, 0);
        }
        verify_ping_step(&v);
    }
    uv_run(&v.loop, UV_RUN_DEFAULT);
    uv_update_time(&v.loop);
    double seconds = (double)(uv_now(&v.loop) - start_ms) / 1000.0;
    verify_registries_close(&v);
    uv_run(&v.loop, UV_RUN_DEFAULT);

    verify_report(&v, json, seconds);
    rc = verify_failed(&v) ? v.rc : v.n_drifts > v.n_kept ? 1 : 0;

    while (v.pending_head != NULL) {
        struct verify_tag *t = v.pending_head;
        v.pending_head = t->next;
        tag_free(t);
    }
    while (v.listings_head != NULL) {
        struct verify_listing *l = v.listings_head;
        v.listings_head = l->next;
        free(l->repository);
        free(l);
    }
    for (size_t i = 0; i < v.n_drifts; i++)
        verify_drift_release(&v.drifts[i]);
    free(v.drifts);
    for (size_t i = 0; i < v.config->n_registries; i++)
        free(v.regs[i].ping_error);
    free(v.regs);
    free(v.error);
    if (uv_loop_close(&v.loop) != 0)
        log_warn("verify loop closed with handles still open");
    config_free(v.config);
    return rc;
}
