#include "daemon/serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/api.h"
#include "journal/committer.h"
#include "replication/engine.h"
#include "config/config.h"
#include "common/clock.h"
#include "common/errors.h"
#include "common/fsutil.h"
#include "daemon/ingest.h"
#include "journal/journal.h"
#include "common/log.h"
#include "replication/poller.h"
#include "daemon/server.h"
#include "common/xalloc.h"

#ifdef FERRY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
static int sd_notify(int unset_environment, const char *state)
{
    (void)unset_environment;
    (void)state;
    return 0;
}
#endif

struct daemon {
    uv_loop_t loop;
    struct config *config;
    struct journal *journal;
    struct journal_committer *committer;
    struct server *server;
    struct poller *poller;
    struct engine *engine;
    struct ingest ingest;
    struct api api;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_signal_t sighup;
    struct config *next_config;       /* a reload waiting for the engine to drain */
    struct engine_counters *counters; /* the closing engine's, for the next one */
    bool reloading;
    bool stop_after_reload;
    uv_timer_t grace;
    uv_timer_t retention;
    uv_work_t retention_work;
    bool retention_running;
    uint64_t retention_deleted;
    int retention_rc;
    bool stopping;
};

/* Retention runs off the loop: deleting and compacting may take a while. */
static void daemon_retain_work(uv_work_t *work)
{
    struct daemon *d = work->data;
    d->retention_rc =
        journal_retain(d->journal, d->config->retention_ms, clock_unix_ms(), &d->retention_deleted);
}

static void daemon_retain_done(uv_work_t *work, int status)
{
    struct daemon *d = work->data;
    (void)status;
    d->retention_running = false;
    if (d->retention_rc < 0)
        log_warn("journal retention failed error=\"%s\"", ferry_strerror(d->retention_rc));
    else if (d->retention_deleted > 0)
        log_info("journal retention deleted=%llu", (unsigned long long)d->retention_deleted);
}

static void daemon_retain(uv_timer_t *timer)
{
    struct daemon *d = timer->data;
    if (d->retention_running || d->stopping)
        return;
    d->retention_running = true;
    d->retention_work.data = d;
    if (uv_queue_work(&d->loop, &d->retention_work, daemon_retain_work, daemon_retain_done) < 0)
        d->retention_running = false;
}

/* At the headers: the webhook's checks for its path, the API's for every other. */
static void daemon_admit(struct server_request *req, void *arg)
{
    struct daemon *d = arg;
    if (!ingest_admit(&d->ingest, req))
        api_admit(&d->api, req);
}

static void daemon_route(struct server_request *req, void *arg)
{
    struct daemon *d = arg;
    if (ingest_handle(&d->ingest, req))
        return;
    if (api_handle(&d->api, req))
        return;
    server_respond_error(req, 404, "no such endpoint");
}

static void daemon_closed_noop(uv_handle_t *handle)
{
    (void)handle;
}

static void daemon_server_closed(void *arg)
{
    struct daemon *d = arg;
    d->server = NULL;
    api_close(&d->api);
    uv_close((uv_handle_t *)&d->sigint, daemon_closed_noop);
    uv_close((uv_handle_t *)&d->sigterm, daemon_closed_noop);
    uv_close((uv_handle_t *)&d->sighup, daemon_closed_noop);
    uv_close((uv_handle_t *)&d->grace, daemon_closed_noop);
    uv_close((uv_handle_t *)&d->retention, daemon_closed_noop);
}

/* Answers resumed by the last commits need a moment on the loop to leave. */
static void daemon_grace_over(uv_timer_t *timer)
{
    struct daemon *d = timer->data;
    server_close(d->server, daemon_server_closed, d);
}

static void daemon_committer_closed(void *arg)
{
    struct daemon *d = arg;
    d->committer = NULL;
    uv_timer_start(&d->grace, daemon_grace_over, 200, 0);
}

static void daemon_engine_closed(void *arg)
{
    struct daemon *d = arg;
    d->engine = NULL;
    d->api.engine = NULL;
    journal_committer_close(d->committer, daemon_committer_closed, d);
}

/* The api's image lookups use the engine's registry clients: they end first. */
static void daemon_api_drained(void *arg)
{
    struct daemon *d = arg;
    engine_close(d->engine, daemon_engine_closed, d);
}

static void daemon_poller_closed(void *arg)
{
    struct daemon *d = arg;
    d->poller = NULL;
    d->api.poller = NULL;
    api_drain(&d->api, daemon_api_drained, d);
}

/* Every entry the committer makes durable goes to the engine. */
static void daemon_tail(const struct journal_entry *e, void *arg)
{
    struct daemon *d = arg;
    api_note_entry(&d->api, e);
    if (d->engine != NULL)
        engine_notify(d->engine, e->seq);
}

static void daemon_stop(struct daemon *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = true;
    sd_notify(0, "STOPPING=1");
    log_warn("stopping signal=%s: draining accepted events", why);
    uv_signal_stop(&d->sigint);
    uv_signal_stop(&d->sigterm);
    uv_signal_stop(&d->sighup);
    if (d->reloading) {
        /* The reload is draining the engine: the stop goes on from there. */
        d->stop_after_reload = true;
        return;
    }
    uv_timer_stop(&d->retention);
    poller_close(d->poller, daemon_poller_closed, d);
}

static void daemon_signal(uv_signal_t *sig, int signum)
{
    daemon_stop(sig->data, signum == SIGINT ? "INT" : "TERM");
}

static void daemon_round(struct poller *p, void *arg);

/*
 * SIGHUP: rules and registries are read again. The new file must load (else
 * the daemon keeps its config and says why); then the poller and the engine
 * drain (running jobs finish; queued ones stay in the journal past the
 * engine's cursor) and start again on the new config. The journal, the
 * server and the webhook never stop.
 */
static void daemon_reload_engine_closed(void *arg)
{
    struct daemon *d = arg;
    struct engine_counters *counters = d->counters;
    d->counters = NULL;
    d->engine = NULL;
    d->api.engine = NULL;
    struct config *old = d->config;
    d->config = d->next_config;
    d->next_config = NULL;
    d->ingest.config = d->config;
    api_reconfigure(&d->api, d->config);
    config_free(old);
    d->reloading = false;
    if (d->stop_after_reload) {
        engine_counters_restore(NULL, counters);
        journal_committer_close(d->committer, daemon_committer_closed, d);
        return;
    }
    engine_new(&d->loop, d->config, d->journal, d->committer, &d->engine);
    /* Status and metrics count on from where they were. */
    engine_counters_restore(d->engine, counters);
    engine_start(d->engine);
    poller_new(&d->loop, d->config, d->journal, d->committer, &d->poller);
    poller_start(d->poller, daemon_round, d);
    api_set_engine(&d->api, d->engine, d->poller);
    log_warn("reloaded config=%s registries=%zu rules=%zu", d->config->path,
             d->config->n_registries, d->config->n_rules);
    sd_notify(0, "READY=1");
}

static void daemon_reload_api_drained(void *arg)
{
    struct daemon *d = arg;
    /* Saved as the engine closes: the jobs cut short are counted already. */
    engine_close_saving(d->engine, &d->counters);
    engine_close(d->engine, daemon_reload_engine_closed, d);
}

static void daemon_reload_poller_closed(void *arg)
{
    struct daemon *d = arg;
    d->poller = NULL;
    d->api.poller = NULL;
    api_drain(&d->api, daemon_reload_api_drained, d);
}

static bool serve_same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The listener's settings, which it takes at start only (the certificate too: its files). */
static bool serve_same_listener(const struct config *a, const struct config *b)
{
    return serve_same_string(a->tls_cert_file, b->tls_cert_file) &&
           serve_same_string(a->tls_key_file, b->tls_key_file) &&
           a->request_body_budget == b->request_body_budget &&
           a->max_connections_per_ip == b->max_connections_per_ip;
}

static void daemon_hangup(uv_signal_t *sig, int signum)
{
    struct daemon *d = sig->data;
    (void)signum;
    if (d->stopping || d->reloading)
        return;
    struct config *next = NULL;
    char *err = NULL;
    if (config_load(d->config->path, &next, &err) < 0) {
        log_error("reload refused, keeping the running config: %s", err != NULL ? err : "?");
        free(err);
        return;
    }
    if (strcmp(next->data_dir, d->config->data_dir) != 0 ||
        strcmp(next->listen, d->config->listen) != 0 ||
        next->webhook_max_body != d->config->webhook_max_body ||
        !serve_same_listener(next, d->config)) {
        log_error("reload refused, keeping the running config: data_dir, listen, tls, "
                  "webhook_max_body, request_body_budget and max_connections_per_ip change only "
                  "with a restart");
        config_free(next);
        return;
    }
    sd_notify(0, "RELOADING=1");
    log_warn("reloading config=%s: draining the poller and the engine", d->config->path);
    d->reloading = true;
    d->next_config = next;
    poller_close(d->poller, daemon_reload_poller_closed, d);
}

static void daemon_round(struct poller *p, void *arg)
{
    struct daemon *d = arg;
    struct poller_stats st;
    (void)d;
    poller_get_stats(p, &st);
    log_info("poll round rounds=%llu appended=%llu", (unsigned long long)st.rounds,
             (unsigned long long)st.appended);
}

static int daemon_open_journal(struct daemon *d)
{
    char *dir = xasprintf("%s/journal", d->config->data_dir);
    char *err = NULL;
    int made = config_data_dir_prepare(d->config);
    if (made < 0) {
        fprintf(stderr, "ferry serve: data_dir %s: %s\n", d->config->data_dir,
                ferry_strerror(made));
        free(dir);
        return made;
    }
    struct journal_options jopts = {0};
    int rc = journal_open(dir, &jopts, &d->journal, &err);
    if (rc < 0)
        fprintf(stderr, "ferry serve: journal %s: %s\n", dir, err ? err : ferry_strerror(rc));
    free(err);
    free(dir);
    return rc;
}

/*
 * One line when the listener can be reached from other hosts while a token is
 * missing, naming what anyone there may use: the same at a start and at a
 * check of the config.
 */
static void serve_warn_open(const struct config *c)
{
    char *host = NULL;
    if (config_split_listen(c->listen, &host, NULL) < 0)
        return;
    bool loopback = server_host_is_loopback(host);
    free(host);
    bool api = c->api_token == NULL;
    bool metrics = api && c->metrics_token == NULL;
    bool hook = c->webhook_token == NULL;
    if (loopback || (!api && !hook))
        return;
    const char *parts[3];
    size_t n = 0;
    if (api)
        parts[n++] = "the API (retry included)";
    if (metrics)
        parts[n++] = "/metrics";
    if (hook)
        parts[n++] = "the webhook (anyone may journal events)";
    char what[160] = "";
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(what);
        snprintf(what + used, sizeof(what) - used, "%s%s",
                 i == 0       ? ""
                 : i + 1 == n ? " and "
                              : ", ",
                 parts[i]);
    }
    log_warn("listening on %s without %s: %s %s open to the network", c->listen,
             api && hook ? "api_token or webhook_token"
             : api       ? "api_token"
                         : "webhook_token",
             what, n > 1 ? "are" : "is");
}

int serve_run(const char *config_path, bool check_only)
{
    struct daemon d;
    char *err = NULL;
    int rc;

    memset(&d, 0, sizeof(d));
    rc = config_load(config_path, &d.config, &err);
    if (rc < 0) {
        fprintf(stderr, "ferry serve: %s\n", err ? err : ferry_strerror(rc));
        free(err);
        return rc;
    }
    serve_warn_open(d.config);
    if (check_only) {
        /* A check touches nothing: no data_dir, no journal. */
        fprintf(stderr, "ferry serve: %s is valid (%zu registries, %zu rules)\n", config_path,
                d.config->n_registries, d.config->n_rules);
        config_free(d.config);
        return 0;
    }
    rc = daemon_open_journal(&d);
    if (rc < 0) {
        config_free(d.config);
        return rc;
    }

    uv_loop_init(&d.loop);
    journal_committer_new(&d.loop, d.journal, &d.committer);
    d.ingest.config = d.config;
    d.ingest.journal = d.journal;
    d.ingest.committer = d.committer;
    struct server_options sopts = {
        .listen = d.config->listen,
        .max_body = d.config->webhook_max_body,
        .body_budget = d.config->request_body_budget,
        .max_connections_per_ip = (unsigned)d.config->max_connections_per_ip,
        .tls_cert_pem = d.config->tls_cert_pem,
        .tls_key_pem = d.config->tls_key_pem,
        .content_security_policy = API_CONTENT_SECURITY_POLICY,
    };
    api_init(&d.api, &d.loop, d.config, d.journal, &d.ingest, &d.stopping);
    rc = server_new(&d.loop, &sopts, daemon_admit, daemon_route, &d, &d.server, &err);
    if (rc < 0) {
        fprintf(stderr, "ferry serve: %s\n", err ? err : ferry_strerror(rc));
        free(err);
        journal_committer_close(d.committer, NULL, NULL);
        api_close(&d.api);
        uv_run(&d.loop, UV_RUN_DEFAULT);
        goto out;
    }
    uv_signal_init(&d.loop, &d.sigint);
    uv_signal_init(&d.loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, daemon_signal, SIGINT);
    uv_signal_start(&d.sigterm, daemon_signal, SIGTERM);
    uv_signal_init(&d.loop, &d.sighup);
    d.sighup.data = &d;
    uv_signal_start(&d.sighup, daemon_hangup, SIGHUP);
    uv_timer_init(&d.loop, &d.grace);
    d.grace.data = &d;
    uv_timer_init(&d.loop, &d.retention);
    d.retention.data = &d;
    /* A minute after start, then hourly: entries below every cursor and
     * older than `retention` go. */
    uv_timer_start(&d.retention, daemon_retain, 60 * 1000, 3600 * 1000);
    engine_new(&d.loop, d.config, d.journal, d.committer, &d.engine);
    journal_committer_set_tail(d.committer, daemon_tail, &d);
    engine_start(d.engine);
    poller_new(&d.loop, d.config, d.journal, d.committer, &d.poller);
    api_set_engine(&d.api, d.engine, d.poller);
    poller_start(d.poller, daemon_round, &d);

    fprintf(stderr, "ferry: serving on %s port %d%s (journal last seq %llu)\n", d.config->listen,
            server_port(d.server), d.config->tls_cert_pem != NULL ? " with TLS" : "",
            (unsigned long long)journal_last_seq(d.journal));
    sd_notify(0, "READY=1");
    uv_run(&d.loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    if (uv_loop_close(&d.loop) != 0)
        log_warn("serve loop closed with handles still open");
    journal_close(d.journal);
    config_free(d.config);
    return rc;
}
