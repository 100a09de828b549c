/*
 * cmd_status: `ferry status`, the client of a running daemon's HTTP API: a
 * table of destinations, one image in every destination, and --wait, the
 * gate a deploy pipeline runs before rolling out in a region.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "cli/daemon_client.h"
#include "cli/options.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/human.h"
#include "common/log.h"
#include "common/reference.h"
#include "common/xalloc.h"
#include "config/config.h"

/* Exit codes of `ferry status --wait`; the table forms use 0, 1 and 3. */
#define EXIT_COMPLETE 0
#define EXIT_FAILED   1
#define EXIT_TIMEOUT  2
#define EXIT_USAGE    3

/* --wait: how long by default, the longest allowed, and how often it looks. */
#define STATUS_WAIT_DEFAULT_S 600
#define STATUS_WAIT_MAX_S     (86400 * 7)
#define STATUS_WAIT_EVERY_MS  1000

/* What a verdict on the image says when there is none yet: look again. */
#define STATUS_LOOK_AGAIN (-1)

static void usage_status(FILE *out)
{
    fputs(
        "usage: ferry status (-c FILE | --server URL) [--dest D[,D...]] [--json]\n"
        "       ferry status (-c FILE | --server URL) --image R:T|R@DIGEST [--dest ...] [--json]\n"
        "       ferry status (-c FILE | --server URL) --wait --image R@DIGEST|R:T\n"
        "                    [--dest D1,D2] [--timeout SECONDS]\n"
        "\n"
        "Asks a running `ferry serve` (the config's listen address, or --server URL)\n"
        "where replication stands. The API token is the config's api_token, or\n"
        "FERRY_API_TOKEN from the environment.\n"
        "\n"
        "  (no --image)   a table of destinations: circuit, backlog, lag, in flight,\n"
        "                 completed, failed, throughput, last error\n"
        "  --image        that image (source repository) in each destination, as the\n"
        "                 registries hold it now: for R:T, COMPLETE where the\n"
        "                 destination's tag names what the source's tag names now\n"
        "  --wait         block until the image is COMPLETE in every named destination\n"
        "                 (default: every destination its rules name): exit 0; FAILED\n"
        "                 in one: exit 1; --timeout (default 600) passed: exit 2. A tag\n"
        "                 not at the source (yet) or a registry that cannot be asked\n"
        "                 is waited for\n"
        "  --json         print the daemon's JSON answer\n"
        "\n"
        "Exit status: 0 done, 1 failed (or the daemon answered an error), 2 timeout\n"
        "(--wait), 3 usage error or daemon unreachable (without --wait).\n",
        out);
}

/* The command line of `ferry status`. */
struct status_cmd {
    const char *config_path;
    const char *server;
    const char *dests; /* comma-separated, or NULL: every destination */
    const char *image;
    bool json;
    bool wait;
    double timeout; /* seconds, for --wait */
};

/* ---- reading the daemon's answers ---- */

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* True when `name` is in the comma-separated `list` (NULL: everything is). */
static bool in_list(const char *list, const char *name)
{
    if (list == NULL)
        return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (comma != NULL);
    }
    return false;
}

/* The table of destinations; returns 1 when one has failed jobs, else 0. */
static int print_destinations(const cJSON *status, const char *dests)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(status, "destinations");
    printf("%-16s %-9s %8s %9s %9s %10s %7s %12s  %s\n", "DESTINATION", "CIRCUIT", "BACKLOG", "LAG",
           "IN-FLIGHT", "COMPLETED", "FAILED", "RATE", "LAST ERROR");
    int failed = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, list)
    {
        const char *name = jstr(d, "name");
        if (name == NULL || !in_list(dests, name))
            continue;
        char rate[32];
        human_bytes(rate, sizeof(rate), jnum(d, "bytes_per_second"));
        strncat(rate, "/s", sizeof(rate) - strlen(rate) - 1);
        char lag[32];
        snprintf(lag, sizeof(lag), "%.1fs", jnum(d, "lag_seconds"));
        const char *err = jstr(d, "last_error");
        printf("%-16s %-9s %8.0f %9s %9.0f %10.0f %7.0f %12s  %.80s\n", name,
               jstr(d, "circuit") ? jstr(d, "circuit") : "?", jnum(d, "backlog"), lag,
               jnum(d, "in_flight"), jnum(d, "completed"), jnum(d, "failed"), rate,
               err != NULL ? err : "-");
        if (jnum(d, "failed") > 0)
            failed = 1;
    }
    return failed;
}

/* In a cluster, a table of its nodes under the destinations' (as the asked node sees them). */
static void print_nodes(const cJSON *status)
{
    const cJSON *cluster = cJSON_GetObjectItemCaseSensitive(status, "cluster");
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(cluster, "nodes");
    if (!cJSON_IsArray(nodes))
        return;
    printf("\n%-24s %-6s %-24s %8s %9s %10s %7s\n", "NODE", "STATE", "LAST HEARTBEAT", "PENDING",
           "IN-FLIGHT", "COMPLETED", "FAILED");
    const cJSON *n;
    cJSON_ArrayForEach(n, nodes)
    {
        const cJSON *fig = cJSON_GetObjectItemCaseSensitive(n, "figures");
        const char *name = jstr(n, "name");
        const char *beat = jstr(n, "last_heartbeat");
        bool alive = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "alive"));
        bool self = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "self"));
        char label[80];
        snprintf(label, sizeof(label), "%.60s%s", name != NULL ? name : "?", self ? " (this)" : "");
        printf("%-24s %-6s %-24s %8.0f %9.0f %10.0f %7.0f\n", label, alive ? "alive" : "gone",
               beat != NULL ? beat : "-", jnum(fig, "pending"), jnum(fig, "running"),
               jnum(fig, "complete"), jnum(fig, "failed"));
    }
}

/* "R:T" or "R@sha256:..." into an /v1/images query. */
static char *image_query(const char *image, char **error)
{
    const char *at = strchr(image, '@');
    char *repo = NULL, *query = NULL;
    if (at != NULL) {
        repo = xstrndup(image, (size_t)(at - image));
        if (reference_repository_valid(repo) && digest_valid(at + 1))
            query = xasprintf("/v1/images?repository=%s&digest=%s", repo, at + 1);
    } else {
        const char *colon = strrchr(image, ':');
        const char *slash = strrchr(image, '/');
        if (colon != NULL && (slash == NULL || colon > slash)) {
            repo = xstrndup(image, (size_t)(colon - image));
            if (reference_repository_valid(repo) && reference_tag_valid(colon + 1))
                query = xasprintf("/v1/images?repository=%s&tag=%s", repo, colon + 1);
        }
    }
    if (query == NULL)
        *error = xasprintf("--image %s: want REPOSITORY:TAG or REPOSITORY@sha256:<hex>", image);
    free(repo);
    return query;
}

/* What a destination's tag names now, shortened for a table; "-" when absent. */
static void short_digest(const cJSON *d, char *out, size_t size)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, "current_digest");
    if (cJSON_IsString(v))
        snprintf(out, size, "%.19s", v->valuestring);
    else
        snprintf(out, size, "%s", cJSON_IsNull(v) ? "-" : "?");
}

static void print_image(const cJSON *img, const char *dests)
{
    const char *digest = jstr(img, "digest");
    const char *tag = jstr(img, "tag");
    const char *repo = jstr(img, "repository") ? jstr(img, "repository") : "?";
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(img, "source");
    if (tag != NULL && jstr(source, "name") != NULL)
        printf("image %s:%s (%s at the source %s)\n", repo, tag,
               digest != NULL ? digest : "digest unknown", jstr(source, "name"));
    else if (tag != NULL)
        printf("image %s:%s (%s, from the journal; not checked at the source)\n", repo, tag,
               digest != NULL ? digest : "digest unknown");
    else
        printf("image %s@%s\n", repo, digest != NULL ? digest : "?");
    printf("%-16s %-32s %-12s %8s %-24s %-19s  %s\n", "DESTINATION", "REPOSITORY", "STATE",
           "ATTEMPTS", "UPDATED", "HOLDS NOW", "ERROR");
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(img, "destinations"))
    {
        const char *name = jstr(d, "name");
        if (name == NULL || !in_list(dests, name))
            continue;
        const char *err = jstr(d, "check_error") ? jstr(d, "check_error") : jstr(d, "last_error");
        char holds[24];
        short_digest(d, holds, sizeof(holds));
        printf("%-16s %-32s %-12s %8.0f %-24s %-19s  %.80s\n", name,
               jstr(d, "repository") ? jstr(d, "repository") : "?",
               jstr(d, "state") ? jstr(d, "state") : "?", jnum(d, "attempts"),
               jstr(d, "updated") ? jstr(d, "updated") : "-", holds, err != NULL ? err : "-");
    }
}

/*
 * One look at the image for --wait: EXIT_COMPLETE when every named
 * destination is COMPLETE, EXIT_FAILED when one is FAILED (*why says why),
 * STATUS_LOOK_AGAIN otherwise. For a tag COMPLETE counts only in an answer
 * the daemon checked at the source ("source" names the digest the tag names
 * there now): one from the journal alone (a daemon reloading, or one older
 * than this check) may name a digest the source moved away from.
 */
static int wait_verdict(const cJSON *img, const char *dests, char **why)
{
    const cJSON *d;
    size_t seen = 0, complete = 0;
    bool checked = jstr(img, "tag") == NULL ||
                   jstr(cJSON_GetObjectItemCaseSensitive(img, "source"), "digest") != NULL;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(img, "destinations"))
    {
        const char *name = jstr(d, "name");
        if (name == NULL || !in_list(dests, name))
            continue;
        seen++;
        const char *state = jstr(d, "state");
        if (state != NULL && strcmp(state, "FAILED") == 0) {
            *why = xasprintf("FAILED in %s: %s", name,
                             jstr(d, "last_error") ? jstr(d, "last_error") : "no reason given");
            return EXIT_FAILED;
        }
        if (state != NULL && strcmp(state, "COMPLETE") == 0 && checked)
            complete++;
    }
    if (dests != NULL) {
        /* Every named destination must be among the image's. */
        size_t named = 1;
        for (const char *p = dests; *p; p++)
            named += *p == ',';
        if (seen < named)
            return STATUS_LOOK_AGAIN;
    }
    if (seen > 0 && complete == seen)
        return EXIT_COMPLETE;
    if (!checked)
        *why = xstrdup("the daemon answered from its journal, without asking the source");
    return STATUS_LOOK_AGAIN;
}

static void print_json(const cJSON *body)
{
    char *text = xjson_print(body, true);
    puts(text);
    free(text);
}

/* ---- the forms of the command ---- */

/*
 * One look at `path`: the daemon's JSON as it is, or its table (the
 * destinations, or one image). Returns the exit status: 0, or for an image
 * EXIT_FAILED when a destination holds it FAILED; EXIT_FAILED (an error
 * status) or EXIT_USAGE (unreachable) when the call failed.
 */
static int status_show(const struct daemon_client *cl, const char *path, bool json, bool image,
                       const char *dests)
{
    cJSON *body = NULL;
    char *error = NULL;
    int rc = daemon_client_call(cl, path, NULL, &body, &error);
    if (rc < 0) {
        fprintf(stderr, "ferry status: %s\n", error);
        rc = rc == FERRY_EHTTP ? EXIT_FAILED : EXIT_USAGE;
    } else if (json) {
        print_json(body);
    } else if (!image) {
        rc = print_destinations(body, dests);
        print_nodes(body);
    } else {
        print_image(body, dests);
        char *why = NULL;
        rc = wait_verdict(body, dests, &why) == EXIT_FAILED ? EXIT_FAILED : 0;
        free(why);
    }
    cJSON_Delete(body);
    free(error);
    return rc;
}

/* Keep `why` (taken) as the last reason the image was not there yet. */
static void status_keep_reason(char **last_error, char *why)
{
    if (why == NULL)
        return;
    free(*last_error);
    *last_error = why;
}

/*
 * One look for --wait: the verdict (EXIT_COMPLETE or EXIT_FAILED, said on
 * stdout or stderr), or STATUS_LOOK_AGAIN with *last_error updated.
 */
static int status_wait_look(const struct daemon_client *cl, const struct status_cmd *s,
                            const char *query, char **last_error)
{
    cJSON *body = NULL;
    char *error = NULL;
    char *why = NULL;
    int v = STATUS_LOOK_AGAIN;
    if (daemon_client_call(cl, query, NULL, &body, &error) < 0) {
        status_keep_reason(last_error, error);
        return STATUS_LOOK_AGAIN;
    }
    v = wait_verdict(body, s->dests, &why);
    if (v == STATUS_LOOK_AGAIN) {
        status_keep_reason(last_error, why);
        why = NULL;
    } else if (s->json) {
        print_json(body);
    } else if (v == EXIT_COMPLETE) {
        printf("%s: COMPLETE in %s\n", s->image, s->dests != NULL ? s->dests : "every destination");
    } else {
        fprintf(stderr, "ferry status: %s: %s\n", s->image, why);
    }
    free(why);
    cJSON_Delete(body);
    return v;
}

/* Wait `ms` before the next look; a signal cutting it short only brings that look forward. */
static void status_pause(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    if (nanosleep(&ts, NULL) < 0 && errno != EINTR)
        log_warn("status wait cannot pause error=\"%s\"", strerror(errno));
}

/* --wait: look once a second until a verdict or the deadline; returns the exit status. */
static int status_wait(const struct daemon_client *cl, const struct status_cmd *s,
                       const char *query)
{
    int64_t deadline = clock_mono_ms() + (int64_t)(s->timeout * 1000);
    char *last_error = NULL;
    int rc;
    for (;;) {
        rc = status_wait_look(cl, s, query, &last_error);
        if (rc != STATUS_LOOK_AGAIN)
            break;
        if (clock_mono_ms() >= deadline) {
            fprintf(stderr, "ferry status: %s not COMPLETE in %s after %.0f s%s%s\n", s->image,
                    s->dests != NULL ? s->dests : "every destination", s->timeout,
                    last_error != NULL ? "; last error: " : "",
                    last_error != NULL ? last_error : "");
            rc = EXIT_TIMEOUT;
            break;
        }
        int64_t left = deadline - clock_mono_ms();
        status_pause(left < STATUS_WAIT_EVERY_MS ? (left > 0 ? left : 0) : STATUS_WAIT_EVERY_MS);
    }
    free(last_error);
    return rc;
}

/* --image, with or without --wait; returns the exit status. */
static int status_image(const struct daemon_client *cl, const struct status_cmd *s)
{
    char *error = NULL;
    char *query = image_query(s->image, &error);
    int rc;
    if (query == NULL) {
        fprintf(stderr, "ferry status: %s\n", error);
        free(error);
        return EXIT_USAGE;
    }
    if (s->wait)
        rc = status_wait(cl, s, query);
    else
        rc = status_show(cl, query, s->json, true, s->dests);
    free(query);
    return rc;
}

/* ---- the command line ---- */

static int status_timeout_flag(struct status_cmd *s, const char *arg)
{
    char *end = NULL;
    s->timeout = strtod(arg, &end);
    if (end == arg || *end != '\0' || !(s->timeout > 0) || s->timeout > STATUS_WAIT_MAX_S) {
        fprintf(stderr, "ferry status: --timeout wants seconds above 0, got '%s'\n", arg);
        return EXIT_USAGE;
    }
    return OPTIONS_RUN;
}

static int status_flag(void *ctx, int c, char *arg)
{
    struct status_cmd *s = ctx;
    if (c == 'c')
        s->config_path = arg;
    else if (c == OPT_SERVER)
        s->server = arg;
    else if (c == OPT_DEST)
        s->dests = arg;
    else if (c == OPT_IMAGE)
        s->image = arg;
    else if (c == OPT_WAIT)
        s->wait = true;
    else if (c == OPT_TIMEOUT)
        return status_timeout_flag(s, arg);
    else if (c == OPT_JSON)
        s->json = true;
    else if (c == OPT_HELP) {
        usage_status(stdout);
        return 0;
    } else {
        options_unknown_flag("status");
        return EXIT_USAGE;
    }
    return OPTIONS_RUN;
}

/* Returns OPTIONS_RUN with *s set, or the exit status. */
static int status_parse(struct status_cmd *s, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"server", required_argument, NULL, OPT_SERVER},
        {"dest", required_argument, NULL, OPT_DEST},
        {"image", required_argument, NULL, OPT_IMAGE},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const struct options_spec spec = {"c:", longopts, status_flag, s};
    int n_words = 0;

    memset(s, 0, sizeof(*s));
    s->timeout = STATUS_WAIT_DEFAULT_S;
    int rc = options_parse(&spec, argc, argv, &n_words);
    if (rc != OPTIONS_RUN)
        return rc;
    if (n_words != 0 || (s->config_path == NULL && s->server == NULL) ||
        (s->wait && s->image == NULL)) {
        fprintf(stderr, "ferry status: want -c FILE or --server URL%s\n",
                s->wait && s->image == NULL ? ", and --image with --wait" : "");
        return EXIT_USAGE;
    }
    return OPTIONS_RUN;
}

/* The client of the daemon --server or the config names; returns 0, or EXIT_USAGE after saying why.
 */
static int status_client(const struct status_cmd *s, struct daemon_client *cl)
{
    struct config *cfg = NULL;
    if (s->config_path != NULL && options_config_load("status", s->config_path, &cfg) < 0)
        return EXIT_USAGE;
    if (s->server != NULL && strncmp(s->server, "http://", 7) != 0 &&
        strncmp(s->server, "https://", 8) != 0) {
        fprintf(stderr, "ferry status: --server wants http://HOST:PORT, got '%s'\n", s->server);
        config_free(cfg);
        return EXIT_USAGE;
    }
    daemon_client_init(cl, s->server, cfg, daemon_client_api_token(cfg));
    config_free(cfg);
    return 0;
}

int cmd_status(int argc, char **argv)
{
    struct status_cmd s;
    struct daemon_client cl;
    int rc = status_parse(&s, argc, argv);
    if (rc != OPTIONS_RUN)
        return rc;
    rc = status_client(&s, &cl);
    if (rc != 0)
        return rc;
    if (s.image == NULL)
        rc = status_show(&cl, "/v1/status", s.json, false, s.dests);
    else
        rc = status_image(&cl, &s);
    daemon_client_release(&cl);
    return rc;
}
