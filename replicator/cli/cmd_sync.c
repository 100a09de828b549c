/*
 * cmd_sync: `ferry sync -c FILE`, one reconcile of every rule: poll every
 * source once (backfill), replicate everything the journal holds that is not
 * done yet, and report. Returns when nothing is left to do.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/errors.h"
#include "common/human.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "journal/committer.h"
#include "journal/journal.h"
#include "replication/engine.h"
#include "replication/poller.h"

/* How often the progress lines are redrawn on a terminal, and how wide their bar is. */
#define SYNC_DRAW_EVERY_MS 250
#define SYNC_BAR_WIDTH     20

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
    int failed;               /* entries of failures */
    uint64_t foreign_skipped; /* foreign layers left out, all destinations (at the finish) */
    uint64_t poll_errors;
    char poll_error[512];
    bool tty;          /* progress lines redrawn in place */
    uv_timer_t ticker; /* redraws them */
    unsigned lines_drawn;
};

static void usage_sync(FILE *out)
{
    fputs("usage: ferry sync -c FILE [--json] [-v]\n"
          "\n"
          "One reconcile of every rule: polls every source once (backfill), replicates\n"
          "every journal entry not done yet to every destination its rules name, and\n"
          "prints one line per job (complete, superseded or FAILED with its reason).\n"
          "Exit status: 0 when everything is complete, 1 when something FAILED, 2 on a\n"
          "usage or configuration error.\n",
          out);
}

/* ---- progress on a terminal ---- */

/* One destination's line: images done/total, bytes, rate, ETA. */
static void sync_draw_line(const struct engine_destination_stats *d, double secs)
{
    char bar[SYNC_BAR_WIDTH + 1];
    size_t fill = (size_t)((double)SYNC_BAR_WIDTH * (double)d->finished / (double)d->jobs);
    for (size_t k = 0; k < SYNC_BAR_WIDTH; k++)
        bar[k] = k < fill ? '#' : '.';
    bar[SYNC_BAR_WIDTH] = '\0';
    char bytes[32];
    char rate[32];
    human_bytes(bytes, sizeof(bytes), (double)d->bytes);
    human_bytes(rate, sizeof(rate), secs > 0 ? (double)d->bytes / secs : 0);
    char eta[40] = "";
    if (d->finished > 0 && d->finished < d->jobs)
        snprintf(eta, sizeof(eta), ", about %.0f s left",
                 secs / (double)d->finished * (double)(d->jobs - d->finished));
    char failed[40] = "";
    if (d->failed > 0)
        snprintf(failed, sizeof(failed), ", %llu failed", (unsigned long long)d->failed);
    fprintf(stderr, "  %-16s [%s] %llu/%llu images, %s, %s/s%s%s%s\n", d->name, bar,
            (unsigned long long)d->finished, (unsigned long long)d->jobs, bytes, rate, eta, failed,
            d->circuit != ENGINE_CIRCUIT_CLOSED ? " (circuit open)" : "");
}

/* One line per destination with jobs, drawn over the last frame. */
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
        sync_draw_line(&d, secs);
        lines++;
    }
    s->lines_drawn = lines;
}

static void sync_tick(uv_timer_t *timer)
{
    sync_draw(timer->data);
}

/* ---- closing: the poller, then the engine, then the committer ---- */

static void sync_committer_closed(void *arg)
{
    struct sync *s = arg;
    s->committer = NULL;
}

static void sync_close_committer(struct sync *s)
{
    if (s->committer != NULL)
        journal_committer_close(s->committer, sync_committer_closed, s);
}

static void sync_engine_closed(void *arg)
{
    struct sync *s = arg;
    s->engine = NULL;
    sync_close_committer(s);
}

static void sync_close_engine(struct sync *s)
{
    if (s->engine != NULL)
        engine_close(s->engine, sync_engine_closed, s);
    else
        sync_close_committer(s);
}

static void sync_poller_closed(void *arg)
{
    struct sync *s = arg;
    s->poller = NULL;
    sync_close_engine(s);
}

/* Stop redrawing and close every part that was made; the loop then runs dry. */
static void sync_finish(struct sync *s)
{
    if (s->finishing)
        return;
    s->finishing = true;
    struct engine_destination_stats d;
    for (size_t i = 0; s->engine != NULL && engine_destination_stats(s->engine, i, &d); i++)
        s->foreign_skipped += d.foreign_layers_skipped;
    if (s->tty) {
        sync_draw(s);
        uv_timer_stop(&s->ticker);
        uv_close((uv_handle_t *)&s->ticker, NULL);
    }
    if (s->poller != NULL)
        poller_close(s->poller, sync_poller_closed, s);
    else
        sync_close_engine(s);
}

/* ---- running ---- */

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

static void sync_tail(const struct journal_entry *e, void *arg)
{
    struct sync *s = arg;
    if (s->engine != NULL)
        engine_notify(s->engine, e->seq);
}

/* Load the config and open the journal; returns 0, or a negative code after saying why. */
static int sync_open(struct sync *s, const char *config_path)
{
    char *err = NULL;
    int rc = options_config_load("sync", config_path, &s->config);
    if (rc < 0)
        return rc;
    if (s->config->cluster != NULL) {
        /* A one-shot run would take the cluster's shared work from its nodes. */
        fprintf(stderr,
                "ferry sync: %s has a cluster: section; a cluster replicates with "
                "'ferry serve' on its nodes (see 'Running as a cluster' in the README)\n",
                config_path);
        return FERRY_EINVAL;
    }
    rc = config_data_dir_prepare(s->config);
    char *dir = xasprintf("%s/journal", s->config->data_dir);
    struct journal_options jopts = {0};
    if (rc == 0)
        rc = journal_open(dir, &jopts, &s->journal, &err);
    if (rc < 0)
        fprintf(stderr, "ferry sync: journal %s: %s\n", dir, err ? err : ferry_strerror(rc));
    free(err);
    free(dir);
    return rc;
}

/* The redraw timer, on a terminal. */
static int sync_ticker_start(struct sync *s)
{
    int rc = uv_timer_init(&s->loop, &s->ticker);
    if (rc < 0)
        return rc;
    s->ticker.data = s;
    rc = uv_timer_start(&s->ticker, sync_tick, SYNC_DRAW_EVERY_MS, SYNC_DRAW_EVERY_MS);
    if (rc < 0)
        uv_close((uv_handle_t *)&s->ticker, NULL);
    return rc;
}

/*
 * Make the committer, the engine and the poller on the loop (started) and
 * start them: the engine first retries what failed in an earlier run, then
 * the poller makes its one round. Returns 0, or a negative code after
 * closing whatever was made (the loop must still run to finish that).
 */
static int sync_start(struct sync *s)
{
    s->start_ms = uv_now(&s->loop);
    s->tty = !s->json && isatty(STDERR_FILENO);
    int rc = s->tty ? sync_ticker_start(s) : 0;
    if (rc < 0) {
        s->tty = false;
        return rc;
    }
    rc = journal_committer_new(&s->loop, s->journal, &s->committer);
    if (rc == 0)
        rc = engine_new(&s->loop, s->config, s->journal, s->committer, &s->engine);
    if (rc == 0)
        rc = poller_new(&s->loop, s->config, s->journal, s->committer, &s->poller);
    if (rc < 0) {
        sync_finish(s);
        return rc;
    }
    engine_set_callbacks(s->engine, sync_idle, sync_job_done, s);
    engine_set_one_shot(s->engine, true);
    journal_committer_set_tail(s->committer, sync_tail, s);
    engine_start(s->engine);
    /* What failed in an earlier run gets another go: a sync run from cron
     * heals once the cause is gone, and says so while it is not. */
    size_t again = engine_retry(s->engine, NULL, NULL, NULL);
    if (again > 0)
        log_info("retrying jobs that failed before count=%zu", again);
    poller_start_once(s->poller, sync_polled, s);
    return 0;
}

/* ---- the report ---- */

/* One failure for the report: in the JSON, and (without --json) a line on stdout. */
static void sync_fail(struct sync *s, cJSON *f, const char *line)
{
    cJSON_AddItemToArray(s->failures, f);
    s->failed++;
    if (!s->json)
        printf("FAILED     %s\n", line);
}

/* A failure that names no job: `error` in the JSON, "what: error" on the line. */
static void sync_fail_other(struct sync *s, const char *what, const char *error)
{
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "error", error);
    char *line = what != NULL ? xasprintf("%s: %s", what, error) : xstrdup(error);
    sync_fail(s, f, line);
    free(line);
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
    /* An entry retention has dropped names no image the rules select now. */
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
    char *line = xasprintf("%s %s@%s%s%s: %s", job->destination, job->repository, job->digest,
                           job->n_tags > 0 ? " tag " : "", job->n_tags > 0 ? job->tags[0] : "",
                           job->last_error ? job->last_error : "");
    sync_fail(s, f, line);
    free(line);
    return 0;
}

/* Everything that keeps the mirror from being whole, then the summary. */
static void sync_report(struct sync *s, double seconds)
{
    int rc = journal_job_scan_open(s->journal, sync_collect_failed, s);
    if (rc < 0)
        sync_fail_other(s, "job records", ferry_strerror(rc));
    /* The loop ran dry before the engine said it was done: jobs are stuck
     * somewhere, and this is no clean sync. */
    if (!s->finishing) {
        log_error("sync stopped with work unfinished: a job waits for something that never comes");
        sync_fail_other(s, NULL, "internal error: jobs left unfinished");
    }
    /* A source that could not be listed is not a clean sync. */
    if (s->poll_errors > 0)
        sync_fail_other(s, "polling", s->poll_error);
    if (s->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", s->failed == 0);
        cJSON_AddNumberToObject(j, "seconds", seconds);
        cJSON_AddNumberToObject(j, "foreign_layers_skipped", (double)s->foreign_skipped);
        cJSON_AddItemToObject(j, "failed", s->failures);
        s->failures = NULL;
        char *text = xjson_print(j, false);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
    } else {
        char foreign[64] = "";
        if (s->foreign_skipped > 0)
            snprintf(foreign, sizeof(foreign), ", %llu foreign layers left out",
                     (unsigned long long)s->foreign_skipped);
        printf("sync %s in %.1f s: %d failed%s\n", s->failed ? "finished" : "complete", seconds,
               s->failed, foreign);
    }
}

/*
 * Run one sync with the config at `config_path`. Returns 0 when every job
 * ended COMPLETE (or SUPERSEDED), 1 when some FAILED (each listed with its
 * reason), or a negative code after printing one line on stderr. With
 * `json`, prints a summary object on stdout.
 */
static int sync_run(const char *config_path, bool json)
{
    struct sync s;
    memset(&s, 0, sizeof(s));
    s.json = json;
    int rc = sync_open(&s, config_path);
    if (rc < 0)
        goto out;
    rc = uv_loop_init(&s.loop);
    if (rc < 0) {
        fprintf(stderr, "ferry sync: %s\n", uv_strerror(rc));
        goto out;
    }
    s.failures = cJSON_CreateArray();
    rc = sync_start(&s);
    if (uv_run(&s.loop, UV_RUN_DEFAULT) != 0)
        log_warn("sync loop stopped with work left");
    if (rc < 0) {
        fprintf(stderr, "ferry sync: cannot start: %s\n", ferry_strerror(rc));
    } else {
        uv_update_time(&s.loop);
        sync_report(&s, (double)(uv_now(&s.loop) - s.start_ms) / 1000.0);
        rc = s.failed ? 1 : 0;
    }
    cJSON_Delete(s.failures);
    if (uv_loop_close(&s.loop) != 0)
        log_warn("sync loop closed with handles still open");
out:
    if (s.journal != NULL)
        journal_close(s.journal);
    config_free(s.config);
    return rc;
}

int cmd_sync(int argc, char **argv)
{
    struct options_config_cmd f;
    int rc = options_config_cmd_parse("sync", argc, argv, usage_sync, true, false, &f);
    if (rc != OPTIONS_RUN)
        return rc;
    rc = sync_run(f.config, f.json);
    return rc < 0 ? OPTIONS_EXIT_USAGE : rc;
}
