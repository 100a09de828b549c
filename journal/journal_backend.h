/*
 * journal_backend.h: the one interface every journal backend implements;
 * not part of the module's interface (journal.h is, and does not say which
 * backend answers).
 *
 * Two backends (DESIGN.md, "Running as a cluster"):
 *
 *   journal_rdb_*   one node: every record in an embedded RocksDB
 *                   (journal.c and the files journal_int.h lists)
 *   (cluster)       N nodes: entries in a NATS JetStream stream, the
 *                   replication state in its key-value buckets, what is a
 *                   node's own (poll memos, cursors) in a local RocksDB one
 *
 * journal_api.c turns every call of journal.h into a call through the
 * journal's table below. A backend embeds `struct journal` as the first
 * member of its own struct and finds itself from it.
 */
#ifndef FERRY_JOURNAL_BACKEND_H
#define FERRY_JOURNAL_BACKEND_H

#include "journal/journal.h"

struct journal_ops;

/* What every journal is first; the rest is its backend's. */
struct journal {
    const struct journal_ops *ops;
};

/* The calls of journal.h that a backend answers, with the same contracts. */
struct journal_ops {
    const char *name; /* "rocksdb", for logs and status */
    void (*close)(struct journal *j);

    int (*append)(struct journal *j, const struct journal_event *events, size_t n, uint64_t *seqs,
                  char **err);
    uint64_t (*last_seq)(struct journal *j);
    int (*get)(struct journal *j, uint64_t seq, struct journal_entry *out);
    int (*scan)(struct journal *j, uint64_t after, size_t limit,
                int (*cb)(const struct journal_entry *e, void *arg), void *arg);
    int (*entry_set_ignored)(struct journal *j, uint64_t seq, const char *reason);
    int (*retain)(struct journal *j, uint64_t max_age_ms, int64_t now_unix_ms, uint64_t *deleted);
    int (*get_stats)(struct journal *j, struct journal_stats *out);

    int (*cursor_get)(struct journal *j, const char *name, uint64_t *seq);
    int (*cursor_find)(struct journal *j, const char *name, uint64_t *seq);
    int (*cursor_set)(struct journal *j, const char *name, uint64_t seq);

    int (*tagstate_get)(struct journal *j, const char *source, const char *repository,
                        const char *tag, char **digest);
    int (*tagstate_put)(struct journal *j, const char *source, const char *repository,
                        const char *tag, const char *digest);
    int (*tagstate_scan)(struct journal *j, const char *source, const char *repository,
                         int (*cb)(const char *repository, const char *tag, const char *digest,
                                   void *arg),
                         void *arg);

    int (*fence_get)(struct journal *j, const char *destination, const char *repository,
                     const char *tag, uint64_t *seq);
    int (*fence_raise)(struct journal *j, const char *destination, const char *repository,
                       const char *tag, uint64_t seq);
    int (*fence_raise_unsynced)(struct journal *j, const char *destination, const char *repository,
                                const char *tag, uint64_t seq);

    int (*job_put)(struct journal *j, const struct journal_job *job);
    int (*job_get)(struct journal *j, const char *destination, const char *repository,
                   const char *digest, struct journal_job *out);
    int (*job_scan)(struct journal *j, int (*cb)(const struct journal_job *job, void *arg),
                    void *arg);
    int (*job_scan_open)(struct journal *j, int (*cb)(const struct journal_job *job, void *arg),
                         void *arg);
    int (*job_scan_in)(struct journal *j, const char *destination, const char *repository,
                       int (*cb)(const struct journal_job *job, void *arg), void *arg);

    int (*poll_memo_get)(struct journal *j, const char *source, const char *repository,
                         struct journal_poll_memo *out);
    int (*poll_memo_put)(struct journal *j, const char *source, const char *repository,
                         const struct journal_poll_memo *memo);
    int (*poll_memo_prune)(struct journal *j, const char *source, char *const *keep, size_t n_keep,
                           uint64_t *deleted);
    int (*poll_memo_clear)(struct journal *j);

    /* NULL: one node, which holds every lease. */
    int (*lease_take)(struct journal *j, const char *name, const char *holder, uint64_t ttl_ms,
                      char **other);
    int (*lease_give)(struct journal *j, const char *name, const char *holder);

    /* NULL: one node (journal_api.c reads and raises the fence instead). */
    int (*tag_hold)(struct journal *j, const char *destination, const char *repository,
                    const char *tag, const char *holder, uint64_t token, uint64_t ttl_ms,
                    uint64_t seq, uint64_t *fence, char **other);
    int (*tag_release)(struct journal *j, const char *destination, const char *repository,
                       const char *tag, const char *holder, uint64_t token, uint64_t raised);

    /* NULL: one node, which keeps no heartbeats. journal_api.c checks the arguments first. */
    int (*node_beat)(struct journal *j, const char *node, const char *info);
    int (*node_forget)(struct journal *j, const char *node);
    int (*node_scan)(struct journal *j,
                     int (*cb)(const char *node, int64_t beat_unix_ms, const char *info, void *arg),
                     void *arg);

    /* NULL: one node, which keeps no claims. The key is the stored one (journal_api.c digests). */
    int (*claim_put)(struct journal *j, const char *key, const struct journal_claim *c);
    int (*claim_drop)(struct journal *j, const char *key);
    int (*claim_scan)(struct journal *j,
                      int (*cb)(const char *key, const struct journal_claim *c, void *arg),
                      void *arg);

    /* NULL: one node, which keeps no blob hints. Keys are stored ones (journal_api.c):
     * `landed` the (registry, digest)'s, `claim` (and unclaim's) the digest's. */
    int (*blob_claim)(struct journal *j, const char *landed, const char *claim, const char *node,
                      const char *repo, uint64_t ttl_ms, struct journal_blob_hint *out);
    int (*blob_landed)(struct journal *j, const char *key, const char *repo);
    int (*blob_unclaim)(struct journal *j, const char *key, const char *node);

    /* NULL: no shared work (journal_work_open() gives NULL). */
    int (*work_open)(struct journal *j, const struct journal_work_options *o,
                     struct journal_work **out);
};

#endif
