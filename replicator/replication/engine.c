/*
 * engine.c: the engine's lifecycle (new, start, close), its cursor, and its
 * stats and counters. How entries become jobs is in engine_dispatch.c, how
 * jobs end in engine_jobs.c, the tag step and deletes in engine_truth.c (see
 * engine_int.h for the map).
 */
#include "replication/engine.h"

#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "journal/journal.h"
#include "registry/http.h"
#include "registry/registry.h"
#include "registry/spawn.h"
#include "replication/clients.h"
#include "replication/engine_int.h"
#include "replication/presence.h"
#include "replication/spool.h"

const double engine_latency_bounds[ENGINE_LATENCY_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1,  2.5,
                                                              5,    10,  30,   60,  300};

struct eng_registry *engine_registry_find(struct engine *e, const char *name)
{
    for (size_t i = 0; i < e->n_registries; i++)
        if (strcmp(e->registries[i].cfg->name, name) == 0)
            return &e->registries[i];
    return NULL;
}

/* ---- the cursor ---- */

void engine_advance_cursor(struct engine *e)
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

/* Where the last run left the cursor and the parked cursor. */
static int engine_read_cursors(struct engine *e)
{
    int rc = journal_cursor_get(e->journal, ENGINE_CURSOR, &e->cursor);
    if (rc < 0) {
        log_error("cannot read the engine cursor error=\"%s\"", ferry_strerror(rc));
        return rc;
    }
    rc = journal_cursor_find(e->journal, ENGINE_PARKED_CURSOR, &e->parked_cursor);
    if (rc == FERRY_ENOTFOUND || (rc == 0 && e->parked_cursor > e->cursor)) {
        /* Stored now: engine_parked_store() writes only a value that differs
         * from this one, and a job parked at the first entry would leave none
         * (a restart then took the engine's cursor, and lost that job). */
        e->parked_cursor = e->cursor;
        rc = journal_cursor_set(e->journal, ENGINE_PARKED_CURSOR, e->cursor);
    }
    if (rc < 0)
        log_error("cannot read the parked cursor error=\"%s\"", ferry_strerror(rc));
    return rc;
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

/*
 * Blobs going to several destinations are read from the source once,
 * through the spool. With one destination per source a blob is uploaded
 * once and mounted after that, so it streams through a ring instead: the
 * spool's page-cache writes and reads were a fifth of Ferry's CPU.
 */
static void engine_open_caches(struct engine *e)
{
    const struct config *config = e->config;
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
}

/* ---- a cluster's shared work ---- */

/* From the fetcher's thread: entries are ready. */
static void engine_work_wake(void *arg)
{
    struct engine *e = arg;
    (void)uv_async_send(&e->work_async);
}

static void engine_work_ready(uv_async_t *async)
{
    struct engine *e = async->data;
    if (!e->started || e->closing)
        return;
    engine_read_journal(e, 0);
    engine_maybe_idle(e);
}

/*
 * In a cluster, the engine takes its entries from the work the nodes share
 * (as many as its window has room for); one node's journal has none, and
 * the engine reads after its cursor.
 */
static int engine_work_open(struct engine *e)
{
    const struct config_cluster *cl = e->config->cluster;
    if (cl == NULL)
        return 0;
    int rc = uv_async_init(e->loop, &e->work_async, engine_work_ready);
    if (rc < 0)
        return rc;
    e->work_async.data = e;
    e->work_async_open = true;
    struct journal_work_options o = {
        .capacity = e->window,
        .want = engine_work_demand(e),
        .ack_wait_ms = cl->ack_wait_ms,
        .wake = engine_work_wake,
        .arg = e,
    };
    rc = journal_work_open(e->journal, &o, &e->work);
    if (rc < 0) {
        log_error("cannot take work from the cluster error=\"%s\"", ferry_strerror(rc));
        return rc;
    }
    if (e->work == NULL)
        return 0;
    e->node = cl->name;
    rc = records_new(e->journal, &e->records);
    if (rc < 0)
        log_error("cannot start the job records' writer error=\"%s\"", ferry_strerror(rc));
    return rc;
}

int engine_new(uv_loop_t *loop, const struct config *config, struct journal *journal,
               struct journal_committer *committer, struct engine **out)
{
    struct engine *e = xcalloc(1, sizeof(*e));
    e->loop = loop;
    e->config = config;
    e->journal = journal;
    e->committer = committer;
    int rc = engine_read_cursors(e);
    if (rc == 0)
        rc = uv_timer_init(loop, &e->timer);
    if (rc < 0) {
        free(e);
        return rc;
    }
    e->timer.data = e;
    size_t n = config->n_registries ? config->n_registries : 1;
    e->registries = xcalloc(n, sizeof(*e->registries));
    int *limits = xcalloc(n, sizeof(*limits));
    for (size_t i = 0; i < config->n_registries; i++) {
        struct eng_registry *r = &e->registries[e->n_registries++];
        r->cfg = &config->registries[i];
        r->index = i;
        /* The jobs of one entry (one per destination) read its manifests once. */
        struct clients_options copts = {.push = true, .pull_cache_bytes = ENGINE_CACHE_BYTES};
        clients_open(loop, r->cfg, &copts, &r->cl);
        limits[i] = r->cl.concurrency;
        for (size_t k = 0; k < config->n_rules; k++)
            for (size_t d = 0; d < config->rules[k].n_destinations; d++)
                if (strcmp(config->rules[k].destinations[d].registry, r->cfg->name) == 0) {
                    r->destination = true;
                    r->deletes_into = r->deletes_into || config->rules[k].deletes;
                }
    }
    engine_open_caches(e);
    e->repo_hook = repo_hook_new(loop);
    e->window = (size_t)config->engine_window;
    sched_init(&e->sched, e->n_registries, limits, config->circuit_failures,
               config->circuit_open_ms);
    free(limits);
    e->dispatched_seq = e->cursor;
    e->stats.cursor = e->cursor;
    rc = engine_work_open(e);
    if (rc < 0) {
        engine_close(e, NULL, NULL); /* frees it once its handles have closed */
        return rc;
    }
    *out = e;
    return 0;
}

struct registry *engine_registry_client(struct engine *e, const char *name, bool push)
{
    struct eng_registry *r = engine_registry_find(e, name);
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

void engine_set_one_shot(struct engine *e, bool one_shot)
{
    e->one_shot = one_shot;
    e->own_from = journal_last_seq(e->journal);
}

bool engine_own_look(const struct engine *e, const struct journal_entry *en)
{
    return e->one_shot && en->seq > e->own_from && en->action == JOURNAL_PUSH &&
           en->event_id != NULL && strncmp(en->event_id, "poll:", 5) == 0;
}

void engine_start(struct engine *e)
{
    e->started = true;
    engine_dispatch_start(e);
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

/* ---- closing ---- */

static void engine_closed(void *arg)
{
    struct engine *e = arg;
    if (--e->closing_handles > 0)
        return;
    /* Jobs first: a job's free counts it off its destination registry. */
    while (e->n_all > 0)
        engine_job_free(e->all[0]);
    for (size_t i = 0; i < e->n_registries; i++) {
        struct eng_registry *r = &e->registries[i];
        engine_requeue_clear(&r->failed);
        engine_requeue_clear(&r->source_failed);
        engine_shelf_clear(&r->shelf);
        engine_flights_clear(r);
        free(r->last_error);
    }
    free(e->registries);
    spool_free(e->spool);
    presence_close(e->presence);
    repo_hook_free(e->repo_hook);
    while (e->entries_head != NULL) {
        struct eng_entry *next = e->entries_head->next;
        free(e->entries_head);
        e->entries_head = next;
    }
    struct engine_tag_seen *seen, *next;
    HASH_ITER(hh, e->looked_again, seen, next)
    {
        HASH_DEL(e->looked_again, seen);
        free(seen->key);
        free(seen);
    }
    free(e->all);
    sched_free(&e->sched);
    void (*cb)(void *) = e->close_cb;
    void *cb_arg = e->close_arg;
    free(e);
    if (cb != NULL)
        cb(cb_arg);
}

static void engine_handle_closed(uv_handle_t *handle)
{
    engine_closed(handle->data);
}

static void engine_finish_close(struct engine *e)
{
    if (e->counters_out != NULL)
        *e->counters_out = engine_counters_save(e);
    /* What this node still holds goes to the others (its fetcher stops first). */
    journal_work_close(e->work, true);
    e->work = NULL;
    /* The records of the jobs that ended are written before the engine goes. */
    records_close(e->records);
    e->records = NULL;
    e->closing_handles = (int)e->n_registries + 1 + (e->work_async_open ? 1 : 0);
    for (size_t i = 0; i < e->n_registries; i++)
        clients_close(&e->registries[i].cl, engine_closed, e);
    uv_close((uv_handle_t *)&e->timer, engine_handle_closed);
    if (e->work_async_open)
        uv_close((uv_handle_t *)&e->work_async, engine_handle_closed);
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
        /* Credential helpers and create_repository hooks too: none waits out its time limit. */
        spawn_abort_all(e->loop);
    }
    /* A tag's hold or release, or a blob hint, on the thread pool needs the journal. */
    if (e->running > 0 || e->hold_works > 0 || e->hint_works > 0)
        return;
    engine_timer_stop(e);
    engine_finish_close(e);
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
    engine_timer_stop(e);
    /* Queued and waiting jobs are PENDING already; the parked ones are run
     * again from the parked cursor by the next start. */
    engine_parked_update(e, true);
    e->close_started_ms = uv_now(e->loop);
    if (e->running == 0 && e->hold_works == 0 && e->hint_works == 0) {
        engine_finish_close(e);
        return;
    }
    /* Running copies end on their own (bounded by their retries). From now
     * on the timer polls for that (engine_arm_timer() leaves it alone). */
    int rc =
        uv_timer_start(&e->timer, engine_close_wait, ENGINE_CLOSE_POLL_MS, ENGINE_CLOSE_POLL_MS);
    if (rc < 0)
        log_error("cannot wait for running jobs to end, the engine stays open running=%d "
                  "error=\"%s\"",
                  e->running, uv_strerror(rc));
}

/* ---- stats and counters ---- */

void engine_get_stats(const struct engine *e, struct engine_stats *out)
{
    *out = e->stats;
    if (e->work != NULL) {
        size_t held, ready, most;
        journal_work_counts(e->work, &held, &ready, &most);
        out->held = held + ready;
        out->held_most = most;
    }
}

void engine_latency_observe(struct eng_registry *r, int64_t ms)
{
    double sec = ms > 0 ? (double)ms / 1000.0 : 0;
    size_t i = 0;
    while (i < ENGINE_LATENCY_BUCKETS && sec > engine_latency_bounds[i])
        i++;
    r->latency_buckets[i]++;
    r->latency_sum += sec;
    r->latency_count++;
}

enum engine_circuit engine_circuit_state(const struct sched *s, size_t dest, uint64_t now_ms)
{
    const struct sched_dest *d = &s->dests[dest];
    if (!d->open)
        return ENGINE_CIRCUIT_CLOSED;
    return now_ms >= d->open_until ? ENGINE_CIRCUIT_HALF_OPEN : ENGINE_CIRCUIT_OPEN;
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

/*
 * What `r` counted, into `s` (zeroed; its last error is not copied): the
 * totals, with what its clients count now folded into the bases that
 * engines before a reload left.
 */
static void engine_registry_snapshot(const struct eng_registry *r, struct eng_registry *s)
{
    s->jobs_created = r->jobs_created;
    s->jobs_failed = r->jobs_failed;
    s->bytes = r->bytes;
    s->jobs_complete = r->jobs_complete;
    s->jobs_superseded = r->jobs_superseded;
    s->retries = r->retries;
    s->foreign_layers_skipped = r->foreign_layers_skipped;
    s->last_error_unix_ms = r->last_error_unix_ms;
    memcpy(s->latency_buckets, r->latency_buckets, sizeof(s->latency_buckets));
    s->latency_sum = r->latency_sum;
    s->latency_count = r->latency_count;
    http_client_stats(r->cl.http, &s->http_base);
    http_stats_add(&s->http_base, &r->http_base);
    s->invalid_base = r->invalid_base + engine_registry_invalid(r);
}

bool engine_destination_stats(const struct engine *e, size_t i,
                              struct engine_destination_stats *out)
{
    if (i >= e->n_registries)
        return false;
    const struct eng_registry *r = &e->registries[i];
    struct eng_registry snap = {0};
    engine_registry_snapshot(r, &snap);
    memset(out, 0, sizeof(*out));
    out->name = r->cfg->name;
    out->host = r->cfg->host;
    out->jobs = snap.jobs_created;
    out->finished = snap.jobs_complete + snap.jobs_superseded + snap.jobs_failed;
    out->failed = snap.jobs_failed;
    out->failing = r->failing;
    out->complete = snap.jobs_complete;
    out->superseded = snap.jobs_superseded;
    out->retries = snap.retries;
    out->bytes = snap.bytes;
    out->foreign_layers_skipped = snap.foreign_layers_skipped;
    out->circuit = engine_circuit_state(&e->sched, i, uv_now(e->loop));
    out->last_error = r->last_error;
    out->last_error_unix_ms = snap.last_error_unix_ms;
    out->shelved = engine_shelf_count(r, &out->oldest_unix_ms);
    out->backlog = out->shelved;
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
    memcpy(out->latency_buckets, snap.latency_buckets, sizeof(out->latency_buckets));
    out->latency_sum = snap.latency_sum;
    out->latency_count = snap.latency_count;
    out->http = snap.http_base;
    out->invalid_names = snap.invalid_base;
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
        c->names[i] = xstrdup(r->cfg->name);
        engine_registry_snapshot(r, &c->registries[i]);
        c->registries[i].last_error = r->last_error != NULL ? xstrdup(r->last_error) : NULL;
    }
    return c;
}

/* Add the saved counters of one registry to `r`'s; takes its last error. */
static void engine_registry_counters_add(struct eng_registry *r, struct eng_registry *s)
{
    r->jobs_created += s->jobs_created;
    r->jobs_failed += s->jobs_failed;
    r->bytes += s->bytes;
    r->jobs_complete += s->jobs_complete;
    r->jobs_superseded += s->jobs_superseded;
    r->retries += s->retries;
    r->foreign_layers_skipped += s->foreign_layers_skipped;
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
        struct eng_registry *r = e != NULL ? engine_registry_find(e, c->names[i]) : NULL;
        if (r != NULL)
            engine_registry_counters_add(r, s);
        free(s->last_error);
        free(c->names[i]);
    }
    free(c->registries);
    free(c->names);
    free(c);
}
