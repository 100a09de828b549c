/*
 * journal_int.h: what the files of the journal module share; not part of its
 * interface (journal.h is, and knows nothing of RocksDB).
 *
 *   journal.c            open and close, the RocksDB store (families, errors,
 *                        lookups, iteration), the on-disk format, counters
 *   journal_entry.c      events and entries: checks, records, append with
 *                        dedup and tag state, get, scan
 *   journal_state.c      cursors, tag states, fences and job status
 *   journal_memo.c       what the poller remembers of each repository
 *   journal_retention.c  retention
 *
 * Records are protobuf-c messages of proto/ferry.proto.
 */
#ifndef FERRY_JOURNAL_INT_H
#define FERRY_JOURNAL_INT_H

#include "common/errors.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.pb-c.h"
#include "journal/journal.h"
#include "journal/journal_backend.h"

#define JOURNAL_EVENT_ID_MAX 512
#define JOURNAL_STRING_MAX   4096
/* Longest reason journal_entry_set_ignored() keeps. */
#define JOURNAL_IGNORED_MAX 1024
/* A seq as a key or value: 8 bytes, big-endian, so that keys sort as seqs do. */
#define JOURNAL_KEY_LEN 8
/* Retention and the format upgrade write in batches of this many entries, so memory stays bounded.
 */
#define JOURNAL_WRITE_CHUNK 1024

enum journal_cf {
    JOURNAL_CF_DEFAULT,
    JOURNAL_CF_ENTRIES,
    JOURNAL_CF_DEDUP,
    JOURNAL_CF_TAGSTATE,
    JOURNAL_CF_CURSORS,
    JOURNAL_CF_FENCES,
    JOURNAL_CF_JOBS,
    JOURNAL_CF_OPEN_JOBS, /* the keys of JOBS whose job has not settled (format 4) */
    JOURNAL_CF_POLL_MEMOS,
    JOURNAL_CF_COUNT,
};

/* The RocksDB backend's journal. */
struct journal_rdb {
    struct journal base; /* first: journal_rdb_of() */
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_block_based_table_options_t *table; /* its block cache, below */
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *write_synced;
    rocksdb_writeoptions_t *write_unsynced;
    rocksdb_readoptions_t *read;
    /* NULL only in a read-only journal whose database lacks that family. */
    rocksdb_column_family_handle_t *cf[JOURNAL_CF_COUNT];
    /* Families someone else added; opened because RocksDB insists, never used. */
    rocksdb_column_family_handle_t **other_cf;
    size_t n_other_cf;
    char *dir;
    long format; /* the on-disk format (journal.c); counters from 4 on */
    bool read_only;
    bool locks_ready; /* both mutexes below were initialised */
    /*
     * Serialises appends, so that two threads can never hand out one seq
     * twice. The other writes (cursors, tag states, job status, poll memos)
     * touch records no append writes, and RocksDB serialises writes itself;
     * last_seq is atomic.
     */
    pthread_mutex_t append_lock;
    _Atomic uint64_t last_seq;
    /*
     * Serialises fence raises, whose read-compare-write must not interleave.
     * A lock of its own, so that a raise never waits for a group commit.
     */
    pthread_mutex_t fence_lock;
};

/* The RocksDB journal a `struct journal` of journal_rdb_ops is; NULL for NULL. */
static inline struct journal_rdb *journal_rdb_of(struct journal *j)
{
    return (struct journal_rdb *)j;
}

/* The RocksDB backend's answers to journal.h (journal_backend.h): one per call, same contract. */
extern const struct journal_ops journal_rdb_ops;

void journal_rdb_close(struct journal *jn);
int journal_rdb_append(struct journal *jn, const struct journal_event *events, size_t n,
                       uint64_t *seqs, char **err);
uint64_t journal_rdb_last_seq(struct journal *jn);
int journal_rdb_get(struct journal *jn, uint64_t seq, struct journal_entry *out);
int journal_rdb_scan(struct journal *jn, uint64_t after, size_t limit,
                     int (*cb)(const struct journal_entry *e, void *arg), void *arg);
int journal_rdb_entry_set_ignored(struct journal *jn, uint64_t seq, const char *reason);
int journal_rdb_retain(struct journal *jn, uint64_t max_age_ms, int64_t now_unix_ms,
                       uint64_t *deleted);
int journal_rdb_get_stats(struct journal *jn, struct journal_stats *out);
int journal_rdb_cursor_get(struct journal *jn, const char *name, uint64_t *seq);
int journal_rdb_cursor_find(struct journal *jn, const char *name, uint64_t *seq);
int journal_rdb_cursor_set(struct journal *jn, const char *name, uint64_t seq);
int journal_rdb_tagstate_get(struct journal *jn, const char *source, const char *repository,
                             const char *tag, char **digest);
int journal_rdb_tagstate_put(struct journal *jn, const char *source, const char *repository,
                             const char *tag, const char *digest);
int journal_rdb_tagstate_scan(struct journal *jn, const char *source, const char *repository,
                              int (*cb)(const char *repository, const char *tag, const char *digest,
                                        void *arg),
                              void *arg);
int journal_rdb_fence_get(struct journal *jn, const char *destination, const char *repository,
                          const char *tag, uint64_t *seq);
int journal_rdb_fence_raise(struct journal *jn, const char *destination, const char *repository,
                            const char *tag, uint64_t seq);
int journal_rdb_fence_raise_unsynced(struct journal *jn, const char *destination,
                                     const char *repository, const char *tag, uint64_t seq);
int journal_rdb_job_put(struct journal *jn, const struct journal_job *job);
int journal_rdb_job_get(struct journal *jn, const char *destination, const char *repository,
                        const char *digest, struct journal_job *out);
int journal_rdb_job_scan(struct journal *jn, int (*cb)(const struct journal_job *job, void *arg),
                         void *arg);
int journal_rdb_job_scan_open(struct journal *jn,
                              int (*cb)(const struct journal_job *job, void *arg), void *arg);
int journal_rdb_job_scan_in(struct journal *jn, const char *destination, const char *repository,
                            int (*cb)(const struct journal_job *job, void *arg), void *arg);
int journal_rdb_poll_memo_get(struct journal *jn, const char *source, const char *repository,
                              struct journal_poll_memo *out);
int journal_rdb_poll_memo_put(struct journal *jn, const char *source, const char *repository,
                              const struct journal_poll_memo *memo);
int journal_rdb_poll_memo_prune(struct journal *jn, const char *source, char *const *keep,
                                size_t n_keep, uint64_t *deleted);
int journal_rdb_poll_memo_clear(struct journal *jn);

/* protobuf-c allocates through Ferry's family, so NULL from unpack means malformed. */
extern ProtobufCAllocator journal_pb_allocator;

/*
 * The key, in the default family, of the newest seq ever assigned: written
 * in every append batch, read back at open.
 */
#define JOURNAL_LAST_SEQ_KEY     "last_seq"
#define JOURNAL_LAST_SEQ_KEY_LEN (sizeof(JOURNAL_LAST_SEQ_KEY) - 1)

/*
 * The counters `ferry journal stats` reads instead of a scan, in the default
 * family (format 4): 8-byte little-endian numbers kept by RocksDB's uint64add
 * merge operator. Every append batch adds what it appended and every
 * retention batch takes away what it deleted, in the batch that does it, so
 * a counter is exactly as durable as the records it counts.
 */
enum journal_counter {
    JOURNAL_COUNT_ENTRIES,
    JOURNAL_COUNT_DEDUP,
    JOURNAL_COUNT_N,
};

/**
 * Format 4: index the jobs that have not settled (PENDING, IN_PROGRESS,
 * FAILED) from the job records, into `batch`.
 */
FERRY_MUST_CHECK int journal_open_jobs_build(struct journal_rdb *j, rocksdb_writebatch_t *batch);

/** Add `delta` (negative: take away) to a counter, in `batch`. */
void journal_count_add(struct journal_rdb *j, rocksdb_writebatch_t *batch, enum journal_counter c,
                       int64_t delta);

/* ---- The store (journal.c) ---- */

/** `seq` as an 8-byte big-endian key or value. */
void journal_key_encode(uint64_t seq, char key[JOURNAL_KEY_LEN]);

/** The seq of an 8-byte big-endian key or value. */
uint64_t journal_key_decode(const char *key);

/**
 * Translate a RocksDB error string at the module edge: the text is logged
 * (at debug, with `op`), the caller gets -EBUSY, -ENOENT, -ENOSPC, -EACCES,
 * -ENOTDIR or -EIO. Takes ownership of `errptr`.
 */
FERRY_MUST_CHECK int journal_rocksdb_error(const struct journal_rdb *j, const char *op,
                                           char *errptr);

/** Replace *err (when `err` is not NULL) with a fresh message. */
void journal_set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Look `key` up in family `cf`: 0 and *value (free with rocksdb_free) when
 * found, FERRY_ENOTFOUND when absent (or the family does not exist in an
 * older, read-only journal), or the translated RocksDB error.
 */
FERRY_MUST_CHECK int journal_cf_get(struct journal_rdb *j, enum journal_cf cf, const char *key,
                                    size_t key_len, const char *what, char **value, size_t *len);

/** A seq stored as an 8-byte value under `key` (cursors, fences): 0 when absent. */
FERRY_MUST_CHECK int journal_read_seq(struct journal_rdb *j, enum journal_cf cf, const char *key,
                                      size_t key_len, const char *what, uint64_t *seq);

/**
 * Visits one record of journal_iterate(): 0 to go on, 1 to stop, or a
 * negative code, which ends the iteration and is returned.
 */
typedef int (*journal_visit_fn)(const char *key, size_t key_len, const char *value,
                                size_t value_len, void *arg);

/**
 * Call `visit` for the records of family `cf` in key order: all of them when
 * `seek` is NULL; else from the first key at or after `seek` (`seek_len`
 * bytes), and with `prefix` only while keys start with it. Returns 0 after
 * the last record or a stop, `visit`'s negative code, or the translated
 * RocksDB error (`what` names the operation in the log). A family the
 * journal lacks has no records.
 */
FERRY_MUST_CHECK int journal_iterate(struct journal_rdb *j, enum journal_cf cf, const char *seek,
                                     size_t seek_len, bool prefix, const char *what,
                                     journal_visit_fn visit, void *arg);

/** Take `lock`; a lock that cannot be taken is a broken process, which aborts. */
void journal_lock(pthread_mutex_t *lock);

/** Release `lock` taken by journal_lock(); as journal_lock() on failure. */
void journal_unlock(pthread_mutex_t *lock);

/* ---- Names and keys (journal_entry.c, journal_state.c) ---- */

/** A string field: `required` ones must be non-empty; every one is capped at `max`. */
FERRY_MUST_CHECK int journal_check_string(const char *s, const char *name, bool required,
                                          size_t max, char **err);

/** A registry's or node's name: 1 to JOURNAL_NODE_MAX of [A-Za-z0-9_.-]; 0 or FERRY_EINVAL. */
FERRY_MUST_CHECK int journal_name_check(const char *name);

/**
 * A node's name (journal.h, JOURNAL_NODE_MAX): 0, or FERRY_EINVAL. It is a
 * key of the cluster's nodes bucket as it is, so it must be one token of a
 * NATS subject or tokens joined by single dots.
 */
FERRY_MUST_CHECK int journal_node_check(const char *node);

/** True for a string that is there and not empty. */
bool journal_present(const char *s);

/** A decoded optional string: absent (empty) becomes NULL, else a fresh copy. */
char *journal_optional(const char *s);

/** `s`, or "" for NULL: protobuf-c's strings are never NULL. */
const char *journal_or_empty(const char *s);

/**
 * The dedup key of an event: "source\nid". An event id is unique within its
 * source only, and a source name never holds a newline. The caller frees it.
 */
char *journal_dedup_key(const char *source, const char *event_id);

/**
 * Keys made of three names are "first\0second\0third": 0 and a fresh *key,
 * or FERRY_EINVAL when a name is empty or longer than JOURNAL_STRING_MAX.
 */
FERRY_MUST_CHECK int journal_tuple_key(const char *first, const char *second, const char *third,
                                       char **key, size_t *key_len);

/**
 * The prefix of the keys of `first` ("first\0"), or of `first` and `second`
 * ("first\0second\0") when `second` is not NULL: the NULs are part of it.
 * The caller frees it.
 */
char *journal_tuple_prefix(const char *first, const char *second, size_t *len);

/* ---- Entries (journal_entry.c) ---- */

/**
 * Decode one stored entry and check it as strictly as an appended event, so
 * that nothing downstream ever sees a record append would have refused. On
 * failure (FERRY_EPARSE) *why names the problem and `out` is untouched.
 */
FERRY_MUST_CHECK int journal_entry_decode(const char *key, size_t key_len, const char *value,
                                          size_t value_len, struct journal_entry *out,
                                          const char **why);

/**
 * Decode a packed Ferry__JournalEntry as entry `seq`, checked as
 * journal_entry_decode() checks: the part both backends share. The record's
 * own seq must be `seq` when `has_seq` (RocksDB writes it), else 0 (a
 * stream assigns the seq after the record is packed).
 */
FERRY_MUST_CHECK int journal_entry_from_record(const char *value, size_t value_len, uint64_t seq,
                                               bool has_seq, struct journal_entry *out,
                                               const char **why);

/**
 * journal_append()'s arguments, as both backends check them: events and
 * seqs given (seqs zeroed), every event valid. 0, or FERRY_EINVAL with *err.
 */
FERRY_MUST_CHECK int journal_append_args_check(const struct journal_event *events, size_t n,
                                               uint64_t *seqs, char **err);

/**
 * Pack event `e` as entry `seq` (0: the seq is not known yet, a stream
 * assigns it) into *buf, grown as needed (*cap its size); returns the length.
 */
size_t journal_entry_pack(const struct journal_event *e, uint64_t seq, int64_t received_unix_ms,
                          uint8_t **buf, size_t *cap);

/* A tag state one append batch has set, for the events after it in the batch. */
struct journal_tag_pending;

/**
 * Record in `batch` (and in `pending`, unless NULL) what an appended entry
 * says of its tag, whose key `key` (of journal_tuple_key()) this takes over.
 */
void journal_tag_apply(struct journal_rdb *j, rocksdb_writebatch_t *batch,
                       struct journal_tag_pending **pending, char *key, size_t key_len,
                       enum journal_action action, const char *digest);

/** Why an entry changed nothing, as both backends keep it: one line, capped. Caller frees. */
char *journal_ignored_line(const char *reason);

/* ---- Job status (journal_state.c), for both backends ---- */

/** PENDING, IN_PROGRESS and FAILED: a job that has not settled. */
bool journal_job_is_open(enum journal_job_state s);

/** A job as a packed Ferry__JobStatus (*size bytes; caller frees), or NULL for a bad job. */
uint8_t *journal_job_pack(const struct journal_job *job, size_t *size);

/**
 * Decode one stored job status and check it as strictly as put checks a
 * job, and against its key (of journal_tuple_key()). On failure
 * (FERRY_EPARSE) *why names the problem and `out` is untouched.
 */
FERRY_MUST_CHECK int journal_job_decode(const char *key, size_t key_len, const char *value,
                                        size_t value_len, struct journal_job *out,
                                        const char **why);

/* ---- The cluster's backend (journal_js.c) ---- */

extern const struct journal_ops journal_js_ops;

/**
 * The messages a cluster journal's connection has sent (its requests and
 * publishes, the servers' flow-control answers too): how the tests count
 * what an operation costs the servers. FERRY_EINVAL for a RocksDB journal.
 */
FERRY_MUST_CHECK int journal_js_requests(struct journal *j, uint64_t *n);

/* ---- Tag states (journal_state.c) ---- */

/** A stored digest: non-empty, capped, no NUL. Returns a fresh string, or NULL for a corrupt one.
 */
char *journal_tagstate_digest(const char *value, size_t len);

#endif
