/*
 * options: what the commands' flag parsers share: the ids of the long flags,
 * the flags of every command that talks to registries (COMMON_LONGOPTS), the
 * `-c FILE` parser of the commands that work from a config file, loading
 * that file, and sizes with a unit.
 *
 * A parser returns OPTIONS_RUN when the command is to run; any other value
 * is the exit status to return at once: 0 after --help, 2 (the status
 * commands use their own) on a usage error, after saying why on stderr.
 */
#ifndef FERRY_CLI_OPTIONS_H
#define FERRY_CLI_OPTIONS_H

#include "common/errors.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "registry/http.h"

/* What a parser returns when the command is to run (no exit status is negative). */
#define OPTIONS_RUN (-1)

/* The exit status of a usage error (ferry status has its own). */
#define OPTIONS_EXIT_USAGE 2

/* The ids getopt_long() answers for the long flags without a short form. */
enum options_flag {
    OPT_PLATFORM = 1000,
    OPT_NO_REFERRERS,
    OPT_JSON,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
    OPT_SRC_CREDS,
    OPT_DEST_CREDS,
    OPT_AUTHFILE,
    OPT_PLAIN_HTTP,
    OPT_TLS,
    OPT_SRC_TLS,
    OPT_DEST_TLS,
    OPT_SRC_PLAIN,
    OPT_DEST_PLAIN,
    OPT_INSECURE,
    OPT_CA_FILE,
    OPT_CERT,
    OPT_KEY,
    OPT_UPLOAD_MODE,
    OPT_CHUNK_SIZE,
    OPT_CHUNK_MAX,
    OPT_MOUNT_FROM,
    OPT_RETRIES,
    OPT_CACHE_DIR,
    OPT_NO_CACHE,
    OPT_HELP,
    OPT_CREDS,
    OPT_PAGE_SIZE,
    OPT_CHECK_CONFIG,
    OPT_SRC_CREDS_FILE,
    OPT_SRC_CREDS_STDIN,
    OPT_DEST_CREDS_FILE,
    OPT_DEST_CREDS_STDIN,
    OPT_CREDS_FILE,
    OPT_CREDS_STDIN,
    OPT_SERVER,
    OPT_IMAGE,
    OPT_WAIT,
    OPT_TIMEOUT,
    OPT_DEST,
};

/* Flags every command that talks to registries takes. */
// clang-format off
#define COMMON_LONGOPTS                                                 \
    {"insecure", no_argument, NULL, OPT_INSECURE},                      \
    {"ca-file", required_argument, NULL, OPT_CA_FILE},                  \
    {"cert", required_argument, NULL, OPT_CERT},                        \
    {"key", required_argument, NULL, OPT_KEY},                          \
    {"retries", required_argument, NULL, OPT_RETRIES},                  \
    {"verbose", no_argument, NULL, 'v'},                                \
    {"help", no_argument, NULL, OPT_HELP}
// clang-format on

/* The range --retries accepts. */
#define OPTIONS_RETRIES_MIN 1
#define OPTIONS_RETRIES_MAX 100

/* The values of COMMON_LONGOPTS. */
struct options_common {
    struct http_client_options http;
    int retries; /* 0: the registry's default */
    int verbose; /* how many -v */
};

/**
 * Take flag `c` (with its value `arg`) of command `cmd` when it is one of
 * COMMON_LONGOPTS: returns OPTIONS_RUN. A bad value, or a flag that is not
 * one of them, returns OPTIONS_EXIT_USAGE after saying why on stderr. Meant
 * for the default: of a parser's switch.
 */
FERRY_MUST_CHECK int options_common_flag(const char *cmd, int c, const char *arg,
                                         struct options_common *f);

/** Set the log level from -v (once: info; twice: debug; none: as it was). */
void options_verbosity(int verbose);

/** Say on stderr that command `cmd` got a flag it does not know, pointing at its --help. */
void options_unknown_flag(const char *cmd);

/**
 * A size in bytes, with an optional unit K, M or G (powers of 1024, with an
 * optional "i" and "B": 64M, 64MiB, 64MB). Returns 0 and sets *out, or
 * FERRY_EINVAL when `text` is not one.
 */
FERRY_MUST_CHECK int options_parse_size(const char *text, uint64_t *out);

/* Flags of the commands that work from a config file: serve, sync, verify. */
struct options_config_cmd {
    const char *config; /* -c FILE */
    bool json;          /* --json, where allowed */
    bool check;         /* --check-config, where allowed */
};

/**
 * Parse `-c FILE`, `-v`, `--help` and, where allowed, `--json` and
 * `--check-config` for command `cmd`; `usage` prints its help. Returns
 * OPTIONS_RUN with *f set, or the exit status (see the top).
 */
FERRY_MUST_CHECK int options_config_cmd_parse(const char *cmd, int argc, char **argv,
                                              void (*usage)(FILE *), bool allow_json,
                                              bool allow_check, struct options_config_cmd *f);

/**
 * config_load() for command `cmd`: returns 0 with *cfg set (the caller frees
 * it with config_free()), or config_load()'s negative code after printing
 * "ferry CMD: why" on stderr.
 */
FERRY_MUST_CHECK int options_config_load(const char *cmd, const char *path, struct config **cfg);

#endif
