/*
 * cmd_retry: `ferry retry -c FILE (--dest D | --all-failed)`, FAILED jobs
 * made PENDING again: in the journal itself, or through the daemon's API
 * when a running daemon holds the journal.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/daemon_client.h"
#include "cli/options.h"
#include "common/errors.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "journal/journal.h"

static void usage_retry(FILE *out)
{
    fputs("usage: ferry retry -c FILE (--dest D | --all-failed)\n"
          "\n"
          "Marks FAILED replication jobs (of destination D, or all of them) PENDING again;\n"
          "the next 'ferry sync', or 'ferry serve' when it starts, runs them with their\n"
          "original journal seq, so a retried job never moves a tag past a newer entry.\n"
          "When a daemon holds the journal, it is asked through its API (POST /v1/retry\n"
          "with {\"destination\": D} or {\"all_failed\": true}) and requeues them at once.\n"
          "Prints how many jobs were requeued.\n"
          "\n"
          "  -c, --config FILE   the configuration\n"
          "      --dest D        the FAILED jobs of destination registry D\n"
          "      --all-failed    the FAILED jobs of every destination\n"
          "\n"
          "Exit status: 0 when requeued (none is no error), 1 when the journal or the\n"
          "daemon could not be reached, 2 on a usage or configuration error.\n",
          out);
}

/* The FAILED jobs of one destination (NULL: all), copied out of a scan. */
struct retry_scan {
    const char *dest;
    struct journal_job *jobs;
    size_t n;
};

static int retry_collect(const struct journal_job *job, void *arg)
{
    struct retry_scan *r = arg;
    if (job->state != JOURNAL_JOB_FAILED ||
        (r->dest != NULL && strcmp(job->destination, r->dest) != 0))
        return 0;
    r->jobs = xrealloc(r->jobs, (r->n + 1) * sizeof(*r->jobs));
    struct journal_job *copy = &r->jobs[r->n++];
    *copy = *job;
    copy->destination = xstrdup(job->destination);
    copy->repository = xstrdup(job->repository);
    copy->digest = xstrdup(job->digest);
    copy->last_error = xstrdup(job->last_error);
    copy->tags = job->n_tags ? xcalloc(job->n_tags, sizeof(char *)) : NULL;
    for (size_t i = 0; i < job->n_tags; i++)
        copy->tags[i] = xstrdup(job->tags[i]);
    return 0;
}

/* Requeue in the journal itself; returns 0, or a negative code after saying why. */
static int retry_in_journal(struct journal *j, const char *dest)
{
    struct retry_scan r = {.dest = dest};
    int rc = journal_job_scan_open(j, retry_collect, &r);
    for (size_t i = 0; rc >= 0 && i < r.n; i++) {
        r.jobs[i].state = JOURNAL_JOB_PENDING;
        r.jobs[i].attempts = 0;
        rc = journal_job_put(j, &r.jobs[i]);
    }
    if (rc >= 0)
        printf("requeued %zu failed job%s\n", r.n, r.n == 1 ? "" : "s");
    else
        fprintf(stderr, "ferry retry: %s\n", ferry_strerror(rc));
    for (size_t i = 0; i < r.n; i++)
        journal_job_release(&r.jobs[i]);
    free(r.jobs);
    return rc < 0 ? rc : 0;
}

/*
 * The daemon holds the journal: ask it to requeue, POST /v1/retry. Returns 0,
 * or a negative code after saying why.
 */
static int retry_through_daemon(const struct config *cfg, const char *dest)
{
    struct daemon_client cl;
    daemon_client_init(&cl, NULL, cfg, daemon_client_api_token(cfg));
    /* The API refuses an empty selection: every FAILED job is asked for by name. */
    cJSON *req = cJSON_CreateObject();
    if (dest != NULL)
        cJSON_AddStringToObject(req, "destination", dest);
    else
        cJSON_AddTrueToObject(req, "all_failed");
    char *post = xjson_print(req, false);
    cJSON_Delete(req);
    cJSON *body = NULL;
    char *error = NULL;
    int rc = daemon_client_call(&cl, "/v1/retry", post, &body, &error);
    if (rc == 0) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "requeued");
        size_t n = cJSON_IsNumber(v) ? (size_t)v->valuedouble : 0;
        printf("requeued %zu failed job%s (by the running daemon)\n", n, n == 1 ? "" : "s");
    } else {
        fprintf(stderr, "ferry retry: the daemon holds the journal and its API said: %s\n",
                error != NULL ? error : "nothing");
    }
    cJSON_Delete(body);
    free(error);
    free(post);
    daemon_client_release(&cl);
    return rc;
}

/* The command line of `ferry retry`. */
struct retry_cmd {
    const char *config;
    const char *dest;
    bool all;
};

static int retry_flag(void *ctx, int c, char *arg)
{
    struct retry_cmd *r = ctx;
    if (c == 'c') {
        r->config = arg;
    } else if (c == 'd') {
        r->dest = arg;
    } else if (c == 'a') {
        r->all = true;
    } else if (c == OPT_HELP) {
        usage_retry(stdout);
        return 0;
    } else {
        options_unknown_flag("retry");
        return OPTIONS_EXIT_USAGE;
    }
    return OPTIONS_RUN;
}

/* The flags; returns OPTIONS_RUN with *config and *dest set, or the exit status. */
static int retry_parse(int argc, char **argv, const char **config, const char **dest)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"dest", required_argument, NULL, 'd'},
        {"all-failed", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct retry_cmd r = {0};
    const struct options_spec spec = {"c:", longopts, retry_flag, &r};
    int n_words = 0;

    int rc = options_parse(&spec, argc, argv, &n_words);
    if (rc != OPTIONS_RUN)
        return rc;
    if (r.config == NULL || n_words != 0 || (r.dest == NULL) == !r.all) {
        fprintf(stderr, "ferry retry: want -c FILE and one of --dest D or --all-failed\n");
        return OPTIONS_EXIT_USAGE;
    }
    *config = r.config;
    *dest = r.dest;
    return OPTIONS_RUN;
}

int cmd_retry(int argc, char **argv)
{
    const char *config = NULL;
    const char *dest = NULL;
    struct config *cfg = NULL;
    struct journal *j = NULL;
    char *dir = NULL;
    char *err = NULL;
    int rc = retry_parse(argc, argv, &config, &dest);
    if (rc != OPTIONS_RUN)
        return rc;
    if (options_config_load("retry", config, &cfg) < 0)
        return OPTIONS_EXIT_USAGE;
    if (dest != NULL && config_registry_find(cfg, dest) == NULL) {
        fprintf(stderr, "ferry retry: unknown destination '%s'\n", dest);
        rc = OPTIONS_EXIT_USAGE;
        goto out;
    }
    dir = xasprintf("%s/journal", cfg->data_dir);
    struct journal_options jopts = {0};
    /* A cluster's jobs are run again by a running node: the daemon's API. */
    rc = cfg->cluster != NULL ? -EBUSY : journal_open(dir, &jopts, &j, &err);
    if (rc == -EBUSY) {
        rc = retry_through_daemon(cfg, dest);
    } else if (rc < 0) {
        fprintf(stderr, "ferry retry: %s\n", err ? err : ferry_strerror(rc));
    } else {
        rc = retry_in_journal(j, dest);
        journal_close(j);
    }
    rc = rc < 0 ? 1 : 0;
out:
    free(err);
    free(dir);
    config_free(cfg);
    return rc;
}
