/*
 * reference: image references as users write them on the command line and in
 * configuration ("registry.example:5000/team/app:1.2@sha256:..."), split into
 * registry, repository, tag and digest, each checked against the OCI
 * distribution grammar before any of it reaches a URL.
 */
#ifndef FERRY_REFERENCE_H
#define FERRY_REFERENCE_H

#include "common/errors.h"

#include <stdbool.h>

/* Longest reference text reference_parse() accepts. */
#define REFERENCE_MAX_TEXT 4096
/* Longest repository name, and longest "registry/repository". */
#define REFERENCE_MAX_NAME 255
/* Longest tag. */
#define REFERENCE_MAX_TAG 128

struct reference {
    char *registry;   /* "host[:port]" or "[v6]:port"; "docker.io" by default */
    char *repository; /* "library/alpine", "team/app" */
    char *tag;        /* NULL when the reference has none */
    char *digest;     /* "sha256:<hex>", NULL when the reference has none */
};

/**
 * Parse `text` as HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX] into `ref`, whose
 * previous contents are overwritten without being freed.
 *
 * The first path component names a registry when it contains '.' or ':', is
 * "localhost", or starts with '[' (an IPv6 literal); otherwise the registry
 * is "docker.io". "index.docker.io" is rewritten to "docker.io", and on
 * docker.io a single-component repository gets "library/" in front, as the
 * docker CLI does. The repository must follow the OCI grammar (lowercase
 * only, no empty components, no ".."), and registry + "/" + repository is at
 * most REFERENCE_MAX_NAME bytes. No tag is filled in when none is given.
 *
 * Returns 0 and fills every field the text names (the caller releases `ref`
 * with reference_release()); FERRY_EPARSE for malformed text, FERRY_ETOOBIG
 * when `text` is longer than REFERENCE_MAX_TEXT bytes, FERRY_EINVAL when
 * `ref` or `text` is NULL. On failure `ref` is left zeroed and, when `err` is
 * not NULL, *err receives a one-line message the caller frees.
 */
FERRY_MUST_CHECK int reference_parse(struct reference *ref, const char *text, char **err);

/** Free the fields of `ref` and zero it; safe on a zeroed or released reference. */
void reference_release(struct reference *ref);

/**
 * True when `repository` matches the OCI repository grammar
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 * and is at most REFERENCE_MAX_NAME bytes. False for NULL.
 */
bool reference_repository_valid(const char *repository);

/** True when `tag` matches [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. False for NULL. */
bool reference_tag_valid(const char *tag);

/**
 * The tag under which referrers of `digest` are listed where a registry has
 * no referrers API (the OCI fallback: "sha256:<hex>" becomes "sha256-<hex>");
 * the caller frees it.
 */
char *reference_referrers_tag(const char *digest);

/** True for a referrers fallback tag ("sha256-" and 64 lowercase hex): not an image's tag. */
bool reference_is_referrers_tag(const char *tag);

/**
 * True when `hostport` ("HOST", "HOST:PORT", "[V6]" or "[V6]:PORT") names
 * this machine's loopback, exactly: `localhost` (any case), an IPv4 address
 * in 127.0.0.0/8, or `::1`. Look-alikes (`localhost.example.com`,
 * `127.example.com`, `127.0.0.1.nip.io`) are not loopback.
 */
bool reference_host_is_loopback(const char *hostport);

/**
 * Format `ref` as "registry/repository[:tag][@digest]" in a fresh string the
 * caller frees. Returns NULL when `ref`, its registry or its repository is
 * NULL.
 */
char *reference_format(const struct reference *ref);

#endif
