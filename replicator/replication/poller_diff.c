/*
 * poller_diff.c: what the poller journals, decided without a registry or a
 * journal in sight (poller_int.h): a listing against the journal's tag
 * state, the source's answer for a tag the listing left out, and what the
 * registry's request budget lets through.
 */
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "common/errors.h"
#include "common/manifest.h"
#include "common/xalloc.h"
#include "replication/poller_int.h"

/* A set of tags by name, each with its first place in its input. */
struct tag_entry {
    const char *tag;
    size_t at;
    UT_hash_handle hh;
};

static struct tag_entry *tag_set_build(const struct poller_tag *tags, size_t n,
                                       struct tag_entry *entries)
{
    struct tag_entry *set = NULL;
    for (size_t i = 0; i < n; i++) {
        struct tag_entry *e = NULL;
        HASH_FIND_STR(set, tags[i].tag, e);
        if (e != NULL)
            continue;
        entries[i] = (struct tag_entry){.tag = tags[i].tag, .at = i};
        HASH_ADD_KEYPTR(hh, set, entries[i].tag, strlen(entries[i].tag), &entries[i]);
    }
    return set;
}

static const struct tag_entry *tag_set_find(const struct tag_entry *set, const char *tag)
{
    const struct tag_entry *e = NULL;
    HASH_FIND_STR(set, tag, e);
    return e;
}

static void diff_add(struct poller_diff *d, enum poller_change change, const struct poller_tag *t)
{
    d->changes = xrealloc(d->changes, (d->n_changes + 1) * sizeof(*d->changes));
    d->changes[d->n_changes++] = (struct poller_verdict){
        .change = change,
        .tag = t->tag,
        .digest = t->digest,
        .media_type = t->media_type,
        .size = t->size,
    };
}

void poller_diff_listing(const struct poller_tag *listed, size_t n_listed,
                         const struct poller_tag *known, size_t n_known, struct poller_diff *out)
{
    memset(out, 0, sizeof(*out));
    struct tag_entry *known_entries = xcalloc(n_known > 0 ? n_known : 1, sizeof(*known_entries));
    struct tag_entry *listed_entries =
        xcalloc(n_listed > 0 ? n_listed : 1, sizeof(*listed_entries));
    struct tag_entry *by_known = tag_set_build(known, n_known, known_entries);
    struct tag_entry *by_listed = tag_set_build(listed, n_listed, listed_entries);

    for (size_t i = 0; i < n_listed; i++) {
        const struct poller_tag *t = &listed[i];
        if (t->digest == NULL)
            continue;
        const struct tag_entry *k = tag_set_find(by_known, t->tag);
        if (k == NULL)
            diff_add(out, POLLER_NEW, t);
        else if (strcmp(known[k->at].digest, t->digest) != 0)
            diff_add(out, POLLER_MOVED, t);
    }
    for (size_t i = 0; i < n_known; i++) {
        const struct poller_tag *k = &known[i];
        /* The first of a repeated tag only. */
        if (tag_set_find(by_known, k->tag)->at != i || tag_set_find(by_listed, k->tag) != NULL)
            continue;
        out->unlisted = xrealloc(out->unlisted, (out->n_unlisted + 1) * sizeof(*out->unlisted));
        out->unlisted[out->n_unlisted++] = k;
    }
    HASH_CLEAR(hh, by_known);
    HASH_CLEAR(hh, by_listed);
    free(known_entries);
    free(listed_entries);
}

void poller_diff_release(struct poller_diff *d)
{
    free(d->changes);
    free(d->unlisted);
    memset(d, 0, sizeof(*d));
}

bool poller_diff_unlisted(const struct poller_tag *known, int rc, const char *digest,
                          const char *media_type, struct poller_verdict *out)
{
    memset(out, 0, sizeof(*out));
    out->tag = known->tag;
    if (rc == FERRY_ENOTFOUND) {
        out->change = POLLER_DELETED;
        out->digest = known->digest;
        return true;
    }
    if (rc == 0 && digest != NULL && strcmp(digest, known->digest) != 0) {
        out->change = POLLER_MOVED;
        out->digest = digest;
        out->media_type = media_type;
        return true;
    }
    return false;
}

/* ---- the request budget ---- */

uint64_t poller_change_cost(const struct poller_verdict *v)
{
    if (v->change == POLLER_DELETED)
        return 0;
    bool index = v->media_type != NULL && (strcmp(v->media_type, MEDIA_OCI_INDEX) == 0 ||
                                           strcmp(v->media_type, MEDIA_DOCKER_LIST) == 0);
    if (!index)
        return POLLER_PULLS_PER_MANIFEST;
    uint64_t children = (v->size + POLLER_INDEX_BYTES_PER_CHILD - 1) / POLLER_INDEX_BYTES_PER_CHILD;
    if (children == 0)
        children = 1;
    if (children > MANIFEST_MAX_BYTES / POLLER_INDEX_BYTES_PER_CHILD)
        children = MANIFEST_MAX_BYTES / POLLER_INDEX_BYTES_PER_CHILD;
    return POLLER_PULLS_PER_MANIFEST * (1 + children);
}

uint64_t poller_budget_reserve(int64_t limit, int64_t remaining)
{
    int64_t base = limit >= 0 ? limit : remaining;
    uint64_t reserve = base > 0 ? (uint64_t)base / 10 : 0;
    return reserve > 0 ? reserve : 1;
}

int64_t poller_budget_spendable(int64_t limit, int64_t remaining, uint64_t pending)
{
    if (remaining < 0)
        return -1;
    uint64_t held = poller_budget_reserve(limit, remaining) + pending;
    return (uint64_t)remaining > held ? (int64_t)((uint64_t)remaining - held) : 0;
}

bool poller_budget_admits(int64_t limit, int64_t remaining, uint64_t pending, uint64_t cost)
{
    int64_t spendable = poller_budget_spendable(limit, remaining, pending);
    if (spendable < 0 || cost <= (uint64_t)spendable)
        return true;
    /* The most there can ever be to spend: all of the limit above the reserve. */
    int64_t most = poller_budget_spendable(limit, limit >= 0 ? limit : remaining, 0);
    return pending == 0 && spendable > 0 && spendable >= most && cost > (uint64_t)most;
}

/* FNV-1a, 64 bits: a spread, not a defence (names are the registry's). */
static uint64_t reconcile_hash(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

bool poller_reconcile_due(const char *source, const char *repository, uint64_t from_ms,
                          uint64_t to_ms, uint64_t interval_ms)
{
    if (interval_ms == 0 || to_ms <= from_ms)
        return false;
    if (to_ms - from_ms >= interval_ms)
        return true;
    uint64_t h = reconcile_hash(0xcbf29ce484222325ull, source);
    h = reconcile_hash(h ^ 0xff, repository);
    uint64_t phase = h % interval_ms;
    if (to_ms < phase)
        return false;
    /* The repository's last point at or before to_ms. */
    uint64_t point = to_ms - (to_ms - phase) % interval_ms;
    return point > from_ms;
}
