/*
 * serve: the daemon, `ferry serve`. One loop runs the HTTP server (the
 * webhook, the API, /metrics, health and the dashboard), the journal's group
 * committer, the poller and the replication engine. SIGHUP reloads rules and
 * registries (the poller and the engine drain and start again); SIGINT or
 * SIGTERM drain: no new poll round or job starts, every event already
 * accepted is written and answered, then everything closes.
 */
#ifndef FERRY_SERVE_H
#define FERRY_SERVE_H

#include "common/errors.h"

#include <stdbool.h>

/**
 * Load `config_path` and serve until a stop signal. With `check_only`
 * (`ferry serve --check-config`), load and validate the config, its secrets
 * and TLS files included, warn when the listener is open to the network
 * without a token, and return: nothing is created or opened (no data_dir,
 * no journal). Returns 0, or a negative code after printing one line on
 * stderr (config_load()'s codes for a config that is wrong).
 */
FERRY_MUST_CHECK int serve_run(const char *config_path, bool check_only);

#endif
