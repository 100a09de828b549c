/*
 * registry_referrers.c: the referrers of a manifest, from the OCI 1.1
 * referrers API, or, where the registry has none (404, remembered), from the
 * sha256-<hex> tag that stands in for it. Lists are kept in the answer cache
 * for a few seconds.
 */
#include <stdlib.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/manifest.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "registry/registry_int.h"

/* A referrer list is reused this long: the jobs of one image, not later pushes. */
#define REFERRERS_TTL_MS 5000

struct referrers_ctx {
    struct registry *reg;
    char *repo;
    char *digest;
    registry_manifest_cb cb;
    void *arg;
};

static void referrers_free(struct referrers_ctx *ctx)
{
    free(ctx->repo);
    free(ctx->digest);
    free(ctx);
}

static void referrers_tag_done(int rc, const char *error, const char *bytes, size_t len,
                               const char *media_type, const char *digest, void *arg)
{
    struct referrers_ctx *ctx = arg;
    (void)digest;
    if (rc == FERRY_ENOTFOUND)
        ctx->cb(0, NULL, "", 0, NULL, NULL, ctx->arg);
    else
        ctx->cb(rc, error, bytes, len, media_type, NULL, ctx->arg);
    referrers_free(ctx);
}

static void referrers_fallback(struct referrers_ctx *ctx)
{
    char *tag = reference_referrers_tag(ctx->digest);
    registry_manifest_fetch(ctx->reg, ctx->repo, tag, false, referrers_tag_done, ctx);
    free(tag);
}

static void referrers_api_done(struct registry_op *op, struct http_request *req, int rc, void *arg)
{
    struct referrers_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;

    if (rc == 0 && status == 200) {
        const struct buf *body = http_request_response_body(req);
        char *media_type = registry_content_type(req);
        ctx->cb(0, NULL, body->data ? body->data : "", body->len, media_type, NULL, ctx->arg);
        free(media_type);
        referrers_free(ctx);
    } else if (rc == 0 && status == 404) {
        ctx->reg->referrers_missing = true;
        referrers_fallback(ctx);
    } else {
        rc = registry_status_rc(req, rc);
        char *error = registry_op_error_text(op, req, rc);
        ctx->cb(rc, error, NULL, 0, NULL, NULL, ctx->arg);
        free(error);
        referrers_free(ctx);
    }
    registry_op_free(op);
}

int registry_referrers(struct registry *reg, const char *repo, const char *digest,
                       registry_manifest_cb cb, void *arg)
{
    if (!digest_valid(digest))
        return FERRY_EINVAL;
    if (reg->cache != NULL) {
        struct registry_flight *f = NULL;
        char *key = xasprintf("r:%s@%s", repo, digest);
        bool joined = registry_cache_join(reg, key, REFERRERS_TTL_MS, cb, arg, &f);
        free(key);
        if (joined)
            return 0;
        cb = registry_cache_fetched;
        arg = f;
    }
    struct referrers_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->reg = reg;
    ctx->repo = xstrdup(repo);
    ctx->digest = xstrdup(digest);
    ctx->cb = cb;
    ctx->arg = arg;
    if (reg->referrers_missing) {
        referrers_fallback(ctx);
        return 0;
    }
    struct registry_op *op = registry_op_repo(reg, "GET", repo, "referrers", digest, NULL);
    op->accept = xstrdup("Accept: " MEDIA_OCI_INDEX);
    op->body_limit = MANIFEST_MAX_BYTES;
    registry_op_run(op, referrers_api_done, ctx);
    return 0;
}
