#include "registry/registry.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uthash.h>

#include "common/buf.h"
#include "common/digest.h"
#include "common/errors.h"
#include "registry/httpparse.h"
#include "common/log.h"
#include "common/manifest.h"
#include "registry/mcache.h"
#include "common/reference.h"
#include "common/secret.h"
#include "registry/regerror.h"
#include "registry/retry.h"
#include "registry/wwwauth.h"
#include "common/xalloc.h"

#define TOKEN_BODY_MAX    (64 * 1024)
#define LIST_PAGE_MAX     (4 * 1024 * 1024)
#define LIST_PAGES_MAX    10000
#define LIST_SKIPS_LOGGED 5 /* invalid names logged one by one per listing; the rest counted */
#define ERROR_BODY_MAX    (64 * 1024)
/* A referrer list is reused this long: the jobs of one image, not later pushes. */
#define REFERRERS_TTL_MS 5000

enum registry_auth {
    AUTH_UNKNOWN = 0,
    AUTH_NONE,
    AUTH_BASIC,
    AUTH_BEARER,
};

struct regop;

/* A cached token for one set of scopes; single-flight while it is fetched. */
struct token_entry {
    char *scope;
    char *token;
    uint64_t expires_ms; /* uv_now() time after which it is not used */
    bool fetching;
    struct regop **waiters;
    size_t n_waiters;
    struct token_entry *next;
};

struct registry {
    uv_loop_t *loop;
    struct http_client *http;
    char *host;
    char *base; /* "http://host" or "https://host" */
    char *basic_header;
    bool has_credentials;
    enum registry_auth auth;
    char *realm;
    char *service;
    struct token_entry *tokens;
    struct registry_options opts;
    uv_timer_t timer;
    void (*closed_cb)(void *arg); /* registry_close()'s callback */
    void *closed_arg;
    struct regop *delayed; /* sorted by due time */
    bool referrers_missing;
    struct registry_stats stats;
    struct mcache *cache;                /* NULL: no cache */
    struct fetch_flight *flights;        /* cached fetches under way, by key */
    struct cache_hit *hits, **hits_tail; /* answers to deliver from the loop */
};

/* Callers waiting for one cached fetch. */
struct fetch_waiter {
    registry_manifest_cb cb;
    void *arg;
    struct fetch_waiter *next;
};

struct fetch_flight {
    struct registry *reg;
    char *key;
    uint64_t ttl_ms;
    struct fetch_waiter *waiters, **tail;
    UT_hash_handle hh;
};

/* A cached answer, copied, delivered on the next loop turn. */
struct cache_hit {
    registry_manifest_cb cb;
    void *arg;
    struct mcache_value v;
    struct cache_hit *next;
};

typedef void (*regop_prepare_cb)(struct regop *op, struct http_request *req, void *arg);
typedef void (*regop_done_cb)(struct regop *op, struct http_request *req, int rc, void *arg);

/*
 * One logical request with auth and retries. The registry builds a fresh
 * http_request for every attempt; the final one is handed to `done`, which
 * owns the op from then on and frees it with regop_free().
 */
struct regop {
    struct registry *reg;
    char *method;
    char *url;
    char *scope; /* space-separated token scopes, "" for none */
    char *accept;
    char *content_type;
    const char *body;
    size_t body_len;
    http_source_cb source;
    void *source_arg;
    uint64_t source_len;
    bool has_body;
    http_sink_cb sink;
    void *sink_arg;
    size_t body_limit;
    bool follow;
    bool no_retry; /* the caller retries at a higher level (uploads) */
    bool canceled;
    regop_prepare_cb prepare;
    regop_done_cb done;
    void *arg;
    int attempt;
    int auth_tries;
    bool sent_bearer;
    bool sent_basic;
    char *auth_error; /* why auth failed, when it did before any request */
    char *invalid;    /* why its names cannot go into a URL: it fails before any request */
    struct http_request *req;
    uint64_t due_ms;
    struct regop *next_delayed;
};

static void regop_attempt(struct regop *op);
static void registry_timer_arm(struct registry *reg);

/* ---- small helpers ---- */

static char *url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    struct buf b;
    buf_init(&b, SIZE_MAX / 4);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            buf_append(&b, p, 1);
        } else {
            char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            buf_append(&b, enc, 3);
        }
    }
    return buf_detach(&b, NULL);
}

static char *base64_encode(const char *s)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = strlen(s);
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < len)
            v |= (uint32_t)(unsigned char)s[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* The path of a URL without its query, for error messages (upload URLs carry long state). */
static char *url_path_for_log(const char *url)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? strchr(p + 3, '/') : url;
    if (p == NULL)
        p = "/";
    size_t n = strcspn(p, "?#");
    return xstrndup(p, n);
}

/* Map a final HTTP status to Ferry's codes. */
static int status_error(long status)
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

/*
 * A one-line description of why `op` failed, with the registry's own error
 * message when its body carries one. Caller frees.
 */
static char *regop_error_text(struct regop *op, struct http_request *req, int rc)
{
    char *path = url_path_for_log(op->url);
    char *text;

    if (op->invalid != NULL) {
        text = xasprintf("%s %s: %s", op->method, op->reg->host, op->invalid);
    } else if (op->auth_error != NULL) {
        text = xasprintf("%s %s%s: %s", op->method, op->reg->host, path, op->auth_error);
    } else if (rc < 0 && (req == NULL || http_request_status(req) == 0 ||
                          (rc != FERRY_EHTTP && rc != FERRY_ENOTFOUND && rc != FERRY_EAUTH &&
                           rc != FERRY_ESERVER && rc != FERRY_ETOOMANY))) {
        const char *detail = req != NULL ? http_request_error_text(req) : "";
        text = xasprintf("%s %s%s: %s%s%s%s", op->method, op->reg->host, path, ferry_strerror(rc),
                         detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
    } else {
        long status = req != NULL ? http_request_status(req) : 0;
        const struct buf *body = req != NULL ? http_request_response_body(req) : NULL;
        char *summary = NULL;
        if (body != NULL && body->len > 0)
            summary = regerror_summary(body->data, body->len);
        text = xasprintf("%s %s%s: HTTP %ld%s%s%s", op->method, op->reg->host, path, status,
                         summary ? " (" : "", summary ? summary : "", summary ? ")" : "");
        free(summary);
    }
    free(path);
    return text;
}

/* ---- registry lifecycle ---- */

struct registry *registry_new(uv_loop_t *loop, struct http_client *http, const char *host,
                              const struct registry_options *opts)
{
    struct registry *reg = xcalloc(1, sizeof(*reg));
    reg->loop = loop;
    reg->http = http;
    reg->host = xstrdup(host);
    if (opts != NULL)
        reg->opts = *opts;
    reg->opts.username = NULL;
    reg->opts.password = NULL;
    if (reg->opts.max_attempts <= 0)
        reg->opts.max_attempts = 6;
    if (reg->opts.retry_base_ms == 0)
        reg->opts.retry_base_ms = 200;
    if (reg->opts.retry_max_ms == 0)
        reg->opts.retry_max_ms = 8000;
    if (reg->opts.retry_after_max_ms == 0)
        reg->opts.retry_after_max_ms = 30000;
    if (reg->opts.list_page_size <= 0 || reg->opts.list_page_size > 10000)
        reg->opts.list_page_size = 1000;
    bool plain = reg->opts.plain_http || (reference_host_is_loopback(host) && !reg->opts.force_tls);
    reg->base = xasprintf("%s://%s", plain ? "http" : "https", host);
    if (opts != NULL && opts->username != NULL && opts->password != NULL) {
        char *pair = xasprintf("%s:%s", opts->username, opts->password);
        char *enc = base64_encode(pair);
        reg->basic_header = xasprintf("Authorization: Basic %s", enc);
        /* The plain pair is wiped before it is freed; only the header remains. */
        secret_free(pair);
        free(enc);
        reg->has_credentials = true;
    }
    uv_timer_init(loop, &reg->timer);
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
    for (struct token_entry *t = reg->tokens, *next; t != NULL; t = next) {
        next = t->next;
        free(t->scope);
        secret_free(t->token);
        free(t->waiters);
        free(t);
    }
    if (reg->basic_header != NULL)
        secret_free(reg->basic_header);
    free(reg->host);
    free(reg->base);
    free(reg->realm);
    free(reg->service);
    free(reg);
    if (closed_cb != NULL)
        closed_cb(closed_arg);
}

void registry_close(struct registry *reg, void (*cb)(void *arg), void *arg)
{
    reg->closed_cb = cb;
    reg->closed_arg = arg;
    uv_timer_stop(&reg->timer);
    uv_close((uv_handle_t *)&reg->timer, registry_timer_close_cb);
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

/* ---- the op: auth, attempts, retries ---- */

static struct regop *regop_new(struct registry *reg, const char *method, const char *url,
                               const char *scope)
{
    struct regop *op = xcalloc(1, sizeof(*op));
    op->reg = reg;
    op->method = xstrdup(method);
    op->url = xstrdup(url);
    op->scope = xstrdup(scope != NULL ? scope : "");
    op->body_limit = ERROR_BODY_MAX;
    return op;
}

/*
 * Names reach a URL path only when valid, whoever gave them (a listing, a
 * webhook, a manifest, the command line): a tag "prod?x" would write
 * "prod", a repository "a/../b" another repository. `reference` is a tag or
 * a digest, or NULL. An op with an invalid name fails before any request.
 */
static void regop_check_names(struct regop *op, const char *repo, const char *reference)
{
    char shown[FERRY_PRINTABLE_MAX];
    if (op->invalid != NULL)
        return;
    if (!reference_repository_valid(repo))
        op->invalid = xasprintf("invalid repository name \"%s\"", ferry_printable(repo, shown));
    else if (reference != NULL && !digest_valid(reference) && !reference_tag_valid(reference))
        op->invalid = xasprintf("invalid tag or digest \"%s\"", ferry_printable(reference, shown));
}

static void regop_free(struct regop *op)
{
    if (op == NULL)
        return;
    http_request_free(op->req);
    free(op->method);
    free(op->url);
    free(op->scope);
    free(op->accept);
    free(op->content_type);
    free(op->auth_error);
    free(op->invalid);
    free(op);
}

static void regop_finish(struct regop *op, struct http_request *req, int rc)
{
    op->req = req;
    op->done(op, req, rc, op->arg);
}

static void regop_run(struct regop *op, regop_done_cb done, void *arg)
{
    op->done = done;
    op->arg = arg;
    regop_attempt(op);
}

static void cache_deliver_hits(struct registry *reg)
{
    struct cache_hit *h = reg->hits;
    reg->hits = NULL;
    reg->hits_tail = &reg->hits;
    while (h != NULL) {
        struct cache_hit *next = h->next;
        h->cb(0, NULL, h->v.bytes, h->v.len, h->v.media_type, h->v.digest, h->arg);
        free(h->v.bytes);
        free(h->v.media_type);
        free(h->v.digest);
        free(h);
        h = next;
    }
}

static void registry_timer_cb(uv_timer_t *timer)
{
    struct registry *reg = timer->data;
    cache_deliver_hits(reg);
    uint64_t now = uv_now(reg->loop);
    while (reg->delayed != NULL && reg->delayed->due_ms <= now) {
        struct regop *op = reg->delayed;
        reg->delayed = op->next_delayed;
        op->next_delayed = NULL;
        regop_attempt(op);
    }
    registry_timer_arm(reg);
}

static void registry_timer_arm(struct registry *reg)
{
    if (reg->hits != NULL) {
        uv_timer_start(&reg->timer, registry_timer_cb, 0, 0);
        return;
    }
    if (reg->delayed == NULL) {
        uv_timer_stop(&reg->timer);
        return;
    }
    uint64_t now = uv_now(reg->loop);
    uint64_t due = reg->delayed->due_ms;
    uv_timer_start(&reg->timer, registry_timer_cb, due > now ? due - now : 0, 0);
}

static void regop_run_after(struct regop *op, uint64_t delay_ms)
{
    struct registry *reg = op->reg;
    op->due_ms = uv_now(reg->loop) + delay_ms;
    struct regop **pp = &reg->delayed;
    while (*pp != NULL && (*pp)->due_ms <= op->due_ms)
        pp = &(*pp)->next_delayed;
    op->next_delayed = *pp;
    *pp = op;
    registry_timer_arm(reg);
}

/* Requests back off with full jitter: a uniform delay below a doubling ceiling. */
static uint64_t backoff_delay(const struct registry *reg, int attempt)
{
    struct retry_policy policy = {reg->opts.max_attempts, reg->opts.retry_base_ms,
                                  reg->opts.retry_max_ms, false};
    return retry_delay_ms(&policy, attempt);
}

static struct token_entry *token_find(struct registry *reg, const char *scope)
{
    for (struct token_entry *t = reg->tokens; t != NULL; t = t->next)
        if (strcmp(t->scope, scope) == 0)
            return t;
    struct token_entry *t = xcalloc(1, sizeof(*t));
    t->scope = xstrdup(scope);
    t->next = reg->tokens;
    reg->tokens = t;
    return t;
}

static void token_fetch(struct registry *reg, struct token_entry *t);

static void token_fetch_done(struct http_request *req, int rc, void *arg)
{
    struct token_entry *t = arg;
    struct registry *reg = NULL;
    long status = http_request_status(req);
    char *error = NULL;
    bool retryable = false;

    /* All waiters share the registry. */
    if (t->n_waiters > 0)
        reg = t->waiters[0]->reg;
    t->fetching = false;
    if (rc < 0) {
        error = xasprintf("token request failed: %s", ferry_strerror(rc));
        retryable = retry_error_transient(rc, 0);
    } else if (status != 200) {
        const struct buf *body = http_request_response_body(req);
        char *summary = body->len ? regerror_summary(body->data, body->len) : NULL;
        error = xasprintf("token request denied: HTTP %ld%s%s%s", status, summary ? " (" : "",
                          summary ? summary : "", summary ? ")" : "");
        free(summary);
        retryable = retry_status_transient(status);
    } else {
        const struct buf *body = http_request_response_body(req);
        cJSON *json = cJSON_ParseWithLength(body->data, body->len);
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(json, "token");
        if (!cJSON_IsString(tok) || tok->valuestring[0] == '\0')
            tok = cJSON_GetObjectItemCaseSensitive(json, "access_token");
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(json, "expires_in");
        if (cJSON_IsString(tok) && tok->valuestring[0] != '\0' &&
            strlen(tok->valuestring) < 16384) {
            double expires = cJSON_IsNumber(exp) && exp->valuedouble >= 1 ? exp->valuedouble : 60;
            if (expires > 86400)
                expires = 86400;
            /* Renew a little early so that no request leaves with a dying token. */
            uint64_t life_ms = (uint64_t)(expires * 1000.0);
            uint64_t margin = life_ms / 10 < 5000 ? life_ms / 10 : 5000;
            secret_free(t->token);
            t->token = xstrdup(tok->valuestring);
            t->expires_ms = (reg != NULL ? uv_now(reg->loop) : 0) + life_ms - margin;
        } else {
            error = xstrdup("token response is not a token (no \"token\" string in JSON)");
        }
        cJSON_Delete(json);
    }
    http_request_free(req);

    struct regop **waiters = t->waiters;
    size_t n = t->n_waiters;
    t->waiters = NULL;
    t->n_waiters = 0;
    for (size_t i = 0; i < n; i++) {
        struct regop *op = waiters[i];
        if (error == NULL) {
            regop_attempt(op);
        } else if (retryable && op->attempt + 1 < op->reg->opts.max_attempts && !op->no_retry) {
            op->attempt++;
            op->reg->stats.retries++;
            regop_run_after(op, backoff_delay(op->reg, op->attempt));
        } else {
            free(op->auth_error);
            op->auth_error = xstrdup(error);
            regop_finish(op, NULL, retryable ? FERRY_ECONNECT : FERRY_EAUTH);
        }
    }
    free(waiters);
    free(error);
}

static void token_fetch(struct registry *reg, struct token_entry *t)
{
    struct buf url;
    buf_init(&url, 64 * 1024);
    buf_append_str(&url, reg->realm);
    buf_append_str(&url, strchr(reg->realm, '?') ? "&" : "?");
    if (reg->service != NULL) {
        char *svc = url_escape(reg->service);
        buf_append_str(&url, "service=");
        buf_append_str(&url, svc);
        free(svc);
    }
    /* One scope parameter per scope: a mount needs two in one token. */
    char *scopes = xstrdup(t->scope);
    char *save = NULL;
    for (char *s = strtok_r(scopes, " ", &save); s != NULL; s = strtok_r(NULL, " ", &save)) {
        char *esc = url_escape(s);
        buf_append_str(&url, "&scope=");
        buf_append_str(&url, esc);
        free(esc);
    }
    free(scopes);

    struct http_request *req = http_request_new(reg->http, "GET", url.data);
    buf_release(&url);
    if (reg->basic_header != NULL)
        http_request_add_header(req, reg->basic_header);
    http_request_set_body_limit(req, TOKEN_BODY_MAX);
    http_request_follow_redirects(req, true);
    t->fetching = true;
    reg->stats.token_fetches++;
    int rc = http_request_start(req, token_fetch_done, t);
    if (rc < 0)
        token_fetch_done(req, rc, t);
}

static void regop_http_done(struct http_request *req, int rc, void *arg);

/*
 * Is `url` at the registry's own origin (its scheme, host and port, exactly
 * as configured)? Credentials go nowhere else: not to a host a Link, a
 * Location or a redirect names.
 */
static bool registry_own_origin(const struct registry *reg, const char *url)
{
    size_t n = strlen(reg->base);
    return url != NULL && strncmp(url, reg->base, n) == 0 &&
           (url[n] == '\0' || url[n] == '/' || url[n] == '?');
}

/*
 * May a challenge's realm have the token request (and the Basic credentials
 * with it)? Over HTTPS always; over plain HTTP only when the registry itself
 * is plain HTTP (by configuration, or loopback).
 */
static bool registry_realm_allowed(const struct registry *reg, const char *realm)
{
    if (strncasecmp(realm, "https://", 8) == 0)
        return true;
    return strncasecmp(realm, "http://", 7) == 0 && strncmp(reg->base, "http://", 7) == 0;
}

static void regop_attempt(struct regop *op)
{
    struct registry *reg = op->reg;
    char *auth_header = NULL;

    op->sent_bearer = false;
    op->sent_basic = false;
    if (op->canceled) {
        regop_finish(op, NULL, FERRY_ECANCELED);
        return;
    }
    if (op->invalid != NULL) {
        regop_finish(op, NULL, FERRY_EINVAL);
        return;
    }
    if (reg->auth == AUTH_BEARER && reg->realm != NULL) {
        struct token_entry *t = token_find(reg, op->scope);
        if (t->token == NULL || uv_now(reg->loop) >= t->expires_ms) {
            t->waiters = xrealloc(t->waiters, (t->n_waiters + 1) * sizeof(*t->waiters));
            t->waiters[t->n_waiters++] = op;
            if (!t->fetching)
                token_fetch(reg, t);
            return;
        }
        auth_header = xasprintf("Authorization: Bearer %s", t->token);
        op->sent_bearer = true;
    } else if (reg->auth == AUTH_BASIC && reg->basic_header != NULL) {
        auth_header = xstrdup(reg->basic_header);
        op->sent_basic = true;
    }

    struct http_request *req = http_request_new(reg->http, op->method, op->url);
    if (auth_header != NULL && !registry_own_origin(reg, op->url)) {
        log_warn("credentials withheld: the URL is not at the registry's origin registry=%s",
                 reg->host);
        op->sent_bearer = op->sent_basic = false;
        secret_free(auth_header);
        auth_header = NULL;
    }
    if (auth_header != NULL) {
        http_request_add_header(req, auth_header);
        secret_free(auth_header);
    }
    if (op->accept != NULL)
        http_request_add_header(req, op->accept);
    if (op->content_type != NULL)
        http_request_add_header(req, op->content_type);
    if (op->has_body) {
        if (op->source != NULL)
            http_request_set_source(req, op->source, op->source_arg, op->source_len);
        else
            http_request_set_body(req, op->body, op->body_len);
    }
    if (op->sink != NULL)
        http_request_set_sink(req, op->sink, op->sink_arg);
    http_request_set_body_limit(req, op->body_limit);
    http_request_follow_redirects(req, op->follow);
    if (op->prepare != NULL)
        op->prepare(op, req, op->arg);
    op->req = req;
    int rc = http_request_start(req, regop_http_done, op);
    if (rc < 0) {
        op->req = NULL;
        regop_finish(op, req, rc);
    }
}

/* Learn the registry's auth from a 401; true when the op should be sent again. */
static bool regop_handle_challenge(struct regop *op, struct http_request *req)
{
    struct registry *reg = op->reg;
    const char *header = http_request_response_header(req, "WWW-Authenticate");
    struct wwwauth challenge;
    bool again = false;

    /* A challenge from another origin (a redirect target, a next page
     * elsewhere) names no realm of this registry's. */
    if (header == NULL || op->auth_tries >= 2 || !registry_own_origin(reg, http_request_url(req)))
        return false;
    if (wwwauth_parse(&challenge, header, NULL) < 0)
        return false;
    if (strcmp(challenge.scheme, "bearer") == 0 && challenge.realm != NULL &&
        !registry_realm_allowed(reg, challenge.realm)) {
        /* The token request carries the registry's Basic credentials: not
         * over plain HTTP unless the registry itself is. */
        free(op->auth_error);
        op->auth_error = xasprintf("token realm %s refused: it must be an https:// URL "
                                   "(http:// only for a plain-HTTP registry), or the "
                                   "credentials would cross the network in clear",
                                   challenge.realm);
        log_warn("token realm refused registry=%s: not an https:// URL", reg->host);
    } else if (strcmp(challenge.scheme, "bearer") == 0 && challenge.realm != NULL) {
        free(reg->realm);
        free(reg->service);
        reg->realm = xstrdup(challenge.realm);
        reg->service = xstrdup(challenge.service);
        reg->auth = AUTH_BEARER;
        struct token_entry *t = token_find(reg, op->scope);
        if (op->sent_bearer) {
            /* The token we sent was refused: forget it and ask once more. */
            secret_free(t->token);
            t->token = NULL;
        }
        if (op->scope[0] == '\0' && challenge.scope != NULL) {
            free(op->scope);
            op->scope = xstrdup(challenge.scope);
        }
        again = true;
    } else if (strcmp(challenge.scheme, "basic") == 0 && reg->basic_header != NULL &&
               !op->sent_basic) {
        reg->auth = AUTH_BASIC;
        again = true;
    }
    wwwauth_release(&challenge);
    if (again)
        op->auth_tries++;
    return again;
}

static void regop_http_done(struct http_request *req, int rc, void *arg)
{
    struct regop *op = arg;
    struct registry *reg = op->reg;
    long status = http_request_status(req);

    op->req = NULL;
    if (rc == 0 && status == 401) {
        if (regop_handle_challenge(op, req)) {
            http_request_free(req);
            regop_attempt(op);
            return;
        }
        regop_finish(op, req, FERRY_EAUTH);
        return;
    }
    if (rc == 0 && reg->auth == AUTH_UNKNOWN && status < 400)
        reg->auth = AUTH_NONE;

    /* A stalled request already waited the stall timeout: one more try, not
     * five, so that a partitioned registry fails its jobs (and opens the
     * engine's circuit) in about twice the stall timeout. */
    bool retryable =
        retry_error_transient(rc, op->attempt) || (rc == 0 && retry_status_transient(status));
    if (retryable && !op->no_retry && op->attempt + 1 < reg->opts.max_attempts) {
        uint64_t delay = backoff_delay(reg, op->attempt);
        const char *retry_after = http_request_response_header(req, "Retry-After");
        uint64_t ra = 0;
        if (retry_after != NULL && httpparse_retry_after(retry_after, time(NULL), &ra) == 0) {
            delay = ra < reg->opts.retry_after_max_ms ? ra : reg->opts.retry_after_max_ms;
        }
        char *why = regop_error_text(op, req, rc != 0 ? rc : status_error(status));
        log_debug("retrying registry=%s attempt=%d delay_ms=%llu error=\"%s\"", reg->host,
                  op->attempt + 1, (unsigned long long)delay, why);
        free(why);
        op->attempt++;
        reg->stats.retries++;
        http_request_free(req);
        regop_run_after(op, delay);
        return;
    }
    regop_finish(op, req, rc);
}

/* The code for an op that ended with a response whose status the caller did not expect. */
static int regop_status_rc(struct regop *op, struct http_request *req, int rc)
{
    (void)op;
    if (rc < 0)
        return rc;
    return status_error(req != NULL ? http_request_status(req) : 0);
}

static char *repo_scope(const struct registry *reg, const char *repo)
{
    return xasprintf("repository:%s:%s", repo, reg->opts.push ? "pull,push" : "pull");
}

/* ---- ping ---- */

struct simple_ctx {
    registry_done_cb cb;
    void *arg;
};

static void ping_done(struct regop *op, struct http_request *req, int rc, void *arg)
{
    struct simple_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    if (rc == 0 && status == 200) {
        ctx->cb(0, NULL, ctx->arg);
    } else {
        rc = regop_status_rc(op, req, rc);
        char *error = regop_error_text(op, req, rc);
        ctx->cb(rc, error, ctx->arg);
        free(error);
    }
    free(ctx);
    regop_free(op);
}

int registry_ping(struct registry *reg, registry_done_cb cb, void *arg)
{
    char *url = xasprintf("%s/v2/", reg->base);
    struct regop *op = regop_new(reg, "GET", url, "");
    free(url);
    struct simple_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->cb = cb;
    ctx->arg = arg;
    regop_run(op, ping_done, ctx);
    return 0;
}

/* ---- blobs: HEAD ---- */

struct exists_ctx {
    registry_exists_cb cb;
    void *arg;
};

static void blob_exists_done(struct regop *op, struct http_request *req, int rc, void *arg)
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
        rc = regop_status_rc(op, req, rc);
        char *error = regop_error_text(op, req, rc);
        ctx->cb(rc, error, false, -1, ctx->arg);
        free(error);
    }
    free(ctx);
    regop_free(op);
}

int registry_blob_exists(struct registry *reg, const char *repo, const char *digest,
                         registry_exists_cb cb, void *arg)
{
    char *url = xasprintf("%s/v2/%s/blobs/%s", reg->base, repo, digest);
    char *scope = repo_scope(reg, repo);
    struct regop *op = regop_new(reg, "HEAD", url, scope);
    regop_check_names(op, repo, digest);
    free(url);
    free(scope);
    op->follow = true;
    struct exists_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->cb = cb;
    ctx->arg = arg;
    regop_run(op, blob_exists_done, ctx);
    return 0;
}

/* ---- blobs: GET, verified while it streams, resumed with Range ---- */

struct registry_download {
    struct registry *reg;
    struct regop *op;
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
    long status;        /* status of the response being read */
    struct buf error_body;
};

static int blob_get_sink(struct http_request *req, const char *data, size_t len, void *arg)
{
    struct registry_download *g = arg;
    long status = http_request_status(req);

    if (status != 200 && status != 206) {
        /* An error document: keep a capped copy for the message. */
        if (g->error_body.len < ERROR_BODY_MAX)
            buf_append(&g->error_body, data,
                       len < ERROR_BODY_MAX - g->error_body.len
                           ? len
                           : ERROR_BODY_MAX - g->error_body.len);
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
        if (g->skip == 0) {
            /* The rest of this piece is new; hand it on in a piece of its own
             * so that a pause cannot replay the dropped part. */
            int rc = g->sink(data, len, g->received, g->sink_arg);
            if (rc == HTTP_SINK_PAUSE) {
                g->skip_replay = drop;
                return rc;
            }
            if (rc < 0)
                return rc;
            digest_update(&g->hash, data, len);
            g->received += len;
            return 0;
        }
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
    /* Hash only what the sink took: paused bytes come again. */
    int rc = g->sink(data, len, g->received, g->sink_arg);
    if (rc != 0)
        return rc;
    digest_update(&g->hash, data, len);
    g->received += len;
    return 0;
}

static void blob_get_prepare(struct regop *op, struct http_request *req, void *arg)
{
    struct registry_download *g = arg;
    (void)op;
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

static void blob_get_done(struct regop *op, struct http_request *req, int rc, void *arg)
{
    struct registry_download *g = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    char *error = NULL;

    if (rc == 0 && (status == 200 || status == 206)) {
        char got[DIGEST_MAX];
        digest_final(&g->hash, got);
        if (g->size >= 0 && g->received != (uint64_t)g->size) {
            rc = FERRY_EDIGEST;
            error =
                xasprintf("blob %s from %s: got %llu bytes, its descriptor says %lld", g->digest,
                          g->reg->host, (unsigned long long)g->received, (long long)g->size);
        } else if (strcmp(got, g->digest) != 0) {
            rc = FERRY_EDIGEST;
            error = xasprintf("blob %s from %s does not match its digest (content is %s)",
                              g->digest, g->reg->host, got);
        }
    } else if (rc == FERRY_EDIGEST) {
        error = xasprintf("blob %s from %s is larger than its descriptor says (%lld bytes)",
                          g->digest, g->reg->host, (long long)g->size);
    } else {
        rc = regop_status_rc(op, req, rc);
        if (req != NULL && g->error_body.len > 0) {
            char *summary = regerror_summary(g->error_body.data, g->error_body.len);
            char *path = url_path_for_log(op->url);
            error = xasprintf("GET %s%s: HTTP %ld%s%s%s", g->reg->host, path, status,
                              summary ? " (" : "", summary ? summary : "", summary ? ")" : "");
            free(path);
            free(summary);
        } else {
            error = regop_error_text(op, req, rc);
        }
    }
    g->cb(rc, error, g->arg);
    free(error);
    digest_release(&g->hash);
    buf_release(&g->error_body);
    free(g->digest);
    free(g);
    regop_free(op);
}

int registry_blob_get(struct registry *reg, const char *repo, const char *digest, int64_t size,
                      registry_sink_cb sink, void *sink_arg, registry_done_cb cb, void *arg,
                      struct registry_download **out)
{
    if (!digest_valid(digest))
        return FERRY_EINVAL;
    char *url = xasprintf("%s/v2/%s/blobs/%s", reg->base, repo, digest);
    char *scope = repo_scope(reg, repo);
    struct regop *op = regop_new(reg, "GET", url, scope);
    regop_check_names(op, repo, digest);
    free(url);
    free(scope);
    struct registry_download *g = xcalloc(1, sizeof(*g));
    g->reg = reg;
    g->digest = xstrdup(digest);
    g->size = size;
    g->sink = sink;
    g->sink_arg = sink_arg;
    g->cb = cb;
    g->arg = arg;
    digest_init(&g->hash);
    buf_init(&g->error_body, ERROR_BODY_MAX);
    op->follow = true;
    op->sink = blob_get_sink;
    op->sink_arg = g;
    op->prepare = blob_get_prepare;
    g->op = op;
    if (out != NULL)
        *out = g;
    regop_run(op, blob_get_done, g);
    return 0;
}

void registry_download_resume(struct registry_download *d)
{
    if (d->op != NULL && d->op->req != NULL)
        http_request_resume(d->op->req);
}

void registry_download_cancel(struct registry_download *d)
{
    struct regop *op = d->op;
    op->canceled = true;
    if (op->req != NULL)
        http_request_cancel(op->req);
}

/* ---- blobs: mount and upload ---- */

enum upload_state {
    UPLOAD_START,  /* POST (with mount) */
    UPLOAD_PUT,    /* monolithic PUT ?digest= */
    UPLOAD_PATCH,  /* one chunk */
    UPLOAD_STATUS, /* GET the upload URL to learn its Range */
    UPLOAD_CLOSE,  /* final PUT ?digest= of a chunked upload */
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
    registry_upload_cb cb;
    void *arg;
    enum upload_state state;
    char *location;
    uint64_t offset;      /* bytes the registry holds */
    uint64_t chunk_start; /* the PATCH in flight covers [chunk_start, chunk_start + chunk_len) */
    uint64_t chunk_len;
    int restarts;
    struct regop *op; /* the op in flight */
};

static void upload_step(struct registry_upload *up, uint64_t delay_ms);
static void upload_patch_prepare(struct regop *op, struct http_request *req, void *arg);
static void upload_op_done(struct regop *op, struct http_request *req, int rc, void *arg);

static void upload_finish(struct registry_upload *up, int rc, const char *error,
                          enum registry_upload_outcome how)
{
    up->cb(rc, error, how, up->arg);
    free(up->repo);
    free(up->digest);
    free(up->mount_from);
    free(up->location);
    free(up);
}

static ssize_t upload_chunk_source(char *buf, size_t len, uint64_t offset, void *arg)
{
    struct registry_upload *up = arg;
    return up->source(buf, len, up->chunk_start + offset, up->source_arg);
}

static char *url_with_digest(const char *location, const char *digest)
{
    return xasprintf("%s%sdigest=%s", location, strchr(location, '?') ? "&" : "?", digest);
}

static void upload_step(struct registry_upload *up, uint64_t delay_ms)
{
    struct registry *reg = up->reg;
    char *scope = NULL;
    char *url = NULL;
    const char *method = "GET";

    switch (up->state) {
    case UPLOAD_START:
        method = "POST";
        if (up->mount_from != NULL) {
            url = xasprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", reg->base, up->repo,
                            up->digest, up->mount_from);
            /* A mount needs both repositories in one token. */
            scope =
                xasprintf("repository:%s:pull,push repository:%s:pull", up->repo, up->mount_from);
        } else {
            url = xasprintf("%s/v2/%s/blobs/uploads/", reg->base, up->repo);
        }
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
    struct regop *op = regop_new(reg, method, url, scope);
    regop_check_names(op, up->repo, up->digest);
    if (up->mount_from != NULL)
        regop_check_names(op, up->mount_from, NULL);
    free(url);
    free(scope);

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
        uint64_t n = left < up->chunk_max ? left : up->chunk_max;
        up->chunk_start = up->offset;
        up->chunk_len = n;
        op->has_body = true;
        op->source = upload_chunk_source;
        op->source_arg = up;
        op->source_len = n;
        op->content_type = xstrdup("Content-Type: application/octet-stream");
        op->no_retry = true;
    }
    up->op = op;
    op->done = upload_op_done;
    op->arg = up;
    /* Content-Range goes on each attempt of a chunk. */
    op->prepare = up->state == UPLOAD_PATCH ? upload_patch_prepare : NULL;
    if (delay_ms > 0)
        regop_run_after(op, delay_ms);
    else
        regop_attempt(op);
}

static void upload_patch_prepare(struct regop *op, struct http_request *req, void *arg)
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

/* Something broke mid-upload: resume from the registry's Range or start over. */
static void upload_recover(struct registry_upload *up, const char *why)
{
    struct registry *reg = up->reg;
    up->restarts++;
    reg->stats.retries++;
    if (up->restarts >= reg->opts.max_attempts) {
        upload_finish(up, FERRY_ECONNECT, why, 0);
        return;
    }
    log_debug("upload recovering registry=%s digest=%s restart=%d error=\"%s\"", reg->host,
              up->digest, up->restarts, why);
    if (up->state == UPLOAD_PATCH && up->location != NULL)
        up->state = UPLOAD_STATUS;
    else
        up->state = UPLOAD_START;
    upload_step(up, backoff_delay(reg, up->restarts - 1));
}

static void upload_op_done(struct regop *op, struct http_request *req, int rc, void *arg)
{
    struct registry_upload *up = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    char *error = NULL;
    /* An upload restarts after a stall too: its session may have survived. */
    bool transient = retry_error_transient(rc, 0) || (rc == 0 && retry_status_transient(status));

    up->op = NULL;
    if (rc < 0 && !transient) {
        error = regop_error_text(op, req, rc);
        regop_free(op);
        upload_finish(up, rc, error, 0);
        free(error);
        return;
    }
    switch (up->state) {
    case UPLOAD_START:
        if (rc == 0 && status == 201 && up->mount_from != NULL) {
            regop_free(op);
            upload_finish(up, 0, NULL, REGISTRY_MOUNTED);
            return;
        }
        if (rc == 0 && status == 202) {
            if (upload_take_location(up, req) < 0) {
                error = xasprintf("POST %s/v2/%s/blobs/uploads/: 202 without a usable Location",
                                  up->reg->host, up->repo);
                regop_free(op);
                upload_finish(up, FERRY_EPROTO, error, 0);
                free(error);
                return;
            }
            const char *min = http_request_response_header(req, "OCI-Chunk-Min-Length");
            if (min != NULL) {
                uint64_t m = strtoull(min, NULL, 10);
                if (m > up->chunk_min && m <= 1024ull * 1024 * 1024)
                    up->chunk_min = m;
            }
            if (up->chunk_max < up->chunk_min)
                up->chunk_max = up->chunk_min;
            up->offset = 0;
            regop_free(op);
            up->state = up->mode == REGISTRY_UPLOAD_CHUNKED ? UPLOAD_PATCH : UPLOAD_PUT;
            if (up->state == UPLOAD_PATCH && up->size == 0)
                up->state = UPLOAD_CLOSE;
            upload_step(up, 0);
            return;
        }
        break;
    case UPLOAD_PUT:
    case UPLOAD_CLOSE:
        if (rc == 0 && (status == 201 || status == 204)) {
            const char *dcd = http_request_response_header(req, "Docker-Content-Digest");
            if (dcd != NULL && strcmp(dcd, up->digest) != 0) {
                error = xasprintf("PUT %s/v2/%s/blobs: registry stored %s, expected %s",
                                  up->reg->host, up->repo, dcd, up->digest);
                regop_free(op);
                upload_finish(up, FERRY_EDIGEST, error, 0);
                free(error);
                return;
            }
            regop_free(op);
            upload_finish(up, 0, NULL, REGISTRY_UPLOADED);
            return;
        }
        break;
    case UPLOAD_PATCH:
        /* ECR answers a PATCH with 201 where the spec says 202. */
        if (rc == 0 && (status == 202 || status == 201)) {
            if (upload_take_location(up, req) < 0) {
                error = xasprintf("PATCH %s/v2/%s/blobs/uploads: no usable Location", up->reg->host,
                                  up->repo);
                regop_free(op);
                upload_finish(up, FERRY_EPROTO, error, 0);
                free(error);
                return;
            }
            uint64_t next = up->chunk_start + up->chunk_len;
            const char *range = http_request_response_header(req, "Range");
            uint64_t reported = 0;
            if (range != NULL && httpparse_range_end(range, &reported) == 0 && reported < next)
                next = reported;
            up->offset = next;
            regop_free(op);
            up->state = up->offset >= up->size ? UPLOAD_CLOSE : UPLOAD_PATCH;
            upload_step(up, 0);
            return;
        }
        if (rc == 0 && status == 416) {
            /* The registry holds a different amount than we thought: ask it. */
            regop_free(op);
            up->state = UPLOAD_STATUS;
            upload_step(up, 0);
            return;
        }
        break;
    case UPLOAD_STATUS:
        if (rc == 0 && status == 204) {
            const char *range = http_request_response_header(req, "Range");
            uint64_t next = 0;
            if (range != NULL && httpparse_range_end(range, &next) == 0 &&
                strcmp(range, "0-0") != 0 && next <= up->size)
                up->offset = next;
            else
                up->offset = 0;
            upload_take_location(up, req);
            regop_free(op);
            up->state = up->offset >= up->size ? UPLOAD_CLOSE : UPLOAD_PATCH;
            upload_step(up, 0);
            return;
        }
        if (rc == 0 && status == 404) {
            /* The session is gone: start a new one. */
            regop_free(op);
            up->state = UPLOAD_START;
            upload_step(up, 0);
            return;
        }
        break;
    }
    if (rc == 0 && !transient)
        rc = regop_status_rc(op, req, rc);
    error = regop_error_text(op, req, rc != 0 ? rc : status_error(status));
    regop_free(op);
    /* Requests other than the body-carrying ones were retried by the op already. */
    if (transient && (up->state == UPLOAD_PUT || up->state == UPLOAD_PATCH))
        upload_recover(up, error);
    else
        upload_finish(up, rc, error, 0);
    free(error);
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
    }
    /* A chunk size alone means chunks of that size. */
    if (up->chunk_max == 0)
        up->chunk_max = up->chunk_min ? up->chunk_min : 64ull * 1024 * 1024;
    if (up->chunk_max < up->chunk_min)
        up->chunk_max = up->chunk_min;
    up->state = UPLOAD_START;
    if (out != NULL)
        *out = up;
    upload_step(up, 0);
    return 0;
}

void registry_upload_resume(struct registry_upload *up)
{
    if (up->op != NULL && up->op->req != NULL)
        http_request_resume(up->op->req);
}

/* ---- manifests ---- */

struct manifest_ctx {
    char *reference;
    registry_manifest_cb cb;
    registry_put_cb put_cb;
    void *arg;
    bool head;
    char *put_digest;
};

static void manifest_ctx_free(struct manifest_ctx *ctx)
{
    free(ctx->reference);
    free(ctx->put_digest);
    free(ctx);
}

/* The media type of a response without parameters; NULL when absent. */
static char *content_type_of(struct http_request *req)
{
    const char *ct = http_request_response_header(req, "Content-Type");
    if (ct == NULL)
        return NULL;
    return xstrndup(ct, strcspn(ct, "; \t"));
}

static void manifest_get_done(struct regop *op, struct http_request *req, int rc, void *arg)
{
    struct manifest_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;
    char *error = NULL;

    if (rc == 0 && status == 200 && !ctx->head) {
        const struct buf *body = http_request_response_body(req);
        char digest[DIGEST_MAX];
        digest_of(body->data ? body->data : "", body->len, digest);
        const char *dcd = http_request_response_header(req, "Docker-Content-Digest");
        bool by_digest = strchr(ctx->reference, ':') != NULL;
        const char *want = by_digest ? ctx->reference : dcd;
        char *want_copy = xstrdup(want);
        if (want_copy != NULL && strncmp(want_copy, "sha256:", 7) == 0 &&
            strcmp(want_copy, digest) != 0) {
            error = xasprintf("manifest %s in %s/%s does not match its digest (content is %s)",
                              want_copy, op->reg->host, ctx->reference, digest);
            ctx->cb(FERRY_EDIGEST, error, NULL, 0, NULL, NULL, ctx->arg);
        } else {
            char *media_type = content_type_of(req);
            ctx->cb(0, NULL, body->data ? body->data : "", body->len, media_type, digest, ctx->arg);
            free(media_type);
        }
        free(want_copy);
    } else if (rc == 0 && status == 200) {
        char *media_type = content_type_of(req);
        const char *len = http_request_response_header(req, "Content-Length");
        size_t size = len != NULL ? (size_t)strtoull(len, NULL, 10) : 0;
        char *dcd = xstrdup(http_request_response_header(req, "Docker-Content-Digest"));
        ctx->cb(0, NULL, NULL, size, media_type, dcd, ctx->arg);
        free(dcd);
        free(media_type);
    } else if (rc == 0 && status == 404 && ctx->head) {
        ctx->cb(FERRY_ENOTFOUND, NULL, NULL, 0, NULL, NULL, ctx->arg);
    } else {
        if (rc == FERRY_ETOOBIG)
            error = xasprintf("manifest %s in %s is over %d bytes", ctx->reference, op->reg->host,
                              MANIFEST_MAX_BYTES);
        else
            rc = regop_status_rc(op, req, rc), error = regop_error_text(op, req, rc);
        ctx->cb(rc, error, NULL, 0, NULL, NULL, ctx->arg);
    }
    free(error);
    manifest_ctx_free(ctx);
    regop_free(op);
}

/* ---- the answer cache ---- */

/*
 * Join the cached answer for `key`: a hit is delivered on the next loop turn,
 * a fetch in flight gets one more waiter; both return true. Otherwise returns
 * false, and *flight (when the registry caches) is a new flight the caller
 * fetches for, with cache_fetched() as the callback.
 */
static bool cache_join(struct registry *reg, const char *key, uint64_t ttl_ms,
                       registry_manifest_cb cb, void *arg, struct fetch_flight **flight)
{
    *flight = NULL;
    if (reg->cache == NULL)
        return false;
    const struct mcache_value *v = mcache_get(reg->cache, key, uv_now(reg->loop));
    if (v != NULL) {
        struct cache_hit *h = xcalloc(1, sizeof(*h));
        h->cb = cb;
        h->arg = arg;
        h->v.bytes = xmalloc(v->len + 1);
        memcpy(h->v.bytes, v->bytes, v->len + 1);
        h->v.len = v->len;
        h->v.media_type = v->media_type != NULL ? xstrdup(v->media_type) : NULL;
        h->v.digest = v->digest != NULL ? xstrdup(v->digest) : NULL;
        *reg->hits_tail = h;
        reg->hits_tail = &h->next;
        reg->stats.cache_hits++;
        registry_timer_arm(reg);
        return true;
    }
    struct fetch_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    struct fetch_flight *f = NULL;
    HASH_FIND_STR(reg->flights, key, f);
    if (f != NULL) {
        *f->tail = w;
        f->tail = &w->next;
        reg->stats.cache_hits++;
        return true;
    }
    f = xcalloc(1, sizeof(*f));
    f->reg = reg;
    f->key = xstrdup(key);
    f->ttl_ms = ttl_ms;
    f->waiters = w;
    f->tail = &w->next;
    HASH_ADD_KEYPTR(hh, reg->flights, f->key, strlen(f->key), f);
    *flight = f;
    return false;
}

/* The fetch of a flight is back: keep a success, answer every waiter. */
static void cache_fetched(int rc, const char *error, const char *bytes, size_t len,
                          const char *media_type, const char *digest, void *arg)
{
    struct fetch_flight *f = arg;
    struct registry *reg = f->reg;
    HASH_DEL(reg->flights, f);
    if (rc == 0)
        mcache_put(reg->cache, f->key, bytes, len, media_type, digest, uv_now(reg->loop),
                   f->ttl_ms);
    for (struct fetch_waiter *w = f->waiters, *next; w != NULL; w = next) {
        next = w->next;
        w->cb(rc, error, bytes, len, media_type, digest, w->arg);
        free(w);
    }
    free(f->key);
    free(f);
}

static int manifest_fetch(struct registry *reg, const char *repo, const char *reference, bool head,
                          registry_manifest_cb cb, void *arg)
{
    char *url = xasprintf("%s/v2/%s/manifests/%s", reg->base, repo, reference);
    char *scope = repo_scope(reg, repo);
    struct regop *op = regop_new(reg, head ? "HEAD" : "GET", url, scope);
    regop_check_names(op, repo, reference);
    free(url);
    free(scope);
    op->accept = xasprintf("Accept: %s", manifest_accept());
    op->body_limit = MANIFEST_MAX_BYTES;
    struct manifest_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->reference = xstrdup(reference);
    ctx->cb = cb;
    ctx->arg = arg;
    ctx->head = head;
    regop_run(op, manifest_get_done, ctx);
    return 0;
}

int registry_manifest_get(struct registry *reg, const char *repo, const char *reference,
                          registry_manifest_cb cb, void *arg)
{
    /* By digest the answer never changes: one fetch serves every caller. */
    if (reg->cache != NULL && digest_valid(reference)) {
        char *key = xasprintf("m:%s@%s", repo, reference);
        struct fetch_flight *f;
        bool joined = cache_join(reg, key, 0, cb, arg, &f);
        free(key);
        if (joined)
            return 0;
        return manifest_fetch(reg, repo, reference, false, cache_fetched, f);
    }
    return manifest_fetch(reg, repo, reference, false, cb, arg);
}

int registry_manifest_head(struct registry *reg, const char *repo, const char *reference,
                           registry_manifest_cb cb, void *arg)
{
    return manifest_fetch(reg, repo, reference, true, cb, arg);
}

/* ---- where a reference stands now ---- */

/* One look (a HEAD, then a GET when the HEAD names no digest). */
struct resolve_fetch {
    struct registry *reg;
    char *repo;
    char *reference;
    bool got;
    registry_manifest_cb cb; /* cache_fetched, or resolve_answer when not shared */
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
    /* A registry may omit Docker-Content-Digest, or send one not worth
     * trusting: the GET computes it from the bytes. */
    if (rc == 0 && (digest == NULL || !digest_valid(digest)) && !f->got) {
        f->got = true;
        manifest_fetch(f->reg, f->repo, f->reference, false, resolve_fetched, f);
        return;
    }
    if (rc == 0 && (digest == NULL || !digest_valid(digest))) {
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

int registry_manifest_resolve(struct registry *reg, const char *repo, const char *reference,
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
        struct fetch_flight *flight;
        bool joined = cache_join(reg, key, share_ms > 0 ? share_ms : 1, resolve_answer, w, &flight);
        free(key);
        if (joined) {
            free(f);
            return 0;
        }
        f->cb = cache_fetched;
        f->arg = flight;
    }
    f->repo = xstrdup(repo);
    f->reference = xstrdup(reference);
    return manifest_fetch(reg, repo, reference, true, resolve_fetched, f);
}

static void manifest_put_done(struct regop *op, struct http_request *req, int rc, void *arg)
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
        rc = regop_status_rc(op, req, rc);
        error = regop_error_text(op, req, rc);
        ctx->put_cb(rc, error, false, ctx->arg);
    }
    free(error);
    manifest_ctx_free(ctx);
    regop_free(op);
}

int registry_manifest_put(struct registry *reg, const char *repo, const char *reference,
                          const char *bytes, size_t len, const char *media_type, registry_put_cb cb,
                          void *arg)
{
    if (len > MANIFEST_MAX_BYTES)
        return FERRY_ETOOBIG;
    char *url = xasprintf("%s/v2/%s/manifests/%s", reg->base, repo, reference);
    char *scope = xasprintf("repository:%s:pull,push", repo);
    struct regop *op = regop_new(reg, "PUT", url, scope);
    regop_check_names(op, repo, reference);
    free(url);
    free(scope);
    op->has_body = true;
    op->body = bytes;
    op->body_len = len;
    op->content_type = xasprintf("Content-Type: %s", media_type);
    struct manifest_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->reference = xstrdup(reference);
    ctx->put_cb = cb;
    ctx->arg = arg;
    ctx->put_digest = xmalloc(DIGEST_MAX);
    digest_of(bytes, len, ctx->put_digest);
    regop_run(op, manifest_put_done, ctx);
    return 0;
}

int registry_repository_exists(struct registry *reg, const char *repo, registry_exists_cb cb,
                               void *arg)
{
    char *url = xasprintf("%s/v2/%s/tags/list?n=1", reg->base, repo);
    char *scope = repo_scope(reg, repo);
    struct regop *op = regop_new(reg, "GET", url, scope);
    regop_check_names(op, repo, NULL);
    free(url);
    free(scope);
    op->body_limit = LIST_PAGE_MAX;
    struct exists_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->cb = cb;
    ctx->arg = arg;
    regop_run(op, blob_exists_done, ctx);
    return 0;
}

struct delete_ctx {
    registry_done_cb cb;
    void *arg;
    bool tag; /* a tag alone, not a manifest */
};

static void manifest_delete_done(struct regop *op, struct http_request *req, int rc, void *arg)
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
        rc = rc < 0 ? rc : unsupported ? FERRY_EUNSUPPORTED : regop_status_rc(op, req, rc);
        char *error = regop_error_text(op, req, rc);
        ctx->cb(rc, error, ctx->arg);
        free(error);
    }
    free(ctx);
    regop_free(op);
}

static void manifest_delete_run(struct registry *reg, const char *repo, const char *reference,
                                bool tag, registry_done_cb cb, void *arg)
{
    char *url = xasprintf("%s/v2/%s/manifests/%s", reg->base, repo, reference);
    char *scope = xasprintf("repository:%s:pull,push,delete", repo);
    struct regop *op = regop_new(reg, "DELETE", url, scope);
    regop_check_names(op, repo, reference);
    free(url);
    free(scope);
    struct delete_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->cb = cb;
    ctx->arg = arg;
    ctx->tag = tag;
    regop_run(op, manifest_delete_done, ctx);
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

/* ---- listing with Link pagination ---- */

struct list_ctx {
    struct registry *reg;
    char *key;  /* "repositories" or "tags" */
    char *what; /* "the catalog" or "the tags of REPO", for messages */
    size_t cap; /* names it may hold: past it, the listing fails */
    char *scope;
    registry_list_cb cb;
    void *arg;
    char **items;
    size_t n;
    size_t skipped; /* invalid names left out */
    int pages;
};

/* An invalid name of a listing: the first few are logged, all counted. */
static void list_skipped(const char *value, void *arg)
{
    struct list_ctx *ctx = arg;
    ctx->reg->stats.invalid_names++;
    if (ctx->skipped++ < LIST_SKIPS_LOGGED) {
        char shown[FERRY_PRINTABLE_MAX];
        log_warn("skipped an invalid %s in %s registry=%s value=\"%s\"",
                 strcmp(ctx->key, "repositories") == 0 ? "repository name" : "tag", ctx->what,
                 ctx->reg->host, value != NULL ? ferry_printable(value, shown) : "(not a string)");
    }
}

int registry_list_page_parse(const char *body, size_t len, bool repositories, size_t cap,
                             char ***items, size_t *n, registry_skip_cb skip, void *arg)
{
    cJSON *json = cJSON_ParseWithLength(body, len);
    const cJSON *arr =
        cJSON_GetObjectItemCaseSensitive(json, repositories ? "repositories" : "tags");
    if (json == NULL || (!cJSON_IsArray(arr) && !cJSON_IsNull(arr) && arr != NULL)) {
        cJSON_Delete(json);
        return FERRY_EPROTO;
    }
    int rc = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr)
    {
        /* Checked like a webhook's names before they reach the journal, a
         * URL or a file name: a tag "prod?x" would write "prod". */
        bool ok =
            cJSON_IsString(item) && (repositories ? reference_repository_valid(item->valuestring)
                                                  : reference_tag_valid(item->valuestring));
        if (!ok) {
            if (skip != NULL)
                skip(cJSON_IsString(item) ? item->valuestring : NULL, arg);
            continue;
        }
        if (*n >= cap) {
            rc = FERRY_ETOOBIG;
            break;
        }
        if ((*n & (*n - 1)) == 0) /* grows by doubling */
            *items = xrealloc(*items, (*n ? 2 * *n : 1) * sizeof(**items));
        (*items)[(*n)++] = xstrdup(item->valuestring);
    }
    cJSON_Delete(json);
    return rc;
}

static void list_finish(struct list_ctx *ctx, int rc, const char *error)
{
    ctx->cb(rc, error, rc == 0 ? ctx->items : NULL, rc == 0 ? ctx->n : 0, ctx->arg);
    for (size_t i = 0; i < ctx->n; i++)
        free(ctx->items[i]);
    free(ctx->items);
    free(ctx->key);
    free(ctx->what);
    free(ctx->scope);
    free(ctx);
}

static void list_page(struct list_ctx *ctx, const char *url);

static void list_page_done(struct regop *op, struct http_request *req, int rc, void *arg)
{
    struct list_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;

    if (rc < 0 || status != 200) {
        rc = regop_status_rc(op, req, rc);
        char *error = regop_error_text(op, req, rc);
        regop_free(op);
        list_finish(ctx, rc, error);
        free(error);
        return;
    }
    const struct buf *body = http_request_response_body(req);
    int prc = registry_list_page_parse(body->data != NULL ? body->data : "", body->len,
                                       strcmp(ctx->key, "repositories") == 0, ctx->cap, &ctx->items,
                                       &ctx->n, list_skipped, ctx);
    if (prc == FERRY_EPROTO) {
        char *path = url_path_for_log(op->url);
        char *error = xasprintf("GET %s%s: response is not a JSON listing of %s", op->reg->host,
                                path, ctx->key);
        free(path);
        regop_free(op);
        list_finish(ctx, FERRY_EPROTO, error);
        free(error);
        return;
    }
    bool over = prc == FERRY_ETOOBIG;
    const char *link = http_request_response_header(req, "Link");
    char *next = link != NULL ? httpparse_link_next(link, http_request_url(req)) : NULL;
    char *error = NULL;
    if (over)
        error = xasprintf("%s at %s holds more than %zu names: refused (the cap on one listing)",
                          ctx->what, op->reg->host, ctx->cap);
    else if (next != NULL && ++ctx->pages >= LIST_PAGES_MAX)
        error = xasprintf("%s at %s runs past %d pages: refused (the cap on one listing)",
                          ctx->what, op->reg->host, LIST_PAGES_MAX);
    else if (next != NULL && strcmp(next, http_request_url(req)) == 0)
        error = xasprintf("%s at %s: its next page is the page itself", ctx->what, op->reg->host);
    regop_free(op);
    if (error == NULL && next != NULL) {
        list_page(ctx, next);
        free(next);
        return;
    }
    free(next);
    if (ctx->skipped > LIST_SKIPS_LOGGED)
        log_warn("skipped %zu invalid names in %s registry=%s", ctx->skipped, ctx->what,
                 ctx->reg->host);
    list_finish(ctx, error != NULL ? FERRY_ETOOBIG : 0, error);
    free(error);
}

static void list_page(struct list_ctx *ctx, const char *url)
{
    struct regop *op = regop_new(ctx->reg, "GET", url, ctx->scope);
    op->body_limit = LIST_PAGE_MAX;
    regop_run(op, list_page_done, ctx);
}

static int list_start(struct registry *reg, const char *path, const char *key, const char *what,
                      size_t cap, const char *scope, registry_list_cb cb, void *arg)
{
    struct list_ctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->reg = reg;
    ctx->key = xstrdup(key);
    ctx->what = xstrdup(what);
    ctx->cap = cap;
    ctx->scope = xstrdup(scope);
    ctx->cb = cb;
    ctx->arg = arg;
    char *url = xasprintf("%s%s", reg->base, path);
    list_page(ctx, url);
    free(url);
    return 0;
}

int registry_catalog(struct registry *reg, registry_list_cb cb, void *arg)
{
    char *path = xasprintf("/v2/_catalog?n=%d", reg->opts.list_page_size);
    int rc = list_start(reg, path, "repositories", "the catalog", REGISTRY_CATALOG_MAX,
                        "registry:catalog:*", cb, arg);
    free(path);
    return rc;
}

int registry_tags(struct registry *reg, const char *repo, registry_list_cb cb, void *arg)
{
    if (!reference_repository_valid(repo))
        return FERRY_EINVAL;
    char *path = xasprintf("/v2/%s/tags/list?n=%d", repo, reg->opts.list_page_size);
    char *scope = repo_scope(reg, repo);
    char *what = xasprintf("the tags of %s", repo);
    int rc = list_start(reg, path, "tags", what, REGISTRY_TAGS_MAX, scope, cb, arg);
    free(what);
    free(path);
    free(scope);
    return rc;
}

/* ---- referrers: the API, or the sha256-<hex> tag ---- */

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
    manifest_fetch(ctx->reg, ctx->repo, tag, false, referrers_tag_done, ctx);
    free(tag);
}

static void referrers_api_done(struct regop *op, struct http_request *req, int rc, void *arg)
{
    struct referrers_ctx *ctx = arg;
    long status = req != NULL ? http_request_status(req) : 0;

    if (rc == 0 && status == 200) {
        const struct buf *body = http_request_response_body(req);
        char *media_type = content_type_of(req);
        ctx->cb(0, NULL, body->data ? body->data : "", body->len, media_type, NULL, ctx->arg);
        free(media_type);
        referrers_free(ctx);
    } else if (rc == 0 && status == 404) {
        ctx->reg->referrers_missing = true;
        referrers_fallback(ctx);
    } else {
        rc = regop_status_rc(op, req, rc);
        char *error = regop_error_text(op, req, rc);
        ctx->cb(rc, error, NULL, 0, NULL, NULL, ctx->arg);
        free(error);
        referrers_free(ctx);
    }
    regop_free(op);
}

int registry_referrers(struct registry *reg, const char *repo, const char *digest,
                       registry_manifest_cb cb, void *arg)
{
    if (!digest_valid(digest))
        return FERRY_EINVAL;
    struct fetch_flight *f = NULL;
    if (reg->cache != NULL) {
        char *key = xasprintf("r:%s@%s", repo, digest);
        bool joined = cache_join(reg, key, REFERRERS_TTL_MS, cb, arg, &f);
        free(key);
        if (joined)
            return 0;
        cb = cache_fetched;
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
    char *url = xasprintf("%s/v2/%s/referrers/%s", reg->base, repo, digest);
    char *scope = repo_scope(reg, repo);
    struct regop *op = regop_new(reg, "GET", url, scope);
    regop_check_names(op, repo, digest);
    free(url);
    free(scope);
    op->accept = xstrdup("Accept: " MEDIA_OCI_INDEX);
    op->body_limit = MANIFEST_MAX_BYTES;
    regop_run(op, referrers_api_done, ctx);
    return 0;
}
