/*
 * vendor: what registries of the vendors do that Distribution does not, as
 * pure functions the proxy plays them with (no loop, no sockets, so that
 * unit tests drive them with a fake clock):
 *
 *   - repositories that must be created before a push (ECR; Harbor's
 *     projects): which repository a push names, and the set of created ones;
 *   - Docker Hub's pull limit: RateLimit-Limit/RateLimit-Remaining on every
 *     answer, a manifest GET spends one, 429 once none is left until the
 *     window ends;
 *   - conditional GETs: an ETag of the body, and If-None-Match against it;
 *   - the error document a registry answers a status with.
 */
#ifndef FERRY_CHAOS_VENDOR_H
#define FERRY_CHAOS_VENDOR_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Repository names: Distribution's limit on the whole name. */
#define VENDOR_REPO_NAME_MAX 255
/* The most repositories the gate remembers as created. */
#define VENDOR_REPOS_MAX 4096
/* Docker Hub's window: six hours. */
#define VENDOR_RATELIMIT_WINDOW_DEFAULT_S 21600
#define VENDOR_RATELIMIT_WINDOW_MAX_S     (7 * 86400)
#define VENDOR_RATELIMIT_LIMIT_MAX        1000000000ULL
/* Bodies up to this size are held whole to compute their ETag. */
#define VENDOR_ETAG_BODY_MAX (1024 * 1024)
/* "\"" + 64 hex digits + "\"" + NUL. */
#define VENDOR_ETAG_MAX 67
/* Room for the RateLimit headers vendor_ratelimit_headers() writes. */
#define VENDOR_RATELIMIT_HEADERS_MAX 128

/**
 * The repository a push request names, written to `repo` (of `repo_len`
 * bytes). A push is POST /v2/R/blobs/uploads/ (a mount too), PATCH or PUT
 * /v2/R/blobs/uploads/<session>, and PUT /v2/R/manifests/<reference>; the
 * query does not count. True for a push whose R is a valid name
 * (vendor_repo_name_valid()) that fits; false for everything else (reads,
 * deletes, other paths).
 */
bool vendor_push_repo(const char *method, const char *target, char *repo, size_t repo_len);

/** True for a GET of /v2/R/manifests/<reference> (what Docker Hub counts as a pull). */
bool vendor_is_manifest_get(const char *method, const char *target);

/**
 * A repository name as Distribution takes it, leniently: 1 to
 * VENDOR_REPO_NAME_MAX bytes of [a-z0-9._-] in components separated by
 * single slashes, none empty.
 */
bool vendor_repo_name_valid(const char *name);

/* The repositories created (the gate lets pushes to them through). */
struct vendor_repos {
    char **names;
    size_t n;
    size_t cap;
    uint64_t creations; /* vendor_repos_add() calls that created one */
};

/**
 * Adds `name`: 1 when it was created, 0 when it was there already,
 * FERRY_EINVAL for a name vendor_repo_name_valid() refuses, FERRY_ETOOBIG
 * when VENDOR_REPOS_MAX are there. `count` false: not counted in
 * `creations` (repositories that exist from the start).
 */
FERRY_MUST_CHECK int vendor_repos_add(struct vendor_repos *repos, const char *name, bool count);

/** True when `name` was created. */
bool vendor_repos_has(const struct vendor_repos *repos, const char *name);

/** Frees the names; the set may be used again (empty). */
void vendor_repos_release(struct vendor_repos *repos);

/* One pull limit (per rule), Docker Hub's way. */
struct vendor_ratelimit {
    uint64_t limit;
    uint64_t window_s;
    uint64_t remaining;
    uint64_t window_start_ms;
    bool started;     /* the window starts at the first request it sees */
    uint64_t refused; /* requests answered 429 */
};

/** A fresh limit of `limit` pulls per `window_s` seconds. */
void vendor_ratelimit_init(struct vendor_ratelimit *rl, uint64_t limit, uint64_t window_s);

/**
 * One request the limit applies to, at `now_ms` (a monotonic clock). The
 * window starts at the first request, and a new one (all pulls back) at the
 * first request after it ended. When `pull` (a manifest GET) a pull is
 * spent; when none is left, returns true (answer 429) with the seconds
 * until the window ends (at least 1) in *retry_after_s. False otherwise.
 */
bool vendor_ratelimit_take(struct vendor_ratelimit *rl, uint64_t now_ms, bool pull,
                           uint64_t *retry_after_s);

/**
 * Writes "RateLimit-Limit: L;w=W\r\nRateLimit-Remaining: R;w=W\r\n" to `out`
 * (VENDOR_RATELIMIT_HEADERS_MAX bytes).
 */
void vendor_ratelimit_headers(const struct vendor_ratelimit *rl,
                              char out[VENDOR_RATELIMIT_HEADERS_MAX]);

/** Seconds until the current window ends at `now_ms` (0 when none runs). */
uint64_t vendor_ratelimit_reset_in_s(const struct vendor_ratelimit *rl, uint64_t now_ms);

/** The ETag of a body: "\"<sha256 hex>\"", quotes included. */
void vendor_etag(const void *body, size_t len, char out[VENDOR_ETAG_MAX]);

/**
 * True when an If-None-Match header value (a list of entity tags, or "*")
 * names `etag`; weak tags (W/"...") compare by their value, as RFC 9110
 * says for If-None-Match.
 */
bool vendor_etag_matches(const char *if_none_match, const char *etag);

/**
 * The error a registry answers `status` with, for the request `target`:
 * `code` when the caller gives one (a rule's code=), else Distribution's
 * code for the status (401 UNAUTHORIZED, 403 DENIED, 404 by the path:
 * MANIFEST_UNKNOWN, BLOB_UNKNOWN, BLOB_UPLOAD_UNKNOWN, NAME_UNKNOWN for tag
 * listings, else NOT_FOUND; 405 UNSUPPORTED, 429 TOOMANYREQUESTS, 502-504
 * UNAVAILABLE, else UNKNOWN); *message is that code's message in
 * Distribution's words. Both are static strings.
 */
void vendor_error_for(int status, const char *target, const char *code, const char **code_out,
                      const char **message_out);

#endif
