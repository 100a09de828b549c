/*
 * api: the daemon's HTTP API on the same server as the webhook.
 *
 *   GET  /v1/status           destinations (backlog, lag, in flight, counts,
 *                             throughput, circuit, last error) and sources
 *   GET  /v1/images?repository=R&(tag=T|digest=D)
 *                             that image's state in every destination
 *   GET  /v1/failures         FAILED jobs with their errors
 *   POST /v1/retry            {"destination"[, "repository", "digest"]}
 *   GET  /v1/journal?after=SEQ&limit=N
 *   GET  /metrics             Prometheus text format
 *   GET  /healthz, /readyz
 *   GET  /                    the dashboard (and its assets)
 *
 * With an api_token configured every /v1/ call and /metrics needs
 * "Authorization: Bearer TOKEN" (compared in constant time); /healthz,
 * /readyz and the dashboard's static files do not.
 */
#ifndef FERRY_API_H
#define FERRY_API_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "engine.h"
#include "ingest.h"
#include "journal.h"
#include "poller.h"
#include "server.h"

/* Throughput samples kept per registry: 15 minutes of 10 s. */
#define API_RATE_SAMPLES  90
#define API_RATE_PERIOD_S 10

struct api_rate {
    uint64_t last_bytes;
    int64_t times[API_RATE_SAMPLES]; /* unix seconds at the end of each sample */
    double rates[API_RATE_SAMPLES];  /* bytes per second over it */
    size_t next;                     /* where the next sample goes */
    size_t count;
};

struct api_source {
    const char *name;
    uint64_t entries;
    uint64_t last_seq;
    int64_t last_event_unix_ms;
};

struct api {
    uv_loop_t *loop;
    const struct config *config;
    struct journal *journal;
    struct engine *engine; /* NULL once it closed */
    struct poller *poller; /* NULL once it closed */
    struct ingest *ingest;
    const bool *stopping;
    int64_t start_unix_ms;
    struct api_source *sources; /* one per registry of the config */
    struct api_rate *rates;     /* one per registry of the config */
    uv_timer_t sampler;
};

/** Set up on `loop`; the pointers must outlive the api. */
void api_init(struct api *a, uv_loop_t *loop, const struct config *config, struct journal *journal,
              struct ingest *ingest, const bool *stopping);

/** Switch to a reloaded config (the old one is freed after this). */
void api_reconfigure(struct api *a, const struct config *config);

/** Count an entry the journal made durable (for per-source figures). */
void api_note_entry(struct api *a, const struct journal_entry *e);

/** Answer `req` when it is the API's; false to let the caller route it. */
bool api_handle(struct api *a, struct server_request *req);

/** Stop the sampler and free what the api holds (its timer closes through the loop). */
void api_close(struct api *a);

#endif
