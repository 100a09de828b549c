/*
 * registry_manifest.c: manifests. GET (its bytes checked against the digest
 * asked for or the one the registry names), HEAD, PUT and DELETE; answers by
 * digest served from the answer cache (registry_cache.c); and where a
 * reference stands now (registry_manifest_resolve), shared by the callers of
 * one journal entry.
 */
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/manifest.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "registry/regerror.h"
#include "registry/registry_int.h"

/* ---- manifests ---- */

struct manifest_ctx {
    char *reference;
    char *where; /* "host/repo:tag" or "host/repo@digest", for errors */
    registry_manifest_cb cb;
    registry_put_cb put_cb;
    void *arg;
    bool head;
    char *put_digest;
};

static void manifest_ctx_free(struct manifest_ctx *ctx)
{
    free(ctx->reference);
    free(ctx->where);
    free(ctx->put_digest);
    free(ctx);
}

char *registry_content_type(struct http_request *req)
{
    const char *ct = http_request_response_header(req, "Content-Type");
    if (ct == NULL)
        return NULL;
    return xstrndup(ct, strcspn(ct, "; \t"));
}

/* A GET's 200: the bytes, unless they do not match the digest they should have. */
static void manifest_got(struct manifest_ctx *ctx, struct http_request *req)
{
    const struct buf *body = http_request_response_body(req);
    const char *bytes = body->data != NULL ? body->data : "";
    char digest[DIGEST_MAX];
    digest_of(bytes, body->len, digest);
    /* By digest, the bytes must have it; by tag, the digest the registry names. */
    bool by_digest = strchr(ctx->reference, ':') != NULL;
    char *want = xstrdup(by_digest ? ctx->reference
                                   : http_request_response_header(req, "Docker-Content-Digest"));
    if (want != NULL && strncmp(want, "sha256:", 7) == 0 && strcmp(want, digest) != 0) {
        char *error = xasprintf("manifest %s in %s does not match its digest (content is %s)", want,
                                ctx->where, digest);
        ctx->cb(FERRY_EDIGEST, error, NULL, 0, NULL, NULL, ctx->arg);
        free(error);
    } else {
        char *media_type = registry_content_type(req);
        ctx->cb(0, NULL, bytes, body->len, media_type, digest, ctx->arg);
        free(media_type);
    }
    free(want);
}

/* A HEAD's 200: the size, media type and digest the registry names. */
static void manifest_headed(struct manifest_ctx *ctx, struct http_request *req)
{
    char *media_type = registry_content_type(req);
    const char *len = http_request_response_header(req, "Content-Length");
    size_t size = len != NULL ? (size_t)strtoull(len, NULL, 10) : 0;
    char *dcd = xstrdup(http_request_response_header(req, "Docker-Content-Digest"));
    ctx->cb(0, NULL, NULL, size, media_type, dcd, ctx->arg);
    free(dcd);
    free(media_type);
}

static void manifest_get_done(struct registry_op *op, struct http_request *req, int rc, void *arg)
{
    struct manifest_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;

    if (rc == 0 && status == 200 && !ctx->head) {
        manifest_got(ctx, req);
    } else if (rc == 0 && status == 200) {
        manifest_headed(ctx, req);
    } else if (rc == 0 && status == 404 && ctx->head) {
        ctx->cb(FERRY_ENOTFOUND, NULL, NULL, 0, NULL, NULL, ctx->arg);
    } else {
        char *error;
        if (rc == FERRY_ETOOBIG) {
            error = xasprintf("manifest %s is over %d bytes", ctx->where, MANIFEST_MAX_BYTES);
        } else {
            rc = registry_status_rc(req, rc);
            error = registry_op_error_text(op, req, rc);
        }
        ctx->cb(rc, error, NULL, 0, NULL, NULL, ctx->arg);
        free(error);
    }
    manifest_ctx_free(ctx);
    registry_op_free(op);
}

void registry_manifest_fetch(struct registry *reg, const char *repo, const char *reference,
                             bool head, registry_manifest_cb cb, void *arg)
{
    struct registry_op *op =
        registry_op_repo(reg, head ? "HEAD" : "GET", repo, "manifests", reference, NULL);
    op->accept = xasprintf("Accept: %s", manifest_accept());
    op->body_limit = MANIFEST_MAX_BYTES;
    struct manifest_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->reference = xstrdup(reference);
    bool by_digest = strchr(reference, ':') != NULL;
    struct reference where = {.registry = reg->host,
                              .repository = (char *)repo,
                              .tag = by_digest ? NULL : (char *)reference,
                              .digest = by_digest ? (char *)reference : NULL};
    ctx->where = reference_format(&where);
    ctx->cb = cb;
    ctx->arg = arg;
    ctx->head = head;
    registry_op_run(op, manifest_get_done, ctx);
}

void registry_manifest_get(struct registry *reg, const char *repo, const char *reference,
                           registry_manifest_cb cb, void *arg)
{
    /* By digest the answer never changes: one fetch serves every caller. */
    if (reg->cache != NULL && digest_valid(reference)) {
        char *key = xasprintf("m:%s@%s", repo, reference);
        struct registry_flight *f;
        bool joined = registry_cache_join(reg, key, 0, cb, arg, &f);
        free(key);
        if (joined)
            return;
        cb = registry_cache_fetched;
        arg = f;
    }
    registry_manifest_fetch(reg, repo, reference, false, cb, arg);
}

void registry_manifest_head(struct registry *reg, const char *repo, const char *reference,
                            registry_manifest_cb cb, void *arg)
{
    registry_manifest_fetch(reg, repo, reference, true, cb, arg);
}

/* ---- where a reference stands now ---- */

/* One look (a HEAD, then a GET when the HEAD names no digest). */
struct resolve_fetch {
    struct registry *reg;
    char *repo;
    char *reference;
    bool got;
    registry_manifest_cb cb; /* registry_cache_fetched, or resolve_answer when not shared */
    void *arg;
};

/* One caller's wait for the answer. */
struct resolve_wait {
    registry_manifest_cb cb;
    void *arg;
};

/*
 * What callers see: the look's answer, in which an absent reference is rc 0
 * with no digest (so that the cache keeps it too), made FERRY_ENOTFOUND.
 */
static void resolve_answer(int rc, const char *error, const char *bytes, size_t len,
                           const char *media_type, const char *digest, void *arg)
{
    struct resolve_wait *w = arg;
    (void)bytes;
    (void)len;
    if (rc == 0 && digest == NULL)
        w->cb(FERRY_ENOTFOUND, NULL, NULL, 0, NULL, NULL, w->arg);
    else if (rc < 0)
        w->cb(rc, error, NULL, 0, NULL, NULL, w->arg);
    else
        w->cb(0, NULL, NULL, 0, media_type, digest, w->arg);
    free(w);
}

static void resolve_fetched(int rc, const char *error, const char *bytes, size_t len,
                            const char *media_type, const char *digest, void *arg)
{
    struct resolve_fetch *f = arg;
    (void)bytes;
    (void)len;
    bool named = digest != NULL && digest_valid(digest);
    /* A registry may omit Docker-Content-Digest, or send one not worth
     * trusting: the GET computes it from the bytes. */
    if (rc == 0 && !named && !f->got) {
        f->got = true;
        registry_manifest_fetch(f->reg, f->repo, f->reference, false, resolve_fetched, f);
        return;
    }
    if (rc == 0 && !named) {
        char *why = xasprintf("%s/%s:%s: the registry named no digest for it", f->reg->host,
                              f->repo, f->reference);
        f->cb(FERRY_EPROTO, why, NULL, 0, NULL, NULL, f->arg);
        free(why);
    } else if (rc == FERRY_ENOTFOUND) {
        f->cb(0, NULL, "", 0, NULL, NULL, f->arg);
    } else {
        f->cb(rc, error, "", 0, media_type, digest, f->arg);
    }
    free(f->repo);
    free(f->reference);
    free(f);
}

void registry_manifest_resolve(struct registry *reg, const char *repo, const char *reference,
                               const char *share, uint64_t share_ms, registry_manifest_cb cb,
                               void *arg)
{
    struct resolve_wait *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    struct resolve_fetch *f = xcalloc(1, sizeof(*f));
    f->reg = reg;
    f->cb = resolve_answer;
    f->arg = w;
    if (reg->cache != NULL && share != NULL && share[0] != '\0') {
        char *key = xasprintf("q:%s:%s:%s", share, repo, reference);
        struct registry_flight *flight;
        bool joined =
            registry_cache_join(reg, key, share_ms > 0 ? share_ms : 1, resolve_answer, w, &flight);
        free(key);
        if (joined) {
            free(f);
            return;
        }
        f->cb = registry_cache_fetched;
        f->arg = flight;
    }
    f->repo = xstrdup(repo);
    f->reference = xstrdup(reference);
    registry_manifest_fetch(reg, repo, reference, true, resolve_fetched, f);
}

/* ---- PUT ---- */

static void manifest_put_done(struct registry_op *op, struct http_request *req, int rc, void *arg)
{
    struct manifest_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    char *error = NULL;

    if (rc == 0 && (status == 201 || status == 200 || status == 204)) {
        const char *dcd = http_request_response_header(req, "Docker-Content-Digest");
        if (dcd != NULL && strncmp(dcd, "sha256:", 7) == 0 && strcmp(dcd, ctx->put_digest) != 0) {
            error = xasprintf("PUT manifest %s to %s: registry stored %s instead", ctx->put_digest,
                              op->reg->host, dcd);
            ctx->put_cb(FERRY_EDIGEST, error, false, ctx->arg);
        } else {
            bool subject = http_request_response_header(req, "OCI-Subject") != NULL;
            ctx->put_cb(0, NULL, subject, ctx->arg);
        }
    } else {
        rc = registry_push_status_rc(req, rc);
        error = registry_op_error_text(op, req, rc);
        ctx->put_cb(rc, error, false, ctx->arg);
    }
    free(error);
    manifest_ctx_free(ctx);
    registry_op_free(op);
}

/*
 * Distribution 2.8 writes a repository's link to a blob in place, whenever a
 * blob is uploaded or mounted into the repository, even one it links
 * already: a manifest PUT that reads the link meanwhile is refused 400
 * DIGEST_INVALID and MANIFEST_BLOB_UNKNOWN for a blob that is there. One
 * node orders its own links (engine_flights.c); in a cluster another node
 * may be linking a blob of the same image into the same repository right
 * then. So such an answer is tried once more, after the backoff: a blob
 * really missing is refused again, and the copy fails as before.
 */
static bool manifest_put_transient(const struct registry_op *op, struct http_request *req)
{
    if (op->attempt > 0 || http_request_status(req) != 400)
        return false;
    const struct buf *body = http_request_response_body(req);
    char *code = NULL;
    bool again =
        body->len > 0 && regerror_parse(body->data, body->len, &code, NULL) == 0 &&
        (strcmp(code, "DIGEST_INVALID") == 0 || strcmp(code, "MANIFEST_BLOB_UNKNOWN") == 0);
    free(code);
    return again;
}

int registry_manifest_put(struct registry *reg, const char *repo, const char *reference,
                          const char *bytes, size_t len, const char *media_type, registry_put_cb cb,
                          void *arg)
{
    if (len > MANIFEST_MAX_BYTES)
        return FERRY_ETOOBIG;
    char *scope = xasprintf("repository:%s:pull,push", repo);
    struct registry_op *op = registry_op_repo(reg, "PUT", repo, "manifests", reference, scope);
    free(scope);
    op->has_body = true;
    op->body = bytes;
    op->body_len = len;
    op->content_type = xasprintf("Content-Type: %s", media_type);
    op->transient = manifest_put_transient;
    struct manifest_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->reference = xstrdup(reference);
    ctx->put_cb = cb;
    ctx->arg = arg;
    ctx->put_digest = xmalloc(DIGEST_MAX);
    digest_of(bytes, len, ctx->put_digest);
    registry_op_run(op, manifest_put_done, ctx);
    return 0;
}

/* ---- DELETE ---- */

struct delete_ctx {
    registry_done_cb cb;
    void *arg;
    bool tag; /* a tag alone, not a manifest */
};

static void manifest_delete_done(struct registry_op *op, struct http_request *req, int rc,
                                 void *arg)
{
    struct delete_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    if (rc == 0 && (status == 202 || status == 200 || status == 204 || status == 404)) {
        ctx->cb(0, NULL, ctx->arg);
    } else {
        /* A registry that refuses deletes answers 405; one that cannot
         * delete a tag alone, 400 or 405 (OCI 1.1; Distribution 2.8: 400
         * DIGEST_INVALID). */
        bool unsupported = status == 405 || (ctx->tag && status == 400);
        rc = rc < 0 ? rc : unsupported ? FERRY_EUNSUPPORTED : registry_status_rc(req, rc);
        char *error = registry_op_error_text(op, req, rc);
        ctx->cb(rc, error, ctx->arg);
        free(error);
    }
    free(ctx);
    registry_op_free(op);
}

static void manifest_delete_run(struct registry *reg, const char *repo, const char *reference,
                                bool tag, registry_done_cb cb, void *arg)
{
    char *scope = xasprintf("repository:%s:pull,push,delete", repo);
    struct registry_op *op = registry_op_repo(reg, "DELETE", repo, "manifests", reference, scope);
    free(scope);
    struct delete_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->cb = cb;
    ctx->arg = arg;
    ctx->tag = tag;
    registry_op_run(op, manifest_delete_done, ctx);
}

int registry_manifest_delete(struct registry *reg, const char *repo, const char *digest,
                             registry_done_cb cb, void *arg)
{
    if (!digest_valid(digest))
        return FERRY_EINVAL;
    manifest_delete_run(reg, repo, digest, false, cb, arg);
    return 0;
}

int registry_tag_delete(struct registry *reg, const char *repo, const char *tag,
                        registry_done_cb cb, void *arg)
{
    if (!reference_tag_valid(tag))
        return FERRY_EINVAL;
    manifest_delete_run(reg, repo, tag, true, cb, arg);
    return 0;
}
