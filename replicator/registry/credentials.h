/*
 * credentials: where one registry's credentials come from, and keeping them
 * fresh. A source is one of
 *
 *   static        a username and password given once (the config inline or
 *                 from an environment variable, the command line);
 *   file          a username and a password_file, read again when the file
 *                 changes (a Kubernetes Secret update, a sidecar writing a
 *                 new ECR token) and after a refusal;
 *   helper        docker-credential-NAME (credhelper.h), asked again before
 *                 what it gave expires and after a refusal;
 *   docker config a Docker config.json: credHelpers[host] or credsStore (a
 *                 helper, as above), else auths[host] (a password or an
 *                 identity token); the file is read again when it changes.
 *
 * What a source gives is cached with its lifetime: a secret shaped like a
 * JWT carries its `exp`, an ECR token its `expiration`; a helper's other
 * answers are kept CREDENTIALS_HELPER_TTL_MS. Renewal is lazy and early:
 * the first use after a tenth of the lifetime before the end (at most
 * CREDENTIALS_RENEW_MARGIN_MAX_MS) fetches again, so a daemon keeps working
 * across any number of expiries without a timer of its own. A registry that
 * refuses the credentials (401) calls credentials_refused() once per request
 * and tries once more with what the source gives then.
 *
 * A credentials object is shared (reference counted) by the clients of one
 * registry. It never logs a secret, and no message it makes holds one.
 */
#ifndef FERRY_CREDENTIALS_H
#define FERRY_CREDENTIALS_H

#include "common/errors.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* A helper's answer without a readable lifetime is used this long. */
#define CREDENTIALS_HELPER_TTL_MS ((uint64_t)5 * 60 * 1000)
/* Credentials are renewed a tenth of their life early, at most this early. */
#define CREDENTIALS_RENEW_MARGIN_MAX_MS ((uint64_t)5 * 60 * 1000)
/* A password file or a Docker config is looked at (stat) at most this often. */
#define CREDENTIALS_RECHECK_MS 1000
/* A helper's default time limit. */
#define CREDENTIALS_HELPER_TIMEOUT_MS ((uint64_t)30 * 1000)

enum credentials_kind {
    CREDENTIALS_STATIC = 1,
    CREDENTIALS_FILE,
    CREDENTIALS_HELPER,
    CREDENTIALS_DOCKER_CONFIG,
};

struct credentials_spec {
    enum credentials_kind kind;
    const char *host;     /* "host[:port]": the helper's server URL, the config.json key */
    const char *username; /* static and file */
    const char *password; /* static; file: the password read at load (NULL: read now) */
    const char *path;     /* file: the password file; docker config: config.json */
    const char *helper;   /* helper: NAME of docker-credential-NAME */
    uint64_t timeout_ms;  /* a helper's time limit (0: CREDENTIALS_HELPER_TIMEOUT_MS) */
    const char *label;    /* static: where they came from ("config", "--src-creds", ...) */
};

/* What a source gives, valid only during the callback (or until the next call). */
struct credential {
    const char *username; /* NULL: none (anonymous) */
    const char *secret;
    bool identity_token; /* secret is a refresh token, exchanged at the token realm */
    uint64_t generation; /* for credentials_refused() */
};

/* For status output: never the secret. */
struct credentials_info {
    const char *source;       /* "credential helper docker-credential-ecr-login", ... */
    uint64_t renewed_unix_ms; /* the last fetch that gave credentials; 0: none yet */
    uint64_t expires_unix_ms; /* when what is held expires; 0: unknown or never */
    uint64_t renewals;        /* fetches that gave credentials */
    uint64_t failures;        /* fetches that failed */
    const char *last_error;   /* the last failure, or NULL */
};

struct credentials;

/** A new source, with one reference. Never NULL; copies what it keeps. */
struct credentials *credentials_new(const struct credentials_spec *spec);

/** Another reference (returns `c`), and letting one go; NULL is ignored. */
struct credentials *credentials_ref(struct credentials *c);
void credentials_unref(struct credentials *c);

/**
 * The credentials to send now, without waiting: true and *out filled when
 * what is held is fresh (a password file or Docker config that changed on
 * disk is read again here, at most every CREDENTIALS_RECHECK_MS); false when
 * a fetch is needed (credentials_fetch()).
 */
bool credentials_current(struct credentials *c, struct credential *out);

/*
 * A fetch's end: rc 0 with `cred` (its username NULL when the source has
 * none for this registry: go anonymous), or a code with one line naming the
 * source and what failed.
 */
typedef void (*credentials_cb)(int rc, const char *error, const struct credential *cred, void *arg);

/**
 * Fetch fresh credentials: one fetch (a helper run) for every caller that
 * asks while it is under way. The callback fires once: from the loop when a
 * helper runs; from inside this call when no helper is involved (a password
 * file or Docker config read again), so a caller must be ready for both.
 */
void credentials_fetch(struct credentials *c, uv_loop_t *loop, credentials_cb cb, void *arg);

/**
 * The registry refused the credentials of `generation`: unless they were
 * renewed since, forget them so that the next use fetches again. Returns
 * true when fetching again can give something new (not for static ones).
 */
bool credentials_refused(struct credentials *c, uint64_t generation);

/** Where they come from and when they were last renewed. Valid until the next call. */
void credentials_get_info(struct credentials *c, struct credentials_info *out);

/**
 * The lifetime of `secret` in ms from now when it says it (a JWT's `exp`, an
 * ECR token's `expiration`); 0 when it does not. Exposed for tests.
 */
uint64_t credentials_secret_life_ms(const char *secret, uint64_t now_unix_ms);

#endif
