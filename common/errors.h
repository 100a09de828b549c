/*
 * errors: Ferry's own error codes. Every function returns 0 or a negative
 * code; libuv's UV_E* and -errno pass through unchanged, and Ferry's own codes
 * live below FERRY_ERRBASE so that they never collide with either.
 */
#ifndef FERRY_ERRORS_H
#define FERRY_ERRORS_H

/*
 * On a function that returns 0 or a negative code (or a count or -1): the
 * compiler refuses a call that drops the result, so every failure is handled
 * or passed on. A function that cannot fail returns void instead.
 */
#define FERRY_MUST_CHECK __attribute__((warn_unused_result))

#define FERRY_ERRBASE (-20000)

enum ferry_error {
    FERRY_EPARSE = FERRY_ERRBASE - 1,        /* malformed input */
    FERRY_ETOOBIG = FERRY_ERRBASE - 2,       /* input over its cap */
    FERRY_EDIGEST = FERRY_ERRBASE - 3,       /* content does not match its digest */
    FERRY_EHTTP = FERRY_ERRBASE - 4,         /* unexpected HTTP status */
    FERRY_ENOTFOUND = FERRY_ERRBASE - 5,     /* the registry does not have it */
    FERRY_EAUTH = FERRY_ERRBASE - 6,         /* authentication or authorization denied */
    FERRY_ECONNECT = FERRY_ERRBASE - 7,      /* registry unreachable, connection failed */
    FERRY_ETIMEOUT = FERRY_ERRBASE - 8,      /* an operation took too long */
    FERRY_EPROTO = FERRY_ERRBASE - 9,        /* the registry broke the protocol */
    FERRY_EUNSUPPORTED = FERRY_ERRBASE - 10, /* a media type or feature Ferry does not handle */
    FERRY_ECANCELED = FERRY_ERRBASE - 11,    /* the operation was canceled */
    FERRY_EINVAL = FERRY_ERRBASE - 12,       /* invalid argument or configuration */
    FERRY_ETLS = FERRY_ERRBASE - 13,         /* TLS handshake or certificate failure */
    FERRY_ESERVER = FERRY_ERRBASE - 14,      /* the registry answered 5xx */
    FERRY_ETOOMANY = FERRY_ERRBASE - 15,     /* the registry answered 429 */
    FERRY_ENOREPO = FERRY_ERRBASE - 16,      /* a push refused: no such repository (NAME_UNKNOWN,
                                                DENIED), which the registry will not create */
    FERRY_ERRLAST = FERRY_ERRBASE - 17,
};

/**
 * Describe any error code Ferry returns: its own, libuv's or -errno. The
 * string is static and never NULL.
 */
const char *ferry_strerror(int code);

/**
 * For parsers' error paths: when `err` is not NULL, set *err to the formatted
 * one-line message (caller frees). Returns `rc`, so `return ferry_error_set(...)`.
 */
FERRY_MUST_CHECK int ferry_error_set(char **err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Room ferry_printable() needs: 64 bytes, "..." and the terminator. */
#define FERRY_PRINTABLE_MAX 72

/**
 * A short rendering of untrusted text for an error message: at most 64 bytes
 * of it, anything outside printable ASCII (and '"') shown as '?', "..." when
 * cut. Writes into `out` and returns it.
 */
const char *ferry_printable(const char *s, char out[FERRY_PRINTABLE_MAX]);

#endif
