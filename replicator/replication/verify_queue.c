/*
 * verify_queue.c: every registry operation of `ferry verify` goes through
 * its registry's queue, so that no registry has more than its limit in
 * flight; the resolver's reads of a source too (verify_request_fetch_init()).
 */
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/xalloc.h"
#include "replication/verify_int.h"

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
        registry_ping(reg, request_done, req);
        return 0;
    case REQ_CATALOG:
        registry_catalog(reg, request_listed, req);
        return 0;
    case REQ_TAGS:
        return registry_tags(reg, req->repository, request_listed, req);
    case REQ_MANIFEST_HEAD:
        registry_manifest_head(reg, req->repository, req->reference, request_manifest, req);
        return 0;
    case REQ_MANIFEST_GET:
        registry_manifest_get(reg, req->repository, req->reference, request_manifest, req);
        return 0;
    case REQ_BLOB_HEAD:
        registry_blob_exists(reg, req->repository, req->reference, request_exists, req);
        return 0;
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

struct verify_request *verify_request_new(struct verify_registry *r, enum request_kind kind,
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
void verify_request_queue(struct verify_request *req)
{
    struct verify_registry *r = req->r;
    if (r->queue_tail != NULL)
        r->queue_tail->next = req;
    else
        r->queue_head = req;
    r->queue_tail = req;
    queue_pump(r);
}

void verify_request_submit(struct verify_registry *r, enum request_kind kind,
                           const char *repository, const char *reference, request_done_cb done,
                           void *arg, size_t index)
{
    verify_request_queue(verify_request_new(r, kind, repository, reference, done, arg, index));
}

/* ---- the resolver's reads, queued as the others ---- */

static void request_fetched(struct verify_request *req)
{
    req->fetched(req->rc, req->error, req->bytes, req->len, req->media_type, req->digest, req->arg);
}

static int fetch_submit(struct verify_registry *r, enum request_kind kind, const char *repo,
                        const char *reference, registry_manifest_cb cb, void *cb_arg)
{
    struct verify_request *req =
        verify_request_new(r, kind, repo, reference, request_fetched, cb_arg, 0);
    req->fetched = cb;
    verify_request_queue(req);
    return 0;
}

static int fetch_manifest(void *arg, const char *repo, const char *reference,
                          registry_manifest_cb cb, void *cb_arg)
{
    return fetch_submit(arg, REQ_MANIFEST_GET, repo, reference, cb, cb_arg);
}

static int fetch_referrers(void *arg, const char *repo, const char *digest, registry_manifest_cb cb,
                           void *cb_arg)
{
    return fetch_submit(arg, REQ_REFERRERS, repo, digest, cb, cb_arg);
}

void verify_request_fetch_init(struct verify_registry *r)
{
    r->fetch.manifest_get = fetch_manifest;
    r->fetch.referrers = fetch_referrers;
    r->fetch.arg = r;
}
