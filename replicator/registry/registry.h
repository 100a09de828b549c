/*
 * registry: an OCI Distribution (v1.1) client on the loop.
 *
 * One `struct registry` per registry host. It knows the host's scheme and
 * credentials, discovers its auth (Basic or Docker token auth, with tokens
 * cached per scope until they expire, and fetched once for all waiters), and
 * runs every request with retries: connection errors, 5xx, 408 and 429 are
 * retried with exponential backoff and full jitter, honouring Retry-After
 * (capped); other 4xx fail at once with the registry's own error message.
 *
 * Every operation takes a completion callback that fires exactly once when
 * the call returned 0, and never when it returned an error. `error` strings
 * passed to callbacks are one line, name what failed, never hold a secret,
 * and live only for the duration of the callback.
 */
#ifndef FERRY_REGISTRY_H
#define FERRY_REGISTRY_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "registry/http.h"

struct registry;
struct registry_download;
struct registry_upload;

/* The defaults of struct registry_options, used where a field is 0. */
#define REGISTRY_DEFAULT_MAX_ATTEMPTS   6
#define REGISTRY_DEFAULT_RETRY_BASE_MS  200
#define REGISTRY_DEFAULT_RETRY_MAX_MS   8000
#define REGISTRY_DEFAULT_RETRY_AFTER_MS 30000 /* the cap on a registry's Retry-After */
#define REGISTRY_DEFAULT_LIST_PAGE_SIZE 1000
#define REGISTRY_LIST_PAGE_SIZE_MAX     10000 /* a larger page size asked for gets the default */

struct registry_options {
    bool plain_http;      /* force http:// */
    bool force_tls;       /* force https:// even on loopback */
    bool push;            /* a destination: ask tokens for pull,push so that one serves all */
    const char *username; /* Basic credentials (also sent to token realms); copied */
    const char *password;
    /*
     * Or where the credentials come from, renewed as they expire
     * (credentials.h): the registry takes a reference. Wins over username.
     */
    struct credentials *credentials;
    int max_attempts;            /* per request, retries included (0: 6) */
    uint64_t retry_base_ms;      /* first backoff ceiling (0: 200) */
    uint64_t retry_max_ms;       /* backoff ceiling (0: 8000) */
    uint64_t retry_after_max_ms; /* cap on a registry's Retry-After (0: 30000) */
    int list_page_size;          /* entries asked per listing page (0: 1000) */
    /*
     * Bytes of answers kept in memory (0: none): manifests fetched by digest
     * (they never change) and referrer lists (for a few seconds), each
     * fetched once while several callers ask for it (single-flight).
     */
    size_t cache_bytes;
};

/* Counters of one registry's operations, for summaries and tests. */
struct registry_stats {
    uint64_t retries;
    uint64_t token_fetches;
    uint64_t cache_hits;    /* answers served from the cache or a fetch in flight */
    uint64_t invalid_names; /* repository names and tags from listings, invalid and skipped */
    uint64_t not_modified;  /* conditional tag listings answered 304 */
    /*
     * The registry's request budget, from the RateLimit-Limit and
     * RateLimit-Remaining headers of its latest answer that carried them
     * (Docker Hub: "100;w=21600"); ratelimit_seen_ms is 0 until one did.
     */
    int64_t ratelimit_limit;     /* -1: never seen */
    int64_t ratelimit_remaining; /* -1: never seen */
    uint64_t ratelimit_window_s; /* the limit's window ("w="), 0 when not given */
    uint64_t ratelimit_seen_ms;  /* uv_now() of that answer */
};

/* A listing with more names than this fails with FERRY_ETOOBIG, naming the cap. */
#define REGISTRY_CATALOG_MAX 1000000
#define REGISTRY_TAGS_MAX    100000

/**
 * A client for `host` ("host[:port]"). Loopback hosts use plain HTTP, as
 * Docker does; every other host uses HTTPS unless `opts->plain_http`.
 * Never NULL.
 */
struct registry *registry_new(uv_loop_t *loop, struct http_client *http, const char *host,
                              const struct registry_options *opts);

/**
 * Close the registry's timer and free it once closed; no operation may be
 * running. `cb` (may be NULL) fires once, from the loop, when it is freed.
 */
void registry_close(struct registry *reg, void (*cb)(void *arg), void *arg);

/** Where this client's credentials come from (NULL: anonymous). */
struct credentials *registry_credentials(const struct registry *reg);

/** The host this client talks to. */
const char *registry_host(const struct registry *reg);

/** Counters so far. */
void registry_get_stats(const struct registry *reg, struct registry_stats *out);

typedef void (*registry_done_cb)(int rc, const char *error, void *arg);

/*
 * The requests below cannot fail to start (a name that is not valid fails
 * the request, through its callback, before anything is sent): they return
 * nothing, and their callback always fires once, from the loop.
 */

/** GET /v2/: reachability and auth discovery. */
void registry_ping(struct registry *reg, registry_done_cb cb, void *arg);

typedef void (*registry_exists_cb)(int rc, const char *error, bool exists, int64_t size, void *arg);

/** HEAD a blob. `exists` is false on 404; other failures are errors. */
void registry_blob_exists(struct registry *reg, const char *repo, const char *digest,
                          registry_exists_cb cb, void *arg);

/**
 * Receives blob bytes in order; `offset` is where `data` starts in the blob.
 * Returns 0, HTTP_SINK_PAUSE to hold the download until
 * registry_download_resume() (the same bytes come again), or a negative code
 * to abort the download with it.
 */
typedef int (*registry_sink_cb)(const char *data, size_t len, uint64_t offset, void *arg);

/**
 * Stream a blob into `sink`, verifying its SHA-256 (and its size, when `size`
 * is not negative) as it streams. A transfer that breaks is resumed with a
 * Range request. The callback gets FERRY_EDIGEST when the bytes do not match
 * the digest, so a corrupt blob never completes.
 */
FERRY_MUST_CHECK int registry_blob_get(struct registry *reg, const char *repo, const char *digest,
                                       int64_t size, registry_sink_cb sink, void *sink_arg,
                                       registry_done_cb cb, void *arg,
                                       struct registry_download **out);

/** Wake a download whose sink paused it. *out of registry_blob_get() until its callback. */
void registry_download_resume(struct registry_download *d);

/**
 * Stop a download: its callback fires with FERRY_ECANCELED, at once when a
 * request is in flight, else when its pending retry or token wait ends.
 */
void registry_download_cancel(struct registry_download *d);

/* Bytes per PATCH of a chunked upload when neither chunk size is given. */
#define REGISTRY_DEFAULT_CHUNK_MAX (64ull * 1024 * 1024)

enum registry_upload_mode {
    REGISTRY_UPLOAD_AUTO = 0, /* monolithic: POST then one PUT, the fewest requests */
    REGISTRY_UPLOAD_MONOLITHIC,
    REGISTRY_UPLOAD_CHUNKED,
};

struct registry_upload_options {
    enum registry_upload_mode mode;
    uint64_t
        chunk_min; /* chunked: at least this per PATCH but the last (also OCI-Chunk-Min-Length) */
    uint64_t chunk_max;     /* chunked: at most this per PATCH (0: REGISTRY_DEFAULT_CHUNK_MAX) */
    const char *mount_from; /* try a cross-repository mount from this repository first */
    /* The caller knows the blob is in `mount_from` (it put it there, or another node did):
     * a mount refused (202) is tried once more after the backoff before the upload,
     * unless the registry's retried mounts keep being refused (REGISTRY_MOUNT_RETRY_MISSES). */
    bool mount_retry;
};

/* Retried mounts refused again in a row, past which a registry's mounts are not retried. */
#define REGISTRY_MOUNT_RETRY_MISSES 4

enum registry_upload_outcome {
    REGISTRY_UPLOADED = 1,
    REGISTRY_MOUNTED = 2,
};

typedef void (*registry_upload_cb)(int rc, const char *error, enum registry_upload_outcome how,
                                   void *arg);

/**
 * Put a blob of `size` bytes, read through `source`, into `repo`: a mount
 * first when `opts->mount_from` is set (201: done; 202: go on uploading in
 * that session), then a monolithic or chunked upload using the Location
 * header as given. A chunked upload that breaks resumes from the registry's
 * Range; a session the registry forgot (404) starts over with a new POST,
 * each such try counted against `max_attempts`. When `source` returns
 * HTTP_SOURCE_WAIT, call registry_upload_resume()
 * once more bytes are there. *out (may be NULL) is valid until `cb` fires.
 */
FERRY_MUST_CHECK int registry_blob_upload(struct registry *reg, const char *repo,
                                          const char *digest, uint64_t size, http_source_cb source,
                                          void *source_arg,
                                          const struct registry_upload_options *opts,
                                          registry_upload_cb cb, void *arg,
                                          struct registry_upload **out);

/** Wake an upload whose source had no bytes yet. */
void registry_upload_resume(struct registry_upload *up);

typedef void (*registry_manifest_cb)(int rc, const char *error, const char *bytes, size_t len,
                                     const char *media_type, const char *digest, void *arg);

/**
 * GET a manifest by tag or digest with the full Accept list. The bytes are
 * exactly what the registry sent (at most 4 MiB); their digest is computed
 * and must equal the digest asked for, or the registry's Docker-Content-Digest
 * when asked by tag (FERRY_EDIGEST otherwise). 404 gives FERRY_ENOTFOUND.
 */
void registry_manifest_get(struct registry *reg, const char *repo, const char *reference,
                           registry_manifest_cb cb, void *arg);

/**
 * HEAD a manifest. `exists` false on 404; `digest` from Docker-Content-Digest
 * (may be NULL when the registry sends none). `len` is the size.
 */
void registry_manifest_head(struct registry *reg, const char *repo, const char *reference,
                            registry_manifest_cb cb, void *arg);

/**
 * What `reference` (a tag or a digest) names at the registry now: one HEAD,
 * and a GET when the HEAD names no valid digest. The callback gets rc 0 with
 * `digest` (and `media_type`; `bytes` NULL), FERRY_ENOTFOUND when the
 * registry has no such tag or manifest, or another error. Callers that pass
 * the same non-empty `share` key (with the same repo and reference) share
 * one request while it is in flight, and its answer, found or absent, for
 * `share_ms` after; a registry made without `cache_bytes` shares nothing.
 * The key says from when an answer is fresh enough: Ferry's engine passes
 * the journal seq of the entry a job serves, so only jobs of one entry share.
 */
void registry_manifest_resolve(struct registry *reg, const char *repo, const char *reference,
                               const char *share, uint64_t share_ms, registry_manifest_cb cb,
                               void *arg);

/**
 * Ends a manifest PUT; `subject_processed` is true when the registry answered
 * with an OCI-Subject header (it maintains referrers itself).
 */
typedef void (*registry_put_cb)(int rc, const char *error, bool subject_processed, void *arg);

/**
 * PUT manifest bytes under `reference` (a tag or their digest) with
 * Content-Type `media_type`. `bytes` must outlive the operation.
 */
FERRY_MUST_CHECK int registry_manifest_put(struct registry *reg, const char *repo,
                                           const char *reference, const char *bytes, size_t len,
                                           const char *media_type, registry_put_cb cb, void *arg);

/**
 * DELETE a manifest by digest (with every tag that names it; the only delete
 * Distribution offers). A manifest already gone (404) is success; a registry
 * that refuses deletes answers 405 (FERRY_EUNSUPPORTED).
 */
FERRY_MUST_CHECK int registry_manifest_delete(struct registry *reg, const char *repo,
                                              const char *digest, registry_done_cb cb, void *arg);

/**
 * DELETE a tag alone, leaving its manifest (OCI 1.1; not every registry
 * can). A tag already gone (404) is success; a registry that cannot delete
 * tags (400 or 405, as Distribution 2.8) gives FERRY_EUNSUPPORTED.
 * FERRY_EINVAL, and no callback, for an invalid tag.
 */
FERRY_MUST_CHECK int registry_tag_delete(struct registry *reg, const char *repo, const char *tag,
                                         registry_done_cb cb, void *arg);

typedef void (*registry_list_cb)(int rc, const char *error, char **items, size_t n, void *arg);

/**
 * Does `repo` exist? GET /v2/<repo>/tags/list?n=1: `exists` is false on 404
 * (NAME_UNKNOWN); other failures are errors. The size passed is -1.
 */
void registry_repository_exists(struct registry *reg, const char *repo, registry_exists_cb cb,
                                void *arg);

/** Called with each invalid name of a listing page (NULL: not a string). */
typedef void (*registry_skip_cb)(const char *value, void *arg);

/**
 * One page of a listing (`{"repositories": [...]}` or `{"tags": [...]}`):
 * its valid names are appended to *items (*n of them; start with NULL and
 * 0, and let this function grow the array; the caller frees both); each
 * invalid one goes to `skip`. Returns
 * 0, FERRY_EPROTO when the body is not such a listing, or FERRY_ETOOBIG
 * once *n would pass `cap` (what was appended stays).
 */
FERRY_MUST_CHECK int registry_list_page_parse(const char *body, size_t len, bool repositories,
                                              size_t cap, char ***items, size_t *n,
                                              registry_skip_cb skip, void *arg);

/** GET /v2/_catalog, every page (Link pagination). `items` are freed after the callback. */
void registry_catalog(struct registry *reg, registry_list_cb cb, void *arg);

/** GET /v2/<repo>/tags/list, every page. */
FERRY_MUST_CHECK int registry_tags(struct registry *reg, const char *repo, registry_list_cb cb,
                                   void *arg);

/*
 * A conditional tag listing's answer: `not_modified` true (and no items)
 * when the registry answered 304 to If-None-Match; `etag` is the listing's
 * ETag (NULL when the registry sends none), valid during the callback.
 */
typedef void (*registry_tags_cond_cb)(int rc, const char *error, char **items, size_t n,
                                      bool not_modified, const char *etag, void *arg);

/**
 * GET /v2/<repo>/tags/list with If-None-Match: `etag` (NULL: unconditional),
 * every page. Only a listing of one page is conditional: a 304 stands for
 * the whole listing the ETag was taken from.
 */
void registry_tags_conditional(struct registry *reg, const char *repo, const char *etag,
                               registry_tags_cond_cb cb, void *arg);

/**
 * The referrers of `digest` as image index bytes: from the referrers API, or,
 * where the registry has none (404), from the `sha256-<hex>` tag fallback.
 * No referrers gives rc 0 with len 0; the callback's `digest` is NULL.
 */
FERRY_MUST_CHECK int registry_referrers(struct registry *reg, const char *repo, const char *digest,
                                        registry_manifest_cb cb, void *arg);

/** True once this registry answered 404 to the referrers API. */
bool registry_referrers_api_missing(const struct registry *reg);

#endif
