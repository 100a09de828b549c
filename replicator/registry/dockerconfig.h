/*
 * dockerconfig: registry credentials from a Docker config.json, the file
 * `docker login` writes, so that Ferry can reuse a login made with docker,
 * podman or skopeo: the "auths" section, and the credential helpers named by
 * "credHelpers" (per registry) and "credsStore" (for all), which
 * credentials.c runs.
 */
#ifndef FERRY_DOCKERCONFIG_H
#define FERRY_DOCKERCONFIG_H

#include "common/errors.h"

/* Largest config file dockerconfig_lookup() reads. */
#define DOCKERCONFIG_MAX_BYTES (1024 * 1024)

/* The username dockerconfig_lookup() reports with an identity token. */
#define DOCKERCONFIG_TOKEN_USERNAME "<token>"

/**
 * The config file Docker itself would read: "$DOCKER_CONFIG/config.json" when
 * DOCKER_CONFIG is set and non-empty, else "$HOME/.docker/config.json" when
 * HOME is. Returns a fresh string the caller frees, or NULL when neither
 * variable is set. The file need not exist.
 */
char *dockerconfig_default_path(void);

/**
 * Look up the credentials for `registry` ("host[:port]", as in struct
 * reference) in the config file at `path`.
 *
 * A key of "auths" matches when it equals `registry`, or when it does after
 * "http://" or "https://" and any path ("/v1/", "/v2/") are stripped from it,
 * comparing host names case-insensitively. "docker.io", "index.docker.io" and
 * "registry-1.docker.io" all name Docker Hub and match each other (so does
 * the key "https://index.docker.io/v1/" that docker login writes). An exact
 * key is tried before the others, which are tried in file order; an entry
 * without credentials (as credential stores leave behind) is skipped.
 *
 * An entry's credentials come from "auth" (base64 of "user:password", split
 * at the first colon), else from "username" and "password". When neither
 * gives a non-empty password but "identitytoken" is set, the username is
 * DOCKERCONFIG_TOKEN_USERNAME and the password is the token; without one the
 * entry counts as holding no credentials.
 *
 * Returns 0 and sets *username and *password to fresh strings the caller
 * frees (and should wipe). Otherwise both are set to NULL and, when `err` is
 * not NULL, *err receives a one-line message naming the file and never a
 * secret, which the caller frees:
 *  - FERRY_ENOTFOUND when the file does not exist or has no usable entry;
 *  - FERRY_EPARSE when it is not JSON, "auths" or a matching entry has the
 *    wrong shape, or a matching "auth" is not base64 of "user:password";
 *  - FERRY_ETOOBIG when it is over DOCKERCONFIG_MAX_BYTES;
 *  - a negative errno when it cannot be read (-EACCES, -EISDIR);
 *  - FERRY_EINVAL when an argument is NULL.
 */
/* What the config says about one registry. */
struct dockerconfig_creds {
    char *helper;   /* credHelpers' entry for the registry, else credsStore; or NULL */
    char *username; /* from "auths" as dockerconfig_lookup() gives them; or NULL */
    char *password;
};

/**
 * As dockerconfig_lookup(), and the helper that Docker would ask first:
 * "credHelpers" matched as "auths" keys are (exact first), else
 * "credsStore". Returns 0 when a helper or credentials were found (the
 * caller releases *out with dockerconfig_creds_release()), FERRY_ENOTFOUND
 * when neither was, or the errors of dockerconfig_lookup() ("credHelpers"
 * or "credsStore" of the wrong type, or a helper name that is not 1 to 64 of
 * [A-Za-z0-9._-], give FERRY_EPARSE).
 */
FERRY_MUST_CHECK int dockerconfig_find(const char *path, const char *registry,
                                       struct dockerconfig_creds *out, char **err);

/**
 * The server URL a credential helper knows `registry` by: what `docker
 * login` stored. Docker Hub ("docker.io", "index.docker.io",
 * "registry-1.docker.io") is "https://index.docker.io/v1/"; any other
 * registry is its "host[:port]" as given. Never NULL.
 */
const char *dockerconfig_server_url(const char *registry);

/** Free (and wipe) what dockerconfig_find() gave. */
void dockerconfig_creds_release(struct dockerconfig_creds *c);

FERRY_MUST_CHECK int dockerconfig_lookup(const char *path, const char *registry, char **username,
                                         char **password, char **err);

#endif
