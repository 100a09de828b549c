/*
 * listing: a registry's repositories (`_catalog`) or a repository's tags,
 * every page followed through its Link header, as `ferry ls` and
 * `ferry catalog` print them.
 */
#ifndef FERRY_LISTING_H
#define FERRY_LISTING_H

#include "common/errors.h"

#include <stddef.h>

#include "registry/http.h"
#include "registry/registry.h"

struct listing_options {
    const char *registry;   /* host[:port] */
    const char *repository; /* NULL: list the catalog */
    struct registry_options reg;
    struct http_client_options http;
};

/**
 * List on a loop of its own. Returns 0 and sets *items (*n entries, each and
 * the array freed by the caller), or a negative code with *error set to one
 * line (caller frees).
 */
FERRY_MUST_CHECK int listing_run(const struct listing_options *opts, char ***items, size_t *n,
                                 char **error);

#endif
