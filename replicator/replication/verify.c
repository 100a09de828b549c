#include "replication/verify.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"
#include "common/digest.h"
#include "common/errors.h"
#include "registry/http.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/manifest.h"
#include "registry/registry.h"
#include "replication/clients.h"
#include "common/xalloc.h"

struct verify;
struct verify_request;

enum drift_kind {
    DRIFT_MISSING = 0,
    DRIFT_DIFFERS,
    DRIFT_INCOMPLETE,
    DRIFT_REFERRERS,
};

static const char *const drift_names[] = {"missing", "differs", "incomplete", "referrers"};

/* One configured registry that some rule reads from or writes to. */
struct verify_registry {
    struct verify *v;
    const struct config_registry *cfg;
    struct clients cl; /* zeroed: no rule names this registry */
    bool destination;  /* some rule writes to it */
    int limit;         /* requests in flight at once */
    int in_flight;
    bool pumping;
    struct verify_request *queue_head;
    struct verify_request *queue_tail;
    int ping_rc;
    char *ping_error;
};

enum request_kind {
    REQ_PING,
    REQ_CATALOG,
    REQ_TAGS,
    REQ_MANIFEST_HEAD,
    REQ_MANIFEST_GET,
    REQ_BLOB_HEAD,
    REQ_REFERRERS,
};

struct verify_request;
typedef void (*request_done_cb)(struct verify_request *req);

/*
 * One registry operation, queued so that no registry has more than its limit
 * in flight. Its results are copied in here, `done` runs exactly once (with
 * FERRY_ECANCELED when the run failed before it was sent), and the request is
 * freed right after.
 */
struct verify_request {
    struct verify_registry *r;
    enum request_kind kind;
    char *repository;
    char *reference; /* tag or digest */
    request_done_cb done;
    void *arg;
    const struct config_rule *rule; /* listings */
    size_t index;                   /* the caller's position of this request */
    int rc;
    char *error;
    bool exists; /* HEADs: false on 404 */
    char *bytes; /* GETs and referrers */
    size_t len;
    char *media_type;
    char *digest;
    char **items; /* listings */
    size_t n_items;
    struct verify_request *next;
};

/* Something a destination must hold for a tag to be whole. */
enum item_kind {
    ITEM_MANIFEST,
    ITEM_CONFIG,
    ITEM_LAYER,
};

struct verify_item {
    enum item_kind kind;
    char *digest;
    char *parent;   /* the manifest a blob belongs to */
    char *platform; /* of a child manifest, or NULL */
};

/* One source tag being verified against every destination of its rule. */
struct verify_tag {
    struct verify *v;
    const struct config_rule *rule;
    struct verify_registry *src;
    char *repository;
    char *tag;
    char *digest;
    struct manifest top;
    bool parsed;
    struct manifest *children; /* top.n_manifests of them, for an index */
    bool *child_parsed;
    struct verify_item *items;
    size_t n_items;
    char **referrers;
    size_t n_referrers;
    size_t src_pending;
    size_t checks_pending;
    struct verify_tag *next;
};

/* One destination of one verify_tag. */
struct verify_check {
    struct verify_tag *t;
    const struct config_destination *dest;
    struct verify_registry *dst;
    char *repository;
    char *digest;
    bool *item_missing;
    char **listed; /* referrers the destination lists */
    size_t n_listed;
    size_t pending;
};

struct verify_drift {
    enum drift_kind kind;
    const char *destination;
    char *repository;
    char *tag;
    char *detail;
    const char *rule;
    const char *source;
    char *source_repository;
    char *digest;
    char *destination_digest;
    char **missing;
    size_t n_missing;
};

struct verify {
    uv_loop_t loop;
    struct config *config;
    struct verify_registry *regs; /* parallel to config->registries */
    size_t pings_pending;
    struct verify_tag *pending_head; /* tags waiting for a slot */
    struct verify_tag *pending_tail;
    size_t active_tags;
    size_t tags_verified;
    int rc;      /* the first failure, or 0 */
    char *error; /* its line */
    struct verify_drift *drifts;
    size_t n_drifts;
};

static void verify_pump_tags(struct verify *v);

/* ---- failures ---- */

/* The client of a registry the config names (config_load() checked every name). */
static struct verify_registry *verify_registry_of(struct verify *v, const char *name)
{
    const struct config_registry *cfg = config_registry_find(v->config, name);
    return &v->regs[cfg - v->config->registries];
}

static bool verify_failed(const struct verify *v)
{
    return v->rc < 0;
}

static char *failure_line(const struct verify_registry *r, int rc, const char *error)
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
static void verify_fail(struct verify *v, struct verify_registry *r, int rc, const char *error)
{
    if (verify_failed(v) || rc == FERRY_ECANCELED)
        return;
    v->rc = rc == FERRY_EINVAL ? FERRY_EPROTO : rc;
    v->error = failure_line(r, rc, error);
}

/* ---- requests, at most r->limit in flight per registry ---- */

static void request_free(struct verify_request *req)
{
    free(req->repository);
    free(req->reference);
    free(req->error);
    free(req->bytes);
    free(req->media_type);
    free(req->digest);
    for (size_t i = 0; i < req->n_items; i++)
        free(req->items[i]);
    free(req->items);
    free(req);
}

static void queue_pump(struct verify_registry *r);

/* Hand the result to its caller, free the request, and start what waits. */
static void request_deliver(struct verify_request *req)
{
    struct verify_registry *r = req->r;
    req->done(req);
    request_free(req);
    queue_pump(r);
}

static void request_finish(struct verify_request *req, int rc, const char *error)
{
    req->r->in_flight--;
    req->rc = rc;
    if (rc < 0)
        req->error = xstrdup(error != NULL ? error : ferry_strerror(rc));
    request_deliver(req);
}

static void request_done(int rc, const char *error, void *arg)
{
    request_finish(arg, rc, error);
}

static void request_listed(int rc, const char *error, char **items, size_t n, void *arg)
{
    struct verify_request *req = arg;
    if (rc == 0) {
        /* The registry frees its copies after this callback: keep our own. */
        req->items = xcalloc(n ? n : 1, sizeof(*req->items));
        for (size_t i = 0; i < n; i++)
            req->items[i] = xstrdup(items[i]);
        req->n_items = n;
    }
    request_finish(req, rc, error);
}

static void request_manifest(int rc, const char *error, const char *bytes, size_t len,
                             const char *media_type, const char *digest, void *arg)
{
    struct verify_request *req = arg;
    if (req->kind == REQ_MANIFEST_HEAD && rc == FERRY_ENOTFOUND) {
        req->exists = false;
        rc = 0;
    } else if (rc == 0) {
        req->exists = true;
        req->len = len;
        if (bytes != NULL) {
            req->bytes = xmalloc(len + 1);
            memcpy(req->bytes, bytes, len);
            req->bytes[len] = '\0';
        }
        req->media_type = media_type != NULL ? xstrdup(media_type) : NULL;
        req->digest = digest != NULL && digest_valid(digest) ? xstrdup(digest) : NULL;
    }
    request_finish(req, rc, error);
}

static void request_exists(int rc, const char *error, bool exists, int64_t size, void *arg)
{
    struct verify_request *req = arg;
    (void)size;
    req->exists = exists;
    request_finish(req, rc, error);
}

static int request_start(struct verify_request *req)
{
    struct registry *reg = req->r->cl.pull;
    switch (req->kind) {
    case REQ_PING:
        return registry_ping(reg, request_done, req);
    case REQ_CATALOG:
        return registry_catalog(reg, request_listed, req);
    case REQ_TAGS:
        return registry_tags(reg, req->repository, request_listed, req);
    case REQ_MANIFEST_HEAD:
        return registry_manifest_head(reg, req->repository, req->reference, request_manifest, req);
    case REQ_MANIFEST_GET:
        return registry_manifest_get(reg, req->repository, req->reference, request_manifest, req);
    case REQ_BLOB_HEAD:
        return registry_blob_exists(reg, req->repository, req->reference, request_exists, req);
    case REQ_REFERRERS:
        return registry_referrers(reg, req->repository, req->reference, request_manifest, req);
    }
    return FERRY_EINVAL;
}

/*
 * Start queued requests while the registry has room. Requests finishing
 * inside (a call that fails at once, or cancellation after a failure) may
 * queue more; the guard keeps this one loop draining them instead of
 * recursing.
 */
static void queue_pump(struct verify_registry *r)
{
    if (r->pumping)
        return;
    r->pumping = true;
    while (r->queue_head != NULL && (verify_failed(r->v) || r->in_flight < r->limit)) {
        struct verify_request *req = r->queue_head;
        r->queue_head = req->next;
        if (r->queue_head == NULL)
            r->queue_tail = NULL;
        req->next = NULL;
        if (verify_failed(r->v)) {
            req->rc = FERRY_ECANCELED;
            req->error = xstrdup(ferry_strerror(FERRY_ECANCELED));
            req->done(req);
            request_free(req);
            continue;
        }
        r->in_flight++;
        int rc = request_start(req);
        if (rc < 0) {
            /* The callback never fires for a call that failed. */
            r->in_flight--;
            req->rc = rc;
            req->error = xstrdup(ferry_strerror(rc));
            req->done(req);
            request_free(req);
        }
    }
    r->pumping = false;
}

static struct verify_request *request_new(struct verify_registry *r, enum request_kind kind,
                                          const char *repository, const char *reference,
                                          request_done_cb done, void *arg, size_t index)
{
    struct verify_request *req = xcalloc(1, sizeof(*req));
    req->r = r;
    req->kind = kind;
    req->repository = repository != NULL ? xstrdup(repository) : NULL;
    req->reference = reference != NULL ? xstrdup(reference) : NULL;
    req->done = done;
    req->arg = arg;
    req->index = index;
    return req;
}

/* Queue `req` behind its registry's others; its `done` may run before this returns. */
static void request_queue(struct verify_request *req)
{
    struct verify_registry *r = req->r;
    if (r->queue_tail != NULL)
        r->queue_tail->next = req;
    else
        r->queue_head = req;
    r->queue_tail = req;
    queue_pump(r);
}

static void request_submit(struct verify_registry *r, enum request_kind kind,
                           const char *repository, const char *reference, request_done_cb done,
                           void *arg, size_t index)
{
    request_queue(request_new(r, kind, repository, reference, done, arg, index));
}

/* ---- drift ---- */

static struct verify_drift *drift_add(struct verify_check *c, enum drift_kind kind, char *detail)
{
    struct verify *v = c->t->v;
    v->drifts = xrealloc(v->drifts, (v->n_drifts + 1) * sizeof(*v->drifts));
    struct verify_drift *d = &v->drifts[v->n_drifts++];
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->destination = c->dest->registry;
    d->repository = xstrdup(c->repository);
    d->tag = xstrdup(c->t->tag);
    d->detail = detail;
    d->rule = c->t->rule->name;
    d->source = c->t->rule->source;
    d->source_repository = xstrdup(c->t->repository);
    d->digest = xstrdup(c->t->digest);
    log_info("drift dest=%s repo=%s tag=%s kind=%s", d->destination, d->repository, d->tag,
             drift_names[kind]);
    return d;
}

static void drift_add_missing(struct verify_drift *d, const char *digest)
{
    d->missing = xrealloc(d->missing, (d->n_missing + 1) * sizeof(*d->missing));
    d->missing[d->n_missing++] = xstrdup(digest);
}

static void drift_release(struct verify_drift *d)
{
    free(d->repository);
    free(d->tag);
    free(d->detail);
    free(d->source_repository);
    free(d->digest);
    free(d->destination_digest);
    for (size_t i = 0; i < d->n_missing; i++)
        free(d->missing[i]);
    free(d->missing);
}

static int drift_compare(const void *a, const void *b)
{
    const struct verify_drift *x = a;
    const struct verify_drift *y = b;
    int c = strcmp(x->destination, y->destination);
    if (c == 0)
        c = strcmp(x->repository, y->repository);
    if (c == 0)
        c = strcmp(x->tag, y->tag);
    if (c == 0)
        c = (int)x->kind - (int)y->kind;
    return c;
}

static void drift_print(const struct verify_drift *d, bool json)
{
    if (!json) {
        printf("drift %s %s:%s %s %s\n", d->destination, d->repository, d->tag,
               drift_names[d->kind], d->detail);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "drift");
    cJSON_AddStringToObject(j, "destination", d->destination);
    cJSON_AddStringToObject(j, "repository", d->repository);
    cJSON_AddStringToObject(j, "tag", d->tag);
    cJSON_AddStringToObject(j, "kind", drift_names[d->kind]);
    cJSON_AddStringToObject(j, "detail", d->detail);
    cJSON_AddStringToObject(j, "rule", d->rule);
    cJSON_AddStringToObject(j, "source", d->source);
    cJSON_AddStringToObject(j, "source_repository", d->source_repository);
    cJSON_AddStringToObject(j, "digest", d->digest);
    if (d->destination_digest != NULL)
        cJSON_AddStringToObject(j, "destination_digest", d->destination_digest);
    if (d->kind == DRIFT_INCOMPLETE || d->kind == DRIFT_REFERRERS) {
        cJSON *missing = cJSON_AddArrayToObject(j, "missing");
        for (size_t i = 0; i < d->n_missing; i++)
            cJSON_AddItemToArray(missing, cJSON_CreateString(d->missing[i]));
    }
    char *text = xjson_print(j, false);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(j);
}

/* ---- what a destination must hold ---- */

static char *platform_text(const struct descriptor *d)
{
    if (d->platform_os == NULL || d->platform_arch == NULL)
        return NULL;
    return xasprintf("%s/%s%s%s", d->platform_os, d->platform_arch, d->platform_variant ? "/" : "",
                     d->platform_variant ? d->platform_variant : "");
}

static void items_add(struct verify_tag *t, enum item_kind kind, const char *digest,
                      const char *parent, char *platform)
{
    t->items = xrealloc(t->items, (t->n_items + 1) * sizeof(*t->items));
    struct verify_item *it = &t->items[t->n_items++];
    it->kind = kind;
    it->digest = xstrdup(digest);
    it->parent = parent != NULL ? xstrdup(parent) : NULL;
    it->platform = platform;
}

static void items_add_image(struct verify_tag *t, const struct manifest *m, const char *digest)
{
    items_add(t, ITEM_CONFIG, m->config.digest, digest, NULL);
    for (size_t i = 0; i < m->n_layers; i++)
        items_add(t, ITEM_LAYER, m->layers[i].digest, digest, NULL);
}

struct item_order {
    const char *digest;
    size_t index;
};

static int item_order_compare(const void *a, const void *b)
{
    const struct item_order *x = a;
    const struct item_order *y = b;
    int c = strcmp(x->digest, y->digest);
    if (c == 0)
        c = x->index < y->index ? -1 : x->index > y->index;
    return c;
}

/*
 * Drop repeated blobs (children of one index often share them), keeping the
 * first of each in place so that "the first missing" stays the first one a
 * reader would look for. Sorting keeps it O(n log n) for the largest indexes.
 */
static void items_dedup(struct verify_tag *t)
{
    if (t->n_items < 2)
        return;
    struct item_order *order = xcalloc(t->n_items, sizeof(*order));
    bool *drop = xcalloc(t->n_items, sizeof(*drop));
    for (size_t i = 0; i < t->n_items; i++) {
        order[i].digest = t->items[i].digest;
        order[i].index = i;
    }
    qsort(order, t->n_items, sizeof(*order), item_order_compare);
    for (size_t i = 1; i < t->n_items; i++)
        if (strcmp(order[i].digest, order[i - 1].digest) == 0)
            drop[order[i].index] = true;
    size_t kept = 0;
    for (size_t i = 0; i < t->n_items; i++) {
        if (drop[i]) {
            free(t->items[i].digest);
            free(t->items[i].parent);
            free(t->items[i].platform);
            continue;
        }
        t->items[kept++] = t->items[i];
    }
    t->n_items = kept;
    free(order);
    free(drop);
}

static void items_build(struct verify_tag *t)
{
    if (!t->parsed)
        return;
    if (t->top.kind == MANIFEST_IMAGE) {
        items_add_image(t, &t->top, t->digest);
    } else {
        for (size_t i = 0; i < t->top.n_manifests; i++)
            items_add(t, ITEM_MANIFEST, t->top.manifests[i].digest, NULL,
                      platform_text(&t->top.manifests[i]));
        for (size_t i = 0; i < t->top.n_manifests; i++)
            if (t->child_parsed[i] && t->children[i].kind == MANIFEST_IMAGE)
                items_add_image(t, &t->children[i], t->top.manifests[i].digest);
    }
    items_dedup(t);
}

static char *item_text(const struct verify_item *it)
{
    switch (it->kind) {
    case ITEM_MANIFEST:
        return xasprintf("manifest %s%s%s%s", it->digest, it->platform ? " (" : "",
                         it->platform ? it->platform : "", it->platform ? ")" : "");
    case ITEM_CONFIG:
        return xasprintf("config %s of %s", it->digest, it->parent);
    case ITEM_LAYER:
        return xasprintf("layer %s of %s", it->digest, it->parent);
    }
    return xstrdup(it->digest);
}

/*
 * The digests an index of referrers lists. Unreadable bytes list nothing
 * (logged): at a destination that shows up as drift, at a source as nothing
 * to check.
 */
static void referrers_parse(const struct verify_request *req, const char *where, char ***out,
                            size_t *n)
{
    struct manifest m;
    char *err = NULL;
    *out = NULL;
    *n = 0;
    if (req->len == 0)
        return;
    int rc = manifest_parse(&m, req->bytes, req->len, req->media_type, &err);
    if (rc < 0 || m.kind != MANIFEST_INDEX) {
        log_warn("unreadable referrers index registry=%s repo=%s digest=%s error=\"%s\"", where,
                 req->repository, req->reference, err ? err : "not an index");
        free(err);
        if (rc == 0)
            manifest_release(&m);
        return;
    }
    *out = xcalloc(m.n_manifests ? m.n_manifests : 1, sizeof(**out));
    for (size_t i = 0; i < m.n_manifests; i++)
        (*out)[(*n)++] = xstrdup(m.manifests[i].digest);
    manifest_release(&m);
}

/* ---- one destination of one tag ---- */

static void tag_finish(struct verify_tag *t, bool verified);

static void check_free(struct verify_check *c)
{
    free(c->repository);
    free(c->digest);
    free(c->item_missing);
    for (size_t i = 0; i < c->n_listed; i++)
        free(c->listed[i]);
    free(c->listed);
    free(c);
}

static void check_finish(struct verify_check *c)
{
    struct verify_tag *t = c->t;
    check_free(c);
    if (--t->checks_pending == 0)
        tag_finish(t, true);
}

static bool check_lists_referrer(const struct verify_check *c, const char *digest)
{
    for (size_t i = 0; i < c->n_listed; i++)
        if (strcmp(c->listed[i], digest) == 0)
            return true;
    return false;
}

/* Record what the destination lacks: one drift for blobs and manifests, one for referrers. */
static void check_report(struct verify_check *c)
{
    struct verify_tag *t = c->t;
    if (verify_failed(t->v))
        return;
    size_t missing = 0;
    size_t first = 0;
    for (size_t i = 0; i < t->n_items; i++)
        if (c->item_missing[i] && missing++ == 0)
            first = i;
    if (missing > 0) {
        char *what = item_text(&t->items[first]);
        char *detail = missing > 1
                           ? xasprintf("%zu missing: %s, and %zu more", missing, what, missing - 1)
                           : xasprintf("1 missing: %s", what);
        free(what);
        struct verify_drift *d = drift_add(c, DRIFT_INCOMPLETE, detail);
        for (size_t i = 0; i < t->n_items; i++)
            if (c->item_missing[i])
                drift_add_missing(d, t->items[i].digest);
    }

    size_t unlisted = 0;
    const char *first_unlisted = NULL;
    for (size_t i = 0; i < t->n_referrers; i++)
        if (!check_lists_referrer(c, t->referrers[i]) && unlisted++ == 0)
            first_unlisted = t->referrers[i];
    if (unlisted > 0) {
        char *detail =
            unlisted > 1
                ? xasprintf("%zu of %zu referrers not listed: %s, and %zu more", unlisted,
                            t->n_referrers, first_unlisted, unlisted - 1)
                : xasprintf("1 of %zu referrers not listed: %s", t->n_referrers, first_unlisted);
        struct verify_drift *d = drift_add(c, DRIFT_REFERRERS, detail);
        for (size_t i = 0; i < t->n_referrers; i++)
            if (!check_lists_referrer(c, t->referrers[i]))
                drift_add_missing(d, t->referrers[i]);
    }
}

static void check_content_step(struct verify_check *c)
{
    if (--c->pending > 0)
        return;
    check_report(c);
    check_finish(c);
}

static void check_item_done(struct verify_request *req)
{
    struct verify_check *c = req->arg;
    if (req->rc < 0)
        verify_fail(c->t->v, req->r, req->rc, req->error);
    else if (!req->exists)
        c->item_missing[req->index] = true;
    check_content_step(c);
}

static void check_referrers_done(struct verify_request *req)
{
    struct verify_check *c = req->arg;
    if (req->rc < 0)
        verify_fail(c->t->v, req->r, req->rc, req->error);
    else
        referrers_parse(req, c->dst->cfg->name, &c->listed, &c->n_listed);
    check_content_step(c);
}

/* The tag is right: is everything it points at there too? */
static void check_content(struct verify_check *c)
{
    struct verify_tag *t = c->t;
    c->item_missing = xcalloc(t->n_items ? t->n_items : 1, sizeof(*c->item_missing));
    /* One extra count, so that requests finishing at once cannot end the check early. */
    c->pending = 1;
    for (size_t i = 0; i < t->n_items && !verify_failed(t->v); i++) {
        const struct verify_item *it = &t->items[i];
        c->pending++;
        request_submit(c->dst, it->kind == ITEM_MANIFEST ? REQ_MANIFEST_HEAD : REQ_BLOB_HEAD,
                       c->repository, it->digest, check_item_done, c, i);
    }
    if (t->n_referrers > 0 && !verify_failed(t->v)) {
        c->pending++;
        request_submit(c->dst, REQ_REFERRERS, c->repository, t->digest, check_referrers_done, c, 0);
    }
    check_content_step(c);
}

static void check_compare(struct verify_check *c)
{
    struct verify_tag *t = c->t;
    if (strcmp(c->digest, t->digest) != 0) {
        struct verify_drift *d = drift_add(
            c, DRIFT_DIFFERS, xasprintf("source %s destination %s", t->digest, c->digest));
        d->destination_digest = xstrdup(c->digest);
        check_finish(c);
        return;
    }
    check_content(c);
}

static void check_get_done(struct verify_request *req)
{
    struct verify_check *c = req->arg;
    if (req->rc == FERRY_ENOTFOUND) {
        /* Gone between the HEAD and the GET: as missing as it gets. */
        drift_add(c, DRIFT_MISSING, xasprintf("source %s", c->t->digest));
    } else if (req->rc < 0) {
        verify_fail(c->t->v, req->r, req->rc, req->error);
    } else {
        c->digest = xstrdup(req->digest);
        check_compare(c);
        return;
    }
    check_finish(c);
}

static void check_head_done(struct verify_request *req)
{
    struct verify_check *c = req->arg;
    if (req->rc < 0) {
        verify_fail(c->t->v, req->r, req->rc, req->error);
    } else if (!req->exists) {
        drift_add(c, DRIFT_MISSING, xasprintf("source %s", c->t->digest));
    } else if (req->digest == NULL) {
        /* No Docker-Content-Digest: only the bytes tell. */
        request_submit(c->dst, REQ_MANIFEST_GET, c->repository, c->t->tag, check_get_done, c, 0);
        return;
    } else {
        c->digest = xstrdup(req->digest);
        check_compare(c);
        return;
    }
    check_finish(c);
}

/* ---- one source tag ---- */

static void tag_free(struct verify_tag *t)
{
    free(t->repository);
    free(t->tag);
    free(t->digest);
    if (t->children != NULL)
        for (size_t i = 0; i < t->top.n_manifests; i++)
            manifest_release(&t->children[i]);
    free(t->children);
    free(t->child_parsed);
    manifest_release(&t->top);
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

static void tag_finish(struct verify_tag *t, bool verified)
{
    struct verify *v = t->v;
    if (verified && !verify_failed(v))
        v->tags_verified++;
    tag_free(t);
    v->active_tags--;
    verify_pump_tags(v);
}

/* Everything the source says is known: ask every destination. */
static void tag_check_destinations(struct verify_tag *t)
{
    struct verify *v = t->v;
    if (verify_failed(v)) {
        tag_finish(t, false);
        return;
    }
    items_build(t);
    log_info("verifying rule=%s repo=%s tag=%s digest=%s items=%zu referrers=%zu", t->rule->name,
             t->repository, t->tag, t->digest, t->n_items, t->n_referrers);
    t->checks_pending = 1;
    for (size_t i = 0; i < t->rule->n_destinations && !verify_failed(v); i++) {
        const struct config_destination *dest = &t->rule->destinations[i];
        char *repository = config_destination_repository(dest, t->repository);
        if (repository == NULL) {
            log_warn("no valid destination repository rule=%s dest=%s repo=%s", t->rule->name,
                     dest->registry, t->repository);
            continue;
        }
        struct verify_check *c = xcalloc(1, sizeof(*c));
        c->t = t;
        c->dest = dest;
        c->dst = verify_registry_of(v, dest->registry);
        c->repository = repository;
        t->checks_pending++;
        request_submit(c->dst, REQ_MANIFEST_HEAD, c->repository, t->tag, check_head_done, c, 0);
    }
    if (--t->checks_pending == 0)
        tag_finish(t, !verify_failed(v));
}

static void tag_source_step(struct verify_tag *t)
{
    if (--t->src_pending == 0)
        tag_check_destinations(t);
}

static void tag_child_done(struct verify_request *req)
{
    struct verify_tag *t = req->arg;
    char *err = NULL;
    if (req->rc == FERRY_ENOTFOUND) {
        log_warn("source lacks a child manifest registry=%s repo=%s tag=%s digest=%s",
                 t->src->cfg->name, t->repository, t->tag, req->reference);
    } else if (req->rc < 0) {
        verify_fail(t->v, req->r, req->rc, req->error);
    } else if (manifest_parse(&t->children[req->index], req->bytes, req->len, req->media_type,
                              &err) < 0) {
        log_warn("unreadable child manifest registry=%s repo=%s digest=%s error=\"%s\"",
                 t->src->cfg->name, t->repository, req->reference, err ? err : "");
        free(err);
    } else {
        t->child_parsed[req->index] = true;
    }
    tag_source_step(t);
}

static void tag_referrers_done(struct verify_request *req)
{
    struct verify_tag *t = req->arg;
    if (req->rc < 0)
        verify_fail(t->v, req->r, req->rc, req->error);
    else
        referrers_parse(req, t->src->cfg->name, &t->referrers, &t->n_referrers);
    tag_source_step(t);
}

static void tag_top_done(struct verify_request *req)
{
    struct verify_tag *t = req->arg;
    char *err = NULL;
    if (req->rc == FERRY_ENOTFOUND) {
        log_info("tag vanished at the source rule=%s repo=%s tag=%s", t->rule->name, t->repository,
                 t->tag);
        tag_finish(t, false);
        return;
    }
    if (req->rc < 0 || verify_failed(t->v)) {
        verify_fail(t->v, req->r, req->rc, req->error);
        tag_finish(t, false);
        return;
    }
    if (t->digest == NULL)
        t->digest = xstrdup(req->digest);
    if (manifest_parse(&t->top, req->bytes, req->len, req->media_type, &err) < 0) {
        /* The tag and its digest can still be checked; what it points at cannot. */
        log_warn("unreadable manifest, checking the tag only registry=%s repo=%s tag=%s "
                 "error=\"%s\"",
                 t->src->cfg->name, t->repository, t->tag, err ? err : "");
        free(err);
    } else {
        t->parsed = true;
    }
    t->src_pending = 1;
    if (t->parsed && t->top.kind == MANIFEST_INDEX) {
        t->children = xcalloc(t->top.n_manifests ? t->top.n_manifests : 1, sizeof(*t->children));
        t->child_parsed =
            xcalloc(t->top.n_manifests ? t->top.n_manifests : 1, sizeof(*t->child_parsed));
        for (size_t i = 0; i < t->top.n_manifests && !verify_failed(t->v); i++) {
            t->src_pending++;
            request_submit(t->src, REQ_MANIFEST_GET, t->repository, t->top.manifests[i].digest,
                           tag_child_done, t, i);
        }
    }
    if (t->rule->referrers && !verify_failed(t->v)) {
        t->src_pending++;
        request_submit(t->src, REQ_REFERRERS, t->repository, t->digest, tag_referrers_done, t, 0);
    }
    tag_source_step(t);
}

static void tag_head_done(struct verify_request *req)
{
    struct verify_tag *t = req->arg;
    if (req->rc < 0) {
        verify_fail(t->v, req->r, req->rc, req->error);
        tag_finish(t, false);
    } else if (!req->exists) {
        log_info("tag vanished at the source rule=%s repo=%s tag=%s", t->rule->name, t->repository,
                 t->tag);
        tag_finish(t, false);
    } else if (req->digest == NULL) {
        /* No Docker-Content-Digest: the GET computes it from the bytes. */
        request_submit(t->src, REQ_MANIFEST_GET, t->repository, t->tag, tag_top_done, t, 0);
    } else {
        t->digest = xstrdup(req->digest);
        request_submit(t->src, REQ_MANIFEST_GET, t->repository, t->digest, tag_top_done, t, 0);
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
        if (verify_failed(v)) {
            tag_free(t);
            continue;
        }
        v->active_tags++;
        request_submit(t->src, REQ_MANIFEST_HEAD, t->repository, t->tag, tag_head_done, t, 0);
    }
}

/* ---- listings ---- */

static void verify_tags_done(struct verify_request *req)
{
    struct verify *v = req->r->v;
    const struct config_rule *rule = req->rule;
    if (req->rc == FERRY_ENOTFOUND) {
        /* Blobs and no manifest (an aborted push): nothing to compare. */
        log_info("repository has no tags registry=%s repo=%s", req->r->cfg->name, req->repository);
        return;
    }
    if (req->rc < 0) {
        verify_fail(v, req->r, req->rc, req->error);
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
        if (v->pending_tail != NULL)
            v->pending_tail->next = t;
        else
            v->pending_head = t;
        v->pending_tail = t;
    }
    verify_pump_tags(v);
}

static void verify_list_tags(struct verify_registry *src, const struct config_rule *rule,
                             const char *repository)
{
    if (!config_rule_selects(rule, repository, NULL))
        return;
    struct verify_request *req =
        request_new(src, REQ_TAGS, repository, NULL, verify_tags_done, NULL, 0);
    req->rule = rule;
    request_queue(req);
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
}

static void verify_start(struct verify *v)
{
    for (size_t i = 0; i < v->config->n_rules && !verify_failed(v); i++) {
        const struct config_rule *rule = &v->config->rules[i];
        struct verify_registry *src = verify_registry_of(v, rule->source);
        if (src->cfg->n_repositories > 0) {
            for (size_t k = 0; k < src->cfg->n_repositories; k++)
                verify_list_tags(src, rule, src->cfg->repositories[k]);
        } else {
            struct verify_request *req =
                request_new(src, REQ_CATALOG, NULL, NULL, verify_catalog_done, NULL, 0);
            req->rule = rule;
            request_queue(req);
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

static void verify_report(struct verify *v, bool json, double seconds)
{
    size_t destinations = 0;
    for (size_t i = 0; i < v->config->n_registries; i++)
        if (v->regs[i].destination)
            destinations++;
    if (v->n_drifts > 1)
        qsort(v->drifts, v->n_drifts, sizeof(*v->drifts), drift_compare);
    for (size_t i = 0; i < v->n_drifts; i++)
        drift_print(&v->drifts[i], json);
    if (verify_failed(v)) {
        /* Every registry the pings found failing gets its line; else the first failure. */
        bool printed = false;
        for (size_t i = 0; i < v->config->n_registries; i++) {
            struct verify_registry *r = &v->regs[i];
            if (r->ping_rc < 0) {
                char *line = failure_line(r, r->ping_rc, r->ping_error);
                fprintf(stderr, "ferry verify: %s\n", line);
                free(line);
                printed = true;
            }
        }
        if (!printed)
            fprintf(stderr, "ferry verify: %s\n", v->error);
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "type", "summary");
        cJSON_AddBoolToObject(j, "ok", !verify_failed(v) && v->n_drifts == 0);
        cJSON_AddNumberToObject(j, "tags", (double)v->tags_verified);
        cJSON_AddNumberToObject(j, "destinations", (double)destinations);
        cJSON_AddNumberToObject(j, "drift", (double)v->n_drifts);
        cJSON_AddNumberToObject(j, "seconds", seconds);
        if (verify_failed(v))
            cJSON_AddStringToObject(j, "error", v->error);
        char *text = xjson_print(j, false);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
    } else if (!verify_failed(v)) {
        fprintf(stderr, "verified %zu tags across %zu destinations: %zu drift\n", v->tags_verified,
                destinations, v->n_drifts);
    }
    fflush(stdout);
}

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
    uv_loop_init(&v.loop);
    uint64_t start_ms = uv_now(&v.loop);
    verify_registries_open(&v);
    if (!verify_failed(&v)) {
        /* A ping of every registry first: an unreachable one is named before any listing. */
        v.pings_pending = 1;
        for (size_t i = 0; i < v.config->n_registries; i++) {
            if (v.regs[i].cl.pull == NULL)
                continue;
            v.pings_pending++;
            request_submit(&v.regs[i], REQ_PING, NULL, NULL, verify_ping_done, NULL, 0);
        }
        verify_ping_step(&v);
    }
    uv_run(&v.loop, UV_RUN_DEFAULT);
    uv_update_time(&v.loop);
    double seconds = (double)(uv_now(&v.loop) - start_ms) / 1000.0;
    verify_registries_close(&v);
    uv_run(&v.loop, UV_RUN_DEFAULT);

    verify_report(&v, json, seconds);
    rc = verify_failed(&v) ? v.rc : v.n_drifts > 0 ? 1 : 0;

    while (v.pending_head != NULL) {
        struct verify_tag *t = v.pending_head;
        v.pending_head = t->next;
        tag_free(t);
    }
    for (size_t i = 0; i < v.n_drifts; i++)
        drift_release(&v.drifts[i]);
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
