/*
 * registry_cache.c: the answer cache of a registry made with `cache_bytes`:
 * manifests by digest and referrer lists kept in an mcache, each fetched
 * once while several callers ask for it (single-flight), hits delivered from
 * the loop, never from inside the caller's call.
 */
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "registry/registry_int.h"

/* Callers waiting for one cached fetch. */
struct fetch_waiter {
    registry_manifest_cb cb;
    void *arg;
    struct fetch_waiter *next;
};

struct registry_flight {
    struct registry *reg;
    char *key;
    uint64_t ttl_ms;
    struct fetch_waiter *waiters, **tail;
    UT_hash_handle hh;
};

/* A cached answer, copied, delivered on the next loop turn. */
struct registry_cache_hit {
    registry_manifest_cb cb;
    void *arg;
    struct mcache_value v;
    struct registry_cache_hit *next;
};

void registry_cache_deliver(struct registry *reg)
{
    struct registry_cache_hit *h = reg->hits;
    reg->hits = NULL;
    reg->hits_tail = &reg->hits;
    while (h != NULL) {
        struct registry_cache_hit *next = h->next;
        h->cb(0, NULL, h->v.bytes, h->v.len, h->v.media_type, h->v.digest, h->arg);
        free(h->v.bytes);
        free(h->v.media_type);
        free(h->v.digest);
        free(h);
        h = next;
    }
}

/* Queue a copy of `v` for `cb`, delivered from the registry's timer. */
static void cache_hit_queue(struct registry *reg, const struct mcache_value *v,
                            registry_manifest_cb cb, void *arg)
{
    struct registry_cache_hit *h = xcalloc(1, sizeof(*h));
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
}

bool registry_cache_join(struct registry *reg, const char *key, uint64_t ttl_ms,
                         registry_manifest_cb cb, void *arg, struct registry_flight **flight)
{
    *flight = NULL;
    if (reg->cache == NULL)
        return false;
    const struct mcache_value *v = mcache_get(reg->cache, key, uv_now(reg->loop));
    if (v != NULL) {
        cache_hit_queue(reg, v, cb, arg);
        return true;
    }
    struct fetch_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    struct registry_flight *f = NULL;
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

void registry_cache_fetched(int rc, const char *error, const char *bytes, size_t len,
                            const char *media_type, const char *digest, void *arg)
{
    struct registry_flight *f = arg;
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
