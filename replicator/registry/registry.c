/*
 * registry.c: the registry's lifecycle (registry_new, registry_close), its
 * counters, the small helpers every operation uses, and the simplest
 * operations: the ping and the "does it exist" answer. The op with its
 * retries lives in registry_op.c, auth in registry_auth.c, and each kind of
 * operation in a file of its own (registry_blob.c, registry_upload.c,
 * registry_manifest.c, registry_list.c, registry_referrers.c).
 */
#include "registry/registry.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "registry/credentials.h"
#include "registry/regerror.h"
#include "registry/registry_int.h"

/* ---- small helpers ---- */

char *registry_url_path(const char *url)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? strchr(p + 3, '/') : url;
    if (p == NULL)
        p = "/";
    size_t n = strcspn(p, "?#");
    return xstrndup(p, n);
}

int registry_status_error(long status)
{
    if (status == 401 || status == 403)
        return FERRY_EAUTH;
    if (status == 404)
        return FERRY_ENOTFOUND;
    if (status == 429)
        return FERRY_ETOOMANY;
    if (status >= 500)
        return FERRY_ESERVER;
    return FERRY_EHTTP;
}

int registry_push_status_rc(struct http_request *req, int rc)
{
    rc = registry_status_rc(req, rc);
    long status = req != NULL ? http_request_status(req) : 0;
    if (status != 404 && status != 403)
        return rc;
    /* ECR answers a push to a missing repository NAME_UNKNOWN, Harbor (a
     * missing project) and Docker Hub DENIED: the create_repository hook's cue. */
    const struct buf *body = http_request_response_body(req);
    char *code = NULL;
    if (body->len > 0 && regerror_parse(body->data, body->len, &code, NULL) == 0 &&
        strcmp(code, status == 404 ? "NAME_UNKNOWN" : "DENIED") == 0)
        rc = FERRY_ENOREPO;
    free(code);
    return rc;
}

int registry_status_rc(struct http_request *req, int rc)
{
    if (rc < 0)
        return rc;
    return registry_status_error(req != NULL ? http_request_status(req) : 0);
}

char *registry_repo_scope(const struct registry *reg, const char *repo)
{
    return xasprintf("repository:%s:%s", repo, reg->opts.push ? "pull,push" : "pull");
}

uint64_t registry_backoff_ms(const struct registry *reg, int retry)
{
    return retry_delay_ms(&reg->retry, retry);
}

/* ---- the request budget a registry announces (RateLimit-*) ---- */

/* Digits of a count or a window: more than this many is not a budget but garbage. */
#define RATELIMIT_DIGITS_MAX 15

static const char *ratelimit_skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* A decimal number of 1 to RATELIMIT_DIGITS_MAX digits at *p; NULL when there is none. */
static const char *ratelimit_number(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > RATELIMIT_DIGITS_MAX)
            return NULL;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    if (digits == 0)
        return NULL;
    *out = v;
    return p;
}

int registry_ratelimit_parse(const char *value, int64_t *count, uint64_t *window_s)
{
    uint64_t n = 0;
    uint64_t w = 0;
    const char *p = ratelimit_number(ratelimit_skip_ows(value), &n);
    if (p == NULL)
        return FERRY_EPARSE;
    /* Parameters of the first item: `w=` is the window; others (a
     * comment="..." of the IETF draft) are stepped over. */
    for (p = ratelimit_skip_ows(p); *p == ';'; p = ratelimit_skip_ows(p)) {
        p = ratelimit_skip_ows(p + 1);
        if ((p[0] == 'w' || p[0] == 'W') && p[1] == '=') {
            p = ratelimit_number(p + 2, &w);
            if (p == NULL)
                return FERRY_EPARSE;
            continue;
        }
        bool quoted = false;
        for (; *p != '\0' && (quoted || (*p != ';' && *p != ',')); p++) {
            if (*p == '"')
                quoted = !quoted;
            else if (quoted && *p == '\\' && p[1] != '\0')
                p++;
        }
        if (quoted)
            return FERRY_EPARSE;
    }
    /* The first item is the policy in force; a list's other items ("100,
     * 100;w=60, 1000;w=3600") describe the quotas behind it. */
    if (*p != '\0' && *p != ',')
        return FERRY_EPARSE;
    *count = (int64_t)n;
    *window_s = w;
    return 0;
}

void registry_ratelimit_note(struct registry *reg, struct http_request *req)
{
    int64_t limit = -1;
    int64_t remaining = -1;
    uint64_t limit_window = 0;
    uint64_t remaining_window = 0;
    if (req == NULL)
        return;
    /* Each value lives until the next header is asked for: parse it first. */
    const char *v = http_request_response_header(req, "RateLimit-Limit");
    bool has_limit = v != NULL && registry_ratelimit_parse(v, &limit, &limit_window) == 0;
    v = http_request_response_header(req, "RateLimit-Remaining");
    bool has_remaining =
        v != NULL && registry_ratelimit_parse(v, &remaining, &remaining_window) == 0;
    if (!has_limit && !has_remaining)
        return;
    if (has_limit)
        reg->stats.ratelimit_limit = limit;
    if (has_remaining)
        reg->stats.ratelimit_remaining = remaining;
    if (limit_window != 0 || remaining_window != 0)
        reg->stats.ratelimit_window_s = limit_window != 0 ? limit_window : remaining_window;
    uint64_t now = uv_now(reg->loop);
    reg->stats.ratelimit_seen_ms = now != 0 ? now : 1;
}

/* ---- registry lifecycle ---- */

/* The options with every 0 replaced by its default; credentials are not kept. */
static struct registry_options registry_options_resolve(const struct registry_options *opts)
{
    struct registry_options o = {0};
    if (opts != NULL)
        o = *opts;
    o.username = NULL;
    o.password = NULL;
    o.credentials = NULL;
    if (o.max_attempts <= 0)
        o.max_attempts = REGISTRY_DEFAULT_MAX_ATTEMPTS;
    if (o.retry_base_ms == 0)
        o.retry_base_ms = REGISTRY_DEFAULT_RETRY_BASE_MS;
    if (o.retry_max_ms == 0)
        o.retry_max_ms = REGISTRY_DEFAULT_RETRY_MAX_MS;
    if (o.retry_after_max_ms == 0)
        o.retry_after_max_ms = REGISTRY_DEFAULT_RETRY_AFTER_MS;
    if (o.list_page_size <= 0 || o.list_page_size > REGISTRY_LIST_PAGE_SIZE_MAX)
        o.list_page_size = REGISTRY_DEFAULT_LIST_PAGE_SIZE;
    return o;
}

struct registry *registry_new(uv_loop_t *loop, struct http_client *http, const char *host,
                              const struct registry_options *opts)
{
    struct registry *reg = xcalloc(1, sizeof(*reg));
    reg->loop = loop;
    reg->http = http;
    reg->host = xstrdup(host);
    reg->opts = registry_options_resolve(opts);
    reg->stats.ratelimit_limit = -1; /* no RateLimit-* header seen yet */
    reg->stats.ratelimit_remaining = -1;
    /* Requests back off with full jitter: a uniform delay below a doubling ceiling. */
    reg->retry = (struct retry_policy){
        .max_attempts = reg->opts.max_attempts,
        .base_ms = reg->opts.retry_base_ms,
        .max_ms = reg->opts.retry_max_ms,
        .equal_jitter = false,
    };
    bool plain = reg->opts.plain_http || (reference_host_is_loopback(host) && !reg->opts.force_tls);
    reg->base = xasprintf("%s://%s", plain ? "http" : "https", host);
    if (opts != NULL && opts->credentials != NULL) {
        reg->creds = credentials_ref(opts->credentials);
    } else if (opts != NULL && opts->username != NULL && opts->password != NULL) {
        struct credentials_spec spec = {.kind = CREDENTIALS_STATIC,
                                        .host = host,
                                        .username = opts->username,
                                        .password = opts->password,
                                        .label = "given"};
        reg->creds = credentials_new(&spec);
    }
    /* uv_timer_init() cannot fail on a loop: it only fills in the handle. */
    int rc = uv_timer_init(loop, &reg->timer);
    if (rc < 0)
        log_error("registry timer init failed registry=%s error=\"%s\"", host, uv_strerror(rc));
    reg->timer.data = reg;
    reg->hits_tail = &reg->hits;
    if (reg->opts.cache_bytes > 0)
        reg->cache = mcache_new(reg->opts.cache_bytes);
    return reg;
}

static void registry_timer_close_cb(uv_handle_t *handle)
{
    struct registry *reg = handle->data;
    void (*closed_cb)(void *) = reg->closed_cb;
    void *closed_arg = reg->closed_arg;
    mcache_free(reg->cache);
    registry_auth_release(reg);
    free(reg->host);
    free(reg->base);
    free(reg);
    if (closed_cb != NULL)
        closed_cb(closed_arg);
}

void registry_close(struct registry *reg, void (*cb)(void *arg), void *arg)
{
    reg->closed_cb = cb;
    reg->closed_arg = arg;
    /* uv_close() stops the timer too. */
    uv_close((uv_handle_t *)&reg->timer, registry_timer_close_cb);
}

struct credentials *registry_credentials(const struct registry *reg)
{
    return reg->creds;
}

const char *registry_host(const struct registry *reg)
{
    return reg->host;
}

void registry_get_stats(const struct registry *reg, struct registry_stats *out)
{
    *out = reg->stats;
}

bool registry_referrers_api_missing(const struct registry *reg)
{
    return reg->referrers_missing;
}

/* ---- ping ---- */

struct simple_ctx {
    registry_done_cb cb;
    void *arg;
};

static void ping_done(struct registry_op *op, struct http_request *req, int rc, void *arg)
{
    struct simple_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    if (rc == 0 && status == 200) {
        ctx->cb(0, NULL, ctx->arg);
    } else {
        rc = registry_status_rc(req, rc);
        char *error = registry_op_error_text(op, req, rc);
        ctx->cb(rc, error, ctx->arg);
        free(error);
    }
    free(ctx);
    registry_op_free(op);
}

void registry_ping(struct registry *reg, registry_done_cb cb, void *arg)
{
    char *url = xasprintf("%s/v2/", reg->base);
    struct registry_op *op = registry_op_new(reg, "GET", url, "");
    free(url);
    struct simple_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->cb = cb;
    ctx->arg = arg;
    registry_op_run(op, ping_done, ctx);
}

/* ---- does it exist: a HEAD (or a one-name listing) answered yes, no or an error ---- */

struct exists_ctx {
    registry_exists_cb cb;
    void *arg;
};

static void registry_exists_done(struct registry_op *op, struct http_request *req, int rc,
                                 void *arg)
{
    struct exists_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    if (rc == 0 && status == 200) {
        const char *len = http_request_response_header(req, "Content-Length");
        int64_t size = len != NULL ? strtoll(len, NULL, 10) : -1;
        ctx->cb(0, NULL, true, size, ctx->arg);
    } else if (rc == 0 && status == 404) {
        ctx->cb(0, NULL, false, -1, ctx->arg);
    } else {
        rc = registry_status_rc(req, rc);
        char *error = registry_op_error_text(op, req, rc);
        ctx->cb(rc, error, false, -1, ctx->arg);
        free(error);
    }
    free(ctx);
    registry_op_free(op);
}

void registry_exists_run(struct registry_op *op, registry_exists_cb cb, void *arg)
{
    struct exists_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->cb = cb;
    ctx->arg = arg;
    registry_op_run(op, registry_exists_done, ctx);
}
