/*
 * cmd_journal: `ferry journal -c FILE ls|show|stats|jobs|append`, the change
 * journal read (read-only, so while the daemon runs too) and appended to by
 * hand (through the daemon's webhook when the daemon holds the journal).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/daemon_client.h"
#include "cli/options.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "daemon/cluster.h"
#include "journal/journal.h"

/* How long an append through the daemon may take. */
#define JOURNAL_CMD_APPEND_TIMEOUT_MS 30000

/* The ids of the subcommands' flags (apart from journal's own: 'c', 'h', OPT_HELP). */
enum journal_cmd_flag {
    JOURNAL_OPT_AFTER = 3000,
    JOURNAL_OPT_LIMIT,
    JOURNAL_OPT_JSON,
    JOURNAL_OPT_STATE,
    JOURNAL_OPT_DEST,
    JOURNAL_OPT_SOURCE,
    JOURNAL_OPT_REPO,
    JOURNAL_OPT_DIGEST,
    JOURNAL_OPT_TAG,
    JOURNAL_OPT_MEDIA_TYPE,
    JOURNAL_OPT_DELETE,
};

/* The command line of `ferry journal`, every subcommand's flags included. */
struct journal_cmd {
    const char *config;
    const char *sub;            /* ls, show, append, stats or jobs */
    bool json;                  /* ls, jobs */
    uint64_t after;             /* ls */
    uint64_t limit;             /* ls; 0: all */
    uint64_t seq;               /* show */
    const char *state;          /* jobs */
    const char *dest;           /* jobs */
    struct journal_event event; /* append */
};

static void usage_journal(FILE *out)
{
    fputs("usage: ferry journal -c FILE COMMAND [ARGS]\n"
          "\n"
          "-c FILE may come before or after COMMAND, as may every flag; '--' ends them.\n"
          "\n"
          "  ls [--after SEQ] [--limit N] [--json]   entries after SEQ (default: all)\n"
          "  show SEQ                                one entry as JSON\n"
          "  append --source S --repo R --digest D [--tag T] [--media-type M] [--delete]\n"
          "                                          add an entry by hand (through the\n"
          "                                          daemon when it holds the journal)\n"
          "  stats                                   counts and seqs\n"
          "  jobs [--state S] [--dest D] [--json]    job status records (S: PENDING,\n"
          "                                          IN_PROGRESS, COMPLETE, FAILED, SUPERSEDED)\n"
          "\n"
          "ls, show, stats and jobs work while 'ferry serve' runs (read-only access).\n"
          "With --json, ls prints one object per line: seq, event_id, source, action,\n"
          "repository, tag, digest, media_type, received_at, ignored (why the entry\n"
          "changed nothing: the source disagreed; null otherwise).\n",
          out);
}

/* Print `json` on a line of stdout (`pretty`: over several) and free it. */
static void journal_cmd_print(cJSON *json, bool pretty)
{
    char *text = xjson_print(json, pretty);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(json);
}

/* ---- ls and show ---- */

/* `value` as a string, or null. */
static void journal_cmd_add_string(cJSON *o, const char *name, const char *value)
{
    if (value != NULL)
        cJSON_AddStringToObject(o, name, value);
    else
        cJSON_AddNullToObject(o, name);
}

static cJSON *journal_cmd_entry_json(const struct journal_entry *e)
{
    cJSON *j = cJSON_CreateObject();
    char stamp[CLOCK_RFC3339_MAX];
    clock_format_rfc3339(e->received_unix_ms, stamp);
    cJSON_AddNumberToObject(j, "seq", (double)e->seq);
    cJSON_AddStringToObject(j, "event_id", e->event_id);
    cJSON_AddStringToObject(j, "source", e->source);
    cJSON_AddStringToObject(j, "action", e->action == JOURNAL_DELETE ? "delete" : "push");
    cJSON_AddStringToObject(j, "repository", e->repository);
    journal_cmd_add_string(j, "tag", e->tag);
    journal_cmd_add_string(j, "digest", e->digest);
    journal_cmd_add_string(j, "media_type", e->media_type);
    cJSON_AddStringToObject(j, "received_at", stamp);
    journal_cmd_add_string(j, "ignored", e->ignored);
    return j;
}

struct journal_cmd_ls {
    bool json;
    size_t shown;
};

static int journal_cmd_ls_one(const struct journal_entry *e, void *arg)
{
    struct journal_cmd_ls *ls = arg;
    if (ls->json) {
        journal_cmd_print(journal_cmd_entry_json(e), false);
    } else {
        if (ls->shown == 0)
            printf("%-8s %-6s %-12s %-30s %-20s %s\n", "SEQ", "ACTION", "SOURCE", "REPOSITORY",
                   "TAG", "DIGEST");
        printf("%-8llu %-6s %-12s %-30s %-20s %s%s%s\n", (unsigned long long)e->seq,
               e->action == JOURNAL_DELETE ? "delete" : "push", e->source, e->repository,
               e->tag ? e->tag : "-", e->digest ? e->digest : "-", e->ignored ? "  " : "",
               e->ignored ? e->ignored : "");
    }
    ls->shown++;
    return 0;
}

/* `ls [--after SEQ] [--limit N] [--json]`; returns the exit status. */
static int journal_cmd_ls(struct journal *j, const struct journal_cmd *jc)
{
    struct journal_cmd_ls ls = {.json = jc->json};
    return journal_scan(j, jc->after, jc->limit, journal_cmd_ls_one, &ls) < 0 ? 1 : 0;
}

/* `show SEQ`; returns the exit status. */
static int journal_cmd_show(struct journal *j, const struct journal_cmd *jc)
{
    struct journal_entry e;
    if (journal_get(j, jc->seq, &e) < 0) {
        fprintf(stderr, "ferry journal show: no entry %llu\n", (unsigned long long)jc->seq);
        return 1;
    }
    journal_cmd_print(journal_cmd_entry_json(&e), true);
    journal_entry_release(&e);
    return 0;
}

/* `stats`; returns the exit status. */
static int journal_cmd_stats(struct journal *j)
{
    struct journal_stats st;
    if (journal_get_stats(j, &st) < 0)
        return 1;
    printf("entries %llu\nfirst_seq %llu\nlast_seq %llu\ndedup_keys %llu\n",
           (unsigned long long)st.entries, (unsigned long long)st.first_seq,
           (unsigned long long)st.last_seq, (unsigned long long)st.dedup_keys);
    /* On disk: the tables, the write-ahead log, and both per entry (RocksDB
     * flushes and compacts in the background: the figures move by a
     * memtable or so between two calls). */
    uint64_t bytes = st.table_bytes + st.wal_bytes;
    printf("table_bytes %llu\nwal_bytes %llu\nbytes_per_entry %llu\n",
           (unsigned long long)st.table_bytes, (unsigned long long)st.wal_bytes,
           (unsigned long long)(st.entries > 0 ? bytes / st.entries : 0));
    return 0;
}

/* ---- jobs ---- */

struct journal_cmd_jobs {
    const char *state;
    const char *dest;
    bool json;
};

static void journal_cmd_job_json(const struct journal_job *job, const char *state)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "destination", job->destination);
    cJSON_AddStringToObject(o, "repository", job->repository);
    cJSON_AddStringToObject(o, "digest", job->digest);
    cJSON *tags = cJSON_AddArrayToObject(o, "tags");
    for (size_t k = 0; k < job->n_tags; k++)
        cJSON_AddItemToArray(tags, cJSON_CreateString(job->tags[k]));
    cJSON_AddStringToObject(o, "state", state);
    cJSON_AddNumberToObject(o, "attempts", job->attempts);
    journal_cmd_add_string(o, "last_error", job->last_error);
    cJSON_AddNumberToObject(o, "seq", (double)job->seq);
    journal_cmd_add_string(o, "node", job->node);
    cJSON_AddNumberToObject(o, "bytes", (double)job->bytes);
    cJSON_AddNumberToObject(o, "updated_unix_ms", (double)job->updated_unix_ms);
    journal_cmd_print(o, false);
}

static int journal_cmd_jobs_one(const struct journal_job *job, void *arg)
{
    struct journal_cmd_jobs *ls = arg;
    const char *state = journal_job_state_name(job->state);
    if ((ls->state != NULL && strcasecmp(ls->state, state) != 0) ||
        (ls->dest != NULL && strcmp(ls->dest, job->destination) != 0))
        return 0;
    if (ls->json)
        journal_cmd_job_json(job, state);
    else
        printf("%-11s %s %s@%s%s%s attempts=%u%s%s\n", state, job->destination, job->repository,
               job->digest, job->n_tags > 0 ? " tag " : "", job->n_tags > 0 ? job->tags[0] : "",
               job->attempts, job->last_error != NULL ? ": " : "",
               job->last_error != NULL ? job->last_error : "");
    return 0;
}

/* `jobs [--state S] [--dest D] [--json]`: the job status records, for scripts and post-mortems. */
static int journal_cmd_jobs(struct journal *j, const struct journal_cmd *jc)
{
    struct journal_cmd_jobs ls = {.state = jc->state, .dest = jc->dest, .json = jc->json};
    return journal_job_scan(j, journal_cmd_jobs_one, &ls) < 0 ? 1 : 0;
}

/* ---- append ---- */

/* The event as the daemon's generic webhook takes it. */
static char *journal_cmd_webhook_body(const struct journal_event *ev)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *events = cJSON_AddArrayToObject(doc, "events");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", ev->event_id);
    cJSON_AddStringToObject(e, "action", ev->action == JOURNAL_DELETE ? "delete" : "push");
    cJSON_AddStringToObject(e, "repository", ev->repository);
    if (ev->digest != NULL)
        cJSON_AddStringToObject(e, "digest", ev->digest);
    if (ev->tag != NULL)
        cJSON_AddStringToObject(e, "tag", ev->tag);
    if (ev->media_type != NULL)
        cJSON_AddStringToObject(e, "mediaType", ev->media_type);
    cJSON_AddItemToArray(events, e);
    char *body = xjson_print(doc, false);
    cJSON_Delete(doc);
    return body;
}

/*
 * Hand an entry to the running daemon through its own webhook. Its answer
 * (accepted, duplicates, last_seq) goes to stdout as it is. Returns 0, or a
 * negative code after saying why.
 */
static int journal_cmd_via_daemon(const struct config *cfg, const struct journal_event *ev)
{
    struct daemon_client cl;
    struct daemon_answer a;
    char *error = NULL;
    char *body = journal_cmd_webhook_body(ev);
    char *path = xasprintf("/v1/events/%s", ev->source);

    daemon_client_init(&cl, NULL, cfg, cfg->webhook_token);
    cl.timeout_ms = JOURNAL_CMD_APPEND_TIMEOUT_MS;
    int rc = daemon_client_request(&cl, path, body, &a, &error);
    if (rc == FERRY_ECONNECT) {
        fprintf(stderr,
                "ferry journal append: the journal is in use and the daemon at %s did not "
                "answer (%s)\n",
                cfg->listen, error);
    } else if (rc < 0) {
        fprintf(stderr, "ferry journal append: the daemon at %s: %s\n", cfg->listen, error);
    } else {
        fwrite(a.body, 1, a.len, stdout);
        if (a.status != 200) {
            fprintf(stderr, "ferry journal append: the daemon answered HTTP %ld\n", a.status);
            rc = FERRY_EHTTP;
        }
        daemon_answer_release(&a);
    }
    daemon_client_release(&cl);
    free(error);
    free(path);
    free(body);
    return rc;
}

/* Append to the journal itself, or through the daemon that holds it; returns the exit status. */
static int journal_cmd_write(const struct config *cfg, const struct journal_event *ev)
{
    struct journal *j = NULL;
    char *err = NULL;
    int rc = cluster_journal_open(cfg, false, &j, &err);
    if (rc == -EBUSY) {
        rc = journal_cmd_via_daemon(cfg, ev);
        if (rc == 0)
            printf("appended through the daemon\n");
    } else if (rc < 0) {
        fprintf(stderr, "ferry journal append: %s\n", err ? err : ferry_strerror(rc));
    } else {
        uint64_t seq = 0;
        free(err);
        err = NULL;
        rc = journal_append(j, ev, 1, &seq, &err);
        if (rc < 0)
            fprintf(stderr, "ferry journal append: %s\n", err ? err : ferry_strerror(rc));
        else
            printf("appended seq %llu\n", (unsigned long long)seq);
        journal_close(j);
    }
    free(err);
    return rc < 0 ? 1 : 0;
}

/* Whether append's event makes sense with `cfg`; returns OPTIONS_RUN, or the exit status. */
static int journal_cmd_append_check(const struct config *cfg, const struct journal_event *ev)
{
    if (ev->source == NULL || ev->repository == NULL || (ev->digest == NULL && ev->tag == NULL) ||
        (ev->action == JOURNAL_PUSH && ev->digest == NULL)) {
        fprintf(stderr, "ferry journal append: want --source, --repo and --digest (or --delete "
                        "with --tag)\n");
        return OPTIONS_EXIT_USAGE;
    }
    if (config_registry_find(cfg, ev->source) == NULL) {
        fprintf(stderr, "ferry journal append: unknown source '%s'\n", ev->source);
        return OPTIONS_EXIT_USAGE;
    }
    if (!reference_repository_valid(ev->repository) || (ev->digest && !digest_valid(ev->digest)) ||
        (ev->tag && !reference_tag_valid(ev->tag))) {
        fprintf(stderr, "ferry journal append: invalid repository, digest or tag\n");
        return OPTIONS_EXIT_USAGE;
    }
    return OPTIONS_RUN;
}

/* `append ...`; returns the exit status. */
static int journal_cmd_append(const struct config *cfg, struct journal_cmd *jc)
{
    struct journal_event *ev = &jc->event;
    int rc = journal_cmd_append_check(cfg, ev);
    if (rc != OPTIONS_RUN)
        return rc;
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) < 0)
        memset(&now, 0, sizeof(now));
    char *id = xasprintf("manual:%lld.%09ld:%d", (long long)now.tv_sec, now.tv_nsec, (int)getpid());
    ev->event_id = id;
    rc = journal_cmd_write(cfg, ev);
    ev->event_id = NULL;
    free(id);
    return rc;
}

/* ---- the command line ---- */

/* journal's own flags, taken before or after the subcommand. */
static int journal_cmd_flag(void *ctx, int c, char *arg)
{
    struct journal_cmd *jc = ctx;
    if (c == 'c') {
        jc->config = arg;
        return OPTIONS_RUN;
    }
    if (c == 'h' || c == OPT_HELP) {
        usage_journal(stdout);
        return 0;
    }
    options_unknown_flag("journal");
    return OPTIONS_EXIT_USAGE;
}

/* A count or seq of --after or --limit into *out; returns OPTIONS_RUN, or the exit status. */
static int journal_cmd_number(const char *flag, const char *arg, uint64_t *out)
{
    char *end = NULL;
    *out = strtoull(arg, &end, 10);
    if (end == arg || *end != '\0' || arg[0] == '-') {
        fprintf(stderr, "ferry journal: %s wants a number, got '%s'\n", flag, arg);
        return OPTIONS_EXIT_USAGE;
    }
    return OPTIONS_RUN;
}

/* The flags of every subcommand (each takes only its own: options_parse_sub() sees to it). */
static int journal_cmd_sub_flag(void *ctx, int c, char *arg)
{
    struct journal_cmd *jc = ctx;
    switch (c) {
    case JOURNAL_OPT_AFTER:
        return journal_cmd_number("--after", arg, &jc->after);
    case JOURNAL_OPT_LIMIT:
        return journal_cmd_number("--limit", arg, &jc->limit);
    case JOURNAL_OPT_JSON:
        jc->json = true;
        break;
    case JOURNAL_OPT_STATE:
        jc->state = arg;
        break;
    case JOURNAL_OPT_DEST:
        jc->dest = arg;
        break;
    case JOURNAL_OPT_SOURCE:
        jc->event.source = arg;
        break;
    case JOURNAL_OPT_REPO:
        jc->event.repository = arg;
        break;
    case JOURNAL_OPT_DIGEST:
        jc->event.digest = arg;
        break;
    case JOURNAL_OPT_TAG:
        jc->event.tag = arg;
        break;
    case JOURNAL_OPT_MEDIA_TYPE:
        jc->event.media_type = arg;
        break;
    case JOURNAL_OPT_DELETE:
        jc->event.action = JOURNAL_DELETE;
        break;
    default:
        options_unknown_flag("journal");
        return OPTIONS_EXIT_USAGE;
    }
    return OPTIONS_RUN;
}

/*
 * The whole command line into *jc: -c FILE and --help anywhere, the
 * subcommand and its flags and words. Returns OPTIONS_RUN, or the exit
 * status.
 */
static int journal_cmd_parse(struct journal_cmd *jc, int argc, char **argv)
{
    static const struct option journal_longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    static const struct option ls_longopts[] = {
        {"after", required_argument, NULL, JOURNAL_OPT_AFTER},
        {"limit", required_argument, NULL, JOURNAL_OPT_LIMIT},
        {"json", no_argument, NULL, JOURNAL_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    static const struct option jobs_longopts[] = {
        {"state", required_argument, NULL, JOURNAL_OPT_STATE},
        {"dest", required_argument, NULL, JOURNAL_OPT_DEST},
        {"json", no_argument, NULL, JOURNAL_OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    static const struct option append_longopts[] = {
        {"source", required_argument, NULL, JOURNAL_OPT_SOURCE},
        {"repo", required_argument, NULL, JOURNAL_OPT_REPO},
        {"digest", required_argument, NULL, JOURNAL_OPT_DIGEST},
        {"tag", required_argument, NULL, JOURNAL_OPT_TAG},
        {"media-type", required_argument, NULL, JOURNAL_OPT_MEDIA_TYPE},
        {"delete", no_argument, NULL, JOURNAL_OPT_DELETE},
        {NULL, 0, NULL, 0},
    };
    const struct options_spec parent = {"c:h", journal_longopts, journal_cmd_flag, jc};
    const struct options_subcommand subs[] = {
        {"ls", {NULL, ls_longopts, journal_cmd_sub_flag, jc}},
        {"show", {NULL, NULL, journal_cmd_sub_flag, jc}},
        {"append", {NULL, append_longopts, journal_cmd_sub_flag, jc}},
        {"stats", {NULL, NULL, journal_cmd_sub_flag, jc}},
        {"jobs", {NULL, jobs_longopts, journal_cmd_sub_flag, jc}},
    };
    const struct options_subcommand *sub = NULL;
    int n_words = 0;

    memset(jc, 0, sizeof(*jc));
    jc->event.action = JOURNAL_PUSH;
    int rc = options_parse_sub(&parent, subs, sizeof(subs) / sizeof(subs[0]), argc, argv, &sub,
                               &n_words);
    if (rc != OPTIONS_RUN)
        return rc;
    if (sub == NULL && n_words > 0) {
        fprintf(stderr, "ferry journal: unknown command '%s' (see 'ferry journal --help')\n",
                argv[1]);
        return OPTIONS_EXIT_USAGE;
    }
    if (jc->config == NULL || sub == NULL) {
        fprintf(stderr, "ferry journal: want -c FILE and a command (see 'ferry journal --help')\n");
        return OPTIONS_EXIT_USAGE;
    }
    jc->sub = sub->name;
    bool show = strcmp(sub->name, "show") == 0;
    if (n_words != (show ? 2 : 1)) {
        if (show && n_words < 2)
            fprintf(stderr, "ferry journal show: want SEQ\n");
        else
            fprintf(stderr, "ferry journal %s: unexpected '%s' (see 'ferry journal --help')\n",
                    sub->name, argv[show ? 3 : 2]);
        return OPTIONS_EXIT_USAGE;
    }
    if (show)
        return journal_cmd_number("show", argv[2], &jc->seq);
    return OPTIONS_RUN;
}

/* ---- the command ---- */

/* ls, show, stats or jobs on the journal opened read-only; returns the exit status. */
static int journal_cmd_read(const struct config *cfg, const struct journal_cmd *jc)
{
    struct journal *j = NULL;
    char *err = NULL;
    int rc;
    if (cluster_journal_open(cfg, true, &j, &err) < 0) {
        fprintf(stderr, "ferry journal: %s\n", err);
        free(err);
        return 1;
    }
    if (strcmp(jc->sub, "ls") == 0)
        rc = journal_cmd_ls(j, jc);
    else if (strcmp(jc->sub, "jobs") == 0)
        rc = journal_cmd_jobs(j, jc);
    else if (strcmp(jc->sub, "show") == 0)
        rc = journal_cmd_show(j, jc);
    else
        rc = journal_cmd_stats(j);
    journal_close(j);
    free(err);
    return rc;
}

int cmd_journal(int argc, char **argv)
{
    struct journal_cmd jc;
    struct config *cfg = NULL;
    int rc = journal_cmd_parse(&jc, argc, argv);
    if (rc != OPTIONS_RUN)
        return rc;
    if (options_config_load("journal", jc.config, &cfg) < 0)
        return OPTIONS_EXIT_USAGE;
    if (strcmp(jc.sub, "append") == 0)
        rc = journal_cmd_append(cfg, &jc);
    else
        rc = journal_cmd_read(cfg, &jc);
    config_free(cfg);
    return rc;
}
