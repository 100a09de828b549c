#include "daemon/ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/log.h"
#include "common/secret.h"
#include "journal/webhook.h"
#include "common/xalloc.h"

#define EVENTS_PREFIX "/v1/events/"

struct ingest_pending {
    struct ingest *in;
    struct server_request *req;
    char *source;
    size_t ignored;
};

static void ingest_committed(int rc, const char *error, const uint64_t *seqs, size_t n, void *arg)
{
    struct ingest_pending *p = arg;
    struct ingest *in = p->in;

    if (rc < 0) {
        log_error("journal append failed source=%s error=\"%s\"", p->source, error);
        in->rejected++;
        server_respond_error(p->req, 503, "the journal could not write; retry");
    } else {
        size_t accepted = 0;
        for (size_t i = 0; i < n; i++)
            if (seqs[i] != 0)
                accepted++;
        in->events_accepted += accepted;
        in->events_duplicate += n - accepted;
        in->events_ignored += p->ignored;
        char body[160];
        int len = snprintf(
            body, sizeof(body),
            "{\"accepted\":%zu,\"duplicates\":%zu,\"ignored\":%zu,\"last_seq\":%llu}\n", accepted,
            n - accepted, p->ignored, (unsigned long long)journal_last_seq(in->journal));
        server_respond(p->req, 200, "application/json", body, (size_t)len);
        log_debug("events journaled source=%s accepted=%zu duplicates=%zu ignored=%zu", p->source,
                  accepted, n - accepted, p->ignored);
    }
    free(p->source);
    free(p);
}

static bool ingest_refuse(struct ingest *in, struct server_request *req, unsigned status,
                          const char *message)
{
    in->rejected++;
    server_respond_error(req, status, message);
    return true;
}

bool ingest_admit(struct ingest *in, struct server_request *req)
{
    const struct config *c = in->config;
    const char *path = server_request_path(req);
    if (strncmp(path, EVENTS_PREFIX, strlen(EVENTS_PREFIX)) != 0)
        return false;
    in->requests++;
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
        in->rejected++;
        server_respond_error(req, rc == FERRY_ETOOBIG ? 413 : 400, err ? err : ferry_strerror(rc));
        free(err);
        return true;
    }
    /* An event no rule selects is answered `ignored` and costs no entry. */
    size_t kept = 0;
    for (size_t i = 0; i < result.n; i++) {
        const struct journal_event *ev = &result.events[i];
        bool selected = ev->tag != NULL
                            ? config_tag_selected(in->config, source, ev->repository, ev->tag)
                            : config_repository_selected(in->config, source, ev->repository);
        if (!selected) {
            result.ignored++;
            continue;
        }
        if (kept != i) {
            struct journal_event tmp = result.events[kept];
            result.events[kept] = *ev;
            result.events[i] = tmp;
        }
        kept++;
    }
    /* result.n stays: the release frees every event. */
    if (kept == 0) {
        in->events_ignored += result.ignored;
        char out[160];
        int n = snprintf(out, sizeof(out),
                         "{\"accepted\":0,\"duplicates\":0,\"ignored\":%zu,\"last_seq\":%llu}\n",
                         result.ignored, (unsigned long long)journal_last_seq(in->journal));
        server_respond(req, 200, "application/json", out, (size_t)n);
        webhook_result_release(&result);
        return true;
    }
    struct ingest_pending *p = xcalloc(1, sizeof(*p));
    p->in = in;
    p->req = req;
    p->source = xstrdup(source);
    p->ignored = result.ignored;
    rc = journal_committer_submit(in->committer, result.events, kept, ingest_committed, p);
    webhook_result_release(&result);
    if (rc < 0) {
        free(p->source);
        free(p);
        server_respond_error(req, 503, "shutting down; retry");
    }
    return true;
}
