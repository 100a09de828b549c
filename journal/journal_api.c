/*
 * journal_api.c: journal.h's calls, each answered by the journal's backend
 * (journal_backend.h). The callers never know which one it is.
 */
#include "journal/journal_backend.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/digest.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "journal/journal_int.h"

void journal_close(struct journal *j)
{
    if (j != NULL)
        j->ops->close(j);
}

const char *journal_backend_name(const struct journal *j)
{
    return j->ops->name;
}

int journal_append(struct journal *j, const struct journal_event *events, size_t n, uint64_t *seqs,
                   char **err)
{
    return j->ops->append(j, events, n, seqs, err);
}

uint64_t journal_last_seq(struct journal *j)
{
    return j->ops->last_seq(j);
}

int journal_get(struct journal *j, uint64_t seq, struct journal_entry *out)
{
    return j->ops->get(j, seq, out);
}

int journal_scan(struct journal *j, uint64_t after, size_t limit,
                 int (*cb)(const struct journal_entry *e, void *arg), void *arg)
{
    return j->ops->scan(j, after, limit, cb, arg);
}

int journal_entry_set_ignored(struct journal *j, uint64_t seq, const char *reason)
{
    return j->ops->entry_set_ignored(j, seq, reason);
}

int journal_retain(struct journal *j, uint64_t max_age_ms, int64_t now_unix_ms, uint64_t *deleted)
{
    return j->ops->retain(j, max_age_ms, now_unix_ms, deleted);
}

int journal_get_stats(struct journal *j, struct journal_stats *out)
{
    return j->ops->get_stats(j, out);
}

int journal_cursor_get(struct journal *j, const char *name, uint64_t *seq)
{
    return j->ops->cursor_get(j, name, seq);
}

int journal_cursor_find(struct journal *j, const char *name, uint64_t *seq)
{
    return j->ops->cursor_find(j, name, seq);
}

int journal_cursor_set(struct journal *j, const char *name, uint64_t seq)
{
    return j->ops->cursor_set(j, name, seq);
}

int journal_tagstate_get(struct journal *j, const char *source, const char *repository,
                         const char *tag, char **digest)
{
    return j->ops->tagstate_get(j, source, repository, tag, digest);
}

int journal_tagstate_put(struct journal *j, const char *source, const char *repository,
                         const char *tag, const char *digest)
{
    return j->ops->tagstate_put(j, source, repository, tag, digest);
}

int journal_tagstate_scan(struct journal *j, const char *source, const char *repository,
                          int (*cb)(const char *repository, const char *tag, const char *digest,
                                    void *arg),
                          void *arg)
{
    return j->ops->tagstate_scan(j, source, repository, cb, arg);
}

int journal_fence_get(struct journal *j, const char *destination, const char *repository,
                      const char *tag, uint64_t *seq)
{
    return j->ops->fence_get(j, destination, repository, tag, seq);
}

int journal_fence_raise(struct journal *j, const char *destination, const char *repository,
                        const char *tag, uint64_t seq)
{
    return j->ops->fence_raise(j, destination, repository, tag, seq);
}

int journal_fence_raise_unsynced(struct journal *j, const char *destination, const char *repository,
                                 const char *tag, uint64_t seq)
{
    return j->ops->fence_raise_unsynced(j, destination, repository, tag, seq);
}

int journal_job_put(struct journal *j, const struct journal_job *job)
{
    return j->ops->job_put(j, job);
}

int journal_job_get(struct journal *j, const char *destination, const char *repository,
                    const char *digest, struct journal_job *out)
{
    return j->ops->job_get(j, destination, repository, digest, out);
}

int journal_job_scan(struct journal *j, int (*cb)(const struct journal_job *job, void *arg),
                     void *arg)
{
    return j->ops->job_scan(j, cb, arg);
}

int journal_job_scan_open(struct journal *j, int (*cb)(const struct journal_job *job, void *arg),
                          void *arg)
{
    return j->ops->job_scan_open(j, cb, arg);
}

int journal_job_scan_in(struct journal *j, const char *destination, const char *repository,
                        int (*cb)(const struct journal_job *job, void *arg), void *arg)
{
    return j->ops->job_scan_in(j, destination, repository, cb, arg);
}

int journal_poll_memo_get(struct journal *j, const char *source, const char *repository,
                          struct journal_poll_memo *out)
{
    return j->ops->poll_memo_get(j, source, repository, out);
}

int journal_poll_memo_put(struct journal *j, const char *source, const char *repository,
                          const struct journal_poll_memo *memo)
{
    return j->ops->poll_memo_put(j, source, repository, memo);
}

int journal_poll_memo_prune(struct journal *j, const char *source, char *const *keep, size_t n_keep,
                            uint64_t *deleted)
{
    return j->ops->poll_memo_prune(j, source, keep, n_keep, deleted);
}

int journal_poll_memo_clear(struct journal *j)
{
    return j->ops->poll_memo_clear(j);
}

int journal_work_open(struct journal *j, const struct journal_work_options *o,
                      struct journal_work **out)
{
    *out = NULL;
    return j->ops->work_open != NULL ? j->ops->work_open(j, o, out) : 0;
}

int journal_lease_take(struct journal *j, const char *name, const char *holder, uint64_t ttl_ms,
                       char **other)
{
    if (other != NULL)
        *other = NULL;
    return j->ops->lease_take != NULL ? j->ops->lease_take(j, name, holder, ttl_ms, other) : 1;
}

int journal_lease_give(struct journal *j, const char *name, const char *holder)
{
    return j->ops->lease_give != NULL ? j->ops->lease_give(j, name, holder) : 0;
}

int journal_tag_hold(struct journal *j, const char *destination, const char *repository,
                     const char *tag, const char *holder, uint64_t token, uint64_t ttl_ms,
                     uint64_t seq, uint64_t *fence, char **other)
{
    if (other != NULL)
        *other = NULL;
    *fence = 0;
    if (token == 0)
        return FERRY_EINVAL;
    if (j->ops->tag_hold != NULL)
        return j->ops->tag_hold(j, destination, repository, tag, holder, token, ttl_ms, seq, fence,
                                other);
    int rc = j->ops->fence_get(j, destination, repository, tag, fence);
    return rc < 0 ? rc : 1;
}

int journal_tag_release(struct journal *j, const char *destination, const char *repository,
                        const char *tag, const char *holder, uint64_t token, uint64_t raised)
{
    if (token == 0)
        return FERRY_EINVAL;
    if (j->ops->tag_release != NULL)
        return j->ops->tag_release(j, destination, repository, tag, holder, token, raised);
    if (raised == 0)
        return 0;
    int rc = j->ops->fence_raise(j, destination, repository, tag, raised);
    return rc < 0 ? rc : 0;
}

/*
 * Checked here, for both backends: a name or info that a cluster would
 * refuse is refused by one node too, so a misconfigured node shows before
 * it joins a cluster.
 */
int journal_node_beat(struct journal *j, const char *node, const char *info)
{
    if (journal_node_check(node) < 0 || info == NULL ||
        strnlen(info, JOURNAL_NODE_INFO_MAX + 1) > JOURNAL_NODE_INFO_MAX)
        return FERRY_EINVAL;
    return j->ops->node_beat != NULL ? j->ops->node_beat(j, node, info) : 0;
}

int journal_node_forget(struct journal *j, const char *node)
{
    if (journal_node_check(node) < 0)
        return FERRY_EINVAL;
    return j->ops->node_forget != NULL ? j->ops->node_forget(j, node) : 0;
}

int journal_node_scan(struct journal *j,
                      int (*cb)(const char *node, int64_t beat_unix_ms, const char *info,
                                void *arg),
                      void *arg)
{
    return j->ops->node_scan != NULL ? j->ops->node_scan(j, cb, arg) : 0;
}

/* A stored claim key: 64 hex digits. */
#define JOURNAL_CLAIM_HEX 64

/*
 * A claim's stored key: the sha256 of the caller's key in hex, which any
 * bucket takes as a key whatever names it holds; a key already in that form
 * (from a scan) is kept as it is.
 */
static int journal_claim_key(const char *key, char out[JOURNAL_CLAIM_HEX + 1])
{
    size_t len = key != NULL ? strnlen(key, JOURNAL_CLAIM_KEY_MAX + 1) : 0;
    if (len == 0 || len > JOURNAL_CLAIM_KEY_MAX)
        return FERRY_EINVAL;
    if (len == JOURNAL_CLAIM_HEX && strspn(key, "0123456789abcdef") == len) {
        memcpy(out, key, len + 1);
        return 0;
    }
    char digest[DIGEST_MAX];
    digest_of(key, len, digest);
    memcpy(out, digest + strlen("sha256:"), JOURNAL_CLAIM_HEX + 1);
    return 0;
}

int journal_claim_put(struct journal *j, const char *key, const struct journal_claim *c)
{
    char stored[JOURNAL_CLAIM_HEX + 1];
    if (journal_claim_key(key, stored) < 0 || c == NULL || c->seq == 0 ||
        journal_node_check(c->node) < 0 || journal_name_check(c->destination) < 0)
        return FERRY_EINVAL;
    return j->ops->claim_put != NULL ? j->ops->claim_put(j, stored, c) : 0;
}

int journal_claim_drop(struct journal *j, const char *key)
{
    char stored[JOURNAL_CLAIM_HEX + 1];
    if (journal_claim_key(key, stored) < 0)
        return FERRY_EINVAL;
    return j->ops->claim_drop != NULL ? j->ops->claim_drop(j, stored) : 0;
}

int journal_claim_scan(struct journal *j,
                       int (*cb)(const char *key, const struct journal_claim *c, void *arg),
                       void *arg)
{
    return j->ops->claim_scan != NULL ? j->ops->claim_scan(j, cb, arg) : 0;
}

/*
 * A blob hint's stored keys, in the claims' form: where the blob landed at
 * `registry` is that of "registry\ndigest", the claim of its upload that of
 * the digest alone (no newline: never the other). `registry` NULL: the claim's.
 */
static int journal_blob_key(const char *registry, const char *digest,
                            char out[JOURNAL_CLAIM_HEX + 1])
{
    if (digest == NULL || !digest_valid(digest))
        return FERRY_EINVAL;
    if (registry == NULL)
        return journal_claim_key(digest, out);
    if (journal_check_string(registry, "registry", true, JOURNAL_STRING_MAX, NULL) < 0)
        return FERRY_EINVAL;
    char *key = xasprintf("%s\n%s", registry, digest);
    int rc = journal_claim_key(key, out);
    free(key);
    return rc;
}

static bool journal_blob_repo_ok(const char *repo)
{
    return repo != NULL && strnlen(repo, JOURNAL_BLOB_REPO_MAX + 1) <= JOURNAL_BLOB_REPO_MAX &&
           reference_repository_valid(repo);
}

int journal_blob_claim(struct journal *j, const char *registry, const char *digest,
                       const char *node, const char *repo, uint64_t ttl_ms,
                       struct journal_blob_hint *out)
{
    char landed[JOURNAL_CLAIM_HEX + 1], claim[JOURNAL_CLAIM_HEX + 1];
    memset(out, 0, sizeof(*out));
    if (journal_blob_key(registry, digest, landed) < 0 ||
        journal_blob_key(NULL, digest, claim) < 0 || journal_node_check(node) < 0 ||
        !journal_blob_repo_ok(repo) || ttl_ms == 0)
        return FERRY_EINVAL;
    return j->ops->blob_claim != NULL
               ? j->ops->blob_claim(j, landed, claim, node, repo, ttl_ms, out)
               : -ENOTSUP;
}

int journal_blob_landed(struct journal *j, const char *registry, const char *digest,
                        const char *repo)
{
    char key[JOURNAL_CLAIM_HEX + 1];
    if (journal_blob_key(registry, digest, key) < 0 || !journal_blob_repo_ok(repo))
        return FERRY_EINVAL;
    return j->ops->blob_landed != NULL ? j->ops->blob_landed(j, key, repo) : -ENOTSUP;
}

int journal_blob_unclaim(struct journal *j, const char *digest, const char *node)
{
    char key[JOURNAL_CLAIM_HEX + 1];
    if (journal_blob_key(NULL, digest, key) < 0 || journal_node_check(node) < 0)
        return FERRY_EINVAL;
    return j->ops->blob_unclaim != NULL ? j->ops->blob_unclaim(j, key, node) : -ENOTSUP;
}

void journal_blob_hint_free(struct journal_blob_hint *h)
{
    if (h == NULL)
        return;
    free(h->node);
    free(h->repo);
    h->node = NULL;
    h->repo = NULL;
}
