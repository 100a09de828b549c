/*
 * ingest.c: the webhook endpoint (see ingest.h): the checks at the headers,
 * the events a rule selects, and the answer once they are durable.
 */
#include "daemon/ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/xalloc.h"
#include "journal/webhook.h"

#define EVENTS_PREFIX "/v1/events/"

struct ingest {
    const struct config *config;
    struct journal *journal;
    struct journal_committer *committer;
    struct ingest_stats stats;
    size_t pending; /* requests waiting on a commit */
    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* One request waiting on its commit. */
struct ingest_pending {
    struct ingest *in;
    struct server_request *req;
    char *source;
    size_t ignored;
};

struct ingest *ingest_new(const struct config *config, struct journal *journal,
                          struct journal_committer *committer)
{
    struct ingest *in = xcalloc(1, sizeof(*in));
    in->config = config;
    in->journal = journal;
    in->committer = committer;
    return in;
}

void ingest_reconfigure(struct ingest *in, const struct config *config)
{
    in->config = config;
}

void ingest_set_committer(struct ingest *in, struct journal_committer *committer)
{
    in->committer = committer;
}

void ingest_get_stats(const struct ingest *in, struct ingest_stats *out)
{
    *out = in->stats;
}

/* Free the ingest once it is closing and no request waits on a commit. */
static void ingest_finish_close(struct ingest *in)
{
    if (!in->closing || in->pending > 0)
        return;
    void (*cb)(void *) = in->close_cb;
    void *arg = in->close_arg;
    free(in);
    if (cb != NULL)
        cb(arg);
}

void ingest_close(struct ingest *in, void (*cb)(void *arg), void *arg)
{
    in->closing = true;
    in->close_cb = cb;
    in->close_arg = arg;
    ingest_finish_close(in);
}

/* 200 with what became of the request's events. */
static void ingest_respond_counts(struct ingest *in, struct server_request *req, size_t accepted,
                                  size_t duplicates, size_t ignored)
{
    char body[160];
    int len =
        snprintf(body, sizeof(body),
                 "{\"accepted\":%zu,\"duplicates\":%zu,\"ignored\":%zu,\"last_seq\":%llu}\n",
                 accepted, duplicates, ignored, (unsigned long long)journal_last_seq(in->journal));
    server_respond(req, 200, "application/json", body, (size_t)len);
}

static void ingest_committed(int rc, const char *error, const uint64_t *seqs, size_t n, void *arg)
{
    struct ingest_pending *p = arg;
    struct ingest *in = p->in;

    if (rc < 0) {
        log_error("journal append failed source=%s error=\"%s\"", p->source, error);
        in->stats.rejected++;
        server_respond_error(p->req, 503, "the journal could not write; retry");
    } else {
        size_t accepted = 0;
        for (size_t i = 0; i < n; i++)
            if (seqs[i] != 0)
                accepted++;
        in->stats.events_accepted += accepted;
        in->stats.events_duplicate += n - accepted;
        in->stats.events_ignored += p->ignored;
        ingest_respond_counts(in, p->req, accepted, n - accepted, p->ignored);
        log_debug("events journaled source=%s accepted=%zu duplicates=%zu ignored=%zu", p->source,
                  accepted, n - accepted, p->ignored);
    }
    free(p->source);
    free(p);
    in->pending--;
    ingest_finish_close(in);
}

static bool ingest_refuse(struct ingest *in, struct server_request *req, unsigned status,
                          const char *message)
{
    in->stats.rejected++;
    server_respond_error(req, status, message);
    return true;
}

bool ingest_admit(struct ingest *in, struct server_request *req)
{
    const struct config *c = in->config;
    const char *path = server_request_path(req);
    if (strncmp(path, EVENTS_PREFIX, strlen(EVENTS_PREFIX)) != 0)
        return false;
    in->stats.requests++;
    const char *source = path + strlen(EVENTS_PREFIX);
    if (strcmp(server_request_method(req), "POST") != 0)
        return ingest_refuse(in, req, 405, "use POST");
    if (c->webhook_token != NULL) {
        const char *given = server_request_bearer(req);
        if (given == NULL || !secret_equal(given, c->webhook_token)) {
            ingest_refuse(in, req, 401, "missing or wrong bearer token");
            server_respond_header(req, "WWW-Authenticate", "Bearer realm=\"ferry\"");
            return true;
        }
    } else if (!server_request_host_allowed(req, c->server_names, c->n_server_names)) {
        return ingest_refuse(in, req, 421,
                             "the Host header does not name this server (see server_names)");
    }
    if (!server_media_type_json(server_request_header(req, "Content-Type")))
        return ingest_refuse(in, req, 415,
                             "want Content-Type: application/json or a +json type such as "
                             "application/vnd.docker.distribution.events.v1+json");
    if (config_registry_find(c, source) == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown source '%.64s'", source);
        return ingest_refuse(in, req, 404, msg);
    }
    return true;
}

/*
 * Move the events some rule selects to the front of `result` and count the
 * others as ignored; returns how many are kept. result->n stays, so that
 * the release frees every event.
 */
static size_t ingest_select(const struct ingest *in, const char *source,
                            struct webhook_result *result)
{
    size_t kept = 0;
    for (size_t i = 0; i < result->n; i++) {
        const struct journal_event *ev = &result->events[i];
        bool selected = ev->tag != NULL
                            ? config_tag_selected(in->config, source, ev->repository, ev->tag)
                            : config_repository_selected(in->config, source, ev->repository);
        if (!selected) {
            result->ignored++;
            continue;
        }
        if (kept != i) {
            struct journal_event tmp = result->events[kept];
            result->events[kept] = *ev;
            result->events[i] = tmp;
        }
        kept++;
    }
    return kept;
}

bool ingest_handle(struct ingest *in, struct server_request *req)
{
    const char *path = server_request_path(req);
    if (strncmp(path, EVENTS_PREFIX, strlen(EVENTS_PREFIX)) != 0)
        return false;
    const char *source = path + strlen(EVENTS_PREFIX);

    size_t len = 0;
    const char *body = server_request_body(req, &len);
    struct webhook_result result;
    char *err = NULL;
    int rc =
        webhook_parse(source, server_request_header(req, "Content-Type"), body, len, &result, &err);
    if (rc < 0) {
        in->stats.rejected++;
        server_respond_error(req, rc == FERRY_ETOOBIG ? 413 : 400, err ? err : ferry_strerror(rc));
        free(err);
        return true;
    }
    /* An event no rule selects is answered `ignored` and costs no entry. */
    size_t kept = ingest_select(in, source, &result);
    if (kept == 0) {
        in->stats.events_ignored += result.ignored;
        ingest_respond_counts(in, req, 0, 0, result.ignored);
        webhook_result_release(&result);
        return true;
    }
    struct ingest_pending *p = xcalloc(1, sizeof(*p));
    p->in = in;
    p->req = req;
    p->source = xstrdup(source);
    p->ignored = result.ignored;
    in->pending++;
    rc = in->committer != NULL
             ? journal_committer_submit(in->committer, result.events, kept, ingest_committed, p)
             : FERRY_ECANCELED;
    webhook_result_release(&result);
    if (rc < 0) {
        /* Its callback never fires. */
        in->pending--;
        free(p->source);
        free(p);
        server_respond_error(req, 503, "shutting down; retry");
    }
    return true;
}
