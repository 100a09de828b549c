/*
 * journal: Ferry's durable, deduplicated, seq-numbered record of every
 * manifest-level change in the source registries (DESIGN.md §1).
 *
 * A RocksDB database under a directory, with column families for the entries
 * (key: big-endian seq), the dedup keys ((source, event id) -> seq), the
 * latest journaled value of every tag ((source, repo, tag) -> digest) and named cursors. Entries
 * are protobuf-c Ferry__JournalEntry records (proto/ferry.proto).
 *
 * Every call below goes through the journal's backend (journal_backend.h):
 * journal_open() gives the one-node RocksDB journal described here, and no
 * caller needs to know which backend answers.
 *
 * The journal knows nothing of registries, HTTP or the engine. Functions are
 * synchronous and may run on a worker thread (the committer runs appends
 * off the loop), but no two calls on one journal may run at the same time
 * unless stated.
 */
#ifndef FERRY_JOURNAL_H
#define FERRY_JOURNAL_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum journal_action {
    JOURNAL_PUSH = 1,
    JOURNAL_DELETE = 2,
};

/* A change as ingest or the poller hands it over, before it has a seq. */
struct journal_event {
    enum journal_action action;
    const char *source;     /* registry name from the config; required */
    const char *repository; /* required */
    const char *digest;     /* "sha256:<hex>"; NULL for a tag delete */
    const char *tag;        /* NULL when pushed by digest */
    const char *media_type; /* NULL when unknown */
    const char *event_id;   /* unique within its source; required, at most 512 bytes */
    int64_t event_unix_ms;  /* the registry's timestamp, 0 when unknown */
    /*
     * An observation of the source (the poller's, or a job's look at a tag):
     * appended only when it differs from the latest journaled value of
     * (source, repository, tag) — a push naming another digest, or a delete
     * of a tag that has one — so one observation makes one entry. Needs a tag.
     */
    bool if_changed;
};

/* A stored entry; strings are owned by the entry (journal_entry_release). */
struct journal_entry {
    uint64_t seq;
    enum journal_action action;
    char *source;
    char *repository;
    char *digest;     /* NULL when absent */
    char *tag;        /* NULL when absent */
    char *media_type; /* NULL when absent */
    char *event_id;
    int64_t received_unix_ms;
    int64_t event_unix_ms;
    char *ignored; /* why it changed nothing (the source disagreed); NULL when not ignored */
};

struct journal_options {
    bool read_only; /* open while another process holds it (ferry journal ls) */
};

struct journal_stats {
    uint64_t entries;   /* entries held */
    uint64_t first_seq; /* 0 when empty */
    uint64_t last_seq;  /* 0 when empty */
    uint64_t dedup_keys;
    uint64_t table_bytes; /* the tables on disk, every family */
    uint64_t wal_bytes;   /* the write-ahead log on disk */
};

struct journal;

/**
 * Open (creating unless read-only) the journal in `dir`. Opened read-write,
 * an existing journal is made private first (the directory 0700, its files
 * without group or other access; a warning says when that changed
 * anything). Returns 0 and sets *out, or a negative code with *err (one
 * line, caller frees): -EBUSY when
 * another process holds it read-write, FERRY_EPARSE when it holds records
 * that do not decode, -EIO for other RocksDB failures.
 */
FERRY_MUST_CHECK int journal_open(const char *dir, const struct journal_options *opts,
                                  struct journal **out, char **err);

/*
 * A journal shared by the nodes of a cluster (DESIGN.md, "Running as a
 * cluster"): the entries are a NATS JetStream stream (a tag's state is the
 * last entry on its subject), fences and leases live on sharded streams,
 * job status and the nodes' heartbeats in key-value buckets; cursors and
 * poll memos stay in the node's own RocksDB journal. Strings are borrowed
 * for the call.
 *
 * What differs from one node, for callers that look closely:
 * - journal_append(): an event id is a duplicate only inside the duplicate
 *   window (beyond it, the entry's job asks the source, as for any entry);
 *   a failed batch may have published the events before the failure (a
 *   retry is de-duplicated); seqs are increasing, not consecutive (other
 *   nodes append between them).
 * - journal_tagstate_put(): -ENOTSUP (a state is always an entry's).
 * - journal_job_scan*(): in no particular order.
 * - journal_retain(): nothing to do; the stream keeps a bounded history of
 *   each tag and drops older entries of it.
 */
struct journal_cluster_options {
    const char *const *servers; /* nats://host:port URLs; at least one */
    size_t n_servers;
    const char *user, *password;      /* NULL: none (secrets: never logged) */
    const char *token;                /* NULL: none (a secret) */
    const char *creds_file;           /* a NATS .creds file; NULL: none */
    const char *ca_file;              /* PEM roots for TLS; NULL: the system's */
    const char *cert_file, *key_file; /* a client certificate; NULL: none */
    bool tls;                         /* require TLS (implied by ca_file or cert_file) */
    const char *name;                 /* this node's name, as the servers see it */
    const char *stream;               /* the journal's stream, "FERRY_JOURNAL" */
    const char *bucket_prefix;        /* the buckets' names start with it, "ferry" */
    int replicas;                     /* of the stream and every bucket, 1..5 */
    uint64_t duplicate_window_ms;     /* the stream's de-duplication window, 1 s to 7 days */
    uint64_t timeout_ms;              /* of each request to the servers */
};

/**
 * Open the cluster's journal: connect, then find (or, the first node to come,
 * create) the stream and the buckets. `local` (a journal_open() one) keeps
 * this node's cursors and poll memos; the cluster journal owns it from now
 * on, also when this fails. Returns 0 and *out, or a negative code with *err
 * (one line, no secret): FERRY_EINVAL for bad options, -ECONNREFUSED when no
 * server answers, -EIO for a refusal by the servers.
 */
FERRY_MUST_CHECK int journal_open_cluster(const struct journal_cluster_options *opts,
                                          struct journal *local, struct journal **out, char **err);

/* ---- Shared work: the consumer a cluster's nodes take their entries from ---- */

/*
 * In a cluster, entries do not come to a node's engine in seq order from a
 * cursor of its own: every node takes them from one consumer, each entry goes
 * to one node at a time, and comes again (to any node) when the node that
 * took it does not settle it within the ack wait, since it died. A node keeps
 * what it holds alive while it works on it. One node's journal has no shared
 * work (journal_work_open() gives NULL): its engine reads after its cursor.
 */
struct journal_work;

/* The shortest ack wait: a keep-alive goes every third of it, between fetches. */
#define JOURNAL_WORK_MIN_ACK_WAIT_MS 3000

struct journal_work_options {
    size_t capacity; /* entries held at once, taken or not yet (the engine's window) */
    /* Entries to take until journal_work_want() says otherwise (at most
     * `capacity` are held all the same). */
    size_t want;
    /* An entry neither settled nor kept alive for this long goes to another node. */
    uint64_t ack_wait_ms;
    void (*wake)(void *arg); /* entries are ready to take; called from another thread */
    void *arg;
};

/**
 * Open the journal's shared work: 0 and *out, or *out NULL (and 0) when the
 * journal has none (one node), or a negative code.
 */
FERRY_MUST_CHECK int journal_work_open(struct journal *j, const struct journal_work_options *o,
                                       struct journal_work **out);

/**
 * Give `cb` up to `max` of the entries that came (on the caller's thread,
 * the loop's); each stays held until journal_work_settle(), whatever `cb`
 * returns. An entry this node holds already that comes again is not given
 * twice; one that does not decode, or is not on its tag's subject, is
 * dropped for good and logged. Returns how many were given. NULL: none.
 */
size_t journal_work_take(struct journal_work *w, size_t max,
                         int (*cb)(const struct journal_entry *e, void *arg), void *arg);

/**
 * The caller would start the jobs of `n` more entries soon: the node takes
 * from the shared work only so many (besides those it holds), and leaves the
 * rest to the nodes that have room. Each entry taken is kept alive at the
 * servers until it is settled, and is the others' to wait for when this
 * node dies. Entries given by journal_work_take() count against it. From
 * the loop's thread; NULL is fine.
 */
void journal_work_want(struct journal_work *w, size_t n);

/** Entry `seq` is done with (every job of it settled): no node will get it again. */
void journal_work_settle(struct journal_work *w, uint64_t seq);

/**
 * Entries held (taken, not settled) and ready (came, not taken), and the
 * most this node had of both at once since it opened (`most` may be NULL).
 */
void journal_work_counts(struct journal_work *w, size_t *held, size_t *ready, size_t *most);

/**
 * Stop taking. With `give_back`, what this node held or had fetched goes to
 * the others at once (a clean stop, a reload); without, after the ack wait,
 * as when a node dies. Before journal_close() of its journal. NULL is fine.
 */
void journal_work_close(struct journal_work *w, bool give_back);

/* ---- Leases: one holder at a time among the nodes (the poller of a source) ---- */

/**
 * Take or renew the lease `name` for `holder` (this node's name) until
 * `ttl_ms` from now: 1 when `holder` has it, 0 when another holder has it and
 * it has not lapsed (*other, may be NULL, gets that holder; caller frees), or
 * a negative code. One node holds every lease (1). Expiry is each writer's
 * clock: nodes' clocks must agree to well under the TTL.
 */
FERRY_MUST_CHECK int journal_lease_take(struct journal *j, const char *name, const char *holder,
                                        uint64_t ttl_ms, char **other);

/** Give the lease back if `holder` has it (another takes it at once): 0, or a negative code. */
FERRY_MUST_CHECK int journal_lease_give(struct journal *j, const char *name, const char *holder);

/* ---- A destination tag's hold: its fence and its lease in one record ---- */

/**
 * Hold the tag (destination, repository, tag) for `holder` (this node's
 * name) until `ttl_ms` from now, for the job of entry `seq`: 1 with *fence
 * set to the tag's fence, 0 when another hold has it and it has not lapsed
 * (*other, may be NULL, gets its holder; caller frees), or a negative code.
 * `token` (not 0) names this hold: the same holder with another token (a
 * release still on the way, a node restarted under the name) is another
 * hold until it ends or lapses; the same token is this hold (a write whose
 * answer was lost, found again). The hold names `seq` as pending: if its
 * holder dies before journal_tag_release(), the next holder counts `seq`
 * as the fence (the tag may have moved to it). In a cluster, one
 * compare-and-set: the tag's fence and its hold are one record, so that
 * taking the hold reads the fence, and releasing it raises it. With one
 * node (RocksDB), it reads the fence and holds nothing (the engine's tag
 * gate is the hold).
 */
FERRY_MUST_CHECK int journal_tag_hold(struct journal *j, const char *destination,
                                      const char *repository, const char *tag, const char *holder,
                                      uint64_t token, uint64_t ttl_ms, uint64_t seq,
                                      uint64_t *fence, char **other);

/**
 * End the hold `token` of `holder`, raising the tag's fence to `raised` when
 * that is higher (0: the tag did not move). Nothing when the hold is not
 * that one any more (it lapsed, and its pending seq counted for the next
 * holder), or never was (a hold whose answer was lost). Returns 0 or a
 * negative code. With one node, a synced journal_fence_raise().
 */
FERRY_MUST_CHECK int journal_tag_release(struct journal *j, const char *destination,
                                         const char *repository, const char *tag,
                                         const char *holder, uint64_t token, uint64_t raised);

/* ---- Nodes: who is in the cluster, for liveness and status ---- */

/*
 * A cluster node's name, at most this long: letters, digits, '_', '-' and
 * '.', but neither first nor last nor twice in a row ('.' separates the
 * tokens of a NATS subject, and the name is one).
 */
#define JOURNAL_NODE_MAX 64
/* What a node says of itself with its heartbeat, at most this long. */
#define JOURNAL_NODE_INFO_MAX 16384
/* Nodes a scan gives at most (more is a misconfiguration: the rest are logged as skipped). */
#define JOURNAL_NODES_MAX 1024

/**
 * Node `node` is alive now; `info` (NUL-terminated, opaque to the journal: a
 * JSON object of its figures; may be "") is what it says of itself, and
 * replaces what its last beat said. Returns 0, or a negative code:
 * FERRY_EINVAL for a bad name, a NULL info or one longer than
 * JOURNAL_NODE_INFO_MAX (nothing written), or the servers' error. One node's
 * journal keeps nothing (0 for good arguments).
 */
FERRY_MUST_CHECK int journal_node_beat(struct journal *j, const char *node, const char *info);

/**
 * Node `node` left cleanly: forget it, leaving nothing behind (0 also when it
 * was not there), or a negative code (FERRY_EINVAL for a bad name). One
 * node: 0.
 */
FERRY_MUST_CHECK int journal_node_forget(struct journal *j, const char *node);

/**
 * Call `cb` for every node that beat within the cluster's memory of beats
 * (24 hours), at most JOURNAL_NODES_MAX of them, in no particular order,
 * with the time of its last beat (the writer's clock, unix ms) and its
 * info; the strings are lent for the call. `cb` returns nonzero to stop. A
 * beat that does not decode is skipped (one warning per scan says how many).
 * Returns 0 or a negative code. One node's journal never calls `cb` (0).
 */
FERRY_MUST_CHECK int journal_node_scan(struct journal *j,
                                       int (*cb)(const char *node, int64_t beat_unix_ms,
                                                 const char *info, void *arg),
                                       void *arg);

/* ---- Claims: a cluster node's waiting jobs, which another runs if it dies ---- */

/*
 * A job that waits (for its retry, or an open circuit) settles its shared
 * entry, so that the window goes on; its claim says which node will run it
 * and from which entry. When the node dies, another takes its claims up; a
 * node restarted under its name runs its own again. A claim is dropped when
 * its job ends. One node's journal keeps none (its parked cursor stands for
 * them).
 */
struct journal_claim {
    const char *destination; /* the registry's name in the config */
    uint64_t seq;            /* the entry the job runs from */
    const char *node;        /* the node that runs it */
};

/* What a claim's key may hold: the job's names and its seq. */
#define JOURNAL_CLAIM_KEY_MAX 8192
/* Claims a scan gives at most. */
#define JOURNAL_CLAIMS_MAX 1000000

/**
 * Claim the job `key` (its destination, repository, digest, tag and seq, as
 * the caller spells them; at most JOURNAL_CLAIM_KEY_MAX bytes) for `c`,
 * replacing any claim of that key. 0 or a negative code (FERRY_EINVAL for a
 * bad key, destination, node or seq 0). One node: 0, nothing kept.
 */
FERRY_MUST_CHECK int journal_claim_put(struct journal *j, const char *key,
                                       const struct journal_claim *c);

/** Drop the claim of `key` (0 also when there is none), or a negative code. One node: 0. */
FERRY_MUST_CHECK int journal_claim_drop(struct journal *j, const char *key);

/**
 * Call `cb` for every claim (at most JOURNAL_CLAIMS_MAX, in no order) with
 * its stored key (an opaque digest of the caller's key, to pass to
 * journal_claim_put() and journal_claim_drop()); strings are lent for the
 * call, `cb` returns nonzero to stop. A claim that does not decode is
 * skipped (one warning per scan). 0 or a negative code. One node: never
 * calls `cb` (0). In a cluster the scan is a watch, which the servers may
 * serve from a replica a moment behind: a claim put just before may show
 * its older value (a take-up then runs a job twice at most).
 */
FERRY_MUST_CHECK int
journal_claim_scan(struct journal *j,
                   int (*cb)(const char *key, const struct journal_claim *c, void *arg), void *arg);

/* ---- Blob hints: which node reads a blob for the cluster, and where it landed ---- */

/*
 * Each node knows what it put into each destination registry (its presence
 * cache) and what it is putting there now (its flights): on one node a blob
 * many images share is read from the source once and uploaded once per
 * registry, then mounted. In a cluster the nodes share a hint of the same:
 * which node claimed the blob's upload (it reads it from the source once,
 * for every registry that needs it of its jobs), and per registry, the
 * repository where it landed, for every other node to mount from. A hint is
 * an economy, never a truth: a mount from a repository that no longer holds
 * the blob turns into an upload, and whatever the hint says, the job checks
 * the source and the destination as it does without one. One node's
 * journal keeps none.
 */
enum journal_blob_state {
    JOURNAL_BLOB_MINE = 1, /* this node holds the claim: it uploads, then tells where */
    JOURNAL_BLOB_BUSY,     /* another node holds it until `until_unix_ms`: wait, or upload */
    JOURNAL_BLOB_AT,       /* it landed in `repo` of the registry: mount it from there */
};

struct journal_blob_hint {
    enum journal_blob_state state;
    char *node;            /* BUSY: the node holding the claim */
    char *repo;            /* AT: the repository holding it (BUSY: the claimer's first) */
    int64_t until_unix_ms; /* BUSY: when the claim lapses (the writer's clock) */
};

/* Longest repository name a hint holds (a repository name, reference_repository_valid()). */
#define JOURNAL_BLOB_REPO_MAX 1024

/**
 * Where is `digest` at `registry` (its host, as every node's config spells
 * it), or who uploads it: AT when it landed there; else BUSY when another
 * node holds the blob's claim and it has not lapsed; else MINE, the claim
 * now this node's (`node`, uploading into `repo`) for `ttl_ms` (renewed when
 * it was this node's already, as from before a restart). A hint that does
 * not decode counts as none. 0 with *out set (journal_blob_hint_free() it),
 * or a negative code: -ENOTSUP for one node, FERRY_EINVAL for bad
 * arguments, or the servers' error.
 */
FERRY_MUST_CHECK int journal_blob_claim(struct journal *j, const char *registry, const char *digest,
                                        const char *node, const char *repo, uint64_t ttl_ms,
                                        struct journal_blob_hint *out);

/** `digest` is in `repo` of `registry` now: every node finds it AT there. 0 or a negative code. */
FERRY_MUST_CHECK int journal_blob_landed(struct journal *j, const char *registry,
                                         const char *digest, const char *repo);

/**
 * `node` is done uploading `digest` (none of its uploads is under way): its
 * claim goes, 0 also when the claim is not its own any more, so that the
 * next node that needs the blob at a registry where it has not landed
 * claims it without waiting for the lapse.
 */
FERRY_MUST_CHECK int journal_blob_unclaim(struct journal *j, const char *digest, const char *node);

/** Free what a hint holds (not the struct); NULL is ignored. */
void journal_blob_hint_free(struct journal_blob_hint *h);

/** Close; NULL is ignored. */
void journal_close(struct journal *j);

/**
 * Release what the backends hold for the whole process (libnats' threads
 * and buffers, which outlive a closed connection until then): once, at
 * exit, after every journal is closed. Harmless when no cluster journal was
 * ever opened.
 */
void journal_process_exit(void);

/** Which backend answers (journal_backend.h): "rocksdb" or "jetstream"; for logs and status. */
const char *journal_backend_name(const struct journal *j);

/**
 * Append `n` events in one WriteBatch written with a synced WAL: an event
 * whose event_id the journal has seen (or that repeats an earlier one of
 * this batch), or an `if_changed` observation that changes nothing, is not
 * appended. Every appended event that names a tag updates the tag state
 * (journal_tagstate_get()) in the same batch: a push sets it to its digest, a
 * delete removes it. seqs[i] gets the seq assigned to events[i], or 0 when it
 * was not appended. Seqs are consecutive from
 * journal_last_seq() + 1 and survive restarts. Returns 0 once durable, or a
 * negative code (nothing of the batch written): FERRY_EINVAL for an event
 * missing a required field (with *err naming it), -EIO for RocksDB.
 */
FERRY_MUST_CHECK int journal_append(struct journal *j, const struct journal_event *events, size_t n,
                                    uint64_t *seqs, char **err);

/**
 * Check one event as journal_append() checks each of its events: 0, or
 * FERRY_EINVAL with *err (may be NULL; caller frees) naming the field. Needs
 * no journal, so a caller can refuse a bad event before queueing it with
 * others (the committer does).
 */
FERRY_MUST_CHECK int journal_event_validate(const struct journal_event *e, char **err);

/**
 * Free the strings of an event that owns them (webhook_parse()'s events, the
 * committer's copies; the struct declares them const for the callers that
 * only lend them) and zero it. NULL is fine.
 */
void journal_event_release(struct journal_event *e);

/** The newest seq, 0 when empty. Safe to call concurrently with journal_append(). */
uint64_t journal_last_seq(struct journal *j);

/** Read one entry; FERRY_ENOTFOUND when absent. Release `out` with journal_entry_release(). */
FERRY_MUST_CHECK int journal_get(struct journal *j, uint64_t seq, struct journal_entry *out);

/** Free an entry's strings. */
void journal_entry_release(struct journal_entry *e);

/**
 * Call `cb` for each entry with seq > `after` in seq order, at most `limit`
 * of them (0: all); `cb` returns nonzero to stop. Returns 0 or a negative code.
 */
FERRY_MUST_CHECK int journal_scan(struct journal *j, uint64_t after, size_t limit,
                                  int (*cb)(const struct journal_entry *e, void *arg), void *arg);

/** A named consumer's position; 0 when it has none. */
FERRY_MUST_CHECK int journal_cursor_get(struct journal *j, const char *name, uint64_t *seq);

/** As journal_cursor_get(), but FERRY_ENOTFOUND when the cursor was never set. */
FERRY_MUST_CHECK int journal_cursor_find(struct journal *j, const char *name, uint64_t *seq);

/**
 * Move a named cursor. Written to the WAL but not synced: a process crash
 * keeps it (the OS holds the write); a machine crash may take the cursor back
 * a little, and the consumer redoes those entries (replication is idempotent,
 * and retention never passes a cursor).
 */
FERRY_MUST_CHECK int journal_cursor_set(struct journal *j, const char *name, uint64_t seq);

/**
 * Mark entry `seq` as having changed nothing, with the reason (one line, at
 * most 1 KiB kept): the source disagreed with it. Written unsynced: a crash
 * may lose the mark, and the entry's job, run again, marks it again.
 * FERRY_ENOTFOUND when the entry is gone.
 */
FERRY_MUST_CHECK int journal_entry_set_ignored(struct journal *j, uint64_t seq, const char *reason);

/**
 * The latest journaled value of (source, repository, tag), whoever journaled
 * it (a webhook, the poller, a job's look at the source): 0 and *digest
 * (caller frees), or FERRY_ENOTFOUND when no entry named the tag or the
 * latest one deleted it. journal_append() keeps it.
 */
FERRY_MUST_CHECK int journal_tagstate_get(struct journal *j, const char *source,
                                          const char *repository, const char *tag, char **digest);

/**
 * Set (digest non-NULL) or remove (digest NULL) a tag state by hand, outside
 * any entry; for tests and repairs. Not synced.
 */
FERRY_MUST_CHECK int journal_tagstate_put(struct journal *j, const char *source,
                                          const char *repository, const char *tag,
                                          const char *digest);

/**
 * Call `cb(repository, tag, digest)` for every tag state of `source`, or of
 * its `repository` only when that is not NULL (the poller looks for tags
 * that disappeared from one repository). `cb` returns nonzero to stop.
 */
FERRY_MUST_CHECK int journal_tagstate_scan(
    struct journal *j, const char *source, const char *repository,
    int (*cb)(const char *repository, const char *tag, const char *digest, void *arg), void *arg);

/**
 * Retention: delete entries (and their dedup keys) whose seq is at or below
 * every cursor and that were received more than `max_age_ms` before
 * `now_unix_ms`, then compact that range away. With no cursor at all nothing
 * is deleted. *deleted (may be NULL) gets the count.
 */
FERRY_MUST_CHECK int journal_retain(struct journal *j, uint64_t max_age_ms, int64_t now_unix_ms,
                                    uint64_t *deleted);

/**
 * Counts for `ferry journal stats`: from maintained counters, not a scan
 * (but in an older journal opened read-only), and the bytes on disk.
 */
FERRY_MUST_CHECK int journal_get_stats(struct journal *j, struct journal_stats *out);

/* ---- replication state (DESIGN.md §3, §5): fences and job status ---- */

/**
 * The fence of (destination, repository, tag): the seq of the newest entry
 * that moved that tag there. *seq is 0 when there is none. Returns 0 or a
 * negative code.
 */
FERRY_MUST_CHECK int journal_fence_get(struct journal *j, const char *destination,
                                       const char *repository, const char *tag, uint64_t *seq);

/**
 * Raise the fence to `seq` when `seq` is higher than the fence, durably
 * (synced) and atomically with respect to other raises of the same journal.
 * Returns 1 when raised (the caller may move the tag), 0 when the fence is
 * already at or above `seq` (the caller must not: a newer entry moved it),
 * or a negative code. Thread-safe. In a cluster, a fence found at exactly
 * `seq` answers 1: that is this entry's own raise, whose answer was lost and
 * whose write the servers retried (the engine raises only above the fence
 * it read).
 */
FERRY_MUST_CHECK int journal_fence_raise(struct journal *j, const char *destination,
                                         const char *repository, const char *tag, uint64_t seq);

/**
 * journal_fence_raise(), not synced: for a fence no PUT waits for (the tag
 * is in place already). A crash may lose it; an older entry's job then asks
 * the source before it moves the tag, as it would have anyway.
 */
FERRY_MUST_CHECK int journal_fence_raise_unsynced(struct journal *j, const char *destination,
                                                  const char *repository, const char *tag,
                                                  uint64_t seq);

enum journal_job_state {
    JOURNAL_JOB_PENDING = 1,
    JOURNAL_JOB_IN_PROGRESS = 2,
    JOURNAL_JOB_COMPLETE = 3,
    JOURNAL_JOB_FAILED = 4,
    JOURNAL_JOB_SUPERSEDED = 5,
};

/* Where one (destination, repository, digest) stands; a Ferry__JobStatus record. */
struct journal_job {
    char *destination;
    char *repository; /* the destination repository */
    char *digest;
    enum journal_job_state state;
    uint32_t attempts;
    char *last_error; /* NULL when none */
    uint64_t bytes;
    uint64_t seq; /* newest journal entry this job serves */
    int64_t created_unix_ms;
    int64_t updated_unix_ms;
    int64_t completed_unix_ms;
    char **tags; /* tags the job moves once the manifest is in */
    size_t n_tags;
    char *node; /* the cluster node working on it (NULL: one node, or not said) */
};

/** "PENDING", "IN_PROGRESS", "COMPLETE", "FAILED", "SUPERSEDED" (else "UNKNOWN"). */
const char *journal_job_state_name(enum journal_job_state s);

/** Write (create or replace) a job's status; not synced (a lost update is redone). */
FERRY_MUST_CHECK int journal_job_put(struct journal *j, const struct journal_job *job);

/** Read a job's status; FERRY_ENOTFOUND when there is none. Release with journal_job_release(). */
FERRY_MUST_CHECK int journal_job_get(struct journal *j, const char *destination,
                                     const char *repository, const char *digest,
                                     struct journal_job *out);

/**
 * Call `cb` for every job status (ordered by destination, repository,
 * digest); `cb` returns nonzero to stop.
 */
FERRY_MUST_CHECK int
journal_job_scan(struct journal *j, int (*cb)(const struct journal_job *job, void *arg), void *arg);

/**
 * As journal_job_scan(), over the jobs that have not settled (PENDING,
 * IN_PROGRESS or FAILED) only: an index kept with every journal_job_put(),
 * so the cost follows the open jobs, not every job the journal ever ran.
 */
FERRY_MUST_CHECK int journal_job_scan_open(struct journal *j,
                                           int (*cb)(const struct journal_job *job, void *arg),
                                           void *arg);

/** Free a job's strings. */
void journal_job_release(struct journal_job *job);

/**
 * As journal_job_scan(), over the jobs of `destination` only (NULL: all),
 * and of its `repository` only when that is not NULL.
 */
FERRY_MUST_CHECK int journal_job_scan_in(struct journal *j, const char *destination,
                                         const char *repository,
                                         int (*cb)(const struct journal_job *job, void *arg),
                                         void *arg);

/* ---- What the poller remembers of a repository between rounds (journal_memo.c) ---- */

struct journal_poll_memo {
    char *etag;            /* the ETag of its last clean full listing; NULL when none */
    uint64_t listed_round; /* the poller's round that made that listing */
    bool sweep_owed;       /* its last sweep did not look at everything */
};

/**
 * The memo of (source, repository): 0 and *out (release it), FERRY_ENOTFOUND
 * when there is none, FERRY_EINVAL for a bad name, FERRY_EPARSE for a record
 * that does not decode, or the RocksDB error. Kept in the journal rather
 * than in memory, so that what the poller carries from one round to the
 * next does not grow with the catalog.
 */
FERRY_MUST_CHECK int journal_poll_memo_get(struct journal *j, const char *source,
                                           const char *repository, struct journal_poll_memo *out);

/**
 * Write the memo of (source, repository), or delete it when `memo` is NULL.
 * Not synced: a memo lost in a crash costs one full listing.
 */
FERRY_MUST_CHECK int journal_poll_memo_put(struct journal *j, const char *source,
                                           const char *repository,
                                           const struct journal_poll_memo *memo);

/**
 * Delete the memos of `source` whose repository is not among the `n_keep`
 * names of `keep` (any order; n_keep 0: every memo of the source). *deleted
 * (may be NULL) gets the count. Costs one walk over the source's memos.
 */
FERRY_MUST_CHECK int journal_poll_memo_prune(struct journal *j, const char *source,
                                             char *const *keep, size_t n_keep, uint64_t *deleted);

/**
 * Delete every memo, of every source (those no longer in the config too):
 * one range delete, whatever the number of memos.
 */
FERRY_MUST_CHECK int journal_poll_memo_clear(struct journal *j);

/** Free a memo's strings; NULL is ignored. */
void journal_poll_memo_release(struct journal_poll_memo *memo);

#endif
