#include "registry/mcache.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/xalloc.h"

struct mcache_entry {
    char *key;
    struct mcache_value v;
    uint64_t expires_ms; /* 0: never */
    size_t cost;
    struct mcache_entry *older, *newer; /* the LRU list */
    UT_hash_handle hh;
};

struct mcache {
    struct mcache_entry *table;
    struct mcache_entry *oldest, *newest;
    size_t max_bytes;
    size_t bytes;
    size_t count;
};

struct mcache *mcache_new(size_t max_bytes)
{
    struct mcache *c = xcalloc(1, sizeof(*c));
    c->max_bytes = max_bytes;
    return c;
}

static void lru_unlink(struct mcache *c, struct mcache_entry *e)
{
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    e->older = e->newer = NULL;
}

static void lru_push_newest(struct mcache *c, struct mcache_entry *e)
{
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest != NULL)
        c->newest->newer = e;
    c->newest = e;
    if (c->oldest == NULL)
        c->oldest = e;
}

static void entry_drop(struct mcache *c, struct mcache_entry *e)
{
    HASH_DEL(c->table, e);
    lru_unlink(c, e);
    c->bytes -= e->cost;
    c->count--;
    free(e->key);
    free(e->v.bytes);
    free(e->v.media_type);
    free(e->v.digest);
    free(e);
}

void mcache_free(struct mcache *c)
{
    if (c == NULL)
        return;
    while (c->oldest != NULL)
        entry_drop(c, c->oldest);
    free(c);
}

void mcache_put(struct mcache *c, const char *key, const char *bytes, size_t len,
                const char *media_type, const char *digest, uint64_t now_ms, uint64_t ttl_ms)
{
    size_t klen = strlen(key);
    size_t cost = sizeof(struct mcache_entry) + klen + len + 1 +
                  (media_type != NULL ? strlen(media_type) + 1 : 0) +
                  (digest != NULL ? strlen(digest) + 1 : 0);
    struct mcache_entry *e = NULL;
    HASH_FIND(hh, c->table, key, klen, e);
    if (e != NULL)
        entry_drop(c, e);
    if (cost > c->max_bytes / 8)
        return;
    while (c->bytes + cost > c->max_bytes && c->oldest != NULL)
        entry_drop(c, c->oldest);
    e = xcalloc(1, sizeof(*e));
    e->key = xstrdup(key);
    e->v.bytes = xmalloc(len + 1);
    if (len > 0)
        memcpy(e->v.bytes, bytes, len);
    e->v.bytes[len] = '\0';
    e->v.len = len;
    e->v.media_type = media_type != NULL ? xstrdup(media_type) : NULL;
    e->v.digest = digest != NULL ? xstrdup(digest) : NULL;
    e->expires_ms = ttl_ms > 0 ? now_ms + ttl_ms : 0;
    e->cost = cost;
    HASH_ADD_KEYPTR(hh, c->table, e->key, klen, e);
    lru_push_newest(c, e);
    c->bytes += cost;
    c->count++;
}

const struct mcache_value *mcache_get(struct mcache *c, const char *key, uint64_t now_ms)
{
    struct mcache_entry *e = NULL;
    HASH_FIND(hh, c->table, key, strlen(key), e);
    if (e == NULL)
        return NULL;
    if (e->expires_ms != 0 && now_ms >= e->expires_ms) {
        entry_drop(c, e);
        return NULL;
    }
    lru_unlink(c, e);
    lru_push_newest(c, e);
    return &e->v;
}

size_t mcache_count(const struct mcache *c)
{
    return c->count;
}

size_t mcache_bytes(const struct mcache *c)
{
    return c->bytes;
}
