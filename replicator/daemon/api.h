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
 *
 * The module's files: api.c (lifecycle, routing, the token checks),
 * api_status.c (status, failures, retry, journal), api_images.c (image
 * lookups at the registries), metrics.c (/metrics and the throughput
 * samples); api_int.h is what they share.
 */
#ifndef FERRY_API_H
#define FERRY_API_H

#include "common/errors.h"

#include <stdbool.h>
#include <uv.h>

#include "config/config.h"
#include "daemon/cluster.h"
#include "daemon/ingest.h"
#include "daemon/server.h"
#include "journal/journal.h"
#include "replication/engine.h"
#include "replication/poller.h"

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

struct api;

/** The cluster this node is in, for the status (NULL: one node); it outlives the api. */
void api_set_cluster(struct api *a, struct cluster *cluster);

/**
 * An api on `loop` that answers from `journal` under `config`, counts the
 * webhook's figures of `ingest` (may be NULL) in /metrics, and reads
 * *stopping for /readyz and retries. The pointers must outlive the api; it
 * has no engine until api_set_engine(). Returns 0 and sets *out, or a
 * negative libuv code (its throughput sampler could not start) with *out
 * NULL: what it had opened closes and is freed through the loop by itself.
 */
FERRY_MUST_CHECK int api_new(uv_loop_t *loop, const struct config *config, struct journal *journal,
                             struct ingest *ingest, const bool *stopping, struct api **out);

/**
 * Switch to a reloaded config (the old one may be freed after this). A
 * registry kept by name keeps its per-source figures and throughput samples.
 */
void api_reconfigure(struct api *a, const struct config *config);

/** Count an entry the journal made durable (for per-source figures). */
void api_note_entry(struct api *a, const struct journal_entry *e);

/**
 * Use `engine` (its registry clients, stats and retries) and `poller` (its
 * stats); either may be NULL. Ends a drain (api_drain()). Both must stay
 * valid until replaced: a poller about to close is replaced by NULL first,
 * an engine after a drain's callback ran.
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
 * Close: stop the throughput sampler and, once its timer has closed and no
 * image lookup runs any more (a lookup in flight ends when its registry
 * calls return: drain before the engine closes), free the api and call `cb`
 * (may be NULL) from the loop. No request may reach the api after this.
 */
void api_close(struct api *a, void (*cb)(void *arg), void *arg);

#endif
