/*
 * mcache: a bounded cache of small registry answers (manifests, referrer
 * lists) in memory, keyed by a string, least recently used first out, each
 * entry optionally expiring. Manifests fetched by digest never change, so the
 * jobs replicating one image to several destinations read it from the source
 * once; a referrer list may change, so it is kept for seconds only.
 */
#ifndef FERRY_MCACHE_H
#define FERRY_MCACHE_H

#include <stddef.h>
#include <stdint.h>

struct mcache;

struct mcache_value {
    char *bytes; /* NUL-terminated copy */
    size_t len;
    char *media_type; /* may be NULL */
    char *digest;     /* may be NULL */
};

/** A cache holding at most `max_bytes` of values (keys and bookkeeping included). */
struct mcache *mcache_new(size_t max_bytes);

/** Free the cache and every value; NULL is ignored. */
void mcache_free(struct mcache *c);

/**
 * Store a copy of the value under `key`, replacing what was there. `ttl_ms`
 * 0 keeps it until evicted; otherwise it expires `ttl_ms` after `now_ms`.
 * Values bigger than an eighth of the cache are not kept. The least recently
 * used entries go to make room.
 */
void mcache_put(struct mcache *c, const char *key, const char *bytes, size_t len,
                const char *media_type, const char *digest, uint64_t now_ms, uint64_t ttl_ms);

/**
 * The value under `key`, or NULL when absent or expired (an expired entry is
 * dropped). The pointer is valid until the next mcache_put() or
 * mcache_free(). A hit makes the entry the most recently used.
 */
const struct mcache_value *mcache_get(struct mcache *c, const char *key, uint64_t now_ms);

/** Entries and bytes held, for tests. */
size_t mcache_count(const struct mcache *c);
size_t mcache_bytes(const struct mcache *c);

#endif
