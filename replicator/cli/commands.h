/*
 * commands: the subcommands of `ferry`, one file each (cmd_NAME.c). main.c
 * hands each its arguments: argv[0] is the command's name ("copy", or "ls"
 * and "catalog" for cmd_list). Each returns the process's exit status, as
 * its --help text says.
 */
#ifndef FERRY_CLI_COMMANDS_H
#define FERRY_CLI_COMMANDS_H

#include "common/errors.h"

/** `ferry copy SRC DST`: one whole image from one registry to another. */
FERRY_MUST_CHECK int cmd_copy(int argc, char **argv);

/** `ferry ls HOST/REPO` (the tags of a repository) and `ferry catalog HOST` (its repositories). */
FERRY_MUST_CHECK int cmd_list(int argc, char **argv);

/** `ferry serve -c FILE`: the daemon. */
FERRY_MUST_CHECK int cmd_serve(int argc, char **argv);

/** `ferry sync -c FILE`: one reconcile of every rule. */
FERRY_MUST_CHECK int cmd_sync(int argc, char **argv);

/** `ferry verify -c FILE`: every source tag against every destination. */
FERRY_MUST_CHECK int cmd_verify(int argc, char **argv);

/** `ferry retry -c FILE`: requeue FAILED jobs, through the daemon when it runs. */
FERRY_MUST_CHECK int cmd_retry(int argc, char **argv);

/** `ferry status`: where replication stands, from the running daemon. */
FERRY_MUST_CHECK int cmd_status(int argc, char **argv);

/** `ferry journal -c FILE ls|show|append|stats|jobs`: the change journal. */
FERRY_MUST_CHECK int cmd_journal(int argc, char **argv);

#endif
