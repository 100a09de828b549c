/*
 * engine: replication from the journal (DESIGN.md §2-4).
 *
 * The dispatcher reads journal entries from its cursor and makes one job per
 * (entry, rule destination); jobs for the same (destination, repository,
 * digest, tag) coalesce. Each job is a copy of the image by digest (blobs,
 * then manifests, then referrers) whose tag step passes the tag's fence: the
 * fence is raised durably to the entry's seq before the tag PUT, and a job
 * whose entry is older than the fence leaves the tag alone (SUPERSEDED), so a
 * destination tag never moves backwards in journal order. Jobs are retried
 * with backoff, then FAILED with their reason; every job's state is kept in
 * the journal's status records. The cursor moves past an entry only when all
 * its jobs are finished, so a restart resumes where the work was.
 */
#ifndef FERRY_ENGINE_H
#define FERRY_ENGINE_H

#include "common/errors.h"

#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "registry/http.h"
#include "journal/journal.h"

struct engine;
struct journal_committer;
struct registry;

struct engine_stats {
    uint64_t dispatched; /* journal entries taken */
    uint64_t jobs;       /* jobs created */
    uint64_t pending;    /* queued or waiting for a retry */
    uint64_t running;
    uint64_t complete;
    uint64_t failed;
    uint64_t superseded;
    uint64_t retries;
    uint64_t bytes; /* blob bytes uploaded */
    uint64_t circuits_opened;
    uint64_t cursor;      /* every entry at or below it is finished */
    uint64_t hint_mounts; /* a cluster: blobs mounted from where another node put them */
    uint64_t hint_waits;  /* a cluster: blobs this node waited for another node to upload */
    uint64_t held;        /* a cluster: entries taken from the shared work, not settled */
    uint64_t held_most;   /* a cluster: the most held at once since the engine started */
};

/** Called on the loop whenever the engine has nothing left to do. */
typedef void (*engine_idle_cb)(struct engine *e, void *arg);

/** Called when a job ends (COMPLETE, FAILED or SUPERSEDED). */
typedef void (*engine_job_cb)(struct engine *e, const struct journal_job *job, void *arg);

/**
 * An engine replicating the entries of `journal` as `config` says. What a job
 * learns at a source (a tag that names another digest now, or is gone) is
 * journaled as a new observation through `committer`. Both must outlive the
 * engine. Returns 0 and sets *out; or, when the journal cannot say where the
 * last run stopped (its cursors), or the loop cannot give it a timer, a
 * negative code, and *out is left alone.
 */
FERRY_MUST_CHECK int engine_new(uv_loop_t *loop, const struct config *config,
                                struct journal *journal, struct journal_committer *committer,
                                struct engine **out);

/**
 * The engine's client of registry `name` (from the config), with its
 * credentials, TLS and limits: the pulling one, or with `push` the one that
 * asks tokens for pushing. NULL when the config has no such registry. Valid
 * until engine_close() ends.
 */
struct registry *engine_registry_client(struct engine *e, const char *name, bool push);

/**
 * One-shot runs (`ferry sync`): a destination whose circuit opens is taken
 * for down until the run ends, and the jobs waiting for it end FAILED at
 * once, not after probes `circuit.open_for` apart.
 */
void engine_set_one_shot(struct engine *e, bool one_shot);

/** Set callbacks (either may be NULL). */
void engine_set_callbacks(struct engine *e, engine_idle_cb idle, engine_job_cb job, void *arg);

/** Take every journal entry after the cursor, and those appended later (see engine_notify()). */
void engine_start(struct engine *e);

/** New entries up to `seq` are in the journal. */
void engine_notify(struct engine *e, uint64_t seq);

void engine_get_stats(const struct engine *e, struct engine_stats *out);

/* Buckets of the push-to-replicated histogram, in seconds (then +Inf). */
#define ENGINE_LATENCY_BUCKETS 11
extern const double engine_latency_bounds[ENGINE_LATENCY_BUCKETS];

enum engine_circuit {
    ENGINE_CIRCUIT_CLOSED = 0,
    ENGINE_CIRCUIT_OPEN,
    ENGINE_CIRCUIT_HALF_OPEN,
};

/* Where one destination registry stands, for progress displays, status and metrics. */
struct engine_destination_stats {
    const char *name;
    const char *host;
    uint64_t jobs;     /* jobs created for it */
    uint64_t finished; /* COMPLETE, SUPERSEDED or FAILED */
    uint64_t failed;   /* jobs that ended FAILED since start */
    uint64_t failing;  /* jobs FAILED now (not retried to success since) */
    uint64_t complete;
    uint64_t superseded;
    uint64_t retries;
    uint64_t bytes;                  /* blob bytes uploaded by finished jobs */
    uint64_t foreign_layers_skipped; /* non-distributable layers left out by finished jobs */
    enum engine_circuit circuit;
    uint64_t backlog;       /* unfinished jobs (queued, waiting for a retry or running) */
    uint64_t shelved;       /* of which waiting for an open circuit out of memory */
    uint64_t running;       /* in flight */
    int64_t oldest_unix_ms; /* when the oldest unfinished job's entry was journaled; 0: none */
    const char *last_error; /* of the last failed attempt, or NULL; valid until the next call */
    int64_t last_error_unix_ms;
    uint64_t latency_buckets[ENGINE_LATENCY_BUCKETS + 1]; /* counts per bucket, not cumulative */
    double latency_sum;
    uint64_t latency_count;
    struct http_stats http; /* the registry's HTTP client: bytes and requests by status */
    uint64_t invalid_names; /* names from its listings, invalid and skipped (not the poller's) */
};

/** Stats of the i-th registry of the config; false past the last one. */
bool engine_destination_stats(const struct engine *e, size_t i,
                              struct engine_destination_stats *out);

/* What an engine counted, carried across a reload to the engine that replaces it. */
struct engine_counters;

/** Save the counters of `e` (for status and metrics), to hand to the next engine. */
struct engine_counters *engine_counters_save(const struct engine *e);

/**
 * Start `e`'s counters where the saved ones left off (by registry name);
 * frees `c`. With `e` NULL, only frees it.
 */
void engine_counters_restore(struct engine *e, struct engine_counters *c);

/** When `e` closes (after its last job ended), save its counters into *counters. */
void engine_close_saving(struct engine *e, struct engine_counters **counters);

/**
 * Stop taking work, let running jobs end (they are not retried), free
 * everything once closed and call `cb`.
 */
void engine_close(struct engine *e, void (*cb)(void *arg), void *arg);

/**
 * Requeue FAILED jobs: those of `destination` (NULL: every destination),
 * narrowed to `repository` (a destination repository) and `digest` when not
 * NULL. Returns how many jobs were requeued.
 */
size_t engine_retry(struct engine *e, const char *destination, const char *repository,
                    const char *digest);

/**
 * A cluster: take up the PENDING jobs whose node is gone (`alive` says no,
 * or none is named), as this node's, and run them again from their entries.
 * Their entries were settled when they parked, so no other node gets them.
 * Returns how many were taken up (0 on one node), or a negative code when
 * the job records could not all be read (those read are taken up).
 */
int engine_adopt(struct engine *e, bool (*alive)(const char *node, void *arg), void *arg);

/**
 * A cluster: `peers` other nodes are alive now (the heartbeat). With none,
 * the engine asks no blob hints (engine_hints.c): its own flights are the
 * whole picture.
 */
void engine_set_peers(struct engine *e, int peers);

#endif
