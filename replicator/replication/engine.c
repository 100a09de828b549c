#include "replication/engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <time.h>

#include "journal/committer.h"
#include "replication/copy.h"
#include "common/clock.h"
#include "common/errors.h"
#include "registry/http.h"
#include "common/log.h"
#include "common/reference.h"
#include "registry/registry.h"
#include "replication/clients.h"
#include "registry/retry.h"
#include "replication/presence.h"
#include "replication/scheduler.h"
#include "replication/spool.h"
#include "common/xalloc.h"

#define ENGINE_CURSOR        "engine"
#define ENGINE_ATTEMPTS      5
#define ENGINE_RETRY_BASE_MS 1000
#define ENGINE_RETRY_MAX_MS  30000
#define ENGINE_CACHE_BYTES   (32u * 1024 * 1024) /* manifests and referrer lists per source */
/* The jobs of one entry (one per destination) share the source's answer
 * about its tag this long: one HEAD per entry, not one per destination. */
#define ENGINE_CHECK_SHARE_MS 10000
/* The oldest entry a parked job serves, durable: a restart runs those jobs
 * again from there, and retention keeps their entries. */
#define ENGINE_PARKED_CURSOR "engine-parked"
/* Jobs parked (waiting for a retry or an open circuit) held in memory at
 * most; past this the window stops taking entries, as it did before. */
#define ENGINE_PARKED_MAX 200000
/* SIGTERM: running jobs get this long to end on their own; then their
 * requests are cut and they stay PENDING for the next start. */
#define ENGINE_CLOSE_GRACE_MS 3000
/* Entries in the cursor's list, finished ones included, at most this many
 * windows: past that the jobs holding the oldest are parked. */
#define ENGINE_LIST_FACTOR 8
/* A source that cannot give what an entry names (a manifest or blob it no
 * longer has, or broken) gets this many attempts in all, not the
 * destination's: read-after-write lag at a source gets one more look. */
#define ENGINE_SOURCE_ATTEMPTS 2

/*
 * A blob on its way into one destination registry, or known to be there:
 * single-flight per (registry, digest), so a layer shared by many images is
 * uploaded once and mounted into every other repository.
 */
struct blob_flight {
    char *digest;
    char *repo; /* the repository being given it */
    struct copy **waiters;
    size_t n_waiters;
    UT_hash_handle hh;
};

/* A repository a job of this run put an image into: it exists. */
struct repo_seen {
    char *name;
    UT_hash_handle hh;
};

/* Repositories remembered per destination registry; past this the set starts over. */
#define ENGINE_REPOS_MAX 100000

/* A blob being linked into one repository (uploaded or mounted) right now. */
struct link_flight {
    char *key; /* "repo@digest" */
    int writers;
    struct copy **waiters; /* copies whose HEAD saw it: told when it is whole */
    size_t n_waiters;
    UT_hash_handle hh;
};

struct source_failed {
    uint64_t seq;
    const struct eng_registry *dst;
};

struct eng_registry {
    const struct config_registry *cfg;
    struct blob_flight *flights; /* uploads and mounts in flight, by digest */
    struct link_flight *links;   /* by "repo@digest" */
    struct repo_seen *repos;     /* repositories known to exist */
    size_t n_repos;
    struct clients cl;     /* cl.pull reads (with the answer cache), cl.push writes */
    size_t index;          /* in engine.registries and the scheduler */
    uint64_t *failed_seqs; /* entries with a FAILED job here, requeued when the circuit closes */
    /* As a source: jobs FAILED because it could not be reached, run again
     * once a job reads from it again. */
    struct source_failed *source_failed;
    size_t n_source_failed;
    uint64_t jobs_created;
    uint64_t jobs_failed;
    uint64_t bytes;
    size_t n_failed_seqs;
    /* Tag PUTs and manifest DELETEs this node has started here: a job that
     * saw its tag in place may skip the PUT only if none happened since. */
    uint64_t moves;
    /* For status and metrics. */
    uint64_t jobs_complete;
    uint64_t jobs_superseded;
    uint64_t failing; /* FAILED records not retried to success since */
    uint64_t retries;
    char *last_error;
    int64_t last_error_unix_ms;
    uint64_t latency_buckets[ENGINE_LATENCY_BUCKETS + 1]; /* the last is +Inf */
    double latency_sum;
    uint64_t latency_count;
    struct http_stats http_base; /* what the clients of engines before a reload counted */
    uint64_t invalid_base;       /* invalid names they skipped */
};

const double engine_latency_bounds[ENGINE_LATENCY_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1,  2.5,
                                                              5,    10,  30,   60,  300};

/* A dispatched journal entry that waits for its jobs. */
struct eng_entry {
    uint64_t seq;
    int jobs_left;
    bool detached;       /* a retry of an entry behind the cursor: freed when done */
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
    enum eng_job_state state;
    int attempts;
    int source_attempts;   /* attempts the source could not serve */
    enum copy_fault fault; /* who the failing step blames, when not the copy's own */
    bool gone;             /* the source no longer has what the entry named */
    bool deletes;          /* its rule propagates deletes */
    bool source_dropped;   /* the source's tag was gone or named another image at the tag step */
    bool put_manifests;    /* some attempt of it put a manifest at the destination */
    int source_rc;         /* what the copy's source fault was, while the source is asked */
    char *source_error;
    bool slot_released;  /* its destination's place went to the next job already */
    bool resumed;        /* a retry or a redo: an earlier attempt may have left blobs */
    bool retries_failed; /* runs again because it FAILED: success ends a failure */
    char *last_error;
    int64_t created_unix_ms;
    int64_t received_unix_ms; /* the oldest entry it serves reached the journal */
    struct sched_item item;
    struct gate *gates[2]; /* the gates it holds, in the order taken */
    size_t n_gates;
    uint64_t moves_at_start; /* its destination's `moves` when it started */
    char *gate_digest;       /* the manifest its tag would name */
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
    struct presence *presence; /* which repositories of each destination hold a blob */
    uv_timer_t timer;
    uv_timer_t close_timer; /* polls for running jobs to end while closing */
    uint64_t close_started_ms;
    struct engine_counters **counters_out; /* filled as the engine closes */
    bool close_cut;                        /* the grace is over: requests were cut */
    uint64_t dispatched_seq;
    uint64_t cursor;
    int running;
    bool started;
    bool closing;
    engine_idle_cb idle_cb;
    engine_job_cb job_cb;
    void *cb_arg;
    void (*close_cb)(void *);
    void *close_arg;
    int closing_handles;
    struct engine_stats stats;
};

static void engine_pump(struct engine *e);
static void engine_maybe_idle(struct engine *e);
static void job_blob_gate(struct copy *c, const char *digest, enum copy_blob_seen seen, void *arg);
static void job_blob_done(struct copy *c, const char *digest, bool ok, void *arg);

static struct eng_registry *engine_registry(struct engine *e, const char *name)
{
    for (size_t i = 0; i < e->n_registries; i++)
        if (strcmp(e->registries[i].cfg->name, name) == 0)
            return &e->registries[i];
    return NULL;
}

/* ---- status records ---- */

static void job_record(struct eng_job *job, enum journal_job_state state)
{
    struct engine *e = job->engine;
    struct journal_job rec;
    char *tags[1];
    char *by_tag = NULL;
    memset(&rec, 0, sizeof(rec));
    rec.destination = (char *)job->dst->cfg->name;
    rec.repository = job->dst_repo;
    /* A delete of a tag alone has no digest: its record is keyed by the tag. */
    if (job->digest == NULL)
        by_tag = xasprintf("tag:%s", job->tag);
    rec.digest = job->digest != NULL ? job->digest : by_tag;
    rec.state = state;
    rec.attempts = (uint32_t)job->attempts;
    rec.last_error = job->last_error;
    rec.bytes = job->summary.bytes_copied;
    rec.seq = job->seq;
    rec.created_unix_ms = job->created_unix_ms;
    rec.updated_unix_ms = clock_unix_ms();
    if (state == JOURNAL_JOB_COMPLETE || state == JOURNAL_JOB_SUPERSEDED)
        rec.completed_unix_ms = rec.updated_unix_ms;
    if (job->tag != NULL) {
        tags[0] = job->tag;
        rec.tags = tags;
        rec.n_tags = 1;
    }
    if (journal_job_put(e->journal, &rec) < 0)
        log_warn("cannot record job status dest=%s repo=%s digest=%s", rec.destination,
                 rec.repository, rec.digest);
    if (e->job_cb != NULL && state != JOURNAL_JOB_PENDING && state != JOURNAL_JOB_IN_PROGRESS)
        e->job_cb(e, &rec, e->cb_arg);
    free(by_tag);
}

/* ---- the cursor ---- */

static void engine_parked_update(struct engine *e, bool now);

static void engine_advance_cursor(struct engine *e)
{
    uint64_t cursor = e->cursor;
    while (e->entries_head != NULL && e->entries_head->jobs_left == 0) {
        struct eng_entry *done = e->entries_head;
        if (done->seq > cursor)
            cursor = done->seq;
        e->entries_head = done->next;
        e->live_entries--;
        if (e->entries_head == NULL)
            e->entries_tail = NULL;
        free(done);
    }
    if (cursor != e->cursor) {
        e->cursor = cursor;
        e->stats.cursor = cursor;
        if (journal_cursor_set(e->journal, ENGINE_CURSOR, cursor) < 0)
            log_warn("cannot store the engine cursor seq=%llu", (unsigned long long)cursor);
    }
    engine_parked_update(e, false);
}

/* ---- parked jobs ---- */

/* One job no longer holds `entry`. */
static void entry_release(struct engine *e, struct eng_entry *entry)
{
    if (--entry->jobs_left > 0)
        return;
    if (entry->detached)
        free(entry);
    else
        e->busy_entries--;
}

/* Serves no entry the cursor waits for: parked, or a retry behind the cursor. */
static bool job_behind_cursor(const struct eng_job *job)
{
    if (job->parked)
        return true;
    for (size_t i = 0; i < job->n_entries; i++)
        if (!job->entries[i]->detached)
            return false;
    return job->n_entries > 0;
}

static void engine_parked_store(struct engine *e, uint64_t value)
{
    if (value == e->parked_cursor)
        return;
    e->parked_cursor = value;
    if (journal_cursor_set(e->journal, ENGINE_PARKED_CURSOR, value) < 0)
        log_warn("cannot store the parked cursor seq=%llu", (unsigned long long)value);
}

/*
 * The parked cursor follows the oldest job behind the engine's cursor (at
 * most once a second, or at once with `now`): entries after it are run
 * again by the next start where their jobs did not end, and retention keeps
 * them.
 */
static void engine_parked_update(struct engine *e, bool now)
{
    uint64_t t = uv_now(e->loop);
    if (!now && t < e->parked_checked_ms + 1000)
        return;
    e->parked_checked_ms = t;
    uint64_t low = e->cursor;
    for (size_t i = 0; i < e->n_all; i++) {
        const struct eng_job *job = e->all[i];
        if (job_behind_cursor(job) && job->seq > 0 && job->seq - 1 < low)
            low = job->seq - 1;
    }
    engine_parked_store(e, low);
}

/*
 * A job that waits (for its retry, or for its destination's circuit) lets
 * its entries go: they no longer hold the window or the cursor, and the rest
 * of the journal goes on to the destinations that work. Its status record
 * says PENDING, and the parked cursor is below its seq before the engine's
 * cursor can pass it, so a restart runs it again.
 */
static void job_park(struct eng_job *job)
{
    struct engine *e = job->engine;
    if (job->parked)
        return;
    if (job->seq > 0 && job->seq - 1 < e->parked_cursor)
        engine_parked_store(e, job->seq - 1);
    job->parked = true;
    e->parked++;
    for (size_t i = 0; i < job->n_entries; i++)
        entry_release(e, job->entries[i]);
    free(job->entries);
    job->entries = NULL;
    job->n_entries = 0;
    /* Inside a journal read the entry being dispatched is still being built;
     * the read moves the cursor once it is done. */
    if (!e->reading)
        engine_advance_cursor(e);
}

/* Park the jobs that hold the oldest entries until the list is short again. */
static void engine_unblock_head(struct engine *e)
{
    while (e->entries_head != NULL && e->live_entries >= e->window * ENGINE_LIST_FACTOR / 2) {
        struct eng_entry *head = e->entries_head;
        if (head->jobs_left > 0) {
            for (size_t i = 0; i < e->n_all && head->jobs_left > 0; i++) {
                struct eng_job *job = e->all[i];
                for (size_t k = 0; k < job->n_entries; k++) {
                    if (job->entries[k] == head) {
                        job_park(job);
                        break;
                    }
                }
            }
        }
        engine_advance_cursor(e);
        if (e->entries_head == head)
            break; /* held by no job it can find: never loop */
    }
}

/* ---- jobs ---- */

/* The job no longer takes new entries (it runs, or it is going). */
static void job_unindex(struct eng_job *job)
{
    if (job->in_table) {
        HASH_DEL(job->engine->queued, job);
        job->in_table = false;
    }
}

static void job_free(struct eng_job *job)
{
    struct engine *e = job->engine;
    job_unindex(job);
    sched_remove(&e->sched, &job->item);
    if (job->parked)
        e->parked--;
    e->all[job->all_index] = e->all[--e->n_all];
    e->all[job->all_index]->all_index = job->all_index;
    free(job->key);
    free(job->entries);
    free(job->seqs);
    free(job->src_repo);
    free(job->dst_repo);
    free(job->digest);
    free(job->tag);
    free(job->platform);
    free(job->last_error);
    free(job->delete_digest);
    free(job->gate_digest);
    free(job->source_error);
    free(job);
}

static struct eng_job *job_of(struct sched_item *it)
{
    return (struct eng_job *)((char *)it - offsetof(struct eng_job, item));
}

static void engine_timer_cb(uv_timer_t *timer);

/* One timer, for whatever the scheduler waits for first: a retry that
 * falls due or a circuit that may let a probe through. */
static void engine_arm_timer(struct engine *e)
{
    int64_t wait = e->closing ? -1 : sched_wakeup(&e->sched, uv_now(e->loop));
    if (wait < 0) {
        uv_timer_stop(&e->timer);
        return;
    }
    uv_timer_start(&e->timer, engine_timer_cb, (uint64_t)wait, 0);
}

static void job_park(struct eng_job *job);

/* Runnable now, behind what its destination has queued. */
static void job_enqueue(struct eng_job *job)
{
    struct engine *e = job->engine;
    job->state = JOB_QUEUED;
    sched_push(&e->sched, &job->item, job->dst->index);
    /* Behind an open circuit it waits without holding its entries. */
    if (sched_circuit_open(&e->sched, job->dst->index, uv_now(e->loop)))
        job_park(job);
}

/* Runnable after `delay_ms`: parked meanwhile. */
static void job_delay(struct eng_job *job, uint64_t delay_ms)
{
    struct engine *e = job->engine;
    job->state = JOB_QUEUED;
    sched_delay(&e->sched, &job->item, job->dst->index, uv_now(e->loop) + delay_ms);
    job_park(job);
    engine_arm_timer(e);
}

static void engine_timer_cb(uv_timer_t *timer)
{
    engine_pump(timer->data);
}

static void delete_gated(struct eng_job *job);
static void job_settle(struct eng_job *job, int rc, const char *error, bool superseded);

/*
 * May this job move its tag? 1 when its seq is the newest to claim the tag:
 * higher than the fence (raised now, durably), or equal to it (this very
 * entry raised it before a failed attempt or a crash); 0 when a newer entry
 * owns the tag. The tag's gate makes get-then-raise safe.
 */
static int engine_fence_take(struct engine *e, struct eng_job *job)
{
    uint64_t fence = 0;
    int rc = journal_fence_get(e->journal, job->dst->cfg->name, job->dst_repo, job->tag, &fence);
    if (rc < 0)
        return rc;
    if (fence == job->seq)
        return 1;
    if (fence > job->seq)
        return 0;
    return journal_fence_raise(e->journal, job->dst->cfg->name, job->dst_repo, job->tag, job->seq);
}

/*
 * A manifest deleted at a destination because the source deleted it fences
 * its digest there with the delete's seq ("@sha256:…" in the fence space of
 * the repository: no tag has an '@'). A push of that digest from an older
 * entry must not put it back: its look at the source may be older than the
 * delete (an answer shared between the destinations of one entry).
 */
static int engine_digest_fence_raise(struct eng_job *job, const char *digest)
{
    char *key = xasprintf("@%s", digest);
    int rc = journal_fence_raise(job->engine->journal, job->dst->cfg->name, job->dst_repo, key,
                                 job->seq);
    free(key);
    return rc < 0 ? rc : 0;
}

/* The seq of the newest delete of `digest` at the job's destination, 0 if none. */
static int engine_digest_fence(struct eng_job *job, const char *digest, uint64_t *fence)
{
    char *key = xasprintf("@%s", digest);
    *fence = 0;
    int rc =
        journal_fence_get(job->engine->journal, job->dst->cfg->name, job->dst_repo, key, fence);
    free(key);
    return rc;
}

/* ---- the source is the truth ---- */

/* What a job does once an observation it made is in the journal. */
enum observed_then {
    OBSERVED_LEAVE_TAG, /* a push: leave the tag alone (SUPERSEDED) */
    OBSERVED_IGNORE,    /* a delete: mark it ignored */
    OBSERVED_GONE,      /* a push the source cannot serve any more: SUPERSEDED */
};

struct observation {
    struct eng_job *job;
    enum observed_then then;
    char *why;
};

static void delete_ignore(struct eng_job *job, const char *why);
static bool job_cleanup_after(struct eng_job *job);

static void engine_observed(int rc, const char *error, const uint64_t *seqs, size_t n, void *arg)
{
    struct observation *o = arg;
    struct eng_job *job = o->job;
    (void)n;
    if (rc == 0 && seqs[0] != 0)
        log_info("journaled what the source says src=%s repo=%s tag=%s seq=%llu",
                 job->src->cfg->name, job->src_repo, job->tag, (unsigned long long)seqs[0]);
    if (rc < 0) {
        /* The job fails and runs again: its entry is not passed while what
         * it learned is not durable. */
        char *why = xasprintf("cannot journal what the source says: %s",
                              error != NULL ? error : ferry_strerror(rc));
        if (o->then == OBSERVED_LEAVE_TAG) {
            copy_tag_decide(job->copy, rc, why, COPY_TAG_LEAVE);
        } else {
            job->gone = false;
            job->fault = COPY_FAULT_LOCAL;
            job_settle(job, rc, why, false);
        }
        free(why);
    } else if (o->then == OBSERVED_LEAVE_TAG) {
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_LEAVE);
    } else if (o->then == OBSERVED_GONE) {
        if (!job_cleanup_after(job))
            job_settle(job, 0, NULL, true);
    } else {
        delete_ignore(job, o->why);
    }
    free(o->why);
    free(o);
}

/*
 * A job found the source's tag naming `digest` (NULL: the tag is gone), not
 * what its entry said. Journal that as an observation, so that every
 * destination converges on the source without waiting for a poll, and go on
 * (`then`) only once it is durable, so that a crash never loses it. The
 * journal drops it when its latest word on the tag already says so, and the
 * other destinations' jobs of the same entry submit the same event id.
 */
static void engine_observe_source(struct eng_job *job, const char *digest, const char *media_type,
                                  enum observed_then then, const char *why)
{
    struct engine *e = job->engine;
    char *id = xasprintf("source:%s:%s:%s@%" PRIu64, job->src_repo, job->tag,
                         digest != NULL ? digest : "gone", job->seq);
    struct journal_event ev = {
        .action = digest != NULL ? JOURNAL_PUSH : JOURNAL_DELETE,
        .source = job->src->cfg->name,
        .repository = job->src_repo,
        .digest = digest,
        .tag = job->tag,
        .media_type = media_type,
        .event_id = id,
        .if_changed = true,
    };
    struct observation *o = xcalloc(1, sizeof(*o));
    o->job = job;
    o->then = then;
    o->why = xstrdup(why);
    int rc = e->committer != NULL
                 ? journal_committer_submit(e->committer, &ev, 1, engine_observed, o)
                 : FERRY_ECANCELED;
    free(id);
    if (rc < 0)
        engine_observed(rc, ferry_strerror(rc), NULL, 0, o);
}

/*
 * Ask the source where `reference` of the job's repository stands now. With
 * `share`, the jobs of one entry at every destination (same seq, same
 * attempt) share one request, and its answer for a few seconds.
 */
static void job_source_check(struct eng_job *job, const char *reference, bool share,
                             registry_manifest_cb cb)
{
    char key[48];
    snprintf(key, sizeof(key), "%" PRIu64 ".%d", job->seq, job->attempts);
    registry_manifest_resolve(job->src->cl.pull, job->src_repo, reference, share ? key : NULL,
                              ENGINE_CHECK_SHARE_MS, cb, job);
}

/* What a failed look at the source says, for the job's record. */
static char *source_check_error(const struct eng_job *job, const char *reference, int rc,
                                const char *error)
{
    return xasprintf("cannot check %s%s%s at source %s: %s", job->src_repo,
                     strchr(reference, ':') != NULL ? "@" : ":", reference, job->src->cfg->name,
                     error != NULL ? error : ferry_strerror(rc));
}

/*
 * The source's answer for a push's tag. The tag moves only to the digest the
 * source's tag names now, and only by an entry newer than its fence.
 */
static void push_source_checked(int rc, const char *error, const char *bytes, size_t len,
                                const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    struct engine *e = job->engine;
    (void)bytes;
    (void)len;
    if (rc < 0 && rc != FERRY_ENOTFOUND) {
        char *why = source_check_error(job, job->tag, rc, error);
        job->fault = COPY_FAULT_SOURCE;
        copy_tag_decide(job->copy, rc, why, COPY_TAG_LEAVE);
        free(why);
        return;
    }
    if (rc == FERRY_ENOTFOUND || strcmp(digest, job->digest) != 0) {
        job->source_dropped = true;
        char *why =
            rc == FERRY_ENOTFOUND
                ? xasprintf("superseded: the source has no tag %s now", job->tag)
                : xasprintf("superseded: the source's tag %s names %s now", job->tag, digest);
        log_info("source disagrees, tag left alone dest=%s repo=%s tag=%s digest=%s seq=%llu "
                 "reason=\"%s\"",
                 job->dst->cfg->name, job->dst_repo, job->tag, job->digest,
                 (unsigned long long)job->seq, why);
        free(job->last_error);
        job->last_error = xstrdup(why);
        engine_observe_source(job, rc == 0 ? digest : NULL, media_type, OBSERVED_LEAVE_TAG, why);
        free(why);
        return;
    }
    uint64_t deleted = 0;
    int frc = engine_digest_fence(job, job->digest, &deleted);
    if (frc == 0 && deleted > job->seq) {
        /* The source deleted this very manifest after the entry, and that
         * delete ran here: the look above (shared, a few seconds old) is older. */
        char *why = xasprintf("superseded: %s was deleted at the source (entry %llu)", job->digest,
                              (unsigned long long)deleted);
        log_info("tag left alone, its manifest was deleted since dest=%s repo=%s tag=%s seq=%llu",
                 job->dst->cfg->name, job->dst_repo, job->tag, (unsigned long long)job->seq);
        free(job->last_error);
        job->last_error = why;
        job->source_dropped = true;
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_LEAVE);
        return;
    }
    if (frc >= 0)
        frc = engine_fence_take(e, job);
    if (frc < 0) {
        job->fault = COPY_FAULT_LOCAL;
        copy_tag_decide(job->copy, frc, "cannot record the tag's fence", COPY_TAG_LEAVE);
        return;
    }
    if (frc == 0) {
        log_info("tag superseded dest=%s repo=%s tag=%s seq=%llu", job->dst->cfg->name,
                 job->dst_repo, job->tag, (unsigned long long)job->seq);
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_LEAVE);
        return;
    }
    /* The copy saw the tag in place before this job held its gates; that is
     * still true unless this node moved a tag or deleted a manifest there
     * since. Otherwise the PUT puts it back for sure. */
    const char *existing = copy_dst_tag_digest(job->copy);
    if (existing != NULL && job->gate_digest != NULL && strcmp(existing, job->gate_digest) == 0 &&
        job->dst->moves == job->moves_at_start) {
        copy_tag_decide(job->copy, 0, NULL, COPY_TAG_HELD);
        return;
    }
    job->dst->moves++;
    copy_tag_decide(job->copy, 0, NULL, COPY_TAG_MOVE);
}

static void job_gate_decide(struct eng_job *job)
{
    if (job->is_delete) {
        delete_gated(job);
        return;
    }
    const char *existing = copy_dst_tag_digest(job->copy);

    if (!job->overwrite && existing != NULL) {
        bool held = job->gate_digest != NULL && strcmp(existing, job->gate_digest) == 0;
        if (!held)
            log_info("tag exists, overwrite off dest=%s repo=%s tag=%s", job->dst->cfg->name,
                     job->dst_repo, job->tag);
        copy_tag_decide(job->copy, 0, NULL, held ? COPY_TAG_HELD : COPY_TAG_LEAVE);
        return;
    }
    /* Messages are hints: ask the source, behind the tag's gate, so that no
     * other job of this node moves the tag between the answer and the PUT. */
    job_source_check(job, job->tag, true, push_source_checked);
}

/* ---- gates ---- */

static char *gate_key(const struct eng_job *job, bool tag)
{
    return tag ? xasprintf("%s\n%s\n%s", job->dst->cfg->name, job->dst_repo, job->tag)
               : xasprintf("%s\n%s", job->dst->cfg->name, job->dst_repo);
}

/* Take the gate if its holders allow, whoever waits. */
static bool gate_try_admit(struct gate *g, bool exclusive)
{
    if (g->exclusive || (exclusive && g->shared > 0))
        return false;
    if (exclusive)
        g->exclusive = true;
    else
        g->shared++;
    return true;
}

/* Take the gate now if nobody waits for it and its holders allow. */
static bool gate_try(struct gate *g, bool exclusive)
{
    return g->waiters == NULL && gate_try_admit(g, exclusive);
}

static void job_gates_step(struct eng_job *job);

/* The gates a job needs, in order: (key is a tag gate, exclusive). */
static size_t job_gates_needed(const struct eng_job *job, bool tag[2], bool exclusive[2])
{
    tag[0] = false;
    if (job->is_delete) {
        exclusive[0] = true;
        return 1;
    }
    exclusive[0] = false;
    tag[1] = true;
    exclusive[1] = true;
    return 2;
}

/* Take the job's gates one by one (waiting where one is held), then decide. */
static void job_gates_step(struct eng_job *job)
{
    struct engine *e = job->engine;
    bool tag[2], exclusive[2];
    size_t needed = job_gates_needed(job, tag, exclusive);
    while (job->n_gates < needed) {
        size_t i = job->n_gates;
        char *key = gate_key(job, tag[i]);
        struct gate *g = NULL;
        HASH_FIND_STR(e->gates, key, g);
        if (g == NULL) {
            g = xcalloc(1, sizeof(*g));
            g->key = key;
            g->tail = &g->waiters;
            HASH_ADD_KEYPTR(hh, e->gates, g->key, strlen(g->key), g);
        } else {
            free(key);
        }
        if (!gate_try(g, exclusive[i])) {
            struct gate_wait *w = xcalloc(1, sizeof(*w));
            w->job = job;
            w->exclusive = exclusive[i];
            *g->tail = w;
            g->tail = &w->next;
            return;
        }
        job->gates[job->n_gates++] = g;
    }
    job_gate_decide(job);
}

/* The copy is at its tag: take the gates. */
static void job_tag_gate(struct copy *c, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)c;
    free(job->gate_digest);
    job->gate_digest = xstrdup(digest);
    job_gates_step(job);
}

/* Let go of one gate and hand it to the waiters it now admits, in order. */
static void gate_release(struct engine *e, struct gate *g, bool exclusive)
{
    if (exclusive)
        g->exclusive = false;
    else
        g->shared--;
    struct eng_job **woken = NULL;
    size_t n = 0;
    while (g->waiters != NULL) {
        struct gate_wait *w = g->waiters;
        if (!gate_try_admit(g, w->exclusive))
            break;
        g->waiters = w->next;
        if (g->waiters == NULL)
            g->tail = &g->waiters;
        woken = xrealloc(woken, (n + 1) * sizeof(*woken));
        woken[n++] = w->job;
        w->job->gates[w->job->n_gates++] = g;
        free(w);
    }
    if (g->shared == 0 && !g->exclusive && g->waiters == NULL) {
        HASH_DEL(e->gates, g);
        free(g->key);
        free(g);
    }
    /* Woken jobs go on only now: one may settle and release this gate again. */
    for (size_t i = 0; i < n; i++)
        job_gates_step(woken[i]);
    free(woken);
}

static void job_release_gates(struct eng_job *job)
{
    bool tag[2], exclusive[2];
    job_gates_needed(job, tag, exclusive);
    size_t held = job->n_gates;
    job->n_gates = 0;
    while (held > 0) {
        held--;
        gate_release(job->engine, job->gates[held], exclusive[held]);
    }
}

static void job_finish_entries(struct eng_job *job)
{
    for (size_t i = 0; i < job->n_entries; i++)
        entry_release(job->engine, job->entries[i]);
    /* A detached entry may be gone now: the job points at none any more. */
    free(job->entries);
    job->entries = NULL;
    job->n_entries = 0;
    engine_advance_cursor(job->engine);
}

static void engine_requeue(struct engine *e, uint64_t seq, const char *dest, bool was_failed);

/* What the scheduler's circuit did after an attempt: say so, and act on it. */
static void engine_circuit_moved(struct engine *e, struct eng_registry *r, int flags)
{
    if (flags & SCHED_OPENED) {
        const struct sched_dest *d = &e->sched.dests[r->index];
        log_warn("circuit open dest=%s failures=%d open_ms=%llu", r->cfg->name, d->failures,
                 (unsigned long long)e->config->circuit_open_ms);
        e->stats.circuits_opened++;
        /* What waits for it, or runs against it still, lets its entries go. */
        for (size_t i = 0; i < e->n_all; i++)
            if (e->all[i]->dst == r)
                job_park(e->all[i]);
    }
    if (flags & SCHED_CLOSED) {
        log_warn("circuit closed dest=%s requeued=%zu", r->cfg->name, r->n_failed_seqs);
        /* What failed while the destination was down gets another go. */
        uint64_t *seqs = r->failed_seqs;
        size_t n = r->n_failed_seqs;
        r->failed_seqs = NULL;
        r->n_failed_seqs = 0;
        for (size_t i = 0; i < n; i++)
            engine_requeue(e, seqs[i], r->cfg->name, true);
        free(seqs);
    }
}

static void repos_clear(struct eng_registry *r)
{
    struct repo_seen *x, *tmp;
    HASH_ITER(hh, r->repos, x, tmp)
    {
        HASH_DEL(r->repos, x);
        free(x->name);
        free(x);
    }
    r->n_repos = 0;
}

static bool repo_known(struct eng_registry *r, const char *repo)
{
    struct repo_seen *x = NULL;
    HASH_FIND_STR(r->repos, repo, x);
    return x != NULL;
}

static void repo_note(struct eng_registry *r, const char *repo)
{
    if (repo_known(r, repo))
        return;
    if (r->n_repos >= ENGINE_REPOS_MAX)
        repos_clear(r);
    struct repo_seen *x = xcalloc(1, sizeof(*x));
    x->name = xstrdup(repo);
    HASH_ADD_KEYPTR(hh, r->repos, x->name, strlen(x->name), x);
    r->n_repos++;
}

/* From the entry reaching the journal to the job being COMPLETE. */
static void engine_observe_latency(struct eng_registry *r, int64_t ms)
{
    double sec = ms > 0 ? (double)ms / 1000.0 : 0;
    size_t i = 0;
    while (i < ENGINE_LATENCY_BUCKETS && sec > engine_latency_bounds[i])
        i++;
    r->latency_buckets[i]++;
    r->latency_sum += sec;
    r->latency_count++;
}

/* A job read from `src` again: what failed while it was down runs again. */
static void engine_source_back(struct engine *e, struct eng_registry *src)
{
    struct source_failed *list = src->source_failed;
    size_t n = src->n_source_failed;
    src->source_failed = NULL;
    src->n_source_failed = 0;
    log_warn("source answers again src=%s requeued=%zu", src->cfg->name, n);
    for (size_t i = 0; i < n; i++)
        engine_requeue(e, list[i].seq, list[i].dst->cfg->name, true);
    free(list);
}

/* Codes with which a source says it cannot give what an entry names. */
static bool source_cannot_give(int rc)
{
    return rc == FERRY_ENOTFOUND || rc == FERRY_EDIGEST || rc == FERRY_ETOOBIG ||
           rc == FERRY_EPARSE || rc == FERRY_EUNSUPPORTED;
}

/*
 * A job ends FAILED (its last error is `why`, or already set): recorded,
 * counted and freed. What failed because the destination was down gets
 * another go when its circuit closes; what failed because the source was
 * down, when a job reads from the source again. A source that cannot give an
 * image does not heal that way.
 */
static void job_end_failed(struct eng_job *job, const char *why, enum copy_fault fault, int rc)
{
    struct engine *e = job->engine;
    bool from_source = fault == COPY_FAULT_SOURCE;
    if (why != NULL) {
        free(job->last_error);
        job->last_error = xstrdup(why);
    }
    log_error("job failed dest=%s repo=%s digest=%s attempts=%d fault=%s error=\"%s\"",
              job->dst->cfg->name, job->dst_repo, job->digest ? job->digest : "-", job->attempts,
              from_source ? "source" : "destination", job->last_error);
    e->stats.failed++;
    if (!job->retries_failed)
        job->dst->failing++;
    job_record(job, JOURNAL_JOB_FAILED);
    if (!from_source) {
        struct eng_registry *r = job->dst;
        if (r->n_failed_seqs < ENGINE_PARKED_MAX) {
            r->failed_seqs = xrealloc(r->failed_seqs, (r->n_failed_seqs + 1) * sizeof(uint64_t));
            r->failed_seqs[r->n_failed_seqs++] = job->seq;
        }
    } else if (!source_cannot_give(rc) && job->src->n_source_failed < ENGINE_PARKED_MAX) {
        struct eng_registry *r = job->src;
        r->source_failed =
            xrealloc(r->source_failed, (r->n_source_failed + 1) * sizeof(*r->source_failed));
        r->source_failed[r->n_source_failed].seq = job->seq;
        r->source_failed[r->n_source_failed++].dst = job->dst;
    }
    job->dst->bytes += job->summary.bytes_copied;
    job->dst->jobs_failed++;
    job_finish_entries(job);
    job_free(job);
}

/* A job's attempt ended: retry it, or record how it finished. */
static void job_settle(struct eng_job *job, int rc, const char *error, bool superseded)
{
    struct engine *e = job->engine;

    bool retries_failed = job->retries_failed;
    enum copy_fault fault =
        rc < 0 && job->fault == COPY_FAULT_NONE ? COPY_FAULT_DESTINATION : job->fault;
    job->fault = COPY_FAULT_NONE;
    job_release_gates(job);
    /* Only the destination's own trouble counts toward its circuit. */
    enum sched_outcome outcome = rc == 0                           ? SCHED_OK
                                 : fault == COPY_FAULT_DESTINATION ? SCHED_DEST_FAILURE
                                                                   : SCHED_NEUTRAL;
    /* Ended by what the source said: nothing learned of the destination. */
    if (job->gone)
        outcome = SCHED_NEUTRAL;
    if (rc < 0 && e->closing)
        outcome = SCHED_NEUTRAL; /* cut short by the shutdown: says nothing of anyone */
    int moved =
        job->slot_released ? 0 : sched_done(&e->sched, &job->item, outcome, uv_now(e->loop));
    job->slot_released = false;
    e->running--;
    e->stats.running--;
    e->stats.bytes += job->summary.bytes_copied;
    if (rc < 0 && e->closing) {
        /* A shutdown cut it short: that is no failure of the job. It stays
         * PENDING, and its entry ahead of the cursor (or the parked cursor
         * below it), so the next start runs it again with its retries whole. */
        log_warn("job interrupted by shutdown, left for the next start dest=%s repo=%s digest=%s "
                 "error=\"%s\"",
                 job->dst->cfg->name, job->dst_repo, job->digest ? job->digest : "-",
                 error != NULL ? error : ferry_strerror(rc));
        job_record(job, JOURNAL_JOB_PENDING);
        job_free(job);
        return;
    }
    engine_circuit_moved(e, job->dst, moved);
    if (rc < 0) {
        bool from_source = fault == COPY_FAULT_SOURCE;
        const char *what = error != NULL ? error : ferry_strerror(rc);
        free(job->last_error);
        /* A source's fault says so: an address alone does not tell which end failed. */
        if (from_source && strstr(what, "source") == NULL)
            job->last_error = xasprintf("source %s: %s", job->src->cfg->name, what);
        else
            job->last_error = xstrdup(what);
        if (!from_source) {
            free(job->dst->last_error);
            job->dst->last_error = xstrdup(job->last_error);
            job->dst->last_error_unix_ms = clock_unix_ms();
        }
        /* A source that cannot give the image has few more tries: the
         * destination's patience is not spent on it. */
        bool source_done = from_source && source_cannot_give(rc) &&
                           ++job->source_attempts >= ENGINE_SOURCE_ATTEMPTS;
        /* Jobs back off with equal jitter: never sooner than half the ceiling. */
        struct retry_policy policy = {e->config->retry_attempts, e->config->retry_base_ms,
                                      e->config->retry_max_ms, true};
        if (retry_again(&policy, job->attempts) && !source_done) {
            uint64_t delay = retry_delay_ms(&policy, job->attempts - 1);
            log_warn("job failed, retrying dest=%s repo=%s digest=%s attempt=%d delay_ms=%llu "
                     "fault=%s error=\"%s\"",
                     job->dst->cfg->name, job->dst_repo, job->digest ? job->digest : "-",
                     job->attempts, (unsigned long long)delay,
                     from_source                 ? "source"
                     : fault == COPY_FAULT_LOCAL ? "local"
                                                 : "destination",
                     job->last_error);
            e->stats.retries++;
            job->dst->retries++;
            e->stats.pending++;
            job_record(job, JOURNAL_JOB_PENDING);
            job_delay(job, delay);
            engine_pump(e);
            return;
        }
        job_end_failed(job, NULL, fault, rc);
        engine_pump(e);
        return;
    } else if (superseded) {
        if (retries_failed && job->dst->failing > 0)
            job->dst->failing--;
        e->stats.superseded++;
        job->dst->jobs_superseded++;
        job_record(job, JOURNAL_JOB_SUPERSEDED);
    } else {
        if (retries_failed && job->dst->failing > 0)
            job->dst->failing--;
        e->stats.complete++;
        job->dst->jobs_complete++;
        if (!job->is_delete)
            repo_note(job->dst, job->dst_repo);
        engine_observe_latency(job->dst, clock_unix_ms() - job->received_unix_ms);
        job_record(job, JOURNAL_JOB_COMPLETE);
    }
    job->dst->bytes += job->summary.bytes_copied;
    if (rc < 0)
        job->dst->jobs_failed++;
    else if (job->src->n_source_failed > 0)
        engine_source_back(e, job->src);
    job_finish_entries(job);
    job_free(job);
    engine_pump(e);
}

/*
 * The source could not give what the entry named. Is it gone there (the
 * tag deleted or moved on, the image garbage-collected: the job is
 * SUPERSEDED, and what the source says now is journaled), or is the image
 * the source names broken (the job fails with the source's reason)?
 */
static void source_fault_checked(int rc, const char *error, const char *bytes, size_t len,
                                 const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)bytes;
    (void)len;
    (void)error;
    job->fault = COPY_FAULT_SOURCE;
    if (rc == FERRY_ENOTFOUND || (rc == 0 && strcmp(digest, job->digest) != 0)) {
        char *why = rc == FERRY_ENOTFOUND
                        ? xasprintf("gone at the source: %s%s%s is not there now (%s)",
                                    job->src_repo, job->tag != NULL ? ":" : "@",
                                    job->tag != NULL ? job->tag : job->digest, job->source_error)
                        : xasprintf("superseded: gone at the source, its tag %s names %s now",
                                    job->tag, digest);
        log_info("gone at the source dest=%s repo=%s digest=%s seq=%llu reason=\"%s\"",
                 job->dst->cfg->name, job->dst_repo, job->digest, (unsigned long long)job->seq,
                 why);
        free(job->last_error);
        job->last_error = xstrdup(why);
        job->gone = true;
        job->fault = COPY_FAULT_NONE;
        if (job->tag != NULL)
            engine_observe_source(job, rc == 0 ? digest : NULL, media_type, OBSERVED_GONE, why);
        else if (!job_cleanup_after(job))
            job_settle(job, 0, NULL, true);
        free(why);
    } else {
        /* The source names this very image, and cannot give it: its fault. */
        char *why = xasprintf("the source cannot give %s@%s: %s", job->src_repo, job->digest,
                              job->source_error);
        job_settle(job, job->source_rc, why, false);
        free(why);
    }
    /* job_settle() may have freed the job (and its source_error with it). */
}

static void cleanup_deleted(int rc, const char *error, void *arg)
{
    struct eng_job *job = arg;
    if (rc < 0)
        log_warn("cannot remove a manifest the source deleted dest=%s repo=%s digest=%s "
                 "error=\"%s\"",
                 job->dst->cfg->name, job->dst_repo, job->digest, error != NULL ? error : "");
    else
        log_info("removed a manifest the source deleted meanwhile dest=%s repo=%s digest=%s",
                 job->dst->cfg->name, job->dst_repo, job->digest);
    job_settle(job, 0, NULL, true);
}

static void cleanup_checked(int rc, const char *error, const char *bytes, size_t len,
                            const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)error;
    (void)bytes;
    (void)len;
    (void)media_type;
    (void)digest;
    if (rc != FERRY_ENOTFOUND) {
        job_settle(job, 0, NULL, true);
        return;
    }
    /* A manifest DELETE takes every tag on it: a job that saw one in place
     * must not trust that now. */
    job->dst->moves++;
    registry_manifest_delete(job->dst->cl.push, job->dst_repo, job->digest, cleanup_deleted, job);
}

/*
 * The job put its manifests (in this attempt or an earlier one), then ended
 * without its tag: the source's tag gone or moved on, a newer entry owning
 * the tag, or the image gone at the source. If the source no longer holds
 * the manifest either (deleted, or collected, after the entry; a delete by
 * digest may even have run here already), what the job put would stay
 * behind untagged for good. Where its rule propagates deletes, it removes
 * it again, on the source's word (a 404 for the digest), behind the gates it
 * still holds (none when the image was found gone before its tag step).
 */
static bool job_cleanup_after(struct eng_job *job)
{
    if (!job->deletes || !job->put_manifests || job->engine->closing)
        return false;
    job_source_check(job, job->digest, false, cleanup_checked);
    return true;
}

static void job_done(struct copy *c, int rc, const char *error, void *arg)
{
    struct eng_job *job = arg;
    bool superseded = rc == 0 && copy_tag_superseded(c);
    if (rc < 0 && job->fault == COPY_FAULT_NONE)
        job->fault = copy_fault(c);
    job->copy = NULL;
    copy_free(c);
    if (job->summary.manifests_pushed > 0)
        job->put_manifests = true;
    if (rc == 0 && superseded && job_cleanup_after(job))
        return;
    if (rc < 0 && job->fault == COPY_FAULT_SOURCE && source_cannot_give(rc) &&
        !job->engine->closing) {
        /* Ask the source where the entry's tag (or digest) stands now. The
         * destination has nothing more to do with it: its place goes to the
         * next job (a burst of events for images gone at the source would
         * otherwise hold every place while each waits for the source and
         * the journal). */
        sched_done(&job->engine->sched, &job->item, SCHED_NEUTRAL, uv_now(job->engine->loop));
        job->slot_released = true;
        job->source_rc = rc;
        free(job->source_error);
        job->source_error = xstrdup(error != NULL ? error : ferry_strerror(rc));
        job_source_check(job, job->tag != NULL ? job->tag : job->digest, true,
                         source_fault_checked);
        engine_pump(job->engine);
        return;
    }
    job_settle(job, rc, error, superseded);
}

/* ---- delete jobs: only when the source agrees, behind the repository's gate ---- */

static void delete_done(int rc, const char *error, void *arg)
{
    job_settle(arg, rc, error, false);
}

/*
 * The source disagrees with a delete: nothing is deleted, and its entries
 * say why (`ferry journal`, /v1/journal). The job ends SUPERSEDED with the
 * same reason.
 */
static void delete_ignore(struct eng_job *job, const char *why)
{
    struct engine *e = job->engine;
    log_info("delete ignored, the source disagrees dest=%s repo=%s seq=%llu reason=\"%s\"",
             job->dst->cfg->name, job->dst_repo, (unsigned long long)job->seq, why);
    for (size_t i = 0; i < job->n_seqs; i++)
        if (journal_entry_set_ignored(e->journal, job->seqs[i], why) < 0)
            log_warn("cannot mark entry ignored seq=%llu", (unsigned long long)job->seqs[i]);
    free(job->last_error);
    job->last_error = xstrdup(why);
    job->gone = true;
    job_settle(job, 0, NULL, true);
}

/* A tag deleted alone at the destination, or a registry that cannot. */
static void tag_deleted(int rc, const char *error, void *arg)
{
    struct eng_job *job = arg;
    if (rc == FERRY_EUNSUPPORTED) {
        char *why = xasprintf("ignored: the source still holds %s under another name or "
                              "untagged, and %s cannot delete a tag alone",
                              job->delete_digest, job->dst->cfg->name);
        delete_ignore(job, why);
        free(why);
        return;
    }
    job_settle(job, rc, error, false);
}

/* The source's answer for the manifest a delete removes: gone there, gone here. */
static void delete_digest_checked(int rc, const char *error, const char *bytes, size_t len,
                                  const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    const char *target = job->delete_digest;
    (void)bytes;
    (void)len;
    (void)media_type;
    (void)digest;
    if (rc == FERRY_ENOTFOUND) {
        /* Older pushes of it must not put it back (their look may be older). */
        int frc = engine_digest_fence_raise(job, target);
        if (frc < 0) {
            job->fault = COPY_FAULT_LOCAL;
            job_settle(job, frc, "cannot record the manifest's fence", false);
            return;
        }
        /* Distribution deletes manifests, not tags: every tag on it goes too.
         * A job that saw one of them in place must not trust that now. */
        job->dst->moves++;
        registry_manifest_delete(job->dst->cl.push, job->dst_repo, target, delete_done, job);
        return;
    }
    if (rc < 0) {
        char *why = source_check_error(job, target, rc, error);
        job->fault = COPY_FAULT_SOURCE;
        job_settle(job, rc, why, false);
        free(why);
        return;
    }
    if (job->tag != NULL) {
        /* The source dropped the tag but keeps the manifest (untagged, or
         * under other tags): drop the tag alone here, where the registry
         * can; deleting the manifest would remove more than the source did. */
        job->dst->moves++;
        int trc = registry_tag_delete(job->dst->cl.push, job->dst_repo, job->tag, tag_deleted, job);
        if (trc == 0)
            return;
    }
    char *why = xasprintf("ignored: the source still holds %s", target);
    delete_ignore(job, why);
    free(why);
}

/*
 * Remove `target` at the destination once the source agrees it is gone. The
 * look is the job's own, taken behind the repository's gate, never a shared
 * or cached answer: a DELETE cannot be undone by a newer entry.
 */
static void delete_manifest(struct eng_job *job, const char *target)
{
    free(job->delete_digest);
    job->delete_digest = xstrdup(target);
    job_source_check(job, target, false, delete_digest_checked);
}

static void delete_tag_resolved(int rc, const char *error, const char *bytes, size_t len,
                                const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    (void)bytes;
    (void)len;
    (void)media_type;
    if (rc == FERRY_ENOTFOUND) {
        job_settle(job, 0, NULL, false);
        return;
    }
    if (rc < 0 || digest == NULL) {
        job_settle(job, rc < 0 ? rc : FERRY_EPROTO,
                   error ? error : "the destination named no digest for the tag", false);
        return;
    }
    if (job->digest != NULL && strcmp(digest, job->digest) != 0) {
        /* The tag names another image there now: not the one deleted. */
        log_info("tag moved on, not deleted dest=%s repo=%s tag=%s", job->dst->cfg->name,
                 job->dst_repo, job->tag);
        job_settle(job, 0, NULL, true);
        return;
    }
    /* Deleting the manifest takes every tag on it: only when the source no
     * longer holds it either, or the delete would remove more than the
     * source did. */
    delete_manifest(job, digest);
}

/* The source's answer for a deleted tag: gone there, or the delete is moot. */
static void delete_tag_checked(int rc, const char *error, const char *bytes, size_t len,
                               const char *media_type, const char *digest, void *arg)
{
    struct eng_job *job = arg;
    struct engine *e = job->engine;
    (void)bytes;
    (void)len;
    if (rc < 0 && rc != FERRY_ENOTFOUND) {
        char *why = source_check_error(job, job->tag, rc, error);
        job->fault = COPY_FAULT_SOURCE;
        job_settle(job, rc, why, false);
        free(why);
        return;
    }
    if (rc == 0) {
        /* The tag is there at the source: the destination follows it as an
         * update, through an observation journaled like a push. */
        char *why = xasprintf("ignored: the source's tag %s names %s", job->tag, digest);
        engine_observe_source(job, digest, media_type, OBSERVED_IGNORE, why);
        free(why);
        return;
    }
    int frc = engine_fence_take(e, job);
    if (frc < 0) {
        job->fault = COPY_FAULT_LOCAL;
        job_settle(job, frc, "cannot record the tag's fence", false);
        return;
    }
    if (frc == 0) {
        job_settle(job, 0, NULL, true);
        return;
    }
    registry_manifest_head(job->dst->cl.push, job->dst_repo, job->tag, delete_tag_resolved, job);
}

/* Behind the repository's gate: the source must agree, and a newer entry that moved the tag wins.
 */
static void delete_gated(struct eng_job *job)
{
    if (job->tag == NULL) {
        /* Distribution notifies a blob's delete as it does a manifest's
         * (a digest and a repository), and 2.8 unlinks a layer for a
         * manifest DELETE naming it: only a manifest this destination got
         * from Ferry (it has a job record) is deleted by digest. */
        struct journal_job rec;
        if (journal_job_get(job->engine->journal, job->dst->cfg->name, job->dst_repo, job->digest,
                            &rec) < 0) {
            char *why = xasprintf("ignored: Ferry replicated no manifest %s to %s/%s (a blob's "
                                  "delete looks the same)",
                                  job->digest, job->dst->cfg->name, job->dst_repo);
            delete_ignore(job, why);
            free(why);
            return;
        }
        journal_job_release(&rec);
        delete_manifest(job, job->digest);
        return;
    }
    job_source_check(job, job->tag, false, delete_tag_checked);
}

static void delete_start(struct eng_job *job)
{
    job_gates_step(job);
}

static void job_start(struct eng_job *job)
{
    struct engine *e = job->engine;
    job->state = JOB_RUNNING;
    job_unindex(job);
    job->attempts++;
    job->moves_at_start = job->dst->moves;
    e->running++;
    e->stats.running++;
    e->stats.pending--;
    job_record(job, JOURNAL_JOB_IN_PROGRESS);
    if (job->is_delete) {
        delete_start(job);
        return;
    }
    struct copy_spec spec = {
        .src = job->src->cl.pull,
        .dst = job->dst->cl.push,
        .src_repo = job->src_repo,
        .src_reference = job->digest,
        .dst_repo = job->dst_repo,
        .dst_tag = job->tag,
        .no_referrers = !job->referrers,
        .platform = job->platform,
        .jobs = 4,
        .upload = {.mode = (enum registry_upload_mode)job->dst->cfg->upload_mode,
                   .chunk_min = job->dst->cfg->upload_chunk_min,
                   .chunk_max = job->dst->cfg->upload_chunk_max},
        .tag_gate = job->tag != NULL ? job_tag_gate : NULL,
        .tag_gate_arg = job,
        .skip_ping = true,
        /* After a failed attempt the repository may hold what it copied:
         * its blobs are looked for, not taken as missing. */
        .dst_repo_exists = repo_known(job->dst, job->dst_repo) || job->attempts > 1 || job->resumed,
        .trust_missing_tag = true,
        .spool = e->spool,
        .presence = e->presence,
        .blob_gate = job_blob_gate,
        .blob_done = job_blob_done,
        .blob_arg = job,
    };
    copy_start(e->loop, &spec, &job->summary, job_done, job, &job->copy);
}

static void engine_read_journal(struct engine *e, uint64_t upto);

/*
 * One-shot (`ferry sync`): the jobs waiting for a destination whose circuit
 * is open end FAILED now, with the destination's last error, instead of
 * waiting for probes half a minute apart: the run ends, and says why.
 */
static void engine_fail_open(struct engine *e)
{
    bool any = false;
    for (size_t i = 0; i < e->n_registries && !any; i++) {
        const struct sched_dest *d = &e->sched.dests[i];
        any = d->open && (d->runnable > 0 || d->waiting > 0);
    }
    if (!any)
        return;
    struct eng_job **doomed = NULL;
    size_t n = 0;
    for (size_t i = 0; i < e->n_all; i++) {
        struct eng_job *job = e->all[i];
        const struct sched_dest *d = &e->sched.dests[job->dst->index];
        if (job->state == JOB_QUEUED && d->open) {
            doomed = xrealloc(doomed, (n + 1) * sizeof(*doomed));
            doomed[n++] = job;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct eng_job *job = doomed[i];
        sched_remove(&e->sched, &job->item);
        e->stats.pending--;
        char *why =
            xasprintf("destination %s is down (its circuit opened): %s", job->dst->cfg->name,
                      job->dst->last_error != NULL ? job->dst->last_error : "failing");
        job_end_failed(job, why, COPY_FAULT_DESTINATION, 0);
        free(why);
    }
    free(doomed);
}

/*
 * Start what the scheduler lets start. A job may end inside job_start() and
 * ask for a pump again: that call only notes it, and this one goes round once
 * more, so that no caller ever walks a queue another call changed.
 */
static void engine_pump(struct engine *e)
{
    if (e->pumping) {
        e->pump_again = true;
        return;
    }
    e->pumping = true;
    do {
        e->pump_again = false;
        /* The window drained below half: read the next entries first. */
        if (!e->reading && e->started && e->busy_entries < e->window / 2 + 1)
            engine_read_journal(e, journal_last_seq(e->journal));
        if (e->one_shot)
            engine_fail_open(e);
        struct sched_item *it;
        while (!e->closing && (it = sched_next(&e->sched, uv_now(e->loop))) != NULL)
            job_start(job_of(it));
    } while (e->pump_again && !e->closing);
    e->pumping = false;
    engine_arm_timer(e);
    engine_maybe_idle(e);
}

/* ---- single-flight blobs per destination registry ---- */

/*
 * What the engine knows of a blob at a destination registry: an upload or
 * mount in flight (struct blob_flight, gone once it ends), a link being
 * written into one repository (struct link_flight), and, for what landed, the
 * presence cache (which repositories hold it), which outlives the run.
 */

static struct blob_flight *flight_find(struct eng_registry *r, const char *digest)
{
    struct blob_flight *f = NULL;
    HASH_FIND_STR(r->flights, digest, f);
    return f;
}

static void flight_free(struct eng_registry *r, struct blob_flight *f)
{
    HASH_DEL(r->flights, f);
    free(f->digest);
    free(f->repo);
    free(f->waiters);
    free(f);
}

static void waiters_add(struct copy ***list, size_t *n, struct copy *c)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(**list));
    (*list)[(*n)++] = c;
}

static struct link_flight *link_find(struct eng_registry *r, const char *repo, const char *digest)
{
    char *key = xasprintf("%s@%s", repo, digest);
    struct link_flight *l = NULL;
    HASH_FIND_STR(r->links, key, l);
    free(key);
    return l;
}

static void link_start(struct eng_registry *r, const char *repo, const char *digest)
{
    struct link_flight *l = link_find(r, repo, digest);
    if (l == NULL) {
        l = xcalloc(1, sizeof(*l));
        l->key = xasprintf("%s@%s", repo, digest);
        HASH_ADD_KEYPTR(hh, r->links, l->key, strlen(l->key), l);
    }
    l->writers++;
}

static void link_free(struct eng_registry *r, struct link_flight *l)
{
    HASH_DEL(r->links, l);
    free(l->waiters);
    free(l->key);
    free(l);
}

/*
 * A link is whole (or failed): whoever waited for it goes on, taking it as
 * there when it landed and checking with a HEAD when it failed.
 */
static void link_end(struct eng_registry *r, const char *repo, const char *digest, bool ok)
{
    struct link_flight *l = link_find(r, repo, digest);
    if (l == NULL || --l->writers > 0)
        return;
    struct copy **waiters = l->waiters;
    size_t n = l->n_waiters;
    l->waiters = NULL;
    link_free(r, l);
    for (size_t i = 0; i < n; i++) {
        if (ok)
            copy_blob_decide(waiters[i], digest, repo);
        else
            copy_blob_check(waiters[i], digest);
    }
    free(waiters);
}

/*
 * Send `digest` into the copy's repository: mount from `from`, or upload when
 * NULL. An upload is a flight: every other copy that needs the blob at this
 * registry meanwhile waits, then mounts from here. Mounts go in parallel.
 */
static void job_blob_send(struct eng_registry *r, struct copy *c, const char *digest,
                          const char *from)
{
    if (from == NULL) {
        struct blob_flight *f = xcalloc(1, sizeof(*f));
        f->digest = xstrdup(digest);
        f->repo = xstrdup(copy_dst_repo(c));
        HASH_ADD_KEYPTR(hh, r->flights, f->digest, strlen(f->digest), f);
    }
    link_start(r, copy_dst_repo(c), digest);
    copy_blob_decide(c, digest, from);
}

static void job_blob_gate(struct copy *c, const char *digest, enum copy_blob_seen seen, void *arg)
{
    struct eng_job *job = arg;
    struct engine *e = job->engine;
    struct eng_registry *r = job->dst;
    const char *repo = copy_dst_repo(c);
    struct link_flight *l = link_find(r, repo, digest);

    /* Being linked into this repository by another copy: wait until whole. */
    if (l != NULL) {
        waiters_add(&l->waiters, &l->n_waiters, c);
        return;
    }
    if (seen == COPY_BLOB_PRESENT) {
        copy_blob_decide(c, digest, repo);
        return;
    }
    struct blob_flight *f = flight_find(r, digest);
    if (f != NULL) {
        waiters_add(&f->waiters, &f->n_waiters, c);
        return;
    }
    bool holds = false;
    char *other = presence_lookup(e->presence, r->cfg->host, digest, repo, &holds);
    log_debug("blob gate dest=%s repo=%s digest=%s seen=%d holds=%d other=%s", r->cfg->name, repo,
              digest, (int)seen, (int)holds, other != NULL ? other : "-");
    if (holds && seen == COPY_BLOB_ABSENT) {
        /* A HEAD says otherwise: it was deleted since. */
        presence_forget(e->presence, r->cfg->host, digest, repo);
        holds = false;
    }
    if (holds) {
        copy_blob_decide(c, digest, repo);
    } else if (other != NULL) {
        job_blob_send(r, c, digest, other);
    } else if (seen == COPY_BLOB_UNCHECKED) {
        copy_blob_check(c, digest);
    } else {
        job_blob_send(r, c, digest, NULL);
    }
    free(other);
}

static void job_blob_done(struct copy *c, const char *digest, bool ok, void *arg)
{
    struct eng_job *job = arg;
    struct eng_registry *r = job->dst;
    const char *repo = copy_dst_repo(c);
    struct blob_flight *f = flight_find(r, digest);
    struct copy **waiters = NULL;
    size_t n = 0;
    char *from = NULL;

    /* Take this copy's flight down first: what follows may end other
     * copies at once (a copy that failed meanwhile answers from inside
     * copy_blob_decide()), and they come back here. */
    bool owner = f != NULL && strcmp(f->repo, repo) == 0;
    if (owner) {
        waiters = f->waiters;
        n = f->n_waiters;
        from = ok ? xstrdup(f->repo) : NULL;
        f->waiters = NULL;
        f->n_waiters = 0;
        flight_free(r, f);
    }
    link_end(r, repo, digest, ok);
    if (ok) {
        for (size_t i = 0; i < n; i++) {
            const char *wrepo = copy_dst_repo(waiters[i]);
            struct link_flight *l = link_find(r, wrepo, digest);
            if (strcmp(from, wrepo) == 0)
                copy_blob_decide(waiters[i], digest, from);
            else if (l != NULL) /* another waiter is mounting it there: after it */
                waiters_add(&l->waiters, &l->n_waiters, waiters[i]);
            else
                job_blob_send(r, waiters[i], digest, from);
        }
    } else {
        /* The upload failed: the first waiter that still can tries its own,
         * the others wait for it. */
        size_t i = 0;
        while (i < n) {
            job_blob_send(r, waiters[i++], digest, NULL);
            struct blob_flight *nf = flight_find(r, digest);
            if (nf == NULL)
                continue; /* that copy had failed already: the next one tries */
            for (; i < n; i++)
                waiters_add(&nf->waiters, &nf->n_waiters, waiters[i]);
        }
    }
    free(waiters);
    free(from);
}

/* ---- dispatch ---- */

static char *job_key(const char *dest, const char *repo, const char *digest, const char *tag,
                     size_t *len)
{
    size_t d = strlen(dest) + 1, r = strlen(repo) + 1, g = strlen(digest) + 1;
    size_t t = tag != NULL ? strlen(tag) : 0;
    char *key = xmalloc(d + r + g + t + 1);
    memcpy(key, dest, d);
    memcpy(key + d, repo, r);
    memcpy(key + d + r, digest, g);
    if (tag != NULL)
        memcpy(key + d + r + g, tag, t);
    key[d + r + g + t] = tag != NULL ? '\0' : '\1'; /* by digest only differs from tag "" */
    *len = d + r + g + t + 1;
    return key;
}

static struct eng_job *engine_find_queued(struct engine *e, const char *dest, const char *repo,
                                          const char *digest, const char *tag)
{
    size_t len;
    char *key = job_key(dest, repo, digest, tag, &len);
    struct eng_job *j = NULL;
    HASH_FIND(hh, e->queued, key, len, j);
    free(key);
    return j;
}

/* A new queued job: entries for the same image and tag coalesce into it. */
static void job_index(struct eng_job *job)
{
    struct engine *e = job->engine;
    job->key = job_key(job->dst->cfg->name, job->dst_repo, job->digest, job->tag, &job->key_len);
    struct eng_job *old = NULL;
    HASH_FIND(hh, e->queued, job->key, job->key_len, old);
    if (old != NULL)
        job_unindex(old);
    HASH_ADD_KEYPTR(hh, e->queued, job->key, job->key_len, job);
    job->in_table = true;
}

static struct eng_job *job_new(struct engine *e, struct eng_registry *src, struct eng_registry *dst,
                               const struct journal_entry *en, char *dst_repo)
{
    struct eng_job *job = xcalloc(1, sizeof(*job));
    job->engine = e;
    job->src = src;
    job->dst = dst;
    job->src_repo = xstrdup(en->repository);
    job->dst_repo = dst_repo;
    job->digest = xstrdup(en->digest);
    job->tag = xstrdup(en->tag);
    job->created_unix_ms = clock_unix_ms();
    job->received_unix_ms = en->received_unix_ms > 0 ? en->received_unix_ms : job->created_unix_ms;
    dst->jobs_created++;
    e->all = xrealloc(e->all, (e->n_all + 1) * sizeof(*e->all));
    job->all_index = e->n_all;
    e->all[e->n_all++] = job;
    e->stats.jobs++;
    e->stats.pending++;
    return job;
}

static void job_attach(struct eng_job *job, struct eng_entry *entry, uint64_t seq)
{
    if (seq > job->seq)
        job->seq = seq;
    job->resumed = job->resumed || entry->detached;
    job->retries_failed = job->retries_failed || entry->retries_failed;
    /* The entries to mark when the job is ignored: the newest few are enough. */
    if (job->n_seqs < 64)
        job->seqs = xrealloc(job->seqs, (job->n_seqs + 1) * sizeof(*job->seqs));
    else
        job->n_seqs--;
    job->seqs[job->n_seqs++] = seq;
    /* A parked job holds no entry: the parked cursor stands for it. */
    if (job->parked)
        return;
    job->entries = xrealloc(job->entries, (job->n_entries + 1) * sizeof(*job->entries));
    job->entries[job->n_entries++] = entry;
    if (entry->jobs_left++ == 0 && !entry->detached)
        job->engine->busy_entries++;
}

/*
 * Did a job for `en` at this destination end before the last stop? Its
 * status record says so when it is terminal, serves this entry or a newer
 * one, and names the entry's tag. Anything else runs again: a job that
 * finds its work done ends at once.
 */
static bool engine_job_ended(struct engine *e, const char *dest, const char *dst_repo,
                             const struct journal_entry *en)
{
    struct journal_job rec;
    char *by_tag = en->digest == NULL ? xasprintf("tag:%s", en->tag) : NULL;
    int rc =
        journal_job_get(e->journal, dest, dst_repo, en->digest != NULL ? en->digest : by_tag, &rec);
    free(by_tag);
    if (rc < 0)
        return false;
    bool ended = (rec.state == JOURNAL_JOB_COMPLETE || rec.state == JOURNAL_JOB_SUPERSEDED ||
                  rec.state == JOURNAL_JOB_FAILED) &&
                 rec.seq >= en->seq;
    if (ended && en->tag != NULL) {
        bool named = false;
        for (size_t i = 0; i < rec.n_tags; i++)
            named = named || strcmp(rec.tags[i], en->tag) == 0;
        ended = named;
    }
    journal_job_release(&rec);
    return ended;
}

/* A delete goes to the destinations of the rules that propagate deletes. */
static void engine_dispatch_delete(struct engine *e, const struct journal_entry *en,
                                   struct eng_entry *entry, const char *only_dest)
{
    struct eng_registry *src = engine_registry(e, en->source);
    if (src == NULL || (en->digest == NULL && en->tag == NULL))
        return;
    for (size_t r = 0; r < e->config->n_rules; r++) {
        const struct config_rule *rule = &e->config->rules[r];
        if (!rule->deletes || strcmp(rule->source, en->source) != 0 ||
            !config_rule_selects(rule, en->repository, en->tag))
            continue;
        for (size_t d = 0; d < rule->n_destinations; d++) {
            if (only_dest != NULL && strcmp(rule->destinations[d].registry, only_dest) != 0)
                continue;
            struct eng_registry *dst = engine_registry(e, rule->destinations[d].registry);
            char *dst_repo = config_destination_repository(&rule->destinations[d], en->repository);
            if (dst == NULL || dst_repo == NULL) {
                free(dst_repo);
                continue;
            }
            if (e->redoing && engine_job_ended(e, dst->cfg->name, dst_repo, en)) {
                free(dst_repo);
                continue;
            }
            struct eng_job *job = job_new(e, src, dst, en, dst_repo);
            job->is_delete = true;
            job_attach(job, entry, en->seq);
            job_enqueue(job);
            job_record(job, JOURNAL_JOB_PENDING);
        }
    }
}

/*
 * Make the jobs of one entry: for every destination, or only `only_dest`
 * for a retry of an entry the cursor has passed (its eng_entry then stays
 * out of the cursor's list).
 */
static void engine_dispatch_to(struct engine *e, const struct journal_entry *en,
                               const char *only_dest, bool was_failed)
{
    struct eng_entry *entry = xcalloc(1, sizeof(*entry));
    entry->seq = en->seq;
    if (only_dest != NULL || e->redoing) {
        entry->detached = true;
        entry->retries_failed = was_failed;
    } else {
        if (e->entries_tail != NULL)
            e->entries_tail->next = entry;
        else
            e->entries_head = entry;
        e->entries_tail = entry;
        e->live_entries++;
        e->dispatched_seq = en->seq;
        e->stats.dispatched++;
    }

    /* Referrer fallback tags travel with their subject's copy. */
    if (reference_is_referrers_tag(en->tag))
        goto out;
    if (en->action == JOURNAL_DELETE) {
        engine_dispatch_delete(e, en, entry, only_dest);
        goto out;
    }
    if (en->action != JOURNAL_PUSH || en->digest == NULL)
        goto out;
    struct eng_registry *src = engine_registry(e, en->source);
    if (src == NULL)
        goto out;
    for (size_t r = 0; r < e->config->n_rules; r++) {
        const struct config_rule *rule = &e->config->rules[r];
        if (strcmp(rule->source, en->source) != 0 ||
            !config_rule_selects(rule, en->repository, en->tag))
            continue;
        for (size_t d = 0; d < rule->n_destinations; d++) {
            const struct config_destination *dest = &rule->destinations[d];
            if (only_dest != NULL && strcmp(dest->registry, only_dest) != 0)
                continue;
            struct eng_registry *dst = engine_registry(e, dest->registry);
            char *dst_repo = config_destination_repository(dest, en->repository);
            if (dst == NULL || dst_repo == NULL ||
                (e->redoing && engine_job_ended(e, dst->cfg->name, dst_repo, en))) {
                free(dst_repo);
                continue;
            }
            struct eng_job *job =
                engine_find_queued(e, dest->registry, dst_repo, en->digest, en->tag);
            if (job == NULL) {
                job = job_new(e, src, dst, en, dst_repo);
                job->referrers = rule->referrers;
                job->overwrite = rule->overwrite;
                job->deletes = rule->deletes;
                /* One platform is copied out of an index as its own manifest;
                 * several would need a new index, and Ferry never rewrites one. */
                if (rule->n_platforms == 1)
                    job->platform = xstrdup(rule->platforms[0]);
                else if (rule->n_platforms > 1)
                    log_warn("rule=%s lists several platforms: copying whole indexes", rule->name);
                job_index(job);
                job_enqueue(job);
            } else {
                free(dst_repo);
            }
            /* Coalesced: the job now serves the newest entry that named it. */
            job_attach(job, entry, en->seq);
            job_record(job, JOURNAL_JOB_PENDING);
        }
    }
out:
    if (entry->detached && entry->jobs_left == 0)
        free(entry);
}

static void engine_dispatch(struct engine *e, const struct journal_entry *en)
{
    engine_dispatch_to(e, en, NULL, false);
}

/* Run entry `seq` again for destination `dest`, with its original seq (fences). */
static void engine_requeue(struct engine *e, uint64_t seq, const char *dest, bool was_failed)
{
    struct journal_entry en;
    if (e->closing || journal_get(e->journal, seq, &en) < 0)
        return;
    engine_dispatch_to(e, &en, dest, was_failed);
    journal_entry_release(&en);
}

/*
 * At start: an unfinished job that no rule selects any more (the config
 * changed) ends SUPERSEDED and says why; jobs marked PENDING behind the
 * cursor (by `ferry retry`) run again.
 */
static int engine_take_retry(const struct journal_job *job, void *arg)
{
    struct engine *e = arg;
    bool unfinished = job->state == JOURNAL_JOB_PENDING || job->state == JOURNAL_JOB_IN_PROGRESS;
    if (unfinished && job->seq != 0) {
        struct journal_entry en;
        if (journal_get(e->journal, job->seq, &en) == 0) {
            bool selected =
                config_sends(e->config, en.source, en.repository, en.tag,
                             en.action == JOURNAL_DELETE, job->destination, job->repository);
            journal_entry_release(&en);
            if (!selected) {
                struct journal_job rec = *job;
                rec.state = JOURNAL_JOB_SUPERSEDED;
                rec.last_error = "no rule selects it now: the configuration changed";
                rec.updated_unix_ms = rec.completed_unix_ms = clock_unix_ms();
                if (journal_job_put(e->journal, &rec) < 0)
                    log_warn("cannot record job status dest=%s repo=%s", job->destination,
                             job->repository);
                log_info("job dropped, no rule selects it now dest=%s repo=%s digest=%s",
                         job->destination, job->repository, job->digest);
                return 0;
            }
        }
    }
    if (job->state == JOURNAL_JOB_FAILED) {
        struct eng_registry *r = engine_registry(e, job->destination);
        if (r != NULL)
            r->failing++;
    }
    if (job->state == JOURNAL_JOB_PENDING && job->seq != 0 && job->seq <= e->parked_cursor)
        engine_requeue(e, job->seq, job->destination, false);
    return 0;
}

/* Entries after the parked cursor, up to the engine's: what did not end runs again. */
static int engine_take_redo(const struct journal_entry *en, void *arg)
{
    struct engine *e = arg;
    if (en->seq > e->cursor)
        return 1;
    engine_dispatch_to(e, en, NULL, false);
    return 0;
}

static int engine_take(const struct journal_entry *en, void *arg)
{
    engine_dispatch(arg, en);
    return 0;
}

/*
 * Take entries past what was dispatched, up to a window of the config's engine_window
 * unfinished ones: a backfill of a million tags is read as the work goes, not
 * held in memory at once.
 */
static void engine_read_journal(struct engine *e, uint64_t upto)
{
    if (e->closing || e->reading || upto <= e->dispatched_seq)
        return;
    /* Finished entries wait in the list behind the oldest held one: a job
     * that runs long (a huge blob to a slow registry) lets go of its entry,
     * so that the list stays bounded and the cursor moves on. */
    if (e->live_entries >= e->window * ENGINE_LIST_FACTOR)
        engine_unblock_head(e);
    if (e->busy_entries >= e->window || e->live_entries >= e->window * ENGINE_LIST_FACTOR)
        return;
    if (e->parked >= ENGINE_PARKED_MAX) {
        log_warn("too many jobs wait for retries or open circuits, reading stops parked=%zu",
                 e->parked);
        return;
    }
    e->reading = true;
    journal_scan(e->journal, e->dispatched_seq, e->window - e->busy_entries, engine_take, e);
    engine_advance_cursor(e);
    e->reading = false;
    engine_pump(e);
}

static void engine_maybe_idle(struct engine *e)
{
    if (e->idle_cb == NULL || !e->started || e->closing)
        return;
    if (e->n_all > 0 || e->running > 0)
        return;
    if (e->dispatched_seq < journal_last_seq(e->journal))
        return;
    e->idle_cb(e, e->cb_arg);
}

/* ---- lifecycle ---- */

/* True when some source's rules name more than one destination registry. */
static bool engine_fans_out(const struct config *config)
{
    for (size_t i = 0; i < config->n_rules; i++) {
        const struct config_rule *a = &config->rules[i];
        for (size_t j = i; j < config->n_rules; j++) {
            const struct config_rule *b = &config->rules[j];
            if (strcmp(a->source, b->source) != 0)
                continue;
            for (size_t x = 0; x < a->n_destinations; x++)
                for (size_t y = 0; y < b->n_destinations; y++)
                    if (strcmp(a->destinations[x].registry, b->destinations[y].registry) != 0)
                        return true;
        }
    }
    return false;
}

int engine_new(uv_loop_t *loop, const struct config *config, struct journal *journal,
               struct journal_committer *committer, struct engine **out)
{
    struct engine *e = xcalloc(1, sizeof(*e));
    e->loop = loop;
    e->config = config;
    e->journal = journal;
    e->committer = committer;
    uv_timer_init(loop, &e->timer);
    e->timer.data = e;
    uv_timer_init(loop, &e->close_timer);
    e->close_timer.data = e;
    e->registries =
        xcalloc(config->n_registries ? config->n_registries : 1, sizeof(*e->registries));
    int *limits = xcalloc(config->n_registries ? config->n_registries : 1, sizeof(*limits));
    for (size_t i = 0; i < config->n_registries; i++) {
        const struct config_registry *cfg = &config->registries[i];
        struct eng_registry *r = &e->registries[e->n_registries++];
        r->cfg = cfg;
        r->index = i;
        /* The jobs of one entry (one per destination) read its manifests once. */
        struct clients_options copts = {.push = true, .pull_cache_bytes = ENGINE_CACHE_BYTES};
        clients_open(loop, cfg, &copts, &r->cl);
        limits[i] = r->cl.concurrency;
    }
    /*
     * Blobs going to several destinations are read from the source once,
     * through the spool. With one destination per source a blob is uploaded
     * once and mounted after that, so it streams through a ring instead: the
     * spool's page-cache writes and reads were a fifth of Ferry's CPU.
     */
    if (engine_fans_out(config)) {
        char *dir = xasprintf("%s/spool", config->data_dir);
        char *err = NULL;
        if (spool_new(dir, config->spool_max_bytes, &e->spool, &err) < 0) {
            log_warn("no spool, every destination reads the source error=\"%s\"", err);
            free(err);
            e->spool = NULL;
        }
        free(dir);
    }
    /* What landed where, across runs: spares HEADs and finds mount sources. */
    char *pdir = xasprintf("%s/presence", config->data_dir);
    char *perr = NULL;
    if (presence_open(pdir, &e->presence, &perr) < 0) {
        log_warn("no presence cache, every blob is checked with a HEAD dir=%s error=\"%s\"", pdir,
                 perr != NULL ? perr : "");
        free(perr);
        e->presence = NULL;
    }
    free(pdir);
    e->window = (size_t)config->engine_window;
    sched_init(&e->sched, e->n_registries, limits, config->circuit_failures,
               config->circuit_open_ms);
    free(limits);
    journal_cursor_get(journal, ENGINE_CURSOR, &e->cursor);
    if (journal_cursor_find(journal, ENGINE_PARKED_CURSOR, &e->parked_cursor) < 0 ||
        e->parked_cursor > e->cursor)
        e->parked_cursor = e->cursor;
    e->dispatched_seq = e->cursor;
    e->stats.cursor = e->cursor;
    *out = e;
    return 0;
}

struct registry *engine_registry_client(struct engine *e, const char *name, bool push)
{
    struct eng_registry *r = engine_registry(e, name);
    if (r == NULL)
        return NULL;
    return push ? r->cl.push : r->cl.pull;
}

void engine_set_callbacks(struct engine *e, engine_idle_cb idle, engine_job_cb job, void *arg)
{
    e->idle_cb = idle;
    e->job_cb = job;
    e->cb_arg = arg;
}

void engine_start(struct engine *e)
{
    e->started = true;
    journal_job_scan(e->journal, engine_take_retry, e);
    if (e->parked_cursor < e->cursor) {
        log_info("running again what waited at the last stop from=%llu to=%llu",
                 (unsigned long long)e->parked_cursor + 1, (unsigned long long)e->cursor);
        e->redoing = true;
        journal_scan(e->journal, e->parked_cursor, 0, engine_take_redo, e);
        e->redoing = false;
    }
    engine_read_journal(e, journal_last_seq(e->journal));
    engine_pump(e);
}

void engine_notify(struct engine *e, uint64_t seq)
{
    if (!e->started)
        return;
    engine_read_journal(e, seq);
    engine_maybe_idle(e);
}

void engine_get_stats(const struct engine *e, struct engine_stats *out)
{
    *out = e->stats;
}

/* Names from the registry's listings that its clients found invalid and skipped. */
static uint64_t engine_registry_invalid(const struct eng_registry *r)
{
    struct registry_stats pull = {0}, push = {0};
    if (r->cl.pull != NULL)
        registry_get_stats(r->cl.pull, &pull);
    if (r->cl.push != NULL)
        registry_get_stats(r->cl.push, &push);
    return pull.invalid_names + push.invalid_names;
}

bool engine_destination_stats(const struct engine *e, size_t i,
                              struct engine_destination_stats *out)
{
    if (i >= e->n_registries)
        return false;
    const struct eng_registry *r = &e->registries[i];
    memset(out, 0, sizeof(*out));
    out->name = r->cfg->name;
    out->host = r->cfg->host;
    out->jobs = r->jobs_created;
    out->finished = r->jobs_complete + r->jobs_superseded + r->jobs_failed;
    out->failed = r->jobs_failed;
    out->failing = r->failing;
    out->complete = r->jobs_complete;
    out->superseded = r->jobs_superseded;
    out->retries = r->retries;
    out->bytes = r->bytes;
    const struct sched_dest *d = &e->sched.dests[i];
    out->circuit = !d->open                           ? ENGINE_CIRCUIT_CLOSED
                   : uv_now(e->loop) >= d->open_until ? ENGINE_CIRCUIT_HALF_OPEN
                                                      : ENGINE_CIRCUIT_OPEN;
    out->last_error = r->last_error;
    out->last_error_unix_ms = r->last_error_unix_ms;
    for (size_t k = 0; k < e->n_all; k++) {
        const struct eng_job *job = e->all[k];
        if (job->dst != r)
            continue;
        out->backlog++;
        if (job->state == JOB_RUNNING)
            out->running++;
        if (out->oldest_unix_ms == 0 || job->received_unix_ms < out->oldest_unix_ms)
            out->oldest_unix_ms = job->received_unix_ms;
    }
    memcpy(out->latency_buckets, r->latency_buckets, sizeof(out->latency_buckets));
    out->latency_sum = r->latency_sum;
    out->latency_count = r->latency_count;
    http_client_stats(r->cl.http, &out->http);
    http_stats_add(&out->http, &r->http_base);
    out->invalid_names = r->invalid_base + engine_registry_invalid(r);
    return true;
}

struct engine_counters {
    struct engine_stats stats;
    struct eng_registry *registries; /* the counting fields only; names by cfg */
    char **names;
    size_t n;
};

struct engine_counters *engine_counters_save(const struct engine *e)
{
    struct engine_counters *c = xcalloc(1, sizeof(*c));
    c->stats = e->stats;
    c->n = e->n_registries;
    c->registries = xcalloc(c->n ? c->n : 1, sizeof(*c->registries));
    c->names = xcalloc(c->n ? c->n : 1, sizeof(*c->names));
    for (size_t i = 0; i < c->n; i++) {
        const struct eng_registry *r = &e->registries[i];
        struct eng_registry *s = &c->registries[i];
        c->names[i] = xstrdup(r->cfg->name);
        s->jobs_created = r->jobs_created;
        s->jobs_failed = r->jobs_failed;
        s->bytes = r->bytes;
        s->jobs_complete = r->jobs_complete;
        s->jobs_superseded = r->jobs_superseded;
        s->retries = r->retries;
        s->last_error = r->last_error != NULL ? xstrdup(r->last_error) : NULL;
        s->last_error_unix_ms = r->last_error_unix_ms;
        memcpy(s->latency_buckets, r->latency_buckets, sizeof(s->latency_buckets));
        s->latency_sum = r->latency_sum;
        s->latency_count = r->latency_count;
        http_client_stats(r->cl.http, &s->http_base);
        http_stats_add(&s->http_base, &r->http_base);
        s->invalid_base = r->invalid_base + engine_registry_invalid(r);
    }
    return c;
}

void engine_counters_restore(struct engine *e, struct engine_counters *c)
{
    if (c == NULL)
        return;
    /* Totals go on; what is live now (pending, running, the cursor) is the new engine's. */
    if (e != NULL) {
        e->stats.dispatched += c->stats.dispatched;
        e->stats.jobs += c->stats.jobs;
        e->stats.complete += c->stats.complete;
        e->stats.failed += c->stats.failed;
        e->stats.superseded += c->stats.superseded;
        e->stats.retries += c->stats.retries;
        e->stats.bytes += c->stats.bytes;
        e->stats.circuits_opened += c->stats.circuits_opened;
    }
    for (size_t i = 0; i < c->n; i++) {
        struct eng_registry *s = &c->registries[i];
        struct eng_registry *r = e != NULL ? engine_registry(e, c->names[i]) : NULL;
        if (r != NULL) {
            r->jobs_created += s->jobs_created;
            r->jobs_failed += s->jobs_failed;
            r->bytes += s->bytes;
            r->jobs_complete += s->jobs_complete;
            r->jobs_superseded += s->jobs_superseded;
            r->retries += s->retries;
            if (r->last_error == NULL && s->last_error != NULL) {
                r->last_error = s->last_error;
                r->last_error_unix_ms = s->last_error_unix_ms;
                s->last_error = NULL;
            }
            for (size_t k = 0; k <= ENGINE_LATENCY_BUCKETS; k++)
                r->latency_buckets[k] += s->latency_buckets[k];
            r->latency_sum += s->latency_sum;
            r->latency_count += s->latency_count;
            http_stats_add(&r->http_base, &s->http_base);
            r->invalid_base += s->invalid_base;
        }
        free(s->last_error);
        free(c->names[i]);
    }
    free(c->registries);
    free(c->names);
    free(c);
}

static void engine_http_closed(void *arg)
{
    struct engine *e = arg;
    if (--e->closing_handles > 0)
        return;
    for (size_t i = 0; i < e->n_registries; i++) {
        free(e->registries[i].failed_seqs);
        free(e->registries[i].source_failed);
        repos_clear(&e->registries[i]);
        free(e->registries[i].last_error);
        struct link_flight *l, *ltmp;
        HASH_ITER(hh, e->registries[i].links, l, ltmp)
        {
            link_free(&e->registries[i], l);
        }
        struct blob_flight *f, *ftmp;
        HASH_ITER(hh, e->registries[i].flights, f, ftmp)
        {
            flight_free(&e->registries[i], f);
        }
    }
    free(e->registries);
    spool_free(e->spool);
    presence_close(e->presence);
    while (e->entries_head != NULL) {
        struct eng_entry *next = e->entries_head->next;
        free(e->entries_head);
        e->entries_head = next;
    }
    while (e->n_all > 0)
        job_free(e->all[0]);
    free(e->all);
    sched_free(&e->sched);
    void (*cb)(void *) = e->close_cb;
    void *arg2 = e->close_arg;
    free(e);
    if (cb != NULL)
        cb(arg2);
}

static void engine_timer_closed(uv_handle_t *handle)
{
    engine_http_closed(handle->data);
}

static void engine_finish_close(struct engine *e)
{
    if (e->counters_out != NULL)
        *e->counters_out = engine_counters_save(e);
    e->closing_handles = (int)e->n_registries + 2;
    uv_close((uv_handle_t *)&e->close_timer, engine_timer_closed);
    for (size_t i = 0; i < e->n_registries; i++) {
        clients_close(&e->registries[i].cl, engine_http_closed, e);
    }
    uv_close((uv_handle_t *)&e->timer, engine_timer_closed);
}

static void engine_close_wait(uv_timer_t *timer)
{
    struct engine *e = timer->data;
    if (e->running > 0 && !e->close_cut &&
        uv_now(e->loop) >= e->close_started_ms + ENGINE_CLOSE_GRACE_MS) {
        /* The grace is over: cut what is in flight. The jobs end PENDING. */
        log_warn("shutdown: cutting running jobs running=%d", e->running);
        e->close_cut = true;
        for (size_t i = 0; i < e->n_registries; i++)
            http_client_abort(e->registries[i].cl.http);
    }
    if (e->running > 0)
        return;
    uv_timer_stop(timer);
    uv_timer_stop(&e->timer);
    engine_finish_close(e);
}

void engine_set_one_shot(struct engine *e, bool one_shot)
{
    e->one_shot = one_shot;
}

void engine_close_saving(struct engine *e, struct engine_counters **counters)
{
    e->counters_out = counters;
}

void engine_close(struct engine *e, void (*cb)(void *arg), void *arg)
{
    e->closing = true;
    e->close_cb = cb;
    e->close_arg = arg;
    uv_timer_stop(&e->timer);
    /* Queued and waiting jobs are PENDING already; the parked ones are run
     * again from the parked cursor by the next start. */
    engine_parked_update(e, true);
    e->close_started_ms = uv_now(e->loop);
    if (e->running == 0) {
        engine_finish_close(e);
        return;
    }
    /* Running copies end on their own (bounded by their retries). A timer of
     * its own: job endings re-arm the main one. */
    uv_timer_start(&e->close_timer, engine_close_wait, 50, 50);
}

struct retry_match {
    const char *destination;
    const char *repository;
    const char *digest;
    struct journal_job *jobs;
    size_t n;
};

static int retry_collect(const struct journal_job *job, void *arg)
{
    struct retry_match *m = arg;
    if (job->state != JOURNAL_JOB_FAILED || job->seq == 0)
        return 0;
    if ((m->destination != NULL && strcmp(job->destination, m->destination) != 0) ||
        (m->repository != NULL && strcmp(job->repository, m->repository) != 0) ||
        (m->digest != NULL && (job->digest == NULL || strcmp(job->digest, m->digest) != 0)))
        return 0;
    m->jobs = xrealloc(m->jobs, (m->n + 1) * sizeof(*m->jobs));
    struct journal_job *copy = &m->jobs[m->n++];
    memset(copy, 0, sizeof(*copy));
    copy->destination = xstrdup(job->destination);
    copy->repository = xstrdup(job->repository);
    copy->digest = xstrdup(job->digest);
    copy->seq = job->seq;
    return 0;
}

size_t engine_retry(struct engine *e, const char *destination, const char *repository,
                    const char *digest)
{
    struct retry_match m = {.destination = destination, .repository = repository, .digest = digest};
    if (e->closing)
        return 0;
    journal_job_scan(e->journal, retry_collect, &m);
    for (size_t i = 0; i < m.n; i++) {
        log_info("retry requested dest=%s repo=%s digest=%s seq=%llu", m.jobs[i].destination,
                 m.jobs[i].repository, m.jobs[i].digest ? m.jobs[i].digest : "-",
                 (unsigned long long)m.jobs[i].seq);
        engine_requeue(e, m.jobs[i].seq, m.jobs[i].destination, true);
        free(m.jobs[i].destination);
        free(m.jobs[i].repository);
        free(m.jobs[i].digest);
    }
    free(m.jobs);
    engine_pump(e);
    return m.n;
}
