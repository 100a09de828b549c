/*
 * status: `ferry status`, the client of a running daemon's HTTP API: a table
 * of destinations, one image in every destination, and --wait, the gate a
 * deploy pipeline runs before rolling out in a region.
 */
#ifndef FERRY_STATUS_H
#define FERRY_STATUS_H

#include <stddef.h>

#include "config/config.h"

/** Run `ferry status ARGS` (argv[0] is "status"); returns the exit status. */
int status_main(int argc, char **argv);

/**
 * Ask the daemon of `cfg` (its listen address) to requeue the FAILED jobs of
 * `destination` (NULL: all). Returns 0 with *requeued set, or a negative
 * code with *error (caller frees) set.
 */
int status_retry(const struct config *cfg, const char *destination, size_t *requeued, char **error);

#endif
