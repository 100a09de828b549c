/*
 * serve: the daemon. One loop runs the HTTP server (webhook ingest, health),
 * the journal's group committer and the poller, until SIGINT or SIGTERM,
 * when it drains: no new request or round starts, every event already
 * accepted is written and answered, then everything closes.
 */
#ifndef FERRY_SERVE_H
#define FERRY_SERVE_H

#include <stdbool.h>

/**
 * Load `config_path` and serve until a stop signal. With `check_only`, load
 * and validate the config (and that the journal can open) and return. Returns
 * 0, or a negative code after printing one line on stderr.
 */
int serve_run(const char *config_path, bool check_only);

#endif
