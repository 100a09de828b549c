#include "cli/sync.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal/committer.h"
#include "config/config.h"
#include "replication/engine.h"
#include "common/errors.h"
#include "common/human.h"
#include "journal/journal.h"
#include "common/log.h"
#include "replication/poller.h"
#include "common/xalloc.h"

struct sync {
    uv_loop_t loop;
    struct config *config;
    struct journal *journal;
    struct journal_committer *committer;
    struct poller *poller;
    struct engine *engine;
    bool polled;
    bool finishing;
    bool json;
    uint64_t start_ms;
    cJSON *failures;
    uint64_t poll_errors;
    char poll_error[256];
    bool tty;          /* progress lines redrawn in place */
    uv_timer_t ticker; /* redraws them */
    unsigned lines_drawn;
};

/* One line per destination: images done/total, bytes, rate, ETA. */
static void sync_draw(struct sync *s)
{
    struct engine_destination_stats d;
    double secs = (double)(uv_now(&s->loop) - s->start_ms) / 1000.0;
    unsigned lines = 0;

    for (unsigned i = 0; i < s->lines_drawn; i++)
        fputs("\033[1A\033[2K", stderr);
    for (size_t i = 0; s->engine != NULL && engine_destination_stats(s->engine, i, &d); i++) {
        if (d.jobs == 0)
            continue;
        char bar[21];
        size_t fill = (size_t)(20.0 * (double)d.finished / (double)d.jobs);
        for (size_t k = 0; k < 20; k++)
            bar[k] = k < fill ? '#' : '.';
        bar[20] = '\0';
        char bytes[32];
        char rate[32];
        human_bytes(bytes, sizeof(bytes), (double)d.bytes);
        human_bytes(rate, sizeof(rate), secs > 0 ? (double)d.bytes / secs : 0);
        char eta[40] = "";
        if (d.finished > 0 && d.finished < d.jobs)
            snprintf(eta, sizeof(eta), ", about %.0f s left",
                     secs / (double)d.finished * (double)(d.jobs - d.finished));
        char failed[40] = "";
        if (d.failed > 0)
            snprintf(failed, sizeof(failed), ", %llu failed", (unsigned long long)d.failed);
        fprintf(stderr, "  %-16s [%s] %llu/%llu images, %s, %s/s%s%s%s\n", d.name, bar,
                (unsigned long long)d.finished, (unsigned long long)d.jobs, bytes, rate, eta,
                failed, d.circuit != ENGINE_CIRCUIT_CLOSED ? " (circuit open)" : "");
        lines++;
    }
    s->lines_drawn = lines;
}

static void sync_tick(uv_timer_t *timer)
{
    sync_draw(timer->data);
}

static void sync_committer_closed(void *arg)
{
    struct sync *s = arg;
    s->committer = NULL;
}

static void sync_engine_closed(void *arg)
{
    struct sync *s = arg;
    s->engine = NULL;
    journal_committer_close(s->committer, sync_committer_closed, s);
}

static void sync_poller_closed(void *arg)
{
    struct sync *s = arg;
    s->poller = NULL;
    engine_close(s->engine, sync_engine_closed, s);
}

static void sync_finish(struct sync *s)
{
    if (s->finishing)
        return;
    s->finishing = true;
    if (s->tty) {
        sync_draw(s);
        uv_timer_stop(&s->ticker);
        uv_close((uv_handle_t *)&s->ticker, NULL);
    }
    poller_close(s->poller, sync_poller_closed, s);
}

static void sync_idle(struct engine *e, void *arg)
{
    struct sync *s = arg;
    (void)e;
    if (s->polled)
        sync_finish(s);
}

static void sync_polled(struct poller *p, void *arg)
{
    struct sync *s = arg;
    struct poller_stats st;
    poller_get_stats(p, &st);
    s->poll_errors = st.errors;
    snprintf(s->poll_error, sizeof(s->poll_error), "%s", st.last_error);
    s->polled = true;
    /* The entries of the round may still be on their way through the
     * committer; the engine says when it is idle with all of them. */
    engine_notify(s->engine, journal_last_seq(s->journal));
}

static void sync_job_done(struct engine *e, const struct journal_job *job, void *arg)
{
    struct sync *s = arg;
    (void)e;
    const char *state = job->state == JOURNAL_JOB_COMPLETE     ? "complete"
                        : job->state == JOURNAL_JOB_SUPERSEDED ? "superseded"
                                                               : "FAILED";
    /* On a terminal the progress lines tell the story; failures still get a line. */
    if (!s->json && (!s->tty || job->state == JOURNAL_JOB_FAILED))
        fprintf(stderr, "%-10s %s %s@%s%s%s (%llu bytes)%s%s\n", state, job->destination,
                job->repository, job->digest, job->n_tags ? " tag " : "",
                job->n_tags ? job->tags[0] : "", (unsigned long long)job->bytes,
                job->state == JOURNAL_JOB_FAILED ? ": " : "",
                job->state == JOURNAL_JOB_FAILED && job->last_error ? job->last_error : "");
}

/*
 * A FAILED job of an image the rules select, whichever run made it: the
 * mirror is not whole while one is left. `ferry status` and `ferry verify`
 * read the same records and registries.
 */
static int sync_collect_failed(const struct journal_job *job, void *arg)
{
    struct sync *s = arg;
    struct journal_entry en;
    if (job->state != JOURNAL_JOB_FAILED || job->seq == 0 ||
        journal_get(s->journal, job->seq, &en) < 0)
        return 0;
    bool selected = config_sends(s->config, en.source, en.repository, en.tag,
                                 en.action == JOURNAL_DELETE, job->destination, job->repository);
    journal_entry_release(&en);
    if (!selected)
        return 0;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "destination", job->destination);
    cJSON_AddStringToObject(f, "repository", job->repository);
    cJSON_AddStringToObject(f, "digest", job->digest);
    if (job->n_tags > 0)
        cJSON_AddStringToObject(f, "tag", job->tags[0]);
    cJSON_AddStringToObject(f, "error", job->last_error ? job->last_error : "");
    cJSON_AddItemToArray(s->failures, f);
    if (!s->json)
        printf("FAILED     %s %s@%s%s%s: %s\n", job->destination, job->repository, job->digest,
               job->n_tags > 0 ? " tag " : "", job->n_tags > 0 ? job->tags[0] : "",
               job->last_error ? job->last_error : "");
    return 0;
}

static void sync_tail(const struct journal_entry *e, void *arg)
{
    struct sync *s = arg;
    if (s->engine != NULL)
        engine_notify(s->engine, e->seq);
}

int sync_run(const char *config_path, bool json)
{
    struct sync s;
    char *err = NULL;
    int rc;

    memset(&s, 0, sizeof(s));
    s.json = json;
    rc = config_load(config_path, &s.config, &err);
    if (rc < 0) {
        fprintf(stderr, "ferry sync: %s\n", err ? err : ferry_strerror(rc));
        free(err);
        return rc;
    }
    rc = config_data_dir_prepare(s.config);
    char *dir = xasprintf("%s/journal", s.config->data_dir);
    struct journal_options jopts = {0};
    if (rc == 0)
        rc = journal_open(dir, &jopts, &s.journal, &err);
    if (rc < 0) {
        fprintf(stderr, "ferry sync: journal %s: %s\n", dir, err ? err : ferry_strerror(rc));
        free(err);
        free(dir);
        config_free(s.config);
        return rc;
    }
    free(dir);

    s.failures = cJSON_CreateArray();
    uv_loop_init(&s.loop);
    s.start_ms = uv_now(&s.loop);
    s.tty = !json && isatty(STDERR_FILENO);
    if (s.tty) {
        uv_timer_init(&s.loop, &s.ticker);
        s.ticker.data = &s;
        uv_timer_start(&s.ticker, sync_tick, 250, 250);
    }
    journal_committer_new(&s.loop, s.journal, &s.committer);
    engine_new(&s.loop, s.config, s.journal, s.committer, &s.engine);
    engine_set_callbacks(s.engine, sync_idle, sync_job_done, &s);
    engine_set_one_shot(s.engine, true);
    journal_committer_set_tail(s.committer, sync_tail, &s);
    poller_new(&s.loop, s.config, s.journal, s.committer, &s.poller);
    engine_start(s.engine);
    /* What failed in an earlier run gets another go: a sync run from cron
     * heals once the cause is gone, and says so while it is not. */
    size_t again = engine_retry(s.engine, NULL, NULL, NULL);
    if (again > 0)
        log_info("retrying jobs that failed before count=%zu", again);
    poller_start_once(s.poller, sync_polled, &s);
    uv_run(&s.loop, UV_RUN_DEFAULT);

    struct engine_stats st = {0};
    uv_update_time(&s.loop);
    double seconds = (double)(uv_now(&s.loop) - s.start_ms) / 1000.0;
    journal_job_scan(s.journal, sync_collect_failed, &s);
    int failed = cJSON_GetArraySize(s.failures);
    /* The loop ran dry before the engine said it was done: jobs are stuck
     * somewhere, and this is no clean sync. */
    if (!s.finishing) {
        log_error("sync stopped with work unfinished: a job waits for something that never comes");
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "error", "internal error: jobs left unfinished");
        cJSON_AddItemToArray(s.failures, f);
        failed++;
        if (!json)
            printf("FAILED     internal error: jobs left unfinished\n");
    }
    /* A source that could not be listed is not a clean sync. */
    if (s.poll_errors > 0) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "error", s.poll_error);
        cJSON_AddItemToArray(s.failures, f);
        failed++;
        if (!json)
            printf("FAILED     polling: %s\n", s.poll_error);
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", failed == 0);
        cJSON_AddNumberToObject(j, "seconds", seconds);
        cJSON_AddItemToObject(j, "failed", s.failures);
        s.failures = NULL;
        char *text = xjson_print(j, false);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
    } else {
        printf("sync %s in %.1f s: %d failed\n", failed ? "finished" : "complete", seconds, failed);
    }
    (void)st;
    cJSON_Delete(s.failures);
    if (uv_loop_close(&s.loop) != 0)
        log_warn("sync loop closed with handles still open");
    journal_close(s.journal);
    config_free(s.config);
    return failed ? 1 : 0;
}
