#include "common/errors.h"

#include <stdarg.h>
#include <string.h>

#include "common/xalloc.h"

const char *ferry_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case FERRY_EPARSE:
        return "malformed input";
    case FERRY_ETOOBIG:
        return "input too large";
    case FERRY_EDIGEST:
        return "digest mismatch";
    case FERRY_EHTTP:
        return "unexpected HTTP status";
    case FERRY_ENOTFOUND:
        return "not found";
    case FERRY_EAUTH:
        return "authentication denied";
    case FERRY_ECONNECT:
        return "registry unreachable";
    case FERRY_ETIMEOUT:
        return "timed out";
    case FERRY_EPROTO:
        return "registry protocol error";
    case FERRY_EUNSUPPORTED:
        return "unsupported";
    case FERRY_ECANCELED:
        return "canceled";
    case FERRY_EINVAL:
        return "invalid argument";
    case FERRY_ETLS:
        return "TLS failure";
    case FERRY_ESERVER:
        return "registry server error";
    case FERRY_ETOOMANY:
        return "rate limited by registry";
    case FERRY_ENOREPO:
        return "no such repository at the registry";
    default:
        break;
    }
    /* libuv's codes on Unix are negated errno values. */
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}

int ferry_error_set(char **err, int rc, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        *err = xvasprintf(fmt, ap);
        va_end(ap);
    }
    return rc;
}

const char *ferry_printable(const char *s, char out[FERRY_PRINTABLE_MAX])
{
    size_t n = 0;
    for (; s[n] != '\0' && n < 64; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (s[n] != '\0') {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}
