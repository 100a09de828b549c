/*
 * registry_upload.c: putting a blob into a repository, as a small state
 * machine on the loop. A POST opens the upload session (with a
 * cross-repository mount first when asked: 201 is the blob mounted); then
 * either one PUT carries the whole blob (monolithic), or PATCHes carry it in
 * chunks and a last PUT closes the session. A PATCH answered 416, or one that
 * broke, is followed by a status GET that says how much the registry holds,
 * and the upload resumes from there; a session the registry forgot (404)
 * starts over with a new POST. Each state has one handler for its answer,
 * and the upload ends in one place, upload_finish().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "registry/httpparse.h"
#include "registry/registry_int.h"

/* The largest OCI-Chunk-Min-Length a registry may ask for. */
#define UPLOAD_CHUNK_MIN_MAX (1024ull * 1024 * 1024)

enum upload_state {
    UPLOAD_START,  /* POST (with a mount when asked) */
    UPLOAD_PUT,    /* monolithic: PUT ?digest= with the whole blob */
    UPLOAD_PATCH,  /* one chunk */
    UPLOAD_STATUS, /* GET the session to learn its Range */
    UPLOAD_CLOSE,  /* the final PUT ?digest= of a chunked upload */
};

/* What a state's handler made of its answer. */
enum upload_next {
    UPLOAD_NEXT_STEP,       /* send the request of up->state, after up->delay_ms */
    UPLOAD_NEXT_END,        /* the upload is over: up->rc, up->error, up->how */
    UPLOAD_NEXT_UNEXPECTED, /* an answer this state does not take */
};

struct registry_upload {
    struct registry *reg;
    char *repo;
    char *digest;
    uint64_t size;
    http_source_cb source;
    void *source_arg;
    enum registry_upload_mode mode;
    uint64_t chunk_min;
    uint64_t chunk_max;
    char *mount_from;
    bool mount_retry;   /* a refused mount is tried once more (registry_upload_options) */
    bool mount_retried; /* ... and was */
    registry_upload_cb cb;
    void *arg;
    enum upload_state state;
    uint64_t delay_ms; /* before the next request */
    char *location;
    uint64_t offset;      /* bytes the registry holds */
    uint64_t chunk_start; /* the PATCH in flight covers [chunk_start, chunk_start + chunk_len) */
    uint64_t chunk_len;
    int restarts;
    struct registry_op *op; /* the op in flight */
    /* How it ended. */
    int rc;
    char *error;
    enum registry_upload_outcome how;
};

/* ---- the requests ---- */

static void upload_op_done(struct registry_op *op, struct http_request *req, int rc, void *arg);

static ssize_t upload_chunk_source(char *buf, size_t len, uint64_t offset, void *arg)
{
    struct registry_upload *up = arg;
    return up->source(buf, len, up->chunk_start + offset, up->source_arg);
}

/* Content-Range goes on each attempt of a chunk. */
static void upload_patch_prepare(struct registry_op *op, struct http_request *req, void *arg)
{
    struct registry_upload *up = arg;
    char line[96];
    (void)op;
    if (up->chunk_len == 0)
        return;
    snprintf(line, sizeof(line), "Content-Range: %llu-%llu", (unsigned long long)up->chunk_start,
             (unsigned long long)(up->chunk_start + up->chunk_len - 1));
    http_request_add_header(req, line);
}

static char *url_with_digest(const char *location, const char *digest)
{
    return xasprintf("%s%sdigest=%s", location, strchr(location, '?') ? "&" : "?", digest);
}

/* The op of the current state; the body-carrying ones are not retried by the op. */
static struct registry_op *upload_op_new(struct registry_upload *up)
{
    struct registry *reg = up->reg;
    const char *method = "GET";
    char *url = NULL;
    char *scope = NULL;

    switch (up->state) {
    case UPLOAD_START:
        method = "POST";
        if (up->mount_from == NULL) {
            url = xasprintf("%s/v2/%s/blobs/uploads/", reg->base, up->repo);
            break;
        }
        url = xasprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", reg->base, up->repo, up->digest,
                        up->mount_from);
        /* A mount needs both repositories in one token. */
        scope = xasprintf("repository:%s:pull,push repository:%s:pull", up->repo, up->mount_from);
        break;
    case UPLOAD_PUT:
    case UPLOAD_CLOSE:
        method = "PUT";
        url = url_with_digest(up->location, up->digest);
        break;
    case UPLOAD_PATCH:
        method = "PATCH";
        url = xstrdup(up->location);
        break;
    case UPLOAD_STATUS:
        url = xstrdup(up->location);
        break;
    }
    if (scope == NULL)
        scope = xasprintf("repository:%s:pull,push", up->repo);
    struct registry_op *op = registry_op_new(reg, method, url, scope);
    free(url);
    free(scope);
    registry_op_check_names(op, up->repo, up->digest);
    if (up->mount_from != NULL)
        registry_op_check_names(op, up->mount_from, NULL);

    if (up->state == UPLOAD_PUT) {
        op->has_body = true;
        op->source = up->source;
        op->source_arg = up->source_arg;
        op->source_len = up->size;
        op->content_type = xstrdup("Content-Type: application/octet-stream");
        /* A broken PUT may leave part of the body in the session: start over instead. */
        op->no_retry = true;
    } else if (up->state == UPLOAD_PATCH) {
        uint64_t left = up->size - up->offset;
        up->chunk_start = up->offset;
        up->chunk_len = left < up->chunk_max ? left : up->chunk_max;
        op->has_body = true;
        op->source = upload_chunk_source;
        op->source_arg = up;
        op->source_len = up->chunk_len;
        op->content_type = xstrdup("Content-Type: application/octet-stream");
        op->prepare = upload_patch_prepare;
        op->no_retry = true;
    }
    return op;
}

/* Send the request of the current state, after up->delay_ms. */
static void upload_step(struct registry_upload *up)
{
    struct registry_op *op = upload_op_new(up);
    uint64_t delay_ms = up->delay_ms;
    up->delay_ms = 0;
    up->op = op;
    op->done = upload_op_done;
    op->arg = up;
    if (delay_ms > 0)
        registry_op_run_after(op, delay_ms);
    else
        registry_op_attempt(op);
}

/* ---- transitions ---- */

static enum upload_next upload_go(struct registry_upload *up, enum upload_state state)
{
    up->state = state;
    return UPLOAD_NEXT_STEP;
}

/* The upload is over with `rc` and `error` (taken; NULL on success). */
static enum upload_next upload_end(struct registry_upload *up, int rc, char *error,
                                   enum registry_upload_outcome how)
{
    up->rc = rc;
    up->error = error;
    up->how = how;
    return UPLOAD_NEXT_END;
}

/*
 * Try the session once more from `state`, after a backoff when `backoff`:
 * every such try counts against the policy's attempts, past which the
 * upload fails with `rc` and `why` (taken).
 */
static enum upload_next upload_again(struct registry_upload *up, enum upload_state state,
                                     bool backoff, int rc, char *why)
{
    struct registry *reg = up->reg;
    up->restarts++;
    reg->stats.retries++;
    if (!retry_again(&reg->retry, up->restarts))
        return upload_end(up, rc, why, 0);
    log_debug("upload recovering registry=%s digest=%s restart=%d error=\"%s\"", reg->host,
              up->digest, up->restarts, why);
    free(why);
    up->delay_ms = backoff ? registry_backoff_ms(reg, up->restarts - 1) : 0;
    return upload_go(up, state);
}

/* A body broke mid-way: ask where the session stands (chunks), or start a new one. */
static enum upload_next upload_recover(struct registry_upload *up, char *why)
{
    bool resumable = up->state == UPLOAD_PATCH && up->location != NULL;
    return upload_again(up, resumable ? UPLOAD_STATUS : UPLOAD_START, true, FERRY_ECONNECT, why);
}

/* The registry forgot the session (it expired, or the registry restarted without it). */
static enum upload_next upload_restart(struct registry_upload *up, struct registry_op *op,
                                       struct http_request *req)
{
    char *why = registry_op_error_text(op, req, FERRY_ENOTFOUND);
    return upload_again(up, UPLOAD_START, false, FERRY_ENOTFOUND, why);
}

/* Take a new Location from an upload response, resolved against the request URL. */
static int upload_take_location(struct registry_upload *up, struct http_request *req)
{
    const char *loc = http_request_response_header(req, "Location");
    if (loc == NULL)
        return FERRY_EPROTO;
    char *resolved = httpparse_url_resolve(http_request_url(req), loc);
    if (resolved == NULL)
        return FERRY_EPROTO;
    free(up->location);
    up->location = resolved;
    return 0;
}

/* ---- one handler per state ---- */

/* POST: 201 is the blob mounted; 202 a session to upload into. */
static enum upload_next upload_started(struct registry_upload *up, struct registry_op *op,
                                       struct http_request *req, long status)
{
    (void)op;
    struct registry *reg = up->reg;
    if (status == 201 && up->mount_from != NULL) {
        if (up->mount_retried)
            reg->mount_retry_misses = 0;
        return upload_end(up, 0, NULL, REGISTRY_MOUNTED);
    }
    if (status != 202)
        return UPLOAD_NEXT_UNEXPECTED;
    /*
     * Refused, though the caller knows the blob is in mount_from: Distribution
     * 2.8 rewrites a repository's link in place on every upload or mount into
     * it, and a mount from there meanwhile misses it. Mounting again a moment
     * later spares reading the whole blob from the source. The session just
     * opened is left to the registry's purge of stale uploads.
     */
    if (up->mount_from != NULL && up->mount_retry) {
        if (!up->mount_retried && reg->mount_retry_misses < REGISTRY_MOUNT_RETRY_MISSES) {
            up->mount_retried = true;
            up->delay_ms = registry_backoff_ms(reg, 0);
            log_debug("mount refused, trying again registry=%s repo=%s from=%s digest=%s",
                      reg->host, up->repo, up->mount_from, up->digest);
            return upload_go(up, UPLOAD_START);
        }
        if (up->mount_retried)
            reg->mount_retry_misses++;
    }
    if (upload_take_location(up, req) < 0)
        return upload_end(up, FERRY_EPROTO,
                          xasprintf("POST %s/v2/%s/blobs/uploads/: 202 without a usable Location",
                                    up->reg->host, up->repo),
                          0);
    const char *min = http_request_response_header(req, "OCI-Chunk-Min-Length");
    if (min != NULL) {
        uint64_t m = strtoull(min, NULL, 10);
        if (m > up->chunk_min && m <= UPLOAD_CHUNK_MIN_MAX)
            up->chunk_min = m;
    }
    if (up->chunk_max < up->chunk_min)
        up->chunk_max = up->chunk_min;
    up->offset = 0;
    if (up->mode != REGISTRY_UPLOAD_CHUNKED)
        return upload_go(up, UPLOAD_PUT);
    return upload_go(up, up->size == 0 ? UPLOAD_CLOSE : UPLOAD_PATCH);
}

/* The PUT of a monolithic upload, or the one closing a chunked one. */
static enum upload_next upload_put_done(struct registry_upload *up, struct registry_op *op,
                                        struct http_request *req, long status)
{
    (void)op;
    if (status != 201 && status != 204)
        return UPLOAD_NEXT_UNEXPECTED;
    const char *dcd = http_request_response_header(req, "Docker-Content-Digest");
    if (dcd != NULL && strcmp(dcd, up->digest) != 0)
        return upload_end(up, FERRY_EDIGEST,
                          xasprintf("PUT %s/v2/%s/blobs: registry stored %s, expected %s",
                                    up->reg->host, up->repo, dcd, up->digest),
                          0);
    return upload_end(up, 0, NULL, REGISTRY_UPLOADED);
}

/* A chunk: the registry's Range says how much of it arrived. */
static enum upload_next upload_patched(struct registry_upload *up, struct registry_op *op,
                                       struct http_request *req, long status)
{
    if (status == 416) /* The registry holds a different amount than we thought: ask it. */
        return upload_go(up, UPLOAD_STATUS);
    if (status == 404)
        return upload_restart(up, op, req);
    /* ECR answers a PATCH with 201 where the spec says 202. */
    if (status != 202 && status != 201)
        return UPLOAD_NEXT_UNEXPECTED;
    if (upload_take_location(up, req) < 0)
        return upload_end(
            up, FERRY_EPROTO,
            xasprintf("PATCH %s/v2/%s/blobs/uploads: no usable Location", up->reg->host, up->repo),
            0);
    uint64_t next = up->chunk_start + up->chunk_len;
    const char *range = http_request_response_header(req, "Range");
    uint64_t reported = 0;
    if (range != NULL && httpparse_range_end(range, &reported) == 0 && reported < next)
        next = reported;
    up->offset = next;
    return upload_go(up, up->offset >= up->size ? UPLOAD_CLOSE : UPLOAD_PATCH);
}

/* The session's status: go on from the end of its Range (from 0 without one). */
static enum upload_next upload_status_known(struct registry_upload *up, struct registry_op *op,
                                            struct http_request *req, long status)
{
    if (status == 404)
        return upload_restart(up, op, req);
    if (status != 204)
        return UPLOAD_NEXT_UNEXPECTED;
    const char *range = http_request_response_header(req, "Range");
    uint64_t next = 0;
    if (range != NULL && httpparse_range_end(range, &next) == 0 && strcmp(range, "0-0") != 0 &&
        next <= up->size)
        up->offset = next;
    else
        up->offset = 0;
    /* A status answer need not name the session again: without a usable
     * Location, the one we have stays. */
    if (upload_take_location(up, req) < 0)
        log_debug("upload status named no location registry=%s digest=%s", up->reg->host,
                  up->digest);
    return upload_go(up, up->offset >= up->size ? UPLOAD_CLOSE : UPLOAD_PATCH);
}

typedef enum upload_next (*upload_handler)(struct registry_upload *up, struct registry_op *op,
                                           struct http_request *req, long status);

static const upload_handler upload_handlers[] = {
    [UPLOAD_START] = upload_started,  [UPLOAD_PUT] = upload_put_done,
    [UPLOAD_PATCH] = upload_patched,  [UPLOAD_STATUS] = upload_status_known,
    [UPLOAD_CLOSE] = upload_put_done,
};

/*
 * No answer, or one the state does not take. A body-carrying request that
 * broke, or met a transient status, recovers (an upload restarts after a
 * stall too: its session may have survived); the other requests were retried
 * by their op already, so the upload fails.
 */
static enum upload_next upload_failed(struct registry_upload *up, struct registry_op *op,
                                      struct http_request *req, int rc, long status)
{
    int code = rc < 0 ? rc : registry_push_status_rc(req, rc);
    char *error = registry_op_error_text(op, req, code);
    if (retry_transient(rc, status, 0) && (up->state == UPLOAD_PUT || up->state == UPLOAD_PATCH))
        return upload_recover(up, error);
    return upload_end(up, code, error, 0);
}

/* ---- the one way in and the one way out ---- */

static void upload_finish(struct registry_upload *up)
{
    up->cb(up->rc, up->error, up->how, up->arg);
    free(up->error);
    free(up->repo);
    free(up->digest);
    free(up->mount_from);
    free(up->location);
    free(up);
}

static void upload_op_done(struct registry_op *op, struct http_request *req, int rc, void *arg)
{
    struct registry_upload *up = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    enum upload_next next = UPLOAD_NEXT_UNEXPECTED;

    up->op = NULL;
    if (rc == 0)
        next = upload_handlers[up->state](up, op, req, status);
    if (next == UPLOAD_NEXT_UNEXPECTED)
        next = upload_failed(up, op, req, rc, status);
    registry_op_free(op);
    if (next == UPLOAD_NEXT_STEP)
        upload_step(up);
    else
        upload_finish(up);
}

int registry_blob_upload(struct registry *reg, const char *repo, const char *digest, uint64_t size,
                         http_source_cb source, void *source_arg,
                         const struct registry_upload_options *opts, registry_upload_cb cb,
                         void *arg, struct registry_upload **out)
{
    if (!digest_valid(digest))
        return FERRY_EINVAL;
    struct registry_upload *up = xcalloc(1, sizeof(*up));
    up->reg = reg;
    up->repo = xstrdup(repo);
    up->digest = xstrdup(digest);
    up->size = size;
    up->source = source;
    up->source_arg = source_arg;
    up->cb = cb;
    up->arg = arg;
    if (opts != NULL) {
        up->mode = opts->mode;
        up->chunk_min = opts->chunk_min;
        up->chunk_max = opts->chunk_max;
        up->mount_from = xstrdup(opts->mount_from);
        up->mount_retry = opts->mount_retry;
    }
    /* A chunk size alone means chunks of that size. */
    if (up->chunk_max == 0)
        up->chunk_max = up->chunk_min ? up->chunk_min : REGISTRY_DEFAULT_CHUNK_MAX;
    if (up->chunk_max < up->chunk_min)
        up->chunk_max = up->chunk_min;
    up->state = UPLOAD_START;
    if (out != NULL)
        *out = up;
    upload_step(up);
    return 0;
}

void registry_upload_resume(struct registry_upload *up)
{
    if (up->op != NULL && up->op->req != NULL)
        http_request_resume(up->op->req);
}
