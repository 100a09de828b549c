/*
 * daemon_client: the one blocking HTTP client the command line talks to a
 * running `ferry serve` with (`ferry status`, `ferry retry`, `ferry journal
 * append`): one request at a time, a deadline, the token's Authorization
 * header, an answer body capped in size, and JSON.
 */
#ifndef FERRY_CLI_DAEMON_CLIENT_H
#define FERRY_CLI_DAEMON_CLIENT_H

#include "common/errors.h"

#include <cjson/cJSON.h>
#include <stddef.h>

#include "config/config.h"

/* The largest answer body read; a larger one is an error. */
#define DAEMON_CLIENT_BODY_MAX (16 * 1024 * 1024)

/* How long a request may take, connecting included, and connecting alone. */
#define DAEMON_CLIENT_TIMEOUT_MS         10000
#define DAEMON_CLIENT_CONNECT_TIMEOUT_MS 5000

struct daemon_client {
    char *base;      /* "http://host:port", no trailing slash */
    char *auth;      /* "Authorization: Bearer ..." (a secret), or NULL */
    long timeout_ms; /* DAEMON_CLIENT_TIMEOUT_MS unless changed */
    size_t body_max; /* DAEMON_CLIENT_BODY_MAX unless changed */
};

/* One answer of the daemon. */
struct daemon_answer {
    long status; /* its HTTP status */
    char *body;  /* its body, NUL-terminated (never NULL) */
    size_t len;  /* bytes of body */
    cJSON *json; /* the body parsed, or NULL when it is not JSON */
};

/**
 * A client of the daemon at `server` ("http://host:port", trailing slashes
 * dropped) or, when `server` is NULL, at http:// and `cfg`'s listen address.
 * `token` (NULL or "": none) goes in an Authorization: Bearer header. Release
 * it with daemon_client_release().
 */
void daemon_client_init(struct daemon_client *c, const char *server, const struct config *cfg,
                        const char *token);

/** Free what `c` holds, wiping the header with the token. */
void daemon_client_release(struct daemon_client *c);

/** The API's token for `cfg` (may be NULL): its api_token, else FERRY_API_TOKEN, else NULL. */
const char *daemon_client_api_token(const struct config *cfg);

/**
 * GET base+`path` or, when `post` is not NULL, POST it (JSON) there, and
 * wait for the answer. Returns 0 when one came, whatever its status, with
 * *answer filled (release it with daemon_answer_release()). Otherwise
 * *answer is empty and *error (caller frees) says why in a few words, for
 * the caller to put after the daemon's name: FERRY_ECONNECT when no answer
 * came in time or the request could not be made (curl's words),
 * FERRY_ETOOBIG when its body passed c->body_max.
 */
FERRY_MUST_CHECK int daemon_client_request(const struct daemon_client *c, const char *path,
                                           const char *post, struct daemon_answer *answer,
                                           char **error);

/**
 * daemon_client_request() wanting a 200 with a JSON body: returns 0 with
 * *json set (caller frees with cJSON_Delete()). Otherwise *json is NULL and
 * *error (caller frees) is one line that names the daemon ("http://HOST:PORT:
 * why"): the codes of daemon_client_request(), FERRY_EHTTP for another
 * status ("http://HOST:PORT/PATH: HTTP 503: the daemon's error"),
 * FERRY_EPARSE for a 200 that is not JSON.
 */
FERRY_MUST_CHECK int daemon_client_call(const struct daemon_client *c, const char *path,
                                        const char *post, cJSON **json, char **error);

/** Free what `a` holds. */
void daemon_answer_release(struct daemon_answer *a);

#endif
