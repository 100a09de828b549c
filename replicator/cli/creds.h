/*
 * creds: one registry's credentials as the command line finds them. First
 * the flags, at most one of --X-creds USER:PASSWORD, --X-creds-file FILE and
 * --X-creds-stdin; then the environment (PREFIX_USERNAME and
 * PREFIX_PASSWORD, the password taken out of it once read); then the Docker
 * config: its "credHelpers" and "credsStore" (run when asked), else its
 * "auths". Every copy of a password is wiped when let go.
 */
#ifndef FERRY_CLI_CREDS_H
#define FERRY_CLI_CREDS_H

#include "common/errors.h"

#include <stdbool.h>

/* Which of the three flags gave the credentials. */
enum creds_how {
    CREDS_ARG,   /* --X-creds USER:PASSWORD */
    CREDS_FILE,  /* --X-creds-file FILE */
    CREDS_STDIN, /* --X-creds-stdin */
};

struct creds {
    const char *flag; /* "--src-creds", for messages and the other flags' names */
    char *arg;        /* --X-creds: its value, inside argv */
    const char *file; /* --X-creds-file */
    bool from_stdin;  /* --X-creds-stdin */
    int given;        /* how many of the three flags were given */
    char *text;       /* USER:PASSWORD once loaded (a copy); NULL: none given */
    char *username;   /* once resolved; NULL: none found */
    char *password;
    /*
     * Once resolved: where they come from, for registry_options.credentials
     * (a static source for flags and the environment, else the Docker config
     * with its credential helpers). NULL before creds_resolve().
     */
    struct credentials *credentials;
};

/** Start `c` for the flags named after `flag` ("--src-creds"). */
void creds_init(struct creds *c, const char *flag);

/** One of the flags was given: `arg` is its value (NULL for --X-creds-stdin). */
void creds_take(struct creds *c, enum creds_how how, char *arg);

/**
 * Settle c->text from whichever flag was given: a copy of --X-creds (whose
 * password is then wiped from argv, with a warning that the process list
 * showed it), the file's first line (its permissions checked as
 * password_file's are) or a line of stdin (echo off on a terminal; nothing
 * past the line is read). Returns 0 (c->text stays NULL when no flag was
 * given), or -1 after printing "ferry CMD: why" on stderr.
 */
FERRY_MUST_CHECK int creds_load(const char *cmd, struct creds *c);

/**
 * Settle c->username and c->password for `registry` ("host[:port]"): from
 * c->text when a flag gave it, else from `env_prefix`_USERNAME and
 * `env_prefix`_PASSWORD, else from the Docker config at `authfile` (NULL:
 * the default path). Finding none is no error: both stay NULL. c->text is
 * wiped and freed either way. Returns 0, or a negative code after printing
 * why on stderr (text that is not USER:PASSWORD, a Docker config that cannot
 * be read).
 */
FERRY_MUST_CHECK int creds_resolve(struct creds *c, const char *env_prefix, const char *registry,
                                   const char *authfile);

/** Wipe and free whatever `c` holds; it may be loaded and resolved again. */
void creds_release(struct creds *c);

#endif
