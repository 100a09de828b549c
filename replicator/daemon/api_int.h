/*
 * api_int.h: what the files of the api module share (api.c, api_status.c,
 * api_images.c, metrics.c): the api itself, its per-registry figures and
 * the JSON helpers every answer uses. Not for use outside daemon/api*.c and
 * daemon/metrics.c.
 */
#ifndef FERRY_API_INT_H
#define FERRY_API_INT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/api.h"

/* Throughput samples kept per registry: 15 minutes of 10 s. */
#define API_RATE_SAMPLES  90
#define API_RATE_PERIOD_S 10
/* The samples that make the "bytes per second" of /v1/status: the last minute. */
#define API_RATE_MINUTE_SAMPLES (60 / API_RATE_PERIOD_S)

/* Rows per answer of /v1/failures and /v1/journal. */
#define API_LIST_MAX 1000

/* Bytes sent to one registry, sampled every API_RATE_PERIOD_S (a ring). */
struct api_rate {
    uint64_t last_bytes;
    int64_t times[API_RATE_SAMPLES]; /* unix seconds at the end of each sample */
    double rates[API_RATE_SAMPLES];  /* bytes per second over it */
    size_t next;                     /* where the next sample goes */
    size_t count;
};

/* What the journal took in from one registry as a source. */
struct api_source {
    const char *name;
    uint64_t entries;
    uint64_t last_seq;
    int64_t last_event_unix_ms;
};

/* A registry call in flight for image lookups (api_images.c). */
struct api_probe;

struct api {
    uv_loop_t *loop;
    const struct config *config;
    struct journal *journal;
    struct engine *engine;   /* NULL once it closed */
    struct poller *poller;   /* NULL once it closed */
    struct ingest *ingest;   /* NULL: no webhook figures */
    struct cluster *cluster; /* NULL: one node */
    const bool *stopping;
    /* Image lookups ask registries through the engine's clients; a drain
     * keeps new ones off them until api_set_engine(). */
    size_t lookups;           /* lookups not freed yet */
    struct api_probe *probes; /* registry calls in flight, shared by lookups */
    bool draining;
    void (*drained_cb)(void *arg);
    void *drained_arg;
    /* api_close(): the api is freed once the sampler closed and no lookup is left. */
    bool closing;
    bool sampler_open;
    void (*close_cb)(void *arg);
    void *close_arg;
    int64_t start_unix_ms;
    struct api_source *sources; /* one per registry of the config */
    struct api_rate *rates;     /* one per registry of the config */
    uv_timer_t sampler;
};

/* ---- api.c: shared helpers ---- */

/** RFC 3339 UTC with milliseconds, or JSON null for 0 (and before 1970). */
cJSON *api_json_time(int64_t unix_ms);

/** A JSON string, or JSON null for NULL. */
cJSON *api_json_string_or_null(const char *s);

/** Answer `body` (freed here) as JSON with a trailing newline. */
void api_respond_json(struct server_request *req, unsigned status, cJSON *body);

/** True when some rule of `c` sends to registry `name`. */
bool api_is_destination(const struct config *c, const char *name);

/** True when some rule of `c` reads from registry `name`. */
bool api_is_source(const struct config *c, const char *name);

/** Seconds since the destination's oldest unfinished entry arrived; 0 when idle. */
double api_lag_seconds(const struct engine_destination_stats *st, int64_t now_unix_ms);

/**
 * Read the job record (destination, repository, digest) into *job: true
 * when there is one (release it with journal_job_release()); false when
 * there is none or the journal could not read it (logged).
 */
bool api_job_get(struct api *a, const char *destination, const char *repository, const char *digest,
                 struct journal_job *job);

/** An image lookup was freed: ends a drain, or the close, when it was the last. */
void api_lookup_ended(struct api *a);

/* ---- api_status.c ---- */

/** GET /v1/status: destinations and sources. */
void api_get_status(struct api *a, struct server_request *req);

/** GET /v1/failures: FAILED jobs, at most API_LIST_MAX. */
void api_get_failures(struct api *a, struct server_request *req);

/**
 * POST /v1/retry: requeue FAILED jobs through the engine, of {"destination":
 * D}, {"repository": R, "digest": D} (or all three), or {"all_failed": true}
 * alone; any other body (an empty one, {}) is 400.
 */
void api_post_retry(struct api *a, struct server_request *req);

/** GET /v1/journal?after=SEQ&limit=N: entries in seq order. */
void api_get_journal(struct api *a, struct server_request *req);

/* ---- api_images.c ---- */

/** GET /v1/images: from the registries with an engine, else from the journal (see api.h). */
void api_get_images(struct api *a, struct server_request *req);

/* ---- metrics.c ---- */

/** GET /metrics in the Prometheus text format. */
void api_get_metrics(struct api *a, struct server_request *req);

/** The sampler's tick: one throughput sample per registry the engine knows. */
void api_rates_sample(uv_timer_t *timer);

/** Bytes per second over the last minute (fewer samples early on). */
double api_rate_last_minute(const struct api_rate *r);

/** The samples, oldest first, as [[unix seconds, bytes per second], ...]. */
cJSON *api_rate_samples_json(const struct api_rate *r);

#endif
