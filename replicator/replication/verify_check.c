/*
 * verify_check.c: what a destination must hold for a source tag to be whole
 * (the items of its closure, the referrers of its digest), and one
 * destination's check of it: the tag, then every item and the referrers
 * listing.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/xalloc.h"
#include "replication/verify_int.h"

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

struct items_blob_ctx {
    struct verify_tag *t;
    const struct resolve_node *n;
};

/* A blob the destination must hold; a foreign layer the rule leaves out is not looked for. */
static void items_add_blob(void *arg, const struct descriptor *d, enum resolve_blob_kind kind)
{
    struct items_blob_ctx *x = arg;
    if (kind == RESOLVE_BLOB_CONFIG)
        items_add(x->t, ITEM_CONFIG, d->digest, x->n->digest, NULL);
    else if (kind == RESOLVE_BLOB_LAYER)
        items_add(x->t, ITEM_LAYER, d->digest, x->n->digest, NULL);
}

/*
 * What a manifest of the closure names: an image its config and layers
 * (the foreign ones only where the rule copies them); an index each of its
 * children, then what each child names in turn (only through the index the
 * closure found it under, so a cycle ends).
 */
static void items_add_manifest(struct verify_tag *t, const struct resolve_node *n)
{
    const struct manifest *m = &n->m;
    if (m->kind == MANIFEST_IMAGE) {
        struct items_blob_ctx x = {t, n};
        (void)resolve_manifest_blobs(m, t->rule->foreign_layers, items_add_blob, &x);
        return;
    }
    if (m->kind != MANIFEST_INDEX)
        return;
    for (size_t i = 0; i < m->n_manifests; i++)
        items_add(t, ITEM_MANIFEST, m->manifests[i].digest, NULL, platform_text(&m->manifests[i]));
    for (size_t i = 0; i < m->n_manifests; i++) {
        const struct resolve_node *child = resolve_find(t->closure, m->manifests[i].digest);
        if (child != NULL && child->parent == n)
            items_add_manifest(t, child);
    }
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

/* The closure's items, and the referrers of the tag's digest, in the order the source gave them. */
static void items_build(struct verify_tag *t)
{
    items_add_manifest(t, resolve_root(t->closure));
    items_dedup(t);
    for (size_t i = 0; i < resolve_count(t->closure); i++) {
        const struct resolve_node *n = resolve_node_at(t->closure, i);
        if (n->subject == NULL)
            continue;
        t->referrers = xrealloc(t->referrers, (t->n_referrers + 1) * sizeof(*t->referrers));
        t->referrers[t->n_referrers++] = xstrdup(n->digest);
    }
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

/* ---- one destination of one tag ---- */

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
        verify_tag_finish(t, true);
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
        struct verify_drift *d = verify_drift_add(c, DRIFT_INCOMPLETE, detail);
        for (size_t i = 0; i < t->n_items; i++)
            if (c->item_missing[i])
                verify_drift_add_missing(d, t->items[i].digest);
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
        struct verify_drift *d = verify_drift_add(c, DRIFT_REFERRERS, detail);
        for (size_t i = 0; i < t->n_referrers; i++)
            if (!check_lists_referrer(c, t->referrers[i]))
                verify_drift_add_missing(d, t->referrers[i]);
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

/*
 * The digests the destination's referrers listing names. An unreadable
 * listing names none (logged): at the destination that shows up as drift.
 */
static void check_read_listed(struct verify_check *c, const struct verify_request *req)
{
    cJSON *index = NULL;
    const cJSON *list = NULL;
    char *err = NULL;
    if (req->len == 0)
        return;
    if (resolve_referrers_parse(req->bytes, req->len, req->reference, &index, &list, &err) < 0) {
        log_warn("unreadable referrers index registry=%s repo=%s digest=%s error=\"%s\"",
                 c->dst->cfg->name, req->repository, req->reference, err);
        free(err);
        return;
    }
    int n = cJSON_GetArraySize(list);
    c->listed = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*c->listed));
    const cJSON *d;
    cJSON_ArrayForEach(d, list)
    {
        const cJSON *digest = cJSON_GetObjectItemCaseSensitive(d, "digest");
        c->listed[c->n_listed++] = xstrdup(digest->valuestring);
    }
    cJSON_Delete(index);
}

static void check_referrers_done(struct verify_request *req)
{
    struct verify_check *c = req->arg;
    if (req->rc < 0)
        verify_fail(c->t->v, req->r, req->rc, req->error);
    else
        check_read_listed(c, req);
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
        verify_request_submit(c->dst, it->kind == ITEM_MANIFEST ? REQ_MANIFEST_HEAD : REQ_BLOB_HEAD,
                              c->repository, it->digest, check_item_done, c, i);
    }
    if (t->n_referrers > 0 && !verify_failed(t->v)) {
        c->pending++;
        verify_request_submit(c->dst, REQ_REFERRERS, c->repository, t->expected,
                              check_referrers_done, c, 0);
    }
    check_content_step(c);
}

/* "source DIGEST", and the index it was picked from when the rule copies one platform. */
static char *check_source_text(const struct verify_tag *t)
{
    if (t->picked)
        return xasprintf("source %s (%s of %s)", t->expected, t->platform, t->digest);
    return xasprintf("source %s", t->expected);
}

static void check_missing(struct verify_check *c)
{
    verify_drift_add(c, DRIFT_MISSING, check_source_text(c->t));
}

/*
 * The tag names what the rule copies: check what it points at. It names
 * something else: drift, unless the rule's `overwrite: false` told the
 * engine to leave a tag that exists alone; then it is reported as kept, and
 * what it points at is not Ferry's to check.
 */
static void check_compare(struct verify_check *c)
{
    struct verify_tag *t = c->t;
    if (strcmp(c->digest, t->expected) != 0) {
        char *source = check_source_text(t);
        bool kept = !t->rule->overwrite;
        char *detail =
            xasprintf("%s destination %s%s", source, c->digest, kept ? " (overwrite: false)" : "");
        free(source);
        struct verify_drift *d = verify_drift_add(c, kept ? DRIFT_KEPT : DRIFT_DIFFERS, detail);
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
        check_missing(c);
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
        check_missing(c);
    } else if (req->digest == NULL) {
        /* No Docker-Content-Digest: only the bytes tell. */
        verify_request_submit(c->dst, REQ_MANIFEST_GET, c->repository, c->t->tag, check_get_done, c,
                              0);
        return;
    } else {
        c->digest = xstrdup(req->digest);
        check_compare(c);
        return;
    }
    check_finish(c);
}

void verify_tag_unavailable(struct verify_tag *t, char *detail)
{
    for (size_t i = 0; i < t->rule->n_destinations; i++) {
        const struct config_destination *dest = &t->rule->destinations[i];
        struct verify_check c = {
            .t = t,
            .dest = dest,
            .repository = config_destination_repository(dest, t->repository),
        };
        if (c.repository == NULL)
            continue;
        struct verify_drift *d = verify_drift_add(&c, DRIFT_MISSING, xstrdup(detail));
        d->source_index = xstrdup(t->digest);
        d->platform = t->platform;
        free(c.repository);
    }
    free(detail);
}

/* Everything the source says is known: ask every destination. */
void verify_tag_check(struct verify_tag *t)
{
    struct verify *v = t->v;
    if (verify_failed(v)) {
        verify_tag_finish(t, false);
        return;
    }
    items_build(t);
    log_info("verifying rule=%s repo=%s tag=%s digest=%s expected=%s items=%zu referrers=%zu",
             t->rule->name, t->repository, t->tag, t->digest, t->expected, t->n_items,
             t->n_referrers);
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
        verify_request_submit(c->dst, REQ_MANIFEST_HEAD, c->repository, t->tag, check_head_done, c,
                              0);
    }
    if (--t->checks_pending == 0)
        verify_tag_finish(t, !verify_failed(v));
}
