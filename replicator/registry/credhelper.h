/*
 * credhelper: Docker credential helpers, by their protocol. The program
 * docker-credential-<name> is run with the argument `get` and the server URL
 * (the registry's host, as `docker login` stored it) on stdin; it prints
 * {"ServerURL": "...", "Username": "...", "Secret": "..."} on stdout, or
 * exits non-zero with a message ("credentials not found in native
 * keychain") when it has nothing. A Username of "<token>" means the Secret
 * is an identity (refresh) token.
 *
 * The helper runs off the loop through spawn.h, with a time limit. Its stdout
 * holds the secret: it is parsed, then wiped, and never logged or put in a
 * message; a failing helper's stderr (first line, capped) goes into the error.
 */
#ifndef FERRY_CREDHELPER_H
#define FERRY_CREDHELPER_H

#include "common/errors.h"

#include <stdint.h>
#include <uv.h>

/* The Username that marks Secret as an identity token. */
#define CREDHELPER_TOKEN_USERNAME "<token>"
/* The most a helper may print on stdout. */
#define CREDHELPER_OUTPUT_MAX (64 * 1024)

/*
 * rc 0: `username` and `secret` (both non-empty; valid only during the
 * callback, then wiped). FERRY_ENOTFOUND: the helper ran and has no
 * credentials for that server (it said "credentials not found", as helpers
 * do, on stdout or stderr). FERRY_ETIMEOUT: killed at the time limit.
 * FERRY_EAUTH: any other failure (could not run, non-zero exit, output that
 * is not the JSON above, empty Secret). `error` is one line naming the
 * program ("docker-credential-ecr-login: exited with status 1: ...") and
 * never holds stdout; NULL on success.
 */
typedef void (*credhelper_cb)(int rc, const char *error, const char *username, const char *secret,
                              void *arg);

/**
 * Ask helper `name` (the part after "docker-credential-", found in PATH;
 * a name that is not 1 to 64 of [A-Za-z0-9._-] fails with FERRY_EINVAL,
 * so that config.json cannot name "../x") for the credentials of
 * `server_url`. The callback fires once, from the loop.
 */
void credhelper_get(uv_loop_t *loop, const char *name, const char *server_url, uint64_t timeout_ms,
                    credhelper_cb cb, void *arg);

#endif
