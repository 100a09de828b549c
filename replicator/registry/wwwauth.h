/*
 * wwwauth: the WWW-Authenticate header of a 401 answer (RFC 7235), reduced to
 * the one challenge Ferry answers and the parameters the token flow of the
 * distribution spec needs.
 */
#ifndef FERRY_WWWAUTH_H
#define FERRY_WWWAUTH_H

#include "common/errors.h"

/* Longest header value wwwauth_parse() accepts. */
#define WWWAUTH_MAX_HEADER 8192

struct wwwauth {
    char *scheme;  /* lowercase: "bearer", "basic" or whatever else was offered */
    char *realm;   /* NULL when the challenge has none */
    char *service; /* NULL when the challenge has none */
    char *scope;   /* NULL when the challenge has none; may hold several scopes */
    char *error;   /* NULL when the challenge has none ("insufficient_scope") */
};

/**
 * Parse the value of a WWW-Authenticate header into `out`, whose previous
 * contents are overwritten without being freed.
 *
 * The header may hold several challenges separated by commas; each is a
 * scheme followed by either a token68 or comma-separated auth-params
 * (name=token or name="quoted string" with backslash escapes). Scheme and
 * parameter names are case-insensitive. The Bearer challenge is chosen when
 * there is one, else the Basic one, else the first. Only realm, service, scope
 * and error are kept; other parameters and token68 values are checked and
 * dropped. When a parameter repeats within one challenge, its first value
 * wins. A missing realm is not an error here: the caller decides.
 *
 * Returns 0 (release `out` with wwwauth_release()); FERRY_EPARSE when any part
 * of the header is malformed, empty or has control characters; FERRY_ETOOBIG
 * when it is longer than WWWAUTH_MAX_HEADER bytes; FERRY_EINVAL when `out` or
 * `header` is NULL. On failure `out` is left zeroed and, when `err` is not
 * NULL, *err receives a one-line message (which never quotes the header) that
 * the caller frees.
 */
FERRY_MUST_CHECK int wwwauth_parse(struct wwwauth *out, const char *header, char **err);

/** Free the fields of `w` and zero it; safe on a zeroed or released value. */
void wwwauth_release(struct wwwauth *w);

#endif
