#include "cli/status.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "config/config.h"
#include "common/digest.h"
#include "common/errors.h"
#include "common/human.h"
#include "common/reference.h"
#include "common/secret.h"
#include "common/xalloc.h"

#define STATUS_BODY_MAX (8 * 1024 * 1024)

enum { OPT_HELP = 1000, OPT_JSON, OPT_SERVER, OPT_IMAGE, OPT_WAIT, OPT_TIMEOUT, OPT_DEST };

/* Exit codes of `ferry status --wait`; the table forms use 0, 1 and 3. */
#define EXIT_COMPLETE 0
#define EXIT_FAILED   1
#define EXIT_TIMEOUT  2
#define EXIT_USAGE    3

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

struct client {
    char *base; /* http://host:port */
    char *auth; /* "Authorization: Bearer ..." or NULL */
};

/* The daemon's address: `server`, else the config's listen; its token: the config's, else env. */
static void client_init(struct client *cl, const struct config *cfg, const char *server)
{
    const char *token = getenv("FERRY_API_TOKEN");
    if (cfg != NULL && cfg->api_token != NULL)
        token = cfg->api_token;
    if (server != NULL) {
        cl->base = xstrdup(server);
        size_t n = strlen(cl->base);
        while (n > 0 && cl->base[n - 1] == '/')
            cl->base[--n] = '\0';
    } else {
        cl->base = xasprintf("http://%s", cfg->listen);
    }
    cl->auth =
        token != NULL && token[0] != '\0' ? xasprintf("Authorization: Bearer %s", token) : NULL;
}

static void client_release(struct client *cl)
{
    free(cl->base);
    if (cl->auth != NULL)
        secret_free(cl->auth);
}

static size_t body_cb(char *data, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    return buf_append(b, data, size * n) < 0 ? 0 : size * n;
}

/*
 * GET base+path, or POST `post` (JSON) to it; returns the HTTP status (0: no
 * answer or not JSON, with *error set; any status but 200 sets *error too).
 */
static long client_call(const struct client *c, const char *path, const char *post, cJSON **json,
                        char **error)
{
    struct buf b;
    buf_init(&b, STATUS_BODY_MAX);
    char *url = xasprintf("%s%s", c->base, path);
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *h = curl_easy_init();
    struct curl_slist *headers = NULL;
    if (c->auth != NULL)
        headers = curl_slist_append(headers, c->auth);
    if (post != NULL) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    long status = 0;
    CURLcode rc = curl_easy_perform(h);
    *json = NULL;
    *error = NULL;
    if (rc != CURLE_OK) {
        *error = xasprintf("%s: %s", c->base, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        *json = cJSON_ParseWithLength(b.data != NULL ? b.data : "", b.len);
        if (status != 200) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(*json, "error");
            *error =
                xasprintf("%s%s: HTTP %ld%s%s", c->base, path, status,
                          cJSON_IsString(e) ? ": " : "", cJSON_IsString(e) ? e->valuestring : "");
        } else if (*json == NULL) {
            *error = xasprintf("%s%s: the answer is not JSON", c->base, path);
            status = 0;
        }
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    free(url);
    buf_release(&b);
    return status;
}

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
 * -1 to look again. For a tag COMPLETE counts only in an answer the daemon
 * checked at the source ("source" names the digest the tag names there now):
 * one from the journal alone (a daemon reloading, or one older than this
 * check) may name a digest the source moved away from.
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
            return -1;
    }
    if (seen > 0 && complete == seen)
        return EXIT_COMPLETE;
    if (!checked)
        *why = xstrdup("the daemon answered from its journal, without asking the source");
    return -1;
}

static void print_json(const cJSON *body)
{
    char *text = xjson_print(body, true);
    puts(text);
    free(text);
}

/*
 * One look at `path`: the daemon's JSON as it is, or its table (the
 * destinations, or one image). Returns the exit status: 0, or for an image
 * EXIT_FAILED when a destination holds it FAILED; EXIT_FAILED or EXIT_USAGE
 * (unreachable) when the call failed.
 */
static int status_show(const struct client *cl, const char *path, bool json, bool image,
                       const char *dests)
{
    cJSON *body = NULL;
    char *error = NULL;
    int rc = 0;
    long st = client_call(cl, path, NULL, &body, &error);
    if (st != 200) {
        fprintf(stderr, "ferry status: %s\n", error);
        rc = st == 0 ? EXIT_USAGE : EXIT_FAILED;
    } else if (json) {
        print_json(body);
    } else if (!image) {
        rc = print_destinations(body, dests);
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

int status_main(int argc, char **argv)
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
    const char *config_path = NULL, *server = NULL, *dests = NULL, *image = NULL;
    bool json = false, wait = false;
    double timeout = 600;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_SERVER:
            server = optarg;
            break;
        case OPT_DEST:
            dests = optarg;
            break;
        case OPT_IMAGE:
            image = optarg;
            break;
        case OPT_WAIT:
            wait = true;
            break;
        case OPT_TIMEOUT: {
            char *end = NULL;
            timeout = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(timeout > 0) || timeout > 86400 * 7) {
                fprintf(stderr, "ferry status: --timeout wants seconds above 0, got '%s'\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        }
        case OPT_JSON:
            json = true;
            break;
        case OPT_HELP:
            usage_status(stdout);
            return 0;
        default:
            fprintf(stderr, "ferry status: see 'ferry status --help'\n");
            return EXIT_USAGE;
        }
    }
    if (optind != argc || (config_path == NULL && server == NULL) || (wait && image == NULL)) {
        fprintf(stderr, "ferry status: want -c FILE or --server URL%s\n",
                wait && image == NULL ? ", and --image with --wait" : "");
        return EXIT_USAGE;
    }

    struct client cl = {0};
    struct config *cfg = NULL;
    if (config_path != NULL) {
        char *err = NULL;
        if (config_load(config_path, &cfg, &err) < 0) {
            fprintf(stderr, "ferry status: %s\n", err != NULL ? err : "cannot load the config");
            free(err);
            return EXIT_USAGE;
        }
    }
    if (server != NULL && strncmp(server, "http://", 7) != 0 &&
        strncmp(server, "https://", 8) != 0) {
        fprintf(stderr, "ferry status: --server wants http://HOST:PORT, got '%s'\n", server);
        config_free(cfg);
        return EXIT_USAGE;
    }
    client_init(&cl, cfg, server);
    config_free(cfg);

    int rc = EXIT_USAGE;
    char *error = NULL;
    cJSON *body = NULL;
    if (image == NULL) {
        rc = status_show(&cl, "/v1/status", json, false, dests);
        goto out;
    }
    char *query = image_query(image, &error);
    if (query == NULL) {
        fprintf(stderr, "ferry status: %s\n", error);
        goto out;
    }
    if (!wait) {
        rc = status_show(&cl, query, json, true, dests);
        free(query);
        goto out;
    }
    /* --wait: look once a second until a verdict or the deadline. */
    int64_t deadline = clock_mono_ms() + (int64_t)(timeout * 1000);
    char *last_error = NULL;
    for (;;) {
        free(error);
        error = NULL;
        cJSON_Delete(body);
        body = NULL;
        long st = client_call(&cl, query, NULL, &body, &error);
        if (st == 200) {
            char *why = NULL;
            int v = wait_verdict(body, dests, &why);
            if (v >= 0) {
                if (json) {
                    print_json(body);
                } else if (v == EXIT_COMPLETE) {
                    printf("%s: COMPLETE in %s\n", image,
                           dests != NULL ? dests : "every destination");
                } else {
                    fprintf(stderr, "ferry status: %s: %s\n", image, why);
                }
                free(why);
                rc = v;
                break;
            }
            if (why != NULL) {
                free(last_error);
                last_error = why;
            }
        } else if (error != NULL) {
            free(last_error);
            last_error = xstrdup(error);
        }
        if (clock_mono_ms() >= deadline) {
            fprintf(stderr, "ferry status: %s not COMPLETE in %s after %.0f s%s%s\n", image,
                    dests != NULL ? dests : "every destination", timeout,
                    last_error != NULL ? "; last error: " : "",
                    last_error != NULL ? last_error : "");
            rc = EXIT_TIMEOUT;
            break;
        }
        int64_t left = deadline - clock_mono_ms();
        usleep((useconds_t)(left < 1000 ? (left > 0 ? left : 0) : 1000) * 1000);
    }
    free(last_error);
    free(query);
out:
    cJSON_Delete(body);
    free(error);
    client_release(&cl);
    return rc;
}

int status_retry(const struct config *cfg, const char *destination, size_t *requeued, char **error)
{
    struct client cl = {0};
    client_init(&cl, cfg, NULL);
    cJSON *req = cJSON_CreateObject();
    if (destination != NULL)
        cJSON_AddStringToObject(req, "destination", destination);
    char *post = xjson_print(req, false);
    cJSON_Delete(req);
    cJSON *body = NULL;
    long st = client_call(&cl, "/v1/retry", post, &body, error);
    free(post);
    if (st == 200)
        *requeued = (size_t)jnum(body, "requeued");
    cJSON_Delete(body);
    client_release(&cl);
    return st == 200 ? 0 : FERRY_ECONNECT;
}
