/*
 * engine_dispatch.c: journal entries into jobs. The window (how many
 * unfinished entries the engine reads ahead), one job per (entry, rule
 * destination) with jobs for the same (destination, repository, digest, tag)
 * coalesced, entries run again (a retry, a restart's redo of what waited),
 * and the pump that starts what the scheduler lets start.
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "journal/journal.h"
#include "replication/engine_int.h"
#include "replication/rule_platform.h"

/* ---- the window ---- */

bool engine_window_wants(size_t busy, size_t window)
{
    return busy < window / 2 + 1;
}

/* The cursor's list holds ENGINE_LIST_FACTOR windows of entries at most. */
static bool engine_list_full(size_t live, size_t window)
{
    return live >= window * ENGINE_LIST_FACTOR;
}

size_t engine_window_room(size_t busy, size_t live, size_t window)
{
    if (busy >= window || engine_list_full(live, window))
        return 0;
    return window - busy;
}

bool engine_window_crowded(size_t live, size_t window)
{
    return live >= window * ENGINE_LIST_FACTOR / 2;
}

/* ---- starting jobs ---- */

static void job_start(struct eng_job *job)
{
    struct engine *e = job->engine;
    job->state = JOB_RUNNING;
    engine_job_unindex(job);
    job->attempts++;
    job->moves_at_start = job->dst->moves;
    e->running++;
    e->stats.running++;
    e->stats.pending--;
    engine_job_record(job, JOURNAL_JOB_IN_PROGRESS);
    if (job->is_delete) {
        engine_gates_step(job);
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
        .foreign_layers = job->foreign_layers,
        .platform = job->platform,
        .jobs = ENGINE_COPY_JOBS,
        .upload = {.mode = (enum registry_upload_mode)job->dst->cfg->upload_mode,
                   .chunk_min = job->dst->cfg->upload_chunk_min,
                   .chunk_max = job->dst->cfg->upload_chunk_max},
        .tag_gate = job->tag != NULL ? engine_tag_gate : NULL,
        .tag_gate_arg = job,
        .skip_ping = true,
        /* After a failed attempt the repository may hold what it copied:
         * its blobs are looked for, not taken as missing. */
        .dst_repo_exists =
            engine_repo_known(job->dst, job->dst_repo) || job->attempts > 1 || job->resumed,
        .trust_missing_tag = true,
        .spool = e->spool,
        .presence = e->presence,
        .blob_gate = engine_blob_gate,
        .blob_done = engine_blob_done,
        .blob_arg = job,
    };
    if (job->own_look) {
        job->fetch = (struct resolve_fetch){.referrers = engine_referrers_fetch, .arg = job};
        spec.fetch = &job->fetch;
    }
    int rc = copy_start(e->loop, &spec, &job->summary, engine_job_done, job, &job->copy);
    if (rc < 0) {
        /* No copy, and no callback: the attempt ends here, Ferry's fault. */
        char *why = xasprintf("cannot start the copy: %s", ferry_strerror(rc));
        job->copy = NULL;
        job->fault = COPY_FAULT_LOCAL;
        engine_job_settle(job, rc, why, false);
        free(why);
    }
}

/*
 * A job may end inside job_start() and ask for a pump again: that call only
 * notes it, and this one goes round once more, so that no caller ever walks
 * a queue another call changed.
 */
void engine_pump(struct engine *e)
{
    if (e->pumping) {
        e->pump_again = true;
        return;
    }
    e->pumping = true;
    do {
        e->pump_again = false;
        /* The window drained below half: read the next entries first. */
        if (!e->reading && e->started && engine_window_wants(e->busy_entries, e->window))
            engine_read_journal(e, e->work != NULL ? 0 : journal_last_seq(e->journal));
        if (e->one_shot)
            engine_fail_open(e);
        engine_shelf_drain(e);
        struct sched_item *it;
        while (!e->closing && (it = sched_next(&e->sched, uv_now(e->loop))) != NULL)
            job_start(engine_job_of(it));
    } while (e->pump_again && !e->closing);
    e->pumping = false;
    if (e->work != NULL)
        journal_work_want(e->work, engine_work_demand(e));
    engine_arm_timer(e);
    engine_maybe_idle(e);
}

/*
 * In a cluster, a node takes from the shared work what it can start soon,
 * and leaves the rest to the nodes with room: each entry it holds is kept
 * alive at the servers until its jobs end (a request every third of the
 * ack wait), and waits for the ack wait when the node dies. It wants so
 * many that the destination with least to do gets ENGINE_WORK_ROUNDS rounds
 * of its concurrency running, queued or waiting for a retry (an entry
 * brings each destination one job at most), among the destinations that
 * take jobs now: circuit closed, and a job queued within
 * ENGINE_WORK_ACTIVE_MS. So a fast destination runs ahead of a slow one on
 * entries for both, as far as the window. When none had a job lately, a
 * first helping: the largest destination's rounds. With no rule's
 * destination among the registries, the window.
 */
size_t engine_work_demand(struct engine *e)
{
    uint64_t now = uv_now(e->loop);
    size_t want = 0, first = 0;
    bool any = false, active = false;
    for (size_t i = 0; i < e->n_registries && i < e->sched.n_dests; i++) {
        const struct eng_registry *r = &e->registries[i];
        if (!r->destination)
            continue;
        any = true;
        if (sched_circuit_open(&e->sched, i, now))
            continue;
        const struct sched_dest *d = &e->sched.dests[i];
        size_t target = ENGINE_WORK_ROUNDS * (size_t)(d->limit > 0 ? d->limit : 1);
        size_t has = (size_t)d->running + d->runnable + d->waiting;
        if (target > first)
            first = target;
        if (has == 0 && (r->queued_at == 0 || now - r->queued_at >= ENGINE_WORK_ACTIVE_MS))
            continue;
        active = true;
        if (has < target && target - has > want)
            want = target - has;
    }
    if (!any)
        return e->window;
    return active ? want : first;
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
        engine_job_unindex(old);
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
    dst->live_jobs++;
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
    if (job->n_seqs < ENGINE_JOB_SEQS_MAX)
        job->seqs = xrealloc(job->seqs, (job->n_seqs + 1) * sizeof(*job->seqs));
    else
        job->n_seqs--;
    job->seqs[job->n_seqs++] = seq;
    /* Run again from a claim (or a retry): its end drops the claim. */
    if (entry->detached && job->engine->work != NULL && job->claim_seq == 0)
        job->claim_seq = seq;
    /* A parked job holds no entry: the parked cursor stands for it. */
    if (job->parked)
        return;
    job->entries = xrealloc(job->entries, (job->n_entries + 1) * sizeof(*job->entries));
    job->entries[job->n_entries++] = entry;
    if (entry->jobs_left++ == 0 && !entry->detached)
        job->engine->busy_entries++;
}

bool engine_record_ended(const struct journal_job *rec, const struct journal_entry *en)
{
    bool ended = (rec->state == JOURNAL_JOB_COMPLETE || rec->state == JOURNAL_JOB_SUPERSEDED ||
                  rec->state == JOURNAL_JOB_FAILED) &&
                 rec->seq >= en->seq;
    if (ended && en->tag != NULL) {
        bool named = false;
        for (size_t i = 0; i < rec->n_tags; i++)
            named = named || strcmp(rec->tags[i], en->tag) == 0;
        ended = named;
    }
    return ended;
}

/* Did a job for `en` at this destination end before the last stop (engine_record_ended())? */
static bool engine_job_ended(struct engine *e, const char *dest, const char *dst_repo,
                             const struct journal_entry *en)
{
    struct journal_job rec;
    char *by_tag = en->digest == NULL ? xasprintf("tag:%s", en->tag) : NULL;
    int rc =
        journal_job_get(e->journal, dest, dst_repo, en->digest != NULL ? en->digest : by_tag, &rec);
    free(by_tag);
    if (rc < 0) {
        /* Run it again: a job that finds its work done ends at once. */
        if (rc != FERRY_ENOTFOUND)
            log_warn("cannot read a job's status, running it again dest=%s repo=%s seq=%llu "
                     "error=\"%s\"",
                     dest, dst_repo, (unsigned long long)en->seq, ferry_strerror(rc));
        return false;
    }
    bool ended = engine_record_ended(&rec, en);
    journal_job_release(&rec);
    return ended;
}

/* A delete's job at one destination. */
static void dispatch_delete(struct engine *e, struct eng_registry *src, struct eng_registry *dst,
                            const struct journal_entry *en, struct eng_entry *entry, char *dst_repo)
{
    struct eng_job *job = job_new(e, src, dst, en, dst_repo);
    job->is_delete = true;
    job_attach(job, entry, en->seq);
    engine_job_enqueue(job);
    engine_job_record(job, JOURNAL_JOB_PENDING);
    (void)engine_job_shelve(job);
}

/* A push's job at one destination, or the queued job it coalesces into. */
static void dispatch_push(struct engine *e, struct eng_registry *src, struct eng_registry *dst,
                          const struct config_rule *rule, const struct journal_entry *en,
                          struct eng_entry *entry, char *dst_repo)
{
    struct eng_job *job = engine_find_queued(e, dst->cfg->name, dst_repo, en->digest, en->tag);
    if (job == NULL) {
        job = job_new(e, src, dst, en, dst_repo);
        job->referrers = rule->referrers;
        job->overwrite = rule->overwrite;
        job->deletes = rule->deletes;
        job->foreign_layers = rule->foreign_layers;
        /* One platform is copied out of an index as its own manifest;
         * several would need a new index, and Ferry never rewrites one. */
        const char *platform = rule_platform_pick(rule);
        if (platform != NULL)
            job->platform = xstrdup(platform);
        else if (rule->n_platforms > 1)
            log_warn("rule=%s lists several platforms: copying whole indexes", rule->name);
        job_index(job);
        engine_job_enqueue(job);
    } else {
        free(dst_repo);
    }
    /* Coalesced: the job now serves the newest entry that named it. */
    job_attach(job, entry, en->seq);
    if (job->seq == en->seq)
        job->own_look = engine_own_look(e, en);
    engine_job_record(job, JOURNAL_JOB_PENDING);
    (void)engine_job_shelve(job);
}

/*
 * The jobs of one entry: for every destination of the rules that select it
 * (that propagate deletes, for a delete), or only `only_dest`. While the
 * parked range runs again, not where its job ended before the stop.
 */
static void dispatch_jobs(struct engine *e, const struct journal_entry *en, struct eng_entry *entry,
                          const char *only_dest)
{
    bool is_delete = en->action == JOURNAL_DELETE;
    if (is_delete ? en->digest == NULL && en->tag == NULL
                  : en->action != JOURNAL_PUSH || en->digest == NULL)
        return;
    struct eng_registry *src = engine_registry_find(e, en->source);
    if (src == NULL)
        return;
    for (size_t r = 0; r < e->config->n_rules; r++) {
        const struct config_rule *rule = &e->config->rules[r];
        if ((is_delete && !rule->deletes) || strcmp(rule->source, en->source) != 0 ||
            !config_rule_selects(rule, en->repository, en->tag))
            continue;
        for (size_t d = 0; d < rule->n_destinations; d++) {
            const struct config_destination *dest = &rule->destinations[d];
            if (only_dest != NULL && strcmp(dest->registry, only_dest) != 0)
                continue;
            struct eng_registry *dst = engine_registry_find(e, dest->registry);
            char *dst_repo = config_destination_repository(dest, en->repository);
            if (dst == NULL || dst_repo == NULL ||
                (e->redoing && engine_job_ended(e, dst->cfg->name, dst_repo, en))) {
                free(dst_repo);
                continue;
            }
            if (is_delete)
                dispatch_delete(e, src, dst, en, entry, dst_repo);
            else
                dispatch_push(e, src, dst, rule, en, entry, dst_repo);
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
    } else if (e->work != NULL) {
        /* Held for the dispatch itself: a job parked at once must not settle
         * it while the other destinations' jobs are still being made. */
        entry->shared = true;
        entry->jobs_left = 1;
        e->busy_entries++;
        e->stats.dispatched++;
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
    if (!reference_is_referrers_tag(en->tag))
        dispatch_jobs(e, en, entry, only_dest);
    if (entry->detached && entry->jobs_left == 0)
        free(entry);
    else if (entry->shared)
        engine_entry_release(e, entry);
}

void engine_requeue(struct engine *e, uint64_t seq, const char *dest, bool was_failed)
{
    struct journal_entry en;
    if (e->closing)
        return;
    int rc = journal_get(e->journal, seq, &en);
    if (rc < 0) {
        /* Gone (retention passed it, or the journal was reset): nothing to run. */
        if (rc != FERRY_ENOTFOUND)
            log_warn("cannot read an entry to run again dest=%s seq=%llu error=\"%s\"", dest,
                     (unsigned long long)seq, ferry_strerror(rc));
        return;
    }
    engine_dispatch_to(e, &en, dest, was_failed);
    journal_entry_release(&en);
}

static int engine_take(const struct journal_entry *en, void *arg)
{
    engine_dispatch_to(arg, en, NULL, false);
    return 0;
}

/*
 * Take entries past what was dispatched, up to a window of the config's
 * engine_window unfinished ones: a backfill of a million tags is read as the
 * work goes, not held in memory at once.
 */
void engine_read_journal(struct engine *e, uint64_t upto)
{
    if (e->closing || e->reading || (e->work == NULL && upto <= e->dispatched_seq))
        return;
    /* Finished entries wait in the list behind the oldest held one: a job
     * that runs long (a huge blob to a slow registry) lets go of its entry,
     * so that the list stays bounded and the cursor moves on. */
    if (engine_list_full(e->live_entries, e->window))
        engine_unblock_head(e);
    size_t room = engine_window_room(e->busy_entries, e->live_entries, e->window);
    if (room == 0)
        return;
    if (e->parked >= ENGINE_PARKED_MAX) {
        log_warn("too many jobs wait for retries or open circuits, reading stops parked=%zu",
                 e->parked);
        return;
    }
    /* Half a window of jobs has just been freed: give their pages back. */
    (void)heap_release(uv_now(e->loop));
    e->reading = true;
    if (e->work != NULL) {
        /* A cluster: what the shared work gives this node, in no set order
         * (nothing given: nothing to pump for, and the pump calls here). */
        size_t given = journal_work_take(e->work, room, engine_take, e);
        e->reading = false;
        if (given > 0)
            engine_pump(e);
        return;
    }
    int rc = journal_scan(e->journal, e->dispatched_seq, room, engine_take, e);
    if (rc < 0)
        log_warn("cannot read the journal after=%llu error=\"%s\"",
                 (unsigned long long)e->dispatched_seq, ferry_strerror(rc));
    engine_advance_cursor(e);
    e->reading = false;
    engine_pump(e);
}

void engine_maybe_idle(struct engine *e)
{
    if (e->idle_cb == NULL || !e->started || e->closing)
        return;
    if (e->n_all > 0 || e->running > 0 || engine_shelf_lowest(e) != 0)
        return;
    if (e->work != NULL) {
        size_t held, ready;
        journal_work_counts(e->work, &held, &ready, NULL);
        if (held > 0 || ready > 0)
            return;
    } else if (e->dispatched_seq < journal_last_seq(e->journal)) {
        return;
    }
    e->idle_cb(e, e->cb_arg);
}

/* ---- at start ---- */

/*
 * An unfinished job that no rule selects any more (the config changed) ends
 * SUPERSEDED and says why; jobs marked PENDING behind the parked cursor (by
 * `ferry retry`) run again.
 */
static int engine_take_retry(const struct journal_job *job, void *arg)
{
    struct engine *e = arg;
    bool unfinished = job->state == JOURNAL_JOB_PENDING || job->state == JOURNAL_JOB_IN_PROGRESS;
    /* In a cluster, only this node's own records: another node may run
     * another config (a rolling change), and its jobs are its own. */
    if (unfinished && job->seq != 0 && (e->work == NULL || engine_job_mine(e, job))) {
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
        struct eng_registry *r = engine_registry_find(e, job->destination);
        if (r != NULL)
            r->failing++;
    }
    /* Run again: the jobs that waited behind the parked cursor (a cluster's
     * waiting jobs have claims instead: engine_dispatch_start()). */
    if (e->work == NULL && job->state == JOURNAL_JOB_PENDING && job->seq != 0 &&
        job->seq <= e->parked_cursor)
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

void engine_dispatch_start(struct engine *e)
{
    int rc = journal_job_scan_open(e->journal, engine_take_retry, e);
    if (rc < 0)
        log_warn("cannot read every job status at start error=\"%s\"", ferry_strerror(rc));
    /* A cluster node's own waiting jobs from before its restart (the other
     * nodes take up those of a node that does not come back: engine_adopt()). */
    if (e->work != NULL && engine_claims_run(e, NULL, NULL) < 0)
        log_warn("cannot read every claim of this node at start: they run once it is gone");
    if (e->work == NULL && e->parked_cursor < e->cursor) {
        log_info("running again what waited at the last stop from=%llu to=%llu",
                 (unsigned long long)e->parked_cursor + 1, (unsigned long long)e->cursor);
        e->redoing = true;
        rc = journal_scan(e->journal, e->parked_cursor, 0, engine_take_redo, e);
        if (rc < 0)
            log_warn("cannot read what waited at the last stop from=%llu error=\"%s\"",
                     (unsigned long long)e->parked_cursor + 1, ferry_strerror(rc));
        e->redoing = false;
    }
}
