/*
 * api: the daemon's HTTP API on the same server as the webhook.
 *
 *   GET  /v1/status           destinations (backlog, lag, in flight, counts,
 *                             throughput, circuit, last error) and sources
 *   GET  /v1/images?repository=R&(tag=T|digest=D)
 *                             that image's state in every destination,
 *                             checked at the registries (see api_handle())
 *   GET  /v1/failures         FAILED jobs with their errors
 *   POST /v1/retry            {"destination"[, "repository", "digest"]}
 *   GET  /v1/journal?after=SEQ&limit=N
 *   GET  /metrics             Prometheus text format
 *   GET  /healthz, /readyz
 *   GET  /                    the dashboard (and its assets)
 *
 * With an api_token configured every /v1/ call and /metrics needs
 * "Authorization: Bearer TOKEN" (compared in constant time); /healthz,
 * /readyz and the dashboard's static files do not. A metrics_token opens
 * /metrics (and nothing else) too. Tokens are checked when the headers
 * arrive, before any body is read (api_admit()).
 */
#ifndef FERRY_API_H
#define FERRY_API_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "replication/engine.h"
#include "daemon/ingest.h"
#include "journal/journal.h"
#include "replication/poller.h"
#include "daemon/server.h"

/* Throughput samples kept per registry: 15 minutes of 10 s. */
#define API_RATE_SAMPLES  90
#define API_RATE_PERIOD_S 10

/* An image lookup at the registries is answered by then, with what the
 * registries said so far: under the 4 s the dashboard gives a call (and the
 * 10 s of `ferry status`). */
#define API_LOOKUP_DEADLINE_MS 3000
/* Image lookups at once; more are answered 503. */
#define API_LOOKUPS_MAX 64

/*
 * The Content Security Policy of every answer: the dashboard's own (its page
 * repeats it in a <meta>, which cannot say frame-ancestors) and no framing.
 */
#define API_CONTENT_SECURITY_POLICY                                                                \
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "     \
    "data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "          \
    "frame-ancestors 'none'"

struct api_rate {
    uint64_t last_bytes;
    int64_t times[API_RATE_SAMPLES]; /* unix seconds at the end of each sample */
    double rates[API_RATE_SAMPLES];  /* bytes per second over it */
    size_t next;                     /* where the next sample goes */
    size_t count;
};

struct api_probe;

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
    /* Image lookups ask registries through the engine's clients; a drain
     * keeps new ones off them until api_set_engine(). */
    size_t lookups;           /* lookups not freed yet */
    struct api_probe *probes; /* registry calls in flight, shared by lookups */
    bool draining;
    void (*drained_cb)(void *arg);
    void *drained_arg;
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

/**
 * Use `engine` (its registry clients, stats and retries) and `poller` (its
 * stats); either may be NULL. Ends a drain (api_drain()). Both must stay
 * valid until replaced, or until a drain's callback ran and they are set
 * to NULL.
 */
void api_set_engine(struct api *a, struct engine *engine, struct poller *poller);

/**
 * Stop asking registries through the engine's clients, before the engine
 * closes: image lookups in flight are still answered (each by its deadline)
 * and end when their registry calls come back; new ones are answered from
 * the journal alone until api_set_engine(). `cb` runs once no lookup uses a
 * client any more: at once when none does, else from the loop. The engine
 * may be closed from `cb`.
 */
void api_drain(struct api *a, void (*cb)(void *arg), void *arg);

/**
 * Admit or refuse `req` at its headers (see server_admit_cb), for every path
 * but the webhook's: /metrics needs the metrics_token or the api_token when
 * either is set (401); any other /v1/ call the api_token when it is set
 * (401); a route no token guards, while there is no api_token, a Host
 * naming this server (server_request_host_allowed() with server_names; 421
 * otherwise, against DNS rebinding); without an api_token, a POST under /v1/
 * a JSON content type (415: a browser's form cannot send one across origins,
 * nor a token).
 */
void api_admit(struct api *a, struct server_request *req);

/**
 * Answer `req` when it is the API's; false to let the caller route it. The
 * request passed api_admit() at its headers.
 *
 * GET /v1/images with an engine asks the registries, not only the journal,
 * and may answer later (within API_LOOKUP_DEADLINE_MS): for a tag, what the
 * rule's source registry says the tag names now (404 when it has no such
 * tag; 502 or 503 naming the registry when it cannot say), and for each
 * destination what its tag names there. A destination is COMPLETE exactly
 * when its tag names the source's current digest (for a digest: when it
 * holds that manifest); otherwise its state is that of the job record for
 * the digest (COMPLETE there becomes PENDING, or UNKNOWN when the
 * destination could not be asked), or PENDING without a record. Without an
 * engine, or while draining, the answer comes from the journal's job
 * records alone and carries no "source".
 */
bool api_handle(struct api *a, struct server_request *req);

/**
 * Stop the sampler and free what the api holds (its timer closes through the
 * loop). No image lookup may be running (drain first).
 */
void api_close(struct api *a);

#endif
