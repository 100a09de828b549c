/*
 * engine_jobs.c: a job's life after dispatch. Its status records; parking (a
 * job that waits for a retry or an open circuit lets its entries go, and the
 * parked cursor keeps them for the next start); how an attempt settles
 * (retried with backoff, or ended COMPLETE, SUPERSEDED or FAILED); the
 * circuits as the scheduler reports them, and the FAILED entries that come
 * back when a destination's circuit closes or a source answers again; and a
 * push refused for a missing repository, which the destination's
 * create_repository hook creates before the job runs again once.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "journal/journal.h"
#include "registry/retry.h"
#include "replication/engine_int.h"

/* ---- status records ---- */

void engine_job_record(struct eng_job *job, enum journal_job_state state)
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
    rec.node = (char *)e->node;
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
    if (e->records != NULL)
        records_put(e->records, &rec);
    else if (journal_job_put(e->journal, &rec) < 0)
        log_warn("cannot record job status dest=%s repo=%s digest=%s", rec.destination,
                 rec.repository, rec.digest);
    bool ended = state != JOURNAL_JOB_PENDING && state != JOURNAL_JOB_IN_PROGRESS;
    if (ended)
        engine_job_unclaim(job);
    if (e->job_cb != NULL && state != JOURNAL_JOB_PENDING && state != JOURNAL_JOB_IN_PROGRESS)
        e->job_cb(e, &rec, e->cb_arg);
    free(by_tag);
}

/* ---- claims: a cluster's waiting jobs ---- */

/* The claim of `job` made at `seq`: its destination, repository, digest, tag and that seq. */
static char *job_claim_key(const struct eng_job *job, uint64_t seq)
{
    return xasprintf("%s\n%s\n%s\n%s\n%" PRIu64, job->dst->cfg->name, job->dst_repo,
                     job->digest != NULL ? job->digest : "-", job->tag != NULL ? job->tag : "",
                     seq);
}

/*
 * A cluster node's job that settles its entry to wait says so first: the
 * claim names this node and the entry, so that another node runs the job if
 * this one dies, and this node runs it again if it restarts.
 */
static void job_claim(struct eng_job *job)
{
    struct engine *e = job->engine;
    if (e->work == NULL)
        return;
    /* Put at every wait (a claim taken over or dropped meanwhile is made
     * again); one made at an older entry is replaced. */
    if (job->claim_seq != job->seq)
        engine_job_unclaim(job);
    char *key = job_claim_key(job, job->seq);
    struct journal_claim c = {.destination = job->dst->cfg->name, .seq = job->seq, .node = e->node};
    if (journal_claim_put(e->journal, key, &c) < 0)
        log_warn("cannot claim a waiting job: if this node dies before it runs, a retry runs it "
                 "dest=%s repo=%s seq=%" PRIu64,
                 job->dst->cfg->name, job->dst_repo, job->seq);
    else
        job->claim_seq = job->seq;
    free(key);
}

void engine_job_unclaim(struct eng_job *job)
{
    if (job->claim_seq == 0)
        return;
    char *key = job_claim_key(job, job->claim_seq);
    if (journal_claim_drop(job->engine->journal, key) < 0)
        log_warn("cannot drop a job's claim (it runs once more after a restart) dest=%s repo=%s "
                 "seq=%" PRIu64,
                 job->dst->cfg->name, job->dst_repo, job->claim_seq);
    free(key);
    job->claim_seq = 0;
}

/* What engine_claims_run() takes up: its claims, copied. */
struct claims_taken {
    const struct engine *e;
    bool (*gone)(const char *node, void *arg);
    void *arg;
    struct claim_copy {
        char *key, *destination;
        uint64_t seq;
        char *node;
    } * items;
    size_t n;
};

static int claims_collect(const char *key, const struct journal_claim *c, void *arg)
{
    struct claims_taken *t = arg;
    bool mine = strcmp(c->node, t->e->node) == 0;
    if (t->gone == NULL ? !mine : (mine || !t->gone(c->node, t->arg)))
        return 0;
    t->items = xrealloc(t->items, (t->n + 1) * sizeof(*t->items));
    t->items[t->n++] = (struct claim_copy){.key = xstrdup(key),
                                           .destination = xstrdup(c->destination),
                                           .seq = c->seq,
                                           .node = xstrdup(c->node)};
    return t->n >= ENGINE_PARKED_MAX;
}

int engine_claims_run(struct engine *e, bool (*gone)(const char *node, void *arg), void *arg)
{
    struct claims_taken t = {.e = e, .gone = gone, .arg = arg};
    if (e->closing || e->work == NULL)
        return 0;
    int rc = journal_claim_scan(e->journal, claims_collect, &t);
    if (rc < 0)
        log_warn("cannot read every claim, running those read error=\"%s\"", ferry_strerror(rc));
    for (size_t i = 0; i < t.n; i++) {
        struct claim_copy *c = &t.items[i];
        if (gone != NULL) {
            /* Ours from now on: if this node dies too, a third takes it. */
            log_info("taking up a job of a node that is gone node=%s dest=%s seq=%" PRIu64, c->node,
                     c->destination, c->seq);
            struct journal_claim mine = {
                .destination = c->destination, .seq = c->seq, .node = e->node};
            if (journal_claim_put(e->journal, c->key, &mine) < 0)
                log_warn("cannot take a claim over dest=%s seq=%" PRIu64, c->destination, c->seq);
        }
        /* Its job drops the claim when it ends (a detached entry: job_attach). */
        engine_requeue(e, c->seq, c->destination, false);
        free(c->key);
        free(c->destination);
        free(c->node);
    }
    free(t.items);
    engine_pump(e);
    return rc < 0 ? rc : (int)t.n;
}

/* ---- parked jobs ---- */

void engine_entry_release(struct engine *e, struct eng_entry *entry)
{
    if (--entry->jobs_left > 0)
        return;
    if (entry->detached) {
        free(entry);
        return;
    }
    e->busy_entries--;
    if (entry->shared) {
        journal_work_settle(e->work, entry->seq);
        free(entry);
    }
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

uint64_t engine_parked_floor(uint64_t low, uint64_t seq)
{
    return seq > 0 && seq - 1 < low ? seq - 1 : low;
}

static void engine_parked_store(struct engine *e, uint64_t value)
{
    if (value == e->parked_cursor || e->work != NULL)
        return;
    e->parked_cursor = value;
    if (journal_cursor_set(e->journal, ENGINE_PARKED_CURSOR, value) < 0)
        log_warn("cannot store the parked cursor seq=%llu", (unsigned long long)value);
}

/*
 * The parked cursor follows the oldest job behind the engine's cursor:
 * entries after it are run again by the next start where their jobs did not
 * end, and retention keeps them.
 */
void engine_parked_update(struct engine *e, bool now)
{
    /* A cluster has no cursor: a parked job's record names its node, and the
     * others take it up if that node dies (engine_adopt()). */
    if (e->work != NULL)
        return;
    uint64_t t = uv_now(e->loop);
    if (!now && t < e->parked_checked_ms + ENGINE_PARKED_CHECK_MS)
        return;
    e->parked_checked_ms = t;
    uint64_t low = engine_parked_floor(e->cursor, engine_shelf_lowest(e));
    for (size_t i = 0; i < e->n_all; i++)
        if (job_behind_cursor(e->all[i]))
            low = engine_parked_floor(low, e->all[i]->seq);
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
    engine_parked_store(e, engine_parked_floor(e->parked_cursor, job->seq));
    job_claim(job);
    job->parked = true;
    e->parked++;
    for (size_t i = 0; i < job->n_entries; i++)
        engine_entry_release(e, job->entries[i]);
    free(job->entries);
    job->entries = NULL;
    job->n_entries = 0;
    /* Inside a journal read the entry being dispatched is still being built;
     * the read moves the cursor once it is done. */
    if (!e->reading)
        engine_advance_cursor(e);
}

void engine_unblock_head(struct engine *e)
{
    while (e->entries_head != NULL && engine_window_crowded(e->live_entries, e->window)) {
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

/* ---- the shelf: jobs behind an open circuit, out of memory ---- */

/* A binary heap on seq: the lowest seq, which the parked cursor must stay below, is items[0]. */
static void shelf_swap(struct engine_shelved *a, struct engine_shelved *b)
{
    struct engine_shelved t = *a;
    *a = *b;
    *b = t;
}

static bool shelf_push(struct engine_shelf *sh, const struct eng_job *job)
{
    if (sh->n >= ENGINE_SHELF_MAX)
        return false;
    if (sh->n == sh->cap) {
        sh->cap = sh->cap > 0 ? sh->cap * 2 : ENGINE_REQUEUE_INITIAL;
        sh->items = xrealloc(sh->items, sh->cap * sizeof(*sh->items));
    }
    size_t i = sh->n++;
    sh->items[i] = (struct engine_shelved){
        .seq = job->seq,
        .received_unix_ms = job->received_unix_ms,
        .retries_failed = job->retries_failed,
    };
    while (i > 0 && sh->items[(i - 1) / 2].seq > sh->items[i].seq) {
        shelf_swap(&sh->items[(i - 1) / 2], &sh->items[i]);
        i = (i - 1) / 2;
    }
    return true;
}

static struct engine_shelved shelf_pop(struct engine_shelf *sh)
{
    struct engine_shelved top = sh->items[0];
    sh->items[0] = sh->items[--sh->n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < sh->n && sh->items[l].seq < sh->items[m].seq)
            m = l;
        if (r < sh->n && sh->items[r].seq < sh->items[m].seq)
            m = r;
        if (m == i)
            break;
        shelf_swap(&sh->items[i], &sh->items[m]);
        i = m;
    }
    if (sh->n == 0)
        engine_shelf_clear(sh);
    return top;
}

void engine_shelf_clear(struct engine_shelf *sh)
{
    free(sh->items);
    memset(sh, 0, sizeof(*sh));
}

uint64_t engine_shelf_lowest(const struct engine *e)
{
    uint64_t low = 0;
    for (size_t i = 0; i < e->n_registries; i++) {
        const struct engine_shelf *sh = &e->registries[i].shelf;
        if (sh->n > 0 && (low == 0 || sh->items[0].seq < low))
            low = sh->items[0].seq;
    }
    return low;
}

size_t engine_shelf_count(const struct eng_registry *r, int64_t *oldest_unix_ms)
{
    const struct engine_shelf *sh = &r->shelf;
    /* Entries are journaled in order of seq: the lowest seq is (about) the oldest. */
    *oldest_unix_ms = sh->n > 0 ? sh->items[0].received_unix_ms : 0;
    return sh->n;
}

/*
 * A queued job behind its destination's open circuit, past the
 * ENGINE_SHELF_RESIDENT its destination keeps in memory, goes on the shelf:
 * its record says PENDING (the dispatch wrote it), the parked cursor is
 * below it (it was parked), and the shelf keeps its entry's seq. Not in
 * `ferry sync`, which fails such jobs at once. Returns true: `job` is freed.
 */
bool engine_job_shelve(struct eng_job *job)
{
    struct engine *e = job->engine;
    struct eng_registry *r = job->dst;
    if (e->one_shot || e->closing || job->state != JOB_QUEUED || !job->parked ||
        r->live_jobs <= ENGINE_SHELF_RESIDENT ||
        engine_circuit_state(&e->sched, r->index, uv_now(e->loop)) != ENGINE_CIRCUIT_OPEN ||
        !shelf_push(&r->shelf, job))
        return false;
    /* Counted again when it comes back. */
    e->stats.jobs--;
    e->stats.pending--;
    r->jobs_created--;
    engine_job_free(job);
    return true;
}

void engine_shelf_drain(struct engine *e)
{
    uint64_t now = uv_now(e->loop);
    for (size_t i = 0; i < e->n_registries && !e->closing; i++) {
        struct eng_registry *r = &e->registries[i];
        if (r->shelf.n == 0 || engine_circuit_state(&e->sched, i, now) != ENGINE_CIRCUIT_CLOSED)
            continue;
        /* At most a resident's worth per call, even where entries make no job now. */
        for (size_t k = 0;
             k < ENGINE_SHELF_RESIDENT && r->shelf.n > 0 && r->live_jobs < ENGINE_SHELF_RESIDENT;
             k++) {
            struct engine_shelved it = shelf_pop(&r->shelf);
            engine_requeue(e, it.seq, r->cfg->name, it.retries_failed);
        }
    }
}

/* ---- jobs ---- */

void engine_job_unindex(struct eng_job *job)
{
    if (job->in_table) {
        HASH_DEL(job->engine->queued, job);
        job->in_table = false;
    }
}

void engine_job_free(struct eng_job *job)
{
    struct engine *e = job->engine;
    engine_tag_lease_give(job); /* none by now; if so, it goes back */
    engine_job_unindex(job);
    sched_remove(&e->sched, &job->item);
    if (job->parked)
        e->parked--;
    job->dst->live_jobs--;
    /* A job freed while it still holds entries (cut short by a shutdown):
     * the entries of retries and redos (detached) are the jobs' alone to
     * free; the cursor's list frees its own. */
    for (size_t i = 0; i < job->n_entries; i++) {
        struct eng_entry *entry = job->entries[i];
        if (entry->detached && --entry->jobs_left == 0) {
            free(entry);
        } else if (entry->shared && --entry->jobs_left == 0) {
            /* Not settled: the entry goes to another node (or comes back). */
            e->busy_entries--;
            free(entry);
        }
    }
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

static void engine_timer_cb(uv_timer_t *timer)
{
    engine_pump(timer->data);
}

void engine_timer_stop(struct engine *e)
{
    if (uv_timer_stop(&e->timer) < 0)
        log_warn("the engine's timer did not stop");
}

/* While closing, the timer polls for running jobs to end: left alone here. */
void engine_arm_timer(struct engine *e)
{
    if (e->closing)
        return;
    int64_t wait = sched_wakeup(&e->sched, uv_now(e->loop));
    if (wait < 0) {
        engine_timer_stop(e);
        return;
    }
    int rc = uv_timer_start(&e->timer, engine_timer_cb, (uint64_t)wait, 0);
    if (rc < 0)
        log_error("cannot arm the engine's timer error=\"%s\"", uv_strerror(rc));
}

void engine_job_enqueue(struct eng_job *job)
{
    struct engine *e = job->engine;
    job->state = JOB_QUEUED;
    job->dst->queued_at = uv_now(e->loop);
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

static void job_finish_entries(struct eng_job *job)
{
    for (size_t i = 0; i < job->n_entries; i++)
        engine_entry_release(job->engine, job->entries[i]);
    /* A detached entry may be gone now: the job points at none any more. */
    free(job->entries);
    job->entries = NULL;
    job->n_entries = 0;
    engine_advance_cursor(job->engine);
}

/* ---- entries that come back ---- */

enum engine_requeue_when engine_failed_requeue(enum copy_fault fault, int rc)
{
    if (fault != COPY_FAULT_SOURCE)
        return ENGINE_REQUEUE_CIRCUIT_CLOSES;
    return engine_source_cannot_give(rc) ? ENGINE_REQUEUE_NEVER : ENGINE_REQUEUE_SOURCE_ANSWERS;
}

void engine_requeue_add(struct engine_requeue_list *l, uint64_t seq, size_t dst)
{
    if (l->n >= ENGINE_PARKED_MAX)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap > 0 ? l->cap * 2 : ENGINE_REQUEUE_INITIAL;
        l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
    }
    l->items[l->n].seq = seq;
    l->items[l->n++].dst = dst;
}

struct engine_requeue *engine_requeue_take(struct engine_requeue_list *l, size_t *n)
{
    struct engine_requeue *items = l->items;
    *n = l->n;
    l->items = NULL;
    l->n = l->cap = 0;
    return items;
}

void engine_requeue_clear(struct engine_requeue_list *l)
{
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

void engine_failed_keep(struct eng_registry *src, struct eng_registry *dst, uint64_t seq,
                        enum copy_fault fault, int rc)
{
    switch (engine_failed_requeue(fault, rc)) {
    case ENGINE_REQUEUE_CIRCUIT_CLOSES:
        engine_requeue_add(&dst->failed, seq, dst->index);
        break;
    case ENGINE_REQUEUE_SOURCE_ANSWERS:
        engine_requeue_add(&src->source_failed, seq, dst->index);
        break;
    case ENGINE_REQUEUE_NEVER:
        break;
    }
}

struct engine_requeue *engine_circuit_requeues(struct eng_registry *r, int flags, size_t *n)
{
    *n = 0;
    if (!(flags & SCHED_CLOSED))
        return NULL;
    return engine_requeue_take(&r->failed, n);
}

/* What failed while a registry was down gets another go. */
static void engine_requeue_run(struct engine *e, struct engine_requeue *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        engine_requeue(e, items[i].seq, e->registries[items[i].dst].cfg->name, true);
    free(items);
}

/* A job read from `src` again: what failed while it was down runs again. */
static void engine_source_back(struct engine *e, struct eng_registry *src)
{
    size_t n;
    struct engine_requeue *items = engine_requeue_take(&src->source_failed, &n);
    log_warn("source answers again src=%s requeued=%zu", src->cfg->name, n);
    engine_requeue_run(e, items, n);
}

/* ---- the circuits ---- */

enum copy_fault engine_blame(int rc, enum copy_fault fault)
{
    return rc < 0 && fault == COPY_FAULT_NONE ? COPY_FAULT_DESTINATION : fault;
}

enum sched_outcome engine_attempt_outcome(int rc, enum copy_fault fault, bool gone, bool closing)
{
    /* Ended by what the source said: nothing learned of the destination. */
    if (gone)
        return SCHED_NEUTRAL;
    if (rc == 0)
        return SCHED_OK;
    /* Cut short by the shutdown: says nothing of anyone. */
    if (closing)
        return SCHED_NEUTRAL;
    return fault == COPY_FAULT_DESTINATION ? SCHED_DEST_FAILURE : SCHED_NEUTRAL;
}

/* What the scheduler's circuit did after an attempt: say so, and act on it. */
static void engine_circuit_moved(struct engine *e, struct eng_registry *r, int flags)
{
    if (flags & SCHED_OPENED) {
        const struct sched_dest *d = &e->sched.dests[r->index];
        log_warn("circuit open dest=%s failures=%d open_ms=%llu", r->cfg->name, d->failures,
                 (unsigned long long)e->config->circuit_open_ms);
        e->stats.circuits_opened++;
        /* What waits for it, or runs against it still, lets its entries go;
         * what waits, past the resident few, goes on the shelf (backwards:
         * a job freed at i takes the last one's place, looked at already). */
        for (size_t i = e->n_all; i-- > 0;) {
            struct eng_job *job = e->all[i];
            if (job->dst != r)
                continue;
            job_park(job);
            (void)engine_job_shelve(job);
        }
    }
    size_t n;
    struct engine_requeue *items = engine_circuit_requeues(r, flags, &n);
    if (flags & SCHED_CLOSED) {
        log_warn("circuit closed dest=%s requeued=%zu", r->cfg->name, n);
        engine_requeue_run(e, items, n);
    }
}

/* ---- how an attempt settles ---- */

bool engine_source_cannot_give(int rc)
{
    return rc == FERRY_ENOTFOUND || rc == FERRY_EDIGEST || rc == FERRY_ETOOBIG ||
           rc == FERRY_EPARSE || rc == FERRY_EUNSUPPORTED;
}

static const char *fault_name(enum copy_fault fault)
{
    return fault == COPY_FAULT_SOURCE  ? "source"
           : fault == COPY_FAULT_LOCAL ? "local"
                                       : "destination";
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
    if (why != NULL) {
        free(job->last_error);
        job->last_error = xstrdup(why);
    }
    log_error("job failed dest=%s repo=%s digest=%s attempts=%d fault=%s error=\"%s\"",
              job->dst->cfg->name, job->dst_repo, job->digest ? job->digest : "-", job->attempts,
              fault == COPY_FAULT_SOURCE ? "source" : "destination", job->last_error);
    e->stats.failed++;
    if (!job->retries_failed)
        job->dst->failing++;
    engine_job_record(job, JOURNAL_JOB_FAILED);
    engine_failed_keep(job->src, job->dst, job->seq, fault, rc);
    job->dst->bytes += job->summary.bytes_copied;
    job->dst->jobs_failed++;
    job_finish_entries(job);
    engine_job_free(job);
}

/* A shutdown cut the attempt short: no failure of the job. */
static void job_interrupted(struct eng_job *job, int rc, const char *error)
{
    /* It stays PENDING, and its entry ahead of the cursor (or the parked
     * cursor below it), so the next start runs it again with its retries whole. */
    log_warn("job interrupted by shutdown, left for the next start dest=%s repo=%s digest=%s "
             "error=\"%s\"",
             job->dst->cfg->name, job->dst_repo, job->digest ? job->digest : "-",
             error != NULL ? error : ferry_strerror(rc));
    engine_job_record(job, JOURNAL_JOB_PENDING);
    engine_job_free(job);
}

/* An attempt failed: retry the job with backoff, or end it FAILED. */
static void job_attempt_failed(struct eng_job *job, int rc, const char *error,
                               enum copy_fault fault)
{
    struct engine *e = job->engine;
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
    bool source_done = from_source && engine_source_cannot_give(rc) &&
                       ++job->source_attempts >= ENGINE_SOURCE_ATTEMPTS;
    /* Jobs back off with equal jitter: never sooner than half the ceiling. */
    struct retry_policy policy = {e->config->retry_attempts, e->config->retry_base_ms,
                                  e->config->retry_max_ms, true};
    if (source_done || !retry_again(&policy, job->attempts)) {
        job_end_failed(job, NULL, fault, rc);
        return;
    }
    /* Another node moving the tag is done within a second or two: no backoff. */
    uint64_t delay =
        job->lease_waits ? ENGINE_TAG_LEASE_WAIT_MS : retry_delay_ms(&policy, job->attempts - 1);
    job->lease_waits = false;
    log_warn("job failed, retrying dest=%s repo=%s digest=%s attempt=%d delay_ms=%llu "
             "fault=%s error=\"%s\"",
             job->dst->cfg->name, job->dst_repo, job->digest ? job->digest : "-", job->attempts,
             (unsigned long long)delay, fault_name(fault), job->last_error);
    e->stats.retries++;
    job->dst->retries++;
    e->stats.pending++;
    engine_job_record(job, JOURNAL_JOB_PENDING);
    job_delay(job, delay);
}

/* An attempt succeeded: the job is COMPLETE, or SUPERSEDED with `superseded`. */
static void job_succeeded(struct eng_job *job, bool superseded)
{
    struct engine *e = job->engine;
    if (job->retries_failed && job->dst->failing > 0)
        job->dst->failing--;
    if (superseded) {
        e->stats.superseded++;
        job->dst->jobs_superseded++;
        engine_job_record(job, JOURNAL_JOB_SUPERSEDED);
    } else {
        e->stats.complete++;
        job->dst->jobs_complete++;
        if (!job->is_delete)
            engine_repo_note(job->dst, job->dst_repo);
        engine_latency_observe(job->dst, clock_unix_ms() - job->received_unix_ms);
        engine_job_record(job, JOURNAL_JOB_COMPLETE);
    }
    job->dst->bytes += job->summary.bytes_copied;
    job->dst->foreign_layers_skipped += job->summary.foreign_layers_skipped;
    if (job->src->source_failed.n > 0)
        engine_source_back(e, job->src);
    job_finish_entries(job);
    engine_job_free(job);
}

void engine_job_settle(struct eng_job *job, int rc, const char *error, bool superseded)
{
    struct engine *e = job->engine;
    enum copy_fault fault = engine_blame(rc, job->fault);
    job->fault = COPY_FAULT_NONE;
    engine_gates_release(job);
    enum sched_outcome outcome = engine_attempt_outcome(rc, fault, job->gone, e->closing);
    int moved =
        job->slot_released ? 0 : sched_done(&e->sched, &job->item, outcome, uv_now(e->loop));
    job->slot_released = false;
    e->running--;
    e->stats.running--;
    e->stats.bytes += job->summary.bytes_copied;
    if (rc < 0 && e->closing) {
        job_interrupted(job, rc, error);
        return;
    }
    engine_circuit_moved(e, job->dst, moved);
    if (rc < 0)
        job_attempt_failed(job, rc, error, fault);
    else
        job_succeeded(job, superseded);
    engine_pump(e);
}

/* ---- repositories that must exist ---- */

/*
 * The repository is there now: the job runs again at once, behind what its
 * destination has queued, and that run is not counted as an attempt. It is
 * the job's one such run: refused again, it fails the normal way.
 */
static void job_run_again(struct eng_job *job)
{
    struct engine *e = job->engine;
    log_info("running the job again after create_repository dest=%s repo=%s digest=%s",
             job->dst->cfg->name, job->dst_repo, job->digest ? job->digest : "-");
    job->hook_retried = true;
    job->fault = COPY_FAULT_NONE;
    job->slot_released = false;
    job->attempts--;
    e->running--;
    e->stats.running--;
    e->stats.pending++;
    e->stats.bytes += job->summary.bytes_copied;
    engine_job_enqueue(job);
    engine_pump(e);
}

/* The create_repository run the job waited for ended. A repo_hook_cb. */
static void job_repo_hook_done(int rc, const char *error, void *arg)
{
    struct eng_job *job = arg;
    if (job->engine->closing) {
        engine_job_settle(job, FERRY_ECANCELED, "shut down while create_repository ran", false);
    } else if (rc < 0) {
        /* The command's failure is the attempt's: the destination said
         * nothing new, so its circuit is not charged. */
        job->fault = COPY_FAULT_LOCAL;
        engine_job_settle(job, rc, error, false);
    } else {
        job_run_again(job);
    }
}

/*
 * The destination refused a push of the job's copy (copy_push_refused()).
 * With a create_repository hook, and the job's one run after it not had
 * yet: the job waits for the hook (without its gates or its destination's
 * place) and runs again; true. A hook that fails ends the attempt with its
 * error (the next attempt runs it again). Otherwise false, and the caller
 * settles; when the job had that run already, *why (the caller frees it)
 * says the hook ran and the push is still refused.
 */
static bool engine_repo_refused(struct eng_job *job, const char *error, char **why)
{
    struct engine *e = job->engine;
    const struct config_registry *cfg = job->dst->cfg;
    if (e->closing || job->fault != COPY_FAULT_DESTINATION || !repo_hook_configured(cfg))
        return false;
    if (job->hook_retried) {
        *why = xasprintf("create_repository ran for %s at %s, but the push is still refused: %s",
                         job->dst_repo, cfg->name, error != NULL ? error : "refused");
        return false;
    }
    engine_gates_release(job);
    sched_release(&e->sched, &job->item);
    job->slot_released = true;
    if (repo_hook_ensure(e->repo_hook, cfg, job->dst_repo, job_repo_hook_done, job) ==
        REPO_HOOK_CREATED)
        job_run_again(job); /* created by an earlier run, after this push started */
    else
        engine_pump(e); /* its place goes to the next job meanwhile */
    return true;
}

void engine_job_done(struct copy *c, int rc, const char *error, void *arg)
{
    struct eng_job *job = arg;
    bool superseded = rc == 0 && copy_tag_superseded(c);
    bool refused = rc < 0 && copy_push_refused(c);
    char *why = NULL;
    if (rc < 0 && job->fault == COPY_FAULT_NONE)
        job->fault = copy_fault(c);
    job->copy = NULL;
    copy_free(c);
    if (job->summary.manifests_pushed > 0)
        job->put_manifests = true;
    if (rc == 0 && superseded && engine_cleanup_after(job))
        return;
    if (refused && engine_repo_refused(job, error, &why))
        return;
    if (rc < 0 && engine_source_fault(job, rc, error)) {
        free(why);
        return;
    }
    engine_job_settle(job, rc, why != NULL ? why : error, superseded);
    free(why);
}

/*
 * One-shot (`ferry sync`): the jobs waiting for a destination whose circuit
 * is open end FAILED now, with the destination's last error, instead of
 * waiting for probes half a minute apart: the run ends, and says why.
 */
void engine_fail_open(struct engine *e)
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

/* ---- `ferry retry`, and a dead node's jobs ---- */

bool engine_job_mine(const struct engine *e, const struct journal_job *job)
{
    return e->node != NULL && job->node != NULL && strcmp(job->node, e->node) == 0;
}

/* Which open job records to run again, and what they were. */
struct retry_match {
    /* FAILED ones, narrowed by these when not NULL. */
    const char *destination, *repository, *digest;
    struct journal_job *jobs;
    size_t n;
};

static bool retry_wanted(const struct retry_match *m, const struct journal_job *job)
{
    if (job->seq == 0)
        return false;
    return job->state == JOURNAL_JOB_FAILED &&
           (m->destination == NULL || strcmp(job->destination, m->destination) == 0) &&
           (m->repository == NULL || strcmp(job->repository, m->repository) == 0) &&
           (m->digest == NULL || (job->digest != NULL && strcmp(job->digest, m->digest) == 0));
}

static int retry_collect(const struct journal_job *job, void *arg)
{
    struct retry_match *m = arg;
    if (!retry_wanted(m, job) || m->n >= ENGINE_PARKED_MAX)
        return 0;
    m->jobs = xrealloc(m->jobs, (m->n + 1) * sizeof(*m->jobs));
    struct journal_job *copy = &m->jobs[m->n++];
    *copy = *job;
    copy->destination = xstrdup(job->destination);
    copy->repository = xstrdup(job->repository);
    copy->digest = xstrdup(job->digest);
    copy->last_error = job->last_error != NULL ? xstrdup(job->last_error) : NULL;
    copy->tags = job->n_tags > 0 ? xcalloc(job->n_tags, sizeof(*copy->tags)) : NULL;
    for (size_t i = 0; i < job->n_tags; i++)
        copy->tags[i] = xstrdup(job->tags[i]);
    copy->node = job->node != NULL ? xstrdup(job->node) : NULL;
    return 0;
}

/* Collect what `m` selects among the open jobs; *m's list is the caller's to free. */
static int retry_scan(struct engine *e, struct retry_match *m, const char *what)
{
    int rc = journal_job_scan_open(e->journal, retry_collect, m);
    if (rc < 0)
        log_warn("cannot read every job status, %s those read error=\"%s\"", what,
                 ferry_strerror(rc));
    return rc;
}

size_t engine_retry(struct engine *e, const char *destination, const char *repository,
                    const char *digest)
{
    struct retry_match m = {.destination = destination, .repository = repository, .digest = digest};
    if (e->closing)
        return 0;
    (void)retry_scan(e, &m, "retrying");
    for (size_t i = 0; i < m.n; i++) {
        log_info("retry requested dest=%s repo=%s digest=%s seq=%llu", m.jobs[i].destination,
                 m.jobs[i].repository, m.jobs[i].digest ? m.jobs[i].digest : "-",
                 (unsigned long long)m.jobs[i].seq);
        engine_requeue(e, m.jobs[i].seq, m.jobs[i].destination, true);
        journal_job_release(&m.jobs[i]);
    }
    free(m.jobs);
    engine_pump(e);
    return m.n;
}

/* engine_adopt()'s question, the other way round. */
struct adopt_gone {
    bool (*alive)(const char *node, void *arg);
    void *arg;
};

static bool adopt_is_gone(const char *node, void *arg)
{
    const struct adopt_gone *g = arg;
    return !g->alive(node, g->arg);
}

int engine_adopt(struct engine *e, bool (*alive)(const char *node, void *arg), void *arg)
{
    struct adopt_gone g = {.alive = alive, .arg = arg};
    return engine_claims_run(e, adopt_is_gone, &g);
}
