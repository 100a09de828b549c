/*
 * registry_blob.c: reading blobs. A HEAD says whether a blob is there; a GET
 * streams it into the caller's sink, hashing every byte the sink takes so
 * that a blob that does not match its digest (or its size) never completes,
 * and a transfer that breaks resumes where it stopped with a Range request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/xalloc.h"
#include "registry/regerror.h"
#include "registry/registry_int.h"

/* ---- blobs: HEAD ---- */

void registry_blob_exists(struct registry *reg, const char *repo, const char *digest,
                          registry_exists_cb cb, void *arg)
{
    struct registry_op *op = registry_op_repo(reg, "HEAD", repo, "blobs", digest, NULL);
    op->follow = true;
    registry_exists_run(op, cb, arg);
}

/* ---- blobs: GET, verified while it streams, resumed with Range ---- */

struct registry_download {
    struct registry *reg;
    struct registry_op *op;
    char *digest;
    int64_t size;
    registry_sink_cb sink;
    void *sink_arg;
    registry_done_cb cb;
    void *arg;
    struct digest_ctx hash;
    uint64_t received;  /* verified bytes handed to the sink */
    uint64_t skip;      /* bytes of a 200 response to drop after a resume */
    size_t skip_replay; /* leading bytes of a replayed paused piece already dropped */
    struct buf error_body;
};

/* Hand `len` new bytes to the sink, hashing what it took (paused bytes come again). */
static int blob_get_deliver(struct registry_download *g, const char *data, size_t len)
{
    int rc = g->sink(data, len, g->received, g->sink_arg);
    if (rc != 0)
        return rc;
    digest_update(&g->hash, data, len);
    g->received += len;
    return 0;
}

static int blob_get_sink(struct http_request *req, const char *data, size_t len, void *arg)
{
    struct registry_download *g = arg;
    long status = http_request_status(req);

    if (status != 200 && status != 206) {
        /* An error document: keep a capped copy for the message. */
        size_t room = REGISTRY_ERROR_BODY_MAX - g->error_body.len;
        if (g->error_body.len < REGISTRY_ERROR_BODY_MAX &&
            buf_append(&g->error_body, data, len < room ? len : room) < 0)
            return FERRY_ETOOBIG;
        return 0;
    }
    if (status == 200 && g->skip > 0) {
        /* Bytes we already have, resent by a registry that ignored Range. */
        size_t drop = len < g->skip ? len : (size_t)g->skip;
        g->skip -= drop;
        data += drop;
        len -= drop;
        if (len == 0)
            return 0;
        /* The rest of this piece is new; hand it on in a piece of its own
         * so that a pause cannot replay the dropped part. */
        int rc = blob_get_deliver(g, data, len);
        if (rc == HTTP_SINK_PAUSE)
            g->skip_replay = drop;
        return rc;
    }
    if (g->skip_replay > 0) {
        /* libcurl replays a paused piece whole, dropped part included. */
        size_t drop = len < g->skip_replay ? len : g->skip_replay;
        data += drop;
        len -= drop;
        g->skip_replay = 0;
        if (len == 0)
            return 0;
    }
    if (g->size >= 0 && g->received + len > (uint64_t)g->size)
        return FERRY_EDIGEST;
    return blob_get_deliver(g, data, len);
}

static void blob_get_prepare(struct registry_op *op, struct http_request *req, void *arg)
{
    struct registry_download *g = arg;
    buf_reset(&g->error_body);
    g->skip = 0;
    g->skip_replay = 0;
    g->op = op;
    if (g->received > 0) {
        char line[64];
        snprintf(line, sizeof(line), "Range: bytes=%llu-", (unsigned long long)g->received);
        http_request_add_header(req, line);
        /* A registry that ignores Range resends from 0; drop what we have. */
        g->skip = g->received;
    }
}

/* Why a download that got its answer failed, or NULL when it did not; sets *rc. */
static char *blob_get_verify(struct registry_download *g, int *rc)
{
    char got[DIGEST_MAX];
    digest_final(&g->hash, got);
    if (g->size >= 0 && g->received != (uint64_t)g->size) {
        *rc = FERRY_EDIGEST;
        return xasprintf("blob %s from %s: got %llu bytes, its descriptor says %lld", g->digest,
                         g->reg->host, (unsigned long long)g->received, (long long)g->size);
    }
    if (strcmp(got, g->digest) != 0) {
        *rc = FERRY_EDIGEST;
        return xasprintf("blob %s from %s does not match its digest (content is %s)", g->digest,
                         g->reg->host, got);
    }
    return NULL;
}

static void blob_get_done(struct registry_op *op, struct http_request *req, int rc, void *arg)
{
    struct registry_download *g = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    char *error = NULL;

    if (rc == 0 && (status == 200 || status == 206)) {
        error = blob_get_verify(g, &rc);
    } else if (rc == FERRY_EDIGEST) {
        error = xasprintf("blob %s from %s is larger than its descriptor says (%lld bytes)",
                          g->digest, g->reg->host, (long long)g->size);
    } else {
        rc = registry_status_rc(req, rc);
        if (req != NULL && g->error_body.len > 0) {
            char *summary = regerror_summary(g->error_body.data, g->error_body.len);
            char *path = registry_url_path(op->url);
            error = xasprintf("GET %s%s: HTTP %ld%s%s%s", g->reg->host, path, status,
                              summary ? " (" : "", summary ? summary : "", summary ? ")" : "");
            free(path);
            free(summary);
        } else {
            error = registry_op_error_text(op, req, rc);
        }
    }
    g->cb(rc, error, g->arg);
    free(error);
    digest_release(&g->hash);
    buf_release(&g->error_body);
    free(g->digest);
    free(g);
    registry_op_free(op);
}

int registry_blob_get(struct registry *reg, const char *repo, const char *digest, int64_t size,
                      registry_sink_cb sink, void *sink_arg, registry_done_cb cb, void *arg,
                      struct registry_download **out)
{
    if (!digest_valid(digest))
        return FERRY_EINVAL;
    struct registry_op *op = registry_op_repo(reg, "GET", repo, "blobs", digest, NULL);
    struct registry_download *g = xcalloc(1, sizeof(*g));
    g->reg = reg;
    g->digest = xstrdup(digest);
    g->size = size;
    g->sink = sink;
    g->sink_arg = sink_arg;
    g->cb = cb;
    g->arg = arg;
    digest_init(&g->hash);
    buf_init(&g->error_body, REGISTRY_ERROR_BODY_MAX);
    op->follow = true;
    op->sink = blob_get_sink;
    op->sink_arg = g;
    op->prepare = blob_get_prepare;
    g->op = op;
    if (out != NULL)
        *out = g;
    registry_op_run(op, blob_get_done, g);
    return 0;
}

void registry_download_resume(struct registry_download *d)
{
    if (d->op != NULL && d->op->req != NULL)
        http_request_resume(d->op->req);
}

void registry_download_cancel(struct registry_download *d)
{
    struct registry_op *op = d->op;
    op->canceled = true;
    if (op->req != NULL)
        http_request_cancel(op->req);
}
