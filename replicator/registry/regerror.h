/*
 * regerror: the error body of the distribution API,
 * {"errors":[{"code":"MANIFEST_UNKNOWN","message":"...","detail":...}]},
 * turned into text that is safe to log: one line, bounded, no control
 * characters.
 */
#ifndef FERRY_REGERROR_H
#define FERRY_REGERROR_H

#include "common/errors.h"

#include <stddef.h>

/* Largest body regerror_parse() looks at. */
#define REGERROR_MAX_BODY (64 * 1024)
/* Longest code or message it hands back, in bytes. */
#define REGERROR_MAX_TEXT 300

/**
 * Read the first error of a registry error body of `len` bytes (it need not
 * be NUL-terminated). Its code and message are sanitized: control characters
 * (C0, DEL, C1, U+2028 and U+2029) become spaces, invalid UTF-8 bytes become
 * '?', and each is cut to REGERROR_MAX_TEXT bytes without splitting a
 * character.
 *
 * Returns 0 and sets *code (non-empty) and *message (possibly "", when the
 * error has no message string), fresh strings the caller frees; either
 * pointer may be NULL when the caller does not want that part. Returns
 * FERRY_EPARSE when the body is empty, holds a NUL byte, or is not that JSON
 * (HTML, plain text, an empty "errors" array, a first error without a string
 * code), and FERRY_ETOOBIG when it is over REGERROR_MAX_BODY bytes. On
 * failure *code and *message are set to NULL.
 */
FERRY_MUST_CHECK int regerror_parse(const char *body, size_t len, char **code, char **message);

/**
 * Summarize a registry error body in one line: "CODE: message", or "CODE"
 * when the message is empty, followed by " (and N more)" when the body lists
 * N further errors. Returns a fresh string the caller frees, or NULL when
 * regerror_parse() would fail.
 */
char *regerror_summary(const char *body, size_t len);

/* A refused request, as regerror_explain() reads it besides the body. */
struct regerror_request {
    const char *registry; /* the registry as the user named it: host[:port] */
    const char *method;   /* "PUT", "GET", ... */
    const char *path;     /* the URL's path without its query: "/v2/app/manifests/v1" */
    long status;          /* the answer's HTTP status */
    /* The answer's Retry-After, RateLimit-Limit and RateLimit-Remaining, or NULL. */
    const char *retry_after;
    const char *ratelimit_limit;
    const char *ratelimit_remaining;
};

/**
 * Say plainly, in one line, what a registry's refusal means and what to do,
 * for the refusals users meet at the vendors' registries (Docker Hub, ECR,
 * GAR, ACR, GHCR, Harbor, Quay): UNAUTHORIZED (401), DENIED (403), a push
 * to a repository that does not exist (NAME_UNKNOWN), a project that does
 * not exist (Harbor, GCR: "project ... not found"), a quota (ECR's
 * LimitExceededException and "maximum allowed number of images", Harbor's
 * and Quay's quotas), TOOMANYREQUESTS (429, with the wait the answer
 * names), and a catalog the registry does not offer. The line names what
 * was asked ("push to HOST/REPO", "pull from", "tag listing of", "delete
 * at", "the catalog of"), the registry's code and message (as
 * regerror_parse() sanitizes them), what to do, and ends with the request
 * and its status: "[PUT /v2/app/manifests/v1: HTTP 403]".
 *
 * Returns a fresh string the caller frees, or NULL when the answer is none
 * of these (then the caller says it its usual way). `body` (of `len` bytes,
 * possibly NULL or not JSON) is the answer's body.
 */
char *regerror_explain(const struct regerror_request *request, const char *body, size_t len);

#endif
