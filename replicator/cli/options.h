/*
 * options: what the commands' flag parsers share: the one way every command
 * and subcommand reads its command line (options_parse(), flags anywhere),
 * the ids of the long flags, the flags of every command that talks to
 * registries (COMMON_LONGOPTS), the `-c FILE` parser of the commands that
 * work from a config file, loading that file, and sizes with a unit.
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

/*
 * The command line of every command and subcommand is read one way
 * (options_parse(), options_parse_sub()): flags may come before, between or
 * after the positional words, as git and kubectl take them (`ferry journal ls
 * -c FILE` is `ferry journal -c FILE ls`), whatever POSIXLY_CORRECT says;
 * `--` ends the flags, and every word after it is positional even when it
 * starts with a dash.
 */

/*
 * Handle flag `c` (what getopt_long() answers: a short flag's letter, a long
 * flag's val, '?' for an unknown flag or a missing value, which getopt has
 * already named on stderr) with its value `arg` (NULL for a flag without
 * one). Returns OPTIONS_RUN to go on, or the exit status to stop with.
 */
typedef int (*options_flag_fn)(void *ctx, int c, char *arg);

/* The flags of one command or subcommand. */
struct options_spec {
    const char *shortopts;         /* getopt's, e.g. "c:v"; none of '+', '-', ':' first */
    const struct option *longopts; /* ended by a zero entry; NULL: none; no val is 1 */
    options_flag_fn flag;          /* called for each flag, in order */
    void *ctx;
};

/* A subcommand: the word that names it and its own flags. */
struct options_subcommand {
    const char *name;
    struct options_spec spec;
};

/**
 * Read argv[1..argc) (argv[0] is the command's name) by `spec`: every flag,
 * wherever it stands, goes to spec->flag in order; the positional words are
 * moved to argv[1..*n_words], in the order given (argv keeps the same
 * pointers, rearranged). Returns OPTIONS_RUN, or the status a flag handler
 * returned to stop (its help printed, or a usage error said).
 */
FERRY_MUST_CHECK int options_parse(const struct options_spec *spec, int argc, char **argv,
                                   int *n_words);

/**
 * options_parse() for a command with subcommands: the first positional word
 * names one of `subs`, and the flags of `parent` and of that subcommand are
 * taken anywhere, before the subcommand's name or after it (`parent`'s
 * handler gets the ids its own spec names; the subcommand's gets the rest,
 * '?' included). Ids must differ between `parent` and each subcommand, and a
 * long flag's name must want a value in all of them or in none. *sub is the
 * subcommand, or NULL when no word names one (then only `parent`'s flags
 * are taken, and the caller says what is wrong); argv[1] is its name.
 * Returns as options_parse().
 */
FERRY_MUST_CHECK int options_parse_sub(const struct options_spec *parent,
                                       const struct options_subcommand *subs, size_t n_subs,
                                       int argc, char **argv, const struct options_subcommand **sub,
                                       int *n_words);

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
