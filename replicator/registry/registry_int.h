/*
 * registry_int.h: what the files of the registry client share, and nothing
 * outside replicator/registry/ may include: the registry itself, the op (one
 * logical request with auth and retries, registry_op.c), the auth state
 * (registry_auth.c), the answer cache (registry_cache.c) and the helpers the
 * operations have in common (registry.c, registry_manifest.c).
 */
#ifndef FERRY_REGISTRY_INT_H
#define FERRY_REGISTRY_INT_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>
#include <uv.h>

#include "registry/http.h"
#include "registry/mcache.h"
#include "registry/registry.h"
#include "registry/retry.h"

/* An error document is kept up to this size for the message it carries. */
#define REGISTRY_ERROR_BODY_MAX (64 * 1024)
/* One page of a listing (and the one-name page of registry_repository_exists). */
#define REGISTRY_LIST_PAGE_MAX (4 * 1024 * 1024)

enum registry_auth {
    AUTH_UNKNOWN = 0,
    AUTH_NONE,
    AUTH_BASIC,
    AUTH_BEARER,
};

struct registry_op;
struct registry_token;
struct registry_flight;
struct registry_cache_hit;

struct registry {
    uv_loop_t *loop;
    struct http_client *http;
    char *host;
    char *base; /* "http://host" or "https://host" */
    struct registry_options opts;
    struct retry_policy retry; /* built once from opts: every retry decision asks it */
    struct registry_stats stats;
    int mount_retry_misses; /* retried mounts refused again, in a row (registry_upload.c) */
    bool referrers_missing;

    /* Auth (registry_auth.c). */
    struct credentials *creds; /* NULL: anonymous */
    enum registry_auth auth;
    char *realm;
    char *service;
    struct registry_token *tokens;

    /* Ops waiting for a retry, sorted by due time, and the timer that runs them. */
    uv_timer_t timer;
    struct registry_op *delayed;
    void (*closed_cb)(void *arg); /* registry_close()'s callback */
    void *closed_arg;

    /* The answer cache (registry_cache.c). */
    struct mcache *cache;                         /* NULL: no cache */
    struct registry_flight *flights;              /* cached fetches under way, by key */
    struct registry_cache_hit *hits, **hits_tail; /* answers to deliver from the loop */
};

typedef void (*registry_op_prepare_cb)(struct registry_op *op, struct http_request *req, void *arg);
typedef void (*registry_op_done_cb)(struct registry_op *op, struct http_request *req, int rc,
                                    void *arg);

/*
 * One logical request with auth and retries. The registry builds a fresh
 * http_request for every attempt; the final one is handed to `done`, which
 * owns the op from then on and frees it with registry_op_free().
 */
struct registry_op {
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
    /* An answer the caller knows to be transient besides retry_transient()'s (NULL: none). */
    bool (*transient)(const struct registry_op *op, struct http_request *req);
    bool canceled;
    registry_op_prepare_cb prepare; /* called on every attempt's request, or NULL */
    registry_op_done_cb done;
    void *arg;
    int attempt; /* 0 for the first */
    int auth_tries;
    bool sent_bearer;
    bool sent_basic;
    uint64_t creds_gen;       /* the generation of the credentials sent */
    bool creds_renewed;       /* they were refused once and fetched again: not twice */
    char *auth_error;         /* why auth failed, when it did before any request */
    char *invalid;            /* why its names cannot go into a URL: it fails before any request */
    struct http_request *req; /* the attempt in flight, or NULL */
    uint64_t due_ms;
    struct registry_op *next_delayed;
};

/* ---- registry.c: small helpers ---- */

/** The path of `url` without its query, for messages (upload URLs carry long state). Caller frees.
 */
char *registry_url_path(const char *url);

/** Ferry's code for a final HTTP status the caller did not expect. */
FERRY_MUST_CHECK int registry_status_error(long status);

/**
 * As registry_status_rc(), for a push (an upload, a manifest PUT): a 404
 * NAME_UNKNOWN or a 403 DENIED is FERRY_ENOREPO, a repository the registry
 * does not have and will not create on push.
 */
FERRY_MUST_CHECK int registry_push_status_rc(struct http_request *req, int rc);

/** `rc` when the op failed without an answer, else the code of its status. */
FERRY_MUST_CHECK int registry_status_rc(struct http_request *req, int rc);

/** The token scope for reading `repo` (and writing, for a destination). Caller frees. */
char *registry_repo_scope(const struct registry *reg, const char *repo);

/** The delay before retry number `retry` (0 for the first) of the registry's policy. */
uint64_t registry_backoff_ms(const struct registry *reg, int retry);

/**
 * Run `op`, a question whose 200 is "yes" (with its Content-Length as the
 * size) and 404 "no": `cb` fires once with the answer or the error.
 */
void registry_exists_run(struct registry_op *op, registry_exists_cb cb, void *arg);

/* ---- registry_op.c: the op ---- */

/** A new op; `scope` NULL is none. Never NULL. */
struct registry_op *registry_op_new(struct registry *reg, const char *method, const char *url,
                                    const char *scope);

/**
 * A new op on `<base>/v2/<repo>/<kind>[/<reference>]` (`kind` "blobs",
 * "manifests", "referrers", ...; `reference` may be NULL) with its names
 * checked (registry_op_check_names()). `scope` NULL: registry_repo_scope().
 */
struct registry_op *registry_op_repo(struct registry *reg, const char *method, const char *repo,
                                     const char *kind, const char *reference, const char *scope);

/**
 * Names reach a URL path only when valid: an op with an invalid repository
 * name or reference (a tag or a digest; NULL for none) fails with
 * FERRY_EINVAL before any request.
 */
void registry_op_check_names(struct registry_op *op, const char *repo, const char *reference);

/** Free an op that is not running; NULL is ignored. */
void registry_op_free(struct registry_op *op);

/** Run `op`: `done` fires once with the final attempt's request (or NULL) and code. */
void registry_op_run(struct registry_op *op, registry_op_done_cb done, void *arg);

/** Run `op`'s next attempt now (its done callback set). */
void registry_op_attempt(struct registry_op *op);

/** Run `op`'s next attempt after `delay_ms`, from the registry's timer. */
void registry_op_run_after(struct registry_op *op, uint64_t delay_ms);

/** End `op` with `req` (may be NULL) and `rc`: its done callback fires. */
void registry_op_finish(struct registry_op *op, struct http_request *req, int rc);

/** True when the policy allows `op` another attempt (and its caller does not retry it). */
bool registry_op_may_retry(const struct registry_op *op);

/** Count a retry of `op` and run its next attempt after `delay_ms`. */
void registry_op_retry(struct registry_op *op, uint64_t delay_ms);

/**
 * A one-line description of why `op` failed with `rc`, with the registry's
 * own error message when the answer's body carries one. Caller frees.
 */
char *registry_op_error_text(struct registry_op *op, struct http_request *req, int rc);

/** Start (or stop, when nothing is due) the registry's timer for what is waiting. */
void registry_timer_arm(struct registry *reg);

/* ---- registry_auth.c: Basic, bearer tokens, challenges ---- */

/** "Authorization: Basic <base64 of user:password>"; wipe it with secret_free(). */
char *registry_auth_basic_header(const char *username, const char *password);

/**
 * The Authorization header line for `op`'s next attempt in *header (NULL:
 * none; caller wipes it with secret_free()). False when `op` now waits for a
 * token: the token's fetch attempts it again, or finishes it.
 */
bool registry_auth_prepare(struct registry_op *op, char **header);

/** Learn the registry's auth from a 401 to `op`; true when `op` should be sent again. */
bool registry_auth_challenge(struct registry_op *op, struct http_request *req);

/** Free the tokens and credentials (wiped). */
void registry_auth_release(struct registry *reg);

/* ---- registry_cache.c: the answer cache ---- */

/**
 * Join the cached answer for `key`: a hit is delivered on the next loop turn,
 * a fetch in flight gets one more waiter; both return true. Otherwise returns
 * false, and *flight (when the registry caches) is a new flight the caller
 * fetches for, with registry_cache_fetched() as the callback.
 */
bool registry_cache_join(struct registry *reg, const char *key, uint64_t ttl_ms,
                         registry_manifest_cb cb, void *arg, struct registry_flight **flight);

/** A flight's fetch is back (`arg` the flight): keep a success, answer every waiter. */
void registry_cache_fetched(int rc, const char *error, const char *bytes, size_t len,
                            const char *media_type, const char *digest, void *arg);

/** Deliver the hits waiting for the loop. */
void registry_cache_deliver(struct registry *reg);

/* ---- registry_manifest.c ---- */

/** GET (or HEAD) a manifest with the full Accept list; see registry_manifest_get(). */
void registry_manifest_fetch(struct registry *reg, const char *repo, const char *reference,
                             bool head, registry_manifest_cb cb, void *arg);

/** The media type of a response without its parameters; NULL when absent. Caller frees. */
char *registry_content_type(struct http_request *req);

/* ---- registry.c: the request budget a registry announces ---- */

/**
 * One RateLimit-Limit or RateLimit-Remaining value: Docker Hub's
 * "100;w=21600", a plain "100", or the IETF draft's list ("100, 100;w=60"),
 * of which the first item counts. The count in *count and its window
 * (`w=`, in seconds; 0 when not given) in *window_s. Returns 0, or
 * FERRY_EPARSE (nothing written) for anything else: no number first, a
 * number of more than 15 digits, an unterminated quoted parameter, junk
 * after the item.
 */
FERRY_MUST_CHECK int registry_ratelimit_parse(const char *value, int64_t *count,
                                              uint64_t *window_s);

/**
 * Keep the budget an answer announces (its RateLimit-* headers, when they
 * parse) in reg->stats, stamped with the loop's time; an answer without
 * them (or NULL) changes nothing. Every answer of every op passes here.
 */
void registry_ratelimit_note(struct registry *reg, struct http_request *req);

#endif
