/*
 * registry_op.c: the op, one logical request to the registry. Every attempt
 * is a fresh http_request with the auth of the moment (registry_auth.c); a
 * 401 is answered by learning the challenge and sending again; transient
 * failures are retried on the registry's one retry policy (registry/retry.h)
 * from the registry's timer, honouring a capped Retry-After. Also the error
 * text every operation reports.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/digest.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "registry/httpparse.h"
#include "registry/regerror.h"
#include "registry/registry_int.h"

/* ---- the op ---- */

struct registry_op *registry_op_new(struct registry *reg, const char *method, const char *url,
                                    const char *scope)
{
    struct registry_op *op = xcalloc(1, sizeof(*op));
    op->reg = reg;
    op->method = xstrdup(method);
    op->url = xstrdup(url);
    op->scope = xstrdup(scope != NULL ? scope : "");
    op->body_limit = REGISTRY_ERROR_BODY_MAX;
    return op;
}

struct registry_op *registry_op_repo(struct registry *reg, const char *method, const char *repo,
                                     const char *kind, const char *reference, const char *scope)
{
    char *url = xasprintf("%s/v2/%s/%s%s%s", reg->base, repo, kind, reference != NULL ? "/" : "",
                          reference != NULL ? reference : "");
    char *repo_scope = scope == NULL ? registry_repo_scope(reg, repo) : NULL;
    struct registry_op *op = registry_op_new(reg, method, url, scope != NULL ? scope : repo_scope);
    registry_op_check_names(op, repo, reference);
    free(url);
    free(repo_scope);
    return op;
}

/*
 * Names reach a URL path only when valid, whoever gave them (a listing, a
 * webhook, a manifest, the command line): a tag "prod?x" would write
 * "prod", a repository "a/../b" another repository.
 */
void registry_op_check_names(struct registry_op *op, const char *repo, const char *reference)
{
    char shown[FERRY_PRINTABLE_MAX];
    if (op->invalid != NULL)
        return;
    if (!reference_repository_valid(repo))
        op->invalid = xasprintf("invalid repository name \"%s\"", ferry_printable(repo, shown));
    else if (reference != NULL && !digest_valid(reference) && !reference_tag_valid(reference))
        op->invalid = xasprintf("invalid tag or digest \"%s\"", ferry_printable(reference, shown));
}

void registry_op_free(struct registry_op *op)
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

void registry_op_finish(struct registry_op *op, struct http_request *req, int rc)
{
    op->req = req;
    op->done(op, req, rc, op->arg);
}

void registry_op_run(struct registry_op *op, registry_op_done_cb done, void *arg)
{
    op->done = done;
    op->arg = arg;
    registry_op_attempt(op);
}

/* ---- the timer: retries when they are due, cached answers on the next turn ---- */

static void registry_timer_cb(uv_timer_t *timer)
{
    struct registry *reg = timer->data;
    registry_cache_deliver(reg);
    uint64_t now = uv_now(reg->loop);
    while (reg->delayed != NULL && reg->delayed->due_ms <= now) {
        struct registry_op *op = reg->delayed;
        reg->delayed = op->next_delayed;
        op->next_delayed = NULL;
        registry_op_attempt(op);
    }
    registry_timer_arm(reg);
}

void registry_timer_arm(struct registry *reg)
{
    uint64_t timeout = 0;
    if (reg->hits == NULL && reg->delayed == NULL) {
        uv_timer_stop(&reg->timer);
        return;
    }
    if (reg->hits == NULL) {
        uint64_t now = uv_now(reg->loop);
        uint64_t due = reg->delayed->due_ms;
        timeout = due > now ? due - now : 0;
    }
    /* Fails only on a closing registry, which has nothing running. */
    int rc = uv_timer_start(&reg->timer, registry_timer_cb, timeout, 0);
    if (rc < 0)
        log_error("registry timer start failed registry=%s error=\"%s\"", reg->host,
                  uv_strerror(rc));
}

void registry_op_run_after(struct registry_op *op, uint64_t delay_ms)
{
    struct registry *reg = op->reg;
    op->due_ms = uv_now(reg->loop) + delay_ms;
    struct registry_op **pp = &reg->delayed;
    while (*pp != NULL && (*pp)->due_ms <= op->due_ms)
        pp = &(*pp)->next_delayed;
    op->next_delayed = *pp;
    *pp = op;
    registry_timer_arm(reg);
}

/* ---- attempts and retries ---- */

bool registry_op_may_retry(const struct registry_op *op)
{
    return !op->no_retry && retry_again(&op->reg->retry, op->attempt + 1);
}

void registry_op_retry(struct registry_op *op, uint64_t delay_ms)
{
    op->attempt++;
    op->reg->stats.retries++;
    registry_op_run_after(op, delay_ms);
}

static void registry_op_http_done(struct http_request *req, int rc, void *arg);

void registry_op_attempt(struct registry_op *op)
{
    struct registry *reg = op->reg;
    char *auth_header = NULL;

    op->sent_bearer = false;
    op->sent_basic = false;
    if (op->canceled) {
        registry_op_finish(op, NULL, FERRY_ECANCELED);
        return;
    }
    if (op->invalid != NULL) {
        registry_op_finish(op, NULL, FERRY_EINVAL);
        return;
    }
    if (!registry_auth_prepare(op, &auth_header))
        return;

    struct http_request *req = http_request_new(reg->http, op->method, op->url);
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
    int rc = http_request_start(req, registry_op_http_done, op);
    if (rc < 0) {
        op->req = NULL;
        registry_op_finish(op, req, rc);
    }
}

/* The wait before the next attempt: the backoff, or the registry's capped Retry-After. */
static uint64_t registry_op_delay(const struct registry_op *op, struct http_request *req)
{
    const struct registry *reg = op->reg;
    const char *retry_after = http_request_response_header(req, "Retry-After");
    uint64_t ms = 0;
    if (retry_after != NULL && httpparse_retry_after(retry_after, time(NULL), &ms) == 0)
        return ms < reg->opts.retry_after_max_ms ? ms : reg->opts.retry_after_max_ms;
    return registry_backoff_ms(reg, op->attempt);
}

static void registry_op_http_done(struct http_request *req, int rc, void *arg)
{
    struct registry_op *op = arg;
    struct registry *reg = op->reg;
    long status = http_request_status(req);

    op->req = NULL;
    registry_ratelimit_note(reg, req);
    if (rc == 0 && status == 401) {
        if (registry_auth_challenge(op, req)) {
            http_request_free(req);
            registry_op_attempt(op);
        } else {
            registry_op_finish(op, req, FERRY_EAUTH);
        }
        return;
    }
    if (rc == 0 && reg->auth == AUTH_UNKNOWN && status < 400)
        reg->auth = AUTH_NONE;

    /* A stalled request already waited the stall timeout: one more try, not
     * five, so that a partitioned registry fails its jobs (and opens the
     * engine's circuit) in about twice the stall timeout. */
    bool again = retry_transient(rc, status, op->attempt) ||
                 (rc == 0 && op->transient != NULL && op->transient(op, req));
    if (!again || !registry_op_may_retry(op)) {
        registry_op_finish(op, req, rc);
        return;
    }
    uint64_t delay = registry_op_delay(op, req);
    if (log_threshold >= FERRY_LOG_DEBUG) {
        char *why = registry_op_error_text(op, req, rc != 0 ? rc : registry_status_error(status));
        log_debug("retrying registry=%s attempt=%d delay_ms=%llu error=\"%s\"", reg->host,
                  op->attempt + 1, (unsigned long long)delay, why);
        free(why);
    }
    http_request_free(req);
    registry_op_retry(op, delay);
}

/* ---- error text ---- */

/* Did `rc` come with an answer whose status and body say more than the code? */
static bool registry_rc_has_answer(struct http_request *req, int rc)
{
    if (rc >= 0)
        return true;
    if (req == NULL || http_request_status(req) == 0)
        return false;
    return rc == FERRY_EHTTP || rc == FERRY_ENOTFOUND || rc == FERRY_EAUTH || rc == FERRY_ENOREPO ||
           rc == FERRY_ESERVER || rc == FERRY_ETOOMANY;
}

/* A response header's value as a fresh string, or NULL (no request, no header). */
static char *registry_op_header_dup(struct http_request *req, const char *name)
{
    const char *value = req != NULL ? http_request_response_header(req, name) : NULL;
    return value != NULL ? xstrdup(value) : NULL;
}

char *registry_op_error_text(struct registry_op *op, struct http_request *req, int rc)
{
    char *path = registry_url_path(op->url);
    char *text;

    if (op->invalid != NULL) {
        text = xasprintf("%s %s: %s", op->method, op->reg->host, op->invalid);
    } else if (op->auth_error != NULL) {
        text = xasprintf("%s %s%s: %s", op->method, op->reg->host, path, op->auth_error);
    } else if (!registry_rc_has_answer(req, rc)) {
        const char *detail = req != NULL ? http_request_error_text(req) : "";
        text = xasprintf("%s %s%s: %s%s%s%s", op->method, op->reg->host, path, ferry_strerror(rc),
                         detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
    } else {
        long status = req != NULL ? http_request_status(req) : 0;
        const struct buf *body = req != NULL ? http_request_response_body(req) : NULL;
        /* The vendors' refusals (denied, unauthorized, rate limits, quotas, missing
         * repositories and projects) are said plainly, with what to do. */
        /* Each header's value lives only until the next lookup: copied. */
        char *retry_after = registry_op_header_dup(req, "Retry-After");
        char *rl_limit = registry_op_header_dup(req, "RateLimit-Limit");
        char *rl_remaining = registry_op_header_dup(req, "RateLimit-Remaining");
        struct regerror_request refusal = {
            .registry = op->reg->host,
            .method = op->method,
            .path = path,
            .status = status,
            .retry_after = retry_after,
            .ratelimit_limit = rl_limit,
            .ratelimit_remaining = rl_remaining,
        };
        text = regerror_explain(&refusal, body ? body->data : NULL, body ? body->len : 0);
        free(retry_after);
        free(rl_limit);
        free(rl_remaining);
        char *summary = NULL;
        if (text == NULL && body != NULL && body->len > 0)
            summary = regerror_summary(body->data, body->len);
        if (text == NULL)
            text = xasprintf("%s %s%s: HTTP %ld%s%s%s", op->method, op->reg->host, path, status,
                             summary ? " (" : "", summary ? summary : "", summary ? ")" : "");
        free(summary);
    }
    free(path);
    return text;
}
