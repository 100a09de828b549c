/*
 * serve.c: `ferry serve`, the daemon. It starts the journal's committer, the
 * webhook (ingest), the API and the HTTP server, then the pipeline (the
 * engine and the poller); SIGHUP restarts the pipeline on a reloaded config,
 * SIGINT and SIGTERM wind everything down in order.
 */
#include "daemon/serve.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/errors.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "daemon/api.h"
#include "daemon/cluster.h"
#include "daemon/ingest.h"
#include "daemon/server.h"
#include "journal/committer.h"
#include "journal/journal.h"
#include "replication/engine.h"
#include "replication/poller.h"

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

/* Answers resumed by the last commits get this long on the loop to leave. */
#define SERVE_GRACE_MS 200
/* How long a cluster node waits for the servers to open its journal at start. */
#define SERVE_CLUSTER_OPEN_WAIT_MS (60 * 1000)
/* Journal retention runs a minute after start, then hourly. */
#define SERVE_RETENTION_FIRST_MS (60 * 1000)
#define SERVE_RETENTION_EVERY_MS (3600 * 1000)

/* The daemon's signals: SIGINT and SIGTERM stop it, SIGHUP reloads its config. */
#define SERVE_SIGNALS 3
/* Those and the two timers (the grace before the server closes, retention). */
#define SERVE_HANDLES (SERVE_SIGNALS + 2)

struct daemon {
    uv_loop_t loop;
    struct config *config;
    struct journal *journal;
    struct journal_committer *committer;
    struct server *server;
    struct poller *poller;
    struct engine *engine;
    struct ingest *ingest;
    struct api *api;
    struct cluster *cluster; /* NULL: one node */
    uv_signal_t signals[SERVE_SIGNALS];
    uv_timer_t grace;
    uv_timer_t retention;
    size_t handles_open; /* of the signals and timers above; closed last */
    /* What runs once the pipeline (poller, the api's lookups, engine) has stopped. */
    void (*pipeline_stopped)(struct daemon *d);
    struct config *next_config;       /* a reload waiting for the engine to drain */
    struct engine_counters *counters; /* the closing engine's, for the next one */
    bool reloading;
    bool stop_after_reload;
    uv_work_t retention_work;
    bool retention_running;
    uint64_t retention_deleted;
    int retention_rc;
    bool stopping;
};

/* Tell systemd (Type=notify) how the daemon is; a failure costs nothing but a line. */
static void serve_notify(const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0)
        log_warn("sd_notify failed state=%s error=\"%s\"", state, ferry_strerror(rc));
}

/* ---- retention ---- */

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
    d->retention_running = false;
    if (status < 0)
        log_warn("journal retention did not run error=\"%s\"", ferry_strerror(status));
    else if (d->retention_rc < 0)
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
    int rc = uv_queue_work(&d->loop, &d->retention_work, daemon_retain_work, daemon_retain_done);
    if (rc < 0) {
        d->retention_running = false;
        log_warn("journal retention did not start error=\"%s\"", ferry_strerror(rc));
    }
}

/* ---- requests ---- */

/* At the headers: the webhook's checks for its path, the API's for every other. */
static void daemon_admit(struct server_request *req, void *arg)
{
    struct daemon *d = arg;
    if (!ingest_admit(d->ingest, req))
        api_admit(d->api, req);
}

static void daemon_route(struct server_request *req, void *arg)
{
    struct daemon *d = arg;
    if (ingest_handle(d->ingest, req))
        return;
    if (api_handle(d->api, req))
        return;
    server_respond_error(req, 404, "no such endpoint");
}

/* Every entry the committer makes durable goes to the api's figures and to the engine. */
static void daemon_tail(const struct journal_entry *e, void *arg)
{
    struct daemon *d = arg;
    api_note_entry(d->api, e);
    if (d->engine != NULL)
        engine_notify(d->engine, e->seq);
}

/* ---- the pipeline: engine and poller ---- */

static void daemon_round(struct poller *p, void *arg)
{
    struct poller_stats st;
    (void)arg;
    poller_get_stats(p, &st);
    log_info("poll round rounds=%llu appended=%llu", (unsigned long long)st.rounds,
             (unsigned long long)st.appended);
}

/*
 * Start an engine (its counters going on from `counters`, which it takes)
 * and a poller on the current config, and hand them to the api. On failure
 * what did start is left for daemon_pipeline_stop().
 */
static int daemon_pipeline_start(struct daemon *d, struct engine_counters *counters)
{
    int rc = engine_new(&d->loop, d->config, d->journal, d->committer, &d->engine);
    if (rc < 0) {
        engine_counters_restore(NULL, counters);
        return rc;
    }
    /* Status and metrics count on from where they were. */
    engine_counters_restore(d->engine, counters);
    engine_start(d->engine);
    cluster_set_engine(d->cluster, d->engine);
    rc = poller_new(&d->loop, d->config, d->journal, d->committer, &d->poller);
    api_set_engine(d->api, d->engine, rc < 0 ? NULL : d->poller);
    if (rc < 0)
        return rc;
    /* In a cluster one node polls a source: the one holding its lease. */
    if (d->cluster != NULL)
        poller_set_gate(d->poller, cluster_may_poll, d->cluster);
    poller_start(d->poller, daemon_round, d);
    return 0;
}

static void daemon_engine_closed(void *arg)
{
    struct daemon *d = arg;
    d->engine = NULL;
    cluster_set_engine(d->cluster, NULL);
    if (d->api != NULL)
        api_set_engine(d->api, NULL, NULL);
    d->pipeline_stopped(d);
}

/* The api's image lookups use the engine's registry clients: they end first. */
static void daemon_api_drained(void *arg)
{
    struct daemon *d = arg;
    if (d->engine == NULL) {
        daemon_engine_closed(d);
        return;
    }
    /* Saved as the engine closes: the jobs cut short are counted already. */
    if (d->reloading)
        engine_close_saving(d->engine, &d->counters);
    engine_close(d->engine, daemon_engine_closed, d);
}

static void daemon_poller_closed(void *arg)
{
    struct daemon *d = arg;
    d->poller = NULL;
    if (d->api == NULL) {
        daemon_api_drained(d);
        return;
    }
    api_set_engine(d->api, d->engine, NULL);
    api_drain(d->api, daemon_api_drained, d);
}

/*
 * Stop the pipeline in order: no new poll round (one in flight is
 * abandoned), then no image lookup on the engine's clients, then the engine
 * (running jobs end); `then` runs once all of it has closed. Whatever of it
 * never started is skipped.
 */
static void daemon_pipeline_stop(struct daemon *d, void (*then)(struct daemon *d))
{
    d->pipeline_stopped = then;
    if (d->poller != NULL)
        poller_close(d->poller, daemon_poller_closed, d);
    else
        daemon_poller_closed(d);
}

/* ---- winding down ---- */

static void daemon_handle_closed(uv_handle_t *handle)
{
    struct daemon *d = handle->data;
    d->handles_open--;
}

static void daemon_handles_close(struct daemon *d);

static void daemon_server_closed(void *arg)
{
    struct daemon *d = arg;
    d->server = NULL;
    if (d->api != NULL)
        api_close(d->api, NULL, NULL);
    d->api = NULL;
    if (d->ingest != NULL)
        ingest_close(d->ingest, NULL, NULL);
    d->ingest = NULL;
    daemon_handles_close(d);
}

static void daemon_grace_over(uv_timer_t *timer)
{
    struct daemon *d = timer->data;
    if (d->server != NULL)
        server_close(d->server, daemon_server_closed, d);
    else
        daemon_server_closed(d);
}

static void daemon_cluster_closed(void *arg)
{
    struct daemon *d = arg;
    d->cluster = NULL;
    if (d->api != NULL)
        api_set_cluster(d->api, NULL);
    int rc = uv_timer_start(&d->grace, daemon_grace_over, SERVE_GRACE_MS, 0);
    if (rc < 0) {
        log_warn("no grace for the last answers error=\"%s\"", ferry_strerror(rc));
        daemon_grace_over(&d->grace);
    }
}

/* Every accepted event is written: the node leaves the cluster (its leases go to others). */
static void daemon_committer_closed(void *arg)
{
    struct daemon *d = arg;
    d->committer = NULL;
    if (d->ingest != NULL)
        ingest_set_committer(d->ingest, NULL);
    cluster_close(d->cluster, daemon_cluster_closed, d);
}

/* After the pipeline: every accepted event is written and answered, then the server closes. */
static void daemon_close_committer(struct daemon *d)
{
    if (d->committer != NULL)
        journal_committer_close(d->committer, daemon_committer_closed, d);
    else
        daemon_committer_closed(d);
}

/* No new signal, reload or retention run; systemd hears of it. */
static void daemon_begin_stop(struct daemon *d)
{
    d->stopping = true;
    serve_notify("STOPPING=1");
    for (size_t i = 0; i < SERVE_SIGNALS; i++)
        if (uv_signal_stop(&d->signals[i]) < 0)
            log_warn("signal handler did not stop");
    if (uv_timer_stop(&d->retention) < 0)
        log_warn("retention timer did not stop");
}

static void daemon_stop(struct daemon *d, const char *why)
{
    if (d->stopping)
        return;
    daemon_begin_stop(d);
    log_warn("stopping signal=%s: draining accepted events", why);
    if (d->reloading) {
        /* The reload is draining the engine: the stop goes on from there. */
        d->stop_after_reload = true;
        return;
    }
    daemon_pipeline_stop(d, daemon_close_committer);
}

/* Something the daemon needs did not start: wind down what did. */
static void daemon_fail(struct daemon *d)
{
    daemon_begin_stop(d);
    daemon_pipeline_stop(d, daemon_close_committer);
}

static void daemon_signal(uv_signal_t *sig, int signum)
{
    daemon_stop(sig->data, signum == SIGINT ? "INT" : "TERM");
}

/* ---- reload ---- */

/*
 * SIGHUP: rules and registries are read again. The new file must load (else
 * the daemon keeps its config and says why); then the poller and the engine
 * drain (running jobs finish; queued ones stay in the journal past the
 * engine's cursor) and start again on the new config. The journal, the
 * server and the webhook never stop.
 */
static void daemon_reload_pipeline_stopped(struct daemon *d)
{
    struct engine_counters *counters = d->counters;
    d->counters = NULL;
    struct config *old = d->config;
    d->config = d->next_config;
    d->next_config = NULL;
    ingest_reconfigure(d->ingest, d->config);
    api_reconfigure(d->api, d->config);
    cluster_reconfigure(d->cluster, d->config);
    config_free(old);
    d->reloading = false;
    if (d->stop_after_reload) {
        engine_counters_restore(NULL, counters);
        daemon_close_committer(d);
        return;
    }
    int rc = daemon_pipeline_start(d, counters);
    if (rc < 0) {
        log_error("reload failed, stopping: the engine or the poller did not start error=\"%s\"",
                  ferry_strerror(rc));
        daemon_fail(d);
        return;
    }
    log_warn("reloaded config=%s registries=%zu rules=%zu", d->config->path,
             d->config->n_registries, d->config->n_rules);
    serve_notify("READY=1");
}

static bool serve_same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * What the daemon takes at start only: its data_dir and the listener's
 * settings (the certificate too: its files).
 */
static bool serve_same_listener(const struct config *a, const struct config *b)
{
    return strcmp(a->data_dir, b->data_dir) == 0 && strcmp(a->listen, b->listen) == 0 &&
           a->webhook_max_body == b->webhook_max_body &&
           serve_same_string(a->tls_cert_file, b->tls_cert_file) &&
           serve_same_string(a->tls_key_file, b->tls_key_file) &&
           a->request_body_budget == b->request_body_budget &&
           a->max_connections_per_ip == b->max_connections_per_ip && cluster_config_same(a, b);
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
    if (!serve_same_listener(next, d->config)) {
        log_error(
            "reload refused, keeping the running config: data_dir, listen, tls, "
            "webhook_max_body, request_body_budget, max_connections_per_ip and cluster change "
            "only with a restart");
        config_free(next);
        return;
    }
    serve_notify("RELOADING=1");
    log_warn("reloading config=%s: draining the poller and the engine", d->config->path);
    d->reloading = true;
    d->next_config = next;
    daemon_pipeline_stop(d, daemon_reload_pipeline_stopped);
}

/* ---- start ---- */

static int daemon_open_journal(struct daemon *d)
{
    char *err = NULL;
    int rc = config_data_dir_prepare(d->config);
    if (rc < 0) {
        fprintf(stderr, "ferry serve: data_dir %s: %s\n", d->config->data_dir, ferry_strerror(rc));
        return rc;
    }
    /* A cluster's servers may be electing leaders (one of them restarted, or
     * all are starting): the node waits for them rather than exit. */
    int64_t until = clock_mono_ms() + SERVE_CLUSTER_OPEN_WAIT_MS;
    while ((rc = cluster_journal_open(d->config, false, &d->journal, &err)) < 0 &&
           d->config->cluster != NULL && rc != FERRY_EINVAL && rc != -EBUSY &&
           clock_mono_ms() < until) {
        log_warn("the cluster's journal did not open, trying again in 1 s error=\"%s\"",
                 err != NULL ? err : ferry_strerror(rc));
        free(err);
        err = NULL;
        (void)nanosleep(&(struct timespec){.tv_sec = 1}, NULL);
    }
    if (rc < 0)
        fprintf(stderr, "ferry serve: %s\n", err != NULL ? err : ferry_strerror(rc));
    free(err);
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

/* The daemon's own handles, in the order daemon_handles_init() makes them. */
static void daemon_handles(struct daemon *d, uv_handle_t *out[SERVE_HANDLES])
{
    for (size_t i = 0; i < SERVE_SIGNALS; i++)
        out[i] = (uv_handle_t *)&d->signals[i];
    out[SERVE_SIGNALS] = (uv_handle_t *)&d->grace;
    out[SERVE_SIGNALS + 1] = (uv_handle_t *)&d->retention;
}

/* Close the handles made so far (the first handles_open); the loop ends after them. */
static void daemon_handles_close(struct daemon *d)
{
    uv_handle_t *handles[SERVE_HANDLES];
    daemon_handles(d, handles);
    for (size_t i = 0; i < d->handles_open; i++)
        uv_close(handles[i], daemon_handle_closed);
}

/* Make the daemon's signals and timers; on failure the ones made close again. */
static int daemon_handles_init(struct daemon *d)
{
    int rc = 0;
    for (size_t i = 0; i < SERVE_SIGNALS && rc == 0; i++)
        if ((rc = uv_signal_init(&d->loop, &d->signals[i])) == 0)
            d->handles_open++;
    if (rc == 0 && (rc = uv_timer_init(&d->loop, &d->grace)) == 0)
        d->handles_open++;
    if (rc == 0 && (rc = uv_timer_init(&d->loop, &d->retention)) == 0)
        d->handles_open++;
    uv_handle_t *handles[SERVE_HANDLES];
    daemon_handles(d, handles);
    for (size_t i = 0; i < d->handles_open; i++)
        handles[i]->data = d;
    if (rc < 0)
        daemon_handles_close(d);
    return rc;
}

/* Watch the signals and arm retention. */
static int daemon_handles_start(struct daemon *d)
{
    static const int signums[SERVE_SIGNALS] = {SIGINT, SIGTERM, SIGHUP};
    int rc = 0;
    for (size_t i = 0; i < SERVE_SIGNALS && rc == 0; i++)
        rc = uv_signal_start(&d->signals[i], signums[i] == SIGHUP ? daemon_hangup : daemon_signal,
                             signums[i]);
    /* Entries below every cursor and older than `retention` go. */
    if (rc == 0)
        rc = uv_timer_start(&d->retention, daemon_retain, SERVE_RETENTION_FIRST_MS,
                            SERVE_RETENTION_EVERY_MS);
    return rc;
}

/* The server, answering for the webhook and the API. */
static int daemon_listen(struct daemon *d)
{
    char *err = NULL;
    struct server_options sopts = {
        .listen = d->config->listen,
        .max_body = d->config->webhook_max_body,
        .body_budget = d->config->request_body_budget,
        .max_connections_per_ip = (unsigned)d->config->max_connections_per_ip,
        .tls_cert_pem = d->config->tls_cert_pem,
        .tls_key_pem = d->config->tls_key_pem,
        .content_security_policy = API_CONTENT_SECURITY_POLICY,
    };
    int rc = server_new(&d->loop, &sopts, daemon_admit, daemon_route, d, &d->server, &err);
    if (rc < 0)
        fprintf(stderr, "ferry serve: %s\n", err ? err : ferry_strerror(rc));
    free(err);
    return rc;
}

/*
 * Everything on the loop, in order: the committer, the webhook and the API,
 * the server, the signals and retention, the pipeline. On failure one line
 * went to stderr and what did start is winding down: run the loop to end.
 */
static int daemon_start(struct daemon *d)
{
    const char *what = "the journal's committer";
    int rc = daemon_handles_init(d);
    if (rc < 0) {
        fprintf(stderr, "ferry serve: %s\n", ferry_strerror(rc));
        return rc;
    }
    rc = journal_committer_new(&d->loop, d->journal, &d->committer);
    if (rc == 0) {
        what = "the api";
        d->ingest = ingest_new(d->config, d->journal, d->committer);
        rc = api_new(&d->loop, d->config, d->journal, d->ingest, &d->stopping, &d->api);
    }
    if (rc == 0) {
        journal_committer_set_tail(d->committer, daemon_tail, d);
        rc = daemon_listen(d);
        what = NULL; /* daemon_listen() said why */
    }
    if (rc == 0) {
        what = "the signal handlers or retention";
        rc = daemon_handles_start(d);
    }
    if (rc == 0) {
        what = "the cluster's heartbeat";
        rc = cluster_new(&d->loop, d->config, d->journal, &d->cluster);
        api_set_cluster(d->api, d->cluster);
    }
    if (rc == 0) {
        what = "the engine or the poller";
        rc = daemon_pipeline_start(d, NULL);
    }
    if (rc < 0) {
        if (what != NULL)
            fprintf(stderr, "ferry serve: %s did not start: %s\n", what, ferry_strerror(rc));
        daemon_fail(d);
    }
    return rc;
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
        goto out;
    }
    rc = daemon_open_journal(&d);
    if (rc < 0)
        goto out;
    rc = uv_loop_init(&d.loop);
    if (rc < 0) {
        fprintf(stderr, "ferry serve: %s\n", ferry_strerror(rc));
        goto out;
    }
    rc = daemon_start(&d);
    if (rc == 0) {
        fprintf(stderr, "ferry: serving on %s port %d%s (journal last seq %llu)\n",
                d.config->listen, server_port(d.server),
                d.config->tls_cert_pem != NULL ? " with TLS" : "",
                (unsigned long long)journal_last_seq(d.journal));
        serve_notify("READY=1");
    }
    int live = uv_run(&d.loop, UV_RUN_DEFAULT);
    int busy = uv_loop_close(&d.loop);
    if (live != 0 || busy != 0 || d.handles_open != 0)
        log_warn("serve loop closed with handles still open");
out:
    journal_close(d.journal);
    config_free(d.config);
    return rc;
}
