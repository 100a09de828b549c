/*
 * clients: the HTTP and registry clients of one registry of the config,
 * built one way for every user (the engine, the poller, `ferry verify`):
 * the registry's TLS files, stall timeout, rate limit, concurrency and
 * credentials all apply, whoever asks.
 */
#ifndef FERRY_CLIENTS_H
#define FERRY_CLIENTS_H

#include "common/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "registry/http.h"
#include "registry/registry.h"

struct clients_options {
    bool push;               /* also open a client that writes (registry_options.push) */
    size_t pull_cache_bytes; /* the reading client's answer cache (0: none) */
};

/* Embedded in its user; filled by clients_open(). */
struct clients {
    struct http_client *http;
    struct registry *pull; /* reads */
    struct registry *push; /* writes; NULL unless asked for */
    int concurrency;       /* the registry's max_concurrency, or Ferry's default */
    int closing;           /* handles still closing */
    void (*closed_cb)(void *arg);
    void *closed_arg;
};

/** Requests (or jobs) at once for `cfg`: its max_concurrency, or Ferry's default. */
FERRY_MUST_CHECK int clients_concurrency(const struct config_registry *cfg);

/** Open the clients of `cfg` on `loop` into *out; close them with clients_close(). */
void clients_open(uv_loop_t *loop, const struct config_registry *cfg,
                  const struct clients_options *opts, struct clients *out);

/**
 * Close every client of `cl` (no request may be running); `cb` (may be
 * NULL) fires once, from the loop, when all are freed. A zeroed `cl` (never
 * opened) closes at once: `cb` fires from inside the call.
 */
void clients_close(struct clients *cl, void (*cb)(void *arg), void *arg);

#endif
