/*
 * engine_int.h: what the files of the engine share (not for other modules).
 *
 *   engine.c           lifecycle, the cursor, stats and counters
 *   engine_dispatch.c  journal entries into jobs, the window, starting jobs
 *   engine_jobs.c      status records, parked jobs, retries, the circuits
 *   engine_truth.c     the source is the truth: fences, the tag step, delete jobs
 *   engine_gates.c     the gates a job's last steps run behind
 *   engine_flights.c   single-flight blobs and links per destination registry
 *   engine_hints.c     a cluster's blob hints: one node uploads, the others mount
 *
 * The decisions the engine makes on plain data (fences, the tag step, the
 * circuit as reported, where a failed job waits, the parked cursor, the
 * window) are pure functions declared here, so that they are tested without
 * a loop or a registry.
 */
#ifndef FERRY_ENGINE_INT_H
#define FERRY_ENGINE_INT_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>
#include <uv.h>

#include "journal/journal.h"
#include "replication/clients.h"
#include "replication/records.h"
#include "replication/copy.h"
#include "replication/engine.h"
#include "replication/repo_hook.h"
#include "replication/scheduler.h"

/* ---- defaults ---- */

/* The journal cursor every entry at or below which is finished. */
#define ENGINE_CURSOR "engine"
/* The oldest entry a parked job serves, durable: a restart runs those jobs
 * again from there, and retention keeps their entries. */
#define ENGINE_PARKED_CURSOR "engine-parked"
/* The parked cursor follows the parked jobs at most this often. */
#define ENGINE_PARKED_CHECK_MS 1000
/* Jobs parked (waiting for a retry or an open circuit) held in memory at
 * most; past this the window stops taking entries, as it did before. The
 * lists of FAILED entries waiting for a registry to heal are capped alike. */
#define ENGINE_PARKED_MAX 200000
/* Jobs of one destination held in memory while its circuit is open (its
 * probes among them); past this a job that waits for the circuit is shelved:
 * its status record says PENDING, the parked cursor stays below it, and
 * only its entry's seq and time stay in memory (24 bytes, not the job's
 * kilobyte) until the circuit closes and the shelf drains back as room
 * allows. A destination down through a backfill of a million tags costs
 * 24 MiB, not a gigabyte. */
#define ENGINE_SHELF_RESIDENT 256
/* Shelved jobs per destination at most; past this they stay parked in memory. */
#define ENGINE_SHELF_MAX 1000000
/* Places a list of entries to run again starts with; it doubles when full. */
#define ENGINE_REQUEUE_INITIAL 16
/* Manifests and referrer lists cached per source registry. It serves the
 * jobs of one entry (one per destination), which run close together: 4 MiB
 * holds the manifests of thousands of entries; at 32 MiB a large catalog
 * filled it, and it was the largest thing in memory. */
#define ENGINE_CACHE_BYTES (4u * 1024 * 1024)
/* The jobs of one entry (one per destination) share the source's answer
 * about its tag this long: one HEAD per entry, not one per destination. */
#define ENGINE_CHECK_SHARE_MS 10000
/* SIGTERM: running jobs get this long to end on their own; then their
 * requests are cut and they stay PENDING for the next start. */
#define ENGINE_CLOSE_GRACE_MS 3000
/* While closing, how often the engine looks whether its jobs have ended. */
#define ENGINE_CLOSE_POLL_MS 50
/* Entries in the cursor's list, finished ones included, at most this many
 * windows: past that the jobs holding the oldest are parked. */
#define ENGINE_LIST_FACTOR 8
/* A source that cannot give what an entry names (a manifest or blob it no
 * longer has, or broken) gets this many attempts in all, not the
 * destination's: read-after-write lag at a source gets one more look. */
#define ENGINE_SOURCE_ATTEMPTS 2
/* Repositories remembered per destination registry; past this the set starts over. */
#define ENGINE_REPOS_MAX 100000
/* A cluster: how long a node holds a destination tag's lease at most (it
 * gives it back when its job ends); past this another node may move the
 * tag. Longer than a tag's check at the source and its PUT take. */
#define ENGINE_TAG_LEASE_MS (30 * 1000)
/* A job whose tag's lease another node holds tries again this soon. */
#define ENGINE_TAG_LEASE_WAIT_MS 1000
/* Blobs one job's copy moves at once. */
#define ENGINE_COPY_JOBS 4
/* The newest entries a coalesced job remembers, to mark them when it is ignored. */
#define ENGINE_JOB_SEQS_MAX 64
/* In a cluster a node takes entries until each destination taking jobs has
 * this many rounds of its concurrency running or queued (engine_work_demand()). */
#define ENGINE_WORK_ROUNDS 2
/* ... counting only the destinations that had a job queued within this long. */
#define ENGINE_WORK_ACTIVE_MS 10000

struct engine;
struct eng_job;
struct gate;

/* A tag of a source repository ("repo\ntag"), in a set. */
struct engine_tag_seen {
    char *key;
    UT_hash_handle hh;
};

/* ---- per destination registry ---- */

/*
 * A blob on its way into one destination registry, or known to be there:
 * single-flight per (registry, digest), so a layer shared by many images is
 * uploaded once and mounted into every other repository.
 */
struct blob_flight {
    char *digest;
    char *repo;   /* the repository being given it */
    bool claimed; /* a cluster: this node claimed the upload (engine_hints.c) */
    struct copy **waiters;
    size_t n_waiters;
    UT_hash_handle hh;
};

/* A repository a job of this run put an image into: it exists. */
struct repo_seen {
    char *name;
    UT_hash_handle hh;
};

/* A blob being linked into one repository (uploaded or mounted) right now. */
struct link_flight {
    char *key; /* "repo@digest" */
    int writers;
    struct copy **waiters; /* copies whose HEAD saw it: told when it is whole */
    size_t n_waiters;
    UT_hash_handle hh;
};

/* An entry to run again for one destination once what failed it heals. */
struct engine_requeue {
    uint64_t seq;
    size_t dst; /* the destination registry's index */
};

/* Entries waiting to run again, oldest first; at most ENGINE_PARKED_MAX. */
struct engine_requeue_list {
    struct engine_requeue *items;
    size_t n, cap;
};

/* A job shelved while its destination's circuit is open: its entry, to run again. */
struct engine_shelved {
    uint64_t seq;
    int64_t received_unix_ms; /* when its entry was journaled, for the oldest-job figure */
    bool retries_failed;      /* it ran again because it FAILED */
};

/* Shelved jobs of one destination, items[head..n) in order of seq. */
struct engine_shelf {
    struct engine_shelved *items;
    size_t head, n, cap;
};

struct eng_registry {
    const struct config_registry *cfg;
    struct blob_flight *flights; /* uploads and mounts in flight, by digest */
    struct link_flight *links;   /* by "repo@digest" */
    struct repo_seen *repos;     /* repositories known to exist */
    size_t n_repos;
    struct clients cl;  /* cl.pull reads (with the answer cache), cl.push writes */
    size_t index;       /* in engine.registries and the scheduler */
    bool destination;   /* a rule's destination */
    bool deletes_into;  /* ... of a rule that propagates deletes: digests are fenced here */
    uint64_t queued_at; /* uv_now() when a job of its was last queued (0: never) */
    /* As a destination: entries with a FAILED job here, requeued when its
     * circuit closes. */
    struct engine_requeue_list failed;
    /* As a source: jobs FAILED because it could not be reached, run again
     * once a job reads from it again. */
    struct engine_requeue_list source_failed;
    /* As a destination: its jobs in memory (engine.all), and those shelved. */
    size_t live_jobs;
    struct engine_shelf shelf;
    uint64_t jobs_created;
    uint64_t jobs_failed;
    uint64_t bytes;
    /* Tag PUTs and manifest DELETEs this node has started here: a job that
     * saw its tag in place may skip the PUT only if none happened since. */
    uint64_t moves;
    /* For status and metrics. */
    uint64_t jobs_complete;
    uint64_t jobs_superseded;
    uint64_t failing; /* FAILED records not retried to success since */
    uint64_t retries;
    uint64_t foreign_layers_skipped; /* by the jobs that succeeded here */
    char *last_error;
    int64_t last_error_unix_ms;
    uint64_t latency_buckets[ENGINE_LATENCY_BUCKETS + 1]; /* the last is +Inf */
    double latency_sum;
    uint64_t latency_count;
    struct http_stats http_base; /* what the clients of engines before a reload counted */
    uint64_t invalid_base;       /* invalid names they skipped */
};

/* ---- entries and jobs ---- */

/* A dispatched journal entry that waits for its jobs. */
struct eng_entry {
    uint64_t seq;
    int jobs_left;
    bool detached;       /* a retry of an entry behind the cursor: freed when done */
    bool shared;         /* taken from the cluster's shared work: settled when done */
    bool retries_failed; /* requeued because its job FAILED: success ends a failure */
    struct eng_entry *next;
};

enum eng_job_state {
    JOB_QUEUED = 0, /* in the scheduler, runnable or waiting for a retry */
    JOB_RUNNING,
};

struct eng_job {
    struct engine *engine;
    struct eng_registry *src;
    struct eng_registry *dst;
    char *src_repo;
    char *dst_repo;
    char *digest;
    char *tag; /* NULL: by digest only */
    uint64_t seq;
    bool referrers;
    bool overwrite;
    char *platform;      /* one platform to copy out of an index, or NULL */
    bool is_delete;      /* a delete entry: remove the manifest (and so the tag) */
    char *delete_digest; /* the manifest a delete removes, once the source agreed to its tag */
    struct eng_entry **entries; /* the entries it holds ahead of the cursor (none once parked) */
    size_t n_entries;
    uint64_t *seqs; /* every entry it serves */
    size_t n_seqs;
    bool parked; /* waits for a retry or an open circuit, its entries let go */
    /* A cluster: the seq its claim (journal.h) was made with, dropped when it
     * ends; 0: none (it holds its entry, or one node). */
    uint64_t claim_seq;
    bool tag_leased; /* a cluster: holds its tag (engine_tag_lease_take(), journal_tag_hold()) */
    uint64_t held_fence; /* the tag's fence, as the hold found it */
    uint64_t hold_token; /* the hold's (journal_tag_hold()) */
    /* The hold's work, while it is on the thread pool (the job waits for it). */
    struct tag_hold_work *hold_work;
    /* A push's digest fence (engine_digest_fence()), read with the hold: its rc, and the seq. */
    int held_deleted_rc;
    uint64_t held_deleted;
    uint64_t tag_raised; /* the fence its release raises to (its seq once it may move the tag) */
    bool lease_waits;    /* its attempt ended because another node holds that lease */
    enum eng_job_state state;
    int attempts;
    int source_attempts;   /* attempts the source could not serve */
    enum copy_fault fault; /* who the failing step blames, when not the copy's own */
    bool gone;             /* the source no longer has what the entry named */
    bool deletes;          /* its rule propagates deletes */
    bool foreign_layers;   /* its rule copies non-distributable layers (copy_spec's) */
    bool source_dropped;   /* the source's tag was gone or named another image at the tag step */
    bool put_manifests;    /* some attempt of it put a manifest at the destination */
    int source_rc;         /* what the copy's source fault was, while the source is asked */
    char *source_error;
    bool slot_released;  /* its destination's place went to the next job already */
    bool resumed;        /* a retry or a redo: an earlier attempt may have left blobs */
    bool retries_failed; /* runs again because it FAILED: success ends a failure */
    bool hook_retried;   /* had its one run after the create_repository hook */
    char *last_error;
    int64_t created_unix_ms;
    int64_t received_unix_ms; /* the oldest entry it serves reached the journal */
    struct sched_item item;
    struct gate *gates[2]; /* the gates it holds, in the order taken */
    size_t n_gates;
    uint64_t moves_at_start; /* its destination's `moves` when it started */
    char *gate_digest;       /* the manifest its tag would name */
    bool own_look;           /* its entry is this sync's own look at the source (engine_own_look) */
    struct resolve_fetch fetch; /* an own look's copy reads referrers through it */
    struct copy *copy;
    struct copy_summary summary;
    size_t all_index; /* its place in engine.all */
    char *key;        /* "dest\0repo\0digest\0tag" for coalescing; NULL for deletes */
    size_t key_len;
    bool in_table; /* engine.queued points at it under its key */
    UT_hash_handle hh;
};

/*
 * The last steps of a job (a look at the source, the fence, the tag PUT or
 * the DELETE) run behind gates, so that no other job of this node changes
 * what a job just looked at. A push holds its repository's gate shared and
 * its tag's gate alone; a delete holds its repository's gate alone, since a
 * manifest DELETE takes every tag on it. Waiters are served in order.
 */
struct gate_wait {
    struct eng_job *job;
    bool exclusive;
    struct gate_wait *next;
};

struct gate {
    char *key; /* "dest\nrepo" or "dest\nrepo\ntag" */
    int shared;
    bool exclusive;
    struct gate_wait *waiters;
    struct gate_wait **tail;
    UT_hash_handle hh;
};

struct engine {
    uv_loop_t *loop;
    const struct config *config;
    struct journal *journal;
    /* In a cluster: entries come from the nodes' shared work, not after the
     * cursor; the fetcher's thread wakes the loop through work_async. */
    struct journal_work *work;
    uv_async_t work_async;
    bool work_async_open;
    struct records *records; /* a cluster: status records go through it (records.h) */
    const char *node; /* this node's name in the cluster (its records say it); NULL: one node */
    struct journal_committer *committer; /* observations made at a source go in through it */
    struct eng_registry *registries;
    size_t n_registries;
    struct eng_entry *entries_head;
    struct eng_entry *entries_tail;
    struct sched sched;   /* run queues, retries and circuits */
    struct eng_job **all; /* every live job */
    size_t n_all;
    struct eng_job *queued; /* by key: the job a new entry may coalesce into (not running) */
    size_t live_entries;    /* entries in the cursor's list */
    size_t busy_entries;    /* of which some job still holds: at most `window` of them */
    size_t window;
    bool reading;    /* engine_read_journal is on the stack */
    bool pumping;    /* engine_pump is on the stack */
    bool redoing;    /* engine_start runs the parked range again */
    bool one_shot;   /* `ferry sync`: a destination whose circuit opens is down for the run */
    bool pump_again; /* and was asked again meanwhile */
    size_t parked;   /* parked jobs */
    uint64_t parked_cursor; /* the durable ENGINE_PARKED_CURSOR */
    uint64_t parked_checked_ms;
    struct gate *gates; /* by key */
    struct spool *spool;
    struct presence *presence;   /* which repositories of each destination hold a blob */
    struct repo_hook *repo_hook; /* destinations' create_repository runs */
    /* What the scheduler waits for first (a retry due, a circuit letting a
     * probe through); while closing, the poll for running jobs to end. */
    uv_timer_t timer;
    uint64_t close_started_ms;
    struct engine_counters **counters_out; /* filled as the engine closes */
    bool close_cut;                        /* the grace is over: requests were cut */
    uint64_t dispatched_seq;
    uint64_t cursor;
    int running;
    int hold_works; /* a cluster: tag holds and releases on the thread pool (close waits) */
    int hint_works; /* a cluster: blob hints asked or told, and waits (close waits) */
    int hint_peers; /* a cluster: other nodes alive (engine_set_peers()); 0: no hints */
    uint64_t hints_off_until; /* uv_now() until which hints are off (the servers failed one) */
    struct hint_claim *hint_claims; /* blobs whose claim this node holds, by digest */
    bool started;
    bool closing;
    engine_idle_cb idle_cb;
    engine_job_cb job_cb;
    void *cb_arg;
    void (*close_cb)(void *);
    void *close_arg;
    int closing_handles;
    struct engine_stats stats;
    /* `ferry sync`: entries past `own_from` are this run's own; the tags a
     * job of this run journaled an observation of ("repo\ntag"). */
    uint64_t own_from;
    struct engine_tag_seen *looked_again;
};

/* ---- engine.c: lookups, the cursor, stats ---- */

/** The registry of the config called `name`, or NULL. */
struct eng_registry *engine_registry_find(struct engine *e, const char *name);

/**
 * One job no longer holds `entry`: when none does, a retry's entry is freed,
 * a shared one settled (no node gets it again) and freed.
 */
void engine_entry_release(struct engine *e, struct eng_entry *entry);

/** Move the cursor past the finished entries at the head of the list, durably. */
void engine_advance_cursor(struct engine *e);

/** Count `ms` from an entry reaching the journal to its job at `r` being COMPLETE. */
void engine_latency_observe(struct eng_registry *r, int64_t ms);

/** What `r`'s circuit looks like at `now_ms`, for status and metrics. */
enum engine_circuit engine_circuit_state(const struct sched *s, size_t dest, uint64_t now_ms);

/* ---- engine_dispatch.c: entries into jobs, the window ---- */

/**
 * Start what the scheduler lets start, read more entries when the window
 * has room, and go idle when nothing is left. Safe to call from anywhere: a
 * call made while one runs only asks it to go round again.
 */
void engine_pump(struct engine *e);

/** Take entries after what was dispatched, up to `upto`, as far as the window allows. */
void engine_read_journal(struct engine *e, uint64_t upto);

/** In a cluster: how many entries the engine would start soon (journal_work_want()). */
size_t engine_work_demand(struct engine *e);

/** Call the idle callback when nothing is left to do. */
void engine_maybe_idle(struct engine *e);

/**
 * Run entry `seq` again for destination `dest`, with its original seq (so
 * that fences hold); `was_failed` when it ended FAILED before. Does nothing
 * while closing or when the entry is gone from the journal.
 */
void engine_requeue(struct engine *e, uint64_t seq, const char *dest, bool was_failed);

/**
 * At start: settle the status records left from the last run (`ferry
 * retry`'s requeues, jobs no rule selects now) and run again the parked
 * range, the entries after the parked cursor whose jobs did not end.
 */
void engine_dispatch_start(struct engine *e);

/** Does the window want more entries (it drained below half)? */
bool engine_window_wants(size_t busy, size_t window);

/**
 * How many entries the window may take now: none when `busy` entries hold
 * it full or the cursor's list (`live` entries) is at its bound.
 */
size_t engine_window_room(size_t busy, size_t live, size_t window);

/** Is the cursor's list (`live` entries) long enough that the jobs holding its oldest park? */
bool engine_window_crowded(size_t live, size_t window);

/**
 * Does a status record say that the job for `en` at its destination ended
 * before the last stop? Terminal, serving this entry or a newer one, and
 * naming the entry's tag. Anything else runs again.
 */
bool engine_record_ended(const struct journal_job *rec, const struct journal_entry *en);

/* ---- engine_jobs.c: status records, parked jobs, retries, circuits ---- */

/** Write the job's status record; a terminal one goes to the job callback too. */
void engine_job_record(struct eng_job *job, enum journal_job_state state);

/** Does the status record name this cluster node as the one working on it? */
bool engine_job_mine(const struct engine *e, const struct journal_job *job);

/** Drop the job's claim, if it made one (it ended, or claims anew). */
void engine_job_unclaim(struct eng_job *job);

/**
 * A cluster: run again the claims (journal.h) of this node (`gone` NULL: at
 * start) or of nodes `gone` says are gone (taken up as this node's).
 * Returns how many, or a negative code when the claims could not all be read.
 */
int engine_claims_run(struct engine *e, bool (*gone)(const char *node, void *arg), void *arg);

/** Free a job (taken out of the scheduler, the queue index and engine.all). */
void engine_job_free(struct eng_job *job);

/** The job no longer takes new entries (it runs, or it is going). */
void engine_job_unindex(struct eng_job *job);

/** Runnable now, behind what its destination has queued (parked behind an open circuit). */
void engine_job_enqueue(struct eng_job *job);

/**
 * The copy of a job ended: see what the source says, have a repository the
 * destination refused a push into created (repo_hook.h) and run the job
 * again once, or settle. A copy_done_cb.
 */
void engine_job_done(struct copy *c, int rc, const char *error, void *arg);

/**
 * A job's attempt ended: retry it, or record how it finished (COMPLETE,
 * SUPERSEDED with `superseded`, FAILED), free it and pump.
 */
void engine_job_settle(struct eng_job *job, int rc, const char *error, bool superseded);

/**
 * Is `en` this `ferry sync`'s own look at the source: the poller's HEAD of
 * the tag during this run? Nothing else writes to the journal while a sync
 * holds it, so no message can pose as one, and no entry before it can be a
 * newer look at that tag.
 */
bool engine_own_look(const struct engine *e, const struct journal_entry *en);

/**
 * A resolve_fetch referrers hook for a job whose entry is this sync's own
 * look (engine_own_look()): where the source has no referrers API, the
 * referrers of `digest` are its sha256-<hex> tag, which this run's poll
 * listed and journaled if the source had it; a tag state that says it is not
 * there answers "none" without a request. Otherwise registry_referrers().
 */
int engine_referrers_fetch(void *arg, const char *repo, const char *digest, registry_manifest_cb cb,
                           void *cb_arg);

/** Let waiting jobs go on from their entries, parked, until the cursor's list is short again. */
void engine_unblock_head(struct engine *e);

/** Move the parked cursor to the oldest parked job (at most once a second, or at once with `now`).
 */
void engine_parked_update(struct engine *e, bool now);

/**
 * Jobs shelved while their destinations' circuits were open go back into
 * memory, oldest first, while the circuit is closed and the destination has
 * fewer than ENGINE_SHELF_RESIDENT jobs in memory.
 */
void engine_shelf_drain(struct engine *e);

/** The lowest seq shelved for any destination, or 0 when none is. */
uint64_t engine_shelf_lowest(const struct engine *e);

/** Shelved jobs of one destination, and when the oldest one's entry was journaled (0: none). */
size_t engine_shelf_count(const struct eng_registry *r, int64_t *oldest_unix_ms);

void engine_shelf_clear(struct engine_shelf *shelf);

/**
 * Shelve `job` if it waits behind its destination's open circuit and that
 * destination holds more than ENGINE_SHELF_RESIDENT jobs in memory: true,
 * and `job` is freed (its PENDING record and the shelf stand for it).
 */
bool engine_job_shelve(struct eng_job *job);

/** Stop the engine's timer. */
void engine_timer_stop(struct engine *e);

/** Arm the engine's one timer for what the scheduler waits for first. */
void engine_arm_timer(struct engine *e);

/** One-shot: jobs waiting for a destination whose circuit is open end FAILED now. */
void engine_fail_open(struct engine *e);

static inline struct eng_job *engine_job_of(struct sched_item *it)
{
    return (struct eng_job *)((char *)it - offsetof(struct eng_job, item));
}

/** Who an attempt's failure is blamed on: a failure no step blamed is the destination's. */
enum copy_fault engine_blame(int rc, enum copy_fault fault);

/**
 * What an attempt tells the destination's circuit: only the destination's
 * own trouble counts against it. Not what ended because the source no
 * longer has the image (`gone`), nor a failure cut short by the shutdown.
 */
enum sched_outcome engine_attempt_outcome(int rc, enum copy_fault fault, bool gone, bool closing);

/** Codes with which a source says it cannot give what an entry names. */
bool engine_source_cannot_give(int rc);

/** Where the entry of a FAILED job waits to run again. */
enum engine_requeue_when {
    ENGINE_REQUEUE_CIRCUIT_CLOSES, /* the destination failed: when its circuit closes */
    ENGINE_REQUEUE_SOURCE_ANSWERS, /* the source was down: when a job reads from it again */
    ENGINE_REQUEUE_NEVER,          /* the source cannot give the image: that does not heal */
};

/** Where the entry of a job that ended FAILED with `rc`, blamed on `fault`, waits. */
enum engine_requeue_when engine_failed_requeue(enum copy_fault fault, int rc);

/**
 * A job for entry `seq` from `src` to `dst` ended FAILED with `rc`, blamed on
 * `fault`: keep the entry in the list where it waits to run again (`dst`'s
 * for its circuit, `src`'s for the source answering), or nowhere.
 */
void engine_failed_keep(struct eng_registry *src, struct eng_registry *dst, uint64_t seq,
                        enum copy_fault fault, int rc);

/**
 * What sched_done()'s `flags` bring back at destination `r`: when its circuit
 * closed, every entry that failed there, taken out of its list, oldest first
 * (*n of them; the caller frees). NULL, and *n 0, otherwise.
 */
struct engine_requeue *engine_circuit_requeues(struct eng_registry *r, int flags, size_t *n);

/** Add (`seq`, `dst`) to the list; past ENGINE_PARKED_MAX it is dropped (`ferry retry` still can).
 */
void engine_requeue_add(struct engine_requeue_list *l, uint64_t seq, size_t dst);

/** Take every item out of the list, oldest first (*n of them; caller frees; NULL when none). */
struct engine_requeue *engine_requeue_take(struct engine_requeue_list *l, size_t *n);

/** Free what the list holds. */
void engine_requeue_clear(struct engine_requeue_list *l);

/**
 * The parked cursor once a job serving up to `seq` waits behind it: the
 * entries after it run again at the next start. Never above `low`.
 */
uint64_t engine_parked_floor(uint64_t low, uint64_t seq);

/* ---- engine_truth.c: the source is the truth, fences, deletes ---- */

/** What an entry may do with a tag whose fence is at `fence`. */
enum engine_fence_claim {
    ENGINE_FENCE_RAISE,      /* the entry is newer: raise the fence to it, then move the tag */
    ENGINE_FENCE_OWNED,      /* this very entry raised it (an attempt before, or a crash) */
    ENGINE_FENCE_SUPERSEDED, /* a newer entry owns the tag: leave it */
};

enum engine_fence_claim engine_fence_claim(uint64_t fence, uint64_t seq);

/**
 * May entry `seq` move `tag` of (`dest`, `repo`)? 1 when it is the newest to
 * claim it (the fence raised to `seq` durably, or at `seq` already); 0 when a
 * newer entry owns the tag; or the journal's negative code.
 */
FERRY_MUST_CHECK int engine_fence_take(struct journal *j, const char *dest, const char *repo,
                                       const char *tag, uint64_t seq);

/** What a push's tag step weighs, once the source's tag names the job's digest. */
struct engine_tag_facts {
    uint64_t seq;            /* the newest entry the job serves */
    uint64_t deleted;        /* the digest's fence: its newest delete here, 0 if none */
    uint64_t fence;          /* the tag's fence */
    const char *existing;    /* what the destination's tag named when the copy looked, or NULL */
    const char *gate_digest; /* the manifest the tag would name */
    bool moved_since;        /* this node moved a tag or deleted a manifest there since */
};

enum engine_tag_verdict {
    ENGINE_TAG_MOVE,       /* PUT the tag (after raising the fence) */
    ENGINE_TAG_HELD,       /* in place as the copy saw it, and nothing moved since */
    ENGINE_TAG_SUPERSEDED, /* a newer entry owns the tag */
    ENGINE_TAG_DELETED,    /* the source deleted the manifest after the entry */
};

enum engine_tag_verdict engine_tag_verdict(const struct engine_tag_facts *f);

/**
 * A cluster: hold the job's destination tag (journal_tag_hold()) until its
 * gates are released, so that one node at a time weighs and moves a tag,
 * then go on with `then(job)`: at once on one node, or once the hold is
 * taken, on the thread pool (a compare-and-set on the servers would stall
 * the loop; the job waits, running). When another node holds it, or it
 * cannot be taken, the attempt fails instead (retried like any).
 */
void engine_tag_lease_take(struct eng_job *job, void (*then)(struct eng_job *job));

/** Give the tag's lease back if the job holds it (on the thread pool). */
void engine_tag_lease_give(struct eng_job *job);

/** Decide a job's tag (or run its delete) behind its gates. */
void engine_gate_decide(struct eng_job *job);

/**
 * The job's copy failed because the source cannot give what the entry names:
 * ask the source where the entry's tag (or digest) stands now, with its
 * destination's place given to the next job meanwhile. False while closing
 * or for other failures: the caller settles the job.
 */
bool engine_source_fault(struct eng_job *job, int rc, const char *error);

/**
 * The job put its manifests, then ended without its tag: where its rule
 * propagates deletes and the source no longer holds the manifest, remove it
 * again. True when that runs (the job settles at its end); false: settle now.
 */
bool engine_cleanup_after(struct eng_job *job);

/* ---- engine_gates.c ---- */

/** Take the job's gates one by one (waiting where one is held), then decide. */
void engine_gates_step(struct eng_job *job);

/** The copy is at its tag: take the gates. A copy_tag_gate_cb. */
void engine_tag_gate(struct copy *c, const char *digest, void *arg);

/** Let go of every gate the job holds, waking the jobs they now admit. */
void engine_gates_release(struct eng_job *job);

/* ---- engine_flights.c ---- */

/** A copy_blob_gate_cb: what the engine knows of the blob at the job's destination. */
void engine_blob_gate(struct copy *c, const char *digest, enum copy_blob_seen seen, void *arg);

/** A copy_blob_done_cb: a blob landed (or failed) at the job's destination. */
void engine_blob_done(struct copy *c, const char *digest, bool ok, void *arg);

/** Is `repo` known to exist at `r` (a job of this run put an image there)? */
bool engine_repo_known(struct eng_registry *r, const char *repo);

/** Remember that `repo` exists at `r`. */
void engine_repo_note(struct eng_registry *r, const char *repo);

/** Free the flights, links and repositories `r` knows of. */
void engine_flights_clear(struct eng_registry *r);

/** The upload of `digest` in flight at `r`, or NULL. */
struct blob_flight *engine_flight_find(struct eng_registry *r, const char *digest);

/* ---- engine_hints.c ---- */

/**
 * Are the cluster's blob hints asked for the upload of `digest` by copy `c`
 * (a cluster, another node alive, the servers well, and a blob big enough)?
 */
bool engine_hints_on(const struct engine *e, struct copy *c, const char *digest);

/**
 * The copy `c` (its flight made, this node's upload) is about to upload
 * `digest` into `r`: ask the other nodes first, then answer its blob gate
 * (an upload, or a mount from where another node put it).
 */
void engine_hint_claim(struct engine *e, struct eng_registry *r, struct copy *c,
                       const char *digest);

/**
 * A flight of this node's claim ended: it landed in `repo` at `r` (ok), and
 * the other nodes hear it; the claim goes with the last such flight.
 */
void engine_hint_flight_end(struct engine *e, struct eng_registry *r, const char *digest,
                            const char *repo, bool ok);

#endif
